//! A strategy without an `analysis` block advances on its clocks and by
//! commands, with no traffic at all: timed pauses end, `pause: {}` holds,
//! `promote` reaches `Promoted`, and a rollout restarted mid-way (`kill -9`)
//! resumes and still progresses.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, canary_weight, phase, step_index, within,
};

/// A bound for each stage, generous for a loaded 2-core box (the pauses
/// themselves are 2 to 3 s).
const LIMIT: Duration = Duration::from_secs(30);

fn at(status: &serde_json::Value, want_phase: &str, want_step: u64) -> bool {
    phase(status) == want_phase && step_index(status) == Some(want_step)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_analysis_timed_pauses_end_indefinite_pauses_hold_and_promote_completes() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    // No `analysis` block: Strategy::new writes the steps alone.
    let web = Strategy::new([
        Step::SetWeight(10.0),
        Step::Pause(Some("2s".to_owned())),
        Step::SetWeight(30.0),
        Step::Pause(None),
        Step::SetWeight(100.0),
    ]);
    // A second route as a clock: its 3 s pause starts on command, after
    // `web` has reached its `pause: {}`.
    let clock = Strategy::new([
        Step::Pause(None),
        Step::Pause(Some("3s".to_owned())),
        Step::SetWeight(10.0),
    ]);
    let route = |name: &str, strategy: Strategy| {
        Route::new(name, &[v1.addr])
            .path_prefix(&format!("/{name}"))
            .canary(&[v2.addr], 0.0)
            .strategy(strategy)
    };
    let weir = Weir::start(WeirConfig::new([route("web", web), route("clock", clock)])).await;
    let text = std::fs::read_to_string(weir.config_path()).unwrap();
    assert!(
        !text.contains("analysis"),
        "the config must have no analysis block:\n{text}"
    );

    // setWeight 10, the 2 s pause and setWeight 30 pass with no request at all.
    let s = weir
        .wait_status("web", LIMIT, "web at step 4 (pause {})", |s| {
            at(s, "Paused", 3)
        })
        .await;
    assert_eq!(canary_weight(&s), 30.0, "{s:#}");
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("waiting for promote") && !message.contains("minRequests"),
        "without an analysis block nothing waits for minRequests: {s:#}"
    );
    assert_eq!(v1.hits() + v2.hits(), 0, "no traffic was sent");

    // `pause: {}` holds while the clock route runs a whole 3 s pause.
    let r = weir.command("clock", "promote", None).await;
    assert_eq!(r.status, 200, "promote clock: {}", r.text());
    assert!(at(&r.json(), "Paused", 1), "{:#}", r.json());
    weir.wait_status("clock", LIMIT, "clock Promoted", |s| phase(s) == "Promoted")
        .await;
    let s = weir.status("web").await;
    assert!(
        at(&s, "Paused", 3),
        "pause: {{}} must hold until promote: {s:#}"
    );

    // promote ends the pause; the last setWeight completes on its own.
    let r = weir.command("web", "promote", None).await;
    assert_eq!(r.status, 200, "promote web: {}", r.text());
    let s = weir
        .wait_status("web", LIMIT, "web Promoted", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(canary_weight(&s), 100.0, "{s:#}");
    assert_eq!(step_index(&s), Some(5), "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_analysis_a_restarted_rollout_resumes_and_progresses() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = Strategy::new([
        Step::SetWeight(10.0),
        Step::Pause(Some("3s".to_owned())),
        Step::SetWeight(50.0),
        Step::Pause(None),
    ]);
    let config = WeirConfig::new([Route::new("web", &[v1.addr])
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)]);
    let mut weir = Weir::start(config).await;

    let before = weir
        .wait_status("web", LIMIT, "web in its timed pause", |s| {
            at(s, "Paused", 1)
        })
        .await;
    weir.kill9();
    within(LIMIT, "restart", weir.restart()).await;

    // Same rollout, not step 0 again; then on to the next steps.
    let s = weir.status("web").await;
    assert_eq!(s["rolloutSeq"], before["rolloutSeq"], "{s:#}");
    assert!(
        step_index(&s).is_some_and(|i| i >= 1),
        "the restart went back before the pause: {s:#}"
    );
    let s = weir
        .wait_status("web", LIMIT, "web at step 4 (pause {})", |s| {
            at(s, "Paused", 3)
        })
        .await;
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
    assert_eq!(v1.hits() + v2.hits(), 0, "no traffic was sent");
}
