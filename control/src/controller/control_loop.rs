//! The control loop: sample the proxy's counters every 100 ms, judge, and
//! publish a new snapshot when a weight changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_proxy::Role;
use weir_proxy::metrics::RoleCounts;

use super::transitions;
use crate::cluster::peers::enough_coverage;
use crate::process::{Process, stopped};

/// How often the proxy's counters are sampled: the granularity of windows.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Every how many samples the peers' counts of routes gone from the config
/// (deleted CanaryRoutes) are forgotten: every 5 s.
const FORGET_EVERY: u32 = 50;

/// Every how many samples the state store is looked at for the states
/// written to it being lost (a removed `stateDir`): every second, with a
/// glance that cannot block ([`StateStore::intact_at_a_glance`]: a
/// removed directory has no links left), and asked off the runtime when
/// the glance cannot tell or sees a removal.
///
/// [`StateStore::intact_at_a_glance`]: crate::persist::StateStore::intact_at_a_glance
const LOST_STATES_EVERY: u32 = 10;

/// Every how many samples the state store is asked anyway, off the runtime:
/// every 10 s. A glance does not see a directory renamed away (it keeps its
/// links), nor one of the directories above it; asking looks up the path.
/// Each ask starts a thread (`off_runtime`): asked every second, they
/// cost an idle weir 0.3 to 0.5 ms of its 3 ms of CPU a second (`perf
/// stat` on two idle weirs side by side, 30 and 40 s runs).
const LOST_STATES_ASKED_EVERY: u32 = 100;

/// Runs the control loop until `stop` turns true: sample, judge, publish.
pub async fn run(process: Arc<Process>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = Arc::clone(process.proxy.metrics());
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticker.tick() => {}
        }
        ticks = ticks.wrapping_add(1);
        if ticks % FORGET_EVERY == 0 {
            forget_gone_routes(&process).await;
        }
        if ticks % LOST_STATES_EVERY == 0 {
            write_lost_states_again(&process, ticks % LOST_STATES_ASKED_EVERY == 0).await;
        }
        // The leader judges CanaryRoutes on the sum of every replica's
        // counters; everything else on this replica's own. Which one a
        // route gets is decided with the leadership, under the control
        // lock (see `judge_counted`), not here.
        let peers = match process.cluster.get().and_then(|c| c.peers.as_ref()) {
            Some(peers) => {
                let (counted, known) = peers.coverage();
                process
                    .control
                    .lock()
                    .await
                    .set_cluster_coverage(enough_coverage(counted, known));
                Some(peers)
            }
            None => None,
        };
        let own = |route: &str, role: Role| {
            metrics
                .get(route, role)
                .map_or_else(RoleCounts::zero, |m| m.counts())
        };
        let summed = |route: &str, role: Role| match peers {
            Some(peers) => peers.sum(route, role),
            None => own(route, role),
        };
        // Published without waiting: nothing answers a caller here.
        let _ = transitions::tick_counted(&process, &own, &summed).await;
    }
}

/// Has every kept state written again (by this tick) when the store lost
/// them: a `stateDir` removed under the running process is made again by
/// the store, and a restart must still find every route's state, not only
/// those that changed since. Unless `ask`, a store seen intact at a
/// glance is not asked.
async fn write_lost_states_again(process: &Process, ask: bool) {
    let store = process.control.lock().await.store();
    if !ask && store.intact_at_a_glance() {
        return;
    }
    let lost = crate::off_runtime::run(move || store.lost_states())
        .await
        .unwrap_or(false);
    if lost {
        process.control.lock().await.states_lost();
    }
}

/// Drops what the peers counted of routes no longer in this replica's
/// config, so that deleted CanaryRoutes do not stay in memory.
async fn forget_gone_routes(process: &Process) {
    let Some(peers) = process.cluster.get().and_then(|c| c.peers.as_ref()) else {
        return;
    };
    let names: std::collections::HashSet<Arc<str>> = {
        let control = process.control.lock().await;
        // Every route served: the config's (CanaryRoutes included) and
        // the Gateway API's.
        control
            .config()
            .routes
            .iter()
            .map(|route| Arc::clone(&route.name))
            .chain(
                control
                    .gateway_routes
                    .iter()
                    .map(|route| Arc::clone(&route.name)),
            )
            .collect()
    };
    peers.forget_routes(|route| names.contains(route));
}
