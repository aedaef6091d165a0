//! No false rollback: when canary and stable fail at the same low rate
//! (2 %, below `maxErrorRate`), 20 s of judgements every 500 ms never abort.
//! Both upstreams fail every 50th request they receive, not at random, so
//! the test cannot fail by chance: it checks that an equal-error canary is
//! judged equal, not the statistics' false-alarm rate (the seeded
//! simulation in `control/src/rollout/simulate.rs` does that).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use weir_e2e::{
    FAILED, FakeUpstream, Load, Route, Step, Strategy, Weir, WeirConfig, canary_weight, count,
    phase, step_index,
};

const RUN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_error_rates_do_not_abort() {
    let stable = FakeUpstream::failing_every("stable", 50).await;
    let canary = FakeUpstream::failing_every("canary", 50).await;
    let strategy =
        Strategy::judged([Step::SetWeight(30.0), Step::Pause(None)]).analysis("500ms", "5s");
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .strategy(strategy)]))
    .await;

    let load = Load::start(weir.addrs.http, "/", 200, 4);
    let started = Instant::now();
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = serde_json::Value::Null;
    while started.elapsed() < RUN {
        let s = weir.status("web").await;
        assert_ne!(
            phase(&s),
            "Aborted",
            "aborted after {:?} with equal 2 % error rates: {s:#}",
            started.elapsed()
        );
        let verdict = s["analysis"]["verdict"]
            .as_str()
            .unwrap_or("null")
            .to_owned();
        *verdicts.entry(verdict).or_default() += 1;
        last = s;
        // The sampling period of this watch, not synchronisation.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let counts = load.stop().await;
    eprintln!("verdicts seen (sampled every 250 ms): {verdicts:?}; load: {counts:?}");

    assert_eq!(
        (phase(&last), step_index(&last)),
        ("Paused", Some(1)),
        "step 0 should have passed: {last:#}"
    );
    assert_eq!(canary_weight(&last), 30.0, "{last:#}");
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_rollout_aborts_total", &[("route", "web")]),
        0.0,
        "{}",
        m.text
    );
    assert_eq!(counts.get(FAILED), None, "{counts:?}");
    let canary_n = count(&counts, "canary", 200) + count(&counts, "canary", 500);
    let total: u64 = counts.values().flat_map(|s| s.values()).sum();
    assert!(
        total >= 2000 && canary_n * 100 >= total * 20,
        "too little load or canary share: {counts:?}"
    );
}
