//! Durations as written in `weir.yaml`: `500ms`, `30s`, `5m`, `1h`, compounds
//! such as `1m30s`, or a bare integer meaning seconds.

use std::time::Duration;

/// Why a duration string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {reason} (write e.g. 500ms, 30s, 5m, 1h)")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

/// The longest duration weir takes: 87600h (ten years). A deadline that
/// far off is as good as none, and a longer one would overflow the clock's
/// arithmetic when a request adds it to the time it starts.
pub const MAX_DURATION: Duration = Duration::from_secs(87_600 * 3600);

/// Why a duration is refused when it is longer than [`MAX_DURATION`].
const TOO_LONG: &str = "longer than 87600h (ten years), the most weir takes";

/// A duration of `seconds` (a bare number in YAML).
///
/// # Errors
/// [`DurationError`] when it is longer than [`MAX_DURATION`].
pub fn from_seconds(seconds: u64) -> Result<Duration, DurationError> {
    let duration = Duration::from_secs(seconds);
    if duration > MAX_DURATION {
        return Err(DurationError {
            text: seconds.to_string(),
            reason: TOO_LONG,
        });
    }
    Ok(duration)
}

/// Why `10us` or `10µs` is refused.
const MICROSECONDS: &str = "microseconds are finer than weir counts; write milliseconds (`1ms`)";

/// Parses a duration: one or more `<integer><unit>` parts with units
/// `ms`, `s`, `m`, `h`, or a bare integer of seconds; at most
/// [`MAX_DURATION`].
///
/// # Errors
/// [`DurationError`] naming the text and what is wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        text: text.to_owned(),
        reason,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = s.parse::<u64>().map_err(|_| err("too large"))?;
        return from_seconds(seconds).map_err(|_| err(TOO_LONG));
    }
    if s.starts_with('-') {
        return Err(err("a duration cannot be negative"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err("too large"))?;
        rest = &rest[digits..];
        if rest.starts_with('.') {
            return Err(err("numbers must be whole; write `1500ms`, not `1.5s`"));
        }
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => value
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or_else(|| err("too large"))?,
            "h" => value
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(|| err("too large"))?,
            "us" => return Err(err(MICROSECONDS)),
            "" if rest.starts_with(['\u{b5}', '\u{3bc}']) => return Err(err(MICROSECONDS)),
            "" => return Err(err("a number needs a unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    if total > MAX_DURATION {
        return Err(err(TOO_LONG));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("45", Duration::from_secs(45)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_fraction_is_refused_saying_to_use_a_smaller_unit() {
        let message = parse_duration("1.5s").expect_err("a fraction").to_string();
        assert!(message.contains("write `1500ms`, not `1.5s`"), "{message}");
        let message = parse_duration("2.5").expect_err("a fraction").to_string();
        assert!(message.contains("must be whole"), "{message}");
    }

    #[test]
    fn ten_years_is_the_most_taken() {
        assert_eq!(parse_duration("87600h"), Ok(MAX_DURATION));
        assert_eq!(from_seconds(315_360_000), Ok(MAX_DURATION));
        for too_long in ["87601h", "87600h1ms", "315360001", "18446744073709551615"] {
            let message = parse_duration(too_long).expect_err(too_long).to_string();
            assert!(
                message.contains("longer than 87600h"),
                "{too_long}: {message}"
            );
        }
        let message = from_seconds(u64::MAX).expect_err("u64::MAX").to_string();
        assert!(
            message.contains("\"18446744073709551615\": longer than 87600h"),
            "{message}"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "s", "10x", "1.5s", "-1s", "10 s", "ms10", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_negative_duration_and_microseconds_are_named() {
        let said = |text: &str| parse_duration(text).expect_err(text).to_string();
        assert!(
            said("-1s").contains("cannot be negative"),
            "{}",
            said("-1s")
        );
        for micro in ["10us", "10\u{b5}s", "10\u{3bc}s", "1s10us"] {
            assert!(
                said(micro).contains("microseconds"),
                "{micro}: {}",
                said(micro)
            );
        }
    }
}
