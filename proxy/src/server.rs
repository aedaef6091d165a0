//! Downstream listeners: accept, optional TLS handshake, HTTP/1.1 or HTTP/2
//! (detected from the connection preface or ALPN), and graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use arc_swap::ArcSwap;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustix::io::Errno;
use rustix::net::SocketFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::util::Oneshot;
use tower::{Service, ServiceBuilder, ServiceExt as _};
use tracing::Instrument as _;

use crate::body::{BodyWatch, ProxyBody};
use crate::explained_errors::{ErrorBody, ExplainedErrors};
use crate::forward::{self, Downstream};
use crate::http1::ForwardingPath;
use crate::http1::client_socket::ClientSocket;
use crate::http1::connection::{self as own_path, Ended};
use crate::http1::prefixed::Prefixed;
use crate::metrics::ListenerMetrics;
use crate::request_body::watching_chunked_end;
use crate::request_id::RequestIdLayer;
use crate::signal::Signal;
use crate::write_stall::{StallLimit, WriteStall};
use crate::{Proxy, Shared};

/// Largest request head accepted; a larger one is answered 431.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How a listener serves connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Name of the listener, for logs and the `listener` metric label.
    pub name: String,
    /// TLS, when the listener is HTTPS; the config in the cell when a
    /// connection arrives is used, so a new certificate applies to new
    /// connections at once.
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// A client that has not sent its request head within this is dropped.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    pub drain_timeout: Duration,
    /// A connection served by hyper (HTTP/2, and HTTP/1 over TLS) that has
    /// had no request open for this long is closed gracefully: an HTTP/2
    /// client gets a `GOAWAY`. HTTP/1 connections end sooner, at the
    /// header timeout, when no next request comes.
    pub idle_timeout: Duration,
    /// Client connections this listener keeps open at once; more are closed
    /// as soon as they are accepted.
    pub max_connections: usize,
    /// A limit shared with other listeners (the process's descriptor budget):
    /// each connection also needs one of its permits.
    pub shared_limit: Option<Arc<Semaphore>>,
    /// Which code forwards HTTP/1.1 on a cleartext listener; TLS listeners
    /// always use hyper.
    pub forwarding: ForwardingPath,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            name: "default".to_owned(),
            tls: None,
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: weir_config::model::DEFAULT_MAX_CONNECTIONS,
            shared_limit: None,
            forwarding: ForwardingPath::default(),
        }
    }
}

/// How long a client connection served by hyper may stay without an open
/// request (see [`ServeOptions::idle_timeout`]): nginx's
/// `keepalive_timeout`, which it applies to HTTP/2 connections too.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// Shortest and longest pause after a failed accept (out of descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Holds a connection's place under the limits while it is open.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    metrics: Arc<ListenerMetrics>,
    _own: OwnedSemaphorePermit,
    _shared: Option<OwnedSemaphorePermit>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.open.fetch_sub(1, Relaxed);
    }
}

// === impl Proxy ===

impl Proxy {
    /// Serves connections accepted on `listener` until `shutdown` completes,
    /// then stops accepting and lets in-flight requests finish for up to the
    /// drain timeout; connections still open then are closed. Returns the
    /// number of connections cut at the deadline.
    pub async fn serve(
        &self,
        listener: Listener,
        options: ServeOptions,
        shutdown: impl Future<Output = ()>,
    ) -> usize {
        self.serve_handing_over(listener, options, shutdown, std::future::pending())
            .await
    }

    /// [`Proxy::serve`] that may hand its socket over: when `hand_over`
    /// completes first, it stops accepting (another serve loop goes on with
    /// the same socket) but leaves its connections be, idle keep-alive ones
    /// included, so that no client finds its connection closed under a
    /// request; it ends once they have all closed, or drains them as
    /// `serve` does when `shutdown` completes.
    pub async fn serve_handing_over(
        &self,
        listener: Listener,
        options: ServeOptions,
        shutdown: impl Future<Output = ()>,
        hand_over: impl Future<Output = ()>,
    ) -> usize {
        let builder = Arc::new(http_builder(&options));
        let metrics = self.shared.metrics.listener(&options.name);
        let own_limit = Arc::new(Semaphore::new(
            options.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        ));
        let graceful = GracefulShutdown::new();
        // Raised at the drain deadline: every connection still open is dropped.
        let cut = Arc::new(Signal::default());
        // Raised when the drain begins: each connection then ends after its
        // request in flight. `graceful` only counts the open connections
        // (each holds one of its watchers), so the drain knows when all
        // have ended.
        let draining = Arc::new(Signal::default());
        // Should this future be dropped before its end (its task aborted),
        // its connections end as at a cut, not live on unseen.
        let _raised_if_dropped = [
            RaiseOnDrop(Arc::clone(&draining)),
            RaiseOnDrop(Arc::clone(&cut)),
        ];
        let mut backoff = AcceptBackoff::new(&options.name);
        let local_port = listener.local_addr().map_or(0, |addr| addr.port());
        tokio::pin!(shutdown);
        tokio::pin!(hand_over);
        let mut handed_over = false;
        loop {
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => break,
                () = &mut hand_over => {
                    handed_over = true;
                    break;
                }
                accepted = listener.accept() => match accepted {
                    Ok(pair) => {
                        backoff.succeeded();
                        pair
                    }
                    Err(error) => {
                        let pause = backoff.failed(&error);
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = &mut hand_over => {
                                handed_over = true;
                                break;
                            }
                            () = tokio::time::sleep(pause) => continue,
                        }
                    }
                },
            };
            // The last descriptors are kept for weir's own work.
            if crate::descriptors::is_kept(std::os::fd::AsRawFd::as_raw_fd(&stream)) {
                refuse(&metrics, &options.name, remote, stream);
                continue;
            }
            let shared_permit = match &options.shared_limit {
                None => None,
                Some(limit) => match Arc::clone(limit).try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => {
                        refuse(&metrics, &options.name, remote, stream);
                        continue;
                    }
                },
            };
            let Ok(own_permit) = Arc::clone(&own_limit).try_acquire_owned() else {
                refuse(&metrics, &options.name, remote, stream);
                continue;
            };
            metrics.open.fetch_add(1, Relaxed);
            let open = OpenConnection {
                metrics: Arc::clone(&metrics),
                _own: own_permit,
                _shared: shared_permit,
            };
            let shared = Arc::clone(&self.shared);
            let builder = Arc::clone(&builder);
            let acceptor = options
                .tls
                .as_ref()
                .map(|tls| TlsAcceptor::from(tls.load_full()));
            let watcher = graceful.watcher();
            let ends = ConnectionEnds {
                draining: Arc::clone(&draining),
                idle_timeout: options.idle_timeout,
            };
            let handshake_timeout = options.header_read_timeout;
            let cut = Arc::clone(&cut);
            let own =
                (options.forwarding == ForwardingPath::Own && acceptor.is_none()).then(|| {
                    own_path::Limits {
                        header_read_timeout: handshake_timeout,
                        draining: Arc::clone(&draining),
                    }
                });
            // Debug level, as each request's span (see `forward::serve`): at
            // the default level a connection pays for a level check only.
            let span = tracing::debug_span!(
                "connection",
                listener = %options.name,
                peer = %remote,
                tls = acceptor.is_some(),
            );
            let downstream =
                Downstream::new(remote, acceptor.is_some(), span.clone()).on_port(local_port);
            if let Some(limits) = own {
                // A task of its own: hyper's connection state is not part
                // of it unless the connection is handed over.
                let mut own = OwnConnection {
                    shared,
                    downstream,
                    builder,
                    _watcher: watcher,
                    limits,
                    ends,
                    place: Some(open),
                };
                // Boxed: tokio moves a task's future by value about eight
                // times between here and its end (into the task, and its
                // stage set at the start and end), each a copy of the whole
                // connection state; a box is copied once and then moved as
                // a pointer. Under `Connection: close` traffic those copies
                // were about 2,000 of some 21,000 user-space instructions
                // per request (callgrind, `ab -c 8`).
                tokio::spawn(Box::pin(
                    async move {
                        tokio::select! {
                            biased;
                            () = own.serve(ClientSocket::unregistered(stream)) => {}
                            () = cut.raised() => {
                                tracing::debug!("connection cut at the drain deadline");
                            }
                        }
                    }
                    .instrument(span),
                ));
                continue;
            }
            // Boxed, as the own path's task above.
            tokio::spawn(Box::pin(
                async move {
                    // Moved into the connection's socket once it has one;
                    // dropped with the connection before that.
                    let place = Some(open);
                    // Held until the connection ends: the drain waits for it.
                    let _watcher = watcher;
                    let connection = async move {
                        let stream = match TcpStream::from_std(stream) {
                            Ok(stream) => stream,
                            Err(error) => {
                                tracing::warn!(%error, "connection closed: it could not be registered with the poller");
                                return;
                            }
                        };
                        // hyper's header timer starts with the first byte; a client
                        // that connects and says nothing is dropped here.
                        let mut first = [0u8; 1];
                        if !matches!(
                            tokio::time::timeout(handshake_timeout, stream.peek(&mut first)).await,
                            Ok(Ok(1))
                        ) {
                            tracing::debug!("no request within the header timeout");
                            return;
                        }
                        // A TLS connection starts with a handshake record;
                        // a letter is a plain HTTP request, told so in
                        // plain HTTP, as nginx tells it (a TLS alert says
                        // nothing to an HTTP client).
                        if acceptor.is_some() && first[0].is_ascii_uppercase() {
                            answer_plain_http_on_tls(stream).await;
                            return;
                        }
                        let limit = Arc::new(StallLimit::default());
                        let (body_watch, _ends_watch) = BodyWatch::for_connection();
                        let downstream = downstream
                            .with_write_stall(Arc::clone(&limit))
                            .with_body_watch(Arc::clone(&body_watch));
                        let stream = WriteStall::new(stream, limit).holding(place);
                        let connection = Connection::new(shared, downstream);
                        let result = match acceptor {
                            None => {
                                serve_with_hyper(
                                    &builder,
                                    ExplainedErrors::new(stream, ErrorBody::Text),
                                    connection,
                                    &ends,
                                )
                                .await
                            }
                            Some(acceptor) => {
                                match tokio::time::timeout(
                                    handshake_timeout,
                                    acceptor.accept(stream),
                                )
                                .await
                                {
                                    Ok(Ok(tls)) => {
                                        serve_with_hyper(
                                            &builder,
                                            ExplainedErrors::new(tls, ErrorBody::Text),
                                            connection,
                                            &ends,
                                        )
                                        .await
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!("TLS handshake timed out");
                                        return;
                                    }
                                }
                            }
                        };
                        if let Err(error) = result {
                            tracing::debug!(%error, "downstream connection ended with an error");
                        }
                    };
                    tokio::select! {
                        biased;
                        () = connection => {}
                        () = cut.raised() => {
                            tracing::debug!("connection cut at the drain deadline");
                        }
                    }
                }
                .instrument(span),
            ));
        }
        drop(listener);
        if handed_over {
            tracing::info!(listener = %options.name, connections = metrics.open.load(Relaxed), "socket handed over; open connections go on until they close");
            // Every connection holds one of this loop's places: all of them
            // free means none is left.
            let every_place =
                u32::try_from(options.max_connections.clamp(1, Semaphore::MAX_PERMITS))
                    .unwrap_or(u32::MAX);
            tokio::select! {
                () = &mut shutdown => {}
                _ = own_limit.acquire_many(every_place) => return 0,
            }
        }
        draining.raise();
        tracing::info!(listener = %options.name, connections = metrics.open.load(Relaxed), "draining");
        tokio::select! {
            () = graceful.shutdown() => 0,
            () = tokio::time::sleep(options.drain_timeout) => {
                let open = metrics.open.load(Relaxed);
                cut.raise();
                tracing::warn!(listener = %options.name, connections = open, "drain timeout reached; cutting the connections still open");
                open
            }
        }
    }
}

/// Raises its signal when dropped.
struct RaiseOnDrop(Arc<Signal>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

/// A connection served by weir's own HTTP/1 path, with what it needs to
/// hand the connection to hyper.
struct OwnConnection {
    shared: Arc<Shared>,
    downstream: Downstream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Held while the connection is open, so the drain waits for it.
    _watcher: hyper_util::server::graceful::Watcher,
    limits: own_path::Limits,
    /// When hyper's server, once handed the connection, closes it.
    ends: ConnectionEnds,
    /// The connection's place under the listener's limits; handed to the
    /// socket with the connection (see [`WriteStall::holding`]).
    place: Option<OpenConnection>,
}

// === impl OwnConnection ===

impl OwnConnection {
    /// Serves `stream`; a client that says nothing within the header
    /// timeout is dropped, as on the hyper path (the own path's wait for a
    /// first request is bounded by it, so no peek is needed first).
    ///
    /// Borrows the connection: the task owns it once, and this future
    /// keeps a reference, not a second copy (a future keeps its arguments
    /// as passed and as bound; on every connection, idle ones included).
    async fn serve(&mut self, stream: ClientSocket) {
        let (stream, read) = match own_path::serve(
            &self.shared,
            &self.downstream,
            stream,
            self.limits.clone(),
        )
        .await
        {
            Ended::Closed => return,
            Ended::HandOff { stream, read } => (stream, read),
        };
        let limit = Arc::new(StallLimit::default());
        let (body_watch, _ends_watch) = BodyWatch::for_connection();
        let downstream = self
            .downstream
            .clone()
            .with_write_stall(Arc::clone(&limit))
            .with_body_watch(Arc::clone(&body_watch));
        let stream = WriteStall::new(stream, limit).holding(self.place.take());
        let connection = Connection::new(Arc::clone(&self.shared), downstream);
        // Boxed: hyper's connection state is paid for only by the
        // connections handed to it.
        let result = Box::pin(serve_with_hyper(
            &self.builder,
            ExplainedErrors::new(Prefixed::new(read, stream), ErrorBody::Text),
            connection,
            &self.ends,
        ))
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, "downstream connection ended with an error");
        }
    }
}

/// What every request of one downstream connection shares.
struct Connection {
    shared: Arc<Shared>,
    downstream: Downstream,
    /// Requests of the connection not yet wholly answered, and since when
    /// it has had none.
    open: OpenRequests,
}

/// When a connection served by hyper is closed, besides by its client.
#[derive(Clone)]
struct ConnectionEnds {
    /// Raised when the listener drains.
    draining: Arc<Signal>,
    /// See [`ServeOptions::idle_timeout`].
    idle_timeout: Duration,
}

/// Counts a connection's requests from their call until their answer's
/// body is sent or dropped, and notes when the count last fell to zero.
/// The idle wait reads both when its timer fires and re-arms from the
/// note, so no timer is touched per request.
struct OpenRequests {
    count: AtomicUsize,
    /// When the connection last had no request open, in milliseconds since
    /// `since`.
    idle_at_ms: AtomicU64,
    since: tokio::time::Instant,
}

/// One request counted in [`OpenRequests`] until dropped; travels with the
/// answer's body.
struct OpenRequest(Arc<Connection>);

// === impl Connection ===

impl Connection {
    fn new(shared: Arc<Shared>, downstream: Downstream) -> Arc<Connection> {
        Arc::new(Connection {
            shared,
            downstream,
            open: OpenRequests {
                count: AtomicUsize::new(0),
                idle_at_ms: AtomicU64::new(0),
                since: tokio::time::Instant::now(),
            },
        })
    }
}

// === impl OpenRequests ===

impl OpenRequests {
    fn begin(connection: &Arc<Connection>) -> OpenRequest {
        connection.open.count.fetch_add(1, Relaxed);
        OpenRequest(Arc::clone(connection))
    }

    /// Ends once the connection has had no request open for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        let mut wake = tokio::time::Instant::now() + timeout;
        loop {
            tokio::time::sleep_until(wake).await;
            let now = tokio::time::Instant::now();
            wake = if self.count.load(Acquire) == 0 {
                let idle_at = self.since + Duration::from_millis(self.idle_at_ms.load(Acquire));
                if idle_at + timeout <= now {
                    return;
                }
                idle_at + timeout
            } else {
                now + timeout
            };
        }
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let open = &self.0.open;
        // Noted at every end, before the count falls: an idle wait that
        // reads a zero count then reads when the last request ended, or a
        // later time.
        let elapsed = u64::try_from(open.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        open.idle_at_ms.store(elapsed, Release);
        open.count.fetch_sub(1, Release);
    }
}

/// An answer's body, counted as an open request of its connection until
/// it is sent or dropped.
struct CountedBody {
    body: ProxyBody,
    _open: OpenRequest,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `io` with hyper until the client closes it, or it is closed
/// gracefully when the listener drains or after it has had no request
/// open for the idle timeout.
async fn serve_with_hyper<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    connection: Arc<Connection>,
    ends: &ConnectionEnds,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle = connection.open.idle_for(ends.idle_timeout);
    let service = HyperService(proxy_stack(Arc::clone(&connection)));
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut served = std::pin::pin!(served);
    let mut idle = std::pin::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            result = served.as_mut() => return result,
            () = ends.draining.raised(), if !closing => {
                served.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle.as_mut(), if !closing => {
                tracing::debug!(idle_timeout = ?ends.idle_timeout, "closing a connection idle for the idle timeout");
                served.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// The tower stack of a proxy listener, built for each connection:
/// outermost layer first, the forwarder last. Per-route timeouts are not a
/// layer: they come with each snapshot and the forwarder applies them.
fn proxy_stack(
    connection: Arc<Connection>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<CountedBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        // Takes the client's `x-request-id` or makes one; it goes upstream
        // and into the request's span.
        .layer(RequestIdLayer)
        .service(tower::service_fn(
            move |req: http::Request<hyper::body::Incoming>| {
                let connection = Arc::clone(&connection);
                async move {
                    let open = OpenRequests::begin(&connection);
                    let Connection {
                        shared, downstream, ..
                    } = &*connection;
                    let http10 = req.version() == http::Version::HTTP_10;
                    let head_request = req.method() == http::Method::HEAD;
                    let (req, upload_end) = watching_chunked_end(req);
                    let mut response = forward::serve(shared, downstream, req).await;
                    if http10 {
                        forward::closing_for_http10(&mut response);
                    }
                    if upload_end.is_some_and(|end| !end.ended_plainly()) {
                        forward::closing_after_chunked_upload(&mut response);
                    }
                    if head_request {
                        forward::without_local_body(&mut response);
                    }
                    Ok(response.map(|body| CountedBody { body, _open: open }))
                }
            },
        ))
}

/// A tower service as hyper calls it: hyper's `call` takes `&self`, tower's
/// `&mut self`, so each request gets a clone of the stack, readied and
/// called once (as axum and hyper-util do). Every layer weir stacks is cheap
/// to clone: reference counts, no allocation.
#[derive(Debug, Clone)]
pub struct HyperService<S>(pub S);

impl<S, Req> hyper::service::Service<Req> for HyperService<S>
where
    S: Service<Req> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Oneshot<S, Req>;

    fn call(&self, req: Req) -> Self::Future {
        self.0.clone().oneshot(req)
    }
}

/// Closes a connection accepted over a limit, and counts it.
fn refuse(
    metrics: &ListenerMetrics,
    listener: &str,
    remote: SocketAddr,
    stream: std::net::TcpStream,
) {
    metrics.refused.fetch_add(1, Relaxed);
    tracing::debug!(%listener, %remote, "connection limit reached; connection closed");
    drop(stream);
}

/// Answers a plain HTTP request sent to a TLS listener with a `400` that
/// says so, then reads what the client still sends for a moment before
/// closing, so that the answer is not lost to a reset.
async fn answer_plain_http_on_tls(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const TEXT: &str = "400 bad request: plain HTTP sent to a TLS listener; use https://\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{TEXT}",
        TEXT.len()
    );
    let written = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut read = 0;
        while read < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    tracing::debug!("plain HTTP on a TLS listener answered 400");
}

fn http_builder(options: &ServeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(crate::http1::request_head::h2_header_list_size(
            MAX_REQUEST_HEAD,
        ))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        // What an HTTP/2 client may hold of weir's memory by opening wide
        // windows and not reading: each stream buffers up to this much of
        // its answer before its upstream is read no further (hyper's 400
        // KiB by default; 200 streams of it were 120 MB a connection).
        // 64 KiB a stream is what weir's own HTTP/1 path reads at once.
        .max_send_buf_size(H2_SEND_BUFFER_PER_STREAM)
        // HAProxy's default, and under nginx's 128: with the buffer above,
        // at most 6.4 MB of answers buffered per connection.
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
    builder
}

/// The most of its answer an HTTP/2 stream buffers for a client that does
/// not read (see `http_builder`).
const H2_SEND_BUFFER_PER_STREAM: usize = 64 * 1024;

/// The most streams an HTTP/2 client may have open on one connection.
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// A listening socket for [`Proxy::serve`], accepting connections that
/// are not registered with the runtime's poller: weir's own path registers
/// a connection only when it must wait on it (see `http1::client_socket`);
/// hyper's connections are registered at once.
#[derive(Debug)]
pub struct Listener {
    socket: AsyncFd<std::net::TcpListener>,
}

// === impl Listener ===

impl Listener {
    /// Takes `listener` over from tokio; must run inside a tokio runtime.
    ///
    /// # Errors
    /// When the socket cannot be taken from tokio, have Nagle's delay
    /// turned off, or be registered with the runtime's poller.
    pub fn new(listener: TcpListener) -> std::io::Result<Listener> {
        let listener = listener.into_std()?;
        // Answers go out as written, never held back for more: Nagle off.
        // On Linux every accepted socket inherits this.
        socket2::SockRef::from(&listener).set_tcp_nodelay(true)?;
        // A connection is queued for accept only once its first bytes
        // have come (or, from a client that sends nothing, after one
        // retransmitted SYN-ACK, about a second), as HAProxy's
        // `defer-accept` and nginx's `deferred` do. Every protocol weir
        // serves has the client speak first, so its first read finds the
        // request there: the connection is read, answered and closed
        // without waking weir for an empty accept, nor registering the
        // socket with the poller to wait for its bytes. Measured on the
        // own path, `wrk -t1 -c16 -d5s -H 'Connection: close'` pinned
        // beside weir on one core, 4 interleaved runs: 27.1 µs of weir's
        // CPU per request against 40.1 µs without (medians), with
        // `epoll_ctl` calls per request down from 2.0 to 0 and
        // `epoll_wait` calls from 2.5 to 0.7 (`perf stat -e
        // 'syscalls:sys_enter_*'`).
        // Only a saving: a kernel or sandbox that refuses it is logged and
        // served all the same.
        #[cfg(target_os = "linux")]
        if let Err(error) = nix::sys::socket::setsockopt(
            &listener,
            defer_accept::DeferAccept,
            &defer_accept::SECONDS,
        ) {
            tracing::warn!(
                addr = ?listener.local_addr().ok(),
                %error,
                "TCP_DEFER_ACCEPT refused: connections are accepted before their first bytes come"
            );
        }
        // Deprecated because a type whose `as_raw_fd` is not its own
        // descriptor would make it unsound; a `std::net::TcpListener` owns
        // its descriptor, which lives and closes with the `AsyncFd`.
        #[allow(deprecated)]
        let socket = AsyncFd::with_interest(listener, Interest::READABLE)?;
        Ok(Listener { socket })
    }

    /// The address the socket listens on.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// The next connection, non-blocking, close-on-exec and without
    /// Nagle's delay, with its peer's address.
    async fn accept(&self) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.socket.readable().await?;
            let accepted = ready.try_io(|socket| {
                let mut lost = 0;
                loop {
                    match rustix::net::acceptfrom_with(
                        socket.get_ref(),
                        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                    ) {
                        Err(Errno::INTR) => {}
                        // Bounded: an error that took no connection from the
                        // queue would come back forever; it then pauses the
                        // listener as any other failure.
                        Err(errno) if is_lost_connection(errno) && lost < LOST_IN_A_ROW => {
                            lost += 1;
                            tracing::debug!(error = %std::io::Error::from(errno), "connection lost before it was accepted");
                        }
                        result => return result.map_err(std::io::Error::from),
                    }
                }
            });
            let Ok(accepted) = accepted else {
                // Would block: readiness cleared, wait again.
                continue;
            };
            let (socket, peer) = accepted?;
            // As tokio's accept does: a flood of connections must still
            // let the thread's other tasks run.
            tokio::task::coop::consume_budget().await;
            let stream = std::net::TcpStream::from(socket);
            // On Linux accepted sockets inherit TCP_NODELAY from the
            // listener (see `Listener::new`): no setsockopt per connection.
            #[cfg(not(target_os = "linux"))]
            let _ = stream.set_nodelay(true);
            let peer = match peer.map(SocketAddr::try_from) {
                Some(Ok(peer)) => peer,
                _ => match stream.peer_addr() {
                    Ok(peer) => peer,
                    // Gone already: not a failure of the listener.
                    Err(error) => {
                        tracing::debug!(%error, "accepted connection without a peer address; closed");
                        continue;
                    }
                },
            };
            return Ok((stream, peer));
        }
    }
}

/// Connections lost before their accept retried at once in a row; one
/// more pauses the listener (see [`is_lost_connection`]).
const LOST_IN_A_ROW: usize = 64;

/// Whether `accept` failed for the connection it took rather than for the
/// listener: on Linux a connection's pending network error comes back from
/// `accept` (accept(2), "Error handling": the TCP/IP errors listed there,
/// and an aborted connection), to be treated as "try again". The others
/// (out of descriptors or memory, a security module refusing) pause the
/// listener.
fn is_lost_connection(errno: Errno) -> bool {
    [
        Errno::CONNABORTED,
        Errno::NETDOWN,
        Errno::PROTO,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::NONET,
        Errno::HOSTUNREACH,
        Errno::OPNOTSUPP,
        Errno::NETUNREACH,
    ]
    .contains(&errno)
}

/// The pause after a failed `accept` (out of descriptors, or similar): from
/// 10 ms, doubling up to 1 s, reset by the next success; logged once per
/// episode instead of at every retry.
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: String,
    pause: Option<Duration>,
}

// === impl AcceptBackoff ===

impl AcceptBackoff {
    /// No failure yet on the listener named `listener`.
    pub fn new(listener: &str) -> AcceptBackoff {
        AcceptBackoff {
            listener: listener.to_owned(),
            pause: None,
        }
    }

    /// Records a failed accept; returns how long to wait before the next.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        let pause = match self.pause {
            None => {
                tracing::warn!(listener = %self.listener, %error, "accept failed; backing off until it succeeds");
                ACCEPT_BACKOFF_MIN
            }
            Some(last) => (last * 2).min(ACCEPT_BACKOFF_MAX),
        };
        self.pause = Some(pause);
        pause
    }

    /// Records a successful accept, ending an episode of failures.
    pub fn succeeded(&mut self) {
        if self.pause.take().is_some() {
            tracing::info!(listener = %self.listener, "accepting again");
        }
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[test]
    fn a_connection_lost_before_accept_is_retried_and_running_out_pauses() {
        for lost in [Errno::CONNABORTED, Errno::PROTO, Errno::NETUNREACH] {
            assert!(is_lost_connection(lost), "{lost:?}");
        }
        for listener_failure in [
            Errno::MFILE,
            Errno::NFILE,
            Errno::NOBUFS,
            Errno::NOMEM,
            Errno::PERM,
        ] {
            assert!(
                !is_lost_connection(listener_failure),
                "{listener_failure:?}"
            );
        }
    }

    /// A [`Listener`] on an ephemeral loopback port, and its address.
    async fn listening() -> (Listener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let listener = Listener::new(listener).unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        (listener, addr)
    }

    /// The next connection `listener` accepts, within 10 s.
    async fn accepted(listener: &Listener) -> (std::net::TcpStream, SocketAddr) {
        tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn accepted_sockets_are_non_blocking_without_nagle_with_their_peer() {
        let (listener, addr) = listening().await;
        let mut client = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        std::io::Write::write_all(&mut client, b"x").unwrap_or_else(|e| panic!("{e}"));
        let (accepted, peer) = accepted(&listener).await;
        assert_eq!(Some(peer), client.local_addr().ok());
        assert_eq!(accepted.nodelay().ok(), Some(true), "TCP_NODELAY");
        let mut byte = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &accepted, &mut byte).ok(), Some(1));
        let read = std::io::Read::read(&mut &accepted, &mut byte);
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "a blocking socket would have waited here"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_connection_is_accepted_once_its_first_bytes_have_come() {
        let (listener, addr) = listening().await;
        let set =
            nix::sys::socket::getsockopt(listener.socket.get_ref(), defer_accept::DeferAccept);
        assert_eq!(set.ok(), Some(defer_accept::SECONDS));
        let mut client = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        // Connected for the client, but held back by the kernel: well
        // within the first SYN-ACK retransmission (a second), nothing is
        // there to accept.
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(early.is_err(), "accepted before any byte came: {early:?}");
        std::io::Write::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let (accepted, _) = accepted(&listener).await;
        // The bytes are there as soon as the connection is: no wait.
        let mut head = [0u8; 64];
        let read = std::io::Read::read(&mut &accepted, &mut head).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&head[..read], b"GET / HTTP/1.1\r\n\r\n");
    }
}

#[cfg(test)]
mod accept_backoff_tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut backoff = AcceptBackoff::new("public");
        let error = std::io::Error::from_raw_os_error(24);
        let pauses: Vec<u128> = (0..9).map(|_| backoff.failed(&error).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(&error), ACCEPT_BACKOFF_MIN);
    }
}

/// The listener's `TCP_DEFER_ACCEPT` (see [`Listener::new`]).
#[cfg(target_os = "linux")]
mod defer_accept {
    use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

    /// How long a connection that sends nothing is held back: the kernel
    /// counts it in SYN-ACK retransmissions, and one second is the first.
    pub(super) const SECONDS: i32 = 1;

    // Neither nix, rustix, socket2 nor stable std sets this option on a
    // listener. `sockopt_impl!` is nix's published way to add one: the
    // `setsockopt` call, with its `unsafe`, is nix's macro code, typed by
    // the `i32` below (tcp(7): an int).
    sockopt_impl!(
        /// Linux's `TCP_DEFER_ACCEPT` (tcp(7)), in seconds.
        DeferAccept,
        Both,
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        i32
    );
}
