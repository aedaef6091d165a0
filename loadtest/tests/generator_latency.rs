//! Latency percentiles from a known injection: an upstream that sleeps
//! 20 ms before each answer gives p50 and p99 of 20 ms, give or take the
//! histogram's precision and, upward only, scheduler noise.

mod common;

use std::time::Duration;

use common::run_loadtest;
use weir_e2e::{LoadtestUpstream, shown};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_milliseconds_in_twenty_milliseconds_out() {
    let upstream = LoadtestUpstream::start("slow", &["--latency", "20ms"]);
    let target = format!("http://{}/", upstream.addr);
    let output = run_loadtest(
        &[
            "run",
            "--target",
            &target,
            "--rate",
            "200",
            "--duration",
            "3s",
            "--json",
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(output.status.success(), "{}", shown(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report:#}");
    let latency = &report["latencyMs"];
    let (p50, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    // 3 significant digits: 20 ms is known to ±0.02 ms; nothing can come
    // back before the 20 ms sleep is over.
    assert!((19.98..=25.0).contains(&p50), "p50 {p50} ms: {latency}");
    assert!((19.98..=40.0).contains(&p99), "p99 {p99} ms: {latency}");
    assert!(p99 >= p50, "{latency}");
}
