//! Broken framing from clients is the client's fault (400, counted in
//! `weir_client_errors_total`, never an upstream error), and broken framing
//! from upstreams is the upstream's (502, an upstream protocol error, and
//! the connection is not reused). Raw sockets on both sides.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;
use weir_e2e::{
    FakeUpstream, LoadtestUpstream, Metrics, RawUpstream, Route, Weir, WeirConfig, raw_request,
    send_then_reset_while_stopped, wait_until, within,
};

const LIMIT: Duration = Duration::from_secs(10);

/// Request bodies whose chunked framing is broken, by what is wrong.
fn broken_chunked_bodies() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bad chunk size", b"zz\r\nhello\r\n0\r\n\r\n".to_vec()),
        (
            "overflowing chunk size",
            b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        ("bare LF", b"5\nhello\n0\n\n".to_vec()),
        (
            "more data than the size says",
            b"5\r\nhello world\r\n0\r\n\r\n".to_vec(),
        ),
        ("huge chunk extension", {
            let mut body = b"5;ext=".to_vec();
            body.extend(std::iter::repeat_n(b'a', 20_000));
            body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            body
        }),
    ]
}

fn chunked_post(header: Option<(&str, &str)>, body: &[u8]) -> Vec<u8> {
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n".to_vec();
    if let Some((name, value)) = header {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n").into_bytes()
}

fn upstream_errors(m: &Metrics, route: &str) -> f64 {
    m.sum("weir_upstream_errors_total", &[("route", route)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_request_bodies_get_400_and_count_as_client_errors() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .canary_by_header("x-canary", "always")]))
    .await;

    let cases = broken_chunked_bodies();
    for (what, body) in &cases {
        let r = raw_request(
            weir.addrs.http,
            &chunked_post(Some(("x-canary", "always")), body),
            LIMIT,
        )
        .await;
        assert_eq!(
            r.status,
            400,
            "{what}: {:?}",
            String::from_utf8_lossy(&r.raw)
        );
        assert!(r.text().contains("framing"), "{what}: {}", r.text());
        // hyper's own words for what is wrong follow.
        assert!(
            r.text().to_ascii_lowercase().contains("chunk"),
            "{what}: {}",
            r.text()
        );
    }

    let n = cases.len() as f64;
    let m = weir.metrics().await;
    let canary_labels = [("route", "web"), ("role", "canary")];
    assert_eq!(
        m.sum(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "canary"), ("code", "400")]
        ),
        n,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("weir_http_requests_total", &canary_labels),
        n,
        "nothing but the 400s: {}",
        m.text
    );
    assert_eq!(
        m.get(
            "weir_client_errors_total",
            &[("route", "web"), ("role", "canary"), ("kind", "framing")]
        ),
        Some(n),
        "{}",
        m.text
    );
    assert_eq!(upstream_errors(&m, "web"), 0.0, "{}", m.text);
    assert_eq!(stable.hits(), 0, "the stable upstream got a broken request");

    // The next client is served as usual.
    let r = raw_request(weir.addrs.http, &get_request("/next"), LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.header("x-upstream-name"), Some("stable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_problems_get_400_before_routing() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;

    let cases: [(&str, &[u8], &str); 13] = [
        (
            "missing_host",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            "Host header",
        ),
        (
            "duplicate_host",
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "more than one Host",
        ),
        (
            "host_userinfo",
            b"GET http://a@b.test/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "userinfo",
        ),
        (
            "host_userinfo",
            b"GET / HTTP/1.1\r\nHost: a@b.test\r\nConnection: close\r\n\r\n",
            "userinfo",
        ),
        (
            "invalid_host",
            b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
            "not a host name",
        ),
        (
            "invalid_host",
            b"GET / HTTP/1.1\r\nHost: a/b?c\r\nConnection: close\r\n\r\n",
            "not a host name",
        ),
        (
            "invalid_host",
            b"GET / HTTP/1.1\r\nHost: b.test:99999\r\nConnection: close\r\n\r\n",
            "not a host name",
        ),
        (
            "invalid_host",
            b"GET / HTTP/1.1\r\nHost: a..b\r\nConnection: close\r\n\r\n",
            "not a host name",
        ),
        // An absolute-form target's authority is the request's host.
        (
            "invalid_host",
            b"GET http://a..b/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "not a host name",
        ),
        (
            "invalid_target",
            b"GET * HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "* (OPTIONS)",
        ),
        (
            "invalid_target",
            b"CONNECT http://b.test:443/ HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "host:port (CONNECT)",
        ),
        (
            "invalid_target",
            b"GET b.test:80 HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "host:port (CONNECT)",
        ),
        (
            "dot_segment",
            b"GET /a/%2e%2e/b HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
            "`..` segment",
        ),
    ];
    for (reason, request, says) in cases {
        let r = raw_request(weir.addrs.http, request, LIMIT).await;
        assert_eq!(
            r.status,
            400,
            "{reason}: {:?}",
            String::from_utf8_lossy(&r.raw)
        );
        assert!(r.text().contains(says), "{reason}: {}", r.text());
    }
    assert_eq!(stable.hits(), 0, "a refused request reached the upstream");

    let m = weir.metrics().await;
    for (reason, want) in [
        ("missing_host", 1.0),
        ("duplicate_host", 1.0),
        ("host_userinfo", 2.0),
        ("invalid_host", 5.0),
        ("invalid_target", 3.0),
        ("dot_segment", 1.0),
    ] {
        assert_eq!(
            m.get("weir_rejected_requests_total", &[("reason", reason)]),
            Some(want),
            "{reason}: {}",
            m.text
        );
    }
    // Refused before routing: not a request of any role.
    assert_eq!(m.sum("weir_http_requests_total", &[]), 0.0, "{}", m.text);

    let r = raw_request(weir.addrs.http, &get_request("/next"), LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    // A name, an address in brackets, with a port and spaces around it.
    let r = raw_request(
        weir.addrs.http,
        b"GET / HTTP/1.1\r\nHost:  [::1]:8080 \r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    assert_eq!(stable.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_is_sent_upstream_with_the_endpoint_as_host() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;

    // A forwarded host the client made up is not passed on either.
    let r = raw_request(
        weir.addrs.http,
        b"GET /__upstream/headers HTTP/1.0\r\nX-Forwarded-Host: evil.test\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    let seen: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(seen["host"], stable.addr.to_string(), "{seen:#}");
    assert!(seen.get("x-forwarded-host").is_none(), "{seen:#}");

    let m = weir.metrics().await;
    assert_eq!(
        m.get(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "stable"), ("code", "200")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
    let r = raw_request(weir.addrs.http, &get_request("/next"), LIMIT).await;
    assert_eq!(r.status, 200);
    assert_eq!(stable.hits(), 2);
}

/// A raw upstream that answers `/bad` with `bad` and anything else with a
/// plain 200 naming the path.
async fn raw_upstream_with(bad: &'static [u8]) -> RawUpstream {
    RawUpstream::start(move |head| {
        if head.starts_with("GET /bad ") {
            bad.to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".to_vec()
        }
    })
    .await
}

/// Sends `/bad` through weir and expects a 502 counted as a protocol error
/// of the stable role; then `/next` must be served on a new upstream
/// connection.
async fn expect_502_and_no_reuse(upstream: &RawUpstream, weir: &Weir) {
    let r = raw_request(weir.addrs.http, &get_request("/bad"), LIMIT).await;
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.raw));
    assert!(r.text().contains("upstream"), "{}", r.text());

    let m = weir.metrics().await;
    assert_eq!(
        m.get(
            "weir_upstream_errors_total",
            &[("route", "web"), ("role", "stable"), ("kind", "protocol")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("weir_http_requests_total", &[("route", "web")]),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.get(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "stable"), ("code", "502")]
        ),
        Some(1.0),
        "{}",
        m.text
    );

    let r = raw_request(weir.addrs.http, &get_request("/next"), LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.body, b"ok\n");
    let received = upstream.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(received[0].head.starts_with("GET /bad "), "{received:?}");
    assert!(received[1].head.starts_with("GET /next "), "{received:?}");
    assert_ne!(
        received[0].connection, received[1].connection,
        "the connection of the broken response was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_status_outside_100_to_599_is_a_502() {
    let upstream = raw_upstream_with(b"HTTP/1.1 600 Odd\r\nContent-Length: 3\r\n\r\nodd").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
    expect_502_and_no_reuse(&upstream, &weir).await;
    let m = weir.metrics().await;
    assert_eq!(
        m.get("weir_http_requests_total", &[("code", "600")]),
        None,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_with_both_lengths_is_a_502() {
    let upstream = raw_upstream_with(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
    expect_502_and_no_reuse(&upstream, &weir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_with_a_bad_chunk_size_is_a_502() {
    let upstream = raw_upstream_with(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
    expect_502_and_no_reuse(&upstream, &weir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_other_than_websocket_are_not_forwarded() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .canary_by_header("x-canary", "always")]))
    .await;

    // An h2c upgrade followed, on the same connection, by a request for the
    // canary: the upgrade must not open a tunnel that skips routing.
    let mut request = b"GET /__upstream/headers HTTP/1.1\r\nHost: shop.test\r\n\
        Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
        HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        .to_vec();
    request.extend_from_slice(
        b"GET /second HTTP/1.1\r\nHost: shop.test\r\nx-canary: always\r\nConnection: close\r\n\r\n",
    );
    let r = raw_request(weir.addrs.http, &request, LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    let text = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(!text.contains(" 101 "), "{text}");
    let first_body_end = text.find("HTTP/1.1 200 OK").unwrap();
    let seen = &text[first_body_end..];
    for header in ["\"upgrade\"", "\"http2-settings\"", "\"connection\""] {
        assert!(!seen.contains(header), "upstream saw {header}: {text}");
    }
    assert!(
        text.matches("HTTP/1.1 200 OK").count() == 2 && text.contains("canary\n"),
        "the second request was routed to the canary: {text}"
    );
    assert_eq!((stable.hits(), canary.hits()), (1, 1));

    wait_until(LIMIT, "both requests counted", || async {
        let m = weir.metrics().await;
        (m.sum("weir_http_requests_total", &[("route", "web")]) == 2.0).then_some(())
    })
    .await;
    let m = weir.metrics().await;
    assert_eq!(
        m.get(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "canary"), ("code", "200")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_101_to_a_stripped_upgrade_is_a_502() {
    let upstream = raw_upstream_with(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
    let r = raw_request(
        weir.addrs.http,
        b"GET /bad HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(r.status, 502, "{:?}", String::from_utf8_lossy(&r.raw));
    let received = upstream.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let head = received[0].head.to_ascii_lowercase();
    assert!(!head.contains("upgrade"), "upstream saw {head}");
    let m = weir.metrics().await;
    assert_eq!(
        m.get(
            "weir_upstream_errors_total",
            &[("route", "web"), ("role", "stable"), ("kind", "protocol")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_101_to_a_protocol_the_request_did_not_offer_is_a_502() {
    // RFC 9110 section 7.8: the server switches only to a protocol the
    // client listed; a 101 without `Upgrade` names none.
    for answer in [
        &b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"[..],
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
    ] {
        let upstream = raw_upstream_with(answer).await;
        let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
        let r = raw_request(
            weir.addrs.http,
            b"GET /bad HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            LIMIT,
        )
        .await;
        let text = String::from_utf8_lossy(&r.raw).into_owned();
        assert_eq!(r.status, 502, "{text}");
        assert!(!text.contains(" 101 "), "{text}");
        let received = upstream.received();
        assert_eq!(received.len(), 1, "{received:?}");
        assert!(
            received[0]
                .head
                .to_ascii_lowercase()
                .contains("upgrade: websocket"),
            "the upgrade was offered: {received:?}"
        );
        let m = weir.metrics().await;
        assert_eq!(
            m.get(
                "weir_upstream_errors_total",
                &[("route", "web"), ("role", "stable"), ("kind", "protocol")]
            ),
            Some(1.0),
            "{}",
            m.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_both_lengths_is_sent_chunked_and_its_connection_closed() {
    let upstream = raw_upstream_with(b"").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;

    // A second request pipelined after it must not be read: the
    // connection closes after the answer (RFC 9112 section 6.3).
    let request = b"POST /both HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\n\
        Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
        GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n";
    let r = raw_request(weir.addrs.http, request, LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    assert_eq!(
        String::from_utf8_lossy(&r.raw).matches("HTTP/1.1").count(),
        1,
        "one answer, then the connection closed: {:?}",
        String::from_utf8_lossy(&r.raw)
    );
    let received = upstream.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let head = received[0].head.to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(received[0].body, b"5\r\nhello\r\n0\r\n\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_counts_once_against_its_role() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let weir = Weir::start(WeirConfig::new([Route::new("ws", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .canary_by_header("x-canary", "always")]))
    .await;

    within(LIMIT, "a websocket exchange with the canary", async {
        let request = http::Request::get(format!("ws://{}/chat", weir.addrs.http))
            .header("host", weir.addrs.http.to_string())
            .header("x-canary", "always")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header(
                "sec-websocket-key",
                tokio_tungstenite::tungstenite::handshake::client::generate_key(),
            )
            .body(())
            .unwrap();
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.status(), 101);
        for i in 0..5 {
            let text = format!("hello {i}");
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
        }
        ws.close(None).await.unwrap();
    })
    .await;
    assert_eq!(canary.stats().await["websockets"], 1);
    let m = weir.metrics().await;
    assert_eq!(
        m.get(
            "weir_http_requests_total",
            &[("route", "ws"), ("role", "canary"), ("code", "101")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("weir_http_requests_total", &[("route", "ws")]),
        1.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_short_by_the_client_is_not_an_upstream_error() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;

    let mut stream = tokio::net::TcpStream::connect(weir.addrs.http)
        .await
        .unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\nhello")
        .await
        .unwrap();
    wait_until(LIMIT, "the upstream received the head", || async {
        (stable.hits() == 1).then_some(())
    })
    .await;
    stream.shutdown().await.unwrap();
    drop(stream);

    let m = wait_until(LIMIT, "the cut upload counted", || async {
        let m = weir.metrics().await;
        (m.sum("weir_client_errors_total", &[("route", "web")]) == 1.0).then_some(m)
    })
    .await;
    // Answered 400 when hyper reports the short body first, recorded 499
    // when it drops the request for the closed connection first.
    let client_caused = m.sum(
        "weir_client_errors_total",
        &[("route", "web"), ("kind", "incomplete_body")],
    ) + m.sum(
        "weir_client_errors_total",
        &[("route", "web"), ("kind", "abandoned")],
    );
    assert_eq!(client_caused, 1.0, "{}", m.text);
    assert_eq!(upstream_errors(&m, "web"), 0.0, "{}", m.text);
    let server_errors: f64 = ["500", "502", "503", "504"]
        .iter()
        .map(|code| m.sum("weir_http_requests_total", &[("code", code)]))
        .sum();
    assert_eq!(server_errors, 0.0, "{}", m.text);

    let r = raw_request(weir.addrs.http, &get_request("/next"), LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_forwards_the_upgrades_it_lists_and_strips_the_others() {
    let tunnel = FakeUpstream::start("tunnel").await;
    let plain = FakeUpstream::start("plain").await;
    let weir = Weir::start(WeirConfig::new([
        Route::new("tunnel", &[tunnel.addr])
            .hosts(&["tunnel.test"])
            .upgrades(&["x-tunnel"]),
        Route::new("plain", &[plain.addr]),
    ]))
    .await;
    let ask = |host: &str| {
        format!(
            "GET /__upstream/headers HTTP/1.1\r\nHost: {host}\r\n\
             Connection: Upgrade, close\r\nUpgrade: h2c, X-Tunnel/2, websocket\r\n\r\n"
        )
    };

    // The route that lists x-tunnel forwards it, alone, with Connection: upgrade.
    let r = raw_request(weir.addrs.http, ask("tunnel.test").as_bytes(), LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    let text = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(
        text.contains("\"upgrade\":\"X-Tunnel/2\"") && text.contains("\"connection\":\"upgrade\""),
        "the upstream sees only the listed protocol: {text}"
    );

    // The route with the default list forwards websocket only.
    let r = raw_request(weir.addrs.http, ask("plain.test").as_bytes(), LIMIT).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    let text = String::from_utf8_lossy(&r.raw).into_owned();
    assert!(
        text.contains("\"upgrade\":\"websocket\""),
        "the default list forwards websocket alone: {text}"
    );
    assert!(
        !text.contains("X-Tunnel") && !text.contains("h2c"),
        "{text}"
    );
    assert_eq!((tunnel.hits(), plain.hits()), (1, 1));
}

/// An HTTP/2 (h2c) upstream that reads the whole body before it answers.
async fn h2c_reading_upstream() -> std::net::SocketAddr {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let read = req.into_body().collect().await.map(|b| b.to_bytes().len());
                        let text = format!("read {read:?}");
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(text)),
                        ))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    addr
}

/// A body the client breaks on its way to an HTTP/2 upstream is the
/// client's fault, as towards an HTTP/1 one: 400, counted in
/// `weir_client_errors_total`, never a 502 of the upstream (hyper's HTTP/2
/// client resets the stream, which read as the upstream breaking it); a
/// client that resets its connection inside its body has left (499).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_to_an_http_2_upstream_is_the_clients_fault() {
    let upstream = h2c_reading_upstream().await;
    let weir = Weir::start(WeirConfig::new([
        Route::new("web", &[upstream]).stable_key("protocol: h2c")
    ]))
    .await;
    let broken = b"POST /up HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n";
    let r = raw_request(weir.addrs.http, broken, LIMIT).await;
    assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(&r.raw));
    // A body cut short: the client closes its side inside it.
    let mut stream = tokio::net::TcpStream::connect(weir.addrs.http)
        .await
        .unwrap();
    stream
        .write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut raw = Vec::new();
    within(LIMIT, "the answer to a cut body", async {
        use tokio::io::AsyncReadExt as _;
        let _ = stream.read_to_end(&mut raw).await;
    })
    .await;
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // A reset inside the body: weir is served the head, half the body and
    // the reset at once.
    let stream = tokio::net::TcpStream::connect(weir.addrs.http)
        .await
        .unwrap();
    send_then_reset_while_stopped(
        weir.pid(),
        stream,
        b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await;
    let m = wait_until(LIMIT, "the three requests counted", || async {
        let m = weir.metrics().await;
        (m.sum("weir_client_errors_total", &[("route", "web")]) == 3.0).then_some(m)
    })
    .await;
    assert_eq!(
        m.sum(
            "weir_http_requests_total",
            &[("route", "web"), ("code", "499")]
        ),
        1.0,
        "{}",
        m.text
    );
    for kind in ["framing", "incomplete_body", "abandoned"] {
        assert_eq!(
            m.sum(
                "weir_client_errors_total",
                &[("route", "web"), ("kind", kind)]
            ),
            1.0,
            "{kind}: {}",
            m.text
        );
    }
    assert_eq!(upstream_errors(&m, "web"), 0.0, "{}", m.text);
}

/// An HTTP/2 field value with a space or tab at either end makes the
/// request malformed (RFC 9113 section 8.2.1): `400`, counted as
/// `field_value_whitespace`, nothing upstream. Over HTTP/1 that whitespace
/// is dropped in parsing, and the request is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_field_value_with_whitespace_at_an_edge_is_refused() {
    use http_body_util::BodyExt as _;
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    for (value, status) in [("always", 200), ("always ", 400), ("\talways", 400)] {
        let stream = tokio::net::TcpStream::connect(weir.addrs.http)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = hyper::Request::get("http://shop.test/")
            .header("x-canary", value)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = within(LIMIT, "the HTTP/2 answer", sender.send_request(request))
            .await
            .unwrap();
        let got = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{value:?}: {body}");
        if status == 400 {
            assert!(
                body.contains("starts or ends with a space or a tab"),
                "{body}"
            );
        }
    }
    let r = raw_request(
        weir.addrs.http,
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nX-Canary: always \r\nConnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.raw));
    assert_eq!(stable.hits(), 2);
    let m = weir.metrics().await;
    assert_eq!(
        m.get(
            "weir_rejected_requests_total",
            &[("reason", "field_value_whitespace")]
        ),
        Some(2.0),
        "{}",
        m.text
    );
}
