//! The JSON body of webhooks and notifications: Flagger's
//! `CanaryWebhookPayload` (`name`, `namespace`, `phase`, `checksum`,
//! `metadata`), so that Flagger's load tester and gates read it unchanged,
//! plus a `weir` object with the rollout as weir sees it.
//!
//! `name` and `namespace`: a CanaryRoute's own (`NAMESPACE/NAME` split); a
//! route of `weir.yaml` is named as is, in namespace `default`. `phase` is
//! Flagger's name for the situation (`Progressing`, `Waiting`,
//! `WaitingPromotion`, `Succeeded`, `Failed`, `Initialized`); weir's own
//! phase is `weir.phase`. `checksum` identifies the rollout (route, canary
//! revision and sequence number), as Flagger's identifies the spec rolled
//! out.

use std::collections::BTreeMap;

use serde::Serialize;
use weir_config::WebhookKind;

use crate::cluster::status_codec::format_time;
use crate::rollout::{Gate, Phase, RolloutState};

/// The namespace given to routes of `weir.yaml`.
pub const FILE_ROUTE_NAMESPACE: &str = "default";

/// The body of one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    /// The route's name (a CanaryRoute's `metadata.name`).
    pub name: String,
    /// `default`, or a CanaryRoute's namespace.
    pub namespace: String,
    /// Flagger's phase name.
    pub phase: &'static str,
    /// Identifies the rollout: hex of its cohort seed.
    pub checksum: String,
    /// The hook's `metadata`; for `event` hooks also Flagger's
    /// `eventMessage`, `eventType` and `timestamp`.
    pub metadata: BTreeMap<String, String>,
    /// The rollout as weir sees it.
    pub weir: WeirFields,
}

/// The `weir` object of a [`Payload`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WeirFields {
    /// The hook's name; null in a notification, which has every field of
    /// a hook's body (SPEC: "the same body with `weir.event` set").
    pub hook: Option<String>,
    /// The hook's type; null in a notification.
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    /// The trigger of a notification (`on-rollout-aborted`); absent for a hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'static str>,
    /// The call's or notification's own id, a random UUID: the same in
    /// every delivery of it (a call's retries; a notification to each
    /// receiver, on each retry, after a restart), so that a receiver can
    /// drop the duplicates at-least-once delivery allows. Set by
    /// [`Payload::for_hook`] and [`Payload::for_event`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The route's name in weir (`NAMESPACE/NAME` for a CanaryRoute).
    pub route: String,
    /// weir's phase.
    pub phase: &'static str,
    /// The stable revision.
    pub stable_revision: String,
    /// The canary revision, if any.
    pub canary_revision: Option<String>,
    /// The 0-based current step, if any.
    pub step: Option<usize>,
    /// The canary weight in force, in percent.
    pub weight: f64,
    /// The status message (or the transition's message).
    pub message: String,
    /// When this was sent: RFC 3339, UTC.
    pub timestamp: String,
}

// === impl Payload ===

impl Payload {
    /// The body about `state` of route `route`, with `message` (the
    /// transition's, or the state's own), at `now_ms`.
    pub fn new(route: &str, state: &RolloutState, message: &str, now_ms: u64) -> Payload {
        let (namespace, name) = match route.split_once('/') {
            Some((namespace, name)) => (namespace.to_owned(), name.to_owned()),
            None => (FILE_ROUTE_NAMESPACE.to_owned(), route.to_owned()),
        };
        let seed = weir_config::cohort_seed(
            route,
            state.canary_revision.as_deref().unwrap_or(""),
            Some(state.rollout_seq),
        );
        Payload {
            name,
            namespace,
            phase: flagger_phase(state),
            checksum: format!("{seed:016x}"),
            metadata: BTreeMap::new(),
            weir: WeirFields {
                hook: None,
                kind: None,
                event: None,
                id: None,
                route: route.to_owned(),
                phase: state.phase.as_str(),
                stable_revision: state.stable_revision.clone(),
                canary_revision: state.canary_revision.clone(),
                step: state.shown_step_index(),
                weight: state.canary_weight.percent(),
                message: message.to_owned(),
                timestamp: format_time(now_ms),
            },
        }
    }

    /// The body for hook `name` of `kind` with its `metadata`.
    #[must_use]
    pub fn for_hook(
        mut self,
        name: &str,
        kind: WebhookKind,
        metadata: &BTreeMap<String, String>,
        now_ms: u64,
    ) -> Payload {
        self.weir.hook = Some(name.to_owned());
        self.weir.kind = Some(kind.as_str());
        self.weir.id = Some(new_id());
        self.metadata = metadata.clone();
        if kind == WebhookKind::Event {
            // Flagger's event hooks carry these three.
            self.metadata
                .insert("eventMessage".to_owned(), self.weir.message.clone());
            let kind = if matches!(self.phase, "Failed") {
                "Warning"
            } else {
                "Normal"
            };
            self.metadata
                .insert("eventType".to_owned(), kind.to_owned());
            self.metadata
                .insert("timestamp".to_owned(), now_ms.to_string());
        }
        self
    }

    /// An `event` hook's body marked `eventType: Warning`, as Flagger marks
    /// a halted or failed step; other bodies are left as they are.
    #[must_use]
    pub fn as_warning(mut self) -> Payload {
        if let Some(kind) = self.metadata.get_mut("eventType") {
            "Warning".clone_into(kind);
        }
        self
    }

    /// The body for a notification of `event`, with a new id.
    #[must_use]
    pub fn for_event(mut self, event: &'static str) -> Payload {
        self.weir.event = Some(event);
        self.weir.id = Some(new_id());
        self
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Strings, numbers and maps of strings: serializing cannot fail.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A new id of a call or notification: a random UUID.
fn new_id() -> String {
    String::from_utf8_lossy(&weir_proxy::request_id::new_request_id_text()).into_owned()
}

/// Flagger's phase name for the situation of `state`.
fn flagger_phase(state: &RolloutState) -> &'static str {
    match state.phase {
        Phase::Healthy | Phase::Unknown => "Initialized",
        Phase::Aborted => "Failed",
        Phase::Promoted => "Succeeded",
        Phase::Progressing => "Progressing",
        Phase::Paused => match state.webhooks.wait.as_ref().map(|w| w.gate) {
            Some(Gate::ConfirmPromotion) => "WaitingPromotion",
            Some(_) => "Waiting",
            None => "Progressing",
        },
    }
}
