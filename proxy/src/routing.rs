//! The proxy's view of a snapshot: the route table plus, per route, the
//! resolved endpoint handles and metric handles, built once when a snapshot
//! is applied so the request path only reads.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use weir_config::{GatewayRule, GrpcCodeSet, HeaderEdits, Snapshot, Timeouts};

use crate::Role;
use crate::decision::SplitParams;
use crate::fallback::FallbackPolicy;
use crate::metrics::{Metrics, RoleMetrics};
use crate::routes::RouteTable;
use crate::upstream::{Endpoint, Registry};

/// A snapshot made ready to serve.
#[derive(Debug)]
pub struct Routing {
    /// The snapshot version this was built from.
    pub version: u64,
    /// Host and path matching.
    pub table: RouteTable,
    /// The preview hosts of blue-green routes, looked up before `table`
    /// (a preview host may be covered by another route's wildcard or
    /// catch-all); empty without blue-green routes.
    pub preview_table: RouteTable,
    /// Routes, indexed by the table.
    pub routes: Vec<ServedRoute>,
}

/// A route made ready to serve.
#[derive(Debug)]
pub struct ServedRoute {
    /// Route name.
    pub name: Arc<str>,
    /// Weight, seed, and whether a canary exists.
    pub split: SplitParams,
    /// The stable backend.
    pub stable: ServedBackend,
    /// The canary backend.
    pub canary: Option<ServedBackend>,
    /// Header override: header name and the value that selects the canary.
    pub canary_by_header: Option<(HeaderName, Arc<str>)>,
    /// Sticky cookie.
    pub sticky: Option<StickyCookie>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Protocols a client may switch to with `Upgrade`, lowercase.
    pub upgrades: Box<[Arc<str>]>,
    /// `stableFallback`; `None`: failed canary requests are not retried.
    pub fallback: Option<FallbackPolicy>,
    /// gRPC statuses that count as errors of a role.
    pub grpc_error_codes: GrpcCodeSet,
    /// A Gateway API rule: its conditions and weighted backends replace the
    /// stable/canary decision.
    pub rule: Option<Box<ServedRule>>,
    /// A blue-green route's live preview: the header that selects it (the
    /// preview hosts are in [`Routing::preview_table`]); `None` while the
    /// preview is not live, when preview requests follow the weight.
    pub live_preview: Option<LivePreview>,
}

/// The preview of a blue-green route while it is live.
#[derive(Debug)]
pub struct LivePreview {
    /// A request with this header and value is a preview request.
    pub header: Option<(HeaderName, HeaderValue)>,
}

/// A Gateway API rule made ready to serve.
#[derive(Debug)]
pub struct ServedRule {
    /// The local ports of the listeners it is served on; empty: every one.
    pub listener_ports: Box<[u16]>,
    /// The method the request must have.
    pub method: Option<Method>,
    /// Headers the request must carry with exactly these values.
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    /// Headers whose whole value must match these expressions.
    pub header_patterns: Box<[(HeaderName, regex::Regex)]>,
    /// The backends, each with the running sum of the weights up to and
    /// including its own.
    pub backends: Box<[(u64, WeightedServedBackend)]>,
    /// The sum of the weights.
    pub total_weight: u64,
    /// Edits of the request headers.
    pub request_headers: ServedHeaderEdits,
    /// Edits of the response headers.
    pub response_headers: ServedHeaderEdits,
}

/// A backend of a Gateway API rule.
#[derive(Debug)]
pub struct WeightedServedBackend {
    /// Whether its reference resolved; an unresolved one is answered 500.
    pub resolved: bool,
    /// Its endpoints and counters.
    pub backend: ServedBackend,
    /// Edits of the request headers for this backend (after the rule's).
    pub request_headers: ServedHeaderEdits,
    /// Edits of the response headers for this backend (after the rule's).
    pub response_headers: ServedHeaderEdits,
}

/// The header edits of a filter, names and values parsed once.
#[derive(Debug, Default)]
pub struct ServedHeaderEdits {
    remove: Box<[HeaderName]>,
    set: Box<[(HeaderName, HeaderValue)]>,
    add: Box<[(HeaderName, HeaderValue)]>,
}

/// Where a Gateway API rule sends a request.
#[derive(Debug)]
pub enum RuleChoice<'a> {
    /// To this backend.
    Backend(&'a WeightedServedBackend),
    /// Answer 500 and count it against this backend: its reference did not resolve.
    Unresolved(&'a ServedBackend),
    /// Answer 500: the rule has no backend with a weight.
    NoBackend,
}

/// A backend made ready to serve.
#[derive(Debug)]
pub struct ServedBackend {
    /// The `role` label: `stable`, `canary`, or a Gateway API backend's
    /// Service name.
    pub label: Arc<str>,
    /// Revision label.
    pub revision: Arc<str>,
    /// Endpoint handles (shared across snapshots).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// This route's and role's counters.
    pub metrics: Arc<RoleMetrics>,
}

/// The sticky cookie of a route, with its `Set-Cookie` attributes rendered
/// once per snapshot.
#[derive(Debug)]
pub struct StickyCookie {
    /// Cookie name.
    pub name: Arc<str>,
    /// How long a client keeps the key it was issued (`Max-Age`).
    pub max_age: cookie::time::Duration,
    /// What follows the key in `Set-Cookie` (`; HttpOnly; ...`), over
    /// plain HTTP and over TLS (with `Secure`).
    attributes: [Box<str>; 2],
}

// === impl Routing ===

impl Routing {
    /// The route serving `host` and `path`, and whether it was found by a
    /// blue-green preview host. A preview host is taken when it names the
    /// host at least as closely as the routes' own hosts do: an exact
    /// preview name beats another route's `*.suffix` or catch-all, while a
    /// wildcard preview never takes a host that a route names exactly
    /// (its own route's included). `accepts` may refuse a route by index
    /// (a Gateway API rule's conditions).
    pub fn find(
        &self,
        host: &[u8],
        path: &str,
        accepts: impl Fn(usize) -> bool,
    ) -> Option<(usize, bool)> {
        let preview = if self.preview_table.is_empty() {
            None
        } else {
            self.preview_table.find_ranked(host, path, |_| true)
        };
        let routed = self.table.find_ranked(host, path, accepts);
        match (preview, routed) {
            (Some((index, preview_rank)), Some((_, rank))) if preview_rank >= rank => {
                Some((index, true))
            }
            (Some((index, _)), None) => Some((index, true)),
            (_, routed) => routed.map(|(index, _)| (index, false)),
        }
    }

    /// Builds the served form of `snapshot`, resolving endpoint and metric handles.
    pub fn build(snapshot: &Snapshot, registry: &Registry, metrics: &Metrics) -> Routing {
        let table = RouteTable::with_exact(snapshot.routes.iter().map(|r| {
            let exact = r.gateway.as_ref().is_some_and(|g| g.exact_path);
            (r.hosts.as_slice(), r.path_prefix.as_str(), exact)
        }));
        let preview_table =
            RouteTable::for_hosts(snapshot.routes.iter().enumerate().filter_map(|(index, r)| {
                let preview = r.preview.as_ref()?;
                Some((index, preview.hosts.as_slice(), r.path_prefix.as_str()))
            }));
        let routes =
            snapshot
                .routes
                .iter()
                .map(|route| {
                    let backend = |b: &weir_config::Backend, role: Role| ServedBackend {
                        label: Arc::from(role.metric_label()),
                        revision: Arc::clone(&b.revision),
                        endpoints: b
                            .endpoints
                            .iter()
                            .map(|&addr| {
                                registry.endpoint_with(addr, b.protocol, b.tls.as_ref(), metrics)
                            })
                            .collect(),
                        metrics: metrics.role(&route.name, role),
                    };
                    let rule = route.gateway.as_ref().map(|rule| {
                        Box::new(ServedRule::build(&route.name, rule, registry, metrics))
                    });
                    // A Gateway API rule never serves `stable`: its counters stay unexported.
                    let stable = if rule.is_some() {
                        ServedBackend {
                            label: Arc::from(Role::Stable.metric_label()),
                            revision: Arc::clone(&route.split.stable.revision),
                            endpoints: Vec::new(),
                            metrics: Metrics::unexported(&route.name, Role::Stable),
                        }
                    } else {
                        backend(&route.split.stable, Role::Stable)
                    };
                    ServedRoute {
                        name: Arc::clone(&route.name),
                        split: SplitParams {
                            has_canary: route.split.canary.is_some(),
                            weight: route.split.canary_weight,
                            cohort_seed: route.split.cohort_seed,
                        },
                        stable,
                        canary: route
                            .split
                            .canary
                            .as_ref()
                            .map(|c| backend(c, Role::Canary)),
                        canary_by_header: route.canary_by_header.as_ref().and_then(|h| {
                            // Validation guarantees a valid lowercase name; a bad one disables the override.
                            HeaderName::from_bytes(h.name.as_bytes())
                                .ok()
                                .map(|name| (name, Arc::clone(&h.value)))
                        }),
                        sticky: route.stickiness.as_ref().map(|s| {
                            StickyCookie::new(Arc::clone(&s.cookie), cookie_max_age(s.max_age))
                        }),
                        timeouts: route.timeouts,
                        upgrades: route.upgrades.iter().cloned().collect(),
                        fallback: route.stable_fallback.as_ref().map(|config| {
                            FallbackPolicy::new(config, metrics.fallback(&route.name))
                        }),
                        grpc_error_codes: route.grpc_error_codes,
                        rule,
                        live_preview: route.preview.as_ref().filter(|p| p.live).map(|p| {
                            LivePreview {
                                // Validation guarantees a valid name and value; a bad one
                                // leaves the preview to its hosts.
                                header: p.header.as_ref().and_then(|h| {
                                    Some((
                                        HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                                        HeaderValue::from_str(&h.value).ok()?,
                                    ))
                                }),
                            }
                        }),
                    }
                })
                .collect();
        Routing {
            version: snapshot.version,
            table,
            preview_table,
            routes,
        }
    }
}

// === impl ServedRule ===

impl ServedRule {
    /// Resolves the rule's backends (endpoint and metric handles) and parses
    /// its header names and values; a name or value that is not valid HTTP
    /// (the compiler refuses those) is left out.
    pub fn build(
        route: &Arc<str>,
        rule: &GatewayRule,
        registry: &Registry,
        metrics: &Metrics,
    ) -> ServedRule {
        let mut total_weight = 0u64;
        let backends = rule
            .backends
            .iter()
            .map(|b| {
                total_weight += u64::from(b.weight);
                let backend = ServedBackend {
                    label: Arc::clone(&b.name),
                    revision: Arc::clone(&b.name),
                    endpoints: b
                        .endpoints
                        .iter()
                        .map(|&addr| registry.endpoint(addr, metrics))
                        .collect(),
                    metrics: metrics.labelled(route, &b.name),
                };
                (
                    total_weight,
                    WeightedServedBackend {
                        resolved: b.resolved,
                        backend,
                        request_headers: ServedHeaderEdits::build(&b.request_headers),
                        response_headers: ServedHeaderEdits::build(&b.response_headers),
                    },
                )
            })
            .collect();
        ServedRule {
            listener_ports: rule.listener_ports.iter().copied().collect(),
            method: rule
                .method
                .as_deref()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok()),
            headers: header_pairs(&rule.headers),
            header_patterns: rule
                .header_patterns
                .iter()
                .filter_map(|(name, pattern)| {
                    // The whole value must match, as Envoy's `safe_regex` does.
                    Some((
                        HeaderName::from_bytes(name.as_bytes()).ok()?,
                        regex::Regex::new(&format!("^(?:{pattern})$")).ok()?,
                    ))
                })
                .collect(),
            backends,
            total_weight,
            request_headers: ServedHeaderEdits::build(&rule.request_headers),
            response_headers: ServedHeaderEdits::build(&rule.response_headers),
        }
    }

    /// Whether a request with `method` and `headers`, received on the
    /// listener of `local_port`, meets the rule's conditions.
    pub fn accepts(&self, local_port: u16, method: &Method, headers: &HeaderMap) -> bool {
        (self.listener_ports.is_empty() || self.listener_ports.contains(&local_port))
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .headers
                .iter()
                .all(|(name, value)| headers.get(name) == Some(value))
            && self.header_patterns.iter().all(|(name, pattern)| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| pattern.is_match(v))
            })
    }

    /// The backend for a uniform `draw` in `0..BUCKETS`: backend `i` gets
    /// `weight_i / Σ weights` of the draws.
    pub fn choose(&self, draw: u32) -> RuleChoice<'_> {
        if self.total_weight == 0 {
            return RuleChoice::NoBackend;
        }
        // `total_weight` is at most 1e6 × the number of backends, so the
        // product stays far below u64::MAX.
        let point = u64::from(draw) * self.total_weight / u64::from(crate::decision::BUCKETS);
        let index = self.backends.partition_point(|(upto, _)| *upto <= point);
        match self.backends.get(index) {
            Some((_, chosen)) if chosen.resolved => RuleChoice::Backend(chosen),
            Some((_, chosen)) => RuleChoice::Unresolved(&chosen.backend),
            None => RuleChoice::NoBackend,
        }
    }
}

/// Parsed header names and values; invalid ones left out.
fn header_pairs(pairs: &[(String, String)]) -> Box<[(HeaderName, HeaderValue)]> {
    pairs
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect()
}

// === impl ServedHeaderEdits ===

impl ServedHeaderEdits {
    fn build(edits: &HeaderEdits) -> ServedHeaderEdits {
        ServedHeaderEdits {
            remove: edits
                .remove
                .iter()
                .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
                .collect(),
            set: header_pairs(&edits.set),
            add: header_pairs(&edits.add),
        }
    }

    /// Applies the edits to `headers`: remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// A sticky cookie's `Max-Age` for `max_age`: whole seconds, a part of
/// one rounded up (never down to an expiry at once).
fn cookie_max_age(max_age: std::time::Duration) -> cookie::time::Duration {
    let seconds = max_age.as_secs() + u64::from(max_age.subsec_nanos() > 0);
    cookie::time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX))
}

// === impl StickyCookie ===

impl StickyCookie {
    /// The cookie `name` kept for `max_age`, its attributes rendered now.
    pub fn new(name: Arc<str>, max_age: cookie::time::Duration) -> StickyCookie {
        // The `cookie` crate writes the header; everything after the value
        // is the same for every client, so it is written once here and each
        // new client costs one concatenation instead of a formatting pass
        // (see the `sticky_cookie/set_cookie*` benchmarks).
        let attributes = [false, true].map(|secure| {
            let template = StickyCookie::by_crate(&name, "", max_age, secure);
            let prefix = name.len() + 1; // `NAME=`
            template.get(prefix..).unwrap_or_default().into()
        });
        StickyCookie {
            name,
            max_age,
            attributes,
        }
    }

    /// The `Set-Cookie` value that issues `key` to a client:
    /// `NAME=KEY; HttpOnly; SameSite=Lax; Path=/; Max-Age=SECONDS`, with
    /// `Secure` when the client came over TLS, exactly as the `cookie` crate
    /// writes it ([`StickyCookie::set_cookie_by_crate`]). `None` only for a
    /// key that cannot be a header value.
    pub fn set_cookie(&self, key: &str, secure: bool) -> Option<HeaderValue> {
        let attributes = &self.attributes[usize::from(secure)];
        let mut value = String::with_capacity(self.name.len() + 1 + key.len() + attributes.len());
        value.push_str(&self.name);
        value.push('=');
        value.push_str(key);
        value.push_str(attributes);
        HeaderValue::try_from(value).ok()
    }

    /// Appends the value of [`StickyCookie::set_cookie`] to `out`, without
    /// making a header value: for weir's own HTTP/1 path, whose keys are
    /// weir's own hexadecimal ones.
    pub fn push_set_cookie(&self, out: &mut Vec<u8>, key: &[u8], secure: bool) {
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(key);
        out.extend_from_slice(self.attributes[usize::from(secure)].as_bytes());
    }

    /// [`StickyCookie::set_cookie`] built by the `cookie` crate for every
    /// key: the reference the fast form is tested and benchmarked against.
    pub fn set_cookie_by_crate(&self, key: &str, secure: bool) -> Option<HeaderValue> {
        HeaderValue::try_from(StickyCookie::by_crate(
            &self.name,
            key,
            self.max_age,
            secure,
        ))
        .ok()
    }

    fn by_crate(name: &str, key: &str, max_age: cookie::time::Duration, secure: bool) -> String {
        cookie::Cookie::build((name, key))
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(secure)
            .path("/")
            .max_age(max_age)
            .build()
            .to_string()
    }
}

// === impl ServedRoute ===

impl ServedRoute {
    /// The backend serving `role` (stable when the route has no canary).
    pub fn backend(&self, role: Role) -> &ServedBackend {
        match (role, &self.canary) {
            (Role::Canary, Some(canary)) => canary,
            _ => &self.stable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(name: &str, weight: u32, resolved: bool) -> weir_config::WeightedBackend {
        weir_config::WeightedBackend {
            name: Arc::from(name),
            weight,
            resolved,
            endpoints: vec!["127.0.0.1:9".parse().unwrap()],
            request_headers: HeaderEdits::default(),
            response_headers: HeaderEdits::default(),
        }
    }

    fn label(choice: RuleChoice<'_>) -> String {
        match choice {
            RuleChoice::Backend(b) => b.backend.label.to_string(),
            RuleChoice::Unresolved(b) => format!("unresolved {}", b.label),
            RuleChoice::NoBackend => "none".to_owned(),
        }
    }

    #[test]
    fn a_rule_splits_draws_by_weight_over_the_sum() {
        let metrics = Metrics::new();
        let registry = Registry::default();
        let route: Arc<str> = Arc::from("shop/web");
        let rule = GatewayRule {
            backends: vec![
                weighted("web-v1", 70, true),
                weighted("web-v2", 30, true),
                weighted("web-v3", 0, true),
                weighted("gone", 100, false),
            ],
            ..GatewayRule::default()
        };
        let served = ServedRule::build(&route, &rule, &registry, &metrics);
        // Σ = 200: web-v1 gets draws below 35 %, web-v2 up to 50 %, the
        // missing Service (answered 500) the other half, web-v3 none.
        let cases = [
            (0, "web-v1"),
            (349_999, "web-v1"),
            (350_000, "web-v2"),
            (499_999, "web-v2"),
            (500_000, "unresolved gone"),
            (999_999, "unresolved gone"),
        ];
        for (draw, want) in cases {
            assert_eq!(label(served.choose(draw)), want, "draw {draw}");
        }
        let zero = GatewayRule {
            backends: vec![weighted("web-v1", 0, true), weighted("web-v2", 0, true)],
            ..GatewayRule::default()
        };
        let served = ServedRule::build(&route, &zero, &registry, &metrics);
        assert_eq!(label(served.choose(0)), "none");
        assert_eq!(label(served.choose(999_999)), "none");
    }

    #[test]
    fn a_rule_checks_method_and_exact_header_values_and_edits_headers() {
        let metrics = Metrics::new();
        let registry = Registry::default();
        let rule = GatewayRule {
            method: Some("POST".to_owned()),
            headers: vec![("x-canary".to_owned(), "always".to_owned())],
            request_headers: HeaderEdits {
                set: vec![("x-env".to_owned(), "canary".to_owned())],
                add: vec![("x-via".to_owned(), "weir".to_owned())],
                remove: vec!["x-debug".to_owned()],
            },
            ..GatewayRule::default()
        };
        let served = ServedRule::build(&Arc::from("shop/web"), &rule, &registry, &metrics);
        let mut headers = HeaderMap::new();
        headers.insert("x-canary", HeaderValue::from_static("always"));
        assert!(served.accepts(8080, &Method::POST, &headers));
        assert!(!served.accepts(8080, &Method::GET, &headers));
        headers.insert("x-canary", HeaderValue::from_static("Always"));
        assert!(!served.accepts(8080, &Method::POST, &headers));
        let on_80 = GatewayRule {
            listener_ports: vec![80],
            ..GatewayRule::default()
        };
        let on_80 = ServedRule::build(&Arc::from("shop/web"), &on_80, &registry, &metrics);
        assert!(on_80.accepts(80, &Method::GET, &HeaderMap::new()));
        assert!(!on_80.accepts(8080, &Method::GET, &HeaderMap::new()));

        // Flagger's session affinity: the cookie anywhere in `Cookie`.
        let sticky = GatewayRule {
            header_patterns: vec![("cookie".to_owned(), ".*flagger-cookie.*abc.*".to_owned())],
            ..GatewayRule::default()
        };
        let sticky = ServedRule::build(&Arc::from("shop/web"), &sticky, &registry, &metrics);
        let mut cookies = HeaderMap::new();
        assert!(!sticky.accepts(8080, &Method::GET, &cookies));
        cookies.insert(
            "cookie",
            HeaderValue::from_static("a=1; flagger-cookie=abc; b=2"),
        );
        assert!(sticky.accepts(8080, &Method::GET, &cookies));
        cookies.insert("cookie", HeaderValue::from_static("flagger-cookie=xyz"));
        assert!(!sticky.accepts(8080, &Method::GET, &cookies));

        headers.insert("x-env", HeaderValue::from_static("prod"));
        headers.insert("x-debug", HeaderValue::from_static("1"));
        headers.insert("x-via", HeaderValue::from_static("edge"));
        served.request_headers.apply(&mut headers);
        assert_eq!(headers.get("x-env").unwrap(), "canary");
        assert!(headers.get("x-debug").is_none());
        let via: Vec<_> = headers.get_all("x-via").iter().collect();
        assert_eq!(via, ["edge", "weir"]);
    }

    #[test]
    fn set_cookie_issues_the_key_with_its_attributes() {
        let sticky = StickyCookie::new(Arc::from("weir-web"), cookie::time::Duration::hours(24));
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            sticky.set_cookie(key, false).unwrap(),
            "weir-web=0123456789abcdef0123456789abcdef; HttpOnly; SameSite=Lax; Path=/; Max-Age=86400"
        );
        assert_eq!(
            sticky.set_cookie(key, true).unwrap(),
            "weir-web=0123456789abcdef0123456789abcdef; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=86400"
        );
        // What a client stores parses back to the key.
        let issued = sticky.set_cookie(key, true).unwrap();
        let parsed = cookie::Cookie::parse(issued.to_str().unwrap()).unwrap();
        assert_eq!((parsed.name(), parsed.value()), ("weir-web", key));
        assert_eq!(parsed.max_age(), Some(sticky.max_age));
    }

    #[test]
    fn max_age_rounds_a_part_of_a_second_up() {
        let cases = [
            (1_000, 1),
            (1_500, 2),
            (1_001, 2),
            (86_400_000, 86_400),
            (999, 1),
        ];
        for (ms, seconds) in cases {
            assert_eq!(
                cookie_max_age(std::time::Duration::from_millis(ms)),
                cookie::time::Duration::seconds(seconds),
                "{ms} ms"
            );
        }
    }

    #[test]
    fn push_set_cookie_writes_what_set_cookie_makes() {
        let sticky = StickyCookie::new(Arc::from("weir-web"), cookie::time::Duration::hours(24));
        let key = "0123456789abcdef0123456789abcdef";
        for secure in [false, true] {
            let mut out = b"set-cookie: ".to_vec();
            sticky.push_set_cookie(&mut out, key.as_bytes(), secure);
            let made = sticky.set_cookie(key, secure).unwrap();
            assert_eq!(&out[b"set-cookie: ".len()..], made.as_bytes());
        }
    }

    #[test]
    fn set_cookie_is_what_the_cookie_crate_writes() {
        for (name, max_age) in [
            ("weir-web", cookie::time::Duration::hours(24)),
            ("SRV", cookie::time::Duration::seconds(1)),
            ("a", cookie::time::Duration::seconds(0)),
        ] {
            let sticky = StickyCookie::new(Arc::from(name), max_age);
            for key in ["0123456789abcdef0123456789abcdef", "k"] {
                for secure in [false, true] {
                    assert_eq!(
                        sticky.set_cookie(key, secure),
                        sticky.set_cookie_by_crate(key, secure),
                        "{name} {key} {secure}"
                    );
                }
            }
        }
    }
}
