//! Leader election against the test Kubernetes API server: one leader among
//! racing candidates, takeover after a silent leader's lease duration,
//! immediate takeover after a clean release, and a leader that cannot renew
//! stepping down.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_control::cluster::lease::{Elector, Leadership, LeaseConfig};
use weir_e2e::{KubeApi, wait_until};

const LEASES: &str = "apis/coordination.k8s.io/v1/leases";
const LIMIT: Duration = Duration::from_secs(20);

async fn client(api: &KubeApi, dir: &std::path::Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(api.write_kubeconfig(dir)).expect("a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

/// Short timings, so that a takeover happens within a test.
fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(100),
        ..LeaseConfig::new("weir", "weir-leader", identity)
    }
}

/// A candidate running its election loop.
struct Candidate {
    leadership: watch::Receiver<Leadership>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Candidate {
    fn start(client: kube::Client, identity: &str) -> Candidate {
        let (leadership_tx, leadership) = watch::channel(Leadership::default());
        let (stop, stopped) = watch::channel(false);
        let elector = Elector::new(client, config(identity));
        let task = tokio::spawn(elector.run(leadership_tx, stopped));
        Candidate {
            leadership,
            stop,
            task,
        }
    }

    fn leads(&self) -> bool {
        self.leadership.borrow().is_leader
    }
}

fn holder(api: &KubeApi) -> Option<String> {
    api.get(LEASES, "weir", "weir-leader")
        .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn racing_candidates_elect_exactly_one_leader_and_agree_on_it() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client(&api, dir.path()).await;
    let candidates: Vec<Candidate> = ["weir-0", "weir-1", "weir-2"]
        .iter()
        .map(|id| Candidate::start(client.clone(), id))
        .collect();
    let leader = wait_until(LIMIT, "a leader", || async {
        let leading: Vec<usize> = (0..3).filter(|&i| candidates[i].leads()).collect();
        (leading.len() == 1).then(|| leading[0])
    })
    .await;
    let name = format!("weir-{leader}");
    assert_eq!(holder(&api).as_deref(), Some(name.as_str()));
    // Every follower learns who leads.
    wait_until(LIMIT, "followers to see the leader", || async {
        candidates
            .iter()
            .all(|c| c.leadership.borrow().leader.as_deref() == Some(name.as_str()))
            .then_some(())
    })
    .await;
    // Several renewals later there is still exactly one leader, the same.
    let renewed_from = api.resource_version();
    wait_until(LIMIT, "a few renewals", || async {
        (api.resource_version() >= renewed_from + 5).then_some(())
    })
    .await;
    let leading: Vec<usize> = (0..3).filter(|&i| candidates[i].leads()).collect();
    assert_eq!(leading, [leader]);
    let lease: Lease =
        serde_json::from_value(api.get(LEASES, "weir", "weir-leader").expect("the lease"))
            .expect("a Lease");
    let spec = lease.spec.expect("a spec");
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0), "nobody took it over");
    assert!(spec.renew_time.is_some() && spec.acquire_time.is_some());
}

#[tokio::test]
async fn a_silent_leader_is_replaced_after_the_lease_duration() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client(&api, dir.path()).await;
    let first = Candidate::start(client.clone(), "weir-0");
    wait_until(LIMIT, "weir-0 to lead", || async {
        first.leads().then_some(())
    })
    .await;
    let second = Candidate::start(client.clone(), "weir-1");
    // As if killed: no release.
    first.task.abort();
    wait_until(LIMIT, "weir-1 to take over", || async {
        second.leads().then_some(())
    })
    .await;
    assert_eq!(holder(&api).as_deref(), Some("weir-1"));
    let lease = api.get(LEASES, "weir", "weir-leader").expect("the lease");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    drop(second.stop);
}

#[tokio::test]
async fn a_leader_that_stops_cleanly_releases_the_lease_for_the_next() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client(&api, dir.path()).await;
    let first = Candidate::start(client.clone(), "weir-0");
    wait_until(LIMIT, "weir-0 to lead", || async {
        first.leads().then_some(())
    })
    .await;
    let second = Candidate::start(client.clone(), "weir-1");
    wait_until(LIMIT, "weir-1 to see weir-0 lead", || async {
        (second.leadership.borrow().leader.as_deref() == Some("weir-0")).then_some(())
    })
    .await;
    first.stop.send_replace(true);
    first.task.await.expect("the election loop ends");
    wait_until(LIMIT, "weir-1 to take over", || async {
        second.leads().then_some(())
    })
    .await;
    assert_eq!(holder(&api).as_deref(), Some("weir-1"));
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_and_one_leads_again_after() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client(&api, dir.path()).await;
    let candidates = [
        Candidate::start(client.clone(), "weir-0"),
        Candidate::start(client.clone(), "weir-1"),
    ];
    wait_until(LIMIT, "a leader", || async {
        candidates.iter().any(Candidate::leads).then_some(())
    })
    .await;
    api.set_down(true);
    wait_until(LIMIT, "the leader to step down", || async {
        candidates.iter().all(|c| !c.leads()).then_some(())
    })
    .await;
    api.set_down(false);
    wait_until(LIMIT, "one leader again", || async {
        (candidates.iter().filter(|c| c.leads()).count() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lease_renewed_by_another_holder_is_not_taken() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client(&api, dir.path()).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "weir");
    let mut elector = Elector::new(client, config("weir-1"));
    api.put(
        LEASES,
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "weir-leader", "namespace": "weir"},
            "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 2,
                     "renewTime": "2026-01-01T00:00:00.000000Z"},
        }),
    );
    // The other holder renews every 500 ms (a new renewTime each time): by
    // our clock its record keeps changing, so it is never expired, whatever
    // the timestamps say.
    for round in 0..8u32 {
        assert!(
            !elector
                .try_acquire_or_renew()
                .await
                .expect("the API answers"),
            "round {round}: a live holder's lease is not taken"
        );
        let mut lease = leases.get("weir-leader").await.expect("the lease");
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        }
        leases
            .replace("weir-leader", &Default::default(), &lease)
            .await
            .expect("the holder renews");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(holder(&api).as_deref(), Some("elsewhere"));
    assert_eq!(elector.holder().as_deref(), Some("elsewhere"));
}
