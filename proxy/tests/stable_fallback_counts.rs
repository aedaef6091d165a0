//! How `stableFallback` counts on real loopback sockets: a canary request
//! rescued by stable is one request in `weir_http_requests_total` and the
//! duration histogram, counted as what the client got (stable, its code),
//! while the canary's analysis counts still see the failed attempt as a
//! request and an error. Summed over roles and codes, the route's series
//! equal the requests answered, on both forwarding paths.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use weir_config::{
    Backend, RouteSnapshot, Snapshot, Split, StableFallback, Timeouts, UpstreamProtocol, Weight,
};
use weir_proxy::http1::ForwardingPath;
use weir_proxy::metrics::RoleCounts;
use weir_proxy::{Proxy, Role, ServeOptions};

mod support;
use support::{Running, closed_port};

/// Generous bound for anything that should happen promptly.
const DEADLINE: Duration = Duration::from_secs(10);

/// Both ways weir serves HTTP/1 (a `stableFallback` route is always handed
/// to hyper; the own path must count it the same).
const PATHS: [ForwardingPath; 2] = [ForwardingPath::Own, ForwardingPath::Hyper];

/// A fake upstream that answers every request `status` with its name.
async fn upstream(name: &'static str, status: StatusCode) -> SocketAddr {
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
                    let mut response = Response::new(Full::new(Bytes::from(name)));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
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
        protocol: UpstreamProtocol::Http1,
        tls: None,
    }
}

/// Route `web`: stable at `stable`, `percent` % to the canary at `canary`,
/// `stableFallback` for GET with `budget`.
fn snapshot(stable: SocketAddr, canary: SocketAddr, percent: u32, budget: f64) -> Snapshot {
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
            upgrades: vec![],
            stable_fallback: Some(StableFallback {
                methods: vec![Arc::from("GET"), Arc::from("HEAD"), Arc::from("OPTIONS")],
                max_body_bytes: 64 * 1024,
                budget,
            }),
            grpc_error_codes: weir_config::GrpcCodeSet::DEFAULT_ERRORS,
            gateway: None,
            preview: None,
        }],
    }
}

/// A proxy serving `snapshot` on the `forwarding` path.
async fn start(snapshot: Snapshot, forwarding: ForwardingPath) -> Running {
    support::start(
        snapshot,
        ServeOptions {
            forwarding,
            ..ServeOptions::default()
        },
    )
    .await
}

/// Sends `n` GETs on one keep-alive connection, each read to its end (by
/// then weir has counted it); returns how many got each status.
async fn send(proxy: SocketAddr, n: usize) -> BTreeMap<u16, u64> {
    let stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut got = BTreeMap::new();
    for _ in 0..n {
        sender.ready().await.expect("the connection stays open");
        let req = Request::get("/")
            .header("host", "shop.test")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("an answer in time")
            .expect("an answer");
        let status = response.status().as_u16();
        tokio::time::timeout(DEADLINE, response.into_body().collect())
            .await
            .expect("the body in time")
            .expect("a whole body");
        *got.entry(status).or_default() += 1;
    }
    got
}

/// What `/metrics` says about route `web`.
#[derive(Debug)]
struct Exported {
    /// `weir_http_requests_total` by (role, code).
    requests: BTreeMap<(String, u16), u64>,
    /// `weir_http_request_duration_seconds_count` by role.
    durations: BTreeMap<String, u64>,
    /// `weir_stable_fallback_total`.
    retried: u64,
    text: String,
}

impl Exported {
    fn read(proxy: &Proxy) -> Exported {
        let mut text = String::new();
        proxy.metrics().render(&mut text);
        let mut exported = Exported {
            requests: BTreeMap::new(),
            durations: BTreeMap::new(),
            retried: 0,
            text: String::new(),
        };
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let Some((name, labels)) = series.split_once('{') else {
                continue;
            };
            let labels: BTreeMap<&str, &str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            if labels.get("route") != Some(&"web") {
                continue;
            }
            let role = labels.get("role").map(|r| (*r).to_owned());
            match (name, role) {
                ("weir_http_requests_total", Some(role)) => {
                    let code = labels["code"].parse().expect("a three-digit code");
                    *exported.requests.entry((role, code)).or_default() += value;
                }
                ("weir_http_request_duration_seconds_count", Some(role)) => {
                    *exported.durations.entry(role).or_default() += value;
                }
                ("weir_stable_fallback_total", _) => exported.retried += value,
                _ => {}
            }
        }
        exported.text = text;
        exported
    }

    /// Requests of the route, every role and code.
    fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// Requests of `role` by code.
    fn codes(&self, role: &str) -> BTreeMap<u16, u64> {
        self.requests
            .iter()
            .filter(|((r, _), _)| r == role)
            .map(|((_, code), n)| (*code, *n))
            .collect()
    }
}

/// The counts the rollout analysis judges `role` by.
fn judged(proxy: &Proxy, role: Role) -> RoleCounts {
    proxy
        .metrics()
        .get("web", role)
        .map_or_else(RoleCounts::zero, |m| m.counts())
}

/// Checks the rule every case shares: each request answered is one
/// request in `weir_http_requests_total` and in the duration histogram,
/// by the code its client got; every canary attempt, rescued or not, is a
/// request and an error of the canary's analysis; stable's analysis counts
/// what stable answered.
fn check(proxy: &Proxy, sent: u64, got: &BTreeMap<u16, u64>, path: ForwardingPath) {
    let m = Exported::read(proxy);
    let text = &m.text;
    assert_eq!(
        m.total(),
        sent,
        "{path:?}: one series count per request answered, got {got:?}:\n{text}"
    );
    assert_eq!(
        m.durations.values().sum::<u64>(),
        sent,
        "{path:?}: one duration per request answered:\n{text}"
    );
    let stable = m.codes("stable");
    let canary = m.codes("canary");
    assert_eq!(
        stable,
        got.iter()
            .filter(|(code, _)| **code == 200)
            .map(|(c, n)| (*c, *n))
            .collect(),
        "{path:?}: stable answered every 200 the clients got:\n{text}"
    );
    assert_eq!(
        canary,
        got.iter()
            .filter(|(code, _)| **code != 200)
            .map(|(c, n)| (*c, *n))
            .collect(),
        "{path:?}: the canary's exported codes are the failures clients saw:\n{text}"
    );
    assert_eq!(
        m.durations.get("canary").copied().unwrap_or(0),
        canary.values().sum::<u64>(),
        "{path:?}: a rescued attempt is not in the canary's histogram:\n{text}"
    );

    let visible: u64 = canary.values().sum();
    let canary_judged = judged(proxy, Role::Canary);
    assert_eq!(
        (canary_judged.requests, canary_judged.errors),
        (visible + m.retried, visible + m.retried),
        "{path:?}: the canary's analysis counts every failed attempt, rescued or not:\n{text}"
    );
    assert_eq!(
        canary_judged.latency.iter().sum::<u64>(),
        visible + m.retried,
        "{path:?}: and its latency:\n{text}"
    );
    let stable_judged = judged(proxy, Role::Stable);
    let stable_answers = stable.values().sum::<u64>();
    assert_eq!(
        (stable_judged.requests, stable_judged.errors),
        (stable_answers, 0),
        "{path:?}: stable's analysis counts its answers, rescues included:\n{text}"
    );
}

/// A canary refusing every connection, 100 % of the traffic, a budget
/// that allows every retry: clients get stable's 200 each time, and the
/// metrics show exactly that, while the canary's analysis sees N failures.
#[tokio::test]
async fn a_refused_canary_attempt_rescued_by_stable_counts_once_as_stable() {
    const N: u64 = 20;
    for path in PATHS {
        let stable = upstream("stable", StatusCode::OK).await;
        let (_held, canary) = closed_port();
        let running = start(snapshot(stable, canary, 100, 1.0), path).await;

        let got = send(running.addr, N as usize).await;
        assert_eq!(got, BTreeMap::from([(200, N)]), "{path:?}");
        check(&running.proxy, N, &got, path);
        let m = Exported::read(&running.proxy);
        assert_eq!(m.retried, N, "{path:?}:\n{}", m.text);
        assert!(
            m.codes("canary").is_empty(),
            "{path:?}: no canary answer was sent:\n{}",
            m.text
        );
    }
}

/// The same with a canary that answers `503` itself: its answer is dropped
/// unsent, and counted for the canary's analysis only.
#[tokio::test]
async fn a_canary_503_rescued_by_stable_counts_once_as_stable() {
    const N: u64 = 20;
    for path in PATHS {
        let stable = upstream("stable", StatusCode::OK).await;
        let canary = upstream("canary", StatusCode::SERVICE_UNAVAILABLE).await;
        let running = start(snapshot(stable, canary, 100, 1.0), path).await;

        let got = send(running.addr, N as usize).await;
        assert_eq!(got, BTreeMap::from([(200, N)]), "{path:?}");
        check(&running.proxy, N, &got, path);
        let m = Exported::read(&running.proxy);
        assert_eq!(m.retried, N, "{path:?}:\n{}", m.text);
    }
}

/// Weight 50 % to a refusing canary with the default budget (0.2): some
/// failures are rescued, the others reach the client as weir's `502`. The
/// route's series still sum to the requests sent, each by the code its
/// client got.
#[tokio::test]
async fn with_part_of_the_failures_rescued_the_series_sum_to_the_requests_answered() {
    const N: u64 = 100;
    for path in PATHS {
        let stable = upstream("stable", StatusCode::OK).await;
        let (_held, canary) = closed_port();
        let running = start(snapshot(stable, canary, 50, 0.2), path).await;

        let got = send(running.addr, N as usize).await;
        assert_eq!(got.values().sum::<u64>(), N, "{path:?}");
        check(&running.proxy, N, &got, path);
        let m = Exported::read(&running.proxy);
        // About half of 100 requests go to the canary, and retries are
        // capped at a fifth of all requests: fewer than 21 canary requests
        // (none left visible) is about one in two billion.
        assert!(m.retried > 0, "{path:?}: some were rescued:\n{}", m.text);
        assert!(
            got.get(&502).copied().unwrap_or(0) > 0,
            "{path:?}: some failures were seen: {got:?}:\n{}",
            m.text
        );
    }
}
