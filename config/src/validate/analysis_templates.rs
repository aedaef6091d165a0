//! Checks of `analysisTemplates` and of the references to them (canary
//! `analysis` steps, `strategy.analysis.templates`, blue-green pre- and
//! post-promotion analysis): every template on its own (names, limits,
//! durations, providers, `{{args.NAME}}` naming a declared argument,
//! conditions that parse), then each reference resolved into an
//! [`AnalysisRef`] (known templates, every argument given a value, every
//! field checked again with the values in place).
//!
//! A template on its own is checked with the defaults of its arguments. A
//! field naming an argument without a default (a condition, an address
//! that is wholly `{{args.addr}}`) cannot be checked before a reference
//! gives the value: it is checked at each reference, and a problem there is
//! told where the reference gives the value, quoting the field as written
//! and what it resolves to. Only what no value can make right (an address
//! starting `127.0.0.1:{{args.port}}`) is told at the template.
//!
//! Problems are reported through a callback as `(key path, message)`, so
//! that they read like every other diagnostic, with `FILE:LINE:COL`.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::holes::{Holes, Lost};
use crate::condition::Condition;
use crate::model::analysis_templates::{
    DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_PROMETHEUS_TIMEOUT, DEFAULT_WEB_TIMEOUT,
};
use crate::model::{AnalysisRef, JsonPath, Metric, PrometheusQuery, Provider, WebRequest};
use crate::schema::{
    AnalysisTemplateSpec, ArgValueSpec, DurationSpec, HeaderSpec, IntegerSpec, MetricSpec,
    PrometheusProviderSpec, TemplateRefSpec, WebProviderSpec,
};

/// Where a problem is and what it is.
pub(super) type Report<'r> = dyn FnMut(&str, String) + 'r;

/// The most text one field of a resolved metric (a query, a URL, a body, a
/// header, a condition) may hold with its arguments in place: far above
/// any real query, and it keeps a short file from naming one long argument
/// thousands of times in a field.
pub(crate) const MAX_RESOLVED_FIELD: usize = 1 << 20;

/// The most text the references of one config may resolve to in all. Each
/// reference gets its own copy of its templates with its arguments in
/// place, so thousands of routes sharing a large template would otherwise
/// turn a small file into gigabytes held by every snapshot.
pub(crate) const MAX_RESOLVED_TOTAL: usize = 64 << 20;

/// The text resolved so far, against [`MAX_RESOLVED_TOTAL`].
#[derive(Debug, Default)]
pub(super) struct ResolvedText {
    bytes: Cell<usize>,
    /// The total was found over the limit, and said so once.
    reported: bool,
}

/// The templates of the file, by name, as written; those with a problem
/// are known (a reference to one is not "unknown") but never resolved.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    templates: HashMap<String, Entry>,
    /// The namespace of AnalysisTemplates (Kubernetes mode); `None` for
    /// the file's `analysisTemplates`.
    namespace: Option<String>,
    /// The file's templates that the structural pass left out: a reference
    /// to one of them is not "unknown".
    left_out: Option<Lost>,
}

#[derive(Debug)]
struct Entry {
    spec: AnalysisTemplateSpec,
    path: String,
    valid: bool,
    /// The template's `args` are known whole (even when the template is
    /// not valid for another reason): a reference's arguments can be
    /// checked against them.
    args_known: bool,
    /// Why an AnalysisTemplate is not valid (a file template's problems
    /// are reported where it is written).
    problem: Option<String>,
}

/// Checks every template but the stand-ins of `holes`; returns them by
/// name.
pub(super) fn catalog(
    specs: &[AnalysisTemplateSpec],
    holes: &Holes,
    report: &mut Report<'_>,
) -> Catalog {
    let mut catalog = Catalog {
        left_out: holes.lost("analysisTemplates").cloned(),
        ..Catalog::default()
    };
    for (i, spec) in specs.iter().enumerate() {
        let path = format!("analysisTemplates[{i}]");
        if holes.is_stand_in(&path) {
            continue;
        }
        let mut valid = check_template(&path, spec, holes, report);
        if spec.name.trim().is_empty() {
            report(
                &format!("{path}.name"),
                "the template name is empty; name it, e.g. `error-rate`".to_owned(),
            );
            valid = false;
        }
        if let Some(first) = catalog.templates.get(&spec.name) {
            report(
                &format!("{path}.name"),
                format!(
                    "template `{}` is already defined at {}; give each template its own name",
                    spec.name, first.path
                ),
            );
            continue;
        }
        let args_known = declares_all_args(&path, spec, holes);
        catalog.templates.insert(
            spec.name.clone(),
            Entry {
                spec: spec.clone(),
                path,
                valid,
                args_known,
                problem: None,
            },
        );
    }
    catalog
}

/// Whether the `args` of the template at `path` are known whole: none
/// left out by the structural pass, none without a name or named twice.
fn declares_all_args(path: &str, spec: &AnalysisTemplateSpec, holes: &Holes) -> bool {
    if holes.is_loose(path) {
        return false;
    }
    let mut names = HashSet::new();
    spec.args.iter().enumerate().all(|(k, arg)| {
        let element = format!("{path}.args[{k}]");
        !holes.is_stand_in(&element)
            && !holes.is_loose(&element)
            && !arg.name.trim().is_empty()
            && names.insert(arg.name.as_str())
    })
}

/// The templates a CanaryRoute of `namespace` may name: the valid
/// `analysisTemplates` of `weir.yaml` (`file`), and the AnalysisTemplates
/// of `namespace` by name, each spec (its name in place) when it is valid,
/// else the spec if it could be read and why it is not valid. A name found
/// in both is refused: a reference to it says so, rather than one of the
/// two silently winning.
pub(super) fn namespace_catalog<'t>(
    namespace: &str,
    file: &[AnalysisTemplateSpec],
    templates: impl Iterator<Item = (&'t str, Option<&'t AnalysisTemplateSpec>, Option<String>)>,
) -> Catalog {
    let mut catalog = Catalog {
        templates: HashMap::new(),
        namespace: Some(namespace.to_owned()),
        left_out: None,
    };
    for spec in file {
        catalog.templates.insert(
            spec.name.clone(),
            Entry {
                spec: spec.clone(),
                path: format!("the weir.yaml template `{}`", spec.name),
                valid: true,
                args_known: true,
                problem: None,
            },
        );
    }
    for (name, spec, problem) in templates {
        let spec = spec.cloned().unwrap_or_else(|| AnalysisTemplateSpec {
            name: name.to_owned(),
            args: Vec::new(),
            metrics: Vec::new(),
            dry_run: Vec::new(),
        });
        let problem = if catalog.templates.contains_key(name) {
            Some(format!(
                "both AnalysisTemplate `{namespace}/{name}` and the `analysisTemplates` of weir.yaml define `{name}`; rename one of them"
            ))
        } else {
            problem.map(|p| format!("AnalysisTemplate `{namespace}/{name}` is invalid: {p}"))
        };
        catalog.templates.insert(
            name.to_owned(),
            Entry {
                spec,
                path: format!("AnalysisTemplate `{namespace}/{name}` spec"),
                valid: problem.is_none(),
                args_known: problem.is_none(),
                problem,
            },
        );
    }
    catalog
}

/// Resolves a reference at `at`: `None` after reporting why it cannot be.
/// What it resolves to is counted in `resolved`: past
/// [`MAX_RESOLVED_TOTAL`], this reference is refused and said so, and the
/// later ones are refused silently. The stand-ins of `holes` resolve to nothing, silently, and a key left
/// out of the reference may be its `templates` or `args`.
pub(super) fn resolve(
    catalog: &Catalog,
    holes: &Holes,
    at: &str,
    templates: &[TemplateRefSpec],
    args: &[ArgValueSpec],
    resolved: &mut ResolvedText,
    report: &mut Report<'_>,
) -> Option<AnalysisRef> {
    let loose = holes.is_loose(at);
    if templates.is_empty() && loose {
        return None;
    }
    if templates.is_empty() {
        report(
            &format!("{at}.templates"),
            "no templates; name at least one, e.g. `templates: [{templateName: error-rate}]`"
                .to_owned(),
        );
        return None;
    }
    let mut ok = true;
    let mut used: Vec<&Entry> = Vec::new();
    // Each template once: a template named again would measure its
    // metrics twice (and report each of its problems once per mention).
    let mut named: HashMap<&str, usize> = HashMap::new();
    let mut unknown = false;
    // Sorted once, on the first unknown name, and listed in part.
    let mut known: Option<String> = None;
    for (k, template) in templates.iter().enumerate() {
        let element = format!("{at}.templates[{k}]");
        if holes.is_stand_in(&element) {
            unknown = true;
            ok = false;
            continue;
        }
        let path = format!("{element}.templateName");
        if let Some(first) = named.get(template.template_name.as_str()) {
            report(
                &path,
                format!(
                    "template `{}` is already templates[{first}]; name each template once",
                    template.template_name
                ),
            );
            ok = false;
            continue;
        }
        named.insert(&template.template_name, k);
        match catalog.templates.get(&template.template_name) {
            Some(entry) => {
                if let (false, Some(problem)) = (entry.valid, &entry.problem) {
                    report(&path, problem.clone());
                }
                ok &= entry.valid;
                used.push(entry);
            }
            None => {
                unknown = true;
                ok = false;
                let name = template.template_name.as_str();
                if catalog.left_out.as_ref().is_some_and(|l| l.may_name(name)) {
                    continue;
                }
                let known = known.get_or_insert_with(|| {
                    let mut names: Vec<&str> =
                        catalog.templates.keys().map(String::as_str).collect();
                    names.sort_unstable();
                    super::listed(&names)
                });
                let message = match &catalog.namespace {
                    None if known.is_empty() => format!(
                        "unknown template `{}`; no template is defined (top-level `analysisTemplates`)",
                        template.template_name
                    ),
                    None => format!(
                        "unknown template `{}`; defined: {known}",
                        template.template_name,
                    ),
                    Some(namespace) if known.is_empty() => format!(
                        "there is no AnalysisTemplate `{}` in namespace `{namespace}` nor in weir.yaml (neither has any)",
                        template.template_name
                    ),
                    Some(namespace) => format!(
                        "there is no AnalysisTemplate `{}` in namespace `{namespace}` nor in weir.yaml (known: {known})",
                        template.template_name,
                    ),
                };
                report(&path, message);
            }
        }
    }
    // Each argument's value, and where in `args` it is given.
    let mut given: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let declared: HashSet<&str> = used
        .iter()
        .flat_map(|e| e.spec.args.iter().map(|a| a.name.as_str()))
        .collect();
    // A template left out, or whose `args` are not whole, may declare
    // arguments unseen.
    let all_known = !unknown && used.iter().all(|e| e.args_known);
    let mut users: Option<String> = None;
    for (k, arg) in args.iter().enumerate() {
        let element = format!("{at}.args[{k}]");
        if holes.is_stand_in(&element) {
            ok = false;
            continue;
        }
        let path = format!("{element}.name");
        if given.insert(&arg.name, (k, &arg.value)).is_some() {
            report(
                &path,
                format!("argument `{}` is given twice; give it once", arg.name),
            );
            ok = false;
        }
        if !declared.contains(arg.name.as_str()) && !used.is_empty() && all_known {
            let users = users.get_or_insert_with(|| names(&used));
            report(
                &path,
                format!(
                    "argument `{}` is not declared by {users}; remove it or declare it in the template's `args`",
                    arg.name,
                ),
            );
            ok = false;
        }
    }
    // Every argument a template declares needs a value, also when the
    // template has problems of its own (reported where it is written).
    for entry in used.iter().filter(|e| e.args_known) {
        for arg in &entry.spec.args {
            if given.contains_key(arg.name.as_str()) || arg.value.is_some() {
                continue;
            }
            ok = false;
            if args.is_empty() && loose {
                continue;
            }
            let path = if args.is_empty() {
                at.to_owned()
            } else {
                format!("{at}.args")
            };
            report(
                &path,
                format!(
                    "template `{}` needs a value for argument `{}` (`{{{{args.{}}}}}`); add `{{name: {}, value: ...}}` to `args`",
                    entry.spec.name, arg.name, arg.name, arg.name
                ),
            );
        }
    }
    if !ok || resolved.reported {
        return None;
    }
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut metrics: Vec<Arc<Metric>> = Vec::new();
    let mut seen_metrics: HashMap<String, String> = HashMap::new();
    // Argo's dry-run rules of every template of the run, each for every
    // metric of the run (checked as regular expressions with their
    // template), and whether it matched one.
    let mut dry_runs: Vec<(&str, &str, regex::Regex, bool)> = used
        .iter()
        .flat_map(|e| {
            e.spec.dry_run.iter().filter_map(|rule| {
                let pattern = regex::Regex::new(&rule.metric_name).ok()?;
                Some((
                    e.spec.name.as_str(),
                    rule.metric_name.as_str(),
                    pattern,
                    false,
                ))
            })
        })
        .collect();
    for entry in &used {
        let mut template_values = HashMap::new();
        for arg in &entry.spec.args {
            let value = given
                .get(arg.name.as_str())
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| arg.value.clone());
            if let Some(value) = value {
                values.insert(arg.name.clone(), value.clone());
                template_values.insert(arg.name.clone(), value);
            }
        }
        for (m, spec) in entry.spec.metrics.iter().enumerate() {
            let metric_path = format!("{}.metrics[{m}]", entry.path);
            if let Some(first) = seen_metrics.insert(spec.name.clone(), entry.spec.name.clone()) {
                report(
                    &format!("{at}.templates"),
                    format!(
                        "metric `{}` is in templates `{first}` and `{}`; metric names must be unique within a run",
                        spec.name, entry.spec.name
                    ),
                );
                ok = false;
                continue;
            }
            let args = Args {
                values: &template_values,
                alone: false,
                bytes: &resolved.bytes,
            };
            match build_metric(&entry.spec.name, spec, &args) {
                Ok(mut metric) => {
                    for (_, _, pattern, matched) in &mut dry_runs {
                        if pattern.is_match(&spec.name) {
                            metric.dry_run = true;
                            *matched = true;
                        }
                    }
                    metrics.push(Arc::new(metric));
                }
                Err(problems) => {
                    for (key, why) in problems {
                        // Where the value that makes it wrong is written: the
                        // reference's argument, or its mention of the template
                        // (a default of the template's).
                        let written = metric_strings(spec)
                            .into_iter()
                            .find(|(k, _)| *k == key)
                            .map(|(_, text)| text)
                            .unwrap_or_default();
                        // Every argument of this reference the field takes, in
                        // the order the field names them; the error is placed
                        // at the first and names them all when there are more.
                        let mut used: Vec<(usize, String)> = Vec::new();
                        for name in placeholders(&written).into_iter().flatten() {
                            if let Some((k, _)) = given.get(name.as_str()) {
                                if !used.iter().any(|(seen, _)| seen == k) {
                                    used.push((*k, name));
                                }
                            }
                        }
                        let place = match (used.first(), named.get(entry.spec.name.as_str())) {
                            (Some((k, _)), _) => format!("{at}.args[{k}].value"),
                            (None, Some(k)) => format!("{at}.templates[{k}].templateName"),
                            (None, None) => at.to_owned(),
                        };
                        let from = if used.len() > 1 {
                            let names: Vec<String> =
                                used.iter().map(|(_, name)| format!("`{name}`")).collect();
                            format!(" (it takes {} from these arguments)", names.join(", "))
                        } else {
                            String::new()
                        };
                        report(
                            &place,
                            format!("with these arguments, {metric_path}.{key} {why}{from}"),
                        );
                    }
                    ok = false;
                }
            }
        }
    }
    // As Argo, a rule that matches no metric of the run refuses it: a
    // misspelled name would leave a metric able to fail the run.
    for (template, text, _, matched) in &dry_runs {
        if !matched && ok {
            let mut run: Vec<&str> = metrics.iter().map(|m| &*m.name).collect();
            run.sort_unstable();
            report(
                at,
                format!(
                    "the dryRun rule `{}` of template `{template}` matches no metric of this \
                     run ({})",
                    quoted(text, true),
                    super::listed(&run)
                ),
            );
            ok = false;
        }
    }
    // The reference keeps its arguments too (shown with its runs).
    let kept: usize = values.iter().map(|(k, v)| k.len() + v.len()).sum();
    resolved
        .bytes
        .set(resolved.bytes.get().saturating_add(kept));
    if resolved.bytes.get() > MAX_RESOLVED_TOTAL {
        report(
            at,
            format!(
                "the analysis templates of this config come to more than {} MiB with their \
                 arguments in place (each reference holds its own copy); use fewer or \
                 shorter templates",
                MAX_RESOLVED_TOTAL >> 20
            ),
        );
        resolved.reported = true;
        return None;
    }
    if !ok {
        return None;
    }
    Some(AnalysisRef {
        templates: used
            .iter()
            .map(|e| Arc::from(e.spec.name.as_str()))
            .collect(),
        args: values.into_iter().collect(),
        metrics,
        waiting_for: None,
    })
}

fn names(used: &[&Entry]) -> String {
    let list: Vec<String> = used.iter().map(|e| format!("`{}`", e.spec.name)).collect();
    format!(
        "template{} {}",
        if list.len() == 1 { "" } else { "s" },
        super::listed(&list)
    )
}

/// Checks a template on its own; false after reporting a problem.
///
/// With a hole in the template (`holes`), a stand-in is skipped and the
/// template is invalid; when the declared arguments may be incomplete (a
/// key left out of the template or of an argument, an argument left out),
/// the metrics are not checked against them, and when a key was left out
/// of a metric or its provider, a problem that a missing key makes is not
/// reported.
pub(super) fn check_template(
    path: &str,
    spec: &AnalysisTemplateSpec,
    holes: &Holes,
    report: &mut Report<'_>,
) -> bool {
    let mut ok = true;
    let mut declared: HashMap<&str, Option<&str>> = HashMap::new();
    let mut all_declared = !holes.is_loose(path);
    for (k, arg) in spec.args.iter().enumerate() {
        let element = format!("{path}.args[{k}]");
        if holes.is_stand_in(&element) || holes.is_loose(&element) {
            all_declared = false;
            if holes.is_stand_in(&element) {
                continue;
            }
        }
        let arg_path = format!("{element}.name");
        if arg.name.trim().is_empty() {
            report(&arg_path, "the argument name is empty".to_owned());
            ok = false;
        } else if declared.insert(&arg.name, arg.value.as_deref()).is_some() {
            report(
                &arg_path,
                format!("argument `{}` is declared twice", arg.name),
            );
            ok = false;
        }
    }
    if spec.metrics.is_empty() {
        report(
            &format!("{path}.metrics"),
            "no metrics; a template measures at least one".to_owned(),
        );
        return false;
    }
    // Whether a rule matches a metric is known only with the run's other
    // templates (Argo applies the rules of them all to all their metrics):
    // checked at each reference.
    for (r, rule) in spec.dry_run.iter().enumerate() {
        if let Err(error) = regex::Regex::new(&rule.metric_name) {
            report(
                &format!("{path}.dryRun[{r}].metricName"),
                format!(
                    "`{}` is not a regular expression: {error}",
                    quoted(&rule.metric_name, true)
                ),
            );
            ok = false;
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    // The declared arguments as messages list them, once for the template.
    let mut listed: Option<String> = None;
    if !all_declared {
        ok = false;
    }
    for (m, metric) in spec.metrics.iter().enumerate() {
        let at = format!("{path}.metrics[{m}]");
        if holes.is_stand_in(&at) {
            ok = false;
            continue;
        }
        if metric.name.trim().is_empty() {
            report(&format!("{at}.name"), "the metric name is empty".to_owned());
            ok = false;
        } else if let Some(first) = seen.insert(&metric.name, m) {
            report(
                &format!("{at}.name"),
                format!(
                    "metric `{}` is already metrics[{first}] of this template; names must be unique",
                    metric.name
                ),
            );
            ok = false;
        }
        let whole = !holes.is_loose(&at) && !holes.is_loose(&format!("{at}.provider"));
        let declared = all_declared.then_some(&declared);
        ok &= check_metric(&at, metric, declared, whole, &mut listed, report);
    }
    ok
}

/// Every string of a metric that may hold `{{args.NAME}}`, with its key.
fn metric_strings(spec: &MetricSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |key: &str, value: &str| out.push((key.to_owned(), value.to_owned()));
    for (key, duration) in [
        ("interval", &spec.interval),
        ("initialDelay", &spec.initial_delay),
    ] {
        if let Some(DurationSpec::Text(text)) = duration {
            push(key, text);
        }
    }
    for (key, number) in [
        ("count", &spec.count),
        ("failureLimit", &spec.failure_limit),
        ("inconclusiveLimit", &spec.inconclusive_limit),
        ("consecutiveErrorLimit", &spec.consecutive_error_limit),
    ] {
        if let Some(IntegerSpec::Text(text)) = number {
            push(key, text);
        }
    }
    if let Some(c) = &spec.success_condition {
        push("successCondition", c);
    }
    if let Some(c) = &spec.failure_condition {
        push("failureCondition", c);
    }
    if let Some(p) = &spec.provider.prometheus {
        push("provider.prometheus.address", &p.address);
        push("provider.prometheus.query", &p.query);
        for (k, h) in p.headers.iter().enumerate() {
            push(&format!("provider.prometheus.headers[{k}].key"), &h.key);
            push(&format!("provider.prometheus.headers[{k}].value"), &h.value);
        }
        if let Some(basic) = p.authentication.as_ref().and_then(|a| a.basic.as_ref()) {
            push(
                "provider.prometheus.authentication.basic.username",
                &basic.username,
            );
            push(
                "provider.prometheus.authentication.basic.password",
                &basic.password,
            );
        }
    }
    if let Some(w) = &spec.provider.web {
        push("provider.web.url", &w.url);
        if let Some(m) = &w.method {
            push("provider.web.method", m);
        }
        if let Some(p) = &w.json_path {
            push("provider.web.jsonPath", p);
        }
        if let Some(b) = &w.body {
            push("provider.web.body", b);
        }
        if let Some(b) = &w.json_body {
            push("provider.web.jsonBody", &b.to_string());
        }
        for (k, h) in w.headers.iter().enumerate() {
            push(&format!("provider.web.headers[{k}].key"), &h.key);
            push(&format!("provider.web.headers[{k}].value"), &h.value);
        }
    }
    out
}

/// Checks a metric of a template that declares `declared` (`None` when
/// they may be more); `listed` keeps the declared names as a message lists
/// them (sorted on the first unknown name, for the whole template). Unless
/// `whole` (no key left out of the metric or its provider), the metric is
/// invalid and a problem that a missing key makes is not reported: the key
/// may be there, misspelled.
fn check_metric(
    at: &str,
    spec: &MetricSpec,
    declared: Option<&HashMap<&str, Option<&str>>>,
    whole: bool,
    listed: &mut Option<String>,
    report: &mut Report<'_>,
) -> bool {
    let Some(declared) = declared else {
        return false;
    };
    // The keys whose placeholders are wrong: reported here, and not again
    // as the metric is checked for its other problems.
    let mut misnamed: Vec<String> = Vec::new();
    for (key, text) in metric_strings(spec) {
        for placeholder in placeholders(&text) {
            match placeholder {
                Ok(name) if declared.contains_key(name.as_str()) => {}
                Ok(name) => {
                    let known = listed.get_or_insert_with(|| {
                        let mut names: Vec<&str> = declared.keys().copied().collect();
                        names.sort_unstable();
                        if names.is_empty() {
                            "it declares none".to_owned()
                        } else {
                            format!("declared: {}", super::listed(&names))
                        }
                    });
                    report(
                        &format!("{at}.{key}"),
                        format!(
                            "`{{{{args.{name}}}}}` names no argument of this template ({known}); declare it under `args`"
                        ),
                    );
                    misnamed.push(key.clone());
                }
                Err(written) => {
                    report(
                        &format!("{at}.{key}"),
                        format!(
                            "`{written}` is not a placeholder weir knows; write `{{{{args.NAME}}}}`"
                        ),
                    );
                    misnamed.push(key.clone());
                }
            }
        }
    }
    // The template alone, with the defaults of its arguments: a field
    // naming an argument without one is checked at each reference, with
    // the reference's value (only what no value can change is checked
    // here).
    let defaults: HashMap<String, String> = declared
        .iter()
        .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v.to_owned())))
        .collect();
    let args = Args {
        values: &defaults,
        alone: true,
        bytes: &Cell::new(0),
    };
    match build_metric("", spec, &args) {
        Ok(_) => whole && misnamed.is_empty(),
        Err(problems) => {
            for (key, why) in problems {
                // The problems that a missing provider or `interval` make.
                let left_out = !whole && matches!(key.as_str(), "provider" | "count");
                if !left_out && !misnamed.contains(&key) {
                    report(&format!("{at}.{key}"), why);
                }
            }
            false
        }
    }
}

/// The `{{...}}` of `text`: `Ok(NAME)` for `{{args.NAME}}`, `Err(written)`
/// for anything else.
fn placeholders(text: &str) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let inner = after[..end].trim();
        match inner.strip_prefix("args.") {
            Some(name) if !name.is_empty() => out.push(Ok(name.to_owned())),
            _ => out.push(Err(format!("{{{{{}}}}}", &after[..end]))),
        }
        rest = &after[end + 2..];
    }
    out
}

/// The arguments a metric is built with.
struct Args<'a> {
    /// The value of each argument: at a reference, every one the template
    /// declares; for the template alone, those with a default.
    values: &'a HashMap<String, String>,
    /// The template is checked alone: a field naming an argument without a
    /// value is not checked here (what the value makes of it is not known
    /// yet) but at each reference, with the reference's value.
    alone: bool,
    /// The text resolved so far, against [`MAX_RESOLVED_TOTAL`].
    bytes: &'a Cell<usize>,
}

/// A field of a metric with the arguments in place.
struct Field<'t> {
    /// As the template writes it.
    written: &'t str,
    /// With every `{{args.NAME}}` that has a value replaced by it.
    resolved: String,
    /// When the field names an argument without a value (the template
    /// checked alone): where in `resolved` the first such `{{args.NAME}}`
    /// starts, left as written. Only what comes before it is known.
    pending: Option<usize>,
}

/// At most this many characters of a field are quoted in a message: an
/// argument may be long.
const QUOTED_CHARS: usize = 200;

/// `text` trimmed and cut to [`QUOTED_CHARS`], for a message; control
/// characters escaped with `escape`.
fn quoted(text: &str, escape: bool) -> String {
    let text = text.trim();
    let cut = text.char_indices().nth(QUOTED_CHARS).map(|(at, _)| at);
    let head = &text[..cut.unwrap_or(text.len())];
    let more = if cut.is_some() { "..." } else { "" };
    if escape {
        format!("{}{more}", head.escape_debug())
    } else {
        format!("{head}{more}")
    }
}

// === impl Args ===

impl Args<'_> {
    /// `text` with every `{{args.NAME}}` that has a value replaced by it,
    /// its length added to the text resolved; `Err` when it would be
    /// longer than [`MAX_RESOLVED_FIELD`].
    fn field<'t>(&self, text: &'t str) -> Result<Field<'t>, String> {
        let mut out = String::with_capacity(text.len().min(MAX_RESOLVED_FIELD));
        let mut pending = None;
        let mut rest = text;
        let push = |out: &mut String, piece: &str| {
            if out.len() + piece.len() > MAX_RESOLVED_FIELD {
                return Err(format!(
                    "is more than {} MiB; a field of a resolved template is kept under that",
                    MAX_RESOLVED_FIELD >> 20
                ));
            }
            out.push_str(piece);
            Ok(())
        };
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            push(&mut out, &rest[..start])?;
            let name = after[..end].trim().strip_prefix("args.");
            match name.and_then(|n| self.values.get(n)) {
                Some(value) => push(&mut out, value)?,
                None => {
                    if self.alone && name.is_some() && pending.is_none() {
                        pending = Some(out.len());
                    }
                    push(&mut out, &rest[start..start + 2 + end + 2])?;
                }
            }
            rest = &after[end + 2..];
        }
        push(&mut out, rest)?;
        self.bytes.set(self.bytes.get().saturating_add(out.len()));
        Ok(Field {
            written: text,
            resolved: out,
            pending,
        })
    }
}

// === impl Field ===

impl Field<'_> {
    /// What is wrong with the field, `reason` going on from "`TEXT` ...":
    /// the text as written and, when the arguments change it, what it
    /// resolves to.
    fn problem(&self, reason: &str, escape: bool) -> String {
        let written = quoted(self.written, escape);
        if self.resolved.trim() == self.written.trim() {
            format!("`{written}` {reason}")
        } else {
            let resolved = quoted(&self.resolved, escape);
            format!("`{written}` resolves to `{resolved}`, which {reason}")
        }
    }

    /// `error`, after what the field resolves to when the arguments
    /// change it.
    fn resolved_from(&self, error: impl std::fmt::Display) -> String {
        if self.resolved.trim() == self.written.trim() {
            error.to_string()
        } else {
            let written = quoted(self.written, true);
            let resolved = quoted(&self.resolved, true);
            format!("`{written}` resolves to `{resolved}`: {error}")
        }
    }

    /// The field as an http:// or https:// URL with a host. With an
    /// argument still without a value, only a start that no value can
    /// make right (`127.0.0.1:{{args.port}}`) is a problem.
    fn http_url(&self) -> Result<String, String> {
        match self.pending {
            None => http_url(&self.resolved).map_err(|reason| self.problem(&reason, false)),
            Some(at) if never_http_url(&self.resolved[..at]) => Err(self.problem(
                "cannot be an http:// or https:// URL with a host, whatever its arguments are, \
                 e.g. `http://127.0.0.1:9090`",
                false,
            )),
            Some(_) => Ok(self.resolved.clone()),
        }
    }
}

/// The headers of provider `at` with the arguments in place; `None` with a
/// problem added to `problems` for each name or value that is not an HTTP
/// header's (the run would otherwise fail at its first request).
fn headers(
    at: &str,
    list: &[HeaderSpec],
    args: &Args<'_>,
    problems: &mut Vec<(String, String)>,
) -> Option<Vec<(String, String)>> {
    let before = problems.len();
    let mut headers = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        let key = format!("{at}.headers[{i}].key");
        let name = noted(
            problems,
            args.field(&h.key)
                .map_err(|why| (key.clone(), why))
                .and_then(|name| {
                    if name.pending.is_none()
                        && http::HeaderName::from_bytes(name.resolved.as_bytes()).is_err()
                    {
                        Err((
                            key,
                            name.problem(
                                "is not an HTTP header name (no spaces, colons or other \
                                 separators), e.g. `x-scope-orgid`",
                                true,
                            ),
                        ))
                    } else {
                        Ok(name.resolved)
                    }
                }),
        );
        let key = format!("{at}.headers[{i}].value");
        let value = noted(
            problems,
            args.field(&h.value)
                .map_err(|why| (key.clone(), why))
                .and_then(|value| {
                    if value.pending.is_none()
                        && http::HeaderValue::from_str(&value.resolved).is_err()
                    {
                        Err((
                            key,
                            value.problem(
                                "is not a valid HTTP header value (control characters or \
                                 non-ASCII)",
                                true,
                            ),
                        ))
                    } else {
                        Ok(value.resolved)
                    }
                }),
        );
        if let (Some(name), Some(value)) = (name, value) {
            headers.push((name, value));
        }
    }
    (problems.len() == before).then_some(headers)
}

/// `text` trimmed when it is an http:// or https:// URL with a host; else
/// why not, going on from "`TEXT` ...".
fn http_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    // As the request will read it: a URL `http::Uri` cannot parse (a
    // space or a `<` in it, say) could never be asked.
    let parsed = || {
        trimmed
            .parse::<http::Uri>()
            .ok()
            .filter(|uri| uri.host().is_some_and(|host| !host.is_empty()))
    };
    match rest
        .filter(|rest| !rest.is_empty() && !rest.starts_with('/'))
        .and_then(|_| parsed())
    {
        Some(uri) if port_in_range(&uri) => Ok(trimmed.to_owned()),
        Some(_) => Err("has a port outside 1 to 65535".to_owned()),
        None => Err(
            "is not an http:// or https:// URL with a host, e.g. `http://127.0.0.1:9090`"
                .to_owned(),
        ),
    }
}

/// Whether `uri`'s port, when it names one, is 1 to 65535 (`http::Uri`
/// takes any digits, and reads a port past 65535 as none at all).
pub(super) fn port_in_range(uri: &http::Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return true;
    };
    // After any userinfo, and after an IPv6 literal's `]`: their colons
    // are not the port's.
    let text = authority.as_str().rsplit('@').next().unwrap_or_default();
    let after_host = text.rfind(']').map_or(0, |at| at + 1);
    match text[after_host..].rfind(':') {
        None => true,
        Some(colon) => {
            let port = &text[after_host + colon + 1..];
            port.is_empty() || port.parse::<u16>().is_ok_and(|n| n != 0)
        }
    }
}

/// Whether no text after `start` makes an http:// or https:// URL with a
/// host: `start` is neither the beginning of `http://` or `https://` nor
/// one of them followed by a host's first character.
fn never_http_url(start: &str) -> bool {
    let start = start.trim_start();
    ["http://", "https://"].iter().all(|scheme| {
        if scheme.starts_with(start) {
            return false;
        }
        start
            .strip_prefix(scheme)
            .is_none_or(|rest| rest.starts_with('/'))
    })
}

/// A duration field with the arguments in place; `Ok(None)` while one
/// has no value (the template alone).
fn duration_field(spec: &DurationSpec, args: &Args<'_>) -> Result<Option<Duration>, String> {
    let DurationSpec::Text(text) = spec else {
        return spec.to_duration().map(Some).map_err(|e| e.to_string());
    };
    let field = args.field(text)?;
    if field.pending.is_some() {
        return Ok(None);
    }
    crate::duration::parse_duration(&field.resolved)
        .map(Some)
        .map_err(|e| field.resolved_from(e))
}

/// A whole-number field with the arguments in place, from `min` up to
/// `u32::MAX`; `Ok(None)` while an argument has no value (the template
/// alone).
fn integer_field(spec: &IntegerSpec, args: &Args<'_>, min: i64) -> Result<Option<i64>, String> {
    let wanted = if min < 0 {
        format!("-1 (never fail) or a whole number from 0 to {}", u32::MAX)
    } else {
        format!("a whole number from {min} to {}", u32::MAX)
    };
    match spec {
        IntegerSpec::Number(n) if (min..=i64::from(u32::MAX)).contains(n) => Ok(Some(*n)),
        IntegerSpec::Number(n) => Err(format!("`{n}` is not {wanted}")),
        IntegerSpec::Text(text) => {
            let field = args.field(text)?;
            if field.pending.is_some() {
                return Ok(None);
            }
            match field.resolved.trim().parse::<i64>() {
                Ok(n) if (min..=i64::from(u32::MAX)).contains(&n) => Ok(Some(n)),
                _ => Err(field.problem(&format!("is not {wanted}"), true)),
            }
        }
    }
}

/// `n`, known to be from 0 to `u32::MAX`, as a `u32`.
fn whole(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The metric with `args` in place, the text it holds added to the text
/// resolved; `Err` names every problem, each as `(key, why)`. For the
/// template alone ([`Args::alone`]) the metric is only checked: a field
/// naming an argument without a value is left as written, unchecked.
fn build_metric(
    template: &str,
    spec: &MetricSpec,
    args: &Args<'_>,
) -> Result<Metric, Vec<(String, String)>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let fail = |key: &str, why: String| (key.to_owned(), why);
    // A field naming an argument without a value (the template alone) is
    // `None` here: it is checked at each reference.
    let interval = match &spec.interval {
        None => Ok(None),
        Some(d) => match duration_field(d, args).map_err(|e| fail("interval", e)) {
            Ok(Some(d)) if d.is_zero() => Err(fail(
                "interval",
                "`interval` is 0; it must be more than 0, e.g. `30s`".to_owned(),
            )),
            Ok(Some(d)) => Ok(Some(Some(d))),
            Ok(None) => Ok(Some(None)),
            Err(problem) => Err(problem),
        },
    };
    // A wrong `interval` is still one written, for `count`.
    let interval_written = !matches!(interval, Ok(None));
    let interval = noted(&mut problems, interval);
    let initial_delay = noted(
        &mut problems,
        match &spec.initial_delay {
            None => Ok(Duration::ZERO),
            Some(d) => duration_field(d, args)
                .map(|d| d.unwrap_or(Duration::ZERO))
                .map_err(|e| fail("initialDelay", e)),
        },
    );
    let count = noted(
        &mut problems,
        match &spec.count {
            None => Ok(None),
            Some(n) => match integer_field(n, args, 0).map_err(|e| fail("count", e)) {
                Ok(None) => Ok(None),
                Ok(Some(0)) => Err(fail(
                    "count",
                    "`count` is 0; it must be at least 1 (leave it out with `interval` to measure until the run ends)".to_owned(),
                )),
                Ok(Some(n)) if n > 1 && !interval_written => Err(fail(
                    "count",
                    format!(
                        "`count` {n} needs an `interval` between the measurements, e.g. `interval: 30s`"
                    ),
                )),
                Ok(Some(n)) => Ok(Some(whole(n))),
                Err(problem) => Err(problem),
            },
        },
    );
    let condition =
        |key: &str, text: &Option<String>| -> Result<Option<Condition>, (String, String)> {
            match text {
                None => Ok(None),
                Some(text) if text.trim().is_empty() => Ok(None),
                Some(text) => {
                    let field = args.field(text).map_err(|e| fail(key, e))?;
                    if field.pending.is_some() {
                        return Ok(None);
                    }
                    let resolved = field.resolved.trim();
                    Condition::parse(resolved).map(Some).map_err(|e| {
                        let shown = if resolved == text.trim() {
                            String::new()
                        } else {
                            let resolved = quoted(resolved, false);
                            format!(" (`{resolved}` with the arguments in place)")
                        };
                        fail(key, format!("the condition does not parse{shown}: {e}"))
                    })
                }
            }
        };
    let success_condition = noted(
        &mut problems,
        condition("successCondition", &spec.success_condition),
    );
    let failure_condition = noted(
        &mut problems,
        condition("failureCondition", &spec.failure_condition),
    );
    let failure_limit = noted(
        &mut problems,
        match &spec.failure_limit {
            None => Ok(Some(0)),
            Some(n) => integer_field(n, args, -1)
                .map(|n| match n {
                    Some(-1) => None,
                    Some(n) => Some(whole(n)),
                    None => Some(0),
                })
                .map_err(|e| fail("failureLimit", e)),
        },
    );
    let limit = |key: &str, value: &Option<IntegerSpec>, default: u32| match value {
        None => Ok(default),
        Some(n) => integer_field(n, args, 0)
            .map(|n| n.map_or(default, whole))
            .map_err(|e| fail(key, e)),
    };
    let inconclusive_limit = noted(
        &mut problems,
        limit("inconclusiveLimit", &spec.inconclusive_limit, 0),
    );
    let consecutive_error_limit = noted(
        &mut problems,
        limit(
            "consecutiveErrorLimit",
            &spec.consecutive_error_limit,
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
        ),
    );
    let provider = match (&spec.provider.prometheus, &spec.provider.web) {
        (Some(p), None) => prometheus_provider(p, args, &mut problems),
        (None, Some(w)) => web_provider(w, args, &mut problems),
        (Some(_), Some(_)) => {
            problems.push(fail(
                "provider",
                "`prometheus` and `web` are both set; a metric has one provider".to_owned(),
            ));
            None
        }
        (None, None) => {
            problems.push(fail(
                "provider",
                "no provider; set `prometheus: {address, query}` or `web: {url}`".to_owned(),
            ));
            None
        }
    };
    let (
        Some(interval),
        Some(initial_delay),
        Some(count),
        Some(success_condition),
        Some(failure_condition),
        Some(failure_limit),
        Some(inconclusive_limit),
        Some(consecutive_error_limit),
        Some(provider),
    ) = (
        interval,
        initial_delay,
        count,
        success_condition,
        failure_condition,
        failure_limit,
        inconclusive_limit,
        consecutive_error_limit,
        provider,
    )
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Metric {
        template: Arc::from(template),
        name: Arc::from(spec.name.as_str()),
        interval: interval.flatten(),
        initial_delay,
        count,
        success_condition,
        failure_condition,
        failure_limit,
        inconclusive_limit,
        consecutive_error_limit,
        dry_run: spec.dry_run.unwrap_or(false),
        provider,
    })
}

/// The value of `result`, or `None` with its problem added to `problems`.
fn noted<T>(
    problems: &mut Vec<(String, String)>,
    result: Result<T, (String, String)>,
) -> Option<T> {
    result.map_err(|problem| problems.push(problem)).ok()
}

/// The URL field `text` at `key` with `args` in place, an http:// or
/// https:// URL; `None` with its problem added to `problems`.
fn url_field(
    text: &str,
    args: &Args<'_>,
    key: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<String> {
    noted(
        problems,
        args.field(text)
            .and_then(|field| field.http_url())
            .map_err(|why| (key.to_owned(), why)),
    )
}

/// A metric's Prometheus provider with `args` in place; `None` with its
/// problems added to `problems`.
fn prometheus_provider(
    p: &PrometheusProviderSpec,
    args: &Args<'_>,
    problems: &mut Vec<(String, String)>,
) -> Option<Provider> {
    let fail = |key: &str, why: String| (key.to_owned(), why);
    let address = url_field(&p.address, args, "provider.prometheus.address", problems);
    let query = noted(
        problems,
        args.field(&p.query)
            .map_err(|e| fail("provider.prometheus.query", e))
            .and_then(|field| {
                if field.resolved.trim().is_empty() {
                    Err(fail(
                        "provider.prometheus.query",
                        "the query is empty; write a PromQL query".to_owned(),
                    ))
                } else {
                    Ok(field.resolved)
                }
            }),
    );
    let timeout = noted(
        problems,
        match p.timeout {
            None => Ok(DEFAULT_PROMETHEUS_TIMEOUT),
            Some(0) => Err(fail(
                "provider.prometheus.timeout",
                "`timeout` is 0 seconds; it must be at least 1, e.g. `30`".to_owned(),
            )),
            Some(s) => Ok(Duration::from_secs(s)),
        },
    );
    let headers = headers("provider.prometheus", &p.headers, args, problems);
    let basic_auth = match p.authentication.as_ref().and_then(|a| a.basic.as_ref()) {
        None => Some(None),
        Some(basic) => {
            let at = "provider.prometheus.authentication.basic";
            let mut part = |key: &str, text: &str| {
                noted(
                    problems,
                    args.field(text)
                        .map(|field| field.resolved)
                        .map_err(|why| (format!("{at}.{key}"), why)),
                )
            };
            let username = part("username", &basic.username);
            let password = part("password", &basic.password);
            Some(Some((username?, password?)))
        }
    };
    Some(Provider::Prometheus(PrometheusQuery {
        address: address?.trim_end_matches('/').to_owned(),
        query: query?.trim().to_owned(),
        timeout: timeout?,
        headers: headers?,
        basic_auth: basic_auth?,
        insecure: p.insecure.unwrap_or(false),
    }))
}

/// A metric's web provider with `args` in place; `None` with its problems
/// added to `problems`.
fn web_provider(
    w: &WebProviderSpec,
    args: &Args<'_>,
    problems: &mut Vec<(String, String)>,
) -> Option<Provider> {
    let fail = |key: &str, why: String| (key.to_owned(), why);
    let url = url_field(&w.url, args, "provider.web.url", problems);
    let method = noted(
        problems,
        match &w.method {
            None => Ok("GET".to_owned()),
            Some(m) => args
                .field(m)
                .map_err(|e| fail("provider.web.method", e))
                .and_then(|field| {
                    let method = field.resolved.trim().to_ascii_uppercase();
                    if field.pending.is_none() && !matches!(method.as_str(), "GET" | "POST" | "PUT")
                    {
                        Err(fail(
                            "provider.web.method",
                            field.resolved_from(format!(
                                "method `{method}` is not supported; write GET, POST or PUT"
                            )),
                        ))
                    } else {
                        Ok(method)
                    }
                }),
        },
    );
    let both_bodies = w.body.is_some() && w.json_body.is_some();
    if both_bodies {
        problems.push(fail(
            "provider.web.jsonBody",
            "`body` and `jsonBody` are both set; keep one".to_owned(),
        ));
    }
    let json_path = noted(
        problems,
        match &w.json_path {
            None => Ok(None),
            Some(p) => args
                .field(p)
                .map_err(|e| fail("provider.web.jsonPath", e))
                .and_then(|field| {
                    if field.pending.is_some() {
                        Ok(None)
                    } else {
                        JsonPath::parse(&field.resolved)
                            .map(Some)
                            .map_err(|e| fail("provider.web.jsonPath", field.resolved_from(e)))
                    }
                }),
        },
    );
    let body = noted(
        problems,
        match (&w.body, &w.json_body) {
            (Some(b), _) => args
                .field(b)
                .map(|field| Some(field.resolved))
                .map_err(|e| fail("provider.web.body", e)),
            (None, Some(j)) => args
                .field(&j.to_string())
                .map(|field| Some(field.resolved))
                .map_err(|e| fail("provider.web.jsonBody", e)),
            (None, None) => Ok(None),
        },
    );
    let timeout = noted(
        problems,
        match w.timeout_seconds {
            None => Ok(DEFAULT_WEB_TIMEOUT),
            Some(0) => Err(fail(
                "provider.web.timeoutSeconds",
                "`timeoutSeconds` is 0; it must be at least 1, e.g. `10`".to_owned(),
            )),
            Some(s) => Ok(Duration::from_secs(s)),
        },
    );
    let headers = headers("provider.web", &w.headers, args, problems);
    if both_bodies {
        return None;
    }
    Some(Provider::Web(WebRequest {
        url: url?,
        method: method?,
        headers: headers?,
        body: body?,
        json_body: w.json_body.is_some(),
        json_path: json_path?,
        timeout: timeout?,
        insecure: w.insecure.unwrap_or(false),
    }))
}
