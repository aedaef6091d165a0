//! The validated configuration: every value checked and converted (durations,
//! weights, endpoints, paths resolved against the config file's directory).
//! Built only by [`crate::validate`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Weight;
use crate::grpc::GrpcCodeSet;

pub mod analysis_templates;

pub use analysis_templates::{
    AnalysisRef, JsonPath, JsonStep, Metric, PrometheusQuery, Provider, WebRequest,
};

/// Default admin address when the file has no `admin` section.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9900";
/// Default state directory, relative to the config file.
pub const DEFAULT_STATE_DIR: &str = "weir-state";
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time allowed for a whole response (head and body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest gap between two body chunks once the head is sent.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default most simultaneous client connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default sticky cookie lifetime.
pub const DEFAULT_STICKY_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A whole validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Downstream listeners, at least one, unique names and addresses.
    pub listeners: Vec<Listener>,
    /// The admin API.
    pub admin: Admin,
    /// Persisted rollout state, resolved against the config file's directory.
    pub state_dir: PathBuf,
    /// Routes, unique names; at least one unless `kubernetes` is set.
    pub routes: Vec<Route>,
    /// Routes from the cluster (the `kubernetes` block, or `weir run
    /// --kubernetes`); `None` when weir does not watch a cluster.
    pub kubernetes: Option<Kubernetes>,
    /// Receivers told of rollout transitions (SPEC 14).
    pub notifications: Vec<crate::Notification>,
    /// The `analysisTemplates` as written, each valid: CanaryRoutes may
    /// name them too (SPEC 13).
    pub analysis_templates: Vec<crate::schema::AnalysisTemplateSpec>,
}

/// Default name of the Lease used for leader election.
pub const DEFAULT_LEASE: &str = "weir-leader";
/// Default name of the headless Service whose endpoints are the replicas.
pub const DEFAULT_PEERS: &str = "weir-peers";

/// The `kubernetes` block: where CanaryRoutes are watched and how the
/// replicas act as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    /// Watched namespaces (DNS-1123 labels); `None` = all.
    pub namespaces: Option<BTreeSet<String>>,
    /// The Lease in weir's own namespace (a DNS-1123 subdomain).
    pub lease: String,
    /// The headless Service of the replicas (a DNS-1123 label).
    pub peers: String,
    /// Whether this replica may lead.
    pub role: KubernetesRole,
    /// Whether weir serves the Gateway API (GatewayClasses whose
    /// `controllerName` is `weir.dev/gateway-controller`, their Gateways
    /// and HTTPRoutes); `None`: when the cluster serves it, as found at
    /// the start.
    pub gateway_api: Option<bool>,
}

/// What a replica may do in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KubernetesRole {
    /// Campaigns for the Lease; the leader runs rollouts and writes status.
    #[default]
    Candidate,
    /// Never campaigns and never writes (a sidecar); routes and reports counters.
    Follower,
}

/// A downstream listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Unique name.
    pub name: String,
    /// Address to bind (an IP literal and port).
    pub address: std::net::SocketAddr,
    /// TLS files, when HTTPS.
    pub tls: Option<TlsFiles>,
    /// Most simultaneous client connections, at least 1.
    pub max_connections: usize,
}

/// Certificate and key paths, resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// The admin API's address and tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Address to bind.
    pub address: std::net::SocketAddr,
    /// Token for read-only endpoints (never empty).
    pub reader_token: Option<String>,
    /// Token for every endpoint (never empty; required when a reader token is set).
    pub writer_token: Option<String>,
}

/// An upstream endpoint as written: a host name or IP literal, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointAddr {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port, never 0.
    pub port: u16,
}

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Unique name: `[a-z0-9-]+` in `weir.yaml`, `NAMESPACE/NAME` for a
    /// CanaryRoute.
    pub name: Arc<str>,
    /// Host matchers; empty = any host.
    pub hosts: Vec<crate::HostMatch>,
    /// Path prefix, starts with `/`.
    pub path_prefix: String,
    /// The stable upstream.
    pub stable: Upstream,
    /// The canary upstream, if any.
    pub canary: Option<Upstream>,
    /// Fixed canary weight (routes without a strategy); zero when unset.
    pub fixed_weight: Weight,
    /// Cookie stickiness.
    pub stickiness: Option<Stickiness>,
    /// Header override.
    pub canary_by_header: Option<HeaderOverride>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Protocols a client may switch to with `Upgrade`, lowercase.
    pub upgrades: Vec<Arc<str>>,
    /// Rollout steps and analysis.
    pub strategy: Option<Strategy>,
    /// Retry on stable of failed canary requests; `None`: off.
    pub stable_fallback: Option<StableFallback>,
}

/// Default methods of `stableFallback`.
pub const DEFAULT_FALLBACK_METHODS: [&str; 3] = ["GET", "HEAD", "OPTIONS"];
/// Default `stableFallback.maxBodyBytes`: 64 KiB.
pub const DEFAULT_FALLBACK_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Largest `stableFallback.maxBodyBytes`: 16 MiB, since every retryable
/// request in flight holds its body in memory.
pub const MAX_FALLBACK_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Default `stableFallback.budget`: retries up to 20 % of the route's requests.
pub const DEFAULT_FALLBACK_BUDGET: f64 = 0.2;

/// `stableFallback`: a canary request that failed before any response byte
/// reached the client is sent once to stable, when its method is listed and
/// its body was kept whole under `max_body_bytes`, within the budget.
#[derive(Debug, Clone, PartialEq)]
pub struct StableFallback {
    /// Methods that may be retried (RFC 9110 tokens, case-sensitive, unique).
    pub methods: Vec<Arc<str>>,
    /// Largest request body kept for a retry, in bytes.
    pub max_body_bytes: u64,
    /// Retries allowed per request of the route over the last 10 s, above 0
    /// and at most 1.
    pub budget: f64,
}

impl Default for StableFallback {
    fn default() -> Self {
        StableFallback {
            methods: DEFAULT_FALLBACK_METHODS.map(Arc::from).to_vec(),
            max_body_bytes: DEFAULT_FALLBACK_MAX_BODY_BYTES,
            budget: DEFAULT_FALLBACK_BUDGET,
        }
    }
}

/// A revision and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Revision label.
    pub revision: Arc<str>,
    /// Endpoints: at least one in `weir.yaml`; in a CanaryRoute whose role
    /// names a Service, those listed besides it (possibly none).
    pub endpoints: Vec<EndpointAddr>,
    /// The protocol spoken to the endpoints.
    pub protocol: UpstreamProtocol,
    /// TLS to the endpoints; always set for [`UpstreamProtocol::H2`].
    pub tls: Option<Arc<UpstreamTls>>,
}

/// The protocol weir speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, pooled keep-alive connections (over TLS with `tls`).
    #[default]
    Http1,
    /// HTTP/2 in cleartext with prior knowledge: one multiplexed connection
    /// per endpoint.
    H2c,
    /// HTTP/2 over TLS, negotiated with ALPN `h2`.
    H2,
}

/// TLS from weir to an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UpstreamTls {
    /// PEM file of the trusted CAs, resolved against the config file's
    /// directory; the system's roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// The contents of `ca_file`, read by the process that loads the
    /// config (this crate does no I/O); `None` until then.
    pub ca_pem: Option<Arc<[u8]>>,
    /// SNI and the name checked in the certificate; the endpoint's host
    /// when `None`.
    pub server_name: Option<Arc<str>>,
    /// Accept any certificate.
    pub insecure_skip_verify: bool,
}

/// A Kubernetes Service named by a role of a CanaryRoute, in the route's
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceRef {
    /// The Service's name (a DNS-1123 label).
    pub name: String,
    /// One of its ports.
    pub port: PortRef,
}

/// A Service port: its number or its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    /// The Service port number, 1 to 65535.
    Number(u16),
    /// The Service port's name (an IANA service name).
    Name(String),
}

/// Cookie stickiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stickiness {
    /// Cookie name (an RFC 6265 token).
    pub cookie: Arc<str>,
    /// Cookie lifetime.
    pub max_age: Duration,
}

/// Header override: `name: value` selects canary, `name: never` selects stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOverride {
    /// Header name, lowercase.
    pub name: Arc<str>,
    /// Value that selects the canary.
    pub value: Arc<str>,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// The whole response, head and body.
    pub request: Duration,
    /// Longest gap between two body chunks (either way) once the head is
    /// sent, and longest silence inside a request body before it.
    pub idle: Duration,
}

/// A rollout strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    /// Steps, at least one.
    pub steps: Vec<Step>,
    /// Analysis thresholds (weir's defaults when the config has no
    /// `analysis` block).
    pub analysis: Analysis,
    /// The config has an `analysis` block: a step waits for a passing
    /// judgement. Without one, steps advance by time and commands alone and
    /// the default thresholds only abort a failing canary.
    pub gated_by_analysis: bool,
    /// Flagger's webhooks and their threshold (SPEC 14).
    pub webhooks: crate::Webhooks,
    /// Templates run in the background for the whole rollout
    /// (`strategy.analysis.templates`).
    pub background: Option<Arc<AnalysisRef>>,
    /// A blue-green rollout: `steps` are then those of
    /// [`BlueGreen::steps`], never written by the user.
    pub blue_green: Option<Arc<BlueGreen>>,
}

/// Default `blueGreen.scaleDownDelaySeconds`.
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);

/// `strategy.blueGreen` (SPEC 12). The rollout runs it as steps
/// ([`BlueGreen::steps`]): the preview at weight 0, the pre-promotion
/// analysis, the wait for promotion, the swap to weight 100 in one
/// snapshot, then the post-promotion analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct BlueGreen {
    /// How requests reach the new revision before the swap.
    pub preview: Preview,
    /// Promote without `weir promote`.
    pub auto_promotion_enabled: bool,
    /// Wait before an automatic promotion.
    pub auto_promotion_delay: Duration,
    /// After the promotion, how long `abort` still swaps back.
    pub scale_down_delay: Duration,
    /// Templates run against the preview before the swap.
    pub pre_promotion: Option<Arc<AnalysisRef>>,
    /// Templates run after the swap; a failure swaps back.
    pub post_promotion: Option<Arc<AnalysisRef>>,
}

/// The preview of a blue-green route: hosts and/or a header (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// Host matchers that reach the route's preview.
    pub hosts: Vec<crate::HostMatch>,
    /// Header name (lowercase) and value that reach the preview.
    pub header: Option<HeaderOverride>,
}

// === impl BlueGreen ===

impl BlueGreen {
    /// The steps the rollout runs, in order: preview (`setWeight: 0`), the
    /// pre-promotion analysis (if any), the wait for promotion (`pause: {}`
    /// without auto-promotion, a timed pause with a delay), the swap
    /// (`setWeight: 100`) and the post-promotion analysis (if any).
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = vec![Step::SetWeight(Weight::ZERO)];
        if let Some(pre) = &self.pre_promotion {
            steps.push(Step::Analysis(Arc::clone(pre)));
        }
        if !self.auto_promotion_enabled {
            steps.push(Step::Pause(None));
        } else if !self.auto_promotion_delay.is_zero() {
            steps.push(Step::Pause(Some(self.auto_promotion_delay)));
        }
        steps.push(Step::SetWeight(Weight::FULL));
        if let Some(post) = &self.post_promotion {
            steps.push(Step::Analysis(Arc::clone(post)));
        }
        steps
    }

    /// The index of the pre-promotion analysis step, if any.
    pub fn pre_promotion_step(&self) -> Option<usize> {
        self.pre_promotion.as_ref().map(|_| 1)
    }

    /// The index of the swap (`setWeight: 100`).
    pub fn swap_step(&self) -> usize {
        let waits = !self.auto_promotion_enabled || !self.auto_promotion_delay.is_zero();
        1 + usize::from(self.pre_promotion.is_some()) + usize::from(waits)
    }

    /// The index of the post-promotion analysis step, if any.
    pub fn post_promotion_step(&self) -> Option<usize> {
        self.post_promotion.as_ref().map(|_| self.swap_step() + 1)
    }

    /// The stage of a rollout at step `index` (`None`: before the first
    /// step); the stage past the last step is `Done`.
    pub fn stage_at(&self, index: Option<usize>) -> crate::status::BlueGreenStage {
        use crate::status::BlueGreenStage as Stage;
        let Some(index) = index else {
            return Stage::Preview;
        };
        let swap = self.swap_step();
        if index == 0 {
            Stage::Preview
        } else if Some(index) == self.pre_promotion_step() {
            Stage::PrePromotion
        } else if index < swap {
            Stage::AwaitingPromotion
        } else if index < self.steps_len() {
            Stage::PostPromotion
        } else {
            Stage::Done
        }
    }

    fn steps_len(&self) -> usize {
        self.swap_step() + 1 + usize::from(self.post_promotion.is_some())
    }
}

/// A rollout step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Move the canary weight.
    SetWeight(Weight),
    /// Wait for the duration, or for `promote` when `None`.
    Pause(Option<Duration>),
    /// Wait for a run of analysis templates.
    Analysis(Arc<AnalysisRef>),
}

/// Analysis thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// How often to judge.
    pub interval: Duration,
    /// How far back to look.
    pub window: Duration,
    /// Canary requests needed for a conclusive judgement.
    pub min_requests: u64,
    /// Canary error-rate limit, 0 to 1.
    pub max_error_rate: f64,
    /// Fail when the canary is significantly worse than stable.
    pub compare_to_stable: bool,
    /// Canary p99 latency limit.
    pub max_latency_p99: Option<Duration>,
    /// Failed judgements tolerated before abort.
    pub failure_limit: u32,
    /// Canary errors in the window tolerated beyond the count stable's
    /// error rate predicts for the canary's requests; above it the rollout
    /// aborts at once, whatever `minRequests` and `failureLimit` say.
    /// `None`: off.
    pub max_excess_errors: Option<u64>,
    /// gRPC statuses that count as errors of a role.
    pub grpc_error_codes: GrpcCodeSet,
}

impl Default for Kubernetes {
    /// The block with every default: all namespaces, `weir-leader`,
    /// `weir-peers`, `candidate` (what `weir run --kubernetes` uses).
    fn default() -> Self {
        Kubernetes {
            namespaces: None,
            lease: DEFAULT_LEASE.to_owned(),
            peers: DEFAULT_PEERS.to_owned(),
            role: KubernetesRole::Candidate,
            gateway_api: None,
        }
    }
}

impl Kubernetes {
    /// True when CanaryRoutes of `namespace` are watched.
    pub fn watches(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|all| all.contains(namespace))
    }
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            interval: Duration::from_secs(1),
            window: Duration::from_secs(30),
            min_requests: 20,
            max_error_rate: 0.05,
            compare_to_stable: true,
            max_latency_p99: None,
            failure_limit: 0,
            max_excess_errors: None,
            grpc_error_codes: GrpcCodeSet::DEFAULT_ERRORS,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            request: DEFAULT_REQUEST_TIMEOUT,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl UpstreamProtocol {
    /// The name written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::H2 => "h2",
        }
    }

    /// Whether the protocol is HTTP/2 (`h2c` or `h2`).
    pub const fn is_http2(self) -> bool {
        matches!(self, UpstreamProtocol::H2c | UpstreamProtocol::H2)
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
