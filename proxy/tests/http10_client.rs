//! An HTTP/1.0 client that asks for keep-alive, answered by an upstream
//! whose answer has no length (chunked): the body goes to the client
//! until the connection closes, and the answer says `connection: close`
//! on both paths, not keep-alive.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_config::Timeouts;
use weir_proxy::ServeOptions;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::take_request_head;

/// How long anything may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// An upstream answering every request with a chunked `hello`.
async fn chunked_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while take_request_head(&mut stream, &mut seen).await {
                    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                   5\r\nhello\r\n0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_answer_without_a_length_to_an_http10_client_says_it_closes() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let upstream = chunked_upstream().await;
        let weir = support::start(
            support::one_route(&[upstream], vec![], Timeouts::default()),
            ServeOptions {
                forwarding,
                ..ServeOptions::default()
            },
        )
        .await;
        let mut client = TcpStream::connect(weir.addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.0\r\nhost: test\r\nconnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, client.read_to_end(&mut answer))
            .await
            .expect("the answer, then the connection's end")
            .unwrap();
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        // HTTP/1.1 in the status line is allowed (RFC 9110 section 2.5).
        assert!(
            head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
            "{forwarding:?}: {head}"
        );
        assert!(
            head.contains("connection: close") && !head.contains("keep-alive"),
            "{forwarding:?}: {head}"
        );
        assert_eq!(body, "hello", "{forwarding:?}");
    }
}

/// weir's own answer that closes (a refused head) says only `close` to an
/// HTTP/1.0 client that asked for keep-alive, on both paths.
#[tokio::test]
async fn a_closing_answer_to_an_http10_client_says_only_close() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let upstream = chunked_upstream().await;
        let weir = support::start(
            support::one_route(&[upstream], vec![], Timeouts::default()),
            ServeOptions {
                forwarding,
                ..ServeOptions::default()
            },
        )
        .await;
        let mut client = TcpStream::connect(weir.addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.0\r\nhost: a..b\r\nconnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, client.read_to_end(&mut answer))
            .await
            .expect("the answer, then the connection's end")
            .unwrap();
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(head.contains(" 400 "), "{forwarding:?}: {head}");
        assert!(
            head.contains("connection: close") && !head.contains("keep-alive"),
            "{forwarding:?}: {head}"
        );
    }
}
