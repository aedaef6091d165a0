//! weir's own HTTP/1.1-to-HTTP/1.1 forwarding path: the head parsed in
//! place into a reused per-connection buffer, the route and role decided on
//! borrowed bytes with the same routing snapshot and decision code as
//! [`crate::forward`], the upstream connection driven by the connection's
//! own task, bodies streamed by their framing. Anything it does not do is
//! handed, with the bytes already read, to hyper's server (see
//! [`connection`]).
//!
//! The codec ([`request_head`], [`response_head`], [`chunked`]) does no I/O.

pub mod chunked;
pub mod connection;
pub mod date;
pub mod prefixed;
pub mod request_head;
pub mod response_head;
pub mod spare_buffers;

/// Which code forwards HTTP/1.1 requests on a cleartext listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardingPath {
    /// hyper's HTTP/1 server and client, for every request.
    Hyper,
    /// weir's own path ([`connection`]), handing to hyper what it does not do.
    #[default]
    Own,
}

// === impl ForwardingPath ===

impl ForwardingPath {
    /// The path named `name` (`hyper` or `own`).
    ///
    /// # Errors
    /// The name, when it is neither.
    pub fn from_name(name: &str) -> Result<ForwardingPath, UnknownForwardingPath> {
        match name {
            "hyper" => Ok(ForwardingPath::Hyper),
            "own" => Ok(ForwardingPath::Own),
            other => Err(UnknownForwardingPath(other.to_owned())),
        }
    }
}

/// A forwarding path name that is neither `hyper` nor `own`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown forwarding path {0:?}: known paths are `hyper` and `own`")]
pub struct UnknownForwardingPath(pub String);
#[cfg(test)]
mod properties;
