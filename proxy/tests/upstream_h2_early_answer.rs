//! An HTTP/2 upstream that answers before the client's upload ended, on
//! real loopback sockets: as towards HTTP/1, the rest of the upload goes on
//! after an accepting answer (`202`) only until the client leaves it silent
//! for the idle timeout (or the deadline passes), and stops at once after a
//! refusal. The upstream reads each request body in a task of its own,
//! after answering, and reports how the body ended.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weir_config::Timeouts;
use weir_proxy::ServeOptions;

mod support;
use support::Running;

/// Generous bound for anything that should happen promptly.
const DEADLINE: Duration = Duration::from_secs(10);

/// Starts weir with one route to `upstream`, spoken to over `h2c`, with
/// these timeouts.
async fn start_weir_with(upstream: SocketAddr, timeouts: Timeouts) -> Running {
    support::start(
        support::one_h2c_route(upstream, timeouts),
        ServeOptions::default(),
    )
    .await
}

/// What the upstream read of a request body, and how the body ended.
#[derive(Debug)]
struct Upload {
    bytes: Vec<u8>,
    /// `Err` with hyper's error, debug-printed, when the stream was reset.
    ended: Result<(), String>,
}

/// An `h2c` upstream answering `413` on `/refuse` and `202` otherwise, at
/// once, then reading the request body and sending what it read.
async fn upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Upload>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (uploads, read) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let uploads = uploads.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let uploads = uploads.clone();
                async move {
                    let status = if req.uri().path() == "/refuse" {
                        413
                    } else {
                        202
                    };
                    let mut body = req.into_body();
                    tokio::spawn(async move {
                        let mut bytes = Vec::new();
                        let ended = loop {
                            match body.frame().await {
                                None => break Ok(()),
                                Some(Ok(frame)) => {
                                    if let Ok(data) = frame.into_data() {
                                        bytes.extend_from_slice(&data);
                                    }
                                }
                                // With the h2 error (and its reset code) inside.
                                Some(Err(error)) => break Err(format!("{error:?}")),
                            }
                        };
                        let _ = uploads.send(Upload { bytes, ended });
                    });
                    let answer = Response::builder()
                        .status(status)
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    Ok::<_, Infallible>(answer)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, read)
}

/// Sends `POST path` announcing 10 bytes of body, sends the first 5, and
/// reads the answer's head: the client's connection (still open, silent)
/// and the status. The head must say `connection: close`: the client's
/// connection cannot carry another request.
async fn upload_half(proxy: SocketAddr, path: &str) -> (TcpStream, u16) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: 10\r\n\r\nfirst");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (head, status) = support::read_answer_head(&mut stream, DEADLINE).await;
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "an early answer to an upload still going without `connection: close`: {head:?}"
    );
    (stream, status)
}

/// How the upstream saw the upload end, within `within`.
async fn upload_end(uploads: &mut mpsc::UnboundedReceiver<Upload>, within: Duration) -> Upload {
    tokio::time::timeout(within, uploads.recv())
        .await
        .unwrap_or_else(|_| panic!("the upload to the upstream was still open after {within:?}"))
        .unwrap()
}

/// The route's timeouts, in seconds.
fn timeouts(request: u64, idle: u64) -> Timeouts {
    Timeouts {
        request: Duration::from_secs(request),
        idle: Duration::from_secs(idle),
        ..Timeouts::default()
    }
}

/// Sends half an upload to `path` through a weir with `timeouts`, checks
/// the answer's `status`, then leaves the client connected and silent:
/// the upstream must see the upload reset with `CANCEL`, after the half
/// that came. How long after the answer it was reset.
async fn half_upload_ends(path: &str, timeouts: Timeouts, status: u16) -> Duration {
    let (addr, mut uploads) = upstream().await;
    let weir = start_weir_with(addr, timeouts).await;
    let (_client, answered) = upload_half(weir.addr, path).await;
    let answered_at = Instant::now();
    assert_eq!(answered, status);
    let upload = upload_end(&mut uploads, DEADLINE).await;
    let after = answered_at.elapsed();
    assert_eq!(upload.bytes, b"first");
    let reset = upload.ended.expect_err("the upload ended cleanly");
    assert!(reset.contains("CANCEL"), "reset otherwise: {reset}");
    after
}

/// A little less than a bound, for timers that fire a tick early.
fn nearly(bound: Duration) -> Duration {
    bound - Duration::from_millis(100)
}

#[tokio::test]
async fn an_accepted_upload_left_silent_ends_at_the_idle_timeout() {
    let after = half_upload_ends("/ingest", timeouts(60, 1), 202).await;
    assert!(
        after >= nearly(Duration::from_secs(1)),
        "ended {after:?} after the answer"
    );
}

#[tokio::test]
async fn an_accepted_upload_ends_at_the_deadline() {
    let after = half_upload_ends("/ingest", timeouts(1, 60), 202).await;
    // The deadline counts from the request, a few ms before the answer.
    assert!(
        after >= nearly(nearly(Duration::from_secs(1))),
        "ended {after:?} after the answer"
    );
}

#[tokio::test]
async fn a_refused_upload_stops_at_once() {
    // Neither bound comes during the test: the refusal alone stops it.
    let after = half_upload_ends("/refuse", timeouts(60, 60), 413).await;
    assert!(after < DEADLINE);
}

#[tokio::test]
async fn an_accepted_upload_the_client_finishes_arrives_whole() {
    let (addr, mut uploads) = upstream().await;
    let weir = start_weir_with(addr, timeouts(60, 60)).await;
    let (mut client, status) = upload_half(weir.addr, "/ingest").await;
    assert_eq!(status, 202);
    client.write_all(b"-rest").await.unwrap();
    let upload = upload_end(&mut uploads, DEADLINE).await;
    assert_eq!(upload.bytes, b"first-rest");
    assert_eq!(upload.ended, Ok(()));
}
