//! Why the proxy could not serve a request from an upstream, and the one
//! place where each condition becomes a downstream response.

use http::{Response, StatusCode, header};

use crate::body::ProxyBody;
use crate::metrics::{ClientErrorKind, UpstreamErrorKind};
use crate::upstream::ConnectError;

/// A request that no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The role has no endpoint (a name that does not resolve, say).
    #[error("route {route}: no {backend} endpoint is available")]
    NoEndpoints {
        /// Route name.
        route: std::sync::Arc<str>,
        /// The role chosen (`stable`, `canary`), or a Gateway API backend's
        /// Service name.
        backend: std::sync::Arc<str>,
    },
    /// The upstream could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// No response head within the route's request timeout.
    #[error("no response within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    /// The upstream broke the exchange.
    #[error("upstream exchange failed: {0}")]
    Protocol(#[source] hyper::Error),
    /// The upstream switched protocols though the client did not ask to,
    /// or to a protocol the request did not offer.
    #[error("upstream answered 101 Switching Protocols to a protocol the request did not offer")]
    UnexpectedUpgrade,
    /// The upstream answered a status code outside 100 to 599.
    #[error("upstream answered status {0}, outside 100 to 599")]
    InvalidStatus(u16),
    /// The upstream response carried both `Content-Length` and
    /// `Transfer-Encoding`: its length is ambiguous (RFC 9112 section 6.3).
    #[error("upstream response has both Content-Length and Transfer-Encoding")]
    AmbiguousLength,
    /// The upstream's answer broke HTTP/1.1 framing (weir's own path).
    #[error("upstream answer is malformed: {0}")]
    BrokenAnswer(&'static str),
    /// The upstream connection failed or closed before a whole answer
    /// head (weir's own path).
    #[error("upstream connection failed: {0}")]
    UpstreamIo(#[source] std::io::Error),
    /// The client's request body broke its framing (weir's own path):
    /// what is wrong, and whether it merely ended early.
    #[error("request body from the client is broken: {what}")]
    ClientFraming {
        /// What is wrong.
        what: &'static str,
        /// The body ended before its declared length.
        incomplete: bool,
    },
    /// The request's deadline passed while weir waited for more of the
    /// client's body, the upstream having taken all that came: the
    /// client's stall, not the upstream's.
    #[error("request body from the client stalled: not all of it came within {0:?}")]
    ClientBodyTimeout(std::time::Duration),
    /// Nothing more of the client's body came for the route's idle timeout
    /// (the `Duration`) while weir waited for it (the upstream, if any yet,
    /// having taken all that came): the client's stall, as
    /// [`ProxyError::ClientBodyTimeout`].
    #[error("request body from the client stalled: nothing more of it came for {0:?}")]
    ClientBodyIdle(std::time::Duration),
    /// The client's request body could not be read: the client's fault, not
    /// the upstream's.
    #[error("request body from the client is broken: {0}")]
    ClientBody(#[source] hyper::Error),
    /// The client reset its connection inside its request body, found
    /// from the exchange with the upstream, which it made fail: the client
    /// has left.
    #[error("the client reset its connection inside its request body")]
    ClientReset,
}

// === impl ProxyError ===

impl ProxyError {
    /// Classifies a failed upstream exchange: a request body that could not
    /// be read from the client surfaces as hyper's "user body" error whose
    /// source is the downstream connection's own error.
    pub fn from_exchange(error: hyper::Error) -> ProxyError {
        let client_body = error.is_user()
            && std::error::Error::source(&error).is_some_and(|source| source.is::<hyper::Error>());
        if client_body {
            ProxyError::ClientBody(error)
        } else {
            ProxyError::Protocol(error)
        }
    }

    /// The client broke its upload as `how` says (framing, an early end,
    /// or a reset), found from the exchange with the upstream, which it
    /// made fail.
    pub fn upload_broken(how: ClientErrorKind) -> ProxyError {
        match how {
            ClientErrorKind::Abandoned => ProxyError::ClientReset,
            ClientErrorKind::IncompleteBody => ProxyError::ClientFraming {
                what: "the client closed inside it",
                incomplete: true,
            },
            ClientErrorKind::Framing | ClientErrorKind::BodyTimeout => ProxyError::ClientFraming {
                what: "a bad chunk, or more data than its declared length",
                incomplete: false,
            },
        }
    }

    /// The status sent downstream.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoEndpoints { .. } | ProxyError::Connect(ConnectError::NoSocket { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Connect(_)
            | ProxyError::Protocol(_)
            | ProxyError::UnexpectedUpgrade
            | ProxyError::InvalidStatus(_)
            | ProxyError::AmbiguousLength
            | ProxyError::BrokenAnswer(_)
            | ProxyError::UpstreamIo(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBody(_)
            | ProxyError::ClientFraming { .. }
            | ProxyError::ClientReset => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout(_) | ProxyError::ClientBodyIdle(_) => {
                StatusCode::REQUEST_TIMEOUT
            }
        }
    }

    /// The `kind` label of `weir_client_errors_total` when the client caused
    /// the failure; such a failure is never an upstream error.
    pub fn client_error_kind(&self) -> Option<ClientErrorKind> {
        match self {
            _ if self.client_reset() => Some(ClientErrorKind::Abandoned),
            ProxyError::ClientBody(error) => {
                let incomplete = ends_before_its_length(error);
                Some(if incomplete {
                    ClientErrorKind::IncompleteBody
                } else {
                    ClientErrorKind::Framing
                })
            }
            ProxyError::ClientFraming { incomplete, .. } => Some(if *incomplete {
                ClientErrorKind::IncompleteBody
            } else {
                ClientErrorKind::Framing
            }),
            ProxyError::ClientBodyTimeout(_) | ProxyError::ClientBodyIdle(_) => {
                Some(ClientErrorKind::BodyTimeout)
            }
            _ => None,
        }
    }

    /// Whether the client's body could not be read because the client
    /// reset its connection: it has left, and no answer can reach it.
    pub fn client_reset(&self) -> bool {
        match self {
            ProxyError::ClientReset => true,
            ProxyError::ClientBody(error) => is_reset_error(error),
            _ => false,
        }
    }

    /// Whether weir failed the request itself, out of sockets of its own:
    /// answered `503`, never an error of the role nor a request its
    /// analysis judges (a flood of clients must not abort a rollout).
    pub fn is_weirs_own(&self) -> bool {
        matches!(self, ProxyError::Connect(ConnectError::NoSocket { .. }))
    }

    /// The `kind` label of `weir_upstream_errors_total`, if the error counts there.
    pub fn metric_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            ProxyError::NoEndpoints { .. }
            | ProxyError::Connect(ConnectError::NoSocket { .. })
            | ProxyError::ClientBody(_)
            | ProxyError::ClientFraming { .. }
            | ProxyError::ClientReset
            | ProxyError::ClientBodyTimeout(_)
            | ProxyError::ClientBodyIdle(_) => None,
            // A failed TLS handshake, or no TLS client for the endpoint's
            // settings, is a connection not established: `connect`, one of
            // the three kinds the label has.
            ProxyError::Connect(_) => Some(UpstreamErrorKind::Connect),
            ProxyError::UpstreamTimeout(_) => Some(UpstreamErrorKind::Timeout),
            ProxyError::Protocol(_)
            | ProxyError::UnexpectedUpgrade
            | ProxyError::InvalidStatus(_)
            | ProxyError::AmbiguousLength
            | ProxyError::BrokenAnswer(_)
            | ProxyError::UpstreamIo(_) => Some(UpstreamErrorKind::Protocol),
        }
    }

    /// The downstream response. The body names the condition, not internal addresses.
    pub fn to_response(&self, route: &str, role: impl std::fmt::Display) -> Response<ProxyBody> {
        let status = self.status();
        local_response(
            status,
            format!("{} {}\n", status.as_u16(), self.describe(route, role)),
        )
    }

    /// What went wrong, for the client: the condition, the client's own
    /// mistake precisely, and the route and role; never an internal
    /// address. `upstream unreachable (route checkout, canary)`.
    pub fn describe(&self, route: &str, role: impl std::fmt::Display) -> String {
        let what = match self {
            ProxyError::NoEndpoints { .. } => "no upstream endpoint available",
            ProxyError::Connect(ConnectError::NoSocket { .. }) => {
                "weir is out of connections to upstreams"
            }
            ProxyError::Connect(ConnectError::Tls { .. } | ConnectError::TlsConfig { .. }) => {
                "upstream TLS handshake failed"
            }
            ProxyError::Connect(_) => "upstream unreachable",
            ProxyError::UpstreamTimeout(_) => "upstream timed out",
            ProxyError::Protocol(_)
            | ProxyError::UnexpectedUpgrade
            | ProxyError::InvalidStatus(_)
            | ProxyError::AmbiguousLength
            | ProxyError::BrokenAnswer(_)
            | ProxyError::UpstreamIo(_) => "upstream broke the exchange",
            ProxyError::ClientBodyTimeout(_) => {
                "request body not received whole within the request timeout"
            }
            ProxyError::ClientBodyIdle(_) => {
                "request body stalled for longer than the route's idle timeout"
            }
            ProxyError::ClientBody(_)
            | ProxyError::ClientFraming { .. }
            | ProxyError::ClientReset => match self.client_error_kind() {
                Some(ClientErrorKind::IncompleteBody) => {
                    "request body ended before its declared length"
                }
                Some(ClientErrorKind::Abandoned) => {
                    "the client reset its connection inside the request body"
                }
                _ => "request body framing is invalid",
            },
        };
        // The client's own mistake is named precisely (hyper's innermost
        // cause, e.g. "Invalid chunk size line"); an upstream's is not
        // shown, it may name internal addresses.
        let detail = match self {
            ProxyError::ClientBody(error) => error_chain(error)
                .last()
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default(),
            ProxyError::ClientFraming { what, .. } => format!(": {what}"),
            _ => String::new(),
        };
        format!("{what}{detail} (route {route}, {role})")
    }
}

/// `error` and its sources, outermost first.
fn error_chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

/// A short plain-text response made by weir.
pub fn local_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether a client body's error is its end before its declared length
/// (the client closed inside it), not broken framing.
pub(crate) fn ends_before_its_length(error: &(dyn std::error::Error + 'static)) -> bool {
    error_chain(error).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
    })
}

/// Whether `error` or one of its causes is the peer's reset of the
/// connection.
pub(crate) fn is_reset_error(error: &(dyn std::error::Error + 'static)) -> bool {
    error_chain(error).any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(is_reset))
}

/// Whether an I/O error means the peer reset or aborted the connection.
pub(crate) fn is_reset(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn a_failed_tls_handshake_is_a_connect_error_that_names_tls() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8443));
        let error = ProxyError::Connect(ConnectError::Tls {
            addr,
            server_name: "shop.test".to_owned(),
            source: std::io::Error::other("invalid peer certificate: UnknownIssuer"),
        });
        assert_eq!(error.metric_kind(), Some(UpstreamErrorKind::Connect));
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            error.describe("checkout", "canary"),
            "upstream TLS handshake failed (route checkout, canary)"
        );
    }
}
