//! Downstream limits on a real listener: a client that does not send its
//! request head in time is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_config::Snapshot;
use weir_proxy::{Listener, Metrics, Proxy, ServeOptions};

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(300);

async fn start() -> std::net::SocketAddr {
    let (_publisher, reader) = weir_config::channel(Snapshot::default());
    // Keep the publisher alive for the whole test process.
    std::mem::forget(_publisher);
    let proxy = Proxy::new(reader, Arc::new(Metrics::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let options = ServeOptions {
        header_read_timeout: HEADER_READ_TIMEOUT,
        ..ServeOptions::default()
    };
    tokio::spawn(async move {
        proxy
            .serve(
                Listener::new(listener).expect("registering the listener"),
                options,
                std::future::pending(),
            )
            .await
    });
    addr
}

/// Reads until the server closes; returns what it sent and how long it took
/// from `started` (taken before the connection was opened, so the server's
/// timers started after it whatever the scheduling).
async fn read_until_closed(stream: &mut TcpStream, started: Instant) -> (Vec<u8>, Duration) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, started.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after 5 s; received {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

#[tokio::test]
async fn a_slow_request_head_is_dropped() {
    let addr = start().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: slow.test\r\n")
        .await
        .expect("partial head");
    let (_, elapsed) = read_until_closed(&mut stream, started).await;
    assert!(
        elapsed >= HEADER_READ_TIMEOUT - Duration::from_millis(50),
        "closed too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_dropped() {
    let addr = start().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (seen, elapsed) = read_until_closed(&mut stream, started).await;
    assert!(
        seen.is_empty() || seen.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    assert!(
        elapsed >= HEADER_READ_TIMEOUT - Duration::from_millis(50),
        "closed too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn an_unmatched_request_gets_a_404_naming_host_and_path() {
    let addr = start().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /missing HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let (seen, _) = read_until_closed(&mut stream, started).await;
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(
        text.contains("nowhere.test") && text.contains("/missing"),
        "{text}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_dropped() {
    let addr = start().await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /missing HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await
        .expect("request");
    let (seen, elapsed) = read_until_closed(&mut stream, started).await;
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 404"));
    assert!(
        elapsed >= HEADER_READ_TIMEOUT - Duration::from_millis(50),
        "closed too early: {elapsed:?}"
    );
}
