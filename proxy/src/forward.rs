//! The request path: match the route, decide the role, forward to an endpoint
//! of that role, and count the answer against the route and role.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::Instrument as _;
use weir_config::Timeouts;

use crate::body::{BodyLimits, BodyWatch, ProxyBody, ResponseAccount};
use crate::decision::{self, HeaderVerdict};
use crate::error::{ProxyError, local_response};
use crate::fallback::{self, Failure, FallbackPolicy};
use crate::grpc;
use crate::metrics::{ClientErrorKind, RejectReason, RoleMetrics};
use crate::request_body::{
    self, BufferedBody, ClientBody, H2Upload, KeepError, KeepGap, Kept, RequestBody, UploadBound,
    UploadProgress,
};
use crate::request_id::X_REQUEST_ID;
use crate::routing::{RuleChoice, ServedBackend, ServedRoute};
use crate::upstream::{self, Endpoint, Sender};
use crate::write_stall::StallLimit;
use crate::{Role, Shared, http1};

/// What the proxy knows about the downstream connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub remote: SocketAddr,
    /// The port of the listener the connection came in on (0 when unknown).
    pub local_port: u16,
    /// The client's IP as a header value, made once per connection.
    pub client_ip: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The connection's span (listener, peer, tls): the parent of each
    /// request's span, also for HTTP/2 streams, which run in tasks of their own.
    pub span: tracing::Span,
    /// The write timeout of a connection served by hyper, told the idle
    /// limit of each request's route.
    pub write_stall: Option<Arc<StallLimit>>,
    /// The deadlines of the bodies a connection served by hyper streams to
    /// an HTTP/2 client (see [`BodyWatch`]).
    pub body_watch: Option<Arc<BodyWatch>>,
}

// === impl Downstream ===

impl Downstream {
    /// The same downstream, received on the listener of `port`.
    pub fn on_port(mut self, port: u16) -> Downstream {
        self.local_port = port;
        self
    }

    /// The same downstream, its writes bounded by `limit` (see
    /// [`crate::write_stall`]).
    pub fn with_write_stall(mut self, limit: Arc<StallLimit>) -> Downstream {
        self.write_stall = Some(limit);
        self
    }

    /// The same downstream, the bodies it streams over HTTP/2 ended at
    /// their deadlines by `watch`.
    pub fn with_body_watch(mut self, watch: Arc<BodyWatch>) -> Downstream {
        self.body_watch = Some(watch);
        self
    }

    /// Bounds the connection's writes by the idle limit of the route that
    /// answers the request of `version`.
    fn note_idle_timeout(&self, idle: std::time::Duration, version: Version) {
        if let Some(limit) = &self.write_stall {
            limit.note(idle, version == Version::HTTP_2);
        }
    }

    /// The downstream of a connection from `remote`, logged in `span`.
    pub fn new(remote: SocketAddr, tls: bool, span: tracing::Span) -> Downstream {
        let client_ip = client_ip_value(remote.ip());
        Downstream {
            remote,
            local_port: 0,
            client_ip,
            tls,
            span,
            write_stall: None,
            body_watch: None,
        }
    }
}

/// `ip` as a header value, as `to_string` writes it. An IPv4 address is
/// written without the formatting machinery: this runs for every
/// connection, and `to_string` cost about 600 instructions of the 21,000
/// in user space per `Connection: close` request (callgrind, `ab -c 8`).
fn client_ip_value(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::try_from(ip.to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Makes an answer to an HTTP/1.0 client that says `connection: close`
/// an HTTP/1.0 one. hyper's server adds `keep-alive` to an HTTP/1.1 head
/// for an HTTP/1.0 client that asked for it, even beside `close` (the
/// connection closes all the same); an HTTP/1.0 head without `keep-alive`
/// it sends as it is, and closes.
pub(crate) fn closing_for_http10(response: &mut Response<ProxyBody>) {
    if connection_names(response.headers(), "close") {
        *response.version_mut() = Version::HTTP_10;
    }
}

/// Ends an HTTP/1 client connection served by hyper after the answer to a
/// request whose chunked body was not read to a plain end by the time the
/// answer came (see [`crate::request_body::BodyEnding`]): it had trailers,
/// broke, or was still going or never read (a local answer's). hyper's
/// server reads a chunked body's trailer section until a CRLF CRLF and
/// takes a bare LF inside it for part of a field, where a reader that ends
/// lines at a bare LF (RFC 9112 section 2.2 allows it) sees the section
/// end: the next request's head would be read as trailers, and its body as
/// a request of its own. hyper also reads a body weir did not (a local
/// answer's) that way, to reach the next request. Nothing after such a
/// body is read: the connection closes once it is answered (a chunked
/// request is offered no switch of protocols: `prepare_request`). weir's
/// own path checks the trailers itself and keeps its connections.
pub(crate) fn closing_after_chunked_upload(response: &mut Response<ProxyBody>) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Empties a body weir made itself (a 404, a 400, a 502 or 504) in the
/// answer to a HEAD request, keeping the `Content-Length` a GET would get
/// (RFC 9110 section 9.3.2). hyper's HTTP/1 server leaves any HEAD
/// answer's body out itself; its HTTP/2 server sends what it is given, and
/// a client reading a HEAD answer takes DATA after it as a protocol error.
/// An upstream's answer to a HEAD has no body to take.
pub(crate) fn without_local_body(response: &mut Response<ProxyBody>) {
    if let ProxyBody::Local(Some(text)) = response.body() {
        let len = HeaderValue::from(text.len());
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
        *response.body_mut() = ProxyBody::empty();
    }
}

/// Serves one downstream request. Never fails: every error is a response.
pub async fn serve(
    shared: &Shared,
    downstream: &Downstream,
    mut req: Request<ClientBody>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    if let Err(reason) = check_head(&req) {
        shared.metrics.record_rejected(reason);
        let status = reason_status(reason);
        let mut response = local_response(
            status,
            format!("{} {}\n", status.as_u16(), reason_text(reason)),
        );
        // The head was refused: what follows it on the connection is not
        // trusted either.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    // One snapshot for the whole request, even if a new one is applied meanwhile.
    let routing = shared.routing.load_full();
    let host = request_host(&req).unwrap_or("");
    let accepts = |index: usize| {
        routing.routes[index]
            .rule
            .as_ref()
            .is_none_or(|rule| rule.accepts(downstream.local_port, req.method(), req.headers()))
    };
    let Some((index, by_preview_host)) = routing.find(host.as_bytes(), req.uri().path(), accepts)
    else {
        downstream.note_idle_timeout(weir_config::model::DEFAULT_IDLE_TIMEOUT, req.version());
        return local_response(StatusCode::NOT_FOUND, no_route_text(host, req.uri().path()));
    };
    let route = &routing.routes[index];
    downstream.note_idle_timeout(route.timeouts.idle, req.version());
    let mut issued_key = None;
    let mut backend_response_edits = None;
    let (role, backend) = match route.rule.as_deref() {
        None => {
            let role = if is_preview_request(route, by_preview_host, &req) {
                // The preview pins no one: no sticky cookie is issued.
                Role::Canary
            } else {
                decide_role(route, &req, &mut issued_key)
            };
            (role, route.backend(role))
        }
        Some(rule) => match rule.choose(decision::draw()) {
            RuleChoice::Backend(chosen) => {
                rule.request_headers.apply(req.headers_mut());
                chosen.request_headers.apply(req.headers_mut());
                backend_response_edits = Some(&chosen.response_headers);
                (Role::Stable, &chosen.backend)
            }
            RuleChoice::Unresolved(backend) => {
                backend.metrics.record(500, started.elapsed());
                return rule_not_served(route, "the backend chosen does not resolve");
            }
            RuleChoice::NoBackend => {
                return rule_not_served(route, "the rule has no backend with a weight");
            }
        },
    };

    // The request's span is at debug level: at the default level (info) a
    // request pays for one level check, and no span is made and no field
    // formatted (tracing evaluates the fields of enabled spans only). A
    // warning about the request is logged in the span made by
    // `warning_span`, made only then, so it says where it came from at any
    // level; what it needs is kept here (reference-counted copies, no
    // allocation).
    let request_id = req.headers().get(&X_REQUEST_ID).cloned();
    let span = tracing::debug_span!(
        parent: &downstream.span,
        "request",
        method = %req.method(),
        path = req.uri().path(),
        request_id = %ShowId(request_id.as_ref()),
        route = &*route.name,
        role = &*backend.label,
    );
    let about = About {
        method: req.method().clone(),
        uri: req.uri().clone(),
        request_id,
    };

    let tls = downstream.tls;
    if let Some(policy) = &route.fallback {
        policy.record_request();
    }
    let grpc = grpc::is_grpc(req.headers());
    // What of the request's time its client takes (the silences of its
    // body, the read of a body kept whole) is left out of its latency: a
    // client that sends slowly must not make its role look slow.
    let pace = (!http_body::Body::is_end_stream(req.body())).then(|| UploadProgress::new(!grpc));
    // Counts the request even if the client goes away before the answer
    // (the future is dropped): a hanging upstream must show in the counters.
    let mut pending = Pending {
        metrics: &backend.metrics,
        started,
        pace: pace.clone(),
        grpc,
        answered: false,
    };
    let downstream_http1 = req.version() < Version::HTTP_2;
    let mut attempt = Attempt {
        pace: pace.clone(),
        ..Attempt::default()
    };
    let (outcome, replay) = match keep_for_fallback(route, role, req, grpc, pace.as_deref()).await {
        Ok((req, replay)) => {
            // Only a request kept for a retry reads its call's deadline.
            attempt.fallback = replay.as_ref().and(route.fallback.as_ref()).map(|policy| {
                let deadline = grpc
                    .then(|| grpc::timeout(req.headers()))
                    .flatten()
                    .map(|timeout| started + timeout);
                FallbackAttempt::new(policy, deadline)
            });
            let outcome = forward(route, backend, downstream, req, started, grpc, &mut attempt)
                .instrument(span.clone())
                .await;
            (outcome, replay)
        }
        Err(error) => (Err(error), None),
    };
    pending.answered = true;
    // weir's own answer to a request whose body was not read to its end
    // when it failed (a deadline passed while the client was still sending
    // it, the upstream failed inside it, or could not be reached before it)
    // says the connection closes: what is left of the body cannot be read
    // as the next request. (hyper's server would close the connection
    // anyway if the rest has not all come, but it says so in the answer
    // only if it noticed the body dropped before the answer was ready, a
    // race; the own path answers the same.) A body kept whole for
    // `stableFallback` was read to its end.
    let upload_cut = downstream_http1
        && match &outcome {
            Err(ProxyError::ClientBodyTimeout(_) | ProxyError::ClientBodyIdle(_)) => true,
            Err(_) => {
                replay.is_none()
                    && attempt
                        .upload
                        .as_ref()
                        .is_some_and(|upload| !upload.ended())
            }
            Ok(_) => false,
        };
    let context = RequestContext {
        span: &span,
        about: &about,
        downstream,
        route,
        // Counted from later by what the client took.
        started: started
            + pace
                .as_deref()
                .map_or(Duration::ZERO, UploadProgress::client_waited),
        grpc,
    };
    let retry = match (attempt.fallback.as_mut(), replay) {
        (Some(fallback), Some(replay)) => {
            // A 502, 503 or 504 head was decided on in `forward`; an
            // attempt that gave no answer is decided on here.
            if outcome.is_err() {
                if let Some(failure) = fallback::retryable_failure(&outcome) {
                    fallback.decide(failure);
                }
            }
            match fallback.decided {
                Some((failure, true)) => Some((failure, replay)),
                Some((failure, false)) => {
                    span.in_scope(|| {
                        tracing::debug!(
                            ?failure,
                            "canary failed; not retried on stable (the stableFallback budget is spent, or the call's deadline passed)"
                        )
                    });
                    None
                }
                None => None,
            }
        }
        _ => None,
    };
    let mut response = match retry {
        None => answer(outcome, backend, &context),
        Some((failure, replay)) => {
            span.in_scope(|| {
                tracing::debug!(
                    ?failure,
                    "canary failed before answering; sending the request to stable"
                )
            });
            // The canary's answer is never sent: it counts for the canary's
            // analysis, not as a request answered (stable's answer is).
            drop(settle(outcome, backend, &context, Tally::Unsent));
            let stable = &route.stable;
            let mut pending = Pending {
                metrics: &stable.metrics,
                started,
                pace: pace.clone(),
                grpc,
                answered: false,
            };
            let mut again = replay.into_request();
            // The call's deadline counts from its start: stable has what
            // is left of it, told in `grpc-timeout` as a proxy should.
            if grpc
                && let Some(left) = grpc::timeout(again.headers())
                    .and_then(|d| grpc::remaining_timeout(d, started.elapsed()))
            {
                again.headers_mut().insert(grpc::GRPC_TIMEOUT.clone(), left);
            }
            let outcome = forward(
                route,
                stable,
                downstream,
                again,
                started,
                grpc,
                // The body is sent afresh, and tracked afresh; what the
                // client took of the request's time so far carries over.
                &mut Attempt {
                    pace: pace.as_deref().map(UploadProgress::afresh),
                    ..Attempt::default()
                },
            )
            .instrument(span.clone())
            .await;
            pending.answered = true;
            answer(outcome, stable, &context)
        }
    };

    if upload_cut {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(rule) = &route.rule {
        rule.response_headers.apply(response.headers_mut());
    }
    if let Some(edits) = backend_response_edits {
        edits.apply(response.headers_mut());
    }
    if let (Some(key), Some(cookie)) = (issued_key, &route.sticky) {
        let key = std::str::from_utf8(&key).unwrap_or_default();
        if let Some(value) = cookie.set_cookie(key, tls) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Counts the outcome of one attempt against `backend` and turns it into
/// the downstream response (an error into weir's own answer).
pub(crate) fn answer(
    outcome: Result<Response<ProxyBody>, ProxyError>,
    backend: &ServedBackend,
    context: &RequestContext<'_>,
) -> Response<ProxyBody> {
    settle(outcome, backend, context, Tally::Sent)
}

/// Where [`settle`] counts an attempt's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tally {
    /// The answer goes downstream: a request answered, in every series.
    Sent,
    /// Another role answers the request instead (`stableFallback`): the
    /// attempt counts for the role's analysis only (see
    /// [`crate::metrics::RoleMetrics::record_unsent`]).
    Unsent,
}

impl Tally {
    fn record(self, metrics: &RoleMetrics, code: u16, elapsed: Duration) {
        match self {
            Tally::Sent => metrics.record(code, elapsed),
            Tally::Unsent => metrics.record_unsent(code, elapsed),
        }
    }

    fn record_grpc(self, metrics: &RoleMetrics, status: u8, is_error: bool, elapsed: Duration) {
        match self {
            Tally::Sent => metrics.record_grpc(status, is_error, elapsed),
            Tally::Unsent => metrics.record_grpc_unsent(is_error, elapsed),
        }
    }
}

/// [`answer`], counting the attempt as `tally` says. An unsent attempt is
/// a failure `stableFallback` retries: never one the client caused, and
/// never with a streamed body (`forward` drops a retried answer's body).
fn settle(
    outcome: Result<Response<ProxyBody>, ProxyError>,
    backend: &ServedBackend,
    context: &RequestContext<'_>,
    tally: Tally,
) -> Response<ProxyBody> {
    let started = context.started;
    match outcome {
        Ok(response) => {
            // A streamed upstream body is counted when it ends (see `ProxyBody::upstream`).
            if matches!(response.body(), ProxyBody::Local(_)) {
                tally.record(
                    &backend.metrics,
                    response.status().as_u16(),
                    started.elapsed(),
                );
            }
            response
        }
        Err(ProxyError::ClientBodyTimeout(timeout) | ProxyError::ClientBodyIdle(timeout))
            if context.grpc =>
        {
            // The call's deadline, in gRPC's terms, but the client's stall:
            // not an error of the role.
            context.span.in_scope(|| {
                tracing::debug!(
                    ?timeout,
                    "gRPC call's client stalled its stream past the deadline"
                )
            });
            backend
                .metrics
                .record_grpc_client_error(ClientErrorKind::BodyTimeout, grpc::DEADLINE_EXCEEDED);
            grpc::deadline_exceeded_response()
        }
        Err(ProxyError::UpstreamTimeout(timeout)) if context.grpc => {
            warning_span(
                context.span.clone(),
                context.about,
                context.downstream,
                context.route,
                &backend.label,
            )
            .in_scope(|| {
                tracing::warn!(
                    ?timeout,
                    "gRPC call exceeded its deadline before the upstream answered"
                )
            });
            let metrics = &backend.metrics;
            metrics.record_upstream_error(crate::metrics::UpstreamErrorKind::Timeout);
            let status = grpc::DEADLINE_EXCEEDED;
            // The route's own timeout is an error of the role whatever the
            // list says (SPEC section 3); the client's shorter deadline is
            // counted by the list.
            let is_error = !is_clients_deadline(timeout, context.route)
                || context.route.grpc_error_codes.contains_status(status);
            tally.record_grpc(metrics, status, is_error, started.elapsed());
            grpc::deadline_exceeded_response()
        }
        Err(error) if error.client_reset() => {
            // No answer can reach the client: counted as abandoned (499),
            // as a request whose client left while it waited.
            context
                .span
                .in_scope(|| tracing::debug!(%error, "client left inside its body"));
            record_abandoned(&backend.metrics, context.grpc, started.elapsed());
            error.to_response(&context.route.name, &backend.label)
        }
        Err(error) => {
            let response = error.to_response(&context.route.name, &backend.label);
            let status = response.status().as_u16();
            if let Some(kind) = error.client_error_kind() {
                context
                    .span
                    .in_scope(|| tracing::debug!(%error, "client error"));
                backend
                    .metrics
                    .record_client_error(kind, status, started.elapsed());
            } else {
                // An answer weir made up (502, 503, 504) is worth a warning:
                // the upstream is down, slow or broken, or weir is out of
                // sockets.
                warning_span(
                    context.span.clone(),
                    context.about,
                    context.downstream,
                    context.route,
                    &backend.label,
                )
                .in_scope(|| tracing::warn!(status, %error, "upstream failed"));
                if let Some(kind) = error.metric_kind() {
                    backend.metrics.record_upstream_error(kind);
                }
                // A gRPC client reads weir's own 502, 503 and 504 in gRPC's
                // terms, counted with that `grpc_code`.
                let grpc_status = context
                    .grpc
                    .then(|| grpc::status_for(response.status()))
                    .flatten();
                if error.is_weirs_own() {
                    // Sent, but not the role's doing; an attempt another
                    // role answers instead is not counted at all.
                    if matches!(tally, Tally::Sent) {
                        backend.metrics.record_weirs_own(status, grpc_status);
                    }
                } else if let Some(grpc_status) = grpc_status {
                    // weir's own 502, 503 or 504: an error of the role
                    // whatever `grpcErrorCodes` says (SPEC section 3).
                    tally.record_grpc(&backend.metrics, grpc_status, true, started.elapsed());
                } else {
                    tally.record(&backend.metrics, status, started.elapsed());
                }
                if let Some(grpc_status) = grpc_status {
                    let message = error.describe(&context.route.name, &backend.label);
                    return grpc::error_response(grpc_status, &message);
                }
            }
            response
        }
    }
}

/// Whether a gRPC call bounded by `bound` was bounded by its client's
/// `grpc-timeout` (shorter than the route's request timeout) rather than
/// by the route: its passing is then counted by `grpcErrorCodes`, where
/// the route's own timeout is always an error of the role (SPEC 3).
fn is_clients_deadline(bound: Duration, route: &ServedRoute) -> bool {
    bound < route.timeouts.request
}

/// What [`answer`] needs to log and time an attempt.
pub(crate) struct RequestContext<'a> {
    pub(crate) span: &'a tracing::Span,
    pub(crate) about: &'a About,
    pub(crate) downstream: &'a Downstream,
    pub(crate) route: &'a ServedRoute,
    /// What the attempt's latency counts from: the request's start, moved
    /// later by the time its client made weir wait.
    pub(crate) started: Instant,
    /// The request is a gRPC call: a deadline passed is answered in gRPC's
    /// terms.
    pub(crate) grpc: bool,
}

/// What one attempt tells the request besides its outcome.
#[derive(Default)]
struct Attempt<'a> {
    /// How far the request's body was sent, when it was streamed.
    upload: Option<Arc<UploadProgress>>,
    /// What tracks the body when it is streamed, made before the attempt
    /// so that the request's other counts read the client's waits too;
    /// one is made for the attempt when `None`.
    pace: Option<Arc<UploadProgress>>,
    /// Set for a canary request kept whole for `stableFallback`.
    fallback: Option<FallbackAttempt<'a>>,
}

/// A canary attempt that `stableFallback` may retry on stable.
struct FallbackAttempt<'a> {
    policy: &'a FallbackPolicy,
    /// The attempt's failure, once it is known, and whether the budget
    /// granted its retry.
    decided: Option<(Failure, bool)>,
    /// A gRPC call's own deadline (its start and `grpc-timeout`): past
    /// it, the call is over for its client and is not retried.
    deadline: Option<Instant>,
}

impl<'a> FallbackAttempt<'a> {
    fn new(policy: &'a FallbackPolicy, deadline: Option<Instant>) -> FallbackAttempt<'a> {
        FallbackAttempt {
            policy,
            decided: None,
            deadline,
        }
    }

    /// Whether `failure` is retried on stable: decided once, taking a retry
    /// from the budget when it allows one. A call past its own deadline is
    /// not retried and takes nothing from the budget.
    fn decide(&mut self, failure: Failure) -> bool {
        if let Some((_, granted)) = self.decided {
            return granted;
        }
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.decided = Some((failure, false));
            return false;
        }
        let granted = self.policy.try_retry();
        self.decided = Some((failure, granted));
        granted
    }
}

/// A request kept for a retry on stable: its head as the client sent it
/// and its whole body.
struct Replay {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: BufferedBody,
}

impl Replay {
    fn into_request(self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::Buffered(self.body));
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        req
    }
}

/// On a route with `stableFallback`, reads a canary request's body whole
/// when its method and size allow a retry, and keeps a copy of the request
/// for it; any other request goes on streamed, with nothing kept.
async fn keep_for_fallback(
    route: &ServedRoute,
    role: Role,
    req: Request<ClientBody>,
    grpc: bool,
    pace: Option<&UploadProgress>,
) -> Result<(Request<RequestBody>, Option<Replay>), ProxyError> {
    let policy = match (&route.fallback, role) {
        (Some(policy), Role::Canary) if policy.may_keep(req.method(), req.headers()) => policy,
        _ => return Ok((req.map(RequestBody::Streamed), None)),
    };
    let (parts, body) = req.into_parts();
    // Bounded as the upstream exchange would bound a client this slow:
    // its stall, not the role's. A gRPC call's stream may rightly stay
    // quiet: a streaming call's client may wait for answers before it
    // sends more, so a quiet body goes on streamed, not kept.
    let limit = route.timeouts.request;
    let idle = route.timeouts.idle;
    let gap = if grpc {
        KeepGap::Stream(request_body::GRPC_KEEP_GAP)
    } else {
        KeepGap::Stall(idle)
    };
    let reading = Instant::now();
    let kept =
        tokio::time::timeout(limit, request_body::keep(body, policy.max_body_bytes, gap)).await;
    // The read waits on the client alone: its time is the client's.
    if let Some(pace) = pace {
        pace.add_client_wait(reading.elapsed());
    }
    let kept = kept
        .map_err(|_| ProxyError::ClientBodyTimeout(limit))?
        .map_err(|error| match error {
            KeepError::Broken(error) => ProxyError::ClientBody(error),
            KeepError::Stalled => ProxyError::ClientBodyIdle(idle),
        })?;
    match kept {
        Kept::Whole(body) => {
            let replay = Replay {
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                version: parts.version,
                headers: parts.headers.clone(),
                body: body.clone(),
            };
            Ok((
                Request::from_parts(parts, RequestBody::Buffered(body)),
                Some(replay),
            ))
        }
        Kept::Once(body) => Ok((Request::from_parts(parts, body), None)),
    }
}

/// A 500 for a request a Gateway API rule cannot serve (the Gateway API's answer).
fn rule_not_served(route: &ServedRoute, why: &str) -> Response<ProxyBody> {
    local_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("500 {why} (route {})\n", route.name),
    )
}

/// True when a blue-green route's preview is live and the request came
/// through a preview host or carries the preview header.
fn is_preview_request<B>(route: &ServedRoute, via_preview_host: bool, req: &Request<B>) -> bool {
    is_preview_request_from(route, via_preview_host, |name| {
        req.headers().get(name).map(HeaderValue::as_bytes)
    })
}

/// [`is_preview_request`] over any way of reading a request header, so that
/// both forwarding paths decide alike.
pub(crate) fn is_preview_request_from<'a>(
    route: &ServedRoute,
    via_preview_host: bool,
    header: impl Fn(&HeaderName) -> Option<&'a [u8]>,
) -> bool {
    route.live_preview.as_ref().is_some_and(|preview| {
        via_preview_host
            || preview
                .header
                .as_ref()
                .is_some_and(|(name, value)| header(name) == Some(value.as_bytes()))
    })
}

/// The role of a request on a stable/canary route: the header override,
/// then the sticky key (a new one issued into `issued_key` when the client
/// has none), then a weighted draw.
fn decide_role<B>(
    route: &ServedRoute,
    req: &Request<B>,
    issued_key: &mut Option<[u8; 32]>,
) -> Role {
    decide_role_from(
        route,
        |name| req.headers().get(name).map(HeaderValue::as_bytes),
        || {
            req.headers()
                .get_all(header::COOKIE)
                .iter()
                .map(HeaderValue::as_bytes)
        },
        issued_key,
    )
}

/// [`decide_role`] on borrowed bytes: `header` gives the value of a
/// request header by name, `cookies` every `Cookie` line. Shared by both
/// forwarding paths.
pub(crate) fn decide_role_from<'a, C>(
    route: &ServedRoute,
    header: impl Fn(&HeaderName) -> Option<&'a [u8]>,
    cookies: impl FnOnce() -> C,
    issued_key: &mut Option<[u8; 32]>,
) -> Role
where
    C: Iterator<Item = &'a [u8]>,
{
    let header = match &route.canary_by_header {
        Some((name, value)) => decision::header_verdict(value, header(name)),
        None => HeaderVerdict::None,
    };
    match &route.sticky {
        Some(cookie) => {
            let found = decision::find_cookie(cookies(), &cookie.name);
            let key = match found {
                Some(key) => key,
                None => issued_key.insert(decision::new_client_key()).as_slice(),
            };
            decision::decide(route.split, header, Some(key), 0)
        }
        None => decision::decide(route.split, header, None, decision::draw()),
    }
}

/// The most characters of a host or path a `404` repeats.
const NO_ROUTE_SHOWN: usize = 256;

/// The body of the `404` for a request that matches no route: a short
/// text naming its host and path, each cut to [`NO_ROUTE_SHOWN`]
/// characters (a request line may be tens of kilobytes). Shared by both
/// forwarding paths.
pub(crate) fn no_route_text(host: &str, path: &str) -> String {
    let cut = |text: &str| match text.char_indices().nth(NO_ROUTE_SHOWN) {
        Some((at, _)) => format!("{:?}...", &text[..at]),
        None => format!("{text:?}"),
    };
    format!("404 no route for host {} path {}\n", cut(host), cut(path))
}

/// What a warning about a request says about it, kept while the request
/// itself goes upstream.
pub(crate) struct About {
    pub(crate) method: http::Method,
    pub(crate) uri: Uri,
    pub(crate) request_id: Option<HeaderValue>,
}

/// Shows a request id, or `-` for none.
pub(crate) struct ShowId<'a>(pub(crate) Option<&'a HeaderValue>);

impl std::fmt::Display for ShowId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.and_then(|id| id.to_str().ok()) {
            Some(id) => f.write_str(id),
            None => f.write_str("-"),
        }
    }
}

/// The span to log a warning about a request in: its own when it is
/// enabled (debug level), else a warn-level one with the same fields and
/// the client's address, made now, so that the warning names its route and
/// request id whatever the level.
fn warning_span(
    span: tracing::Span,
    about: &About,
    downstream: &Downstream,
    route: &ServedRoute,
    backend: &str,
) -> tracing::Span {
    if !span.is_disabled() {
        return span;
    }
    tracing::warn_span!(
        parent: &downstream.span,
        "request",
        method = %about.method,
        path = about.uri.path(),
        request_id = %ShowId(about.request_id.as_ref()),
        route = &*route.name,
        role = backend,
        peer = %downstream.remote,
    )
}

/// Sends the request to an endpoint of `backend` and returns the upstream's response.
async fn forward(
    route: &ServedRoute,
    backend: &ServedBackend,
    downstream: &Downstream,
    mut req: Request<RequestBody>,
    started: Instant,
    grpc: bool,
    attempt: &mut Attempt<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let Some(endpoint) = upstream::pick(&backend.endpoints) else {
        return Err(ProxyError::NoEndpoints {
            route: Arc::clone(&route.name),
            backend: Arc::clone(&backend.label),
        });
    };
    let te_trailers = endpoint.is_http2() && grpc::asks_for_trailers(req.headers());
    let head_request = req.method() == http::Method::HEAD;
    let downstream_http1 = req.version() < http::Version::HTTP_2;
    let downstream_http10 = req.version() == http::Version::HTTP_10;
    let mut downstream_upgrade = prepare_request(&mut req, downstream, endpoint, &route.upgrades);
    if endpoint.is_http2() {
        // An HTTP/2 stream cannot be upgraded.
        downstream_upgrade = None;
        to_http2(&mut req, endpoint, te_trailers);
    }
    let mut timeouts = route.timeouts;
    if grpc {
        // The call's own deadline, when shorter, bounds it instead.
        if let Some(deadline) = grpc::timeout(req.headers()) {
            timeouts.request = timeouts.request.min(deadline);
        }
    }
    let client_deadline = is_clients_deadline(timeouts.request, route);
    // `timeouts.request` bounds the whole response, head and body.
    let deadline = tokio::time::Instant::now() + timeouts.request;
    // A body to stream is tracked: an answer that ends before it was all
    // sent closes an HTTP/1.1 connection (see `ProxyBody::upstream`), and
    // a deadline that passes while it waits on the client is the client's.
    // A gRPC call's request stream may rightly stay quiet (a bidirectional
    // call): its stalls are not told apart, but its silences are still the
    // client's time, not its role's latency.
    let upload = (!http_body::Body::is_end_stream(req.body())).then(|| match &attempt.pace {
        Some(pace) => {
            req.body_mut().track_with(Arc::clone(pace));
            Arc::clone(pace)
        }
        None => req.body_mut().track(!grpc),
    });
    if let Some(upload) = &upload {
        upload.start_answer_clock(!client_deadline);
    }
    attempt.upload.clone_from(&upload);

    let exchange = async {
        let mut req = req;
        if endpoint.is_http2() {
            // Boxed: an HTTP/2 handshake's future is about 13 KB, and
            // inline it would make every request's future that large, to
            // be moved (copied) on every HTTP/1 request too.
            return Box::pin(exchange_h2(
                endpoint,
                &backend.endpoints,
                req,
                upload.as_ref(),
                timeouts,
                deadline,
            ))
            .await;
        }
        // hyper's HTTP/1 client sends no body for a GET or HEAD of unknown
        // length (it takes it for none) unless told to chunk it: an HTTP/1
        // client's chunked body goes on whole, as on the own path. (An
        // HTTP/2 client's GET that leaves its stream open is sent without
        // a body, as before: an upstream that ignores bodies on a GET
        // would take a chunked one for its next request.)
        if downstream_http1
            && matches!(*req.method(), Method::GET | Method::HEAD)
            && !http_body::Body::is_end_stream(req.body())
            && http_body::Body::size_hint(req.body()).exact().is_none()
        {
            req.headers_mut().insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        // A pooled connection may have been closed by the upstream since it
        // was parked; such a request is handed back unsent and goes on a fresh one.
        // One the upstream closes after taking the request, before a byte
        // of its answer, may have been acted on: only an idempotent request
        // without a body is sent again, once, on a fresh connection (RFC
        // 9112 section 9.3.1), as on the own path.
        let mut stale = false;
        loop {
            let idle = if stale { None } else { endpoint.take_idle() };
            let (used, mut sender, fresh) = match idle {
                Some(sender) => (Arc::clone(endpoint), sender, false),
                None => {
                    // Boxed, as the HTTP/2 exchange above: a new connection
                    // (TCP, TLS, handshake) is rare beside a pooled one.
                    let (used, sender) =
                        Box::pin(connect(endpoint, &backend.endpoints, timeouts.connect)).await?;
                    (used, sender, true)
                }
            };
            if fresh {
                sender.ready().await.map_err(ProxyError::from_exchange)?;
            } else if !matches!(
                tokio::time::timeout(POOLED_READY_WAIT, sender.ready()).await,
                Ok(Ok(()))
            ) {
                // Closed meanwhile, or not ready in time: not for this
                // request. (A connection whose answer came before its
                // upload ended is closed, not pooled: see `ProxyBody::upstream`.)
                continue;
            }
            let in_flight = used.start();
            // Given up on before its answer (the request's deadline, or the
            // client left), the connection stops at once rather than going
            // on sending the body to an upstream no one waits for.
            let unanswered = sender.stop_on_drop();
            let again = (!fresh
                && is_idempotent(req.method().as_str())
                && http_body::Body::is_end_stream(req.body()))
            .then(|| without_body(&req));
            let read_before = sender.bytes_read();
            match sender.try_send_request(req).await {
                Ok(response) => {
                    unanswered.disarm();
                    if response.status().is_server_error() {
                        used.record_failure(&backend.endpoints);
                    } else {
                        used.record_success();
                    }
                    return Ok((response, Some(sender), in_flight));
                }
                Err(mut error) => match (error.take_message(), again) {
                    (Some(unsent), _) if !fresh => req = unsent,
                    // Closed before a byte of its answer, as on the own path.
                    (_, Some(again))
                        if error.error().is_incomplete_message()
                            && sender.bytes_read() == read_before =>
                    {
                        tracing::debug!(error = %error.error(), "pooled connection closed unanswered; the request goes again on a fresh one");
                        stale = true;
                        req = again;
                    }
                    _ => return Err(ProxyError::from_exchange(error.into_error())),
                },
            }
        }
    };
    let bounded =
        request_body::within_upload_bounds(exchange, upload.as_deref(), timeouts.idle, deadline);
    let (mut response, sender, in_flight) = match bounded.await {
        Ok(Ok(result)) => result,
        // A body the client broke made hyper's HTTP/2 client reset the
        // stream, which reads as the upstream's fault: it is the client's
        // (an HTTP/1 exchange says so itself).
        Ok(Err(error))
            if error.client_error_kind().is_none()
                && let Some(how) = upload.as_ref().and_then(|u| u.client_failure()) =>
        {
            tracing::debug!(%error, "the request body broke; the exchange with it");
            return Err(ProxyError::upload_broken(how));
        }
        Ok(Err(error)) => return Err(error),
        Err(UploadBound::ClientSilent) => return Err(ProxyError::ClientBodyIdle(timeouts.idle)),
        // The upstream took all of the body that came, and waits for more:
        // the client stalled, not the upstream.
        Err(UploadBound::Deadline) if upload.as_ref().is_some_and(|u| u.waiting_on_client()) => {
            return Err(ProxyError::ClientBodyTimeout(timeouts.request));
        }
        Err(UploadBound::Deadline) => return Err(ProxyError::UpstreamTimeout(timeouts.request)),
    };

    // An answer not passed on ends its exchange at once: the HTTP/1
    // connection is closed, never reused, the HTTP/2 upload stopped; neither
    // goes on sending the client's body.
    let end_exchange = |sender: Option<Sender>| {
        if let Some(sender) = sender {
            sender.abort();
        }
        if let Some(upload) = &upload {
            upload.stop_after_answer();
        }
    };
    let refuse = |sender: Option<Sender>, error: ProxyError| {
        end_exchange(sender);
        Err(error)
    };
    let status = response.status().as_u16();
    if status > 599 {
        return refuse(sender, ProxyError::InvalidStatus(status));
    }
    if let Some(fallback) = attempt.fallback.as_mut() {
        let status = response.status();
        if fallback::is_gateway_failure(status) && fallback.decide(Failure::Status(status)) {
            // Retried on stable: this answer is never sent, so it is neither
            // read nor counted here (the caller counts it for the analysis),
            // and its connection closes as a refused answer's does.
            drop(in_flight);
            end_exchange(sender);
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, ProxyBody::empty()));
        }
    }
    if response.headers().contains_key(header::TRANSFER_ENCODING)
        && response.headers().contains_key(header::CONTENT_LENGTH)
    {
        return refuse(sender, ProxyError::AmbiguousLength);
    }
    // A body under a coding weir does not decode (see `is_chunked_alone`);
    // an answer without a body may name any.
    if !http1::answer_has_no_body(head_request, response.status().as_u16())
        && response.headers().contains_key(header::TRANSFER_ENCODING)
        && !http1::is_chunked_alone(
            response
                .headers()
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    {
        return refuse(sender, ProxyError::BrokenAnswer(http1::OTHER_CODING));
    }
    // hyper reads a head past its buffer limit when it arrives in one read;
    // the own path's limit is on the head's bytes, so it is checked here.
    if !endpoint.is_http2() && http1_head_len(&response) > http1::response_head::MAX_HEAD {
        return refuse(
            sender,
            ProxyError::BrokenAnswer(http1::response_head::TOO_LARGE),
        );
    }
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A switch the client did not ask for (or cannot take, over HTTP/2)
        // would leave both sides speaking different protocols.
        let Some(downstream_upgrade) = downstream_upgrade else {
            return refuse(sender, ProxyError::UnexpectedUpgrade);
        };
        // RFC 9110 section 7.8: only to a protocol the request offered.
        if !switches_to_offered(response.headers(), &downstream_upgrade.offered) {
            return refuse(sender, ProxyError::UnexpectedUpgrade);
        }
        let downstream_upgrade = downstream_upgrade.downstream;
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(bridge_upgrade(downstream_upgrade, upstream_upgrade));
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, ProxyBody::empty()));
    }
    // A chunked body is framed frame by frame, and an HTTP/2 one checked
    // against its `content-length` and resets frame by frame, so an error
    // in it would only show after a 200 head went out. What already
    // arrived with the head is decoded by now: take the frames that are
    // ready, up to [`READY_FRAMES_AT_MOST`] bytes (never wait for one, a
    // streamed response may rightly take its time), so a broken one is a
    // 502 rather than a cut connection.
    let first = if endpoint.is_http2() || response.headers().contains_key(header::TRANSFER_ENCODING)
    {
        let mut first = FirstFrames::default();
        let mut bytes = 0;
        while bytes < READY_FRAMES_AT_MOST && !first.ended {
            match response.body_mut().frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    bytes += frame.data_ref().map_or(0, bytes::Buf::remaining);
                    first.ended = frame.is_trailers();
                    first.frames.push_back(frame);
                }
                Some(None) => first.ended = true,
                // A body the client broke reset the stream: the client's
                // fault, as when the exchange itself fails so.
                Some(Some(Err(error))) => {
                    if let Some(how) = upload.as_ref().and_then(|u| u.client_failure()) {
                        tracing::debug!(%error, "the request body broke; the answer with it");
                        return refuse(sender, ProxyError::upload_broken(how));
                    }
                    return refuse(sender, ProxyError::Protocol(error));
                }
                None => break,
            }
        }
        Some(first)
    } else {
        None
    };
    remove_hop_by_hop(response.headers_mut(), false);
    one_content_length(response.headers_mut());
    // An intermediary sends its own version (RFC 9110 section 2.5):
    // hyper's server writes an HTTP/1.0 answer's status line as it is, so
    // an HTTP/1.1 client read the connection by HTTP/1.0's rules. (An
    // HTTP/1.0 client's closing answer is made HTTP/1.0 again by
    // `closing_for_http10`.)
    if response.version() == Version::HTTP_10 {
        *response.version_mut() = Version::HTTP_11;
    }
    // A 204 carries no length (RFC 9110 section 8.6), whatever its
    // upstream wrote: an HTTP/2 client resets a stream whose 204 has one.
    // The own path drops it likewise.
    if response.status() == StatusCode::NO_CONTENT {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if downstream_http1 && upload.as_ref().is_some_and(|upload| !upload.ended()) {
        // Answered before the upload ended: the upstream connection closes
        // (the HTTP/2 stream is reset) at the answer's end, or after a 2xx
        // once the rest is sent, and the client's connection cannot carry
        // another request (as on the own path). Said, a client still
        // sending knows to stop rather than find its connection closed.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // An HTTP/1.0 client takes no chunks: a body of unknown length ends
    // with the connection, which the answer says.
    if downstream_http10
        && !crate::http1::answer_has_no_body(head_request, response.status().as_u16())
        && !response.headers().contains_key(header::CONTENT_LENGTH)
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let code = response.status().as_u16();
    let account = ResponseAccount {
        metrics: Arc::clone(&backend.metrics),
        code,
        started,
        // A gRPC status rides on a 200 gRPC answer; any other code is
        // counted as HTTP, and so is a 200 that is no gRPC answer: a
        // service that does not speak gRPC, asked by a client that says
        // it does, answered as it answers anyone.
        grpc: (grpc && code == 200 && grpc::is_grpc_answer(response.headers())).then(|| {
            grpc::GrpcAccount {
                errors: route.grpc_error_codes,
                // A trailers-only answer has its status in the head.
                status: grpc::status(response.headers()),
                client_deadline,
            }
        }),
        grpc_by_http: grpc && code != 200,
    };
    let limits = BodyLimits {
        idle: timeouts.idle,
        request: timeouts.request,
        // Moved later by what the request waited on its client, as for
        // the head.
        deadline: upload
            .as_ref()
            .map_or(deadline, |upload| upload.answer_deadline(deadline)),
    };
    let (parts, body) = response.into_parts();
    let mut body = ProxyBody::upstream(body, sender, upload, in_flight, limits, account);
    if let Some(first) = first {
        body = body.with_first_frames(first.frames, first.ended);
    }
    if !downstream_http1 && let Some(watch) = &downstream.body_watch {
        body = body.watched_by(watch);
    }
    Ok(Response::from_parts(parts, body))
}

/// The most bytes of an answer's body taken before its head is passed on,
/// when they are there already (see [`FirstFrames`]).
const READY_FRAMES_AT_MOST: usize = 64 * 1024;

/// The frames of an answer's body that had come with its head, taken
/// before the head is passed on so that a body broken in them is a 502.
#[derive(Debug, Default)]
struct FirstFrames {
    /// The frames, in order: the body's held frames, as they are.
    frames: std::collections::VecDeque<http_body::Frame<bytes::Bytes>>,
    /// The body ended with them.
    ended: bool,
}

/// How long a pooled connection may take to become ready before another
/// one is used instead.
const POOLED_READY_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A request being answered; counted as 499 (client closed) if dropped first.
pub(crate) struct Pending<'a> {
    pub(crate) metrics: &'a crate::metrics::RoleMetrics,
    pub(crate) started: Instant,
    /// The request body's progress, when it has one: what of the time its
    /// client took is left out of the latency.
    pub(crate) pace: Option<Arc<UploadProgress>>,
    /// A gRPC call: counted with `grpc_code="CANCELLED"` as well.
    pub(crate) grpc: bool,
    pub(crate) answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            // Not an error of the role, but the time waited stays in the
            // latency: a hanging upstream shows through p99 and 504s.
            let client_waited = self
                .pace
                .as_deref()
                .map_or(Duration::ZERO, UploadProgress::client_waited);
            let elapsed = self.started.elapsed().saturating_sub(client_waited);
            record_abandoned(self.metrics, self.grpc, elapsed);
        }
    }
}

/// Counts a request whose client left before its answer, after
/// `elapsed`: status 499, a gRPC call (`grpc`) with `CANCELLED` as well.
fn record_abandoned(metrics: &crate::metrics::RoleMetrics, grpc: bool, elapsed: Duration) {
    if grpc {
        metrics.record_grpc_abandoned(elapsed);
    } else {
        metrics.record_client_error(ClientErrorKind::Abandoned, CLIENT_CLOSED, elapsed);
    }
}

/// The status recorded for a request whose client left before the answer.
const CLIENT_CLOSED: u16 = 499;

/// Connects to `first`, or once to another endpoint of the role, drawn at
/// random, if that fails (no request has been sent, so the second try is
/// always safe). Each failed connect counts towards the endpoint's ejection.
/// Returns the endpoint actually used: its pool gets the connection back.
async fn connect(
    first: &Arc<Endpoint>,
    all: &[Arc<Endpoint>],
    timeout: std::time::Duration,
) -> Result<(Arc<Endpoint>, Sender), ProxyError> {
    connect_with(first, all, |endpoint| endpoint.connect(timeout)).await
}

/// [`connect`] with `open` making the connection: an HTTP/1.1 sender here,
/// the endpoint's HTTP/2 connection in [`exchange_h2`],
/// a raw socket on weir's own path.
pub(crate) async fn connect_with<'a, T, F, Fut>(
    first: &'a Arc<Endpoint>,
    all: &'a [Arc<Endpoint>],
    open: F,
) -> Result<(Arc<Endpoint>, T), ProxyError>
where
    F: Fn(&'a Arc<Endpoint>) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::upstream::ConnectError>>,
{
    match open(first).await {
        Ok(connection) => Ok((Arc::clone(first), connection)),
        // weir's own shortage: no endpoint is at fault, and another would
        // fare no better.
        Err(error @ crate::upstream::ConnectError::NoSocket { .. }) => Err(error.into()),
        Err(error) => {
            first.record_failure(all);
            let Some(other) = upstream::pick_other(all, first) else {
                return Err(error.into());
            };
            tracing::debug!(%error, retry = %other.addr(), "connect failed; trying another endpoint");
            match open(other).await {
                Ok(connection) => Ok((Arc::clone(other), connection)),
                Err(error) => {
                    other.record_failure(all);
                    Err(error.into())
                }
            }
        }
    }
}

/// Sends `req` on the HTTP/2 connection of `first`, or of another endpoint
/// of the role when `first` cannot be reached. A request the connection
/// refused unsent (a GOAWAY raced it) goes once more on a new connection.
/// Given up at `deadline` (the future dropped) while its connection is
/// silent and `upload`, its body's progress when tracked, does not wait on
/// the client, the request leaves that connection put aside (see
/// [`Endpoint::h2_watch`]).
async fn exchange_h2(
    first: &Arc<Endpoint>,
    all: &[Arc<Endpoint>],
    req: Request<RequestBody>,
    upload: Option<&Arc<UploadProgress>>,
    timeouts: Timeouts,
    deadline: tokio::time::Instant,
) -> Result<(Response<Incoming>, Option<Sender>, upstream::InFlight), ProxyError> {
    // The answer's side ends the upload when it is done with the exchange
    // (see `ProxyBody::upstream`): hyper sends it from a task of its own.
    let mut req = req.map(|body| H2Upload::new(body, upload.cloned(), timeouts.idle, deadline));
    let upload = upload.map(Arc::as_ref);
    let mut retried = false;
    loop {
        let (used, (link, _)) = connect_with(first, all, |endpoint| {
            endpoint.h2_connection(timeouts.connect)
        })
        .await?;
        let mut sender = link.sender();
        let in_flight = used.start();
        let watch = used.h2_watch(&link, upload, deadline);
        let sent = sender.try_send_request(req).await;
        watch.disarm();
        match sent {
            Ok(response) => {
                if response.status().is_server_error() {
                    used.record_failure(all);
                } else {
                    used.record_success();
                }
                return Ok((response, None, in_flight));
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) if !retried => {
                    tracing::debug!(endpoint = %used.addr(), error = %error.error(), "HTTP/2 connection refused the request; reconnecting");
                    used.h2_forget(&link);
                    retried = true;
                    req = unsent;
                }
                _ => return Err(ProxyError::from_exchange(error.into_error())),
            },
        }
    }
}

/// Whether `method` is idempotent (RFC 9110 section 9.2.2): a request
/// that may be sent again after a connection closed on it unanswered.
pub(crate) fn is_idempotent(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"].contains(&method)
}

/// A copy of `req`, whose body is empty, to send again.
fn without_body(req: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(RequestBody::Buffered(
        crate::request_body::BufferedBody::default(),
    ));
    copy.method_mut().clone_from(req.method());
    copy.uri_mut().clone_from(req.uri());
    *copy.version_mut() = req.version();
    copy.headers_mut().clone_from(req.headers());
    copy
}

/// Turns a request prepared for HTTP/1.1 into one for an HTTP/2 upstream:
/// the host goes into the `:authority` (the `Host` header is dropped, as
/// RFC 9113 section 8.3.1 prefers), the scheme says whether TLS carries it,
/// and `te: trailers`, the one `TE` HTTP/2 allows, is kept for gRPC.
fn to_http2<B>(req: &mut Request<B>, endpoint: &Endpoint, te_trailers: bool) {
    let scheme = if endpoint.is_tls() {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    };
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok())
        .or_else(|| http::uri::Authority::try_from(endpoint.addr().to_string()).ok());
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = authority;
    parts.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        req.headers_mut().remove(header::HOST);
    }
    *req.version_mut() = Version::HTTP_2;
    if te_trailers {
        req.headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Checks what RFC 9112 section 3.2 asks of a request's host before the
/// request is routed: exactly one `Host` in HTTP/1.1, at most one otherwise,
/// no userinfo in it or in an absolute-form target, and a host that is one.
fn check_head<B>(req: &Request<B>) -> Result<(), RejectReason> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RejectReason::DuplicateHost);
    }
    if host.is_none() && req.version() == Version::HTTP_11 {
        return Err(RejectReason::MissingHost);
    }
    // An HTTP/2 request names its host in `:authority`; a `host` field
    // naming another makes it malformed (RFC 9113 section 8.3.1).
    if req.version() == Version::HTTP_2
        && let (Some(host), Some(authority)) = (host, req.uri().authority())
        && !names_same_authority(host.as_bytes(), authority, req.uri().scheme())
    {
        return Err(RejectReason::DuplicateHost);
    }
    // HTTP/1 parsing drops the whitespace around a field value; HTTP/2
    // carries it, and a request with it is malformed (RFC 9113 section
    // 8.2.1): passed on, an HTTP/2 upstream would see what weir did not
    // route by (a `canaryByHeader` value, a cookie).
    if req.version() == Version::HTTP_2
        && req.headers().values().any(|value| {
            let edges = [value.as_bytes().first(), value.as_bytes().last()];
            edges
                .into_iter()
                .flatten()
                .any(|b| matches!(b, b' ' | b'\t'))
        })
    {
        return Err(RejectReason::FieldValueWhitespace);
    }
    let userinfo = req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
        || host.is_some_and(|h| h.as_bytes().contains(&b'@'));
    if userinfo {
        return Err(RejectReason::HostUserinfo);
    }
    // The target's authority (absolute-form, or HTTP/2's `:authority`)
    // routes the request and becomes the upstream's Host: checked as a Host.
    if host.is_some_and(|h| !http1::is_valid_host(h.as_bytes()))
        || req
            .uri()
            .authority()
            .is_some_and(|a| !http1::is_valid_host(a.as_str().as_bytes()))
    {
        return Err(RejectReason::InvalidHost);
    }
    // RFC 9112 section 3.2: `*` is for OPTIONS, `host:port` for CONNECT
    // and for nothing else.
    // An HTTP/2 request's `:path` must be one of those too (RFC 9113
    // section 8.3.1): `*` comes with its `:authority`, and a `:path` such as
    // `?q` would reach the upstream as `/?q`.
    let uri = req.uri();
    let asterisk = uri.path() == "*";
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    let connect = req.method() == http::Method::CONNECT;
    let http2_path_not_absolute = req.version() == Version::HTTP_2
        && uri
            .path_and_query()
            .is_some_and(|target| !target.as_str().starts_with('/') && !asterisk);
    if (asterisk && req.method() != http::Method::OPTIONS)
        || (authority_form != connect && req.version() < Version::HTTP_2)
        || http2_path_not_absolute
    {
        return Err(RejectReason::InvalidTarget);
    }
    if http1::has_dot_segment(uri.path().as_bytes()) {
        return Err(RejectReason::DotSegment);
    }
    // RFC 9112 section 6.1: weir (like its upstreams) decodes `chunked`
    // alone; any other coding, in one line or several, is a 501.
    if names_other_coding(req.headers()) {
        return Err(RejectReason::UnsupportedTransferCoding);
    }
    Ok(())
}

/// Whether the `host` field names the same host and port as `authority`
/// (RFC 3986 section 6.2.3: any case, and the scheme's default port
/// written or not). A `host` that is no authority is left to the host
/// check.
fn names_same_authority(
    host: &[u8],
    authority: &http::uri::Authority,
    scheme: Option<&http::uri::Scheme>,
) -> bool {
    let Ok(host) = http::uri::Authority::try_from(host) else {
        return true;
    };
    let default_port = if scheme == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    let port = |a: &http::uri::Authority| a.port_u16().unwrap_or(default_port);
    host.host().eq_ignore_ascii_case(authority.host()) && port(&host) == port(authority)
}

/// Whether `headers` name a transfer coding other than `chunked`, in one
/// `Transfer-Encoding` line or several.
pub fn names_other_coding(headers: &HeaderMap) -> bool {
    http1::transfer_codings(
        headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .map(HeaderValue::as_bytes),
    )
    .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"chunked"))
}

/// The status answered for `reason`: 501 for a transfer coding weir does
/// not implement, 400 otherwise.
pub(crate) fn reason_status(reason: RejectReason) -> StatusCode {
    match reason {
        RejectReason::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The body of the 400 answered for `reason`.
pub(crate) fn reason_text(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::MissingHost => "bad request: an HTTP/1.1 request needs a Host header",
        RejectReason::DuplicateHost => {
            "bad request: more than one Host header, or an HTTP/2 host field naming another host than :authority"
        }
        RejectReason::HostUserinfo => "bad request: userinfo (user@) is not allowed in the host",
        RejectReason::InvalidHost => {
            "bad request: the Host header is not a host name or IP address with an optional port"
        }
        RejectReason::InvalidTarget => {
            "bad request: the request target is none of /path, http://host/path, * (OPTIONS) or host:port (CONNECT)"
        }
        RejectReason::UnsupportedTransferCoding => {
            "not implemented: a Transfer-Encoding other than chunked"
        }
        RejectReason::DotSegment => {
            "bad request: the path has a `.` or `..` segment (or `%2e`); send it resolved"
        }
        RejectReason::FieldValueWhitespace => {
            "bad request: an HTTP/2 field value starts or ends with a space or a tab"
        }
    }
}

/// Rewrites the request for the upstream `endpoint`; returns the
/// downstream's pending upgrade when the request asks for a protocol the
/// route forwards (`upgrades`, by default WebSocket only). Any other
/// `Upgrade` is removed with the hop-by-hop headers: `h2c` in particular
/// (validation never lets a route allow it), since weir's own listener
/// serves HTTP/2 and a tunnelled connection would carry every later request
/// past routing and metrics.
fn prepare_request<B>(
    req: &mut Request<B>,
    downstream: &Downstream,
    endpoint: &Endpoint,
    upgrades: &[Arc<str>],
) -> Option<PendingUpgrade> {
    // The Host header's value is reused as is (a reference-counted copy);
    // only an HTTP/2 authority needs a new value.
    let original_host = match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    // A request with a chunked body offers no switch: its connection may
    // close after the answer (see `closing_after_chunked_upload`), and a
    // switch would hand what hyper read past the body to the tunnel.
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    let upgrade =
        if req.version() == Version::HTTP_11 && !chunked && is_upgrade_request(req.headers()) {
            allowed_upgrade(req.headers(), upgrades)
        } else {
            None
        };
    let headers = req.headers_mut();
    remove_hop_by_hop(headers, true);
    if let Some(upgrade) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }
    // Append the client to any chain already present.
    // Several X-Forwarded-For lines form one list (RFC 9110 §5.3).
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let xff = if prior.is_empty() {
        downstream.client_ip.clone()
    } else {
        HeaderValue::try_from(format!("{}, {}", prior.join(", "), downstream.remote.ip()))
            .unwrap_or_else(|_| downstream.client_ip.clone())
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if downstream.tls { "https" } else { "http" }),
    );
    if let Some(host) = original_host {
        // The authority, when the request has one, is the host (RFC 9112
        // §3.2.2): the upstream sees the host the request was routed by.
        headers.insert(header::HOST, host.clone());
        headers.insert(X_FORWARDED_HOST.clone(), host);
    } else {
        // No host to pass on: what the client wrote as its forwarded host
        // is not passed on either.
        headers.remove(&X_FORWARDED_HOST);
        if let Ok(authority) = HeaderValue::try_from(endpoint.addr().to_string()) {
            // HTTP/1.0 may omit Host; the HTTP/1.1 request sent upstream
            // must not (RFC 9112 §3.2): name the endpoint it goes to.
            headers.insert(header::HOST, authority);
        }
    }

    // An HTTP/2 request may carry its cookies in several `cookie` fields;
    // an HTTP/1.1 request carries one, the values joined by "; " (RFC 9113
    // section 8.2.3, RFC 6265 section 5.4).
    if req.version() == Version::HTTP_2 {
        join_cookies(req.headers_mut());
    }

    // The upstream speaks HTTP/1.1 and wants origin-form; an empty path is
    // `/` (RFC 9112 section 3.2.1), a query after it included.
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let origin = if path.starts_with('/') {
            path.parse::<Uri>()
        } else {
            format!("/{path}").parse::<Uri>()
        };
        if let Ok(uri) = origin {
            *req.uri_mut() = uri;
        }
    }
    *req.version_mut() = Version::HTTP_11;
    upgrade.map(|offered| PendingUpgrade {
        downstream: hyper::upgrade::on(req),
        offered,
    })
}

/// Replaces several `cookie` fields by one, their values joined by "; ".
fn join_cookies(headers: &mut HeaderMap) {
    let cookies = headers.get_all(header::COOKIE);
    if cookies.iter().nth(1).is_none() {
        return;
    }
    let values: Vec<&[u8]> = cookies.iter().map(HeaderValue::as_bytes).collect();
    if let Ok(value) = HeaderValue::from_bytes(&values.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// A request's pending switch of protocols: the client's side, and the
/// `Upgrade` offered to the upstream.
struct PendingUpgrade {
    downstream: OnUpgrade,
    offered: HeaderValue,
}

/// Whether a 101's `Upgrade` names at least one protocol, and only
/// protocols in `offered` (by name, any case).
fn switches_to_offered(response: &HeaderMap, offered: &HeaderValue) -> bool {
    fn name(token: &str) -> &str {
        token.split('/').next().unwrap_or_default().trim()
    }
    let offered = offered.to_str().unwrap_or_default();
    let mut chosen = 0;
    for value in response.get_all(header::UPGRADE) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        // Empty list elements are allowed and skipped (RFC 9110 section 5.6.1).
        for token in value.split(',').map(name).filter(|t| !t.is_empty()) {
            if !offered
                .split(',')
                .any(|o| name(o).eq_ignore_ascii_case(token))
            {
                return false;
            }
            chosen += 1;
        }
    }
    chosen > 0
}

/// The bytes of `response`'s head as an HTTP/1.1 upstream wrote it (one
/// space after each colon, no folding): its status line, fields and empty
/// line.
fn http1_head_len<B>(response: &Response<B>) -> usize {
    // hyper keeps a reason phrase only when it is not the usual one.
    let reason = response
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|reason| reason.as_bytes().len())
        .or_else(|| response.status().canonical_reason().map(str::len))
        .unwrap_or(0);
    let fields: usize = response
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    "HTTP/1.1 200 \r\n".len() + reason + fields + 2
}

/// A `Content-Length` an upstream wrote as a list of one value, or in
/// several fields (hyper takes those only when they agree), is passed on as
/// one number: RFC 9110 section 8.6 lets a recipient take the list as that
/// value, and forbids forwarding it.
fn one_content_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    if values.next().is_none() && first.as_bytes().iter().all(u8::is_ascii_digit) {
        return;
    }
    let number = std::str::from_utf8(first.as_bytes())
        .ok()
        .and_then(|value| value.split(',').next())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if let Some(number) = number {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(number));
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`; on
/// a request also `Expect`, which weir's own server answers (`100
/// Continue` once the body is read), as the own path does: the upstream is
/// not asked again.
fn remove_hop_by_hop(headers: &mut HeaderMap, request: bool) {
    // Most messages carry none of them: one pass over the names present is
    // cheaper than a hash lookup per hop-by-hop name.
    let is_hop_by_hop = |name: &HeaderName| {
        name == header::CONNECTION
            || name == header::TE
            || name == header::TRAILER
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::PROXY_AUTHENTICATE
            || (request && (name == header::PROXY_AUTHORIZATION || name == header::EXPECT))
            || name == KEEP_ALIVE
            || name == PROXY_CONNECTION
    };
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // A request's `x-request-id` is weir's by now: one its `Connection`
    // named was replaced (see `request_id`), and the new one goes on.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !(request && *name == X_REQUEST_ID))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
    if request {
        headers.remove(header::PROXY_AUTHORIZATION);
        headers.remove(header::EXPECT);
    }
}

/// A trailers frame with the fields no trailer may carry taken out (RFC
/// 9110 section 6.5.1: framing, routing and connection fields; HTTP/2
/// refuses connection fields outright, and an HTTP/2 peer would be sent an
/// upload it can never end); any other frame as it is.
fn forwardable(frame: http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes> {
    if !frame.is_trailers() {
        return frame;
    }
    match frame.into_trailers() {
        Ok(mut trailers) => {
            remove_hop_by_hop(&mut trailers, true);
            trailers.remove(header::HOST);
            trailers.remove(header::CONTENT_LENGTH);
            http_body::Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// A polled body frame made [`forwardable`], for both directions' bodies.
pub(crate) fn forwardable_polled<E>(
    polled: std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, E>>>,
) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, E>>> {
    polled.map(|frame| frame.map(|frame| frame.map(forwardable)))
}

/// The protocols of the `Upgrade` header (with their versions, in the
/// client's order) whose names `allowed` lists, any case; `None` when none
/// is.
fn allowed_upgrade(headers: &HeaderMap, allowed: &[Arc<str>]) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            let name = token.split('/').next().unwrap_or_default();
            allowed.iter().any(|a| name.eq_ignore_ascii_case(a))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_names(headers, "upgrade")
}

/// Whether a `Connection` line of `headers` has `token`, any case.
pub(crate) fn connection_names(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|named| named.trim().eq_ignore_ascii_case(token))
}

/// The host the client asked for: the URI authority (HTTP/2, absolute-form)
/// or the `Host` header.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

/// Copies bytes both ways between an upgraded downstream and upstream.
async fn bridge_upgrade(downstream: OnUpgrade, upstream: OnUpgrade) {
    let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return;
        }
    };
    let mut downstream = TokioIo::new(downstream);
    let mut upstream = TokioIo::new(upstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(%error, "upgraded connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_101_switches_only_to_an_offered_protocol() {
        let answer = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::UPGRADE,
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            headers
        };
        let offered = HeaderValue::from_static("websocket, foo/2");
        for (values, ok) in [
            (&["websocket"][..], true),
            (&["WebSocket/13"], true),
            (&["websocket,"], true),
            (&[", websocket", "foo"], true),
            (&["bar"], false),
            (&["websocket, bar"], false),
            (&[], false),
            (&[","], false),
        ] {
            assert_eq!(
                switches_to_offered(&answer(values), &offered),
                ok,
                "{values:?}"
            );
        }
    }

    fn head(version: Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::get(target).version(version);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap_or_else(|e| panic!("{target}: {e}"))
    }

    #[test]
    fn a_client_ip_is_written_as_to_string_writes_it() {
        let mut ips: Vec<std::net::IpAddr> = [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "255.255.255.255",
            "1.20.199.100",
            "::1",
            "::ffff:10.1.2.3",
            "2001:db8::8a2e:370:7334",
        ]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
        // Every octet value, in every position.
        ips.extend(
            (0..=255u8).map(|o| {
                std::net::IpAddr::from(std::net::Ipv4Addr::new(o, 255 - o, o / 3, o ^ 0x5a))
            }),
        );
        for ip in ips {
            assert_eq!(
                client_ip_value(ip).as_bytes(),
                ip.to_string().as_bytes(),
                "{ip}"
            );
        }
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_not_implemented() {
        for (codings, refused) in [
            (&["chunked"][..], false),
            (&["Chunked"][..], false),
            (&[" chunked "][..], false),
            (&["chunked,"][..], false),
            (&["gzip, chunked"][..], true),
            (&["identity, chunked"][..], true),
            (&["gzip", "chunked"][..], true),
            (&["chunked;q=1"][..], true),
        ] {
            let mut req = head(Version::HTTP_11, "/", &["a.test"]);
            for coding in codings {
                req.headers_mut().append(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_str(coding).unwrap_or_else(|e| panic!("{coding}: {e}")),
                );
            }
            let want = if refused {
                Err(RejectReason::UnsupportedTransferCoding)
            } else {
                Ok(())
            };
            assert_eq!(check_head(&req), want, "{codings:?}");
        }
        assert_eq!(
            reason_status(RejectReason::UnsupportedTransferCoding),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            reason_status(RejectReason::MissingHost),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn check_head_follows_rfc_9112_on_host() {
        use RejectReason::*;
        let cases = [
            (Version::HTTP_11, "/", &["a.test"][..], Ok(())),
            (Version::HTTP_11, "/", &[][..], Err(MissingHost)),
            (Version::HTTP_10, "/", &[][..], Ok(())),
            (Version::HTTP_2, "https://a.test/", &[][..], Ok(())),
            (
                Version::HTTP_11,
                "/",
                &["a.test", "a.test"][..],
                Err(DuplicateHost),
            ),
            (
                Version::HTTP_10,
                "/",
                &["a.test", "b.test"][..],
                Err(DuplicateHost),
            ),
            (
                Version::HTTP_11,
                "http://u@a.test/",
                &["a.test"][..],
                Err(HostUserinfo),
            ),
            (
                Version::HTTP_11,
                "/",
                &["u:p@a.test"][..],
                Err(HostUserinfo),
            ),
            (Version::HTTP_11, "/a@b", &["a.test"][..], Ok(())),
        ];
        for (version, target, hosts, want) in cases {
            assert_eq!(
                check_head(&head(version, target, hosts)),
                want,
                "{version:?} {target} {hosts:?}"
            );
        }
    }

    /// An HTTP/2 request as hyper's server builds it from its pseudo-fields.
    fn http2_head(method: Method, path: &str) -> Request<()> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(http::uri::Authority::from_static("a.test"));
        parts.path_and_query = Some(path.parse().unwrap_or_else(|e| panic!("{path}: {e}")));
        let uri = Uri::from_parts(parts).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        req
    }

    #[test]
    fn an_http2_field_value_has_no_whitespace_at_its_edges() {
        let with_field = |value: &'static str| {
            let mut req = http2_head(Method::GET, "/");
            req.headers_mut()
                .append("x-canary", HeaderValue::from_static("always"));
            req.headers_mut()
                .append("x-canary", HeaderValue::from_static(value));
            check_head(&req)
        };
        for value in ["a", "a b", "a\tb", ""] {
            assert_eq!(with_field(value), Ok(()), "{value:?}");
        }
        for value in [" a", "a ", "\ta", "a\t", " "] {
            assert_eq!(
                with_field(value),
                Err(RejectReason::FieldValueWhitespace),
                "{value:?}"
            );
        }
        // HTTP/1 parsing has already dropped it.
        let mut req = http2_head(Method::GET, "/");
        *req.version_mut() = Version::HTTP_11;
        req.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("a.test"));
        req.headers_mut()
            .insert("x-canary", HeaderValue::from_static("a "));
        assert_eq!(check_head(&req), Ok(()));
    }

    #[test]
    fn an_http2_host_field_names_the_authority_or_nothing() {
        let with_host = |value: &'static str| {
            let mut req = http2_head(Method::GET, "/");
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static(value));
            req
        };
        assert_eq!(check_head(&http2_head(Method::GET, "/")), Ok(()));
        assert_eq!(check_head(&with_host("a.test")), Ok(()));
        assert_eq!(check_head(&with_host("A.Test")), Ok(()));
        // The scheme's default port, written or not, is the same host.
        assert_eq!(check_head(&with_host("a.test:80")), Ok(()));
        assert_eq!(
            check_head(&with_host("a.test:8080")),
            Err(RejectReason::DuplicateHost)
        );
        assert_eq!(
            check_head(&with_host("b.test")),
            Err(RejectReason::DuplicateHost)
        );
    }

    #[test]
    fn an_http2_path_is_absolute_or_an_options_asterisk() {
        for (method, path, want) in [
            (Method::GET, "/", Ok(())),
            (Method::GET, "/a?q", Ok(())),
            (Method::OPTIONS, "*", Ok(())),
            (Method::GET, "*", Err(RejectReason::InvalidTarget)),
            (Method::DELETE, "*", Err(RejectReason::InvalidTarget)),
            (Method::GET, "?q", Err(RejectReason::InvalidTarget)),
        ] {
            assert_eq!(
                check_head(&http2_head(method.clone(), path)),
                want,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn only_the_routes_upgrades_are_forwarded() {
        let websocket: Vec<Arc<str>> = vec![Arc::from("websocket")];
        let both: Vec<Arc<str>> = vec![Arc::from("websocket"), Arc::from("tls")];
        for (value, allowed, want) in [
            ("websocket", &websocket, Some("websocket")),
            ("WebSocket", &websocket, Some("WebSocket")),
            ("h2c, websocket/13", &websocket, Some("websocket/13")),
            ("h2c", &websocket, None),
            ("TLS/1.2", &websocket, None),
            ("TLS/1.2", &both, Some("TLS/1.2")),
            ("h2c, TLS/1.2, websocket", &both, Some("TLS/1.2, websocket")),
            ("websockets", &websocket, None),
            ("websocket", &Vec::new(), None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::UPGRADE, HeaderValue::from_static(value));
            let got = allowed_upgrade(&headers, allowed);
            assert_eq!(
                got.as_ref().and_then(|v| v.to_str().ok()),
                want,
                "{value} with {allowed:?}"
            );
        }
    }
}
