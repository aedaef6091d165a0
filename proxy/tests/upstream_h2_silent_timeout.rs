//! A request that times out on an HTTP/2 upstream connection that read
//! nothing for longer than a keep-alive PING's answer may take puts that
//! connection aside, on real loopback sockets: the next request goes on a
//! new connection at once, before the keep-alive would notice. A request
//! whose own client stalls its upload leaves the connection alone.
//!
//! The keep-alive of this whole test binary answers a PING within 200 ms
//! (the silence after which a connection may be put aside) and sends none
//! before 30 s (so none does within a test).

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use weir_proxy::upstream::h2::{KeepAlive, set_keep_alive};

mod h2_relay;
mod support;
use h2_relay::{DEADLINE, Relay, get, stalled_upload, start_weir};

/// The keep-alive of this binary's connections: a connection silent for
/// 200 ms may be put aside; no PING goes out during a test.
const SHORT_TIMEOUT: KeepAlive = KeepAlive {
    interval: Duration::from_secs(30),
    timeout: Duration::from_millis(200),
};

/// The requests' timeout: well beyond [`SHORT_TIMEOUT`]'s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_request_timing_out_on_a_silent_h2_connection_puts_it_aside() {
    set_keep_alive(SHORT_TIMEOUT);
    let relay = Relay::start().await;
    let weir = start_weir(relay.addr, REQUEST_TIMEOUT).await;
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

#[tokio::test]
async fn a_client_stalling_its_upload_leaves_the_h2_connection_in_place() {
    set_keep_alive(SHORT_TIMEOUT);
    let relay = Relay::start().await;
    let weir = start_weir(relay.addr, REQUEST_TIMEOUT).await;
    assert_eq!(get(weir.addr).await, 200);
    assert_eq!(relay.accepted(), 1);

    // The upstream waits for the rest of the body, and sends nothing for
    // longer than the keep-alive's timeout: the client's stall.
    assert_eq!(
        stalled_upload(weir.addr).await,
        408,
        "the deadline passed while the body waited on its client"
    );
    assert_eq!(get(weir.addr).await, 200);
    assert_eq!(
        relay.accepted(),
        1,
        "the next request went on the same connection"
    );
}
