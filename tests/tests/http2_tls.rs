//! HTTP/2 and TLS through real curl: h2c with prior knowledge on the plain
//! listener, and h2 and HTTP/1.1 negotiated by ALPN on a TLS listener with a
//! self-signed certificate.

use weir_e2e::{FakeUpstream, Route, Weir, WeirConfig};

/// Runs curl with `args`; returns (body, "<http_version> <http_code>").
async fn curl(args: &[&str]) -> (String, String) {
    weir_e2e::curl(args, "%{http_version} %{http_code}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let (body, version) = curl(&["--http2-prior-knowledge", &weir.url("/h2c")]).await;
    assert_eq!(version, "2 200");
    assert_eq!(body, "stable\n");
    assert_eq!(stable.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_negotiates_h2_and_http11() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).with_tls()).await;
    let url = weir.https_url("/tls");

    let (body, version) = curl(&["--http2", "-k", &url]).await;
    assert_eq!(version, "2 200", "ALPN h2 over TLS");
    assert_eq!(body, "stable\n");

    let (body, version) = curl(&["--http1.1", "-k", &url]).await;
    assert_eq!(version, "1.1 200", "HTTP/1.1 over TLS");
    assert_eq!(body, "stable\n");

    // Plain HTTP still works beside it.
    let (body, version) = curl(&[&weir.url("/plain")]).await;
    assert_eq!(version, "1.1 200");
    assert_eq!(body, "stable\n");
    assert_eq!(stable.hits(), 3);
}
