//! Measurements of the notification queue: delivery latency to a live
//! receiver, and the memory of a full queue (10,000 notifications) held
//! for a receiver that is down. Printed with `--nocapture`; the figures
//! are for a debug build.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::Registry;
use tokio::time::Instant;
use weir_config::{Notification, Trigger};
use weir_control::notifications::{Notifier, QUEUE_CAPACITY};
use weir_control::webhooks::HookClient;
use weir_e2e::{ClosedPort, HookReceiver, wait_until};

fn notification(name: &str, url: String, retry_max: u32) -> Notification {
    Notification {
        name: Arc::from(name),
        url: Arc::from(url),
        headers: Vec::new(),
        triggers: vec![Trigger::RolloutAborted],
        routes: Vec::new(),
        timeout: Duration::from_secs(5),
        retry_max,
    }
}

/// A body the size of a real one (about 600 bytes).
fn body(n: usize) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "name": "checkout", "namespace": "default", "phase": "Failed",
            "checksum": "5f0c3e1d2b4a6978", "metadata": {},
            "weir": {
                "event": "on-rollout-aborted", "route": "checkout", "phase": "Aborted",
                "stableRevision": "v1", "canaryRevision": format!("v{n}"), "step": 2,
                "weight": 0.0,
                "message": "aborted (analysis_error_rate): analysis: canary error rate 31.0% \
                            (93 of 300) is above 5% with 99% confidence; weight 0; retry starts \
                            the steps again",
                "timestamp": "2026-12-03T12:00:00.000Z"
            }
        })
        .to_string(),
    )
}

fn metric(registry: &Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_reach_a_live_receiver_one_by_one() {
    let receiver = HookReceiver::start().await;
    let registry = Registry::new();
    let notifier = Notifier::new(&registry, HookClient::new()).expect("registry");
    let receivers = [notification("chat", receiver.url("n"), 3)];
    notifier.sync(&receivers);
    const N: usize = 200;
    let mut latencies = Vec::with_capacity(N);
    for n in 0..N {
        let sent = Instant::now();
        notifier.enqueue(&receivers, Trigger::RolloutAborted, "checkout", &body(n));
        let got = receiver.wait_for("n", n + 1, Duration::from_secs(10)).await;
        latencies.push(got[n].at.duration_since(sent));
    }
    wait_until(Duration::from_secs(10), "200 sent", || async {
        (metric(&registry, "weir_notifications_sent_total") == N as f64).then_some(())
    })
    .await;
    latencies.sort();
    eprintln!(
        "notification delivery latency over {N}: p50 {:?}, p99 {:?}, max {:?}",
        latencies[N / 2],
        latencies[N * 99 / 100],
        latencies[N - 1]
    );
    assert_eq!(metric(&registry, "weir_notifications_failed_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_given_up_counts_as_failed_and_dropped() {
    let dead = ClosedPort::bind();
    let registry = Registry::new();
    let notifier = Notifier::new(&registry, HookClient::new()).expect("registry");
    let receivers = [notification("gone", format!("http://{}/", dead.addr), 0)];
    notifier.sync(&receivers);
    notifier.enqueue(&receivers, Trigger::RolloutAborted, "checkout", &body(0));
    wait_until(
        Duration::from_secs(10),
        "the notification given up",
        || async { (metric(&registry, "weir_notifications_failed_total") == 1.0).then_some(()) },
    )
    .await;
    // Never delivered: SPEC counts it among the dropped.
    assert_eq!(metric(&registry, "weir_notifications_dropped_total"), 1.0);
    assert_eq!(metric(&registry, "weir_notifications_sent_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_costs_one_full_queue() {
    let dead = ClosedPort::bind();
    let registry = Registry::new();
    let notifier = Notifier::new(&registry, HookClient::new()).expect("registry");
    let receivers = [notification("gone", format!("http://{}/", dead.addr), 20)];
    notifier.sync(&receivers);
    let before = rss_kib();
    let pushed = QUEUE_CAPACITY + 1_000;
    let started = Instant::now();
    for n in 0..pushed {
        notifier.enqueue(&receivers, Trigger::RolloutAborted, "checkout", &body(n));
    }
    let took = started.elapsed();
    let after = rss_kib();
    let queued = notifier.queued("gone").expect("the receiver");
    let dropped = metric(&registry, "weir_notifications_dropped_total");
    eprintln!(
        "{pushed} notifications for a dead receiver enqueued in {took:?}: {queued} queued, \
         {dropped} dropped; RSS {before} KiB -> {after} KiB (+{} KiB, debug build)",
        after.saturating_sub(before)
    );
    // Full, less one if the delivery task gave up on one and took the next
    // since the last push.
    assert!(
        (QUEUE_CAPACITY - 1..=QUEUE_CAPACITY).contains(&queued),
        "{queued} queued, capacity {QUEUE_CAPACITY}"
    );
    // One is with the delivery task, retrying.
    assert!(dropped >= (pushed - QUEUE_CAPACITY - 1) as f64, "{dropped}");
    assert_eq!(metric(&registry, "weir_notifications_sent_total"), 0.0);
}
