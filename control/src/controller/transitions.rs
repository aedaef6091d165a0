//! Changing rollout states through the process handle. Every writer (an
//! operator command, a tick of the control loop, a reload) holds the
//! process's transition lock for the whole change, so changes never
//! interleave; the control lock is held only to decide and to keep, never
//! across the write, so readers (status, metrics, the tokens of each admin
//! request) do not wait for a disk. A state is still written before it takes
//! effect.

use std::sync::Arc;

use weir_proxy::Role;
use weir_proxy::metrics::RoleCounts;

use super::cluster_routes::is_cluster_route;
use super::state::{write_judged, write_outcome};
use crate::messages::CommandError;
use crate::process::Process;
use crate::rollout::Command;

/// What promoting every Paused route did.
#[derive(Debug, Default)]
pub struct PromotedAll {
    /// The routes promoted.
    pub promoted: Vec<String>,
    /// `route: why` for each route that could not be.
    pub failures: Vec<String>,
    /// The snapshot version published, if weights changed.
    pub published: Option<u64>,
}

/// Runs operator `command` on `route`: decided under the control lock,
/// written without it, kept and published under it again. Returns the
/// snapshot version published, if the weights changed; wait for the proxy
/// to apply it with [`Process::wait_applied`].
///
/// # Errors
/// 404 for an unknown route, 409 for a command that does not apply, 500
/// when the state cannot be persisted (nothing changes then).
pub async fn command(
    process: &Process,
    route: &str,
    command: Command,
) -> Result<Option<u64>, CommandError> {
    let _writing = process.transitions.lock().await;
    let now = process.now_ms();
    let (outcome, store) = {
        let control = process.control.lock().await;
        (
            control.decide_command(route, command, now)?,
            control.store(),
        )
    };
    let written = write_outcome(store, &outcome).await;
    let mut control = process.control.lock().await;
    let republish = control.apply(route, outcome, written)?;
    Ok(republish.then(|| process.publisher.publish(control.snapshot())))
}

/// Promotes every Paused file route, each written before it is kept, and
/// publishes once. CanaryRoutes are left out: their commands go through
/// their status, for the leader to act on (see the admin API).
pub async fn promote_paused(process: &Process) -> PromotedAll {
    let _writing = process.transitions.lock().await;
    let now = process.now_ms();
    let (paused, store) = {
        let control = process.control.lock().await;
        let paused: Vec<String> = control
            .rollouts
            .iter()
            .filter(|(name, state)| {
                state.phase == crate::rollout::Phase::Paused && !is_cluster_route(name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        (paused, control.store())
    };
    let mut done = PromotedAll::default();
    let mut republish = false;
    for name in paused {
        let decided = process
            .control
            .lock()
            .await
            .decide_command(&name, Command::Promote, now);
        let kept = match decided {
            Ok(outcome) => {
                let written = write_outcome(store.clone(), &outcome).await;
                process.control.lock().await.apply(&name, outcome, written)
            }
            Err(refused) => Err(refused),
        };
        match kept {
            Ok(changed) => {
                republish |= changed;
                done.promoted.push(name);
            }
            Err(refused) => done.failures.push(format!("{name}: {refused}")),
        }
    }
    if republish {
        let control = process.control.lock().await;
        done.published = Some(process.publisher.publish(control.snapshot()));
    }
    done
}

/// One tick of the control loop: samples the counters and judges under
/// the control lock, writes the transitions without it, keeps them and
/// publishes under it again. Returns the version published, if any.
pub async fn tick(
    process: &Process,
    sample: impl Fn(&str, Role) -> RoleCounts + Sync,
) -> Option<u64> {
    tick_counted(process, &sample, &sample).await
}

/// [`tick`], with a CanaryRoute's counts read from `summed` (every
/// replica's) while this replica leads, from `own` otherwise
/// ([`ControlState::judge_counted`](super::ControlState::judge_counted)).
pub async fn tick_counted(
    process: &Process,
    own: &(dyn Fn(&str, Role) -> RoleCounts + Sync),
    summed: &(dyn Fn(&str, Role) -> RoleCounts + Sync),
) -> Option<u64> {
    let _writing = process.transitions.lock().await;
    let now = process.now_ms();
    // Webhook answers first, kept on their own: the judgement below then
    // starts from the states they made.
    let (answered, store) = {
        let control = process.control.lock().await;
        (control.answer_gates(now), control.store())
    };
    let mut republish = false;
    if !answered.is_empty() {
        let written = write_judged(Arc::clone(&store), &answered).await;
        republish |= process.control.lock().await.apply_judged(answered, written);
    }
    let judged = process.control.lock().await.judge_counted(own, summed, now);
    let written = write_judged(Arc::clone(&store), &judged).await;
    let mut control = process.control.lock().await;
    republish |= control.apply_judged(judged, written);
    control.schedule_hooks(now);
    control.sample_rates(now);
    let published = republish.then(|| process.publisher.publish(control.snapshot()));
    // An abort that took effect without being written is written again,
    // after this tick's weights are published, so that a restart finds it.
    let again = control.unpersisted_due(now);
    if !again.is_empty() {
        drop(control);
        let written = crate::persist::save_off_runtime(store, again.clone()).await;
        process
            .control
            .lock()
            .await
            .persisted_again(&again, written, now);
    }
    published
}
