//! Config reloads: a storm of rewrites under load drops nothing; an invalid
//! file is refused, counted and located in the log while the old split keeps
//! serving; a route name that once crashed validation is refused the same way;
//! putting the running file back after a refused one counts as a success;
//! `POST /api/v1/reload` says which keys of the config in force wait for a
//! restart.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, RELOAD_LIMIT, Route, Weir, WeirConfig, binary, count, send_many, wait_until,
    within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_under_load_fails_no_request() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr]).canary(&[canary.addr], 50.0)]);
    let mut weir = Weir::start(config.clone()).await;
    let successes_before = weir.reloads("success").await;

    // Open-loop load from weir-loadtest for the whole storm.
    let load = tokio::process::Command::new(binary("weir-loadtest"))
        .args(["run", "--target", &weir.url("/storm"), "--rate", "200"])
        .args(["--duration", "6s", "--connections", "8", "--json"])
        .kill_on_drop(true)
        .output();
    let load = tokio::spawn(load);
    wait_until(
        Duration::from_secs(5),
        "load to reach the upstreams",
        || async { (stable.hits() + canary.hits() > 0).then_some(()) },
    )
    .await;

    // 32 rewrites, alternating weights and the way the file is replaced.
    let weights = [0.0, 100.0, 10.0, 90.0];
    for i in 0..32 {
        let next = config.with_weight("web", weights[i % weights.len()]);
        if i % 2 == 0 {
            weir.write_config(&next);
        } else {
            weir.write_config_in_place(&next);
        }
        // Pacing of the storm, not synchronisation.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The storm's last file has weight 90; end on 100.
    weir.write_config(&config.with_weight("web", 100.0));

    let output = within(Duration::from_secs(30), "the load run", load)
        .await
        .expect("load task")
        .expect("weir-loadtest run");
    assert!(
        output.status.success(),
        "weir-loadtest: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(
        report["errors"], 0,
        "requests failed during the storm: {report:#}"
    );
    let by_upstream = report["byUpstream"].as_object().expect("byUpstream");
    let mut answered = 0;
    for (name, statuses) in by_upstream {
        assert!(
            name == "stable" || name == "canary",
            "unexpected upstream {name}: {report:#}"
        );
        for (status, n) in statuses.as_object().expect("statuses") {
            assert_eq!(
                status, "200",
                "non-200 answers during the storm: {report:#}"
            );
            answered += n.as_u64().expect("count");
        }
    }
    assert_eq!(answered, 1200, "{report:#}");

    // The last file wins.
    wait_until(
        RELOAD_LIMIT,
        "weir_canary_weight{route=\"web\"} == 100",
        || async {
            let weight = weir
                .metrics()
                .await
                .get("weir_canary_weight", &[("route", "web")]);
            (weight == Some(100.0)).then_some(())
        },
    )
    .await;
    assert!(weir.reloads("success").await > successes_before);
    let c = send_many(weir.addrs.http, "/", &[], 20, 2).await.unwrap();
    assert_eq!(
        count(&c, "canary", 200),
        20,
        "after the storm at weight 100: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_old_split_and_is_located_in_the_log() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr]).canary(&[canary.addr], 0.0)]);
    let mut weir = Weir::start(config.clone()).await;
    let limit = Duration::from_secs(30);
    let failures_before = weir.reloads("failure").await;

    // Weight 100 and an invalid request timeout: applying any of it would
    // show as canary traffic.
    let mut broken_config = config.with_weight("web", 100.0);
    broken_config.routes[0].timeouts = Some(("1s".to_owned(), "whenever".to_owned()));
    let broken = broken_config.render(&weir.addrs);
    let (line, value_column, key_column) = broken
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let value = l.find("\"whenever\"")?;
            let key = l.find("request")?;
            Some((i + 1, value + 1, key + 1))
        })
        .expect("the broken value is in the file");
    weir.write_text(&broken, false);

    within(
        limit,
        "failed reload",
        weir.wait_for_reload("failure", failures_before),
    )
    .await;
    let c = within(
        limit,
        "requests",
        send_many(weir.addrs.http, "/", &[], 50, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "stable", 200),
        50,
        "old split (weight 0) not kept: {c:?}"
    );

    let log = weir.log();
    let located = [value_column, key_column]
        .iter()
        .any(|col| log.contains(&format!("weir.yaml:{line}:{col}")));
    assert!(
        located,
        "the log does not locate the error at weir.yaml:{line}:{value_column} (value) \
         or :{key_column} (key):\n{log}"
    );

    // A valid file after the broken one is applied.
    within(
        limit,
        "valid reload",
        weir.reload(&config.with_weight("web", 100.0)),
    )
    .await;
    let c = within(
        limit,
        "requests",
        send_many(weir.addrs.http, "/", &[], 20, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "canary", 200),
        20,
        "weight 100 after recovery: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_slash_in_a_route_name_is_refused_and_weir_keeps_serving() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr]).canary(&[canary.addr], 0.0)]);
    let mut weir = Weir::start(config.clone()).await;
    let limit = Duration::from_secs(30);
    let failures_before = weir.reloads("failure").await;

    // The route renamed `api/v2`, unquoted as an operator would write it, and
    // weight 100 so that applying any of it would show as canary traffic.
    let rendered = config.with_weight("web", 100.0).render(&weir.addrs);
    assert!(rendered.contains("- name: \"web\""), "{rendered}");
    let edited = rendered.replace("- name: \"web\"", "- name: api/v2");
    weir.write_text(&edited, true);

    within(
        limit,
        "failed reload",
        weir.wait_for_reload("failure", failures_before),
    )
    .await;
    assert_eq!(weir.try_exit(), None, "weir exited:\n{}", weir.log());
    let c = within(
        limit,
        "requests",
        send_many(weir.addrs.http, "/", &[], 20, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "stable", 200), 20, "old split not kept: {c:?}");
    let log = weir.log();
    assert!(
        log.contains("routes[0].name: route name `api/v2` contains `/`"),
        "the refusal does not name routes[0].name:\n{log}"
    );
    assert_eq!(weir.try_exit(), None, "weir exited:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn putting_back_the_running_file_after_a_refused_one_counts_a_successful_reload() {
    let stable = FakeUpstream::start("stable").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr])]);
    let mut weir = Weir::start(config.clone()).await;
    let limit = Duration::from_secs(30);
    let failures_before = weir.reloads("failure").await;
    let successes_before = weir.reloads("success").await;

    weir.write_text("routes: [", true);
    within(
        limit,
        "failed reload",
        weir.wait_for_reload("failure", failures_before),
    )
    .await;

    // The file as weir started with it: the edit that fixes the mistake.
    weir.write_config_in_place(&config);
    let successes = within(
        limit,
        "successful reload",
        weir.wait_for_reload("success", successes_before),
    )
    .await;
    assert_eq!(successes, successes_before + 1.0);
    assert_eq!(weir.reloads("failure").await, failures_before + 1.0);
}

/// A config file removed is reported once, as a refused reload naming the
/// file, while the config in force keeps serving; put back, it counts a
/// successful reload, and the failure is not counted again. So is a file
/// put back after `POST /api/v1/reload` refused its absence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_config_file_is_reported_once_and_its_return_applied() {
    let stable = FakeUpstream::start("stable").await;
    let config = WeirConfig::new([Route::new("web", &[stable.addr])]);
    let mut weir = Weir::start(config.clone()).await;
    let limit = Duration::from_secs(30);
    let failures_before = weir.reloads("failure").await;
    let successes_before = weir.reloads("success").await;

    let path = weir.config_path();
    std::fs::remove_file(&path).unwrap();
    within(
        limit,
        "the removal reported",
        weir.wait_for_reload("failure", failures_before),
    )
    .await;
    let log = weir.log();
    assert!(
        log.contains(&path.display().to_string()) && log.contains("No such file"),
        "the log does not name the file gone:\n{log}"
    );
    let c = within(
        limit,
        "requests",
        send_many(weir.addrs.http, "/", &[], 10, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "stable", 200), 10, "{c:?}");

    weir.write_config_in_place(&config);
    within(
        limit,
        "the return applied",
        weir.wait_for_reload("success", successes_before),
    )
    .await;
    assert_eq!(weir.reloads("failure").await, failures_before + 1.0);

    // Moved away, refused by `POST /api/v1/reload`, and put back before
    // the watch would report it: the return is counted too.
    let failures_before = weir.reloads("failure").await;
    let successes_before = weir.reloads("success").await;
    let aside = path.with_extension("aside");
    std::fs::rename(&path, &aside).unwrap();
    let answer = weir
        .admin()
        .post("/api/v1/reload", None)
        .await
        .expect("reload");
    std::fs::rename(&aside, &path).unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    within(
        limit,
        "the return after the API's refusal applied",
        weir.wait_for_reload("success", successes_before),
    )
    .await;
    assert!(weir.reloads("failure").await > failures_before);
}

/// A config that moves `stateDir` is applied (its routes) but the new
/// directory waits for a restart: `POST /api/v1/reload` says so, also
/// after the file watcher applied the change first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_which_keys_wait_for_a_restart() {
    let v1 = FakeUpstream::start("v1").await;
    let config = WeirConfig::new([Route::new("web", &[v1.addr])]);
    let mut weir = Weir::start(config.clone()).await;
    let admin = weir.admin();
    let answer = admin.post("/api/v1/reload", None).await.expect("reload");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.json().get("restartNeeded").is_none(),
        "{}",
        answer.text()
    );

    let text = config
        .render(&weir.addrs)
        .replace("stateDir: state", "stateDir: elsewhere");
    assert!(
        text.contains("stateDir: elsewhere"),
        "stateDir is in the file:\n{text}"
    );
    weir.write_text(&text, false);
    let answer = admin.post("/api/v1/reload", None).await.expect("reload");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    assert_eq!(
        body["restartNeeded"],
        serde_json::json!(["stateDir"]),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("take effect at the next restart")),
        "{body}"
    );
}
