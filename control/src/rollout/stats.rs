//! The numbers analysis works on: per-role request and error counts, a latency
//! histogram with its quantiles, and the binomial tail and Clopper–Pearson
//! bound behind "above the limit with 99 % confidence".
//!
//! Plain arithmetic on counts, written out here rather than taken from a
//! statistics crate: the log-gamma function (Lanczos), the regularized
//! incomplete beta function (continued fraction, modified Lentz), and a
//! bisection on the binomial tail. Accurate to about 1e-12 relative for the
//! sizes analysis meets (up to millions of requests per window).

use std::fmt;
use std::time::Duration;

/// Counts of one role over the analysis window, as the proxy reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleWindow {
    /// Requests answered (every status, weir's own 502 and 504 included).
    pub requests: u64,
    /// Of those, 5xx responses and proxy errors.
    pub errors: u64,
    /// Latency of those requests.
    pub latency: LatencyHistogram,
}

/// Monotonic counters of one role (any origin: since the process started, or
/// since the rollout began); analysis folds in the increase between two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleTotals {
    /// Requests answered so far.
    pub requests: u64,
    /// Of those, 5xx responses and proxy errors.
    pub errors: u64,
}

/// A latency histogram: counts per bucket, bucket `i` holding latencies in
/// `(bounds[i-1], bounds[i]]` microseconds (Prometheus' `le`), the first from
/// 0 and one more bucket at the end for everything above the last bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    bounds_micros: Vec<u64>,
    counts: Vec<u64>,
}

/// Why a histogram cannot be built or merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// Bounds must be strictly increasing and start above 0.
    #[error("histogram bounds must be strictly increasing and above 0")]
    BadBounds,
    /// One count per bound plus one for the overflow bucket.
    #[error("{counts} bucket counts for {bounds} bounds; need bounds + 1")]
    CountMismatch {
        /// Bounds given.
        bounds: usize,
        /// Counts given.
        counts: usize,
    },
    /// Merging histograms with different bounds.
    #[error("histograms with different bucket bounds cannot be merged")]
    DifferentBounds,
}

/// A quantile read from a [`LatencyHistogram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    /// The quantile, linearly interpolated within its bucket.
    Estimate(Duration),
    /// The quantile lies in the overflow bucket: above this, the last bound.
    Above(Duration),
}

// === impl RoleWindow ===

impl RoleWindow {
    /// A window with no requests (latency buckets as in [`LatencyHistogram::with_default_bounds`]).
    pub fn empty() -> RoleWindow {
        RoleWindow {
            requests: 0,
            errors: 0,
            latency: LatencyHistogram::with_default_bounds(),
        }
    }

    /// Error rate, `None` without requests.
    pub fn error_rate(&self) -> Option<f64> {
        ratio(self.errors, self.requests)
    }
}

// === impl RoleTotals ===

impl RoleTotals {
    /// The increase from `earlier` to `self`; `None` when a counter went
    /// backwards (a reset, such as a process restart).
    pub fn since(self, earlier: RoleTotals) -> Option<RoleTotals> {
        Some(RoleTotals {
            requests: self.requests.checked_sub(earlier.requests)?,
            errors: self.errors.checked_sub(earlier.errors)?,
        })
    }
}

// === impl LatencyHistogram ===

impl LatencyHistogram {
    /// The proxy's latency bucket bounds, in microseconds, from 100 µs to
    /// 60 s (see [`weir_proxy::metrics::LATENCY_BOUNDS_MICROS`]). Each is at
    /// most 5 % above the one before, so an interpolated quantile is within
    /// 5 % of the true one; Prometheus' usual bounds (0.5 ms … 10 s, as in
    /// the proxy's `weir_http_request_duration_seconds`) are all among them,
    /// and so is every round limit such as 120 ms, 200 ms, 250 ms, 1 s.
    pub const DEFAULT_BOUNDS_MICROS: &'static [u64] = &weir_proxy::metrics::LATENCY_BOUNDS_MICROS;

    /// An empty histogram with the given bounds (microseconds).
    ///
    /// # Errors
    /// [`HistogramError::BadBounds`] unless the bounds are strictly increasing
    /// and above 0 (no bounds at all is allowed: one overflow bucket).
    pub fn new(bounds_micros: &[u64]) -> Result<LatencyHistogram, HistogramError> {
        Self::from_counts(bounds_micros.to_vec(), vec![0; bounds_micros.len() + 1])
    }

    /// An empty histogram with [`Self::DEFAULT_BOUNDS_MICROS`].
    pub fn with_default_bounds() -> LatencyHistogram {
        LatencyHistogram {
            bounds_micros: Self::DEFAULT_BOUNDS_MICROS.to_vec(),
            counts: vec![0; Self::DEFAULT_BOUNDS_MICROS.len() + 1],
        }
    }

    /// A histogram from bounds (microseconds) and non-cumulative counts, one
    /// per bound plus the overflow bucket last.
    ///
    /// # Errors
    /// [`HistogramError`] when the bounds are not strictly increasing and
    /// above 0, or the number of counts is not bounds + 1.
    pub fn from_counts(
        bounds_micros: Vec<u64>,
        counts: Vec<u64>,
    ) -> Result<LatencyHistogram, HistogramError> {
        let increasing = bounds_micros.first().is_none_or(|&b| b > 0)
            && bounds_micros.windows(2).all(|w| w[0] < w[1]);
        if !increasing {
            return Err(HistogramError::BadBounds);
        }
        if counts.len() != bounds_micros.len() + 1 {
            return Err(HistogramError::CountMismatch {
                bounds: bounds_micros.len(),
                counts: counts.len(),
            });
        }
        Ok(LatencyHistogram {
            bounds_micros,
            counts,
        })
    }

    /// Bucket upper bounds in microseconds.
    pub fn bounds_micros(&self) -> &[u64] {
        &self.bounds_micros
    }

    /// Non-cumulative counts, the overflow bucket last.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Counts one request of this latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros, 1);
    }

    /// Counts `n` requests of `micros` microseconds.
    pub fn record_micros(&mut self, micros: u64, n: u64) {
        let bucket = self.bounds_micros.partition_point(|&bound| bound < micros);
        // `counts` has one slot more than `bounds`, so any partition point is a slot.
        if let Some(slot) = self.counts.get_mut(bucket) {
            *slot += n;
        }
    }

    /// Adds another histogram's counts to this one.
    ///
    /// # Errors
    /// [`HistogramError::DifferentBounds`] when the bounds differ; nothing is added.
    pub fn add(&mut self, other: &LatencyHistogram) -> Result<(), HistogramError> {
        if self.bounds_micros != other.bounds_micros {
            return Err(HistogramError::DifferentBounds);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        Ok(())
    }

    /// Requests counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0 < q ≤ 1) by nearest rank: the latency of the
    /// `ceil(q × total)`-th fastest request, interpolated linearly within its
    /// bucket. `None` when empty or `q` is outside (0, 1].
    ///
    /// Precision: off by less than the width of the bucket holding it, and
    /// exact in comparisons with a bucket bound: `estimate > bound` exactly
    /// when that request was slower than `bound`.
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let total = self.total();
        if total == 0 || !(q > 0.0 && q <= 1.0) {
            return None;
        }
        // Nearest rank, 1-based. Rounding guards against 0.99 × 100 = 98.99999.
        let rank = ((q * total as f64) - 1e-9).ceil().max(1.0);
        let mut before = 0.0;
        for (i, &count) in self.counts.iter().enumerate() {
            let count = count as f64;
            if count > 0.0 && before + count >= rank {
                let Some(&upper) = self.bounds_micros.get(i) else {
                    let last = self.bounds_micros.last().copied().unwrap_or(0);
                    return Some(Quantile::Above(Duration::from_micros(last)));
                };
                let lower = if i == 0 { 0 } else { self.bounds_micros[i - 1] };
                let micros = lower as f64 + (upper - lower) as f64 * (rank - before) / count;
                return Some(Quantile::Estimate(Duration::from_secs_f64(micros / 1e6)));
            }
            before += count;
        }
        None
    }
}

// === impl Quantile ===

impl Quantile {
    /// The estimate, or the last bound when the quantile is above it.
    pub fn at_least(self) -> Duration {
        match self {
            Quantile::Estimate(d) | Quantile::Above(d) => d,
        }
    }

    /// True when the quantile is certainly or by estimate above `limit`.
    pub fn is_above(self, limit: Duration) -> bool {
        match self {
            Quantile::Estimate(d) => d > limit,
            Quantile::Above(last) => last >= limit,
        }
    }
}

impl fmt::Display for Quantile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantile::Estimate(d) => write!(f, "{}", Millis(*d)),
            Quantile::Above(d) => write!(f, "above {}", Millis(*d)),
        }
    }
}

/// A duration shown in milliseconds with up to three significant decimals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Millis(pub(crate) Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1e3;
        if ms >= 100.0 {
            write!(f, "{ms:.0} ms")
        } else if ms >= 10.0 {
            write!(f, "{ms:.1} ms")
        } else {
            write!(f, "{ms:.2} ms")
        }
    }
}

// === binomial arithmetic ===

/// `part / whole`, `None` when `whole` is 0.
pub fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`.
pub fn binomial_upper_tail(n: u64, k: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // The classic identity P(X ≥ k) = I_p(k, n − k + 1).
    regularized_beta(k as f64, (n - k + 1) as f64, p)
}

/// The one-sided Clopper–Pearson lower confidence bound of a proportion
/// after `k` successes in `n` trials: the `p` with `P(Binomial(n, p) ≥ k) =
/// alpha`, so the true proportion is above it with confidence `1 − alpha`.
/// 0 when `k` is 0 or `n` is 0.
///
/// The bound is above a limit `p0` exactly when
/// `binomial_upper_tail(n, k, p0) < alpha`, which is cheaper to check.
pub fn clopper_pearson_lower(n: u64, k: u64, alpha: f64) -> f64 {
    if k == 0 || n == 0 {
        return 0.0;
    }
    let k = k.min(n);
    // The tail grows with p; at p = k/n it is about one half, above alpha.
    let (mut lo, mut hi) = (0.0_f64, k as f64 / n as f64);
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        if binomial_upper_tail(n, k, mid) < alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The regularized incomplete beta function `I_x(a, b)` for `a, b > 0`.
pub fn regularized_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (-x).ln_1p();
    // The continued fraction converges fast below the mean; use the
    // symmetry I_x(a, b) = 1 − I_{1−x}(b, a) above it.
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_continued_fraction(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b).clamp(0.0, 1.0)
    }
}

/// The continued fraction of the incomplete beta function, by the modified
/// Lentz method (Numerical Recipes, 3rd ed., §6.4).
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    // Converges in O(sqrt(max(a, b))) terms; the cap only guards against NaN input.
    let max_terms = 1_000 + 10 * (a.max(b).sqrt() as usize);
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=max_terms {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for `x > 0` by the Lanczos approximation (g = 7, nine terms),
/// accurate to about 1e-15 relative.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    /// `P(X ≥ k)` by summing the probability mass in logs, for checking.
    fn tail_by_sum(n: u64, k: u64, p: f64) -> f64 {
        (k..=n)
            .map(|i| {
                let ln_choose = ln_gamma(n as f64 + 1.0)
                    - ln_gamma(i as f64 + 1.0)
                    - ln_gamma((n - i) as f64 + 1.0);
                (ln_choose + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln()).exp()
            })
            .sum()
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut factorial = 1.0_f64;
        for n in 1..30_u32 {
            factorial *= f64::from(n);
            assert!(
                close(ln_gamma(f64::from(n) + 1.0), factorial.ln(), 1e-13),
                "{n}"
            );
        }
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-13
        ));
        assert!(close(ln_gamma(0.25), 1.288_022_524_698_077_5, 1e-12));
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        let cases = [
            (20, 5, 0.05),
            (20, 4, 0.05),
            (100, 10, 0.05),
            (3000, 178, 0.05),
            (3000, 60, 0.02),
            (10, 10, 0.5),
            (1, 1, 0.3),
            (500, 1, 0.001),
        ];
        for (n, k, p) in cases {
            let got = binomial_upper_tail(n, k, p);
            let want = tail_by_sum(n, k, p);
            assert!(
                close(got, want, 1e-9),
                "P(Bin({n},{p}) >= {k}) {got} vs {want}"
            );
        }
        // Known value: P(Bin(20, 0.05) >= 5) = 0.00257394...
        assert!(close(
            binomial_upper_tail(20, 5, 0.05),
            0.002_573_940_3,
            1e-7
        ));
        assert_eq!(binomial_upper_tail(20, 0, 0.05), 1.0);
        assert_eq!(binomial_upper_tail(20, 21, 0.05), 0.0);
        assert_eq!(binomial_upper_tail(20, 3, 0.0), 0.0);
    }

    #[test]
    fn binomial_tail_handles_large_counts() {
        // Mean 20,000, sd ~140: 3 sd above has a tail near 0.00135.
        let got = binomial_upper_tail(1_000_000, 20_420, 0.02);
        assert!(got > 0.0005 && got < 0.003, "{got}");
        assert!(binomial_upper_tail(1_000_000, 19_000, 0.02) > 0.999);
    }

    #[test]
    fn clopper_pearson_bound_inverts_the_tail() {
        for (n, k) in [(20, 5), (300, 93), (3000, 60), (1, 1), (50, 50)] {
            let lower = clopper_pearson_lower(n, k, 0.01);
            assert!(lower < k as f64 / n as f64);
            assert!(
                close(binomial_upper_tail(n, k, lower), 0.01, 1e-6),
                "{n} {k}"
            );
        }
        // 1 in 1: 0.01 = p, the bound is 0.01.
        assert!(close(clopper_pearson_lower(1, 1, 0.01), 0.01, 1e-9));
        assert_eq!(clopper_pearson_lower(100, 0, 0.01), 0.0);
    }

    #[test]
    fn quantile_interpolates_within_buckets() {
        let mut h = LatencyHistogram::new(&[1_000, 2_000, 4_000]).expect("valid bounds");
        h.record_micros(500, 50); // (0, 1 ms]
        h.record_micros(1_500, 49); // (1, 2 ms]
        h.record_micros(3_000, 1); // (2, 4 ms]
        assert_eq!(h.total(), 100);
        // Rank 99 is the last of the second bucket: its upper bound.
        assert_eq!(
            h.quantile(0.99),
            Some(Quantile::Estimate(Duration::from_millis(2)))
        );
        // Rank 50 is the last of the first bucket.
        assert_eq!(
            h.quantile(0.5),
            Some(Quantile::Estimate(Duration::from_millis(1)))
        );
        // Rank 75: 25 of 49 into (1, 2 ms].
        let q75 = h.quantile(0.75).map(|q| q.at_least().as_micros());
        assert_eq!(q75, Some(1_510));
        h.record_micros(10_000, 5); // overflow
        assert_eq!(
            h.quantile(0.99),
            Some(Quantile::Above(Duration::from_millis(4)))
        );
        assert!(
            h.quantile(0.99)
                .is_some_and(|q| q.is_above(Duration::from_millis(4)))
        );
        assert_eq!(LatencyHistogram::with_default_bounds().quantile(0.99), None);
    }

    #[test]
    fn quantile_is_exact_against_a_bucket_bound() {
        let limit = Duration::from_millis(500);
        // 99 fast, 1 slow of 100: p99 is the 99th request, fast.
        let mut h = LatencyHistogram::with_default_bounds();
        h.record_micros(499_000, 99);
        h.record_micros(501_000, 1);
        assert!(h.quantile(0.99).is_some_and(|q| !q.is_above(limit)));
        // 98 fast, 2 slow: the 99th request is slow.
        let mut h = LatencyHistogram::with_default_bounds();
        h.record_micros(499_000, 98);
        h.record_micros(501_000, 2);
        assert!(h.quantile(0.99).is_some_and(|q| q.is_above(limit)));
    }

    #[test]
    fn histograms_validate_and_merge() {
        assert_eq!(
            LatencyHistogram::new(&[2, 1]),
            Err(HistogramError::BadBounds)
        );
        assert_eq!(
            LatencyHistogram::new(&[0, 1]),
            Err(HistogramError::BadBounds)
        );
        assert_eq!(
            LatencyHistogram::from_counts(vec![1, 2], vec![0, 0]),
            Err(HistogramError::CountMismatch {
                bounds: 2,
                counts: 2
            })
        );
        let mut a = LatencyHistogram::with_default_bounds();
        a.record(Duration::from_millis(3));
        let mut b = LatencyHistogram::with_default_bounds();
        b.record(Duration::from_secs(100));
        assert_eq!(a.add(&b), Ok(()));
        assert_eq!(a.total(), 2);
        assert_eq!(
            a.add(&LatencyHistogram::new(&[1]).expect("valid bounds")),
            Err(HistogramError::DifferentBounds)
        );
        let bounds = LatencyHistogram::DEFAULT_BOUNDS_MICROS;
        assert!(
            bounds
                .windows(2)
                .all(|w| w[0] < w[1] && w[1] * 3 <= w[0] * 4)
        );
    }
}
