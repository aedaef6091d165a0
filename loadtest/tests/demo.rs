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

    // The config weir started with is kept beside the one in force.
    let initial = std::fs::read_to_string(out.join("weir.initial.yaml")).unwrap();
    let last = std::fs::read_to_string(out.join("weir.yaml")).unwrap();
    assert_ne!(initial, last, "the timeline changed the config");
    assert!(initial.contains("v2"), "{initial}");
}

/// `weir demo --scenario blue-green`, three times faster: v2 is swapped in
/// after its smoke test and promoted, v3 is swapped in and back out by the
/// Prometheus-backed post-promotion analysis, and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blue_green_demo_promotes_v2_and_swaps_back_from_v3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blue-green");
    let output = weir_e2e::run_within(
        &weir(),
        &[
            "demo",
            "--scenario",
            "blue-green",
            "--speed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    )
    .await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "prometheus http://127.0.0.1:",
        "smoke test of web revision v2",
        "blue-green stage",
        "ABORTED canary v3",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(!stdout.contains("FAIL"), "{text}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["scenario"], "blue-green");
    assert_eq!(report["summary"]["failed"], 0, "no request went unanswered");
    let smoke: Vec<&serde_json::Value> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "smoke")
        .collect();
    assert!(
        smoke.iter().any(|e| e["revision"] == "v2"
            && e["text"].as_str().unwrap().contains("20 passed, 0 failed")),
        "{smoke:#?}"
    );
    let stages: Vec<&str> = report["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert!(stages.contains(&"PostPromotion"), "{stages:?}");
    let aborts = report["summary"]["aborts"].as_array().unwrap();
    assert_eq!(aborts.len(), 1, "{aborts:#?}");
    assert_eq!(aborts[0]["revision"], "v3", "{aborts:#?}");
    assert_eq!(aborts[0]["upstream"], "v3", "{aborts:#?}");
    assert!(
        aborts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("post-promotion analysis"),
        "swapped back by the Prometheus analysis: {aborts:#?}"
    );
    let upstreams = &report["summary"]["upstreams"];
    for name in ["v1", "v2", "v3"] {
        let u = &upstreams[name];
        assert!(u["responses"].as_u64().unwrap() > 0, "{name}: {u}");
        assert_eq!(u["errors"], 0, "{name}: {u}");
    }
    assert!(out.join("report.html").is_file());
    assert!(out.join("prometheus/prometheus.yml").is_file());
}

/// An unknown scenario is refused with the list of known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_demo_scenario_lists_the_known_ones() {
    let output = weir_e2e::run_within(
        &weir(),
        &["demo", "--scenario", "purple"],
        Duration::from_secs(20),
    )
    .await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("purple") && stderr.contains("demo") && stderr.contains("blue-green"),
        "{text}"
    );
}
