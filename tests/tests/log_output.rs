//! A log that cannot be written costs its lines and nothing else: with
//! stderr on `/dev/full` (as a closed pipe, a full disk or a terminal gone),
//! weir starts, proxies and answers `502` for a dead upstream, reloads,
//! aborts a failing canary, takes commands, and drains on SIGTERM to exit 0.

use std::time::Duration;

use weir_e2e::{
    ClosedPort, Load, LoadtestUpstream, Route, Step, Strategy, Weir, WeirConfig, canary_weight,
    get, phase, within,
};

const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_be_written_loses_its_lines_and_nothing_else() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &["--error-rate", "1"]);
    let dead = ClosedPort::bind();
    let strategy = Strategy::judged([Step::SetWeight(50.0), Step::Pause(None)]);
    let mut weir = Weir::start(
        WeirConfig::new([
            Route::new("dead", &[dead.addr]).path_prefix("/dead"),
            Route::rollout("web", &[stable.addr], &[canary.addr], strategy),
        ])
        .stderr_unwritable(),
    )
    .await;

    let answer = get(weir.addrs.http, "/dead").await.expect("an answer");
    assert_eq!(answer.status, 502, "a dead upstream's request is answered");

    // The failing canary is judged and aborted: each judgement logs.
    let load = Load::start(weir.addrs.http, "/", 200, 8);
    let s = weir
        .wait_status("web", LIMIT, "Aborted", |s| phase(s) == "Aborted")
        .await;
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    drop(load);
    let retried = weir.command("web", "retry", None).await;
    assert_eq!(retried.status, 200, "{}", retried.text());

    let reload = within(LIMIT, "reload", weir.admin().post("/api/v1/reload", None))
        .await
        .expect("an answer");
    assert_eq!(reload.status, 200, "{}", reload.text());

    weir.sigterm();
    let exit = weir.wait_exit(LIMIT).await;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
