//! Blue-green rollouts (SPEC 12) in the state machine: the stages, every
//! command in every stage, each failure path, the scale-down delay, the
//! webhook gates and stale run results.

use std::collections::BTreeMap;

use weir_config::{
    AnalysisRef, BlueGreen, HeaderOverride, Preview, Webhook, WebhookKind, Webhooks,
};

use super::*;
use crate::analysis_templates::{RunKey, RunKind, RunPhase};

use BlueGreenStage::{AwaitingPromotion, Done, PostPromotion, PrePromotion};

fn templates(name: &str) -> Arc<AnalysisRef> {
    Arc::new(AnalysisRef {
        templates: vec![Arc::from(name)],
        args: Vec::new(),
        metrics: Vec::new(),
        waiting_for: None,
    })
}

/// A blue-green route; the fixture's analysis block stays (gated).
struct Bg {
    pre: bool,
    post: bool,
    auto: bool,
    delay_s: u64,
    hooks: Vec<WebhookKind>,
}

impl Bg {
    /// Pre- and post-promotion analysis, manual promotion: steps
    /// preview, pre, pause {}, swap, post.
    fn manual() -> Bg {
        Bg {
            pre: true,
            post: true,
            auto: false,
            delay_s: 0,
            hooks: Vec::new(),
        }
    }

    /// Automatic promotion at once, no analysis runs: preview, swap.
    fn auto() -> Bg {
        Bg {
            pre: false,
            post: false,
            auto: true,
            delay_s: 0,
            hooks: Vec::new(),
        }
    }

    fn route(&self) -> Route {
        let bg = BlueGreen {
            preview: Preview {
                hosts: vec![weir_config::HostMatch::Exact("preview.shop".to_owned())],
                header: Some(HeaderOverride {
                    name: Arc::from("x-preview"),
                    value: Arc::from("1"),
                }),
            },
            auto_promotion_enabled: self.auto,
            auto_promotion_delay: Duration::from_secs(self.delay_s),
            scale_down_delay: Duration::from_secs(30),
            pre_promotion: self.pre.then(|| templates("smoke")),
            post_promotion: self.post.then(|| templates("errors")),
        };
        let mut route = Fixture::new().steps(bg.steps()).0;
        if let Some(s) = &mut route.strategy {
            s.blue_green = Some(Arc::new(bg));
            s.webhooks = Webhooks {
                hooks: self
                    .hooks
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
                threshold: 0,
            };
        }
        route
    }
}

fn manual_route() -> Route {
    Bg::manual().route()
}

fn strategy(route: &Route) -> &Strategy {
    route.strategy.as_ref().expect("a strategy")
}

fn stage(s: &RolloutState, route: &Route) -> BlueGreenStage {
    s.blue_green_stage(strategy(route))
        .expect("a blue-green stage")
}

fn run_key(s: &RolloutState, kind: RunKind) -> RunKey {
    RunKey {
        rollout_seq: s.rollout_seq,
        rollout_started_ms: s.rollout_started_ms,
        kind,
    }
}

fn run_result(
    s: &RolloutState,
    route: &Route,
    kind: RunKind,
    phase: RunPhase,
    now: u64,
) -> Outcome {
    s.on_analysis_result(route, &run_key(s, kind), phase, "metric m: why", now)
}

fn bg_cmd(s: &RolloutState, command: Command, now: u64) -> RolloutState {
    ok(s.command(command, &manual_route(), now)).state
}

// --- the stages of the manual route ---

/// Step 1 (preview, weight 0), Progressing.
fn preview() -> RolloutState {
    RolloutState::start(&manual_route(), T0).state
}

/// Step 2: the pre-promotion analysis runs.
fn pre_promotion() -> RolloutState {
    preview().tick(&manual_route(), T0 + SEC, &pass()).state
}

/// Step 3: waiting for promote.
fn awaiting() -> RolloutState {
    run_result(
        &pre_promotion(),
        &manual_route(),
        RunKind::PrePromotion(1),
        RunPhase::Successful,
        T0 + 2 * SEC,
    )
    .state
}

fn awaiting_held() -> RolloutState {
    bg_cmd(&awaiting(), Command::Pause, T0 + 2 * SEC)
}

/// Step 4: swapped, weight 100.
fn swapped() -> RolloutState {
    bg_cmd(&awaiting(), Command::Promote, T0 + 3 * SEC)
}

/// Step 5: the post-promotion analysis runs.
fn post_promotion() -> RolloutState {
    swapped().tick(&manual_route(), T0 + 4 * SEC, &pass()).state
}

/// Promoted at T0 + 5 s.
fn done() -> RolloutState {
    run_result(
        &post_promotion(),
        &manual_route(),
        RunKind::PostPromotion(4),
        RunPhase::Successful,
        T0 + 5 * SEC,
    )
    .state
}

fn aborted_in_pre_promotion() -> RolloutState {
    bg_cmd(&pre_promotion(), Command::Abort, T0 + 2 * SEC)
}

/// (phase, step, weight %, held, stage)
type BgShape = (Phase, Option<usize>, u32, bool, BlueGreenStage);

fn bg_shape(s: &RolloutState) -> BgShape {
    let (phase, step, weight, held) = shape(s);
    (phase, step, weight, held, stage(s, &manual_route()))
}

#[test]
fn the_stages_follow_each_other_with_the_weight_and_the_preview() {
    use Phase::*;
    let cases: [(&str, RolloutState, BgShape); 8] = [
        (
            "preview",
            preview(),
            (Progressing, Some(0), 0, false, BlueGreenStage::Preview),
        ),
        (
            "pre",
            pre_promotion(),
            (Progressing, Some(1), 0, false, PrePromotion),
        ),
        (
            "awaiting",
            awaiting(),
            (Paused, Some(2), 0, false, AwaitingPromotion),
        ),
        (
            "held",
            awaiting_held(),
            (Paused, Some(2), 0, true, AwaitingPromotion),
        ),
        (
            "swapped",
            swapped(),
            (Progressing, Some(3), 100, false, PostPromotion),
        ),
        (
            "post",
            post_promotion(),
            (Progressing, Some(4), 100, false, PostPromotion),
        ),
        ("done", done(), (Promoted, Some(5), 100, false, Done)),
        (
            "aborted",
            aborted_in_pre_promotion(),
            (Aborted, Some(1), 0, false, PrePromotion),
        ),
    ];
    for (name, state, want) in cases {
        assert_eq!(bg_shape(&state), want, "{name}");
        // The stage is persisted with the state.
        assert_eq!(state.blue_green_stage, Some(want.4), "{name}");
        let live = state.route_override().is_some_and(|o| o.preview_live);
        assert_eq!(live, name != "aborted", "{name}: preview live");
        assert!(
            state.message.contains("blue-green") || name == "done" || name == "aborted",
            "{name}: {}",
            state.message
        );
    }
    assert!(
        awaiting().message.contains("waiting for promote"),
        "{}",
        awaiting().message
    );
    // Without an analysis block, the stages are not called steps that go
    // by time.
    let mut unjudged = manual_route();
    if let Some(s) = &mut unjudged.strategy {
        s.gated_by_analysis = false;
    }
    let mut state = awaiting();
    state.last_judgement = None;
    assert_eq!(
        state.analysis_note(strategy(&unjudged)),
        "no analysis block: the stages go by commands, autoPromotionSeconds and their \
         analysis runs"
    );
    let mut auto = Bg::auto().route();
    if let Some(s) = &mut auto.strategy {
        s.gated_by_analysis = false;
    }
    assert_eq!(
        state.analysis_note(strategy(&auto)),
        "no analysis block: the stages go by commands and autoPromotionSeconds"
    );
    assert_eq!(done().promoted_revision.as_deref(), Some("v2"));
    assert!(
        done().message.contains("abort swaps back to v1 for 30 s"),
        "{}",
        done().message
    );
}

#[test]
fn the_promoted_message_counts_down_the_switch_back_and_says_when_it_is_over() {
    let route = manual_route();
    let at = done().promoted_ms.expect("promoted at the swap");
    let during = done().tick(&route, at + 20 * SEC, &pass()).state;
    assert!(
        during.message.contains("abort swaps back to v1 for 10 s"),
        "{}",
        during.message
    );
    let after = during.tick(&route, at + 31 * SEC, &pass()).state;
    assert!(
        after
            .message
            .contains("scaleDownDelaySeconds is over: v1 is no longer the switch-back target"),
        "{}",
        after.message
    );
    assert!(!after.message.contains("swaps back"), "{}", after.message);
    assert_eq!(after.phase, Phase::Promoted);
}

#[test]
fn every_command_in_every_stage() {
    use Command::*;
    use Phase::*;
    type Want = Result<BgShape, &'static str>;
    let now = T0 + 10 * SEC;
    let fixtures: [(&str, Fixed); 8] = [
        ("preview", preview),
        ("pre", pre_promotion),
        ("awaiting", awaiting),
        ("held", awaiting_held),
        ("swapped", swapped),
        ("post", post_promotion),
        ("done", done),
        ("aborted", aborted_in_pre_promotion),
    ];
    let promoted: Want = Ok((Promoted, Some(5), 100, false, Done));
    let no_retry: Want = Err("retry applies only to an Aborted rollout");
    let no_resume: Want = Err("resume applies only to a rollout held by pause");
    let table: [[Want; 6]; 8] = [
        [
            Ok((Progressing, Some(1), 0, false, PrePromotion)),
            promoted,
            Ok((Aborted, Some(0), 0, false, BlueGreenStage::Preview)),
            no_retry,
            Ok((Paused, Some(0), 0, true, BlueGreenStage::Preview)),
            no_resume,
        ],
        [
            // The pre-promotion analysis decides: promote does not skip it.
            Err(
                "promote does not skip a blue-green analysis; checkout is in blue-green PrePromotion: the pre-promotion analysis decides",
            ),
            promoted,
            Ok((Aborted, Some(1), 0, false, PrePromotion)),
            no_retry,
            Ok((Paused, Some(1), 0, true, PrePromotion)),
            no_resume,
        ],
        [
            Ok((Progressing, Some(3), 100, false, PostPromotion)),
            promoted,
            Ok((Aborted, Some(2), 0, false, AwaitingPromotion)),
            no_retry,
            Ok((Paused, Some(2), 0, true, AwaitingPromotion)),
            no_resume,
        ],
        [
            Ok((Progressing, Some(3), 100, false, PostPromotion)),
            promoted,
            Ok((Aborted, Some(2), 0, false, AwaitingPromotion)),
            no_retry,
            Err("pause applies only to a Progressing or Paused rollout that is not held"),
            Ok((Paused, Some(2), 0, false, AwaitingPromotion)),
        ],
        [
            Ok((Progressing, Some(4), 100, false, PostPromotion)),
            promoted,
            Ok((Aborted, Some(3), 0, false, PostPromotion)),
            no_retry,
            Ok((Paused, Some(3), 100, true, PostPromotion)),
            no_resume,
        ],
        [
            // Nor the post-promotion analysis.
            Err(
                "promote does not skip a blue-green analysis; checkout is in blue-green PostPromotion: the post-promotion analysis decides",
            ),
            promoted,
            Ok((Aborted, Some(4), 0, false, PostPromotion)),
            no_retry,
            Ok((Paused, Some(4), 100, true, PostPromotion)),
            no_resume,
        ],
        [
            Err("promote applies only to a Progressing or Paused rollout; checkout is Promoted"),
            Err(
                "promote --full applies only to a Progressing or Paused rollout; checkout is Promoted",
            ),
            // Within scaleDownDelaySeconds: swapped back at once, at the
            // last step (the post-promotion analysis).
            Ok((Aborted, Some(4), 0, false, PostPromotion)),
            no_retry,
            Err("pause applies only to a Progressing or Paused rollout that is not held"),
            no_resume,
        ],
        [
            Err("promote applies only to a Progressing or Paused rollout; checkout is Aborted"),
            Err(
                "promote --full applies only to a Progressing or Paused rollout; checkout is Aborted",
            ),
            Err(
                "abort applies only to a Progressing or Paused rollout, or a Promoted one within its scaleDownDelaySeconds; checkout is Aborted (already)",
            ),
            // Retry starts again at the preview.
            Ok((Progressing, Some(0), 0, false, BlueGreenStage::Preview)),
            Err("pause applies only to a Progressing or Paused rollout that is not held"),
            no_resume,
        ],
    ];
    let route = manual_route();
    for ((name, fixture), wants) in fixtures.iter().zip(&table) {
        let before = fixture();
        for (command, want) in Command::ALL.iter().zip(wants) {
            match (want, before.command(*command, &route, now)) {
                (Ok(shape_want), Ok(outcome)) => {
                    assert_eq!(bg_shape(&outcome.state), *shape_want, "{name}: {command}");
                    // What a command leaves is what a restart reads back.
                    let restored = outcome.state.reconcile(&route, now).expect("reconciled");
                    assert!(restored.transition.is_none(), "{name}: {command}");
                    assert_eq!(restored.state, outcome.state, "{name}: {command}");
                    let t = outcome.transition.expect("a transition");
                    assert_eq!(t.canary_weight, outcome.state.canary_weight);
                    assert_eq!(
                        outcome.state.blue_green_stage,
                        Some(shape_want.4),
                        "{name}: {command}"
                    );
                }
                (Err(message), Err(refused)) => {
                    assert!(
                        refused.message().starts_with(message),
                        "{name}: {command}: {}",
                        refused.message()
                    );
                    assert_eq!(refused.phase, Some(before.phase));
                }
                (want, got) => panic!("{name}: {command}: want {want:?}, got {got:?}"),
            }
        }
    }
    // Swapped back from Done: the new revision is not promoted after all.
    let back = bg_cmd(&done(), Abort, now);
    assert_eq!(back.promoted_revision, None);
    assert_eq!(back.abort_reason, Some(AbortReason::Manual));
}

#[test]
fn abort_after_the_scale_down_delay_is_refused() {
    let route = manual_route();
    let promoted_at = T0 + 5 * SEC;
    let within = ok(done().command(Command::Abort, &route, promoted_at + 29 * SEC));
    assert_eq!(within.state.canary_weight, Weight::ZERO);
    let late = done()
        .command(Command::Abort, &route, promoted_at + 30 * SEC)
        .expect_err("abort after the delay");
    assert!(
        late.message()
            .contains("scaleDownDelaySeconds is over: v1 is no longer the switch-back target"),
        "{}",
        late.message()
    );
    // The persisted promotion time keeps the delay across a restart.
    let json = serde_json::to_string(&done()).expect("serializable");
    let back: RolloutState = serde_json::from_str(&json).expect("deserializable");
    assert_eq!(back.promoted_ms, Some(promoted_at));
    assert!(
        back.command(Command::Abort, &route, promoted_at + 31 * SEC)
            .is_err()
    );
    // A canary route's Promoted phase keeps its abort.
    assert!(
        promoted()
            .command(Command::Abort, &super::route(), T0 + 3_600 * SEC)
            .is_ok()
    );
}

/// `route` with `scaleDownDelaySeconds` set to `secs`.
fn with_scale_down_delay(mut route: Route, secs: u64) -> Route {
    let strategy = route.strategy.as_mut().expect("a strategy");
    let mut bg = (**strategy.blue_green.as_ref().expect("blue-green")).clone();
    bg.scale_down_delay = Duration::from_secs(secs);
    strategy.blue_green = Some(Arc::new(bg));
    route
}

/// The switch-back window is fixed at the swap: raising
/// `scaleDownDelaySeconds` once it closed does not open it again (the old
/// revision may be gone by then), and lowering it does not cut it short.
#[test]
fn the_switch_back_window_is_fixed_at_the_swap() {
    let promoted_at = T0 + 5 * SEC;
    assert_eq!(done().scale_down_deadline_ms, Some(promoted_at + 30 * SEC));
    let raised = with_scale_down_delay(manual_route(), 600);
    let late = done()
        .command(Command::Abort, &raised, promoted_at + 31 * SEC)
        .expect_err("abort after the window closed, the delay raised since");
    assert!(
        late.message().contains("scaleDownDelaySeconds is over"),
        "{}",
        late.message()
    );
    let lowered = with_scale_down_delay(manual_route(), 1);
    let within = ok(done().command(Command::Abort, &lowered, promoted_at + 20 * SEC));
    assert_eq!(within.state.canary_weight, Weight::ZERO);
    // A retry is a rollout of its own: the last window is not its.
    let retried = ok(within
        .state
        .command(Command::Retry, &lowered, promoted_at + 21 * SEC));
    assert_eq!(retried.state.scale_down_deadline_ms, None);
    // Kept across a restart.
    let json = serde_json::to_string(&done()).expect("serializable");
    let back: RolloutState = serde_json::from_str(&json).expect("deserializable");
    assert_eq!(back.scale_down_deadline_ms, Some(promoted_at + 30 * SEC));
    // A state kept before the deadline was counts from the promotion with
    // the delay configured now.
    let mut older = done();
    older.scale_down_deadline_ms = None;
    assert_eq!(
        older.switch_back_until_ms(strategy(&raised)),
        Some(promoted_at + 600 * SEC)
    );
}

#[test]
fn automatic_promotion_swaps_after_the_preview_and_its_delay() {
    let route = Bg::auto().route();
    let s = RolloutState::start(&route, T0).state;
    assert_eq!(
        (stage(&s, &route), s.canary_weight),
        (BlueGreenStage::Preview, Weight::ZERO)
    );
    let swapped = s.tick(&route, T0 + SEC, &pass());
    assert_eq!(swapped.state.canary_weight, Weight::FULL);
    assert_eq!(stage(&swapped.state, &route), PostPromotion);
    assert_eq!(
        swapped.transition.map(|t| t.kind),
        Some(TransitionKind::Advanced)
    );
    let done = swapped.state.tick(&route, T0 + 2 * SEC, &pass()).state;
    assert_eq!((done.phase, stage(&done, &route)), (Phase::Promoted, Done));

    let delayed = Bg {
        delay_s: 20,
        ..Bg::auto()
    }
    .route();
    let s = RolloutState::start(&delayed, T0).state;
    let waiting = s.tick(&delayed, T0 + SEC, &pass()).state;
    assert_eq!(stage(&waiting, &delayed), AwaitingPromotion);
    assert_eq!(waiting.pause_deadline_ms, Some(T0 + 21 * SEC));
    let still = waiting.tick(&delayed, T0 + 20 * SEC, &pass()).state;
    assert_eq!(
        (stage(&still, &delayed), still.canary_weight),
        (AwaitingPromotion, Weight::ZERO)
    );
    let swapped = still.tick(&delayed, T0 + 21 * SEC, &pass()).state;
    assert_eq!(
        (stage(&swapped, &delayed), swapped.canary_weight),
        (PostPromotion, Weight::FULL)
    );
}

#[test]
fn a_failed_or_errored_pre_promotion_analysis_aborts_before_any_active_traffic() {
    let route = manual_route();
    for phase in [RunPhase::Failed, RunPhase::Error] {
        let out = run_result(
            &pre_promotion(),
            &route,
            RunKind::PrePromotion(1),
            phase,
            T0 + 2 * SEC,
        );
        assert_eq!(out.state.phase, Phase::Aborted, "{phase}");
        assert_eq!(out.state.canary_weight, Weight::ZERO);
        assert_eq!(
            out.state.abort_reason,
            Some(AbortReason::PrePromotionAnalysis)
        );
        assert!(
            out.state
                .message
                .contains("the pre-promotion analysis run is"),
            "{}",
            out.state.message
        );
        assert!(!out.state.route_override().is_some_and(|o| o.preview_live));
    }
    // Inconclusive holds for an operator, still at weight 0.
    let held = run_result(
        &pre_promotion(),
        &route,
        RunKind::PrePromotion(1),
        RunPhase::Inconclusive,
        T0 + 2 * SEC,
    )
    .state;
    assert_eq!(
        bg_shape(&held),
        (Phase::Paused, Some(1), 0, true, PrePromotion)
    );
}

#[test]
fn a_failed_post_promotion_analysis_swaps_back_at_once() {
    let route = manual_route();
    let out = run_result(
        &post_promotion(),
        &route,
        RunKind::PostPromotion(4),
        RunPhase::Failed,
        T0 + 5 * SEC,
    );
    assert_eq!(out.state.phase, Phase::Aborted);
    assert_eq!(out.state.canary_weight, Weight::ZERO);
    assert_eq!(
        out.state.abort_reason,
        Some(AbortReason::PostPromotionAnalysis)
    );
    assert_eq!(
        AbortReason::PostPromotionAnalysis.metric_label(),
        "post_promotion_analysis"
    );
    assert_eq!(
        out.transition.and_then(|t| t.abort_reason()),
        Some(AbortReason::PostPromotionAnalysis)
    );
}

#[test]
fn the_built_in_judge_aborts_a_failing_preview() {
    let route = manual_route();
    let out = preview().tick(&route, T0 + SEC, &failing());
    assert_eq!(out.state.phase, Phase::Aborted);
    assert_eq!(out.state.canary_weight, Weight::ZERO);
    assert_eq!(out.state.abort_reason, Some(AbortReason::AnalysisErrorRate));
    // And after the swap, the active traffic.
    let out = swapped().tick(&route, T0 + 4 * SEC, &failing());
    assert_eq!(
        (out.state.phase, out.state.canary_weight),
        (Phase::Aborted, Weight::ZERO)
    );
}

#[test]
fn stale_and_foreign_run_results_are_ignored() {
    let route = manual_route();
    // A pre-promotion result after the swap.
    let post = post_promotion();
    for phase in [RunPhase::Failed, RunPhase::Successful] {
        let out = run_result(&post, &route, RunKind::PrePromotion(1), phase, T0 + 5 * SEC);
        assert_eq!(out, Outcome::unchanged(post.clone()), "{phase}");
    }
    // A result keyed as a plain step for the pre-promotion step.
    let pre = pre_promotion();
    let out = run_result(
        &pre,
        &route,
        RunKind::Step(1),
        RunPhase::Failed,
        T0 + 2 * SEC,
    );
    assert_eq!(out.state.phase, Phase::Progressing);
    // A result of the rollout before a retry.
    let retried = bg_cmd(&aborted_in_pre_promotion(), Command::Retry, T0 + 3 * SEC);
    let at_pre = retried.tick(&route, T0 + 4 * SEC, &pass()).state;
    let old = RunKey {
        rollout_started_ms: T0,
        ..run_key(&at_pre, RunKind::PrePromotion(1))
    };
    let out = at_pre.on_analysis_result(&route, &old, RunPhase::Failed, "old", T0 + 5 * SEC);
    assert_eq!(out.state.phase, Phase::Progressing);
    // The runs the stages want.
    let kinds = |s: &RolloutState| -> Vec<RunKind> {
        s.wanted_analysis_runs(strategy(&route))
            .into_iter()
            .map(|(k, _)| k.kind)
            .collect()
    };
    assert_eq!(kinds(&preview()), vec![]);
    assert_eq!(kinds(&pre_promotion()), vec![RunKind::PrePromotion(1)]);
    assert_eq!(kinds(&awaiting()), vec![]);
    assert_eq!(kinds(&post_promotion()), vec![RunKind::PostPromotion(4)]);
    assert_eq!(kinds(&done()), vec![]);
}

/// `confirm-rollout` comes before anything of the new revision is
/// reachable: the preview is live only once it said yes (and while
/// `pre-rollout` tests it).
#[test]
fn the_preview_is_not_live_until_confirm_rollout_says_yes() {
    use WebhookKind::*;
    let route = Bg {
        hooks: vec![ConfirmRollout, PreRollout],
        ..Bg::auto()
    }
    .route();
    let s = RolloutState::start(&route, T0).state;
    assert_eq!(s.waiting_gate(), Some(Gate::ConfirmRollout));
    assert!(
        !s.route_override().is_some_and(|o| o.preview_live),
        "confirm-rollout has not said yes"
    );
    let said_no = s
        .on_gate_result(&route, ConfirmRollout, false, "403", T0 + SEC)
        .state;
    assert_eq!(said_no.waiting_gate(), Some(Gate::ConfirmRollout));
    assert!(!said_no.route_override().is_some_and(|o| o.preview_live));
    let confirmed = said_no
        .on_gate_result(&route, ConfirmRollout, true, "200", T0 + 2 * SEC)
        .state;
    assert_eq!(confirmed.waiting_gate(), Some(Gate::PreRollout));
    assert!(
        confirmed.route_override().is_some_and(|o| o.preview_live),
        "pre-rollout tests the preview"
    );
}

#[test]
fn the_webhook_gates_run_against_the_preview_and_before_the_swap() {
    use WebhookKind::*;
    let route = Bg {
        hooks: vec![PreRollout, ConfirmPromotion, ConfirmTrafficIncrease],
        ..Bg::auto()
    }
    .route();
    let s = RolloutState::start(&route, T0).state;
    assert_eq!(s.waiting_gate(), Some(Gate::PreRollout));
    assert_eq!(
        (stage(&s, &route), s.canary_weight),
        (BlueGreenStage::Preview, Weight::ZERO)
    );
    assert!(
        s.route_override().is_some_and(|o| o.preview_live),
        "the gate tests the preview"
    );
    // A failing pre-rollout gate aborts at weight 0.
    let failed = s
        .on_gate_result(&route, PreRollout, false, "503", T0 + SEC)
        .state;
    assert_eq!(
        (failed.phase, failed.canary_weight),
        (Phase::Aborted, Weight::ZERO)
    );
    assert_eq!(failed.abort_reason, Some(AbortReason::Webhook));
    // Passing it enters the preview step; then confirm-promotion (and no
    // confirm-traffic-increase) holds the swap.
    let previewing = s
        .on_gate_result(&route, PreRollout, true, "200", T0 + SEC)
        .state;
    assert_eq!(previewing.step_index, Some(0));
    let held = previewing.tick(&route, T0 + 2 * SEC, &pass()).state;
    assert_eq!(held.waiting_gate(), Some(Gate::ConfirmPromotion));
    assert_eq!(
        (stage(&held, &route), held.canary_weight),
        (AwaitingPromotion, Weight::ZERO)
    );
    // Aborted while the gate holds the swap: the stage it was aborted in.
    let aborted = ok(held.command(Command::Abort, &route, T0 + 3 * SEC)).state;
    assert_eq!(stage(&aborted, &route), AwaitingPromotion);
    assert_eq!(aborted.blue_green_stage, Some(AwaitingPromotion));
    let swapped = held
        .on_gate_result(&route, ConfirmPromotion, true, "200", T0 + 3 * SEC)
        .state;
    assert_eq!(
        (stage(&swapped, &route), swapped.canary_weight),
        (PostPromotion, Weight::FULL)
    );
}

#[test]
fn every_stage_survives_a_restart() {
    let route = manual_route();
    for state in [
        preview(),
        pre_promotion(),
        awaiting(),
        awaiting_held(),
        swapped(),
        post_promotion(),
        done(),
        aborted_in_pre_promotion(),
    ] {
        let json = serde_json::to_string(&state).expect("serializable");
        let back: RolloutState = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, state);
        let resumed = back.reconcile(&route, T0 + 6 * SEC).expect("same config");
        assert_eq!(resumed.transition, None, "{json}");
        assert_eq!(bg_shape(&resumed.state), bg_shape(&state));
    }
    // A stage whose run was in flight wants the run again.
    let json = serde_json::to_string(&pre_promotion()).expect("serializable");
    let back: RolloutState = serde_json::from_str(&json).expect("deserializable");
    assert_eq!(back.wanted_analysis_runs(strategy(&route)).len(), 1);
}

#[test]
fn an_edit_that_moves_the_stages_holds_the_rollout_where_it_is() {
    // Auto-promotion switched on while waiting for promote: the wait is
    // gone and step 3 would now be the swap.
    let auto = Bg {
        auto: true,
        ..Bg::manual()
    }
    .route();
    let out = awaiting()
        .reconcile(&auto, T0 + 6 * SEC)
        .expect("same revision");
    let t = out.transition.expect("a transition");
    assert_eq!(t.kind, TransitionKind::StepsChanged);
    assert_eq!(shape(&out.state), (Phase::Paused, None, 0, true));
    assert!(
        out.state
            .message
            .contains("stage AwaitingPromotion would now be stage PostPromotion"),
        "{}",
        out.state.message
    );
    // It stays held, and resume starts again at the preview.
    let again = out
        .state
        .reconcile(&auto, T0 + 7 * SEC)
        .expect("same config");
    assert_eq!(again.transition, None);
    let resumed = ok(out.state.command(Command::Resume, &auto, T0 + 8 * SEC)).state;
    assert_eq!(stage(&resumed, &auto), BlueGreenStage::Preview);

    // An edit that keeps the stages changes nothing (the delay is unused
    // without auto-promotion).
    let longer = Bg {
        delay_s: 45,
        ..Bg::manual()
    }
    .route();
    assert_eq!(
        awaiting()
            .reconcile(&longer, T0 + 6 * SEC)
            .expect("ok")
            .transition,
        None
    );

    // The strategy switched to canary steps mid-rollout, and back.
    let canary = super::route();
    let out = swapped()
        .reconcile(&canary, T0 + 6 * SEC)
        .expect("same revision");
    assert_eq!(out.state.canary_weight, Weight::FULL, "held where it is");
    assert_eq!(shape(&out.state), (Phase::Paused, None, 100, true));
    let out = progressing()
        .reconcile(&manual_route(), T0 + 6 * SEC)
        .expect("ok");
    assert_eq!(
        out.transition.map(|t| t.kind),
        Some(TransitionKind::StepsChanged)
    );
}

/// An edit after the swap follows the post-promotion analysis: removed,
/// the rollout is complete; moved (the pre-promotion analysis removed), it
/// starts again at its new place. Traffic stays on the new revision.
#[test]
fn an_edit_after_the_swap_follows_the_post_promotion_analysis() {
    let no_post = Bg {
        post: false,
        ..Bg::manual()
    }
    .route();
    let out = post_promotion()
        .reconcile(&no_post, T0 + 6 * SEC)
        .expect("same revision");
    assert_eq!(
        out.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::Completed)
    );
    assert_eq!(
        bg_shape(&out.state),
        (Phase::Promoted, Some(4), 100, false, Done),
        "{}",
        out.state.message
    );
    assert_eq!(out.state.promoted_ms, Some(T0 + 6 * SEC));

    let no_pre = Bg {
        pre: false,
        ..Bg::manual()
    }
    .route();
    let out = post_promotion()
        .reconcile(&no_pre, T0 + 6 * SEC)
        .expect("same revision");
    assert_eq!(
        out.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::StepsChanged)
    );
    assert_eq!(
        bg_shape(&out.state),
        (Phase::Progressing, Some(3), 100, false, PostPromotion),
        "{}",
        out.state.message
    );
    assert_eq!(
        out.state.wanted_analysis_runs(strategy(&no_pre)).len(),
        1,
        "the analysis runs at its new place"
    );
    // Held by `pause`, it stays held where it now is.
    let held = ok(post_promotion().command(Command::Pause, &manual_route(), T0 + 5 * SEC)).state;
    let out = held
        .reconcile(&no_pre, T0 + 6 * SEC)
        .expect("same revision");
    assert_eq!(
        bg_shape(&out.state),
        (Phase::Paused, Some(3), 100, true, PostPromotion),
        "{}",
        out.state.message
    );
}

/// With an `analysis` block, the preview is judged on the preview's own
/// traffic: it does not end on an inconclusive judgement (weight 0 does
/// not exempt it, as it exempts a canary's `setWeight: 0`), and it ends on
/// a pass.
#[test]
fn the_preview_waits_for_the_judge_to_pass_on_its_traffic() {
    let route = manual_route();
    let s = preview();
    let waiting = s.tick(&route, T0 + SEC, &inconclusive());
    assert!(waiting.transition.is_none());
    assert_eq!(
        bg_shape(&waiting.state),
        (
            Phase::Progressing,
            Some(0),
            0,
            false,
            BlueGreenStage::Preview
        )
    );
    let waiting = waiting.state.tick(&route, T0 + 2 * SEC, &inconclusive());
    assert_eq!(stage(&waiting.state, &route), BlueGreenStage::Preview);
    assert!(
        waiting.state.message.contains(
            "the preview waits for minRequests: 5 canary requests in the window, need 20; send it \
             requests (host preview.shop or header x-preview: 1) or promote"
        ),
        "{}",
        waiting.state.message
    );
    let passed = waiting.state.tick(&route, T0 + 3 * SEC, &pass()).state;
    assert_eq!(stage(&passed, &route), BlueGreenStage::PrePromotion);

    // Without an analysis block, steps go by time and commands as before.
    let mut ungated = route.clone();
    if let Some(strategy) = &mut ungated.strategy {
        strategy.gated_by_analysis = false;
    }
    let s = RolloutState::start(&ungated, T0).state;
    let moved = s.tick(&ungated, T0 + SEC, &inconclusive()).state;
    assert_eq!(stage(&moved, &ungated), BlueGreenStage::PrePromotion);
}

/// `promote` at the wait for promotion asks `confirm-promotion` before the
/// swap; a "no" holds it there, and a second `promote` goes past the gate.
#[test]
fn promote_asks_confirm_promotion_before_the_swap() {
    let route = Bg {
        hooks: vec![WebhookKind::ConfirmPromotion],
        ..Bg::manual()
    }
    .route();
    let s = RolloutState::start(&route, T0).state;
    let s = s.tick(&route, T0 + SEC, &pass()).state;
    let s = run_result(
        &s,
        &route,
        RunKind::PrePromotion(1),
        RunPhase::Successful,
        T0 + 2 * SEC,
    )
    .state;
    assert_eq!(stage(&s, &route), BlueGreenStage::AwaitingPromotion);
    assert_eq!(s.waiting_gate(), None, "the pause waits for promote");

    let promoted = ok(s.command(Command::Promote, &route, T0 + 3 * SEC)).state;
    assert_eq!(promoted.waiting_gate(), Some(Gate::ConfirmPromotion));
    assert_eq!(promoted.canary_weight, Weight::ZERO, "not swapped yet");
    assert_eq!(stage(&promoted, &route), BlueGreenStage::AwaitingPromotion);
    let no = promoted.on_gate_result(
        &route,
        WebhookKind::ConfirmPromotion,
        false,
        "HTTP 500",
        T0 + 4 * SEC,
    );
    assert_eq!(no.state.canary_weight, Weight::ZERO);
    assert!(
        no.state.message.contains("last answer: HTTP 500"),
        "{}",
        no.state.message
    );

    let overridden = ok(no.state.command(Command::Promote, &route, T0 + 5 * SEC)).state;
    assert_eq!(overridden.waiting_gate(), None);
    assert_eq!(overridden.canary_weight, Weight::FULL);
    assert_eq!(stage(&overridden, &route), BlueGreenStage::PostPromotion);
}

/// Held in a stage whose analysis ran (an Inconclusive run, or `pause`),
/// `promote` goes on to the next stage, as the hold's message says; only
/// a running analysis is not skipped by it.
#[test]
fn promote_goes_on_from_an_inconclusive_or_paused_analysis_stage() {
    let route = manual_route();
    let held = run_result(
        &pre_promotion(),
        &route,
        RunKind::PrePromotion(1),
        RunPhase::Inconclusive,
        T0 + 2 * SEC,
    )
    .state;
    assert_eq!(
        bg_shape(&held),
        (Phase::Paused, Some(1), 0, true, PrePromotion)
    );
    let promoted = bg_cmd(&held, Command::Promote, T0 + 3 * SEC);
    assert_eq!(
        bg_shape(&promoted),
        (Phase::Paused, Some(2), 0, false, AwaitingPromotion)
    );
    let paused = bg_cmd(&pre_promotion(), Command::Pause, T0 + 2 * SEC);
    let promoted = bg_cmd(&paused, Command::Promote, T0 + 3 * SEC);
    assert_eq!(
        bg_shape(&promoted),
        (Phase::Paused, Some(2), 0, false, AwaitingPromotion)
    );
}
