//! The `weir.yaml` file as written: serde types that mirror the YAML keys
//! (camelCase, unknown keys rejected), read from the tree the structural pass
//! of [`crate::validate`] has checked and typed (keep the two in step). Values are checked and converted into
//! the [`crate::model`] types by [`crate::validate`].

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
    /// Serve the Gateway API (GatewayClass, Gateway, HTTPRoute); default false.
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
    /// Fixed split percentage; an error together with `strategy`.
    #[serde(default)]
    pub weight: Option<f64>,
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
    /// Longest gap between two body chunks once the head is sent; default 60s.
    #[serde(default)]
    pub idle: Option<DurationSpec>,
}

/// Rollout strategy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategySpec {
    /// Steps in Argo Rollouts' syntax.
    pub steps: Vec<StepSpec>,
    /// Analysis for the whole rollout.
    #[serde(default)]
    pub analysis: Option<AnalysisSpec>,
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
    /// Argo `analysis` step (refused).
    #[serde(default)]
    #[schemars(schema_with = "any_object")]
    pub analysis: Option<serde_json::Value>,
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
