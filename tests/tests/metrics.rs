//! `/metrics` passes `promtool check metrics` after real traffic (both
//! roles, a 502, a reload) and carries the SPEC's families.

use std::time::Duration;

use weir_e2e::{
    ClosedPort, FakeUpstream, Route, Weir, WeirConfig, promtool_check, send_many, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let broken = ClosedPort::bind();
    let config = WeirConfig::new([
        Route::new("web", &[stable.addr]).canary(&[canary.addr], 50.0),
        Route::new("broken", &[stable.addr])
            .path_prefix("/broken")
            .canary(&[broken.addr], 100.0),
    ]);
    let mut weir = Weir::start(config.clone()).await;
    within(Duration::from_secs(30), "traffic and a reload", async {
        send_many(weir.addrs.http, "/", &[], 40, 2).await.unwrap();
        send_many(weir.addrs.http, "/broken", &[], 5, 1)
            .await
            .unwrap();
        weir.reload(&config.with_weight("web", 25.0)).await;
    })
    .await;

    let metrics = weir.metrics().await;
    for family in [
        "weir_http_requests_total",
        "weir_http_request_duration_seconds",
        "weir_upstream_errors_total",
        "weir_canary_weight",
        "weir_config_reloads_total",
    ] {
        assert!(
            metrics.text.contains(&format!("# TYPE {family} ")),
            "no # TYPE line for {family}:\n{}",
            metrics.text
        );
    }
    assert_eq!(
        metrics.get("weir_canary_weight", &[("route", "web")]),
        Some(25.0)
    );

    promtool_check(&metrics.text);
}
