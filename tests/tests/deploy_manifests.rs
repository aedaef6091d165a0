//! The manifests in `deploy/kubernetes/` say what SPEC section 10 says they
//! do. Every document is read into its `k8s-openapi` type and written back:
//! a field the type does not know (a misspelt key, a key at the wrong depth)
//! is lost on the way and fails the comparison. Then the cross-references a
//! cluster would only report at run time are checked: probes against the
//! admin address in `weir.yaml`, Services against container ports, RBAC
//! against what weir calls, the example CanaryRoute against its Services,
//! and the ConfigMap's `weir.yaml` against the real `weir validate`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use weir_e2e::{weir_command, workspace_root};

/// The files SPEC section 10 and the README's order of application name.
const FILES: [&str; 8] = [
    "namespace.yaml",
    "crd.yaml",
    "rbac.yaml",
    "config.yaml",
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
    "example.yaml",
];

/// weir's own namespace (`POD_NAMESPACE`).
const NAMESPACE: &str = "weir";

/// One YAML document of one file.
#[derive(Debug, Clone)]
struct Doc {
    file: String,
    value: Value,
}

fn manifest_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

/// Every non-empty document of every `*.yaml` file, files in name order.
fn documents() -> Vec<Doc> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir())
        .expect("deploy/kubernetes/ exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("a readable manifest");
        for (i, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{file}: document {i} is not valid YAML: {e}"));
            if !value.is_null() {
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    docs
}

fn kind(doc: &Doc) -> &str {
    doc.value["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Doc) -> &str {
    doc.value["metadata"]["name"].as_str().unwrap_or_default()
}

/// The one document of `kind` named `name`.
fn find(docs: &[Doc], kind_wanted: &str, name_wanted: &str) -> Value {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|d| kind(d) == kind_wanted && name(d) == name_wanted)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind_wanted} {name_wanted:?} in deploy/kubernetes/"
    );
    found[0].value.clone()
}

/// `doc` read as `T` and written back must be `doc` again.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Doc) {
    let typed: T = serde_json::from_value(doc.value.clone()).unwrap_or_else(|e| {
        panic!(
            "{}: {} {:?} does not read as the Kubernetes type: {e}",
            doc.file,
            kind(doc),
            name(doc)
        )
    });
    let back = serde_json::to_value(&typed).expect("a typed object serializes");
    if let Some(path) = first_difference(&doc.value, &back, String::new()) {
        panic!(
            "{}: {} {:?}: `{path}` is not a field of the Kubernetes type (misspelt or misplaced?)\n\
             as written: {}\nas read:    {}",
            doc.file,
            kind(doc),
            name(doc),
            doc.value.pointer(&path).unwrap_or(&Value::Null),
            back.pointer(&path).unwrap_or(&Value::Null),
        );
    }
}

/// The JSON pointer of the first place `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|key| {
                let path = format!("{at}/{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, path),
                    _ => Some(path),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{at}/{i}"))),
        _ => (a != b).then_some(at),
    }
}

/// The `weir.yaml` of the ConfigMap, as text.
fn weir_yaml_text(docs: &[Doc]) -> String {
    find(docs, "ConfigMap", "weir-config")["data"]["weir.yaml"]
        .as_str()
        .expect("the ConfigMap has a weir.yaml key")
        .to_owned()
}

/// The `weir.yaml` of the ConfigMap, parsed.
fn weir_yaml(docs: &[Doc]) -> Value {
    serde_yaml_ng::from_str(&weir_yaml_text(docs)).expect("weir.yaml in the ConfigMap is YAML")
}

/// The port of a `host:port` address.
fn port_of(address: &str) -> i64 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} is not host:port"))
}

/// The weir Deployment's pod template.
fn pod(docs: &[Doc]) -> Value {
    find(docs, "Deployment", "weir")["spec"]["template"].clone()
}

/// The container named `weir`.
fn weir_container(docs: &[Doc]) -> Value {
    let pod = pod(docs);
    pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "weir"))
        .cloned()
        .expect("the Deployment has a container named weir")
}

/// The number of a container port given by number or by name.
fn container_port(container: &Value, port: &Value) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    let wanted = port.as_str().expect("a port is a number or a name");
    container["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == wanted))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {wanted:?} in {container}"))
}

/// Whether every label of `selector` is in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `(apiGroup, resource, verb)` for every rule of a role, asserting that no
/// field of any rule is `*`.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("a role has rules") {
        for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                !strings(&rule[field]).iter().any(|s| s.contains('*')),
                "a wildcard in {field} of {rule}"
            );
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

fn expected(rows: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |v| ((*group).to_owned(), (*resource).to_owned(), (*v).to_owned()))
        })
        .collect()
}

#[test]
fn every_document_is_a_kubernetes_object_without_unknown_fields() {
    for file in FILES {
        assert!(
            manifest_dir().join(file).is_file(),
            "deploy/kubernetes/{file} is missing"
        );
    }
    let docs = documents();
    assert!(docs.len() >= 10, "only {} documents", docs.len());
    for doc in &docs {
        match kind(doc) {
            "Namespace" => round_trip::<Namespace>(doc),
            "ServiceAccount" => round_trip::<ServiceAccount>(doc),
            "ClusterRole" => round_trip::<ClusterRole>(doc),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(doc),
            "Role" => round_trip::<Role>(doc),
            "RoleBinding" => round_trip::<RoleBinding>(doc),
            "ConfigMap" => round_trip::<ConfigMap>(doc),
            "Deployment" => round_trip::<Deployment>(doc),
            "Service" => round_trip::<Service>(doc),
            "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(doc),
            "CustomResourceDefinition" => {
                round_trip::<CustomResourceDefinition>(doc);
                assert!(
                    matches!(
                        name(doc),
                        "canaryroutes.weir.dev" | "analysistemplates.weir.dev"
                    ),
                    "{}: {}",
                    doc.file,
                    name(doc)
                );
            }
            // No Rust type yet on this side of the workspace; its fields are
            // checked by `the_example_canary_route_names_services_that_exist`.
            "CanaryRoute" => assert_eq!(doc.value["apiVersion"], "weir.dev/v1alpha1"),
            other => panic!("{}: unexpected kind {other:?}", doc.file),
        }
        let cluster_scoped = matches!(
            kind(doc),
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
        );
        let namespace = doc.value["metadata"]["namespace"].as_str();
        if cluster_scoped {
            assert_eq!(
                namespace,
                None,
                "{}: {} {:?}",
                doc.file,
                kind(doc),
                name(doc)
            );
        } else {
            let wanted = if doc.file == "example.yaml" {
                "shop"
            } else {
                NAMESPACE
            };
            assert_eq!(
                namespace,
                Some(wanted),
                "{}: {} {:?} must name its namespace",
                doc.file,
                kind(doc),
                name(doc)
            );
        }
    }
    assert_eq!(
        find(&docs, "Namespace", NAMESPACE)["metadata"]["name"],
        NAMESPACE
    );
}

#[test]
fn the_deployment_runs_three_replicas_that_know_their_pod() {
    let docs = documents();
    let deployment = find(&docs, "Deployment", "weir");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = pod(&docs);
    assert!(
        selects(
            &deployment["spec"]["selector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ),
        "the Deployment's selector must match its pods"
    );
    let container = weir_container(&docs);
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default(), &e["valueFrom"]))
        .collect();
    assert_eq!(
        env.get("POD_NAME").map(|v| &v["fieldRef"]["fieldPath"]),
        Some(&json!("metadata.name")),
        "POD_NAME from the Downward API"
    );
    assert_eq!(
        env.get("POD_NAMESPACE")
            .map(|v| &v["fieldRef"]["fieldPath"]),
        Some(&json!("metadata.namespace")),
        "POD_NAMESPACE from the Downward API"
    );

    // It runs `weir run --config FILE` on the ConfigMap's weir.yaml.
    let args = strings(&container["args"]);
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    let config_at = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("--config FILE in the args");
    let (config_dir, config_file) = config_at.rsplit_once('/').expect("an absolute path");
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mountPath"] == config_dir))
        .unwrap_or_else(|| panic!("nothing is mounted at {config_dir}"));
    let volume = pod["spec"]["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
        .expect("the mounted volume exists");
    assert_eq!(volume["configMap"]["name"], "weir-config");
    assert!(
        find(&docs, "ConfigMap", "weir-config")["data"][config_file].is_string(),
        "the ConfigMap has no key {config_file}"
    );

    // stateDir is a writable volume: the root file system is read-only.
    let state_dir = weir_yaml(&docs)["stateDir"]
        .as_str()
        .expect("weir.yaml sets stateDir")
        .to_owned();
    let state_mount = container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["mountPath"] == state_dir.as_str()))
        .unwrap_or_else(|| panic!("stateDir {state_dir} is not a mounted volume"));
    assert_ne!(state_mount["readOnly"], true);

    // Non-root with a read-only root file system.
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // The grace period covers the preStop pause and the 10 s drain.
    let pause: i64 = strings(&container["lifecycle"]["preStop"]["exec"]["command"])
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(0);
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds is set");
    assert!(grace > pause + 10, "grace {grace} s, preStop {pause} s");

    // The replicas are spread over nodes.
    let terms = pod["spec"]["affinity"]["podAntiAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .expect("a pod anti-affinity");
    assert!(terms.iter().any(|t| {
        t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
            && selects(
                &t["podAffinityTerm"]["labelSelector"]["matchLabels"],
                &pod["metadata"]["labels"],
            )
    }));

    // It runs as the ServiceAccount the RBAC binds.
    let account = pod["spec"]["serviceAccountName"]
        .as_str()
        .expect("a ServiceAccount");
    assert_eq!(
        find(&docs, "ServiceAccount", account)["metadata"]["namespace"],
        NAMESPACE
    );
}

#[test]
fn probes_hit_healthz_and_readyz_on_the_admin_port() {
    let docs = documents();
    let container = weir_container(&docs);
    let admin_port = port_of(
        weir_yaml(&docs)["admin"]["address"]
            .as_str()
            .expect("weir.yaml has admin.address"),
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            container_port(&container, &get["port"]),
            admin_port,
            "{probe} must hit the admin address of weir.yaml"
        );
    }
}

#[test]
fn every_variable_of_weir_yaml_comes_from_the_container_environment() {
    let docs = documents();
    let text = weir_yaml_text(&docs);
    let container = weir_container(&docs);
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default(), e))
        .collect();
    let mut referenced = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("a closed ${...}");
        referenced.push(after[..end].to_owned());
        rest = &after[end..];
    }
    assert_eq!(referenced, ["WEIR_READER_TOKEN", "WEIR_WRITER_TOKEN"]);
    for variable in &referenced {
        let entry = env.get(variable.as_str()).unwrap_or_else(|| {
            panic!("weir.yaml names ${{{variable}}}, the container env does not")
        });
        assert_eq!(
            entry["valueFrom"]["secretKeyRef"]["name"], "weir-admin-tokens",
            "{variable} comes from the Secret"
        );
    }
}

#[test]
fn the_config_map_passes_weir_validate() {
    let docs = documents();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("weir.yaml");
    std::fs::write(&file, weir_yaml_text(&docs)).expect("writing weir.yaml");
    let output = weir_command()
        .arg("validate")
        .arg(&file)
        .env("WEIR_READER_TOKEN", "reader-token-from-the-secret")
        .env("WEIR_WRITER_TOKEN", "writer-token-from-the-secret")
        .output()
        .expect("running weir validate");
    assert!(
        output.status.success(),
        "weir validate refused the ConfigMap's weir.yaml:\n{}",
        weir_e2e::shown(&output)
    );
}

#[test]
fn rbac_grants_exactly_what_weir_calls() {
    let docs = documents();
    let roles: Vec<&Doc> = docs
        .iter()
        .filter(|d| matches!(kind(d), "ClusterRole" | "Role"))
        .collect();
    assert_eq!(roles.len(), 2, "one ClusterRole and one Role");

    let cluster_role = find(&docs, "ClusterRole", "weir");
    assert_eq!(
        grants(&cluster_role),
        expected(&[
            ("", "services", &["get", "list", "watch"]),
            (
                "discovery.k8s.io",
                "endpointslices",
                &["get", "list", "watch"]
            ),
            ("weir.dev", "canaryroutes", &["get", "list", "watch"]),
            ("weir.dev", "analysistemplates", &["get", "list", "watch"]),
            (
                "weir.dev",
                "canaryroutes/status",
                &["get", "patch", "update"]
            ),
            ("events.k8s.io", "events", &["create", "patch"]),
            (
                "gateway.networking.k8s.io",
                "gatewayclasses",
                &["get", "list", "watch"]
            ),
            (
                "gateway.networking.k8s.io",
                "gateways",
                &["get", "list", "watch"]
            ),
            (
                "gateway.networking.k8s.io",
                "httproutes",
                &["get", "list", "watch"]
            ),
            (
                "gateway.networking.k8s.io",
                "gatewayclasses/status",
                &["get", "patch", "update"]
            ),
            (
                "gateway.networking.k8s.io",
                "gateways/status",
                &["get", "patch", "update"]
            ),
            (
                "gateway.networking.k8s.io",
                "httproutes/status",
                &["get", "patch", "update"]
            ),
        ])
    );

    let role = find(&docs, "Role", "weir-leader-election");
    assert_eq!(role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        grants(&role),
        expected(&[(
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"]
        )])
    );
    // Reading and renewing are limited to the Lease weir.yaml names.
    let lease = weir_yaml(&docs)["kubernetes"]["lease"]
        .as_str()
        .expect("weir.yaml names its Lease")
        .to_owned();
    for rule in role["rules"].as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        if !names.is_empty() {
            assert_eq!(names, [lease.as_str()], "{rule}");
        }
    }

    // Each role is bound to weir's ServiceAccount, and nothing else is bound.
    let bindings: Vec<&Doc> = docs
        .iter()
        .filter(|d| matches!(kind(d), "ClusterRoleBinding" | "RoleBinding"))
        .collect();
    assert_eq!(bindings.len(), 2);
    for (binding_kind, role_kind, role_name) in [
        ("ClusterRoleBinding", "ClusterRole", "weir"),
        ("RoleBinding", "Role", "weir-leader-election"),
    ] {
        let binding = bindings
            .iter()
            .find(|b| kind(b) == binding_kind)
            .unwrap_or_else(|| panic!("no {binding_kind}"));
        assert_eq!(binding.value["roleRef"]["kind"], role_kind);
        assert_eq!(binding.value["roleRef"]["name"], role_name);
        assert_eq!(
            binding.value["subjects"],
            json!([{"kind": "ServiceAccount", "name": "weir", "namespace": NAMESPACE}])
        );
    }
}

#[test]
fn the_services_reach_the_listener_and_the_headless_peers_reach_the_admin_port() {
    let docs = documents();
    let pod = pod(&docs);
    let container = weir_container(&docs);
    let config = weir_yaml(&docs);

    let peers_name = config["kubernetes"]["peers"]
        .as_str()
        .expect("weir.yaml names its peers Service");
    let peers = find(&docs, "Service", peers_name);
    assert_eq!(
        peers["spec"]["clusterIP"], "None",
        "the peers Service is headless"
    );
    assert!(selects(
        &peers["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let admin = peers["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "admin"))
        .expect("the peers Service has a port named admin");
    let admin_address = config["admin"]["address"].as_str().expect("admin.address");
    assert_eq!(
        container_port(&container, &admin["targetPort"]),
        port_of(admin_address)
    );
    assert!(
        admin_address.starts_with("0.0.0.0:"),
        "peers and probes reach the admin API from outside the pod"
    );

    let public = find(&docs, "Service", "weir");
    assert!(selects(
        &public["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    let http = public["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["port"] == 80))
        .expect("the weir Service listens on port 80");
    let listener = config["listeners"][0]["address"]
        .as_str()
        .expect("a listener");
    assert_eq!(
        container_port(&container, &http["targetPort"]),
        port_of(listener)
    );
}

#[test]
fn the_disruption_budget_covers_the_deployments_pods() {
    let docs = documents();
    let budget = find(&docs, "PodDisruptionBudget", "weir");
    assert_eq!(budget["spec"]["minAvailable"], 2);
    let deployment = find(&docs, "Deployment", "weir");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert!(selects(
        &budget["spec"]["selector"]["matchLabels"],
        &pod(&docs)["metadata"]["labels"]
    ));
}

#[test]
fn the_example_canary_route_passes_weirs_validation() {
    let docs = documents();
    let routes: Vec<&Doc> = docs.iter().filter(|d| kind(d) == "CanaryRoute").collect();
    assert!(
        !routes.is_empty(),
        "the manifests hold an example CanaryRoute"
    );
    for route in routes {
        let namespace = route.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let spec = &route.value["spec"];
        if let Err(problems) = weir_config::validate_canary_route(namespace, name(route), spec) {
            let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!(
                "{}: CanaryRoute {}: {}",
                route.file,
                name(route),
                shown.join("; ")
            );
        }
    }
}

#[test]
fn the_example_canary_route_names_services_that_exist() {
    let docs = documents();
    let route = find(&docs, "CanaryRoute", "checkout");
    assert_eq!(route["metadata"]["namespace"], "shop");
    let spec = &route["spec"];
    assert_eq!(
        spec["strategy"]["steps"],
        json!([
            {"setWeight": 5},
            {"pause": {"duration": "30s"}},
            {"setWeight": 25},
            {"pause": {}},
            {"setWeight": 100},
        ])
    );
    assert!(
        spec["strategy"]["analysis"].is_object(),
        "an analysis block"
    );
    assert_eq!(spec["stable"]["revision"], "v1");
    assert_eq!(spec["canary"]["revision"], "v2");

    for role in ["stable", "canary"] {
        let wanted = &spec[role]["service"];
        let service_name = wanted["name"].as_str().expect("a Service name");
        let service = find(&docs, "Service", service_name);
        assert_eq!(service["metadata"]["namespace"], "shop");
        // The route's port is the Service port's number or name.
        let port = service["spec"]["ports"]
            .as_array()
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["port"] == wanted["port"] || p["name"] == wanted["port"])
            })
            .unwrap_or_else(|| {
                panic!(
                    "{role}: Service {service_name} has no port {}",
                    wanted["port"]
                )
            });
        // Some Deployment's pods are behind the Service, with its target port.
        let backing = docs
            .iter()
            .filter(|d| kind(d) == "Deployment" && d.file == "example.yaml")
            .find(|d| {
                selects(
                    &service["spec"]["selector"],
                    &d.value["spec"]["template"]["metadata"]["labels"],
                )
            })
            .unwrap_or_else(|| panic!("no Deployment behind Service {service_name}"));
        let container = &backing.value["spec"]["template"]["spec"]["containers"][0];
        let target = container_port(container, &port["targetPort"]);
        let args = strings(&container["args"]);
        assert!(
            args.iter().any(|a| a == &format!("-listen=:{target}")),
            "the echo server of {service_name} listens on {target}: {args:?}"
        );
    }
}

#[test]
fn the_manifests_are_listed_in_the_readme_in_order_of_application() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("a README");
    let mut last = 0;
    for file in FILES {
        let mention = format!("deploy/kubernetes/{file}");
        let at = readme[last..]
            .find(&mention)
            .unwrap_or_else(|| panic!("README does not name {mention} after the previous file"));
        last += at + mention.len();
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_profile_its_namespace_enforces() {
    let docs = documents();
    for namespace in docs.iter().filter(|d| kind(d) == "Namespace") {
        assert_eq!(
            namespace.value["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted",
            "{}: namespace {}",
            namespace.file,
            name(namespace)
        );
    }
    let deployments: Vec<&Doc> = docs.iter().filter(|d| kind(d) == "Deployment").collect();
    assert_eq!(deployments.len(), 3, "weir and the two example revisions");
    for deployment in deployments {
        let who = format!("{}: Deployment {}", deployment.file, name(deployment));
        let pod = &deployment.value["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{who}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{who}"
        );
        assert!(
            pod["hostNetwork"].is_null() && pod["hostPID"].is_null(),
            "{who}"
        );
        for container in pod["containers"].as_array().expect("containers") {
            let context = &container["securityContext"];
            assert_eq!(context["allowPrivilegeEscalation"], false, "{who}");
            assert_eq!(context["capabilities"]["drop"], json!(["ALL"]), "{who}");
            assert!(context["capabilities"]["add"].is_null(), "{who}");
            assert_ne!(context["privileged"], true, "{who}");
        }
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            assert!(volume["hostPath"].is_null(), "{who}: no hostPath volumes");
        }
    }
}

#[test]
fn the_image_runs_weir_as_the_user_and_on_the_ports_the_deployment_expects() {
    let dockerfile =
        std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("a Dockerfile");
    // The instructions of the last stage, the one that runs.
    let last_stage = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("a multi-stage build");
    let instruction = |name: &str| -> String {
        last_stage
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .next_back()
            .unwrap_or_else(|| panic!("the runtime stage has no {name}"))
            .trim()
            .to_owned()
    };
    assert!(
        dockerfile.contains("cargo build --release -p weir-control --locked"),
        "the image builds the weir binary of this workspace"
    );
    assert_eq!(instruction("ENTRYPOINT"), r#"["/usr/local/bin/weir"]"#);
    assert_eq!(
        instruction("CMD"),
        r#"["run", "--config", "/etc/weir/weir.yaml"]"#
    );

    let docs = documents();
    let pod = pod(&docs);
    let container = weir_container(&docs);
    let uid = pod["spec"]["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    assert_eq!(
        instruction("USER"),
        format!("{uid}:{uid}"),
        "numeric, non-root"
    );
    assert_ne!(uid, 0);

    let exposed: BTreeSet<i64> = instruction("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().expect("a port number"))
        .collect();
    let declared: BTreeSet<i64> = container["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert_eq!(exposed, declared);
}
