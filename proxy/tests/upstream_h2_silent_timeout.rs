//! A request that times out on an HTTP/2 upstream connection that read
//! nothing meanwhile puts that connection aside, on real loopback sockets:
//! the next request goes on a new connection at once, long before the
//! keep-alive (left at weir's values in this test binary) would notice.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

mod h2_relay;
use h2_relay::{DEADLINE, Relay, get, start_weir};

#[tokio::test]
async fn a_request_timing_out_on_a_silent_h2_connection_puts_it_aside() {
    let relay = Relay::start().await;
    let weir = start_weir(relay.addr, Duration::from_secs(1)).await;
    assert_eq!(get(weir.addr).await, 200);
    assert_eq!(relay.accepted(), 1);

    let frozen = relay.freeze_all();
    assert_eq!(
        get(weir.addr).await,
        504,
        "the silent connection answers nothing"
    );
    assert_eq!(
        get(weir.addr).await,
        200,
        "the next request took a new connection"
    );
    assert_eq!(relay.accepted(), 2);
    // With its one stream given up and no request left on it, the silent
    // connection is closed.
    assert!(
        frozen[0].wait_closed(DEADLINE).await,
        "weir kept the silent connection open"
    );
}
