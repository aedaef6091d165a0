//! The election's requests against kube's mocked client: the test plays the
//! API server, taking the requests one by one and answering them; a request
//! that does not come fails the test at the guard's deadline.

use serde_json::{Value, json};

use super::*;
use crate::cluster::mock_api::{self, next};

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/weir/leases/weir-leader";

/// The Lease as the API server holds it: `holder`'s, changed hands
/// `transitions` times.
fn lease(holder: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "weir-leader", "namespace": "weir", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "leaseTransitions": transitions,
            "acquireTime": "2024-01-01T00:00:00.000000Z",
            "renewTime": "2024-01-01T00:00:00.000000Z",
        },
    })
}

#[test]
fn transitions_count_changes_of_hands_and_stay_a_valid_int32() {
    for (current, taken_over, expected) in [
        (None, false, 0),
        (None, true, 1),
        (Some(0), false, 0),
        (Some(3), false, 3),
        (Some(3), true, 4),
        (Some(i32::MAX - 1), true, i32::MAX),
        (Some(i32::MAX), true, i32::MAX),
        (Some(i32::MAX), false, i32::MAX),
        // Not something an API server keeps, but never made worse.
        (Some(-4), true, 1),
        (Some(i32::MIN), false, 0),
    ] {
        assert_eq!(
            next_transitions(current, taken_over),
            expected,
            "{current:?}, taken over: {taken_over}"
        );
    }
}

/// A Lease whose `leaseTransitions` is already `i32::MAX` (which the API
/// server accepts) is taken over with the count kept at `i32::MAX`: no
/// overflow in the election task, no negative count the server refuses.
#[tokio::test(start_paused = true)]
async fn a_takeover_at_the_largest_transition_count_keeps_it_there() {
    let (client, mut handle) = mock_api::client();
    let mut elector = Elector::new(client, LeaseConfig::new("weir", "weir-leader", "weir-1"));
    let held = lease("weir-0", i32::MAX);

    // weir-0's record is new to this candidate: not expired yet.
    let server = async {
        let get = next(&mut handle).await;
        assert_eq!(
            (&get.method, get.path.as_str()),
            (&http::Method::GET, LEASE_PATH)
        );
        get.answer(200, &held);
    };
    let (taken, ()) = tokio::join!(elector.try_acquire_or_renew(), server);
    assert!(!taken.expect("the Lease is read"), "weir-0 holds it");

    // The same record for the lease duration by this candidate's clock.
    tokio::time::advance(Duration::from_secs(15)).await;
    let server = async {
        let get = next(&mut handle).await;
        assert_eq!(get.method, http::Method::GET);
        get.answer(200, &held);
        let put = next(&mut handle).await;
        assert_eq!(
            (&put.method, put.path.as_str()),
            (&http::Method::PUT, LEASE_PATH)
        );
        let written = put.body.clone();
        put.answer(200, &written);
        written
    };
    let (taken, written) = tokio::join!(elector.try_acquire_or_renew(), server);
    assert!(taken.expect("the Lease is replaced"), "weir-1 took it over");
    assert_eq!(written["spec"]["holderIdentity"], "weir-1");
    assert_eq!(written["spec"]["leaseTransitions"], i32::MAX);
    assert_eq!(written["metadata"]["resourceVersion"], "7");
}

/// The API server's refusal of a read the ServiceAccount may not make.
fn forbidden() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "leases.coordination.k8s.io \"weir-leader\" is forbidden",
        "reason": "Forbidden", "code": 403,
    })
}

/// A candidate whose reads of the Lease fail (refused, then unanswered)
/// keeps the leader it last read and when it last heard from it: the
/// guardrail measures the leader's silence from there, not from the
/// first failed read.
#[tokio::test(start_paused = true)]
async fn a_failed_read_keeps_the_leader_and_when_it_was_last_heard() {
    let (client, mut handle) = mock_api::client();
    let elector = Elector::new(client, LeaseConfig::new("weir", "weir-leader", "weir-1"));
    let (leadership_tx, leadership) = watch::channel(Leadership::default());
    let (stop, stopping) = watch::channel(false);
    let running = tokio::spawn(elector.run(leadership_tx, stopping));

    let read = next(&mut handle).await;
    read.answer(200, &lease("weir-0", 0));
    // Each round publishes before it sleeps and reads again.
    let read = next(&mut handle).await;
    let heard = leadership.borrow().clone();
    assert_eq!(heard.leader.as_deref(), Some("weir-0"));
    assert!(!heard.is_leader);
    assert!(heard.heard_at.is_some(), "weir-0 was heard");

    read.answer(403, &forbidden());
    let unanswered = next(&mut handle).await;
    assert_eq!(
        *leadership.borrow(),
        heard,
        "a refused read tells nothing new"
    );

    // No answer: the round gives up after half the renew deadline.
    let read = next(&mut handle).await;
    drop(unanswered);
    assert_eq!(
        *leadership.borrow(),
        heard,
        "nor does a read without answer"
    );

    // The record stays unchanged for the lease duration by this replica's
    // clock: weir-0 has expired, whatever the reads answer.
    read.answer(403, &forbidden());
    for _ in 0..5 {
        next(&mut handle).await.answer(403, &forbidden());
    }
    let read = next(&mut handle).await;
    assert_eq!(
        *leadership.borrow(),
        Leadership::default(),
        "weir-0 expired"
    );
    stop.send_replace(true);
    drop(read);
    tokio::time::timeout(mock_api::GUARD, running)
        .await
        .expect("the election stops")
        .expect("the election ran");
}

/// The election's lines in `text` at `level`.
fn count(text: &str, level: &str) -> usize {
    text.lines()
        .filter(|line| line.contains(level) && line.contains("weir_control::cluster::lease:"))
        .count()
}

/// A follower that may not read the Lease (a sidecar's ServiceAccount has
/// no Role in weir's namespace) warns once, not at every read; a read that
/// succeeds again says so, and a new run of failures warns again.
#[tokio::test(start_paused = true)]
async fn a_follower_refused_the_lease_warns_once_per_run_of_failures() {
    let captured = crate::test_log::capture_this_thread();

    let (client, mut handle) = mock_api::client();
    let elector = Elector::new(client, LeaseConfig::new("weir", "weir-leader", "weir-9"));
    let (leadership_tx, leadership) = watch::channel(Leadership::default());
    let (stop, stopping) = watch::channel(false);
    let running = tokio::spawn(elector.observe(leadership_tx, stopping));

    for _ in 0..5 {
        let read = next(&mut handle).await;
        assert_eq!(
            (&read.method, read.path.as_str()),
            (&http::Method::GET, LEASE_PATH)
        );
        read.answer(403, &forbidden());
    }
    next(&mut handle).await.answer(200, &lease("weir-0", 0));
    next(&mut handle).await.answer(403, &forbidden());
    let read = next(&mut handle).await;
    assert_eq!(leadership.borrow().leader.as_deref(), Some("weir-0"));
    stop.send_replace(true);
    read.answer(403, &forbidden());
    tokio::time::timeout(mock_api::GUARD, running)
        .await
        .expect("the follower stops")
        .expect("the follower ran");

    let text = captured.text();
    assert_eq!(count(&text, " WARN "), 2, "one per run of failures: {text}");
    assert_eq!(count(&text, " DEBUG "), 5, "the other failures: {text}");
    assert_eq!(count(&text, " INFO "), 1, "read again: {text}");
}

/// A leader whose renewals get no answer stops leading at its renew
/// deadline (10 s after its last renewal), not when a hung round ends
/// (it led up to 14 s): other candidates may take over 15 s after they
/// last saw its record.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_hang_stops_leading_at_the_renew_deadline() {
    let (client, mut handle) = mock_api::client();
    let elector = Elector::new(client, LeaseConfig::new("weir", "weir-leader", "weir-1"));
    let (leadership_tx, leadership) = watch::channel(Leadership::default());
    let (stop, stopping) = watch::channel(false);
    let asked_at = tokio::time::Instant::now();
    let running = tokio::spawn(elector.run(leadership_tx, stopping));

    // First round: no Lease yet; this candidate creates it and leads.
    let get = next(&mut handle).await;
    assert_eq!(get.method, http::Method::GET);
    get.answer(
        404,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "leases.coordination.k8s.io \"weir-leader\" not found",
            "reason": "NotFound", "code": 404,
        }),
    );
    let post = next(&mut handle).await;
    assert_eq!(post.method, http::Method::POST);
    let mut created = post.body.clone();
    created["metadata"]["resourceVersion"] = json!("1");
    post.answer(201, &created);

    // From now on the API server takes the requests and never answers.
    let hung = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Some(request) = handle.next_request().await {
            kept.push(request);
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        leadership.borrow().is_leader,
        "weir-1 leads after creating the Lease"
    );

    // The renewal counts from before its request was sent, at the latest.
    tokio::time::sleep_until(asked_at + Duration::from_millis(10_050)).await;
    let late = leadership.borrow().is_leader;
    stop.send_replace(true);
    hung.abort();
    let _ = tokio::time::timeout(mock_api::GUARD, running).await;
    assert!(
        !late,
        "still leading 10 s after the last renewal was asked for (renew deadline 10 s)"
    );
}
