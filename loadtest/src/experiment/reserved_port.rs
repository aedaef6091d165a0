//! Loopback ports held for a program that will listen on them later (weir,
//! Prometheus), so that nothing else is handed them meanwhile.
//!
//! A port bound and released is free only for a moment: any
//! `bind(127.0.0.1:0)` in the meantime may get it. On Linux the kernel
//! never picks a port that a socket is bound to for a bind to port 0; with
//! `SO_REUSEADDR` on the held socket, which never listens, a program that
//! binds the port explicitly with `SO_REUSEADDR` (tokio's and Go's
//! listeners do) still succeeds.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpSocket;

/// A `127.0.0.1` port held bound with `SO_REUSEADDR`, never listening.
#[derive(Debug)]
pub(crate) struct ReservedPort {
    /// The reserved address, for the program that will listen on it.
    pub(crate) addr: SocketAddr,
    // Bound, never listening; dropping it releases the reservation.
    _socket: TcpSocket,
}

// === impl ReservedPort ===

impl ReservedPort {
    /// Binds a fresh `127.0.0.1` port with `SO_REUSEADDR` and holds it.
    ///
    /// # Errors
    /// When no socket can be created or bound.
    pub(crate) fn bind() -> std::io::Result<ReservedPort> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = socket.local_addr()?;
        Ok(ReservedPort {
            addr,
            _socket: socket,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn no_bind_to_port_zero_gets_a_reserved_port_and_its_owner_binds_it() {
        let reserved = ReservedPort::bind().unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..5_000 {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            let port = listener.local_addr().map(|a| a.port()).ok();
            assert_ne!(
                port,
                Some(reserved.addr.port()),
                "handed out the reserved port"
            );
        }
        // std's listener sets SO_REUSEADDR, as tokio's and Go's do.
        let owner = TcpListener::bind(reserved.addr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(owner.local_addr().ok(), Some(reserved.addr));
    }
}
