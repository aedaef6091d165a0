//! What `weir-loadtest run` prints to stderr while it runs: a line per
//! second, and on a terminal a bar redrawn in place below those lines.
//! Only formatting lives here; the printing loop is in `run.rs`.

use std::time::Duration;

/// Characters between the brackets of the bar.
pub const BAR_WIDTH: usize = 24;

/// Erases the terminal line the cursor is on and returns to its start.
pub const CLEAR_LINE: &str = "\r\x1b[2K";

/// What the live bar shows: where the run is and how the last second went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the first scheduled request.
    pub elapsed: Duration,
    /// The sending phase (`--duration`).
    pub total: Duration,
    /// Requests finished (answered or failed) per second, recently.
    pub rate: f64,
    /// Of those, the fraction that failed or were answered 5xx, 0 to 1.
    pub error_fraction: f64,
    /// Their 99th percentile latency; `None` before any answer.
    pub p99: Option<Duration>,
}

/// The counters behind one per-second line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Requests scheduled so far.
    pub scheduled: u64,
    /// Requests answered so far.
    pub answered: u64,
    /// Requests that got no answer so far.
    pub failed: u64,
}

/// The bar, e.g.
/// `[=========>              ] 12s/30s  2000 req/s  0.1% errors  p99 3.2ms`;
/// full (and elapsed past total) while the last requests drain.
pub fn bar(p: &Progress) -> String {
    let fraction = if p.total.is_zero() {
        1.0
    } else {
        (p.elapsed.as_secs_f64() / p.total.as_secs_f64()).clamp(0.0, 1.0)
    };
    // `as` saturates; the fraction is within 0 and 1.
    let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    let mut track = "=".repeat(filled);
    if filled < BAR_WIDTH {
        track.push('>');
        track.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    let p99 = p.p99.map_or_else(|| "-".to_owned(), latency);
    format!(
        "[{track}] {}/{}  {:.0} req/s  {:.1}% errors  p99 {p99}",
        seconds(p.elapsed, p.total),
        seconds(p.total, p.total),
        p.rate.max(0.0),
        100.0 * p.error_fraction.clamp(0.0, 1.0),
    )
}

/// The per-second line, as printed whether or not stderr is a terminal.
pub fn second_line(second: u64, c: Counts) -> String {
    format!(
        "[{second:>4}s] scheduled {}  answered {}  errors {}  pending {}",
        c.scheduled,
        c.answered,
        c.failed,
        c.scheduled.saturating_sub(c.answered + c.failed),
    )
}

/// Whole seconds (`12s`), or tenths when `scale` is not whole (`1.5s`),
/// so that elapsed and total read alike.
fn seconds(d: Duration, scale: Duration) -> String {
    if scale.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// `850µs`, `3.2ms`, `45ms`, `1.25s`.
fn latency(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1000 {
        format!("{us}µs")
    } else if us < 10_000 {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else if us < 1_000_000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(elapsed_ms: u64, total_s: u64) -> Progress {
        Progress {
            elapsed: Duration::from_millis(elapsed_ms),
            total: Duration::from_secs(total_s),
            rate: 2000.0,
            error_fraction: 0.001,
            p99: Some(Duration::from_micros(3200)),
        }
    }

    #[test]
    fn bar_shows_position_rate_errors_and_p99() {
        assert_eq!(
            bar(&at(12_000, 30)),
            "[==========>             ] 12s/30s  2000 req/s  0.1% errors  p99 3.2ms"
        );
        assert_eq!(
            bar(&at(0, 30)),
            "[>                       ] 0s/30s  2000 req/s  0.1% errors  p99 3.2ms"
        );
    }

    #[test]
    fn bar_is_full_at_the_end_and_while_draining() {
        let full = format!("[{}]", "=".repeat(BAR_WIDTH));
        assert!(bar(&at(30_000, 30)).starts_with(&format!("{full} 30s/30s ")));
        let draining = bar(&at(32_400, 30));
        assert!(
            draining.starts_with(&format!("{full} 32s/30s ")),
            "{draining}"
        );
    }

    #[test]
    fn bar_width_is_fixed_and_short() {
        for ms in (0..=31_000).step_by(500) {
            let line = bar(&at(ms, 30));
            let track = &line[1..line.find(']').unwrap_or(0)];
            assert_eq!(track.chars().count(), BAR_WIDTH, "{line}");
            assert!(line.chars().count() < 80, "{line}");
        }
    }

    #[test]
    fn bar_before_any_answer_and_with_odd_values() {
        let p = Progress {
            elapsed: Duration::from_millis(700),
            total: Duration::from_millis(1500),
            rate: 0.0,
            error_fraction: 0.0,
            p99: None,
        };
        assert!(
            bar(&p).ends_with("] 0.7s/1.5s  0 req/s  0.0% errors  p99 -"),
            "{}",
            bar(&p)
        );
        let p = Progress {
            total: Duration::ZERO,
            error_fraction: 7.0,
            rate: -1.0,
            ..p
        };
        assert!(bar(&p).contains("0 req/s  100.0% errors"), "{}", bar(&p));
    }

    #[test]
    fn latencies_are_short() {
        let cases = [
            (Duration::from_micros(850), "850µs"),
            (Duration::from_micros(3249), "3.2ms"),
            (Duration::from_micros(45_600), "45ms"),
            (Duration::from_millis(1250), "1.25s"),
        ];
        for (d, want) in cases {
            assert_eq!(latency(d), want);
        }
    }

    #[test]
    fn second_line_is_as_before() {
        let c = Counts {
            scheduled: 100,
            answered: 90,
            failed: 2,
        };
        assert_eq!(
            second_line(3, c),
            "[   3s] scheduled 100  answered 90  errors 2  pending 8"
        );
    }
}
