//! The admin API: health, readiness, Prometheus metrics, and the control
//! endpoints, with reader and writer bearer tokens; the live events
//! ([`events`]) and the dashboard that shows them ([`ui`]).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Body;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use weir_proxy::explained_errors::{ErrorBody, ExplainedErrors, head_too_large};
use weir_proxy::forward::names_other_coding;
use weir_proxy::request_body::watching_chunked_end;
use weir_proxy::server::HyperService;

use self::connections::Connections;

use http_body_util::BodyExt as _;
use serde_json::Value;

use serde::Serialize;
use weir_config::status::{PromoteAll, RouteStatus};

use crate::cluster::counters::{Replica, ReplicaCounters};
use crate::controller::transitions;
use crate::messages::{self, Refusal};
use crate::process::{Process, stopped};
use crate::reload::{self, Trigger};
use crate::rollout::Command;

/// What the admin API serves from.
#[derive(Debug)]
pub struct AdminState {
    process: Arc<Process>,
    ready: AtomicBool,
    replica: Replica,
    /// A slot per admin request being answered (probes aside); shared by
    /// every connection, see [`stack`].
    in_flight: Arc<Semaphore>,
    /// A slot per open event stream, see [`events`].
    event_streams: Arc<Semaphore>,
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

/// An admin endpoint, as routed from the method and path. Route names are
/// percent-decoded (`shop%2Fcheckout` is the CanaryRoute `shop/checkout`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint<'a> {
    Healthz,
    Readyz,
    Metrics,
    Routes,
    Route(Cow<'a, str>),
    /// `GET /api/v1/routes/{name}/analysisruns`.
    AnalysisRuns(Cow<'a, str>),
    Counters,
    Command(Cow<'a, str>, Verb),
    PromoteAll,
    Reload,
    Events,
    Ui(ui::Asset),
    UiRedirect,
}

/// A route command as named in its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Promote,
    Abort,
    Retry,
    Pause,
    Resume,
}

// === impl Endpoint ===

impl<'a> Endpoint<'a> {
    /// Routes `method` and `path` (HEAD as GET): an unknown path, a command
    /// that does not exist, or a path with a `.` or `..` segment is 404; a
    /// known path with another method is 405; a route name that does not
    /// percent-decode to UTF-8 is 400.
    fn of(method: &Method, path: &'a str) -> Result<Endpoint<'a>, Refusal> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        // Never resolved: a dot-segment names no endpoint and no route.
        if let Some(dots) = segments.iter().find(|s| is_dot_segment(s)) {
            return Err(Refusal::DotSegment {
                path: path.to_owned(),
                segment: (*dots).to_owned(),
            });
        }
        // An empty segment (`routes//promote`) names no route: not read as
        // a route "" and a verb.
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(Refusal::NoEndpoint {
                path: path.to_owned(),
            });
        }
        // HEAD is GET without the body (hyper leaves the body out), as
        // every HTTP server answers it: `curl -I .../healthz` works.
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let endpoint = match segments.as_slice() {
            ["healthz"] if get => Endpoint::Healthz,
            ["readyz"] if get => Endpoint::Readyz,
            ["metrics"] if get => Endpoint::Metrics,
            ["api", "v1", "routes"] if get => Endpoint::Routes,
            ["api", "v1", "routes", name] if get => Endpoint::Route(route_name(name)?),
            ["api", "v1", "counters"] if get => Endpoint::Counters,
            ["api", "v1", "routes", name, "analysisruns"] if get => {
                Endpoint::AnalysisRuns(route_name(name)?)
            }
            ["api", "v1", "routes", _, "analysisruns"] => {
                return Err(method_not_allowed(method, path));
            }
            ["api", "v1", "routes", name, verb] => {
                let Some(verb) = Verb::from_path(verb) else {
                    return Err(Refusal::NoCommand {
                        verb: (*verb).to_owned(),
                    });
                };
                if !post {
                    return Err(method_not_allowed(method, path));
                }
                Endpoint::Command(route_name(name)?, verb)
            }
            ["api", "v1", "promote"] if post => Endpoint::PromoteAll,
            ["api", "v1", "reload"] if post => Endpoint::Reload,
            ["api", "v1", "events"] if get => Endpoint::Events,
            ["ui"] if get && !path.ends_with('/') => Endpoint::UiRedirect,
            ["ui"] if get => Endpoint::Ui(ui::Asset::Page),
            ["ui", file] if get => match ui::Asset::named(file) {
                Some(asset) => Endpoint::Ui(asset),
                None => {
                    return Err(Refusal::NoEndpoint {
                        path: path.to_owned(),
                    });
                }
            },
            ["healthz" | "readyz" | "metrics" | "ui"]
            | [
                "api",
                "v1",
                "routes" | "counters" | "promote" | "reload" | "events",
            ]
            | ["api", "v1", "routes", _]
            | ["ui", _] => {
                return Err(method_not_allowed(method, path));
            }
            _ => {
                return Err(Refusal::NoEndpoint {
                    path: path.to_owned(),
                });
            }
        };
        Ok(endpoint)
    }
}

/// `.` or `..`, also percent-encoded (`%2e`, `%2E`).
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

/// The route name of a path segment, percent-decoded: `%XX` is the byte
/// `XX` (hex, either case) and the bytes must be UTF-8. A `%` without two
/// hex digits after it, or bytes that are not UTF-8, are refused naming
/// the segment.
fn route_name(segment: &str) -> Result<Cow<'_, str>, Refusal> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let refused = |problem: String| Refusal::BadRouteName {
        segment: segment.to_owned(),
        problem,
    };
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte != b'%' {
            decoded.push(byte);
            at += 1;
            continue;
        }
        let digits = bytes.get(at + 1..at + 3).and_then(|hex| {
            let high = char::from(*hex.first()?).to_digit(16)?;
            let low = char::from(*hex.get(1)?).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        });
        let Some(escaped) = digits else {
            let written = String::from_utf8_lossy(&bytes[at..(at + 3).min(bytes.len())]);
            return Err(refused(format!(
                "`{written}` at byte {at} is not a percent-escape (% and two hex digits)"
            )));
        };
        decoded.push(escaped);
        at += 3;
    }
    String::from_utf8(decoded).map(Cow::Owned).map_err(|error| {
        refused(format!(
            "it decodes to bytes that are not UTF-8 ({})",
            error.utf8_error()
        ))
    })
}

fn method_not_allowed(method: &Method, path: &str) -> Refusal {
    Refusal::MethodNotAllowed {
        method: method.clone(),
        path: path.to_owned(),
    }
}

// === impl Verb ===

impl Verb {
    fn from_path(verb: &str) -> Option<Verb> {
        Some(match verb {
            "promote" => Verb::Promote,
            "abort" => Verb::Abort,
            "retry" => Verb::Retry,
            "pause" => Verb::Pause,
            "resume" => Verb::Resume,
            _ => return None,
        })
    }

    /// The command, given the request body (a JSON object; `{}` when
    /// empty). `promote` takes `full`, a boolean; any other field, or
    /// `full` on another command, is refused with a message naming it.
    fn command(self, body: &Value) -> Result<Command, String> {
        let fields = body.as_object().map(|o| o.iter()).into_iter().flatten();
        let mut full = false;
        let mut unknown = Vec::new();
        for (key, value) in fields {
            match (self, key.as_str()) {
                (Verb::Promote, "full") => {
                    full = value.as_bool().ok_or_else(|| {
                        format!("full must be a boolean (true or false), not {value}")
                    })?;
                }
                _ => unknown.push(format!("`{key}`")),
            }
        }
        if !unknown.is_empty() {
            let accepted = match self {
                Verb::Promote => "only `full` (a boolean) is accepted",
                _ => "this command takes no fields",
            };
            return Err(unknown_fields(&unknown, self.as_str(), accepted));
        }
        Ok(match self {
            Verb::Promote if full => Command::PromoteFull,
            Verb::Promote => Command::Promote,
            Verb::Abort => Command::Abort,
            Verb::Retry => Command::Retry,
            Verb::Pause => Command::Pause,
            Verb::Resume => Command::Resume,
        })
    }

    const fn as_str(self) -> &'static str {
        match self {
            Verb::Promote => "promote",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
        }
    }
}

// === impl AdminState ===

impl AdminState {
    /// Admin state over the running process; not ready until [`Self::set_ready`].
    pub fn new(process: Arc<Process>) -> AdminState {
        let replica = Replica::detect(None, process.now_ms());
        AdminState {
            process,
            ready: AtomicBool::new(false),
            replica,
            in_flight: Arc::new(Semaphore::new(stack::ADMIN_CONCURRENCY)),
            event_streams: Arc::new(Semaphore::new(events::MAX_EVENT_STREAMS)),
        }
    }

    /// The same state, naming this replica `replica` in `/api/v1/counters`.
    #[must_use]
    pub fn with_replica(mut self, replica: Replica) -> AdminState {
        self.replica = replica;
        self
    }

    /// Sets what `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    /// The Prometheus text exposition of every weir metric.
    pub async fn render_metrics(&self) -> String {
        self.process.render_metrics().await
    }

    /// Answers one admin request from `peer`: the whole admin API short of
    /// the socket, so tests call it with a `Request` in memory.
    pub async fn handle<B>(&self, mut req: Request<B>, peer: SocketAddr) -> Response<AdminBody>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        req.extensions_mut().insert(Peer(peer));
        let path = req.uri().path().to_owned();
        let endpoint = match Endpoint::of(req.method(), &path) {
            Ok(endpoint) => endpoint,
            Err(refused) => return refusal(&refused).map(AdminBody::from),
        };
        match endpoint {
            Endpoint::Events => match self.access(&req).await {
                Ok(access) => events::answer(self, access).await,
                Err(response) => response.map(AdminBody::from),
            },
            Endpoint::Ui(asset) => ui::answer(asset).map(AdminBody::from),
            Endpoint::UiRedirect => ui::redirect().map(AdminBody::from),
            endpoint => self.answer(endpoint, req).await.map(AdminBody::from),
        }
    }

    /// Answers a request for `endpoint`, one that is answered at once.
    async fn answer<B>(&self, endpoint: Endpoint<'_>, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match endpoint {
            Endpoint::Healthz => text(StatusCode::OK, "ok\n"),
            Endpoint::Readyz => {
                if self.ready.load(Relaxed) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            Endpoint::Metrics => {
                let mut response =
                    Response::new(Full::new(Bytes::from(self.render_metrics().await)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            Endpoint::Routes => {
                if let Err(response) = self.authorize(&req, Access::Read).await {
                    return response;
                }
                json(StatusCode::OK, &self.statuses().await)
            }
            Endpoint::Route(name) => {
                if let Err(response) = self.authorize(&req, Access::Read).await {
                    return response;
                }
                match self.status(&name).await {
                    Some(status) => json(StatusCode::OK, &status),
                    None => refusal(&Refusal::NoRoute {
                        route: name.into_owned(),
                    }),
                }
            }
            Endpoint::AnalysisRuns(name) => {
                if let Err(response) = self.authorize(&req, Access::Read).await {
                    return response;
                }
                let runs = {
                    let control = self.process.control.lock().await;
                    let known = control.config().routes.iter().any(|r| *r.name == *name);
                    known.then(|| control.analysis_runs.clone())
                };
                match runs {
                    Some(runs) => json(
                        StatusCode::OK,
                        &crate::analysis_templates::engine::runs_json(&runs.runs(&name)),
                    ),
                    None => refusal(&Refusal::NoRoute {
                        route: name.into_owned(),
                    }),
                }
            }
            Endpoint::Counters => {
                if let Err(response) = self.authorize(&req, Access::Read).await {
                    return response;
                }
                let snapshot = self.process.publisher.current();
                let names = snapshot.routes.iter().map(|route| &*route.name);
                let counters =
                    ReplicaCounters::read(&self.replica, self.process.proxy.metrics(), names);
                json(StatusCode::OK, &counters)
            }
            Endpoint::Command(name, verb) => {
                let name = name.into_owned();
                if let Err(response) = self.authorize(&req, Access::Write).await {
                    return response;
                }
                let body = match read_json(req).await {
                    Ok(body) => body,
                    Err(response) => return response,
                };
                let command = match verb.command(&body) {
                    Ok(command) => command,
                    Err(problem) => return refusal(&Refusal::BadCommandBody { problem }),
                };
                let response = self.run_command(&name, command).await;
                self.announce_command(&name, command.as_str(), &response)
                    .await;
                response
            }
            Endpoint::PromoteAll => {
                if let Err(response) = self.authorize(&req, Access::Write).await {
                    return response;
                }
                if let Err(response) = read_no_fields(req, "promote-all").await {
                    return response;
                }
                let response = self.promote_all().await;
                self.announce_command("*", "promote --all", &response).await;
                response
            }
            Endpoint::Reload => {
                if let Err(response) = self.authorize(&req, Access::Write).await {
                    return response;
                }
                // Read as every command's body is: a reload takes none.
                if let Err(response) = read_no_fields(req, "reload").await {
                    return response;
                }
                match reload::reload(&self.process, Trigger::Api).await {
                    Ok(outcome) => {
                        let mut body = serde_json::json!({
                            "reloaded": matches!(outcome, reload::Outcome::Applied(_))
                        });
                        // What the config in force asks that only a
                        // restart applies (also when a file change was
                        // applied before this call).
                        let restart = {
                            let control = self.process.control.lock().await;
                            self.process.restart_needed(control.file_config())
                        };
                        if !restart.is_empty() {
                            body["restartNeeded"] = serde_json::json!(restart);
                            body["message"] = serde_json::json!(messages::RESTART_NEEDED);
                        }
                        json(StatusCode::OK, &body)
                    }
                    Err(diagnostics) => {
                        let errors: Vec<String> =
                            diagnostics.0.iter().map(ToString::to_string).collect();
                        json(
                            StatusCode::BAD_REQUEST,
                            &serde_json::json!({ "error": messages::config_refused(&errors), "errors": errors }),
                        )
                    }
                }
            }
            // Streamed or static: answered by `handle`.
            Endpoint::Events | Endpoint::Ui(_) | Endpoint::UiRedirect => {
                refusal(&Refusal::NoEndpoint {
                    path: req.uri().path().to_owned(),
                })
            }
        }
    }

    /// Tells the event stream's readers how operator command `command` on
    /// `route` was answered.
    async fn announce_command(&self, route: &str, command: &str, response: &Response<Full<Bytes>>) {
        let status = response.status().as_u16();
        let error = if response.status().is_success() {
            None
        } else {
            let body = response
                .body()
                .clone()
                .collect()
                .await
                .map(|b| b.to_bytes());
            body.ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        };
        let mut control = self.process.control.lock().await;
        control.announce_command(route, command, status, error.as_deref());
    }

    /// The control state, its counter history sampled now where the
    /// control loop samples only once a second
    /// ([`ControlState::sample_if_settled`]): for a read of the status.
    ///
    /// [`ControlState::sample_if_settled`]: crate::controller::ControlState::sample_if_settled
    async fn control_sampled(&self, now: u64) -> crate::process::ControlGuard<'_> {
        let mut control = self.process.control.lock().await;
        if self.process.cluster.get().is_none() {
            let metrics = self.process.proxy.metrics();
            control.sample_if_settled(
                &|route, role| crate::controller::control_loop::own_counts(metrics, route, role),
                now,
            );
        }
        control
    }

    /// Every route's status, CanaryRoutes with their leader and coverage.
    async fn statuses(&self) -> Vec<RouteStatus> {
        let now = self.process.now_ms();
        let mut statuses = self.control_sampled(now).await.statuses(now);
        if let Some(cluster) = self.process.cluster.get() {
            cluster_commands::annotate(cluster, &mut statuses);
        }
        statuses
    }

    /// The status of route `name`, a CanaryRoute's with its leader and
    /// coverage; `None` for an unknown route.
    async fn status(&self, name: &str) -> Option<RouteStatus> {
        let now = self.process.now_ms();
        let status = self.control_sampled(now).await.status(name, now);
        let mut statuses: Vec<RouteStatus> = status.into_iter().collect();
        if let Some(cluster) = self.process.cluster.get() {
            cluster_commands::annotate(cluster, &mut statuses);
        }
        statuses.pop()
    }

    /// Runs `command` on route `name`: a file route's here, a CanaryRoute's
    /// through its status (see [`cluster_commands`]).
    async fn run_command(&self, name: &str, command: Command) -> Response<Full<Bytes>> {
        if let Some(cluster) = cluster_commands::cluster_of(&self.process, name) {
            let pending =
                match cluster_commands::command(&self.process, cluster, name, command).await {
                    Ok(cluster_commands::Commanded::Acted) => None,
                    Ok(cluster_commands::Commanded::Pending) => {
                        Some(cluster_commands::pending_message(name, command))
                    }
                    Err(why) => return cluster_commands::not_written(name, command, &why),
                };
            return match self.status(name).await {
                Some(mut status) => {
                    let code = if pending.is_some() {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::OK
                    };
                    status.pending_command = pending;
                    json(code, &status)
                }
                None => refusal(&Refusal::NoRoute {
                    route: name.to_owned(),
                }),
            };
        }
        match transitions::command(&self.process, name, command).await {
            Ok(published) => {
                if let Some(version) = published {
                    self.process.wait_applied(version).await;
                }
                match self.status(name).await {
                    Some(status) => json(StatusCode::OK, &status),
                    None => refusal(&Refusal::NoRoute {
                        route: name.to_owned(),
                    }),
                }
            }
            Err(refused) => error(refused.status(), &refused.to_string()),
        }
    }

    /// Promotes every Paused route: file routes in one step, published
    /// once; CanaryRoutes through their status. 500 when a route could not
    /// be promoted, 503 when the API server did not take a CanaryRoute's
    /// input, 202 when the leader has not acted on one in time.
    async fn promote_all(&self) -> Response<Full<Bytes>> {
        let done = transitions::promote_paused(&self.process).await;
        if let Some(version) = done.published {
            self.process.wait_applied(version).await;
        }
        let cluster = match self.process.cluster.get() {
            Some(cluster) => cluster_commands::promote_paused(&self.process, cluster).await,
            None => cluster_commands::PromotedAll::default(),
        };
        let mut routes = self.statuses().await;
        for status in &mut routes {
            if cluster.pending.contains(&status.name) {
                status.pending_command = Some(cluster_commands::pending_message(
                    &status.name,
                    Command::Promote,
                ));
            }
        }
        let status = if !done.failures.is_empty() || !cluster.refused.is_empty() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else if !cluster.failures.is_empty() {
            StatusCode::SERVICE_UNAVAILABLE
        } else if !cluster.pending.is_empty() {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        let failures: Vec<String> = done
            .failures
            .into_iter()
            .chain(cluster.refused)
            .chain(cluster.failures)
            .collect();
        let answer = PromoteAll {
            error: (!failures.is_empty()).then(|| failures.join("; ")),
            promoted: done.promoted.into_iter().chain(cluster.promoted).collect(),
            routes,
        };
        json(status, &answer)
    }

    /// Checks the bearer token against the tokens of the config in force.
    async fn authorize<B>(
        &self,
        req: &Request<B>,
        need: Access,
    ) -> Result<(), Response<Full<Bytes>>> {
        if self.access(req).await? < need {
            return Err(refusal(&Refusal::ReaderCannotWrite));
        }
        Ok(())
    }

    /// What the caller of `req` may do, by its bearer token against the
    /// tokens of the config in force; without tokens, a local caller may
    /// do everything.
    async fn access<B>(&self, req: &Request<B>) -> Result<Access, Response<Full<Bytes>>> {
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
                Ok(Access::Write)
            } else {
                Err(refusal(&Refusal::LocalOnly))
            };
        }
        let mut authorizations = req.headers().get_all(header::AUTHORIZATION).iter();
        let first = authorizations.next();
        if authorizations.next().is_some() {
            return Err(refusal(&Refusal::SeveralAuthorizations));
        }
        let presented = first.and_then(|v| v.to_str().ok()).and_then(bearer_token);
        let Some(presented) = presented else {
            return Err(refusal(&Refusal::MissingToken));
        };
        let matches = |token: &Option<String>| {
            token
                .as_deref()
                .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
        };
        if matches(&writer) {
            Ok(Access::Write)
        } else if matches(&reader) {
            Ok(Access::Read)
        } else {
            Err(refusal(&Refusal::WrongToken))
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme name is
/// case-insensitive (RFC 9110 section 11.1) and any run of spaces or tabs
/// may separate it from the token; another scheme or an empty token is none.
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim_start_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The error of a request body.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest admin request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// How long an admin client may take to send a request head or body, and
/// to send its first byte after connecting.
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a new connection waits for the place of a waiting one to be
/// given back (its task ends at once when told to).
const PLACE_GIVEN_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// The refusal of a command body with fields the command does not take
/// (`names`, quoted), saying what it `accepts`.
fn unknown_fields(names: &[String], command: &str, accepts: &str) -> String {
    format!(
        "unknown field{} {} in the {command} body; {accepts}",
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// Reads the body of `command`, which takes no fields: empty or `{}`.
async fn read_no_fields<B>(req: Request<B>, command: &str) -> Result<(), Response<Full<Bytes>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = read_json(req).await?;
    match body.as_object().filter(|o| !o.is_empty()) {
        Some(fields) => {
            let names: Vec<String> = fields.keys().map(|k| format!("`{k}`")).collect();
            let problem = unknown_fields(&names, command, "it takes no fields");
            Err(refusal(&Refusal::BadCommandBody { problem }))
        }
        None => Ok(()),
    }
}

/// Reads a command's optional JSON object body; empty is `{}`. A query
/// string is refused: a command's options are in its body.
async fn read_json<B>(req: Request<B>) -> Result<Value, Response<Full<Bytes>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    // `promote?full=true` would otherwise be a plain promote.
    if let Some(query) = req.uri().query() {
        return Err(refusal(&Refusal::QueryGiven {
            query: query.to_owned(),
        }));
    }
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(CLIENT_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(refusal(&Refusal::BodyTooLarge));
        }
        Ok(Err(_)) => return Err(refusal(&Refusal::BodyBroken)),
        Err(_) => {
            return Err(refusal(&Refusal::BodyTimeout {
                seconds: CLIENT_TIMEOUT.as_secs(),
            }));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value @ Value::Object(_)) => match serde_json::from_slice::<UniqueFields>(&bytes) {
            Ok(_) => Ok(value),
            Err(e) => Err(refusal(&Refusal::BadCommandBody {
                problem: e.to_string(),
            })),
        },
        Ok(_) => Err(refusal(&Refusal::BodyNotObject)),
        Err(e) => Err(refusal(&Refusal::BodyNotJson {
            error: e.to_string(),
        })),
    }
}

/// A JSON object read only to check that no field is named twice (a
/// parsed `Value` keeps the last of them, silently).
struct UniqueFields;

impl<'de> serde::Deserialize<'de> for UniqueFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = UniqueFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueFields, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(name) = map.next_key::<String>()? {
                    // Refused before its value is read, so the position
                    // the error names is the second name's.
                    if !seen.insert(name.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "the field `{name}` is given twice"
                        )));
                    }
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UniqueFields)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// Compares a configured `token` with one `presented`, in time that
/// depends on the presented one's length only: neither where they differ
/// nor the token's length shows in it.
fn constant_time_eq(token: &[u8], presented: &[u8]) -> bool {
    let Some(last) = token.len().checked_sub(1) else {
        return presented.is_empty();
    };
    let mut differ = u8::from(token.len() != presented.len());
    for (i, byte) in presented.iter().enumerate() {
        // Every presented byte is compared with some byte of the token.
        differ |= byte ^ token[i.min(last)];
    }
    differ == 0
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

/// A JSON answer. Written through a `serde_json::Value`, so keys come out
/// sorted, as they always have.
fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let text = serde_json::to_value(value).map_or_else(
        |e| serde_json::json!({ "error": format!("cannot encode the answer: {e}") }).to_string(),
        |v| v.to_string(),
    );
    let mut response = Response::new(Full::new(Bytes::from(text)));
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

fn refusal(refused: &Refusal) -> Response<Full<Bytes>> {
    let mut response = error(refused.status(), &refused.to_string());
    // A 405 says which methods the path answers, as HTTP asks.
    if let Refusal::MethodNotAllowed { path, .. } = refused
        && let Some(allow) = allowed_methods(path)
    {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    response
}

/// The methods a known path answers, for the `Allow` header of a 405.
fn allowed_methods(path: &str) -> Option<&'static str> {
    if Endpoint::of(&Method::GET, path).is_ok() {
        Some("GET, HEAD")
    } else if Endpoint::of(&Method::POST, path).is_ok() {
        Some("POST")
    } else {
        None
    }
}

/// Serves the admin API on `listener` until `stop` turns true.
///
/// At most [`MAX_CONNECTIONS`](connections::MAX_CONNECTIONS) connections
/// are open at once, and a source keeps at most
/// [`MAX_WAITING_PER_SOURCE`](connections::MAX_WAITING_PER_SOURCE) of them
/// waiting for a request head (a connection younger than
/// [`GRACE`](connections::GRACE) is spared); over either limit a waiting
/// connection gives its place (see [`connections`]), so connections
/// holding unfinished heads cannot keep a probe or a command out.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: watch::Receiver<bool>) {
    let connections = Arc::new(Connections::new(connections::Limits::DEFAULT));
    serve_with(listener, state, stop, connections).await;
}

/// [`serve`], with the connections kept in `connections` (and its limits).
async fn serve_with(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut stop: watch::Receiver<bool>,
    connections: Arc<Connections>,
) {
    // HTTP/1.1 only: every admin client (probes, Prometheus, the CLI, the
    // dashboard) speaks it, and an HTTP/1 connection has a timeout for
    // each request head, where an idle HTTP/2 connection would have none.
    let mut builder = hyper::server::conn::http1::Builder::new();
    // A slow or silent client must not hold an admin connection forever.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(CLIENT_TIMEOUT)
        .max_buf_size(64 * 1024);
    let builder = Arc::new(builder);
    let limit = connections.limits().connections;
    let places = Arc::new(tokio::sync::Semaphore::new(limit));
    let mut backoff = weir_proxy::server::AcceptBackoff::new("admin");
    loop {
        let (stream, remote) = tokio::select! {
            () = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff.succeeded();
                    pair
                }
                Err(error) => {
                    let pause = backoff.failed(&error);
                    tokio::select! {
                        () = stopped(&mut stop) => return,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            },
        };
        let permit = match Arc::clone(&places).try_acquire_owned() {
            Ok(permit) => Some(permit),
            // Full: a connection still waiting for a head gives its place,
            // so that clients holding unfinished heads cannot keep a probe
            // or a command out.
            Err(_) if connections.make_room() => {
                tokio::time::timeout(PLACE_GIVEN_WITHIN, Arc::clone(&places).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            tracing::debug!(%remote, limit, "admin connection refused: too many open, none waiting");
            continue;
        };
        let place = connections.add(remote.ip());
        let stack = stack::admin_stack(Arc::clone(&state), remote);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _permit = permit;
            // Its grace ends while it is served (it never ends itself).
            let mut grace = std::pin::pin!(place.grace());
            // The head's timeout starts with its first byte: a client that
            // connects and says nothing is dropped here.
            let mut first = [0u8; 1];
            let spoke = tokio::select! {
                read = tokio::time::timeout(CLIENT_TIMEOUT, stream.peek(&mut first)) => {
                    matches!(read, Ok(Ok(1)))
                }
                () = place.leave.notified() => {
                    tracing::debug!(%remote, "admin connection closed to make room: nothing sent");
                    return;
                }
                never = &mut grace => match never {},
            };
            if !spoke {
                tracing::debug!(%remote, "admin connection closed: nothing sent");
                return;
            }
            place.spoke();
            // Answering from the whole head to the end of the answer's body:
            // such a connection never gives its place.
            let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| {
                let answering = place.answering();
                // hyper reads a chunked body's trailer section to a CRLF
                // CRLF, taking a bare LF inside it for part of a field (see
                // `BodyEnding`): nothing after a chunked body is read unless
                // it was read to its last chunk with no trailers.
                let (req, chunked_end) = watching_chunked_end(req);
                // A body under another coding is not what it seems once
                // de-chunked: refused, as the proxy refuses it (501).
                let refused = if head_too_large(&req) {
                    Some(Refusal::HeadTooLarge)
                } else if names_other_coding(req.headers()) {
                    Some(Refusal::UnsupportedTransferCoding)
                } else {
                    None
                };
                let answer = refused
                    .is_none()
                    .then(|| HyperService(stack.clone()).call(req));
                async move {
                    // The stack answers every failure itself (see
                    // `stack::admin_stack`); should an error come anyway,
                    // it is a 500.
                    let mut response = match answer {
                        Some(answer) => answer.await.unwrap_or_else(|error| {
                            self::error(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                &format!("the admin API failed: {error}"),
                            )
                            .map(AdminBody::from)
                        }),
                        None => {
                            let why = refused.unwrap_or(Refusal::HeadTooLarge);
                            let mut refused = refusal(&why);
                            refused.headers_mut().insert(
                                header::CONNECTION,
                                header::HeaderValue::from_static("close"),
                            );
                            refused.map(AdminBody::from)
                        }
                    };
                    if chunked_end.is_some_and(|end| !end.ended_plainly()) {
                        response.headers_mut().insert(
                            header::CONNECTION,
                            header::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response.map(|body| answering.body(body)))
                }
            });
            let stream = ExplainedErrors::new(stream, ErrorBody::Json);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(%remote, %error, "admin connection ended with an error");
                    }
                }
                () = place.leave.notified() => {
                    tracing::debug!(%remote, "admin connection closed to make room: no request head whole");
                }
                never = &mut grace => match never {},
            }
        });
    }
}

mod cluster_commands;
pub mod connections;
pub mod events;
#[cfg(test)]
mod request_table;
pub mod stack;
pub mod ui;

pub use events::AdminBody;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_tolerates_spaces() {
        let cases: [(&str, Option<&str>); 14] = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("bEaReR abc", Some("abc")),
            ("Bearer    abc", Some("abc")),
            ("Bearer\tabc", Some("abc")),
            ("Bearer abc  ", Some("abc")),
            ("  Bearer abc", Some("abc")),
            ("Bearer", None),
            ("Bearer   ", None),
            ("Basic abc", None),
            ("Bearerabc", None),
            ("Bearers abc", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer_token(value), want, "Authorization: {value:?}");
        }
    }

    #[test]
    fn routes_every_method_and_path() {
        use Endpoint::*;
        let (get, post, put) = (Method::GET, Method::POST, Method::PUT);
        let route = |name: &'static str| Route(Cow::Borrowed(name));
        let command = |name: &'static str, verb| Command(Cow::Borrowed(name), verb);
        let ok: [(&Method, &str, Endpoint<'_>); 27] = [
            (
                &get,
                "/api/v1/routes/web/analysisruns",
                AnalysisRuns(Cow::Borrowed("web")),
            ),
            (
                &get,
                "/api/v1/routes/shop%2Fcheckout/analysisruns/",
                AnalysisRuns(Cow::Borrowed("shop/checkout")),
            ),
            (&get, "/api/v1/events", Events),
            (&get, "/api/v1/events/", Events),
            (&get, "/ui", UiRedirect),
            (&get, "/ui/", Ui(ui::Asset::Page)),
            (&get, "/ui/index.html", Ui(ui::Asset::Page)),
            (&get, "/ui/app.js", Ui(ui::Asset::Script)),
            (&get, "/ui/app.css", Ui(ui::Asset::Style)),
            (&get, "/healthz", Healthz),
            (&get, "/readyz", Readyz),
            (&get, "/metrics", Metrics),
            (&get, "/api/v1/routes", Routes),
            (&get, "/api/v1/routes/", Routes),
            (&get, "/api/v1/routes/web", route("web")),
            (
                &get,
                "/api/v1/routes/shop%2Fcheckout",
                route("shop/checkout"),
            ),
            (
                &get,
                "/api/v1/routes/shop%2fcheckout",
                route("shop/checkout"),
            ),
            (&get, "/api/v1/routes/caf%C3%A9", route("café")),
            (
                &post,
                "/api/v1/routes/shop%2Fcheckout/abort",
                command("shop/checkout", Verb::Abort),
            ),
            (&get, "/api/v1/counters", Counters),
            (
                &post,
                "/api/v1/routes/web/promote",
                command("web", Verb::Promote),
            ),
            (
                &post,
                "/api/v1/routes/web/abort",
                command("web", Verb::Abort),
            ),
            (
                &post,
                "/api/v1/routes/web/retry",
                command("web", Verb::Retry),
            ),
            (
                &post,
                "/api/v1/routes/web/pause",
                command("web", Verb::Pause),
            ),
            (
                &post,
                "/api/v1/routes/web/resume",
                command("web", Verb::Resume),
            ),
            (&post, "/api/v1/promote", PromoteAll),
            (&post, "/api/v1/reload", Reload),
        ];
        for (method, path, want) in ok {
            assert_eq!(Endpoint::of(method, path), Ok(want), "{method} {path}");
        }
        let dots = |path: &str, segment: &str| Refusal::DotSegment {
            path: path.to_owned(),
            segment: segment.to_owned(),
        };
        let nowhere = |path: &str| Refusal::NoEndpoint {
            path: path.to_owned(),
        };
        let no_command = Refusal::NoCommand {
            verb: "launch".to_owned(),
        };
        let not_allowed = |method: &Method, path: &str| method_not_allowed(method, path);
        let bad_name = |segment: &str, problem: &str| Refusal::BadRouteName {
            segment: segment.to_owned(),
            problem: problem.to_owned(),
        };
        let not_an_escape = |written: &str, at: usize| {
            format!("`{written}` at byte {at} is not a percent-escape (% and two hex digits)")
        };
        let refused: [(&Method, &str, Refusal, u16); 26] = [
            (
                &post,
                "/api/v1/events",
                not_allowed(&post, "/api/v1/events"),
                405,
            ),
            (&post, "/ui/", not_allowed(&post, "/ui/"), 405),
            (&get, "/ui/main.js", nowhere("/ui/main.js"), 404),
            (&get, "/ui/../metrics", dots("/ui/../metrics", ".."), 404),
            (
                &get,
                "/api/v1/routes/shop%ZZcheckout",
                bad_name("shop%ZZcheckout", &not_an_escape("%ZZ", 4)),
                400,
            ),
            (
                &get,
                "/api/v1/routes/shop%2",
                bad_name("shop%2", &not_an_escape("%2", 4)),
                400,
            ),
            (
                &post,
                "/api/v1/routes/%/abort",
                bad_name("%", &not_an_escape("%", 0)),
                400,
            ),
            (
                &post,
                "/api/v1/routes/shop%FFx/abort",
                bad_name(
                    "shop%FFx",
                    "it decodes to bytes that are not UTF-8 \
                     (invalid utf-8 sequence of 1 bytes from index 4)",
                ),
                400,
            ),
            (
                &get,
                "/api/v1/routes/%2E%2e",
                dots("/api/v1/routes/%2E%2e", "%2E%2e"),
                404,
            ),
            (
                &get,
                "/api/v1/routes/../x",
                dots("/api/v1/routes/../x", ".."),
                404,
            ),
            (
                &get,
                "/api/v1/routes/./x",
                dots("/api/v1/routes/./x", "."),
                404,
            ),
            (
                &get,
                "/api/v1/routes/%2e%2e/x",
                dots("/api/v1/routes/%2e%2e/x", "%2e%2e"),
                404,
            ),
            (
                &post,
                "/api/v1/routes/web/../promote",
                dots("/api/v1/routes/web/../promote", ".."),
                404,
            ),
            (
                &get,
                "/api/v1/../healthz",
                dots("/api/v1/../healthz", ".."),
                404,
            ),
            (&get, "/nosuch", nowhere("/nosuch"), 404),
            (
                &get,
                "/api/v1/routes/web/x/y",
                nowhere("/api/v1/routes/web/x/y"),
                404,
            ),
            (&post, "/api/v1/routes/web/launch", no_command.clone(), 404),
            (
                &get,
                "/api/v1/routes//main",
                nowhere("/api/v1/routes//main"),
                404,
            ),
            (
                &post,
                "/api/v1/routes//promote",
                nowhere("/api/v1/routes//promote"),
                404,
            ),
            (&get, "/api/v1/routes/web/launch", no_command, 404),
            (
                &get,
                "/api/v1/routes/web/promote",
                not_allowed(&get, "/api/v1/routes/web/promote"),
                405,
            ),
            (
                &post,
                "/api/v1/routes/web",
                not_allowed(&post, "/api/v1/routes/web"),
                405,
            ),
            (&post, "/healthz", not_allowed(&post, "/healthz"), 405),
            (
                &post,
                "/api/v1/counters",
                not_allowed(&post, "/api/v1/counters"),
                405,
            ),
            (
                &get,
                "/api/v1/reload",
                not_allowed(&get, "/api/v1/reload"),
                405,
            ),
            (
                &put,
                "/api/v1/promote",
                not_allowed(&put, "/api/v1/promote"),
                405,
            ),
        ];
        for (method, path, want, status) in refused {
            match Endpoint::of(method, path) {
                Ok(endpoint) => panic!("{method} {path}: routed to {endpoint:?}"),
                Err(refusal) => {
                    assert_eq!(refusal, want, "{method} {path}");
                    assert_eq!(refusal.status().as_u16(), status, "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn command_bodies_are_checked() {
        let body = |text: &str| serde_json::from_str::<Value>(text).expect("test JSON");
        let ok = [
            (Verb::Promote, "{}", Command::Promote),
            (Verb::Promote, r#"{"full": false}"#, Command::Promote),
            (Verb::Promote, r#"{"full": true}"#, Command::PromoteFull),
            (Verb::Abort, "{}", Command::Abort),
            (Verb::Resume, "{}", Command::Resume),
        ];
        for (verb, text, want) in ok {
            assert_eq!(verb.command(&body(text)), Ok(want), "{verb:?} {text}");
        }
        let refused = [
            (
                Verb::Promote,
                r#"{"full": "true"}"#,
                "full must be a boolean",
            ),
            (Verb::Promote, r#"{"full": 1}"#, "full must be a boolean"),
            (
                Verb::Promote,
                r#"{"ful": true}"#,
                "unknown field `ful` in the promote body",
            ),
            (
                Verb::Promote,
                r#"{"full": true, "now": 1, "x": 2}"#,
                "unknown fields `now`, `x`",
            ),
            (
                Verb::Abort,
                r#"{"full": true}"#,
                "unknown field `full` in the abort body",
            ),
        ];
        for (verb, text, says) in refused {
            match verb.command(&body(text)) {
                Ok(command) => panic!("{verb:?} {text}: accepted as {command:?}"),
                Err(message) => assert!(message.contains(says), "{verb:?} {text}: {message}"),
            }
        }
    }

    /// The body of `refused`, which must be a 400.
    async fn bad_request_text(refused: Response<Full<Bytes>>) -> String {
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let body = refused
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn a_field_given_twice_is_refused_by_name() {
        let body = r#"{"full": true, "full": false}"#;
        let request = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
        let Err(refused) = read_json(request).await else {
            panic!("a body with a field twice is taken");
        };
        let text = bad_request_text(refused).await;
        // The second `full` ends at column 21; the object at column 29.
        assert!(
            text.contains("the field `full` is given twice at line 1 column 21"),
            "{text}"
        );
    }

    /// `promote?full=true` is refused, not taken as a plain promote.
    #[tokio::test]
    async fn a_command_with_a_query_string_is_refused() {
        let request = Request::post("/api/v1/routes/web/promote?full=true")
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let Err(refused) = read_json(request).await else {
            panic!("a command with a query string is taken");
        };
        let text = bad_request_text(refused).await;
        assert!(
            text.contains("a command takes no query string (`?full=true`)"),
            "{text}"
        );
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"secret", b"secrett"));
        assert!(constant_time_eq(b"", b""));
    }
}
