//! The admin port's open connections, and which one gives its place to a
//! new connection.
//!
//! A connection is *waiting* from when it is accepted until a request head
//! has come whole, and again once the answer has been sent (a keep-alive
//! connection waits for its next head). It is *answering* while a request
//! is being answered: from the whole head to the end of the answer's body,
//! an event stream's included. Waiting costs a client nothing but a socket,
//! so waiting connections are the ones given up:
//!
//! - A source (an IPv4 address, or an IPv6 /64, which one host usually
//!   holds whole) keeps at most [`MAX_WAITING_PER_SOURCE`] waiting
//!   connections: one more closes its own oldest waiting ones over that
//!   share. But a connection is spared this for its first [`GRACE`]: one
//!   found over the share while younger is closed when its grace is over
//!   if it is still waiting then and its source still holds more than its
//!   share, and kept if a request head has come whole by then or enough
//!   of the others have closed. A client sends its head as soon as it has connected,
//!   so a burst of new connections from one address (parallel `curl`s,
//!   scripts and dashboards behind `kubectl port-forward`) is answered
//!   whole.
//! - When all [`MAX_CONNECTIONS`] places are taken, a new connection takes
//!   the place of the oldest waiting connection of the source that holds
//!   the most waiting ones, in its grace or not. Only when no connection
//!   is waiting is the new one closed at once.
//!
//! So a client that holds its connections with heads it never finishes
//! (each for up to 10 s) only ever closes its own: those over its share
//! once their grace is over, and at the cap its oldest first. A health
//! probe or a command always gets a place, the connections open never
//! outnumber the places, and a connection answering a request is never
//! the one closed. (One whose head comes whole just as it is chosen is
//! closed all the same, as if it had been chosen a moment earlier.)
//! The rule is the same for every address: behind `kubectl port-forward`
//! every client comes from 127.0.0.1, and a probe from the node's address.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use super::AdminBody;

/// Most admin connections open at once. Each holds a file descriptor the
/// proxy's listeners share: without a cap, idle connections to the admin
/// port could take them all.
pub const MAX_CONNECTIONS: usize = 256;

/// Most connections one source may hold waiting for a request head. Far
/// more than probes, Prometheus, the CLI and a few dashboards need at once.
pub const MAX_WAITING_PER_SOURCE: usize = 32;

/// How long a new connection is spared the per-source rule. A client sends
/// its request head as soon as it has connected: a second is many round
/// trips, through `kubectl port-forward` or on a loaded host, and a tenth
/// of the 10 s an unfinished head is given. A client opening connections
/// faster than its share allows holds the extra ones for this long at
/// most, and only until the port is full, where its own oldest go first.
pub const GRACE: Duration = Duration::from_secs(1);

/// The limits a [`Connections`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Connections open at once.
    pub(super) connections: usize,
    /// Connections waiting for a head, per source.
    pub(super) waiting_per_source: usize,
}

impl Limits {
    /// [`MAX_CONNECTIONS`] and [`MAX_WAITING_PER_SOURCE`].
    pub(super) const DEFAULT: Limits = Limits {
        connections: MAX_CONNECTIONS,
        waiting_per_source: MAX_WAITING_PER_SOURCE,
    };
}

/// The open connections, oldest first.
#[derive(Debug)]
pub(super) struct Connections {
    limits: Limits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: VecDeque<Open>,
}

#[derive(Debug)]
struct Open {
    id: u64,
    source: Source,
    stage: Stage,
    /// Within its first [`GRACE`]: not closed by the per-source rule.
    young: bool,
    /// Found over its source's share while young: closed when its grace is
    /// over if still waiting then. A whole head calls this off.
    over_share: bool,
    /// Told when the connection is to close, to make room.
    leave: Arc<Notify>,
}

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing received yet.
    Silent,
    /// Some bytes received, a head not whole yet (or an answer sent and
    /// the next head not whole).
    Waiting,
    /// A request being answered.
    Answering,
}

/// Where connections come from, for the per-source rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    /// The first 64 bits of the address.
    V6(u64),
}

/// A connection's place in [`Connections`]: leaves it when dropped.
#[derive(Debug)]
pub(super) struct Place {
    connections: Arc<Connections>,
    id: u64,
    /// Told when the connection is to close, to make room for another.
    pub(super) leave: Arc<Notify>,
}

/// Marks a connection answering while held; waiting again once dropped.
#[derive(Debug)]
pub(super) struct Answering {
    connections: Arc<Connections>,
    id: u64,
}

/// An admin answer's body, holding its connection answering until the body
/// is sent (or dropped).
#[derive(Debug)]
pub(super) struct TrackedBody {
    body: AdminBody,
    _answering: Answering,
}

// === impl Connections ===

impl Connections {
    /// No connection yet, with these limits.
    pub(super) fn new(limits: Limits) -> Connections {
        Connections {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    /// The limits applied.
    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks a waiting connection to close so that a new one can have its
    /// place: the oldest of the source with the most waiting connections.
    /// False when none is waiting.
    pub(super) fn make_room(&self) -> bool {
        let mut table = self.lock();
        let mut waiting: HashMap<Source, usize> = HashMap::new();
        for open in table.open.iter().filter(|o| o.stage != Stage::Answering) {
            *waiting.entry(open.source).or_default() += 1;
        }
        let Some(most) = waiting.values().copied().max() else {
            return false;
        };
        // Oldest first: among the sources with the most, the one whose
        // waiting connection is the oldest gives it.
        let at = table
            .open
            .iter()
            .position(|o| o.stage != Stage::Answering && waiting.get(&o.source) == Some(&most));
        at.and_then(|at| table.close(at)).is_some()
    }

    /// Adds a connection from `address`, the newest, in its grace; when its
    /// source then holds more than its share of waiting connections, the
    /// oldest of them are asked to close (those in their grace once it is
    /// over).
    pub(super) fn add(self: &Arc<Self>, address: IpAddr) -> Place {
        let source = Source::of(address);
        let leave = Arc::new(Notify::new());
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.open.push_back(Open {
            id,
            source,
            stage: Stage::Silent,
            young: true,
            over_share: false,
            leave: Arc::clone(&leave),
        });
        table.keep_share(source, self.limits.waiting_per_source);
        Place {
            connections: Arc::clone(self),
            id,
            leave,
        }
    }

    /// Marks connection `id`'s stage, if it is still open. A whole head
    /// keeps a young connection over its source's share open.
    fn set(&self, id: u64, stage: Stage) {
        if let Some(open) = self.lock().open.iter_mut().find(|o| o.id == id) {
            open.stage = stage;
            if stage == Stage::Answering {
                open.over_share = false;
            }
        }
    }

    /// Connection `id`'s grace is over: it is closed if it was found over
    /// its source's share meanwhile, is still waiting, and its source still
    /// holds more than its share of waiting connections (others may have
    /// closed since).
    fn grace_over(&self, id: u64) {
        let mut table = self.lock();
        let Some(at) = table.open.iter().position(|o| o.id == id) else {
            return;
        };
        let open = &mut table.open[at];
        open.young = false;
        if !std::mem::take(&mut open.over_share) || open.stage == Stage::Answering {
            return;
        }
        let source = open.source;
        let waiting = table
            .open
            .iter()
            .filter(|o| o.source == source && o.stage != Stage::Answering)
            .count();
        if waiting > self.limits.waiting_per_source {
            table.close(at);
        }
    }

    fn remove(&self, id: u64) {
        self.lock().open.retain(|o| o.id != id);
    }

    /// Open connections (not yet asked to close), and how many of them
    /// are silent and answering.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize, usize) {
        let table = self.lock();
        let count = |stage| table.open.iter().filter(|o| o.stage == stage).count();
        (
            table.open.len(),
            count(Stage::Silent),
            count(Stage::Answering),
        )
    }
}

// === impl Table ===

impl Table {
    /// Keeps `source` to `share` waiting connections: the oldest over it are
    /// closed, or marked to close when their grace is over.
    fn keep_share(&mut self, source: Source, share: usize) {
        let waiting = |o: &Open| o.source == source && o.stage != Stage::Answering;
        let mut over = self.open.iter().filter(|o| waiting(o)).count();
        let mut at = 0;
        while over > share && at < self.open.len() {
            let open = &mut self.open[at];
            if !waiting(open) {
                at += 1;
            } else if open.young {
                open.over_share = true;
                over -= 1;
                at += 1;
            } else {
                self.close(at);
                over -= 1;
            }
        }
    }

    /// Takes the connection at `at` off the table and tells it to close.
    fn close(&mut self, at: usize) -> Option<u64> {
        let open = self.open.remove(at)?;
        open.leave.notify_one();
        Some(open.id)
    }
}

// === impl Source ===

impl Source {
    fn of(address: IpAddr) -> Source {
        match address.to_canonical() {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => Source::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

// === impl Place ===

impl Place {
    /// The connection sent its first byte.
    pub(super) fn spoke(&self) {
        self.connections.set(self.id, Stage::Waiting);
    }

    /// Ends the connection's grace after [`GRACE`], then never ends: to be
    /// polled for as long as the connection is served.
    pub(super) async fn grace(&self) -> Infallible {
        tokio::time::sleep(GRACE).await;
        self.connections.grace_over(self.id);
        std::future::pending().await
    }

    /// Marks the connection answering until the guard is dropped.
    pub(super) fn answering(&self) -> Answering {
        self.connections.set(self.id, Stage::Answering);
        Answering {
            connections: Arc::clone(&self.connections),
            id: self.id,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.connections.remove(self.id);
    }
}

// === impl Answering ===

impl Answering {
    /// `body`, holding the connection answering until it is sent.
    pub(super) fn body(self, body: AdminBody) -> TrackedBody {
        TrackedBody {
            body,
            _answering: self,
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.connections.set(self.id, Stage::Waiting);
    }
}

// === impl TrackedBody ===

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
