//! The status of each route, as the admin API answers it.

use std::time::Duration;

use serde_json::{Value, json};
use weir_config::{Route, Step};

use super::ControlState;
use super::history::{duration_ms, empty_observation};
use crate::rollout::{Phase, RoleSummary};

// === impl ControlState ===

impl ControlState {
    /// The status of every route, in config order.
    pub fn statuses(&self, now: u64) -> Vec<Value> {
        self.config()
            .routes
            .iter()
            .map(|r| self.status_of(r, now))
            .collect()
    }

    /// The status of `route`, if it exists.
    pub fn status(&self, route: &str, now: u64) -> Option<Value> {
        self.config()
            .routes
            .iter()
            .find(|r| &*r.name == route)
            .map(|r| self.status_of(r, now))
    }

    fn status_of(&self, route: &Route, now: u64) -> Value {
        let name: &str = &route.name;
        let steps: Vec<Value> = route
            .strategy
            .as_ref()
            .map_or_else(Vec::new, |s| s.steps.iter().map(step_json).collect());
        let window_ms = route
            .strategy
            .as_ref()
            .map_or(30_000, |s| duration_ms(s.analysis.window));
        let state = self.rollouts.get(name);
        let since = now
            .saturating_sub(window_ms)
            .max(state.map_or(0, |s| s.rollout_started_ms));
        let observation = self
            .history
            .get(name)
            .map(|h| h.observation(since))
            .unwrap_or_else(empty_observation);
        let judgement = state.and_then(|s| s.last_judgement.as_ref());
        let (verdict, reason) = match judgement.map(|j| &j.verdict) {
            Some(crate::rollout::Verdict::Pass { reason }) => (json!("pass"), json!(reason)),
            Some(crate::rollout::Verdict::Inconclusive { reason }) => {
                (json!("inconclusive"), json!(reason))
            }
            Some(crate::rollout::Verdict::Fail { reason, .. }) => (json!("fail"), json!(reason)),
            None => (Value::Null, Value::Null),
        };
        let analysis = json!({
            "windowSeconds": (now.saturating_sub(since)).min(window_ms) as f64 / 1000.0,
            "stable": RoleSummary::of(&observation.stable),
            "canary": RoleSummary::of(&observation.canary),
            "verdict": verdict,
            "reason": reason,
            "failures": state.map_or(0, |s| s.failures),
        });
        match state {
            Some(s) => json!({
                "name": name,
                "phase": s.phase.as_str(),
                "stepIndex": s.step_index,
                "stepCount": steps.len(),
                "steps": steps,
                "canaryWeight": s.canary_weight.percent(),
                "stableRevision": &*route.stable.revision,
                "canaryRevision": s.canary_revision,
                "promotedRevision": s.promoted_revision,
                "configBehind": s.is_config_behind(),
                "held": s.held,
                "pauseDeadlineMs": s.pause_deadline_ms,
                "rolloutSeq": s.rollout_seq,
                "strategy": true,
                "message": s.message,
                "analysis": analysis,
            }),
            None => json!({
                "name": name,
                "phase": Phase::Healthy.as_str(),
                "stepIndex": Value::Null,
                "stepCount": 0,
                "steps": [],
                "canaryWeight": route.canary.as_ref().map_or(0.0, |_| route.fixed_weight.percent()),
                "stableRevision": &*route.stable.revision,
                "canaryRevision": route.canary.as_ref().map(|c| &*c.revision),
                "promotedRevision": Value::Null,
                "configBehind": false,
                "held": false,
                "pauseDeadlineMs": Value::Null,
                "rolloutSeq": Value::Null,
                "strategy": false,
                "message": match &route.canary {
                    Some(c) => format!("fixed split: {} % to {}", route.fixed_weight, c.revision),
                    None => "no canary".to_owned(),
                },
                "analysis": analysis,
            }),
        }
    }
}

fn step_json(step: &Step) -> Value {
    match step {
        Step::SetWeight(w) => json!({ "setWeight": w.percent() }),
        Step::Pause(None) => json!({ "pause": {} }),
        Step::Pause(Some(d)) => json!({ "pause": { "duration": format_duration(*d) } }),
    }
}

/// `90s` → `1m30s`, `500ms` → `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = duration_ms(d);
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_as_written() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
