use std::time::Duration;

use super::*;

/// Window counts (canary, stable) that are also the monotonic totals, as on
/// the first interval of a rollout.
fn obs(canary: (u64, u64), stable: (u64, u64)) -> Observation {
    let window = |(requests, errors)| RoleWindow {
        requests,
        errors,
        latency: LatencyHistogram::with_default_bounds(),
    };
    let total = |(requests, errors)| RoleTotals { requests, errors };
    Observation {
        stable: window(stable),
        canary: window(canary),
        stable_total: total(stable),
        canary_total: total(canary),
        unjudgeable: None,
    }
}

fn with_latency(mut o: Observation, micros: &[(u64, u64)]) -> Observation {
    for &(latency, n) in micros {
        o.canary.latency.record_micros(latency, n);
    }
    o
}

fn thresholds() -> Analysis {
    Analysis {
        max_latency_p99: Some(Duration::from_millis(500)),
        ..Analysis::default()
    }
}

fn no_compare() -> Analysis {
    Analysis {
        compare_to_stable: false,
        ..thresholds()
    }
}

fn loose_limit() -> Analysis {
    Analysis {
        max_error_rate: 0.5,
        ..thresholds()
    }
}

#[derive(Debug)]
enum Expect {
    Pass,
    Inconclusive(&'static str),
    Fail(FailKind, &'static str),
}

#[test]
fn judgements_on_crafted_counts() {
    let cases: Vec<(&str, Analysis, Observation, Expect)> = vec![
        (
            "too little data",
            thresholds(),
            obs((12, 12), (900, 0)),
            Expect::Inconclusive("12 canary requests in the window, need 20"),
        ),
        (
            "one request",
            thresholds(),
            obs((1, 0), (900, 0)),
            Expect::Inconclusive("1 canary request in the window, need 20"),
        ),
        (
            "clear pass",
            thresholds(),
            with_latency(obs((3000, 60), (27_000, 540)), &[(20_000, 3000)]),
            Expect::Pass,
        ),
        (
            "equal rates pass",
            thresholds(),
            obs((3000, 61), (27_000, 539)),
            Expect::Pass,
        ),
        (
            "clear error-rate failure",
            no_compare(),
            obs((300, 93), (2700, 27)),
            Expect::Fail(
                FailKind::ErrorRate,
                "canary error rate 0.31 (93 of 300) above 0.05",
            ),
        ),
        (
            "above the limit but not with 99% confidence",
            no_compare(),
            obs((100, 8), (900, 9)),
            Expect::Pass,
        ),
        (
            "exactly at minRequests, all failing",
            no_compare(),
            obs((20, 20), (900, 9)),
            Expect::Fail(FailKind::ErrorRate, "(20 of 20) above 0.05"),
        ),
        (
            "10% vs 1%: comparison fails under a high absolute limit",
            loose_limit(),
            obs((300, 30), (2700, 27)),
            Expect::Fail(
                FailKind::Compare,
                "canary error rate 0.1 (30 of 300) significantly above stable 0.01 (27 of 2700)",
            ),
        ),
        (
            "10% vs 1% without compareToStable passes the loose limit",
            Analysis {
                compare_to_stable: false,
                ..loose_limit()
            },
            obs((300, 30), (2700, 27)),
            Expect::Pass,
        ),
        (
            "significant but under one percentage point",
            loose_limit(),
            obs((1_000_000, 3_000), (9_000_000, 9_000)),
            Expect::Pass,
        ),
        (
            "worse but not significant yet",
            loose_limit(),
            obs((50, 2), (450, 2)),
            Expect::Pass,
        ),
        (
            // Every canary request took 105 to 112 ms: under a 120 ms
            // limit, whatever the buckets (they are at most 5 % wide).
            "p99 latency just under a limit between buckets",
            Analysis {
                max_latency_p99: Some(Duration::from_millis(120)),
                ..Analysis::default()
            },
            with_latency(
                obs((300, 0), (2700, 0)),
                &[(105_000, 100), (108_000, 100), (112_400, 100)],
            ),
            Expect::Pass,
        ),
        (
            "p99 latency above the limit",
            thresholds(),
            with_latency(obs((300, 0), (2700, 0)), &[(20_000, 290), (730_000, 10)]),
            Expect::Fail(
                FailKind::Latency,
                "canary p99 latency 742 ms above 500 ms (300 requests)",
            ),
        ),
        (
            "p99 latency exactly within the limit",
            thresholds(),
            with_latency(obs((300, 0), (2700, 0)), &[(20_000, 297), (730_000, 3)]),
            Expect::Pass,
        ),
        (
            "p99 latency beyond the last bucket",
            thresholds(),
            with_latency(obs((100, 0), (900, 0)), &[(20_000, 90), (90_000_000, 10)]),
            Expect::Fail(FailKind::Latency, "above 60000 ms"),
        ),
        (
            "slow but too few requests",
            thresholds(),
            with_latency(obs((10, 0), (900, 0)), &[(900_000, 10)]),
            Expect::Inconclusive("10 canary requests"),
        ),
        (
            "maxErrorRate 0 fails on the first error",
            Analysis {
                max_error_rate: 0.0,
                ..no_compare()
            },
            obs((100, 1), (900, 0)),
            Expect::Fail(FailKind::ErrorRate, "(1 of 100) above 0"),
        ),
    ];
    for (name, analysis, o, expect) in cases {
        let mut evidence = Evidence::new();
        let j = judge(&analysis, &o, &mut evidence);
        let ok = match (&expect, &j.verdict) {
            (Expect::Pass, Verdict::Pass { .. }) => true,
            (Expect::Inconclusive(text), Verdict::Inconclusive { reason }) => reason.contains(text),
            (Expect::Fail(kind, text), Verdict::Fail { kind: k, reason }) => {
                k == kind && reason.contains(text)
            }
            _ => false,
        };
        assert!(ok, "{name}: expected {expect:?}, got {}", j.verdict);
    }
}

#[test]
fn error_rate_failure_names_the_lower_bound() {
    let mut evidence = Evidence::new();
    let j = judge(&no_compare(), &obs((300, 93), (2700, 27)), &mut evidence);
    let reason = j.verdict.reason();
    // Clopper–Pearson: P(Bin(300, 0.2491) >= 93) = 0.01.
    assert!(reason.ends_with("(99% lower bound 0.2491)"), "{reason}");
    assert_eq!(j.canary.requests, 300);
    assert_eq!(j.canary.error_rate, Some(0.31));
    assert_eq!(j.stable.error_rate, Some(0.01));
    assert_eq!(j.compare_evidence, None);
}

#[test]
fn summaries_carry_p99_in_milliseconds() {
    let mut evidence = Evidence::new();
    // 100 requests in (975 µs, 1 ms]: the 99th is interpolated to 999.75 µs.
    let o = with_latency(obs((100, 0), (0, 0)), &[(1_000, 100)]);
    let j = judge(&thresholds(), &o, &mut evidence);
    let p99 = j.canary.latency_p99_ms.expect("latency recorded");
    assert!((p99 - 0.99975).abs() < 1e-9, "{p99}");
    assert_eq!(j.stable.latency_p99_ms, None);
    assert_eq!(j.stable.error_rate, None);
}

/// (canary, stable) counts, each (requests, errors), of one interval.
type IntervalCounts = ((u64, u64), (u64, u64));

/// Cumulative observations: `per_interval` counts every interval, window =
/// the last `window` intervals.
fn sequence(per_interval: &[IntervalCounts], window: usize) -> Vec<Observation> {
    let mut out = Vec::new();
    for end in 1..=per_interval.len() {
        let sum = |slice: &[IntervalCounts]| {
            slice.iter().fold(((0, 0), (0, 0)), |acc, &(c, s)| {
                (
                    (acc.0.0 + c.0, acc.0.1 + c.1),
                    (acc.1.0 + s.0, acc.1.1 + s.1),
                )
            })
        };
        let (cw, sw) = sum(&per_interval[end.saturating_sub(window)..end]);
        let (ct, st) = sum(&per_interval[..end]);
        let mut o = obs(cw, sw);
        o.canary_total = RoleTotals {
            requests: ct.0,
            errors: ct.1,
        };
        o.stable_total = RoleTotals {
            requests: st.0,
            errors: st.1,
        };
        out.push(o);
    }
    out
}

#[test]
fn evidence_stays_low_for_equal_rates_and_rises_for_a_worse_canary() {
    // 100 canary and 900 stable requests a second, 2 errors and 18 errors.
    let equal = sequence(&[((100, 2), (900, 18)); 600], 30);
    let mut evidence = Evidence::new();
    for o in &equal {
        let j = judge(&loose_limit(), o, &mut evidence);
        assert!(j.verdict.is_pass(), "{}", j.verdict);
        assert!(j.compare_evidence.is_some_and(|e| e < 1.0));
    }
    assert_eq!(evidence.intervals(), 600);

    // Ten minutes of equal rates, then the canary turns bad: 10% vs 1%.
    let mut late = vec![((100, 2), (900, 18)); 600];
    late.extend([((100, 10), (900, 9)); 30]);
    let mut evidence = Evidence::new();
    let first_fail = sequence(&late, 30)
        .iter()
        .position(|o| !judge(&loose_limit(), o, &mut evidence).verdict.is_pass());
    // A late change costs ln((k+1)(k+2)) ~ 13 nats more: still seconds.
    assert!(
        first_fail.is_some_and(|i| (600..605).contains(&i)),
        "{first_fail:?}"
    );
}

#[test]
fn a_comparison_failure_restarts_the_evidence() {
    // One bad interval (10 % vs 1 %), then equal rates.
    let seq = sequence(&[((100, 10), (900, 9)), ((100, 2), (900, 18))], 1);
    let mut evidence = Evidence::new();
    let j = judge(&loose_limit(), &seq[0], &mut evidence);
    assert_eq!(
        j.verdict.fail_kind(),
        Some(FailKind::Compare),
        "{}",
        j.verdict
    );
    assert!(j.compare_evidence.is_some_and(|e| e >= 1.0 / ALPHA));
    assert_eq!(evidence.intervals(), 0);
    assert_eq!(evidence.e_value(), 0.0);
    // The next interval is judged on fresh evidence from the new baseline:
    // without the restart the bad interval's evidence (e^20 and more) would
    // still be there.
    let j = judge(&loose_limit(), &seq[1], &mut evidence);
    assert!(j.verdict.is_pass(), "{}", j.verdict);
    assert_eq!(evidence.intervals(), 1);
    assert!(j.compare_evidence.is_some_and(|e| e < 1.0));
}

#[test]
fn evidence_baseline_after_restart_and_counter_reset() {
    let steady = sequence(&[((100, 10), (900, 9)); 3], 30);
    let mut evidence = Evidence::new();
    judge(&no_compare(), &steady[0], &mut evidence);
    assert_eq!(evidence.intervals(), 1);

    // Read back from JSON: the counters are not persisted, the next call
    // only takes a baseline.
    let json = serde_json::to_string(&evidence).expect("serializable");
    let mut restored: Evidence = serde_json::from_str(&json).expect("deserializable");
    assert_eq!(restored, evidence);
    judge(&no_compare(), &steady[1], &mut restored);
    assert_eq!(restored.intervals(), 1);
    judge(&no_compare(), &steady[2], &mut restored);
    assert_eq!(restored.intervals(), 2);

    // Counters that go backwards (a new process): a new baseline, no fold.
    judge(&no_compare(), &steady[0], &mut restored);
    assert_eq!(restored.intervals(), 2);
    judge(&no_compare(), &steady[1], &mut restored);
    assert_eq!(restored.intervals(), 3);
}

#[test]
fn verdicts_serialize_with_a_result_tag() {
    let v = Verdict::Fail {
        kind: FailKind::ErrorRate,
        reason: "x".to_owned(),
    };
    let json = serde_json::to_value(&v).expect("serializable");
    assert_eq!(
        json,
        serde_json::json!({"result": "fail", "kind": "errorRate", "reason": "x"})
    );
    let back: Verdict = serde_json::from_value(json).expect("deserializable");
    assert_eq!(back, v);
}

#[test]
fn rates_show_four_significant_digits() {
    let cases = [
        (0.31, "0.31"),
        (0.05, "0.05"),
        (0.271_34, "0.2713"),
        (0.031_2, "0.0312"),
        (0.000_123, "0.000123"),
        (1.0, "1"),
        (0.0, "0"),
    ];
    for (x, text) in cases {
        assert_eq!(Rate(x).to_string(), text);
    }
    assert_eq!(EValue(100.0).to_string(), "100");
    assert_eq!(EValue(3.2e5).to_string(), "3.2e5");
}

fn excess(limit: u64) -> Analysis {
    Analysis {
        max_excess_errors: Some(limit),
        ..no_compare()
    }
}

/// `maxExcessErrors` on exact counts: the excess is `c − C·s/S`, and the
/// judgement fails only when it is strictly above the limit.
#[test]
fn excess_errors_fail_exactly_above_the_limit() {
    // (name, limit, canary (requests, errors), stable (requests, errors), fails)
    let cases = [
        // Stable 1 %: 300 canary requests predict 3 errors.
        ("at the limit", 5, (300, 8), (10_000, 100), false),
        ("one above the limit", 5, (300, 9), (10_000, 100), true),
        // 301 requests predict 3.01: 9 errors are 5.99 over, not above 5.99 < 6.
        ("a fraction below", 5, (301, 9), (10_000, 100), true),
        ("a fraction above", 5, (301, 8), (10_000, 100), false),
        // 350 requests predict 3.5: 8 errors are 4.5 over, 9 are 5.5 over.
        ("half below", 5, (350, 8), (10_000, 100), false),
        ("half above", 5, (350, 9), (10_000, 100), true),
        // Below minRequests (20): still judged, so low weights are covered.
        ("few requests", 2, (5, 3), (10_000, 100), true),
        ("few requests within", 2, (5, 2), (10_000, 100), false),
        // Stable without requests predicts nothing.
        ("no stable requests", 4, (10, 5), (0, 0), true),
        ("no stable requests within", 4, (10, 4), (0, 0), false),
        // A canary better than stable has a negative excess.
        ("better than stable", 0, (1000, 0), (1000, 50), false),
        ("limit 0, one excess error", 0, (100, 1), (1000, 0), true),
        // Stable failing everything predicts every canary error.
        ("stable all errors", 0, (100, 100), (50, 50), false),
    ];
    for (name, limit, canary, stable, fails) in cases {
        let got = judge(&excess(limit), &obs(canary, stable), &mut Evidence::new());
        let kind = got.verdict.fail_kind();
        assert_eq!(
            kind == Some(FailKind::ExcessErrors),
            fails,
            "{name}: {:?}",
            got.verdict
        );
    }
}

#[test]
fn excess_errors_reason_gives_the_numbers() {
    let got = judge(
        &excess(5),
        &obs((350, 9), (10_000, 100)),
        &mut Evidence::new(),
    );
    assert_eq!(
        got.verdict,
        Verdict::Fail {
            kind: FailKind::ExcessErrors,
            reason: "canary errors 9 of 350 exceed the 3.5 predicted by stable error rate 0.01 \
                     (100 of 10000) by 5.5, more than maxExcessErrors 5"
                .to_owned(),
        }
    );
    let got = judge(&excess(4), &obs((10, 5), (0, 0)), &mut Evidence::new());
    assert_eq!(
        got.verdict.reason(),
        "canary errors 5 of 10 exceed the 0 predicted by no stable requests in the window \
         by 5, more than maxExcessErrors 4"
    );
}

#[test]
fn without_max_excess_errors_few_requests_stay_inconclusive() {
    let got = judge(
        &no_compare(),
        &obs((5, 5), (10_000, 0)),
        &mut Evidence::new(),
    );
    assert!(got.verdict.is_inconclusive(), "{:?}", got.verdict);
}
