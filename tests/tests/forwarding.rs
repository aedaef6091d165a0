//! What the upstream sees: `X-Forwarded-*` set, hop-by-hop headers removed
//! (the fixed list and any header named in `Connection`), end-to-end headers
//! kept; the cookies of an HTTP/2 request in one `Cookie` line.

use std::time::Duration;

use weir_e2e::{Conn, FakeUpstream, Route, Weir, WeirConfig, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_set_and_hop_by_hop_removed() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;

    let response = within(Duration::from_secs(10), "the request", async {
        let mut conn = Conn::open(weir.addrs.http).await.unwrap();
        conn.get(
            "/__upstream/headers",
            &[
                ("host", "shop.example.com"),
                ("connection", "keep-alive, x-secret-hop"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("trailer", "x-checksum"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("x-secret-hop", "must not pass"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await
        .unwrap()
    })
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.json();
    let header = |name: &str| seen.get(name).and_then(|v| v.as_str()).map(str::to_owned);

    assert_eq!(
        header("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "{seen:#}"
    );
    assert_eq!(
        header("x-forwarded-proto").as_deref(),
        Some("http"),
        "{seen:#}"
    );
    assert_eq!(
        header("x-forwarded-host").as_deref(),
        Some("shop.example.com"),
        "{seen:#}"
    );
    assert_eq!(header("x-end-to-end").as_deref(), Some("kept"), "{seen:#}");
    let leaked: Vec<&str> = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "x-secret-hop",
    ]
    .into_iter()
    .filter(|h| header(h).is_some())
    .collect();
    assert!(
        leaked.is_empty(),
        "hop-by-hop headers reached the upstream: {leaked:?} in {seen:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_lines_are_kept_and_extended() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let response = within(Duration::from_secs(10), "the request", async {
        let mut conn = Conn::open(weir.addrs.http).await.unwrap();
        conn.get(
            "/__upstream/headers",
            &[
                ("host", "shop.example.com"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-forwarded-for", "198.51.100.2, 192.0.2.9"),
            ],
        )
        .await
        .unwrap()
    })
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.json();
    assert_eq!(
        seen.get("x-forwarded-for").and_then(|v| v.as_str()),
        Some("203.0.113.7, 198.51.100.2, 192.0.2.9, 127.0.0.1"),
        "{seen:#}"
    );
}

/// An HTTP/2 client may split its cookies over several `cookie` fields; an
/// HTTP/1.1 upstream gets them in one line, joined by "; " (RFC 9113
/// section 8.2.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_requests_cookies_reach_an_http1_upstream_in_one_line() {
    let upstream = weir_e2e::RecordingUpstream::named("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
    let url = format!("http://{}/c", weir.addrs.http);
    let (body, code) = weir_e2e::curl(
        &[
            "--http2-prior-knowledge",
            "-H",
            "Cookie: a=b",
            "-H",
            "Cookie: c=d",
            &url,
        ],
        "%{http_code} %{http_version}",
    )
    .await;
    assert_eq!(code, "200 2", "{body}");
    let requests = upstream.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header_values("cookie"), ["a=b; c=d"]);
}
