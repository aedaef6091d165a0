//! The wait between two requests of a keep-alive connection runs from the
//! last answer, whoever made it: a request answered by weir itself (no
//! route, 404) starts it again as a forwarded one does.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_config::{HostMatch, Timeouts};
use weir_proxy::ServeOptions;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::{one_route, start};

/// The listener's header timeout, which bounds the keep-alive wait.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// An upstream answering every request head it reads with `200 ok`.
async fn ok_upstream() -> SocketAddr {
    support::fixed_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await
}

/// Writes `bytes` on `stream`, then reads one whole answer (every answer
/// here has a Content-Length); its status line, or `None` when the
/// connection ended first.
async fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> Option<String> {
    stream.write_all(bytes).await.ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_one = async {
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse().unwrap());
                if seen.len() >= end + 4 + length {
                    return head.lines().next().map(str::to_owned);
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_one)
        .await
        .expect("an answer or the connection's end within 5 s")
}

/// The first request comes with the first byte of the next, whose head
/// then takes most of the header timeout to come whole; it has no route
/// (404). The client then takes most of the keep-alive wait before a
/// third request: that wait counts from the 404, so the connection is
/// still open. Counted from the first answer, it would have ended before.
/// The pauses are the client's pace, 300 ms clear of either end.
async fn a_local_answer_starts_the_keep_alive_wait_again(path: ForwardingPath) {
    let upstream = ok_upstream().await;
    let options = ServeOptions {
        header_read_timeout: HEADER_READ_TIMEOUT,
        forwarding: path,
        ..ServeOptions::default()
    };
    let web_only = vec![HostMatch::Exact("web.test".to_owned())];
    let running = start(
        one_route(&[upstream], web_only, Timeouts::default()),
        options,
    )
    .await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();

    let first = exchange(&mut stream, b"GET / HTTP/1.1\r\nhost: web.test\r\n\r\nG").await;
    assert_eq!(first.as_deref(), Some("http/1.1 200 ok"), "{path:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let unrouted = exchange(
        &mut stream,
        b"ET / HTTP/1.1\r\nhost: elsewhere.test\r\n\r\n",
    )
    .await;
    assert_eq!(
        unrouted.as_deref(),
        Some("http/1.1 404 not found"),
        "{path:?}"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = exchange(&mut stream, b"GET / HTTP/1.1\r\nhost: web.test\r\n\r\n").await;
    assert_eq!(
        after.as_deref(),
        Some("http/1.1 200 ok"),
        "{path:?}: the keep-alive wait counted from the first answer, not from the 404"
    );
}

#[tokio::test]
async fn a_local_answer_starts_the_keep_alive_wait_again_on_the_own_path() {
    a_local_answer_starts_the_keep_alive_wait_again(ForwardingPath::Own).await;
}

#[tokio::test]
async fn a_local_answer_starts_the_keep_alive_wait_again_on_the_hyper_path() {
    a_local_answer_starts_the_keep_alive_wait_again(ForwardingPath::Hyper).await;
}
