//! weir's own HTTP/1 path, whatever `WEIR_FORWARDING_PATH` the suite runs
//! with: upstream connections reused after clean answers, what it does not
//! do handed to hyper on the same connection, and a path name it does not
//! know refused at start.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use weir_e2e::{
    ClosedPort, ForwardingPath, LARGE_BODY, LargeBodyUpstream, LoadtestUpstream, RecordingUpstream,
    Reply, Route, UpstreamRequest, Weir, WeirConfig, raw_request, read_through_head,
    send_then_reset_while_stopped, wait_until, within,
};

const LIMIT: Duration = Duration::from_secs(20);

/// Reads one response with a `Content-Length` body off `stream`; returns
/// the head and the body.
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                return (head, raw[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "closed early: {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_after_clean_answers_only() {
    let upstream = RecordingUpstream::start(|r: &UpstreamRequest| {
        if r.target == "/close" {
            Reply::close("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        } else {
            Reply::ok("stable")
        }
    })
    .await;
    let weir = ForwardingPath::Own
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    within(LIMIT, "the requests", async {
        for path in ["/a", "/b", "/close", "/c", "/d"] {
            let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let (head, _) = read_response(&mut client).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
    })
    .await;
    let connections: Vec<(String, usize)> = upstream
        .requests()
        .iter()
        .map(|r| (r.target.clone(), r.connection))
        .collect();
    assert_eq!(
        connections,
        [
            ("/a".to_owned(), 0),
            ("/b".to_owned(), 0),
            ("/close".to_owned(), 0),
            ("/c".to_owned(), 1),
            ("/d".to_owned(), 1),
        ],
        "one connection until the upstream closed it"
    );
    assert_eq!(upstream.violations(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_after_a_plain_request_is_handed_to_hyper() {
    let echo = LoadtestUpstream::start("echo", &[]);
    let weir = ForwardingPath::Own
        .start_weir(WeirConfig::new([Route::new("ws", &[echo.addr])]))
        .await;
    within(LIMIT, "the exchange", async {
        let mut stream = TcpStream::connect(weir.addrs.http).await.unwrap();
        stream
            .write_all(b"GET /plain HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let url = format!("ws://{}/chat", weir.addrs.http);
        let (mut ws, response) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("websocket handshake on the same connection");
        assert_eq!(response.status(), 101);
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        ws.close(None).await.unwrap();
    })
    .await;
    assert_eq!(echo.stats().await["websockets"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_forwarding_path_stops_weir_with_its_name() {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let mut weir = Weir::start_unready(
        WeirConfig::new([Route::new("web", &[upstream.addr])])
            .env("WEIR_FORWARDING_PATH", "fastest"),
    );
    let status = weir.wait_exit(LIMIT).await;
    assert!(!status.success());
    let log = weir.log();
    assert!(
        log.contains("WEIR_FORWARDING_PATH") && log.contains("\"fastest\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weirs_own_answer_to_a_sticky_request_still_sets_the_issued_cookie() {
    // Nothing listens there: every request is answered 502 by weir.
    let unreachable = ClosedPort::bind();
    let weir = ForwardingPath::Own
        .start_weir(WeirConfig::new([
            Route::new("web", &[unreachable.addr]).sticky("weir-web")
        ]))
        .await;
    let head = within(LIMIT, "the request", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut client).await.0
    })
    .await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("set-cookie: weir-web="),
        "{head}"
    );
}

/// An upstream that answers 413 as soon as it has a head, without reading
/// the body, and keeps the connection open, reading nothing more.
async fn early_413_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_through_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
            .await
            .unwrap();
        std::future::pending::<()>().await;
    });
    upstream
}

/// An answer that comes before the upload ends reaches the client at
/// once, and says the connection closes.
async fn an_upstream_answer_before_the_upload_ends_reaches_the_client(path: ForwardingPath) {
    let upstream = early_413_upstream().await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let (head, body) = within(LIMIT, "the early answer", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        // A megabyte announced, a few bytes sent: the rest never comes.
        client
            .write_all(b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 1000000\r\n\r\nfirst bytes")
            .await
            .unwrap();
        read_response(&mut client).await
    })
    .await;
    assert_closing_answer(&head, 413, path);
    assert_eq!(body, b"too big\n");
}

/// A client still uploading when the upstream answered early reads the
/// answer and a clean close: weir lingers rather than resetting it, and
/// does not hold the upload for an upstream that reads no more.
async fn a_client_still_uploading_after_an_early_answer_is_not_reset(path: ForwardingPath) {
    let upstream = early_413_upstream().await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let answer = upload_past_the_answer(&weir, "shop.test").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("too big\n"), "{answer}");
}

/// A client still uploading when weir answered `404` itself reads it and
/// a clean close.
async fn a_client_still_uploading_after_a_404_is_not_reset(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("stable")).await;
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream.addr]).hosts(&["shop.test"])
        ]))
        .await;
    let answer = upload_past_the_answer(&weir, "nowhere.test").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert_eq!(upstream.requests().len(), 0);
}

/// Uploads a body far larger than the sockets' buffers hold to `host`,
/// whose answer comes before the body is read: the client is still
/// writing when weir has answered. Closed with those bytes unread, weir's
/// socket would be reset, and the client's writes would fail. Asserts that
/// every write succeeds and the answer ends with a clean close; returns
/// the answer.
async fn upload_past_the_answer(weir: &Weir, host: &str) -> String {
    const BODY: usize = 16 << 20;
    let head = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {BODY}\r\n\r\n");
    let (written, answer, end) = within(LIMIT, "the upload and its answer", async {
        let client = TcpStream::connect(weir.addrs.http).await.unwrap();
        let (mut reader, mut writer) = client.into_split();
        let upload = tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..BODY / chunk.len() {
                writer.write_all(&chunk).await?;
            }
            writer.shutdown().await
        });
        let written = upload.await.unwrap();
        let mut raw = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            match reader.read(&mut chunk).await {
                Ok(0) => break Ok(()),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(error) => break Err(error),
            }
        };
        (written, String::from_utf8_lossy(&raw).into_owned(), end)
    })
    .await;
    assert!(written.is_ok(), "the upload failed: {written:?}");
    assert!(
        end.is_ok(),
        "the answer ended with {end:?}, not a clean close"
    );
    answer
}

/// Reads from `stream` until the peer closes it; what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `GET /warm` on a new client connection, which leaves an idle
/// upstream connection in the pool, then `request` on the same client
/// connection; the answer to `request`.
async fn after_a_pooled_exchange(weir: &Weir, request: &[u8]) -> (String, Vec<u8>) {
    within(LIMIT, "the requests", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(b"GET /warm HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        client.write_all(request).await.unwrap();
        read_response(&mut client).await
    })
    .await
}

/// A POST sent whole on a pooled connection that the upstream closes
/// without answering may have been acted on: it is answered 502, never
/// sent a second time (RFC 9112 section 9.3.1).
async fn a_post_the_upstream_closed_on_unanswered_is_not_sent_again(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|r: &UpstreamRequest| {
        if r.method == "POST" {
            // Read whole, then the connection closes without a byte.
            Reply::close(Vec::new())
        } else {
            Reply::ok("warm")
        }
    })
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let (head, _) = after_a_pooled_exchange(
        &weir,
        b"POST /pay HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nmoney",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let posts = upstream
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "the POST reached the upstream {posts} times");
}

/// A GET sent on a pooled connection that the upstream closes without
/// answering is sent once more, on a fresh connection, and answered: the
/// upstream cannot have acted on it any differently (RFC 9112 section
/// 9.3.1).
async fn a_get_the_upstream_closed_on_unanswered_is_sent_again_once(path: ForwardingPath) {
    let closed_once = std::sync::atomic::AtomicBool::new(false);
    let upstream = RecordingUpstream::start(move |r: &UpstreamRequest| {
        if r.target == "/flaky" && !closed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Reply::close(Vec::new())
        } else {
            Reply::ok(&format!("answered {}", r.target))
        }
    })
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let (head, body) =
        after_a_pooled_exchange(&weir, b"GET /flaky HTTP/1.1\r\nHost: shop.test\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"answered /flaky");
    let flaky: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.target == "/flaky")
        .collect();
    assert_eq!(flaky.len(), 2, "{flaky:?}");
    assert_ne!(flaky[0].connection, flaky[1].connection);
}

/// An HTTP/1.0 client cannot take an interim answer: its
/// `Expect: 100-continue` is ignored (RFC 9110 section 10.1.1), as hyper does.
async fn an_http_1_0_client_is_never_sent_100_continue(path: ForwardingPath) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (head_seen, head_arrived) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut head_seen = Some(head_seen);
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                if let Some(signal) = head_seen.take() {
                    let _ = signal.send(());
                }
                if seen.len() >= end + 4 + 5 {
                    break;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0);
            seen.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let raw = within(LIMIT, "the upload", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(
                b"POST /up HTTP/1.0\r\nHost: shop.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            )
            .await
            .unwrap();
        // The body once the upstream has the head, as a client that
        // stops waiting for the 100 would send it.
        head_arrived.await.unwrap();
        client.write_all(b"hello").await.unwrap();
        read_until_closed(&mut client).await
    })
    .await;
    let text = String::from_utf8_lossy(&raw);
    // hyper answers an HTTP/1.0 request as HTTP/1.0, weir's own path as 1.1.
    assert!(
        text.starts_with("HTTP/1.") && text[8..].starts_with(" 200"),
        "{text}"
    );
    assert!(!text.contains("100 Continue"), "{text}");
}

/// The same exchanges, ended in different ways, are counted once each in
/// `weir_http_requests_total` with the same codes on both paths.
async fn every_request_is_counted_once_with_its_code(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|r: &UpstreamRequest| match r.target.as_str() {
        "/cut" => Reply::close("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
        "/garbage" => Reply::close("garbage\r\n\r\n"),
        _ => Reply::ok("fine"),
    })
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let exchanges: [&[u8]; 6] = [
        b"GET /ok HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        b"HEAD /ok HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        b"GET /cut HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        b"GET /garbage HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        // The client leaves inside its body.
        b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\nten bytes.",
        // The client leaves after the 100 Continue, before its body.
        b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    ];
    within(LIMIT, "the exchanges", async {
        for (i, request) in exchanges.iter().enumerate() {
            let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
            client.write_all(request).await.unwrap();
            if i < 4 {
                read_until_closed(&mut client).await;
            } else if i == 5 {
                let mut interim = [0u8; 25];
                client.read_exact(&mut interim).await.unwrap();
                assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            drop(client);
        }
    })
    .await;
    let counts = weir_e2e::wait_until(LIMIT, "every exchange counted", || async {
        let metrics = weir.metrics().await;
        let total = metrics.sum("weir_http_requests_total", &[]);
        if total < exchanges.len() as f64 {
            return None;
        }
        let mut by_code: Vec<(String, f64)> = metrics
            .samples
            .iter()
            .filter(|s| s.name == "weir_http_requests_total" && s.value > 0.0)
            .map(|s| {
                let code = s.labels.iter().find(|(n, _)| n == "code").unwrap();
                (code.1.clone(), s.value)
            })
            .collect();
        by_code.sort_by(|a, b| a.0.cmp(&b.0));
        Some(by_code)
    })
    .await;
    let mut counts = counts;
    if path == ForwardingPath::Hyper {
        // hyper's server reports a client that left inside its body either
        // as the body's error (400) or by dropping the request for the
        // closed connection (recorded 499), whichever it notices first.
        let left: f64 = counts
            .iter()
            .filter(|(code, _)| code == "499")
            .map(|(_, n)| n)
            .sum();
        counts.retain(|(code, _)| code != "499");
        match counts.iter_mut().find(|(code, _)| code == "400") {
            Some((_, n)) => *n += left,
            None if left > 0.0 => counts.push(("400".to_owned(), left)),
            None => {}
        }
        counts.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let want = [("200", 3.0), ("400", 2.0), ("502", 1.0)].map(|(code, n)| (code.to_owned(), n));
    assert_eq!(counts, want, "{}", path.name());
}

/// A connection that never sends a byte holds a slot only for the header
/// timeout (10 s), not for the keep-alive wait between requests (75 s),
/// as on hyper's server, nginx (`client_header_timeout`) and HAProxy
/// (`timeout http-request`).
async fn a_connection_that_never_sends_a_head_is_closed_after_the_header_timeout(
    path: ForwardingPath,
) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    // Well past the header timeout, well before the keep-alive one.
    let sent = within(
        Duration::from_secs(45),
        "the silent connection closed",
        async { read_until_closed(&mut client).await },
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&sent), "");
}

/// A request target is read as hyper (the `http` crate) reads it: a
/// fragment is cut off before routing and forwarding, and a character it
/// refuses (`<`, `>` or a backtick in the path; `"`, `<` or `>` in the
/// query) is a 400 that reaches no upstream. So is a `.` or `..` segment
/// (plain or `%2e`): routed as written, it would reach another path at an
/// upstream that resolves it.
async fn a_request_target_is_read_the_same_on_both_paths(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    for (target, status, forwarded) in [
        ("/a#frag", 200, Some("/a")),
        ("/a?q=1#frag?x", 200, Some("/a?q=1")),
        ("/a?q=`x`", 200, Some("/a?q=`x`")),
        ("/a<b", 400, None),
        ("/a>b", 400, None),
        ("/a`b", 400, None),
        ("/a?q=\"x\"", 400, None),
        ("/a?q=<x>", 400, None),
        ("/a/../b", 400, None),
        ("/a/./b", 400, None),
        ("/a/..", 400, None),
        ("/a/%2e%2E/b", 400, None),
        ("/a/.%2e/b?x", 400, None),
        ("http://shop.test/a/../b", 400, None),
        ("/a/..b/...", 200, Some("/a/..b/...")),
        ("/a/b?next=/../c", 200, Some("/a/b?next=/../c")),
        ("/a/.well-known/x", 200, Some("/a/.well-known/x")),
    ] {
        let before = upstream.requests().len();
        let raw = within(LIMIT, target, async {
            let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
            let request =
                format!("GET {target} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            read_until_closed(&mut client).await
        })
        .await;
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{target}: {text}"
        );
        let reached: Vec<String> = upstream.requests()[before..]
            .iter()
            .map(|r| r.target.clone())
            .collect();
        let want: Vec<String> = forwarded.into_iter().map(str::to_owned).collect();
        assert_eq!(reached, want, "{target}");
    }
}

/// `X-Forwarded-For` lines are joined and the client appended, as on the
/// hyper path: a line that is not visible ASCII is left out of the chain.
async fn x_forwarded_for_is_appended_to_the_same_chain(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    within(LIMIT, "the request", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(
                "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 10.0.0.1\r\n\
                 X-Forwarded-For: caf\u{e9}\r\nX-Forwarded-For: 10.0.0.2\r\nConnection: close\r\n\r\n"
                    .as_bytes(),
            )
            .await
            .unwrap();
        read_until_closed(&mut client).await
    })
    .await;
    let requests = upstream.requests();
    assert_eq!(
        requests[0].header_values("x-forwarded-for"),
        ["10.0.0.1, 10.0.0.2, 127.0.0.1"]
    );
}

/// An upstream for uploads that answers as the body arrives: once it holds
/// at least `at` bytes of the body it writes each `(at, bytes)` of
/// `interim` in turn and says so on the matching receiver, and once it
/// holds `body_len` bytes it answers `200` with body `ok`. The task gives
/// the body it received.
async fn upload_upstream(
    interim: Vec<(usize, &'static [u8])>,
    body_len: usize,
) -> (
    std::net::SocketAddr,
    Vec<tokio::sync::oneshot::Receiver<()>>,
    tokio::task::JoinHandle<Vec<u8>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (mut steps, arrived): (Vec<_>, Vec<_>) = interim
        .into_iter()
        .map(|(at, bytes)| {
            let (sent, arrived) = tokio::sync::oneshot::channel::<()>();
            ((at, bytes, Some(sent)), arrived)
        })
        .unzip();
    let body = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let body = seen.len() - end - 4;
                for (at, bytes, sent) in &mut steps {
                    if body >= *at {
                        if let Some(signal) = sent.take() {
                            stream.write_all(bytes).await.unwrap();
                            let _ = signal.send(());
                        }
                    }
                }
                if body >= body_len {
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                    return seen[end + 4..].to_vec();
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed inside the body");
            seen.extend_from_slice(&chunk[..n]);
        }
    });
    (upstream, arrived, body)
}

/// Uploads `first` and then each of `rest` once the upstream's matching
/// signal in `arrived` came (see [`upload_upstream`]), as one request of
/// the pieces' whole length; the answer's head and body.
async fn upload_in_pieces(
    weir: &Weir,
    first: &[u8],
    arrived: Vec<tokio::sync::oneshot::Receiver<()>>,
    rest: &[&[u8]],
) -> (String, Vec<u8>) {
    assert_eq!(arrived.len(), rest.len(), "one signal per later piece");
    let length = first.len() + rest.iter().map(|piece| piece.len()).sum::<usize>();
    within(LIMIT, "the upload", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        let head =
            format!("POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: {length}\r\n\r\n");
        // The head and the first piece in one write.
        client
            .write_all(&[head.as_bytes(), first].concat())
            .await
            .unwrap();
        for (signal, piece) in arrived.into_iter().zip(rest) {
            signal.await.unwrap();
            client.write_all(piece).await.unwrap();
        }
        read_response(&mut client).await
    })
    .await
}

/// An interim answer (`103 Early Hints`) sent while an upload is under
/// way is not the answer: the rest of the body still goes upstream, and
/// the final answer reaches the client.
async fn an_interim_answer_during_an_upload_does_not_cut_it(path: ForwardingPath) {
    let (upstream, arrived, body) = upload_upstream(
        vec![(0, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")],
        10,
    )
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let (head, answer) = upload_in_pieces(&weir, b"first", arrived, &[b"-rest"]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(answer, b"ok");
    assert_eq!(body.await.unwrap(), b"first-rest");
}

/// Reads a request head off `stream`; what came of the body after it, and
/// its `Content-Length`.
async fn read_head_and_length(stream: &mut TcpStream) -> (Vec<u8>, usize) {
    let mut seen = read_through_head(stream).await;
    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (seen.split_off(end), length)
}

/// An upstream that answers as it reads: a chunked `200` head as soon as
/// it has the request head, then each piece of the body it reads echoed as
/// a chunk, and the last chunk once the whole `Content-Length` body came.
/// The task gives the body it received.
async fn echo_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    early_answer_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        true,
    )
    .await
}

/// An upstream that accepts a request (`202`) as soon as it has the head,
/// then reads the whole `Content-Length` body; the task gives the body.
async fn accept_then_read_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    early_answer_upstream(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", false).await
}

/// An upstream that writes `head` as soon as it has a request's head, then
/// reads the whole `Content-Length` body, echoing each piece as a chunk
/// (and the last chunk at the end) when `echo`. The task gives the body.
async fn early_answer_upstream(
    head: &'static [u8],
    echo: bool,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let body = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (mut received, length) = read_head_and_length(&mut stream).await;
        stream.write_all(head).await.unwrap();
        let mut echoed = 0;
        loop {
            if echo && received.len() > echoed {
                let piece = &received[echoed..];
                let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
                stream.write_all(&chunk).await.unwrap();
                echoed = received.len();
            }
            if received.len() >= length {
                if echo {
                    stream.write_all(b"0\r\n\r\n").await.unwrap();
                }
                return received;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed inside the body: {received:?}");
            received.extend_from_slice(&chunk[..n]);
        }
    });
    (upstream, body)
}

/// Starts weir on `path` in front of `upstream` and sends it the head of
/// a 10-byte upload with its first 5 bytes, `first`; weir and the client's
/// connection.
async fn post_first_piece(
    path: ForwardingPath,
    upstream: std::net::SocketAddr,
) -> (Weir, TcpStream) {
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    client
        .write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\n\r\nfirst")
        .await
        .unwrap();
    (weir, client)
}

/// An upstream that accepted a request before reading its body still gets
/// all of it: the client sends the rest only after it read the `202`.
async fn an_upload_accepted_before_its_end_is_sent_whole(path: ForwardingPath) {
    let (upstream, received) = accept_then_read_upstream().await;
    let (_weir, mut client) = post_first_piece(path, upstream).await;
    let head = within(LIMIT, "the accepted upload", async {
        let (head, _) = read_response(&mut client).await;
        client.write_all(b"-rest").await.unwrap();
        head
    })
    .await;
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    let body = within(LIMIT, "the body upstream", received).await.unwrap();
    assert_eq!(body, b"first-rest", "{}", path.name());
}

/// After an upstream accepted a request before reading its body, a client
/// that leaves the rest of it silent for the idle timeout does not hold
/// the upstream connection until the request's deadline (30 s here, past
/// the test's limit): weir closes it, and the client's, at the idle
/// timeout.
async fn an_accepted_upload_left_silent_is_ended_at_the_idle_timeout(path: ForwardingPath) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut received = read_head_and_length(&mut stream).await.0;
        stream
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        received.extend(read_until_closed(&mut stream).await);
        received
    });
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])
            .timeouts("1s", "30s")
            .idle_timeout("1s")]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    client
        .write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\n\r\nfirst")
        .await
        .unwrap();
    let head = within(LIMIT, "the 202", read_response(&mut client)).await.0;
    assert!(head.starts_with("HTTP/1.1 202"), "{}: {head}", path.name());
    let body = within(LIMIT, "the upstream connection's end", received)
        .await
        .unwrap();
    assert_eq!(body, b"first", "{}", path.name());
    within(
        LIMIT,
        "the client connection's end",
        read_until_closed(&mut client),
    )
    .await;
}

/// On the own path, a client that half-closes inside its body once its
/// answer began still gets the whole answer: the upstream sends the
/// answer's second half only after the client shut its side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_inside_its_body_gets_the_whole_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (closed, client_closed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_through_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf1")
            .await
            .unwrap();
        client_closed.await.unwrap();
        stream.write_all(b"half2").await.unwrap();
        std::future::pending::<()>().await;
    });
    let (_weir, mut client) = post_first_piece(ForwardingPath::Own, upstream).await;
    let answer = within(LIMIT, "the whole answer", async {
        let mut raw = Vec::new();
        while !raw.ends_with(b"half1") {
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed early: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
        }
        client.shutdown().await.unwrap();
        closed.send(()).unwrap();
        raw.extend(read_until_closed(&mut client).await);
        String::from_utf8_lossy(&raw).into_owned()
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhalf1half2"), "{answer}");
}

/// Requests whose bodies went whole, however framed (a length, chunks,
/// chunks with trailers), keep the client's connection and the
/// upstream's: the end of each body is seen, so none is taken for an
/// upload still going. On hyper's path the client's connection ends after
/// a chunked body with trailers (hyper's reading of a trailer section is
/// looser than weir's: `closing_after_chunked_upload`); the upstream's
/// stays.
async fn a_body_sent_whole_keeps_both_connections(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("stable")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let requests: [&[u8]; 4] = [
        b"POST /length HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /chunks HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /trailers HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n",
        b"GET /after HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    ];
    within(LIMIT, "the requests", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        for request in requests {
            client.write_all(request).await.unwrap();
            let (head, body) = read_response(&mut client).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", path.name());
            // hyper's path closes after a chunked body with trailers (see
            // `closing_after_chunked_upload`); one without keeps it.
            let trailers = request.windows(6).any(|w| w == b"X-Sum:");
            let closes = path == ForwardingPath::Hyper && trailers;
            assert_eq!(
                head.to_ascii_lowercase().contains("connection: close"),
                closes,
                "{}: {head}",
                path.name()
            );
            assert_eq!(body, b"stable");
            if closes {
                client = TcpStream::connect(weir.addrs.http).await.unwrap();
            }
        }
    })
    .await;
    let seen: Vec<(String, usize, Vec<u8>)> = upstream
        .requests()
        .into_iter()
        .map(|r| (r.target, r.connection, r.body))
        .collect();
    let want: Vec<(String, usize, Vec<u8>)> = [
        ("/length", b"hello".as_slice()),
        ("/chunks", b"hello"),
        ("/trailers", b"hello"),
        ("/after", b""),
    ]
    .into_iter()
    .map(|(target, body)| (target.to_owned(), 0, body.to_vec()))
    .collect();
    assert_eq!(
        seen,
        want,
        "{}: all on one upstream connection",
        path.name()
    );
}

/// The data of the whole chunks in `raw`, a chunked body so far (no
/// extensions, no trailers), and whether its last chunk came.
fn chunk_data(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return (data, true);
        }
        let Some(piece) = raw.get(line_end + 2..line_end + 2 + size) else {
            break;
        };
        data.extend_from_slice(piece);
        raw = raw.get(line_end + 2 + size + 2..).unwrap_or_default();
    }
    (data, false)
}

/// An upstream that starts its answer before the body ends and finishes it
/// only with the whole body (an echo) gets the rest of the body: the
/// client sends its second piece only once it saw the first one echoed.
async fn an_answer_begun_before_the_upload_ends_gets_the_rest_of_the_body(path: ForwardingPath) {
    let (upstream, received) = echo_upstream().await;
    let (_weir, mut client) = post_first_piece(path, upstream).await;
    let answer = within(LIMIT, "the echoed upload", async {
        let mut raw = Vec::new();
        let mut sent_rest = false;
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let (echoed, whole) = chunk_data(&raw[end + 4..]);
                if whole {
                    return (String::from_utf8_lossy(&raw[..end]).into_owned(), echoed);
                }
                if !sent_rest && echoed == b"first" {
                    client.write_all(b"-rest").await.unwrap();
                    sent_rest = true;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed early: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let (head, echoed) = answer;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(echoed, b"first-rest", "{}", path.name());
    assert_eq!(received.await.unwrap(), b"first-rest");
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994
/// 08:49:37 GMT`, RFC 9110 section 5.6.7); `None` when it is not one.
fn parse_imf_fixdate(text: &str) -> Option<u64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split(' ').collect();
    let [weekday, day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    if text.len() != 29 || day.len() != 2 || year.len() != 4 || time.len() != 8 {
        return None;
    }
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: u64 = year.parse().ok()?;
    let mut clock = time.split(':').map(|n| n.parse::<u64>().ok());
    let (hours, minutes, seconds) = (clock.next()??, clock.next()??, clock.next()??);
    // Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    if weekday.strip_suffix(',')? != DAYS[(days % 7) as usize] {
        return None;
    }
    Some(days * 86_400 + hours * 3600 + minutes * 60 + seconds)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every answer carries a `date` field, as hyper's server adds it: a
/// forwarded answer without one gets the current time, an upstream's own
/// is passed on verbatim, and weir's own 404 and 502 have one too.
async fn every_answer_carries_one_date(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|r: &UpstreamRequest| {
        if r.target == "/dated" {
            Reply::keep(
                "HTTP/1.1 200 OK\r\nDate: Tue, 15 Nov 1994 08:12:31 GMT\r\nContent-Length: 2\r\n\r\nok",
            )
        } else {
            Reply::ok("undated")
        }
    })
    .await;
    // Nothing listens there: weir answers 502.
    let unreachable = ClosedPort::bind();
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream.addr]).hosts(&["shop.test"]),
            Route::new("down", &[unreachable.addr]).hosts(&["down.test"]),
        ]))
        .await;
    for (host, target, status) in [
        ("shop.test", "/undated", 200),
        ("shop.test", "/dated", 200),
        ("nowhere.test", "/", 404),
        ("down.test", "/", 502),
    ] {
        let before = unix_now();
        let raw = within(LIMIT, target, async {
            let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
            let request =
                format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            read_until_closed(&mut client).await
        })
        .await;
        let after = unix_now();
        let text = String::from_utf8_lossy(&raw);
        let head = text.split("\r\n\r\n").next().unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{host}{target}: {head}"
        );
        let dates: Vec<&str> = head
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("date").then(|| value.trim())
            })
            .collect();
        assert_eq!(dates.len(), 1, "{host}{target}: {head}");
        if target == "/dated" {
            assert_eq!(dates[0], "Tue, 15 Nov 1994 08:12:31 GMT", "{head}");
        } else {
            let date = parse_imf_fixdate(dates[0])
                .unwrap_or_else(|| panic!("{host}{target}: not an IMF-fixdate: {head}"));
            assert!(
                before.saturating_sub(1) <= date && date <= after + 1,
                "{host}{target}: {date} not between {before} and {after}: {head}"
            );
        }
    }
}

/// The counts of `weir_http_requests_total` by code, once they add up to
/// `total`.
async fn codes_once_counted(weir: &Weir, total: f64) -> Vec<(String, f64)> {
    weir_e2e::wait_until(LIMIT, "every request counted", || async {
        let metrics = weir.metrics().await;
        if metrics.sum("weir_http_requests_total", &[]) < total {
            return None;
        }
        let mut by_code: Vec<(String, f64)> = metrics
            .samples
            .iter()
            .filter(|s| s.name == "weir_http_requests_total" && s.value > 0.0)
            .map(|s| {
                let code = s.labels.iter().find(|(n, _)| n == "code").unwrap();
                (code.1.clone(), s.value)
            })
            .collect();
        by_code.sort_by(|a, b| a.0.cmp(&b.0));
        Some(by_code)
    })
    .await
}

/// A client that is gone when weir writes its `100 Continue` left before
/// its answer: the request is counted as abandoned (499), as any other
/// request whose client left.
async fn a_client_gone_before_its_100_continue_is_counted_as_abandoned(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    within(LIMIT, "the first request", async {
        client
            .write_all(b"GET /first HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut client).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    })
    .await;
    // weir is served the head and the reset at once: its 100 Continue can
    // only fail.
    send_then_reset_while_stopped(
        weir.pid(),
        client,
        b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    let counts = codes_once_counted(&weir, 2.0).await;
    let want = [("200", 1.0), ("499", 1.0)].map(|(code, n)| (code.to_owned(), n));
    assert_eq!(counts, want, "{}", path.name());
    let abandoned = weir
        .metrics()
        .await
        .sum("weir_client_errors_total", &[("kind", "abandoned")]);
    assert_eq!(abandoned, 1.0);
}

/// A client that resets its connection inside its body has left: no
/// answer can reach it, so the request is counted as abandoned (499), not
/// as a broken body (400) nor as an upstream error, on both paths.
async fn a_client_that_resets_inside_its_body_is_counted_as_abandoned(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let client = TcpStream::connect(weir.addrs.http).await.unwrap();
    // weir is served half the body and the reset at once: the rest of the
    // body can only fail.
    send_then_reset_while_stopped(
        weir.pid(),
        client,
        b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\n\r\nfirst",
    )
    .await;
    let counts = codes_once_counted(&weir, 1.0).await;
    assert_eq!(counts, [("499".to_owned(), 1.0)], "{}", path.name());
    let metrics = weir.metrics().await;
    let abandoned = metrics.sum("weir_client_errors_total", &[("kind", "abandoned")]);
    assert_eq!(abandoned, 1.0, "{}", path.name());
    assert_eq!(
        metrics.sum("weir_upstream_errors_total", &[]),
        0.0,
        "{}",
        path.name()
    );
}

/// A client that reads the head of a big answer and then stops reading
/// holds neither the upstream connection nor weir's buffers: once nothing
/// could be written to it for the route's `timeouts.idle`, weir closes
/// the client connection and the upstream one, and counts the request
/// with the code it was sent, as for any client that left mid-body.
async fn a_client_that_stops_reading_is_cut_after_the_idle_timeout(path: ForwardingPath) {
    let upstream = LargeBodyUpstream::start().await;
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream.addr]).idle_timeout("1s")
        ]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    let mut received = within(LIMIT, "the answer's head", async {
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        let raw = read_through_head(&mut client).await;
        assert!(raw.starts_with(b"HTTP/1.1 200"));
        raw.len()
    })
    .await;
    // The client reads nothing more until the upstream connection is gone.
    upstream.stopped_short(LIMIT).await;
    received += within(LIMIT, "the client connection closed", async {
        read_until_closed(&mut client).await.len()
    })
    .await;
    assert!(
        received < LARGE_BODY,
        "{received} bytes reached the client after it stopped reading"
    );
    let counts = codes_once_counted(&weir, 1.0).await;
    assert_eq!(counts, [("200".to_owned(), 1.0)], "{}", path.name());
}

/// The chunk extensions of one body are bounded in total, as hyper bounds
/// them (16 KiB): a body of one-byte chunks each with a 1 KiB extension is
/// refused with 400 once they add up, never forwarded whole.
async fn chunk_extensions_are_bounded_per_body(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("x")).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let raw = within(LIMIT, "the upload", async {
        let client = TcpStream::connect(weir.addrs.http).await.unwrap();
        let (mut from_weir, mut to_weir) = client.into_split();
        // Sent while the answer is read: weir may close before the end.
        let upload = tokio::spawn(async move {
            to_weir
                .write_all(
                    b"POST /up HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n",
                )
                .await?;
            let chunk = format!("1;{}\r\nx\r\n", "e".repeat(1024));
            for _ in 0..1000 {
                to_weir.write_all(chunk.as_bytes()).await?;
            }
            to_weir.write_all(b"0\r\n\r\n").await
        });
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match from_weir.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = upload.await;
        raw
    })
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert_eq!(upstream.requests(), vec![], "a whole request went upstream");
    let counts = codes_once_counted(&weir, 1.0).await;
    assert_eq!(counts, [("400".to_owned(), 1.0)], "{}", path.name());
}

/// An interim answer whose head arrives in two pieces while the upload is
/// under way (`HTTP/1.1 100 Continue\r\n`, then the final `\r\n`) is still
/// an interim answer: the upload goes on to its end, and the final answer
/// reaches the client.
async fn an_interim_head_split_across_reads_does_not_cut_the_upload(path: ForwardingPath) {
    let (upstream, arrived, body) =
        upload_upstream(vec![(5, b"HTTP/1.1 100 Continue\r\n"), (10, b"\r\n")], 15).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let (head, answer) = upload_in_pieces(&weir, b"first", arrived, &[b"-mid-", b"-last"]).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(answer, b"ok");
    assert_eq!(body.await.unwrap(), b"first-mid--last");
}

/// An upstream answer whose chunk extensions add up past the bound is
/// not passed on whole either: the client gets the head and a cut body
/// (no last chunk, the connection closed), and the upstream is counted
/// as having broken the exchange.
async fn an_answer_over_the_chunk_extension_bound_is_cut(path: ForwardingPath) {
    let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..100 {
        answer.extend_from_slice(format!("1;{}\r\nx\r\n", "e".repeat(1024)).as_bytes());
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    let upstream =
        RecordingUpstream::start(move |_: &UpstreamRequest| Reply::keep(answer.clone())).await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let raw = within(LIMIT, "the answer", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n")
            .await
            .unwrap();
        read_until_closed(&mut client).await
    })
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the whole body went out: {text}"
    );
    let delivered = text.split("\r\n\r\n").nth(1).unwrap().matches('x').count();
    assert!(delivered < 100, "{delivered} chunks delivered");
    let counts = codes_once_counted(&weir, 1.0).await;
    assert_eq!(counts, [("200".to_owned(), 1.0)], "{}", path.name());
    let broken = weir
        .metrics()
        .await
        .sum("weir_upstream_errors_total", &[("kind", "protocol")]);
    assert_eq!(broken, 1.0, "{}", path.name());
}

/// An HTTP/1.0 client that asked to keep its connection is told it is kept
/// (`connection: keep-alive`) on every answer, weir's own 404 and 502
/// included, and its next request is served on it, as hyper does: without
/// the field such a client waits for the close.
async fn an_http_1_0_keep_alive_client_is_told_on_every_answer(path: ForwardingPath) {
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply::ok("stable")).await;
    // Nothing listens there: weir answers 502.
    let dead = ClosedPort::bind();
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream.addr]).hosts(&["shop.test"]),
            Route::new("gone", &[dead.addr]).hosts(&["gone.test"]),
        ]))
        .await;
    within(LIMIT, "the requests", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        for (host, status) in [
            ("gone.test", " 502 "),
            ("nowhere.test", " 404 "),
            ("shop.test", " 200 "),
            ("gone.test", " 502 "),
        ] {
            let request =
                format!("GET / HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n");
            client.write_all(request.as_bytes()).await.unwrap();
            let (head, _) = read_response(&mut client).await;
            assert!(head.contains(status), "{} {host}: {head}", path.name());
            assert!(
                head.to_ascii_lowercase().contains("connection: keep-alive"),
                "{} {host}: {head}",
                path.name()
            );
        }
    })
    .await;
}

/// An upstream that reads whatever comes on one connection and never
/// answers.
async fn reading_silent_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut chunk = [0u8; 4096];
        while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
    });
    upstream
}

/// An upstream that reads a request's head, then nothing more, and never
/// answers: it holds the connection open with the body unread.
async fn head_only_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_through_head(&mut stream).await;
        std::future::pending::<()>().await;
    });
    upstream
}

/// Requests of `route` counted with `code`, errors of its upstream, and
/// its client errors of `kind`.
async fn failure_counts(weir: &Weir, code: &str, kind: &str) -> (f64, f64, f64) {
    let m = weir.metrics().await;
    let route = ("route", "web");
    (
        m.sum("weir_http_requests_total", &[route, ("code", code)]),
        m.sum("weir_upstream_errors_total", &[route]),
        m.sum("weir_client_errors_total", &[route, ("kind", kind)]),
    )
}

/// Asserts that `head` is a `status` answer that says the connection
/// closes.
fn assert_closing_answer(head: &str, status: u16, path: ForwardingPath) {
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status}")),
        "{}: {head}",
        path.name()
    );
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{}: {head}",
        path.name()
    );
}

/// Starts weir on `path` in front of `upstream` with a 1 s request
/// deadline.
async fn weir_with_a_short_deadline(path: ForwardingPath, upstream: std::net::SocketAddr) -> Weir {
    path.start_weir(WeirConfig::new([
        Route::new("web", &[upstream]).timeouts("1s", "1s")
    ]))
    .await
}

/// Sends the head of a 10-byte upload with its first 5 bytes and nothing
/// more, reads until weir closes the connection, and checks that the
/// answer is a `408` that says so; the answer.
async fn stall_inside_the_body(weir: &Weir, path: ForwardingPath) -> String {
    let answer = raw_request(
        weir.addrs.http,
        b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\n\r\nfirst",
        LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&answer.raw).into_owned();
    assert_closing_answer(&text, 408, path);
    text
}

/// Asserts one `408` counted as the client's stall (`body_timeout`), and
/// no error of the upstream's.
async fn assert_counted_as_the_clients_stall(weir: &Weir, path: ForwardingPath) {
    assert_eq!(
        failure_counts(weir, "408", "body_timeout").await,
        (1.0, 0.0, 1.0),
        "{}: 408s, upstream errors, body timeouts",
        path.name()
    );
}

/// A client that stalls inside its upload, the upstream having read all
/// that came, gets `408` at the request's deadline and a closed
/// connection; the stall is the client's (`body_timeout`), never an
/// upstream timeout of the role, so slow uploads cannot make a canary look
/// broken.
async fn a_client_that_stalls_inside_its_body_gets_408(path: ForwardingPath) {
    let weir = weir_with_a_short_deadline(path, reading_silent_upstream().await).await;
    stall_inside_the_body(&weir, path).await;
    assert_counted_as_the_clients_stall(&weir, path).await;
}

/// A client silent inside its upload for the route's idle timeout gets
/// `408` then, long before a 30 s deadline (the test's 20 s limit would
/// fail it otherwise), counted as its own stall.
async fn a_client_silent_inside_its_body_for_the_idle_timeout_gets_408(path: ForwardingPath) {
    let weir = path
        .start_weir(WeirConfig::new([Route::new(
            "web",
            &[reading_silent_upstream().await],
        )
        .timeouts("1s", "30s")
        .idle_timeout("300ms")]))
        .await;
    let text = stall_inside_the_body(&weir, path).await;
    assert!(text.contains("idle timeout"), "{}: {text}", path.name());
    assert_counted_as_the_clients_stall(&weir, path).await;
}

/// Interim answers from the upstream do not stretch a client's silence:
/// an upstream that sends `103` every 100 ms while the client's body stays
/// silent still sees the client cut at the idle timeout, long before the
/// deadline.
async fn interim_answers_do_not_stretch_a_silent_body(path: ForwardingPath) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_through_head(&mut stream).await;
        // The upstream's own pace, not a wait on anything.
        while stream
            .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])
            .timeouts("1s", "30s")
            .idle_timeout("500ms")]))
        .await;
    let text = stall_inside_the_body(&weir, path).await;
    assert!(text.contains("idle timeout"), "{}: {text}", path.name());
}

/// An upload that lasts longer than the idle timeout, each gap in it far
/// shorter, goes through whole: the timeout bounds a gap, not the upload.
async fn a_slow_upload_with_short_gaps_goes_through(path: ForwardingPath) {
    const PIECES: usize = 12;
    let (upstream, _, body) = upload_upstream(Vec::new(), PIECES).await;
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream]).idle_timeout("1s")
        ]))
        .await;
    let (head, answer) = within(LIMIT, "the slow upload", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        let head =
            format!("POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: {PIECES}\r\n\r\n");
        client.write_all(head.as_bytes()).await.unwrap();
        // A slow client is what is tested: a byte every 150 ms, 1.8 s in all.
        for _ in 0..PIECES {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"x").await.unwrap();
        }
        read_response(&mut client).await
    })
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", path.name());
    assert_eq!(answer, b"ok");
    assert_eq!(body.await.unwrap(), vec![b'x'; PIECES]);
}

/// An upstream that stops reading an upload and never answers is the one
/// at fault: `504` at the request's deadline, an upstream timeout of the
/// role, and the client's connection closed (its upload never ended).
async fn an_upstream_that_stops_reading_an_upload_is_a_504(path: ForwardingPath) {
    let weir = weir_with_a_short_deadline(path, head_only_upstream().await).await;
    let head = upload_to_a_stopped_upstream(&weir).await;
    assert_closing_answer(&head, 504, path);
    assert_eq!(
        failure_counts(&weir, "504", "body_timeout").await,
        (1.0, 1.0, 0.0),
        "{}: 504s, upstream errors, body timeouts",
        path.name()
    );
}

/// Uploads as fast as weir takes it, more than the socket buffers on the
/// way hold (so weir's writes to an upstream that stopped reading wait,
/// whatever the path buffers), until the answer's head comes; the head.
async fn upload_to_a_stopped_upstream(weir: &Weir) -> String {
    within(LIMIT, "the answer", async {
        let client = TcpStream::connect(weir.addrs.http).await.unwrap();
        let (mut reader, mut writer) = client.into_split();
        let upload = tokio::spawn(async move {
            let head =
                b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 1073741824\r\n\r\n";
            let chunk = vec![b'x'; 256 * 1024];
            let mut written = writer.write_all(head).await;
            while written.is_ok() {
                written = writer.write_all(&chunk).await;
            }
        });
        let head = String::from_utf8_lossy(&read_through_head(&mut reader).await).into_owned();
        upload.abort();
        head
    })
    .await
}

/// The same with an idle timeout shorter than the deadline: an upstream
/// that stops reading is still the one at fault, never the client, whose
/// upload waits on it.
async fn an_upstream_that_stops_reading_an_upload_is_a_504_whatever_the_idle_timeout(
    path: ForwardingPath,
) {
    let weir = path
        .start_weir(WeirConfig::new([Route::new(
            "web",
            &[head_only_upstream().await],
        )
        .timeouts("1s", "2s")
        .idle_timeout("300ms")]))
        .await;
    let head = upload_to_a_stopped_upstream(&weir).await;
    assert_closing_answer(&head, 504, path);
    assert_eq!(
        failure_counts(&weir, "504", "body_timeout").await,
        (1.0, 1.0, 0.0),
        "{}: 504s, upstream errors, body timeouts",
        path.name()
    );
}

/// weir's own `502` to a request whose upload is still going says the
/// connection closes: the rest of the body is never read as a request.
async fn a_502_during_an_upload_says_the_connection_closes(path: ForwardingPath) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_through_head(&mut stream).await;
        // Closed without an answer, inside the body.
    });
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let head = within(LIMIT, "the 502", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 1000000\r\n\r\nfirst bytes")
            .await
            .unwrap();
        read_response(&mut client).await.0
    })
    .await;
    assert_closing_answer(&head, 502, path);

    // An upstream that cannot be reached: the body is never started, and
    // the rest of it still to come is not read as a next request.
    let refusing = weir_e2e::ClosedPort::bind();
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[refusing.addr])]))
        .await;
    let head = within(LIMIT, "the 502 of an upstream not reached", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100000\r\n\r\nfirst bytes")
            .await
            .unwrap();
        read_response(&mut client).await.0
    })
    .await;
    assert_closing_answer(&head, 502, path);
}

/// A client that leaves inside its upload while the answer streams (an
/// echo waiting for the rest) is counted with the code it was sent, never
/// as an error of the upstream's.
async fn a_client_that_leaves_inside_its_body_is_not_an_upstream_error(path: ForwardingPath) {
    client_stops_inside_its_body(path, true).await;
}

/// A client that stalls inside its upload while the answer streams (an
/// echo waiting for the rest) has the answer cut at the idle timeout, and
/// is counted with the code it was sent: the answer waited on the client,
/// not on the upstream.
async fn a_client_that_stalls_inside_its_body_while_the_answer_streams_is_not_an_upstream_error(
    path: ForwardingPath,
) {
    client_stops_inside_its_body(path, false).await;
}

/// Sends half of an upload to an echo, reads the first piece back, then
/// closes (`leave`) or stalls until weir closes; asserts the request was
/// counted as a `200` and not as an upstream error.
async fn client_stops_inside_its_body(path: ForwardingPath, leave: bool) {
    let (upstream, _received) = echo_upstream().await;
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream]).idle_timeout("1s")
        ]))
        .await;
    let mut client = within(LIMIT, "the first piece echoed", async {
        let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
        client
            .write_all(b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 10\r\n\r\nfirst")
            .await
            .unwrap();
        let mut raw = Vec::new();
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                if chunk_data(&raw[end + 4..]).0 == b"first" {
                    return client;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "closed early: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    if leave {
        drop(client);
    } else {
        let rest = within(LIMIT, "the answer cut", read_until_closed(&mut client)).await;
        let (_, whole) = chunk_data(&rest);
        assert!(!whole, "{}: the answer ended whole", path.name());
    }
    let counts = wait_until(LIMIT, "the request counted", || async {
        let counts = failure_counts(&weir, "200", "abandoned").await;
        (counts.0 == 1.0).then_some(counts)
    })
    .await;
    assert_eq!(
        counts,
        (1.0, 0.0, 0.0),
        "{}: 200s, upstream errors, abandoned",
        path.name()
    );
}

/// The answer to a client that says it sends nothing more (`Connection:
/// close`) goes out with the end of the stream: weir's own path holds its
/// last bytes for the close's FIN. An answer far larger than the socket
/// buffers, read slowly, so that its last write waits for room, still
/// arrives whole, and then the connection ends.
async fn a_big_answer_to_a_closing_request_arrives_whole_then_ends(path: ForwardingPath) {
    const BODY: usize = 8 << 20;
    let upstream = RecordingUpstream::start(|_: &UpstreamRequest| Reply {
        bytes: [
            format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes(),
            vec![b'x'; BODY],
        ]
        .concat(),
        close: false,
    })
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    let raw = within(LIMIT, "the whole answer, then its end", async {
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = client.read(&mut chunk).await.unwrap();
            if n == 0 {
                break raw;
            }
            raw.extend_from_slice(&chunk[..n]);
            // A slow reader: weir's writes wait for room, its last one
            // included.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(raw.len() - end, BODY, "{}", path.name());
    assert!(raw[end..].iter().all(|&b| b == b'x'));
}

/// An answer that streams without a pause, the upstream always ahead and
/// the client reading steadily but slower (64 KiB every 5 ms), is still
/// cut at the request timeout (2 s here) and counted as a timeout: the
/// upstream's reads never waited, the client's writes waited only for
/// their idle timeout.
async fn an_answer_streaming_without_pause_is_cut_at_the_request_timeout(path: ForwardingPath) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = read_through_head(&mut stream).await;
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n";
        if stream.write_all(head).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        while stream.write_all(&chunk).await.is_ok() {}
    });
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])
            .timeouts("1s", "2s")
            .idle_timeout("1s")]))
        .await;
    // A small receive buffer: weir's writes to the client wait at times.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut client = socket.connect(weir.addrs.http).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await
        .unwrap();
    let mut read = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    within(LIMIT, "the answer's cut", async {
        loop {
            pace.tick().await;
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    assert!(read > 0, "{}: nothing of the answer came", path.name());
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_upstream_errors_total", &[("kind", "timeout")]),
        1.0,
        "{}: {}",
        path.name(),
        m.text
    );
}

weir_e2e::on_both_paths!(
    an_answer_streaming_without_pause_is_cut_at_the_request_timeout,
    an_upstream_answer_before_the_upload_ends_reaches_the_client,
    a_client_still_uploading_after_an_early_answer_is_not_reset,
    a_client_still_uploading_after_a_404_is_not_reset,
    a_post_the_upstream_closed_on_unanswered_is_not_sent_again,
    a_get_the_upstream_closed_on_unanswered_is_sent_again_once,
    an_http_1_0_client_is_never_sent_100_continue,
    every_request_is_counted_once_with_its_code,
    a_connection_that_never_sends_a_head_is_closed_after_the_header_timeout,
    a_request_target_is_read_the_same_on_both_paths,
    x_forwarded_for_is_appended_to_the_same_chain,
    an_interim_answer_during_an_upload_does_not_cut_it,
    an_answer_begun_before_the_upload_ends_gets_the_rest_of_the_body,
    a_body_sent_whole_keeps_both_connections,
    an_upload_accepted_before_its_end_is_sent_whole,
    an_accepted_upload_left_silent_is_ended_at_the_idle_timeout,
    every_answer_carries_one_date,
    a_client_gone_before_its_100_continue_is_counted_as_abandoned,
    a_client_that_resets_inside_its_body_is_counted_as_abandoned,
    a_client_that_stops_reading_is_cut_after_the_idle_timeout,
    chunk_extensions_are_bounded_per_body,
    an_interim_head_split_across_reads_does_not_cut_the_upload,
    an_answer_over_the_chunk_extension_bound_is_cut,
    an_http_1_0_keep_alive_client_is_told_on_every_answer,
    a_client_that_stalls_inside_its_body_gets_408,
    a_client_silent_inside_its_body_for_the_idle_timeout_gets_408,
    a_slow_upload_with_short_gaps_goes_through,
    interim_answers_do_not_stretch_a_silent_body,
    an_upstream_that_stops_reading_an_upload_is_a_504,
    an_upstream_that_stops_reading_an_upload_is_a_504_whatever_the_idle_timeout,
    a_502_during_an_upload_says_the_connection_closes,
    a_client_that_leaves_inside_its_body_is_not_an_upstream_error,
    a_client_that_stalls_inside_its_body_while_the_answer_streams_is_not_an_upstream_error,
    a_big_answer_to_a_closing_request_arrives_whole_then_ends,
);
