//! gRPC on the request path: recognising a call, its deadline
//! (`grpc-timeout`), its status (`grpc-status`, in trailers or in a
//! trailers-only head), and the answers weir makes in gRPC's terms, as
//! Envoy does: when the deadline passes first (HTTP 200, `grpc-status: 4`)
//! and for its own 502, 503 and 504 (`grpc-status` 14 UNAVAILABLE, 14, 4).
//!
//! Everything here reads header bytes in place: no allocation per call.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use weir_config::GrpcCodeSet;
use weir_config::grpc::GRPC_DEADLINE_EXCEEDED;

use crate::body::ProxyBody;

/// `grpc-status`.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The `grpc-message` of a call weir ends at its deadline.
const DEADLINE_MESSAGE: &str = "deadline exceeded before the upstream answered (weir)";

/// The `grpc-message` of a call whose deadline passed during its answer.
const DEADLINE_DURING_ANSWER: &str = "deadline exceeded while the upstream answered (weir)";

/// How a gRPC call is counted once its response ends.
#[derive(Debug, Clone, Copy)]
pub struct GrpcAccount {
    /// The statuses that count as errors of the role.
    pub errors: GrpcCodeSet,
    /// The call's status, once seen.
    pub status: Option<u8>,
    /// The call's deadline is the client's `grpc-timeout`, shorter than
    /// the route's request timeout: its passing is the client's choice,
    /// counted by `errors`, where weir's own timeout is always an error of
    /// the role (SPEC section 3).
    pub client_deadline: bool,
}

/// Whether a request is a gRPC call: `content-type: application/grpc`,
/// alone or with a suffix (`application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| is_grpc_content_type(value.as_bytes()))
}

/// Whether an answer's head is a gRPC answer's: a gRPC `content-type`, or
/// a `grpc-status` (a trailers-only answer of a server that left the type
/// out).
pub fn is_grpc_answer(headers: &HeaderMap) -> bool {
    is_grpc(headers) || headers.contains_key(&GRPC_STATUS)
}

/// Whether a `content-type` value is gRPC's: `application/grpc`, alone or
/// with a `+format` or parameters (case aside). Not gRPC-Web's
/// (`application/grpc-web...`), whose trailers travel in the body.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(
            value.get(GRPC.len()),
            None | Some(b'+' | b';' | b' ' | b'\t')
        )
}

/// Whether the request's `TE` says the client takes trailers (gRPC
/// clients send `te: trailers`).
pub fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"trailers"))
}

/// The call's deadline from `grpc-timeout` (1 to 8 digits and a unit of
/// `H`, `M`, `S`, `m`, `u` or `n`); `None` when absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// What is left of a call's `grpc-timeout` of `timeout`, `elapsed` after
/// the call began, as a `grpc-timeout` value (in the finest unit whose
/// eight digits hold it); `None` once nothing is left.
pub fn remaining_timeout(timeout: Duration, elapsed: Duration) -> Option<HeaderValue> {
    let left = timeout
        .checked_sub(elapsed)
        .filter(|left| !left.is_zero())?;
    const MAX: u128 = 99_999_999;
    let text = [
        (left.as_nanos(), 'n'),
        (left.as_micros(), 'u'),
        (left.as_millis(), 'm'),
        (u128::from(left.as_secs()), 'S'),
        (u128::from(left.as_secs() / 60), 'M'),
        (u128::from(left.as_secs() / 3600), 'H'),
    ]
    .into_iter()
    .find(|&(amount, _)| amount > 0 && amount <= MAX)
    .map(|(amount, unit)| format!("{amount}{unit}"))?;
    HeaderValue::from_str(&text).ok()
}

/// The `grpc-status` in `headers` (trailers, or a trailers-only head), if
/// it is a number; a number above 16 is kept as is (counted as UNKNOWN).
pub fn status(headers: &HeaderMap) -> Option<u8> {
    let value = headers.get(&GRPC_STATUS)?.as_bytes();
    if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    u8::try_from(n).ok()
}

/// The trailers that end a call at its deadline: DEADLINE_EXCEEDED.
pub fn deadline_trailers() -> HeaderMap {
    deadline_trailers_saying(DEADLINE_MESSAGE)
}

/// The trailers ending a call whose deadline passed after its answer
/// began: DEADLINE_EXCEEDED, saying so.
pub fn deadline_during_answer_trailers() -> HeaderMap {
    deadline_trailers_saying(DEADLINE_DURING_ANSWER)
}

fn deadline_trailers_saying(message: &'static str) -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert(GRPC_STATUS.clone(), HeaderValue::from_static("4"));
    trailers.insert(GRPC_MESSAGE.clone(), HeaderValue::from_static(message));
    trailers
}

/// The answer to a call whose deadline passed before the upstream's head:
/// HTTP 200, trailers-only, `grpc-status: 4` (DEADLINE_EXCEEDED).
pub fn deadline_exceeded_response() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.extend(deadline_trailers());
    response
}

/// `grpc-status` 4.
pub const DEADLINE_EXCEEDED: u8 = GRPC_DEADLINE_EXCEEDED;

/// `grpc-status` 14.
pub const UNAVAILABLE: u8 = 14;

/// The gRPC status a call gets for an HTTP status weir made up: 502 and
/// 503 are UNAVAILABLE, 504 is DEADLINE_EXCEEDED (Envoy's and gRPC's own
/// mapping); `None` for the others.
pub fn status_for(http: StatusCode) -> Option<u8> {
    match http.as_u16() {
        502 | 503 => Some(UNAVAILABLE),
        504 => Some(DEADLINE_EXCEEDED),
        _ => None,
    }
}

/// The gRPC status a client reads from an answer with HTTP status `code`
/// other than 200 and no `grpc-status` (gRPC's HTTP-to-gRPC status
/// mapping): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
/// 404 UNIMPLEMENTED, 429, 502, 503 and 504 UNAVAILABLE, any other UNKNOWN;
/// and 499, which weir counts for a call its client left before any
/// answer, CANCELLED (an upstream's own 499 reads so too).
pub fn status_of_http(code: u16) -> u8 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        // Client closed request: weir's own count of a call its client
        // left before any answer (the mapping gRPC gateways use).
        499 => weir_config::grpc::GRPC_CANCELLED,
        _ => weir_config::grpc::GRPC_UNKNOWN,
    }
}

/// A trailers-only answer made by weir: HTTP 200, `content-type:
/// application/grpc`, `grpc-status: status` and `grpc-message: message`
/// (percent-encoded as gRPC asks). For the error path only: it allocates.
pub fn error_response(status: u8, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS.clone(), HeaderValue::from(u16::from(status)));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert(GRPC_MESSAGE.clone(), value);
    }
    response
}

/// `grpc-message` encoding: printable ASCII but `%` as is, every other
/// byte of the UTF-8 as `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_of_a_deadline_is_written_in_the_finest_unit_that_holds_it() {
        let ms = Duration::from_millis;
        let left = |t, e| remaining_timeout(t, e).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(left(ms(500), ms(200)).as_deref(), Some("300000u"));
        assert_eq!(left(ms(2), ms(1)).as_deref(), Some("1000000n"));
        assert_eq!(
            left(Duration::from_secs(10), ms(1)).as_deref(),
            Some("9999000u")
        );
        assert_eq!(
            left(Duration::from_secs(200_000), ms(0)).as_deref(),
            Some("200000S")
        );
        assert_eq!(left(ms(500), ms(500)), None);
        assert_eq!(left(ms(500), ms(900)), None);
        // What it writes reads back as itself.
        let mut headers = HeaderMap::new();
        headers.insert(&GRPC_TIMEOUT, remaining_timeout(ms(1500), ms(250)).unwrap());
        assert_eq!(timeout(&headers), Some(ms(1250)));
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for (value, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC", true),
            ("application/grpc; charset=utf-8", true),
            ("application/json", false),
            ("application/grp", false),
            ("application/grpcx", false),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/grpc-web-text", false),
        ] {
            assert_eq!(is_grpc(&headers("content-type", value)), want, "{value}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeout_follows_the_wire_format() {
        for (value, want) in [
            ("1S", Some(Duration::from_secs(1))),
            ("250m", Some(Duration::from_millis(250))),
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("10n", Some(Duration::from_nanos(10))),
            ("123456789S", None),
            ("S", None),
            ("10s", None),
            ("-1S", None),
        ] {
            assert_eq!(timeout(&headers("grpc-timeout", value)), want, "{value}");
        }
    }

    #[test]
    fn weirs_own_errors_map_to_grpc_statuses_with_an_encoded_message() {
        assert_eq!(status_for(StatusCode::BAD_GATEWAY), Some(14));
        assert_eq!(status_for(StatusCode::SERVICE_UNAVAILABLE), Some(14));
        assert_eq!(status_for(StatusCode::GATEWAY_TIMEOUT), Some(4));
        assert_eq!(status_for(StatusCode::BAD_REQUEST), None);
        let response = error_response(14, "upstream unreachable (route r\u{e9}, 100%)");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(status(response.headers()), Some(14));
        assert_eq!(
            response.headers()[&GRPC_MESSAGE],
            "upstream unreachable (route r%C3%A9, 100%25)"
        );
        assert!(is_grpc(response.headers()));
    }

    #[test]
    fn grpc_status_is_read_as_a_number() {
        assert_eq!(status(&headers("grpc-status", "0")), Some(0));
        assert_eq!(status(&headers("grpc-status", "14")), Some(14));
        assert_eq!(status(&headers("grpc-status", "200")), Some(200));
        assert_eq!(status(&headers("grpc-status", "x")), None);
        assert_eq!(status(&headers("grpc-status", "1000")), None);
        assert_eq!(status(&HeaderMap::new()), None);
    }
}
