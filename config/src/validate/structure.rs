//! The structural pass: the YAML tree checked against the shape of
//! `weir.yaml` (known keys, value types, required keys), every problem
//! recorded with its place, and `${VAR}` replaced in every value before the
//! value is typed, so that `weight: ${CANARY_WEIGHT}` is a number.
//!
//! The result is a typed `serde_yaml_ng::Value` that the [`crate::schema`]
//! types read without surprise. A substituted value stays one scalar: the
//! YAML structure is fixed before substitution, so a value holding `: ` or a
//! newline cannot add keys.
//!
//! Of a `weir.yaml` with structural problems, what can be typed is typed
//! and the rest is left out as [`Holes`] says, so that the semantic checks
//! run on it.

use std::collections::HashSet;
use std::hash::Hash;

use serde_yaml_ng::{Mapping, Number, Value as Typed};

use super::env::{self, Env};
use super::holes::Holes;
use super::tree::{Entry, Node, Scalar, Value};
use crate::location::child_key;
use crate::{Diagnostic, Location, LocationIndex};

/// The type a key's value must have.
#[derive(Debug)]
enum Kind {
    /// Any scalar, read as its text.
    Text,
    /// A number (integer or decimal).
    Number,
    /// A whole number from 0 to the bound.
    Whole(u64),
    /// A whole number within the bounds, or a text that holds one once its
    /// `{{args.NAME}}` are replaced (Argo's int-or-string counts).
    IntegerOrText(i64, i64),
    /// Any YAML value, kept as written (a JSON body).
    Json,
    /// `true` or `false`.
    Bool,
    /// `500ms`, `30s`, ... or a whole number of seconds.
    Duration,
    /// Anything; read only to know that the key is there.
    Any,
    /// A port: a whole number from 0 to 65535, or a name (any other text).
    Port,
    /// A list of one kind.
    List(&'static Kind),
    /// A mapping of any keys to values of one kind.
    Map(&'static Kind),
    /// A mapping with these keys.
    Shape(&'static [Field]),
}

/// A key of a mapping.
#[derive(Debug)]
struct Field {
    key: &'static str,
    kind: Kind,
    required: bool,
    /// A sibling key whose presence makes this required key optional.
    unless: Option<&'static str>,
}

const fn required(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        required: true,
        unless: None,
    }
}

/// Required unless the sibling key `other` is written.
const fn required_unless(key: &'static str, kind: Kind, other: &'static str) -> Field {
    Field {
        key,
        kind,
        required: true,
        unless: Some(other),
    }
}

const fn optional(key: &'static str, kind: Kind) -> Field {
    Field {
        key,
        kind,
        required: false,
        unless: None,
    }
}

static TEXTS: Kind = Kind::Text;

static TLS: [Field; 2] = [
    required("certFile", Kind::Text),
    required("keyFile", Kind::Text),
];

static LISTENER: [Field; 4] = [
    required("name", Kind::Text),
    required("address", Kind::Text),
    optional("tls", Kind::Shape(&TLS)),
    optional("maxConnections", Kind::Whole(u32::MAX as u64)),
];
static LISTENER_KIND: Kind = Kind::Shape(&LISTENER);

static ADMIN: [Field; 3] = [
    required("address", Kind::Text),
    optional("readerToken", Kind::Text),
    optional("writerToken", Kind::Text),
];

static STABLE: [Field; 5] = [
    required("revision", Kind::Text),
    required("endpoints", Kind::List(&TEXTS)),
    optional("service", Kind::Shape(&SERVICE)),
    optional("protocol", Kind::Text),
    optional("tls", Kind::Shape(&UPSTREAM_TLS)),
];

static CANARY: [Field; 6] = [
    required("revision", Kind::Text),
    required("endpoints", Kind::List(&TEXTS)),
    optional("service", Kind::Shape(&SERVICE)),
    optional("protocol", Kind::Text),
    optional("tls", Kind::Shape(&UPSTREAM_TLS)),
    optional("weight", Kind::Number),
];

static UPSTREAM_TLS: [Field; 3] = [
    optional("caFile", Kind::Text),
    optional("serverName", Kind::Text),
    optional("insecureSkipVerify", Kind::Bool),
];

static SERVICE: [Field; 2] = [required("name", Kind::Text), required("port", Kind::Port)];

static STICKINESS: [Field; 2] = [
    required("cookie", Kind::Text),
    optional("maxAge", Kind::Duration),
];

static HEADER_OVERRIDE: [Field; 2] = [required("name", Kind::Text), required("value", Kind::Text)];

static TIMEOUTS: [Field; 3] = [
    optional("connect", Kind::Duration),
    optional("request", Kind::Duration),
    optional("idle", Kind::Duration),
];

static PAUSE: [Field; 1] = [optional("duration", Kind::Duration)];

static STEP: [Field; 8] = [
    optional("setWeight", Kind::Number),
    optional("pause", Kind::Shape(&PAUSE)),
    optional("analysis", Kind::Shape(&ANALYSIS_REF)),
    optional("experiment", Kind::Any),
    optional("setCanaryScale", Kind::Any),
    optional("setHeaderRoute", Kind::Any),
    optional("setMirrorRoute", Kind::Any),
    optional("plugin", Kind::Any),
];
static STEP_KIND: Kind = Kind::Shape(&STEP);

static TEMPLATE_REF: [Field; 1] = [required("templateName", Kind::Text)];
static TEMPLATE_REF_KIND: Kind = Kind::Shape(&TEMPLATE_REF);

static ARG_VALUE: [Field; 2] = [required("name", Kind::Text), required("value", Kind::Text)];
static ARG_VALUE_KIND: Kind = Kind::Shape(&ARG_VALUE);

/// Templates and argument values: an `analysis` step, and (with the
/// built-in thresholds) `strategy.analysis`.
static ANALYSIS_REF: [Field; 2] = [
    optional("templates", Kind::List(&TEMPLATE_REF_KIND)),
    optional("args", Kind::List(&ARG_VALUE_KIND)),
];

static TEMPLATE_ARG: [Field; 2] = [required("name", Kind::Text), optional("value", Kind::Text)];
static TEMPLATE_ARG_KIND: Kind = Kind::Shape(&TEMPLATE_ARG);

static HEADER: [Field; 2] = [required("key", Kind::Text), required("value", Kind::Text)];
static HEADER_KIND: Kind = Kind::Shape(&HEADER);

static BASIC_AUTH: [Field; 2] = [
    required("username", Kind::Text),
    required("password", Kind::Text),
];
static PROMETHEUS_AUTH: [Field; 1] = [optional("basic", Kind::Shape(&BASIC_AUTH))];

static PROMETHEUS: [Field; 6] = [
    required("address", Kind::Text),
    required("query", Kind::Text),
    optional("timeout", Kind::Whole(86_400)),
    optional("headers", Kind::List(&HEADER_KIND)),
    optional("authentication", Kind::Shape(&PROMETHEUS_AUTH)),
    optional("insecure", Kind::Bool),
];

static WEB: [Field; 8] = [
    required("url", Kind::Text),
    optional("method", Kind::Text),
    optional("headers", Kind::List(&HEADER_KIND)),
    optional("body", Kind::Text),
    optional("jsonBody", Kind::Json),
    optional("jsonPath", Kind::Text),
    optional("timeoutSeconds", Kind::Whole(86_400)),
    optional("insecure", Kind::Bool),
];

static PROVIDER: [Field; 2] = [
    optional("prometheus", Kind::Shape(&PROMETHEUS)),
    optional("web", Kind::Shape(&WEB)),
];

static METRIC: [Field; 11] = [
    required("name", Kind::Text),
    optional("interval", Kind::Duration),
    optional("initialDelay", Kind::Duration),
    optional("count", Kind::IntegerOrText(0, u32::MAX as i64)),
    optional("successCondition", Kind::Text),
    optional("failureCondition", Kind::Text),
    optional("failureLimit", Kind::IntegerOrText(-1, u32::MAX as i64)),
    optional("inconclusiveLimit", Kind::IntegerOrText(0, u32::MAX as i64)),
    optional(
        "consecutiveErrorLimit",
        Kind::IntegerOrText(0, u32::MAX as i64),
    ),
    optional("dryRun", Kind::Bool),
    required("provider", Kind::Shape(&PROVIDER)),
];
static METRIC_KIND: Kind = Kind::Shape(&METRIC);

static DRY_RUN: [Field; 1] = [required("metricName", Kind::Text)];
static DRY_RUN_KIND: Kind = Kind::Shape(&DRY_RUN);

static TEMPLATE: [Field; 4] = [
    required("name", Kind::Text),
    optional("args", Kind::List(&TEMPLATE_ARG_KIND)),
    required("metrics", Kind::List(&METRIC_KIND)),
    optional("dryRun", Kind::List(&DRY_RUN_KIND)),
];
static TEMPLATE_KIND: Kind = Kind::Shape(&TEMPLATE);

/// The `spec` of an AnalysisTemplate: a template of `weir.yaml` without
/// `name` (its `metadata.name`).
static CLUSTER_TEMPLATE: [Field; 3] = [
    optional("args", Kind::List(&TEMPLATE_ARG_KIND)),
    required("metrics", Kind::List(&METRIC_KIND)),
    optional("dryRun", Kind::List(&DRY_RUN_KIND)),
];

static ANALYSIS: [Field; 11] = [
    optional("interval", Kind::Duration),
    optional("window", Kind::Duration),
    optional("minRequests", Kind::Whole(u64::MAX)),
    optional("maxErrorRate", Kind::Number),
    optional("compareToStable", Kind::Bool),
    optional("maxLatencyP99", Kind::Duration),
    optional("failureLimit", Kind::Whole(u32::MAX as u64)),
    optional("templates", Kind::List(&TEMPLATE_REF_KIND)),
    optional("args", Kind::List(&ARG_VALUE_KIND)),
    optional("maxExcessErrors", Kind::Whole(u64::MAX)),
    optional("grpcErrorCodes", Kind::List(&TEXTS)),
];

static WEBHOOK: [Field; 6] = [
    required("name", Kind::Text),
    required("type", Kind::Text),
    required("url", Kind::Text),
    optional("timeout", Kind::Duration),
    optional("retries", Kind::Whole(u32::MAX as u64)),
    optional("metadata", Kind::Map(&TEXTS)),
];
static WEBHOOK_KIND: Kind = Kind::Shape(&WEBHOOK);

static PREVIEW_HEADER: [Field; 2] = [required("name", Kind::Text), required("value", Kind::Text)];

static PREVIEW: [Field; 2] = [
    optional("hosts", Kind::List(&TEXTS)),
    optional("header", Kind::Shape(&PREVIEW_HEADER)),
];

static BLUE_GREEN: [Field; 6] = [
    required("preview", Kind::Shape(&PREVIEW)),
    optional("autoPromotionEnabled", Kind::Bool),
    optional("autoPromotionSeconds", Kind::Whole(u32::MAX as u64)),
    optional("scaleDownDelaySeconds", Kind::Whole(u32::MAX as u64)),
    optional("prePromotionAnalysis", Kind::Shape(&ANALYSIS_REF)),
    optional("postPromotionAnalysis", Kind::Shape(&ANALYSIS_REF)),
];

/// `steps` and `blueGreen` exclude each other; the check names the pair.
static STRATEGY: [Field; 5] = [
    optional("steps", Kind::List(&STEP_KIND)),
    optional("blueGreen", Kind::Shape(&BLUE_GREEN)),
    optional("analysis", Kind::Shape(&ANALYSIS)),
    optional("webhooks", Kind::List(&WEBHOOK_KIND)),
    optional("threshold", Kind::Whole(u32::MAX as u64)),
];

static NOTIFICATION: [Field; 7] = [
    required("name", Kind::Text),
    required("url", Kind::Text),
    optional("headers", Kind::Map(&TEXTS)),
    required("triggers", Kind::List(&TEXTS)),
    optional("routes", Kind::List(&TEXTS)),
    optional("timeout", Kind::Duration),
    optional("retryMax", Kind::Whole(u32::MAX as u64)),
];
static NOTIFICATION_KIND: Kind = Kind::Shape(&NOTIFICATION);

static STABLE_FALLBACK: [Field; 3] = [
    optional("methods", Kind::List(&TEXTS)),
    optional("maxBodyBytes", Kind::Text),
    optional("budget", Kind::Number),
];

static ROUTE: [Field; 11] = [
    required("name", Kind::Text),
    optional("hosts", Kind::List(&TEXTS)),
    optional("pathPrefix", Kind::Text),
    required("stable", Kind::Shape(&STABLE)),
    optional("canary", Kind::Shape(&CANARY)),
    optional("stickiness", Kind::Shape(&STICKINESS)),
    optional("canaryByHeader", Kind::Shape(&HEADER_OVERRIDE)),
    optional("timeouts", Kind::Shape(&TIMEOUTS)),
    optional("upgrades", Kind::List(&TEXTS)),
    optional("strategy", Kind::Shape(&STRATEGY)),
    optional("stableFallback", Kind::Shape(&STABLE_FALLBACK)),
];
static ROUTE_KIND: Kind = Kind::Shape(&ROUTE);

static KUBERNETES: [Field; 5] = [
    optional("namespaces", Kind::List(&TEXTS)),
    optional("lease", Kind::Text),
    optional("peers", Kind::Text),
    optional("role", Kind::Text),
    optional("gatewayApi", Kind::Bool),
];

static CONFIG: [Field; 7] = [
    required("listeners", Kind::List(&LISTENER_KIND)),
    optional("admin", Kind::Shape(&ADMIN)),
    optional("stateDir", Kind::Text),
    // CanaryRoutes bring the routes of a config with a `kubernetes` block.
    required_unless("routes", Kind::List(&ROUTE_KIND), "kubernetes"),
    optional("kubernetes", Kind::Shape(&KUBERNETES)),
    optional("notifications", Kind::List(&NOTIFICATION_KIND)),
    optional("analysisTemplates", Kind::List(&TEMPLATE_KIND)),
];

/// `stable` of a CanaryRoute: a Service, endpoints, or both.
static CLUSTER_STABLE: [Field; 5] = [
    required("revision", Kind::Text),
    optional("endpoints", Kind::List(&TEXTS)),
    optional("service", Kind::Shape(&SERVICE)),
    optional("protocol", Kind::Text),
    optional("tls", Kind::Shape(&UPSTREAM_TLS)),
];

/// `canary` of a CanaryRoute: a Service, endpoints, or both.
static CLUSTER_CANARY: [Field; 6] = [
    required("revision", Kind::Text),
    optional("endpoints", Kind::List(&TEXTS)),
    optional("service", Kind::Shape(&SERVICE)),
    optional("protocol", Kind::Text),
    optional("tls", Kind::Shape(&UPSTREAM_TLS)),
    optional("weight", Kind::Number),
];

/// The `spec` of a CanaryRoute: a route of `weir.yaml` without `name`.
static CLUSTER_ROUTE: [Field; 10] = [
    optional("hosts", Kind::List(&TEXTS)),
    optional("pathPrefix", Kind::Text),
    required("stable", Kind::Shape(&CLUSTER_STABLE)),
    optional("canary", Kind::Shape(&CLUSTER_CANARY)),
    optional("stickiness", Kind::Shape(&STICKINESS)),
    optional("canaryByHeader", Kind::Shape(&HEADER_OVERRIDE)),
    optional("timeouts", Kind::Shape(&TIMEOUTS)),
    optional("upgrades", Kind::List(&TEXTS)),
    optional("strategy", Kind::Shape(&STRATEGY)),
    optional("stableFallback", Kind::Shape(&STABLE_FALLBACK)),
];

/// The structural problems of a document and the `${VAR}` problems found on
/// the way.
#[derive(Debug, Default)]
pub(super) struct Problems {
    /// Unknown keys, wrong types, missing keys: the file cannot be read.
    pub(super) structural: Vec<Diagnostic>,
    /// `(path, message)` of each `${VAR}` that could not be replaced; such a
    /// value is replaced by a harmless placeholder of its type.
    pub(super) environment: Vec<(String, String)>,
    /// What the typed value leaves out because of the structural problems.
    pub(super) holes: Holes,
}

/// Walks the tree.
struct Walk<'a> {
    file: &'a str,
    index: &'a LocationIndex,
    /// `None`: values are taken as written (a CanaryRoute has no `${VAR}`).
    env: Option<Env<'a>>,
    problems: Problems,
    /// Keys taken as written wherever a required key may stand in for them
    /// (`kubernetes` for `weir run --kubernetes`).
    assumed: &'static [&'static str],
    /// The text `${VAR}` substitutions have added so far, each alias's
    /// repetition counted: bounded by [`MAX_SUBSTITUTED_BYTES`].
    substituted: usize,
}

/// The most text `${VAR}` substitutions may add to a document, counting each
/// repetition of an alias, as [`super::tree::MAX_ALIAS_BYTES`] bounds what
/// aliases repeat: a large variable behind an alias repeated a thousand
/// times took a minute and a gigabyte to check.
pub(super) const MAX_SUBSTITUTED_BYTES: usize = 4 << 20;

/// What a scalar's plain text means in YAML 1.2's core schema.
enum Plain {
    Null,
    Bool(bool),
    Integer(i128),
    Float(f64),
    Text,
}

/// Checks `root` against the shape of `weir.yaml`, replacing `${VAR}` in
/// values; returns the typed value of what could be typed, with the holes
/// of [`Holes`] (none when there is no structural problem), or `None` when
/// a required top-level key is missing or cannot be typed.
///
/// With `kubernetes`, the file is read as if it had a `kubernetes` block
/// (`weir run --kubernetes`): `routes` may be left out.
pub(super) fn check(
    root: &Node,
    file: &str,
    index: &LocationIndex,
    env: Env<'_>,
    kubernetes: bool,
) -> (Option<Typed>, Problems) {
    let mut walk = Walk {
        file,
        index,
        env: Some(env),
        problems: Problems::default(),
        assumed: if kubernetes { &["kubernetes"] } else { &[] },
        substituted: 0,
    };
    let typed = walk.shape(root, &CONFIG, "");
    (typed, walk.problems)
}

/// Checks the `spec` of a CanaryRoute (`root`, reported at `spec...`
/// paths) against the shape of a route without `name`; values are taken as
/// written. Returns the typed value when there is no structural problem.
pub(super) fn check_cluster_route(root: &Node, index: &LocationIndex) -> (Option<Typed>, Problems) {
    let mut walk = Walk {
        file: "",
        index,
        env: None,
        problems: Problems::default(),
        assumed: &[],
        substituted: 0,
    };
    let typed = walk.shape(root, &CLUSTER_ROUTE, "spec");
    walk.finish(typed)
}

/// Checks the `spec` of an AnalysisTemplate (`root`, reported at `spec...`
/// paths) against the shape of a template without `name`; values are taken
/// as written. Returns the typed value when there is no structural problem.
pub(super) fn check_cluster_template(
    root: &Node,
    index: &LocationIndex,
) -> (Option<Typed>, Problems) {
    let mut walk = Walk {
        file: "",
        index,
        env: None,
        problems: Problems::default(),
        assumed: &[],
        substituted: 0,
    };
    let typed = walk.shape(root, &CLUSTER_TEMPLATE, "spec");
    walk.finish(typed)
}

/// serde's way of listing the expected keys.
fn expected_keys(fields: &[Field]) -> String {
    let quoted: Vec<String> = fields.iter().map(|f| format!("`{}`", f.key)).collect();
    match quoted.as_slice() {
        [] => "no keys".to_owned(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        all => format!("expected one of {}", all.join(", ")),
    }
}

/// The expected key closest to `unknown`, when close enough to be a typo.
fn suggest_key(unknown: &str, fields: &[Field]) -> Option<&'static str> {
    fields
        .iter()
        .map(|f| (edit_distance(unknown, f.key), f.key))
        .filter(|(distance, key)| *distance > 0 && *distance <= 2 && *distance < key.len())
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance over chars, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Resolves a plain scalar as YAML 1.2's core schema does.
fn resolve_plain(text: &str) -> Plain {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    let radix = |digits: &str, radix: u32| {
        i128::from_str_radix(digits, radix)
            .ok()
            .map(|n| if negative { -n } else { n })
    };
    let integer = if let Some(hex) = text.strip_prefix("0x") {
        radix(hex, 16).filter(|_| !hex.starts_with(['+', '-']))
    } else if let Some(octal) = text.strip_prefix("0o") {
        radix(octal, 8).filter(|_| !octal.starts_with(['+', '-']))
    } else if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than an i128 holds is still an integer, too large for
        // any key; saturate so the range check reports it.
        Some(radix(unsigned, 10).unwrap_or(if negative { i128::MIN } else { i128::MAX }))
    } else {
        None
    };
    if let Some(n) = integer {
        return Plain::Integer(n);
    }
    let is_float_text = !unsigned.is_empty()
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && unsigned.bytes().any(|b| b.is_ascii_digit())
        && !unsigned.starts_with(['e', 'E']);
    match text.parse::<f64>() {
        Ok(f) if is_float_text => Plain::Float(f),
        _ => Plain::Text,
    }
}

/// The keys of one mapping read so far. Each key is hashed once and looked
/// up in constant time, so checking a mapping of n entries for duplicates
/// takes O(n), however many keys a file writes into one mapping (comparing
/// each key with every earlier one made over a billion comparisons for the
/// 50,000 keys a document may hold, seconds of CPU at each reload). std's
/// hasher is keyed at random, so no choice of keys makes them collide.
#[derive(Debug)]
pub(super) struct FirstSeen<K> {
    keys: HashSet<K>,
}

impl<K: Hash + Eq> FirstSeen<K> {
    /// Room for `n` keys without growing.
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            keys: HashSet::with_capacity(n),
        }
    }

    /// True the first time `key` is offered; false for a duplicate, which is
    /// not recorded again.
    pub(super) fn first(&mut self, key: K) -> bool {
        self.keys.insert(key)
    }

    /// True when `key` was offered.
    pub(super) fn contains(&self, key: K) -> bool {
        self.keys.contains(&key)
    }
}

// === impl Walk ===

impl Walk<'_> {
    /// The typed value, kept only when no structural problem was found (a
    /// CanaryRoute or AnalysisTemplate is taken whole or not at all).
    fn finish(self, typed: Option<Typed>) -> (Option<Typed>, Problems) {
        let problems = self.problems;
        let typed = if problems.structural.is_empty() {
            typed
        } else {
            None
        };
        (typed, problems)
    }

    fn error(&mut self, path: &str, at: Option<Location>, message: impl Into<String>) {
        self.problems.structural.push(Diagnostic {
            file: self.file.to_owned(),
            location: at.or_else(|| self.index.find(path)),
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// The node as `kind` wants it; `None` after recording why it cannot be.
    fn node(&mut self, node: &Node, kind: &Kind, path: &str) -> Option<Typed> {
        match kind {
            Kind::Any => Some(Typed::Bool(true)),
            Kind::Json => Some(as_written(node)),
            Kind::Shape(fields) => self.shape(node, fields, path),
            Kind::List(item) => self.list(node, item, path),
            Kind::Map(item) => self.map(node, item, path),
            Kind::Text
            | Kind::Number
            | Kind::Whole(_)
            | Kind::IntegerOrText(..)
            | Kind::Bool
            | Kind::Duration
            | Kind::Port => {
                let Value::Scalar(scalar) = &node.value else {
                    self.wrong_type(node, describe_kind(kind), path, None);
                    return None;
                };
                self.scalar(node, scalar, kind, path)
            }
        }
    }

    fn shape(&mut self, node: &Node, fields: &[Field], path: &str) -> Option<Typed> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, "a mapping", path, None);
            return None;
        };
        let mut out = Some(Mapping::new());
        let mut seen = FirstSeen::with_capacity(fields.len());
        // The keys an unknown key of this mapping may be, misspelled: one
        // of them missing is not reported again as missing.
        let mut suggested: Vec<&'static str> = Vec::new();
        // A YAML merge key (`<<: *defaults`) brings keys weir does not
        // read: none of them is reported missing.
        let merged = entries.iter().any(|e| e.key_is_scalar && e.key == "<<");
        for entry in entries.iter() {
            if !entry.key_is_scalar {
                self.error(
                    &child_key(path, "?"),
                    Some(entry.key_at),
                    "a key must be a plain name, not a list or mapping",
                );
                self.problems.holes.loose(path);
                continue;
            }
            let key_path = child_key(path, &entry.key);
            let Some(field) = fields.iter().find(|f| f.key == entry.key) else {
                if entry.key == "<<" {
                    self.error(
                        &key_path,
                        Some(entry.key_at),
                        "YAML merge keys (`<<`) are not supported; write the keys out",
                    );
                    self.problems.holes.loose(path);
                    continue;
                }
                let mut message = format!(
                    "unknown field `{}`, {}",
                    entry.key.escape_debug(),
                    expected_keys(fields)
                );
                if let Some(suggestion) = suggest_key(&entry.key, fields) {
                    message.push_str(&format!("; did you mean `{suggestion}`?"));
                    suggested.push(suggestion);
                }
                self.error(&key_path, Some(entry.key_at), message);
                self.problems.holes.loose(path);
                continue;
            };
            if !seen.first(field.key) {
                self.error(
                    &key_path,
                    Some(entry.key_at),
                    format!("duplicate key `{}`; write each key once", field.key),
                );
                self.problems.holes.loose(path);
                continue;
            }
            // A key written without a value (`pause:`, `pause: ~`) counts as
            // absent; the location index still knows it was written. A
            // required text key without one (`revision: null`) is empty
            // text, as `revision:` is, for the checks to name.
            if is_null(&entry.value) {
                if !field.required {
                    continue;
                }
                if matches!(field.kind, Kind::Text) {
                    if let Some(map) = &mut out {
                        map.insert(
                            Typed::String(field.key.to_owned()),
                            Typed::String(String::new()),
                        );
                    }
                    continue;
                }
            }
            match self.node(&entry.value, &field.kind, &key_path) {
                Some(value) => {
                    if let Some(map) = &mut out {
                        map.insert(Typed::String(field.key.to_owned()), value);
                    }
                }
                // An optional key is left out; its mapping is loose.
                None if !self.needed(field, entries) => {
                    let list = matches!(field.kind, Kind::List(_));
                    self.problems.holes.key(path, key_path, list);
                }
                None => out = None,
            }
        }
        for field in fields.iter().filter(|f| f.required) {
            let excused = field
                .unless
                .is_some_and(|other| seen.contains(other) || self.assumed.contains(&other));
            if !seen.contains(field.key) && !excused {
                if !suggested.contains(&field.key) && !merged {
                    let at = if path.is_empty() {
                        Some(Location { line: 1, column: 1 })
                    } else {
                        self.index.get(path).or(Some(node.at))
                    };
                    self.error(path, at, format!("missing field `{}`", field.key));
                }
                // A missing text key other than a name (which references
                // may use) is typed as empty and left out, so that the
                // checks of the mapping's other keys still run; whatever
                // they say of the key itself is an artefact, not reported.
                if matches!(field.kind, Kind::Text) && field.key != "name" {
                    if let Some(map) = &mut out {
                        map.insert(
                            Typed::String(field.key.to_owned()),
                            Typed::String(String::new()),
                        );
                    }
                    self.problems
                        .holes
                        .key(path, child_key(path, field.key), false);
                } else {
                    out = None;
                }
            }
        }
        out.map(Typed::Mapping)
    }

    fn list(&mut self, node: &Node, item: &Kind, path: &str) -> Option<Typed> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, "a list", path, None);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, element) in items.iter().enumerate() {
            let element_path = format!("{path}[{i}]");
            let value = self.node(element, item, &element_path);
            // An element that cannot be typed is left out, a stand-in in its
            // place keeping the indices of the others.
            let value = value.unwrap_or_else(|| {
                let name = self.element_name(element);
                self.problems.holes.stand_in(path, element_path, name);
                stand_in(item)
            });
            out.push(value);
        }
        Some(Typed::Sequence(out))
    }

    /// True when `field` must be in the mapping of `entries`.
    fn needed(&self, field: &Field, entries: &[Entry]) -> bool {
        field.required
            && !field.unless.is_some_and(|other| {
                self.assumed.contains(&other)
                    || entries.iter().any(|e| e.key_is_scalar && e.key == other)
            })
    }

    /// The `name` of a list element that cannot be typed, when it has one
    /// that reads as text (for the references to it by name).
    fn element_name(&self, element: &Node) -> Option<String> {
        let Value::Map(entries) = &element.value else {
            return None;
        };
        let entry = entries
            .iter()
            .find(|e| e.key_is_scalar && e.key == "name")?;
        let Value::Scalar(scalar) = &entry.value.value else {
            return None;
        };
        if !scalar.text.contains("${") {
            return Some(scalar.text.clone());
        }
        env::expand(&scalar.text, self.env?).ok()
    }

    fn map(&mut self, node: &Node, item: &Kind, path: &str) -> Option<Typed> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, "a mapping", path, None);
            return None;
        };
        let mut out = Some(Mapping::new());
        let mut seen = FirstSeen::with_capacity(entries.len());
        for entry in entries.iter() {
            let key_path = child_key(path, &entry.key);
            if !entry.key_is_scalar {
                self.error(
                    &child_key(path, "?"),
                    Some(entry.key_at),
                    "a key must be a plain name, not a list or mapping",
                );
                self.problems.holes.loose(path);
                continue;
            }
            if !seen.first(entry.key.as_str()) {
                self.error(
                    &key_path,
                    Some(entry.key_at),
                    format!("duplicate key `{}`; write each key once", entry.key),
                );
                self.problems.holes.loose(path);
                continue;
            }
            let value = self.node(&entry.value, item, &key_path);
            match (&mut out, value) {
                (Some(map), Some(value)) => {
                    map.insert(Typed::String(entry.key.clone()), value);
                }
                _ => out = None,
            }
        }
        out.map(Typed::Mapping)
    }

    fn scalar(&mut self, node: &Node, scalar: &Scalar, kind: &Kind, path: &str) -> Option<Typed> {
        // Substitution comes before typing, so `${VAR}` can give a number.
        let env = self.env.filter(|_| scalar.text.contains("${"));
        let (text, from) = if let Some(env) = env {
            if self.substituted > MAX_SUBSTITUTED_BYTES {
                // Said once, when crossed; the rest are placeholders.
                return Some(placeholder(kind, &scalar.text));
            }
            match env::expand(&scalar.text, env) {
                Ok(expanded) => {
                    self.substituted += expanded.len().saturating_sub(scalar.text.len());
                    if self.substituted > MAX_SUBSTITUTED_BYTES {
                        self.problems.environment.push((
                            path.to_owned(),
                            format!(
                                "the `${{VAR}}` substitutions add more than {} MiB of text to \
                                 the document (each repetition of an alias counted); a \
                                 weir.yaml needs far less: look for a large variable behind an \
                                 alias",
                                MAX_SUBSTITUTED_BYTES >> 20
                            ),
                        ));
                        return Some(placeholder(kind, &scalar.text));
                    }
                    (expanded, Some(scalar.text.as_str()))
                }
                Err(messages) => {
                    self.problems
                        .environment
                        .extend(messages.into_iter().map(|m| (path.to_owned(), m)));
                    return Some(placeholder(kind, &scalar.text));
                }
            }
        } else {
            (scalar.text.clone(), None)
        };
        // Text keys take any scalar as text. Elsewhere a quoted value is text,
        // except that a substituted one is typed by what it expands to: in a
        // flow mapping `{ weight: ${W} }` must be quoted to parse at all.
        let plain = if matches!(kind, Kind::Text) || (!scalar.plain && from.is_none()) {
            Plain::Text
        } else {
            resolve_plain(&text)
        };
        let typed = match (kind, &plain) {
            (_, Plain::Null) => None,
            (Kind::Text, _) => Some(Typed::String(text.clone())),
            (Kind::Number, Plain::Integer(n)) => {
                // An integer beyond f64's exact range is still far out of any
                // key's range; the semantic check reports it.
                #[allow(clippy::cast_precision_loss)]
                Some(Typed::Number(Number::from(*n as f64)))
            }
            (Kind::Number, Plain::Float(f)) => Some(Typed::Number(Number::from(*f))),
            (Kind::Whole(_) | Kind::Duration, Plain::Integer(n)) => {
                let bound = if let Kind::Whole(max) = kind {
                    *max
                } else {
                    u64::MAX
                };
                match u64::try_from(*n) {
                    Ok(n) if n <= bound => Some(Typed::Number(Number::from(n))),
                    _ => {
                        let what = match kind {
                            Kind::Duration if *n < 0 => {
                                "a duration of 0 seconds or more".to_owned()
                            }
                            Kind::Duration => format!(
                                "a duration of at most {} seconds (87600h, ten years)",
                                crate::duration::MAX_DURATION.as_secs()
                            ),
                            _ => format!("a whole number from 0 to {bound}"),
                        };
                        self.error(
                            path,
                            Some(node.at),
                            format!(
                                "invalid value: integer `{text}`, expected {what}{}",
                                expanded_from(from, &text)
                            ),
                        );
                        return None;
                    }
                }
            }
            (Kind::IntegerOrText(min, max), Plain::Integer(n)) => match i64::try_from(*n) {
                Ok(n) if (*min..=*max).contains(&n) => Some(Typed::Number(Number::from(n))),
                _ => {
                    self.error(
                            path,
                            Some(node.at),
                            format!(
                                "invalid value: integer `{text}`, expected a whole number from {min} to {max}{}",
                                expanded_from(from, &text)
                            ),
                        );
                    return None;
                }
            },
            (Kind::Duration | Kind::Port | Kind::IntegerOrText(..), Plain::Text) => {
                Some(Typed::String(text.clone()))
            }
            (Kind::Port, Plain::Integer(n)) => match u16::try_from(*n) {
                Ok(n) => Some(Typed::Number(Number::from(n))),
                Err(_) => {
                    self.error(
                        path,
                        Some(node.at),
                        format!(
                            "invalid value: integer `{text}`, expected a port number from 1 to 65535{}",
                            expanded_from(from, &text)
                        ),
                    );
                    return None;
                }
            },
            (Kind::Bool, Plain::Bool(b)) => Some(Typed::Bool(*b)),
            _ => None,
        };
        if typed.is_none() {
            self.wrong_type(node, describe_kind(kind), path, Some((&plain, &text, from)));
        }
        typed
    }

    fn wrong_type(
        &mut self,
        node: &Node,
        expected: &str,
        path: &str,
        scalar: Option<(&Plain, &str, Option<&str>)>,
    ) {
        let found = match (&node.value, scalar) {
            (Value::Seq(_), _) => "a list".to_owned(),
            (Value::Map(_), _) => "a mapping".to_owned(),
            (Value::Scalar(_), Some((plain, text, _))) => describe_scalar(plain, text),
            (Value::Scalar(s), None) => {
                let plain = if s.plain {
                    resolve_plain(&s.text)
                } else {
                    Plain::Text
                };
                describe_scalar(&plain, &s.text)
            }
        };
        let from = scalar.map_or(String::new(), |(_, text, from)| expanded_from(from, text));
        self.error(
            path,
            Some(node.at),
            format!("invalid type: {found}, expected {expected}{from}"),
        );
    }
}

/// A value of `kind` that the schema types read, standing in for a list
/// element that cannot be typed (already reported): its required keys
/// only, each empty or zero. The checks skip it.
fn stand_in(kind: &Kind) -> Typed {
    match kind {
        Kind::Text => Typed::String(String::new()),
        Kind::Number | Kind::Whole(_) | Kind::IntegerOrText(..) | Kind::Duration | Kind::Port => {
            Typed::Number(Number::from(0u64))
        }
        Kind::Bool => Typed::Bool(false),
        Kind::Any => Typed::Bool(true),
        Kind::Json => Typed::Null,
        Kind::List(_) => Typed::Sequence(Vec::new()),
        Kind::Map(_) => Typed::Mapping(Mapping::new()),
        Kind::Shape(fields) => Typed::Mapping(
            fields
                .iter()
                .filter(|f| f.required)
                .map(|f| (Typed::String(f.key.to_owned()), stand_in(&f.kind)))
                .collect(),
        ),
    }
}

/// A value of `kind` that passes the semantic checks, for a value whose
/// `${VAR}` could not be replaced (already reported).
fn placeholder(kind: &Kind, text: &str) -> Typed {
    match kind {
        Kind::Number => Typed::Number(Number::from(0u64)),
        Kind::Whole(_) | Kind::IntegerOrText(..) | Kind::Duration | Kind::Port => {
            Typed::Number(Number::from(1u64))
        }
        Kind::Bool | Kind::Any => Typed::Bool(true),
        Kind::Json => Typed::String(text.to_owned()),
        Kind::Text | Kind::List(_) | Kind::Map(_) | Kind::Shape(_) => {
            Typed::String(text.to_owned())
        }
    }
}

fn expanded_from(from: Option<&str>, text: &str) -> String {
    match from {
        Some(written) => format!(
            " (`{}` expands to `{}`)",
            written.escape_debug(),
            text.escape_debug()
        ),
        None => String::new(),
    }
}

/// A value kept as written (a JSON body): plain scalars typed as YAML 1.2's
/// core schema types them, quoted ones as strings.
fn as_written(node: &Node) -> Typed {
    match &node.value {
        Value::Scalar(s) if !s.plain => Typed::String(s.text.clone()),
        Value::Scalar(s) => match resolve_plain(&s.text) {
            Plain::Null => Typed::Null,
            Plain::Bool(b) => Typed::Bool(b),
            Plain::Integer(n) => i64::try_from(n).map_or_else(
                |_| Typed::String(s.text.clone()),
                |n| Typed::Number(Number::from(n)),
            ),
            Plain::Float(f) => Typed::Number(Number::from(f)),
            Plain::Text => Typed::String(s.text.clone()),
        },
        Value::Seq(items) => Typed::Sequence(items.iter().map(as_written).collect()),
        Value::Map(entries) => Typed::Mapping(
            entries
                .iter()
                .map(|e| (Typed::String(e.key.clone()), as_written(&e.value)))
                .collect(),
        ),
    }
}

fn is_null(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar(s) if s.plain && matches!(resolve_plain(&s.text), Plain::Null))
}

fn describe_scalar(plain: &Plain, text: &str) -> String {
    match plain {
        Plain::Null => "nothing (null)".to_owned(),
        Plain::Bool(b) => format!("boolean `{b}`"),
        Plain::Integer(_) => format!("integer `{text}`"),
        Plain::Float(_) => format!("floating point `{text}`"),
        Plain::Text => format!("string {:?}", text),
    }
}

fn describe_kind(kind: &Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::Number => "a number",
        Kind::Whole(_) => "a whole number",
        Kind::IntegerOrText(..) => "a whole number, or a text such as `{{args.NAME}}`",
        Kind::Json => "a value",
        Kind::Bool => "`true` or `false`",
        Kind::Duration => {
            "a duration such as `500ms`, `30s`, `5m` or `1h`, or a whole number of seconds"
        }
        Kind::Any => "a value",
        Kind::Port => "a port number or a port name",
        Kind::List(_) => "a list",
        Kind::Map(_) | Kind::Shape(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ConfigSpec;

    /// A value of `kind` with every optional key present.
    fn sample(kind: &Kind) -> Typed {
        match kind {
            Kind::Text => Typed::String("x".to_owned()),
            Kind::Number
            | Kind::Whole(_)
            | Kind::IntegerOrText(..)
            | Kind::Duration
            | Kind::Any
            | Kind::Json
            | Kind::Port => Typed::Number(Number::from(1u64)),
            Kind::Bool => Typed::Bool(true),
            Kind::List(item) => Typed::Sequence(vec![sample(item)]),
            Kind::Map(item) => Typed::Mapping(
                [(Typed::String("k".to_owned()), sample(item))]
                    .into_iter()
                    .collect(),
            ),
            Kind::Shape(fields) => Typed::Mapping(
                fields
                    .iter()
                    .map(|f| (Typed::String(f.key.to_owned()), sample(&f.kind)))
                    .collect(),
            ),
        }
    }

    /// The mapping at `path` (keys, with `None` for a list's first item).
    fn at_path<'v>(value: &'v mut Typed, path: &[Option<&str>]) -> &'v mut Mapping {
        let mut at = value;
        for step in path {
            at = match (step, at) {
                (Some(key), Typed::Mapping(map)) => map.get_mut(*key).expect("a sampled key"),
                (None, Typed::Sequence(items)) => items.first_mut().expect("a sampled item"),
                _ => panic!("the sample does not follow {path:?}"),
            };
        }
        match at {
            Typed::Mapping(map) => map,
            _ => panic!("no mapping at {path:?}"),
        }
    }

    /// Each table must name exactly the keys of its schema type, or a key
    /// added to one would be refused (or never read) by the other. serde's
    /// own "unknown field" message lists the type's keys.
    #[test]
    fn the_tables_list_exactly_the_keys_of_the_schema_types() {
        let root = sample(&Kind::Shape(&CONFIG));
        let mut pending: Vec<(Vec<Option<&str>>, &[Field])> = vec![(Vec::new(), &CONFIG)];
        let mut checked = 0;
        while let Some((path, fields)) = pending.pop() {
            let mut value = root.clone();
            at_path(&mut value, &path).insert(Typed::String("__probe__".to_owned()), Typed::Null);
            let error = match serde_yaml_ng::from_value::<ConfigSpec>(value) {
                Ok(_) => panic!("{path:?}: the schema type accepts any key"),
                Err(error) => error.to_string(),
            };
            let mut serde_keys: Vec<&str> = error.split('`').skip(3).step_by(2).collect();
            let mut table_keys: Vec<&str> = fields.iter().map(|f| f.key).collect();
            serde_keys.sort_unstable();
            table_keys.sort_unstable();
            assert_eq!(table_keys, serde_keys, "{path:?}: {error}");
            checked += 1;
            for field in fields {
                let mut child = path.clone();
                child.push(Some(field.key));
                match &field.kind {
                    Kind::Shape(inner) => pending.push((child, inner)),
                    Kind::List(Kind::Shape(inner)) => {
                        child.push(None);
                        pending.push((child, inner));
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(checked, 47, "every mapping of the file is checked");
    }

    /// A CanaryRoute's spec is a route without `name`: its tables name the
    /// route's keys but `name`, and the stable and canary tables those of
    /// `weir.yaml`.
    #[test]
    fn the_cluster_tables_are_the_route_tables_without_name() {
        let keys = |fields: &[Field]| {
            let mut keys: Vec<&str> = fields.iter().map(|f| f.key).collect();
            keys.sort_unstable();
            keys
        };
        let mut route = keys(&ROUTE);
        route.retain(|k| *k != "name");
        assert_eq!(keys(&CLUSTER_ROUTE), route);
        assert_eq!(keys(&CLUSTER_STABLE), keys(&STABLE));
        assert_eq!(keys(&CLUSTER_CANARY), keys(&CANARY));
        let sample = sample(&Kind::Shape(&CLUSTER_ROUTE));
        let mut with_name = sample.clone();
        if let Typed::Mapping(map) = &mut with_name {
            map.insert(
                Typed::String("name".to_owned()),
                Typed::String("a/b".to_owned()),
            );
        }
        if let Err(error) = serde_yaml_ng::from_value::<crate::schema::RouteSpec>(with_name) {
            panic!("a sampled spec with a name is a route: {error}");
        }
    }

    /// A sample of `kind` whose every list holds a stand-in of its item
    /// and then a sample of it.
    fn with_stand_ins(kind: &Kind) -> Typed {
        match kind {
            Kind::List(item) => Typed::Sequence(vec![stand_in(item), with_stand_ins(item)]),
            Kind::Shape(fields) => Typed::Mapping(
                fields
                    .iter()
                    .map(|f| (Typed::String(f.key.to_owned()), with_stand_ins(&f.kind)))
                    .collect(),
            ),
            _ => sample(kind),
        }
    }

    /// Every list element that cannot be typed is replaced by a stand-in,
    /// which the schema types must read, or the file would be reported as
    /// a bug in weir instead of being checked.
    #[test]
    fn stand_ins_of_every_list_item_are_read_by_the_schema_types() {
        let value = with_stand_ins(&Kind::Shape(&CONFIG));
        if let Err(error) = serde_path_to_error::deserialize::<_, ConfigSpec>(value) {
            panic!("{}: {}", error.path(), error.inner());
        }
    }
}
