//! What a run observed: the [`Recorder`] the workers write into and the
//! [`Report`] it becomes, printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Counts by upstream name, then by status code (as a string, for JSON).
pub type ByUpstream = BTreeMap<String, BTreeMap<String, u64>>;

/// Why a scheduled request got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection or the HTTP handshake failed.
    Connect,
    /// The connection failed while the request or response was under way.
    Io,
    /// Still in flight when the grace period ended.
    Timeout,
    /// Still queued, never sent, when the grace period ended.
    Unsent,
}

/// The whole run, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The target URL.
    pub target: String,
    /// Requests per second asked for.
    pub rate: f64,
    /// Length of the sending phase, in seconds.
    pub duration_seconds: f64,
    /// Requests scheduled; each ends as a response or an error, so
    /// `total` = the sum of `byUpstream` + `errors`.
    pub total: u64,
    /// Responses by upstream name (`-` when untagged) and status code.
    pub by_upstream: ByUpstream,
    /// The same per second of scheduled send time.
    pub per_second: Vec<SecondReport>,
    /// Latency from each request's scheduled send time to its response head.
    pub latency_ms: Latency,
    /// Requests without an HTTP response.
    pub errors: u64,
    /// `errors` by kind: `connect`, `io`, `timeout`, `unsent`.
    pub error_kinds: BTreeMap<String, u64>,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondReport {
    /// Seconds since the start, by scheduled send time.
    pub second: u64,
    /// Requests scheduled in this second.
    pub total: u64,
    /// Their responses by upstream and status.
    pub by_upstream: ByUpstream,
    /// Their requests without a response.
    pub errors: u64,
}

/// Latency percentiles in milliseconds; each `null` (in text, `-`) when
/// no request was answered: a run against a target that is down has no
/// latency, not one of 0 ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// Collects outcomes while the run goes on.
#[derive(Debug)]
pub struct Recorder {
    histogram: Histogram<u64>,
    /// Latencies since the last [`Recorder::take_recent_p99`], coarser.
    recent: Histogram<u64>,
    seconds: Vec<Second>,
    errors: BTreeMap<ErrorKind, u64>,
}

#[derive(Debug, Default, Clone)]
struct Second {
    by_upstream: ByUpstream,
    errors: u64,
}

/// Latencies are recorded in microseconds, clamped to this.
const MAX_LATENCY_US: u64 = 3_600_000_000;

// === impl ErrorKind ===

impl ErrorKind {
    /// The label used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Io => "io",
            Self::Timeout => "timeout",
            Self::Unsent => "unsent",
        }
    }
}

// === impl Recorder ===

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // Three significant digits from 1 µs up to an hour: bounded memory.
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("1 µs ..= 1 h at 3 significant digits are valid hdrhistogram bounds");
        // Two digits are plenty for a live display and cheap to clear.
        let recent = Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
            .expect("1 µs ..= 1 h at 2 significant digits are valid hdrhistogram bounds");
        Self {
            histogram,
            recent,
            seconds: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Records a response scheduled in `second` of the run.
    pub fn response(&mut self, second: u64, upstream: &str, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        self.histogram.saturating_record(us);
        self.recent.saturating_record(us);
        *self
            .second(second)
            .by_upstream
            .entry(upstream.to_owned())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }

    /// Records a request scheduled in `second` that got no response.
    pub fn error(&mut self, second: u64, kind: ErrorKind) {
        self.second(second).errors += 1;
        *self.errors.entry(kind).or_default() += 1;
    }

    /// The 99th percentile latency of the responses recorded since the
    /// last call (to two significant digits), `None` if there were none;
    /// starts the next window.
    pub fn take_recent_p99(&mut self) -> Option<Duration> {
        if self.recent.is_empty() {
            return None;
        }
        let p99 = Duration::from_micros(self.recent.value_at_quantile(0.99));
        self.recent.reset();
        Some(p99)
    }

    fn second(&mut self, second: u64) -> &mut Second {
        let index = usize::try_from(second).unwrap_or(usize::MAX);
        if self.seconds.len() <= index {
            self.seconds
                .resize(index.saturating_add(1), Second::default());
        }
        &mut self.seconds[index]
    }

    /// Turns the counts into a report.
    pub fn report(&self, target: &str, rate: f64, duration: Duration) -> Report {
        let mut by_upstream = ByUpstream::new();
        let mut per_second = Vec::with_capacity(self.seconds.len());
        for (i, second) in self.seconds.iter().enumerate() {
            let mut total = second.errors;
            for (name, statuses) in &second.by_upstream {
                let sum = by_upstream.entry(name.clone()).or_default();
                for (status, n) in statuses {
                    *sum.entry(status.clone()).or_default() += n;
                    total += n;
                }
            }
            per_second.push(SecondReport {
                second: i as u64,
                total,
                by_upstream: second.by_upstream.clone(),
                errors: second.errors,
            });
        }
        let errors = self.errors.values().sum();
        let answered: u64 = by_upstream.values().flat_map(|s| s.values()).sum();
        let ms = |us: u64| us as f64 / 1000.0;
        let answered_latency = !self.histogram.is_empty();
        let at = |quantile: f64| {
            answered_latency.then(|| ms(self.histogram.value_at_quantile(quantile)))
        };
        let latency_ms = Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: answered_latency.then(|| ms(self.histogram.max())),
        };
        Report {
            target: target.to_owned(),
            rate,
            duration_seconds: duration.as_secs_f64(),
            total: answered + errors,
            by_upstream,
            per_second,
            latency_ms,
            errors,
            error_kinds: self
                .errors
                .iter()
                .map(|(k, n)| (k.as_str().to_owned(), *n))
                .collect(),
        }
    }
}

// === impl Report ===

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answered: u64 = self.by_upstream.values().flat_map(|s| s.values()).sum();
        writeln!(f, "target      {}", self.target)?;
        writeln!(
            f,
            "schedule    {} req/s for {}s: {} requests",
            self.rate, self.duration_seconds, self.total
        )?;
        write!(
            f,
            "outcome     {answered} responses (any status), {} requests without one",
            self.errors
        )?;
        if !self.error_kinds.is_empty() {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            write!(f, " ({})", kinds.join(" "))?;
        }
        writeln!(f)?;
        let l = &self.latency_ms;
        let shown = |ms: Option<f64>| ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}"));
        writeln!(
            f,
            "latency ms  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            shown(l.p50),
            shown(l.p90),
            shown(l.p99),
            shown(l.p999),
            shown(l.max)
        )?;
        writeln!(f, "by upstream")?;
        for (name, statuses) in &self.by_upstream {
            let n: u64 = statuses.values().sum();
            let share = if answered == 0 {
                0.0
            } else {
                100.0 * n as f64 / answered as f64
            };
            writeln!(
                f,
                "  {name:<16} {n:>9}  {share:>7.3} %  {}",
                statuses_text(statuses)
            )?;
        }
        writeln!(f, "per second")?;
        for s in &self.per_second {
            let mut line = format!("  {:>4}s {:>7}", s.second, s.total);
            for (name, statuses) in &s.by_upstream {
                let _ = write!(line, "  {name}[{}]", statuses_text(statuses));
            }
            if s.errors > 0 {
                let _ = write!(line, "  unanswered={}", s.errors);
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

fn statuses_text(statuses: &BTreeMap<String, u64>) -> String {
    statuses
        .iter()
        .map(|(code, n)| format!("{code}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_sums_seconds_and_errors() {
        let mut r = Recorder::new();
        r.response(0, "stable", 200, Duration::from_millis(2));
        r.response(0, "canary", 200, Duration::from_millis(4));
        r.response(2, "stable", 500, Duration::from_millis(6));
        r.error(1, ErrorKind::Connect);
        r.error(2, ErrorKind::Unsent);
        let report = r.report("http://127.0.0.1:1/", 10.0, Duration::from_secs(3));
        assert_eq!(report.total, 5);
        assert_eq!(report.errors, 2);
        assert_eq!(report.by_upstream["stable"]["200"], 1);
        assert_eq!(report.by_upstream["stable"]["500"], 1);
        assert_eq!(report.per_second.len(), 3);
        assert_eq!(report.per_second[1].errors, 1);
        assert_eq!(report.per_second[1].total, 1);
        assert_eq!(report.per_second[0].total, 2);
        assert_eq!(report.error_kinds["connect"], 1);
        assert!((report.latency_ms.max.unwrap() - 6.0).abs() < 0.01);
        assert!((report.latency_ms.p50.unwrap() - 4.0).abs() < 0.01);
        let json = serde_json::to_value(&report).unwrap();
        for key in ["total", "byUpstream", "perSecond", "latencyMs", "errors"] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        assert!(json["latencyMs"].get("p999").is_some());
        let text = report.to_string();
        assert!(text.contains("stable"), "{text}");
    }

    #[test]
    fn a_run_without_an_answer_has_no_latency_not_zero() {
        let mut r = Recorder::new();
        r.error(0, ErrorKind::Connect);
        let report = r.report("http://127.0.0.1:1/", 1.0, Duration::from_secs(1));
        let json = serde_json::to_value(&report).unwrap();
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(json["latencyMs"][key].is_null(), "{key}: {json}");
        }
        let text = report.to_string();
        assert!(
            text.contains("latency ms  p50 -  p90 -  p99 -  p99.9 -  max -"),
            "{text}"
        );
    }

    #[test]
    fn recent_p99_covers_one_window_at_a_time() {
        let mut r = Recorder::new();
        assert_eq!(r.take_recent_p99(), None);
        for ms in 1..=100 {
            r.response(0, "a", 200, Duration::from_millis(ms));
        }
        let p99 = r.take_recent_p99().unwrap();
        assert!(
            (Duration::from_millis(98)..=Duration::from_millis(101)).contains(&p99),
            "{p99:?}"
        );
        assert_eq!(r.take_recent_p99(), None);
        r.response(1, "a", 200, Duration::from_millis(2));
        let p99 = r.take_recent_p99().unwrap();
        assert!(p99 < Duration::from_millis(3), "{p99:?}");
        // The whole-run histogram keeps everything.
        let report = r.report("t", 1.0, Duration::from_secs(2));
        assert!(report.latency_ms.max.unwrap() >= 99.0, "{report:?}");
    }
}
