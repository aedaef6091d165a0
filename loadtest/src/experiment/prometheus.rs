//! The scenario's Prometheus: Debian's `prometheus` server on a loopback
//! port, scraping weir's `/metrics` every second, with its data and log in
//! the run directory, so that analysis templates of the scenario can ask it.
//!
//! Stopped by [`Prometheus::stop`], or killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

use super::process::Admin;
use super::reserved_port::ReservedPort;
use super::scenario::{PROMETHEUS_BINARY, PrometheusSpec};

/// How often `/-/ready` is asked while Prometheus starts.
const READY_POLL: Duration = Duration::from_millis(100);

/// A Prometheus started for a run.
#[derive(Debug)]
pub(crate) struct Prometheus {
    child: Child,
    log: PathBuf,
}

/// The binary and the address a scenario's Prometheus will use, chosen
/// before weir starts so that weir's config can name it; the port is
/// reserved for it for the whole run.
#[derive(Debug)]
pub(crate) struct Planned {
    /// The server binary.
    pub(crate) binary: PathBuf,
    /// Where it will listen, held for it.
    port: ReservedPort,
}

// === impl Planned ===

impl Planned {
    /// Checks that the binary exists and reserves a loopback port.
    ///
    /// # Errors
    /// A message saying how to install Prometheus when the binary is
    /// missing, or why no port could be reserved.
    pub(crate) fn new(spec: &PrometheusSpec) -> Result<Self, String> {
        let binary = PathBuf::from(spec.binary.as_deref().unwrap_or(PROMETHEUS_BINARY));
        if !binary.is_file() {
            return Err(format!(
                "the scenario runs Prometheus, and {} is missing: install it with \
                 `apt-get install prometheus` (or set prometheus.binary)",
                binary.display()
            ));
        }
        let port =
            ReservedPort::bind().map_err(|e| format!("reserving a port for Prometheus: {e}"))?;
        Ok(Self { binary, port })
    }

    /// `http://ADDR`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.port.addr)
    }

    /// Starts it scraping `target`'s `/metrics` every second, with its
    /// files under `dir`, and waits until `/-/ready` answers 200.
    ///
    /// # Errors
    /// When it cannot be run, exits, or is not ready within `within` (with
    /// the end of its log).
    pub(crate) async fn start(
        &self,
        target: SocketAddr,
        dir: &Path,
        within: Duration,
    ) -> Result<Prometheus, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        let text = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: weir\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        );
        std::fs::write(&config, text).map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = dir.join("prometheus.log");
        let file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new(&self.binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.port.addr))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let mut prometheus = Prometheus { child, log };
        let admin = Admin::new(self.port.addr, None);
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                return Err(format!(
                    "Prometheus exited with {status}; its log ends:\n{}",
                    prometheus.log_tail(20)
                ));
            }
            if let Ok((StatusCode::OK, _)) = admin.get("/-/ready").await {
                return Ok(prometheus);
            }
            if Instant::now() >= deadline {
                let _ = prometheus.child.kill().await;
                return Err(format!(
                    "Prometheus on {} was not ready within {within:?}; its log ends:\n{}",
                    self.port.addr,
                    prometheus.log_tail(20)
                ));
            }
            sleep(READY_POLL).await;
        }
    }
}

// === impl Prometheus ===

impl Prometheus {
    /// Kills it and waits for the exit.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
