use serde_json::{Value, json};

use super::*;

fn crd() -> Value {
    canary_route_crd()
}

fn version_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

/// Checks `node` the way the API server checks a structural schema, for the
/// subset weir's schema uses, and collects what breaks the rules: a node
/// without a type (unless int-or-string or preserve-unknown-fields), a
/// `$ref`, a `oneOf`/`anyOf` that is not the int-or-string form, and
/// `additionalProperties` beside `properties`.
fn structural_problems(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: not an object"));
        return;
    };
    if object.contains_key("$ref") {
        problems.push(format!("{path}: $ref"));
    }
    let int_or_string = object.get("x-kubernetes-int-or-string") == Some(&json!(true));
    let preserve = object.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if object.contains_key("oneOf") || object.contains_key("allOf") {
        problems.push(format!("{path}: oneOf/allOf"));
    }
    if object.contains_key("anyOf") && !int_or_string {
        problems.push(format!("{path}: anyOf without x-kubernetes-int-or-string"));
    }
    if !object.contains_key("type") && !int_or_string && !preserve {
        problems.push(format!("{path}: no type"));
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        problems.push(format!("{path}: properties and additionalProperties"));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = object.get("items") {
        structural_problems(items, &format!("{path}[]"), problems);
    }
}

/// Validates `value` against a structural `schema` as the API server would
/// for the keywords weir's schema uses (types, properties, items, nullable,
/// int-or-string, preserve-unknown-fields); returns the first problem.
fn validate(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    if value.is_null() && schema["nullable"] == json!(true) {
        return Ok(());
    }
    if schema["x-kubernetes-int-or-string"] == json!(true) {
        return if value.is_i64() || value.is_u64() || value.is_string() {
            Ok(())
        } else {
            Err(format!("{path}: must be an integer or a string"))
        };
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(object) = value.as_object() else {
                return Err(format!("{path}: must be an object"));
            };
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
            for (key, child) in object {
                match schema["properties"].get(key) {
                    Some(child_schema) => validate(child, child_schema, &format!("{path}.{key}"))?,
                    None if preserve => {}
                    None => return Err(format!("{path}.{key}: unknown field")),
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !object.contains_key(key) {
                    return Err(format!("{path}.{key}: required"));
                }
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return Err(format!("{path}: must be an array"));
            };
            for (i, item) in items.iter().enumerate() {
                validate(item, &schema["items"], &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Some("string") if value.is_string() => Ok(()),
        Some("integer") if value.is_i64() || value.is_u64() => Ok(()),
        Some("number") if value.is_number() => Ok(()),
        Some("boolean") if value.is_boolean() => Ok(()),
        None if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) => Ok(()),
        other => Err(format!("{path}: must be of type {other:?}")),
    }
}

#[test]
fn the_crd_names_the_resource_as_spec_section_10_says() {
    let crd = crd();
    assert_eq!(crd["metadata"]["name"], "canaryroutes.weir.dev");
    assert_eq!(crd["spec"]["group"], "weir.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "CanaryRoute");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["cnr"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("print columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Phase", "Weight", "Step", "Age"]);
}

#[test]
fn the_schema_is_structural() {
    let crd = crd();
    let root = version_schema(&crd);
    assert!(root.get("oneOf").is_none() && root.get("anyOf").is_none());
    let mut problems = Vec::new();
    structural_problems(&root["properties"]["spec"], "spec", &mut problems);
    structural_problems(&root["properties"]["status"], "status", &mut problems);
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn the_spec_has_the_keys_of_a_weir_yaml_route_but_name() {
    let route = serde_json::to_value(schemars::schema_for!(weir_config::schema::RouteSpec))
        .expect("schema");
    let mut route_keys: Vec<&str> = route["properties"]
        .as_object()
        .expect("route properties")
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "name")
        .collect();
    route_keys.sort_unstable();
    let crd = crd();
    let mut spec_keys: Vec<&str> = version_schema(&crd)["properties"]["spec"]["properties"]
        .as_object()
        .expect("spec properties")
        .keys()
        .map(String::as_str)
        .collect();
    spec_keys.sort_unstable();
    assert_eq!(spec_keys, route_keys);
}

#[test]
fn argo_rollouts_steps_lists_are_accepted_by_the_schema_and_parse() {
    // The steps of Argo Rollouts' documentation that weir runs (the
    // getting-started rollout, the canary feature page and its duration units).
    let steps = json!([
        {"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {"duration": 10}},
        {"setWeight": 60}, {"pause": {"duration": 10}}, {"setWeight": 80},
        {"pause": {"duration": 10}}, {"setWeight": 10}, {"pause": {"duration": "1h"}},
        {"setWeight": 20}, {"pause": {}}, {"pause": {"duration": "10s"}},
        {"pause": {"duration": "10m"}}, {"pause": {"duration": "10h"}},
        {"setWeight": 33.3333},
        // Kinds weir refuses by name in validation must still get through the
        // schema, so that the refusal names them.
        {"setCanaryScale": {"replicas": 3}}, {"analysis": {"templates": [{"templateName": "x"}]}}
    ]);
    let spec = json!({
        "stable": {"revision": "blue", "service": {"name": "demo-v1", "port": 80}},
        "canary": {"revision": "yellow", "service": {"name": "demo-v2", "port": "http"}},
        "strategy": {"steps": steps, "analysis": {"interval": "1s", "maxErrorRate": 0.05}},
    });
    let crd = crd();
    let schema = &version_schema(&crd)["properties"]["spec"];
    assert_eq!(validate(&spec, schema, "spec"), Ok(()));
    let parsed: CanaryRouteFields = serde_json::from_value(spec).expect("the spec parses");
    let strategy = parsed.strategy.expect("strategy");
    assert_eq!(strategy.steps.len(), 18);
    assert_eq!(strategy.steps[15].set_weight, Some(33.3333));
}

#[test]
fn the_schema_refuses_unknown_and_mistyped_fields() {
    let crd = crd();
    let schema = &version_schema(&crd)["properties"]["spec"];
    let base = json!({"stable": {"revision": "v1", "endpoints": ["10.0.0.1:80"]}});
    assert_eq!(validate(&base, schema, "spec"), Ok(()));
    let mut unknown = base.clone();
    unknown["stabel"] = json!({});
    assert_eq!(
        validate(&unknown, schema, "spec"),
        Err("spec.stabel: unknown field".to_owned())
    );
    let mistyped = json!({"stable": {"revision": "v1", "endpoints": "10.0.0.1:80"}});
    assert_eq!(
        validate(&mistyped, schema, "spec"),
        Err("spec.stable.endpoints: must be an array".to_owned())
    );
    let no_stable = json!({"hosts": ["a.example"]});
    assert_eq!(
        validate(&no_stable, schema, "spec"),
        Err("spec.stable: required".to_owned())
    );
}

#[test]
fn status_round_trips_and_reads_what_it_does_not_know() {
    let status = CanaryRouteStatus {
        phase: Some("Paused".to_owned()),
        step_index: Some(1),
        canary_weight: Some(5.0),
        seq: Some(3),
        abort: Some(true),
        conditions: vec![StatusCondition {
            type_: "Ready".to_owned(),
            status: "True".to_owned(),
            ..StatusCondition::default()
        }],
        ..CanaryRouteStatus::default()
    };
    let value = serde_json::to_value(&status).expect("serializes");
    assert_eq!(value["conditions"][0]["type"], "Ready");
    assert!(value.get("promote").is_none(), "unset inputs are left out");
    let back: CanaryRouteStatus = serde_json::from_value(value).expect("parses");
    assert_eq!(back, status);
    let with_extra: CanaryRouteStatus =
        serde_json::from_value(json!({"phase": "Healthy", "fromANewerWeir": 1}))
            .expect("unknown status fields are ignored");
    assert_eq!(with_extra.phase.as_deref(), Some("Healthy"));
}

/// A status field of a wrong type (past an older CRD's schema, or from
/// another weir version) is left out and named; the other fields are
/// read, and a list holding such an object reads whole: kube fails the
/// whole list, and every watch event after it, on one object it cannot
/// decode.
#[test]
fn a_status_field_of_a_wrong_type_is_left_out_and_named() {
    let read = StatusRead::from_json(json!({
        "phase": "Paused",
        "canaryWeight": "fifty",
        "seq": 3,
        "promote": 7,
    }));
    assert_eq!(read.phase.as_deref(), Some("Paused"));
    assert_eq!(read.seq, Some(3));
    assert_eq!(read.canary_weight, None);
    let named: Vec<&str> = read.unreadable.iter().map(|u| u.field.as_str()).collect();
    assert_eq!(named, ["canaryWeight", "promote"]);
    assert_eq!(read.unreadable[1].written, json!(7), "kept as written");
    assert!(
        read.unreadable[0]
            .problem
            .contains("invalid type: string \"fifty\""),
        "{:?}",
        read.unreadable
    );
    assert_eq!(
        StatusRead::from_json(json!({"phase": "Healthy"})).unreadable,
        Vec::new()
    );
    assert_eq!(StatusRead::from_json(json!("nope")).unreadable.len(), 1);

    let list = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRouteList",
        "metadata": {},
        "items": [
            {
                "apiVersion": "weir.dev/v1alpha1", "kind": "CanaryRoute",
                "metadata": {"name": "bad", "namespace": "shop"},
                "spec": {"stable": {"revision": "v1"}},
                "status": {"canaryWeight": "fifty"},
            },
            {
                "apiVersion": "weir.dev/v1alpha1", "kind": "CanaryRoute",
                "metadata": {"name": "good", "namespace": "shop"},
                "spec": {"stable": {"revision": "v1"}},
                "status": {"phase": "Healthy"},
            },
        ],
    });
    let list: kube::core::ObjectList<CanaryRoute> =
        serde_json::from_value(list).expect("the list reads");
    assert_eq!(list.items.len(), 2);
    assert_eq!(
        list.items[1]
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref()),
        Some("Healthy")
    );
}

#[test]
fn crd_yaml_is_the_two_crds() {
    use serde::Deserialize as _;
    let yaml = crd_yaml().expect("renders");
    let parsed: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|document| Value::deserialize(document).expect("YAML"))
        .collect();
    assert_eq!(parsed, [crd(), analysis_template_crd()]);
}

/// Every 32-bit integer the API server would otherwise store unbounded.
fn narrow_integers<'v>(node: &'v Value, path: &str, found: &mut Vec<(String, &'v Value)>) {
    match node {
        Value::Object(map) => {
            if map.get("format") == Some(&json!("uint32")) {
                found.push((path.to_owned(), node));
            }
            for (key, value) in map {
                narrow_integers(value, &format!("{path}.{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                narrow_integers(item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_32_bit_integer_of_the_crd_is_bounded_for_the_api_server() {
    let crd = crd();
    let mut found = Vec::new();
    narrow_integers(version_schema(&crd), "", &mut found);
    let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("analysis.properties.failureLimit")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("status.properties.failures")),
        "{paths:?}"
    );
    for (path, node) in &found {
        assert_eq!(node["maximum"].as_f64(), Some(4_294_967_295.0), "{path}");
        assert_eq!(node["minimum"].as_f64(), Some(0.0), "{path}");
    }
}

#[test]
fn the_analysis_template_schema_is_structural_and_has_the_keys_of_a_template_but_name() {
    let crd = analysis_template_crd();
    assert_eq!(crd["metadata"]["name"], "analysistemplates.weir.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let root = version_schema(&crd);
    let spec = &root["properties"]["spec"];
    let mut problems = Vec::new();
    structural_problems(spec, "spec", &mut problems);
    assert_eq!(problems, Vec::<String>::new());
    let keys: Vec<&str> = spec["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["args", "dryRun", "metrics"]);
    // Unknown keys reach weir, which names them, instead of being pruned.
    assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], json!(true));
    let metric = &spec["properties"]["metrics"]["items"]["properties"];
    for key in ["successCondition", "interval", "provider", "dryRun"] {
        assert!(metric.get(key).is_some(), "metrics[] has {key}");
    }
}

#[test]
fn an_analysis_template_is_read_whatever_its_fields_hold() {
    // One wrong template must not stop the list of every template: any
    // JSON under `spec` is read, and validation names what is wrong.
    let object = json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "errors", "namespace": "shop"},
        "spec": {"metrics": "not a list", "measurementRetention": [{"metricName": "x", "limit": 5}]}
    });
    let template: AnalysisTemplate = serde_json::from_value(object).expect("read");
    let problems = weir_config::validate_analysis_template("errors", &template.spec.as_json())
        .expect_err("refused");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"spec.measurementRetention"), "{problems:?}");
}

#[test]
fn the_crd_in_deploy_is_what_weir_crd_prints() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/crd.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/kubernetes/crd.yaml");
    let body = text
        .strip_prefix("# generated by: weir crd > deploy/kubernetes/crd.yaml\n")
        .expect("the file says how it is made");
    assert_eq!(
        body,
        crd_yaml().expect("renders"),
        "regenerate it: weir crd > deploy/kubernetes/crd.yaml (keeping the first line)"
    );
}

#[test]
fn values_the_schema_lets_through_but_weir_refuses_are_read_and_refused_by_field() {
    // The API server checks types, not ranges: a CanaryRoute with a port
    // out of range or a negative duration must still be read (one bad
    // object must not stop the list of every CanaryRoute) and be refused
    // by validation at its field.
    let refused_at = |stable_port: i64, pause: i64| {
        let object = json!({
            "apiVersion": "weir.dev/v1alpha1",
            "kind": "CanaryRoute",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {
                "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": stable_port}},
                "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
                "strategy": {"steps": [{"setWeight": 5}, {"pause": {"duration": pause}}]},
            },
        });
        let route: CanaryRoute = serde_json::from_value(object).expect("the object is read");
        let spec = serde_json::to_value(&route.spec).expect("serializes");
        let problems =
            weir_config::validate_canary_route("shop", "checkout", &spec).expect_err("refused");
        problems.into_iter().map(|p| p.path).collect::<Vec<_>>()
    };
    assert_eq!(refused_at(70_000, 5), ["spec.stable.service.port"]);
    assert_eq!(
        refused_at(80, -5),
        ["spec.strategy.steps[1].pause.duration"]
    );
}
