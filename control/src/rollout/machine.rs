//! The rollout state machine of one route: phases, steps, commands and
//! config changes, as pure functions from the state, the route's validated
//! config and the time (milliseconds since the UNIX epoch, passed in) to a
//! new state and a [`Transition`] describing the change.
//!
//! Every method takes `&self` and returns the new state in an [`Outcome`]:
//! the caller persists it (when there is a transition) before acting on it.
//!
//! # Phases and steps
//!
//! - `Healthy`: no rollout; weight 0, `step_index` `None`.
//! - `Progressing`: at a `setWeight` step. The weight applies when the step
//!   is entered; the step completes at the first later [`RolloutState::tick`]
//!   whose judgement allows it (see below).
//! - `Paused`: at a `pause` step, or held by the `pause` command. A timed
//!   pause has a deadline (`pause_deadline_ms`, wall-clock, so it survives a
//!   restart) and completes at the first tick at or after it whose judgement
//!   allows it; `pause: {}` completes only by `promote`. A held rollout never
//!   advances by itself; analysis keeps running and can still abort it.
//! - `Aborted`: weight 0 until `retry` or a new canary revision.
//! - `Promoted`: every step done (or `promote --full`): weight 100 until the
//!   config names the promoted revision as `stable.revision` (then `Healthy`).
//!   Until then the config is behind, and a config with another canary
//!   revision is refused ([`ConfigRefused`]).
//!
//! A judgement allows a step to complete unless it is a Fail. With an
//! `analysis` block in the config (`Strategy::gated_by_analysis`) an
//! inconclusive judgement (fewer than `minRequests` canary requests) holds
//! the step too, except at weight 0, where the canary has no traffic to
//! judge (a blue-green preview, served to its own clients at weight 0, is
//! judged like any step). Without one, steps go by time and commands alone, as in Argo
//! Rollouts, and the default thresholds only abort a failing canary.
//!
//! At most one step completes per tick; entering the next step happens at
//! once (a `setWeight` sets its weight, a pause starts its timer). After the
//! last step the rollout is `Promoted`, with `step_index` = the step count
//! (as Argo's `currentStepIndex`).
//!
//! # Commands ([`Command`]; any other phase gets [`CommandRefused`], HTTP 409)
//!
//! | command | applies in | effect |
//! | --- | --- | --- |
//! | `promote` | Progressing, Paused (held or not) | the current step ends, the next is entered once its gates pass; past a waiting gate; releases a hold |
//! | `promote --full` | Progressing, Paused | Promoted: weight 100 |
//! | `abort` | Progressing, Paused, Promoted | Aborted: weight 0 (from Promoted: back to stable) |
//! | `retry` | Aborted | step 1 again, new window start (`rollout_started_ms`), failures and evidence reset, same `rollout_seq` |
//! | `pause` | Progressing, Paused, not held | held: phase Paused; a timed pause's remaining time is kept |
//! | `resume` | held | released: a timed pause gets a new deadline of now + the remaining time it had when held |
//!
//! # Rollouts and config
//!
//! A rollout starts (`rollout_seq` + 1, step 1) when the config brings a
//! canary revision that differs from the current rollout's, from the stable
//! revision, and from the last promoted revision; also on a first start with
//! no state. A canary revision equal to `stable.revision` never starts one.
//! A canary removed from the config, or equal to stable, brings the route to
//! `Healthy`. Edits to the steps apply from the next step entered, except
//! that a current step edited into another one (another kind, another
//! weight, a pause now timed or not) is entered again as written; if the
//! current step no longer exists, the rollout is held before step 1 at its
//! current weight. Routes without a strategy are fixed splits, not managed
//! here.
//!
//! # Webhook gates
//!
//! Flagger's gates (`confirm-rollout`, `pre-rollout`,
//! `confirm-traffic-increase`, `confirm-promotion`) hold the entry of a
//! step until their hooks answer 2xx, and `rollout` and `rollback` hooks can
//! abort; the answers come in through [`RolloutState::on_gate_result`]. See
//! the `gates` module.
//!
//! # Blue-green
//!
//! A `blueGreen` strategy runs as the steps [`weir_config::BlueGreen::steps`]
//! builds: `setWeight: 0` (the preview), the pre-promotion `analysis` step,
//! a pause (`{}` without auto-promotion, `autoPromotionSeconds` with it),
//! `setWeight: 100` (the swap) and the post-promotion `analysis` step, so
//! commands, persistence and judgement are those of a canary rollout. What
//! differs: the stage ([`RolloutState::blue_green_stage`]) is derived from
//! the step and recorded with each transition; the gates are
//! `confirm-rollout` and `pre-rollout` before the preview and
//! `confirm-promotion` before the swap; the analysis runs are
//! [`RunKind::PrePromotion`] and [`RunKind::PostPromotion`], whose failure
//! aborts with their own reason; and once Promoted, `abort` (the swap back)
//! applies only within `scaleDownDelaySeconds` of `promoted_ms`.
//!
//! # Analysis failures
//!
//! Each failed judgement counts (`failures`, since the rollout or retry
//! began); when they exceed `failureLimit` the rollout aborts with the
//! failing rule as [`AbortReason`]; a failure of `maxExcessErrors` aborts
//! at once, whatever `failureLimit` says. A tolerated failure is a transition too
//! (so the count is persisted); the step does not advance on it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_config::{Route, RouteOverride, Step, Strategy, Weight};

pub use weir_config::status::{BlueGreenStage, Phase};

use super::analysis::{self, Evidence, FailKind, Judgement, Observation, Verdict};
use crate::analysis_templates::{RunKey, RunKind, RunPhase};

mod gates;

pub use gates::{Gate, GateWait, WebhookProgress};

/// An operator command, from the CLI or the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// End the current pause (or skip the current step); go on to the next.
    Promote,
    /// Skip the remaining steps: 100 % canary, Promoted.
    PromoteFull,
    /// Weight 0 at once: Aborted.
    Abort,
    /// From Aborted: start the steps again.
    Retry,
    /// Hold the step timer.
    Pause,
    /// Release the step timer.
    Resume,
}

/// Why a rollout aborted, as a bounded metric label
/// (`weir_rollout_aborts_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortReason {
    /// Canary error rate above `maxErrorRate`.
    AnalysisErrorRate,
    /// Canary significantly worse than stable.
    AnalysisCompare,
    /// Canary p99 latency above `maxLatencyP99`.
    AnalysisLatency,
    /// An analysis template run Failed or Error.
    AnalysisRun,
    /// Canary errors beyond stable's prediction above `maxExcessErrors`.
    AnalysisExcessErrors,
    /// The `abort` command.
    Manual,
    /// `pre-rollout` or `rollout` webhook checks failed beyond `threshold`.
    Webhook,
    /// A `rollback` webhook answered 2xx.
    WebhookRollback,
    /// A blue-green pre-promotion analysis run Failed or Error (the active
    /// traffic never saw the new revision).
    PrePromotionAnalysis,
    /// A blue-green post-promotion analysis run Failed or Error: swapped back.
    PostPromotionAnalysis,
}

/// How the message of a rollout held by an Inconclusive analysis run ends;
/// the message is kept for as long as the hold lasts.
const INCONCLUSIVE_HOLD: &str =
    "for an operator: promote goes on to the next step (its gates asked first), abort aborts";

/// How requests reach a blue-green preview, for messages: "host
/// preview.shop.example or header x-weir-preview: 1".
fn preview_reach(preview: &weir_config::Preview) -> String {
    let hosts: Vec<String> = preview
        .hosts
        .iter()
        .map(|host| match host {
            weir_config::HostMatch::Exact(name) => name.clone(),
            weir_config::HostMatch::Suffix(suffix) => format!("*{suffix}"),
        })
        .collect();
    let mut ways = Vec::new();
    if !hosts.is_empty() {
        ways.push(format!("host {}", hosts.join(", ")));
    }
    if let Some(header) = &preview.header {
        ways.push(format!("header {}: {}", header.name, header.value));
    }
    ways.join(" or ")
}

/// The persisted rollout state of one route (JSON, camelCase keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// Route name.
    pub route: String,
    /// Current phase; never [`Phase::Unknown`] (a state file naming another
    /// phase is unreadable).
    #[serde(deserialize_with = "weir_config::status::known_phase")]
    pub phase: Phase,
    /// 0-based index of the current step; the step count once Promoted;
    /// `None` without a rollout, or while held before the first step (state
    /// file lost, steps edited away).
    pub step_index: Option<usize>,
    /// Canary weight in force (serialized as a percentage).
    #[serde(with = "percent")]
    pub canary_weight: Weight,
    /// Sequence number of the current (or last) rollout; part of the rollout
    /// id (cohort seed). Incremented by each new rollout, kept by retry.
    pub rollout_seq: u64,
    /// The config's stable revision, as last reconciled.
    pub stable_revision: String,
    /// The revision being rolled out (or aborted, or promoted); `None` when
    /// Healthy.
    pub canary_revision: Option<String>,
    /// The last revision that completed its rollout (kept after the config
    /// caught up, so naming it as canary again starts nothing).
    pub promoted_revision: Option<String>,
    /// End of the current timed pause, ms since the UNIX epoch; `None` when
    /// not in a timed pause or while held.
    pub pause_deadline_ms: Option<u64>,
    /// While held in a timed pause: the time it had left.
    pub pause_remaining_ms: Option<u64>,
    /// The length of the current timed pause as it was entered (or last
    /// edited): with the deadline, or the time left while held, it says
    /// when the pause started, so an edit of its duration counts from
    /// there. `None` outside a timed pause, and in states written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_length_ms: Option<u64>,
    /// Held by the `pause` command.
    pub held: bool,
    /// When the rollout started or was retried, ms since the UNIX epoch: the
    /// analysis window never reaches back before it.
    pub rollout_started_ms: u64,
    /// Failed judgements since the rollout started (or was retried).
    pub failures: u32,
    /// What is going on, for `weir status`.
    pub message: String,
    /// Why the rollout aborted, while Aborted.
    pub abort_reason: Option<AbortReason>,
    /// The latest judgement (verdict, reason and per-role figures).
    pub last_judgement: Option<Judgement>,
    /// The comparison test's running evidence.
    #[serde(default)]
    pub evidence: Evidence,
    /// The webhook gate waited on and the failed webhook checks.
    #[serde(default)]
    pub webhooks: WebhookProgress,
    /// When the rollout was promoted, ms since the UNIX epoch: a blue-green
    /// `abort` swaps back until `scaleDownDelaySeconds` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_ms: Option<u64>,
    /// When a promoted blue-green rollout's old revision stops being the
    /// switch-back target, ms since the UNIX epoch: fixed at the promotion
    /// from the `scaleDownDelaySeconds` of that moment (as Argo Rollouts'
    /// scale-down deadline), so that a later edit of the delay neither opens
    /// again a window that closed (the old revision may be gone) nor cuts
    /// one short. A state written before it was kept has none, and its
    /// window counts from `promoted_ms` with the delay configured now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_deadline_ms: Option<u64>,
    /// A blue-green rollout's stage as of the last transition (the stage
    /// follows from the phase, the step and the gate waited on; see
    /// [`RolloutState::blue_green_stage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green_stage: Option<BlueGreenStage>,
}

/// A new state and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The state to persist (when `transition` is set) and act on.
    pub state: RolloutState,
    /// What changed; `None` when nothing needs persisting or logging (the
    /// state may still carry a new judgement, message and evidence).
    pub transition: Option<Transition>,
}

/// One change of a rollout, for logs, the status message and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// What happened.
    pub kind: TransitionKind,
    /// Phase before.
    pub from: Phase,
    /// Phase after.
    pub to: Phase,
    /// Step before.
    pub from_step: Option<usize>,
    /// Step after.
    pub to_step: Option<usize>,
    /// Canary weight in force after.
    pub canary_weight: Weight,
    /// A one-line description with the numbers.
    pub message: String,
    /// An abort because an analysis template run ended `Error` (not
    /// `Failed`): notified as `on-analysis-run-error`.
    pub run_errored: bool,
}

/// What a [`Transition`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitionKind {
    /// A new rollout started (new canary revision, or first start).
    Started,
    /// A step completed (analysis passed, pause over); the next was entered.
    Advanced,
    /// The last step completed: Promoted.
    Completed,
    /// `promote`: the current step was ended, the next entered (or Promoted).
    Promoted,
    /// `promote --full`.
    PromotedFull,
    /// Weight 0: by analysis or the `abort` command.
    Aborted(AbortReason),
    /// A failed judgement within `failureLimit`.
    FailureCounted,
    /// `retry`: the steps start again.
    Retried,
    /// `pause`.
    Held,
    /// `resume`.
    Released,
    /// The config names the promoted revision as stable: Healthy.
    CaughtUp,
    /// The canary left the config (removed, equal to stable, or the strategy
    /// removed): Healthy.
    Ended,
    /// The current step no longer exists in the config: held.
    StepsChanged,
    /// A webhook gate answered 2xx: the next gate is waited on, or the
    /// step it held is entered.
    GatePassed,
    /// A failed `pre-rollout` or `rollout` webhook check within `threshold`.
    WebhookFailureCounted,
    /// An analysis template run ended Inconclusive: held for an operator.
    AnalysisInconclusive,
}

/// A command that does not apply to the rollout's phase (HTTP 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandRefused {
    /// The command refused.
    pub command: Command,
    /// The phase it was refused in (`None` for a route without strategy).
    pub phase: Option<Phase>,
    message: String,
}

/// A config change refused because the config is behind a promotion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRefused {
    /// Route name.
    pub route: String,
    /// The promoted revision the config must name as stable.
    pub promoted: String,
    /// The canary revision the config asked for; `None` when it names no
    /// canary, or no strategy, so that nothing would serve the promoted
    /// revision any more.
    pub requested: Option<String>,
}

impl fmt::Display for ConfigRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (route, promoted) = (&self.route, &self.promoted);
        match &self.requested {
            Some(requested) => write!(
                f,
                "route {route}: set stable.revision to {promoted} (promoted) before starting \
                 {requested}, or name {promoted} as the canary again"
            ),
            None => write!(
                f,
                "route {route}: set stable.revision to {promoted} (promoted) before removing the \
                 canary or the strategy, or name {promoted} as the canary again; {promoted} \
                 serves every request until then (to go back instead, abort the rollout while its \
                 strategy is in force)"
            ),
        }
    }
}

impl std::error::Error for ConfigRefused {}

impl ConfigRefused {
    /// The key of the route the refusal is about: the canary revision
    /// asked for, or the stable revision to change.
    pub fn key(&self) -> &'static str {
        match self.requested {
            Some(_) => "canary.revision",
            None => "stable.revision",
        }
    }
}

/// A number in a state read from outside (a state file, a status) that
/// leaves the machine no room to go on: the state is unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} leaves no room for the next {next} (at most {max})")]
pub struct StateOutOfRange {
    /// The field, as persisted (`rolloutSeq`, `stepIndex`,
    /// `webhooks.wait.step`).
    pub field: &'static str,
    /// The value read.
    pub value: u64,
    /// What could not follow it: `rollout` or `step`.
    pub next: &'static str,
    /// The largest value the field may hold.
    pub max: u64,
}

// === impl Command ===

impl Command {
    /// Every command.
    pub const ALL: [Command; 6] = [
        Command::Promote,
        Command::PromoteFull,
        Command::Abort,
        Command::Retry,
        Command::Pause,
        Command::Resume,
    ];

    /// The command as typed on the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Promote => "promote",
            Command::PromoteFull => "promote --full",
            Command::Abort => "abort",
            Command::Retry => "retry",
            Command::Pause => "pause",
            Command::Resume => "resume",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl AbortReason ===

impl AbortReason {
    /// Every reason, for pre-registering metric series.
    pub const ALL: [AbortReason; 10] = [
        AbortReason::AnalysisErrorRate,
        AbortReason::AnalysisCompare,
        AbortReason::AnalysisLatency,
        AbortReason::AnalysisRun,
        AbortReason::AnalysisExcessErrors,
        AbortReason::Manual,
        AbortReason::Webhook,
        AbortReason::WebhookRollback,
        AbortReason::PrePromotionAnalysis,
        AbortReason::PostPromotionAnalysis,
    ];

    /// The `reason` label value.
    pub const fn metric_label(self) -> &'static str {
        match self {
            AbortReason::AnalysisErrorRate => "analysis_error_rate",
            AbortReason::AnalysisCompare => "analysis_compare",
            AbortReason::AnalysisLatency => "analysis_latency",
            AbortReason::AnalysisRun => "analysis_run",
            AbortReason::AnalysisExcessErrors => "analysis_excess_errors",
            AbortReason::Manual => "manual",
            AbortReason::Webhook => "webhook",
            AbortReason::WebhookRollback => "webhook_rollback",
            AbortReason::PrePromotionAnalysis => "pre_promotion_analysis",
            AbortReason::PostPromotionAnalysis => "post_promotion_analysis",
        }
    }
}

impl From<FailKind> for AbortReason {
    fn from(kind: FailKind) -> Self {
        match kind {
            FailKind::ErrorRate => AbortReason::AnalysisErrorRate,
            FailKind::Compare => AbortReason::AnalysisCompare,
            FailKind::Latency => AbortReason::AnalysisLatency,
            FailKind::ExcessErrors => AbortReason::AnalysisExcessErrors,
        }
    }
}

// === impl Transition ===

impl Transition {
    /// The abort reason, when this transition aborted the rollout.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        match self.kind {
            TransitionKind::Aborted(reason) => Some(reason),
            _ => None,
        }
    }
}

// === impl CommandRefused ===

impl CommandRefused {
    /// The HTTP status of every refusal: 409 Conflict.
    pub const HTTP_STATUS: u16 = 409;

    /// The refusal of any command on a route without strategy: a fixed
    /// split, or a route without a canary.
    pub fn without_strategy(route: &Route, command: Command) -> CommandRefused {
        let name = &route.name;
        let what = if route.canary.is_some() {
            format!("{name} is a fixed split (edit canary.weight in the config)")
        } else {
            format!("{name} has no canary (add one with a strategy in the config)")
        };
        CommandRefused {
            command,
            phase: None,
            message: format!("{command} applies only to a route with a strategy; {what}"),
        }
    }

    /// What is wrong, for the `{"error": ...}` body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

// === impl RolloutState ===

impl RolloutState {
    /// The state of a route met for the first time (no persisted state): a
    /// route with a strategy and a canary revision other than stable starts
    /// rollout 1; otherwise Healthy.
    pub fn start(route: &Route, now_ms: u64) -> Outcome {
        let blank = RolloutState::blank(route);
        // A Healthy state never refuses a config; the fallback is unreachable.
        blank
            .reconcile(route, now_ms)
            .unwrap_or_else(|_| Outcome::unchanged(RolloutState::blank(route)))
    }

    /// The state of a route whose state file cannot be read: with a canary to
    /// protect, Paused and held before the first step at weight 0, with a
    /// message naming `error`. Nothing runs until an operator acts: `resume`
    /// or `promote` start the steps from step 1, `promote --full` promotes,
    /// `abort` aborts (then `retry` starts the steps); a new canary revision
    /// in the config starts a new rollout as usual.
    pub fn unreadable(route: &Route, now_ms: u64, error: &str) -> RolloutState {
        let mut state = RolloutState::blank(route);
        let canary = route
            .canary
            .as_ref()
            .filter(|c| route.strategy.is_some() && c.revision != route.stable.revision);
        if let Some(canary) = canary {
            state.phase = Phase::Paused;
            state.held = true;
            state.canary_revision = Some(canary.revision.to_string());
            // The lost sequence number is most likely 1, which keeps cohorts.
            state.rollout_seq = 1;
            state.rollout_started_ms = now_ms;
            state.message = format!(
                "state file unreadable ({error}): held at weight 0 until an operator acts: \
                 resume or promote start the steps from step 1, promote --full promotes, \
                 abort aborts"
            );
        }
        state
    }

    /// Checks the numbers of a state read from outside (a state file, a
    /// status) that the machine counts on: room for the next rollout's
    /// sequence number, and for the step after the current one and after
    /// the one a gate leads to. A step past the route's steps is not
    /// refused: the steps may have been edited since the state was
    /// written, and [`RolloutState::reconcile`] holds such a rollout.
    ///
    /// # Errors
    /// [`StateOutOfRange`] naming the first field at its largest value: the
    /// caller treats the state as unreadable ([`RolloutState::unreadable`]).
    pub fn check_range(&self) -> Result<(), StateOutOfRange> {
        if self.rollout_seq == u64::MAX {
            return Err(StateOutOfRange {
                field: "rolloutSeq",
                value: self.rollout_seq,
                next: "rollout",
                max: u64::MAX - 1,
            });
        }
        let steps = [
            ("stepIndex", self.step_index),
            (
                "webhooks.wait.step",
                self.webhooks.wait.as_ref().map(|w| w.step),
            ),
        ];
        for (field, index) in steps {
            if index == Some(usize::MAX) {
                return Err(StateOutOfRange {
                    field,
                    value: as_u64(usize::MAX),
                    next: "step",
                    max: as_u64(usize::MAX - 1),
                });
            }
        }
        Ok(())
    }

    /// True while analysis runs: Progressing or Paused.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Progressing | Phase::Paused)
    }

    /// The step index shown outside (the admin API, the dashboard, webhook
    /// and notification bodies): as kept, and 0 while a rollout waits before
    /// its first step (a gate holds it, it aborted there, or it is held
    /// there): SPEC's `stepIndex` is null only without a rollout. The kept
    /// `None` stays, as it tells the machine that step 1 was not entered.
    pub fn shown_step_index(&self) -> Option<usize> {
        self.step_index.or_else(|| {
            (self.phase != Phase::Healthy && self.canary_revision.is_some()).then_some(0)
        })
    }

    /// Whether `self` holds what `written` holds but for what each judgement
    /// changes (the message, the last judgement, the evidence), which is
    /// written only with a transition.
    pub fn writes_as(&self, written: &RolloutState) -> bool {
        let unjudged = |state: &RolloutState| RolloutState {
            message: String::new(),
            last_judgement: None,
            evidence: Evidence::default(),
            ..state.clone()
        };
        unjudged(self) == unjudged(written)
    }

    /// True while Promoted: the config should name the promoted revision as
    /// stable.
    pub fn is_config_behind(&self) -> bool {
        self.phase == Phase::Promoted
    }

    /// The weight in force and the rollout sequence for
    /// `Snapshot::compile`; `None` when Healthy (no canary traffic).
    pub fn route_override(&self) -> Option<RouteOverride> {
        (self.phase != Phase::Healthy).then_some(RouteOverride {
            canary_weight: self.canary_weight,
            rollout_seq: self.rollout_seq,
            // A blue-green preview serves the new revision from the start
            // of the rollout, once `confirm-rollout` said yes (the
            // `pre-rollout` tests run against it); an abort takes it away
            // with the weight.
            preview_live: matches!(
                self.phase,
                Phase::Progressing | Phase::Paused | Phase::Promoted
            ) && !self
                .webhooks
                .wait
                .as_ref()
                .is_some_and(|wait| wait.gate == Gate::ConfirmRollout),
        })
    }

    /// The stage of a blue-green rollout (`None` for a canary strategy):
    /// `Preview` before and at the first step (the `pre-rollout` webhooks
    /// wait there), `PrePromotion` at the pre-promotion analysis,
    /// `AwaitingPromotion` at the wait for promotion and while the
    /// `confirm-promotion` webhook holds the swap, `PostPromotion` from the
    /// swap on, `Done` once Promoted (and without a rollout). An aborted
    /// rollout keeps the stage it was aborted in (recorded at the abort).
    pub fn blue_green_stage(&self, strategy: &Strategy) -> Option<BlueGreenStage> {
        let bg = strategy.blue_green.as_ref()?;
        Some(match self.phase {
            Phase::Healthy | Phase::Promoted | Phase::Unknown => BlueGreenStage::Done,
            Phase::Aborted if self.blue_green_stage.is_some() => {
                self.blue_green_stage.unwrap_or(BlueGreenStage::Preview)
            }
            Phase::Progressing | Phase::Paused | Phase::Aborted => match &self.webhooks.wait {
                Some(wait) if wait.step == bg.swap_step() => BlueGreenStage::AwaitingPromotion,
                Some(wait) => bg.stage_at(wait.step.checked_sub(1)),
                None => match bg.stage_at(self.step_index) {
                    // Swapped back after the promotion.
                    BlueGreenStage::Done => BlueGreenStage::PostPromotion,
                    stage => stage,
                },
            },
        })
    }

    /// Whether `abort` applies while Promoted: always for a canary; for a
    /// blue-green rollout only within `scaleDownDelaySeconds` of the
    /// promotion, while the old revision is the switch-back target.
    fn can_swap_back(&self, strategy: &Strategy, now_ms: u64) -> bool {
        strategy.blue_green.is_none()
            || self
                .switch_back_until_ms(strategy)
                .is_some_and(|until| now_ms < until)
    }

    /// When a promoted blue-green rollout's old revision stops being the
    /// switch-back target: `scaleDownDelaySeconds` after the promotion, as
    /// the delay was then (see [`RolloutState::scale_down_deadline_ms`]).
    pub fn switch_back_until_ms(&self, strategy: &Strategy) -> Option<u64> {
        let bg = strategy.blue_green.as_ref()?;
        self.scale_down_deadline_ms.or_else(|| {
            self.promoted_ms
                .map(|at| at.saturating_add(millis(bg.scale_down_delay)))
        })
    }

    /// Follows a (re)loaded config: starts a rollout for a new canary
    /// revision, ends it when the canary leaves or the config catches up
    /// with a promotion. Call for every route with a strategy on each config
    /// load, persisted states included.
    ///
    /// # Errors
    /// [`ConfigRefused`] while Promoted, when the config brings a canary
    /// revision other than the promoted one without naming the promoted
    /// revision as stable: the config file is refused as a whole, at a
    /// reload and at a start alike; a CanaryRoute, whose spec cannot be
    /// refused, is held instead ([`RolloutState::held_behind`]).
    pub fn reconcile(&self, route: &Route, now_ms: u64) -> Result<Outcome, ConfigRefused> {
        let mut s = self.clone();
        s.route = route.name.to_string();
        s.stable_revision = route.stable.revision.to_string();
        if self.phase == Phase::Promoted {
            // A config that names the promoted revision nowhere (no canary,
            // or no strategy, with stable still the old revision) would
            // silently send everything back to the old revision.
            // The canary named again (with the strategy) or made stable is
            // taken; another canary is refused below.
            let promoted = self.promoted_name();
            let stable = &*route.stable.revision;
            let canary = route
                .canary
                .as_ref()
                .map(|c| &*c.revision)
                .filter(|c| *c != stable);
            // Without a strategy the canary would serve at the config's
            // fixed weight (0 unless written): refused too.
            let named = stable == promoted
                || (canary == Some(promoted.as_str()) && route.strategy.is_some());
            if !named && (route.strategy.is_none() || canary.is_none()) {
                let requested = canary.filter(|c| *c != promoted).map(str::to_owned);
                return Err(ConfigRefused {
                    route: s.route,
                    promoted,
                    requested,
                });
            }
        }
        let Some(strategy) = &route.strategy else {
            return Ok(self.end(s, "the route has no strategy any more (a fixed split)"));
        };
        let stable = &*route.stable.revision;
        let canary = route.canary.as_ref().map(|c| &*c.revision);

        if self.phase == Phase::Promoted {
            let promoted = self.promoted_name();
            if stable == promoted {
                let caught_up = self.caught_up(s, &promoted);
                return Ok(match canary {
                    Some(c) if c != stable => {
                        let started = caught_up.state.start_rollout(strategy, c, now_ms);
                        started.with_from(self)
                    }
                    _ => caught_up,
                });
            }
            return match canary {
                Some(c) if c == promoted => {
                    // Promoted serves the canary at 100 %, also once a
                    // CanaryRoute held behind at weight 0 names it again.
                    s.canary_weight = Weight::FULL;
                    // It stands just past the last step as now written
                    // (fewer steps too): a status naming a step past them
                    // cannot be read.
                    s.step_index = s.step_index.map(|i| i.min(strategy.steps.len()));
                    s.refresh_message(strategy, now_ms);
                    Ok(Outcome::unchanged(s))
                }
                // Another canary (no canary, or stable as the canary, was
                // refused above).
                other => Err(ConfigRefused {
                    route: s.route,
                    promoted,
                    requested: other.filter(|c| *c != stable).map(str::to_owned),
                }),
            };
        }

        match canary {
            None => Ok(self.end(s, "the canary left the config")),
            Some(c) if c == stable => Ok(self.end(s, "canary.revision equals stable.revision")),
            Some(c)
                if self.phase != Phase::Healthy && self.canary_revision.as_deref() == Some(c) =>
            {
                Ok(s.check_steps(self, strategy, now_ms))
            }
            Some(c) if self.promoted_revision.as_deref() == Some(c) => {
                Ok(self.end(s, &format!("canary.revision {c} was already promoted")))
            }
            Some(c) => Ok(s.start_rollout(strategy, c, now_ms).with_from(self)),
        }
    }

    /// The state of a CanaryRoute whose spec is behind its promotion
    /// (`refused` came from [`RolloutState::reconcile`] for `route`; a config
    /// file that is behind is refused instead): phase and step stay as
    /// persisted and no rollout starts. When the spec still names the
    /// promoted revision as its canary (its strategy dropped), that revision
    /// keeps serving every request. Otherwise the canary weight is 0: the
    /// promoted revision is not in the spec any more, and the revision the
    /// spec names instead has never been judged, so the spec's stable
    /// serves until an operator fixes the spec. The message names the
    /// change needed. Other routes are not affected.
    pub fn held_behind(&self, refused: &ConfigRefused, route: &Route) -> RolloutState {
        let mut s = self.clone();
        let promoted = &refused.promoted;
        let change = match &refused.requested {
            Some(requested) => format!("starting {requested}"),
            None => "removing the canary or the strategy".to_owned(),
        };
        let named = route
            .canary
            .as_ref()
            .is_some_and(|c| *c.revision == **promoted);
        if named {
            s.canary_weight = Weight::FULL;
            s.message = format!(
                "the config is behind a promotion: set stable.revision to {promoted} (promoted) \
                 before {change}; {promoted} serves every request until then"
            );
        } else {
            s.canary_weight = Weight::ZERO;
            s.message = format!(
                "held at weight 0: the config is behind a promotion: set stable.revision to \
                 {promoted} (promoted) before {change}; stable serves every request until then",
            );
        }
        s
    }

    /// The revision a Promoted rollout promoted.
    pub fn promoted_name(&self) -> String {
        self.promoted_revision
            .clone()
            .or_else(|| self.canary_revision.clone())
            .unwrap_or_default()
    }

    /// Applies an operator command.
    ///
    /// # Errors
    /// [`CommandRefused`] (HTTP 409) when the command does not apply to the
    /// phase, with a message saying why; the state is unchanged.
    pub fn command(
        &self,
        command: Command,
        route: &Route,
        now_ms: u64,
    ) -> Result<Outcome, CommandRefused> {
        let Some(strategy) = &route.strategy else {
            return Err(CommandRefused::without_strategy(route, command));
        };
        let mut s = self.clone();
        let active = self.is_active();
        // A blue-green rollout swaps on the pre-promotion analysis' success
        // and is judged by the post-promotion analysis after it: `promote`
        // does not skip either while it runs (SPEC 12), `promote --full`
        // does. Held there (the run ended Inconclusive, or `pause`),
        // `promote` goes on as the hold's message says.
        if command == Command::Promote && active && !self.held && self.webhooks.wait.is_none() {
            let which = match self.step_index.map(|i| run_kind(strategy, i)) {
                Some(RunKind::PrePromotion(_)) => Some("pre"),
                Some(RunKind::PostPromotion(_)) => Some("post"),
                _ => None,
            };
            if let Some(which) = which {
                let stage = self
                    .blue_green_stage(strategy)
                    .map_or("", BlueGreenStage::as_str);
                return Err(CommandRefused {
                    command,
                    phase: Some(self.phase),
                    message: format!(
                        "promote does not skip a blue-green analysis; {} is in blue-green {stage}: \
                         the {which}-promotion analysis decides (promote --full skips it and \
                         promotes, abort aborts)",
                        self.route
                    ),
                });
            }
        }
        match command {
            Command::Promote if active => {
                // Past a waiting gate (the operator decides); otherwise the
                // current step ends and the gates before the next one are
                // asked, as when a step ends by itself.
                // Held before step 1 (an unreadable state, changed steps),
                // the steps start as `resume` starts them.
                match (self.webhooks.wait.as_ref(), self.step_index) {
                    (Some(wait), _) => s.enter(strategy, wait.step, now_ms),
                    (None, None) => s.enter(strategy, 0, now_ms),
                    (None, Some(i)) => s.enter_gated(strategy, i.saturating_add(1), now_ms),
                }
                let message = match self.step_index {
                    None => format!("promote: the steps start at {}", s.position(strategy)),
                    Some(_) => format!(
                        "promote: {} ended; {}",
                        self.position(strategy),
                        s.position(strategy)
                    ),
                };
                Ok(s.finish(self, strategy, now_ms, TransitionKind::Promoted, message))
            }
            Command::PromoteFull if active => {
                s.complete(strategy, now_ms);
                let message = format!(
                    "promote --full from {}: {} promoted, 100% canary",
                    self.position(strategy),
                    s.canary_name()
                );
                Ok(s.finish(
                    self,
                    strategy,
                    now_ms,
                    TransitionKind::PromotedFull,
                    message,
                ))
            }
            Command::Abort
                if active
                    || (self.phase == Phase::Promoted && self.can_swap_back(strategy, now_ms)) =>
            {
                let detail = format!("abort command, {}", self.position(strategy));
                Ok(s.abort(self, strategy, now_ms, AbortReason::Manual, detail))
            }
            Command::Retry if self.phase == Phase::Aborted => {
                s.restart(strategy, now_ms);
                let message = format!(
                    "retry: rollout {} of {} starts again at {}",
                    s.rollout_seq,
                    s.canary_name(),
                    s.position(strategy)
                );
                Ok(s.finish(self, strategy, now_ms, TransitionKind::Retried, message))
            }
            Command::Pause if active && !self.held => {
                s.held = true;
                s.phase = Phase::Paused;
                if let Some(deadline) = s.pause_deadline_ms.take() {
                    s.pause_remaining_ms = Some(deadline.saturating_sub(now_ms));
                }
                let message = format!("held at {}{}", s.position(strategy), s.remaining_note());
                Ok(s.finish(self, strategy, now_ms, TransitionKind::Held, message))
            }
            Command::Resume if active && self.held => {
                s.release(strategy, now_ms);
                let message = format!(
                    "resumed at {}{}",
                    s.position(strategy),
                    s.remaining_note_at(now_ms)
                );
                Ok(s.finish(self, strategy, now_ms, TransitionKind::Released, message))
            }
            _ => Err(self.refusal(command, strategy)),
        }
    }

    /// One analysis interval: judges `obs` (see [`analysis::judge`]), counts
    /// a failure or aborts, and completes the current step when its
    /// condition holds (no Fail, and a Pass when the strategy is gated by
    /// analysis; for a timed pause also `now_ms` ≥ deadline; never while
    /// held, never for `pause: {}`).
    ///
    /// Call every `analysis.interval` for each route with a strategy; outside
    /// Progressing and Paused nothing is judged and the state is returned
    /// unchanged.
    pub fn tick(&self, route: &Route, now_ms: u64, obs: &Observation) -> Outcome {
        let Some(strategy) = &route.strategy else {
            return Outcome::unchanged(self.clone());
        };
        if !self.is_active() {
            let mut s = self.clone();
            // A blue-green promotion's message counts down the switch-back
            // window, and says when it is over.
            if s.phase == Phase::Promoted && strategy.blue_green.is_some() {
                s.refresh_message(strategy, now_ms);
            }
            return Outcome::unchanged(s);
        }
        let mut s = self.clone();
        let judgement = analysis::judge(&strategy.analysis, obs, &mut s.evidence);
        let verdict = judgement.verdict.clone();
        s.last_judgement = Some(judgement);

        if let Verdict::Fail { kind, reason } = &verdict {
            s.failures = s.failures.saturating_add(1);
            let limit = strategy.analysis.failure_limit;
            // `maxExcessErrors` bounds harm by count: never tolerated.
            if s.failures > limit || *kind == FailKind::ExcessErrors {
                let detail = format!("analysis: {reason}");
                return s.abort(self, strategy, now_ms, AbortReason::from(*kind), detail);
            }
            let message = format!(
                "analysis failed ({} of {limit} tolerated): {reason}",
                s.failures
            );
            return s.finish(
                self,
                strategy,
                now_ms,
                TransitionKind::FailureCounted,
                message,
            );
        }

        // Only an `analysis` block makes a step wait for a pass; without one
        // the default thresholds only abort (counted above) and steps go by
        // time and commands, as in Argo Rollouts. At weight 0 the canary gets
        // no traffic to judge (a pause before the first setWeight, or
        // `setWeight: 0`): an inconclusive judgement must not hold such a
        // step forever either. A blue-green preview is the exception: at
        // weight 0 it serves the new revision to the preview's clients, and
        // it is judged on that traffic before anything else moves.
        let previewing = strategy
            .blue_green
            .as_ref()
            .is_some_and(|bg| bg.stage_at(s.step_index) == BlueGreenStage::Preview);
        let judged_ok = !strategy.gated_by_analysis
            || verdict.is_pass()
            || (s.canary_weight.is_zero() && !previewing);
        let done = judged_ok
            && !s.held
            && s.webhooks.wait.is_none()
            && match s.step_index.and_then(|i| strategy.steps.get(i)) {
                Some(Step::SetWeight(_)) => true,
                Some(Step::Pause(Some(_))) => s.pause_deadline_ms.is_none_or(|d| now_ms >= d),
                // An analysis step completes by its run's result alone.
                Some(Step::Pause(None) | Step::Analysis(_)) | None => false,
            };
        if !done {
            s.refresh_message(strategy, now_ms);
            return Outcome::unchanged(s);
        }
        let why = if strategy.gated_by_analysis && verdict.is_pass() {
            " (analysis passing)"
        } else {
            ""
        };
        s.advance(self, strategy, now_ms, why)
    }

    /// The analysis runs the rollout wants now: the current `analysis`
    /// step's, and the background run while Progressing or Paused. Each
    /// comes with the templates to run.
    pub fn wanted_analysis_runs(
        &self,
        strategy: &Strategy,
    ) -> Vec<(RunKey, std::sync::Arc<weir_config::AnalysisRef>)> {
        let mut wanted = Vec::new();
        if !self.is_active() {
            return wanted;
        }
        let key = |kind| RunKey {
            rollout_seq: self.rollout_seq,
            rollout_started_ms: self.rollout_started_ms,
            kind,
        };
        if let Some(background) = &strategy.background {
            wanted.push((key(RunKind::Background), std::sync::Arc::clone(background)));
        }
        // A step whose gate to the next step waits is done: its run is not
        // wanted any more.
        if let Some((index, Step::Analysis(analysis))) = self
            .step_index
            .filter(|_| self.webhooks.wait.is_none())
            .and_then(|i| strategy.steps.get(i).map(|step| (i, step)))
        {
            wanted.push((
                key(run_kind(strategy, index)),
                std::sync::Arc::clone(analysis),
            ));
        }
        wanted
    }

    /// The phase of analysis run `run` (see [`Self::wanted_analysis_runs`]):
    /// a run of another rollout, retry or step is ignored. Failed or Error
    /// aborts ([`AbortReason::AnalysisRun`]); Inconclusive holds the
    /// rollout (Paused) for an operator; Successful completes the current
    /// `analysis` step (not while held; a background run's success changes
    /// nothing). Call on every tick with each wanted run's phase.
    pub fn on_analysis_result(
        &self,
        route: &Route,
        run: &RunKey,
        phase: RunPhase,
        message: &str,
        now_ms: u64,
    ) -> Outcome {
        let unchanged = || Outcome::unchanged(self.clone());
        let Some(strategy) = &route.strategy else {
            return unchanged();
        };
        if !self.is_active()
            || run.rollout_seq != self.rollout_seq
            || run.rollout_started_ms != self.rollout_started_ms
        {
            return unchanged();
        }
        let (what, reason) = match run.kind {
            RunKind::Step(index) | RunKind::PrePromotion(index) | RunKind::PostPromotion(index) => {
                // Once a gate before a later step waits, the step is done
                // (its run passed, or `promote` ended it).
                let is_current = self.step_index == Some(index)
                    && self.webhooks.wait.is_none()
                    && matches!(strategy.steps.get(index), Some(Step::Analysis(_)))
                    && run.kind == run_kind(strategy, index);
                if !is_current {
                    return unchanged();
                }
                match run.kind {
                    RunKind::PrePromotion(_) => (
                        "the pre-promotion analysis run".to_owned(),
                        AbortReason::PrePromotionAnalysis,
                    ),
                    RunKind::PostPromotion(_) => (
                        "the post-promotion analysis run".to_owned(),
                        AbortReason::PostPromotionAnalysis,
                    ),
                    _ => (
                        format!("the analysis run of step {}", index + 1),
                        AbortReason::AnalysisRun,
                    ),
                }
            }
            RunKind::Background => (
                "the background analysis run".to_owned(),
                AbortReason::AnalysisRun,
            ),
        };
        let s = self.clone();
        match phase {
            RunPhase::Failed | RunPhase::Error => {
                let detail = format!("{what} is {phase}: {message}");
                let mut outcome = s.abort(self, strategy, now_ms, reason, detail);
                if let Some(transition) = &mut outcome.transition {
                    transition.run_errored = phase == RunPhase::Error;
                }
                outcome
            }
            RunPhase::Inconclusive if !self.held => {
                let mut s = s;
                s.held = true;
                s.phase = Phase::Paused;
                s.pause_deadline_ms = None;
                let note = format!(
                    "{what} is Inconclusive ({message}); held at {} {INCONCLUSIVE_HOLD}",
                    s.position(strategy)
                );
                let mut outcome = s.finish(
                    self,
                    strategy,
                    now_ms,
                    TransitionKind::AnalysisInconclusive,
                    note.clone(),
                );
                outcome.state.message = note;
                outcome
            }
            RunPhase::Successful if !self.held && run.kind != RunKind::Background => {
                s.advance(self, strategy, now_ms, " (analysis run Successful)")
            }
            _ => unchanged(),
        }
    }

    /// The current step is done: the next is entered (or the rollout is
    /// Promoted past the last one).
    fn advance(
        mut self,
        before_state: &RolloutState,
        strategy: &Strategy,
        now_ms: u64,
        why: &str,
    ) -> Outcome {
        let s = &mut self;
        let before = s.position(strategy);
        let next = s.step_index.map_or(0, |i| i.saturating_add(1));
        s.enter_gated(strategy, next, now_ms);
        let (kind, message) = if let Some(note) = s.gate_note(strategy) {
            (TransitionKind::Advanced, format!("{before} done; {note}"))
        } else if s.phase == Phase::Promoted {
            (
                TransitionKind::Completed,
                format!(
                    "{before} done: {} promoted, 100% canary; set stable.revision to {} in the config",
                    s.canary_name(),
                    s.canary_name()
                ),
            )
        } else {
            (
                TransitionKind::Advanced,
                format!("{before} done{why}: {}", s.position(strategy)),
            )
        };
        self.finish(before_state, strategy, now_ms, kind, message)
    }

    // --- building blocks ---

    fn blank(route: &Route) -> RolloutState {
        RolloutState {
            route: route.name.to_string(),
            phase: Phase::Healthy,
            step_index: None,
            canary_weight: Weight::ZERO,
            rollout_seq: 0,
            stable_revision: route.stable.revision.to_string(),
            canary_revision: None,
            promoted_revision: None,
            pause_deadline_ms: None,
            pause_remaining_ms: None,
            pause_length_ms: None,
            held: false,
            rollout_started_ms: 0,
            failures: 0,
            message: format!(
                "no rollout: all traffic to stable {}",
                route.stable.revision
            ),
            abort_reason: None,
            last_judgement: None,
            evidence: Evidence::new(),
            webhooks: WebhookProgress::default(),
            promoted_ms: None,
            scale_down_deadline_ms: None,
            blue_green_stage: None,
        }
    }

    /// Starts a new rollout of `canary`: next sequence number, step 1.
    fn start_rollout(mut self, strategy: &Strategy, canary: &str, now_ms: u64) -> Outcome {
        let before = self.clone();
        // Read from outside, the sequence may already be at its largest;
        // a loaded state is checked (`check_range`), this only never panics.
        self.rollout_seq = self.rollout_seq.saturating_add(1);
        self.canary_revision = Some(canary.to_owned());
        self.restart(strategy, now_ms);
        let message = format!(
            "rollout {} of {canary} started (stable {}): {}",
            self.rollout_seq,
            self.stable_revision,
            self.position(strategy)
        );
        self.finish(&before, strategy, now_ms, TransitionKind::Started, message)
    }

    /// Step 1 again with a fresh window, failure count and evidence.
    fn restart(&mut self, strategy: &Strategy, now_ms: u64) {
        self.rollout_started_ms = now_ms;
        self.failures = 0;
        self.evidence = Evidence::new();
        self.abort_reason = None;
        self.last_judgement = None;
        self.webhooks = WebhookProgress::default();
        // The last promotion's switch-back window is not this rollout's.
        self.scale_down_deadline_ms = None;
        // Not the last rollout's step while a gate holds step 1.
        self.step_index = None;
        self.enter_gated(strategy, 0, now_ms);
    }

    /// No timed pause: no deadline, no time left, no length.
    fn clear_pause(&mut self) {
        self.pause_deadline_ms = None;
        self.pause_remaining_ms = None;
        self.pause_length_ms = None;
    }

    /// Enters step `index`, or completes the rollout past the last step.
    fn enter(&mut self, strategy: &Strategy, index: usize, now_ms: u64) {
        self.held = false;
        self.webhooks.wait = None;
        self.clear_pause();
        let Some(step) = strategy.steps.get(index) else {
            self.complete(strategy, now_ms);
            return;
        };
        self.step_index = Some(index);
        match step {
            Step::SetWeight(weight) => {
                self.canary_weight = *weight;
                self.phase = Phase::Progressing;
            }
            Step::Pause(duration) => {
                self.phase = Phase::Paused;
                self.pause_length_ms = duration.map(millis);
                self.pause_deadline_ms = self.pause_length_ms.map(|l| now_ms.saturating_add(l));
            }
            // The weight stays; the step waits for its run.
            Step::Analysis(_) => self.phase = Phase::Progressing,
        }
    }

    /// Promoted: weight 100, past the last step.
    fn complete(&mut self, strategy: &Strategy, now_ms: u64) {
        self.promoted_ms = Some(now_ms);
        self.scale_down_deadline_ms = strategy
            .blue_green
            .as_ref()
            .map(|bg| now_ms.saturating_add(millis(bg.scale_down_delay)));
        self.phase = Phase::Promoted;
        self.canary_weight = Weight::FULL;
        self.step_index = Some(strategy.steps.len());
        self.promoted_revision = self.canary_revision.clone();
        self.held = false;
        self.webhooks.wait = None;
        self.clear_pause();
    }

    fn release(&mut self, strategy: &Strategy, now_ms: u64) {
        if self.webhooks.wait.is_some() {
            // Waits on its gate again.
            self.held = false;
            self.phase = Phase::Paused;
            return;
        }
        match self
            .step_index
            .and_then(|i| strategy.steps.get(i).map(|s| (i, s)))
        {
            None => self.enter(strategy, 0, now_ms),
            // The step was edited while held into one that raises the
            // weight: its gate is asked before the weight moves.
            Some((index, _)) if self.edit_raises_weight(strategy, index) => {
                self.wait_on(Gate::ConfirmTrafficIncrease, index);
            }
            Some((_, step)) => {
                self.held = false;
                self.phase = match step {
                    Step::SetWeight(_) | Step::Analysis(_) => Phase::Progressing,
                    Step::Pause(_) => Phase::Paused,
                };
                // The step may have been edited while held.
                if let Step::SetWeight(weight) = step {
                    self.canary_weight = *weight;
                }
                if let Step::Pause(Some(_)) = step {
                    let remaining = self.pause_remaining_ms.take().unwrap_or(0);
                    self.pause_deadline_ms = Some(now_ms.saturating_add(remaining));
                }
            }
        }
    }

    fn abort(
        mut self,
        before: &RolloutState,
        strategy: &Strategy,
        now_ms: u64,
        reason: AbortReason,
        detail: String,
    ) -> Outcome {
        if self.phase == Phase::Promoted {
            // Rolled back after all: the canary revision is not promoted.
            self.promoted_revision = None;
        }
        // An aborted blue-green rollout keeps the stage it was aborted in.
        self.blue_green_stage = self.blue_green_stage(strategy).map(|stage| match stage {
            BlueGreenStage::Done => BlueGreenStage::PostPromotion,
            stage => stage,
        });
        self.phase = Phase::Aborted;
        // Aborted past the last step (a promotion within its scale-down
        // delay), it stands at the last step, as a restart reads an
        // aborted rollout's index: the step is the same before and after.
        let count = strategy.steps.len();
        if self.step_index.is_some_and(|i| i >= count) {
            self.step_index = count.checked_sub(1);
        }
        self.canary_weight = Weight::ZERO;
        self.held = false;
        self.webhooks.wait = None;
        self.clear_pause();
        self.abort_reason = Some(reason);
        let message = format!("aborted ({}): {detail}", reason.metric_label());
        self.finish(
            before,
            strategy,
            now_ms,
            TransitionKind::Aborted(reason),
            message,
        )
    }

    /// Healthy without a rollout; a transition unless nothing changes.
    fn end(&self, mut s: RolloutState, why: &str) -> Outcome {
        let had_rollout = self.phase != Phase::Healthy || self.canary_revision.is_some();
        if self.phase == Phase::Promoted {
            // Never made stable: naming it as canary again is a new rollout.
            s.promoted_revision = None;
        }
        s.phase = Phase::Healthy;
        s.step_index = None;
        s.canary_weight = Weight::ZERO;
        s.canary_revision = None;
        s.held = false;
        s.webhooks.wait = None;
        s.clear_pause();
        s.abort_reason = None;
        s.message = format!("no rollout: all traffic to stable {}", s.stable_revision);
        s.blue_green_stage = s.blue_green_stage.map(|_| BlueGreenStage::Done);
        if !had_rollout {
            return Outcome::unchanged(s);
        }
        let message = format!("{why}: {}", s.message);
        Outcome {
            transition: Some(Transition::between(
                self,
                &s,
                TransitionKind::Ended,
                message,
            )),
            state: s,
        }
    }

    /// Promoted → Healthy once stable is the promoted revision.
    fn caught_up(&self, mut s: RolloutState, promoted: &str) -> Outcome {
        s.phase = Phase::Healthy;
        s.step_index = None;
        s.canary_weight = Weight::ZERO;
        s.canary_revision = None;
        s.promoted_revision = Some(promoted.to_owned());
        s.message = format!("no rollout: {promoted} was promoted and is now stable");
        s.blue_green_stage = s.blue_green_stage.map(|_| BlueGreenStage::Done);
        let message = format!("the config names {promoted} as stable: rollout done");
        Outcome {
            transition: Some(Transition::between(
                self,
                &s,
                TransitionKind::CaughtUp,
                message,
            )),
            state: s,
        }
    }

    /// The same rollout continues; hold it if its current step is gone.
    fn check_steps(mut self, before: &RolloutState, strategy: &Strategy, now_ms: u64) -> Outcome {
        if let Some(outcome) = self.follow_post_promotion(before, strategy, now_ms) {
            return outcome;
        }
        let count = strategy.steps.len();
        let gate_gone = self.webhooks.wait.as_ref().is_some_and(|w| w.step >= count);
        // A blue-green edit that adds or removes a stage (or a switch
        // between blue-green and steps) moves the meaning of the step index.
        let in_steps = self.step_index.is_some() || self.webhooks.wait.is_some();
        let stage_moved = self.is_active()
            && in_steps
            && match (&strategy.blue_green, self.blue_green_stage) {
                (Some(_), recorded) => recorded != self.blue_green_stage(strategy),
                (None, recorded) => recorded.is_some(),
            };
        if stage_moved {
            let from = self
                .blue_green_stage
                .map_or_else(|| "canary steps".to_owned(), |s| format!("stage {s}"));
            let to = self
                .blue_green_stage(strategy)
                .map_or_else(|| "canary steps".to_owned(), |s| format!("stage {s}"));
            self.webhooks.wait = None;
            self.step_index = None;
            self.phase = Phase::Paused;
            self.held = true;
            self.clear_pause();
            self.message = format!(
                "the strategy changed under the rollout ({from} would now be {to}); held at \
                 weight {}%: resume or promote start again from step 1, promote --full \
                 promotes, abort aborts",
                self.canary_weight
            );
            self.blue_green_stage = self.blue_green_stage(strategy);
            let message = self.message.clone();
            return self.steps_changed(before, message);
        }
        match self.step_index.or(gate_gone.then_some(count)) {
            Some(index) if self.is_active() && (index >= count || gate_gone) => {
                self.webhooks.wait = None;
                self.step_index = None;
                self.phase = Phase::Paused;
                self.held = true;
                self.clear_pause();
                self.message = format!(
                    "steps changed: step {} no longer exists ({count} steps); held at weight {}%: \
                     resume or promote start the steps from step 1, promote --full promotes, \
                     abort aborts",
                    index.saturating_add(1),
                    self.canary_weight
                );
                self.blue_green_stage = self.blue_green_stage(strategy);
                let message = self.message.clone();
                self.steps_changed(before, message)
            }
            Some(index)
                if self.is_active()
                    && !self.held
                    && self.webhooks.wait.is_none()
                    && !self.is_in(&strategy.steps[index]) =>
            {
                // The step at the current index is now another one (a pause
                // where a setWeight was, another weight): entered as it is
                // now written, so that phase, weight and step agree; a
                // higher weight asks `confirm-traffic-increase` first.
                self.enter_edited(strategy, index, now_ms);
                self.blue_green_stage = self.blue_green_stage(strategy);
                self.refresh_message(strategy, now_ms);
                let message = format!(
                    "steps changed: the current step is now {}; entered as written",
                    self.position(strategy)
                );
                self.steps_changed(before, message)
            }
            Some(index) if self.is_active() && self.webhooks.wait.is_none() => {
                let Step::Pause(Some(duration)) = &strategy.steps[index] else {
                    self.refresh_message(strategy, now_ms);
                    return Outcome::unchanged(self);
                };
                if !self.retime_pause(millis(*duration)) {
                    self.refresh_message(strategy, now_ms);
                    return Outcome::unchanged(self);
                }
                self.refresh_message(strategy, now_ms);
                let message = format!(
                    "steps changed: the current step is now {}, counted from the pause's start",
                    self.position(strategy)
                );
                self.steps_changed(before, message)
            }
            _ => {
                // An aborted rollout's index stays within the steps as now
                // written: a status naming a step past them cannot be read.
                if self.phase == Phase::Aborted && self.step_index.is_some_and(|i| i >= count) {
                    self.step_index = count.checked_sub(1);
                }
                self.refresh_message(strategy, now_ms);
                Outcome::unchanged(self)
            }
        }
    }

    /// A blue-green rollout past its swap (all traffic on the new revision)
    /// whose edited strategy moved or removed the post-promotion analysis:
    /// the analysis starts again at its new place, or, removed, the rollout
    /// is complete. Held instead, as other moved stages are, it would show
    /// the stage `Preview` with all traffic on the new revision, and
    /// `resume` would swap back and forth. `None` when this does not apply.
    fn follow_post_promotion(
        &self,
        before: &RolloutState,
        strategy: &Strategy,
        now_ms: u64,
    ) -> Option<Outcome> {
        let bg = strategy.blue_green.as_ref()?;
        let index = self.step_index?;
        let post = bg.post_promotion_step();
        let in_place = index == bg.swap_step() || Some(index) == post;
        if !self.is_active()
            || self.blue_green_stage != Some(BlueGreenStage::PostPromotion)
            || self.webhooks.wait.is_some()
            || in_place
        {
            return None;
        }
        let mut s = self.clone();
        let outcome = match post {
            Some(post) => {
                // Held by `pause`, it stays held.
                s.step_index = Some(post);
                s.refresh_message(strategy, now_ms);
                s.blue_green_stage = s.blue_green_stage(strategy);
                let message = format!(
                    "steps changed: the post-promotion analysis is now {}; it starts again",
                    s.position(strategy)
                );
                s.steps_changed(before, message)
            }
            None => {
                s.complete(strategy, now_ms);
                let message = format!(
                    "steps changed: no post-promotion analysis after the swap; {} promoted",
                    s.canary_name()
                );
                s.finish(before, strategy, now_ms, TransitionKind::Completed, message)
            }
        };
        Some(outcome)
    }

    /// Gives the current timed pause the length `length_ms`, counted from
    /// when it started (as Argo Rollouts does): the deadline moves, or the
    /// time left while held. Whether anything changed; a state that does
    /// not know its pause's length (written before it was kept) keeps its
    /// deadline.
    fn retime_pause(&mut self, length_ms: u64) -> bool {
        let Some(old) = self.pause_length_ms else {
            return false;
        };
        if old == length_ms {
            return false;
        }
        if let Some(deadline) = self.pause_deadline_ms {
            let started = deadline.saturating_sub(old);
            self.pause_deadline_ms = Some(started.saturating_add(length_ms));
        } else if let Some(remaining) = self.pause_remaining_ms {
            let elapsed = old.saturating_sub(remaining);
            self.pause_remaining_ms = Some(length_ms.saturating_sub(elapsed));
        } else {
            return false;
        }
        self.pause_length_ms = Some(length_ms);
        true
    }

    /// The state, with a `StepsChanged` transition from `before` saying
    /// `message`.
    fn steps_changed(self, before: &RolloutState, message: String) -> Outcome {
        Outcome {
            transition: Some(Transition::between(
                before,
                &self,
                TransitionKind::StepsChanged,
                message,
            )),
            state: self,
        }
    }

    /// Whether the state (not held, no gate waiting) is what entering
    /// `step` makes: Progressing at its weight for a `setWeight`, Paused
    /// with or without a deadline as the pause is timed or not, Progressing
    /// for an analysis step.
    fn is_in(&self, step: &Step) -> bool {
        match step {
            Step::SetWeight(weight) => {
                self.phase == Phase::Progressing && self.canary_weight == *weight
            }
            Step::Pause(duration) => {
                self.phase == Phase::Paused
                    && self.pause_deadline_ms.is_some() == duration.is_some()
            }
            Step::Analysis(_) => self.phase == Phase::Progressing,
        }
    }

    /// Sets the status message and wraps the state with its transition.
    fn finish(
        mut self,
        before: &RolloutState,
        strategy: &Strategy,
        now_ms: u64,
        kind: TransitionKind,
        message: String,
    ) -> Outcome {
        match self.phase {
            Phase::Aborted => {
                self.message = format!("{message}; weight 0; retry starts the steps again");
            }
            _ => self.refresh_message(strategy, now_ms),
        }
        self.blue_green_stage = self.blue_green_stage(strategy);
        Outcome {
            transition: Some(Transition::between(before, &self, kind, message)),
            state: self,
        }
    }

    /// The status message of the current situation. Aborted and held-before-
    /// the-steps messages are written once, when entered, and kept.
    fn refresh_message(&mut self, strategy: &Strategy, now_ms: u64) {
        match self.phase {
            Phase::Healthy => {
                self.message =
                    format!("no rollout: all traffic to stable {}", self.stable_revision);
            }
            // A state never holds Unknown (see `RolloutState::phase`).
            Phase::Aborted | Phase::Unknown => {}
            Phase::Promoted => {
                let v = self.canary_name();
                self.message = format!(
                    "{v} promoted, 100% canary; the config is behind: set stable.revision to {v}"
                );
                if let Some(until) = self.switch_back_until_ms(strategy) {
                    let note = if now_ms < until {
                        format!(
                            "; abort swaps back to {} for {}",
                            self.stable_revision,
                            Secs(until - now_ms)
                        )
                    } else {
                        format!(
                            "; scaleDownDelaySeconds is over: {} is no longer the switch-back target",
                            self.stable_revision
                        )
                    };
                    self.message.push_str(&note);
                }
            }
            Phase::Progressing | Phase::Paused => {
                if !self.held {
                    if let Some(note) = self.gate_note(strategy) {
                        self.message = format!("{note}; {}", self.analysis_note(strategy));
                        return;
                    }
                }
                let Some(index) = self.step_index else { return };
                let position = self.position(strategy);
                if self.held {
                    // A hold for an Inconclusive run keeps the note written
                    // when it began: it says why, and what the operator can do.
                    if !self.message.ends_with(INCONCLUSIVE_HOLD) {
                        self.message = format!(
                            "held by pause at {position}{}; resume continues",
                            self.remaining_note()
                        );
                    }
                    return;
                }
                let analysis = self.analysis_note(strategy);
                self.message = match strategy.steps.get(index) {
                    Some(Step::SetWeight(w)) => format!("{position}: canary at {w}%; {analysis}"),
                    Some(Step::Pause(Some(_))) => match self.pause_deadline_ms {
                        Some(deadline) if deadline > now_ms => {
                            format!("{position}: {} left; {analysis}", Secs(deadline - now_ms))
                        }
                        _ => format!("{position}: pause over; {analysis}"),
                    },
                    Some(Step::Pause(None)) => {
                        format!("{position}: waiting for promote; {analysis}")
                    }
                    Some(Step::Analysis(_)) => {
                        format!("{position}: waiting for the analysis run; {analysis}")
                    }
                    None => position,
                };
            }
        }
    }

    fn analysis_note(&self, strategy: &Strategy) -> String {
        let gated = strategy.gated_by_analysis;
        match self.last_judgement.as_ref().map(|j| &j.verdict) {
            None if gated => "waiting for the first judgement".to_owned(),
            Some(Verdict::Pass { .. }) => "analysis passing".to_owned(),
            Some(Verdict::Inconclusive { reason }) if gated => {
                match strategy
                    .blue_green
                    .as_ref()
                    .filter(|bg| bg.stage_at(self.step_index) == BlueGreenStage::Preview)
                {
                    // Only the preview's own clients reach the new revision.
                    Some(bg) => format!(
                        "the preview waits for minRequests: {reason}; send it requests ({}) or \
                         promote",
                        preview_reach(&bg.preview)
                    ),
                    None if crate::messages::is_too_few_replicas(reason) => {
                        format!("the step waits for the replicas' counters: {reason}")
                    }
                    None => format!("the step waits for minRequests: {reason}"),
                }
            }
            // Without an analysis block nothing waits on the judgement.
            None | Some(Verdict::Inconclusive { .. }) => match &strategy.blue_green {
                Some(bg) if bg.pre_promotion.is_some() || bg.post_promotion.is_some() => {
                    "no analysis block: the stages go by commands, autoPromotionSeconds and \
                     their analysis runs"
                        .to_owned()
                }
                Some(_) => "no analysis block: the stages go by commands and autoPromotionSeconds"
                    .to_owned(),
                // An `analysis` block of templates alone runs them in the
                // background; only its built-in keys gate the steps.
                None if strategy.background.is_some() => {
                    "the analysis block names templates only, no built-in keys (interval, \
                     window, minRequests, ...): steps go by time, commands and analysis runs"
                        .to_owned()
                }
                None if strategy
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::Analysis(_))) =>
                {
                    "no analysis block: steps go by time, commands and analysis runs".to_owned()
                }
                None => "no analysis block: steps go by time and commands".to_owned(),
            },
            Some(Verdict::Fail { reason, .. }) => format!(
                "analysis failed ({} of {} tolerated): {reason}",
                self.failures, strategy.analysis.failure_limit
            ),
        }
    }

    /// "step 2/5 (pause 30s)", "before step 1/5", "all 5 steps done".
    fn position(&self, strategy: &Strategy) -> String {
        let count = strategy.steps.len();
        if let Some(stage) = self.blue_green_stage(strategy) {
            return match self
                .step_index
                .and_then(|i| strategy.steps.get(i).map(|s| (i, s)))
            {
                Some((i, step)) => format!(
                    "blue-green {stage} (step {}/{count}: {})",
                    i + 1,
                    StepText(step)
                ),
                None => format!("blue-green {stage}"),
            };
        }
        match self.step_index {
            None => format!("before step 1/{count}"),
            Some(i) => match strategy.steps.get(i) {
                Some(step) => format!("step {}/{count} ({})", i + 1, StepText(step)),
                None => format!("all {count} steps done"),
            },
        }
    }

    fn remaining_note(&self) -> String {
        self.pause_remaining_ms
            .map(|ms| format!(", {} of the pause left", Secs(ms)))
            .unwrap_or_default()
    }

    fn remaining_note_at(&self, now_ms: u64) -> String {
        self.pause_deadline_ms
            .map(|d| format!(", {} of the pause left", Secs(d.saturating_sub(now_ms))))
            .unwrap_or_default()
    }

    fn canary_name(&self) -> &str {
        self.canary_revision.as_deref().unwrap_or("the canary")
    }
}

// === impl Outcome ===

impl Outcome {
    fn unchanged(state: RolloutState) -> Outcome {
        Outcome {
            state,
            transition: None,
        }
    }

    /// Rewrites the transition's starting point (for changes made in two moves).
    fn with_from(mut self, before: &RolloutState) -> Outcome {
        if let Some(t) = &mut self.transition {
            t.from = before.phase;
            t.from_step = before.step_index;
        }
        self
    }
}

// === impl Transition ===

impl Transition {
    fn between(
        before: &RolloutState,
        after: &RolloutState,
        kind: TransitionKind,
        message: String,
    ) -> Transition {
        Transition {
            kind,
            from: before.phase,
            to: after.phase,
            from_step: before.step_index,
            to_step: after.step_index,
            canary_weight: after.canary_weight,
            message,
            run_errored: false,
        }
    }
}

// === refusals ===

impl RolloutState {
    fn refusal(&self, command: Command, strategy: &Strategy) -> CommandRefused {
        let route = &self.route;
        let phase = self.phase;
        let applies = match command {
            Command::Promote | Command::PromoteFull => "a Progressing or Paused rollout",
            Command::Abort if strategy.blue_green.is_some() => {
                "a Progressing or Paused rollout, or a Promoted one within its \
                 scaleDownDelaySeconds"
            }
            Command::Abort => "a Progressing, Paused or Promoted rollout",
            Command::Retry => "an Aborted rollout",
            Command::Pause => "a Progressing or Paused rollout that is not held",
            Command::Resume => "a rollout held by pause",
        };
        let situation = match phase {
            Phase::Healthy | Phase::Unknown => format!("{route} is {phase} (no rollout)"),
            Phase::Aborted => format!(
                "{route} is Aborted ({})",
                if command == Command::Abort {
                    "already"
                } else {
                    "retry starts the steps again"
                }
            ),
            Phase::Promoted if command == Command::Abort => format!(
                "{route} is Promoted and its scaleDownDelaySeconds is over: {} is no longer \
                 the switch-back target (set stable.revision to {} in the config)",
                self.stable_revision,
                self.canary_name()
            ),
            Phase::Promoted => format!(
                "{route} is Promoted (set stable.revision to {} in the config)",
                self.canary_name()
            ),
            Phase::Progressing | Phase::Paused => match command {
                Command::Pause => format!("{route} is already held (resume releases it)"),
                Command::Resume => {
                    let hint = match self.step_index.and_then(|i| strategy.steps.get(i)) {
                        Some(Step::Pause(None)) => "; promote ends the pause",
                        _ => "",
                    };
                    format!(
                        "{route} is {phase} at {}, not held{hint}",
                        self.position(strategy)
                    )
                }
                _ if self.step_index.is_none() => {
                    format!("{route} is {phase}, held {}", self.position(strategy))
                }
                _ => format!("{route} is {phase} at {}", self.position(strategy)),
            },
        };
        CommandRefused {
            command,
            phase: Some(phase),
            message: format!("{command} applies only to {applies}; {situation}"),
        }
    }
}

/// The kind of the analysis run of step `index`: a blue-green pre- or
/// post-promotion run, or a canary `analysis` step.
fn run_kind(strategy: &Strategy, index: usize) -> RunKind {
    match &strategy.blue_green {
        Some(bg) if bg.pre_promotion_step() == Some(index) => RunKind::PrePromotion(index),
        Some(bg) if bg.post_promotion_step() == Some(index) => RunKind::PostPromotion(index),
        _ => RunKind::Step(index),
    }
}

// === formatting helpers ===

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A step as written in the config: `setWeight 5`, `pause 30s`, `pause {}`.
struct StepText<'a>(&'a Step);

impl fmt::Display for StepText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Step::SetWeight(w) => write!(f, "setWeight {w}"),
            Step::Pause(None) => f.write_str("pause {}"),
            Step::Pause(Some(d)) => write!(f, "pause {}", ConfigDuration(*d)),
            Step::Analysis(analysis) => write!(f, "analysis {}", analysis.templates.join(", ")),
        }
    }
}

/// A duration as in the config: `500ms`, `30s`, `5m`, `1h`.
struct ConfigDuration(Duration);

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = millis(self.0);
        if ms % 1000 != 0 {
            write!(f, "{ms}ms")
        } else if ms % 3_600_000 == 0 && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

/// Milliseconds shown as whole seconds, rounded up: "12 s".
struct Secs(u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.div_ceil(1000))
    }
}

/// Serializes a [`Weight`] as a percentage (`25`, `0.5`) and back.
mod percent {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use weir_config::Weight;

    pub(super) fn serialize<S: Serializer>(weight: &Weight, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(weight.percent())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Weight, D::Error> {
        let percent = f64::deserialize(d)?;
        Weight::try_from_percent(percent).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
