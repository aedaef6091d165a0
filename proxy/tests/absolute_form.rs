//! A request in absolute-form (`GET http://host?query`) goes to the
//! upstream in origin-form, on both paths, its empty path made `/` (RFC
//! 9112 section 3.2.1) with the query kept.

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

/// A raw upstream that reports the request line of each request it reads
/// (none has a body here) and answers each `200` without a body.
async fn upstream() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (lines_tx, lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let lines_tx = lines_tx.clone();
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
                    let line = String::from_utf8_lossy(&head);
                    let _ = lines_tx.send(line.lines().next().unwrap_or_default().to_owned());
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, lines)
}

#[tokio::test]
async fn an_absolute_form_target_goes_upstream_in_origin_form() {
    let cases = [
        ("http://test?x=1", "GET /?x=1 HTTP/1.1"),
        ("http://test", "GET / HTTP/1.1"),
        ("http://test/a/b?c=d", "GET /a/b?c=d HTTP/1.1"),
    ];
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let (upstream, mut lines) = upstream().await;
        let weir = support::start(
            support::one_route(&[upstream], vec![], Timeouts::default()),
            ServeOptions {
                forwarding,
                ..ServeOptions::default()
            },
        )
        .await;
        for (target, want) in cases {
            let mut client = TcpStream::connect(weir.addr).await.unwrap();
            let request =
                format!("GET {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let (head, status) = read_answer_head(&mut client, DEADLINE).await;
            assert_eq!(status, 200, "{forwarding:?} {target}: {head}");
            let line = tokio::time::timeout(DEADLINE, lines.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(line, want, "{forwarding:?} {target}");
        }
    }
}
