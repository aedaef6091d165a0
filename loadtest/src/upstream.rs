//! A fake upstream: answers every request with `200` and the body `NAME\n`
//! (or `500` and `NAME error\n` when a fault fires), tagged with
//! `x-upstream-name: NAME`, after reading and discarding the request body and
//! sleeping the configured latency: fixed (`5ms`), uniform (`5ms..50ms`) or
//! exponential (`exp:20ms`), see [`LatencyDist`]. It speaks HTTP/1.1 and h2c
//! on one port and echoes WebSocket frames.
//!
//! Special paths, all answered with the same tag:
//! - `/__upstream/echo-body-len`: the number of request body bytes received,
//!   counted as they stream in (constant memory);
//! - `/__upstream/headers`: the request headers as a JSON object, name to
//!   value (repeated headers joined with `, `);
//! - `/__upstream/control`: `POST {"errorRate":0.5,"latency":"5ms..50ms"}`
//!   changes the faults while running (`latencyMs: 10` sets a fixed latency;
//!   `failAfterMs` too, `null` clears it); `GET` shows them;
//! - `/__upstream/stats`: request counts as JSON.
//!
//! Faults apply to every path but `control` and `stats`, which are not counted.
//! The server never echoes anything it was not asked to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

mod latency;

pub use latency::{EXP_CAP, LatencyDist, MAX_LATENCY};

/// The response header that names the upstream.
pub const NAME_HEADER: &str = "x-upstream-name";

/// Command-line options of `weir-loadtest upstream`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs {
    /// Address to bind, e.g. `127.0.0.1:9001` (port 0 picks a free one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Name put in every body and in the `x-upstream-name` header.
    #[arg(long)]
    pub name: String,
    /// Fraction of requests answered with 500, from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub error_rate: f64,
    /// Delay before each answer: `5ms` (fixed), `5ms..50ms` (uniform between
    /// the two, both included) or `exp:20ms` (exponential with that mean,
    /// capped at 10 × the mean). Durations as in weir.yaml, at most 1h.
    #[arg(long, value_name = "SPEC", default_value = "0s")]
    pub latency: LatencyDist,
    /// From this long after start on, every request fails with 500.
    #[arg(long, value_parser = crate::parse_duration)]
    pub fail_after: Option<Duration>,
}

/// The faults currently injected; the answer of `/__upstream/control`.
///
/// In JSON: `errorRate`, `latency` (the spec, e.g. `"5ms..50ms"`),
/// `latencyMs` (its mean in whole milliseconds, the value itself when
/// fixed, for older readers) and `failAfterMs`. Read back, `latency` wins
/// over `latencyMs`, which alone gives a fixed latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "FaultsJson", from = "FaultsJson")]
pub struct Faults {
    /// Fraction of requests answered with 500.
    pub error_rate: f64,
    /// Delay before each answer.
    pub latency: LatencyDist,
    /// Milliseconds after start from which every request fails.
    pub fail_after_ms: Option<u64>,
}

/// [`Faults`] as JSON.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultsJson {
    error_rate: f64,
    #[serde(default)]
    latency: Option<LatencyDist>,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    fail_after_ms: Option<u64>,
}

/// The body of `/__upstream/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The upstream's name.
    pub name: String,
    /// Requests answered, special paths included, `control` and `stats` not.
    pub requests: u64,
    /// Of those, answered 200.
    pub ok: u64,
    /// Of those, answered 500 by an injected fault.
    pub errors: u64,
    /// WebSocket upgrades accepted.
    pub websockets: u64,
    /// Request body bytes received.
    pub body_bytes: u64,
}

/// A running fake upstream's shared state: its name, faults and counters.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    tag: HeaderValue,
    started: Instant,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    websockets: AtomicU64,
    body_bytes: AtomicU64,
}

/// Partial update of [`Faults`] as posted to `/__upstream/control`: a
/// missing field keeps its value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsUpdate {
    /// New fraction of requests answered with 500, from 0 to 1.
    pub error_rate: Option<f64>,
    /// New delay before each answer, as a spec string (`"5ms"`,
    /// `"5ms..50ms"`, `"exp:20ms"`) or whole seconds.
    pub latency: Option<LatencyDist>,
    /// New fixed delay before each answer, in milliseconds; not together
    /// with `latency`.
    pub latency_ms: Option<u64>,
    /// `Some(None)` clears the fail-after time, `Some(Some(ms))` sets it.
    #[serde(default, deserialize_with = "some_option")]
    pub fail_after_ms: Option<Option<u64>>,
}

type Body = Full<Bytes>;

/// Binds `args.listen`, prints `listening on ADDR` to stdout and serves until
/// SIGINT or SIGTERM.
///
/// # Errors
/// When the address cannot be bound or the name is empty or not a valid
/// header value.
pub async fn main(args: UpstreamArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let upstream = Arc::new(Upstream::new(&args)?);
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}").context("writing to stdout")?;
        out.flush().context("flushing stdout")?;
    }
    tracing::info!(%addr, name = %args.name, "upstream listening");
    tokio::select! {
        () = serve(listener, upstream) => {}
        () = shutdown_signal() => tracing::info!("signal received, stopping"),
    }
    Ok(())
}

/// Accepts connections on `listener` and serves them forever.
pub async fn serve(listener: TcpListener, upstream: Arc<Upstream>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let upstream = Arc::clone(&upstream);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let upstream = Arc::clone(&upstream);
                async move { Ok::<_, Infallible>(upstream.handle(req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Accepts `Some(null)` as "clear", absent as "keep".
fn some_option<'de, D>(de: D) -> Result<Option<Option<u64>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<u64>::deserialize(de).map(Some)
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    let p: f64 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{text}: must be between 0 and 1"))
    }
}

// === impl Faults ===

impl From<Faults> for FaultsJson {
    fn from(f: Faults) -> Self {
        Self {
            error_rate: f.error_rate,
            latency: Some(f.latency),
            latency_ms: f.latency.mean_ms(),
            fail_after_ms: f.fail_after_ms,
        }
    }
}

impl From<FaultsJson> for Faults {
    fn from(j: FaultsJson) -> Self {
        Self {
            error_rate: j.error_rate,
            latency: j
                .latency
                .unwrap_or_else(|| LatencyDist::fixed(Duration::from_millis(j.latency_ms))),
            fail_after_ms: j.fail_after_ms,
        }
    }
}

// === impl Upstream ===

impl Upstream {
    /// Builds the state from the command-line options; the fail-after clock
    /// starts now.
    ///
    /// # Errors
    /// When the name is empty, has whitespace at its ends, or cannot be
    /// sent as a header value.
    pub fn new(args: &UpstreamArgs) -> anyhow::Result<Self> {
        // An upstream names itself in every answer: a name that is empty or
        // has whitespace at its ends would not read back as written.
        if args.name.trim() != args.name || args.name.is_empty() {
            anyhow::bail!(
                "upstream name {:?} is empty or starts or ends with whitespace; give it a name",
                args.name
            );
        }
        let tag = HeaderValue::from_str(&args.name).with_context(|| {
            format!("upstream name {:?} is not a valid header value", args.name)
        })?;
        Ok(Self {
            name: args.name.clone(),
            tag,
            started: Instant::now(),
            faults: Mutex::new(Faults {
                error_rate: args.error_rate,
                latency: args.latency,
                fail_after_ms: args
                    .fail_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
            requests: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            websockets: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        })
    }

    /// The current counters.
    pub fn stats(&self) -> Stats {
        Stats {
            name: self.name.clone(),
            requests: self.requests.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            websockets: self.websockets.load(Ordering::Relaxed),
            body_bytes: self.body_bytes.load(Ordering::Relaxed),
        }
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/__upstream/stats" => return self.json(StatusCode::OK, &self.stats()),
            "/__upstream/control" => return self.control(req).await,
            _ => {}
        }
        if is_websocket_upgrade(req.headers()) {
            return self.upgrade(&mut req);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let headers = req.headers().clone();
        let received = match self.drain(req.into_body()).await {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(%error, "request body failed");
                return self.text(StatusCode::BAD_REQUEST, format!("{} bad body\n", self.name));
            }
        };
        let faults = self.faults();
        if !faults.latency.is_zero() {
            let delay = faults.latency.sample(&mut fastrand::Rng::new());
            tokio::time::sleep(delay).await;
        }
        if self.should_fail(&faults) {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return self.text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{} error\n", self.name),
            );
        }
        self.ok.fetch_add(1, Ordering::Relaxed);
        match path.as_str() {
            "/__upstream/echo-body-len" => self.text(StatusCode::OK, format!("{received}\n")),
            "/__upstream/headers" => self.json(StatusCode::OK, &headers_json(&headers)),
            _ => self.text(StatusCode::OK, format!("{}\n", self.name)),
        }
    }

    fn should_fail(&self, faults: &Faults) -> bool {
        let failing_since = faults
            .fail_after_ms
            .is_some_and(|ms| self.started.elapsed() >= Duration::from_millis(ms));
        failing_since || (faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate)
    }

    /// Reads the body frame by frame, keeping only the count.
    async fn drain(&self, mut body: Incoming) -> Result<u64, hyper::Error> {
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                let n = data.len() as u64;
                received += n;
                self.body_bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(received)
    }

    async fn control(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return self.json(StatusCode::OK, &self.faults());
        }
        let body = match req.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) => return self.error(StatusCode::BAD_REQUEST, &error.to_string()),
        };
        let update: FaultsUpdate = match serde_json::from_slice(&body) {
            Ok(update) => update,
            Err(error) => return self.error(StatusCode::BAD_REQUEST, &error.to_string()),
        };
        if let Some(p) = update.error_rate
            && !(0.0..=1.0).contains(&p)
        {
            return self.error(StatusCode::BAD_REQUEST, "errorRate must be between 0 and 1");
        }
        if update.latency.is_some() && update.latency_ms.is_some() {
            return self.error(
                StatusCode::BAD_REQUEST,
                "give latency or latencyMs, not both",
            );
        }
        let faults = self.update_faults(&update);
        self.json(StatusCode::OK, &faults)
    }

    /// Applies `update` (as `/__upstream/control` does) and returns the
    /// faults now in force. The caller checks that an error rate is within
    /// 0 and 1 (one outside is clamped) and that `latency` and `latencyMs`
    /// are not both given (`latency` wins).
    pub fn update_faults(&self, update: &FaultsUpdate) -> Faults {
        let faults = {
            let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(p) = update.error_rate {
                faults.error_rate = p.clamp(0.0, 1.0);
            }
            if let Some(ms) = update.latency_ms {
                faults.latency = LatencyDist::fixed(Duration::from_millis(ms));
            }
            if let Some(latency) = update.latency {
                faults.latency = latency;
            }
            if let Some(after) = update.fail_after_ms {
                faults.fail_after_ms = after;
            }
            *faults
        };
        tracing::info!(name = %self.name, ?faults, "faults changed");
        faults
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answers 101 and echoes frames on the upgraded connection.
    fn upgrade(self: &Arc<Self>, req: &mut Request<Incoming>) -> Response<Body> {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            return self.text(
                StatusCode::BAD_REQUEST,
                "missing sec-websocket-key\n".into(),
            );
        };
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(req);
        self.websockets.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "websocket upgrade failed");
                    return;
                }
            };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(message) = ws.next().await {
                let reply = match message {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => m,
                    // Pings are answered by tungstenite itself; close ends the loop.
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
        let mut response = self.text(StatusCode::SWITCHING_PROTOCOLS, String::new());
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        headers.remove(header::CONTENT_TYPE);
        response
    }

    fn text(&self, status: StatusCode, body: String) -> Response<Body> {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(NAME_HEADER, self.tag.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    fn json<T: Serialize>(&self, status: StatusCode, value: &T) -> Response<Body> {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(NAME_HEADER, self.tag.clone());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        self.json(status, &serde_json::json!({ "error": message }))
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.eq_ignore_ascii_case("websocket"))
    })
}

/// Header name to value; repeated headers joined with `, ` in order.
fn headers_json(headers: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        out.insert(name.as_str().to_owned(), serde_json::Value::String(joined));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_bounds() {
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_fraction("-0.1").is_err());
        assert!(parse_fraction("x").is_err());
    }

    #[test]
    fn control_update_keeps_missing_and_clears_null() {
        let u: FaultsUpdate = serde_json::from_str(r#"{"latencyMs":10}"#).unwrap();
        assert_eq!(u.error_rate, None);
        assert_eq!(u.latency_ms, Some(10));
        assert_eq!(u.fail_after_ms, None);
        let u: FaultsUpdate = serde_json::from_str(r#"{"failAfterMs":null}"#).unwrap();
        assert_eq!(u.fail_after_ms, Some(None));
        assert!(serde_json::from_str::<FaultsUpdate>(r#"{"bogus":1}"#).is_err());
        let u: FaultsUpdate = serde_json::from_str(r#"{"latency":"5ms..50ms"}"#).unwrap();
        assert_eq!(u.latency, Some("5ms..50ms".parse().unwrap()));
        assert_eq!(u.latency_ms, None);
        let err = serde_json::from_str::<FaultsUpdate>(r#"{"latency":"50ms..5ms"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("above the maximum"), "{err}");
    }

    #[test]
    fn an_upstream_has_a_name_it_can_say() {
        let named = |name: &str| {
            Upstream::new(&UpstreamArgs {
                listen: "127.0.0.1:0".parse().unwrap(),
                name: name.into(),
                error_rate: 0.0,
                latency: "0s".parse().unwrap(),
                fail_after: None,
            })
            .map(|u| u.name.clone())
            .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(named("v2 canary"), Ok("v2 canary".to_owned()));
        for bad in ["", " ", " v2", "v2\t"] {
            let err = named(bad).unwrap_err();
            assert!(err.contains("give it a name"), "{bad:?}: {err}");
        }
        let err = named("v2\n").unwrap_err();
        assert!(err.contains("whitespace"), "{err}");
        let err = named("v\u{1}2").unwrap_err();
        assert!(err.contains("not a valid header value"), "{err}");
    }

    fn upstream(latency: &str) -> Upstream {
        Upstream::new(&UpstreamArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            name: "t".into(),
            error_rate: 0.0,
            latency: latency.parse().unwrap(),
            fail_after: None,
        })
        .unwrap()
    }

    #[test]
    fn latency_ms_sets_a_fixed_latency_and_latency_a_distribution() {
        let u = upstream("exp:20ms");
        assert_eq!(
            u.faults().latency,
            LatencyDist::Exponential {
                mean: Duration::from_millis(20)
            }
        );
        let f = u.update_faults(&FaultsUpdate {
            latency_ms: Some(10),
            ..FaultsUpdate::default()
        });
        assert_eq!(f.latency, LatencyDist::Fixed(Duration::from_millis(10)));
        let f = u.update_faults(&FaultsUpdate {
            latency: Some("5ms..50ms".parse().unwrap()),
            ..FaultsUpdate::default()
        });
        assert_eq!(f.latency.to_string(), "5ms..50ms");
        let f = u.update_faults(&FaultsUpdate {
            latency_ms: Some(0),
            ..FaultsUpdate::default()
        });
        assert!(f.latency.is_zero());
    }

    #[test]
    fn faults_json_keeps_latency_ms_for_old_readers() {
        let f = upstream("5ms..50ms").faults();
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["latency"], "5ms..50ms");
        assert_eq!(json["latencyMs"], 27);
        assert_eq!(json["errorRate"], 0.0);
        assert!(json["failAfterMs"].is_null());
        assert_eq!(serde_json::from_value::<Faults>(json).unwrap(), f);
        let old: Faults =
            serde_json::from_str(r#"{"errorRate":0.5,"latencyMs":10,"failAfterMs":null}"#).unwrap();
        assert_eq!(old.latency, LatencyDist::Fixed(Duration::from_millis(10)));
        let json = serde_json::to_value(upstream("7ms").faults()).unwrap();
        assert_eq!(json["latencyMs"], 7);
        assert_eq!(json["latency"], "7ms");
    }

    #[test]
    fn headers_are_joined() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("host", HeaderValue::from_static("example"));
        let json = headers_json(&h);
        assert_eq!(json["x-a"], "1, 2");
        assert_eq!(json["host"], "example");
    }
}
