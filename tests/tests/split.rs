//! Split accuracy without stickiness: the share of requests weir sends to the
//! canary matches the weight within a binomial bound (see
//! `weir_e2e::binomial_bounds` for the derivation).

use std::time::Duration;

use weir_e2e::{FakeUpstream, Route, Weir, WeirConfig, binomial_bounds, count, send_many, within};

/// Sends `n` requests at `weight` % and checks the canary count, the
/// upstreams' own counts and weir's request counter.
async fn check_split(weight: f64, n: u64) {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let weir = Weir::start(WeirConfig::new([
        Route::new("web", &[stable.addr]).canary(&[canary.addr], weight)
    ]))
    .await;

    let counts = within(
        Duration::from_secs(90),
        "the requests",
        send_many(weir.addrs.http, "/split", &[], n, 8),
    )
    .await
    .expect("requests through weir");
    let canary_count = count(&counts, "canary", 200);
    let stable_count = count(&counts, "stable", 200);
    assert_eq!(
        canary_count + stable_count,
        n,
        "every response is a 200 from one of the upstreams: {counts:?}"
    );

    let bounds = binomial_bounds(n, weight / 100.0);
    assert!(
        bounds.contains(canary_count),
        "{canary_count} of {n} requests went to the canary at weight {weight} %; \
         accepted {bounds}"
    );
    assert_eq!(canary.hits(), canary_count);
    assert_eq!(stable.hits(), stable_count);

    let metrics = weir.metrics().await;
    let counted = |role| {
        metrics.sum(
            "weir_http_requests_total",
            &[("route", "web"), ("role", role), ("code", "200")],
        )
    };
    assert_eq!(counted("canary"), canary_count as f64, "canary counter");
    assert_eq!(counted("stable"), stable_count as f64, "stable counter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_split_is_accurate() {
    // μ = 400, σ ≈ 19: accepted about [315, 487].
    check_split(10.0, 4000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenth_of_a_percent_split_is_accurate() {
    // μ = 20, σ ≈ 4.5: the exact binomial tails accept about [4, 43], so a
    // canary that never gets traffic fails too.
    check_split(0.1, 20_000).await;
}
