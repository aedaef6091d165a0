//! A request that matches no route gets 404 with a text body naming the host
//! and path, never reaches an upstream, and is not in
//! `weir_http_requests_total`.

use std::time::Duration;

use weir_e2e::{Conn, FakeUpstream, Route, Weir, WeirConfig, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_host_or_path_gets_404_naming_both() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("shop", &[stable.addr])
        .hosts(&["shop.example.com"])
        .path_prefix("/shop")]))
    .await;

    within(Duration::from_secs(10), "the requests", async {
        let mut conn = Conn::open(weir.addrs.http).await.unwrap();
        // Wrong host, then right host and wrong path.
        for (host, path) in [
            ("other.example.org", "/nothing/here"),
            ("shop.example.com", "/elsewhere"),
        ] {
            let r = conn.get(path, &[("host", host)]).await.unwrap();
            assert_eq!(r.status, 404, "{host}{path}: {}", r.text());
            let body = r.text();
            assert!(
                body.contains(host) && body.contains(path),
                "404 body for {host}{path} does not name both: {body:?}"
            );
        }
        // A long path is named, cut: the body stays short.
        let long = format!("/{}", "x".repeat(6000));
        let r = conn
            .get(&long, &[("host", "shop.example.com")])
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        let body = r.text();
        assert!(
            body.len() < 600 && body.contains(&format!("\"/{}\"...", "x".repeat(255))),
            "{} bytes: {body:?}",
            body.len()
        );
        // The route itself works.
        let r = conn
            .get("/shop/cart", &[("host", "shop.example.com")])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.upstream(), "stable");
    })
    .await;
    assert_eq!(stable.hits(), 1);
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_http_requests_total", &[]),
        1.0,
        "only the routed request is counted"
    );
}

/// weir's own answers to a HEAD request (a 404, a refused head) are heads
/// alone, with the length a GET would get, on both forwarding paths: over
/// HTTP/2 a body after a HEAD answer is a protocol error to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weirs_own_answers_to_head_have_no_body_on_either_path() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([
        Route::new("shop", &[stable.addr]).hosts(&["shop.example.com"])
    ]))
    .await;
    let url = format!("http://{}/nothing", weir.addrs.http);

    // HTTP/2 (hyper's path): real curl fails on a body after a HEAD answer.
    let (body, code) = weir_e2e::curl(
        &[
            "-I",
            "--http2-prior-knowledge",
            "-H",
            "Host: other.test",
            &url,
        ],
        "%{http_code} %{http_version}",
    )
    .await;
    assert_eq!(code, "404 2", "{body}");
    let length = body
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .map(str::trim);
    let get = format!(
        "404 no route for host {:?} path {:?}\n",
        "other.test", "/nothing"
    );
    assert_eq!(length, Some(get.len().to_string().as_str()), "{body}");

    // HTTP/1.1 (weir's own path): a refused head, and a 404.
    for (request, status) in [
        (
            &b"HEAD /a/../b HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"[..],
            400,
        ),
        (
            &b"HEAD /x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n"[..],
            404,
        ),
    ] {
        let r = weir_e2e::raw_request(weir.addrs.http, request, Duration::from_secs(10)).await;
        let shown = String::from_utf8_lossy(&r.raw).into_owned();
        assert_eq!(r.status, status, "{shown}");
        assert!(r.body.is_empty(), "a body after a HEAD answer: {shown}");
        let length: usize = r
            .header("content-length")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no length: {shown}"));
        assert!(length > 0, "{shown}");
    }
    assert_eq!(stable.hits(), 0);
}
