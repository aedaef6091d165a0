//! Discovery (SPEC section 10), pure: CanaryRoutes, Services and
//! EndpointSlices, as the reflectors hold them, compiled into routes with
//! their endpoints, and every problem found on the way per route.
//!
//! No client and no clock here: the runtime fills [`ClusterObjects`] from
//! kube-runtime's reflectors and publishes what [`compile_cluster_routes`]
//! and [`snapshot_routes`] give; tests fill the maps by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_config::schema::AnalysisTemplateSpec;
use weir_config::{
    Config, EndpointAddr, HostMatch, NamespaceTemplates, PortRef, Route, ServiceRef, SpecProblem,
    Upstream,
};

use super::gateway_api::{Gateway, GatewayClass, HttpRoute};
use super::resource::{AnalysisTemplate, CanaryRoute};

/// The label of an EndpointSlice that names its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The `reason` of a [`RouteProblem`] for a spec that does not validate: the
/// CanaryRoute is not served, or served with its last spec that validated.
pub const INVALID: &str = "Invalid";
/// The `reason` of a [`RouteProblem`] for a role whose Service does not
/// exist: the role has no endpoints (the proxy answers 503).
pub const SERVICE_MISSING: &str = "ServiceMissing";
/// The `reason` of a [`RouteProblem`] for a role whose Service has no such
/// port: the role has no endpoints (the proxy answers 503). Also that of an
/// EndpointSlice of the Service whose endpoints are not used: it has no
/// such port, or its `addressType` is FQDN.
pub const PORT_MISSING: &str = "PortMissing";
/// The `reason` of a [`RouteProblem`] for a role whose Service and port
/// exist but have no endpoint that is ready, or serving while terminating,
/// and that lists none of its own: the role answers 503.
pub const ENDPOINTS_MISSING: &str = "EndpointsMissing";
/// The `addressType` of an EndpointSlice whose addresses are DNS names:
/// weir does not resolve them, and reports such a slice of a role's Service
/// (as [`PORT_MISSING`], the problem of a slice whose endpoints go unused).
pub const FQDN_ADDRESS_TYPE: &str = "FQDN";
/// The `reason` of a [`RouteProblem`] for a CanaryRoute that matches the
/// same hosts and path prefix as a file route or an older CanaryRoute: it
/// is not served.
pub const CONFLICT: &str = "Conflict";

/// The `reason` of a [`RouteProblem`] for an analysis that names an
/// AnalysisTemplate that is missing or invalid (or leaves one of its
/// arguments without a value): the route is served, the analysis waits.
pub const ANALYSIS_TEMPLATE_UNRESOLVED: &str = "AnalysisTemplateUnresolved";

/// The objects discovery reads, keyed by namespace and name; the values are
/// shared with the reflectors' stores.
#[derive(Debug, Clone, Default)]
pub struct ClusterObjects {
    /// CanaryRoutes of every namespace (those not watched are skipped).
    pub canary_routes: BTreeMap<ObjectKey, Arc<CanaryRoute>>,
    /// AnalysisTemplates, which CanaryRoutes of their namespace name.
    pub analysis_templates: BTreeMap<ObjectKey, Arc<AnalysisTemplate>>,
    /// Services.
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// EndpointSlices (`discovery.k8s.io/v1`).
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// GatewayClasses (cluster-scoped: empty namespace), when the Gateway
    /// API is watched.
    pub gateway_classes: BTreeMap<ObjectKey, Arc<GatewayClass>>,
    /// Gateways.
    pub gateways: BTreeMap<ObjectKey, Arc<Gateway>>,
    /// HTTPRoutes.
    pub http_routes: BTreeMap<ObjectKey, Arc<HttpRoute>>,
}

/// The namespace and name of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// The routes of the cluster and the problems found compiling them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompiledCluster {
    /// The routes served, by name (`NAMESPACE/NAME`).
    pub routes: Vec<ClusterRoute>,
    /// Per route name, what is wrong with it (a route may be served and
    /// still have problems: a missing Service leaves one role empty).
    pub problems: BTreeMap<String, Vec<RouteProblem>>,
    /// Per AnalysisTemplate that does not validate, its problems, each
    /// naming its field.
    pub template_problems: BTreeMap<ObjectKey, Vec<SpecProblem>>,
    /// Per CanaryRoute, the last spec of it that validated: the next
    /// compilation serves it while an edit does not validate.
    pub last_valid: LastValid,
}

/// Per CanaryRoute, the last spec of it that validated.
pub type LastValid = BTreeMap<ObjectKey, ValidSpec>;

/// A CanaryRoute's spec that validated, and which object it was.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    /// The object's `uid`: a CanaryRoute made again under the name is
    /// another object, and never served with this spec.
    pub uid: Option<String>,
    /// The `metadata.generation` of the spec.
    pub generation: Option<i64>,
    /// The spec, as the API server returned it.
    pub spec: serde_json::Value,
}

/// A route compiled from a CanaryRoute.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRoute {
    /// The route, each role's endpoints those of its Service plus those
    /// listed, sorted and each once.
    pub route: Route,
    /// The CanaryRoute's `metadata.generation` the route was compiled from.
    pub generation: Option<i64>,
}

/// One problem of a CanaryRoute, for a condition and an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProblem {
    /// The field (`spec.strategy.steps[1]`) or the role (`stable`,
    /// `canary`) it is about.
    pub field_or_role: String,
    /// One CamelCase word: [`INVALID`], [`SERVICE_MISSING`],
    /// [`PORT_MISSING`], [`ENDPOINTS_MISSING`], [`CONFLICT`] or
    /// [`ANALYSIS_TEMPLATE_UNRESOLVED`].
    pub reason: &'static str,
    /// What is wrong, for a human.
    pub message: String,
}

/// The routes a snapshot is built from: the file's, then the cluster's that
/// do not collide with one of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotRoutes {
    /// File routes in file order, then cluster routes by name.
    pub routes: Vec<Route>,
    /// Cluster routes left out because a file route matches the same
    /// requests, with the problem to report.
    pub conflicts: BTreeMap<String, Vec<RouteProblem>>,
}

/// A role's endpoints gathered from its Service's EndpointSlices.
#[derive(Default)]
struct Gathered {
    /// Ready and not terminating.
    ready: BTreeSet<EndpointAddr>,
    /// Serving and terminating: used only when none is ready.
    terminating: BTreeSet<EndpointAddr>,
}

/// What a route matches: its hosts (sorted) and path prefix.
type MatchKey = (Vec<String>, String);

/// Compiles the CanaryRoutes of the watched `namespaces` (`None`: all) with
/// the endpoints of their Services, resolving their analysis templates
/// among the AnalysisTemplates of their namespace and `file_templates`
/// (the `analysisTemplates` of `weir.yaml`).
///
/// A role naming a Service gets the endpoints of the Service's
/// EndpointSlices (label [`SERVICE_NAME_LABEL`]) that are ready and not
/// terminating, or, when there are none, those serving and terminating,
/// plus the endpoints the spec lists. A Service or port that does not exist
/// leaves the role without them and is reported, as is a slice of
/// `addressType` FQDN, whose names are not used. A spec that does not
/// validate gives a problem per field, and no route unless an earlier spec
/// of the same object validated (in `last_valid`, the previous
/// compilation's, or in its status's `lastValidSpec`): that one is served
/// meanwhile, as a config file that
/// fails to reload leaves the running config serving. A CanaryRoute
/// matching the same requests as an older one (by creation time, then
/// name) is left out. Other routes are never affected.
pub fn compile_cluster_routes(
    objects: &ClusterObjects,
    namespaces: Option<&BTreeSet<String>>,
    file_templates: &[AnalysisTemplateSpec],
    last_valid: &LastValid,
) -> CompiledCluster {
    let slices = slices_by_service(objects);
    let mut compiled = CompiledCluster::default();
    let mut templates: BTreeMap<&str, NamespaceTemplates> = BTreeMap::new();
    for (key, template) in &objects.analysis_templates {
        if namespaces.is_some_and(|watched| !watched.contains(&key.namespace)) {
            continue;
        }
        let in_namespace = templates.entry(key.namespace.as_str()).or_insert_with(|| {
            NamespaceTemplates::new(&key.namespace).with_file_templates(file_templates)
        });
        if let Err(problems) = in_namespace.insert(&key.name, &template.spec.as_json()) {
            compiled.template_problems.insert(key.clone(), problems);
        }
    }
    let mut candidates: Vec<(ClusterRoute, Option<&Time>)> = Vec::new();
    for (key, canary_route) in &objects.canary_routes {
        if namespaces.is_some_and(|watched| !watched.contains(&key.namespace)) {
            continue;
        }
        let name = key.to_string();
        let mut problems = Vec::new();
        let none = NamespaceTemplates::new(&key.namespace).with_file_templates(file_templates);
        let templates = templates.get(key.namespace.as_str()).unwrap_or(&none);
        let spec = canary_route.spec.as_json();
        let compiled_now = compile_one(key, spec, templates, objects, &slices, &mut problems);
        let served = match compiled_now {
            Some(route) => {
                let generation = canary_route.metadata.generation;
                compiled.last_valid.insert(
                    key.clone(),
                    ValidSpec {
                        uid: canary_route.metadata.uid.clone(),
                        generation,
                        spec: spec.clone(),
                    },
                );
                Some((route, generation))
            }
            None => earlier_valid(canary_route, last_valid.get(key)).and_then(|last| {
                let mut served_problems = Vec::new();
                let route = compile_one(
                    key,
                    &last.spec,
                    templates,
                    objects,
                    &slices,
                    &mut served_problems,
                )?;
                problems.extend(served_problems);
                problems.push(RouteProblem {
                    field_or_role: "spec".to_owned(),
                    reason: INVALID,
                    message: format!(
                        "the last spec that validated ({}) is served until this one does",
                        last.generation
                            .map_or("an earlier generation".to_owned(), |g| format!(
                                "generation {g}"
                            ))
                    ),
                });
                compiled.last_valid.insert(key.clone(), last.clone());
                Some((route, last.generation))
            }),
        };
        if let Some((route, generation)) = served {
            candidates.push((
                ClusterRoute { route, generation },
                canary_route.metadata.creation_timestamp.as_ref(),
            ));
        }
        if !problems.is_empty() {
            compiled.problems.insert(name, problems);
        }
    }
    // The oldest CanaryRoute of those matching the same requests serves.
    candidates.sort_by(|(a, a_created), (b, b_created)| {
        (a_created.is_none(), a_created, &a.route.name).cmp(&(
            b_created.is_none(),
            b_created,
            &b.route.name,
        ))
    });
    let mut served: BTreeMap<MatchKey, Arc<str>> = BTreeMap::new();
    for (route, _) in candidates {
        let key = match_key(&route.route);
        match served.get(&key) {
            Some(older) => {
                let problem = conflict(&key, &format!("the older CanaryRoute `{older}`"));
                compiled
                    .problems
                    .entry(route.route.name.to_string())
                    .or_default()
                    .push(problem);
            }
            None => {
                served.insert(key, Arc::clone(&route.route.name));
                compiled.routes.push(route);
            }
        }
    }
    compiled
        .routes
        .sort_by(|a, b| a.route.name.cmp(&b.route.name));
    compiled
}

/// The last spec of `canary_route` that validated: the one this replica
/// served (`remembered`, when of the same object), or the one its status
/// keeps (`lastValidSpec`, written by the leader), whichever is of the
/// later generation, so that a replica started while an edit does not
/// validate serves what the others serve. Either is validated again before
/// it is served.
fn earlier_valid(canary_route: &CanaryRoute, remembered: Option<&ValidSpec>) -> Option<ValidSpec> {
    let remembered = remembered.filter(|last| last.uid == canary_route.metadata.uid);
    let recorded = canary_route
        .status
        .as_ref()
        .and_then(|status| status.last_valid_spec.as_ref())
        // An earlier generation than the object's own, as the leader
        // writes it: one patched in by hand with a later one is not
        // taken over what this replica remembers.
        .filter(|kept| {
            kept.spec.is_object()
                && kept
                    .generation
                    .is_some_and(|g| canary_route.metadata.generation.is_none_or(|now| g <= now))
        })
        .map(|kept| ValidSpec {
            uid: canary_route.metadata.uid.clone(),
            generation: kept.generation,
            spec: kept.spec.clone(),
        });
    match (remembered, recorded) {
        (Some(remembered), Some(recorded)) if recorded.generation > remembered.generation => {
            Some(recorded)
        }
        (Some(remembered), _) => Some(remembered.clone()),
        (None, recorded) => recorded,
    }
}

/// The routes of a snapshot: the file's routes first, in file order, then
/// the cluster's by name, leaving out (and reporting) a cluster route that
/// matches the same hosts and path prefix as a file route.
pub fn snapshot_routes(config: &Config, cluster: &CompiledCluster) -> SnapshotRoutes {
    let file: BTreeMap<MatchKey, &str> = config
        .routes
        .iter()
        .map(|route| (match_key(route), &*route.name))
        .collect();
    let mut out = SnapshotRoutes {
        routes: Vec::with_capacity(config.routes.len() + cluster.routes.len()),
        conflicts: BTreeMap::new(),
    };
    out.routes.extend(config.routes.iter().cloned());
    let mut hosts = HostOwners::default();
    for route in &config.routes {
        hosts.claim(route, &format!("the weir.yaml route `{}`", route.name));
    }
    for cluster_route in &cluster.routes {
        let route = &cluster_route.route;
        let key = match_key(route);
        let problem = match file.get(&key) {
            Some(owner) => Some(conflict(&key, &format!("the weir.yaml route `{owner}`"))),
            None => hosts.preview_conflict(route),
        };
        match problem {
            Some(problem) => out
                .conflicts
                .entry(route.name.to_string())
                .or_default()
                .push(problem),
            None => {
                hosts.claim(route, &format!("the CanaryRoute `{}`", route.name));
                out.routes.push(route.clone());
            }
        }
    }
    out
}

/// The hosts and blue-green preview hosts of the routes served so far, with
/// who serves them: a preview host must reach one route's preview only.
#[derive(Default)]
struct HostOwners {
    hosts: BTreeMap<String, String>,
    previews: BTreeMap<String, String>,
}

impl HostOwners {
    fn claim(&mut self, route: &Route, owner: &str) {
        for host in &route.hosts {
            self.hosts
                .entry(host_text(host))
                .or_insert_with(|| owner.to_owned());
        }
        for host in preview_hosts(route) {
            self.previews
                .entry(host_text(host))
                .or_insert_with(|| owner.to_owned());
        }
    }

    /// The conflict of a route whose preview host is a host or preview host
    /// of a route served already (or one of its own hosts), or whose host
    /// is a preview host of one.
    fn preview_conflict(&self, route: &Route) -> Option<RouteProblem> {
        let own: Vec<String> = route.hosts.iter().map(host_text).collect();
        let problem = |field: &str, message: String| RouteProblem {
            field_or_role: field.to_owned(),
            reason: CONFLICT,
            message,
        };
        for host in preview_hosts(route).map(host_text) {
            let owner = if own.contains(&host) {
                Some("this CanaryRoute itself")
            } else {
                self.hosts
                    .get(&host)
                    .or(self.previews.get(&host))
                    .map(String::as_str)
            };
            if let Some(owner) = owner {
                return Some(problem(
                    "spec.strategy.blueGreen.preview.hosts",
                    format!(
                        "preview host `{host}` is also served by {owner}; a preview host must reach only this route's new revision, so give the preview a host of its own"
                    ),
                ));
            }
        }
        own.iter().find_map(|host| {
            let owner = self.previews.get(host)?;
            Some(problem(
                "spec.hosts",
                format!(
                    "host `{host}` is a blue-green preview host of {owner}, which keeps it; give this CanaryRoute other hosts"
                ),
            ))
        })
    }
}

fn preview_hosts(route: &Route) -> impl Iterator<Item = &HostMatch> {
    route
        .strategy
        .iter()
        .filter_map(|s| s.blue_green.as_deref())
        .flat_map(|bg| bg.preview.hosts.iter())
}

fn host_text(host: &HostMatch) -> String {
    match host {
        HostMatch::Exact(name) => name.clone(),
        HostMatch::Suffix(suffix) => format!("*{suffix}"),
    }
}

/// Validates the spec of the CanaryRoute `key` and gives its roles their
/// endpoints; records its problems.
fn compile_one(
    key: &ObjectKey,
    spec: &serde_json::Value,
    templates: &NamespaceTemplates,
    objects: &ClusterObjects,
    slices: &BTreeMap<(&str, &str), Vec<&EndpointSlice>>,
    problems: &mut Vec<RouteProblem>,
) -> Option<Route> {
    let valid =
        match weir_config::validate_canary_route_in(&key.namespace, &key.name, spec, templates) {
            Ok(valid) => valid,
            Err(invalid) => {
                problems.extend(invalid.into_iter().map(|problem| RouteProblem {
                    field_or_role: problem.path,
                    reason: INVALID,
                    message: problem.message,
                }));
                return None;
            }
        };
    problems.extend(valid.waiting.into_iter().map(|problem| RouteProblem {
        field_or_role: problem.path,
        reason: ANALYSIS_TEMPLATE_UNRESOLVED,
        message: format!(
            "{}; the analysis waits until it is resolved",
            problem.message
        ),
    }));
    let mut route = valid.route;
    if let Some(service) = &valid.stable_service {
        let known = problems.len();
        let found = role_endpoints(&key.namespace, "stable", service, objects, slices, problems);
        no_endpoints(
            &key.namespace,
            "stable",
            service,
            &route.stable,
            &found,
            known,
            problems,
        );
        add_endpoints(&mut route.stable, found);
    }
    if let (Some(canary), Some(service)) = (&mut route.canary, &valid.canary_service) {
        let known = problems.len();
        let found = role_endpoints(&key.namespace, "canary", service, objects, slices, problems);
        no_endpoints(
            &key.namespace,
            "canary",
            service,
            canary,
            &found,
            known,
            problems,
        );
        add_endpoints(canary, found);
    }
    Some(route)
}

/// Reports [`ENDPOINTS_MISSING`] for `role` when its Service gave no
/// endpoint (`found`), the role lists none of its own, and nothing else
/// was said about it since `problems` held `known` entries (a missing
/// Service or port says why already).
fn no_endpoints(
    namespace: &str,
    role: &str,
    service: &ServiceRef,
    upstream: &Upstream,
    found: &BTreeSet<EndpointAddr>,
    known: usize,
    problems: &mut Vec<RouteProblem>,
) {
    if found.is_empty() && upstream.endpoints.is_empty() && problems.len() == known {
        problems.push(RouteProblem {
            field_or_role: role.to_owned(),
            reason: ENDPOINTS_MISSING,
            message: format!(
                "the {role} Service `{namespace}/{}` has no endpoint that is ready (or serving while terminating); the {role} role answers 503 until it has",
                service.name
            ),
        });
    }
}

/// The role's endpoints: those listed and those found, sorted, each once.
fn add_endpoints(upstream: &mut Upstream, found: BTreeSet<EndpointAddr>) {
    let mut all = found;
    all.extend(upstream.endpoints.drain(..));
    upstream.endpoints = all.into_iter().collect();
}

/// The endpoints of `service` in `namespace` for `role`: ready ones, else
/// serving and terminating ones; none (and a problem) when the Service or
/// its port does not exist. Slices of `addressType` FQDN are skipped with a
/// problem.
pub(crate) fn role_endpoints(
    namespace: &str,
    role: &str,
    service: &ServiceRef,
    objects: &ClusterObjects,
    slices: &BTreeMap<(&str, &str), Vec<&EndpointSlice>>,
    problems: &mut Vec<RouteProblem>,
) -> BTreeSet<EndpointAddr> {
    let key = ObjectKey::new(namespace, &service.name);
    let Some(found) = objects.services.get(&key) else {
        problems.push(RouteProblem {
            field_or_role: role.to_owned(),
            reason: SERVICE_MISSING,
            message: format!(
                "the {role} Service `{key}` does not exist; the {role} role answers 503 until it does"
            ),
        });
        return BTreeSet::new();
    };
    let ports = found
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default();
    let Some(port) = ports.iter().find(|p| is_port(p, &service.port)) else {
        problems.push(RouteProblem {
            field_or_role: role.to_owned(),
            reason: PORT_MISSING,
            message: format!(
                "the {role} Service `{key}` has no port `{}` (its ports: {}); the {role} role answers 503 until it has",
                service.port,
                describe_ports(ports)
            ),
        });
        return BTreeSet::new();
    };
    let mut gathered = Gathered::default();
    for slice in slices
        .get(&(namespace, service.name.as_str()))
        .into_iter()
        .flatten()
    {
        if slice.address_type == FQDN_ADDRESS_TYPE {
            // Names, not addresses: weir routes to the IP addresses of
            // EndpointSlices and never resolves these, so they are left out
            // here (where, ready, they would also hide terminating
            // endpoints) and said to be left out.
            if !slice.endpoints.is_empty() {
                problems.push(RouteProblem {
                    field_or_role: role.to_owned(),
                    reason: PORT_MISSING,
                    message: format!(
                        "EndpointSlice `{namespace}/{}` of the {role} Service `{key}` has addressType FQDN, which weir does not resolve; {} not used",
                        slice.metadata.name.as_deref().unwrap_or_default(),
                        match slice.endpoints.len() {
                            1 => "its 1 endpoint is".to_owned(),
                            n => format!("its {n} endpoints are"),
                        }
                    ),
                });
            }
            continue;
        }
        let Some(number) = slice_port(slice, port) else {
            if !slice.endpoints.is_empty() {
                problems.push(RouteProblem {
                    field_or_role: role.to_owned(),
                    reason: PORT_MISSING,
                    message: format!(
                        "EndpointSlice `{namespace}/{}` of the {role} Service `{key}` has no port for Service port `{}`; its endpoints are not used",
                        slice.metadata.name.as_deref().unwrap_or_default(),
                        service.port
                    ),
                });
            }
            continue;
        };
        for endpoint in &slice.endpoints {
            gathered.add(endpoint, number);
        }
    }
    if gathered.ready.is_empty() {
        gathered.terminating
    } else {
        gathered.ready
    }
}

/// True when the Service port `port` is the one `wanted` names.
fn is_port(port: &ServicePort, wanted: &PortRef) -> bool {
    match wanted {
        PortRef::Number(n) => port.port == i32::from(*n),
        PortRef::Name(name) => port.name.as_deref() == Some(name.as_str()),
    }
}

/// The port number the endpoints of `slice` serve the Service port on.
///
/// The EndpointSlice controller names each slice port after its Service
/// port and gives it the number `targetPort` resolves to on the pods; a
/// slice written by hand may instead name it after a `targetPort` name, or
/// leave the ports out, in which case a numeric `targetPort` (default: the
/// port itself) applies.
fn slice_port(slice: &EndpointSlice, port: &ServicePort) -> Option<u16> {
    let slice_ports = slice.ports.as_deref().unwrap_or_default();
    let named = |name: &str| {
        slice_ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or_default() == name)
            .and_then(|p| p.port)
    };
    let number =
        named(port.name.as_deref().unwrap_or_default()).or_else(|| match &port.target_port {
            Some(IntOrString::String(target)) => named(target),
            Some(IntOrString::Int(n)) => Some(*n),
            None => Some(port.port),
        })?;
    u16::try_from(number).ok().filter(|n| *n != 0)
}

/// The Service ports, for a message: `http 80, 9090`.
fn describe_ports(ports: &[ServicePort]) -> String {
    if ports.is_empty() {
        return "none".to_owned();
    }
    ports
        .iter()
        .map(|p| match &p.name {
            Some(name) if !name.is_empty() => format!("`{name}` {}", p.port),
            _ => p.port.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The admin addresses of the replicas: the ready endpoints of the peers
/// Service `service` in `namespace`, on each slice's port named `admin` (or
/// its only port), of one address family, sorted.
pub fn peer_addresses(objects: &ClusterObjects, namespace: &str, service: &str) -> Vec<SocketAddr> {
    let mut gathered = Gathered::default();
    let slices = slices_by_service(objects);
    for slice in slices.get(&(namespace, service)).into_iter().flatten() {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("admin"))
            .or(if ports.len() == 1 {
                ports.first()
            } else {
                None
            })
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        if let Some(port) = port {
            for endpoint in &slice.endpoints {
                gathered.add(endpoint, port);
            }
        }
    }
    let mut addresses: Vec<SocketAddr> = gathered
        .ready
        .iter()
        .filter_map(|e| Some(SocketAddr::new(e.host.parse().ok()?, e.port)))
        .collect();
    // A dual-stack Service has a slice per family, each replica in both:
    // one family only (IPv4 when there is any), or every replica would be
    // counted twice.
    if addresses.iter().any(SocketAddr::is_ipv4) {
        addresses.retain(SocketAddr::is_ipv4);
    }
    addresses.sort_unstable();
    addresses
}

/// The EndpointSlices of each Service, by namespace and Service name.
pub(crate) fn slices_by_service(
    objects: &ClusterObjects,
) -> BTreeMap<(&str, &str), Vec<&EndpointSlice>> {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for (key, slice) in &objects.endpoint_slices {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(SERVICE_NAME_LABEL));
        if let Some(service) = service {
            by_service
                .entry((key.namespace.as_str(), service.as_str()))
                .or_default()
                .push(slice);
        }
    }
    by_service
}

/// What a route matches, to find two routes that match the same requests.
fn match_key(route: &Route) -> MatchKey {
    let mut hosts: Vec<String> = route
        .hosts
        .iter()
        .map(|h| match h {
            HostMatch::Exact(name) => name.clone(),
            HostMatch::Suffix(suffix) => format!("*{suffix}"),
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    (hosts, route.path_prefix.clone())
}

fn conflict((hosts, path_prefix): &MatchKey, owner: &str) -> RouteProblem {
    let hosts = if hosts.is_empty() {
        "any host".to_owned()
    } else {
        format!("hosts [{}]", hosts.join(", "))
    };
    RouteProblem {
        field_or_role: "spec.pathPrefix".to_owned(),
        reason: CONFLICT,
        message: format!(
            "{owner} already matches {hosts} with pathPrefix `{path_prefix}` and keeps serving them; give this CanaryRoute other hosts or another pathPrefix"
        ),
    }
}

/// An address as the proxy dials it: IP literals in their canonical form
/// (so `fd00::01` and `fd00::1` are one endpoint), names lowercase.
fn endpoint_addr(address: &str, port: u16) -> EndpointAddr {
    let host = match address.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => address.trim_end_matches('.').to_ascii_lowercase(),
    };
    EndpointAddr { host, port }
}

// === impl Gathered ===

impl Gathered {
    /// Files the endpoint's addresses by its conditions. As the
    /// EndpointSlice API says, an unknown `ready` counts as ready, an
    /// unknown `serving` as `ready`, an unknown `terminating` as not.
    fn add(&mut self, endpoint: &Endpoint, port: u16) {
        let conditions = endpoint.conditions.as_ref();
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        let set = if ready && !terminating {
            &mut self.ready
        } else if serving && terminating {
            &mut self.terminating
        } else {
            return;
        };
        set.extend(endpoint.addresses.iter().map(|a| endpoint_addr(a, port)));
    }
}

// === impl ObjectKey ===

impl ObjectKey {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The key of an object from its metadata (empty parts when absent).
    pub fn of(metadata: &ObjectMeta) -> ObjectKey {
        ObjectKey::new(
            metadata.namespace.as_deref().unwrap_or_default(),
            metadata.name.as_deref().unwrap_or_default(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

// === impl RouteProblem ===

impl fmt::Display for RouteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field_or_role, self.message)
    }
}

#[cfg(test)]
mod tests;
