//! The built-in demo, shortened (`--short`): v2 is promoted, v3 fails 30 %
//! of its requests and is rolled back; every expectation holds and the
//! report has its four charts.

mod common;

use std::time::Duration;

use common::{run_loadtest, weir};
use weir_e2e::shown;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_demo_passes_with_a_full_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let weir = weir();
    let output = run_loadtest(
        &[
            "experiment",
            "--builtin",
            "demo",
            "--short",
            "--out",
            out.to_str().unwrap(),
            "--weir",
            weir.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    )
    .await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ABORTED canary v3"), "{text}");
    assert!(!stdout.contains("FAIL"), "{text}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["speed"], 3.0);
    let aborts = report["summary"]["aborts"].as_array().unwrap();
    assert_eq!(aborts.len(), 1, "{aborts:#?}");
    let abort = &aborts[0];
    assert_eq!(abort["upstream"], "v3", "{abort}");
    assert_eq!(abort["revision"], "v3", "{abort}");
    assert_eq!(abort["faultAction"], 1, "{abort}");
    let took = abort["secondsToWeightZero"].as_f64().unwrap();
    assert!((0.0..2.0).contains(&took), "{abort}");
    assert!(abort["canaryErrors"].as_u64().unwrap() > 0, "{abort}");
    let v1 = &report["summary"]["upstreams"]["v1"];
    assert!(v1["received"].as_u64().unwrap() > 0, "{v1}");

    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "four charts");
    for id in ["weight", "requests", "errors", "latency"] {
        assert!(
            html.contains(&format!("<figure id=\"chart-{id}\"><svg")),
            "no {id} chart"
        );
    }
    for banned in ["<script src=", "http://", "https://"] {
        assert!(!html.contains(banned), "report.html contains {banned:?}");
    }
    assert!(html.contains("PASS"));
}
