//! A GET or HEAD with a chunked body reaches the upstream with that body,
//! chunked, on both paths: hyper's client would send such a request with no
//! body at all (it takes an unknown length on those methods for none).

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weir_config::Timeouts;
use weir_proxy::ServeOptions;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::read_answer_head;

/// How long anything may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// The chunked body every request here carries, as sent and as forwarded.
const CHUNKED_BODY: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

/// A raw upstream that reports the bytes of each request it reads (its
/// head, and a chunked body when the head says so), and answers each
/// `200` without a body.
async fn recording_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => bytes.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                    let mut whole = end + 4;
                    if head.contains("transfer-encoding: chunked") {
                        // The body here always ends with its last chunk.
                        while !bytes[whole..].windows(5).any(|w| w == b"0\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                            }
                        }
                        let tail = bytes[whole..].windows(5).position(|w| w == b"0\r\n\r\n");
                        whole += tail.unwrap() + 5;
                    }
                    let _ = seen_tx.send(bytes.drain(..whole).collect());
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_get_or_head_with_a_chunked_body_keeps_it() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let (upstream, mut seen) = recording_upstream().await;
        let weir = support::start(
            support::one_route(&[upstream], vec![], Timeouts::default()),
            ServeOptions {
                forwarding,
                ..ServeOptions::default()
            },
        )
        .await;
        for method in ["GET", "HEAD"] {
            let mut client = TcpStream::connect(weir.addr).await.unwrap();
            let mut request = format!(
                "{method} / HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            .into_bytes();
            request.extend_from_slice(CHUNKED_BODY);
            client.write_all(&request).await.unwrap();
            let (head, status) = read_answer_head(&mut client, DEADLINE).await;
            assert_eq!(status, 200, "{forwarding:?} {method}: {head}");
            let got = tokio::time::timeout(DEADLINE, seen.recv())
                .await
                .unwrap()
                .unwrap();
            let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
            assert!(
                text.contains("transfer-encoding: chunked") && got.ends_with(CHUNKED_BODY),
                "{forwarding:?} {method}: the upstream got {text:?}"
            );
        }
    }
}
