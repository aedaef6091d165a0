//! The reads and writes of weir's own HTTP/1 path, made as bare system
//! calls.
//!
//! tokio's socket reads and writes call std's, which call glibc's `recv`
//! and `send`: cancellation points, which switch the thread's asynchronous
//! cancellation on before the system call and off after it. weir cancels no
//! threads. rustix makes the same system calls without that wrapper: in a
//! keep-alive load run (`wrk -t1 -c64 -d8` through weir alone on one core,
//! `perf record`), `__pthread_disable_asynccancel`,
//! `__pthread_enable_asynccancel`, `__send` and `__libc_recv` took 2.6 %
//! of weir's CPU, about a ninth of its user-space time. Readiness is still
//! tokio's, kept as tokio's own reads and writes keep it: a call that finds
//! nothing to do clears it, and so does a read that drains the socket or a
//! write that fills its buffer (see [`try_call`]); a wait registers the
//! task's waker in the socket's own slot, not in a list of waiters.

use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll, ready};

use rustix::buffer::spare_capacity;
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Room a read makes in a full buffer, as tokio's reads into a `Vec` do:
/// a read into no room would return 0, which means the peer closed.
const ROOM_WHEN_FULL: usize = 64;

/// Makes [`ROOM_WHEN_FULL`] in `buf` when it has none; returns its room.
fn make_room(buf: &mut Vec<u8>) -> usize {
    if buf.len() == buf.capacity() {
        buf.reserve(ROOM_WHEN_FULL);
    }
    buf.capacity() - buf.len()
}

/// `recv` into the spare room of `buf` (made when there is none), retried
/// when a signal interrupts it; `buf` grows by what is read.
///
/// # Errors
/// The call's error, `WouldBlock` included.
pub fn recv_now(socket: impl AsFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    make_room(buf);
    loop {
        match rustix::net::recv(&socket, spare_capacity(buf), RecvFlags::empty()) {
            Err(Errno::INTR) => {}
            result => return result.map(|(read, _)| read).map_err(io::Error::from),
        }
    }
}

/// `send` of `bytes` with `flags` and `MSG_NOSIGNAL` (a reset peer is an
/// error, not a signal), retried when a signal interrupts it.
///
/// # Errors
/// The call's error, `WouldBlock` included.
pub fn send_now(socket: impl AsFd, bytes: &[u8], flags: SendFlags) -> io::Result<usize> {
    loop {
        match rustix::net::send(&socket, bytes, flags | SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => {}
            result => return result.map_err(io::Error::from),
        }
    }
}

/// Reads what a registered `stream` has into the spare room of `buf`
/// without waiting: `WouldBlock` when it has nothing.
///
/// # Errors
/// The read's error, `WouldBlock` included.
pub fn try_recv(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let room = make_room(buf);
    try_call(stream, Interest::READABLE, room, || recv_now(stream, buf))
}

/// Writes what a registered `stream` takes of `bytes` now: `WouldBlock`
/// when it takes nothing.
///
/// # Errors
/// The write's error, `WouldBlock` included.
pub fn try_send(stream: &TcpStream, bytes: &[u8], flags: SendFlags) -> io::Result<usize> {
    try_call(stream, Interest::WRITABLE, bytes.len(), || {
        send_now(stream, bytes, flags)
    })
}

/// Makes `call` on `stream` if tokio has seen it ready for `interest`, and
/// clears that readiness when the call finds nothing to do or does less
/// than the `room` it had: a short read emptied the socket's queue, a short
/// write filled its buffer. Without the second, the next wait would end at
/// once and its call find nothing, a wasted system call a request (tokio's
/// reads and writes clear it the same way). Bytes that come after the call
/// raise a new edge from the poller, which readiness cleared as of the
/// event seen before the call does not hide.
fn try_call(
    stream: &TcpStream,
    interest: Interest,
    room: usize,
    call: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut short = None;
    let result = stream.try_io(interest, || match call() {
        // `WouldBlock` is the only way to have `try_io` clear readiness;
        // what was done is kept aside.
        Ok(done) if done > 0 && done < room => {
            short = Some(done);
            Err(io::ErrorKind::WouldBlock.into())
        }
        result => result,
    });
    match short {
        Some(done) => Ok(done),
        None => result,
    }
}

/// Reads once into the spare room of `buf`, waiting until `stream` has
/// bytes (or its end).
///
/// # Errors
/// The read's error.
pub async fn recv(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_recv(stream, cx, buf)).await
}

/// Writes some of `bytes`, waiting until `stream` takes any.
///
/// # Errors
/// The write's error.
pub async fn send(stream: &TcpStream, bytes: &[u8], flags: SendFlags) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_send(stream, cx, bytes, flags)).await
}

/// Writes all of `bytes`, waiting for room as often as it takes.
///
/// # Errors
/// The write's error; `WriteZero` if the socket takes nothing.
pub async fn send_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match send(stream, bytes, SendFlags::empty()).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            written => bytes = &bytes[written..],
        }
    }
    Ok(())
}

/// Waits until `stream` is readable: its waker in the socket's own slot.
///
/// # Errors
/// The poller's error.
pub async fn readable(stream: &TcpStream) -> io::Result<()> {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await
}

/// [`recv`]'s poll.
fn poll_recv(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        match try_recv(stream, buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
}

/// [`send`]'s poll.
fn poll_send(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    bytes: &[u8],
    flags: SendFlags,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match try_send(stream, bytes, flags) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            result => return Poll::Ready(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of registered sockets on 127.0.0.1.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bound");
        let address = listener.local_addr().expect("address");
        let (connected, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (connected.expect("connected"), accepted.expect("accepted").0)
    }

    #[tokio::test]
    async fn bytes_sent_arrive_whole_and_a_close_reads_as_zero() {
        let (a, b) = pair().await;
        send_all(&a, b"GET / HTTP/1.1\r\n\r\n").await.expect("sent");
        let mut buf = Vec::new();
        while buf.len() < 18 {
            let read = recv(&b, &mut buf).await.expect("read");
            assert!(read > 0, "the peer has not closed");
        }
        assert_eq!(buf, b"GET / HTTP/1.1\r\n\r\n");
        drop(a);
        assert_eq!(
            recv(&b, &mut buf).await.expect("read"),
            0,
            "the close reads as 0"
        );
    }

    #[tokio::test]
    async fn a_read_with_nothing_there_would_block_and_a_full_buffer_gets_room() {
        let (a, b) = pair().await;
        let mut buf = Vec::new();
        let error = try_recv(&b, &mut buf).expect_err("nothing was sent");
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        send_all(&a, b"x").await.expect("sent");
        readable(&b).await.expect("readable");
        let mut full = Vec::with_capacity(1);
        full.push(b'a');
        assert_eq!(
            try_recv(&b, &mut full).expect("read"),
            1,
            "a full buffer is given room"
        );
        assert_eq!(full, b"ax");
    }

    /// Whether tokio still holds `stream` readable (no system call).
    fn held_readable(stream: &TcpStream) -> bool {
        let mut context = Context::from_waker(std::task::Waker::noop());
        stream.poll_read_ready(&mut context).is_ready()
    }

    #[tokio::test]
    async fn a_read_that_drains_the_socket_clears_its_readiness_and_a_full_one_does_not() {
        let (a, b) = pair().await;
        send_all(&a, b"0123456789").await.expect("sent");
        readable(&b).await.expect("readable");
        let mut small = Vec::with_capacity(4);
        assert_eq!(try_recv(&b, &mut small).expect("read"), 4);
        assert!(
            held_readable(&b),
            "a read that filled its room may have left bytes"
        );
        let mut big = Vec::with_capacity(4096);
        assert_eq!(try_recv(&b, &mut big).expect("read"), 6);
        assert!(
            !held_readable(&b),
            "a short read drained the socket: the next wait waits"
        );
        send_all(&a, b"more").await.expect("sent");
        readable(&b)
            .await
            .expect("new bytes make it readable again");
        assert_eq!(try_recv(&b, &mut big).expect("read"), 4);
        assert_eq!(big, b"456789more");
    }

    #[tokio::test]
    async fn a_write_to_a_reset_peer_is_an_error_not_a_signal() {
        let (a, b) = pair().await;
        socket2::SockRef::from(&b)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(b);
        let mut failed = None;
        for _ in 0..100 {
            match send(&a, b"x", SendFlags::empty()).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        let error = failed.expect("a write to a reset peer fails");
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "{error}"
        );
    }
}
