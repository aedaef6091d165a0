//! A GET or HEAD with a chunked body reaches the upstream with that body,
//! chunked, on both paths: hyper's client would send such a request with no
//! body at all (it takes an unknown length on those methods for none).

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir_proxy::http1::ForwardingPath;

mod support;
use support::{read_answer_head, start_recorded};

/// How long anything may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// The chunked body every request here carries, as sent and as forwarded.
const CHUNKED_BODY: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

#[tokio::test]
async fn a_get_or_head_with_a_chunked_body_keeps_it() {
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let (weir, mut seen) = start_recorded(forwarding).await;
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
