//! Validated analysis templates as a rollout uses them: an [`AnalysisRef`]
//! names its templates and carries their metrics with every `{{args.NAME}}`
//! replaced and every condition parsed, ready to run.

use std::sync::Arc;
use std::time::Duration;

use crate::condition::Condition;

/// Default `consecutiveErrorLimit`: the fifth error in a row is an Error.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;
/// Default Prometheus query timeout.
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Default web provider timeout.
pub const DEFAULT_WEB_TIMEOUT: Duration = Duration::from_secs(10);

/// Templates to run together, resolved: a canary `analysis` step, the
/// background analysis of `strategy.analysis`, and (later) blue-green's
/// pre- and post-promotion analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRef {
    /// The templates' names, in the order written.
    pub templates: Vec<Arc<str>>,
    /// The argument values in force (the reference's, then the templates'
    /// defaults), sorted by name.
    pub args: Vec<(String, String)>,
    /// Every metric of every template, arguments replaced.
    pub metrics: Vec<Arc<Metric>>,
    /// Why the templates cannot be resolved now (a CanaryRoute naming an
    /// AnalysisTemplate that is missing or invalid): a run of this
    /// reference measures nothing and waits, with this message, until the
    /// route is compiled again with the templates resolved. Always `None`
    /// for `weir.yaml` routes, where such a reference does not validate.
    pub waiting_for: Option<Arc<str>>,
}

/// One metric, ready to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The template it comes from.
    pub template: Arc<str>,
    /// Its name, unique within the run.
    pub name: Arc<str>,
    /// Time between measurements.
    pub interval: Option<Duration>,
    /// Wait before the first measurement.
    pub initial_delay: Duration,
    /// Measurements to take; `None`: until the run ends (with `interval`).
    pub count: Option<u32>,
    /// True: the measurement succeeded.
    pub success_condition: Option<Condition>,
    /// True: the measurement failed.
    pub failure_condition: Option<Condition>,
    /// Failed measurements tolerated; `None`: never fails (`-1`).
    pub failure_limit: Option<u32>,
    /// Inconclusive measurements tolerated.
    pub inconclusive_limit: u32,
    /// Errored measurements in a row tolerated.
    pub consecutive_error_limit: u32,
    /// Never fails the run.
    pub dry_run: bool,
    /// Where the value comes from.
    pub provider: Provider,
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    /// A Prometheus instant query.
    Prometheus(PrometheusQuery),
    /// An HTTP request whose answer is judged.
    Web(WebRequest),
}

/// A Prometheus instant query, arguments replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusQuery {
    /// `http://host:port` or `https://host:port` (no trailing slash).
    pub address: String,
    /// The PromQL query.
    pub query: String,
    /// Time allowed for the answer.
    pub timeout: Duration,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Basic authentication: user name and password.
    pub basic_auth: Option<(String, String)>,
    /// Accept any certificate over `https://` (Argo's `insecure`).
    pub insecure: bool,
}

/// An HTTP request, arguments replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct WebRequest {
    /// `http://...` or `https://...` URL.
    pub url: String,
    /// `GET`, `POST` or `PUT`.
    pub method: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// The body, if any (`jsonBody` serialized).
    pub body: Option<String>,
    /// The body is JSON (`jsonBody`).
    pub json_body: bool,
    /// The part of the answer handed to the conditions.
    pub json_path: Option<JsonPath>,
    /// Time allowed for the answer.
    pub timeout: Duration,
    /// Accept any certificate over `https://` (Argo's `insecure`).
    pub insecure: bool,
}

/// The simple JSON path subset weir reads: `$.a.b[0].c`, optionally in
/// braces as Argo writes it (`{$.a.b}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// As written.
    pub text: String,
    /// The steps from the root.
    pub steps: Vec<JsonStep>,
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStep {
    /// An object's field.
    Field(String),
    /// A list's element.
    Index(usize),
}

// === impl JsonPath ===

impl JsonPath {
    /// Parses `{$.a.b[0]}`, `$.a.b[0]` or `$['a']`.
    ///
    /// # Errors
    /// What is wrong, for the validation message.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let trimmed = text.trim();
        let inner = match trimmed.strip_prefix('{') {
            Some(braced) => match braced.strip_suffix('}') {
                Some(inner) => inner.trim(),
                None => return Err("`{` without a closing `}`, e.g. `{$.data.value}`".to_owned()),
            },
            None => trimmed,
        };
        let Some(mut rest) = inner.strip_prefix('$') else {
            return Err("a JSON path starts with `$`, e.g. `{$.data.value}`".to_owned());
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return Err("an empty field name after `.`".to_owned());
                }
                steps.push(JsonStep::Field(name.to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let Some(end) = after.find(']') else {
                    return Err("`[` without `]`".to_owned());
                };
                let inside = after[..end].trim();
                if let Ok(k) = inside.parse::<usize>() {
                    steps.push(JsonStep::Index(k));
                } else if let Some(name) = inside
                    .strip_prefix('\'')
                    .and_then(|n| n.strip_suffix('\''))
                    .or_else(|| inside.strip_prefix('"').and_then(|n| n.strip_suffix('"')))
                {
                    steps.push(JsonStep::Field(name.to_owned()));
                } else {
                    return Err(format!(
                        "`[{inside}]`: weir reads a whole index (`[0]`) or a quoted field (`['name']`), not filters or wildcards"
                    ));
                }
                rest = &after[end + 1..];
            } else {
                return Err(format!("unexpected `{rest}`; write `.field` or `[index]`"));
            }
        }
        Ok(JsonPath {
            text: text.to_owned(),
            steps,
        })
    }

    /// The value at this path in `root`, `None` when it is not there.
    pub fn select<'v>(&self, root: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.steps.iter().try_fold(root, |at, step| match step {
            JsonStep::Field(name) => at.get(name),
            JsonStep::Index(k) => at.get(k),
        })
    }
}
