//! Property tests of the codec on random inputs, and a replay of the kept
//! corpus (`proxy/tests/http1-corpus/`): however the bytes are split, the
//! result is the same as whole, and nothing panics.
//!
//! proptest is not available to this workspace, so inputs come from
//! `fastrand` with a printed seed; `HTTP1_SEED=N` replays a failure.

use super::chunked::{self, ChunkedError, LAST_CHUNK, decode_split, encode_chunk};
use super::request_head::{self, Parsed};
use super::response_head;

/// Random inputs per property.
const RUNS: usize = 3000;

fn rng() -> fastrand::Rng {
    let seed = std::env::var("HTTP1_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("HTTP1_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// The outcome of parsing a request head, comparable across calls.
#[derive(Debug, PartialEq, Eq)]
enum HeadOutcome {
    Partial,
    Complete {
        len: usize,
        framing: request_head::Framing,
        keep_alive: bool,
    },
    Refused(u16, &'static str),
}

fn head_outcome(input: &[u8]) -> HeadOutcome {
    let mut headers = request_head::header_slots();
    match request_head::parse(input, &mut headers) {
        Ok(Parsed::Partial) => HeadOutcome::Partial,
        Ok(Parsed::Complete(head)) => HeadOutcome::Complete {
            len: head.len,
            framing: head.framing,
            keep_alive: head.keep_alive,
        },
        Err(refusal) => HeadOutcome::Refused(refusal.status, refusal.what),
    }
}

/// Every prefix of `input` parses as not yet whole, or exactly as the
/// whole input does: the driver re-parses as bytes arrive and must never
/// decide differently on a prefix.
fn check_head_prefixes(input: &[u8]) {
    let whole = head_outcome(input);
    for end in 0..input.len() {
        let prefix = head_outcome(&input[..end]);
        assert!(
            prefix == HeadOutcome::Partial || prefix == whole,
            "prefix of {end} bytes gives {prefix:?}, whole gives {whole:?}: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// The outcome of parsing a response head, comparable across calls.
fn response_outcome(
    input: &[u8],
    head_request: bool,
) -> Result<Option<(u16, usize, bool)>, &'static str> {
    let mut headers = request_head::header_slots();
    response_head::parse(input, &mut headers, head_request)
        .map(|head| head.map(|h| (h.status, h.len, h.reusable)))
        .map_err(|broken| broken.0)
}

/// Every prefix of an upstream's answer parses as not yet whole, or as the
/// whole does.
fn check_response_prefixes(input: &[u8]) {
    for head_request in [false, true] {
        let whole = response_outcome(input, head_request);
        for end in 0..input.len() {
            let prefix = response_outcome(&input[..end], head_request);
            assert!(
                prefix == Ok(None) || prefix == whole,
                "prefix of {end} bytes gives {prefix:?}, whole gives {whole:?}: {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

/// Decoding `input` in random pieces gives what decoding it whole gives.
fn check_chunked_splits(input: &[u8], rng: &mut fastrand::Rng) {
    let whole = decode_split(input, &[]);
    for _ in 0..4 {
        let splits: Vec<usize> = (0..rng.usize(1..6))
            .map(|_| rng.usize(0..=input.len()))
            .collect();
        assert_eq!(
            decode_split(input, &splits),
            whole,
            "splits {splits:?} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Byte by byte, the hardest split.
    let every: Vec<usize> = (1..input.len()).collect();
    assert_eq!(decode_split(input, &every), whole);
}

const FRAGMENTS: &[&str] = &[
    "GET",
    "POST",
    "HEAD",
    " ",
    "/",
    "/a?b",
    "http://x/",
    "*",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2.0",
    "\r\n",
    "\n",
    "\r",
    "\0",
    "\t",
    ":",
    " :",
    "Host: a",
    "Host: u@a",
    "Content-Length: 5",
    "Content-Length: 5, 5",
    "Content-Length: +5",
    "Content-Length: 18446744073709551616",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: \tCHUNKED ",
    "Connection: close",
    "Connection: keep-alive",
    "Expect: 100-continue",
    "Upgrade: websocket",
    "X-A: b",
    " folded",
    "\u{7f}",
    "\u{e9}",
];

/// A request head made of well-formed lines, sometimes with a fragment
/// from the list (or a random byte) dropped in.
fn random_head(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let pick = |rng: &mut fastrand::Rng| FRAGMENTS[rng.usize(..FRAGMENTS.len())];
    out.extend_from_slice(
        [
            "GET / HTTP/1.1\r\n",
            "POST /c HTTP/1.1\r\n",
            "GET / HTTP/1.0\r\n",
        ][rng.usize(..3)]
        .as_bytes(),
    );
    for _ in 0..rng.usize(0..8) {
        match rng.u8(..10) {
            0 => out.extend_from_slice(pick(rng).as_bytes()),
            1 => out.push(rng.u8(..)),
            _ => {
                out.extend_from_slice(pick(rng).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(if rng.bool() { b"\r\n" } else { b"\n" });
    out
}

/// A chunked body: valid chunks with extensions and trailers, sometimes
/// with one byte changed, inserted or removed.
fn random_chunked(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.usize(0..5) {
        let len = rng.usize(1..40);
        out.extend_from_slice(format!("{len:x}").as_bytes());
        if rng.u8(..4) == 0 {
            out.extend_from_slice(b" ;name=\"v;x\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend((0..len).map(|_| rng.u8(..)));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    if rng.bool() {
        out.extend_from_slice(b"X-Trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if rng.bool() {
        out.extend_from_slice(b"GET / HTTP/1.1\r\n");
    }
    match rng.u8(..4) {
        0 if !out.is_empty() => {
            let at = rng.usize(..out.len());
            out[at] = rng.u8(..);
        }
        1 => {
            let at = rng.usize(..=out.len());
            out.insert(
                at,
                *[b'\r', b'\n', b'0', b'f', b';', 0]
                    .get(rng.usize(..6))
                    .unwrap_or(&0),
            );
        }
        2 if !out.is_empty() => {
            let at = rng.usize(..out.len());
            out.remove(at);
        }
        _ => {}
    }
    out
}

/// Bodies of many short chunks with random extension lengths around the
/// per-body bound are refused exactly when their extensions reach it,
/// however split: no number of chunks carries more.
#[test]
fn chunk_extensions_are_bounded_per_body() {
    let mut rng = rng();
    for _ in 0..200 {
        let mut body = Vec::new();
        let mut total = 0;
        for _ in 0..rng.usize(1..40) {
            let len = rng.usize(1..1200);
            body.extend_from_slice(b"1;");
            body.extend(std::iter::repeat_n(b'e', len));
            body.extend_from_slice(b"\r\nx\r\n");
            total += len as u64;
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let splits: Vec<usize> = (0..rng.usize(1..8))
            .map(|_| rng.usize(0..=body.len()))
            .collect();
        let got = decode_split(&body, &splits);
        if total >= chunked::MAX_EXTENSIONS {
            assert_eq!(got, Err(ChunkedError::ExtensionsOverLimit), "{total}");
        } else {
            assert!(
                matches!(got, Ok((_, Some(n))) if n == body.len()),
                "{total}"
            );
        }
    }
}

#[test]
fn request_heads_parse_the_same_on_every_prefix() {
    let mut rng = rng();
    for _ in 0..RUNS {
        check_head_prefixes(&random_head(&mut rng));
    }
}

/// An answer head made of well-formed lines with fragments dropped in.
fn random_response(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let status = [
        "HTTP/1.1 200 OK",
        "HTTP/1.1 204 No Content",
        "HTTP/1.0 200 OK",
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 600 X",
        "HTTP/1.1 2OO OK",
    ];
    out.extend_from_slice(status[rng.usize(..status.len())].as_bytes());
    out.extend_from_slice(b"\r\n");
    for _ in 0..rng.usize(0..6) {
        match rng.u8(..10) {
            0 => out.push(rng.u8(..)),
            _ => {
                out.extend_from_slice(FRAGMENTS[rng.usize(..FRAGMENTS.len())].as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\nbody");
    out
}

#[test]
fn response_heads_parse_the_same_on_every_prefix() {
    let mut rng = rng();
    for _ in 0..RUNS {
        check_response_prefixes(&random_response(&mut rng));
    }
}

#[test]
fn chunked_bodies_decode_the_same_however_split() {
    let mut rng = rng();
    for _ in 0..RUNS {
        check_chunked_splits(&random_chunked(&mut rng), &mut rng);
    }
}

#[test]
fn random_data_survives_encoding_and_decoding() {
    let mut rng = rng();
    for _ in 0..RUNS / 10 {
        let pieces: Vec<Vec<u8>> = (0..rng.usize(0..6))
            .map(|_| (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect())
            .collect();
        let mut encoded = Vec::new();
        for piece in &pieces {
            encode_chunk(&mut encoded, piece);
        }
        encoded.extend_from_slice(LAST_CHUNK);
        let want: Vec<u8> = pieces.concat();
        assert_eq!(
            decode_split(&encoded, &[]),
            Ok::<_, ChunkedError>((want, Some(encoded.len())))
        );
    }
}

/// The kept corpora, this one and the fuzzers' (`fuzz/corpus/`): every
/// file of a request directory is replayed as a request head, of a chunked
/// one as a chunked body, of a response one as a response head.
#[test]
fn the_kept_corpus_replays() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.join("tests/http1-corpus");
    let fuzz = crate_dir.join("../fuzz/corpus");
    let mut rng = rng();
    let mut replayed = 0;
    let heads: fn(&[u8], &mut fastrand::Rng) = |input, _| check_head_prefixes(input);
    let responses: fn(&[u8], &mut fastrand::Rng) = |input, _| check_response_prefixes(input);
    let bodies: fn(&[u8], &mut fastrand::Rng) = check_chunked_splits;
    for (dir, check) in [
        (root.join("requests"), heads),
        (root.join("chunked"), bodies),
        (root.join("responses"), responses),
        (fuzz.join("request_head"), heads),
        (fuzz.join("chunked"), bodies),
        (fuzz.join("response_head"), responses),
    ] {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            check(&input, &mut rng);
            replayed += 1;
        }
    }
    assert!(replayed >= 20, "only {replayed} corpus files");
    let _ = chunked::MAX_TRAILERS;
}
