//! HTTP/2 to an upstream (`h2c` or `h2`): one multiplexed connection per
//! endpoint, opened on first use and again after it closes (a GOAWAY, an
//! error, the peer going away, a keep-alive PING left unanswered) or is
//! put aside. The peer's limit on concurrent streams is kept by hyper's
//! client, which holds a request back until a stream is free.
//!
//! A request takes the connection with one atomic load and two reference
//! counts (the link and a clone of its sender; no allocation); only opening
//! a connection takes a lock, so concurrent first requests open one
//! connection, not many.
//!
//! An upstream that vanishes without a FIN or RST (its node gone, a
//! partition) would otherwise keep the connection, and receive every
//! request, until the kernel gives up retransmitting (about 15 minutes).
//! So, as Envoy's `connection_keepalive` and linkerd do:
//!
//! - Keep-alive: a PING goes out once [`KeepAlive::DEFAULT`]'s `interval`
//!   passed without a frame from the upstream, idle or not; no answer
//!   within its `timeout` closes the connection, and its requests fail
//!   (the next one opens a new connection).
//! - A request given up at its deadline puts its connection aside
//!   ([`H2Connection::forget`]) when the connection then read nothing for
//!   at least the keep-alive's `timeout` (see [`H2Link::is_silent`]), and
//!   the request was not waiting on its own client's upload: new requests
//!   go on a new connection, the streams still on it run to their end. A
//!   connection that is merely quiet (a slow answer, no other stream: a
//!   gRPC call's short deadline passing) is kept, and so is one whose
//!   upstream waits for a body its client stalls in.
//! - A connection no request used for [`IDLE_CHECK`] to twice that is put
//!   aside too, and closes once its last stream ends.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2;

use crate::request_body::H2Upload;

/// The sending half of an HTTP/2 upstream connection.
pub type H2Sender = http2::SendRequest<H2Upload>;

/// A connection that no request used over a whole period this long (so for
/// this long to twice this long) is put aside, and closes once its last
/// stream ends: as the HTTP/1.1 pool drops connections idle for a minute.
/// It also bounds the keep-alive PINGs an idle connection sends (two at
/// most) under the limit of gRPC servers (see [`KeepAlive::DEFAULT`]).
pub const IDLE_CHECK: Duration = Duration::from_secs(30);

/// When an HTTP/2 upstream connection is checked with a PING, and how long
/// its answer may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// A PING goes out once this long passed without a frame from the
    /// upstream, whether requests are open on the connection or not.
    pub interval: Duration,
    /// No answer to the PING in this time closes the connection.
    pub timeout: Duration,
}

impl KeepAlive {
    /// weir's values: a PING after 30 s without a frame, 10 s for its
    /// answer, as weir's listeners check their clients. A silent upstream
    /// is so let go of within 40 s of its last frame rather than the
    /// kernel's 15 minutes.
    ///
    /// The interval is not shorter because gRPC servers (grpc-go and
    /// grpc-java by default) count a PING that comes less than 5 minutes
    /// after the previous one, with no HEADERS or DATA from the server in
    /// between, as a strike, and close the connection at the third (a
    /// GOAWAY `ENHANCE_YOUR_CALM`, `too_many_pings`): the fourth PING of a
    /// silence, two minutes into it with 30 s. A response body is cut
    /// sooner, once quiet for `timeouts.idle` (60 s by default, two
    /// PINGs), and an idle connection is put aside within 60 s (see
    /// [`IDLE_CHECK`]). What can still meet that limit is a request that
    /// waits for its answer's head until the silence is two minutes old:
    /// bounded by `timeouts.request`, not `timeouts.idle`, so only with a
    /// `timeouts.request` above 60 s (after a connection quiet for a
    /// minute) to 120 s (on one that had just answered); the default is
    /// 30 s, and gRPC calls are bounded by their own deadline too.
    pub const DEFAULT: KeepAlive = KeepAlive {
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
    };
}

/// The keep-alive of the connections opened from now on.
static KEEP_ALIVE: RwLock<KeepAlive> = RwLock::new(KeepAlive::DEFAULT);

/// The keep-alive given to each new HTTP/2 upstream connection.
pub fn keep_alive() -> KeepAlive {
    *KEEP_ALIVE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Sets the keep-alive of the HTTP/2 upstream connections opened from now
/// on, in the whole process. weir never calls it: tests do, to see a
/// silent upstream let go of in a fraction of a second.
#[doc(hidden)]
pub fn set_keep_alive(keep_alive: KeepAlive) {
    *KEEP_ALIVE.write().unwrap_or_else(PoisonError::into_inner) = keep_alive;
}

/// One open HTTP/2 connection: its sender, and when it last read bytes
/// from the upstream.
#[derive(Debug)]
pub struct H2Link {
    sender: H2Sender,
    last_read: Arc<LastRead>,
    /// How long the connection must have read nothing to be taken for
    /// possibly dead (see [`H2Link::is_silent`]): its keep-alive's
    /// `timeout`.
    silence_floor: Duration,
    /// Taken by a request since the last idle check.
    used: AtomicBool,
}

/// The shared HTTP/2 connection of one endpoint.
#[derive(Debug, Default)]
pub struct H2Connection {
    current: Arc<ArcSwapOption<H2Link>>,
    opening: tokio::sync::Mutex<()>,
}

/// When a connection last read bytes from its upstream, as noted by
/// [`super::NoteReads`]: what tells a connection that is merely quiet from
/// one that receives nothing at all.
#[derive(Debug)]
pub struct LastRead {
    /// When the connection opened: `at_ms` counts from here.
    opened: tokio::time::Instant,
    /// Milliseconds from `opened` to the last read that brought bytes (0
    /// before any).
    at_ms: AtomicU64,
}

// === impl H2Link ===

impl H2Link {
    /// The connection of `sender`, opened with `keep_alive`, whose reads
    /// are noted in `last_read` (see [`NoteReads`]).
    pub fn new(sender: H2Sender, last_read: Arc<LastRead>, keep_alive: KeepAlive) -> H2Link {
        H2Link {
            sender,
            last_read,
            silence_floor: keep_alive.timeout,
            used: AtomicBool::new(true),
        }
    }

    /// A sender for one request.
    pub fn sender(&self) -> H2Sender {
        self.sender.clone()
    }

    /// How long the connection has read nothing from its upstream (since
    /// it opened, if it never read).
    pub fn silence(&self) -> Duration {
        self.last_read.silence()
    }

    /// Whether the connection has read nothing for at least its
    /// keep-alive's `timeout`: longer than a PING's answer may take, so a
    /// live upstream that is merely slow to answer, on a connection with
    /// little else on it, is not taken for a dead one by a short deadline.
    /// (A live but quiet connection still reads nothing for up to the
    /// keep-alive's `interval`: a request given up after waiting longer
    /// than the `timeout` on it may put it aside, at the cost of a new
    /// connection.)
    pub fn is_silent(&self) -> bool {
        self.silence() >= self.silence_floor
    }

    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    fn mark_used(&self) {
        // A store only when it changes: the flag is shared by every
        // request on the connection.
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
    }
}

// === impl H2Connection ===

impl H2Connection {
    /// The open connection, if any.
    pub fn get(&self) -> Option<Arc<H2Link>> {
        let current = self.current.load();
        let link = current.as_ref().filter(|link| !link.is_closed())?;
        link.mark_used();
        Some(Arc::clone(link))
    }

    /// The open connection, or one opened by `open` (once, however many
    /// requests wait for it); `true` with a connection opened for this
    /// request.
    ///
    /// # Errors
    /// `open`'s error.
    pub async fn get_or_open<F, E>(&self, open: F) -> Result<(Arc<H2Link>, bool), E>
    where
        F: std::future::Future<Output = Result<H2Link, E>>,
    {
        if let Some(link) = self.get() {
            return Ok((link, false));
        }
        let _opening = self.opening.lock().await;
        // Another request may have opened it while this one waited.
        if let Some(link) = self.get() {
            return Ok((link, false));
        }
        let link = Arc::new(open.await?);
        self.current.store(Some(Arc::clone(&link)));
        put_aside_when_idle(Arc::downgrade(&self.current), Arc::downgrade(&link));
        Ok((link, true))
    }

    /// Puts `link` aside if it is still the endpoint's connection: the next
    /// request opens a new one, and `link` closes once its last stream
    /// ends. Used when the connection refused a request it was handed (a
    /// GOAWAY raced it) or was silent (see [`H2Link::is_silent`]) when a
    /// request waiting for its answer reached its deadline.
    pub fn forget(&self, link: &Arc<H2Link>) {
        forget_in(&self.current, link);
    }
}

fn forget_in(current: &ArcSwapOption<H2Link>, link: &Arc<H2Link>) {
    // Not a connection opened since by another request.
    current.compare_and_swap(link, None);
}

/// Puts `link` aside once no request took it over a whole [`IDLE_CHECK`].
/// Ends when the connection is gone from `current` (replaced, put aside,
/// or the endpoint dropped).
fn put_aside_when_idle(current: Weak<ArcSwapOption<H2Link>>, link: Weak<H2Link>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(IDLE_CHECK).await;
            let (Some(current), Some(link)) = (current.upgrade(), link.upgrade()) else {
                return;
            };
            let in_place = current
                .load()
                .as_ref()
                .is_some_and(|now| Arc::ptr_eq(now, &link));
            if !in_place {
                return;
            }
            if !link.used.swap(false, Relaxed) {
                forget_in(&current, &link);
                return;
            }
        }
    });
}

// === impl LastRead ===

impl LastRead {
    /// A connection opening now, which has read nothing yet.
    pub fn from_now() -> LastRead {
        LastRead {
            opened: tokio::time::Instant::now(),
            at_ms: AtomicU64::new(0),
        }
    }

    /// How long nothing was read (since the connection opened, if nothing
    /// ever was), to the millisecond.
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.at_ms.load(Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }

    /// Notes a read that brought bytes: one clock read and one relaxed
    /// store.
    fn note(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(now, Relaxed);
    }
}

impl super::ReadNote for LastRead {
    /// A read that brought bytes is noted (see [`LastRead::note`]).
    fn note_read(&self, bytes: usize) {
        if bytes > 0 {
            self.note();
        }
    }
}
