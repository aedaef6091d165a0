//! The response body the proxy sends downstream: an upstream body streamed
//! through (returning its connection to the pool once fully read), or a short
//! body made by weir itself.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::upstream::{InFlight, Sender};

/// Errors while streaming a body downstream.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A downstream response body.
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from an upstream.
    Upstream(UpstreamBody),
    /// Made by weir (errors, 404); `None` once sent.
    Local(Option<Bytes>),
}

/// An upstream response body and the connection it arrives on.
#[derive(Debug)]
pub struct UpstreamBody {
    body: Incoming,
    /// Returned to the endpoint's pool when the body was read to its end.
    sender: Option<Sender>,
    in_flight: InFlight,
    /// The body ended cleanly (hyper's `is_end_stream` is only true for a
    /// known length, so chunked bodies are tracked here).
    done: bool,
    /// Longest wait for the next frame before the body is cut.
    idle_timeout: Duration,
    /// Armed while waiting for a frame; allocated only when one is late.
    idle: Option<Pin<Box<Sleep>>>,
    /// A frame read before the head was answered, sent first.
    first: Option<Frame<Bytes>>,
}

/// The upstream sent nothing for longer than the route's request timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream body stalled for {0:?}")]
pub struct BodyStalled(Duration);

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
    /// in-flight endpoint at its end. A wait longer than `idle_timeout` for
    /// the next frame ends the body with an error.
    pub fn upstream(
        body: Incoming,
        sender: Sender,
        in_flight: InFlight,
        idle_timeout: Duration,
    ) -> ProxyBody {
        ProxyBody::Upstream(UpstreamBody {
            body,
            sender: Some(sender),
            in_flight,
            done: false,
            idle_timeout,
            idle: None,
            first: None,
        })
    }

    /// Puts back the first frame of an upstream body, read before answering
    /// to check the body's framing; `None` when the body had already ended.
    #[must_use]
    pub fn with_first_frame(mut self, first: Option<Frame<Bytes>>) -> ProxyBody {
        if let ProxyBody::Upstream(up) = &mut self {
            match first {
                Some(frame) => up.first = Some(frame),
                None => up.done = true,
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
        match self.get_mut() {
            ProxyBody::Upstream(up) => up.poll_frame(cx),
            ProxyBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(up) => up.first.is_none() && (up.done || up.body.is_end_stream()),
            ProxyBody::Local(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(up) => up.body.size_hint(),
            ProxyBody::Local(Some(data)) => SizeHint::with_exact(data.len() as u64),
            ProxyBody::Local(None) => SizeHint::with_exact(0),
        }
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if self.body.is_end_stream() {
                    self.done = true;
                }
                if let Some(idle) = self.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + self.idle_timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Pending => {
                let timeout = self.idle_timeout;
                let idle = self
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_ready() {
                    tracing::debug!(endpoint = %self.in_flight.endpoint().addr(), ?timeout, "upstream body stalled");
                    // The connection is mid-response: never reuse it.
                    self.sender = None;
                    return Poll::Ready(Some(Err(BodyStalled(timeout).into())));
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Only a connection whose response was read to the end may carry the
        // next request; one dropped mid-body is closed with its sender.
        if let Some(sender) = self.sender.take() {
            if self.done || self.body.is_end_stream() {
                self.in_flight.endpoint().put_idle(sender);
            }
        }
    }
}
