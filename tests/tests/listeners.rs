//! Listeners on the same port in both address families: `0.0.0.0:P` and
//! `[::]:P` side by side both bind (`[::]` then takes IPv6 only), and each
//! serves its own family.

use std::time::Duration;

use weir_e2e::{FakeUpstream, ReservedPort, Route, Weir, WeirConfig, raw_request};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_and_an_ipv6_listener_share_a_port() {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    weir.sigterm();
    let stopped = weir.wait_exit(Duration::from_secs(20)).await;
    assert!(stopped.success(), "a clean stop: {stopped}");

    // Held until weir listens there, so no other test is handed the port.
    let reserved = ReservedPort::bind();
    let port = reserved.addr.port();
    let text = std::fs::read_to_string(weir.config_path()).expect("weir.yaml");
    let both = format!(
        "listeners:\n  - {{ name: any-v4, address: '0.0.0.0:{port}' }}\n  \
         - {{ name: any-v6, address: '[::]:{port}' }}\n"
    );
    assert!(text.contains("listeners:\n"), "{text}");
    weir.write_text(&text.replacen("listeners:\n", &both, 1), false);
    weir.restart().await;
    drop(reserved);

    for address in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let r = raw_request(
            address.parse().expect("an address"),
            b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
            LIMIT,
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{address}: {:?}",
            String::from_utf8_lossy(&r.raw)
        );
        assert_eq!(r.header("x-upstream-name"), Some("stable"), "{address}");
    }
    let log = weir.log();
    assert!(
        log.contains("listener=any-v4") && log.contains("listener=any-v6"),
        "{log}"
    );
}
