//! A CanaryRoute's spec: a valid one, each kind of problem at its path,
//! and the same message as `weir.yaml` for the same wrong value.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::model::{EndpointAddr, PortRef, Step};
use crate::{HostMatch, Weight};

fn problems(spec: Value) -> Vec<(String, String)> {
    match validate_canary_route("shop", "checkout", &spec) {
        Ok(valid) => panic!("expected problems, got {valid:?}\nfor {spec}"),
        Err(problems) => problems.into_iter().map(|p| (p.path, p.message)).collect(),
    }
}

/// The one problem of `spec`, at `path`, whose message contains `needle`.
#[track_caller]
fn assert_single(spec: Value, path: &str, needle: &str) {
    let found = problems(spec.clone());
    let [(at, message)] = found.as_slice() else {
        panic!("expected one problem at {path}, got {found:#?}\nfor {spec}");
    };
    assert_eq!(at, path, "for {spec}");
    assert!(
        message.contains(needle),
        "{path}: expected ...{needle}..., got {message}"
    );
}

fn stable_service() -> Value {
    json!({"revision": "v1", "service": {"name": "checkout-v1", "port": 80}})
}

#[test]
fn a_valid_spec_gives_the_route_and_its_services() {
    let spec = json!({
        "hosts": ["shop.example.com"],
        "pathPrefix": "/cart",
        "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": "http"}},
        "canary": {
            "revision": "v2",
            "service": {"name": "checkout-v2", "port": 8080},
            "endpoints": ["10.0.0.9:8080"]
        },
        "strategy": {"steps": [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"pause": {}}]}
    });
    let valid = validate_canary_route("shop", "checkout", &spec).expect("the spec is valid");
    assert_eq!(&*valid.route.name, "shop/checkout");
    assert_eq!(
        valid.route.hosts,
        [HostMatch::Exact("shop.example.com".to_owned())]
    );
    assert_eq!(valid.route.path_prefix, "/cart");
    assert!(valid.route.stable.endpoints.is_empty());
    let canary = valid.route.canary.as_ref().expect("a canary");
    assert_eq!(
        canary.endpoints,
        [EndpointAddr {
            host: "10.0.0.9".to_owned(),
            port: 8080
        }]
    );
    assert_eq!(
        valid.stable_service,
        Some(ServiceRef {
            name: "checkout-v1".to_owned(),
            port: PortRef::Name("http".to_owned()),
        })
    );
    assert_eq!(
        valid.canary_service,
        Some(ServiceRef {
            name: "checkout-v2".to_owned(),
            port: PortRef::Number(8080),
        })
    );
    let steps = &valid.route.strategy.as_ref().expect("a strategy").steps;
    assert_eq!(
        steps,
        &[
            Step::SetWeight(Weight::from_percent_int(10)),
            Step::Pause(Some(std::time::Duration::from_secs(30))),
            Step::Pause(None),
        ]
    );
}

#[test]
fn endpoints_alone_are_enough() {
    let spec = json!({"stable": {"revision": "v1", "endpoints": ["[fd00::1]:80"]}});
    let valid = validate_canary_route("shop", "checkout", &spec).expect("the spec is valid");
    assert_eq!(valid.stable_service, None);
    assert_eq!(valid.route.stable.endpoints[0].host, "fd00::1");
}

#[test]
fn each_kind_of_problem_names_its_field() {
    let with_steps = |steps: Value| {
        json!({
            "stable": stable_service(),
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": steps}
        })
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"stable": {"revision": "v1"}}),
            "spec.stable",
            "no `service` and no `endpoints`; name a Service",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "Checkout", "port": 80}}}),
            "spec.stable.service.name",
            "`Checkout` cannot name a Service: it contains `C`",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "checkout", "port": 0}}}),
            "spec.stable.service.port",
            "port 0 is not a Service port",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "checkout", "port": 70000}}}),
            "spec.stable.service.port",
            "invalid value: integer `70000`, expected a port number from 1 to 65535",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "checkout", "port": "web-frontend-http"}}}),
            "spec.stable.service.port",
            "port name `web-frontend-http` has 17 characters",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "checkout", "port": "8080"}}}),
            "spec.stable.service.port",
            "port name `8080` has no letter",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "checkout", "port": true}}}),
            "spec.stable.service.port",
            "invalid type: boolean `true`, expected a port number or a port name",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "checkout"}}}),
            "spec.stable.service",
            "missing field `port`",
        ),
        (json!({"hosts": []}), "spec", "missing field `stable`"),
        (
            json!({"stable": {"revision": "v1", "endpoints": ["localhost"]}}),
            "spec.stable.endpoints[0]",
            "`localhost` has no port",
        ),
        (
            json!({"stable": stable_service(), "hosts": ["*"]}),
            "spec.hosts[0]",
            "`*` alone is not a host pattern",
        ),
        (
            json!({"stable": stable_service(), "pathPrefix": "cart"}),
            "spec.pathPrefix",
            "must start with `/`",
        ),
        (
            json!({"stable": stable_service(), "canary": {"revision": "v2", "endpoints": ["a:1"], "weight": "ten"}}),
            "spec.canary.weight",
            "invalid type: string \"ten\", expected a number",
        ),
        (
            with_steps(json!([{"setWeight": 10}, {"pause": {"duration": "0s"}}])),
            "spec.strategy.steps[1].pause.duration",
            "`duration` is 0",
        ),
        (
            with_steps(json!([{"setWeight": 150}])),
            "spec.strategy.steps[0].setWeight",
            "write a percentage from 0 to 100",
        ),
        (
            with_steps(json!([{"experiment": {"duration": "1h"}}])),
            "spec.strategy.steps[0].experiment",
            "step kind `experiment` is not supported by weir",
        ),
        (
            with_steps(json!([])),
            "spec.strategy.steps",
            "no steps; list at least one",
        ),
        (
            json!("checkout"),
            "spec",
            "invalid type: string \"checkout\", expected a mapping",
        ),
    ];
    for (spec, path, needle) in cases {
        assert_single(spec, path, needle);
    }
}

#[test]
fn unknown_fields_inside_spec_are_named() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"name": "checkout", "stable": stable_service()}),
            "spec.name",
            "unknown field `name`, expected one of `hosts`, `pathPrefix`, `stable`, `canary`",
        ),
        (
            json!({"stable": {"revision": "v1", "endpoint": ["a:1"]}}),
            "spec.stable.endpoint",
            "unknown field `endpoint`, expected one of `revision`, `endpoints`, `service`, `protocol`, `tls`; did you mean `endpoints`?",
        ),
        (
            json!({"stable": {"revision": "v1", "service": {"name": "a", "port": 80, "namespace": "b"}}}),
            "spec.stable.service.namespace",
            "unknown field `namespace`, expected `name` or `port`",
        ),
        (
            json!({"stable": stable_service(), "canary": {"revision": "v2", "endpoints": ["a:1"]},
                   "strategy": {"steps": [{"setWieght": 5}]}}),
            "spec.strategy.steps[0].setWieght",
            "unknown field `setWieght`",
        ),
    ];
    for (spec, path, needle) in cases {
        assert_single(spec, path, needle);
    }
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let spec = json!({
        "pathPrefix": "cart",
        "stable": {"revision": "v1"},
        "canary": {"revision": "v2", "endpoints": ["a:1"]},
        "strategy": {"steps": [{"setWeight": 101}]}
    });
    let paths: Vec<String> = problems(spec).into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        paths,
        [
            "spec.pathPrefix",
            "spec.stable",
            "spec.strategy.steps[0].setWeight"
        ]
    );
}

#[test]
fn a_wrong_value_gets_the_same_message_as_in_weir_yaml() {
    // (the route's keys as YAML, the same as JSON, the path below the route)
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "strategy: { steps: [ { setWeight: 5 }, { pause: { duration: 0s } } ] }",
            json!({"strategy": {"steps": [{"setWeight": 5}, {"pause": {"duration": "0s"}}]}}),
            "strategy.steps[1].pause.duration",
        ),
        (
            "strategy: { steps: [ { setWeight: 100.5 } ] }",
            json!({"strategy": {"steps": [{"setWeight": 100.5}]}}),
            "strategy.steps[0].setWeight",
        ),
        (
            "strategy: { steps: [ { setCanaryScale: { replicas: 1 } } ] }",
            json!({"strategy": {"steps": [{"setCanaryScale": {"replicas": 1}}]}}),
            "strategy.steps[0].setCanaryScale",
        ),
        (
            "strategy: { steps: [ { setWeight: 5 } ], analysis: { maxErrorRate: 5 } }",
            json!({"strategy": {"steps": [{"setWeight": 5}], "analysis": {"maxErrorRate": 5}}}),
            "strategy.analysis.maxErrorRate",
        ),
        (
            "strategy: { steps: [ { setWeight: 5, pause: {} } ] }",
            json!({"strategy": {"steps": [{"setWeight": 5, "pause": {}}]}}),
            "strategy.steps[0]",
        ),
        (
            "strategy: { steps: [ { setWeigth: 5 } ] }",
            json!({"strategy": {"steps": [{"setWeigth": 5}]}}),
            "strategy.steps[0].setWeigth",
        ),
        (
            "hosts: ['shop.example.com:443']",
            json!({"hosts": ["shop.example.com:443"]}),
            "hosts[0]",
        ),
        (
            "stickiness: { cookie: 'a b' }",
            json!({"stickiness": {"cookie": "a b"}}),
            "stickiness.cookie",
        ),
        (
            "canaryByHeader: { name: x-canary, value: never }",
            json!({"canaryByHeader": {"name": "x-canary", "value": "never"}}),
            "canaryByHeader.value",
        ),
        (
            "timeouts: { connect: soon }",
            json!({"timeouts": {"connect": "soon"}}),
            "timeouts.connect",
        ),
        (
            "upgrades: [h2c]",
            json!({"upgrades": ["h2c"]}),
            "upgrades[0]",
        ),
    ];
    for (yaml, extra, below) in cases {
        let text = format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n  - name: checkout\n    stable: {{ revision: v1, endpoints: [10.0.0.1:80] }}\n    canary: {{ revision: v2, endpoints: [10.0.0.2:80] }}\n    {yaml}\n"
        );
        let file = match crate::parse(&text, "weir.yaml", Path::new("/"), &|_| None) {
            Ok(doc) => panic!("expected an error for {yaml}, got {:?}", doc.config),
            Err(diagnostics) => diagnostics.0,
        };
        let mut spec = json!({
            "stable": {"revision": "v1", "endpoints": ["10.0.0.1:80"]},
            "canary": {"revision": "v2", "endpoints": ["10.0.0.2:80"]},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let cluster = problems(spec);
        let file: Vec<(String, String)> = file
            .into_iter()
            .map(|d| (d.path.replacen("routes[0]", "spec", 1), d.message))
            .collect();
        assert_eq!(cluster, file, "for {yaml}");
        assert_eq!(cluster.len(), 1, "for {yaml}");
        assert_eq!(cluster[0].0, format!("spec.{below}"));
    }
}

#[test]
fn a_service_in_weir_yaml_is_still_refused() {
    let text = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\nroutes:\n  - name: checkout\n    stable: { revision: v1, endpoints: [10.0.0.1:80], service: { name: checkout, port: http } }\n";
    let Err(diagnostics) = crate::parse(text, "weir.yaml", Path::new("/"), &|_| None) else {
        panic!("a Service in weir.yaml is refused");
    };
    let paths: Vec<&str> = diagnostics.0.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["routes[0].stable.service"]);
}

fn analysis_route() -> Value {
    json!({
        "stable": stable_service(),
        "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
        "strategy": {"steps": [
            {"setWeight": 10},
            {"analysis": {"templates": [{"templateName": "smoke"}], "args": [{"name": "path", "value": "/ok"}]}}
        ]}
    })
}

fn smoke_template() -> Value {
    json!({
        "args": [{"name": "path"}],
        "metrics": [{
            "name": "smoke",
            "successCondition": "result.ok == true",
            "provider": {"web": {"url": "http://127.0.0.1:8000{{args.path}}", "jsonPath": "{$}"}}
        }]
    })
}

fn analysis_step(valid: &ClusterRouteSpec) -> &crate::AnalysisRef {
    let steps = &valid.route.strategy.as_ref().expect("a strategy").steps;
    match &steps[1] {
        Step::Analysis(analysis) => analysis,
        other => panic!("expected an analysis step, got {other:?}"),
    }
}

#[test]
fn an_analysis_step_resolves_an_analysis_template_of_the_namespace() {
    let mut templates = NamespaceTemplates::new("shop");
    templates
        .insert("smoke", &smoke_template())
        .expect("a valid template");
    let valid = validate_canary_route_in("shop", "checkout", &analysis_route(), &templates)
        .expect("a valid spec");
    assert!(valid.waiting.is_empty(), "{:?}", valid.waiting);
    let analysis = analysis_step(&valid);
    assert_eq!(analysis.waiting_for, None);
    assert_eq!(analysis.metrics.len(), 1);
    match &analysis.metrics[0].provider {
        crate::Provider::Web(web) => assert_eq!(web.url, "http://127.0.0.1:8000/ok"),
        other => panic!("expected the web provider, got {other:?}"),
    }
}

#[test]
fn a_missing_analysis_template_leaves_the_route_served_and_its_step_waiting() {
    let valid = validate_canary_route_in(
        "shop",
        "checkout",
        &analysis_route(),
        &NamespaceTemplates::new("shop"),
    )
    .expect("the route is still valid");
    let [waiting] = valid.waiting.as_slice() else {
        panic!("expected one waiting reference, got {:?}", valid.waiting);
    };
    assert_eq!(
        waiting.path,
        "spec.strategy.steps[1].analysis.templates[0].templateName"
    );
    assert!(
        waiting
            .message
            .contains("there is no AnalysisTemplate `smoke` in namespace `shop`"),
        "{}",
        waiting.message
    );
    let analysis = analysis_step(&valid);
    assert!(analysis.metrics.is_empty());
    let why = analysis.waiting_for.as_deref().expect("a waiting step");
    assert!(why.contains("no AnalysisTemplate `smoke`"), "{why}");
}

#[test]
fn an_invalid_analysis_template_is_reported_at_its_field_and_by_the_routes_using_it() {
    let mut bad = smoke_template();
    bad["metrics"][0]["successCondition"] = json!("result.ok ==");
    let mut templates = NamespaceTemplates::new("shop");
    let problems = templates
        .insert("smoke", &bad)
        .expect_err("the condition does not parse");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "spec.metrics[0].successCondition");
    assert!(
        problems[0].message.contains("does not parse"),
        "{}",
        problems[0].message
    );
    let valid = validate_canary_route_in("shop", "checkout", &analysis_route(), &templates)
        .expect("the route is still valid");
    let [waiting] = valid.waiting.as_slice() else {
        panic!("expected one waiting reference, got {:?}", valid.waiting);
    };
    assert!(
        waiting
            .message
            .contains("AnalysisTemplate `shop/smoke` is invalid: spec.metrics[0].successCondition"),
        "{}",
        waiting.message
    );
}

#[test]
fn an_analysis_template_spec_is_checked_for_unknown_keys_and_a_name_key() {
    let mut with_name = smoke_template();
    with_name["name"] = json!("smoke");
    let problems = validate_analysis_template("smoke", &with_name).expect_err("`name` is metadata");
    assert_eq!(problems[0].path, "spec.name", "{problems:?}");
    let mut typo = smoke_template();
    typo["metrics"][0]["sucessCondition"] = json!("true");
    let problems = validate_analysis_template("smoke", &typo).expect_err("a typo");
    assert_eq!(
        problems[0].path, "spec.metrics[0].sucessCondition",
        "{problems:?}"
    );
    assert!(
        problems[0].message.contains("successCondition"),
        "{}",
        problems[0].message
    );
}

/// The `analysisTemplates` of a `weir.yaml` defining `smoke` (the
/// template of [`smoke_template`]).
fn file_templates() -> Vec<AnalysisTemplateSpec> {
    let text = r#"listeners:
  - name: public
    address: 127.0.0.1:8080
analysisTemplates:
  - name: smoke
    args: [{name: path}]
    metrics:
      - name: smoke
        successCondition: result.ok == true
        provider:
          web: {url: "http://127.0.0.1:9000{{args.path}}"}
kubernetes:
"#;
    let document =
        crate::parse(text, "weir.yaml", Path::new("/"), &|_| None).expect("a valid weir.yaml");
    document.config.analysis_templates
}

#[test]
fn a_canary_route_may_name_a_template_of_weir_yaml() {
    let templates = NamespaceTemplates::new("shop").with_file_templates(&file_templates());
    let valid = validate_canary_route_in("shop", "checkout", &analysis_route(), &templates)
        .expect("a valid spec");
    assert!(valid.waiting.is_empty(), "{:?}", valid.waiting);
    match &analysis_step(&valid).metrics[0].provider {
        crate::Provider::Web(web) => assert_eq!(web.url, "http://127.0.0.1:9000/ok"),
        other => panic!("expected the web provider, got {other:?}"),
    }
}

#[test]
fn a_name_in_both_the_namespace_and_weir_yaml_is_refused_where_it_is_used() {
    let mut templates = NamespaceTemplates::new("shop").with_file_templates(&file_templates());
    templates
        .insert("smoke", &smoke_template())
        .expect("valid on its own");
    let valid = validate_canary_route_in("shop", "checkout", &analysis_route(), &templates)
        .expect("the route is still valid");
    let [waiting] = valid.waiting.as_slice() else {
        panic!("expected one waiting reference, got {:?}", valid.waiting);
    };
    assert_eq!(
        waiting.path,
        "spec.strategy.steps[1].analysis.templates[0].templateName"
    );
    assert!(
        waiting.message.contains(
            "both AnalysisTemplate `shop/smoke` and the `analysisTemplates` of weir.yaml define `smoke`"
        ),
        "{}",
        waiting.message
    );
    assert!(analysis_step(&valid).waiting_for.is_some());
}

/// An AnalysisTemplate whose web URL is wholly an argument is valid; each
/// CanaryRoute naming it has the URL checked with its own value.
#[test]
fn an_analysis_template_url_wholly_from_an_argument_is_checked_where_it_is_used() {
    let mut whole = smoke_template();
    whole["metrics"][0]["provider"]["web"]["url"] = json!("{{args.path}}");
    let mut templates = NamespaceTemplates::new("shop");
    templates
        .insert("smoke", &whole)
        .expect("a URL that is wholly an argument waits for its value");
    let route = |value: &str| {
        let mut route = analysis_route();
        route["strategy"]["steps"][1]["analysis"]["args"][0]["value"] = json!(value);
        validate_canary_route_in("shop", "checkout", &route, &templates)
            .expect("the route is valid")
    };
    let valid = route("http://smoke.shop:8000/ok");
    assert!(valid.waiting.is_empty(), "{:?}", valid.waiting);
    match &analysis_step(&valid).metrics[0].provider {
        crate::Provider::Web(web) => assert_eq!(web.url, "http://smoke.shop:8000/ok"),
        other => panic!("expected the web provider, got {other:?}"),
    }
    let valid = route("/ok");
    let [waiting] = valid.waiting.as_slice() else {
        panic!("expected one waiting reference, got {:?}", valid.waiting);
    };
    assert_eq!(
        waiting.path,
        "spec.strategy.steps[1].analysis.args[0].value"
    );
    assert_eq!(
        waiting.message,
        "with these arguments, AnalysisTemplate `shop/smoke` spec.metrics[0].provider.web.url \
         `{{args.path}}` resolves to `/ok`, which is not an http:// or https:// URL with a host, \
         e.g. `http://127.0.0.1:9090`"
    );
}

#[test]
fn an_empty_template_list_is_still_the_routes_own_mistake() {
    let spec = json!({
        "stable": stable_service(),
        "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
        "strategy": {"steps": [{"setWeight": 10}, {"analysis": {"templates": []}}]}
    });
    assert_single(
        spec,
        "spec.strategy.steps[1].analysis.templates",
        "no templates",
    );
}

#[test]
fn a_canary_route_may_speak_h2_to_its_service_but_names_no_ca_file() {
    let spec = json!({
        "stable": {"revision": "v1", "service": {"name": "api", "port": 443}, "protocol": "h2"},
    });
    let valid = validate_canary_route("shop", "api", &spec).expect("a valid spec");
    assert_eq!(valid.route.stable.protocol, crate::UpstreamProtocol::H2);
    assert!(valid.route.stable.tls.is_some());

    assert_single(
        json!({
            "stable": {
                "revision": "v1",
                "service": {"name": "api", "port": 443},
                "tls": {"caFile": "/etc/ca.pem"},
            },
        }),
        "spec.stable.tls.caFile",
        "a CanaryRoute cannot ship",
    );
}
