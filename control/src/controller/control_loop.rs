//! The control loop: sample the proxy's counters every 100 ms, judge, and
//! publish a new snapshot when a weight changes.
//!
//! While nothing it does is due sooner (no rollout under way, no webhook
//! call, no state to write again, no event stream followed, no cluster:
//! [`ControlState::is_settled`]) it samples once a second, and at once
//! when the control state is held by anyone else (a command, a reload, a
//! read of the status): a change that starts a rollout is sampled, and
//! judged, as soon as it is made. Ten samples a second with nothing to
//! judge were most of an idle weir's CPU: 1.7-2.1 ms a second against
//! 0.5-0.7 sampling once a second (`perf stat -e task-clock` over 20 s of
//! an idle release build, the peer harness's config, two runs each).
//!
//! [`ControlState::is_settled`]: crate::controller::ControlState::is_settled

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_proxy::Role;
use weir_proxy::metrics::{Metrics, RoleCounts};

use super::transitions;
use crate::process::{Process, stopped};

/// How often the proxy's counters are sampled: the granularity of windows.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How far ahead of now the next beat of a settled sample is looked for:
/// a wake-up on a beat waits for the next one, not for the one it met.
const BEAT_AHEAD: Duration = Duration::from_millis(10);

/// How early periodic work of the loop is done: a settled loop wakes once a
/// second on the beat, a few milliseconds late or early against the last
/// wake-up, and what is due every second must not slip to every other.
const DUE_EARLY: Duration = SAMPLE_INTERVAL;

/// How often the peers' counts of routes gone from the config (deleted
/// CanaryRoutes) are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(5);

/// How often the state store is looked at for the states written to it
/// being lost (a removed `stateDir`), with a glance that cannot block
/// ([`StateStore::intact_at_a_glance`]: a removed directory has no links
/// left), and asked off the runtime when the glance cannot tell or sees a
/// removal.
///
/// [`StateStore::intact_at_a_glance`]: crate::persist::StateStore::intact_at_a_glance
const LOST_STATES_EVERY: Duration = Duration::from_secs(1);

/// How often the state store is asked anyway, off the runtime. A glance
/// does not see a directory renamed away (it keeps its links), nor one of
/// the directories above it; asking looks up the path. Each ask starts a
/// thread (`off_runtime`): asked every second, they cost an idle weir 0.3
/// to 0.5 ms of its 3 ms of CPU a second (`perf stat` on two idle weirs
/// side by side, 30 and 40 s runs).
const LOST_STATES_ASKED_EVERY: Duration = Duration::from_secs(10);

/// Runs the control loop until `stop` turns true: sample, judge, publish.
pub async fn run(process: Arc<Process>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = Arc::clone(process.proxy.metrics());
    let started = tokio::time::Instant::now();
    let mut forgotten = started;
    let (mut glanced, mut asked) = (started, started);
    // The fast samples were left for the slow ones: they start again from
    // the next, not in a burst. (Reset while it is not waited on, the
    // ticker would still wake the process 100 ms after each slow sample.)
    let mut ticker_left = false;
    loop {
        // Holds that ended so far (this loop's own among them) are seen by
        // the look below; a later one ends a slow wait at once.
        process.control.forget_touches();
        let settled =
            process.cluster.get().is_none() && process.control.lock_unheard().await.is_settled();
        if settled {
            // On the process's beat, with the config file's glance; the
            // next beat at least a little ahead, not the one just met.
            let next = crate::beat::next_beat(tokio::time::Instant::now() + BEAT_AHEAD);
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep_until(next) => {}
                () = process.control.touched() => {}
            }
            ticker_left = true;
        } else {
            if ticker_left {
                ticker_left = false;
                ticker.reset();
            }
            tokio::select! {
                () = stopped(&mut stop) => return,
                _ = ticker.tick() => {}
            }
        }
        let now = tokio::time::Instant::now();
        if is_due(&mut forgotten, FORGET_EVERY, now) {
            forget_gone_routes(&process).await;
        }
        if is_due(&mut glanced, LOST_STATES_EVERY, now) {
            let ask = is_due(&mut asked, LOST_STATES_ASKED_EVERY, now);
            write_lost_states_again(&process, ask).await;
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
                    .set_cluster_coverage(counted, known);
                Some(peers)
            }
            None => None,
        };
        let own = |route: &str, role: Role| own_counts(&metrics, route, role);
        let summed = |route: &str, role: Role| match peers {
            Some(peers) => peers.sum(route, role),
            None => own(route, role),
        };
        // Published without waiting: nothing answers a caller here.
        let _ = transitions::tick_counted(&process, &own, &summed).await;
    }
}

/// Whether work done `every` so long, last at `last`, is due at `now`
/// ([`DUE_EARLY`] early at most); when it is, `now` becomes its last time.
fn is_due(last: &mut tokio::time::Instant, every: Duration, now: tokio::time::Instant) -> bool {
    let due = now + DUE_EARLY >= *last + every;
    if due {
        *last = now;
    }
    due
}

/// This replica's own counters of `route`'s `role` (zero before its
/// first request).
pub fn own_counts(metrics: &Metrics, route: &str, role: Role) -> RoleCounts {
    metrics
        .get(route, role)
        .map_or_else(RoleCounts::zero, |m| m.counts())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;

    use crate::fixtures;
    use crate::process::{Clock as _, ManualClock, Process};

    /// Lets a loop just spawned reach its first wait: on the test's
    /// current-thread runtime, it runs while the test yields.
    async fn let_it_start() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Lets the loop run until the control state's latest tick is at
    /// `tick_ms`, for at most `turns` turns of the runtime or, when
    /// `turns` is `None`, ten seconds (a tick may wait on a state write,
    /// made on a thread): whether it got there. Yielding, the test keeps
    /// tokio's paused time from moving by itself.
    async fn ticked_at(process: &Process, tick_ms: u64, turns: Option<u32>) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut turned = 0;
        while turns.is_none_or(|turns| turned < turns) && std::time::Instant::now() < deadline {
            if process.control.lock_unheard().await.events.last_tick_ms() == tick_ms {
                return true;
            }
            tokio::task::yield_now().await;
            turned += 1;
        }
        false
    }

    /// Moves tokio's (paused) time and the process's clock by `by`, and
    /// returns the clock's new time.
    async fn advance(clock: &ManualClock, by: Duration) -> u64 {
        clock.advance(by);
        tokio::time::advance(by).await;
        clock.now_ms()
    }

    #[tokio::test(start_paused = true)]
    async fn a_settled_state_is_sampled_once_a_second_and_at_once_when_held() {
        // A fixed split: no rollout, nothing due.
        let text = fixtures::config_text(None, &fixtures::route("web", None));
        let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let (process, clock) = (Arc::clone(&in_memory.process), &in_memory.clock);
        assert!(process.control.lock_unheard().await.is_settled());
        let (_stop, stop) = watch::channel(false);
        let running = tokio::spawn(super::run(Arc::clone(&process), stop));
        let_it_start().await;

        // On the process's beat, at most a second away. The beat's clock
        // may have started in another test's runtime, off this one's
        // millisecond ticks: its timer fires at the next tick.
        let beat = crate::beat::next_beat(tokio::time::Instant::now() + super::BEAT_AHEAD);
        let wait = beat - tokio::time::Instant::now();
        assert!(wait <= crate::beat::BEAT + super::BEAT_AHEAD);
        let at = advance(clock, wait + Duration::from_millis(1)).await;
        assert!(ticked_at(&process, at, None).await, "sampled on the beat");
        // Half a second on: no sample (a settled tick writes nothing: it
        // would be done in a few turns).
        let quiet = advance(clock, Duration::from_millis(500)).await;
        assert!(
            !ticked_at(&process, quiet, Some(100)).await,
            "sampled before its second"
        );
        // A hold of the state (a command, a reload, a status read): at once.
        drop(process.control.lock().await);
        assert!(
            ticked_at(&process, quiet, None).await,
            "sampled when the state was held"
        );
        running.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollout_under_way_is_sampled_every_100_ms() {
        let text = fixtures::config_text(
            None,
            &fixtures::route("web", Some("[{setWeight: 20}, {pause: {}}]")),
        );
        let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let (process, clock) = (Arc::clone(&in_memory.process), &in_memory.clock);
        assert!(!process.control.lock_unheard().await.is_settled());
        let (_stop, stop) = watch::channel(false);
        let running = tokio::spawn(super::run(Arc::clone(&process), stop));
        let_it_start().await;
        // The first tick is at once, then every 100 ms.
        for _ in 0..5 {
            let at = advance(clock, super::SAMPLE_INTERVAL).await;
            assert!(ticked_at(&process, at, None).await, "sampled within 100 ms");
        }
        running.abort();
    }
}
