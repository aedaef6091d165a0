//! Canary weights: a percentage with at most four decimals, held exactly as
//! parts per million so that one request in a million is the finest split.

use std::fmt;

/// A canary weight in parts per million (0 = no canary, 1,000,000 = all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(u32);

/// Why a number is not a valid weight.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    /// Outside 0 to 100.
    #[error("weight {0} is outside 0 to 100")]
    OutOfRange(f64),
    /// More than four decimals.
    #[error("weight {0} has more than four decimals (the finest split is 0.0001 %)")]
    TooPrecise(f64),
}

// === impl Weight ===

impl Weight {
    /// Parts per million in one percent.
    pub const PER_PERCENT: u32 = 10_000;
    /// The whole: 100 %.
    pub const FULL: Weight = Weight(1_000_000);
    /// Nothing: 0 %.
    pub const ZERO: Weight = Weight(0);

    /// A weight from parts per million; `None` above 1,000,000.
    pub const fn from_ppm(ppm: u32) -> Option<Weight> {
        if ppm <= 1_000_000 {
            Some(Weight(ppm))
        } else {
            None
        }
    }

    /// A weight from a percentage with at most four decimals.
    ///
    /// # Errors
    /// [`WeightError`] when the value is outside 0 to 100 or finer than 0.0001.
    pub fn try_from_percent(percent: f64) -> Result<Weight, WeightError> {
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            return Err(WeightError::OutOfRange(percent));
        }
        let scaled = percent * f64::from(Self::PER_PERCENT);
        let rounded = scaled.round();
        // Decimal literals such as 0.0001 are not exact in binary; allow the
        // representation error but nothing a fifth decimal could produce.
        if (scaled - rounded).abs() > 1e-6 {
            return Err(WeightError::TooPrecise(percent));
        }
        // In range by the check above: 0 <= rounded <= 1e6.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Weight(rounded as u32))
    }

    /// A whole percentage, 0 to 100 (larger values saturate at 100).
    pub const fn from_percent_int(percent: u32) -> Weight {
        let p = if percent > 100 { 100 } else { percent };
        Weight(p * Self::PER_PERCENT)
    }

    /// Parts per million.
    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// The weight as a percentage.
    pub fn percent(self) -> f64 {
        f64::from(self.0) / f64::from(Self::PER_PERCENT)
    }

    /// True when no request goes to the canary.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::PER_PERCENT;
        let frac = self.0 % Self::PER_PERCENT;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:04}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentages_exactly() {
        let cases = [
            (0.0, 0),
            (100.0, 1_000_000),
            (10.0, 100_000),
            (0.1, 1_000),
            (0.0001, 1),
            (33.3333, 333_333),
            (99.9999, 999_999),
        ];
        for (percent, ppm) in cases {
            assert_eq!(
                Weight::try_from_percent(percent).map(Weight::ppm),
                Ok(ppm),
                "{percent}"
            );
        }
    }

    #[test]
    fn rejects_out_of_range_and_too_precise() {
        for bad in [-0.0001, 100.0001, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    Weight::try_from_percent(bad),
                    Err(WeightError::OutOfRange(_))
                ),
                "{bad}"
            );
        }
        for bad in [0.00001, 10.12345, 33.33333] {
            assert!(
                matches!(
                    Weight::try_from_percent(bad),
                    Err(WeightError::TooPrecise(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn displays_without_trailing_zeros() {
        assert_eq!(Weight::from_percent_int(25).to_string(), "25");
        assert_eq!(
            Weight::from_ppm(1_500).map(|w| w.to_string()),
            Some("0.15".to_owned())
        );
        assert_eq!(
            Weight::from_ppm(1).map(|w| w.to_string()),
            Some("0.0001".to_owned())
        );
    }
}
