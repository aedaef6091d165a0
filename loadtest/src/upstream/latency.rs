//! The latency a fake upstream adds before each answer: fixed, uniform
//! between two bounds, or exponential around a mean.
//!
//! Written as one string everywhere (command line, control body, scenario):
//!
//! - `5ms`: always 5 ms (`0s`, the default, adds nothing);
//! - `5ms..50ms`: uniform between 5 ms and 50 ms, both included;
//! - `exp:20ms`: exponential with a mean of 20 ms, capped at 10 × the mean
//!   (200 ms), so one unlucky draw cannot stall a run.
//!
//! Durations use the grammar of `weir.yaml` (`500ms`, `2s`, `1m30s`, a bare
//! integer of seconds); none may exceed [`MAX_LATENCY`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest latency, bound or mean that a spec may name.
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);

/// An exponential draw is capped at this many times its mean.
pub const EXP_CAP: u32 = 10;

/// How long a fake upstream waits before answering: see the module docs for
/// the syntax, which [`FromStr`] parses and [`fmt::Display`] writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatencyDist {
    /// No delay.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniform between `min` and `max`, both included (`min <= max`).
    Uniform {
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// Exponential with this mean, capped at [`EXP_CAP`] × the mean.
    Exponential {
        /// The mean of the uncapped distribution (more than zero).
        mean: Duration,
    },
}

/// Serde visitor accepting a spec string or a whole number of seconds.
struct LatencyVisitor;

// === impl LatencyDist ===

impl LatencyDist {
    /// A fixed latency (`None` when zero).
    pub fn fixed(latency: Duration) -> Self {
        if latency.is_zero() {
            Self::None
        } else {
            Self::Fixed(latency)
        }
    }

    /// Whether it never adds any delay.
    pub fn is_zero(&self) -> bool {
        match *self {
            Self::None => true,
            Self::Fixed(d) => d.is_zero(),
            Self::Uniform { max, .. } => max.is_zero(),
            Self::Exponential { mean } => mean.is_zero(),
        }
    }

    /// The mean delay: for an exponential the nominal mean, which the cap
    /// at [`EXP_CAP`] × the mean lowers by under 0.005 %.
    pub fn mean(&self) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Uniform { min, max } => min + (max - min) / 2,
            Self::Exponential { mean } => mean,
        }
    }

    /// The longest delay a draw can give.
    pub fn max(&self) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Uniform { max, .. } => max,
            Self::Exponential { mean } => mean.saturating_mul(EXP_CAP),
        }
    }

    /// One delay drawn with `rng`.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Uniform { min, max } => {
                let (lo, hi) = (nanos(min), nanos(max));
                Duration::from_nanos(rng.u64(lo.min(hi)..=hi))
            }
            Self::Exponential { mean } => {
                // Inverse transform: 1 - u is in (0, 1], so the log is finite.
                let u = rng.f64();
                let x = (-(1.0 - u).ln()).min(f64::from(EXP_CAP));
                // `as` saturates and maps -0.0 and NaN to 0.
                Duration::from_nanos((nanos(mean) as f64 * x) as u64).min(self.max())
            }
        }
    }

    /// The mean in whole milliseconds, as `latencyMs` reports it.
    pub fn mean_ms(&self) -> u64 {
        u64::try_from(self.mean().as_millis()).unwrap_or(u64::MAX)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Parses one duration of a spec, naming the whole spec in errors.
fn duration(spec: &str, what: &str, text: &str) -> Result<Duration, String> {
    let d = weir_config::duration::parse_duration(text)
        .map_err(|e| format!("latency {spec:?}: {what}: {e}"))?;
    if d > MAX_LATENCY {
        return Err(format!(
            "latency {spec:?}: {what} {} is above the limit of 1h",
            text.trim()
        ));
    }
    Ok(d)
}

impl FromStr for LatencyDist {
    type Err = String;

    /// Parses `5ms`, `5ms..50ms` or `exp:20ms` (spaces around the parts are
    /// ignored).
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if let Some(mean) = s.strip_prefix("exp:") {
            let mean = duration(text, "the mean of exp:MEAN", mean)?;
            if mean.is_zero() {
                return Err(format!(
                    "latency {text:?}: the mean of exp:MEAN must be more than 0 \
                     (write 0s for no latency)"
                ));
            }
            return Ok(Self::Exponential { mean });
        }
        if let Some((min, max)) = s.split_once("..") {
            let min = duration(text, "the minimum of MIN..MAX", min)?;
            let max = duration(text, "the maximum of MIN..MAX", max)?;
            if min > max {
                return Err(format!(
                    "latency {text:?}: the minimum {} is above the maximum {}",
                    show(min),
                    show(max)
                ));
            }
            return Ok(if min == max {
                Self::fixed(min)
            } else {
                Self::Uniform { min, max }
            });
        }
        let fixed = weir_config::duration::parse_duration(s).map_err(|e| {
            format!(
                "latency {text:?}: expected a duration (5ms), a range (5ms..50ms) \
                 or an exponential mean (exp:20ms): {e}"
            )
        })?;
        if fixed > MAX_LATENCY {
            return Err(format!("latency {text:?}: above the limit of 1h"));
        }
        Ok(Self::fixed(fixed))
    }
}

/// Whole seconds as `30s`, anything else as `1500ms`: both parse back.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

impl fmt::Display for LatencyDist {
    /// The spec syntax, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::None => f.write_str("0s"),
            Self::Fixed(d) => f.write_str(&show(d)),
            Self::Uniform { min, max } => write!(f, "{}..{}", show(min), show(max)),
            Self::Exponential { mean } => write!(f, "exp:{}", show(mean)),
        }
    }
}

impl Serialize for LatencyDist {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LatencyDist {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LatencyVisitor)
    }
}

impl Visitor<'_> for LatencyVisitor {
    type Value = LatencyDist;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a latency such as `5ms`, `5ms..50ms` or `exp:20ms`, or a whole number of seconds",
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LatencyDist, E> {
        v.to_string().parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LatencyDist, E> {
        u64::try_from(v)
            .map_err(|_| E::custom("a latency cannot be negative"))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<LatencyDist, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn good_specs_parse_and_print_back() {
        let cases = [
            ("0s", LatencyDist::None, "0s"),
            ("5ms", LatencyDist::Fixed(ms(5)), "5ms"),
            ("2", LatencyDist::Fixed(ms(2000)), "2s"),
            (
                "5ms..50ms",
                LatencyDist::Uniform {
                    min: ms(5),
                    max: ms(50),
                },
                "5ms..50ms",
            ),
            (
                " 0s .. 1s ",
                LatencyDist::Uniform {
                    min: ms(0),
                    max: ms(1000),
                },
                "0s..1s",
            ),
            ("7ms..7ms", LatencyDist::Fixed(ms(7)), "7ms"),
            (
                "exp:20ms",
                LatencyDist::Exponential { mean: ms(20) },
                "exp:20ms",
            ),
            (
                "exp: 1m30s",
                LatencyDist::Exponential { mean: ms(90_000) },
                "exp:90s",
            ),
        ];
        for (text, want, shown) in cases {
            let got: LatencyDist = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<LatencyDist>().unwrap(), want, "{shown}");
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            ("", "expected a duration"),
            ("fast", "expected a duration"),
            ("1.5ms", "expected a duration"),
            ("-5ms", "expected a duration"),
            ("5ms..", "the maximum of MIN..MAX"),
            ("..5ms", "the minimum of MIN..MAX"),
            ("5ms..2h", "is above the limit"),
            ("50ms..5ms", "the minimum 50ms is above the maximum 5ms"),
            ("5ms..6ms..7ms", "the maximum of MIN..MAX"),
            ("exp:", "the mean of exp:MEAN"),
            ("exp:0s", "must be more than 0"),
            ("exp:2h", "above the limit"),
            ("2h", "above the limit"),
            ("uniform:5ms", "expected a duration"),
        ];
        for (text, want) in cases {
            let err = text.parse::<LatencyDist>().unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text:?}: {err}");
        }
    }

    #[test]
    fn fixed_and_none_draw_themselves() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(LatencyDist::None.sample(&mut rng), Duration::ZERO);
        assert_eq!(LatencyDist::Fixed(ms(5)).sample(&mut rng), ms(5));
        assert!(LatencyDist::None.is_zero());
        assert!(LatencyDist::fixed(Duration::ZERO).is_zero());
        assert!(!LatencyDist::Fixed(ms(1)).is_zero());
    }

    #[test]
    fn uniform_draws_stay_within_bounds_and_cover_them() {
        let dist: LatencyDist = "5ms..50ms".parse().unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<Duration> = (0..20_000).map(|_| dist.sample(&mut rng)).collect();
        assert!(draws.iter().all(|d| (ms(5)..=ms(50)).contains(d)));
        let lo = draws.iter().min().unwrap();
        let hi = draws.iter().max().unwrap();
        assert!(*lo < ms(6) && *hi > ms(49), "{lo:?} {hi:?}");
        let mean = draws.iter().sum::<Duration>() / 20_000;
        assert!(
            (mean.as_secs_f64() - 0.0275).abs() < 0.0005,
            "mean {mean:?}"
        );
        assert_eq!(dist.mean(), Duration::from_micros(27_500));
    }

    #[test]
    fn exponential_mean_is_right_and_draws_are_capped() {
        let dist: LatencyDist = "exp:20ms".parse().unwrap();
        let mut rng = fastrand::Rng::with_seed(42);
        let n = 100_000u32;
        let draws: Vec<Duration> = (0..n).map(|_| dist.sample(&mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= ms(200)));
        let mean = draws.iter().sum::<Duration>() / n;
        // The standard error of the mean is 20 ms / √n ≈ 0.06 ms.
        assert!(
            (mean.as_secs_f64() * 1000.0 - 20.0).abs() < 0.5,
            "mean {mean:?}"
        );
        // About e⁻¹ ≈ 37 % of the draws are above the mean.
        let above = draws.iter().filter(|d| **d > ms(20)).count() as f64 / f64::from(n);
        assert!((above - (-1.0f64).exp()).abs() < 0.01, "{above}");
        assert_eq!(dist.max(), ms(200));
        assert_eq!(dist.mean_ms(), 20);
    }

    #[test]
    fn the_cap_holds_for_the_unluckiest_draw() {
        // A mean so small that any draw above 10× is visible at ns scale.
        let dist = LatencyDist::Exponential {
            mean: Duration::from_nanos(3),
        };
        let mut rng = fastrand::Rng::with_seed(3);
        assert!((0..100_000).all(|_| dist.sample(&mut rng) <= Duration::from_nanos(30)));
    }

    #[test]
    fn serde_takes_strings_and_whole_seconds() {
        let d: LatencyDist = serde_json::from_str(r#""exp:20ms""#).unwrap();
        assert_eq!(d, LatencyDist::Exponential { mean: ms(20) });
        let d: LatencyDist = serde_json::from_str("2").unwrap();
        assert_eq!(d, LatencyDist::Fixed(ms(2000)));
        assert!(serde_json::from_str::<LatencyDist>("-1").is_err());
        let err = serde_json::from_str::<LatencyDist>(r#""9ms..1ms""#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("above the maximum"), "{err}");
        assert_eq!(
            serde_json::to_string(&LatencyDist::Uniform {
                min: ms(5),
                max: ms(1500)
            })
            .unwrap(),
            r#""5ms..1500ms""#
        );
    }
}
