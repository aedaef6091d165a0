//! Automatic rollback: a canary whose error rate jumps to 100 % under load
//! is aborted by analysis within seconds, its weight drops to 0 at once, and
//! no further request reaches it.

use std::time::Duration;

use tokio::time::Instant;
use weir_e2e::{
    Load, LoadtestUpstream, Route, Step, Strategy, Weir, WeirConfig, canary_weight, count, phase,
    rollout_gauges, send_many, step_index, wait_until, within,
};

/// From the fault to weight 0: a 200 ms interval plus enough failures to be
/// significant is well under a second (the demo measures it); the rest is
/// slack for a debug build sharing 2 cores with the rest of the suite.
const ABORT_LIMIT: Duration = Duration::from_secs(10);

const REASONS: [&str; 3] = [
    "analysis_error_rate",
    "analysis_compare",
    "analysis_latency",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_aborted_and_gets_no_more_traffic() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let strategy = Strategy::judged([Step::SetWeight(30.0), Step::Pause(None)]);
    let weir = Weir::start(WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )]))
    .await;

    let load = Load::start(weir.addrs.http, "/", 300, 6);
    // A healthy canary passes step 0 and waits at `pause: {}`.
    let s = weir
        .wait_status("web", Duration::from_secs(15), "Paused at step 1", |s| {
            step_index(s) == Some(1)
        })
        .await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(canary_weight(&s), 30.0, "{s:#}");
    assert_eq!(s["analysis"]["verdict"], "pass", "{s:#}");

    let faults = canary.control(serde_json::json!({"errorRate": 1.0})).await;
    assert_eq!(faults["errorRate"], 1.0);
    let flipped = Instant::now();
    wait_until(
        ABORT_LIMIT,
        "weir_canary_weight{route=\"web\"} == 0",
        || async {
            let m = weir.metrics().await;
            (m.get("weir_canary_weight", &[("route", "web")]) == Some(0.0)).then_some(())
        },
    )
    .await;
    let took = flipped.elapsed();
    eprintln!("from errorRate 1.0 to weir_canary_weight 0: {took:?}");

    let s = weir.status("web").await;
    assert_eq!(phase(&s), "Aborted", "{s:#}");
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    assert_eq!(s["analysis"]["verdict"], "fail", "{s:#}");
    assert!(
        s["analysis"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a failed verdict has a reason: {s:#}"
    );
    // The counts beside it are live; the verdict is the last one.
    assert!(
        s["analysis"]["reason"].as_str().is_some_and(
            |r| r.ends_with("(the last judgement: the rollout is Aborted and judged no more)")
        ),
        "{s:#}"
    );
    let canary_stats = &s["analysis"]["canary"];
    assert!(
        canary_stats["errors"].as_u64().unwrap_or(0) > 0
            && canary_stats["errorRate"].as_f64().unwrap_or(0.0) > 0.05,
        "the canary's errors are in the status: {s:#}"
    );
    let m = weir.metrics().await;
    let (p, _, weight) = rollout_gauges(&m, "web");
    assert_eq!((p.as_str(), weight), ("Aborted", Some(0.0)));
    let analysis_aborts: f64 = REASONS
        .iter()
        .map(|r| {
            m.sum(
                "weir_rollout_aborts_total",
                &[("route", "web"), ("reason", r)],
            )
        })
        .sum();
    assert_eq!(
        analysis_aborts, 1.0,
        "one weir_rollout_aborts_total{{reason=analysis_*}}:\n{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "weir_rollout_aborts_total",
            &[("route", "web"), ("reason", "manual")]
        ),
        0.0
    );

    // Requests in flight at the abort may still land on the canary; after
    // the load has drained, nothing more does.
    let counts = load.stop().await;
    let before = canary.stats().await["requests"].as_u64().unwrap();
    let c = within(
        Duration::from_secs(30),
        "requests after the abort",
        send_many(weir.addrs.http, "/", &[], 300, 4),
    )
    .await
    .unwrap();
    let after = canary.stats().await["requests"].as_u64().unwrap();
    assert_eq!(
        after,
        before,
        "the canary got {} requests after the abort: {c:?}",
        after - before
    );
    assert_eq!(count(&c, "stable", 200), 300, "{c:?}");
    assert!(
        count(&counts, "canary", 500) > 0,
        "the fault was live before the abort: {counts:?}"
    );
    assert!(
        took <= ABORT_LIMIT,
        "abort took {took:?}, want at most {ABORT_LIMIT:?}"
    );
}
