//! The immutable routing snapshot the proxy serves: routes with their split,
//! resolved endpoint addresses and the canary weight in force.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::Weight;
use crate::grpc::GrpcCodeSet;
use crate::model::{
    Config, EndpointAddr, HeaderOverride, StableFallback, Stickiness, Timeouts, UpstreamProtocol,
    UpstreamTls,
};

/// Everything the proxy needs to route requests, fixed once built.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Set by the [`crate::Publisher`]: increases with every publish.
    pub version: u64,
    /// Routes in config order.
    pub routes: Vec<RouteSnapshot>,
}

/// A host matcher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// An exact, lowercase host name.
    Exact(String),
    /// `*.example.com`: held as `.example.com`; matches any name ending in it.
    Suffix(String),
}

/// One route of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSnapshot {
    /// Route name (metric label, URL segment).
    pub name: Arc<str>,
    /// Host matchers; empty = any host.
    pub hosts: Vec<HostMatch>,
    /// Path prefix, starts with `/`.
    pub path_prefix: String,
    /// Where requests go.
    pub split: Split,
    /// Header override.
    pub canary_by_header: Option<HeaderOverride>,
    /// Cookie stickiness.
    pub stickiness: Option<Stickiness>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Protocols a client may switch to with `Upgrade`, lowercase.
    pub upgrades: Vec<Arc<str>>,
    /// Retry on stable of failed canary requests; `None`: off.
    pub stable_fallback: Option<StableFallback>,
    /// gRPC statuses that count as errors of a role.
    pub grpc_error_codes: GrpcCodeSet,
    /// A Gateway API rule (an HTTPRoute's match and its backends): when set,
    /// it narrows the match and its weighted backends replace `split`.
    pub gateway: Option<Arc<GatewayRule>>,
    /// A blue-green route's preview: its hosts also find this route; while
    /// it is live, requests through them or with its header go to the canary.
    pub preview: Option<PreviewSnapshot>,
}

/// The preview of a blue-green route in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewSnapshot {
    /// Hosts that reach the preview (and otherwise the route as usual).
    pub hosts: Vec<HostMatch>,
    /// Header name (lowercase) and value that reach the preview.
    pub header: Option<HeaderOverride>,
    /// Whether preview requests go to the canary now (a blue-green rollout
    /// is in progress or promoted); when not, they follow the weight.
    pub live: bool,
}

/// One match of one rule of a Gateway API HTTPRoute, served as a route: the
/// conditions a request must meet beyond host and path prefix, the weighted
/// backends it goes to and the header edits on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayRule {
    /// The path must equal the route's `path_prefix` (`Exact`) rather than
    /// start with it (`PathPrefix`).
    pub exact_path: bool,
    /// The ports of the weir listeners it is served on (those of the
    /// Gateway listeners it is attached to); empty: every listener.
    pub listener_ports: Vec<u16>,
    /// The request method, uppercase, when the match names one.
    pub method: Option<String>,
    /// Headers the request must carry: lowercase name, exact value.
    pub headers: Vec<(String, String)>,
    /// Headers whose whole value must match a regular expression:
    /// lowercase name, pattern (a valid `regex` crate pattern).
    pub header_patterns: Vec<(String, String)>,
    /// The backends: each gets `weight / Σ weights` of the requests. No
    /// backend, or all weights 0: the request is answered 500.
    pub backends: Vec<WeightedBackend>,
    /// Edits of the request headers before forwarding.
    pub request_headers: HeaderEdits,
    /// Edits of the response headers before they go downstream.
    pub response_headers: HeaderEdits,
}

/// A backend of a Gateway API rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedBackend {
    /// The backend Service's name: the `role` label of its metrics.
    pub name: Arc<str>,
    /// Its weight, 0 to 1,000,000.
    pub weight: u32,
    /// Whether the reference resolved (the Service and port exist); the
    /// share of an unresolved one is answered 500, as the Gateway API asks.
    pub resolved: bool,
    /// Resolved addresses (empty: its share is answered 503).
    pub endpoints: Vec<SocketAddr>,
    /// Edits of the request headers for this backend only (after the rule's).
    pub request_headers: HeaderEdits,
    /// Edits of the response headers for this backend only (after the rule's).
    pub response_headers: HeaderEdits,
}

/// The edits of a header modifier filter, applied in the order remove, set, add.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderEdits {
    /// Headers replaced (or added when absent): lowercase name, value.
    pub set: Vec<(String, String)>,
    /// Headers appended: lowercase name, value.
    pub add: Vec<(String, String)>,
    /// Headers removed, lowercase.
    pub remove: Vec<String>,
}

/// The stable and canary backends and the weight between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The stable backend.
    pub stable: Backend,
    /// The canary backend, if the route has one.
    pub canary: Option<Backend>,
    /// Share of requests (or sticky clients) sent to the canary.
    pub canary_weight: Weight,
    /// Seed of the sticky-cookie hash: derived from the rollout id, so each
    /// rollout picks its own cohort of clients.
    pub cohort_seed: u64,
}

/// A revision and the addresses of its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Revision label.
    pub revision: Arc<str>,
    /// Resolved addresses (may be empty while a name does not resolve).
    pub endpoints: Vec<SocketAddr>,
    /// The protocol spoken to the endpoints.
    pub protocol: UpstreamProtocol,
    /// TLS to the endpoints.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// What control decides for a route with a rollout: the weight in force and
/// the rollout's sequence number (part of the rollout id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOverride {
    /// Canary weight in force.
    pub canary_weight: Weight,
    /// Rollout sequence number.
    pub rollout_seq: u64,
    /// A blue-green route's preview sends its requests to the new
    /// revision; false once the rollout is aborted.
    pub preview_live: bool,
}

/// The sticky-cookie hash seed of a rollout: route name, canary revision and,
/// for a rollout, its sequence number (`None` for a fixed split, so editing a
/// fixed weight keeps every cohort).
pub fn cohort_seed(route: &str, canary_revision: &str, rollout_seq: Option<u64>) -> u64 {
    let mut bytes = Vec::with_capacity(route.len() + canary_revision.len() + 10);
    bytes.extend_from_slice(route.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(canary_revision.as_bytes());
    if let Some(seq) = rollout_seq {
        bytes.push(0);
        bytes.extend_from_slice(&seq.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// `tls` with its server name: `serverName` when written, else the host
/// the endpoints share (a DNS name), else none (each endpoint is then
/// checked by its IP address).
fn tls_with_name(tls: &Arc<UpstreamTls>, endpoints: &[EndpointAddr]) -> Arc<UpstreamTls> {
    if tls.server_name.is_some() {
        return Arc::clone(tls);
    }
    let mut hosts = endpoints.iter().map(|e| e.host.as_str());
    let shared = hosts
        .next()
        .filter(|first| first.parse::<std::net::IpAddr>().is_err())
        .filter(|first| endpoints.iter().all(|e| e.host == *first));
    match shared {
        Some(host) => Arc::new(UpstreamTls {
            server_name: Some(Arc::from(host)),
            ..UpstreamTls::clone(tls)
        }),
        None => Arc::clone(tls),
    }
}

// === impl HeaderEdits ===

impl HeaderEdits {
    /// True when the filter changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

// === impl Snapshot ===

impl Snapshot {
    /// Builds a snapshot from a validated config.
    ///
    /// `overrides` gives, per route name, the weight and rollout sequence
    /// decided by control (routes with a strategy); other routes use their
    /// fixed weight. `resolve` turns an endpoint into addresses; an endpoint
    /// that does not resolve contributes none.
    pub fn compile(
        config: &Config,
        overrides: &dyn Fn(&str) -> Option<RouteOverride>,
        resolve: &dyn Fn(&EndpointAddr) -> Vec<SocketAddr>,
    ) -> Snapshot {
        Snapshot::compile_routes(&config.routes, overrides, resolve)
    }

    /// Builds a snapshot from validated routes, in the order given: the
    /// file's routes and those of CanaryRoutes alike (see [`Snapshot::compile`]).
    /// A role without endpoints gets an empty backend (the proxy answers 503).
    pub fn compile_routes(
        routes: &[crate::Route],
        overrides: &dyn Fn(&str) -> Option<RouteOverride>,
        resolve: &dyn Fn(&EndpointAddr) -> Vec<SocketAddr>,
    ) -> Snapshot {
        let backend = |upstream: &crate::Upstream| Backend {
            revision: Arc::clone(&upstream.revision),
            endpoints: upstream.endpoints.iter().flat_map(resolve).collect(),
            protocol: upstream.protocol,
            tls: upstream
                .tls
                .as_ref()
                .map(|tls| tls_with_name(tls, &upstream.endpoints)),
        };
        let routes = routes
            .iter()
            .map(|route| {
                let over = overrides(&route.name);
                let preview = route
                    .strategy
                    .as_ref()
                    .and_then(|s| s.blue_green.as_ref())
                    .map(|bg| PreviewSnapshot {
                        hosts: bg.preview.hosts.clone(),
                        header: bg.preview.header.clone(),
                        live: route.canary.is_some() && over.is_some_and(|o| o.preview_live),
                    });
                let (canary_weight, seq) = match (over, &route.strategy) {
                    (Some(o), _) => (o.canary_weight, Some(o.rollout_seq)),
                    // A rollout that control has not started yet sends nothing to the canary.
                    (None, Some(_)) => (Weight::ZERO, Some(0)),
                    (None, None) => (route.fixed_weight, None),
                };
                let canary = route.canary.as_ref().map(backend);
                let canary_revision = route.canary.as_ref().map_or("", |c| &*c.revision);
                RouteSnapshot {
                    name: Arc::clone(&route.name),
                    hosts: route.hosts.clone(),
                    path_prefix: route.path_prefix.clone(),
                    split: Split {
                        stable: backend(&route.stable),
                        canary_weight: if canary.is_some() {
                            canary_weight
                        } else {
                            Weight::ZERO
                        },
                        canary,
                        cohort_seed: cohort_seed(&route.name, canary_revision, seq),
                    },
                    // SPEC section 3: the header decides first, in every
                    // phase, an aborted rollout's too.
                    canary_by_header: route.canary_by_header.clone(),
                    stickiness: route.stickiness.clone(),
                    timeouts: route.timeouts,
                    upgrades: route.upgrades.clone(),
                    stable_fallback: route.stable_fallback.clone(),
                    grpc_error_codes: route
                        .strategy
                        .as_ref()
                        .map_or(GrpcCodeSet::DEFAULT_ERRORS, |s| s.analysis.grpc_error_codes),
                    gateway: None,
                    preview,
                }
            })
            .collect();
        Snapshot { version: 0, routes }
    }
}
