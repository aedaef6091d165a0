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
pub mod client_socket;
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

/// The codings of `Transfer-Encoding` lines `values`, in order, trimmed;
/// an empty element of a list is an empty coding.
pub(crate) fn transfer_codings<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .into_iter()
        .flat_map(|value| value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Why an upstream's answer with a body under a transfer coding other
/// than `chunked` alone is a 502.
pub(crate) const OTHER_CODING: &str = "a transfer coding other than chunked alone";

/// Whether an answer of `status` to a request (a `HEAD` one when
/// `head_request`) has no body, whatever its fields say (RFC 9112
/// section 6.3).
pub(crate) fn answer_has_no_body(head_request: bool, status: u16) -> bool {
    head_request || status < 200 || status == 204 || status == 304
}

/// Whether an answer's `Transfer-Encoding` lines `values` name `chunked`
/// once and nothing else: the one coding weir decodes. Its codings are not
/// passed on (the header is hop-by-hop), so a body under any other, under
/// `chunked` twice, or framed by an empty last coding, would reach the
/// client still coded.
pub(crate) fn is_chunked_alone<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let mut codings = transfer_codings(values);
    codings
        .next()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// Whether the field name `name` is `lower`, ignoring case; `lower` is
/// lowercase letters and `-` only. A field name is a token (httparse
/// refuses any other), and no token byte but a letter's other case meets
/// such a byte by the case bit alone, so one OR per byte compares, with
/// no branch inside the name.
pub(crate) fn field_is(name: &[u8], lower: &[u8]) -> bool {
    debug_assert!(lower.iter().all(|&b| b.is_ascii_lowercase() || b == b'-'));
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .fold(0, |differ, (&n, &l)| differ | ((n | 0x20) ^ l))
            == 0
}

/// A forwarding path name that is neither `hyper` nor `own`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown forwarding path {0:?}: known paths are `hyper` and `own`")]
pub struct UnknownForwardingPath(pub String);
#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::field_is;

    #[test]
    fn a_field_name_matches_in_any_case_and_nothing_else_does() {
        assert!(field_is(b"Content-Length", b"content-length"));
        assert!(field_is(b"HOST", b"host"));
        assert!(field_is(b"x-Forwarded-FOR", b"x-forwarded-for"));
        assert!(!field_is(b"hosts", b"host"));
        assert!(!field_is(b"hist", b"host"));
        assert!(!field_is(b"content_length", b"content-length"));
        // Every token byte that is neither the letter nor its other case.
        let tokens =
            (0u8..128).filter(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b));
        for b in tokens {
            for l in b"az-" {
                let same = b == *l || b == l.to_ascii_uppercase();
                assert_eq!(field_is(&[b], &[*l]), same, "{b} against {l}");
            }
        }
    }
}
