//! A transition whose state file cannot be written does not take effect
//! (the command answers 500 naming the route, the rollout stays as it was),
//! except an abort, which takes effect anyway; the proxy keeps serving.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, canary_weight, count, phase, send_many,
    step_index, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_write_refuses_the_transition_but_not_an_abort() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = Strategy::unjudged([Step::SetWeight(40.0), Step::Pause(None)]);
    let config = WeirConfig::new([Route::rollout("web", &[v1.addr], &[v2.addr], strategy)]);
    let weir = Weir::start(config).await;

    // The state is written to a temporary file first: a directory in its
    // place makes every write of route web fail (even for root).
    let blocker = weir.dir().join("state").join(".web.json.tmp");
    std::fs::create_dir(&blocker).unwrap();

    let r = weir.command("web", "pause", None).await;
    assert_eq!(
        r.status,
        500,
        "pause with an unwritable state: {}",
        r.text()
    );
    let message = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("cannot persist the state of route web"),
        "{message}"
    );
    let s = weir.status("web").await;
    assert_eq!(
        (phase(&s), step_index(&s), s["held"].as_bool()),
        ("Progressing", Some(0), Some(false)),
        "a transition that was not written took effect: {s:#}"
    );
    assert_eq!(canary_weight(&s), 40.0, "{s:#}");

    // Traffic still flows at the weight in force.
    let c = within(
        Duration::from_secs(30),
        "requests",
        send_many(weir.addrs.http, "/", &[], 40, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "v1", 200) + count(&c, "v2", 200), 40, "{c:?}");

    // An abort takes effect even though it cannot be written.
    let r = weir.command("web", "abort", None).await;
    assert_eq!(
        r.status,
        200,
        "abort with an unwritable state: {}",
        r.text()
    );
    let s = r.json();
    assert_eq!((phase(&s), canary_weight(&s)), ("Aborted", 0.0), "{s:#}");
    // The answer says the abort is not yet written.
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("not yet written to")),
        "{s:#}"
    );
    let hits = v2.hits();
    let c = within(
        Duration::from_secs(30),
        "requests after abort",
        send_many(weir.addrs.http, "/", &[], 40, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "v1", 200), 40, "{c:?}");
    assert_eq!(v2.hits(), hits, "the canary got traffic after the abort");

    // Once the state can be written, it is, and the status stops saying so.
    std::fs::remove_dir(&blocker).unwrap();
    let s = weir_e2e::wait_until(Duration::from_secs(30), "the abort written", || async {
        let s = weir.status("web").await;
        (!s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not yet written"))
        .then_some(s)
    })
    .await;
    assert_eq!((phase(&s), canary_weight(&s)), ("Aborted", 0.0), "{s:#}");
    let written = std::fs::read_to_string(weir.dir().join("state").join("web.json")).unwrap();
    assert!(written.contains("\"Aborted\""), "{written}");
}

/// A pause's end that cannot be written leaves the rollout where it was,
/// and its status says why, until the write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_step_that_cannot_be_written_says_so_in_the_status() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = Strategy::unjudged([Step::Pause(Some("5s".into())), Step::SetWeight(60.0)]);
    let config = WeirConfig::new([Route::rollout("web", &[v1.addr], &[v2.addr], strategy)]);
    let weir = Weir::start(config).await;
    let blocker = weir.dir().join("state").join(".web.json.tmp");
    std::fs::create_dir(&blocker).unwrap();

    let s = weir_e2e::wait_until(Duration::from_secs(30), "the status to tell", || async {
        let s = weir.status("web").await;
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot persist the state of route web"))
            .then_some(s)
    })
    .await;
    assert_eq!(
        (phase(&s), step_index(&s), canary_weight(&s)),
        ("Paused", Some(0), 0.0),
        "{s:#}"
    );

    std::fs::remove_dir(&blocker).unwrap();
    let s = weir_e2e::wait_until(Duration::from_secs(30), "the next step", || async {
        let s = weir.status("web").await;
        (step_index(&s) == Some(1)).then_some(s)
    })
    .await;
    assert_eq!(
        (phase(&s), canary_weight(&s)),
        ("Progressing", 60.0),
        "{s:#}"
    );
    assert!(
        !s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot persist"),
        "{s:#}"
    );
}
