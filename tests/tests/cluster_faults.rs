//! Bad input and faults of weir on Kubernetes (issue 7, "Bad input and
//! faults"; SPEC section 10), end to end: real `weir run` replicas against
//! the test API server. A CanaryRoute that does not validate, a Service
//! that does not exist, nonsense patched into a status by hand, an API
//! server unreachable at start or lost later: each is reported where an
//! operator looks (conditions, Events, the log, `/readyz`) and costs no
//! other route a request.
//!
//! One replica where the scenario needs no other; time limits are SPEC's
//! figures plus slack for a loaded 2-core machine.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use weir_e2e::{
    Cluster, Counts, FakeUpstream, canary_weight, count, get, replica_name, rollout_gauges,
    send_many, step_index, wait_until,
};

const NAMESPACE: &str = "shop";

/// From a change in the API server to weir acting on it.
const ACT_LIMIT: Duration = Duration::from_secs(20);

/// How many answers in a row must agree before a replica counts as
/// serving one way.
const IN_A_ROW: u64 = 20;

fn service(name: &str) -> Value {
    json!({"name": name, "port": 80})
}

/// `n` requests to replica `i`'s `path`, over two connections.
async fn sample(cluster: &Cluster, i: usize, path: &str, n: u64) -> Counts {
    send_many(cluster.replica(i).addrs.http, path, &[], n, 2)
        .await
        .unwrap_or_else(|e| panic!("requests to {}: {e}", replica_name(i)))
}

/// Waits until [`IN_A_ROW`] answers in a row from replica `i` come from
/// `upstream` with 200.
async fn wait_serving_only(cluster: &Cluster, i: usize, path: &str, upstream: &str) {
    let what = format!("{} to answer {path} only from {upstream}", replica_name(i));
    wait_until(ACT_LIMIT, &what, || async {
        let counts = sample(cluster, i, path, IN_A_ROW).await;
        (count(&counts, upstream, 200) == IN_A_ROW).then_some(())
    })
    .await;
}

/// The condition of `type_` in `status`, if any.
fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(status: &Value, type_: &str, naming: &str) -> bool {
    condition(status, type_).is_some_and(|c| {
        c["status"] == "True"
            && c["reason"] == type_
            && c["message"].as_str().is_some_and(|m| m.contains(naming))
    })
}

/// The Warning Events of `reason` about CanaryRoute `name`.
fn events_of(cluster: &Cluster, name: &str, reason: &str) -> Vec<Value> {
    cluster
        .events(NAMESPACE)
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == name)
        .collect()
}

async fn readyz(cluster: &Cluster, i: usize) -> Option<u16> {
    get(cluster.replica(i).addrs.admin, "/readyz")
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_route_that_does_not_validate_gets_a_condition_and_one_event_and_the_others_serve()
{
    let v1 = FakeUpstream::start("v1").await;
    let v1_new = FakeUpstream::start("v1-new").await;
    let mut cluster = Cluster::start(1, "").await;
    cluster.add_service(NAMESPACE, "checkout-v1", 80);
    cluster.set_endpoints(NAMESPACE, "checkout-v1", &[(v1.addr, true, true, false)]);
    cluster.apply_canary_route(
        NAMESPACE,
        "checkout",
        json!({"pathPrefix": "/", "stable": {"revision": "v1", "service": service("checkout-v1")}}),
    );
    cluster.apply_canary_route(
        NAMESPACE,
        "broken",
        json!({
            "pathPrefix": "/broken",
            "stable": {"revision": "v1", "service": service("checkout-v1")},
            "canary": {"revision": "v2", "service": service("checkout-v1")},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {"duration": "soon"}}]},
        }),
    );

    // A field this weir does not know (as from a newer CRD: the test API
    // server, like a cluster whose CRD is newer than weir, stores it)
    // makes that object Invalid, naming the field; the watch of every
    // CanaryRoute goes on.
    cluster.apply_canary_route(
        NAMESPACE,
        "newer",
        json!({
            "pathPrefix": "/newer",
            "stable": {"revision": "v1", "service": service("checkout-v1")},
            "trafficMirror": {"percent": 5},
        }),
    );
    cluster
        .wait_status(
            NAMESPACE,
            "newer",
            ACT_LIMIT,
            "an Invalid condition naming the unknown field",
            |s| is_true(s, "Invalid", "trafficMirror"),
        )
        .await;

    let field = "spec.strategy.steps[1].pause.duration";
    let status = cluster
        .wait_status(
            NAMESPACE,
            "broken",
            ACT_LIMIT,
            "an Invalid condition",
            |s| is_true(s, "Invalid", field),
        )
        .await;
    let invalid = condition(&status, "Invalid").expect("the condition");
    assert!(invalid["lastTransitionTime"].is_string(), "{status:#}");
    // Never valid, it is not served, and not Ready.
    cluster
        .wait_status(
            NAMESPACE,
            "broken",
            ACT_LIMIT,
            "Ready False, not served",
            |s| {
                condition(s, "Ready")
                    .is_some_and(|c| c["status"] == "False" && c["reason"] == "NotServed")
            },
        )
        .await;
    wait_serving_only(&cluster, 0, "/", "v1").await;
    let events = wait_until(ACT_LIMIT, "the Invalid Event", || async {
        let events = events_of(&cluster, "broken", "Invalid");
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0]["type"], "Warning", "{events:#?}");
    assert!(
        events[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains(field)),
        "{events:#?}"
    );

    // Later changes recompile the routes; the problem is told once.
    cluster.set_endpoints(
        NAMESPACE,
        "checkout-v1",
        &[(v1_new.addr, true, true, false)],
    );
    wait_serving_only(&cluster, 0, "/", "v1-new").await;
    assert_eq!(
        events_of(&cluster, "broken", "Invalid").len(),
        1,
        "one Event per problem"
    );

    // Fixed, the condition turns False and the route serves (from a
    // Service of its own, told apart from the `/` route's).
    let fixed = FakeUpstream::start("fixed").await;
    cluster.add_service(NAMESPACE, "fixed-v1", 80);
    cluster.set_endpoints(NAMESPACE, "fixed-v1", &[(fixed.addr, true, true, false)]);
    cluster.apply_canary_route(
        NAMESPACE,
        "broken",
        json!({
            "pathPrefix": "/broken",
            "stable": {"revision": "v1", "service": service("fixed-v1")},
        }),
    );
    cluster
        .wait_status(
            NAMESPACE,
            "broken",
            ACT_LIMIT,
            "Invalid turned False and Ready True",
            |s| {
                condition(s, "Invalid").is_some_and(|c| c["status"] == "False")
                    && condition(s, "Ready").is_some_and(|c| c["status"] == "True")
            },
        )
        .await;
    wait_serving_only(&cluster, 0, "/broken", "fixed").await;

    // The status keeps the spec served; broken again, a replica started
    // since serves it all the same (not only the one that remembers it).
    let valid_generation =
        cluster.canary_route(NAMESPACE, "broken")["metadata"]["generation"].clone();
    cluster
        .wait_status(
            NAMESPACE,
            "broken",
            ACT_LIMIT,
            "lastValidSpec of the fixed generation",
            |s| {
                s["lastValidSpec"]["generation"] == valid_generation
                    && s["lastValidSpec"]["spec"]["pathPrefix"] == "/broken"
            },
        )
        .await;
    cluster.apply_canary_route(
        NAMESPACE,
        "broken",
        json!({
            "pathPrefix": "/broken",
            "stable": {"revision": "v1", "service": service("fixed-v1")},
            "strategy": {"steps": [{"setWeight": 150}]},
        }),
    );
    cluster
        .wait_status(
            NAMESPACE,
            "broken",
            ACT_LIMIT,
            "an Invalid condition for the new edit",
            |s| is_true(s, "Invalid", "spec.strategy.steps[0]"),
        )
        .await;
    cluster.kill(0);
    cluster.restart(0).await;
    wait_serving_only(&cluster, 0, "/broken", "fixed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_service_answers_503_for_its_role_until_it_exists() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let cluster = Cluster::start(1, "").await;
    cluster.add_service(NAMESPACE, "checkout-v1", 80);
    cluster.set_endpoints(NAMESPACE, "checkout-v1", &[(v1.addr, true, true, false)]);
    cluster.apply_canary_route(
        NAMESPACE,
        "checkout",
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": service("checkout-v1")},
            "canary": {"revision": "v2", "service": service("checkout-v2"), "weight": 50},
            "canaryByHeader": {"name": "x-canary", "value": "always"},
        }),
    );

    cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "a ServiceMissing condition",
            |s| is_true(s, "ServiceMissing", "shop/checkout-v2"),
        )
        .await;
    let canary = [("x-canary", "always")];
    let http = cluster.replica(0).addrs.http;
    let counts = send_many(http, "/", &canary, 10, 1)
        .await
        .expect("requests");
    let answered_503: u64 = counts.values().filter_map(|s| s.get(&503)).sum();
    assert_eq!(answered_503, 10, "the canary role answers 503: {counts:?}");
    let metrics = cluster.replica(0).metrics().await;
    let errors = metrics
        .get(
            "weir_http_requests_total",
            &[
                ("route", "shop/checkout"),
                ("role", "canary"),
                ("code", "503"),
            ],
        )
        .unwrap_or(0.0);
    assert!(errors >= 10.0, "503s counted against the canary: {errors}");
    wait_until(ACT_LIMIT, "the ServiceMissing Event", || async {
        (!events_of(&cluster, "checkout", "ServiceMissing").is_empty()).then_some(())
    })
    .await;

    // The Service made, with no endpoint yet: that is said in turn.
    cluster.add_service(NAMESPACE, "checkout-v2", 80);
    cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "ServiceMissing turned False, EndpointsMissing True",
            |s| {
                condition(s, "ServiceMissing").is_some_and(|c| c["status"] == "False")
                    && is_true(s, "EndpointsMissing", "shop/checkout-v2")
            },
        )
        .await;
    cluster.set_endpoints(NAMESPACE, "checkout-v2", &[(v2.addr, true, true, false)]);
    cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "EndpointsMissing turned False",
            |s| {
                condition(s, "EndpointsMissing")
                    .is_some_and(|c| c["status"] == "False" && c["reason"] == "EndpointsFound")
            },
        )
        .await;
    wait_until(ACT_LIMIT, "the canary role to answer from v2", || async {
        let counts = send_many(http, "/", &canary, IN_A_ROW, 1).await.ok()?;
        (count(&counts, "v2", 200) == IN_A_ROW).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsense_patched_into_a_status_is_refused_with_a_condition_and_written_back() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let cluster = Cluster::start(2, "").await;
    cluster.add_checkout_services(NAMESPACE, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        "checkout",
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": service("checkout-v1")},
            "canary": {"revision": "v2", "service": service("checkout-v2")},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        }),
    );
    cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "Paused at step 1, 50 %",
            |s| s["phase"] == "Paused" && step_index(s) == Some(1) && s["canaryWeight"] == 50.0,
        )
        .await;

    for (patch, field) in [
        (json!({"status": {"stepIndex": 99}}), "stepIndex"),
        (json!({"status": {"phase": "Exploded"}}), "phase"),
        // A wrong type, as an older CRD's schema lets through: kube could
        // not decode the object, and every list of CanaryRoutes failed.
        (json!({"status": {"canaryWeight": "fifty"}}), "canaryWeight"),
    ] {
        cluster
            .patch_status(NAMESPACE, "checkout", patch.clone())
            .await;
        let what = format!("{patch}: refused and the state written back");
        let status = cluster
            .wait_status(NAMESPACE, "checkout", ACT_LIMIT, &what, |s| {
                s["phase"] == "Paused"
                    && step_index(s) == Some(1)
                    && condition(s, "StatusRefused").is_some_and(|c| {
                        c["status"] == "True"
                            && c["message"].as_str().is_some_and(|m| m.contains(field))
                    })
            })
            .await;
        assert_eq!(canary_weight(&status), 50.0, "{status:#}");
        for i in 0..cluster.len() {
            let healthz = get(cluster.replica(i).addrs.admin, "/healthz")
                .await
                .unwrap_or_else(|e| panic!("{}: /healthz: {e}", replica_name(i)));
            assert_eq!(healthz.status, 200, "{}: /healthz", replica_name(i));
            let counts = sample(&cluster, i, "/", IN_A_ROW).await;
            let answered = count(&counts, "v1", 200) + count(&counts, "v2", 200);
            assert_eq!(answered, IN_A_ROW, "{} serves: {counts:?}", replica_name(i));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_unreachable_at_start_keeps_weir_unready_until_it_answers() {
    let v1 = FakeUpstream::start("v1").await;
    let mut cluster = Cluster::without_replicas().await;
    cluster.add_service(NAMESPACE, "checkout-v1", 80);
    cluster.set_endpoints(NAMESPACE, "checkout-v1", &[(v1.addr, true, true, false)]);
    cluster.apply_canary_route(
        NAMESPACE,
        "checkout",
        json!({"pathPrefix": "/", "stable": {"revision": "v1", "service": service("checkout-v1")}}),
    );
    cluster.api.set_down(true);
    let i = cluster.start_replica_unready("");

    // The first request at start asks whether the Gateway API is served
    // (the config does not say); the watchers follow its answer.
    wait_until(ACT_LIMIT, "the log to say it cannot watch", || async {
        let log = cluster.replica(i).log();
        let watching = log.contains("cannot watch") && log.contains("retrying");
        let asking = log.contains("asking again every 2 s before watching");
        (watching || asking).then_some(())
    })
    .await;
    wait_until(ACT_LIMIT, "/readyz to answer", || async {
        readyz(&cluster, i).await
    })
    .await;
    assert_eq!(
        readyz(&cluster, i).await,
        Some(503),
        "not ready while the API server is down"
    );

    cluster.api.set_down(false);
    wait_until(ACT_LIMIT, "/readyz to answer 200", || async {
        (readyz(&cluster, i).await == Some(200)).then_some(())
    })
    .await;
    cluster.set_peer(i, cluster.replica(i).addrs.admin, true);
    wait_serving_only(&cluster, i, "/", "v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_lost_later_keeps_the_last_snapshot_and_no_step_advances() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let cluster = Cluster::start(1, "").await;
    cluster.add_checkout_services(NAMESPACE, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        "checkout",
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": service("checkout-v1")},
            "canary": {"revision": "v2", "service": service("checkout-v2")},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {"duration": "3s"}}, {"setWeight": 100}]},
        }),
    );
    let status = cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "the timed pause at 50 %",
            |s| {
                s["phase"] == "Paused" && step_index(s) == Some(1) && s["pauseDeadline"].is_string()
            },
        )
        .await;
    cluster.api.set_down(true);
    let deadline = status["pauseDeadline"].as_str().expect("a deadline");
    let deadline_ms = Timestamp::from_str(deadline)
        .expect("an RFC 3339 deadline")
        .as_millisecond();
    let deadline_ms = u64::try_from(deadline_ms).expect("after 1970");

    // Past the pause's end, the replica keeps step 1 at 50 % and serves it.
    let weir = cluster.replica(0);
    let mut rounds = 0;
    let started = tokio::time::Instant::now();
    loop {
        rounds += 1;
        let counts = sample(&cluster, 0, "/", IN_A_ROW).await;
        let served = count(&counts, "v1", 200) + count(&counts, "v2", 200);
        assert_eq!(served, IN_A_ROW, "every request answered: {counts:?}");
        let metrics = weir.metrics().await;
        let (phase, step, weight) = rollout_gauges(&metrics, "shop/checkout");
        assert_eq!(
            (phase.as_str(), step, weight),
            ("Paused", Some(1.0), Some(50.0)),
            "no step advances while the API server is down"
        );
        if now_ms() > deadline_ms + 2000 {
            break;
        }
        assert!(
            started.elapsed() < ACT_LIMIT,
            "the pause's deadline is {deadline} and has not passed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = sample(&cluster, 0, "/", 60).await;
    assert!(
        count(&counts, "v1", 200) > 0 && count(&counts, "v2", 200) > 0,
        "both roles serve at 50 %: {counts:?}"
    );
    assert!(rounds > 1, "the replica was asked more than once");

    cluster.api.set_down(false);
    cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "the rollout resumes",
            |s| s["phase"] == "Promoted" && canary_weight(s) == 100.0,
        )
        .await;
    wait_serving_only(&cluster, 0, "/", "v2").await;
}

/// A decision whose status write fails without a conflict (an API server
/// error, nothing written) brings no watch event; the leader tries it again
/// by itself every second, so a command waits for the API server, not for
/// some unrelated change in the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_whose_status_write_failed_is_made_again_without_a_watch_event() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let cluster = Cluster::start(1, "").await;
    cluster.add_checkout_services(NAMESPACE, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        "checkout",
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": service("checkout-v1")},
            "canary": {"revision": "v2", "service": service("checkout-v2")},
            "strategy": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]},
        }),
    );
    cluster
        .wait_status(NAMESPACE, "checkout", ACT_LIMIT, "the pause at 20 %", |s| {
            s["phase"] == "Paused" && step_index(s) == Some(1)
        })
        .await;

    // The leader's write of the promotion fails five times in a row.
    cluster.api.fail_state_writes(5);
    cluster
        .patch_status(NAMESPACE, "checkout", json!({"status": {"promote": true}}))
        .await;
    cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            ACT_LIMIT,
            "the promotion written",
            |s| step_index(s) == Some(3) && canary_weight(s) == 60.0,
        )
        .await;
    let failed = cluster
        .api
        .requests()
        .iter()
        .filter(|r| r.status == 500 && r.path.ends_with("/checkout/status"))
        .count();
    assert_eq!(failed, 5, "five state writes were failed");
}
