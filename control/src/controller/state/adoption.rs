//! Adopting a reloaded config in three steps, so that a reload holds the
//! control lock only to decide and to keep, never while states are written:
//! [`ControlState::decide_adoption`] (no I/O), [`Adoption::write`] (the
//! store, off the runtime, without the lock) and
//! [`ControlState::keep_adoption`]. The caller holds the process's
//! transition lock from the first step to the last, so no other change of
//! rollout state comes in between.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_config::{Config, Diagnostic};

use super::{ControlState, refused_diagnostic};
use crate::controller::cluster_routes::is_cluster_route;
use crate::controller::route_span;
use crate::load::{Loaded, Resolved};
use crate::persist::{self, StateStore, Stored};
use crate::rollout::{Outcome, Phase, RolloutState};

/// A reloaded config, decided: the rollout state of every route with a
/// strategy, and the ended states of routes that lost theirs. Nothing is
/// changed until it is written and kept.
#[derive(Debug)]
pub struct Adoption {
    loaded: Loaded,
    resolved: Resolved,
    /// One per route with a strategy in the new config.
    outcomes: Vec<Outcome>,
    /// Routes whose outcome changes nothing of the rollout but what its
    /// state file holds of the config (its stable revision, a step index
    /// clamped to fewer steps): written with the transitions, so the file
    /// says what the status does.
    restated: Vec<String>,
    /// Routes that keep their name but lose their strategy: their rollout ends.
    ended: Vec<Outcome>,
}

/// Reads the persisted state of each route in `routes` (off the runtime
/// threads): a strategy that comes back finds its route's last state
/// (sequence, promoted revision).
///
/// # Errors
/// A diagnostic of `loaded` when a state could not be asked for: deciding
/// without it would start the route's rollout over and write that start
/// over its state.
pub async fn load_returning(
    store: Arc<dyn StateStore>,
    routes: Vec<String>,
    loaded: &Loaded,
) -> Result<BTreeMap<String, Stored>, Vec<Diagnostic>> {
    let mut stored = BTreeMap::new();
    for route in routes {
        match persist::load_off_runtime(Arc::clone(&store), route.clone()).await {
            Ok(found) => {
                stored.insert(route, found);
            }
            Err(error) => {
                let message = format!("cannot read the rollout state of route {route}: {error}");
                return Err(vec![loaded.document.diagnostic("stateDir", message)]);
            }
        }
    }
    Ok(stored)
}

// === impl ControlState ===

impl ControlState {
    /// The routes of `config` with a strategy and no rollout state in
    /// memory: their persisted state is read before the adoption is decided.
    pub fn returning_strategies(&self, config: &Config) -> Vec<String> {
        config
            .routes
            .iter()
            .filter(|r| r.strategy.is_some() && !self.rollouts.contains_key(&*r.name))
            .map(|r| r.name.to_string())
            .collect()
    }

    /// What adopting `loaded` does to the rollouts, given the persisted
    /// states of the returning strategies (`stored`); no I/O, changes
    /// nothing. A route missing from `stored` starts afresh.
    ///
    /// # Errors
    /// Diagnostics naming the change needed: a config that brings another
    /// canary revision while its route is behind a promotion.
    pub fn decide_adoption(
        &self,
        loaded: Loaded,
        resolved: Resolved,
        mut stored: BTreeMap<String, Stored>,
        now: u64,
    ) -> Result<Adoption, Vec<Diagnostic>> {
        let mut outcomes = Vec::new();
        let mut restated = Vec::new();
        let mut problems = Vec::new();
        for (index, route) in loaded.config().routes.iter().enumerate() {
            if route.strategy.is_none() {
                continue;
            }
            let returning = match self.rollouts.get(&*route.name) {
                Some(state) => Some(state.clone()),
                None => match stored.remove(&*route.name) {
                    Some(Stored::Found(state)) => Some(*state),
                    Some(Stored::Missing | Stored::Unreadable(_)) | None => None,
                },
            };
            let reconciled = match &returning {
                Some(state) => state.reconcile(route, now),
                None => Ok(RolloutState::start(route, now)),
            };
            match reconciled {
                Ok(outcome) => {
                    if outcome.transition.is_none()
                        && returning.is_some_and(|before| !outcome.state.writes_as(&before))
                    {
                        restated.push(outcome.state.route.clone());
                    }
                    outcomes.push(outcome);
                }
                Err(refused) => problems.push(refused_diagnostic(&loaded, index, &refused)),
            }
        }
        // A route that keeps its name but loses its strategy ends its rollout;
        // the ended state is written so a restart does not resurrect it. One
        // that was Promoted with the config behind is refused instead: it
        // would silently go back to the old revision.
        let mut ended = Vec::new();
        for (name, state) in &self.rollouts {
            let Some((index, route)) = loaded
                .config()
                .routes
                .iter()
                .enumerate()
                .find(|(_, r)| &*r.name == name.as_str())
            else {
                // A route removed, or renamed, while Promoted with the
                // config behind: renamed, it would start its steps again
                // on the old revision; removed, its requests would leave
                // the promoted revision with nothing said. Taken when a
                // route of the file takes its hosts and prefix with the
                // promoted revision as stable (renamed and caught up).
                let promoted = state.promoted_name();
                if state.phase == Phase::Promoted
                    && !is_cluster_route(name)
                    && !self.taken_over(name, loaded.config(), &promoted)
                {
                    problems.push(loaded.document.diagnostic(
                        "routes",
                        format!(
                            "route {name} is Promoted to {promoted} (its stable.revision is \
                             still {stable}) and the file no longer has it: set its \
                             stable.revision to {promoted} first, then remove or rename it (a \
                             route with its hosts and pathPrefix and stable.revision \
                             {promoted} is taken as it renamed)",
                            stable = state.stable_revision,
                        ),
                    ));
                }
                continue;
            };
            if route.strategy.is_some() {
                continue;
            }
            match state.reconcile(route, now) {
                Ok(outcome) => ended.push(outcome),
                Err(refused) => problems.push(refused_diagnostic(&loaded, index, &refused)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Adoption {
            loaded,
            resolved,
            outcomes,
            restated,
            ended,
        })
    }

    /// Whether a route of `config` matches the requests route `name` of
    /// the config in force matched (the same hosts and `pathPrefix`) with
    /// `promoted` as its stable revision: `name` renamed, caught up with
    /// its promotion.
    fn taken_over(&self, name: &str, config: &Config, promoted: &str) -> bool {
        let Some(old) = self.config().routes.iter().find(|r| &*r.name == name) else {
            return false;
        };
        config.routes.iter().any(|r| {
            r.hosts == old.hosts
                && r.path_prefix == old.path_prefix
                && *r.stable.revision == *promoted
        })
    }

    /// Makes a written adoption the config and rollouts in force, and logs
    /// its transitions.
    pub fn keep_adoption(&mut self, adoption: Adoption) {
        let Adoption {
            loaded,
            resolved,
            outcomes,
            ended,
            ..
        } = adoption;
        for outcome in ended {
            if let Some(t) = &outcome.transition {
                let _route = route_span(&outcome.state.route).entered();
                tracing::info!(kind = ?t.kind, "{}", t.message);
            }
        }
        let mut rollouts = BTreeMap::new();
        let mut announced = Vec::new();
        let mut adopted = Vec::new();
        for outcome in outcomes {
            if let Some(t) = &outcome.transition {
                let _route = route_span(&outcome.state.route).entered();
                tracing::info!(kind = ?t.kind, weight = %t.canary_weight, "{}", t.message);
                announced.push((t.clone(), outcome.state.clone()));
                adopted.push((outcome.state.route.clone(), t.clone()));
            }
            rollouts.insert(outcome.state.route.clone(), outcome.state);
        }
        // The CanaryRoutes' states follow the cluster, not the file.
        for (name, state) in &self.rollouts {
            if is_cluster_route(name) {
                rollouts.insert(name.clone(), state.clone());
            }
        }
        let names: Vec<String> = loaded
            .config()
            .routes
            .iter()
            .chain(&self.cluster_routes)
            .map(|r| r.name.to_string())
            .collect();
        self.history.retain(|name, _| names.contains(name));
        self.last_judged
            .retain(|name, _| rollouts.contains_key(name));
        self.unwritten_decision_runs
            .retain(|name, _| rollouts.contains_key(name));
        self.rollouts = rollouts;
        self.loaded = loaded;
        self.resolved = resolved;
        self.rebuild_effective();
        if let Some(hooks) = self.hooks() {
            hooks.notifier.sync(&self.config().notifications);
        }
        let now = crate::process::now_ms();
        for (transition, state) in announced {
            self.notify_hooks(&state.route, &transition, &state, now);
        }
        self.announce_adopted(&adopted);
    }
}

// === impl Adoption ===

impl Adoption {
    /// The config being adopted.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// Writes the states that change to `store`, off the runtime threads;
    /// call it without holding the control lock. The ended rollouts are
    /// written too, but a failure there is only logged: the route serves
    /// its fixed split either way.
    ///
    /// # Errors
    /// A diagnostic naming the route whose state cannot be persisted; the
    /// adoption must then not be kept.
    pub async fn write(&self, store: Arc<dyn StateStore>) -> Result<(), Vec<Diagnostic>> {
        let changed: Vec<RolloutState> = self
            .outcomes
            .iter()
            .filter(|o| o.transition.is_some() || self.restated.contains(&o.state.route))
            .map(|o| o.state.clone())
            .collect();
        let written = persist::save_off_runtime(Arc::clone(&store), changed.clone()).await;
        for (state, result) in changed.iter().zip(written) {
            if let Err(error) = result {
                return Err(vec![self.loaded.document.diagnostic(
                    "stateDir",
                    format!(
                        "cannot persist the state of route {} in {}: {error}",
                        state.route,
                        store.location()
                    ),
                )]);
            }
        }
        let ended: Vec<RolloutState> = self.ended.iter().map(|o| o.state.clone()).collect();
        let written = persist::save_off_runtime(store, ended.clone()).await;
        for (state, result) in ended.iter().zip(written) {
            if let Err(error) = result {
                let _route = route_span(&state.route).entered();
                tracing::warn!(%error, "cannot persist the end of the rollout");
            }
        }
        Ok(())
    }
}
