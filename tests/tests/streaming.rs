//! Bodies and heads at the edges: a 256 MiB upload streams through weir to
//! the upstream intact without weir buffering it, and a request head over
//! 64 KiB is refused with 431.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use weir_e2e::{
    Conn, FakeUpstream, LoadtestUpstream, Route, Weir, WeirConfig, raw_exchange, within,
};

const UPLOAD: u64 = 256 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// weir's resident memory must stay below this during the upload.
const RSS_LIMIT_KIB: u64 = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_streams_through_in_constant_memory() {
    let sink = LoadtestUpstream::start("sink", &[]);
    let weir = Weir::start(WeirConfig::new([Route::new("upload", &[sink.addr])])).await;

    // Sample weir's RSS while the upload runs.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), weir.pid());
        move || {
            let path = format!("/proc/{pid}/status");
            while !done.load(Ordering::SeqCst) {
                let kib = std::fs::read_to_string(&path).ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                });
                if let Some(kib) = kib {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });

    let chunk = Bytes::from(vec![0x5Au8; CHUNK]);
    let chunks = (UPLOAD / CHUNK as u64) as usize;
    let body = StreamBody::new(stream::iter(
        std::iter::repeat_n(chunk, chunks).map(|c| Ok::<_, std::io::Error>(Frame::data(c))),
    ));
    let request = Request::post("/__upstream/echo-body-len")
        .body(body.boxed_unsync())
        .unwrap();
    let response = within(Duration::from_secs(150), "the 256 MiB upload", async {
        let mut conn = Conn::open(weir.addrs.http).await.unwrap();
        conn.send(request).await
    })
    .await;
    done.store(true, Ordering::SeqCst);
    sampler.join().expect("RSS sampler");

    let response = response.expect("upload through weir");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.text().trim(),
        UPLOAD.to_string(),
        "bytes that reached the upstream"
    );
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("weir's peak RSS during the upload: {} KiB", peak);
    assert!(peak > 0, "could not read weir's RSS");
    assert!(
        peak < RSS_LIMIT_KIB,
        "weir's RSS peaked at {} MiB during the upload (limit {} MiB)",
        peak / 1024,
        RSS_LIMIT_KIB / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_over_64_kib_gets_431() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let head = |filler: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            weir.addrs.http,
            "a".repeat(filler)
        )
    };
    let limit = Duration::from_secs(10);

    // A 16 KiB head is fine.
    let answer = raw_exchange(weir.addrs.http, head(16 * 1024).as_bytes(), limit)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "16 KiB head: {answer}");

    // An 80 KiB head is not.
    let answer = raw_exchange(weir.addrs.http, head(80 * 1024).as_bytes(), limit)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "80 KiB head: want 431, got {:?}",
        answer.lines().next()
    );
    assert_eq!(
        stable.hits(),
        1,
        "the oversized request reached the upstream"
    );
}
