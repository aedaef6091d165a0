use std::sync::Arc;
use std::time::Duration;

use weir_config::{Analysis, EndpointAddr, Timeouts, Upstream};

use super::*;
use crate::rollout::stats::{LatencyHistogram, RoleTotals, RoleWindow};

const T0: u64 = 1_700_000_000_000;
const SEC: u64 = 1_000;

// --- fixtures ---

fn pct(p: u32) -> Weight {
    Weight::from_percent_int(p)
}

/// The SPEC's example steps: 5 %, 30 s, 25 %, wait for promote, 100 %.
fn spec_steps() -> Vec<Step> {
    vec![
        Step::SetWeight(pct(5)),
        Step::Pause(Some(Duration::from_secs(30))),
        Step::SetWeight(pct(25)),
        Step::Pause(None),
        Step::SetWeight(pct(100)),
    ]
}

fn upstream(revision: &str, port: u16) -> Upstream {
    Upstream {
        revision: Arc::from(revision),
        endpoints: vec![EndpointAddr {
            host: "127.0.0.1".to_owned(),
            port,
        }],
        protocol: weir_config::UpstreamProtocol::Http1,
        tls: None,
    }
}

/// Route `checkout` as a builder chain.
#[derive(Clone)]
struct Fixture(Route);

impl Fixture {
    fn new() -> Fixture {
        Fixture(Route {
            name: Arc::from("checkout"),
            hosts: Vec::new(),
            path_prefix: "/".to_owned(),
            stable: upstream("v1", 9001),
            canary: Some(upstream("v2", 9101)),
            fixed_weight: Weight::ZERO,
            stickiness: None,
            canary_by_header: None,
            timeouts: Timeouts::default(),
            upgrades: vec![Arc::from("websocket")],
            stable_fallback: None,
            strategy: Some(Strategy {
                steps: spec_steps(),
                analysis: Analysis::default(),
                gated_by_analysis: true,
                webhooks: weir_config::Webhooks::default(),
                background: None,
                blue_green: None,
            }),
        })
    }

    fn stable(mut self, revision: &str) -> Fixture {
        self.0.stable = upstream(revision, 9001);
        self
    }

    fn canary(mut self, revision: Option<&str>) -> Fixture {
        self.0.canary = revision.map(|r| upstream(r, 9101));
        self
    }

    fn steps(mut self, steps: Vec<Step>) -> Fixture {
        if let Some(s) = &mut self.0.strategy {
            s.steps = steps;
        }
        self
    }

    fn failure_limit(mut self, limit: u32) -> Fixture {
        if let Some(s) = &mut self.0.strategy {
            s.analysis.failure_limit = limit;
        }
        self
    }

    /// No `analysis` block in the config: steps go by time and commands.
    fn without_analysis_block(mut self) -> Fixture {
        if let Some(s) = &mut self.0.strategy {
            s.gated_by_analysis = false;
        }
        self
    }

    fn no_strategy(mut self) -> Fixture {
        self.0.strategy = None;
        self
    }
}

fn route() -> Route {
    Fixture::new().0
}

fn observation(canary: (u64, u64), stable: (u64, u64)) -> Observation {
    let window = |(requests, errors)| RoleWindow {
        requests,
        errors,
        latency: LatencyHistogram::with_default_bounds(),
    };
    let total = |(requests, errors)| RoleTotals { requests, errors };
    Observation {
        stable: window(stable),
        canary: window(canary),
        stable_total: total(stable),
        canary_total: total(canary),
        unjudgeable: None,
    }
}

fn pass() -> Observation {
    observation((300, 0), (2700, 0))
}

fn inconclusive() -> Observation {
    observation((5, 0), (2700, 0))
}

fn failing() -> Observation {
    observation((300, 93), (2700, 0))
}

fn ok(result: Result<Outcome, CommandRefused>) -> Outcome {
    match result {
        Ok(outcome) => outcome,
        Err(refused) => panic!("refused: {refused}"),
    }
}

fn cmd(state: &RolloutState, command: Command, now: u64) -> RolloutState {
    ok(state.command(command, &route(), now)).state
}

/// Step 1 (setWeight 5), Progressing.
fn progressing() -> RolloutState {
    RolloutState::start(&route(), T0).state
}

/// Step 2 (pause 30 s), entered at T0 + 1 s.
fn paused_timed() -> RolloutState {
    progressing().tick(&route(), T0 + SEC, &pass()).state
}

/// Step 4 (pause {}), at weight 25.
fn paused_indefinite() -> RolloutState {
    let s = paused_timed().tick(&route(), T0 + 31 * SEC, &pass()).state;
    s.tick(&route(), T0 + 32 * SEC, &pass()).state
}

fn held() -> RolloutState {
    cmd(&progressing(), Command::Pause, T0 + SEC)
}

fn aborted() -> RolloutState {
    cmd(&progressing(), Command::Abort, T0 + SEC)
}

fn promoted() -> RolloutState {
    cmd(&progressing(), Command::PromoteFull, T0 + SEC)
}

fn healthy() -> RolloutState {
    RolloutState::start(&Fixture::new().canary(None).0, T0).state
}

fn recovered() -> RolloutState {
    RolloutState::unreadable(&route(), T0, "expected value at line 1 column 1")
}

/// A function building a state in a given phase.
type Fixed = fn() -> RolloutState;

/// (phase, step index, weight %, held)
type Shape = (Phase, Option<usize>, u32, bool);

fn shape(s: &RolloutState) -> Shape {
    (
        s.phase,
        s.step_index,
        s.canary_weight.ppm() / Weight::PER_PERCENT,
        s.held,
    )
}

// --- the fixtures are in the phases they claim ---

#[test]
fn fixtures_have_their_shapes() {
    use Phase::*;
    let cases: [(&str, RolloutState, Shape); 8] = [
        ("healthy", healthy(), (Healthy, None, 0, false)),
        (
            "progressing",
            progressing(),
            (Progressing, Some(0), 5, false),
        ),
        ("paused timed", paused_timed(), (Paused, Some(1), 5, false)),
        (
            "paused indefinite",
            paused_indefinite(),
            (Paused, Some(3), 25, false),
        ),
        ("held", held(), (Paused, Some(0), 5, true)),
        ("aborted", aborted(), (Aborted, Some(0), 0, false)),
        ("promoted", promoted(), (Promoted, Some(5), 100, false)),
        ("recovered", recovered(), (Paused, None, 0, true)),
    ];
    for (name, state, want) in cases {
        assert_eq!(shape(&state), want, "{name}");
        assert_eq!(state.rollout_seq, u64::from(name != "healthy"), "{name}");
    }
}

// --- every command in every phase ---

#[test]
fn every_command_in_every_phase() {
    use Command::*;
    use Phase::*;
    type Want = Result<Shape, &'static str>;
    let fixtures: [(&str, Fixed); 8] = [
        ("healthy", healthy),
        ("progressing", progressing),
        ("paused timed", paused_timed),
        ("paused indefinite", paused_indefinite),
        ("held", held),
        ("aborted", aborted),
        ("promoted", promoted),
        ("recovered", recovered),
    ];
    let table: [(&str, [Want; 6]); 8] = [
        (
            "healthy",
            [
                Err(
                    "promote applies only to a Progressing or Paused rollout; checkout is Healthy (no rollout)",
                ),
                Err(
                    "promote --full applies only to a Progressing or Paused rollout; checkout is Healthy (no rollout)",
                ),
                Err(
                    "abort applies only to a Progressing, Paused or Promoted rollout; checkout is Healthy (no rollout)",
                ),
                Err("retry applies only to an Aborted rollout; checkout is Healthy (no rollout)"),
                Err(
                    "pause applies only to a Progressing or Paused rollout that is not held; checkout is Healthy (no rollout)",
                ),
                Err(
                    "resume applies only to a rollout held by pause; checkout is Healthy (no rollout)",
                ),
            ],
        ),
        (
            "progressing",
            [
                Ok((Paused, Some(1), 5, false)),
                Ok((Promoted, Some(5), 100, false)),
                Ok((Aborted, Some(0), 0, false)),
                Err(
                    "retry applies only to an Aborted rollout; checkout is Progressing at step 1/5 (setWeight 5)",
                ),
                Ok((Paused, Some(0), 5, true)),
                Err(
                    "resume applies only to a rollout held by pause; checkout is Progressing at step 1/5 (setWeight 5), not held",
                ),
            ],
        ),
        (
            "paused timed",
            [
                Ok((Progressing, Some(2), 25, false)),
                Ok((Promoted, Some(5), 100, false)),
                Ok((Aborted, Some(1), 0, false)),
                Err(
                    "retry applies only to an Aborted rollout; checkout is Paused at step 2/5 (pause 30s)",
                ),
                Ok((Paused, Some(1), 5, true)),
                Err(
                    "resume applies only to a rollout held by pause; checkout is Paused at step 2/5 (pause 30s), not held",
                ),
            ],
        ),
        (
            "paused indefinite",
            [
                Ok((Progressing, Some(4), 100, false)),
                Ok((Promoted, Some(5), 100, false)),
                Ok((Aborted, Some(3), 0, false)),
                Err(
                    "retry applies only to an Aborted rollout; checkout is Paused at step 4/5 (pause {})",
                ),
                Ok((Paused, Some(3), 25, true)),
                Err(
                    "resume applies only to a rollout held by pause; checkout is Paused at step 4/5 (pause {}), not held; promote ends the pause",
                ),
            ],
        ),
        (
            "held",
            [
                Ok((Paused, Some(1), 5, false)),
                Ok((Promoted, Some(5), 100, false)),
                Ok((Aborted, Some(0), 0, false)),
                Err(
                    "retry applies only to an Aborted rollout; checkout is Paused at step 1/5 (setWeight 5)",
                ),
                Err(
                    "pause applies only to a Progressing or Paused rollout that is not held; checkout is already held (resume releases it)",
                ),
                Ok((Progressing, Some(0), 5, false)),
            ],
        ),
        (
            "aborted",
            [
                Err(
                    "promote applies only to a Progressing or Paused rollout; checkout is Aborted (retry starts the steps again)",
                ),
                Err(
                    "promote --full applies only to a Progressing or Paused rollout; checkout is Aborted (retry starts the steps again)",
                ),
                Err(
                    "abort applies only to a Progressing, Paused or Promoted rollout; checkout is Aborted (already)",
                ),
                Ok((Progressing, Some(0), 5, false)),
                Err(
                    "pause applies only to a Progressing or Paused rollout that is not held; checkout is Aborted (retry starts the steps again)",
                ),
                Err(
                    "resume applies only to a rollout held by pause; checkout is Aborted (retry starts the steps again)",
                ),
            ],
        ),
        (
            "promoted",
            [
                Err(
                    "promote applies only to a Progressing or Paused rollout; checkout is Promoted (set stable.revision to v2 in the config)",
                ),
                Err(
                    "promote --full applies only to a Progressing or Paused rollout; checkout is Promoted (set stable.revision to v2 in the config)",
                ),
                // At the last step, as a restart reads it.
                Ok((Aborted, Some(4), 0, false)),
                Err(
                    "retry applies only to an Aborted rollout; checkout is Promoted (set stable.revision to v2 in the config)",
                ),
                Err(
                    "pause applies only to a Progressing or Paused rollout that is not held; checkout is Promoted (set stable.revision to v2 in the config)",
                ),
                Err(
                    "resume applies only to a rollout held by pause; checkout is Promoted (set stable.revision to v2 in the config)",
                ),
            ],
        ),
        (
            "recovered",
            [
                Ok((Progressing, Some(0), 5, false)),
                Ok((Promoted, Some(5), 100, false)),
                Ok((Aborted, None, 0, false)),
                Err(
                    "retry applies only to an Aborted rollout; checkout is Paused, held before step 1/5",
                ),
                Err(
                    "pause applies only to a Progressing or Paused rollout that is not held; checkout is already held (resume releases it)",
                ),
                Ok((Progressing, Some(0), 5, false)),
            ],
        ),
    ];
    let commands = [Promote, PromoteFull, Abort, Retry, Pause, Resume];
    assert_eq!(commands, Command::ALL);
    for ((name, fixture), (table_name, wants)) in fixtures.iter().zip(&table) {
        assert_eq!(name, table_name);
        let before = fixture();
        for (command, want) in commands.iter().zip(wants) {
            let got = before.command(*command, &route(), T0 + 5 * SEC);
            match (want, got) {
                (Ok(shape_want), Ok(outcome)) => {
                    assert_eq!(shape(&outcome.state), *shape_want, "{name}: {command}");
                    let t = outcome
                        .transition
                        .expect("every applied command is a transition");
                    assert_eq!((t.from, t.to), (before.phase, outcome.state.phase));
                    assert_eq!(t.to_step, outcome.state.step_index);
                    assert_eq!(t.canary_weight, outcome.state.canary_weight);
                    assert_eq!(outcome.state.rollout_seq, before.rollout_seq);
                    // What a command leaves is what a restart reads back.
                    let restored = outcome
                        .state
                        .reconcile(&route(), T0 + 5 * SEC)
                        .expect("reconciled");
                    assert!(restored.transition.is_none(), "{name}: {command}");
                    assert_eq!(restored.state, outcome.state, "{name}: {command}");
                }
                (Err(message), Err(refused)) => {
                    assert_eq!(refused.message(), *message, "{name}: {command}");
                    assert_eq!(refused.to_string(), *message);
                    assert_eq!(refused.command, *command);
                    assert_eq!(refused.phase, Some(before.phase));
                }
                (want, got) => panic!("{name}: {command}: want {want:?}, got {got:?}"),
            }
        }
    }
    assert_eq!(CommandRefused::HTTP_STATUS, 409);
}

#[test]
fn commands_on_a_fixed_split_are_refused() {
    let fixed = Fixture::new().no_strategy().0;
    let state = progressing();
    for command in Command::ALL {
        let refused = state
            .command(command, &fixed, T0)
            .expect_err("a fixed split has no rollout");
        assert_eq!(refused.phase, None);
        assert!(
            refused
                .message()
                .ends_with("checkout is a fixed split (edit canary.weight in the config)"),
            "{refused}"
        );
    }
    // A route without a canary is not called a fixed split.
    let mut alone = fixed.clone();
    alone.canary = None;
    let refused = state
        .command(Command::Promote, &alone, T0)
        .expect_err("a route without a canary has no rollout");
    assert!(
        refused
            .message()
            .ends_with("checkout has no canary (add one with a strategy in the config)"),
        "{refused}"
    );
}

// --- starting ---

#[test]
fn first_start_with_a_canary_starts_rollout_one() {
    let outcome = RolloutState::start(&route(), T0);
    let s = &outcome.state;
    assert_eq!(shape(s), (Phase::Progressing, Some(0), 5, false));
    assert_eq!(s.rollout_seq, 1);
    assert_eq!(s.rollout_started_ms, T0);
    assert_eq!(s.canary_revision.as_deref(), Some("v2"));
    assert_eq!(s.stable_revision, "v1");
    assert_eq!(s.route, "checkout");
    let t = outcome.transition.expect("a start is a transition");
    assert_eq!(t.kind, TransitionKind::Started);
    assert_eq!((t.from, t.to), (Phase::Healthy, Phase::Progressing));
    assert_eq!(
        t.message,
        "rollout 1 of v2 started (stable v1): step 1/5 (setWeight 5)"
    );
    assert_eq!(
        s.message,
        "step 1/5 (setWeight 5): canary at 5%; waiting for the first judgement"
    );
}

#[test]
fn first_start_without_a_new_canary_is_healthy() {
    for route in [
        Fixture::new().canary(None).0,
        Fixture::new().canary(Some("v1")).0,
    ] {
        let outcome = RolloutState::start(&route, T0);
        assert_eq!(outcome.transition, None);
        assert_eq!(shape(&outcome.state), (Phase::Healthy, None, 0, false));
        assert_eq!(outcome.state.route_override(), None);
        assert_eq!(
            outcome.state.message,
            "no rollout: all traffic to stable v1"
        );
    }
}

// --- steps and time ---

#[test]
fn set_weight_advances_only_on_a_pass() {
    let s = progressing();
    let waiting = s.tick(&route(), T0 + SEC, &inconclusive());
    assert_eq!(waiting.transition, None);
    assert_eq!(
        shape(&waiting.state),
        (Phase::Progressing, Some(0), 5, false)
    );
    assert_eq!(
        waiting.state.message,
        "step 1/5 (setWeight 5): canary at 5%; the step waits for minRequests: 5 canary requests \
         in the window, need 20"
    );
    let passed = waiting.state.tick(&route(), T0 + 2 * SEC, &pass());
    assert_eq!(shape(&passed.state), (Phase::Paused, Some(1), 5, false));
    assert_eq!(passed.state.pause_deadline_ms, Some(T0 + 32 * SEC));
    let t = passed.transition.expect("advancing is a transition");
    assert_eq!(t.kind, TransitionKind::Advanced);
    assert_eq!(
        t.message,
        "step 1/5 (setWeight 5) done (analysis passing): step 2/5 (pause 30s)"
    );
}

#[test]
fn a_timed_pause_ends_by_itself_at_its_deadline() {
    let s = paused_timed();
    assert_eq!(s.pause_deadline_ms, Some(T0 + 31 * SEC));
    // Before the deadline: a pass does not end it.
    let early = s.tick(&route(), T0 + 30 * SEC, &pass());
    assert_eq!(early.transition, None);
    assert_eq!(
        early.state.message,
        "step 2/5 (pause 30s): 1 s left; analysis passing"
    );
    // At the deadline but inconclusive: it waits.
    let late = early.state.tick(&route(), T0 + 31 * SEC, &inconclusive());
    assert_eq!(late.transition, None);
    assert_eq!(shape(&late.state), (Phase::Paused, Some(1), 5, false));
    assert!(
        late.state.message.starts_with(
            "step 2/5 (pause 30s): pause over; the step waits for minRequests: 5 canary"
        ),
        "{}",
        late.state.message
    );
    // A pass after the deadline ends it; the next step sets 25 %.
    let done = late.state.tick(&route(), T0 + 32 * SEC, &pass());
    assert_eq!(shape(&done.state), (Phase::Progressing, Some(2), 25, false));
    assert_eq!(done.state.pause_deadline_ms, None);
}

#[test]
fn the_deadline_survives_a_restart() {
    let s = paused_timed();
    let json = serde_json::to_string(&s).expect("serializable");
    let restored: RolloutState = serde_json::from_str(&json).expect("deserializable");
    assert_eq!(restored.pause_deadline_ms, Some(T0 + 31 * SEC));
    // The restored evidence takes a baseline first; the deadline still holds.
    let done = restored.tick(&route(), T0 + 31 * SEC, &pass());
    assert_eq!(shape(&done.state), (Phase::Progressing, Some(2), 25, false));
}

#[test]
fn steps_at_weight_zero_do_not_wait_for_canary_traffic() {
    let r = Fixture::new()
        .steps(vec![
            Step::Pause(Some(Duration::from_secs(10))),
            Step::SetWeight(Weight::ZERO),
            Step::SetWeight(pct(10)),
        ])
        .0;
    let no_canary_traffic = observation((0, 0), (2700, 0));
    let s = RolloutState::start(&r, T0).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(0), 0, false));
    let s = s.tick(&r, T0 + 9 * SEC, &no_canary_traffic).state;
    assert_eq!(s.step_index, Some(0));
    let s = s.tick(&r, T0 + 10 * SEC, &no_canary_traffic).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(1), 0, false));
    let s = s.tick(&r, T0 + 11 * SEC, &no_canary_traffic).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(2), 10, false));
    // At a weight above 0, no traffic is inconclusive and holds the step.
    let s = s.tick(&r, T0 + 12 * SEC, &no_canary_traffic).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(2), 10, false));
    assert!(
        s.message
            .ends_with("the step waits for minRequests: 0 canary requests in the window, need 20")
    );
}

#[test]
fn without_an_analysis_block_steps_go_by_time_and_commands() {
    let r = Fixture::new().without_analysis_block().0;
    let no_canary_traffic = observation((0, 0), (0, 0));
    let s = RolloutState::start(&r, T0).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(0), 5, false));
    // setWeight completes at the first tick, with no canary traffic at all.
    let out = s.tick(&r, T0 + SEC, &no_canary_traffic);
    assert_eq!(shape(&out.state), (Phase::Paused, Some(1), 5, false));
    let t = out.transition.expect("advancing is a transition");
    assert_eq!(
        t.message,
        "step 1/5 (setWeight 5) done: step 2/5 (pause 30s)"
    );
    assert!(
        !out.state.message.contains("minRequests"),
        "nothing waits for minRequests: {}",
        out.state.message
    );
    // The timed pause runs on its clock alone.
    let s = out.state.tick(&r, T0 + 30 * SEC, &no_canary_traffic).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(1), 5, false));
    assert_eq!(
        s.message,
        "step 2/5 (pause 30s): 1 s left; no analysis block: steps go by time and commands"
    );
    let s = s.tick(&r, T0 + 31 * SEC, &no_canary_traffic).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(2), 25, false));
    let s = s.tick(&r, T0 + 32 * SEC, &no_canary_traffic).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(3), 25, false));
    // `pause: {}` still holds without an analysis block.
    let mut s = s;
    for i in 0..20 {
        let out = s.tick(&r, T0 + (33 + i) * SEC, &no_canary_traffic);
        assert_eq!(out.transition, None);
        s = out.state;
    }
    assert_eq!(shape(&s), (Phase::Paused, Some(3), 25, false));
    // promote goes on; the last setWeight completes on the next tick.
    let s = ok(s.command(Command::Promote, &r, T0 + 60 * SEC)).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(4), 100, false));
    let out = s.tick(&r, T0 + 61 * SEC, &no_canary_traffic);
    assert_eq!(shape(&out.state), (Phase::Promoted, Some(5), 100, false));
    assert_eq!(
        out.transition.map(|t| t.kind),
        Some(TransitionKind::Completed)
    );
}

#[test]
fn without_an_analysis_block_a_failing_canary_still_aborts() {
    let r = Fixture::new().without_analysis_block().0;
    let s = RolloutState::start(&r, T0).state;
    let out = s.tick(&r, T0 + SEC, &failing());
    assert_eq!(shape(&out.state), (Phase::Aborted, Some(0), 0, false));
    assert_eq!(
        out.transition.and_then(|t| t.abort_reason()),
        Some(AbortReason::AnalysisErrorRate)
    );
}

#[test]
fn without_an_analysis_block_a_held_step_stays_held() {
    let r = Fixture::new().without_analysis_block().0;
    let s = RolloutState::start(&r, T0).state;
    let s = ok(s.command(Command::Pause, &r, T0 + SEC)).state;
    let out = s.tick(&r, T0 + 2 * SEC, &inconclusive());
    assert_eq!(out.transition, None);
    assert_eq!(shape(&out.state), (Phase::Paused, Some(0), 5, true));
}

#[test]
fn an_indefinite_pause_holds_until_promote() {
    let mut s = paused_indefinite();
    for i in 0..100 {
        let outcome = s.tick(&route(), T0 + (40 + i) * SEC, &pass());
        assert_eq!(outcome.transition, None);
        s = outcome.state;
    }
    assert_eq!(shape(&s), (Phase::Paused, Some(3), 25, false));
    assert_eq!(
        s.message,
        "step 4/5 (pause {}): waiting for promote; analysis passing"
    );
    let promoted = ok(s.command(Command::Promote, &route(), T0 + 200 * SEC));
    assert_eq!(
        shape(&promoted.state),
        (Phase::Progressing, Some(4), 100, false)
    );
    let t = promoted.transition.expect("a promote is a transition");
    assert_eq!(t.kind, TransitionKind::Promoted);
    assert_eq!(
        t.message,
        "promote: step 4/5 (pause {}) ended; step 5/5 (setWeight 100)"
    );
}

#[test]
fn the_last_step_promotes() {
    let s = cmd(&paused_indefinite(), Command::Promote, T0 + 100 * SEC);
    let done = s.tick(&route(), T0 + 101 * SEC, &pass());
    assert_eq!(shape(&done.state), (Phase::Promoted, Some(5), 100, false));
    assert_eq!(done.state.promoted_revision.as_deref(), Some("v2"));
    let t = done.transition.expect("completing is a transition");
    assert_eq!(t.kind, TransitionKind::Completed);
    assert_eq!(
        t.message,
        "step 5/5 (setWeight 100) done: v2 promoted, 100% canary; set stable.revision to v2 in the config"
    );
    assert_eq!(
        done.state.message,
        "v2 promoted, 100% canary; the config is behind: set stable.revision to v2"
    );
    assert!(done.state.is_config_behind());
    // Promoted is not judged any more.
    let after = done.state.tick(&route(), T0 + 102 * SEC, &failing());
    assert_eq!(after.transition, None);
    assert_eq!(after.state, done.state);
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let outcome = ok(paused_timed().command(Command::PromoteFull, &route(), T0 + 2 * SEC));
    assert_eq!(
        shape(&outcome.state),
        (Phase::Promoted, Some(5), 100, false)
    );
    assert_eq!(outcome.state.promoted_revision.as_deref(), Some("v2"));
    assert_eq!(
        outcome.state.route_override(),
        Some(RouteOverride {
            canary_weight: Weight::FULL,
            rollout_seq: 1,
            preview_live: true,
        })
    );
    let t = outcome.transition.expect("a transition");
    assert_eq!(t.kind, TransitionKind::PromotedFull);
    assert_eq!(
        t.message,
        "promote --full from step 2/5 (pause 30s): v2 promoted, 100% canary"
    );
}

#[test]
fn hold_and_resume_keep_a_timed_pause_remaining_time() {
    // Deadline T0 + 31 s; held at T0 + 11 s with 20 s left.
    let held = ok(paused_timed().command(Command::Pause, &route(), T0 + 11 * SEC));
    assert_eq!(
        held.transition.as_ref().map(|t| t.kind),
        Some(TransitionKind::Held)
    );
    let s = held.state;
    assert_eq!(shape(&s), (Phase::Paused, Some(1), 5, true));
    assert_eq!(s.pause_deadline_ms, None);
    assert_eq!(s.pause_remaining_ms, Some(20 * SEC));
    assert_eq!(
        s.message,
        "held by pause at step 2/5 (pause 30s), 20 s of the pause left; resume continues"
    );
    // Long past the original deadline, a held pause does not end.
    let s = s.tick(&route(), T0 + 60 * SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(1), 5, true));
    // Resumed at T0 + 100 s: 20 s more.
    let resumed = ok(s.command(Command::Resume, &route(), T0 + 100 * SEC));
    assert_eq!(
        resumed.transition.as_ref().map(|t| t.message.as_str()),
        Some("resumed at step 2/5 (pause 30s), 20 s of the pause left")
    );
    let s = resumed.state;
    assert_eq!(s.pause_deadline_ms, Some(T0 + 120 * SEC));
    assert_eq!(s.pause_remaining_ms, None);
    let s = s.tick(&route(), T0 + 119 * SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Paused, Some(1), 5, false));
    let s = s.tick(&route(), T0 + 120 * SEC, &pass()).state;
    assert_eq!(shape(&s), (Phase::Progressing, Some(2), 25, false));
}

#[test]
fn a_held_set_weight_step_does_not_advance_but_can_abort() {
    let s = held();
    let still = s.tick(&route(), T0 + 2 * SEC, &pass());
    assert_eq!(still.transition, None);
    assert_eq!(shape(&still.state), (Phase::Paused, Some(0), 5, true));
    let aborted = still.state.tick(&route(), T0 + 3 * SEC, &failing());
    assert_eq!(shape(&aborted.state), (Phase::Aborted, Some(0), 0, false));
}

// --- abort and retry ---

#[test]
fn abort_sets_weight_zero_at_once() {
    let outcome = ok(paused_indefinite().command(Command::Abort, &route(), T0 + 50 * SEC));
    let s = &outcome.state;
    assert_eq!(shape(s), (Phase::Aborted, Some(3), 0, false));
    assert_eq!(s.abort_reason, Some(AbortReason::Manual));
    assert_eq!(
        s.route_override(),
        Some(RouteOverride {
            canary_weight: Weight::ZERO,
            rollout_seq: 1,
            preview_live: false,
        })
    );
    let t = outcome.transition.expect("a transition");
    assert_eq!(t.abort_reason(), Some(AbortReason::Manual));
    assert_eq!(t.canary_weight, Weight::ZERO);
    assert_eq!(
        s.message,
        "aborted (manual): abort command, step 4/5 (pause {}); weight 0; retry starts the steps again"
    );
    // Aborted is not judged.
    assert_eq!(s.tick(&route(), T0 + 51 * SEC, &pass()).state, *s);
}

#[test]
fn retry_restarts_at_step_one_with_the_same_seq() {
    let failed = progressing().tick(&route(), T0 + SEC, &failing()).state;
    assert_eq!(failed.phase, Phase::Aborted);
    assert_eq!(failed.failures, 1);
    let outcome = ok(failed.command(Command::Retry, &route(), T0 + 60 * SEC));
    let s = &outcome.state;
    assert_eq!(shape(s), (Phase::Progressing, Some(0), 5, false));
    assert_eq!(s.rollout_seq, 1);
    assert_eq!(s.rollout_started_ms, T0 + 60 * SEC);
    assert_eq!(s.failures, 0);
    assert_eq!(s.abort_reason, None);
    assert_eq!(s.last_judgement, None);
    assert_eq!(s.evidence, Evidence::new());
    let t = outcome.transition.expect("a transition");
    assert_eq!(t.kind, TransitionKind::Retried);
    assert_eq!(
        t.message,
        "retry: rollout 1 of v2 starts again at step 1/5 (setWeight 5)"
    );
}

#[test]
fn failure_limit_counts_failed_judgements_since_the_start() {
    // failureLimit 0: the first failure aborts.
    let outcome = progressing().tick(&route(), T0 + SEC, &failing());
    assert_eq!(shape(&outcome.state), (Phase::Aborted, Some(0), 0, false));
    let t = outcome.transition.expect("a transition");
    assert_eq!(t.abort_reason(), Some(AbortReason::AnalysisErrorRate));
    assert!(
        t.message.starts_with(
            "aborted (analysis_error_rate): analysis: canary error rate 0.31 (93 of 300) above 0.05 (99% lower bound 0."
        ),
        "{}",
        t.message
    );

    // failureLimit 2: two failures are counted, the third aborts; failures
    // do not advance the step, and a pass in between does not reset them.
    let r = Fixture::new().failure_limit(2).0;
    let s = RolloutState::start(&r, T0).state;
    let first = s.tick(&r, T0 + SEC, &failing());
    let t = first.transition.expect("a counted failure is a transition");
    assert_eq!(t.kind, TransitionKind::FailureCounted);
    assert!(
        t.message
            .starts_with("analysis failed (1 of 2 tolerated): canary error rate")
    );
    assert_eq!(shape(&first.state), (Phase::Progressing, Some(0), 5, false));
    assert_eq!(first.state.failures, 1);
    let passed = first.state.tick(&r, T0 + 2 * SEC, &pass()).state;
    assert_eq!(passed.failures, 1);
    assert_eq!(passed.step_index, Some(1));
    let second = passed.tick(&r, T0 + 3 * SEC, &failing()).state;
    assert_eq!((second.phase, second.failures), (Phase::Paused, 2));
    let third = second.tick(&r, T0 + 4 * SEC, &failing());
    assert_eq!(shape(&third.state), (Phase::Aborted, Some(1), 0, false));
    assert_eq!(third.state.failures, 3);
    assert_eq!(
        third.transition.and_then(|t| t.abort_reason()),
        Some(AbortReason::AnalysisErrorRate)
    );
}

#[test]
fn excess_errors_abort_at_once_whatever_the_failure_limit() {
    let mut r = Fixture::new().failure_limit(3).0;
    if let Some(s) = &mut r.strategy {
        s.analysis.max_excess_errors = Some(5);
    }
    let s = RolloutState::start(&r, T0).state;
    // 6 canary errors of 10 requests, stable clean: below minRequests, 6 > 5.
    let outcome = s.tick(&r, T0 + SEC, &observation((10, 6), (2700, 0)));
    assert_eq!(shape(&outcome.state), (Phase::Aborted, Some(0), 0, false));
    let t = outcome.transition.expect("a transition");
    assert_eq!(t.abort_reason(), Some(AbortReason::AnalysisExcessErrors));
    assert!(
        t.message.starts_with(
            "aborted (analysis_excess_errors): analysis: canary errors 6 of 10 exceed the 0 \
             predicted by stable error rate 0 (0 of 2700) by 6, more than maxExcessErrors 5"
        ),
        "{}",
        t.message
    );
    // 5 errors are within the limit (and too few requests to judge).
    let held = s.tick(&r, T0 + SEC, &observation((10, 5), (2700, 0)));
    assert_eq!(held.state.phase, Phase::Progressing);
    assert!(
        held.state
            .last_judgement
            .is_some_and(|j| j.verdict.is_inconclusive())
    );
}

#[test]
fn abort_reasons_have_bounded_labels() {
    let labels: Vec<_> = AbortReason::ALL.iter().map(|r| r.metric_label()).collect();
    assert_eq!(
        labels,
        [
            "analysis_error_rate",
            "analysis_compare",
            "analysis_latency",
            "analysis_run",
            "analysis_excess_errors",
            "manual",
            "webhook",
            "webhook_rollback",
            "pre_promotion_analysis",
            "post_promotion_analysis"
        ]
    );
    assert_eq!(
        AbortReason::from(FailKind::ExcessErrors),
        AbortReason::AnalysisExcessErrors
    );
    assert_eq!(
        AbortReason::from(FailKind::Compare),
        AbortReason::AnalysisCompare
    );
    assert_eq!(
        AbortReason::from(FailKind::Latency),
        AbortReason::AnalysisLatency
    );
    let phases: Vec<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        phases,
        ["Healthy", "Progressing", "Paused", "Aborted", "Promoted"]
    );
}

// --- config changes ---

fn reconcile(state: &RolloutState, route: &Route, now: u64) -> Outcome {
    match state.reconcile(route, now) {
        Ok(outcome) => outcome,
        Err(refused) => panic!("refused: {refused}"),
    }
}

#[test]
fn the_same_config_changes_nothing() {
    let no_canary = Fixture::new().canary(None).0;
    for (state, route) in [
        (progressing(), route()),
        (paused_timed(), route()),
        (paused_indefinite(), route()),
        (held(), route()),
        (aborted(), route()),
        (promoted(), route()),
        (healthy(), no_canary),
        (recovered(), route()),
    ] {
        let outcome = reconcile(&state, &route, T0 + 10 * SEC);
        assert_eq!(outcome.transition, None, "{:?}", state.phase);
        assert_eq!(shape(&outcome.state), shape(&state));
    }
}

#[test]
fn a_new_canary_revision_starts_a_new_rollout() {
    let v3 = Fixture::new().canary(Some("v3")).0;
    for state in [
        progressing(),
        paused_indefinite(),
        held(),
        aborted(),
        recovered(),
    ] {
        let outcome = reconcile(&state, &v3, T0 + 10 * SEC);
        let s = &outcome.state;
        assert_eq!(shape(s), (Phase::Progressing, Some(0), 5, false));
        assert_eq!(s.rollout_seq, state.rollout_seq + 1);
        assert_eq!(s.canary_revision.as_deref(), Some("v3"));
        assert_eq!(s.rollout_started_ms, T0 + 10 * SEC);
        let t = outcome.transition.expect("a transition");
        assert_eq!(t.kind, TransitionKind::Started);
        assert_eq!(t.from, state.phase);
        assert_eq!(
            t.message,
            format!(
                "rollout {} of v3 started (stable v1): step 1/5 (setWeight 5)",
                state.rollout_seq + 1
            )
        );
    }
    // From Healthy (canary added).
    let outcome = reconcile(&healthy(), &route(), T0);
    assert_eq!(outcome.state.rollout_seq, 1);
    assert_eq!(outcome.state.phase, Phase::Progressing);
}

#[test]
fn a_removed_canary_brings_the_route_to_healthy() {
    let no_canary = Fixture::new().canary(None).0;
    let same_as_stable = Fixture::new().canary(Some("v1")).0;
    for route in [&no_canary, &same_as_stable] {
        // Promoted: see the next tests.
        for state in [progressing(), held(), aborted()] {
            let outcome = reconcile(&state, route, T0 + 10 * SEC);
            assert_eq!(shape(&outcome.state), (Phase::Healthy, None, 0, false));
            assert_eq!(outcome.state.canary_revision, None);
            assert_eq!(outcome.state.promoted_revision, None);
            assert_eq!(outcome.state.route_override(), None);
            let t = outcome.transition.expect("a transition");
            assert_eq!(t.kind, TransitionKind::Ended);
            assert_eq!(t.canary_weight, Weight::ZERO);
        }
    }
    let unmanaged = reconcile(&progressing(), &Fixture::new().no_strategy().0, T0);
    assert_eq!(unmanaged.state.phase, Phase::Healthy);
}

#[test]
fn promoted_stays_until_the_config_catches_up() {
    let s = promoted();
    // The config still names v1 as stable: behind, and a new canary is refused.
    let behind = reconcile(&s, &route(), T0 + 10 * SEC);
    assert_eq!(behind.transition, None);
    assert_eq!(behind.state.phase, Phase::Promoted);
    assert!(behind.state.message.ends_with("set stable.revision to v2"));
    let refused = s
        .reconcile(&Fixture::new().canary(Some("v3")).0, T0)
        .expect_err("another canary before catching up");
    assert_eq!(
        refused.to_string(),
        "route checkout: set stable.revision to v2 (promoted) before starting v3, \
         or name v2 as the canary again"
    );
    assert_eq!(
        (refused.promoted.as_str(), refused.requested.as_deref()),
        ("v2", Some("v3"))
    );

    // Stable is now v2 (canary still v2, or removed): Healthy, weight 0.
    for canary in [Some("v2"), None] {
        let caught = reconcile(&s, &Fixture::new().stable("v2").canary(canary).0, T0);
        assert_eq!(shape(&caught.state), (Phase::Healthy, None, 0, false));
        assert_eq!(caught.state.promoted_revision.as_deref(), Some("v2"));
        assert_eq!(caught.state.canary_revision, None);
        assert_eq!(caught.state.route_override(), None);
        assert_eq!(
            caught.state.message,
            "no rollout: v2 was promoted and is now stable"
        );
        let t = caught.transition.expect("a transition");
        assert_eq!(t.kind, TransitionKind::CaughtUp);
        assert_eq!((t.from, t.to), (Phase::Promoted, Phase::Healthy));
    }

    // Catching up and bringing v3 in the same edit: rollout 2 of v3.
    let next = reconcile(&s, &Fixture::new().stable("v2").canary(Some("v3")).0, T0);
    assert_eq!(shape(&next.state), (Phase::Progressing, Some(0), 5, false));
    assert_eq!(next.state.rollout_seq, 2);
    assert_eq!(next.state.stable_revision, "v2");
    let t = next.transition.expect("a transition");
    assert_eq!(t.kind, TransitionKind::Started);
    assert_eq!(t.from, Phase::Promoted);

    // The promoted revision named as canary again starts nothing.
    let healthy = reconcile(&s, &Fixture::new().stable("v2").0, T0).state;
    let again = reconcile(
        &healthy,
        &Fixture::new().stable("v1").canary(Some("v2")).0,
        T0,
    );
    assert_eq!(again.transition, None);
    assert_eq!(again.state.phase, Phase::Healthy);
}

/// While Promoted with stable still the old revision, a config that names
/// the promoted revision nowhere (no canary, or no strategy) is refused: it
/// would silently send everything back to the old revision. Naming the
/// promoted revision as stable, or as the canary of a fixed split, is a
/// choice and is taken.
#[test]
fn a_config_behind_its_promotion_cannot_drop_the_promoted_revision() {
    let s = promoted();
    let no_canary = Fixture::new().canary(None).0;
    let same_as_stable = Fixture::new().canary(Some("v1")).0;
    let neither = Fixture::new().canary(None).no_strategy().0;
    for (what, route) in [
        ("no canary", &no_canary),
        ("the canary is stable", &same_as_stable),
        ("neither canary nor strategy", &neither),
    ] {
        let refused = s.reconcile(route, T0).expect_err(what);
        assert_eq!(refused.requested, None, "{what}");
        assert_eq!(refused.key(), "stable.revision");
        assert_eq!(
            refused.to_string(),
            "route checkout: set stable.revision to v2 (promoted) before removing the canary \
             or the strategy, or name v2 as the canary again; v2 serves every request until then \
             (to go back instead, abort the rollout while its \
             strategy is in force)"
        );
    }
    // Another canary without a strategy: refused, naming it.
    let other = Fixture::new().canary(Some("v3")).no_strategy().0;
    let refused = s.reconcile(&other, T0).expect_err("v3 as a fixed split");
    assert_eq!(refused.requested.as_deref(), Some("v3"));
    assert_eq!(refused.key(), "canary.revision");

    // The canary v2 as a fixed split would serve at the config's weight:
    // refused too.
    let fixed = s
        .reconcile(&Fixture::new().no_strategy().0, T0)
        .expect_err("v2 as a fixed split");
    assert_eq!(fixed.requested, None);
    // Stable v2 without a canary or a strategy: caught up.
    let caught = Fixture::new().stable("v2").canary(None).no_strategy().0;
    assert_eq!(reconcile(&s, &caught, T0).state.phase, Phase::Healthy);
}

/// A CanaryRoute's spec cannot be refused as a config file is: while it is
/// behind its promotion the route is held as persisted at weight 0.
#[test]
fn a_canary_route_behind_its_promotion_is_held_at_weight_zero() {
    let p = promoted();
    let refused = reconcile_refused(&p, &Fixture::new().canary(Some("v3")).0);
    assert_eq!(
        (refused.promoted.as_str(), refused.requested.as_deref()),
        ("v2", Some("v3"))
    );
    let held = p.held_behind(&refused, &Fixture::new().canary(Some("v3")).0);
    assert_eq!(held.phase, Phase::Promoted);
    assert_eq!(held.step_index, p.step_index);
    assert!(held.canary_weight.is_zero(), "the config's stable serves");
    assert_eq!(held.canary_revision.as_deref(), Some("v2"));
    assert_eq!(held.rollout_seq, p.rollout_seq);
    assert_eq!(
        held.message,
        "held at weight 0: the config is behind a promotion: set stable.revision to v2 \
         (promoted) before starting v3; stable serves every request until then"
    );
    // A config that names the promoted canary again serves it at 100 %.
    let back = reconcile(&held, &Fixture::new().canary(Some("v2")).0, T0 + 3 * SEC);
    assert_eq!(back.state.phase, Phase::Promoted);
    assert_eq!(back.state.canary_weight, Weight::FULL);
    // The fixed config takes it from there: v2 stable, v3 starts a rollout.
    let fixed = Fixture::new().stable("v2").canary(Some("v3")).0;
    let next = reconcile(&held, &fixed, T0 + 5 * SEC);
    assert_eq!(shape(&next.state), (Phase::Progressing, Some(0), 5, false));
    assert_eq!(next.state.canary_revision.as_deref(), Some("v3"));
}

fn reconcile_refused(state: &RolloutState, route: &Route) -> ConfigRefused {
    match state.reconcile(route, T0 + 2 * SEC) {
        Ok(outcome) => panic!("expected a refusal, got {outcome:?}"),
        Err(refused) => refused,
    }
}

#[test]
fn steps_edited_away_hold_the_rollout() {
    let s = paused_indefinite();
    let shorter = Fixture::new()
        .steps(vec![Step::SetWeight(pct(5)), Step::SetWeight(pct(50))])
        .0;
    let outcome = reconcile(&s, &shorter, T0 + 60 * SEC);
    assert_eq!(shape(&outcome.state), (Phase::Paused, None, 25, true));
    assert_eq!(
        outcome.transition.map(|t| t.kind),
        Some(TransitionKind::StepsChanged)
    );
    assert!(
        outcome
            .state
            .message
            .starts_with("steps changed: step 4 no longer exists (2 steps); held at weight 25%")
    );
    // Nothing runs without an operator; resume starts the steps from step 1.
    let still = outcome.state.tick(&shorter, T0 + 61 * SEC, &pass());
    assert_eq!(still.transition, None);
    let resumed = ok(still
        .state
        .command(Command::Resume, &shorter, T0 + 62 * SEC));
    assert_eq!(
        shape(&resumed.state),
        (Phase::Progressing, Some(0), 5, false)
    );
}

/// The step at the current index edited into another one is entered as
/// written: a setWeight where an indefinite pause waited sets its weight
/// and judges it (it is never marked done at the old weight), a pause
/// where a setWeight was judged pauses (and `promote --all` then finds
/// it Paused), another weight for the current setWeight is applied.
#[test]
fn the_current_step_edited_into_another_is_entered_as_written() {
    // Step 4 (pause {}) at weight 25 becomes setWeight 40.
    let s = paused_indefinite();
    let mut steps = spec_steps();
    steps[3] = Step::SetWeight(pct(40));
    let edited = Fixture::new().steps(steps).0;
    let outcome = reconcile(&s, &edited, T0 + 60 * SEC);
    assert_eq!(
        shape(&outcome.state),
        (Phase::Progressing, Some(3), 40, false)
    );
    let transition = outcome.transition.expect("a transition");
    assert_eq!(transition.kind, TransitionKind::StepsChanged);
    assert_eq!(
        transition.message,
        "steps changed: the current step is now step 4/5 (setWeight 40); entered as written"
    );
    let next = outcome.state.tick(&edited, T0 + 61 * SEC, &pass());
    assert_eq!(
        shape(&next.state),
        (Phase::Progressing, Some(4), 100, false)
    );

    // Step 1 (setWeight 5, being judged) becomes pause {}.
    let s = progressing();
    let mut steps = spec_steps();
    steps[0] = Step::Pause(None);
    let edited = Fixture::new().steps(steps).0;
    let outcome = reconcile(&s, &edited, T0 + 2 * SEC);
    assert_eq!(shape(&outcome.state), (Phase::Paused, Some(0), 5, false));
    assert_eq!(outcome.state.pause_deadline_ms, None);
    let waiting = outcome.state.tick(&edited, T0 + 90 * SEC, &pass());
    assert_eq!(waiting.transition, None, "an indefinite pause waits");
    let promoted = ok(waiting
        .state
        .command(Command::Promote, &edited, T0 + 91 * SEC));
    assert_eq!(shape(&promoted.state), (Phase::Paused, Some(1), 5, false));

    // Step 1's weight edited from 5 to 15: applied at once.
    let mut steps = spec_steps();
    steps[0] = Step::SetWeight(pct(15));
    let edited = Fixture::new().steps(steps).0;
    let outcome = reconcile(&progressing(), &edited, T0 + 2 * SEC);
    assert_eq!(
        shape(&outcome.state),
        (Phase::Progressing, Some(0), 15, false)
    );

    // An edit that leaves the current step as it is changes nothing.
    let mut steps = spec_steps();
    steps[4] = Step::SetWeight(pct(60));
    let edited = Fixture::new().steps(steps).0;
    let outcome = reconcile(&paused_timed(), &edited, T0 + 5 * SEC);
    assert_eq!(outcome.transition, None);
    assert_eq!(outcome.state.pause_deadline_ms, Some(T0 + 31 * SEC));

    // Held, the step is read as written when released: its new weight.
    let mut steps = spec_steps();
    steps[0] = Step::SetWeight(pct(15));
    let edited = Fixture::new().steps(steps).0;
    let outcome = reconcile(&held(), &edited, T0 + 2 * SEC);
    assert_eq!(outcome.transition, None, "a hold is kept");
    let resumed = ok(outcome
        .state
        .command(Command::Resume, &edited, T0 + 3 * SEC));
    assert_eq!(
        shape(&resumed.state),
        (Phase::Progressing, Some(0), 15, false)
    );
}

#[test]
fn the_current_pause_edited_to_another_length_counts_from_its_start() {
    // Step 2 (pause 30s) entered at T0 + 1 s, so its deadline is T0 + 31 s.
    let s = paused_timed();
    assert_eq!(s.pause_deadline_ms, Some(T0 + 31 * SEC));
    let with_pause = |secs: u64| {
        let mut steps = spec_steps();
        steps[1] = Step::Pause(Some(Duration::from_secs(secs)));
        Fixture::new().steps(steps).0
    };

    // Shortened to 10 s at T0 + 5 s: it ends at T0 + 11 s.
    let shorter = with_pause(10);
    let outcome = reconcile(&s, &shorter, T0 + 5 * SEC);
    assert_eq!(outcome.state.pause_deadline_ms, Some(T0 + 11 * SEC));
    let transition = outcome.transition.expect("a transition to persist");
    assert_eq!(transition.kind, TransitionKind::StepsChanged);
    assert_eq!(
        transition.message,
        "steps changed: the current step is now step 2/5 (pause 10s), counted from the pause's start"
    );
    assert!(
        outcome.state.message.contains("6 s left"),
        "{}",
        outcome.state.message
    );
    let again = reconcile(&outcome.state, &shorter, T0 + 6 * SEC);
    assert_eq!(again.transition, None, "the same length changes nothing");
    let next = again.state.tick(&shorter, T0 + 11 * SEC, &pass());
    assert_eq!(shape(&next.state), (Phase::Progressing, Some(2), 25, false));

    // Shortened below what already ran: over at the next tick.
    let outcome = reconcile(&s, &with_pause(2), T0 + 5 * SEC);
    assert_eq!(outcome.state.pause_deadline_ms, Some(T0 + 3 * SEC));
    let next = outcome.state.tick(&with_pause(2), T0 + 6 * SEC, &pass());
    assert_eq!(next.state.step_index, Some(2));

    // Held 10 s into the pause (20 s left), lengthened to 60 s: 50 s left.
    let held = cmd(&s, Command::Pause, T0 + 11 * SEC);
    assert_eq!(held.pause_remaining_ms, Some(20 * SEC));
    let outcome = reconcile(&held, &with_pause(60), T0 + 20 * SEC);
    assert_eq!(outcome.state.pause_remaining_ms, Some(50 * SEC));
    assert!(outcome.state.held, "still held");
    let resumed = cmd(&outcome.state, Command::Resume, T0 + 30 * SEC);
    assert_eq!(resumed.pause_deadline_ms, Some(T0 + 80 * SEC));

    // A state written before lengths were kept keeps its deadline.
    let mut old = paused_timed();
    old.pause_length_ms = None;
    let outcome = reconcile(&old, &shorter, T0 + 5 * SEC);
    assert_eq!(outcome.transition, None);
    assert_eq!(outcome.state.pause_deadline_ms, Some(T0 + 31 * SEC));
}

// --- state file lost ---

#[test]
fn an_unreadable_state_file_holds_at_weight_zero() {
    let s = recovered();
    assert_eq!(
        s.message,
        "state file unreadable (expected value at line 1 column 1): held at weight 0 until an \
         operator acts: resume or promote start the steps from step 1, promote --full promotes, \
         abort aborts"
    );
    assert_eq!(
        s.route_override(),
        Some(RouteOverride {
            canary_weight: Weight::ZERO,
            rollout_seq: 1,
            preview_live: true,
        })
    );
    // Passing judgements never start the steps.
    let mut state = s.clone();
    for i in 1..50 {
        let outcome = state.tick(&route(), T0 + i * SEC, &pass());
        assert_eq!(outcome.transition, None);
        state = outcome.state;
    }
    assert_eq!(shape(&state), (Phase::Paused, None, 0, true));
    assert_eq!(state.message, s.message);
    // Without a canary to protect, the route is simply Healthy.
    let no_canary = RolloutState::unreadable(&Fixture::new().canary(None).0, T0, "gone");
    assert_eq!(shape(&no_canary), (Phase::Healthy, None, 0, false));
}

// --- numbers from outside ---

/// A state read from a file or a status may hold any number; at the
/// largest the machine's arithmetic has no room, and it must not panic.
#[test]
fn the_largest_numbers_a_state_can_hold_never_panic() {
    // A new canary revision after rollout u64::MAX: the sequence stays.
    let mut last = paused_indefinite();
    last.rollout_seq = u64::MAX;
    let next = reconcile(&last, &Fixture::new().canary(Some("v3")).0, T0 + 60 * SEC);
    assert_eq!(
        next.transition.map(|t| t.kind),
        Some(TransitionKind::Started)
    );
    assert_eq!(next.state.rollout_seq, u64::MAX);

    // A step past any steps: the rollout is held, as for steps edited away.
    let mut past = progressing();
    past.step_index = Some(usize::MAX);
    let held = reconcile(&past, &route(), T0 + SEC);
    assert_eq!(shape(&held.state), (Phase::Paused, None, 5, true));
    assert!(
        held.state.message.contains("no longer exists (5 steps)"),
        "{}",
        held.state.message
    );
    // Promote from there goes past the last step.
    let promoted = ok(past.command(Command::Promote, &route(), T0 + SEC));
    assert_eq!(promoted.state.phase, Phase::Promoted);

    // A gate before a step past any steps.
    let mut waiting = progressing();
    waiting.phase = Phase::Paused;
    waiting.webhooks.wait = Some(GateWait {
        gate: Gate::ConfirmPromotion,
        step: usize::MAX,
        detail: None,
    });
    let ticked = waiting.tick(&route(), T0 + SEC, &pass());
    assert!(
        ticked
            .state
            .message
            .starts_with("waiting for the confirm-promotion webhook before step "),
        "{}",
        ticked.state.message
    );
}

/// What a state read from outside must hold for the machine to go on from
/// it: room for the next sequence number, step and gate step.
#[test]
fn loaded_numbers_are_checked_naming_the_field() {
    let fine = paused_indefinite();
    assert_eq!(fine.check_range(), Ok(()));
    type Edit = fn(&mut RolloutState);
    let table: Vec<(Edit, Result<(), &str>)> = vec![
        (|s| s.rollout_seq = u64::MAX - 1, Ok(())),
        (
            |s| s.rollout_seq = u64::MAX,
            Err("rolloutSeq: 18446744073709551615 leaves no room for the next rollout"),
        ),
        (|s| s.step_index = Some(usize::MAX - 1), Ok(())),
        (
            |s| s.step_index = Some(usize::MAX),
            Err("stepIndex: 18446744073709551615 leaves no room for the next step"),
        ),
        (
            |s| {
                s.webhooks.wait = Some(GateWait {
                    gate: Gate::ConfirmRollout,
                    step: usize::MAX,
                    detail: None,
                });
            },
            Err("webhooks.wait.step: 18446744073709551615 leaves no room for the next step"),
        ),
    ];
    for (edit, expected) in table {
        let mut state = fine.clone();
        edit(&mut state);
        let checked = state.check_range().map_err(|e| e.to_string());
        match (checked, expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.starts_with(want), "{got:?}, expected {want:?}"),
            (got, want) => panic!("{got:?}, expected {want:?}"),
        }
    }
}

// --- persistence ---

#[test]
fn state_roundtrips_through_json() {
    let states = [
        healthy(),
        progressing()
            .tick(&route(), T0 + SEC, &inconclusive())
            .state,
        paused_timed(),
        ok(paused_timed().command(Command::Pause, &route(), T0 + 5 * SEC)).state,
        aborted(),
        progressing().tick(&route(), T0 + SEC, &failing()).state,
        promoted(),
        recovered(),
        RolloutState::start(
            &Fixture::new()
                .steps(vec![Step::SetWeight(Weight::from_ppm(1).expect("1 ppm"))])
                .0,
            T0,
        )
        .state,
    ];
    for state in states {
        let json = serde_json::to_string_pretty(&state).expect("serializable");
        let back: RolloutState = serde_json::from_str(&json).expect("deserializable");
        assert_eq!(back, state, "{json}");
    }
    let json = serde_json::to_value(paused_timed()).expect("serializable");
    assert_eq!(json["route"], "checkout");
    assert_eq!(json["phase"], "Paused");
    assert_eq!(json["stepIndex"], 1);
    assert_eq!(json["canaryWeight"], 5.0);
    assert_eq!(json["rolloutSeq"], 1);
    assert_eq!(json["pauseDeadlineMs"], T0 + 31 * SEC);
    assert_eq!(json["rolloutStartedMs"], T0);
    assert_eq!(json["lastJudgement"]["verdict"]["result"], "pass");
    let aborted = serde_json::to_value(aborted()).expect("serializable");
    assert_eq!(aborted["abortReason"], "manual");
    // A weight that is not a valid percentage is refused.
    let mut bad = json.clone();
    bad["canaryWeight"] = serde_json::json!(101.0);
    assert!(serde_json::from_value::<RolloutState>(bad).is_err());
}

mod analysis_runs;
mod blue_green;
mod gates;
