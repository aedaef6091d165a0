//! A request that times out on an HTTP/2 upstream that is alive but slower
//! than the request's deadline (a gRPC call's short deadline, say), on real
//! loopback sockets: the connection read nothing while the request waited,
//! yet for far less than a keep-alive PING's answer may take (weir's 10 s,
//! left as they are in this test binary), so it stays in use.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

#[allow(dead_code, reason = "no connection is frozen here")]
mod h2_relay;
mod support;
use h2_relay::{Relay, get, get_path, start_weir};

/// The requests' timeout: far shorter than the 3 s `/slow` takes, and long
/// enough for a connection and its handshake on a loaded machine.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_request_timing_out_on_a_slow_h2_upstream_leaves_the_connection_in_use() {
    let relay = Relay::start().await;
    let weir = start_weir(relay.addr, REQUEST_TIMEOUT).await;
    assert_eq!(get(weir.addr).await, 200);
    assert_eq!(relay.accepted(), 1);

    assert_eq!(
        get_path(weir.addr, "/slow").await,
        504,
        "the upstream answers after the deadline"
    );
    assert_eq!(get(weir.addr).await, 200);
    assert_eq!(
        relay.accepted(),
        1,
        "the next request went on the same connection"
    );
}
