//! Measures weir's Kubernetes figures against the test API server, with real
//! `weir run` replicas on 127.0.0.1 (the [`Cluster`] harness of the
//! end-to-end tests):
//!
//! - `apply [CHANGES]`: from a status write to every replica serving the
//!   new weight, over CHANGES (100) weight changes. The leader of three
//!   replicas runs a rollout of `setWeight` steps alternating 100 and 0,
//!   each followed by `pause: {}` that a `promote` in the status ends. The
//!   write's time is the moment the API server stored a status with the new
//!   `canaryWeight` (a subscriber woken by the server's own store, in this
//!   process); a replica serves the new weight at the first answer from the
//!   other upstream on a keep-alive connection that sends one request per
//!   millisecond to it.
//! - `memory [ROUTES]`: VmRSS of one replica with no CanaryRoute, then with
//!   ROUTES (1,000) CanaryRoutes, each with its two Services and their
//!   EndpointSlices, once all are `Paused` at their first step; then of a
//!   fresh process started with them present.
//! - `failover [RUNS]`: RUNS (3) times `kill -9` of the leader of three
//!   replicas: time to another replica holding the Lease, and to the status
//!   naming it as `leader`.
//!
//! Every wait is bounded. Run it on the release binaries:
//!
//! ```text
//! WEIR_E2E_PROFILE=release cargo run --release -p weir-e2e --example cluster_measure -- apply memory failover
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_e2e::{
    CANARY_ROUTES, Cluster, Conn, FakeUpstream, LEASE, LEASES, WEIR_NAMESPACE, replica_name,
    wait_until,
};

/// The CanaryRoute's namespace.
const NAMESPACE: &str = "shop";

/// The CanaryRoute of the `apply` and `failover` measurements.
const ROUTE: &str = "checkout";

/// How long a replica may take to start leading, or a rollout to start.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long one weight change may take, from `promote` to every replica.
const CHANGE_LIMIT: Duration = Duration::from_secs(15);

/// How long a failover may take before the run counts as failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(60);

/// How often a probe sends a request to its replica.
const PROBE_EVERY: Duration = Duration::from_millis(1);

/// Moments something changed, with its new value, shared with a task.
type Changes<T> = Arc<Mutex<Vec<(Instant, T)>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = if args.is_empty() {
        vec![
            "apply".to_owned(),
            "memory".to_owned(),
            "failover".to_owned(),
        ]
    } else {
        args
    };
    let mut i = 0;
    while i < args.len() {
        let count = args.get(i + 1).and_then(|a| a.parse::<usize>().ok());
        match args[i].as_str() {
            "apply" => apply(count.unwrap_or(100)).await,
            "memory" => memory(count.unwrap_or(1000)).await,
            "failover" => failover(count.unwrap_or(3)).await,
            other => {
                eprintln!("unknown measurement {other:?}: use apply, memory or failover");
                std::process::exit(2);
            }
        }
        i += if count.is_some() { 2 } else { 1 };
    }
}

/// Services `stable-NAME` and `canary-NAME` in [`NAMESPACE`], one ready
/// endpoint each.
fn publish_services(cluster: &Cluster, name: &str, stable: SocketAddr, canary: SocketAddr) {
    for (service, addr) in [
        (format!("{name}-v1"), stable),
        (format!("{name}-v2"), canary),
    ] {
        cluster.add_service(NAMESPACE, &service, 80);
        cluster.set_endpoints(NAMESPACE, &service, &[(addr, true, true, false)]);
    }
}

/// A CanaryRoute spec over the Services of [`publish_services`].
fn route_spec(name: &str, path_prefix: &str, steps: Value) -> Value {
    json!({
        "pathPrefix": path_prefix,
        "stable": {"revision": "v1", "service": {"name": format!("{name}-v1"), "port": 80}},
        "canary": {"revision": "v2", "service": {"name": format!("{name}-v2"), "port": 80}},
        "strategy": {"steps": steps},
    })
}

/// `canaryWeight` of a status, if any.
fn weight(status: &Value) -> Option<f64> {
    status["canaryWeight"].as_f64()
}

/// Times and new values of `canaryWeight` of CanaryRoute `shop/checkout`
/// as the API server stores them: each entry is the first moment the
/// server held that weight after holding another.
fn record_weight_writes(cluster: &Arc<Cluster>) -> (Changes<f64>, JoinHandle<()>) {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let mut changed = cluster.api.subscribe();
    let task = tokio::spawn({
        let writes = Arc::clone(&writes);
        let cluster = Arc::clone(cluster);
        async move {
            let mut last = None;
            while changed.changed().await.is_ok() {
                let now = Instant::now();
                let Some(current) = cluster
                    .api
                    .get(CANARY_ROUTES, NAMESPACE, ROUTE)
                    .and_then(|route| weight(&route["status"]))
                else {
                    continue;
                };
                if last != Some(current) {
                    last = Some(current);
                    lock(&writes).push((now, current));
                }
            }
        }
    });
    (writes, task)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A probe of one replica: one request per [`PROBE_EVERY`] on a keep-alive
/// connection; records when the answering upstream changes.
fn probe(addr: SocketAddr) -> (Changes<String>, JoinHandle<()>) {
    let switches: Changes<String> = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let switches = Arc::clone(&switches);
        async move {
            let mut ticks = tokio::time::interval(PROBE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut conn = None;
            let mut last = String::new();
            loop {
                ticks.tick().await;
                if conn.is_none() {
                    conn = Conn::open(addr).await.ok();
                }
                let Some(open) = conn.as_mut() else { continue };
                match open.get("/", &[]).await {
                    Ok(response) => {
                        let now = Instant::now();
                        let upstream = response.upstream();
                        if upstream != last {
                            last = upstream.to_owned();
                            lock(&switches).push((now, last.clone()));
                        }
                    }
                    Err(_) => conn = None,
                }
            }
        }
    });
    (switches, task)
}

/// p-th percentile (nearest rank) of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(label: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "{label}: n={} min={:.1} p50={:.1} p90={:.1} p99={:.1} max={:.1} ms",
        values.len(),
        values.first().copied().unwrap_or(f64::NAN),
        percentile(&values, 50.0),
        percentile(&values, 90.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(f64::NAN),
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// From a status write to every replica serving the new weight.
async fn apply(changes: usize) {
    println!(
        "== apply: {changes} weight changes, 3 replicas (load {})",
        load_average()
    );
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let cluster = Arc::new(Cluster::start(3, "").await);
    publish_services(&cluster, ROUTE, v1.addr, v2.addr);
    // pause, then (setWeight 100|0, pause) per change.
    let mut steps = vec![json!({"pause": {}})];
    let targets: Vec<(f64, &str)> = (0..changes)
        .map(|k| {
            if k % 2 == 0 {
                (100.0, "v2")
            } else {
                (0.0, "v1")
            }
        })
        .collect();
    for (w, _) in &targets {
        steps.push(json!({"setWeight": w}));
        steps.push(json!({"pause": {}}));
    }
    let (writes, writes_task) = record_weight_writes(&cluster);
    cluster.apply_canary_route(NAMESPACE, ROUTE, route_spec(ROUTE, "/", json!(steps)));
    cluster
        .wait_status(NAMESPACE, ROUTE, START_LIMIT, "Paused at step 0", |s| {
            s["phase"] == "Paused" && s["stepIndex"] == 0
        })
        .await;
    let probes: Vec<_> = (0..cluster.len())
        .map(|i| probe(cluster.replica(i).addrs.http))
        .collect();

    let mut per_replica = Vec::new();
    let mut slowest = Vec::new();
    for (k, (target_weight, upstream)) in targets.iter().enumerate() {
        let step = 2 * k;
        cluster
            .wait_status(
                NAMESPACE,
                ROUTE,
                CHANGE_LIMIT,
                "the pause before the change",
                |s| s["phase"] == "Paused" && s["stepIndex"] == step,
            )
            .await;
        let writes_before = lock(&writes).len();
        cluster
            .patch_status(NAMESPACE, ROUTE, json!({"status": {"promote": true}}))
            .await;
        let written = wait_until(CHANGE_LIMIT, "the leader's status write", || async {
            lock(&writes)[writes_before..]
                .iter()
                .find(|(_, w)| *w == *target_weight)
                .map(|(at, _)| *at)
        })
        .await;
        let mut delays = Vec::new();
        for (i, (switches, _)) in probes.iter().enumerate() {
            let what = format!("{} to serve {upstream}", replica_name(i));
            let served = wait_until(CHANGE_LIMIT, &what, || async {
                let switches = lock(switches);
                match switches.last() {
                    Some((at, name)) if name == upstream => Some(*at),
                    _ => None,
                }
            })
            .await;
            let ms = if served >= written {
                served.duration_since(written).as_secs_f64() * 1e3
            } else {
                -(written.duration_since(served).as_secs_f64() * 1e3)
            };
            delays.push(ms);
        }
        slowest.push(delays.iter().copied().fold(f64::MIN, f64::max));
        per_replica.extend(delays);
    }
    summary("status write -> each replica serving it", per_replica);
    summary("status write -> every replica serving it", slowest);
    println!(
        "(probe resolution {PROBE_EVERY:?}; load after {})",
        load_average()
    );
    for (_, task) in probes {
        task.abort();
        let _ = task.await;
    }
    // The recorder holds the cluster: end it so that the replicas stop here.
    writes_task.abort();
    let _ = writes_task.await;
}

/// VmRSS of one replica without and with `routes` CanaryRoutes.
async fn memory(routes: usize) {
    println!(
        "== memory: 1 replica, {routes} CanaryRoutes (load {})",
        load_average()
    );
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let mut cluster = Cluster::start(1, "").await;
    let rss = |cluster: &Cluster| cluster.replica(0).rss_kib().unwrap_or(0);
    println!("no CanaryRoute, at ready: VmRSS {} KiB", rss(&cluster));

    for i in 0..routes {
        let name = format!("route-{i}");
        publish_services(&cluster, &name, v1.addr, v2.addr);
        cluster.apply_canary_route(
            NAMESPACE,
            &name,
            route_spec(
                &name,
                &format!("/r{i}"),
                json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]),
            ),
        );
    }
    let all_paused = |cluster: &Cluster| {
        cluster
            .api
            .list(CANARY_ROUTES, Some(NAMESPACE))
            .iter()
            .filter(|r| r["status"]["phase"] == "Paused")
            .count()
    };
    let started = Instant::now();
    wait_until(
        Duration::from_secs(300),
        "every CanaryRoute Paused",
        || async { (all_paused(&cluster) == routes).then_some(()) },
    )
    .await;
    println!(
        "{routes} CanaryRoutes Paused {:.1} s after they were written; VmRSS {} KiB",
        started.elapsed().as_secs_f64(),
        rss(&cluster)
    );
    // The last route answers through this replica.
    let last = format!("/r{}", routes.saturating_sub(1));
    wait_until(Duration::from_secs(10), "the last route served", || async {
        cluster
            .get(0, &last)
            .await
            .ok()
            .filter(|r| r.status == 200)
            .map(|_| ())
    })
    .await;
    println!("after serving: VmRSS {} KiB", rss(&cluster));

    cluster.kill(0);
    cluster.restart(0).await;
    wait_until(
        Duration::from_secs(60),
        "the last route served after a restart",
        || async {
            cluster
                .get(0, &last)
                .await
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        },
    )
    .await;
    println!(
        "fresh process with {routes} CanaryRoutes, serving: VmRSS {} KiB (load {})",
        rss(&cluster),
        load_average()
    );

    // Endpoint churn with the routes fixed: whether memory follows the
    // number of rebuilds rather than the number of routes.
    for round in 1..=CHURN_ROUNDS {
        let addr = if round % 2 == 0 { v1.addr } else { v2.addr };
        cluster.set_endpoints(NAMESPACE, "route-0-v1", &[(addr, true, true, false)]);
        let expected = if round % 2 == 0 { "v1" } else { "v2" };
        wait_until(
            Duration::from_secs(10),
            "the churned endpoint served",
            || async {
                cluster
                    .get(0, "/r0")
                    .await
                    .ok()
                    .filter(|r| r.status == 200 && r.upstream() == expected)
                    .map(|_| ())
            },
        )
        .await;
        if round % (CHURN_ROUNDS / 4) == 0 {
            println!(
                "after {round} endpoint changes of one Service: VmRSS {} KiB",
                rss(&cluster)
            );
        }
    }
}

/// How many endpoint changes the memory measurement makes at the end.
const CHURN_ROUNDS: usize = 200;

/// The replica named in the Lease, read from the API server's store.
fn lease_holder(cluster: &Cluster) -> Option<String> {
    let lease = cluster.api.get(LEASES, WEIR_NAMESPACE, LEASE)?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// `kill -9` of the leader, `runs` times.
async fn failover(runs: usize) {
    println!(
        "== failover: {runs} runs of kill -9 of the leader of 3 replicas (load {})",
        load_average()
    );
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let mut cluster = Cluster::start(3, "").await;
    publish_services(&cluster, ROUTE, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        ROUTE,
        route_spec(
            ROUTE,
            "/",
            json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]),
        ),
    );
    let mut lease_times = Vec::new();
    let mut status_times = Vec::new();
    for run in 0..runs {
        let leader = cluster.wait_leader(START_LIMIT).await;
        let name = replica_name(leader);
        cluster
            .wait_status(NAMESPACE, ROUTE, START_LIMIT, "the rollout Paused", |s| {
                s["phase"] == "Paused"
            })
            .await;
        cluster.kill(leader);
        let killed = Instant::now();
        let new_holder = wait_until(FAILOVER_LIMIT, "another replica in the Lease", || async {
            lease_holder(&cluster).filter(|holder| *holder != name)
        })
        .await;
        let leading = killed.elapsed();
        // The new leader's first status write names it; it may have nothing
        // to write, so this is looked for without failing the run.
        let mut writing = None;
        while killed.elapsed() < FAILOVER_LIMIT {
            if cluster.status(NAMESPACE, ROUTE)["leader"] == new_holder.as_str() {
                writing = Some(killed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "run {run}: {name} killed; {new_holder} holds the Lease after {:.2} s; the status \
             names it after {} (load {})",
            leading.as_secs_f64(),
            writing.map_or_else(
                || format!("more than {FAILOVER_LIMIT:?}"),
                |w| format!("{:.2} s", w.as_secs_f64())
            ),
            load_average()
        );
        lease_times.push(leading.as_secs_f64() * 1e3);
        if let Some(writing) = writing {
            status_times.push(writing.as_secs_f64() * 1e3);
        }
        cluster.restart(leader).await;
    }
    summary("kill -9 -> another replica holds the Lease", lease_times);
    summary("kill -9 -> the status names the new leader", status_times);
}
