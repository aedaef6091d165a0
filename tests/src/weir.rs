//! A `weir run` process with its own temp dir, config file and log.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

use crate::config::WeirConfig;
use crate::metrics::Metrics;
use crate::{ReservedPort, binary, wait_until};

/// How long weir may take from spawn to `/readyz` 200.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// How many times a start is retried when a picked port was taken.
const START_ATTEMPTS: usize = 5;

/// How long a reload may take to show in `/metrics` (SPEC: applied within
/// 1 s; the rest is slack for a loaded 2-core machine).
pub const RELOAD_LIMIT: Duration = Duration::from_secs(5);

/// The addresses weir was told to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    /// The plain HTTP listener (HTTP/1.1 and h2c).
    pub http: SocketAddr,
    /// The TLS listener, when the config asked for one.
    pub https: Option<SocketAddr>,
    /// The admin API.
    pub admin: SocketAddr,
}

/// A running `weir run --config FILE --log-format text` (or `json`, see
/// [`WeirConfig::log_json`]). Killed on drop; if
/// the test is failing then, its log is printed and its temp dir kept.
#[derive(Debug)]
pub struct Weir {
    /// Where it listens.
    pub addrs: Addrs,
    /// The config last written.
    pub config: WeirConfig,
    // The ports in `addrs`, kept from other tests for as long as this weir
    // may (re)bind them: across a `kill9` and `restart` too.
    _reserved: Vec<ReservedPort>,
    dir: Option<TempDir>,
    dir_path: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
    writes: u64,
}

// === impl Weir ===

impl Weir {
    /// Writes `config` into a fresh temp dir with freshly reserved ports,
    /// starts weir and waits until `GET /readyz` answers 200. The whole start
    /// is retried when weir exits because a port was taken in between.
    ///
    /// # Panics
    /// When weir is missing, exits, or is not ready within 20 s; the panic
    /// message holds its log.
    pub async fn start(config: WeirConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weir-e2e-")
            .tempdir()
            .expect("creating a temp dir");
        let dir_path = dir.path().to_path_buf();
        if config.tls {
            write_self_signed(&dir_path);
        }
        for attempt in 1..=START_ATTEMPTS {
            let (addrs, reserved) = reserve_addrs(config.tls);
            std::fs::write(dir_path.join("weir.yaml"), config.render(&addrs))
                .expect("writing weir.yaml");
            let child = spawn(&dir_path, &config, false);
            let mut weir = Self {
                addrs,
                _reserved: reserved,
                config: config.clone(),
                dir: None,
                dir_path: dir_path.clone(),
                child,
                exit: None,
                writes: 0,
            };
            match weir.wait_ready().await {
                Ok(()) => {
                    weir.dir = Some(dir);
                    return weir;
                }
                Err(log) if attempt < START_ATTEMPTS && is_bind_failure(&log) => {
                    eprintln!("weir could not bind a picked port (attempt {attempt}), retrying");
                }
                Err(log) => {
                    let kept = dir.keep();
                    panic!(
                        "weir did not become ready (files kept in {}):\n{log}",
                        kept.display()
                    );
                }
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Writes `config` into a fresh temp dir with freshly reserved ports and
    /// starts weir without waiting for it to be ready: for tests of what it
    /// does before it is (no retry when a picked port was taken).
    ///
    /// # Panics
    /// When the temp dir or the config cannot be written, or weir not spawned.
    pub fn start_unready(config: WeirConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("weir-e2e-")
            .tempdir()
            .expect("creating a temp dir");
        let dir_path = dir.path().to_path_buf();
        if config.tls {
            write_self_signed(&dir_path);
        }
        let (addrs, reserved) = reserve_addrs(config.tls);
        std::fs::write(dir_path.join("weir.yaml"), config.render(&addrs))
            .expect("writing weir.yaml");
        let child = spawn(&dir_path, &config, false);
        Self {
            addrs,
            _reserved: reserved,
            config,
            dir: Some(dir),
            dir_path,
            child,
            exit: None,
            writes: 0,
        }
    }

    /// Polls `/readyz` until 200; `Err(log)` when weir exits or the limit
    /// passes.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Err(format!(
                    "weir exited with {status} before it was ready\n{}",
                    self.log()
                ));
            }
            if let Ok(Ok(response)) = tokio::time::timeout(
                Duration::from_secs(2),
                crate::client::get(self.addrs.admin, "/readyz"),
            )
            .await
                && response.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "/readyz on {} did not answer 200 within {READY_LIMIT:?}\n{}",
                    self.addrs.admin,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process with SIGKILL (`kill -9`) and reaps it.
    pub fn kill9(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Starts weir again after it exited (see [`Weir::kill9`]), with the
    /// same config file, addresses and state dir, and waits for `/readyz`.
    /// The log is appended to.
    ///
    /// # Panics
    /// When the old process still runs, or the new one is not ready.
    pub async fn restart(&mut self) {
        assert!(self.try_exit().is_some(), "restart: weir is still running");
        self.child = spawn(&self.dir_path, &self.config, true);
        self.exit = None;
        if let Err(log) = self.wait_ready().await {
            panic!("weir did not become ready after a restart:\n{log}");
        }
    }

    /// An admin API client without a token.
    pub fn admin(&self) -> crate::Admin {
        crate::Admin::new(self.addrs.admin, None)
    }

    /// An admin API client sending `Authorization: Bearer TOKEN`.
    pub fn admin_with(&self, token: &str) -> crate::Admin {
        crate::Admin::new(self.addrs.admin, Some(token))
    }

    /// `GET /api/v1/routes/NAME` (no token), asserting 200.
    ///
    /// # Panics
    /// When the request fails or does not answer 200 (with weir's log).
    pub async fn status(&self, name: &str) -> serde_json::Value {
        let path = format!("/api/v1/routes/{name}");
        let response = crate::within(Duration::from_secs(5), &path, self.admin().get(&path))
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}\n{}", self.log()));
        assert_eq!(
            response.status,
            200,
            "GET {path}: {}\n{}",
            response.text(),
            self.log()
        );
        response.json()
    }

    /// Polls route `name`'s status until `accept` returns true for it;
    /// returns that status.
    ///
    /// # Panics
    /// After `limit`, with the last status seen.
    pub async fn wait_status(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        accept: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status(name).await;
            if accept(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "route {name}: timed out after {limit:?} waiting for {what}; last status:\n{status:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /api/v1/routes/NAME/COMMAND` with `body` (no token).
    ///
    /// # Panics
    /// When the request fails.
    pub async fn command(
        &self,
        name: &str,
        command: &str,
        body: Option<serde_json::Value>,
    ) -> crate::Response {
        let path = format!("/api/v1/routes/{name}/{command}");
        crate::within(
            Duration::from_secs(5),
            &path,
            self.admin().post(&path, body),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {path} failed: {e}\n{}", self.log()))
    }

    /// The temp dir holding `weir.yaml`, the logs and the state.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The config file weir was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir_path.join("weir.yaml")
    }

    /// weir's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://<plain listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs.http)
    }

    /// `https://127.0.0.1:<port><path>` of the TLS listener.
    ///
    /// # Panics
    /// When the config has no TLS listener.
    pub fn https_url(&self, path: &str) -> String {
        let addr = self.addrs.https.expect("the config has a TLS listener");
        format!("https://{addr}{path}")
    }

    /// Replaces the config file atomically (write a sibling, rename over).
    pub fn write_config(&mut self, config: &WeirConfig) {
        self.write_text(&config.render(&self.addrs), false);
        self.config = config.clone();
    }

    /// Rewrites the config file in place (truncate and write).
    pub fn write_config_in_place(&mut self, config: &WeirConfig) {
        self.write_text(&config.render(&self.addrs), true);
        self.config = config.clone();
    }

    /// Writes `text` as the config file, in place or by rename.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_text(&mut self, text: &str, in_place: bool) {
        let path = self.config_path();
        if in_place {
            std::fs::write(&path, text).expect("writing weir.yaml in place");
        } else {
            self.writes += 1;
            let tmp = self.dir_path.join(format!(".weir.yaml.{}", self.writes));
            std::fs::write(&tmp, text).expect("writing the new weir.yaml");
            std::fs::rename(&tmp, &path).expect("renaming over weir.yaml");
        }
    }

    /// `GET /metrics` from the admin API, parsed.
    ///
    /// # Panics
    /// When the request fails or does not answer 200.
    pub async fn metrics(&self) -> Metrics {
        let response = crate::within(
            Duration::from_secs(5),
            "GET /metrics",
            crate::client::get(self.addrs.admin, "/metrics"),
        )
        .await
        .unwrap_or_else(|e| panic!("GET /metrics failed: {e}\n{}", self.log()));
        assert_eq!(response.status, 200, "GET /metrics: {}", response.text());
        Metrics::parse(&response.text())
    }

    /// `weir_config_reloads_total{result=RESULT}`, 0 while absent.
    pub async fn reloads(&self, result: &str) -> f64 {
        self.metrics()
            .await
            .sum("weir_config_reloads_total", &[("result", result)])
    }

    /// Waits until `weir_config_reloads_total{result=RESULT}` exceeds
    /// `before`; returns the new value.
    ///
    /// # Panics
    /// After [`RELOAD_LIMIT`].
    pub async fn wait_for_reload(&self, result: &str, before: f64) -> f64 {
        let what = format!("weir_config_reloads_total{{result=\"{result}\"}} > {before}");
        wait_until(RELOAD_LIMIT, &what, || async {
            let now = self.reloads(result).await;
            (now > before).then_some(now)
        })
        .await
    }

    /// Writes `config` (by rename) and waits for a successful reload.
    pub async fn reload(&mut self, config: &WeirConfig) {
        let before = self.reloads("success").await;
        self.write_config(config);
        self.wait_for_reload("success", before).await;
    }

    /// Writes `text` (by rename) as the config file and waits for a
    /// successful reload.
    pub async fn reload_text(&mut self, text: &str) {
        let before = self.reloads("success").await;
        self.write_text(text, false);
        self.wait_for_reload("success", before).await;
    }

    /// weir's stderr so far, without ANSI colour codes.
    pub fn log(&self) -> String {
        let raw = std::fs::read(self.dir_path.join("weir.stderr.log")).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&raw))
    }

    /// Sends SIGTERM.
    ///
    /// # Panics
    /// When `kill` cannot be run or fails.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Whether the process has exited (and its status, once it has).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to exit.
    ///
    /// # Panics
    /// After `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "weir did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident set size in KiB from `/proc/PID/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let stdout =
                std::fs::read_to_string(self.dir_path.join("weir.stdout.log")).unwrap_or_default();
            eprintln!(
                "----- weir stderr ({}) -----\n{}\n----- weir stdout -----\n{stdout}\n-----",
                self.dir_path.display(),
                self.log()
            );
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("weir's files are kept in {}", kept.display());
            }
        }
    }
}

/// Reserves the ports weir will listen on (a TLS one when `tls`): the
/// addresses, and the guards that keep them from other tests until weir binds.
fn reserve_addrs(tls: bool) -> (Addrs, Vec<ReservedPort>) {
    let http = ReservedPort::bind();
    let https = tls.then(ReservedPort::bind);
    let admin = ReservedPort::bind();
    let addrs = Addrs {
        http: http.addr,
        https: https.as_ref().map(|port| port.addr),
        admin: admin.addr,
    };
    (
        addrs,
        [Some(http), https, Some(admin)]
            .into_iter()
            .flatten()
            .collect(),
    )
}

/// Spawns `weir run` on `dir/weir.yaml` with logs in `dir`, appending to
/// them when `append`.
fn spawn(dir: &Path, config: &WeirConfig, append: bool) -> Child {
    let log = |name: &str| {
        let path = dir.join(name);
        if append {
            File::options()
                .append(true)
                .create(true)
                .open(path)
                .expect("opening log")
        } else {
            File::create(path).expect("creating log")
        }
    };
    // Each wrapper ends by executing the next, so the pid stays weir's.
    let mut program: Vec<OsString> = vec![binary("weir").into()];
    if let Some(cpu) = config.cpu {
        let taskset = ["taskset".into(), "-c".into(), cpu.to_string().into()];
        program.splice(0..0, taskset);
    }
    if let Some(limit) = config.open_file_limit {
        let ulimit = format!("ulimit -n {limit} && exec \"$0\" \"$@\"");
        program.splice(0..0, ["sh".into(), "-c".into(), ulimit.into()]);
    }
    let mut command = Command::new(&program[0]);
    command
        .args(&program[1..])
        .arg("run")
        .arg("--config")
        .arg(dir.join("weir.yaml"))
        .args([
            "--log-format",
            if config.log_json { "json" } else { "text" },
        ])
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log("weir.stdout.log"))
        .stderr(if config.stderr_unwritable {
            File::options()
                .write(true)
                .open("/dev/full")
                .expect("opening /dev/full")
        } else {
            log("weir.stderr.log")
        })
        .spawn()
        .expect("spawning weir")
}

/// A `weir` command, for `weir validate` and friends.
pub fn weir_command() -> Command {
    Command::new(binary("weir"))
}

fn is_bind_failure(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use")
        || log.contains("os error 98")
        || log.contains("addrinuse")
}

fn write_self_signed(dir: &Path) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("generating a self-signed certificate");
    std::fs::write(dir.join("tls.crt"), cert.cert.pem()).expect("writing tls.crt");
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).expect("writing tls.key");
}

/// Removes `ESC [ ... letter` sequences.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
