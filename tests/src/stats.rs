//! Acceptance bounds for counts that a correct proxy produces at random.

/// A two-sided acceptance interval for a Binomial(n, p) count, and how it
/// was derived (for assertion messages).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinomialBounds {
    /// Smallest accepted count.
    pub lo: u64,
    /// Largest accepted count.
    pub hi: u64,
    /// n·p.
    pub mean: f64,
    /// sqrt(n·p·(1 − p)).
    pub sigma: f64,
}

/// Probability mass of one normal tail beyond 4.5 σ: 1 − Φ(4.5).
pub const TAIL: f64 = 3.4e-6;

/// The interval a Binomial(`n`, `p`) count falls in except with
/// probability about 2 × [`TAIL`] ≈ 6.8e-6.
///
/// Derivation. Each of the `n` independent decisions picks the canary with
/// probability `p`, so the canary count X is Binomial(n, p), with mean
/// μ = n·p and standard deviation σ = sqrt(n·p·(1 − p)). For large n·p·(1 − p)
/// X is close to Normal(μ, σ²) and the interval is μ ± 4.5 σ: a correct proxy
/// fails the check about once in 150 000 runs, while a split that is off by
/// more than ~9 σ fails it nearly always. When n·p·(1 − p) is small (the
/// 0.1 % split: μ = 20, σ ≈ 4.47) the normal interval's lower end is below
/// zero and its tails are wrong, so instead the interval is taken from the
/// exact binomial distribution with the same tail mass on each side:
/// `lo` is the largest k with P(X < k) ≤ [`TAIL`] and `hi` the smallest k
/// with P(X > k) ≤ [`TAIL`]. (For large n·p·(1 − p) the two agree to within
/// a count or two; the exact one is used throughout.)
///
/// # Panics
/// When `p` is not in (0, 1) or `n` is 0.
pub fn binomial_bounds(n: u64, p: f64) -> BinomialBounds {
    assert!(n > 0 && p > 0.0 && p < 1.0, "binomial_bounds({n}, {p})");
    let nf = n as f64;
    let mean = nf * p;
    let sigma = (nf * p * (1.0 - p)).sqrt();
    // The pmf relative to its value at the mode, over a window far wider
    // than the tails of interest (mass outside it is below 1e-20).
    let mode = ((nf + 1.0) * p).floor().min(nf) as u64;
    let half = (12.0 * sigma + 30.0).ceil() as u64;
    let from = mode.saturating_sub(half);
    let to = mode.saturating_add(half).min(n);
    let ratio = p / (1.0 - p);
    let mut pmf = vec![0.0f64; (to - from + 1) as usize];
    let at = |k: u64| (k - from) as usize;
    pmf[at(mode)] = 1.0;
    // pmf(k+1)/pmf(k) = (n − k)/(k + 1) · p/(1 − p)
    for k in mode..to {
        pmf[at(k + 1)] = pmf[at(k)] * (nf - k as f64) / (k as f64 + 1.0) * ratio;
    }
    for k in (from + 1..=mode).rev() {
        pmf[at(k - 1)] = pmf[at(k)] * (k as f64) / ((nf - k as f64 + 1.0) * ratio);
    }
    let total: f64 = pmf.iter().sum();
    let mut lo = from;
    let mut below = 0.0; // P(X < lo)
    while lo < to && below + pmf[at(lo)] / total <= TAIL {
        below += pmf[at(lo)] / total;
        lo += 1;
    }
    let mut hi = to;
    let mut above = 0.0; // P(X > hi)
    while hi > from && above + pmf[at(hi)] / total <= TAIL {
        above += pmf[at(hi)] / total;
        hi -= 1;
    }
    BinomialBounds {
        lo,
        hi,
        mean,
        sigma,
    }
}

// === impl BinomialBounds ===

impl BinomialBounds {
    /// Whether `count` is inside the interval.
    pub fn contains(&self, count: u64) -> bool {
        (self.lo..=self.hi).contains(&count)
    }
}

impl std::fmt::Display for BinomialBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}, {}] (mean {:.1}, sigma {:.2}, mean ± 4.5 sigma = [{:.1}, {:.1}])",
            self.lo,
            self.hi,
            self.mean,
            self.sigma,
            self.mean - 4.5 * self.sigma,
            self.mean + 4.5 * self.sigma
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_normal_for_large_variance() {
        let b = binomial_bounds(4000, 0.1);
        // μ = 400, σ ≈ 18.97, μ ± 4.5 σ ≈ [314.6, 485.4]; the binomial is
        // slightly right-skewed.
        assert!((310..=320).contains(&b.lo), "{b}");
        assert!((480..=492).contains(&b.hi), "{b}");
    }

    #[test]
    fn small_mean_has_a_positive_lower_bound() {
        let b = binomial_bounds(20_000, 0.001);
        assert!(b.lo >= 2 && b.lo <= 6, "{b}");
        assert!(b.hi >= 38 && b.hi <= 48, "{b}");
        assert!(!b.contains(0));
    }
}
