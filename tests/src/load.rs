//! Background load: a few keep-alive connections sending `GET` at a paced
//! rate until stopped, counting answers by upstream and status.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::client::{Conn, Counts};

/// The upstream name under which failed exchanges are counted (status 0).
pub const FAILED: &str = "!failed";

/// Paced load running on the current runtime; stopped by [`Load::stop`] or
/// when dropped.
#[derive(Debug)]
pub struct Load {
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

// === impl Load ===

impl Load {
    /// Sends about `rate` requests per second for `path` to `addr` over
    /// `connections` keep-alive connections, each paced at `rate /
    /// connections`. A failed exchange is counted under [`FAILED`] and the
    /// connection reopened.
    ///
    /// # Panics
    /// When `rate` or `connections` is 0.
    pub fn start(addr: SocketAddr, path: &str, rate: u64, connections: u64) -> Self {
        assert!(
            rate > 0 && connections > 0,
            "Load::start({rate}, {connections})"
        );
        let counts = Arc::new(Mutex::new(Counts::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(connections as f64 / rate as f64);
        let mut tasks = JoinSet::new();
        for c in 0..connections {
            let (counts, stop, path) = (Arc::clone(&counts), Arc::clone(&stop), path.to_owned());
            tasks.spawn(async move {
                // Stagger the connections over one period.
                let offset = period.mul_f64(c as f64 / connections as f64);
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::SeqCst) {
                    ticks.tick().await;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if conn.is_none() {
                        conn = Conn::open(addr).await.ok();
                    }
                    let answer = match conn.as_mut() {
                        Some(c) => c.get(&path, &[]).await.ok(),
                        None => None,
                    };
                    let (name, status) = match &answer {
                        Some(r) => (r.upstream().to_owned(), r.status.as_u16()),
                        None => {
                            conn = None;
                            (FAILED.to_owned(), 0)
                        }
                    };
                    let mut counts = counts.lock().expect("no panics while counting");
                    *counts.entry(name).or_default().entry(status).or_default() += 1;
                }
            });
        }
        Self {
            counts,
            stop,
            tasks,
        }
    }

    /// The answers counted so far.
    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .expect("no panics while counting")
            .clone()
    }

    /// Answers counted so far in total.
    pub fn total(&self) -> u64 {
        self.counts().values().flat_map(|s| s.values()).sum()
    }

    /// Stops sending, waits (at most 10 s) for the requests in flight and
    /// returns the final counts.
    pub async fn stop(mut self) -> Counts {
        self.stop.store(true, Ordering::SeqCst);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
        self.counts()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tasks.abort_all();
    }
}
