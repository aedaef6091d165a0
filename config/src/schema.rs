//! The `weir.yaml` file as written: serde types that mirror the YAML keys
//! (camelCase, unknown keys rejected), read from the tree the structural pass
//! of [`crate::validate`] has checked and typed (keep the two in step). Values are checked and converted into
//! the [`crate::model`] types by [`crate::validate`].

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Serialize};

/// A duration as written: a string such as `30s`, or a bare integer of seconds.
///
/// Deserialized by hand rather than as an untagged enum so that a wrong value
/// is reported at its own location, with the expected forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationSpec {
    /// A bare integer: seconds.
    Seconds(u64),
    /// A string such as `500ms` or `1m30s`.
    Text(String),
}

/// A whole number as a template writes it: a bare integer, or a string
/// that holds one once its `{{args.NAME}}` are replaced (Argo's
/// int-or-string `count` and limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegerSpec {
    /// A bare integer.
    Number(i64),
    /// A string such as `"5"` or `"{{args.count}}"`.
    Text(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigSpec {
    /// Where downstream clients connect.
    pub listeners: Vec<ListenerSpec>,
    /// The admin API; default `127.0.0.1:9900` without tokens.
    #[serde(default)]
    pub admin: Option<AdminSpec>,
    /// Where rollout state is persisted; default `./weir-state`.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// The routes, matched by host then longest path prefix; may be empty
    /// (or absent) only with a `kubernetes` block.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Routes from CanaryRoutes, Services and EndpointSlices (SPEC 10).
    #[serde(default)]
    pub kubernetes: Option<KubernetesSpec>,
    /// Receivers told of rollout transitions (SPEC 14).
    #[serde(default)]
    pub notifications: Vec<NotificationSpec>,
    /// Argo-style analysis templates, used by `analysis` steps and
    /// background analysis (SPEC 13).
    #[serde(default)]
    pub analysis_templates: Vec<AnalysisTemplateSpec>,
}

/// One analysis template: named metrics measured by a provider and judged
/// by conditions (Argo Rollouts' `AnalysisTemplate` spec).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplateSpec {
    /// Unique name, used by `templateName`.
    pub name: String,
    /// Arguments, `{{args.NAME}}` in the metrics' strings.
    #[serde(default)]
    pub args: Vec<TemplateArgSpec>,
    /// The metrics, at least one.
    pub metrics: Vec<MetricSpec>,
    /// Argo's dry-run rules: the metrics whose names a rule's pattern
    /// matches are measured and shown but never fail a run.
    #[serde(default)]
    pub dry_run: Vec<DryRunSpec>,
}

/// One of a template's dry-run rules, as Argo writes them.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DryRunSpec {
    /// A regular expression, found anywhere in a metric's name (Argo's
    /// `regexp.MatchString`): `.*` matches every metric.
    pub metric_name: String,
}

/// An argument of a template: without `value`, every use must give one.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateArgSpec {
    /// The name in `{{args.NAME}}`.
    pub name: String,
    /// The default value.
    #[serde(default)]
    pub value: Option<String>,
}

/// One metric of a template.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Unique within the run.
    pub name: String,
    /// Time between measurements; absent: one measurement (unless `count`).
    #[serde(default)]
    pub interval: Option<DurationSpec>,
    /// Wait before the first measurement; default 0.
    #[serde(default)]
    pub initial_delay: Option<DurationSpec>,
    /// Measurements to take; absent with `interval`: until the run ends.
    #[serde(default)]
    pub count: Option<IntegerSpec>,
    /// True means the measurement succeeded.
    #[serde(default)]
    pub success_condition: Option<String>,
    /// True means the measurement failed.
    #[serde(default)]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated; default 0, -1 never fails.
    #[serde(default)]
    pub failure_limit: Option<IntegerSpec>,
    /// Inconclusive measurements tolerated; default 0.
    #[serde(default)]
    pub inconclusive_limit: Option<IntegerSpec>,
    /// Consecutive errored measurements tolerated; default 4.
    #[serde(default)]
    pub consecutive_error_limit: Option<IntegerSpec>,
    /// Measured and shown, never failing the run.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Where the value comes from.
    pub provider: MetricProviderSpec,
}

/// The provider of a metric: exactly one key.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricProviderSpec {
    /// A Prometheus instant query.
    #[serde(default)]
    pub prometheus: Option<PrometheusProviderSpec>,
    /// An HTTP request whose JSON answer is judged.
    #[serde(default)]
    pub web: Option<WebProviderSpec>,
}

/// A Prometheus instant query.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusProviderSpec {
    /// `http://host:port` or `https://host:port` of the Prometheus server.
    pub address: String,
    /// The PromQL query.
    pub query: String,
    /// Seconds allowed for the answer; default 30.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Vec<HeaderSpec>,
    /// Credentials.
    #[serde(default)]
    pub authentication: Option<PrometheusAuthSpec>,
    /// Skip the verification of the server's certificate (`https://`).
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// Credentials for Prometheus.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusAuthSpec {
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic: Option<BasicAuthSpec>,
}

/// HTTP basic authentication.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthSpec {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A request header, as Argo writes them.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderSpec {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// An HTTP request whose answer is judged.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebProviderSpec {
    /// `http://...` or `https://...` URL.
    pub url: String,
    /// `GET` (default), `POST` or `PUT`.
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: Vec<HeaderSpec>,
    /// Request body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// Request body as JSON (sent with `Content-Type: application/json`).
    #[serde(default)]
    #[schemars(schema_with = "any_json")]
    pub json_body: Option<serde_json::Value>,
    /// The part of the JSON answer handed to the conditions, e.g. `{$.data}`.
    #[serde(default)]
    pub json_path: Option<String>,
    /// Seconds allowed for the answer; default 10.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Skip the verification of the server's certificate (`https://`).
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// Templates to run together with argument values (Argo's `RolloutAnalysis`):
/// a canary `analysis` step, `strategy.analysis`, or a blue-green pre/post
/// promotion analysis.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRefSpec {
    /// The templates, by name.
    #[serde(default)]
    pub templates: Vec<TemplateRefSpec>,
    /// Values of the templates' arguments.
    #[serde(default)]
    pub args: Vec<ArgValueSpec>,
}

/// One template of an [`AnalysisRefSpec`].
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRefSpec {
    /// The template's `name`.
    pub template_name: String,
}

/// An argument value given to templates.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArgValueSpec {
    /// The argument's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The `kubernetes` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesSpec {
    /// Watched namespaces; absent = all.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// The Lease of leader election; default `weir-leader`.
    #[serde(default)]
    pub lease: Option<String>,
    /// The headless Service whose endpoints are the replicas; default `weir-peers`.
    #[serde(default)]
    pub peers: Option<String>,
    /// `candidate` (may lead) or `follower` (never leads); default `candidate`.
    #[serde(default)]
    pub role: Option<String>,
    /// Serve the Gateway API (GatewayClass, Gateway, HTTPRoute); default:
    /// when the cluster serves it.
    #[serde(default)]
    pub gateway_api: Option<bool>,
}

/// One listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerSpec {
    /// Unique name, used in logs.
    pub name: String,
    /// `host:port` to bind.
    pub address: String,
    /// Serve HTTPS with these files.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Most simultaneous client connections; default 10000.
    #[serde(default)]
    pub max_connections: Option<u64>,
}

/// Certificate and key files of a TLS listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM certificate chain.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
}

/// The admin listener and its tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminSpec {
    /// `host:port` to bind.
    pub address: String,
    /// Bearer token for read-only endpoints.
    #[serde(default)]
    pub reader_token: Option<String>,
    /// Bearer token for every endpoint.
    #[serde(default)]
    pub writer_token: Option<String>,
}

/// One route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Unique, `[a-z0-9-]`.
    pub name: String,
    /// Exact host names and `*.suffix` wildcards; empty = any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefix; default `/`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The stable upstream.
    pub stable: StableSpec,
    /// The canary upstream.
    #[serde(default)]
    pub canary: Option<CanarySpec>,
    /// Cookie stickiness.
    #[serde(default)]
    pub stickiness: Option<StickinessSpec>,
    /// Header override.
    #[serde(default)]
    pub canary_by_header: Option<HeaderOverrideSpec>,
    /// Connect and request timeouts.
    #[serde(default)]
    pub timeouts: Option<TimeoutsSpec>,
    /// Protocols a client may switch to with `Upgrade`; default `[websocket]`.
    #[serde(default)]
    pub upgrades: Option<Vec<String>>,
    /// Rollout steps and analysis.
    #[serde(default)]
    pub strategy: Option<StrategySpec>,
    /// Retry on stable a canary request that failed before answering.
    #[serde(default)]
    pub stable_fallback: Option<StableFallbackSpec>,
}

/// `stableFallback`: which failed canary requests are sent once to stable.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StableFallbackSpec {
    /// Methods that may be retried; default `[GET, HEAD, OPTIONS]`.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Largest request body kept for a retry, e.g. `64KiB`; default 64 KiB.
    #[serde(default)]
    #[schemars(schema_with = "byte_size_schema")]
    pub max_body_bytes: Option<String>,
    /// Retries allowed per request of the route over the last 10 s, 0 to 1;
    /// default 0.2.
    #[serde(default)]
    pub budget: Option<f64>,
}

/// The stable upstream of a route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StableSpec {
    /// Revision label.
    pub revision: String,
    /// `host:port` endpoints.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// A Kubernetes Service whose ready endpoints serve this role.
    #[serde(default)]
    pub service: Option<ServiceRefSpec>,
    /// The upstream protocol: `http1` (default), `h2c` (HTTP/2 cleartext)
    /// or `h2` (HTTP/2 over TLS).
    #[serde(default)]
    pub protocol: Option<String>,
    /// TLS to the upstream.
    #[serde(default)]
    pub tls: Option<UpstreamTlsSpec>,
}

/// The canary upstream of a route.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanarySpec {
    /// Revision label.
    pub revision: String,
    /// `host:port` endpoints.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// A Kubernetes Service whose ready endpoints serve this role.
    #[serde(default)]
    pub service: Option<ServiceRefSpec>,
    /// The upstream protocol: `http1` (default), `h2c` (HTTP/2 cleartext)
    /// or `h2` (HTTP/2 over TLS).
    #[serde(default)]
    pub protocol: Option<String>,
    /// TLS to the upstream.
    #[serde(default)]
    pub tls: Option<UpstreamTlsSpec>,
    /// Fixed split percentage; an error together with `strategy`.
    #[serde(default)]
    pub weight: Option<f64>,
}

/// TLS from weir to an upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// PEM file of the CAs that sign the upstream's certificate; the
    /// system's roots when absent.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The name sent as SNI and checked against the certificate; default
    /// the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Accept any certificate (tests only: no protection against a
    /// man in the middle); default false.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
}

/// Cookie stickiness.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StickinessSpec {
    /// Cookie name.
    pub cookie: String,
    /// Cookie lifetime.
    #[serde(default)]
    pub max_age: Option<DurationSpec>,
}

/// Header override.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOverrideSpec {
    /// Header name.
    pub name: String,
    /// Value that selects the canary; `never` selects stable.
    pub value: String,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// TCP connect timeout.
    #[serde(default)]
    pub connect: Option<DurationSpec>,
    /// Time allowed for the whole response.
    #[serde(default)]
    pub request: Option<DurationSpec>,
    /// Longest gap between two body chunks once the head is sent, and longest
    /// silence inside a request body before it; default 60s.
    #[serde(default)]
    pub idle: Option<DurationSpec>,
}

/// Rollout strategy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategySpec {
    /// Steps in Argo Rollouts' syntax (a canary rollout); exclusive with
    /// `blueGreen`.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// A blue-green rollout (SPEC 12); exclusive with `steps`.
    #[serde(default)]
    pub blue_green: Option<BlueGreenSpec>,
    /// Analysis for the whole rollout.
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
    /// Flagger's webhooks: gates and events.
    #[serde(default)]
    pub webhooks: Vec<WebhookSpec>,
    /// Failed `pre-rollout` and `rollout` webhook checks tolerated; default 0.
    #[serde(default)]
    pub threshold: Option<u32>,
}

/// `strategy.blueGreen`: the new revision is reached through a preview
/// before one swap moves every request to it (Argo Rollouts' blue-green).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreenSpec {
    /// How to reach the new revision before promotion.
    pub preview: PreviewSpec,
    /// Promote on its own once the preview is ready; false waits for
    /// `weir promote`. Default true.
    #[serde(default)]
    pub auto_promotion_enabled: Option<bool>,
    /// Seconds to wait before an automatic promotion; default 0.
    #[serde(default)]
    pub auto_promotion_seconds: Option<u64>,
    /// Seconds after the promotion during which `abort` still swaps back
    /// to the old revision; default 30.
    #[serde(default)]
    pub scale_down_delay_seconds: Option<u64>,
    /// Templates run against the preview before the swap.
    #[serde(default)]
    pub pre_promotion_analysis: Option<AnalysisRefSpec>,
    /// Templates run after the swap; a failure swaps back.
    #[serde(default)]
    pub post_promotion_analysis: Option<AnalysisRefSpec>,
}

/// `blueGreen.preview`: the hosts and/or the header that reach the new
/// revision before promotion (at least one).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreviewSpec {
    /// Host names (exact or `*.suffix`) served by the new revision.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A request header that selects the new revision.
    #[serde(default)]
    pub header: Option<PreviewHeaderSpec>,
}

/// The preview header: a request carrying `name: value` reaches the preview.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreviewHeaderSpec {
    /// Header name.
    pub name: String,
    /// The value that selects the preview.
    pub value: String,
}

/// One webhook of `strategy.webhooks`, as in Flagger.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Unique within the route.
    pub name: String,
    /// `confirm-rollout`, `pre-rollout`, `rollout`, `confirm-traffic-increase`,
    /// `confirm-promotion`, `post-rollout`, `rollback` or `event`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `http://` or `https://` URL the JSON body is POSTed to.
    pub url: String,
    /// Time allowed for one attempt; default 10s.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Further attempts after a failed one; default 0.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Sent as `metadata` in the body.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// One receiver of `notifications`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationSpec {
    /// Unique; the `receiver` label of the notification metrics.
    pub name: String,
    /// `http://` or `https://` URL the JSON body is POSTed to.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Argo Rollouts trigger names (`on-rollout-aborted`, ...).
    pub triggers: Vec<String>,
    /// Route names; absent or empty = every route.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// Time allowed for one attempt; default 10s.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Further attempts after a failed one, with exponential backoff; default 5.
    #[serde(default)]
    pub retry_max: Option<u32>,
}

/// One step. Exactly one key may be set; the Argo Rollouts kinds weir does not
/// run are accepted by the parser so that validation can refuse them by name.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepSpec {
    /// `setWeight: N`.
    #[serde(default)]
    pub set_weight: Option<f64>,
    /// `pause: {}` or `pause: {duration: D}`.
    #[serde(default)]
    pub pause: Option<PauseSpec>,
    /// `analysis: {templates: [...], args: [...]}`: wait for a run of
    /// the templates.
    #[serde(default)]
    pub analysis: Option<AnalysisRefSpec>,
    /// Argo `experiment` step (refused).
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub experiment: Option<serde_json::Value>,
    /// Argo `setCanaryScale` step (refused).
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub set_canary_scale: Option<serde_json::Value>,
    /// Argo `setHeaderRoute` step (refused).
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub set_header_route: Option<serde_json::Value>,
    /// Argo `setMirrorRoute` step (refused).
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub set_mirror_route: Option<serde_json::Value>,
    /// Argo `plugin` step (refused).
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub plugin: Option<serde_json::Value>,
}

/// A pause step.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseSpec {
    /// Missing: wait for `weir promote`.
    #[serde(default)]
    pub duration: Option<DurationSpec>,
}

/// Canary analysis thresholds.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisSpec {
    /// How often to judge; default 1s.
    #[serde(default)]
    pub interval: Option<DurationSpec>,
    /// How far back to look; default 30s.
    #[serde(default)]
    pub window: Option<DurationSpec>,
    /// Fewer canary requests than this is inconclusive; default 20.
    #[serde(default)]
    pub min_requests: Option<u64>,
    /// Canary 5xx ratio limit, 0 to 1; default 0.05.
    #[serde(default)]
    pub max_error_rate: Option<f64>,
    /// Fail when significantly worse than stable; default true.
    #[serde(default)]
    pub compare_to_stable: Option<bool>,
    /// Canary p99 latency limit; none by default.
    #[serde(default)]
    pub max_latency_p99: Option<DurationSpec>,
    /// Failed judgements tolerated before abort; default 0.
    #[serde(default)]
    pub failure_limit: Option<u32>,
    /// gRPC status names that count as errors of a role; default
    /// UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    #[serde(default)]
    pub grpc_error_codes: Option<Vec<String>>,
    /// Canary errors tolerated beyond what stable's error rate predicts
    /// before an immediate abort; off by default.
    #[serde(default)]
    pub max_excess_errors: Option<u64>,
    /// Templates run in the background for the whole rollout.
    #[serde(default)]
    pub templates: Vec<TemplateRefSpec>,
    /// Values of the background templates' arguments.
    #[serde(default)]
    pub args: Vec<ArgValueSpec>,
}

// === impl AnalysisSpec ===

impl AnalysisSpec {
    /// True when a key of the built-in judge is written (not only
    /// background templates).
    pub fn has_builtin_keys(&self) -> bool {
        self.interval.is_some()
            || self.window.is_some()
            || self.min_requests.is_some()
            || self.max_error_rate.is_some()
            || self.compare_to_stable.is_some()
            || self.max_latency_p99.is_some()
            || self.failure_limit.is_some()
            || self.max_excess_errors.is_some()
            || (self.templates.is_empty() && self.args.is_empty())
    }
}

/// A Kubernetes Service and one of its ports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRefSpec {
    /// The Service's name, in the route's namespace.
    pub name: String,
    /// The Service port: its number or its name.
    pub port: PortSpec,
}

/// A Service port as written: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// The port number (any integer is read, so that a value out of range
    /// is refused by validation, naming the field, rather than by the
    /// reader of the whole list).
    Number(i64),
    /// The port's name.
    Name(String),
}

/// The schema of a value that is a number or a string
/// (`x-kubernetes-int-or-string`).
fn int_or_string(description: &str) -> schemars::Schema {
    schemars::json_schema!({
        "description": description,
        "x-kubernetes-int-or-string": true
    })
}

/// The schema of any JSON value, kept as written.
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Request body as JSON (sent with `Content-Type: application/json`).",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The schema of a byte size: a number of bytes or a string such as `64KiB`.
fn byte_size_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    int_or_string("A size in bytes, or a string such as `64KiB` or `1MiB`.")
}

/// The schema of an Argo Rollouts step kind weir refuses by name: any
/// object, kept as written so that validation can name it.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

impl JsonSchema for PortSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortSpec".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        int_or_string("The Service port: its number or its name.")
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DurationSpec".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        int_or_string("A duration such as `500ms`, `30s`, `5m` or `1h`, or whole seconds.")
    }
}

impl JsonSchema for IntegerSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntegerSpec".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        int_or_string("A whole number, or a string that holds one, e.g. `\"{{args.count}}\"`.")
    }
}

impl<'de> Deserialize<'de> for IntegerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntegerVisitor)
    }
}

/// Accepts an integer or a string for [`IntegerSpec`].
struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = IntegerSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number, or a string such as `\"{{args.count}}\"`")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntegerSpec, E> {
        // Beyond i64 is beyond every bound; kept as text for the message.
        Ok(i64::try_from(v).map_or_else(|_| IntegerSpec::Text(v.to_string()), IntegerSpec::Number))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntegerSpec, E> {
        Ok(IntegerSpec::Number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<IntegerSpec, E> {
        Ok(IntegerSpec::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<IntegerSpec, E> {
        Ok(IntegerSpec::Text(v))
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            DurationSpec::Seconds(seconds) => serializer.serialize_u64(*seconds),
            DurationSpec::Text(text) => serializer.serialize_str(text),
        }
    }
}

/// Accepts a non-negative integer or a string for [`DurationSpec`].
struct DurationVisitor;

// === impl DurationSpec ===

impl DurationSpec {
    /// The duration written, at most [`crate::duration::MAX_DURATION`].
    ///
    /// # Errors
    /// The text does not parse, or the duration is too long.
    pub fn to_duration(&self) -> Result<std::time::Duration, crate::duration::DurationError> {
        match self {
            DurationSpec::Seconds(seconds) => crate::duration::from_seconds(*seconds),
            DurationSpec::Text(text) => crate::duration::parse_duration(text),
        }
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = DurationSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `500ms`, `30s`, `5m` or `1h`, or a whole number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationSpec, E> {
        Ok(DurationSpec::Seconds(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationSpec, E> {
        // A negative number is kept as written, so that validation refuses
        // it at its place instead of the whole document failing to read.
        Ok(u64::try_from(v)
            .map_or_else(|_| DurationSpec::Text(v.to_string()), DurationSpec::Seconds))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationSpec, E> {
        Ok(DurationSpec::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<DurationSpec, E> {
        Ok(DurationSpec::Text(v))
    }
}
