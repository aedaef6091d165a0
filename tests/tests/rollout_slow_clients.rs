//! Slow clients do not make a healthy canary look slow: the time weir
//! waits on the client (for the request body, or for the client to take the
//! answer) is left out of the canary's latency: the analysis' p99 judged
//! against `maxLatencyP99`, the status' `latencyP99Ms` and
//! `weir_http_request_duration_seconds`. Rate-limited curl downloads of a
//! large answer over HTTP/1.1 and over h2c, and a rate-limited upload, each
//! taking 2 s or more, neither abort a rollout whose `maxLatencyP99` is 1 s
//! nor land above 1 s in the histogram.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::io::Write as _;
use std::time::Duration;

use weir_e2e::{
    FakeUpstream, RecordingUpstream, Reply, Route, Step, Strategy, UpstreamRequest, Weir,
    WeirConfig, count, curl, phase, send_many, step_index, wait_until, within,
};

const CANARY: (&str, &str) = ("x-canary", "always");
/// The body the canary answers `GET /big` with, all at once: several
/// times what the socket buffers between weir and a client on loopback
/// hold (a few MiB each way), so weir waits on the client to take most of it.
const LARGE: usize = 32 << 20;
/// The body of the slow upload.
const UPLOAD: usize = 4 << 20;
/// curl's rate for the downloads (bytes a second): 2 to 4 s each.
const DOWNLOAD_RATE: &str = "8M";
/// curl's rate for the upload: about 2 s.
const UPLOAD_RATE: &str = "2M";
/// Fast requests to the canary before the slow ones.
const FAST: u64 = 20;
/// Concurrent slow downloads per protocol.
const DOWNLOADS: usize = 2;
/// `maxLatencyP99`, and the `le` of the histogram bucket at that bound.
const MAX_LATENCY: &str = "1s";
const MAX_LATENCY_LE: &str = "1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_downloads_and_uploads_do_not_count_against_the_canary() {
    let stable = FakeUpstream::start("stable").await;
    // Reads each request whole, then answers at once: `GET /big` with
    // LARGE bytes, anything else with the size of the body it received.
    let canary = RecordingUpstream::start(answer).await;
    // Every setWeight step waits for a passing judgement of the window,
    // which holds every request since the rollout began.
    let strategy = Strategy::new([
        Step::SetWeight(20.0),
        Step::Pause(None),
        Step::SetWeight(40.0),
        Step::Pause(None),
    ])
    .analysis("200ms", "60s")
    .min_requests(10)
    .max_latency_p99(MAX_LATENCY);
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .canary_by_header(CANARY.0, CANARY.1)
        .strategy(strategy)]))
    .await;

    let counts = within(
        Duration::from_secs(30),
        "fast canary traffic",
        send_many(weir.addrs.http, "/", &[CANARY], FAST, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&counts, "canary", 200), FAST, "{counts:?}");
    weir.wait_status("web", Duration::from_secs(15), "Paused at step 1", |s| {
        step_index(s) == Some(1)
    })
    .await;
    let mut counted = FAST;

    // Slow downloads over HTTP/1.1: weir's own forwarding path.
    let url = weir.url("/big");
    let downloads = (0..DOWNLOADS).map(|_| download(&url, "--http1.1"));
    for (_, written) in futures_util::future::join_all(downloads).await {
        assert_eq!(written, format!("200 1.1 {LARGE}"), "HTTP/1.1 download");
    }
    counted += DOWNLOADS as u64;
    assert_fast(&weir, counted, "slow HTTP/1.1 downloads").await;

    // Slow downloads over h2c with prior knowledge: the hyper path.
    let downloads = (0..DOWNLOADS).map(|_| download(&url, "--http2-prior-knowledge"));
    for (_, written) in futures_util::future::join_all(downloads).await {
        assert_eq!(written, format!("200 2 {LARGE}"), "HTTP/2 download");
    }
    counted += DOWNLOADS as u64;
    assert_fast(&weir, counted, "slow HTTP/2 downloads").await;

    // A slow upload, which the canary reads whole before it answers.
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&vec![b'u'; UPLOAD]).unwrap();
    file.flush().unwrap();
    let data = format!("@{}", file.path().display());
    let header = format!("{}: {}", CANARY.0, CANARY.1);
    let (body, written) = curl(
        &[
            "--http1.1",
            "--limit-rate",
            UPLOAD_RATE,
            // Send the body at once rather than after waiting for a
            // `100 Continue`.
            "-H",
            "Expect:",
            "-H",
            &header,
            "--data-binary",
            &data,
            &weir.url("/upload"),
        ],
        "%{http_code} %{size_upload}",
    )
    .await;
    assert_eq!(written, format!("200 {UPLOAD}"), "upload");
    assert_eq!(
        body,
        format!("canary {UPLOAD}\n"),
        "the canary got the upload whole"
    );
    counted += 1;
    assert_fast(&weir, counted, "a slow upload").await;

    // The next step needs a passing judgement over a window that holds all
    // of the above.
    let r = weir.command("web", "promote", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = weir
        .wait_status("web", Duration::from_secs(15), "Paused at step 3", |s| {
            step_index(s) == Some(3) || phase(s) == "Aborted"
        })
        .await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(s["analysis"]["verdict"], "pass", "{s:#}");
    let canary_stats = &s["analysis"]["canary"];
    assert_eq!(canary_stats["requests"], counted, "{s:#}");
    let p99 = canary_stats["latencyP99Ms"].as_f64().unwrap();
    assert!(
        p99 < 1000.0,
        "canary latencyP99Ms {p99} is not under {MAX_LATENCY}: {s:#}"
    );
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_rollout_aborts_total", &[("route", "web")]),
        0.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "canary"), ("code", "200")]
        ),
        counted as f64,
        "{}",
        m.text
    );
}

/// The canary's answer to `request`.
fn answer(request: &UpstreamRequest) -> Reply {
    let body = if request.target == "/big" {
        vec![b'x'; LARGE]
    } else {
        format!("canary {}\n", request.body.len()).into_bytes()
    };
    let mut bytes = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nx-upstream-name: canary\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    Reply::keep(bytes)
}

/// A rate-limited curl download of `url` from the canary with `protocol`
/// (a curl option); what curl wrote: status, HTTP version and body size.
async fn download(url: &str, protocol: &str) -> (String, String) {
    let header = format!("{}: {}", CANARY.0, CANARY.1);
    curl(
        &[
            protocol,
            "--limit-rate",
            DOWNLOAD_RATE,
            "-H",
            &header,
            "-o",
            "/dev/null",
            url,
        ],
        "%{http_code} %{http_version} %{size_download}",
    )
    .await
}

/// Waits until `weir_http_request_duration_seconds` and the analysis
/// (the route status) hold `counted` canary requests, then checks that
/// every one of them took at most `maxLatencyP99`, that the canary's p99
/// is under it, and that the rollout goes on.
async fn assert_fast(weir: &Weir, counted: u64, what: &str) {
    let labels = [("route", "web"), ("role", "canary")];
    let (m, s) = wait_until(
        Duration::from_secs(10),
        &format!("{counted} canary requests in the histogram and the status after {what}"),
        || async {
            let m = weir.metrics().await;
            let s = weir.status("web").await;
            let n = m.get("weir_http_request_duration_seconds_count", &labels);
            let seen = s["analysis"]["canary"]["requests"].as_u64();
            (n >= Some(counted as f64) && seen >= Some(counted)).then_some((m, s))
        },
    )
    .await;
    let count = m
        .get("weir_http_request_duration_seconds_count", &labels)
        .unwrap();
    let fast = m
        .get(
            "weir_http_request_duration_seconds_bucket",
            &[("route", "web"), ("role", "canary"), ("le", MAX_LATENCY_LE)],
        )
        .unwrap();
    assert_eq!(count, counted as f64, "after {what}:\n{}", m.text);
    assert_eq!(
        fast,
        count,
        "after {what}: {} of {count} canary requests took over {MAX_LATENCY} in \
         weir_http_request_duration_seconds; phase {}, message {}, canary {}",
        count - fast,
        s["phase"],
        s["message"],
        s["analysis"]["canary"],
    );
    let p99 = s["analysis"]["canary"]["latencyP99Ms"].as_f64().unwrap();
    assert!(
        p99 < 1000.0,
        "after {what}: canary latencyP99Ms {p99} is not under {MAX_LATENCY}: {s:#}"
    );
    assert_ne!(phase(&s), "Aborted", "after {what}: {s:#}");
}
