//! The runtime's loops: the end of the election, and a leader whose API
//! server never answers the Gateway API status writes or the rollout state
//! writes, run against the test API server on a real socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, Request};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use weir_e2e::{
    Cluster as TestCluster, GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, wait_until, within,
};

use super::*;
use crate::controller::transitions;
use crate::fixtures;
use crate::persist::StateStore;

/// Only a guard against a hang: under paused time it passes at once
/// when nothing else is left to run.
const GUARD: Duration = Duration::from_secs(3600);

/// From the start to the first status write that hangs: the lists, the
/// election and one sync.
const START_LIMIT: Duration = Duration::from_secs(20);

/// What a command or a new CanaryRoute may take while status writes hang:
/// a few API timeouts at most (a sync's own state writes, 2 s, and one
/// judgement write, 2 s, may come first), with room for a loaded machine:
/// 3 x 2 s + 3 s. Behind the writes of a round of [`ROUTES`] HTTPRoutes it
/// would take 64 / 8 (`CONCURRENT_WRITES`) x 2 s = 16 s, and 128 s one
/// after another.
const PROMPT: Duration = Duration::from_secs(9);

/// HTTPRoutes whose status writes never get an answer: enough for a round
/// of them to cost far more than [`PROMPT`].
const ROUTES: usize = 64;

/// The file route commanded.
const FILE_ROUTE: &str = "web";

fn leading() -> Leadership {
    Leadership {
        is_leader: true,
        leader: Some("weir-0".to_owned()),
        heard_at: None,
        leads_until: Some(tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)),
    }
}

#[tokio::test(start_paused = true)]
async fn the_end_of_the_election_is_one_change_then_nothing() {
    let (election, mut leadership) = watch::channel(Leadership::default());
    let mut running = true;
    election.send_replace(leading());
    tokio::time::timeout(GUARD, leadership_changed(&mut leadership, &mut running))
        .await
        .expect("a change of leadership");
    assert!(running && leads(&leadership));

    drop(election);
    tokio::time::timeout(GUARD, leadership_changed(&mut leadership, &mut running))
        .await
        .expect("the end of the election, as a change");
    assert!(!running, "the election is over");
    assert!(!leads(&leadership), "no renewal: not leading any more");
    assert!(leadership.borrow().is_leader, "the last value sent stays");

    // From then on nothing: the loop waits on its other events.
    for _ in 0..3 {
        let waited =
            tokio::time::timeout(GUARD, leadership_changed(&mut leadership, &mut running)).await;
        assert!(waited.is_err(), "a closed channel is not a change");
    }
}

/// The guardrail acts only once no leader has been heard from for 5 s:
/// not through the Lease, not through a status write, and, before either
/// was heard, not since this replica began to follow the cluster.
#[test]
fn the_leader_is_silent_five_seconds_after_it_was_last_heard() {
    let start = Instant::now();
    let at = |seconds| start + Duration::from_secs(seconds);
    assert!(!leader_is_silent(false, &[None, None], start, at(4)));
    assert!(leader_is_silent(false, &[None, None], start, at(5)));
    // The latest of the Lease's holder and the leader's status writes.
    let heard = [Some(at(1)), Some(at(8))];
    assert!(!leader_is_silent(false, &heard, start, at(12)));
    assert!(leader_is_silent(false, &heard, start, at(13)));
    assert!(!leader_is_silent(
        false,
        &[None, Some(at(8))],
        start,
        at(12)
    ));
    assert!(!leader_is_silent(
        false,
        &[Some(at(8)), None],
        start,
        at(12)
    ));
    // The leader never is.
    assert!(!leader_is_silent(true, &[None, None], start, at(60)));
}

/// The HTTPRoute status writes held by the API server: how many came, and
/// how many are waiting now.
#[derive(Debug, Clone, Copy, Default)]
struct Hung {
    came: usize,
    waiting: usize,
}

/// Counts one held write out when its request is dropped (the writer's
/// timeout).
struct Held(Arc<watch::Sender<Hung>>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.send_modify(|hung| hung.waiting -= 1);
    }
}

/// A leader following the test API server, whose HTTPRoute status writes
/// never get an answer; every other request is answered.
struct Leader {
    cluster: TestCluster,
    process: Arc<Process>,
    hung: watch::Receiver<Hung>,
    stop: watch::Sender<bool>,
}

impl Leader {
    /// The API server with our GatewayClass, a Gateway of it, [`ROUTES`]
    /// HTTPRoutes attached to it and the Services of a CanaryRoute to come;
    /// then weir with the file route [`FILE_ROUTE`], following it with
    /// `gatewayApi`, once its first HTTPRoute status write hangs.
    async fn start() -> Leader {
        let cluster = TestCluster::without_replicas().await;
        cluster.api.put(
            GATEWAY_CLASSES,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                   "metadata": {"name": "weir"},
                   "spec": {"controllerName": "weir.dev/gateway-controller"}}),
        );
        cluster.api.put(
            GATEWAYS,
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": "public", "namespace": "shop"},
                   "spec": {"gatewayClassName": "weir", "listeners": [
                       {"name": "http", "port": 8080, "protocol": "HTTP"}]}}),
        );
        for i in 0..ROUTES {
            cluster.api.put(
                HTTP_ROUTES,
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                       "metadata": {"name": format!("route-{i}"), "namespace": "shop"},
                       "spec": {"parentRefs": [{"name": "public"}], "rules": [{
                           "matches": [{"path": {"type": "PathPrefix",
                                                  "value": format!("/route-{i}")}}],
                           "backendRefs": [{"name": "web-v1", "port": 80}]}]}}),
            );
        }
        for (service, port) in [("checkout-v1", 9003), ("checkout-v2", 9004)] {
            cluster.add_service("shop", service, 80);
            let endpoint = SocketAddr::from(([127, 0, 0, 1], port));
            cluster.set_endpoints("shop", service, &[(endpoint, true, true, false)]);
        }

        let (hung_tx, hung) = watch::channel(Hung::default());
        let client = holding_route_status_writes(client(&cluster).await, Arc::new(hung_tx));
        let steps = "[{setWeight: 5}, {pause: {}}, {setWeight: 50}, {pause: {}}, {setWeight: 100}]";
        let text = fixtures::config_text(None, &fixtures::route(FILE_ROUTE, Some(steps)));
        let process = fixtures::process(&text, PathBuf::from("/nonexistent/weir.yaml"))
            .await
            .process;
        let settings = Settings {
            kubernetes: Kubernetes {
                gateway_api: Some(true),
                ..Kubernetes::default()
            },
            identity: "weir-0".to_owned(),
            namespace: "weir".to_owned(),
        };
        let statuses = Arc::new(StatusStore::new(
            client.clone(),
            tokio::runtime::Handle::current(),
            &settings.identity,
        ));
        let (stop, stopping) = watch::channel(false);
        let _ = start(
            Arc::clone(&process),
            client,
            settings,
            statuses,
            None,
            stopping,
        );
        let mut leader = Leader {
            cluster,
            process,
            hung,
            stop,
        };
        leader.wait_hung(1, "an HTTPRoute status write").await;
        leader
    }

    /// Waits until `waiting` HTTPRoute status writes are held at once.
    async fn wait_hung(&mut self, waiting: usize, what: &str) {
        within(
            START_LIMIT,
            what,
            self.hung.wait_for(|h| h.waiting >= waiting),
        )
        .await
        .expect("the client is in use");
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A client of the test API server, as `weir run` makes one.
async fn client(cluster: &TestCluster) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("a kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a usable kubeconfig");
    config.default_retry = false;
    kube::Client::try_from(config).expect("a client")
}

/// `client`, but a PATCH of an HTTPRoute's status is held forever, as by an
/// API server that never answers it, and counted in `hung`.
fn holding_route_status_writes(
    client: kube::Client,
    hung: Arc<watch::Sender<Hung>>,
) -> kube::Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let (client, hung) = (client.clone(), Arc::clone(&hung));
        async move {
            let path = request.uri().path();
            if request.method() == Method::PATCH
                && path.contains("/httproutes/")
                && path.ends_with("/status")
            {
                hung.send_modify(|h| {
                    h.came += 1;
                    h.waiting += 1;
                });
                let _held = Held(hung);
                std::future::pending::<()>().await;
            }
            client.send(request).await
        }
    });
    kube::Client::new(service, "default")
}

/// The SPEC's promise for a leader whose API server hangs: an operator's
/// command on a route goes through within about one API timeout. The sync
/// that writes the HTTPRoutes' status must not keep the transition lock
/// while it waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_does_not_wait_for_status_writes_that_hang() {
    let leader = Leader::start().await;
    let started = Instant::now();
    let promoted = tokio::time::timeout(
        PROMPT,
        transitions::command(&leader.process, FILE_ROUTE, Command::Promote),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("the promote still waits after {PROMPT:?}, behind status writes that hang")
    });
    promoted.expect("the promote applies to a running rollout");
    println!("promoted in {:?}", started.elapsed());
    let control = leader.process.control.lock().await;
    assert_eq!(
        control.rollouts[FILE_ROUTE].step_index,
        Some(1),
        "the first step ended: the rollout waits in the pause"
    );
}

/// A CanaryRoute made while the status writes hang is served at once: the
/// sync that compiles it does not wait behind the previous sync's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_canary_route_is_served_while_status_writes_hang() {
    let leader = Leader::start().await;
    let started = Instant::now();
    leader.cluster.apply_canary_route(
        "shop",
        "checkout",
        json!({
            "pathPrefix": "/checkout",
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 10}, {"pause": {}}]},
        }),
    );
    wait_until(PROMPT, "the new CanaryRoute served", || async {
        let snapshot = leader.process.publisher.current();
        snapshot
            .routes
            .iter()
            .any(|route| &*route.name == "shop/checkout")
            .then_some(())
    })
    .await;
    println!("served in {:?}", started.elapsed());
}

/// The HTTPRoutes' status writes of a round go out together (a bounded
/// number at a time), so writes that hang cost the round a few API
/// timeouts, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_writes_of_a_round_go_out_together() {
    let mut leader = Leader::start().await;
    leader
        .wait_hung(
            crate::cluster::gateway_status::CONCURRENT_WRITES,
            "a full batch of HTTPRoute status writes at once",
        )
        .await;
    let hung = *leader.hung.borrow();
    assert!(
        hung.waiting <= crate::cluster::gateway_status::CONCURRENT_WRITES,
        "no more than the bound at once: {hung:?}"
    );
}

/// `client`, but while `hold` is set a PATCH of a CanaryRoute's status that
/// writes a rollout state (its body names a phase) is held forever, as by
/// an API server that never answers it, and counted in `hung`; every other
/// request is answered.
fn holding_state_writes(
    client: kube::Client,
    hung: Arc<watch::Sender<Hung>>,
    hold: Arc<AtomicBool>,
) -> kube::Client {
    let service = tower::service_fn(move |request: Request<Body>| {
        let (client, hung, hold) = (client.clone(), Arc::clone(&hung), Arc::clone(&hold));
        async move {
            let path = request.uri().path();
            if request.method() != Method::PATCH
                || !path.contains("/canaryroutes/")
                || !path.ends_with("/status")
            {
                return client.send(request).await;
            }
            let (parts, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .expect("the request body")
                .to_bytes();
            let writes_a_state = serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|body| body["status"]["phase"].is_string());
            if writes_a_state && hold.load(Ordering::SeqCst) {
                hung.send_modify(|h| {
                    h.came += 1;
                    h.waiting += 1;
                });
                let _held = Held(hung);
                std::future::pending::<()>().await;
            }
            client
                .send(Request::from_parts(parts, Body::from(bytes.to_vec())))
                .await
        }
    });
    kube::Client::new(service, "default")
}

/// CanaryRoute `shop/NAME` of `checkout-v1` and `checkout-v2`, at its
/// first step.
fn apply_checkout(cluster: &TestCluster, name: &str) {
    cluster.apply_canary_route(
        "shop",
        name,
        json!({
            "pathPrefix": format!("/{name}"),
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 10}, {"pause": {}}]},
        }),
    );
}

/// The API server with the Services `checkout-v1` and `checkout-v2` and
/// `count` CanaryRoutes of them (`shop/checkout-0`, ...); then weir with the file route [`FILE_ROUTE`],
/// following it and keeping the CanaryRoutes' states in their status as
/// `weir run` does, through a client whose state writes hang while `hold`
/// is set. Stops when the returned sender is dropped or set.
async fn canary_leader(
    count: usize,
    hold: Arc<AtomicBool>,
) -> (
    TestCluster,
    Arc<Process>,
    watch::Receiver<Hung>,
    watch::Sender<bool>,
) {
    let cluster = TestCluster::without_replicas().await;
    for (service, port) in [("checkout-v1", 9003), ("checkout-v2", 9004)] {
        cluster.add_service("shop", service, 80);
        let endpoint = SocketAddr::from(([127, 0, 0, 1], port));
        cluster.set_endpoints("shop", service, &[(endpoint, true, true, false)]);
    }
    for i in 0..count {
        apply_checkout(&cluster, &format!("checkout-{i}"));
    }
    let (hung_tx, hung) = watch::channel(Hung::default());
    let client = holding_state_writes(client(&cluster).await, Arc::new(hung_tx), hold);
    let settings = Settings {
        kubernetes: Kubernetes::default(),
        identity: "weir-0".to_owned(),
        namespace: "weir".to_owned(),
    };
    let statuses = Arc::new(StatusStore::new(
        client.clone(),
        tokio::runtime::Handle::current(),
        &settings.identity,
    ));
    let store = crate::persist::RoutedStore::new(
        Arc::new(crate::persist::MemoryStore::default()),
        Arc::clone(&statuses) as Arc<dyn StateStore>,
    );
    let steps = "[{setWeight: 5}, {pause: {}}, {setWeight: 100}]";
    let text = fixtures::config_text(None, &fixtures::route(FILE_ROUTE, Some(steps)));
    let (process, _clock) = fixtures::process_with(
        &text,
        PathBuf::from("/nonexistent/weir.yaml"),
        Arc::new(store),
    )
    .await;
    let (stop, stopping) = watch::channel(false);
    let _ = start(
        Arc::clone(&process),
        client,
        settings,
        statuses,
        None,
        stopping,
    );
    (cluster, process, hung, stop)
}

/// A leader whose API server never answers the CanaryRoutes' status writes
/// writes the rollout states one sync starts together (a bounded number at
/// a time): the sync, and the transition lock every command waits behind,
/// cost about one API timeout, not one per CanaryRoute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_states_of_a_sync_are_written_together() {
    // As many as one batch of `CONCURRENT_SAVES` writes at once.
    const CANARY_ROUTES: usize = crate::persist::CONCURRENT_SAVES;
    let hold = Arc::new(AtomicBool::new(true));
    let (_cluster, process, mut hung, stop) = canary_leader(CANARY_ROUTES, hold).await;
    let started = Instant::now();
    within(
        START_LIMIT,
        "the rollout states of every CanaryRoute written at once",
        hung.wait_for(|h| h.waiting >= CANARY_ROUTES),
    )
    .await
    .expect("the client is in use");
    println!(
        "{CANARY_ROUTES} state writes in flight after {:?}",
        started.elapsed()
    );

    // An abort of the file route waits for that one round of writes, and
    // perhaps one judgement write after it: 2 x 2 s, or 3 x 2 s + 3 s with
    // room for a loaded machine. Written one after another, the eight
    // would hold it for 8 x 2 s = 16 s.
    const ONE_ROUND: Duration = Duration::from_secs(9);
    let started = Instant::now();
    let aborted = tokio::time::timeout(
        ONE_ROUND,
        transitions::command(&process, FILE_ROUTE, Command::Abort),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("the abort still waits after {ONE_ROUND:?}, behind state writes that hang")
    });
    aborted.expect("the abort applies to a running rollout");
    println!("aborted in {:?}", started.elapsed());
    stop.send_replace(true);
}

/// A refresh of the judgements stops at the first write the API server
/// does not answer: the status writer goes on with the next round (here
/// the problem condition of a new CanaryRoute) instead of waiting one API
/// timeout per stale route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_gives_up_at_the_first_judgement_write_that_hangs() {
    // Stale routes a refresh would write one after another: 10 x 2 s.
    const CANARY_ROUTES: usize = 10;
    // The refresh write in flight (2 s), the state write of the sync that
    // compiles the new CanaryRoute (2 s), with room for one more write and
    // a loaded machine: 3 x 2 s + 3 s. The refresh going through every
    // stale route would keep the round waiting for the 9 writes after the
    // first: 9 x 2 s = 18 s.
    // A missing Service is said once it has lasted its grace.
    const ROUND_WRITTEN: Duration =
        Duration::from_secs(9).saturating_add(crate::cluster::conditions::GRACE);
    let hold = Arc::new(AtomicBool::new(false));
    let (cluster, _process, mut hung, stop) = canary_leader(CANARY_ROUTES, Arc::clone(&hold)).await;
    for i in 0..CANARY_ROUTES {
        let name = format!("checkout-{i}");
        wait_until(START_LIMIT, "every rollout state written", || async {
            (cluster.status("shop", &name)["leader"] == "weir-0").then_some(())
        })
        .await;
    }

    // From now on no state write gets an answer, and every status names
    // another leader: each judgement is stale, for the refresh to write.
    hold.store(true, Ordering::SeqCst);
    for i in 0..CANARY_ROUTES {
        cluster
            .patch_status(
                "shop",
                &format!("checkout-{i}"),
                json!({"status": {"leader": "weir-1"}}),
            )
            .await;
    }
    within(
        START_LIMIT,
        "a judgement write that hangs",
        hung.wait_for(|h| h.waiting >= 1),
    )
    .await
    .expect("the client is in use");

    // A CanaryRoute naming a Service that does not exist: the round of the
    // sync that compiles it writes its `ServiceMissing` condition.
    let started = Instant::now();
    cluster.apply_canary_route(
        "shop",
        "broken",
        json!({
            "pathPrefix": "/broken",
            "stable": {"revision": "v1", "service": {"name": "nowhere", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 10}, {"pause": {}}]},
        }),
    );
    wait_until(
        ROUND_WRITTEN,
        "the ServiceMissing condition of the new CanaryRoute",
        || async {
            let status = cluster.status("shop", "broken");
            status["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "ServiceMissing" && c["status"] == "True")
                })
                .then_some(())
        },
    )
    .await;
    println!(
        "condition written in {:?}, after {} state writes that hang",
        started.elapsed(),
        hung.borrow().came
    );
    stop.send_replace(true);
}

/// An edit that moves the rollout nowhere (here another path) is reported
/// all the same: the leader writes the new `observedGeneration` at its next
/// refresh, with no transition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_without_a_transition_is_reported_as_observed() {
    let hold = Arc::new(AtomicBool::new(false));
    let (cluster, _process, _hung, _stop) = canary_leader(1, hold).await;
    let name = "checkout-0";
    // The test's clock stands still: the rollout stays at its first step.
    let started = cluster
        .wait_status("shop", name, START_LIMIT, "the rollout started", |s| {
            s["phase"] == "Progressing" && s["stepIndex"] == 0
        })
        .await;
    let before = cluster.canary_route("shop", name)["metadata"]["generation"].clone();
    assert_eq!(started["observedGeneration"], before, "{started:#}");

    let edited = cluster.apply_canary_route(
        "shop",
        name,
        json!({
            "pathPrefix": "/edited",
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 10}, {"pause": {}}]},
        }),
    );
    let generation = edited["metadata"]["generation"].clone();
    assert_ne!(generation, before, "the edit is a new generation");
    let seq = started["seq"].clone();
    let status = cluster
        .wait_status(
            "shop",
            name,
            2 * STATUS_REFRESH + Duration::from_secs(3),
            "the edit's generation observed",
            |s| s["observedGeneration"] == generation,
        )
        .await;
    assert_eq!(
        (&status["phase"], &status["stepIndex"], &status["seq"]),
        (&json!("Progressing"), &json!(0), &seq),
        "no transition: {status:#}"
    );
}

/// A CanaryRoute without a strategy (a fixed split) has a status all the
/// same: Healthy at its fixed weight, with the generation served and a
/// `Ready` condition, written again when its spec changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_route_without_a_strategy_gets_a_healthy_status() {
    let hold = Arc::new(AtomicBool::new(false));
    let (cluster, _process, _hung, _stop) = canary_leader(0, hold).await;
    let fixed = |weight: u32| {
        json!({
            "pathPrefix": "/fixed",
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80},
                       "weight": weight},
        })
    };
    let stable_only = json!({
        "pathPrefix": "/stable",
        "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
    });
    let applied = cluster.apply_canary_route("shop", "fixed", fixed(25));
    cluster.apply_canary_route("shop", "stable-only", stable_only);

    let generation = applied["metadata"]["generation"].clone();
    let status = cluster
        .wait_status("shop", "fixed", START_LIMIT, "a Healthy status", |s| {
            s["phase"] == "Healthy"
        })
        .await;
    assert_eq!(status["canaryWeight"], 25.0, "{status:#}");
    assert_eq!(status["observedGeneration"], generation, "{status:#}");
    assert_eq!(status["leader"], "weir-0", "{status:#}");
    assert_eq!(status["canaryRevision"], "v2", "{status:#}");
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{status:#}");
    let status = cluster
        .wait_status(
            "shop",
            "stable-only",
            START_LIMIT,
            "a Healthy status",
            |s| s["phase"] == "Healthy",
        )
        .await;
    assert_eq!(status["canaryWeight"], 0.0, "{status:#}");

    // Its last rollout was the third (the strategy since dropped): the
    // sequence goes on from there, not back to 0.
    cluster
        .patch_status(
            "shop",
            "fixed",
            json!({"status": {"seq": 3, "rolloutId": "3-v2"}}),
        )
        .await;
    let edited = cluster.apply_canary_route("shop", "fixed", fixed(40));
    let generation = edited["metadata"]["generation"].clone();
    let status = cluster
        .wait_status("shop", "fixed", START_LIMIT, "the new weight", |s| {
            s["canaryWeight"] == 40.0 && s["observedGeneration"] == generation
        })
        .await;
    assert_eq!(
        (&status["seq"], &status["rolloutId"]),
        (&json!(3), &json!("3-v2")),
        "{status:#}"
    );
}

/// Whether the Gateway API is served, when the config does not say: as the
/// API server's discovery answers for `gateway.networking.k8s.io/v1`.
#[tokio::test]
async fn the_gateway_api_is_served_when_the_cluster_serves_its_three_kinds() {
    use crate::cluster::mock_api::{self, next};
    let resources = |kinds: &[&str]| {
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "gateway.networking.k8s.io/v1",
            "resources": kinds.iter().map(|kind| json!({
                "name": kind, "singularName": "", "namespaced": *kind != "gatewayclasses",
                "kind": "Kind", "verbs": ["get", "list", "watch"],
            })).collect::<Vec<_>>(),
        })
    };
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": "the server could not find the requested resource",
                           "reason": "NotFound", "code": 404});
    for (answer, code, served) in [
        (
            resources(&["gatewayclasses", "gateways", "httproutes"]),
            200,
            true,
        ),
        (resources(&["gatewayclasses", "gateways"]), 200, false),
        (not_found, 404, false),
    ] {
        let (client, mut api) = mock_api::client();
        let asking = tokio::spawn(async move { gateway_api_served(&client).await });
        let request = next(&mut api).await;
        assert_eq!(request.path, "/apis/gateway.networking.k8s.io/v1");
        request.answer(code, &answer);
        let found = tokio::time::timeout(Duration::from_secs(10), asking)
            .await
            .expect("in time")
            .expect("the probe");
        assert_eq!(found, served, "{answer}");
    }

    // An error is no answer: asked again, decided by the next clear one.
    let (client, mut api) = mock_api::client();
    let asking = tokio::spawn(async move { gateway_api_served(&client).await });
    let request = next(&mut api).await;
    request.answer(
        503,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "unavailable", "reason": "ServiceUnavailable", "code": 503}),
    );
    let again = next(&mut api).await;
    assert_eq!(again.path, "/apis/gateway.networking.k8s.io/v1");
    again.answer(
        200,
        &resources(&["gatewayclasses", "gateways", "httproutes"]),
    );
    let found = tokio::time::timeout(Duration::from_secs(10), asking)
        .await
        .expect("in time")
        .expect("the probe");
    assert!(found, "served, once asked again");
}
