//! The response body the proxy sends downstream: an upstream body streamed
//! through (returning its connection to the pool once fully read), or a short
//! body made by weir itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::{InFlight, Sender};

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
}

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

    /// Streams `body` downstream; `sender` goes back to the pool at its end.
    pub fn upstream(body: Incoming, sender: Option<Sender>, in_flight: InFlight) -> ProxyBody {
        ProxyBody::Upstream(UpstreamBody {
            body,
            sender,
            in_flight,
        })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(up) => Pin::new(&mut up.body).poll_frame(cx),
            ProxyBody::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(up) => up.body.is_end_stream(),
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

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Only a connection whose response was read to the end may carry the
        // next request; one dropped mid-body is closed with its sender.
        if let Some(sender) = self.sender.take() {
            if self.body.is_end_stream() {
                self.in_flight.endpoint().put_idle(sender);
            }
        }
    }
}
