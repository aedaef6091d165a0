//! Upstream endpoints: pooled keep-alive HTTP/1.1 connections per address,
//! outstanding-request counts for balancing, and the one place where an
//! upstream exchange is started.
//!
//! Endpoints live in a [`Registry`] keyed by address and are shared by every
//! snapshot that names them, so a config swap keeps the pools of unchanged
//! endpoints warm.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle pooled connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many idle connections are kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;

/// The sending half of a pooled upstream connection.
pub type Sender = http1::SendRequest<Incoming>;

/// One upstream address with its connection pool.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    outstanding: AtomicUsize,
    idle: Mutex<Vec<(Sender, Instant)>>,
}

/// Every endpoint currently named by some snapshot, by address.
#[derive(Debug, Default)]
pub struct Registry {
    endpoints: Mutex<HashMap<SocketAddr, Weak<Endpoint>>>,
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
    /// The TCP connect did not finish in time.
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The HTTP/1.1 handshake failed.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// The protocol error.
        #[source]
        source: hyper::Error,
    },
}

/// Counts a request as outstanding on an endpoint until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

// === impl Registry ===

impl Registry {
    /// The endpoint for `addr`, shared with every snapshot that names it.
    /// Called when a snapshot is applied, never per request.
    pub fn endpoint(&self, addr: SocketAddr) -> Arc<Endpoint> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = endpoints.get(&addr).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(Endpoint::new(addr));
        endpoints.insert(addr, Arc::downgrade(&fresh));
        // Forget endpoints no snapshot names any more.
        endpoints.retain(|_, weak| weak.strong_count() > 0);
        fresh
    }
}

// === impl Endpoint ===

impl Endpoint {
    fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            outstanding: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
        }
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

    /// Opens a new connection, within `timeout`.
    ///
    /// # Errors
    /// [`ConnectError`] naming the endpoint and what failed.
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let addr = self.addr;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        };
        // Small writes of heads must not wait for delayed ACKs.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%addr, %error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Picks an endpoint: the less loaded of two chosen at random (power of two
/// choices), which avoids herding onto one endpoint without global state.
pub fn pick(endpoints: &[Arc<Endpoint>]) -> Option<&Arc<Endpoint>> {
    match endpoints.len() {
        0 => None,
        1 => endpoints.first(),
        n => {
            let a = fastrand::usize(..n);
            // A second, different index.
            let b = (a + 1 + fastrand::usize(..n - 1)) % n;
            let (ea, eb) = (&endpoints[a], &endpoints[b]);
            Some(if eb.outstanding() < ea.outstanding() {
                eb
            } else {
                ea
            })
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_shares_live_endpoints_and_forgets_dropped_ones() {
        let registry = Registry::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        let a = registry.endpoint(addr);
        let b = registry.endpoint(addr);
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = registry.endpoint(addr);
        assert_eq!(Arc::strong_count(&c), 1);
    }

    #[test]
    fn pick_prefers_the_less_loaded_of_two() {
        let registry = Registry::default();
        let endpoints: Vec<_> = (1..=2)
            .map(|p| registry.endpoint(SocketAddr::from(([127, 0, 0, 1], p))))
            .collect();
        let _busy: Vec<_> = (0..3).map(|_| endpoints[0].start()).collect();
        for _ in 0..100 {
            assert_eq!(pick(&endpoints).map(|e| e.addr().port()), Some(2));
        }
        assert_eq!(endpoints[0].outstanding(), 3);
    }
}
