//! The request head: parsed in place by `httparse` from the connection's
//! buffer, then judged by weir's framing rules (RFC 9112), the same
//! decisions hyper's server and `forward::check_head` make on the other
//! path: a request is either framed without doubt or refused, and a
//! refused head closes its connection.

use super::field_is;
use crate::metrics::RejectReason;

/// Largest request head; a longer one is answered 431 (as on the hyper path).
pub const MAX_HEAD: usize = crate::server::MAX_REQUEST_HEAD;
/// Most header fields in a head; more is answered 431 (hyper's limit).
pub const MAX_HEADERS: usize = 100;

/// The HTTP/2 header list size (RFC 9113, section 6.5.2: each field's
/// bytes and 32 more) that lets through any head HTTP/1 lets through: at
/// most `head_bytes` bytes in [`MAX_HEADERS`] fields. HTTP/2 then still
/// takes heads of more, smaller fields than HTTP/1 would.
pub const fn h2_header_list_size(head_bytes: usize) -> u32 {
    let size = head_bytes + 32 * MAX_HEADERS;
    assert!(
        size <= u32::MAX as usize,
        "a header list size fits in 32 bits"
    );
    #[allow(clippy::cast_possible_truncation, reason = "checked just above")]
    let size = size as u32;
    size
}

/// Room for a head's header fields, left uninitialised: the parser writes
/// only the fields it finds, where an initialised array would be
/// [`MAX_HEADERS`] fields (3.2 KB) written for every head.
pub type HeaderSlots<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Empty [`HeaderSlots`], for one head.
pub const fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Largest `Content-Length` accepted, as in hyper (`u64::MAX - 2`).
pub const MAX_LENGTH: u64 = u64::MAX - 2;

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// The `chunked` transfer coding.
    Chunked,
    /// Everything until the connection closes (responses only).
    UntilClose,
}

/// A parsed and accepted request head, borrowing the connection's buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    /// The method token.
    pub method: &'b str,
    /// The request target as sent.
    pub target: &'b str,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The header fields, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
    /// Whether the client said it sends nothing after this request
    /// (`Connection: close`, or HTTP/1.0 without `keep-alive`), unlike a
    /// request that ends its connection for its framing alone.
    pub client_closes: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// The request asks to switch protocols (`Upgrade`) or to tunnel (`CONNECT`).
    pub wants_upgrade: bool,
    /// The `Host` field's value, if any.
    pub host: Option<&'b [u8]>,
    /// A `Connection` field names other fields (hop-by-hop for this hop).
    pub connection_names_fields: bool,
}

/// Why a request head was refused: the status, what is wrong (said in the
/// answer's body) and the metric reason, when weir counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 431 or 501.
    pub status: u16,
    /// What is wrong, for the client.
    pub what: &'static str,
    /// The `weir_rejected_requests_total` reason, for the checks the hyper
    /// path counts too.
    pub reason: Option<RejectReason>,
}

/// The outcome of parsing the front of a buffer.
#[derive(Debug)]
pub enum Parsed<T> {
    /// A whole head.
    Complete(T),
    /// The head has not ended yet.
    Partial,
}

const fn bad(what: &'static str) -> Refusal {
    Refusal {
        status: 400,
        what,
        reason: None,
    }
}

const TOO_LARGE: Refusal = Refusal {
    status: 431,
    what: "request header fields too large",
    reason: None,
};

// === impl Refusal ===

impl Refusal {
    fn rejected(reason: RejectReason) -> Refusal {
        Refusal {
            status: crate::forward::reason_status(reason).as_u16(),
            what: crate::forward::reason_text(reason),
            reason: Some(reason),
        }
    }
}

/// Parses a request head from the front of `buf` into `headers`.
///
/// # Errors
/// A [`Refusal`] for a head that is malformed, ambiguous or too large.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
) -> Result<Parsed<RequestHead<'h, 'b>>, Refusal> {
    let mut req = httparse::Request::new(&mut []);
    // No further than the limit: what lies past it cannot change the
    // answer, however the bytes arrived.
    let len = match req.parse_with_uninit_headers(&buf[..buf.len().min(MAX_HEAD)], headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                return Err(TOO_LARGE);
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE),
        Err(error) => return Err(bad(syntax_error(error))),
    };
    if len > MAX_HEAD {
        return Err(TOO_LARGE);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    // An origin-form target as hyper reads it (the `http` crate): the
    // fragment cut off, so both paths route and forward the same target,
    // and the characters it refuses refused here too.
    let target = match target.bytes().position(|b| b == b'#') {
        Some(end) if target.starts_with('/') => &target[..end],
        _ => target,
    };
    if target.starts_with('/') && !is_valid_origin_form(target.as_bytes()) {
        return Err(bad("invalid character in the request target"));
    }
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let fields = judge_fields(headers, minor, Side::Request)?;
    if fields.hosts > 1 {
        return Err(Refusal::rejected(RejectReason::DuplicateHost));
    }
    if fields.hosts == 0 && minor == 1 {
        return Err(Refusal::rejected(RejectReason::MissingHost));
    }
    // Only a target in another form than /path has an authority: read as
    // hyper reads it (`http://a?x@y/` has none with userinfo).
    let other_form = (!target.starts_with('/')).then(|| target.parse::<http::Uri>().ok());
    let authority_userinfo = other_form
        .as_ref()
        .and_then(|uri| uri.as_ref()?.authority())
        .is_some_and(|a| a.as_str().contains('@'));
    if authority_userinfo || fields.host.is_some_and(|h| h.contains(&b'@')) {
        return Err(Refusal::rejected(RejectReason::HostUserinfo));
    }
    if fields.host.is_some_and(|h| !super::is_valid_host(h)) {
        return Err(Refusal::rejected(RejectReason::InvalidHost));
    }
    // Checked in the same order as on the hyper path (`check_head`).
    if let Some(uri) = &other_form {
        if !is_other_form(method, target, uri.as_ref()) {
            return Err(Refusal::rejected(RejectReason::InvalidTarget));
        }
    }
    let path = match &other_form {
        Some(uri) => uri.as_ref().map_or(&b""[..], |uri| uri.path().as_bytes()),
        None => target.as_bytes(),
    };
    if super::has_dot_segment(path) {
        return Err(Refusal::rejected(RejectReason::DotSegment));
    }
    if fields.other_coding {
        return Err(Refusal::rejected(RejectReason::UnsupportedTransferCoding));
    }
    let framing = match (fields.chunked, fields.length) {
        (true, _) => Framing::Chunked,
        (false, None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    // RFC 9112 section 6.3: a request with both framings is answered and
    // the connection closed, whatever it asked for.
    let keep_alive =
        !fields.both_framings && !fields.close && (minor == 1 || fields.keep_alive_token);
    Ok(Parsed::Complete(RequestHead {
        method,
        target,
        minor,
        headers,
        len,
        framing,
        keep_alive,
        client_closes: fields.close || (minor == 0 && !fields.keep_alive_token),
        // An HTTP/1.0 client's expectation is ignored (RFC 9110 section
        // 10.1.1): it cannot take an interim answer.
        expect_continue: fields.expect_continue && minor == 1,
        wants_upgrade: method.eq_ignore_ascii_case("CONNECT")
            || (fields.upgrade_field && fields.upgrade_token),
        host: fields.host,
        connection_names_fields: fields.connection_names_fields,
    }))
}

/// Whether a target that does not start with `/`, parsed as `uri` (`None`
/// when it does not parse), is one of the other
/// forms of RFC 9112 section 3.2: absolute-form (`http://host/path`),
/// authority-form for CONNECT (`host:port`), or asterisk-form for OPTIONS
/// (`*`). Such requests go on to hyper, which reads them; anything else is
/// refused here with a reason rather than by hyper without one.
fn is_other_form(method: &str, target: &str, uri: Option<&http::Uri>) -> bool {
    if target == "*" {
        return method == "OPTIONS";
    }
    let Some(uri) = uri else {
        return false;
    };
    if method == "CONNECT" {
        return uri.scheme().is_none() && uri.authority().is_some();
    }
    uri.scheme().is_some() && uri.authority().is_some()
}

/// Whether an origin-form target (no fragment) holds only what the `http`
/// crate accepts: httparse lets through `<`, `>` and a backtick in the
/// path, and `"`, `<` and `>` in the query, which hyper answers 400.
fn is_valid_origin_form(target: &[u8]) -> bool {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &b""[..]),
    };
    !path.iter().any(|b| matches!(b, b'<' | b'>' | b'`'))
        && !query.iter().any(|b| matches!(b, b'"' | b'<' | b'>'))
}

/// What the syntax error of a head says to the client.
pub(crate) fn syntax_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => {
            "invalid header field name (whitespace before the colon, obs-fold or a bad character)"
        }
        httparse::Error::HeaderValue => "invalid header field value (a control character)",
        httparse::Error::NewLine => "invalid line ending (a bare CR)",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

/// Which message a head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Request,
    Response,
}

/// The fields [`judge_fields`] reads.
#[derive(Clone, Copy)]
enum JudgedField {
    TransferEncoding,
    ContentLength,
    Connection,
    Host,
    Upgrade,
    Expect,
}

/// What the header fields of a head say about framing and the connection.
#[derive(Debug, Default)]
pub(crate) struct Fields<'b> {
    pub(crate) length: Option<u64>,
    /// A `Transfer-Encoding` whose last coding is `chunked`.
    pub(crate) chunked: bool,
    /// A coding other than `chunked`, anywhere in the list, or a list that
    /// does not end in `chunked` (a request so framed is a 501; an answer
    /// is judged by [`super::is_chunked_alone`]).
    pub(crate) other_coding: bool,
    /// Any `Transfer-Encoding` at all.
    pub(crate) transfer_encoding: bool,
    pub(crate) both_framings: bool,
    pub(crate) close: bool,
    pub(crate) keep_alive_token: bool,
    pub(crate) upgrade_token: bool,
    pub(crate) upgrade_field: bool,
    pub(crate) expect_continue: bool,
    /// A `Connection` token other than `keep-alive`: it names a field
    /// that is hop-by-hop for this message (`close` and `upgrade` included,
    /// as fields of those names would be).
    pub(crate) connection_names_fields: bool,
    pub(crate) hosts: usize,
    pub(crate) host: Option<&'b [u8]>,
}

/// Reads the fields weir frames and routes by, refusing what two parsers
/// could read differently. In the order hyper reads them: a
/// `Content-Length` before a `Transfer-Encoding` must be valid, one after
/// it is ignored; the last `Transfer-Encoding` line must end in `chunked`.
pub(crate) fn judge_fields<'b>(
    headers: &[httparse::Header<'b>],
    minor: u8,
    side: Side,
) -> Result<Fields<'b>, Refusal> {
    let mut fields = Fields::default();
    let mut saw_length = false;
    for header in headers {
        let name = header.name.as_bytes();
        // Most fields are none of these: their length alone says so, and
        // their value is not looked at.
        let field = match name.len() {
            17 if field_is(name, b"transfer-encoding") => JudgedField::TransferEncoding,
            14 if field_is(name, b"content-length") => JudgedField::ContentLength,
            10 if field_is(name, b"connection") => JudgedField::Connection,
            4 if field_is(name, b"host") => JudgedField::Host,
            7 if field_is(name, b"upgrade") => JudgedField::Upgrade,
            6 if field_is(name, b"expect") => JudgedField::Expect,
            _ => continue,
        };
        let value = header.value.trim_ascii();
        match field {
            JudgedField::TransferEncoding => {
                if minor == 0 && side == Side::Request {
                    return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
                }
                fields.transfer_encoding = true;
                let mut codings = value
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|c| !c.is_empty())
                    .peekable();
                let mut last_chunked = false;
                while let Some(coding) = codings.next() {
                    let chunked = coding.eq_ignore_ascii_case(b"chunked");
                    if codings.peek().is_none() {
                        last_chunked = chunked;
                    } else if !chunked {
                        fields.other_coding = true;
                    }
                }
                if !last_chunked {
                    // A coding after `chunked`, or none: only a line ending
                    // in `chunked` frames a request.
                    fields.other_coding |= !value.is_empty();
                }
                fields.chunked = last_chunked;
                // An earlier line's codings count too.
                if fields.length.is_some() || saw_length {
                    fields.both_framings = true;
                }
            }
            JudgedField::ContentLength => {
                saw_length = true;
                if fields.transfer_encoding {
                    fields.both_framings = true;
                    continue;
                }
                // RFC 9110 section 8.6: an upstream's list of one value
                // repeated is that value, as hyper's client reads it;
                // hyper's server refuses any list in a request.
                let length = match side {
                    Side::Request => parse_length(value),
                    Side::Response => parse_length_list(value),
                };
                let Some(length) = length else {
                    return Err(bad("invalid Content-Length (not all digits, or a list)"));
                };
                // hyper's largest length; above it hyper answers 431 (and
                // a length that large breaks many an upstream's parser).
                if length > MAX_LENGTH {
                    return Err(Refusal {
                        status: 431,
                        what: "Content-Length too large",
                        reason: None,
                    });
                }
                match fields.length {
                    Some(prev) if prev != length => {
                        return Err(bad("differing Content-Length values"));
                    }
                    _ => fields.length = Some(length),
                }
            }
            JudgedField::Connection => {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        fields.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        fields.keep_alive_token = true;
                        continue;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        fields.upgrade_token = true;
                    } else if token.is_empty() {
                        continue;
                    }
                    fields.connection_names_fields = true;
                }
            }
            JudgedField::Host => {
                fields.hosts += 1;
                fields.host = Some(value);
            }
            JudgedField::Upgrade => fields.upgrade_field = true,
            JudgedField::Expect => {
                fields.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
        }
    }
    if fields.transfer_encoding && !fields.chunked {
        match side {
            // hyper refuses a request whose last coding is not chunked.
            Side::Request => {
                return Err(bad("Transfer-Encoding does not end in chunked"));
            }
            // A response so framed runs until the connection closes.
            Side::Response => fields.other_coding = true,
        }
    }
    if fields.chunked {
        fields.length = None;
    }
    Ok(fields)
}

/// A `Content-Length` value that is a list of one length repeated
/// (`5, 5`), or one length.
fn parse_length_list(value: &[u8]) -> Option<u64> {
    let mut lengths = value
        .split(|&b| b == b',')
        .map(|v| parse_length(v.trim_ascii()));
    let first = lengths.next()??;
    lengths.all(|n| n == Some(first)).then_some(first)
}

/// A `Content-Length` value: ASCII digits only, fitting in 64 bits.
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests;
