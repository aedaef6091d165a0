//! `GET /api/v1/events`: control's live events as Server-Sent Events (see
//! [`crate::controller::events`] for what is sent and when).
//!
//! A stream opens with a `snapshot` event (every route's status, the rate
//! samples of the last minutes, the recent events, and what the caller may
//! do), then forwards every event as it is sent, with a keep-alive comment
//! when nothing happens. Each stream has its own task between the broadcast
//! channel and the connection: a reader that falls more than
//! [`EVENT_BUFFER`](crate::controller::events::EVENT_BUFFER) events behind
//! gets a `lagged` event and its stream ends (it reconnects for a fresh
//! snapshot), and one that takes no bytes for [`STALLED`] is dropped.
//! Neither slows the control loop or another reader.
//!
//! The token is checked when a stream opens. A reload may change the
//! tokens, so every stream ends after an applied `reload` event: the page
//! reconnects at once, showing its token again (or asking for a new one).
//!
//! A stream holds no admin request slot once its head is sent (it would
//! hold one for as long as a page stays open); streams have their own
//! limit, [`MAX_EVENT_STREAMS`].

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};

use super::{Access, AdminState, cluster_commands, refusal};
use crate::controller::events::Event;
use crate::messages::Refusal;

/// Event streams open at once; more are refused with 503.
pub const MAX_EVENT_STREAMS: usize = 64;
/// How often a stream with nothing to say sends a comment, so that proxies
/// and browsers keep it open and a closed connection is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a reader may take no bytes before its stream is dropped.
pub const STALLED: Duration = Duration::from_secs(30);
/// Frames held per stream between its task and its connection.
const STREAM_BUFFER: usize = 32;

/// The body of an admin answer: whole, or an event stream.
#[derive(Debug)]
pub enum AdminBody {
    /// An answer known at once.
    Full(Full<Bytes>),
    /// Server-Sent Events frames, as a stream's task sends them.
    Events(mpsc::Receiver<Bytes>),
}

/// Opens an event stream for a caller who may do `access`.
pub(super) async fn answer(state: &AdminState, access: Access) -> Response<AdminBody> {
    let Ok(slot) = Arc::clone(&state.event_streams).try_acquire_owned() else {
        return refusal(&Refusal::Busy {
            limit: MAX_EVENT_STREAMS,
        })
        .map(AdminBody::from);
    };
    let now = state.process.now_ms();
    // Subscribed under the control lock that every event is sent under,
    // with the state read under it too: nothing falls between the two.
    let (events, mut statuses, tokens, mut snapshot) = {
        let control = state.process.control.lock().await;
        let admin = &control.config().admin;
        let tokens = admin.reader_token.is_some() || admin.writer_token.is_some();
        let statuses = control.statuses(now);
        let snapshot = control.events_snapshot(now);
        (control.events.subscribe(), statuses, tokens, snapshot)
    };
    if let Some(cluster) = state.process.cluster.get() {
        cluster_commands::annotate(cluster, &mut statuses);
    }
    if let Some(fields) = snapshot.as_object_mut() {
        fields.insert("routes".to_owned(), json!(statuses));
        fields.insert(
            "access".to_owned(),
            Value::from(match access {
                Access::Read => "read",
                Access::Write => "write",
            }),
        );
        fields.insert("tokens".to_owned(), Value::from(tokens));
    }
    let (frames, body) = mpsc::channel(STREAM_BUFFER);
    let first = Event::unnumbered("snapshot", &snapshot);
    tokio::spawn(forward(events, frames, first, slot));
    let mut response = Response::new(AdminBody::Events(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    // Tells nginx-like proxies in front not to buffer the stream.
    headers.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// Forwards the events of `events` to one stream's `frames`, after its
/// `first` frame, until the reader goes, lags or stalls.
async fn forward(
    mut events: broadcast::Receiver<Arc<Event>>,
    frames: mpsc::Sender<Bytes>,
    first: Bytes,
    _slot: OwnedSemaphorePermit,
) {
    if frames.send(first).await.is_err() {
        return;
    }
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        let mut last = false;
        let frame = tokio::select! {
            () = frames.closed() => return,
            _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            received = events.recv() => match received {
                Ok(event) => {
                    last = event.name == "reload" && event.data["applied"] == true;
                    event.frame.clone()
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "an event stream lagged; ending it");
                    let lagged = Event::unnumbered("lagged", &json!({ "skipped": skipped }));
                    let _ = frames.try_send(lagged);
                    return;
                }
                Err(RecvError::Closed) => return,
            },
        };
        match tokio::time::timeout(STALLED, frames.send(frame)).await {
            Ok(Ok(())) if last => return,
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!("an event stream took nothing for {STALLED:?}; dropping it");
                return;
            }
        }
    }
}

// === impl AdminBody ===

impl From<Full<Bytes>> for AdminBody {
    fn from(body: Full<Bytes>) -> Self {
        AdminBody::Full(body)
    }
}

impl Body for AdminBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AdminBody::Full(full) => Pin::new(full).poll_frame(cx),
            AdminBody::Events(frames) => frames
                .poll_recv(cx)
                .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AdminBody::Full(full) => full.is_end_stream(),
            AdminBody::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AdminBody::Full(full) => full.size_hint(),
            AdminBody::Events(_) => SizeHint::default(),
        }
    }
}
