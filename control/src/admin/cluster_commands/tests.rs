//! Commands and statuses of a CanaryRoute through the admin API of a
//! replica that does not lead, against kube's mocked client: the test plays
//! the API server (it takes each request and answers it) and the watch (it
//! changes the state the replica holds, as the leader's status write would).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request};
use http_body_util::BodyExt as _;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_test::mock;
use weir_config::{Kubernetes, KubernetesRole, Route};

use super::*;
use crate::admin::AdminState;
use crate::cluster::lease::Leadership;
use crate::cluster::runtime::Settings;
use crate::cluster::status_store::StatusStore;
use crate::controller::cluster_routes::ClusterDecision;
use crate::fixtures::{self, InMemory, START_MS};

/// Only a guard against a hang: requests come at once.
const GUARD: Duration = Duration::from_secs(10);
const ROUTE: &str = "shop/checkout";
const STATUS_PATH: &str = "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout/status";

type ApiHandle = mock::Handle<Request<Body>, http::Response<Body>>;

/// A replica (`weir-1`, not leading; `weir-0` holds the Lease) with the
/// file route `web` and the CanaryRoute `shop/checkout` Paused at its
/// `pause: {}`.
struct Replica {
    in_memory: InMemory,
    admin: Arc<AdminState>,
    api: ApiHandle,
    route: Route,
    _leadership: watch::Sender<Leadership>,
    _ready: watch::Sender<bool>,
}

/// An answer of the admin API.
struct Answer {
    status: u16,
    body: Value,
}

async fn replica() -> Replica {
    let text = fixtures::config_text(None, &fixtures::route("web", None));
    let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let steps = "[{setWeight: 50}, {pause: {}}, {setWeight: 100}]";
    let compiled = fixtures::loaded(&fixtures::config_text(
        None,
        &fixtures::route("checkout", Some(steps)),
    ));
    let mut route = compiled.config().routes[0].clone();
    route.name = Arc::from(ROUTE);
    route.path_prefix = "/shop".to_owned();
    let paused = RolloutState::start(&route, START_MS)
        .state
        .command(Command::Promote, &route, START_MS)
        .expect("promote applies at the first step")
        .state;
    assert_eq!(paused.phase, Phase::Paused);
    in_memory.process.control.lock().await.apply_cluster(
        vec![route.clone()],
        false,
        vec![(ROUTE.to_owned(), ClusterDecision::Keep(paused))],
        Vec::new(),
    );

    let (service, api) = mock::pair::<Request<Body>, http::Response<Body>>();
    let client = kube::Client::new(service, "default");
    let statuses = Arc::new(StatusStore::new(
        client.clone(),
        tokio::runtime::Handle::current(),
        "weir-1",
    ));
    let (leadership_tx, leadership) = watch::channel(Leadership {
        is_leader: false,
        leader: Some("weir-0".to_owned()),
        heard_at: None,
        leads_until: None,
    });
    let (ready_tx, ready) = watch::channel(true);
    let settings = Settings {
        kubernetes: Kubernetes {
            namespaces: None,
            lease: "weir-leader".to_owned(),
            peers: "weir-peers".to_owned(),
            role: KubernetesRole::Candidate,
            gateway_api: Some(false),
        },
        identity: "weir-1".to_owned(),
        namespace: "weir".to_owned(),
    };
    let cluster = Cluster::new(settings, client, statuses, leadership, None, ready);
    in_memory
        .process
        .cluster
        .set(Arc::new(cluster))
        .expect("no cluster yet");
    let admin = Arc::new(AdminState::new(Arc::clone(&in_memory.process)));
    Replica {
        in_memory,
        admin,
        api,
        route,
        _leadership: leadership_tx,
        _ready: ready_tx,
    }
}

impl Replica {
    /// Starts `method path` with an empty body, from loopback (no tokens).
    fn call(&self, method: Method, path: &str) -> tokio::task::JoinHandle<Answer> {
        let admin = Arc::clone(&self.admin);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(http_body_util::Full::new(Bytes::new()))
            .expect("a valid request");
        tokio::spawn(async move {
            let response = admin
                .handle(request, SocketAddr::from(([127, 0, 0, 1], 40_000)))
                .await;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("a full body")
                .to_bytes();
            Answer {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            }
        })
    }

    /// The state this replica holds for the CanaryRoute.
    async fn state(&self) -> RolloutState {
        self.in_memory.process.control.lock().await.rollouts[ROUTE].clone()
    }

    /// What the watch brings once the leader acted on `command`: the
    /// replica takes the leader's state.
    async fn leader_acts(&self, command: Command) {
        let mut control = self.in_memory.process.control.lock().await;
        let now = control.rollouts[ROUTE]
            .command(command, &self.route, START_MS)
            .expect("the command applies")
            .state;
        control.rollouts.insert(ROUTE.to_owned(), now);
    }

    /// Takes the next request to the API server: (method, path, JSON body)
    /// and the means to answer it.
    async fn next_request(&mut self) -> (Method, String, Value, Respond) {
        let (request, respond) = tokio::time::timeout(GUARD, self.api.next_request())
            .await
            .expect("a request before the guard's deadline")
            .expect("the client is still in use");
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.expect("the request body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.method, parts.uri.path().to_owned(), body, respond)
    }
}

type Respond = mock::SendResponse<http::Response<Body>>;

async fn answered(call: tokio::task::JoinHandle<Answer>) -> Answer {
    tokio::time::timeout(GUARD, call)
        .await
        .expect("an answer before the guard's deadline")
        .expect("the call's task")
}

fn answer(respond: Respond, code: u16, body: &Value) {
    let mut response =
        http::Response::new(Body::from(serde_json::to_vec(body).expect("a JSON body")));
    *response.status_mut() = http::StatusCode::from_u16(code).expect("a status code");
    respond.send_response(response);
}

/// The CanaryRoute as the API server keeps it, with `status`.
fn object(status: &Value) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRoute",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "9"},
        "spec": {
            "stable": {"revision": "v1", "endpoints": ["10.0.0.1:80"]},
            "canary": {"revision": "v2", "endpoints": ["10.0.0.2:80"]},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        },
        "status": status,
    })
}

#[tokio::test]
async fn abort_on_a_replica_that_does_not_lead_writes_the_input_and_answers_once_acted_on() {
    let mut replica = replica().await;
    let call = replica.call(Method::POST, "/api/v1/routes/shop%2Fcheckout/abort");
    let (method, path, body, respond) = replica.next_request().await;
    assert_eq!((method, path.as_str()), (Method::PATCH, STATUS_PATH));
    assert_eq!(body, json!({"status": {"abort": true}}), "the input alone");
    assert_eq!(
        replica.state().await.phase,
        Phase::Paused,
        "the replica changes nothing itself"
    );
    answer(respond, 200, &object(&json!({"abort": true})));
    replica.leader_acts(Command::Abort).await;

    let answer = answered(call).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["name"], ROUTE);
    assert_eq!(answer.body["phase"], "Aborted");
    assert_eq!(answer.body["canaryWeight"], 0.0);
    assert_eq!(answer.body["leader"], "weir-0");
    assert!(
        answer.body.get("pendingCommand").is_none(),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_command_the_leader_has_not_acted_on_in_time_is_202_with_the_status() {
    let mut replica = replica().await;
    let call = replica.call(Method::POST, "/api/v1/routes/shop%2Fcheckout/pause");
    let (_, path, body, respond) = replica.next_request().await;
    assert_eq!(path, STATUS_PATH);
    assert_eq!(body, json!({"status": {"paused": true}}));
    answer(respond, 200, &object(&json!({"paused": true})));

    // Nobody acts: the answer comes after LEADER_WAIT.
    let answer = answered(call).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["phase"], "Paused");
    assert_eq!(answer.body["held"], false);
    let pending = answer.body["pendingCommand"].as_str().unwrap_or_default();
    assert!(
        pending.contains("pause is written into the status of CanaryRoute shop/checkout")
            && pending.contains("has not acted on it within 2 s"),
        "{pending}"
    );
}

#[tokio::test]
async fn a_command_that_does_not_apply_is_409_and_writes_nothing() {
    let mut replica = replica().await;
    // Not held: resume does not apply, as for a file route.
    let refused =
        answered(replica.call(Method::POST, "/api/v1/routes/shop%2Fcheckout/resume")).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("held by pause")),
        "{}",
        refused.body
    );
    // The next request the API server sees is the next command's.
    let call = replica.call(Method::POST, "/api/v1/routes/shop%2Fcheckout/promote");
    let (_, _, body, respond) = replica.next_request().await;
    assert_eq!(
        body,
        json!({"status": {"promote": true}}),
        "resume wrote nothing"
    );
    answer(respond, 200, &object(&json!({"promote": true})));
    replica.leader_acts(Command::Promote).await;
    let promoted = answered(call).await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(promoted.body["stepIndex"], 2);
}

#[tokio::test]
async fn an_api_server_that_does_not_take_the_input_is_503_and_a_gone_route_404() {
    let mut replica = replica().await;
    let call = replica.call(Method::POST, "/api/v1/routes/shop%2Fcheckout/abort");
    let (_, _, _, respond) = replica.next_request().await;
    answer(
        respond,
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "canaryroutes.weir.dev \"checkout\" not found",
                "reason": "NotFound", "code": 404}),
    );
    let gone = answered(call).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert!(
        gone.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no route named shop/checkout: ")),
        "the CLI's unknown route: {}",
        gone.body
    );
    assert!(
        gone.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("CanaryRoute shop/checkout does not exist")),
        "{}",
        gone.body
    );

    // The API server goes away: the client's service fails.
    let call = replica.call(Method::POST, "/api/v1/routes/shop%2Fcheckout/abort");
    drop(replica.api);
    let unavailable = answered(call).await;
    assert_eq!(unavailable.status, 503, "{}", unavailable.body);
    let error = unavailable.body["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("abort for CanaryRoute shop/checkout is not written:")
            && error.contains("the rollout is unchanged"),
        "{error}"
    );
    assert_eq!(
        replica.in_memory.process.control.lock().await.rollouts[ROUTE].phase,
        Phase::Paused,
        "nothing changed"
    );
}

#[tokio::test]
async fn statuses_of_canary_routes_name_the_leader_and_the_coverage() {
    let replica = replica().await;
    let cluster = replica.in_memory.process.cluster.get().expect("a cluster");
    let seen: crate::cluster::resource::CanaryRoute = serde_json::from_value(object(&json!({
        "phase": "Paused",
        "analysis": {"coverage": "2/3", "replicasCounted": 2, "replicasKnown": 3},
    })))
    .expect("a CanaryRoute");
    cluster.statuses.observe(ROUTE, &seen);

    let all = answered(replica.call(Method::GET, "/api/v1/routes")).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let routes = all.body.as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = routes.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["web", ROUTE], "file routes and CanaryRoutes alike");
    assert!(
        routes[0].get("leader").is_none(),
        "a file route has no leader"
    );
    assert_eq!(routes[1]["leader"], "weir-0");
    assert_eq!(
        routes[1]["coverage"], "2/3",
        "the coverage the leader wrote"
    );

    let one = answered(replica.call(Method::GET, "/api/v1/routes/shop%2Fcheckout")).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        (&one.body["leader"], &one.body["coverage"]),
        (&json!("weir-0"), &json!("2/3"))
    );
}

#[tokio::test]
async fn promote_all_writes_promote_for_each_paused_canary_route() {
    let mut replica = replica().await;
    let call = replica.call(Method::POST, "/api/v1/promote");
    let (_, path, body, respond) = replica.next_request().await;
    assert_eq!(path, STATUS_PATH);
    assert_eq!(body, json!({"status": {"promote": true}}));
    answer(respond, 200, &object(&json!({"promote": true})));
    replica.leader_acts(Command::Promote).await;
    let answer = answered(call).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["promoted"], json!([ROUTE]));
    assert!(answer.body.get("error").is_none(), "{}", answer.body);
}

#[test]
fn what_shows_each_command_done() {
    let route = {
        let compiled = fixtures::loaded(&fixtures::config_text(
            None,
            &fixtures::route(
                "checkout",
                Some("[{setWeight: 50}, {pause: {}}, {setWeight: 100}]"),
            ),
        ));
        compiled.config().routes[0].clone()
    };
    let run = |state: &RolloutState, command| {
        state
            .command(command, &route, START_MS)
            .expect("the command applies")
            .state
    };
    let progressing = RolloutState::start(&route, START_MS).state;
    let paused = run(&progressing, Command::Promote);
    let held = run(&paused, Command::Pause);
    let aborted = run(&paused, Command::Abort);
    let retried = run(&aborted, Command::Retry);
    let next = run(&paused, Command::Promote);
    let promoted = run(&paused, Command::PromoteFull);
    // (command, before, now, done)
    let cases = [
        (Command::Abort, &paused, &paused, false),
        (Command::Abort, &paused, &aborted, true),
        (Command::Retry, &aborted, &aborted, false),
        (Command::Retry, &aborted, &retried, true),
        (Command::Pause, &paused, &paused, false),
        (Command::Pause, &paused, &held, true),
        (Command::Resume, &held, &held, false),
        (Command::Resume, &held, &paused, true),
        (Command::Promote, &paused, &paused, false),
        (Command::Promote, &paused, &next, true),
        (Command::Promote, &paused, &promoted, true),
        (Command::PromoteFull, &paused, &next, false),
        (Command::PromoteFull, &paused, &promoted, true),
    ];
    for (command, before, now, done) in cases {
        assert_eq!(
            shows_done(command, before, now),
            done,
            "{command} from {} at {:?} to {} at {:?}",
            before.phase,
            before.step_index,
            now.phase,
            now.step_index
        );
    }
}

#[tokio::test]
async fn promote_all_is_503_when_the_api_server_does_not_take_the_input() {
    let replica = replica().await;
    let call = replica.call(Method::POST, "/api/v1/promote");
    drop(replica.api);
    let answer = answered(call).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["promoted"], json!([]));
    assert!(
        answer.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("shop/checkout: ")),
        "{}",
        answer.body
    );
    assert_eq!(
        replica.in_memory.process.control.lock().await.rollouts[ROUTE].phase,
        Phase::Paused
    );
}
