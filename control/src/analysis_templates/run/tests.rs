use std::time::Duration;

use weir_config::condition::Condition;
use weir_config::{PrometheusQuery, Provider};

use super::*;

/// A metric of `result[0] >= 0.9` with the given limits.
fn metric() -> Metric {
    Metric {
        template: Arc::from("t"),
        name: Arc::from("m"),
        interval: Some(Duration::from_secs(5)),
        initial_delay: Duration::ZERO,
        count: Some(3),
        success_condition: Some(Condition::parse("result[0] >= 0.9").expect("parses")),
        failure_condition: None,
        failure_limit: Some(0),
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        dry_run: false,
        provider: Provider::Prometheus(PrometheusQuery {
            address: "http://127.0.0.1:9090".to_owned(),
            query: "up".to_owned(),
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            basic_auth: None,
            insecure: false,
        }),
    }
}

/// What a provider answered, in a crafted sequence.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Good,
    Bad,
    Inconclusive,
    Error,
}

fn measurement(metric: &Metric, answer: Answer, at_ms: u64) -> Measurement {
    let (phase, value, message) = match answer {
        Answer::Error => (RunPhase::Error, None, Some("connection refused".to_owned())),
        Answer::Inconclusive => (RunPhase::Inconclusive, None, None),
        Answer::Good | Answer::Bad => {
            let n = if matches!(answer, Answer::Good) {
                0.95
            } else {
                0.5
            };
            let value = Value::List(vec![Value::Number(n)]);
            let (phase, message) = judge(metric, &value);
            (phase, Some(value), message)
        }
    };
    Measurement {
        phase,
        value,
        message,
        started_ms: at_ms,
        finished_ms: at_ms,
    }
}

/// Feeds `answers` to a metric at the times it asks for; returns the phase
/// after each and the times of the measurements.
fn run(metric: Metric, answers: &[Answer]) -> (Vec<RunPhase>, Vec<u64>) {
    let metric = Arc::new(metric);
    let mut state = MetricRun::new(Arc::clone(&metric));
    let mut phases = Vec::new();
    let mut times = Vec::new();
    for answer in answers {
        let Some(at) = state.next_due_ms(1_000) else {
            break;
        };
        times.push(at);
        state.record(measurement(&metric, *answer, at));
        phases.push(state.phase);
    }
    (phases, times)
}

use Answer::{Bad, Error as Err, Good, Inconclusive as Inc};
use RunPhase::{Error as E, Failed as F, Inconclusive as I, Running as R, Successful as S};

#[test]
fn metrics_follow_argo_over_crafted_sequences() {
    let limited = |f: fn(&mut Metric)| {
        let mut m = metric();
        f(&mut m);
        m
    };
    let cases: Vec<(&str, Metric, Vec<Answer>, Vec<RunPhase>)> = vec![
        (
            "three good of count 3",
            metric(),
            vec![Good, Good, Good],
            vec![R, R, S],
        ),
        (
            "the first failure fails at failureLimit 0",
            metric(),
            vec![Good, Bad],
            vec![R, F],
        ),
        (
            "failureLimit 1 tolerates one",
            limited(|m| m.failure_limit = Some(1)),
            vec![Bad, Good, Good],
            vec![R, R, S],
        ),
        (
            "failureLimit 1: the second failure fails",
            limited(|m| m.failure_limit = Some(1)),
            vec![Bad, Bad],
            vec![R, F],
        ),
        (
            "failureLimit -1 never fails",
            limited(|m| m.failure_limit = None),
            vec![Bad, Bad, Bad],
            vec![R, R, S],
        ),
        (
            "errors do not count as measurements",
            metric(),
            vec![Good, Err, Err, Good, Good],
            vec![R, R, R, R, S],
        ),
        (
            "the fifth consecutive error is an Error",
            metric(),
            vec![Err, Err, Err, Err, Err],
            vec![R, R, R, R, E],
        ),
        (
            "a success resets the consecutive errors",
            metric(),
            vec![Err, Err, Err, Err, Good, Err, Err, Err, Err, Good, Good],
            vec![R, R, R, R, R, R, R, R, R, R, S],
        ),
        (
            "consecutiveErrorLimit 0: the first error",
            limited(|m| m.consecutive_error_limit = 0),
            vec![Err],
            vec![E],
        ),
        (
            "the first inconclusive at inconclusiveLimit 0",
            metric(),
            vec![Good, Inc],
            vec![R, I],
        ),
        (
            "inconclusiveLimit 1 tolerates one",
            limited(|m| m.inconclusive_limit = 1),
            vec![Inc, Good, Good],
            vec![R, R, S],
        ),
        (
            "no interval, no count: one measurement",
            limited(|m| {
                m.interval = None;
                m.count = None;
            }),
            vec![Good],
            vec![S],
        ),
        (
            "interval without count measures on",
            limited(|m| m.count = None),
            vec![Good; 8],
            vec![R; 8],
        ),
    ];
    for (name, metric, answers, want) in cases {
        let (phases, _) = run(metric, &answers);
        assert_eq!(phases, want, "{name}");
    }
}

#[test]
fn measurements_wait_for_initial_delay_interval_and_error_retry() {
    let mut m = metric();
    m.initial_delay = Duration::from_secs(2);
    m.interval = Some(Duration::from_secs(30));
    let (_, times) = run(m, &[Good, Err, Err, Good]);
    // Started at 1 s: first after the delay, then the error retry of 10 s
    // (shorter than the 30 s interval), then the interval again.
    assert_eq!(times, vec![3_000, 33_000, 43_000, 53_000]);
    let mut m = metric();
    m.interval = Some(Duration::from_secs(2));
    let (_, times) = run(m, &[Err, Good, Good]);
    // An interval shorter than 10 s does not shorten the error retry.
    assert_eq!(times, vec![1_000, 11_000, 13_000]);
}

#[test]
fn conditions_decide_the_measurement_as_in_argo() {
    let with = |success: Option<&str>, failure: Option<&str>| {
        let mut m = metric();
        m.success_condition = success.map(|c| Condition::parse(c).expect("parses"));
        m.failure_condition = failure.map(|c| Condition::parse(c).expect("parses"));
        m
    };
    let value = Value::Number(5.0);
    let cases = [
        (None, None, S),
        (Some("result > 1"), None, S),
        (Some("result > 9"), None, F),
        (None, Some("result > 1"), F),
        (None, Some("result > 9"), S),
        (Some("result > 1"), Some("result > 1"), F),
        (Some("result > 9"), Some("result > 9"), I),
        (Some("result[0] > 9"), None, E),
    ];
    for (success, failure, want) in cases {
        assert_eq!(
            judge(&with(success, failure), &value).0,
            want,
            "{success:?} / {failure:?}"
        );
    }
}

#[test]
fn a_run_is_the_worst_of_its_metrics_and_dry_runs_never_fail_it() {
    let named = |name: &str, dry_run: bool, count: u32| {
        let mut m = metric();
        m.name = Arc::from(name);
        m.dry_run = dry_run;
        m.count = Some(count);
        Arc::new(m)
    };
    let analysis = AnalysisRef {
        templates: vec![Arc::from("t")],
        args: Vec::new(),
        metrics: vec![
            named("a", false, 2),
            named("b", true, 1),
            named("c", false, 1),
        ],
        waiting_for: None,
    };
    let mut state = RunState::new(&analysis, 0);
    let (at, due) = state.next_due().expect("due");
    assert_eq!((at, due.clone()), (0, vec![0, 1, 2]));
    state.record(0, measurement(&analysis.metrics[0], Good, 0));
    // The dry run fails, the run does not.
    state.record(1, measurement(&analysis.metrics[1], Bad, 0));
    state.record(2, measurement(&analysis.metrics[2], Good, 0));
    assert_eq!(state.phase, R);
    assert_eq!(state.metrics[1].phase, F);
    assert_eq!(state.next_due(), Some((5_000, vec![0])));
    state.record(0, measurement(&analysis.metrics[0], Good, 5_000));
    assert_eq!(state.phase, S);
    // Its message tells of the failed dry run all the same.
    assert!(
        state
            .message
            .starts_with("every metric successful but dry runs (dry-run metric b Failed: "),
        "{}",
        state.message
    );
    assert_eq!(state.finished_ms, Some(5_000));
    assert_eq!(state.next_due(), None);

    // A failing metric ends the run at once, with its message.
    let mut state = RunState::new(&analysis, 0);
    state.record(2, measurement(&analysis.metrics[2], Bad, 0));
    assert_eq!(state.phase, F);
    assert!(
        state
            .message
            .starts_with("metric c: 1 failed measurement exceed"),
        "{}",
        state.message
    );
    // Inconclusive is worse than Running, better than Failed.
    let mut state = RunState::new(&analysis, 0);
    state.record(2, measurement(&analysis.metrics[2], Inc, 0));
    assert_eq!(state.phase, I);
    // Terminated while measuring: Successful, with the reason.
    let mut state = RunState::new(&analysis, 0);
    state.terminate(7, "the rollout was promoted");
    assert_eq!((state.phase, state.finished_ms), (S, Some(7)));
}

#[test]
fn a_run_of_an_unresolved_reference_waits_pending_and_measures_nothing() {
    let analysis = AnalysisRef {
        templates: vec![Arc::from("smoke")],
        args: Vec::new(),
        metrics: Vec::new(),
        waiting_for: Some(Arc::from("there is no AnalysisTemplate `smoke`")),
    };
    let state = RunState::new(&analysis, 7);
    assert_eq!(state.phase, RunPhase::Pending);
    assert!(
        state.message.contains("no AnalysisTemplate `smoke`"),
        "{}",
        state.message
    );
    assert_eq!(state.next_due(), None);
    assert_eq!(state.finished_ms, None);
}

#[test]
fn the_engine_replaces_a_waiting_run_once_its_templates_resolve_and_keeps_any_other() {
    use crate::analysis_templates::engine::AnalysisRuns;
    let key = RunKey {
        rollout_seq: 1,
        rollout_started_ms: 0,
        kind: RunKind::Step(1),
    };
    let waiting = |why: &str| AnalysisRef {
        templates: vec![Arc::from("t")],
        args: Vec::new(),
        metrics: Vec::new(),
        waiting_for: Some(Arc::from(why)),
    };
    let resolved = AnalysisRef {
        templates: vec![Arc::from("t")],
        args: Vec::new(),
        metrics: vec![Arc::new(metric())],
        waiting_for: None,
    };
    let runs = AnalysisRuns::new();
    let (phase, message) = runs.ensure("shop/checkout", &key, &waiting("missing"), false, 0);
    assert_eq!(phase, RunPhase::Pending);
    assert!(message.ends_with("missing"), "{message}");
    let (_, message) = runs.ensure("shop/checkout", &key, &waiting("invalid"), false, 1);
    assert!(message.ends_with("invalid"), "the new reason: {message}");
    let (phase, _) = runs.ensure("shop/checkout", &key, &resolved, false, 2);
    assert_eq!(phase, RunPhase::Running);
    let view = runs.runs("shop/checkout");
    assert_eq!(view.len(), 1, "the waiting run is replaced, not kept");
    assert_eq!(view[0].state.metrics.len(), 1);
    assert_eq!(view[0].state.started_ms, 2);
    // A template changed (or gone) later: the run keeps what it started with.
    let (phase, _) = runs.ensure("shop/checkout", &key, &waiting("gone"), false, 3);
    assert_eq!(phase, RunPhase::Running);
    assert_eq!(runs.runs("shop/checkout")[0].state.metrics.len(), 1);
}

#[test]
fn a_huge_value_is_kept_and_quoted_cut() {
    let huge = Value::List(vec![Value::Number(0.0); 300_000]);
    let mut metric = metric();
    metric.success_condition = Some(Condition::parse("result.failed == 0").expect("parses"));
    let (phase, message) = judge(&metric, &huge);
    assert_eq!(phase, RunPhase::Error);
    let message = message.expect("a message");
    assert!(
        message.len() <= MESSAGE_BYTES + 16,
        "{} bytes",
        message.len()
    );
    assert!(message.contains("(cut)"), "{message}");

    let Value::Text(kept) = shown(huge) else {
        panic!("a huge value is kept as its cut text");
    };
    assert!(kept.len() <= SHOWN_VALUE_BYTES + 80, "{} bytes", kept.len());
    assert!(kept.starts_with("[0,0,"), "{kept}");
    assert!(kept.ends_with("longer than 1024 bytes)"), "{kept}");

    let small = Value::List(vec![Value::Number(0.5)]);
    assert_eq!(shown(small.clone()), small);
    assert_eq!(
        bounded_message("é".repeat(MESSAGE_BYTES)).len(),
        MESSAGE_BYTES + 9
    );
}
