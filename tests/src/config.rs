//! `weir.yaml` written from a builder, so tests state only what matters to
//! them. The listener and admin addresses are filled in by [`crate::Weir`].

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::weir::Addrs;

/// A whole config minus the addresses weir binds.
#[derive(Debug, Clone, Default)]
pub struct WeirConfig {
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Also run a TLS listener (certificate generated into the temp dir).
    pub tls: bool,
}

/// One route; defaults: any host, prefix `/`, stable revision `v1`, no
/// canary.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name.
    pub name: String,
    /// `hosts:`; empty means any host.
    pub hosts: Vec<String>,
    /// `pathPrefix:`.
    pub path_prefix: Option<String>,
    /// `stable.revision`.
    pub stable_revision: String,
    /// `stable.endpoints`.
    pub stable: Vec<String>,
    /// `canary`: revision, endpoints, weight.
    pub canary: Option<(String, Vec<String>, f64)>,
    /// `stickiness.cookie`.
    pub sticky_cookie: Option<String>,
    /// `canaryByHeader`: name and value.
    pub canary_by_header: Option<(String, String)>,
    /// `timeouts`: connect and request, as duration strings.
    pub timeouts: Option<(String, String)>,
}

fn quote(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

// === impl WeirConfig ===

impl WeirConfig {
    /// A config with these routes and no TLS listener.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Self {
        Self {
            routes: routes.into_iter().collect(),
            tls: false,
        }
    }

    /// Adds a TLS listener.
    #[must_use]
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The same config with route `name`'s canary weight set to `weight`.
    ///
    /// # Panics
    /// When there is no such route with a canary.
    #[must_use]
    pub fn with_weight(&self, name: &str, weight: f64) -> Self {
        let mut next = self.clone();
        let route = next
            .routes
            .iter_mut()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route {name}"));
        let canary = route
            .canary
            .as_mut()
            .unwrap_or_else(|| panic!("route {name} has no canary"));
        canary.2 = weight;
        next
    }

    /// The YAML text, with `addrs` as listener and admin addresses. TLS
    /// files are `tls.crt` and `tls.key` beside the config.
    pub fn render(&self, addrs: &Addrs) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "listeners:");
        let _ = writeln!(y, "  - name: plain");
        let _ = writeln!(y, "    address: {}", quote(&addrs.http.to_string()));
        if let Some(https) = addrs.https {
            let _ = writeln!(y, "  - name: secure");
            let _ = writeln!(y, "    address: {}", quote(&https.to_string()));
            let _ = writeln!(y, "    tls:");
            let _ = writeln!(y, "      certFile: tls.crt");
            let _ = writeln!(y, "      keyFile: tls.key");
        }
        let _ = writeln!(y, "admin:");
        let _ = writeln!(y, "  address: {}", quote(&addrs.admin.to_string()));
        let _ = writeln!(y, "stateDir: state");
        let _ = writeln!(y, "routes:");
        for r in &self.routes {
            let _ = writeln!(y, "  - name: {}", quote(&r.name));
            if !r.hosts.is_empty() {
                let _ = writeln!(y, "    hosts: {}", list(&r.hosts));
            }
            if let Some(prefix) = &r.path_prefix {
                let _ = writeln!(y, "    pathPrefix: {}", quote(prefix));
            }
            let _ = writeln!(y, "    stable:");
            let _ = writeln!(y, "      revision: {}", quote(&r.stable_revision));
            let _ = writeln!(y, "      endpoints: {}", list(&r.stable));
            if let Some((revision, endpoints, weight)) = &r.canary {
                let _ = writeln!(y, "    canary:");
                let _ = writeln!(y, "      revision: {}", quote(revision));
                let _ = writeln!(y, "      endpoints: {}", list(endpoints));
                let _ = writeln!(y, "      weight: {weight}");
            }
            if let Some(cookie) = &r.sticky_cookie {
                let _ = writeln!(y, "    stickiness:");
                let _ = writeln!(y, "      cookie: {}", quote(cookie));
            }
            if let Some((name, value)) = &r.canary_by_header {
                let _ = writeln!(y, "    canaryByHeader:");
                let _ = writeln!(y, "      name: {}", quote(name));
                let _ = writeln!(y, "      value: {}", quote(value));
            }
            if let Some((connect, request)) = &r.timeouts {
                let _ = writeln!(y, "    timeouts:");
                let _ = writeln!(y, "      connect: {}", quote(connect));
                let _ = writeln!(y, "      request: {}", quote(request));
            }
        }
        y
    }
}

// === impl Route ===

impl Route {
    /// Route `name` with stable revision `v1` on `stable`.
    pub fn new(name: &str, stable: &[SocketAddr]) -> Self {
        Self {
            name: name.to_owned(),
            hosts: Vec::new(),
            path_prefix: None,
            stable_revision: "v1".to_owned(),
            stable: stable.iter().map(ToString::to_string).collect(),
            canary: None,
            sticky_cookie: None,
            canary_by_header: None,
            timeouts: None,
        }
    }

    /// A canary, revision `v2`, on `endpoints` at `weight` percent.
    #[must_use]
    pub fn canary(mut self, endpoints: &[SocketAddr], weight: f64) -> Self {
        self.canary = Some((
            "v2".to_owned(),
            endpoints.iter().map(ToString::to_string).collect(),
            weight,
        ));
        self
    }

    /// Cookie stickiness with cookie `name`.
    #[must_use]
    pub fn sticky(mut self, cookie: &str) -> Self {
        self.sticky_cookie = Some(cookie.to_owned());
        self
    }

    /// `canaryByHeader` with header `name` and canary value `value`.
    #[must_use]
    pub fn canary_by_header(mut self, name: &str, value: &str) -> Self {
        self.canary_by_header = Some((name.to_owned(), value.to_owned()));
        self
    }

    /// Only these hosts.
    #[must_use]
    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    /// `pathPrefix`.
    #[must_use]
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    /// Connect and request timeouts, e.g. `("1s", "300ms")`.
    #[must_use]
    pub fn timeouts(mut self, connect: &str, request: &str) -> Self {
        self.timeouts = Some((connect.to_owned(), request.to_owned()));
        self
    }
}
