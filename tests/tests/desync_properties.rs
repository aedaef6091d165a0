//! Properties of forwarding valid HTTP/1 framing, checked on random
//! inputs against a recording upstream: however a client splits pipelined
//! requests across TCP writes, the upstream gets the same requests; however
//! a valid chunked body is cut into chunks and decorated with chunk
//! extensions, the upstream gets the same body bytes.
//!
//! proptest is not available to this workspace, so inputs come from
//! `fastrand` with a printed seed; `DESYNC_SEED=N` replays a failure.
//! Each property runs on both forwarding paths, as `TEST::own` and
//! `TEST::hyper`.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use weir_e2e::{
    ForwardingPath, RecordingUpstream, Reply, Route, UpstreamRequest, Weir, WeirConfig,
};

const LIMIT: Duration = Duration::from_secs(10);
/// Random inputs per property.
const RUNS: usize = 40;

/// The seed for this run: `DESYNC_SEED` when set, otherwise a fresh one.
fn seed() -> u64 {
    std::env::var("DESYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Starts weir on `path` in front of `upstream`.
async fn weir_for(path: ForwardingPath, upstream: &RecordingUpstream) -> Weir {
    path.start_weir(WeirConfig::new([Route::new("web", &[upstream.addr])]))
        .await
}

/// A request as the upstream saw it: method, target, body.
type Seen = (String, String, Vec<u8>);

/// What the upstream saw of a request, without the connection index.
fn seen(r: &UpstreamRequest) -> Seen {
    (r.method.clone(), r.target.clone(), r.body.clone())
}

/// Writes `pieces` one write each (waiting for each to be sent), then
/// reads until weir closes the connection.
async fn send_in_pieces(addr: SocketAddr, pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    for piece in pieces {
        tokio::time::timeout_at(deadline, stream.write_all(piece))
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout_at(deadline, stream.flush())
            .await
            .unwrap()
            .unwrap();
    }
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return raw,
            Err(_) => panic!("weir did not close: {:?}", String::from_utf8_lossy(&raw)),
            Ok(Ok(n)) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A random printable body of up to `max` bytes.
fn body(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
    (0..rng.usize(..=max))
        .map(|_| rng.u8(b' '..=b'~'))
        .collect()
}

/// Chunked encoding of `body` with random chunk sizes and, sometimes,
/// chunk extensions.
fn chunked(rng: &mut fastrand::Rng, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let extension = |rng: &mut fastrand::Rng| match rng.u8(..4) {
        0 => ";a=b".to_owned(),
        1 => format!(";n{}=\"q;{}\"", rng.u8(..), rng.u16(..)),
        2 => " ; x".to_owned(),
        _ => String::new(),
    };
    while at < body.len() {
        let n = rng.usize(1..=(body.len() - at).min(300));
        let size = if rng.bool() {
            format!("{n:x}")
        } else {
            format!("{n:X}")
        };
        out.extend_from_slice(format!("{size}{}\r\n", extension(rng)).as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
    }
    out.extend_from_slice(format!("0{}\r\n\r\n", extension(rng)).as_bytes());
    out
}

/// Up to five random valid requests, pipelined, the last closing.
fn pipelined(rng: &mut fastrand::Rng) -> (Vec<u8>, Vec<Seen>) {
    let n = rng.usize(1..=5);
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for i in 0..n {
        let target = format!("/r{i}-{}", rng.u32(..));
        let close = if i == n - 1 {
            "Connection: close\r\n"
        } else {
            ""
        };
        match rng.u8(..3) {
            0 => {
                wire.extend_from_slice(
                    format!("GET {target} HTTP/1.1\r\nHost: shop.test\r\n{close}\r\n").as_bytes(),
                );
                want.push(("GET".to_owned(), target, Vec::new()));
            }
            1 => {
                let b = body(rng, 2000);
                wire.extend_from_slice(
                    format!(
                        "POST {target} HTTP/1.1\r\nHost: shop.test\r\nContent-Length: {}\r\n{close}\r\n",
                        b.len()
                    )
                    .as_bytes(),
                );
                wire.extend_from_slice(&b);
                want.push(("POST".to_owned(), target, b));
            }
            _ => {
                let b = body(rng, 2000);
                wire.extend_from_slice(
                    format!(
                        "PUT {target} HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n{close}\r\n"
                    )
                    .as_bytes(),
                );
                wire.extend_from_slice(&chunked(rng, &b));
                want.push(("PUT".to_owned(), target, b));
            }
        }
    }
    (wire, want)
}

/// `wire` cut at random places into up to eight pieces.
fn split(rng: &mut fastrand::Rng, wire: &[u8]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = (0..rng.usize(..8))
        .map(|_| rng.usize(..wire.len()))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut at = 0;
    for cut in cuts {
        pieces.push(wire[at..cut].to_vec());
        at = cut;
    }
    pieces.push(wire[at..].to_vec());
    pieces
}

async fn any_split_of_pipelined_requests_reaches_the_upstream_unchanged(path: ForwardingPath) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let upstream = RecordingUpstream::start(|r: &UpstreamRequest| Reply::ok(&r.target)).await;
    let weir = weir_for(path, &upstream).await;
    for run in 0..RUNS {
        let (wire, want) = pipelined(&mut rng);
        let pieces = split(&mut rng, &wire);
        let before = upstream.requests().len();
        let raw = send_in_pieces(weir.addrs.http, &pieces).await;
        let got: Vec<_> = upstream
            .requests()
            .split_off(before)
            .iter()
            .map(seen)
            .collect();
        assert_eq!(
            got,
            want,
            "seed {seed} run {run}: pieces {pieces:?}\nclient got {:?}",
            String::from_utf8_lossy(&raw)
        );
        let answers = String::from_utf8_lossy(&raw)
            .matches("HTTP/1.1 200 OK")
            .count();
        assert_eq!(answers, want.len(), "seed {seed} run {run}");
        assert_eq!(upstream.violations(), vec![], "seed {seed} run {run}");
    }
}

async fn any_valid_chunking_forwards_the_same_body_bytes(path: ForwardingPath) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let upstream = RecordingUpstream::start(|r: &UpstreamRequest| Reply::ok(&r.target)).await;
    let weir = weir_for(path, &upstream).await;
    for run in 0..RUNS {
        let b = body(&mut rng, 20_000);
        let mut wire = b"POST /c HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\
            Connection: close\r\n\r\n"
            .to_vec();
        wire.extend_from_slice(&chunked(&mut rng, &b));
        let pieces = split(&mut rng, &wire);
        let before = upstream.requests().len();
        let raw = send_in_pieces(weir.addrs.http, &pieces).await;
        let got = upstream.requests().split_off(before);
        assert_eq!(
            got.len(),
            1,
            "seed {seed} run {run}: {:?}",
            String::from_utf8_lossy(&raw)
        );
        assert!(got[0].body == b, "seed {seed} run {run}: body changed");
        assert!(raw.starts_with(b"HTTP/1.1 200 OK"), "seed {seed} run {run}");
    }
    assert_eq!(upstream.violations(), vec![], "seed {seed}");
}

weir_e2e::on_both_paths!(
    any_split_of_pipelined_requests_reaches_the_upstream_unchanged,
    any_valid_chunking_forwards_the_same_body_bytes,
);
