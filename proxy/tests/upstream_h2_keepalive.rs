//! Keep-alive PINGs on HTTP/2 upstream connections, on real loopback
//! sockets: a connection whose upstream went silent without a FIN or RST
//! is closed once a PING goes unanswered, and the next request goes on a
//! new connection. The PING interval and timeout are shortened for the
//! whole of this test binary.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use weir_proxy::upstream::h2::{KeepAlive, set_keep_alive};

mod h2_relay;
mod support;
use h2_relay::{DEADLINE, Relay, get, start_weir};

/// The keep-alive of this binary's connections: a silent upstream is let
/// go of within half a second.
const FAST: KeepAlive = KeepAlive {
    interval: Duration::from_millis(200),
    timeout: Duration::from_millis(300),
};

#[tokio::test]
async fn a_silent_h2_upstream_connection_is_closed_by_keep_alive_and_replaced() {
    set_keep_alive(FAST);
    let relay = Relay::start().await;
    // No request waits on the frozen connection: no request timeout is
    // involved.
    let weir = start_weir(relay.addr, DEADLINE).await;
    assert_eq!(get(weir.addr).await, 200);
    assert_eq!(relay.accepted(), 1);

    let frozen = relay.freeze_all();
    assert!(
        frozen[0].wait_closed(Duration::from_secs(3)).await,
        "weir kept the silent connection open"
    );
    let status = tokio::time::timeout(Duration::from_secs(2), get(weir.addr))
        .await
        .expect("an answer within 2 s");
    assert_eq!(status, 200);
    assert_eq!(relay.accepted(), 2, "the answer came on a new connection");
}
