use std::time::Duration;

use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::KubeApi;
use crate::client::{Body, Conn, empty};

const SERVICES: &str = "api/v1/services";
const ROUTES: &str = "apis/weir.dev/v1alpha1/canaryroutes";
const LEASES: &str = "apis/coordination.k8s.io/v1/leases";
const LIMIT: Duration = Duration::from_secs(5);

fn json_body(value: &Value) -> Body {
    Full::new(bytes::Bytes::from(value.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// One request on a fresh connection: the status and the body as JSON.
async fn call(
    api: &KubeApi,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut conn = Conn::open(api.addr)
        .await
        .expect("connecting to the test API server");
    let mut builder = http::Request::builder().method(method).uri(path);
    if !content_type.is_empty() {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    let request = builder
        .body(body.as_ref().map_or_else(empty, json_body))
        .expect("a valid request");
    let response = conn.send(request).await.expect("an answer");
    (response.status.as_u16(), response.json())
}

fn route(name: &str, weight: u64) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRoute",
        "metadata": {"name": name, "namespace": "shop", "labels": {"team": "web"}},
        "spec": {"pathPrefix": "/", "canary": {"weight": weight}},
    })
}

/// A watch stream: events are read one line at a time.
struct Watch {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Watch {
    async fn open(api: &KubeApi, path_and_query: &str) -> Watch {
        let stream = TcpStream::connect(api.addr).await.expect("connecting");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let request = http::Request::get(path_and_query)
            .header("host", api.addr.to_string())
            .body(empty())
            .expect("a valid request");
        let response = sender.send_request(request).await.expect("a watch answer");
        assert_eq!(response.status(), 200);
        Watch {
            body: response.into_body(),
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("a watch event is JSON"));
            }
            let frame = tokio::time::timeout(LIMIT, self.body.frame())
                .await
                .expect("a watch event within the limit")?
                .expect("a readable watch stream");
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}

#[tokio::test]
async fn create_get_list_and_conflict_on_create() {
    let api = KubeApi::start().await;
    let path = format!("/{ROUTES}");
    let (status, created) = call(
        &api,
        "POST",
        "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes",
        "application/json",
        Some(route("checkout", 0)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["metadata"]["resourceVersion"], "1");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["namespace"], "shop");

    let (status, again) = call(
        &api,
        "POST",
        "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes",
        "application/json",
        Some(route("checkout", 0)),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(again["reason"], "AlreadyExists");

    let (status, got) = call(
        &api,
        "GET",
        "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout",
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["spec"], route("checkout", 0)["spec"]);

    api.put(SERVICES, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}}));
    let (status, list) = call(&api, "GET", &path, "", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "CanaryRouteList");
    assert_eq!(
        list["metadata"]["resourceVersion"], "2",
        "the list carries the store's version"
    );
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "only routes: {list}"
    );

    let (status, missing) = call(
        &api,
        "GET",
        "/apis/weir.dev/v1alpha1/namespaces/other/canaryroutes/checkout",
        "",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(missing["kind"], "Status");
}

#[tokio::test]
async fn status_subresource_writes_only_status_and_spec_writes_bump_generation() {
    let api = KubeApi::start().await;
    let object = "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout";
    api.put(ROUTES, route("checkout", 0));

    let (status, patched) = call(&api, "PATCH", &format!("{object}/status"), "application/merge-patch+json",
        Some(json!({"spec": {"pathPrefix": "/ignored"}, "status": {"phase": "Progressing", "canaryWeight": 5}}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"]["phase"], "Progressing");
    assert_eq!(
        patched["spec"]["pathPrefix"], "/",
        "a status write leaves the spec"
    );
    assert_eq!(
        patched["metadata"]["generation"], 1,
        "a status write keeps the generation"
    );

    let (status, patched) = call(
        &api,
        "PATCH",
        object,
        "application/merge-patch+json",
        Some(json!({"spec": {"canary": {"weight": 10}}, "status": {"phase": "Aborted"}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["spec"]["canary"]["weight"], 10);
    assert_eq!(
        patched["status"]["phase"], "Progressing",
        "a spec write leaves the status"
    );
    assert_eq!(patched["metadata"]["generation"], 2);
}

#[tokio::test]
async fn stale_resource_versions_get_409_and_current_ones_succeed() {
    let api = KubeApi::start().await;
    let object = "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout";
    let stored = api.put(ROUTES, route("checkout", 0));
    let read = stored["metadata"]["resourceVersion"]
        .as_str()
        .expect("a version")
        .to_owned();
    api.put(ROUTES, route("checkout", 1));

    let (status, conflict) = call(
        &api,
        "PATCH",
        &format!("{object}/status"),
        "application/merge-patch+json",
        Some(json!({"metadata": {"resourceVersion": read}, "status": {"phase": "Paused"}})),
    )
    .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["reason"], "Conflict");
    let current = api.get(ROUTES, "shop", "checkout").expect("stored");
    assert!(
        current["status"].is_null(),
        "a refused write changes nothing: {current}"
    );

    let now = current["metadata"]["resourceVersion"].clone();
    let (status, ok) = call(
        &api,
        "PATCH",
        &format!("{object}/status"),
        "application/merge-patch+json",
        Some(json!({"metadata": {"resourceVersion": now}, "status": {"phase": "Paused"}})),
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["status"]["phase"], "Paused");

    // Leases: replace with the version read, as an election does.
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "weir-leader", "namespace": "weir"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    let (status, created) = call(
        &api,
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/weir/leases",
        "application/json",
        Some(lease.clone()),
    )
    .await;
    assert_eq!(status, 201);
    let mut take = created.clone();
    take["spec"]["holderIdentity"] = json!("b");
    let (status, _) = call(
        &api,
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/weir/leases/weir-leader",
        "application/json",
        Some(take.clone()),
    )
    .await;
    assert_eq!(status, 200, "the first replace with the read version wins");
    take["spec"]["holderIdentity"] = json!("c");
    let (status, _) = call(
        &api,
        "PUT",
        "/apis/coordination.k8s.io/v1/namespaces/weir/leases/weir-leader",
        "application/json",
        Some(take),
    )
    .await;
    assert_eq!(
        status, 409,
        "the second replace with the same version loses"
    );
    assert_eq!(
        api.get(LEASES, "weir", "weir-leader").expect("lease")["spec"]["holderIdentity"],
        "b"
    );
}

#[tokio::test]
async fn json_patch_applies_operations_and_fails_a_test_operation() {
    let api = KubeApi::start().await;
    let object = "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout";
    api.put(ROUTES, route("checkout", 0));
    let (status, patched) = call(
        &api,
        "PATCH",
        object,
        "application/json-patch+json",
        Some(json!([
            {"op": "test", "path": "/spec/canary/weight", "value": 0},
            {"op": "replace", "path": "/spec/canary/weight", "value": 20},
            {"op": "add", "path": "/spec/hosts", "value": ["shop.example"]},
            {"op": "add", "path": "/spec/hosts/-", "value": "*.shop.example"},
            {"op": "remove", "path": "/spec/pathPrefix"},
        ])),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        patched["spec"],
        json!({"canary": {"weight": 20}, "hosts": ["shop.example", "*.shop.example"]})
    );

    let (status, failed) = call(
        &api,
        "PATCH",
        object,
        "application/json-patch+json",
        Some(json!([
            {"op": "test", "path": "/spec/canary/weight", "value": 0},
            {"op": "replace", "path": "/spec/canary/weight", "value": 30},
        ])),
    )
    .await;
    assert_eq!(status, 422, "{failed}");
    assert_eq!(
        api.get(ROUTES, "shop", "checkout").expect("stored")["spec"]["canary"]["weight"],
        20
    );

    let (status, _) = call(&api, "PATCH", object, "text/plain", Some(json!({}))).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let api = KubeApi::start().await;
    api.put(ROUTES, route("checkout", 0));
    let mut other = route("search", 0);
    other["metadata"]["labels"] = json!({"team": "search"});
    api.put(ROUTES, other);
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (_, list) = call(
        &api,
        "GET",
        "/apis/weir.dev/v1alpha1/canaryroutes?labelSelector=team%3Dweb",
        "",
        None,
    )
    .await;
    assert_eq!(names(&list), ["checkout"]);
    let (_, list) = call(
        &api,
        "GET",
        "/apis/weir.dev/v1alpha1/canaryroutes?labelSelector=team!%3Dweb",
        "",
        None,
    )
    .await;
    assert_eq!(names(&list), ["search"]);
    let (_, list) = call(
        &api,
        "GET",
        "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes?fieldSelector=metadata.name%3Dsearch",
        "",
        None,
    )
    .await;
    assert_eq!(names(&list), ["search"]);
    let (_, list) = call(
        &api,
        "GET",
        "/apis/weir.dev/v1alpha1/namespaces/elsewhere/canaryroutes",
        "",
        None,
    )
    .await;
    assert!(names(&list).is_empty());
}

#[tokio::test]
async fn a_watch_from_a_list_version_sees_each_later_change_once() {
    let api = KubeApi::start().await;
    api.put(ROUTES, route("checkout", 0));
    let (_, list) = call(&api, "GET", &format!("/{ROUTES}"), "", None).await;
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a version")
        .to_owned();
    api.put(SERVICES, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}}));

    let mut watch = Watch::open(
        &api,
        &format!("/{ROUTES}?watch=true&resourceVersion={version}&timeoutSeconds=30"),
    )
    .await;
    api.put(ROUTES, route("checkout", 5));
    let event = watch.next().await.expect("an event");
    assert_eq!(event["type"], "MODIFIED");
    assert_eq!(event["object"]["spec"]["canary"]["weight"], 5);

    api.put(ROUTES, route("search", 0));
    let event = watch.next().await.expect("an event");
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("search"))
    );

    assert!(api.delete(ROUTES, "shop", "checkout"));
    let event = watch.next().await.expect("an event");
    assert_eq!(event["type"], "DELETED");
    assert_eq!(event["object"]["metadata"]["name"], "checkout");
}

#[tokio::test]
async fn a_watch_without_version_starts_with_every_object_and_a_compacted_one_gets_410() {
    let api = KubeApi::start().await;
    api.put(ROUTES, route("checkout", 0));
    api.put(ROUTES, route("search", 0));
    let mut watch = Watch::open(&api, &format!("/{ROUTES}?watch=1&timeoutSeconds=30")).await;
    let mut names = vec![];
    for _ in 0..2 {
        let event = watch.next().await.expect("an event");
        assert_eq!(event["type"], "ADDED");
        names.push(
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    assert_eq!(names, ["checkout", "search"]);

    api.compact();
    let mut old = Watch::open(&api, &format!("/{ROUTES}?watch=true&resourceVersion=1")).await;
    let event = old.next().await.expect("an error event");
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert!(
        old.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn a_server_that_is_down_answers_503_and_ends_its_watches() {
    let api = KubeApi::start().await;
    let mut watch = Watch::open(
        &api,
        &format!("/{ROUTES}?watch=true&resourceVersion=0&timeoutSeconds=30"),
    )
    .await;
    api.set_down(true);
    assert!(
        watch.next().await.is_none(),
        "the watch ends when the server goes down"
    );
    let (status, body) = call(&api, "GET", &format!("/{ROUTES}"), "", None).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], 503);
    api.set_down(false);
    let (status, _) = call(&api, "GET", &format!("/{ROUTES}"), "", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn requests_are_recorded_with_method_path_query_type_and_status() {
    let api = KubeApi::start().await;
    api.put(ROUTES, route("checkout", 0));
    call(
        &api,
        "PATCH",
        "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout/status",
        "application/merge-patch+json",
        Some(json!({"status": {"phase": "Paused"}})),
    )
    .await;
    call(&api, "GET", "/version", "", None).await;
    let log = api.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, http::Method::PATCH);
    assert_eq!(
        log[0].path,
        "/apis/weir.dev/v1alpha1/namespaces/shop/canaryroutes/checkout/status"
    );
    assert_eq!(log[0].content_type, "application/merge-patch+json");
    assert_eq!(log[0].body, json!({"status": {"phase": "Paused"}}));
    assert_eq!(log[0].status, 200);
    assert_eq!((log[1].path.as_str(), log[1].status), ("/version", 200));
}

#[tokio::test]
async fn the_kubeconfig_names_the_server() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = api.write_kubeconfig(dir.path());
    let text = std::fs::read_to_string(path).expect("the kubeconfig");
    assert!(text.contains(&format!("server: {}", api.url())), "{text}");
    assert!(text.contains("current-context: test"));
}
