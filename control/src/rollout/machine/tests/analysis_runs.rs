//! Analysis template runs as inputs of the state machine: a step's run
//! completes it, fails it or holds it; the background run aborts; results
//! of other runs are ignored; in every phase.

use weir_config::AnalysisRef;

use super::*;
use crate::analysis_templates::{RunKey, RunKind, RunPhase};

fn analysis() -> Arc<AnalysisRef> {
    Arc::new(AnalysisRef {
        templates: vec![Arc::from("errors")],
        args: Vec::new(),
        metrics: Vec::new(),
        waiting_for: None,
    })
}

/// setWeight 10, analysis, setWeight 50; a background run beside.
fn analysis_route() -> Route {
    let mut route = Fixture::new()
        .steps(vec![
            Step::SetWeight(pct(10)),
            Step::Analysis(analysis()),
            Step::SetWeight(pct(50)),
        ])
        .0;
    if let Some(s) = &mut route.strategy {
        s.background = Some(analysis());
    }
    route
}

/// At step 2 (the analysis step), weight 10.
fn at_analysis_step() -> RolloutState {
    let route = analysis_route();
    let s = RolloutState::start(&route, T0).state;
    let s = s.tick(&route, T0 + SEC, &pass()).state;
    assert_eq!((s.step_index, s.phase), (Some(1), Phase::Progressing));
    s
}

fn key(state: &RolloutState, kind: RunKind) -> RunKey {
    RunKey {
        rollout_seq: state.rollout_seq,
        rollout_started_ms: state.rollout_started_ms,
        kind,
    }
}

fn result(state: &RolloutState, kind: RunKind, phase: RunPhase) -> Outcome {
    state.on_analysis_result(
        &analysis_route(),
        &key(state, kind),
        phase,
        "metric m: why",
        T0 + 2 * SEC,
    )
}

#[test]
fn the_rollout_wants_the_step_run_and_the_background_run() {
    let route = analysis_route();
    let strategy = route.strategy.as_ref().expect("a strategy");
    let s = at_analysis_step();
    let wanted: Vec<RunKind> = s
        .wanted_analysis_runs(strategy)
        .into_iter()
        .map(|(k, _)| k.kind)
        .collect();
    assert_eq!(wanted, vec![RunKind::Background, RunKind::Step(1)]);
    let first = RolloutState::start(&route, T0).state;
    let wanted: Vec<RunKind> = first
        .wanted_analysis_runs(strategy)
        .into_iter()
        .map(|(k, _)| k.kind)
        .collect();
    assert_eq!(wanted, vec![RunKind::Background]);
    // Nothing runs once the rollout ended.
    for ended in [cmd_on(&s, Command::Abort), cmd_on(&s, Command::PromoteFull)] {
        assert!(
            ended.wanted_analysis_runs(strategy).is_empty(),
            "{:?}",
            ended.phase
        );
    }
}

fn cmd_on(state: &RolloutState, command: Command) -> RolloutState {
    ok(state.command(command, &analysis_route(), T0 + 2 * SEC)).state
}

#[test]
fn a_successful_step_run_completes_the_step() {
    let s = at_analysis_step();
    // The tick never completes an analysis step.
    let ticked = s.tick(&analysis_route(), T0 + 60 * SEC, &pass());
    assert_eq!(ticked.state.step_index, Some(1));
    for phase in [RunPhase::Pending, RunPhase::Running] {
        assert_eq!(result(&s, RunKind::Step(1), phase).transition, None);
    }
    let done = result(&s, RunKind::Step(1), RunPhase::Successful);
    let t = done.transition.expect("a transition");
    assert_eq!(t.kind, TransitionKind::Advanced);
    assert_eq!(
        (done.state.step_index, done.state.canary_weight),
        (Some(2), pct(50))
    );
    assert!(
        t.message.contains("analysis run Successful"),
        "{}",
        t.message
    );
    // A background run's success changes nothing.
    assert_eq!(
        result(&s, RunKind::Background, RunPhase::Successful).transition,
        None
    );
}

#[test]
fn a_failed_or_errored_run_aborts() {
    for kind in [RunKind::Step(1), RunKind::Background] {
        for phase in [RunPhase::Failed, RunPhase::Error] {
            let outcome = result(&at_analysis_step(), kind, phase);
            let t = outcome.transition.expect("a transition");
            assert_eq!(t.kind, TransitionKind::Aborted(AbortReason::AnalysisRun));
            // Told apart for `on-analysis-run-error`.
            assert_eq!(t.run_errored, phase == RunPhase::Error);
            assert_eq!(outcome.state.phase, Phase::Aborted);
            assert_eq!(outcome.state.canary_weight, Weight::ZERO);
            assert!(
                outcome.state.message.contains(phase.as_str()),
                "{}",
                outcome.state.message
            );
            assert!(
                outcome.state.message.contains("metric m: why"),
                "{}",
                outcome.state.message
            );
        }
    }
    assert_eq!(AbortReason::AnalysisRun.metric_label(), "analysis_run");
}

#[test]
fn an_inconclusive_run_holds_for_an_operator() {
    let s = at_analysis_step();
    let held = result(&s, RunKind::Step(1), RunPhase::Inconclusive);
    assert_eq!(
        held.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::AnalysisInconclusive)
    );
    let state = held.state;
    assert_eq!(
        (state.phase, state.held, state.step_index),
        (Phase::Paused, true, Some(1))
    );
    assert!(state.message.contains("Inconclusive"), "{}", state.message);
    assert!(
        state.message.contains("promote goes on"),
        "{}",
        state.message
    );
    // Asked again: already held, nothing new; a success does not release it.
    assert_eq!(
        result(&state, RunKind::Step(1), RunPhase::Inconclusive).transition,
        None
    );
    assert_eq!(
        result(&state, RunKind::Step(1), RunPhase::Successful).transition,
        None
    );
    // Promote skips the analysis step.
    let promoted = cmd_on(&state, Command::Promote);
    assert_eq!(
        (promoted.step_index, promoted.canary_weight),
        (Some(2), pct(50))
    );
    // A background run's inconclusive result holds too.
    let bg = result(&s, RunKind::Background, RunPhase::Inconclusive);
    assert!(bg.state.held);
}

#[test]
fn the_note_of_an_inconclusive_hold_stays_until_the_operator_acts() {
    let route = analysis_route();
    let held = result(
        &at_analysis_step(),
        RunKind::Step(1),
        RunPhase::Inconclusive,
    )
    .state;
    let note = held.message.clone();
    let later = held.tick(&route, T0 + 5 * SEC, &pass()).state;
    assert_eq!(later.message, note);
    let later = later.tick(&route, T0 + 60 * SEC, &pass()).state;
    assert_eq!(later.message, note);
    // An operator's pause and resume write their own messages again.
    let promoted = cmd_on(&later, Command::Promote);
    assert!(
        !promoted.message.contains("Inconclusive"),
        "{}",
        promoted.message
    );
}

#[test]
fn results_of_other_runs_are_ignored() {
    let s = at_analysis_step();
    let stale = [
        RunKey {
            rollout_seq: s.rollout_seq - 1,
            ..key(&s, RunKind::Step(1))
        },
        RunKey {
            rollout_started_ms: s.rollout_started_ms - 1,
            ..key(&s, RunKind::Step(1))
        },
        key(&s, RunKind::Step(0)),
        key(&s, RunKind::Step(2)),
    ];
    for run in stale {
        for phase in [
            RunPhase::Successful,
            RunPhase::Failed,
            RunPhase::Inconclusive,
        ] {
            let outcome = s.on_analysis_result(&analysis_route(), &run, phase, "", T0 + 2 * SEC);
            assert_eq!(outcome.transition, None, "{run:?} {phase}");
            assert_eq!(outcome.state, s);
        }
    }
    // A retry keeps the sequence number; the old run's failure is stale.
    let aborted = result(&s, RunKind::Step(1), RunPhase::Failed).state;
    let retried = ok(aborted.command(Command::Retry, &analysis_route(), T0 + 5 * SEC)).state;
    let old = key(&s, RunKind::Background);
    let outcome =
        retried.on_analysis_result(&analysis_route(), &old, RunPhase::Failed, "", T0 + 6 * SEC);
    assert_eq!(outcome.transition, None);
}

/// Every result in every phase: only Progressing and Paused listen.
#[test]
fn every_result_in_every_phase() {
    let s = at_analysis_step();
    let held_by_command = cmd_on(&s, Command::Pause);
    let states = [
        ("healthy", healthy(), false),
        ("aborted", cmd_on(&s, Command::Abort), false),
        ("promoted", cmd_on(&s, Command::PromoteFull), false),
        ("at the analysis step", s.clone(), true),
        ("held by pause", held_by_command, true),
    ];
    let phases = [
        RunPhase::Pending,
        RunPhase::Running,
        RunPhase::Successful,
        RunPhase::Failed,
        RunPhase::Error,
        RunPhase::Inconclusive,
    ];
    for (name, state, listens) in states {
        for phase in phases {
            let outcome = result(&state, RunKind::Step(1), phase);
            let expected = match (listens, phase) {
                (false, _) | (true, RunPhase::Pending | RunPhase::Running) => None,
                (true, RunPhase::Failed | RunPhase::Error) => {
                    Some(TransitionKind::Aborted(AbortReason::AnalysisRun))
                }
                // Held: neither completes nor holds again.
                (true, RunPhase::Successful | RunPhase::Inconclusive) if state.held => None,
                (true, RunPhase::Successful) => Some(TransitionKind::Advanced),
                (true, RunPhase::Inconclusive) => Some(TransitionKind::AnalysisInconclusive),
            };
            assert_eq!(
                outcome.transition.map(|t| t.kind),
                expected,
                "{name}: {phase}"
            );
        }
    }
}

/// An `analysis` block of templates alone does not gate the steps, and the
/// status says so rather than that there is no block.
#[test]
fn a_block_of_templates_alone_says_steps_go_by_time() {
    let mut route = Fixture::new().without_analysis_block().0;
    if let Some(s) = &mut route.strategy {
        s.background = Some(analysis());
    }
    let no_canary_traffic = observation((0, 0), (0, 0));
    let s = RolloutState::start(&route, T0).state;
    let s = s.tick(&route, T0 + SEC, &no_canary_traffic).state;
    assert_eq!((s.step_index, s.phase), (Some(1), Phase::Paused));
    let s = s.tick(&route, T0 + 2 * SEC, &no_canary_traffic).state;
    assert!(
        s.message.ends_with(
            "the analysis block names templates only, no built-in keys (interval, window, \
             minRequests, ...): steps go by time, commands and analysis runs"
        ),
        "{}",
        s.message
    );
}
