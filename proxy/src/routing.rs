//! The proxy's view of a snapshot: the route table plus, per route, the
//! resolved endpoint handles and metric handles, built once when a snapshot
//! is applied so the request path only reads.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use weir_config::{GrpcCodeSet, Snapshot, Timeouts};

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
}

/// A backend made ready to serve.
#[derive(Debug)]
pub struct ServedBackend {
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
    /// Builds the served form of `snapshot`, resolving endpoint and metric handles.
    pub fn build(snapshot: &Snapshot, registry: &Registry, metrics: &Metrics) -> Routing {
        let table = RouteTable::new(
            snapshot
                .routes
                .iter()
                .map(|r| (r.hosts.as_slice(), r.path_prefix.as_str())),
        );
        let routes = snapshot
            .routes
            .iter()
            .map(|route| {
                let backend = |b: &weir_config::Backend, role| ServedBackend {
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
                ServedRoute {
                    name: Arc::clone(&route.name),
                    split: SplitParams {
                        has_canary: route.split.canary.is_some(),
                        weight: route.split.canary_weight,
                        cohort_seed: route.split.cohort_seed,
                    },
                    stable: backend(&route.split.stable, Role::Stable),
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
                        StickyCookie::new(
                            Arc::clone(&s.cookie),
                            cookie::time::Duration::seconds(
                                i64::try_from(s.max_age.as_secs()).unwrap_or(i64::MAX),
                            ),
                        )
                    }),
                    timeouts: route.timeouts,
                    upgrades: route.upgrades.iter().cloned().collect(),
                    fallback: route
                        .stable_fallback
                        .as_ref()
                        .map(|config| FallbackPolicy::new(config, metrics.fallback(&route.name))),
                    grpc_error_codes: route.grpc_error_codes,
                }
            })
            .collect();
        Routing {
            version: snapshot.version,
            table,
            routes,
        }
    }
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
