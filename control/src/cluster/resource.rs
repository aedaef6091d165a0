//! The `CanaryRoute` custom resource (`weir.dev/v1alpha1`, SPEC section 10):
//! a `weir.yaml` route without `name`, kept in the cluster, whose `status`
//! is the rollout state every replica shares.
//!
//! The spec is built from the same serde types as a route of `weir.yaml`
//! ([`weir_config::schema`]), so the two vocabularies cannot drift: a test
//! checks that the spec has exactly the route's keys but `name`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_config::schema::{
    CanarySpec, DryRunSpec, HeaderOverrideSpec, MetricSpec, StableFallbackSpec, StableSpec,
    StickinessSpec, StrategySpec, TemplateArgSpec, TimeoutsSpec,
};

/// What a CanaryRoute asks for, kept as the API server gave it and read by
/// weir's validation, which names a wrong field: the schema is
/// [`CanaryRouteFields`]. A spec weir's types cannot read (a field from a
/// newer CRD than this binary) thus makes its object `Invalid` rather than
/// every list and watch of CanaryRoutes unreadable.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "CanaryRoute",
    namespaced,
    status = "StatusRead",
    shortname = "cnr",
    doc = "A route whose traffic weir splits between a stable and a canary upstream, with the rollout that moves the split.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "number", json_path = ".status.canaryWeight"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.stepIndex"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct CanaryRouteSpec {
    /// The spec as written.
    json: serde_json::Value,
}

/// What a CanaryRoute asks for: a `weir.yaml` route without `name`, whose
/// `stable` and `canary` may name a Service instead of (or besides)
/// endpoints.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryRouteFields {
    /// Exact host names and `*.suffix` wildcards; empty = any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Path prefix; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The stable upstream.
    pub stable: StableSpec,
    /// The canary upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
    /// Cookie stickiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<StickinessSpec>,
    /// Header override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_by_header: Option<HeaderOverrideSpec>,
    /// Connect, request and idle timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsSpec>,
    /// Protocols a client may switch to with `Upgrade`; default `[websocket]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<Vec<String>>,
    /// Rollout steps (Argo Rollouts' syntax) and analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<StrategySpec>,
    /// Retry on stable a canary request that failed before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_fallback: Option<StableFallbackSpec>,
}

/// The blue-green part of a CanaryRoute's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BlueGreenStatus {
    /// `Preview`, `PrePromotion`, `AwaitingPromotion`, `PostPromotion` or `Done`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Once promoted: until when `abort` swaps back to the old revision
    /// (RFC 3339), fixed at the promotion by `scaleDownDelaySeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_down_deadline: Option<String>,
}

// The fields are kept as written and validated by weir (not by serde), so
// that a wrong one is reported naming the template and the field; unknown
// fields are kept by the API server so that weir can name them instead of
// their being dropped silently.
/// What an AnalysisTemplate holds (SPEC 13, Kubernetes mode): one entry of
/// `weir.yaml`'s `analysisTemplates` without `name`, which is
/// `metadata.name`; CanaryRoutes of the same namespace name it in
/// `templateName`.
#[derive(CustomResource, Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "weir.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    doc = "Named metrics, measured by a provider and judged by conditions, that the analysis steps of CanaryRoutes in the same namespace run (Argo Rollouts' AnalysisTemplate spec, with the Prometheus and web providers).",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct AnalysisTemplateSpec {
    /// Arguments, `{{args.NAME}}` in the metrics' strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<TemplateArgSpec>>")]
    pub args: Option<serde_json::Value>,
    /// The metrics, at least one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Vec<MetricSpec>")]
    pub metrics: Option<serde_json::Value>,
    /// Argo's dry-run rules: the metrics whose names a rule's pattern
    /// matches are measured and shown but never fail a run.
    #[serde(default, rename = "dryRun", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<DryRunSpec>>")]
    pub dry_run: Option<serde_json::Value>,
    /// Keys weir does not know, kept to be reported.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// A CanaryRoute's status as read from the API server: its fields of the
/// right type, and those of a wrong type (written by hand past an older
/// CRD's schema, or by another weir version) left out and named. kube
/// cannot decode an object whose status does not fit [`CanaryRouteStatus`],
/// and such an object fails the whole list of CanaryRoutes and every watch
/// event after it: one bad status made every replica that started since
/// unready.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusRead {
    /// The fields that could be read.
    pub status: CanaryRouteStatus,
    /// Each field left out, in the order written.
    pub unreadable: Vec<UnreadableField>,
}

/// A status field of a wrong type, left out of a [`StatusRead`].
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableField {
    /// Its key in `status` (empty: the status itself is not an object).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
    /// Its value as written, so that a write over it can remove what the
    /// write does not replace (a merge patch keeps what it does not name).
    pub written: serde_json::Value,
}

/// The rollout state of a CanaryRoute, shared by every replica: written by
/// the leader only (each write carrying the `resourceVersion` it read), read
/// by all. The command inputs (`abort`, `promoteFull`, `paused`, `promote`)
/// are written by any replica or by `kubectl patch --subresource=status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CanaryRouteStatus {
    /// The `metadata.generation` this state was reconciled with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The rollout phase: Healthy, Progressing, Paused, Aborted or Promoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The 0-based current step; the step count once promoted; absent
    /// without a rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_index: Option<i64>,
    /// How many steps the strategy has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_count: Option<i64>,
    /// The share of requests sent to the canary, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<f64>,
    /// The stable revision, as last reconciled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The revision being rolled out (or aborted, or promoted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// The last revision that completed its rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_revision: Option<String>,
    /// The rollout's identity: `seq` and the canary revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    /// The rollout's sequence number; seeds the sticky cohort on every replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When the rollout started or was retried (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_start_time: Option<String>,
    /// When the current timed pause started (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_start_time: Option<String>,
    /// When the current timed pause ends (RFC 3339): kept across failover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_deadline: Option<String>,
    /// While held in a timed pause: the milliseconds it had left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_remaining_ms: Option<u64>,
    /// The current timed pause's length as it was entered, in
    /// milliseconds: an edit of its duration counts from its start, held
    /// or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_length_ms: Option<u64>,
    /// Held by the `pause` command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
    /// Failed judgements since the rollout started or was retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// The webhook gate the rollout waits on and the failed webhook checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<crate::rollout::WebhookProgress>,
    /// When the rollout was promoted (RFC 3339): a blue-green `abort` swaps
    /// back until `scaleDownDelaySeconds` after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promoted_time: Option<String>,
    /// A blue-green rollout's stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    /// Why the rollout aborted, while Aborted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// What is going on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The replica that wrote this status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The last judgement, over the counters of every replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StatusAnalysis>,
    /// `Progressing`, `Aborted`, `Ready`, and problems with the spec.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<StatusCondition>,
    /// The spec the leader serves: the last that validated. A replica that
    /// starts while a later edit does not validate serves this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_valid_spec: Option<LastValidSpec>,
    /// Input: abort the rollout (`false` again while Aborted: retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<bool>,
    /// Input: promote to 100 % at once, skipping the remaining steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_full: Option<bool>,
    /// Input: hold the rollout where it is (`false` again: resume).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Input: end the current pause and go on to the next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote: Option<bool>,
}

/// The last spec of a CanaryRoute that validated, as its status keeps it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LastValidSpec {
    /// The `metadata.generation` of that spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The spec, as the API server returned it (its fields are those of
    /// `spec`; weir's validation reads it again before serving it).
    #[schemars(schema_with = "any_object")]
    pub spec: serde_json::Value,
}

/// The schema of an object kept as written: `spec`'s own schema would
/// double the CRD's size.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The last judgement of a CanaryRoute's canary.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusAnalysis {
    /// The stable role over the window.
    pub stable: StatusRoleStats,
    /// The canary role over the window.
    pub canary: StatusRoleStats,
    /// Replicas counted / replicas known, e.g. `3/3`.
    pub coverage: String,
    /// Replicas whose counters were counted.
    pub replicas_counted: u32,
    /// Replicas known (the endpoints of the peers Service).
    pub replicas_known: u32,
    /// The last verdict: Pass, Fail or Inconclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One role's counts over the analysis window, summed over replicas.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusRoleStats {
    /// Requests answered.
    pub requests: u64,
    /// Of those, 5xx.
    pub errors: u64,
    /// errors / requests, 0 without requests.
    pub error_rate: f64,
    /// p99 latency in milliseconds, absent without requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99_ms: Option<f64>,
}

/// A condition, as Kubernetes objects report them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusCondition {
    /// `Progressing`, `Aborted`, `Ready`, `Invalid`, `ServiceMissing`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    /// What and where, for a human.
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// The CRDs as YAML, for `weir crd`: CanaryRoute, then AnalysisTemplate,
/// as two documents.
///
/// # Errors
/// When a definition cannot be serialized (never, for these types).
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let canary_route = serde_yaml_ng::to_string(&canary_route_crd())?;
    let analysis_template = serde_yaml_ng::to_string(&analysis_template_crd())?;
    Ok(format!("{canary_route}---\n{analysis_template}"))
}

/// The CanaryRoute CRD, its integers bounded (see [`bound_integers`]).
pub fn canary_route_crd() -> serde_json::Value {
    use kube::CustomResourceExt as _;
    let mut crd = serde_json::to_value(CanaryRoute::crd()).unwrap_or_default();
    bound_integers(&mut crd);
    crd
}

/// The AnalysisTemplate CRD, its integers bounded (see [`bound_integers`]).
pub fn analysis_template_crd() -> serde_json::Value {
    use kube::CustomResourceExt as _;
    let mut crd = serde_json::to_value(AnalysisTemplate::crd()).unwrap_or_default();
    bound_integers(&mut crd);
    crd
}

/// Gives every integer of a narrower type than the API server's 64 bits
/// (`format: uint32`, `int32`, ...) the bounds of its type. The API server
/// ignores the format but checks `minimum` and `maximum`: without them it
/// would store a `failureLimit` of 9999999999, which weir cannot read, and
/// one such object would fail every replica's list of all CanaryRoutes.
/// With them, `kubectl apply` and `kubectl patch` refuse it at once.
pub fn bound_integers(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            let bounds: Option<(i64, i64)> = match map.get("format").and_then(|f| f.as_str()) {
                Some("uint8") => Some((0, u8::MAX.into())),
                Some("uint16") => Some((0, u16::MAX.into())),
                Some("uint32") => Some((0, u32::MAX.into())),
                Some("int8") => Some((i8::MIN.into(), i8::MAX.into())),
                Some("int16") => Some((i16::MIN.into(), i16::MAX.into())),
                Some("int32") => Some((i32::MIN.into(), i32::MAX.into())),
                _ => None,
            };
            // As numbers of the schema's type (`JSONSchemaProps` reads
            // them as floating point), exact for these bounds.
            if let Some((min, max)) = bounds
                && map.get("type").and_then(|t| t.as_str()) == Some("integer")
            {
                map.entry("minimum")
                    .or_insert(serde_json::json!(min as f64));
                map.insert("maximum".to_owned(), serde_json::json!(max as f64));
            }
            map.values_mut().for_each(bound_integers);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

// === impl StatusRead ===

impl StatusRead {
    /// Reads `value`: whole when it fits, else key by key, leaving out
    /// (and naming) each key whose value does not fit.
    pub fn from_json(value: serde_json::Value) -> StatusRead {
        if let Ok(status) = CanaryRouteStatus::deserialize(&value) {
            return StatusRead {
                status,
                unreadable: Vec::new(),
            };
        }
        let serde_json::Value::Object(fields) = value else {
            return StatusRead {
                status: CanaryRouteStatus::default(),
                unreadable: vec![UnreadableField {
                    field: String::new(),
                    problem: format!("{} is not an object", kind_of(&value)),
                    written: value,
                }],
            };
        };
        let mut kept = serde_json::Map::new();
        let mut unreadable = Vec::new();
        for (key, field) in fields {
            let alone = serde_json::Value::Object(serde_json::Map::from_iter([(
                key.clone(),
                field.clone(),
            )]));
            match CanaryRouteStatus::deserialize(&alone) {
                Ok(_) => {
                    kept.insert(key, field);
                }
                Err(error) => unreadable.push(UnreadableField {
                    field: key,
                    problem: error.to_string(),
                    written: field,
                }),
            }
        }
        let status =
            CanaryRouteStatus::deserialize(&serde_json::Value::Object(kept)).unwrap_or_default();
        StatusRead { status, unreadable }
    }
}

/// What a JSON value is, for a message.
fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

impl From<CanaryRouteStatus> for StatusRead {
    fn from(status: CanaryRouteStatus) -> StatusRead {
        StatusRead {
            status,
            unreadable: Vec::new(),
        }
    }
}

impl std::ops::Deref for StatusRead {
    type Target = CanaryRouteStatus;

    fn deref(&self) -> &CanaryRouteStatus {
        &self.status
    }
}

impl std::ops::DerefMut for StatusRead {
    fn deref_mut(&mut self) -> &mut CanaryRouteStatus {
        &mut self.status
    }
}

impl Serialize for StatusRead {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.status.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StatusRead {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(StatusRead::from_json)
    }
}

impl JsonSchema for StatusRead {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        CanaryRouteStatus::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        CanaryRouteStatus::json_schema(generator)
    }
}

// === impl CanaryRouteSpec ===

impl CanaryRouteSpec {
    /// A spec holding `json` as written.
    pub fn new(json: serde_json::Value) -> CanaryRouteSpec {
        CanaryRouteSpec { json }
    }

    /// The spec as written, for validation.
    pub fn as_json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The spec read into its fields.
    ///
    /// # Errors
    /// When a field is unknown or of the wrong type.
    pub fn fields(&self) -> Result<CanaryRouteFields, serde_json::Error> {
        CanaryRouteFields::deserialize(&self.json)
    }
}

impl JsonSchema for CanaryRouteSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        CanaryRouteFields::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        CanaryRouteFields::json_schema(generator)
    }
}

// === impl AnalysisTemplateSpec ===

impl AnalysisTemplateSpec {
    /// The spec as written, for validation: the keys present, unknown ones
    /// included.
    pub fn as_json(&self) -> serde_json::Value {
        let mut map: serde_json::Map<String, serde_json::Value> = self
            .unknown
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(args) = &self.args {
            map.insert("args".to_owned(), args.clone());
        }
        if let Some(metrics) = &self.metrics {
            map.insert("metrics".to_owned(), metrics.clone());
        }
        if let Some(dry_run) = &self.dry_run {
            map.insert("dryRun".to_owned(), dry_run.clone());
        }
        serde_json::Value::Object(map)
    }
}

#[cfg(test)]
mod tests;
