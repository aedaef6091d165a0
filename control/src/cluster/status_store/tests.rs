//! The requests a [`StatusStore`] sends, against kube's mocked client: each
//! test plays the API server, taking the requests one by one and answering
//! them; a request that does not come fails the test at the guard's
//! deadline, an extra one fails the check that the service saw no more.

use std::sync::Arc;

use serde_json::{Value, json};
use weir_config::Weight;

use super::*;
use crate::cluster::mock_api::{self, ApiHandle, GUARD, next};
use crate::rollout::{AbortReason, Evidence, Phase};

const ROUTE: &str = "shop/checkout";
const STATUS_PATH: &str = "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
const T0: u64 = 1_700_000_000_000;

fn store() -> (Arc<StatusStore>, ApiHandle) {
    let (client, handle) = mock_api::client();
    let store = StatusStore::new(client, Handle::current(), "weir-0");
    (Arc::new(store), handle)
}

/// Once every client is gone the mocked service ends: no request is left.
async fn no_more_requests(mut handle: ApiHandle) {
    let extra = tokio::time::timeout(GUARD, handle.next_request())
        .await
        .expect("the clients are dropped before the guard's deadline");
    if let Some((request, _)) = extra {
        panic!(
            "an unexpected request: {} {}",
            request.method(),
            request.uri()
        );
    }
}

/// Rollout 3 of v2 at `step` of the SPEC's five steps.
fn state(phase: Phase, step: Option<usize>, percent: u32) -> RolloutState {
    RolloutState {
        route: ROUTE.to_owned(),
        phase,
        step_index: step,
        canary_weight: Weight::from_percent_int(percent),
        rollout_seq: 3,
        stable_revision: "v1".to_owned(),
        canary_revision: Some("v2".to_owned()),
        promoted_revision: None,
        pause_deadline_ms: None,
        pause_remaining_ms: None,
        pause_length_ms: None,
        held: false,
        rollout_started_ms: T0,
        failures: 0,
        message: format!("{phase} at step {step:?}"),
        abort_reason: None,
        last_judgement: None,
        evidence: Evidence::new(),
        webhooks: Default::default(),
        promoted_ms: None,
        scale_down_deadline_ms: None,
        blue_green_stage: None,
    }
}

fn timed_pause() -> RolloutState {
    let mut s = state(Phase::Paused, Some(1), 5);
    s.pause_deadline_ms = Some(T0 + 30_000);
    s.pause_length_ms = Some(30_000);
    s
}

fn aborted() -> RolloutState {
    let mut s = state(Phase::Aborted, Some(0), 0);
    s.abort_reason = Some(AbortReason::AnalysisErrorRate);
    s.message = "aborted (analysis_error_rate): analysis: canary error rate 30%".to_owned();
    s
}

/// The CanaryRoute at `resource_version` with `status`.
fn object(resource_version: &str, status: &Value) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRoute",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "uid": "uid-checkout",
            "generation": 2,
            "resourceVersion": resource_version,
        },
        "spec": {
            "stable": {"revision": "v1", "endpoints": ["10.0.0.1:80"]},
            "canary": {"revision": "v2", "endpoints": ["10.0.0.2:80"]},
            "strategy": {"steps": [
                {"setWeight": 5},
                {"pause": {"duration": "30s"}},
                {"setWeight": 25},
                {"pause": {}},
                {"setWeight": 100},
            ]},
        },
        "status": status,
    })
}

fn route(resource_version: &str, status: &Value) -> CanaryRoute {
    serde_json::from_value(object(resource_version, status)).expect("a CanaryRoute")
}

/// The status the leader wrote for `state`, as the API server keeps it.
fn status_of(state: &RolloutState) -> Value {
    let status = status_codec::encode(
        state,
        &CanaryRouteStatus::default(),
        &StatusContext {
            leader: "weir-0",
            observed_generation: Some(2),
            pause_lengths_ms: &[None, Some(30_000), None, None, None],
            coverage: None,
            last_valid_spec: None,
            refused: None,
            now_ms: T0,
        },
    );
    serde_json::to_value(status).expect("a status")
}

/// The API server's answer to a write with a stale `resourceVersion`.
fn conflict() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Operation cannot be fulfilled on canaryroutes.weir.dev \"checkout\": \
                    the object has been modified; please apply your changes to the latest \
                    version and try again",
        "reason": "Conflict", "code": 409,
    })
}

fn save_in_background(
    store: &Arc<StatusStore>,
    state: RolloutState,
) -> tokio::task::JoinHandle<io::Result<()>> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.save(&state))
}

/// What the save `saving` ([`save_in_background`]) gave, within the guard.
async fn saved(saving: tokio::task::JoinHandle<io::Result<()>>) -> io::Result<()> {
    tokio::time::timeout(GUARD, saving)
        .await
        .expect("in time")
        .expect("the save ran")
}

#[tokio::test]
async fn a_step_advance_is_one_status_patch_carrying_the_resource_version() {
    let (store, mut api) = store();
    store.observe(ROUTE, &route("7", &status_of(&timed_pause())));
    let saving = save_in_background(&store, state(Phase::Progressing, Some(2), 25));

    let patch = next(&mut api).await;
    assert_eq!(patch.method, http::Method::PATCH);
    assert_eq!(patch.path, STATUS_PATH);
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body["metadata"], json!({"resourceVersion": "7"}));
    let status = &patch.body["status"];
    assert_eq!(status["phase"], "Progressing");
    assert_eq!(status["stepIndex"], 2);
    assert_eq!(status["canaryWeight"], 25.0);
    assert_eq!(status["leader"], "weir-0");
    assert_eq!(status["observedGeneration"], 2);
    // The pause is over: a merge patch removes only what it names as null.
    assert_eq!(status["pauseDeadline"], Value::Null);
    assert!(
        status
            .as_object()
            .is_some_and(|s| s.contains_key("pauseDeadline"))
    );
    let answered = object("8", status);
    patch.answer(200, &answered);

    saved(saving).await.expect("the save succeeded");
    assert_eq!(store.resource_version(ROUTE).as_deref(), Some("8"));
    match store.load(ROUTE) {
        Stored::Found(found) => assert_eq!(found.step_index, Some(2)),
        other => panic!("the written state, not {other:?}"),
    }

    // The transition's Event follows the write.
    let event = next(&mut api).await;
    assert_eq!(
        (event.method.clone(), event.path.as_str()),
        (http::Method::POST, EVENTS_PATH)
    );
    assert_eq!(event.body["reason"], "StepAdvanced");
    assert_eq!(event.body["type"], "Normal");
    assert_eq!(event.body["regarding"]["name"], "checkout");
    assert_eq!(event.body["reportingInstance"], "weir-0");
    let created = event.body.clone();
    event.answer(201, &created);

    drop(store);
    no_more_requests(api).await;
}

#[tokio::test]
async fn a_conflict_keeps_nothing_and_the_next_save_carries_the_newer_version() {
    let (store, mut api) = store();
    let before = status_of(&timed_pause());
    store.observe(ROUTE, &route("7", &before));

    let saving = save_in_background(&store, state(Phase::Progressing, Some(2), 25));
    let patch = next(&mut api).await;
    assert_eq!(patch.body["metadata"]["resourceVersion"], "7");
    patch.answer(409, &conflict());
    let refused = saved(saving).await.expect_err("a conflict fails the save");
    assert!(
        refused.to_string().contains("changed since it was read"),
        "{refused}"
    );
    assert_eq!(store.resource_version(ROUTE).as_deref(), Some("7"));
    match store.load(ROUTE) {
        Stored::Found(found) => assert_eq!(*found, {
            let mut expected = timed_pause();
            expected.evidence = Evidence::taken_over();
            expected
        }),
        other => panic!("the state as read, not {other:?}"),
    }

    // The watch brings the newer status (a promote input), and the leader
    // decides again from it.
    let mut newer = before.clone();
    newer["promote"] = json!(true);
    store.observe(ROUTE, &route("9", &newer));
    let saving = save_in_background(&store, state(Phase::Progressing, Some(2), 25));
    let patch = next(&mut api).await;
    assert_eq!(patch.body["metadata"]["resourceVersion"], "9");
    assert_eq!(
        patch.body["status"]["promote"], false,
        "acted on, so cleared"
    );
    let answered = object("10", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the second save succeeded");
    assert_eq!(store.resource_version(ROUTE).as_deref(), Some("10"));

    let event = next(&mut api).await;
    assert_eq!(event.body["reason"], "StepAdvanced");
    event.answer(201, &json!({}));
    drop(store);
    no_more_requests(api).await;
}

#[tokio::test]
async fn an_abort_sends_its_event_then_writes_the_status() {
    let (store, mut api) = store();
    store.observe(
        ROUTE,
        &route("7", &status_of(&state(Phase::Progressing, Some(0), 5))),
    );
    let saving = save_in_background(&store, aborted());

    let event = next(&mut api).await;
    assert_eq!(
        (event.method.clone(), event.path.as_str()),
        (http::Method::POST, EVENTS_PATH)
    );
    assert_eq!(event.body["reason"], "Aborted");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reportingController"], "weir.dev/weir");
    let note = event.body["note"].as_str().unwrap_or_default().to_owned();
    assert!(note.contains("analysis_error_rate"), "{note}");
    event.answer(201, &json!({}));

    let patch = next(&mut api).await;
    assert_eq!(patch.path, STATUS_PATH);
    assert_eq!(patch.body["metadata"]["resourceVersion"], "7");
    assert_eq!(patch.body["status"]["phase"], "Aborted");
    assert_eq!(patch.body["status"]["canaryWeight"], 0.0);
    assert_eq!(
        patch.body["status"]["abort"], true,
        "an analysis abort sets abort"
    );
    assert_eq!(patch.body["status"]["abortReason"], "analysis_error_rate");
    let answered = object("8", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
    drop(store);
    no_more_requests(api).await;
}

/// An abort whose status write met a 409 (a problem-condition write landed
/// first) is decided again from the newer status: its Event went out
/// already, so the second try is the status write alone. Once written, a
/// later abort (after a retry) is told again.
#[tokio::test]
async fn an_abort_written_again_after_a_conflict_is_announced_once() {
    let (store, mut api) = store();
    let progressing = status_of(&state(Phase::Progressing, Some(0), 5));
    store.observe(ROUTE, &route("7", &progressing));

    abort_meets_a_conflict(&store, &mut api, 201).await;

    store.observe(ROUTE, &route("8", &progressing));
    abort_written_again_without_its_event(&store, &mut api).await;

    // Retried, then aborted again: a new abort, a new Event.
    let mut retried = state(Phase::Progressing, Some(0), 5);
    retried.rollout_started_ms = T0 + 60_000;
    store.observe(ROUTE, &route("10", &status_of(&retried)));
    let mut again = aborted();
    again.rollout_started_ms = T0 + 60_000;
    let saving = save_in_background(&store, again);
    let event = next(&mut api).await;
    assert_eq!(
        (event.method.clone(), event.path.as_str()),
        (http::Method::POST, EVENTS_PATH)
    );
    assert_eq!(event.body["reason"], "Aborted");
    event.answer(201, &json!({}));
    let patch = next(&mut api).await;
    let answered = object("11", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the third save succeeded");
    drop(store);
    no_more_requests(api).await;
}

/// Right after a failover the status still names the old leader; this
/// replica's own write of its conditions over it is no other leader's
/// write: an abort it announced before a conflict is not announced again,
/// and it does not count as the leader heard.
#[tokio::test]
async fn a_write_of_its_own_conditions_is_no_other_leaders_write() {
    let (store, mut api) = store();
    let mut progressing = status_of(&state(Phase::Progressing, Some(0), 5));
    progressing["leader"] = json!("weir-old");
    store.observe(ROUTE, &route("7", &progressing));
    abort_meets_a_conflict(&store, &mut api, 201).await;

    let mut with_condition = progressing.clone();
    with_condition["conditions"]
        .as_array_mut()
        .expect("conditions")
        .push(
            json!({"type": "Conflict", "status": "True", "reason": "HostTaken",
                     "message": "taken", "lastTransitionTime": "2023-11-14T22:13:20Z"}),
        );
    // Seen twice: through the watch and in the write's own answer.
    store.observe(ROUTE, &route("8", &with_condition));
    store.observe(ROUTE, &route("8", &with_condition));
    assert_eq!(store.leader_heard_at(), None, "its own write");

    abort_written_again_without_its_event(&store, &mut api).await;
    drop(store);
    no_more_requests(api).await;
}

#[tokio::test]
async fn a_refused_event_does_not_stop_the_aborts_status_write() {
    let (store, mut api) = store();
    store.observe(
        ROUTE,
        &route("7", &status_of(&state(Phase::Progressing, Some(0), 5))),
    );
    let saving = save_in_background(&store, aborted());

    let event = next(&mut api).await;
    assert_eq!(event.path, EVENTS_PATH);
    event.answer(
        403,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "events is forbidden", "reason": "Forbidden", "code": 403}),
    );
    let patch = next(&mut api).await;
    assert_eq!(patch.path, STATUS_PATH);
    let answered = object("8", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving)
        .await
        .expect("the status was written all the same");
    drop(store);
    no_more_requests(api).await;
}

#[tokio::test]
async fn a_command_on_a_follower_is_one_input_patch_without_precondition() {
    let (store, mut api) = store();
    let writing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.write_input(ROUTE, Command::Promote).await })
    };
    let patch = next(&mut api).await;
    assert_eq!(patch.method, http::Method::PATCH);
    assert_eq!(patch.path, STATUS_PATH);
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body, json!({"status": {"promote": true}}));
    patch.answer(200, &object("12", &json!({"promote": true})));
    tokio::time::timeout(GUARD, writing)
        .await
        .expect("in time")
        .expect("the write ran")
        .expect("the input was written");
    drop(store);
    no_more_requests(api).await;
}

#[tokio::test]
async fn a_route_never_read_is_not_written_and_loads_as_missing() {
    let (store, api) = store();
    let refused = save_in_background(&store, state(Phase::Progressing, Some(0), 5))
        .await
        .expect("the save ran")
        .expect_err("nothing to carry as resourceVersion");
    assert!(
        refused.to_string().contains("has not been read yet"),
        "{refused}"
    );
    assert!(matches!(store.load(ROUTE), Stored::Missing));

    // A CanaryRoute without a state yet, then one with nonsense in status.
    store.observe(ROUTE, &route("3", &json!({"promote": true})));
    assert!(matches!(store.load(ROUTE), Stored::Missing));
    let mut nonsense = status_of(&state(Phase::Progressing, Some(0), 5));
    nonsense["stepIndex"] = json!(7);
    store.observe(ROUTE, &route("4", &nonsense));
    match store.load(ROUTE) {
        Stored::Unreadable(message) => assert_eq!(
            message,
            "the status of CanaryRoute shop/checkout is refused: \
             status.stepIndex: 7 is past the 5 steps"
        ),
        other => panic!("refused, not {other:?}"),
    }
    // A lagging watch event does not take the store back.
    store.observe(ROUTE, &route("2", &json!({})));
    assert_eq!(store.resource_version(ROUTE).as_deref(), Some("4"));
    drop(store);
    no_more_requests(api).await;
}

#[tokio::test]
async fn a_write_over_a_refused_status_names_the_refusal_and_sends_no_event() {
    let (store, mut api) = store();
    let mut nonsense = status_of(&state(Phase::Progressing, Some(0), 5));
    nonsense["phase"] = json!("Exploded");
    store.observe(ROUTE, &route("5", &nonsense));
    assert!(matches!(store.load(ROUTE), Stored::Unreadable(_)));

    // The state kept from before the nonsense is written back over it.
    let saving = save_in_background(&store, state(Phase::Progressing, Some(0), 5));
    let patch = next(&mut api).await;
    assert_eq!(patch.path, STATUS_PATH);
    assert_eq!(patch.body["status"]["phase"], "Progressing");
    let refusal = patch.body["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "StatusRefused"))
        .cloned()
        .expect("a StatusRefused condition");
    assert_eq!(refusal["status"], "True");
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("status.phase: \"Exploded\" is not a phase"),
        "{message}"
    );
    let answered = object("6", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
    drop(store);
    no_more_requests(api).await;
}

/// A status field of a wrong type (`canaryWeight: "fifty"`, `promote: 7`,
/// past an older CRD's schema) refuses the status, naming the field, and
/// the write of the state kept removes the fields it does not write.
#[tokio::test]
async fn a_status_field_of_a_wrong_type_is_refused_and_written_over() {
    let (store, mut api) = store();
    let mut nonsense = status_of(&state(Phase::Progressing, Some(0), 5));
    nonsense["canaryWeight"] = json!("fifty");
    nonsense["promote"] = json!(7);
    store.observe(ROUTE, &route("5", &nonsense));
    match store.load(ROUTE) {
        Stored::Unreadable(message) => assert!(
            message.starts_with(
                "the status of CanaryRoute shop/checkout is refused: status.canaryWeight: \
                 invalid type: string \"fifty\""
            ),
            "{message}"
        ),
        other => panic!("refused, not {other:?}"),
    }

    let saving = save_in_background(&store, state(Phase::Progressing, Some(0), 5));
    let patch = next(&mut api).await;
    assert_eq!(patch.body["status"]["canaryWeight"], 5.0);
    assert_eq!(patch.body["status"]["promote"], Value::Null, "removed");
    let refusal = patch.body["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "StatusRefused"))
        .cloned()
        .expect("a StatusRefused condition");
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("status.canaryWeight: invalid type")),
        "{refusal}"
    );
    let answered = object("6", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
    assert!(
        matches!(store.load(ROUTE), Stored::Found(_)),
        "readable again"
    );
    drop(store);
    no_more_requests(api).await;
}

/// A follower's tick sends nothing, even with a timed pause past its end:
/// only the leader writes. The same tick as leader sends the advance, so
/// the mocked API server would see a follower's request.
#[tokio::test]
async fn a_followers_tick_makes_no_request() {
    use crate::controller::cluster_routes::Observed;
    use crate::controller::transitions;
    use crate::fixtures;
    use weir_proxy::metrics::RoleCounts;

    let (store, mut api) = store();
    store.observe(ROUTE, &route("7", &status_of(&timed_pause())));
    let steps = "[{setWeight: 5}, {pause: {duration: 30s}}, {setWeight: 25}, {pause: {}}, {setWeight: 100}]";
    let with_steps = fixtures::loaded(&fixtures::config_text(
        None,
        &fixtures::route("checkout", Some(steps)),
    ));
    let mut cluster_route = with_steps.config().routes[0].clone();
    cluster_route.name = Arc::from(ROUTE);
    cluster_route.path_prefix = "/shop".to_owned();
    let (process, clock) = fixtures::process_with(
        &fixtures::config_text(None, &fixtures::route("web", None)),
        std::path::PathBuf::from("/nonexistent/weir.yaml"),
        Arc::clone(&store) as Arc<dyn StateStore>,
    )
    .await;
    assert_eq!(fixtures::START_MS, T0);
    clock.advance(Duration::from_secs(60));
    {
        let mut control = process.control.lock().await;
        let observe = |name: &str| Observed {
            stored: StateStore::load(&*store, name),
            inputs: Vec::new(),
            marked_not_served: false,
            aborted_here: false,
        };
        let routes = vec![cluster_route];
        let decisions = control.decide_cluster(&routes, false, &observe, process.now_ms());
        control.apply_cluster(routes, false, decisions, Vec::new());
        assert_eq!(
            control.rollouts.get(ROUTE).map(|s| s.step_index),
            Some(Some(1)),
            "the follower keeps the status's state"
        );
    }
    let counts = |_: &str, _| RoleCounts::zero();

    transitions::tick(&process, counts).await;
    // A request sent during the tick would be queued by now.
    let follower_sent = futures_util::FutureExt::now_or_never(api.next_request());
    assert!(follower_sent.is_none(), "a follower's tick sent a request");
    assert_eq!(
        process.control.lock().await.rollouts[ROUTE].step_index,
        Some(1),
        "a follower does not advance"
    );

    process.control.lock().await.set_leading(true);
    let leading = tokio::spawn({
        let process = Arc::clone(&process);
        async move { transitions::tick(&process, counts).await }
    });
    let patch = next(&mut api).await;
    assert_eq!(
        (patch.method.clone(), patch.path.as_str()),
        (http::Method::PATCH, STATUS_PATH)
    );
    assert_eq!(patch.body["status"]["stepIndex"], 2, "{:#}", patch.body);
    patch.answer(409, &conflict());
    leading.await.expect("the leader's tick ends");
    drop(process);
    drop(store);
    no_more_requests(api).await;
}

#[test]
fn a_blue_green_spec_counts_the_steps_its_rollout_runs() {
    use weir_config::schema::{AnalysisRefSpec, BlueGreenSpec, PreviewSpec};
    let spec = |auto: Option<bool>, seconds: Option<u64>, pre: bool, post: bool| BlueGreenSpec {
        preview: PreviewSpec::default(),
        auto_promotion_enabled: auto,
        auto_promotion_seconds: seconds,
        scale_down_delay_seconds: None,
        pre_promotion_analysis: pre.then(AnalysisRefSpec::default),
        post_promotion_analysis: post.then(AnalysisRefSpec::default),
    };
    let cases = [
        (spec(None, None, false, false), vec![None, None]),
        (
            spec(Some(false), None, true, true),
            vec![None, None, None, None, None],
        ),
        (
            spec(None, Some(20), false, true),
            vec![None, Some(20_000), None, None],
        ),
    ];
    for (bg, want) in cases {
        assert_eq!(blue_green_pause_lengths_ms(&bg), want, "{bg:?}");
    }
}

#[tokio::test]
async fn a_route_made_again_under_its_name_is_taken_whatever_its_version() {
    let (store, _api) = store();
    assert!(!store.observe(ROUTE, &route("70", &status_of(&timed_pause()))));
    // An older version of the same object: a lagging event, ignored.
    assert!(!store.observe(ROUTE, &route("60", &status_of(&timed_pause()))));
    assert_eq!(store.resource_version(ROUTE).as_deref(), Some("70"));
    // The same name, another object (after a restore from a backup, its
    // version may be lower).
    let mut again = object("5", &status_of(&timed_pause()));
    again["metadata"]["uid"] = json!("uid-checkout-2");
    assert!(
        store.observe(
            ROUTE,
            &serde_json::from_value(again).expect("a CanaryRoute"),
        ),
        "another object under the name"
    );
    assert_eq!(store.resource_version(ROUTE).as_deref(), Some("5"));

    store.forget_others(|route| route != ROUTE);
    assert_eq!(
        store.resource_version(ROUTE),
        None,
        "a deleted route is forgotten"
    );
}

/// A follower that cannot read the Lease hears the leader through its
/// status writes: a newer version of a status already seen, changed
/// beyond the command inputs. The statuses of the first read, the same
/// version seen again and a command input written by any replica are not
/// the leader's voice.
#[tokio::test(start_paused = true)]
async fn a_leaders_status_write_is_heard_and_a_command_input_is_not() {
    let (store, api) = store();
    let paused = status_of(&timed_pause());
    store.observe(ROUTE, &route("7", &paused));
    assert_eq!(store.leader_heard_at(), None, "written when, unknown");
    store.observe(ROUTE, &route("7", &paused));
    assert_eq!(store.leader_heard_at(), None, "the same write again");
    let mut input = paused.clone();
    input["abort"] = json!(true);
    store.observe(ROUTE, &route("8", &input));
    assert_eq!(store.leader_heard_at(), None, "an input, from anyone");

    tokio::time::advance(Duration::from_secs(3)).await;
    let advanced = status_of(&state(Phase::Progressing, Some(2), 25));
    store.observe(ROUTE, &route("9", &advanced));
    assert_eq!(store.leader_heard_at(), Some(tokio::time::Instant::now()));

    // An older version delivered late is not news.
    tokio::time::advance(Duration::from_secs(3)).await;
    store.observe(ROUTE, &route("8", &input));
    assert!(store.leader_heard_at() < Some(tokio::time::Instant::now()));
    drop(store);
    no_more_requests(api).await;
}

/// Reaching a pause step (timed or not) is told as `Paused`, not as
/// `StepAdvanced`: the rollout is held there.
#[tokio::test]
async fn reaching_a_pause_step_sends_a_paused_event() {
    let (store, mut api) = store();
    store.observe(
        ROUTE,
        &route("7", &status_of(&state(Phase::Progressing, Some(0), 5))),
    );
    let saving = save_in_background(&store, timed_pause());
    let patch = next(&mut api).await;
    assert_eq!(patch.path, STATUS_PATH);
    assert_eq!(patch.body["status"]["phase"], "Paused");
    let answered = object("8", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");

    let event = next(&mut api).await;
    assert_eq!(event.path, EVENTS_PATH);
    assert_eq!(event.body["reason"], "Paused");
    assert_eq!(event.body["action"], "HoldRollout");
    assert_eq!(event.body["type"], "Normal");
    event.answer(201, &json!({}));
    drop(store);
    no_more_requests(api).await;
}

/// A spec edit that makes no transition (a new generation, the same
/// rollout position) leaves `observedGeneration` behind: the status is
/// stale, and the leader's refresh writes it with the generation seen.
#[tokio::test]
async fn a_spec_edit_without_a_transition_makes_the_status_stale() {
    let (store, mut api) = store();
    let paused = timed_pause();
    store.observe(ROUTE, &route("7", &status_of(&paused)));
    assert!(!store.judgement_is_stale(&paused), "generation 2 observed");

    let mut edited = object("8", &status_of(&paused));
    edited["metadata"]["generation"] = json!(3);
    edited["status"]["lastValidSpec"] = serde_json::to_value(served_spec(2)).expect("JSON");
    let edited: CanaryRoute = serde_json::from_value(edited).expect("a CanaryRoute");
    store.observe(ROUTE, &edited);
    assert!(
        store.judgement_is_stale(&paused),
        "generation 3 not observed"
    );

    // While generation 3 does not validate, generation 2 is served: the
    // status says so already.
    store.set_served(ROUTE, served_spec(2), five_steps());
    assert!(!store.judgement_is_stale(&paused), "generation 2 served");
    store.set_served(ROUTE, served_spec(3), five_steps());
    assert!(store.judgement_is_stale(&paused), "generation 3 served");

    let saving = save_in_background(&store, paused.clone());
    let patch = next(&mut api).await;
    assert_eq!(patch.body["metadata"]["resourceVersion"], "8");
    assert_eq!(patch.body["status"]["observedGeneration"], 3);
    assert_eq!(
        patch.body["status"]["lastValidSpec"],
        serde_json::to_value(served_spec(3)).expect("JSON"),
        "the spec served is kept with its generation"
    );
    let mut answered = object("9", &patch.body["status"]);
    answered["metadata"]["generation"] = json!(3);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
    assert!(!store.judgement_is_stale(&paused), "written: up to date");

    // A status without the spec served (as an older weir wrote it) is
    // stale.
    let mut older = object("10", &status_of(&paused));
    older["metadata"]["generation"] = json!(3);
    older["status"]["observedGeneration"] = json!(3);
    let older: CanaryRoute = serde_json::from_value(older).expect("a CanaryRoute");
    store.observe(ROUTE, &older);
    assert!(store.judgement_is_stale(&paused), "no lastValidSpec");

    // No transition, no Event.
    drop(store);
    no_more_requests(api).await;
}

/// The spec of `generation` as served.
fn served_spec(generation: i64) -> LastValidSpec {
    LastValidSpec {
        generation: Some(generation),
        spec: json!({"pathPrefix": "/", "stable": {"revision": "v1"}}),
    }
}

/// The timed pauses of [`object`]'s five steps.
fn five_steps() -> Vec<Option<u64>> {
    vec![None, Some(30_000), None, None, None]
}

/// While an edit that does not validate is not served (its spec has two
/// steps), the status counts the steps of the spec served (five): a state
/// at step 4 is written with `stepCount` 5, so that it is not read back as
/// past the last step.
#[tokio::test]
async fn the_status_counts_the_steps_of_the_spec_served() {
    let (store, mut api) = store();
    let at_step_4 = state(Phase::Progressing, Some(3), 25);
    let mut edited = object("7", &status_of(&at_step_4));
    edited["metadata"]["generation"] = json!(3);
    edited["spec"]["strategy"]["steps"] = json!([{"setWeight": 5}, {"setWeight": 150}]);
    let edited: CanaryRoute = serde_json::from_value(edited).expect("a CanaryRoute");
    store.observe(ROUTE, &edited);
    store.set_served(ROUTE, served_spec(2), five_steps());
    match store.load(ROUTE) {
        Stored::Found(found) => assert_eq!(found.step_index, Some(3)),
        other => panic!("the state at step 4, not {other:?}"),
    }
    let mut ahead = at_step_4.clone();
    ahead.step_index = Some(4);
    ahead.canary_weight = Weight::FULL;
    let saving = save_in_background(&store, ahead);
    let patch = next(&mut api).await;
    assert_eq!(patch.body["status"]["stepCount"], 5);
    assert_eq!(patch.body["status"]["observedGeneration"], 2);
    let answered = object("8", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
}

/// An abort's Event that was refused has not been told: decided again
/// after a 409, the abort sends it again. Once another leader has written
/// the status, an abort this replica decides is news too.
#[tokio::test]
async fn an_abort_is_announced_again_when_its_event_failed_or_another_leader_wrote() {
    let (store, mut api) = store();
    let progressing = status_of(&state(Phase::Progressing, Some(0), 5));
    store.observe(ROUTE, &route("7", &progressing));

    // The Event refused, then the write refused (409).
    abort_meets_a_conflict(&store, &mut api, 403).await;

    // Decided again: the Event goes out this time (the helper expects it
    // first); the write fails again.
    store.observe(ROUTE, &route("8", &progressing));
    abort_meets_a_conflict(&store, &mut api, 201).await;

    // Another leader wrote meanwhile: the abort decided here is news.
    let mut other = progressing.clone();
    other["leader"] = json!("weir-1");
    store.observe(ROUTE, &route("9", &other));
    let saving = save_in_background(&store, aborted());
    let event = next(&mut api).await;
    assert_eq!(event.path, EVENTS_PATH, "after another leader, told again");
    event.answer(201, &json!({}));
    let patch = next(&mut api).await;
    let answered = object("10", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
    drop(store);
    no_more_requests(api).await;
}

/// A new leader whose abort met a 409 (an `abort: true` input written
/// meanwhile, the status still naming the old leader) does not take that
/// input's version for another leader's write: the abort is told once.
#[tokio::test]
async fn an_input_written_over_the_old_leaders_status_does_not_tell_the_abort_again() {
    let (store, mut api) = store();
    let mut progressing = status_of(&state(Phase::Progressing, Some(0), 5));
    progressing["leader"] = json!("weir-1");
    store.observe(ROUTE, &route("7", &progressing));
    abort_meets_a_conflict(&store, &mut api, 201).await;

    let mut with_input = progressing.clone();
    with_input["abort"] = json!(true);
    store.observe(ROUTE, &route("8", &with_input));
    let saving = save_in_background(&store, aborted());
    let patch = next(&mut api).await;
    assert_eq!(
        (patch.method.clone(), patch.path.as_str()),
        (http::Method::PATCH, STATUS_PATH),
        "the abort's Event is not sent twice"
    );
    let answered = object("9", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the save succeeded");
    drop(store);
    no_more_requests(api).await;
}

/// Saves [`aborted`] in the background as the API server answers its Event
/// with `event_code` and its status write with 409; the save fails.
/// The abort saved again over the status at version 8 is one status
/// patch, Aborted, with no Event before it: its Event went out already.
async fn abort_written_again_without_its_event(store: &Arc<StatusStore>, api: &mut ApiHandle) {
    let saving = save_in_background(store, aborted());
    let patch = next(api).await;
    assert_eq!(
        (patch.method.clone(), patch.path.as_str()),
        (http::Method::PATCH, STATUS_PATH),
        "the abort's Event is not sent twice"
    );
    assert_eq!(patch.body["metadata"]["resourceVersion"], "8");
    assert_eq!(patch.body["status"]["phase"], "Aborted");
    let answered = object("9", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("the second save succeeded");
}

async fn abort_meets_a_conflict(store: &Arc<StatusStore>, api: &mut ApiHandle, event_code: u16) {
    let saving = save_in_background(store, aborted());
    let event = next(api).await;
    assert_eq!(event.path, EVENTS_PATH);
    assert_eq!(event.body["reason"], "Aborted");
    let answer = if event_code == 201 {
        json!({})
    } else {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": "events is forbidden", "reason": "Forbidden", "code": event_code})
    };
    event.answer(event_code, &answer);
    let patch = next(api).await;
    assert_eq!(patch.path, STATUS_PATH);
    patch.answer(409, &conflict());
    saved(saving).await.expect_err("a conflict fails the save");
}

/// A replica whose leadership ran out (stopped past its renew deadline and
/// woken before its election's next round) writes no rollout state, and
/// says why; leading again, it writes.
#[tokio::test]
async fn a_replica_whose_leadership_ran_out_writes_no_state() {
    let (store, mut api) = store();
    store.observe(
        ROUTE,
        &route("7", &status_of(&state(Phase::Progressing, Some(0), 5))),
    );
    let now = tokio::time::Instant::now();
    let (election, leadership) = tokio::sync::watch::channel(Leadership {
        is_leader: true,
        leader: Some("weir-0".to_owned()),
        heard_at: Some(now),
        leads_until: Some(now),
    });
    store.follow_leadership(leadership);
    let refused = saved(save_in_background(&store, timed_pause()))
        .await
        .expect_err("not written");
    assert!(
        refused.to_string().contains("this replica no longer leads"),
        "{refused}"
    );

    election.send_modify(|l| l.leads_until = Some(now + std::time::Duration::from_secs(3600)));
    let saving = save_in_background(&store, timed_pause());
    let patch = next(&mut api).await;
    assert_eq!(patch.path, STATUS_PATH);
    let answered = object("8", &patch.body["status"]);
    patch.answer(200, &answered);
    saved(saving).await.expect("written while leading");
    let event = next(&mut api).await;
    event.answer(201, &json!({}));
    drop(store);
    no_more_requests(api).await;
}

/// An API server whose CRD is older than this weir drops the
/// `lastValidSpec` a write sends: that is taken as kept from then on, or
/// every refresh would write it again, for ever.
#[tokio::test]
async fn a_last_valid_spec_the_api_server_drops_is_written_once() {
    let (store, mut api) = store();
    let paused = timed_pause();
    store.observe(ROUTE, &route("7", &status_of(&paused)));
    store.set_served(ROUTE, served_spec(2), five_steps());
    assert!(store.judgement_is_stale(&paused), "no lastValidSpec yet");

    let saving = save_in_background(&store, paused.clone());
    let patch = next(&mut api).await;
    assert!(patch.body["status"]["lastValidSpec"].is_object());
    // The old schema prunes the field it does not know.
    let mut pruned = patch.body["status"].clone();
    if let Some(fields) = pruned.as_object_mut() {
        fields.remove("lastValidSpec");
    }
    patch.answer(200, &object("8", &pruned));
    saved(saving).await.expect("the save succeeded");
    assert!(
        !store.judgement_is_stale(&paused),
        "not written again at every refresh"
    );
    drop(store);
    no_more_requests(api).await;
}

/// A field of a wrong type nested in an object (`analysis.reason: 5`): the
/// write over it removes what it does not replace, or the merge patch would
/// keep the bad value and the status would be refused again for ever.
#[test]
fn a_write_removes_the_nested_keys_of_a_field_left_out() {
    let unreadable = [UnreadableField {
        field: "analysis".to_owned(),
        problem: "invalid type: integer `5`, expected a string".to_owned(),
        written: json!({"verdict": "Pass", "reason": 5}),
    }];
    let next = CanaryRouteStatus {
        analysis: Some(crate::cluster::resource::StatusAnalysis {
            verdict: Some("Pass".to_owned()),
            ..Default::default()
        }),
        ..CanaryRouteStatus::default()
    };
    let patch =
        status_patch(&CanaryRouteStatus::default(), &unreadable, &next, "9").expect("a patch");
    assert_eq!(patch["status"]["analysis"]["verdict"], "Pass");
    assert_eq!(patch["status"]["analysis"]["reason"], Value::Null);
    assert!(
        patch["status"]["analysis"]
            .as_object()
            .is_some_and(|a| a.contains_key("reason")),
        "{patch:#}"
    );
    // Not written at all: removed whole.
    let patch = status_patch(
        &CanaryRouteStatus::default(),
        &unreadable,
        &CanaryRouteStatus::default(),
        "9",
    )
    .expect("a patch");
    assert_eq!(patch["status"]["analysis"], Value::Null);
}
