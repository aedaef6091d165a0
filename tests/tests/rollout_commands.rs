//! Operator commands on the admin API: `promote` and `promote --full`,
//! `abort` (weight 0 at once), `retry`, `pause`/`resume`, promote-all; 409
//! for a command that does not apply, 404 for an unknown route; a config
//! with yet another canary while Promoted-and-behind is refused.

use std::time::Duration;

use weir_e2e::{
    FakeUpstream, RELOAD_LIMIT, Response, Route, Step, Strategy, Weir, WeirConfig, canary_weight,
    count, phase, rollout_gauges, send_many, step_index, within,
};

const LIMIT: Duration = Duration::from_secs(15);

/// Two routes with rollouts: `full` on `/full`, `ab` on `/ab`.
fn config(v1: &FakeUpstream, v2: &FakeUpstream) -> WeirConfig {
    let full = Strategy::new([
        Step::SetWeight(10.0),
        Step::Pause(None),
        Step::SetWeight(50.0),
        Step::Pause(None),
        Step::SetWeight(100.0),
    ])
    .analysis("250ms", "5s");
    // `ab` never has enough canary requests to advance by itself.
    let ab = Strategy::unjudged([Step::SetWeight(50.0), Step::Pause(None)]);
    WeirConfig::new([
        Route::new("full", &[v1.addr])
            .path_prefix("/full")
            .canary(&[v2.addr], 0.0)
            .strategy(full),
        Route::new("ab", &[v1.addr])
            .path_prefix("/ab")
            .canary(&[v2.addr], 0.0)
            .strategy(ab),
    ])
}

/// Asserts a JSON `{"error": "..."}` body and returns the message.
fn error_message(r: &Response) -> String {
    let json = r.json();
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error body is not {{\"error\": \"...\"}}: {json}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_full_then_a_third_revision_is_refused_while_behind() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let v3 = FakeUpstream::start("v3").await;
    let config = config(&v1, &v2);
    let mut weir = Weir::start(config.clone()).await;

    // promote: step 0 (setWeight 10) is skipped; Paused at `pause: {}`.
    let r = weir.command("full", "promote", None).await;
    assert_eq!(r.status, 200, "promote: {}", r.text());
    let s = r.json();
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");
    assert_eq!(canary_weight(&s), 10.0, "{s:#}");

    // promote --full: Promoted at 100 at once.
    let r = weir
        .command("full", "promote", Some(serde_json::json!({"full": true})))
        .await;
    assert_eq!(r.status, 200, "promote full: {}", r.text());
    let s = r.json();
    assert_eq!(phase(&s), "Promoted", "{s:#}");
    assert_eq!(canary_weight(&s), 100.0, "{s:#}");
    assert_eq!(step_index(&s), s["stepCount"].as_u64(), "{s:#}");
    assert_eq!(s["configBehind"], true, "{s:#}");
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/full", &[], 30, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "v2", 200), 30, "Promoted: all canary: {c:?}");

    // Promoted again: 409 naming the phase.
    let r = weir.command("full", "promote", None).await;
    assert_eq!(r.status, 409, "promote when Promoted: {}", r.text());
    let message = error_message(&r);
    assert!(message.contains("Promoted"), "409 error: {message}");

    // A third revision while behind is refused; the rollout stays.
    let failures = weir.reloads("failure").await;
    let v3_config = config.with_route("full", |r| r.canary(&[v3.addr], 0.0).canary_revision("v3"));
    weir.write_config(&v3_config);
    within(
        RELOAD_LIMIT,
        "a refused reload",
        weir.wait_for_reload("failure", failures),
    )
    .await;
    let s = weir.status("full").await;
    assert_eq!(phase(&s), "Promoted", "{s:#}");
    assert_eq!(s["canaryRevision"], "v2", "{s:#}");
    assert_eq!(canary_weight(&s), 100.0, "{s:#}");
    let r = weir.admin().post("/api/v1/reload", None).await.unwrap();
    assert_eq!(r.status, 400, "POST /api/v1/reload: {}", r.text());
    let message = error_message(&r);
    assert!(
        message.contains("v3") || message.contains("v2"),
        "the reload error names the revisions: {message}"
    );
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/full", &[], 20, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "v2", 200), 20, "{c:?}");
    assert_eq!(v3.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_retry_pause_resume_promote_all_and_errors() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let weir = Weir::start(config(&v1, &v2)).await;

    let s = weir.status("ab").await;
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
    let seq = s["rolloutSeq"].clone();
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/ab", &[], 40, 2),
    )
    .await
    .unwrap();
    assert!(count(&c, "v2", 200) > 0, "weight 50: {c:?}");

    // 409 for retry when not Aborted, naming the phase.
    let r = weir.command("ab", "retry", None).await;
    assert_eq!(r.status, 409, "retry while Progressing: {}", r.text());
    let message = error_message(&r);
    assert!(message.contains("Progressing"), "409 error: {message}");

    // abort: weight 0 at once.
    let r = weir.command("ab", "abort", None).await;
    assert_eq!(r.status, 200, "abort: {}", r.text());
    let s = r.json();
    assert_eq!(phase(&s), "Aborted", "{s:#}");
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    let v2_hits = v2.hits();
    let c = within(
        LIMIT,
        "requests",
        send_many(weir.addrs.http, "/ab", &[], 60, 2),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "v1", 200), 60, "after abort all stable: {c:?}");
    assert_eq!(v2.hits(), v2_hits, "the canary got traffic after abort");
    let m = weir.metrics().await;
    let (p, _, weight) = rollout_gauges(&m, "ab");
    assert_eq!((p.as_str(), weight), ("Aborted", Some(0.0)));
    assert_eq!(
        m.get(
            "weir_rollout_aborts_total",
            &[("route", "ab"), ("reason", "manual")]
        ),
        Some(1.0),
        "weir_rollout_aborts_total{{route=\"ab\",reason=\"manual\"}}"
    );
    // The other route is untouched.
    assert_eq!(weir.status("full").await["phase"], "Progressing");

    // abort again: 409.
    let r = weir.command("ab", "abort", None).await;
    assert_eq!(r.status, 409, "abort while Aborted: {}", r.text());
    assert!(error_message(&r).contains("Aborted"));

    // retry: step 0 again, same rolloutSeq.
    let r = weir.command("ab", "retry", None).await;
    assert_eq!(r.status, 200, "retry: {}", r.text());
    let s = r.json();
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
    assert_eq!(s["rolloutSeq"], seq, "retry keeps rolloutSeq: {s:#}");

    // pause holds, resume releases.
    let r = weir.command("ab", "pause", None).await;
    assert_eq!(r.status, 200, "pause: {}", r.text());
    let s = r.json();
    assert_eq!(
        (phase(&s), s["held"].as_bool()),
        ("Paused", Some(true)),
        "{s:#}"
    );
    let r = weir.command("ab", "pause", None).await;
    assert_eq!(r.status, 409, "pause while held: {}", r.text());
    error_message(&r);
    let r = weir.command("ab", "resume", None).await;
    assert_eq!(r.status, 200, "resume: {}", r.text());
    let s = r.json();
    assert_eq!(
        (phase(&s), s["held"].as_bool(), step_index(&s)),
        ("Progressing", Some(false), Some(0)),
        "{s:#}"
    );
    let r = weir.command("ab", "resume", None).await;
    assert_eq!(r.status, 409, "resume when not held: {}", r.text());
    error_message(&r);

    // Promote-all: `full` is brought to `pause: {}` first; `ab` is
    // Progressing and is left alone.
    let r = weir.command("full", "promote", None).await;
    assert_eq!(r.status, 200, "promote: {}", r.text());
    let r = weir.admin().post("/api/v1/promote", None).await.unwrap();
    assert_eq!(r.status, 200, "POST /api/v1/promote: {}", r.text());
    let body = r.json();
    assert_eq!(body["promoted"], serde_json::json!(["full"]), "{body:#}");
    assert!(body["routes"].is_array(), "{body:#}");
    let s = weir.status("full").await;
    assert_eq!(step_index(&s), Some(2), "{s:#}");
    assert_eq!(canary_weight(&s), 50.0, "{s:#}");
    let s = weir.status("ab").await;
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );

    // The list holds both routes.
    let r = weir.admin().get("/api/v1/routes").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list:#}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ab", "full"]);

    // 404s with JSON errors.
    let r = weir.admin().get("/api/v1/routes/nosuch").await.unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(error_message(&r).contains("nosuch"));
    let r = weir.command("nosuch", "abort", None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    error_message(&r);
}
