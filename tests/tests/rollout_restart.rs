//! Rollout state survives `kill -9`: after a restart with the same config
//! and state dir, each route is in the same phase, step and weight before
//! the first request, and a timed pause keeps its original deadline.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, binomial_bounds, canary_weight, count,
    phase, rollout_gauges, send_many, step_index, within,
};

/// The fields that must survive a restart unchanged.
const KEPT: [&str; 8] = [
    "phase",
    "stepIndex",
    "canaryWeight",
    "rolloutSeq",
    "canaryRevision",
    "stableRevision",
    "pauseDeadlineMs",
    "held",
];

/// Another `weir run` on `weir`'s config file, to its exit.
async fn run_on_its_config(weir: &Weir) -> std::process::Output {
    let config = weir.config_path();
    let args = ["run", "--config", config.to_str().expect("UTF-8")];
    weir_e2e::run_within(&weir_e2e::binary("weir"), &args, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_phase_step_weight_and_pause_deadline() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    // No route advances by itself: there is never enough canary traffic.
    let strategy = |pause: Option<&str>| {
        Strategy::new([
            Step::SetWeight(30.0),
            Step::Pause(pause.map(str::to_owned)),
            Step::SetWeight(60.0),
        ])
        .analysis("250ms", "5s")
        .min_requests(100_000)
    };
    let route = |name: &str, pause: Option<&str>| {
        Route::new(name, &[v1.addr])
            .path_prefix(&format!("/{name}"))
            .canary(&[v2.addr], 0.0)
            .strategy(strategy(pause))
    };
    let config = WeirConfig::new([
        route("indef", None),
        route("timed", Some("30s")),
        route("ab", None),
    ]);
    let mut weir = Weir::start(config).await;

    // indef: Paused at `pause: {}`; timed: in its 30 s pause; ab: Aborted.
    for name in ["indef", "timed"] {
        let r = weir.command(name, "promote", None).await;
        assert_eq!(r.status, 200, "promote {name}: {}", r.text());
        let s = r.json();
        assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");
        assert_eq!(canary_weight(&s), 30.0, "{s:#}");
    }
    let r = weir.command("ab", "abort", None).await;
    assert_eq!(r.status, 200, "abort: {}", r.text());
    let mut before = Vec::new();
    for name in ["indef", "timed", "ab"] {
        before.push(weir.status(name).await);
    }
    assert!(
        before[1]["pauseDeadlineMs"].is_u64(),
        "timed pause: {:#}",
        before[1]
    );
    let gauges_before: Vec<_> = {
        let m = weir.metrics().await;
        ["indef", "timed", "ab"]
            .iter()
            .map(|n| rollout_gauges(&m, n))
            .collect()
    };
    let state_dir = weir.dir().join("state");
    assert!(
        ["indef", "timed", "ab"]
            .iter()
            .all(|name| state_dir.join(format!("{name}.json")).is_file()),
        "no state written in {} (stateDir: state, relative to the config file)",
        state_dir.display()
    );

    weir.kill9();
    within(Duration::from_secs(30), "restart", weir.restart()).await;

    // Before any request through the proxy.
    for (old, name) in before.iter().zip(["indef", "timed", "ab"]) {
        let new = weir.status(name).await;
        for key in KEPT {
            assert_eq!(
                new[key], old[key],
                "route {name}: `{key}` changed across kill -9 and restart\nbefore: {old:#}\nafter: {new:#}"
            );
        }
    }
    let m = weir.metrics().await;
    for (old, name) in gauges_before.iter().zip(["indef", "timed", "ab"]) {
        assert_eq!(
            &rollout_gauges(&m, name),
            old,
            "route {name}: rollout gauges changed across the restart"
        );
    }

    // The data plane has the restored weights.
    let n = 400;
    let c = within(
        Duration::from_secs(30),
        "requests",
        send_many(weir.addrs.http, "/indef", &[], n, 4),
    )
    .await
    .unwrap();
    let bounds = binomial_bounds(n, 0.3);
    let canary = count(&c, "v2", 200);
    assert!(
        bounds.contains(canary),
        "{canary} of {n} to the canary after the restart at weight 30, want {bounds}: {c:?}"
    );
    let c = within(
        Duration::from_secs(30),
        "requests",
        send_many(weir.addrs.http, "/ab", &[], 40, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        count(&c, "v1", 200),
        40,
        "aborted route after restart: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_state_file_holds_the_canary_at_weight_zero() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = Strategy::unjudged([Step::SetWeight(30.0), Step::Pause(None)]);
    let config = WeirConfig::new([Route::rollout("web", &[v1.addr], &[v2.addr], strategy)]);
    let mut weir = Weir::start(config).await;
    let s = weir.status("web").await;
    assert_eq!(canary_weight(&s), 30.0, "{s:#}");

    weir.kill9();
    let state_file = weir.dir().join("state").join("web.json");
    assert!(
        state_file.is_file(),
        "the state was persisted at {}",
        state_file.display()
    );
    std::fs::write(&state_file, b"{ this is not a rollout state").unwrap();
    // `weir validate` finds the file valid, and warns of the state.
    let config = weir.config_path();
    let validated = weir_e2e::run_within(
        &weir_e2e::binary("weir"),
        &["validate", config.to_str().expect("UTF-8")],
        Duration::from_secs(20),
    )
    .await;
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert_eq!(validated.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: the rollout state of route web cannot be read"),
        "{stderr}"
    );
    weir.restart().await;

    let s = weir.status("web").await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    let message = s["message"].as_str().unwrap_or_default();
    assert!(message.contains("unreadable"), "{message}");
    let counts = send_many(weir.addrs.http, "/", &[], 50, 2).await.unwrap();
    assert_eq!(count(&counts, "v1", 200), 50, "{counts:?}");
    let aside = std::fs::read_dir(weir.dir().join("state"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("web.json.unreadable-")
        });
    assert!(aside, "the unreadable file was kept aside for the operator");
    // Nothing re-runs the steps without an operator; resume starts them.
    let r = weir.command("web", "resume", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(canary_weight(&r.json()), 30.0, "{}", r.text());
}

/// A second process on the same state directory is refused before it
/// binds or writes anything, naming the directory and the process that
/// holds it; the first goes on serving with its state as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_state_dir_is_refused() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = Strategy::new([Step::SetWeight(30.0), Step::Pause(None)])
        .analysis("250ms", "5s")
        .min_requests(100_000);
    let mut weir = Weir::start(WeirConfig::new([Route::new("web", &[v1.addr])
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)]))
    .await;
    let r = weir.command("web", "promote", None).await;
    assert_eq!(r.status, 200, "promote: {}", r.text());
    let state_file = weir.dir().join("state").join("web.json");
    let kept = std::fs::read(&state_file).expect("the route's state file");

    // The same config file again: the same stateDir (and the same ports,
    // which are bound after the lock is taken).
    let second = run_on_its_config(&weir).await;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by another weir process (pid {}); give each process its own stateDir",
            weir.pid()
        )) && stderr.contains("stateDir"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&state_file).expect("the route's state file"),
        kept,
        "the first process's state is untouched"
    );
    let s = weir.status("web").await;
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");

    // Released however the holder ends: a restart after `kill -9` holds it.
    weir.kill9();
    weir.restart().await;
    let s = weir.status("web").await;
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");
}

/// A start that fails on a taken port leaves the state directory as it
/// was: the new canary revision's rollout is not started (its clock not
/// run) by a process that never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_taken_port_writes_no_state() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let v3 = FakeUpstream::start("v3").await;
    let strategy = Strategy::unjudged([Step::SetWeight(30.0), Step::Pause(Some("1h".into()))]);
    let config = WeirConfig::new([Route::new("web", &[v1.addr])
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)]);
    let mut weir = Weir::start(config.clone()).await;
    weir.sigterm();
    let stopped = weir.wait_exit(Duration::from_secs(20)).await;
    assert!(stopped.success(), "a clean stop: {stopped}");
    let state_file = weir.dir().join("state").join("web.json");
    let kept = std::fs::read(&state_file).expect("the route's state file");

    // v3 would start a new rollout, but the proxy's port is taken.
    let taken = tokio::net::TcpListener::bind(weir.addrs.http)
        .await
        .expect("the stopped weir's port bound again");
    weir.write_config(
        &config.with_route("web", |r| r.canary(&[v3.addr], 0.0).canary_revision("v3")),
    );
    let refused = run_on_its_config(&weir).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listener"), "names the listener: {stderr}");
    assert!(!stderr.contains("rollout"), "no rollout started: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&state_file).expect("the state file")),
        String::from_utf8_lossy(&kept),
        "the state is left as it was"
    );
    drop(taken);
}

/// A `stateDir` removed under the running process is made again with
/// every route's state, not only those of routes that change later: a
/// restart then resumes each rollout where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_state_dir_is_written_again_whole() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = || Strategy::unjudged([Step::SetWeight(30.0), Step::Pause(None)]);
    let route = |name: &str| {
        Route::new(name, &[v1.addr])
            .path_prefix(&format!("/{name}"))
            .canary(&[v2.addr], 0.0)
            .strategy(strategy())
    };
    let mut weir = Weir::start(WeirConfig::new([route("paused"), route("ab")])).await;
    let r = weir.command("paused", "promote", None).await;
    assert_eq!(r.status, 200, "promote: {}", r.text());
    let r = weir.command("ab", "abort", None).await;
    assert_eq!(r.status, 200, "abort: {}", r.text());
    let before = [weir.status("paused").await, weir.status("ab").await];
    assert_eq!(phase(&before[0]), "Paused", "{:#}", before[0]);

    // Nothing changes after the removal: no route writes by itself.
    let state_dir = weir.dir().join("state");
    std::fs::remove_dir_all(&state_dir).expect("stateDir removed");
    weir_e2e::wait_until(
        Duration::from_secs(30),
        "the states written again",
        || async {
            ["paused", "ab"]
                .iter()
                .all(|name| state_dir.join(format!("{name}.json")).is_file())
                .then_some(())
        },
    )
    .await;

    weir.kill9();
    within(Duration::from_secs(30), "restart", weir.restart()).await;
    for (old, name) in before.iter().zip(["paused", "ab"]) {
        let new = weir.status(name).await;
        for key in KEPT {
            assert_eq!(
                new[key], old[key],
                "route {name}: `{key}` changed across the removal and a restart\nbefore: {old:#}\nafter: {new:#}"
            );
        }
    }
}
