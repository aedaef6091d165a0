//! Several `weir run` replicas acting as one, against the test Kubernetes
//! API server ([`KubeApi`]), as the Deployment in `deploy/kubernetes/` runs
//! them: each has its own `POD_NAME` (`weir-<i>`), `POD_NAMESPACE` `weir`,
//! a kubeconfig naming the test server, its own listener and admin ports,
//! and a `kubernetes:` block (Lease `weir-leader`, peers `weir-peers`).
//!
//! The harness plays the parts of the cluster weir relies on: it keeps the
//! headless peers Service and one EndpointSlice per replica (its admin port,
//! named `admin`, on 127.0.0.1), and stands in for the EndpointSlice
//! controller of the upstream Services a test declares ([`Cluster::add_service`],
//! [`Cluster::set_endpoints`]). CanaryRoutes are applied as `kubectl apply`
//! would ([`Cluster::apply_canary_route`]) and their status patched as
//! `kubectl patch --subresource=status` would ([`Cluster::patch_status`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::client::{Conn, Error, Response};
use crate::{KubeApi, Weir, WeirConfig, wait_until};

/// weir's own namespace (`POD_NAMESPACE` of every replica).
pub const WEIR_NAMESPACE: &str = "weir";

/// The leader-election Lease, in [`WEIR_NAMESPACE`].
pub const LEASE: &str = "weir-leader";

/// The headless Service whose endpoints are the replicas' admin ports.
pub const PEERS: &str = "weir-peers";

/// Collection path of Services.
pub const SERVICES: &str = "api/v1/services";

/// Collection path of EndpointSlices.
pub const ENDPOINT_SLICES: &str = "apis/discovery.k8s.io/v1/endpointslices";

/// Collection path of CanaryRoutes.
pub const CANARY_ROUTES: &str = "apis/weir.dev/v1alpha1/canaryroutes";

/// Collection path of AnalysisTemplates.
pub const ANALYSIS_TEMPLATES: &str = "apis/weir.dev/v1alpha1/analysistemplates";

/// Collection path of Leases.
pub const LEASES: &str = "apis/coordination.k8s.io/v1/leases";

/// Collection path of GatewayClasses (cluster-scoped).
pub const GATEWAY_CLASSES: &str = "apis/gateway.networking.k8s.io/v1/gatewayclasses";

/// Collection path of Gateways.
pub const GATEWAYS: &str = "apis/gateway.networking.k8s.io/v1/gateways";

/// Collection path of HTTPRoutes.
pub const HTTP_ROUTES: &str = "apis/gateway.networking.k8s.io/v1/httproutes";

/// Collection path of `events.k8s.io/v1` Events.
pub const EVENTS: &str = "apis/events.k8s.io/v1/events";

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The name of the Service port (and EndpointSlice port) that
/// [`Cluster::add_service`] declares.
pub const SERVICE_PORT_NAME: &str = "http";

/// One endpoint of a Service: its address and its EndpointSlice conditions
/// `(address, ready, serving, terminating)`.
pub type EndpointState = (SocketAddr, bool, bool, bool);

/// A test API server and the weir replicas pointed at it. The replicas are
/// killed (and, when the test is failing, their logs printed) on drop,
/// before the API server stops.
#[derive(Debug)]
pub struct Cluster {
    replicas: Vec<Weir>,
    /// The test API server.
    pub api: KubeApi,
    kubeconfig: PathBuf,
    dir: TempDir,
    /// Lines added to every replica's `kubernetes:` block.
    kubernetes_extra: String,
}

// === impl Cluster ===

impl Cluster {
    /// Starts the API server with the peers Service, then `replicas` weir
    /// processes (no file routes, no admin tokens) with `config_extra`
    /// appended to each `weir.yaml` as top-level keys, each waited for until
    /// `/readyz` answers 200 and then published as a peer endpoint.
    ///
    /// # Panics
    /// When a replica does not become ready (with its log).
    pub async fn start(replicas: usize, config_extra: &str) -> Cluster {
        Cluster::start_with(replicas, WeirConfig::default(), config_extra).await
    }

    /// As [`Cluster::start`], with `base` (file routes, tokens, environment)
    /// as every replica's config before the `kubernetes:` block.
    ///
    /// # Panics
    /// As [`Cluster::start`].
    pub async fn start_with(replicas: usize, base: WeirConfig, config_extra: &str) -> Cluster {
        let mut cluster = Cluster::without_replicas().await;
        for i in 0..replicas {
            let config = cluster.replica_config(i, base.clone(), config_extra);
            let weir = Weir::start(config).await;
            cluster.set_peer(i, weir.addrs.admin, true);
            cluster.replicas.push(weir);
        }
        cluster
    }

    /// As [`Cluster::start`], with `kubernetes.gatewayApi: true`: the
    /// replicas also serve the Gateway API.
    ///
    /// # Panics
    /// As [`Cluster::start`].
    pub async fn start_with_gateway_api(replicas: usize) -> Cluster {
        let mut cluster = Cluster::without_replicas().await;
        cluster.kubernetes_extra = "  gatewayApi: true\n".to_owned();
        for i in 0..replicas {
            let config = cluster.replica_config(i, WeirConfig::default(), "");
            let weir = Weir::start(config).await;
            cluster.set_peer(i, weir.addrs.admin, true);
            cluster.replicas.push(weir);
        }
        cluster
    }

    /// Starts one more replica without waiting for `/readyz` (nor publishing
    /// it as a peer): for what weir does before it is ready. Returns its
    /// index.
    pub fn start_replica_unready(&mut self, config_extra: &str) -> usize {
        let i = self.replicas.len();
        let config = self.replica_config(i, WeirConfig::default(), config_extra);
        self.replicas.push(Weir::start_unready(config));
        i
    }

    /// Starts one more replica with `base` and `role: follower` (a sidecar:
    /// it never leads and never writes), waited for until `/readyz` answers
    /// 200 and published as a peer endpoint. Returns its index.
    ///
    /// # Panics
    /// When it does not become ready (with its log).
    pub async fn start_follower(&mut self, base: WeirConfig) -> usize {
        let i = self.replicas.len();
        let config = self.replica_config_as(i, base, "", "follower");
        let weir = Weir::start(config).await;
        self.set_peer(i, weir.addrs.admin, true);
        self.replicas.push(weir);
        i
    }

    /// Replica `i`'s config: `base`, its identity and the kubeconfig, the
    /// `kubernetes:` block, then `config_extra`.
    fn replica_config(&self, i: usize, base: WeirConfig, config_extra: &str) -> WeirConfig {
        self.replica_config_as(i, base, config_extra, "candidate")
    }

    /// [`Cluster::replica_config`] with the given `kubernetes.role`.
    fn replica_config_as(
        &self,
        i: usize,
        base: WeirConfig,
        config_extra: &str,
        role: &str,
    ) -> WeirConfig {
        base.env("POD_NAME", &replica_name(i))
            .env("POD_NAMESPACE", WEIR_NAMESPACE)
            .env("KUBECONFIG", &self.kubeconfig.to_string_lossy())
            .extra(&format!(
                "kubernetes:\n  lease: {LEASE}\n  peers: {PEERS}\n  role: {role}\n{}",
                self.kubernetes_extra
            ))
            .extra(config_extra)
    }

    /// The API server, its kubeconfig and the peers Service, without any
    /// weir process: for tests of the harness itself, and for starting
    /// replicas by hand.
    pub async fn without_replicas() -> Cluster {
        let api = KubeApi::start().await;
        let dir = tempfile::Builder::new()
            .prefix("weir-cluster-")
            .tempdir()
            .expect("creating a temp dir");
        let kubeconfig = api.write_kubeconfig(dir.path());
        api.put(
            SERVICES,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": PEERS, "namespace": WEIR_NAMESPACE,
                             "labels": {"app.kubernetes.io/name": "weir"}},
                "spec": {
                    "clusterIP": "None",
                    "selector": {"app.kubernetes.io/name": "weir"},
                    "ports": [{"name": "admin", "port": 9900, "targetPort": "admin",
                               "protocol": "TCP"}],
                },
            }),
        );
        Cluster {
            replicas: Vec::new(),
            api,
            kubeconfig,
            dir,
            kubernetes_extra: String::new(),
        }
    }

    /// The kubeconfig every replica gets in `KUBECONFIG`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The harness's temp dir (the kubeconfig is in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How many replicas were started.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether no replica was started.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replica `i`.
    ///
    /// # Panics
    /// When there is no replica `i`.
    pub fn replica(&self, i: usize) -> &Weir {
        &self.replicas[i]
    }

    /// Replica `i`, to restart it or rewrite its config.
    ///
    /// # Panics
    /// When there is no replica `i`.
    pub fn replica_mut(&mut self, i: usize) -> &mut Weir {
        &mut self.replicas[i]
    }

    /// Publishes (or updates) replica `i`'s EndpointSlice of the peers
    /// Service: `127.0.0.1` with `admin`'s port, named `admin`, and the pod
    /// `weir-<i>` as its target.
    pub fn set_peer(&self, i: usize, admin: SocketAddr, ready: bool) {
        let pod = replica_name(i);
        self.api.put(
            ENDPOINT_SLICES,
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{PEERS}-{pod}"),
                    "namespace": WEIR_NAMESPACE,
                    "labels": {SERVICE_NAME_LABEL: PEERS,
                               "endpointslice.kubernetes.io/managed-by": "weir-e2e"},
                },
                "addressType": address_type(admin),
                "endpoints": [{
                    "addresses": [admin.ip().to_string()],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "targetRef": {"kind": "Pod", "name": pod, "namespace": WEIR_NAMESPACE},
                }],
                "ports": [{"name": "admin", "port": admin.port(), "protocol": "TCP"}],
            }),
        );
    }

    /// Declares Service `name` in `namespace` with one port, named
    /// [`SERVICE_PORT_NAME`], number `port`, targeting the port of that
    /// name (so its endpoints may listen anywhere).
    pub fn add_service(&self, namespace: &str, name: &str, port: u16) {
        self.api.put(
            SERVICES,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": {"app": name},
                    "ports": [{"name": SERVICE_PORT_NAME, "port": port,
                               "targetPort": SERVICE_PORT_NAME, "protocol": "TCP"}],
                },
            }),
        );
    }

    /// Makes `endpoints` the whole set of Service `service`'s endpoints, as
    /// the EndpointSlice controller would: one EndpointSlice per distinct
    /// port (a slice's ports apply to all its addresses), labelled
    /// [`SERVICE_NAME_LABEL`]. Slices whose content does not change are not
    /// written; slices of ports no longer present are deleted.
    pub fn set_endpoints(&self, namespace: &str, service: &str, endpoints: &[EndpointState]) {
        let mut by_port: BTreeMap<u16, Vec<&EndpointState>> = BTreeMap::new();
        for endpoint in endpoints {
            by_port.entry(endpoint.0.port()).or_default().push(endpoint);
        }
        let mut wanted = BTreeMap::new();
        for (port, group) in by_port {
            let name = format!("{service}-{port}");
            let entries: Vec<Value> = group
                .iter()
                .map(|(addr, ready, serving, terminating)| {
                    json!({
                        "addresses": [addr.ip().to_string()],
                        "conditions": {"ready": ready, "serving": serving,
                                       "terminating": terminating},
                    })
                })
                .collect();
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {SERVICE_NAME_LABEL: service,
                               "endpointslice.kubernetes.io/managed-by": "weir-e2e"},
                },
                "addressType": address_type(group[0].0),
                "endpoints": entries,
                "ports": [{"name": SERVICE_PORT_NAME, "port": port, "protocol": "TCP"}],
            });
            wanted.insert(name, slice);
        }
        for existing in self.slices_of(namespace, service) {
            let name = existing["metadata"]["name"].as_str().unwrap_or_default();
            if !wanted.contains_key(name) {
                self.api.delete(ENDPOINT_SLICES, namespace, name);
            }
        }
        for (name, slice) in wanted {
            let unchanged = self
                .api
                .get(ENDPOINT_SLICES, namespace, &name)
                .is_some_and(|stored| {
                    stored["endpoints"] == slice["endpoints"] && stored["ports"] == slice["ports"]
                });
            if !unchanged {
                self.api.put(ENDPOINT_SLICES, slice);
            }
        }
    }

    /// The EndpointSlices of Service `service`.
    pub fn slices_of(&self, namespace: &str, service: &str) -> Vec<Value> {
        self.api
            .list(ENDPOINT_SLICES, Some(namespace))
            .into_iter()
            .filter(|s| s["metadata"]["labels"][SERVICE_NAME_LABEL] == service)
            .collect()
    }

    /// Creates CanaryRoute `namespace/name` with `spec`, or replaces its
    /// spec keeping its status, as `kubectl apply` does. Returns the object
    /// as stored.
    pub fn apply_canary_route(&self, namespace: &str, name: &str, spec: Value) -> Value {
        self.api.apply(
            CANARY_ROUTES,
            json!({
                "apiVersion": "weir.dev/v1alpha1",
                "kind": "CanaryRoute",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }),
        )
    }

    /// Creates AnalysisTemplate `namespace/name` with `spec`, or replaces
    /// its spec, as `kubectl apply` does. Returns the object as stored.
    pub fn apply_analysis_template(&self, namespace: &str, name: &str, spec: Value) -> Value {
        self.api.apply(
            ANALYSIS_TEMPLATES,
            json!({
                "apiVersion": "weir.dev/v1alpha1",
                "kind": "AnalysisTemplate",
                "metadata": {"name": name, "namespace": namespace},
                "spec": spec,
            }),
        )
    }

    /// CanaryRoute `namespace/name` as stored.
    ///
    /// # Panics
    /// When there is no such CanaryRoute.
    pub fn canary_route(&self, namespace: &str, name: &str) -> Value {
        self.api
            .get(CANARY_ROUTES, namespace, name)
            .unwrap_or_else(|| panic!("no CanaryRoute {namespace}/{name}"))
    }

    /// The `status` of CanaryRoute `namespace/name` (`Null` before any
    /// status write).
    ///
    /// # Panics
    /// When there is no such CanaryRoute.
    pub fn status(&self, namespace: &str, name: &str) -> Value {
        self.canary_route(namespace, name)["status"].clone()
    }

    /// `kubectl patch cnr/NAME -n NAMESPACE --subresource=status
    /// --type=merge -p PATCH`, over HTTP to the API server; `patch` is the
    /// whole patch, e.g. `{"status": {"abort": true}}`. Returns the object
    /// as stored.
    ///
    /// # Panics
    /// When the request fails or does not answer 200.
    pub async fn patch_status(&self, namespace: &str, name: &str, patch: Value) -> Value {
        let path =
            format!("/apis/weir.dev/v1alpha1/namespaces/{namespace}/canaryroutes/{name}/status");
        let request = Request::builder()
            .method(Method::PATCH)
            .uri(&path)
            .header(CONTENT_TYPE, "application/merge-patch+json")
            .body(
                Full::new(Bytes::from(patch.to_string()))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .expect("a valid request");
        let send = async { Conn::open(self.api.addr).await?.send(request).await };
        let response = crate::within(Duration::from_secs(10), &path, send)
            .await
            .unwrap_or_else(|e| panic!("PATCH {path}: {e}"));
        assert_eq!(response.status, 200, "PATCH {path}: {}", response.text());
        response.json()
    }

    /// The Services `checkout-v1` and `checkout-v2` (port 80) of
    /// `namespace`, each with one ready endpoint: `v1` and `v2`.
    pub fn add_checkout_services(&self, namespace: &str, v1: SocketAddr, v2: SocketAddr) {
        self.add_service(namespace, "checkout-v1", 80);
        self.add_service(namespace, "checkout-v2", 80);
        self.set_endpoints(namespace, "checkout-v1", &[(v1, true, true, false)]);
        self.set_endpoints(namespace, "checkout-v2", &[(v2, true, true, false)]);
    }

    /// The `events.k8s.io/v1` Events in `namespace`.
    pub fn events(&self, namespace: &str) -> Vec<Value> {
        self.api.list(EVENTS, Some(namespace))
    }

    /// Kills replica `i` with SIGKILL (`kill -9`). Its peer endpoint stays
    /// published, as a pod's does until its readiness probe fails.
    ///
    /// # Panics
    /// When there is no replica `i`.
    pub fn kill(&mut self, i: usize) {
        self.replicas[i].kill9();
    }

    /// Freezes replica `i` with SIGSTOP: it holds its sockets and its Lease
    /// record but does nothing (a hung process, or a node cut off).
    ///
    /// # Panics
    /// When `kill -STOP` fails.
    pub fn stop_process(&self, i: usize) {
        signal(self.replicas[i].pid(), "-STOP");
    }

    /// Lets replica `i` run again after [`Cluster::stop_process`] (SIGCONT).
    ///
    /// # Panics
    /// When `kill -CONT` fails.
    pub fn continue_process(&self, i: usize) {
        signal(self.replicas[i].pid(), "-CONT");
    }

    /// Starts replica `i` again after [`Cluster::kill`] (same config, ports
    /// and identity) and waits for `/readyz`.
    ///
    /// # Panics
    /// When it does not become ready.
    pub async fn restart(&mut self, i: usize) {
        self.replicas[i].restart().await;
        self.set_peer(i, self.replicas[i].addrs.admin, true);
    }

    /// The replica named as holder of the Lease, whether or not its term
    /// has run out; `None` when the Lease does not exist or names nobody.
    pub fn leader(&self) -> Option<usize> {
        let lease = self.api.get(LEASES, WEIR_NAMESPACE, LEASE)?;
        let holder = lease["spec"]["holderIdentity"].as_str()?;
        replica_index(holder)
    }

    /// Waits until some replica holds the Lease; returns it.
    ///
    /// # Panics
    /// After `limit`.
    pub async fn wait_leader(&self, limit: Duration) -> usize {
        wait_until(limit, "a leader in the Lease", || async { self.leader() }).await
    }

    /// Waits until a replica other than `old` holds the Lease; returns it.
    ///
    /// # Panics
    /// After `limit`.
    pub async fn wait_new_leader(&self, old: usize, limit: Duration) -> usize {
        let what = format!("a leader other than {}", replica_name(old));
        wait_until(limit, &what, || async {
            self.leader().filter(|leader| *leader != old)
        })
        .await
    }

    /// Polls CanaryRoute `namespace/name`'s status until `accept` returns
    /// true for it; returns that status.
    ///
    /// # Panics
    /// After `limit`, with the last status seen.
    pub async fn wait_status(
        &self,
        namespace: &str,
        name: &str,
        limit: Duration,
        what: &str,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status(namespace, name);
            if accept(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CanaryRoute {namespace}/{name}: timed out after {limit:?} waiting for {what}; \
                 last status:\n{status:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` through replica `i`'s listener, on a fresh connection.
    ///
    /// # Errors
    /// When connecting or the exchange fails.
    pub async fn get(&self, i: usize, path: &str) -> Result<Response, Error> {
        crate::client::get(self.replicas[i].addrs.http, path).await
    }
}

/// `weir-<i>`: replica `i`'s `POD_NAME` and Lease identity.
pub fn replica_name(i: usize) -> String {
    format!("weir-{i}")
}

/// The replica index in a `weir-<i>` identity.
fn replica_index(identity: &str) -> Option<usize> {
    identity.strip_prefix("weir-")?.parse().ok()
}

fn address_type(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// `kill SIGNAL PID`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}
