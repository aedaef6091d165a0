//! SIGTERM: weir stops accepting at once, `/readyz` turns 503, the request
//! in flight still completes, idle keep-alive connections are closed at
//! once, and the process exits 0.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir_e2e::{
    Conn, FakeUpstream, ForwardingPath, Route, Weir, WeirConfig, on_both_paths, wait_until, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let slow = FakeUpstream::start("stable").await;
    // Long enough for the checks below to run while it is in flight on a
    // loaded machine; short of the 10 s drain timeout.
    slow.set_delay(Duration::from_secs(6));
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[slow.addr])])).await;
    let http = weir.addrs.http;
    let admin = weir.addrs.admin;

    let mut conn = Conn::open(http).await.unwrap();
    let in_flight = tokio::spawn(async move { conn.get("/slow", &[]).await });
    wait_until(
        Duration::from_secs(5),
        "the slow request to reach the upstream",
        || async { (slow.hits() == 1).then_some(()) },
    )
    .await;

    let term = Instant::now();
    weir.sigterm();

    // New connections are refused while the slow request is still running.
    wait_until(
        Duration::from_secs(2),
        "new connections to be refused",
        || async {
            match TcpStream::connect(http).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            }
        },
    )
    .await;
    // Checked now, asserted last, so a failure here does not hide the rest.
    let readyz = readyz_after_sigterm(admin).await;
    assert!(
        !in_flight.is_finished(),
        "the checks above must run while the request is in flight ({:?} after SIGTERM)",
        term.elapsed()
    );

    let response = within(Duration::from_secs(10), "the in-flight request", in_flight)
        .await
        .expect("request task")
        .expect("the in-flight request completes after SIGTERM");
    assert_eq!(response.status, 200);
    assert_eq!(response.upstream(), "stable");

    // The request finished before weir exited (above); the limit only bounds a hang.
    let status = weir.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "weir exited with {status} after SIGTERM");
    assert_eq!(
        readyz.as_deref(),
        Ok("503"),
        "GET /readyz during the drain (SPEC 6: 503 from SIGTERM on)"
    );
}

/// Polls `/readyz` for up to 1.5 s; `Ok("503")` once it says so, else the
/// last thing seen.
async fn readyz_after_sigterm(admin: std::net::SocketAddr) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        let seen = match weir_e2e::get(admin, "/readyz").await {
            Ok(r) if r.status == 503 => return Ok("503".to_owned()),
            Ok(r) => format!("status {}", r.status),
            Err(e) => format!("error: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_paths!(an_idle_keep_alive_connection_is_closed_when_the_drain_starts);

/// A keep-alive connection waiting between requests holds no request, so
/// the drain closes it at once rather than when it idles out, and weir
/// exits without waiting for it.
async fn an_idle_keep_alive_connection_is_closed_when_the_drain_starts(path: ForwardingPath) {
    let stable = FakeUpstream::start("stable").await;
    let mut weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[stable.addr])]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    let answer = within(Duration::from_secs(10), "the first answer", async {
        client
            .write_all(b"GET /one HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        while !seen.ends_with(b"stable\n") {
            let n = client.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed before the answer ended: {seen:?}");
            seen.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    weir.sigterm();
    // Without the drain, the idle connection would close only after the
    // listener's header timeout (10 s); the drain closes it in moments.
    let after = within(
        Duration::from_secs(8),
        "the idle connection closed",
        async {
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
            rest
        },
    )
    .await;
    assert!(after.is_empty(), "bytes after the drain: {after:?}");
    let status = weir.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "weir exited with {status} after SIGTERM");
}
