//! A route whose config is behind its promotion when weir starts (the state
//! says Promoted v2, the config still names v1 as stable and brings a new
//! canary v3) is held at its phase and step with weight 0 (neither the
//! promoted v2, which the config no longer names, nor the never-judged v3
//! gets traffic: the config's stable v1 serves), with a status message naming
//! the change needed; weir starts, is ready, and the other routes serve
//! normally. Once
//! the config names v2 as stable, v3's rollout starts.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, RELOAD_LIMIT, Route, Step, Strategy, Weir, WeirConfig, canary_weight, count, get,
    phase, send_many, step_index, within,
};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_behind_its_promotion_is_held_and_the_others_serve() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let v3 = FakeUpstream::start("v3").await;
    let other = FakeUpstream::start("other").await;
    let strategy = Strategy::unjudged([Step::SetWeight(10.0), Step::Pause(None)]);
    let config = WeirConfig::new([
        Route::new("shop", &[v1.addr])
            .path_prefix("/shop")
            .canary(&[v2.addr], 0.0)
            .strategy(strategy),
        Route::new("other", &[other.addr]).path_prefix("/other"),
    ]);
    let mut weir = Weir::start(config.clone()).await;
    let r = weir
        .command("shop", "promote", Some(serde_json::json!({"full": true})))
        .await;
    assert_eq!(r.status, 200, "promote --full: {}", r.text());
    assert_eq!(phase(&r.json()), "Promoted", "{:#}", r.json());

    // While weir is down, the config brings v3 without naming v2 as stable.
    weir.kill9();
    let behind = config.with_route("shop", |r| r.canary(&[v3.addr], 0.0).canary_revision("v3"));
    weir.write_config(&behind);
    // `restart` waits for /readyz 200.
    within(LIMIT, "restart with a config behind", weir.restart()).await;

    let s = weir.status("shop").await;
    assert_eq!(phase(&s), "Promoted", "held as persisted: {s:#}");
    assert_eq!(canary_weight(&s), 0.0, "held at weight 0: {s:#}");
    assert_eq!(s["canaryRevision"], "v2", "no rollout of v3: {s:#}");
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("set stable.revision to v2") && message.contains("v3"),
        "the message names the change needed: {s:#}"
    );

    // The held route is served by the config's stable; the other route serves.
    let held = within(
        LIMIT,
        "requests to /shop",
        send_many(weir.addrs.http, "/shop", &[], 20, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&held, "v1", 200), 20, "{held:?}");
    assert_eq!(v3.hits(), 0, "the never-judged v3 gets nothing");
    let c = within(
        LIMIT,
        "requests to /other",
        send_many(weir.addrs.http, "/other", &[], 20, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "other", 200), 20, "{c:?}");
    let ready = get(weir.addrs.admin, "/readyz").await.unwrap();
    assert_eq!(ready.status, 200);

    // A reload that changes another route keeps the held route held.
    let other2 = FakeUpstream::start("other2").await;
    let edited = behind.with_route("other", |r| r.stable("v1", &[other2.addr]));
    within(
        RELOAD_LIMIT,
        "reload of another route",
        weir.reload(&edited),
    )
    .await;
    let s = weir.status("shop").await;
    assert_eq!((phase(&s), canary_weight(&s)), ("Promoted", 0.0), "{s:#}");
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("set stable.revision to v2")),
        "{s:#}"
    );
    let c = within(
        LIMIT,
        "requests to /other after the reload",
        send_many(weir.addrs.http, "/other", &[], 10, 1),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "other2", 200), 10, "{c:?}");

    // Yet another revision while behind is refused, naming the change.
    let failures = weir.reloads("failure").await;
    weir.write_config(&edited.with_route("shop", |r| r.canary_revision("v4")));
    within(
        RELOAD_LIMIT,
        "a refused reload",
        weir.wait_for_reload("failure", failures),
    )
    .await;
    let r = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("set stable.revision to v2"),
        "{}",
        r.text()
    );

    // The fixed config: v2 is stable, v3 starts its rollout.
    let caught_up = edited.with_route("shop", |r| r.stable("v2", &[v2.addr]));
    within(RELOAD_LIMIT, "reload", weir.reload(&caught_up)).await;
    let s = weir.status("shop").await;
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );
    assert_eq!(s["canaryRevision"], "v3", "{s:#}");
    assert_eq!(canary_weight(&s), 10.0, "{s:#}");
}
