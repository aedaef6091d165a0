//! Webhooks and notifications (SPEC 14) against a recording receiver: each
//! gate's effect on a running rollout, the body Flagger's tools read,
//! retries and timeouts, and notifications delivered at least once.

use std::time::Duration;

use tokio::time::Instant;
use weir_e2e::{
    Answer, ClosedPort, FakeUpstream, HookReceiver, Route, Step, Strategy, Weir, WeirConfig,
    canary_weight, phase, promtool_check, send_many, step_index, wait_until, within,
};

const LIMIT: Duration = Duration::from_secs(20);

/// The metrics once `weir_notifications_sent_total{receiver="chat"}` is 1.
async fn one_notification_sent_to_chat(weir: &Weir) -> weir_e2e::Metrics {
    wait_until(
        LIMIT,
        "weir_notifications_sent_total{receiver=chat} 1",
        || async {
            let m = weir.metrics().await;
            (m.sum("weir_notifications_sent_total", &[("receiver", "chat")]) == 1.0).then_some(m)
        },
    )
    .await
}

/// Steps moved by time and commands alone (no `analysis` block); gates
/// are asked again every second (the default interval).
fn strategy(steps: impl IntoIterator<Item = Step>) -> Strategy {
    Strategy::new(steps)
}

fn hook<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["webhooks"]
        .as_array()
        .and_then(|hooks| hooks.iter().find(|h| h["name"] == name))
        .unwrap_or_else(|| panic!("no webhook {name} in {status:#}"))
}

async fn canary_requests(weir: &Weir, n: u64) {
    within(
        Duration::from_secs(20),
        "requests through weir",
        send_many(weir.addrs.http, "/", &[], n, 4),
    )
    .await
    .expect("requests through weir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_rollout_holds_at_weight_zero_until_it_answers_2xx_with_flaggers_body() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    receiver.answer("confirm", Answer::Status(403));
    let strategy = strategy([Step::SetWeight(50.0), Step::Pause(None)]).webhook(
        "start-gate",
        "confirm-rollout",
        &receiver.url("confirm"),
        "metadata: { team: shop }",
    );
    let weir = Weir::start(WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )]))
    .await;

    // Asked again and again while it says no; the rollout waits at 0 %.
    let asked = receiver.wait_for("confirm", 3, LIMIT).await;
    let s = weir
        .wait_status("web", LIMIT, "the gate's answer in the status", |s| {
            s["webhooks"][0]["lastResult"] == "fail"
        })
        .await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    // A rollout exists, waiting before its first step: 0, not null.
    assert_eq!(step_index(&s), Some(0), "{s:#}");
    let message = s["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("waiting for the confirm-rollout webhook before step 1/2"),
        "{s:#}"
    );
    let gate = hook(&s, "start-gate");
    assert_eq!(gate["type"], "confirm-rollout", "{s:#}");
    assert_eq!(gate["waiting"], true, "{s:#}");
    assert_eq!(gate["statusCode"], 403, "{s:#}");
    assert!(
        gate["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("HTTP 403"),
        "{s:#}"
    );
    canary_requests(&weir, 50).await;
    assert_eq!(
        canary.hits(),
        0,
        "no request reaches the canary while it waits"
    );

    // Flagger's payload, and weir's.
    let first = &asked[0];
    assert_eq!(first.headers["content-type"], "application/json");
    let body = &first.json;
    assert_eq!(body["name"], "web", "{body:#}");
    assert_eq!(body["namespace"], "default", "{body:#}");
    assert_eq!(body["phase"], "Waiting", "{body:#}");
    assert!(
        body["checksum"]
            .as_str()
            .is_some_and(|c| c.len() == 16 && c.chars().all(|ch| ch.is_ascii_hexdigit())),
        "{body:#}"
    );
    assert_eq!(
        body["metadata"],
        serde_json::json!({"team": "shop"}),
        "{body:#}"
    );
    let w = &body["weir"];
    assert_eq!(w["hook"], "start-gate", "{body:#}");
    assert_eq!(w["type"], "confirm-rollout", "{body:#}");
    assert_eq!(w["route"], "web", "{body:#}");
    assert_eq!(w["stableRevision"], "v1", "{body:#}");
    assert_eq!(w["canaryRevision"], "v2", "{body:#}");
    // A rollout exists, waiting before its first step: step 0, not null.
    assert_eq!(w["step"], 0, "{body:#}");
    assert_eq!(w["weight"], 0.0, "{body:#}");
    assert_eq!(w["phase"], "Paused", "{body:#}");
    assert!(
        w["message"]
            .as_str()
            .is_some_and(|m| m.contains("confirm-rollout")),
        "{body:#}"
    );
    assert!(
        w["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body:#}"
    );

    // A yes releases it.
    receiver.answer("confirm", Answer::Status(200));
    let s = weir
        .wait_status("web", LIMIT, "step 2 after the gate passed", |s| {
            step_index(s) == Some(1)
        })
        .await;
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
    assert_eq!(hook(&s, "start-gate")["waiting"], false, "{s:#}");
    canary_requests(&weir, 100).await;
    assert!(canary.hits() > 0, "the canary gets traffic once confirmed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_rollout_aborts_before_any_canary_request_and_notifies_at_least_once() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    receiver.answer("test", Answer::Status(500));
    // The first delivery fails; the retry is answered.
    receiver.answer(
        "notify",
        Answer::Sequence(vec![Answer::Status(503), Answer::Status(200)]),
    );
    let strategy = strategy([Step::SetWeight(50.0), Step::Pause(None)])
        .webhook(
            "acceptance",
            "pre-rollout",
            &receiver.url("test"),
            "retries: 1, timeout: 2s",
        )
        .webhook("cleanup", "post-rollout", &receiver.url("post"), "")
        .threshold(1);
    let config = WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )])
    .extra(&format!(
        "notifications:\n  - name: chat\n    url: {}\n    headers: {{ X-Token: secret }}\n    triggers: [on-rollout-aborted, on-rollout-completed]\n    routes: [web]\n    retryMax: 3\n",
        receiver.url("notify")
    ));
    let started = Instant::now();
    let weir = Weir::start(config).await;
    let load = tokio::spawn({
        let addr = weir.addrs.http;
        async move { send_many(addr, "/", &[], 200, 2).await }
    });

    let s = weir
        .wait_status("web", LIMIT, "Aborted by the pre-rollout hook", |s| {
            phase(s) == "Aborted"
        })
        .await;
    eprintln!(
        "from start to the pre-rollout abort: {:?}",
        started.elapsed()
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap_or("")
            .contains("aborted (webhook)"),
        "{s:#}"
    );
    let gate = hook(&s, "acceptance");
    assert_eq!(gate["lastResult"], "fail", "{s:#}");
    assert_eq!(gate["attempts"], 2, "one retry per check: {s:#}");
    // threshold 1: the second failed check aborts; each check tried twice.
    assert_eq!(receiver.count("test"), 4);
    // A retry is the same call (its id); the second check is another.
    let calls = receiver.wait_for("test", 4, LIMIT).await;
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c.json["weir"]["id"].as_str().unwrap_or_default())
        .collect();
    assert!(
        ids[0].len() == 36 && ids[0] == ids[1] && ids[2] == ids[3] && ids[1] != ids[2],
        "{ids:?}"
    );
    let _ = within(LIMIT, "the load", load).await;
    assert_eq!(canary.hits(), 0, "no request reached the canary");
    let m = weir.metrics().await;
    assert_eq!(
        m.sum(
            "weir_rollout_aborts_total",
            &[("route", "web"), ("reason", "webhook")]
        ),
        1.0,
        "{}",
        m.text
    );

    // post-rollout after the abort; the notification delivered after a retry.
    let post = receiver.wait_for("post", 1, LIMIT).await;
    assert_eq!(post[0].json["phase"], "Failed", "{:#}", post[0].json);
    assert_eq!(post[0].json["weir"]["type"], "post-rollout");
    let notified = receiver.wait_for("notify", 2, LIMIT).await;
    for n in &notified {
        assert_eq!(
            n.json["weir"]["event"], "on-rollout-aborted",
            "{:#}",
            n.json
        );
        assert_eq!(n.headers["x-token"], "secret");
        assert_eq!(n.json["name"], "web");
    }
    // The retry is the same notification: a receiver can drop it by id.
    let id = notified[0].json["weir"]["id"].as_str().unwrap_or_default();
    assert_eq!(id.len(), 36, "{:#}", notified[0].json);
    assert_eq!(notified[1].json["weir"]["id"], id, "{:#}", notified[1].json);
    let m = one_notification_sent_to_chat(&weir).await;
    assert_eq!(
        m.sum("weir_notifications_failed_total", &[("receiver", "chat")]),
        0.0
    );
    assert_eq!(
        m.sum("weir_notifications_dropped_total", &[("receiver", "chat")]),
        0.0
    );
    promtool_check(&m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_traffic_increase_holds_the_weight_and_a_rollback_hook_aborts() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    // Yes to the first increase (0 → 20), no to the next (20 → 60).
    receiver.answer(
        "more",
        Answer::Sequence(vec![Answer::Status(200), Answer::Status(409)]),
    );
    receiver.answer("rollback", Answer::Status(404));
    let strategy = strategy([
        Step::SetWeight(20.0),
        Step::SetWeight(60.0),
        Step::Pause(None),
    ])
    .webhook(
        "traffic",
        "confirm-traffic-increase",
        &receiver.url("more"),
        "",
    )
    .webhook("stop", "rollback", &receiver.url("rollback"), "");
    let mut weir = Weir::start(WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )]))
    .await;

    receiver.wait_for("more", 3, LIMIT).await;
    let s = weir.status("web").await;
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(canary_weight(&s), 20.0, "held at the weight it had: {s:#}");
    assert_eq!(step_index(&s), Some(0), "{s:#}");
    assert_eq!(hook(&s, "traffic")["waiting"], true, "{s:#}");
    assert!(
        receiver.count("rollback") > 0,
        "rollback is polled meanwhile"
    );

    receiver.answer("rollback", Answer::Status(200));
    let s = weir
        .wait_status("web", LIMIT, "Aborted by the rollback hook", |s| {
            phase(s) == "Aborted"
        })
        .await;
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    let m = weir.metrics().await;
    assert_eq!(
        m.sum(
            "weir_rollout_aborts_total",
            &[("route", "web"), ("reason", "webhook_rollback")]
        ),
        1.0,
        "{}",
        m.text
    );
    assert!(
        m.sum(
            "weir_webhook_calls_total",
            &[("route", "web"), ("hook", "traffic"), ("result", "fail")]
        ) >= 1.0,
        "{}",
        m.text
    );

    // The route goes from the config: its hooks' series go with it.
    weir.reload(&WeirConfig::new([Route::new("other", &[stable.addr])]))
        .await;
    wait_until(
        LIMIT,
        "no weir_webhook_calls_total of route web",
        || async {
            let m = weir.metrics().await;
            (!m.text.contains("weir_webhook_calls_total{")).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_dead_receivers_never_hold_a_rollout_back() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    receiver.answer("hang", Answer::Hang);
    receiver.answer("reset", Answer::Reset);
    // A port nothing listens on.
    let dead = ClosedPort::bind();
    let strategy = strategy([
        Step::SetWeight(50.0),
        Step::Pause(Some("300ms".to_owned())),
        Step::SetWeight(100.0),
    ])
    .webhook(
        "slow-events",
        "event",
        &receiver.url("hang"),
        "timeout: 30s",
    )
    .webhook(
        "broken-events",
        "event",
        &receiver.url("reset"),
        "retries: 2",
    )
    .webhook("done", "post-rollout", &receiver.url("post"), "");
    let config = WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )])
    .extra(&format!(
        "notifications:\n  - name: gone\n    url: http://{}/\n    triggers: [on-rollout-step-completed, on-rollout-paused, on-rollout-completed]\n    timeout: 30s\n    retryMax: 20\n  - name: chat\n    url: {}\n    triggers: [on-rollout-updated, on-rollout-completed]\n",
        dead.addr,
        receiver.url("notify")
    ));
    let weir = Weir::start(config).await;
    let s = weir
        .wait_status("web", LIMIT, "Promoted", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(canary_weight(&s), 100.0, "{s:#}");
    let post = receiver.wait_for("post", 1, LIMIT).await;
    assert_eq!(post[0].json["phase"], "Succeeded");
    // The start (made while weir started) and the promotion, in order.
    let notified = receiver.wait_for("notify", 2, LIMIT).await;
    let events: Vec<&str> = notified
        .iter()
        .filter_map(|n| n.json["weir"]["event"].as_str())
        .collect();
    assert_eq!(events, ["on-rollout-updated", "on-rollout-completed"]);
    // Each event hook was called once per transition, the reset one with
    // its retries; the hanging one is still waiting for an answer.
    let s = weir
        .wait_status("web", LIMIT, "the reset hook's last call", |s| {
            hook(s, "broken-events")["attempts"] == 3
        })
        .await;
    let broken = hook(&s, "broken-events");
    assert_eq!(broken["lastResult"], "error", "{s:#}");
    assert!(
        broken["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("request failed"),
        "{s:#}"
    );
    assert!(receiver.count("hang") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_never_answers_times_out_and_says_so() {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    receiver.answer("hang", Answer::Hang);
    let strategy = strategy([Step::SetWeight(50.0), Step::Pause(None)]).webhook(
        "gate",
        "confirm-rollout",
        &receiver.url("hang"),
        "timeout: 300ms",
    );
    let weir = Weir::start(WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy,
    )]))
    .await;
    let s = weir
        .wait_status("web", LIMIT, "the timed-out call in the status", |s| {
            s["webhooks"][0]["lastResult"] == "error"
        })
        .await;
    let gate = hook(&s, "gate");
    assert_eq!(gate["message"], "no answer within 300ms", "{s:#}");
    assert_eq!(gate["statusCode"], serde_json::Value::Null, "{s:#}");
    assert_eq!(phase(&s), "Paused", "{s:#}");
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    // Asked again after the timeout: the calls do not pile up.
    receiver.wait_for("hang", 2, LIMIT).await;
    // The operator can go past it.
    let answer = weir.command("web", "promote", None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let s = weir.status("web").await;
    assert_eq!(step_index(&s), Some(0), "{s:#}");
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
}

/// weir with a rollout route (its upstreams returned to be kept) and a
/// notification receiver `chat` that answers 500, started and asked once.
async fn weir_with_failing_chat() -> (Weir, HookReceiver, [FakeUpstream; 2]) {
    let stable = FakeUpstream::start("stable").await;
    let canary = FakeUpstream::start("canary").await;
    let receiver = HookReceiver::start().await;
    receiver.answer("notify", Answer::Status(500));
    let config = WeirConfig::new([Route::rollout(
        "web",
        &[stable.addr],
        &[canary.addr],
        strategy([Step::SetWeight(50.0), Step::Pause(None)]),
    )])
    .extra(&format!(
        "notifications:\n  - name: chat\n    url: {}\n    triggers: [on-rollout-updated]\n    retryMax: 20\n",
        receiver.url("notify")
    ));
    let weir = Weir::start(config).await;
    let tried = receiver.wait_for("notify", 1, LIMIT).await;
    assert_eq!(
        tried[0].json["weir"]["event"], "on-rollout-updated",
        "{:#}",
        tried[0].json
    );
    (weir, receiver, [stable, canary])
}

/// A notification not delivered when weir stops (its receiver failing) is
/// kept in stateDir and delivered after the restart: at least once across
/// a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_undelivered_at_a_stop_is_delivered_after_the_restart() {
    let (mut weir, receiver, _upstreams) = weir_with_failing_chat().await;
    weir.sigterm();
    let stopped = weir.wait_exit(LIMIT).await;
    assert!(stopped.success(), "a clean stop: {stopped}");
    let kept = std::fs::read_to_string(weir.dir().join("state").join(".notifications.json"))
        .expect("the undelivered notification is kept");
    assert!(kept.contains("on-rollout-updated"), "{kept}");

    receiver.answer("notify", Answer::Status(200));
    let before = receiver.count("notify");
    within(LIMIT, "the restart", weir.restart()).await;
    let delivered = receiver.wait_for("notify", before + 1, LIMIT).await;
    let last = &delivered[before];
    assert_eq!(
        last.json["weir"]["event"], "on-rollout-updated",
        "{:#}",
        last.json
    );
    assert!(
        delivered[0].json["weir"]["id"].is_string(),
        "{:#}",
        delivered[0].json
    );
    assert_eq!(
        last.json["weir"]["id"], delivered[0].json["weir"]["id"],
        "the notification tried before the stop, by its id"
    );
    let m = one_notification_sent_to_chat(&weir).await;
    assert_eq!(
        m.sum("weir_notifications_dropped_total", &[("receiver", "chat")]),
        0.0
    );
    let kept = weir.dir().join("state").join(".notifications.json");
    wait_until(
        LIMIT,
        "the file removed once nothing is pending",
        || async { (!kept.exists()).then_some(()) },
    )
    .await;
}

/// A notification not delivered when weir is killed (`kill -9`, no drain)
/// was kept in stateDir as it was queued, and is delivered after the
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_undelivered_at_a_crash_is_delivered_after_the_restart() {
    let (mut weir, receiver, _upstreams) = weir_with_failing_chat().await;
    let kept = weir.dir().join("state").join(".notifications.json");
    wait_until(LIMIT, "the undelivered notification kept", || async {
        std::fs::read_to_string(&kept)
            .ok()
            .filter(|text| text.contains("on-rollout-updated"))
    })
    .await;
    weir.kill9();

    receiver.answer("notify", Answer::Status(200));
    let before = receiver.count("notify");
    within(LIMIT, "the restart", weir.restart()).await;
    let delivered = receiver.wait_for("notify", before + 1, LIMIT).await;
    assert_eq!(
        delivered[before].json["weir"]["event"], "on-rollout-updated",
        "{:#}",
        delivered[before].json
    );
    one_notification_sent_to_chat(&weir).await;
}
