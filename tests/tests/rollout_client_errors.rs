//! Clients cannot abort a healthy canary: request bodies with broken
//! chunked framing get 400 and abandoned requests 499, both counted in
//! `weir_client_errors_total` and neither an error in the analysis, which
//! keeps passing the canary through its steps.

#![allow(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed assertion"
)]

use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use weir_e2e::{
    FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, phase, raw_request, send_many,
    step_index, wait_until, within,
};

const CANARY: (&str, &str) = ("x-canary", "always");
const BROKEN: u64 = 120;
const ABANDONED: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies_and_abandoned_requests_do_not_abort_a_healthy_canary() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    // Every setWeight step waits for a passing judgement of the window.
    let strategy = Strategy::new([
        Step::SetWeight(20.0),
        Step::Pause(None),
        Step::SetWeight(40.0),
        Step::Pause(None),
    ])
    .analysis("200ms", "60s")
    .min_requests(20)
    .max_error_rate(0.05);
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .canary_by_header(CANARY.0, CANARY.1)
        .strategy(strategy)]))
    .await;

    within(
        Duration::from_secs(30),
        "healthy traffic",
        send_many(weir.addrs.http, "/", &[CANARY], 30, 2),
    )
    .await
    .unwrap();
    weir.wait_status("web", Duration::from_secs(15), "Paused at step 1", |s| {
        step_index(s) == Some(1)
    })
    .await;

    // Clients that leave while the canary is slow: 499, not an error. This
    // runs first: every earlier request has been answered, so a new hit at
    // the canary is the slow request (a broken upload's upstream request may
    // still arrive after its client got 400).
    canary.set_delay(Duration::from_secs(30));
    for i in 0..ABANDONED {
        let before = canary.hits();
        let mut stream = TcpStream::connect(weir.addrs.http).await.unwrap();
        let request = format!(
            "GET /slow HTTP/1.1\r\nHost: shop.test\r\n{}: {}\r\n\r\n",
            CANARY.0, CANARY.1
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        wait_until(
            Duration::from_secs(10),
            "the canary received the request",
            || async { (canary.hits() > before).then_some(()) },
        )
        .await;
        drop(stream);
        wait_until(
            Duration::from_secs(10),
            &format!("abandoned request {i} counted"),
            || async {
                let m = weir.metrics().await;
                let n = m.sum(
                    "weir_client_errors_total",
                    &[("route", "web"), ("role", "canary"), ("kind", "abandoned")],
                );
                (n == (i + 1) as f64).then_some(())
            },
        )
        .await;
    }
    canary.set_delay(Duration::ZERO);

    // Broken chunked uploads to the canary: the client's fault.
    for i in 0..BROKEN {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: shop.test\r\n{}: {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello world\r\n0\r\n\r\n",
            CANARY.0, CANARY.1
        );
        let r = raw_request(weir.addrs.http, request.as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(
            r.status,
            400,
            "broken upload {i}: {:?}",
            String::from_utf8_lossy(&r.raw)
        );
    }

    // The next step needs a passing judgement over a window that holds all
    // of the above.
    let r = weir.command("web", "promote", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    within(
        Duration::from_secs(30),
        "more healthy traffic",
        send_many(weir.addrs.http, "/", &[CANARY], 30, 2),
    )
    .await
    .unwrap();
    let s = weir
        .wait_status("web", Duration::from_secs(15), "Paused at step 3", |s| {
            step_index(s) == Some(3) || phase(s) == "Aborted"
        })
        .await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(s["analysis"]["canary"]["errors"], 0, "{s:#}");

    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_rollout_aborts_total", &[("route", "web")]),
        0.0,
        "{}",
        m.text
    );
    let canary_code = |code| {
        m.sum(
            "weir_http_requests_total",
            &[("route", "web"), ("role", "canary"), ("code", code)],
        )
    };
    assert_eq!(canary_code("400"), BROKEN as f64, "{}", m.text);
    assert_eq!(canary_code("499"), ABANDONED as f64, "{}", m.text);
    assert_eq!(canary_code("200"), 60.0, "{}", m.text);
    assert_eq!(
        m.get(
            "weir_client_errors_total",
            &[("route", "web"), ("role", "canary"), ("kind", "framing")]
        ),
        Some(BROKEN as f64),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum("weir_upstream_errors_total", &[("route", "web")]),
        0.0,
        "{}",
        m.text
    );
    // The abandoned requests' waits stay in the latency histogram.
    assert_eq!(
        m.get(
            "weir_http_request_duration_seconds_count",
            &[("route", "web"), ("role", "canary")]
        ),
        Some(60.0 + ABANDONED as f64),
        "{}",
        m.text
    );
}
