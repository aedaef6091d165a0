//! The decisions about CanaryRoutes, leader and follower, without a cluster.

use std::sync::Arc;

use weir_config::{Route, Weight};
use weir_proxy::metrics::RoleCounts;

use super::*;
use crate::controller::ControlState;
use crate::fixtures::{self, START_MS};
use crate::persist::{MemoryStore, Stored};
use crate::rollout::{Phase, TransitionKind};

const STEPS: &str = "[{setWeight: 5}, {pause: {}}, {setWeight: 25}, {pause: {duration: 1m}}]";

/// A control state with one file route (`web`, a fixed split) and the
/// CanaryRoute `shop/checkout` as discovery would compile it.
async fn control() -> (ControlState, Route) {
    let text = fixtures::config_text(
        None,
        &(fixtures::route("web", None) + &fixtures::route("checkout", Some(STEPS))),
    );
    let loaded = fixtures::loaded(&text);
    let resolved = fixtures::resolved(&loaded).await;
    let mut cluster_route = loaded.config().routes[1].clone();
    cluster_route.name = Arc::from("shop/checkout");
    cluster_route.path_prefix = "/shop".to_owned();
    let single = fixtures::loaded(&fixtures::config_text(None, &fixtures::route("web", None)));
    let control =
        ControlState::restore_with(single, resolved, Arc::new(MemoryStore::default()), START_MS)
            .expect("restores");
    (control, cluster_route)
}

fn seen(state: Option<RolloutState>, inputs: Vec<Command>) -> impl Fn(&str) -> Observed {
    move |_| Observed {
        stored: match &state {
            Some(s) => Stored::Found(Box::new(s.clone())),
            None => Stored::Missing,
        },
        inputs: inputs.clone(),
        marked_not_served: false,
        aborted_here: false,
    }
}

fn canary_weight(control: &ControlState, route: &str) -> Weight {
    let snapshot = control.snapshot();
    snapshot
        .routes
        .iter()
        .find(|r| &*r.name == route)
        .map(|r| r.split.canary_weight)
        .expect("the route is in the snapshot")
}

/// The state of `route` after `steps` (0-based index) as a leader would have it.
fn state_at(route: &Route, step: usize) -> RolloutState {
    let mut state = RolloutState::start(route, START_MS).state;
    for _ in 0..step {
        state = state
            .command(Command::Promote, route, START_MS)
            .expect("promote applies")
            .state;
    }
    state
}

/// `control`, leading, starts `route`'s rollout (no status yet) and keeps it
/// as written.
fn lead_the_start(control: &mut ControlState, route: &Route) {
    let decisions = control.decide_cluster(
        std::slice::from_ref(route),
        true,
        &seen(None, vec![]),
        START_MS,
    );
    control.apply_cluster(vec![route.clone()], true, decisions, vec![Ok(())]);
}

#[tokio::test]
async fn a_leader_starts_the_rollout_of_a_route_without_status_and_writes_it() {
    let (mut control, route) = control().await;
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(None, vec![]),
        START_MS,
    );
    let [(name, ClusterDecision::Write(outcome))] = decisions.as_slice() else {
        panic!("one write expected: {decisions:?}");
    };
    assert_eq!(name, "shop/checkout");
    assert_eq!(outcome.state.canary_weight, Weight::from_percent_int(5));
    let (republish, kept) = control.apply_cluster(vec![route], true, decisions, vec![Ok(())]);
    assert!(republish);
    assert!(matches!(kept.as_slice(), [(_, t)] if t.kind == TransitionKind::Started));
    assert_eq!(
        canary_weight(&control, "shop/checkout"),
        Weight::from_percent_int(5)
    );
    assert_eq!(canary_weight(&control, "web"), Weight::from_percent_int(10));
}

#[tokio::test]
async fn a_failed_status_write_keeps_nothing() {
    let (mut control, route) = control().await;
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(None, vec![]),
        START_MS,
    );
    let conflict = std::io::Error::other("409: the status changed since it was read");
    control.apply_cluster(vec![route], true, decisions, vec![Err(conflict)]);
    assert!(!control.rollouts.contains_key("shop/checkout"));
    assert_eq!(canary_weight(&control, "shop/checkout"), Weight::ZERO);
}

#[tokio::test]
async fn a_follower_serves_the_weight_of_the_status_and_writes_nothing() {
    let (mut control, route) = control().await;
    let status = state_at(&route, 2);
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        false,
        &seen(Some(status.clone()), vec![]),
        START_MS,
    );
    assert_eq!(
        decisions,
        vec![("shop/checkout".to_owned(), ClusterDecision::Keep(status))]
    );
    let (republish, kept) = control.apply_cluster(vec![route], false, decisions, vec![]);
    assert!(republish && kept.is_empty());
    assert_eq!(
        canary_weight(&control, "shop/checkout"),
        Weight::from_percent_int(25)
    );
}

#[tokio::test]
async fn a_follower_without_status_sends_nothing_to_the_canary() {
    let (mut control, route) = control().await;
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        false,
        &seen(None, vec![]),
        START_MS,
    );
    assert_eq!(
        decisions,
        vec![("shop/checkout".to_owned(), ClusterDecision::Drop)]
    );
    control.apply_cluster(vec![route], false, decisions, vec![]);
    assert_eq!(canary_weight(&control, "shop/checkout"), Weight::ZERO);
}

#[tokio::test]
async fn a_follower_aborts_at_once_on_an_abort_input() {
    let (control, route) = control().await;
    let status = state_at(&route, 2);
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        false,
        &seen(Some(status), vec![Command::Abort]),
        START_MS,
    );
    let [(_, ClusterDecision::Keep(state))] = decisions.as_slice() else {
        panic!("a follower keeps: {decisions:?}");
    };
    assert_eq!(state.phase, Phase::Aborted);
    assert_eq!(state.canary_weight, Weight::ZERO);
}

/// The guardrail's abort, whose `abort` input could not be written, is
/// not undone by the status's older state of the same rollout; once a
/// leader is heard (the flag off), the status rules again.
#[tokio::test]
async fn a_follower_keeps_its_guardrail_abort_over_the_status_until_a_leader_is_heard() {
    let (mut control, route) = control().await;
    let status = state_at(&route, 2);
    let aborted = status
        .command(Command::Abort, &route, START_MS)
        .expect("an active rollout aborts")
        .state;
    control
        .rollouts
        .insert("shop/checkout".to_owned(), aborted.clone());
    let observed = |aborted_here: bool| {
        let status = status.clone();
        move |_: &str| Observed {
            stored: Stored::Found(Box::new(status.clone())),
            inputs: vec![],
            marked_not_served: false,
            aborted_here,
        }
    };
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        false,
        &observed(true),
        START_MS,
    );
    assert_eq!(
        decisions,
        vec![("shop/checkout".to_owned(), ClusterDecision::Keep(aborted))]
    );
    let decisions = control.decide_cluster(&[route], false, &observed(false), START_MS);
    assert_eq!(
        decisions,
        vec![("shop/checkout".to_owned(), ClusterDecision::Keep(status))]
    );
}

#[tokio::test]
async fn a_leader_acts_on_a_promote_input_and_writes_the_next_step() {
    let (control, route) = control().await;
    let paused = state_at(&route, 1);
    assert_eq!(paused.phase, Phase::Paused);
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(Some(paused), vec![Command::Promote]),
        START_MS,
    );
    let [(_, ClusterDecision::Write(outcome))] = decisions.as_slice() else {
        panic!("a write expected: {decisions:?}");
    };
    assert_eq!(outcome.state.step_index, Some(2));
    assert_eq!(outcome.state.canary_weight, Weight::from_percent_int(25));
}

#[tokio::test]
async fn a_leader_writes_its_state_back_over_a_status_it_cannot_read() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    let nonsense = |_: &str| Observed {
        stored: Stored::Unreadable("status.stepIndex: 7 is past the 4 steps".to_owned()),
        inputs: vec![],
        marked_not_served: false,
        aborted_here: false,
    };
    let decisions = control.decide_cluster(&[route], true, &nonsense, START_MS);
    let [(_, ClusterDecision::Write(outcome))] = decisions.as_slice() else {
        panic!("a rewrite expected: {decisions:?}");
    };
    assert_eq!(
        outcome.state.step_index,
        Some(0),
        "the last known state, not the nonsense"
    );
}

#[tokio::test]
async fn a_leader_keeps_its_own_state_when_the_status_matches_it() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    let mine = control.rollouts["shop/checkout"].clone();
    let decisions =
        control.decide_cluster(&[route], true, &seen(Some(mine.clone()), vec![]), START_MS);
    assert_eq!(
        decisions,
        vec![("shop/checkout".to_owned(), ClusterDecision::Keep(mine))]
    );
}

/// A status that says its route is not served, from a time it was not,
/// is written again though the state matches: the write sets `Ready` from
/// the phase.
#[tokio::test]
async fn a_leader_writes_its_state_over_a_status_marked_not_served() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    let mine = control.rollouts["shop/checkout"].clone();
    let marked = |_: &str| Observed {
        stored: Stored::Found(Box::new(mine.clone())),
        inputs: vec![],
        marked_not_served: true,
        aborted_here: false,
    };
    let decisions = control.decide_cluster(&[route], true, &marked, START_MS);
    let [(_, ClusterDecision::Write(outcome))] = decisions.as_slice() else {
        panic!("a rewrite expected: {decisions:?}");
    };
    assert_eq!(outcome.state, mine);
}

#[tokio::test]
async fn only_the_leader_judges_canary_routes() {
    let (mut control, route) = control().await;
    let status = state_at(&route, 0);
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        false,
        &seen(Some(status), vec![]),
        START_MS,
    );
    control.apply_cluster(vec![route], false, decisions, vec![]);
    let zero = |_: &str, _| RoleCounts::zero();
    let later = START_MS + 5_000;
    assert!(
        control.judge(zero, later).is_empty(),
        "a follower does not judge"
    );
    control.set_leading(true);
    let judged = control.judge(zero, later + 5_000);
    assert!(
        judged.iter().any(|(name, _)| name == "shop/checkout"),
        "{judged:?}"
    );
}

#[tokio::test]
async fn a_route_that_leaves_the_cluster_loses_its_state() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    let (republish, _) = control.apply_cluster(vec![], true, vec![], vec![]);
    assert!(republish);
    assert!(!control.rollouts.contains_key("shop/checkout"));
    assert!(
        control
            .snapshot()
            .routes
            .iter()
            .all(|r| &*r.name != "shop/checkout")
    );
}

#[tokio::test]
async fn a_route_made_again_under_its_name_starts_afresh() {
    let (mut control, route) = control().await;
    // The old object's rollout, two steps on.
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(Some(state_at(&route, 2)), vec![]),
        START_MS,
    );
    control.apply_cluster(vec![route.clone()], true, decisions, vec![Ok(())]);
    assert_eq!(control.rollouts["shop/checkout"].step_index, Some(2));

    // The new object has no status yet. Kept, the old rollout would be
    // taken for its own and written to it.
    control.forget_cluster_route("shop/checkout");
    lead_the_start(&mut control, &route);
    assert_eq!(control.rollouts["shop/checkout"].step_index, Some(0));
}

/// A CanaryRoute whose strategy is dropped: a rollout it had is ended, and
/// its status says so; one Promoted with the spec still naming the old
/// stable is held, its promoted revision serving while the spec names it
/// as the canary; without any rollout, nothing is written.
#[tokio::test]
async fn a_route_that_drops_its_strategy_ends_its_rollout_or_is_held_behind_its_promotion() {
    let (mut control, route) = control().await;
    let mut fixed = route.clone();
    fixed.strategy = None;
    fixed.fixed_weight = Weight::from_percent_int(10);

    // Mid-rollout: ended, written Healthy.
    let progressing = state_at(&route, 0);
    let decisions = control.decide_cluster(
        std::slice::from_ref(&fixed),
        true,
        &seen(Some(progressing), vec![]),
        START_MS,
    );
    match &decisions[0].1 {
        ClusterDecision::Write(outcome) => {
            assert_eq!(outcome.state.phase, Phase::Healthy);
            assert_eq!(
                outcome.transition.as_ref().map(|t| t.kind),
                Some(TransitionKind::Ended)
            );
        }
        other => panic!("a write of the ended rollout, not {other:?}"),
    }

    // Promoted v2, the spec still stable v1 with v2 as a fixed split: held,
    // v2 serving every request.
    let promoted = state_at(&route, 0)
        .command(Command::PromoteFull, &route, START_MS)
        .expect("promote --full")
        .state;
    let decisions = control.decide_cluster(
        std::slice::from_ref(&fixed),
        true,
        &seen(Some(promoted.clone()), vec![]),
        START_MS,
    );
    control.apply_cluster(vec![fixed.clone()], true, decisions, vec![Ok(())]);
    assert_eq!(control.rollouts["shop/checkout"].phase, Phase::Promoted);
    assert_eq!(canary_weight(&control, "shop/checkout"), Weight::FULL);

    // No canary at all: held at weight 0, the message naming the change.
    let mut bare = fixed.clone();
    bare.canary = None;
    let decisions = control.decide_cluster(
        std::slice::from_ref(&bare),
        true,
        &seen(Some(promoted), vec![]),
        START_MS,
    );
    let held = match &decisions[0].1 {
        ClusterDecision::Write(outcome) => {
            assert_eq!(outcome.state.canary_weight, Weight::ZERO);
            assert!(
                outcome.state.message.contains("set stable.revision to v2"),
                "{}",
                outcome.state.message
            );
            outcome.state.clone()
        }
        other => panic!("a write of the held state, not {other:?}"),
    };
    // Once the status says so, later syncs leave it alone.
    let decisions = control.decide_cluster(
        std::slice::from_ref(&bare),
        true,
        &seen(Some(held), vec![]),
        START_MS + 1_000,
    );
    assert!(
        matches!(decisions[0].1, ClusterDecision::Keep(_)),
        "{:?}",
        decisions[0].1
    );

    // Healthy (no rollout), nothing kept either: nothing to decide.
    let (fresh, _) = self::control().await;
    let healthy = RolloutState::start(&fixed, START_MS).state;
    let decisions = fresh.decide_cluster(
        std::slice::from_ref(&fixed),
        true,
        &seen(Some(healthy), vec![]),
        START_MS,
    );
    assert!(
        matches!(decisions[0].1, ClusterDecision::Drop),
        "{:?}",
        decisions[0].1
    );
}

/// An `abort` input the state refuses (a blue-green promotion past its
/// switch-back window) is not written back at every sync; a refused
/// `promote` is, to clear it.
#[tokio::test]
async fn a_refused_abort_input_is_not_written_back_at_every_sync() {
    let text = fixtures::config_text(
        None,
        "  - name: checkout\n    pathPrefix: /checkout\n    stable: {revision: v1, endpoints: [127.0.0.1:9001]}\n    canary: {revision: v2, endpoints: [127.0.0.1:9002]}\n    strategy:\n      blueGreen: {preview: {header: {name: x-preview, value: \"1\"}}, autoPromotionEnabled: false, scaleDownDelaySeconds: 30}\n",
    );
    let loaded = fixtures::loaded(&text);
    let resolved = fixtures::resolved(&loaded).await;
    let mut route = loaded.config().routes[0].clone();
    route.name = Arc::from("shop/checkout");
    let single = fixtures::loaded(&fixtures::config_text(None, &fixtures::route("web", None)));
    let control =
        ControlState::restore_with(single, resolved, Arc::new(MemoryStore::default()), START_MS)
            .expect("restores");
    let promoted = RolloutState::start(&route, START_MS)
        .state
        .command(Command::PromoteFull, &route, START_MS)
        .expect("promote --full applies")
        .state;
    assert_eq!(promoted.phase, Phase::Promoted);
    let later = START_MS + 60_000;
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(Some(promoted.clone()), vec![Command::Abort]),
        later,
    );
    assert!(
        matches!(decisions.as_slice(), [(_, ClusterDecision::Keep(s))] if s.phase == Phase::Promoted),
        "{decisions:?}"
    );
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(Some(promoted.clone()), vec![Command::Promote]),
        later,
    );
    assert!(
        matches!(decisions.as_slice(), [(_, ClusterDecision::Write(_))]),
        "{decisions:?}"
    );

    // The spec moves on (v2 stable, v3 the new revision) while the refused
    // abort is still in the status: the new rollout starts, unaborted, and
    // the write clears the old input.
    let mut next = route.clone();
    next.stable.revision = Arc::from("v2");
    if let Some(canary) = next.canary.as_mut() {
        canary.revision = Arc::from("v3");
    }
    let decisions = control.decide_cluster(
        std::slice::from_ref(&next),
        true,
        &seen(Some(promoted.clone()), vec![Command::Abort]),
        later + 1_000,
    );
    match decisions.as_slice() {
        [(_, ClusterDecision::Write(outcome))] => {
            assert_ne!(outcome.state.phase, Phase::Aborted, "{outcome:?}");
            assert_eq!(outcome.state.canary_revision.as_deref(), Some("v3"));
            assert_eq!(outcome.state.rollout_seq, promoted.rollout_seq + 1);
        }
        other => panic!("a write of the new rollout, not {other:?}"),
    }
}

/// A CanaryRoute that is gone leaves nothing behind: its state, its abort
/// counts and its last judgement time go with it.
#[tokio::test]
async fn a_gone_canary_route_leaves_nothing_behind() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    let aborted = state_at(&route, 0)
        .command(Command::Abort, &route, START_MS + 1_000)
        .expect("abort applies");
    let decisions = vec![("shop/checkout".to_owned(), ClusterDecision::Write(aborted))];
    control.apply_cluster(vec![route.clone()], true, decisions, vec![Ok(())]);
    control
        .last_judged
        .insert("shop/checkout".to_owned(), START_MS);
    assert!(
        control
            .aborts
            .keys()
            .any(|(name, _)| name == "shop/checkout")
    );

    control.apply_cluster(Vec::new(), true, Vec::new(), Vec::new());
    assert!(!control.rollouts.contains_key("shop/checkout"));
    assert!(!control.last_judged.contains_key("shop/checkout"));
    assert!(
        !control
            .aborts
            .keys()
            .any(|(name, _)| name == "shop/checkout"),
        "{:?}",
        control.aborts
    );
}

/// A replica made leader while a tick waits judges the whole window on the
/// sum of every replica's counts: the counts a tick reads are chosen with
/// the leadership, not before it. A history that began with this replica's
/// own totals and went on with every replica's would judge the difference,
/// traffic long past (here an earlier rollout's 600 canary errors).
#[tokio::test]
async fn a_new_leader_never_judges_its_own_counts_against_every_replicas() {
    let (mut control, route) = control().await;
    let status = state_at(&route, 0);
    // A follower, serving the leader's status.
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        false,
        &seen(Some(status.clone()), vec![]),
        START_MS,
    );
    control.apply_cluster(vec![route.clone()], false, decisions, vec![]);
    control.set_cluster_coverage(3, 3);
    // Made leader by a sync between the tick's start and its judgement.
    let decisions = control.decide_cluster(
        std::slice::from_ref(&route),
        true,
        &seen(Some(status), vec![]),
        START_MS,
    );
    control.apply_cluster(vec![route.clone()], true, decisions, vec![]);

    let counts = |requests: u64, errors: u64| RoleCounts {
        requests,
        errors,
        latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
    };
    // This replica's totals since it started, and every replica's.
    let own = move |_: &str, role: weir_proxy::Role| match role {
        weir_proxy::Role::Canary => counts(1_000, 0),
        weir_proxy::Role::Stable => counts(19_000, 0),
    };
    let summed = move |_: &str, role: weir_proxy::Role| match role {
        weir_proxy::Role::Canary => counts(3_000, 600),
        weir_proxy::Role::Stable => counts(57_000, 0),
    };
    let t0 = START_MS + 5_000;
    let _ = control.judge_counted(&own, &summed, t0);
    // No request was served since.
    let judged = control.judge_counted(&own, &summed, t0 + 1_000);
    let judgement = checkout_judgement(&judged);
    assert_eq!(
        (judgement.canary.requests, judgement.canary.errors),
        (0, 0),
        "no request was served in the window, yet it counts {:?} ({:?})",
        judgement.canary,
        judgement.verdict
    );
}

/// A leader counting too few replicas judges inconclusive and says so:
/// it said "0 canary requests in the window, need 20" (its minRequests),
/// blaming the traffic for what the missing counters did.
#[tokio::test]
async fn a_leader_counting_too_few_replicas_says_so() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    control.set_cluster_coverage(1, 3);
    let counts = |requests: u64| RoleCounts {
        requests,
        errors: 0,
        latency: [0; weir_proxy::metrics::LATENCY_SLOTS],
    };
    let own = move |_: &str, _: weir_proxy::Role| counts(500);
    let t0 = START_MS + 5_000;
    let _ = control.judge_counted(&own, &own, t0);
    let judged = control.judge_counted(&own, &own, t0 + 1_000);
    let judgement = checkout_judgement(&judged);
    assert_eq!(
        judgement.verdict,
        crate::rollout::Verdict::Inconclusive {
            reason: "counters from 1 of 3 replicas; need 2".to_owned()
        }
    );
}

/// The judgement of `shop/checkout` among a tick's.
fn checkout_judgement(judged: &[(String, crate::rollout::Outcome)]) -> &crate::rollout::Judgement {
    let (_, outcome) = judged
        .iter()
        .find(|(name, _)| name == "shop/checkout")
        .expect("the leader judges shop/checkout");
    outcome.state.last_judgement.as_ref().expect("a judgement")
}

/// The state a decision keeps or writes.
fn decided_state(decision: &ClusterDecision) -> RolloutState {
    match decision {
        ClusterDecision::Keep(state) => state.clone(),
        ClusterDecision::Write(outcome) => outcome.state.clone(),
        ClusterDecision::Drop => panic!("dropped"),
    }
}

/// A promoted CanaryRoute whose spec then loses steps (its canary the
/// same) keeps a step index within them, and the status written from it
/// reads back: otherwise the leader rewrote an unreadable status at every
/// sync, and a new leader with no state of its own held the promoted
/// revision at weight 0.
#[tokio::test]
async fn a_promoted_route_whose_steps_shrink_keeps_a_status_that_reads_back() {
    let (mut control, route) = control().await;
    lead_the_start(&mut control, &route);
    let promoted = control.rollouts["shop/checkout"]
        .command(Command::PromoteFull, &route, START_MS)
        .expect("promote --full applies")
        .state;
    assert_eq!(promoted.phase, Phase::Promoted);
    let mut shorter = route.clone();
    if let Some(strategy) = shorter.strategy.as_mut() {
        strategy.steps.truncate(2);
    }
    let decisions = control.decide_cluster(
        std::slice::from_ref(&shorter),
        true,
        &seen(Some(promoted.clone()), vec![]),
        START_MS + 1_000,
    );
    let state = decided_state(&decisions[0].1);
    assert_eq!(
        (state.phase, state.step_index),
        (Phase::Promoted, Some(2)),
        "2 steps now (was {:?})",
        promoted.step_index
    );

    // An abort at step 4, then steps trimmed to 2 (before a retry): the
    // index names the last step as now written.
    let aborted = state_at(&route, 3)
        .command(Command::Abort, &route, START_MS)
        .expect("abort applies")
        .state;
    assert_eq!(
        (aborted.phase, aborted.step_index),
        (Phase::Aborted, Some(3))
    );
    let decisions = control.decide_cluster(
        std::slice::from_ref(&shorter),
        true,
        &seen(Some(aborted), vec![]),
        START_MS + 2_000,
    );
    let state = decided_state(&decisions[0].1);
    assert_eq!((state.phase, state.step_index), (Phase::Aborted, Some(1)));
}
