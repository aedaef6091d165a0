//! `stableFallback`: a canary that refuses connections costs GET users
//! nothing (their requests are answered by stable) while the analysis still
//! sees every canary failure and aborts the rollout; methods that are not
//! listed, and bodies above `maxBodyBytes`, fail visibly; the budget caps
//! the retries at its share of the route's requests; bodies kept whole, kept
//! in part or streamed reach the upstream intact, retried or not.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full, StreamBody};
use weir_e2e::{
    ClosedPort, Conn, FAILED, FakeUpstream, Load, LoadtestUpstream, Metrics, Route, Step, Strategy,
    Weir, WeirConfig, count, phase, send_many, within,
};

/// `weir_http_requests_total` of `route` for `role` and `code`.
fn requests(m: &Metrics, role: &str, code: &str) -> f64 {
    m.sum(
        "weir_http_requests_total",
        &[("route", "web"), ("role", role), ("code", code)],
    )
}

/// Canary gateway failures sent downstream: a failure retried on stable is
/// not one (its request counts once, as the stable answer its client got).
fn canary_failures(m: &Metrics) -> f64 {
    ["502", "503", "504"]
        .iter()
        .map(|code| requests(m, "canary", code))
        .sum()
}

/// `weir_http_requests_total` of `route`, every role and code.
fn route_requests(m: &Metrics) -> f64 {
    m.sum("weir_http_requests_total", &[("route", "web")])
}

/// Builds one request of a case, afresh for each send.
type MakeRequest = fn() -> Request<weir_e2e::Body>;

fn fallbacks(m: &Metrics) -> (f64, f64) {
    (
        m.sum("weir_stable_fallback_total", &[("route", "web")]),
        m.sum("weir_stable_fallback_denied_total", &[("route", "web")]),
    )
}

fn body(bytes: usize) -> weir_e2e::Body {
    Full::new(Bytes::from(vec![b'x'; bytes]))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A new client connection to `addr`.
async fn connected(addr: std::net::SocketAddr) -> Conn {
    within(Duration::from_secs(5), "a connection", Conn::open(addr))
        .await
        .expect("connected")
}

/// Whether `response` says its connection closes.
fn says_close(response: &weir_e2e::Response) -> bool {
    response.headers.get("connection").map(|v| v.as_bytes()) == Some(&b"close"[..])
}

/// A body of `bytes` sent in two chunks, without a declared length.
fn chunked(bytes: usize) -> weir_e2e::Body {
    let half = Bytes::from(vec![b'x'; bytes / 2]);
    let rest = Bytes::from(vec![b'x'; bytes - bytes / 2]);
    let frames = futures_util::stream::iter([
        Ok::<_, std::io::Error>(hyper::body::Frame::data(half)),
        Ok(hyper::body::Frame::data(rest)),
    ]);
    StreamBody::new(frames).boxed_unsync()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_canary_costs_get_users_nothing_and_is_aborted() {
    let stable = FakeUpstream::start("stable").await;
    // Nothing listens there: every connection is refused.
    let canary = ClosedPort::bind();
    let strategy = Strategy::judged([Step::SetWeight(50.0), Step::Pause(None)]);
    // At 50 % weight, half the requests need a retry: a budget of 1.
    let weir = Weir::start(WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )
    .stable_fallback("{ budget: 1 }")]))
    .await;

    let load = Load::start(weir.addrs.http, "/", 200, 4);
    let aborted = weir
        .wait_status("web", Duration::from_secs(30), "Aborted", |s| {
            phase(s) == "Aborted"
        })
        .await;
    // A little more load after the abort, all of it to stable.
    let at_abort = load.total();
    weir_e2e::wait_until(Duration::from_secs(30), "more load after the abort", || {
        let more = load.total() >= at_abort + 100;
        async move { more.then_some(()) }
    })
    .await;
    let counts = load.stop().await;
    eprintln!("load: {counts:?}");

    assert_eq!(aborted["analysis"]["verdict"], "fail", "{aborted:#}");
    let answered: u64 = counts.values().flat_map(|s| s.values()).sum();
    assert_eq!(
        count(&counts, "stable", 200),
        answered,
        "every GET was answered 200 by stable: {counts:?}"
    );
    assert_eq!(counts.get(FAILED), None, "{counts:?}");

    // The analysis judged the canary by every failed attempt, each of them
    // rescued.
    let judged = &aborted["analysis"]["canary"];
    assert!(
        judged["errors"].as_u64().is_some_and(|e| e > 0) && judged["errors"] == judged["requests"],
        "the canary's analysis counts its rescued failures: {aborted:#}"
    );
    let m = weir.metrics().await;
    let (retried, denied) = fallbacks(&m);
    assert!(
        retried >= 20.0,
        "the canary was tried, failed and was retried: {}",
        m.text
    );
    assert_eq!(denied, 0.0, "no retry was denied:\n{}", m.text);
    assert_eq!(
        canary_failures(&m),
        0.0,
        "no canary failure reached a client:\n{}",
        m.text
    );
    assert_eq!(
        route_requests(&m),
        answered as f64,
        "each request answered is counted once:\n{}",
        m.text
    );
    let aborts = m.sum("weir_rollout_aborts_total", &[("route", "web")])
        - m.sum(
            "weir_rollout_aborts_total",
            &[("route", "web"), ("reason", "manual")],
        );
    assert_eq!(aborts, 1.0, "aborted by analysis:\n{}", m.text);
    // Stable answered its own share and every retry.
    assert_eq!(requests(&m, "stable", "200"), answered as f64, "{}", m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_methods_with_bodies_under_the_limit_are_retried() {
    let stable = FakeUpstream::start("stable").await;
    // Nothing listens there: every connection is refused.
    let canary = ClosedPort::bind();
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 50.0)
        .stable_fallback("{ methods: [GET, PUT], maxBodyBytes: 1KiB, budget: 1 }")]))
    .await;

    let mut conn = connected(weir.addrs.http).await;
    // (what, request, retried)
    let mut visible = 0;
    let cases: [(&str, MakeRequest, bool); 5] = [
        (
            "GET",
            || Request::get("/").body(body(0)).expect("a request"),
            true,
        ),
        (
            "PUT 1 KiB",
            || Request::put("/").body(body(1024)).expect("a request"),
            true,
        ),
        (
            "PUT chunked 1000 bytes",
            || Request::put("/").body(chunked(1000)).expect("a request"),
            true,
        ),
        (
            "PUT 2000 bytes",
            || Request::put("/").body(body(2000)).expect("a request"),
            false,
        ),
        (
            "POST 10 bytes",
            || Request::post("/").body(body(10)).expect("a request"),
            false,
        ),
    ];
    for (what, request, retried) in cases {
        let mut failed = 0;
        for _ in 0..30 {
            let response = within(Duration::from_secs(10), what, conn.send(request()))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if response.status == 200 {
                // A chunked upload read to its end without trailers keeps
                // its connection on the hyper path too, which
                // `stableFallback` routes take (see
                // `closing_after_chunked_upload`).
                assert!(!says_close(&response), "{what}");
            } else {
                assert!(
                    matches!(response.status.as_u16(), 502 | 503),
                    "{what}: {} {}",
                    response.status,
                    response.text()
                );
                // A body weir did not read (not kept: too large, or its
                // method not listed) cannot be told from the next request:
                // the answer says the connection closes.
                assert_eq!(
                    response.headers.get("connection").map(|v| v.as_bytes()),
                    Some(&b"close"[..]),
                    "{what}: {:?}",
                    response.headers
                );
                failed += 1;
                conn = connected(weir.addrs.http).await;
            }
        }
        eprintln!("{what}: {failed} of 30 failed visibly");
        if retried {
            assert_eq!(failed, 0, "{what} is retried on stable");
        } else {
            // Half go to the canary: none of 30 would be one in a billion.
            assert!(failed > 0, "{what} is not retried");
        }
        visible += failed;
    }

    let m = weir.metrics().await;
    let (retried, denied) = fallbacks(&m);
    assert_eq!(denied, 0.0, "{}", m.text);
    assert!(retried > 0.0, "{}", m.text);
    assert_eq!(
        canary_failures(&m),
        f64::from(visible),
        "the canary's answers counted are the failures seen; the retried ones count as stable's:\n{}",
        m.text
    );
    assert_eq!(route_requests(&m), 150.0, "{}", m.text);
    // Retried bodies reached stable whole: it read and answered each.
    assert_eq!(
        requests(&m, "stable", "200"),
        150.0 - f64::from(visible),
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries_at_its_share_of_requests() {
    const N: u64 = 400;
    const BUDGET: f64 = 0.1;
    let stable = FakeUpstream::start("stable").await;
    // Nothing listens there: every connection is refused.
    let canary = ClosedPort::bind();
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 50.0)
        .stable_fallback(&format!("{{ budget: {BUDGET} }}"))]))
    .await;

    let counts = within(
        Duration::from_secs(120),
        "the requests",
        send_many(weir.addrs.http, "/", &[], N, 4),
    )
    .await
    .expect("every exchange completes");
    eprintln!("{counts:?}");
    let visible = N - count(&counts, "stable", 200);

    let m = weir.metrics().await;
    let (retried, denied) = fallbacks(&m);
    eprintln!("retried {retried}, denied {denied}, visible errors {visible}");
    // Four connections may each take one retry at the same instant.
    assert!(
        retried <= BUDGET * N as f64 + 4.0,
        "{retried} retries for {N} requests:\n{}",
        m.text
    );
    assert!(retried > 0.0 && denied > 0.0, "{}", m.text);
    assert_eq!(denied, visible as f64, "{}", m.text);
    assert_eq!(canary_failures(&m), visible as f64, "{}", m.text);
    assert_eq!(route_requests(&m), N as f64, "{}", m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_bodies_reach_the_upstream_whole() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let refusing = ClosedPort::bind();
    let fallback = "{ methods: [PUT], maxBodyBytes: 1KiB, budget: 1 }";
    let weir = Weir::start(WeirConfig::new([
        // Every request to a working canary: kept, kept in part, or streamed.
        Route::new("kept", &[stable.addr])
            .hosts(&["kept.test"])
            .canary(&[canary.addr], 100.0)
            .stable_fallback(fallback),
        // Every request to a canary that refuses: retried on stable.
        Route::new("retried", &[stable.addr])
            .hosts(&["retried.test"])
            .canary(&[refusing.addr], 100.0)
            .stable_fallback(fallback),
    ]))
    .await;

    let mut conn = connected(weir.addrs.http).await;
    // (host, body, length, the upstream that answers)
    let cases: [(&str, weir_e2e::Body, usize, &str); 7] = [
        ("kept.test", body(500), 500, "canary"),
        ("kept.test", chunked(1000), 1000, "canary"),
        ("kept.test", chunked(5000), 5000, "canary"),
        ("kept.test", body(5000), 5000, "canary"),
        ("retried.test", body(1024), 1024, "stable"),
        ("retried.test", chunked(1000), 1000, "stable"),
        ("retried.test", body(0), 0, "stable"),
    ];
    for (host, body, length, upstream) in cases {
        let request = Request::put("/__upstream/echo-body-len")
            .header("host", host)
            .body(body)
            .expect("a request");
        let response = within(Duration::from_secs(10), host, conn.send(request))
            .await
            .unwrap_or_else(|e| panic!("{host} {length}: {e}"));
        // A chunked upload read to its end without trailers keeps its
        // connection on the hyper path too, which `stableFallback` routes
        // take (see `closing_after_chunked_upload`).
        assert!(!says_close(&response), "{host} {length}");
        assert_eq!(response.status, 200, "{host} {length}: {}", response.text());
        assert_eq!(response.upstream(), upstream, "{host} {length}");
        assert_eq!(
            response.text().trim(),
            length.to_string(),
            "{host}: the upstream received the whole body"
        );
    }
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_stable_fallback_total", &[("route", "retried")]),
        3.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("weir_stable_fallback_total", &[("route", "kept")]),
        0.0,
        "{}",
        m.text
    );
}

/// A client that stalls inside a body weir keeps for a retry is answered
/// `408` at the request's deadline and counted as its own fault: never a
/// canary failure (which the analysis would count) nor a retry on stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_inside_a_kept_body_is_not_a_canary_failure() {
    let text = stall_inside_a_kept_body(|route| route.timeouts("1s", "1s")).await;
    assert!(text.contains("request timeout"), "{text}");
}

/// The same at the route's idle timeout, long before a 60 s deadline: the
/// test's own 20 s limit would fail it otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_silent_inside_a_kept_body_for_the_idle_timeout_gets_408() {
    let text =
        stall_inside_a_kept_body(|route| route.timeouts("1s", "60s").idle_timeout("300ms")).await;
    assert!(text.contains("idle timeout"), "{text}");
}

/// Sends a kept body's first bytes and no more to a route set up by
/// `timeouts`, and checks the `408` and how it is counted; the answer.
async fn stall_inside_a_kept_body(timeouts: impl FnOnce(Route) -> Route) -> String {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let route = Route::new("web", &[stable.addr]).canary(&[canary.addr], 100.0);
    let weir =
        Weir::start(WeirConfig::new([timeouts(route).stable_fallback(
            "{ methods: [PUT], maxBodyBytes: 1KiB, budget: 1 }",
        )]))
        .await;
    let answer = weir_e2e::raw_request(
        weir.addrs.http,
        b"PUT /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\nfirst",
        Duration::from_secs(20),
    )
    .await;
    let text = String::from_utf8_lossy(&answer.raw);
    assert_eq!(answer.status, 408, "{text}");
    assert_eq!(answer.header("connection"), Some("close"), "{text}");
    let m = weir.metrics().await;
    assert_eq!(requests(&m, "canary", "408"), 1.0, "{}", m.text);
    assert_eq!(canary_failures(&m), 0.0, "{}", m.text);
    assert_eq!(
        m.sum(
            "weir_client_errors_total",
            &[
                ("route", "web"),
                ("role", "canary"),
                ("kind", "body_timeout")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.sum("weir_upstream_errors_total", &[("route", "web")]),
        0.0
    );
    assert_eq!(fallbacks(&m), (0.0, 0.0));
    assert_eq!(
        canary.hits() + stable.hits(),
        0,
        "nothing was sent upstream"
    );
    text.into_owned()
}
