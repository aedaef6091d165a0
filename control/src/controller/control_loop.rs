//! The control loop: sample the proxy's counters every 100 ms, judge, and
//! publish a new snapshot when a weight changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_proxy::Role;
use weir_proxy::metrics::RoleCounts;

use super::cluster_routes::is_cluster_route;
use super::transitions;
use crate::cluster::peers::enough_coverage;
use crate::process::{Process, stopped};

/// How often the proxy's counters are sampled: the granularity of windows.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Runs the control loop until `stop` turns true: sample, judge, publish.
pub async fn run(process: Arc<Process>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = Arc::clone(process.proxy.metrics());
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticker.tick() => {}
        }
        // The leader judges CanaryRoutes on the sum of every replica's
        // counters; everything else on this replica's own.
        let peers = match process.cluster.get().and_then(|c| c.peers.as_ref()) {
            Some(peers) => {
                let (counted, known) = peers.coverage();
                let mut control = process.control.lock().await;
                control.set_cluster_coverage(enough_coverage(counted, known));
                control.is_leading().then_some(peers)
            }
            None => None,
        };
        let sample = |route: &str, role: Role| match peers {
            Some(peers) if is_cluster_route(route) => peers.sum(route, role),
            _ => metrics
                .get(route, role)
                .map_or_else(RoleCounts::zero, |m| m.counts()),
        };
        // Published without waiting: nothing answers a caller here.
        let _ = transitions::tick(&process, sample).await;
    }
}
