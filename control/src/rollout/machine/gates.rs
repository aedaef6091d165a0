//! Webhook gates (SPEC 14) in the state machine. The machine stays pure:
//! the control loop calls the hooks and hands their answers in with
//! [`RolloutState::on_gate_result`]; the machine says what it waits for
//! with [`RolloutState::waiting_gate`].
//!
//! Before entering step `k` the rollout passes, in this order, each gate
//! the strategy has hooks for: `confirm-rollout` and `pre-rollout` (k = 0),
//! `confirm-traffic-increase` (step k raises the weight) and
//! `confirm-promotion` (k is the last step; for blue-green, k is the swap,
//! and no `confirm-traffic-increase` is asked). While it waits it is Paused at
//! the weight it had (0 before the first step), `step_index` unchanged, and
//! analysis still runs. A confirm gate that answers anything but 2xx keeps
//! it waiting with a message; a failed `pre-rollout` or `rollout` check
//! counts, and aborts (`webhook`) once the count exceeds
//! `strategy.threshold`; a `rollback` hook that answers 2xx aborts
//! (`webhook_rollback`). `promote` ends the current step, and the gates of
//! the next are asked as when the step ends by itself; `promote` while a
//! gate waits goes past it (the operator decides). `pause` holds a waiting
//! gate, and `resume` waits again.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weir_config::{Route, Step, Strategy, WebhookKind};

use super::{AbortReason, Outcome, Phase, RolloutState, TransitionKind};

/// A gate that holds a step until its hooks answer 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// Before the first step.
    ConfirmRollout,
    /// A test before traffic moves.
    PreRollout,
    /// Before a step that raises the weight.
    ConfirmTrafficIncrease,
    /// Before the last step.
    ConfirmPromotion,
}

/// The gate a rollout waits on, and the step it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateWait {
    /// The gate.
    pub gate: Gate,
    /// The 0-based step entered once every gate before it passed.
    pub step: usize,
    /// The last answer that kept it waiting, for the status message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The webhook side of a rollout's state (persisted with it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookProgress {
    /// The gate the rollout waits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<GateWait>,
    /// Failed `pre-rollout` and `rollout` checks since the rollout started
    /// (or was retried).
    #[serde(default)]
    pub failures: u32,
}

// === impl Gate ===

impl Gate {
    /// The webhook type of this gate.
    pub const fn kind(self) -> WebhookKind {
        match self {
            Gate::ConfirmRollout => WebhookKind::ConfirmRollout,
            Gate::PreRollout => WebhookKind::PreRollout,
            Gate::ConfirmTrafficIncrease => WebhookKind::ConfirmTrafficIncrease,
            Gate::ConfirmPromotion => WebhookKind::ConfirmPromotion,
        }
    }

    /// The gate of webhook type `kind`, if it is one.
    pub const fn of(kind: WebhookKind) -> Option<Gate> {
        match kind {
            WebhookKind::ConfirmRollout => Some(Gate::ConfirmRollout),
            WebhookKind::PreRollout => Some(Gate::PreRollout),
            WebhookKind::ConfirmTrafficIncrease => Some(Gate::ConfirmTrafficIncrease),
            WebhookKind::ConfirmPromotion => Some(Gate::ConfirmPromotion),
            _ => None,
        }
    }
}

/// The gates before entering step `index` from `weight`, in order.
fn gates_before(strategy: &Strategy, index: usize, weight: weir_config::Weight) -> Vec<Gate> {
    let hooks = &strategy.webhooks;
    let Some(step) = strategy.steps.get(index) else {
        return Vec::new();
    };
    let mut gates = Vec::new();
    if let Some(bg) = &strategy.blue_green {
        // Blue-green: the first gates before the preview, confirm-promotion
        // before the swap; the swap is one move, not a traffic increase.
        if index == 0 {
            gates.extend([Gate::ConfirmRollout, Gate::PreRollout]);
        }
        if index == bg.swap_step() {
            gates.push(Gate::ConfirmPromotion);
        }
        gates.retain(|g| hooks.has(g.kind()));
        return gates;
    }
    if index == 0 {
        gates.extend([Gate::ConfirmRollout, Gate::PreRollout]);
    }
    if matches!(step, Step::SetWeight(w) if *w > weight) {
        gates.push(Gate::ConfirmTrafficIncrease);
    }
    if index + 1 == strategy.steps.len() {
        gates.push(Gate::ConfirmPromotion);
    }
    gates.retain(|g| hooks.has(g.kind()));
    gates
}

// === impl RolloutState ===

impl RolloutState {
    /// The gate whose hooks the control loop should call now: the one the
    /// rollout waits on, unless an operator holds it.
    pub fn waiting_gate(&self) -> Option<Gate> {
        if !self.is_active() || self.held {
            return None;
        }
        self.webhooks.wait.as_ref().map(|w| w.gate)
    }

    /// True while the canary is being analysed: active, not held, past the
    /// first gates (when `rollout` hooks are called; as in Flagger, also
    /// while a later gate waits).
    pub fn is_running_steps(&self) -> bool {
        self.is_active() && !self.held && self.step_index.is_some()
    }

    /// Enters step `index`, or waits on the first gate before it.
    pub(super) fn enter_gated(&mut self, strategy: &Strategy, index: usize, now_ms: u64) {
        match gates_before(strategy, index, self.canary_weight).first() {
            Some(gate) => self.wait_on(*gate, index),
            None => self.enter(strategy, index, now_ms),
        }
    }

    /// Whether entering step `index` again, after an edit, raises the
    /// weight of a canary-steps route with a `confirm-traffic-increase`
    /// hook: that gate is asked first (the gates passed when the step was
    /// first entered are not asked again).
    pub(super) fn edit_raises_weight(&self, strategy: &Strategy, index: usize) -> bool {
        strategy.blue_green.is_none()
            && matches!(strategy.steps.get(index), Some(Step::SetWeight(w)) if *w > self.canary_weight)
            && strategy.webhooks.has(Gate::ConfirmTrafficIncrease.kind())
    }

    /// Enters step `index` again after an edit made it another step:
    /// through `confirm-traffic-increase` when it now raises the weight.
    pub(super) fn enter_edited(&mut self, strategy: &Strategy, index: usize, now_ms: u64) {
        if self.edit_raises_weight(strategy, index) {
            self.wait_on(Gate::ConfirmTrafficIncrease, index);
        } else {
            self.enter(strategy, index, now_ms);
        }
    }

    pub(super) fn wait_on(&mut self, gate: Gate, step: usize) {
        self.phase = Phase::Paused;
        self.held = false;
        self.clear_pause();
        self.webhooks.wait = Some(GateWait {
            gate,
            step,
            detail: None,
        });
    }

    /// The answer of the hooks of type `kind`: `passed` when every one
    /// answered 2xx; `detail` says what they answered. An answer that does
    /// not apply now (no such wait, an inactive rollout) changes nothing.
    pub fn on_gate_result(
        &self,
        route: &Route,
        kind: WebhookKind,
        passed: bool,
        detail: &str,
        now_ms: u64,
    ) -> Outcome {
        let unchanged = || Outcome::unchanged(self.clone());
        let Some(strategy) = &route.strategy else {
            return unchanged();
        };
        if !self.is_active() {
            return unchanged();
        }
        let mut s = self.clone();
        match kind {
            WebhookKind::Rollback if passed => {
                let detail = format!("rollback webhook answered 2xx: {detail}");
                s.abort(self, strategy, now_ms, AbortReason::WebhookRollback, detail)
            }
            WebhookKind::Rollout if !passed && !self.held => {
                s.count_webhook_failure(self, strategy, now_ms, kind, detail)
            }
            _ => {
                let Some(wait) = &self.webhooks.wait else {
                    return unchanged();
                };
                if self.held || wait.gate.kind() != kind {
                    return unchanged();
                }
                if passed {
                    return s.pass_gate(self, strategy, now_ms, detail);
                }
                if kind == WebhookKind::PreRollout {
                    return s.count_webhook_failure(self, strategy, now_ms, kind, detail);
                }
                if let Some(w) = &mut s.webhooks.wait {
                    w.detail = Some(detail.to_owned());
                }
                s.refresh_message(strategy, now_ms);
                Outcome::unchanged(s)
            }
        }
    }

    fn count_webhook_failure(
        mut self,
        before: &RolloutState,
        strategy: &Strategy,
        now_ms: u64,
        kind: WebhookKind,
        detail: &str,
    ) -> Outcome {
        self.webhooks.failures = self.webhooks.failures.saturating_add(1);
        let threshold = strategy.webhooks.threshold;
        if self.webhooks.failures > threshold {
            let detail = format!("{kind} webhook failed: {detail}");
            return self.abort(before, strategy, now_ms, AbortReason::Webhook, detail);
        }
        if let Some(w) = self
            .webhooks
            .wait
            .as_mut()
            .filter(|w| w.gate.kind() == kind)
        {
            w.detail = Some(detail.to_owned());
        }
        let message = format!(
            "{kind} webhook failed ({} of {threshold} tolerated): {detail}",
            self.webhooks.failures
        );
        self.finish(
            before,
            strategy,
            now_ms,
            TransitionKind::WebhookFailureCounted,
            message,
        )
    }

    fn pass_gate(
        mut self,
        before: &RolloutState,
        strategy: &Strategy,
        now_ms: u64,
        detail: &str,
    ) -> Outcome {
        let Some(wait) = self.webhooks.wait.take() else {
            return Outcome::unchanged(self);
        };
        let gates = gates_before(strategy, wait.step, self.canary_weight);
        let next = gates
            .iter()
            .skip_while(|g| **g != wait.gate)
            .nth(1)
            .copied();
        match next {
            Some(gate) => self.wait_on(gate, wait.step),
            None => self.enter(strategy, wait.step, now_ms),
        }
        let message = format!(
            "{} webhook passed ({detail}): {}",
            wait.gate.kind(),
            self.position(strategy)
        );
        self.finish(
            before,
            strategy,
            now_ms,
            TransitionKind::GatePassed,
            message,
        )
    }

    /// The status message while waiting on a gate, if waiting.
    pub(super) fn gate_note(&self, strategy: &Strategy) -> Option<String> {
        let wait = self.webhooks.wait.as_ref()?;
        let count = strategy.steps.len();
        // A gate step read from outside may be past any steps (even the
        // largest number): shown, never overflowing.
        let number = wait.step.saturating_add(1);
        let step = match strategy.steps.get(wait.step) {
            Some(step) => format!("step {number}/{count} ({})", super::StepText(step)),
            None => format!("step {number}/{count}"),
        };
        let answer = wait
            .detail
            .as_deref()
            .map(|d| format!("; last answer: {d}"))
            .unwrap_or_default();
        Some(format!(
            "waiting for the {} webhook before {step} at weight {}%{answer}",
            wait.gate.kind(),
            self.canary_weight
        ))
    }
}
