//! [`ReservedPort`]: a loopback port kept for a program that will listen on
//! it later (weir, Prometheus, chromedriver), so that no other test is handed
//! the same port in between.
//!
//! A port that was bound and released is only free
//! for a moment: another test's `bind(127.0.0.1:0)` may get it before the
//! intended program binds it, which then fails to start or, worse, the test
//! talks to someone else's program. A [`ReservedPort`] keeps a socket bound
//! to the port, never listening, with `SO_REUSEADDR` set. On Linux the
//! kernel then never picks that port for a `bind` to port 0, while a program
//! that binds the port explicitly with `SO_REUSEADDR` (std, tokio and Go
//! listeners, Chromium's server sockets) succeeds; once it listens, nobody
//! else can bind the port.

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

// === impl ReservedPort ===

impl ReservedPort {
    /// Binds a fresh `127.0.0.1` port with `SO_REUSEADDR` and holds it.
    /// Needs no tokio runtime.
    ///
    /// # Panics
    /// When no socket can be created or bound.
    pub fn bind() -> Self {
        let socket = TcpSocket::new_v4().expect("creating a TCP socket");
        // With SO_REUSEADDR on both sides, a listener may bind the port while
        // this socket holds it, as long as this one never listens.
        socket.set_reuseaddr(true).expect("setting SO_REUSEADDR");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("binding 127.0.0.1:0");
        let addr = socket.local_addr().expect("bound socket has an address");
        Self {
            addr,
            _socket: socket,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
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
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
    }
}
