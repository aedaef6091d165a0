//! The providers of analysis templates: a Prometheus instant query and a
//! web request, each a plain async function of a shared HTTP(S) client, run
//! by the measurement tasks of [`super::engine`] (never on the control
//! loop's tick). Every failure is an `Err` with a message saying what went
//! wrong and where: it becomes an errored measurement.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use weir_config::condition::{Value, parse_float};
use weir_config::{PrometheusQuery, Provider, UpstreamTls, WebRequest};
use weir_proxy::upstream::tls::UpstreamTlsError;

use crate::off_runtime::Resolver;

/// The clients every measurement uses (pooled): `http://` and `https://`
/// verified against the system's roots, and one accepting any certificate
/// for providers with `insecure: true`. The TLS settings are those of
/// upstream TLS (SPEC 16), so `SSL_CERT_FILE` adds a private CA to both.
#[derive(Clone, Debug)]
pub struct HttpClient {
    /// Verifies certificates; `Err` says why it cannot (no system roots).
    verified: Result<PooledClient, Arc<str>>,
    /// Accepts any certificate (Argo's `insecure`).
    insecure: Result<PooledClient, Arc<str>>,
}

/// One of [`HttpClient`]'s clients.
type PooledClient = Client<HttpsConnector<HttpConnector<Resolver>>, Full<Bytes>>;

/// Largest answer read from a provider.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// A measurement as the provider gave it: the value, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The value handed to the conditions, or the error.
    pub value: Result<Value, String>,
    /// What was asked: the query or `METHOD url`, arguments in place.
    pub resolved: String,
}

/// The clients for the providers.
pub fn client() -> HttpClient {
    let build = |insecure_skip_verify: bool| {
        let tls = UpstreamTls {
            ca_file: None,
            ca_pem: None,
            server_name: None,
            insecure_skip_verify,
        };
        let config = weir_proxy::upstream::tls::client_config(&tls)
            .map_err(|e| match e {
                UpstreamTlsError::NoSystemRoots => Arc::from(
                    "the system has no root certificates to verify the server with; set SSL_CERT_FILE to a CA file, or `insecure: true` for tests",
                ),
                other => Arc::from(format!("no TLS client: {other}")),
            })?;
        let mut http = HttpConnector::new_with_resolver(Resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(2)
            .build(connector))
    };
    HttpClient {
        verified: build(false),
        insecure: build(true),
    }
}

// === impl HttpClient ===

impl HttpClient {
    async fn request(
        &self,
        request: Request<Full<Bytes>>,
        insecure: bool,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let client = if insecure {
            &self.insecure
        } else {
            &self.verified
        };
        match client {
            Ok(client) => client.request(request).await.map_err(|e| error_chain(&e)),
            // Plain http:// needs no roots; an https:// request says why it fails.
            Err(why) if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) => {
                Err(why.to_string())
            }
            Err(_) => match &self.insecure {
                Ok(client) => client.request(request).await.map_err(|e| error_chain(&e)),
                Err(why) => Err(why.to_string()),
            },
        }
    }
}

/// What `provider` is asked, for display.
pub fn resolved(provider: &Provider) -> String {
    match provider {
        Provider::Prometheus(p) => p.query.clone(),
        Provider::Web(w) => format!("{} {}", w.method, w.url),
    }
}

/// Takes one measurement from `provider`, within its timeout.
pub async fn measure(client: &HttpClient, provider: &Provider) -> Measured {
    let (timeout, asked) = match provider {
        Provider::Prometheus(p) => (p.timeout, prometheus(client, p)),
        Provider::Web(w) => (w.timeout, Box::pin(web(client, w)) as _),
    };
    let value = match tokio::time::timeout(timeout, asked).await {
        Ok(value) => value,
        Err(_) => Err(format!(
            "no answer within {} s (the provider's timeout)",
            timeout.as_secs()
        )),
    };
    Measured {
        value,
        resolved: resolved(provider),
    }
}

type Asked<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send + 'a>>;

/// `POST {address}/api/v1/query` with the query as a form.
fn prometheus<'a>(client: &'a HttpClient, p: &'a PrometheusQuery) -> Asked<'a> {
    Box::pin(async move {
        let url = format!("{}/api/v1/query", p.address);
        let mut request = Request::post(&url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        for (name, value) in &p.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some((user, password)) = &p.basic_auth {
            request = request.header(
                header::AUTHORIZATION,
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            );
        }
        let body = format!("query={}", form_encode(&p.query));
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request to {url}: {e}"))?;
        let (status, body) = send(client, request, &url, p.insecure).await?;
        prometheus_value(status, &body)
    })
}

/// The value of a Prometheus answer: a vector as a list of numbers, a
/// scalar as a number, a matrix as the flattened list of its values, a
/// string as a string; an error answer (`"status": "error"`, sent with 400,
/// 422 or 503) as its own message.
pub fn prometheus_value(status: http::StatusCode, body: &[u8]) -> Result<Value, String> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "Prometheus answered {status} with a body that is not its JSON: {}",
            excerpt(body)
        )
    })?;
    if json.get("status").and_then(|s| s.as_str()) != Some("error")
        && json.get("status").and_then(|s| s.as_str()) != Some("success")
    {
        return Err(format!(
            "Prometheus answered {status} with JSON that is not a query answer (no `status` \
             of `success` or `error`): {}",
            excerpt(body)
        ));
    }
    if json.get("status").and_then(|s| s.as_str()) != Some("success") {
        let kind = json
            .get("errorType")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown");
        let error = json
            .get("error")
            .and_then(|s| s.as_str())
            .unwrap_or("no error message");
        return Err(format!(
            "Prometheus answered {status}: {}: {}",
            excerpt(kind.as_bytes()),
            excerpt(error.as_bytes())
        ));
    }
    let data = json.get("data").ok_or("Prometheus' answer has no `data`")?;
    let result = data
        .get("result")
        .ok_or("Prometheus' answer has no `data.result`")?;
    let sample = |pair: &serde_json::Value| -> Result<Value, String> {
        let text = pair.get(1).and_then(|v| v.as_str()).ok_or_else(|| {
            format!(
                "a sample is not [time, \"value\"]: {}",
                excerpt(pair.to_string().as_bytes())
            )
        })?;
        parse_float(text).map(Value::Number).ok_or_else(|| {
            format!(
                "a sample value is not a number: {:?}",
                excerpt(text.as_bytes())
            )
        })
    };
    let series = || {
        result
            .as_array()
            .ok_or_else(|| "`data.result` is not a list".to_owned())
    };
    match data.get("resultType").and_then(|t| t.as_str()) {
        Some("vector") => series()?
            .iter()
            .map(|s| sample(s.get("value").unwrap_or(&serde_json::Value::Null)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        Some("scalar") => sample(result),
        Some("matrix") => {
            let mut out = Vec::new();
            for s in series()? {
                let values = s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or("a matrix series has no `values`")?;
                for pair in values {
                    out.push(sample(pair)?);
                }
            }
            Ok(Value::List(out))
        }
        Some("string") => result
            .get(1)
            .and_then(|v| v.as_str())
            .map(|s| Value::Text(s.to_owned()))
            .ok_or_else(|| "a string result is not [time, \"text\"]".to_owned()),
        Some(other) => Err(format!(
            "Prometheus answered a resultType weir does not read: `{}` (it reads vector, \
             scalar, matrix and string)",
            excerpt(other.as_bytes())
        )),
        None => Err("Prometheus' answer has no `data.resultType`".to_owned()),
    }
}

/// The web request; the JSON answer (at `jsonPath`) or the body as text.
async fn web(client: &HttpClient, w: &WebRequest) -> Result<Value, String> {
    let method =
        Method::from_bytes(w.method.as_bytes()).map_err(|e| format!("method {}: {e}", w.method))?;
    let mut request = Request::builder().method(method).uri(&w.url);
    if w.json_body {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in &w.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let body = w.body.clone().map(Bytes::from).unwrap_or_default();
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request to {}: {e}", w.url))?;
    let (status, body) = send(client, request, &w.url, w.insecure).await?;
    if !status.is_success() {
        return Err(format!("{} answered {status}: {}", w.url, excerpt(&body)));
    }
    web_value(w, &body)
}

/// The value handed to the conditions from a web answer's body.
pub fn web_value(w: &WebRequest, body: &[u8]) -> Result<Value, String> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match (&w.json_path, json) {
        (Some(path), Some(json)) => path
            .select(&json)
            .map(Value::from_json)
            .ok_or_else(|| format!("the answer has nothing at {}: {}", path.text, excerpt(body))),
        (Some(path), None) => Err(format!(
            "the answer is not JSON, so {} cannot be read: {}",
            path.text,
            excerpt(body)
        )),
        (None, Some(json)) => Ok(Value::from_json(&json)),
        (None, None) => Ok(Value::Text(String::from_utf8_lossy(body).into_owned())),
    }
}

async fn send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    url: &str,
    insecure: bool,
) -> Result<(http::StatusCode, Bytes), String> {
    let answer = client
        .request(request, insecure)
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = answer.status();
    let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the answer of {url}: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// At most 200 characters of a body, for messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `application/x-www-form-urlencoded` encoding of a value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Standard base64 with padding (basic authentication).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
