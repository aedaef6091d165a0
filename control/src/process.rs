//! The handle of a running weir process: what the admin API, reloads and the
//! control loop share. They depend on this module and not on each other or
//! on `run`, which only wires them together; a test builds a [`Process`]
//! in memory (no sockets, no files) and drives time through its [`Clock`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use weir_config::Publisher;
use weir_proxy::Proxy;

use crate::controller::ControlState;
pub use crate::exposition::ReloadCounters;

/// Where control reads the time: wall-clock milliseconds since the UNIX
/// epoch (persisted deadlines survive a restart).
pub trait Clock: fmt::Debug + Send + Sync {
    /// Milliseconds since the UNIX epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// A clock that moves only when told: for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

/// The control state behind its lock: a hold of it that ends tells
/// whoever waits in [`ControlLock::touched`] (the control loop, when it
/// samples slowly) that the state may have changed.
#[derive(Debug)]
pub struct ControlLock {
    /// The state.
    state: tokio::sync::Mutex<ControlState>,
    /// Told when a hold of the state ends.
    touched: tokio::sync::Notify,
}

/// A hold of the control state; its end tells [`ControlLock::touched`].
pub struct ControlGuard<'a> {
    /// The hold itself.
    guard: tokio::sync::MutexGuard<'a, ControlState>,
    /// Told when the hold ends.
    touched: &'a tokio::sync::Notify,
}

impl ControlLock {
    /// `state` behind the lock.
    pub fn new(state: ControlState) -> ControlLock {
        ControlLock {
            state: tokio::sync::Mutex::new(state),
            touched: tokio::sync::Notify::new(),
        }
    }

    /// Waits for the state, and holds it until the guard is dropped.
    pub async fn lock(&self) -> ControlGuard<'_> {
        ControlGuard {
            guard: self.state.lock().await,
            touched: &self.touched,
        }
    }

    /// Waits for the state, and holds it without telling
    /// [`ControlLock::touched`]: for a look that changes nothing (the
    /// control loop's own, the config watcher's comparison).
    pub async fn lock_unheard(&self) -> tokio::sync::MutexGuard<'_, ControlState> {
        self.state.lock().await
    }

    /// Returns once a hold of the state has ended since the last return
    /// (or since [`ControlLock::forget_touches`]): at once if one has.
    pub async fn touched(&self) {
        self.touched.notified().await;
    }

    /// Forgets the holds that ended so far: [`ControlLock::touched`] then
    /// waits for the next one.
    pub fn forget_touches(&self) {
        use futures_util::FutureExt as _;
        let _ = self.touched.notified().now_or_never();
    }
}

impl std::ops::Deref for ControlGuard<'_> {
    type Target = ControlState;

    fn deref(&self) -> &ControlState {
        &self.guard
    }
}

impl std::ops::DerefMut for ControlGuard<'_> {
    fn deref_mut(&mut self) -> &mut ControlState {
        &mut self.guard
    }
}

impl Drop for ControlGuard<'_> {
    fn drop(&mut self) {
        self.touched.notify_one();
    }
}

/// What the running process shares between its tasks.
#[derive(Debug)]
pub struct Process {
    /// The config file being followed.
    pub config_path: PathBuf,
    /// Where new snapshots go.
    pub publisher: Publisher,
    /// The data plane.
    pub proxy: Proxy,
    /// The config in force, its resolved endpoints and the rollout states;
    /// held briefly, never across a write or a wait for the proxy. Every
    /// hold of it tells the control loop, which looks again at once when
    /// it was sampling slowly (see `controller::control_loop`).
    pub control: ControlLock,
    /// Held by whoever changes rollout states (commands, the control loop,
    /// reloads) for the whole change, before the control lock: changes
    /// never interleave, and the control lock is free while a state is
    /// written.
    pub transitions: tokio::sync::Mutex<()>,
    /// Held by a reload from before it reads the config file until it ends,
    /// before the transition lock: reloads never interleave, so none adopts
    /// a text read before the one in force. Only reloads wait on it.
    pub reloading: tokio::sync::Mutex<()>,
    /// Reload outcomes.
    pub reloads: ReloadCounters,
    /// What the last reload read at the config path when it was refused,
    /// whatever asked for it (the file watch, SIGHUP, the API); `None`
    /// after one that was applied or found nothing to do. The file watch
    /// does not try a refused text again, and counts the config in force
    /// put back after a refusal as a successful reload.
    pub(crate) refused_read: std::sync::Mutex<Option<crate::reload::Contents>>,
    /// Every metric but the rollout families, for `/metrics` (see
    /// [`crate::exposition`]).
    pub registry: prometheus::Registry,
    /// Where control reads the time.
    pub clock: Arc<dyn Clock>,
    /// The data plane's listeners: started by `run`, changed by reloads.
    pub listeners: crate::listeners::Listeners,
    /// How the certificate files of the config in force looked when they
    /// were read (see `reload`): a change of them is a reload.
    certificate_stamps: std::sync::Mutex<Option<crate::reload::CertificateStamps>>,
    /// The Kubernetes side, once started (SPEC section 10); unset without
    /// a `kubernetes` block.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::runtime::Cluster>>,
    /// The config file the process started with: its `stateDir` is the
    /// one it opened, which reloads do not change (see
    /// [`Process::restart_needed`]).
    started_with: weir_config::Config,
}

/// Wall-clock milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Completes once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

// === impl SystemClock ===

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

// === impl ManualClock ===

impl ManualClock {
    /// A clock that reads `now_ms` until moved.
    pub fn at(now_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_ms))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

// === impl Process ===

impl Process {
    /// A process handle over `control`, publishing to `publisher` and
    /// serving through `proxy`, with time from `clock`.
    ///
    /// # Errors
    /// When the metrics registry refuses a metric family.
    pub fn new(
        config_path: PathBuf,
        publisher: Publisher,
        proxy: Proxy,
        control: ControlState,
        clock: Arc<dyn Clock>,
    ) -> prometheus::Result<Process> {
        let (registry, reloads) = crate::exposition::registry(&proxy, publisher.reader())?;
        let started_with = control.file_config().clone();
        Ok(Process {
            config_path,
            publisher,
            proxy,
            control: ControlLock::new(control),
            transitions: tokio::sync::Mutex::new(()),
            reloading: tokio::sync::Mutex::new(()),
            reloads,
            refused_read: std::sync::Mutex::new(None),
            registry,
            clock,
            listeners: crate::listeners::Listeners::default(),
            certificate_stamps: std::sync::Mutex::new(None),
            cluster: std::sync::OnceLock::new(),
            started_with,
        })
    }

    /// The keys of `config` that differ from what the process started
    /// with and take effect only at the next restart: `stateDir`.
    pub fn restart_needed(&self, config: &weir_config::Config) -> Vec<&'static str> {
        crate::reload::restart_keys(&self.started_with, config)
    }

    /// Whether the certificate files, as `now` finds them, differ from how
    /// they looked when the config in force read them; never before they
    /// are first kept (at the start, by `run`).
    pub fn certificates_differ(&self, now: &crate::reload::CertificateStamps) -> bool {
        self.certificate_stamps()
            .as_ref()
            .is_some_and(|in_force| in_force != now)
    }

    /// Keeps `stamps` as how the certificate files in force look.
    pub fn keep_certificate_stamps(&self, stamps: crate::reload::CertificateStamps) {
        *self.certificate_stamps() = Some(stamps);
    }

    fn certificate_stamps(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<crate::reload::CertificateStamps>> {
        self.certificate_stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The time now, from the process's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Publishes `snapshot` and waits (up to a second) until the proxy routes
    /// by it, so that an answer sent after this reflects the new weights.
    pub async fn publish_applied(&self, snapshot: weir_config::Snapshot) -> u64 {
        let version = self.publisher.publish(snapshot);
        self.wait_applied(version).await;
        version
    }

    /// Waits (up to a second) until the proxy routes by snapshot `version`
    /// or a later one. Call it after releasing the control lock: publish
    /// under the lock (so snapshots go out in the order of the states they
    /// come from), wait without it.
    pub async fn wait_applied(&self, version: u64) {
        let mut applied = self.proxy.applied();
        let waited =
            tokio::time::timeout(Duration::from_secs(1), applied.wait_for(|v| *v >= version)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!(
                version,
                "the proxy has not applied the new snapshot within 1 s"
            );
        }
    }
}
