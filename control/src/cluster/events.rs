//! `events.k8s.io/v1` Events on a CanaryRoute for each transition of its
//! rollout (SPEC section 10): `RolloutStarted`, `StepAdvanced`, `Paused`,
//! `Promoted` (type Normal) and `Aborted` (type Warning, the reason in
//! `note`), reported by `weir.dev/weir` with the replica's identity.
//!
//! Building an Event is pure; [`send`] is the one request. An Event is
//! information, never a precondition: a failed send is logged by the
//! caller and changes nothing else.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::messages::truncate;
use crate::rollout::{Phase, RolloutState, TransitionKind};

/// The `reportingController` of every Event weir writes.
pub const REPORTING_CONTROLLER: &str = "weir.dev/weir";

/// The API server refuses a longer `note`.
const NOTE_LIMIT: usize = 1024;

/// Why an Event is written: one per kind of transition worth telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// A rollout started, or started again after `retry`.
    RolloutStarted,
    /// A step completed (or `promote` ended it) and the next began, one
    /// that moves on by itself (a weight or an analysis).
    StepAdvanced,
    /// The rollout is held: it reached a pause step, or was held (`pause`,
    /// its step left the spec, an inconclusive analysis).
    Paused,
    /// Every step done, or `promote --full`: 100 % canary.
    Promoted,
    /// Weight 0: by analysis or the `abort` command.
    Aborted,
}

/// The CanaryRoute an Event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `metadata.uid`, when known.
    pub uid: Option<String>,
    /// Its `metadata.resourceVersion` as last read, when known.
    pub resource_version: Option<String>,
}

// === impl EventReason ===

impl EventReason {
    /// The Event for a transition of the state machine that ends in `to`;
    /// `None` for those not worth an Event (a tolerated failure, resume,
    /// the end of a rollout when the config catches up or drops it).
    pub fn from_transition(kind: TransitionKind, to: Phase) -> Option<EventReason> {
        match kind {
            TransitionKind::Started | TransitionKind::Retried => Some(EventReason::RolloutStarted),
            TransitionKind::Advanced | TransitionKind::Promoted if to == Phase::Promoted => {
                Some(EventReason::Promoted)
            }
            // The step reached is a pause (or waits on a gate): the rollout
            // is held there, and that is what the Event tells.
            TransitionKind::Advanced | TransitionKind::Promoted if to == Phase::Paused => {
                Some(EventReason::Paused)
            }
            TransitionKind::Advanced | TransitionKind::Promoted => Some(EventReason::StepAdvanced),
            TransitionKind::Completed | TransitionKind::PromotedFull => Some(EventReason::Promoted),
            TransitionKind::Aborted(_) => Some(EventReason::Aborted),
            TransitionKind::Held
            | TransitionKind::StepsChanged
            | TransitionKind::AnalysisInconclusive => Some(EventReason::Paused),
            TransitionKind::FailureCounted
            | TransitionKind::WebhookFailureCounted
            | TransitionKind::GatePassed
            | TransitionKind::Released
            | TransitionKind::CaughtUp
            | TransitionKind::Ended => None,
        }
    }

    /// The Event's `reason`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventReason::RolloutStarted => "RolloutStarted",
            EventReason::StepAdvanced => "StepAdvanced",
            EventReason::Paused => "Paused",
            EventReason::Promoted => "Promoted",
            EventReason::Aborted => "Aborted",
        }
    }

    /// The Event's `action`: what weir did.
    pub const fn action(self) -> &'static str {
        match self {
            EventReason::RolloutStarted => "StartRollout",
            EventReason::StepAdvanced => "AdvanceStep",
            EventReason::Paused => "HoldRollout",
            EventReason::Promoted => "Promote",
            EventReason::Aborted => "Abort",
        }
    }

    /// `Warning` for an abort, `Normal` otherwise.
    pub const fn event_type(self) -> &'static str {
        match self {
            EventReason::Aborted => "Warning",
            _ => "Normal",
        }
    }
}

/// The transition from `previous` (the state the status held, if any) to
/// `next`, as the state machine would have named it; `None` when nothing
/// worth telling changed. Used where only the two states are at hand (a
/// status write).
pub fn transition_between(
    previous: Option<&RolloutState>,
    next: &RolloutState,
) -> Option<TransitionKind> {
    let active = |s: &RolloutState| matches!(s.phase, Phase::Progressing | Phase::Paused);
    let Some(previous) = previous else {
        return active(next).then_some(TransitionKind::Started);
    };
    if next.phase == Phase::Aborted && previous.phase != Phase::Aborted {
        let reason = next
            .abort_reason
            .unwrap_or(crate::rollout::AbortReason::Manual);
        return Some(TransitionKind::Aborted(reason));
    }
    if !active(next) && next.phase != Phase::Promoted {
        return None;
    }
    if next.rollout_seq != previous.rollout_seq && active(next) {
        return Some(TransitionKind::Started);
    }
    if previous.phase == Phase::Aborted && active(next) {
        return Some(TransitionKind::Retried);
    }
    if next.phase == Phase::Promoted && previous.phase != Phase::Promoted {
        return Some(TransitionKind::Completed);
    }
    if next.held && !previous.held {
        return Some(TransitionKind::Held);
    }
    if previous.held && !next.held && next.step_index == previous.step_index {
        return Some(TransitionKind::Released);
    }
    if next.step_index != previous.step_index && active(next) {
        return Some(TransitionKind::Advanced);
    }
    (next.failures > previous.failures).then_some(TransitionKind::FailureCounted)
}

/// The Event telling `reason` about `route`, with `note` (the state's
/// message, cut to the API's 1 KiB), reported by `instance` (`POD_NAME`)
/// at `now_ms`.
pub fn event(
    reason: EventReason,
    note: &str,
    route: &RouteRef,
    instance: &str,
    now_ms: u64,
) -> Event {
    build(
        (reason.as_str(), reason.action(), reason.event_type()),
        note,
        route,
        instance,
        now_ms,
    )
}

/// A `Warning` Event about a problem of `route` (a condition turned
/// `True`): `reason` is the condition's type, `note` its message.
pub fn problem(reason: &str, note: &str, route: &RouteRef, instance: &str, now_ms: u64) -> Event {
    build(
        (reason, "ReportProblem", "Warning"),
        note,
        route,
        instance,
        now_ms,
    )
}

/// The Event of `(reason, action, type)` about `route`.
fn build(
    (reason, action, type_): (&str, &str, &str),
    note: &str,
    route: &RouteRef,
    instance: &str,
    now_ms: u64,
) -> Event {
    let now = i64::try_from(now_ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(&route.name, now)),
            namespace: Some(route.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(action.to_owned()),
        reason: Some(reason.to_owned()),
        note: Some(truncate(note, NOTE_LIMIT).to_owned()),
        type_: Some(type_.to_owned()),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        regarding: Some(ObjectReference {
            api_version: Some("weir.dev/v1alpha1".to_owned()),
            kind: Some("CanaryRoute".to_owned()),
            name: Some(route.name.clone()),
            namespace: Some(route.namespace.clone()),
            uid: route.uid.clone(),
            resource_version: route.resource_version.clone(),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

/// Creates `event` in its namespace.
///
/// # Errors
/// The API server's refusal or the transport error, for the caller to log.
pub async fn send(client: kube::Client, event: &Event) -> Result<(), kube::Error> {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Event> = Api::namespaced(client, namespace);
    api.create(&PostParams::default(), event).await.map(|_| ())
}

/// Longest object name the API server takes (a DNS subdomain).
const MAX_NAME: usize = 253;

/// An Event's name: as client-go's recorder, the object's name and a
/// unique suffix; the object's name is cut so that the whole stays a valid
/// name for the longest object names too (253 characters), where the
/// recorder's would be refused.
fn event_name(object: &str, now: Timestamp) -> String {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let kept = truncate(object, MAX_NAME - suffix.len());
    // A name's labels end with a letter or digit.
    let kept = kept.trim_end_matches(['-', '.']);
    format!("{kept}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{AbortReason, Evidence};
    use weir_config::Weight;

    fn state(phase: Phase, step: Option<usize>, seq: u64) -> RolloutState {
        RolloutState {
            route: "shop/checkout".to_owned(),
            phase,
            step_index: step,
            canary_weight: Weight::ZERO,
            rollout_seq: seq,
            stable_revision: "v1".to_owned(),
            canary_revision: Some("v2".to_owned()),
            promoted_revision: None,
            pause_deadline_ms: None,
            pause_remaining_ms: None,
            pause_length_ms: None,
            held: false,
            rollout_started_ms: 1,
            failures: 0,
            message: String::new(),
            abort_reason: None,
            last_judgement: None,
            evidence: Evidence::new(),
            webhooks: Default::default(),
            promoted_ms: None,
            scale_down_deadline_ms: None,
            blue_green_stage: None,
        }
    }

    #[test]
    fn transitions_map_to_the_five_event_reasons() {
        use EventReason as E;
        use TransitionKind as K;
        let table = [
            (K::Started, Phase::Progressing, Some(E::RolloutStarted)),
            (K::Retried, Phase::Progressing, Some(E::RolloutStarted)),
            (K::Advanced, Phase::Progressing, Some(E::StepAdvanced)),
            (K::Advanced, Phase::Paused, Some(E::Paused)),
            (K::Promoted, Phase::Progressing, Some(E::StepAdvanced)),
            (K::Promoted, Phase::Paused, Some(E::Paused)),
            (K::Promoted, Phase::Promoted, Some(E::Promoted)),
            (K::Completed, Phase::Promoted, Some(E::Promoted)),
            (K::PromotedFull, Phase::Promoted, Some(E::Promoted)),
            (
                K::Aborted(AbortReason::AnalysisLatency),
                Phase::Aborted,
                Some(E::Aborted),
            ),
            (K::Held, Phase::Paused, Some(E::Paused)),
            (K::StepsChanged, Phase::Paused, Some(E::Paused)),
            (K::FailureCounted, Phase::Progressing, None),
            (K::Released, Phase::Progressing, None),
            (K::CaughtUp, Phase::Healthy, None),
            (K::Ended, Phase::Healthy, None),
        ];
        for (kind, to, expected) in table {
            assert_eq!(EventReason::from_transition(kind, to), expected, "{kind:?}");
        }
        assert_eq!(EventReason::Aborted.event_type(), "Warning");
        assert_eq!(EventReason::Paused.event_type(), "Normal");
    }

    #[test]
    fn the_transition_is_read_from_the_two_states() {
        use TransitionKind as K;
        let at = |phase, step| state(phase, step, 3);
        let mut aborted = at(Phase::Aborted, Some(1));
        aborted.abort_reason = Some(AbortReason::AnalysisErrorRate);
        let mut held = at(Phase::Paused, Some(1));
        held.held = true;
        let mut failed = at(Phase::Progressing, Some(1));
        failed.failures = 1;
        let table = [
            (None, at(Phase::Progressing, Some(0)), Some(K::Started)),
            (None, at(Phase::Healthy, None), None),
            (
                Some(at(Phase::Healthy, None)),
                state(Phase::Progressing, Some(0), 4),
                Some(K::Started),
            ),
            (
                Some(at(Phase::Progressing, Some(0))),
                at(Phase::Paused, Some(1)),
                Some(K::Advanced),
            ),
            (
                Some(at(Phase::Progressing, Some(0))),
                aborted.clone(),
                Some(K::Aborted(AbortReason::AnalysisErrorRate)),
            ),
            (
                Some(aborted),
                at(Phase::Progressing, Some(0)),
                Some(K::Retried),
            ),
            (
                Some(at(Phase::Progressing, Some(4))),
                at(Phase::Promoted, Some(5)),
                Some(K::Completed),
            ),
            (
                Some(at(Phase::Paused, Some(1))),
                held.clone(),
                Some(K::Held),
            ),
            (Some(held), at(Phase::Paused, Some(1)), Some(K::Released)),
            (
                Some(at(Phase::Progressing, Some(1))),
                failed,
                Some(K::FailureCounted),
            ),
            (
                Some(at(Phase::Progressing, Some(1))),
                at(Phase::Progressing, Some(1)),
                None,
            ),
            (
                Some(at(Phase::Promoted, Some(5))),
                at(Phase::Healthy, None),
                None,
            ),
        ];
        for (previous, next, expected) in table {
            assert_eq!(
                transition_between(previous.as_ref(), &next),
                expected,
                "{:?} -> {:?}",
                previous.map(|p| (p.phase, p.step_index)),
                (next.phase, next.step_index)
            );
        }
    }

    #[test]
    fn an_event_names_the_route_the_reporter_and_the_reason() {
        let route = RouteRef {
            namespace: "shop".to_owned(),
            name: "checkout".to_owned(),
            uid: Some("uid-1".to_owned()),
            resource_version: Some("42".to_owned()),
        };
        let long = "é".repeat(600);
        let event = event(
            EventReason::Aborted,
            &long,
            &route,
            "weir-1",
            1_700_000_000_000,
        );
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["reason"], "Aborted");
        assert_eq!(json["type"], "Warning");
        assert_eq!(json["action"], "Abort");
        assert_eq!(json["reportingController"], "weir.dev/weir");
        assert_eq!(json["reportingInstance"], "weir-1");
        assert_eq!(json["regarding"]["kind"], "CanaryRoute");
        assert_eq!(json["regarding"]["apiVersion"], "weir.dev/v1alpha1");
        assert_eq!(json["regarding"]["name"], "checkout");
        assert_eq!(json["regarding"]["uid"], "uid-1");
        assert_eq!(json["metadata"]["namespace"], "shop");
        assert_eq!(json["eventTime"], "2023-11-14T22:13:20.000000Z");
        let name = json["metadata"]["name"].as_str().expect("a name");
        assert!(name.starts_with("checkout."), "{name}");

        // The longest names the API server takes give names it takes.
        for name in [
            format!("{}-x", "a".repeat(250)),
            format!("{}-{}", "b".repeat(235), "c".repeat(17)),
        ] {
            let route = RouteRef {
                name: name.clone(),
                ..route.clone()
            };
            let paused = super::event(EventReason::Paused, "", &route, "weir-1", 1_700_000_000_000);
            let event_name = paused.metadata.name.expect("a name");
            assert!(event_name.len() <= MAX_NAME, "{} bytes", event_name.len());
            assert!(
                !event_name.contains("-.") && !event_name.contains(".."),
                "{event_name}"
            );
        }
        let note = json["note"].as_str().expect("a note");
        assert!(note.len() <= 1024 && note.len() >= 1022, "{}", note.len());
    }
}
