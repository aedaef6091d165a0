use super::*;

/// The head's framing and keep-alive (`None` while partial), or the
/// refusal's status.
type Judged = Result<Option<(Framing, bool)>, u16>;

fn judge(input: &[u8]) -> Judged {
    let mut headers = header_slots();
    match parse(input, &mut headers) {
        Ok(Parsed::Complete(head)) => Ok(Some((head.framing, head.keep_alive))),
        Ok(Parsed::Partial) => Ok(None),
        Err(refusal) => Err(refusal.status),
    }
}

fn post(fields: &str) -> Vec<u8> {
    format!("POST /c HTTP/1.1\r\nHost: shop.test\r\n{fields}\r\n").into_bytes()
}

#[test]
fn framing_follows_rfc_9112_and_the_hyper_path() {
    use Framing::*;
    let cases: &[(&str, Judged)] = &[
        ("Content-Length: 5\r\n", Ok(Some((Length(5), true)))),
        ("Content-Length: 0\r\n", Ok(Some((Length(0), true)))),
        ("", Ok(Some((None, true)))),
        ("Transfer-Encoding: chunked\r\n", Ok(Some((Chunked, true)))),
        (
            "Transfer-Encoding:  CHUNKED \r\n",
            Ok(Some((Chunked, true))),
        ),
        (
            "Transfer-Encoding: \tchunked\r\n",
            Ok(Some((Chunked, true))),
        ),
        ("Transfer-Encoding: chunked,\r\n", Ok(Some((Chunked, true)))),
        (
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            Ok(Some((Chunked, false))),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
            Ok(Some((Chunked, false))),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: x\r\n",
            Ok(Some((Chunked, false))),
        ),
        (
            "Content-Length: x\r\nTransfer-Encoding: chunked\r\n",
            Err(400),
        ),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", Err(400)),
        (
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            Ok(Some((Length(5), true))),
        ),
        ("Content-Length: 5, 6\r\n", Err(400)),
        ("Content-Length: 5, 5\r\n", Err(400)),
        ("Content-Length: +5\r\n", Err(400)),
        ("Content-Length: 5 5\r\n", Err(400)),
        ("Content-Length: 0x5\r\n", Err(400)),
        ("Content-Length: -1\r\n", Err(400)),
        ("Content-Length: 5a\r\n", Err(400)),
        ("Content-Length: \r\n", Err(400)),
        ("Content-Length: 184467440737095516160\r\n", Err(400)),
        ("Transfer-Encoding: gzip\r\n", Err(400)),
        ("Transfer-Encoding: chunked, gzip\r\n", Err(400)),
        ("Transfer-Encoding: chunked, identity\r\n", Err(400)),
        ("Transfer-Encoding: xchunked\r\n", Err(400)),
        ("Transfer-Encoding: chunked;q=1\r\n", Err(400)),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            Err(400),
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            Ok(Some((Chunked, true))),
        ),
        ("Transfer-Encoding: gzip, chunked\r\n", Err(501)),
        ("Transfer-Encoding: identity, chunked\r\n", Err(501)),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            Err(501),
        ),
        ("X-Folded: a\r\n b\r\n", Err(400)),
        ("Content-Length: 5\r\n 6\r\n", Err(400)),
        ("X-Nul: a\0b\r\n", Err(400)),
        ("X-Cr: a\rb\r\n", Err(400)),
        ("Content-Length : 5\r\n", Err(400)),
        ("Transfer-Encoding\t: chunked\r\n", Err(400)),
        ("Host: other.test\r\n", Err(400)),
        ("Connection: close\r\n", Ok(Some((None, false)))),
        ("Connection: keep-alive, Close\r\n", Ok(Some((None, false)))),
    ];
    for (fields, want) in cases {
        assert_eq!(&judge(&post(fields)), want, "{fields:?}");
    }
}

#[test]
fn request_lines_versions_and_hosts() {
    use Framing::None;
    for (input, want) in [
        (
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            Ok(Some((None, true))),
        ),
        (b"GET / HTTP/1.1\nHost: a\n\n", Ok(Some((None, true)))),
        (b"GET / HTTP/1.1\rHost: a\r\r\n", Err(400)),
        (b"GET / HTTP/1.0\r\n\r\n", Ok(Some((None, false)))),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            Ok(Some((None, true))),
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Err(400),
        ),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(400)),
        (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        // The `@` is in the query: no userinfo, as hyper reads it.
        (
            b"GET http://a?x@y/ HTTP/1.1\r\nHost: a\r\n\r\n",
            Ok(Some((None, true))),
        ),
        (
            b"GET /a@b HTTP/1.1\r\nHost: a\r\n\r\n",
            Ok(Some((None, true))),
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\n", Ok(Option::None)),
        (b"GET / HTT", Ok(Option::None)),
        // The other forms of a target, each where it belongs.
        (
            b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
            Ok(Some((None, true))),
        ),
        (
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            Ok(Some((None, true))),
        ),
        (
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            Ok(Some((None, true))),
        ),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET raw/a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET ?a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        // A Host that is not one.
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", Err(400)),
        // Empty: a target without an authority (RFC 9112 section 3.2).
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Ok(Some((None, true)))),
        (
            b"GET / HTTP/1.0\r\nHost: [::1]:80\r\n\r\n",
            Ok(Some((None, false))),
        ),
    ] {
        assert_eq!(judge(input), want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn oversized_heads_are_431() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(MAX_HEAD));
    assert_eq!(judge(long_target.as_bytes()), Err(431));
    let unfinished = format!("GET /{}", "a".repeat(MAX_HEAD));
    assert_eq!(judge(unfinished.as_bytes()), Err(431));
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X-A: b\r\n".repeat(MAX_HEADERS)
    );
    assert_eq!(judge(many.as_bytes()), Err(431));
}

/// The fuzz targets' property at the limit: a head still open there was a
/// 431 when the connection had read exactly the limit, and a 400 when a bad
/// byte past the limit came in the same read.
#[test]
fn an_oversized_head_is_431_however_it_arrives() {
    let mut input = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    input.resize(MAX_HEAD + 10, b'a');
    input.extend_from_slice(b"\0\r\n\r\n");
    assert_eq!(judge(&input[..MAX_HEAD]), Err(431));
    assert_eq!(judge(&input), Err(431));
}

#[test]
fn expect_and_upgrade_are_noticed() {
    let mut headers = header_slots();
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
    let Ok(Parsed::Complete(head)) = parse(input, &mut headers) else {
        panic!("not parsed");
    };
    assert!(head.expect_continue && !head.wants_upgrade);
    assert_eq!(head.len, input.len());
    let mut headers = header_slots();
    let input = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let Ok(Parsed::Complete(head)) = parse(input, &mut headers) else {
        panic!("not parsed");
    };
    assert!(head.wants_upgrade);
}

#[test]
fn only_a_connection_token_other_than_keep_alive_names_fields() {
    let names = |fields: &str| {
        let input = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let mut headers = header_slots();
        match parse(input.as_bytes(), &mut headers) {
            Ok(Parsed::Complete(head)) => head.connection_names_fields,
            _ => panic!("{fields:?} refused"),
        }
    };
    assert!(!names(""));
    assert!(!names("Connection: Keep-Alive \r\n"));
    assert!(!names("Connection: ,keep-alive,\r\n"));
    assert!(names("connection: keep-alive, x-secret\r\n"));
    assert!(names("Connection: close\r\n"));
    assert!(names("Connection: keep-alive\r\nConnection: x-b\r\n"));
}

#[test]
fn client_closes_only_when_it_says_so() {
    let cases: &[(&str, bool, bool)] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, false),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
            true,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false, true),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            true,
            false,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
            true,
        ),
        // Closed for its framing alone: the client may have sent more.
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            false,
        ),
    ];
    for (input, keep_alive, client_closes) in cases {
        let mut headers = header_slots();
        let Ok(Parsed::Complete(head)) = parse(input.as_bytes(), &mut headers) else {
            panic!("{input:?} did not parse");
        };
        assert_eq!(
            (head.keep_alive, head.client_closes),
            (*keep_alive, *client_closes),
            "{input:?}"
        );
    }
}
