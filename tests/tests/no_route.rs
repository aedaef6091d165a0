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
