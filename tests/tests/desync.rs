//! The HTTP/1 desync suite: raw client bytes on one side, a recording raw
//! upstream on the other ([`RecordingUpstream`]), and a table of what must
//! happen. For every case one client request becomes at most one upstream
//! request with the same body boundaries, or the client gets a 4xx and its
//! connection is closed with nothing more reaching the upstream. Broken
//! upstream responses give 502 (or the documented behaviour) and their
//! connection is never reused.
//!
//! Every test runs on both forwarding paths ([`ForwardingPath`]: weir's
//! own and hyper's), as `TEST::own` and `TEST::hyper`.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir_e2e::{
    ClosedPort, ForwardingPath, Framing, RecordingUpstream, Reply, Route, UpstreamRequest, Weir,
    WeirConfig, within,
};

const LIMIT: Duration = Duration::from_secs(10);

/// What must become of one case's client bytes.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Forwarded as exactly these upstream requests (their body lengths),
    /// each answered 200 in order, then the connection closes.
    Forwarded(&'static [usize]),
    /// Answered with this status and the connection closed; only the
    /// first `reached` requests (the ones before the bad one) reach the
    /// upstream.
    Refused { status: u16, reached: usize },
    /// A request whose trailer section a reader that ends lines at a bare
    /// LF sees end earlier: refused (400, the upstream saw no whole
    /// request, at most one cut inside its body), or forwarded alone with
    /// its body (`len` bytes) and answered 200; either way the connection
    /// then closes and nothing after the request reaches the upstream.
    AloneOrRefused { len: usize },
}

/// One row of the table.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    outcome: Outcome,
}

const fn refused(reached: usize) -> Outcome {
    Outcome::Refused {
        status: 400,
        reached,
    }
}

/// `POST /c` with these extra header lines (each ending in CRLF), then
/// `Connection: close`, then `body` as is.
fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /c HTTP/1.1\r\nHost: shop.test\r\n{headers}Connection: close\r\n\r\n{body}")
        .into_bytes()
}

/// `GET path` on a keep-alive connection.
fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n\r\n")
}

const HELLO_CHUNKED: &str = "5\r\nhello\r\n0\r\n\r\n";

/// `POST /c` to `host` with the chunked `body`, then a `POST /b` whose
/// body is a `GET /smuggled`: what a reader that ends the body earlier or
/// later than its last CRLF CRLF takes for a request of its own.
fn hiding_a_request(host: &str, body: &str) -> String {
    let hidden = get("/smuggled");
    format!(
        "POST /c HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n{body}\
         POST /b HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{hidden}",
        hidden.len()
    )
}

fn case(name: &'static str, request: impl Into<Vec<u8>>, outcome: Outcome) -> Case {
    Case {
        name,
        request: request.into(),
        outcome,
    }
}

/// The request-side table (RFC 9112 sections 2.2, 5, 6, 7 and 9).
fn request_cases() -> Vec<Case> {
    let te = |value: &str| post(&format!("Transfer-Encoding: {value}\r\n"), HELLO_CHUNKED);
    let cl = |value: &str| post(&format!("Content-Length: {value}\r\n"), "hello");
    let big_target = format!(
        "GET /{} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: shop.test\r\n{}Connection: close\r\n\r\n",
        "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
            .repeat(1100)
    );
    vec![
        // Baselines.
        case("content-length", cl("5"), Outcome::Forwarded(&[5])),
        case("chunked", te("chunked"), Outcome::Forwarded(&[5])),
        case("no body", get_close("/"), Outcome::Forwarded(&[0])),
        // Transfer-Encoding with Content-Length: chunked wins, and the
        // connection closes after the answer (section 6.3), so a request
        // hidden behind it is never read.
        case(
            "transfer-encoding with content-length",
            format!(
                "POST /c HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 3\r\n\
                 Transfer-Encoding: chunked\r\n\r\n{HELLO_CHUNKED}{}",
                get("/smuggled")
            ),
            Outcome::Forwarded(&[5]),
        ),
        case(
            "content-length before transfer-encoding",
            format!(
                "POST /c HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\
                 Content-Length: 40\r\n\r\n{HELLO_CHUNKED}{}",
                get("/smuggled")
            ),
            Outcome::Forwarded(&[5]),
        ),
        // Content-Length.
        case(
            "differing duplicate content-length",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            refused(0),
        ),
        case("differing content-length list", cl("5, 6"), refused(0)),
        case(
            "equal duplicate content-length",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            Outcome::Forwarded(&[5]),
        ),
        // Allowed by section 6.3, but hyper refuses every list.
        case("equal content-length list", cl("5, 5"), refused(0)),
        case("content-length +5", cl("+5"), refused(0)),
        case("content-length 5 5", cl("5 5"), refused(0)),
        case("content-length 0x5", cl("0x5"), refused(0)),
        case("content-length -1", cl("-1"), refused(0)),
        case("content-length 5a", cl("5a"), refused(0)),
        case("empty content-length", cl(""), refused(0)),
        case(
            "content-length overflowing u64",
            cl("184467440737095516160"),
            refused(0),
        ),
        // hyper's largest length is u64::MAX - 2; above it, 431.
        case(
            "content-length u64::MAX",
            cl("18446744073709551615"),
            Outcome::Refused {
                status: 431,
                reached: 0,
            },
        ),
        case(
            "content-length u64::MAX - 1",
            cl("18446744073709551614"),
            Outcome::Refused {
                status: 431,
                reached: 0,
            },
        ),
        // Transfer-Encoding.
        case("transfer-encoding gzip", te("gzip"), refused(0)),
        case(
            "transfer-encoding chunked, gzip",
            te("chunked, gzip"),
            refused(0),
        ),
        case(
            "transfer-encoding chunked, identity",
            te("chunked, identity"),
            refused(0),
        ),
        case(
            "transfer-encoding Chunked",
            te("Chunked"),
            Outcome::Forwarded(&[5]),
        ),
        case(
            "transfer-encoding CHUNKED",
            te("CHUNKED"),
            Outcome::Forwarded(&[5]),
        ),
        case(
            "transfer-encoding leading space",
            te(" chunked"),
            Outcome::Forwarded(&[5]),
        ),
        case(
            "transfer-encoding trailing space",
            te("chunked "),
            Outcome::Forwarded(&[5]),
        ),
        case(
            "transfer-encoding leading tab",
            te("\tchunked"),
            Outcome::Forwarded(&[5]),
        ),
        case("transfer-encoding xchunked", te("xchunked"), refused(0)),
        case(
            "transfer-encoding chunked with a parameter",
            te("chunked;q=1"),
            refused(0),
        ),
        case(
            "two transfer-encoding lines, chunked then gzip",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                HELLO_CHUNKED,
            ),
            refused(0),
        ),
        case(
            "two transfer-encoding lines, chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            Outcome::Forwarded(&[5]),
        ),
        // Chunked bodies.
        case(
            "chunk size overflowing 64 bits",
            post(
                "Transfer-Encoding: chunked\r\n",
                "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            refused(0),
        ),
        case(
            "chunk size with a sign",
            post("Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n"),
            refused(0),
        ),
        case(
            "chunk extensions",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5;name=value\r\nhello\r\n3 ; a=\"q;x\"\r\nabc\r\n0;last\r\n\r\n",
            ),
            Outcome::Forwarded(&[8]),
        ),
        case(
            "chunked trailer fields",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
            ),
            Outcome::Forwarded(&[5]),
        ),
        case(
            "bare LF in chunk lines",
            post("Transfer-Encoding: chunked\r\n", "5\nhello\n0\n\n"),
            refused(0),
        ),
        // A reader that took the bare LF for a line's end, as RFC 9112
        // section 2.2 allows, sees the trailer section end there and the
        // next request begin; one that waits for a CRLF CRLF swallows that
        // request's head as trailers and reads its body as a request.
        case(
            "bare LF ending a trailer field",
            hiding_a_request("shop.test", "5\r\nhello\r\n0\r\nX-T: 1\n\r\n"),
            Outcome::AloneOrRefused { len: 5 },
        ),
        case(
            "bare LF after a trailer field's CRLF",
            hiding_a_request("shop.test", "5\r\nhello\r\n0\r\nX-T: 1\r\n\n"),
            Outcome::AloneOrRefused { len: 5 },
        ),
        // A trailer section of no field, ended by a bare LF: hyper hands
        // it over as empty trailers, which its path must not take for a
        // plain end.
        case(
            "bare LF ending an empty trailer section",
            hiding_a_request("shop.test", "5\r\nhello\r\n0\r\n\n"),
            Outcome::AloneOrRefused { len: 5 },
        ),
        // The head.
        case(
            "bare LF line endings in the head",
            "POST /c HTTP/1.1\nHost: shop.test\nContent-Length: 5\nConnection: close\n\nhello",
            Outcome::Forwarded(&[5]),
        ),
        case(
            "bare CR line endings in the head",
            "POST /c HTTP/1.1\rHost: shop.test\rContent-Length: 5\r\r\nhello",
            refused(0),
        ),
        case(
            "obs-fold",
            post("X-Folded: a\r\n b\r\nContent-Length: 5\r\n", "hello"),
            refused(0),
        ),
        case(
            "obs-fold continuing content-length",
            post("Content-Length: 5\r\n 6\r\n", "hello!"),
            refused(0),
        ),
        case(
            "NUL in a header value",
            post("X-Nul: a\0b\r\nContent-Length: 5\r\n", "hello"),
            refused(0),
        ),
        case(
            "CR in a header value",
            post("X-Cr: a\rb\r\nContent-Length: 5\r\n", "hello"),
            refused(0),
        ),
        case(
            "whitespace before the colon",
            post("Content-Length : 5\r\n", "hello"),
            refused(0),
        ),
        case(
            "tab before the colon of transfer-encoding",
            post("Transfer-Encoding\t: chunked\r\n", HELLO_CHUNKED),
            refused(0),
        ),
        case(
            "oversized request line",
            big_target,
            Outcome::Refused {
                status: 431,
                reached: 0,
            },
        ),
        case(
            "oversized head",
            big_head,
            Outcome::Refused {
                status: 431,
                reached: 0,
            },
        ),
        // Pipelining and connection management.
        case(
            "pipelined requests",
            format!(
                "{}POST /p2 HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\r\nhello\
                 POST /p3 HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 3\r\nabc\r\n0\r\n\r\n{}",
                get("/p1"),
                get_close("/p4")
            ),
            Outcome::Forwarded(&[0, 5, 3, 0]),
        ),
        case(
            "pipelined request after a refused one",
            format!(
                "{}POST /c HTTP/1.1\r\nHost: shop.test\r\nContent-Length: +5\r\n\r\nhello{}",
                get("/first"),
                get_close("/smuggled")
            ),
            refused(1),
        ),
        case(
            "connection close stops reading",
            format!("{}{}", get_close("/only"), get_close("/never")),
            Outcome::Forwarded(&[0]),
        ),
        case(
            "HTTP/1.0 without keep-alive closes",
            format!(
                "GET /a HTTP/1.0\r\nHost: shop.test\r\n\r\n{}",
                get_close("/never")
            ),
            Outcome::Forwarded(&[0]),
        ),
        case(
            "HTTP/1.0 with keep-alive stays open",
            "GET /a HTTP/1.0\r\nHost: shop.test\r\nConnection: keep-alive\r\n\r\n\
             GET /b HTTP/1.0\r\nHost: shop.test\r\n\r\n",
            Outcome::Forwarded(&[0, 0]),
        ),
        case(
            "HTTP/1.0 with a chunked body",
            "POST /c HTTP/1.0\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            refused(0),
        ),
        case(
            "HTTP/2.0 on an HTTP/1 connection",
            "GET / HTTP/2.0\r\nHost: shop.test\r\n\r\n",
            refused(0),
        ),
        case(
            "unknown HTTP/1.x minor",
            "GET / HTTP/1.2\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
            refused(0),
        ),
    ]
}

fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
}

/// One response read off a client connection.
#[derive(Debug, Clone)]
struct ClientResponse {
    status: u16,
    body: Vec<u8>,
}

/// Writes `request` to weir on a new connection and reads until weir
/// closes it (or [`LIMIT`] passes). Returns the bytes and whether the
/// connection was closed by weir.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let _ = tokio::time::timeout_at(deadline, stream.write_all(request)).await;
    read_to_close(&mut stream, deadline).await
}

async fn read_to_close(stream: &mut TcpStream, deadline: tokio::time::Instant) -> (Vec<u8>, bool) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return (raw, true),
            Err(_) => return (raw, false),
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Splits what weir sent into responses; `head_requests` lists the
/// indexes of responses to HEAD requests (no body). Panics on framing it
/// cannot follow.
fn split_responses(raw: &[u8], head_requests: &[usize]) -> Vec<ClientResponse> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let rest = &raw[at..];
        let head_end = find(rest, b"\r\n\r\n")
            .unwrap_or_else(|| panic!("incomplete head: {:?}", String::from_utf8_lossy(rest)));
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body_start = head_end + 4;
        let no_body =
            head_requests.contains(&out.len()) || status < 200 || status == 204 || status == 304;
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            // hyper passes on a list of one repeated value as it came.
            .map(|(_, v)| {
                v.split(',')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<usize>()
                    .unwrap()
            });
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let (body, used) = if no_body {
            (Vec::new(), body_start)
        } else if chunked {
            let end = find(&rest[body_start..], b"0\r\n\r\n").unwrap() + 5;
            (
                rest[body_start..body_start + end].to_vec(),
                body_start + end,
            )
        } else if let Some(n) = length {
            assert!(rest.len() >= body_start + n, "short body in {head:?}");
            (rest[body_start..body_start + n].to_vec(), body_start + n)
        } else {
            (rest[body_start..].to_vec(), rest.len())
        };
        at += used;
        if status >= 200 {
            out.push(ClientResponse { status, body });
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An upstream that answers every request 200 with body `NAME TARGET`.
async fn echoing_target(name: &'static str) -> RecordingUpstream {
    RecordingUpstream::start(move |r: &UpstreamRequest| Reply::ok(&format!("{name} {}", r.target)))
        .await
}

/// Runs one case on a fresh connection and checks its outcome; returns a
/// description of what went wrong, if anything.
async fn run_case(weir: &Weir, upstream: &RecordingUpstream, case: &Case) -> Result<(), String> {
    let before = upstream.requests().len();
    let violations_before = upstream.violations();
    // Every case ends its connection (a close, an HTTP/1.0 request or a
    // refusal), so a request written after it must never be read.
    let mut request = case.request.clone();
    request.extend_from_slice(get("/smuggled").as_bytes());
    let (raw, closed) = exchange(weir.addrs.http, &request).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let fail = |what: String| Err(format!("{}: {what}\nclient got: {text:?}", case.name));
    if !closed {
        return fail("weir did not close the connection".to_owned());
    }
    let responses = split_responses(&raw, &[]);
    let reached: Vec<UpstreamRequest> = upstream.requests().split_off(before);
    if reached.iter().any(|r| r.target == "/smuggled") {
        return fail(format!(
            "a request after the case reached the upstream: {reached:?}"
        ));
    }
    let violations: Vec<(usize, String)> = upstream
        .violations()
        .into_iter()
        .filter(|v| !violations_before.contains(v))
        .collect();
    let cut_inside =
        |v: &[(usize, String)]| v.len() == 1 && v[0].1.starts_with("closed inside a request");
    let allowed = matches!(case.outcome, Outcome::AloneOrRefused { .. }) && cut_inside(&violations);
    if !violations.is_empty() && !allowed {
        return fail(format!("the upstream saw ambiguous bytes: {violations:?}"));
    }
    match case.outcome {
        Outcome::Forwarded(bodies) => {
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            if statuses != vec![200; bodies.len()] {
                return fail(format!("statuses {statuses:?}"));
            }
            let lengths: Vec<usize> = reached.iter().map(|r| r.body.len()).collect();
            if lengths != bodies {
                return fail(format!(
                    "upstream body lengths {lengths:?}, want {bodies:?}"
                ));
            }
            for (response, request) in responses.iter().zip(&reached) {
                let want = format!("stable {}", request.target);
                if response.body != want.as_bytes() {
                    return fail(format!(
                        "response out of order: {:?} for {}",
                        String::from_utf8_lossy(&response.body),
                        request.target
                    ));
                }
            }
        }
        Outcome::AloneOrRefused { len } => {
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            let lengths: Vec<usize> = reached.iter().map(|r| r.body.len()).collect();
            let refused = statuses == [400] && lengths.is_empty();
            let alone = statuses == [200] && lengths == [len];
            if !refused && !alone {
                return fail(format!(
                    "statuses {statuses:?}, upstream body lengths {lengths:?}: want 400 and \
                     none, or 200 and one of {len}"
                ));
            }
        }
        Outcome::Refused { status, reached: n } => {
            let Some(last) = responses.last() else {
                return fail("no response".to_owned());
            };
            if responses.len() != n + 1 || last.status != status {
                let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
                return fail(format!(
                    "statuses {statuses:?}, want {n} x 200 then {status}"
                ));
            }
            if reached.len() != n {
                return fail(format!(
                    "{} requests reached the upstream: {reached:?}",
                    reached.len()
                ));
            }
        }
    }
    Ok(())
}

async fn client_framing_table(path: ForwardingPath) {
    let upstream = echoing_target("stable").await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut failures = Vec::new();
    for case in request_cases() {
        if let Err(why) = run_case(&weir, &upstream, &case).await {
            failures.push(why);
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );

    // Whatever came before, the next client is served.
    let (raw, _) = exchange(weir.addrs.http, get_close("/next").as_bytes()).await;
    let responses = split_responses(&raw, &[]);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(responses[0].body, b"stable /next");
}

async fn forwarded_framing_is_normalised(path: ForwardingPath) {
    let upstream = echoing_target("stable").await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    for (name, request, framing) in [
        (
            "obfuscated chunked",
            post("Transfer-Encoding:  \tCHUNKED \r\n", HELLO_CHUNKED),
            Framing::Chunked,
        ),
        (
            "equal duplicate lengths",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            Framing::Length(5),
        ),
        (
            "chunk extensions",
            post(
                "Transfer-Encoding: chunked\r\n",
                "3;x=y\r\nhel\r\n2;z\r\nlo\r\n0\r\n\r\n",
            ),
            Framing::Chunked,
        ),
        (
            "both framings",
            post(
                "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
                HELLO_CHUNKED,
            ),
            Framing::Chunked,
        ),
    ] {
        let before = upstream.requests().len();
        let (raw, _) = exchange(weir.addrs.http, &request).await;
        let responses = split_responses(&raw, &[]);
        assert_eq!(
            responses.len(),
            1,
            "{name}: {:?}",
            String::from_utf8_lossy(&raw)
        );
        let reached = upstream.requests().split_off(before);
        assert_eq!(reached.len(), 1, "{name}: {reached:?}");
        assert_eq!(reached[0].framing, framing, "{name}: {reached:?}");
        assert_eq!(reached[0].body, b"hello", "{name}");
        assert!(
            reached[0].header_values("content-length").len() <= 1,
            "{name}: {reached:?}"
        );
        assert!(
            reached[0].header_values("transfer-encoding").len() <= 1,
            "{name}: {reached:?}"
        );
    }
    assert_eq!(upstream.violations(), vec![]);
}

/// What must become of one broken (or unusual) upstream response.
#[derive(Debug, Clone, Copy)]
enum Answered {
    /// 502 from weir, and the upstream connection is never used again.
    BadGateway,
    /// This status and body reach the client.
    Served(u16, &'static [u8]),
    /// The head reached the client before the upstream broke off: the body
    /// is cut short and the client connection closed, so the client sees
    /// the failure; the upstream connection is never used again.
    CutShort,
    /// Whatever the status, the bytes after the fault never reach the
    /// client and the upstream connection is never used again: weir's own
    /// path answers 502; hyper's reads the trailer section to a CRLF CRLF,
    /// swallowing the stray answer, and weir closes a connection whose
    /// answer had trailers.
    NotReused,
}

/// The response-side table: (name, method, raw upstream reply, outcome).
fn response_cases() -> Vec<(&'static str, &'static str, Reply, Answered)> {
    vec![
        (
            "both framing headers",
            "GET",
            Reply::keep(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
            Answered::BadGateway,
        ),
        (
            "two differing lengths",
            "GET",
            Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\nhello"),
            Answered::BadGateway,
        ),
        // RFC 9110 section 8.6 lets a recipient take a list of one value
        // repeated; hyper's client does.
        (
            "equal content-length list",
            "GET",
            Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello"),
            Answered::Served(200, b"hello"),
        ),
        (
            "differing content-length list",
            "GET",
            Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 5, 3\r\n\r\nhello"),
            Answered::BadGateway,
        ),
        (
            "content-length not all digits",
            "GET",
            Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
            Answered::BadGateway,
        ),
        // weir decodes `chunked` alone and does not pass the header on: a
        // body under another coding would reach the client without it.
        (
            "a transfer coding before chunked",
            "GET",
            Reply::keep(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
            Answered::BadGateway,
        ),
        (
            "a transfer coding alone, to the close",
            "GET",
            Reply::close("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
            Answered::BadGateway,
        ),
        (
            "chunked twice",
            "GET",
            Reply::keep(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
            Answered::BadGateway,
        ),
        (
            "chunked then an empty coding",
            "GET",
            Reply::close(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            ),
            Answered::BadGateway,
        ),
        // Without a body the codings frame nothing.
        (
            "a transfer coding on the answer to HEAD",
            "HEAD",
            Reply::keep("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Answered::Served(200, b""),
        ),
        (
            "garbage status line",
            "GET",
            Reply::keep("HTTP/1.1 two hundred OK\r\nContent-Length: 5\r\n\r\nhello"),
            Answered::BadGateway,
        ),
        (
            "not HTTP at all",
            "GET",
            Reply::keep("SSH-2.0-OpenSSH_9.6\r\n\r\n"),
            Answered::BadGateway,
        ),
        (
            "chunk size overflowing 64 bits",
            "GET",
            Reply::keep(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            Answered::BadGateway,
        ),
        (
            "NUL in a header value",
            "GET",
            Reply::keep("HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 5\r\n\r\nhello"),
            Answered::BadGateway,
        ),
        (
            "close before the head ends",
            "GET",
            Reply::close("HTTP/1.1 200 OK\r\nContent-Le"),
            Answered::BadGateway,
        ),
        (
            "close mid-body",
            "GET",
            Reply::close("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Answered::CutShort,
        ),
        (
            "bare LF ending a trailer field, an answer after it",
            "GET",
            Reply::keep(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\n\r\n\
                 HTTP/1.1 299 Smuggled\r\nContent-Length: 0\r\n\r\n",
            ),
            Answered::NotReused,
        ),
        (
            "close mid-chunk",
            "GET",
            Reply::close("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nabc"),
            Answered::CutShort,
        ),
        (
            "100 then final",
            "GET",
            Reply::keep(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            ),
            Answered::Served(200, b"final"),
        ),
        (
            "103 early hints then final",
            "GET",
            Reply::keep(
                "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
            ),
            Answered::Served(200, b"final"),
        ),
        (
            "HEAD answered with a length and no body",
            "HEAD",
            Reply::keep("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Answered::Served(200, b""),
        ),
        (
            "204 with a body",
            "GET",
            Reply::keep("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"),
            Answered::Served(204, b""),
        ),
        (
            "304 with a body",
            "GET",
            Reply::keep("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello"),
            Answered::Served(304, b""),
        ),
        // Both paths read an answer's head up to 64 KiB, as a request's.
        (
            "a head of 60 KiB",
            "GET",
            Reply::keep(format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 5\r\n\r\nhello",
                "v".repeat(60 * 1024)
            )),
            Answered::Served(200, b"hello"),
        ),
        (
            "a head over 64 KiB",
            "GET",
            Reply::keep(format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 5\r\n\r\nhello",
                "v".repeat(70 * 1024)
            )),
            Answered::BadGateway,
        ),
    ]
}

async fn upstream_framing_table(path: ForwardingPath) {
    let scripted = std::sync::Arc::new(std::sync::Mutex::new(Reply::ok("unset")));
    let upstream = RecordingUpstream::start({
        let scripted = std::sync::Arc::clone(&scripted);
        move |r: &UpstreamRequest| {
            if r.target == "/bad" {
                scripted.lock().unwrap().clone()
            } else {
                Reply::ok(&format!("stable {}", r.target))
            }
        }
    })
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut failures = Vec::new();
    for (name, method, reply, answered) in response_cases() {
        *scripted.lock().unwrap() = reply;
        let before = upstream.requests().len();
        let request =
            format!("{method} /bad HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
        let (raw, closed) = exchange(weir.addrs.http, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let head_end = find(&raw, b"\r\n\r\n").map_or(raw.len(), |i| i + 4);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = &raw[head_end..];
        let ok = closed
            && match answered {
                Answered::BadGateway => status == 502,
                Answered::Served(want, want_body) => {
                    status == want
                        && split_responses(&raw, if method == "HEAD" { &[0] } else { &[] })
                            .first()
                            .is_some_and(|r| r.body == want_body)
                }
                Answered::CutShort => {
                    status == 200 && {
                        let length = declared_length(&text);
                        length.is_none_or(|n| body.len() < n)
                    }
                }
                Answered::NotReused => !text.contains("299"),
            };
        if !ok {
            failures.push(format!("{name}: want {answered:?}, client got {text:?}"));
            continue;
        }
        // The next request is served, and after a broken answer never on
        // the broken connection.
        let (raw, _) = exchange(weir.addrs.http, get_close("/next").as_bytes()).await;
        let responses = split_responses(&raw, &[]);
        if responses.len() != 1 || responses[0].body != b"stable /next" {
            failures.push(format!(
                "{name}: next request got {:?}",
                String::from_utf8_lossy(&raw)
            ));
            continue;
        }
        let reached = upstream.requests().split_off(before);
        if reached.len() != 2 {
            failures.push(format!("{name}: upstream saw {reached:?}"));
            continue;
        }
        if !matches!(answered, Answered::Served(..))
            && reached[0].connection == reached[1].connection
        {
            failures.push(format!(
                "{name}: the upstream connection was reused after a broken answer"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(upstream.violations(), vec![]);
}

/// The Content-Length in a response head, if any (a chunked body counts as
/// unbounded: `None`).
fn declared_length(text: &str) -> Option<usize> {
    text.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

async fn pipelined_requests_across_routes_and_roles_are_answered_in_order(path: ForwardingPath) {
    let stable = echoing_target("stable").await;
    let canary = echoing_target("canary").await;
    let other = echoing_target("other").await;
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[stable.addr])
                .canary(&[canary.addr], 0.0)
                .canary_by_header("x-canary", "always"),
            Route::new("api", &[other.addr]).path_prefix("/api"),
        ]))
        .await;

    // Each request names where it must go; bodies of both framings in
    // between, a HEAD whose answer has no body, and the last one closes.
    let plan: [(&str, &str, &str); 6] = [
        ("GET", "/one", "stable"),
        ("POST", "/two", "canary"),
        ("GET", "/api/three", "other"),
        ("HEAD", "/four", "canary"),
        ("POST", "/api/five", "other"),
        ("GET", "/six", "stable"),
    ];
    let mut request = String::new();
    for (i, (method, path, role)) in plan.iter().enumerate() {
        request.push_str(&format!("{method} {path} HTTP/1.1\r\nHost: shop.test\r\n"));
        if *role == "canary" {
            request.push_str("x-canary: always\r\n");
        }
        if i == plan.len() - 1 {
            request.push_str("Connection: close\r\n");
        }
        let chunked = i % 2 == 1;
        match (*method, chunked) {
            ("POST", false) => request.push_str("Content-Length: 5\r\n\r\nhello"),
            ("POST", _) => request.push_str(&format!(
                "Transfer-Encoding: chunked\r\n\r\n{HELLO_CHUNKED}"
            )),
            _ => request.push_str("\r\n"),
        }
    }
    let (raw, closed) = exchange(weir.addrs.http, request.as_bytes()).await;
    assert!(closed, "{:?}", String::from_utf8_lossy(&raw));
    let responses = split_responses(&raw, &[3]);
    let got: Vec<(u16, String)> = responses
        .iter()
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
        .collect();
    let want: Vec<(u16, String)> = plan
        .iter()
        .map(|(method, path, role)| {
            let body = if *method == "HEAD" {
                String::new()
            } else {
                format!("{role} {path}")
            };
            (200, body)
        })
        .collect();
    assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&raw));
    for (upstream, n) in [(&stable, 2), (&canary, 2), (&other, 2)] {
        let reached = upstream.requests();
        assert_eq!(reached.len(), n, "{reached:?}");
        for r in &reached {
            let want = if r.method == "POST" { 5 } else { 0 };
            assert_eq!(r.body.len(), want, "{r:?}");
        }
        assert_eq!(upstream.violations(), vec![]);
    }
}

async fn expect_100_continue_gets_the_body_forwarded_once(path: ForwardingPath) {
    let upstream = echoing_target("stable").await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut stream = TcpStream::connect(weir.addrs.http).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    // The client waits for the interim answer before sending the body.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while find(&seen, b"\r\n\r\n").is_none() {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("no 100 Continue in time")
            .unwrap();
        assert_ne!(
            n,
            0,
            "closed before 100 Continue: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );
    stream.write_all(b"hello").await.unwrap();
    let (rest, closed) = read_to_close(&mut stream, deadline).await;
    assert!(closed);
    seen.extend_from_slice(&rest);
    let responses = split_responses(&seen, &[]);
    assert_eq!(responses.len(), 1, "{:?}", String::from_utf8_lossy(&seen));
    assert_eq!(responses[0].status, 200);
    assert_eq!(responses[0].body, b"stable /upload");
    let reached = upstream.requests();
    assert_eq!(reached.len(), 1, "{reached:?}");
    assert_eq!(reached[0].body, b"hello");
    // weir answered the expectation itself: the upstream is not asked it
    // again (and would answer a 100 Continue nobody waits for).
    assert_eq!(reached[0].header_values("expect"), Vec::<&str>::new());
    assert_eq!(upstream.violations(), vec![]);
}

/// A transfer coding weir does not implement, before the final `chunked`,
/// would otherwise be dropped from the forwarded request while its coded
/// bytes are passed on as if unencoded. RFC 9112 section 6.1 asks for 501
/// (Not Implemented); nothing reaches the upstream.
async fn transfer_codings_other_than_chunked_are_refused_with_501(path: ForwardingPath) {
    let upstream = echoing_target("stable").await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let mut failures = Vec::new();
    for (name, headers) in [
        ("gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "identity, chunked",
            "Transfer-Encoding: identity, chunked\r\n",
        ),
        (
            "gzip then chunked on two lines",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ),
    ] {
        let case = case(
            name,
            post(headers, HELLO_CHUNKED),
            Outcome::Refused {
                status: 501,
                reached: 0,
            },
        );
        if let Err(why) = run_case(&weir, &upstream, &case).await {
            failures.push(why);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

async fn weirs_own_answers_to_head_have_no_body(path: ForwardingPath) {
    let stable = echoing_target("stable").await;
    let refused = weir_e2e::ClosedPort::bind();
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[stable.addr]).hosts(&["shop.test"]),
            Route::new("down", &[refused.addr])
                .hosts(&["shop.test"])
                .path_prefix("/down"),
        ]))
        .await;
    // Pipelined: weir's own 404 and 502 to HEAD requests, then a GET. A
    // body after either head would be read as the next answer's status line.
    let request = "HEAD /x HTTP/1.1\r\nHost: nowhere.test\r\n\r\n\
        HEAD /down/y HTTP/1.1\r\nHost: shop.test\r\n\r\n\
        GET /z HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    let (raw, closed) = exchange(weir.addrs.http, request.as_bytes()).await;
    assert!(closed, "{:?}", String::from_utf8_lossy(&raw));
    let responses = split_responses(&raw, &[0, 1]);
    let got: Vec<(u16, String)> = responses
        .iter()
        .map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
        .collect();
    assert_eq!(
        got,
        [
            (404, String::new()),
            (502, String::new()),
            (200, "stable /z".to_owned())
        ],
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // Each head still says how long a GET's body would be.
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    for head in text.split("\r\n\r\n").take(2) {
        assert!(
            head.contains("content-length: ") && !head.contains("content-length: 0"),
            "{head:?}"
        );
    }
}

/// A request neither path can read gets its status with a body that says
/// what is wrong (on the hyper path hyper answers it, with an empty body
/// that weir fills), and the connection closes.
async fn unreadable_requests_are_answered_with_a_reason(path: ForwardingPath) {
    let upstream = echoing_target("stable").await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let many_fields: String = (0..120).map(|i| format!("X-F{i}: v\r\n")).collect();
    for (request, status) in [
        (
            "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Bad: a\x01b\r\n\r\n".to_owned(),
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Bad : v\r\n\r\n".to_owned(),
            400,
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: shop.test\r\n{many_fields}\r\n"),
            431,
        ),
        // Far over 64 KiB, in one write.
        (
            format!(
                "GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: {}\r\n\r\n",
                "a".repeat(110_000)
            ),
            431,
        ),
    ] {
        let (raw, closed) = exchange(weir.addrs.http, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        assert!(closed, "{request:?}: {text:?}");
        let responses = split_responses(&raw, &[]);
        assert_eq!(responses.len(), 1, "{request:?}: {text:?}");
        assert_eq!(responses[0].status, status, "{request:?}: {text:?}");
        let body = String::from_utf8_lossy(&responses[0].body);
        assert!(
            body.starts_with(&status.to_string()) && body.len() > 20,
            "{request:?}: a body that says what is wrong: {text:?}"
        );
    }
    assert_eq!(upstream.requests(), vec![], "nothing reached the upstream");
}

/// An upstream's `Content-Length` written as a list of one value (RFC 9110
/// section 8.6 lets a recipient take it as that value) reaches the client
/// as one number, never as the list: with a body, without one (`0`), and
/// on the answer to HEAD.
async fn a_repeated_content_length_is_passed_on_as_one_number(path: ForwardingPath) {
    let scripted = std::sync::Arc::new(std::sync::Mutex::new(Reply::ok("unset")));
    let upstream = RecordingUpstream::start({
        let scripted = std::sync::Arc::clone(&scripted);
        move |_: &UpstreamRequest| scripted.lock().unwrap().clone()
    })
    .await;
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await;
    let cases = [
        (
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
            "2",
        ),
        (
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 0, 0\r\n\r\n",
            "0",
        ),
        (
            "HEAD",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            "5",
        ),
        (
            "HEAD",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "5",
        ),
    ];
    for (method, reply, want) in cases {
        *scripted.lock().unwrap() = Reply::keep(reply);
        let request =
            format!("{method} /x HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n");
        let (raw, _) = exchange(weir.addrs.http, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let lengths: Vec<&str> = text
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then_some(value.trim())
            })
            .collect();
        assert_eq!(
            lengths,
            [want],
            "{}: {method} answered {reply:?}; the client got {text:?}",
            path.name()
        );
    }
}

/// A chunked body weir does not read (its request answered `404`, no
/// route for its host): nothing after it is read, however a trailer
/// section in it would end for a reader that ends lines at a bare LF.
async fn nothing_after_an_unread_chunked_body_is_read(path: ForwardingPath) {
    let upstream = echoing_target("stable").await;
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("web", &[upstream.addr]).hosts(&["shop.test"])
        ]))
        .await;
    let request = hiding_a_request("elsewhere.test", "0\r\nX-T: 1\n\r\n");
    let (raw, closed) = exchange(weir.addrs.http, request.as_bytes()).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(closed, "{}: not closed: {text}", path.name());
    let statuses: Vec<u16> = split_responses(&raw, &[])
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(
        statuses == [404] || statuses == [400],
        "{}: {statuses:?} {text}",
        path.name()
    );
    assert_eq!(upstream.requests(), vec![], "{}", path.name());
}

/// An upstream that answers a chunked upload before its end (here at once
/// after the head): weir cannot yet know how the body ends, and an upload
/// still going when answered ends its connection, so nothing the client
/// sends after the body, here a request hidden behind a bare-LF trailer,
/// reaches the upstream.
async fn nothing_after_a_chunked_body_answered_early_is_read(path: ForwardingPath) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recording = std::sync::Arc::clone(&seen);
    let accepting = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let recording = std::sync::Arc::clone(&recording);
            tokio::spawn(async move {
                let mut answered = false;
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    let whole_head = {
                        let mut all = recording.lock().unwrap();
                        all.extend_from_slice(&chunk[..n]);
                        all.windows(4).any(|w| w == b"\r\n\r\n")
                    };
                    if !answered && whole_head {
                        answered = true;
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly";
                        let _ = stream.write_all(answer).await;
                    }
                }
            });
        }
    });
    let weir = path
        .start_weir(WeirConfig::new([Route::new("web", &[upstream])]))
        .await;
    let request = hiding_a_request("shop.test", "5\r\nhello\r\n0\r\nX-T: 1\n\r\n");
    let (first, rest) = request.split_at(request.find("0\r\nX-T").unwrap());
    let mut client = TcpStream::connect(weir.addrs.http).await.unwrap();
    client.write_all(first.as_bytes()).await.unwrap();
    let head = within(
        LIMIT,
        "the early answer",
        weir_e2e::read_through_head(&mut client),
    )
    .await;
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", path.name());
    let _ = client.write_all(rest.as_bytes()).await;
    let (_, closed) = read_to_close(&mut client, tokio::time::Instant::now() + LIMIT).await;
    assert!(closed, "{}: the connection stayed open", path.name());
    let seen = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(!seen.contains("/smuggled"), "{}: {seen}", path.name());
    assert!(!seen.contains("POST /b"), "{}: {seen}", path.name());
    accepting.abort();
}

/// The rows that hide a request behind a trailer section, on a
/// `stableFallback` route, whose bodies weir reads whole itself to keep
/// them for a retry: once kept and sent to a working canary, once retried
/// on stable after the canary refused the connection.
async fn hidden_requests_stay_hidden_on_stable_fallback_routes(path: ForwardingPath) {
    let fallback = "{ methods: [POST], maxBodyBytes: 1KiB, budget: 1 }";
    let stable = echoing_target("stable").await;
    let canary = echoing_target("canary").await;
    let refusing = ClosedPort::bind();
    let weir = path
        .start_weir(WeirConfig::new([
            Route::new("kept", &[stable.addr])
                .hosts(&["shop.test"])
                .canary(&[canary.addr], 100.0)
                .stable_fallback(fallback),
            Route::new("retried", &[stable.addr])
                .hosts(&["rtry.test"])
                .canary(&[refusing.addr], 100.0)
                .stable_fallback(fallback),
        ]))
        .await;
    let hiding: Vec<Case> = request_cases()
        .into_iter()
        .filter(|case| matches!(case.outcome, Outcome::AloneOrRefused { .. }))
        .collect();
    assert!(hiding.len() >= 3, "{} rows hide a request", hiding.len());
    let mut failures = Vec::new();
    for case in &hiding {
        if let Err(why) = run_case(&weir, &canary, case).await {
            failures.push(format!("kept: {why}"));
        }
        let retried = Case {
            name: case.name,
            request: String::from_utf8_lossy(&case.request)
                .replace("shop.test", "rtry.test")
                .into_bytes(),
            outcome: case.outcome,
        };
        if let Err(why) = run_case(&weir, &stable, &retried).await {
            failures.push(format!("retried: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}: {} cases failed:\n{}",
        path.name(),
        failures.len(),
        failures.join("\n\n")
    );
    // Nothing after a case reached either upstream (the smuggled `GET`
    // would go to the canary of `kept`, never retried).
    for upstream in [&stable, &canary] {
        let reached = upstream.requests();
        assert!(
            reached.iter().all(|r| r.target == "/c"),
            "{}: {reached:?}",
            path.name()
        );
    }
    // hyper's path reads these bodies to their end (weir's own refuses
    // them at parse time): every case was kept, or retried, and forwarded.
    if path == ForwardingPath::Hyper {
        assert_eq!(canary.requests().len(), hiding.len(), "kept");
        assert_eq!(stable.requests().len(), hiding.len(), "retried");
    }
}

weir_e2e::on_both_paths!(
    nothing_after_an_unread_chunked_body_is_read,
    nothing_after_a_chunked_body_answered_early_is_read,
    hidden_requests_stay_hidden_on_stable_fallback_routes,
    a_repeated_content_length_is_passed_on_as_one_number,
    unreadable_requests_are_answered_with_a_reason,
    client_framing_table,
    forwarded_framing_is_normalised,
    upstream_framing_table,
    pipelined_requests_across_routes_and_roles_are_answered_in_order,
    expect_100_continue_gets_the_body_forwarded_once,
    transfer_codings_other_than_chunked_are_refused_with_501,
    weirs_own_answers_to_head_have_no_body,
);
