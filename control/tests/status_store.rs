//! Rollout state in CanaryRoute status against the test Kubernetes API
//! server: of two stores that write over the same `resourceVersion`,
//! exactly one wins, the other gets the conflict and nothing of it is kept,
//! and after reading the newer status it writes again.

use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use weir_config::Weight;
use weir_control::cluster::resource::CanaryRoute;
use weir_control::cluster::status_store::StatusStore;
use weir_control::persist::{StateStore, Stored};
use weir_control::rollout::{AbortReason, Evidence, Phase, RolloutState};
use weir_e2e::KubeApi;

const CANARY_ROUTES: &str = "apis/weir.dev/v1alpha1/canaryroutes";
const ROUTE: &str = "shop/checkout";
/// Only a guard against a hang.
const GUARD: Duration = Duration::from_secs(20);

async fn client(api: &KubeApi, dir: &std::path::Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(api.write_kubeconfig(dir)).expect("a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

fn state(phase: Phase, step: Option<usize>, percent: u32) -> RolloutState {
    RolloutState {
        route: ROUTE.to_owned(),
        phase,
        step_index: step,
        canary_weight: Weight::from_percent_int(percent),
        rollout_seq: 1,
        stable_revision: "v1".to_owned(),
        canary_revision: Some("v2".to_owned()),
        promoted_revision: None,
        pause_deadline_ms: None,
        pause_remaining_ms: None,
        pause_length_ms: None,
        held: false,
        rollout_started_ms: 1_700_000_000_000,
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

fn current(api: &KubeApi) -> (Value, CanaryRoute) {
    let stored = api
        .get(CANARY_ROUTES, "shop", "checkout")
        .expect("the CanaryRoute exists");
    let object = serde_json::from_value(stored.clone()).expect("a CanaryRoute");
    (stored, object)
}

fn save(
    store: &Arc<StatusStore>,
    state: RolloutState,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.save(&state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_writers_over_the_same_version_exactly_one_wins() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client(&api, dir.path()).await;
    api.put(
        CANARY_ROUTES,
        json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "CanaryRoute",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {
                "stable": {"revision": "v1", "endpoints": ["10.0.0.1:80"]},
                "canary": {"revision": "v2", "endpoints": ["10.0.0.2:80"]},
                "strategy": {"steps": [{"setWeight": 5}, {"pause": {}}, {"setWeight": 50}]},
            },
            "status": {
                "phase": "Progressing", "stepIndex": 0, "stepCount": 3, "canaryWeight": 5.0,
                "seq": 1, "rolloutId": "1-v2", "stableRevision": "v1", "canaryRevision": "v2",
                "rolloutStartTime": "2023-11-14T22:13:20.000Z", "held": false, "failures": 0,
            },
        }),
    );
    let (_, object) = current(&api);
    let read_at = object
        .metadata
        .resource_version
        .clone()
        .expect("a resourceVersion");

    // Two replicas that both believe they lead, reading the same status.
    let stores: Vec<Arc<StatusStore>> = ["weir-0", "weir-1"]
        .iter()
        .map(|id| {
            let store = StatusStore::new(client.clone(), tokio::runtime::Handle::current(), id);
            store.observe(ROUTE, &object);
            Arc::new(store)
        })
        .collect();
    let advance = state(Phase::Paused, Some(1), 5);
    let mut abort = state(Phase::Aborted, Some(0), 0);
    abort.abort_reason = Some(AbortReason::Manual);
    let racing = [
        save(&stores[0], advance.clone()),
        save(&stores[1], abort.clone()),
    ];
    let mut results = Vec::new();
    for writer in racing {
        let result = tokio::time::timeout(GUARD, writer)
            .await
            .expect("the write ends before the guard's deadline")
            .expect("the write ran");
        results.push(result);
    }
    let winners: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one write wins: {results:?}");
    let (winner, loser) = (winners[0], 1 - winners[0]);
    let refused = results[loser].as_ref().expect_err("the other fails");
    assert!(
        refused.to_string().contains("changed since it was read"),
        "{refused}"
    );

    // The resource holds the winner's state, signed by it.
    let (stored, _) = current(&api);
    let identity = ["weir-0", "weir-1"][winner];
    assert_eq!(stored["status"]["leader"], identity);
    let expected_phase = if winner == 0 { "Paused" } else { "Aborted" };
    assert_eq!(stored["status"]["phase"], expected_phase);
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::PATCH && r.path.ends_with("/checkout/status"))
        .collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    for patch in &patches {
        assert_eq!(patch.body["metadata"]["resourceVersion"], json!(read_at));
    }
    let mut answers: Vec<u16> = patches.iter().map(|p| p.status).collect();
    answers.sort_unstable();
    assert_eq!(answers, [200, 409]);

    // The loser kept nothing: it still reads the old status; once it sees
    // the newer one, it decides from it and writes with the new version.
    assert_eq!(stores[loser].resource_version(ROUTE), Some(read_at.clone()));
    let (_, newer) = current(&api);
    stores[loser].observe(ROUTE, &newer);
    match stores[loser].load(ROUTE) {
        Stored::Found(found) => assert_eq!(found.phase.as_str(), expected_phase),
        other => panic!("the winner's state, not {other:?}"),
    }
    let mut next = if winner == 0 { advance } else { abort };
    next.message = "decided again from the newer status".to_owned();
    tokio::time::timeout(GUARD, save(&stores[loser], next))
        .await
        .expect("in time")
        .expect("the write ran")
        .expect("the write over the newer version succeeds");
    let (stored, _) = current(&api);
    assert_eq!(stored["status"]["leader"], ["weir-0", "weir-1"][loser]);
    assert_eq!(
        stored["status"]["message"],
        "decided again from the newer status"
    );
}
