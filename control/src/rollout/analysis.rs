//! The judgement of one analysis interval: is the canary healthy, unhealthy,
//! or is there too little data to say? Pure functions on counts; the only
//! state is the comparison's running [`Evidence`], which the caller keeps
//! (inside [`super::RolloutState`]) from one interval to the next.
//!
//! A judgement is, in this order:
//!
//! 0. **Fail (excess errors)**, with `maxExcessErrors: N`, when the canary's
//!    errors in the window exceed by more than `N` the count that stable's
//!    error rate in the same window predicts for the canary's requests:
//!    `canary_errors − canary_requests × stable_errors / stable_requests > N`
//!    (stable without requests in the window predicts 0). Checked before
//!    everything else, `minRequests` included: it bounds the number of users
//!    a bad canary hurts, at any weight and any traffic. It is a count, not a
//!    test: with equal error rates it fires only when the canary's errors
//!    drift more than `N` above their expectation within one window, so `N`
//!    should be well above the square root of the canary errors a window
//!    normally holds (exact integer arithmetic, no rounding).
//! 1. **Inconclusive** when the canary served fewer than `minRequests`
//!    requests in the window.
//! 2. **Fail (error rate)** when the canary's error rate in the window is
//!    above `maxErrorRate` with 99 % confidence: the one-sided exact
//!    (Clopper–Pearson) 99 % lower bound of the rate is above the limit,
//!    checked as `P(Binomial(n, maxErrorRate) ≥ errors) < 0.01`. This is a
//!    per-window limit check, as in Argo Rollouts; repeated every interval it
//!    can fire by chance only when the true rate is close to the limit.
//! 3. **Fail (compare)**, with `compareToStable`, when the canary is
//!    significantly worse than stable: see below.
//! 4. **Fail (latency)** when the canary's p99 latency in the window is above
//!    `maxLatencyP99` (see [`LatencyHistogram::quantile`] for the precision).
//! 5. **Pass** otherwise.
//!
//! # The comparison with stable: a sequential test
//!
//! Judging every second on overlapping windows with a fixed-sample test
//! would raise false alarms far more often than its nominal level over a long
//! rollout. The comparison is therefore a sequential test whose false-alarm
//! probability stays below `alpha` = 1 % however long the rollout runs and
//! however often it is checked (Ville's inequality for a nonnegative
//! supermartingale `M` with `M_0 = 1`: `P(sup M_t ≥ 1/alpha) ≤ alpha`).
//!
//! *Conditioning on errors.* Within one interval, let `N_c`, `N_s` be the
//! requests and `c`, `s` the errors of each role, `n = c + s`. If both roles
//! fail each request with the same probability (whatever it is, and however
//! it drifts over time), then given `n` the canary's share `c` is
//! hypergeometric with mean `n q`, `q = N_c / (N_c + N_s)`. Against the
//! alternative "the canary's error odds are `θ` times stable's" the
//! likelihood ratio of the binomial approximation is
//! `LR(θ) = θ^c / (1 + q (θ − 1))^n`, whose mean under the null is at most 1
//! (the hypergeometric is more concentrated than the binomial and `θ^c` is
//! convex; a canary that is *better* than stable lowers it further). The
//! product of these per-interval ratios is a nonnegative supermartingale.
//! Using the increments of each interval, rather than totals, keeps this true
//! while the weight (and so `q`) changes from step to step.
//!
//! *Mixtures.* `θ` is unknown, so the test mixes [`ODDS_RATIOS`] (2× to 100×,
//! equal weights): 2× is the smallest worsening worth aborting for. A canary
//! can also start failing late in a long rollout, after minutes of good
//! behaviour that would drive a plain product far below 1 and delay the
//! alarm by as long; so the test also mixes over the interval `k` at which
//! the canary turned bad, with prior weight `1 / ((k + 1)(k + 2))` (summing
//! to 1): `R_t = (R_{t−1} + π_t) · LR_t`, an "e-detector" in the sense of
//! Shin, Ramdas and Rinaldo (2023). The mixture of supermartingales is one,
//! so the 1 % bound still holds; the price of a late change at interval `k`
//! is `ln((k + 1)(k + 2))` more evidence, about 13 nats after ten minutes of
//! one-second intervals, a second or two for a clear regression.
//!
//! *Practical relevance.* On top of the evidence, the canary's error rate in
//! the window must exceed stable's by at least [`MIN_ABSOLUTE_DIFFERENCE`]
//! (one percentage point), so that a tiny, statistically real difference
//! (0.1 % vs 0.05 %) never aborts. Such gates only remove alarms, so they keep
//! the bound.
//!
//! *After a failure* the comparison starts afresh (a new e-detector from the
//! next interval), so with `failureLimit` = f the chance that equal error
//! rates cause the abort is at most `alpha^(f+1)`.
//!
//! *Feeding it.* Each call takes the monotonic request and error counters of
//! both roles ([`Observation::stable_total`], [`Observation::canary_total`]);
//! the evidence folds in the increase since the previous call. On the first
//! call of a rollout (or retry) there is no previous call: the window counts
//! are used, since the window then begins at the rollout's start. After a
//! restart (evidence read back from the state file) the first call only
//! takes the counters as a new baseline; a counter that goes backwards is
//! taken as a reset the same way.

use std::fmt;

use serde::{Deserialize, Serialize};
use weir_config::Analysis;

use super::stats::{
    LatencyHistogram, Millis, RoleTotals, RoleWindow, binomial_upper_tail, clopper_pearson_lower,
    ratio,
};

/// Error probability of each test: failing with 99 % confidence.
pub const ALPHA: f64 = 0.01;

/// The canary's window error rate must exceed stable's by at least this
/// (one percentage point) before the comparison can fail.
pub const MIN_ABSOLUTE_DIFFERENCE: f64 = 0.01;

/// Alternatives of the comparison, as canary-to-stable error odds ratios,
/// mixed with equal weights.
pub const ODDS_RATIOS: [f64; 6] = [2.0, 3.0, 5.0, 10.0, 30.0, 100.0];

/// Bounds of the stored log-evidence, keeping it finite and serializable.
const LN_FLOOR: f64 = -1e6;
const LN_CEIL: f64 = 1e6;

/// What the proxy counted, given to [`judge`] each interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Stable over the window: the last `window`, never reaching back before
    /// the rollout's start (or retry).
    pub stable: RoleWindow,
    /// Canary over the same window.
    pub canary: RoleWindow,
    /// Stable's monotonic counters now (any origin, e.g. process start).
    pub stable_total: RoleTotals,
    /// Canary's monotonic counters now (same origin as `stable_total`).
    pub canary_total: RoleTotals,
    /// Why these counters cannot be judged, when they cannot (a leader
    /// reading too few replicas): the verdict is inconclusive, saying so.
    pub unjudgeable: Option<String>,
}

/// The outcome of one judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Verdict {
    /// The canary is healthy; a step may advance.
    Pass {
        /// The numbers judged.
        reason: String,
    },
    /// Too little data; a step does not advance.
    Inconclusive {
        /// What is missing, e.g. "12 canary requests in the window, need 20".
        reason: String,
    },
    /// The canary is unhealthy; counts towards `failureLimit`.
    Fail {
        /// Which rule failed.
        kind: FailKind,
        /// The numbers behind it.
        reason: String,
    },
}

/// Which rule a failed judgement broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailKind {
    /// Canary error rate above `maxErrorRate`.
    ErrorRate,
    /// Canary significantly worse than stable.
    Compare,
    /// Canary p99 latency above `maxLatencyP99`.
    Latency,
    /// Canary errors beyond stable's prediction above `maxExcessErrors`.
    ExcessErrors,
}

/// One role's figures over the window, for the status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleSummary {
    /// Requests in the window.
    pub requests: u64,
    /// Errors in the window.
    pub errors: u64,
    /// `errors / requests`; `None` without requests.
    pub error_rate: Option<f64>,
    /// p99 latency in milliseconds (the last bucket bound when above it);
    /// `None` without latency samples.
    pub latency_p99_ms: Option<f64>,
}

/// A verdict with the figures it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// The outcome.
    pub verdict: Verdict,
    /// Stable's figures.
    pub stable: RoleSummary,
    /// Canary's figures.
    pub canary: RoleSummary,
    /// The comparison's evidence against equal error rates (an e-value: it
    /// fails at `1 / ALPHA` = 100); `None` without `compareToStable`.
    pub compare_evidence: Option<f64>,
}

/// The comparison's running state: log-evidence per alternative, the
/// intervals folded in, and the counters seen last. Reset by a new rollout
/// and by retry; serialized with the rollout state, except the counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// `ln R_t(θ)` per entry of [`ODDS_RATIOS`].
    ln_r: Vec<f64>,
    /// Intervals folded in since the start (indexes the change-point prior).
    updates: u64,
    /// Counters at the previous call; not persisted, since the proxy's
    /// counters restart with the process.
    #[serde(skip, default = "Baseline::unknown")]
    baseline: Baseline,
}

/// Where the next increment is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Baseline {
    /// A rollout just began: the window holds everything since.
    RolloutStart,
    /// Read back after a restart: take the next counters as the baseline.
    Unknown,
    /// Counters (stable, canary) at the previous call.
    At(RoleTotals, RoleTotals),
}

// === impl Verdict ===

impl Verdict {
    /// The human reason.
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Pass { reason }
            | Verdict::Inconclusive { reason }
            | Verdict::Fail { reason, .. } => reason,
        }
    }

    /// True for [`Verdict::Pass`].
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass { .. })
    }

    /// True for [`Verdict::Inconclusive`].
    pub fn is_inconclusive(&self) -> bool {
        matches!(self, Verdict::Inconclusive { .. })
    }

    /// The failed rule, for [`Verdict::Fail`].
    pub fn fail_kind(&self) -> Option<FailKind> {
        match self {
            Verdict::Fail { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            Verdict::Pass { .. } => "pass",
            Verdict::Inconclusive { .. } => "inconclusive",
            Verdict::Fail { .. } => "fail",
        };
        write!(f, "{word}: {}", self.reason())
    }
}

// === impl RoleSummary ===

impl RoleSummary {
    /// The figures of one role's window.
    pub fn of(window: &RoleWindow) -> RoleSummary {
        RoleSummary {
            requests: window.requests,
            errors: window.errors,
            error_rate: window.error_rate(),
            latency_p99_ms: window
                .latency
                .quantile(0.99)
                .map(|q| q.at_least().as_secs_f64() * 1e3),
        }
    }
}

// === impl Evidence ===

impl Evidence {
    /// No evidence yet, for a rollout that starts now.
    pub fn new() -> Evidence {
        Evidence {
            ln_r: vec![LN_FLOOR; ODDS_RATIOS.len()],
            updates: 0,
            baseline: Baseline::RolloutStart,
        }
    }

    /// No evidence yet, for a rollout taken over from another process (a
    /// new leader resuming from the CanaryRoute status): the next counters
    /// read are the baseline, so nothing is counted twice.
    pub fn taken_over() -> Evidence {
        Evidence {
            baseline: Baseline::Unknown,
            ..Evidence::new()
        }
    }

    /// The evidence against equal error rates: an e-value, which equal rates
    /// push above `1/ALPHA` with probability at most `ALPHA` over the whole
    /// rollout. Starts at 0.
    pub fn e_value(&self) -> f64 {
        self.ln_e_value().exp().min(f64::MAX)
    }

    /// Intervals folded in since the rollout (or the last comparison failure).
    pub fn intervals(&self) -> u64 {
        self.updates
    }

    fn ln_e_value(&self) -> f64 {
        // Equal weights 1/K over the odds ratios.
        log_sum_exp(&self.ln_r) - (self.ln_r.len().max(1) as f64).ln()
    }

    /// Folds in what the counters say happened since the previous call.
    fn observe(&mut self, obs: &Observation) {
        let now = (obs.stable_total, obs.canary_total);
        let increment = match self.baseline {
            Baseline::RolloutStart => Some((counts_of(&obs.stable), counts_of(&obs.canary))),
            Baseline::Unknown => None,
            Baseline::At(stable, canary) => obs
                .stable_total
                .since(stable)
                .zip(obs.canary_total.since(canary)),
        };
        self.baseline = Baseline::At(now.0, now.1);
        if let Some((stable, canary)) = increment {
            self.fold(stable, canary);
        }
    }

    /// One interval of the e-detector: `R_t = (R_{t−1} + π_t) · LR_t(θ)`.
    fn fold(&mut self, stable: RoleTotals, canary: RoleTotals) {
        if self.ln_r.len() != ODDS_RATIOS.len() {
            // Written by a build with other alternatives: start afresh.
            self.ln_r = vec![LN_FLOOR; ODDS_RATIOS.len()];
        }
        let t = self.updates as f64;
        let ln_prior = -((t + 1.0).ln() + (t + 2.0).ln());
        self.updates += 1;
        let requests = stable.requests + canary.requests;
        let c = canary.errors.min(canary.requests) as f64;
        let n = c + stable.errors.min(stable.requests) as f64;
        let q = ratio(canary.requests, requests).unwrap_or(0.0);
        for (ln_r, theta) in self.ln_r.iter_mut().zip(ODDS_RATIOS) {
            let ln_lr = if n > 0.0 {
                c * theta.ln() - n * (q * (theta - 1.0)).ln_1p()
            } else {
                0.0
            };
            *ln_r = (log_add_exp(*ln_r, ln_prior) + ln_lr).clamp(LN_FLOOR, LN_CEIL);
        }
    }

    /// Starts a fresh test after a failure, keeping the counter baseline.
    fn restart(&mut self) {
        self.ln_r = vec![LN_FLOOR; ODDS_RATIOS.len()];
        self.updates = 0;
    }
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence::new()
    }
}

/// Equal when the persisted parts are: the counter baseline is a cache.
impl PartialEq for Evidence {
    fn eq(&self, other: &Self) -> bool {
        self.ln_r == other.ln_r && self.updates == other.updates
    }
}

// === impl Baseline ===

impl Baseline {
    fn unknown() -> Baseline {
        Baseline::Unknown
    }
}

// === judgement ===

/// Judges one interval: the verdict and figures for `obs` under the
/// thresholds of `analysis`, folding the interval into `evidence` first.
///
/// Call once per `analysis.interval` while a rollout is active, with the
/// same `evidence` each time (see the module docs for what `obs` must hold).
pub fn judge(analysis: &Analysis, obs: &Observation, evidence: &mut Evidence) -> Judgement {
    evidence.observe(obs);
    let compare_evidence = analysis.compare_to_stable.then(|| evidence.e_value());
    let stable = RoleSummary::of(&obs.stable);
    let canary = RoleSummary::of(&obs.canary);
    let compare = || {
        if analysis.compare_to_stable {
            compare_failure(obs, evidence)
        } else {
            None
        }
    };
    let verdict = if let Some(reason) = &obs.unjudgeable {
        Verdict::Inconclusive {
            reason: reason.clone(),
        }
    } else if let Some(fail) = analysis
        .max_excess_errors
        .and_then(|limit| excess_failure(limit, obs))
    {
        fail
    } else if obs.canary.requests < analysis.min_requests {
        let n = obs.canary.requests;
        Verdict::Inconclusive {
            reason: format!(
                "{n} canary request{} in the window, need {}",
                if n == 1 { "" } else { "s" },
                analysis.min_requests
            ),
        }
    } else if let Some(fail) = error_rate_failure(analysis.max_error_rate, &obs.canary) {
        fail
    } else if let Some(fail) = compare() {
        fail
    } else if let Some(fail) = analysis
        .max_latency_p99
        .and_then(|limit| latency_failure(limit, &obs.canary.latency))
    {
        fail
    } else {
        Verdict::Pass {
            reason: pass_reason(obs),
        }
    };
    if verdict.fail_kind() == Some(FailKind::Compare) {
        evidence.restart();
    }
    Judgement {
        verdict,
        stable,
        canary,
        compare_evidence,
    }
}

fn error_rate_failure(limit: f64, canary: &RoleWindow) -> Option<Verdict> {
    let (n, k) = (canary.requests, canary.errors.min(canary.requests));
    // The lower bound is below the observed rate, so nothing at or under the
    // limit can fail; this also skips the tail computation on healthy canaries.
    if n == 0 || k as f64 <= limit * n as f64 {
        return None;
    }
    if binomial_upper_tail(n, k, limit) >= ALPHA {
        return None;
    }
    let lower = clopper_pearson_lower(n, k, ALPHA);
    Some(Verdict::Fail {
        kind: FailKind::ErrorRate,
        reason: format!(
            "canary error rate {} ({k} of {n}) above {} ({}% lower bound {})",
            Rate(k as f64 / n as f64),
            Rate(limit),
            confidence_percent(),
            Rate(lower)
        ),
    })
}

/// `maxExcessErrors`: the canary's errors beyond the count stable's error
/// rate predicts for its requests, compared in integers:
/// `c·S − C·s > N·S` with `C`, `c` the canary's requests and errors and `S`,
/// `s` stable's (with `S` = 0: `c > N`).
fn excess_failure(limit: u64, obs: &Observation) -> Option<Verdict> {
    let (canary_n, canary_k) = (
        obs.canary.requests,
        obs.canary.errors.min(obs.canary.requests),
    );
    let (stable_n, stable_k) = (
        obs.stable.requests,
        obs.stable.errors.min(obs.stable.requests),
    );
    let over = if stable_n == 0 {
        canary_k > limit
    } else {
        let scaled_excess = i128::from(canary_k) * i128::from(stable_n)
            - i128::from(canary_n) * i128::from(stable_k);
        scaled_excess > i128::from(limit) * i128::from(stable_n)
    };
    if !over {
        return None;
    }
    let expected = ratio(stable_k, stable_n).map_or(0.0, |rate| rate * canary_n as f64);
    let stable_rate = match ratio(stable_k, stable_n) {
        Some(rate) => format!(
            "stable error rate {} ({stable_k} of {stable_n})",
            Rate(rate)
        ),
        None => "no stable requests in the window".to_owned(),
    };
    Some(Verdict::Fail {
        kind: FailKind::ExcessErrors,
        reason: format!(
            "canary errors {canary_k} of {canary_n} exceed the {} predicted by {stable_rate} \
             by {}, more than maxExcessErrors {limit}",
            Count(expected),
            Count(canary_k as f64 - expected),
        ),
    })
}

fn compare_failure(obs: &Observation, evidence: &Evidence) -> Option<Verdict> {
    let canary_rate = obs.canary.error_rate()?;
    let stable_rate = obs.stable.error_rate()?;
    if canary_rate - stable_rate < MIN_ABSOLUTE_DIFFERENCE {
        return None;
    }
    let ln_e = evidence.ln_e_value();
    if ln_e < (1.0 / ALPHA).ln() {
        return None;
    }
    Some(Verdict::Fail {
        kind: FailKind::Compare,
        reason: format!(
            "canary error rate {} ({} of {}) significantly above stable {} ({} of {}): \
             sequential evidence {} against equal rates, limit {}",
            Rate(canary_rate),
            obs.canary.errors,
            obs.canary.requests,
            Rate(stable_rate),
            obs.stable.errors,
            obs.stable.requests,
            EValue(ln_e.exp()),
            EValue(1.0 / ALPHA),
        ),
    })
}

fn latency_failure(limit: std::time::Duration, latency: &LatencyHistogram) -> Option<Verdict> {
    let p99 = latency.quantile(0.99)?;
    p99.is_above(limit).then(|| Verdict::Fail {
        kind: FailKind::Latency,
        reason: format!(
            "canary p99 latency {p99} above {} ({} requests)",
            Millis(limit),
            latency.total()
        ),
    })
}

fn pass_reason(obs: &Observation) -> String {
    let role = |window: &RoleWindow| match window.error_rate() {
        Some(rate) => format!(
            "error rate {} ({} of {})",
            Rate(rate),
            window.errors,
            window.requests
        ),
        None => "no requests".to_owned(),
    };
    let mut reason = format!("canary {}, stable {}", role(&obs.canary), role(&obs.stable));
    if let Some(p99) = obs.canary.latency.quantile(0.99) {
        reason.push_str(&format!(", canary p99 {p99}"));
    }
    reason
}

fn counts_of(window: &RoleWindow) -> RoleTotals {
    RoleTotals {
        requests: window.requests,
        errors: window.errors,
    }
}

fn confidence_percent() -> f64 {
    ((1.0 - ALPHA) * 100.0).round()
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// A rate with four significant digits, trailing zeros trimmed: 0.31, 0.0512.
struct Rate(f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let x = self.0;
        if x == 0.0 || !x.is_finite() {
            return write!(f, "{x}");
        }
        let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
        let text = format!("{x:.decimals$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        f.write_str(text)
    }
}

/// An expected count: whole, or with two decimals trimmed: 3, 4.5, 0.33.
struct Count(f64);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:.2}", self.0);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        f.write_str(text)
    }
}

/// An e-value: plain below 1000, else in scientific notation.
struct EValue(f64);

impl fmt::Display for EValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1000.0 {
            write!(f, "{:.0}", self.0)
        } else {
            write!(f, "{:.1e}", self.0)
        }
    }
}

#[cfg(test)]
mod tests;
