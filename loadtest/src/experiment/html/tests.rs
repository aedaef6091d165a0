use std::collections::BTreeMap;

use super::*;
use crate::experiment::report::{
    AbortSummary, Event, ExpectationResult, LoadInfo, RouteSample, SecondPoint, Summary,
    UpstreamInfo, UpstreamSecond, UpstreamTotals, WeirInfo,
};

/// A small report with every kind of thing the page shows, and text that
/// needs escaping.
fn report() -> ExperimentReport {
    let seconds = (0..10)
        .map(|t| {
            let mut upstreams = BTreeMap::new();
            upstreams.insert(
                "v1".to_owned(),
                UpstreamSecond {
                    requests: 80,
                    errors: 0,
                    p50_ms: Some(2.1),
                    p99_ms: Some(4.0),
                },
            );
            let canary = if (3..6).contains(&t) { 20 } else { 0 };
            upstreams.insert(
                "v2".to_owned(),
                UpstreamSecond {
                    requests: canary,
                    errors: canary / 3,
                    p50_ms: (canary > 0).then_some(50.3),
                    p99_ms: (canary > 0).then_some(61.0),
                },
            );
            SecondPoint {
                t,
                upstreams,
                failed: 0,
            }
        })
        .collect();
    let samples = (0..100)
        .map(|i| {
            let t = f64::from(i) / 10.0;
            RouteSample {
                t,
                route: "web".into(),
                phase: if t < 5.2 { "Progressing" } else { "Aborted" }.into(),
                step: Some(if t < 3.0 { 0 } else { 1 }),
                step_count: 3,
                weight: if (3.0..5.2).contains(&t) { 20.0 } else { 0.0 },
                canary_revision: Some("v2".into()),
                stable_revision: Some("v1".into()),
                stage: None,
            }
        })
        .collect();
    let event = |t: f64, kind, text: &str| Event {
        t,
        kind,
        route: Some("web".into()),
        action: None,
        from: None,
        to: None,
        revision: None,
        text: text.into(),
    };
    ExperimentReport {
        scenario: "bad<canary>".into(),
        started_at: "2025-01-01T00:00:00.000Z".into(),
        speed: 1.0,
        duration_seconds: 10.0,
        passed: false,
        failed_actions: Vec::new(),
        weir: WeirInfo {
            binary: "/bin/weir".into(),
            listen: "127.0.0.1:1".into(),
            admin: "127.0.0.1:2".into(),
            stopped: "exited after SIGTERM".into(),
        },
        upstreams: vec![
            UpstreamInfo {
                name: "v1".into(),
                address: "127.0.0.1:3".into(),
            },
            UpstreamInfo {
                name: "v2".into(),
                address: "127.0.0.1:4".into(),
            },
        ],
        load: LoadInfo {
            rate: 100.0,
            users: Some(10),
            path: "/".into(),
        },
        seconds,
        samples,
        events: vec![
            event(0.0, EventKind::Config, "timeline[0]: config rewritten"),
            event(3.0, EventKind::Step, "web: step 0/3 → step 1/3"),
            event(
                4.0,
                EventKind::Fault,
                "timeline[1]: fault on v2 & <friends>",
            ),
            event(4.5, EventKind::Command, "timeline[2]: pause web → 200"),
            event(5.2, EventKind::Abort, "web: ABORTED canary v2"),
        ],
        expectations: vec![ExpectationResult {
            index: 0,
            kind: "finalPhase".into(),
            expected: "web ends Promoted".into(),
            passed: false,
            detail: "last sample: Aborted".into(),
        }],
        summary: Summary {
            requests: 1000,
            failed: 0,
            upstreams: [(
                "v2".to_owned(),
                UpstreamTotals {
                    received: Some(60),
                    received_errors: Some(20),
                    responses: 60,
                    errors: 20,
                },
            )]
            .into_iter()
            .collect(),
            aborts: vec![AbortSummary {
                route: "web".into(),
                revision: Some("v2".into()),
                upstream: Some("v2".into()),
                aborted_at: 5.2,
                weight_zero_at: 5.2,
                fault_action: Some(1),
                fault_at: Some(4.0),
                first_failure_at: 4.01,
                first_failure_from: "first5xx".into(),
                seconds_to_weight_zero: 1.19,
                canary_requests: 24,
                canary_errors: 8,
                reason: "error rate".into(),
            }],
        },
    }
}

#[test]
fn page_is_self_contained_with_four_charts() {
    let page = render(&report()).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(page.matches("<svg").count(), 4, "one SVG per chart");
    for id in ["weight", "requests", "errors", "latency"] {
        let start = page.find(&format!("id=\"chart-{id}\"")).unwrap();
        assert!(
            page[start..]
                .trim_start_matches(|c| c != '<')
                .contains("<svg")
        );
    }
    for banned in ["<script", "http://", "https://", "<link", "@import", "url("] {
        assert!(!page.contains(banned), "the page contains {banned:?}");
    }
    // Legends name the series and every kind of marker.
    for label in [
        "route web",
        "v1 p50",
        "v2 p99",
        "config change",
        "fault",
        "command",
        "step change",
        "abort",
    ] {
        assert!(page.contains(label), "no {label:?} in the page");
    }
    // Scenario text is escaped, never markup.
    assert!(page.contains("bad&lt;canary&gt;"));
    assert!(page.contains("&amp; &lt;friends&gt;"));
    assert!(!page.contains("<friends>"));
    assert!(page.contains("FAIL"));
    assert!(page.contains("1.19 s"));
}

#[test]
fn an_empty_run_still_draws() {
    let mut r = report();
    r.seconds.clear();
    r.samples.clear();
    r.events.clear();
    r.summary.aborts.clear();
    let page = render(&r).unwrap();
    assert_eq!(page.matches("<svg").count(), 4);
}
