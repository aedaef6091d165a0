//! Measured: how many users see an error between the moment a canary starts
//! failing every request (503) and its abort, with and without
//! `stableFallback` (defaults: GET, HEAD, OPTIONS, 64 KiB, budget 0.2), at
//! weight 10 % under 200 GET/s. Prints both figures.

use std::time::Duration;

use weir_e2e::{
    FAILED, FakeUpstream, Load, Route, Step, Strategy, Weir, WeirConfig, count, phase, step_index,
};

/// What one run saw: user-visible errors, the canary failures weir sent
/// downstream, and the canary errors its analysis judged at the abort.
struct Seen {
    visible_errors: u64,
    canary_failures: f64,
    judged_errors: u64,
    answered: u64,
}

async fn run(fallback: Option<&str>) -> Seen {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let strategy = Strategy::judged([Step::SetWeight(10.0), Step::Pause(None)]);
    let mut route = Route::rollout("web", &[stable.addr], &[canary.addr], strategy);
    if let Some(yaml) = fallback {
        route = route.stable_fallback(yaml);
    }
    let weir = Weir::start(WeirConfig::new([route])).await;

    let load = Load::start(weir.addrs.http, "/", 200, 4);
    weir.wait_status("web", Duration::from_secs(60), "Paused at step 1", |s| {
        step_index(s) == Some(1)
    })
    .await;
    // One snapshot: the load goes on meanwhile.
    let before = load.counts();
    let before_total: u64 = before.values().flat_map(|s| s.values()).sum();
    assert_eq!(
        count(&before, "stable", 200) + count(&before, "canary", 200),
        before_total,
        "a healthy canary: {before:?}"
    );
    canary.fail_with(503);
    canary.fail_every(1);
    let aborted = weir
        .wait_status("web", Duration::from_secs(60), "Aborted", |s| {
            phase(s) == "Aborted"
        })
        .await;
    let counts = load.stop().await;
    assert_eq!(aborted["analysis"]["verdict"], "fail", "{aborted:#}");
    let answered: u64 = counts.values().flat_map(|s| s.values()).sum();
    let ok = count(&counts, "stable", 200) + count(&counts, "canary", 200);
    assert_eq!(counts.get(FAILED), None, "{counts:?}");
    let m = weir.metrics().await;
    let canary_failures = m.sum(
        "weir_http_requests_total",
        &[("route", "web"), ("role", "canary"), ("code", "503")],
    );
    Seen {
        visible_errors: answered - ok,
        canary_failures,
        judged_errors: aborted["analysis"]["canary"]["errors"]
            .as_u64()
            .unwrap_or_default(),
        answered,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_visible_errors_from_fault_to_abort_with_and_without_stable_fallback() {
    let without = run(None).await;
    let with = run(Some("{}")).await;
    eprintln!(
        "canary failing every request (503) at weight 10 %, 200 GET/s, from fault to abort:\n  \
         without stableFallback: {} user-visible errors ({} canary errors judged, {} requests)\n  \
         with stableFallback:    {} user-visible errors ({} canary errors judged, {} requests)",
        without.visible_errors,
        without.judged_errors,
        without.answered,
        with.visible_errors,
        with.judged_errors,
        with.answered,
    );
    assert!(without.visible_errors > 0);
    assert_eq!(without.visible_errors as f64, without.canary_failures);
    assert_eq!(with.visible_errors, 0);
    // Every failure was rescued: none is counted as a canary answer sent,
    // but the analysis saw them all.
    assert_eq!(with.canary_failures, 0.0);
    assert!(with.judged_errors > 0, "the analysis saw the failures");
}
