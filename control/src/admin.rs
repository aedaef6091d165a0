//! The admin API: health, readiness, Prometheus metrics, and the control
//! endpoints, with reader and writer bearer tokens.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::controller::now_ms;
use crate::reload::{self, Trigger};
use crate::rollout::{Command, Phase};
use crate::run::Process;

/// What the admin API serves from.
#[derive(Debug)]
pub struct AdminState {
    process: Arc<Process>,
    ready: AtomicBool,
}

/// The address of the admin API's caller.
#[derive(Debug, Clone, Copy)]
struct Peer(std::net::SocketAddr);

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    Read,
    Write,
}

// === impl AdminState ===

impl AdminState {
    /// Admin state over the running process; not ready until [`Self::set_ready`].
    pub fn new(process: Arc<Process>) -> AdminState {
        AdminState {
            process,
            ready: AtomicBool::new(false),
        }
    }

    /// Sets what `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    /// The Prometheus text exposition of every weir metric.
    pub async fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.process.proxy.metrics().render(&mut out);
        let snapshot = self.process.publisher.current();
        out.push_str(
            "# HELP weir_canary_weight Share of requests sent to the canary, in percent.\n",
        );
        out.push_str("# TYPE weir_canary_weight gauge\n");
        for route in &snapshot.routes {
            let _ = writeln!(
                out,
                "weir_canary_weight{{route=\"{}\"}} {}",
                route.name, route.split.canary_weight
            );
        }
        self.process.control.lock().await.render_metrics(&mut out);
        let reloads = &self.process.reloads;
        out.push_str(
            "# HELP weir_config_reloads_total Config reloads after the initial load, by result.\n",
        );
        out.push_str("# TYPE weir_config_reloads_total counter\n");
        let _ = writeln!(
            out,
            "weir_config_reloads_total{{result=\"success\"}} {}",
            reloads.success.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "weir_config_reloads_total{{result=\"failure\"}} {}",
            reloads.failure.load(Relaxed)
        );
        out
    }

    async fn handle(
        &self,
        mut req: Request<Incoming>,
        peer: std::net::SocketAddr,
    ) -> Response<Full<Bytes>> {
        req.extensions_mut().insert(Peer(peer));
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        match (req.method(), segments.as_slice()) {
            (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok\n"),
            (&Method::GET, ["readyz"]) => {
                if self.ready.load(Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            (&Method::GET, ["metrics"]) => {
                let mut response =
                    Response::new(Full::new(Bytes::from(self.render_metrics().await)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            (&Method::GET, ["api", "v1", "routes"]) => {
                if let Err(response) = self.authorize(&req, Access::Read).await {
                    return response;
                }
                let control = self.process.control.lock().await;
                json(StatusCode::OK, &Value::Array(control.statuses(now_ms())))
            }
            (&Method::GET, ["api", "v1", "routes", name]) => {
                if let Err(response) = self.authorize(&req, Access::Read).await {
                    return response;
                }
                let control = self.process.control.lock().await;
                match control.status(name, now_ms()) {
                    Some(status) => json(StatusCode::OK, &status),
                    None => error(StatusCode::NOT_FOUND, &format!("no route named {name}")),
                }
            }
            (&Method::POST, ["api", "v1", "routes", name, verb]) => {
                let (name, verb) = ((*name).to_owned(), (*verb).to_owned());
                if let Err(response) = self.authorize(&req, Access::Write).await {
                    return response;
                }
                let full = match read_json(req).await {
                    Ok(body) => body.get("full").and_then(Value::as_bool).unwrap_or(false),
                    Err(response) => return response,
                };
                let command = match (verb.as_str(), full) {
                    ("promote", false) => Command::Promote,
                    ("promote", true) => Command::PromoteFull,
                    ("abort", _) => Command::Abort,
                    ("retry", _) => Command::Retry,
                    ("pause", _) => Command::Pause,
                    ("resume", _) => Command::Resume,
                    _ => {
                        return error(
                            StatusCode::NOT_FOUND,
                            &format!(
                                "no command {verb}; use promote, abort, retry, pause or resume"
                            ),
                        );
                    }
                };
                self.run_command(&name, command).await
            }
            (&Method::POST, ["api", "v1", "promote"]) => {
                if let Err(response) = self.authorize(&req, Access::Write).await {
                    return response;
                }
                self.promote_all().await
            }
            (&Method::POST, ["api", "v1", "reload"]) => {
                if let Err(response) = self.authorize(&req, Access::Write).await {
                    return response;
                }
                match reload::reload(&self.process, Trigger::Api).await {
                    Ok(outcome) => json(
                        StatusCode::OK,
                        &serde_json::json!({ "reloaded": matches!(outcome, reload::Outcome::Applied(_)) }),
                    ),
                    Err(diagnostics) => {
                        let errors: Vec<String> =
                            diagnostics.0.iter().map(ToString::to_string).collect();
                        json(
                            StatusCode::BAD_REQUEST,
                            &serde_json::json!({ "error": format!("config refused: {}", errors.join("; ")), "errors": errors }),
                        )
                    }
                }
            }
            (
                _,
                ["healthz" | "readyz" | "metrics"]
                | ["api", "v1", "routes" | "promote" | "reload"]
                | ["api", "v1", "routes", _]
                | ["api", "v1", "routes", _, _],
            ) => error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} is not allowed on {path}", req.method()),
            ),
            _ => error(StatusCode::NOT_FOUND, &format!("no admin endpoint {path}")),
        }
    }

    async fn run_command(&self, name: &str, command: Command) -> Response<Full<Bytes>> {
        let mut control = self.process.control.lock().await;
        let now = now_ms();
        match control.command(name, command, now).await {
            Ok(republish) => {
                // Published under the lock, so snapshots keep the order of
                // the states; the wait for the proxy happens without it.
                let version = republish.then(|| self.process.publisher.publish(control.snapshot()));
                let status = control.status(name, now);
                drop(control);
                if let Some(version) = version {
                    self.process.wait_applied(version).await;
                }
                match status {
                    Some(status) => json(StatusCode::OK, &status),
                    None => error(StatusCode::NOT_FOUND, &format!("no route named {name}")),
                }
            }
            Err(refused) => error(
                StatusCode::from_u16(refused.status).unwrap_or(StatusCode::CONFLICT),
                &refused.message,
            ),
        }
    }

    /// Promotes every Paused route in one step and publishes once.
    async fn promote_all(&self) -> Response<Full<Bytes>> {
        let mut control = self.process.control.lock().await;
        let now = now_ms();
        let paused: Vec<String> = control
            .rollouts
            .iter()
            .filter(|(_, state)| state.phase == Phase::Paused)
            .map(|(name, _)| name.clone())
            .collect();
        let mut promoted = Vec::new();
        let mut republish = false;
        let mut failures = Vec::new();
        for name in &paused {
            match control.command(name, Command::Promote, now).await {
                Ok(changed) => {
                    republish |= changed;
                    promoted.push(name.clone());
                }
                Err(refused) => failures.push(format!("{name}: {}", refused.message)),
            }
        }
        let version = republish.then(|| self.process.publisher.publish(control.snapshot()));
        let routes = control.statuses(now);
        drop(control);
        if let Some(version) = version {
            self.process.wait_applied(version).await;
        }
        if failures.is_empty() {
            json(
                StatusCode::OK,
                &serde_json::json!({ "promoted": promoted, "routes": routes }),
            )
        } else {
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({ "error": failures.join("; "), "promoted": promoted, "routes": routes }),
            )
        }
    }

    /// Checks the bearer token against the tokens of the config in force.
    async fn authorize(
        &self,
        req: &Request<Incoming>,
        need: Access,
    ) -> Result<(), Response<Full<Bytes>>> {
        let (reader, writer) = {
            let control = self.process.control.lock().await;
            let admin = &control.config().admin;
            (admin.reader_token.clone(), admin.writer_token.clone())
        };
        if reader.is_none() && writer.is_none() {
            // No tokens: only local callers. Validation allows this only on a
            // loopback address, but the socket keeps the address it was bound
            // to at startup while a reload may change the config's.
            let local = req
                .extensions()
                .get::<Peer>()
                .is_some_and(|p| p.0.ip().is_loopback());
            return if local {
                Ok(())
            } else {
                Err(error(
                    StatusCode::FORBIDDEN,
                    "without tokens the admin API answers only local callers",
                ))
            };
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer TOKEN)",
            ));
        };
        let matches = |token: &Option<String>| {
            token
                .as_deref()
                .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
        };
        let access = if matches(&writer) {
            Access::Write
        } else if matches(&reader) {
            Access::Read
        } else {
            return Err(error(StatusCode::UNAUTHORIZED, "wrong bearer token"));
        };
        if access < need {
            return Err(error(
                StatusCode::FORBIDDEN,
                "the reader token cannot change anything; use the writer token",
            ));
        }
        Ok(())
    }
}

/// Largest admin request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Reads an optional JSON object body; empty is `{}`.
async fn read_json(req: Request<Incoming>) -> Result<Value, Response<Full<Bytes>>> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or broken (limit 64 KiB)",
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object, e.g. {\"full\": true}",
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message }))
}

/// Serves the admin API on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A slow or silent client must not hold an admin connection forever.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    loop {
        let (stream, remote) = tokio::select! {
            () = crate::run::stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(state.handle(req, remote).await) }
            });
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%remote, %error, "admin connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
