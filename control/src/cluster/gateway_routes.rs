//! The Gateway API compiled (SPEC section 11), pure: the GatewayClasses
//! whose `controllerName` is weir's, their Gateways and the HTTPRoutes
//! attached to them become routes of the snapshot, and every object gets
//! the verdict its status must tell.
//!
//! - A Gateway listener is served when its protocol is `HTTP` and weir has
//!   a listener on its port (weir's listeners come from `weir.yaml`); the
//!   routes attached to it are served on that weir listener only.
//! - An HTTPRoute attaches to a listener of one of our Gateways that admits
//!   its kind and namespace and shares a host name with it (exact names
//!   and `*.` wildcards; the route is served for the intersection). A
//!   listener admits HTTPRoutes when its `allowedRoutes.kinds` is empty or
//!   lists them; a kind listed there that weir does not support (any but
//!   HTTPRoute, or an entry it cannot read) is left out of the listener's
//!   `supportedKinds` and named in `ResolvedRefs: False`
//!   (`InvalidRouteKinds`). A route whose parent names only listeners that
//!   do not admit it is not attached (`Accepted: False`,
//!   `NotAllowedByListeners`) and not counted in their `attachedRoutes`.
//!   A route attached is counted there even when it is not accepted for
//!   its rules (every rule unsupported) or the listener is not served, as
//!   the Gateway API counts; attached only to listeners weir does not
//!   serve, it is `Accepted: False` (`NoMatchingParent`, saying why).
//! - Each match of each rule is one route of the snapshot, named
//!   `NAMESPACE/NAME`, with the rule's weighted backends (role label = the
//!   Service's name). The proxy's table orders by host, then exact path
//!   before prefix and longer before shorter; the routes here come in the
//!   Gateway API's remaining order: a method match first, then more header
//!   matches, then the oldest route, then by namespace and name, then rule
//!   and match order.
//! - A rule asking for anything weir does not do (another filter, a
//!   regular-expression path, query parameters, an unknown field) is left
//!   out, whole, and the other rules of its route are served: the route
//!   stays `Accepted` and gets `PartiallyInvalid: True` (`UnsupportedValue`,
//!   a message starting `Dropped Rule` that names each rule left out and
//!   why), the Gateway API's "drop rules" way. Requests the rule would have
//!   taken go wherever the remaining rules send them. When no rule is left,
//!   the route is not served (`Accepted: False`, `UnsupportedValue`).
//! - A backend that does not resolve (no such Service or port, not a
//!   Service, another namespace) keeps its weight and its share is answered
//!   500, as the Gateway API asks (`ResolvedRefs: False`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weir_config::{
    Backend, GatewayRule, GrpcCodeSet, HeaderEdits, HostMatch, PortRef, RouteSnapshot, ServiceRef,
    Split, Timeouts, UpstreamProtocol, Weight, WeightedBackend,
};

use super::discovery::{ClusterObjects, ObjectKey, role_endpoints, slices_by_service};
use super::gateway_api::{
    CONTROLLER_NAME, GROUP, GatewayListener, HeaderModifier, HttpBackendRef, HttpRoute,
    HttpRouteFilter, HttpRouteRule, ParentReference, RouteGroupKind,
};

/// Reason: accepted.
pub const ACCEPTED: &str = "Accepted";
/// Reason: programmed.
pub const PROGRAMMED: &str = "Programmed";
/// Reason: every reference resolved.
pub const RESOLVED_REFS: &str = "ResolvedRefs";
/// Reason: a backend Service (or its port) does not exist.
pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
/// Reason: a backend is not a Service.
pub const INVALID_KIND: &str = "InvalidKind";
/// Reason: a backend in another namespace (no ReferenceGrant support).
pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
/// Reason: the route asks for something weir does not do.
pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
/// Condition type: an accepted route has rules weir leaves out.
pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";
/// Reason: no listener of the parent matches the route's `sectionName` or `port`.
pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
/// Reason: no listener host name intersects the route's.
pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
/// Reason: the listeners do not admit routes of the route's kind or namespace.
pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
/// Reason: a listener's `allowedRoutes.kinds` lists kinds weir does not support.
pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
/// The only kind of route weir serves (group `gateway.networking.k8s.io`).
pub const HTTP_ROUTE: &str = "HTTPRoute";
/// Reason: a listener's protocol is not `HTTP`.
pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
/// Reason: weir has no listener on a listener's port.
pub const PORT_UNAVAILABLE: &str = "PortUnavailable";
/// Reason: some listeners of a Gateway are not served.
pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
/// Reason: nothing of a Gateway can be served.
pub const INVALID: &str = "Invalid";

/// What the Gateway API objects of the cluster compile to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompiledGateways {
    /// The routes to serve, in the order of the Gateway API's precedence
    /// (see the module's documentation).
    pub routes: Vec<RouteSnapshot>,
    /// Our GatewayClasses, by name.
    pub classes: BTreeMap<String, ObjectVerdict>,
    /// The Gateways of our classes.
    pub gateways: BTreeMap<ObjectKey, GatewayVerdict>,
    /// Per HTTPRoute, one entry per parent reference to one of our Gateways.
    pub http_routes: BTreeMap<ObjectKey, Vec<ParentVerdict>>,
}

/// A condition's value: `True` or `False`, its reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `True` when set.
    pub status: bool,
    /// One CamelCase word.
    pub reason: &'static str,
    /// What and where, for a human.
    pub message: String,
}

/// The verdict of a GatewayClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVerdict {
    /// `metadata.generation` judged.
    pub generation: Option<i64>,
    /// `Accepted`.
    pub accepted: Verdict,
}

/// The verdict of a Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayVerdict {
    /// `metadata.generation` judged.
    pub generation: Option<i64>,
    /// `Accepted`.
    pub accepted: Verdict,
    /// `Programmed`.
    pub programmed: Verdict,
    /// Per listener, in spec order.
    pub listeners: Vec<ListenerVerdict>,
}

/// The verdict of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerVerdict {
    /// The listener's name.
    pub name: String,
    /// Routes attached to it.
    pub attached_routes: i32,
    /// `Accepted` (and `Programmed`, which says the same here).
    pub accepted: Verdict,
    /// The kinds of route it admits that weir supports.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// `ResolvedRefs`: `False` (`InvalidRouteKinds`) when it lists kinds
    /// weir does not support.
    pub resolved_refs: Verdict,
}

/// What weir says about a route under one of its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentVerdict {
    /// The parent, as the route names it.
    pub parent_ref: ParentReference,
    /// `metadata.generation` of the route judged.
    pub generation: Option<i64>,
    /// `Accepted`.
    pub accepted: Verdict,
    /// `ResolvedRefs`.
    pub resolved_refs: Verdict,
    /// `PartiallyInvalid`: set (always `True`) only while the route is
    /// accepted and some of its rules are left out; absent otherwise.
    pub partially_invalid: Option<Verdict>,
}

/// A listener a route is attached to: its port and the host names served
/// there (`None`: any host).
type Attached = (u16, Option<Vec<HostMatch>>);

/// A listener of one of our Gateways, served or not: routes attach to it
/// (and are counted in its `attachedRoutes`) either way.
struct OurListener<'a> {
    gateway: ObjectKey,
    listener: &'a GatewayListener,
    /// Whether its `allowedRoutes.kinds` admits HTTPRoutes.
    admits_http_routes: bool,
    /// Why weir does not serve it (its `Accepted: False` message), if so.
    not_served: Option<String>,
}

/// A route match ready to be ordered.
struct Candidate<'a> {
    created: Option<&'a Time>,
    key: ObjectKey,
    rule: usize,
    matched: usize,
    route: RouteSnapshot,
}

/// Compiles the Gateway API objects of the watched `namespaces` (`None`:
/// all) for weir's listeners on `ports`.
pub fn compile_gateways(
    objects: &ClusterObjects,
    namespaces: Option<&BTreeSet<String>>,
    ports: &[u16],
) -> CompiledGateways {
    let watched = |ns: &str| namespaces.is_none_or(|w| w.contains(ns));
    let mut compiled = CompiledGateways::default();
    let ours: BTreeSet<&str> = objects
        .gateway_classes
        .iter()
        .filter(|(_, class)| class.spec.controller_name == CONTROLLER_NAME)
        .map(|(key, class)| {
            compiled.classes.insert(
                key.name.clone(),
                ObjectVerdict {
                    generation: class.metadata.generation,
                    accepted: Verdict::yes(ACCEPTED, "weir serves the Gateways of this class"),
                },
            );
            key.name.as_str()
        })
        .collect();

    // Our Gateways and the listeners weir serves.
    let mut our_listeners: Vec<OurListener<'_>> = Vec::new();
    for (key, gateway) in &objects.gateways {
        if !watched(&key.namespace) || !ours.contains(gateway.spec.gateway_class_name.as_str()) {
            continue;
        }
        let mut listeners = Vec::new();
        for listener in &gateway.spec.listeners {
            let (mut supported_kinds, mut resolved_refs) = route_kinds(listener);
            let verdict = if listener.protocol != "HTTP" {
                // No route kind is supported on a protocol weir does not
                // serve (upstream: the kinds supported "for that Listener
                // configuration").
                supported_kinds.clear();
                if resolved_refs.status {
                    resolved_refs = Verdict::yes(
                        RESOLVED_REFS,
                        format!(
                            "listener `{}` takes no routes: protocol `{}` is not served",
                            listener.name, listener.protocol
                        ),
                    );
                }
                Verdict::no(
                    UNSUPPORTED_PROTOCOL,
                    format!(
                        "listener `{}`: protocol `{}` is not served; weir serves HTTP listeners (TLS is set on weir's own listener)",
                        listener.name, listener.protocol
                    ),
                )
            } else if !u16::try_from(listener.port).is_ok_and(|p| ports.contains(&p)) {
                Verdict::no(
                    PORT_UNAVAILABLE,
                    format!(
                        "listener `{}`: weir has no listener on port {} (its ports: {})",
                        listener.name,
                        listener.port,
                        describe_ports(ports)
                    ),
                )
            } else {
                Verdict::yes(ACCEPTED, format!("listener `{}` is served", listener.name))
            };
            our_listeners.push(OurListener {
                gateway: key.clone(),
                listener,
                admits_http_routes: !supported_kinds.is_empty(),
                not_served: (!verdict.status).then(|| verdict.message.clone()),
            });
            listeners.push(ListenerVerdict {
                name: listener.name.clone(),
                attached_routes: 0,
                accepted: verdict,
                supported_kinds,
                resolved_refs,
            });
        }
        let invalid: Vec<&str> = listeners
            .iter()
            .filter(|l| !l.accepted.status)
            .map(|l| l.accepted.message.as_str())
            .collect();
        let (accepted, programmed) = if listeners.is_empty() || invalid.len() == listeners.len() {
            let why = if listeners.is_empty() {
                "the Gateway has no listener".to_owned()
            } else {
                invalid.join("; ")
            };
            (
                Verdict::no(LISTENERS_NOT_VALID, why.clone()),
                Verdict::no(INVALID, why),
            )
        } else if invalid.is_empty() {
            (
                Verdict::yes(ACCEPTED, "weir serves every listener"),
                Verdict::yes(PROGRAMMED, "the routes are in weir's routing"),
            )
        } else {
            (
                Verdict::yes(LISTENERS_NOT_VALID, invalid.join("; ")),
                Verdict::yes(
                    PROGRAMMED,
                    "the routes of the valid listeners are in weir's routing",
                ),
            )
        };
        compiled.gateways.insert(
            key.clone(),
            GatewayVerdict {
                generation: gateway.metadata.generation,
                accepted,
                programmed,
                listeners,
            },
        );
    }

    let slices = slices_by_service(objects);
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for (key, route) in &objects.http_routes {
        if !watched(&key.namespace) {
            continue;
        }
        let mut verdicts = Vec::new();
        // Per weir listener port: any host, or these host names.
        let mut by_port: BTreeMap<u16, (bool, Vec<HostMatch>)> = BTreeMap::new();
        let checked = check_rules(route);
        let (refused, partially_invalid) = (checked.refused(), checked.partially_invalid());
        let resolved = resolve_backends(key, route, objects, &slices);
        for parent in &route.spec.parent_refs {
            if !parent.is_gateway() {
                continue;
            }
            let gateway = ObjectKey::new(
                parent.namespace.as_deref().unwrap_or(&key.namespace),
                &parent.name,
            );
            let Some(gateway_verdict) = compiled.gateways.get_mut(&gateway) else {
                continue;
            };
            let accepted = attach(
                key,
                route,
                parent,
                &gateway,
                &our_listeners,
                gateway_verdict,
                refused.as_ref(),
            );
            if let Ok(intersections) = &accepted {
                for (port, found) in intersections {
                    let (any_host, hosts) = by_port.entry(*port).or_default();
                    match found {
                        None => *any_host = true,
                        Some(names) => {
                            for name in names {
                                if !hosts.contains(name) {
                                    hosts.push(name.clone());
                                }
                            }
                        }
                    }
                }
            }
            let (accepted, partial) = match accepted {
                Ok(_) if partially_invalid.is_some() => (
                    Verdict::yes(
                        ACCEPTED,
                        "the route is served but for the rules `PartiallyInvalid` names",
                    ),
                    partially_invalid.clone(),
                ),
                Ok(_) => (Verdict::yes(ACCEPTED, "the route is served"), None),
                // The Gateway API sets `PartiallyInvalid` on accepted routes only.
                Err(verdict) => (verdict, None),
            };
            verdicts.push(ParentVerdict {
                parent_ref: parent.clone(),
                generation: route.metadata.generation,
                accepted,
                resolved_refs: resolved.verdict.clone(),
                partially_invalid: partial,
            });
        }
        if verdicts.is_empty() {
            continue;
        }
        let attached = verdicts.iter().any(|v| v.accepted.status);
        compiled.http_routes.insert(key.clone(), verdicts);
        if !attached {
            continue;
        }
        // Ports with the same host names share their routes.
        let mut served_on: Vec<(Vec<HostMatch>, Vec<u16>)> = Vec::new();
        for (port, (any_host, hosts)) in by_port {
            let hosts = if any_host { Vec::new() } else { hosts };
            match served_on.iter_mut().find(|(h, _)| *h == hosts) {
                Some((_, ports)) => ports.push(port),
                None => served_on.push((hosts, vec![port])),
            }
        }
        let name: Arc<str> = Arc::from(key.to_string());
        // Rules left out keep their index: it picks their backends and
        // orders their matches.
        for ((rule_index, rule), (hosts, ports)) in checked
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| Some((i, rule.as_ref()?)))
            .flat_map(|r| served_on.iter().map(move |s| (r, s)))
        {
            let backends = &resolved.rules[rule_index];
            for (match_index, matched) in rule.matches.iter().enumerate() {
                candidates.push(Candidate {
                    created: route.metadata.creation_timestamp.as_ref(),
                    key: key.clone(),
                    rule: rule_index,
                    matched: match_index,
                    route: RouteSnapshot {
                        name: Arc::clone(&name),
                        hosts: hosts.clone(),
                        path_prefix: matched.path.clone(),
                        split: Split {
                            stable: Backend {
                                revision: Arc::from(""),
                                endpoints: Vec::new(),
                                protocol: UpstreamProtocol::Http1,
                                tls: None,
                            },
                            canary: None,
                            canary_weight: Weight::ZERO,
                            cohort_seed: 0,
                        },
                        canary_by_header: None,
                        stickiness: None,
                        timeouts: Timeouts {
                            request: rule.request_timeout.unwrap_or(Timeouts::default().request),
                            ..Timeouts::default()
                        },
                        upgrades: vec![Arc::from("websocket")],
                        stable_fallback: None,
                        grpc_error_codes: GrpcCodeSet::DEFAULT_ERRORS,
                        gateway: Some(Arc::new(GatewayRule {
                            exact_path: matched.exact,
                            listener_ports: ports.clone(),
                            method: matched.method.clone(),
                            headers: matched.headers.clone(),
                            header_patterns: matched.header_patterns.clone(),
                            backends: backends.clone(),
                            request_headers: rule.request_headers.clone(),
                            response_headers: rule.response_headers.clone(),
                        })),
                        preview: None,
                    },
                });
            }
        }
    }
    // The Gateway API's order among matches of equal path: a method first,
    // then more headers, then the oldest route, then namespace and name,
    // then rule and match order (the table keeps this order when stable).
    candidates.sort_by(|a, b| {
        let rank = |c: &Candidate<'_>| {
            let rule = c.route.gateway.as_deref();
            (
                rule.is_none_or(|r| r.method.is_none()),
                std::cmp::Reverse(rule.map_or(0, |r| r.headers.len() + r.header_patterns.len())),
            )
        };
        rank(a)
            .cmp(&rank(b))
            .then_with(|| (a.created.is_none(), a.created).cmp(&(b.created.is_none(), b.created)))
            .then_with(|| (&a.key, a.rule, a.matched).cmp(&(&b.key, b.rule, b.matched)))
    });
    compiled.routes = candidates.into_iter().map(|c| c.route).collect();
    compiled
}

/// One rule as weir serves it.
#[derive(Debug, Clone)]
struct CheckedRule {
    matches: Vec<CheckedMatch>,
    request_headers: HeaderEdits,
    response_headers: HeaderEdits,
    request_timeout: Option<Duration>,
}

/// One match as weir serves it.
#[derive(Debug, Clone)]
struct CheckedMatch {
    path: String,
    exact: bool,
    method: Option<String>,
    headers: Vec<(String, String)>,
    header_patterns: Vec<(String, String)>,
}

/// What weir makes of the rules of a route.
#[derive(Debug, Clone)]
struct CheckedRules {
    /// Per rule of the spec (one default rule when it has none), in order:
    /// the rule as weir serves it, or `None` when it is left out.
    rules: Vec<Option<CheckedRule>>,
    /// Per rule left out: where it is (`spec.rules[i]`, with its name if
    /// any) and every field weir does not support in it.
    dropped: Vec<(String, Vec<String>)>,
}

/// The rules of `route`, each as weir serves it or left out with every
/// field weir does not support in it named.
fn check_rules(route: &HttpRoute) -> CheckedRules {
    let mut checked_rules = CheckedRules {
        rules: Vec::new(),
        dropped: Vec::new(),
    };
    let default_rule = [HttpRouteRule::default()];
    let spec_rules = if route.spec.rules.is_empty() {
        &default_rule[..]
    } else {
        &route.spec.rules[..]
    };
    for (i, rule) in spec_rules.iter().enumerate() {
        let mut unsupported = Vec::new();
        let at = format!("spec.rules[{i}]");
        for field in rule
            .other
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
        {
            unsupported.push(format!("{at}.{field}: not supported by weir"));
        }
        let mut checked = CheckedRule {
            matches: Vec::new(),
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
            request_timeout: None,
        };
        let default_match = [Default::default()];
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        for (j, matched) in matches.iter().enumerate() {
            let at = format!("{at}.matches[{j}]");
            for field in matched
                .other
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
            {
                unsupported.push(format!("{at}.{field}: not supported by weir"));
            }
            if !matched.query_params.is_empty() {
                unsupported.push(format!(
                    "{at}.queryParams: query parameter matches are not supported by weir"
                ));
            }
            let path = matched.path.clone().unwrap_or_default();
            let value = path.value.unwrap_or_else(|| "/".to_owned());
            let exact = match path.type_.as_deref().unwrap_or("PathPrefix") {
                "PathPrefix" => false,
                "Exact" => true,
                other => {
                    unsupported.push(format!("{at}.path.type: `{other}` is not supported by weir (PathPrefix and Exact are)"));
                    false
                }
            };
            if !value.starts_with('/') {
                unsupported.push(format!(
                    "{at}.path.value: `{value}` does not start with `/`"
                ));
            }
            // A prefix matches whole segments; a trailing slash changes nothing.
            let value = if exact || value == "/" {
                value
            } else {
                value.trim_end_matches('/').to_owned()
            };
            let mut headers = Vec::new();
            let mut header_patterns = Vec::new();
            for (k, header) in matched.headers.iter().enumerate() {
                if !is_header_name(&header.name) {
                    unsupported.push(format!(
                        "{at}.headers[{k}].name: `{}` is not a valid header name",
                        header.name
                    ));
                }
                let name = header.name.to_ascii_lowercase();
                match header.type_.as_deref().unwrap_or("Exact") {
                    "Exact" => {
                        if http::HeaderValue::from_str(&header.value).is_err() {
                            unsupported.push(format!(
                                "{at}.headers[{k}].value: `{}` is not a valid header value",
                                header.value
                            ));
                        }
                        headers.push((name, header.value.clone()));
                    }
                    "RegularExpression" => {
                        // The proxy matches the whole value, as Envoy does.
                        if let Err(error) = regex::Regex::new(&format!("^(?:{})$", header.value)) {
                            let why = error.to_string();
                            unsupported.push(format!(
                                "{at}.headers[{k}].value: `{}` is not a regular expression weir reads: {}",
                                header.value,
                                why.lines().last().unwrap_or_default().trim()
                            ));
                        }
                        header_patterns.push((name, header.value.clone()));
                    }
                    other => unsupported.push(format!(
                        "{at}.headers[{k}].type: `{other}` is not supported by weir (Exact and RegularExpression are)"
                    )),
                }
            }
            let method = matched.method.as_deref().map(str::to_ascii_uppercase);
            checked.matches.push(CheckedMatch {
                path: value,
                exact,
                method,
                headers,
                header_patterns,
            });
        }
        for (k, filter) in rule.filters.iter().enumerate() {
            let at = format!("{at}.filters[{k}]");
            match filter.type_.as_str() {
                "RequestHeaderModifier" => {
                    edits(&at, filter.request_header_modifier.as_ref(), &mut checked.request_headers, &mut unsupported);
                }
                "ResponseHeaderModifier" => {
                    edits(&at, filter.response_header_modifier.as_ref(), &mut checked.response_headers, &mut unsupported);
                }
                other => unsupported.push(format!(
                    "{at}.type: filter `{other}` is not supported by weir (RequestHeaderModifier and ResponseHeaderModifier are)"
                )),
            }
        }
        for (k, backend) in rule.backend_refs.iter().enumerate() {
            let at = format!("{at}.backendRefs[{k}]");
            backend_edits(&at, &backend.filters, &mut unsupported);
            for field in backend
                .other
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k)
            {
                unsupported.push(format!("{at}.{field}: not supported by weir"));
            }
            if let Some(weight) = backend.weight {
                if !(0..=1_000_000).contains(&weight) {
                    unsupported.push(format!("{at}.weight: {weight} is outside 0 to 1000000"));
                }
            }
        }
        if let Some(timeouts) = &rule.timeouts {
            if let Some(text) = &timeouts.backend_request {
                unsupported.push(format!("{at}.timeouts.backendRequest: `{text}` is not supported by weir (timeouts.request is)"));
            }
            if let Some(text) = &timeouts.request {
                match parse_duration(text) {
                    // `0s` turns the timeout off: a day stands for none.
                    Some(d) if d.is_zero() => checked.request_timeout = Some(Duration::from_secs(86_400)),
                    Some(d) => checked.request_timeout = Some(d),
                    None => unsupported.push(format!("{at}.timeouts.request: `{text}` is not a Gateway API duration (like `10s`, `500ms`, `1h30m`)")),
                }
            }
        }
        if unsupported.is_empty() {
            checked_rules.rules.push(Some(checked));
        } else {
            let named = match &rule.name {
                Some(name) => format!("{at} (`{name}`)"),
                None => at,
            };
            checked_rules.rules.push(None);
            checked_rules.dropped.push((named, unsupported));
        }
    }
    checked_rules
}

/// Adds a header modifier's edits, refusing invalid names and values.
fn edits(
    at: &str,
    modifier: Option<&HeaderModifier>,
    into: &mut HeaderEdits,
    unsupported: &mut Vec<String>,
) {
    let Some(modifier) = modifier else {
        unsupported.push(format!("{at}: the filter has no configuration"));
        return;
    };
    for (list, out, name) in [
        (&modifier.set, &mut into.set, "set"),
        (&modifier.add, &mut into.add, "add"),
    ] {
        for (i, header) in list.iter().enumerate() {
            if !is_header_name(&header.name) || http::HeaderValue::from_str(&header.value).is_err()
            {
                unsupported.push(format!(
                    "{at}.{name}[{i}]: `{}: {}` is not a valid header",
                    header.name, header.value
                ));
                continue;
            }
            out.push((header.name.to_ascii_lowercase(), header.value.clone()));
        }
    }
    for (i, header) in modifier.remove.iter().enumerate() {
        if !is_header_name(header) {
            unsupported.push(format!(
                "{at}.remove[{i}]: `{header}` is not a valid header name"
            ));
            continue;
        }
        into.remove.push(header.to_ascii_lowercase());
    }
}

/// The request and response edits of a backend's filters (header
/// modifiers only; anything else is reported).
fn backend_edits(
    at: &str,
    filters: &[HttpRouteFilter],
    unsupported: &mut Vec<String>,
) -> (HeaderEdits, HeaderEdits) {
    let (mut request, mut response) = (HeaderEdits::default(), HeaderEdits::default());
    for (f, filter) in filters.iter().enumerate() {
        let at = format!("{at}.filters[{f}]");
        match filter.type_.as_str() {
            "RequestHeaderModifier" => edits(
                &at,
                filter.request_header_modifier.as_ref(),
                &mut request,
                unsupported,
            ),
            "ResponseHeaderModifier" => edits(
                &at,
                filter.response_header_modifier.as_ref(),
                &mut response,
                unsupported,
            ),
            other => unsupported.push(format!(
                "{at}.type: filter `{other}` is not supported by weir (RequestHeaderModifier and ResponseHeaderModifier are)"
            )),
        }
    }
    (request, response)
}

fn is_header_name(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// The backends of every rule and the `ResolvedRefs` verdict of the route.
struct Resolved {
    rules: Vec<Vec<WeightedBackend>>,
    verdict: Verdict,
}

/// Resolves the backend references of every rule: a Service of the route's
/// namespace with the port named gets its ready endpoints; anything else
/// keeps its weight, unresolved (answered 500), and is named in the verdict.
fn resolve_backends(
    key: &ObjectKey,
    route: &HttpRoute,
    objects: &ClusterObjects,
    slices: &BTreeMap<(&str, &str), Vec<&k8s_openapi::api::discovery::v1::EndpointSlice>>,
) -> Resolved {
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    let mut rules = Vec::new();
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let mut backends = Vec::new();
        for (j, backend) in rule.backend_refs.iter().enumerate() {
            let at = format!("spec.rules[{i}].backendRefs[{j}]");
            let weight =
                u32::try_from(backend.weight.unwrap_or(1).clamp(0, 1_000_000)).unwrap_or(0);
            let found = resolve_one(key, backend, objects, slices);
            let (resolved, endpoints) = match found {
                Ok(endpoints) => (true, endpoints),
                Err((reason, message)) => {
                    failures.push((reason, format!("{at}: {message}")));
                    (false, Vec::new())
                }
            };
            // Problems of the filters are reported by `check_rules`.
            let (request_headers, response_headers) =
                backend_edits(&at, &backend.filters, &mut Vec::new());
            backends.push(WeightedBackend {
                name: Arc::from(backend.name.as_str()),
                weight,
                resolved,
                endpoints,
                request_headers,
                response_headers,
            });
        }
        rules.push(backends);
    }
    if route.spec.rules.is_empty() {
        rules.push(Vec::new());
    }
    let verdict = match failures.first() {
        None => Verdict::yes(RESOLVED_REFS, "every backend resolves"),
        Some((reason, _)) => Verdict::no(
            reason,
            format!(
                "{}; requests for these backends are answered 500",
                failures
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    };
    Resolved { rules, verdict }
}

/// The endpoints of one backend reference, or the reason and message of
/// why it does not resolve.
fn resolve_one(
    key: &ObjectKey,
    backend: &HttpBackendRef,
    objects: &ClusterObjects,
    slices: &BTreeMap<(&str, &str), Vec<&k8s_openapi::api::discovery::v1::EndpointSlice>>,
) -> Result<Vec<SocketAddr>, (&'static str, String)> {
    let group = backend.group.as_deref().unwrap_or("");
    let kind = backend.kind.as_deref().unwrap_or("Service");
    if !(group.is_empty() || group == "core") || kind != "Service" {
        return Err((
            INVALID_KIND,
            format!("`{kind}` of group `{group}` is not a Service; weir routes to Services only"),
        ));
    }
    let namespace = backend.namespace.as_deref().unwrap_or(&key.namespace);
    if namespace != key.namespace {
        return Err((
            REF_NOT_PERMITTED,
            format!(
                "the Service `{namespace}/{}` is in another namespace; weir does not read ReferenceGrants",
                backend.name
            ),
        ));
    }
    let service_key = ObjectKey::new(namespace, &backend.name);
    let Some(service) = objects.services.get(&service_key) else {
        return Err((
            BACKEND_NOT_FOUND,
            format!("the Service `{service_key}` does not exist"),
        ));
    };
    let Some(port) = backend.port.and_then(|p| u16::try_from(p).ok()) else {
        return Err((
            BACKEND_NOT_FOUND,
            format!("no `port` is given for the Service `{service_key}`"),
        ));
    };
    let has_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|p| p.port == i32::from(port));
    if !has_port {
        return Err((
            BACKEND_NOT_FOUND,
            format!("the Service `{service_key}` has no port {port}"),
        ));
    }
    let mut ignored = Vec::new();
    let found = role_endpoints(
        namespace,
        &backend.name,
        &ServiceRef {
            name: backend.name.clone(),
            port: PortRef::Number(port),
        },
        objects,
        slices,
        &mut ignored,
    );
    Ok(found
        .iter()
        .filter_map(|e| Some(SocketAddr::new(e.host.parse::<IpAddr>().ok()?, e.port)))
        .collect())
}

/// Attaches `route` to the listeners of `gateway` its `parent` names: per
/// listener, its port and the host names served (`None`: any host), or why
/// none admits it, or `refused` when no rule of the route is served.
#[allow(clippy::too_many_arguments)]
fn attach(
    key: &ObjectKey,
    route: &HttpRoute,
    parent: &ParentReference,
    gateway: &ObjectKey,
    listeners: &[OurListener<'_>],
    verdict: &mut GatewayVerdict,
    refused: Option<&Verdict>,
) -> Result<Vec<Attached>, Verdict> {
    let named: Vec<&OurListener<'_>> = listeners
        .iter()
        .filter(|s| s.gateway == *gateway)
        .filter(|s| {
            parent
                .section_name
                .as_ref()
                .is_none_or(|n| *n == s.listener.name)
        })
        .filter(|s| parent.port.is_none_or(|p| p == s.listener.port))
        .collect();
    if named.is_empty() {
        return Err(Verdict::no(
            NO_MATCHING_PARENT,
            format!(
                "the Gateway `{gateway}` has no listener{}{}",
                parent
                    .section_name
                    .as_ref()
                    .map(|n| format!(" named `{n}`"))
                    .unwrap_or_default(),
                parent
                    .port
                    .map(|p| format!(" on port {p}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let of_kind: Vec<&&OurListener<'_>> = named.iter().filter(|s| s.admits_http_routes).collect();
    if of_kind.is_empty() {
        return Err(Verdict::no(
            NOT_ALLOWED_BY_LISTENERS,
            format!(
                "the listeners of the Gateway `{gateway}` the route names ({}) do not admit HTTPRoutes: their allowedRoutes.kinds leave them out",
                named
                    .iter()
                    .map(|s| format!("`{}`", s.listener.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let admitted: Vec<&&OurListener<'_>> = of_kind
        .into_iter()
        .filter(|s| admits(s.listener, &gateway.namespace, &key.namespace))
        .collect();
    if admitted.is_empty() {
        return Err(Verdict::no(
            NOT_ALLOWED_BY_LISTENERS,
            format!(
                "the listeners of the Gateway `{gateway}` do not admit routes of namespace `{}` (weir reads allowedRoutes.namespaces.from `Same` and `All`)",
                key.namespace
            ),
        ));
    }
    let mut found = Vec::new();
    let mut attached_to = Vec::new();
    let mut not_served = Vec::new();
    for listener in admitted {
        if let Some(hosts) = intersect(listener.listener.hostname.as_deref(), &route.spec.hostnames)
        {
            attached_to.push(listener.listener.name.clone());
            match &listener.not_served {
                None => {
                    let port = u16::try_from(listener.listener.port).unwrap_or_default();
                    found.push((port, hosts));
                }
                Some(why) => not_served.push(why.clone()),
            }
        }
    }
    if attached_to.is_empty() {
        return Err(Verdict::no(
            NO_MATCHING_LISTENER_HOSTNAME,
            format!(
                "no listener of the Gateway `{gateway}` shares a host name with the route's [{}]",
                route.spec.hostnames.join(", ")
            ),
        ));
    }
    // Attached, even when the route is not accepted for what its rules
    // ask: the Gateway API counts attachment by allowedRoutes and
    // parentRefs alone.
    for listener in &mut verdict.listeners {
        if attached_to.contains(&listener.name) {
            listener.attached_routes += 1;
        }
    }
    if found.is_empty() {
        return Err(Verdict::no(
            NO_MATCHING_PARENT,
            format!(
                "the route attaches only to listeners of the Gateway `{gateway}` that weir does \
                 not serve: {}",
                not_served.join("; ")
            ),
        ));
    }
    if let Some(unsupported) = refused {
        return Err(unsupported.clone());
    }
    Ok(found)
}

/// What a listener's `allowedRoutes.kinds` comes to: the kinds weir
/// supports among them (HTTPRoute only; HTTPRoute when none is listed) and
/// the `ResolvedRefs` verdict, `False` (`InvalidRouteKinds`) naming each
/// kind listed that weir does not support.
fn route_kinds(listener: &GatewayListener) -> (Vec<RouteGroupKind>, Verdict) {
    let listed = listener
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    let http_route = RouteGroupKind {
        group: GROUP.to_owned(),
        kind: HTTP_ROUTE.to_owned(),
    };
    if listed.is_empty() {
        return (
            vec![http_route],
            Verdict::yes(RESOLVED_REFS, "the listener takes HTTPRoutes"),
        );
    }
    let mut supported = Vec::new();
    let mut unsupported: Vec<String> = Vec::new();
    for kind in listed {
        if kind.group_kind() == Some((GROUP, HTTP_ROUTE)) {
            if supported.is_empty() {
                supported.push(http_route.clone());
            }
        } else {
            let named = format!("`{kind}`");
            if !unsupported.contains(&named) {
                unsupported.push(named);
            }
        }
    }
    let verdict = if unsupported.is_empty() {
        Verdict::yes(RESOLVED_REFS, "the listener takes HTTPRoutes")
    } else {
        Verdict::no(
            INVALID_ROUTE_KINDS,
            format!(
                "listener `{}`: allowedRoutes.kinds lists {} that weir does not support (weir supports {GROUP}/{HTTP_ROUTE}); {}",
                listener.name,
                unsupported.join(", "),
                if supported.is_empty() {
                    "no route attaches to this listener"
                } else {
                    "HTTPRoutes attach, the other kinds are ignored"
                }
            ),
        )
    };
    (supported, verdict)
}

/// Whether `listener` of a Gateway in `gateway_namespace` admits routes of
/// `route_namespace` (`Same` by default; `Selector` is not read).
fn admits(listener: &GatewayListener, gateway_namespace: &str, route_namespace: &str) -> bool {
    let from = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_deref())
        .unwrap_or("Same");
    match from {
        "All" => true,
        "Same" => gateway_namespace == route_namespace,
        _ => false,
    }
}

/// The host names a listener and a route share: `Some(None)` for any host,
/// `Some(Some(names))` for those names, `None` when they share none.
fn intersect(listener: Option<&str>, route: &[String]) -> Option<Option<Vec<HostMatch>>> {
    let listener = listener.map(str::to_ascii_lowercase);
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    match (listener, route.is_empty()) {
        (None, true) => Some(None),
        (Some(l), true) => Some(Some(vec![host_match(&l)])),
        (None, false) => Some(Some(route.iter().map(|h| host_match(h)).collect())),
        (Some(l), false) => {
            let shared: Vec<HostMatch> = route
                .iter()
                .filter_map(|h| {
                    if *h == l || covers(&l, h) {
                        Some(host_match(h))
                    } else if covers(h, &l) {
                        Some(host_match(&l))
                    } else {
                        None
                    }
                })
                .collect();
            (!shared.is_empty()).then_some(Some(shared))
        }
    }
}

/// Whether the wildcard `pattern` (`*.example.com`) covers `name` (an exact
/// name or a narrower wildcard).
fn covers(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix('*') else {
        return false;
    };
    let name = name.strip_prefix('*').unwrap_or(name);
    name.len() > suffix.len() && name.ends_with(suffix)
}

fn host_match(host: &str) -> HostMatch {
    match host.strip_prefix('*') {
        Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
        None => HostMatch::Exact(host.to_owned()),
    }
}

/// A Gateway API duration (GEP-2257): one to four `<number><unit>` parts,
/// units `h`, `m`, `s`, `ms`, as in `1h30m` or `500ms`. GEP-2257 allows up
/// to about 45 years (`99999h` four times); anything past weir's longest
/// duration (87600h, ten years) is taken as that, which is as good as none.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total += unit * u32::try_from(number).ok()?;
        parts += 1;
    }
    (1..=4)
        .contains(&parts)
        .then_some(total.min(weir_config::duration::MAX_DURATION))
}

fn describe_ports(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "none".to_owned();
    }
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

// === impl CheckedRules ===

impl CheckedRules {
    /// `Accepted: False` when no rule is served, naming every field weir
    /// does not support; `None` when at least one rule is served.
    fn refused(&self) -> Option<Verdict> {
        if self.rules.iter().any(Option::is_some) {
            return None;
        }
        let unsupported: Vec<&str> = self
            .dropped
            .iter()
            .flat_map(|(_, problems)| problems.iter().map(String::as_str))
            .collect();
        Some(Verdict::no(
            UNSUPPORTED_VALUE,
            format!("the route is not served: {}", unsupported.join("; ")),
        ))
    }

    /// `PartiallyInvalid: True` when some rules are left out and others
    /// served: the message starts `Dropped Rule`, as the Gateway API asks,
    /// and names each rule left out and why. `None` when every rule is
    /// served, or none is.
    fn partially_invalid(&self) -> Option<Verdict> {
        if self.dropped.is_empty() || self.refused().is_some() {
            return None;
        }
        let names: Vec<&str> = self.dropped.iter().map(|(at, _)| at.as_str()).collect();
        let unsupported: Vec<&str> = self
            .dropped
            .iter()
            .flat_map(|(_, problems)| problems.iter().map(String::as_str))
            .collect();
        Some(Verdict::yes(
            UNSUPPORTED_VALUE,
            format!(
                "Dropped Rule{} {}: {}; the other rules are served",
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                unsupported.join("; ")
            ),
        ))
    }
}

// === impl Verdict ===

impl Verdict {
    /// A `True` condition.
    pub fn yes(reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A `False` condition.
    pub fn no(reason: &'static str, message: impl Into<String>) -> Verdict {
        Verdict {
            status: false,
            reason,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
