//! The test Kubernetes API server answers the real kube client as the real
//! API server would: typed and dynamic lists, status patches with
//! `resourceVersion` preconditions, Lease replacement, and kube-runtime's
//! watcher through its initial list and later changes.

use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;
use weir_e2e::{KubeApi, within};

const ROUTES: &str = "apis/weir.dev/v1alpha1/canaryroutes";
const LIMIT: Duration = Duration::from_secs(10);

async fn client_for(api: &KubeApi, dir: &std::path::Path) -> kube::Client {
    let path = api.write_kubeconfig(dir);
    let kubeconfig = Kubeconfig::read_from(path).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

fn canary_routes(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("weir.dev", "v1alpha1", "CanaryRoute"),
        "canaryroutes",
    );
    Api::namespaced_with(client, namespace, &resource)
}

fn route(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRoute",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"pathPrefix": "/"},
    })
}

#[tokio::test]
async fn typed_and_dynamic_lists_and_status_patches_with_preconditions() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client_for(&api, dir.path()).await;
    api.put(
        "api/v1/services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "checkout-v1", "namespace": "shop"},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
    );
    api.put(ROUTES, route("checkout"));

    let services: Api<Service> = Api::namespaced(client.clone(), "shop");
    let list = services
        .list(&Default::default())
        .await
        .expect("a service list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("checkout-v1"));

    let routes = canary_routes(client, "shop");
    let read = routes.get("checkout").await.expect("the route");
    let version = read.metadata.resource_version.clone().expect("a version");
    let patch = json!({"metadata": {"resourceVersion": version}, "status": {"phase": "Progressing", "stepIndex": 1}});
    let written = routes
        .patch_status("checkout", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("a status patch with the version read");
    assert_eq!(written.data["status"]["stepIndex"], 1);

    // The same version again: somebody wrote in between, so 409.
    let stale = json!({"metadata": {"resourceVersion": version}, "status": {"phase": "Aborted"}});
    match routes
        .patch_status("checkout", &PatchParams::default(), &Patch::Merge(&stale))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("a stale status patch must be refused with 409, got {other:?}"),
    }
    let stored = api.get(ROUTES, "shop", "checkout").expect("stored");
    assert_eq!(stored["status"]["phase"], "Progressing");
}

#[tokio::test]
async fn a_lease_taken_with_a_stale_version_is_refused() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client_for(&api, dir.path()).await;
    let leases: Api<Lease> = Api::namespaced(client, "weir");
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "weir-leader", "namespace": "weir"},
        "spec": {"holderIdentity": "weir-0", "leaseDurationSeconds": 15},
    }))
    .expect("a lease");
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("created");
    let mut first = created.clone();
    first.spec.as_mut().expect("spec").holder_identity = Some("weir-1".to_owned());
    leases
        .replace("weir-leader", &PostParams::default(), &first)
        .await
        .expect("the first replace wins");
    let mut second = created;
    second.spec.as_mut().expect("spec").holder_identity = Some("weir-2".to_owned());
    match leases
        .replace("weir-leader", &PostParams::default(), &second)
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("a replace from a stale read must be refused, got {other:?}"),
    }
    let now = leases.get("weir-leader").await.expect("the lease");
    assert_eq!(
        now.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("weir-1")
    );
}

#[tokio::test]
async fn the_runtime_watcher_lists_then_follows_changes() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let client = client_for(&api, dir.path()).await;
    api.put(ROUTES, route("checkout"));
    let routes = canary_routes(client, "shop");
    let mut events = watcher(routes, watcher::Config::default()).boxed();

    let mut listed = Vec::new();
    loop {
        let event = within(LIMIT, "the initial list", events.next())
            .await
            .expect("the watcher goes on")
            .expect("no watcher error");
        match event {
            watcher::Event::InitApply(object) => {
                listed.push(object.metadata.name.unwrap_or_default())
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(listed, ["checkout"]);

    let mut changed = route("checkout");
    changed["spec"]["pathPrefix"] = json!("/shop");
    api.put(ROUTES, changed);
    let event = within(LIMIT, "the change", events.next())
        .await
        .expect("the watcher goes on")
        .expect("no watcher error");
    match event {
        watcher::Event::Apply(object) => assert_eq!(object.data["spec"]["pathPrefix"], "/shop"),
        other => panic!("expected the changed route, got {other:?}"),
    }

    assert!(api.delete(ROUTES, "shop", "checkout"));
    let event = within(LIMIT, "the deletion", events.next())
        .await
        .expect("the watcher goes on")
        .expect("no watcher error");
    assert!(matches!(event, watcher::Event::Delete(_)), "{event:?}");
}
