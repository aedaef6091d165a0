//! Helpers shared by the proxy's integration tests. Each test binary
//! uses its part of them, so the rest would be dead code there.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use weir_config::{Backend, HostMatch, RouteSnapshot, Snapshot, Split, Timeouts, Weight};
use weir_proxy::http1::ForwardingPath;
use weir_proxy::{Listener, Metrics, Proxy, ServeOptions};

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

/// One route `web` for `hosts` (any host when empty) sending everything to
/// the HTTP/1 endpoints `stable`, with `timeouts`.
pub(crate) fn one_route(
    stable: &[SocketAddr],
    hosts: Vec<HostMatch>,
    timeouts: Timeouts,
) -> Snapshot {
    Snapshot {
        version: 0,
        routes: vec![RouteSnapshot {
            name: Arc::from("web"),
            hosts,
            path_prefix: "/".to_owned(),
            split: Split {
                stable: Backend {
                    revision: Arc::from("v1"),
                    endpoints: stable.to_vec(),
                    protocol: weir_config::UpstreamProtocol::Http1,
                    tls: None,
                },
                canary: None,
                canary_weight: Weight::from_percent_int(0),
                cohort_seed: 1,
            },
            canary_by_header: None,
            stickiness: None,
            timeouts,
            upgrades: vec![Arc::from("websocket")],
            stable_fallback: None,
            grpc_error_codes: weir_config::GrpcCodeSet::DEFAULT_ERRORS,
            gateway: None,
            preview: None,
        }],
    }
}

/// One route `web` for any host sending everything to `upstream`, spoken
/// to over `h2c`, with `timeouts`.
pub(crate) fn one_h2c_route(upstream: SocketAddr, timeouts: Timeouts) -> Snapshot {
    let mut snapshot = one_route(&[upstream], vec![], timeouts);
    snapshot.routes[0].split.stable.protocol = weir_config::UpstreamProtocol::H2c;
    snapshot
}

/// Reads from `stream` into `seen` until it holds a whole request head,
/// then takes that head off `seen` (a raw upstream's read of a request
/// without a body); `false` when the stream ends first.
pub(crate) async fn take_request_head(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            seen.drain(..end + 4);
            return true;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads an answer's head from `stream` (a raw client's read), each read
/// within `limit`: the head as text, and its status.
pub(crate) async fn read_answer_head(stream: &mut TcpStream, limit: Duration) -> (String, u16) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(limit, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read the answer");
        assert!(n > 0, "closed before a whole head: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&answer).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (head, status)
}

/// A proxy serving a snapshot on an ephemeral loopback port, until `stop`
/// is set or the value is dropped.
pub(crate) struct Running {
    /// The proxy, for its metrics and snapshot swaps.
    pub(crate) proxy: Proxy,
    /// Its listener.
    pub(crate) addr: SocketAddr,
    /// Set to true to drain and stop.
    pub(crate) stop: watch::Sender<bool>,
    /// The serve task; it answers how many connections the drain cut.
    pub(crate) served: tokio::task::JoinHandle<usize>,
    _publisher: weir_config::Publisher,
}

/// Starts a proxy serving `snapshot` with `options` on 127.0.0.1:0.
pub(crate) async fn start(snapshot: Snapshot, options: ServeOptions) -> Running {
    let (publisher, reader) = weir_config::channel(snapshot);
    let proxy = Proxy::new(reader, Arc::new(Metrics::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (stop, mut stop_rx) = watch::channel(false);
    let serving = proxy.clone();
    let served = tokio::spawn(async move {
        serving
            .serve(
                Listener::new(listener).expect("registering the listener"),
                options,
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
            )
            .await
    });
    Running {
        proxy,
        addr,
        stop,
        served,
        _publisher: publisher,
    }
}

/// Starts a proxy serving `snapshot` on the `forwarding` path, with the
/// other options as they default.
pub(crate) async fn start_on(snapshot: Snapshot, forwarding: ForwardingPath) -> Running {
    let options = ServeOptions {
        forwarding,
        ..ServeOptions::default()
    };
    start(snapshot, options).await
}

/// An upstream answering every request head it reads (requests here have
/// no body) with `answer`.
pub(crate) async fn fixed_upstream(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while take_request_head(&mut stream, &mut seen).await {
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A raw upstream that reports the bytes of each request it reads (its
/// head, and a chunked body when the head says so; a chunked body here
/// ends with its last chunk, without trailers), and answers each `200`
/// without a body.
pub(crate) async fn recording_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => bytes.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                    let mut whole = end + 4;
                    if head.contains("transfer-encoding: chunked") {
                        // The body here always ends with its last chunk.
                        while !bytes[whole..].windows(5).any(|w| w == b"0\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                            }
                        }
                        let tail = bytes[whole..].windows(5).position(|w| w == b"0\r\n\r\n");
                        whole += tail.expect("found just above") + 5;
                    }
                    let _ = seen_tx.send(bytes.drain(..whole).collect());
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A proxy on the `forwarding` path with one route to a
/// [`recording_upstream`]: the proxy, and what the upstream reads.
pub(crate) async fn start_recorded(
    forwarding: ForwardingPath,
) -> (Running, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (upstream, requests) = recording_upstream().await;
    let proxy = start_on(
        one_route(&[upstream], vec![], Timeouts::default()),
        forwarding,
    )
    .await;
    (proxy, requests)
}

/// The most header fields a [`hyper_upstream`] takes over HTTP/1: weir
/// adds its own (`x-request-id`, `x-forwarded-*`) to a client's.
pub(crate) const HYPER_UPSTREAM_MAX_HEADERS: usize = 200;

/// A hyper server, over HTTP/2 (prior knowledge) when `h2`, answering each
/// request with what `answer` makes of it.
pub(crate) async fn hyper_upstream<F, Fut>(h2: bool, answer: F) -> SocketAddr
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = answer.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if h2 {
                    let executor = hyper_util::rt::TokioExecutor::new();
                    let _ = hyper::server::conn::http2::Builder::new(executor)
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .max_headers(HYPER_UPSTREAM_MAX_HEADERS)
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    addr
}

/// Writes `request` on a new connection to `proxy` and reads until the
/// connection ends, within `limit`: all that came back, as text.
pub(crate) async fn send_until_closed(
    proxy: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> String {
    let mut client = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    client.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(limit, client.read_to_end(&mut answer))
        .await
        .expect("the answer, then the connection's end, in time")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET path` through the proxy at `proxy` over HTTP/2 with a stream
/// window of 0: the response head, whose body the client never takes (the
/// stream's window stays shut). The connection lives on after this
/// returns, its client with it.
pub(crate) async fn get_with_shut_window(
    proxy: SocketAddr,
    path: &str,
) -> hyper::Response<hyper::body::Incoming> {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect proxy");
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(0)
        .handshake(TokioIo::new(stream))
        .await
        .expect("client handshake");
    let client = sender.clone();
    tokio::spawn(async move {
        let _client = client;
        let _ = conn.await;
    });
    let req = hyper::Request::get(format!("http://test{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a request");
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("a response head in time")
            .expect("a response head");
    assert_eq!(response.status(), 200);
    response
}
