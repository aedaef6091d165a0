//! Trailer fields that no trailer may carry (connection, framing and
//! routing fields, RFC 9110 section 6.5.1) are dropped on the way, both
//! ways: an HTTP/2 peer refuses connection fields, and an upload to it
//! would otherwise never end (the request waited for its timeout, a 504
//! counted against the upstream). The other trailer fields pass.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use weir_config::Timeouts;
use weir_proxy::ServeOptions;

mod support;

/// How long an answer may take: far less than the default request timeout.
const DEADLINE: Duration = Duration::from_secs(5);

/// The trailer names of `trailers`, sorted and joined with commas.
fn names(trailers: Option<&HeaderMap>) -> String {
    let mut names: Vec<&str> = trailers
        .map(|t| t.keys().map(http::HeaderName::as_str).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names.join(",")
}

/// An `h2c` upstream answering each request, once its body and trailers
/// came, with the names of the trailer fields it got.
async fn h2_upstream() -> SocketAddr {
    support::hyper_upstream(true, |request: Request<hyper::body::Incoming>| async move {
        let body = request.into_body().collect().await.unwrap();
        Response::new(Full::new(Bytes::from(names(body.trailers()))))
    })
    .await
}

/// An HTTP/1 chunked upload whose trailers carry connection, framing and
/// routing fields reaches an HTTP/2 upstream without them, at once.
#[tokio::test]
async fn request_trailers_lose_the_fields_no_trailer_may_carry() {
    let upstream = h2_upstream().await;
    let weir = support::start(
        support::one_h2c_route(upstream, Timeouts::default()),
        ServeOptions::default(),
    )
    .await;
    let answer = support::send_until_closed(
        weir.addr,
        b"POST / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
              5\r\nhello\r\n0\r\ntransfer-encoding: chunked\r\nconnection: close\r\nkeep-alive: 1\r\n\
              te: gzip\r\nhost: evil\r\ncontent-length: 99\r\nx-checksum: 1\r\n\r\n",
        DEADLINE,
    )
    .await;
    let (head, seen) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(seen, "x-checksum", "the trailers the upstream got");
}

/// An HTTP/1 upstream's chunked answer whose trailers carry connection
/// fields reaches an HTTP/2 client whole, with its other trailers.
#[tokio::test]
async fn answer_trailers_lose_the_fields_no_trailer_may_carry() {
    let upstream = support::fixed_upstream(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
          5\r\nhello\r\n0\r\nconnection: close\r\ntransfer-encoding: chunked\r\nx-sum: 5\r\n\r\n",
    )
    .await;
    let weir = support::start(
        support::one_route(&[upstream], vec![], Timeouts::default()),
        ServeOptions::default(),
    )
    .await;
    let stream = TcpStream::connect(weir.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let exchange = async {
        let response = sender.send_request(request).await.unwrap();
        let mut body = response.into_body();
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            let frame: Frame<Bytes> = frame.expect("the whole answer");
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        (data, trailers)
    };
    let (data, trailers) = tokio::time::timeout(DEADLINE, exchange).await.unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(names(trailers.as_ref()), "x-sum");
}
