use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Response};

use super::*;
use crate::upstream::ConnectError;

fn policy(budget: f64) -> FallbackPolicy {
    FallbackPolicy::new(
        &StableFallback {
            budget,
            ..StableFallback::default()
        },
        Arc::default(),
    )
}

#[test]
fn the_window_counts_the_last_ten_seconds() {
    let window = RetryWindow::default();
    for second in 100..110 {
        window.record_request(second);
        window.record_request(second);
    }
    assert_eq!(window.totals(109), (20, 0));
    // Each second further, the oldest second's two requests leave.
    assert_eq!(window.totals(110), (18, 0));
    window.record_request(110);
    assert_eq!(window.totals(110), (19, 0));
    assert_eq!(window.totals(118), (3, 0));
    assert_eq!(window.totals(119), (1, 0));
    assert_eq!(window.totals(120), (0, 0));
    // A slot reused for a new second starts from zero.
    window.record_request(130);
    assert_eq!(window.totals(130), (1, 0));
}

#[test]
fn the_budget_caps_retries_at_its_share_of_requests() {
    let window = RetryWindow::default();
    // No requests: no retry.
    assert!(!window.try_retry(50, 0.2));
    for _ in 0..10 {
        window.record_request(50);
    }
    // 20 % of 10 requests: two retries, not a third.
    assert!(window.try_retry(50, 0.2));
    assert!(window.try_retry(50, 0.2));
    assert!(!window.try_retry(50, 0.2));
    assert_eq!(window.totals(50), (10, 2));
    // Ten seconds later the window is empty again.
    assert!(!window.try_retry(60, 0.2));
    for _ in 0..5 {
        window.record_request(60);
    }
    assert!(window.try_retry(60, 0.2));
    assert!(!window.try_retry(60, 0.2));
    // Budget 1: a retry for every request.
    let every = RetryWindow::default();
    for n in 1..=100 {
        every.record_request(7);
        assert!(every.try_retry(7, 1.0), "request {n}");
    }
    assert!(!every.try_retry(7, 1.0));
}

#[test]
fn concurrent_counting_loses_nothing() {
    let window = Arc::new(RetryWindow::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let window = Arc::clone(&window);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    window.record_request(3);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no panic");
    }
    assert_eq!(window.totals(3), (40_000, 0));
}

#[test]
fn the_policy_counts_retries_and_denials() {
    let p = policy(0.5);
    p.record_request();
    p.record_request();
    assert!(p.try_retry());
    assert!(!p.try_retry());
    assert_eq!(p.counters.retried.load(Relaxed), 1);
    assert_eq!(p.counters.denied.load(Relaxed), 1);
}

/// What a request's body was when the canary attempt began.
#[derive(Debug, Clone, Copy)]
enum BodyCase {
    /// No body at all.
    None,
    /// `Content-Length` within the limit, read whole.
    LengthWithin,
    /// `Content-Length` above the limit: never read ahead.
    LengthAbove,
    /// Chunked, ended within the limit: read whole.
    ChunkedWithin,
    /// Chunked, passed the limit while being read: sent once.
    ChunkedAbove,
}

fn outcome(kind: &str) -> Result<Response<()>, ProxyError> {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let status = |code: u16| {
        Ok(Response::builder()
            .status(code)
            .body(())
            .expect("a response"))
    };
    match kind {
        "connect" => Err(ProxyError::Connect(ConnectError::Timeout {
            addr,
            timeout: Duration::from_secs(1),
        })),
        "timeout" => Err(ProxyError::UpstreamTimeout(Duration::from_secs(30))),
        "no endpoint" => Err(ProxyError::NoEndpoints {
            route: Arc::from("web"),
            backend: Arc::from("canary"),
        }),
        "bad status" => Err(ProxyError::InvalidStatus(700)),
        "502" => status(502),
        "503" => status(503),
        "504" => status(504),
        "500" => status(500),
        "200" => status(200),
        "404" => status(404),
        other => panic!("no outcome {other}"),
    }
}

/// The whole decision of `forward::serve` for one canary request: kept for
/// a retry (method, upgrade, declared length, then the body read whole)
/// and failed in a way stable may answer.
fn retried(p: &FallbackPolicy, method: &str, body: BodyCase, kind: &str) -> bool {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut headers = HeaderMap::new();
    let length = match body {
        BodyCase::LengthWithin => Some(p.max_body_bytes),
        BodyCase::LengthAbove => Some(p.max_body_bytes + 1),
        _ => None,
    };
    if let Some(n) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if matches!(body, BodyCase::ChunkedWithin | BodyCase::ChunkedAbove) {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let read_whole = !matches!(body, BodyCase::ChunkedAbove);
    p.may_keep(&method, &headers) && read_whole && retryable_failure(&outcome(kind)).is_some()
}

#[test]
fn retry_decision_by_method_failure_and_body() {
    let p = policy(0.2);
    let retried_failures = [
        "connect",
        "timeout",
        "no endpoint",
        "bad status",
        "502",
        "503",
        "504",
    ];
    let answered = ["500", "200", "404"];
    let bodies = [
        (BodyCase::None, true),
        (BodyCase::LengthWithin, true),
        (BodyCase::LengthAbove, false),
        (BodyCase::ChunkedWithin, true),
        (BodyCase::ChunkedAbove, false),
    ];
    for method in [
        "GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "get",
    ] {
        let listed = ["GET", "HEAD", "OPTIONS"].contains(&method);
        for (body, body_ok) in bodies {
            for kind in retried_failures {
                assert_eq!(
                    retried(&p, method, body, kind),
                    listed && body_ok,
                    "{method} {body:?} {kind}"
                );
            }
            for kind in answered {
                assert!(!retried(&p, method, body, kind), "{method} {body:?} {kind}");
            }
        }
    }
    // A method listed in the config is retried like the defaults.
    let with_put = FallbackPolicy::new(
        &StableFallback {
            methods: vec![Arc::from("PUT")],
            ..StableFallback::default()
        },
        Arc::default(),
    );
    assert!(retried(&with_put, "PUT", BodyCase::LengthWithin, "connect"));
    assert!(!retried(&with_put, "GET", BodyCase::None, "connect"));
}

#[test]
fn an_upgrade_request_is_never_kept() {
    let p = policy(0.2);
    let mut headers = HeaderMap::new();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    assert!(!p.may_keep(&Method::GET, &headers));
    assert!(p.may_keep(&Method::GET, &HeaderMap::new()));
}
