//! Helpers shared by the proxy's integration tests.

use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// A loopback port held bound but not listening, without `SO_REUSEADDR`:
/// connections to it are refused and nothing else can bind it while the
/// returned socket lives (a released port could be taken by another test).
pub(crate) fn closed_port() -> (TcpSocket, SocketAddr) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(false).expect("clearing SO_REUSEADDR");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("binding 127.0.0.1:0");
    let addr = socket.local_addr().expect("bound address");
    (socket, addr)
}
