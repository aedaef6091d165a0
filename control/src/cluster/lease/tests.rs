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
