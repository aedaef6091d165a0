//! Loopback ports a test holds with a bound socket that never listens, so
//! that no other test in the same process is handed them:
//! [`ReservedPort`] for a program that will listen there later (weir,
//! Prometheus, chromedriver), [`ClosedPort`] for an address that must stay
//! unreachable (an upstream, receiver or admin URL nobody answers).
//!
//! A port that was bound and released is only free for a moment: another
//! test's `bind(127.0.0.1:0)` may get it, and a weir or fake upstream of
//! that test then answers there, or the intended program cannot bind. On
//! Linux the kernel never picks a port some socket is bound to for a bind
//! to port 0. With `SO_REUSEADDR` on the held socket, a program binding the
//! port explicitly with `SO_REUSEADDR` (std, tokio and Go listeners,
//! Chromium's server sockets) still succeeds, and once it listens nobody
//! else can bind it; without it, every other bind of the port fails and a
//! connection to it is refused (RST).

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpSocket;

/// A `127.0.0.1` port held bound with `SO_REUSEADDR` and not listening: no
/// `bind` to port 0 gets it, but a listener binding [`ReservedPort::addr`]
/// explicitly does. Hold it until the program meant to listen there is up.
#[derive(Debug)]
pub struct ReservedPort {
    /// The reserved address, to hand to the program that will listen on it.
    pub addr: SocketAddr,
    // Bound, never listening; dropping it releases the reservation.
    _socket: TcpSocket,
}

/// A `127.0.0.1` port held bound but not listening: connections to
/// [`ClosedPort::addr`] are refused and nothing else can bind it until the
/// guard drops. Keep it in a named variable for the whole test.
#[derive(Debug)]
pub struct ClosedPort {
    /// The address whose connections are refused.
    pub addr: SocketAddr,
    // Bound, never listening; dropping it releases the port.
    _socket: TcpSocket,
}

// === impl ReservedPort ===

impl ReservedPort {
    /// Binds a fresh `127.0.0.1` port with `SO_REUSEADDR` and holds it.
    /// Needs no tokio runtime.
    ///
    /// # Panics
    /// When no socket can be created or bound.
    pub fn bind() -> Self {
        // With SO_REUSEADDR on both sides, a listener may bind the port while
        // this socket holds it, as long as this one never listens.
        let (socket, addr) = hold_loopback_port(true);
        Self {
            addr,
            _socket: socket,
        }
    }
}

// === impl ClosedPort ===

impl ClosedPort {
    /// Binds a fresh `127.0.0.1` port without `SO_REUSEADDR` and holds it.
    /// Needs no tokio runtime.
    ///
    /// # Panics
    /// When no socket can be created or bound.
    pub fn bind() -> Self {
        // std's and tokio's listeners set SO_REUSEADDR; two such sockets may
        // share a port that neither listens on. Without it on this side, any
        // other bind of the port fails.
        let (socket, addr) = hold_loopback_port(false);
        Self {
            addr,
            _socket: socket,
        }
    }
}

/// A socket bound to a fresh `127.0.0.1` port, `SO_REUSEADDR` as `reuse_addr`,
/// and its address.
fn hold_loopback_port(reuse_addr: bool) -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().expect("creating a TCP socket");
    socket
        .set_reuseaddr(reuse_addr)
        .expect("setting SO_REUSEADDR");
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .expect("binding 127.0.0.1:0");
    let addr = socket.local_addr().expect("bound socket has an address");
    (socket, addr)
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// How many ports to ask the kernel for while one is reserved.
    const PORT_ZERO_BINDS: usize = 20_000;

    #[test]
    fn a_listener_can_bind_and_serve_a_reserved_port() {
        let reserved = ReservedPort::bind();
        // std's listener sets SO_REUSEADDR, as weir's and Prometheus' do.
        let listener = TcpListener::bind(reserved.addr).expect("the owner binds the port");
        assert_eq!(listener.local_addr().expect("an address"), reserved.addr);
        let mut client = TcpStream::connect(reserved.addr).expect("the listener accepts");
        let (mut server, _) = listener.accept().expect("a connection");
        client.write_all(b"ping").expect("writing");
        let mut received = [0; 4];
        server.read_exact(&mut received).expect("reading");
        assert_eq!(&received, b"ping");
    }

    #[test]
    fn no_bind_to_port_zero_gets_a_reserved_port() {
        let reserved = ReservedPort::bind();
        for _ in 0..PORT_ZERO_BINDS {
            let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
            let addr = listener.local_addr().expect("an address");
            assert_ne!(
                addr.port(),
                reserved.addr.port(),
                "the kernel handed out the reserved port"
            );
        }
    }

    #[test]
    fn once_the_owner_listens_nobody_else_binds_the_port() {
        let reserved = ReservedPort::bind();
        let _owner = TcpListener::bind(reserved.addr).expect("the owner binds the port");
        let error = TcpListener::bind(reserved.addr).expect_err("the owner listens there");
        assert_eq!(error.kind(), ErrorKind::AddrInUse, "{error}");
    }

    #[test]
    fn a_connection_to_a_closed_port_is_refused() {
        let closed = ClosedPort::bind();
        let error = TcpStream::connect(closed.addr).expect_err("nothing listens there");
        assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}");
    }

    #[test]
    fn no_listener_can_bind_a_closed_port_while_it_is_held() {
        let closed = ClosedPort::bind();
        // std's listener sets SO_REUSEADDR, as weir's and the fake
        // upstreams' listeners do.
        let error = TcpListener::bind(closed.addr).expect_err("the port is held");
        assert_eq!(error.kind(), ErrorKind::AddrInUse, "{error}");
        let error = TcpListener::bind((Ipv4Addr::UNSPECIFIED, closed.addr.port()))
            .expect_err("the port is held on 127.0.0.1");
        assert_eq!(error.kind(), ErrorKind::AddrInUse, "{error}");
    }

    #[test]
    fn a_socket_sharing_ports_cannot_bind_a_closed_port_either() {
        let closed = ClosedPort::bind();
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        let error = socket.bind(closed.addr).expect_err("the port is held");
        assert_eq!(error.kind(), ErrorKind::AddrInUse, "{error}");
    }
}
