//! Client connection limits on the real binary: a listener over its
//! `maxConnections` closes new clients at once and counts them, the admin
//! API keeps answering, a connection that lingers keeps its place, a
//! process with few file descriptors caps its clients below the limit
//! instead of running out, and the last descriptors stay for the admin API
//! and reloads however many upstream sockets HTTP/2 streams ask for.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_e2e::{FakeUpstream, ForwardingPath, Route, Weir, WeirConfig, get, wait_until, within};

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

/// Waits until the plain listener has no connection open (`what`), then
/// sends it a `GET /`.
async fn get_once_none_open(weir: &Weir, what: &str) -> weir_e2e::Response {
    wait_until(LIMIT, what, || async {
        (gauge(weir, "weir_connections_open", "plain").await == 0.0).then_some(())
    })
    .await;
    within(LIMIT, "GET / once none is open", get(weir.addrs.http, "/"))
        .await
        .unwrap()
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
    let served = get_once_none_open(&weir, "the held connections closed").await;
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

/// A connection weir closed with part of an upload unread lingers (it
/// shuts its side, then reads and drops what the client still sends) and
/// keeps its place under `maxConnections` until the client closes, on
/// both paths: lingering sockets cannot pile up past the limit.
async fn a_lingering_connection_keeps_its_place_under_the_limit(path: ForwardingPath) {
    let stable = FakeUpstream::start("stable").await;
    let weir = path
        .start_weir(
            WeirConfig::new([Route::new("web", &[stable.addr]).hosts(&["shop.test"])])
                .max_connections(1),
        )
        .await;
    let mut first = TcpStream::connect(weir.addrs.http).await.unwrap();
    let answer = within(LIMIT, "the 404 and weir's end of the stream", async {
        // No route for the host: answered at once, with the body unread.
        first
            .write_all(b"POST /up HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 1000000\r\n\r\nfirst bytes")
            .await
            .unwrap();
        let mut raw = Vec::new();
        first.read_to_end(&mut raw).await.unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    // weir's side is shut, the client's open: the connection lingers, and
    // holds the only place.
    let mut second = half_sent(weir.addrs.http).await;
    let mut buf = [0u8; 64];
    let read = within(LIMIT, "the second connection closed", second.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{}: {read:?}", path.name());
    assert_eq!(
        gauge(&weir, "weir_connections_refused_total", "plain").await,
        1.0,
        "{}",
        path.name()
    );
    assert_eq!(gauge(&weir, "weir_connections_open", "plain").await, 1.0);
    drop(first);
    let served = get_once_none_open(&weir, "the lingering connection closed").await;
    assert_eq!(served.status, 404);
}

weir_e2e::on_both_paths!(a_lingering_connection_keeps_its_place_under_the_limit);

/// The admin port holds at most 256 connections, and one source at most
/// 32 waiting for a whole head. When one client opens 256 that say
/// nothing, its oldest are closed once a second old or when the port is
/// full, and a health check still gets through at once while the proxy
/// keeps serving. A client that says
/// nothing is let go after 10 s, one that sent a command's head but not
/// its body (answering, so never the one closed) gets a 408 then, and the
/// admin API answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_caps_its_connections_and_lets_silent_ones_go() {
    const ADMIN_CONNECTIONS: usize = 256;
    /// The admin API's wait for a first byte or a body, and some slack.
    const CLIENT_LIMIT: Duration = Duration::from_secs(20);
    /// Far less than the 10 s a silent connection is otherwise given.
    const AT_ONCE: Duration = Duration::from_secs(3);
    let upstream = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream.addr])])).await;
    let admin = weir.addrs.admin;

    let mut bodiless = TcpStream::connect(admin).await.unwrap();
    bodiless
        .write_all(
            b"POST /api/v1/routes/web/pause HTTP/1.1\r\nHost: admin.test\r\nContent-Length: 10\r\n\r\n",
        )
        .await
        .unwrap();
    let mut silent = Vec::new();
    for _ in 1..ADMIN_CONNECTIONS {
        silent.push(TcpStream::connect(admin).await.unwrap());
    }
    let health = within(
        AT_ONCE,
        "GET /healthz with the admin port full",
        get(admin, "/healthz"),
    )
    .await
    .unwrap();
    assert_eq!(health.status, 200);
    let mut byte = [0u8; 1];
    let oldest = within(
        AT_ONCE,
        "the oldest silent connection closed",
        silent[0].read(&mut byte),
    )
    .await;
    assert!(matches!(oldest, Ok(0) | Err(_)), "{oldest:?}");
    let answer = within(
        LIMIT,
        "GET / while the admin port is full",
        get(weir.addrs.http, "/"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);

    let mut head = Vec::new();
    within(
        CLIENT_LIMIT,
        "the 408 of the command without its body",
        bodiless.read_to_end(&mut head),
    )
    .await
    .unwrap();
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("did not come whole within 10 s"), "{head}");
    for stream in &mut silent {
        let read = within(
            CLIENT_LIMIT,
            "a silent admin client let go",
            stream.read(&mut byte),
        )
        .await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let health = within(LIMIT, "GET /healthz", get(admin, "/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status, 200);
}

/// An HTTP/2 client connection to `addr`.
async fn h2_client(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// `GET /call/{i}` on the HTTP/2 connection of `sender` to `addr`: the
/// answer's status.
async fn h2_get(
    mut sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    addr: SocketAddr,
    i: usize,
) -> u16 {
    let request = http::Request::get(format!("http://{addr}/call/{i}"))
        .version(http::Version::HTTP_2)
        .body(http_body_util::Empty::new())
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One HTTP/2 client whose 100 streams would each need an upstream
/// connection, against a weir with 96 open files and a hung upstream: the
/// requests weir can make no socket for are answered `503` at once and are
/// weir's own failure, not the upstream's. No connect error is counted and
/// the role's analysis counts neither a request nor an error for them, so
/// a few clients cannot abort a rollout this way; the others time out
/// (`504`), the upstream's failure, counted as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_weir_has_no_socket_for_are_its_own_503_not_the_upstreams_errors() {
    let stable = FakeUpstream::start("stable").await;
    stable.set_delay(Duration::from_secs(3));
    let weir = Weir::start(
        WeirConfig::new([Route::new("web", &[stable.addr]).timeouts("1s", "1s")])
            .open_file_limit(96),
    )
    .await;
    let sender = h2_client(weir.addrs.http).await;
    let calls = (0..100).map(|i| h2_get(sender.clone(), weir.addrs.http, i));
    let statuses = within(
        Duration::from_secs(30),
        "100 streams answered",
        futures_util::future::join_all(calls),
    )
    .await;
    let answered = |code| statuses.iter().filter(|&&s| s == code).count();
    let (timed_out, own) = (answered(504), answered(503));
    assert_eq!(timed_out + own, 100, "{statuses:?}");
    assert!(
        own > 0 && timed_out > 0,
        "{timed_out} timed out, {own} out of sockets"
    );
    assert!(
        weir.log().contains("out of sockets"),
        "no warning:\n{}",
        weir.log()
    );
    let metrics = weir.metrics().await;
    let errors = |kind| {
        metrics.sum(
            "weir_upstream_errors_total",
            &[("route", "web"), ("kind", kind)],
        )
    };
    assert_eq!(
        (errors("connect"), errors("timeout")),
        (0.0, timed_out as f64),
        "{}",
        metrics.text
    );
    let sent = ("role", "stable");
    assert_eq!(
        metrics.sum("weir_http_requests_total", &[sent, ("code", "503")]),
        own as f64
    );
    let counters = weir.admin().get("/api/v1/counters").await.unwrap().json();
    let counts = &counters["routes"]["web"]["stable"];
    let timed_out = Some(timed_out as u64);
    assert_eq!(
        (counts["requests"].as_u64(), counts["errors"].as_u64()),
        (timed_out, timed_out),
        "{counters}"
    );
}

/// With 110 open files, the last 64 kept for weir's own work, one HTTP/2
/// client whose 100 streams hang on their upstream takes every descriptor
/// the proxy's connections may use: its other streams get weir's own `503`
/// at once, and while the streams hang the admin API answers, its metrics
/// render and a reload reads the config file, where without the reserve
/// each of them would find no descriptor left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_holding_every_upstream_socket_leave_the_admin_api_and_reloads_working() {
    // Fewer than weir's own descriptors, the client's connection and 100
    // upstream connections.
    const OPEN_FILES: u64 = 110;
    let stable = FakeUpstream::start("stable").await;
    stable.set_delay(Duration::from_secs(60));
    let route = || Route::new("web", &[stable.addr]).timeouts("1s", "30s");
    let mut weir = Weir::start(WeirConfig::new([route()]).open_file_limit(OPEN_FILES)).await;
    let sender = h2_client(weir.addrs.http).await;
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let call = h2_get(sender.clone(), weir.addrs.http, i);
            let refused = std::sync::Arc::clone(&refused);
            tokio::spawn(async move {
                let status = call.await;
                if status == 503 {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                status
            })
        })
        .collect();
    let refused_now = || refused.load(std::sync::atomic::Ordering::SeqCst);
    wait_until(LIMIT, "each stream at its upstream or refused", || async {
        (stable.hits() + refused_now() >= 100).then_some(())
    })
    .await;
    assert!(
        stable.hits() > 0 && refused_now() > 0,
        "{} streams reached the upstream, {} were refused",
        stable.hits(),
        refused_now()
    );

    for path in ["/healthz", "/api/v1/routes", "/metrics"] {
        let answer = within(LIMIT, path, get(weir.addrs.admin, path))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    }
    within(
        LIMIT,
        "a reload",
        weir.reload(&WeirConfig::new([route().timeouts("2s", "30s")]).open_file_limit(OPEN_FILES)),
    )
    .await;
    assert!(
        !weir.log().contains("Too many open files"),
        "weir ran out of descriptors:\n{}",
        weir.log()
    );
    assert!(
        weir.log().contains("kept for the admin API"),
        "the refusals are not explained:\n{}",
        weir.log()
    );
    for call in calls {
        call.abort();
    }
}
