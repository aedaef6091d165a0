//! Loading a config file: read it, validate it, and make the checks that need
//! the outside world (TLS files, DNS), reporting every problem with its place.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use weir_config::{
    Config, Diagnostic, Diagnostics, Document, EndpointAddr, RouteOverride, Snapshot, UpstreamTls,
};

/// A config that passed every check, with what the checks produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated document.
    pub document: Document,
    /// Per listener, its TLS config (same order as `config.listeners`).
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// The file's bytes, to tell a real change from a touch.
    pub text: String,
}

/// Resolved addresses of every endpoint named by the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved(HashMap<EndpointAddr, Vec<SocketAddr>>);

// === impl Loaded ===

impl Loaded {
    /// The validated config.
    pub fn config(&self) -> &Config {
        &self.document.config
    }
}

/// Reads and checks `path`, with `${VAR}` taken from the process environment.
///
/// # Errors
/// Every problem found, each with file, line, column and key path.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    load_with(path, false)
}

/// [`load`], with the `kubernetes` block assumed when `kubernetes`
/// (`weir run --kubernetes`): its defaults apply when the file has none.
///
/// # Errors
/// Every problem found, each with file, line, column and key path.
pub fn load_with(path: &Path, kubernetes: bool) -> Result<Loaded, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            location: None,
            path: String::new(),
            message: format!("cannot read the config file: {error}"),
        }])
    })?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let env = |name: &str| std::env::var(name).ok();
    let mut document = if kubernetes {
        weir_config::parse_with_kubernetes(&text, &file, base_dir, &env)?
    } else {
        weir_config::parse(&text, &file, base_dir, &env)?
    };

    let mut problems = Vec::new();
    let tls = document
        .config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| {
            let files = listener.tls.as_ref()?;
            let mut read = |field: &str, path: &Path| match std::fs::read(path) {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    let message = format!("cannot read {}: {error}", path.display());
                    problems
                        .push(document.diagnostic(&format!("listeners[{i}].tls.{field}"), message));
                    None
                }
            };
            let cert = read("certFile", &files.cert_file);
            let key = read("keyFile", &files.key_file);
            let (cert, key) = (cert?, key?);
            match weir_proxy::tls::server_config(&cert, &key) {
                Ok(config) => Some(config),
                Err(error) => {
                    let message = format!(
                        "cannot use {} with {}: {error}",
                        files.cert_file.display(),
                        files.key_file.display()
                    );
                    problems.push(document.diagnostic(&format!("listeners[{i}].tls"), message));
                    None
                }
            }
        })
        .collect();
    load_upstream_tls(&mut document, &mut problems);
    if problems.is_empty() {
        Ok(Loaded {
            document,
            tls,
            text,
        })
    } else {
        Err(Diagnostics(problems))
    }
}

/// Reads the `caFile` of every role that has one into the config (the
/// snapshot carries the certificates to the proxy) and checks that each
/// role's TLS settings make a client: PEM certificates in the file, system
/// roots when there is no file, a usable server name.
fn load_upstream_tls(document: &mut Document, problems: &mut Vec<Diagnostic>) {
    let mut found = Vec::new();
    for (r, route) in document.config.routes.iter().enumerate() {
        let roles = std::iter::once(("stable", &route.stable))
            .chain(route.canary.iter().map(|c| ("canary", c)));
        for (role, upstream) in roles {
            let Some(tls) = &upstream.tls else { continue };
            let at = format!("routes[{r}].{role}");
            let mut tls = UpstreamTls::clone(tls);
            if let Some(file) = &tls.ca_file {
                match std::fs::read(file) {
                    Ok(pem) => tls.ca_pem = Some(Arc::from(pem)),
                    Err(error) => {
                        problems.push(document.diagnostic(
                            &format!("{at}.tls.caFile"),
                            format!("cannot read {}: {error}", file.display()),
                        ));
                        continue;
                    }
                }
            }
            if let Err(error) = weir_proxy::upstream::tls::check(&tls) {
                // Say it where the setting is written: the CA file, the
                // `tls` block, or `protocol: h2` alone.
                let path = if tls.ca_file.is_some() {
                    format!("{at}.tls.caFile")
                } else if document.index.find(&format!("{at}.tls")).is_some() {
                    format!("{at}.tls")
                } else {
                    format!("{at}.protocol")
                };
                let message = match &tls.ca_file {
                    Some(file) => format!("{}: {error}", file.display()),
                    None => error.to_string(),
                };
                problems.push(document.diagnostic(&path, message));
                continue;
            }
            found.push((r, role, Arc::new(tls)));
        }
    }
    for (r, role, tls) in found {
        let route = &mut document.config.routes[r];
        let upstream = match role {
            "stable" => Some(&mut route.stable),
            _ => route.canary.as_mut(),
        };
        if let Some(upstream) = upstream {
            upstream.tls = Some(tls);
        }
    }
}

// === impl Resolved ===

impl Resolved {
    /// Resolves every endpoint of `document`. A name that does not resolve is
    /// an error at its place in the file.
    ///
    /// # Errors
    /// One diagnostic per endpoint that did not resolve.
    pub async fn resolve(document: &Document) -> Result<Resolved, Diagnostics> {
        let mut resolved = HashMap::new();
        let mut problems = Vec::new();
        for (r, route) in document.config.routes.iter().enumerate() {
            let upstreams = std::iter::once(("stable", &route.stable))
                .chain(route.canary.iter().map(|c| ("canary", c)));
            for (role, upstream) in upstreams {
                for (e, endpoint) in upstream.endpoints.iter().enumerate() {
                    if resolved.contains_key(endpoint) {
                        continue;
                    }
                    match resolve_one(endpoint).await {
                        Ok(addrs) => {
                            resolved.insert(endpoint.clone(), addrs);
                        }
                        Err(message) => problems.push(
                            document
                                .diagnostic(&format!("routes[{r}].{role}.endpoints[{e}]"), message),
                        ),
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Resolved(resolved))
        } else {
            Err(Diagnostics(problems))
        }
    }

    /// Resolves the names again, keeping the previous addresses of a name
    /// that fails this time.
    pub async fn refresh(&self) -> Resolved {
        let mut next = self.0.clone();
        for (endpoint, addrs) in &mut next {
            if endpoint.host.parse::<IpAddr>().is_ok() {
                continue;
            }
            match resolve_one(endpoint).await {
                Ok(fresh) => *addrs = fresh,
                Err(message) => {
                    tracing::warn!(%endpoint, %message, "keeping the previous addresses")
                }
            }
        }
        Resolved(next)
    }

    /// Whether any endpoint is a name (and so worth resolving again).
    pub fn has_names(&self) -> bool {
        self.0.keys().any(|e| e.host.parse::<IpAddr>().is_err())
    }

    /// The snapshot for `config` with these addresses.
    pub fn compile(
        &self,
        config: &Config,
        overrides: &dyn Fn(&str) -> Option<RouteOverride>,
    ) -> Snapshot {
        // CanaryRoutes' endpoints are addresses from EndpointSlices, never
        // names: they need no lookup.
        Snapshot::compile(config, overrides, &|endpoint| match self.0.get(endpoint) {
            Some(addrs) => addrs.clone(),
            None => endpoint
                .host
                .parse::<IpAddr>()
                .map(|ip| vec![SocketAddr::new(ip, endpoint.port)])
                .unwrap_or_default(),
        })
    }
}

async fn resolve_one(endpoint: &EndpointAddr) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, endpoint.port)]);
    }
    let lookup = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port));
    match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(addrs)) => {
            let mut addrs: Vec<SocketAddr> = addrs.collect();
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                Err(format!("{endpoint} resolves to no address"))
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(error)) => Err(format!("cannot resolve {endpoint}: {error}")),
        Err(_) => Err(format!("resolving {endpoint} timed out after 5s")),
    }
}
