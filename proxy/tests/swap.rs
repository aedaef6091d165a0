//! Snapshot swaps under a real proxy on loopback: requests in flight finish on
//! the snapshot they started with, new ones see the new split, and upstream
//! connection pools of unchanged endpoints survive the swap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use weir_config::{Backend, RouteSnapshot, Snapshot, Split, Timeouts, Weight};
use weir_proxy::{Listener, Metrics, Proxy, ServeOptions};

mod support;
use support::closed_port;

const DEADLINE: Duration = Duration::from_secs(10);

/// A fake upstream that names itself and counts accepted connections; a
/// request to `/slow` waits until `gate` is notified.
struct Upstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    gate: Arc<Notify>,
}

async fn upstream(name: &'static str) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let connections = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let (count, wait) = (Arc::clone(&connections), Arc::clone(&gate));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let wait = Arc::clone(&wait);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let wait = Arc::clone(&wait);
                        async move {
                            let body: BoxBody<Bytes, Infallible> = match req.uri().path() {
                                "/slow" => {
                                    wait.notified().await;
                                    Full::new(Bytes::from(name)).boxed()
                                }
                                // No length: sent chunked.
                                "/chunked" => {
                                    StreamBody::new(futures_util::stream::iter([
                                        Ok::<_, Infallible>(Frame::data(Bytes::from(name))),
                                    ]))
                                    .boxed()
                                }
                                // The head, then nothing.
                                "/stall" => StreamBody::new(futures_util::stream::pending::<
                                    Result<Frame<Bytes>, Infallible>,
                                >())
                                .boxed(),
                                _ => Full::new(Bytes::from(name)).boxed(),
                            };
                            Ok::<_, Infallible>(Response::new(body))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        connections,
        gate,
    }
}

fn snapshot(stable: SocketAddr, canary: SocketAddr, percent: u32) -> Snapshot {
    let backend = |revision: &str, addr| Backend {
        revision: Arc::from(revision),
        endpoints: vec![addr],
        protocol: weir_config::UpstreamProtocol::Http1,
        tls: None,
    };
    Snapshot {
        version: 0,
        routes: vec![RouteSnapshot {
            name: Arc::from("web"),
            hosts: vec![],
            path_prefix: "/".to_owned(),
            split: Split {
                stable: backend("v1", stable),
                canary: Some(backend("v2", canary)),
                canary_weight: Weight::from_percent_int(percent),
                cohort_seed: 1,
            },
            canary_by_header: None,
            stickiness: None,
            timeouts: Timeouts::default(),
            upgrades: vec![Arc::from("websocket")],
            stable_fallback: None,
            grpc_error_codes: weir_config::GrpcCodeSet::DEFAULT_ERRORS,
            gateway: None,
            preview: None,
        }],
    }
}

async fn start_proxy(
    initial: Snapshot,
) -> (
    weir_config::Publisher,
    Proxy,
    SocketAddr,
    watch::Sender<bool>,
) {
    let (publisher, reader) = weir_config::channel(initial);
    let proxy = Proxy::new(reader, Arc::new(Metrics::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let serving = proxy.clone();
    tokio::spawn(async move {
        serving
            .serve(
                Listener::new(listener).expect("registering the listener"),
                ServeOptions::default(),
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
            )
            .await
    });
    (publisher, proxy, addr, stop_tx)
}

/// One keep-alive client connection to the proxy.
async fn client(proxy: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u16, String) {
    sender.ready().await.expect("client ready");
    let req = Request::get(path)
        .header("host", "test")
        .body(Empty::new())
        .expect("request");
    let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("deadline")
        .expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn wait_applied(proxy: &Proxy, version: u64) {
    let mut applied = proxy.applied();
    tokio::time::timeout(DEADLINE, applied.wait_for(|v| *v >= version))
        .await
        .expect("deadline")
        .expect("proxy alive");
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_snapshot() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let (publisher, proxy, addr, _stop) = start_proxy(snapshot(stable.addr, canary.addr, 0)).await;

    let mut slow_client = client(addr).await;
    let slow = tokio::spawn(async move { get(&mut slow_client, "/slow").await });
    // The slow request is parked at the stable upstream once it has a connection.
    tokio::time::timeout(DEADLINE, async {
        while stable.connections.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("slow request reached the stable upstream");

    let version = publisher.publish(snapshot(stable.addr, canary.addr, 100));
    wait_applied(&proxy, version).await;
    let mut fresh = client(addr).await;
    assert_eq!(get(&mut fresh, "/").await, (200, "canary".to_owned()));

    stable.gate.notify_one();
    let finished = tokio::time::timeout(DEADLINE, slow)
        .await
        .expect("deadline")
        .expect("task");
    assert_eq!(
        finished,
        (200, "stable".to_owned()),
        "the in-flight request kept its snapshot"
    );
}

#[tokio::test]
async fn upstream_pools_survive_a_swap() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let (publisher, proxy, addr, _stop) = start_proxy(snapshot(stable.addr, canary.addr, 0)).await;
    let mut sender = client(addr).await;
    for _ in 0..20 {
        assert_eq!(get(&mut sender, "/").await, (200, "stable".to_owned()));
    }
    for percent in [0, 0, 0] {
        let version = publisher.publish(snapshot(stable.addr, canary.addr, percent));
        wait_applied(&proxy, version).await;
        for _ in 0..20 {
            assert_eq!(get(&mut sender, "/").await, (200, "stable".to_owned()));
        }
    }
    assert_eq!(
        stable.connections.load(Ordering::SeqCst),
        1,
        "80 sequential requests over one pooled connection"
    );
    assert_eq!(canary.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unreachable_canary_is_a_counted_502() {
    let stable = upstream("stable").await;
    // Held bound, never listening: every connection is refused.
    let (_closed_port, closed) = closed_port();
    let (_publisher, proxy, addr, _stop) = start_proxy(snapshot(stable.addr, closed, 100)).await;
    let mut sender = client(addr).await;
    let (status, body) = get(&mut sender, "/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("canary"), "{body}");
    let mut out = String::new();
    proxy.metrics().render(&mut out);
    assert!(
        out.contains("weir_http_requests_total{route=\"web\",role=\"canary\",code=\"502\"} 1"),
        "{out}"
    );
    assert!(
        out.contains(
            "weir_upstream_errors_total{route=\"web\",role=\"canary\",kind=\"connect\"} 1"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn chunked_responses_return_their_connection_to_the_pool() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let (_publisher, _proxy, addr, _stop) =
        start_proxy(snapshot(stable.addr, canary.addr, 0)).await;
    let mut sender = client(addr).await;
    for _ in 0..20 {
        assert_eq!(
            get(&mut sender, "/chunked").await,
            (200, "stable".to_owned())
        );
    }
    assert_eq!(
        stable.connections.load(Ordering::SeqCst),
        1,
        "20 chunked responses over one pooled connection"
    );
}

#[tokio::test]
async fn a_stalled_upstream_body_is_cut_after_the_request_timeout() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let mut stalling = snapshot(stable.addr, canary.addr, 0);
    stalling.routes[0].timeouts.request = Duration::from_millis(300);
    let (_publisher, _proxy, addr, _stop) = start_proxy(stalling).await;
    let mut sender = client(addr).await;
    sender.ready().await.expect("client ready");
    let req = Request::get("/stall")
        .header("host", "test")
        .body(Empty::new())
        .expect("request");
    let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("deadline")
        .expect("head");
    assert_eq!(response.status(), 200);
    let started = std::time::Instant::now();
    let body = tokio::time::timeout(DEADLINE, response.into_body().collect())
        .await
        .expect("the body ends");
    assert!(
        body.is_err(),
        "a stalled body ends with an error, not a clean end"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "cut after the timeout, not before"
    );
}
