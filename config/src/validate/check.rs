//! Semantic checks of a parsed [`ConfigSpec`] and its conversion into the
//! validated [`Config`]. Every problem is recorded; none stops the walk.
//!
//! Each conversion returns `None` after recording why, and evaluates all of
//! its parts before combining them, so that one bad value never hides another.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::analysis_templates::{self, Catalog, ResolvedText};
use super::holes::Holes;
use super::structure::FirstSeen;
use super::{Diagnostic, syntax};
use crate::duration::from_seconds;
use crate::grpc::{GRPC_CODE_NAMES, GrpcCodeSet, grpc_code_by_name};
use crate::location::{LocationIndex, child_key, parent};
use crate::model::{
    self, Admin, Analysis, BlueGreen, Config, HeaderOverride, Kubernetes, KubernetesRole, Listener,
    PortRef, Preview, Route, ServiceRef, StableFallback, Step, Stickiness, Strategy, Timeouts,
    TlsFiles, Upstream, UpstreamProtocol, UpstreamTls,
};
use crate::schema::{
    AdminSpec, AnalysisRefSpec, AnalysisSpec, BlueGreenSpec, ConfigSpec, DurationSpec,
    HeaderOverrideSpec, KubernetesSpec, ListenerSpec, PortSpec, PreviewHeaderSpec, RouteSpec,
    ServiceRefSpec, StableFallbackSpec, StepSpec, StickinessSpec, StrategySpec, TimeoutsSpec,
    TlsSpec, UpstreamTlsSpec,
};
use crate::{HostMatch, Weight};

/// The longest `revision`: room for a registry path with a tag and a
/// digest, not for a document.
const MAX_REVISION_BYTES: usize = 512;

/// Step kinds of Argo Rollouts that weir refuses by name.
const REFUSED_STEPS: [&str; 5] = [
    "experiment",
    "setCanaryScale",
    "setHeaderRoute",
    "setMirrorRoute",
    "plugin",
];

/// Walks a [`ConfigSpec`], recording a [`Diagnostic`] for every problem.
pub(super) struct Checker<'a> {
    file: &'a str,
    index: &'a LocationIndex,
    base_dir: &'a Path,
    /// Values already reported (a failed `${VAR}`): not checked again.
    reported: HashSet<String>,
    diagnostics: Vec<Diagnostic>,
    /// Checking a CanaryRoute: a role may name a Service instead of
    /// endpoints.
    cluster: bool,
    /// A file without a `kubernetes` block gets the block with its
    /// defaults (`weir run --kubernetes`).
    assume_kubernetes: bool,
    /// The file's analysis templates (or, for a CanaryRoute, the
    /// AnalysisTemplates of its namespace), for the references to them.
    templates: Catalog,
    /// A CanaryRoute's references to AnalysisTemplates that cannot be
    /// resolved now, as `(path, message)`: the route is served and the
    /// analysis waits.
    waiting: Vec<(String, String)>,
    /// The text the references to templates resolved to so far.
    resolved_text: ResolvedText,
    /// What the structural pass left out: stand-ins are skipped, and no
    /// problem that could come from a hole is reported.
    pub(super) holes: Holes,
}

/// A route's hosts and its blue-green preview's hosts (with their index in
/// the preview's list), for the preview checks.
struct RouteHosts {
    index: usize,
    name: String,
    hosts: Vec<HostMatch>,
    preview: Vec<(usize, HostMatch)>,
}

impl RouteHosts {
    /// Those of the validated route at `index`.
    fn of(index: usize, route: &Route) -> RouteHosts {
        let preview = route
            .strategy
            .as_ref()
            .and_then(|s| s.blue_green.as_ref())
            .map(|bg| bg.preview.hosts.iter().cloned().enumerate().collect())
            .unwrap_or_default();
        RouteHosts {
            index,
            name: route.name.to_string(),
            hosts: route.hosts.clone(),
            preview,
        }
    }
}

/// The preview hosts of a route as written, those that read as hosts (a
/// `${VAR}` or a malformed one is left to the route's own checks).
fn written_preview_hosts(spec: &RouteSpec) -> Vec<(usize, HostMatch)> {
    let Some(bg) = spec.strategy.as_ref().and_then(|s| s.blue_green.as_ref()) else {
        return Vec::new();
    };
    // A host listed twice in the preview is the preview's own error.
    let mut seen = HashSet::new();
    bg.preview
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, text)| !text.contains("${"))
        .filter_map(|(k, text)| syntax::host_match(text).ok().map(|host| (k, host)))
        .filter(|(_, host)| seen.insert(host.clone()))
        .collect()
}

/// What a route matches: no two routes may match the same.
#[derive(PartialEq, Eq, Hash)]
struct RouteKey {
    hosts: Vec<String>,
    path_prefix: String,
}

/// Records the first index of each key; returns the first index when `key`
/// was seen before.
fn first_seen<K: Eq + Hash>(seen: &mut HashMap<K, usize>, key: K, index: usize) -> Option<usize> {
    match seen.get(&key) {
        Some(first) => Some(*first),
        None => {
            seen.insert(key, index);
            None
        }
    }
}

/// Why two different addresses on one port cannot both be bound.
const OVERLAP_RULE: &str =
    "an unspecified address (0.0.0.0 or [::]) holds its port on every address of its kind";

/// The first addresses bound on one port, by kind, with their listener's
/// index: enough to tell whether another address on the port overlaps one
/// of them, however many there are.
#[derive(Debug, Default)]
struct PortUse {
    v4: Option<(SocketAddr, usize)>,
    v6: Option<(SocketAddr, usize)>,
    v4_unspecified: Option<(SocketAddr, usize)>,
    v6_unspecified: Option<(SocketAddr, usize)>,
}

impl PortUse {
    /// An address bound before on the port that `address` (not the same
    /// address) cannot be bound beside.
    fn overlap(&self, address: SocketAddr) -> Option<(SocketAddr, usize)> {
        // `[::]` takes IPv4 too only when no IPv4 address shares its port
        // (`weir run` binds it IPv6-only then), so the kinds never clash.
        match (address.ip(), address.ip().is_unspecified()) {
            (std::net::IpAddr::V4(_), true) => self.v4,
            (std::net::IpAddr::V4(_), false) => self.v4_unspecified,
            (std::net::IpAddr::V6(_), true) => self.v6,
            (std::net::IpAddr::V6(_), false) => self.v6_unspecified,
        }
    }

    /// Notes `address`, bound by listener `index`.
    fn record(&mut self, address: SocketAddr, index: usize) {
        let (any, unspecified) = match address.ip() {
            std::net::IpAddr::V4(_) => (&mut self.v4, &mut self.v4_unspecified),
            std::net::IpAddr::V6(_) => (&mut self.v6, &mut self.v6_unspecified),
        };
        any.get_or_insert((address, index));
        if address.ip().is_unspecified() {
            unspecified.get_or_insert((address, index));
        }
    }
}

/// The first listener (by index) among `bound` whose address `address`
/// (not one of them) cannot be bound beside.
fn overlapping_listener(
    bound: &HashMap<SocketAddr, usize>,
    address: SocketAddr,
) -> Option<(SocketAddr, usize)> {
    if address.port() == 0 {
        return None;
    }
    let mut on_port: Vec<(usize, SocketAddr)> = bound
        .iter()
        .filter(|(a, _)| a.port() == address.port())
        .map(|(&a, &i)| (i, a))
        .collect();
    on_port.sort_unstable();
    let mut port = PortUse::default();
    for (i, listener) in on_port {
        port.record(listener, i);
    }
    port.overlap(address)
}

/// The last key of a path, for messages: `routes[0].timeouts.connect` → `connect`.
fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn weight_message(error: &crate::weight::WeightError) -> String {
    format!(
        "{error}; write a percentage from 0 to 100 with at most four decimals, e.g. `10` or `0.5`"
    )
}

// === impl Checker ===

impl<'a> Checker<'a> {
    /// A checker that reports against `index`; `reported` are the problems
    /// already found at these paths.
    pub(super) fn new(
        file: &'a str,
        index: &'a LocationIndex,
        base_dir: &'a Path,
        reported: Vec<(String, String)>,
    ) -> Checker<'a> {
        let mut checker = Checker {
            file,
            index,
            base_dir,
            reported: HashSet::new(),
            diagnostics: Vec::new(),
            cluster: false,
            assume_kubernetes: false,
            templates: Catalog::default(),
            waiting: Vec::new(),
            resolved_text: ResolvedText::default(),
            holes: Holes::default(),
        };
        for (path, message) in reported {
            checker.error(&path, message);
            checker.reported.insert(path);
        }
        checker
    }

    /// With `assume`, a file without a `kubernetes` block gets the block
    /// with its defaults.
    pub(super) fn assume_kubernetes(&mut self, assume: bool) {
        self.assume_kubernetes = assume;
    }

    /// Checks the rest of a file whose structural pass left out `holes`:
    /// the values inside a stand-in count as reported, and from now on no
    /// problem that could come from a hole is recorded.
    pub(super) fn left_out(&mut self, holes: Holes) {
        self.reported.extend(holes.stand_in_paths().cloned());
        self.holes = holes;
    }

    /// A checker of a CanaryRoute's spec, whose paths start at `spec`,
    /// resolving references in `templates` (its namespace's).
    pub(super) fn for_cluster(index: &'a LocationIndex, templates: Catalog) -> Checker<'a> {
        let mut checker = Checker::new("", index, Path::new(""), Vec::new());
        checker.cluster = true;
        checker.templates = templates;
        checker
    }

    /// The references of a CanaryRoute that wait for their templates, as
    /// `(path, message)`.
    pub(super) fn take_waiting(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.waiting)
    }

    /// Checks and converts a CanaryRoute's spec (read as a route of
    /// `weir.yaml`), named `name`; returns the route and the Services of
    /// its stable and canary roles.
    pub(super) fn cluster_route(
        &mut self,
        spec: &RouteSpec,
        name: &str,
    ) -> Option<(Route, Option<ServiceRef>, Option<ServiceRef>)> {
        let at = "spec";
        let hosts = self.hosts(at, &spec.hosts);
        let path_prefix = self.path_prefix(at, spec.path_prefix.as_deref());
        let stable_service = self.service(
            "spec.stable",
            spec.stable.service.as_ref(),
            spec.stable.endpoints.is_empty(),
        );
        let canary_service = match &spec.canary {
            None => Some(None),
            Some(c) => self.service("spec.canary", c.service.as_ref(), c.endpoints.is_empty()),
        };
        let route = self.route(at, spec, Some(name.to_owned()), hosts, path_prefix);
        Some((route?, stable_service?, canary_service?))
    }

    /// The Service of a CanaryRoute's role at `at`; a role needs a Service,
    /// endpoints, or both.
    fn service(
        &mut self,
        at: &str,
        spec: Option<&ServiceRefSpec>,
        no_endpoints: bool,
    ) -> Option<Option<ServiceRef>> {
        let Some(spec) = spec else {
            if no_endpoints {
                self.error(
                    at,
                    "no `service` and no `endpoints`; name a Service, e.g. `service: {name: checkout-v1, port: 80}`, or list `endpoints`, or both",
                );
                return None;
            }
            return Some(None);
        };
        let name_path = format!("{at}.service.name");
        let name = match syntax::dns_label(&spec.name) {
            Ok(()) => Some(spec.name.clone()),
            Err(why) => {
                self.error(
                    &name_path,
                    format!(
                        "`{}` cannot name a Service: {why}",
                        spec.name.escape_debug()
                    ),
                );
                None
            }
        };
        let port_path = format!("{at}.service.port");
        let port = match &spec.port {
            PortSpec::Number(n) => match u16::try_from(*n) {
                Ok(port) if port != 0 => Some(PortRef::Number(port)),
                _ => {
                    self.error(
                        &port_path,
                        format!("port {n} is not a Service port; write its number from 1 to 65535 or its name, e.g. `80` or `http`"),
                    );
                    None
                }
            },
            PortSpec::Name(text) => match syntax::port_name(text) {
                Ok(()) => Some(PortRef::Name(text.clone())),
                Err(why) => {
                    self.error(&port_path, why);
                    None
                }
            },
        };
        Some(Some(ServiceRef {
            name: name?,
            port: port?,
        }))
    }

    /// Every problem recorded so far.
    pub(super) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.diagnostics
    }

    /// Checks and converts the whole file.
    pub(super) fn config(&mut self, spec: &ConfigSpec) -> Option<Config> {
        let mut problems = Vec::new();
        self.templates =
            analysis_templates::catalog(&spec.analysis_templates, &self.holes, &mut |p, m| {
                problems.push((p.to_owned(), m));
            });
        for (path, message) in problems {
            self.error(&path, message);
        }
        let (listeners, bound) = self.listeners(&spec.listeners);
        let admin = self.admin(spec.admin.as_ref(), &bound);
        let state_dir = self.state_dir(spec.state_dir.as_deref());
        // `kubernetes:` written without a value is the block with defaults.
        let kubernetes = match &spec.kubernetes {
            Some(k) => self.kubernetes(k).map(Some),
            None if self.assume_kubernetes || self.index.get("kubernetes").is_some() => {
                self.kubernetes(&KubernetesSpec::default()).map(Some)
            }
            None => Some(None),
        };
        let from_cluster = !matches!(kubernetes, Some(None));
        let routes = self.routes(&spec.routes, from_cluster);
        let notifications = self.notifications(&spec.notifications, &spec.routes);
        Some(Config {
            analysis_templates: spec.analysis_templates.clone(),
            listeners: listeners?,
            admin: admin?,
            state_dir: state_dir?,
            routes: routes?,
            kubernetes: kubernetes?,
            notifications: notifications?,
        })
    }

    // --- kubernetes ---

    fn kubernetes(&mut self, spec: &KubernetesSpec) -> Option<Kubernetes> {
        let namespaces = match &spec.namespaces {
            None => Some(None),
            Some(list) => self.namespaces("kubernetes.namespaces", list).map(Some),
        };
        let lease = self.object_name(
            "kubernetes.lease",
            spec.lease.as_deref(),
            model::DEFAULT_LEASE,
            syntax::dns_subdomain,
            "the Lease",
        );
        let peers = self.object_name(
            "kubernetes.peers",
            spec.peers.as_deref(),
            model::DEFAULT_PEERS,
            syntax::dns_label,
            "the peers Service",
        );
        let role = match spec.role.as_deref() {
            None => Some(KubernetesRole::Candidate),
            Some(role) => {
                let path = "kubernetes.role";
                self.text(path, role).and_then(|role| match role {
                    "candidate" => Some(KubernetesRole::Candidate),
                    "follower" => Some(KubernetesRole::Follower),
                    other => {
                        self.error(
                            path,
                            format!("role `{}` is not known; write `candidate` (may lead the replicas) or `follower` (a sidecar: never leads, never writes)", other.escape_debug()),
                        );
                        None
                    }
                })
            }
        };
        Some(Kubernetes {
            namespaces: namespaces?,
            lease: lease?,
            peers: peers?,
            role: role?,
            gateway_api: spec.gateway_api,
        })
    }

    /// Watched namespaces: DNS-1123 labels, each once.
    fn namespaces(&mut self, path: &str, list: &[String]) -> Option<BTreeSet<String>> {
        if list.is_empty() {
            self.error(
                path,
                "the list is empty, which would watch no namespace; name at least one, or remove `namespaces` to watch all",
            );
            return None;
        }
        let mut out = Some(BTreeSet::new());
        let mut seen = HashMap::new();
        for (k, name) in list.iter().enumerate() {
            let item = format!("{path}[{k}]");
            let valid = self
                .text(&item, name)
                .and_then(|name| match syntax::dns_label(name) {
                    Ok(()) => Some(name.to_owned()),
                    Err(why) => {
                        self.error(&item, format!("namespace `{}`: {why}", name.escape_debug()));
                        None
                    }
                });
            if let Some(name) = &valid {
                if let Some(first) = first_seen(&mut seen, name.clone(), k) {
                    self.error(
                        &item,
                        format!("namespace `{name}` is already listed as namespaces[{first}]; list each namespace once"),
                    );
                    out = None;
                }
            }
            match (&mut out, valid) {
                (Some(all), Some(name)) => {
                    all.insert(name);
                }
                _ => out = None,
            }
        }
        out
    }

    /// The name of a Kubernetes object, `default` when absent.
    fn object_name(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: &str,
        rule: fn(&str) -> Result<(), String>,
        what: &str,
    ) -> Option<String> {
        let Some(value) = value else {
            return Some(default.to_owned());
        };
        let value = self.text(path, value)?;
        match rule(value) {
            Ok(()) => Some(value.to_owned()),
            Err(why) => {
                self.error(
                    path,
                    format!("`{}` cannot name {what}: {why}", value.escape_debug()),
                );
                None
            }
        }
    }

    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        if self.holes.hides(path) {
            return;
        }
        self.diagnostics.push(Diagnostic {
            file: self.file.to_owned(),
            location: self.index.find(path),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// True when `path` or one of its ancestors was already reported.
    fn is_reported(&self, path: &str) -> bool {
        let mut at = Some(path);
        while let Some(p) = at {
            if self.reported.contains(p) {
                return true;
            }
            at = parent(p);
        }
        false
    }

    /// `value` unless it was already reported at `path`; every check of a
    /// value goes through here, so a failed `${VAR}` is reported only once.
    pub(super) fn text<'s>(&self, path: &str, value: &'s str) -> Option<&'s str> {
        (!self.is_reported(path)).then_some(value)
    }

    /// A relative path resolved against the config file's directory.
    fn file_path(&mut self, path: &str, value: &str, what: &str) -> Option<PathBuf> {
        let value = self.text(path, value)?;
        if value.trim().is_empty() {
            self.error(
                path,
                format!("`{}` is empty; give the path of {what}", last_key(path)),
            );
            return None;
        }
        // No file system takes a NUL byte in a path: it would be cut there.
        if value.contains('\0') {
            self.error(
                path,
                format!(
                    "`{}` contains a NUL character (\\0), which no path can hold; give the path of {what}",
                    last_key(path)
                ),
            );
            return None;
        }
        Some(self.base_dir.join(value))
    }

    fn duration(&mut self, path: &str, spec: &DurationSpec) -> Option<Duration> {
        if let DurationSpec::Text(text) = spec {
            self.text(path, text)?;
        }
        spec.to_duration()
            .map_err(|e| self.error(path, e.to_string()))
            .ok()
    }

    /// A duration that must be more than zero; `example` shows a good value.
    fn positive_duration(
        &mut self,
        path: &str,
        spec: &DurationSpec,
        example: &str,
    ) -> Option<Duration> {
        let d = self.duration(path, spec)?;
        if d.is_zero() {
            self.error(
                path,
                format!(
                    "`{}` is 0; it must be more than 0, e.g. `{example}`",
                    last_key(path)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// An optional positive duration with a default.
    pub(super) fn duration_or(
        &mut self,
        path: &str,
        spec: Option<&DurationSpec>,
        default: Duration,
        example: &str,
    ) -> Option<Duration> {
        match spec {
            None => Some(default),
            Some(spec) => self.positive_duration(path, spec, example),
        }
    }

    // --- listeners and admin ---

    /// The listeners, and the addresses of those whose address is valid.
    fn listeners(
        &mut self,
        specs: &[ListenerSpec],
    ) -> (Option<Vec<Listener>>, HashMap<SocketAddr, usize>) {
        let mut bound = HashMap::new();
        if specs.is_empty() {
            self.error(
                "listeners",
                "no listeners; add at least one, e.g. `- { name: public, address: 0.0.0.0:8080 }`",
            );
            return (None, bound);
        }
        let mut names = HashMap::new();
        let mut ports: HashMap<u16, PortUse> = HashMap::new();
        let mut listeners = Some(Vec::with_capacity(specs.len()));
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("listeners[{i}]");
            if self.holes.is_stand_in(&at) {
                listeners = None;
                continue;
            }
            let name = self.listener_name(&at, &spec.name);
            if let Some(name) = &name {
                if let Some(first) = first_seen(&mut names, name.clone(), i) {
                    self.error(
                        &format!("{at}.name"),
                        format!("listener name `{name}` is already used by listeners[{first}]; give each listener its own name"),
                    );
                }
            }
            let address = self.bind_address(&format!("{at}.address"), &spec.address);
            if let Some(address) = address {
                // Port 0 asks the system for a free port, so it never clashes.
                if address.port() != 0 {
                    let port = ports.entry(address.port()).or_default();
                    if let Some(first) = first_seen(&mut bound, address, i) {
                        self.error(
                            &format!("{at}.address"),
                            format!("address `{address}` is already used by listeners[{first}]; give each listener its own address"),
                        );
                    } else if let Some((other, first)) = port.overlap(address) {
                        self.error(
                            &format!("{at}.address"),
                            format!("address `{address}` overlaps `{other}` of listeners[{first}]: {OVERLAP_RULE}; give each listener its own port"),
                        );
                    }
                    port.record(address, i);
                }
            }
            let tls = match &spec.tls {
                None => Some(None),
                Some(tls) => self.tls(&format!("{at}.tls"), tls).map(Some),
            };
            let max_connections = self.max_connections(&at, spec.max_connections);
            match (&mut listeners, name, address, tls, max_connections) {
                (Some(all), Some(name), Some(address), Some(tls), Some(max_connections)) => {
                    all.push(Listener {
                        name,
                        address,
                        tls,
                        max_connections,
                    });
                }
                _ => listeners = None,
            }
        }
        (listeners, bound)
    }

    fn listener_name(&mut self, at: &str, name: &str) -> Option<String> {
        let path = format!("{at}.name");
        let name = self.text(&path, name)?;
        if name.trim().is_empty() {
            self.error(
                &path,
                "the listener name is empty; give it a name such as `public`",
            );
            return None;
        }
        if name.chars().any(char::is_control) {
            self.error(
                &path,
                "the listener name contains a control character; remove it",
            );
            return None;
        }
        Some(name.to_owned())
    }

    fn max_connections(&mut self, at: &str, value: Option<u64>) -> Option<usize> {
        let Some(value) = value else {
            return Some(model::DEFAULT_MAX_CONNECTIONS);
        };
        let path = format!("{at}.maxConnections");
        if value == 0 {
            self.error(
                &path,
                "`maxConnections` is 0, which would refuse every client; it must be at least 1, e.g. `10000`",
            );
            return None;
        }
        match usize::try_from(value) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(&path, format!("`maxConnections` {value} is too large"));
                None
            }
        }
    }

    fn bind_address(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        let text = self.text(path, text)?;
        match syntax::bind_address(text) {
            Ok(address) => Some(address),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }

    fn tls(&mut self, at: &str, spec: &TlsSpec) -> Option<TlsFiles> {
        let cert_file = self.file_path(
            &format!("{at}.certFile"),
            &spec.cert_file,
            "a PEM certificate chain",
        );
        let key_file = self.file_path(
            &format!("{at}.keyFile"),
            &spec.key_file,
            "a PEM private key",
        );
        Some(TlsFiles {
            cert_file: cert_file?,
            key_file: key_file?,
        })
    }

    fn admin(
        &mut self,
        spec: Option<&AdminSpec>,
        bound: &HashMap<SocketAddr, usize>,
    ) -> Option<Admin> {
        let Some(spec) = spec else {
            let address: SocketAddr = model::DEFAULT_ADMIN_ADDRESS
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9900)));
            // With a top-level key left out, `admin` may be written after all.
            if self.holes.is_loose("") {
                return None;
            }
            if let Some(i) = bound.get(&address) {
                self.error(
                    &format!("listeners[{i}].address"),
                    format!("`{address}` is the admin API's default address; use another port here, or set `admin.address`"),
                );
                return None;
            }
            if let Some((other, i)) = overlapping_listener(bound, address) {
                self.error(
                    &format!("listeners[{i}].address"),
                    format!("`{other}` overlaps the admin API's default address `{address}`: {OVERLAP_RULE}; use another port here, or set `admin.address`"),
                );
                return None;
            }
            return Some(Admin {
                address,
                reader_token: None,
                writer_token: None,
            });
        };
        let address = self.bind_address("admin.address", &spec.address);
        if let Some(address) = address {
            if let Some(i) = bound.get(&address) {
                self.error(
                    "admin.address",
                    format!("`{address}` is also the address of listeners[{i}]; give the admin API its own port"),
                );
            } else if let Some((other, i)) = overlapping_listener(bound, address) {
                self.error(
                    "admin.address",
                    format!("`{address}` overlaps `{other}` of listeners[{i}]: {OVERLAP_RULE}; give the admin API its own port"),
                );
            }
        }
        let reader_token = self.token("admin.readerToken", spec.reader_token.as_deref());
        let writer_token = self.token("admin.writerToken", spec.writer_token.as_deref());
        let mut ok = true;
        // A key of `admin` left out may be the token.
        let loose = self.holes.is_loose("admin");
        if spec.reader_token.is_some() && spec.writer_token.is_none() && !loose {
            self.error(
                "admin.readerToken",
                "`readerToken` is set without `writerToken`; add a `writerToken` (it may also read), or remove `readerToken`",
            );
            ok = false;
        }
        if let (Some(Some(reader)), Some(Some(writer))) = (&reader_token, &writer_token) {
            if reader == writer {
                self.error(
                    "admin.readerToken",
                    "`readerToken` equals `writerToken`, which would give readers write access; use two different tokens",
                );
                ok = false;
            }
        }
        if let Some(address) = address {
            let no_tokens = spec.reader_token.is_none() && spec.writer_token.is_none();
            if no_tokens && !address.ip().is_loopback() && !loose {
                self.error(
                    "admin.address",
                    format!("admin address `{address}` is not loopback and no tokens are set, so anyone could promote or abort; set `writerToken` (and optionally `readerToken`), or bind to 127.0.0.1"),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Admin {
            address: address?,
            reader_token: reader_token?,
            writer_token: writer_token?,
        })
    }

    /// `Some(None)` when absent; `None` when invalid.
    fn token(&mut self, path: &str, value: Option<&str>) -> Option<Option<String>> {
        let Some(value) = value else {
            return Some(None);
        };
        let value = self.text(path, value)?;
        match syntax::bearer_token(value) {
            Ok(()) => Some(Some(value.to_owned())),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }

    fn state_dir(&mut self, value: Option<&str>) -> Option<PathBuf> {
        match value {
            None => Some(self.base_dir.join(model::DEFAULT_STATE_DIR)),
            Some(value) => self.file_path(
                "stateDir",
                value,
                "a directory for rollout state (or remove `stateDir` for ./weir-state)",
            ),
        }
    }

    // --- routes ---

    /// The file's routes; with `from_cluster`, CanaryRoutes bring routes
    /// too and the file may have none.
    fn routes(&mut self, specs: &[RouteSpec], from_cluster: bool) -> Option<Vec<Route>> {
        if specs.is_empty() && !from_cluster {
            self.error(
                "routes",
                "no routes; add at least one with a `name`, a `stable` revision and its endpoints",
            );
            return None;
        }
        let mut names = HashMap::new();
        let mut matches: HashMap<RouteKey, usize> = HashMap::new();
        let mut routes = Some(Vec::with_capacity(specs.len()));
        // Each route's hosts and preview hosts, for the preview checks: as
        // validated, or as far as they can be read when the route fails.
        let mut known = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("routes[{i}]");
            if self.holes.is_stand_in(&at) {
                routes = None;
                continue;
            }
            let name = self.route_name(&at, &spec.name);
            if let Some(name) = &name {
                if let Some(first) = first_seen(&mut names, name.clone(), i) {
                    self.error(
                        &format!("{at}.name"),
                        format!("route name `{name}` is already used by routes[{first}]; route names must be unique"),
                    );
                }
            }
            let hosts = self.hosts(&at, &spec.hosts);
            let path_prefix = self.path_prefix(&at, spec.path_prefix.as_deref());
            // A route whose hosts or prefix were left out (not typed), or
            // with an unknown key or a merge key (perhaps `pathPrefx`, or
            // what `<<` would bring), would be compared by defaults it may
            // not have meant: it takes no part.
            let match_known = !self.holes.is_left_out(&format!("{at}.hosts"))
                && !self.holes.is_left_out(&format!("{at}.pathPrefix"))
                && !self.holes.is_loose(&at);
            if match_known && let (Some(hosts), Some(path_prefix)) = (&hosts, &path_prefix) {
                let key = RouteKey::new(hosts, path_prefix);
                let described = key.describe_hosts();
                if let Some(first) = first_seen(&mut matches, key, i) {
                    self.error(
                        &format!("{at}.pathPrefix"),
                        format!(
                            "routes[{first}] (`{}`) already matches {described} with pathPrefix `{path_prefix}`, so requests could go to either; give this route other hosts or another pathPrefix",
                            specs[first].name,
                        ),
                    );
                }
            }
            let written_hosts = hosts.clone().unwrap_or_default();
            let route = self.route(&at, spec, name, hosts, path_prefix);
            known.push(match &route {
                Some(route) => RouteHosts::of(i, route),
                None => RouteHosts {
                    index: i,
                    name: spec.name.clone(),
                    hosts: written_hosts,
                    preview: written_preview_hosts(spec),
                },
            });
            match (&mut routes, route) {
                (Some(all), Some(route)) => all.push(route),
                _ => routes = None,
            }
        }
        self.preview_hosts_unique(&known);
        routes
    }

    /// A blue-green preview host must reach only its own route's preview:
    /// not another route's host, nor another preview, nor its own route's
    /// hosts (every request would then be a preview request).
    fn preview_hosts_unique(&mut self, routes: &[RouteHosts]) {
        let mut owners: HashMap<&HostMatch, (usize, &str)> = HashMap::new();
        for route in routes {
            for host in &route.hosts {
                owners.entry(host).or_insert((route.index, "hosts"));
            }
        }
        let name_of = |index: usize| {
            routes
                .iter()
                .find(|r| r.index == index)
                .map_or("", |r| r.name.as_str())
        };
        for route in routes {
            let i = route.index;
            for (k, host) in &route.preview {
                let path = format!("routes[{i}].strategy.blueGreen.preview.hosts[{k}]");
                match owners.get(host) {
                    Some((j, what)) => {
                        let owner = if *j == i {
                            "this route".to_owned()
                        } else {
                            format!("routes[{j}] (`{}`)", name_of(*j))
                        };
                        self.error(
                            &path,
                            format!(
                                "preview host `{}` is also in the {what} of {owner}; a preview host must reach only this route's new revision, so give the preview a host of its own",
                                HostText(host)
                            ),
                        );
                    }
                    None => {
                        owners.insert(host, (i, "preview hosts"));
                    }
                }
            }
        }
    }

    fn route_name(&mut self, at: &str, name: &str) -> Option<String> {
        let path = format!("{at}.name");
        let name = self.text(&path, name)?;
        match syntax::route_name(name) {
            Ok(()) => Some(name.to_owned()),
            Err(message) => {
                self.error(&path, message);
                None
            }
        }
    }

    fn hosts(&mut self, at: &str, hosts: &[String]) -> Option<Vec<HostMatch>> {
        let mut out = Some(Vec::with_capacity(hosts.len()));
        let mut seen = HashMap::new();
        for (k, host) in hosts.iter().enumerate() {
            let path = format!("{at}.hosts[{k}]");
            let matcher = self
                .text(&path, host)
                .and_then(|host| match syntax::host_match(host) {
                    Ok(m) => Some(m),
                    Err(message) => {
                        self.error(&path, message);
                        None
                    }
                });
            if let Some(m) = &matcher {
                if let Some(first) = first_seen(&mut seen, m.clone(), k) {
                    self.error(
                        &path,
                        format!(
                            "host `{host}` is already listed as hosts[{first}]; list each host once"
                        ),
                    );
                    out = None;
                }
            }
            match (&mut out, matcher) {
                (Some(all), Some(m)) => all.push(m),
                _ => out = None,
            }
        }
        out
    }

    fn path_prefix(&mut self, at: &str, value: Option<&str>) -> Option<String> {
        let path = format!("{at}.pathPrefix");
        let Some(value) = value else {
            return Some("/".to_owned());
        };
        let value = self.text(&path, value)?;
        match syntax::path_prefix(value) {
            Ok(()) => Some(value.to_owned()),
            Err(message) => {
                self.error(&path, message);
                None
            }
        }
    }

    fn route(
        &mut self,
        at: &str,
        spec: &RouteSpec,
        name: Option<String>,
        hosts: Option<Vec<HostMatch>>,
        path_prefix: Option<String>,
    ) -> Option<Route> {
        if !self.cluster {
            self.no_service(&format!("{at}.stable"), spec.stable.service.as_ref());
            if let Some(c) = &spec.canary {
                self.no_service(&format!("{at}.canary"), c.service.as_ref());
            }
        }
        let stable = self.upstream(
            &format!("{at}.stable"),
            &spec.stable.revision,
            &spec.stable.endpoints,
            spec.stable.protocol.as_deref(),
            spec.stable.tls.as_ref(),
        );
        let mut canary = match &spec.canary {
            None => Some(None),
            Some(c) => self
                .upstream(
                    &format!("{at}.canary"),
                    &c.revision,
                    &c.endpoints,
                    c.protocol.as_deref(),
                    c.tls.as_ref(),
                )
                .map(Some),
        };
        // With a strategy, a canary equal to stable is how a config catches
        // up with a promotion (no rollout runs); without one it is a mistake.
        // A key of the route left out may be its `strategy`.
        if let (Some(stable), Some(Some(c)), None, false) =
            (&stable, &canary, &spec.strategy, self.holes.is_loose(at))
        {
            if stable.revision == c.revision {
                self.error(
                    &format!("{at}.canary.revision"),
                    format!("canary revision `{}` is also the stable revision; give the canary the new revision, or remove `canary` (with a `strategy`, an equal revision means no rollout)", c.revision),
                );
                canary = None;
            }
        }
        let fixed_weight = self.fixed_weight(at, spec);
        let stickiness = match &spec.stickiness {
            None => Some(None),
            Some(s) => self.stickiness(&format!("{at}.stickiness"), s).map(Some),
        };
        let canary_by_header = match &spec.canary_by_header {
            None => Some(None),
            Some(h) => self
                .canary_by_header(&format!("{at}.canaryByHeader"), h)
                .map(Some),
        };
        let timeouts = match &spec.timeouts {
            None => Some(Timeouts::default()),
            Some(t) => self.timeouts(&format!("{at}.timeouts"), t),
        };
        let upgrades = self.upgrades(&format!("{at}.upgrades"), spec.upgrades.as_deref());
        let strategy = match &spec.strategy {
            None => Some(None),
            Some(s) => self.strategy(&format!("{at}.strategy"), s).map(Some),
        };
        let stable_fallback = match &spec.stable_fallback {
            None => Some(None),
            Some(f) => self
                .stable_fallback(&format!("{at}.stableFallback"), f)
                .map(Some),
        };
        Some(Route {
            name: Arc::from(name?),
            hosts: hosts?,
            path_prefix: path_prefix?,
            stable: stable?,
            canary: canary?,
            fixed_weight: fixed_weight?,
            stickiness: stickiness?,
            canary_by_header: canary_by_header?,
            timeouts: timeouts?,
            upgrades: upgrades?,
            strategy: strategy?,
            stable_fallback: stable_fallback?,
        })
    }

    /// `stableFallback`: methods are tokens named once (CONNECT refused: a
    /// tunnel cannot be replayed), `maxBodyBytes` a size up to 16 MiB,
    /// `budget` above 0 and at most 1.
    fn stable_fallback(&mut self, at: &str, spec: &StableFallbackSpec) -> Option<StableFallback> {
        let defaults = StableFallback::default();
        let methods = match &spec.methods {
            None => Some(defaults.methods),
            Some(list) => self.fallback_methods(&format!("{at}.methods"), list),
        };
        let max_body_bytes = match &spec.max_body_bytes {
            None => Some(defaults.max_body_bytes),
            Some(text) => {
                let path = format!("{at}.maxBodyBytes");
                match parse_byte_size(text) {
                    Ok(n) if n <= model::MAX_FALLBACK_BODY_BYTES => Some(n),
                    Ok(n) => {
                        self.error(
                            &path,
                            format!("`maxBodyBytes` {n} is above 16MiB; every retryable request in flight holds its body in memory"),
                        );
                        None
                    }
                    Err(message) => {
                        self.error(&path, message);
                        None
                    }
                }
            }
        };
        let budget = match spec.budget {
            None => Some(defaults.budget),
            Some(b) if b > 0.0 && b <= 1.0 => Some(b),
            Some(b) => {
                let hint = if b > 1.0 && b <= 100.0 {
                    format!("write `{}` for {b} %", b / 100.0)
                } else {
                    "e.g. `0.2` for 20 %; remove `stableFallback` to turn retries off".to_owned()
                };
                self.error(
                    &format!("{at}.budget"),
                    format!("`budget` {b} is outside (0, 1]; it is the ratio of retries to the route's requests: {hint}"),
                );
                None
            }
        };
        Some(StableFallback {
            methods: methods?,
            max_body_bytes: max_body_bytes?,
            budget: budget?,
        })
    }

    fn fallback_methods(&mut self, at: &str, list: &[String]) -> Option<Vec<Arc<str>>> {
        if list.is_empty() {
            self.error(
                at,
                "no methods listed; list at least one, e.g. `[GET, HEAD, OPTIONS]`, or remove `stableFallback`",
            );
            return None;
        }
        let mut methods: Vec<Arc<str>> = Vec::with_capacity(list.len());
        // A set, not a scan of `methods`: a list of 100,000 names is checked
        // in linear time.
        let mut seen = FirstSeen::with_capacity(list.len());
        let mut ok = true;
        for (i, method) in list.iter().enumerate() {
            let problem = if method.is_empty() || !method.bytes().all(is_token_byte) {
                Some(format!(
                    "`{method}` is not an HTTP method (letters, digits and !#$%&'*+-.^_`|~, no spaces)"
                ))
            } else if method.eq_ignore_ascii_case("CONNECT") {
                Some("`CONNECT` cannot be retried: it opens a tunnel".to_owned())
            } else if method.bytes().any(|b| b.is_ascii_lowercase())
                && STANDARD_METHODS
                    .iter()
                    .any(|standard| standard.eq_ignore_ascii_case(method))
            {
                // Methods are case-sensitive: `get` would match no GET.
                Some(format!(
                    "`{method}` matches no {upper} request: methods are case-sensitive; write `{upper}`",
                    upper = method.to_ascii_uppercase()
                ))
            } else if !seen.first(method.as_str()) {
                Some(format!("`{method}` is listed twice"))
            } else {
                None
            };
            match problem {
                Some(message) => {
                    self.error(&format!("{at}[{i}]"), message);
                    ok = false;
                }
                None => methods.push(Arc::from(method.as_str())),
            }
        }
        ok.then_some(methods)
    }

    /// The protocols a route lets clients switch to: `websocket` when
    /// unset; each a token (RFC 9110 section 5.6.2), named once. `h2c` and
    /// `h2` are refused: weir serves HTTP/2 on its own listeners, and a
    /// tunnelled HTTP/2 connection would carry later requests past routing
    /// and metrics.
    fn upgrades(&mut self, at: &str, spec: Option<&[String]>) -> Option<Vec<Arc<str>>> {
        let Some(spec) = spec else {
            return Some(vec![Arc::from(DEFAULT_UPGRADE)]);
        };
        let mut upgrades: Vec<Arc<str>> = Vec::with_capacity(spec.len());
        // As for methods: a set, so a long list is checked in linear time.
        let mut seen = FirstSeen::with_capacity(spec.len());
        let mut ok = true;
        for (i, protocol) in spec.iter().enumerate() {
            let path = format!("{at}[{i}]");
            let name: Arc<str> = Arc::from(protocol.trim().to_ascii_lowercase());
            let problem = if name.is_empty() || !name.bytes().all(is_token_byte) {
                Some(format!(
                    "`{protocol}` is not a protocol name (letters, digits and !#$%&'*+-.^_`|~, no spaces or `/`)"
                ))
            } else if &*name == "h2c" || &*name == "h2" {
                Some(format!(
                    "`{protocol}` cannot be forwarded: weir serves HTTP/2 on its own listeners, and a tunnelled connection would bypass routing and metrics"
                ))
            } else if !seen.first(Arc::clone(&name)) {
                Some(format!("`{protocol}` is listed twice"))
            } else {
                None
            };
            match problem {
                Some(message) => {
                    self.error(&path, message);
                    ok = false;
                }
                None => upgrades.push(name),
            }
        }
        ok.then_some(upgrades)
    }

    /// A `service` in a `weir.yaml` route: Services are for CanaryRoutes.
    fn no_service(&mut self, at: &str, service: Option<&ServiceRefSpec>) {
        if service.is_some() {
            self.error(
                &format!("{at}.service"),
                "a Kubernetes Service is named in a CanaryRoute, not in weir.yaml; list the `endpoints` here",
            );
        }
    }

    fn upstream(
        &mut self,
        at: &str,
        revision: &str,
        endpoints: &[String],
        protocol: Option<&str>,
        tls: Option<&UpstreamTlsSpec>,
    ) -> Option<Upstream> {
        let path = format!("{at}.revision");
        let revision = self.text(&path, revision).and_then(|revision| {
            if revision.trim().is_empty() {
                self.error(
                    &path,
                    "the revision is empty; give a label such as `v2` or an image tag",
                );
                None
            } else if revision.chars().any(char::is_control) {
                self.error(
                    &path,
                    format!("revision `{}` contains a control character; use a plain label such as `v2`", revision.escape_debug()),
                );
                None
            } else if revision.len() > MAX_REVISION_BYTES {
                // It is in every status, state file, event and log line of
                // its route.
                self.error(
                    &path,
                    format!(
                        "the revision is {} bytes long, more than {MAX_REVISION_BYTES}; use a label such as `v2`, an image tag or a digest",
                        revision.len()
                    ),
                );
                None
            } else {
                Some(revision)
            }
        });
        let endpoints = self.endpoints(&format!("{at}.endpoints"), endpoints);
        let protocol = self.upstream_protocol(&format!("{at}.protocol"), protocol);
        let tls = match (protocol, tls) {
            (Some(UpstreamProtocol::H2c), Some(_)) => {
                self.error(
                    &format!("{at}.tls"),
                    "`protocol: h2c` is HTTP/2 without TLS; write `protocol: h2` for HTTP/2 over TLS, or remove `tls`",
                );
                None
            }
            (_, Some(spec)) => self.upstream_tls(&format!("{at}.tls"), spec).map(Some),
            // HTTP/2 over TLS with every default: the system's roots, the
            // endpoint's host as the name.
            (Some(UpstreamProtocol::H2), None) => Some(Some(Arc::new(UpstreamTls::default()))),
            (_, None) => Some(None),
        };
        Some(Upstream {
            revision: Arc::from(revision?),
            endpoints: endpoints?,
            protocol: protocol?,
            tls: tls?,
        })
    }

    fn upstream_protocol(&mut self, path: &str, value: Option<&str>) -> Option<UpstreamProtocol> {
        let Some(value) = value else {
            return Some(UpstreamProtocol::Http1);
        };
        match self.text(path, value)? {
            "http1" => Some(UpstreamProtocol::Http1),
            "h2c" => Some(UpstreamProtocol::H2c),
            "h2" => Some(UpstreamProtocol::H2),
            other => {
                self.error(
                    path,
                    format!(
                        "`{}` is not an upstream protocol; use `http1` (the default), `h2c` (HTTP/2 in cleartext) or `h2` (HTTP/2 over TLS)",
                        other.escape_debug()
                    ),
                );
                None
            }
        }
    }

    fn upstream_tls(&mut self, at: &str, spec: &UpstreamTlsSpec) -> Option<Arc<UpstreamTls>> {
        let ca_file = match &spec.ca_file {
            None => Some(None),
            Some(_) if self.cluster => {
                self.error(
                    &format!("{at}.caFile"),
                    "`caFile` names a file of weir's own, which a CanaryRoute cannot ship; use the system's roots (leave `caFile` out) or put the route in weir.yaml",
                );
                None
            }
            Some(file) => self
                .file_path(
                    &format!("{at}.caFile"),
                    file,
                    "a PEM file of CA certificates",
                )
                .map(Some),
        };
        let name_path = format!("{at}.serverName");
        let server_name = match &spec.server_name {
            None => Some(None),
            Some(name) => self.text(&name_path, name).and_then(|name| {
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
                if ok {
                    Some(Some(Arc::from(name.to_ascii_lowercase())))
                } else {
                    self.error(
                        &name_path,
                        format!(
                            "`{}` is not a host name or IP address to check the upstream's certificate against, e.g. `api.internal.example.com`",
                            name.escape_debug()
                        ),
                    );
                    None
                }
            }),
        };
        let insecure_skip_verify = spec.insecure_skip_verify.unwrap_or(false);
        if insecure_skip_verify && spec.ca_file.is_some() {
            self.error(
                &format!("{at}.insecureSkipVerify"),
                "`insecureSkipVerify: true` ignores `caFile`; remove one of them",
            );
            return None;
        }
        Some(Arc::new(UpstreamTls {
            ca_file: ca_file?,
            ca_pem: None,
            server_name: server_name?,
            insecure_skip_verify,
        }))
    }

    fn endpoints(&mut self, path: &str, texts: &[String]) -> Option<Vec<model::EndpointAddr>> {
        // A CanaryRoute's role without endpoints names a Service (checked
        // with the Service).
        if texts.is_empty() && !self.cluster {
            self.error(
                path,
                "no endpoints; list at least one `host:port`, e.g. `[127.0.0.1:9001]`",
            );
            return None;
        }
        let mut out = Some(Vec::with_capacity(texts.len()));
        let mut seen = HashMap::new();
        for (k, text) in texts.iter().enumerate() {
            let item = format!("{path}[{k}]");
            let endpoint = self
                .text(&item, text)
                .and_then(|text| match syntax::endpoint(text) {
                    Ok(e) => Some(e),
                    Err(message) => {
                        self.error(&item, message);
                        None
                    }
                });
            if let Some(e) = &endpoint {
                if let Some(first) = first_seen(&mut seen, e.clone(), k) {
                    self.error(
                        &item,
                        format!("endpoint `{e}` is already listed as endpoints[{first}]; list each endpoint once"),
                    );
                    out = None;
                }
            }
            match (&mut out, endpoint) {
                (Some(all), Some(e)) => all.push(e),
                _ => out = None,
            }
        }
        out
    }

    fn fixed_weight(&mut self, at: &str, spec: &RouteSpec) -> Option<Weight> {
        let Some(weight) = spec.canary.as_ref().and_then(|c| c.weight) else {
            return Some(Weight::ZERO);
        };
        let path = format!("{at}.canary.weight");
        if spec.strategy.is_some() {
            self.error(
                &path,
                "remove canary.weight: a route with a strategy gets its weight from the steps",
            );
            return None;
        }
        match Weight::try_from_percent(weight) {
            Ok(w) => Some(w),
            Err(e) => {
                self.error(&path, weight_message(&e));
                None
            }
        }
    }

    fn stickiness(&mut self, at: &str, spec: &StickinessSpec) -> Option<Stickiness> {
        let path = format!("{at}.cookie");
        let cookie =
            self.text(&path, &spec.cookie)
                .and_then(|cookie| match syntax::cookie_name(cookie) {
                    Ok(()) => Some(cookie),
                    Err(message) => {
                        self.error(&path, message);
                        None
                    }
                });
        let max_age_path = format!("{at}.maxAge");
        let max_age = self
            .duration_or(
                &max_age_path,
                spec.max_age.as_ref(),
                model::DEFAULT_STICKY_MAX_AGE,
                "24h",
            )
            .and_then(|max_age| {
                if max_age < Duration::from_secs(1) {
                    self.error(
                        &max_age_path,
                        format!(
                            "`maxAge` {}ms is under a second: the cookie's Max-Age counts whole \
                             seconds, so the cookie would expire at once and clients would \
                             change role from one request to the next; write 1s or more, e.g. `24h`",
                            max_age.as_millis()
                        ),
                    );
                    return None;
                }
                Some(max_age)
            });
        Some(Stickiness {
            cookie: Arc::from(cookie?),
            max_age: max_age?,
        })
    }

    fn canary_by_header(&mut self, at: &str, spec: &HeaderOverrideSpec) -> Option<HeaderOverride> {
        let name_path = format!("{at}.name");
        let name =
            self.text(&name_path, &spec.name)
                .and_then(|name| match syntax::header_name(name) {
                    Ok(name) => Some(name),
                    Err(message) => {
                        self.error(&name_path, message);
                        None
                    }
                });
        let value_path = format!("{at}.value");
        let value = self.text(&value_path, &spec.value).and_then(|value| {
            if let Err(message) = syntax::header_value(value) {
                self.error(&value_path, message);
                None
            } else if value.eq_ignore_ascii_case("never") {
                self.error(
                    &value_path,
                    "`never` is reserved: a request with it goes to stable; choose another value, e.g. `always`",
                );
                None
            } else {
                Some(value)
            }
        });
        Some(HeaderOverride {
            name: Arc::from(name?),
            value: Arc::from(value?),
        })
    }

    fn timeouts(&mut self, at: &str, spec: &TimeoutsSpec) -> Option<Timeouts> {
        let defaults = Timeouts::default();
        let connect = self.duration_or(
            &format!("{at}.connect"),
            spec.connect.as_ref(),
            defaults.connect,
            "1s",
        );
        let request = self.duration_or(
            &format!("{at}.request"),
            spec.request.as_ref(),
            defaults.request,
            "30s",
        );
        let idle = self.duration_or(
            &format!("{at}.idle"),
            spec.idle.as_ref(),
            defaults.idle,
            "60s",
        );
        Some(Timeouts {
            connect: connect?,
            request: request?,
            idle: idle?,
        })
    }

    // --- strategy ---

    /// The route's `strategy`. A route may keep its strategy without a
    /// `canary` (after a promotion, between releases): its next canary
    /// revision starts a rollout.
    fn strategy(&mut self, at: &str, spec: &StrategySpec) -> Option<Strategy> {
        let steps_path = format!("{at}.steps");
        let bg_path = format!("{at}.blueGreen");
        let steps_written = !spec.steps.is_empty() || self.index.get(&steps_path).is_some();
        let mut steps = Some(Vec::with_capacity(spec.steps.len()));
        let mut blue_green = Some(None);
        match &spec.blue_green {
            Some(_) if steps_written => {
                self.error(
                    &bg_path,
                    "a strategy has either `steps` (a canary rollout) or `blueGreen`, not both; remove one of them",
                );
                steps = None;
            }
            Some(bg) => {
                blue_green = self.blue_green(&bg_path, bg).map(|bg| Some(Arc::new(bg)));
            }
            None if spec.steps.is_empty() => {
                // A key left out may be `steps` or `blueGreen`.
                if !self.holes.is_loose(at) {
                    self.error(
                        &steps_path,
                        "no steps; list at least one, e.g. `- setWeight: 10` then `- pause: {}`, or write `blueGreen` instead",
                    );
                }
                steps = None;
            }
            None => {}
        }
        for (k, step) in spec.steps.iter().enumerate() {
            let path = format!("{steps_path}[{k}]");
            if self.holes.is_stand_in(&path) {
                steps = None;
                continue;
            }
            let step = self.step(&path, step);
            match (&mut steps, step) {
                (Some(all), Some(step)) => all.push(step),
                _ => steps = None,
            }
        }
        let analysis = self.analysis(&format!("{at}.analysis"), spec.analysis.as_ref());
        let webhooks = self.webhooks(at, spec);
        let background = match &spec.analysis {
            Some(a) if !a.templates.is_empty() || !a.args.is_empty() => self
                .analysis_ref(&format!("{at}.analysis"), &a.templates, &a.args)
                .map(|r| Some(Arc::new(r))),
            _ => Some(None),
        };
        let blue_green = blue_green?;
        let steps = match &blue_green {
            Some(bg) => bg.steps(),
            None => steps?,
        };
        Some(Strategy {
            steps,
            blue_green,
            analysis: analysis?,
            // Background templates alone do not make steps wait for the
            // built-in judge: only its own keys do.
            gated_by_analysis: spec
                .analysis
                .as_ref()
                .is_some_and(AnalysisSpec::has_builtin_keys),
            background: background?,
            webhooks: webhooks?,
        })
    }

    /// `strategy.blueGreen`: a preview with hosts and/or a header, the
    /// promotion settings and the pre/post-promotion analyses.
    fn blue_green(&mut self, at: &str, spec: &BlueGreenSpec) -> Option<BlueGreen> {
        let preview_path = format!("{at}.preview");
        let hosts = self.hosts(&preview_path, &spec.preview.hosts);
        let header = match &spec.preview.header {
            None => Some(None),
            Some(h) => self
                .preview_header(&format!("{preview_path}.header"), h)
                .map(Some),
        };
        let mut ok = true;
        if spec.preview.hosts.is_empty() && spec.preview.header.is_none() {
            // A key of the preview left out may be `hosts` or `header`.
            if !self.holes.is_loose(&preview_path) {
                self.error(
                    &preview_path,
                    "a preview needs `hosts`, a `header`, or both, e.g. `header: {name: x-weir-preview, value: \"1\"}`",
                );
            }
            ok = false;
        }
        let analysis = |checker: &mut Self, key: &str, spec: Option<&AnalysisRefSpec>| match spec {
            None => Some(None),
            Some(r) => {
                let path = format!("{at}.{key}");
                if r.templates.is_empty() {
                    // A key left out may be `templates`.
                    if checker.holes.is_loose(&path) {
                        return None;
                    }
                    checker.error(
                        &path,
                        format!("`{key}` needs templates, e.g. `{key}: {{templates: [{{templateName: smoke}}]}}`"),
                    );
                    return None;
                }
                checker
                    .analysis_ref(&path, &r.templates, &r.args)
                    .map(|r| Some(Arc::new(r)))
            }
        };
        let pre = analysis(
            self,
            "prePromotionAnalysis",
            spec.pre_promotion_analysis.as_ref(),
        );
        let post = analysis(
            self,
            "postPromotionAnalysis",
            spec.post_promotion_analysis.as_ref(),
        );
        let mut seconds = |key: &str, value: Option<u64>, default: Duration| match value {
            None => Some(default),
            Some(n) => from_seconds(n)
                .map_err(|e| self.error(&format!("{at}.{key}"), e.to_string()))
                .ok(),
        };
        let auto_promotion_delay = seconds(
            "autoPromotionSeconds",
            spec.auto_promotion_seconds,
            Duration::ZERO,
        );
        let scale_down_delay = seconds(
            "scaleDownDelaySeconds",
            spec.scale_down_delay_seconds,
            model::DEFAULT_SCALE_DOWN_DELAY,
        );
        if !ok {
            return None;
        }
        Some(BlueGreen {
            preview: Preview {
                hosts: hosts?,
                header: header?,
            },
            auto_promotion_enabled: spec.auto_promotion_enabled.unwrap_or(true),
            auto_promotion_delay: auto_promotion_delay?,
            scale_down_delay: scale_down_delay?,
            pre_promotion: pre?,
            post_promotion: post?,
        })
    }

    fn preview_header(&mut self, at: &str, spec: &PreviewHeaderSpec) -> Option<HeaderOverride> {
        let name_path = format!("{at}.name");
        let name =
            self.text(&name_path, &spec.name)
                .and_then(|name| match syntax::header_name(name) {
                    Ok(name) => Some(name),
                    Err(message) => {
                        self.error(&name_path, message);
                        None
                    }
                });
        let value_path = format!("{at}.value");
        let value =
            self.text(&value_path, &spec.value).and_then(|value| {
                match syntax::header_value(value) {
                    Ok(()) => Some(value),
                    Err(message) => {
                        self.error(&value_path, message);
                        None
                    }
                }
            });
        Some(HeaderOverride {
            name: Arc::from(name?),
            value: Arc::from(value?),
        })
    }

    fn step(&mut self, at: &str, spec: &StepSpec) -> Option<Step> {
        let set = [
            ("setWeight", spec.set_weight.is_some()),
            ("pause", spec.pause.is_some()),
            ("analysis", spec.analysis.is_some()),
            ("experiment", spec.experiment.is_some()),
            ("setCanaryScale", spec.set_canary_scale.is_some()),
            ("setHeaderRoute", spec.set_header_route.is_some()),
            ("setMirrorRoute", spec.set_mirror_route.is_some()),
            ("plugin", spec.plugin.is_some()),
        ];
        // A key written with no value (`pause:`) deserializes as absent; the
        // index still knows it was written.
        let written: Vec<&str> = set
            .iter()
            .filter(|(kind, is_set)| *is_set || self.index.get(&child_key(at, kind)).is_some())
            .map(|(kind, _)| *kind)
            .collect();
        let mut ok = true;
        for kind in written.iter().filter(|k| REFUSED_STEPS.contains(k)) {
            self.error(
                &child_key(at, kind),
                format!(
                    "step kind `{kind}` is not supported by weir; use setWeight, pause and analysis"
                ),
            );
            ok = false;
        }
        match written.as_slice() {
            // A key left out may be the step's kind, misspelled.
            [] if self.holes.is_loose(at) => return None,
            [] => {
                self.error(
                    at,
                    "a step must set exactly one of `setWeight`, `pause` or `analysis`, e.g. `- setWeight: 10` or `- pause: {}`",
                );
                return None;
            }
            [_] => {}
            several => {
                let list = several
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                self.error(
                    at,
                    format!("this step sets {list}; a step sets exactly one of `setWeight`, `pause` or `analysis`, so write one step per key"),
                );
                return None;
            }
        }
        if !ok {
            return None;
        }
        if written.first() == Some(&"analysis") {
            let path = child_key(at, "analysis");
            let Some(reference) = &spec.analysis else {
                self.error(
                    &path,
                    "`analysis` needs templates, e.g. `analysis: {templates: [{templateName: error-rate}]}`",
                );
                return None;
            };
            return self
                .analysis_ref(&path, &reference.templates, &reference.args)
                .map(|r| Step::Analysis(Arc::new(r)));
        }
        if written.first() == Some(&"setWeight") {
            let path = child_key(at, "setWeight");
            let Some(percent) = spec.set_weight else {
                self.error(
                    &path,
                    "`setWeight` needs a percentage from 0 to 100, e.g. `setWeight: 10`",
                );
                return None;
            };
            return match Weight::try_from_percent(percent) {
                Ok(w) => Some(Step::SetWeight(w)),
                Err(e) => {
                    self.error(&path, weight_message(&e));
                    None
                }
            };
        }
        let path = child_key(at, "pause");
        let Some(pause) = &spec.pause else {
            self.error(
                &path,
                "`pause` needs a value: write `pause: {}` to wait for `weir promote`, or `pause: { duration: 30s }`",
            );
            return None;
        };
        match &pause.duration {
            None => Some(Step::Pause(None)),
            Some(d) => self
                .positive_duration(&child_key(&path, "duration"), d, "30s")
                .map(|d| Step::Pause(Some(d))),
        }
    }

    /// Resolves a reference to analysis templates at `at`.
    fn analysis_ref(
        &mut self,
        at: &str,
        templates: &[crate::schema::TemplateRefSpec],
        args: &[crate::schema::ArgValueSpec],
    ) -> Option<model::AnalysisRef> {
        let mut problems = Vec::new();
        let resolved = analysis_templates::resolve(
            &self.templates,
            &self.holes,
            at,
            templates,
            args,
            &mut self.resolved_text,
            &mut |p, m| {
                problems.push((p.to_owned(), m));
            },
        );
        // A CanaryRoute's templates are other objects, which may come,
        // go or be fixed at any time: the route is served and the analysis
        // waits for them (an empty list is the route's own mistake).
        if self.cluster && resolved.is_none() && !templates.is_empty() {
            let waiting_for = problems
                .iter()
                .map(|(path, message)| format!("{path}: {message}"))
                .collect::<Vec<_>>()
                .join("; ");
            self.waiting.extend(problems);
            return Some(model::AnalysisRef {
                templates: templates
                    .iter()
                    .map(|t| Arc::from(t.template_name.as_str()))
                    .collect(),
                args: Vec::new(),
                metrics: Vec::new(),
                waiting_for: Some(Arc::from(waiting_for)),
            });
        }
        for (path, message) in problems {
            self.error(&path, message);
        }
        resolved
    }

    fn analysis(&mut self, at: &str, spec: Option<&AnalysisSpec>) -> Option<Analysis> {
        let defaults = Analysis::default();
        let Some(spec) = spec else {
            return Some(defaults);
        };
        let interval = self.duration_or(
            &format!("{at}.interval"),
            spec.interval.as_ref(),
            defaults.interval,
            "1s",
        );
        let window_path = format!("{at}.window");
        let mut window =
            self.duration_or(&window_path, spec.window.as_ref(), defaults.window, "30s");
        // A key left out may be `interval` or `window`, misspelled: the
        // default of the other is not what was meant.
        let defaulted = spec.interval.is_none() || spec.window.is_none();
        if let (Some(interval), Some(w), false) =
            (interval, window, defaulted && self.holes.is_loose(at))
        {
            if w < interval {
                self.error(
                    &window_path,
                    format!("window {w:?} is shorter than interval {interval:?}; the window must cover at least one interval"),
                );
                window = None;
            }
        }
        let min_requests = match spec.min_requests {
            None => Some(defaults.min_requests),
            Some(0) => {
                self.error(
                    &format!("{at}.minRequests"),
                    "`minRequests` is 0; it must be at least 1, e.g. `20`",
                );
                None
            }
            Some(n) => Some(n),
        };
        let max_error_rate = match spec.max_error_rate {
            None => Some(defaults.max_error_rate),
            Some(rate) if (0.0..=1.0).contains(&rate) => Some(rate),
            Some(rate) => {
                let example = if rate > 1.0 && rate <= 100.0 {
                    format!("write `{}` for {rate} %", rate / 100.0)
                } else {
                    "e.g. `0.05` for 5 %".to_owned()
                };
                self.error(
                    &format!("{at}.maxErrorRate"),
                    format!("`maxErrorRate` {rate} is outside 0 to 1; it is a ratio: {example}"),
                );
                None
            }
        };
        let max_latency_p99 = match &spec.max_latency_p99 {
            None => Some(defaults.max_latency_p99),
            Some(d) => self
                .positive_duration(&format!("{at}.maxLatencyP99"), d, "500ms")
                .map(Some),
        };
        let grpc_error_codes = match &spec.grpc_error_codes {
            None => Some(defaults.grpc_error_codes),
            Some(names) => self.grpc_codes(&format!("{at}.grpcErrorCodes"), names),
        };
        Some(Analysis {
            interval: interval?,
            window: window?,
            min_requests: min_requests?,
            max_error_rate: max_error_rate?,
            compare_to_stable: spec.compare_to_stable.unwrap_or(defaults.compare_to_stable),
            max_latency_p99: max_latency_p99?,
            failure_limit: spec.failure_limit.unwrap_or(defaults.failure_limit),
            max_excess_errors: spec.max_excess_errors.or(defaults.max_excess_errors),
            grpc_error_codes: grpc_error_codes?,
        })
    }

    /// gRPC status names, each once, in any case.
    fn grpc_codes(&mut self, at: &str, names: &[String]) -> Option<GrpcCodeSet> {
        let mut set = Some(GrpcCodeSet::EMPTY);
        for (i, name) in names.iter().enumerate() {
            let path = format!("{at}[{i}]");
            let Some(name) = self.text(&path, name) else {
                set = None;
                continue;
            };
            match grpc_code_by_name(name.trim()) {
                Some(code) if set.is_some_and(|s| s.contains(code)) => {
                    self.error(&path, format!("`{name}` is listed twice"));
                    set = None;
                }
                Some(code) => set = set.map(|s| s.with(code)),
                None => {
                    self.error(
                        &path,
                        format!(
                            "`{}` is not a gRPC status name; use one of {}",
                            name.escape_debug(),
                            GRPC_CODE_NAMES.join(", ")
                        ),
                    );
                    set = None;
                }
            }
        }
        set
    }
}

/// A host matcher as written: `shop.example.com`, `*.example.com`.
struct HostText<'a>(&'a HostMatch);

impl std::fmt::Display for HostText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            HostMatch::Exact(name) => f.write_str(name),
            HostMatch::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

// === impl RouteKey ===

impl RouteKey {
    /// The host set (sorted, as written order does not matter) and prefix.
    fn new(hosts: &[HostMatch], path_prefix: &str) -> RouteKey {
        let mut hosts: Vec<String> = hosts
            .iter()
            .map(|h| match h {
                HostMatch::Exact(name) => name.clone(),
                HostMatch::Suffix(suffix) => format!("*{suffix}"),
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        RouteKey {
            hosts,
            path_prefix: path_prefix.to_owned(),
        }
    }

    fn describe_hosts(&self) -> String {
        if self.hosts.is_empty() {
            "any host".to_owned()
        } else {
            format!("hosts [{}]", self.hosts.join(", "))
        }
    }
}

/// The protocol a route lets clients upgrade to when `upgrades` is unset.
const DEFAULT_UPGRADE: &str = "websocket";

/// The methods of RFC 9110 and PATCH: one of them written in lowercase
/// in a method list is a mistake (methods are case-sensitive).
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A size in bytes: a whole number, optionally followed by `B`, `KiB`,
/// `MiB` (powers of 1024) or `kB`, `MB` (powers of 1000).
fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let expected =
        "write a number of bytes or a size such as `64KiB` or `1MiB` (units B, KiB, MiB, kB, MB)";
    if text.starts_with('-') {
        return Err(format!("`{text}` is negative; {expected}"));
    }
    let multiplier = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1024,
        "MiB" => 1024 * 1024,
        "kB" | "KB" => 1000,
        "MB" => 1000 * 1000,
        other => return Err(format!("`{text}`: unknown unit `{other}`; {expected}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size; {expected}"))?;
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large; {expected}"))
}

/// Whether `b` is a byte of an RFC 9110 token (`tchar`): a method, a
/// field name.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
