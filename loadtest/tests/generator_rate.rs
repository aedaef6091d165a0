//! The generator holds its rate: 2,000 req/s for 10 s against a real
//! `weir-loadtest upstream` process, counted by the upstream itself.

mod common;

use std::time::Duration;

use common::run_loadtest;
use weir_e2e::{LoadtestUpstream, get_json, shown};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_per_second_for_ten_seconds() {
    let upstream = LoadtestUpstream::start("rate", &[]);
    let target = format!("http://{}/", upstream.addr);
    let output = run_loadtest(
        &[
            "run",
            "--target",
            &target,
            "--rate",
            "2000",
            "--duration",
            "10s",
            "--json",
        ],
        Duration::from_secs(40),
    )
    .await;
    assert!(output.status.success(), "{}", shown(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["total"], 20_000, "{report:#}");

    let stats = get_json(upstream.addr, "/__upstream/stats").await;
    let counted = stats["requests"].as_u64().unwrap();
    assert!(
        (19_600..=20_400).contains(&counted),
        "the upstream counted {counted} requests, want 20000 ± 2 %"
    );
    // Open loop, and the schedule is even: ten seconds, each carrying its
    // 2000 (the wall-clock time of the run depends on the machine's load).
    let seconds = report["perSecond"].as_array().unwrap();
    assert_eq!(seconds.len(), 10, "{report:#}");
    for s in seconds {
        assert_eq!(s["total"], 2000, "{s}");
    }
    let answered: u64 = report["byUpstream"]["rate"]["200"].as_u64().unwrap();
    assert!(
        answered >= 19_600,
        "only {answered} answered 200: {report:#}"
    );
}
