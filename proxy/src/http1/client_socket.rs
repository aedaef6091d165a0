//! A client connection's socket on weir's own path, registered with the
//! runtime's poller only when a wait needs it.
//!
//! Registering a socket with epoll costs an `epoll_ctl` on the way in and
//! another on the way out, about 5 % of the proxy's CPU per
//! `Connection: close` request on loopback (`perf record`, `wrk -H
//! 'Connection: close'`). A client's first request is nearly always
//! readable when its connection is accepted, and its answer fits in the
//! socket's send buffer; such a connection is read, answered and closed
//! without ever being registered, as HAProxy does. A socket is registered
//! the first time a read or write would block, when it is handed to
//! hyper, or when the client must be watched while an answer is awaited
//! for longer than [`WATCH_AFTER`]; from then on it is an ordinary tokio
//! socket.

use std::future::Future;
use std::net::Shutdown;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::Either;
use rustix::net::SendFlags;
use socket2::SockRef;
use tokio::net::TcpStream;

use super::socket_calls;

/// How long an answer may be awaited before a client not yet registered is
/// registered to be watched (a client that leaves meanwhile gives its
/// request up at most this much later).
pub const WATCH_AFTER: Duration = Duration::from_millis(10);

/// How long a client connection weir is done with goes on reading and
/// dropping what the client sends (see [`linger`]), as nginx's
/// `lingering_timeout`.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// The first allocation of a read buffer.
const FIRST_READ: usize = 4096;
/// The least room a read is given.
const MIN_READ: usize = 1024;
/// The most a read buffer grows to for one read (a larger head or
/// pipeline grows it further, by what it holds).
const MAX_READ: usize = 64 * 1024;

/// A read on the heap: the delayed watch of an unregistered socket.
type BoxedRead<'a> = Pin<Box<dyn Future<Output = std::io::Result<usize>> + Send + 'a>>;

/// A downstream socket, registered with the poller or not yet.
#[derive(Debug)]
pub struct ClientSocket {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Accepted, non-blocking, never waited on.
    Unregistered(std::net::TcpStream),
    /// Registered with the runtime's poller.
    Registered(TcpStream),
    /// Registration failed: the socket is closed.
    Lost,
}

// === impl ClientSocket ===

impl ClientSocket {
    /// A socket just accepted, non-blocking, not registered.
    pub fn unregistered(stream: std::net::TcpStream) -> ClientSocket {
        ClientSocket {
            state: State::Unregistered(stream),
        }
    }

    /// Whether the socket is registered with the runtime's poller.
    pub fn is_registered(&self) -> bool {
        matches!(self.state, State::Registered(_))
    }

    /// The tokio socket, registering it first if needed.
    ///
    /// # Errors
    /// The registration's error; the socket is then closed.
    pub fn registered(&mut self) -> std::io::Result<&mut TcpStream> {
        if matches!(self.state, State::Unregistered(_))
            && let State::Unregistered(stream) = std::mem::replace(&mut self.state, State::Lost)
        {
            self.state = State::Registered(TcpStream::from_std(stream)?);
        }
        match &mut self.state {
            State::Registered(stream) => Ok(stream),
            _ => Err(lost()),
        }
    }

    /// The tokio socket, for hyper's server.
    ///
    /// # Errors
    /// The registration's error; the socket is then closed.
    pub fn into_registered(mut self) -> std::io::Result<TcpStream> {
        self.registered()?;
        match self.state {
            State::Registered(stream) => Ok(stream),
            _ => Err(lost()),
        }
    }

    /// Reads what is there into the spare room of `buf` without waiting:
    /// `WouldBlock` when nothing is.
    ///
    /// # Errors
    /// The read's error, `WouldBlock` included.
    pub fn try_read(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let spare = make_room(buf);
        let read = match &mut self.state {
            State::Unregistered(stream) => socket_calls::recv_now(&*stream, buf),
            State::Registered(stream) => socket_calls::try_recv(stream, buf),
            State::Lost => Err(lost()),
        }?;
        grow_if_filled(buf, read, spare);
        Ok(read)
    }

    /// Reads once into the spare room of `buf`, waiting for bytes when
    /// there are none (the socket is registered then).
    ///
    /// # Errors
    /// The read's error.
    pub async fn read_more(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if !self.is_registered() {
            match self.try_read(buf) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                result => return result,
            }
        }
        // Awaited here rather than through `read_more`: every connection's
        // future holds this one's room, and a nested future adds to it.
        let spare = make_room(buf);
        let read = socket_calls::recv(self.registered()?, buf).await?;
        grow_if_filled(buf, read, spare);
        Ok(read)
    }

    /// As [`ClientSocket::read_more`], for watching the client while the
    /// answer to a request started at `started` is awaited: an
    /// unregistered socket is left alone until [`WATCH_AFTER`] past
    /// `started`, so that a quick answer costs no registration.
    ///
    /// The wait of an unregistered socket is boxed, its timer with it: a
    /// registered socket's watch, the common one, is no larger than a read.
    pub fn watch<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        started: tokio::time::Instant,
    ) -> Either<impl Future<Output = std::io::Result<usize>> + Send + 'a, BoxedRead<'a>> {
        if self.is_registered() {
            return Either::Left(self.read_more(buf));
        }
        Either::Right(Box::pin(async move {
            tokio::time::sleep_until(started + WATCH_AFTER).await;
            self.read_more(buf).await
        }))
    }

    /// A wait until the socket is readable, registering it first.
    ///
    /// # Errors
    /// The registration's error.
    pub fn readable(
        &mut self,
    ) -> std::io::Result<impl Future<Output = std::io::Result<()>> + Send + '_> {
        Ok(socket_calls::readable(self.registered()?))
    }

    /// Writes what the socket takes now: `WouldBlock` when it takes
    /// nothing. `hold_for_close`: these are the connection's last bytes,
    /// and its close (or `shutdown`) follows at once: they are held until
    /// then, so that the answer and the FIN go out in one segment.
    ///
    /// # Errors
    /// The write's error, `WouldBlock` included.
    pub fn try_write(&mut self, bytes: &[u8], hold_for_close: bool) -> std::io::Result<usize> {
        let flags = send_flags(hold_for_close);
        match &self.state {
            State::Unregistered(stream) => socket_calls::send_now(stream, bytes, flags),
            State::Registered(stream) => socket_calls::try_send(stream, bytes, flags),
            State::Lost => Err(lost()),
        }
    }

    /// A write of some of `bytes` that waits until the socket takes any,
    /// registering it first; `hold_for_close` as for
    /// [`ClientSocket::try_write`].
    ///
    /// # Errors
    /// The registration's error.
    pub fn write<'a>(
        &'a mut self,
        bytes: &'a [u8],
        hold_for_close: bool,
    ) -> std::io::Result<impl Future<Output = std::io::Result<usize>> + Send + 'a> {
        let stream = &*self.registered()?;
        Ok(socket_calls::send(
            stream,
            bytes,
            send_flags(hold_for_close),
        ))
    }

    /// Sets `SO_LINGER` to zero, so that closing the socket resets it.
    ///
    /// # Errors
    /// The option's error.
    pub fn set_zero_linger(&self) -> std::io::Result<()> {
        self.socket()?.set_linger(Some(Duration::ZERO))
    }

    /// Shuts the sending side down: the client reads the end of the
    /// stream after what was written (tokio's `shutdown` does the same
    /// call, at once).
    ///
    /// # Errors
    /// The shutdown's error.
    pub fn shutdown(&self) -> std::io::Result<()> {
        self.socket()?.shutdown(Shutdown::Write)
    }

    /// The socket, registered or not, for its options and `shutdown`.
    fn socket(&self) -> std::io::Result<SockRef<'_>> {
        match &self.state {
            State::Unregistered(stream) => Ok(SockRef::from(stream)),
            State::Registered(stream) => Ok(SockRef::from(stream)),
            State::Lost => Err(lost()),
        }
    }
}

/// The flags of a write: `MSG_MORE` when `hold_for_close`, so that the
/// connection's last bytes are held back and its close or `shutdown` sends
/// them with the FIN in one segment. Elsewhere than Linux the bytes go at
/// once, and the FIN after them.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_flags(hold_for_close: bool) -> SendFlags {
    if hold_for_close {
        SendFlags::MORE
    } else {
        SendFlags::empty()
    }
}

/// [`send_flags`] elsewhere: the bytes go at once.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_flags(_hold_for_close: bool) -> SendFlags {
    SendFlags::empty()
}

/// The error of a socket whose registration failed.
fn lost() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "client socket closed: registering it with the poller failed",
    )
}

/// Makes room in `buf` for a read: the buffer starts small (most heads and
/// answers fit in [`FIRST_READ`]) and doubles while reads fill it, up to
/// [`MAX_READ`] per read. Returns the room.
fn make_room(buf: &mut Vec<u8>) -> usize {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(buf.capacity().clamp(FIRST_READ, MAX_READ));
    }
    buf.capacity() - buf.len()
}

/// Doubles `buf` after a read that filled its `spare` room.
fn grow_if_filled(buf: &mut Vec<u8>, read: usize, spare: usize) {
    if read == spare && buf.capacity() < MAX_READ {
        buf.reserve(buf.capacity());
    }
}

/// Reads once from `stream` into the spare room of `buf` (see
/// [`make_room`]).
///
/// # Errors
/// The read's error.
pub async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let spare = make_room(buf);
    let read = socket_calls::recv(stream, buf).await?;
    grow_if_filled(buf, read, spare);
    Ok(read)
}

/// Lingers on a client socket weir is done with, as nginx does (RFC 9112
/// section 9.6), on both forwarding paths: shuts the sending side, so the
/// client reads the answer and then its end, then reads and drops what the
/// client still sends until it closes, for at most [`LINGER_TIME`]. Closed
/// at once with bytes unread, the socket would be reset, and a client
/// still uploading would see its writes fail instead of reading the
/// answer.
pub async fn linger(stream: &TcpStream) {
    if SockRef::from(stream).shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = tokio::time::Instant::now() + LINGER_TIME;
    let mut scratch = [0u8; 4096];
    // The clock is read at every turn: a client that keeps the socket full
    // has a read ready each time, and the timer would never be polled.
    while tokio::time::Instant::now() < until {
        if !matches!(
            tokio::time::timeout_at(until, stream.readable()).await,
            Ok(Ok(()))
        ) {
            return;
        }
        match stream.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream as StdStream};

    use tokio::io::AsyncReadExt as _;

    use super::*;

    /// A connected pair: the client's end, and the accepted end as weir
    /// takes it (non-blocking, unregistered).
    fn pair() -> (StdStream, ClientSocket) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let client = StdStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        let (accepted, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        accepted
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        (client, ClientSocket::unregistered(accepted))
    }

    #[tokio::test]
    async fn bytes_already_there_are_read_and_answered_without_registering() {
        let (mut client, mut socket) = pair();
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = Vec::new();
        // The bytes are in flight on loopback: wait for them by polling,
        // not by registering.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let read = loop {
            match socket.try_read(&mut buf) {
                Ok(read) => break read,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "bytes never came");
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..read], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            socket.try_write(b"HTTP/1.1 200 OK\r\n\r\n", false).ok(),
            Some(19)
        );
        socket.shutdown().unwrap_or_else(|e| panic!("{e}"));
        assert!(!socket.is_registered());
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[tokio::test]
    async fn a_read_that_would_block_registers_and_waits_for_the_bytes() {
        let (mut client, mut socket) = pair();
        let mut buf = Vec::new();
        let read = {
            let read = socket.read_more(&mut buf);
            tokio::pin!(read);
            // Polled once: nothing to read, so the socket registers and
            // waits.
            tokio::select! {
                biased;
                read = &mut read => panic!("read before anything was sent: {read:?}"),
                () = std::future::ready(()) => {}
            }
            client.write_all(b"late").unwrap_or_else(|e| panic!("{e}"));
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(&buf[..read], b"late");
        assert!(socket.is_registered());
    }

    #[tokio::test]
    async fn a_watched_client_that_leaves_is_noticed_after_the_grace() {
        let (client, mut socket) = pair();
        drop(client);
        let mut buf = Vec::new();
        let started = tokio::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(10), socket.watch(&mut buf, started))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(read, Ok(0)), "{read:?}");
        assert!(started.elapsed() >= WATCH_AFTER);
    }

    #[tokio::test]
    async fn a_registered_socket_is_handed_over_as_it_is() {
        let (mut client, mut socket) = pair();
        socket.registered().unwrap_or_else(|e| panic!("{e}"));
        let mut stream = socket.into_registered().unwrap_or_else(|e| panic!("{e}"));
        client.write_all(b"x").unwrap_or_else(|e| panic!("{e}"));
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut byte))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&byte, b"x");
    }
}
