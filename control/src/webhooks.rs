//! Webhooks (SPEC 14): calling a route's hooks and handing their answers to
//! the state machine, without ever making the control loop wait.
//!
//! - **Gates.** After each tick the control loop asks [`Hooks::schedule`]
//!   which hooks are due: those of the gate a rollout waits on (asked again
//!   every `analysis.interval` until they pass, as Flagger re-polls), the
//!   `rollout` hooks every interval while the steps run, the `rollback`
//!   hooks every interval while the rollout is active. Each due group runs
//!   as a tokio task (the hooks of one type in config order; the group
//!   passes when every one answers 2xx); its answer is queued, and the
//!   next tick takes it ([`Hooks::take_answers`]) and feeds it to
//!   [`RolloutState::on_gate_result`]. An answer that no longer applies
//!   (the rollout restarted or moved on) is dropped.
//! - **Events.** Every kept transition is announced ([`Hooks::announce`]):
//!   `event` hooks are called, `post-rollout` hooks after a promotion or an
//!   abort, and the notifications of its triggers are queued
//!   ([`crate::notifications`]). Nothing waits for them.
//!
//! The last call of every hook (result, attempts, message, time) is kept
//! for the route status.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::proto::MetricType;
use prometheus::{IntCounterVec, Opts, Registry};
use weir_config::status::WebhookStatus;
use weir_config::{Notification, Route, Strategy, WebhookKind};
use weir_proxy::metrics::Family;

use crate::notifications::{Notifier, triggers_of};
use crate::rollout::{Phase, RolloutState, Transition, TransitionKind};

pub mod call;
pub mod payload;

pub use call::{CallOutcome, HookClient};
pub use payload::Payload;

/// `weir_webhook_calls_total{route, hook, result}`.
pub const WEBHOOK_CALLS: Family = Family {
    name: "weir_webhook_calls_total",
    help: "Webhook calls (after their retries), by route, hook and result (pass, fail, error).",
    kind: MetricType::COUNTER,
    labels: &["route", "hook", "result"],
};

/// The backoff before the n-th retry of a webhook (0-based): 200 ms,
/// doubling, at most 2 s.
pub fn webhook_backoff(retry: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << retry.min(4)).min(2_000))
}

/// The answer of a group of hooks, for the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateAnswer {
    /// The route.
    pub route: String,
    /// The hooks' type.
    pub kind: WebhookKind,
    /// The rollout asked about (its start or retry time).
    pub rollout_started_ms: u64,
    /// The step the rollout waited to enter when asked, if it waited.
    pub wait_step: Option<usize>,
    /// Every hook answered 2xx.
    pub passed: bool,
    /// `hook: what it answered` of the first hook that did not pass, or of
    /// the last one.
    pub detail: String,
}

/// The webhook calls of the process, their answers and their states.
#[derive(Debug)]
pub struct Hooks {
    client: HookClient,
    table: Mutex<Table>,
    calls: IntCounterVec,
    /// The notification receivers.
    pub notifier: Notifier,
}

/// What is known of the calls, under one short lock.
#[derive(Debug, Default)]
struct Table {
    /// The last call of each (route, hook).
    last: HashMap<(String, String), WebhookStatus>,
    /// Groups being called: (route, type).
    in_flight: HashSet<(String, WebhookKind)>,
    /// When each group was last started (ms).
    asked: HashMap<(String, WebhookKind), u64>,
    /// Answers not yet taken by the control loop.
    answers: Vec<GateAnswer>,
}

/// One hook to call, owned by its task.
#[derive(Debug, Clone)]
struct Call {
    name: String,
    url: String,
    timeout: Duration,
    retries: u32,
    body: bytes::Bytes,
}

// === impl Hooks ===

impl Hooks {
    /// The webhook side of a process, its metrics registered in `registry`,
    /// with a receiver for each of `notifications`.
    ///
    /// # Errors
    /// When a metric family is already registered.
    pub fn new(registry: &Registry, notifications: &[Notification]) -> prometheus::Result<Hooks> {
        let calls = IntCounterVec::new(
            Opts::new(WEBHOOK_CALLS.name, WEBHOOK_CALLS.help),
            WEBHOOK_CALLS.labels,
        )?;
        registry.register(Box::new(calls.clone()))?;
        let client = HookClient::new();
        let notifier = Notifier::new(registry, client.clone())?;
        notifier.sync(notifications);
        Ok(Hooks {
            client,
            table: Mutex::new(Table::default()),
            calls,
            notifier,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no call is running and no answer waits to be taken.
    pub fn is_idle(&self) -> bool {
        let table = self.lock();
        table.in_flight.is_empty() && table.answers.is_empty()
    }

    /// The answers that came in since the last call, oldest first.
    pub fn take_answers(&self) -> Vec<GateAnswer> {
        std::mem::take(&mut self.lock().answers)
    }

    /// Starts the calls of `route` that are due at `now_ms` (see the module
    /// documentation). Spawns tasks; never waits.
    pub fn schedule(self: &Arc<Self>, route: &Route, state: &RolloutState, now_ms: u64) {
        let Some(strategy) = &route.strategy else {
            return;
        };
        if strategy.webhooks.hooks.is_empty() {
            return;
        }
        let mut due = Vec::new();
        if let Some(gate) = state.waiting_gate() {
            due.push(gate.kind());
        }
        if state.is_running_steps() && strategy.webhooks.has(WebhookKind::Rollout) {
            due.push(WebhookKind::Rollout);
        }
        if state.is_active() && strategy.webhooks.has(WebhookKind::Rollback) {
            due.push(WebhookKind::Rollback);
        }
        let every = u64::try_from(strategy.analysis.interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(100);
        for kind in due {
            let key = (route.name.to_string(), kind);
            {
                let mut table = self.lock();
                if table.in_flight.contains(&key) {
                    continue;
                }
                let last = table.asked.get(&key).copied();
                if last.is_some_and(|at| now_ms.saturating_sub(at) < every) {
                    continue;
                }
                table.in_flight.insert(key.clone());
                table.asked.insert(key, now_ms);
            }
            let calls = hook_calls(
                strategy,
                kind,
                &route.name,
                state,
                &state.message,
                false,
                now_ms,
            );
            let hooks = Arc::clone(self);
            let route = route.name.to_string();
            let started = state.rollout_started_ms;
            let wait_step = state.webhooks.wait.as_ref().map(|w| w.step);
            tokio::spawn(async move {
                let (passed, detail) = hooks.run_group(&route, kind, calls).await;
                let mut table = hooks.lock();
                table.in_flight.remove(&(route.clone(), kind));
                table.answers.push(GateAnswer {
                    route,
                    kind,
                    rollout_started_ms: started,
                    wait_step,
                    passed,
                    detail,
                });
            });
        }
    }

    /// Forgets what is known of the calls of routes for which `live` is
    /// false (gone from the config): when their groups were last started,
    /// their hooks' states and their `weir_webhook_calls_total` series. A
    /// call still running for such a route records itself when it ends;
    /// the next call of this forgets it again.
    pub fn forget_other_routes(&self, live: impl Fn(&str) -> bool) {
        let mut gone = Vec::new();
        {
            let mut table = self.lock();
            table.asked.retain(|(route, _), _| live(route));
            table.last.retain(|(route, hook), _| {
                let keep = live(route);
                if !keep {
                    gone.push((route.clone(), hook.clone()));
                }
                keep
            });
        }
        for (route, hook) in gone {
            for result in ["pass", "fail", "error"] {
                // Absent when the hook never had this result.
                let _ = self.calls.remove_label_values(&[&route, &hook, result]);
            }
        }
    }

    /// Calls `calls` in order, stopping at the first that does not pass.
    async fn run_group(&self, route: &str, kind: WebhookKind, calls: Vec<Call>) -> (bool, String) {
        let mut detail = String::new();
        for call in calls {
            let outcome = self.call(route, kind, &call).await;
            detail = format!("{}: {}", call.name, outcome.detail);
            if !outcome.passed {
                return (false, detail);
            }
        }
        (true, detail)
    }

    /// One hook with its retries; records its state and metric.
    async fn call(&self, route: &str, kind: WebhookKind, call: &Call) -> CallOutcome {
        let outcome = self
            .client
            .post(
                &call.url,
                &[],
                call.body.clone(),
                call.timeout,
                call.retries,
                webhook_backoff,
            )
            .await;
        let result = match (outcome.passed, outcome.status) {
            (true, _) => "pass",
            (false, Some(_)) => "fail",
            (false, None) => "error",
        };
        self.calls
            .with_label_values(&[route, &call.name, result])
            .inc();
        if !outcome.passed {
            tracing::info!(
                route,
                hook = %call.name,
                r#type = kind.as_str(),
                attempts = outcome.attempts,
                "webhook did not pass: {}",
                outcome.detail
            );
        }
        let now = crate::process::now_ms();
        let mut table = self.lock();
        let status = table
            .last
            .entry((route.to_owned(), call.name.clone()))
            .or_default();
        status.last_result = Some(result.to_owned());
        status.status_code = outcome.status;
        status.attempts = outcome.attempts;
        status.message = outcome.detail.clone();
        status.last_called_ms = Some(now);
        status.calls += 1;
        outcome
    }

    /// Announces a kept transition of `route` (now in `state`): `event`
    /// hooks, `post-rollout` hooks after a promotion or an abort, and the
    /// notifications of its triggers. Spawns tasks; never waits. Outside a
    /// tokio runtime (startup), nothing is sent.
    pub fn announce(
        self: &Arc<Self>,
        route: &Route,
        transition: &Transition,
        state: &RolloutState,
        notifications: &[Notification],
        now_ms: u64,
    ) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let base = Payload::new(&route.name, state, &transition.message, now_ms);
        if let Some(strategy) = &route.strategy {
            let mut kinds = vec![WebhookKind::Event];
            let finished = matches!(transition.kind, TransitionKind::Aborted(_))
                || (transition.to == Phase::Promoted && transition.from != Phase::Promoted);
            if finished {
                kinds.push(WebhookKind::PostRollout);
            }
            for kind in kinds {
                let calls = hook_calls(
                    strategy,
                    kind,
                    &route.name,
                    state,
                    &transition.message,
                    is_warning(transition.kind),
                    now_ms,
                );
                // Each on its own: a hanging hook delays no other.
                for call in calls {
                    let hooks = Arc::clone(self);
                    let name = route.name.to_string();
                    tokio::spawn(async move {
                        hooks.call(&name, kind, &call).await;
                    });
                }
            }
        }
        for trigger in triggers_of(transition) {
            let body = base.clone().for_event(trigger.as_str()).to_bytes();
            self.notifier
                .enqueue(notifications, trigger, &route.name, &body);
        }
    }

    /// The status of `strategy`'s hooks on `route`, in config order.
    pub fn statuses(
        &self,
        route: &str,
        strategy: &Strategy,
        state: Option<&RolloutState>,
    ) -> Vec<WebhookStatus> {
        let waiting = state.and_then(RolloutState::waiting_gate).map(|g| g.kind());
        let table = self.lock();
        strategy
            .webhooks
            .hooks
            .iter()
            .map(|hook| {
                let mut status = table
                    .last
                    .get(&(route.to_owned(), hook.name.to_string()))
                    .cloned()
                    .unwrap_or_default();
                status.name = hook.name.to_string();
                status.kind = hook.kind.as_str().to_owned();
                status.waiting = waiting == Some(hook.kind);
                status
            })
            .collect()
    }
}

/// The calls of `strategy`'s hooks of `kind` about `state`.
fn hook_calls(
    strategy: &Strategy,
    kind: WebhookKind,
    route: &str,
    state: &RolloutState,
    message: &str,
    warning: bool,
    now_ms: u64,
) -> Vec<Call> {
    let base = Payload::new(route, state, message, now_ms);
    strategy
        .webhooks
        .of(kind)
        .map(|hook| {
            let body = base
                .clone()
                .for_hook(&hook.name, kind, &hook.metadata, now_ms);
            let body = if warning { body.as_warning() } else { body };
            Call {
                name: hook.name.to_string(),
                url: hook.url.to_string(),
                timeout: hook.timeout,
                retries: hook.retries,
                body: body.to_bytes(),
            }
        })
        .collect()
}

/// Whether `event` hooks tell of `kind` as Flagger's `Warning` events do: a
/// failure counted or fatal, or a run that held the rollout.
fn is_warning(kind: TransitionKind) -> bool {
    matches!(
        kind,
        TransitionKind::Aborted(_)
            | TransitionKind::FailureCounted
            | TransitionKind::WebhookFailureCounted
            | TransitionKind::AnalysisInconclusive
    )
}

/// Whether `answer` is about the rollout `state` is in now and, for a
/// gate, about the step it waits to enter now (an answer that arrives late
/// never opens the next gate of the same type).
pub fn answer_applies(answer: &GateAnswer, state: &RolloutState) -> bool {
    let same_wait = crate::rollout::Gate::of(answer.kind).is_none()
        || answer.wait_step == state.webhooks.wait.as_ref().map(|w| w.step);
    answer.rollout_started_ms == state.rollout_started_ms && same_wait
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fixtures::{config_text, loaded, route};

    fn checkout() -> Route {
        let text = config_text(
            None,
            &format!(
                "{}      webhooks:\n        - {{ name: gate, type: confirm-traffic-increase, url: http://127.0.0.1:1/ }}\n",
                route("checkout", Some("[{setWeight: 20}, {setWeight: 60}]"))
            ),
        );
        loaded(&text).config().routes[0].clone()
    }

    #[test]
    fn an_answer_applies_only_to_the_wait_it_was_asked_about() {
        let route = checkout();
        let state = RolloutState::start(&route, 1_000).state;
        let answer = |wait_step, started| GateAnswer {
            route: "checkout".to_owned(),
            kind: WebhookKind::ConfirmTrafficIncrease,
            rollout_started_ms: started,
            wait_step,
            passed: true,
            detail: String::new(),
        };
        assert_eq!(state.webhooks.wait.as_ref().map(|w| w.step), Some(0));
        assert!(answer_applies(&answer(Some(0), 1_000), &state));
        assert!(
            !answer_applies(&answer(Some(1), 1_000), &state),
            "another step"
        );
        assert!(
            !answer_applies(&answer(Some(0), 999), &state),
            "another rollout"
        );
        let rollback = GateAnswer {
            kind: WebhookKind::Rollback,
            ..answer(None, 1_000)
        };
        assert!(answer_applies(&rollback, &state));
    }

    #[test]
    fn the_body_is_flaggers_with_weirs_fields() {
        let route = checkout();
        let state = RolloutState::start(&route, 1_000).state;
        let metadata = [("cmd".to_owned(), "hey".to_owned())].into();
        let body = Payload::new("checkout", &state, "waiting", 1_000).for_hook(
            "gate",
            WebhookKind::ConfirmTrafficIncrease,
            &metadata,
            1_000,
        );
        let json = serde_json::to_value(&body).expect("JSON");
        assert_eq!(json["name"], "checkout");
        assert_eq!(json["namespace"], "default");
        assert_eq!(json["phase"], "Waiting");
        assert_eq!(json["metadata"], serde_json::json!({"cmd": "hey"}));
        assert_eq!(json["weir"]["type"], "confirm-traffic-increase");
        assert_eq!(json["weir"]["timestamp"], "1970-01-01T00:00:01.000Z");
        assert!(json["weir"].get("event").is_none());

        let event = Payload::new("shop/checkout", &state, "started", 2_000).for_hook(
            "all",
            WebhookKind::Event,
            &BTreeMap::new(),
            2_000,
        );
        let json = serde_json::to_value(&event).expect("JSON");
        assert_eq!(
            (json["namespace"].as_str(), json["name"].as_str()),
            (Some("shop"), Some("checkout"))
        );
        assert_eq!(json["metadata"]["eventMessage"], "started");
        assert_eq!(json["metadata"]["eventType"], "Normal");
        assert_eq!(json["metadata"]["timestamp"], "2000");
        // A tolerated failure is a Warning, as Flagger's halted step is.
        let json = serde_json::to_value(event.as_warning()).expect("JSON");
        assert_eq!(json["metadata"]["eventType"], "Warning");
        assert!(is_warning(TransitionKind::WebhookFailureCounted));
        assert!(!is_warning(TransitionKind::Advanced));

        let notice = Payload::new("checkout", &state, "x", 1).for_event("on-rollout-aborted");
        let json = serde_json::to_value(&notice).expect("JSON");
        assert_eq!(json["weir"]["event"], "on-rollout-aborted");
        assert!(json["weir"]["hook"].is_null());
    }

    #[test]
    fn a_notification_has_every_field_of_a_hook_body_with_event_set() {
        let route = checkout();
        let state = RolloutState::start(&route, 1_000).state;
        let keys = |payload: &Payload| -> Vec<String> {
            let json = serde_json::to_value(payload).expect("JSON");
            let mut keys: Vec<String> = json["weir"]
                .as_object()
                .expect("the weir object")
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        let hook = Payload::new("checkout", &state, "x", 1).for_hook(
            "gate",
            WebhookKind::Rollout,
            &BTreeMap::new(),
            1,
        );
        let notice = Payload::new("checkout", &state, "x", 1).for_event("on-rollout-aborted");
        let mut want = keys(&hook);
        want.push("event".to_owned());
        want.sort();
        assert_eq!(keys(&notice), want);
    }

    #[test]
    fn each_call_and_notification_has_an_id_of_its_own() {
        let route = checkout();
        let state = RolloutState::start(&route, 1_000).state;
        let id = |payload: Payload| {
            let json = serde_json::to_value(payload).expect("JSON");
            json["weir"]["id"].as_str().expect("an id").to_owned()
        };
        let base = Payload::new("checkout", &state, "x", 1);
        let first = id(base.clone().for_event("on-rollout-updated"));
        let second = id(base.clone().for_event("on-analysis-run-running"));
        let call = id(base.for_hook("gate", WebhookKind::Rollout, &BTreeMap::new(), 1));
        assert_eq!(first.len(), 36, "{first}");
        assert_ne!(first, second);
        assert_ne!(call, first);
    }
}
