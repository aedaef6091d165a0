//! The CanaryRoutes of the cluster beside the routes of the file: compiled
//! routes come in from discovery, their rollout states from the status the
//! leader writes. Only the leader decides (starts rollouts, acts on the
//! command inputs, judges); every other replica takes each state as the
//! status says, so that all serve the leader's weight.
//!
//! Route names tell the two kinds apart: a CanaryRoute is `NAMESPACE/NAME`,
//! a file route never has a `/`.

use weir_config::Route;

use super::ControlState;
use super::route_span;
use crate::persist::Stored;
use crate::rollout::{Command, Outcome, Phase, RolloutState, Transition};

/// Whether `route` names a CanaryRoute (`NAMESPACE/NAME`).
pub fn is_cluster_route(route: &str) -> bool {
    route.contains('/')
}

/// What to do with the state of one CanaryRoute.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterDecision {
    /// Take this state as it is: nothing to write.
    Keep(RolloutState),
    /// Write this outcome (the leader's decision), then keep it.
    Write(Outcome),
    /// The route has no rollout state (no strategy, or no status yet on a
    /// replica that does not lead).
    Drop,
}

/// The status seen for a route and what it asks for.
#[derive(Debug)]
pub struct Observed {
    /// The state the status holds.
    pub stored: Stored,
    /// The commands its inputs ask for, in order.
    pub inputs: Vec<Command>,
    /// Whether the status says the route is not served, from a time it
    /// was not: the leader writes its state again, which sets `Ready`.
    pub marked_not_served: bool,
    /// Whether this replica's guardrail aborted the route and could not
    /// write its `abort` input: the local abort stands over the status's
    /// older state of the same rollout.
    pub aborted_here: bool,
}

/// Whether two states put the rollout at the same place (what the status
/// carries): a state seen in the status that matches the local one changes
/// nothing, so the local judgement history and evidence stay.
pub fn same_position(a: &RolloutState, b: &RolloutState) -> bool {
    a.phase == b.phase
        && a.step_index == b.step_index
        && a.canary_weight == b.canary_weight
        && a.rollout_seq == b.rollout_seq
        && a.canary_revision == b.canary_revision
        && a.stable_revision == b.stable_revision
        && a.held == b.held
        && a.pause_deadline_ms == b.pause_deadline_ms
        && a.pause_remaining_ms == b.pause_remaining_ms
        && a.abort_reason == b.abort_reason
}

// === impl ControlState ===

impl ControlState {
    /// The CanaryRoutes in force, compiled.
    pub fn cluster_routes(&self) -> &[Route] {
        &self.cluster_routes
    }

    /// Whether this replica leads the CanaryRoutes' rollouts.
    pub fn is_leading(&self) -> bool {
        self.cluster_leading
    }

    /// What `routes` (the CanaryRoutes compiled now) and the statuses seen
    /// (`observe`) mean for each route's state, for a replica that leads
    /// or not; changes nothing. Write the [`ClusterDecision::Write`]s, then
    /// [`Self::apply_cluster`].
    pub fn decide_cluster(
        &self,
        routes: &[Route],
        leading: bool,
        observe: &dyn Fn(&str) -> Observed,
        now: u64,
    ) -> Vec<(String, ClusterDecision)> {
        let mut decisions = Vec::new();
        for route in routes {
            let name: &str = &route.name;
            let local = self.rollouts.get(name);
            let observed = observe(name);
            // A route without a strategy has no rollout, but one it had is
            // ended (or, Promoted with the spec behind, held) as for a route
            // with one, and its status says so.
            let had_rollout = |state: &RolloutState| state.phase != Phase::Healthy;
            let ran = local.is_some_and(had_rollout)
                || matches!(&observed.stored, Stored::Found(seen) if had_rollout(seen));
            if route.strategy.is_none() && !ran {
                decisions.push((name.to_owned(), ClusterDecision::Drop));
                continue;
            }
            let _route = route_span(name).entered();
            let decision = if leading {
                lead(route, local, observed, now)
            } else {
                follow(route, local, observed, now)
            };
            decisions.push((name.to_owned(), decision));
        }
        decisions
    }

    /// Adopts `routes` and keeps the decided states, given the results of
    /// writing the [`ClusterDecision::Write`]s, in order. Returns whether
    /// the snapshot must be republished, and the transitions kept.
    pub fn apply_cluster(
        &mut self,
        routes: Vec<Route>,
        leading: bool,
        decisions: Vec<(String, ClusterDecision)>,
        written: Vec<std::io::Result<()>>,
    ) -> (bool, Vec<(String, Transition)>) {
        let mut republish = routes != self.cluster_routes;
        let mut kept = Vec::new();
        let mut written = written.into_iter();
        for (name, decision) in decisions {
            let before = self
                .rollouts
                .get(&name)
                .and_then(RolloutState::route_override);
            match decision {
                ClusterDecision::Keep(state) => {
                    self.rollouts.insert(name.clone(), state);
                }
                ClusterDecision::Drop => {
                    self.rollouts.remove(&name);
                }
                ClusterDecision::Write(outcome) => {
                    let result = written.next().unwrap_or(Ok(()));
                    let transition = outcome.transition.clone();
                    if self.apply(&name, outcome, result).is_ok() {
                        if let Some(t) = transition {
                            kept.push((name.clone(), t));
                        }
                    }
                }
            }
            let after = self
                .rollouts
                .get(&name)
                .and_then(RolloutState::route_override);
            republish |= before != after;
        }
        let names: Vec<&str> = routes.iter().map(|r| &*r.name).collect();
        let gone: Vec<String> = self
            .rollouts
            .keys()
            .filter(|name| is_cluster_route(name) && !names.contains(&name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.forget_cluster_route(&name);
            republish = true;
        }
        self.cluster_routes = routes;
        self.set_leading(leading);
        self.rebuild_effective();
        (republish, kept)
    }

    /// Forgets everything kept for CanaryRoute `name` (its rollout state,
    /// samples, last judgement time and abort counts): the object is gone,
    /// or was deleted and made again, and what was kept is the old
    /// object's. Routes made and deleted by the thousand leave nothing.
    pub fn forget_cluster_route(&mut self, name: &str) {
        self.rollouts.remove(name);
        self.history.remove(name);
        self.last_judged.remove(name);
        self.unwritten_decision_runs.remove(name);
        self.aborts.retain(|(route, _), _| route != name);
    }

    /// Marks whether this replica leads. A change of leadership forgets the
    /// CanaryRoutes' samples: a leader samples the sum of every replica's
    /// counters, the others their own, and the two do not follow each other.
    pub fn set_leading(&mut self, leading: bool) {
        if leading != self.cluster_leading {
            self.history.retain(|name, _| !is_cluster_route(name));
        }
        self.cluster_leading = leading;
    }

    /// Replaces the routes of the Gateway API's HTTPRoutes (served after the
    /// file's routes and the CanaryRoutes); returns whether they changed,
    /// so that the snapshot must be republished.
    pub fn set_gateway_routes(&mut self, routes: Vec<weir_config::RouteSnapshot>) -> bool {
        if routes == self.gateway_routes {
            return false;
        }
        self.gateway_routes = routes;
        true
    }

    /// Records how many replicas the leader counts of those known: with
    /// fewer than two thirds, CanaryRoutes' judgements are inconclusive,
    /// saying so.
    pub fn set_cluster_coverage(&mut self, counted: usize, known: usize) {
        self.cluster_coverage_short = (!crate::cluster::peers::enough_coverage(counted, known))
            .then(|| crate::messages::too_few_replicas(counted, known));
    }
}

/// The leader's decision: the status is the authority (it may hold a newer
/// leader's decision), the local state when it matches; then the route's
/// spec is followed and the command inputs acted on.
fn lead(
    route: &Route,
    local: Option<&RolloutState>,
    observed: Observed,
    now: u64,
) -> ClusterDecision {
    let mut rewrite = observed.marked_not_served;
    let base = match observed.stored {
        Stored::Found(seen) => match local {
            Some(local) if same_position(local, &seen) => Some(local.clone()),
            _ => Some(*seen),
        },
        Stored::Missing => local.cloned(),
        Stored::Unreadable(error) => {
            tracing::warn!(%error, "the status cannot be read; writing the last known state back");
            rewrite = true;
            Some(
                local
                    .cloned()
                    .unwrap_or_else(|| RolloutState::unreadable(route, now, &error)),
            )
        }
    };
    let seq_read = base.as_ref().map(|state| state.rollout_seq);
    let mut outcome = match base {
        Some(state) => state.reconcile(route, now).unwrap_or_else(|refused| {
            let held = state.held_behind(&refused, route);
            // Written once: a status that already says so is left alone,
            // not patched again at every sync while the spec stays behind.
            if !(same_position(&held, &state) && held.message == state.message) {
                tracing::warn!("{refused}; the route is held until the spec catches up");
                rewrite = true;
            }
            Outcome {
                state: held,
                transition: None,
            }
        }),
        None => {
            rewrite = true;
            RolloutState::start(route, now)
        }
    };
    // The inputs were written against the rollout the status held: one the
    // spec has just replaced (a new canary revision) is not theirs to
    // steer, and the write clears them.
    let inputs = if seq_read.is_some_and(|seq| seq != outcome.state.rollout_seq) {
        if !observed.inputs.is_empty() {
            rewrite = true;
            tracing::info!(
                inputs = ?observed.inputs,
                "status inputs of the rollout before this one are not applied"
            );
        }
        Vec::new()
    } else {
        observed.inputs
    };
    for command in inputs {
        match outcome.state.command(command, route, now) {
            Ok(next) => {
                rewrite = true;
                outcome = Outcome {
                    state: next.state,
                    transition: next.transition.or(outcome.transition),
                };
            }
            // An `abort` the state refuses (a blue-green promotion past its
            // switch-back window) stays in the status as written until the
            // next rollout, which clears it: writing the same status back
            // at every sync would change nothing.
            Err(refused) if command == Command::Abort => {
                tracing::debug!("status input not applied: {refused}");
            }
            // Any other refused input is cleared by the write, so that it
            // does not apply later, when it was not asked for.
            Err(refused) => {
                rewrite = true;
                tracing::info!("status input not applied: {refused}");
            }
        }
    }
    if outcome.transition.is_some() || rewrite {
        ClusterDecision::Write(outcome)
    } else {
        ClusterDecision::Keep(outcome.state)
    }
}

/// A replica that does not lead takes the state the status holds; an
/// `abort` input takes effect at once, before the leader acts on it, and
/// so does this replica's own guardrail abort that the status does not
/// hold yet.
fn follow(
    route: &Route,
    local: Option<&RolloutState>,
    observed: Observed,
    now: u64,
) -> ClusterDecision {
    let state = match observed.stored {
        Stored::Found(seen) => match local {
            Some(local) if same_position(local, &seen) => local.clone(),
            _ => *seen,
        },
        Stored::Missing => return ClusterDecision::Drop,
        Stored::Unreadable(error) => match local {
            Some(local) => {
                tracing::debug!(%error, "the status cannot be read; keeping the last state");
                local.clone()
            }
            None => return ClusterDecision::Drop,
        },
    };
    // The guardrail's abort, not yet in the status, is not undone by it.
    if observed.aborted_here
        && let Some(local) = local
        && local.phase == Phase::Aborted
        && local.rollout_seq == state.rollout_seq
        && state.is_active()
    {
        return ClusterDecision::Keep(local.clone());
    }
    if observed.inputs.contains(&Command::Abort) && state.is_active() {
        if let Ok(aborted) = state.command(Command::Abort, route, now) {
            return ClusterDecision::Keep(aborted.state);
        }
    }
    ClusterDecision::Keep(state)
}

#[cfg(test)]
mod tests;
