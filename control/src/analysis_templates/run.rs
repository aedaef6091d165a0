//! The measurement / metric / run state machine of analysis templates, as
//! pure functions of the measurements and the time (ms since the UNIX
//! epoch, passed in), with Argo Rollouts' semantics:
//!
//! - A measurement is Successful, Failed or Inconclusive by the metric's
//!   conditions ([`judge`]): the failure condition true is Failed; else the
//!   success condition true is Successful; a success condition alone and
//!   false is Failed; a failure condition alone and false is Successful;
//!   both false is Inconclusive; no condition at all is Successful. A
//!   provider or condition error makes an Error measurement.
//! - Errors do not count as measurements: an errored measurement is retried
//!   after 10 s (or after `interval` when shorter), and more than
//!   `consecutiveErrorLimit` errors in a row make the metric Error.
//! - The first measurement is taken `initialDelay` after the run starts,
//!   the next ones `interval` after the previous one ended. `count`
//!   measurements end the metric; without `count` a metric with `interval`
//!   measures until the run is terminated (background analysis), one
//!   without `interval` measures once.
//! - More Failed measurements than `failureLimit` (unless it is -1) make
//!   the metric Failed, more Inconclusive than `inconclusiveLimit` make it
//!   Inconclusive; a metric that took its `count` without either is
//!   Successful.
//! - The run's phase is the worst of its metrics' (Failed and Error, then
//!   Inconclusive, then Running, then Successful); a `dryRun` metric is
//!   measured and shown but counts as Successful once it ends. The run ends
//!   as soon as one metric is Failed, Error or Inconclusive, or when every
//!   metric has ended.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use weir_config::condition::Value;
use weir_config::{AnalysisRef, Metric};

use crate::messages::truncate;

/// After an errored measurement, the next one comes this much later, as
/// SPEC 13 says, whatever the metric's `interval`: Argo retries after the
/// `interval` when it is shorter, so a metric measured every second ends in
/// `Error` (and aborts its rollout) after a four-second restart of its
/// Prometheus; here, with the default `consecutiveErrorLimit` of 4, it
/// takes 40 s of errors (five in a row).
pub const ERROR_RETRY: Duration = Duration::from_secs(10);

/// The phase of a measurement, a metric or a run (Argo's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RunPhase {
    /// Nothing measured yet.
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// Failed: the rollout aborts.
    Failed,
    /// Could not be measured: the rollout aborts.
    Error,
    /// Neither passed nor failed: the rollout waits for an operator.
    Inconclusive,
}

/// Which run of a rollout: a run is started once per key, so a result
/// that arrives for an older rollout, retry or step never applies to the
/// current one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunKey {
    /// The rollout's sequence number.
    pub rollout_seq: u64,
    /// When the rollout started or was retried (a retry keeps the sequence
    /// number).
    pub rollout_started_ms: u64,
    /// What the run is for.
    pub kind: RunKind,
}

/// What an analysis run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// The canary `analysis` step of this 0-based index.
    Step(usize),
    /// `strategy.analysis.templates`, for the whole rollout.
    Background,
    /// A blue-green `prePromotionAnalysis`, against the preview; the
    /// 0-based index of its step.
    PrePromotion(usize),
    /// A blue-green `postPromotionAnalysis`, after the swap; the 0-based
    /// index of its step.
    PostPromotion(usize),
}

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Successful, Failed, Inconclusive or Error.
    pub phase: RunPhase,
    /// The provider's value, when there is one.
    pub value: Option<Value>,
    /// Why it errored, or what the conditions said.
    pub message: Option<String>,
    /// When it started.
    pub started_ms: u64,
    /// When it ended.
    pub finished_ms: u64,
}

/// A metric being measured.
#[derive(Debug, Clone)]
pub struct MetricRun {
    /// The metric, arguments replaced.
    pub metric: Arc<Metric>,
    /// Its phase.
    pub phase: RunPhase,
    /// Why it is in that phase.
    pub message: String,
    /// Measurements, oldest first (the most recent [`KEPT_MEASUREMENTS`]).
    pub measurements: Vec<Measurement>,
    /// Successful measurements.
    pub successful: u32,
    /// Failed measurements.
    pub failed: u32,
    /// Inconclusive measurements.
    pub inconclusive: u32,
    /// Errored measurements.
    pub errors: u32,
    /// Errored measurements in a row, up to the last one.
    pub consecutive_errors: u32,
    /// When the last measurement ended.
    last_finished_ms: Option<u64>,
    /// Whether the last measurement errored.
    last_errored: bool,
}

/// Measurements kept per metric for display (a background run with a
/// short interval would otherwise grow without end); the counts cover all.
pub const KEPT_MEASUREMENTS: usize = 50;

/// A run of one [`AnalysisRef`]: its metrics and its phase.
#[derive(Debug, Clone)]
pub struct RunState {
    /// The templates run.
    pub templates: Vec<Arc<str>>,
    /// The metrics, in the order of the templates.
    pub metrics: Vec<MetricRun>,
    /// Worst of the metrics' phases, once ended; Running before.
    pub phase: RunPhase,
    /// What decided the phase.
    pub message: String,
    /// When the run started.
    pub started_ms: u64,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// Why its templates could not be resolved when it started: such a
    /// run measures nothing and stays Pending until replaced by a run of
    /// the resolved reference.
    pub waiting_for: Option<Arc<str>>,
}

/// Most bytes of a measured value's text kept for display, or quoted in a
/// message. A provider may answer up to 4 MiB: kept whole in each of the
/// last [`KEPT_MEASUREMENTS`] measurements, and quoted in an abort message
/// that goes into a CanaryRoute's status three times, it would take memory
/// without end and make the status too large for the API server to store.
pub const SHOWN_VALUE_BYTES: usize = 1024;

/// Most bytes of a measurement's message.
pub const MESSAGE_BYTES: usize = 2 * SHOWN_VALUE_BYTES;

/// `value` as kept with its measurement: as it is when its text is at most
/// [`SHOWN_VALUE_BYTES`], else the start of its text, marked as cut.
pub fn shown(value: Value) -> Value {
    match capped_text(&value, SHOWN_VALUE_BYTES) {
        (_, false) => value,
        (start, true) => Value::Text(format!(
            "{start}... (cut: the value's text is longer than {SHOWN_VALUE_BYTES} bytes)"
        )),
    }
}

/// The text of `value` for a message, cut at [`SHOWN_VALUE_BYTES`].
pub fn quoted(value: &Value) -> String {
    match capped_text(value, SHOWN_VALUE_BYTES) {
        (text, false) => text,
        (start, true) => format!("{start}... (cut)"),
    }
}

/// `text` cut at [`MESSAGE_BYTES`] (on a character boundary), marked as cut.
pub fn bounded_message(mut text: String) -> String {
    if text.len() > MESSAGE_BYTES {
        let kept = truncate(&text, MESSAGE_BYTES).len();
        text.truncate(kept);
        text.push_str("... (cut)");
    }
    text
}

/// The text of `value`, at most `limit` bytes of it, and whether it is
/// longer; writing stops at the limit.
fn capped_text(value: &Value, limit: usize) -> (String, bool) {
    struct Capped {
        text: String,
        limit: usize,
        cut: bool,
    }
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.limit - self.text.len();
            if s.len() <= room {
                self.text.push_str(s);
                return Ok(());
            }
            self.text.push_str(truncate(s, room));
            self.cut = true;
            Err(std::fmt::Error)
        }
    }
    let mut capped = Capped {
        text: String::new(),
        limit,
        cut: false,
    };
    let _ = std::fmt::Write::write_fmt(&mut capped, format_args!("{value}"));
    (capped.text, capped.cut)
}

/// The phase of a measurement of `metric` that gave `value` (see the
/// module documentation), and a message when a condition could not be
/// evaluated.
pub fn judge(metric: &Metric, value: &Value) -> (RunPhase, Option<String>) {
    let eval = |condition: &Option<weir_config::condition::Condition>| {
        condition.as_ref().map(|c| {
            c.eval(value)
                .map_err(|e| bounded_message(format!("condition `{c}` on {}: {e}", quoted(value))))
        })
    };
    let success = match eval(&metric.success_condition) {
        Some(Err(e)) => return (RunPhase::Error, Some(e)),
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let failure = match eval(&metric.failure_condition) {
        Some(Err(e)) => return (RunPhase::Error, Some(e)),
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let phase = match (success, failure) {
        (_, Some(true)) => RunPhase::Failed,
        (Some(true), _) => RunPhase::Successful,
        (None, None) | (None, Some(false)) => RunPhase::Successful,
        (Some(false), None) => RunPhase::Failed,
        (Some(false), Some(false)) => RunPhase::Inconclusive,
    };
    (phase, None)
}

// === impl RunKey ===

impl std::fmt::Display for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            RunKind::Step(i) => write!(f, "rollout {} step {}", self.rollout_seq, i + 1),
            RunKind::Background => write!(f, "rollout {} background", self.rollout_seq),
            RunKind::PrePromotion(_) => write!(f, "rollout {} pre-promotion", self.rollout_seq),
            RunKind::PostPromotion(_) => {
                write!(f, "rollout {} post-promotion", self.rollout_seq)
            }
        }
    }
}

impl RunKind {
    /// `step`, `background`, `prePromotion` or `postPromotion`, for the
    /// admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunKind::Step(_) => "step",
            RunKind::Background => "background",
            RunKind::PrePromotion(_) => "prePromotion",
            RunKind::PostPromotion(_) => "postPromotion",
        }
    }

    /// The index of the step the run belongs to; `None` for a background run.
    pub const fn step_index(self) -> Option<usize> {
        match self {
            RunKind::Step(i) | RunKind::PrePromotion(i) | RunKind::PostPromotion(i) => Some(i),
            RunKind::Background => None,
        }
    }
}

// === impl RunPhase ===

impl RunPhase {
    /// The phase as Argo writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunPhase::Pending => "Pending",
            RunPhase::Running => "Running",
            RunPhase::Successful => "Successful",
            RunPhase::Failed => "Failed",
            RunPhase::Error => "Error",
            RunPhase::Inconclusive => "Inconclusive",
        }
    }

    /// True once nothing more will be measured.
    pub const fn is_completed(self) -> bool {
        matches!(
            self,
            RunPhase::Successful | RunPhase::Failed | RunPhase::Error | RunPhase::Inconclusive
        )
    }

    /// Failed or Error: the rollout aborts.
    pub const fn is_failure(self) -> bool {
        matches!(self, RunPhase::Failed | RunPhase::Error)
    }

    /// How bad: Successful 0, Pending and Running 1, Inconclusive 2,
    /// Failed and Error 3.
    const fn rank(self) -> u8 {
        match self {
            RunPhase::Successful => 0,
            RunPhase::Pending | RunPhase::Running => 1,
            RunPhase::Inconclusive => 2,
            RunPhase::Failed | RunPhase::Error => 3,
        }
    }
}

impl std::fmt::Display for RunPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl MetricRun ===

impl MetricRun {
    /// A metric with nothing measured yet.
    pub fn new(metric: Arc<Metric>) -> MetricRun {
        MetricRun {
            metric,
            phase: RunPhase::Pending,
            message: String::new(),
            measurements: Vec::new(),
            successful: 0,
            failed: 0,
            inconclusive: 0,
            errors: 0,
            consecutive_errors: 0,
            last_finished_ms: None,
            last_errored: false,
        }
    }

    /// Measurements that count (errors do not).
    pub fn counted(&self) -> u32 {
        self.successful + self.failed + self.inconclusive
    }

    /// When the next measurement is due, for a run started at
    /// `run_started_ms`; `None` once the metric has ended.
    pub fn next_due_ms(&self, run_started_ms: u64) -> Option<u64> {
        if self.phase.is_completed() {
            return None;
        }
        let Some(last) = self.last_finished_ms else {
            return Some(run_started_ms.saturating_add(millis(self.metric.initial_delay)));
        };
        let wait = if self.last_errored {
            ERROR_RETRY
        } else {
            self.metric.interval.unwrap_or(Duration::ZERO)
        };
        Some(last.saturating_add(millis(wait)))
    }

    /// Takes a measurement into account and assesses the metric.
    pub fn record(&mut self, measurement: Measurement) {
        if self.phase.is_completed() {
            return;
        }
        self.last_finished_ms = Some(measurement.finished_ms);
        self.last_errored = measurement.phase == RunPhase::Error;
        match measurement.phase {
            RunPhase::Successful => self.successful += 1,
            RunPhase::Failed => self.failed += 1,
            RunPhase::Inconclusive => self.inconclusive += 1,
            RunPhase::Error => self.errors += 1,
            RunPhase::Pending | RunPhase::Running => {}
        }
        if measurement.phase == RunPhase::Error {
            self.consecutive_errors += 1;
        } else {
            self.consecutive_errors = 0;
        }
        let last_error = measurement.message.clone().unwrap_or_default();
        self.measurements.push(measurement);
        if self.measurements.len() > KEPT_MEASUREMENTS {
            self.measurements.remove(0);
        }
        self.assess(&last_error);
    }

    fn assess(&mut self, last_error: &str) {
        let m = &self.metric;
        let count = m
            .count
            .or(if m.interval.is_none() { Some(1) } else { None });
        (self.phase, self.message) = if m.failure_limit.is_some_and(|limit| self.failed > limit) {
            (
                RunPhase::Failed,
                format!(
                    "{} failed measurement{} exceed failureLimit {}",
                    self.failed,
                    plural(self.failed),
                    m.failure_limit.unwrap_or(0)
                ),
            )
        } else if self.inconclusive > m.inconclusive_limit {
            (
                RunPhase::Inconclusive,
                format!(
                    "{} inconclusive measurement{} exceed inconclusiveLimit {}",
                    self.inconclusive,
                    plural(self.inconclusive),
                    m.inconclusive_limit
                ),
            )
        } else if self.consecutive_errors > m.consecutive_error_limit {
            (
                RunPhase::Error,
                format!(
                    "{} errors in a row exceed consecutiveErrorLimit {}: {last_error}",
                    self.consecutive_errors, m.consecutive_error_limit
                ),
            )
        } else if count.is_some_and(|count| self.counted() >= count) {
            (
                RunPhase::Successful,
                format!(
                    "{} of {} measurements successful",
                    self.successful,
                    self.counted()
                ),
            )
        } else {
            let note = if self.last_errored {
                format!(
                    "measurement errored ({} in a row): {last_error}",
                    self.consecutive_errors
                )
            } else {
                format!(
                    "{} measurement{} taken",
                    self.counted(),
                    plural(self.counted())
                )
            };
            (RunPhase::Running, note)
        };
    }
}

// === impl RunState ===

impl RunState {
    /// A run of `analysis` starting at `now_ms`; Pending, measuring
    /// nothing, while its templates cannot be resolved.
    pub fn new(analysis: &AnalysisRef, now_ms: u64) -> RunState {
        if let Some(why) = &analysis.waiting_for {
            return RunState {
                templates: analysis.templates.clone(),
                metrics: Vec::new(),
                phase: RunPhase::Pending,
                message: format!("waiting for its analysis templates: {why}"),
                started_ms: now_ms,
                finished_ms: None,
                waiting_for: Some(Arc::clone(why)),
            };
        }
        RunState {
            templates: analysis.templates.clone(),
            metrics: analysis
                .metrics
                .iter()
                .map(|m| MetricRun::new(Arc::clone(m)))
                .collect(),
            phase: RunPhase::Running,
            message: "measuring".to_owned(),
            started_ms: now_ms,
            finished_ms: None,
            waiting_for: None,
        }
    }

    /// When the next measurement is due and of which metrics (indices);
    /// `None` once the run has ended.
    pub fn next_due(&self) -> Option<(u64, Vec<usize>)> {
        if self.phase.is_completed() {
            return None;
        }
        let due: Vec<(usize, u64)> = self
            .metrics
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.next_due_ms(self.started_ms).map(|at| (i, at)))
            .collect();
        let first = due.iter().map(|(_, at)| *at).min()?;
        Some((
            first,
            due.iter()
                .filter(|(_, at)| *at == first)
                .map(|(i, _)| *i)
                .collect(),
        ))
    }

    /// Takes a measurement of metric `index` and assesses the run.
    pub fn record(&mut self, index: usize, measurement: Measurement) {
        if self.phase.is_completed() {
            return;
        }
        let finished = measurement.finished_ms;
        if let Some(metric) = self.metrics.get_mut(index) {
            metric.record(measurement);
        }
        self.assess(finished);
    }

    /// Ends a run that is still measuring (the rollout moved on): its
    /// phase is what it measured so far, Successful unless worse.
    pub fn terminate(&mut self, now_ms: u64, why: &str) {
        if self.phase.is_completed() {
            return;
        }
        self.phase = RunPhase::Successful;
        self.message = format!("terminated: {why}");
        self.finished_ms = Some(now_ms);
    }

    fn assess(&mut self, now_ms: u64) {
        let mut worst = RunPhase::Successful;
        let mut message = String::new();
        let mut all_done = true;
        // Dry runs that did not succeed: told, never failing the run.
        let mut dry_failures = Vec::new();
        for metric in &self.metrics {
            let phase = match metric.phase {
                // A dry run never fails the run.
                p if metric.metric.dry_run && p.is_completed() => {
                    if p != RunPhase::Successful {
                        dry_failures.push(format!(
                            "dry-run metric {} {}: {}",
                            metric.metric.name,
                            p.as_str(),
                            metric.message
                        ));
                    }
                    RunPhase::Successful
                }
                p => p,
            };
            all_done &= phase.is_completed();
            if phase.rank() > worst.rank() {
                worst = phase;
                message = format!("metric {}: {}", metric.metric.name, metric.message);
            }
        }
        let ended = matches!(
            worst,
            RunPhase::Failed | RunPhase::Error | RunPhase::Inconclusive
        ) || all_done;
        if ended {
            self.phase = worst;
            self.message = match (message.is_empty(), dry_failures.is_empty()) {
                (true, true) => "every metric successful".to_owned(),
                (true, false) => format!(
                    "every metric successful but dry runs ({})",
                    dry_failures.join("; ")
                ),
                _ => message,
            };
            self.finished_ms = Some(now_ms);
        } else {
            self.phase = RunPhase::Running;
            self.message = message;
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
