//! Commands and statuses of CanaryRoutes through the admin API of any
//! replica (SPEC section 10).
//!
//! A replica does not change a CanaryRoute's rollout itself: only the
//! leader does. A command is first decided here with the state machine, so
//! one that does not apply in the current phase gets the same 409 as for a
//! file route (the outcome is not kept). Then its input is written into the
//! CanaryRoute's status ([`Cluster::command`]), and the answer waits, up to
//! [`LEADER_WAIT`] and never holding a lock, until the state this replica
//! holds for the route shows the command done: the status is answered as
//! for a file route, or with 202 and a `pendingCommand` when the leader has
//! not acted yet. The leader acts within 1 s (SPEC section 10).
//!
//! The statuses of CanaryRoutes also name the leader and the coverage of
//! the counters the leader judges ([`annotate`]).

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use weir_config::status::RouteStatus;

use super::json;
use crate::cluster::runtime::Cluster;
use crate::controller::cluster_routes::is_cluster_route;
use crate::messages::CommandError;
use crate::process::Process;
use crate::rollout::{Command, Phase, RolloutState};

/// How long a command's answer waits for the leader to act on it.
pub(super) const LEADER_WAIT: Duration = Duration::from_secs(2);

/// How often the state held for the route is looked at while waiting.
const POLL: Duration = Duration::from_millis(20);

/// What became of a command on a CanaryRoute.
#[derive(Debug)]
pub(super) enum Commanded {
    /// The state held for the route shows the command done.
    Acted,
    /// The input is written; the leader has not acted on it in time.
    Pending,
}

/// A command on a CanaryRoute that was not written.
#[derive(Debug)]
pub(super) enum NotWritten {
    /// Refused before anything was written: unknown route (404), or a
    /// command that does not apply in the phase (409).
    Refused(CommandError),
    /// The CanaryRoute is gone from the API server (404).
    Gone(io::Error),
    /// The API server did not take the input (503).
    Unavailable(io::Error),
    /// This replica is a follower, which never writes status (409).
    Follower,
}

/// What promoting every Paused CanaryRoute did.
#[derive(Debug, Default)]
pub(super) struct PromotedAll {
    /// The routes whose promotion the leader carried out in time.
    pub(super) promoted: Vec<String>,
    /// The routes whose `promote` is written but not acted on in time.
    pub(super) pending: Vec<String>,
    /// `route: why` for each route whose promotion does not apply (as for
    /// a file route; nothing is written).
    pub(super) refused: Vec<String>,
    /// `route: why` for each route whose input could not be written.
    pub(super) failures: Vec<String>,
}

/// The cluster whose leader runs route `name`'s commands, when `name` is a
/// CanaryRoute (its commands go through its status); `None` for a file
/// route, and for every route without a cluster.
pub(super) fn cluster_of<'a>(process: &'a Process, name: &str) -> Option<&'a Cluster> {
    process
        .cluster
        .get()
        .map(AsRef::as_ref)
        .filter(|_| is_cluster_route(name))
}

/// Runs `command` on CanaryRoute `name`: decided here, written into its
/// status, then waited for (see the module documentation).
///
/// # Errors
/// [`NotWritten`] says why nothing was written, or that the API server
/// did not take it.
pub(super) async fn command(
    process: &Process,
    cluster: &Cluster,
    name: &str,
    command: Command,
) -> Result<Commanded, NotWritten> {
    if !cluster.settings.is_candidate() {
        return Err(NotWritten::Follower);
    }
    let before = {
        let control = process.control.lock().await;
        control
            .decide_command(name, command, process.now_ms())
            .map_err(NotWritten::Refused)?;
        control.rollouts.get(name).cloned()
    };
    // A command that decides has a state to start from.
    let Some(before) = before else {
        return Err(NotWritten::Refused(CommandError::NoRoute {
            route: name.to_owned(),
        }));
    };
    cluster
        .command(name, command)
        .await
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => NotWritten::Gone(error),
            _ => NotWritten::Unavailable(error),
        })?;
    let waiting = [(name.to_owned(), command, before)];
    let acted = wait_acted(process, &waiting, Instant::now() + LEADER_WAIT).await;
    Ok(if acted.is_empty() {
        Commanded::Pending
    } else {
        Commanded::Acted
    })
}

/// Writes `promote` into the status of every Paused CanaryRoute where it
/// applies, then waits (up to [`LEADER_WAIT`] in all) for the leader to act
/// on each.
pub(super) async fn promote_paused(process: &Process, cluster: &Cluster) -> PromotedAll {
    let mut done = PromotedAll::default();
    let paused: Vec<(String, RolloutState)> = {
        let control = process.control.lock().await;
        let now = process.now_ms();
        let mut paused = Vec::new();
        let candidates = control
            .rollouts
            .iter()
            .filter(|(name, state)| is_cluster_route(name) && state.phase == Phase::Paused);
        for (name, state) in candidates {
            if !cluster.settings.is_candidate() {
                done.refused.push(format!(
                    "{name}: this replica is a follower and never writes status"
                ));
                continue;
            }
            match control.decide_command(name, Command::Promote, now) {
                Ok(_) => paused.push((name.clone(), state.clone())),
                Err(refused) => done.refused.push(format!("{name}: {refused}")),
            }
        }
        paused
    };
    let mut written = Vec::new();
    for (name, before) in paused {
        match cluster.command(&name, Command::Promote).await {
            Ok(()) => written.push((name, Command::Promote, before)),
            Err(error) => done.failures.push(format!("{name}: {error}")),
        }
    }
    let acted = wait_acted(process, &written, Instant::now() + LEADER_WAIT).await;
    for (name, _, _) in written {
        if acted.contains(&name) {
            done.promoted.push(name);
        } else {
            done.pending.push(name);
        }
    }
    done
}

/// Waits until the state held for each route of `waiting` (route, command,
/// state before) shows its command done, or `deadline`; returns the routes
/// that do. The control lock is taken for a look every [`POLL`], never
/// across a wait; once all are done, waits for the proxy to route by the
/// snapshot that carries them.
async fn wait_acted(
    process: &Process,
    waiting: &[(String, Command, RolloutState)],
    deadline: Instant,
) -> Vec<String> {
    loop {
        let (acted, version) = {
            let control = process.control.lock().await;
            let acted: Vec<String> = waiting
                .iter()
                .filter(|(name, command, before)| {
                    control
                        .rollouts
                        .get(name)
                        .is_some_and(|now| shows_done(*command, before, now))
                })
                .map(|(name, _, _)| name.clone())
                .collect();
            // The state and its snapshot are kept under the same lock.
            (acted, process.publisher.current().version)
        };
        if acted.len() == waiting.len() || Instant::now() >= deadline {
            if !acted.is_empty() {
                process.wait_applied(version).await;
            }
            return acted;
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Whether the state `now`, after `before`, shows `command` done: abort
/// is Aborted, retry no longer Aborted, pause and resume set and clear the
/// hold, promote moved the rollout on (another step or phase), promote
/// full is Promoted.
pub(super) fn shows_done(command: Command, before: &RolloutState, now: &RolloutState) -> bool {
    match command {
        Command::Abort => now.phase == Phase::Aborted,
        Command::Retry => now.phase != Phase::Aborted,
        Command::Pause => now.held,
        Command::Resume => !now.held,
        Command::PromoteFull => now.phase == Phase::Promoted,
        Command::Promote => {
            now.phase == Phase::Promoted
                || (now.phase, now.step_index) != (before.phase, before.step_index)
        }
    }
}

/// What a pending command's status says: written, not acted on yet.
pub(super) fn pending_message(name: &str, command: Command) -> String {
    format!(
        "{command} is written into the status of CanaryRoute {name}; the leader has not acted \
         on it within {} s and will when it next reads the status",
        LEADER_WAIT.as_secs()
    )
}

/// Fills the leader and the coverage of the counters into the statuses of
/// CanaryRoutes; file routes are left as they are. The leader is the
/// holder of the Lease as this replica last read it. The coverage is this
/// replica's reading of its peers' counters (counted/known) once it knows
/// of any peer, else the coverage of the last judgement the leader wrote.
pub(super) fn annotate(cluster: &Cluster, statuses: &mut [RouteStatus]) {
    let leader = cluster.leadership.borrow().leader.clone();
    let counted = cluster
        .peers
        .as_ref()
        .map(|peers| peers.coverage())
        .filter(|(_, known)| *known > 0)
        .map(|(counted, known)| format!("{counted}/{known}"));
    for status in statuses.iter_mut().filter(|s| is_cluster_route(&s.name)) {
        status.leader.clone_from(&leader);
        status.coverage = counted.clone().or_else(|| {
            cluster
                .statuses
                .status(&status.name)
                .and_then(|seen| seen.analysis)
                .map(|analysis| analysis.coverage)
                .filter(|coverage| !coverage.is_empty())
        });
    }
}

/// The answer to a command that was not written.
pub(super) fn not_written(name: &str, command: Command, why: &NotWritten) -> Response<Full<Bytes>> {
    let (status, message) = match why {
        NotWritten::Refused(refused) => (refused.status(), refused.to_string()),
        // Begins as every unknown route's 404 does, which the CLI tells
        // from other 404s by.
        NotWritten::Gone(error) => (
            StatusCode::NOT_FOUND,
            format!(
                "{}{name}: {error}; {command} is not written",
                crate::messages::NO_ROUTE_NAMED
            ),
        ),
        NotWritten::Follower => (
            StatusCode::CONFLICT,
            format!(
                "this replica is a follower (kubernetes.role: follower) and never writes status; \
                 send {command} for {name} to a gateway replica, or patch the CanaryRoute's status"
            ),
        ),
        NotWritten::Unavailable(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{command} for CanaryRoute {name} is not written: {error}; the rollout is \
                 unchanged, try again once the Kubernetes API server answers"
            ),
        ),
    };
    json(status, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests;
