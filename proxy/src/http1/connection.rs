//! The driver of one downstream connection on weir's own HTTP/1 path: one
//! task reads requests into a reused buffer, decides each one's route and
//! role on borrowed bytes, drives the upstream socket itself (taken from and
//! returned to the endpoint's pool of raw connections), and answers
//! strictly in order.
//!
//! Handed to hyper's server, with every byte already read, when the
//! connection or a request needs what this path does not do: an HTTP/2
//! preface, an `Upgrade` or `CONNECT`, a request target that is not in
//! origin form, a gRPC call, a route with a Gateway API rule or
//! `stableFallback`, or a route with an HTTP/2 or TLS upstream. Requests
//! before it have been answered by then.
//!
//! Bodies are re-framed: a `Content-Length` body is copied as is, a chunked
//! one is validated by [`ChunkedDecoder`] and sent as plain chunks without
//! extensions or trailers.

use std::cell::Cell;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustix::net::SendFlags;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::chunked::{ChunkedDecoder, Decoded, LAST_CHUNK, encode_chunk};
use super::client_socket::{self, ClientSocket, read_more};
use super::date::push_date_field;
use super::field_is;
use super::request_head::{self, Framing, MAX_HEAD, Parsed, Refusal};
use super::response_head;
use super::socket_calls;
use super::spare_buffers::{self, BufferSet};
use crate::Shared;
use crate::body::ProxyBody;
use crate::error::{ProxyError, is_reset};
use crate::forward::{self, About, Downstream, Pending, RequestContext};
use crate::routing::{Routing, ServedBackend, ServedRoute};
use crate::signal::Signal;
use crate::upstream::{self, Endpoint};
use weir_config::model::DEFAULT_IDLE_TIMEOUT;

/// The longest a connection may sit idle between requests (the listener's
/// header timeout, when shorter, ends the wait first).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// Most bytes of pipelined requests read ahead while an answer is awaited.
const PIPELINE_LIMIT: usize = 2 * MAX_HEAD;

/// How a connection left weir's own path.
#[derive(Debug)]
pub enum Ended {
    /// Closed, or to be closed: nothing more to do.
    Closed,
    /// For hyper's server: the socket and the bytes already read from it,
    /// starting with a request not yet answered.
    HandOff {
        /// The downstream socket.
        stream: TcpStream,
        /// Bytes read and not yet served.
        read: Vec<u8>,
    },
}

/// What a connection's driver needs from its listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A started request head must be whole within this.
    pub header_read_timeout: Duration,
    /// Raised when the listener drains: idle connections close, busy ones
    /// after their current answer.
    pub draining: Arc<Signal>,
}

/// What to do after one request.
enum Next {
    Continue,
    Close,
    HandOff,
    /// The client left before its answer: close, and count the request as
    /// abandoned.
    ClientGone,
}

/// The listener's drain as one connection waits for it: a future made
/// once per connection, so that its waiter is registered with the drain
/// signal once rather than at every idle wait. It ends when the listener
/// drains (or goes away); the connection then closes and never polls it
/// again.
type DrainWait<'d> = Pin<&'d mut (dyn Future<Output = ()> + Send)>;

/// One connection's state between its requests.
struct Conn<'s, 'd> {
    shared: &'s Shared,
    downstream: &'s Downstream,
    client: ClientSocket,
    /// Taken from this thread's spares while the connection is busy.
    buffers: BufferSet,
    limits: Limits,
    drain: DrainWait<'d>,
    /// The connection's one timer (see [`Timer`]).
    timer: Timer,
    /// How the connection is to be closed when the answer being written
    /// is its last.
    closing: Closing,
    /// When the last request's answer was counted: the start of the
    /// keep-alive wait after it, without another read of the clock.
    answered_at: Option<Instant>,
    /// How long the request being served waited on its client: for the
    /// parts of its body, and for room to write its answer. Left out of
    /// its latency, so a client that sends or reads slowly does not make
    /// its role look slow.
    client_waited: Duration,
}

/// How a connection's last answer is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// The close itself ends the stream after the answer: a FIN, as
    /// `shutdown` would send, one call fewer.
    Close,
    /// `shutdown` first: the answer runs to the close, or the client sent
    /// bytes beyond its last request, and the end of the stream must reach
    /// the client ahead of the reset that a close with unread bytes sends.
    Shutdown,
    /// The answer was written while the client may still be sending its
    /// request (an unread body, a refused head): see [`client_socket::linger`].
    Linger,
}

/// The one timer of a connection, for every deadline it has in turn (the
/// head, the keep-alive wait, the request, the body's idle limit). It is
/// re-armed lazily: only for a nearer deadline than the one it is set to,
/// or when it fires before the deadline being waited for; a later deadline
/// is left alone. So a busy keep-alive connection touches the timer wheel
/// about once per period rather than once or twice per request.
///
/// The clock is read, not cached per runtime turn: twice per keep-alive
/// request, when its head is parsed and when its answer is counted (that
/// reading also dates the pooled upstream connection and starts the
/// keep-alive wait). Five reads were 1.4 % of the proxy's CPU per
/// request, two are 0.7 % (`perf record`, the peer harness's `ka`; the
/// vDSO clock costs some 20 ns a read in this VM); HAProxy's is 0.05 %.
/// Ten interleaved 8 s runs: 8.55 against 8.63 µs per request (means;
/// the fewer reads won 6 of 10). At saturation a turn serves some thirty
/// requests (0.035 `epoll_wait` per request), so a per-turn clock would
/// skew `weir_http_request_duration_seconds` by up to the length of a turn,
/// more than the 0.2 ms a fast answer takes, to save under 2 % of the user
/// time.
///
/// The sleep is polled only when its wake-up may have changed: after it
/// was reset, when it has fired, or for another task's waker. A sleep
/// polled once keeps the waker it was given until it fires or is reset,
/// so polling it again with the same waker on every turn of the
/// connection (twice per keep-alive request) did nothing but cost some
/// 200 instructions a request (`valgrind --tool=callgrind`).
struct Timer {
    sleep: Pin<Box<Sleep>>,
    /// The waker the sleep holds, when it was polled since it was last
    /// reset and has not fired.
    polled_with: Option<std::task::Waker>,
}

/// A deadline passed.
#[derive(Debug)]
struct TimedOut;

// === impl Timer ===

impl Timer {
    fn new() -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep(KEEP_ALIVE_TIMEOUT)),
            polled_with: None,
        }
    }

    /// Runs `work` until it ends or `deadline` passes.
    async fn run<F: Future>(
        &mut self,
        deadline: tokio::time::Instant,
        work: F,
    ) -> Result<F::Output, TimedOut> {
        if self.sleep.deadline() > deadline {
            self.reset(deadline);
        }
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            loop {
                let holds_this_waker = self
                    .polled_with
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()));
                if holds_this_waker && !self.sleep.is_elapsed() {
                    return Poll::Pending;
                }
                if self.sleep.as_mut().poll(cx).is_pending() {
                    self.polled_with = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Poll::Ready(Err(TimedOut));
                }
                // Fired for an earlier deadline: on to this one.
                self.reset(deadline);
            }
        })
        .await
    }

    /// Sets the sleep to `deadline`; it is polled again before it is
    /// relied on to wake anyone.
    fn reset(&mut self, deadline: tokio::time::Instant) {
        self.sleep.as_mut().reset(deadline);
        self.polled_with = None;
    }
}

/// The decisions made on one request head; owns nothing of the buffer.
struct Plan {
    routing: Arc<Routing>,
    route: usize,
    role: crate::Role,
    head_len: usize,
    method_len: usize,
    target_len: usize,
    framing: Framing,
    keep_alive: bool,
    /// The client said it sends nothing more (see
    /// [`request_head::RequestHead::client_closes`]).
    client_closes: bool,
    expect_continue: bool,
    head_request: bool,
    /// The method is idempotent (RFC 9110 section 9.2.2): the request may
    /// be sent again after a connection closed on it unanswered.
    idempotent: bool,
    minor: u8,
    issued_key: Option<[u8; 32]>,
    started: Instant,
}

/// How much of a request or response body is left to copy.
enum BodyLeft {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// Serves the requests of `client` until it closes, or until one needs
/// hyper.
pub async fn serve(
    shared: &Shared,
    downstream: &Downstream,
    client: ClientSocket,
    limits: Limits,
) -> Ended {
    let draining = Arc::clone(&limits.draining);
    let drain = std::pin::pin!(async move { draining.raised().await });
    let mut conn = Conn {
        shared,
        downstream,
        client,
        buffers: BufferSet::default(),
        limits,
        drain,
        timer: Timer::new(),
        closing: Closing::Close,
        answered_at: None,
        client_waited: Duration::ZERO,
    };
    loop {
        match conn.one_request().await {
            Next::Continue => {}
            next @ (Next::Close | Next::ClientGone) => {
                if matches!(next, Next::Close) {
                    let pipelined = !conn.buffers.from_client.is_empty();
                    match conn.closing {
                        // Boxed: rare, and inline it would add to every
                        // connection's future.
                        Closing::Linger => {
                            if let Ok(stream) = conn.client.registered() {
                                Box::pin(client_socket::linger(stream)).await;
                            }
                        }
                        Closing::Close if !pipelined => {}
                        Closing::Shutdown | Closing::Close => {
                            let _ = conn.client.shutdown();
                        }
                    }
                }
                // Unserved pipelined bytes go with the connection.
                conn.buffers.from_client.clear();
                conn.give_back_buffers();
                return Ended::Closed;
            }
            Next::HandOff => {
                let read = std::mem::take(&mut conn.buffers.from_client);
                return match conn.client.into_registered() {
                    Ok(stream) => Ended::HandOff { stream, read },
                    Err(error) => {
                        tracing::warn!(%error, "connection closed: it could not be handed to hyper");
                        Ended::Closed
                    }
                };
            }
        }
    }
}

// === impl Conn ===

impl Conn<'_, '_> {
    /// Reads, forwards and answers one request.
    async fn one_request(&mut self) -> Next {
        let plan = match self.read_head().await {
            Ok(Some(plan)) => plan,
            Ok(None) => return Next::Close,
            Err(next) => return next,
        };
        let routing = Arc::clone(&plan.routing);
        let route = &routing.routes[plan.route];
        let backend = route.backend(plan.role);
        let mut pending = Pending {
            metrics: &backend.metrics,
            started: plan.started,
            // What the client took is in `client_waited`.
            pace: None,
            // gRPC calls go to hyper.
            grpc: false,
            answered: false,
        };
        self.client_waited = Duration::ZERO;
        let next = self.exchange(&plan, route, backend).await;
        pending.answered = !matches!(next, Next::ClientGone);
        pending.started = self.latency_from(&plan);
        next
    }

    /// When the request's latency counts from: its start, moved later by
    /// what its client made it wait (see `client_waited`).
    fn latency_from(&self, plan: &Plan) -> Instant {
        plan.started + self.client_waited
    }

    /// Waits for a whole head and plans its request. `Ok(None)`: the
    /// client closed or idled out between requests.
    async fn read_head(&mut self) -> Result<Option<Plan>, Next> {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if !self.buffers.from_client.is_empty() {
                if is_http2_preface_start(&self.buffers.from_client) {
                    if self.buffers.from_client.len() >= 4 {
                        return Err(Next::HandOff);
                    }
                } else {
                    let started = Instant::now();
                    // A later keep-alive wait counts from this request's
                    // answer, whoever makes it (a local 404 sets none).
                    self.answered_at = None;
                    // The header array ends with this block, before any
                    // await: it is not kept in the connection's future.
                    let planned = {
                        let mut headers = request_head::header_slots();
                        match request_head::parse(&self.buffers.from_client, &mut headers) {
                            Ok(Parsed::Complete(head)) => plan(
                                self.shared,
                                self.downstream,
                                &mut self.buffers.to_upstream,
                                &mut self.buffers.line,
                                &head,
                                started,
                            ),
                            Ok(Parsed::Partial) => Planned::Partial,
                            Err(refusal) => Planned::Refused(refusal),
                        }
                    };
                    match planned {
                        Planned::Partial => {}
                        Planned::Refused(refusal) => {
                            self.refuse(refusal).await;
                            return Err(Next::Close);
                        }
                        Planned::Forward(plan) => return Ok(Some(plan)),
                        Planned::HandOff => return Err(Next::HandOff),
                        Planned::NoRoute {
                            text,
                            head_len,
                            keep_alive,
                            minor,
                            head_request,
                            with_body,
                        } => {
                            self.buffers.from_client.drain(..head_len);
                            let written = self
                                .answer_locally(404, &text, !keep_alive, minor, head_request)
                                .await;
                            if written.is_err() || !keep_alive {
                                // Its body is not forwarded.
                                if written.is_ok() && with_body {
                                    self.closing = Closing::Linger;
                                }
                                return Err(Next::Close);
                            }
                            return Err(Next::Continue);
                        }
                    }
                }
                deadline.get_or_insert_with(|| {
                    tokio::time::Instant::now() + self.limits.header_read_timeout
                });
            }
            let read = match deadline {
                Some(deadline) => {
                    match self
                        .timer
                        .run(
                            deadline,
                            self.client.read_more(&mut self.buffers.from_client),
                        )
                        .await
                    {
                        Ok(read) => read,
                        Err(_) => {
                            tracing::debug!("request head not whole within the header timeout");
                            return Ok(None);
                        }
                    }
                }
                None => {
                    // A socket not yet registered (see `client_socket`)
                    // usually has its next request there already (a new
                    // connection's first, a pipelined one): it is read
                    // without registering. Otherwise wait for one.
                    let mut read_now = None;
                    if !self.client.is_registered() && !self.limits.draining.is_raised() {
                        // Reads and writes of an unregistered socket spend
                        // none of the task's coop budget, where tokio's do;
                        // this spends it, so that a client pipelining
                        // requests answered locally still lets the
                        // thread's other tasks run.
                        tokio::task::coop::consume_budget().await;
                        if self.buffers.from_client.capacity() == 0 {
                            self.buffers = spare_buffers::take();
                        }
                        match self.client.try_read(&mut self.buffers.from_client) {
                            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                            read => read_now = Some(read),
                        }
                    }
                    match read_now {
                        Some(read) => read,
                        None => match self.wait_idle().await {
                            Some(end) => match self
                                .timer
                                .run(end, self.client.read_more(&mut self.buffers.from_client))
                                .await
                            {
                                Ok(read) => read,
                                Err(_) => return Ok(None),
                            },
                            None => return Ok(None),
                        },
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Waits between requests until the client sends more; `None` when
    /// it closes, idles out or the listener drains. Otherwise the end of
    /// the keep-alive wait. The buffers wait in this thread's spares
    /// meanwhile: an idle connection costs little more than its socket.
    async fn wait_idle(&mut self) -> Option<tokio::time::Instant> {
        if self.limits.draining.is_raised() {
            return None;
        }
        // As on hyper's server, whose header timer runs from the end of the
        // last answer: an idle connection is closed after the listener's
        // header timeout when that is the shorter.
        let since = self
            .answered_at
            .take()
            .map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std);
        let end = since + KEEP_ALIVE_TIMEOUT.min(self.limits.header_read_timeout);
        self.give_back_buffers();
        let Ok(readable) = self.client.readable() else {
            return None;
        };
        let readable = tokio::select! {
            biased;
            ready = self.timer.run(end, readable) => matches!(ready, Ok(Ok(()))),
            () = self.drain.as_mut() => false,
        };
        if !readable {
            return None;
        }
        self.buffers = spare_buffers::take();
        Some(end)
    }

    /// Gives the connection's buffers to this thread's spares; they must
    /// hold nothing unserved.
    fn give_back_buffers(&mut self) {
        debug_assert!(self.buffers.from_client.is_empty());
        spare_buffers::give_back(std::mem::take(&mut self.buffers));
    }

    /// Answers a refused head and counts it.
    async fn refuse(&mut self, refusal: Refusal) {
        if let Some(reason) = refusal.reason {
            self.shared.metrics.record_rejected(reason);
        }
        let text = if refusal.reason.is_some() {
            format!("{} {}\n", refusal.status, refusal.what)
        } else {
            format!("{} bad request: {}\n", refusal.status, refusal.what)
        };
        // A refused head still says HEAD when its request line does: the
        // client reads the answer as a HEAD answer, with no body.
        let head_request = self.buffers.from_client.starts_with(b"HEAD ");
        let written = self
            .answer_locally(refusal.status, &text, true, 1, head_request)
            .await;
        if written.is_ok() {
            self.closing = Closing::Linger;
        }
    }

    /// Writes a short answer of weir's own (see [`write_local`]) to the
    /// client, under the default idle limit; the answer to a HEAD request
    /// has the head alone.
    async fn answer_locally(
        &mut self,
        status: u16,
        text: &str,
        close: bool,
        minor: u8,
        head_request: bool,
    ) -> std::io::Result<()> {
        self.buffers.to_client.clear();
        write_local(&mut self.buffers.to_client, status, text, close, minor);
        if head_request {
            drop_local_body(&mut self.buffers.to_client, text.len());
        }
        write_client(
            &mut self.timer,
            &mut self.client,
            &self.buffers.to_client,
            DEFAULT_IDLE_TIMEOUT,
            false,
            &mut self.client_waited,
        )
        .await
        .map(drop)
    }

    /// Forwards the planned request and streams the answer back.
    async fn exchange(
        &mut self,
        plan: &Plan,
        route: &ServedRoute,
        backend: &ServedBackend,
    ) -> Next {
        self.buffers.from_client.drain(..plan.head_len);
        let mut body = match plan.framing {
            Framing::None | Framing::Length(0) => BodyLeft::Done,
            Framing::Length(n) => BodyLeft::Length(n),
            Framing::Chunked => BodyLeft::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyLeft::Done,
        };
        // What of the body came with the head is checked before anything
        // goes upstream: a refused body reaches no upstream at all.
        if let Err(error) = pump(
            &mut body,
            &mut self.buffers.from_client,
            &mut self.buffers.to_upstream,
            true,
        ) {
            return self.fail(plan, route, backend, error, false).await;
        }
        let whole_request = matches!(body, BodyLeft::Done);
        if plan.expect_continue
            && !whole_request
            && self.buffers.from_client.is_empty()
            && write_client(
                &mut self.timer,
                &mut self.client,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                route.timeouts.idle,
                false,
                &mut self.client_waited,
            )
            .await
            .is_err()
        {
            // The client left before its body: counted as abandoned, as
            // on the hyper path, whose connection ends with that write.
            return Next::ClientGone;
        }
        let timeouts = route.timeouts;
        let deadline = tokio::time::Instant::from_std(plan.started) + timeouts.request;
        let Some(first) = upstream::pick(&backend.endpoints) else {
            let error = ProxyError::NoEndpoints {
                route: Arc::clone(&route.name),
                backend: Arc::clone(&backend.label),
            };
            return self.fail(plan, route, backend, error, whole_request).await;
        };

        // Send the request; a pooled connection the upstream closed while it
        // sat idle gets a whole request once more on a fresh connection.
        let mut retried = false;
        let (endpoint, upstream, _in_flight, answer, cut, answer_deadline) = loop {
            // After a stale pooled connection, a fresh one.
            let idle = if retried {
                None
            } else {
                first.take_raw_idle(plan.started)
            };
            let (endpoint, mut upstream, pooled) = match idle {
                Some(stream) => (Arc::clone(first), stream, true),
                // Boxed, as `fail`: only a new upstream connection pays for
                // the connect's state, not every connection's task.
                None => match Box::pin(tokio::time::timeout_at(
                    deadline,
                    forward::connect_with(first, &backend.endpoints, |endpoint| {
                        endpoint.connect_tcp(timeouts.connect)
                    }),
                ))
                .await
                {
                    Ok(Ok((endpoint, stream))) => (endpoint, stream, false),
                    Ok(Err(error)) => {
                        return self.fail(plan, route, backend, error, whole_request).await;
                    }
                    Err(_) => {
                        let error = ProxyError::UpstreamTimeout(timeouts.request);
                        return self.fail(plan, route, backend, error, whole_request).await;
                    }
                },
            };
            let in_flight = endpoint.start();
            let sent = self
                .send_request(&mut upstream, &mut body, deadline, plan)
                .await;
            let cut = match sent {
                Ok(sent) => sent == Sent::Cut,
                Err(SendError::Upstream(error)) => {
                    if pooled && whole_request && !retried {
                        retried = true;
                        continue;
                    }
                    return self.fail(plan, route, backend, error, false).await;
                }
                Err(SendError::Client(error)) => {
                    return self.fail(plan, route, backend, error, false).await;
                }
                Err(SendError::ClientGone) => return Next::ClientGone,
            };
            // The upstream has all of the request: its answer is bounded
            // by the deadline moved later by what the request waited on
            // its client, so a client that sends its body slowly (just
            // before the deadline, say) does not use up the upstream's
            // time and make a healthy role time out. The upload itself
            // stayed bounded by `deadline` (408). An answer that came
            // before the upload ended keeps the deadline.
            let answer_deadline = if cut {
                deadline
            } else {
                deadline + self.client_waited
            };
            // The answer's head; a pooled connection that closes before a
            // byte of it may not have seen the request.
            match self
                .read_response_head(&mut upstream, plan, answer_deadline, cut)
                .await
            {
                Ok(answer) => break (endpoint, upstream, in_flight, answer, cut, answer_deadline),
                // Only an idempotent request: the upstream may have acted on
                // it before closing (RFC 9112 section 9.3.1).
                Err(HeadError::ClosedSilently)
                    if pooled && whole_request && !retried && plan.idempotent =>
                {
                    retried = true;
                    continue;
                }
                Err(HeadError::ClosedSilently) => {
                    let error = ProxyError::UpstreamIo(std::io::ErrorKind::UnexpectedEof.into());
                    return self.fail(plan, route, backend, error, whole_request).await;
                }
                Err(HeadError::Failed(error)) => {
                    return self.fail(plan, route, backend, error, whole_request).await;
                }
                Err(HeadError::ClientGone) => return Next::ClientGone,
            }
        };
        if answer.status >= 500 {
            endpoint.record_failure(&backend.endpoints);
        } else {
            endpoint.record_success();
        }
        self.stream_response(
            plan,
            backend,
            &endpoint,
            upstream,
            answer,
            cut.then_some(&mut body),
            answer_deadline,
            timeouts.idle,
        )
        .await
    }

    /// Writes the upstream head and the request body.
    async fn send_request(
        &mut self,
        upstream: &mut TcpStream,
        body: &mut BodyLeft,
        deadline: tokio::time::Instant,
        plan: &Plan,
    ) -> Result<Sent, SendError> {
        let write = self
            .timer
            .run(
                deadline,
                socket_calls::send_all(upstream, &self.buffers.to_upstream),
            )
            .await;
        match write {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(SendError::Upstream(ProxyError::UpstreamIo(error))),
            Err(_) => {
                return Err(SendError::Client(ProxyError::UpstreamTimeout(
                    deadline_length(plan, deadline),
                )));
            }
        }
        // The rest of the body, as the client sends it, unless the upstream
        // answers (or closes) first: an early answer, a 413 say, is passed
        // on as on the hyper path. Interim 1xx answers are skipped: the
        // upload goes on, as on the hyper path.
        self.buffers.from_upstream.clear();
        if matches!(body, BodyLeft::Done) {
            // Most requests: no clock read for a body that is not there.
            return Ok(Sent::Whole);
        }
        let idle = plan.routing.routes[plan.route].timeouts.idle;
        // The client's silence is bounded by the route's idle timeout as
        // well as by the deadline: a client that trickles its body holds
        // the connection no longer than that per gap. It runs from when
        // weir last had all the client sent upstream (an interim answer
        // in between does not restart it).
        let mut waiting_since = tokio::time::Instant::now();
        while !matches!(body, BodyLeft::Done) {
            self.buffers.to_upstream.clear();
            let wait = (waiting_since + idle).min(deadline);
            let read = tokio::select! {
                read = self.timer.run(wait, self.client.read_more(&mut self.buffers.from_client)) => read,
                early = read_more(upstream, &mut self.buffers.from_upstream) => {
                    if matches!(early, Ok(n) if n > 0) && skip_interim(&mut self.buffers.from_upstream) {
                        continue;
                    }
                    tracing::debug!("upstream answered before the request body ended");
                    self.closing = Closing::Linger;
                    return Ok(Sent::Cut);
                }
            };
            match read {
                // A reset: no answer can reach the client.
                Ok(Err(error)) if is_reset(&error) => return Err(SendError::ClientGone),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Err(SendError::Client(ProxyError::ClientFraming {
                        what: "the connection closed inside the body",
                        incomplete: true,
                    }));
                }
                // The upstream had all that came: the wait was the client's.
                Ok(Ok(_)) => self.client_waited += waiting_since.elapsed(),
                Err(_) => {
                    // The upstream has all that came: the client stalled.
                    return Err(SendError::Client(if wait < deadline {
                        ProxyError::ClientBodyIdle(idle)
                    } else {
                        ProxyError::ClientBodyTimeout(deadline_length(plan, deadline))
                    }));
                }
            }
            pump(
                body,
                &mut self.buffers.from_client,
                &mut self.buffers.to_upstream,
                true,
            )
            .map_err(SendError::Client)?;
            let write = self
                .timer
                .run(
                    deadline,
                    write_body(
                        upstream,
                        &mut self.buffers.to_upstream,
                        &mut self.buffers.from_upstream,
                    ),
                )
                .await;
            match write {
                Ok(Ok(BodyWrite::Written)) => waiting_since = tokio::time::Instant::now(),
                // The upstream answered, closed or stopped reading: its
                // answer, if it sent one, is read next.
                Ok(Ok(BodyWrite::Answered) | Err(_)) => {
                    if !matches!(body, BodyLeft::Done) {
                        self.closing = Closing::Linger;
                    }
                    return Ok(Sent::Cut);
                }
                Err(_) => {
                    return Err(SendError::Client(ProxyError::UpstreamTimeout(
                        deadline_length(plan, deadline),
                    )));
                }
            }
        }
        Ok(Sent::Whole)
    }

    /// Reads the upstream's final answer head (interim 1xx answers are
    /// skipped) and writes the downstream head into `to_client`; the head's
    /// bytes are removed from `from_upstream`.
    async fn read_response_head(
        &mut self,
        upstream: &mut TcpStream,
        plan: &Plan,
        deadline: tokio::time::Instant,
        cut: bool,
    ) -> Result<Answer, HeadError> {
        // Bytes of an early answer may be here already (see `send_request`).
        let mut received_any = !self.buffers.from_upstream.is_empty();
        loop {
            if !self.buffers.from_upstream.is_empty() {
                let mut headers = request_head::header_slots();
                match response_head::parse(
                    &self.buffers.from_upstream,
                    &mut headers,
                    plan.head_request,
                ) {
                    Ok(Some(head)) if head.status == 101 => {
                        return Err(HeadError::Failed(ProxyError::UnexpectedUpgrade));
                    }
                    Ok(Some(head)) if head.status < 200 => {
                        let len = head.len;
                        self.buffers.from_upstream.drain(..len);
                        continue;
                    }
                    Ok(Some(head)) => {
                        let draining = self.limits.draining.is_raised();
                        let answer = write_client_head(
                            &mut self.buffers.to_client,
                            self.downstream.tls,
                            draining || cut,
                            &head,
                            plan,
                        );
                        let answer = Answer {
                            reusable: answer.reusable && !cut,
                            ..answer
                        };
                        let len = head.len;
                        self.buffers.from_upstream.drain(..len);
                        return Ok(answer);
                    }
                    Ok(None) => {}
                    Err(broken) => {
                        return Err(HeadError::Failed(ProxyError::BrokenAnswer(broken.0)));
                    }
                }
            }
            // The client is watched meanwhile: one that closes gives up the
            // request (counted 499, as on the hyper path); pipelined bytes
            // are kept for later, up to a bound. A client socket not yet
            // registered is watched from `WATCH_AFTER` into the request.
            let watch_from = tokio::time::Instant::from_std(plan.started);
            let read = tokio::select! {
                // The answer first: a client's bytes wait their turn.
                biased;
                read = self.timer.run(deadline, read_more(upstream, &mut self.buffers.from_upstream)) => read,
                client = self.client.watch(&mut self.buffers.from_client, watch_from), if self.buffers.from_client.len() < PIPELINE_LIMIT => {
                    match client {
                        Ok(0) | Err(_) => return Err(HeadError::ClientGone),
                        Ok(_) => continue,
                    }
                }
            };
            match read {
                Ok(Ok(0)) if !received_any => return Err(HeadError::ClosedSilently),
                Ok(Ok(0)) => {
                    return Err(HeadError::Failed(ProxyError::BrokenAnswer(
                        "connection closed inside the answer head",
                    )));
                }
                Ok(Ok(_)) => received_any = true,
                Ok(Err(error)) if !received_any && is_reset(&error) => {
                    return Err(HeadError::ClosedSilently);
                }
                Ok(Err(error)) => return Err(HeadError::Failed(ProxyError::UpstreamIo(error))),
                Err(_) => {
                    return Err(HeadError::Failed(ProxyError::UpstreamTimeout(
                        deadline_length(plan, deadline),
                    )));
                }
            }
        }
    }

    /// Streams the answer's body to the client, counts the request, and
    /// pools the upstream connection when it ended cleanly. After an early
    /// answer ([`Sent::Cut`]), what is left of the request body (`upload`,
    /// and what of it `to_upstream` still holds) goes on to the upstream
    /// meanwhile.
    #[allow(clippy::too_many_arguments, reason = "the pieces of one exchange")]
    async fn stream_response(
        &mut self,
        plan: &Plan,
        backend: &ServedBackend,
        endpoint: &Arc<Endpoint>,
        upstream: TcpStream,
        answer: Answer,
        mut upload: Option<&mut BodyLeft>,
        deadline: tokio::time::Instant,
        idle: Duration,
    ) -> Next {
        let code = answer.status;
        let until_close = answer.framing == Framing::UntilClose
            || (answer.framing == Framing::Chunked && !answer.downstream_chunked);
        if until_close && self.closing == Closing::Close {
            // The client knows where this answer ends by the end of the stream.
            self.closing = Closing::Shutdown;
        }
        let mut body = match answer.framing {
            Framing::None | Framing::Length(0) => BodyLeft::Done,
            Framing::Length(n) => BodyLeft::Length(n),
            Framing::Chunked => BodyLeft::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyLeft::UntilClose,
        };
        let head_len = self.buffers.to_client.len();
        // What came with the head is checked before the head goes out: a
        // broken first chunk is a 502, not a cut answer.
        if let Err(error) = pump(
            &mut body,
            &mut self.buffers.from_upstream,
            &mut self.buffers.to_client,
            answer.downstream_chunked,
        ) {
            let ProxyError::ClientFraming { what, .. } = error else {
                return Next::Close;
            };
            self.buffers.to_client.truncate(head_len);
            let error = ProxyError::BrokenAnswer(what);
            return self
                .fail(
                    plan,
                    &plan.routing.routes[plan.route],
                    backend,
                    error,
                    false,
                )
                .await;
        }
        let mut failure = None;
        let mut upstream = Some(upstream);
        // The request body still going upstream beside the answer.
        let mut uploading = upload
            .as_deref()
            .is_some_and(|upload| upload_left(upload, &self.buffers.to_upstream));
        // An upstream that accepted the request (2xx) may still be reading
        // its body when its answer ends: the upload is finished after it.
        let accepted = (200..300).contains(&code);
        // The client stopped sending inside its body (closed, or stalled
        // until a timeout): an answer that then stalls waits for that body,
        // and is no fault of the upstream's.
        let mut client_stopped = false;
        // The answer's own framing broke: the upstream's fault whatever the
        // client did.
        let mut answer_broken = false;
        // Counted before the client has the end of the answer, so a client
        // that reads the counters once it has it finds the request there
        // (as on the hyper path); the final write's few microseconds are
        // left out of the duration.
        let mut counted = false;
        let metrics = &backend.metrics;
        loop {
            if matches!(body, BodyLeft::Done) {
                // One read of the clock for the count, the pool and the
                // keep-alive wait that follows.
                let now = Instant::now();
                if !counted {
                    metrics.record(code, now.saturating_duration_since(self.latency_from(plan)));
                    counted = true;
                    self.answered_at = Some(now);
                }
                if !(uploading && accepted) {
                    // Back in the pool before the client sees the end, so
                    // its next request finds it there.
                    if let Some(upstream) = upstream.take() {
                        if answer.reusable && self.buffers.from_upstream.is_empty() {
                            endpoint.put_raw_idle(upstream, now);
                        }
                    }
                }
            }
            // The last bytes of an answer to a client that said it sends
            // nothing more (`Connection: close`, HTTP/1.0) go out with the
            // close's FIN, in one segment: two segments fewer per
            // connection (weir's lone FIN, and the client's ACK of the
            // answer before it). On loopback that took weir's CPU per
            // `Connection: close` request from 41.7 to 40.1 µs (medians
            // of 4 interleaved 5 s `wrk -t1 -c16` runs), and HAProxy's
            // was 43.6. A client that sends more anyway gets a reset in
            // place of the answer (a close with unread bytes resets, and
            // drops what it holds); when weir itself ends the connection
            // (a drain), the answer goes out at once, as ever.
            let hold_for_close = matches!(body, BodyLeft::Done)
                && plan.client_closes
                && !uploading
                && self.closing == Closing::Close
                && self.buffers.from_client.is_empty();
            match write_client(
                &mut self.timer,
                &mut self.client,
                &self.buffers.to_client,
                idle,
                hold_for_close,
                &mut self.client_waited,
            )
            .await
            {
                Err(_) => {
                    // The client left, or stopped reading: counted with the
                    // code it was sent.
                    if !counted {
                        metrics.record(code, self.latency_from(plan).elapsed());
                    }
                    self.closing = Closing::Close;
                    return Next::Close;
                }
                // The keep-alive wait runs from when the client had the
                // whole answer: after a wait for it, not from the count.
                Ok(Waited::Yes) => self.answered_at = None,
                Ok(Waited::No) => {}
            }
            self.buffers.to_client.clear();
            if matches!(body, BodyLeft::Done) {
                break;
            }
            let Some(stream) = upstream.as_mut() else {
                break;
            };
            let read = loop {
                let now = tokio::time::Instant::now();
                // An answer whose reads and writes are always ready never
                // lets the timer fire: its deadline is checked here too.
                if now >= deadline {
                    break Err(TimedOut);
                }
                let wait = (now + idle).min(deadline);
                let Some(upload) = upload.as_deref_mut().filter(|_| uploading) else {
                    break self
                        .timer
                        .run(wait, read_more(stream, &mut self.buffers.from_upstream))
                        .await;
                };
                // Boxed: only an upload still going when its answer came
                // pays for this state, not every connection's task.
                let moved = Box::pin(self.upload_step(stream, upload, wait)).await;
                match moved {
                    Ok(Ok(Moved::Answer(read))) => break Ok(Ok(read)),
                    Ok(Ok(Moved::Upload)) => {
                        uploading = upload_left(upload, &self.buffers.to_upstream);
                    }
                    Ok(Ok(Moved::UpstreamTookNoMore)) => {
                        tracing::debug!("upstream stopped taking the body before its answer ended");
                        self.buffers.to_upstream.clear();
                        uploading = false;
                    }
                    Ok(Ok(Moved::ClientClosed)) => {
                        // The answer still goes to the client (one that saw
                        // it begin may stop sending and half-close); the
                        // body's end is not sent, and both connections close.
                        tracing::debug!("client stopped inside its body while its answer streamed");
                        uploading = false;
                        client_stopped = true;
                    }
                    Ok(Ok(Moved::ClientBroken(what))) => {
                        // As on the hyper path, a broken body breaks the
                        // exchange: counted with the code the client was
                        // sent, as when it leaves.
                        tracing::debug!(what, "client body broken while its answer streamed");
                        if !counted {
                            metrics.record(code, self.latency_from(plan).elapsed());
                        }
                        // Part of the request is unread: `closing` stays
                        // `Linger`.
                        return Next::Close;
                    }
                    Ok(Err(error)) => break Ok(Err(error)),
                    Err(timed_out) => {
                        // All that came of the body went upstream, and more
                        // is due: the answer waits on the client, which
                        // stalled.
                        if self.buffers.to_upstream.is_empty() {
                            tracing::debug!(
                                "client stalled inside its body while its answer streamed"
                            );
                            client_stopped = true;
                        }
                        break Err(timed_out);
                    }
                }
            };
            match read {
                Ok(Ok(0)) if matches!(body, BodyLeft::UntilClose) => break,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    failure = Some(crate::metrics::UpstreamErrorKind::Protocol);
                    break;
                }
                Ok(Ok(_)) => {}
                Err(_) => {
                    failure = Some(crate::metrics::UpstreamErrorKind::Timeout);
                    break;
                }
            }
            if pump(
                &mut body,
                &mut self.buffers.from_upstream,
                &mut self.buffers.to_client,
                answer.downstream_chunked,
            )
            .is_err()
            {
                answer_broken = true;
                failure = Some(crate::metrics::UpstreamErrorKind::Protocol);
                break;
            }
        }
        if !counted {
            metrics.record(code, self.latency_from(plan).elapsed());
        }
        if let Some(kind) = failure {
            tracing::debug!(endpoint = %endpoint.addr(), ?kind, client_stopped, "upstream body broken; closing the client connection");
            if answer_broken || !client_stopped {
                metrics.record_upstream_error(kind);
                metrics.record_failed_body(code);
            }
            // The client sees the cut: no last chunk, a short body, a close.
            return Next::Close;
        }
        if let (Some(upload), Some(stream)) = (upload.as_deref_mut(), upstream.as_ref())
            && uploading
        {
            // Boxed, as the upload beside the answer above.
            Box::pin(self.finish_upload(stream, upload, deadline, idle)).await;
        }
        if self.closing == Closing::Linger
            && upload
                .as_deref()
                .is_some_and(|upload| !upload_left(upload, &self.buffers.to_upstream))
        {
            // An early answer, but the whole body went after all: nothing
            // of the client's is left unread.
            self.closing = if until_close {
                Closing::Shutdown
            } else {
                Closing::Close
            };
        }
        if answer.close {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// One step of [`upload_beside_answer`] on this connection's buffers,
    /// by `wait` at the latest.
    async fn upload_step(
        &mut self,
        upstream: &TcpStream,
        upload: &mut BodyLeft,
        wait: tokio::time::Instant,
    ) -> Result<std::io::Result<Moved>, TimedOut> {
        self.timer
            .run(
                wait,
                upload_beside_answer(
                    upstream,
                    &mut self.buffers.from_upstream,
                    &mut self.client,
                    &mut self.buffers.from_client,
                    &mut self.buffers.to_upstream,
                    upload,
                ),
            )
            .await
    }

    /// Sends the rest of a request body after its answer ended: the
    /// upstream accepted the request (2xx) before reading all of it, and
    /// may still want it (an ingest endpoint that answers `202` at once).
    /// Each step waits at most `idle`, and all of it ends by `deadline`;
    /// anything the upstream sends meanwhile, a refusal to take more, or a
    /// broken client body ends it early.
    async fn finish_upload(
        &mut self,
        upstream: &TcpStream,
        upload: &mut BodyLeft,
        deadline: tokio::time::Instant,
        idle: Duration,
    ) {
        while upload_left(upload, &self.buffers.to_upstream) {
            let wait = (tokio::time::Instant::now() + idle).min(deadline);
            // Whatever the upstream sends now is no part of the answer.
            let moved = self.upload_step(upstream, upload, wait).await;
            if !matches!(moved, Ok(Ok(Moved::Upload))) {
                tracing::debug!("the rest of the body after the answer not sent whole");
                return;
            }
        }
    }

    /// Answers `error` as the hyper path does (same status, body, counters
    /// and log), then keeps the connection only when the request was read
    /// whole and the client wants more.
    ///
    /// Boxed: a failure is rare, and its state, kept inline, would add
    /// most of a kilobyte to every connection's task, idle ones included.
    fn fail<'a>(
        &'a mut self,
        plan: &'a Plan,
        route: &'a ServedRoute,
        backend: &'a ServedBackend,
        error: ProxyError,
        request_read: bool,
    ) -> Pin<Box<dyn Future<Output = Next> + Send + 'a>> {
        Box::pin(self.answer_failure(plan, route, backend, error, request_read))
    }

    /// See [`Conn::fail`].
    async fn answer_failure(
        &mut self,
        plan: &Plan,
        route: &ServedRoute,
        backend: &ServedBackend,
        error: ProxyError,
        request_read: bool,
    ) -> Next {
        let (method, rest) = self.buffers.line.split_at(plan.method_len);
        let (target, request_id) = rest.split_at(plan.target_len.min(rest.len()));
        let about = About {
            method: http::Method::from_bytes(method).unwrap_or(http::Method::GET),
            uri: http::Uri::try_from(target).unwrap_or_default(),
            request_id: http::HeaderValue::from_bytes(request_id).ok(),
        };
        let span = tracing::debug_span!(
            parent: &self.downstream.span,
            "request",
            method = %about.method,
            path = about.uri.path(),
            request_id = %forward::ShowId(about.request_id.as_ref()),
            route = &*route.name,
            role = &*backend.label,
        );
        let context = RequestContext {
            span: &span,
            about: &about,
            downstream: self.downstream,
            route,
            started: self.latency_from(plan),
            grpc: false,
        };
        let response = forward::answer(Err(error), backend, &context);
        let keep = request_read && plan.keep_alive && !self.limits.draining.is_raised();
        let status = response.status().as_u16();
        let text = match response.into_body() {
            ProxyBody::Local(Some(text)) => text,
            _ => bytes::Bytes::new(),
        };
        self.buffers.to_client.clear();
        // As on the hyper path, a key issued for this request is set even
        // on weir's own answer.
        let set_cookie = match (&plan.issued_key, &route.sticky) {
            (Some(key), Some(cookie)) => cookie.set_cookie(
                std::str::from_utf8(key).unwrap_or_default(),
                self.downstream.tls,
            ),
            _ => None,
        };
        write_local_bytes(
            &mut self.buffers.to_client,
            status,
            &text,
            !keep,
            plan.minor,
            set_cookie.as_ref().map(http::HeaderValue::as_bytes),
        );
        if plan.head_request {
            drop_local_body(&mut self.buffers.to_client, text.len());
        }
        let written = write_client(
            &mut self.timer,
            &mut self.client,
            &self.buffers.to_client,
            route.timeouts.idle,
            false,
            &mut self.client_waited,
        )
        .await;
        if written.is_err() || !keep {
            if written.is_ok() && !request_read {
                self.closing = Closing::Linger;
            }
            return Next::Close;
        }
        Next::Continue
    }
}

/// What [`plan`] decided.
enum Planned {
    /// The head has not ended.
    Partial,
    /// The head is refused.
    Refused(Refusal),
    /// Forward as planned; the upstream head is written.
    Forward(Plan),
    /// For hyper's server.
    HandOff,
    /// No route: this 404, then go on when the client may.
    NoRoute {
        text: String,
        head_len: usize,
        keep_alive: bool,
        minor: u8,
        head_request: bool,
        /// The request has a body, which is not read.
        with_body: bool,
    },
}

/// Decides where a parsed request goes, and writes its upstream head
/// into `to_upstream` and its method and target into `line`.
fn plan(
    shared: &Shared,
    downstream: &Downstream,
    to_upstream: &mut Vec<u8>,
    line: &mut Vec<u8>,
    head: &request_head::RequestHead<'_, '_>,
    started: Instant,
) -> Planned {
    // One snapshot for the whole request, even if a new one is applied meanwhile.
    let routing = shared.routing.load_full();
    if !head.target.starts_with('/')
        || head.wants_upgrade
        || head.host.is_none()
        || is_grpc(head.headers)
    {
        return Planned::HandOff;
    }
    // The host as its bytes came: `is_valid_host` let it through, so it is
    // visible ASCII, as the hyper path's `HeaderValue::to_str` takes it;
    // routing compares bytes, so no conversion to text on every request.
    let host = head.host.unwrap_or(b"");
    debug_assert!(is_visible(host));
    let path = match head.target.bytes().position(|b| b == b'?') {
        Some(query) => &head.target[..query],
        None => head.target,
    };
    let has_rule = Cell::new(false);
    // A preview host finds its blue-green route as on the hyper path.
    let found = routing.find(host, path, |index| {
        if routing.routes[index].rule.is_some() {
            has_rule.set(true);
        }
        true
    });
    let by_preview_host = found.is_some_and(|(_, by_preview_host)| by_preview_host);
    let found = found.map(|(index, _)| index);
    if has_rule.get() {
        return Planned::HandOff;
    }
    line.clear();
    line.extend_from_slice(head.method.as_bytes());
    line.extend_from_slice(head.target.as_bytes());
    let Some(index) = found else {
        // A body after a 404 is not forwarded: the connection closes
        // instead, lingering to drop it.
        let with_body = !matches!(head.framing, Framing::None | Framing::Length(0));
        let keep_alive = head.keep_alive && !with_body;
        return Planned::NoRoute {
            text: forward::no_route_text(std::str::from_utf8(host).unwrap_or(""), path),
            head_len: head.len,
            keep_alive,
            minor: head.minor,
            head_request: head.method == "HEAD",
            with_body,
        };
    };
    let route = &routing.routes[index];
    if needs_hyper(route) {
        return Planned::HandOff;
    }
    let mut issued_key = None;
    let role = if forward::is_preview_request_from(route, by_preview_host, |name| {
        header_value(head.headers, name.as_str())
    }) {
        // The preview pins no one: no sticky cookie is issued.
        crate::Role::Canary
    } else {
        forward::decide_role_from(
            route,
            |name| header_value(head.headers, name.as_str()),
            || cookie_values(head.headers),
            &mut issued_key,
        )
    };
    write_upstream_head(to_upstream, head, downstream, line);
    Planned::Forward(Plan {
        routing: Arc::clone(&routing),
        route: index,
        role,
        head_len: head.len,
        method_len: head.method.len(),
        target_len: head.target.len(),
        framing: head.framing,
        keep_alive: head.keep_alive,
        client_closes: head.client_closes,
        expect_continue: head.expect_continue,
        head_request: head.method == "HEAD",
        idempotent: forward::is_idempotent(head.method),
        minor: head.minor,
        issued_key,
        started,
    })
}

/// The downstream head of an answer, into `out`; `must_close`: the
/// client connection closes after it (a drain, or a request body cut short).
fn write_client_head(
    out: &mut Vec<u8>,
    tls: bool,
    must_close: bool,
    head: &response_head::ResponseHead<'_, '_>,
    plan: &Plan,
) -> Answer {
    let route = &plan.routing.routes[plan.route];
    // An HTTP/1.0 client cannot take chunks: the body runs to the close.
    let downstream_chunked = head.framing == Framing::Chunked && plan.minor == 1;
    let close = !plan.keep_alive
        || must_close
        || head.framing == Framing::UntilClose
        || (head.framing == Framing::Chunked && !downstream_chunked);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep_length = head.framing == Framing::None && head.status != 204;
    let mut has_date = false;
    let names_fields = head.connection_names_fields;
    for field in head.headers {
        let name = field.name;
        // The length is written below as one number: never a list as the
        // upstream wrote it (RFC 9110 section 8.6).
        if is_hop_by_hop(name, false)
            || (names_fields && named_in_connection(head.headers, name))
            || field_is(name.as_bytes(), b"content-length")
        {
            continue;
        }
        has_date |= field_is(name.as_bytes(), b"date");
        push_field(out, name.as_bytes(), field.value);
    }
    // As hyper's server does: an upstream's own date is passed on as is.
    if !has_date {
        push_date_field(out);
    }
    if let (Some(key), Some(cookie)) = (&plan.issued_key, &route.sticky) {
        out.extend_from_slice(b"set-cookie: ");
        cookie.push_set_cookie(out, key, tls);
        out.extend_from_slice(b"\r\n");
    }
    // An answer without a body keeps the length it announces (a HEAD
    // answer's is the GET's), 204 aside.
    let length = match head.framing {
        Framing::Length(n) => Some(n),
        _ if keep_length => head.length,
        _ => None,
    };
    if let Some(n) = length {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if head.framing == Framing::Chunked && downstream_chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if plan.minor == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Answer {
        status: head.status,
        framing: head.framing,
        reusable: head.reusable,
        downstream_chunked,
        close,
    }
}

/// Removes whole interim (1xx, not 101) answer heads from the front of
/// `from_upstream`; whether no final answer has begun: nothing is left, or
/// only a head not yet whole (an interim head may arrive in pieces, and
/// the upload goes on until it is known to be one).
fn skip_interim(from_upstream: &mut Vec<u8>) -> bool {
    loop {
        let mut headers = request_head::header_slots();
        let len = match response_head::parse(from_upstream, &mut headers, false) {
            Ok(Some(head)) if head.status < 200 && head.status != 101 => head.len,
            Ok(None) => return true,
            Ok(Some(_)) | Err(_) => return false,
        };
        from_upstream.drain(..len);
    }
}

/// What became of a write of request body bytes (see [`write_body`]).
enum BodyWrite {
    /// All of them went.
    Written,
    /// The upstream began its final answer, or closed, while the write
    /// waited: the bytes may not all have gone.
    Answered,
}

/// Writes the request body bytes in `to_upstream` to `upstream`, and while
/// the write waits, reads what the upstream sends into `from_upstream`: an
/// upstream that stops reading to answer early (a 413, say) would otherwise
/// hold the write until the request's deadline. Interim 1xx answers are
/// skipped; what is read stays bounded, as a head longer than [`MAX_HEAD`]
/// is no interim answer. What was written is removed from `to_upstream`,
/// so that after an early answer the rest can still go (see
/// [`upload_beside_answer`]).
async fn write_body(
    upstream: &TcpStream,
    to_upstream: &mut Vec<u8>,
    from_upstream: &mut Vec<u8>,
) -> std::io::Result<BodyWrite> {
    while !to_upstream.is_empty() {
        match socket_calls::try_send(upstream, to_upstream, SendFlags::empty()) {
            Ok(written) => {
                to_upstream.drain(..written);
                continue;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        // Polled readiness rather than tokio's `writable` and `readable`
        // futures: this wait is part of every connection's future, and
        // those would add to its size.
        let readable = std::future::poll_fn(|cx| {
            if upstream.poll_write_ready(cx)?.is_ready() {
                return Poll::Ready(Ok(false));
            }
            upstream.poll_read_ready(cx).map_ok(|()| true)
        })
        .await?;
        if readable {
            from_upstream.reserve(4096);
            match socket_calls::try_recv(upstream, from_upstream) {
                Ok(0) => return Ok(BodyWrite::Answered),
                Ok(_) if !skip_interim(from_upstream) => return Ok(BodyWrite::Answered),
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(BodyWrite::Written)
}

/// Whether any of the request body is yet to go upstream: unread in
/// `upload`, or read and unwritten in `to_upstream`.
fn upload_left(upload: &BodyLeft, to_upstream: &[u8]) -> bool {
    !matches!(upload, BodyLeft::Done) || !to_upstream.is_empty()
}

/// What moved while an answer streamed beside its upload (see
/// [`upload_beside_answer`]).
enum Moved {
    /// Bytes of the answer, read into `from_upstream` (0: the upstream
    /// closed).
    Answer(usize),
    /// Body bytes were read from the client or written upstream.
    Upload,
    /// The upstream refused more of the body (it closed its side, or reset):
    /// the rest is not sent.
    UpstreamTookNoMore,
    /// The client stopped sending inside its body: it closed (or
    /// half-closed) its side, or its connection failed.
    ClientClosed,
    /// The client's body broke its framing: what is wrong.
    ClientBroken(&'static str),
}

/// Waits for the next bytes of an answer that came before its request's
/// body ended, and meanwhile goes on sending that body: what `to_upstream`
/// holds, then what the client sends, through `upload`'s framing. An
/// upstream that answers as it reads (an echo, a streaming transform)
/// needs the rest of the body to finish its answer; one that wants no more
/// (a 413) stops reading or closes, and its answer ends the exchange.
///
/// # Errors
/// A failed read of the upstream.
async fn upload_beside_answer(
    upstream: &TcpStream,
    from_upstream: &mut Vec<u8>,
    client: &mut ClientSocket,
    from_client: &mut Vec<u8>,
    to_upstream: &mut Vec<u8>,
    upload: &mut BodyLeft,
) -> std::io::Result<Moved> {
    let client = match client.registered() {
        Ok(client) => client,
        Err(_) => return Ok(Moved::ClientClosed),
    };
    loop {
        // The answer first: the client is waiting for it.
        from_upstream.reserve(4096);
        match socket_calls::try_recv(upstream, from_upstream) {
            Ok(read) => return Ok(Moved::Answer(read)),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        if !to_upstream.is_empty() {
            match socket_calls::try_send(upstream, to_upstream, SendFlags::empty()) {
                Ok(written) => {
                    to_upstream.drain(..written);
                    return Ok(Moved::Upload);
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(Moved::UpstreamTookNoMore),
            }
        } else if !matches!(upload, BodyLeft::Done) {
            from_client.reserve(4096);
            match socket_calls::try_recv(client, from_client) {
                Ok(0) => return Ok(Moved::ClientClosed),
                Ok(_) => {
                    return Ok(match pump(upload, from_client, to_upstream, true) {
                        Ok(()) => Moved::Upload,
                        Err(ProxyError::ClientFraming { what, .. }) => Moved::ClientBroken(what),
                        Err(_) => Moved::ClientBroken("the body is broken"),
                    });
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(Moved::ClientClosed),
            }
        } else {
            // All of the body went: only the answer is left to wait for.
            return Ok(Moved::Upload);
        }
        std::future::poll_fn(|cx| {
            if upstream.poll_read_ready(cx)?.is_ready() {
                return Poll::Ready(Ok(()));
            }
            if to_upstream.is_empty() {
                client.poll_read_ready(cx)
            } else {
                upstream.poll_write_ready(cx)
            }
        })
        .await?;
    }
}

/// How much of a request went upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// All of it.
    Whole,
    /// The upstream answered or stopped reading before the body ended. The
    /// rest of the body goes on beside the answer while the upstream takes
    /// it (see [`upload_beside_answer`]), and both connections close after
    /// the answer (lingering on the client if its body was not all read:
    /// see [`client_socket::linger`]).
    Cut,
}

/// Why a request could not be sent.
enum SendError {
    /// The upstream connection failed (maybe a stale pooled one).
    Upstream(ProxyError),
    /// The client's body failed, or the exchange timed out.
    Client(ProxyError),
    /// The client reset its connection inside its body.
    ClientGone,
}

/// Why no answer head was had.
enum HeadError {
    /// The upstream closed without a byte of answer.
    ClosedSilently,
    /// The client closed its connection while waiting.
    ClientGone,
    /// Anything else.
    Failed(ProxyError),
}

/// The answer's head as far as streaming its body needs.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    framing: Framing,
    reusable: bool,
    downstream_chunked: bool,
    close: bool,
}

/// The route's request timeout, as the error names it.
fn deadline_length(plan: &Plan, _deadline: tokio::time::Instant) -> Duration {
    plan.routing.routes[plan.route].timeouts.request
}

/// Whether a write to the client had to wait for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    /// The socket took the bytes at once.
    No,
    /// The client took them only after a wait.
    Yes,
}

/// Writes all of `bytes` to the client. A client that takes none of them
/// for `stall` (it stopped reading, its window is shut) is reset rather
/// than waited for: the answer's upstream connection and buffers are not
/// held for it, and the kernel drops what is queued for it. The time spent
/// waiting for room, whatever the outcome, is added to `waited`.
async fn write_client(
    timer: &mut Timer,
    client: &mut ClientSocket,
    mut bytes: &[u8],
    stall: Duration,
    hold_for_close: bool,
    waited: &mut Duration,
) -> std::io::Result<Waited> {
    // Most answers fit in the socket's buffer: one write, no clock or timer.
    match client.try_write(bytes, hold_for_close) {
        Ok(written) => bytes = &bytes[written..],
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(error) => return Err(error),
    }
    if bytes.is_empty() {
        return Ok(Waited::No);
    }
    let waiting_since = tokio::time::Instant::now();
    let written = loop {
        if bytes.is_empty() {
            break Ok(Waited::Yes);
        }
        let deadline = tokio::time::Instant::now() + stall;
        let write = match client.write(bytes, hold_for_close) {
            Ok(write) => write,
            Err(error) => break Err(error),
        };
        match timer.run(deadline, write).await {
            Ok(Ok(0)) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(written)) => bytes = &bytes[written..],
            Ok(Err(error)) => break Err(error),
            Err(TimedOut) => {
                tracing::debug!(
                    ?stall,
                    "client took nothing within the idle timeout; resetting it"
                );
                let _ = client.set_zero_linger();
                break Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    };
    *waited += waiting_since.elapsed();
    written
}

/// Moves what `input` holds of the body into `out` (chunk data re-framed
/// when `chunked_out`, raw otherwise) and removes it from `input`.
///
/// # Errors
/// [`ProxyError::ClientFraming`] with the chunked fault.
fn pump(
    body: &mut BodyLeft,
    input: &mut Vec<u8>,
    out: &mut Vec<u8>,
    chunked_out: bool,
) -> Result<(), ProxyError> {
    match body {
        BodyLeft::Done => {}
        BodyLeft::UntilClose => {
            out.extend_from_slice(input);
            input.clear();
        }
        BodyLeft::Length(left) => {
            let take = usize::try_from(*left).map_or(input.len(), |left| left.min(input.len()));
            out.extend_from_slice(&input[..take]);
            input.drain(..take);
            *left -= take as u64;
            if *left == 0 {
                *body = BodyLeft::Done;
            }
        }
        BodyLeft::Chunked(decoder) => {
            let mut at = 0;
            let mut done = false;
            while at < input.len() {
                let (used, decoded) =
                    decoder
                        .decode(&input[at..])
                        .map_err(|error| ProxyError::ClientFraming {
                            what: chunked_fault(error),
                            incomplete: false,
                        })?;
                match decoded {
                    Decoded::Data(range) => {
                        let data = &input[at + range.start..at + range.end];
                        if chunked_out {
                            encode_chunk(out, data);
                        } else {
                            out.extend_from_slice(data);
                        }
                    }
                    Decoded::NeedMore => {}
                    Decoded::Done => done = true,
                }
                at += used;
                if done {
                    break;
                }
            }
            input.drain(..at);
            if done {
                if chunked_out {
                    out.extend_from_slice(LAST_CHUNK);
                }
                *body = BodyLeft::Done;
            }
        }
    }
    Ok(())
}

/// The text of a chunked fault.
fn chunked_fault(error: super::chunked::ChunkedError) -> &'static str {
    use super::chunked::ChunkedError::*;
    match error {
        InvalidSize => "invalid chunk size line",
        SizeOverflow => "chunk size overflows 64 bits",
        SizeLineTooLong => "chunk size line too long",
        InvalidExtension => "invalid chunk extension",
        ExtensionsOverLimit => "chunk extensions over limit",
        BareLineEnding => "chunked line not ended by CRLF",
        MissingDataCrlf => "chunk data not followed by CRLF",
        InvalidTrailers => "invalid trailer section",
    }
}

/// Whether a route needs what only the hyper path does.
fn needs_hyper(route: &ServedRoute) -> bool {
    route.fallback.is_some()
        || route.rule.is_some()
        || route
            .stable
            .endpoints
            .iter()
            .chain(route.canary.iter().flat_map(|c| c.endpoints.iter()))
            .any(|e| e.is_http2() || e.is_tls())
}

/// Whether the buffer starts like the HTTP/2 connection preface.
fn is_http2_preface_start(buf: &[u8]) -> bool {
    const PREFACE: &[u8] = b"PRI ";
    let n = buf.len().min(PREFACE.len());
    buf[..n] == PREFACE[..n]
}

/// Whether `value` is what `HeaderValue::to_str` accepts: visible ASCII and tabs.
fn is_visible(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

/// A gRPC `content-type`, as [`crate::grpc::is_grpc`].
fn is_grpc(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .find(|h| field_is(h.name.as_bytes(), b"content-type"))
        .is_some_and(|h| crate::grpc::is_grpc_content_type(h.value))
}

/// The first value of header `name`.
fn header_value<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Every `Cookie` line.
fn cookie_values<'a, 'b: 'a>(
    headers: &'a [httparse::Header<'b>],
) -> impl Iterator<Item = &'b [u8]> + 'a {
    headers
        .iter()
        .filter(|h| field_is(h.name.as_bytes(), b"cookie"))
        .map(|h| h.value)
}

/// Hop-by-hop fields (RFC 9110 section 7.6.1) and the framing fields weir
/// writes itself; on requests, the fields weir sets (`Host`, the
/// `X-Forwarded-*` ones) and `Expect`, answered by weir.
fn is_hop_by_hop(name: &str, request: bool) -> bool {
    let name = name.as_bytes();
    // Most fields are none of these: their length alone says so.
    let (both, only_request): (&[&[u8]], &[&[u8]]) = match name.len() {
        2 => (&[b"te"], &[]),
        4 => (&[], &[b"host"]),
        6 => (&[], &[b"expect"]),
        7 => (&[b"trailer", b"upgrade"], &[]),
        10 => (&[b"connection", b"keep-alive"], &[]),
        14 => (&[], &[b"content-length"]),
        15 => (&[], &[b"x-forwarded-for"]),
        16 => (&[b"proxy-connection"], &[b"x-forwarded-host"]),
        17 => (&[b"transfer-encoding"], &[b"x-forwarded-proto"]),
        18 => (&[b"proxy-authenticate"], &[]),
        19 => (&[], &[b"proxy-authorization"]),
        _ => return false,
    };
    both.iter().any(|h| field_is(name, h))
        || (request && only_request.iter().any(|h| field_is(name, h)))
}

/// Whether a `Connection` field names `name` (and so makes it hop-by-hop).
fn named_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, as `write!` would, without the formatting
/// machinery (a status and a length on every answer).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // The remainder is a single digit.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The field a client's address is appended to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The upstream request head, with the rewriting of `forward`'s
/// `prepare_request`: hop-by-hop fields removed, `Host` kept (or the
/// endpoint named for an HTTP/1.0 request without one), the
/// `X-Forwarded-*` fields set, an `x-request-id` added when missing, and
/// the body's framing. The request id is appended to `line`.
fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &request_head::RequestHead<'_, '_>,
    downstream: &Downstream,
    line: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut request_id = false;
    let mut forwarded_for = false;
    let names_fields = head.connection_names_fields;
    for field in head.headers {
        let name = field.name;
        if is_hop_by_hop(name, true) {
            forwarded_for |= field_is(name.as_bytes(), FORWARDED_FOR.as_bytes());
            continue;
        }
        if names_fields && named_in_connection(head.headers, name) {
            continue;
        }
        if field_is(name.as_bytes(), b"x-request-id") {
            if field.value.is_empty() {
                continue;
            }
            if !request_id {
                line.extend_from_slice(field.value);
            }
            request_id = true;
        }
        push_field(out, name.as_bytes(), field.value);
    }
    if !request_id {
        let id = crate::request_id::new_request_id_text();
        push_field(out, b"x-request-id", &id);
        line.extend_from_slice(&id);
    }
    // Append the client to any chain already present.
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for && !(names_fields && named_in_connection(head.headers, FORWARDED_FOR)) {
        for field in head
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(FORWARDED_FOR))
        {
            let value = field.value.trim_ascii();
            // As `HeaderValue::to_str` on the hyper path: visible ASCII only.
            if !value.is_empty() && is_visible(value) {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(downstream.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    push_field(
        out,
        b"x-forwarded-proto",
        if downstream.tls { b"https" } else { b"http" },
    );
    // A request without Host (HTTP/1.0) goes to hyper, which names the endpoint.
    if let Some(host) = head.host {
        push_field(out, b"host", host);
        push_field(out, b"x-forwarded-host", host);
    }
    match head.framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None | Framing::UntilClose => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// A short answer made by weir, as `error::local_response` makes it, to
/// a request of HTTP/1.`minor`.
fn write_local(out: &mut Vec<u8>, status: u16, text: &str, close: bool, minor: u8) {
    write_local_bytes(out, status, text.as_bytes(), close, minor, None);
}

/// Cuts the body of `len` bytes off an answer [`write_local`] or
/// [`write_local_bytes`] wrote, for a HEAD request: its head,
/// `Content-Length` included, stays as a GET's would be (RFC 9110 section
/// 9.3.2), and a client reads no body after it.
fn drop_local_body(out: &mut Vec<u8>, len: usize) {
    debug_assert!(out.len() >= len);
    out.truncate(out.len().saturating_sub(len));
}

/// [`write_local`] with bytes, and a `Set-Cookie` when one was issued.
fn write_local_bytes(
    out: &mut Vec<u8>,
    status: u16,
    text: &[u8],
    close: bool,
    minor: u8,
    set_cookie: Option<&[u8]>,
) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        text.len()
    );
    push_date_field(out);
    if let Some(cookie) = set_cookie {
        push_field(out, b"set-cookie", cookie);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if minor == 0 {
        // An HTTP/1.0 client takes a connection as closed unless told.
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_are_found_whatever_their_case_and_others_pass() {
        for name in [
            "Connection",
            "TE",
            "upgrade",
            "Proxy-Connection",
            "keep-alive",
        ] {
            assert!(is_hop_by_hop(name, false), "{name}");
        }
        for name in ["Host", "content-length", "X-Forwarded-For", "expect"] {
            assert!(!is_hop_by_hop(name, false), "{name}");
            assert!(is_hop_by_hop(name, true), "{name}");
        }
        for name in [
            "date",
            "content-type",
            "x-request-id",
            "set-cookie",
            "tee",
            "hosts",
        ] {
            assert!(!is_hop_by_hop(name, true), "{name}");
        }
    }

    #[test]
    fn push_decimal_writes_what_write_writes() {
        for n in [
            0,
            7,
            10,
            99,
            100,
            204,
            65_535,
            1_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[tokio::test]
    async fn the_timer_fires_at_each_deadline_however_it_was_armed() {
        let mut timer = Timer::new();
        let start = tokio::time::Instant::now();
        // Armed for a near deadline by work that ends at once.
        let near = start + Duration::from_millis(20);
        assert!(matches!(timer.run(near, async { 7 }).await, Ok(7)));
        // A later deadline is not cut short by the earlier arming.
        let later = start + Duration::from_millis(80);
        let waited = timer.run(later, std::future::pending::<()>()).await;
        assert!(waited.is_err());
        assert!(tokio::time::Instant::now() >= later);
        // A nearer deadline than the one armed is kept too.
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        assert!(matches!(timer.run(far, async { 1 }).await, Ok(1)));
        let soon = tokio::time::Instant::now() + Duration::from_millis(30);
        assert!(timer.run(soon, std::future::pending::<()>()).await.is_err());
        assert!(tokio::time::Instant::now() >= soon);
    }

    #[tokio::test]
    async fn the_timer_fires_when_its_arming_is_kept_across_runs_and_tasks() {
        let mut timer = Timer::new();
        let brief = Duration::from_millis(10);
        // Armed by a run whose work ends after the sleep was polled; the
        // next run to the same deadline keeps that arming.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(60);
        assert!(timer.run(deadline, tokio::time::sleep(brief)).await.is_ok());
        let waited = timer.run(deadline, std::future::pending::<()>()).await;
        assert!(waited.is_err());
        assert!(tokio::time::Instant::now() >= deadline);
        // Armed in this task, waited on in another: the other task is the
        // one woken.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(60);
        assert!(timer.run(deadline, tokio::time::sleep(brief)).await.is_ok());
        let other = tokio::spawn(async move {
            let waited = timer.run(deadline, std::future::pending::<()>()).await;
            waited.is_err() && tokio::time::Instant::now() >= deadline
        });
        let ended = tokio::time::timeout(Duration::from_secs(10), other).await;
        assert!(
            matches!(ended, Ok(Ok(true))),
            "the other task was not woken at its deadline"
        );
    }

    #[test]
    fn the_upstream_head_drops_hop_by_hop_fields_and_sets_forwarded_ones() {
        let input = b"POST /p?q HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Hop\r\n\
            X-Hop: secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\n\
            X-Forwarded-For: 10.0.0.1\r\nX-Request-Id: abc\r\nX-Kept: yes\r\n\
            Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
        let mut headers = request_head::header_slots();
        let Ok(Parsed::Complete(head)) = request_head::parse(input, &mut headers) else {
            panic!("not parsed");
        };
        let downstream = Downstream::new(
            "192.0.2.7:5000".parse().unwrap_or_else(|e| panic!("{e}")),
            false,
            tracing::Span::none(),
        );
        let mut out = Vec::new();
        let mut line = Vec::new();
        write_upstream_head(&mut out, &head, &downstream, &mut line);
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        assert!(text.starts_with("post /p?q http/1.1\r\n"), "{text}");
        for kept in [
            "x-kept: yes\r\n",
            "x-request-id: abc\r\n",
            "x-forwarded-for: 10.0.0.1, 192.0.2.7\r\n",
            "x-forwarded-proto: http\r\n",
            "host: shop.test\r\n",
            "x-forwarded-host: shop.test\r\n",
            "transfer-encoding: chunked\r\n",
        ] {
            assert!(text.contains(kept), "{kept:?} missing in {text}");
        }
        for dropped in [
            "connection",
            "x-hop",
            "keep-alive",
            "te:",
            "proxy-authorization",
            "expect",
        ] {
            assert!(!text.contains(dropped), "{dropped:?} kept in {text}");
        }
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(line, b"abc");
    }
}
