//! The weir process under test and a small client for its admin API.
//!
//! weir is started as `weir run --config FILE --log-format json` with its
//! output in a log file, on loopback ports reserved for it (see
//! [`ReservedPort`]) and held for its whole life; it is ready
//! when `/readyz` answers 200, and it is stopped with SIGTERM, then SIGKILL
//! if it has not exited in time. Every wait has a deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::reserved_port::ReservedPort;

/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How often `/readyz` is asked while weir starts.
const READY_POLL: Duration = Duration::from_millis(50);

/// Start attempts when weir could not bind a port reserved for it (a
/// program binding that very port explicitly can still take it).
const START_ATTEMPTS: usize = 3;

/// A client of weir's admin API on a loopback address.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    addr: SocketAddr,
    token: Option<String>,
}

/// A running weir.
#[derive(Debug)]
pub(crate) struct Weir {
    child: Child,
    /// The public listener's address (`WEIR_LISTEN`).
    pub(crate) listen: SocketAddr,
    /// The admin API.
    pub(crate) admin: Admin,
    log: PathBuf,
    /// The public and admin ports' reservations, held while weir runs so
    /// that a restart finds them still free.
    _ports: [ReservedPort; 2],
}

/// Why weir did not come up.
#[derive(Debug)]
pub(crate) struct StartError(pub(crate) String);

/// Why [`Weir::wait_ready`] gave up.
enum NotUp {
    Exited(ExitStatus),
    NotReady(String),
}

// === impl Admin ===

impl Admin {
    /// A client of the admin API at `addr`, sending `token` if any.
    pub(crate) fn new(addr: SocketAddr, token: Option<String>) -> Self {
        Self { addr, token }
    }

    /// The API's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path`: the status and body.
    ///
    /// # Errors
    /// A message when the connection or the exchange fails or times out.
    pub(crate) async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), String> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`Admin::get`].
    pub(crate) async fn post(&self, path: &str, json: &str) -> Result<(StatusCode, Bytes), String> {
        self.request(Method::POST, path, Some(json)).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        json: Option<&str>,
    ) -> Result<(StatusCode, Bytes), String> {
        let exchange = async {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP handshake with {}: {e}", self.addr))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let mut builder = Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, self.addr.to_string());
            if let Some(token) = &self.token {
                builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            if json.is_some() {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
            }
            let request = builder
                .body(Full::new(Bytes::from(json.unwrap_or("").to_owned())))
                .map_err(|e| format!("building the request: {e}"))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("{path}: {e}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{path}: reading the body: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        timeout(ADMIN_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{path}: no answer within {ADMIN_TIMEOUT:?}"))?
    }
}

// === impl Weir ===

impl Weir {
    /// Starts `binary run --config CONFIG --log-format json` with `env`
    /// plus `WEIR_LISTEN` and `WEIR_ADMIN` on freshly reserved loopback
    /// ports, writing its output to `log`, and waits until `/readyz`
    /// answers 200 or `ready_within` passes. A start that failed because a
    /// reserved port was taken anyway is tried again with new ports.
    ///
    /// # Errors
    /// When the binary cannot be run, weir exits before it is ready (with
    /// the end of its log), or it is not ready in time.
    pub(crate) async fn start(
        binary: &Path,
        config: &Path,
        env: &BTreeMap<String, String>,
        log: &Path,
        token: Option<String>,
        ready_within: Duration,
    ) -> Result<Weir, StartError> {
        let mut last = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let ports = reserve_ports()?;
            let (listen, admin) = (ports[0].addr, ports[1].addr);
            let file = std::fs::File::create(log)
                .map_err(|e| StartError(format!("creating {}: {e}", log.display())))?;
            let err = file
                .try_clone()
                .map_err(|e| StartError(format!("opening {}: {e}", log.display())))?;
            let child = Command::new(binary)
                .args(["run", "--config"])
                .arg(config)
                .args(["--log-format", "json"])
                .envs(env)
                .env("WEIR_LISTEN", listen.to_string())
                .env("WEIR_ADMIN", admin.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err))
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| StartError(format!("cannot run {}: {e}", binary.display())))?;
            let mut weir = Weir {
                child,
                listen,
                admin: Admin::new(admin, token.clone()),
                log: log.to_owned(),
                _ports: ports,
            };
            match weir.wait_ready(ready_within).await {
                Ok(()) => return Ok(weir),
                Err(NotUp::Exited(status)) => {
                    let tail = weir.log_tail(30);
                    last = format!(
                        "weir exited with {status} before it was ready; its log ends:\n{tail}"
                    );
                    let port_taken = tail.contains("in use") || tail.contains("AddrInUse");
                    if !port_taken || attempt == START_ATTEMPTS {
                        return Err(StartError(last));
                    }
                }
                Err(NotUp::NotReady(why)) => {
                    let _ = weir.child.kill().await;
                    return Err(StartError(format!(
                        "weir was not ready within {ready_within:?} ({why}); its log ends:\n{}",
                        weir.log_tail(30)
                    )));
                }
            }
        }
        Err(StartError(last))
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The exit status if weir has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `grace` for the exit, then kills.
    /// Returns how it ended.
    pub(crate) async fn stop(mut self, grace: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("had already exited ({status})");
        }
        let termed = match self.child.id() {
            Some(pid) => Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success()),
            None => false,
        };
        if termed && let Ok(Ok(status)) = timeout(grace, self.child.wait()).await {
            return format!("exited after SIGTERM ({status})");
        }
        let _ = self.child.kill().await;
        if termed {
            format!("did not exit within {grace:?} of SIGTERM; killed")
        } else {
            "could not send SIGTERM; killed".to_owned()
        }
    }

    /// The last `lines` lines of weir's log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), NotUp> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Err(NotUp::Exited(status));
            }
            let last = match self.admin.get("/readyz").await {
                Ok((status, _)) if status == StatusCode::OK => return Ok(()),
                Ok((status, _)) => format!("/readyz answered {status}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(NotUp::NotReady(last));
            }
            sleep(READY_POLL).await;
        }
    }
}

/// Two distinct loopback ports reserved for weir.
fn reserve_ports() -> Result<[ReservedPort; 2], StartError> {
    let reserve =
        || ReservedPort::bind().map_err(|e| StartError(format!("reserving a loopback port: {e}")));
    Ok([reserve()?, reserve()?])
}
