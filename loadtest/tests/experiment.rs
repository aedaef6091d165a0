//! `weir-loadtest experiment` on the real binaries: a short scenario whose
//! expectations hold exits 0, the same run judged against an expectation
//! that cannot hold exits 1, so does one whose timeline command weir
//! refuses, and a bad scenario or a weir that cannot start exits 2.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run_loadtest, weir};
use weir_e2e::shown;

const LIMIT: Duration = Duration::from_secs(40);

/// A 4 s scenario: a healthy canary v2 at 50 % waits in an indefinite
/// pause until the timeline promotes it.
fn scenario(expect: &str) -> String {
    format!(
        r#"name: quick
duration: 4s
upstreams: [{{name: v1}}, {{name: v2}}]
weir:
  config: |
    listeners: [{{name: public, address: "${{WEIR_LISTEN}}"}}]
    admin: {{address: "${{WEIR_ADMIN}}"}}
    routes:
      - name: web
        stable: {{revision: v1, endpoints: ["${{UPSTREAM_V1}}"]}}
        canary: {{revision: v2, endpoints: ["${{UPSTREAM_V2}}"]}}
        stickiness: {{cookie: weir-web}}
        strategy:
          steps: [{{setWeight: 50}}, {{pause: {{}}}}, {{setWeight: 100}}]
          analysis: {{interval: 200ms, window: 2s, minRequests: 10}}
load: {{rate: 100, users: 20}}
timeline:
  - at: 1500ms
    command: {{route: web, action: promote}}
  - at: 2s
    fault: {{upstream: v1, latency: 1ms}}
expect:
{expect}"#
    )
}

async fn experiment(
    dir: &Path,
    text: &str,
    extra: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let file = dir.join("scenario.yaml");
    std::fs::write(&file, text).expect("writing the scenario");
    let out = dir.join("run");
    let weir = weir();
    let mut args = vec![
        "experiment",
        file.to_str().expect("a UTF-8 temp path"),
        "--out",
        out.to_str().expect("a UTF-8 temp path"),
        "--weir",
        weir.to_str().expect("a UTF-8 target path"),
    ];
    args.extend_from_slice(extra);
    let output = run_loadtest(&args, LIMIT).await;
    let report = std::fs::read(out.join("report.json"))
        .map(|bytes| serde_json::from_slice(&bytes).expect("report.json is JSON"))
        .unwrap_or(serde_json::Value::Null);
    (output, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expectations_that_hold_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = experiment(
        dir.path(),
        &scenario(
            "  - finalPhase: {route: web, phase: Promoted}
  - reachedStep: {route: web, step: 1, by: 1400ms}
  - maxErrorRate: {upstream: v1, below: 0.01}
  - maxErrorRate: {below: 0.01}
",
        ),
        &["--quiet"],
    )
    .await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("PASS expect[").count(), 4, "{text}");
    assert!(stdout.contains("report.html"), "{text}");
    // --quiet: no live timeline.
    assert!(!stdout.contains("[     1s]"), "{text}");

    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["summary"]["requests"], 400, "{report:#}");
    let v2 = report["summary"]["upstreams"]["v2"]["received"]
        .as_u64()
        .unwrap();
    assert!(v2 > 50, "the canary got {v2} requests: {report:#}");
    // The command was sent and answered, and the timeline is in the events.
    let events = report["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "command" && e["text"].as_str().unwrap().contains("200")),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| e["kind"] == "fault"), "{events:#?}");
    assert_eq!(report["seconds"].as_array().unwrap().len(), 4);
    assert!(
        report["samples"].as_array().unwrap().len() > 20,
        "sampled every 100 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expectation_that_cannot_hold_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = experiment(
        dir.path(),
        &scenario(
            "  - maxErrorRate: {upstream: v1, below: 0.01}
  - finalPhase: {route: web, phase: Aborted}
",
        ),
        &[],
    )
    .await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PASS expect[0] maxErrorRate"), "{text}");
    assert!(stdout.contains("FAIL expect[1] finalPhase"), "{text}");
    // The live timeline: one line per second and the events as they happen.
    assert!(stdout.contains("[     1s] web"), "{text}");
    assert!(stdout.contains("timeline[0]: promote web"), "{text}");
    assert_eq!(report["passed"], false, "{report:#}");
    let failed = &report["expectations"][1];
    assert_eq!(failed["passed"], false);
    assert!(
        failed["detail"].as_str().unwrap().contains("Promoted"),
        "{failed}"
    );
}

/// A timeline command weir refuses (`retry` of a rollout that did not
/// abort) fails the run, though every expectation holds; so does a timeline config weir
/// refuses (a weight of 400), which it keeps serving without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_command_or_config_weir_refuses_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let refused_config = r#"  - at: 2500ms
    config: |
      listeners: [{name: public, address: "${WEIR_LISTEN}"}]
      admin: {address: "${WEIR_ADMIN}"}
      routes:
        - name: web
          stable: {revision: v1, endpoints: ["${UPSTREAM_V1}"]}
          canary: {revision: v2, endpoints: ["${UPSTREAM_V2}"], weight: 400}
"#;
    let text = scenario("  - maxErrorRate: {below: 0.01}\n")
        .replace(
            "command: {route: web, action: promote}",
            "command: {route: web, action: retry}",
        )
        .replace("expect:\n", &format!("{refused_config}expect:\n"));
    let (output, report) = experiment(dir.path(), &text, &["--quiet"]).await;
    let shown = shown(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PASS expect[0] maxErrorRate"), "{shown}");
    assert!(
        stdout.contains("FAIL timeline[0]: retry web → 409"),
        "{shown}"
    );
    assert!(
        stdout.contains("FAIL timeline[2]: config rewritten")
            && stdout.contains("but refused by weir → 400")
            && stdout.contains("routes[0].canary.weight"),
        "{shown}"
    );
    assert!(
        stdout.contains("verdict: a timeline action did not take"),
        "{shown}"
    );
    assert_eq!(report["passed"], false, "{report:#}");
    assert_eq!(
        report["failedActions"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_scenario_or_a_failed_start_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = scenario("  - finalPhase: {route: web, phase: Promoted}\n")
        .replace("load: {rate: 100", "load: {rate: 100, burst: 5");
    let (output, report) = experiment(dir.path(), &bad, &[]).await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("load.burst: unknown field"),
        "{text}"
    );
    assert!(report.is_null());

    let dir = tempfile::tempdir().unwrap();
    let good = scenario("  - finalPhase: {route: web, phase: Promoted}\n");
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, good).unwrap();
    let output = run_loadtest(
        &[
            "experiment",
            file.to_str().expect("a UTF-8 temp path"),
            "--out",
            dir.path().join("run").to_str().unwrap(),
            "--weir",
            "/nonexistent/weir",
        ],
        LIMIT,
    )
    .await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("could not start") && text.contains("/nonexistent/weir"),
        "{text}"
    );
    assert!(
        !dir.path().join("run").exists(),
        "a run directory made for nothing"
    );
}

/// A scenario that asks for Prometheus where its binary is missing stops
/// before weir starts, saying how to install it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_prometheus_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}prometheus: {{binary: /nonexistent/prometheus}}\n",
        scenario("  - finalPhase: {route: web, phase: Promoted}\n")
    );
    let (output, report) = experiment(dir.path(), &text, &[]).await;
    let text = shown(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/prometheus is missing")
            && stderr.contains("apt-get install prometheus"),
        "{text}"
    );
    assert!(report.is_null());
}
