//! Criterion benchmarks of discovery's rebuild: one Service with 1,000
//! endpoints over 10 EndpointSlices, and 1,000 CanaryRoutes.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use weir_control::cluster::discovery::{
    ClusterObjects, LastValid, ObjectKey, SERVICE_NAME_LABEL, compile_cluster_routes,
};

/// A CanaryRoute in `shop` whose roles are Services `stable` and `canary`.
fn canary_route(name: &str, path_prefix: &str) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "CanaryRoute",
        "metadata": {"namespace": "shop", "name": name, "generation": 1},
        "spec": {
            "pathPrefix": path_prefix,
            "stable": {"revision": "v1", "service": {"name": "stable", "port": "http"}},
            "canary": {"revision": "v2", "service": {"name": "canary", "port": "http"}},
            "strategy": {"steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}]},
        },
    })
}

fn service(name: &str) -> Value {
    json!({
        "metadata": {"namespace": "shop", "name": name},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]},
    })
}

/// An EndpointSlice of `service` holding `count` ready endpoints from `first`.
fn slice(service: &str, index: usize, first: usize, count: usize) -> Value {
    let endpoints: Vec<Value> = (first..first + count)
        .map(|i| {
            json!({
                "addresses": [format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
            })
        })
        .collect();
    json!({
        "metadata": {
            "namespace": "shop",
            "name": format!("{service}-{index}"),
            "labels": {SERVICE_NAME_LABEL: service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    })
}

/// Reads `value` as an object and files it under its namespace and name.
fn insert<K>(map: &mut std::collections::BTreeMap<ObjectKey, Arc<K>>, value: Value)
where
    K: serde::de::DeserializeOwned + kube::Resource,
{
    let object: K = match serde_json::from_value(value) {
        Ok(object) => object,
        Err(error) => panic!("a benchmark object does not deserialize: {error}"),
    };
    map.insert(ObjectKey::of(object.meta()), Arc::new(object));
}

/// `routes` CanaryRoutes over Services `stable` (`endpoints` endpoints in 10
/// slices) and `canary` (3 endpoints).
fn objects(routes: usize, endpoints: usize) -> ClusterObjects {
    let mut objects = ClusterObjects::default();
    for i in 0..routes {
        insert(
            &mut objects.canary_routes,
            canary_route(&format!("route-{i}"), &format!("/r{i}")),
        );
    }
    insert(&mut objects.services, service("stable"));
    insert(&mut objects.services, service("canary"));
    let per_slice = endpoints.div_ceil(10);
    for s in 0..10 {
        let first = s * per_slice;
        let count = per_slice.min(endpoints.saturating_sub(first));
        insert(
            &mut objects.endpoint_slices,
            slice("stable", s, first, count),
        );
    }
    insert(&mut objects.endpoint_slices, slice("canary", 0, 100_000, 3));
    objects
}

fn rebuild(c: &mut Criterion) {
    let one_service = objects(1, 1_000);
    c.bench_function("discovery/one_service_1000_endpoints_10_slices", |b| {
        b.iter(|| compile_cluster_routes(black_box(&one_service), None, &[], &LastValid::new()))
    });
    let many_routes = objects(1_000, 3);
    c.bench_function("discovery/1000_canary_routes", |b| {
        b.iter(|| compile_cluster_routes(black_box(&many_routes), None, &[], &LastValid::new()))
    });
}

criterion_group!(benches, rebuild);
criterion_main!(benches);
