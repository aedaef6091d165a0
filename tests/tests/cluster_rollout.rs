//! Three `weir run` replicas acting as one against the test API server
//! (issue 7, layer 3; SPEC section 10). Each scenario drives the cluster
//! from outside, as an operator and the Kubernetes control plane would:
//! CanaryRoutes and their Services' EndpointSlices in the API server,
//! requests to each replica's listener (the `x-upstream-name` header tells
//! which role answered), `kill -9` and SIGSTOP of the leader.
//!
//! Time limits are SPEC's figures plus slack for a loaded 2-core machine;
//! the measured times are printed (`--nocapture`).

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::jiff::Timestamp;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::time::Instant;
use weir_e2e::{
    Cluster, Counts, FAILED, FakeUpstream, Load, LoadtestUpstream, binomial_bounds, count,
    replica_name, send_many, wait_until,
};

/// The CanaryRoute's namespace and name; its route name is `shop/checkout`.
const NAMESPACE: &str = "shop";
const ROUTE: &str = "checkout";

/// The first status a replica writes after it starts (SPEC: `/readyz` after
/// the first full list; a rollout starts at once).
const START_LIMIT: Duration = Duration::from_secs(20);

/// From a status write to every replica serving it. SPEC: within 1 s.
const APPLY_LIMIT: Duration = Duration::from_secs(5);

/// From the leader's death to another replica holding the Lease. SPEC:
/// within 20 s.
const FAILOVER_LIMIT: Duration = Duration::from_secs(25);

/// How many answers in a row must agree before a replica counts as serving
/// a weight of 0 or 100.
const IN_A_ROW: u64 = 20;

fn route_spec(steps: Value, analysis: Option<Value>) -> Value {
    let mut strategy = json!({"steps": steps});
    if let Some(analysis) = analysis {
        strategy["analysis"] = analysis;
    }
    json!({
        "pathPrefix": "/",
        "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
        "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
        "strategy": strategy,
    })
}

/// Services `checkout-v1` and `checkout-v2`, each with one ready endpoint.
fn publish_services(cluster: &Cluster, v1: SocketAddr, v2: SocketAddr) {
    cluster.add_service(NAMESPACE, "checkout-v1", 80);
    cluster.add_service(NAMESPACE, "checkout-v2", 80);
    cluster.set_endpoints(NAMESPACE, "checkout-v1", &[(v1, true, true, false)]);
    cluster.set_endpoints(NAMESPACE, "checkout-v2", &[(v2, true, true, false)]);
}

/// `n` requests to replica `i` over two connections, by upstream and status.
async fn sample(cluster: &Cluster, i: usize, n: u64) -> Counts {
    send_many(cluster.replica(i).addrs.http, "/", &[], n, 2)
        .await
        .unwrap_or_else(|e| panic!("requests to {}: {e}", replica_name(i)))
}

/// Waits until [`IN_A_ROW`] answers in a row from replica `i` all come from
/// `upstream` with 200; returns how long that took.
async fn wait_serving_only(
    cluster: &Cluster,
    i: usize,
    upstream: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    let what = format!("{} to answer only from {upstream}", replica_name(i));
    wait_until(limit, &what, || async {
        let counts = sample(cluster, i, IN_A_ROW).await;
        (count(&counts, upstream, 200) == IN_A_ROW).then_some(())
    })
    .await;
    started.elapsed()
}

/// Asserts that `counts` is all 200 and that `v2`'s share fits `weight` %.
fn assert_split(counts: &Counts, weight: f64, who: &str) {
    let v1 = count(counts, "v1", 200);
    let v2 = count(counts, "v2", 200);
    let total: u64 = counts.values().flat_map(|s| s.values()).sum();
    assert_eq!(
        v1 + v2,
        total,
        "{who}: every request answered 200: {counts:?}"
    );
    let bounds = binomial_bounds(total, weight / 100.0);
    assert!(
        bounds.contains(v2),
        "{who}: {v2} of {total} to the canary at {weight} % (expected {}..={}): {counts:?}",
        bounds.lo,
        bounds.hi
    );
}

fn step_index(status: &Value) -> Option<u64> {
    status["stepIndex"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_advances_and_every_replica_serves_the_leaders_weight_within_a_second() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let cluster = Cluster::start(3, "").await;
    publish_services(&cluster, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        ROUTE,
        route_spec(
            json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]),
            None,
        ),
    );

    let status = cluster
        .wait_status(
            NAMESPACE,
            ROUTE,
            START_LIMIT,
            "Paused at step 1, 50 %",
            |s| s["phase"] == "Paused" && step_index(s) == Some(1) && s["canaryWeight"] == 50.0,
        )
        .await;
    let leader = cluster.wait_leader(START_LIMIT).await;
    assert_eq!(status["leader"], replica_name(leader), "{status:#}");
    assert_eq!(status["stepCount"], 3);

    // Every replica splits by the status weight, leader or not.
    for i in 0..cluster.len() {
        // Weights apply within 1 s of the write; give the last replica that.
        wait_until(APPLY_LIMIT, "both roles served", || async {
            let counts = sample(&cluster, i, 40).await;
            (count(&counts, "v1", 200) > 0 && count(&counts, "v2", 200) > 0).then_some(())
        })
        .await;
        assert_split(&sample(&cluster, i, 400).await, 50.0, &replica_name(i));
    }

    // promote, like `kubectl patch --subresource=status`: the leader goes to
    // the last step (100 %) and every replica follows the status.
    cluster
        .patch_status(NAMESPACE, ROUTE, json!({"status": {"promote": true}}))
        .await;
    cluster
        .wait_status(NAMESPACE, ROUTE, APPLY_LIMIT, "canaryWeight 100", |s| {
            s["canaryWeight"] == 100.0
        })
        .await;
    let written = Instant::now();
    let took =
        join_all((0..cluster.len()).map(|i| wait_serving_only(&cluster, i, "v2", APPLY_LIMIT)))
            .await;
    eprintln!(
        "from the status write (as seen by polling the API server) to each replica serving \
         100 %: {took:?} (write seen at {:?} ago)",
        written.elapsed()
    );
    let status = cluster
        .wait_status(NAMESPACE, ROUTE, APPLY_LIMIT, "Promoted", |s| {
            s["phase"] == "Promoted"
        })
        .await;
    assert_eq!(
        status["promote"], false,
        "the leader clears the request: {status:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_another_leads_within_20_s_and_continues_at_the_same_step() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let mut cluster = Cluster::start(3, "").await;
    publish_services(&cluster, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        ROUTE,
        route_spec(
            json!([
                {"setWeight": 30},
                {"pause": {"duration": "30s"}},
                {"setWeight": 60},
                {"pause": {}},
                {"setWeight": 100},
            ]),
            None,
        ),
    );
    let paused = cluster
        .wait_status(
            NAMESPACE,
            ROUTE,
            START_LIMIT,
            "the timed pause at 30 %",
            |s| {
                s["phase"] == "Paused"
                    && step_index(s) == Some(1)
                    && s["pauseStartTime"].is_string()
            },
        )
        .await;
    // When the pause began, by the leader's clock (this machine's): the
    // status may reach the API server a while after.
    let pause_started_ms = paused["pauseStartTime"]
        .as_str()
        .and_then(|t| Timestamp::from_str(t).ok())
        .and_then(|t| u64::try_from(t.as_millisecond()).ok())
        .unwrap_or_else(|| panic!("an RFC 3339 pauseStartTime: {paused:#}"));
    let pause_seen = Instant::now();
    let old = cluster.wait_leader(START_LIMIT).await;

    cluster.kill(old);
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..cluster.len()).filter(|i| *i != old).collect();

    // Without a leader the survivors keep serving the last weight.
    for &i in &survivors {
        assert_split(&sample(&cluster, i, 300).await, 30.0, &replica_name(i));
    }

    let new = cluster.wait_new_leader(old, FAILOVER_LIMIT).await;
    eprintln!(
        "failover: {} leads {:?} after {} was killed",
        replica_name(new),
        killed.elapsed(),
        replica_name(old)
    );
    // The new leader names itself in the status even though nothing else
    // changed (the rollout is in the middle of its pause).
    let resumed = cluster
        .wait_status(NAMESPACE, ROUTE, APPLY_LIMIT, "the new leader named", |s| {
            s["leader"] == replica_name(new)
        })
        .await;
    for field in [
        "rolloutId",
        "seq",
        "pauseStartTime",
        "stepIndex",
        "canaryWeight",
    ] {
        assert_eq!(
            resumed[field], paused[field],
            "{field} kept across the failover\nbefore: {paused:#}\nafter: {resumed:#}"
        );
    }

    // The new leader ends the pause at its original deadline (not 30 s after
    // it took over) and goes on to the next steps; no step index is seen
    // twice or skipped backwards.
    let mut seen = vec![1];
    let deadline = pause_seen + Duration::from_secs(30) + FAILOVER_LIMIT;
    let advanced = loop {
        let status = cluster.status(NAMESPACE, ROUTE);
        let step = step_index(&status).expect("a step while the rollout runs");
        if seen.last() != Some(&step) {
            seen.push(step);
        }
        if step == 3 && status["phase"] == "Paused" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not reach step 3 in time; steps seen {seen:?}; status:\n{status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pause_took = Duration::from_millis(now_ms().saturating_sub(pause_started_ms));
    eprintln!("the 30 s pause ended {pause_took:?} after its pauseStartTime");
    assert!(
        pause_took >= Duration::from_secs(29),
        "the pause ended early: {pause_took:?}"
    );
    assert!(
        pause_took < Duration::from_secs(40),
        "the pause was restarted by the new leader instead of keeping its deadline: {pause_took:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "steps went backwards: {seen:?}"
    );
    assert_eq!(advanced["canaryWeight"], 60.0);
    assert_eq!(advanced["leader"], replica_name(new));
    assert_eq!(advanced["seq"], paused["seq"], "the same rollout");
    for &i in &survivors {
        assert_split(&sample(&cluster, i, 300).await, 60.0, &replica_name(i));
    }

    // One rollout, started once: the new leader did not start it again.
    let started = cluster
        .events(NAMESPACE)
        .iter()
        .filter(|e| e["reason"] == "RolloutStarted")
        .count();
    assert_eq!(started, 1, "events: {:#?}", cluster.events(NAMESPACE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_across_the_replicas_is_aborted_from_the_summed_counters() {
    const PER_REPLICA: u64 = 55;
    const MIN_REQUESTS: u64 = 60;
    let v1 = FakeUpstream::start("v1").await;
    let v2 = LoadtestUpstream::start("v2", &["--error-rate", "0.5"]);
    let cluster = Cluster::start(3, "").await;
    publish_services(&cluster, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        ROUTE,
        route_spec(
            json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]),
            Some(json!({
                "interval": "1s",
                "window": "60s",
                "minRequests": MIN_REQUESTS,
                "maxErrorRate": 0.05,
                "compareToStable": false,
            })),
        ),
    );
    // With an analysis block the first step waits for a passing judgement,
    // at 50 %, with counters from every replica.
    cluster
        .wait_status(
            NAMESPACE,
            ROUTE,
            START_LIMIT,
            "50 % with 3/3 coverage",
            |s| s["canaryWeight"] == 50.0 && s["analysis"]["coverage"] == "3/3",
        )
        .await;

    // Fewer requests per replica than minRequests: no replica alone has
    // enough canary requests to judge; together they have.
    let mut most_on_one = 0;
    for i in 0..cluster.len() {
        let counts = send_many(cluster.replica(i).addrs.http, "/", &[], PER_REPLICA, 1)
            .await
            .expect("requests");
        let canary: u64 = counts.get("v2").map_or(0, |s| s.values().sum());
        most_on_one = most_on_one.max(canary);
    }
    assert!(most_on_one < MIN_REQUESTS);

    let aborted = cluster
        .wait_status(NAMESPACE, ROUTE, START_LIMIT, "Aborted", |s| {
            s["phase"] == "Aborted"
        })
        .await;
    assert_eq!(aborted["canaryWeight"], 0.0, "{aborted:#}");
    assert_eq!(aborted["abort"], true, "{aborted:#}");
    let judged = aborted["analysis"]["canary"]["requests"]
        .as_u64()
        .expect("analysis.canary.requests");
    assert!(
        judged > most_on_one && judged >= MIN_REQUESTS,
        "judged {judged} canary requests; one replica had at most {most_on_one}: {aborted:#}"
    );
    for i in 0..cluster.len() {
        wait_serving_only(&cluster, i, "v1", APPLY_LIMIT).await;
    }
    let aborts = cluster
        .events(NAMESPACE)
        .iter()
        .filter(|e| e["reason"] == "Aborted")
        .count();
    assert_eq!(aborts, 1, "one Aborted event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_churn_under_load_without_a_failed_request() {
    const ROUNDS: usize = 6;
    let cluster = Cluster::start(3, "").await;
    cluster.add_service(NAMESPACE, "checkout-v1", 80);
    let mut pods = Vec::new();
    for n in 0..3 {
        pods.push(FakeUpstream::start(&format!("pod-{n}")).await);
    }
    let ready = |pods: &[FakeUpstream]| -> Vec<(SocketAddr, bool, bool, bool)> {
        pods.iter().map(|p| (p.addr, true, true, false)).collect()
    };
    cluster.set_endpoints(NAMESPACE, "checkout-v1", &ready(&pods));
    cluster.apply_canary_route(
        NAMESPACE,
        ROUTE,
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
        }),
    );
    for i in 0..cluster.len() {
        wait_until(START_LIMIT, "the route served", || async {
            let counts = sample(&cluster, i, 5).await;
            let ok: u64 = pods.iter().map(|p| count(&counts, &p.name, 200)).sum();
            (ok == 5).then_some(())
        })
        .await;
    }

    let loads: Vec<Load> = (0..cluster.len())
        .map(|i| Load::start(cluster.replica(i).addrs.http, "/", 60, 3))
        .collect();
    for round in 0..ROUNDS {
        // A new pod comes up; the oldest starts terminating (still serving,
        // no longer ready), as during a rolling update.
        pods.push(FakeUpstream::start(&format!("pod-{}", round + 3)).await);
        let leaving = pods[0].name.clone();
        let mut endpoints = ready(&pods);
        endpoints[0] = (pods[0].addr, false, true, true);
        cluster.set_endpoints(NAMESPACE, "checkout-v1", &endpoints);
        // Every replica stops choosing it...
        for i in 0..cluster.len() {
            let what = format!("{} to stop choosing {leaving}", replica_name(i));
            wait_until(APPLY_LIMIT, &what, || async {
                let counts = sample(&cluster, i, 30).await;
                (!counts.contains_key(&leaving)).then_some(())
            })
            .await;
        }
        // ...then it leaves the slices and stops.
        let gone = pods.remove(0);
        cluster.set_endpoints(NAMESPACE, "checkout-v1", &ready(&pods));
        drop(gone);
    }

    for (i, load) in loads.into_iter().enumerate() {
        let counts = load.stop().await;
        let total: u64 = counts.values().flat_map(|s| s.values()).sum();
        let failed: Vec<(&String, &u16, &u64)> = counts
            .iter()
            .flat_map(|(name, statuses)| statuses.iter().map(move |(s, n)| (name, s, n)))
            .filter(|(name, status, _)| name.as_str() == FAILED || **status != 200)
            .collect();
        assert!(total > 0, "{}: no load answered", replica_name(i));
        assert!(
            failed.is_empty(),
            "{}: failed requests during the churn: {failed:?} of {total}",
            replica_name(i)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guardrail_aborts_while_the_leader_is_stopped() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = LoadtestUpstream::start("v2", &[]);
    let cluster = Cluster::start(3, "").await;
    publish_services(&cluster, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        ROUTE,
        route_spec(
            json!([{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]),
            None,
        ),
    );
    cluster
        .wait_status(NAMESPACE, ROUTE, START_LIMIT, "Paused at 50 %", |s| {
            s["phase"] == "Paused" && s["canaryWeight"] == 50.0
        })
        .await;
    let leader = cluster.wait_leader(START_LIMIT).await;

    // The leader hangs (it keeps its Lease record, renews nothing), then the
    // canary starts failing every request.
    cluster.stop_process(leader);
    let stopped = Instant::now();
    v2.control(json!({"errorRate": 1.0})).await;
    let survivors: Vec<usize> = (0..cluster.len()).filter(|i| *i != leader).collect();
    let loads: Vec<Load> = survivors
        .iter()
        .map(|&i| Load::start(cluster.replica(i).addrs.http, "/", 50, 2))
        .collect();

    // A survivor writes `abort: true` itself once the Lease has gone 5 s
    // without renewal: before any other replica could take the Lease over
    // (15 s), so the abort is the guardrail's, not a new leader's.
    let status = cluster
        .wait_status(
            NAMESPACE,
            ROUTE,
            Duration::from_secs(15),
            "abort: true",
            |s| s["abort"] == true,
        )
        .await;
    eprintln!(
        "guardrail abort {:?} after the leader stopped",
        stopped.elapsed()
    );
    assert_eq!(
        cluster.leader(),
        Some(leader),
        "the Lease still names the stopped leader: {status:#}"
    );
    for &i in &survivors {
        wait_serving_only(&cluster, i, "v1", APPLY_LIMIT).await;
    }
    for load in loads {
        load.stop().await;
    }

    // The next leader finds `abort: true` and completes the abort.
    let new = cluster.wait_new_leader(leader, FAILOVER_LIMIT).await;
    let status = cluster
        .wait_status(NAMESPACE, ROUTE, APPLY_LIMIT, "Aborted", |s| {
            s["phase"] == "Aborted"
        })
        .await;
    assert_eq!(status["canaryWeight"], 0.0);
    assert_eq!(status["leader"], replica_name(new));
    cluster.continue_process(leader);
}

/// Milliseconds since the Unix epoch, by this machine's clock.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64")
}
