//! The status writes of [`GatewayStatusWriter`] against kube's mocked client.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use super::*;
use crate::cluster::gateway_routes::compile_gateways;

const GUARD: Duration = Duration::from_secs(10);
const ROUTE_STATUS: &str =
    "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web/status";
const GATEWAY_STATUS: &str =
    "/apis/gateway.networking.k8s.io/v1/namespaces/shop/gateways/public/status";
const CLASS_STATUS: &str = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/weir/status";

type ApiHandle = mock::Handle<Request<Body>, Response<Body>>;

/// Our class `weir` (or a foreign one), the Gateway `shop/public` of it,
/// the Service `web-v1` and the HTTPRoute `shop/web` with `rule`, whose
/// status already holds an entry of another controller.
fn objects(controller: &str, rule: Value) -> ClusterObjects {
    objects_with_rules(controller, json!([rule]))
}

/// As [`objects`], with the HTTPRoute's whole list of `rules`.
fn objects_with_rules(controller: &str, rules: Value) -> ClusterObjects {
    let mut objects = ClusterObjects::default();
    objects.gateway_classes.insert(
        ObjectKey::new("", "weir"),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "weir", "generation": 1, "resourceVersion": "10"},
                "spec": {"controllerName": controller},
            }))
            .expect("a GatewayClass"),
        ),
    );
    objects.gateways.insert(
        ObjectKey::new("shop", "public"),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "public", "namespace": "shop", "generation": 2, "resourceVersion": "11"},
                "spec": {"gatewayClassName": "weir",
                         "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]},
            }))
            .expect("a Gateway"),
        ),
    );
    objects.services.insert(
        ObjectKey::new("shop", "web-v1"),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web-v1", "namespace": "shop"},
                "spec": {"ports": [{"port": 80}]},
            }))
            .expect("a Service"),
        ),
    );
    objects.http_routes.insert(
        ObjectKey::new("shop", "web"),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop", "generation": 4, "resourceVersion": "12"},
                "spec": {"parentRefs": [{"name": "public"}], "rules": rules},
                "status": {"parents": [other_entry()]},
            }))
            .expect("an HTTPRoute"),
        ),
    );
    objects
}

fn other_entry() -> Value {
    json!({
        "parentRef": {"name": "mesh", "kind": "Service", "group": ""},
        "controllerName": "example.com/mesh",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                        "message": "", "observedGeneration": 3,
                        "lastTransitionTime": "2024-01-01T00:00:00.000Z"}],
    })
}

/// Runs `writer.write` for `objects` and answers every request 200 with
/// its own body; returns the requests as (method, path, body).
async fn run(
    writer: &Arc<GatewayStatusWriter>,
    api: &mut ApiHandle,
    leading: bool,
    objects: &ClusterObjects,
) -> Vec<(String, String, Value)> {
    let compiled = compile_gateways(objects, None::<&BTreeSet<String>>, &[8080]);
    let mut task = tokio::spawn({
        let (writer, objects) = (Arc::clone(writer), objects.clone());
        async move { writer.write(leading, &objects, &compiled).await }
    });
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            done = &mut task => {
                done.expect("the write ends");
                return seen;
            }
            next = tokio::time::timeout(GUARD, api.next_request()) => {
                let (request, respond) = next
                    .expect("a request or the end before the guard's deadline")
                    .expect("the service is in use");
                let (parts, body) = request.into_parts();
                let bytes = body.collect().await.expect("the body").to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let mut object = json!({"metadata": {"name": "x", "resourceVersion": "99"}, "spec": {}});
                object["status"] = body["status"].clone();
                let response = Response::new(Body::from(serde_json::to_vec(&object).expect("JSON")));
                respond.send_response(response);
                seen.push((parts.method.to_string(), parts.uri.path().to_owned(), body));
            }
        }
    }
}

fn pair() -> (Arc<GatewayStatusWriter>, ApiHandle) {
    let (service, api) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    (Arc::new(GatewayStatusWriter::new(client)), api)
}

fn route_write(seen: &[(String, String, Value)]) -> Value {
    let (method, _, body) = seen
        .iter()
        .find(|(_, path, _)| path == ROUTE_STATUS)
        .expect("a write of the HTTPRoute's status");
    assert_eq!(method, "PATCH");
    body.clone()
}

/// Our entry of a route status write, as (type, status, reason) per condition.
fn ours(body: &Value) -> Vec<(String, String, String)> {
    let parents = body["status"]["parents"].as_array().expect("parents");
    assert_eq!(parents.len(), 2, "{body:#}");
    assert_eq!(
        parents[0],
        other_entry(),
        "the other controller's entry is kept"
    );
    let entry = &parents[1];
    assert_eq!(entry["controllerName"], CONTROLLER_NAME);
    assert_eq!(entry["parentRef"], json!({"name": "public"}));
    entry["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            assert_eq!(c["observedGeneration"], 4);
            assert!(
                c["lastTransitionTime"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z'))
            );
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn condition(type_: &str, status: &str, reason: &str) -> (String, String, String) {
    (type_.to_owned(), status.to_owned(), reason.to_owned())
}

#[tokio::test]
async fn an_accepted_route_class_and_gateway_are_written_once_with_the_version_read() {
    let (writer, mut api) = pair();
    let objects = objects(
        CONTROLLER_NAME,
        json!({"backendRefs": [{"name": "web-v1", "port": 80}]}),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    let paths: Vec<&str> = seen.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(paths, [CLASS_STATUS, GATEWAY_STATUS, ROUTE_STATUS]);
    assert_eq!(seen[0].2["metadata"], json!({"resourceVersion": "10"}));
    assert_eq!(seen[0].2["status"]["conditions"][0]["type"], "Accepted");
    assert_eq!(seen[0].2["status"]["conditions"][0]["status"], "True");
    let gateway = &seen[1].2["status"];
    let types: Vec<(&str, &str)> = gateway["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or(""),
                c["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(types, [("Accepted", "True"), ("Programmed", "True")]);
    assert_eq!(gateway["listeners"][0]["attachedRoutes"], 1);
    assert_eq!(
        listener_write(&seen),
        (
            json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]),
            json!(1),
            ("True".to_owned(), "ResolvedRefs".to_owned())
        )
    );
    let body = route_write(&seen);
    assert_eq!(body["metadata"], json!({"resourceVersion": "12"}));
    assert_eq!(
        ours(&body),
        [
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );

    // Nothing changed: nothing is written again.
    let again = run(&writer, &mut api, true, &objects).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(writer.lock_written().len(), 3);

    // The route is deleted: what was written of it is forgotten.
    let mut without_route = objects.clone();
    without_route.http_routes.clear();
    run(&writer, &mut api, true, &without_route).await;
    let kinds: Vec<&str> = writer
        .lock_written()
        .keys()
        .map(|(kind, _)| *kind)
        .collect();
    assert_eq!(kinds, ["Gateway", "GatewayClass"]);
}

#[tokio::test]
async fn a_missing_backend_is_written_as_backend_not_found() {
    let (writer, mut api) = pair();
    let objects = objects(
        CONTROLLER_NAME,
        json!({"backendRefs": [{"name": "web-v1", "port": 80, "weight": 90},
                               {"name": "web-v9", "port": 80, "weight": 10}]}),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    let body = route_write(&seen);
    assert_eq!(
        ours(&body),
        [
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "False", "BackendNotFound"),
        ]
    );
    let message = body["status"]["parents"][1]["conditions"][1]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("`shop/web-v9` does not exist"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unsupported_filter_is_written_as_not_accepted() {
    let (writer, mut api) = pair();
    let objects = objects(
        CONTROLLER_NAME,
        json!({"filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}],
               "backendRefs": [{"name": "web-v1", "port": 80}]}),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    let body = route_write(&seen);
    assert_eq!(
        ours(&body),
        [
            condition("Accepted", "False", "UnsupportedValue"),
            condition("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );
    let message = body["status"]["parents"][1]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("spec.rules[0].filters[0].type: filter `URLRewrite` is not supported"),
        "{message}"
    );
}

#[tokio::test]
async fn a_partly_unsupported_route_is_written_accepted_and_partially_invalid() {
    let (writer, mut api) = pair();
    let objects = objects_with_rules(
        CONTROLLER_NAME,
        json!([
            {"backendRefs": [{"name": "web-v1", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}],
             "backendRefs": [{"name": "web-v1", "port": 80}]},
        ]),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    let body = route_write(&seen);
    // `ours` checks `observedGeneration` (4) and the times of each condition.
    assert_eq!(
        ours(&body),
        [
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "True", "ResolvedRefs"),
            condition("PartiallyInvalid", "True", "UnsupportedValue"),
        ]
    );
    let message = body["status"]["parents"][1]["conditions"][2]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with(
            "Dropped Rule spec.rules[1]: spec.rules[1].filters[0].type: filter `URLRewrite` is not supported"
        ),
        "{message}"
    );
    let gateway = seen
        .iter()
        .find(|(_, path, _)| path == GATEWAY_STATUS)
        .expect("a write of the Gateway's status");
    assert_eq!(gateway.2["status"]["listeners"][0]["attachedRoutes"], 1);
}

/// The verdict of our one parent `public`, at `generation`.
fn parent(generation: i64, partially_invalid: Option<Verdict>) -> ParentVerdict {
    ParentVerdict {
        parent_ref: serde_json::from_value(json!({"name": "public"})).expect("a parentRef"),
        generation: Some(generation),
        accepted: Verdict::yes("Accepted", "the route is served"),
        resolved_refs: Verdict::yes("ResolvedRefs", "every backend resolves"),
        partially_invalid,
    }
}

#[test]
fn partially_invalid_is_removed_once_every_rule_is_served_again() {
    let dropped = Verdict::yes(
        "UnsupportedValue",
        "Dropped Rule spec.rules[1]: spec.rules[1].retry: not supported by weir; the other rules are served",
    );
    let first =
        route_status(None, &[parent(4, Some(dropped.clone()))], 1_000).expect("a first status");
    let types: Vec<(&str, &str, Option<i64>)> = first.parents[0]
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.observed_generation))
        .collect();
    assert_eq!(
        types,
        [
            ("Accepted", "True", Some(4)),
            ("ResolvedRefs", "True", Some(4)),
            ("PartiallyInvalid", "True", Some(4)),
        ]
    );
    assert_eq!(
        route_status(Some(&first), &[parent(4, Some(dropped))], 9_000),
        None,
        "unchanged"
    );

    // Generation 5 fixes the rule: the condition goes, `Accepted` stays
    // `True` since 1 000 ms, at the new generation.
    let fixed = route_status(Some(&first), &[parent(5, None)], 9_000).expect("a change");
    let conditions = &fixed.parents[0].conditions;
    let types: Vec<(&str, Option<i64>)> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.observed_generation))
        .collect();
    assert_eq!(types, [("Accepted", Some(5)), ("ResolvedRefs", Some(5))]);
    assert_eq!(conditions[0].last_transition_time, format_time(1_000));
}

#[test]
fn partially_invalid_is_removed_when_the_route_is_no_longer_accepted() {
    let dropped = Verdict::yes(
        "UnsupportedValue",
        "Dropped Rule spec.rules[1]: spec.rules[1].retry: not supported by weir; the other rules are served",
    );
    let first = route_status(None, &[parent(4, Some(dropped))], 1_000).expect("a first status");
    let mut refused = parent(5, None);
    refused.accepted = Verdict::no(
        "UnsupportedValue",
        "the route is not served: spec.rules[0].retry: not supported by weir",
    );
    let next = route_status(Some(&first), &[refused], 9_000).expect("a change");
    let types: Vec<(&str, &str, &str)> = next.parents[0]
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("Accepted", "False", "UnsupportedValue"),
            ("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );
    assert_eq!(
        next.parents[0].conditions[0].last_transition_time,
        format_time(9_000)
    );
}

/// `objects` with the listener of `shop/public` admitting routes of `kinds`.
fn with_listener_kinds(mut objects: ClusterObjects, kinds: Value) -> ClusterObjects {
    let key = ObjectKey::new("shop", "public");
    let mut gateway = Gateway::clone(&objects.gateways[&key]);
    gateway.spec.listeners[0].allowed_routes =
        Some(serde_json::from_value(json!({"kinds": kinds})).expect("allowedRoutes"));
    objects.gateways.insert(key, Arc::new(gateway));
    objects
}

/// The listener of a Gateway status write: its `supportedKinds`, its
/// `attachedRoutes` and its `ResolvedRefs` as (status, reason).
fn listener_write(seen: &[(String, String, Value)]) -> (Value, Value, (String, String)) {
    let (_, _, body) = seen
        .iter()
        .find(|(_, path, _)| path == GATEWAY_STATUS)
        .expect("a write of the Gateway's status");
    let listener = &body["status"]["listeners"][0];
    let resolved = listener["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .expect("ResolvedRefs");
    (
        listener["supportedKinds"].clone(),
        listener["attachedRoutes"].clone(),
        (
            resolved["status"].as_str().unwrap_or_default().to_owned(),
            resolved["reason"].as_str().unwrap_or_default().to_owned(),
        ),
    )
}

#[tokio::test]
async fn a_listener_with_only_unsupported_route_kinds_is_written_invalid_route_kinds() {
    let (writer, mut api) = pair();
    let objects = with_listener_kinds(
        objects(
            CONTROLLER_NAME,
            json!({"backendRefs": [{"name": "web-v1", "port": 80}]}),
        ),
        json!([{"kind": "InvalidRoute"}]),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    let (kinds, attached, resolved) = listener_write(&seen);
    assert_eq!(kinds, json!([]));
    assert_eq!(attached, 0);
    assert_eq!(
        resolved,
        ("False".to_owned(), "InvalidRouteKinds".to_owned())
    );
    assert_eq!(
        ours(&route_write(&seen)),
        [
            condition("Accepted", "False", "NotAllowedByListeners"),
            condition("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );
}

#[tokio::test]
async fn a_listener_with_httproute_and_an_unsupported_kind_takes_the_route() {
    let (writer, mut api) = pair();
    let objects = with_listener_kinds(
        objects(
            CONTROLLER_NAME,
            json!({"backendRefs": [{"name": "web-v1", "port": 80}]}),
        ),
        json!([{"kind": "InvalidRoute"}, {"kind": "HTTPRoute"}]),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    let (kinds, attached, resolved) = listener_write(&seen);
    assert_eq!(
        kinds,
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}])
    );
    assert_eq!(attached, 1);
    assert_eq!(
        resolved,
        ("False".to_owned(), "InvalidRouteKinds".to_owned())
    );
    assert_eq!(
        ours(&route_write(&seen)),
        [
            condition("Accepted", "True", "Accepted"),
            condition("ResolvedRefs", "True", "ResolvedRefs"),
        ]
    );
}

#[tokio::test]
async fn a_foreign_gateway_class_is_left_alone() {
    let (writer, mut api) = pair();
    let objects = objects(
        "example.com/other-controller",
        json!({"backendRefs": [{"name": "web-v1", "port": 80}]}),
    );
    let seen = run(&writer, &mut api, true, &objects).await;
    assert!(seen.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn a_replica_that_does_not_lead_writes_nothing() {
    let (writer, mut api) = pair();
    let objects = objects(
        CONTROLLER_NAME,
        json!({"backendRefs": [{"name": "web-v1", "port": 80}]}),
    );
    let seen = run(&writer, &mut api, false, &objects).await;
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn an_unchanged_verdict_keeps_the_transition_time_and_changes_nothing() {
    let verdict = ObjectVerdict {
        generation: Some(1),
        accepted: Verdict::yes("Accepted", "weir serves the Gateways of this class"),
    };
    let first = class_status(None, &verdict, 1_000).expect("a first status");
    assert_eq!(class_status(Some(&first), &verdict, 9_000), None);
    let refused = ObjectVerdict {
        generation: Some(2),
        accepted: Verdict::no("Invalid", "no"),
    };
    let second = class_status(Some(&first), &refused, 9_000).expect("a change");
    assert_eq!(
        second.conditions[0].last_transition_time,
        format_time(9_000)
    );
    assert_eq!(second.conditions[0].observed_generation, Some(2));
}
