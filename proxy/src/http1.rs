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
pub mod request_head;
pub mod response_head;
