//! The wording of what control tells its users: admin API refusals, command
//! errors, reload outcomes and the status of routes without a rollout. Code
//! and tests name a message by its variant or constructor; the sentence is
//! written once, here. (The rollout state machine words its transitions in
//! `rollout::machine`, beside the rules they describe.)

use std::fmt;

use http::{Method, StatusCode};
use weir_config::Weight;

use crate::rollout::CommandRefused;

/// How the refusal of an unknown route begins, before the route's name: the
/// CLI tells it from other 404s (a wrong `--admin` path) by it.
pub const NO_ROUTE_NAMED: &str = "no route named ";

/// Why the admin API refused a request, with the status it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No endpoint at this path.
    NoEndpoint {
        /// The request path.
        path: String,
    },
    /// The path has a `.` or `..` segment (also percent-encoded).
    DotSegment {
        /// The request path.
        path: String,
        /// The segment as written.
        segment: String,
    },
    /// `/api/v1/routes/{name}/{verb}` with a verb that is no command.
    NoCommand {
        /// The verb as written.
        verb: String,
    },
    /// The route name in the path does not percent-decode to UTF-8.
    BadRouteName {
        /// The path segment as written.
        segment: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A known path with another method.
    MethodNotAllowed {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// No route of this name in the config in force.
    NoRoute {
        /// The name asked for.
        route: String,
    },
    /// No tokens are configured and the caller is not on loopback.
    LocalOnly,
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// More than one `Authorization` header: which one counts would be a
    /// guess (RFC 9110 allows one).
    SeveralAuthorizations,
    /// A bearer token that is neither the reader's nor the writer's.
    WrongToken,
    /// The reader token on a command that changes something.
    ReaderCannotWrite,
    /// The request head is over the limit.
    HeadTooLarge,
    /// `Transfer-Encoding` names a coding other than `chunked`.
    UnsupportedTransferCoding,
    /// The body is over the limit.
    BodyTooLarge,
    /// The body broke off or its framing is broken (a bad chunk).
    BodyBroken,
    /// The body did not come whole within the time allowed.
    BodyTimeout {
        /// How long it had.
        seconds: u64,
    },
    /// The body is JSON but not an object.
    BodyNotObject,
    /// The body is not JSON.
    BodyNotJson {
        /// The parser's message.
        error: String,
    },
    /// A command given a query string: its options go in its JSON body.
    QueryGiven {
        /// The query, as sent.
        query: String,
    },
    /// The body's fields do not fit the command.
    BadCommandBody {
        /// What is wrong with them.
        problem: String,
    },
    /// As many admin requests as allowed are being answered already.
    Busy {
        /// How many may be answered at once.
        limit: usize,
    },
}

/// A command that was refused or could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// No route of this name (404).
    NoRoute {
        /// The name asked for.
        route: String,
    },
    /// The command does not apply in the route's phase (409).
    Refused(CommandRefused),
    /// The new state could not be persisted; nothing changed (500).
    NotPersisted {
        /// The route.
        route: String,
        /// The store's error.
        error: String,
    },
}

/// The log line of a config whose `stateDir` changed: that takes effect
/// at the next restart.
pub const RESTART_NEEDED: &str = "stateDir changes take effect at the next restart";

/// The log line of a refused config.
pub const CONFIG_REFUSED: &str = "config refused; the running config keeps serving";

/// The status message of a route without a canary.
pub const NO_CANARY: &str = "no canary";

/// The status message of a route with a canary and no strategy.
pub fn fixed_split(weight: &Weight, canary_revision: &str) -> String {
    format!("fixed split: {weight} % to {canary_revision}")
}

/// The `error` of a refused reload, from the refusal of each problem.
pub fn config_refused(errors: &[String]) -> String {
    format!("config refused: {}", errors.join("; "))
}

/// Why a judgement over several replicas is inconclusive: counters came
/// from `counted` of `known` replicas, fewer than two thirds.
pub fn too_few_replicas(counted: usize, known: usize) -> String {
    let need = crate::cluster::peers::replicas_needed(known);
    format!("counters from {counted} of {known} replicas; need {need}")
}

/// Whether a judgement's `reason` is [`too_few_replicas`]'s.
pub fn is_too_few_replicas(reason: &str) -> bool {
    reason.starts_with("counters from ") && reason.contains(" replicas; need ")
}

/// The message of a state that could not be persisted.
pub fn not_persisted(route: &str, error: &dyn fmt::Display) -> String {
    format!("cannot persist the state of route {route}: {error}")
}

// === impl Refusal ===

impl Refusal {
    /// The HTTP status the refusal answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoEndpoint { .. }
            | Refusal::DotSegment { .. }
            | Refusal::NoCommand { .. }
            | Refusal::NoRoute { .. } => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::LocalOnly | Refusal::ReaderCannotWrite => StatusCode::FORBIDDEN,
            Refusal::MissingToken | Refusal::WrongToken => StatusCode::UNAUTHORIZED,
            Refusal::SeveralAuthorizations => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyBroken => StatusCode::BAD_REQUEST,
            Refusal::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::BodyNotObject
            | Refusal::BadRouteName { .. }
            | Refusal::BodyNotJson { .. }
            | Refusal::QueryGiven { .. }
            | Refusal::BadCommandBody { .. } => StatusCode::BAD_REQUEST,
            Refusal::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoEndpoint { path } => write!(f, "no admin endpoint {path}"),
            Refusal::DotSegment { path, segment } => write!(
                f,
                "no admin endpoint {path}: the path has a `{segment}` segment"
            ),
            Refusal::NoCommand { verb } => write!(
                f,
                "no command {verb}; use promote, abort, retry, pause or resume"
            ),
            Refusal::BadRouteName { segment, problem } => write!(
                f,
                "the route name `{segment}` in the path cannot be read: {problem}; \
                 encode a route name as UTF-8 with %XX escapes (shop%2Fcheckout)"
            ),
            Refusal::MethodNotAllowed { method, path } => {
                write!(f, "{method} is not allowed on {path}")
            }
            Refusal::NoRoute { route } => write!(f, "{NO_ROUTE_NAMED}{route}"),
            Refusal::LocalOnly => {
                f.write_str("without tokens the admin API answers only local callers")
            }
            Refusal::MissingToken => {
                f.write_str("missing bearer token (Authorization: Bearer TOKEN)")
            }
            Refusal::WrongToken => f.write_str("wrong bearer token"),
            Refusal::SeveralAuthorizations => f.write_str(
                "more than one Authorization header; send one (Authorization: Bearer TOKEN)",
            ),
            Refusal::ReaderCannotWrite => {
                f.write_str("the reader token cannot change anything; use the writer token")
            }
            Refusal::HeadTooLarge => {
                f.write_str("the request head is larger than 64 KiB, the most the admin API reads")
            }
            Refusal::UnsupportedTransferCoding => f.write_str(
                "Transfer-Encoding names a coding other than chunked; the admin API decodes only chunked",
            ),
            Refusal::BodyTooLarge => f.write_str("request body too large (limit 64 KiB)"),
            Refusal::BodyBroken => {
                f.write_str("request body broken: it ended early or a chunk is malformed")
            }
            Refusal::BodyTimeout { seconds } => {
                write!(f, "the request body did not come whole within {seconds} s")
            }
            Refusal::BodyNotObject => {
                f.write_str("the body must be a JSON object, e.g. {\"full\": true}")
            }
            Refusal::BodyNotJson { error } => write!(f, "the body is not valid JSON: {error}"),
            Refusal::QueryGiven { query } => write!(
                f,
                "a command takes no query string (`?{}`); give its options in a JSON body, \
                 e.g. {{\"full\": true}}",
                query.escape_debug()
            ),
            Refusal::BadCommandBody { problem } => f.write_str(problem),
            Refusal::Busy { limit } => write!(
                f,
                "the admin API is busy: {limit} requests are already being answered; try again shortly"
            ),
        }
    }
}

// === impl CommandError ===

impl CommandError {
    /// The HTTP status the error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            CommandError::NoRoute { .. } => StatusCode::NOT_FOUND,
            CommandError::Refused(_) => StatusCode::CONFLICT,
            CommandError::NotPersisted { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NoRoute { route } => Refusal::NoRoute {
                route: route.clone(),
            }
            .fmt(f),
            CommandError::Refused(refused) => f.write_str(refused.message()),
            CommandError::NotPersisted { route, error } => {
                f.write_str(&not_persisted(route, error))
            }
        }
    }
}

impl std::error::Error for CommandError {}

/// At most `limit` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
