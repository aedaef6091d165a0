//! The preview of a blue-green route under a real proxy on loopback: while
//! live, a preview host or the preview header reaches the canary (counted
//! as canary, no sticky cookie); other requests follow the weight; when not
//! live, preview requests follow the weight too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use weir_config::{
    Backend, HeaderOverride, HostMatch, PreviewSnapshot, RouteSnapshot, Snapshot, Split,
    Stickiness, Timeouts, Weight,
};
use weir_proxy::http1::ForwardingPath;
use weir_proxy::{Listener, Metrics, Proxy, Role, ServeOptions};

const DEADLINE: Duration = Duration::from_secs(10);

/// A fake upstream that answers its name.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn backend(revision: &str, addr: SocketAddr) -> Backend {
    Backend {
        revision: Arc::from(revision),
        endpoints: vec![addr],
        protocol: weir_config::UpstreamProtocol::Http1,
        tls: None,
    }
}

fn route(name: &str, hosts: Vec<HostMatch>, split: Split) -> RouteSnapshot {
    RouteSnapshot {
        name: Arc::from(name),
        hosts,
        path_prefix: "/".to_owned(),
        split,
        canary_by_header: None,
        stickiness: None,
        timeouts: Timeouts::default(),
        upgrades: vec![],
        stable_fallback: None,
        grpc_error_codes: weir_config::GrpcCodeSet::DEFAULT_ERRORS,
        gateway: None,
        preview: None,
    }
}

/// Route `shop` (blue-green, sticky, at `percent`) on `shop.test` with the
/// preview host `preview.shop.test` and header `x-preview: 1`, and a
/// catch-all route `rest` that would otherwise take the preview host.
fn snapshot(addrs: [SocketAddr; 3], percent: u32, live: bool) -> Snapshot {
    let [blue, green, rest] = addrs;
    let mut shop = route(
        "shop",
        vec![HostMatch::Exact("shop.test".to_owned())],
        Split {
            stable: backend("blue", blue),
            canary: Some(backend("green", green)),
            canary_weight: Weight::from_percent_int(percent),
            cohort_seed: 7,
        },
    );
    shop.stickiness = Some(Stickiness {
        cookie: Arc::from("weir-shop"),
        max_age: Duration::from_secs(3600),
    });
    shop.preview = Some(PreviewSnapshot {
        hosts: vec![HostMatch::Exact("preview.shop.test".to_owned())],
        header: Some(HeaderOverride {
            name: Arc::from("x-preview"),
            value: Arc::from("1"),
        }),
        live,
    });
    let rest = route(
        "rest",
        vec![],
        Split {
            stable: backend("rest", rest),
            canary: None,
            canary_weight: Weight::ZERO,
            cohort_seed: 0,
        },
    );
    Snapshot {
        version: 0,
        routes: vec![shop, rest],
    }
}

async fn start_proxy(
    initial: Snapshot,
    forwarding: ForwardingPath,
) -> (
    weir_config::Publisher,
    Proxy,
    Arc<Metrics>,
    SocketAddr,
    watch::Sender<bool>,
) {
    let (publisher, reader) = weir_config::channel(initial);
    let metrics = Arc::new(Metrics::new());
    let proxy = Proxy::new(reader, Arc::clone(&metrics));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let serving = proxy.clone();
    tokio::spawn(async move {
        serving
            .serve(
                Listener::new(listener).expect("registering the listener"),
                ServeOptions {
                    forwarding,
                    ..ServeOptions::default()
                },
                async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                },
            )
            .await
    });
    (publisher, proxy, metrics, addr, stop_tx)
}

/// One request on a new connection: the body and whether a cookie was set.
async fn get(proxy: SocketAddr, host: &str, header: Option<(&str, &str)>) -> (String, bool) {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::get("/").header("host", host);
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("deadline")
        .expect("response");
    assert_eq!(response.status(), 200);
    let sets_cookie = response.headers().contains_key("set-cookie");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (String::from_utf8_lossy(&body).into_owned(), sets_cookie)
}

async fn wait_applied(proxy: &Proxy, version: u64) {
    let mut applied = proxy.applied();
    tokio::time::timeout(DEADLINE, applied.wait_for(|v| *v >= version))
        .await
        .expect("deadline")
        .expect("proxy alive");
}

#[tokio::test]
async fn a_live_preview_reaches_the_canary_by_host_and_by_header_and_pins_no_one_on_the_own_path() {
    a_live_preview_reaches_the_canary_by_host_and_by_header_and_pins_no_one(ForwardingPath::Own)
        .await;
}

#[tokio::test]
async fn a_live_preview_reaches_the_canary_by_host_and_by_header_and_pins_no_one_on_hyper() {
    a_live_preview_reaches_the_canary_by_host_and_by_header_and_pins_no_one(ForwardingPath::Hyper)
        .await;
}

async fn a_live_preview_reaches_the_canary_by_host_and_by_header_and_pins_no_one(
    forwarding: ForwardingPath,
) {
    let addrs = [
        upstream("blue").await,
        upstream("green").await,
        upstream("rest").await,
    ];
    let (publisher, proxy, metrics, addr, _stop) =
        start_proxy(snapshot(addrs, 0, true), forwarding).await;

    for _ in 0..20 {
        let (body, cookie) = get(addr, "preview.shop.test", None).await;
        assert_eq!((body.as_str(), cookie), ("green", false), "preview host");
        let (body, cookie) = get(addr, "shop.test", Some(("x-preview", "1"))).await;
        assert_eq!((body.as_str(), cookie), ("green", false), "preview header");
        let (body, cookie) = get(addr, "shop.test", None).await;
        assert_eq!((body.as_str(), cookie), ("blue", true), "active traffic");
        let (body, _) = get(addr, "shop.test", Some(("x-preview", "2"))).await;
        assert_eq!(body, "blue", "another header value is active traffic");
        let (body, _) = get(addr, "elsewhere.test", Some(("x-preview", "1"))).await;
        assert_eq!(body, "rest", "the header selects only within its route");
    }
    let canary = metrics.get("shop", Role::Canary).expect("canary counters");
    assert_eq!(
        canary.requests_with_code(200),
        40,
        "preview requests count as canary"
    );

    // Not live: preview requests follow the weight like any other.
    let version = publisher.publish(snapshot(addrs, 0, false));
    wait_applied(&proxy, version).await;
    for _ in 0..10 {
        let (body, _) = get(addr, "preview.shop.test", None).await;
        assert_eq!(body, "blue", "preview host, not live");
        let (body, _) = get(addr, "shop.test", Some(("x-preview", "1"))).await;
        assert_eq!(body, "blue", "preview header, not live");
    }

    // Swapped: every request reaches the new revision.
    let version = publisher.publish(snapshot(addrs, 100, true));
    wait_applied(&proxy, version).await;
    for host in ["shop.test", "preview.shop.test"] {
        let (body, _) = get(addr, host, None).await;
        assert_eq!(body, "green", "{host} after the swap");
    }
}

#[tokio::test]
async fn a_wildcard_preview_host_takes_no_host_a_route_names_exactly_on_the_own_path() {
    a_wildcard_preview_host_takes_no_host_a_route_names_exactly(ForwardingPath::Own).await;
}

#[tokio::test]
async fn a_wildcard_preview_host_takes_no_host_a_route_names_exactly_on_hyper() {
    a_wildcard_preview_host_takes_no_host_a_route_names_exactly(ForwardingPath::Hyper).await;
}

/// A preview host is taken when it names the host at least as closely as
/// the routes do: `*.test` as the preview of `shop` reaches its new
/// revision for `other.test`, while `shop.test` (its own host) and
/// `office.test` (another route's) keep their routes, and a catch-all
/// route never takes a preview host.
async fn a_wildcard_preview_host_takes_no_host_a_route_names_exactly(forwarding: ForwardingPath) {
    let addrs = [
        upstream("blue").await,
        upstream("green").await,
        upstream("rest").await,
    ];
    let office_addr = upstream("office").await;
    let mut snap = snapshot(addrs, 0, true);
    if let Some(preview) = snap.routes[0].preview.as_mut() {
        preview.hosts = vec![HostMatch::Suffix(".test".to_owned())];
    }
    let office = route(
        "office",
        vec![HostMatch::Exact("office.test".to_owned())],
        Split {
            stable: backend("office", office_addr),
            canary: None,
            canary_weight: Weight::ZERO,
            cohort_seed: 0,
        },
    );
    snap.routes.insert(1, office);
    let (_publisher, _proxy, _metrics, addr, _stop) = start_proxy(snap, forwarding).await;
    for (host, want) in [
        ("other.test", "green"),
        ("a.b.test", "green"),
        ("shop.test", "blue"),
        ("SHOP.test:80", "blue"),
        ("office.test", "office"),
        ("elsewhere.example", "rest"),
    ] {
        let (body, _) = get(addr, host, None).await;
        assert_eq!(body, want, "{host}");
    }
}
