//! Notifications (SPEC 14): each receiver of `notifications` has a bounded
//! queue ([`QUEUE_CAPACITY`]) and one task that delivers it in order. A
//! notification is POSTed until a 2xx answer, with `timeout` per attempt
//! and up to `retryMax` retries with exponential backoff
//! ([`notification_backoff`]); then it counts as sent, or as failed and
//! dropped (never delivered). When the queue is full the oldest
//! notification is dropped and counted, so a slow
//! or dead receiver costs at most one full queue of memory and never
//! delays a rollout: enqueuing takes a short lock and never waits.
//!
//! Notifications not yet delivered (queued, or being sent) are kept in
//! `stateDir/.notifications.json` as they change ([`Notifier::journal`]:
//! written off the runtime, at most every [`JOURNAL_GAP`]), once more after
//! the drain at a stop ([`Notifier::save_pending`]), and queued again,
//! first, by the next start ([`Notifier::restore_pending`]): at least once
//! across a restart, and across a `kill -9` but for what changed in the
//! last write's few milliseconds. One delivered since the last write, or
//! being sent at the stop, may then arrive twice.
//!
//! Metrics, per receiver: `weir_notifications_sent_total`,
//! `weir_notifications_failed_total`, `weir_notifications_dropped_total`
//! and the gauge `weir_notifications_queued`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use prometheus::proto::MetricType;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;
use weir_config::{Notification, Trigger};
use weir_proxy::metrics::Family;

use crate::rollout::{AbortReason, Phase, Transition, TransitionKind};
use crate::webhooks::HookClient;

/// `weir_notifications_sent_total{receiver}`.
pub const NOTIFICATIONS_SENT: Family = Family {
    name: "weir_notifications_sent_total",
    help: "Notifications a receiver answered with 2xx.",
    kind: MetricType::COUNTER,
    labels: &["receiver"],
};

/// `weir_notifications_failed_total{receiver}`.
pub const NOTIFICATIONS_FAILED: Family = Family {
    name: "weir_notifications_failed_total",
    help: "Notifications given up after retryMax retries (also counted as dropped).",
    kind: MetricType::COUNTER,
    labels: &["receiver"],
};

/// `weir_notifications_dropped_total{receiver}`.
pub const NOTIFICATIONS_DROPPED: Family = Family {
    name: "weir_notifications_dropped_total",
    help: "Notifications never delivered: pushed out of a full queue, or given up after retryMax retries.",
    kind: MetricType::COUNTER,
    labels: &["receiver"],
};

/// `weir_notifications_queued{receiver}`.
pub const NOTIFICATIONS_QUEUED: Family = Family {
    name: "weir_notifications_queued",
    help: "Notifications waiting in a receiver's queue.",
    kind: MetricType::GAUGE,
    labels: &["receiver"],
};

/// The most notifications queued per receiver; beyond it the oldest is
/// dropped.
pub const QUEUE_CAPACITY: usize = 10_000;

/// The least time between two writes of the pending notifications by
/// [`Notifier::journal`]: a burst of changes is one write.
pub const JOURNAL_GAP: Duration = Duration::from_millis(100);

/// The backoff before the n-th retry of a notification (0-based): 500 ms,
/// doubling, at most 30 s.
pub fn notification_backoff(retry: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << retry.min(6)).min(30_000))
}

/// The triggers a transition fires (Argo Rollouts' names):
///
/// | transition | triggers |
/// | --- | --- |
/// | started, retried | `on-rollout-updated`, `on-analysis-run-running` |
/// | a step completed (by time, analysis, a gate or `promote`); for blue-green, each stage change | `on-rollout-step-completed` |
/// | promoted (last step, `promote --full`) | `on-rollout-completed` |
/// | aborted | `on-rollout-aborted`; by analysis also `on-analysis-run-failed`, or `on-analysis-run-error` when a template run ended `Error` |
/// | a failed judgement within `failureLimit` | `on-analysis-run-failed` |
/// | a failed webhook check within `threshold` | `on-analysis-run-error` |
/// | an analysis template run ended Inconclusive | `on-rollout-paused` (it holds) |
/// | into Paused (a pause step, `pause`, a gate that waits, steps changed) | `on-rollout-paused` |
///
/// Resume, the end of a rollout by the config, and a passed gate that
/// enters a step without completing one fire nothing else.
pub fn triggers_of(transition: &Transition) -> Vec<Trigger> {
    let mut triggers = Vec::new();
    match transition.kind {
        TransitionKind::Started | TransitionKind::Retried => {
            triggers.extend([Trigger::RolloutUpdated, Trigger::AnalysisRunRunning]);
        }
        TransitionKind::Advanced | TransitionKind::Promoted => {
            triggers.push(Trigger::RolloutStepCompleted);
        }
        TransitionKind::Aborted(_) if transition.run_errored => {
            triggers.extend([Trigger::RolloutAborted, Trigger::AnalysisRunError]);
        }
        TransitionKind::Aborted(reason) => {
            triggers.push(Trigger::RolloutAborted);
            if matches!(
                reason,
                AbortReason::AnalysisErrorRate
                    | AbortReason::AnalysisCompare
                    | AbortReason::AnalysisLatency
                    | AbortReason::AnalysisRun
                    | AbortReason::PrePromotionAnalysis
                    | AbortReason::PostPromotionAnalysis
            ) {
                triggers.push(Trigger::AnalysisRunFailed);
            }
        }
        TransitionKind::FailureCounted => triggers.push(Trigger::AnalysisRunFailed),
        TransitionKind::WebhookFailureCounted => triggers.push(Trigger::AnalysisRunError),
        TransitionKind::Completed
        | TransitionKind::PromotedFull
        | TransitionKind::GatePassed
        | TransitionKind::AnalysisInconclusive
        | TransitionKind::Held
        | TransitionKind::Released
        | TransitionKind::CaughtUp
        | TransitionKind::Ended
        | TransitionKind::StepsChanged => {}
    }
    if transition.to == Phase::Promoted && transition.from != Phase::Promoted {
        triggers.push(Trigger::RolloutCompleted);
    }
    let paused = transition.to == Phase::Paused
        && (transition.from != Phase::Paused || transition.from_step != transition.to_step);
    if paused && !matches!(transition.kind, TransitionKind::Released) {
        triggers.push(Trigger::RolloutPaused);
    }
    triggers
}

/// The receivers and their queues.
#[derive(Debug)]
pub struct Notifier {
    client: HookClient,
    receivers: Mutex<HashMap<String, Arc<Receiver>>>,
    /// Told whenever what is pending changes, for [`Notifier::journal`].
    changed: Arc<Notify>,
    sent: IntCounterVec,
    failed: IntCounterVec,
    dropped: IntCounterVec,
    queued: IntGaugeVec,
}

/// One receiver: its config, queue and counters.
#[derive(Debug)]
struct Receiver {
    config: Mutex<Notification>,
    queue: Mutex<VecDeque<Bytes>>,
    /// The notification being sent, until its outcome.
    in_flight: Mutex<Option<Bytes>>,
    wake: Notify,
    /// The notifier's: told whenever what is pending changes.
    changed: Arc<Notify>,
    removed: AtomicBool,
    sent: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
    queued: IntGauge,
}

// === impl Notifier ===

impl Notifier {
    /// No receivers yet; the metric families registered in `registry`.
    ///
    /// # Errors
    /// When a family is already registered.
    pub fn new(registry: &Registry, client: HookClient) -> prometheus::Result<Notifier> {
        let counter = |family: &Family| -> prometheus::Result<IntCounterVec> {
            let vec = IntCounterVec::new(Opts::new(family.name, family.help), family.labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let sent = counter(&NOTIFICATIONS_SENT)?;
        let failed = counter(&NOTIFICATIONS_FAILED)?;
        let dropped = counter(&NOTIFICATIONS_DROPPED)?;
        let queued = IntGaugeVec::new(
            Opts::new(NOTIFICATIONS_QUEUED.name, NOTIFICATIONS_QUEUED.help),
            NOTIFICATIONS_QUEUED.labels,
        )?;
        registry.register(Box::new(queued.clone()))?;
        Ok(Notifier {
            client,
            receivers: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
            sent,
            failed,
            dropped,
            queued,
        })
    }

    /// Follows the config's receivers: new ones get a queue and a task,
    /// changed ones their new settings (for the next attempt), removed ones
    /// deliver what they hold and stop. Outside a tokio runtime the tasks
    /// start at the first notification.
    pub fn sync(&self, notifications: &[Notification]) {
        let mut receivers = self
            .receivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        receivers.retain(|name, receiver| {
            let kept = notifications.iter().any(|n| *n.name == **name);
            if !kept {
                receiver.removed.store(true, Ordering::Relaxed);
                receiver.wake.notify_one();
            }
            kept
        });
        for notification in notifications {
            match receivers.get(&*notification.name) {
                Some(receiver) => {
                    *receiver
                        .config
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = notification.clone();
                }
                None => {
                    let receiver = self.receiver(notification);
                    receivers.insert(notification.name.to_string(), receiver);
                }
            }
        }
    }

    fn receiver(&self, notification: &Notification) -> Arc<Receiver> {
        let name = &*notification.name;
        let receiver = Arc::new(Receiver {
            config: Mutex::new(notification.clone()),
            queue: Mutex::new(VecDeque::new()),
            in_flight: Mutex::new(None),
            wake: Notify::new(),
            changed: Arc::clone(&self.changed),
            removed: AtomicBool::new(false),
            sent: self.sent.with_label_values(&[name]),
            failed: self.failed.with_label_values(&[name]),
            dropped: self.dropped.with_label_values(&[name]),
            queued: self.queued.with_label_values(&[name]),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(deliver(Arc::clone(&receiver), self.client.clone()));
        }
        receiver
    }

    /// Queues `body` for every receiver of `notifications` that wants
    /// `trigger` on `route`. Never waits.
    pub fn enqueue(
        &self,
        notifications: &[Notification],
        trigger: Trigger,
        route: &str,
        body: &Bytes,
    ) {
        for notification in notifications.iter().filter(|n| n.wants(trigger, route)) {
            let receiver = {
                let receivers = self
                    .receivers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                receivers.get(&*notification.name).cloned()
            };
            let receiver = match receiver {
                Some(receiver) => receiver,
                None => {
                    self.sync(notifications);
                    let receivers = self
                        .receivers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    match receivers.get(&*notification.name) {
                        Some(receiver) => Arc::clone(receiver),
                        None => continue,
                    }
                }
            };
            receiver.push(body.clone());
        }
    }

    /// Every receiver's undelivered notifications, oldest first: the one
    /// being sent, then its queue.
    pub fn pending(&self) -> BTreeMap<String, Vec<Bytes>> {
        let receivers = self
            .receivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        receivers
            .iter()
            .map(|(name, receiver)| {
                // The queue's lock first, as `pop` takes them: a body is
                // in one or the other, never in neither.
                let queue = receiver
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let mut bodies: Vec<Bytes> = receiver
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .cloned()
                    .collect();
                bodies.extend(queue.iter().cloned());
                (name.clone(), bodies)
            })
            .filter(|(_, bodies)| !bodies.is_empty())
            .collect()
    }

    /// Writes [`Self::pending`] to `dir`'s `.notifications.json` (atomic
    /// replace), or removes that file when nothing is pending. Returns how
    /// many were written. Blocks: for the stop, once [`Self::journal`]
    /// has ended.
    ///
    /// # Errors
    /// The I/O error, naming the file.
    pub fn save_pending(&self, dir: &Path) -> std::io::Result<usize> {
        write_pending(dir, &self.pending())
    }

    /// Keeps `dir`'s `.notifications.json` up to date with what is pending
    /// until `stop` is raised: written at once, then after each change, at
    /// most every [`JOURNAL_GAP`], each time on a thread off the runtime
    /// (a write in progress ends before this returns). A failed write is
    /// logged once until one succeeds.
    pub async fn journal(&self, dir: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            let pending = self.pending();
            let into = dir.clone();
            let written = crate::off_runtime::run(move || write_pending(&into, &pending))
                .await
                .map_err(std::io::Error::other)
                .and_then(|written| written);
            match written {
                Ok(_) => failing = false,
                Err(error) if !failing => {
                    tracing::warn!(%error, "undelivered notifications cannot be kept; a crash would lose them");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return,
                () = tokio::time::sleep(JOURNAL_GAP) => {}
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return,
                () = self.changed.notified() => {}
            }
        }
    }

    /// Queues again, ahead of anything queued since, what the last run
    /// left pending in `dir` ([`Self::journal`], [`Self::save_pending`]);
    /// the file is then replaced by the journal's first write. A receiver
    /// no longer in the config has its notifications dropped (logged and
    /// counted). Returns how many were queued again.
    ///
    /// # Errors
    /// The file cannot be read or parsed: it is moved aside, to
    /// `.notifications.json.bad` (the journal would replace it), for a
    /// person to look at.
    pub fn restore_pending(&self, dir: &Path) -> Result<usize, String> {
        let path = pending_path(dir);
        let parsed = match std::fs::read(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => Err(format!("cannot read {}: {error}", path.display())),
            Ok(bytes) => serde_json::from_slice::<BTreeMap<String, Vec<String>>>(&bytes)
                .map_err(|error| format!("cannot parse {}: {error}", path.display())),
        };
        let pending = parsed.map_err(|problem| {
            let aside = dir.join(".notifications.json.bad");
            match std::fs::rename(&path, &aside) {
                Ok(()) => format!("{problem}; kept as {}", aside.display()),
                Err(error) => format!(
                    "{problem}; it could not be kept as {}: {error}",
                    aside.display()
                ),
            }
        })?;
        // The file stays until the journal writes what is pending now: a
        // crash before then queues these again (at least once).
        let mut queued = 0;
        for (name, bodies) in pending {
            let receiver = self
                .receivers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&name)
                .cloned();
            let Some(receiver) = receiver else {
                self.dropped
                    .with_label_values(&[name.as_str()])
                    .inc_by(u64::try_from(bodies.len()).unwrap_or(u64::MAX));
                tracing::warn!(
                    receiver = %name,
                    count = bodies.len(),
                    "notifications left from the last run dropped: the receiver is no longer configured"
                );
                continue;
            };
            queued += bodies.len();
            receiver.push_front(bodies.into_iter().map(Bytes::from));
        }
        Ok(queued)
    }

    /// Notifications queued for `receiver`, if it exists.
    pub fn queued(&self, receiver: &str) -> Option<usize> {
        let receivers = self
            .receivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let receiver = receivers.get(receiver)?;
        let queue = receiver
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(queue.len())
    }
}

// === impl Receiver ===

impl Receiver {
    fn push(&self, body: Bytes) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= QUEUE_CAPACITY {
                queue.pop_front();
                self.dropped.inc();
            }
            queue.push_back(body);
            self.queued
                .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        }
        self.wake.notify_one();
        self.changed.notify_one();
    }

    /// Queues `bodies` (oldest first) ahead of what is queued; the oldest
    /// are dropped and counted past [`QUEUE_CAPACITY`].
    fn push_front(&self, bodies: impl DoubleEndedIterator<Item = Bytes>) {
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            for body in bodies.rev() {
                if queue.len() >= QUEUE_CAPACITY {
                    self.dropped.inc();
                    continue;
                }
                queue.push_front(body);
            }
            self.queued
                .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        }
        self.wake.notify_one();
        self.changed.notify_one();
    }

    /// The next notification, which becomes the one in flight.
    fn pop(&self) -> Option<Bytes> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let next = queue.pop_front();
        if next.is_some() {
            *self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = next.clone();
        }
        self.queued
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        next
    }
}

/// Delivers `receiver`'s queue in order until it is removed and empty.
async fn deliver(receiver: Arc<Receiver>, client: HookClient) {
    loop {
        let Some(body) = receiver.pop() else {
            if receiver.removed.load(Ordering::Relaxed) {
                return;
            }
            receiver.wake.notified().await;
            continue;
        };
        let config = receiver
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let outcome = client
            .post(
                &config.url,
                &config.headers,
                body,
                config.timeout,
                config.retry_max,
                notification_backoff,
            )
            .await;
        *receiver
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        receiver.changed.notify_one();
        if outcome.passed {
            receiver.sent.inc();
        } else {
            // Never delivered: dropped, as one pushed out of a full queue
            // is (counted first, so a reader that sees it failed sees it
            // dropped).
            receiver.dropped.inc();
            receiver.failed.inc();
            tracing::warn!(
                receiver = %config.name,
                attempts = outcome.attempts,
                "notification given up: {}",
                outcome.detail
            );
        }
    }
}

/// Writes `pending` to `dir`'s `.notifications.json` (atomic replace), or
/// removes that file when nothing is pending. Returns how many were written.
fn write_pending(dir: &Path, pending: &BTreeMap<String, Vec<Bytes>>) -> std::io::Result<usize> {
    let path = pending_path(dir);
    if pending.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(0),
        };
    }
    let count = pending.values().map(Vec::len).sum();
    let texts: BTreeMap<&str, Vec<String>> = pending
        .iter()
        .map(|(name, bodies)| {
            let texts = bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            (name.as_str(), texts)
        })
        .collect();
    let json = serde_json::to_vec_pretty(&texts).map_err(std::io::Error::other)?;
    let tmp = dir.join(".notifications.json.new");
    let written = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path));
    written.map_err(|error| {
        std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    })?;
    Ok(count)
}

/// Where undelivered notifications wait for the next start: a hidden
/// name, which no route's state file (`ROUTE.json`, `[a-z0-9-]+`) can have.
fn pending_path(dir: &Path) -> PathBuf {
    dir.join(".notifications.json")
}

#[cfg(test)]
mod tests;
