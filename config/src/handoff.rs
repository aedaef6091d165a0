//! The hand-off cell between control and proxy: control publishes a new
//! [`Snapshot`]; the proxy loads the current one without waiting on anybody.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::Snapshot;

/// The writing half, held by control.
#[derive(Debug)]
pub struct Publisher {
    cell: Arc<ArcSwap<Snapshot>>,
    version: watch::Sender<u64>,
}

/// The reading half, cloned into the proxy.
#[derive(Debug, Clone)]
pub struct Reader {
    cell: Arc<ArcSwap<Snapshot>>,
    version: watch::Receiver<u64>,
}

/// A connected publisher and reader, starting with `initial`.
pub fn channel(initial: Snapshot) -> (Publisher, Reader) {
    let version = initial.version;
    let cell = Arc::new(ArcSwap::from_pointee(initial));
    let (tx, rx) = watch::channel(version);
    (
        Publisher {
            cell: Arc::clone(&cell),
            version: tx,
        },
        Reader { cell, version: rx },
    )
}

// === impl Publisher ===

impl Publisher {
    /// Makes `snapshot` current, giving it the next version number, which is returned.
    pub fn publish(&self, mut snapshot: Snapshot) -> u64 {
        let next = self.cell.load().version + 1;
        snapshot.version = next;
        self.cell.store(Arc::new(snapshot));
        self.version.send_replace(next);
        next
    }

    /// The snapshot currently published.
    pub fn current(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    /// A new reader of this cell.
    pub fn reader(&self) -> Reader {
        Reader {
            cell: Arc::clone(&self.cell),
            version: self.version.subscribe(),
        }
    }
}

// === impl Reader ===

impl Reader {
    /// The current snapshot (an `Arc` clone; never blocks).
    pub fn load(&self) -> Arc<Snapshot> {
        self.cell.load_full()
    }

    /// Waits until a snapshot newer than the last one seen is published.
    /// Returns `false` once the publisher is gone (the last snapshot stays current).
    pub async fn changed(&mut self) -> bool {
        self.version.changed().await.is_ok()
    }
}
