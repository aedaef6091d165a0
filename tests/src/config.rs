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
    /// `admin.readerToken`, written as is (so `${VAR}` stays a reference).
    pub reader_token: Option<String>,
    /// `admin.writerToken`, written as is.
    pub writer_token: Option<String>,
    /// Environment variables set for the weir process (for `${VAR}`).
    pub env: Vec<(String, String)>,
    /// `maxConnections` of every listener; weir's default when `None`.
    pub max_connections: Option<usize>,
    /// The open-file limit (`ulimit -n`) weir is started with.
    pub open_file_limit: Option<u64>,
    /// The one CPU weir is started on (`taskset -c`), so that it sees one.
    pub cpu: Option<usize>,
    /// Top-level YAML appended after `routes` as written (for example a
    /// `kubernetes:` block).
    pub extra: String,
    /// Start weir with `--log-format json` instead of `text`.
    pub log_json: bool,
    /// Start weir with its stderr on `/dev/full`, where every write fails.
    pub stderr_unwritable: bool,
}

/// A route's `strategy`: steps and analysis. Analysis keys left `None` are
/// not written (weir's defaults apply).
#[derive(Debug, Clone, Default)]
pub struct Strategy {
    /// The steps in order.
    pub steps: Vec<Step>,
    /// `analysis.interval`.
    pub interval: Option<String>,
    /// `analysis.window`.
    pub window: Option<String>,
    /// `analysis.minRequests`.
    pub min_requests: Option<u64>,
    /// `analysis.maxErrorRate`.
    pub max_error_rate: Option<f64>,
    /// `analysis.compareToStable`.
    pub compare_to_stable: Option<bool>,
    /// `analysis.maxLatencyP99`.
    pub max_latency_p99: Option<String>,
    /// `analysis.failureLimit`.
    pub failure_limit: Option<u32>,
    /// `webhooks`: (name, type, url, extra keys as flow-mapping entries).
    pub webhooks: Vec<(String, String, String, String)>,
    /// `threshold`.
    pub threshold: Option<u32>,
    /// Lines of the `analysis` block written as is (e.g. `templates: [...]`).
    pub analysis_lines: Vec<String>,
    /// `analysis.maxExcessErrors`.
    pub max_excess_errors: Option<u64>,
    /// Lines of a `blueGreen` block written as is (indented under it);
    /// when there are any, `steps` is not written.
    pub blue_green: Vec<String>,
}

/// One rollout step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `setWeight: N`.
    SetWeight(f64),
    /// `pause: {}` (`None`) or `pause: {duration: D}`.
    Pause(Option<String>),
    /// A step written as is, e.g. `analysis: { templates: [...] }`.
    Raw(String),
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
    /// `timeouts.idle`, as a duration string.
    pub idle_timeout: Option<String>,
    /// `upgrades`: protocols clients may switch to; unset means weir's default.
    pub upgrades: Option<Vec<String>>,
    /// `strategy`; when set, `canary.weight` is not written.
    pub strategy: Option<Strategy>,
    /// `stableFallback`, a YAML flow mapping written as is (`{}` for the
    /// defaults).
    pub stable_fallback: Option<String>,
    /// More `stable` keys, each a YAML line as written (`protocol: h2c`).
    pub stable_keys: Vec<String>,
    /// More `canary` keys, each a YAML line as written.
    pub canary_keys: Vec<String>,
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
            ..Self::default()
        }
    }

    /// Sets `admin.readerToken` and `admin.writerToken` (written as is).
    #[must_use]
    pub fn tokens(mut self, reader: Option<&str>, writer: Option<&str>) -> Self {
        self.reader_token = reader.map(str::to_owned);
        self.writer_token = writer.map(str::to_owned);
        self
    }

    /// Sets environment variable `name` for the weir process.
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same config with route `name` replaced by `f(route)`.
    ///
    /// # Panics
    /// When there is no such route.
    #[must_use]
    pub fn with_route(&self, name: &str, f: impl FnOnce(Route) -> Route) -> Self {
        let mut next = self.clone();
        let slot = next
            .routes
            .iter_mut()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route {name}"));
        *slot = f(slot.clone());
        next
    }

    /// Sets `maxConnections` on every listener.
    #[must_use]
    pub fn max_connections(mut self, limit: usize) -> Self {
        self.max_connections = Some(limit);
        self
    }

    /// Starts weir under `ulimit -n limit`.
    #[must_use]
    pub fn open_file_limit(mut self, limit: u64) -> Self {
        self.open_file_limit = Some(limit);
        self
    }

    /// Appends `yaml`, top-level keys as written, after `routes`.
    #[must_use]
    pub fn extra(mut self, yaml: &str) -> Self {
        self.extra.push_str(yaml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// Starts weir with its stderr on `/dev/full`: every log line fails to
    /// be written (and none is kept).
    #[must_use]
    pub fn stderr_unwritable(mut self) -> Self {
        self.stderr_unwritable = true;
        self
    }

    /// Starts weir with `--log-format json`: one JSON object per log line.
    #[must_use]
    pub fn log_json(mut self) -> Self {
        self.log_json = true;
        self
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
        if let Some(limit) = self.max_connections {
            let _ = writeln!(y, "    maxConnections: {limit}");
        }
        if let Some(https) = addrs.https {
            let _ = writeln!(y, "  - name: secure");
            let _ = writeln!(y, "    address: {}", quote(&https.to_string()));
            if let Some(limit) = self.max_connections {
                let _ = writeln!(y, "    maxConnections: {limit}");
            }
            let _ = writeln!(y, "    tls:");
            let _ = writeln!(y, "      certFile: tls.crt");
            let _ = writeln!(y, "      keyFile: tls.key");
        }
        let _ = writeln!(y, "admin:");
        let _ = writeln!(y, "  address: {}", quote(&addrs.admin.to_string()));
        if let Some(token) = &self.reader_token {
            let _ = writeln!(y, "  readerToken: {}", quote(token));
        }
        if let Some(token) = &self.writer_token {
            let _ = writeln!(y, "  writerToken: {}", quote(token));
        }
        let _ = writeln!(y, "stateDir: state");
        if self.routes.is_empty() {
            let _ = writeln!(y, "routes: []");
        } else {
            let _ = writeln!(y, "routes:");
        }
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
            for line in &r.stable_keys {
                let _ = writeln!(y, "      {line}");
            }
            if let Some((revision, endpoints, weight)) = &r.canary {
                let _ = writeln!(y, "    canary:");
                let _ = writeln!(y, "      revision: {}", quote(revision));
                let _ = writeln!(y, "      endpoints: {}", list(endpoints));
                for line in &r.canary_keys {
                    let _ = writeln!(y, "      {line}");
                }
                if r.strategy.is_none() {
                    let _ = writeln!(y, "      weight: {weight}");
                }
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
            if r.timeouts.is_some() || r.idle_timeout.is_some() {
                let _ = writeln!(y, "    timeouts:");
            }
            if let Some((connect, request)) = &r.timeouts {
                let _ = writeln!(y, "      connect: {}", quote(connect));
                let _ = writeln!(y, "      request: {}", quote(request));
            }
            if let Some(idle) = &r.idle_timeout {
                let _ = writeln!(y, "      idle: {}", quote(idle));
            }
            if let Some(upgrades) = &r.upgrades {
                let _ = writeln!(y, "    upgrades: {}", list(upgrades));
            }
            if let Some(fallback) = &r.stable_fallback {
                let _ = writeln!(y, "    stableFallback: {fallback}");
            }
            if let Some(strategy) = &r.strategy {
                strategy.render(&mut y);
            }
        }
        y.push_str(&self.extra);
        y
    }
}

// === impl Strategy ===

impl Strategy {
    /// These steps, analysis at weir's defaults.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            ..Self::default()
        }
    }

    /// These steps, moved only by time and commands: judged every 250 ms
    /// over 5 s, but never with enough requests (100 000) for a verdict.
    pub fn unjudged(steps: impl IntoIterator<Item = Step>) -> Self {
        Self::new(steps)
            .analysis("250ms", "5s")
            .min_requests(100_000)
    }

    /// These steps, judged every 200 ms over 5 s from 20 requests on:
    /// above 5 % errors, or significantly worse than stable, aborts.
    pub fn judged(steps: impl IntoIterator<Item = Step>) -> Self {
        Self::new(steps)
            .analysis("200ms", "5s")
            .min_requests(20)
            .max_error_rate(0.05)
            .compare_to_stable(true)
    }

    /// `analysis.interval` and `analysis.window`, e.g. `("200ms", "5s")`.
    #[must_use]
    pub fn analysis(mut self, interval: &str, window: &str) -> Self {
        self.interval = Some(interval.to_owned());
        self.window = Some(window.to_owned());
        self
    }

    /// `analysis.minRequests`.
    #[must_use]
    pub fn min_requests(mut self, n: u64) -> Self {
        self.min_requests = Some(n);
        self
    }

    /// `analysis.maxErrorRate`.
    #[must_use]
    pub fn max_error_rate(mut self, rate: f64) -> Self {
        self.max_error_rate = Some(rate);
        self
    }

    /// `analysis.compareToStable`.
    #[must_use]
    pub fn compare_to_stable(mut self, on: bool) -> Self {
        self.compare_to_stable = Some(on);
        self
    }

    /// `analysis.maxLatencyP99`.
    #[must_use]
    pub fn max_latency_p99(mut self, limit: &str) -> Self {
        self.max_latency_p99 = Some(limit.to_owned());
        self
    }

    /// `analysis.failureLimit`.
    #[must_use]
    pub fn failure_limit(mut self, n: u32) -> Self {
        self.failure_limit = Some(n);
        self
    }

    /// Adds a webhook: `name`, `type`, `url`, and more keys written as they
    /// go in a flow mapping (`"timeout: 1s, retries: 2"`, or empty).
    #[must_use]
    pub fn webhook(mut self, name: &str, kind: &str, url: &str, extra: &str) -> Self {
        self.webhooks.push((
            name.to_owned(),
            kind.to_owned(),
            url.to_owned(),
            extra.to_owned(),
        ));
        self
    }

    /// `threshold`: failed webhook checks tolerated.
    #[must_use]
    pub fn threshold(mut self, n: u32) -> Self {
        self.threshold = Some(n);
        self
    }

    /// A line of the `analysis` block written as is, e.g.
    /// `templates: [{templateName: errors}]`.
    #[must_use]
    pub fn background(mut self, line: &str) -> Self {
        self.analysis_lines.push(line.to_owned());
        self
    }

    /// `analysis.maxExcessErrors`.
    #[must_use]
    pub fn max_excess_errors(mut self, n: u64) -> Self {
        self.max_excess_errors = Some(n);
        self
    }

    /// A blue-green strategy (SPEC 12) with these lines of its `blueGreen`
    /// block, written as is (e.g. `autoPromotionEnabled: false`).
    pub fn blue_green<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Self {
        Self {
            blue_green: lines.into_iter().map(|l| l.as_ref().to_owned()).collect(),
            ..Self::default()
        }
    }

    fn render(&self, y: &mut String) {
        let _ = writeln!(y, "    strategy:");
        if self.blue_green.is_empty() {
            let _ = writeln!(y, "      steps:");
        } else {
            let _ = writeln!(y, "      blueGreen:");
            for line in &self.blue_green {
                let _ = writeln!(y, "        {line}");
            }
        }
        for step in &self.steps {
            match step {
                Step::SetWeight(w) => {
                    let _ = writeln!(y, "        - setWeight: {w}");
                }
                Step::Pause(None) => {
                    let _ = writeln!(y, "        - pause: {{}}");
                }
                Step::Pause(Some(d)) => {
                    let _ = writeln!(y, "        - pause: {{ duration: {} }}", quote(d));
                }
                Step::Raw(text) => {
                    let _ = writeln!(y, "        - {text}");
                }
            }
        }
        let mut analysis = Vec::new();
        if let Some(v) = &self.interval {
            analysis.push(format!("interval: {}", quote(v)));
        }
        if let Some(v) = &self.window {
            analysis.push(format!("window: {}", quote(v)));
        }
        if let Some(v) = self.min_requests {
            analysis.push(format!("minRequests: {v}"));
        }
        if let Some(v) = self.max_error_rate {
            analysis.push(format!("maxErrorRate: {v}"));
        }
        if let Some(v) = self.compare_to_stable {
            analysis.push(format!("compareToStable: {v}"));
        }
        if let Some(v) = &self.max_latency_p99 {
            analysis.push(format!("maxLatencyP99: {}", quote(v)));
        }
        if let Some(v) = self.failure_limit {
            analysis.push(format!("failureLimit: {v}"));
        }
        analysis.extend(self.analysis_lines.iter().cloned());
        if let Some(v) = self.max_excess_errors {
            analysis.push(format!("maxExcessErrors: {v}"));
        }
        if !analysis.is_empty() {
            let _ = writeln!(y, "      analysis:");
            for line in analysis {
                let _ = writeln!(y, "        {line}");
            }
        }
        if !self.webhooks.is_empty() {
            let _ = writeln!(y, "      webhooks:");
            for (name, kind, url, extra) in &self.webhooks {
                let more = if extra.is_empty() {
                    String::new()
                } else {
                    format!(", {extra}")
                };
                let _ = writeln!(
                    y,
                    "        - {{ name: {}, type: {}, url: {}{more} }}",
                    quote(name),
                    quote(kind),
                    quote(url)
                );
            }
        }
        if let Some(n) = self.threshold {
            let _ = writeln!(y, "      threshold: {n}");
        }
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
            idle_timeout: None,
            upgrades: None,
            strategy: None,
            stable_fallback: None,
            stable_keys: Vec::new(),
            canary_keys: Vec::new(),
        }
    }

    /// Route `name` rolling out canary `v2` on `canary` from stable `v1` on
    /// `stable` with `strategy`.
    pub fn rollout(
        name: &str,
        stable: &[SocketAddr],
        canary: &[SocketAddr],
        strategy: Strategy,
    ) -> Self {
        Self::new(name, stable)
            .canary(canary, 0.0)
            .strategy(strategy)
    }

    /// `stableFallback: YAML`, a flow mapping such as `{ budget: 1 }`.
    #[must_use]
    pub fn stable_fallback(mut self, yaml: &str) -> Self {
        self.stable_fallback = Some(yaml.to_owned());
        self
    }

    /// Adds a key to `stable`, a YAML line as written (`protocol: h2c`).
    #[must_use]
    pub fn stable_key(mut self, line: &str) -> Self {
        self.stable_keys.push(line.to_owned());
        self
    }

    /// Adds a key to `canary`, a YAML line as written.
    #[must_use]
    pub fn canary_key(mut self, line: &str) -> Self {
        self.canary_keys.push(line.to_owned());
        self
    }

    /// The canary's revision (default `v2`).
    ///
    /// # Panics
    /// When the route has no canary yet.
    #[must_use]
    pub fn canary_revision(mut self, revision: &str) -> Self {
        let canary = self.canary.as_mut().expect("set `canary` first");
        canary.0 = revision.to_owned();
        self
    }

    /// `stable.revision` and `stable.endpoints`.
    #[must_use]
    pub fn stable(mut self, revision: &str, endpoints: &[SocketAddr]) -> Self {
        self.stable_revision = revision.to_owned();
        self.stable = endpoints.iter().map(ToString::to_string).collect();
        self
    }

    /// A rollout `strategy` (the canary's weight is then not written).
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
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

    /// `timeouts.idle`: the longest a body may make no progress, e.g. `"1s"`.
    #[must_use]
    pub fn idle_timeout(mut self, idle: &str) -> Self {
        self.idle_timeout = Some(idle.to_owned());
        self
    }

    /// The protocols clients may switch to through this route (`upgrades`).
    #[must_use]
    pub fn upgrades(mut self, protocols: &[&str]) -> Self {
        self.upgrades = Some(protocols.iter().map(|p| (*p).to_owned()).collect());
        self
    }
}
