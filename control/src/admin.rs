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

use crate::reload::{self, Trigger};
use crate::run::Process;

/// What the admin API serves from.
#[derive(Debug)]
pub struct AdminState {
    process: Arc<Process>,
    ready: AtomicBool,
}

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
    pub fn render_metrics(&self) -> String {
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

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => {
                if self.ready.load(Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            (&Method::GET, "/metrics") => {
                let mut response = Response::new(Full::new(Bytes::from(self.render_metrics())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            (&Method::POST, "/api/v1/reload") => {
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
            (_, "/healthz" | "/readyz" | "/metrics" | "/api/v1/reload") => error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} is not allowed on {path}", req.method()),
            ),
            _ => error(StatusCode::NOT_FOUND, &format!("no admin endpoint {path}")),
        }
    }

    /// Checks the bearer token against the tokens of the config in force.
    async fn authorize(
        &self,
        req: &Request<Incoming>,
        need: Access,
    ) -> Result<(), Response<Full<Bytes>>> {
        let (reader, writer) = {
            let current = self.process.current.lock().await;
            let admin = &current.0.config().admin;
            (admin.reader_token.clone(), admin.writer_token.clone())
        };
        if reader.is_none() && writer.is_none() {
            // No tokens: validation only allows this on a loopback address.
            return Ok(());
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
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
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
                async move { Ok::<_, Infallible>(state.handle(req).await) }
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
