//! Helpers shared by the proxy's integration tests. Each test binary
//! uses its part of them, so the rest would be dead code there.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use weir_config::{Backend, HostMatch, RouteSnapshot, Snapshot, Split, Timeouts, Weight};
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
