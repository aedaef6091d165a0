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

/// Parses a duration: one or more `<integer><unit>` parts with units
/// `ms`, `s`, `m`, `h`, or a bare integer of seconds.
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
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| err("too large"));
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
            "" => return Err(err("a number needs a unit")),
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
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
    fn rejects_garbage() {
        for bad in ["", "s", "10x", "1.5s", "-1s", "10 s", "ms10", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
