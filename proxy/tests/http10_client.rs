//! HTTP/1.0 clients that ask for keep-alive: an answer without a length
//! (chunked upstream) goes to them until the connection closes and says
//! `connection: close`, and so does weir's own closing answer, on both
//! paths, never `close, keep-alive`.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use weir_config::Timeouts;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::{fixed_upstream, one_route, send_until_closed, start_on};

/// How long anything may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// A chunked `hello`.
const CHUNKED_HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";

/// `request` on each path through weir in front of an upstream answering
/// [`CHUNKED_HELLO`]: the answer's head (lower case) and body, checked to
/// say `close` and nothing of keep-alive.
async fn closing_answers(request: &[u8]) -> Vec<(String, String)> {
    let mut answers = Vec::new();
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let upstream = fixed_upstream(CHUNKED_HELLO).await;
        let weir = start_on(
            one_route(&[upstream], vec![], Timeouts::default()),
            forwarding,
        )
        .await;
        let answer = send_until_closed(weir.addr, request, DEADLINE).await;
        let answer = answer.to_ascii_lowercase();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("connection: close") && !head.contains("keep-alive"),
            "{forwarding:?}: {head}"
        );
        answers.push((head.to_owned(), body.to_owned()));
    }
    answers
}

#[tokio::test]
async fn an_answer_without_a_length_to_an_http10_client_says_it_closes() {
    let request = b"GET / HTTP/1.0\r\nhost: test\r\nconnection: keep-alive\r\n\r\n";
    for (head, body) in closing_answers(request).await {
        // HTTP/1.1 in the status line is allowed (RFC 9110 section 2.5).
        assert!(
            head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
            "{head}"
        );
        assert_eq!(body, "hello");
    }
}

/// weir's own answer that closes (a refused head).
#[tokio::test]
async fn a_closing_answer_to_an_http10_client_says_only_close() {
    let request = b"GET / HTTP/1.0\r\nhost: a..b\r\nconnection: keep-alive\r\n\r\n";
    for (head, _) in closing_answers(request).await {
        assert!(head.contains(" 400 "), "{head}");
    }
}

/// An upstream that answers in HTTP/1.0, its body running to the close.
async fn http10_upstream() -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                if support::take_request_head(&mut stream, &mut seen).await {
                    let _ = stream
                        .write_all(b"HTTP/1.0 200 OK\r\nx-v: 10\r\n\r\nhttp10body")
                        .await;
                }
            });
        }
    });
    addr
}

/// An intermediary sends its own version (RFC 9110 section 2.5): an
/// HTTP/1.1 client gets an HTTP/1.1 status line for an upstream's HTTP/1.0
/// answer, on both paths (the hyper path passed `HTTP/1.0` on).
#[tokio::test]
async fn an_http10_answer_reaches_an_http11_client_as_http11() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let upstream = http10_upstream().await;
        let weir = start_on(
            one_route(&[upstream], vec![], Timeouts::default()),
            forwarding,
        )
        .await;
        let request = b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
        let answer = send_until_closed(weir.addr, request, DEADLINE).await;
        let answer = answer.to_ascii_lowercase();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("http/1.1 200 "), "{forwarding:?}: {head}");
        assert!(head.contains("x-v: 10"), "{forwarding:?}: {head}");
        assert!(body.contains("http10body"), "{forwarding:?}: {body}");
    }
}
