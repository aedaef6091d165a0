//! What the fuzz targets share: the split points at which the connection
//! could have received an input, and comparable outcomes of the head
//! parsers.

use weir_proxy::http1::request_head::{self, Framing, Parsed};
use weir_proxy::http1::response_head;

/// Inputs up to this long have every prefix parsed; longer ones a sample,
/// so one execution stays well under a millisecond.
const EVERY_PREFIX_UP_TO: usize = 512;
/// Prefixes sampled from a longer input.
const SAMPLED_PREFIXES: usize = 64;

/// The lengths at which a connection may have parsed `input` before the
/// whole of it arrived: every length for a short input; for a long one a
/// sample drawn from the input's own bytes (so a run replays exactly), plus
/// the lengths around each of `boundaries` (the end of the head, the
/// parser's limit).
pub fn prefix_lengths(input: &[u8], boundaries: &[usize]) -> Vec<usize> {
    let len = input.len();
    if len <= EVERY_PREFIX_UP_TO {
        return (0..len).collect();
    }
    let mut state = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut lengths: Vec<usize> = (0..SAMPLED_PREFIXES)
        .map(|_| {
            state = splitmix(state);
            (state % len as u64) as usize
        })
        .collect();
    lengths.extend((0..EVERY_PREFIX_UP_TO / 4).filter(|&n| n < len));
    for &end in boundaries {
        lengths.extend(
            [end.saturating_sub(1), end, end + 1]
                .into_iter()
                .filter(|&n| n < len),
        );
    }
    lengths
}

/// Offsets at which to cut a chunked body into pieces, drawn from its bytes.
pub fn split_offsets(input: &[u8], count: usize, salt: u64) -> Vec<usize> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut state = input.iter().fold(salt, |h, &b| splitmix(h ^ u64::from(b)));
    (0..count)
        .map(|_| {
            state = splitmix(state);
            (state % (input.len() as u64 + 1)) as usize
        })
        .collect()
}

fn splitmix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Everything a parsed request head decides, comparable across parses.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestOutcome<'b> {
    /// The head has not ended.
    Partial,
    /// A whole head, accepted.
    Complete {
        /// The method token.
        method: &'b str,
        /// The request target.
        target: &'b str,
        /// The minor version.
        minor: u8,
        /// How many header fields.
        fields: usize,
        /// Bytes of the head.
        len: usize,
        /// The body's framing.
        framing: Framing,
        /// Whether the connection may carry another request.
        keep_alive: bool,
        /// Whether the client waits for `100 Continue`.
        expect_continue: bool,
        /// Whether the request switches protocols.
        wants_upgrade: bool,
        /// The `Host` field.
        host: Option<&'b [u8]>,
    },
    /// Refused with this status and text.
    Refused(u16, &'static str),
}

/// Parses `input` as a request head.
pub fn request_outcome(input: &[u8]) -> RequestOutcome<'_> {
    let mut headers = request_head::header_slots();
    match request_head::parse(input, &mut headers) {
        Ok(Parsed::Partial) => RequestOutcome::Partial,
        Ok(Parsed::Complete(head)) => RequestOutcome::Complete {
            method: head.method,
            target: head.target,
            minor: head.minor,
            fields: head.headers.len(),
            len: head.len,
            framing: head.framing,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            wants_upgrade: head.wants_upgrade,
            host: head.host,
        },
        Err(refusal) => RequestOutcome::Refused(refusal.status, refusal.what),
    }
}

/// Everything a parsed response head decides, comparable across parses:
/// `Ok(None)` while the head has not ended.
pub type ResponseOutcome<'b> = Result<Option<ResponseDecision<'b>>, &'static str>;

/// What an accepted response head says.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct ResponseDecision<'b> {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: &'b str,
    /// How many header fields.
    pub fields: usize,
    /// Bytes of the head.
    pub len: usize,
    /// The body's framing.
    pub framing: Framing,
    /// Whether the upstream connection may be reused.
    pub reusable: bool,
}

/// Parses `input` as a response head to a `HEAD` request or another.
pub fn response_outcome(input: &[u8], head_request: bool) -> ResponseOutcome<'_> {
    let mut headers = request_head::header_slots();
    response_head::parse(input, &mut headers, head_request)
        .map(|head| {
            head.map(|h| ResponseDecision {
                status: h.status,
                reason: h.reason,
                fields: h.headers.len(),
                len: h.len,
                framing: h.framing,
                reusable: h.reusable,
            })
        })
        .map_err(|broken| broken.0)
}
