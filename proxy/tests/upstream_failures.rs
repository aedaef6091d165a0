//! Upstream failures on real loopback sockets: bodies that break, stall or
//! run past the request timeout are cut and counted against the role;
//! failing endpoints are ejected; the drain cuts what is left at its
//! deadline; a listener over its connection limit closes new clients.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_config::{Snapshot, Timeouts};
use weir_proxy::{Proxy, Role, ServeOptions};

mod support;
use support::{closed_port, get_with_shut_window, one_route, start, take_request_head};

/// Generous bound for anything that should happen promptly.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long [`Behaviour::SlowBody`] pauses in the middle of its body.
const SLOW_BODY_PAUSE: Duration = Duration::from_millis(300);

/// What a raw fake upstream does with each request it reads.
#[derive(Clone, Copy)]
enum Behaviour {
    /// `200` with a Content-Length of 100, 5 bytes of body, then close.
    Truncated,
    /// A chunked `200` with one chunk, then silence.
    StallAfterFirstChunk,
    /// A chunked `200` that sends a chunk every 20 ms, forever.
    Drip,
    /// `503` with a short body.
    Unavailable,
    /// `200 ok`.
    Ok,
    /// Reads the request and never answers.
    Hang,
    /// A chunked `200`: one chunk, 300 ms of silence, the last chunk.
    SlowBody,
    /// A whole chunked `200` at once.
    Chunked,
}

/// A fake upstream speaking raw HTTP/1.1; counts the requests it reads
/// and the connections it saw end.
struct RawUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
}

/// Counts a connection's end when dropped with the connection's task.
struct CountsEnd(Arc<AtomicUsize>);

impl Drop for CountsEnd {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn raw_upstream(behaviour: Behaviour) -> RawUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let ends = Arc::clone(&ended);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            let end = CountsEnd(Arc::clone(&ends));
            tokio::spawn(async move {
                let _end = end;
                let mut seen = Vec::new();
                loop {
                    // One request head (the proxy sends no body here).
                    if !take_request_head(&mut stream, &mut seen).await {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer: &[u8] = match behaviour {
                        Behaviour::Truncated => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort")
                                .await;
                            return;
                        }
                        Behaviour::StallAfterFirstChunk => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                                .await;
                            std::future::pending::<()>().await;
                            return;
                        }
                        Behaviour::Drip => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                                .await;
                            loop {
                                if stream.write_all(b"1\r\nx\r\n").await.is_err() {
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        Behaviour::SlowBody => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                                .await;
                            tokio::time::sleep(SLOW_BODY_PAUSE).await;
                            b"4\r\nlast\r\n0\r\n\r\n"
                        }
                        Behaviour::Hang => {
                            std::future::pending::<()>().await;
                            return;
                        }
                        Behaviour::Unavailable => {
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown"
                        }
                        Behaviour::Ok => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        Behaviour::Chunked => {
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                        }
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    RawUpstream {
        addr,
        requests,
        ended,
    }
}

fn snapshot(stable: &[SocketAddr], timeouts: Timeouts) -> Snapshot {
    one_route(stable, vec![], timeouts)
}

type Client = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn client(proxy: SocketAddr) -> Client {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `GET path`; returns the status and whether the body ended cleanly.
async fn get(sender: &mut Client, path: &str) -> (u16, bool) {
    sender.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", "test")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("a response head in time")
        .expect("a response head");
    let status = response.status().as_u16();
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .expect("the body ends, cleanly or not");
    (status, body.is_ok())
}

fn rendered(proxy: &Proxy) -> String {
    let mut out = String::new();
    proxy.metrics().render(&mut out);
    out
}

/// Waits until the stable role's analysis counts show `errors` errors.
async fn wait_for_errors(proxy: &Proxy, errors: u64) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let counts = proxy.metrics().get("web", Role::Stable).map(|m| m.counts());
            if counts.is_some_and(|c| c.errors >= errors) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {errors} error(s) counted:\n{}", rendered(proxy)));
}

#[tokio::test]
async fn a_truncated_body_is_a_protocol_error_of_the_role() {
    let upstream = raw_upstream(Behaviour::Truncated).await;
    let running = start(
        snapshot(&[upstream.addr], Timeouts::default()),
        ServeOptions::default(),
    )
    .await;
    let mut sender = client(running.addr).await;
    let (status, clean) = get(&mut sender, "/").await;
    assert_eq!(status, 200);
    assert!(!clean, "a truncated body must not end cleanly downstream");

    wait_for_errors(&running.proxy, 1).await;
    let counts = running
        .proxy
        .metrics()
        .get("web", Role::Stable)
        .unwrap()
        .counts();
    assert_eq!((counts.requests, counts.errors), (1, 1), "counted once");
    let out = rendered(&running.proxy);
    for want in [
        "weir_http_requests_total{route=\"web\",role=\"stable\",code=\"200\"} 1",
        "weir_upstream_errors_total{route=\"web\",role=\"stable\",kind=\"protocol\"} 1",
    ] {
        assert!(out.contains(want), "missing {want} in\n{out}");
    }
}

#[tokio::test]
async fn a_body_silent_past_the_idle_timeout_is_cut_and_counted_as_a_timeout() {
    let upstream = raw_upstream(Behaviour::StallAfterFirstChunk).await;
    let timeouts = Timeouts {
        idle: Duration::from_millis(200),
        ..Timeouts::default()
    };
    let running = start(
        snapshot(&[upstream.addr], timeouts),
        ServeOptions::default(),
    )
    .await;
    let mut sender = client(running.addr).await;
    let started = std::time::Instant::now();
    let (status, clean) = get(&mut sender, "/").await;
    assert_eq!(status, 200);
    assert!(!clean, "a stalled body is cut");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "cut after the idle timeout, not before"
    );
    wait_for_errors(&running.proxy, 1).await;
    let out = rendered(&running.proxy);
    let want = "weir_upstream_errors_total{route=\"web\",role=\"stable\",kind=\"timeout\"} 1";
    assert!(out.contains(want), "missing {want} in\n{out}");
}

#[tokio::test]
async fn a_response_longer_than_the_request_timeout_is_cut_though_data_flows() {
    let upstream = raw_upstream(Behaviour::Drip).await;
    let timeouts = Timeouts {
        request: Duration::from_millis(500),
        idle: Duration::from_secs(30),
        ..Timeouts::default()
    };
    let running = start(
        snapshot(&[upstream.addr], timeouts),
        ServeOptions::default(),
    )
    .await;
    let mut sender = client(running.addr).await;
    let started = std::time::Instant::now();
    let (status, clean) = get(&mut sender, "/").await;
    assert_eq!(status, 200);
    assert!(!clean, "a response past the request timeout is cut");
    assert!(started.elapsed() >= Duration::from_millis(500));
    wait_for_errors(&running.proxy, 1).await;
    let out = rendered(&running.proxy);
    let want = "weir_upstream_errors_total{route=\"web\",role=\"stable\",kind=\"timeout\"} 1";
    assert!(out.contains(want), "missing {want} in\n{out}");
}

#[tokio::test]
async fn an_http2_client_that_shuts_its_window_holds_the_upstream_no_longer_than_the_deadline() {
    // hyper's server asks for the body only while the client's window is
    // open: the deadline must cut the exchange without that.
    let upstream = raw_upstream(Behaviour::Drip).await;
    let timeouts = Timeouts {
        request: Duration::from_millis(500),
        idle: Duration::from_secs(30),
        ..Timeouts::default()
    };
    let running = start(
        snapshot(&[upstream.addr], timeouts),
        ServeOptions::default(),
    )
    .await;
    let response = get_with_shut_window(running.addr, "/").await;

    // The body is never read, and the stream's window never opens.
    tokio::time::timeout(DEADLINE, async {
        while upstream.ended.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the upstream connection is closed at the deadline");
    // The client's window held the answer: counted as a request its client
    // left, not as an error of the role.
    let counts = running
        .proxy
        .metrics()
        .get("web", Role::Stable)
        .unwrap()
        .counts();
    assert_eq!((counts.requests, counts.errors), (1, 0));
    let out = rendered(&running.proxy);
    let want = "weir_http_requests_total{route=\"web\",role=\"stable\",code=\"200\"} 1";
    assert!(out.contains(want), "missing {want} in\n{out}");
    assert!(
        !out.contains("kind=\"timeout\"} 1"),
        "counted as a timeout:\n{out}"
    );
    drop(response);
}

#[tokio::test]
async fn an_answer_whose_end_came_is_not_cut_though_its_http2_client_shut_its_window() {
    let upstream = raw_upstream(Behaviour::Chunked).await;
    let timeouts = Timeouts {
        request: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let running = start(
        snapshot(&[upstream.addr], timeouts),
        ServeOptions::default(),
    )
    .await;
    let response = get_with_shut_window(running.addr, "/").await;
    // Counted at the deadline, by the watch, as the whole answer it is.
    tokio::time::timeout(DEADLINE, async {
        loop {
            let counts = running
                .proxy
                .metrics()
                .get("web", Role::Stable)
                .map(|m| m.counts());
            if counts.is_some_and(|c| c.requests >= 1) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request counted at its deadline");
    let counts = running
        .proxy
        .metrics()
        .get("web", Role::Stable)
        .unwrap()
        .counts();
    assert_eq!((counts.requests, counts.errors), (1, 0));
    assert_eq!(
        upstream.ended.load(Ordering::SeqCst),
        0,
        "the upstream connection of a whole answer is kept"
    );
    let (status, body) = (response.status(), response.into_body());
    assert_eq!(status, 200);
    drop(body);
}

#[tokio::test]
async fn an_endpoint_answering_5xx_is_ejected_after_five_in_a_row() {
    let failing = raw_upstream(Behaviour::Unavailable).await;
    let healthy = raw_upstream(Behaviour::Ok).await;
    let running = start(
        snapshot(&[failing.addr, healthy.addr], Timeouts::default()),
        ServeOptions::default(),
    )
    .await;
    let mut sender = client(running.addr).await;
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(get(&mut sender, "/").await.0);
    }
    // Ejected for 10 s after its fifth 503 in a row: the rest goes elsewhere.
    assert_eq!(
        failing.requests.load(Ordering::SeqCst),
        weir_proxy::upstream::EJECT_AFTER_FAILURES as usize,
        "statuses: {statuses:?}"
    );
    assert_eq!(healthy.requests.load(Ordering::SeqCst), 55);
    let out = rendered(&running.proxy);
    for want in [
        format!(
            "weir_upstream_ejections_total{{endpoint=\"{}\"}} 1",
            failing.addr
        ),
        format!("weir_upstream_ejected{{endpoint=\"{}\"}} 1", failing.addr),
        format!("weir_upstream_ejected{{endpoint=\"{}\"}} 0", healthy.addr),
    ] {
        assert!(out.contains(&want), "missing {want} in\n{out}");
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_ejected_and_no_longer_tried_first() {
    // Held bound, never listening: every connection is refused.
    let (_closed_port, closed) = closed_port();
    let healthy = raw_upstream(Behaviour::Ok).await;
    let running = start(
        snapshot(&[closed, healthy.addr], Timeouts::default()),
        ServeOptions::default(),
    )
    .await;
    let mut sender = client(running.addr).await;
    for _ in 0..40 {
        assert_eq!(get(&mut sender, "/").await, (200, true));
    }
    let out = rendered(&running.proxy);
    let want = format!("weir_upstream_ejections_total{{endpoint=\"{closed}\"}} 1");
    assert!(out.contains(&want), "missing {want} in\n{out}");
}

#[tokio::test]
async fn the_drain_cuts_connections_still_open_at_its_deadline() {
    let upstream = raw_upstream(Behaviour::Hang).await;
    let options = ServeOptions {
        drain_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let running = start(snapshot(&[upstream.addr], Timeouts::default()), options).await;
    let mut sender = client(running.addr).await;
    sender.ready().await.unwrap();
    let req = Request::get("/slow")
        .header("host", "test")
        .body(Empty::new())
        .unwrap();
    let in_flight = tokio::spawn(sender.send_request(req));
    tokio::time::timeout(DEADLINE, async {
        while upstream.requests.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request reached the upstream");

    running.stop.send_replace(true);
    let cut = tokio::time::timeout(DEADLINE, running.served)
        .await
        .expect("serve returns after the drain deadline")
        .unwrap();
    assert_eq!(cut, 1, "one connection was still open at the deadline");
    let answer = tokio::time::timeout(DEADLINE, in_flight)
        .await
        .expect("the cut connection ends the client's request")
        .unwrap();
    assert!(answer.is_err(), "no answer on a cut connection: {answer:?}");
}

#[tokio::test]
async fn over_its_connection_limit_a_listener_closes_new_clients() {
    let upstream = raw_upstream(Behaviour::Ok).await;
    let options = ServeOptions {
        max_connections: 4,
        ..ServeOptions::default()
    };
    let running = start(snapshot(&[upstream.addr], Timeouts::default()), options).await;
    let metrics = running.proxy.metrics().listener("default");

    // Four clients that send half a request head and wait.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(running.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    tokio::time::timeout(DEADLINE, async {
        while metrics.open.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("four connections open");

    // The fifth is closed at once, without an answer.
    let mut fifth = TcpStream::connect(running.addr).await.unwrap();
    let _ = fifth
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, fifth.read(&mut buf))
        .await
        .expect("the fifth connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let out = rendered(&running.proxy);
    for want in [
        "weir_connections_refused_total{listener=\"default\"} 1",
        "weir_connections_open{listener=\"default\"} 4",
    ] {
        assert!(out.contains(want), "missing {want} in\n{out}");
    }

    // Once they leave, a new client is served.
    drop(held);
    tokio::time::timeout(DEADLINE, async {
        while metrics.open.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the held connections are closed");
    let mut sender = client(running.addr).await;
    assert_eq!(get(&mut sender, "/").await, (200, true));
}

#[tokio::test]
async fn the_request_duration_covers_the_response_body() {
    let upstream = raw_upstream(Behaviour::SlowBody).await;
    let running = start(
        snapshot(&[upstream.addr], Timeouts::default()),
        ServeOptions::default(),
    )
    .await;
    let mut sender = client(running.addr).await;
    assert_eq!(get(&mut sender, "/").await, (200, true));
    let counts = running
        .proxy
        .metrics()
        .get("web", Role::Stable)
        .unwrap()
        .counts();
    assert_eq!((counts.requests, counts.errors), (1, 0));
    let out = rendered(&running.proxy);
    let sum = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("weir_http_request_duration_seconds_sum{route=\"web\",role=\"stable\"} ")
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no duration sum in\n{out}"));
    assert!(
        sum >= SLOW_BODY_PAUSE.as_secs_f64(),
        "the duration ({sum} s) ends with the body, after its {SLOW_BODY_PAUSE:?} pause"
    );
}
