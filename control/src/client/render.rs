//! Text for people: the `weir status` blocks, the `--watch` frame, and the
//! one-line results of commands.
//!
//! Pure functions of the API's answers and the current time (milliseconds
//! since the UNIX epoch, passed in), so they are tested without a server or a
//! clock. Lines fit in [`WIDTH`] columns; long messages wrap.

use std::fmt::Write as _;

use super::api::{Analysis, Phase, PromoteAll, RoleStats, RouteStatus, Step};

/// The terminal width the views are laid out for.
pub const WIDTH: usize = 80;

/// Width of the labels of `weir status` blocks (`revisions  `).
const TEXT_LABEL: usize = 11;
/// Width of the labels of the watch view (`Canary weight: `).
const WATCH_LABEL: usize = 15;

/// Where a step stands in the rollout, for the watch view's marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMark {
    /// Already run (`✔`).
    Done,
    /// Running now (`▶`).
    Current,
    /// Still to come (`○`).
    Pending,
}

// === impl StepMark ===

impl StepMark {
    /// Where step `index` (0-based) of `route` stands: before `stepIndex` is
    /// done, `stepIndex` itself is current, the rest pending; once promoted,
    /// every step is done.
    pub fn of(route: &RouteStatus, index: usize) -> StepMark {
        if route.phase == Phase::Promoted {
            return StepMark::Done;
        }
        match route.step_index {
            Some(current) if index < current => StepMark::Done,
            Some(current) if index == current => StepMark::Current,
            _ => StepMark::Pending,
        }
    }

    /// The mark printed before the step.
    pub fn symbol(self) -> char {
        match self {
            StepMark::Done => '✔',
            StepMark::Current => '▶',
            StepMark::Pending => '○',
        }
    }
}

// === weights, times, steps ===

/// A weight in percent with at most four decimals and no trailing zeros:
/// `25%`, `0.0001%`, `12.5%`.
pub fn percent(weight: f64) -> String {
    let text = format!("{weight:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A step as the config spells it: `setWeight 25`, `pause 30s`,
/// `pause (until promote)`, `analysis errors, smoke`; a step of another
/// kind as its JSON.
pub fn step_text(step: &Step) -> String {
    match step {
        Step::SetWeight(weight) => format!("setWeight {}", percent(*weight).trim_end_matches('%')),
        Step::Pause {
            duration: Some(duration),
        } => format!("pause {duration}"),
        Step::Pause { duration: None } => "pause (until promote)".to_owned(),
        Step::Other(json) => analysis_step_text(json).unwrap_or_else(|| json.clone()),
    }
}

/// `analysis NAME, NAME` for an analysis step's JSON that names its
/// templates (`{"analysis": {"templates": [{"templateName": ...}]}}`).
fn analysis_step_text(json: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let names: Vec<&str> = value
        .get("analysis")?
        .get("templates")?
        .as_array()?
        .iter()
        .map(|t| t.get("templateName").and_then(serde_json::Value::as_str))
        .collect::<Option<_>>()?;
    (!names.is_empty()).then(|| format!("analysis {}", names.join(", ")))
}

/// A route with neither a canary revision nor canary traffic: no split.
fn has_no_canary(route: &RouteStatus) -> bool {
    route.canary_revision.is_none() && route.canary_weight == 0.0
}

/// `step 3/5` (1-based) for a route with a rollout; `step 5/5` once promoted;
/// `None` without a rollout or steps.
pub fn step_label(route: &RouteStatus) -> Option<String> {
    let index = route.step_index?;
    let count = route.step_count;
    if count == 0 {
        return None;
    }
    let current = if route.phase == Phase::Promoted || index >= count {
        count
    } else {
        index + 1
    };
    Some(format!("step {current}/{count}"))
}

/// A length of time left, rounded up to the second: `12s`, `4m05s`, `1h02m`.
pub fn duration_text(millis: u64) -> String {
    let seconds = millis.div_ceil(1000);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// The time of day in UTC, `HH:MM:SS UTC`.
pub fn clock(now_ms: u64) -> String {
    let seconds = now_ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// What is left of a timed pause: `12s left`, or `due` once the deadline has
/// passed; `None` when no timed pause runs.
pub fn pause_left(route: &RouteStatus, now_ms: u64) -> Option<String> {
    let deadline = route.pause_deadline_ms?;
    Some(match deadline.checked_sub(now_ms) {
        Some(left) if left > 0 => format!("{} left", duration_text(left)),
        _ => "due".to_owned(),
    })
}

/// The warning for a promoted rollout whose config still names the old
/// stable revision.
pub fn config_behind_text(route: &RouteStatus) -> String {
    let revision = route
        .promoted_revision
        .as_deref()
        .or(route.canary_revision.as_deref())
        .unwrap_or("the promoted revision");
    format!("config is behind: set stable.revision to {revision}")
}

// === one-line results ===

/// The line a route command prints on success:
/// `checkout: Paused at step 2/5, canary 5%: <message>`.
pub fn command_line(route: &RouteStatus) -> String {
    let mut line = format!("{}: {}", route.name, phase_label(route));
    if let Some(step) = step_label(route) {
        let _ = write!(line, " at {step}");
    }
    let _ = write!(line, ", canary {}", percent(route.canary_weight));
    if !route.message.is_empty() {
        let _ = write!(line, ": {}", route.message);
    }
    // Loud, unless the message already says so.
    if route.config_behind && !route.message.contains("config is behind") {
        let _ = write!(line, " (WARNING: {})", config_behind_text(route));
    }
    if let Some(pending) = &route.pending_command {
        let _ = write!(line, " (pending: {pending})");
    }
    line
}

/// For a CanaryRoute (a name with `/`, or a status naming a leader or a
/// coverage): `leader weir-0, counters from 3/3 replicas`; `no leader` while
/// none leads; the counters part only when the coverage is known. `None`
/// for a file route.
pub fn cluster_text(route: &RouteStatus) -> Option<String> {
    let is_cluster_route =
        route.name.contains('/') || route.leader.is_some() || route.coverage.is_some();
    if !is_cluster_route {
        return None;
    }
    let mut text = match &route.leader {
        Some(leader) => format!("leader {leader}"),
        None => "no leader".to_owned(),
    };
    if let Some(coverage) = &route.coverage {
        let _ = write!(text, ", counters from {coverage} replicas");
    }
    Some(text)
}

/// The line `weir promote --all` prints on success, with a line per
/// CanaryRoute whose promotion the leader has not carried out yet.
pub fn promote_all_line(answer: &PromoteAll) -> String {
    let pending: Vec<&RouteStatus> = answer
        .routes
        .iter()
        .filter(|r| r.pending_command.is_some())
        .collect();
    let mut lines = Vec::new();
    if !answer.promoted.is_empty() {
        lines.push(format!(
            "promoted {} route(s): {}",
            answer.promoted.len(),
            answer.promoted.join(", ")
        ));
    } else if pending.is_empty() {
        lines.push("no route is Paused: nothing promoted".to_owned());
    }
    let mut text = lines.join("\n");
    for route in pending {
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = write!(
            text,
            "{}: pending: {}",
            route.name,
            route.pending_command.as_deref().unwrap_or_default()
        );
    }
    text
}

// === weir status ===

/// `weir status`: one block per route, separated by blank lines.
pub fn routes_text(routes: &[RouteStatus], now_ms: u64) -> String {
    if routes.is_empty() {
        return "no routes\n".to_owned();
    }
    let blocks: Vec<String> = routes.iter().map(|r| route_text(r, now_ms)).collect();
    blocks.join("\n")
}

/// `weir status ROUTE`: a headline (name, phase, step, canary weight), then
/// revisions, the current step, the message and the analysis.
pub fn route_text(route: &RouteStatus, now_ms: u64) -> String {
    let mut out = String::new();
    let step = match (stage_text(route), step_label(route)) {
        (Some(stage), _) => stage,
        (None, Some(step)) => step,
        (None, None) if route.strategy => "no rollout".to_owned(),
        (None, None) if has_no_canary(route) => "no canary".to_owned(),
        (None, None) => "fixed split".to_owned(),
    };
    let _ = writeln!(
        out,
        "{}  {}  {}  canary {}",
        route.name,
        phase_label(route),
        step,
        percent(route.canary_weight)
    );
    if route.config_behind {
        let _ = writeln!(out, "  ⚠ WARNING: {}", config_behind_text(route));
    }
    field(&mut out, 2, TEXT_LABEL, "revisions", &revisions_text(route));
    if let Some(preview) = preview_text(route) {
        field(&mut out, 2, TEXT_LABEL, "preview", &preview);
    }
    if let Some(cluster) = cluster_text(route) {
        field(&mut out, 2, TEXT_LABEL, "cluster", &cluster);
    }
    if let Some(pending) = &route.pending_command {
        field(&mut out, 2, TEXT_LABEL, "pending", pending);
    }
    if let Some(current) = current_step_text(route, now_ms) {
        field(&mut out, 2, TEXT_LABEL, "step", &current);
    }
    if !route.message.is_empty() {
        field(&mut out, 2, TEXT_LABEL, "message", &route.message);
    }
    if let Some(analysis) = &route.analysis {
        field(
            &mut out,
            2,
            TEXT_LABEL,
            "analysis",
            &format!("last {}", seconds_text(analysis.window_seconds)),
        );
        analysis_table(&mut out, 4, analysis);
        field(&mut out, 2, TEXT_LABEL, "verdict", &verdict_text(analysis));
    }
    for hook in &route.webhooks {
        field(&mut out, 2, TEXT_LABEL, "webhook", &webhook_text(hook));
    }
    out
}

/// One webhook and its last call: `load-test (pre-rollout, waited on):
/// fail after 3 attempts: HTTP 503: not ready`.
pub fn webhook_text(hook: &weir_config::status::WebhookStatus) -> String {
    let waiting = if hook.waiting { ", waited on" } else { "" };
    let last = match &hook.last_result {
        None => "not called yet".to_owned(),
        Some(result) => {
            let attempts = if hook.attempts > 1 {
                format!(" after {} attempts", hook.attempts)
            } else {
                String::new()
            };
            format!("{result}{attempts}: {}", hook.message)
        }
    };
    format!("{} ({}{waiting}): {last}", hook.name, hook.kind)
}

/// The most recent analysis template runs shown by `weir status ROUTE`.
const SHOWN_RUNS: usize = 3;

/// `weir status ROUTE`'s lines about analysis template runs (the answer of
/// `GET /api/v1/routes/{name}/analysisruns`): the latest runs, each with
/// its phase and message, and per metric its counts and last measurement.
/// Empty without runs.
pub fn analysis_runs_text(runs: &serde_json::Value) -> String {
    let Some(runs) = runs.as_array().filter(|r| !r.is_empty()) else {
        return String::new();
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let mut out = String::new();
    field(&mut out, 2, TEXT_LABEL, "runs", "analysis templates");
    for run in runs.iter().skip(runs.len().saturating_sub(SHOWN_RUNS)) {
        let templates: Vec<String> = run["templates"]
            .as_array()
            .map(|t| t.iter().map(text).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {} ({}): {}: {}",
            text(&run["name"]),
            templates.join(", "),
            text(&run["phase"]),
            text(&run["message"])
        );
        for metric in run["metrics"].as_array().into_iter().flatten() {
            let last = metric["measurements"]
                .as_array()
                .and_then(|m| m.last())
                .map(|m| match (&m["value"], m["message"].as_str()) {
                    (_, Some(message)) => format!("; last: {message}"),
                    (serde_json::Value::Null, None) => String::new(),
                    (value, None) => format!("; last value {value}"),
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      {}: {}, {} successful, {} failed, {} inconclusive, {} errors{last}",
                text(&metric["name"]),
                text(&metric["phase"]),
                metric["successful"],
                metric["failed"],
                metric["inconclusive"],
                metric["error"],
            );
        }
    }
    out
}

// === weir status --watch ===

/// The first line of a watch frame: what is watched, where, and when.
pub fn watch_header(admin: &str, route: Option<&str>, now_ms: u64) -> String {
    let target = route.map(|r| format!(" {r}")).unwrap_or_default();
    format!(
        "weir status{target} · {admin} · {} · Ctrl-C to stop",
        clock(now_ms)
    )
}

/// A watch frame from a fresh answer: the header, then [`watch_route`] for
/// each route.
pub fn watch_frame(header: &str, routes: &[RouteStatus], now_ms: u64) -> String {
    let mut out = format!("{header}\n\n");
    out.push_str(&watch_routes(routes, now_ms));
    out
}

/// A watch frame when the last request failed: the header, the error, and
/// the last good answer (fetched at `last_ms`) if there is one.
pub fn watch_error_frame(
    header: &str,
    error: &str,
    last: Option<(&[RouteStatus], u64)>,
    now_ms: u64,
) -> String {
    let mut out = format!("{header}\n\n");
    let mut problem = String::new();
    field(
        &mut problem,
        0,
        2,
        "⚠",
        &format!("{error} (retrying every second)"),
    );
    out.push_str(&problem);
    if let Some((routes, last_ms)) = last {
        let _ = writeln!(
            out,
            "\nlast answer at {} ({} ago):\n",
            clock(last_ms),
            duration_text(now_ms.saturating_sub(last_ms))
        );
        out.push_str(&watch_routes(routes, now_ms));
    }
    out
}

/// One route in the watch view, like `kubectl argo rollouts get rollout`:
/// fields, then every step marked done `✔`, current `▶` or pending `○`, then
/// the analysis.
pub fn watch_route(route: &RouteStatus, now_ms: u64) -> String {
    let mut out = String::new();
    field(&mut out, 0, WATCH_LABEL, "Name:", &route.name);
    field(
        &mut out,
        0,
        WATCH_LABEL,
        "Phase:",
        &format!("{} {}", phase_symbol(&route.phase), phase_label(route)),
    );
    let strategy = if route.blue_green.is_some() {
        "blue-green".to_owned()
    } else if route.strategy {
        format!("canary, {} step(s)", route.step_count)
    } else if has_no_canary(route) {
        "none (no canary)".to_owned()
    } else {
        "fixed split".to_owned()
    };
    field(&mut out, 0, WATCH_LABEL, "Strategy:", &strategy);
    if let Some(stage) = stage_text(route) {
        field(
            &mut out,
            0,
            WATCH_LABEL,
            "Stage:",
            stage.trim_start_matches("blue-green "),
        );
    }
    if let Some(preview) = preview_text(route) {
        field(&mut out, 0, WATCH_LABEL, "Preview:", &preview);
    }
    if let Some(step) = step_label(route) {
        field(
            &mut out,
            0,
            WATCH_LABEL,
            "Step:",
            step.trim_start_matches("step "),
        );
    }
    field(
        &mut out,
        0,
        WATCH_LABEL,
        "Canary weight:",
        &percent(route.canary_weight),
    );
    field(
        &mut out,
        0,
        WATCH_LABEL,
        "Revisions:",
        &revisions_text(route),
    );
    if let Some(cluster) = cluster_text(route) {
        field(&mut out, 0, WATCH_LABEL, "Cluster:", &cluster);
    }
    if route.config_behind {
        field(
            &mut out,
            0,
            WATCH_LABEL,
            "⚠ WARNING:",
            &config_behind_text(route),
        );
    }
    if !route.message.is_empty() {
        field(&mut out, 0, WATCH_LABEL, "Message:", &route.message);
    }
    if !route.steps.is_empty() {
        out.push_str("\nSteps:\n");
        for (index, step) in route.steps.iter().enumerate() {
            let mark = StepMark::of(route, index);
            let mut line = format!("  {} {}. {}", mark.symbol(), index + 1, step_text(step));
            if mark == StepMark::Current {
                if let Some(note) = current_note(route, step, now_ms) {
                    let _ = write!(line, "   ({note})");
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    if let Some(analysis) = &route.analysis {
        let _ = writeln!(
            out,
            "\nAnalysis (last {}):",
            seconds_text(analysis.window_seconds)
        );
        analysis_table(&mut out, 2, analysis);
        field(
            &mut out,
            0,
            WATCH_LABEL,
            "Verdict:",
            &verdict_text(analysis),
        );
    }
    if !route.webhooks.is_empty() {
        out.push_str("\nWebhooks:\n");
        for hook in &route.webhooks {
            let _ = writeln!(out, "  {}", webhook_text(hook));
        }
    }
    out
}

// === JSON ===

/// Re-indents a JSON document with two spaces, keeping its keys, their
/// order and its numbers exactly as sent. The input must be valid JSON
/// (checked by the caller); nothing is re-encoded.
pub fn pretty_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    // An empty object or array stays on one line.
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

// === helpers ===

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// `blue-green AwaitingPromotion` for a blue-green route; `None` otherwise.
pub fn stage_text(route: &RouteStatus) -> Option<String> {
    let bg = route.blue_green.as_ref()?;
    Some(match bg.stage {
        Some(stage) => format!("blue-green {stage}"),
        None => "blue-green (unknown stage)".to_owned(),
    })
}

/// A blue-green route's preview: `hosts preview.shop.example.com, header
/// x-weir-preview: 1 (live)`; `None` for other routes.
pub fn preview_text(route: &RouteStatus) -> Option<String> {
    let bg = route.blue_green.as_ref()?;
    let mut parts = Vec::new();
    if !bg.preview_hosts.is_empty() {
        parts.push(format!("hosts {}", bg.preview_hosts.join(", ")));
    }
    if let Some(header) = &bg.preview_header {
        parts.push(format!("header {}: {}", header.name, header.value));
    }
    let live = if bg.preview_live {
        "live: preview requests go to the new revision"
    } else {
        "not live: preview requests follow the weight"
    };
    Some(format!("{} ({live})", parts.join(", ")))
}

/// The phase, with `(held)` when an operator holds the timer.
fn phase_label(route: &RouteStatus) -> String {
    if route.held {
        format!("{} (held)", route.phase)
    } else {
        route.phase.to_string()
    }
}

fn phase_symbol(phase: &Phase) -> char {
    match phase {
        Phase::Healthy | Phase::Promoted => '✔',
        Phase::Progressing => '◌',
        Phase::Paused => '‖',
        Phase::Aborted => '✖',
        Phase::Unknown => '?',
    }
}

fn revisions_text(route: &RouteStatus) -> String {
    let name = |revision: &Option<String>| revision.clone().unwrap_or_else(|| "-".to_owned());
    format!(
        "stable {} → canary {}",
        name(&route.stable_revision),
        name(&route.canary_revision)
    )
}

/// The current step with its note, for `weir status`: `pause 30s (12s left)`.
fn current_step_text(route: &RouteStatus, now_ms: u64) -> Option<String> {
    if route.phase == Phase::Promoted {
        return None;
    }
    let step = route.steps.get(route.step_index?)?;
    let mut text = step_text(step);
    if let Some(note) = current_note(route, step, now_ms) {
        let _ = write!(text, " ({note})");
    }
    Some(text)
}

/// What to say next to the current step: time left of a timed pause, held,
/// aborted.
fn current_note(route: &RouteStatus, step: &Step, now_ms: u64) -> Option<String> {
    let mut notes = Vec::new();
    if route.phase == Phase::Aborted {
        notes.push("aborted".to_owned());
    }
    if route.held {
        notes.push("held".to_owned());
    }
    if matches!(step, Step::Pause { duration: Some(_) }) {
        if let Some(left) = pause_left(route, now_ms) {
            notes.push(left);
        }
    }
    (!notes.is_empty()).then(|| notes.join(", "))
}

/// A window length: whole seconds from 10 s on, else one decimal (`8.4s`).
fn seconds_text(seconds: f64) -> String {
    let text = if seconds >= 10.0 {
        format!("{seconds:.0}")
    } else {
        format!("{seconds:.1}")
    };
    format!("{}s", text.trim_end_matches(".0"))
}

fn verdict_text(analysis: &Analysis) -> String {
    let mut text = format!(
        "{} (failures {})",
        analysis.verdict.as_deref().unwrap_or("none yet"),
        analysis.failures
    );
    if let Some(reason) = analysis.reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = write!(text, ": {reason}");
    }
    text
}

/// The per-role table: request rate, counts, error rate and p99.
fn analysis_table(out: &mut String, indent: usize, analysis: &Analysis) {
    let _ = writeln!(
        out,
        "{:indent$}{:<8}{:>9}{:>10}{:>8}{:>10}{:>12}",
        "", "role", "req/s", "requests", "errors", "err rate", "p99"
    );
    for (role, stats) in [("stable", &analysis.stable), ("canary", &analysis.canary)] {
        let stats = stats.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:indent$}{:<8}{:>9}{:>10}{:>8}{:>10}{:>12}",
            "",
            role,
            rate_text(&stats, analysis.window_seconds),
            stats.requests,
            stats.errors,
            stats
                .error_rate
                .map_or_else(|| "-".to_owned(), |rate| format!("{:.2}%", rate * 100.0)),
            stats
                .latency_p99_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
        );
    }
}

fn rate_text(stats: &RoleStats, window_seconds: f64) -> String {
    if window_seconds > 0.0 {
        format!("{:.1}", stats.requests as f64 / window_seconds)
    } else {
        "-".to_owned()
    }
}

/// Writes `label value`, the value word-wrapped to the rest of the line and
/// continuation lines indented under it.
fn field(out: &mut String, indent: usize, label_width: usize, label: &str, value: &str) {
    let width = WIDTH.saturating_sub(indent + label_width).max(20);
    for (i, line) in wrap(value, width).iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        let label_width = label_width.max(label.chars().count() + 1);
        let _ = writeln!(out, "{:indent$}{label:<label_width$}{line}", "");
    }
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn watch_routes(routes: &[RouteStatus], now_ms: u64) -> String {
    if routes.is_empty() {
        return "no routes\n".to_owned();
    }
    let blocks: Vec<String> = routes.iter().map(|r| watch_route(r, now_ms)).collect();
    blocks.join(&format!("\n{}\n\n", "─".repeat(WIDTH / 2)))
}
