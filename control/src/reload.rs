//! Following the config file: a changed file (edited in place or replaced by
//! rename), SIGHUP or the admin API re-reads it; a file that does not validate
//! is refused and the running config keeps serving. Endpoint names are
//! resolved again every 10 s.
//!
//! Reloads run one at a time, from the read of the file to the end, so the
//! config in force is never older than the last file read; the watcher
//! compares the file with the text in force, so a file that differs from it
//! is applied unless it was refused as it is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use weir_config::{Config, Diagnostic, Diagnostics};

use self::file_watch::FileWatch;
use crate::controller::state::adoption;
use crate::load::{self, Resolved};
use crate::messages;
use crate::process::{Process, stopped};

pub use crate::process::ReloadCounters;

/// How often endpoint names are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot was published with this version.
    Applied(u64),
    /// The file is the same as the config in force.
    Unchanged,
}

/// One difference between the config in force and a new one, as a reload
/// reports it. Routes are named; a route can have several changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A route that was not there.
    RouteAdded(String),
    /// A route that is gone (its rollout with it).
    RouteRemoved(String),
    /// Anything else about a route: hosts, prefix, endpoints, weights,
    /// stickiness, timeouts, steps or analysis.
    RouteEdited(String),
    /// The canary revision of a route changed (or a canary came or went):
    /// with a strategy, a rollout starts or ends.
    CanaryRevision {
        /// The route.
        route: String,
        /// The revision before, if any.
        from: Option<String>,
        /// The revision now, if any.
        to: Option<String>,
    },
    /// A route got a strategy: its rollout state is restored or started.
    StrategyAdded(String),
    /// A route lost its strategy: its rollout ends, the ended state is kept.
    StrategyRemoved(String),
    /// `stateDir` changed: logged, applied at the next restart. Names the
    /// key.
    RestartNeeded(&'static str),
    /// The admin API moved: served at its new address, the old one closed.
    AdminAddress,
    /// Listeners were added, removed or changed: served at once, the ones
    /// gone draining.
    Listeners,
    /// The admin tokens changed: applied at once.
    Tokens,
}

/// Why the reload was asked for, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file changed on disk.
    FileChanged,
    /// The file changed back to the config in force after a refused version.
    FileRestored,
    /// SIGHUP.
    Signal,
    /// `POST /api/v1/reload`.
    Api,
    /// A listener's certificate or key file changed (a Secret rotated),
    /// the config file not.
    CertificatesChanged,
}

/// What was found at the config path: the bytes, or why they could not be
/// read.
pub(crate) type Contents = Result<Vec<u8>, String>;

/// What the certificate and key files of the listeners look like on disk:
/// per path, its device, inode, length and modification time (the file a
/// link leads to), or `None` when it cannot be read. A Secret's volume
/// swaps a `..data` link, which changes the inode.
pub type CertificateStamps = Vec<(PathBuf, Option<(u64, u64, u64, i128)>)>;

/// Reads [`CertificateStamps`] of `paths`; blocking, for a thread off the
/// runtime.
fn stamps(paths: Vec<PathBuf>) -> CertificateStamps {
    use std::os::unix::fs::MetadataExt as _;
    paths
        .into_iter()
        .map(|path| {
            let stamp = std::fs::metadata(&path).ok().map(|m| {
                let modified = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                (m.dev(), m.ino(), m.len(), modified)
            });
            (path, stamp)
        })
        .collect()
}

/// How the certificate and key files of `config`'s listeners look now;
/// blocking (for the start, before serving).
pub fn certificate_stamps_of(config: &Config) -> CertificateStamps {
    stamps(certificate_paths(config))
}

/// The certificate and key files the listeners of `config` read.
fn certificate_paths(config: &Config) -> Vec<PathBuf> {
    config
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|tls| [tls.cert_file.clone(), tls.key_file.clone()])
        .collect()
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
    let mut file = FileWatch::start(process.config_path.clone());
    let mut resolve = tokio::time::interval(RESOLVE_INTERVAL);
    resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resolve.tick().await;
    // What the last refused reload read (`Process::refused_read`), so that
    // a refused file is reported once, not every poll. Only a refusal is
    // kept: a file that differs from the config in force and was not
    // refused as it is now is always applied, whatever was attempted
    // before.
    let refused = || {
        process
            .refused_read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    // The certificate files as the last look found them, when they differed
    // from those in force: a change is applied once it has held for one
    // look (about a second), so that a certificate and its key written one
    // after the other are not refused as a pair that does not match.
    let mut certificates_seen: Option<CertificateStamps> = None;
    // The file's text as the last read found it: a config put in force by
    // another trigger (the API, SIGHUP) that differs from it has the file
    // read again at once, as it would be at the next poll if polls read.
    let mut file_text: Option<Vec<u8>> = None;
    // When a read first found the file gone, and whether that was
    // reported: an editor may remove the file before writing it again, so
    // a file is reported gone (a refused reload, logged and counted once)
    // only when it is still gone [`GONE_REPORTED_AFTER`] later.
    let mut gone_since: Option<Instant> = None;
    let mut gone_said = false;
    let mut published = process.publisher.reader();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            true = published.changed() => {
                // A file refused as it is stays refused, whatever is in force.
                if let Some(text) = &file_text
                    && refused().is_none_or(|refused| refused.as_ref().ok() != Some(text))
                    && process.control.lock_unheard().await.loaded.text.as_bytes() != text.as_slice()
                {
                    file.read_soon();
                }
            }
            () = file.changed() => {
                let paths = certificate_paths(process.control.lock().await.file_config());
                let (read, certificates) = match file.read_with(paths.clone(), move || stamps(paths)).await {
                    Ok((read, certificates)) => (Ok(read), Some(certificates)),
                    Err(error) => (Err(error), None),
                };
                let Some(seen) = contents(read) else {
                    let since = *gone_since.get_or_insert_with(Instant::now);
                    if !gone_said && since.elapsed() >= GONE_REPORTED_AFTER {
                        gone_said = true;
                        let _ = reload(&process, Trigger::FileChanged).await;
                    }
                    continue;
                };
                gone_since = None;
                gone_said = false;
                file_text = seen.as_ref().ok().cloned();
                let in_force = match &seen {
                    Ok(bytes) => process.control.lock().await.loaded.text.as_bytes() == bytes.as_slice(),
                    Err(_) => false,
                };
                if in_force {
                    // A refused file put back as the config in force is a
                    // change of the file that is applied: counted as a success.
                    if puts_back(refused(), &seen) {
                        let _ = reload(&process, Trigger::FileRestored).await;
                        continue;
                    }
                    let Some(certificates) = certificates else { continue };
                    if !process.certificates_differ(&certificates) {
                        certificates_seen = None;
                    } else if certificates_seen.as_ref() == Some(&certificates) {
                        // Applied or refused, these files are not tried again.
                        certificates_seen = None;
                        let _ = reload(&process, Trigger::CertificatesChanged).await;
                        process.keep_certificate_stamps(certificates);
                    } else {
                        certificates_seen = Some(certificates);
                        // The change must hold until the next poll's read.
                        file.read_at_next_poll();
                    }
                    continue;
                }
                if refused().as_ref() == Some(&seen) {
                    continue;
                }
                let _ = reload(&process, Trigger::FileChanged).await;
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                let _ = reload(&process, Trigger::Signal).await;
            }
            _ = resolve.tick() => refresh_names(&process).await,
        }
    }
}

/// Whether `seen`, the text in force, puts back a file that was refused
/// (`refused`): not when the refusal was of this very text (a SIGHUP or
/// `POST /api/v1/reload` refused for a certificate, say), which a read of
/// the unchanged file must not attempt again.
fn puts_back(refused: Option<Contents>, seen: &Contents) -> bool {
    refused.is_some_and(|refused| refused != *seen)
}

/// Re-reads the config file and publishes it if valid; what it read is
/// kept in `Process::refused_read` when it is refused.
///
/// # Errors
/// Every problem of the file; the config in force stays.
pub async fn reload(process: &Process, trigger: Trigger) -> Result<Outcome, Diagnostics> {
    // One reload at a time, from the read to the end: otherwise a reload
    // that read the file first could adopt its text after one that read a
    // newer text, and the older config would stay in force. Only reloads
    // wait on this lock.
    let _reloading = process.reloading.lock().await;
    // Reading and resolving (DNS can take seconds) happen before the control
    // state is locked, so the control loop and the admin API never wait on them.
    // The file and the TLS keys are read off the runtime, never on a thread
    // that serves traffic.
    let path = process.config_path.clone();
    // A process that follows a cluster keeps doing so (the kubernetes block
    // is read at startup only): a file without the block may have no routes.
    let kubernetes = process.cluster.get().is_some();
    // The certificate files as they are before they are read (those the
    // file names now, when it names others), so that one changed during
    // the read is seen as changed afterwards.
    let paths_in_force = certificate_paths(process.control.lock().await.file_config());
    // What was read is kept as the watcher reads it, to be compared.
    let (read, loaded, certificates) = crate::off_runtime::run(move || {
        let before = stamps(paths_in_force.clone());
        match load::read_file(&path) {
            Ok(bytes) => {
                let loaded = load_guarded(&path, bytes.clone(), kubernetes);
                let certificates = match &loaded {
                    Ok(loaded) if certificate_paths(loaded.config()) != paths_in_force => {
                        stamps(certificate_paths(loaded.config()))
                    }
                    _ => before,
                };
                (Ok(bytes), loaded, Some(certificates))
            }
            Err(error) => (
                Err(error.to_string()),
                Err(load::unreadable_config(&path, error)),
                None,
            ),
        }
    })
    .await
    .unwrap_or_else(|error| {
        let message = format!("the config reader failed: {error}");
        let diagnostics = Diagnostics(vec![Diagnostic {
            file: process.config_path.display().to_string(),
            location: None,
            path: String::new(),
            message: message.clone(),
        }]);
        (Err(message), Err(diagnostics), None)
    });
    let outcome = finish(process, trigger, loaded).await;
    if let (Ok(_), Some(certificates)) = (&outcome, certificates) {
        process.keep_certificate_stamps(certificates);
    }
    *process
        .refused_read
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = outcome.is_err().then_some(read);
    outcome
}

/// Resolves, adopts and publishes a loaded config, or reports why not. The
/// caller holds the reload lock.
async fn finish(
    process: &Process,
    trigger: Trigger,
    loaded: Result<load::Loaded, Diagnostics>,
) -> Result<Outcome, Diagnostics> {
    let checked = match loaded {
        Ok(loaded) => Resolved::resolve(&loaded.document)
            .await
            .map(|resolved| (loaded, resolved)),
        Err(diagnostics) => Err(diagnostics),
    };
    // A reload changes rollout states: it waits for other changes to end,
    // and holds the transition lock until its states are kept. As for
    // commands and ticks, the control lock is held only to decide and to
    // keep, never while a state is written, so status reads, metrics and
    // token checks do not wait for a disk; the states are still written
    // before the new config takes effect.
    let writing = process.transitions.lock().await;
    let adopted = match checked {
        Ok((loaded, resolved)) => adopt(process, trigger, loaded, resolved).await,
        Err(diagnostics) => Err(diagnostics),
    };
    let version = match adopted {
        Ok(Some(version)) => version,
        Ok(None) => return Ok(Outcome::Unchanged),
        Err(diagnostics) => {
            tracing::error!(
                ?trigger,
                errors = diagnostics.0.len(),
                "{}",
                messages::CONFIG_REFUSED
            );
            for d in &diagnostics.0 {
                tracing::error!("{d}");
            }
            // Counted once the reasons are logged: whoever sees the count
            // finds them in the log.
            process.reloads.failure.inc();
            let errors: Vec<String> = diagnostics.0.iter().map(ToString::to_string).collect();
            let mut control = process.control.lock().await;
            control.announce_reload(&format!("{trigger:?}"), None, &errors, process.now_ms());
            return Err(diagnostics);
        }
    };
    drop(writing);
    // CanaryRoutes may name the file's analysis templates, and a file
    // route may now match what a CanaryRoute matches: compile them again.
    if let Some(cluster) = process.cluster.get() {
        cluster.resync();
    }
    let mut control = process.control.lock().await;
    control.announce_reload(
        &format!("{trigger:?}"),
        Some(version),
        &[],
        process.now_ms(),
    );
    drop(control);
    process.wait_applied(version).await;
    tracing::info!(?trigger, version, "config reloaded");
    process.reloads.success.inc();
    Ok(Outcome::Applied(version))
}

/// Adopts a valid config: its new listeners bound, decided under the
/// control lock, the changed rollout states written without it, then kept
/// and published under it again, the listeners served and the
/// certificates read applied. Returns the snapshot version
/// published, or `None` for a file change that changes nothing. The caller
/// holds the transition lock.
async fn adopt(
    process: &Process,
    trigger: Trigger,
    loaded: load::Loaded,
    resolved: Resolved,
) -> Result<Option<u64>, Diagnostics> {
    let (returning, store) = {
        let control = process.control.lock().await;
        if loaded.text == control.loaded.text && trigger == Trigger::FileChanged {
            return Ok(None);
        }
        for change in changes(control.file_config(), loaded.config()) {
            log_change(trigger, &change);
        }
        (
            control.returning_strategies(loaded.config()),
            control.store(),
        )
    };
    // The listeners the file adds or changes are bound before anything is
    // decided: a port that cannot be had refuses the file, and nothing
    // changes. Closed again if the file is refused later.
    let bound = process
        .listeners
        .bind(&loaded.document, &loaded.tls)
        .map_err(Diagnostics)?;
    let stored = adoption::load_returning(Arc::clone(&store), returning, &loaded)
        .await
        .map_err(Diagnostics)?;
    let now = process.now_ms();
    let certificate_warnings = loaded.certificate_warnings(crate::process::now_ms());
    let adoption = process
        .control
        .lock()
        .await
        .decide_adoption(loaded, resolved, stored, now)
        .map_err(Diagnostics)?;
    adoption.write(store).await.map_err(Diagnostics)?;

    let mut control = process.control.lock().await;
    control.keep_adoption(adoption);
    // New listeners serve, the ones gone drain; certificates are read again
    // at every reload and applied here.
    process.listeners.commit(bound);
    for warning in certificate_warnings {
        tracing::warn!("{warning}");
    }
    Ok(Some(process.publisher.publish(control.snapshot())))
}

/// How long the config file may be gone before that is reported (see
/// `follow`): a poll's period, so a file gone is reported at the first or
/// second poll after.
const GONE_REPORTED_AFTER: Duration = file_watch::BACKSTOP_INTERVAL;

/// What a read of the config file found; `None` while there is none (an
/// editor may remove it before writing it again).
fn contents(
    read: Result<Result<Vec<u8>, load::ReadError>, crate::off_runtime::OffRuntimeError>,
) -> Option<Contents> {
    match read {
        Ok(Ok(bytes)) => Some(Ok(bytes)),
        Ok(Err(load::ReadError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            None
        }
        Ok(Err(error)) => Some(Err(error.to_string())),
        Err(error) => Some(Err(format!("the config reader failed: {error}"))),
    }
}

/// [`load::load_bytes`], with a panic in validation turned into a refused
/// reload: a bug in the checks must not take down a process that is serving.
fn load_guarded(
    path: &std::path::Path,
    bytes: Vec<u8>,
    kubernetes: bool,
) -> Result<load::Loaded, Diagnostics> {
    let load = std::panic::AssertUnwindSafe(|| load::load_bytes(path, bytes, kubernetes));
    std::panic::catch_unwind(load).unwrap_or_else(|panic| {
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

/// The keys in which `new` differs from `old` that only a restart applies:
/// `stateDir`.
pub fn restart_keys(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.state_dir != new.state_dir {
        keys.push("stateDir");
    }
    keys
}

/// Logs `change`, in the span of its route when it has one.
fn log_change(trigger: Trigger, change: &Change) {
    let route = match change {
        Change::RouteAdded(r)
        | Change::RouteRemoved(r)
        | Change::RouteEdited(r)
        | Change::StrategyAdded(r)
        | Change::StrategyRemoved(r)
        | Change::CanaryRevision { route: r, .. } => Some(r.as_str()),
        Change::RestartNeeded(_) | Change::Listeners | Change::AdminAddress | Change::Tokens => {
            None
        }
    };
    let _route = route.map(|r| crate::controller::route_span(r).entered());
    match change {
        Change::RestartNeeded(key) => tracing::warn!(?trigger, key, "{}", messages::RESTART_NEEDED),
        change => tracing::info!(?trigger, ?change, "config change"),
    }
}

/// What `new` changes compared with `old`, routes in the order of `old`
/// then the new ones; empty when nothing does. Pure: the table tests of
/// reload decisions start here.
pub fn changes(old: &Config, new: &Config) -> Vec<Change> {
    let mut changes: Vec<Change> = Vec::new();
    if crate::listeners::listeners_differ(&old.listeners, &new.listeners) {
        changes.push(Change::Listeners);
    }
    if old.admin.address != new.admin.address {
        changes.push(Change::AdminAddress);
    }
    changes.extend(
        restart_keys(old, new)
            .into_iter()
            .map(Change::RestartNeeded),
    );
    if (&old.admin.reader_token, &old.admin.writer_token)
        != (&new.admin.reader_token, &new.admin.writer_token)
    {
        changes.push(Change::Tokens);
    }
    for before in &old.routes {
        let name = before.name.to_string();
        let Some(after) = new.routes.iter().find(|r| r.name == before.name) else {
            changes.push(Change::RouteRemoved(name));
            continue;
        };
        if before == after {
            continue;
        }
        let revision = |r: &weir_config::Route| r.canary.as_ref().map(|c| c.revision.to_string());
        let (from, to) = (revision(before), revision(after));
        if from != to {
            changes.push(Change::CanaryRevision {
                route: name.clone(),
                from,
                to,
            });
        }
        match (before.strategy.is_some(), after.strategy.is_some()) {
            (false, true) => changes.push(Change::StrategyAdded(name.clone())),
            (true, false) => changes.push(Change::StrategyRemoved(name.clone())),
            _ => {}
        }
        let mut same_rest = after.clone();
        same_rest.canary.clone_from(&before.canary);
        same_rest.strategy.clone_from(&before.strategy);
        let canary_rest_same = match (&before.canary, &after.canary) {
            (Some(b), Some(a)) => b.endpoints == a.endpoints,
            _ => true,
        };
        let strategy_same = match (&before.strategy, &after.strategy) {
            (Some(b), Some(a)) => b == a,
            _ => true,
        };
        if same_rest != *before || !canary_rest_same || !strategy_same {
            changes.push(Change::RouteEdited(name));
        }
    }
    for after in &new.routes {
        if !old.routes.iter().any(|r| r.name == after.name) {
            changes.push(Change::RouteAdded(after.name.to_string()));
        }
    }
    changes
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

pub mod file_watch;
#[cfg(test)]
mod tests;
