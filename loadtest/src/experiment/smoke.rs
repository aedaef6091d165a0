//! The built-in smoke tester, a `pre-rollout` webhook target in the manner
//! of Flagger's load tester: each call sends a few requests through weir to
//! the new revision's preview and answers 200 when every one answered 2xx,
//! 500 otherwise, so that weir's gate passes or fails on it.
//!
//! The call's `metadata` (strings, as in Flagger) says what to test:
//! `host` (the preview host, sent as `Host`), `header` (`name: value`, e.g.
//! `x-weir-preview: 1`), `path` (default `/`) and `requests`. It never sends
//! anything but to weir's loopback listener.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// How long one smoke request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The most requests one call may ask for.
const MAX_REQUESTS: u64 = 1000;

/// Requests per test when neither the scenario nor the call says.
pub(crate) const DEFAULT_REQUESTS: u64 = 20;

/// What one test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The route named in the call.
    pub(crate) route: String,
    /// The new revision named in the call.
    pub(crate) revision: String,
    /// The host and header it tested with.
    pub(crate) target: String,
    /// Requests answered 2xx.
    pub(crate) passed: u64,
    /// Requests not answered 2xx, or not answered.
    pub(crate) failed: u64,
    /// Answers by `x-upstream-name`.
    pub(crate) answered_by: BTreeMap<String, u64>,
}

/// Serves smoke tests on `listener` until the task is aborted, testing
/// through weir at `weir`; `report` hears of every test.
pub(crate) async fn serve(
    listener: TcpListener,
    weir: SocketAddr,
    requests: u64,
    report: Arc<dyn Fn(&Outcome) + Send + Sync>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let report = Arc::clone(&report);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let report = Arc::clone(&report);
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let call: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let outcome = test(weir, &call, requests).await;
                    report(&outcome);
                    Ok::<_, Infallible>(answer(&outcome))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the test a webhook call asks for.
async fn test(weir: SocketAddr, call: &Value, default_requests: u64) -> Outcome {
    let metadata = &call["metadata"];
    let text = |key: &str| metadata[key].as_str().map(str::to_owned);
    let host = text("host").unwrap_or_else(|| weir.to_string());
    let path = text("path").unwrap_or_else(|| "/".to_owned());
    let extra = text("header").and_then(|h| {
        let (name, value) = h.split_once(':')?;
        Some((name.trim().to_owned(), value.trim().to_owned()))
    });
    let requests = text("requests")
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(default_requests)
        .clamp(1, MAX_REQUESTS);
    let mut target = format!("Host {host}");
    if let Some((name, value)) = &extra {
        target.push_str(&format!(", {name}: {value}"));
    }
    let mut outcome = Outcome {
        route: call["name"].as_str().unwrap_or("?").to_owned(),
        revision: call["weir"]["canaryRevision"]
            .as_str()
            .unwrap_or("?")
            .to_owned(),
        target,
        passed: 0,
        failed: 0,
        answered_by: BTreeMap::new(),
    };
    let mut sender = None;
    for _ in 0..requests {
        if sender.is_none() {
            sender = connect(weir).await;
        }
        let answered = match sender.as_mut() {
            Some(s) => get(s, &host, &path, extra.as_ref()).await,
            None => None,
        };
        match answered {
            Some((status, by)) => {
                *outcome.answered_by.entry(by).or_default() += 1;
                if status.is_success() {
                    outcome.passed += 1;
                } else {
                    outcome.failed += 1;
                }
            }
            None => {
                sender = None;
                outcome.failed += 1;
            }
        }
    }
    outcome
}

async fn connect(weir: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = timeout(REQUEST_TIMEOUT, TcpStream::connect(weir))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}

/// One `GET`: the status and the answering upstream's name (`-` when
/// weir answered itself).
async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
    extra: Option<&(String, String)>,
) -> Option<(StatusCode, String)> {
    let mut builder = Request::get(path).header(header::HOST, host);
    if let Some((name, value)) = extra {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let request = builder.body(Full::new(Bytes::new())).ok()?;
    let exchange = async {
        sender.ready().await.ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status();
        let by = response
            .headers()
            .get("x-upstream-name")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        response.into_body().collect().await.ok()?;
        Some((status, by))
    };
    timeout(REQUEST_TIMEOUT, exchange).await.ok()?
}

fn answer(outcome: &Outcome) -> Response<Full<Bytes>> {
    let status = if outcome.failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = json!({
        "passed": outcome.passed,
        "failed": outcome.failed,
        "answeredBy": outcome.answered_by,
        "target": outcome.target,
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

// === impl Outcome ===

impl Outcome {
    /// One line for the timeline.
    pub(crate) fn text(&self) -> String {
        let by: Vec<String> = self
            .answered_by
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        format!(
            "smoke test of {} revision {} ({}): {} passed, {} failed{}; answered by {}",
            self.route,
            self.revision,
            self.target,
            self.passed,
            self.failed,
            if self.failed == 0 {
                " → 200"
            } else {
                " → 500"
            },
            if by.is_empty() {
                "nobody".to_owned()
            } else {
                by.join(", ")
            }
        )
    }
}
