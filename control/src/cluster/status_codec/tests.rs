use super::*;

const T0: u64 = 1_700_000_000_000;
const ROUTE: &str = "shop/checkout";
/// The SPEC's example steps: 5 %, pause 30 s, 25 %, pause {}, 100 %.
const PAUSES: [Option<u64>; 5] = [None, Some(30_000), None, None, None];

fn ctx(now_ms: u64) -> StatusContext<'static> {
    StatusContext {
        leader: "weir-0",
        observed_generation: Some(4),
        pause_lengths_ms: &PAUSES,
        coverage: Some(Coverage {
            counted: 3,
            known: 3,
        }),
        last_valid_spec: None,
        refused: None,
        now_ms,
    }
}

fn judgement(verdict: Verdict) -> Judgement {
    Judgement {
        verdict,
        stable: RoleSummary {
            requests: 1000,
            errors: 3,
            error_rate: Some(0.003),
            latency_p99_ms: Some(12.5),
        },
        canary: RoleSummary {
            requests: 0,
            errors: 0,
            error_rate: None,
            latency_p99_ms: None,
        },
        compare_evidence: None,
    }
}

/// Rollout 3 of v2 over stable v1, at step 1 (5 %), as a builder chain.
#[derive(Clone)]
struct State(RolloutState);

impl State {
    fn progressing() -> State {
        State(RolloutState {
            route: ROUTE.to_owned(),
            phase: Phase::Progressing,
            step_index: Some(0),
            canary_weight: Weight::from_percent_int(5),
            rollout_seq: 3,
            stable_revision: "v1".to_owned(),
            canary_revision: Some("v2".to_owned()),
            promoted_revision: Some("v1".to_owned()),
            pause_deadline_ms: None,
            pause_remaining_ms: None,
            pause_length_ms: None,
            held: false,
            rollout_started_ms: T0 + 250,
            failures: 1,
            message: "step 1/5 (setWeight 5): canary at 5%; analysis passing".to_owned(),
            abort_reason: None,
            last_judgement: Some(judgement(Verdict::Pass {
                reason: "canary error rate 0.1% within 5%".to_owned(),
            })),
            evidence: Evidence::new(),
            webhooks: Default::default(),
            promoted_ms: None,
            scale_down_deadline_ms: None,
            blue_green_stage: None,
        })
    }

    fn healthy() -> State {
        let mut s = State::progressing().0;
        s.phase = Phase::Healthy;
        s.step_index = None;
        s.canary_weight = Weight::ZERO;
        s.canary_revision = None;
        s.last_judgement = None;
        s.failures = 0;
        s.message = "no rollout: all traffic to stable v1".to_owned();
        State(s)
    }

    fn timed_pause() -> State {
        let mut s = State::progressing().0;
        s.phase = Phase::Paused;
        s.step_index = Some(1);
        s.pause_deadline_ms = Some(T0 + 30_250);
        s.pause_length_ms = Some(30_000);
        State(s)
    }

    fn held() -> State {
        let mut s = State::timed_pause().0;
        s.held = true;
        s.pause_deadline_ms = None;
        s.pause_remaining_ms = Some(12_345);
        // Its length is kept beside the time left: an edit of its
        // duration after a failover still counts from its start.
        State(s)
    }

    fn held_before_steps() -> State {
        let mut s = State::progressing().0;
        s.phase = Phase::Paused;
        s.step_index = None;
        s.canary_weight = Weight::ZERO;
        s.held = true;
        State(s)
    }

    fn aborted() -> State {
        let mut s = State::progressing().0;
        s.phase = Phase::Aborted;
        s.canary_weight = Weight::ZERO;
        s.abort_reason = Some(AbortReason::AnalysisErrorRate);
        s.failures = 2;
        s.last_judgement = Some(judgement(Verdict::Fail {
            kind: FailKind::ErrorRate,
            reason: "canary error rate 30% (30 of 100) above 5% (99% lower bound 21%)".to_owned(),
        }));
        s.message = "aborted (analysis_error_rate): analysis: canary error rate 30%".to_owned();
        State(s)
    }

    fn promoted() -> State {
        let mut s = State::progressing().0;
        s.phase = Phase::Promoted;
        s.step_index = Some(5);
        s.canary_weight = Weight::FULL;
        s.promoted_revision = Some("v2".to_owned());
        State(s)
    }

    /// A blue-green rollout promoted at `T0`, swapping back for 30 s.
    fn blue_green_done() -> State {
        let mut s = State::promoted().0;
        s.promoted_ms = Some(T0);
        s.scale_down_deadline_ms = Some(T0 + 30_000);
        s.blue_green_stage = Some(crate::rollout::BlueGreenStage::Done);
        State(s)
    }

    fn every_phase() -> Vec<(&'static str, State)> {
        vec![
            ("healthy", State::healthy()),
            ("progressing", State::progressing()),
            ("timed pause", State::timed_pause()),
            ("held in a timed pause", State::held()),
            ("held before the steps", State::held_before_steps()),
            ("aborted", State::aborted()),
            ("promoted", State::promoted()),
            ("blue-green done", State::blue_green_done()),
        ]
    }
}

fn status_of(state: &State) -> CanaryRouteStatus {
    encode(&state.0, &CanaryRouteStatus::default(), &ctx(T0 + 1_000))
}

// --- round trip ---

/// A leader that does not know `pauseLengthMs` leaves an old one behind:
/// a running pause's length comes from its deadline and start.
#[test]
fn a_running_pause_takes_its_length_from_its_deadline_and_start() {
    let mut status = status_of(&State::timed_pause());
    status.pause_length_ms = Some(60_000);
    let decoded = decode(ROUTE, &status, 5)
        .expect("readable")
        .expect("a state");
    assert_eq!(decoded.pause_length_ms, Some(30_000));
}

#[test]
fn every_phase_round_trips_through_the_status_and_its_json() {
    for (name, state) in State::every_phase() {
        let status = status_of(&state);
        let json = serde_json::to_value(&status).expect("the status serializes");
        let read: CanaryRouteStatus = serde_json::from_value(json).expect("and reads back");
        assert_eq!(read, status, "{name}: JSON round trip");
        let decoded = decode(ROUTE, &read, 5)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: no state"));
        assert_eq!(decoded, state.0, "{name}: state round trip");
    }
}

#[test]
fn a_failed_judgement_keeps_its_rule() {
    for (kind, reason) in [
        (
            FailKind::ErrorRate,
            "canary error rate 30% (30 of 100) above 5% (99% lower bound 21%)",
        ),
        (
            FailKind::Compare,
            "canary error rate 3% (30 of 1000) significantly above stable 0.1% (1 of 1000): \
             sequential evidence 120 against equal rates, limit 100",
        ),
        (
            FailKind::Latency,
            "canary p99 latency 800ms above 500ms (100 requests)",
        ),
        (
            FailKind::ExcessErrors,
            "canary errors 9 of 300 exceed the 3 predicted by stable error rate 0.01 \
             (100 of 10000) by 6, more than maxExcessErrors 5",
        ),
    ] {
        let mut state = State::progressing();
        state.0.last_judgement = Some(judgement(Verdict::Fail {
            kind,
            reason: reason.to_owned(),
        }));
        let decoded = decode(ROUTE, &status_of(&state), 5)
            .expect("decodes")
            .expect("a state");
        assert_eq!(decoded, state.0, "{kind:?}");
    }
}

#[test]
fn a_webhook_gate_wait_survives_a_failover() {
    let mut state = State::progressing();
    state.0.phase = Phase::Paused;
    state.0.webhooks = crate::rollout::WebhookProgress {
        wait: Some(crate::rollout::GateWait {
            gate: crate::rollout::Gate::ConfirmTrafficIncrease,
            step: 1,
            detail: Some("approve: HTTP 403".to_owned()),
        }),
        failures: 1,
    };
    let status = status_of(&state);
    let json = serde_json::to_value(&status).expect("the status serializes");
    assert_eq!(json["webhooks"]["wait"]["gate"], "confirm-traffic-increase");
    let read: CanaryRouteStatus = serde_json::from_value(json).expect("and reads back");
    let decoded = decode(ROUTE, &read, 5).expect("decodes").expect("a state");
    assert_eq!(decoded, state.0);
    // Without webhooks the status has no `webhooks`.
    let plain = serde_json::to_value(status_of(&State::progressing())).expect("serializes");
    assert!(plain.get("webhooks").is_none(), "{plain:#}");
}

#[test]
fn the_status_carries_what_a_new_leader_and_kubectl_need() {
    let status = status_of(&State::timed_pause());
    assert_eq!(status.phase.as_deref(), Some("Paused"));
    assert_eq!(status.step_index, Some(1));
    assert_eq!(status.step_count, Some(5));
    assert_eq!(status.canary_weight, Some(5.0));
    assert_eq!(status.seq, Some(3));
    assert_eq!(status.rollout_id.as_deref(), Some("3-v2"));
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.leader.as_deref(), Some("weir-0"));
    assert_eq!(
        status.rollout_start_time.as_deref(),
        Some("2023-11-14T22:13:20.250Z")
    );
    assert_eq!(
        status.pause_deadline.as_deref(),
        Some("2023-11-14T22:13:50.250Z")
    );
    // The deadline less the pause's 30 s.
    assert_eq!(
        status.pause_start_time.as_deref(),
        Some("2023-11-14T22:13:20.250Z")
    );
    let analysis = status.analysis.expect("the last judgement");
    assert_eq!(analysis.verdict.as_deref(), Some("Pass"));
    assert_eq!(analysis.coverage, "3/3");
    assert_eq!(analysis.stable.error_rate, 0.003);
    assert_eq!(analysis.canary.latency_p99_ms, None);

    let held = status_of(&State::held());
    assert_eq!(held.pause_deadline, None);
    assert_eq!(held.pause_start_time, None);
    assert_eq!(held.pause_remaining_ms, Some(12_345));
    assert_eq!(held.held, Some(true));
}

#[test]
fn times_have_milliseconds_and_read_any_offset() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_time(T0 + 7), "2023-11-14T22:13:20.007Z");
    let mut status = status_of(&State::timed_pause());
    status.pause_deadline = Some("2023-11-14T23:13:50.250+01:00".to_owned());
    let state = decode(ROUTE, &status, 5)
        .expect("decodes")
        .expect("a state");
    assert_eq!(state.pause_deadline_ms, Some(T0 + 30_250));
}

#[test]
fn a_status_without_phase_is_no_state() {
    assert_eq!(decode(ROUTE, &CanaryRouteStatus::default(), 5), Ok(None));
    // Inputs written before any leader wrote a state are not a state either.
    assert_eq!(decode(ROUTE, &input_of(Command::Abort), 5), Ok(None));
}

// --- conditions ---

fn condition<'a>(status: &'a CanaryRouteStatus, type_: &str) -> &'a StatusCondition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
}

#[test]
fn conditions_follow_the_phase() {
    let table = [
        ("healthy", State::healthy(), ["False", "False", "True"]),
        (
            "progressing",
            State::progressing(),
            ["True", "False", "False"],
        ),
        (
            "timed pause",
            State::timed_pause(),
            ["True", "False", "False"],
        ),
        ("held", State::held(), ["True", "False", "False"]),
        ("aborted", State::aborted(), ["False", "True", "False"]),
        ("promoted", State::promoted(), ["False", "False", "True"]),
    ];
    for (name, state, expected) in table {
        let status = status_of(&state);
        let got: Vec<&str> = PHASE_CONDITIONS
            .iter()
            .map(|t| condition(&status, t).status.as_str())
            .collect();
        assert_eq!(got, expected, "{name}: Progressing, Aborted, Ready");
        for c in &status.conditions {
            assert!(
                !c.reason.is_empty() && !c.message.is_empty(),
                "{name}: {c:?}"
            );
            assert_eq!(
                c.last_transition_time.as_deref(),
                Some("2023-11-14T22:13:21.000Z")
            );
        }
    }
    let aborted = status_of(&State::aborted());
    let c = condition(&aborted, "Aborted");
    assert_eq!(c.reason, "AnalysisErrorRate");
    assert!(c.message.contains("canary error rate 30%"), "{c:?}");
}

#[test]
fn a_condition_keeps_its_transition_time_while_its_status_stays() {
    let mut previous = encode(
        &State::progressing().0,
        &CanaryRouteStatus::default(),
        &ctx(T0),
    );
    previous.conditions.push(StatusCondition {
        type_: "ServiceMissing".to_owned(),
        status: "True".to_owned(),
        reason: "ServiceNotFound".to_owned(),
        message: "spec.canary.service: Service shop/checkout-v2 not found".to_owned(),
        last_transition_time: Some(format_time(T0 - 5_000)),
    });
    // Later, a step advanced into the timed pause: still progressing.
    let paused = encode(&State::timed_pause().0, &previous, &ctx(T0 + 60_000));
    for type_ in PHASE_CONDITIONS {
        assert_eq!(
            condition(&paused, type_).last_transition_time,
            Some(format_time(T0)),
            "{type_} did not change status"
        );
    }
    assert_eq!(condition(&paused, "Progressing").reason, "RolloutPaused");
    assert_eq!(
        condition(&paused, "ServiceMissing"),
        &previous.conditions[3],
        "a condition of another kind is kept"
    );
    // Then it aborted: every phase condition but... all three flip or stay.
    let aborted = encode(&State::aborted().0, &paused, &ctx(T0 + 90_000));
    assert_eq!(
        condition(&aborted, "Progressing").last_transition_time,
        Some(format_time(T0 + 90_000))
    );
    assert_eq!(
        condition(&aborted, "Aborted").last_transition_time,
        Some(format_time(T0 + 90_000))
    );
    assert_eq!(
        condition(&aborted, "Ready").last_transition_time,
        Some(format_time(T0)),
        "Ready was False and stays False"
    );
}

// --- inputs ---

/// The status of `state` with the inputs `set` applied on top, as
/// `kubectl patch --subresource=status` would.
fn with_inputs(state: &State, set: &CanaryRouteStatus) -> CanaryRouteStatus {
    let mut status = status_of(state);
    status.abort = set.abort.or(status.abort);
    status.paused = set.paused.or(status.paused);
    status.promote = set.promote.or(status.promote);
    status.promote_full = set.promote_full.or(status.promote_full);
    status
}

fn input(
    abort: Option<bool>,
    paused: Option<bool>,
    promote: bool,
    full: bool,
) -> CanaryRouteStatus {
    CanaryRouteStatus {
        abort,
        paused,
        promote: Some(promote),
        promote_full: Some(full),
        ..CanaryRouteStatus::default()
    }
}

#[test]
fn every_input_in_every_phase() {
    use Command::*;
    let abort = input(Some(true), None, false, false);
    let retry = input(Some(false), None, false, false);
    let pause = input(None, Some(true), false, false);
    let resume = input(None, Some(false), false, false);
    let promote = input(None, None, true, false);
    let full = input(None, None, false, true);
    let none: Vec<Command> = Vec::new();
    // (phase, input, commands)
    let table: Vec<(&str, State, &CanaryRouteStatus, Vec<Command>)> = vec![
        ("healthy", State::healthy(), &abort, none.clone()),
        ("healthy", State::healthy(), &retry, none.clone()),
        ("healthy", State::healthy(), &pause, none.clone()),
        ("healthy", State::healthy(), &resume, none.clone()),
        ("healthy", State::healthy(), &promote, none.clone()),
        ("healthy", State::healthy(), &full, none.clone()),
        ("progressing", State::progressing(), &abort, vec![Abort]),
        ("progressing", State::progressing(), &retry, none.clone()),
        ("progressing", State::progressing(), &pause, vec![Pause]),
        ("progressing", State::progressing(), &resume, none.clone()),
        ("progressing", State::progressing(), &promote, vec![Promote]),
        (
            "progressing",
            State::progressing(),
            &full,
            vec![PromoteFull],
        ),
        ("paused", State::timed_pause(), &abort, vec![Abort]),
        ("paused", State::timed_pause(), &retry, none.clone()),
        ("paused", State::timed_pause(), &pause, vec![Pause]),
        ("paused", State::timed_pause(), &resume, none.clone()),
        ("paused", State::timed_pause(), &promote, vec![Promote]),
        ("paused", State::timed_pause(), &full, vec![PromoteFull]),
        ("held", State::held(), &abort, vec![Abort]),
        ("held", State::held(), &retry, none.clone()),
        ("held", State::held(), &pause, none.clone()),
        ("held", State::held(), &resume, vec![Resume]),
        ("held", State::held(), &promote, vec![Promote]),
        ("held", State::held(), &full, vec![PromoteFull]),
        ("aborted", State::aborted(), &abort, none.clone()),
        ("aborted", State::aborted(), &retry, vec![Retry]),
        ("aborted", State::aborted(), &pause, none.clone()),
        ("aborted", State::aborted(), &resume, none.clone()),
        ("aborted", State::aborted(), &promote, none.clone()),
        ("aborted", State::aborted(), &full, none.clone()),
        ("promoted", State::promoted(), &abort, vec![Abort]),
        ("promoted", State::promoted(), &retry, none.clone()),
        ("promoted", State::promoted(), &pause, none.clone()),
        ("promoted", State::promoted(), &resume, none.clone()),
        ("promoted", State::promoted(), &promote, none.clone()),
        ("promoted", State::promoted(), &full, none.clone()),
    ];
    for (phase, state, set, expected) in table {
        let status = with_inputs(&state, set);
        assert_eq!(inputs(&status), expected, "{phase} with {set:?}");
    }
}

#[test]
fn inputs_combine_in_order_and_an_unknown_phase_gives_none() {
    use Command::*;
    let mut status = with_inputs(&State::held(), &input(None, Some(false), true, false));
    assert_eq!(inputs(&status), vec![Resume, Promote]);
    status = with_inputs(&State::progressing(), &input(None, Some(true), true, false));
    assert_eq!(inputs(&status), vec![Promote, Pause]);
    status = with_inputs(&State::progressing(), &input(None, Some(true), true, true));
    assert_eq!(inputs(&status), vec![PromoteFull], "promote --full wins");
    status = with_inputs(
        &State::progressing(),
        &input(Some(true), Some(true), true, true),
    );
    assert_eq!(inputs(&status), vec![Abort], "abort wins");
    status.phase = Some("Exploded".to_owned());
    assert_eq!(inputs(&status), Vec::<Command>::new());
}

#[test]
fn the_leaders_write_settles_the_inputs() {
    // promote acted on: the next step's status clears it.
    let asked = with_inputs(&State::timed_pause(), &input(None, None, true, true));
    let written = encode(&State::progressing().0, &asked, &ctx(T0));
    assert_eq!(
        (written.promote, written.promote_full),
        (Some(false), Some(false))
    );
    // Inputs nobody wrote stay absent.
    let quiet = encode(
        &State::progressing().0,
        &status_of(&State::progressing()),
        &ctx(T0),
    );
    assert_eq!((quiet.promote, quiet.promote_full), (None, None));

    // An analysis abort sets abort; it stays while Aborted.
    let aborted = encode(
        &State::aborted().0,
        &status_of(&State::progressing()),
        &ctx(T0),
    );
    assert_eq!(aborted.abort, Some(true));
    assert_eq!(
        encode(&State::aborted().0, &aborted, &ctx(T0)).abort,
        Some(true)
    );
    // Retry (abort: false) keeps it false.
    let retried_input = with_inputs(&State::aborted(), &input(Some(false), None, false, false));
    assert_eq!(
        encode(&State::progressing().0, &retried_input, &ctx(T0)).abort,
        Some(false)
    );
    // abort: true that did not apply (Healthy) waits for the same rollout,
    // and a new rollout clears it.
    let healthy_abort = with_inputs(&State::healthy(), &input(Some(true), None, false, false));
    assert_eq!(
        encode(&State::healthy().0, &healthy_abort, &ctx(T0)).abort,
        Some(true)
    );
    let mut next_rollout = State::progressing();
    next_rollout.0.rollout_seq = 4;
    assert_eq!(
        encode(&next_rollout.0, &healthy_abort, &ctx(T0)).abort,
        Some(false)
    );

    // paused mirrors held, whatever was asked.
    let pause_asked = with_inputs(
        &State::progressing(),
        &input(None, Some(true), false, false),
    );
    assert_eq!(
        encode(&State::held().0, &pause_asked, &ctx(T0)).paused,
        Some(true)
    );
    let resume_asked = with_inputs(&State::held(), &input(None, Some(false), false, false));
    assert_eq!(
        encode(&State::timed_pause().0, &resume_asked, &ctx(T0)).paused,
        Some(false)
    );
    let refused_pause = with_inputs(&State::aborted(), &input(None, Some(true), false, false));
    assert_eq!(
        encode(&State::aborted().0, &refused_pause, &ctx(T0)).paused,
        Some(false)
    );
}

#[test]
fn a_command_writes_one_input() {
    let cases = [
        (Command::Abort, serde_json::json!({"abort": true})),
        (Command::Retry, serde_json::json!({"abort": false})),
        (Command::Pause, serde_json::json!({"paused": true})),
        (Command::Resume, serde_json::json!({"paused": false})),
        (Command::Promote, serde_json::json!({"promote": true})),
        (
            Command::PromoteFull,
            serde_json::json!({"promoteFull": true}),
        ),
    ];
    for (command, expected) in cases {
        let written = serde_json::to_value(input_of(command)).expect("serializes");
        assert_eq!(written, expected, "{command}");
    }
}

// --- nonsense ---

#[test]
fn nonsense_is_refused_naming_the_field() {
    type Edit = fn(&mut CanaryRouteStatus);
    let table: Vec<(&str, Edit, &str)> = vec![
        (
            "unknown phase",
            |s| s.phase = Some("Exploded".to_owned()),
            "status.phase: \"Exploded\" is not a phase (Healthy, Progressing, Paused, Aborted, Promoted)",
        ),
        (
            "step past the steps",
            |s| s.step_index = Some(7),
            "status.stepIndex: 7 is past the 5 steps",
        ),
        (
            "step just past the steps while progressing",
            |s| s.step_index = Some(5),
            "status.stepIndex: 5 is past the 5 steps",
        ),
        (
            "negative step",
            |s| s.step_index = Some(-1),
            "status.stepIndex: -1 is negative",
        ),
        (
            "negative step count",
            |s| s.step_count = Some(-2),
            "status.stepCount: -2 is negative",
        ),
        (
            "weight above 100",
            |s| s.canary_weight = Some(150.0),
            "status.canaryWeight: 150 is outside 0 to 100",
        ),
        (
            "negative weight",
            |s| s.canary_weight = Some(-5.0),
            "status.canaryWeight: -5 is outside 0 to 100",
        ),
        (
            "no weight",
            |s| s.canary_weight = None,
            "status.canaryWeight: missing; a status with phase Progressing needs the weight in force",
        ),
        (
            "phase without seq",
            |s| s.seq = None,
            "status.seq: missing; a status with phase Progressing needs the rollout's sequence number",
        ),
        (
            "rollout id of another rollout",
            |s| s.rollout_id = Some("2-v2".to_owned()),
            "status.rolloutId: \"2-v2\" does not match seq 3 and canaryRevision v2 (expected \"3-v2\")",
        ),
        (
            "held pause shorter than its time left",
            |s| {
                s.pause_length_ms = Some(1_000);
                s.pause_remaining_ms = Some(2_000);
            },
            "status.pauseLengthMs: 1000 is shorter than pauseRemainingMs 2000",
        ),
        (
            "unparsable deadline",
            |s| s.pause_deadline = Some("tomorrow".to_owned()),
            "status.pauseDeadline: \"tomorrow\" is not an RFC 3339 time",
        ),
        (
            "unparsable start",
            |s| s.rollout_start_time = Some("2023-13-45T00:00:00Z".to_owned()),
            "status.rolloutStartTime: \"2023-13-45T00:00:00Z\" is not an RFC 3339 time",
        ),
        (
            "unparsable pause start",
            |s| s.pause_start_time = Some("noon".to_owned()),
            "status.pauseStartTime: \"noon\" is not an RFC 3339 time",
        ),
        (
            "time before 1970",
            |s| s.pause_deadline = Some("1969-12-31T23:59:59Z".to_owned()),
            "status.pauseDeadline: \"1969-12-31T23:59:59Z\" is before 1970",
        ),
        (
            "unknown abort reason",
            |s| s.abort_reason = Some("boredom".to_owned()),
            "status.abortReason: \"boredom\" is not an abort reason",
        ),
        (
            "unknown verdict",
            |s| {
                if let Some(a) = s.analysis.as_mut() {
                    a.verdict = Some("Maybe".to_owned());
                }
            },
            "status.analysis.verdict: \"Maybe\" is not a verdict (Pass, Fail, Inconclusive)",
        ),
        (
            "error rate above 1",
            |s| {
                if let Some(a) = s.analysis.as_mut() {
                    a.stable.error_rate = 3.0;
                }
            },
            "status.analysis.stable.errorRate: 3 is outside 0 to 1",
        ),
        (
            "healthy at a step",
            |s| {
                s.phase = Some("Healthy".to_owned());
                s.step_index = Some(1);
            },
            "status.stepIndex: 1 with phase Healthy, which has no step",
        ),
    ];
    for (name, edit, expected) in table {
        let mut status = status_of(&State::progressing());
        edit(&mut status);
        let refused = decode(ROUTE, &status, 5).expect_err(name);
        let message = refused.to_string();
        assert!(
            message.starts_with(expected),
            "{name}: got {message:?}, expected it to start with {expected:?}"
        );
    }
}

#[test]
fn the_step_limit_is_the_status_step_count_then_the_specs() {
    // Promoted stands just past the last step.
    let promoted = status_of(&State::promoted());
    assert!(decode(ROUTE, &promoted, 5).is_ok());
    let mut past = promoted.clone();
    past.step_index = Some(6);
    assert_eq!(
        decode(ROUTE, &past, 5).map(|_| ()),
        Err(StatusRefused {
            field: "stepIndex".to_owned(),
            problem: "6 is past the 5 steps".to_owned()
        })
    );
    // Steps edited since the write: the status's own count decides, and the
    // state machine's reconcile holds the rollout.
    let progressing = status_of(&State::held());
    assert!(decode(ROUTE, &progressing, 1).is_ok());
    let mut no_count = progressing;
    no_count.step_count = None;
    assert_eq!(
        decode(ROUTE, &no_count, 1)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err("status.stepIndex: 1 is past the 1 step".to_owned())
    );
}

/// Numbers the machine has no room after, or a gate before a step that is
/// not there, are refused naming the field: the CanaryRoute comes up held
/// at weight 0 instead of a replica panicking on them.
#[test]
fn a_sequence_or_gate_step_out_of_range_is_refused_naming_the_field() {
    let waiting = |step: usize| {
        let mut status = status_of(&State::progressing());
        status.phase = Some("Paused".to_owned());
        status.webhooks = Some(crate::rollout::WebhookProgress {
            wait: Some(crate::rollout::GateWait {
                gate: crate::rollout::Gate::ConfirmPromotion,
                step,
                detail: None,
            }),
            failures: 0,
        });
        status
    };
    let mut last = status_of(&State::progressing());
    last.seq = Some(u64::MAX);
    last.rollout_id = rollout_id(u64::MAX, Some("v2"));
    let cases = [
        (
            last,
            "status.seq: 18446744073709551615 leaves no room for the next rollout \
             (at most 18446744073709551614)",
        ),
        (
            waiting(5),
            "status.webhooks.wait.step: 5 is past the 5 steps",
        ),
        (
            waiting(usize::MAX),
            "status.webhooks.wait.step: 18446744073709551615 is past the 5 steps",
        ),
    ];
    for (status, expected) in cases {
        assert_eq!(
            decode(ROUTE, &status, 5)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(expected.to_owned())
        );
    }
    // Just within range.
    let mut below = status_of(&State::progressing());
    below.seq = Some(u64::MAX - 1);
    below.rollout_id = rollout_id(u64::MAX - 1, Some("v2"));
    assert!(decode(ROUTE, &below, 5).is_ok());
    assert!(decode(ROUTE, &waiting(4), 5).is_ok());
}

#[test]
fn a_write_over_a_refused_status_says_so_in_a_condition() {
    let mut nonsense = status_of(&State::progressing());
    nonsense.step_index = Some(7);
    let refused = decode(ROUTE, &nonsense, 5).expect_err("refused");
    let written = encode(
        &State::progressing().0,
        &nonsense,
        &StatusContext {
            refused: Some(&refused),
            ..ctx(T0 + 5_000)
        },
    );
    let c = condition(&written, REFUSED_CONDITION);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "InvalidStatus")
    );
    assert!(
        c.message
            .starts_with("status.stepIndex: 7 is past the 5 steps"),
        "{c:?}"
    );
    assert_eq!(written.step_index, Some(0), "the kept state is written");
    // The next write over a readable status clears it.
    let next = encode(&State::timed_pause().0, &written, &ctx(T0 + 9_000));
    let c = condition(&next, REFUSED_CONDITION);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "StatusReadable")
    );
    assert_eq!(c.last_transition_time, Some(format_time(T0 + 9_000)));
    assert_eq!(
        next.conditions
            .iter()
            .filter(|c| c.type_ == REFUSED_CONDITION)
            .count(),
        1
    );
    // Without a refusal ever, there is no such condition.
    assert!(
        status_of(&State::progressing())
            .conditions
            .iter()
            .all(|c| c.type_ != REFUSED_CONDITION)
    );
}
