//! Why the proxy could not serve a request from an upstream, and the one
//! place where each condition becomes a downstream response.

use http::{Response, StatusCode, header};

use crate::Role;
use crate::body::ProxyBody;
use crate::metrics::UpstreamErrorKind;
use crate::upstream::ConnectError;

/// A request that no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The role has no endpoint (a name that does not resolve, say).
    #[error("route {route}: no {role} endpoint is available")]
    NoEndpoints {
        /// Route name.
        route: std::sync::Arc<str>,
        /// The role chosen.
        role: Role,
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
    /// The upstream switched protocols though the client did not ask to.
    #[error("upstream answered 101 Switching Protocols to a request without an upgrade")]
    UnexpectedUpgrade,
}

// === impl ProxyError ===

impl ProxyError {
    /// The status sent downstream.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::Protocol(_) | ProxyError::UnexpectedUpgrade => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `kind` label of `weir_upstream_errors_total`, if the error counts there.
    pub fn metric_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            ProxyError::NoEndpoints { .. } => None,
            ProxyError::Connect(_) => Some(UpstreamErrorKind::Connect),
            ProxyError::UpstreamTimeout(_) => Some(UpstreamErrorKind::Timeout),
            ProxyError::Protocol(_) | ProxyError::UnexpectedUpgrade => {
                Some(UpstreamErrorKind::Protocol)
            }
        }
    }

    /// The downstream response. The body names the condition, not internal addresses.
    pub fn to_response(&self, route: &str, role: Role) -> Response<ProxyBody> {
        let status = self.status();
        let what = match self {
            ProxyError::NoEndpoints { .. } => "no upstream endpoint available",
            ProxyError::Connect(_) => "upstream unreachable",
            ProxyError::UpstreamTimeout(_) => "upstream timed out",
            ProxyError::Protocol(_) | ProxyError::UnexpectedUpgrade => {
                "upstream broke the exchange"
            }
        };
        local_response(
            status,
            format!("{} {what} (route {route}, {role})\n", status.as_u16()),
        )
    }
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
