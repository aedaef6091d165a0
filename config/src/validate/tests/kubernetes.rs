//! The `kubernetes` block: defaults, each key refused with its place when
//! wrong, and routes that may be empty only with the block.

use super::*;
use crate::model::{Kubernetes, KubernetesRole};

/// Listeners and no routes: lines 1 to 4; the block starts on line 5.
const NO_ROUTES: &str = "\
listeners:
  - name: public
    address: 127.0.0.1:8080
routes: []
";

#[test]
fn the_block_with_every_key_is_read_into_the_model() {
    let config = valid(&format!(
        "{NO_ROUTES}kubernetes:\n  namespaces: [shop, billing]\n  lease: weir.leader-1\n  peers: weir-replicas\n  role: follower\n  gatewayApi: true\n"
    ));
    assert_eq!(
        config.kubernetes,
        Some(Kubernetes {
            namespaces: Some(["billing".to_owned(), "shop".to_owned()].into()),
            lease: "weir.leader-1".to_owned(),
            peers: "weir-replicas".to_owned(),
            role: KubernetesRole::Follower,
            gateway_api: Some(true),
        })
    );
    assert!(config.routes.is_empty());
}

#[test]
fn an_empty_or_valueless_block_means_every_default() {
    let want = Some(Kubernetes::default());
    assert_eq!(
        valid(&format!("{NO_ROUTES}kubernetes: {{}}\n")).kubernetes,
        want
    );
    assert_eq!(valid(&format!("{NO_ROUTES}kubernetes:\n")).kubernetes, want);
    let defaults = Kubernetes::default();
    assert_eq!(defaults.lease, "weir-leader");
    assert_eq!(defaults.peers, "weir-peers");
    assert_eq!(defaults.role, KubernetesRole::Candidate);
    assert!(defaults.watches("any-namespace"));
}

#[test]
fn routes_may_be_absent_or_empty_only_with_the_block() {
    let listeners = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n";
    let config = valid(&format!("{listeners}kubernetes: {{ role: candidate }}\n"));
    assert!(config.routes.is_empty());
    assert_cases(&[
        (
            NO_ROUTES.to_owned(),
            "routes",
            4,
            1,
            "no routes; add at least one",
        ),
        (listeners.to_owned(), "", 1, 1, "missing field `routes`"),
    ]);
}

#[test]
fn file_routes_are_kept_beside_the_block() {
    let config = valid(&format!(
        "{HEADER}  - name: checkout\n    stable: {{ revision: v1, endpoints: [127.0.0.1:9001] }}\nkubernetes: {{ namespaces: [shop] }}\n"
    ));
    assert_eq!(config.routes.len(), 1);
    let kubernetes = config.kubernetes.expect("the block is read");
    assert!(kubernetes.watches("shop"));
    assert!(!kubernetes.watches("billing"));
}

#[test]
fn each_wrong_key_is_refused_with_its_place() {
    let block = |body: &str| format!("{NO_ROUTES}kubernetes:\n{body}");
    assert_cases(&[
        (
            block("  namespaces: [shop, Billing]\n"),
            "kubernetes.namespaces[1]",
            6,
            22,
            "namespace `Billing`: it contains `B`; a DNS-1123 label is lowercase letters",
        ),
        (
            block("  namespaces: [shop, shop]\n"),
            "kubernetes.namespaces[1]",
            6,
            22,
            "namespace `shop` is already listed as namespaces[0]",
        ),
        (
            block("  namespaces: []\n"),
            "kubernetes.namespaces",
            6,
            3,
            "the list is empty, which would watch no namespace",
        ),
        (
            block("  lease: weir_leader\n"),
            "kubernetes.lease",
            6,
            3,
            "`weir_leader` cannot name the Lease: it contains `_`; a DNS-1123 subdomain",
        ),
        (
            block("  lease: weir..leader\n"),
            "kubernetes.lease",
            6,
            3,
            "a part between dots is empty",
        ),
        (
            block("  peers: weir.peers\n"),
            "kubernetes.peers",
            6,
            3,
            "`weir.peers` cannot name the peers Service: it contains `.`; a DNS-1123 label",
        ),
        (
            block(&format!("  peers: {}\n", "p".repeat(64))),
            "kubernetes.peers",
            6,
            3,
            "it has 64 characters",
        ),
        (
            block("  role: leader\n"),
            "kubernetes.role",
            6,
            3,
            "role `leader` is not known; write `candidate` (may lead the replicas) or `follower`",
        ),
        (
            block("  leader: weir\n"),
            "kubernetes.leader",
            6,
            3,
            "unknown field `leader`, expected one of `namespaces`, `lease`, `peers`, `role`",
        ),
        (
            block("  namespaces: shop\n"),
            "kubernetes.namespaces",
            6,
            15,
            "invalid type: string \"shop\", expected a list",
        ),
    ]);
}

#[test]
fn parsing_for_weir_run_kubernetes_assumes_the_block() {
    let listeners = "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n";
    let parse = |text: &str| {
        parse_with_kubernetes(text, "weir.yaml", Path::new(BASE_DIR), &|_| None)
            .map(|doc| doc.config)
    };
    for text in [listeners.to_owned(), format!("{listeners}routes: []\n")] {
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.kubernetes, Some(Kubernetes::default()));
        assert!(config.routes.is_empty());
    }
    // A block in the file is read as written.
    let config = parse(&format!("{listeners}kubernetes: {{ role: follower }}\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.kubernetes.map(|k| k.role),
        Some(KubernetesRole::Follower)
    );
    // Other problems are still found.
    let errors = match parse(&format!("{listeners}kubernetes: {{ role: boss }}\n")) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(Diagnostics(errors)) => errors,
    };
    let paths: Vec<&str> = errors.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["kubernetes.role"]);
}
