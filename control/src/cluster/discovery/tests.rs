//! The compile function over objects built by hand: the endpoint
//! conditions, Services and ports that are missing, named ports,
//! dual-stack and duplicate endpoints, namespaces, invalid specs and
//! conflicts.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::cluster::resource::{CanaryRouteStatus, LastValidSpec};

/// The key of `namespace/name`.
fn key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// Conditions of an endpoint: `ready`, `serving`, `terminating` (`None`
/// leaves the field out).
type Conditions = (Option<bool>, Option<bool>, Option<bool>);

const READY: Conditions = (Some(true), Some(true), Some(false));

fn canary_route_at(namespace: &str, name: &str, created: i64, spec: Value) -> Arc<CanaryRoute> {
    let created = k8s_openapi::jiff::Timestamp::from_second(created)
        .expect("test timestamps are in range")
        .to_string();
    let object = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRoute",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "generation": 3,
            "creationTimestamp": created,
        },
        "spec": spec,
    });
    Arc::new(serde_json::from_value(object).expect("test CanaryRoutes deserialize"))
}

fn canary_route(namespace: &str, name: &str, spec: Value) -> Arc<CanaryRoute> {
    canary_route_at(namespace, name, 1_700_000_000, spec)
}

/// A spec whose stable role is Service `stable` and canary role Service
/// `canary`, both on port 80.
fn services_spec(path_prefix: &str) -> Value {
    json!({
        "pathPrefix": path_prefix,
        "stable": {"revision": "v1", "service": {"name": "stable", "port": 80}},
        "canary": {"revision": "v2", "service": {"name": "canary", "port": 80}},
    })
}

/// A Service with `(name, port, targetPort)` ports.
fn service(
    namespace: &str,
    name: &str,
    ports: &[(Option<&str>, i32, Option<Value>)],
) -> Arc<Service> {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(port_name, port, target)| {
            let mut p = json!({"port": port});
            if let Some(port_name) = port_name {
                p["name"] = json!(port_name);
            }
            if let Some(target) = target {
                p["targetPort"] = target.clone();
            }
            p
        })
        .collect();
    let object = json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"ports": ports},
    });
    Arc::new(serde_json::from_value(object).expect("test Services deserialize"))
}

/// A Service with one unnamed port 80 whose pods listen on 8080.
fn plain_service(namespace: &str, name: &str) -> Arc<Service> {
    service(namespace, name, &[(None, 80, Some(json!(8080)))])
}

/// An EndpointSlice of Service `service` with `(name, port)` ports and
/// `(address, conditions)` endpoints.
fn slice(
    namespace: &str,
    service: &str,
    address_type: &str,
    ports: &[(Option<&str>, i32)],
    endpoints: &[(&str, Conditions)],
) -> Arc<EndpointSlice> {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, port)| match name {
            Some(name) => json!({"name": name, "port": port, "protocol": "TCP"}),
            None => json!({"name": "", "port": port, "protocol": "TCP"}),
        })
        .collect();
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, (ready, serving, terminating))| {
            let mut conditions = json!({});
            for (field, value) in [
                ("ready", ready),
                ("serving", serving),
                ("terminating", terminating),
            ] {
                if let Some(value) = value {
                    conditions[field] = json!(value);
                }
            }
            json!({"addresses": [address], "conditions": conditions})
        })
        .collect();
    let object = json!({
        "metadata": {
            "namespace": namespace,
            "name": format!("{service}-{}", fastrand::u32(..)),
            "labels": {SERVICE_NAME_LABEL: service},
        },
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    });
    Arc::new(serde_json::from_value(object).expect("test EndpointSlices deserialize"))
}

/// The slices of a Service with one unnamed port 8080.
fn plain_slice(
    namespace: &str,
    service: &str,
    endpoints: &[(&str, Conditions)],
) -> Arc<EndpointSlice> {
    slice(namespace, service, "IPv4", &[(None, 8080)], endpoints)
}

/// A builder of [`ClusterObjects`].
#[derive(Default)]
struct Objects(ClusterObjects);

impl Objects {
    fn route(mut self, route: Arc<CanaryRoute>) -> Objects {
        self.0
            .canary_routes
            .insert(ObjectKey::of(&route.metadata), route);
        self
    }

    fn service(mut self, service: Arc<Service>) -> Objects {
        self.0
            .services
            .insert(ObjectKey::of(&service.metadata), service);
        self
    }

    fn slice(mut self, slice: Arc<EndpointSlice>) -> Objects {
        self.0
            .endpoint_slices
            .insert(ObjectKey::of(&slice.metadata), slice);
        self
    }

    /// Services `stable` and `canary` of `namespace`, with one ready pod each.
    fn both_services(self, namespace: &str) -> Objects {
        self.service(plain_service(namespace, "stable"))
            .service(plain_service(namespace, "canary"))
            .slice(plain_slice(namespace, "stable", &[("10.0.1.1", READY)]))
            .slice(plain_slice(namespace, "canary", &[("10.0.2.1", READY)]))
    }

    fn compile(&self) -> CompiledCluster {
        compile_cluster_routes(&self.0, None, &[], &LastValid::new())
    }
}

fn endpoints(upstream: &Upstream) -> Vec<String> {
    upstream.endpoints.iter().map(ToString::to_string).collect()
}

/// The stable and canary endpoints of the only route.
fn only_route_endpoints(compiled: &CompiledCluster) -> (Vec<String>, Vec<String>) {
    let [route] = compiled.routes.as_slice() else {
        panic!("expected one route, got {compiled:#?}");
    };
    let canary = route
        .route
        .canary
        .as_ref()
        .map(endpoints)
        .unwrap_or_default();
    (endpoints(&route.route.stable), canary)
}

/// `(route, field or role, reason)` of every problem.
fn problem_summary(compiled: &CompiledCluster) -> Vec<(String, String, &'static str)> {
    compiled
        .problems
        .iter()
        .flat_map(|(route, problems)| {
            problems
                .iter()
                .map(move |p| (route.clone(), p.field_or_role.clone(), p.reason))
        })
        .collect()
}

fn route_names(compiled: &CompiledCluster) -> Vec<&str> {
    compiled.routes.iter().map(|r| &*r.route.name).collect()
}

#[test]
fn a_route_gets_its_services_ready_endpoints_with_the_target_port() {
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .both_services("shop")
        .compile();
    assert_eq!(
        only_route_endpoints(&compiled),
        (
            vec!["10.0.1.1:8080".to_owned()],
            vec!["10.0.2.1:8080".to_owned()]
        )
    );
    assert_eq!(compiled.routes[0].route.name.as_ref(), "shop/checkout");
    assert_eq!(compiled.routes[0].generation, Some(3));
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
}

/// Which endpoints a role uses, by their conditions: ready and not
/// terminating; else serving and terminating; never the others. An absent
/// `ready` counts as ready, an absent `serving` as `ready`, an absent
/// `terminating` as false.
#[test]
fn the_ready_serving_terminating_matrix() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Used {
        Always,
        WhenNoneReady,
        Never,
    }
    use Used::*;
    let t = Some(true);
    let f = Some(false);
    let cases: [(Conditions, Used); 14] = [
        ((t, t, f), Always),
        ((t, t, None), Always),
        ((None, None, None), Always),
        ((None, t, f), Always),
        ((t, None, f), Always),
        ((f, t, f), Never),
        ((f, f, f), Never),
        ((f, None, None), Never),
        ((f, t, t), WhenNoneReady),
        ((None, t, t), WhenNoneReady),
        ((f, f, t), Never),
        ((f, None, t), Never),
        // Not what the API server writes (a terminating endpoint is never
        // ready), but not ready-and-not-terminating either.
        ((t, t, t), WhenNoneReady),
        ((t, f, t), Never),
    ];
    let mut failures = Vec::new();
    for (conditions, used) in cases {
        // (beside a ready endpoint of another slice, want it used)
        for (beside_ready, want) in [(false, used != Never), (true, used == Always)] {
            let mut objects = Objects::default()
                .route(canary_route("shop", "checkout", services_spec("/")))
                .service(plain_service("shop", "stable"))
                .service(plain_service("shop", "canary"))
                .slice(plain_slice("shop", "stable", &[("10.0.1.7", conditions)]));
            if beside_ready {
                objects = objects.slice(plain_slice("shop", "stable", &[("10.0.1.1", READY)]));
            }
            let (stable, _) = only_route_endpoints(&objects.compile());
            let used = stable.iter().any(|e| e == "10.0.1.7:8080");
            if used != want {
                failures.push(format!(
                    "{conditions:?} beside a ready endpoint: {beside_ready}: used {used}, want {want} ({stable:?})"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn terminating_endpoints_serve_only_while_no_endpoint_is_ready() {
    let terminating = (Some(false), Some(true), Some(true));
    let gone = (Some(false), Some(false), Some(true));
    let objects = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .service(plain_service("shop", "canary"))
        .slice(plain_slice(
            "shop",
            "stable",
            &[("10.0.1.8", terminating), ("10.0.1.9", gone)],
        ));
    let (stable, canary) = only_route_endpoints(&objects.compile());
    assert_eq!(stable, ["10.0.1.8:8080"]);
    assert!(canary.is_empty());
    // A new pod becomes ready in another slice: the terminating one leaves.
    let (stable, _) = only_route_endpoints(
        &objects
            .slice(plain_slice("shop", "stable", &[("10.0.1.10", READY)]))
            .compile(),
    );
    assert_eq!(stable, ["10.0.1.10:8080"]);
}

#[test]
fn a_missing_service_leaves_its_role_empty_and_says_which() {
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .slice(plain_slice("shop", "stable", &[("10.0.1.1", READY)]))
        // The same name in another namespace is another Service.
        .service(plain_service("billing", "canary"))
        .compile();
    assert_eq!(
        only_route_endpoints(&compiled),
        (vec!["10.0.1.1:8080".to_owned()], vec![])
    );
    assert_eq!(
        problem_summary(&compiled),
        [(
            "shop/checkout".to_owned(),
            "canary".to_owned(),
            SERVICE_MISSING
        )]
    );
    let message = &compiled.problems["shop/checkout"][0].message;
    assert!(
        message.contains("the canary Service `shop/canary` does not exist"),
        "{message}"
    );
}

/// A Service that exists with its port but has no endpoint to serve (no
/// slice, or only endpoints neither ready nor serving) is said, unless the
/// role lists endpoints of its own.
#[test]
fn a_service_without_endpoints_says_so_unless_the_role_lists_some() {
    let not_serving = (Some(false), Some(false), Some(false));
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .slice(plain_slice("shop", "stable", &[("10.0.1.1", not_serving)]))
        .service(plain_service("shop", "canary"))
        .compile();
    assert_eq!(only_route_endpoints(&compiled), (vec![], vec![]));
    assert_eq!(
        problem_summary(&compiled),
        [
            (
                "shop/checkout".to_owned(),
                "stable".to_owned(),
                ENDPOINTS_MISSING
            ),
            (
                "shop/checkout".to_owned(),
                "canary".to_owned(),
                ENDPOINTS_MISSING
            ),
        ]
    );
    assert_eq!(
        compiled.problems["shop/checkout"][1].message,
        "the canary Service `shop/canary` has no endpoint that is ready (or serving while \
         terminating); the canary role answers 503 until it has"
    );

    let mut listed = services_spec("/");
    listed["canary"]["endpoints"] = json!(["10.0.9.9:80"]);
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", listed))
        .service(plain_service("shop", "stable"))
        .slice(plain_slice("shop", "stable", &[("10.0.1.1", READY)]))
        .service(plain_service("shop", "canary"))
        .compile();
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
}

#[test]
fn a_missing_port_leaves_its_role_empty_and_says_which() {
    let spec = json!({
        "stable": {"revision": "v1", "service": {"name": "stable", "port": 8443}},
        "canary": {"revision": "v2", "service": {"name": "canary", "port": "grpc"}},
    });
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", spec))
        .service(service("shop", "stable", &[(Some("http"), 80, None)]))
        .service(service(
            "shop",
            "canary",
            &[(Some("http"), 80, None), (None, 9090, None)],
        ))
        .slice(slice(
            "shop",
            "stable",
            "IPv4",
            &[(Some("http"), 80)],
            &[("10.0.1.1", READY)],
        ))
        .slice(slice(
            "shop",
            "canary",
            "IPv4",
            &[(Some("http"), 80)],
            &[("10.0.2.1", READY)],
        ))
        .compile();
    assert_eq!(only_route_endpoints(&compiled), (vec![], vec![]));
    assert_eq!(
        problem_summary(&compiled),
        [
            (
                "shop/checkout".to_owned(),
                "stable".to_owned(),
                PORT_MISSING
            ),
            (
                "shop/checkout".to_owned(),
                "canary".to_owned(),
                PORT_MISSING
            ),
        ]
    );
    let messages: Vec<&str> = compiled.problems["shop/checkout"]
        .iter()
        .map(|p| p.message.as_str())
        .collect();
    assert!(
        messages[0].contains("Service `shop/stable` has no port `8443` (its ports: `http` 80)"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("has no port `grpc` (its ports: `http` 80, 9090)"),
        "{}",
        messages[1]
    );
}

#[test]
fn named_ports_and_target_ports_resolve_to_the_slice_port() {
    let spec = json!({
        "stable": {"revision": "v1", "service": {"name": "stable", "port": "http"}},
        "canary": {"revision": "v2", "service": {"name": "canary", "port": 80}},
    });
    // Stable: the Service port `http` (80) targets the pods' port `web`;
    // the EndpointSlice controller names the slice port `http` and gives
    // it the number `web` resolves to on each pod.
    let stable = service(
        "shop",
        "stable",
        &[
            (Some("metrics"), 9100, None),
            (Some("http"), 80, Some(json!("web"))),
        ],
    );
    let stable_slice = slice(
        "shop",
        "stable",
        "IPv4",
        &[(Some("metrics"), 9100), (Some("http"), 8080)],
        &[("10.0.1.1", READY)],
    );
    // Canary: a slice written by hand names its port after the targetPort.
    let canary = service("shop", "canary", &[(Some("http"), 80, Some(json!("web")))]);
    let canary_slice = slice(
        "shop",
        "canary",
        "IPv4",
        &[(Some("web"), 8081)],
        &[("10.0.2.1", READY)],
    );
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", spec))
        .service(stable)
        .service(canary)
        .slice(stable_slice)
        .slice(canary_slice)
        .compile();
    assert_eq!(
        only_route_endpoints(&compiled),
        (
            vec!["10.0.1.1:8080".to_owned()],
            vec!["10.0.2.1:8081".to_owned()]
        )
    );
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
}

#[test]
fn a_numeric_or_absent_target_port_applies_to_a_slice_without_ports() {
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(service("shop", "stable", &[(None, 80, Some(json!(8080)))]))
        .service(service("shop", "canary", &[(None, 80, None)]))
        .slice(slice("shop", "stable", "IPv4", &[], &[("10.0.1.1", READY)]))
        .slice(slice("shop", "canary", "IPv4", &[], &[("10.0.2.1", READY)]))
        .compile();
    assert_eq!(
        only_route_endpoints(&compiled),
        (
            vec!["10.0.1.1:8080".to_owned()],
            vec!["10.0.2.1:80".to_owned()]
        )
    );
}

#[test]
fn a_slice_without_the_named_target_port_is_reported() {
    // The Service port is named `http`; the slice's only port is `metrics`.
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .slice(plain_slice("shop", "stable", &[("10.0.1.1", READY)]))
        .service(service(
            "shop",
            "canary",
            &[(Some("http"), 80, Some(json!("web")))],
        ))
        .slice(slice(
            "shop",
            "canary",
            "IPv4",
            &[(Some("metrics"), 9100)],
            &[("10.0.2.1", READY)],
        ))
        .compile();
    let (_, canary) = only_route_endpoints(&compiled);
    assert!(canary.is_empty());
    assert_eq!(
        problem_summary(&compiled),
        [(
            "shop/checkout".to_owned(),
            "canary".to_owned(),
            PORT_MISSING
        )]
    );
}

#[test]
fn dual_stack_slices_are_both_used() {
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .both_services("shop")
        .slice(slice(
            "shop",
            "stable",
            "IPv6",
            &[(None, 8080)],
            &[("fd00:0:0::0001", READY), ("fd00::2", READY)],
        ))
        .compile();
    let (stable, _) = only_route_endpoints(&compiled);
    assert_eq!(
        stable,
        ["10.0.1.1:8080", "[fd00::1]:8080", "[fd00::2]:8080"]
    );
}

/// An EndpointSlice of addressType FQDN lists names, which weir does not
/// resolve: its endpoints are left out and the CanaryRoute says so, naming
/// the slice. A ready name does not hide the terminating endpoints of
/// another slice either.
#[test]
fn fqdn_slices_are_left_out_and_reported() {
    let stable_fqdn = slice(
        "shop",
        "stable",
        "FQDN",
        &[(None, 8080)],
        &[("a.example.com", READY), ("b.example.com", READY)],
    );
    let canary_fqdn = slice(
        "shop",
        "canary",
        "FQDN",
        &[(None, 8080)],
        &[("c.example.com", READY)],
    );
    let stable_slice = ObjectKey::of(&stable_fqdn.metadata).to_string();
    let canary_slice = ObjectKey::of(&canary_fqdn.metadata).to_string();
    let terminating = (Some(false), Some(true), Some(true));
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .service(plain_service("shop", "canary"))
        // Stable: names only. Canary: names, and a pod still serving while
        // it terminates.
        .slice(stable_fqdn)
        .slice(canary_fqdn)
        .slice(plain_slice("shop", "canary", &[("10.0.2.9", terminating)]))
        .compile();
    assert_eq!(
        only_route_endpoints(&compiled),
        (vec![], vec!["10.0.2.9:8080".to_owned()])
    );
    assert_eq!(
        problem_summary(&compiled),
        [
            (
                "shop/checkout".to_owned(),
                "stable".to_owned(),
                PORT_MISSING
            ),
            (
                "shop/checkout".to_owned(),
                "canary".to_owned(),
                PORT_MISSING
            ),
        ]
    );
    let messages: Vec<&str> = compiled.problems["shop/checkout"]
        .iter()
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(
        messages[0],
        format!(
            "EndpointSlice `{stable_slice}` of the stable Service `shop/stable` has addressType FQDN, which weir does not resolve; its 2 endpoints are not used"
        )
    );
    assert!(
        messages[1].contains(&format!("EndpointSlice `{canary_slice}` "))
            && messages[1].ends_with("its 1 endpoint is not used"),
        "{}",
        messages[1]
    );
}

#[test]
fn endpoints_in_several_slices_or_also_listed_are_used_once() {
    let spec = json!({
        "stable": {
            "revision": "v1",
            "service": {"name": "stable", "port": 80},
            "endpoints": ["10.0.1.2:8080", "10.0.9.9:80"],
        },
    });
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", spec))
        .service(plain_service("shop", "stable"))
        .slice(plain_slice(
            "shop",
            "stable",
            &[("10.0.1.2", READY), ("10.0.1.1", READY)],
        ))
        .slice(plain_slice(
            "shop",
            "stable",
            &[("10.0.1.1", READY), ("10.0.1.2", READY)],
        ))
        .compile();
    let (stable, _) = only_route_endpoints(&compiled);
    assert_eq!(stable, ["10.0.1.1:8080", "10.0.1.2:8080", "10.0.9.9:80"]);
}

#[test]
fn an_unchanged_endpoint_set_compiles_to_an_equal_route() {
    let pods = [
        ("10.0.1.3", READY),
        ("10.0.1.1", READY),
        ("10.0.1.2", READY),
    ];
    let reversed: Vec<(&str, Conditions)> = pods.iter().rev().copied().collect();
    let first = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .service(plain_service("shop", "canary"))
        .slice(plain_slice("shop", "stable", &pods[..2]))
        .slice(plain_slice("shop", "stable", &pods[2..]))
        .compile();
    // The same pods, split over slices another way, listed in another order.
    let second = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .service(plain_service("shop", "canary"))
        .slice(plain_slice("shop", "stable", &reversed))
        .compile();
    assert_eq!(first, second);
}

#[test]
fn slices_of_another_service_or_namespace_are_ignored() {
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .both_services("shop")
        .service(plain_service("shop", "stable-preview"))
        .slice(plain_slice(
            "shop",
            "stable-preview",
            &[("10.0.7.1", READY)],
        ))
        .slice(plain_slice("billing", "stable", &[("10.0.8.1", READY)]))
        .compile();
    assert_eq!(
        only_route_endpoints(&compiled),
        (
            vec!["10.0.1.1:8080".to_owned()],
            vec!["10.0.2.1:8080".to_owned()]
        )
    );
}

#[test]
fn only_canary_routes_of_watched_namespaces_are_compiled() {
    let objects = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .route(canary_route("billing", "invoices", services_spec("/")))
        .both_services("shop")
        .both_services("billing");
    let watched: BTreeSet<String> = ["shop".to_owned()].into();
    let compiled = compile_cluster_routes(&objects.0, Some(&watched), &[], &LastValid::new());
    assert_eq!(route_names(&compiled), ["shop/checkout"]);
    assert!(compiled.problems.is_empty());
    let all = compile_cluster_routes(&objects.0, None, &[], &LastValid::new());
    // Same hosts and prefix in two namespaces: the older serves.
    assert_eq!(route_names(&all), ["billing/invoices"]);
}

#[test]
fn an_invalid_canary_route_beside_a_valid_one_is_reported_alone() {
    let mut invalid = services_spec("/cart");
    invalid["strategy"] = json!({"steps": [{"setWeight": 10}, {"pause": {"duration": "0s"}}]});
    let compiled = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .route(canary_route("shop", "cart", invalid))
        .both_services("shop")
        .compile();
    assert_eq!(route_names(&compiled), ["shop/checkout"]);
    assert_eq!(
        problem_summary(&compiled),
        [(
            "shop/cart".to_owned(),
            "spec.strategy.steps[1].pause.duration".to_owned(),
            INVALID
        )]
    );
    assert!(
        compiled.problems["shop/cart"][0]
            .message
            .contains("`duration` is 0")
    );
}

#[test]
fn routes_come_in_name_order() {
    let compiled = Objects::default()
        .route(canary_route("shop", "b", services_spec("/b")))
        .route(canary_route("shop", "a", services_spec("/a")))
        .route(canary_route("shop-eu", "a", services_spec("/c")))
        .both_services("shop")
        .both_services("shop-eu")
        .compile();
    assert_eq!(route_names(&compiled), ["shop-eu/a", "shop/a", "shop/b"]);
}

#[test]
fn of_two_canary_routes_matching_the_same_requests_the_older_serves() {
    let compiled = Objects::default()
        .route(canary_route_at("shop", "newer", 2_000, services_spec("/")))
        .route(canary_route_at("shop", "older", 1_000, services_spec("/")))
        .route(canary_route_at(
            "shop",
            "other-path",
            3_000,
            services_spec("/cart"),
        ))
        .both_services("shop")
        .compile();
    assert_eq!(route_names(&compiled), ["shop/older", "shop/other-path"]);
    assert_eq!(
        problem_summary(&compiled),
        [(
            "shop/newer".to_owned(),
            "spec.pathPrefix".to_owned(),
            CONFLICT
        )]
    );
    let message = &compiled.problems["shop/newer"][0].message;
    assert!(
        message.contains(
            "the older CanaryRoute `shop/older` already matches any host with pathPrefix `/`"
        ),
        "{message}"
    );
    // Created in the same second: the first by name serves.
    let tie = Objects::default()
        .route(canary_route_at("shop", "b", 1_000, services_spec("/")))
        .route(canary_route_at("shop", "a", 1_000, services_spec("/")))
        .both_services("shop")
        .compile();
    assert_eq!(route_names(&tie), ["shop/a"]);
}

#[test]
fn file_routes_come_first_and_win_a_conflict() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n  - name: home\n    hosts: [shop.example.com]\n    stable: { revision: v1, endpoints: [10.0.0.1:80] }\nkubernetes: {}\n";
    let config = weir_config::parse(text, "weir.yaml", std::path::Path::new("/"), &|_| None)
        .expect("the test config is valid")
        .config;
    let mut same = services_spec("/");
    same["hosts"] = json!(["SHOP.example.com"]);
    let cluster = Objects::default()
        .route(canary_route("shop", "same", same))
        .route(canary_route("shop", "cart", services_spec("/cart")))
        .both_services("shop")
        .compile();
    let merged = snapshot_routes(&config, &cluster);
    let names: Vec<&str> = merged.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["home", "shop/cart"]);
    let conflicts: Vec<(&str, &str)> = merged
        .conflicts
        .iter()
        .flat_map(|(route, problems)| problems.iter().map(move |p| (route.as_str(), p.reason)))
        .collect();
    assert_eq!(conflicts, [("shop/same", CONFLICT)]);
    assert!(
        merged.conflicts["shop/same"][0]
            .message
            .contains("the weir.yaml route `home` already matches hosts [shop.example.com]"),
        "{:?}",
        merged.conflicts
    );
    // The snapshot is built from them, file routes first.
    let snapshot = weir_config::Snapshot::compile_routes(&merged.routes, &|_| None, &|e| {
        e.host
            .parse()
            .map(|ip| vec![std::net::SocketAddr::new(ip, e.port)])
            .unwrap_or_default()
    });
    let cart = &snapshot.routes[1];
    assert_eq!(&*cart.name, "shop/cart");
    assert_eq!(
        cart.split.stable.endpoints,
        ["10.0.1.1:8080"
            .parse::<std::net::SocketAddr>()
            .expect("an address")]
    );
}

/// The EndpointSlice `stable-1` of Service `stable` with `endpoints`, as
/// the API server sends it in a watch event of `type_`.
fn slice_event(type_: &str, endpoints: &[(&str, Conditions)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, (ready, serving, terminating))| {
            json!({"addresses": [address],
                   "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
        })
        .collect();
    json!({
        "type": type_,
        "object": {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "namespace": "shop",
                "name": "stable-1",
                "resourceVersion": "12",
                "labels": {SERVICE_NAME_LABEL: "stable"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        },
    })
}

/// Applies a watch event to the objects as the reflector's store does.
fn apply_slice_event(objects: &mut Objects, event: Value) {
    let event: kube::api::WatchEvent<EndpointSlice> =
        serde_json::from_value(event).expect("a watch event");
    match event {
        kube::api::WatchEvent::Added(slice) | kube::api::WatchEvent::Modified(slice) => {
            objects
                .0
                .endpoint_slices
                .insert(ObjectKey::of(&slice.metadata), Arc::new(slice));
        }
        other => panic!("not an added or modified object: {other:?}"),
    }
}

#[test]
fn a_watch_event_marking_a_pod_terminating_drops_it_from_the_route() {
    let terminating: Conditions = (Some(false), Some(true), Some(true));
    let mut objects = Objects::default()
        .route(canary_route("shop", "checkout", services_spec("/")))
        .service(plain_service("shop", "stable"))
        .service(plain_service("shop", "canary"))
        .slice(plain_slice("shop", "canary", &[("10.0.2.1", READY)]));
    apply_slice_event(
        &mut objects,
        slice_event("ADDED", &[("10.0.1.1", READY), ("10.0.1.2", READY)]),
    );
    let (stable, _) = only_route_endpoints(&objects.compile());
    assert_eq!(stable, ["10.0.1.1:8080", "10.0.1.2:8080"]);

    apply_slice_event(
        &mut objects,
        slice_event(
            "MODIFIED",
            &[("10.0.1.1", READY), ("10.0.1.2", terminating)],
        ),
    );
    let compiled = objects.compile();
    let (stable, canary) = only_route_endpoints(&compiled);
    assert_eq!(stable, ["10.0.1.1:8080"], "the terminating pod is dropped");
    assert_eq!(canary, ["10.0.2.1:8080"]);
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
}

#[test]
fn a_preview_host_served_by_another_route_is_a_conflict() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n  - name: home\n    hosts: [shop.example.com]\n    stable: { revision: v1, endpoints: [10.0.0.1:80] }\nkubernetes: {}\n";
    let config = weir_config::parse(text, "weir.yaml", std::path::Path::new("/"), &|_| None)
        .expect("the test config is valid")
        .config;
    let blue_green = |hosts: Value, preview: &str, path: &str| {
        let mut spec = services_spec(path);
        spec["hosts"] = hosts;
        spec["strategy"] = json!({"blueGreen": {"preview": {"hosts": [preview]}}});
        spec
    };
    let mut plain = services_spec("/plain");
    plain["hosts"] = json!(["preview.cart.test"]);
    let cluster = Objects::default()
        // Its preview is the file route's host.
        .route(canary_route(
            "shop",
            "a-steals",
            blue_green(json!([]), "shop.example.com", "/a"),
        ))
        // Served: its preview is its own.
        .route(canary_route(
            "shop",
            "b-cart",
            blue_green(json!(["cart.test"]), "preview.cart.test", "/b"),
        ))
        // Its preview is one of its own hosts.
        .route(canary_route(
            "shop",
            "c-self",
            blue_green(json!(["c.test"]), "c.test", "/c"),
        ))
        // Its host is b-cart's preview host.
        .route(canary_route("shop", "d-plain", plain))
        .both_services("shop")
        .compile();
    let merged = snapshot_routes(&config, &cluster);
    let names: Vec<&str> = merged.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["home", "shop/b-cart"]);
    let problems: Vec<(&str, &str)> = merged
        .conflicts
        .iter()
        .flat_map(|(route, problems)| {
            problems
                .iter()
                .map(move |p| (route.as_str(), p.field_or_role.as_str()))
        })
        .collect();
    assert_eq!(
        problems,
        [
            ("shop/a-steals", "spec.strategy.blueGreen.preview.hosts"),
            ("shop/c-self", "spec.strategy.blueGreen.preview.hosts"),
            ("shop/d-plain", "spec.hosts"),
        ]
    );
    let message = |route: &str| merged.conflicts[route][0].message.clone();
    assert!(
        message("shop/a-steals").contains("also served by the weir.yaml route `home`"),
        "{}",
        message("shop/a-steals")
    );
    assert!(
        message("shop/d-plain").contains("preview host of the CanaryRoute `shop/b-cart`"),
        "{}",
        message("shop/d-plain")
    );
}

fn analysis_template(namespace: &str, name: &str, spec: Value) -> Arc<AnalysisTemplate> {
    let object = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    });
    Arc::new(serde_json::from_value(object).expect("test AnalysisTemplates deserialize"))
}

fn template_spec(success: &str) -> Value {
    json!({"metrics": [{
        "name": "smoke",
        "successCondition": success,
        "provider": {"web": {"url": "http://127.0.0.1:8000/smoke"}}
    }]})
}

fn spec_using(path_prefix: &str, template: &str) -> Value {
    let mut spec = services_spec(path_prefix);
    spec["strategy"] = json!({"steps": [
        {"setWeight": 10},
        {"analysis": {"templates": [{"templateName": template}]}}
    ]});
    spec
}

impl Objects {
    fn template(mut self, template: Arc<AnalysisTemplate>) -> Objects {
        self.0
            .analysis_templates
            .insert(ObjectKey::of(&template.metadata), template);
        self
    }
}

#[test]
fn analysis_templates_resolve_in_their_namespace_and_a_bad_one_holds_only_its_users() {
    let compiled = Objects::default()
        .both_services("shop")
        .both_services("other")
        .template(analysis_template(
            "shop",
            "good",
            template_spec("result == 1"),
        ))
        .template(analysis_template("shop", "bad", template_spec("result ==")))
        // Same name, another namespace: not visible from `shop`.
        .template(analysis_template(
            "other",
            "elsewhere",
            template_spec("true"),
        ))
        .route(canary_route(
            "shop",
            "uses-good",
            spec_using("/good", "good"),
        ))
        .route(canary_route("shop", "uses-bad", spec_using("/bad", "bad")))
        .route(canary_route(
            "shop",
            "uses-other",
            spec_using("/other", "elsewhere"),
        ))
        .compile();
    let served: Vec<&str> = compiled.routes.iter().map(|r| &*r.route.name).collect();
    assert_eq!(
        served,
        ["shop/uses-bad", "shop/uses-good", "shop/uses-other"],
        "every route is served"
    );
    assert_eq!(
        problem_summary(&compiled),
        [
            (
                "shop/uses-bad".to_owned(),
                "spec.strategy.steps[1].analysis.templates[0].templateName".to_owned(),
                ANALYSIS_TEMPLATE_UNRESOLVED
            ),
            (
                "shop/uses-other".to_owned(),
                "spec.strategy.steps[1].analysis.templates[0].templateName".to_owned(),
                ANALYSIS_TEMPLATE_UNRESOLVED
            ),
        ]
    );
    let bad = &compiled.problems["shop/uses-bad"][0].message;
    assert!(
        bad.contains("AnalysisTemplate `shop/bad` is invalid: spec.metrics[0].successCondition"),
        "{bad}"
    );
    let other = &compiled.problems["shop/uses-other"][0].message;
    assert!(
        other.contains(
            "there is no AnalysisTemplate `elsewhere` in namespace `shop` nor in weir.yaml (known: bad, good)"
        ),
        "{other}"
    );
    let invalid: Vec<String> = compiled
        .template_problems
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(invalid, ["shop/bad"]);
    let good = compiled
        .routes
        .iter()
        .find(|r| &*r.route.name == "shop/uses-good")
        .expect("served");
    let steps = &good.route.strategy.as_ref().expect("a strategy").steps;
    let weir_config::Step::Analysis(analysis) = &steps[1] else {
        panic!("an analysis step: {steps:?}");
    };
    assert_eq!(analysis.waiting_for, None);
    assert_eq!(analysis.metrics.len(), 1);
}

/// The CanaryRoute `shop/cart` at `generation`, of object `uid`.
fn cart_at(generation: i64, uid: &str, spec: Value) -> Arc<CanaryRoute> {
    let mut object = (*canary_route("shop", "cart", spec)).clone();
    object.metadata.generation = Some(generation);
    object.metadata.uid = Some(uid.to_owned());
    Arc::new(object)
}

/// An edit that does not validate leaves the CanaryRoute served with its
/// last spec that did, as a config file that fails to reload: the edit's
/// problems are reported, with a note of what is served. A CanaryRoute
/// made again under the name is another object: never served with the old
/// spec.
#[test]
fn an_invalid_edit_keeps_the_last_valid_spec_served() {
    let mut broken = services_spec("/cart");
    broken["strategy"] = json!({"steps": [{"setWeight": 150}]});
    let first = compile_cluster_routes(
        &Objects::default()
            .route(cart_at(4, "uid-1", services_spec("/cart")))
            .both_services("shop")
            .0,
        None,
        &[],
        &LastValid::new(),
    );
    assert_eq!(route_names(&first), ["shop/cart"]);

    let edited = Objects::default()
        .route(cart_at(5, "uid-1", broken.clone()))
        .both_services("shop");
    let second = compile_cluster_routes(&edited.0, None, &[], &first.last_valid);
    assert_eq!(route_names(&second), ["shop/cart"], "still served");
    assert_eq!(second.routes[0].generation, Some(4));
    assert_eq!(second.routes[0].route.path_prefix, "/cart");
    let problems = &second.problems["shop/cart"];
    assert!(
        problems
            .iter()
            .any(|p| p.reason == INVALID && p.field_or_role.starts_with("spec.strategy.steps[0]")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.message
            == "the last spec that validated (generation 4) is served until this one does"),
        "{problems:?}"
    );
    // Kept for the next sync too, until an edit validates.
    let third = compile_cluster_routes(&edited.0, None, &[], &second.last_valid);
    assert_eq!(route_names(&third), ["shop/cart"]);

    // Deleted and made again, broken: not served.
    let made_again = Objects::default()
        .route(cart_at(1, "uid-2", broken))
        .both_services("shop");
    let fourth = compile_cluster_routes(&made_again.0, None, &[], &third.last_valid);
    assert_eq!(route_names(&fourth), Vec::<String>::new());
    assert!(fourth.last_valid.is_empty());
}

/// A replica that starts while an edit does not validate serves the spec
/// the status keeps (`lastValidSpec`, written by the leader), validated
/// again; its own memory wins when it holds a later generation, and a kept
/// spec that does not validate is not served.
#[test]
fn a_replica_started_after_an_invalid_edit_serves_the_spec_the_status_keeps() {
    let mut broken = services_spec("/cart");
    broken["strategy"] = json!({"steps": [{"setWeight": 150}]});
    let with_kept = |generation: i64, kept: Value| {
        let mut object = (*cart_at(7, "uid-1", broken.clone())).clone();
        object.status = Some(
            CanaryRouteStatus {
                last_valid_spec: Some(LastValidSpec {
                    generation: Some(generation),
                    spec: kept,
                }),
                ..CanaryRouteStatus::default()
            }
            .into(),
        );
        Objects::default()
            .route(Arc::new(object))
            .both_services("shop")
    };
    let started = compile_cluster_routes(
        &with_kept(5, services_spec("/cart")).0,
        None,
        &[],
        &LastValid::new(),
    );
    assert_eq!(
        route_names(&started),
        ["shop/cart"],
        "served from the status"
    );
    assert_eq!(started.routes[0].generation, Some(5));
    assert_eq!(started.last_valid[&key("shop", "cart")].generation, Some(5));
    assert!(
        started.problems["shop/cart"].iter().any(|p| p.message
            == "the last spec that validated (generation 5) is served until this one does"),
        "{:?}",
        started.problems
    );

    // This replica's own memory of generation 6 is later than the status's.
    let mut remembered = LastValid::new();
    let mut six = services_spec("/cart");
    six["pathPrefix"] = json!("/cart6");
    remembered.insert(
        key("shop", "cart"),
        ValidSpec {
            uid: Some("uid-1".to_owned()),
            generation: Some(6),
            spec: six,
        },
    );
    let later = compile_cluster_routes(
        &with_kept(5, services_spec("/cart")).0,
        None,
        &[],
        &remembered,
    );
    assert_eq!(later.routes[0].generation, Some(6));
    assert_eq!(later.routes[0].route.path_prefix, "/cart6");

    // A kept spec of a later generation than the object's own (patched in
    // by hand: the leader writes earlier ones) is not taken.
    let later = compile_cluster_routes(
        &with_kept(99, services_spec("/elsewhere")).0,
        None,
        &[],
        &remembered,
    );
    assert_eq!(later.routes[0].route.path_prefix, "/cart6");
    let none = compile_cluster_routes(
        &with_kept(99, services_spec("/elsewhere")).0,
        None,
        &[],
        &LastValid::new(),
    );
    assert_eq!(route_names(&none), Vec::<String>::new());

    // A kept spec is validated again: nonsense written into the status by
    // hand is not served.
    let nonsense = compile_cluster_routes(
        &with_kept(5, broken.clone()).0,
        None,
        &[],
        &LastValid::new(),
    );
    assert_eq!(route_names(&nonsense), Vec::<String>::new());
    let not_an_object = compile_cluster_routes(
        &with_kept(5, json!("/cart")).0,
        None,
        &[],
        &LastValid::new(),
    );
    assert_eq!(route_names(&not_an_object), Vec::<String>::new());
}

/// A dual-stack peers Service has a slice per family with each replica in
/// both: every replica is asked once, at its IPv4 address; an IPv6-only
/// Service is used as it is.
#[test]
fn a_dual_stack_peers_service_gives_each_replica_once() {
    let admin = [(Some("admin"), 9900)];
    let objects = Objects::default()
        .slice(slice(
            "weir",
            "weir-peers",
            "IPv4",
            &admin,
            &[("10.0.0.1", READY), ("10.0.0.2", READY)],
        ))
        .slice(slice(
            "weir",
            "weir-peers",
            "IPv6",
            &admin,
            &[("fd00::1", READY), ("fd00::2", READY)],
        ));
    let addresses: Vec<String> = peer_addresses(&objects.0, "weir", "weir-peers")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addresses, ["10.0.0.1:9900", "10.0.0.2:9900"]);

    let v6_only = Objects::default().slice(slice(
        "weir",
        "weir-peers",
        "IPv6",
        &admin,
        &[("fd00::1", READY)],
    ));
    let addresses: Vec<String> = peer_addresses(&v6_only.0, "weir", "weir-peers")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addresses, ["[fd00::1]:9900"]);
}
