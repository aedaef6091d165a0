//! The request body the proxy sends upstream: the client's body streamed
//! through as it arrives, or, on a route with `stableFallback`, kept whole in
//! memory so that a failed canary attempt can be sent again to stable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::ClientErrorKind;

/// A request body on its way upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// The client's body, streamed as it arrives (every route without
    /// `stableFallback`, and stable requests).
    Streamed(ClientBody),
    /// A body read to its end before sending: it can be sent again.
    Buffered(BufferedBody),
    /// The start of a body that turned out larger than the limit while being
    /// kept, then the rest streamed: sent once, never again.
    Prefixed {
        /// What was read before the limit was passed; `None` once sent.
        head: Option<Bytes>,
        /// The rest of the client's body.
        rest: ClientBody,
    },
    /// A body still to be read when sent upstream, whose progress is noted
    /// for the answer's side (see [`RequestBody::track`]): an answer that
    /// ends before its upload closes an HTTP/1.1 connection, and a
    /// deadline that passes while it waits on the client is the client's.
    Tracked {
        /// The body itself.
        body: Box<RequestBody>,
        /// How far `body` has been read.
        progress: Arc<UploadProgress>,
    },
}

/// How far a tracked request body has been read (see
/// [`RequestBody::track`]), as the answer's side sees it.
#[derive(Debug)]
pub struct UploadProgress {
    /// What the last read of the body gave: one of the states below.
    state: AtomicU8,
    /// A quiet body is a stalled client: false for a request whose body
    /// may rightly stay quiet while it waits (a gRPC call's stream).
    quiet_is_stall: bool,
    /// When tracking began: `waiting_since` counts from here (tokio's
    /// clock, which the waits on this progress use).
    tracked_at: tokio::time::Instant,
    /// Microseconds from `tracked_at` to the read that found the body
    /// waiting on its client after it had given data or not begun
    /// (written before `state` says so).
    waiting_since: AtomicU64,
    /// Microseconds the request waited on its client in all: the upload's
    /// silences that ended, and a body's read before it was sent (see
    /// [`UploadProgress::add_client_wait`]). Left out of the request's
    /// latency.
    client_waited: AtomicU64,
    /// What the answer's side, done with the exchange, asks of an upload
    /// still going: one of the `AFTER_ANSWER_` states below. Only an
    /// upload towards HTTP/2 ([`H2Upload`]) reads it: hyper sends that
    /// upload from a task of its own, which only the body it reads can
    /// stop (towards HTTP/1 the answer's side stops the connection).
    after_answer: AtomicU8,
    /// Wakes the task sending the upload when `after_answer` changes.
    after_answer_waker: AtomicWaker,
    /// `client_waited`, in microseconds, when the attempt's deadline was
    /// set (see [`UploadProgress::start_answer_clock`]): what came before
    /// (a body read whole for a retry, an earlier attempt) is not inside
    /// that deadline and does not move it.
    waited_before_deadline: AtomicU64,
    /// Whether the attempt's deadline may move (see
    /// [`UploadProgress::answer_deadline`]): not when it is a gRPC
    /// client's own.
    deadline_movable: AtomicBool,
}

/// [`UploadProgress`]: the body has not been read yet.
const NOT_STARTED: u8 = 0;
/// [`UploadProgress`]: the last read of the body gave data.
const SENDING: u8 = 1;
/// [`UploadProgress`]: the last read of the body found nothing yet.
const WAITING_ON_CLIENT: u8 = 2;
/// [`UploadProgress`]: the body has been read to its end.
const ENDED: u8 = 3;
/// [`UploadProgress`]: the body's framing was broken.
const CLIENT_FAILED: u8 = 4;
/// [`UploadProgress`]: the body ended before its declared length (the
/// client closed inside it).
const CLIENT_CUT: u8 = 5;
/// [`UploadProgress`]: the client reset its connection inside the body.
const CLIENT_RESET: u8 = 6;

/// [`UploadProgress::after_answer`]: the answer's side is not done yet.
const AFTER_ANSWER_GO_ON: u8 = 0;
/// [`UploadProgress::after_answer`]: the upstream accepted the request
/// before reading all of it; the rest goes until the deadline, or until
/// the client leaves it silent for the idle timeout.
const AFTER_ANSWER_BOUNDED: u8 = 1;
/// [`UploadProgress::after_answer`]: no more of the body goes (a refusal,
/// an answer cut short, a client that left).
const AFTER_ANSWER_STOP: u8 = 2;

/// A whole request body: its data and trailers, cheap to clone (`Bytes`).
#[derive(Debug, Clone, Default)]
pub struct BufferedBody {
    /// The data, if any; `None` once sent.
    data: Option<Bytes>,
    /// The trailers, if any; `None` once sent.
    trailers: Option<HeaderMap>,
}

/// What [`keep`] made of a client's body.
#[derive(Debug)]
pub enum Kept {
    /// Read whole within the limit: can be sent again.
    Whole(BufferedBody),
    /// Declared or found larger than the limit, or (see [`KeepGap::Stream`])
    /// quiet before its end: to be sent once, as it streams.
    Once(RequestBody),
}

// === impl RequestBody ===

impl RequestBody {
    /// Makes this body [`RequestBody::Tracked`]: whether the upload
    /// finished, or waits on the client, for the answer's side to know.
    /// `quiet_is_stall`: whether a body that waits on its client counts as
    /// that client's stall (not for a gRPC call, whose stream may rightly
    /// stay quiet).
    pub fn track(&mut self, quiet_is_stall: bool) -> Arc<UploadProgress> {
        let progress = UploadProgress::new(quiet_is_stall);
        self.track_with(Arc::clone(&progress));
        progress
    }

    /// [`RequestBody::track`] with a progress made before (see
    /// [`UploadProgress::new`]).
    pub fn track_with(&mut self, progress: Arc<UploadProgress>) {
        let body = std::mem::replace(self, RequestBody::Buffered(BufferedBody::default()));
        *self = RequestBody::Tracked {
            body: Box::new(body),
            progress,
        };
    }
}

// === impl UploadProgress ===

impl UploadProgress {
    /// The progress of a body not read yet, for [`RequestBody::track_with`];
    /// `quiet_is_stall` as for [`RequestBody::track`].
    pub fn new(quiet_is_stall: bool) -> Arc<UploadProgress> {
        Arc::new(UploadProgress {
            state: AtomicU8::new(NOT_STARTED),
            quiet_is_stall,
            tracked_at: tokio::time::Instant::now(),
            waiting_since: AtomicU64::new(0),
            client_waited: AtomicU64::new(0),
            after_answer: AtomicU8::new(AFTER_ANSWER_GO_ON),
            after_answer_waker: AtomicWaker::new(),
            waited_before_deadline: AtomicU64::new(0),
            deadline_movable: AtomicBool::new(false),
        })
    }

    /// The progress of the same body sent again (a `stableFallback`
    /// retry), not read yet, carrying what the client took so far.
    pub fn afresh(&self) -> Arc<UploadProgress> {
        let again = UploadProgress::new(self.quiet_is_stall);
        again.add_client_wait(self.client_waited());
        again
    }

    /// How long the request has waited on its client so far: the upload's
    /// silences, the one going on included, and what
    /// [`UploadProgress::add_client_wait`] added.
    pub fn client_waited(&self) -> Duration {
        let mut micros = self.client_waited.load(Ordering::Acquire);
        if self.state.load(Ordering::Acquire) == WAITING_ON_CLIENT {
            let now = micros_since(self.tracked_at);
            micros += now.saturating_sub(self.waiting_since.load(Ordering::Acquire));
        }
        Duration::from_micros(micros)
    }

    /// Adds `waited` to the time the request waited on its client: the
    /// read of a body kept whole before it was sent.
    pub fn add_client_wait(&self, waited: Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.client_waited.fetch_add(micros, Ordering::AcqRel);
    }

    /// Marks the start of an attempt's deadline: the waits on the client
    /// from now on may move it (see [`UploadProgress::answer_deadline`]),
    /// when `movable`: not for a deadline that is a gRPC client's own
    /// (`grpc-timeout`), which its client keeps.
    pub fn start_answer_clock(&self, movable: bool) {
        let waited = u64::try_from(self.client_waited().as_micros()).unwrap_or(u64::MAX);
        self.waited_before_deadline.store(waited, Ordering::Release);
        self.deadline_movable.store(movable, Ordering::Release);
    }

    /// When the answer to a request whose deadline is `deadline` must
    /// come by: once the upload has ended, the deadline moved later by
    /// the time the request waited on its client since the deadline was
    /// set, so that a client that sends its body slowly (just before the
    /// deadline, say) does not use up its upstream's time and make a
    /// healthy role time out; the upload itself stays bounded by
    /// `deadline`. Pass the deadline as set, never one already moved.
    pub fn answer_deadline(&self, deadline: tokio::time::Instant) -> tokio::time::Instant {
        if !(self.deadline_movable.load(Ordering::Acquire) && self.ended()) {
            return deadline;
        }
        let before = self.waited_before_deadline.load(Ordering::Acquire);
        deadline
            + self
                .client_waited()
                .saturating_sub(Duration::from_micros(before))
    }

    /// Whether the body has been read at all.
    pub fn started(&self) -> bool {
        self.state.load(Ordering::Acquire) != NOT_STARTED
    }

    /// Whether the body has been read to its end.
    pub fn ended(&self) -> bool {
        self.state.load(Ordering::Acquire) == ENDED
    }

    /// Whether the body's last read found nothing yet, for a body whose
    /// quiet is a stall: all that came of it was taken, and the upload
    /// waits on the client. (hyper reads the
    /// body only while it has room to buffer what it sends, over HTTP/2
    /// only while the stream's window is open, so an upstream that stopped
    /// reading leaves this false, unless the client is slower still than
    /// the socket buffers between them fill. Between two pieces of a body
    /// that came at once, it may be true for the moment hyper's server
    /// takes to hand over the second.)
    pub fn waiting_on_client(&self) -> bool {
        self.quiet_is_stall && self.state.load(Ordering::Acquire) == WAITING_ON_CLIENT
    }

    /// Whether the body could not be read: the client closed or reset its
    /// connection inside it, or broke its framing.
    pub fn client_failed(&self) -> bool {
        self.client_failure().is_some()
    }

    /// How the body could not be read, if it could not: it ended before
    /// its declared length, its framing broke, or its client reset the
    /// connection (abandoned).
    pub fn client_failure(&self) -> Option<ClientErrorKind> {
        match self.state.load(Ordering::Acquire) {
            CLIENT_CUT => Some(ClientErrorKind::IncompleteBody),
            CLIENT_FAILED => Some(ClientErrorKind::Framing),
            CLIENT_RESET => Some(ClientErrorKind::Abandoned),
            _ => None,
        }
    }

    /// Since when the upload has waited on its client, when it does (see
    /// [`UploadProgress::waiting_on_client`]): the start of the client's
    /// silence as the upload sees it.
    pub fn waiting_on_client_since(&self) -> Option<tokio::time::Instant> {
        if !self.waiting_on_client() {
            return None;
        }
        let since = Duration::from_micros(self.waiting_since.load(Ordering::Acquire));
        Some(self.tracked_at + since)
    }

    /// When to check again whether the client has left the upload silent
    /// for `idle`: when its current silence reaches `idle`, or `idle` from
    /// now when it is not silent (a silence may begin meanwhile).
    fn next_check(&self, idle: Duration) -> tokio::time::Instant {
        self.waiting_on_client_since()
            .unwrap_or_else(tokio::time::Instant::now)
            + idle
    }

    /// Whether the upload has waited on its client for `idle` or longer.
    fn silent_for(&self, idle: Duration) -> bool {
        self.waiting_on_client_since()
            .is_some_and(|since| since.elapsed() >= idle)
    }

    /// Notes what a read of the body gave; a read that finds the body
    /// waiting after it gave data (or before it began) starts the client's
    /// silence.
    fn note(&self, state: u8) {
        let was_waiting = self.state.load(Ordering::Relaxed) == WAITING_ON_CLIENT;
        if state == WAITING_ON_CLIENT && !was_waiting {
            self.waiting_since
                .store(micros_since(self.tracked_at), Ordering::Release);
        } else if state != WAITING_ON_CLIENT && was_waiting {
            // The silence ended: added once the state says so, so that
            // `client_waited` may miss it for a moment but never counts it
            // twice.
            let silence = micros_since(self.tracked_at)
                .saturating_sub(self.waiting_since.load(Ordering::Relaxed));
            self.state.store(state, Ordering::Release);
            self.client_waited.fetch_add(silence, Ordering::AcqRel);
            return;
        }
        self.state.store(state, Ordering::Release);
    }

    /// The answer's side is done and the upstream accepted the request
    /// (a `2xx`) before reading all of it: an upload towards HTTP/2 goes on
    /// until the deadline, or until the client leaves it silent for the
    /// idle timeout, as an HTTP/1 connection's does (`Sender::release_until`).
    pub fn bound_after_answer(&self) {
        self.tell_after_answer(AFTER_ANSWER_BOUNDED);
    }

    /// The answer's side is done without accepting the rest (a refusal, an
    /// answer cut short, a client that left): an upload towards HTTP/2
    /// stops, its stream reset, as an HTTP/1 connection would be closed.
    pub fn stop_after_answer(&self) {
        self.tell_after_answer(AFTER_ANSWER_STOP);
    }

    fn tell_after_answer(&self, state: u8) {
        // A stop is never turned back into a bound.
        if self.after_answer.fetch_max(state, Ordering::AcqRel) < state {
            self.after_answer_waker.wake();
        }
    }
}

impl From<ClientBody> for RequestBody {
    fn from(body: ClientBody) -> Self {
        RequestBody::Streamed(body)
    }
}

/// A client's request body as hyper reads it, noting how it ended when
/// the connection asked (see [`BodyEnding`]): only chunked bodies are
/// watched, and hyper ends those with `None`, never with a frame after
/// which `is_end_stream` holds.
#[derive(Debug)]
pub struct ClientBody {
    /// The body itself.
    body: Incoming,
    /// Where its end is noted, if the connection asked.
    end: Option<Arc<BodyEnding>>,
}

impl ClientBody {
    /// `body`, its end noted nowhere.
    pub fn new(body: Incoming) -> Self {
        ClientBody { body, end: None }
    }

    /// `body`, its end noted in `end`.
    pub fn watched(body: Incoming, end: Arc<BodyEnding>) -> Self {
        ClientBody {
            body,
            end: Some(end),
        }
    }
}

/// `req` with its body as a [`ClientBody`]; for an HTTP/1 chunked body,
/// also where the body notes how it ended, for the connection to ask when
/// it answers (see [`BodyEnding`]).
pub fn watching_chunked_end(
    req: http::Request<Incoming>,
) -> (http::Request<ClientBody>, Option<Arc<BodyEnding>>) {
    let chunked_http1 = req.version() != http::Version::HTTP_2
        && req.headers().contains_key(http::header::TRANSFER_ENCODING);
    if !chunked_http1 {
        return (req.map(ClientBody::new), None);
    }
    let end = Arc::new(BodyEnding::default());
    let watched = Arc::clone(&end);
    (
        req.map(|body| ClientBody::watched(body, watched)),
        Some(end),
    )
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some(end) = &this.end {
            match &polled {
                Poll::Ready(None) => end.note(BodyEnding::PLAIN),
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                    end.note(BodyEnding::DOUBTFUL);
                }
                Poll::Ready(Some(Err(_))) => end.note(BodyEnding::DOUBTFUL),
                Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How a client's request body ended, as far as it was read: whether what
/// follows it on the connection can be trusted to start at the right place.
/// hyper's HTTP/1 server reads a chunked body's trailer section until a
/// CRLF CRLF, taking a bare LF inside it for part of a field, where a
/// reader that ends lines at a bare LF (RFC 9112 section 2.2 allows it)
/// sees the section end and another request begin. A body read to its last
/// chunk with no trailer section leaves no such doubt.
#[derive(Debug, Default)]
pub struct BodyEnding(AtomicU8);

impl BodyEnding {
    /// Not read to its end yet.
    const OPEN: u8 = 0;
    /// Read to its end, without trailers.
    const PLAIN: u8 = 1;
    /// Trailers came, or the body broke: what follows may be misread.
    /// Never turned back.
    const DOUBTFUL: u8 = 2;

    /// Whether the body was read to its end without trailers or errors.
    pub fn ended_plainly(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::PLAIN
    }

    fn note(&self, state: u8) {
        debug_assert!(state != Self::OPEN);
        self.0.fetch_max(state, Ordering::AcqRel);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        // Trailers lose the fields no trailer may carry (a tracked body's
        // twice, which changes nothing the second time).
        let polled = match self.get_mut() {
            RequestBody::Streamed(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Buffered(body) => Poll::Ready(body.next_frame().map(Ok)),
            RequestBody::Prefixed { head, rest } => match head.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => Pin::new(rest).poll_frame(cx),
            },
            RequestBody::Tracked { body, progress } => {
                let polled = Pin::new(body.as_mut()).poll_frame(cx);
                // hyper's client polls no further once a declared length is
                // met or trailers came, so the end is noted by those too,
                // not only by the last poll.
                let state = match &polled {
                    Poll::Ready(None) => ENDED,
                    Poll::Ready(Some(Ok(frame))) => {
                        if frame.is_trailers()
                            || body.is_end_stream()
                            || body.size_hint().exact() == Some(0)
                        {
                            ENDED
                        } else {
                            SENDING
                        }
                    }
                    Poll::Pending => WAITING_ON_CLIENT,
                    Poll::Ready(Some(Err(error)))
                        if crate::error::ends_before_its_length(error) =>
                    {
                        CLIENT_CUT
                    }
                    Poll::Ready(Some(Err(error))) if crate::error::is_reset_error(error) => {
                        CLIENT_RESET
                    }
                    Poll::Ready(Some(Err(_))) => CLIENT_FAILED,
                };
                progress.note(state);
                polled
            }
        };
        crate::forward::forwardable_polled(polled)
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streamed(body) => body.is_end_stream(),
            RequestBody::Buffered(body) => body.data.is_none() && body.trailers.is_none(),
            RequestBody::Prefixed { head, rest } => head.is_none() && rest.is_end_stream(),
            RequestBody::Tracked { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streamed(body) => body.size_hint(),
            RequestBody::Buffered(body) => {
                SizeHint::with_exact(body.data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Prefixed { head, rest } => {
                let head = head.as_ref().map_or(0, |d| d.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(head));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(head));
                }
                hint
            }
            RequestBody::Tracked { body, .. } => body.size_hint(),
        }
    }
}

/// A request body on its way to an HTTP/2 upstream. hyper sends it from a
/// task of its own, which goes on after the answer's head; a tracked upload
/// is ended as an HTTP/1 connection's would be once the answer's side is
/// done with the exchange (see [`UploadProgress::bound_after_answer`] and
/// [`UploadProgress::stop_after_answer`]): its next read is an error, on
/// which hyper resets the stream.
///
/// hyper reads the body only while the stream's window is open: an
/// upstream that stops reading after its answer holds the rest of the
/// upload back past these bounds, until its connection ends.
#[derive(Debug)]
pub struct H2Upload {
    /// The body itself.
    body: RequestBody,
    /// Its bounds after the answer, when it is tracked.
    bounds: Option<Box<UploadBounds>>,
}

/// The bounds of an [`H2Upload`] after its answer.
#[derive(Debug)]
struct UploadBounds {
    /// The upload's progress, and what the answer's side asks of it.
    progress: Arc<UploadProgress>,
    /// The most the client may leave the upload silent.
    idle: Duration,
    /// The request's deadline.
    deadline: tokio::time::Instant,
    /// When to look at the bounds again while the body waits.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Why an [`H2Upload`] was ended after its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UploadEnd {
    /// The answer's side asked for no more of it.
    Stopped,
    /// The upload passed one of its bounds.
    Passed(UploadBound),
}

/// The error an [`H2Upload`] ends with: why, and the code its stream is
/// reset with, `CANCEL` (hyper takes the code from an `h2::Error` among
/// the error's sources, `INTERNAL_ERROR` without one).
#[derive(Debug)]
pub struct UploadEnded {
    /// Why the upload was ended.
    why: UploadEnd,
    /// The reset's code, as hyper looks for it.
    reset: h2::Error,
}

impl UploadEnded {
    fn new(why: UploadEnd) -> UploadEnded {
        UploadEnded {
            why,
            reset: h2::Error::from(h2::Reason::CANCEL),
        }
    }
}

impl std::fmt::Display for UploadEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.why {
            UploadEnd::Stopped => "the upload was stopped: its answer refused it or was cut short",
            UploadEnd::Passed(UploadBound::Deadline) => {
                "the request's deadline passed before the upload ended"
            }
            UploadEnd::Passed(UploadBound::ClientSilent) => {
                "the client left the upload silent for the idle timeout"
            }
        })
    }
}

impl std::error::Error for UploadEnded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reset)
    }
}

// === impl H2Upload ===

impl H2Upload {
    /// `body`, ended after its answer as `progress` is told to (when it is
    /// tracked): at `deadline`, or after `idle` of the client's silence.
    pub fn new(
        body: RequestBody,
        progress: Option<Arc<UploadProgress>>,
        idle: Duration,
        deadline: tokio::time::Instant,
    ) -> H2Upload {
        H2Upload {
            body,
            bounds: progress.map(|progress| {
                Box::new(UploadBounds {
                    progress,
                    idle,
                    deadline,
                    timer: None,
                })
            }),
        }
    }
}

impl Body for H2Upload {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(bounds) = this.bounds.as_deref_mut()
            && let Some(end) = bounds.end(cx)
        {
            return Poll::Ready(Some(Err(Box::new(UploadEnded::new(end)))));
        }
        // A client's broken body stays hyper's own error, boxed, so the
        // exchange's error still names it as its source.
        let polled = Pin::new(&mut this.body)
            .poll_frame(cx)
            .map(|frame| frame.map(|frame| frame.map_err(Into::into)));
        if polled.is_pending()
            && let Some(bounds) = this.bounds.as_deref_mut()
            && bounds.wait(cx)
        {
            // A bound passed while the body was read: looked at again now.
            cx.waker().wake_by_ref();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// === impl UploadBounds ===

impl UploadBounds {
    /// Whether the upload must end now; registers the task for news of
    /// the answer's side.
    fn end(&self, cx: &Context<'_>) -> Option<UploadEnd> {
        self.progress.after_answer_waker.register(cx.waker());
        match self.progress.after_answer.load(Ordering::Acquire) {
            AFTER_ANSWER_STOP => Some(UploadEnd::Stopped),
            AFTER_ANSWER_BOUNDED => {
                passed_bound(Some(&self.progress), self.idle, self.deadline).map(UploadEnd::Passed)
            }
            _ => None,
        }
    }

    /// While the upload is bounded and its body waits, sets the timer for
    /// the next look at the bounds; true when that time has come already.
    fn wait(&mut self, cx: &mut Context<'_>) -> bool {
        if self.progress.after_answer.load(Ordering::Acquire) != AFTER_ANSWER_BOUNDED {
            return false;
        }
        let at = next_look(Some(&self.progress), self.idle, self.deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        timer.as_mut().reset(at);
        timer.as_mut().poll(cx).is_ready()
    }
}

// === impl BufferedBody ===

impl BufferedBody {
    /// The body's size in bytes.
    pub fn len(&self) -> usize {
        self.data.as_ref().map_or(0, Bytes::len)
    }

    /// True for a body without data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A body of `data` alone.
    #[cfg(test)]
    pub(crate) fn of(data: Bytes) -> BufferedBody {
        BufferedBody {
            data: Some(data),
            trailers: None,
        }
    }

    fn next_frame(&mut self) -> Option<Frame<Bytes>> {
        if let Some(data) = self.data.take() {
            return Some(Frame::data(data));
        }
        self.trailers.take().map(Frame::trailers)
    }
}

/// What ended a wait of [`within_upload_bounds`] before its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadBound {
    /// The deadline passed.
    Deadline,
    /// The upload waited on its client for the idle timeout.
    ClientSilent,
}

/// Runs `work` until it ends, `deadline` passes, or `upload` (until it
/// ends) has waited on its client for `idle`. Without an upload it is a
/// plain wait for the deadline, one timer.
///
/// # Errors
/// The bound that ended the wait; the deadline when both have passed.
pub async fn within_upload_bounds<F: Future>(
    work: F,
    upload: Option<&UploadProgress>,
    idle: Duration,
    deadline: tokio::time::Instant,
) -> Result<F::Output, UploadBound> {
    let mut work = std::pin::pin!(work);
    loop {
        let until = next_look(upload, idle, deadline);
        if let Ok(out) = tokio::time::timeout_at(until, work.as_mut()).await {
            return Ok(out);
        }
        if let Some(bound) = passed_bound(upload, idle, deadline) {
            return Err(bound);
        }
    }
}

/// Microseconds from `from` to now.
fn micros_since(from: tokio::time::Instant) -> u64 {
    u64::try_from(from.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The bound passed, if any: `deadline` (once the upload ended, moved by
/// [`UploadProgress::answer_deadline`]), or `idle` of the client's silence
/// in `upload`; the deadline when both.
fn passed_bound(
    upload: Option<&UploadProgress>,
    idle: Duration,
    deadline: tokio::time::Instant,
) -> Option<UploadBound> {
    let deadline = upload.map_or(deadline, |u| u.answer_deadline(deadline));
    if tokio::time::Instant::now() >= deadline {
        Some(UploadBound::Deadline)
    } else if upload.is_some_and(|u| u.silent_for(idle)) {
        Some(UploadBound::ClientSilent)
    } else {
        None
    }
}

/// When to look at the bounds again: at `deadline` (once the upload ended,
/// moved by [`UploadProgress::answer_deadline`]), or sooner when the
/// client's silence in `upload` (until it ends) may reach `idle` first.
fn next_look(
    upload: Option<&UploadProgress>,
    idle: Duration,
    deadline: tokio::time::Instant,
) -> tokio::time::Instant {
    match upload {
        Some(u) if !u.ended() => u.next_check(idle).min(deadline),
        Some(u) => u.answer_deadline(deadline),
        None => deadline,
    }
}

/// Why [`keep`] could not read a body.
#[derive(Debug)]
pub enum KeepError {
    /// The client's body broke (bad framing, cut short).
    Broken(hyper::Error),
    /// Nothing more of the body came for the time [`KeepGap::Stall`] gave.
    Stalled,
}

/// How long [`keep`] waits for each next part of a body, and what a longer
/// quiet means.
#[derive(Debug, Clone, Copy)]
pub enum KeepGap {
    /// The client has stalled: [`KeepError::Stalled`].
    Stall(Duration),
    /// A gRPC call's body: quiet for this long between its messages, it
    /// streams on, with what was read in front, and is not kept: a
    /// streaming call's client may rightly wait for answers before it
    /// sends more, where a unary call's message follows its head at once.
    /// Inside a message (its length prefix read, not all of it yet) the
    /// rest is waited for, however it is spread over the network's round
    /// trips.
    Stream(Duration),
}

/// How long a gRPC call's body may be quiet before a message, or after one
/// before its end, and still be kept for a retry: far longer than a unary
/// call's message takes to follow its head, short enough that a streaming
/// call whose client waits for an answer first is not held up for long.
pub const GRPC_KEEP_GAP: Duration = Duration::from_millis(50);

/// Where a gRPC body's bytes stand in its length-prefixed messages (a flag
/// byte, a 4-byte big-endian length, then the message).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct GrpcMessages {
    /// Bytes of the current message's 5-byte prefix read so far.
    prefix_read: usize,
    /// The length read so far from the prefix.
    length: u64,
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl GrpcMessages {
    /// Reads `data`, the body's next bytes.
    fn read(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let taken =
                    usize::try_from(self.remaining).map_or(data.len(), |r| r.min(data.len()));
                self.remaining -= taken as u64;
                data = &data[taken..];
                continue;
            }
            // A prefix byte: the flag first, then four of length.
            if self.prefix_read > 0 {
                self.length = (self.length << 8) | u64::from(data[0]);
            }
            self.prefix_read += 1;
            data = &data[1..];
            if self.prefix_read == 5 {
                self.remaining = self.length;
                self.prefix_read = 0;
                self.length = 0;
            }
        }
    }

    /// Whether the bytes read end between two messages.
    fn between_messages(&self) -> bool {
        self.prefix_read == 0 && self.remaining == 0
    }
}

/// Reads `body` to its end when it fits in `limit` bytes, waiting for each
/// part of it as `gap` says. A body whose declared length is above the
/// limit is not read at all; one found larger while reading, or quiet for
/// a [`KeepGap::Stream`] gap, keeps what was read in front of the rest.
/// Either is [`Kept::Once`], to be sent once.
///
/// # Errors
/// The client's body broke, or stalled for a [`KeepGap::Stall`] gap.
pub async fn keep(mut body: ClientBody, limit: u64, gap: KeepGap) -> Result<Kept, KeepError> {
    if body.is_end_stream() {
        return Ok(Kept::Whole(BufferedBody::default()));
    }
    if body.size_hint().lower() > limit {
        return Ok(Kept::Once(RequestBody::Streamed(body)));
    }
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut trailers = None;
    let mut length: u64 = 0;
    let mut messages = GrpcMessages::default();
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let next = match gap {
            KeepGap::Stall(wait) => tokio::time::timeout(wait, next)
                .await
                .map_err(|_| KeepError::Stalled)?,
            KeepGap::Stream(wait) if messages.between_messages() => {
                match tokio::time::timeout(wait, next).await {
                    Ok(next) => next,
                    // Trailers end a body: none were read.
                    Err(_) => return Ok(sent_once(first, joined, body)),
                }
            }
            // Bounded by the caller's deadline, as the call would be.
            KeepGap::Stream(_) => next.await,
        };
        let Some(frame) = next else {
            break;
        };
        let frame = match frame.map_err(KeepError::Broken)?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        length = length.saturating_add(frame.len() as u64);
        if matches!(gap, KeepGap::Stream(_)) {
            messages.read(&frame);
        }
        // A single frame is kept as it is; only a second one is copied.
        match (&mut first, &mut joined) {
            (None, None) => first = Some(frame),
            (Some(_), None) => {
                let mut all = BytesMut::from(first.take().unwrap_or_default());
                all.extend_from_slice(&frame);
                joined = Some(all);
            }
            (_, Some(all)) => all.extend_from_slice(&frame),
        }
        if length > limit {
            return Ok(sent_once(first, joined, body));
        }
    }
    Ok(Kept::Whole(BufferedBody {
        data: read_so_far(first, joined),
        trailers,
    }))
}

/// What [`keep`] read of a body: its one piece as it came, or the pieces
/// joined.
fn read_so_far(first: Option<Bytes>, joined: Option<BytesMut>) -> Option<Bytes> {
    joined.map(BytesMut::freeze).or(first)
}

/// A body [`keep`] gives up keeping: what it read, in front of the rest.
fn sent_once(first: Option<Bytes>, joined: Option<BytesMut>, rest: ClientBody) -> Kept {
    Kept::Once(RequestBody::Prefixed {
        head: read_so_far(first, joined),
        rest,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{ENDED, GrpcMessages, SENDING, UploadProgress, WAITING_ON_CLIENT};

    /// What a silence's measure may be off by, either way: it is the
    /// difference of two readings of the clock in whole microseconds.
    const GRAIN: Duration = Duration::from_micros(1);

    /// Notes a silence of the client of at least `at_least`: returns the
    /// most it can have been measured as.
    async fn silence(progress: &UploadProgress, at_least: Duration) -> Duration {
        let before = Instant::now();
        progress.note(WAITING_ON_CLIENT);
        tokio::time::sleep(at_least).await;
        progress.note(SENDING);
        before.elapsed() + GRAIN
    }

    #[tokio::test]
    async fn the_client_waits_are_its_silences_and_what_was_added() {
        const SILENCE: Duration = Duration::from_millis(30);
        let progress = UploadProgress::new(true);
        progress.note(SENDING);
        let first = silence(&progress, SILENCE).await;
        // Time the body gives data is not the client's wait.
        tokio::time::sleep(SILENCE * 3).await;
        let waited = progress.client_waited();
        assert!(
            waited >= SILENCE - GRAIN && waited <= first,
            "one silence of {SILENCE:?} to {first:?} measured as {waited:?}"
        );
        let second = silence(&progress, SILENCE).await;
        progress.note(ENDED);
        tokio::time::sleep(SILENCE).await;
        let waited = progress.client_waited();
        assert!(
            waited >= (SILENCE - GRAIN) * 2 && waited <= first + second,
            "two silences of {SILENCE:?} to {:?} measured as {waited:?}",
            first + second
        );
        // A silence going on counts as far as it went.
        let before = Instant::now();
        progress.note(WAITING_ON_CLIENT);
        tokio::time::sleep(SILENCE).await;
        let waited_now = progress.client_waited();
        assert!(
            waited_now >= waited + SILENCE - GRAIN
                && waited_now <= waited + before.elapsed() + GRAIN,
            "a silence going on of {SILENCE:?} measured as {:?}",
            waited_now - waited
        );
        progress.add_client_wait(Duration::from_secs(5));
        assert!(progress.client_waited() >= waited_now + Duration::from_secs(5));
    }

    /// A message of `n` bytes with its prefix.
    fn message(n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&u32::try_from(n).expect("small").to_be_bytes());
        bytes.resize(5 + n, b'x');
        bytes
    }

    #[test]
    fn message_boundaries_are_found_however_the_bytes_are_cut() {
        let mut body = message(300);
        body.extend(message(0));
        body.extend(message(70_000));
        let ends = [305, 310, body.len()];
        for cut in [1, 2, 3, 5, 7, 64, 1000, body.len()] {
            let mut messages = GrpcMessages::default();
            assert!(messages.between_messages());
            let mut read = 0;
            for piece in body.chunks(cut) {
                messages.read(piece);
                read += piece.len();
                assert_eq!(
                    messages.between_messages(),
                    ends.contains(&read),
                    "pieces of {cut}, {read} bytes read"
                );
            }
        }
    }

    #[test]
    fn a_length_past_memory_is_only_waited_for() {
        let mut messages = GrpcMessages::default();
        messages.read(&[1, 0xff, 0xff, 0xff, 0xff, b'x']);
        assert_eq!(messages.remaining, u64::from(u32::MAX) - 1);
        assert!(!messages.between_messages());
    }
}
