use std::net::SocketAddr;

use serde_json::{Value, json};

use super::*;

/// weir's listener ports in these tests.
const PORTS: [u16; 1] = [8080];

/// A cluster with our GatewayClass `weir`, a foreign class `other`, the
/// Gateway `shop/public` (class `weir`, one HTTP listener on 8080, any
/// host) and the Services `web-v1`, `web-v2` (port 80, one ready endpoint
/// each).
fn cluster() -> ClusterObjects {
    let mut objects = ClusterObjects::default();
    class(&mut objects, "weir", CONTROLLER_NAME);
    class(&mut objects, "other", "example.com/other-controller");
    gateway(
        &mut objects,
        "public",
        "weir",
        json!([{"name": "http", "port": 8080, "protocol": "HTTP"}]),
    );
    service(&mut objects, "web-v1", "10.0.0.1");
    service(&mut objects, "web-v2", "10.0.0.2");
    objects
}

fn class(objects: &mut ClusterObjects, name: &str, controller: &str) {
    objects.gateway_classes.insert(
        ObjectKey::new("", name),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "generation": 1},
                "spec": {"controllerName": controller},
            }))
            .expect("a GatewayClass"),
        ),
    );
}

fn gateway(objects: &mut ClusterObjects, name: &str, class: &str, listeners: Value) {
    objects.gateways.insert(
        ObjectKey::new("shop", name),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop", "generation": 2},
                "spec": {"gatewayClassName": class, "listeners": listeners},
            }))
            .expect("a Gateway"),
        ),
    );
}

fn service(objects: &mut ClusterObjects, name: &str, ip: &str) {
    objects.services.insert(
        ObjectKey::new("shop", name),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8000}]},
            }))
            .expect("a Service"),
        ),
    );
    objects.endpoint_slices.insert(
        ObjectKey::new("shop", &format!("{name}-abc")),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{name}-abc"), "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8000}],
                "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
            }))
            .expect("an EndpointSlice"),
        ),
    );
}

fn route(objects: &mut ClusterObjects, name: &str, created: &str, spec: Value) {
    objects.http_routes.insert(
        ObjectKey::new("shop", name),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop", "generation": 3,
                             "creationTimestamp": created},
                "spec": spec,
            }))
            .expect("an HTTPRoute"),
        ),
    );
}

fn backend(name: &str, weight: Value) -> Value {
    json!({"group": "", "kind": "Service", "name": name, "port": 80, "weight": weight})
}

fn compile(objects: &ClusterObjects) -> CompiledGateways {
    compile_gateways(objects, None, &PORTS)
}

fn rule(route: &RouteSnapshot) -> &GatewayRule {
    route.gateway.as_deref().expect("a Gateway API rule")
}

/// `(name, weight, resolved, endpoints)` of each backend of a route.
fn backends(route: &RouteSnapshot) -> Vec<(String, u32, bool, Vec<SocketAddr>)> {
    rule(route)
        .backends
        .iter()
        .map(|b| {
            (
                b.name.to_string(),
                b.weight,
                b.resolved,
                b.endpoints.clone(),
            )
        })
        .collect()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

fn parent_verdict(compiled: &CompiledGateways, name: &str) -> ParentVerdict {
    compiled.http_routes[&ObjectKey::new("shop", name)][0].clone()
}

#[test]
fn weights_70_30_become_two_backends_with_their_endpoints() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "hostnames": ["shop.example.com"],
            "rules": [{"backendRefs": [backend("web-v1", json!(70)), backend("web-v2", json!(30))]}],
        }),
    );
    let compiled = compile(&objects);
    assert_eq!(compiled.routes.len(), 1, "{compiled:#?}");
    let served = &compiled.routes[0];
    assert_eq!(&*served.name, "shop/web");
    assert_eq!(
        served.hosts,
        vec![HostMatch::Exact("shop.example.com".to_owned())]
    );
    assert_eq!(served.path_prefix, "/");
    assert_eq!(rule(served).listener_ports, [8080]);
    assert_eq!(
        backends(served),
        vec![
            ("web-v1".to_owned(), 70, true, vec![addr("10.0.0.1:8000")]),
            ("web-v2".to_owned(), 30, true, vec![addr("10.0.0.2:8000")]),
        ]
    );
    let verdict = parent_verdict(&compiled, "web");
    assert!(verdict.accepted.status, "{verdict:?}");
    assert_eq!(verdict.accepted.reason, ACCEPTED);
    assert_eq!(verdict.resolved_refs.reason, RESOLVED_REFS);
    assert_eq!(verdict.partially_invalid, None, "every rule is served");
    assert_eq!(verdict.generation, Some(3));
    let gateway = &compiled.gateways[&ObjectKey::new("shop", "public")];
    assert!(gateway.accepted.status && gateway.programmed.status);
    assert_eq!(gateway.listeners[0].attached_routes, 1);
    assert!(compiled.classes["weir"].accepted.status);
    assert!(!compiled.classes.contains_key("other"));
}

#[test]
fn weights_0_0_are_served_and_answered_500_by_the_proxy() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [{"backendRefs": [backend("web-v1", json!(0)), backend("web-v2", json!(0))]}],
        }),
    );
    let compiled = compile(&objects);
    assert_eq!(compiled.routes.len(), 1);
    let weights: Vec<u32> = rule(&compiled.routes[0])
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(weights, [0, 0]);
    assert!(compiled.routes[0].hosts.is_empty(), "any host");
    assert!(parent_verdict(&compiled, "web").accepted.status);
}

#[test]
fn a_missing_backend_keeps_its_weight_unresolved_and_says_backend_not_found() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [{"backendRefs": [backend("web-v1", json!(90)), backend("web-v3", json!(10))]}],
        }),
    );
    let compiled = compile(&objects);
    assert_eq!(
        backends(&compiled.routes[0]),
        vec![
            ("web-v1".to_owned(), 90, true, vec![addr("10.0.0.1:8000")]),
            ("web-v3".to_owned(), 10, false, vec![]),
        ]
    );
    let verdict = parent_verdict(&compiled, "web");
    assert!(verdict.accepted.status, "the route is still served");
    assert!(!verdict.resolved_refs.status);
    assert_eq!(verdict.resolved_refs.reason, BACKEND_NOT_FOUND);
    assert_eq!(
        verdict.resolved_refs.message,
        "spec.rules[0].backendRefs[1]: the Service `shop/web-v3` does not exist; requests for these backends are answered 500"
    );
}

#[test]
fn precedence_exact_path_then_prefix_length_then_method_then_headers_then_age() {
    let mut objects = cluster();
    // Older, with a plain prefix rule and a header rule.
    route(
        &mut objects,
        "old",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api/"}}],
                 "backendRefs": [backend("web-v1", json!(1))]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                              "headers": [{"name": "X-Canary", "value": "always"}]}],
                 "backendRefs": [backend("web-v2", json!(1))]},
            ],
        }),
    );
    // Newer, with the same prefix (loses to the older), a method match and an exact path.
    route(
        &mut objects,
        "new",
        "2024-06-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [
                {"matches": [{"path": {"value": "/api"}}], "backendRefs": [backend("web-v2", json!(1))]},
                {"matches": [{"path": {"value": "/api"}, "method": "POST"}],
                 "backendRefs": [backend("web-v2", json!(1))]},
                {"matches": [{"path": {"type": "Exact", "value": "/api/health"}}],
                 "backendRefs": [backend("web-v1", json!(1))]},
            ],
        }),
    );
    let compiled = compile(&objects);
    let order: Vec<(String, String, bool, Option<String>, usize)> = compiled
        .routes
        .iter()
        .map(|r| {
            let g = rule(r);
            (
                r.name.to_string(),
                r.path_prefix.clone(),
                g.exact_path,
                g.method.clone(),
                g.headers.len(),
            )
        })
        .collect();
    // The trailing slash of `/api/` is dropped: it matches the same requests as `/api`.
    assert_eq!(
        order,
        vec![
            (
                "shop/new".to_owned(),
                "/api".to_owned(),
                false,
                Some("POST".to_owned()),
                0
            ),
            ("shop/old".to_owned(), "/api".to_owned(), false, None, 1),
            ("shop/old".to_owned(), "/api".to_owned(), false, None, 0),
            ("shop/new".to_owned(), "/api".to_owned(), false, None, 0),
            (
                "shop/new".to_owned(),
                "/api/health".to_owned(),
                true,
                None,
                0
            ),
        ]
    );

    // What the proxy's table makes of that order.
    let table = weir_proxy::routes::RouteTable::with_exact(compiled.routes.iter().map(|r| {
        (
            r.hosts.as_slice(),
            r.path_prefix.as_str(),
            rule(r).exact_path,
        )
    }));
    let find = |path: &str, method: &str, canary: bool| {
        table.find_where("shop.example.com", path, |i| {
            let g = rule(&compiled.routes[i]);
            g.method.as_deref().is_none_or(|m| m == method)
                && g.headers
                    .iter()
                    .all(|(n, v)| canary && n == "x-canary" && v == "always")
        })
    };
    assert_eq!(
        find("/api/health", "GET", true),
        Some(4),
        "exact beats every prefix"
    );
    assert_eq!(
        find("/api/health/x", "GET", false),
        Some(2),
        "the older route's prefix"
    );
    assert_eq!(
        find("/api/x", "POST", true),
        Some(0),
        "a method beats headers"
    );
    assert_eq!(find("/api/x", "GET", true), Some(1), "headers beat none");
    assert_eq!(find("/other", "GET", false), None);
}

#[test]
fn wildcard_hostnames_intersect_with_the_listener() {
    let mut objects = cluster();
    gateway(
        &mut objects,
        "wild",
        "weir",
        json!([{"name": "shop", "port": 8080, "protocol": "HTTP", "hostname": "*.example.com"}]),
    );
    route(
        &mut objects,
        "narrow",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "wild"}],
            "hostnames": ["shop.example.com", "*.eu.example.com", "other.test"],
            "rules": [{"backendRefs": [backend("web-v1", json!(1))]}],
        }),
    );
    route(
        &mut objects,
        "wide",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "wild"}],
            "hostnames": ["*.com"],
            "rules": [{"backendRefs": [backend("web-v1", json!(1))]}],
        }),
    );
    route(
        &mut objects,
        "inherit",
        "2024-01-01T00:00:00Z",
        json!({"parentRefs": [{"name": "wild"}], "rules": [{"backendRefs": [backend("web-v1", json!(1))]}]}),
    );
    route(
        &mut objects,
        "elsewhere",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "wild"}],
            "hostnames": ["shop.example.org"],
            "rules": [{"backendRefs": [backend("web-v1", json!(1))]}],
        }),
    );
    let compiled = compile(&objects);
    let hosts = |name: &str| -> Vec<HostMatch> {
        compiled
            .routes
            .iter()
            .find(|r| &*r.name == name)
            .map(|r| r.hosts.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        hosts("shop/narrow"),
        vec![
            HostMatch::Exact("shop.example.com".to_owned()),
            HostMatch::Suffix(".eu.example.com".to_owned()),
        ]
    );
    assert_eq!(
        hosts("shop/wide"),
        vec![HostMatch::Suffix(".example.com".to_owned())]
    );
    assert_eq!(
        hosts("shop/inherit"),
        vec![HostMatch::Suffix(".example.com".to_owned())]
    );
    assert!(!compiled.routes.iter().any(|r| &*r.name == "shop/elsewhere"));
    let verdict = parent_verdict(&compiled, "elsewhere");
    assert_eq!(
        (verdict.accepted.status, verdict.accepted.reason),
        (false, NO_MATCHING_LISTENER_HOSTNAME)
    );
}

#[test]
fn a_route_is_served_on_each_listener_port_with_that_listeners_host_names() {
    let mut objects = cluster();
    gateway(
        &mut objects,
        "two",
        "weir",
        json!([
            {"name": "shop", "port": 8080, "protocol": "HTTP", "hostname": "shop.example.com"},
            {"name": "api", "port": 9090, "protocol": "HTTP", "hostname": "api.example.com"},
            {"name": "any", "port": 7070, "protocol": "HTTP", "hostname": "shop.example.com"},
        ]),
    );
    route(
        &mut objects,
        "both",
        "2024-01-01T00:00:00Z",
        json!({"parentRefs": [{"name": "two"}], "rules": [{"backendRefs": [backend("web-v1", json!(1))]}]}),
    );
    let compiled = compile_gateways(&objects, None, &[7070, 8080, 9090]);
    let served: Vec<(Vec<HostMatch>, Vec<u16>)> = compiled
        .routes
        .iter()
        .map(|r| (r.hosts.clone(), rule(r).listener_ports.clone()))
        .collect();
    assert_eq!(
        served,
        vec![
            (
                vec![HostMatch::Exact("shop.example.com".to_owned())],
                vec![7070, 8080]
            ),
            (
                vec![HostMatch::Exact("api.example.com".to_owned())],
                vec![9090]
            ),
        ]
    );
    let listeners: Vec<i32> = compiled.gateways[&ObjectKey::new("shop", "two")]
        .listeners
        .iter()
        .map(|l| l.attached_routes)
        .collect();
    assert_eq!(listeners, [1, 1, 1]);
}

#[test]
fn the_shape_argo_rollouts_writes_stable_canary_weights_and_a_header_route() {
    // Argo Rollouts' Gateway API plugin rewrites the weights of the stable
    // and canary backendRefs, and `setHeaderRoute` appends a rule with the
    // first rule's path and Exact header matches to the canary alone.
    let mut objects = cluster();
    route(
        &mut objects,
        "argo",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public", "namespace": "shop"}],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [
                     {"name": "web-v1", "port": 80, "kind": "Service", "weight": 80},
                     {"name": "web-v2", "port": 80, "kind": "Service", "weight": 20},
                 ]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                              "headers": [{"type": "Exact", "name": "X-Canary", "value": "yes"}]}],
                 "backendRefs": [{"group": "", "kind": "Service", "name": "web-v2", "port": 80}]},
            ],
        }),
    );
    let compiled = compile(&objects);
    assert!(parent_verdict(&compiled, "argo").accepted.status);
    assert_eq!(compiled.routes.len(), 2);
    let header_route = &compiled.routes[0];
    assert_eq!(
        rule(header_route).headers,
        vec![("x-canary".to_owned(), "yes".to_owned())]
    );
    assert_eq!(
        backends(header_route),
        vec![("web-v2".to_owned(), 1, true, vec![addr("10.0.0.2:8000")])]
    );
    let weighted: Vec<(String, u32)> = rule(&compiled.routes[1])
        .backends
        .iter()
        .map(|b| (b.name.to_string(), b.weight))
        .collect();
    assert_eq!(
        weighted,
        [("web-v1".to_owned(), 80), ("web-v2".to_owned(), 20)]
    );
}

#[test]
fn the_shapes_flagger_writes_weights_and_session_affinity_by_cookie() {
    // Flagger writes the primary and canary weights with group "" and kind
    // Service; with session affinity it puts first a rule matching its
    // cookie in the `Cookie` header by regular expression (all to the
    // canary), and gives the canary backend of the weighted rule a filter
    // that sets that cookie.
    let mut objects = cluster();
    service(&mut objects, "podinfo-primary", "10.0.0.3");
    service(&mut objects, "podinfo-canary", "10.0.0.4");
    let weights = json!({
        "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "shop"}],
        "hostnames": ["app.example.com"],
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [backend("podinfo-primary", json!(90)), backend("podinfo-canary", json!(10))],
        }],
    });
    route(&mut objects, "podinfo", "2024-01-01T00:00:00Z", weights);
    let compiled = compile(&objects);
    assert!(parent_verdict(&compiled, "podinfo").accepted.status);
    let weighted: Vec<(String, u32)> = rule(&compiled.routes[0])
        .backends
        .iter()
        .map(|b| (b.name.to_string(), b.weight))
        .collect();
    assert_eq!(
        weighted,
        [
            ("podinfo-primary".to_owned(), 90),
            ("podinfo-canary".to_owned(), 10)
        ]
    );

    let mut canary = backend("podinfo-canary", json!(10));
    canary["filters"] = json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "add": [{"name": "Set-Cookie", "value": "flagger-cookie=abc; Max-Age=86400"}]}}]);
    let sticky = json!({
        "parentRefs": [{"name": "public"}],
        "hostnames": ["app.example.com"],
        "rules": [
            {"matches": [{"headers": [{"type": "RegularExpression", "name": "Cookie", "value": ".*flagger-cookie.*abc.*"}]}],
             "backendRefs": [backend("podinfo-primary", json!(0)), backend("podinfo-canary", json!(100))]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [backend("podinfo-primary", json!(90)), canary]},
        ],
    });
    route(&mut objects, "podinfo", "2024-01-01T00:00:00Z", sticky);
    let compiled = compile(&objects);
    assert!(parent_verdict(&compiled, "podinfo").accepted.status);
    assert_eq!(compiled.routes.len(), 2, "{:#?}", compiled.routes);
    let cookie_rule = rule(&compiled.routes[0]);
    assert_eq!(
        cookie_rule.header_patterns,
        [("cookie".to_owned(), ".*flagger-cookie.*abc.*".to_owned())]
    );
    let shares: Vec<u32> = cookie_rule.backends.iter().map(|b| b.weight).collect();
    assert_eq!(shares, [0, 100]);
    let weighted = rule(&compiled.routes[1]);
    assert!(weighted.header_patterns.is_empty());
    assert!(weighted.backends[0].response_headers.is_empty());
    assert_eq!(
        weighted.backends[1].response_headers.add,
        [(
            "set-cookie".to_owned(),
            "flagger-cookie=abc; Max-Age=86400".to_owned()
        )]
    );
}

#[test]
fn anything_unsupported_is_named_and_the_route_not_served() {
    let cases = [
        (
            json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}),
            "spec.rules[0].filters[0].type: filter `RequestRedirect` is not supported by weir (RequestHeaderModifier and ResponseHeaderModifier are)",
        ),
        (
            json!({"matches": [{"path": {"type": "RegularExpression", "value": "/v[0-9]+"}}]}),
            "spec.rules[0].matches[0].path.type: `RegularExpression` is not supported by weir (PathPrefix and Exact are)",
        ),
        (
            json!({"matches": [{"queryParams": [{"name": "canary", "value": "1"}]}]}),
            "spec.rules[0].matches[0].queryParams: query parameter matches are not supported by weir",
        ),
        (
            json!({"backendRefs": [{"name": "web-v1", "port": 80,
                                    "filters": [{"type": "RequestMirror", "requestMirror": {}}]}]}),
            "spec.rules[0].backendRefs[0].filters[0].type: filter `RequestMirror` is not supported by weir (RequestHeaderModifier and ResponseHeaderModifier are)",
        ),
        (
            json!({"matches": [{"headers": [{"type": "RegularExpression", "name": "x-user", "value": "(unclosed"}]}]}),
            "spec.rules[0].matches[0].headers[0].value: `(unclosed` is not a regular expression weir reads: error: unclosed group",
        ),
        (
            json!({"retry": {"attempts": 3}}),
            "spec.rules[0].retry: not supported by weir",
        ),
        (
            json!({"timeouts": {"request": "ten seconds"}}),
            "spec.rules[0].timeouts.request: `ten seconds` is not a Gateway API duration (like `10s`, `500ms`, `1h30m`)",
        ),
    ];
    for (extra, want) in cases {
        let mut objects = cluster();
        let mut rule = json!({"backendRefs": [backend("web-v1", json!(1))]});
        for (k, v) in extra.as_object().expect("an object") {
            rule[k] = v.clone();
        }
        route(
            &mut objects,
            "web",
            "2024-01-01T00:00:00Z",
            json!({"parentRefs": [{"name": "public"}], "rules": [rule]}),
        );
        let compiled = compile(&objects);
        assert!(compiled.routes.is_empty(), "{want}");
        let verdict = parent_verdict(&compiled, "web");
        assert_eq!(verdict.accepted.reason, UNSUPPORTED_VALUE, "{want}");
        assert_eq!(
            verdict.accepted.message,
            format!("the route is not served: {want}")
        );
        assert_eq!(verdict.partially_invalid, None, "{want}");
    }
}

#[test]
fn unsupported_rules_are_dropped_and_the_other_rules_of_the_route_served() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}, {"name": "public", "sectionName": "missing"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [backend("web-v1", json!(1))]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                              "queryParams": [{"name": "canary", "value": "1"}]}],
                 "backendRefs": [backend("web-v2", json!(1))]},
                {"name": "rewrite",
                 "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
                 "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}],
                 "backendRefs": [backend("web-v2", json!(1))]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                 "backendRefs": [backend("web-v1", json!(20)), backend("web-v2", json!(80))]},
            ],
        }),
    );
    let compiled = compile(&objects);

    // Rules 0 and 3 are served, with their own backends, on the route's host.
    let served: Vec<_> = compiled
        .routes
        .iter()
        .map(|r| (r.path_prefix.as_str(), backends(r)))
        .collect();
    assert_eq!(
        served,
        [
            (
                "/",
                vec![("web-v1".to_owned(), 1, true, vec![addr("10.0.0.1:8000")])]
            ),
            (
                "/api",
                vec![
                    ("web-v1".to_owned(), 20, true, vec![addr("10.0.0.1:8000")]),
                    ("web-v2".to_owned(), 80, true, vec![addr("10.0.0.2:8000")]),
                ]
            ),
        ],
        "{:#?}",
        compiled.routes
    );
    assert!(
        compiled
            .routes
            .iter()
            .all(|r| r.hosts == [HostMatch::Exact("shop.example.com".to_owned())])
    );

    // Accepted, with the rules left out named in `PartiallyInvalid`.
    let verdicts = &compiled.http_routes[&ObjectKey::new("shop", "web")];
    let verdict = &verdicts[0];
    assert_eq!(
        (verdict.accepted.status, verdict.accepted.reason),
        (true, ACCEPTED)
    );
    assert_eq!(verdict.generation, Some(3));
    assert_eq!(
        verdict.partially_invalid,
        Some(Verdict::yes(
            UNSUPPORTED_VALUE,
            "Dropped Rules spec.rules[1], spec.rules[2] (`rewrite`): \
             spec.rules[1].matches[0].queryParams: query parameter matches are not supported by weir; \
             spec.rules[2].filters[0].type: filter `URLRewrite` is not supported by weir \
             (RequestHeaderModifier and ResponseHeaderModifier are); the other rules are served"
        ))
    );
    let gateway = &compiled.gateways[&ObjectKey::new("shop", "public")];
    assert_eq!(gateway.listeners[0].attached_routes, 1);

    // A parent the route does not attach to says why, without `PartiallyInvalid`.
    assert_eq!(
        (verdicts[1].accepted.status, verdicts[1].accepted.reason),
        (false, NO_MATCHING_PARENT)
    );
    assert_eq!(verdicts[1].partially_invalid, None);
}

#[test]
fn one_dropped_rule_is_named_in_the_singular() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [
                {"backendRefs": [backend("web-v1", json!(1))]},
                {"matches": [{"path": {"type": "RegularExpression", "value": "/v[0-9]+"}}],
                 "backendRefs": [backend("web-v2", json!(1))]},
            ],
        }),
    );
    let compiled = compile(&objects);
    assert_eq!(compiled.routes.len(), 1, "{:#?}", compiled.routes);
    assert_eq!(
        backends(&compiled.routes[0]),
        [("web-v1".to_owned(), 1, true, vec![addr("10.0.0.1:8000")])]
    );
    let partial = parent_verdict(&compiled, "web")
        .partially_invalid
        .expect("PartiallyInvalid");
    assert_eq!(
        partial.message,
        "Dropped Rule spec.rules[1]: spec.rules[1].matches[0].path.type: `RegularExpression` \
         is not supported by weir (PathPrefix and Exact are); the other rules are served"
    );
}

#[test]
fn a_route_with_every_rule_unsupported_is_not_accepted_and_names_every_rule() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [
                {"retry": {"attempts": 3}, "backendRefs": [backend("web-v1", json!(1))]},
                {"matches": [{"queryParams": [{"name": "canary", "value": "1"}]}],
                 "backendRefs": [backend("web-v2", json!(1))]},
            ],
        }),
    );
    let compiled = compile(&objects);
    assert!(compiled.routes.is_empty(), "{:#?}", compiled.routes);
    let verdict = parent_verdict(&compiled, "web");
    assert_eq!(
        verdict.accepted,
        Verdict::no(
            UNSUPPORTED_VALUE,
            "the route is not served: spec.rules[0].retry: not supported by weir; \
             spec.rules[1].matches[0].queryParams: query parameter matches are not supported by weir"
        )
    );
    assert_eq!(verdict.partially_invalid, None);
    // Attached all the same: attachment is counted by allowedRoutes and
    // parentRefs, whatever the route's own status.
    let gateway = &compiled.gateways[&ObjectKey::new("shop", "public")];
    assert_eq!(gateway.listeners[0].attached_routes, 1);
}

#[test]
fn header_modifiers_and_the_request_timeout_are_carried() {
    let mut objects = cluster();
    route(
        &mut objects,
        "web",
        "2024-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [{
                "filters": [
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                        "set": [{"name": "X-Env", "value": "prod"}], "remove": ["X-Debug"]}},
                    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                        "add": [{"name": "X-Served-By", "value": "weir"}]}},
                ],
                "timeouts": {"request": "1m30s"},
                "backendRefs": [backend("web-v1", json!(1))],
            }],
        }),
    );
    let compiled = compile(&objects);
    let served = &compiled.routes[0];
    let g = rule(served);
    assert_eq!(
        g.request_headers.set,
        [("x-env".to_owned(), "prod".to_owned())]
    );
    assert_eq!(g.request_headers.remove, ["x-debug".to_owned()]);
    assert_eq!(
        g.response_headers.add,
        [("x-served-by".to_owned(), "weir".to_owned())]
    );
    assert_eq!(served.timeouts.request, Duration::from_secs(90));
}

#[test]
fn foreign_classes_wrong_ports_and_listeners_are_told_apart() {
    let mut objects = cluster();
    gateway(
        &mut objects,
        "foreign",
        "other",
        json!([{"name": "http", "port": 8080, "protocol": "HTTP"}]),
    );
    gateway(
        &mut objects,
        "mixed",
        "weir",
        json!([
            {"name": "http", "port": 8080, "protocol": "HTTP"},
            {"name": "tls", "port": 8443, "protocol": "HTTPS"},
            {"name": "admin", "port": 9000, "protocol": "HTTP"},
        ]),
    );
    route(
        &mut objects,
        "foreign",
        "2024-01-01T00:00:00Z",
        json!({"parentRefs": [{"name": "foreign"}], "rules": [{"backendRefs": [backend("web-v1", json!(1))]}]}),
    );
    route(
        &mut objects,
        "section",
        "2024-01-01T00:00:00Z",
        json!({"parentRefs": [{"name": "mixed", "sectionName": "admin"}],
               "rules": [{"backendRefs": [backend("web-v1", json!(1))]}]}),
    );
    let compiled = compile(&objects);
    assert!(
        !compiled
            .gateways
            .contains_key(&ObjectKey::new("shop", "foreign"))
    );
    assert!(
        !compiled
            .http_routes
            .contains_key(&ObjectKey::new("shop", "foreign"))
    );
    let mixed = &compiled.gateways[&ObjectKey::new("shop", "mixed")];
    assert!(mixed.accepted.status);
    assert_eq!(mixed.accepted.reason, LISTENERS_NOT_VALID);
    let reasons: Vec<&str> = mixed.listeners.iter().map(|l| l.accepted.reason).collect();
    assert_eq!(reasons, [ACCEPTED, UNSUPPORTED_PROTOCOL, PORT_UNAVAILABLE]);
    // A protocol weir does not serve supports no route kind.
    let kinds: Vec<usize> = mixed
        .listeners
        .iter()
        .map(|l| l.supported_kinds.len())
        .collect();
    assert_eq!(kinds, [1, 0, 1]);
    assert_eq!(
        mixed.listeners[2].accepted.message,
        "listener `admin`: weir has no listener on port 9000 (its ports: 8080)"
    );
    let verdict = parent_verdict(&compiled, "section");
    assert_eq!(
        (verdict.accepted.status, verdict.accepted.reason),
        (false, NO_MATCHING_PARENT)
    );
    assert_eq!(
        verdict.accepted.message,
        "the route attaches only to listeners of the Gateway `shop/mixed` that weir does not \
         serve: listener `admin`: weir has no listener on port 9000 (its ports: 8080)"
    );
    // Attached all the same: counted on the listener it names, served or
    // not (the Gateway API counts attachment by parentRefs and
    // allowedRoutes alone).
    let attached: Vec<i32> = mixed.listeners.iter().map(|l| l.attached_routes).collect();
    assert_eq!(attached, [0, 0, 1]);
    assert!(compiled.routes.is_empty());
}

/// The listener `http` of the Gateway `name` (port 8080, routes from all
/// namespaces) with `allowedRoutes.kinds` set to `kinds`.
fn gateway_with_kinds(objects: &mut ClusterObjects, name: &str, kinds: Value) {
    gateway(
        objects,
        name,
        "weir",
        json!([{"name": "http", "port": 8080, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": kinds}}]),
    );
}

fn http_route_kind() -> Vec<RouteGroupKind> {
    vec![RouteGroupKind {
        group: GROUP.to_owned(),
        kind: HTTP_ROUTE.to_owned(),
    }]
}

#[test]
fn allowed_route_kinds_set_supported_kinds_resolved_refs_and_attachment() {
    let mut objects = cluster();
    gateway_with_kinds(
        &mut objects,
        "only-invalid",
        json!([{"kind": "InvalidRoute"}]),
    );
    gateway_with_kinds(
        &mut objects,
        "supported-and-invalid",
        json!([{"kind": "InvalidRoute"}, {"kind": "HTTPRoute"}]),
    );
    gateway_with_kinds(
        &mut objects,
        "listed",
        json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]),
    );
    gateway_with_kinds(
        &mut objects,
        "other-groups",
        json!([{"group": "example.com", "kind": "HTTPRoute"}, {"group": "", "kind": "HTTPRoute"},
               {"group": 7, "kind": "HTTPRoute"}]),
    );
    for (name, parent) in [
        ("to-only-invalid", "only-invalid"),
        ("to-supported-and-invalid", "supported-and-invalid"),
        ("to-listed", "listed"),
        ("to-other-groups", "other-groups"),
    ] {
        route(
            &mut objects,
            name,
            "2024-01-01T00:00:00Z",
            json!({"parentRefs": [{"name": parent, "sectionName": "http"}],
                   "hostnames": [format!("{name}.example.com")],
                   "rules": [{"backendRefs": [backend("web-v1", json!(1))]}]}),
        );
    }
    let compiled = compile(&objects);
    let listener = |gateway: &str| -> ListenerVerdict {
        compiled.gateways[&ObjectKey::new("shop", gateway)].listeners[0].clone()
    };

    // No `kinds`: HTTPRoutes, resolved.
    let public = listener("public");
    assert_eq!(public.supported_kinds, http_route_kind());
    assert_eq!(
        (public.resolved_refs.status, public.resolved_refs.reason),
        (true, RESOLVED_REFS)
    );

    // Only a kind weir does not support: nothing supported, nothing attached.
    let only = listener("only-invalid");
    assert!(only.supported_kinds.is_empty());
    assert_eq!(
        (only.resolved_refs.status, only.resolved_refs.reason),
        (false, INVALID_ROUTE_KINDS)
    );
    assert_eq!(
        only.resolved_refs.message,
        "listener `http`: allowedRoutes.kinds lists `gateway.networking.k8s.io/InvalidRoute` that weir does not support (weir supports gateway.networking.k8s.io/HTTPRoute); no route attaches to this listener"
    );
    assert_eq!(only.attached_routes, 0);
    let refused = parent_verdict(&compiled, "to-only-invalid");
    assert_eq!(
        (refused.accepted.status, refused.accepted.reason),
        (false, NOT_ALLOWED_BY_LISTENERS)
    );
    assert!(refused.accepted.message.contains("do not admit HTTPRoutes"));

    // HTTPRoute and a kind weir does not support: HTTPRoutes attach, the
    // other kind is named.
    let mixed = listener("supported-and-invalid");
    assert_eq!(mixed.supported_kinds, http_route_kind());
    assert_eq!(
        (mixed.resolved_refs.status, mixed.resolved_refs.reason),
        (false, INVALID_ROUTE_KINDS)
    );
    assert!(mixed.resolved_refs.message.contains("HTTPRoutes attach"));
    assert_eq!(mixed.attached_routes, 1);
    assert!(
        parent_verdict(&compiled, "to-supported-and-invalid")
            .accepted
            .status
    );

    // HTTPRoute named with its group: resolved.
    let listed = listener("listed");
    assert_eq!(listed.supported_kinds, http_route_kind());
    assert!(listed.resolved_refs.status);
    assert_eq!(listed.attached_routes, 1);

    // HTTPRoute of another group (or the core group), and an entry weir
    // cannot read, are not weir's HTTPRoute.
    let other = listener("other-groups");
    assert!(other.supported_kinds.is_empty());
    assert_eq!(other.resolved_refs.reason, INVALID_ROUTE_KINDS);
    assert!(
        other.resolved_refs.message.contains(
            r#"`example.com/HTTPRoute`, `core/HTTPRoute`, `{"group":7,"kind":"HTTPRoute"}`"#
        ),
        "{}",
        other.resolved_refs.message
    );
    assert_eq!(other.attached_routes, 0);
    assert_eq!(
        parent_verdict(&compiled, "to-other-groups").accepted.reason,
        NOT_ALLOWED_BY_LISTENERS
    );

    // The listeners themselves stay accepted; only the admitted routes are
    // served.
    assert!(only.accepted.status && mixed.accepted.status && other.accepted.status);
    let served: BTreeSet<&str> = compiled.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(
        served,
        BTreeSet::from(["shop/to-listed", "shop/to-supported-and-invalid"])
    );
}

#[test]
fn a_route_attaches_only_to_the_listeners_that_admit_httproutes() {
    let mut objects = cluster();
    gateway(
        &mut objects,
        "split",
        "weir",
        json!([
            {"name": "grpc", "port": 8080, "protocol": "HTTP", "hostname": "grpc.example.com",
             "allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}},
            {"name": "web", "port": 8080, "protocol": "HTTP", "hostname": "web.example.com"},
        ]),
    );
    route(
        &mut objects,
        "everywhere",
        "2024-01-01T00:00:00Z",
        json!({"parentRefs": [{"name": "split"}],
               "rules": [{"backendRefs": [backend("web-v1", json!(1))]}]}),
    );
    let compiled = compile(&objects);
    let split = &compiled.gateways[&ObjectKey::new("shop", "split")];
    let attached: Vec<(&str, i32)> = split
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.attached_routes))
        .collect();
    assert_eq!(attached, [("grpc", 0), ("web", 1)]);
    assert!(parent_verdict(&compiled, "everywhere").accepted.status);
    let hosts: Vec<&[HostMatch]> = compiled.routes.iter().map(|r| &r.hosts[..]).collect();
    assert_eq!(
        hosts,
        [&[HostMatch::Exact("web.example.com".to_owned())][..]]
    );
}

#[test]
fn gateway_api_durations() {
    let cases = [
        ("10s", Some(Duration::from_secs(10))),
        ("500ms", Some(Duration::from_millis(500))),
        ("1h30m", Some(Duration::from_secs(5400))),
        ("0s", Some(Duration::ZERO)),
        ("1h1m1s1ms", Some(Duration::from_millis(3_661_001))),
        ("1h1m1s1ms1ms", None),
        ("10", None),
        ("1.5s", None),
        ("", None),
        ("123456s", None),
        ("87600h", Some(weir_config::duration::MAX_DURATION)),
        (
            "99999h99999h99999h99999h",
            Some(weir_config::duration::MAX_DURATION),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), want, "{text}");
    }
}
