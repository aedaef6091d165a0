//! The response body the proxy sends downstream: an upstream body streamed
//! through (returning its connection to the pool once fully read), or a short
//! body made by weir itself.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::grpc::GrpcAccount;
use crate::metrics::{RoleMetrics, UpstreamErrorKind};
use crate::request_body::UploadProgress;
use crate::upstream::{InFlight, Sender};

/// Errors while streaming a body downstream.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A downstream response body.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the upstream body would cost an allocation per proxied response; local answers are rare"
)]
pub enum ProxyBody {
    /// Streamed from an upstream.
    Upstream(UpstreamBody),
    /// Streamed from an upstream to an HTTP/2 client, and shared with the
    /// connection's [`BodyWatch`], which cuts it at its deadline even while
    /// hyper does not poll it (see [`BodyWatch`]).
    Watched(Arc<Mutex<UpstreamBody>>),
    /// Made by weir (errors, 404); `None` once sent.
    Local(Option<Bytes>),
}

/// An upstream response body and the connection it arrives on.
#[derive(Debug)]
pub struct UpstreamBody {
    /// `None` once [`BodyWatch`] let go of it at the deadline.
    body: Option<Incoming>,
    /// Returned to the endpoint's pool when the body was read to its end
    /// (HTTP/1.1; an HTTP/2 connection is shared and never pooled).
    sender: Option<Sender>,
    /// How far the request's body was sent; `None` when it had none to
    /// stream (see [`crate::request_body::RequestBody::track`]).
    upload: Option<Arc<UploadProgress>>,
    /// The answer is a 2xx: the upstream took the request, and may still be
    /// reading its body when the answer ends.
    accepted: bool,
    /// `None` once [`BodyWatch`] let go of the upstream exchange.
    in_flight: Option<InFlight>,
    /// The body ended cleanly (hyper's `is_end_stream` is only true for a
    /// known length, so chunked bodies are tracked here).
    done: bool,
    /// The body ended with trailers. hyper's HTTP/1 client reads a trailer
    /// section to a CRLF CRLF, taking a bare LF inside it for part of a
    /// field: what a reader that ends lines at a bare LF sees after the
    /// section's end may have been read into it, so such a connection is
    /// not used again.
    had_trailers: bool,
    /// Longest wait for the next frame before the body is cut.
    idle_timeout: Duration,
    /// The route's request timeout, for messages.
    request_timeout: Duration,
    /// The whole response must have arrived by then.
    deadline: Instant,
    /// Armed while waiting for a frame; allocated only when one is late.
    timer: Option<Pin<Box<Sleep>>>,
    /// The request's counters, until it is counted.
    account: Option<ResponseAccount>,
    /// Frames read but not yet sent, sent first: one read before the head
    /// was answered, or those [`BodyWatch`] found the upstream had sent.
    held: VecDeque<Frame<Bytes>>,
    /// When the head or a frame last went downstream, until hyper asks for
    /// the next: while set, it is the client (its flow-control window) the
    /// body waits on, not the upstream.
    handed_at: Option<Instant>,
    /// How long hyper took in all to ask for the next frame after one
    /// went downstream: the client's pace (its socket buffer or window
    /// full), left out of the request's latency.
    downstream_waited: Duration,
}

/// Where and how a proxied response is counted once its body ends.
#[derive(Debug)]
pub struct ResponseAccount {
    /// The route's and role's counters.
    pub metrics: Arc<RoleMetrics>,
    /// The status sent downstream.
    pub code: u16,
    /// When the request head arrived.
    pub started: std::time::Instant,
    /// For a gRPC call answered 200: its status, counted with the gRPC
    /// code rather than the HTTP one.
    pub grpc: Option<GrpcAccount>,
    /// A gRPC call answered with another code than 200: counted with the
    /// code and the status a gRPC client reads from it.
    pub grpc_by_http: bool,
}

/// How long an upstream body may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longest silence between two frames.
    pub idle: Duration,
    /// The route's request timeout, for messages.
    pub request: Duration,
    /// When the whole response must have arrived.
    pub deadline: Instant,
}

/// The upstream sent nothing for longer than the route's idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream body stalled for {0:?}")]
pub struct BodyStalled(Duration);

/// The upstream response took longer than the route's request timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream response not complete within the request timeout of {0:?}")]
pub struct ResponseDeadline(Duration);

// === impl ProxyBody ===

impl ProxyBody {
    /// A body made by weir.
    pub fn local(text: impl Into<Bytes>) -> ProxyBody {
        ProxyBody::Local(Some(text.into()))
    }

    /// An empty body.
    pub fn empty() -> ProxyBody {
        ProxyBody::Local(None)
    }

    /// Streams `body` downstream; `sender` goes back to the pool of the
    /// in-flight endpoint at its end, unless the request's body was still
    /// being sent (`upload` not yet ended): that connection is closed (after
    /// a 2xx, once it sent the rest), so an upstream that answered without
    /// reading the whole body (a 413) does not hold the upload, and the
    /// client's connection, forever. A wait longer than the idle limit for
    /// the next frame, or a body still running at the deadline, ends the
    /// body with an error. The request is counted in `account` when the
    /// body ends, breaks or is dropped; a break or a timeout also counts as
    /// an upstream error of the role.
    pub fn upstream(
        body: Incoming,
        sender: Option<Sender>,
        upload: Option<Arc<UploadProgress>>,
        in_flight: InFlight,
        limits: BodyLimits,
        account: ResponseAccount,
    ) -> ProxyBody {
        ProxyBody::Upstream(UpstreamBody {
            body: Some(body),
            sender,
            upload,
            accepted: (200..300).contains(&account.code),
            in_flight: Some(in_flight),
            done: false,
            had_trailers: false,
            idle_timeout: limits.idle,
            request_timeout: limits.request,
            deadline: limits.deadline,
            timer: None,
            account: Some(account),
            held: VecDeque::new(),
            // The head goes to hyper now: until hyper asks for the body,
            // the wait is the client's (its window is first).
            handed_at: Some(Instant::now()),
            downstream_waited: Duration::ZERO,
        })
    }

    /// The same body, watched by `watch` (an HTTP/2 downstream's) so that it
    /// ends at its deadline whether or not hyper polls it; a body made by
    /// weir is returned as it is.
    #[must_use]
    pub fn watched_by(self, watch: &Arc<BodyWatch>) -> ProxyBody {
        match self {
            ProxyBody::Upstream(up) => watch.watch(up),
            other => other,
        }
    }

    /// Puts back the first frames of an upstream body, read before
    /// answering to check the body's framing; `ended` when the body ended
    /// with them.
    #[must_use]
    pub fn with_first_frames(mut self, frames: VecDeque<Frame<Bytes>>, ended: bool) -> ProxyBody {
        if let ProxyBody::Upstream(up) = &mut self {
            // As read by `poll_frame`: a gRPC status in trailers is noted,
            // and the end of the body counts it.
            for trailers in frames.iter().filter_map(Frame::trailers_ref) {
                up.note_trailers(trailers);
            }
            // Held as they are: nothing was held yet.
            debug_assert!(up.held.is_empty());
            up.held = frames;
            if ended || up.upstream_ended() {
                up.done = true;
                up.count(None);
                up.release_upstream();
            }
        }
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        // Trailers lose the fields no trailer may carry, towards either
        // protocol.
        let polled = match self.get_mut() {
            ProxyBody::Upstream(up) => up.poll_frame(cx),
            ProxyBody::Watched(up) => lock(up).poll_frame(cx),
            ProxyBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        };
        crate::forward::forwardable_polled(polled)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(up) => up.is_end_stream(),
            ProxyBody::Watched(up) => lock(up).is_end_stream(),
            ProxyBody::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(up) => up.size_hint(),
            ProxyBody::Watched(up) => lock(up).size_hint(),
            ProxyBody::Local(Some(data)) => SizeHint::with_exact(data.len() as u64),
            ProxyBody::Local(None) => SizeHint::with_exact(0),
        }
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && (self.done || self.upstream_ended())
    }

    /// What is left of the upstream's body and what is held of it: with a
    /// first frame taken before the head, an exact length still matches
    /// the head's `content-length` (hyper's server checks it).
    fn size_hint(&self) -> SizeHint {
        let rest = match &self.body {
            Some(body) => body.size_hint(),
            None if self.done => SizeHint::with_exact(0),
            None => SizeHint::default(),
        };
        let held: u64 = self
            .held
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.len() as u64)
            .sum();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(held));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }

    /// Whether the upstream's body is known to have ended (hyper knows it
    /// only for a known length).
    fn upstream_ended(&self) -> bool {
        self.body.as_ref().is_some_and(Body::is_end_stream)
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(handed_at) = self.handed_at.take() {
            self.downstream_waited += handed_at.elapsed();
        }
        if let Some(frame) = self.held.pop_front() {
            self.handed_at = Some(Instant::now());
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let Some(body) = self.body.as_mut() else {
            // Let go of at the deadline by the connection's watch, which
            // counted it.
            return Poll::Ready(Some(Err(ResponseDeadline(self.request_timeout).into())));
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.note_trailers(trailers);
                }
                // Trailers end a body; hyper's `is_end_stream` says so only
                // for a known length.
                if frame.is_trailers() || self.upstream_ended() {
                    self.done = true;
                    self.count(None);
                    return Poll::Ready(Some(Ok(frame)));
                }
                let now = Instant::now();
                if now >= self.deadline {
                    if self.is_grpc_call() {
                        // The frame is lost to the call anyway: its deadline passed.
                        return self.grpc_deadline_trailers();
                    }
                    return Poll::Ready(Some(Err(self.cut_at_deadline())));
                }
                if let Some(timer) = self.timer.as_mut() {
                    timer
                        .as_mut()
                        .reset((now + self.idle_timeout).min(self.deadline));
                }
                self.handed_at = Some(now);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.done = true;
                self.count(None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(_))) if self.is_grpc_call() && Instant::now() >= self.deadline => {
                // A call cut by its own deadline (the upstream may enforce
                // `grpc-timeout` too): DEADLINE_EXCEEDED, not a broken body.
                self.grpc_deadline_trailers()
            }
            Poll::Ready(Some(Err(error))) => {
                // A client that closed inside its upload (or broke it)
                // breaks hyper's exchange: not the upstream's fault.
                let client_failed = self
                    .upload
                    .as_ref()
                    .is_some_and(|upload| upload.client_failed());
                tracing::debug!(endpoint = %self.endpoint_addr(), %error, client_failed, "upstream body broken");
                self.close_connection();
                if client_failed {
                    // Counted as a client that left (a gRPC call as
                    // CANCELLED).
                    self.count_ended(None, true);
                } else {
                    self.count(Some(UpstreamErrorKind::Protocol));
                }
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Pending => {
                let (idle, deadline) = (self.idle_timeout, self.deadline);
                let timer = self.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(
                        (Instant::now() + idle).min(deadline),
                    ))
                });
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= self.deadline {
                    if self.is_grpc_call() {
                        return self.grpc_deadline_trailers();
                    }
                    return Poll::Ready(Some(Err(self.cut_at_deadline())));
                }
                tracing::debug!(endpoint = %self.endpoint_addr(), timeout = ?idle, client_stalled = self.waits_on_client(), "upstream body stalled");
                // The connection is mid-response: never reuse it.
                self.close_connection();
                let failure = self.stall_failure();
                self.count(failure);
                Poll::Ready(Some(Err(BodyStalled(idle).into())))
            }
        }
    }

    /// Closes the upstream connection at once: its answer broke or ran
    /// out of time, and it must not go on sending the request's body.
    fn close_connection(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
        // Towards HTTP/2 the stream's upload, if still going, stops.
        if let Some(upload) = &self.upload {
            upload.stop_after_answer();
        }
    }

    /// How long the request waited on its client: for its body's parts
    /// (see [`UploadProgress::client_waited`]) and for hyper to ask for
    /// the next part of the answer, the wait going on included.
    fn client_waited(&self) -> Duration {
        let asking = self.handed_at.map_or(Duration::ZERO, |at| at.elapsed());
        let uploading = self
            .upload
            .as_ref()
            .map_or(Duration::ZERO, |upload| upload.client_waited());
        self.downstream_waited + asking + uploading
    }

    fn is_grpc_call(&self) -> bool {
        self.account.as_ref().is_some_and(|a| a.grpc.is_some())
    }

    /// Notes the trailers that end the body: a gRPC status in them, and
    /// that there were some (see [`UpstreamBody::had_trailers`]).
    fn note_trailers(&mut self, trailers: &http::HeaderMap) {
        self.had_trailers = true;
        if let Some(grpc) = self.account.as_mut().and_then(|a| a.grpc.as_mut()) {
            if let Some(status) = crate::grpc::status(trailers) {
                grpc.status = Some(status);
            }
        }
    }

    /// Ends a gRPC call at its deadline with DEADLINE_EXCEEDED trailers, as
    /// a gRPC client expects, rather than a reset stream.
    fn grpc_deadline_trailers(&mut self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        tracing::debug!(endpoint = %self.endpoint_addr(), timeout = ?self.request_timeout, "gRPC call exceeded its deadline");
        self.close_connection();
        self.done = true;
        if let Some(grpc) = self.account.as_mut().and_then(|a| a.grpc.as_mut()) {
            grpc.status = Some(crate::grpc::DEADLINE_EXCEEDED);
        }
        self.count(Some(UpstreamErrorKind::Timeout));
        Poll::Ready(Some(Ok(Frame::trailers(
            crate::grpc::deadline_during_answer_trailers(),
        ))))
    }

    fn cut_at_deadline(&mut self) -> BodyError {
        tracing::debug!(endpoint = %self.endpoint_addr(), timeout = ?self.request_timeout, "upstream response exceeded the request timeout");
        self.close_connection();
        let failure = self.stall_failure();
        self.count(failure);
        ResponseDeadline(self.request_timeout).into()
    }

    /// The endpoint the exchange went to (unspecified once [`BodyWatch`]
    /// let go of it).
    fn endpoint_addr(&self) -> std::net::SocketAddr {
        self.in_flight
            .as_ref()
            .map_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), |in_flight| {
                in_flight.endpoint().addr()
            })
    }

    /// Ends the upstream exchange at its deadline while hyper does not ask
    /// for the body (see [`BodyWatch`]). What the upstream already sent is
    /// kept for the client: an answer whose end came is not cut, its
    /// connection goes back to the pool. Otherwise the upstream connection
    /// is closed, or its stream reset, and the client gets the end when it
    /// next takes the body: a gRPC call DEADLINE_EXCEEDED trailers after
    /// what came, anything else a reset stream. Cut while a frame waited
    /// for the client's window, the request is counted as one its client
    /// left (the window is the client's), not as the upstream's timeout.
    fn expire(&mut self) {
        if self.done || self.body.is_none() {
            return;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while let Some(body) = self.body.as_mut() {
            match Pin::new(body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        self.note_trailers(trailers);
                    }
                    let ends = frame.is_trailers() || self.upstream_ended();
                    self.held.push_back(frame);
                    self.handed_at.get_or_insert_with(Instant::now);
                    if ends {
                        self.done = true;
                    }
                }
                Poll::Ready(None) => self.done = true,
                Poll::Ready(Some(Err(_))) | Poll::Pending => break,
            }
            if self.done {
                self.count(None);
                self.release_upstream();
                self.in_flight = None;
                return;
            }
        }
        tracing::debug!(endpoint = %self.endpoint_addr(), timeout = ?self.request_timeout, waits_on_client = self.handed_at.is_some(), "response not taken by its HTTP/2 client within the request timeout");
        self.close_connection();
        let grpc = self.is_grpc_call();
        if self.handed_at.is_some() {
            // Counted first: a call without a status as CANCELLED.
            self.count_ended(None, true);
            if grpc {
                self.held.push_back(Frame::trailers(
                    crate::grpc::deadline_during_answer_trailers(),
                ));
                self.done = true;
            }
        } else if grpc {
            if let Poll::Ready(Some(Ok(trailers))) = self.grpc_deadline_trailers() {
                self.held.push_back(trailers);
            }
        } else {
            let _ = self.cut_at_deadline();
        }
        // Dropped, an HTTP/2 upstream's stream is reset, and what it had
        // sent no longer holds the connection's window.
        self.body = None;
        self.in_flight = None;
    }

    /// Hands the upstream connection back, or closes it, once the answer
    /// is done with: only a connection whose exchange ended whole, its
    /// response read to the end and its request body sent, may carry the
    /// next request.
    fn release_upstream(&mut self) {
        let uploading = self.upload.as_ref().is_some_and(|upload| !upload.ended());
        let whole = self.done || self.upstream_ended();
        let Some(sender) = self.sender.take() else {
            // Towards HTTP/2 hyper sends the upload from a task of its own,
            // which the upload's bounds end as the branches below end an
            // HTTP/1 connection's.
            if let Some(upload) = self.upload.as_ref().filter(|_| uploading) {
                if whole && self.accepted {
                    upload.bound_after_answer();
                } else {
                    upload.stop_after_answer();
                }
            }
            return;
        };
        if whole && !uploading {
            // Pooled, unless it ended with trailers (see `had_trailers`):
            // dropped, it closes.
            if let Some(in_flight) = self.in_flight.as_ref().filter(|_| !self.had_trailers) {
                in_flight.endpoint().put_idle(sender);
            }
        } else if whole && self.accepted {
            // The upstream took the request and answered before reading
            // all of it (an ingest endpoint's `202`): the connection
            // sends the rest, then closes, with no sender left; but no
            // later than the request's deadline, nor after the client
            // left it silent for the idle timeout.
            sender.release_until(self.deadline, self.upload.take(), self.idle_timeout);
        } else if uploading {
            // A refusal (a 413), or an answer cut short: no more of the
            // body goes.
            sender.abort();
        }
        // Otherwise dropped: the client left mid-answer, and the
        // connection ends by itself, as hyper closes it.
    }

    /// Whether the answer waits on the client: the upload beside it took
    /// all that came and waits for more (never for a gRPC call, whose
    /// request stream may rightly stay quiet: see
    /// [`UploadProgress::waiting_on_client`]).
    fn waits_on_client(&self) -> bool {
        self.upload
            .as_ref()
            .is_some_and(|upload| upload.waiting_on_client())
    }

    /// What a body that ran out of time counts against the upstream:
    /// nothing when it waited on the client's stalled upload.
    fn stall_failure(&self) -> Option<UpstreamErrorKind> {
        (!self.waits_on_client()).then_some(UpstreamErrorKind::Timeout)
    }

    /// Counts the request once, with the failure that ended its body if any.
    fn count(&mut self, failure: Option<UpstreamErrorKind>) {
        self.count_ended(failure, false);
    }

    /// [`UpstreamBody::count`]; `dropped` when the body was not read to its
    /// end (the client left): a gRPC call without a status then counts as
    /// CANCELLED, and one that ended cleanly without a status as UNKNOWN,
    /// as a gRPC client sees them.
    fn count_ended(&mut self, failure: Option<UpstreamErrorKind>, dropped: bool) {
        let Some(started) = self.account.as_ref().map(|account| account.started) else {
            return;
        };
        let took = started.elapsed().saturating_sub(self.client_waited());
        if let Some(grpc) = self.account.as_ref().and_then(|a| a.grpc) {
            let status = match (grpc.status, failure, dropped) {
                (Some(status), _, _) => Some(status),
                // A call whose answer broke ended without a status: as a
                // gRPC client sees it, UNKNOWN (an error of the role, as
                // weir's own failure).
                (None, Some(_), _) => Some(weir_config::grpc::GRPC_UNKNOWN),
                (None, None, true) => Some(weir_config::grpc::GRPC_CANCELLED),
                (None, None, false) => Some(weir_config::grpc::GRPC_UNKNOWN),
            };
            // The account is taken only for a status: without one it is
            // counted below, by its HTTP code.
            if let Some(status) = status
                && let Some(account) = self.account.take()
            {
                // A body broken or cut by weir's own timeout is an error of
                // the role whatever the list says; the client's deadline is
                // counted by the list.
                let weirs_failure = match failure {
                    Some(UpstreamErrorKind::Timeout) => !grpc.client_deadline,
                    Some(_) => true,
                    None => false,
                };
                account.metrics.record_grpc(
                    status,
                    weirs_failure || grpc.errors.contains_status(status),
                    took,
                );
                if let Some(kind) = failure {
                    account.metrics.record_upstream_error(kind);
                }
                return;
            }
        }
        if let Some(account) = self.account.take() {
            // The request first, so a sample never sees more errors than requests.
            if account.grpc_by_http {
                account
                    .metrics
                    .record_grpc_http(account.code, failure.is_some(), took);
                if let Some(kind) = failure {
                    account.metrics.record_upstream_error(kind);
                }
                return;
            }
            account.metrics.record(account.code, took);
            if let Some(kind) = failure {
                account.metrics.record_upstream_error(kind);
                account.metrics.record_failed_body(account.code);
            }
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Not polled to its end (a HEAD answer, or a client that left):
        // counted with the code it was sent with.
        let dropped = !(self.done || self.upstream_ended());
        self.count_ended(None, dropped);
        self.release_upstream();
    }
}

/// An upstream body shared with a [`BodyWatch`], locked for one call; a
/// poisoned lock (a panic while polling) is taken as it is.
fn lock(body: &Mutex<UpstreamBody>) -> std::sync::MutexGuard<'_, UpstreamBody> {
    body.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The upstream bodies one downstream connection streams over HTTP/2,
/// each ended at its request's deadline by [`BodyWatch::run`].
///
/// hyper's HTTP/2 server asks a body for its next frame only while the
/// client's flow-control window is open: a client that shuts it (sends no
/// `WINDOW_UPDATE`) leaves the body unpolled, so the body's own timers
/// never run, and the upstream exchange (an HTTP/1.1 connection, or an
/// HTTP/2 stream whose unread data holds that connection's window for
/// every other stream on it) would be held for as long as the client
/// likes. The watch lets go of it at the deadline instead, as the body
/// itself would have.
///
/// Registering costs a lock and a push; the list is purged of ended bodies
/// as it grows (so it holds at most about twice the bodies in flight). The
/// watch's task starts with the connection's first watched body (an
/// HTTP/1 connection never has one, and pays for no task), wakes only at
/// the earliest deadline or when a body with an earlier one arrives, and
/// is stopped by the connection's [`EndsWatch`].
#[derive(Debug, Default)]
pub struct BodyWatch {
    watched: Mutex<Watched>,
    earlier: tokio::sync::Notify,
}

/// Stops a [`BodyWatch`]'s task when dropped with its connection.
#[derive(Debug)]
pub struct EndsWatch(Arc<BodyWatch>);

/// The bodies a [`BodyWatch`] follows.
#[derive(Debug, Default)]
struct Watched {
    bodies: Vec<(Instant, Weak<Mutex<UpstreamBody>>)>,
    /// How many bodies the list held after its last purge.
    kept: usize,
    /// The earliest deadline the watch sleeps until; `None` when it sleeps
    /// until a body comes.
    wakes_at: Option<Instant>,
    /// The watch's task, once started.
    task: Option<tokio::task::AbortHandle>,
}

// === impl BodyWatch ===

impl BodyWatch {
    /// A watch for one connection, and what stops it when the connection
    /// ends.
    pub fn for_connection() -> (Arc<BodyWatch>, EndsWatch) {
        let watch = Arc::new(BodyWatch::default());
        (Arc::clone(&watch), EndsWatch(watch))
    }

    /// Shares `body` with the watch.
    fn watch(self: &Arc<Self>, body: UpstreamBody) -> ProxyBody {
        let deadline = body.deadline;
        let body = Arc::new(Mutex::new(body));
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        if watched.bodies.len() >= 2 * watched.kept + 16 {
            watched.bodies.retain(|(_, body)| body.strong_count() > 0);
            watched.kept = watched.bodies.len();
        }
        watched.bodies.push((deadline, Arc::downgrade(&body)));
        if watched.task.is_none() {
            let watch = Arc::clone(self);
            watched.task = Some(tokio::spawn(async move { watch.run().await }).abort_handle());
        }
        if watched.wakes_at.is_none_or(|at| deadline < at) {
            watched.wakes_at = Some(deadline);
            drop(watched);
            self.earlier.notify_one();
        }
        ProxyBody::Watched(body)
    }

    /// Ends each watched body at its deadline, until stopped.
    async fn run(&self) {
        let mut due = Vec::new();
        loop {
            let wakes_at = {
                let now = Instant::now();
                let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
                watched.bodies.retain(|(deadline, body)| {
                    if *deadline <= now {
                        due.push(body.clone());
                        return false;
                    }
                    body.strong_count() > 0
                });
                watched.kept = watched.bodies.len();
                watched.wakes_at = watched.bodies.iter().map(|(deadline, _)| *deadline).min();
                watched.wakes_at
            };
            // Outside the list's lock: a body's lock is never taken under it.
            for body in due.drain(..) {
                if let Some(body) = body.upgrade() {
                    lock(&body).expire();
                }
            }
            match wakes_at {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.earlier.notified() => {}
                    }
                }
                None => self.earlier.notified().await,
            }
        }
    }
}

// === impl EndsWatch ===

impl Drop for EndsWatch {
    fn drop(&mut self) {
        let task = self
            .0
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .task
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}
