//! The client of weir's admin API (SPEC.md sections 6 and 8), used by the
//! commands in [`crate::cli::commands`]: `weir status [ROUTE] [--watch]
//! [--json]`, `weir promote ROUTE [--full]`, `weir promote --all`,
//! `weir abort`, `weir retry`, `weir pause` and `weir resume`.
//!
//! A small HTTP/1.1 client on a current-thread runtime: plain `http://` only,
//! one connection per request, one deadline over connect and answer. It
//! changes nothing itself; every outcome maps to an [`Exit`] code that scripts
//! can rely on (listed in [`EXIT_CODES_HELP`]).

use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub mod api;
pub mod render;

pub use api::{Analysis, Phase, PromoteAll, RoleStats, RouteStatus, Step};

/// The admin API address used when `--admin` is not given.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9900";

/// How long a request may take, from connect to the last byte of the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often `weir status --watch` redraws.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  the admin API refused the request (a 4xx or 5xx answer not listed below)
  2  usage error, or an unusable --admin URL
  3  the command does not apply in the route's current phase (409)
  4  unknown route (404 naming the route; any other 404 is 1)
  5  authentication failed: missing or wrong token, or a reader token on a
     writer command (401, 403)
  6  weir cannot be reached at --admin (connection refused, or no answer
     within 5 s)";

/// Answers larger than this are refused rather than buffered.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The process exit codes of the admin commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what was asked.
    Success = 0,
    /// The API refused the request with a status not listed below, or its
    /// answer made no sense.
    Refused = 1,
    /// The command line or the `--admin` URL is unusable.
    Usage = 2,
    /// 409: the command does not apply in the route's current phase.
    NotApplicable = 3,
    /// 404: no such route.
    UnknownRoute = 4,
    /// 401 or 403: missing, wrong or insufficient token.
    Auth = 5,
    /// weir cannot be reached: connection refused, or no answer in time.
    Unreachable = 6,
}

/// A parsed `--admin` URL: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUrl {
    host: String,
    port: u16,
    authority: String,
    base_path: String,
}

/// An `--admin` URL that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` cannot be used as the admin URL: {reason}")]
pub struct InvalidAdminUrl {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A client of one weir's admin API.
///
/// The token is kept as a sensitive header value, so `Debug` does not show it.
#[derive(Debug, Clone)]
pub struct AdminClient {
    url: AdminUrl,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

/// A command on one route: `POST /api/v1/routes/{name}/{command}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteCommand {
    /// End the current pause or skip the current step; with `full`, skip
    /// every remaining step.
    Promote {
        /// Skip the remaining steps: 100 % canary, phase `Promoted`.
        full: bool,
    },
    /// Weight 0 at once, phase `Aborted`.
    Abort,
    /// From `Aborted`: start the steps again.
    Retry,
    /// Hold the step timer.
    Pause,
    /// Release the step timer.
    Resume,
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection, or it broke before an answer came.
    #[error("cannot reach weir at {url}: {source}")]
    Unreachable {
        /// The admin URL.
        url: String,
        /// The connect or transport error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// No complete answer within the deadline.
    #[error("no answer from weir at {url} within {} s", .after.as_secs_f64())]
    Timeout {
        /// The admin URL.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The API answered with an error status.
    #[error("{}: {message}", .status.as_u16())]
    Refused {
        /// The status of the answer.
        status: StatusCode,
        /// The `error` of the JSON body, or the body itself.
        message: String,
    },
    /// A success answer that is not the expected JSON.
    #[error("unexpected answer from weir at {url}: {source}")]
    BadAnswer {
        /// The admin URL.
        url: String,
        /// What could not be read.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The token cannot be sent in an HTTP header.
    #[error("the token cannot be sent in an HTTP header: {0}")]
    InvalidToken(#[source] http::header::InvalidHeaderValue),
}

/// Cancels a spawned task when dropped, so a timed-out request does not leave
/// its connection behind.
struct AbortOnDrop(JoinHandle<()>);

// === impl Exit ===

impl Exit {
    /// The numeric exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit code for an answer's status: success for 2xx, else the code of
    /// the refusal.
    pub fn for_status(status: StatusCode) -> Exit {
        match status {
            s if s.is_success() => Exit::Success,
            StatusCode::CONFLICT => Exit::NotApplicable,
            StatusCode::NOT_FOUND => Exit::UnknownRoute,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Exit::Auth,
            _ => Exit::Refused,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

// === impl AdminUrl ===

impl AdminUrl {
    /// Parses `http://HOST[:PORT][/PREFIX]`; the port defaults to 80.
    ///
    /// # Errors
    ///
    /// [`InvalidAdminUrl`] for anything else: no scheme, `https://` (the admin
    /// API serves plain HTTP), another scheme, no host, a port that is empty
    /// or not a number from 1 to 65535, credentials, a query or a fragment.
    pub fn parse(text: &str) -> Result<AdminUrl, InvalidAdminUrl> {
        let fail = |reason: &str| InvalidAdminUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed.contains('#') {
            return Err(fail("a fragment (#...) is not supported"));
        }
        let uri: http::Uri = trimmed.parse().map_err(|error: http::uri::InvalidUri| {
            fail(&format!(
                "not a URL ({error}); expected http://HOST:PORT such as {DEFAULT_ADMIN_URL}"
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(fail(
                    "https is not supported: the admin API serves plain HTTP, use http://HOST:PORT \
                     (through an SSH or TLS tunnel if it is remote)",
                ));
            }
            Some(other) => {
                return Err(fail(&format!(
                    "unsupported scheme `{other}`; expected http://HOST:PORT"
                )));
            }
            None => {
                return Err(fail(&format!(
                    "no scheme; expected http://HOST:PORT such as {DEFAULT_ADMIN_URL}"
                )));
            }
        }
        let authority = uri.authority().ok_or_else(|| fail("no host"))?;
        if authority.as_str().contains('@') {
            return Err(fail(
                "credentials in the URL are not supported; use --token or WEIR_TOKEN",
            ));
        }
        if uri.query().is_some() {
            return Err(fail("a query (?...) is not supported"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(fail("no host"));
        }
        // The authority is the host and an optional `:PORT` (credentials
        // are refused above). `port_u16` is `None` both without a port and
        // for one that is not a u16, so the text after the host decides.
        let port = match authority
            .as_str()
            .strip_prefix(host)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            None => 80,
            Some("") => {
                return Err(fail(
                    "the port after `:` is empty; write http://HOST:PORT or leave out the `:` for port 80",
                ));
            }
            Some(text) => match text.parse::<u16>() {
                Ok(0) => return Err(fail("port 0 cannot be connected to")),
                Ok(port) if text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => {
                    return Err(fail(&format!(
                        "port `{text}` is not a number from 1 to 65535"
                    )));
                }
            },
        };
        Ok(AdminUrl {
            // An IPv6 literal is bracketed in URLs but not in socket addresses.
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            authority: authority.as_str().to_owned(),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The host to connect to, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path prefix every API path is appended to; empty for none.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }
}

impl Default for AdminUrl {
    fn default() -> AdminUrl {
        AdminUrl {
            host: "127.0.0.1".to_owned(),
            port: 9900,
            authority: "127.0.0.1:9900".to_owned(),
            base_path: String::new(),
        }
    }
}

impl FromStr for AdminUrl {
    type Err = InvalidAdminUrl;

    fn from_str(text: &str) -> Result<AdminUrl, InvalidAdminUrl> {
        AdminUrl::parse(text)
    }
}

impl fmt::Display for AdminUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base_path)
    }
}

// === impl RouteCommand ===

impl RouteCommand {
    /// The last path segment: `promote`, `abort`, `retry`, `pause`, `resume`.
    pub fn name(self) -> &'static str {
        match self {
            RouteCommand::Promote { .. } => "promote",
            RouteCommand::Abort => "abort",
            RouteCommand::Retry => "retry",
            RouteCommand::Pause => "pause",
            RouteCommand::Resume => "resume",
        }
    }

    /// The JSON body sent with the command, if any.
    fn body(self) -> Option<Bytes> {
        match self {
            RouteCommand::Promote { full: true } => Some(Bytes::from_static(b"{\"full\":true}")),
            RouteCommand::Promote { full: false } => Some(Bytes::from_static(b"{\"full\":false}")),
            _ => None,
        }
    }
}

// === impl ClientError ===

impl ClientError {
    /// The exit code this failure ends the command with.
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } => Exit::Unreachable,
            ClientError::Refused { status, message } => match Exit::for_status(*status) {
                // A "success" status is never a refusal; it cannot get here.
                Exit::Success => Exit::Refused,
                // Another 404 (a wrong `--admin` path, or not weir) is not
                // an unknown route.
                Exit::UnknownRoute if !message.starts_with(crate::messages::NO_ROUTE_NAMED) => {
                    Exit::Refused
                }
                exit => exit,
            },
            ClientError::BadAnswer { .. } => Exit::Refused,
            ClientError::InvalidToken(_) => Exit::Usage,
        }
    }

    /// The refusal for an error answer: the `error` of its JSON body, else
    /// its first line of text, else the status's reason; an answer that is
    /// not weir's (no JSON `error`) says so, since `--admin` may name
    /// something else.
    pub fn from_answer(status: StatusCode, body: &[u8]) -> ClientError {
        let message = match serde_json::from_slice::<api::ErrorBody>(body) {
            Ok(parsed) if !parsed.error.is_empty() => parsed.error,
            _ => {
                let text = String::from_utf8_lossy(body);
                let line = text.lines().map(str::trim).find(|l| !l.is_empty());
                let said = match line {
                    Some(line) => line.chars().take(200).collect(),
                    None => status.canonical_reason().unwrap_or("error").to_owned(),
                };
                format!(
                    "{said} (not an answer of weir's admin API, which says why in JSON: is \
                     --admin the admin address of a weir?)"
                )
            }
        };
        ClientError::Refused { status, message }
    }
}

// === impl AdminClient ===

impl AdminClient {
    /// A client of the admin API at `url`, sending `token` (if any, and not
    /// empty) as `Authorization: Bearer`.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidToken`] when the token has characters an HTTP
    /// header cannot carry.
    pub fn new(url: AdminUrl, token: Option<&str>) -> Result<AdminClient, ClientError> {
        let authorization = match token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(ClientError::InvalidToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(AdminClient {
            url,
            authorization,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client with another deadline per request.
    pub fn with_timeout(mut self, timeout: Duration) -> AdminClient {
        self.timeout = timeout;
        self
    }

    /// The admin API this client talks to.
    pub fn url(&self) -> &AdminUrl {
        &self.url
    }

    /// `GET /api/v1/routes`: every route's status.
    ///
    /// # Errors
    ///
    /// Any [`ClientError`]; [`ClientError::exit`] says which exit code.
    pub async fn routes(&self) -> Result<Vec<RouteStatus>, ClientError> {
        let body = self.routes_json().await?;
        self.decode(body.as_bytes())
    }

    /// `GET /api/v1/routes/{name}`: one route's status.
    ///
    /// # Errors
    ///
    /// As [`Self::routes`]; an unknown route is a 404 refusal.
    pub async fn route(&self, name: &str) -> Result<RouteStatus, ClientError> {
        let body = self.route_json(name).await?;
        self.status_of(name, body.as_bytes())
    }

    /// `GET /api/v1/routes` as the server sent it (checked to be JSON).
    ///
    /// # Errors
    ///
    /// As [`Self::routes`].
    pub async fn routes_json(&self) -> Result<String, ClientError> {
        let body = self.call(Method::GET, "/api/v1/routes", None).await?;
        self.json_text(body)
    }

    /// `GET /api/v1/routes/{name}` as the server sent it (checked to be JSON).
    ///
    /// # Errors
    ///
    /// As [`Self::route`].
    pub async fn route_json(&self, name: &str) -> Result<String, ClientError> {
        let path = format!("/api/v1/routes/{}", encode_segment(name));
        let body = self.call(Method::GET, &path, None).await?;
        self.json_text(body)
    }

    /// `GET /api/v1/routes/{name}/analysisruns`: the route's analysis
    /// template runs, as JSON.
    ///
    /// # Errors
    ///
    /// As [`Self::route`].
    pub async fn analysis_runs(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        let path = format!("/api/v1/routes/{}/analysisruns", encode_segment(name));
        let body = self.call(Method::GET, &path, None).await?;
        self.decode(&body)
    }

    /// Runs `command` on route `name` and returns the route's new status.
    ///
    /// # Errors
    ///
    /// As [`Self::routes`]; a command that does not apply to the route's
    /// phase is a 409 refusal, an unknown route a 404.
    pub async fn command(
        &self,
        name: &str,
        command: RouteCommand,
    ) -> Result<RouteStatus, ClientError> {
        let path = format!("/api/v1/routes/{}/{}", encode_segment(name), command.name());
        let body = self.call(Method::POST, &path, command.body()).await?;
        self.status_of(name, &body)
    }

    /// `POST /api/v1/promote`: promotes every `Paused` route.
    ///
    /// # Errors
    ///
    /// As [`Self::routes`].
    pub async fn promote_all(&self) -> Result<PromoteAll, ClientError> {
        let body = self.call(Method::POST, "/api/v1/promote", None).await?;
        self.decode(&body)
    }

    /// One request under the deadline; error statuses become
    /// [`ClientError::Refused`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, ClientError> {
        let exchange = self.exchange(method, path, body);
        let (status, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer?,
            Err(_elapsed) => {
                return Err(ClientError::Timeout {
                    url: self.url.to_string(),
                    after: self.timeout,
                });
            }
        };
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::from_answer(status, &body))
        }
    }

    /// Connects, sends one request and reads the whole answer.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable = |source: Box<dyn StdError + Send + Sync>| ClientError::Unreachable {
            url: self.url.to_string(),
            source,
        };
        let stream = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| unreachable(e.into()))?;
        // Small requests; do not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.into()))?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            // Its failures surface through `send_request`.
            let _ = connection.await;
        }));

        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url.base_path))
            .header(HOST, self.url.authority.as_str())
            .header(USER_AGENT, concat!("weir/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| self.bad_answer(e))?;

        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.into()))?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(unreachable)?
            .to_bytes();
        Ok((status, body))
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| self.bad_answer(e))
    }

    /// `body` read as the status of route `name`: an answer that names
    /// another route, or none (not weir's admin API), is a bad answer.
    fn status_of(&self, name: &str, body: &[u8]) -> Result<RouteStatus, ClientError> {
        let status: RouteStatus = self.decode(body)?;
        if status.name != name {
            return Err(self.bad_answer(format!(
                "not the status of route {name:?} (it names {:?})",
                status.name
            )));
        }
        Ok(status)
    }

    /// The body as text, once checked to be one JSON document.
    fn json_text(&self, body: Bytes) -> Result<String, ClientError> {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| self.bad_answer(e))?;
        String::from_utf8(body.to_vec()).map_err(|e| self.bad_answer(e))
    }

    fn bad_answer(&self, error: impl Into<Box<dyn StdError + Send + Sync>>) -> ClientError {
        ClientError::BadAnswer {
            url: self.url.to_string(),
            source: error.into(),
        }
    }
}

// === impl AbortOnDrop ===

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `weir status --watch`: fetches and draws a frame every `interval` until
/// `stop` completes, then returns [`Exit::Success`].
///
/// On a terminal each frame clears the screen first; otherwise frames are
/// separated by a line of dashes. When weir cannot be reached, or answers
/// nonsense, the frame shows the error (and the last good answer) and the
/// next tick tries again. A refusal (401, 403, 404, ...) before the first good
/// answer ends the watch with its exit code instead: it will not go away by
/// waiting. A failing `out` (a closed pipe) ends it quietly.
pub async fn watch<W: Write>(
    client: &AdminClient,
    route: Option<&str>,
    interval: Duration,
    out: &mut W,
    terminal: bool,
    stop: impl Future<Output = ()>,
) -> Exit {
    let mut ticks = Ticks::new(interval, stop);
    let admin = client.url().to_string();
    let mut last: Option<(Vec<RouteStatus>, u64)> = None;
    let mut frames = 0u64;
    loop {
        let Some(fetched) = ticks.next(fetch(client, route)).await else {
            return Exit::Success;
        };
        let now = now_ms();
        let header = render::watch_header(&admin, route, now);
        let frame = match fetched {
            Ok(routes) => {
                let frame = render::watch_frame(&header, &routes, now);
                last = Some((routes, now));
                frame
            }
            Err(error @ (ClientError::Refused { .. } | ClientError::InvalidToken(_)))
                if last.is_none() =>
            {
                crate::output::say(format_args!("weir: {error}"));
                return error.exit();
            }
            Err(error) => {
                let last = last.as_ref().map(|(routes, at)| (routes.as_slice(), *at));
                render::watch_error_frame(&header, &error.to_string(), last, now)
            }
        };
        let mut text = String::with_capacity(frame.len() + 100);
        if terminal {
            text.push_str("\x1b[2J\x1b[H");
        } else if frames > 0 {
            text.push_str(&"-".repeat(render::WIDTH));
            text.push('\n');
        }
        text.push_str(&frame);
        frames += 1;
        if let Some(exit) = crate::output::written(out, &text) {
            return exit;
        }
    }
}

/// `weir status --watch --json`: the admin API's JSON for `route` (one
/// object) or for every route (an array), one document per line every
/// `interval` until `stop`, for a pipe (`jq`, a log) rather than a screen.
/// A failed fetch is told on standard error and tried again at the next
/// interval; a refusal (a token, an unknown route) before the first answer
/// ends the watch with its exit code, as [`watch`] does.
pub async fn watch_json<W: Write>(
    client: &AdminClient,
    route: Option<&str>,
    interval: Duration,
    out: &mut W,
    stop: impl Future<Output = ()>,
) -> Exit {
    let mut ticks = Ticks::new(interval, stop);
    let mut answered = false;
    loop {
        let Some(fetched) = ticks.next(fetch_json(client, route)).await else {
            return Exit::Success;
        };
        match fetched {
            Ok(raw) => {
                answered = true;
                let mut line = one_line_json(&raw);
                line.push('\n');
                if let Some(exit) = crate::output::written(out, &line) {
                    return exit;
                }
            }
            Err(error @ (ClientError::Refused { .. } | ClientError::InvalidToken(_)))
                if !answered =>
            {
                crate::output::say(format_args!("weir: {error}"));
                return error.exit();
            }
            Err(error) => crate::output::say(format_args!("weir: {error}; retrying")),
        }
    }
}

// === helpers ===

/// The rhythm of a watch: a fetch at each tick of `interval` until `stop`.
struct Ticks<S> {
    ticker: tokio::time::Interval,
    stop: std::pin::Pin<Box<S>>,
}

impl<S: Future<Output = ()>> Ticks<S> {
    fn new(interval: Duration, stop: S) -> Ticks<S> {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ticks {
            ticker,
            stop: Box::pin(stop),
        }
    }

    /// Waits for the next tick and runs `fetch`; `None` once `stop` ended
    /// (biased: a stop wins over a due tick or a finished fetch).
    async fn next<F: Future>(&mut self, fetch: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = &mut self.stop => return None,
            _ = self.ticker.tick() => {}
        }
        tokio::select! {
            biased;
            () = &mut self.stop => None,
            fetched = fetch => Some(fetched),
        }
    }
}

async fn fetch_json(client: &AdminClient, route: Option<&str>) -> Result<String, ClientError> {
    match route {
        Some(name) => client.route_json(name).await,
        None => client.routes_json().await,
    }
}

/// `raw` (checked JSON) on one line: as sent when it has no line break,
/// else written again compactly (line breaks only ever lie between tokens).
fn one_line_json(raw: &str) -> String {
    let raw = raw.trim();
    if !raw.contains(['\n', '\r']) {
        return raw.to_owned();
    }
    serde_json::from_str::<serde_json::Value>(raw).map_or_else(
        |_| raw.replace(['\n', '\r'], " "),
        |value| value.to_string(),
    )
}

async fn fetch(client: &AdminClient, route: Option<&str>) -> Result<Vec<RouteStatus>, ClientError> {
    match route {
        Some(name) => client.route(name).await.map(|status| vec![status]),
        None => client.routes().await,
    }
}

/// Percent-encodes a route name for one path segment.
fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Wall-clock milliseconds since the UNIX epoch, for the views.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
