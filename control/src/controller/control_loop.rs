//! The control loop: sample the proxy's counters every 100 ms, judge, and
//! publish a new snapshot when a weight changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_proxy::Role;
use weir_proxy::metrics::RoleCounts;

use super::transitions;
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
        let sample = |route: &str, role: Role| {
            metrics
                .get(route, role)
                .map_or_else(RoleCounts::zero, |m| m.counts())
        };
        // Published without waiting: nothing answers a caller here.
        let _ = transitions::tick(&process, sample).await;
    }
}
