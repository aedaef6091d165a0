//! The scenario file of `weir-loadtest experiment`: its schema (YAML,
//! camelCase keys, unknown keys refused), the checks that go beyond the
//! schema, each reported with its key path, and the `--speed` scaling.
//!
//! Parsing takes text, not a path, and touches no clock or socket.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::upstream::LatencyDist;

pub use weir_config::status::{BlueGreenStage, Phase, known_phase};

/// The most requests one scenario may schedule (`rate × duration`).
pub const MAX_REQUESTS: f64 = 2_000_000.0;

/// The longest scenario.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Names the run (its directory and report); `[A-Za-z0-9._-]`.
    pub name: String,
    /// How long the load runs; timeline offsets count from its start.
    pub duration: Dur,
    /// The fake upstreams, started in-process on `127.0.0.1:0`.
    pub upstreams: Vec<UpstreamSpec>,
    /// How weir is run.
    pub weir: WeirSpec,
    /// The load sent through weir.
    pub load: LoadSpec,
    /// Actions at offsets from the start of the load.
    #[serde(default)]
    pub timeline: Vec<Action>,
    /// Checked at the end; the run passes when all hold.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// A real Prometheus scraping weir, for analysis templates; its URL is
    /// in `${PROMETHEUS_URL}`.
    #[serde(default)]
    pub prometheus: Option<PrometheusSpec>,
    /// The built-in smoke tester, a `pre-rollout` webhook target; its
    /// address is in `${SMOKE_TESTER}`.
    #[serde(default)]
    pub smoke_tester: Option<SmokeTesterSpec>,
}

/// A Prometheus server (Debian's `prometheus` package) that the runner
/// starts on a loopback port, scraping weir's `/metrics` every second.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSpec {
    /// The server binary; default [`PROMETHEUS_BINARY`].
    #[serde(default)]
    pub binary: Option<String>,
}

/// The built-in smoke tester: a small HTTP server that, for each webhook
/// call, sends requests through weir to the host (and header) named in the
/// call's `metadata` and answers 200 when every one answered 2xx, else 500,
/// as Flagger's load tester does for a `pre-rollout` gate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmokeTesterSpec {
    /// Requests per test unless the call's `metadata.requests` says;
    /// default 20.
    #[serde(default)]
    pub requests: Option<u64>,
}

/// Where Debian's `prometheus` package installs the server.
pub const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";

/// The variable holding the URL of the scenario's Prometheus.
pub const PROMETHEUS_VAR: &str = "PROMETHEUS_URL";

/// The variable holding the address of the scenario's smoke tester.
pub const SMOKE_TESTER_VAR: &str = "SMOKE_TESTER";

/// One fake upstream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamSpec {
    /// Its name, answered in `x-upstream-name`; its address is in the
    /// environment variable [`upstream_env_var`] names.
    pub name: String,
    /// Fraction of requests answered with 500 from the start, 0 to 1.
    #[serde(default)]
    pub error_rate: f64,
    /// Latency added to every answer: `5ms` (fixed), `5ms..50ms` (uniform)
    /// or `exp:20ms` (exponential with that mean, capped at 10 × the mean).
    #[serde(default)]
    pub latency: Option<LatencyDist>,
}

/// How weir is run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeirSpec {
    /// The `weir.yaml` text. It must take its addresses from `${WEIR_LISTEN}`
    /// and `${WEIR_ADMIN}`, and may use `${UPSTREAM_<NAME>}`.
    pub config: String,
    /// Bearer token for the admin API when the config sets tokens (it must
    /// be the writer token for timeline commands).
    #[serde(default)]
    pub token: Option<String>,
}

/// The load.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadSpec {
    /// Requests per second, open loop.
    pub rate: f64,
    /// Simulated users, each with a cookie jar; none keeps no cookies.
    #[serde(default)]
    pub users: Option<usize>,
    /// Path and query of every request; default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// Keep-alive connections, i.e. the most requests in flight; default 64.
    #[serde(default)]
    pub connections: Option<usize>,
}

/// One timeline entry: exactly one of `config`, `fault`, `command`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    /// Offset from the start of the load.
    pub at: Dur,
    /// Replaces weir's config file (weir applies it within a second).
    #[serde(default)]
    pub config: Option<String>,
    /// Changes an upstream's faults.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Sends a rollout command to the admin API.
    #[serde(default)]
    pub command: Option<CommandSpec>,
}

/// What an [`Action`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActionKind<'a> {
    /// A new config text.
    Config(&'a str),
    /// New faults.
    Fault(&'a Fault),
    /// A rollout command.
    Command(&'a CommandSpec),
}

/// New faults for one upstream; a missing field keeps its value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// The upstream's name.
    pub upstream: String,
    /// New fraction of requests answered with 500, 0 to 1.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// New latency, written as [`UpstreamSpec::latency`].
    #[serde(default)]
    pub latency: Option<LatencyDist>,
}

/// A rollout command: `POST /api/v1/routes/{route}/{action}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandSpec {
    /// The route.
    pub route: String,
    /// The command.
    pub action: CommandAction,
}

/// The rollout commands of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandAction {
    /// End the current pause or skip the current step.
    Promote,
    /// Skip every remaining step (`promote` with `{"full": true}`).
    PromoteFull,
    /// Weight 0 at once.
    Abort,
    /// Start an aborted rollout again.
    Retry,
    /// Hold the step timer.
    Pause,
    /// Release the step timer.
    Resume,
}

/// One check made at the end of the run, written as a one-key map such as
/// `finalPhase: {route: web, phase: Promoted}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "ExpectationSpec")]
pub enum Expectation {
    /// The route's phase in the last sample.
    FinalPhase(FinalPhase),
    /// The route was seen in a phase (with a canary revision, by a time).
    ReachedPhase(ReachedPhase),
    /// The route's step index reached `step` (or it was promoted) by `by`.
    ReachedStep(ReachedStep),
    /// After timeline action `afterAction`, the route was seen `Aborted` at
    /// weight 0 within `within`.
    AbortedWithin(AbortedWithin),
    /// From 1 s after each abort of the route until it left `Aborted`, the
    /// upstream received no request.
    NoCanaryAfterAbort(NoCanaryAfterAbort),
    /// The load generator's 5xx share of the responses from an upstream (or
    /// of all requests, failed ones included) stayed below `below`.
    MaxErrorRate(MaxErrorRate),
    /// The route was seen in a blue-green stage (with a new revision).
    ReachedStage(ReachedStage),
}

/// The YAML shape of an [`Expectation`]: a map with exactly one key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectationSpec {
    #[serde(default)]
    final_phase: Option<FinalPhase>,
    #[serde(default)]
    reached_phase: Option<ReachedPhase>,
    #[serde(default)]
    reached_step: Option<ReachedStep>,
    #[serde(default)]
    aborted_within: Option<AbortedWithin>,
    #[serde(default)]
    no_canary_after_abort: Option<NoCanaryAfterAbort>,
    #[serde(default)]
    max_error_rate: Option<MaxErrorRate>,
    #[serde(default)]
    reached_stage: Option<ReachedStage>,
}

/// See [`Expectation::FinalPhase`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FinalPhase {
    /// The route.
    pub route: String,
    /// The phase expected (one of the five; a misspelled one is an error).
    #[serde(deserialize_with = "known_phase")]
    pub phase: Phase,
}

/// See [`Expectation::ReachedPhase`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReachedPhase {
    /// The route.
    pub route: String,
    /// The phase expected (one of the five; a misspelled one is an error).
    #[serde(deserialize_with = "known_phase")]
    pub phase: Phase,
    /// The canary revision it must have had then.
    #[serde(default)]
    pub revision: Option<String>,
    /// The latest offset at which it counts.
    #[serde(default)]
    pub by: Option<Dur>,
}

/// See [`Expectation::ReachedStep`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReachedStep {
    /// The route.
    pub route: String,
    /// The 0-based step index.
    pub step: u64,
    /// The latest offset at which it counts.
    #[serde(default)]
    pub by: Option<Dur>,
}

/// See [`Expectation::AbortedWithin`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortedWithin {
    /// The route.
    pub route: String,
    /// Index into the timeline.
    pub after_action: usize,
    /// The longest time from that action to weight 0. Not scaled by
    /// `--speed`: detection does not get faster with a shorter scenario.
    pub within: Dur,
}

/// See [`Expectation::NoCanaryAfterAbort`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoCanaryAfterAbort {
    /// The route.
    pub route: String,
    /// The upstream that must get nothing.
    pub upstream: String,
}

/// See [`Expectation::ReachedStage`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReachedStage {
    /// The route.
    pub route: String,
    /// The blue-green stage (`Preview`, `PrePromotion`,
    /// `AwaitingPromotion`, `PostPromotion`, `Done`).
    pub stage: BlueGreenStage,
    /// The new revision it must have had then.
    #[serde(default)]
    pub revision: Option<String>,
}

/// See [`Expectation::MaxErrorRate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxErrorRate {
    /// The upstream; none means every request.
    #[serde(default)]
    pub upstream: Option<String>,
    /// The error rate must stay below this fraction.
    pub below: f64,
}

/// A duration as written in `weir.yaml` (`500ms`, `30s`, `1m30s`, a bare
/// integer of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

/// Why a scenario was refused: every problem, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// Where the text came from (a file name, or `builtin demo`).
    pub origin: String,
    /// `path: message`, one per problem.
    pub problems: Vec<String>,
}

struct DurVisitor;

fn default_path() -> String {
    "/".to_owned()
}

/// Parses and checks a scenario.
///
/// # Errors
/// [`ScenarioError`] with the key path and message of the first schema error
/// (YAML syntax, unknown key, wrong type), or of every failed check.
pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let scenario: Scenario = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let mut message = e.inner().to_string();
        // serde_yaml_ng starts most messages with the path of the map it was
        // in; the full path replaces it.
        if let Some((head, rest)) = message.split_once(": ")
            && (path == head
                || path.starts_with(&format!("{head}."))
                || path.starts_with(&format!("{head}[")))
        {
            message = rest.to_owned();
        }
        // A syntax error before any key has no path (`?`), and the YAML
        // parser leaves some of them without a place: it is added.
        if !message.contains(" at line ")
            && let Some(at) = e.inner().location()
        {
            message = format!("{message} at line {} column {}", at.line(), at.column());
        }
        let problem = if path == "." || path == "?" {
            message
        } else {
            format!("{path}: {message}")
        };
        ScenarioError {
            origin: origin.to_owned(),
            problems: vec![problem],
        }
    })?;
    let problems = scenario.problems();
    if problems.is_empty() {
        Ok(scenario)
    } else {
        Err(ScenarioError {
            origin: origin.to_owned(),
            problems,
        })
    }
}

/// The environment variable that holds upstream `name`'s address:
/// `UPSTREAM_` and the name upper-cased, `-` and `.` turned into `_`.
pub fn upstream_env_var(name: &str) -> String {
    let mut var = String::from("UPSTREAM_");
    for c in name.chars() {
        var.push(match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    var
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

// === impl Scenario ===

impl Scenario {
    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamSpec> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The names of the routes of the weir config and of every config the
    /// timeline writes; `None` when one of them cannot be read so (weir
    /// says why), or follows a cluster, whose routes are not in the file.
    fn route_names(&self) -> Option<BTreeSet<String>> {
        let configs = std::iter::once(&self.weir.config)
            .chain(self.timeline.iter().filter_map(|a| a.config.as_ref()));
        let mut names = BTreeSet::new();
        for text in configs {
            let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
            if value.get("kubernetes").is_some() {
                return None;
            }
            for route in value.get("routes")?.as_sequence()? {
                names.insert(route.get("name")?.as_str()?.to_owned());
            }
        }
        Some(names)
    }

    /// The same scenario `speed` times faster: `duration`, every `at`, every
    /// `by` and every `pause.duration` in the weir configs divided by
    /// `speed`. Analysis settings, latencies and `within` stay: they
    /// describe how fast weir must react, which a shorter run does not
    /// change.
    ///
    /// # Errors
    /// When `speed` is not a positive number or a config is not YAML.
    pub fn scaled(&self, speed: f64, origin: &str) -> Result<Scenario, ScenarioError> {
        let fail = |problem: String| ScenarioError {
            origin: origin.to_owned(),
            problems: vec![problem],
        };
        if !(speed.is_finite() && speed > 0.0) {
            return Err(fail(format!("--speed {speed}: must be a positive number")));
        }
        if (speed - 1.0).abs() < f64::EPSILON {
            return Ok(self.clone());
        }
        let mut out = self.clone();
        out.duration = self.duration.scaled(speed);
        if out.duration.secs() < 1.0 {
            return Err(fail(format!(
                "--speed {speed}: the run of {:.0} s would last {:.3} s, too short to measure; \
                 use a speed of at most {:.0}",
                self.duration.secs(),
                out.duration.secs(),
                self.duration.secs().floor().max(1.0)
            )));
        }
        out.weir.config = scale_config(&self.weir.config, speed)
            .map_err(|e| fail(format!("weir.config: {e}")))?;
        for (i, action) in out.timeline.iter_mut().enumerate() {
            action.at = action.at.scaled(speed);
            if let Some(config) = &mut action.config {
                *config = scale_config(config, speed)
                    .map_err(|e| fail(format!("timeline[{i}].config: {e}")))?;
            }
        }
        for expectation in &mut out.expect {
            match expectation {
                Expectation::ReachedPhase(e) => e.by = e.by.map(|d| d.scaled(speed)),
                Expectation::ReachedStep(e) => e.by = e.by.map(|d| d.scaled(speed)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Every check beyond the schema, as `path: message`.
    fn problems(&self) -> Vec<String> {
        let routes = self.route_names();
        let mut problems = Vec::new();
        let mut problem = |path: String, message: &str| problems.push(format!("{path}: {message}"));
        if !is_name(&self.name) {
            problem(
                "name".into(),
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
        if self.duration.0.is_zero() || self.duration.0 > MAX_DURATION {
            problem("duration".into(), "must be more than 0 and at most 1h");
        }
        if self.upstreams.is_empty() {
            problem("upstreams".into(), "at least one upstream is needed");
        }
        let mut names = BTreeSet::new();
        let mut vars = BTreeSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if !is_name(&u.name) {
                problem(
                    format!("upstreams[{i}].name"),
                    "must be 1 to 64 letters, digits, '-', '_' or '.'",
                );
            } else if !names.insert(u.name.as_str()) {
                problem(
                    format!("upstreams[{i}].name"),
                    "another upstream has this name",
                );
            } else if !vars.insert(upstream_env_var(&u.name)) {
                problem(
                    format!("upstreams[{i}].name"),
                    "gives the same UPSTREAM_ variable as another upstream",
                );
            }
            if !(0.0..=1.0).contains(&u.error_rate) {
                problem(
                    format!("upstreams[{i}].errorRate"),
                    "must be between 0 and 1",
                );
            }
        }
        for var in ["${WEIR_LISTEN}", "${WEIR_ADMIN}"] {
            if !self.weir.config.contains(var) {
                problem(
                    "weir.config".into(),
                    &format!("must take its address from {var}, which the runner sets"),
                );
            }
        }
        let configs = std::iter::once(("weir.config".to_owned(), &self.weir.config)).chain(
            self.timeline.iter().enumerate().filter_map(|(i, a)| {
                a.config
                    .as_ref()
                    .map(|c| (format!("timeline[{i}].config"), c))
            }),
        );
        for (path, config) in configs {
            if self.prometheus.is_none() && config.contains(&format!("${{{PROMETHEUS_VAR}}}")) {
                problem(
                    path.clone(),
                    &format!("uses ${{{PROMETHEUS_VAR}}}: add `prometheus: {{}}` to the scenario"),
                );
            }
            if self.smoke_tester.is_none() && config.contains(&format!("${{{SMOKE_TESTER_VAR}}}")) {
                problem(
                    path,
                    &format!(
                        "uses ${{{SMOKE_TESTER_VAR}}}: add `smokeTester: {{}}` to the scenario"
                    ),
                );
            }
        }
        if let Some(token) = &self.weir.token
            && (token.is_empty() || http::HeaderValue::from_str(token).is_err())
        {
            problem("weir.token".into(), "must be a non-empty header value");
        }
        let rate = self.load.rate;
        if !(rate.is_finite() && rate > 0.0) {
            problem("load.rate".into(), "must be a positive number");
        } else if rate * self.duration.0.as_secs_f64() > MAX_REQUESTS {
            problem(
                "load.rate".into(),
                &format!("rate × duration schedules more than {MAX_REQUESTS} requests"),
            );
        }
        if let Some(users) = self.load.users
            && !(1..=1_000_000).contains(&users)
        {
            problem("load.users".into(), "must be between 1 and 1000000");
        }
        if let Some(connections) = self.load.connections
            && !(1..=4096).contains(&connections)
        {
            problem("load.connections".into(), "must be between 1 and 4096");
        }
        if !self.load.path.starts_with('/')
            || self.load.path.parse::<http::uri::PathAndQuery>().is_err()
        {
            problem("load.path".into(), "must be a path starting with '/'");
        }
        for (i, action) in self.timeline.iter().enumerate() {
            let path = format!("timeline[{i}]");
            if action.at > self.duration {
                problem(
                    format!("{path}.at"),
                    "is after the end of the run (duration)",
                );
            }
            let kinds = usize::from(action.config.is_some())
                + usize::from(action.fault.is_some())
                + usize::from(action.command.is_some());
            if kinds != 1 {
                problem(path.clone(), "needs exactly one of config, fault, command");
            }
            if let Some(fault) = &action.fault {
                if self.upstream(&fault.upstream).is_none() {
                    problem(format!("{path}.fault.upstream"), "names no upstream");
                }
                if fault.error_rate.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
                    problem(format!("{path}.fault.errorRate"), "must be between 0 and 1");
                }
                if fault.error_rate.is_none() && fault.latency.is_none() {
                    problem(
                        format!("{path}.fault"),
                        "changes nothing: set errorRate or latency",
                    );
                }
            }
            if let Some(command) = &action.command {
                if command.route.is_empty() {
                    problem(format!("{path}.command.route"), "must not be empty");
                } else if routes.as_ref().is_some_and(|r| !r.contains(&command.route)) {
                    problem(
                        format!("{path}.command.route"),
                        "names no route of the weir config",
                    );
                }
            }
        }
        for (i, expectation) in self.expect.iter().enumerate() {
            if let Some(route) = expectation.route()
                && routes.as_ref().is_some_and(|r| !r.contains(route))
            {
                problem(
                    format!("expect[{i}].{}.route", expectation.kind()),
                    "names no route of the weir config",
                );
            }
        }
        for (i, expectation) in self.expect.iter().enumerate() {
            let path = format!("expect[{i}]");
            match expectation {
                Expectation::AbortedWithin(e) => {
                    if e.after_action >= self.timeline.len() {
                        problem(
                            format!("{path}.abortedWithin.afterAction"),
                            &format!("the timeline has {} actions", self.timeline.len()),
                        );
                    }
                }
                Expectation::NoCanaryAfterAbort(e) => {
                    if self.upstream(&e.upstream).is_none() {
                        problem(
                            format!("{path}.noCanaryAfterAbort.upstream"),
                            "names no upstream",
                        );
                    }
                }
                Expectation::MaxErrorRate(e) => {
                    if let Some(name) = &e.upstream
                        && self.upstream(name).is_none()
                    {
                        problem(format!("{path}.maxErrorRate.upstream"), "names no upstream");
                    }
                    if !(0.0..=1.0).contains(&e.below) {
                        problem(
                            format!("{path}.maxErrorRate.below"),
                            "must be between 0 and 1",
                        );
                    }
                }
                Expectation::FinalPhase(_)
                | Expectation::ReachedPhase(_)
                | Expectation::ReachedStep(_)
                | Expectation::ReachedStage(_) => {}
            }
        }
        problems
    }
}

/// Divides every `pause: {duration: D}` in a weir config by `speed`.
fn scale_config(text: &str, speed: f64) -> Result<String, String> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    scale_pauses(&mut value, speed)?;
    serde_yaml_ng::to_string(&value).map_err(|e| format!("cannot write it back: {e}"))
}

fn scale_pauses(value: &mut serde_yaml_ng::Value, speed: f64) -> Result<(), String> {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                if key.as_str() == Some("pause")
                    && let Value::Mapping(pause) = child
                    && let Some(duration) = pause.get_mut("duration")
                {
                    let text = match &*duration {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        other => return Err(format!("pause duration {other:?} is not a duration")),
                    };
                    let parsed = crate::parse_duration(&text)?;
                    *duration = Value::String(Dur(parsed).scaled(speed).to_string());
                } else {
                    scale_pauses(child, speed)?;
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                scale_pauses(item, speed)?;
            }
        }
        Value::Tagged(tagged) => scale_pauses(&mut tagged.value, speed)?,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
    Ok(())
}

// === impl Action ===

impl Action {
    /// What the action does; `None` only for an action that failed the
    /// checks of [`parse`].
    pub fn kind(&self) -> Option<ActionKind<'_>> {
        match (&self.config, &self.fault, &self.command) {
            (Some(config), None, None) => Some(ActionKind::Config(config)),
            (None, Some(fault), None) => Some(ActionKind::Fault(fault)),
            (None, None, Some(command)) => Some(ActionKind::Command(command)),
            _ => None,
        }
    }
}

// === impl ActionKind ===

impl ActionKind<'_> {
    /// `config`, `fault` or `command`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Fault(_) => "fault",
            Self::Command(_) => "command",
        }
    }
}

// === impl CommandAction ===

impl CommandAction {
    /// The last path segment of the admin endpoint and the JSON body.
    pub fn endpoint(self) -> (&'static str, &'static str) {
        match self {
            Self::Promote => ("promote", "{}"),
            Self::PromoteFull => ("promote", r#"{"full":true}"#),
            Self::Abort => ("abort", "{}"),
            Self::Retry => ("retry", "{}"),
            Self::Pause => ("pause", "{}"),
            Self::Resume => ("resume", "{}"),
        }
    }

    /// As written in the scenario.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::PromoteFull => "promoteFull",
            Self::Abort => "abort",
            Self::Retry => "retry",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

// === impl Expectation ===

impl TryFrom<ExpectationSpec> for Expectation {
    type Error = String;

    fn try_from(spec: ExpectationSpec) -> Result<Self, String> {
        let mut all = [
            spec.final_phase.map(Self::FinalPhase),
            spec.reached_phase.map(Self::ReachedPhase),
            spec.reached_step.map(Self::ReachedStep),
            spec.aborted_within.map(Self::AbortedWithin),
            spec.no_canary_after_abort.map(Self::NoCanaryAfterAbort),
            spec.max_error_rate.map(Self::MaxErrorRate),
            spec.reached_stage.map(Self::ReachedStage),
        ]
        .into_iter()
        .flatten();
        match (all.next(), all.next()) {
            (Some(one), None) => Ok(one),
            _ => Err(
                "an expectation needs exactly one of finalPhase, reachedPhase, \
                      reachedStep, abortedWithin, noCanaryAfterAbort, maxErrorRate, reachedStage"
                    .to_owned(),
            ),
        }
    }
}

impl Expectation {
    /// The route it is about, if one.
    pub fn route(&self) -> Option<&str> {
        match self {
            Self::FinalPhase(e) => Some(&e.route),
            Self::ReachedPhase(e) => Some(&e.route),
            Self::ReachedStep(e) => Some(&e.route),
            Self::AbortedWithin(e) => Some(&e.route),
            Self::NoCanaryAfterAbort(e) => Some(&e.route),
            Self::ReachedStage(e) => Some(&e.route),
            Self::MaxErrorRate(_) => None,
        }
    }

    /// The key it is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::FinalPhase(_) => "finalPhase",
            Self::ReachedPhase(_) => "reachedPhase",
            Self::ReachedStep(_) => "reachedStep",
            Self::AbortedWithin(_) => "abortedWithin",
            Self::NoCanaryAfterAbort(_) => "noCanaryAfterAbort",
            Self::MaxErrorRate(_) => "maxErrorRate",
            Self::ReachedStage(_) => "reachedStage",
        }
    }
}

// === impl Dur ===

impl Dur {
    /// Seconds as a float.
    pub fn secs(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Divided by `speed`, to the millisecond, at least 1 ms unless zero.
    pub fn scaled(self, speed: f64) -> Dur {
        if self.0.is_zero() {
            return self;
        }
        let ms = (self.0.as_secs_f64() * 1000.0 / speed).round().max(1.0);
        Dur(Duration::from_millis(ms as u64))
    }
}

impl fmt::Display for Dur {
    /// Whole seconds as `30s`, anything else as `1500ms`: both parse back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurVisitor)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Visitor<'_> for DurVisitor {
    type Value = Dur;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `500ms`, `30s` or `1m`, or a whole number of seconds")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
        Ok(Dur(Duration::from_secs(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        u64::try_from(v)
            .map(|v| Dur(Duration::from_secs(v)))
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        crate::parse_duration(v).map(Dur).map_err(E::custom)
    }
}

// === impl ScenarioError ===

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {problem}", self.origin)?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

#[cfg(test)]
mod tests;
