//! [`ClosedPort`]: a loopback address that stays unreachable for as long as
//! a test holds it, for upstreams, receivers and admin URLs nobody answers.
//!
//! A port that was bound and released is only free
//! for a moment: a weir or a fake upstream started by another test in the
//! same process may take it and answer. A [`ClosedPort`] keeps its socket
//! bound but not listening, without `SO_REUSEADDR`, so on Linux a connection
//! to it is refused (RST) and no other socket can bind the port.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpSocket;

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

// === impl ClosedPort ===

impl ClosedPort {
    /// Binds a fresh `127.0.0.1` port without `SO_REUSEADDR` and holds it.
    /// Needs no tokio runtime.
    ///
    /// # Panics
    /// When no socket can be created or bound.
    pub fn bind() -> Self {
        let socket = TcpSocket::new_v4().expect("creating a TCP socket");
        // std's and tokio's listeners set SO_REUSEADDR; two such sockets may
        // share a port that neither listens on. Without it on this side, any
        // other bind of the port fails.
        socket.set_reuseaddr(false).expect("clearing SO_REUSEADDR");
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
    use std::io::ErrorKind;
    use std::net::{TcpListener, TcpStream};

    use super::*;

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
