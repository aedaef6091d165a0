use std::sync::Arc;
use std::time::Duration;

use weir_config::Weight;

use super::*;
use crate::rollout::AbortReason;

fn transition(
    kind: TransitionKind,
    from: Phase,
    to: Phase,
    steps: (Option<usize>, Option<usize>),
) -> Transition {
    Transition {
        kind,
        from,
        to,
        from_step: steps.0,
        to_step: steps.1,
        canary_weight: Weight::ZERO,
        message: String::new(),
        run_errored: false,
    }
}

#[test]
fn each_transition_fires_its_triggers() {
    use Phase::*;
    use Trigger::*;
    let at = |a: usize, b: usize| (Some(a), Some(b));
    let cases: Vec<(Transition, Vec<Trigger>)> = vec![
        (
            transition(
                TransitionKind::Started,
                Healthy,
                Progressing,
                (None, Some(0)),
            ),
            vec![RolloutUpdated, AnalysisRunRunning],
        ),
        (
            transition(TransitionKind::Retried, Aborted, Progressing, at(1, 0)),
            vec![RolloutUpdated, AnalysisRunRunning],
        ),
        (
            transition(TransitionKind::Advanced, Progressing, Progressing, at(0, 1)),
            vec![RolloutStepCompleted],
        ),
        (
            transition(TransitionKind::Advanced, Progressing, Paused, at(0, 1)),
            vec![RolloutStepCompleted, RolloutPaused],
        ),
        (
            transition(TransitionKind::Completed, Progressing, Promoted, at(2, 3)),
            vec![RolloutCompleted],
        ),
        (
            transition(TransitionKind::PromotedFull, Paused, Promoted, at(1, 3)),
            vec![RolloutCompleted],
        ),
        (
            transition(TransitionKind::Promoted, Paused, Promoted, at(2, 3)),
            vec![RolloutStepCompleted, RolloutCompleted],
        ),
        (
            transition(
                TransitionKind::Aborted(AbortReason::AnalysisErrorRate),
                Progressing,
                Aborted,
                at(0, 0),
            ),
            vec![RolloutAborted, AnalysisRunFailed],
        ),
        (
            transition(
                TransitionKind::Aborted(AbortReason::Manual),
                Paused,
                Aborted,
                at(1, 1),
            ),
            vec![RolloutAborted],
        ),
        (
            transition(
                TransitionKind::Aborted(AbortReason::Webhook),
                Paused,
                Aborted,
                (None, None),
            ),
            vec![RolloutAborted],
        ),
        (
            transition(
                TransitionKind::FailureCounted,
                Progressing,
                Progressing,
                at(0, 0),
            ),
            vec![AnalysisRunFailed],
        ),
        (
            transition(
                TransitionKind::WebhookFailureCounted,
                Paused,
                Paused,
                (None, None),
            ),
            vec![AnalysisRunError],
        ),
        (
            transition(TransitionKind::Held, Progressing, Paused, at(0, 0)),
            vec![RolloutPaused],
        ),
        (
            transition(TransitionKind::Released, Paused, Paused, at(1, 1)),
            vec![],
        ),
        (
            transition(
                TransitionKind::GatePassed,
                Paused,
                Progressing,
                (None, Some(0)),
            ),
            vec![],
        ),
        (
            transition(TransitionKind::CaughtUp, Promoted, Healthy, (Some(3), None)),
            vec![],
        ),
        (
            transition(TransitionKind::Ended, Progressing, Healthy, (Some(0), None)),
            vec![],
        ),
        // Blue-green: a failed pre- or post-promotion analysis.
        (
            transition(
                TransitionKind::Aborted(AbortReason::PrePromotionAnalysis),
                Progressing,
                Aborted,
                at(1, 1),
            ),
            vec![RolloutAborted, AnalysisRunFailed],
        ),
        (
            transition(
                TransitionKind::Aborted(AbortReason::PostPromotionAnalysis),
                Progressing,
                Aborted,
                at(3, 3),
            ),
            vec![RolloutAborted, AnalysisRunFailed],
        ),
        // A template run that ended Error, not Failed.
        (
            Transition {
                run_errored: true,
                ..transition(
                    TransitionKind::Aborted(AbortReason::AnalysisRun),
                    Progressing,
                    Aborted,
                    at(1, 1),
                )
            },
            vec![RolloutAborted, AnalysisRunError],
        ),
    ];
    for (t, want) in cases {
        assert_eq!(
            triggers_of(&t),
            want,
            "{:?} {:?}→{:?}",
            t.kind,
            t.from,
            t.to
        );
    }
}

fn receiver(name: &str) -> Notification {
    Notification {
        name: Arc::from(name),
        url: Arc::from("http://127.0.0.1:9/"),
        headers: Vec::new(),
        triggers: vec![Trigger::RolloutAborted],
        routes: vec!["checkout".to_owned()],
        timeout: Duration::from_secs(1),
        retry_max: 0,
    }
}

fn counter(registry: &Registry, name: &str, receiver: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.value() == receiver))
        .map(|m| {
            if m.get_counter().get_value() != 0.0 {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        })
        .sum()
}

/// Outside a runtime no task delivers: the queue only fills.
#[test]
fn a_full_queue_drops_the_oldest_and_counts_it() {
    let registry = Registry::new();
    let notifier = Notifier::new(&registry, HookClient::new()).expect("registry");
    let receivers = [receiver("slack"), receiver("other")];
    notifier.sync(&receivers);
    for n in 0..QUEUE_CAPACITY + 5 {
        let body = Bytes::from(n.to_string());
        notifier.enqueue(&receivers, Trigger::RolloutAborted, "checkout", &body);
    }
    // Not wanted: another trigger, another route.
    notifier.enqueue(
        &receivers,
        Trigger::RolloutCompleted,
        "checkout",
        &Bytes::new(),
    );
    notifier.enqueue(&receivers, Trigger::RolloutAborted, "cart", &Bytes::new());
    assert_eq!(notifier.queued("slack"), Some(QUEUE_CAPACITY));
    assert_eq!(
        counter(&registry, "weir_notifications_dropped_total", "slack"),
        5.0
    );
    assert_eq!(
        counter(&registry, "weir_notifications_queued", "slack"),
        QUEUE_CAPACITY as f64
    );
    let receivers = notifier.receivers.lock().expect("lock");
    let queue = receivers["slack"].queue.lock().expect("lock");
    assert_eq!(queue.front().map(|b| b.to_vec()), Some(b"5".to_vec()));
}

#[test]
fn backoffs_grow_and_are_capped() {
    let delays: Vec<u64> = (0..9)
        .map(|n| u64::try_from(notification_backoff(n).as_millis()).expect("small"))
        .collect();
    assert_eq!(
        delays,
        [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
    let hook: Vec<u64> = (0..6)
        .map(|n| u64::try_from(crate::webhooks::webhook_backoff(n).as_millis()).expect("small"))
        .collect();
    assert_eq!(hook, [200, 400, 800, 1600, 2000, 2000]);
}

/// What is not delivered when weir stops is written to stateDir and queued
/// again, oldest first and ahead of newer ones, by the next start; a
/// receiver gone from the config has its notifications dropped.
#[test]
fn undelivered_notifications_wait_in_the_state_dir_for_the_next_start() {
    let dir = std::env::temp_dir().join(format!("weir-pending-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let receivers = [receiver("slack"), receiver("gone")];
    let registry = Registry::new();
    let before = Notifier::new(&registry, HookClient::new()).expect("registry");
    before.sync(&receivers);
    for n in 0..3 {
        let body = Bytes::from(format!("{{\"n\":{n}}}"));
        before.enqueue(&receivers, Trigger::RolloutAborted, "checkout", &body);
    }
    // The first is being sent when weir stops: it is kept too.
    let first = before.receivers.lock().expect("lock")["slack"].pop();
    assert!(first.is_some(), "queued");
    assert_eq!(before.save_pending(&dir).expect("saved"), 6);

    let registry = Registry::new();
    let after = Notifier::new(&registry, HookClient::new()).expect("registry");
    after.sync(&receivers[..1]);
    after.enqueue(
        &receivers[..1],
        Trigger::RolloutAborted,
        "checkout",
        &Bytes::from("new"),
    );
    assert_eq!(after.restore_pending(&dir).expect("restored"), 3);
    // The receiver gone from the config: its notifications are dropped,
    // and counted.
    assert_eq!(
        counter(&registry, "weir_notifications_dropped_total", "gone"),
        3.0
    );
    let receivers = after.receivers.lock().expect("lock");
    let queue = receivers["slack"].queue.lock().expect("lock");
    let bodies: Vec<String> = queue
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(bodies, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "new"]);
    assert!(
        dir.join(".notifications.json").exists(),
        "the file stays until the journal writes what is pending now"
    );
    // Nothing pending: no file is left behind.
    let empty = Notifier::new(&Registry::new(), HookClient::new()).expect("registry");
    assert_eq!(empty.save_pending(&dir).expect("saved"), 0);
    assert!(!dir.join(".notifications.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pending file that cannot be parsed is moved aside, not left for the
/// journal's first write to replace, and the error names where it went.
#[test]
fn an_unreadable_pending_file_is_kept_aside() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(".notifications.json");
    std::fs::write(&path, "{not json").expect("written");
    let notifier = Notifier::new(&Registry::new(), HookClient::new()).expect("registry");
    let error = notifier
        .restore_pending(dir.path())
        .expect_err("an unparsable file");
    assert!(
        error.contains("cannot parse") && error.contains(".notifications.json.bad"),
        "{error}"
    );
    assert!(!path.exists(), "moved away from the journal's path");
    let kept = std::fs::read_to_string(dir.path().join(".notifications.json.bad")).expect("kept");
    assert_eq!(kept, "{not json");
}
