//! Upstream endpoints: pooled keep-alive HTTP/1.1 connections per address
//! (or one multiplexed HTTP/2 connection, see [`h2`]), over TCP or TLS (see
//! [`tls`]), outstanding-request counts for balancing, and the one place
//! where an upstream connection is opened.
//!
//! Endpoints live in a [`Registry`] keyed by address, protocol and TLS
//! settings and are shared by every snapshot that names them, so a config
//! swap keeps the pools of unchanged endpoints warm.
//!
//! Passive ejection: an endpoint that fails [`EJECT_AFTER_FAILURES`] times in
//! a row (a failed connect or a 5xx answer) is left out of the balancing for
//! a back-off period that starts at [`FIRST_EJECTION`] and doubles with each
//! ejection up to [`MAX_EJECTION`]; a success resets both. A role never loses
//! its last endpoint: an endpoint is not ejected while every other endpoint
//! of the role is, and when all are out anyway the one ejected longest ago
//! is used. All of it is atomics: the request path takes no lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rand::Rng as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use weir_config::{UpstreamProtocol, UpstreamTls};

use crate::metrics::{EndpointMetrics, Metrics};
use crate::request_body::{RequestBody, UploadProgress, within_upload_bounds};

pub mod h2;
pub mod tls;

use self::h2::{H2Connection, H2Link, H2Sender, KeepAlive, LastRead};
use self::tls::{TlsConnector, UpstreamTlsError};

/// Idle pooled connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many idle connections are kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;
/// How often idle pooled connections past [`IDLE_TIMEOUT`] are closed
/// (see [`Registry::close_expired_idle`]): an idle connection holds its
/// socket 60 to 70 s after its last use, as nginx's upstream `keepalive_timeout`.
pub const IDLE_SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// Consecutive failures (connect errors or 5xx answers) that eject an endpoint.
pub const EJECT_AFTER_FAILURES: u32 = 5;
/// How long a first ejection lasts; each further one in a row doubles it.
pub const FIRST_EJECTION: Duration = Duration::from_secs(10);
/// The longest ejection.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// The sending half of a pooled HTTP/1.1 upstream connection, with the
/// task that runs the connection. Dropped, it leaves that task to end by
/// itself, once what it is doing is done (an upgrade hands its stream
/// over, a body still going is sent to its end); [`Sender::abort`] stops
/// it at once.
#[derive(Debug)]
pub struct Sender {
    send: http1::SendRequest<RequestBody>,
    connection: tokio::task::JoinHandle<()>,
    /// Bytes read from the upstream so far (see [`NoteReads`]).
    read: Arc<AtomicU64>,
}

/// One upstream address with its connection pool.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    outstanding: AtomicUsize,
    idle: Mutex<Vec<(Sender, Instant)>>,
    /// Idle raw connections of weir's own HTTP/1 path ([`crate::http1`]).
    raw_idle: Mutex<Vec<(TcpStream, Instant)>>,
    health: Health,
    protocol: UpstreamProtocol,
    /// The TLS connector, or why none could be made; `None` in cleartext.
    tls: Option<Result<TlsConnector, UpstreamTlsError>>,
    /// The HTTP/2 connection, for `h2c` and `h2`.
    h2: H2Connection,
}

/// What tells two endpoints apart: the same address spoken to differently
/// is another endpoint, with its own connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EndpointKey {
    addr: SocketAddr,
    protocol: UpstreamProtocol,
    tls: Option<Arc<UpstreamTls>>,
}

/// Passive health of an endpoint, in milliseconds since [`clock_ms`]'s epoch.
#[derive(Debug)]
struct Health {
    consecutive_failures: AtomicU32,
    /// Ejections since the last success; sets the next back-off.
    ejections_in_row: AtomicU32,
    /// Ejected until this time; 0 when never ejected.
    ejected_until_ms: AtomicU64,
    /// When the current or last ejection began.
    ejected_at_ms: AtomicU64,
    metrics: Arc<EndpointMetrics>,
}

/// Every endpoint currently named by some snapshot, by address.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// weir could make no socket for the connection: it has used up its
    /// own open files, the system's, or the memory for sockets. The
    /// endpoint is not at fault.
    #[error("weir is out of sockets for a connection to {addr}: {source}")]
    NoSocket {
        /// The endpoint.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connect did not finish in time.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The TLS handshake failed: an unknown CA, a certificate not valid
    /// for the name, no common protocol.
    #[error("TLS handshake with {addr} (server name {server_name}): {source}")]
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// The name checked in the certificate.
        server_name: String,
        /// rustls' reason.
        #[source]
        source: std::io::Error,
    },
    /// No TLS client could be made for the endpoint.
    #[error("TLS to {addr}: {source}")]
    TlsConfig {
        /// The endpoint.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: UpstreamTlsError,
    },
    /// The HTTP/1.1 or HTTP/2 handshake failed.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// The protocol error.
        #[source]
        source: hyper::Error,
    },
}

/// Whether `error`, from making an upstream connection, says weir ran out
/// of something of its own (open files, the system's files, memory for
/// sockets) rather than that the endpoint failed. Not `EADDRNOTAVAIL`:
/// besides local ports running out, it is what an endpoint no local
/// address can reach gives (an IPv6 one on a host without IPv6), which is
/// the role's failure.
fn is_own_exhaustion(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Counts a request as outstanding on an endpoint until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

// === impl Registry ===

impl Registry {
    /// The HTTP/1.1 cleartext endpoint for `addr`, shared with every
    /// snapshot that names it. Called when a snapshot is applied, never per
    /// request.
    pub fn endpoint(&self, addr: SocketAddr, metrics: &Metrics) -> Arc<Endpoint> {
        self.endpoint_with(addr, UpstreamProtocol::Http1, None, metrics)
    }

    /// The endpoint for `addr` spoken to with `protocol` and `tls`, shared
    /// with every snapshot that names it the same way. Called when a
    /// snapshot is applied, never per request.
    pub fn endpoint_with(
        &self,
        addr: SocketAddr,
        protocol: UpstreamProtocol,
        tls: Option<&Arc<UpstreamTls>>,
        metrics: &Metrics,
    ) -> Arc<Endpoint> {
        let key = EndpointKey {
            addr,
            protocol,
            tls: tls.cloned(),
        };
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = endpoints.get(&key).and_then(Weak::upgrade) {
            return live;
        }
        let connector = tls.map(|tls| {
            TlsConnector::new(tls, protocol, addr).inspect_err(|error| {
                tracing::warn!(endpoint = %addr, %error, "no TLS to this upstream; its requests are answered 502");
            })
        });
        let fresh = Arc::new(Endpoint::new(
            addr,
            metrics.endpoint(addr),
            protocol,
            connector,
        ));
        endpoints.insert(key, Arc::downgrade(&fresh));
        // Forget endpoints no snapshot names any more.
        endpoints.retain(|_, weak| weak.strong_count() > 0);
        fresh
    }

    /// Closes every endpoint's idle pooled connections that have waited
    /// past [`IDLE_TIMEOUT`]. Without it, a pool filled by a burst would
    /// keep its sockets (open files weir may need) until its next use.
    pub fn close_expired_idle(&self) {
        let live: Vec<Arc<Endpoint>> = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let now = Instant::now();
        for endpoint in live {
            endpoint.close_expired_idle(now);
        }
    }
}

// === impl Endpoint ===

impl Endpoint {
    fn new(
        addr: SocketAddr,
        metrics: Arc<EndpointMetrics>,
        protocol: UpstreamProtocol,
        tls: Option<Result<TlsConnector, UpstreamTlsError>>,
    ) -> Endpoint {
        metrics.ejected.store(0, Relaxed);
        Endpoint {
            protocol,
            tls,
            h2: H2Connection::default(),
            addr,
            outstanding: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            raw_idle: Mutex::new(Vec::new()),
            health: Health {
                consecutive_failures: AtomicU32::new(0),
                ejections_in_row: AtomicU32::new(0),
                ejected_until_ms: AtomicU64::new(0),
                ejected_at_ms: AtomicU64::new(0),
                metrics,
            },
        }
    }

    /// Whether the endpoint is ejected at `now_ms` (see [`clock_ms`]).
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        let until = self.health.ejected_until_ms.load(Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms < until {
            return true;
        }
        // The back-off is over: the endpoint is back in the balancing.
        if self.health.metrics.ejected.load(Relaxed) != 0 {
            self.health.metrics.ejected.store(0, Relaxed);
        }
        false
    }

    /// Counts an exchange that went well: the endpoint's failure streak and
    /// back-off start over.
    pub fn record_success(&self) {
        let health = &self.health;
        if health.consecutive_failures.load(Relaxed) != 0 {
            health.consecutive_failures.store(0, Relaxed);
        }
        if health.ejections_in_row.load(Relaxed) != 0 {
            health.ejections_in_row.store(0, Relaxed);
        }
    }

    /// Counts a failed connect or a 5xx answer; the failure that completes a
    /// streak of [`EJECT_AFTER_FAILURES`] ejects the endpoint, unless every
    /// other endpoint of `role_endpoints` is ejected already.
    pub fn record_failure(&self, role_endpoints: &[Arc<Endpoint>]) {
        let health = &self.health;
        let streak = health.consecutive_failures.fetch_add(1, Relaxed) + 1;
        if streak < EJECT_AFTER_FAILURES {
            return;
        }
        let now = clock_ms();
        if self.is_ejected(now) {
            return;
        }
        let others_serving = role_endpoints
            .iter()
            .any(|e| !std::ptr::eq(Arc::as_ptr(e), self) && !e.is_ejected(now));
        if !others_serving {
            // The role's last endpoint stays in; a success will reset it.
            return;
        }
        // One of the concurrent failures wins the ejection.
        if health
            .consecutive_failures
            .compare_exchange(streak, 0, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        let in_row = health.ejections_in_row.fetch_add(1, Relaxed).min(16);
        let backoff = FIRST_EJECTION.saturating_mul(1 << in_row).min(MAX_EJECTION);
        let backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        health.ejected_at_ms.store(now, Relaxed);
        health
            .ejected_until_ms
            .store(now.saturating_add(backoff_ms).max(1), Relaxed);
        health.metrics.ejections.fetch_add(1, Relaxed);
        health.metrics.ejected.store(1, Relaxed);
        tracing::warn!(endpoint = %self.addr, failures = streak, ?backoff, "endpoint ejected after consecutive failures");
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests sent and not yet finished.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Relaxed)
    }

    /// Marks a request as outstanding until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    /// A pooled connection that is still open, if any.
    pub fn take_idle(&self) -> Option<Sender> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn put_idle(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() >= MAX_IDLE_PER_ENDPOINT {
            // The pool is last-in-first-out: the oldest entries may be long
            // closed or expired. Drop those before refusing a live one.
            idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
        }
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((sender, Instant::now()));
        }
    }

    /// Closes the idle pooled connections that have waited past
    /// [`IDLE_TIMEOUT`] at `now`, or whose upstream closed them.
    fn close_expired_idle(&self, now: Instant) {
        let fresh = |since: &Instant| now.saturating_duration_since(*since) < IDLE_TIMEOUT;
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(sender, since)| !sender.is_closed() && fresh(since));
        self.raw_idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(_, since)| fresh(since));
    }

    /// A pooled raw connection of weir's own HTTP/1 path that is still
    /// open and silent at `now`, if any.
    pub fn take_raw_idle(&self, now: Instant) -> Option<TcpStream> {
        let mut idle = self
            .raw_idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some((stream, since)) = idle.pop() {
            // Bytes or an end of stream on an idle connection: the upstream
            // closed it, or said something no request asked for. Only a
            // connection the runtime has seen readable since its last read
            // is probed: the others are known silent without a syscall.
            let silent = !seen_readable(&stream)
                || {
                    let mut probe = [0u8; 1];
                    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                };
            if silent && now.saturating_duration_since(since) < IDLE_TIMEOUT {
                return Some(stream);
            }
        }
        None
    }

    /// Returns a raw connection whose last exchange was read cleanly to its
    /// end, with nothing after it, at `now`.
    pub fn put_raw_idle(&self, stream: TcpStream, now: Instant) {
        let mut idle = self
            .raw_idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() >= MAX_IDLE_PER_ENDPOINT {
            idle.retain(|(_, since)| now.saturating_duration_since(*since) < IDLE_TIMEOUT);
        }
        if idle.len() < MAX_IDLE_PER_ENDPOINT {
            idle.push((stream, now));
        }
    }

    /// Opens a plain TCP connection within `timeout`, for weir's own
    /// HTTP/1 path (cleartext HTTP/1.1 endpoints only).
    ///
    /// # Errors
    /// [`ConnectError`] naming the endpoint and what failed.
    pub async fn connect_tcp(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        self.tcp(timeout).await
    }

    /// Whether the endpoint speaks HTTP/2 (`h2c` or `h2`).
    pub fn is_http2(&self) -> bool {
        self.protocol.is_http2()
    }

    /// Whether the endpoint is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a new HTTP/1.1 connection, within `timeout` (TCP and TLS).
    ///
    /// # Errors
    /// [`ConnectError`] naming the endpoint and what failed.
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = self.tcp(timeout).await?;
        match &self.tls {
            None => http1_over(self.addr, stream).await,
            Some(connector) => {
                let stream = self.tls_handshake(connector, stream, timeout).await?;
                http1_over(self.addr, stream).await
            }
        }
    }

    /// The endpoint's HTTP/2 connection, opened within `timeout` if there
    /// is none; `true` with a connection opened for this request.
    ///
    /// # Errors
    /// [`ConnectError`] naming the endpoint and what failed.
    pub async fn h2_connection(
        &self,
        timeout: Duration,
    ) -> Result<(Arc<H2Link>, bool), ConnectError> {
        self.h2.get_or_open(self.connect_h2(timeout)).await
    }

    /// Puts the HTTP/2 connection `link` aside, if it is still the
    /// endpoint's: the next request opens a new one.
    pub fn h2_forget(&self, link: &Arc<H2Link>) {
        self.h2.forget(link);
    }

    /// A guard held while a request waits for its answer on the HTTP/2
    /// connection `link`, `upload` tracking its body if it streams one:
    /// dropped at or after `deadline` (the request given up) while the
    /// connection is silent (see [`H2Link::is_silent`]) and the upload
    /// does not wait on its client, it puts the connection aside, as one
    /// that may be dead, unless disarmed.
    pub fn h2_watch<'a>(
        &'a self,
        link: &'a Arc<H2Link>,
        upload: Option<&'a UploadProgress>,
        deadline: tokio::time::Instant,
    ) -> H2Watch<'a> {
        H2Watch {
            endpoint: self,
            link,
            upload,
            deadline,
            armed: true,
        }
    }

    async fn connect_h2(&self, timeout: Duration) -> Result<H2Link, ConnectError> {
        let stream = self.tcp(timeout).await?;
        let keep_alive = h2::keep_alive();
        let last_read = Arc::new(LastRead::from_now());
        let sender = match &self.tls {
            None => {
                let stream = NoteReads::new(stream, Arc::clone(&last_read));
                http2_over(self.addr, TokioIo::new(stream), keep_alive).await?
            }
            Some(connector) => {
                let stream = self.tls_handshake(connector, stream, timeout).await?;
                let stream = NoteReads::new(stream, Arc::clone(&last_read));
                http2_over(self.addr, TokioIo::new(stream), keep_alive).await?
            }
        };
        Ok(H2Link::new(sender, last_read, keep_alive))
    }

    async fn tcp(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let addr = self.addr;
        if let Some(Err(source)) = &self.tls {
            return Err(ConnectError::TlsConfig {
                addr,
                source: source.clone(),
            });
        }
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        };
        let socket = match socket {
            Ok(socket) => socket,
            Err(source) if is_own_exhaustion(&source) => {
                return Err(ConnectError::NoSocket { addr, source });
            }
            Err(source) => return Err(ConnectError::Io { addr, source }),
        };
        if crate::descriptors::is_kept(std::os::fd::AsRawFd::as_raw_fd(&socket)) {
            return Err(ConnectError::NoSocket {
                addr,
                source: crate::descriptors::kept_error(),
            });
        }
        let stream = match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) if is_own_exhaustion(&source) => {
                return Err(ConnectError::NoSocket { addr, source });
            }
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        };
        // Small writes of heads must not wait for delayed ACKs.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn tls_handshake(
        &self,
        connector: &Result<TlsConnector, UpstreamTlsError>,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let addr = self.addr;
        let connector = connector
            .as_ref()
            .map_err(|source| ConnectError::TlsConfig {
                addr,
                source: source.clone(),
            })?;
        match tokio::time::timeout(timeout, connector.connect(stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(ConnectError::Tls {
                addr,
                server_name: connector.server_name(),
                source,
            }),
            Err(_) => Err(ConnectError::Timeout { addr, timeout }),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // No snapshot names the address any more: it is not ejected either.
        self.health.metrics.ejected.store(0, Relaxed);
    }
}

// === impl Sender ===

impl Sender {
    /// Bytes read from the upstream on this connection so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Relaxed)
    }

    /// Closes the connection at once, whatever it is still doing: sending
    /// a body its answer no longer needs, reading a broken answer.
    pub fn abort(self) {
        self.connection.abort();
    }

    /// A guard that stops the connection when dropped, unless disarmed:
    /// held over an exchange, it closes a connection whose answer is no
    /// longer awaited.
    pub fn stop_on_drop(&self) -> StopOnDrop {
        StopOnDrop(Some(self.connection.abort_handle()))
    }

    /// Drops the sender and leaves the connection's task to end by itself,
    /// but no later than `deadline`, nor once `upload` has waited on its
    /// client for `idle` (a body still wanted is sent to its end, as the
    /// client sends it).
    pub fn release_until(
        self,
        deadline: tokio::time::Instant,
        upload: Option<Arc<UploadProgress>>,
        idle: Duration,
    ) {
        let connection = self.connection;
        let stop = connection.abort_handle();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            stop.abort();
            return;
        };
        runtime.spawn(async move {
            let ended = within_upload_bounds(connection, upload.as_deref(), idle, deadline);
            if ended.await.is_err() {
                stop.abort();
            }
        });
    }
}

/// Puts an HTTP/2 connection aside when a request on it is given up at its
/// deadline while the connection is silent (see [`Endpoint::h2_watch`]).
///
/// Silent means nothing read for at least the keep-alive's `timeout` (10 s
/// by default; see [`H2Link::is_silent`]), not merely nothing read while
/// the request waited: a live upstream that takes longer than a short
/// deadline (a gRPC call's 100 ms) keeps its connection, which a PING
/// would have found alive. A request whose upload waits on its client at
/// the deadline leaves the connection alone too: the upstream, waiting for
/// the body, rightly sends nothing, and the timeout is the client's. A
/// gRPC call's stream is not tracked so (its quiet is no stall): a
/// client-streaming call quiet past its deadline on a connection silent
/// for 10 s still has the connection put aside, and the next request
/// opens another.
#[derive(Debug)]
pub struct H2Watch<'a> {
    endpoint: &'a Endpoint,
    link: &'a Arc<H2Link>,
    /// The request's body, when it streams one that is tracked.
    upload: Option<&'a UploadProgress>,
    deadline: tokio::time::Instant,
    armed: bool,
}

impl H2Watch<'_> {
    /// The answer came (or the request failed by itself): nothing to do.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for H2Watch<'_> {
    fn drop(&mut self) {
        // The deadline as the request had it: moved by its client's waits
        // once its upload ended (see `UploadProgress::answer_deadline`).
        let deadline = self.upload.map_or(self.deadline, |upload| {
            upload.answer_deadline(self.deadline)
        });
        if !self.armed
            || tokio::time::Instant::now() < deadline
            || self.upload.is_some_and(UploadProgress::waiting_on_client)
            || !self.link.is_silent()
        {
            return;
        }
        // Not an answer, a PING reply nor a frame of any other stream for
        // longer than a PING's answer may take: the upstream may be gone
        // without a word. Its streams still open keep the connection
        // (keep-alive closes it if it is dead); new requests go on a new
        // one.
        tracing::warn!(
            endpoint = %self.endpoint.addr,
            silence = ?self.link.silence(),
            "HTTP/2 upstream connection silent for longer than a keep-alive PING answer may take when a request on it reached its deadline; new requests go on a new connection"
        );
        self.endpoint.h2_forget(self.link);
    }
}

/// Stops an upstream connection when dropped (see [`Sender::stop_on_drop`]).
#[derive(Debug)]
pub struct StopOnDrop(Option<tokio::task::AbortHandle>);

impl StopOnDrop {
    /// Leaves the connection running.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop.abort();
        }
    }
}

impl std::ops::Deref for Sender {
    type Target = http1::SendRequest<RequestBody>;

    fn deref(&self) -> &Self::Target {
        &self.send
    }
}

impl std::ops::DerefMut for Sender {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.send
    }
}

/// The HTTP/1.1 handshake on `io` (TCP or TLS); the connection runs in a
/// task of its own.
async fn http1_over<S>(addr: SocketAddr, stream: S) -> Result<Sender, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(NoteReads::new(stream, Arc::clone(&read)));
    let (send, connection) = http1::Builder::new()
        // An answer's head is read up to the size the own path reads, so
        // both paths refuse the same heads (hyper's default is ~400 KB).
        .max_buf_size(crate::http1::response_head::MAX_HEAD)
        .handshake(io)
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "upstream connection ended");
        }
    });
    Ok(Sender {
        send,
        connection: task,
        read,
    })
}

/// What the reads of an upstream stream are noted in (see [`NoteReads`]).
pub trait ReadNote {
    /// Notes a read that brought `bytes` (0 at the end of the stream).
    fn note_read(&self, bytes: usize);
}

/// A count of the bytes read from an upstream: whether a connection that
/// closed on a request had sent any of its answer first.
impl ReadNote for AtomicU64 {
    fn note_read(&self, bytes: usize) {
        self.fetch_add(bytes as u64, Relaxed);
    }
}

/// An upstream stream (TCP or TLS) whose reads are noted in `N`.
#[derive(Debug)]
pub struct NoteReads<S, N> {
    inner: S,
    note: Arc<N>,
}

impl<S, N> NoteReads<S, N> {
    /// `inner`, its reads noted in `note`.
    pub fn new(inner: S, note: Arc<N>) -> NoteReads<S, N> {
        NoteReads { inner, note }
    }
}

impl<S: AsyncRead + Unpin, N: ReadNote> AsyncRead for NoteReads<S, N> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.note
                .note_read(buf.filled().len().saturating_sub(before));
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, N: Unpin> AsyncWrite for NoteReads<S, N> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How much of an answer an HTTP/2 upstream may send on one stream ahead
/// of weir's reading it (see `http2_over`).
const H2_STREAM_WINDOW: u32 = 256 * 1024;

/// How much an HTTP/2 upstream may send on its connection, all streams
/// together, ahead of weir's reading it: 128 streams' windows.
const H2_CONNECTION_WINDOW: u32 = 128 * H2_STREAM_WINDOW;

/// The HTTP/2 handshake on `io` (TCP or TLS), with the keep-alive PINGs of
/// `keep_alive` (see [`h2::KeepAlive::DEFAULT`]); the connection runs in a
/// task of its own.
async fn http2_over<I>(
    addr: SocketAddr,
    io: I,
    keep_alive: KeepAlive,
) -> Result<H2Sender, ConnectError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(keep_alive.interval)
        .keep_alive_timeout(keep_alive.timeout)
        .keep_alive_while_idle(true)
        // Every request to the endpoint shares this connection's window: a
        // stream whose client does not read holds as much of it as its own
        // window lets the upstream send. With hyper's windows (2 MiB a
        // stream, 5 MiB the connection) three such clients stopped every
        // other answer on the connection until their deadline; with these,
        // it takes 128, and what they hold stays under 32 MiB. 256 KiB a
        // stream still carries some 1 GB/s at a 0.25 ms round trip.
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        // An answer head as large as an HTTP/1 upstream may send (64 KiB),
        // not h2's 16 KiB default: the protocol does not change what passes.
        .max_header_list_size(crate::http1::request_head::h2_header_list_size(
            crate::http1::response_head::MAX_HEAD,
        ))
        .handshake(io)
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        match connection.await {
            Err(error) if error.is_timeout() => {
                tracing::warn!(%addr, ?keep_alive, "upstream HTTP/2 connection left a keep-alive PING unanswered; closed");
            }
            Err(error) => tracing::debug!(%addr, %error, "upstream HTTP/2 connection ended"),
            Ok(()) => {}
        }
    });
    Ok(sender)
}

/// Milliseconds since the first call in this process: the clock of ejections.
pub fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    // Never 0, which means "not ejected".
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// Picks an endpoint among those not ejected: the less loaded of two chosen
/// at random (power of two choices), which avoids herding onto one endpoint
/// without global state. When every endpoint is ejected, the one ejected
/// longest ago.
pub fn pick(endpoints: &[Arc<Endpoint>]) -> Option<&Arc<Endpoint>> {
    match endpoints.len() {
        0 => None,
        1 => endpoints.first(),
        n => {
            let now = clock_ms();
            let serving = endpoints.iter().filter(|e| !e.is_ejected(now)).count();
            match serving {
                0 => longest_ejected(endpoints),
                1 => endpoints.iter().find(|e| !e.is_ejected(now)),
                _ if serving == n => {
                    let mut rng = rand::rng();
                    let a = rng.random_range(..n);
                    // A second, different index.
                    let b = (a + 1 + rng.random_range(..n - 1)) % n;
                    Some(less_loaded(&endpoints[a], &endpoints[b]))
                }
                _ => {
                    let mut rng = rand::rng();
                    let a = rng.random_range(..serving);
                    let b = (a + 1 + rng.random_range(..serving - 1)) % serving;
                    let ea = nth_serving(endpoints, now, a)?;
                    let eb = nth_serving(endpoints, now, b)?;
                    Some(less_loaded(ea, eb))
                }
            }
        }
    }
}

/// Another endpoint than `failed`, at random among those not ejected (or the
/// one ejected longest ago), to retry a failed connect on.
pub fn pick_other<'a>(
    endpoints: &'a [Arc<Endpoint>],
    failed: &Arc<Endpoint>,
) -> Option<&'a Arc<Endpoint>> {
    let now = clock_ms();
    let is_other = |e: &&Arc<Endpoint>| !Arc::ptr_eq(e, failed);
    let serving = endpoints
        .iter()
        .filter(is_other)
        .filter(|e| !e.is_ejected(now))
        .count();
    if serving == 0 {
        let others: Vec<Arc<Endpoint>> = endpoints.iter().filter(is_other).cloned().collect();
        let chosen = longest_ejected(&others)?;
        return endpoints.iter().find(|e| Arc::ptr_eq(e, chosen));
    }
    let k = rand::rng().random_range(..serving);
    endpoints
        .iter()
        .filter(is_other)
        .filter(|e| !e.is_ejected(now))
        .nth(k)
}

fn less_loaded<'a>(a: &'a Arc<Endpoint>, b: &'a Arc<Endpoint>) -> &'a Arc<Endpoint> {
    if b.outstanding() < a.outstanding() {
        b
    } else {
        a
    }
}

fn nth_serving(endpoints: &[Arc<Endpoint>], now: u64, k: usize) -> Option<&Arc<Endpoint>> {
    endpoints.iter().filter(|e| !e.is_ejected(now)).nth(k)
}

fn longest_ejected(endpoints: &[Arc<Endpoint>]) -> Option<&Arc<Endpoint>> {
    endpoints
        .iter()
        .min_by_key(|e| e.health.ejected_at_ms.load(Relaxed))
}

// === impl InFlight ===

impl InFlight {
    /// The endpoint this request went to.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Relaxed);
    }
}

/// Whether the runtime has seen `stream` readable (bytes, or its end) since
/// a read last found it drained. Asks tokio's readiness state, not the
/// socket: no syscall.
fn seen_readable(stream: &TcpStream) -> bool {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    stream.poll_read_ready(&mut context).is_ready()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_shares_live_endpoints_and_forgets_dropped_ones() {
        let registry = Registry::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        let metrics = Metrics::new();
        let a = registry.endpoint(addr, &metrics);
        let b = registry.endpoint(addr, &metrics);
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = registry.endpoint(addr, &metrics);
        assert_eq!(Arc::strong_count(&c), 1);
    }

    #[test]
    fn pick_prefers_the_less_loaded_of_two() {
        let registry = Registry::default();
        let metrics = Metrics::new();
        let endpoints: Vec<_> = (1..=2)
            .map(|p| registry.endpoint(SocketAddr::from(([127, 0, 0, 1], p)), &metrics))
            .collect();
        let _busy: Vec<_> = (0..3).map(|_| endpoints[0].start()).collect();
        for _ in 0..100 {
            assert_eq!(pick(&endpoints).map(|e| e.addr().port()), Some(2));
        }
        assert_eq!(endpoints[0].outstanding(), 3);
    }

    fn three_endpoints(metrics: &Metrics) -> (Registry, Vec<Arc<Endpoint>>) {
        let registry = Registry::default();
        let endpoints = (1..=3)
            .map(|p| registry.endpoint(SocketAddr::from(([127, 0, 0, 1], p)), metrics))
            .collect();
        (registry, endpoints)
    }

    #[test]
    fn consecutive_failures_eject_an_endpoint_until_its_back_off_ends() {
        let metrics = Metrics::new();
        let (_registry, endpoints) = three_endpoints(&metrics);
        for _ in 0..EJECT_AFTER_FAILURES - 1 {
            endpoints[0].record_failure(&endpoints);
        }
        assert!(!endpoints[0].is_ejected(clock_ms()));
        endpoints[0].record_failure(&endpoints);
        assert!(endpoints[0].is_ejected(clock_ms()));
        for _ in 0..200 {
            let chosen = pick(&endpoints).map(|e| e.addr().port());
            assert_ne!(chosen, Some(1), "an ejected endpoint was picked");
            let other = pick_other(&endpoints, &endpoints[1]).map(|e| e.addr().port());
            assert_eq!(other, Some(3));
        }
        let back = clock_ms() + u64::try_from(FIRST_EJECTION.as_millis()).unwrap_or(0) + 1;
        assert!(!endpoints[0].is_ejected(back));
        let rendered = {
            let mut out = String::new();
            metrics.render(&mut out);
            out
        };
        assert!(
            rendered.contains("weir_upstream_ejections_total{endpoint=\"127.0.0.1:1\"} 1"),
            "{rendered}"
        );
    }

    #[test]
    fn a_success_breaks_the_failure_streak() {
        let metrics = Metrics::new();
        let (_registry, endpoints) = three_endpoints(&metrics);
        for _ in 0..EJECT_AFTER_FAILURES - 1 {
            endpoints[0].record_failure(&endpoints);
        }
        endpoints[0].record_success();
        endpoints[0].record_failure(&endpoints);
        assert!(!endpoints[0].is_ejected(clock_ms()));
    }

    #[test]
    fn the_last_serving_endpoint_of_a_role_is_never_ejected() {
        let metrics = Metrics::new();
        let (_registry, endpoints) = three_endpoints(&metrics);
        for endpoint in &endpoints {
            for _ in 0..EJECT_AFTER_FAILURES {
                endpoint.record_failure(&endpoints);
            }
        }
        let now = clock_ms();
        let serving: Vec<_> = endpoints.iter().filter(|e| !e.is_ejected(now)).collect();
        assert_eq!(serving.len(), 1);
        assert_eq!(serving[0].addr().port(), 3);
        for _ in 0..50 {
            assert_eq!(pick(&endpoints).map(|e| e.addr().port()), Some(3));
        }
    }

    /// An exchange given up on before its answer (its future dropped at
    /// the request's deadline) stops its connection, which was still
    /// sending the body to an upstream that reads no more.
    #[tokio::test]
    async fn an_exchange_given_up_before_its_answer_stops_its_connection() {
        const BODY: usize = 64 << 20;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        // Takes the connection and reads nothing from it.
        let _upstream = tokio::spawn(async move {
            let accepted = listener.accept().await;
            std::future::pending::<()>().await;
            drop(accepted);
        });
        let metrics = Metrics::new();
        let registry = Registry::default();
        let endpoint = registry.endpoint(addr, &metrics);
        let mut sender = endpoint
            .connect(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        // More than the socket buffers between them hold.
        let body = RequestBody::Buffered(crate::request_body::BufferedBody::of(
            bytes::Bytes::from(vec![b'x'; BODY]),
        ));
        let request = http::Request::post("http://upstream.test/up")
            .header(http::header::CONTENT_LENGTH, BODY)
            .body(body)
            .unwrap_or_else(|e| panic!("{e}"));
        let unanswered = sender.stop_on_drop();
        let exchange =
            tokio::time::timeout(Duration::from_millis(200), sender.try_send_request(request))
                .await;
        assert!(exchange.is_err(), "the upstream never answers");
        assert!(
            !sender.connection.is_finished(),
            "the connection still sends the body"
        );
        drop(unanswered);
        let ended = tokio::time::timeout(Duration::from_secs(5), &mut sender.connection).await;
        assert!(
            matches!(&ended, Ok(Err(error)) if error.is_cancelled()),
            "the connection was not stopped: {ended:?}"
        );
    }

    /// The sweep closes a pooled connection idle past [`IDLE_TIMEOUT`]
    /// (its upstream sees the close) and keeps a younger one.
    #[tokio::test]
    async fn the_sweep_closes_idle_connections_past_the_idle_timeout() {
        use tokio::io::AsyncReadExt as _;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let metrics = Metrics::new();
        let registry = Registry::default();
        let endpoint = registry.endpoint(addr, &metrics);
        let mut accepted = Vec::new();
        let now = Instant::now();
        let stale = now
            .checked_sub(IDLE_TIMEOUT + Duration::from_secs(1))
            .unwrap_or_else(|| panic!("a clock this young cannot tell"));
        for since in [stale, now] {
            let stream = endpoint
                .connect_tcp(Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            accepted.push(listener.accept().await.unwrap_or_else(|e| panic!("{e}")).0);
            endpoint.put_raw_idle(stream, since);
        }
        registry.close_expired_idle();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), accepted[0].read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "the stale one was not closed: {read:?}"
        );
        let read =
            tokio::time::timeout(Duration::from_millis(100), accepted[1].read(&mut byte)).await;
        assert!(read.is_err(), "the young one was closed: {read:?}");
        assert!(endpoint.take_raw_idle(Instant::now()).is_some());
    }

    #[test]
    fn the_retry_endpoint_is_drawn_at_random() {
        let metrics = Metrics::new();
        let (_registry, endpoints) = three_endpoints(&metrics);
        let mut seen = [false; 4];
        for _ in 0..200 {
            if let Some(e) = pick_other(&endpoints, &endpoints[0]) {
                seen[usize::from(e.addr().port())] = true;
            }
        }
        assert_eq!(seen, [false, false, true, true]);
    }
}
