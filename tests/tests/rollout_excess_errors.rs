//! `analysis.maxExcessErrors`: with stable failing every 100th request
//! (1 %) and the canary every 33rd (3 %), at weight 1 %, the rollout is
//! aborted as soon as the canary's errors exceed by more than N what stable's
//! rate predicts for its requests, and not before. The fake upstreams fail
//! deterministically, so the counts in each judgement's reason are exact.

use std::time::Duration;

use tokio::time::Instant;

use weir_e2e::{FakeUpstream, Load, Route, Step, Strategy, Weir, WeirConfig, canary_weight, phase};

/// Canary errors tolerated beyond stable's prediction.
const LIMIT: u64 = 1;

/// The `A of B` pairs of a judgement's reason, in order: the canary's
/// (errors, requests) first, then stable's.
fn counts_in(reason: &str) -> Vec<(u64, u64)> {
    let words: Vec<&str> = reason
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()))
        .collect();
    let raw: Vec<&str> = reason.split_whitespace().collect();
    (1..raw.len().saturating_sub(1))
        .filter(|&i| raw[i] == "of")
        .filter_map(|i| Some((words[i - 1].parse().ok()?, words[i + 1].parse().ok()?)))
        .collect()
}

/// `c − C·s/S > N`, in integers, as the analysis decides it.
fn exceeds(canary: (u64, u64), stable: (u64, u64), limit: u64) -> bool {
    let ((c, n_c), (s, n_s)) = (canary, stable);
    if n_s == 0 {
        return c > limit;
    }
    i128::from(c) * i128::from(n_s) - i128::from(n_c) * i128::from(s)
        > i128::from(limit) * i128::from(n_s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_canary_errors_abort_at_the_limit_and_not_before() {
    let stable = FakeUpstream::failing_every("stable", 100).await;
    let canary = FakeUpstream::failing_every("canary", 33).await;
    // Only the excess can fail: the error-rate limit is out of reach and the
    // comparison is off.
    let strategy = Strategy::judged([Step::SetWeight(1.0), Step::Pause(None)])
        .analysis("100ms", "5m")
        .max_error_rate(0.9)
        .compare_to_stable(false)
        .max_excess_errors(LIMIT);
    let weir = Weir::start(WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )]))
    .await;

    let load = Load::start(weir.addrs.http, "/", 800, 8);
    // Every passing judgement seen before the abort, with its counts.
    let mut seen_within: Vec<((u64, u64), (u64, u64))> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let aborted = loop {
        let s = weir.status("web").await;
        if phase(&s) == "Aborted" {
            break s;
        }
        let reason = s["analysis"]["reason"].as_str().unwrap_or_default();
        if s["analysis"]["verdict"] == "pass" {
            if let [canary, stable, ..] = counts_in(reason)[..] {
                seen_within.push((canary, stable));
            }
        }
        assert!(Instant::now() < deadline, "not aborted after 120 s: {s:#}");
        // The sampling period of this watch, not synchronisation.
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let counts = load.stop().await;
    eprintln!("load: {counts:?}");

    assert_eq!(canary_weight(&aborted), 0.0, "{aborted:#}");
    assert_eq!(aborted["analysis"]["verdict"], "fail", "{aborted:#}");
    let reason = aborted["analysis"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("more than maxExcessErrors {LIMIT}")),
        "{aborted:#}"
    );
    let [canary_counts, stable_counts, ..] = counts_in(reason)[..] else {
        panic!("no counts in the reason: {reason}");
    };
    eprintln!("abort: {reason}");
    assert!(
        exceeds(canary_counts, stable_counts, LIMIT),
        "the abort's counts do not exceed the limit: {reason}"
    );
    // The fakes fail every 33rd and 100th request they receive: the counts
    // match (give or take an answer overtaken by the next one in flight).
    let (canary_errors, canary_requests) = canary_counts;
    let (stable_errors, stable_requests) = stable_counts;
    assert!(
        canary_errors.abs_diff(canary_requests / 33) <= 1 && canary_requests <= canary.hits(),
        "canary errors {canary_errors} of {canary_requests}, {} hits",
        canary.hits()
    );
    assert!(
        stable_errors.abs_diff(stable_requests / 100) <= 1 && stable_requests <= stable.hits(),
        "stable errors {stable_errors} of {stable_requests}, {} hits",
        stable.hits()
    );

    // Not before: every judgement that passed was within the limit, and one
    // of them already held a canary error.
    for (canary, stable) in &seen_within {
        assert!(
            !exceeds(*canary, *stable, LIMIT),
            "a passing judgement was over the limit: canary {canary:?}, stable {stable:?}"
        );
    }
    assert!(
        seen_within.iter().any(|((errors, _), _)| *errors > 0),
        "no passing judgement with a canary error was seen: {seen_within:?}"
    );

    let m = weir.metrics().await;
    assert_eq!(
        m.sum(
            "weir_rollout_aborts_total",
            &[("route", "web"), ("reason", "analysis_excess_errors")]
        ),
        1.0,
        "{}",
        m.text
    );
}
