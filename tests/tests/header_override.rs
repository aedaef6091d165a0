//! `canaryByHeader` beats the weight and stickiness: `x-canary: always`
//! reaches the canary at weight 0, `x-canary: never` reaches stable at
//! weight 100.

use std::time::Duration;

use weir_e2e::{Conn, CookieJar, FakeUpstream, Route, Weir, WeirConfig, count, send_many, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_override_beats_weight_and_cookie() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let weir = Weir::start(WeirConfig::new([
        Route::new("zero", &[stable.addr])
            .path_prefix("/zero")
            .canary(&[canary.addr], 0.0)
            .canary_by_header("x-canary", "always"),
        Route::new("full", &[stable.addr])
            .path_prefix("/full")
            .canary(&[canary.addr], 100.0)
            .sticky("weir-full")
            .canary_by_header("x-canary", "always"),
    ]))
    .await;
    let addr = weir.addrs.http;
    let limit = Duration::from_secs(30);
    let n = 50;

    within(limit, "override requests", async {
        // Baselines: the weights alone.
        let c = send_many(addr, "/zero", &[], n, 2).await.unwrap();
        assert_eq!(
            count(&c, "stable", 200),
            n,
            "weight 0 without header: {c:?}"
        );
        let c = send_many(addr, "/full", &[], n, 2).await.unwrap();
        assert_eq!(
            count(&c, "canary", 200),
            n,
            "weight 100 without header: {c:?}"
        );

        let c = send_many(addr, "/zero", &[("x-canary", "always")], n, 2)
            .await
            .unwrap();
        assert_eq!(
            count(&c, "canary", 200),
            n,
            "x-canary: always at weight 0: {c:?}"
        );
        let c = send_many(addr, "/zero", &[("x-canary", "something-else")], n, 2)
            .await
            .unwrap();
        assert_eq!(
            count(&c, "stable", 200),
            n,
            "other value at weight 0: {c:?}"
        );
        let c = send_many(addr, "/full", &[("x-canary", "never")], n, 2)
            .await
            .unwrap();
        assert_eq!(
            count(&c, "stable", 200),
            n,
            "x-canary: never at weight 100: {c:?}"
        );

        // A client whose cookie put it on canary still obeys `never`.
        let mut conn = Conn::open(addr).await.unwrap();
        let mut jar = CookieJar::default();
        let r = conn.get_with_jar("/full", &mut jar).await.unwrap();
        assert_eq!(r.upstream(), "canary");
        let cookie = jar.header().expect("weir set the stickiness cookie");
        let cookie = cookie.to_str().unwrap();
        for _ in 0..10 {
            let r = conn
                .get("/full", &[("cookie", cookie), ("x-canary", "never")])
                .await
                .unwrap();
            assert_eq!(r.upstream(), "stable", "never with a canary cookie");
        }
    })
    .await;
}

/// SPEC section 3: the header decides before anything else, in every
/// phase: after an abort the weight is 0 and requests without the header
/// all go to stable, while those with it still reach the canary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_decides_first_after_an_abort_too() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let strategy =
        weir_e2e::Strategy::new([weir_e2e::Step::SetWeight(10.0), weir_e2e::Step::Pause(None)])
            .analysis("250ms", "5s")
            .min_requests(100_000);
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])
        .canary(&[canary.addr], 0.0)
        .strategy(strategy)
        .canary_by_header("x-canary", "always")]))
    .await;
    let addr = weir.addrs.http;
    let header = [("x-canary", "always")];
    let n = 20;
    within(Duration::from_secs(30), "header requests", async {
        let c = send_many(addr, "/", &header, n, 2).await.unwrap();
        assert_eq!(count(&c, "canary", 200), n, "during the rollout: {c:?}");

        let r = weir.command("web", "abort", None).await;
        assert_eq!(r.status, 200, "abort: {}", r.text());
        let c = send_many(addr, "/", &header, n, 2).await.unwrap();
        assert_eq!(count(&c, "canary", 200), n, "after the abort: {c:?}");
        let c = send_many(addr, "/", &[], n, 2).await.unwrap();
        assert_eq!(count(&c, "stable", 200), n, "without the header: {c:?}");

        let r = weir.command("web", "retry", None).await;
        assert_eq!(r.status, 200, "retry: {}", r.text());
        let c = send_many(addr, "/", &header, n, 2).await.unwrap();
        assert_eq!(count(&c, "canary", 200), n, "after retry: {c:?}");
    })
    .await;
}
