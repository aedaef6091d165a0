//! One webhook or notification call: a JSON POST with a timeout per
//! attempt, retried with a backoff; any 2xx answer passes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::off_runtime::Resolver;

/// The most of an answer's body read (and the first 200 bytes kept for the
/// status message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How much of a refusing answer's body the status shows.
const SHOWN_BODY_BYTES: usize = 200;

/// An HTTP(S) client for webhooks and notifications, shared by every call
/// (its connections are pooled).
#[derive(Clone, Debug)]
pub struct HookClient {
    client: Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>,
}

/// How one call ended, after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// The last attempt got a 2xx answer.
    pub passed: bool,
    /// Attempts made, at least 1.
    pub attempts: u32,
    /// The last answer's status code, if any attempt was answered.
    pub status: Option<u16>,
    /// What the last attempt got: `HTTP 200`, `HTTP 503: body...`,
    /// `no answer within 1s`, `connection failed: ...`.
    pub detail: String,
}

/// What one attempt got.
#[derive(Debug)]
enum Attempt {
    Answered(u16, String),
    Failed(String),
}

// === impl HookClient ===

impl HookClient {
    /// A client for `http://` and `https://` URLs, trusting the system's
    /// root certificates (none when they cannot be read: `https://` calls
    /// then fail and say so).
    pub fn new() -> HookClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(Arc::clone(&provider)) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "no system root certificates: https webhooks will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(config) => {
                        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
                    }
                    Err(error) => {
                        tracing::error!(%error, "no TLS client config");
                        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                            rustls::ClientConfig::builder_with_protocol_versions(&[])
                                .with_root_certificates(rustls::RootCertStore::empty())
                                .with_no_client_auth(),
                        )
                    }
                }
            }
        };
        let mut http = HttpConnector::new_with_resolver(Resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        HookClient { client }
    }

    /// POSTs `body` (JSON) to `url` with `headers`; each attempt gets
    /// `timeout`; after a failed attempt (no answer or not 2xx) waits
    /// `backoff(n)` for the n-th retry (0-based), up to `retries` more times.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
        retries: u32,
        backoff: impl Fn(u32) -> Duration,
    ) -> CallOutcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = tokio::time::timeout(timeout, self.attempt(url, headers, body.clone()))
                .await
                .unwrap_or_else(|_| {
                    Attempt::Failed(format!(
                        "no answer within {}",
                        crate::controller::format_duration(timeout)
                    ))
                });
            let (passed, status, detail) = match attempt {
                Attempt::Answered(code, text) => {
                    let passed = (200..300).contains(&code);
                    let detail = if passed || text.is_empty() {
                        format!("HTTP {code}")
                    } else {
                        format!("HTTP {code}: {text}")
                    };
                    (passed, Some(code), detail)
                }
                Attempt::Failed(detail) => (false, None, detail),
            };
            if passed || attempts > retries {
                return CallOutcome {
                    passed,
                    attempts,
                    status,
                    detail,
                };
            }
            tokio::time::sleep(backoff(attempts - 1)).await;
        }
    }

    async fn attempt(&self, url: &str, headers: &[(String, String)], body: Bytes) -> Attempt {
        let mut request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("weir/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            // Checked by validation; a bad one is skipped rather than sent.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        let request = match request.body(Full::new(body)) {
            Ok(request) => request,
            Err(error) => return Attempt::Failed(format!("cannot build the request: {error}")),
        };
        let answer = match self.client.request(request).await {
            Ok(answer) => answer,
            Err(error) => return Attempt::Failed(describe_error(&error)),
        };
        let code = answer.status().as_u16();
        let text = match Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
        {
            Ok(collected) => shown(&collected.to_bytes()),
            // The status was sent: it decides, even if the body broke off.
            Err(_) => String::new(),
        };
        Attempt::Answered(code, text)
    }
}

impl Default for HookClient {
    fn default() -> Self {
        HookClient::new()
    }
}

/// The start of a body, on one line, for a status message.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SHOWN_BODY_BYTES)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A client error with its causes: `connection failed: Connection refused`.
fn describe_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    let mut last = String::new();
    while let Some(cause) = source {
        last = cause.to_string();
        source = cause.source();
    }
    if !last.is_empty() {
        text.push_str(": ");
        text.push_str(&last);
    }
    text
}
