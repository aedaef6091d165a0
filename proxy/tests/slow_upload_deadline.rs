//! A client that sends its body slowly does not use up its upstream's
//! time: the request's deadline is moved later by the time the request
//! waited on its client's upload, so a healthy upstream answers in time,
//! on both paths. Otherwise any client could make a healthy role time out
//! (`504`, an error of the role) by sending its body just before the
//! deadline.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use weir_config::Timeouts;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::{hyper_upstream, one_route, start_on};

/// The route's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long the client waits between its head and its body.
const CLIENT_PAUSE: Duration = Duration::from_millis(800);
/// How long the upstream takes once it has the whole request.
const UPSTREAM_TAKES: Duration = Duration::from_millis(400);

/// Through weir on `forwarding`, with a request timeout of
/// [`REQUEST_TIMEOUT`], in front of `upstream`: a POST whose 5-byte body
/// comes [`CLIENT_PAUSE`] after its head. The whole answer, and how long
/// after the head it ended.
async fn post_slowly(
    upstream: std::net::SocketAddr,
    forwarding: ForwardingPath,
) -> (String, Duration) {
    let timeouts = Timeouts {
        request: REQUEST_TIMEOUT,
        ..Timeouts::default()
    };
    let weir = start_on(one_route(&[upstream], vec![], timeouts), forwarding).await;
    let mut client = tokio::net::TcpStream::connect(weir.addr).await.unwrap();
    client
        .write_all(
            b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let head_sent = std::time::Instant::now();
    // The client's own pause: what the test is about, not a wait for weir.
    tokio::time::sleep(CLIENT_PAUSE).await;
    client.write_all(b"hello").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
        .await
        .expect("the answer in time")
        .unwrap();
    let took = head_sent.elapsed();
    (String::from_utf8_lossy(&answer).into_owned(), took)
}

#[tokio::test]
async fn a_slow_upload_leaves_the_upstream_its_whole_timeout() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let upstream = hyper_upstream(false, |request| async move {
            use http_body_util::BodyExt as _;
            let body = request.into_body().collect().await.unwrap().to_bytes();
            tokio::time::sleep(UPSTREAM_TAKES).await;
            hyper::Response::new(http_body_util::Full::new(body))
        })
        .await;
        let (answer, _) = post_slowly(upstream, forwarding).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 "),
            "{forwarding:?}: {answer}"
        );
        assert!(answer.ends_with("hello"), "{forwarding:?}: {answer}");
    }
}

/// The deadline moves by the client's wait, and by no more: an upstream
/// that never answers gets its `504` once `timeouts.request` has passed
/// after the body came, not at the old deadline and not later.
#[tokio::test]
async fn an_upstream_that_never_answers_times_out_a_request_after_the_body() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let upstream = hyper_upstream(false, |_request| async move {
            std::future::pending::<()>().await;
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()))
        })
        .await;
        let (answer, took) = post_slowly(upstream, forwarding).await;
        assert!(
            answer.starts_with("HTTP/1.1 504 "),
            "{forwarding:?}: {answer}"
        );
        // The old deadline was at 1 s; the moved one is at 1.8 s.
        assert!(
            took >= REQUEST_TIMEOUT + CLIENT_PAUSE - Duration::from_millis(100),
            "{forwarding:?}: 504 after {took:?}"
        );
        assert!(
            took < REQUEST_TIMEOUT + CLIENT_PAUSE + Duration::from_millis(900),
            "{forwarding:?}: 504 after {took:?}"
        );
    }
}
