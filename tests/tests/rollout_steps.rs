//! The rollout control loop walks the steps under light load: a `setWeight`
//! step completes on a passing analysis tick, a timed pause ends by itself at
//! its deadline and not before, `pause: {}` holds until `promote`, the last
//! step leaves the canary Promoted at 100 % until the config names it as
//! stable. A new canary revision in the config starts a new rollout.

use std::time::Duration;

use tokio::time::Instant;
use weir_e2e::{
    FAILED, FakeUpstream, Load, RELOAD_LIMIT, Route, Step, Strategy, Weir, WeirConfig,
    binomial_bounds, canary_weight, count, phase, rollout_gauges, send_many, step_index, unix_ms,
    within,
};

/// A bound for each phase of the walk, generous for a loaded 2-core box.
const LIMIT: Duration = Duration::from_secs(15);

fn steps_config(stable: &FakeUpstream, canary: &FakeUpstream) -> WeirConfig {
    let strategy = Strategy::new([
        Step::SetWeight(20.0),
        Step::Pause(Some("2s".to_owned())),
        Step::SetWeight(50.0),
        Step::Pause(None),
        Step::SetWeight(100.0),
    ])
    .analysis("250ms", "5s")
    .min_requests(10);
    WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .strategy(strategy)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_timed_pause_indefinite_pause_promote_and_config_catch_up() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let config = steps_config(&v1, &v2);
    let mut weir = Weir::start(config.clone()).await;

    // First start with `strategy` and `canary`: a rollout at step 0.
    let s = weir.status("web").await;
    assert_eq!(phase(&s), "Progressing", "{s:#}");
    assert_eq!(step_index(&s), Some(0), "{s:#}");
    assert_eq!(s["stepCount"], 5, "{s:#}");
    assert_eq!(canary_weight(&s), 20.0, "{s:#}");
    assert_eq!(s["stableRevision"], "v1", "{s:#}");
    assert_eq!(s["canaryRevision"], "v2", "{s:#}");
    assert_eq!(s["strategy"], true, "{s:#}");
    assert_eq!(s["configBehind"], false, "{s:#}");
    let seq = s["rolloutSeq"].clone();
    assert!(seq.is_u64(), "rolloutSeq: {s:#}");
    for key in [
        "name",
        "steps",
        "held",
        "pauseDeadlineMs",
        "message",
        "analysis",
    ] {
        assert!(s.get(key).is_some(), "status has no `{key}`: {s:#}");
    }
    let (p, step, weight) = rollout_gauges(&weir.metrics().await, "web");
    assert_eq!(
        (p.as_str(), step, weight),
        ("Progressing", Some(0.0), Some(20.0))
    );

    // Step 0 completes on a passing tick, which needs the load, and enters
    // the timed pause: after the load started, and before the first poll
    // that showed step 1 was answered. (A poll sent after weir read its
    // clock may still show step 0: persisting the state comes before the
    // new status is published, and a loaded disk may take its time.)
    let load_started_ms = unix_ms();
    let load = Load::start(weir.addrs.http, "/", 150, 3);

    let deadline = Instant::now() + LIMIT;
    let (paused, seen_ms) = loop {
        let s = weir.status("web").await;
        let seen_ms = unix_ms();
        match step_index(&s) {
            Some(0) => {}
            Some(1) => break (s, seen_ms),
            _ => panic!("expected step 0 then 1: {s:#}"),
        }
        assert!(
            Instant::now() < deadline,
            "step 0 (setWeight 20) did not complete under load within {LIMIT:?}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(phase(&paused), "Paused", "{paused:#}");
    assert_eq!(canary_weight(&paused), 20.0, "{paused:#}");
    assert_eq!(paused["held"], false, "{paused:#}");
    let pause_deadline = paused["pauseDeadlineMs"]
        .as_u64()
        .unwrap_or_else(|| panic!("a timed pause has pauseDeadlineMs: {paused:#}"));
    let entered = pause_deadline.saturating_sub(2000);
    assert!(
        entered + 250 >= load_started_ms && entered <= seen_ms + 250,
        "pauseDeadlineMs - 2s = {entered}, want within [{load_started_ms}, {seen_ms}] \
         ± 250 ms (when the pause was entered)"
    );

    // It ends by itself, not before its deadline and not long after.
    let deadline = Instant::now() + Duration::from_millis(2000) + LIMIT;
    let left = loop {
        let s = weir.status("web").await;
        let seen_ms = unix_ms();
        match step_index(&s) {
            Some(1) => assert_eq!(phase(&s), "Paused", "{s:#}"),
            Some(n) if n >= 2 => {
                assert!(
                    seen_ms >= pause_deadline,
                    "the timed pause ended {} ms before its deadline: {s:#}",
                    pause_deadline - seen_ms
                );
                break seen_ms;
            }
            _ => panic!("unexpected step during the timed pause: {s:#}"),
        }
        assert!(
            Instant::now() < deadline,
            "the timed pause (deadline {pause_deadline}) did not end: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "timed pause: left {} ms after its deadline",
        left - pause_deadline
    );

    // setWeight 50 completes; `pause: {}` holds.
    let s = weir
        .wait_status("web", LIMIT, "Paused at step 3", |s| {
            step_index(s) == Some(3)
        })
        .await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
    assert!(s["pauseDeadlineMs"].is_null(), "{s:#}");

    // It stays there; meanwhile the split is 50 %.
    let before = load.counts();
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        let s = weir.status("web").await;
        assert_eq!(
            (phase(&s), step_index(&s)),
            ("Paused", Some(3)),
            "`pause: {{}}` ended without promote: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = load.counts();
    let canary = count(&after, "v2", 200) - count(&before, "v2", 200);
    let stable = count(&after, "v1", 200) - count(&before, "v1", 200);
    let n = canary + stable;
    assert!(n >= 50, "too little load while paused: {after:?}");
    let bounds = binomial_bounds(n, 0.5);
    assert!(
        bounds.contains(canary),
        "{canary} of {n} to the canary at weight 50, want {bounds}"
    );
    let (p, step, weight) = rollout_gauges(&weir.metrics().await, "web");
    assert_eq!(
        (p.as_str(), step, weight),
        ("Paused", Some(3.0), Some(50.0))
    );

    // promote: on to setWeight 100, then Promoted.
    let r = weir.command("web", "promote", None).await;
    assert_eq!(r.status, 200, "promote: {}", r.text());
    let s = r.json();
    assert!(
        step_index(&s) >= Some(4),
        "promote answers the new status: {s:#}"
    );
    assert_eq!(canary_weight(&s), 100.0, "{s:#}");
    let s = weir
        .wait_status("web", LIMIT, "Promoted", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(step_index(&s), Some(5), "stepIndex = stepCount: {s:#}");
    assert_eq!(canary_weight(&s), 100.0, "{s:#}");
    assert_eq!(s["configBehind"], true, "{s:#}");
    assert_eq!(s["promotedRevision"], "v2", "{s:#}");
    assert_eq!(s["rolloutSeq"], seq, "one rollout all along: {s:#}");
    let (p, step, weight) = rollout_gauges(&weir.metrics().await, "web");
    assert_eq!(
        (p.as_str(), step, weight),
        ("Promoted", Some(5.0), Some(100.0))
    );
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/", &[], 40, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "v2", 200),
        40,
        "Promoted: all to the canary: {c:?}"
    );

    // The config catches up: v2 is stable now, with no canary and no
    // strategy left (a route may also keep its strategy for the next
    // release).
    let caught_up = config.with_route("web", |r| {
        let mut r = r.stable("v2", &[v2.addr]);
        r.canary = None;
        r.strategy = None;
        r
    });
    within(RELOAD_LIMIT, "reload", weir.reload(&caught_up)).await;
    let s = weir
        .wait_status("web", RELOAD_LIMIT, "Healthy", |s| phase(s) == "Healthy")
        .await;
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    assert_eq!(s["configBehind"], false, "{s:#}");
    assert_eq!(s["stableRevision"], "v2", "{s:#}");
    eprintln!("after the catch-up: {s:#}");
    let (p, _, weight) = rollout_gauges(&weir.metrics().await, "web");
    assert_eq!((p.as_str(), weight), ("Healthy", Some(0.0)));
    let m_before = weir.metrics().await;
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/", &[], 40, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "v2", 200), 40, "{c:?}");
    let m_after = weir.metrics().await;
    let stable_role = |m: &weir_e2e::Metrics| {
        m.sum(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "stable")],
        )
    };
    assert!(
        stable_role(&m_after) - stable_role(&m_before) >= 40.0,
        "after the catch-up v2 serves as stable"
    );

    let counts = load.stop().await;
    assert_eq!(
        counts.get(FAILED),
        None,
        "failed exchanges during the rollout: {counts:?}"
    );
    for (name, statuses) in &counts {
        assert!(
            statuses.keys().all(|s| *s == 200),
            "{name} answered non-200 during the rollout: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_canary_revision_starts_a_new_rollout() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let v3 = FakeUpstream::start("v3").await;
    let v4 = FakeUpstream::start("v4").await;
    let strategy = Strategy::new([Step::SetWeight(20.0), Step::Pause(None)])
        .analysis("250ms", "5s")
        .min_requests(10);
    let config = WeirConfig::new([Route::new("web", &[v1.addr])
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)]);
    let mut weir = Weir::start(config.clone()).await;

    let s = weir.status("web").await;
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );
    let seq = s["rolloutSeq"]
        .as_u64()
        .unwrap_or_else(|| panic!("rolloutSeq: {s:#}"));

    // Paused at `pause: {}` -> v3 replaces v2.
    let r = weir.command("web", "promote", None).await;
    assert_eq!(r.status, 200, "promote: {}", r.text());
    let s = r.json();
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");
    let v3_config = config.with_route("web", |r| r.canary(&[v3.addr], 0.0).canary_revision("v3"));
    within(RELOAD_LIMIT, "reload", weir.reload(&v3_config)).await;
    let s = weir
        .wait_status("web", RELOAD_LIMIT, "the v3 rollout", |s| {
            s["canaryRevision"] == "v3"
        })
        .await;
    assert_eq!(s["rolloutSeq"], seq + 1, "{s:#}");
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );
    assert_eq!(canary_weight(&s), 20.0, "{s:#}");
    let v2_hits = v2.hits();
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/", &[], 100, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        v2.hits(),
        v2_hits,
        "the replaced canary v2 got traffic: {c:?}"
    );
    assert!(count(&c, "v3", 200) > 0, "v3 at 20 % got nothing: {c:?}");
    assert_eq!(count(&c, "v1", 200) + count(&c, "v3", 200), 100, "{c:?}");

    // Progressing -> v4 replaces v3.
    let v4_config = config.with_route("web", |r| r.canary(&[v4.addr], 0.0).canary_revision("v4"));
    within(RELOAD_LIMIT, "reload", weir.reload(&v4_config)).await;
    let s = weir
        .wait_status("web", RELOAD_LIMIT, "the v4 rollout", |s| {
            s["canaryRevision"] == "v4"
        })
        .await;
    assert_eq!(s["rolloutSeq"], seq + 2, "{s:#}");
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );
}
