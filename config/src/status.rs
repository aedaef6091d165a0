//! The rollout status as the admin API answers it (SPEC.md section 6): one
//! set of serde types that the server writes and every reader (the CLI, the
//! load test's scenario runner) reads, and the one [`Phase`] type.
//!
//! Reading is tolerant on purpose, so that one reader understands older and
//! newer servers: unknown fields are ignored, a phase this build does not
//! know reads as [`Phase::Unknown`], and missing or `null` fields take their
//! defaults. Where a phase is *input* (a persisted state, a scenario file),
//! read it with [`known_phase`], which refuses names it does not know.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The phase of a route's rollout (SPEC.md section 4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// No rollout: all traffic to stable (or a fixed split).
    Healthy,
    /// At a `setWeight` step.
    Progressing,
    /// At a pause step, or held by `pause`.
    Paused,
    /// Rolled back: weight 0.
    Aborted,
    /// All steps done: weight 100 until the config catches up.
    Promoted,
    /// A phase this build does not know (from a newer server), or none.
    #[default]
    #[serde(other)]
    Unknown,
}

/// The stage of a blue-green rollout (SPEC 12), beside its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlueGreenStage {
    /// The preview reaches the new revision; active traffic stays on the
    /// old one. The `pre-rollout` webhooks run here.
    Preview,
    /// The pre-promotion analysis runs against the preview.
    PrePromotion,
    /// Waiting for `promote`, the auto-promotion delay or the
    /// `confirm-promotion` webhook.
    AwaitingPromotion,
    /// Swapped: the new revision is active; the post-promotion analysis runs.
    PostPromotion,
    /// Promoted (or no rollout).
    Done,
}

impl BlueGreenStage {
    /// Every stage, in order (for the metric's series).
    pub const ALL: [BlueGreenStage; 5] = [
        BlueGreenStage::Preview,
        BlueGreenStage::PrePromotion,
        BlueGreenStage::AwaitingPromotion,
        BlueGreenStage::PostPromotion,
        BlueGreenStage::Done,
    ];

    /// The name in the status and the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            BlueGreenStage::Preview => "Preview",
            BlueGreenStage::PrePromotion => "PrePromotion",
            BlueGreenStage::AwaitingPromotion => "AwaitingPromotion",
            BlueGreenStage::PostPromotion => "PostPromotion",
            BlueGreenStage::Done => "Done",
        }
    }
}

impl fmt::Display for BlueGreenStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The blue-green part of a route status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BlueGreenStatus {
    /// The stage; `None` from a server that sent a stage this build does
    /// not know.
    #[serde(deserialize_with = "stage_or_none")]
    pub stage: Option<BlueGreenStage>,
    /// Whether preview requests reach the new revision now.
    #[serde(deserialize_with = "nullable")]
    pub preview_live: bool,
    /// The preview hosts, as written.
    #[serde(deserialize_with = "nullable")]
    pub preview_hosts: Vec<String>,
    /// The preview header, `name: value`.
    pub preview_header: Option<PreviewHeaderStatus>,
    /// While promoted: until when (ms since the UNIX epoch) `abort` swaps
    /// back to the old revision (`scaleDownDelaySeconds` after the swap).
    pub switch_back_until_ms: Option<u64>,
}

/// The preview header of a blue-green route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PreviewHeaderStatus {
    /// Header name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// The value that selects the preview.
    #[serde(deserialize_with = "nullable")]
    pub value: String,
}

/// One route's rollout status, as `GET /api/v1/routes/{name}` answers it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteStatus {
    /// The route's name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// The rollout phase.
    #[serde(deserialize_with = "nullable")]
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
    /// Counts the rollouts (and retries) of this route; `None` for a route
    /// without a strategy.
    pub rollout_seq: Option<u64>,
    /// False for a fixed split (a canary without a strategy).
    #[serde(deserialize_with = "nullable")]
    pub strategy: bool,
    /// What weir says about the route now.
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// The canary's figures over the analysis window and the last verdict.
    pub analysis: Option<Analysis>,
    /// For a CanaryRoute: the replica that leads its rollout (the holder of
    /// the Lease); absent for a file route, or while no replica leads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// For a CanaryRoute: the replicas whose counters are summed for the
    /// judgement, of those known, as `counted/known` (`"3/3"`); absent for a
    /// file route, or when not known yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
    /// For a CanaryRoute: a command written for the leader that it has not
    /// acted on yet, and what that means; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_command: Option<String>,
    /// The route's webhooks (SPEC 14) and how each last answered; absent
    /// for a route without webhooks.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub webhooks: Vec<WebhookStatus>,
    /// For a blue-green route: its stage and preview; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
}

/// One webhook of a route and its last call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookStatus {
    /// The hook's name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Its type (`confirm-rollout`, `pre-rollout`, ...).
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    /// The rollout waits for this hook to answer 2xx.
    #[serde(deserialize_with = "nullable")]
    pub waiting: bool,
    /// `pass` (2xx), `fail` (another status) or `error` (no answer);
    /// `None` before the first call.
    pub last_result: Option<String>,
    /// The last answer's status code, if it was answered.
    pub status_code: Option<u16>,
    /// Attempts of the last call (1 plus its retries).
    #[serde(deserialize_with = "nullable")]
    pub attempts: u32,
    /// What the last call got (`HTTP 503: not yet`, `no answer within 1s`).
    #[serde(deserialize_with = "nullable")]
    pub message: String,
    /// When the last call ended, in milliseconds since the UNIX epoch.
    pub last_called_ms: Option<u64>,
    /// Calls made since weir started.
    #[serde(deserialize_with = "nullable")]
    pub calls: u64,
}

/// One step of a rollout strategy, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `{"setWeight": 25}`: move the canary weight, in percent.
    SetWeight(f64),
    /// `{"pause": {}}` (until promoted) or `{"pause": {"duration": "30s"}}`.
    Pause {
        /// How long the pause lasts, as written (`1m30s`); `None` waits for
        /// `promote`.
        duration: Option<String>,
    },
    /// A step kind this build does not know, as compact JSON.
    Other(String),
}

/// The canary judgement over the last window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteAll {
    /// Why some routes could not be promoted; absent when all were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The routes that were promoted.
    #[serde(deserialize_with = "nullable")]
    pub promoted: Vec<String>,
    /// Every route's status after the command.
    #[serde(deserialize_with = "nullable")]
    pub routes: Vec<RouteStatus>,
}

/// Reads a blue-green stage; one this build does not know reads as `None`.
fn stage_or_none<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BlueGreenStage>, D::Error> {
    let name = Option::<String>::deserialize(deserializer)?;
    Ok(name.and_then(|name| {
        BlueGreenStage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == name)
    }))
}

/// Reads a field whose `null` means its default.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Reads a phase that must be one of the five of SPEC.md section 4: for
/// input (persisted state, scenario files), where a misspelled phase is an
/// error, not [`Phase::Unknown`].
///
/// # Errors
/// Names the phase read and the phases accepted.
pub fn known_phase<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Phase, D::Error> {
    let name = String::deserialize(deserializer)?;
    Phase::ALL
        .into_iter()
        .find(|p| p.as_str() == name)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown phase `{name}`; expected one of Healthy, Progressing, Paused, Aborted, Promoted"
            ))
        })
}

// === impl Phase ===

impl Phase {
    /// Every phase a rollout can be in, in the order of SPEC.md.
    pub const ALL: [Phase; 5] = [
        Phase::Healthy,
        Phase::Progressing,
        Phase::Paused,
        Phase::Aborted,
        Phase::Promoted,
    ];

    /// The phase as SPEC.md spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "Healthy",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Aborted => "Aborted",
            Phase::Promoted => "Promoted",
            Phase::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

// === impl Step ===

impl Step {
    /// Reads a step from its JSON; shapes this build does not know become
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

    /// The step as JSON: `{"setWeight": 25}`, `{"pause": {}}` or
    /// `{"pause": {"duration": "30s"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Step::SetWeight(weight) => serde_json::json!({ "setWeight": weight }),
            Step::Pause { duration: None } => serde_json::json!({ "pause": {} }),
            Step::Pause {
                duration: Some(duration),
            } => serde_json::json!({ "pause": { "duration": duration } }),
            Step::Other(raw) => {
                serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.clone()))
            }
        }
    }
}

impl Serialize for Step {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Step::from_json(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_fields_are_optional_both_ways() {
        let read = |text: &str| serde_json::from_str::<RouteStatus>(text).expect("a status");
        let file_route = read(r#"{"name": "web", "phase": "Healthy"}"#);
        assert_eq!(
            (
                file_route.leader,
                file_route.coverage,
                file_route.pending_command
            ),
            (None, None, None)
        );
        let nulls = read(r#"{"name": "web", "leader": null, "coverage": null}"#);
        assert_eq!((nulls.leader, nulls.coverage), (None, None));
        let cluster_route = read(
            r#"{"name": "shop/checkout", "leader": "weir-0", "coverage": "2/3",
                "pendingCommand": "abort is written"}"#,
        );
        assert_eq!(cluster_route.leader.as_deref(), Some("weir-0"));
        assert_eq!(cluster_route.coverage.as_deref(), Some("2/3"));
        assert_eq!(
            cluster_route.pending_command.as_deref(),
            Some("abort is written")
        );

        // Written only when set, so a file route's status keeps its keys.
        let written = serde_json::to_value(RouteStatus::default()).expect("JSON");
        for key in ["leader", "coverage", "pendingCommand"] {
            assert!(written.get(key).is_none(), "{key} in {written}");
        }
        let written = serde_json::to_value(&cluster_route).expect("JSON");
        assert_eq!(written["leader"], "weir-0");
        assert_eq!(written["coverage"], "2/3");
    }

    #[test]
    fn phases_read_tolerantly_as_output_and_strictly_as_input() {
        #[derive(Deserialize)]
        struct Input {
            #[serde(deserialize_with = "known_phase")]
            phase: Phase,
        }
        let read = |text: &str| serde_json::from_str::<Phase>(text).expect("a phase");
        assert_eq!(read("\"Paused\""), Phase::Paused);
        assert_eq!(read("\"Degraded\""), Phase::Unknown);
        for phase in Phase::ALL {
            let text = format!("{{\"phase\": \"{phase}\"}}");
            let input: Input = serde_json::from_str(&text).expect("a known phase");
            assert_eq!(input.phase, phase);
        }
        let refused = serde_json::from_str::<Input>(r#"{"phase": "Degraded"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("unknown phase `Degraded`"), "{refused}");
        let refused = serde_json::from_str::<Input>(r#"{"phase": "Unknown"}"#);
        assert!(refused.is_err(), "Unknown is no input phase");
    }

    #[test]
    fn steps_write_the_shapes_they_read() {
        for text in [
            r#"{"setWeight":25.0}"#,
            r#"{"pause":{}}"#,
            r#"{"pause":{"duration":"1m30s"}}"#,
            r#"{"experiment":{"x":1}}"#,
        ] {
            let step: Step = serde_json::from_str(text).expect("a step");
            assert_eq!(serde_json::to_string(&step).expect("JSON"), text);
        }
    }
}
