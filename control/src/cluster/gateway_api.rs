//! The Gateway API kinds weir reads and writes (`gateway.networking.k8s.io/v1`):
//! GatewayClass, Gateway and HTTPRoute, with only the fields weir uses.
//!
//! Written by hand rather than taken from a published crate, which pins its
//! own kube version. Reading is tolerant: fields weir does not know are
//! ignored, except in an HTTPRoute rule, a match, a filter and a backend
//! reference, where they are kept in `other` so that a rule asking for
//! something weir does not do is reported, never silently served otherwise.
//! A status parent entry keeps its unknown fields too, so that the entries
//! of other controllers are written back as they were read.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The API group.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The API version.
pub const VERSION: &str = "v1";
/// The `controllerName` of the GatewayClasses weir owns.
pub const CONTROLLER_NAME: &str = "weir.dev/gateway-controller";

/// A GatewayClass (cluster-scoped).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClass {
    /// Name, generation, resource version.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the class asks for.
    #[serde(default)]
    pub spec: GatewayClassSpec,
    /// What the controller says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConditionsStatus>,
}

/// The spec of a GatewayClass.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClassSpec {
    /// The controller that owns the class.
    pub controller_name: String,
}

/// A status made of conditions only (GatewayClass).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConditionsStatus {
    /// The conditions.
    pub conditions: Vec<Condition>,
}

/// A Gateway (namespaced).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Name, namespace, generation, resource version.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Its class and listeners.
    #[serde(default)]
    pub spec: GatewaySpec,
    /// What the controller says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

/// The spec of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    /// The GatewayClass it belongs to.
    pub gateway_class_name: String,
    /// Its listeners.
    pub listeners: Vec<GatewayListener>,
}

/// A listener of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayListener {
    /// Unique within the Gateway (a route's `sectionName` names it).
    pub name: String,
    /// The host names it serves (`*.example.com` allowed); absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The port: weir serves the listener on its own listener of that port.
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP` or `UDP`.
    pub protocol: String,
    /// Which routes may attach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// The routes a listener admits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AllowedRoutes {
    /// From which namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Which kinds of route; empty: those the listener's protocol takes.
    /// Read entry by entry: one that is not `{group?, kind}` is kept as
    /// read, never failing the whole Gateway.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "tolerant_kinds"
    )]
    pub kinds: Vec<AllowedKind>,
}

/// One entry of a listener's `allowedRoutes.kinds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AllowedKind {
    /// A well-formed `{group?, kind}`.
    Kind(RouteKindRef),
    /// Anything else, as read.
    Malformed(Value),
}

/// A kind of route as a listener names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteKindRef {
    /// Default `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind (`HTTPRoute`, `GRPCRoute`, ...).
    pub kind: String,
}

/// The namespaces a listener admits routes from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `Selector`: the namespaces' labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// The status of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayStatus {
    /// `Accepted`, `Programmed`.
    pub conditions: Vec<Condition>,
    /// One per listener.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// The status of one listener of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// The kinds of routes it takes.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes attached to it.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

/// A kind of route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteGroupKind {
    /// The API group.
    pub group: String,
    /// The kind.
    pub kind: String,
}

/// An HTTPRoute (namespaced).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Name, namespace, generation, creation time, resource version.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Parents, host names and rules.
    #[serde(default)]
    pub spec: HttpRouteSpec,
    /// One entry per parent and controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<HttpRouteStatus>,
}

/// The spec of an HTTPRoute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) it attaches to.
    pub parent_refs: Vec<ParentReference>,
    /// Host names (`*.example.com` allowed); empty: those of the listener.
    pub hostnames: Vec<String>,
    /// The rules; none: one rule sending everything nowhere.
    pub rules: Vec<HttpRouteRule>,
}

/// A reference to a parent (a Gateway, or one of its listeners).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParentReference {
    /// Default `gateway.networking.k8s.io`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default `Gateway`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Default: the route's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Gateway's name.
    pub name: String,
    /// A listener's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A listener's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A rule of an HTTPRoute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteRule {
    /// Optional name of the rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Any of these matches; none: every request (path prefix `/`).
    pub matches: Vec<HttpRouteMatch>,
    /// Filters applied to every request of the rule.
    pub filters: Vec<HttpRouteFilter>,
    /// Where requests go, by weight.
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Fields weir does not read (`retry`, `sessionPersistence`, ...): set
    /// ones make the rule unsupported.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A match of a rule: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteMatch {
    /// The path; absent: prefix `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// Headers.
    pub headers: Vec<HttpHeaderMatch>,
    /// Query parameters (not supported by weir).
    pub query_params: Vec<Value>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Fields weir does not read: set ones make the rule unsupported.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A path match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpPathMatch {
    /// `PathPrefix` (the default), `Exact` or `RegularExpression`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The path; default `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A header match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeaderMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The header name (any case).
    pub name: String,
    /// The value.
    pub value: String,
}

/// A filter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, or another
    /// (unsupported) type.
    #[serde(rename = "type")]
    pub type_: String,
    /// With `RequestHeaderModifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// With `ResponseHeaderModifier`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// The configuration of other filter types.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The edits of a header modifier filter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderModifier {
    /// Replaced or added.
    pub set: Vec<HttpHeader>,
    /// Appended.
    pub add: Vec<HttpHeader>,
    /// Removed (names).
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A weighted reference to a backend.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpBackendRef {
    /// Default `""` (the core group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Default `Service`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The Service's name.
    pub name: String,
    /// Default: the route's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Service port (required for a Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Default 1; 0 to 1,000,000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Filters for this backend only (the header modifiers).
    pub filters: Vec<HttpRouteFilter>,
    /// Fields weir does not read: set ones make the rule unsupported.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The timeouts of a rule (Gateway API durations: `10s`, `500ms`, `1h30m`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteTimeouts {
    /// The whole request, until the response ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// One try to a backend (not supported by weir).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// The status of an HTTPRoute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteStatus {
    /// One entry per parent and controller.
    pub parents: Vec<RouteParentStatus>,
}

/// What one controller says about a route under one parent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteParentStatus {
    /// The parent, as the route names it.
    pub parent_ref: ParentReference,
    /// The controller that wrote the entry.
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`, `PartiallyInvalid`.
    pub conditions: Vec<Condition>,
    /// Other fields, kept as read.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A condition, as `metav1.Condition`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    /// `Accepted`, `Programmed`, `ResolvedRefs`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word.
    pub reason: String,
    /// What and where, for a human.
    pub message: String,
    /// The generation the condition was set for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

macro_rules! gateway_resource {
    ($type:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }

            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }

            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }

            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

gateway_resource!(
    GatewayClass,
    "GatewayClass",
    "gatewayclasses",
    ClusterResourceScope
);
gateway_resource!(Gateway, "Gateway", "gateways", NamespaceResourceScope);
gateway_resource!(HttpRoute, "HTTPRoute", "httproutes", NamespaceResourceScope);

/// `allowedRoutes.kinds` read entry by entry: `null` is none, an entry
/// that is not `{group?, kind}` (or a `kinds` that is not a list) is kept
/// as [`AllowedKind::Malformed`].
fn tolerant_kinds<'de, D>(deserializer: D) -> Result<Vec<AllowedKind>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let entry = |value: Value| match serde_json::from_value::<RouteKindRef>(value.clone()) {
        Ok(kind) => AllowedKind::Kind(kind),
        Err(_) => AllowedKind::Malformed(value),
    };
    Ok(match Value::deserialize(deserializer)? {
        Value::Null => Vec::new(),
        Value::Array(items) => items.into_iter().map(entry).collect(),
        other => vec![AllowedKind::Malformed(other)],
    })
}

// === impl AllowedKind ===

impl AllowedKind {
    /// The group and kind named, `None` when the entry is malformed.
    pub fn group_kind(&self) -> Option<(&str, &str)> {
        match self {
            AllowedKind::Kind(k) => Some((k.group.as_deref().unwrap_or(GROUP), k.kind.as_str())),
            AllowedKind::Malformed(_) => None,
        }
    }
}

impl std::fmt::Display for AllowedKind {
    /// `group/Kind` (`core/Kind` for the core group), or the entry as read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AllowedKind::Kind(k) => match k.group.as_deref().unwrap_or(GROUP) {
                "" => write!(f, "core/{}", k.kind),
                group => write!(f, "{group}/{}", k.kind),
            },
            AllowedKind::Malformed(value) => write!(f, "{value}"),
        }
    }
}

// === impl ParentReference ===

impl ParentReference {
    /// Whether it names a Gateway (the default group and kind).
    pub fn is_gateway(&self) -> bool {
        self.group.as_deref().unwrap_or(GROUP) == GROUP
            && self.kind.as_deref().unwrap_or("Gateway") == "Gateway"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_tolerated_and_kept_where_they_matter() {
        let route: HttpRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "parentRefs": [{"name": "weir"}],
                "someFutureField": true,
                "rules": [{
                    "backendRefs": [{"name": "web-v1", "port": 80, "weight": 70}],
                    "sessionPersistence": {"sessionName": "s"},
                }],
            },
            "status": {"parents": [{
                "parentRef": {"name": "other"},
                "controllerName": "example.com/other",
                "conditions": [],
                "vendorField": 1,
            }]},
        }))
        .expect("an HTTPRoute");
        assert_eq!(route.spec.rules[0].backend_refs[0].weight, Some(70));
        assert!(route.spec.rules[0].other.contains_key("sessionPersistence"));
        let status = route.status.expect("a status");
        let written = serde_json::to_value(&status.parents[0]).expect("JSON");
        assert_eq!(written["vendorField"], 1);
        assert!(status.parents[0].parent_ref.is_gateway());
    }

    #[test]
    fn malformed_allowed_route_kinds_are_kept_as_read_never_failing_the_gateway() {
        let gateway = |kinds: Value| -> Gateway {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "public", "namespace": "shop"},
                "spec": {"gatewayClassName": "weir", "listeners": [{
                    "name": "http", "port": 8080, "protocol": "HTTP",
                    "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": kinds},
                }]},
            }))
            .expect("a Gateway")
        };
        let kinds = |g: &Gateway| -> Vec<String> {
            g.spec.listeners[0]
                .allowed_routes
                .as_ref()
                .expect("allowedRoutes")
                .kinds
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let read = gateway(serde_json::json!([
            {"kind": "HTTPRoute"},
            {"group": "", "kind": "Service"},
            {"group": "example.com", "kind": "FooRoute"},
            {"group": 7, "kind": "HTTPRoute"},
            "HTTPRoute",
        ]));
        assert_eq!(
            kinds(&read),
            [
                "gateway.networking.k8s.io/HTTPRoute",
                "core/Service",
                "example.com/FooRoute",
                r#"{"group":7,"kind":"HTTPRoute"}"#,
                r#""HTTPRoute""#,
            ]
        );
        assert_eq!(kinds(&gateway(Value::Null)), Vec::<String>::new());
        assert_eq!(
            kinds(&gateway(serde_json::json!("HTTPRoute"))),
            [r#""HTTPRoute""#]
        );
        let written = serde_json::to_value(&read.spec.listeners[0]).expect("JSON");
        assert_eq!(written["allowedRoutes"]["kinds"][3]["group"], 7);
    }
}
