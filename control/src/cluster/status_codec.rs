//! The rollout state of a CanaryRoute as its `status`, and back (SPEC
//! section 10): everything a new leader needs to resume exactly where the
//! last one stopped, plus what the cluster shows (`observedGeneration`,
//! `leader`, `stepCount`, `conditions`), and the command inputs.
//!
//! Pure: no client, no clock (time arrives as an argument), no I/O. Times
//! are RFC 3339 with millisecond precision, as the state keeps them.
//!
//! Two parts of the state are not in the status: the comparison test's
//! running evidence (a new leader starts it afresh, taking the next
//! counters as its baseline; its counters are other processes' anyway),
//! and the kind of a failed last judgement, which is read back from the
//! judgement's own wording.
//!
//! # Inputs
//!
//! The command inputs (`abort`, `promoteFull`, `paused`, `promote`) are
//! level-triggered, as in Argo Rollouts; [`inputs`] turns a status into the
//! commands the leader applies, and [`encode`] settles them when the leader
//! writes its next status:
//!
//! | input | becomes | settled by the leader's write |
//! | --- | --- | --- |
//! | `abort: true`, not Aborted (Progressing, Paused, Promoted) | `abort` | kept `true` while Aborted (and set by an analysis abort); `false` once a new rollout starts |
//! | `abort: false` while Aborted | `retry` | stays `false` |
//! | `paused: false` while held | `resume` | mirrors `held` |
//! | `promoteFull: true` while Progressing or Paused | `promote --full` | `false` |
//! | `promote: true` while Progressing or Paused (not with `promoteFull`) | `promote` | `false` |
//! | `paused: true`, Progressing or Paused, not held | `pause` | mirrors `held` |
//!
//! An input that does not apply in the phase is ignored, and the leader's
//! next write settles it, so that a stale `promote` never acts on a later
//! step. [`encode`] assumes that the commands [`inputs`] gave for the
//! status it is written over were applied first.

use std::fmt;

use k8s_openapi::jiff::Timestamp;
use weir_config::Weight;

use super::resource::{
    BlueGreenStatus, CanaryRouteStatus, LastValidSpec, StatusAnalysis, StatusCondition,
    StatusRoleStats,
};
use crate::rollout::{
    AbortReason, BlueGreenStage, Command, Evidence, FailKind, Judgement, Phase, RoleSummary,
    RolloutState, Verdict,
};

/// The condition types this module derives from the phase; any other
/// condition in a status (a spec that does not validate, a missing
/// Service) is kept as it is.
pub const PHASE_CONDITIONS: [&str; 3] = ["Progressing", "Aborted", "Ready"];

/// The reason of the `Ready` condition of a CanaryRoute that is not served
/// (set by the problem conditions' writer).
pub const NOT_SERVED: &str = "NotServed";

/// Whether `status` says its route is not served ([`NOT_SERVED`]): its
/// next rollout state is written even if unchanged, which sets `Ready`
/// from the phase again.
pub fn marked_not_served(status: &CanaryRouteStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == NOT_SERVED)
}

/// The condition type telling that the status written over was refused
/// (nonsense patched by hand): `True` with the field and the problem, then
/// `False` once a write follows a readable status.
pub const REFUSED_CONDITION: &str = "StatusRefused";

/// What a status holds besides the rollout state.
#[derive(Debug, Clone, Copy)]
pub struct StatusContext<'a> {
    /// This replica's identity (`POD_NAME`), written as `leader`.
    pub leader: &'a str,
    /// The `metadata.generation` of the CanaryRoute the state follows.
    pub observed_generation: Option<i64>,
    /// One entry per step of the strategy: a timed pause's length in
    /// milliseconds, `None` for any other step (gives `stepCount` and
    /// `pauseStartTime`).
    pub pause_lengths_ms: &'a [Option<u64>],
    /// Replicas counted and known in the last judgement, when known.
    pub coverage: Option<Coverage>,
    /// The spec served (the last that validated), written as
    /// `lastValidSpec`; `None` keeps the one written over.
    pub last_valid_spec: Option<&'a LastValidSpec>,
    /// Why the status written over was refused, if it was: reported in
    /// the `StatusRefused` condition.
    pub refused: Option<&'a StatusRefused>,
    /// Now, in milliseconds since the UNIX epoch (`lastTransitionTime`).
    pub now_ms: u64,
}

/// Replicas whose counters a judgement counted, of those known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// Replicas counted.
    pub counted: u32,
    /// Replicas known (the endpoints of the peers Service).
    pub known: u32,
}

/// A status that cannot be a rollout state: names the field and what is
/// wrong with it (`status.stepIndex: 7 is past the 5 steps`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status.{field}: {problem}")]
pub struct StatusRefused {
    /// The field, relative to `status` (`stepIndex`, `analysis.verdict`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The phase-derived conditions of a state, before their times are set.
struct Derived {
    type_: &'static str,
    status: bool,
    reason: String,
    message: String,
}

// === encode ===

/// The status for `state`, written over `previous` (the status last read):
/// conditions keep their `lastTransitionTime` when their status does not
/// change, conditions of other types are kept, and the inputs are settled
/// (see the module documentation).
pub fn encode(
    state: &RolloutState,
    previous: &CanaryRouteStatus,
    ctx: &StatusContext<'_>,
) -> CanaryRouteStatus {
    let pause_length = state.pause_length_ms.or_else(|| {
        state
            .step_index
            .and_then(|index| ctx.pause_lengths_ms.get(index).copied().flatten())
    });
    let pause_start = state
        .pause_deadline_ms
        .zip(pause_length)
        .map(|(deadline, length)| deadline.saturating_sub(length));
    CanaryRouteStatus {
        observed_generation: ctx.observed_generation,
        phase: Some(state.phase.as_str().to_owned()),
        step_index: state.step_index.map(to_i64),
        step_count: Some(to_i64(ctx.pause_lengths_ms.len())),
        canary_weight: Some(state.canary_weight.percent()),
        stable_revision: Some(state.stable_revision.clone()),
        canary_revision: state.canary_revision.clone(),
        promoted_revision: state.promoted_revision.clone(),
        rollout_id: rollout_id(state.rollout_seq, state.canary_revision.as_deref()),
        seq: Some(state.rollout_seq),
        rollout_start_time: (state.rollout_started_ms > 0)
            .then(|| format_time(state.rollout_started_ms)),
        pause_start_time: pause_start.map(format_time),
        pause_deadline: state.pause_deadline_ms.map(format_time),
        pause_remaining_ms: state.pause_remaining_ms,
        pause_length_ms: state
            .pause_length_ms
            .filter(|_| state.pause_deadline_ms.is_some() || state.pause_remaining_ms.is_some()),
        held: Some(state.held),
        failures: Some(state.failures),
        webhooks: (state.webhooks != crate::rollout::WebhookProgress::default())
            .then(|| state.webhooks.clone()),
        promoted_time: state.promoted_ms.map(format_time),
        blue_green: state.blue_green_stage.map(|stage| BlueGreenStatus {
            stage: Some(stage.as_str().to_owned()),
            scale_down_deadline: state
                .scale_down_deadline_ms
                .filter(|_| state.phase == Phase::Promoted)
                .map(format_time),
        }),
        abort_reason: state.abort_reason.map(|r| r.metric_label().to_owned()),
        message: Some(state.message.clone()),
        leader: Some(ctx.leader.to_owned()),
        analysis: state
            .last_judgement
            .as_ref()
            .map(|j| encode_analysis(j, ctx.coverage, previous.analysis.as_ref())),
        conditions: conditions(state, &previous.conditions, ctx.refused, ctx.now_ms),
        last_valid_spec: ctx
            .last_valid_spec
            .or(previous.last_valid_spec.as_ref())
            .cloned(),
        abort: Some(settled_abort(previous, state)),
        promote_full: previous.promote_full.map(|_| false),
        paused: Some(state.held),
        promote: previous.promote.map(|_| false),
    }
}

/// The rollout id every replica shows: `<seq>-<canaryRevision>`, or the
/// sequence number alone without a canary.
pub fn rollout_id(seq: u64, canary_revision: Option<&str>) -> Option<String> {
    Some(match canary_revision {
        Some(canary) => format!("{seq}-{canary}"),
        None => seq.to_string(),
    })
}

/// `abort` stays true while Aborted (an analysis abort sets it) and while
/// the rollout it was written for has not acted on it; a new rollout clears it.
fn settled_abort(previous: &CanaryRouteStatus, state: &RolloutState) -> bool {
    state.phase == Phase::Aborted
        || (previous.abort == Some(true) && previous.seq == Some(state.rollout_seq))
}

fn encode_analysis(
    judgement: &Judgement,
    coverage: Option<Coverage>,
    previous: Option<&StatusAnalysis>,
) -> StatusAnalysis {
    let (verdict, reason) = match &judgement.verdict {
        Verdict::Pass { reason } => ("Pass", reason),
        Verdict::Inconclusive { reason } => ("Inconclusive", reason),
        Verdict::Fail { reason, .. } => ("Fail", reason),
    };
    let (coverage, replicas_counted, replicas_known) = match (coverage, previous) {
        (Some(c), _) => (c.to_string(), c.counted, c.known),
        (None, Some(p)) => (p.coverage.clone(), p.replicas_counted, p.replicas_known),
        (None, None) => (String::new(), 0, 0),
    };
    StatusAnalysis {
        stable: encode_role(&judgement.stable),
        canary: encode_role(&judgement.canary),
        coverage,
        replicas_counted,
        replicas_known,
        verdict: Some(verdict.to_owned()),
        reason: Some(reason.clone()),
    }
}

fn encode_role(summary: &RoleSummary) -> StatusRoleStats {
    StatusRoleStats {
        requests: summary.requests,
        errors: summary.errors,
        error_rate: summary.error_rate.unwrap_or(0.0),
        latency_p99_ms: summary.latency_p99_ms,
    }
}

/// `Progressing`, `Aborted` and `Ready` from the phase, `StatusRefused`
/// when the status written over was refused (or had been), then the other
/// conditions of `previous` as they were.
fn conditions(
    state: &RolloutState,
    previous: &[StatusCondition],
    refused: Option<&StatusRefused>,
    now_ms: u64,
) -> Vec<StatusCondition> {
    let mut derived: Vec<Derived> = derive_conditions(state).into();
    let had_refusal = previous.iter().any(|c| c.type_ == REFUSED_CONDITION);
    match refused {
        Some(refused) => derived.push(Derived {
            type_: REFUSED_CONDITION,
            status: true,
            reason: "InvalidStatus".to_owned(),
            message: format!("{refused}; the rollout state before it was kept"),
        }),
        None if had_refusal => derived.push(Derived {
            type_: REFUSED_CONDITION,
            status: false,
            reason: "StatusReadable".to_owned(),
            message: "the status reads as a rollout state".to_owned(),
        }),
        None => {}
    }
    let mut out: Vec<StatusCondition> = derived
        .into_iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" };
            let kept = previous
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone());
            StatusCondition {
                type_: d.type_.to_owned(),
                status: status.to_owned(),
                reason: d.reason,
                message: d.message,
                last_transition_time: Some(kept.unwrap_or_else(|| format_time(now_ms))),
            }
        })
        .collect();
    out.extend(
        previous
            .iter()
            .filter(|c| {
                !PHASE_CONDITIONS.contains(&c.type_.as_str()) && c.type_ != REFUSED_CONDITION
            })
            .cloned(),
    );
    out
}

fn derive_conditions(state: &RolloutState) -> [Derived; 3] {
    let message = state.message.clone();
    let condition = |type_, status, reason: &str, message: &str| Derived {
        type_,
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
    };
    let not_aborted = condition("Aborted", false, "NotAborted", "the rollout is not aborted");
    match state.phase {
        Phase::Progressing | Phase::Paused => {
            let reason = match (state.phase, state.held) {
                (_, true) => "RolloutHeld",
                (Phase::Paused, false) => "RolloutPaused",
                _ => "StepInProgress",
            };
            [
                condition("Progressing", true, reason, &message),
                not_aborted,
                condition(
                    "Ready",
                    false,
                    "RolloutInProgress",
                    "a rollout is in progress",
                ),
            ]
        }
        Phase::Aborted => {
            let reason = state
                .abort_reason
                .map_or("Aborted", |r| abort_condition_reason(r));
            [
                condition(
                    "Progressing",
                    false,
                    "RolloutAborted",
                    "the rollout aborted",
                ),
                condition("Aborted", true, reason, &message),
                condition("Ready", false, "RolloutAborted", &message),
            ]
        }
        Phase::Promoted => [
            condition(
                "Progressing",
                false,
                "RolloutPromoted",
                "every step is done",
            ),
            not_aborted,
            condition("Ready", true, "CanaryPromoted", &message),
        ],
        Phase::Healthy | Phase::Unknown => [
            condition("Progressing", false, "NoRollout", "no rollout"),
            not_aborted,
            condition("Ready", true, "NoRollout", &message),
        ],
    }
}

/// The `Aborted` condition's reason: one CamelCase word per abort reason.
fn abort_condition_reason(reason: AbortReason) -> &'static str {
    match reason {
        AbortReason::AnalysisErrorRate => "AnalysisErrorRate",
        AbortReason::AnalysisCompare => "AnalysisCompare",
        AbortReason::AnalysisLatency => "AnalysisLatency",
        AbortReason::AnalysisRun => "AnalysisRun",
        AbortReason::AnalysisExcessErrors => "AnalysisExcessErrors",
        AbortReason::Manual => "AbortCommand",
        AbortReason::Webhook => "WebhookFailed",
        AbortReason::WebhookRollback => "WebhookRollback",
        AbortReason::PrePromotionAnalysis => "PrePromotionAnalysis",
        AbortReason::PostPromotionAnalysis => "PostPromotionAnalysis",
    }
}

// === decode ===

/// The rollout state of `route` in `status`: `Ok(None)` when the status has
/// no `phase` (no state written yet). `spec_step_count` is the number of
/// steps of the route's strategy, used when the status has no `stepCount`.
///
/// # Errors
/// [`StatusRefused`] naming the first field that cannot be part of a
/// rollout state: an unknown phase, a missing `seq` or one at `u64::MAX`
/// (no room for the next rollout), a `stepIndex` or `webhooks.wait.step`
/// past the steps, a weight outside 0 to 100, a time that does not parse,
/// an unknown abort reason or verdict, a `rolloutId` that does not match.
pub fn decode(
    route: &str,
    status: &CanaryRouteStatus,
    spec_step_count: usize,
) -> Result<Option<RolloutState>, StatusRefused> {
    let Some(phase_name) = status.phase.as_deref() else {
        return Ok(None);
    };
    let phase = Phase::ALL
        .into_iter()
        .find(|p| p.as_str() == phase_name)
        .ok_or_else(|| {
            refused(
                "phase",
                format!(
                    "{phase_name:?} is not a phase (Healthy, Progressing, Paused, Aborted, Promoted)"
                ),
            )
        })?;
    let seq = status.seq.ok_or_else(|| {
        refused(
            "seq",
            format!("missing; a status with phase {phase} needs the rollout's sequence number"),
        )
    })?;
    let step_count = match status.step_count {
        None => spec_step_count,
        Some(count) => usize::try_from(count)
            .map_err(|_| refused("stepCount", format!("{count} is negative")))?,
    };
    if seq == u64::MAX {
        // The machine starts the next rollout at seq + 1.
        return Err(refused(
            "seq",
            format!(
                "{seq} leaves no room for the next rollout (at most {})",
                u64::MAX - 1
            ),
        ));
    }
    let step_index = match status.step_index {
        None => None,
        Some(index) => Some(decode_step_index(phase, index, step_count)?),
    };
    // A gate always leads to one of the steps it was written with.
    let gate_step = status
        .webhooks
        .as_ref()
        .and_then(|w| w.wait.as_ref())
        .map(|wait| wait.step);
    if let Some(step) = gate_step.filter(|step| *step >= step_count) {
        return Err(refused(
            "webhooks.wait.step",
            format!("{step} is past {}", steps_text(step_count)),
        ));
    }
    let canary_weight = match status.canary_weight {
        Some(percent) => Weight::try_from_percent(percent)
            .map_err(|_| refused("canaryWeight", format!("{percent} is outside 0 to 100")))?,
        None if phase == Phase::Healthy => Weight::ZERO,
        None => {
            return Err(refused(
                "canaryWeight",
                format!("missing; a status with phase {phase} needs the weight in force"),
            ));
        }
    };
    let canary_revision = status.canary_revision.clone();
    if let Some(id) = &status.rollout_id {
        let expected = rollout_id(seq, canary_revision.as_deref());
        if expected.as_deref() != Some(id.as_str()) {
            return Err(refused(
                "rolloutId",
                format!(
                    "{id:?} does not match seq {seq} and canaryRevision {} (expected {:?})",
                    canary_revision.as_deref().unwrap_or("(none)"),
                    expected.unwrap_or_default()
                ),
            ));
        }
    }
    let pause_start_ms = status
        .pause_start_time
        .as_deref()
        .map(|t| parse_time("pauseStartTime", t))
        .transpose()?;
    let pause_deadline_ms = status
        .pause_deadline
        .as_deref()
        .map(|t| parse_time("pauseDeadline", t))
        .transpose()?;
    if let (Some(length), Some(remaining)) = (status.pause_length_ms, status.pause_remaining_ms) {
        if length < remaining {
            return Err(refused(
                "pauseLengthMs",
                format!("{length} is shorter than pauseRemainingMs {remaining}"),
            ));
        }
    }
    let abort_reason = status
        .abort_reason
        .as_deref()
        .map(|label| {
            AbortReason::ALL
                .into_iter()
                .find(|r| r.metric_label() == label)
                .ok_or_else(|| {
                    refused(
                        "abortReason",
                        format!(
                            "{label:?} is not an abort reason ({})",
                            AbortReason::ALL.map(AbortReason::metric_label).join(", ")
                        ),
                    )
                })
        })
        .transpose()?;
    let last_judgement = status.analysis.as_ref().map(decode_analysis).transpose()?;
    Ok(Some(RolloutState {
        route: route.to_owned(),
        phase,
        step_index,
        canary_weight,
        rollout_seq: seq,
        stable_revision: status.stable_revision.clone().unwrap_or_default(),
        canary_revision,
        promoted_revision: status.promoted_revision.clone(),
        pause_deadline_ms,
        pause_remaining_ms: status.pause_remaining_ms,
        // The pause's length as it was entered, for an edit of its
        // duration: from its deadline and start while it runs (a leader
        // that does not know `pauseLengthMs` leaves an old one behind),
        // from `pauseLengthMs` while held (no deadline then).
        pause_length_ms: pause_deadline_ms
            .zip(pause_start_ms)
            .and_then(|(deadline, start)| deadline.checked_sub(start))
            .or(status.pause_length_ms),
        held: status.held.unwrap_or(false),
        rollout_started_ms: status
            .rollout_start_time
            .as_deref()
            .map(|t| parse_time("rolloutStartTime", t))
            .transpose()?
            .unwrap_or(0),
        failures: status.failures.unwrap_or(0),
        message: status.message.clone().unwrap_or_default(),
        abort_reason,
        last_judgement,
        evidence: Evidence::taken_over(),
        webhooks: status.webhooks.clone().unwrap_or_default(),
        promoted_ms: status
            .promoted_time
            .as_deref()
            .map(|t| parse_time("promotedTime", t))
            .transpose()?,
        scale_down_deadline_ms: status
            .blue_green
            .as_ref()
            .and_then(|bg| bg.scale_down_deadline.as_deref())
            .map(|t| parse_time("blueGreen.scaleDownDeadline", t))
            .transpose()?,
        blue_green_stage: status
            .blue_green
            .as_ref()
            .and_then(|bg| bg.stage.as_deref())
            .map(|name| {
                BlueGreenStage::ALL
                    .into_iter()
                    .find(|stage| stage.as_str() == name)
                    .ok_or_else(|| {
                        refused(
                            "blueGreen.stage",
                            format!(
                                "{name:?} is not a stage ({})",
                                BlueGreenStage::ALL.map(BlueGreenStage::as_str).join(", ")
                            ),
                        )
                    })
            })
            .transpose()?,
    }))
}

fn decode_step_index(phase: Phase, index: i64, step_count: usize) -> Result<usize, StatusRefused> {
    let Ok(index) = usize::try_from(index) else {
        return Err(refused("stepIndex", format!("{index} is negative")));
    };
    if phase == Phase::Healthy {
        return Err(refused(
            "stepIndex",
            format!("{index} with phase Healthy, which has no step"),
        ));
    }
    // Promoted stands just past the last step, as Argo's currentStepIndex.
    let past = match phase {
        Phase::Promoted => index > step_count,
        _ => index >= step_count,
    };
    if past {
        return Err(refused(
            "stepIndex",
            format!("{index} is past {}", steps_text(step_count)),
        ));
    }
    Ok(index)
}

/// "the 1 step", "the 5 steps".
fn steps_text(step_count: usize) -> String {
    match step_count {
        1 => "the 1 step".to_owned(),
        n => format!("the {n} steps"),
    }
}

fn decode_analysis(analysis: &StatusAnalysis) -> Result<Judgement, StatusRefused> {
    let reason = analysis.reason.clone().unwrap_or_default();
    let verdict = match analysis.verdict.as_deref() {
        Some("Pass") => Verdict::Pass { reason },
        Some("Inconclusive") => Verdict::Inconclusive { reason },
        Some("Fail") => Verdict::Fail {
            kind: fail_kind_of(&reason),
            reason,
        },
        other => {
            return Err(refused(
                "analysis.verdict",
                format!(
                    "{} is not a verdict (Pass, Fail, Inconclusive)",
                    other.map_or_else(|| "missing".to_owned(), |v| format!("{v:?}"))
                ),
            ));
        }
    };
    Ok(Judgement {
        verdict,
        stable: decode_role("analysis.stable.errorRate", &analysis.stable)?,
        canary: decode_role("analysis.canary.errorRate", &analysis.canary)?,
        compare_evidence: None,
    })
}

fn decode_role(field: &'static str, stats: &StatusRoleStats) -> Result<RoleSummary, StatusRefused> {
    if !(0.0..=1.0).contains(&stats.error_rate) {
        return Err(refused(
            field,
            format!("{} is outside 0 to 1", stats.error_rate),
        ));
    }
    Ok(RoleSummary {
        requests: stats.requests,
        errors: stats.errors,
        error_rate: (stats.requests > 0).then_some(stats.error_rate),
        latency_p99_ms: stats.latency_p99_ms,
    })
}

/// The rule a failed judgement broke, from the analysis's own wording.
fn fail_kind_of(reason: &str) -> FailKind {
    if reason.contains("maxExcessErrors") {
        FailKind::ExcessErrors
    } else if reason.contains("significantly above stable") {
        FailKind::Compare
    } else if reason.contains("latency") {
        FailKind::Latency
    } else {
        FailKind::ErrorRate
    }
}

// === inputs ===

/// The commands the inputs of `status` ask for, in the order to apply them
/// (see the module documentation). Inputs that do not apply in the status's
/// phase give nothing; an unknown phase gives nothing.
pub fn inputs(status: &CanaryRouteStatus) -> Vec<Command> {
    let Some(phase) = status
        .phase
        .as_deref()
        .and_then(|name| Phase::ALL.into_iter().find(|p| p.as_str() == name))
    else {
        return Vec::new();
    };
    let held = status.held.unwrap_or(false);
    let active = matches!(phase, Phase::Progressing | Phase::Paused);
    match (status.abort, phase) {
        (Some(true), Phase::Progressing | Phase::Paused | Phase::Promoted) => {
            return vec![Command::Abort];
        }
        (Some(false), Phase::Aborted) => return vec![Command::Retry],
        _ => {}
    }
    if !active {
        return Vec::new();
    }
    let mut commands = Vec::new();
    if status.paused == Some(false) && held {
        commands.push(Command::Resume);
    }
    let full = status.promote_full == Some(true);
    if full {
        commands.push(Command::PromoteFull);
    } else if status.promote == Some(true) {
        commands.push(Command::Promote);
    }
    if status.paused == Some(true) && !held && !full {
        commands.push(Command::Pause);
    }
    commands
}

/// The status input a command writes on any replica, as the `status` of a
/// merge patch: `abort` → `{"abort": true}`, `retry` → `{"abort": false}`,
/// `pause` / `resume` → `paused`, `promote` → `promote`, `promote --full` →
/// `promoteFull`.
pub fn input_of(command: Command) -> CanaryRouteStatus {
    let mut status = CanaryRouteStatus::default();
    match command {
        Command::Abort => status.abort = Some(true),
        Command::Retry => status.abort = Some(false),
        Command::Pause => status.paused = Some(true),
        Command::Resume => status.paused = Some(false),
        Command::Promote => status.promote = Some(true),
        Command::PromoteFull => status.promote_full = Some(true),
    }
    status
}

// === times ===

/// Milliseconds since the UNIX epoch as RFC 3339 in UTC with milliseconds:
/// `2026-12-03T09:30:00.250Z`.
pub fn format_time(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    match Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        // Past jiff's range (year 9999): the latest time it can show.
        Err(_) => format!("{:.3}", Timestamp::MAX),
    }
}

/// An RFC 3339 time as milliseconds since the UNIX epoch.
fn parse_time(field: &'static str, text: &str) -> Result<u64, StatusRefused> {
    let time: Timestamp = text
        .parse()
        .map_err(|error| refused(field, format!("{text:?} is not an RFC 3339 time: {error}")))?;
    u64::try_from(time.as_millisecond())
        .map_err(|_| refused(field, format!("{text:?} is before 1970")))
}

fn refused(field: &str, problem: String) -> StatusRefused {
    StatusRefused {
        field: field.to_owned(),
        problem,
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.counted, self.known)
    }
}

#[cfg(test)]
mod tests;
