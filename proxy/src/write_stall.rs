//! The write timeout hyper's server lacks: the downstream socket of a
//! connection served by hyper fails a write that has made no progress for
//! the idle limit (`timeouts.idle`) of the route being answered, so a
//! client that stops reading holds neither the upstream connection nor
//! buffers for longer than that. weir's own HTTP/1 path does the same in
//! its driver (`http1::connection`).
//!
//! The same socket lingers when it is dropped before the client closed its
//! side, as the own path does (see `http1::client_socket::linger`): an
//! answer hyper wrote while the client was still uploading (an upstream's
//! early 413) reaches it, rather than a reset that discards it.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use weir_config::model::DEFAULT_IDLE_TIMEOUT;

use crate::server::OpenConnection;

/// How long a write to one downstream connection may make no progress:
/// the idle limit of the route its requests go to, set by each request.
#[derive(Debug, Default)]
pub struct StallLimit {
    /// In milliseconds; 0 until a request has named its route.
    millis: AtomicU64,
}

/// A downstream socket whose writes fail with [`io::ErrorKind::TimedOut`]
/// after making no progress for its [`StallLimit`]; the socket is then
/// reset, so the kernel drops what is queued for a client that reads none
/// of it. Reads pass through. Dropped before the client closed, it lingers
/// (see [`crate::http1::client_socket::linger`]).
#[derive(Debug)]
pub struct WriteStall {
    stream: TcpStream,
    limit: std::sync::Arc<StallLimit>,
    /// Made the first time a write has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// The last write waited: the timer runs from its start.
    waiting: bool,
    /// A read found the end of the client's stream.
    client_closed: bool,
    /// The socket was set to be reset on close: it must not linger.
    reset: bool,
    /// The connection's place under the listener's limits, kept until
    /// the socket is closed, lingering included.
    place: Option<OpenConnection>,
}

// === impl StallLimit ===

impl StallLimit {
    /// Sets the limit to `idle`, the idle timeout of a request's route.
    /// On a multiplexed (HTTP/2) connection the requests share the socket,
    /// so the longest limit of any of them holds.
    pub fn note(&self, idle: Duration, multiplexed: bool) {
        let millis = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        if multiplexed {
            self.millis.fetch_max(millis, Relaxed);
        } else {
            self.millis.store(millis, Relaxed);
        }
    }

    /// The limit in force: the default idle timeout until a request set it.
    pub fn get(&self) -> Duration {
        match self.millis.load(Relaxed) {
            0 => DEFAULT_IDLE_TIMEOUT,
            millis => Duration::from_millis(millis),
        }
    }
}

// === impl WriteStall ===

impl WriteStall {
    /// `stream`, its writes bounded by `limit`.
    pub fn new(stream: TcpStream, limit: std::sync::Arc<StallLimit>) -> WriteStall {
        WriteStall {
            stream,
            limit,
            timer: None,
            waiting: false,
            client_closed: false,
            reset: false,
            place: None,
        }
    }

    /// Keeps `place` until the socket is closed: a lingering socket
    /// still counts as an open connection of its listener.
    pub(crate) fn holding(mut self, place: Option<OpenConnection>) -> WriteStall {
        self.place = place;
        self
    }

    /// Passes on a write's result; one that waits starts the timer (or
    /// keeps it running), and fails once it has run out.
    fn bounded<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        let limit = self.limit.get();
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.waiting {
            timer.as_mut().reset(Instant::now() + limit);
            self.waiting = true;
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        tracing::debug!(
            ?limit,
            "client took nothing within the idle timeout; resetting it"
        );
        let _ = self.stream.set_zero_linger();
        self.reset = true;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no bytes within the idle timeout",
        )))
    }
}

impl AsyncRead for WriteStall {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (room, filled) = (buf.remaining(), buf.filled().len());
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && room > 0 && buf.filled().len() == filled {
            this.client_closed = true;
        }
        polled
    }
}

impl AsyncWrite for WriteStall {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.bounded(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.bounded(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.bounded(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Drop for WriteStall {
    fn drop(&mut self) {
        if self.client_closed || self.reset {
            return;
        }
        // A client that closed while nobody read (its end of stream waits
        // unread) needs no lingering either.
        let mut probe = [0u8; 1];
        if let Ok((0, _)) = rustix::net::recv(
            &self.stream,
            &mut probe,
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        ) {
            return;
        }
        // A second descriptor of the socket keeps it open once this one is
        // closed; the close of the last one ends the linger.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(copy) = socket2::SockRef::from(&self.stream).try_clone() else {
            return;
        };
        let copy: std::net::TcpStream = copy.into();
        let place = self.place.take();
        handle.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(copy) {
                crate::http1::client_socket::linger(&stream).await;
            }
            drop(place);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_limit_and_resets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let mut peer = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
        let limit = Arc::new(StallLimit::default());
        limit.note(Duration::from_millis(200), false);
        let mut stream = WriteStall::new(stream, limit);
        let piece = vec![0u8; 64 * 1024];
        let mut written = 0usize;
        let error = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match stream.write(&piece).await {
                    Ok(n) => written += n,
                    Err(error) => return error,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the write never failed"));
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(stream);
        // Reset: the peer cannot read all that was written.
        let mut read = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = peer.read(&mut buf).await {
            read += n;
        }
        assert!(read < written, "{read} of {written} bytes still delivered");
    }

    #[test]
    fn the_limit_is_the_last_routes_or_on_http2_the_longest() {
        let limit = StallLimit::default();
        assert_eq!(limit.get(), DEFAULT_IDLE_TIMEOUT);
        limit.note(Duration::from_secs(5), false);
        limit.note(Duration::from_secs(2), false);
        assert_eq!(limit.get(), Duration::from_secs(2));
        limit.note(Duration::from_secs(9), true);
        limit.note(Duration::from_secs(3), true);
        assert_eq!(limit.get(), Duration::from_secs(9));
    }
}
