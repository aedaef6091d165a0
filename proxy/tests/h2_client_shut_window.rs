//! HTTP/2 clients that shut their stream's flow-control window (send no
//! `WINDOW_UPDATE`) in front of an `h2c` upstream, on real loopback
//! sockets: hyper's server stops asking weir for their bodies, yet each
//! upstream stream is reset at the request's deadline, so the data the
//! upstream sent for it stops holding the shared upstream connection's
//! window, and another client's answer on that connection comes whole.
//! Before their deadline, many such streams hold only a small part of that
//! window: other clients' answers on the connection do not wait for them.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use weir_proxy::Role;
use weir_proxy::metrics::{LATENCY_BOUNDS_MICROS, RoleCounts};

#[allow(dead_code, reason = "only the proxy's start is used here")]
mod h2_relay;
mod support;

/// Generous bound for anything that should happen promptly.
const DEADLINE: Duration = Duration::from_secs(10);

/// The requests' timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Clients that shut their window: with weir's windows towards the
/// upstream (256 KiB a stream, 32 MiB the connection) their unread streams
/// fill the upstream connection's window, until they are reset.
const STALLED_CLIENTS: usize = 130;

/// The size of `/sized`: more than the upstream connection's window left
/// while the stalled streams held theirs.
const SIZED: usize = 3 * 1024 * 1024;

/// An `h2c` server: `/endless` streams 64 KiB frames for as long as it is
/// read, anything else answers [`SIZED`] bytes.
async fn h2_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body: BoxBody<Bytes, Infallible> = if req.uri().path() == "/endless" {
                            let frames = futures_util::stream::repeat_with(|| {
                                Ok::<_, Infallible>(Frame::data(Bytes::from_static(
                                    &[b'x'; 65_536],
                                )))
                            });
                            StreamBody::new(frames).boxed()
                        } else {
                            Full::new(Bytes::from(vec![b'y'; SIZED])).boxed()
                        };
                        Ok::<_, Infallible>(Response::new(body))
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The stable role's counts once they hold `requests` requests or more,
/// within [`DEADLINE`] (`what` is waited for).
async fn stable_counts_once(weir: &support::Running, requests: u64, what: &str) -> RoleCounts {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let counts = weir
                .proxy
                .metrics()
                .get("web", Role::Stable)
                .map(|m| m.counts());
            if let Some(counts) = counts.filter(|c| c.requests >= requests) {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"))
}

/// How long the client of [`a_shut_window_s_wait_is_not_the_answers_latency`]
/// keeps its window shut before it leaves.
const HOLD: Duration = Duration::from_secs(1);

/// A client that keeps its stream's window shut from the start, so that
/// hyper never asks weir for the answer's body, then leaves: the request
/// is counted, and the time its answer waited on the client is left out
/// of its latency.
#[tokio::test]
async fn a_shut_window_s_wait_is_not_the_answers_latency() {
    let upstream = h2_upstream().await;
    let weir = h2_relay::start_weir(upstream, Duration::from_secs(60)).await;
    let held = support::get_with_shut_window(weir.addr, "/sized").await;
    assert_eq!(held.status(), 200);
    tokio::time::sleep(HOLD).await;
    drop(held);
    let counts = stable_counts_once(&weir, 1, "the request counted once its client left").await;
    assert_eq!(counts.requests, 1);
    // Slot `i` counts latencies above bound `i - 1`.
    let slow: u64 = counts
        .latency
        .iter()
        .enumerate()
        .filter(|&(slot, _)| {
            slot > 0
                && LATENCY_BOUNDS_MICROS[slot - 1] >= u64::try_from(HOLD.as_micros()).unwrap() / 2
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        slow, 0,
        "the client's wait counted as latency: {:?}",
        counts.latency
    );
}

/// Clients whose streams each hold a whole stream window of the shared
/// upstream connection: more than hyper's window (5 MiB) would take.
const MANY_STALLED_CLIENTS: usize = 60;

/// Many clients with shut windows, each of whose `/endless` answers would
/// take all the upstream sends until its stream's window is full, hold
/// the shared upstream connection's window only in part: another client's
/// 3 MiB answer on it comes whole at once, long before their deadline.
#[tokio::test]
async fn many_streams_of_clients_that_shut_their_window_leave_others_room_on_the_upstream() {
    let upstream = h2_upstream().await;
    let weir = h2_relay::start_weir(upstream, Duration::from_secs(60)).await;
    let mut held = Vec::new();
    for _ in 0..MANY_STALLED_CLIENTS {
        held.push(support::get_with_shut_window(weir.addr, "/endless").await);
    }
    let started = tokio::time::Instant::now();
    let status = tokio::time::timeout(DEADLINE, h2_relay::get_path(weir.addr, "/sized"))
        .await
        .expect("another client's answer whole while the stalled streams wait");
    assert_eq!(status, 200);
    assert!(started.elapsed() < DEADLINE);
    drop(held);
}

#[tokio::test]
async fn streams_of_clients_that_shut_their_window_are_reset_upstream_at_the_deadline() {
    let upstream = h2_upstream().await;
    let weir = h2_relay::start_weir(upstream, REQUEST_TIMEOUT).await;

    let mut held = Vec::new();
    for _ in 0..STALLED_CLIENTS {
        // Kept, its body never read: the stream's window stays shut.
        held.push(support::get_with_shut_window(weir.addr, "/endless").await);
    }

    // Each is cut at its deadline though hyper never asks for its body, and
    // counted as a request its client left: the window is the client's.
    let counts = stable_counts_once(
        &weir,
        STALLED_CLIENTS as u64,
        "every stalled stream counted at its deadline",
    )
    .await;
    assert_eq!(counts.errors, 0, "counted as errors");

    // Their streams were reset: the shared upstream connection's window
    // is free for another client's answer, which comes whole in time.
    let stream = TcpStream::connect(weir.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/sized")
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("a response head in time")
        .expect("a response head");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .expect("the body in time")
        .expect("the whole body, not cut at the deadline")
        .to_bytes();
    assert_eq!(body.len(), SIZED);
    drop(held);
}
