//! Client connection limits on the real binary: a listener over its
//! `maxConnections` closes new clients at once and counts them, the admin
//! API keeps answering, and a process with few file descriptors caps its
//! clients below the limit instead of running out.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_e2e::{FakeUpstream, Route, Weir, WeirConfig, get, wait_until, within};

const LIMIT: Duration = Duration::from_secs(10);

/// A client that sent half a request head and waits.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A refused connection may already be closed: the write may fail.
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: held.test\r\n")
        .await;
    stream
}

async fn gauge(weir: &Weir, name: &str, listener: &str) -> f64 {
    weir.metrics().await.sum(name, &[("listener", listener)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_closes_new_clients_and_the_admin_api_still_answers() {
    let stable = FakeUpstream::start("stable").await;
    let weir =
        Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).max_connections(4)).await;

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(half_sent(weir.addrs.http).await);
    }
    wait_until(LIMIT, "four open connections", || async {
        (gauge(&weir, "weir_connections_open", "plain").await == 4.0).then_some(())
    })
    .await;

    let mut fifth = half_sent(weir.addrs.http).await;
    let mut buf = [0u8; 64];
    let read = within(LIMIT, "the fifth connection closed", fifth.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_until(LIMIT, "the refused connection counted", || async {
        (gauge(&weir, "weir_connections_refused_total", "plain").await >= 1.0).then_some(())
    })
    .await;

    let health = within(LIMIT, "GET /healthz", get(weir.addrs.admin, "/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status, 200);

    drop(held);
    wait_until(LIMIT, "the held connections closed", || async {
        (gauge(&weir, "weir_connections_open", "plain").await == 0.0).then_some(())
    })
    .await;
    let served = within(LIMIT, "GET / after the limit", get(weir.addrs.http, "/"))
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(served.text(), "stable\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_256_open_files_300_half_open_clients_leave_the_admin_api_answering() {
    let stable = FakeUpstream::start("stable").await;
    let weir =
        Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])]).open_file_limit(256))
            .await;

    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(half_sent(weir.addrs.http).await);
    }
    wait_until(LIMIT, "clients over the budget refused", || async {
        (gauge(&weir, "weir_connections_refused_total", "plain").await >= 1.0).then_some(())
    })
    .await;
    let open = gauge(&weir, "weir_connections_open", "plain").await;
    assert!(
        open <= 96.0,
        "(256 - 64) / 2 client connections at most, {open} open"
    );
    for path in ["/healthz", "/readyz"] {
        let answer = within(LIMIT, path, get(weir.addrs.admin, path))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{path}");
    }
    assert!(
        !weir.log().contains("Too many open files"),
        "weir ran out of descriptors:\n{}",
        weir.log()
    );
    drop(held);
}
