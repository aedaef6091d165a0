//! `weir run`: load the config, bind the listeners, serve, follow config
//! changes, and drain on SIGTERM or SIGINT. Only wiring: the parts share
//! a [`Process`] handle and know nothing of this module.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use weir_config::Diagnostics;
use weir_proxy::{Metrics, Proxy};

use crate::admin::{self, AdminState};
use crate::cli::{LogFormat, RunArgs};
use crate::cluster::counters::Replica;
use crate::cluster::runtime::{self, Settings};
use crate::cluster::status_store::StatusStore;
use crate::controller::state::RestoreError;
use crate::controller::{self, ControlState};
use crate::listeners::{Bound, ServeSettings, addresses, bind};
use crate::load::{self, Resolved};
use crate::process::{Clock, Process, SystemClock};
use crate::reload;

pub use crate::process::stopped;

/// How long an idle thread of tokio's blocking pool is kept (see `main`):
/// for as long as weir runs, in practice.
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long in-flight requests may run after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the proxy until a signal stops it; exit 0 after a clean drain.
/// Logging is set up by the caller ([`crate::telemetry::init`]) with
/// `log_format`, which also shapes the refusals printed before serving.
pub fn main(args: RunArgs, log_format: LogFormat) -> ExitCode {
    // One multi-threaded runtime (a worker per CPU weir may use), not one
    // current-thread runtime per core with its own SO_REUSEPORT listener
    // and pools. Both were measured, with a prototype of the second (each
    // worker a thread with a current-thread runtime and its own listener,
    // upstream connections kept per thread), release build, own HTTP/1
    // path, `wrk -t2 -c64` 8 s, weir, wrk and the upstreams sharing both
    // CPUs, proxy CPU time per request:
    //   two workers:   multi-thread 16.5 / 16.2 µs, 53,437 / 53,034 req/s,
    //                  p99 2.9 / 3.1 ms;
    //                  per core     16.7 / 15.8 µs, 48,958 / 51,555 req/s,
    //                  p99 5.4 / 4.0 ms.
    // The cost per request is the same within the noise; per-core listeners
    // balance worse (the kernel hashes connections to listeners, a busy
    // worker cannot hand work to an idle one), which shows in p99.
    //
    // On one CPU (the shared peer harness, weir alone on CPU 1) the
    // multi-threaded runtime has one worker beside the main thread, and
    // the process is multi-threaded; so the kernel takes and drops an
    // atomic reference on the socket at every socket call (`fdget` and
    // `fput`: 1.5 % of the proxy's CPU against 0.7 % for HAProxy, `perf
    // record`). With one CPU weir therefore runs on one thread: a
    // current-thread runtime, and no thread waiting for blocking work
    // between uses (blocking work gets a thread per call, see
    // `off_runtime`). Measured with `perf record -e cpu-clock -F 4000`
    // on weir alone on CPU 1, `wrk -t1 -c64 -d8` on CPU 0: `fdget` and
    // `fput` fell from 173 to 102 ns per request, some 0.7 % of the
    // 10 µs a keep-alive request costs; eight interleaved 8 s runs of the
    // whole process were the same within their noise (10.08 against
    // 10.11 µs per request, runs ranging over ±0.3 µs).
    //
    // weir's own blocking work never uses tokio's blocking pool; the
    // Kubernetes client still does (a kubeconfig naming its API server by
    // name, exec credentials). A pool thread, once made, is kept: tokio
    // panics the task that asks for one when the pool has none and none
    // can be made, and that task would be a watcher or the elector.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|cpus| cpus.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let built = builder
        .enable_all()
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build();
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.config, args.kubernetes)) {
        Ok(()) => ExitCode::SUCCESS,
        // Said once, whatever `RUST_LOG` lets through: as a record of the
        // log's JSON shape (every line of stderr is one), as plain lines
        // for a person otherwise.
        // A stderr that cannot be written loses the line, and the exit
        // code still tells.
        Err(error) => {
            let line = match log_format {
                LogFormat::Json => serde_json::json!({
                    "timestamp": k8s_openapi::jiff::Timestamp::now().to_string(),
                    "level": "ERROR",
                    "message": error_line(&error),
                    "target": module_path!(),
                })
                .to_string(),
                LogFormat::Text => format!("weir: {}", error_line(&error)),
            };
            let _ = writeln!(std::io::stderr(), "{line}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: PathBuf, kubernetes_flag: bool) -> anyhow::Result<()> {
    // Peers reading /api/v1/counters tell a restart by this time.
    let started_at = crate::process::now_ms();
    // Installed first, so a SIGTERM during startup is a clean stop, not a kill.
    let stop_signal = StopSignal::install()?;
    let loaded = match load::load_with(&config_path, kubernetes_flag) {
        Ok(loaded) => loaded,
        Err(diagnostics) => return Err(config_errors(&config_path, &diagnostics)),
    };
    let resolved = match Resolved::resolve(&loaded.document).await {
        Ok(resolved) => resolved,
        Err(diagnostics) => anyhow::bail!(
            "{} has endpoints that do not resolve:\n{diagnostics}",
            config_path.display()
        ),
    };
    load::log_certificate_warnings(&loaded);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = loaded.config().clone();
    // The Kubernetes client is made before anything is restored: the
    // CanaryRoutes' states live in their status. Reaching the API server is
    // left to the watchers, which retry (readiness waits for them).
    let kubernetes = config
        .kubernetes
        .clone()
        .or_else(|| kubernetes_flag.then(weir_config::Kubernetes::default));
    let cluster_parts = match kubernetes {
        Some(kubernetes) => {
            let service_host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
            let mut kube_config = kube_config(credentials(service_host.as_deref())).await?;
            // kube's own retry of 429/503/504 (15 times, up to minutes) would
            // hide an API server that answers 503 from the watchers' backoff
            // and its log line; every caller here retries on its own.
            kube_config.default_retry = false;
            let client = kube::Client::try_from(kube_config)
                .context("cannot build the Kubernetes client")?;
            let settings = Settings::from_env(kubernetes);
            tracing::info!(identity = %settings.identity, namespace = %settings.namespace, candidate = settings.is_candidate(), "following the cluster");
            let statuses = Arc::new(StatusStore::new(
                client.clone(),
                tokio::runtime::Handle::current(),
                &settings.identity,
            ));
            Some((client, settings, statuses))
        }
        None => None,
    };
    let cluster_store = cluster_parts
        .as_ref()
        .map(|(_, _, statuses)| Arc::clone(statuses) as Arc<dyn crate::persist::StateStore>);
    // Held until the process ends: one process per state directory. A
    // directory where no lock file can be made (read-only, say) is not
    // refused for it: a config whose routes never transition writes
    // nothing there, and a failed state write is reported when it happens.
    let _state_dir_lock = match crate::persist::StateDirLock::acquire(&config.state_dir) {
        Ok(lock) => Some(lock),
        Err(held @ crate::persist::StateDirLockError::Held(_)) => {
            let diagnostic = loaded.document.diagnostic(
                "stateDir",
                format!("{}: {held}", config.state_dir.display()),
            );
            anyhow::bail!("{diagnostic}");
        }
        Err(crate::persist::StateDirLockError::Io(error)) => {
            tracing::warn!(
                state_dir = %config.state_dir.display(),
                %error,
                "the state directory cannot be locked; another weir process started on it would not be stopped"
            );
            None
        }
    };
    // Bind everything before serving anything, so a taken port fails the
    // start; and before the state is restored, which may start a rollout
    // and write it: a start that fails leaves the state directory as it was.
    let listeners = match Bound::all(&loaded.document, &loaded.tls) {
        Ok(bound) => bound,
        Err(diagnostics) => anyhow::bail!("{}", Diagnostics(diagnostics)),
    };
    let shared_limit = descriptor_budget(
        config
            .listeners
            .iter()
            .map(|l| l.max_connections)
            .fold(0, usize::saturating_add),
    );
    // Named as a reload names it: the file, the line, the key.
    let admin_socket = match bind(config.admin.address, &addresses(&config)) {
        Ok(socket) => socket,
        Err(error) => {
            let message = format!(
                "the admin API cannot listen on {}: {error}",
                config.admin.address
            );
            anyhow::bail!("{}", loaded.document.diagnostic("admin.address", message));
        }
    };

    let forwarding = forwarding_path()?;
    // Off the runtime: the store may wait for a task of the runtime (the
    // cluster's status writes), which must not need the waiting thread.
    let now = clock.now_ms();
    let restored = crate::off_runtime::run(move || {
        ControlState::restore_beside(loaded, resolved, cluster_store, now)
    })
    .await
    .map_err(|error| anyhow::anyhow!("cannot restore the rollout state: {error}"))?;
    let control = match restored {
        Ok(control) => control,
        // A config behind a promotion is refused as a reload would be.
        Err(RestoreError::Config(diagnostics)) => {
            return Err(config_errors(&config_path, &diagnostics));
        }
        Err(RestoreError::State(problems)) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::bail!("cannot restore the rollout state:\n{}", list.join("\n"));
        }
    };

    let snapshot = control.snapshot();
    let (publisher, reader) = weir_config::channel(snapshot);
    let metrics = Arc::new(Metrics::new());
    let proxy = Proxy::new(reader, Arc::clone(&metrics));
    let process = Arc::new(
        Process::new(config_path, publisher, proxy.clone(), control, clock)
            .context("metrics registry")?,
    );
    // The certificates read at the start: a change of their files is a reload.
    process.keep_certificate_stamps(reload::certificate_stamps_of(&config));
    let hooks = Arc::new(
        crate::webhooks::Hooks::new(&process.registry, &config.notifications)
            .context("metrics registry")?,
    );
    // Notifications the last run could not deliver go first.
    match hooks.notifier.restore_pending(&config.state_dir) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "notifications left from the last run queued again"),
        Err(error) => tracing::warn!("{error}; those notifications are not sent"),
    }
    // What is not delivered yet is kept in stateDir as it changes, so that
    // a crash loses (almost) none of it.
    let (journal_stop, journal_stop_rx) = watch::channel(false);
    let journal = tokio::spawn({
        let hooks = Arc::clone(&hooks);
        let dir = config.state_dir.clone();
        async move { hooks.notifier.journal(dir, journal_stop_rx).await }
    });
    process.control.lock().await.set_hooks(Arc::clone(&hooks));

    let (stop_tx, stop_rx) = watch::channel(false);
    process.listeners.start(
        ServeSettings {
            proxy: proxy.clone(),
            forwarding,
            shared_limit,
            drain_timeout: DRAIN_TIMEOUT,
        },
        listeners,
    );

    let replica = Replica::detect(admin_socket.local_addr().ok(), started_at);
    let admin_state = Arc::new(AdminState::new(Arc::clone(&process)).with_replica(replica));
    // Weak: the process holds the starter, and the admin state the process.
    let state = Arc::downgrade(&admin_state);
    process.listeners.serve_admin(
        config.admin.address,
        admin_socket,
        Box::new(move |socket, stop| {
            if let Some(state) = state.upgrade() {
                tokio::spawn(admin::serve(socket, state, stop));
            }
        }),
    );
    tokio::spawn(reload::follow(Arc::clone(&process), stop_rx.clone()));
    tokio::spawn(controller::run(Arc::clone(&process), stop_rx.clone()));
    match cluster_parts {
        Some((client, mut settings, statuses)) => {
            let token = config
                .admin
                .reader_token
                .clone()
                .or_else(|| config.admin.writer_token.clone());
            let process = Arc::clone(&process);
            let admin_state = Arc::clone(&admin_state);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                // A config that does not say whether to serve the Gateway
                // API: asked of the cluster first (`/readyz` waits for it).
                // Not served, it stays unsaid: `start` asks again later.
                if settings.kubernetes.gateway_api.is_none() {
                    let served = tokio::select! {
                        served = runtime::gateway_api_served(&client) => served,
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    };
                    if served {
                        settings.kubernetes.gateway_api = Some(true);
                    }
                }
                let cluster = runtime::start(
                    Arc::clone(&process),
                    client,
                    settings,
                    statuses,
                    token,
                    stop,
                );
                let _ = process.cluster.set(Arc::clone(&cluster));
                // Ready once the first full lists of every watched kind are applied.
                let mut ready = cluster.ready.clone();
                if ready.wait_for(|ready| *ready).await.is_ok() {
                    admin_state.set_ready(true);
                }
            });
        }
        None => admin_state.set_ready(true),
    }

    stop_signal.recv().await;
    tracing::info!("stopping: no new connections; draining in-flight requests");
    admin_state.set_ready(false);
    let _ = stop_tx.send(true);
    let cut = process.listeners.shut_down().await;
    if cut > 0 {
        tracing::warn!(
            connections = cut,
            "drain deadline reached with connections still open"
        );
    }
    // The admin API outlives the listeners, so /readyz can say 503 during the drain.
    process.listeners.stop_admin();
    // What is not delivered yet waits in stateDir for the next start,
    // written once more after the journal's last write.
    let _ = journal_stop.send(true);
    let _ = journal.await;
    match hooks.notifier.save_pending(&config.state_dir) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "undelivered notifications kept for the next start"),
        Err(error) => tracing::warn!(%error, "undelivered notifications are lost"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where the Kubernetes credentials come from (SPEC section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// The pod's service account.
    InCluster,
    /// `KUBECONFIG`, else `~/.kube/config`.
    Kubeconfig,
}

/// The credentials to use, given `KUBERNETES_SERVICE_HOST`: in a pod (the
/// variable set and not empty) its service account, even when a kubeconfig
/// is around too; elsewhere the kubeconfig.
fn credentials(service_host: Option<&str>) -> Credentials {
    match service_host {
        Some(host) if !host.trim().is_empty() => Credentials::InCluster,
        _ => Credentials::Kubeconfig,
    }
}

/// The client configuration from `credentials`. A pod whose service
/// account cannot be used (its token or CA not mounted) falls back to the
/// kubeconfig, saying why; the error names both when neither works.
async fn kube_config(credentials: Credentials) -> anyhow::Result<kube::Config> {
    match credentials {
        Credentials::InCluster => match kube::Config::incluster() {
            Ok(mut config) => {
                config.apply_debug_overrides();
                Ok(config)
            }
            Err(in_cluster) => {
                tracing::warn!(error = %in_cluster, "KUBERNETES_SERVICE_HOST is set but the pod's service account cannot be used; trying KUBECONFIG");
                kube::Config::infer().await.with_context(|| {
                    format!(
                        "no Kubernetes credentials: the in-cluster service account cannot be \
                         used ({in_cluster}) and there is no usable KUBECONFIG"
                    )
                })
            }
        },
        Credentials::Kubeconfig => kube::Config::infer().await.context(
            "no Kubernetes credentials: not in a pod (KUBERNETES_SERVICE_HOST is not set) and no \
             usable KUBECONFIG",
        ),
    }
}

/// An error and its causes on one line, as anyhow's `{:#}` writes them,
/// without a cause the line already says: some errors (kube's, for one)
/// write their own cause, which the chain would repeat.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The error of a config refused at start: each diagnostic logged, and the
/// file named with all of them.
fn config_errors(config_path: &Path, diagnostics: &Diagnostics) -> anyhow::Error {
    anyhow::anyhow!(
        "{} has {} error(s):\n{diagnostics}",
        config_path.display(),
        diagnostics.0.len()
    )
}

/// Descriptors the proxy's connections never use: the admin API's, the
/// state and config files', the control plane's connections, the
/// runtime's own.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft limit of open files to the hard limit, keeps the last
/// [`RESERVED_DESCRIPTORS`] from the proxy's connections (see
/// `weir_proxy::descriptors`), and returns a limit shared by every listener
/// when their `maxConnections` add up to more than half of what is left
/// (each client connection may need an upstream connection too). `None`:
/// no shared limit is needed.
fn descriptor_budget(listeners_total: usize) -> Option<Arc<tokio::sync::Semaphore>> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(%error, "cannot raise the open-file limit");
        }
    }
    let nofile = getrlimit(Resource::Nofile).current?;
    // The proxy's connections, clients' and upstreams' together, stay
    // below the reserve, however many HTTP/2 streams need upstreams.
    weir_proxy::descriptors::keep_from(nofile.saturating_sub(RESERVED_DESCRIPTORS));
    let budget = nofile.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    let budget = usize::try_from(budget).unwrap_or(usize::MAX).max(1);
    if listeners_total <= budget {
        return None;
    }
    tracing::info!(
        open_files = nofile,
        connections = budget,
        "the listeners' maxConnections add up to more than the open-file limit allows; client connections are capped"
    );
    Some(Arc::new(tokio::sync::Semaphore::new(budget)))
}

/// SIGTERM and SIGINT, installed once.
struct StopSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> anyhow::Result<StopSignal> {
        use tokio::signal::unix::{SignalKind, signal};
        // SIGHUP asks for a reload, and is followed once the reloads are
        // (`reload::follow`). Its handler is installed here, first, and
        // stays for the process's lifetime: a SIGHUP during the start (a
        // `systemctl reload` right after a start) killed weir, as SIGHUP's
        // default action does. One that comes before this is read again
        // by the reload's first look at the file.
        if let Err(error) = signal(SignalKind::hangup()) {
            tracing::warn!(%error, "cannot install the SIGHUP handler yet");
        }
        Ok(StopSignal {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// The HTTP/1 forwarding path named by `WEIR_FORWARDING_PATH` (`own`, the
/// default, or `hyper`): a switch for the deployment, not for the routes, so
/// it lives in the environment rather than in `weir.yaml`.
fn forwarding_path() -> anyhow::Result<weir_proxy::http1::ForwardingPath> {
    match std::env::var("WEIR_FORWARDING_PATH") {
        Err(_) => Ok(weir_proxy::http1::ForwardingPath::default()),
        Ok(name) => weir_proxy::http1::ForwardingPath::from_name(&name)
            .context("environment variable WEIR_FORWARDING_PATH"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC section 10: the in-cluster service account, else `KUBECONFIG`.
    /// A pod that also has a kubeconfig (mounted, or `KUBECONFIG` set) uses
    /// its service account all the same.
    #[test]
    fn a_pod_uses_its_service_account_before_any_kubeconfig() {
        assert_eq!(credentials(Some("10.96.0.1")), Credentials::InCluster);
        assert_eq!(
            credentials(Some("kubernetes.default.svc")),
            Credentials::InCluster
        );
        assert_eq!(credentials(None), Credentials::Kubeconfig);
        assert_eq!(credentials(Some("")), Credentials::Kubeconfig);
        assert_eq!(credentials(Some(" ")), Credentials::Kubeconfig);
    }

    /// An error that writes its own cause, as kube's do.
    #[derive(Debug)]
    struct SaysItsCause(std::io::Error);

    impl std::fmt::Display for SaysItsCause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failed to read kubeconfig: {}", self.0)
        }
    }

    impl std::error::Error for SaysItsCause {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_line_says_each_cause_once() {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(SaysItsCause(missing())).context("no credentials");
        assert_eq!(
            format!("{error:#}"),
            "no credentials: failed to read kubeconfig: no such file: no such file",
            "anyhow's own line repeats the cause"
        );
        assert_eq!(
            error_line(&error),
            "no credentials: failed to read kubeconfig: no such file"
        );

        let plain = anyhow::Error::new(missing())
            .context("reading weir.yaml")
            .context("cannot start");
        assert_eq!(
            error_line(&plain),
            "cannot start: reading weir.yaml: no such file",
            "a cause not yet said is kept"
        );
    }
}
