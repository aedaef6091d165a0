//! Simulated rollouts for measuring the judgement: constant request rates
//! per role, independent errors at a fixed rate per role, judged by the real
//! [`RolloutState::tick`] every analysis interval over a sliding window that
//! starts with the rollout, exactly as the control loop feeds it.
//!
//! Used by `examples/false_alarm.rs` (false-abort rate and detection time)
//! and by a quick test. The random source is passed in (uniform draws in
//! `[0, 1)`), so runs are reproducible and this crate needs no RNG.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use weir_config::{Analysis, EndpointAddr, Route, Step, Strategy, Timeouts, Upstream, Weight};

use super::analysis::Observation;
use super::machine::{AbortReason, Phase, RolloutState};
use super::stats::{RoleTotals, RoleWindow};

/// Wall-clock start of every simulated rollout (any value works).
const START_MS: u64 = 1_700_000_000_000;

/// Traffic and thresholds of simulated rollouts.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Thresholds, interval and window.
    pub analysis: Analysis,
    /// How long each rollout runs unless it aborts.
    pub duration: Duration,
    /// Canary requests per second.
    pub canary_rps: u64,
    /// Stable requests per second.
    pub stable_rps: u64,
    /// Probability that a canary request fails.
    pub canary_error_rate: f64,
    /// Probability that a stable request fails.
    pub stable_error_rate: f64,
    /// From this time after the start on, the canary fails with this
    /// probability instead (a canary that turns bad late).
    pub canary_turns_bad: Option<(Duration, f64)>,
}

/// How a simulated rollout aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// Time from the rollout's start to the abort.
    pub after: Duration,
    /// The failing rule.
    pub reason: AbortReason,
}

/// Counts of one analysis interval.
#[derive(Debug, Clone, Copy, Default)]
struct Interval {
    stable: RoleTotals,
    canary: RoleTotals,
}

/// Runs one rollout of `scenario` (steps `setWeight 10`, `pause {}`, so it
/// never completes by itself); `uniform` returns draws in `[0, 1)`.
/// The abort, if analysis aborted it within `scenario.duration`.
pub fn run(scenario: &Scenario, uniform: &mut dyn FnMut() -> f64) -> Option<Abort> {
    let route = route(scenario.analysis);
    let interval_ms = u64::try_from(scenario.analysis.interval.as_millis())
        .unwrap_or(1)
        .max(1);
    let window_intervals = usize::try_from(
        u64::try_from(scenario.analysis.window.as_millis())
            .unwrap_or(u64::MAX)
            .div_ceil(interval_ms)
            .max(1),
    )
    .unwrap_or(usize::MAX);
    let ticks = u64::try_from(scenario.duration.as_millis()).unwrap_or(0) / interval_ms;
    let per_interval = |rps: u64| (rps * interval_ms).div_ceil(1000);

    let mut state = RolloutState::start(&route, START_MS).state;
    let mut window: VecDeque<Interval> = VecDeque::with_capacity(window_intervals);
    let mut totals = Interval::default();
    for tick in 1..=ticks {
        let elapsed = Duration::from_millis((tick - 1) * interval_ms);
        let canary_error_rate = match scenario.canary_turns_bad {
            Some((after, rate)) if elapsed >= after => rate,
            _ => scenario.canary_error_rate,
        };
        let stable_requests = per_interval(scenario.stable_rps);
        let canary_requests = per_interval(scenario.canary_rps);
        let counts = Interval {
            stable: RoleTotals {
                requests: stable_requests,
                errors: binomial(stable_requests, scenario.stable_error_rate, uniform),
            },
            canary: RoleTotals {
                requests: canary_requests,
                errors: binomial(canary_requests, canary_error_rate, uniform),
            },
        };
        add(&mut totals, counts);
        if window.len() == window_intervals {
            window.pop_front();
        }
        window.push_back(counts);
        let mut sum = Interval::default();
        for c in &window {
            add(&mut sum, *c);
        }
        let obs = Observation {
            stable: role_window(sum.stable),
            canary: role_window(sum.canary),
            stable_total: totals.stable,
            canary_total: totals.canary,
            unjudgeable: None,
        };
        let now_ms = START_MS + tick * interval_ms;
        let outcome = state.tick(&route, now_ms, &obs);
        if let Some(reason) = outcome.transition.as_ref().and_then(|t| t.abort_reason()) {
            return Some(Abort {
                after: Duration::from_millis(tick * interval_ms),
                reason,
            });
        }
        state = outcome.state;
        debug_assert_ne!(state.phase, Phase::Healthy);
    }
    None
}

/// A draw from Binomial(n, p), by skipping geometrically distributed runs of
/// successes-free trials: about `n p + 1` uniform draws.
pub fn binomial(n: u64, p: f64, uniform: &mut dyn FnMut() -> f64) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let ln_q = (-p).ln_1p();
    let mut count = 0;
    let mut position: u64 = 0;
    loop {
        // 1 − u is in (0, 1], so the logarithm is finite and ≤ 0.
        let gap = ((1.0 - uniform()).ln() / ln_q).floor();
        let gap = if gap.is_finite() && gap < n as f64 {
            gap as u64
        } else {
            n
        };
        position = position.saturating_add(gap).saturating_add(1);
        if position > n {
            return count;
        }
        count += 1;
    }
}

fn add(sum: &mut Interval, c: Interval) {
    sum.stable.requests += c.stable.requests;
    sum.stable.errors += c.stable.errors;
    sum.canary.requests += c.canary.requests;
    sum.canary.errors += c.canary.errors;
}

fn role_window(counts: RoleTotals) -> RoleWindow {
    RoleWindow {
        requests: counts.requests,
        errors: counts.errors,
        ..RoleWindow::empty()
    }
}

/// A route whose rollout sets 10 % and then waits for promote.
fn route(analysis: Analysis) -> Route {
    let upstream = |revision: &str, port| Upstream {
        revision: Arc::from(revision),
        endpoints: vec![EndpointAddr {
            host: "127.0.0.1".to_owned(),
            port,
        }],
        protocol: weir_config::UpstreamProtocol::Http1,
        tls: None,
    };
    Route {
        name: Arc::from("simulated"),
        hosts: Vec::new(),
        path_prefix: "/".to_owned(),
        stable: upstream("v1", 9001),
        canary: Some(upstream("v2", 9101)),
        fixed_weight: Weight::ZERO,
        stickiness: None,
        canary_by_header: None,
        timeouts: Timeouts::default(),
        upgrades: vec![Arc::from("websocket")],
        stable_fallback: None,
        strategy: Some(Strategy {
            steps: vec![
                Step::SetWeight(Weight::from_percent_int(10)),
                Step::Pause(None),
            ],
            analysis,
            gated_by_analysis: true,
            webhooks: weir_config::Webhooks::default(),
            background: None,
            blue_green: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(canary: f64, stable: f64, max_error_rate: f64) -> Scenario {
        Scenario {
            analysis: Analysis {
                max_error_rate,
                ..Analysis::default()
            },
            duration: Duration::from_secs(600),
            canary_rps: 100,
            stable_rps: 900,
            canary_error_rate: canary,
            stable_error_rate: stable,
            canary_turns_bad: None,
        }
    }

    #[test]
    fn binomial_draws_have_the_right_mean() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut uniform = || rng.f64();
        let draws = 20_000;
        let total: u64 = (0..draws).map(|_| binomial(900, 0.02, &mut uniform)).sum();
        let mean = total as f64 / f64::from(draws);
        // sd of the mean: sqrt(900 * 0.02 * 0.98 / 20000) ~ 0.03.
        assert!((mean - 18.0).abs() < 0.15, "{mean}");
        assert_eq!(binomial(10, 0.0, &mut uniform), 0);
        assert_eq!(binomial(10, 1.0, &mut uniform), 10);
    }

    /// CI's guard of the false-abort target: 100 ten-minute rollouts with
    /// equal 2 % error rates (the example runs 1,000 and more).
    #[test]
    fn equal_error_rates_rarely_abort() {
        let mut rng = fastrand::Rng::with_seed(20_240_601);
        let mut uniform = || rng.f64();
        let s = scenario(0.02, 0.02, 0.05);
        let aborts = (0..100).filter_map(|_| run(&s, &mut uniform)).count();
        assert!(aborts <= 3, "{aborts} false aborts in 100 rollouts");
    }

    #[test]
    fn a_clearly_worse_canary_aborts_within_seconds() {
        let mut rng = fastrand::Rng::with_seed(99);
        let mut uniform = || rng.f64();
        let s = scenario(0.10, 0.01, 0.5);
        for _ in 0..20 {
            let abort = run(&s, &mut uniform);
            assert!(
                abort.is_some_and(|a| a.after <= Duration::from_secs(10)
                    && a.reason == AbortReason::AnalysisCompare),
                "{abort:?}"
            );
        }
    }
}
