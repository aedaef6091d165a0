//! Upstream failures become weir's own answers and are counted per role:
//! an unreachable endpoint gives 502 (`kind="connect"`), a slow one 504
//! after `timeouts.request` (`kind="timeout"`).

use std::time::{Duration, Instant};

use weir_e2e::{ClosedPort, FakeUpstream, Route, Weir, WeirConfig, send_many, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_canary_gives_502_counted_per_role() {
    let stable = FakeUpstream::start("stable").await;
    // Held bound, never listening: every connection is refused.
    let closed = ClosedPort::bind();
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[closed.addr], 100.0)
        .timeouts("1s", "5s")]))
    .await;

    let n = 10;
    let c = within(
        Duration::from_secs(30),
        "requests",
        send_many(weir.addrs.http, "/", &[], n, 1),
    )
    .await
    .unwrap();
    let statuses: u64 = c
        .values()
        .flat_map(|s| s.iter())
        .filter(|(s, _)| **s == 502)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(statuses, n, "expected {n} 502s: {c:?}");
    assert_eq!(stable.hits(), 0, "stable got traffic at weight 100");

    let m = weir.metrics().await;
    let requests = m.sum(
        "weir_http_requests_total",
        &[("route", "web"), ("role", "canary"), ("code", "502")],
    );
    assert_eq!(
        requests, n as f64,
        "weir_http_requests_total{{route=\"web\",role=\"canary\",code=\"502\"}}"
    );
    let errors = m.sum(
        "weir_upstream_errors_total",
        &[("route", "web"), ("role", "canary"), ("kind", "connect")],
    );
    assert!(
        errors >= n as f64,
        "weir_upstream_errors_total{{route=\"web\",role=\"canary\",kind=\"connect\"}} = {errors}, want >= {n}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_gives_504_after_the_request_timeout() {
    let stable = FakeUpstream::start("stable").await;
    stable.set_delay(Duration::from_secs(5));
    let weir = Weir::start(WeirConfig::new([
        Route::new("web", &[stable.addr]).timeouts("1s", "300ms")
    ]))
    .await;

    let n = 3;
    for _ in 0..n {
        let started = Instant::now();
        let r = within(
            Duration::from_secs(10),
            "a timed-out request",
            weir_e2e::get(weir.addrs.http, "/slow"),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert_eq!(r.status, 504, "body: {}", r.text());
        // The upstream answers after 5 s with a 200: a 504 means the request
        // timeout fired first, whatever the machine's load.
        assert!(
            took >= Duration::from_millis(300),
            "504 after {took:?}, before the 300 ms request timeout"
        );
    }
    let m = weir.metrics().await;
    let requests = m.sum(
        "weir_http_requests_total",
        &[("route", "web"), ("role", "stable"), ("code", "504")],
    );
    assert_eq!(
        requests, n as f64,
        "weir_http_requests_total{{route=\"web\",role=\"stable\",code=\"504\"}}"
    );
    let errors = m.sum(
        "weir_upstream_errors_total",
        &[("route", "web"), ("role", "stable"), ("kind", "timeout")],
    );
    assert_eq!(
        errors, n as f64,
        "weir_upstream_errors_total{{kind=\"timeout\"}}"
    );
}
