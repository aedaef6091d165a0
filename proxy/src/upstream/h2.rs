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
//! - A request given up at its deadline while its connection read nothing
//!   at all puts the connection aside ([`H2Connection::forget`]): new
//!   requests go on a new one, the streams still on it run to their end.
//! - A connection no request used for [`IDLE_CHECK`] to twice that is put
//!   aside too, and closes once its last stream ends.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::request_body::RequestBody;

/// The sending half of an HTTP/2 upstream connection.
pub type H2Sender = http2::SendRequest<RequestBody>;

/// A connection that no request used over a whole period this long (so for
/// this long to twice this long) is put aside, and closes once its last
/// stream ends: as the HTTP/1.1 pool drops connections idle for a minute.
/// It also bounds the keep-alive PINGs an idle connection sends (two at
/// most) under the limit of gRPC servers, which by default answer a third
/// PING with no data in between with a GOAWAY `ENHANCE_YOUR_CALM`
/// (`too_many_pings`) and close the connection.
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
    /// kernel's 15 minutes. The interval is not shorter because gRPC
    /// servers count PINGs that come more often than every 5 minutes
    /// without data in between, and close the connection at the third:
    /// with 30 s, a stream has to stay silent longer than weir's default
    /// `timeouts.idle` (60 s) for that, and an idle connection is put
    /// aside (see [`IDLE_CHECK`]) before.
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

/// One open HTTP/2 connection: its sender, and how many reads brought
/// bytes from the upstream so far.
#[derive(Debug)]
pub struct H2Link {
    sender: H2Sender,
    reads: Arc<AtomicU64>,
    /// Taken by a request since the last idle check.
    used: AtomicBool,
}

/// The shared HTTP/2 connection of one endpoint.
#[derive(Debug, Default)]
pub struct H2Connection {
    current: Arc<ArcSwapOption<H2Link>>,
    opening: tokio::sync::Mutex<()>,
}

/// An upstream stream (TCP or TLS) that counts the reads that brought
/// bytes: what tells a connection that is merely quiet from one that
/// receives nothing at all.
#[derive(Debug)]
pub struct CountReads<S> {
    inner: S,
    reads: Arc<AtomicU64>,
}

// === impl H2Link ===

impl H2Link {
    /// The connection of `sender`, whose reads `reads` counts (see
    /// [`CountReads`]).
    pub fn new(sender: H2Sender, reads: Arc<AtomicU64>) -> H2Link {
        H2Link {
            sender,
            reads,
            used: AtomicBool::new(true),
        }
    }

    /// A sender for one request.
    pub fn sender(&self) -> H2Sender {
        self.sender.clone()
    }

    /// The reads that brought bytes from the upstream so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Relaxed)
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
    /// GOAWAY raced it) or read nothing while a request waited for its
    /// answer until its deadline.
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

// === impl CountReads ===

impl<S> CountReads<S> {
    /// `inner`, its reads counted in `reads`.
    pub fn new(inner: S, reads: Arc<AtomicU64>) -> CountReads<S> {
        CountReads { inner, reads }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountReads<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.reads.fetch_add(1, Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountReads<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
