//! `report.json`: the shapes it is made of, and how the runner's raw
//! observations (`RunData`) become one.
//!
//! Every time `t` is in seconds from the start of the load. The per-second
//! series count requests by their scheduled send time; a request that got
//! no response at all is in `failed`, not under any upstream.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check;
use super::observe::{Recorded, Response};
use super::scenario::{ActionKind, Scenario};
use crate::upstream::Stats;

/// The whole report, as written to `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentReport {
    /// The scenario's name.
    pub scenario: String,
    /// When the load started, RFC 3339 in UTC.
    pub started_at: String,
    /// The `--speed` factor the scenario was run at.
    pub speed: f64,
    /// How long the load ran, in seconds.
    pub duration_seconds: f64,
    /// True when every expectation held and every timeline action took.
    pub passed: bool,
    /// The timeline actions that did not take (a command weir refused, a
    /// config that could not be written), as their event lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_actions: Vec<String>,
    /// The weir process.
    pub weir: WeirInfo,
    /// The fake upstreams.
    pub upstreams: Vec<UpstreamInfo>,
    /// The load as configured.
    pub load: LoadInfo,
    /// One point per second of the load.
    pub seconds: Vec<SecondPoint>,
    /// The admin API's route statuses, as sampled.
    pub samples: Vec<RouteSample>,
    /// Timeline actions and the rollout changes seen, in time order.
    pub events: Vec<Event>,
    /// One result per expectation, in the scenario's order.
    pub expectations: Vec<ExpectationResult>,
    /// The headline figures.
    pub summary: Summary,
}

/// How weir ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeirInfo {
    /// The binary.
    pub binary: String,
    /// Its public listener.
    pub listen: String,
    /// Its admin API.
    pub admin: String,
    /// How it ended.
    pub stopped: String,
}

/// One fake upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamInfo {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
}

/// The load as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadInfo {
    /// Requests per second.
    pub rate: f64,
    /// Simulated users with cookie jars.
    pub users: Option<usize>,
    /// The request path.
    pub path: String,
}

/// One second of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondPoint {
    /// The second, from the start of the load.
    pub t: u64,
    /// Responses by `x-upstream-name` (`-` for answers weir made itself).
    pub upstreams: BTreeMap<String, UpstreamSecond>,
    /// Requests that got no response.
    pub failed: u64,
}

/// One upstream's responses in one second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSecond {
    /// Responses.
    pub requests: u64,
    /// Of those, 5xx.
    pub errors: u64,
    /// Median latency from the scheduled send time, ms; `None` without
    /// responses.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
}

/// One route's status at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSample {
    /// When it was taken.
    pub t: f64,
    /// The route.
    pub route: String,
    /// The phase.
    pub phase: String,
    /// The 0-based step index, `None` without a rollout.
    pub step: Option<u64>,
    /// How many steps the strategy has.
    pub step_count: u64,
    /// The canary weight, percent.
    pub weight: f64,
    /// The canary revision.
    pub canary_revision: Option<String>,
    /// The stable revision.
    pub stable_revision: Option<String>,
    /// The blue-green stage of a blue-green route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// When, seconds from the start of the load.
    pub t: f64,
    /// What kind of thing.
    pub kind: EventKind,
    /// The route it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The timeline index of an action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<usize>,
    /// The value before a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The value after a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
    /// The canary revision an abort concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// A line for people.
    pub text: String,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A timeline action rewrote weir's config.
    Config,
    /// A timeline action changed an upstream's faults.
    Fault,
    /// A timeline action sent a rollout command.
    Command,
    /// A route's phase changed (or was first seen).
    Phase,
    /// A route's step index changed.
    Step,
    /// A route's canary weight changed.
    Weight,
    /// A route's canary revision changed.
    Revision,
    /// A route's rollout was aborted.
    Abort,
    /// Something about the weir process itself.
    Weir,
    /// A blue-green route's stage changed.
    Stage,
    /// The built-in smoke tester ran a test.
    Smoke,
    /// Something about the scenario's Prometheus.
    Prometheus,
}

/// The outcome of one expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectationResult {
    /// Index in the scenario's `expect`.
    pub index: usize,
    /// Its key, e.g. `abortedWithin`.
    pub kind: String,
    /// What was expected.
    pub expected: String,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind the verdict.
    pub detail: String,
}

/// The headline figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Requests scheduled.
    pub requests: u64,
    /// Of those, without any response.
    pub failed: u64,
    /// Per upstream (and `-`): what reached it and what came back from it.
    pub upstreams: BTreeMap<String, UpstreamTotals>,
    /// One entry per abort seen.
    pub aborts: Vec<AbortSummary>,
}

/// One upstream's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTotals {
    /// Requests that reached it, by its own count (`None` for `-`).
    pub received: Option<u64>,
    /// Of those, answered 500 by an injected fault.
    pub received_errors: Option<u64>,
    /// Responses from it that the load generator got.
    pub responses: u64,
    /// Of those, 5xx.
    pub errors: u64,
}

/// How fast one abort happened and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortSummary {
    /// The route.
    pub route: String,
    /// The canary revision that was aborted.
    pub revision: Option<String>,
    /// The upstream that served it, found from the config's endpoints.
    pub upstream: Option<String>,
    /// When the abort was first seen in a sample.
    pub aborted_at: f64,
    /// When weight 0 was first seen.
    pub weight_zero_at: f64,
    /// The timeline fault on that upstream that preceded the abort.
    pub fault_action: Option<usize>,
    /// When that fault was applied.
    pub fault_at: Option<f64>,
    /// The first failing response of the upstream after the fault (or
    /// after the rollout began, without a fault); the fault time when none
    /// came back.
    pub first_failure_at: f64,
    /// What `firstFailureAt` is: `first5xx`, `fault` or `rolloutStart`.
    pub first_failure_from: String,
    /// `weightZeroAt - firstFailureAt`.
    pub seconds_to_weight_zero: f64,
    /// Responses from the upstream that came from the fault (or the
    /// rollout's start) on: what the bad canary cost.
    pub canary_requests: u64,
    /// Of those, 5xx.
    pub canary_errors: u64,
    /// What weir said about the abort.
    pub reason: String,
}

/// Everything the runner observed, from which the report is made.
#[derive(Debug, Clone)]
pub(crate) struct RunData {
    pub(crate) scenario: Scenario,
    pub(crate) speed: f64,
    pub(crate) started_at: String,
    pub(crate) weir: WeirInfo,
    pub(crate) upstreams: Vec<UpstreamInfo>,
    pub(crate) recorded: Recorded,
    pub(crate) samples: Vec<Sample>,
    pub(crate) events: Vec<Event>,
    /// When each timeline action was applied (`None`: never).
    pub(crate) actions: Vec<Option<f64>>,
    /// The timeline actions that did not take (a command weir refused, a
    /// config that could not be written): their event lines.
    pub(crate) failed_actions: Vec<String>,
    /// The config texts in force, each from when it was written.
    pub(crate) configs: Vec<(f64, String)>,
    /// The variables weir's config could use.
    pub(crate) env: BTreeMap<String, String>,
    /// The upstreams' own counters at the end, in scenario order.
    pub(crate) upstream_stats: Vec<Stats>,
    /// Requests the generator scheduled.
    pub(crate) scheduled: u64,
}

/// One sample of the admin API and the upstreams' counters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) t: f64,
    pub(crate) routes: Vec<RouteState>,
    /// Requests received by each upstream, in scenario order.
    pub(crate) received: Vec<u64>,
}

/// One route's status, as read from `GET /api/v1/routes`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RouteState {
    pub(crate) name: String,
    pub(crate) phase: String,
    pub(crate) step: Option<u64>,
    pub(crate) step_count: u64,
    pub(crate) weight: f64,
    pub(crate) canary_revision: Option<String>,
    pub(crate) stable_revision: Option<String>,
    pub(crate) message: String,
    pub(crate) reason: Option<String>,
    /// `blueGreen.stage` of a blue-green route.
    pub(crate) stage: Option<String>,
}

/// Builds the report; the expectations are checked here.
pub(crate) fn build(run: &RunData) -> ExperimentReport {
    let aborts = aborts(run);
    let expectations = check::evaluate(run, &aborts);
    let passed = expectations.iter().all(|e| e.passed) && run.failed_actions.is_empty();
    let mut upstreams = BTreeMap::new();
    for (i, name) in run.recorded.names.iter().enumerate() {
        let (responses, errors) = run
            .recorded
            .responses
            .iter()
            .filter(|r| usize::from(r.upstream) == i)
            .fold((0, 0), |(n, e), r| (n + 1, e + u64::from(r.is_error())));
        let own = run.upstream_stats.iter().find(|s| &s.name == name);
        if own.is_none() && responses == 0 {
            continue;
        }
        upstreams.insert(
            name.clone(),
            UpstreamTotals {
                received: own.map(|s| s.requests),
                received_errors: own.map(|s| s.errors),
                responses,
                errors,
            },
        );
    }
    ExperimentReport {
        scenario: run.scenario.name.clone(),
        started_at: run.started_at.clone(),
        speed: run.speed,
        duration_seconds: run.scenario.duration.secs(),
        passed,
        failed_actions: run.failed_actions.clone(),
        weir: run.weir.clone(),
        upstreams: run.upstreams.clone(),
        load: LoadInfo {
            rate: run.scenario.load.rate,
            users: run.scenario.load.users,
            path: run.scenario.load.path.clone(),
        },
        seconds: seconds(run),
        samples: run
            .samples
            .iter()
            .flat_map(|s| {
                s.routes.iter().map(|r| RouteSample {
                    t: s.t,
                    route: r.name.clone(),
                    phase: r.phase.clone(),
                    step: r.step,
                    step_count: r.step_count,
                    weight: r.weight,
                    canary_revision: r.canary_revision.clone(),
                    stable_revision: r.stable_revision.clone(),
                    stage: r.stage.clone(),
                })
            })
            .collect(),
        events: run.events.clone(),
        expectations,
        summary: Summary {
            requests: run.scheduled,
            failed: run.recorded.failures.len() as u64,
            upstreams,
            aborts,
        },
    }
}

/// Seconds rounded to the millisecond, for the JSON.
pub(crate) fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

fn seconds(run: &RunData) -> Vec<SecondPoint> {
    let count = run.scenario.duration.secs().ceil() as usize;
    let names = &run.recorded.names;
    // latencies[second][upstream], µs.
    let mut latencies = vec![vec![Vec::<u32>::new(); names.len()]; count];
    let mut errors = vec![vec![0u64; names.len()]; count];
    for r in &run.recorded.responses {
        let s = (r.scheduled_us / 1_000_000) as usize;
        let u = usize::from(r.upstream);
        if s < count && u < names.len() {
            latencies[s][u].push(r.latency_us());
            errors[s][u] += u64::from(r.is_error());
        }
    }
    let mut failed = vec![0u64; count];
    for &us in &run.recorded.failures {
        if let Some(f) = failed.get_mut((us / 1_000_000) as usize) {
            *f += 1;
        }
    }
    (0..count)
        .map(|s| {
            let mut upstreams = BTreeMap::new();
            for (u, name) in names.iter().enumerate() {
                let lat = &mut latencies[s][u];
                // `-` only shows up when weir answered itself.
                if name == "-" && lat.is_empty() {
                    continue;
                }
                upstreams.insert(
                    name.clone(),
                    UpstreamSecond {
                        requests: lat.len() as u64,
                        errors: errors[s][u],
                        p50_ms: percentile_ms(lat, 0.50),
                        p99_ms: percentile_ms(lat, 0.99),
                    },
                );
            }
            SecondPoint {
                t: s as u64,
                upstreams,
                failed: failed[s],
            }
        })
        .collect()
}

/// The nearest-rank `q` quantile of `values` (µs) in ms; reorders them.
pub(crate) fn percentile_ms(values: &mut [u32], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let (_, v, _) = values.select_nth_unstable(rank - 1);
    Some(f64::from(*v) / 1000.0)
}

/// The upstream serving `route`'s canary according to the config in force
/// at `t`: an endpoint that expands to an upstream's address; failing that,
/// an upstream named like the canary revision.
pub(crate) fn canary_upstream(
    run: &RunData,
    route: &str,
    t: f64,
    revision: Option<&str>,
) -> Option<String> {
    let config = run
        .configs
        .iter()
        .rev()
        .find(|(from, _)| *from <= t)
        .or(run.configs.first())
        .map(|(_, text)| text.as_str())?;
    let by_address: BTreeMap<&str, &str> = run
        .upstreams
        .iter()
        .map(|u| (u.address.as_str(), u.name.as_str()))
        .collect();
    let found = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(config)
        .ok()
        .and_then(|doc| {
            let routes = doc.get("routes")?.as_sequence()?;
            let route = routes
                .iter()
                .find(|r| r.get("name").and_then(|n| n.as_str()) == Some(route))?;
            let endpoints = route.get("canary")?.get("endpoints")?.as_sequence()?;
            endpoints.iter().find_map(|e| {
                let expanded = expand(e.as_str()?, &run.env);
                by_address.get(expanded.as_str()).map(|n| (*n).to_owned())
            })
        });
    found.or_else(|| {
        revision
            .filter(|r| run.upstreams.iter().any(|u| u.name == *r))
            .map(str::to_owned)
    })
}

/// Replaces `${VAR}` from `env`; unknown variables stay as written.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let var = &after[..end];
                match env.get(var) {
                    Some(value) => out.push_str(value),
                    None => {
                        let _ = write!(out, "${{{var}}}");
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// One summary per abort event, with the time from the first failure to
/// weight 0.
fn aborts(run: &RunData) -> Vec<AbortSummary> {
    let mut out = Vec::new();
    for event in run.events.iter().filter(|e| e.kind == EventKind::Abort) {
        let Some(route) = event.route.as_deref() else {
            continue;
        };
        let revision = event.revision.clone();
        let weight_zero_at = run
            .samples
            .iter()
            .filter(|s| s.t >= event.t)
            .find(|s| s.routes.iter().any(|r| r.name == route && r.weight == 0.0))
            .map_or(event.t, |s| s.t);
        let upstream = canary_upstream(run, route, event.t, revision.as_deref());
        // The last fault on that upstream before the abort.
        let fault = upstream.as_deref().and_then(|name| {
            run.scenario
                .timeline
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a.kind() {
                    Some(ActionKind::Fault(f)) if f.upstream == name => {
                        run.actions.get(i).copied().flatten().map(|t| (i, t))
                    }
                    _ => None,
                })
                .rfind(|(_, t)| *t <= event.t)
        });
        // Without a fault, the failures count from the rollout's start.
        let rollout_start = run
            .events
            .iter()
            .filter(|e| {
                e.t <= event.t
                    && e.route.as_deref() == Some(route)
                    && (e.kind == EventKind::Revision
                        || (e.kind == EventKind::Phase
                            && e.to.as_ref().and_then(Value::as_str) == Some("Progressing")))
            })
            .map(|e| e.t)
            .next_back()
            .unwrap_or(0.0);
        let since = fault.map_or(rollout_start, |(_, t)| t);
        let index = upstream.as_deref().and_then(|n| run.recorded.index(n));
        let since_us = (since.max(0.0) * 1e6) as u32;
        let from_upstream = || {
            run.recorded
                .responses
                .iter()
                .filter(move |r| Some(r.upstream) == index)
        };
        let first_5xx = from_upstream()
            .filter(|r| r.is_error() && r.done_us >= since_us)
            .map(|r| r.done_us)
            .min()
            .map(|us| f64::from(us) / 1e6);
        let (first_failure_at, from) = match (first_5xx, fault) {
            (Some(t), _) => (t, "first5xx"),
            (None, Some((_, t))) => (t, "fault"),
            (None, None) => (rollout_start, "rolloutStart"),
        };
        let (canary_requests, canary_errors) = answered_since(from_upstream(), since_us);
        out.push(AbortSummary {
            route: route.to_owned(),
            revision,
            upstream,
            aborted_at: event.t,
            weight_zero_at,
            fault_action: fault.map(|(i, _)| i),
            fault_at: fault.map(|(_, t)| t),
            first_failure_at: round_ms(first_failure_at),
            first_failure_from: from.to_owned(),
            seconds_to_weight_zero: round_ms(weight_zero_at - first_failure_at),
            canary_requests,
            canary_errors,
            reason: event.text.clone(),
        });
    }
    out
}

/// Responses, and of them 5xx, that came at `since_us` or later. Counted
/// by when they came, not when they were sent: a request sent a moment
/// before a fault and handled after it met the fault.
fn answered_since<'a>(responses: impl Iterator<Item = &'a Response>, since_us: u32) -> (u64, u64) {
    responses
        .filter(|r| r.done_us >= since_us)
        .fold((0, 0), |(n, e), r| (n + 1, e + u64::from(r.is_error())))
}

// === impl ExperimentReport ===

impl ExperimentReport {
    /// The summary figures and the expectations as printed at the end of a
    /// run, one item a line.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(
            out,
            "requests: {} scheduled, {} without a response",
            s.requests, s.failed
        );
        for (name, u) in &s.upstreams {
            let received = match (u.received, u.received_errors) {
                (Some(n), Some(e)) => format!("reached it {n} ({e} failed by fault)"),
                _ => "made by weir".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {name:<10} {received}; responses {} ({} 5xx, {:.2} %)",
                u.responses,
                u.errors,
                rate(u.errors, u.responses) * 100.0
            );
        }
        if s.aborts.is_empty() {
            let _ = writeln!(out, "aborts: none");
        }
        for a in &s.aborts {
            // What the time counts from, in words: an abort without a
            // failure (a latency limit, an analysis run) counts from the
            // rollout's start.
            let from = match a.first_failure_from.as_str() {
                "first5xx" => "the first failure (its first 5xx",
                "fault" => "the fault (no 5xx came back; the fault",
                _ => "the rollout's start (no fault and no 5xx; the start",
            };
            let counted = if a.fault_at.is_some() {
                "from the fault on"
            } else {
                "from the rollout's start on"
            };
            let _ = writeln!(
                out,
                "abort of {} (canary {}, upstream {}) at {:.2} s: {:.2} s from {from} at {:.2} s) \
                 to weight 0 ({:.2} s); {counted} it answered {} requests, {} failed",
                a.route,
                a.revision.as_deref().unwrap_or("?"),
                a.upstream.as_deref().unwrap_or("?"),
                a.aborted_at,
                a.seconds_to_weight_zero,
                a.first_failure_at,
                a.weight_zero_at,
                a.canary_requests,
                a.canary_errors
            );
        }
        for e in &self.expectations {
            let _ = writeln!(
                out,
                "{} expect[{}] {} {}: {}",
                if e.passed { "PASS" } else { "FAIL" },
                e.index,
                e.kind,
                e.expected,
                e.detail
            );
        }
        for failed in &self.failed_actions {
            let _ = writeln!(out, "FAIL {failed}");
        }
        let verdict = if self.passed {
            "all expectations passed"
        } else if self.expectations.iter().all(|e| e.passed) {
            "a timeline action did not take"
        } else {
            "an expectation failed"
        };
        let _ = writeln!(out, "verdict: {verdict}");
        out
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub(crate) fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&mut v, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&mut [], 0.5), None);
        assert_eq!(percentile_ms(&mut [7000], 0.99), Some(7.0));
    }

    #[test]
    fn an_aborts_cost_counts_what_came_after_the_fault_even_if_sent_before() {
        let response = |sent_us, done_us, status| Response {
            upstream: 0,
            status,
            scheduled_us: sent_us,
            sent_us,
            done_us,
        };
        let responses = [
            response(900, 950, 200),   // before the fault
            response(990, 1_010, 500), // sent before it, met it
            response(1_020, 1_030, 500),
            response(1_040, 1_050, 200),
        ];
        assert_eq!(answered_since(responses.iter(), 1_000), (3, 2));
    }

    #[test]
    fn variables_expand() {
        let env: BTreeMap<String, String> = [("UPSTREAM_V1".to_owned(), "127.0.0.1:1".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(expand("${UPSTREAM_V1}", &env), "127.0.0.1:1");
        assert_eq!(
            expand("a${NOPE}b${UPSTREAM_V1}", &env),
            "a${NOPE}b127.0.0.1:1"
        );
        assert_eq!(expand("x${open", &env), "x${open");
    }
}
