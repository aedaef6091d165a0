//! A tiny HTTP client: one keep-alive HTTP/1.1 connection per [`Conn`], a
//! per-client [`CookieJar`], and a raw-bytes exchange for malformed or huge
//! requests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{COOKIE, HOST, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::UPSTREAM_HEADER;

/// Any error, for helpers whose callers only report it.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The request body type [`Conn::send`] takes.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// HTTP version of the response.
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Body>,
}

/// One client's cookies: `Set-Cookie` name=value pairs, sent back in `Cookie`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieJar {
    cookies: BTreeMap<String, String>,
}

// === impl Response ===

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-upstream-name` header, or `-` when absent.
    pub fn upstream(&self) -> &str {
        self.headers
            .get(UPSTREAM_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When it is not JSON, showing the body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

// === impl Conn ===

impl Conn {
    /// Connects to `addr` and performs the HTTP/1.1 handshake.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn open(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        Ok(Self { addr, sender })
    }

    /// `GET path` with extra headers; `Host` defaults to the address.
    ///
    /// # Errors
    /// When the connection fails before the whole response arrived.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
        let mut builder = Request::get(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(empty())?).await
    }

    /// `GET path` with the jar's cookies, storing any `Set-Cookie` in it.
    ///
    /// # Errors
    /// As [`Conn::get`].
    pub async fn get_with_jar(
        &mut self,
        path: &str,
        jar: &mut CookieJar,
    ) -> Result<Response, Error> {
        let mut request = Request::get(path).body(empty())?;
        if let Some(cookie) = jar.header() {
            request.headers_mut().insert(COOKIE, cookie);
        }
        let response = self.send(request).await?;
        jar.store(&response.headers);
        Ok(response)
    }

    /// Sends `request` and reads the whole response; `Host` defaults to the
    /// address.
    ///
    /// # Errors
    /// As [`Conn::get`].
    pub async fn send(&mut self, mut request: Request<Body>) -> Result<Response, Error> {
        if !request.headers().contains_key(HOST) {
            request
                .headers_mut()
                .insert(HOST, HeaderValue::from_str(&self.addr.to_string())?);
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }
}

/// An empty request body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// How long [`get_json`] waits for a whole answer.
pub const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// `GET path` on a fresh connection to `addr`, as JSON.
///
/// # Panics
/// When the exchange fails, the answer is not JSON, or no whole answer
/// arrives within [`ANSWER_LIMIT`].
pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let what = format!("GET {path} on {addr}");
    crate::within(ANSWER_LIMIT, &what, get(addr, path))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .json()
}

/// `GET path` on a fresh connection to `addr`.
///
/// # Errors
/// When connecting or the exchange fails.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Response, Error> {
    Conn::open(addr).await?.get(path, &[]).await
}

/// Writes `request` as raw bytes and reads until the response head is
/// complete, the peer closes, or `limit` passes; returns what was read.
/// Write errors are ignored: a server may answer and close before reading
/// everything.
///
/// # Errors
/// When the connection cannot be made.
pub async fn raw_exchange(
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let deadline = tokio::time::Instant::now() + limit;
    let _ = tokio::time::timeout_at(deadline, stream.write_all(request)).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            // A reset after the server answered still leaves the answer in
            // `out`; one before it leaves `out` empty for the caller to see.
            Ok(Err(_)) => break,
        }
    }
    Ok(out)
}

// === impl CookieJar ===

impl CookieJar {
    /// Stores the `name=value` pair of every `Set-Cookie` in `headers`.
    pub fn store(&mut self, headers: &HeaderMap) {
        for set in headers.get_all(SET_COOKIE) {
            let Ok(set) = set.to_str() else { continue };
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=')
                && !name.trim().is_empty()
            {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
    }

    /// The `Cookie` header to send, if any.
    pub fn header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let joined: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        HeaderValue::from_str(&joined.join("; ")).ok()
    }

    /// The value stored for cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }
}

/// Responses by upstream name (`-` when untagged), then status code.
pub type Counts = BTreeMap<String, BTreeMap<u16, u64>>;

/// Sends `n` `GET path` requests over `connections` concurrent keep-alive
/// connections and counts the responses.
///
/// # Errors
/// The first connection or exchange that failed.
pub async fn send_many(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    n: u64,
    connections: u64,
) -> Result<Counts, Error> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        // Spread the remainder over the first connections.
        let share = n / connections + u64::from(c < n % connections);
        let (path, headers) = (path.to_owned(), headers.clone());
        tasks.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut counts = Counts::new();
            for _ in 0..share {
                let r = conn.get(&path, &pairs).await?;
                *counts
                    .entry(r.upstream().to_owned())
                    .or_default()
                    .entry(r.status.as_u16())
                    .or_default() += 1;
            }
            Ok::<_, Error>(counts)
        });
    }
    let mut total = Counts::new();
    while let Some(joined) = tasks.join_next().await {
        for (name, statuses) in joined?? {
            let entry = total.entry(name).or_default();
            for (status, count) in statuses {
                *entry.entry(status).or_default() += count;
            }
        }
    }
    Ok(total)
}

/// `counts[name][status]`, 0 when absent.
pub fn count(counts: &Counts, name: &str, status: u16) -> u64 {
    counts
        .get(name)
        .and_then(|s| s.get(&status))
        .copied()
        .unwrap_or(0)
}
