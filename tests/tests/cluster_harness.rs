//! The multi-replica harness (`weir_e2e::Cluster`) seeds the objects weir
//! replicas read the way the real cluster would hold them: read back with
//! kube's own client and typed `k8s-openapi` objects through the kubeconfig
//! the replicas get. No weir process is started here.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use weir_e2e::{Cluster, ENDPOINT_SLICES, LEASE, PEERS, SERVICE_NAME_LABEL, WEIR_NAMESPACE};

const LIMIT: Duration = Duration::from_secs(10);

async fn client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `(name, [(address, port, ready, serving, terminating)])` of each slice.
type SliceView = (String, Vec<(String, i32, bool, bool, bool)>);

fn view(slices: &[EndpointSlice]) -> Vec<SliceView> {
    let mut out: Vec<SliceView> = slices
        .iter()
        .map(|slice| {
            let port = slice
                .ports
                .as_ref()
                .and_then(|ports| ports.first())
                .and_then(|p| p.port)
                .expect("a slice port");
            let endpoints = slice
                .endpoints
                .iter()
                .map(|e| {
                    let conditions = e.conditions.clone().unwrap_or_default();
                    (
                        e.addresses[0].clone(),
                        port,
                        conditions.ready.unwrap_or(false),
                        conditions.serving.unwrap_or(false),
                        conditions.terminating.unwrap_or(false),
                    )
                })
                .collect();
            (slice.metadata.name.clone().unwrap_or_default(), endpoints)
        })
        .collect();
    out.sort();
    out
}

async fn slices_of(client: &kube::Client, namespace: &str, service: &str) -> Vec<EndpointSlice> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    slices
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}")))
        .await
        .expect("an EndpointSlice list")
        .items
}

#[tokio::test]
async fn the_peers_service_has_one_slice_per_replica_with_its_admin_port() {
    let cluster = Cluster::without_replicas().await;
    for (i, port) in [19900, 19901, 19902].into_iter().enumerate() {
        cluster.set_peer(i, addr(port), true);
    }
    let client = client(&cluster).await;

    let services: Api<Service> = Api::namespaced(client.clone(), WEIR_NAMESPACE);
    let peers = services.get(PEERS).await.expect("the peers Service");
    let spec = peers.spec.expect("a spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
    let ports = spec.ports.expect("ports");
    assert_eq!(ports[0].name.as_deref(), Some("admin"));

    let slices = slices_of(&client, WEIR_NAMESPACE, PEERS).await;
    assert_eq!(
        view(&slices),
        [
            (
                "weir-peers-weir-0".to_owned(),
                vec![("127.0.0.1".to_owned(), 19900, true, true, false)]
            ),
            (
                "weir-peers-weir-1".to_owned(),
                vec![("127.0.0.1".to_owned(), 19901, true, true, false)]
            ),
            (
                "weir-peers-weir-2".to_owned(),
                vec![("127.0.0.1".to_owned(), 19902, true, true, false)]
            ),
        ]
    );
    for slice in &slices {
        let port = &slice.ports.as_ref().expect("ports")[0];
        assert_eq!(port.name.as_deref(), Some("admin"));
        let target = slice.endpoints[0]
            .target_ref
            .as_ref()
            .expect("a target pod");
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert!(
            slice
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.ends_with(target.name.as_deref().unwrap_or("?"))),
            "{slice:?}"
        );
    }

    // A replica whose probe fails is published not ready.
    cluster.set_peer(1, addr(19901), false);
    let slices = slices_of(&client, WEIR_NAMESPACE, PEERS).await;
    assert_eq!(
        view(&slices)[1].1,
        [("127.0.0.1".to_owned(), 19901, false, false, false)]
    );
}

#[tokio::test]
async fn service_endpoints_are_one_slice_per_port_and_replaced_as_a_whole() {
    let cluster = Cluster::without_replicas().await;
    cluster.add_service("shop", "checkout-v1", 80);
    cluster.set_endpoints(
        "shop",
        "checkout-v1",
        &[
            (addr(20001), true, true, false),
            (addr(20002), false, true, true),
        ],
    );
    let client = client(&cluster).await;

    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    let service = services.get("checkout-v1").await.expect("the Service");
    let port = &service.spec.expect("a spec").ports.expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 80));

    assert_eq!(
        view(&slices_of(&client, "shop", "checkout-v1").await),
        [
            (
                "checkout-v1-20001".to_owned(),
                vec![("127.0.0.1".to_owned(), 20001, true, true, false)]
            ),
            (
                "checkout-v1-20002".to_owned(),
                vec![("127.0.0.1".to_owned(), 20002, false, true, true)]
            ),
        ]
    );
    let kept_version = cluster
        .api
        .get(ENDPOINT_SLICES, "shop", "checkout-v1-20002")
        .expect("the slice")["metadata"]["resourceVersion"]
        .clone();

    // Pod 20001 goes, 20003 comes, 20002 stays as it was.
    cluster.set_endpoints(
        "shop",
        "checkout-v1",
        &[
            (addr(20002), false, true, true),
            (addr(20003), true, true, false),
        ],
    );
    assert_eq!(
        view(&slices_of(&client, "shop", "checkout-v1").await),
        [
            (
                "checkout-v1-20002".to_owned(),
                vec![("127.0.0.1".to_owned(), 20002, false, true, true)]
            ),
            (
                "checkout-v1-20003".to_owned(),
                vec![("127.0.0.1".to_owned(), 20003, true, true, false)]
            ),
        ]
    );
    let unchanged = cluster
        .api
        .get(ENDPOINT_SLICES, "shop", "checkout-v1-20002")
        .expect("the slice");
    assert_eq!(
        unchanged["metadata"]["resourceVersion"], kept_version,
        "an unchanged slice is not rewritten"
    );

    cluster.set_endpoints("shop", "checkout-v1", &[]);
    assert!(slices_of(&client, "shop", "checkout-v1").await.is_empty());
}

#[tokio::test]
async fn the_leader_is_the_replica_the_lease_names() {
    let cluster = Cluster::without_replicas().await;
    assert_eq!(cluster.leader(), None, "no Lease yet");
    let client = client(&cluster).await;
    let leases: Api<Lease> = Api::namespaced(client, WEIR_NAMESPACE);
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": WEIR_NAMESPACE},
        "spec": {"holderIdentity": "weir-1", "leaseDurationSeconds": 15},
    }))
    .expect("a Lease");
    let mut created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("created");
    assert_eq!(cluster.wait_leader(LIMIT).await, 1);

    created.spec.as_mut().expect("spec").holder_identity = Some("weir-2".to_owned());
    leases
        .replace(LEASE, &PostParams::default(), &created)
        .await
        .expect("taken over");
    assert_eq!(cluster.wait_new_leader(1, LIMIT).await, 2);

    // A released Lease names nobody.
    let mut released = leases.get(LEASE).await.expect("the Lease");
    released.spec.as_mut().expect("spec").holder_identity = None;
    leases
        .replace(LEASE, &PostParams::default(), &released)
        .await
        .expect("released");
    assert_eq!(cluster.leader(), None);
}

#[tokio::test]
async fn canary_routes_are_applied_and_their_status_patched_as_kubectl_does() {
    let cluster = Cluster::without_replicas().await;
    let spec = json!({
        "pathPrefix": "/",
        "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
        "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": "http"}},
        "strategy": {"steps": [{"setWeight": 5}, {"pause": {}}, {"setWeight": 100}]},
    });
    let created = cluster.apply_canary_route("shop", "checkout", spec.clone());
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(cluster.status("shop", "checkout").is_null());

    let patched = cluster
        .patch_status("shop", "checkout", json!({"status": {"abort": true}}))
        .await;
    assert_eq!(patched["status"]["abort"], true);
    assert_eq!(
        patched["metadata"]["generation"], 1,
        "a status write is no spec change"
    );

    // A new spec keeps the status and bumps the generation.
    let mut changed = spec;
    changed["canary"]["revision"] = json!("v3");
    let applied = cluster.apply_canary_route("shop", "checkout", changed);
    assert_eq!(applied["metadata"]["generation"], 2);
    assert_eq!(cluster.status("shop", "checkout"), json!({"abort": true}));

    // kube's client sees the same object.
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("weir.dev", "v1alpha1", "CanaryRoute"),
        "canaryroutes",
    );
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client(&cluster).await, "shop", &resource);
    let read = routes.get("checkout").await.expect("the CanaryRoute");
    assert_eq!(read.data["spec"]["canary"]["revision"], "v3");
    assert_eq!(read.data["status"]["abort"], true);
    let waited = cluster
        .wait_status("shop", "checkout", LIMIT, "abort: true", |s| {
            s["abort"] == true
        })
        .await;
    assert_eq!(waited["abort"], true);
}
