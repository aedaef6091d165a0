//! The JSON shapes of weir's admin API (SPEC.md section 6), as the CLI reads
//! them.
//!
//! Tolerant on purpose, so that one CLI reads older and newer servers: unknown
//! fields are ignored, and missing or `null` fields take their defaults. These
//! types are only read, never sent; `weir status --json` prints the server's
//! own bytes instead of re-encoding them.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// One route's rollout status, as `GET /api/v1/routes/{name}` answers it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteStatus {
    /// The route's name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// The rollout phase.
    pub phase: Phase,
    /// The 0-based current step; `None` without a rollout. Equals
    /// `step_count` once the rollout is promoted.
    pub step_index: Option<usize>,
    /// How many steps the strategy has; 0 for a fixed split.
    #[serde(deserialize_with = "nullable")]
    pub step_count: usize,
    /// The strategy's steps, in order.
    #[serde(deserialize_with = "nullable")]
    pub steps: Vec<Step>,
    /// The share of requests sent to the canary, in percent.
    #[serde(deserialize_with = "nullable")]
    pub canary_weight: f64,
    /// The revision the stable upstream serves, when the config names one.
    pub stable_revision: Option<String>,
    /// The revision the canary upstream serves, when the config names one.
    pub canary_revision: Option<String>,
    /// The revision that was promoted, if any.
    pub promoted_revision: Option<String>,
    /// True when a rollout was promoted but the config still names the old
    /// stable revision.
    #[serde(deserialize_with = "nullable")]
    pub config_behind: bool,
    /// True when an operator holds the step timer (`weir pause`).
    #[serde(deserialize_with = "nullable")]
    pub held: bool,
    /// When a timed pause ends, in milliseconds since the UNIX epoch.
    pub pause_deadline_ms: Option<u64>,
    /// Counts the rollouts (and retries) of this route.
    #[serde(deserialize_with = "nullable")]
    pub rollout_seq: u64,
    /// False for a fixed split (a canary without a strategy).
    #[serde(deserialize_with = "nullable")]
    pub strategy: bool,
    /// What weir says about the route now.
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// The last judgement of the canary, if any.
    pub analysis: Option<Analysis>,
}

/// A rollout phase (SPEC.md section 4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Phase {
    /// No rollout: all traffic goes to stable (or a fixed split).
    Healthy,
    /// Steps are running.
    Progressing,
    /// An indefinite or timed pause, or held by an operator.
    Paused,
    /// Rolled back: weight 0.
    Aborted,
    /// All steps done: the canary serves 100 %.
    Promoted,
    /// A phase this CLI does not know, kept as the server spelled it.
    Other(String),
    /// The server sent no phase.
    #[default]
    Unknown,
}

/// One step of a rollout strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `{"setWeight": 25}`: move the canary weight, in percent.
    SetWeight(f64),
    /// `{"pause": {}}` (until promoted) or `{"pause": {"duration": "30s"}}`.
    Pause {
        /// How long the pause lasts; `None` waits for `promote`.
        duration: Option<String>,
    },
    /// A step kind this CLI does not know, as compact JSON.
    Other(String),
}

/// The canary judgement over the last window.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Analysis {
    /// The length of the judged window, in seconds.
    #[serde(deserialize_with = "nullable")]
    pub window_seconds: f64,
    /// The stable role's counts over the window.
    pub stable: Option<RoleStats>,
    /// The canary role's counts over the window.
    pub canary: Option<RoleStats>,
    /// The last verdict: `pass`, `fail` or `inconclusive`; `None` before the
    /// first judgement.
    pub verdict: Option<String>,
    /// Why the last verdict was reached.
    pub reason: Option<String>,
    /// Failed judgements since the rollout began.
    #[serde(deserialize_with = "nullable")]
    pub failures: u64,
}

/// One role's counts over the analysis window.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RoleStats {
    /// Requests answered.
    #[serde(deserialize_with = "nullable")]
    pub requests: u64,
    /// 5xx answers and proxy errors.
    #[serde(deserialize_with = "nullable")]
    pub errors: u64,
    /// `errors / requests`, a fraction; `None` without requests.
    pub error_rate: Option<f64>,
    /// The 99th latency percentile in milliseconds; `None` without requests.
    pub latency_p99_ms: Option<f64>,
}

/// The answer of `POST /api/v1/promote`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PromoteAll {
    /// The routes that were promoted.
    #[serde(deserialize_with = "nullable")]
    pub promoted: Vec<String>,
    /// Every route's status after the command.
    #[serde(deserialize_with = "nullable")]
    pub routes: Vec<RouteStatus>,
}

/// The JSON body of an error answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    /// What is wrong.
    pub(crate) error: String,
}

/// Reads a field whose `null` means its default.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

// === impl Phase ===

impl Phase {
    /// The phase as SPEC.md spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Healthy => "Healthy",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Aborted => "Aborted",
            Phase::Promoted => "Promoted",
            Phase::Other(name) => name,
            Phase::Unknown => "Unknown",
        }
    }

    /// Reads a phase name; names this CLI does not know are kept.
    pub fn from_name(name: &str) -> Phase {
        match name {
            "Healthy" => Phase::Healthy,
            "Progressing" => Phase::Progressing,
            "Paused" => Phase::Paused,
            "Aborted" => Phase::Aborted,
            "Promoted" => Phase::Promoted,
            other => Phase::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?
            .map_or(Phase::Unknown, |name| Phase::from_name(&name)))
    }
}

// === impl Step ===

impl Step {
    /// Reads a step from its JSON; shapes this CLI does not know become
    /// [`Step::Other`] rather than an error.
    pub fn from_json(value: &serde_json::Value) -> Step {
        if let Some(weight) = value.get("setWeight").and_then(serde_json::Value::as_f64) {
            return Step::SetWeight(weight);
        }
        if let Some(pause) = value.get("pause") {
            let duration = match pause.get("duration") {
                Some(serde_json::Value::String(text)) => Some(text.clone()),
                // A bare number of seconds, as the config allows.
                Some(serde_json::Value::Number(seconds)) => Some(format!("{seconds}s")),
                _ => None,
            };
            return Step::Pause { duration };
        }
        Step::Other(value.to_string())
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Step::from_json(&value))
    }
}
