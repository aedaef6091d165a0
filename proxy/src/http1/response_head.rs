//! The upstream's response head: parsed in place by `httparse`, with the
//! framing rules of RFC 9112 section 6.3 and the checks the hyper path
//! makes (`forward::forward`): a status outside 100 to 599, both framing
//! headers, a `Content-Length` that is not one number, or any syntax fault
//! is a broken answer (502), and its connection is never reused.

use super::request_head::{Framing, HeaderSlots, Side, judge_fields, syntax_error};
use super::{OTHER_CODING, answer_has_no_body, field_is, is_chunked_alone};

/// Largest response head accepted from an upstream.
pub const MAX_HEAD: usize = 64 * 1024;

/// Why a head over [`MAX_HEAD`] is refused, on both paths.
pub const TOO_LARGE: &str = "response head too large";

/// A parsed and accepted response head, borrowing the upstream buffer.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    /// The status code, 100 to 599.
    pub status: u16,
    /// The reason phrase as sent.
    pub reason: &'b str,
    /// The header fields, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, final empty line included.
    pub len: usize,
    /// How the body is delimited, given the request's method.
    pub framing: Framing,
    /// The `Content-Length`, one number (a list of one value repeated, as
    /// RFC 9110 section 8.6 allows, is that value).
    pub length: Option<u64>,
    /// Whether the upstream connection may carry another request after
    /// this response's body (HTTP/1.1 without `Connection: close`, and a
    /// length-delimited body).
    pub reusable: bool,
    /// A `Connection` field names other fields (hop-by-hop for this hop).
    pub connection_names_fields: bool,
}

/// Why an upstream response head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BrokenHead(pub &'static str);

/// Parses a response head from the front of `buf`; `Ok(None)` when it has
/// not ended yet. `head_request`: the request was `HEAD`, so no body
/// follows whatever the head says.
///
/// # Errors
/// [`BrokenHead`] for a malformed, ambiguous or oversized head.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut HeaderSlots<'b>,
    head_request: bool,
) -> Result<Option<ResponseHead<'h, 'b>>, BrokenHead> {
    let mut response = httparse::Response::new(&mut []);
    // No further than the limit: what lies past it cannot change the
    // answer, however the bytes arrived.
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        &buf[..buf.len().min(MAX_HEAD)],
        headers,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                return Err(BrokenHead(TOO_LARGE));
            }
            return Ok(None);
        }
        Err(error) => return Err(BrokenHead(syntax_error(error))),
    };
    let (Some(minor), Some(status)) = (response.version, response.code) else {
        return Err(BrokenHead("malformed status line"));
    };
    if !(100..=599).contains(&status) {
        return Err(BrokenHead("status outside 100 to 599"));
    }
    let headers: &'h [httparse::Header<'b>] = response.headers;
    let fields =
        judge_fields(headers, minor, Side::Response).map_err(|refusal| BrokenHead(refusal.what))?;
    if fields.both_framings {
        return Err(BrokenHead("both Content-Length and Transfer-Encoding"));
    }
    let no_body = answer_has_no_body(head_request, status);
    // A body under a coding weir does not decode (see `is_chunked_alone`);
    // an answer without a body may name any.
    if fields.transfer_encoding
        && !no_body
        && !is_chunked_alone(
            headers
                .iter()
                .filter(|h| field_is(h.name.as_bytes(), b"transfer-encoding"))
                .map(|h| h.value),
        )
    {
        return Err(BrokenHead(OTHER_CODING));
    }
    let framing = if no_body {
        Framing::None
    } else if fields.chunked {
        Framing::Chunked
    } else {
        match fields.length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    // A 204 or 304 that announces a body anyway may send one: what follows
    // on the connection is in doubt.
    let stray_body = (status == 204 || status == 304)
        && (fields.transfer_encoding || fields.length.is_some_and(|n| n > 0));
    let reusable = minor == 1
        && !fields.close
        && framing != Framing::UntilClose
        && !stray_body
        && status != 101;
    Ok(Some(ResponseHead {
        status,
        reason: response.reason.unwrap_or(""),
        headers,
        len,
        framing,
        length: fields.length,
        reusable,
        connection_names_fields: fields.connection_names_fields,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(input: &[u8], head_request: bool) -> Result<Option<(u16, Framing, bool)>, BrokenHead> {
        let mut headers = crate::http1::request_head::header_slots();
        parse(input, &mut headers, head_request)
            .map(|head| head.map(|h| (h.status, h.framing, h.reusable)))
    }

    #[test]
    fn response_framing_follows_rfc_9112_section_6_3() {
        use Framing::*;
        for (input, head_request, want) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"[..],
                false,
                Some((200, Length(5), true)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Some((200, None, true)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                Some((200, Chunked, true)),
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                false,
                Some((200, UntilClose, false)),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
                false,
                Some((200, Length(5), false)),
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Some((200, Length(5), false)),
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Some((204, None, true)),
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
                false,
                Some((204, None, false)),
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false,
                Some((304, None, false)),
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\n",
                false,
                Some((100, None, true)),
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Le", false, Option::None),
        ] {
            assert_eq!(
                judge(input, head_request),
                Ok(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn an_answer_under_a_coding_other_than_chunked_is_broken() {
        for input in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n",
        ] {
            assert_eq!(
                judge(input, false),
                Err(BrokenHead(OTHER_CODING)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Without a body, the codings frame nothing (a 304 that names a
        // framing may still send a body: its connection is not reused).
        for (input, head_request, status, reusable) in [
            (
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
                true,
                200,
                true,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false,
                304,
                false,
            ),
        ] {
            assert_eq!(
                judge(input, head_request),
                Ok(Some((status, Framing::None, reusable))),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// The fuzz targets' property at the limit: the error named for a head
    /// still open there depended on how much the last read brought.
    #[test]
    fn an_oversized_head_is_too_large_however_it_arrives() {
        let mut input = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        input.resize(MAX_HEAD + 10, b'a');
        input.extend_from_slice(b"\0\r\n\r\n");
        let too_large = Err(BrokenHead(TOO_LARGE));
        assert_eq!(judge(&input[..MAX_HEAD], false), too_large);
        assert_eq!(judge(&input, false), too_large);
    }

    #[test]
    fn broken_heads_are_refused() {
        for input in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            // Above hyper's largest length.
            b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
            b"HTTP/1.1 two hundred OK\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\n\r\n",
            b"HTTP/1.1 600 Odd\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n",
        ] {
            assert!(
                judge(input, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
