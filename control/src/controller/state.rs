//! The rollout state of every route and the config it follows: restored at
//! startup, reconciled with each reloaded config, changed by commands and by
//! the judgement of each tick. Every transition is saved to the
//! [`StateStore`] (off the runtime threads) before it is kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_config::{Config, Diagnostic, Diagnostics, Route};
use weir_proxy::Role;
use weir_proxy::metrics::RoleCounts;

use super::cluster_routes::is_cluster_route;
use super::history::{History, Sample, duration_ms, empty_observation};
use super::route_span;
use crate::analysis_templates::{AnalysisRuns, RunKey, RunPhase};
use crate::load::{Loaded, Resolved};
use crate::messages::CommandError;
use crate::persist::{self, FileStore, StateStore, Stored};
use crate::rollout::{
    AbortReason, Command, CommandRefused, ConfigRefused, Observation, Outcome, Phase, RolloutState,
    Transition, TransitionKind,
};

pub mod adoption;

pub use adoption::Adoption;

/// Why the state at startup cannot be made ([`ControlState::restore_with`]).
#[derive(Debug)]
pub enum RestoreError {
    /// The config is refused as a reload would be: it brings another canary
    /// revision while its route is behind a promotion. Nothing is written.
    Config(Diagnostics),
    /// The state directory cannot be used, or a state cannot be written.
    State(Vec<Diagnostic>),
}

/// How often a state that took effect without being written (an abort
/// the store refused) is written again.
const UNPERSISTED_RETRY_MS: u64 = 1_000;

/// Everything control decides, guarded by one lock in
/// [`Process`](crate::process::Process).
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
    pub(crate) last_judged: BTreeMap<String, u64>,
    /// The analysis runs a route's last decision wants, while that
    /// decision is not in force because it could not be written: they go
    /// on measuring until the route is decided again, rather than end at
    /// the next tick and start afresh at the next judgement.
    pub(super) unwritten_decision_runs: BTreeMap<String, Vec<RunKey>>,
    /// Where state is persisted: fixed at startup.
    store: Arc<dyn StateStore>,
    /// The CanaryRoutes in force, compiled (after the file's routes).
    pub(super) cluster_routes: Vec<Route>,
    /// Whether this replica leads the CanaryRoutes' rollouts.
    pub(super) cluster_leading: bool,
    /// Why the leader cannot judge CanaryRoutes now, if it cannot: it
    /// counts too few replicas (`counters from 1 of 3 replicas; need 2`).
    pub(super) cluster_coverage_short: Option<String>,
    /// The routes of the Gateway API's HTTPRoutes, served after every other.
    pub(super) gateway_routes: Vec<weir_config::RouteSnapshot>,
    /// The file's config with the CanaryRoutes appended: every route served.
    effective: Config,
    /// Webhook calls and notifications; `None` until the process sets them
    /// (nothing is called or sent before).
    hooks: Option<Arc<crate::webhooks::Hooks>>,
    /// Transitions made before the hooks were set (at startup), announced
    /// when they are.
    unannounced: Vec<(Transition, RolloutState)>,
    /// Routes whose kept state is not in the store (an abort that took
    /// effect though its write failed): when the write is tried again (ms
    /// since the epoch), and why the last one failed, which the route's
    /// status tells.
    pub(crate) unpersisted: BTreeMap<String, (u64, String)>,
    /// The analysis template runs of every route.
    pub analysis_runs: AnalysisRuns,
    /// The live events of transitions, verdicts and rates (see
    /// [`super::events`]).
    pub events: super::events::EventBus,
}

// === impl ControlState ===

impl ControlState {
    /// The state at startup, with the rollout states in the config's
    /// `stateDir` (created if needed); see [`Self::restore_with`].
    ///
    /// # Errors
    /// As [`Self::restore_with`], and [`RestoreError::State`] when the state
    /// directory cannot be used.
    pub fn restore(
        loaded: Loaded,
        resolved: Resolved,
        now: u64,
    ) -> Result<ControlState, RestoreError> {
        let state_dir = loaded.config().state_dir.clone();
        match FileStore::open(state_dir.clone()) {
            Ok(store) => ControlState::restore_with(loaded, resolved, Arc::new(store), now),
            Err(error) => Err(RestoreError::State(vec![loaded.document.diagnostic(
                "stateDir",
                format!(
                    "cannot create the state directory {}: {error}",
                    state_dir.display()
                ),
            )])),
        }
    }

    /// The state at startup, with the file routes' states in the config's
    /// `stateDir` and the CanaryRoutes' in `cluster` (their status), when
    /// weir follows a cluster.
    ///
    /// # Errors
    /// As [`Self::restore`].
    pub fn restore_beside(
        loaded: Loaded,
        resolved: Resolved,
        cluster: Option<Arc<dyn StateStore>>,
        now: u64,
    ) -> Result<ControlState, RestoreError> {
        let Some(cluster) = cluster else {
            return ControlState::restore(loaded, resolved, now);
        };
        let state_dir = loaded.config().state_dir.clone();
        match FileStore::open(state_dir.clone()) {
            Ok(files) => {
                let store = persist::RoutedStore::new(Arc::new(files), cluster);
                ControlState::restore_with(loaded, resolved, Arc::new(store), now)
            }
            Err(error) => Err(RestoreError::State(vec![loaded.document.diagnostic(
                "stateDir",
                format!(
                    "cannot create the state directory {}: {error}",
                    state_dir.display()
                ),
            )])),
        }
    }

    /// The state at startup: persisted rollouts are restored from `store`
    /// (an unreadable state holds its route at weight 0), new ones started,
    /// all reconciled with the config and persisted. Runs before anything is
    /// served (the store is called on the current thread).
    ///
    /// # Errors
    /// [`RestoreError::Config`] when the config is behind a promotion, as a
    /// reload would be refused (the store is left as it was);
    /// [`RestoreError::State`] when a state cannot be written.
    pub fn restore_with(
        loaded: Loaded,
        resolved: Resolved,
        store: Arc<dyn StateStore>,
        now: u64,
    ) -> Result<ControlState, RestoreError> {
        let config = loaded.config();
        // Every route is decided before anything is written, so a refused
        // config leaves the store as it was.
        let mut decided = Vec::new();
        let mut refusals = Vec::new();
        for (index, route) in config.routes.iter().enumerate() {
            if route.strategy.is_none() {
                // A route whose strategy left the config while it was
                // Promoted: refused as at a reload, not a silent rollback.
                if let Stored::Found(state) = store.load(&route.name)
                    && let Err(refused) = state.reconcile(route, now)
                {
                    refusals.push(refused_diagnostic(&loaded, index, &refused));
                }
                continue;
            }
            // (`promotion_refusals` makes the same checks for `weir
            // validate`.)
            let _route = route_span(&route.name).entered();
            let (outcome, unreadable) = match store.load(&route.name) {
                Stored::Found(state) => match state.reconcile(route, now) {
                    Ok(outcome) => (outcome, false),
                    Err(refused) => {
                        refusals.push(refused_diagnostic(&loaded, index, &refused));
                        continue;
                    }
                },
                Stored::Missing => (RolloutState::start(route, now), false),
                Stored::Unreadable(error) => {
                    tracing::error!(%error, "rollout state unreadable; holding the canary at weight 0");
                    let state = RolloutState::unreadable(route, now, &error);
                    let outcome = Outcome {
                        state,
                        transition: None,
                    };
                    (outcome, true)
                }
            };
            decided.push((route.name.to_string(), outcome, unreadable));
        }
        if !refusals.is_empty() {
            return Err(RestoreError::Config(Diagnostics(refusals)));
        }
        for warning in promoted_routes_missing(config, &*store) {
            tracing::warn!("{warning}");
        }
        let mut rollouts = BTreeMap::new();
        let mut problems = Vec::new();
        let mut unannounced = Vec::new();
        for (route, outcome, unreadable) in decided {
            let _route = route_span(&route).entered();
            if unreadable && let Some(aside) = store.set_aside(&route, now) {
                tracing::warn!(file = %aside, "unreadable state file kept aside");
            }
            if let Err(error) = store.save(&outcome.state) {
                problems.push(loaded.document.diagnostic(
                    "stateDir",
                    format!(
                        "cannot write the state of route {route} in {}: {error}",
                        store.location()
                    ),
                ));
            }
            if let Some(t) = &outcome.transition {
                tracing::info!(kind = ?t.kind, "{}", t.message);
                unannounced.push((t.clone(), outcome.state.clone()));
            }
            rollouts.insert(route, outcome.state);
        }
        if !problems.is_empty() {
            return Err(RestoreError::State(problems));
        }
        let effective = loaded.config().clone();
        Ok(ControlState {
            loaded,
            resolved,
            rollouts,
            history: BTreeMap::new(),
            aborts: BTreeMap::new(),
            last_judged: BTreeMap::new(),
            unwritten_decision_runs: BTreeMap::new(),
            store,
            cluster_routes: Vec::new(),
            cluster_leading: false,
            cluster_coverage_short: None,
            gateway_routes: Vec::new(),
            effective,
            hooks: None,
            unannounced,
            unpersisted: BTreeMap::new(),
            analysis_runs: AnalysisRuns::new(),
            events: super::events::EventBus::new(),
        })
    }

    /// Takes a reloaded config: each route with a strategy is reconciled
    /// (a new canary revision starts a rollout, a caught-up promotion ends
    /// one), the changes persisted (off the runtime threads), and only then
    /// the config adopted. The steps, for a caller that must not hold the
    /// control lock while states are written (a reload): the states of
    /// returning strategies are read ([`Self::returning_strategies`],
    /// [`adoption::load_returning`]), the adoption decided
    /// ([`Self::decide_adoption`]), written ([`Adoption::write`]) and kept
    /// ([`Self::keep_adoption`]).
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
        let returning = self.returning_strategies(loaded.config());
        let stored = adoption::load_returning(self.store(), returning, &loaded).await?;
        let adoption = self.decide_adoption(loaded, resolved, stored, now)?;
        adoption.write(self.store()).await?;
        self.keep_adoption(adoption);
        Ok(())
    }

    /// Calls webhooks and sends notifications through `hooks` from now on.
    /// The transitions made at startup are announced now.
    pub fn set_hooks(&mut self, hooks: Arc<crate::webhooks::Hooks>) {
        self.hooks = Some(hooks);
        let now = crate::process::now_ms();
        for (transition, state) in std::mem::take(&mut self.unannounced) {
            self.notify_hooks(&state.route, &transition, &state, now);
        }
    }

    /// The webhook side, once set.
    pub fn hooks(&self) -> Option<&Arc<crate::webhooks::Hooks>> {
        self.hooks.as_ref()
    }

    /// Announces a kept transition of `route` to its `event` and
    /// `post-rollout` hooks and to the notification receivers (spawned;
    /// never waits); a CanaryRoute's only on the leader.
    pub(super) fn notify_hooks(
        &self,
        route: &str,
        transition: &Transition,
        state: &RolloutState,
        now: u64,
    ) {
        let Some(hooks) = &self.hooks else { return };
        // A CanaryRoute is announced by its leader alone.
        if is_cluster_route(route) && !self.cluster_leading {
            return;
        }
        let config = self.config();
        if let Some(route) = config.routes.iter().find(|r| &*r.name == route) {
            hooks.announce(route, transition, state, &config.notifications, now);
        }
    }

    /// Rebuilds the routes served: the file's, then the CanaryRoutes.
    pub(super) fn rebuild_effective(&mut self) {
        let mut effective = self.loaded.config().clone();
        effective.routes.extend(self.cluster_routes.iter().cloned());
        self.effective = effective;
        // The calls of routes gone from the config go with them (a call
        // still running for one records itself when it ends, and is
        // forgotten at the next change of routes).
        if let Some(hooks) = &self.hooks {
            let live: std::collections::HashSet<&str> =
                self.effective.routes.iter().map(|r| &*r.name).collect();
            hooks.forget_other_routes(|name| live.contains(name));
        }
    }

    /// The config in force, with the CanaryRoutes among its routes.
    pub fn config(&self) -> &Config {
        &self.effective
    }

    /// The config file in force, without the CanaryRoutes.
    pub fn file_config(&self) -> &Config {
        self.loaded.config()
    }

    /// The snapshot for the config in force and the rollout weights.
    pub fn snapshot(&self) -> weir_config::Snapshot {
        let rollouts = &self.rollouts;
        let mut snapshot = self.resolved.compile(self.config(), &|name| {
            rollouts.get(name).and_then(RolloutState::route_override)
        });
        snapshot.routes.extend(self.gateway_routes.iter().cloned());
        snapshot
    }

    /// Persists `outcome.state` (when it is a transition) off the runtime
    /// threads, then keeps it. Returns whether the snapshot must be
    /// republished.
    async fn keep(&mut self, route: &str, outcome: Outcome) -> Result<bool, CommandError> {
        let written = write_outcome(self.store(), &outcome).await;
        self.apply(route, outcome, written)
    }

    /// Where states are persisted.
    pub fn store(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store)
    }

    /// Records a transition's side effects and keeps `outcome.state`, given
    /// the result of writing it (`Ok` when nothing needed writing). Returns
    /// whether the snapshot must be republished.
    ///
    /// If the write failed the old state stays, except for an abort, which
    /// takes effect anyway (a bad canary must not keep traffic because a
    /// disk is full).
    pub fn apply(
        &mut self,
        route: &str,
        outcome: Outcome,
        written: std::io::Result<()>,
    ) -> Result<bool, CommandError> {
        let _route = route_span(route).entered();
        let old_override = self
            .rollouts
            .get(route)
            .and_then(RolloutState::route_override);
        if let Some(transition) = &outcome.transition {
            if let Err(error) = written {
                let failed = CommandError::NotPersisted {
                    route: route.to_owned(),
                    error: error.to_string(),
                };
                if !matches!(transition.kind, TransitionKind::Aborted(_)) {
                    tracing::error!("{failed}; the transition is not applied");
                    let wanted = self
                        .strategy_of(route)
                        .map(|strategy| outcome.state.wanted_analysis_runs(strategy))
                        .unwrap_or_default();
                    let waiting = self
                        .unwritten_decision_runs
                        .entry(route.to_owned())
                        .or_default();
                    for (key, _) in wanted {
                        if !waiting.contains(&key) {
                            waiting.push(key);
                        }
                    }
                    // The status says why the rollout does not move (a
                    // timer's transition is tried again at every tick).
                    if let Some(kept) = self.rollouts.get_mut(route) {
                        kept.message =
                            format!("{failed}; not in force until it is: {}", transition.message);
                    }
                    return Err(failed);
                }
                tracing::error!(
                    "{failed}; aborting anyway, and writing the state again until it is written"
                );
                // A file route's state is tried again at the next tick,
                // then every second. A CanaryRoute's status is not: the
                // leader decides again from the status it reads (and a
                // write with an older resourceVersion must fail).
                if !is_cluster_route(route) {
                    let why = match &failed {
                        CommandError::NotPersisted { error, .. } => error.clone(),
                        other => other.to_string(),
                    };
                    self.unpersisted.insert(route.to_owned(), (0, why));
                }
            } else {
                self.unpersisted.remove(route);
            }
            // A transition in force: what an unwritten one wanted is
            // decided again from it.
            self.unwritten_decision_runs.remove(route);
            tracing::info!(
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
            self.notify_hooks(route, transition, &outcome.state, crate::process::now_ms());
        }
        let changed = outcome.state.route_override() != old_override;
        let previous = self.rollouts.insert(route.to_owned(), outcome.state);
        self.note_runs_in_force(route);
        self.announce(route, outcome.transition.as_ref(), previous.as_ref());
        Ok(changed)
    }

    /// Notes, for the analysis runs of `route`, which of them the state in
    /// force wants (see [`AnalysisRuns::entered`]).
    fn note_runs_in_force(&self, route: &str) {
        if let Some(strategy) = self.strategy_of(route) {
            self.note_runs_wanted_under(route, strategy);
        }
    }

    /// The strategy of `route` in the config in force, if it has one.
    fn strategy_of(&self, route: &str) -> Option<&weir_config::Strategy> {
        self.effective
            .routes
            .iter()
            .find(|r| &*r.name == route)
            .and_then(|r| r.strategy.as_ref())
    }

    /// [`Self::note_runs_in_force`] for `route`, whose strategy is
    /// `strategy`.
    fn note_runs_wanted_under(&self, route: &str, strategy: &weir_config::Strategy) {
        if let Some(in_force) = self.rollouts.get(route) {
            let keys: Vec<_> = in_force
                .wanted_analysis_runs(strategy)
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            self.analysis_runs.entered(route, &keys);
        }
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
        let outcome = self.decide_command(route, command, now)?;
        self.keep(route, outcome).await
    }

    /// What operator command `command` on `route` would do; changes nothing.
    /// Write the outcome ([`write_outcome`]), then [`Self::apply`] it.
    ///
    /// # Errors
    /// 404 for an unknown route, 409 for a command that does not apply.
    pub fn decide_command(
        &self,
        route: &str,
        command: Command,
        now: u64,
    ) -> Result<Outcome, CommandError> {
        let Some(config_route) = self.config().routes.iter().find(|r| &*r.name == route) else {
            return Err(CommandError::NoRoute {
                route: route.to_owned(),
            });
        };
        let Some(state) = self.rollouts.get(route) else {
            return Err(CommandError::Refused(CommandRefused::without_strategy(
                config_route,
                command,
            )));
        };
        state
            .command(command, config_route, now)
            .map_err(CommandError::Refused)
    }

    /// Marks the kept state of every file route as not in the store (its
    /// directory was removed under the running process and made again
    /// empty): [`Self::unpersisted_due`] has them written again at once.
    pub fn states_lost(&mut self) {
        for route in self
            .rollouts
            .keys()
            .filter(|route| !is_cluster_route(route))
        {
            self.unpersisted.entry(route.clone()).or_insert_with(|| {
                (
                    0,
                    "the state directory was removed under the running process".to_owned(),
                )
            });
        }
    }

    /// Keeps a sample of every route's counters from `own` at `now`, when
    /// the state is settled and the control loop samples only once a
    /// second: a read of the status then counts up to its own moment, as
    /// when the loop samples every 100 ms. The caller knows there is no
    /// cluster (whose leader judges on every replica's counters).
    pub fn sample_if_settled(&mut self, own: &dyn Fn(&str, Role) -> RoleCounts, now: u64) {
        if !self.is_settled() {
            return;
        }
        for route in &self.effective.routes {
            keep_sample(&mut self.history, route, own, now);
        }
    }

    /// Whether nothing the control loop does here is due sooner than its
    /// slow sample (see `control_loop`): no rollout is under way or
    /// switching back, no webhook call runs or waits to be taken, no state
    /// waits to be written again, and nobody follows the event stream
    /// (whose `samples` come every second from the counters' history).
    pub fn is_settled(&self) -> bool {
        let rollouts_settled = self.effective.routes.iter().all(|route| {
            let (Some(strategy), Some(state)) = (&route.strategy, self.rollouts.get(&*route.name))
            else {
                return true;
            };
            !is_ticked(state, strategy)
        });
        rollouts_settled
            && self.unpersisted.is_empty()
            && self.hooks.as_ref().is_none_or(|hooks| hooks.is_idle())
            && self.events.readers() == 0
    }

    /// The kept states that are not in the store and are due to be
    /// written again at `now`; write them, then hand the results to
    /// [`Self::persisted_again`].
    pub fn unpersisted_due(&mut self, now: u64) -> Vec<RolloutState> {
        let rollouts = &self.rollouts;
        self.unpersisted
            .retain(|route, _| rollouts.contains_key(route));
        self.unpersisted
            .iter()
            .filter(|&(_, (due, _))| *due <= now)
            .filter_map(|(route, _)| rollouts.get(route).cloned())
            .collect()
    }

    /// Records the results of writing `states` again: a written one is
    /// persisted at last; another is tried again later.
    pub fn persisted_again(
        &mut self,
        states: &[RolloutState],
        written: Vec<std::io::Result<()>>,
        now: u64,
    ) {
        for (state, result) in states.iter().zip(written) {
            match result {
                Ok(()) => {
                    self.unpersisted.remove(&state.route);
                    tracing::info!(
                        route = state.route.as_str(),
                        "the state of route {} is written to {} at last ({:?}, weight {})",
                        state.route,
                        self.store.location(),
                        state.phase,
                        state.canary_weight
                    );
                }
                Err(error) => {
                    self.unpersisted.insert(
                        state.route.clone(),
                        (now.saturating_add(UNPERSISTED_RETRY_MS), error.to_string()),
                    );
                    tracing::warn!(
                        route = state.route.as_str(),
                        %error,
                        "the state of route {} is still not written to {}",
                        state.route,
                        self.store.location()
                    );
                }
            }
        }
    }

    /// Samples the proxy's counters and judges every route whose interval
    /// has passed; the transitions are written (off the runtime threads)
    /// before they are kept. Returns whether to republish.
    pub async fn tick(&mut self, sample: impl Fn(&str, Role) -> RoleCounts, now: u64) -> bool {
        let judged = self.judge(sample, now);
        let written = write_judged(self.store(), &judged).await;
        self.apply_judged(judged, written)
    }

    /// Keeps the outcomes of [`Self::judge`], given the results of
    /// [`write_judged`]. Returns whether to republish.
    pub fn apply_judged(
        &mut self,
        judged: Vec<(String, Outcome)>,
        written: Vec<std::io::Result<()>>,
    ) -> bool {
        let mut written = written.into_iter();
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
    /// passed; no I/O. Write the outcomes ([`write_judged`]), then keep them
    /// ([`Self::apply_judged`]).
    pub fn judge(
        &mut self,
        sample: impl Fn(&str, Role) -> RoleCounts,
        now: u64,
    ) -> Vec<(String, Outcome)> {
        self.judge_counted(&sample, &sample, now)
    }

    /// [`Self::judge`], reading a CanaryRoute's counts from `summed` (every
    /// replica's) while this replica leads and from `own` otherwise, every
    /// other route's from `own`. Chosen here, under the same hold of the
    /// control lock as the leadership (whose change clears the histories):
    /// a history never starts with one replica's totals and goes on with
    /// every replica's, which would judge a window of traffic long past.
    pub fn judge_counted(
        &mut self,
        own: &dyn Fn(&str, Role) -> RoleCounts,
        summed: &dyn Fn(&str, Role) -> RoleCounts,
        now: u64,
    ) -> Vec<(String, Outcome)> {
        // Borrow the config's routes field by field (no copy of the config
        // every 100 ms).
        let mut judged = Vec::new();
        for route in &self.effective.routes {
            let name: &str = &route.name;
            let sample = if is_cluster_route(name) && self.cluster_leading {
                summed
            } else {
                own
            };
            keep_sample(&mut self.history, route, sample, now);

            // Only the leader judges CanaryRoutes; the others follow its status.
            if is_cluster_route(name) && !self.cluster_leading {
                continue;
            }
            let (Some(strategy), Some(state)) = (&route.strategy, self.rollouts.get(name)) else {
                continue;
            };
            if !is_ticked(state, strategy) {
                continue;
            }
            let interval = duration_ms(strategy.analysis.interval);
            let mut last = self.last_judged.get(name).copied().unwrap_or(0);
            // A blue-green preview lasts at least one interval from its
            // start, a first start's too (nothing judged before it).
            if state.blue_green_stage(strategy) == Some(crate::rollout::BlueGreenStage::Preview) {
                last = last.max(state.rollout_started_ms);
            }
            // A timed pause ends at its deadline (at this 100 ms sample),
            // not at the first judgement after it: up to an interval later.
            let pause_ended = state
                .pause_deadline_ms
                .is_some_and(|deadline| deadline <= now && deadline > last);
            if now.saturating_sub(last) < interval && !pause_ended {
                continue;
            }
            self.last_judged.insert(name.to_owned(), now);
            // Decided again now: what an unwritten decision wanted is
            // wanted again or not at all.
            self.unwritten_decision_runs.remove(name);
            let since = now
                .saturating_sub(duration_ms(strategy.analysis.window))
                .max(state.rollout_started_ms);
            // Without the counters of two thirds of the replicas, a
            // CanaryRoute's judgement is inconclusive.
            let observation = match (self.history.get(name), &self.cluster_coverage_short) {
                (_, Some(short)) if is_cluster_route(name) => Observation {
                    unjudgeable: Some(short.clone()),
                    ..empty_observation()
                },
                (Some(h), _) => h.observation(since),
                (None, _) => empty_observation(),
            };
            let outcome = state.tick(route, now, &observation);
            if let Some(judgement) = &outcome.state.last_judgement {
                let _route = route_span(name).entered();
                tracing::debug!(verdict = ?judgement.verdict, "canary judged");
            }
            judged.push((name.to_owned(), outcome));
        }
        self.follow_analysis_runs(&mut judged, now);
        judged
    }

    /// Starts the analysis template runs each rollout wants, ends the
    /// others, and hands every wanted run's phase to its rollout (after
    /// this tick's judgement, in `judged`). Reads the runs' state only:
    /// measurements happen in their own tasks.
    fn follow_analysis_runs(&self, judged: &mut Vec<(String, Outcome)>, now: u64) {
        let mut names: Vec<&str> = Vec::with_capacity(self.effective.routes.len());
        for route in &self.effective.routes {
            let name: &str = &route.name;
            names.push(name);
            // Runs this replica must not make (any more) are ended, not
            // left measuring: another replica leads, or a reload took the
            // strategy away.
            if is_cluster_route(name) && !self.cluster_leading {
                self.analysis_runs
                    .keep_only(name, &[], now, "led by another replica");
                continue;
            }
            let Some(strategy) = &route.strategy else {
                self.analysis_runs
                    .keep_only(name, &[], now, "over: the route has no strategy");
                continue;
            };
            let position = judged.iter().position(|(n, _)| n == name);
            let Some(mut state) = position
                .map(|i| judged[i].1.state.clone())
                .or_else(|| self.rollouts.get(name).cloned())
            else {
                self.analysis_runs.keep_only(name, &[], now, "over");
                continue;
            };
            let mut transition = None;
            let wanted = state.wanted_analysis_runs(strategy);
            for (key, analysis) in &wanted {
                let (phase, message) = self
                    .analysis_runs
                    .ensure(name, key, analysis, state.held, now);
                // A run that passed while the decision to enter its step
                // could not be written completes that step only once the
                // step is in force, with a transition of its own (a failure
                // aborts at once, written or not).
                if phase == RunPhase::Successful && !self.analysis_runs.is_entered(name, key) {
                    continue;
                }
                let outcome = state.on_analysis_result(route, key, phase, &message, now);
                if phase == RunPhase::Inconclusive && outcome.state.held {
                    self.analysis_runs.held_the_rollout(name, key);
                }
                if outcome.transition.is_some() {
                    transition = outcome.transition;
                }
                state = outcome.state;
            }
            // The runs the state in force wants, not only a decision still
            // to be written (a state restored at start has no `apply`).
            self.note_runs_wanted_under(name, strategy);
            // The state may have moved on (a step completed, an abort).
            let mut still: Vec<_> = state
                .wanted_analysis_runs(strategy)
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            // A decision not written yet is made again at the route's next
            // judgement; its runs wait for it while the same rollout goes
            // on (not one a reload or a retry started since).
            if is_ticked(&state, strategy)
                && let Some(unwritten) = self.unwritten_decision_runs.get(name)
            {
                let same_rollout = |key: &&RunKey| {
                    key.rollout_seq == state.rollout_seq
                        && key.rollout_started_ms == state.rollout_started_ms
                };
                still.extend(unwritten.iter().filter(same_rollout).cloned());
            }
            self.analysis_runs
                .keep_only(name, &still, now, state.phase.as_str());
            match (position, transition) {
                (Some(i), Some(t)) => {
                    judged[i].1 = Outcome {
                        state,
                        transition: Some(t),
                    }
                }
                (Some(i), None) => judged[i].1.state = state,
                (None, Some(t)) => judged.push((
                    name.to_owned(),
                    Outcome {
                        state,
                        transition: Some(t),
                    },
                )),
                (None, None) => {}
            }
        }
        self.analysis_runs.forget_other_routes(&names);
    }
}

// === webhook gates ===

impl ControlState {
    /// The webhook answers that came in, as outcomes of the routes they
    /// are about (an answer about another rollout than the current one is
    /// dropped); no I/O. Write them ([`write_judged`]), then keep them
    /// ([`Self::apply_judged`]).
    pub fn answer_gates(&self, now: u64) -> Vec<(String, Outcome)> {
        let Some(hooks) = &self.hooks else {
            return Vec::new();
        };
        let mut states: BTreeMap<String, RolloutState> = BTreeMap::new();
        let mut changed: Vec<String> = Vec::new();
        let mut transitions: Vec<(String, Outcome)> = Vec::new();
        for answer in hooks.take_answers() {
            let Some(route) = self
                .config()
                .routes
                .iter()
                .find(|r| *r.name == answer.route)
            else {
                continue;
            };
            let Some(state) = states
                .get(&answer.route)
                .or_else(|| self.rollouts.get(&answer.route))
            else {
                continue;
            };
            if !crate::webhooks::answer_applies(&answer, state) {
                continue;
            }
            let outcome =
                state.on_gate_result(route, answer.kind, answer.passed, &answer.detail, now);
            if outcome.state == *state && outcome.transition.is_none() {
                continue;
            }
            if !changed.contains(&answer.route) {
                changed.push(answer.route.clone());
            }
            states.insert(answer.route.clone(), outcome.state.clone());
            if outcome.transition.is_some() {
                transitions.push((answer.route.clone(), outcome));
            }
        }
        // One outcome per route: several transitions of one route are kept
        // in order; a route whose answers only changed its message keeps
        // the last state.
        let mut out = transitions;
        for name in changed {
            if !out.iter().any(|(n, _)| *n == name) {
                if let Some(state) = states.remove(&name) {
                    out.push((
                        name,
                        Outcome {
                            state,
                            transition: None,
                        },
                    ));
                }
            }
        }
        out
    }

    /// Starts the webhook calls that are due (spawned; never waits). Only
    /// the leader calls the hooks of CanaryRoutes.
    pub fn schedule_hooks(&self, now: u64) {
        let Some(hooks) = &self.hooks else { return };
        for route in &self.config().routes {
            if route
                .strategy
                .as_ref()
                .is_none_or(|s| s.webhooks.hooks.is_empty())
            {
                continue;
            }
            if is_cluster_route(&route.name) && !self.cluster_leading {
                continue;
            }
            if let Some(state) = self.rollouts.get(&*route.name) {
                hooks.schedule(route, state, now);
            }
        }
    }
}

/// Whether the control loop ticks a rollout in `state` under `strategy`:
/// one under way, or a blue-green promotion, ticked for its message alone
/// as it counts down the switch-back window.
fn is_ticked(state: &RolloutState, strategy: &weir_config::Strategy) -> bool {
    let switching_back = state.phase == Phase::Promoted && strategy.blue_green.is_some();
    state.is_active() || switching_back
}

/// Adds to `route`'s counter history a sample of its counts from
/// `counts` at `now`, keeping its analysis window (30 s without a
/// strategy) and 2 s back.
fn keep_sample(
    history: &mut BTreeMap<String, History>,
    route: &Route,
    counts: &dyn Fn(&str, Role) -> RoleCounts,
    now: u64,
) {
    let name: &str = &route.name;
    let at = Sample {
        at_ms: now,
        stable: counts(name, Role::Stable),
        canary: counts(name, Role::Canary),
    };
    let keep_ms = route
        .strategy
        .as_ref()
        .map_or(30_000, |s| duration_ms(s.analysis.window))
        + 2_000;
    // No new key (an allocation) but for a route's first sample.
    match history.get_mut(name) {
        Some(history) => history.push(at, keep_ms),
        None => history
            .entry(name.to_owned())
            .or_default()
            .push(at, keep_ms),
    }
}

/// What `weir run` would refuse in `loaded` given the states kept in
/// `store`: a route behind a promotion (see [`ControlState::restore_with`]).
/// Reads the store, writes nothing.
pub fn promotion_refusals(loaded: &Loaded, store: &dyn StateStore, now: u64) -> Vec<Diagnostic> {
    let mut refusals = Vec::new();
    for (index, route) in loaded.config().routes.iter().enumerate() {
        if let Stored::Found(state) = store.load(&route.name)
            && let Err(refused) = state.reconcile(route, now)
        {
            refusals.push(refused_diagnostic(loaded, index, &refused));
        }
    }
    refusals
}

/// Warnings for states in `store` of routes the config no longer has that
/// were `Promoted` with the config behind: a route renamed or removed
/// while weir was stopped (a reload refuses that), whose requests no
/// longer reach the promoted revision. Said at a start and by `weir
/// validate`; a start is not refused for it, as the config cannot name
/// the route's old hosts and prefix to catch up. Reads the store.
pub fn promoted_routes_missing(
    config: &weir_config::Config,
    store: &dyn StateStore,
) -> Vec<String> {
    let mut missing: Vec<String> = store
        .file_routes()
        .into_iter()
        .filter(|name| !config.routes.iter().any(|r| *r.name == **name))
        .filter_map(|name| {
            let Stored::Found(state) = store.load(&name) else {
                return None;
            };
            if state.phase != crate::rollout::Phase::Promoted {
                return None;
            }
            let promoted = state.promoted_name();
            Some(format!(
                "the state of route {name} in {} says it was Promoted to {promoted} \
                 (stable.revision still {}), and the config has no route {name}: renamed or \
                 removed while weir was stopped, its requests no longer reach {promoted}; if \
                 that was not meant, add the route back with stable.revision {promoted}",
                store.location(),
                state.stable_revision,
            ))
        })
        .collect();
    missing.sort();
    missing
}

/// The diagnostic of a config refused because route `index` is behind a
/// promotion: the same at a reload and at a start.
fn refused_diagnostic(loaded: &Loaded, index: usize, refused: &ConfigRefused) -> Diagnostic {
    loaded.document.diagnostic(
        &format!("routes[{index}].{}", refused.key()),
        refused.to_string(),
    )
}

/// Writes `outcome.state` to `store` when it is a transition (off the
/// runtime threads); `Ok` when there is nothing to write.
pub async fn write_outcome(store: Arc<dyn StateStore>, outcome: &Outcome) -> std::io::Result<()> {
    if outcome.transition.is_none() {
        return Ok(());
    }
    persist::save_off_runtime(store, vec![outcome.state.clone()])
        .await
        .pop()
        .unwrap_or(Ok(()))
}

/// Writes the transitions among `judged` to `store` (off the runtime
/// threads), one result per transition, in order.
pub async fn write_judged(
    store: Arc<dyn StateStore>,
    judged: &[(String, Outcome)],
) -> Vec<std::io::Result<()>> {
    let changed: Vec<RolloutState> = judged
        .iter()
        .filter(|(_, o)| o.transition.is_some())
        .map(|(_, o)| o.state.clone())
        .collect();
    persist::save_off_runtime(store, changed).await
}
