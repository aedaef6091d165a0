//! HTTP/2 to an upstream (`h2c` or `h2`): one multiplexed connection per
//! endpoint, opened on first use and again after it closes (a GOAWAY, an
//! error, the peer going away). The peer's limit on concurrent streams is
//! kept by hyper's client, which holds a request back until a stream is
//! free.
//!
//! A request takes the connection with one atomic load and a clone of the
//! sender (reference counts, no allocation); only opening a connection takes
//! a lock, so concurrent first requests open one connection, not many.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2;

use crate::request_body::RequestBody;

/// The sending half of an HTTP/2 upstream connection.
pub type H2Sender = http2::SendRequest<RequestBody>;

/// The shared HTTP/2 connection of one endpoint.
#[derive(Debug, Default)]
pub struct H2Connection {
    current: ArcSwapOption<H2Sender>,
    opening: tokio::sync::Mutex<()>,
}

// === impl H2Connection ===

impl H2Connection {
    /// The open connection, if any.
    pub fn get(&self) -> Option<H2Sender> {
        let current = self.current.load();
        current
            .as_deref()
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    /// The open connection, or one opened by `open` (once, however many
    /// requests wait for it).
    ///
    /// # Errors
    /// `open`'s error.
    pub async fn get_or_open<F, E>(&self, open: F) -> Result<(H2Sender, bool), E>
    where
        F: std::future::Future<Output = Result<H2Sender, E>>,
    {
        if let Some(sender) = self.get() {
            return Ok((sender, false));
        }
        let _opening = self.opening.lock().await;
        // Another request may have opened it while this one waited.
        if let Some(sender) = self.get() {
            return Ok((sender, false));
        }
        let sender = open.await?;
        self.current.store(Some(Arc::new(sender.clone())));
        Ok((sender, true))
    }

    /// Forgets the connection: the next request opens a new one. Used when
    /// the connection refused a request it was handed (a GOAWAY raced it).
    pub fn reset(&self) {
        self.current.store(None);
    }
}
