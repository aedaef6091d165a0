//! weir's data plane: listeners (HTTP/1.1, HTTP/2, TLS), route matching, the
//! stable/canary role decision, pooled upstream connections and per-role
//! counters.
//!
//! The proxy reads the current routing [`weir_config::Snapshot`] through a
//! [`weir_config::Reader`]; it never waits on, calls or imports the control
//! loop, and keeps serving the last snapshot if the publisher goes away.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use weir_config::{Reader, Snapshot};

pub mod body;
pub mod decision;
pub mod descriptors;
pub mod error;
pub mod explained_errors;
pub mod fallback;
pub mod forward;
pub mod grpc;
pub mod hex;
pub mod http1;
pub mod metrics;
pub mod request_body;
pub mod request_id;
pub mod routes;
pub mod routing;
pub mod server;
pub mod signal;
pub mod tls;
pub mod upstream;
pub mod write_stall;

pub use decision::Role;
pub use metrics::Metrics;
pub use server::{Listener, ServeOptions};

/// A running data plane: the routing in force and everything shared by connections.
#[derive(Debug, Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

/// State shared by every connection of every listener.
#[derive(Debug)]
pub struct Shared {
    routing: ArcSwap<routing::Routing>,
    registry: upstream::Registry,
    metrics: Arc<Metrics>,
    applied: watch::Sender<u64>,
}

// === impl Proxy ===

impl Proxy {
    /// A proxy serving the reader's current snapshot, and following every
    /// snapshot published after it. Must be called within a tokio runtime.
    pub fn new(mut reader: Reader, metrics: Arc<Metrics>) -> Proxy {
        let registry = upstream::Registry::default();
        let first = reader.load();
        let routing = routing::Routing::build(&first, &registry, &metrics);
        let (applied, _) = watch::channel(first.version);
        let proxy = Proxy {
            shared: Arc::new(Shared {
                routing: ArcSwap::from_pointee(routing),
                registry,
                metrics,
                applied,
            }),
        };
        let follower = proxy.clone();
        tokio::spawn(async move {
            while reader.changed().await {
                follower.apply(&reader.load());
            }
            tracing::debug!("snapshot publisher gone; serving the last snapshot");
        });
        // Ends with the proxy: it holds it only while it sweeps.
        let pools = Arc::downgrade(&proxy.shared);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(upstream::IDLE_SWEEP_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(shared) = pools.upgrade() else {
                    return;
                };
                shared.registry.close_expired_idle();
            }
        });
        proxy
    }

    /// Makes `snapshot` the routing for new requests; requests in flight
    /// finish on the routing they started with.
    pub fn apply(&self, snapshot: &Snapshot) {
        let shared = &self.shared;
        if snapshot.version <= shared.routing.load().version && snapshot.version != 0 {
            return;
        }
        let routing = routing::Routing::build(snapshot, &shared.registry, &shared.metrics);
        shared.routing.store(Arc::new(routing));
        shared.applied.send_replace(snapshot.version);
        tracing::debug!(version = snapshot.version, "routing snapshot applied");
    }

    /// The version of the snapshot in force, updated after each apply.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// The proxy's request counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }
}
