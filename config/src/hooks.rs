//! Webhooks and notifications as validated (SPEC 14): Flagger's gate types
//! per route under `strategy.webhooks`, and Argo Rollouts' notification
//! triggers of the top-level `notifications` receivers. Built only by
//! [`crate::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Default time allowed for one webhook or notification attempt.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default further attempts of a notification after a failed one.
pub const DEFAULT_RETRY_MAX: u32 = 5;
/// Most further attempts of a webhook (`retries`).
pub const MAX_WEBHOOK_RETRIES: u32 = 10;
/// Most further attempts of a notification (`retryMax`).
pub const MAX_NOTIFICATION_RETRIES: u32 = 20;

/// A route's webhooks and how many failed checks they tolerate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Webhooks {
    /// The hooks, in config order; unique names.
    pub hooks: Vec<Webhook>,
    /// Failed `pre-rollout` and `rollout` checks tolerated before the
    /// rollout aborts (`strategy.threshold`).
    pub threshold: u32,
}

/// One webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Unique within the route; `[A-Za-z0-9._-]`, at most 63 characters.
    pub name: Arc<str>,
    /// When it is called and what its answer means.
    pub kind: WebhookKind,
    /// An `http://` or `https://` URL with a host.
    pub url: Arc<str>,
    /// Time allowed for one attempt, more than 0.
    pub timeout: Duration,
    /// Further attempts after a failed one, at most [`MAX_WEBHOOK_RETRIES`].
    pub retries: u32,
    /// Sent as `metadata` in the body.
    pub metadata: BTreeMap<String, String>,
}

/// Flagger's webhook types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookKind {
    /// Before the first step: the rollout waits at weight 0 for a 2xx.
    ConfirmRollout,
    /// A test before traffic moves: failures beyond the threshold abort.
    PreRollout,
    /// Each analysis interval: failures beyond the threshold abort.
    Rollout,
    /// Before each weight increase: the rollout waits for a 2xx.
    ConfirmTrafficIncrease,
    /// Before the last step: the rollout waits for a 2xx.
    ConfirmPromotion,
    /// After promotion or abort: called and recorded.
    PostRollout,
    /// Polled while the rollout runs: a 2xx aborts it.
    Rollback,
    /// Every transition: called, never waited for.
    Event,
}

/// A notification receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Unique; `[A-Za-z0-9._-]`, at most 63 characters (the `receiver` label).
    pub name: Arc<str>,
    /// An `http://` or `https://` URL with a host.
    pub url: Arc<str>,
    /// Extra request headers (valid names and values).
    pub headers: Vec<(String, String)>,
    /// The triggers that notify this receiver, at least one.
    pub triggers: Vec<Trigger>,
    /// The routes it hears about; empty = every route.
    pub routes: Vec<String>,
    /// Time allowed for one attempt, more than 0.
    pub timeout: Duration,
    /// Further attempts after a failed one, at most [`MAX_NOTIFICATION_RETRIES`].
    pub retry_max: u32,
}

/// Argo Rollouts' notification triggers that apply to weir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// A rollout started (a new canary revision, or retry).
    RolloutUpdated,
    /// A step completed.
    RolloutStepCompleted,
    /// The rollout paused (a pause step, a hold, a gate that waits).
    RolloutPaused,
    /// The rollout aborted.
    RolloutAborted,
    /// The rollout was promoted.
    RolloutCompleted,
    /// An analysis judgement failed.
    AnalysisRunFailed,
    /// A webhook check could not be made (no answer, or a non-2xx answer).
    AnalysisRunError,
    /// A rollout began to be judged (started or retried).
    AnalysisRunRunning,
    /// Argo's ReplicaSet scaling: weir scales nothing, so it never fires;
    /// accepted so that Argo's notification settings load unchanged.
    ScalingReplicaSet,
}

// === impl WebhookKind ===

impl WebhookKind {
    /// Every kind, in the order of the rollout.
    pub const ALL: [WebhookKind; 8] = [
        WebhookKind::ConfirmRollout,
        WebhookKind::PreRollout,
        WebhookKind::Rollout,
        WebhookKind::ConfirmTrafficIncrease,
        WebhookKind::ConfirmPromotion,
        WebhookKind::PostRollout,
        WebhookKind::Rollback,
        WebhookKind::Event,
    ];

    /// The name as written in the config (Flagger's).
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookKind::ConfirmRollout => "confirm-rollout",
            WebhookKind::PreRollout => "pre-rollout",
            WebhookKind::Rollout => "rollout",
            WebhookKind::ConfirmTrafficIncrease => "confirm-traffic-increase",
            WebhookKind::ConfirmPromotion => "confirm-promotion",
            WebhookKind::PostRollout => "post-rollout",
            WebhookKind::Rollback => "rollback",
            WebhookKind::Event => "event",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<WebhookKind> {
        WebhookKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// True for the gates that hold the rollout until they answer 2xx.
    pub const fn is_confirm(self) -> bool {
        matches!(
            self,
            WebhookKind::ConfirmRollout
                | WebhookKind::ConfirmTrafficIncrease
                | WebhookKind::ConfirmPromotion
        )
    }
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Webhooks ===

impl Webhooks {
    /// True when at least one hook is of `kind`.
    pub fn has(&self, kind: WebhookKind) -> bool {
        self.hooks.iter().any(|h| h.kind == kind)
    }

    /// The hooks of `kind`, in config order.
    pub fn of(&self, kind: WebhookKind) -> impl Iterator<Item = &Webhook> {
        self.hooks.iter().filter(move |h| h.kind == kind)
    }
}

// === impl Trigger ===

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 9] = [
        Trigger::RolloutUpdated,
        Trigger::RolloutStepCompleted,
        Trigger::RolloutPaused,
        Trigger::RolloutAborted,
        Trigger::RolloutCompleted,
        Trigger::AnalysisRunFailed,
        Trigger::AnalysisRunError,
        Trigger::AnalysisRunRunning,
        Trigger::ScalingReplicaSet,
    ];

    /// The name as written in the config (Argo Rollouts').
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::RolloutUpdated => "on-rollout-updated",
            Trigger::RolloutStepCompleted => "on-rollout-step-completed",
            Trigger::RolloutPaused => "on-rollout-paused",
            Trigger::RolloutAborted => "on-rollout-aborted",
            Trigger::RolloutCompleted => "on-rollout-completed",
            Trigger::AnalysisRunFailed => "on-analysis-run-failed",
            Trigger::AnalysisRunError => "on-analysis-run-error",
            Trigger::AnalysisRunRunning => "on-analysis-run-running",
            Trigger::ScalingReplicaSet => "on-scaling-replica-set",
        }
    }

    /// The trigger named `name`.
    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Notification ===

impl Notification {
    /// True when this receiver hears of `trigger` on `route`.
    pub fn wants(&self, trigger: Trigger, route: &str) -> bool {
        self.triggers.contains(&trigger)
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == route))
    }
}
