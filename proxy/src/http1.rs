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
pub mod socket_calls;
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

/// Whether the path of a request target has a `.` or `..` segment; shared
/// with the config's check of `pathPrefix`, so a prefix no request could
/// reach is refused there.
pub(crate) use weir_config::path::has_dot_segment;

/// Whether a `Host` value is `host [":" port]` as RFC 9110 section 7.2 and
/// RFC 3986 section 3.2 write it, userinfo aside (refused apart): empty
/// (RFC 9112 section 3.2: a target without an authority), an IP literal
/// in brackets (IPv6, with a zone as RFC 6874 writes it, or IPvFuture), or
/// a name of unreserved characters, sub-delims and percent-escapes with no
/// empty label (one trailing dot allowed; RFC 3986 would allow `a..b`, no
/// DNS name has one), then an optional port of at most 65535. Anything
/// else (spaces, `/`, `?`, `<`, a second colon) is not a host: routing by
/// it or passing it upstream in `Host` and `X-Forwarded-Host` would hand
/// on what the client made up.
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        if !is_valid_ip_literal(&rest[..end]) {
            return false;
        }
        return match &rest[end + 1..] {
            [] => true,
            [b':', port @ ..] => is_valid_port(port),
            _ => false,
        };
    }
    // A name in one pass over its bytes (every request has one): each
    // byte a name byte, a dot ending a label that is not empty, or an
    // escape; then the port.
    let mut label = 0;
    let mut i = 0;
    while let Some(&byte) = value.get(i) {
        if REG_NAME_BYTE[usize::from(byte)] {
            label += 1;
            i += 1;
        } else if byte == b'.' {
            if label == 0 {
                return false;
            }
            label = 0;
            i += 1;
        } else if byte == b'%' {
            if !value
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            {
                return false;
            }
            label += 1;
            i += 3;
        } else if byte == b':' {
            return i > 0 && is_valid_port(&value[i + 1..]);
        } else {
            return false;
        }
    }
    true
}

/// The bytes of a `reg-name` other than the dot and the escape's `%`:
/// RFC 3986 `unreserved` and `sub-delims`, one lookup per byte.
const REG_NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b != b'.' && (is_unreserved(b) || is_sub_delim(b));
        byte += 1;
    }
    table
};

/// Whether `port` (after a host's colon) is empty or digits of at most
/// 65535, leading zeros allowed.
fn is_valid_port(port: &[u8]) -> bool {
    let mut n = 0u32;
    for &digit in port {
        if !digit.is_ascii_digit() {
            return false;
        }
        n = n * 10 + u32::from(digit - b'0');
        if n > u32::from(u16::MAX) {
            return false;
        }
    }
    true
}

/// Whether the inside of `[...]` is an IPv6 address with an optional zone
/// (`%25` then unreserved characters or escapes, RFC 6874), or an
/// IPvFuture literal (`v` HEXDIG+ `.` then unreserved, sub-delims or `:`).
fn is_valid_ip_literal(literal: &[u8]) -> bool {
    if let Some(future) = literal
        .strip_prefix(b"v")
        .or_else(|| literal.strip_prefix(b"V"))
    {
        let Some(dot) = future.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, rest) = (&future[..dot], &future[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !rest.is_empty()
            && rest
                .iter()
                .all(|&b| b == b':' || is_unreserved(b) || is_sub_delim(b));
    }
    let (address, zone) = match literal.windows(3).position(|w| w == b"%25") {
        Some(at) => (&literal[..at], Some(&literal[at + 3..])),
        None => (literal, None),
    };
    let address = std::str::from_utf8(address).unwrap_or_default();
    address.parse::<std::net::Ipv6Addr>().is_ok()
        && zone.is_none_or(|zone| !zone.is_empty() && is_escaped_text(zone, is_unreserved))
}

/// Whether `text` is made of bytes `allowed` accepts and `%XX` escapes.
fn is_escaped_text(text: &[u8], allowed: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            let escaped = text.get(i + 1..i + 3);
            if !escaped.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !allowed(text[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// RFC 3986 `unreserved`.
const fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `sub-delims`.
const fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
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
    use super::{
        field_is, has_dot_segment, is_escaped_text, is_sub_delim, is_unreserved, is_valid_host,
        is_valid_ip_literal,
    };

    /// `is_valid_host` as first written, from the grammar's parts: the
    /// one-pass check must agree with it on every input.
    fn host_by_the_grammar(value: &[u8]) -> bool {
        if value.is_empty() {
            return true;
        }
        let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            if !is_valid_ip_literal(&rest[..end]) {
                return false;
            }
            match &rest[end + 1..] {
                [] => return true,
                [b':', port @ ..] => (None, port),
                _ => return false,
            }
        } else {
            match value.iter().position(|&b| b == b':') {
                Some(colon) => (Some(&value[..colon]), &value[colon + 1..]),
                None => (Some(value), &b""[..]),
            }
        };
        let port_ok = port.iter().all(u8::is_ascii_digit)
            && port
                .iter()
                .try_fold(0u32, |n, d| {
                    let n = n * 10 + u32::from(d - b'0');
                    (n <= u32::from(u16::MAX)).then_some(n)
                })
                .is_some();
        let reg_name = |name: &[u8]| {
            let name = name.strip_suffix(b".").unwrap_or(name);
            !name.is_empty()
                && !name.split(|&b| b == b'.').any(<[u8]>::is_empty)
                && is_escaped_text(name, |b| is_unreserved(b) || is_sub_delim(b))
        };
        port_ok && host.is_none_or(reg_name)
    }

    #[test]
    fn the_one_pass_host_check_agrees_with_the_grammar() {
        let seed = std::env::var("HTTP1_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        println!("HTTP1_SEED={seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        // Bytes that matter to the grammar, weighted towards them, and now
        // and then any byte.
        let alphabet = b"aZ09-._~!$&'()*+,;=%:[]/?# \tF5e\x80";
        for _ in 0..50_000 {
            let len = rng.usize(0..12);
            let value: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.u8(..) < 8 {
                        rng.u8(..)
                    } else {
                        alphabet[rng.usize(..alphabet.len())]
                    }
                })
                .collect();
            assert_eq!(
                is_valid_host(&value),
                host_by_the_grammar(&value),
                "{:?}",
                String::from_utf8_lossy(&value)
            );
        }
        for port in ["", "0", "65535", "65536", "000065535", "99999", "1a"] {
            let value = format!("a.b:{port}");
            assert_eq!(
                is_valid_host(value.as_bytes()),
                host_by_the_grammar(value.as_bytes()),
                "{value}"
            );
        }
    }

    #[test]
    fn dot_segments_are_found_however_they_are_written() {
        for path in [
            "/a/../b",
            "/a/./b",
            "/..",
            "/a/..",
            "/a/%2e%2E/b",
            "/a/.%2e",
            "/app/..%2Fadmin",
            "/a/%2e%2e%2fb",
            "/app/..;/admin",
            "/app/.;x=1/admin",
            "/a\\..\\b",
            "/a%5c..%5Cb",
            "/a/../b?x=1",
        ] {
            assert!(has_dot_segment(path.as_bytes()), "{path}");
        }
        for path in [
            "/",
            "/a/b",
            "/a/..b/...",
            "/a/.well-known/x",
            "/a/b?next=/../c",
            "/a/%2e%2e%2e",
            "/a/b.c/d..e",
            "/a/%2fb",
            "/a/;/b",
        ] {
            assert!(!has_dot_segment(path.as_bytes()), "{path}");
        }
    }

    #[test]
    fn a_host_is_a_name_or_an_address_with_an_optional_port() {
        for host in [
            "shop.test",
            "shop.test.",
            "SHOP.Test:8080",
            "a:",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::7]",
            "xn--bcher-kva.example",
            "under_score.test",
            "a%41.test",
            "a,b",
            "localhost",
            "",
            "[fe80::1%25eth0]",
            "[fe80::1%25eth0]:80",
            "[v1.fe80::a+en1]",
            "a:0080",
            "a:000000080",
        ] {
            assert!(is_valid_host(host.as_bytes()), "{host:?} is a host");
        }
        for host in [
            ".",
            "[fe80::1%eth0]",
            "[fe80::1%25]",
            "[v1.]",
            "[vx.a]",
            "a b",
            "a/b",
            "a?b#c",
            "[::1",
            "[::1]x",
            "[nothost]",
            "a:b:c",
            "a:99999",
            "a:65536",
            "a:123456",
            "x:80:80",
            "<script>",
            "a\\b",
            ".example.org",
            "a..b",
            "a.b..",
            "a%4",
            "a%zz",
            "a\tb",
            "caf\u{e9}.test",
        ] {
            assert!(!is_valid_host(host.as_bytes()), "{host:?} is not a host");
        }
    }

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
