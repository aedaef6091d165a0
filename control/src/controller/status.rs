//! The status of each route, as the admin API answers it.

use std::fmt::Write as _;
use std::time::Duration;

use weir_config::status::{
    self, Analysis, BlueGreenStage, BlueGreenStatus, Phase, PreviewHeaderStatus, RoleStats,
    RouteStatus,
};
use weir_config::{Route, Step};

use super::ControlState;
use super::history::{duration_ms, empty_observation};
use crate::messages;
use crate::rollout::{RoleSummary, RolloutState, Verdict};

// === impl ControlState ===

impl ControlState {
    /// The status of every route, in config order.
    pub fn statuses(&self, now: u64) -> Vec<RouteStatus> {
        self.config()
            .routes
            .iter()
            .map(|r| self.status_of(r, now))
            .collect()
    }

    /// The status of `route`, if it exists.
    pub fn status(&self, route: &str, now: u64) -> Option<RouteStatus> {
        self.config()
            .routes
            .iter()
            .find(|r| &*r.name == route)
            .map(|r| self.status_of(r, now))
    }

    fn status_of(&self, route: &Route, now: u64) -> RouteStatus {
        let name: &str = &route.name;
        let steps: Vec<status::Step> = route
            .strategy
            .as_ref()
            .map_or_else(Vec::new, |s| s.steps.iter().map(step_status).collect());
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
        let (verdict, mut reason) = match judgement.map(|j| &j.verdict) {
            Some(Verdict::Pass { reason }) => (Some("pass"), Some(reason.clone())),
            Some(Verdict::Inconclusive { reason }) => (Some("inconclusive"), Some(reason.clone())),
            Some(Verdict::Fail { reason, .. }) => (Some("fail"), Some(reason.clone())),
            None => (None, None),
        };
        // A rollout that ended (Promoted, Aborted) is judged no more: its
        // verdict is the last one, whatever the live counts beside it say.
        if let (Some(s), Some(reason)) = (state, reason.as_mut()) {
            if !s.is_active() {
                let _ = write!(
                    reason,
                    " (the last judgement: the rollout is {} and judged no more)",
                    s.phase.as_str()
                );
            }
        }
        let analysis = Analysis {
            window_seconds: (now.saturating_sub(since)).min(window_ms) as f64 / 1000.0,
            stable: Some(role_stats(RoleSummary::of(&observation.stable))),
            canary: Some(role_stats(RoleSummary::of(&observation.canary))),
            verdict: verdict.map(str::to_owned),
            reason,
            failures: state.map_or(0, |s| u64::from(s.failures)),
        };
        let stable_revision = Some(route.stable.revision.to_string());
        let webhooks = match (self.hooks(), &route.strategy) {
            (Some(hooks), Some(strategy)) => hooks.statuses(name, strategy, state),
            _ => Vec::new(),
        };
        match state {
            Some(s) => RouteStatus {
                name: name.to_owned(),
                phase: s.phase,
                step_index: s.shown_step_index(),
                step_count: steps.len(),
                steps,
                canary_weight: s.canary_weight.percent(),
                stable_revision,
                canary_revision: s.canary_revision.clone(),
                promoted_revision: s.promoted_revision.clone(),
                config_behind: s.is_config_behind(),
                held: s.held,
                pause_deadline_ms: s.pause_deadline_ms,
                rollout_seq: Some(s.rollout_seq),
                strategy: true,
                message: match self.unpersisted.get(name) {
                    Some((_, why)) => format!(
                        "{}; not yet written to {} ({why}), tried again every second",
                        s.message,
                        self.store().location()
                    ),
                    None => s.message.clone(),
                },
                analysis: Some(analysis),
                leader: None,
                coverage: None,
                pending_command: None,
                webhooks,
                blue_green: blue_green_status(route, Some(s)),
            },
            None => RouteStatus {
                name: name.to_owned(),
                phase: Phase::Healthy,
                step_index: None,
                step_count: 0,
                steps: Vec::new(),
                canary_weight: route
                    .canary
                    .as_ref()
                    .map_or(0.0, |_| route.fixed_weight.percent()),
                stable_revision,
                canary_revision: route.canary.as_ref().map(|c| c.revision.to_string()),
                promoted_revision: None,
                config_behind: false,
                held: false,
                pause_deadline_ms: None,
                rollout_seq: None,
                strategy: false,
                message: match &route.canary {
                    Some(c) => messages::fixed_split(&route.fixed_weight, &c.revision),
                    None => messages::NO_CANARY.to_owned(),
                },
                analysis: Some(analysis),
                leader: None,
                coverage: None,
                pending_command: None,
                webhooks: Vec::new(),
                blue_green: blue_green_status(route, None),
            },
        }
    }
}

/// The stage and preview of a blue-green route; `None` for other routes.
/// Without a rollout state the route is `Done` (nothing to promote).
pub(crate) fn blue_green_status(
    route: &Route,
    state: Option<&RolloutState>,
) -> Option<BlueGreenStatus> {
    let strategy = route.strategy.as_ref()?;
    let bg = strategy.blue_green.as_ref()?;
    let stage = state
        .and_then(|s| s.blue_green_stage(strategy))
        .unwrap_or(BlueGreenStage::Done);
    let preview_live = state
        .and_then(RolloutState::route_override)
        .is_some_and(|o| o.preview_live);
    Some(BlueGreenStatus {
        stage: Some(stage),
        preview_live,
        preview_hosts: bg
            .preview
            .hosts
            .iter()
            .map(|h| match h {
                weir_config::HostMatch::Exact(name) => name.clone(),
                weir_config::HostMatch::Suffix(suffix) => format!("*{suffix}"),
            })
            .collect(),
        preview_header: bg.preview.header.as_ref().map(|h| PreviewHeaderStatus {
            name: h.name.to_string(),
            value: h.value.to_string(),
        }),
        switch_back_until_ms: state
            .filter(|s| s.phase == Phase::Promoted)
            .and_then(|s| s.switch_back_until_ms(strategy)),
    })
}

fn role_stats(summary: RoleSummary) -> RoleStats {
    RoleStats {
        requests: summary.requests,
        errors: summary.errors,
        error_rate: summary.error_rate,
        latency_p99_ms: summary.latency_p99_ms,
    }
}

fn step_status(step: &Step) -> status::Step {
    match step {
        Step::SetWeight(w) => status::Step::SetWeight(w.percent()),
        Step::Pause(None) => status::Step::Pause { duration: None },
        Step::Pause(Some(d)) => status::Step::Pause {
            duration: Some(format_duration(*d)),
        },
        Step::Analysis(analysis) => {
            let templates: Vec<serde_json::Value> = analysis
                .templates
                .iter()
                .map(|t| serde_json::json!({ "templateName": &**t }))
                .collect();
            status::Step::Other(
                serde_json::json!({ "analysis": { "templates": templates } }).to_string(),
            )
        }
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
