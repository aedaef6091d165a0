//! HTTP/2 and TLS through real curl: h2c with prior knowledge on the plain
//! listener, and h2 and HTTP/1.1 negotiated by ALPN on a TLS listener with a
//! self-signed certificate (plain HTTP sent to it answered `400`, saying so); and an h2c client that stops reading is cut
//! as an HTTP/1 one is.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use weir_e2e::{
    FakeUpstream, LargeBodyUpstream, RecordingUpstream, Reply, Route, Weir, WeirConfig, within,
};

/// Runs curl with `args`; returns (body, "<http_version> <http_code>").
async fn curl(args: &[&str]) -> (String, String) {
    weir_e2e::curl(args, "%{http_version} %{http_code}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let (body, version) = curl(&["--http2-prior-knowledge", &weir.url("/h2c")]).await;
    assert_eq!(version, "2 200");
    assert_eq!(body, "stable\n");
    assert_eq!(stable.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_negotiates_h2_and_http11() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).with_tls()).await;
    let url = weir.https_url("/tls");

    let (body, version) = curl(&["--http2", "-k", &url]).await;
    assert_eq!(version, "2 200", "ALPN h2 over TLS");
    assert_eq!(body, "stable\n");

    let (body, version) = curl(&["--http1.1", "-k", &url]).await;
    assert_eq!(version, "1.1 200", "HTTP/1.1 over TLS");
    assert_eq!(body, "stable\n");

    // Plain HTTP still works beside it.
    let (body, version) = curl(&[&weir.url("/plain")]).await;
    assert_eq!(version, "1.1 200");
    assert_eq!(body, "stable\n");

    // Plain HTTP to the TLS listener is told so, in plain HTTP.
    let plain_to_tls = url.replacen("https://", "http://", 1);
    let (body, version) = curl(&[&plain_to_tls]).await;
    assert_eq!(version, "1.1 400", "{body}");
    assert!(body.contains("plain HTTP sent to a TLS listener"), "{body}");
    assert_eq!(stable.hits(), 3);
}

/// A 204 whose upstream gave it a `Content-Length` (RFC 9110 section 8.6
/// forbids one) reaches HTTP/2 clients without it: curl, as any HTTP/2
/// client, resets a stream whose 204 has one, and would get no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_reaches_http2_clients_without_the_length_its_upstream_gave_it() {
    let upstream = RecordingUpstream::start(|_| {
        Reply::keep("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
    })
    .await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])]).with_tls()).await;
    let (body, version) = curl(&["--http2-prior-knowledge", &weir.url("/none")]).await;
    assert_eq!((body.as_str(), version.as_str()), ("", "2 204"), "h2c");
    let (body, version) = curl(&["--http2", "-k", &weir.https_url("/none")]).await;
    assert_eq!((body.as_str(), version.as_str()), ("", "2 204"), "h2");
    assert_eq!(upstream.requests().len(), 2);
}

/// A client socket whose reads stop for good once `paused` is set: a
/// client that stops reading while its writes still go through.
struct PausableStream {
    inner: TcpStream,
    paused: Arc<AtomicBool>,
}

impl AsyncRead for PausableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.paused.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PausableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An h2c client that opens wide flow-control windows and then stops
/// reading a large answer is cut after the route's idle timeout, as an
/// HTTP/1 client is (`own_path.rs`): flow control never stops weir here,
/// the full socket does, and the upstream connection is closed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_client_that_stops_reading_is_cut_after_the_idle_timeout() {
    let upstream = LargeBodyUpstream::start().await;
    let weir = Weir::start(WeirConfig::new([
        Route::new("web", &[upstream.addr]).idle_timeout("1s")
    ]))
    .await;
    let paused = Arc::new(AtomicBool::new(false));
    let stream = TcpStream::connect(weir.addrs.http).await.unwrap();
    let io = TokioIo::new(PausableStream {
        inner: stream,
        paused: Arc::clone(&paused),
    });
    let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1 << 30)
        .initial_connection_window_size(1 << 30)
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(weir.url("/big"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within(
        Duration::from_secs(10),
        "the answer's head",
        sender.send_request(request),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    // Nothing more is read from the socket: weir's writes stall once the
    // socket buffers are full.
    paused.store(true, Ordering::Relaxed);
    upstream.stopped_short(Duration::from_secs(30)).await;
}
