//! The scenario's expectations, checked against what the runner observed.
//! Each result says what was expected and the numbers it was judged on.

use super::report::{
    AbortSummary, EventKind, ExpectationResult, RouteState, RunData, rate, round_ms,
};
use super::scenario::{Expectation, Phase};

/// Requests sent in the first second after an abort was seen may still
/// reach the canary (in flight, or routed on the snapshot before it).
pub(crate) const ABORT_GRACE_SECONDS: f64 = 1.0;

/// Checks every expectation of the scenario, in order.
pub(crate) fn evaluate(run: &RunData, aborts: &[AbortSummary]) -> Vec<ExpectationResult> {
    run.scenario
        .expect
        .iter()
        .enumerate()
        .map(|(index, expectation)| {
            let (expected, passed, detail) = check(run, aborts, expectation);
            ExpectationResult {
                index,
                kind: expectation.kind().to_owned(),
                expected,
                passed,
                detail,
            }
        })
        .collect()
}

/// The route's states in sample order, with their times.
fn states<'a>(run: &'a RunData, route: &'a str) -> impl Iterator<Item = (f64, &'a RouteState)> {
    run.samples
        .iter()
        .filter_map(move |s| s.routes.iter().find(|r| r.name == route).map(|r| (s.t, r)))
}

fn never_seen(route: &str) -> String {
    format!("route {route} was never seen in GET /api/v1/routes")
}

fn check(run: &RunData, aborts: &[AbortSummary], e: &Expectation) -> (String, bool, String) {
    match e {
        Expectation::FinalPhase(e) => {
            let expected = format!("{} ends {}", e.route, e.phase.as_str());
            match states(run, &e.route).last() {
                Some((t, r)) => (
                    expected,
                    r.phase == e.phase.as_str(),
                    format!(
                        "last sample at {t:.2} s: {} at weight {}{}",
                        r.phase,
                        r.weight,
                        revision_text(r)
                    ),
                ),
                None => (expected, false, never_seen(&e.route)),
            }
        }
        Expectation::ReachedPhase(e) => {
            let mut expected = format!("{} reaches {}", e.route, e.phase.as_str());
            if let Some(revision) = &e.revision {
                expected.push_str(&format!(" with canary {revision}"));
            }
            if let Some(by) = e.by {
                expected.push_str(&format!(" by {by}"));
            }
            let hit = states(run, &e.route).find(|(t, r)| {
                r.phase == e.phase.as_str()
                    && e.revision
                        .as_deref()
                        .is_none_or(|rev| r.canary_revision.as_deref() == Some(rev))
                    && e.by.is_none_or(|by| *t <= by.secs())
            });
            match hit {
                Some((t, r)) => (
                    expected,
                    true,
                    format!("{} at {t:.2} s{}", r.phase, revision_text(r)),
                ),
                None => {
                    let phases = phases_seen(run, &e.route);
                    let detail = if phases.is_empty() {
                        never_seen(&e.route)
                    } else {
                        format!("not seen; phases seen: {}", phases.join(" → "))
                    };
                    (expected, false, detail)
                }
            }
        }
        Expectation::ReachedStep(e) => {
            let mut expected = format!("{} reaches stepIndex {}", e.route, e.step);
            if let Some(by) = e.by {
                expected.push_str(&format!(" by {by}"));
            }
            let reached = |r: &RouteState| {
                r.step.is_some_and(|s| s >= e.step)
                    || (r.phase == Phase::Promoted.as_str() && e.step <= r.step_count)
            };
            let first = states(run, &e.route).find(|(_, r)| reached(r));
            let max_step = states(run, &e.route).filter_map(|(_, r)| r.step).max();
            match first {
                Some((t, r)) => {
                    let in_time = e.by.is_none_or(|by| t <= by.secs());
                    (
                        expected,
                        in_time,
                        format!(
                            "stepIndex {} ({}) first seen at {t:.2} s",
                            r.step.map_or("-".to_owned(), |s| s.to_string()),
                            r.phase
                        ),
                    )
                }
                None => (
                    expected,
                    false,
                    match max_step {
                        Some(s) => format!("highest stepIndex seen: {s}"),
                        None => never_seen(&e.route),
                    },
                ),
            }
        }
        Expectation::ReachedStage(e) => {
            let mut expected = format!("{} reaches blue-green stage {}", e.route, e.stage.as_str());
            if let Some(revision) = &e.revision {
                expected.push_str(&format!(" with new revision {revision}"));
            }
            let hit = states(run, &e.route).find(|(_, r)| {
                r.stage.as_deref() == Some(e.stage.as_str())
                    && e.revision
                        .as_deref()
                        .is_none_or(|rev| r.canary_revision.as_deref() == Some(rev))
            });
            match hit {
                Some((t, r)) => (
                    expected,
                    true,
                    format!("{} at {t:.2} s{}", e.stage.as_str(), revision_text(r)),
                ),
                None => {
                    let mut stages: Vec<String> = Vec::new();
                    for (_, r) in states(run, &e.route) {
                        if let Some(stage) = &r.stage
                            && stages.last() != Some(stage)
                        {
                            stages.push(stage.clone());
                        }
                    }
                    let detail = if stages.is_empty() {
                        "no blue-green stage was seen".to_owned()
                    } else {
                        format!("not seen; stages seen: {}", stages.join(" → "))
                    };
                    (expected, false, detail)
                }
            }
        }
        Expectation::AbortedWithin(e) => {
            let expected = format!(
                "{} aborted within {} of timeline[{}]",
                e.route, e.within, e.after_action
            );
            let Some(action_t) = run.actions.get(e.after_action).copied().flatten() else {
                return (
                    expected,
                    false,
                    format!("timeline[{}] was never applied", e.after_action),
                );
            };
            let abort = aborts
                .iter()
                .find(|a| a.route == e.route && a.aborted_at >= action_t);
            match abort {
                Some(a) => {
                    let took = a.weight_zero_at - action_t;
                    (
                        expected,
                        took <= e.within.secs(),
                        format!(
                            "weight 0 seen at {:.2} s, {:.2} s after the action at {action_t:.2} s \
                             (samples every {:.1} s)",
                            a.weight_zero_at,
                            round_ms(took),
                            super::runner::SAMPLE_INTERVAL.as_secs_f64()
                        ),
                    )
                }
                None => (
                    expected,
                    false,
                    format!(
                        "no abort seen after the action at {action_t:.2} s; last phase {}",
                        states(run, &e.route)
                            .last()
                            .map_or("unknown".to_owned(), |(_, r)| r.phase.clone())
                    ),
                ),
            }
        }
        Expectation::NoCanaryAfterAbort(e) => {
            let expected = format!(
                "{} gets no request from {ABORT_GRACE_SECONDS} s after each abort of {}",
                e.upstream, e.route
            );
            let slot = run
                .scenario
                .upstreams
                .iter()
                .position(|u| u.name == e.upstream);
            let index = run.recorded.index(&e.upstream);
            let route_aborts: Vec<_> = run
                .events
                .iter()
                .filter(|ev| ev.kind == EventKind::Abort && ev.route.as_deref() == Some(&e.route))
                .collect();
            if route_aborts.is_empty() {
                return (expected, false, format!("{} was never aborted", e.route));
            }
            let mut passed = true;
            let mut details = Vec::new();
            for abort in route_aborts {
                let from = abort.t + ABORT_GRACE_SECONDS;
                // The Aborted phase lasts until a sample shows another phase.
                let until = states(run, &e.route)
                    .find(|(t, r)| *t > abort.t && r.phase != Phase::Aborted.as_str())
                    .map_or(f64::INFINITY, |(t, _)| t);
                let counter_at = |t: f64| {
                    run.samples
                        .iter()
                        .find(|s| s.t >= t)
                        .or(run.samples.last())
                        .and_then(|s| slot.and_then(|i| s.received.get(i).copied()))
                };
                let received = match (counter_at(from), counter_at(until)) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => 0,
                };
                let (from_us, until_us) = ((from * 1e6) as u64, until * 1e6);
                let answered = run
                    .recorded
                    .responses
                    .iter()
                    .filter(|r| {
                        Some(r.upstream) == index
                            && u64::from(r.sent_us) >= from_us
                            && f64::from(r.sent_us) < until_us
                    })
                    .count();
                passed &= received == 0 && answered == 0;
                let end = if until.is_finite() {
                    format!("{until:.2} s")
                } else {
                    "the end".to_owned()
                };
                details.push(format!(
                    "abort seen at {:.2} s: from {from:.2} s to {end} {} received {received} \
                     requests, the generator got {answered} responses from it",
                    abort.t, e.upstream
                ));
            }
            (expected, passed, details.join("; "))
        }
        Expectation::MaxErrorRate(e) => {
            let (expected, requests, errors) = match &e.upstream {
                Some(name) => {
                    let index = run.recorded.index(name);
                    let (n, err) = run
                        .recorded
                        .responses
                        .iter()
                        .filter(|r| Some(r.upstream) == index)
                        .fold((0u64, 0u64), |(n, x), r| {
                            (n + 1, x + u64::from(r.is_error()))
                        });
                    (format!("5xx rate of {name} below {}", e.below), n, err)
                }
                None => {
                    let failed = run.recorded.failures.len() as u64;
                    let answered = run.recorded.responses.len() as u64;
                    let err = run
                        .recorded
                        .responses
                        .iter()
                        .filter(|r| r.is_error())
                        .count() as u64;
                    (
                        format!("error rate of all requests below {}", e.below),
                        answered + failed,
                        err + failed,
                    )
                }
            };
            let observed = rate(errors, requests);
            (
                expected,
                observed < e.below,
                format!(
                    "{errors} errors in {requests} requests: {:.3} %",
                    observed * 100.0
                ),
            )
        }
    }
}

fn revision_text(r: &RouteState) -> String {
    match &r.canary_revision {
        Some(rev) => format!(", canary {rev}"),
        None => String::new(),
    }
}

/// The route's phases in order, repeats dropped.
fn phases_seen(run: &RunData, route: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, r) in states(run, route) {
        if out.last() != Some(&r.phase) {
            out.push(r.phase.clone());
        }
    }
    out
}
