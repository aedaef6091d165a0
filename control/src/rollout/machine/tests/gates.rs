//! Each webhook gate's effect on the machine: answers come in as inputs.

use std::collections::BTreeMap;

use weir_config::{Webhook, WebhookKind, Webhooks};

use super::*;

/// `route()` with one hook of each of `kinds` and `threshold`.
fn with_hooks(steps: Vec<Step>, kinds: &[WebhookKind], threshold: u32) -> Route {
    let mut route = Fixture::new().steps(steps).0;
    if let Some(s) = &mut route.strategy {
        s.webhooks = Webhooks {
            hooks: kinds
                .iter()
                .map(|kind| Webhook {
                    name: Arc::from(kind.as_str()),
                    kind: *kind,
                    url: Arc::from("http://127.0.0.1:1/"),
                    timeout: Duration::from_secs(1),
                    retries: 0,
                    metadata: BTreeMap::new(),
                })
                .collect(),
            threshold,
        };
    }
    route
}

fn answer(s: &RolloutState, route: &Route, kind: WebhookKind, passed: bool, now: u64) -> Outcome {
    s.on_gate_result(route, kind, passed, if passed { "200" } else { "503" }, now)
}

fn two_steps() -> Vec<Step> {
    vec![Step::SetWeight(pct(20)), Step::SetWeight(pct(60))]
}

#[test]
fn confirm_rollout_holds_at_weight_zero_until_it_answers_2xx() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmRollout], 0);
    let s = RolloutState::start(&route, T0).state;
    assert_eq!(shape(&s), (Phase::Paused, None, 0, false));
    assert_eq!(s.waiting_gate(), Some(Gate::ConfirmRollout));
    assert!(
        s.message
            .contains("waiting for the confirm-rollout webhook before step 1/2")
    );
    // A rollout exists: shown at step 0, not as none.
    assert_eq!(s.shown_step_index(), Some(0));
    assert_eq!(RolloutState::blank(&route).shown_step_index(), None);

    // Ticks do not go past it; a "no" keeps it waiting, with the answer.
    let s = s.tick(&route, T0 + SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, None, 0, false));
    let no = answer(&s, &route, ConfirmRollout, false, T0 + 2 * SEC);
    assert!(no.transition.is_none());
    assert_eq!(shape(&no.state), (Phase::Paused, None, 0, false));
    assert!(
        no.state.message.contains("last answer: 503"),
        "{}",
        no.state.message
    );

    // An answer of another gate changes nothing.
    let other = answer(&no.state, &route, ConfirmPromotion, true, T0 + 3 * SEC);
    assert_eq!(other.state, no.state);

    let yes = answer(&no.state, &route, ConfirmRollout, true, T0 + 3 * SEC);
    assert_eq!(
        yes.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::GatePassed)
    );
    assert_eq!(shape(&yes.state), (Phase::Progressing, Some(0), 20, false));
    assert_eq!(yes.state.waiting_gate(), None);
}

#[test]
fn pre_rollout_failing_beyond_the_threshold_aborts_before_any_traffic() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmRollout, PreRollout], 1);
    let s = RolloutState::start(&route, T0).state;
    let s = answer(&s, &route, ConfirmRollout, true, T0 + SEC).state;
    assert_eq!(s.waiting_gate(), Some(Gate::PreRollout));
    assert_eq!(shape(&s), (Phase::Paused, None, 0, false));

    let first = answer(&s, &route, PreRollout, false, T0 + 2 * SEC);
    assert_eq!(
        first.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::WebhookFailureCounted)
    );
    assert_eq!(first.state.waiting_gate(), Some(Gate::PreRollout));
    assert_eq!(first.state.canary_weight, Weight::ZERO);

    let second = answer(&first.state, &route, PreRollout, false, T0 + 3 * SEC);
    assert_eq!(
        second.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::Aborted(AbortReason::Webhook))
    );
    assert_eq!(shape(&second.state), (Phase::Aborted, None, 0, false));
    assert_eq!(second.state.abort_reason, Some(AbortReason::Webhook));

    // Retry asks the gates again from the start, with the count reset.
    let retried = cmd_on(&second.state, &route, Command::Retry, T0 + 4 * SEC);
    assert_eq!(retried.waiting_gate(), Some(Gate::ConfirmRollout));
    assert_eq!(retried.webhooks.failures, 0);
}

#[test]
fn a_passing_pre_rollout_lets_traffic_move() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[PreRollout], 0);
    let s = RolloutState::start(&route, T0).state;
    let s = answer(&s, &route, PreRollout, true, T0 + SEC).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(0), 20, false));
}

#[test]
fn confirm_traffic_increase_holds_each_increase_but_not_a_decrease() {
    use WebhookKind::*;
    let steps = vec![
        Step::SetWeight(pct(20)),
        Step::SetWeight(pct(60)),
        Step::SetWeight(pct(10)),
        Step::Pause(None),
    ];
    let route = with_hooks(steps, &[ConfirmTrafficIncrease], 0);
    let s = RolloutState::start(&route, T0).state;
    assert_eq!(s.waiting_gate(), Some(Gate::ConfirmTrafficIncrease));
    let s = answer(&s, &route, ConfirmTrafficIncrease, true, T0 + SEC).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(0), 20, false));

    // Step 1 done: waits before step 2 at the weight it had.
    let s = s.tick(&route, T0 + 2 * SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(0), 20, false));
    assert_eq!(s.waiting_gate(), Some(Gate::ConfirmTrafficIncrease));
    let s = s.tick(&route, T0 + 3 * SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(0), 20, false));
    let s = answer(&s, &route, ConfirmTrafficIncrease, false, T0 + 4 * SEC).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(0), 20, false));
    let s = answer(&s, &route, ConfirmTrafficIncrease, true, T0 + 5 * SEC).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(1), 60, false));

    // 60 % → 10 % is no increase: entered at once.
    let s = s.tick(&route, T0 + 6 * SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(2), 10, false));
}

#[test]
fn confirm_promotion_holds_the_last_step() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmPromotion], 0);
    let s = RolloutState::start(&route, T0).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(0), 20, false));
    let s = s.tick(&route, T0 + SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(0), 20, false));
    assert_eq!(s.waiting_gate(), Some(Gate::ConfirmPromotion));
    let s = answer(&s, &route, ConfirmPromotion, true, T0 + 2 * SEC).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(1), 60, false));
    let s = s.tick(&route, T0 + 3 * SEC, &pass()).state;
    assert_eq!(s.phase, Phase::Promoted);
}

#[test]
fn rollout_hook_failures_beyond_the_threshold_abort() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[Rollout], 1);
    let s = RolloutState::start(&route, T0).state;
    assert!(s.is_running_steps());
    let passed = answer(&s, &route, Rollout, true, T0 + SEC);
    assert_eq!(passed.state, s);
    let once = answer(&s, &route, Rollout, false, T0 + SEC);
    assert_eq!(
        once.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::WebhookFailureCounted)
    );
    assert_eq!(shape(&once.state), (Phase::Progressing, Some(0), 20, false));
    let twice = answer(&once.state, &route, Rollout, false, T0 + 2 * SEC);
    assert_eq!(twice.state.phase, Phase::Aborted);
    assert_eq!(twice.state.abort_reason, Some(AbortReason::Webhook));
}

#[test]
fn a_rollback_hook_aborts_on_2xx_only_while_the_rollout_runs() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[Rollback], 0);
    let s = RolloutState::start(&route, T0).state;
    let no = answer(&s, &route, Rollback, false, T0 + SEC);
    assert!(no.transition.is_none());
    assert_eq!(no.state, s);
    let yes = answer(&s, &route, Rollback, true, T0 + SEC);
    assert_eq!(
        yes.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::Aborted(AbortReason::WebhookRollback))
    );
    assert_eq!(yes.state.canary_weight, Weight::ZERO);
    // Once aborted (or promoted), it changes nothing.
    let again = answer(&yes.state, &route, Rollback, true, T0 + 2 * SEC);
    assert!(again.transition.is_none());
    let promoted = cmd_on(&s, &route, Command::PromoteFull, T0 + SEC);
    assert!(
        answer(&promoted, &route, Rollback, true, T0 + 2 * SEC)
            .transition
            .is_none()
    );
}

#[test]
fn operators_act_on_a_waiting_gate() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmRollout], 0);
    let s = RolloutState::start(&route, T0).state;

    // pause holds it: not asked, answers ignored; resume waits again.
    let held = cmd_on(&s, &route, Command::Pause, T0 + SEC);
    assert_eq!(held.waiting_gate(), None);
    assert_eq!(
        answer(&held, &route, ConfirmRollout, true, T0 + SEC).state,
        held
    );
    let resumed = cmd_on(&held, &route, Command::Resume, T0 + 2 * SEC);
    assert_eq!(resumed.waiting_gate(), Some(Gate::ConfirmRollout));
    assert_eq!(shape(&resumed), (Phase::Paused, None, 0, false));

    // promote goes past the gate.
    let promoted = cmd_on(&s, &route, Command::Promote, T0 + SEC);
    assert_eq!(shape(&promoted), (Phase::Progressing, Some(0), 20, false));
    assert_eq!(promoted.waiting_gate(), None);

    // abort ends the wait.
    let aborted = cmd_on(&s, &route, Command::Abort, T0 + SEC);
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(aborted.webhooks.wait, None);
}

#[test]
fn a_wait_survives_a_restart() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmRollout, PreRollout], 3);
    let s = RolloutState::start(&route, T0).state;
    let s = answer(&s, &route, ConfirmRollout, true, T0 + SEC).state;
    let s = answer(&s, &route, PreRollout, false, T0 + 2 * SEC).state;
    let json = serde_json::to_string(&s).expect("serializable");
    let restored: RolloutState = serde_json::from_str(&json).expect("deserializable");
    assert_eq!(restored, s);
    let reconciled = restored
        .reconcile(&route, T0 + 3 * SEC)
        .expect("same config");
    assert_eq!(reconciled.state.waiting_gate(), Some(Gate::PreRollout));
    assert_eq!(reconciled.state.webhooks.failures, 1);
}

fn cmd_on(s: &RolloutState, route: &Route, command: Command, now: u64) -> RolloutState {
    ok(s.command(command, route, now)).state
}

/// A gate that waits after an analysis step's run succeeded: later results
/// of the same run, handed in at every tick, change nothing (one
/// step-completed transition, then a quiet wait).
#[test]
fn a_gate_after_a_successful_analysis_step_waits_quietly() {
    use WebhookKind::*;
    let (route, s, key) = at_an_analysis_step_before_confirm_promotion();
    let done = s.on_analysis_result(&route, &key, RunPhase::Successful, "ok", T0 + 2 * SEC);
    assert_eq!(
        done.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::Advanced)
    );
    assert_eq!(done.state.waiting_gate(), Some(Gate::ConfirmPromotion));
    let no = answer(&done.state, &route, ConfirmPromotion, false, T0 + 3 * SEC).state;
    for i in 4..8 {
        let again = no.on_analysis_result(&route, &key, RunPhase::Successful, "ok", T0 + i * SEC);
        assert!(
            again.transition.is_none(),
            "tick {i}: {:?}",
            again.transition
        );
        assert_eq!(again.state, no);
    }
    assert!(no.message.contains("last answer: 503"), "{}", no.message);
}

/// `promote` ends a pause before the last step; the gates before the next
/// step are then asked, and a second `promote` goes past them.
#[test]
fn promote_from_a_pause_asks_the_gates_of_the_next_step() {
    use WebhookKind::*;
    let steps = vec![
        Step::SetWeight(pct(20)),
        Step::Pause(None),
        Step::SetWeight(pct(100)),
    ];
    let route = with_hooks(steps, &[ConfirmPromotion], 0);
    let s = RolloutState::start(&route, T0).state;
    let s = s.tick(&route, T0 + SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(1), 20, false));
    let promoted = cmd_on(&s, &route, Command::Promote, T0 + 2 * SEC);
    assert_eq!(promoted.waiting_gate(), Some(Gate::ConfirmPromotion));
    assert_eq!(shape(&promoted), (Phase::Paused, Some(1), 20, false));
    let past = cmd_on(&promoted, &route, Command::Promote, T0 + 3 * SEC);
    assert_eq!(past.waiting_gate(), None);
    assert_eq!(shape(&past), (Phase::Progressing, Some(2), 100, false));
}

/// `promote` after an Inconclusive analysis step asks the gate before the
/// next step; the step is done, so its run is no longer wanted and later
/// results of it hold nothing again.
#[test]
fn promote_after_an_inconclusive_step_waits_on_the_gate_not_on_the_run() {
    let (route, s, key) = at_an_analysis_step_before_confirm_promotion();
    let strategy = route.strategy.as_ref().expect("a strategy");
    let held = s
        .on_analysis_result(
            &route,
            &key,
            RunPhase::Inconclusive,
            "no data",
            T0 + 2 * SEC,
        )
        .state;
    assert!(held.held);
    let promoted = cmd_on(&held, &route, Command::Promote, T0 + 3 * SEC);
    assert_eq!(promoted.waiting_gate(), Some(Gate::ConfirmPromotion));
    assert!(
        promoted
            .wanted_analysis_runs(strategy)
            .iter()
            .all(|(k, _)| k.kind != RunKind::Step(1)),
        "the step's run is not wanted while the gate waits"
    );
    for phase in [
        RunPhase::Inconclusive,
        RunPhase::Failed,
        RunPhase::Successful,
    ] {
        let again = promoted.on_analysis_result(&route, &key, phase, "late", T0 + 4 * SEC);
        assert!(again.transition.is_none(), "{phase:?}");
        assert_eq!(again.state, promoted, "{phase:?}");
    }
}

/// Held before step 1 (an unreadable state), `promote` starts the steps as
/// `resume` does: the gates of the rollout's start are not asked again.
#[test]
fn promote_before_step_one_starts_the_steps_as_resume_does() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmRollout], 0);
    let held = RolloutState::unreadable(&route, T0, "garbage");
    let promoted = cmd_on(&held, &route, Command::Promote, T0 + SEC);
    let resumed = cmd_on(&held, &route, Command::Resume, T0 + SEC);
    assert_eq!(promoted.waiting_gate(), None);
    assert_eq!(shape(&promoted), shape(&resumed));
    assert_eq!(promoted.step_index, Some(0));
}

/// Steps `setWeight: 10`, an analysis, `setWeight: 100`, with a
/// `confirm-promotion` hook: the route, its rollout at the analysis step,
/// and the key of that step's run.
fn at_an_analysis_step_before_confirm_promotion() -> (Route, RolloutState, RunKey) {
    let analysis = Arc::new(weir_config::AnalysisRef {
        templates: vec![Arc::from("ok")],
        args: Vec::new(),
        metrics: Vec::new(),
        waiting_for: None,
    });
    let steps = vec![
        Step::SetWeight(pct(10)),
        Step::Analysis(analysis),
        Step::SetWeight(pct(100)),
    ];
    let route = with_hooks(steps, &[WebhookKind::ConfirmPromotion], 0);
    let s = RolloutState::start(&route, T0).state;
    let s = s.tick(&route, T0 + SEC, &pass()).state;
    assert_eq!(s.step_index, Some(1));
    let key = RunKey {
        rollout_seq: s.rollout_seq,
        rollout_started_ms: s.rollout_started_ms,
        kind: RunKind::Step(1),
    };
    (route, s, key)
}

/// A current step edited into one that raises the weight asks
/// `confirm-traffic-increase` before the weight moves, held or not; an
/// edit that lowers it does not.
#[test]
fn a_step_edited_into_a_higher_weight_asks_confirm_traffic_increase() {
    use WebhookKind::*;
    let route = with_hooks(two_steps(), &[ConfirmTrafficIncrease], 0);
    let s = RolloutState::start(&route, T0).state;
    let s = answer(&s, &route, ConfirmTrafficIncrease, true, T0 + SEC).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(0), 20, false));

    let raised = with_hooks(
        vec![Step::SetWeight(pct(50)), Step::SetWeight(pct(60))],
        &[ConfirmTrafficIncrease],
        0,
    );
    let edited = s.reconcile(&raised, T0 + 2 * SEC).expect("taken").state;
    assert_eq!(shape(&edited), (Phase::Paused, Some(0), 20, false));
    assert_eq!(edited.waiting_gate(), Some(Gate::ConfirmTrafficIncrease));
    let passed = answer(&edited, &raised, ConfirmTrafficIncrease, true, T0 + 3 * SEC).state;
    assert_eq!(shape(&passed), (Phase::Progressing, Some(0), 50, false));

    let lowered = with_hooks(
        vec![Step::SetWeight(pct(10)), Step::SetWeight(pct(60))],
        &[ConfirmTrafficIncrease],
        0,
    );
    let edited = s.reconcile(&lowered, T0 + 2 * SEC).expect("taken").state;
    assert_eq!(shape(&edited), (Phase::Progressing, Some(0), 10, false));

    // Held, then resumed after the edit: the gate first.
    let held = ok(s.command(Command::Pause, &route, T0 + 2 * SEC)).state;
    let kept = held.reconcile(&raised, T0 + 3 * SEC).expect("taken").state;
    let resumed = ok(kept.command(Command::Resume, &raised, T0 + 4 * SEC)).state;
    assert_eq!(shape(&resumed), (Phase::Paused, Some(0), 20, false));
    assert_eq!(resumed.waiting_gate(), Some(Gate::ConfirmTrafficIncrease));
}
