//! How weir ends HTTP/2 client connections, on real loopback sockets: one
//! that has had no request open for the listener's idle timeout is closed
//! with a `GOAWAY`, one whose answer is still being sent is not idle
//! however long that answer takes, and a drain lets the answer in flight
//! end before it closes the connection.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use weir_config::Timeouts;
use weir_proxy::ServeOptions;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::{one_route, start};

/// The listener's idle timeout in these tests.
const IDLE_TIMEOUT: Duration = Duration::from_millis(300);

/// The listener's drain timeout in these tests: under [`DEADLINE`], so a
/// connection cut at it shows as cut.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Generous bound for anything that should happen promptly.
const DEADLINE: Duration = Duration::from_secs(10);

/// An HTTP/1.1 upstream: `/held` answers a first chunk at once and the
/// last once `release` is notified; anything else answers `ok` at once.
async fn held_upstream(release: Arc<Notify>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let release = Arc::clone(&release);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head: Vec<u8> = seen.drain(..end + 4).collect();
                    if head.starts_with(b"GET /held ") {
                        send(
                            &mut stream,
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                        )
                        .await;
                        release.notified().await;
                        send(&mut stream, b"4\r\nlast\r\n0\r\n\r\n").await;
                    } else {
                        send(
                            &mut stream,
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        )
                        .await;
                    }
                }
            });
        }
    });
    addr
}

/// An `h2c` client connection to `proxy`; the task driving it ends when
/// the connection does.
async fn h2c_client(
    proxy: SocketAddr,
) -> (
    SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(connection))
}

/// weir with an `h2c` client whose answer to `/held` is under way: its
/// head and first part came, its upstream holds the rest until `release`.
struct HeldAnswer {
    weir: support::Running,
    sender: SendRequest<Empty<Bytes>>,
    connection: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    held: hyper::body::Incoming,
    release: Arc<Notify>,
}

/// Starts weir with `options` in front of [`held_upstream`], and a client
/// with an answer under way (see [`HeldAnswer`]).
async fn held_answer(options: ServeOptions) -> HeldAnswer {
    let release = Arc::new(Notify::new());
    let upstream = held_upstream(Arc::clone(&release)).await;
    let weir = start(one_route(&[upstream], vec![], Timeouts::default()), options).await;
    let (mut sender, connection) = h2c_client(weir.addr).await;
    let answer = tokio::time::timeout(DEADLINE, sender.send_request(get("/held")))
        .await
        .expect("the held answer's head in time")
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mut held = answer.into_body();
    let first = tokio::time::timeout(DEADLINE, held.frame())
        .await
        .expect("the held answer's first part in time")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "first");
    HeldAnswer {
        weir,
        sender,
        connection,
        held,
        release,
    }
}

/// Lets the upstream send the rest of the held answer, and checks that it
/// comes whole.
async fn end_held(release: &Notify, held: hyper::body::Incoming) {
    release.notify_one();
    let rest = tokio::time::timeout(DEADLINE, held.collect())
        .await
        .expect("the held answer's end in time")
        .expect("the held answer whole")
        .to_bytes();
    assert_eq!(rest, "last");
}

/// Waits for the client's `connection` to end (`what`), and checks that
/// it ended without an error: a `GOAWAY`, then the close.
async fn closed_gracefully(
    connection: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    what: &str,
) {
    let ended = tokio::time::timeout(DEADLINE, connection)
        .await
        .unwrap_or_else(|_| panic!("{what} in time"))
        .unwrap();
    assert!(ended.is_ok(), "a graceful close, not {ended:?}");
}

fn get(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(format!("http://test{path}"))
        .body(Empty::new())
        .unwrap()
}

async fn a_connection_is_closed_once_idle_and_never_while_an_answer_is_sent(path: ForwardingPath) {
    let options = ServeOptions {
        idle_timeout: IDLE_TIMEOUT,
        forwarding: path,
        ..ServeOptions::default()
    };
    // An answer whose body its upstream holds open for several idle
    // timeouts: the connection has a request open all along.
    let HeldAnswer {
        weir: _weir,
        mut sender,
        connection,
        held,
        release,
    } = held_answer(options).await;
    tokio::time::sleep(IDLE_TIMEOUT * 4).await;
    assert!(
        !connection.is_finished(),
        "the connection closed while an answer was being sent"
    );

    // No GOAWAY came: the connection still takes new requests.
    let quick = tokio::time::timeout(DEADLINE, sender.send_request(get("/quick")))
        .await
        .expect("the second answer's head in time")
        .expect("a new request on a connection with an answer in progress");
    assert_eq!(quick.status(), 200);
    let quick = quick.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(quick, "ok");

    // From before the held answer ends: weir's idle time starts when it
    // has sent the answer's end, which this client reads a little later.
    let idle_from = Instant::now();
    end_held(&release, held).await;

    // Now idle: closed by weir, gracefully, after the idle timeout.
    closed_gracefully(connection, "the idle connection closed by weir").await;
    assert!(
        idle_from.elapsed() >= IDLE_TIMEOUT,
        "closed {:?} after its last answer, before the idle timeout",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn on_the_own_path_an_idle_http2_connection_is_closed_and_a_busy_one_is_not() {
    a_connection_is_closed_once_idle_and_never_while_an_answer_is_sent(ForwardingPath::Own).await;
}

#[tokio::test]
async fn on_the_hyper_path_an_idle_http2_connection_is_closed_and_a_busy_one_is_not() {
    a_connection_is_closed_once_idle_and_never_while_an_answer_is_sent(ForwardingPath::Hyper).await;
}

async fn a_drain_lets_the_answer_in_flight_end_then_closes_the_connection(path: ForwardingPath) {
    let options = ServeOptions {
        drain_timeout: DRAIN_TIMEOUT,
        forwarding: path,
        ..ServeOptions::default()
    };
    let HeldAnswer {
        weir,
        mut sender,
        connection,
        held,
        release,
    } = held_answer(options).await;

    weir.stop.send(true).unwrap();
    // The client is told to open no new stream: a request sent once it
    // knows is refused, not answered.
    let refused = tokio::time::timeout(DEADLINE, async {
        loop {
            match sender.send_request(get("/quick")).await {
                Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "the drain sent no GOAWAY");

    end_held(&release, held).await;
    let cut = tokio::time::timeout(DEADLINE, weir.served)
        .await
        .expect("the drain's end in time")
        .unwrap();
    assert_eq!(
        cut, 0,
        "the connection was cut at the drain deadline, not closed after its answer"
    );
    closed_gracefully(connection, "the connection closed").await;
}

#[tokio::test]
async fn on_the_own_path_a_drain_closes_an_http2_connection_after_its_answer() {
    a_drain_lets_the_answer_in_flight_end_then_closes_the_connection(ForwardingPath::Own).await;
}

#[tokio::test]
async fn on_the_hyper_path_a_drain_closes_an_http2_connection_after_its_answer() {
    a_drain_lets_the_answer_in_flight_end_then_closes_the_connection(ForwardingPath::Hyper).await;
}

/// Writes `bytes` to `stream`, ignoring a peer that left.
async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
}
