//! weir as a Gateway API implementation (SPEC section 11), end to end
//! against the test API server: a GatewayClass of weir's controller, a
//! Gateway whose listener is on weir's port, an HTTPRoute with two
//! weighted Services, as Argo Rollouts' plugin and Flagger write them; and
//! an HTTPRoute that gains a rule weir does not support, whose other rules
//! stay served.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use weir_e2e::{
    Cluster, Counts, FAILED, FakeUpstream, GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, Load,
    binomial_bounds, count, send_many, wait_until,
};

const NAMESPACE: &str = "shop";
const CONTROLLER: &str = "weir.dev/gateway-controller";

/// From `/readyz` to the route served and its status written.
const START_LIMIT: Duration = Duration::from_secs(20);

/// From a weight change to the replica serving it. SPEC: within 1 s; the
/// limit leaves room for a busy 2-core machine, the time taken is printed.
const APPLY_LIMIT: Duration = Duration::from_secs(5);

/// The HTTPRoute `shop/web`, attached to the Gateway `shop/public`, with
/// `web-v1` and `web-v2` at these weights.
fn http_route(v1: u32, v2: u32) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {"group": "", "kind": "Service", "name": "web-v1", "port": 80, "weight": v1},
                    {"group": "", "kind": "Service", "name": "web-v2", "port": 80, "weight": v2},
                ],
            }],
        },
    })
}

/// Our entry of the HTTPRoute's status, if written.
fn our_parent(route: &Value) -> Option<Value> {
    route["status"]["parents"]
        .as_array()?
        .iter()
        .find(|p| p["controllerName"] == CONTROLLER)
        .cloned()
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> &'a Value {
    conditions
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn total(counts: &Counts) -> u64 {
    counts.values().flat_map(|s| s.values()).sum()
}

/// `after - before`, per upstream and status.
fn difference(after: &Counts, before: &Counts) -> Counts {
    let mut diff = after.clone();
    for (name, statuses) in &mut diff {
        for (status, n) in statuses.iter_mut() {
            *n -= count(before, name, *status);
        }
    }
    diff
}

/// The upstreams `web-v1` and `web-v2`, a cluster of one replica with their
/// Services, weir's GatewayClass and the Gateway `shop/public` on the
/// replica's HTTP port.
async fn gateway_cluster() -> (FakeUpstream, FakeUpstream, Cluster) {
    let cluster = Cluster::start_with_gateway_api(1).await;
    let (v1, v2) = gateway_objects(&cluster).await;
    (v1, v2, cluster)
}

/// The upstreams `web-v1` and `web-v2` with their Services, weir's
/// GatewayClass and the Gateway `shop/public` on replica 0's HTTP port.
async fn gateway_objects(cluster: &Cluster) -> (FakeUpstream, FakeUpstream) {
    let v1 = FakeUpstream::start("web-v1").await;
    let v2 = FakeUpstream::start("web-v2").await;
    let port = cluster.replica(0).addrs.http.port();
    for (name, upstream) in [("web-v1", &v1), ("web-v2", &v2)] {
        cluster.add_service(NAMESPACE, name, 80);
        cluster.set_endpoints(NAMESPACE, name, &[(upstream.addr, true, true, false)]);
    }
    cluster.api.put(
        GATEWAY_CLASSES,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "weir"}, "spec": {"controllerName": CONTROLLER}}),
    );
    cluster.api.apply(
        GATEWAYS,
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "public", "namespace": NAMESPACE},
               "spec": {"gatewayClassName": "weir", "listeners": [
                   {"name": "http", "port": port, "protocol": "HTTP"}]}}),
    );
    (v1, v2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_change_by_another_controller_takes_effect_under_load_without_a_failure() {
    let (_v1, _v2, cluster) = gateway_cluster().await;
    let weir = cluster.replica(0);
    cluster.api.apply(HTTP_ROUTES, http_route(100, 0));

    // Served as the route says, and the leader says so in every status.
    wait_until(START_LIMIT, "the HTTPRoute served", || async {
        let counts = send_many(weir.addrs.http, "/", &[], 10, 1).await.ok()?;
        (count(&counts, "web-v1", 200) == 10).then_some(())
    })
    .await;
    let entry = wait_until(START_LIMIT, "the HTTPRoute's status", || async {
        let route = cluster.api.get(HTTP_ROUTES, NAMESPACE, "web")?;
        let entry = our_parent(&route)?;
        (condition(&entry["conditions"], "Accepted")["status"] == "True").then_some(entry)
    })
    .await;
    assert_eq!(entry["parentRef"], json!({"name": "public"}));
    let resolved = condition(&entry["conditions"], "ResolvedRefs");
    assert_eq!(resolved["status"], "True", "{entry:#}");
    assert_eq!(resolved["observedGeneration"], 1, "{entry:#}");
    let gateway = wait_until(START_LIMIT, "the Gateway's status", || async {
        let gateway = cluster.api.get(GATEWAYS, NAMESPACE, "public")?;
        (condition(&gateway["status"]["conditions"], "Programmed")["status"] == "True")
            .then_some(gateway)
    })
    .await;
    assert_eq!(gateway["status"]["listeners"][0]["attachedRoutes"], 1);
    let class = cluster
        .api
        .get(GATEWAY_CLASSES, "", "weir")
        .expect("the GatewayClass");
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted")["status"],
        "True",
        "{class:#}"
    );

    // Under load, another controller moves 20 % to web-v2.
    let load = Load::start(weir.addrs.http, "/", 200, 4);
    wait_until(START_LIMIT, "load flowing", || async {
        (load.total() >= 100).then_some(())
    })
    .await;
    let before = load.counts();
    assert_eq!(total(&before), count(&before, "web-v1", 200), "{before:?}");
    let written = Instant::now();
    cluster.api.apply(HTTP_ROUTES, http_route(80, 20));
    let switched = wait_until(APPLY_LIMIT, "web-v2 serving", || async {
        let counts = load.counts();
        (count(&counts, "web-v2", 200) > 0).then_some(counts)
    })
    .await;
    eprintln!(
        "from the weight change to the first answer from web-v2: {:?}",
        written.elapsed()
    );
    wait_until(
        Duration::from_secs(30),
        "800 answers at the new weights",
        || async { (total(&load.counts()) >= total(&switched) + 800).then_some(()) },
    )
    .await;
    let after = load.stop().await;

    let failed: u64 = after.get(FAILED).map_or(0, |s| s.values().sum());
    assert_eq!(failed, 0, "no failed exchange: {after:?}");
    assert_eq!(
        total(&after),
        count(&after, "web-v1", 200) + count(&after, "web-v2", 200),
        "every answer 200 from a backend: {after:?}"
    );
    let split = difference(&after, &switched);
    let n = total(&split);
    let canary = count(&split, "web-v2", 200);
    let bounds = binomial_bounds(n, 0.2);
    assert!(
        bounds.contains(canary),
        "{canary} of {n} to web-v2 at weights 80/20 (expected {}..={}): {split:?}",
        bounds.lo,
        bounds.hi
    );

    // Per-backend metrics carry the Service's name as the role.
    let metrics = weir.metrics().await;
    let served = |role: &str| {
        metrics
            .get(
                "weir_http_requests_total",
                &[("route", "shop/web"), ("role", role), ("code", "200")],
            )
            .unwrap_or(0.0)
    };
    assert!(
        served("web-v1") > 0.0 && served("web-v2") > 0.0,
        "{metrics:?}"
    );
}

/// The HTTPRoute `shop/web`: `/` to `web-v1`, `/api` to `web-v2`, then
/// `extra` rules.
fn two_path_route(extra: &[Value]) -> Value {
    let mut rules = vec![
        json!({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
               "backendRefs": [{"name": "web-v1", "port": 80}]}),
        json!({"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
               "backendRefs": [{"name": "web-v2", "port": 80}]}),
    ];
    rules.extend_from_slice(extra);
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"parentRefs": [{"name": "public"}], "rules": rules},
    })
}

/// Our entry of the route's status once its `Accepted` condition is
/// `True` at `generation`.
async fn accepted_at(cluster: &Cluster, generation: u64) -> Value {
    wait_until(
        START_LIMIT,
        &format!("the HTTPRoute accepted at generation {generation}"),
        || async {
            let route = cluster.api.get(HTTP_ROUTES, NAMESPACE, "web")?;
            let entry = our_parent(&route)?;
            let accepted = condition(&entry["conditions"], "Accepted");
            (accepted["status"] == "True" && accepted["observedGeneration"] == generation)
                .then_some(entry)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_weir_does_not_support_is_dropped_and_the_other_rules_stay_served() {
    let (_v1, _v2, cluster) = gateway_cluster().await;
    let weir = cluster.replica(0);
    let served = || async {
        let root = send_many(weir.addrs.http, "/", &[], 10, 1).await.ok()?;
        let api = send_many(weir.addrs.http, "/api/items", &[], 10, 1)
            .await
            .ok()?;
        (count(&root, "web-v1", 200) == 10 && count(&api, "web-v2", 200) == 10).then_some(())
    };
    cluster.api.apply(HTTP_ROUTES, two_path_route(&[]));
    wait_until(START_LIMIT, "both rules served", served).await;
    let entry = accepted_at(&cluster, 1).await;
    assert_eq!(
        condition(&entry["conditions"], "PartiallyInvalid"),
        &Value::Null,
        "{entry:#}"
    );

    // A rule with a URLRewrite filter is added to the live route.
    let rewrite = json!({
        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "filters": [{"type": "URLRewrite",
                     "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}],
        "backendRefs": [{"name": "web-v2", "port": 80}],
    });
    cluster.api.apply(HTTP_ROUTES, two_path_route(&[rewrite]));
    let entry = accepted_at(&cluster, 2).await;
    let partial = condition(&entry["conditions"], "PartiallyInvalid");
    assert_eq!(partial["status"], "True", "{entry:#}");
    assert_eq!(partial["reason"], "UnsupportedValue", "{entry:#}");
    assert_eq!(partial["observedGeneration"], 2, "{entry:#}");
    let message = partial["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "Dropped Rule spec.rules[2]: spec.rules[2].filters[0].type: filter `URLRewrite`"
        ),
        "{message}"
    );
    // The status is written after the snapshot of generation 2 is
    // published: the other rules are served by it.
    served()
        .await
        .expect("`/` and `/api` still served by their backends");
    let dropped = send_many(weir.addrs.http, "/old/page", &[], 10, 1)
        .await
        .expect("answers");
    assert_eq!(
        count(&dropped, "web-v1", 200),
        10,
        "the dropped rule's requests go where the other rules send them: {dropped:?}"
    );

    // The rule is removed: the condition goes.
    cluster.api.apply(HTTP_ROUTES, two_path_route(&[]));
    let entry = accepted_at(&cluster, 3).await;
    assert_eq!(
        condition(&entry["conditions"], "PartiallyInvalid"),
        &Value::Null,
        "{entry:#}"
    );
    served().await.expect("both rules served");
}

/// From the Gateway API CRDs installed to the route served: the replica
/// asks discovery again every 10 s.
const INSTALLED_LIMIT: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_crds_installed_after_the_start_are_served_without_a_restart() {
    // The config does not say `gatewayApi`, and discovery answers 404.
    let cluster = Cluster::start(1, "").await;
    let weir = cluster.replica(0);
    let (_v1, _v2) = gateway_objects(&cluster).await;
    cluster.api.apply(HTTP_ROUTES, http_route(1, 0));
    let before = send_many(weir.addrs.http, "/", &[], 5, 1)
        .await
        .expect("answers");
    assert_eq!(
        count(&before, "-", 404),
        5,
        "no route before the Gateway API is served: {before:?}"
    );

    cluster.api.set_gateway_api_served(true);
    let installed = Instant::now();
    wait_until(INSTALLED_LIMIT, "the HTTPRoute served", || async {
        let counts = send_many(weir.addrs.http, "/", &[], 5, 1).await.ok()?;
        (count(&counts, "web-v1", 200) == 5).then_some(())
    })
    .await;
    println!("served {:?} after the CRDs came", installed.elapsed());
    let entry = accepted_at(&cluster, 1).await;
    assert_eq!(
        condition(&entry["conditions"], "ResolvedRefs")["status"],
        "True",
        "{entry:#}"
    );
    assert!(
        weir.log()
            .contains("the cluster now serves gateway.networking.k8s.io/v1"),
        "{}",
        weir.log()
    );
}
