//! The live events of control, for `GET /api/v1/events`: transitions,
//! verdicts, commands and reloads as they are kept, and a sample of every
//! route's per-role request rate, error rate and p99 once a second, read
//! from the counter history the control loop keeps.
//!
//! Events go out through a bounded `tokio::sync::broadcast` channel: sending
//! never waits, so a slow reader only lags behind (and is told so by the
//! admin API), never slows the control loop or other readers. Each event is
//! encoded once, as its Server-Sent Events frame, and shared by every
//! reader. Transitions, verdicts, commands and reloads are built and kept
//! among the recent events whether anyone listens or not (they come a few
//! a second at most), so a page that opens shows what happened before it
//! did; the rate samples are kept regardless too, but only sent as an
//! event while someone listens.
//!
//! A reader subscribes under the control lock, where every event is sent,
//! and reads the current state ([`ControlState::events_snapshot`]) under the
//! same lock: it misses nothing between the snapshot and the first event.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::ControlState;
use super::history::History;
use crate::rollout::{Judgement, RoleSummary, RolloutState, Transition, Verdict};

/// Events a reader may fall behind by before it is told it lagged.
pub const EVENT_BUFFER: usize = 512;
/// How often the per-route rates are sampled, in milliseconds.
pub const SAMPLE_EVERY_MS: u64 = 1_000;
/// Rate samples kept per route for a page that opens: three minutes.
pub const SAMPLES_KEPT: usize = 180;
/// Events (samples aside) kept for a page that opens: this many verdicts,
/// and as many of the other kinds, so that the verdicts every active route
/// makes each second never push a transition out.
pub const RECENT_KEPT: usize = 50;

/// Where control's events go: the broadcast channel, the recent events
/// and the rate samples of the last minutes.
#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    next_id: u64,
    recent: VecDeque<Arc<Event>>,
    recent_verdicts: VecDeque<Arc<Event>>,
    samples: BTreeMap<String, VecDeque<RateSample>>,
    last_sample_ms: u64,
    /// The time of the latest control loop tick: the "now" of the route
    /// statuses carried by events.
    tick_ms: u64,
}

/// One event, encoded once for every reader.
#[derive(Debug)]
pub struct Event {
    /// Its number, increasing from 1 (the SSE `id`).
    pub id: u64,
    /// Its type (the SSE `event`).
    pub name: &'static str,
    /// Its JSON payload.
    pub data: Value,
    /// The whole Server-Sent Events frame.
    pub frame: Bytes,
}

/// The per-role figures of one route over one second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateSample {
    /// The end of the second, ms since the UNIX epoch.
    pub at: u64,
    /// Stable's figures.
    pub stable: RoleRates,
    /// Canary's figures.
    pub canary: RoleRates,
}

/// One role's figures over one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRates {
    /// Requests per second.
    #[serde(serialize_with = "shortest")]
    pub rps: f32,
    /// Errors over requests; `None` without requests.
    #[serde(serialize_with = "shortest_or_null")]
    pub error_rate: Option<f32>,
    /// The 99th latency percentile in ms; `None` without requests.
    #[serde(serialize_with = "shortest_or_null")]
    pub p99_ms: Option<f32>,
}

/// An `f32` as the shortest decimal that reads back as it (`0.2`, not the
/// `0.20000000298023224` of its exact value as an `f64`).
fn shortest<S: serde::Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    let decimal: f64 = value.to_string().parse().unwrap_or(f64::from(*value));
    serializer.serialize_f64(decimal)
}

/// [`shortest`], or `null`.
fn shortest_or_null<S: serde::Serializer>(
    value: &Option<f32>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => shortest(value, serializer),
        None => serializer.serialize_none(),
    }
}

// === impl EventBus ===

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    /// A bus nobody listens to yet.
    pub fn new() -> EventBus {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        EventBus {
            sender,
            next_id: 1,
            recent: VecDeque::new(),
            recent_verdicts: VecDeque::new(),
            samples: BTreeMap::new(),
            last_sample_ms: 0,
            tick_ms: 0,
        }
    }

    /// A new reader of the events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// The time of the latest control loop tick (ms).
    pub fn last_tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// How many readers are subscribed.
    pub fn readers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// The number the next event will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Sends event `name` with `data` (a JSON object, to which `at`, the
    /// wall-clock time of sending, is added) and keeps it among the recent
    /// events unless it is a sample.
    pub fn send(&mut self, name: &'static str, mut data: Value) {
        if let Some(fields) = data.as_object_mut() {
            fields.insert("at".to_owned(), Value::from(crate::process::now_ms()));
        }
        let event = Arc::new(Event::new(self.next_id, name, data));
        self.next_id += 1;
        let kept = match name {
            "samples" => None,
            "verdict" => Some(&mut self.recent_verdicts),
            _ => Some(&mut self.recent),
        };
        if let Some(kept) = kept {
            if kept.len() == RECENT_KEPT {
                kept.pop_front();
            }
            kept.push_back(Arc::clone(&event));
        }
        // No reader is no error: the event is kept among the recent ones.
        let _ = self.sender.send(event);
    }

    /// The recent events (samples aside), oldest first, as
    /// `{id, event, data}` objects.
    pub fn recent(&self) -> Vec<Value> {
        let mut kept: Vec<&Arc<Event>> = self.recent.iter().chain(&self.recent_verdicts).collect();
        kept.sort_by_key(|e| e.id);
        kept.iter()
            .map(|e| json!({ "id": e.id, "event": e.name, "data": e.data }))
            .collect()
    }

    /// The rate samples kept, by route, oldest first.
    pub fn samples(&self) -> &BTreeMap<String, VecDeque<RateSample>> {
        &self.samples
    }
}

// === impl Event ===

impl Event {
    fn new(id: u64, name: &'static str, data: Value) -> Event {
        let frame = Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"));
        Event {
            id,
            name,
            data,
            frame,
        }
    }

    /// A frame outside the numbered sequence: the per-reader `snapshot`
    /// and `lagged` events.
    pub fn unnumbered(name: &'static str, data: &Value) -> Bytes {
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    }
}

// === impl ControlState ===

impl ControlState {
    /// Announces what [`ControlState::apply`] kept for `route`: its
    /// transition, and its new judgement if it has one.
    pub(super) fn announce(
        &mut self,
        route: &str,
        transition: Option<&Transition>,
        previous: Option<&RolloutState>,
    ) {
        let now = self.events.tick_ms;
        let state = self.rollouts.get(route);
        let judgement = state.and_then(|s| s.last_judgement.as_ref());
        let judged_anew =
            judgement.is_some() && judgement != previous.and_then(|p| p.last_judgement.as_ref());
        if let (true, Some(judgement)) = (judged_anew, judgement) {
            let failures = state.map_or(0, |s| s.failures);
            let data = verdict_data(route, judgement, failures);
            self.events.send("verdict", data);
        }
        if let Some(transition) = transition {
            let status = self.status(route, now);
            let data = json!({
                "route": route,
                "kind": kind_name(transition),
                "abortReason": transition.abort_reason().map(|r| r.metric_label()),
                "from": transition.from,
                "to": transition.to,
                "fromStep": transition.from_step,
                "toStep": transition.to_step,
                "canaryWeight": transition.canary_weight.percent(),
                "message": transition.message,
                "status": status,
            });
            self.events.send("transition", data);
        }
    }

    /// Announces the transitions a reloaded config brought (kept by
    /// [`ControlState::keep_adoption`]).
    pub(super) fn announce_adopted(&mut self, transitions: &[(String, Transition)]) {
        for (route, transition) in transitions {
            self.announce(route, Some(transition), None);
        }
    }

    /// Records, once a second, every route's per-role rates over the last
    /// second from its counter history, keeps them and sends them as one
    /// `samples` event. Routes without a canary have nothing to compare
    /// and are left out.
    pub fn sample_rates(&mut self, now: u64) {
        self.events.tick_ms = now;
        if now < self.events.last_sample_ms + SAMPLE_EVERY_MS {
            return;
        }
        // From the previous sample on: the counters are sampled once a
        // second while the control state is settled, and a second back
        // from now would find no sample older than this one.
        let since = match self.events.last_sample_ms {
            0 => now.saturating_sub(SAMPLE_EVERY_MS),
            last => last.min(now.saturating_sub(SAMPLE_EVERY_MS)),
        };
        self.events.last_sample_ms = now;
        // Written as JSON only for a reader: an idle weir samples every
        // second, with nobody following.
        let send = self.events.readers() > 0;
        let mut sampled = serde_json::Map::new();
        let mut kept = BTreeMap::new();
        let mut previous = std::mem::take(&mut self.events.samples);
        for route in &self.config().routes {
            if route.canary.is_none() {
                continue;
            }
            let Some(sample) = self.history.get(&*route.name).and_then(|h| rates(h, since)) else {
                continue;
            };
            if send && let Ok(value) = serde_json::to_value(sample) {
                sampled.insert(route.name.to_string(), value);
            }
            let (name, mut ring) = previous
                .remove_entry(&*route.name)
                .unwrap_or_else(|| (route.name.to_string(), VecDeque::new()));
            if ring.len() == SAMPLES_KEPT {
                ring.pop_front();
            }
            ring.push_back(sample);
            kept.insert(name, ring);
        }
        // Routes that left the config leave with their samples.
        self.events.samples = kept;
        if send {
            self.events
                .send("samples", json!({ "routes": Value::Object(sampled) }));
        }
    }

    /// Announces a reload from `trigger` (`Api`, `Signal`, `FileChanged`):
    /// the snapshot `version` published, or the `errors` that refused it.
    /// An applied reload carries every route's status.
    pub fn announce_reload(
        &mut self,
        trigger: &str,
        version: Option<u64>,
        errors: &[String],
        now: u64,
    ) {
        let routes = match version {
            Some(_) => self.statuses(now),
            None => Vec::new(),
        };
        let data = json!({
            "trigger": snake_case(trigger),
            "applied": version.is_some(),
            "version": version,
            "errors": errors,
            "routes": routes,
        });
        self.events.send("reload", data);
    }

    /// Announces an operator command on `route` and how it ended: the
    /// HTTP status it was answered with and, when refused, why.
    pub fn announce_command(
        &mut self,
        route: &str,
        command: &str,
        status: u16,
        error: Option<&str>,
    ) {
        let data = json!({
            "route": route,
            "command": command,
            "status": status,
            "ok": (200..300).contains(&status),
            "error": error,
        });
        self.events.send("command", data);
    }

    /// What a new reader starts from, besides the route statuses: the rate
    /// samples kept, the recent events, and the number of the next event.
    pub fn events_snapshot(&self, now: u64) -> Value {
        json!({
            "at": now,
            "nextId": self.events.next_id(),
            "samples": self.events.samples(),
            "recent": self.events.recent(),
        })
    }
}

/// The figures of `history` from `since` to its latest sample, per second.
fn rates(history: &History, since: u64) -> Option<RateSample> {
    let (first, last) = history.span_ms(since)?;
    let observation = history.observation(since);
    let seconds = last.saturating_sub(first) as f64 / 1000.0;
    let role = |summary: RoleSummary| RoleRates {
        rps: if seconds > 0.0 {
            (summary.requests as f64 / seconds) as f32
        } else {
            0.0
        },
        error_rate: summary.error_rate.map(|r| r as f32),
        p99_ms: summary.latency_p99_ms.map(|p| p as f32),
    };
    Some(RateSample {
        at: last,
        stable: role(RoleSummary::of(&observation.stable)),
        canary: role(RoleSummary::of(&observation.canary)),
    })
}

/// The `verdict` event's payload.
fn verdict_data(route: &str, judgement: &Judgement, failures: u32) -> Value {
    let (verdict, reason) = match &judgement.verdict {
        Verdict::Pass { reason } => ("pass", reason),
        Verdict::Inconclusive { reason } => ("inconclusive", reason),
        Verdict::Fail { reason, .. } => ("fail", reason),
    };
    json!({
        "route": route,
        "verdict": verdict,
        "reason": reason,
        "failures": failures,
        "stable": judgement.stable,
        "canary": judgement.canary,
    })
}

/// The kind of `transition` in snake case, without its details:
/// `Aborted(Manual)` is `aborted`, `PromotedFull` is `promoted_full`.
fn kind_name(transition: &Transition) -> String {
    snake_case(&format!("{:?}", transition.kind))
}

/// A Rust name in snake case, without what follows a `(`.
fn snake_case(debug: &str) -> String {
    let bare = debug.split('(').next().unwrap_or_default();
    let mut name = String::with_capacity(bare.len() + 4);
    for (i, c) in bare.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{AbortReason, Phase, TransitionKind};
    use weir_config::Weight;

    fn transition(kind: TransitionKind) -> Transition {
        Transition {
            kind,
            from: Phase::Progressing,
            to: Phase::Aborted,
            from_step: Some(0),
            to_step: Some(0),
            canary_weight: Weight::ZERO,
            message: String::new(),
            run_errored: false,
        }
    }

    #[test]
    fn kinds_are_named_in_snake_case_without_details() {
        let cases = [
            (TransitionKind::Aborted(AbortReason::Manual), "aborted"),
            (TransitionKind::PromotedFull, "promoted_full"),
            (TransitionKind::FailureCounted, "failure_counted"),
            (TransitionKind::Advanced, "advanced"),
        ];
        for (kind, want) in cases {
            assert_eq!(kind_name(&transition(kind)), want, "{kind:?}");
        }
    }

    #[test]
    fn events_are_numbered_framed_and_the_recent_ones_kept() {
        let mut bus = EventBus::new();
        let mut reader = bus.subscribe();
        for i in 0..RECENT_KEPT + 3 {
            bus.send("command", json!({ "n": i }));
        }
        bus.send("samples", json!({ "routes": {} }));
        let first = reader.try_recv().expect("the first event");
        assert_eq!((first.id, first.name), (1, "command"));
        let frame = String::from_utf8_lossy(&first.frame).into_owned();
        assert!(
            frame.starts_with("id: 1\nevent: command\ndata: {"),
            "{frame}"
        );
        assert!(
            frame.ends_with("}\n\n") && frame.contains("\"at\":"),
            "{frame}"
        );
        let recent = bus.recent();
        assert_eq!(recent.len(), RECENT_KEPT, "samples are not kept");
        assert_eq!(recent[0]["data"]["n"], 3, "the oldest ones went first");
        assert_eq!(bus.next_id(), (RECENT_KEPT + 5) as u64);
    }

    /// The verdicts active routes make every second are kept apart: they
    /// never push a transition or a command out of the recent events.
    #[test]
    fn verdicts_never_push_other_events_out() {
        let mut bus = EventBus::new();
        bus.send("transition", json!({ "n": "aborted" }));
        for i in 0..3 * RECENT_KEPT {
            bus.send("verdict", json!({ "n": i }));
        }
        bus.send("command", json!({ "n": "retry" }));
        let recent = bus.recent();
        assert_eq!(recent.len(), RECENT_KEPT + 2);
        assert_eq!(recent[0]["event"], "transition", "kept, and first by id");
        assert_eq!(recent[RECENT_KEPT + 1]["event"], "command");
        let ids: Vec<u64> = recent.iter().filter_map(|e| e["id"].as_u64()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order: {ids:?}");
        assert_eq!(
            recent[1]["data"]["n"],
            2 * RECENT_KEPT,
            "the newest verdicts"
        );
    }

    #[tokio::test]
    async fn the_control_loop_sends_each_routes_rates_once_a_second() {
        use crate::controller::transitions;
        use weir_proxy::Role;
        use weir_proxy::metrics::{LATENCY_SLOTS, RoleCounts};

        let text = crate::fixtures::config_text(
            None,
            &crate::fixtures::route("web", Some("[{pause: {}}]")),
        );
        let in_memory = crate::fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let process = &in_memory.process;
        let mut reader = process.control.lock().await.events.subscribe();
        // 10 stable and 5 canary requests per 100 ms tick, 1 canary error.
        for tick in 0..=12u64 {
            let sample = move |_: &str, role: Role| RoleCounts {
                requests: tick * if role == Role::Stable { 10 } else { 5 },
                errors: if role == Role::Canary { tick } else { 0 },
                latency: [0; LATENCY_SLOTS],
            };
            transitions::tick(process, sample).await;
            in_memory
                .clock
                .advance(std::time::Duration::from_millis(100));
        }
        let samples: Vec<Arc<Event>> = std::iter::from_fn(|| reader.try_recv().ok())
            .filter(|e| e.name == "samples")
            .collect();
        assert_eq!(samples.len(), 2, "one at the start, one a second later");
        let web = &samples[1].data["routes"]["web"];
        assert_eq!(web["stable"]["rps"], 100.0, "{web}");
        assert_eq!(web["canary"]["rps"], 50.0, "{web}");
        assert_eq!(web["canary"]["errorRate"], 0.2, "{web}");
        assert_eq!(web["stable"]["errorRate"], 0.0, "{web}");
        let kept = process.control.lock().await.events.samples()["web"].len();
        assert_eq!(kept, 2, "and kept for a page that opens");
    }

    #[tokio::test]
    async fn rates_sampled_a_second_apart_are_kept_whole() {
        use crate::controller::transitions;
        use weir_proxy::Role;
        use weir_proxy::metrics::{LATENCY_SLOTS, RoleCounts};

        // A settled fixed split: the loop samples about once a second,
        // each sample a little more than a second after the last.
        let text = crate::fixtures::config_text(None, &crate::fixtures::route("web", None));
        let in_memory = crate::fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let process = &in_memory.process;
        for second in 0..=3u64 {
            let sample = move |_: &str, role: Role| RoleCounts {
                requests: second * if role == Role::Stable { 900 } else { 100 },
                errors: 0,
                latency: [0; LATENCY_SLOTS],
            };
            transitions::tick(process, sample).await;
            in_memory
                .clock
                .advance(std::time::Duration::from_millis(1_005));
        }
        let control = process.control.lock().await;
        let kept: Vec<&RateSample> = control.events.samples()["web"].iter().collect();
        assert_eq!(kept.len(), 4, "{kept:?}");
        for sample in &kept[1..] {
            let stable = f64::from(sample.stable.rps);
            assert!((stable - 900.0 / 1.005).abs() < 0.01, "{kept:?}");
            let canary = f64::from(sample.canary.rps);
            assert!((canary - 100.0 / 1.005).abs() < 0.01, "{kept:?}");
        }
    }

    #[tokio::test]
    async fn what_happened_while_nobody_listened_is_among_the_recent_events() {
        use crate::controller::transitions;
        use crate::rollout::Command;

        let text = crate::fixtures::config_text(
            None,
            &crate::fixtures::route("web", Some("[{setWeight: 10}, {pause: {}}]")),
        );
        let in_memory = crate::fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
        let process = &in_memory.process;
        assert_eq!(process.control.lock().await.events.readers(), 0);
        transitions::command(process, "web", Command::Abort)
            .await
            .expect("an abort applies to a running rollout");
        let control = process.control.lock().await;
        let recent = control.events.recent();
        assert!(
            recent.iter().any(|e| e["event"] == "transition"
                && e["data"]["route"] == "web"
                && e["data"]["kind"] == "aborted"),
            "{recent:?}"
        );
        let snapshot = control.events_snapshot(0);
        assert!(
            snapshot["recent"].as_array().is_some_and(|r| !r.is_empty()),
            "{snapshot}"
        );
    }

    #[test]
    fn a_reader_that_falls_behind_is_told_it_lagged() {
        let mut bus = EventBus::new();
        let mut reader = bus.subscribe();
        for _ in 0..EVENT_BUFFER + 10 {
            bus.send("command", json!({}));
        }
        assert!(matches!(
            reader.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(10))
        ));
    }
}
