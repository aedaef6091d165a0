//! An HTTP/2 upstream whose answer is broken in what came with its head (a
//! body longer or shorter than its `content-length`, in one frame or
//! after a first good one) gets the client a 502, counted as 502, as a
//! broken first chunk from an HTTP/1 upstream does: not an empty reply
//! counted as the head's 200. (A reset right after the head is not among
//! the cases: h2's server drops the frames it still queues for a stream
//! it resets, so the client sees only the reset, which was a 502 before.)

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use weir_config::{Backend, StableFallback, Timeouts, UpstreamProtocol, Weight};
use weir_proxy::{Role, ServeOptions};

mod support;
use support::{fixed_upstream, send_until_closed};

/// How long an answer may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// The request every test here sends.
const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";

/// How an upstream breaks its answer after a `200` head.
#[derive(Debug, Clone, Copy)]
enum Broken {
    /// `content-length: 3`, then 5 bytes and the end.
    Longer,
    /// `content-length: 10`, then 5 bytes and the end.
    Shorter,
    /// `content-length: 10`, then 3 bytes, then 2 more and the end: the
    /// break is in the second frame.
    ShorterInTwo,
}

/// An HTTP/2 (prior knowledge) upstream answering every request with
/// `broken`, the head and what follows it sent at once.
async fn broken_upstream(broken: Broken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let length = match broken {
                        Broken::Longer => "3",
                        Broken::Shorter | Broken::ShorterInTwo => "10",
                    };
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-length", length)
                        .body(())
                        .unwrap();
                    let mut body = respond.send_response(head, false).unwrap();
                    match broken {
                        Broken::Longer | Broken::Shorter => {
                            body.send_data(Bytes::from_static(b"hello"), true).unwrap();
                        }
                        Broken::ShorterInTwo => {
                            body.send_data(Bytes::from_static(b"hel"), false).unwrap();
                            body.send_data(Bytes::from_static(b"lo"), true).unwrap();
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_answer_broken_with_its_head_is_a_502() {
    for broken in [Broken::Longer, Broken::Shorter, Broken::ShorterInTwo] {
        let upstream = broken_upstream(broken).await;
        let weir = support::start(
            support::one_h2c_route(upstream, Timeouts::default()),
            ServeOptions::default(),
        )
        .await;
        let answer = send_until_closed(weir.addr, GET, DEADLINE).await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{broken:?}: {answer}");
        let stable = weir.proxy.metrics().get("web", Role::Stable).unwrap();
        assert_eq!(
            (
                stable.requests_with_code(502),
                stable.requests_with_code(200)
            ),
            (1, 0),
            "{broken:?}: counted as the 502 sent"
        );
    }
}

/// Broken before any byte reached the client, a canary's answer is
/// retried on stable under `stableFallback`, and counted for the canary.
#[tokio::test]
async fn a_canary_answer_broken_with_its_head_is_retried_on_stable() {
    let stable = fixed_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nstable").await;
    let canary = broken_upstream(Broken::Longer).await;
    let mut snapshot = support::one_route(&[stable], vec![], Timeouts::default());
    let route = &mut snapshot.routes[0];
    route.split.canary = Some(Backend {
        revision: Arc::from("v2"),
        endpoints: vec![canary],
        protocol: UpstreamProtocol::H2c,
        tls: None,
    });
    route.split.canary_weight = Weight::FULL;
    route.stable_fallback = Some(StableFallback {
        methods: vec![Arc::from("GET")],
        max_body_bytes: 64 * 1024,
        budget: 1.0,
    });
    let weir = support::start(snapshot, ServeOptions::default()).await;
    let answer = send_until_closed(weir.addr, GET, DEADLINE).await;
    assert!(answer.ends_with("stable"), "{answer}");
    let canary = weir.proxy.metrics().get("web", Role::Canary).unwrap();
    assert_eq!(
        canary.requests_with_code(200),
        0,
        "the canary's 200 never went out"
    );
}
