//! Following the config file: a changed file (edited in place or replaced by
//! rename), SIGHUP or the admin API re-reads it; a file that does not validate
//! is refused and the running config keeps serving. Endpoint names are
//! resolved again every 10 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;
use weir_config::Diagnostics;

use crate::controller::now_ms;
use crate::load::{self, Resolved};
use crate::run::Process;

/// How often the config file is read to look for a change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often endpoint names are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// Counts of reload outcomes (the initial load is not counted).
#[derive(Debug, Default)]
pub struct ReloadCounters {
    /// Reloads applied.
    pub success: AtomicU64,
    /// Reloads refused.
    pub failure: AtomicU64,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot was published with this version.
    Applied(u64),
    /// The file is the same as the config in force.
    Unchanged,
}

/// Why the reload was asked for, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file changed on disk.
    FileChanged,
    /// SIGHUP.
    Signal,
    /// `POST /api/v1/reload`.
    Api,
}

/// Watches the file, SIGHUP and DNS until `stop` turns true.
pub async fn follow(process: Arc<Process>, mut stop: watch::Receiver<bool>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP; file changes are still followed");
            None
        }
    };
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resolve = tokio::time::interval(RESOLVE_INTERVAL);
    resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resolve.tick().await;
    // The file as last attempted, so a refused file is reported once, not every poll.
    let mut last_attempt: Option<String> = None;
    loop {
        tokio::select! {
            () = crate::run::stopped(&mut stop) => return,
            _ = poll.tick() => {
                let Ok(text) = tokio::fs::read_to_string(&process.config_path).await else { continue };
                let unchanged = { process.control.lock().await.loaded.text == text };
                if unchanged {
                    last_attempt = None;
                    continue;
                }
                if last_attempt.as_deref() == Some(text.as_str()) {
                    continue;
                }
                last_attempt = Some(text);
                let _ = reload(&process, Trigger::FileChanged).await;
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                last_attempt = None;
                let _ = reload(&process, Trigger::Signal).await;
            }
            _ = resolve.tick() => refresh_names(&process).await,
        }
    }
}

/// Re-reads the config file and publishes it if valid.
///
/// # Errors
/// Every problem of the file; the config in force stays.
pub async fn reload(process: &Process, trigger: Trigger) -> Result<Outcome, Diagnostics> {
    // Reading and resolving (DNS can take seconds) happen before the control
    // state is locked, so the control loop and the admin API never wait on them.
    let checked = match load_guarded(&process.config_path) {
        Ok(loaded) => Resolved::resolve(&loaded.document)
            .await
            .map(|resolved| (loaded, resolved)),
        Err(diagnostics) => Err(diagnostics),
    };
    let mut control = process.control.lock().await;
    // Certificates are read again at every reload; applied once it succeeds.
    let mut certificates = Vec::new();
    let adopted = match checked {
        Ok((loaded, resolved)) => {
            certificates = loaded
                .config()
                .listeners
                .iter()
                .zip(&loaded.tls)
                .filter_map(|(l, tls)| Some((l.name.clone(), Arc::clone(tls.as_ref()?))))
                .collect();
            if loaded.text == control.loaded.text && trigger == Trigger::FileChanged {
                return Ok(Outcome::Unchanged);
            }
            let (old, new) = (control.config(), loaded.config());
            if old.listeners != new.listeners
                || old.admin.address != new.admin.address
                || old.state_dir != new.state_dir
            {
                tracing::warn!(
                    "listener, admin address and stateDir changes take effect at the next restart"
                );
            }
            control
                .adopt(loaded, resolved, now_ms())
                .await
                .map_err(Diagnostics)
        }
        Err(diagnostics) => Err(diagnostics),
    };
    if let Err(diagnostics) = adopted {
        process.reloads.failure.fetch_add(1, Relaxed);
        tracing::error!(
            ?trigger,
            errors = diagnostics.0.len(),
            "config refused; the running config keeps serving"
        );
        for d in &diagnostics.0 {
            tracing::error!("{d}");
        }
        return Err(diagnostics);
    }
    for (name, cell) in &process.listener_tls {
        if let Some((_, config)) = certificates.iter().find(|(n, _)| n == name) {
            cell.store(Arc::clone(config));
        }
    }
    let version = process.publisher.publish(control.snapshot());
    drop(control);
    process.wait_applied(version).await;
    process.reloads.success.fetch_add(1, Relaxed);
    tracing::info!(?trigger, version, "config reloaded");
    Ok(Outcome::Applied(version))
}

/// [`load::load`], with a panic in validation turned into a refused reload:
/// a bug in the checks must not take down a process that is serving.
fn load_guarded(path: &std::path::Path) -> Result<load::Loaded, Diagnostics> {
    std::panic::catch_unwind(|| load::load(path)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(Diagnostics(vec![weir_config::Diagnostic {
            file: path.display().to_string(),
            location: None,
            path: String::new(),
            message: format!(
                "validating the file failed inside weir ({what}); the file is refused, please report this as a bug"
            ),
        }]))
    })
}

async fn refresh_names(process: &Process) {
    let resolved = process.control.lock().await.resolved.clone();
    if !resolved.has_names() {
        return;
    }
    let fresh = resolved.refresh().await;
    let mut control = process.control.lock().await;
    // A reload meanwhile brought its own, newer resolution.
    if fresh != control.resolved && control.resolved == resolved {
        control.resolved = fresh;
        let version = process.publisher.publish(control.snapshot());
        drop(control);
        process.wait_applied(version).await;
        tracing::info!(version, "endpoint addresses changed");
    }
}
