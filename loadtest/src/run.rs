//! `weir-loadtest run`: an open-loop load generator.
//!
//! Request `i` is scheduled at `start + i / rate` whatever happened to the
//! earlier ones, and its latency is measured from that scheduled time, so a
//! slow target shows up as latency instead of silently lowering the rate
//! (no coordinated omission). Requests are sent over at most `--connections`
//! keep-alive HTTP/1.1 connections; request `i` belongs to simulated user
//! `i mod N`, whose cookie jar stores `Set-Cookie` and sends it back.
//!
//! The run is bounded: sending stops at `--duration`, and requests still
//! queued or in flight get at most [`GRACE`] more before they are counted as
//! errors. Targets must be loopback addresses unless `--allow-remote`.
//!
//! While it runs, a line of counts per second goes to stderr; when stderr is
//! a terminal, a [progress] bar below them is redrawn in place four times a
//! second with the last second's rate, error share and p99.

mod jar;
pub mod progress;
mod report;

pub use jar::Jar;
pub use report::{ByUpstream, ErrorKind, Latency, Recorder, Report, SecondReport};

use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http::header::{COOKIE, HOST};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until, timeout_at};

use crate::upstream::NAME_HEADER;
use progress::{CLEAR_LINE, Counts, Progress};

/// How long requests still queued or in flight at the end of `--duration`
/// may take before they count as errors.
pub const GRACE: Duration = Duration::from_secs(5);

/// The most requests one run may schedule (`rate × duration`).
pub const MAX_REQUESTS: f64 = 10_000_000.0;

/// How often the progress bar is redrawn when stderr is a terminal.
pub const BAR_PERIOD: Duration = Duration::from_millis(250);

/// Command-line options of `weir-loadtest run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// `http://host:port/path` to send GET requests to.
    #[arg(long)]
    pub target: String,
    /// Requests per second.
    #[arg(long)]
    pub rate: f64,
    /// How long to send, e.g. `30s`.
    #[arg(long, value_parser = crate::parse_duration)]
    pub duration: Duration,
    /// Simulated users, each with its own cookie jar; without it no cookies
    /// are kept.
    #[arg(long)]
    pub users: Option<usize>,
    /// Keep-alive connections, i.e. the most requests in flight.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Extra request header `NAME:VALUE` (repeatable; `Host:` replaces the
    /// target's).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Print one JSON document to stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Where the requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// The `Host` header sent.
    pub host: HeaderValue,
    /// Origin-form path and query of every request.
    pub path: PathAndQuery,
}

/// Sees every outcome of a run as it happens, besides the [`Report`]: the
/// experiment runner uses it for its time series. Called on the worker
/// tasks, so it must be quick and must not block.
pub trait Observer: Send + Sync {
    /// A request got an HTTP response (whatever its status).
    fn response(&self, outcome: &Outcome<'_>);
    /// A request scheduled at `scheduled` got no response.
    fn error(&self, scheduled: Instant, kind: ErrorKind);
}

/// One answered request, as given to an [`Observer`].
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// When the schedule said to send it; latency is measured from here.
    pub scheduled: Instant,
    /// When it was handed to the connection (after any connect).
    pub sent: Instant,
    /// When its whole body had arrived.
    pub done: Instant,
    /// The `x-upstream-name` of the response, `-` when absent.
    pub upstream: &'a str,
    /// The response status code.
    pub status: u16,
}

/// How a library caller runs the generator: see [`execute_with`].
pub struct Hooks {
    /// Told about every outcome.
    pub observer: Option<Arc<dyn Observer>>,
    /// Print a line of counts to stderr once a second, and a live progress
    /// bar below them when stderr is a terminal.
    pub progress: bool,
    /// How long queued and in-flight requests may take after the sending
    /// phase before they count as errors.
    pub grace: Duration,
    /// When request 0 is sent; `None` is 10 ms from the call.
    pub start: Option<Instant>,
}

struct Job {
    scheduled: Instant,
    user: Option<usize>,
}

/// State shared by the scheduler, the workers and the progress printer.
struct Shared {
    target: Target,
    headers: HeaderMap,
    start: Instant,
    deadline: Instant,
    jars: Vec<Mutex<Jar>>,
    recorder: Mutex<Recorder>,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    scheduled: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    /// Of `done`, answered with a 5xx status.
    server_errors: AtomicU64,
    observer: Option<Arc<dyn Observer>>,
}

type Sender = SendRequest<Empty<Bytes>>;

/// Runs the load and prints the report: text, or JSON with `--json`.
///
/// Returns the exit code: 0 when the run was made (whatever it
/// observed), 2 when the options are refused, as the argument parser
/// refuses the ones it checks itself (`--rate -5`), so that a script tells
/// a usage error from a failed run.
///
/// # Errors
/// When the report cannot be encoded.
pub async fn main(args: RunArgs) -> anyhow::Result<u8> {
    let target = match checked_target(&args).await {
        Ok(target) => target,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(2);
        }
    };
    let report = match run_to(&args, target, Hooks::default()).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(1);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("{report}");
    }
    Ok(0)
}

/// Runs the load described by `args` and returns what it observed. Progress
/// goes to stderr: a line per second, and a live bar on a terminal.
///
/// # Errors
/// When the options are out of range, the target is not an `http://` URL,
/// or it is not on loopback without `--allow-remote`.
pub async fn execute(args: &RunArgs) -> anyhow::Result<Report> {
    execute_with(args, Hooks::default()).await
}

/// [`execute`] with an observer, a chosen start instant, grace period and
/// progress switch.
///
/// # Errors
/// As [`execute`].
pub async fn execute_with(args: &RunArgs, hooks: Hooks) -> anyhow::Result<Report> {
    let target = checked_target(args).await?;
    run_to(args, target, hooks).await
}

/// The target of `args`, once the options are checked.
async fn checked_target(args: &RunArgs) -> anyhow::Result<Target> {
    check_args(args)?;
    resolve_target(&args.target, args.allow_remote).await
}

/// Runs the load of `args` against `target`, already checked.
async fn run_to(args: &RunArgs, target: Target, hooks: Hooks) -> anyhow::Result<Report> {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, target.host.clone());
    for (name, value) in &args.headers {
        headers.insert(name.clone(), value.clone());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let start = hooks
        .start
        .unwrap_or_else(|| Instant::now() + Duration::from_millis(10));
    let end = start + args.duration;
    let shared = Arc::new(Shared {
        target,
        headers,
        start,
        deadline: end + hooks.grace,
        jars: (0..args.users.unwrap_or(0))
            .map(|_| Mutex::new(Jar::default()))
            .collect(),
        recorder: Mutex::new(Recorder::new()),
        queue: tokio::sync::Mutex::new(rx),
        scheduled: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        server_errors: AtomicU64::new(0),
        observer: hooks.observer,
    });

    let mut workers = JoinSet::new();
    for _ in 0..args.connections {
        workers.spawn(Arc::clone(&shared).work());
    }
    let tty = hooks.progress && std::io::stderr().is_terminal();
    let progress = hooks
        .progress
        .then(|| tokio::spawn(Arc::clone(&shared).progress(args.duration, tty)));

    // Request i is sent at start + i / rate, strictly before the end.
    let count = (args.rate * args.duration.as_secs_f64()).ceil() as u64;
    for i in 0..count {
        let scheduled = start + Duration::from_secs_f64(i as f64 / args.rate);
        if scheduled >= end {
            break;
        }
        sleep_until(scheduled).await;
        let user = args.users.map(|n| (i % n as u64) as usize);
        if tx.send(Job { scheduled, user }).is_err() {
            break;
        }
        shared.scheduled.fetch_add(1, Ordering::Relaxed);
    }
    drop(tx);
    while workers.join_next().await.is_some() {}
    if let Some(progress) = progress {
        progress.abort();
        // Wait until it has stopped, so nothing draws after the last line.
        let _ = progress.await;
    }

    // Whatever is still queued was never sent within the grace period.
    let mut queue = shared.queue.lock().await;
    while let Ok(job) = queue.try_recv() {
        shared.record_error(&job, ErrorKind::Unsent);
    }
    drop(queue);
    let report = shared
        .recorder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .report(&args.target, args.rate, args.duration);
    if hooks.progress {
        let clear = if tty { CLEAR_LINE } else { "" };
        write_stderr(&format!(
            "{clear}done: {} requests, {} errors\n",
            report.total, report.errors
        ));
    }
    Ok(report)
}

/// Writes progress to stderr, ignoring failures: progress is best effort.
fn write_stderr(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

fn check_args(args: &RunArgs) -> anyhow::Result<()> {
    ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be a positive number"
    );
    ensure!(!args.duration.is_zero(), "--duration must be positive");
    ensure!(
        args.rate * args.duration.as_secs_f64() <= MAX_REQUESTS,
        "--rate × --duration schedules more than {MAX_REQUESTS} requests"
    );
    ensure!(
        (1..=4096).contains(&args.connections),
        "--connections must be between 1 and 4096"
    );
    if let Some(users) = args.users {
        ensure!(
            (1..=1_000_000).contains(&users),
            "--users must be between 1 and 1000000"
        );
    }
    Ok(())
}

/// Parses `NAME:VALUE` (spaces around either are trimmed).
///
/// # Errors
/// When there is no colon or the name or value is not valid in HTTP.
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME:VALUE"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("{text:?}: bad header name: {e}"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|e| format!("{text:?}: bad header value: {e}"))?;
    Ok((name, value))
}

/// Parses an `http://` URL, resolves its host and checks that every address
/// it resolves to is loopback (an IP literal is checked before any lookup).
///
/// # Errors
/// When the URL is not `http://host[:port][/path]`, the name does not
/// resolve, or an address is not loopback and `allow_remote` is false.
pub async fn resolve_target(url: &str, allow_remote: bool) -> anyhow::Result<Target> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("target {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("target {url}: only http:// is supported, not {other}://"),
        None => bail!("target {url:?} must be an absolute http:// URL"),
    }
    let authority = uri
        .authority()
        .with_context(|| format!("target {url} has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .collect(),
    };
    check_loopback(host, &addrs, allow_remote)?;
    let addr = *addrs
        .first()
        .with_context(|| format!("{host} resolved to no address"))?;
    let path = match uri.path_and_query() {
        Some(p) if !p.as_str().is_empty() => p.clone(),
        _ => PathAndQuery::from_static("/"),
    };
    Ok(Target {
        url: url.to_owned(),
        addr,
        host: HeaderValue::from_str(authority.as_str())
            .with_context(|| format!("target {url}: host is not a header value"))?,
        path,
    })
}

/// Refuses any non-loopback address unless `allow_remote`.
///
/// # Errors
/// Naming the host, the address and the flag that allows it.
pub fn check_loopback(host: &str, addrs: &[SocketAddr], allow_remote: bool) -> anyhow::Result<()> {
    if allow_remote {
        return Ok(());
    }
    if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing to send load to {host} ({remote}): not a loopback address; \
             pass --allow-remote if you mean it"
        );
    }
    Ok(())
}

// === impl Hooks ===

impl Default for Hooks {
    /// No observer, progress on, [`GRACE`], start in 10 ms.
    fn default() -> Self {
        Self {
            observer: None,
            progress: true,
            grace: GRACE,
            start: None,
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("observer", &self.observer.is_some())
            .field("progress", &self.progress)
            .field("grace", &self.grace)
            .field("start", &self.start)
            .finish()
    }
}

// === impl Shared ===

impl Shared {
    /// One connection's worth of sending: takes jobs until the queue is
    /// closed and empty or the deadline passes.
    async fn work(self: Arc<Self>) {
        let mut conn: Option<Sender> = None;
        loop {
            let job = {
                let Ok(mut queue) = timeout_at(self.deadline, self.queue.lock()).await else {
                    break;
                };
                match timeout_at(self.deadline, queue.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) | Err(_) => break,
                }
            };
            match timeout_at(self.deadline, self.send(&mut conn, &job)).await {
                Ok(Ok(())) => {}
                Ok(Err(kind)) => {
                    conn = None;
                    self.record_error(&job, kind);
                }
                Err(_) => {
                    self.record_error(&job, ErrorKind::Timeout);
                    break;
                }
            }
        }
    }

    /// Sends one request on the worker's connection, opening it if needed,
    /// and records the response.
    async fn send(&self, conn: &mut Option<Sender>, job: &Job) -> Result<(), ErrorKind> {
        let mut retried = false;
        let (response, sent) = loop {
            let reusable = match conn.as_mut() {
                Some(sender) => sender.ready().await.is_ok(),
                None => false,
            };
            let sender = match conn {
                Some(sender) if reusable => sender,
                _ => conn.insert(self.connect().await?),
            };
            let sent = Instant::now();
            match sender.send_request(self.request(job)).await {
                Ok(response) => break (response, sent),
                // The request never left: the idle connection was closed
                // under us. Safe to send once more on a fresh one.
                Err(e) if e.is_canceled() && !retried => {
                    retried = true;
                    *conn = None;
                }
                Err(_) => return Err(ErrorKind::Io),
            }
        };
        let (parts, body) = response.into_parts();
        if let Some(user) = job.user
            && let Some(jar) = self.jars.get(user)
        {
            jar.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .store(&parts.headers);
        }
        // Read the whole body so the connection can be reused.
        body.collect().await.map_err(|_| ErrorKind::Io)?;
        let latency = job.scheduled.elapsed();
        let upstream = parts
            .headers
            .get(NAME_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        self.recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .response(self.second(job), upstream, parts.status.as_u16(), latency);
        if parts.status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(observer) = &self.observer {
            observer.response(&Outcome {
                scheduled: job.scheduled,
                sent,
                done: job.scheduled + latency,
                upstream,
                status: parts.status.as_u16(),
            });
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn connect(&self) -> Result<Sender, ErrorKind> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| ErrorKind::Connect)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
        sender.ready().await.map_err(|_| ErrorKind::Connect)?;
        Ok(sender)
    }

    fn request(&self, job: &Job) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = Uri::from(self.target.path.clone());
        *request.headers_mut() = self.headers.clone();
        if let Some(user) = job.user
            && let Some(jar) = self.jars.get(user)
            && let Some(cookie) = jar.lock().unwrap_or_else(PoisonError::into_inner).header()
        {
            request.headers_mut().insert(COOKIE, cookie);
        }
        request
    }

    fn second(&self, job: &Job) -> u64 {
        job.scheduled
            .saturating_duration_since(self.start)
            .as_secs()
    }

    fn record_error(&self, job: &Job, kind: ErrorKind) {
        self.recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error(self.second(job), kind);
        if let Some(observer) = &self.observer {
            observer.error(job.scheduled, kind);
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> Counts {
        Counts {
            scheduled: self.scheduled.load(Ordering::Relaxed),
            answered: self.done.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Prints counts to stderr once a second until aborted; with `tty`, also
    /// redraws the bar below them every [`BAR_PERIOD`].
    async fn progress(self: Arc<Self>, total: Duration, tty: bool) {
        let second = Duration::from_secs(1);
        let mut tick = if tty {
            tokio::time::interval_at(self.start, BAR_PERIOD)
        } else {
            tokio::time::interval_at(self.start + second, second)
        };
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_second = 1;
        // Elapsed time, finished and bad requests at the last line.
        let mut last = (Duration::ZERO, 0u64, 0u64);
        let mut shown = Progress {
            elapsed: Duration::ZERO,
            total,
            rate: 0.0,
            error_fraction: 0.0,
            p99: None,
        };
        loop {
            let now = tick.tick().await;
            let elapsed = now.saturating_duration_since(self.start);
            let mut out = String::new();
            if tty {
                out.push_str(CLEAR_LINE);
            }
            if elapsed.as_secs() >= next_second {
                next_second = elapsed.as_secs() + 1;
                let counts = self.counts();
                out.push_str(&progress::second_line(elapsed.as_secs(), counts));
                out.push('\n');
                if tty {
                    let finished = counts.answered + counts.failed;
                    let bad = counts.failed + self.server_errors.load(Ordering::Relaxed);
                    let span = elapsed.saturating_sub(last.0);
                    let n = finished.saturating_sub(last.1);
                    shown.rate = if span.is_zero() {
                        0.0
                    } else {
                        n as f64 / span.as_secs_f64()
                    };
                    shown.error_fraction = if n == 0 {
                        0.0
                    } else {
                        bad.saturating_sub(last.2) as f64 / n as f64
                    };
                    shown.p99 = self
                        .recorder
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take_recent_p99();
                    last = (elapsed, finished, bad);
                }
            }
            if tty {
                shown.elapsed = elapsed;
                out.push_str(&progress::bar(&shown));
            }
            if !out.is_empty() {
                write_stderr(&out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(check_loopback("x", &[addr("127.0.0.1:80"), addr("[::1]:80")], false).is_ok());
        let err = check_loopback("x", &[addr("127.0.0.1:80"), addr("192.0.2.1:80")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(check_loopback("x", &[addr("192.0.2.1:80")], true).is_ok());
    }

    #[tokio::test]
    async fn targets_are_parsed_and_checked_before_any_traffic() {
        let t = resolve_target("http://127.0.0.1:8080/a?b=1", false)
            .await
            .unwrap();
        assert_eq!(t.addr, addr("127.0.0.1:8080"));
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/a?b=1");
        let t = resolve_target("http://[::1]", false).await.unwrap();
        assert_eq!(t.addr, addr("[::1]:80"));
        assert_eq!(t.path, "/");
        // IP literals are refused without a lookup or a connection.
        assert!(resolve_target("http://192.0.2.1:80/", false).await.is_err());
        assert!(resolve_target("https://127.0.0.1/", false).await.is_err());
        assert!(resolve_target("/relative", false).await.is_err());
    }

    #[test]
    fn headers_parse() {
        let (n, v) = parse_header("x-canary: always").unwrap();
        assert_eq!(n, "x-canary");
        assert_eq!(v, "always");
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
