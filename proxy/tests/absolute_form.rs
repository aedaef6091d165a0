//! A request in absolute-form (`GET http://host?query`) goes to the
//! upstream in origin-form, on both paths, its empty path made `/` (RFC
//! 9112 section 3.2.1) with the query kept.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use weir_proxy::http1::ForwardingPath;

mod support;
use support::{send_until_closed, start_recorded};

/// How long anything may take.
const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_absolute_form_target_goes_upstream_in_origin_form() {
    let cases = [
        ("http://test?x=1", "GET /?x=1 HTTP/1.1"),
        ("http://test", "GET / HTTP/1.1"),
        ("http://test/a/b?c=d", "GET /a/b?c=d HTTP/1.1"),
    ];
    for forwarding in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let (weir, mut requests) = start_recorded(forwarding).await;
        for (target, want) in cases {
            let request =
                format!("GET {target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
            let answer = send_until_closed(weir.addr, request.as_bytes(), DEADLINE).await;
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "{forwarding:?} {target}: {answer}"
            );
            let got = tokio::time::timeout(DEADLINE, requests.recv())
                .await
                .unwrap()
                .unwrap();
            let line = String::from_utf8_lossy(&got)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            assert_eq!(line, want, "{forwarding:?} {target}");
        }
    }
}
