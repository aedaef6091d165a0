//! A config behind its promotion when weir starts (the state says Promoted
//! v2, the config still names v1 as stable and brings a new canary v3) is
//! refused as a reload would be: `weir run` exits non-zero before serving,
//! naming the route and the change needed, and the state file is left as it
//! was (Promoted, weight 100); `weir validate` says so too. Once the
//! config names v2 as stable, weir starts and v3's rollout begins from v2.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, binary, canary_weight, count, phase,
    run_within, send_many, shown, step_index, within,
};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_behind_its_promotion_is_refused_at_start() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let v3 = FakeUpstream::start("v3").await;
    let strategy = Strategy::unjudged([Step::SetWeight(50.0), Step::Pause(None)]);
    let config = WeirConfig::new([Route::new("shop", &[v1.addr])
        .path_prefix("/shop")
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)]);
    let mut weir = Weir::start(config.clone()).await;
    let r = weir
        .command("shop", "promote", Some(serde_json::json!({"full": true})))
        .await;
    assert_eq!(r.status, 200, "promote --full: {}", r.text());
    assert_eq!(phase(&r.json()), "Promoted", "{:#}", r.json());
    weir.sigterm();
    let stopped = weir.wait_exit(LIMIT).await;
    assert!(stopped.success(), "a clean stop: {stopped}");
    let state_file = weir.dir().join("state").join("shop.json");
    let promoted = std::fs::read(&state_file).expect("the state file");

    // While weir is down, the config brings v3 without naming v2 as stable.
    let behind = config.with_route("shop", |r| r.canary(&[v3.addr], 0.0).canary_revision("v3"));
    weir.write_config(&behind);
    let config_path = weir.config_path();
    let args = ["run", "--config", config_path.to_str().expect("UTF-8")];
    let refused = run_within(&binary("weir"), &args, LIMIT).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{}", shown(&refused));
    assert!(
        stderr.contains("weir.yaml has 1 error(s)")
            && stderr
                .contains("route shop: set stable.revision to v2 (promoted) before starting v3"),
        "refused as a config, naming the change needed: {}",
        shown(&refused)
    );
    let after = std::fs::read(&state_file).expect("the state file");
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&promoted),
        "the state is left as it was"
    );
    assert_eq!(v3.hits(), 0, "the never-judged v3 gets nothing");

    // `weir validate` says the same, from the states in stateDir, and
    // writes nothing there.
    let path = config_path.to_str().expect("UTF-8");
    let validated = run_within(&binary("weir"), &["validate", path], LIMIT).await;
    assert_eq!(validated.status.code(), Some(1), "{}", shown(&validated));
    assert!(
        String::from_utf8_lossy(&validated.stderr)
            .contains("route shop: set stable.revision to v2 (promoted) before starting v3"),
        "{}",
        shown(&validated)
    );
    assert_eq!(
        std::fs::read(&state_file).expect("the state file"),
        promoted
    );

    // The fixed config: v2 is stable, v3 starts its rollout.
    let caught_up = behind.with_route("shop", |r| r.stable("v2", &[v2.addr]));
    weir.write_config(&caught_up);
    let validated = run_within(&binary("weir"), &["validate", path], LIMIT).await;
    assert_eq!(validated.status.code(), Some(0), "{}", shown(&validated));
    within(LIMIT, "a start with v2 as stable", weir.restart()).await;
    let s = weir.status("shop").await;
    assert_eq!(
        (phase(&s), step_index(&s), canary_weight(&s)),
        ("Progressing", Some(0), 50.0),
        "{s:#}"
    );
    assert_eq!(s["canaryRevision"], "v3", "{s:#}");
    let served = within(
        LIMIT,
        "requests to /shop",
        send_many(weir.addrs.http, "/shop", &[], 20, 2),
    )
    .await
    .unwrap();
    let (from_v2, from_v3) = (count(&served, "v2", 200), count(&served, "v3", 200));
    assert_eq!(from_v2 + from_v3, 20, "v1 serves no more: {served:?}");
    assert!(from_v2 > 0, "v2 serves as stable: {served:?}");
}
