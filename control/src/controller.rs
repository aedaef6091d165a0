//! The control loop: per-route rollout states, the counters sampled from the
//! proxy every 100 ms, judgement every `analysis.interval`, and publishing a
//! new snapshot whenever a weight changes. Every transition is persisted
//! before it is acted on, on tokio's blocking pool (the fsyncs never stall
//! the runtime threads that serve traffic).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;
use weir_config::{Config, Diagnostic, Route, Step};
use weir_proxy::Role;
use weir_proxy::metrics::{LATENCY_BOUNDS_MICROS, RoleCounts};

use crate::load::{Loaded, Resolved};
use crate::persist::{self, Stored};
use crate::rollout::{
    AbortReason, Command, CommandRefused, ConfigRefused, LatencyHistogram, Observation, Outcome,
    Phase, RoleSummary, RoleTotals, RoleWindow, RolloutState, TransitionKind,
};
use crate::run::Process;

/// How often the proxy's counters are sampled: the granularity of windows.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Everything control decides, guarded by one lock in [`Process`].
#[derive(Debug)]
pub struct ControlState {
    /// The config in force.
    pub loaded: Loaded,
    /// Its resolved endpoints.
    pub resolved: Resolved,
    /// Rollout state of every route with a strategy.
    pub rollouts: BTreeMap<String, RolloutState>,
    /// Counter samples per route.
    pub history: BTreeMap<String, History>,
    /// `weir_rollout_aborts_total` by (route, reason).
    pub aborts: BTreeMap<(String, AbortReason), u64>,
    /// When each route was last judged (ms since the epoch).
    last_judged: BTreeMap<String, u64>,
    /// Where state is persisted: fixed at startup.
    state_dir: std::path::PathBuf,
}

/// Samples of one route's cumulative counters, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_ms: u64,
    stable: RoleCounts,
    canary: RoleCounts,
}

/// A command refused or failed, with the HTTP status to answer.
#[derive(Debug)]
pub struct CommandError {
    /// 404, 409 or 500.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

/// Wall-clock milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// === impl ControlState ===

impl ControlState {
    /// The state at startup: persisted rollouts are restored (an unreadable
    /// file holds its route at weight 0, a config behind its promotion holds
    /// its route as persisted), new ones started, all reconciled with the
    /// config and persisted. Runs before anything is served.
    ///
    /// # Errors
    /// Diagnostics when the state directory cannot be used.
    pub fn restore(
        loaded: Loaded,
        resolved: Resolved,
        now: u64,
    ) -> Result<ControlState, Vec<Diagnostic>> {
        let config = loaded.config();
        let state_dir = config.state_dir.clone();
        if let Err(error) = persist::ensure_dir(&state_dir) {
            return Err(vec![loaded.document.diagnostic(
                "stateDir",
                format!(
                    "cannot create the state directory {}: {error}",
                    state_dir.display()
                ),
            )]);
        }
        let mut rollouts = BTreeMap::new();
        let mut problems = Vec::new();
        for route in &config.routes {
            if route.strategy.is_none() {
                continue;
            }
            let outcome = match persist::load(&state_dir, &route.name) {
                // A config behind its promotion holds that route alone, as
                // persisted; every other route serves normally.
                Stored::Found(state) => state.reconcile(route, now).unwrap_or_else(|refused| {
                    tracing::warn!(route = %route.name, "{refused}; the route is held as persisted until the config catches up");
                    Outcome {
                        state: state.held_behind(&refused),
                        transition: None,
                    }
                }),
                Stored::Missing => RolloutState::start(route, now),
                Stored::Unreadable(error) => {
                    tracing::error!(route = %route.name, %error, "rollout state unreadable; holding the canary at weight 0");
                    if let Some(aside) = persist::set_aside(&state_dir, &route.name, now) {
                        tracing::warn!(route = %route.name, file = %aside.display(), "unreadable state file kept aside");
                    }
                    Outcome {
                        state: RolloutState::unreadable(route, now, &error),
                        transition: None,
                    }
                }
            };
            if let Err(error) = persist::save(&state_dir, &outcome.state) {
                problems.push(loaded.document.diagnostic(
                    "stateDir",
                    format!(
                        "cannot write the state of route {} in {}: {error}",
                        route.name,
                        state_dir.display()
                    ),
                ));
            }
            if let Some(t) = &outcome.transition {
                tracing::info!(route = %route.name, kind = ?t.kind, "{}", t.message);
            }
            rollouts.insert(route.name.to_string(), outcome.state);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ControlState {
            loaded,
            resolved,
            rollouts,
            history: BTreeMap::new(),
            aborts: BTreeMap::new(),
            last_judged: BTreeMap::new(),
            state_dir,
        })
    }

    /// Takes a reloaded config: each route with a strategy is reconciled
    /// (a new canary revision starts a rollout, a caught-up promotion ends
    /// one), the changes persisted (off the runtime threads), and only then
    /// the config adopted.
    ///
    /// A route held at startup because its config was behind a promotion
    /// stays held while the new config asks for the same canary revision.
    ///
    /// # Errors
    /// Diagnostics naming the change needed (a config that brings another
    /// canary revision while behind a promotion) or the state that cannot be
    /// persisted; nothing is changed then.
    pub async fn adopt(
        &mut self,
        loaded: Loaded,
        resolved: Resolved,
        now: u64,
    ) -> Result<(), Vec<Diagnostic>> {
        let mut outcomes = Vec::new();
        let mut problems = Vec::new();
        for (index, route) in loaded.config().routes.iter().enumerate() {
            if route.strategy.is_none() {
                continue;
            }
            let reconciled = match self.rollouts.get(&*route.name) {
                Some(state) => match state.reconcile(route, now) {
                    Err(refused) if self.is_held_behind(&refused) => Ok(Outcome {
                        state: state.held_behind(&refused),
                        transition: None,
                    }),
                    reconciled => reconciled,
                },
                // A strategy that comes back finds its route's last state
                // (sequence, promoted revision) on disk.
                None => {
                    match persist::load_off_runtime(self.state_dir.clone(), route.name.to_string())
                        .await
                    {
                        Stored::Found(state) => state.reconcile(route, now),
                        Stored::Missing | Stored::Unreadable(_) => {
                            Ok(RolloutState::start(route, now))
                        }
                    }
                }
            };
            match reconciled {
                Ok(outcome) => outcomes.push(outcome),
                Err(refused) => problems.push(loaded.document.diagnostic(
                    &format!("routes[{index}].canary.revision"),
                    refused.to_string(),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let changed: Vec<RolloutState> = outcomes
            .iter()
            .filter(|o| o.transition.is_some())
            .map(|o| o.state.clone())
            .collect();
        let written = persist::save_off_runtime(self.state_dir.clone(), changed.clone()).await;
        for (state, result) in changed.iter().zip(written) {
            if let Err(error) = result {
                return Err(vec![loaded.document.diagnostic(
                    "stateDir",
                    format!(
                        "cannot persist the state of route {} in {}: {error}",
                        state.route,
                        self.state_dir.display()
                    ),
                )]);
            }
        }
        // A route that keeps its name but loses its strategy ends its rollout;
        // the ended state is written so a restart does not resurrect it.
        let mut ended = Vec::new();
        for (name, state) in &self.rollouts {
            let Some(route) = loaded
                .config()
                .routes
                .iter()
                .find(|r| &*r.name == name.as_str())
            else {
                continue;
            };
            if route.strategy.is_some() {
                continue;
            }
            if let Ok(outcome) = state.reconcile(route, now) {
                if let Some(t) = &outcome.transition {
                    tracing::info!(route = %name, kind = ?t.kind, "{}", t.message);
                }
                ended.push(outcome.state);
            }
        }
        let written = persist::save_off_runtime(self.state_dir.clone(), ended.clone()).await;
        for (state, result) in ended.iter().zip(written) {
            if let Err(error) = result {
                tracing::warn!(route = %state.route, %error, "cannot persist the end of the rollout");
            }
        }
        let mut rollouts = BTreeMap::new();
        for outcome in outcomes {
            if let Some(t) = &outcome.transition {
                tracing::info!(route = %outcome.state.route, kind = ?t.kind, weight = %t.canary_weight, "{}", t.message);
            }
            rollouts.insert(outcome.state.route.clone(), outcome.state);
        }
        let names: Vec<String> = loaded
            .config()
            .routes
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        self.history.retain(|name, _| names.contains(name));
        self.last_judged
            .retain(|name, _| rollouts.contains_key(name));
        self.rollouts = rollouts;
        self.loaded = loaded;
        self.resolved = resolved;
        Ok(())
    }

    /// Whether the config in force already asks for the canary revision
    /// `refused` names: its route was held at startup and stays held.
    fn is_held_behind(&self, refused: &ConfigRefused) -> bool {
        self.config()
            .routes
            .iter()
            .find(|r| *r.name == *refused.route)
            .and_then(|r| r.canary.as_ref())
            .is_some_and(|c| *c.revision == *refused.requested)
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        self.loaded.config()
    }

    /// The snapshot for the config in force and the rollout weights.
    pub fn snapshot(&self) -> weir_config::Snapshot {
        let rollouts = &self.rollouts;
        self.resolved.compile(self.config(), &|name| {
            rollouts.get(name).and_then(RolloutState::route_override)
        })
    }

    /// Persists `outcome.state` (when it is a transition) off the runtime
    /// threads, then keeps it. Returns whether the snapshot must be
    /// republished.
    async fn keep(&mut self, route: &str, outcome: Outcome) -> Result<bool, String> {
        let written = if outcome.transition.is_some() {
            persist::save_off_runtime(self.state_dir.clone(), vec![outcome.state.clone()])
                .await
                .pop()
                .unwrap_or(Ok(()))
        } else {
            Ok(())
        };
        self.apply(route, outcome, written)
    }

    /// Records a transition's side effects and keeps `outcome.state`, given
    /// the result of writing it (`Ok` when nothing needed writing). Returns
    /// whether the snapshot must be republished.
    ///
    /// If the write failed the old state stays, except for an abort, which
    /// takes effect anyway (a bad canary must not keep traffic because a
    /// disk is full).
    fn apply(
        &mut self,
        route: &str,
        outcome: Outcome,
        written: std::io::Result<()>,
    ) -> Result<bool, String> {
        let old_override = self
            .rollouts
            .get(route)
            .and_then(RolloutState::route_override);
        if let Some(transition) = &outcome.transition {
            if let Err(error) = written {
                let message = format!("cannot persist the state of route {route}: {error}");
                if !matches!(transition.kind, TransitionKind::Aborted(_)) {
                    tracing::error!(route, "{message}; the transition is not applied");
                    return Err(message);
                }
                tracing::error!(route, "{message}; aborting anyway");
            }
            tracing::info!(
                route,
                kind = ?transition.kind,
                from = transition.from.as_str(),
                to = transition.to.as_str(),
                step = ?transition.to_step,
                weight = %transition.canary_weight,
                "{}",
                transition.message
            );
            if let Some(reason) = transition.abort_reason() {
                *self.aborts.entry((route.to_owned(), reason)).or_default() += 1;
            }
        }
        let changed = outcome.state.route_override() != old_override;
        self.rollouts.insert(route.to_owned(), outcome.state);
        Ok(changed)
    }

    /// Applies an operator command to `route`; the new state is written
    /// before it is kept. Returns whether to republish.
    ///
    /// # Errors
    /// 404 for an unknown route, 409 for a command that does not apply, 500
    /// when the state cannot be persisted.
    pub async fn command(
        &mut self,
        route: &str,
        command: Command,
        now: u64,
    ) -> Result<bool, CommandError> {
        let Some(config_route) = self.config().routes.iter().find(|r| &*r.name == route) else {
            return Err(CommandError {
                status: 404,
                message: format!("no route named {route}"),
            });
        };
        let Some(state) = self.rollouts.get(route) else {
            let refused = CommandRefused::fixed_split(route, command);
            return Err(CommandError {
                status: 409,
                message: refused.message().to_owned(),
            });
        };
        let outcome = state
            .command(command, config_route, now)
            .map_err(|refused| CommandError {
                status: 409,
                message: refused.message().to_owned(),
            })?;
        self.keep(route, outcome)
            .await
            .map_err(|message| CommandError {
                status: 500,
                message,
            })
    }

    /// Samples the proxy's counters and judges every route whose interval
    /// has passed; the transitions are written (off the runtime threads)
    /// before they are kept. Returns whether to republish.
    pub async fn tick(&mut self, sample: impl Fn(&str, Role) -> RoleCounts, now: u64) -> bool {
        let judged = self.judge(sample, now);
        let changed: Vec<RolloutState> = judged
            .iter()
            .filter(|(_, o)| o.transition.is_some())
            .map(|(_, o)| o.state.clone())
            .collect();
        let mut written = persist::save_off_runtime(self.state_dir.clone(), changed)
            .await
            .into_iter();
        let mut republish = false;
        for (name, outcome) in judged {
            let result = if outcome.transition.is_some() {
                written.next().unwrap_or(Ok(()))
            } else {
                Ok(())
            };
            // A state that cannot be persisted stays as it was (logged in `apply`).
            if let Ok(changed) = self.apply(&name, outcome, result) {
                republish |= changed;
            }
        }
        republish
    }

    /// Records a sample of every route and judges those whose interval has
    /// passed; no I/O.
    fn judge(
        &mut self,
        sample: impl Fn(&str, Role) -> RoleCounts,
        now: u64,
    ) -> Vec<(String, Outcome)> {
        // Borrow the config's routes field by field (no copy of the config
        // every 100 ms).
        let mut judged = Vec::new();
        for route in &self.loaded.config().routes {
            let name: &str = &route.name;
            let at = Sample {
                at_ms: now,
                stable: sample(name, Role::Stable),
                canary: sample(name, Role::Canary),
            };
            let keep_ms = route
                .strategy
                .as_ref()
                .map_or(30_000, |s| duration_ms(s.analysis.window))
                + 2_000;
            match self.history.get_mut(name) {
                Some(history) => history.push(at, keep_ms),
                None => self
                    .history
                    .entry(name.to_owned())
                    .or_default()
                    .push(at, keep_ms),
            }

            let (Some(strategy), Some(state)) = (&route.strategy, self.rollouts.get(name)) else {
                continue;
            };
            if !state.is_active() {
                continue;
            }
            let interval = duration_ms(strategy.analysis.interval);
            let last = self.last_judged.get(name).copied().unwrap_or(0);
            if now.saturating_sub(last) < interval {
                continue;
            }
            self.last_judged.insert(name.to_owned(), now);
            let since = now
                .saturating_sub(duration_ms(strategy.analysis.window))
                .max(state.rollout_started_ms);
            let observation = self
                .history
                .get(name)
                .map(|h| h.observation(since))
                .unwrap_or_else(empty_observation);
            judged.push((name.to_owned(), state.tick(route, now, &observation)));
        }
        judged
    }

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

    /// The rollout metric families in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP weir_rollout_phase Rollout phase of each route: 1 for the current phase.\n",
        );
        out.push_str("# TYPE weir_rollout_phase gauge\n");
        for route in &self.config().routes {
            let phase = self
                .rollouts
                .get(&*route.name)
                .map_or(Phase::Healthy, |s| s.phase);
            for p in Phase::ALL {
                let _ = writeln!(
                    out,
                    "weir_rollout_phase{{route=\"{}\",phase=\"{}\"}} {}",
                    route.name,
                    p.as_str(),
                    u8::from(p == phase)
                );
            }
        }
        out.push_str("# HELP weir_rollout_step 0-based index of the current rollout step.\n");
        out.push_str("# TYPE weir_rollout_step gauge\n");
        for (name, state) in &self.rollouts {
            if let Some(step) = state.step_index {
                let _ = writeln!(out, "weir_rollout_step{{route=\"{name}\"}} {step}");
            }
        }
        out.push_str("# HELP weir_rollout_aborts_total Rollouts aborted, by route and reason.\n");
        out.push_str("# TYPE weir_rollout_aborts_total counter\n");
        for name in self.rollouts.keys() {
            for reason in AbortReason::ALL {
                let count = self
                    .aborts
                    .get(&(name.clone(), reason))
                    .copied()
                    .unwrap_or(0);
                let _ = writeln!(
                    out,
                    "weir_rollout_aborts_total{{route=\"{name}\",reason=\"{}\"}} {count}",
                    reason.metric_label()
                );
            }
        }
    }
}

// === impl History ===

impl History {
    fn push(&mut self, sample: Sample, keep_ms: u64) {
        self.samples.push_back(sample);
        // Keep one sample older than the window, so a window always has a start.
        while self.samples.len() > 2 && self.samples[1].at_ms + keep_ms < sample.at_ms {
            self.samples.pop_front();
        }
    }

    /// Counts from the first sample at or after `since_ms` to the latest.
    fn observation(&self, since_ms: u64) -> Observation {
        let (Some(first), Some(last)) = (
            self.samples.iter().find(|s| s.at_ms >= since_ms),
            self.samples.back(),
        ) else {
            return empty_observation();
        };
        Observation {
            stable: window(&first.stable, &last.stable),
            canary: window(&first.canary, &last.canary),
            stable_total: totals(&last.stable),
            canary_total: totals(&last.canary),
        }
    }
}

fn window(from: &RoleCounts, to: &RoleCounts) -> RoleWindow {
    let counts = to
        .latency
        .iter()
        .zip(&from.latency)
        .map(|(b, a)| b.saturating_sub(*a))
        .collect();
    RoleWindow {
        requests: to.requests.saturating_sub(from.requests),
        errors: to.errors.saturating_sub(from.errors),
        latency: LatencyHistogram::from_counts(LATENCY_BOUNDS_MICROS.to_vec(), counts)
            .unwrap_or_else(|_| LatencyHistogram::with_default_bounds()),
    }
}

fn totals(counts: &RoleCounts) -> RoleTotals {
    RoleTotals {
        requests: counts.requests,
        errors: counts.errors,
    }
}

fn empty_observation() -> Observation {
    Observation {
        stable: RoleWindow::empty(),
        canary: RoleWindow::empty(),
        stable_total: RoleTotals::default(),
        canary_total: RoleTotals::default(),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

/// Runs the control loop until `stop` turns true: sample, judge, publish.
pub async fn run(process: Arc<Process>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = Arc::clone(process.proxy.metrics());
    loop {
        tokio::select! {
            () = crate::run::stopped(&mut stop) => return,
            _ = ticker.tick() => {}
        }
        let mut control = process.control.lock().await;
        let sample = |route: &str, role: Role| {
            metrics
                .get(route, role)
                .map_or_else(RoleCounts::zero, |m| m.counts())
        };
        if control.tick(sample, now_ms()).await {
            process.publisher.publish(control.snapshot());
        }
    }
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

    #[test]
    fn a_window_starts_at_the_first_sample_after_its_start() {
        let counts = |requests, errors| RoleCounts {
            requests,
            errors,
            latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
        };
        let mut history = History::default();
        for (at, requests, errors) in [
            (1_000, 10, 0),
            (1_100, 20, 1),
            (1_200, 35, 3),
            (1_300, 50, 4),
        ] {
            history.push(
                Sample {
                    at_ms: at,
                    stable: counts(requests * 9, 0),
                    canary: counts(requests, errors),
                },
                60_000,
            );
        }
        let obs = history.observation(1_150);
        assert_eq!((obs.canary.requests, obs.canary.errors), (15, 1));
        assert_eq!((obs.stable.requests, obs.canary_total.requests), (135, 50));
        let all = history.observation(0);
        assert_eq!(all.canary.requests, 40);
    }

    #[test]
    fn history_keeps_one_sample_older_than_the_window() {
        let zero = RoleCounts {
            requests: 0,
            errors: 0,
            latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
        };
        let mut history = History::default();
        for at in (0..100).map(|i| i * 100) {
            history.push(
                Sample {
                    at_ms: at,
                    stable: zero,
                    canary: zero,
                },
                1_000,
            );
        }
        assert!(
            history.samples.len() <= 13,
            "{} samples kept",
            history.samples.len()
        );
        assert!(
            history
                .samples
                .front()
                .is_some_and(|s| s.at_ms <= 9_900 - 1_000)
        );
    }
}
