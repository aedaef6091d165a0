use super::render::{self, StepMark};
use super::*;

/// The route status of the admin API's contract, plus a field this CLI does
/// not know.
const FIXTURE: &str = r#"{
  "name": "checkout", "phase": "Progressing", "stepIndex": 2, "stepCount": 5,
  "steps": [{"setWeight": 5}, {"pause": {"duration": "30s"}}, {"setWeight": 25}, {"pause": {}}, {"setWeight": 100}],
  "canaryWeight": 25.0, "stableRevision": "v1", "canaryRevision": "v2", "promotedRevision": null,
  "configBehind": false, "held": false, "pauseDeadlineMs": null, "rolloutSeq": 1, "strategy": true,
  "message": "step 3/5: setWeight 25",
  "futureField": {"nested": [1, 2]},
  "analysis": {
    "windowSeconds": 30.0,
    "stable": {"requests": 900, "errors": 9, "errorRate": 0.01, "latencyP99Ms": 12.5},
    "canary": {"requests": 100, "errors": 0, "errorRate": 0.0, "latencyP99Ms": 15.0},
    "verdict": "pass", "reason": "canary error rate 0.000 is within 0.050", "failures": 0
  }
}"#;

const NOW: u64 = 1_700_000_000_000;

fn fixture() -> RouteStatus {
    serde_json::from_str(FIXTURE).expect("the fixture parses")
}

fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= render::WIDTH,
            "line longer than {} columns: {line:?}",
            render::WIDTH
        );
    }
}

// --- parsing ---

#[test]
fn parses_the_contract_and_ignores_unknown_fields() {
    let route = fixture();
    assert_eq!(route.name, "checkout");
    assert_eq!(route.phase, Phase::Progressing);
    assert_eq!(route.step_index, Some(2));
    assert_eq!(
        route.steps,
        vec![
            Step::SetWeight(5.0),
            Step::Pause {
                duration: Some("30s".to_owned())
            },
            Step::SetWeight(25.0),
            Step::Pause { duration: None },
            Step::SetWeight(100.0),
        ]
    );
    let analysis = route.analysis.expect("analysis");
    assert_eq!(analysis.verdict.as_deref(), Some("pass"));
    assert_eq!(analysis.stable.expect("stable").requests, 900);
}

#[test]
fn missing_and_null_fields_take_defaults() {
    let route: RouteStatus = serde_json::from_str(
        r#"{"name": "api", "phase": "Healthy", "message": null, "steps": null,
            "analysis": {"windowSeconds": 30, "canary": {"requests": 0, "errorRate": null}}}"#,
    )
    .expect("parses");
    assert_eq!(route.step_index, None);
    assert_eq!(route.step_count, 0);
    assert!(route.steps.is_empty() && route.message.is_empty() && !route.strategy);
    let canary = route.analysis.and_then(|a| a.canary).expect("canary");
    assert_eq!(canary.error_rate, None);

    let odd: RouteStatus = serde_json::from_str(
        r#"{"phase": "Degraded", "steps": [{"analysis": {}}, {"pause": {"duration": 45}}]}"#,
    )
    .expect("parses");
    assert_eq!(odd.phase, Phase::Unknown);
    assert_eq!(odd.steps[0], Step::Other(r#"{"analysis":{}}"#.to_owned()));
    assert_eq!(render::step_text(&odd.steps[1]), "pause 45s");
    assert_eq!(render::step_text(&odd.steps[0]), r#"{"analysis":{}}"#);
    let none: RouteStatus = serde_json::from_str(r#"{"phase": null}"#).expect("parses");
    assert_eq!(none.phase, Phase::Unknown);
}

// --- text view ---

#[test]
fn text_view_shows_the_route_at_a_glance() {
    let text = render::route_text(&fixture(), NOW);
    for expected in [
        "checkout  Progressing  step 3/5  canary 25%",
        "stable v1 → canary v2",
        "step       setWeight 25",
        "message    step 3/5: setWeight 25",
        "analysis   last 30s",
        "req/s",
        "err rate",
        // 900 requests over 30 s, 9 errors, p99.
        "stable       30.0       900       9     1.00%     12.5 ms",
        "canary        3.3       100       0     0.00%     15.0 ms",
        "verdict    pass (failures 0): canary error rate 0.000 is within 0.050",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("config is behind"), "{text}");
    assert_fits(&text);
}

#[test]
fn text_view_marks_a_config_behind_loudly() {
    let mut route = fixture();
    route.phase = Phase::Promoted;
    route.step_index = Some(5);
    route.canary_weight = 100.0;
    route.config_behind = true;
    route.promoted_revision = Some("v2".to_owned());
    let text = render::route_text(&route, NOW);
    assert!(text.contains("Promoted  step 5/5  canary 100%"), "{text}");
    assert!(
        text.contains("WARNING: config is behind: set stable.revision to v2"),
        "{text}"
    );
    assert!(render::command_line(&route).contains("config is behind"));
}

#[test]
fn text_view_of_a_fixed_split_and_of_empty_analysis() {
    let route: RouteStatus = serde_json::from_str(
        r#"{"name": "search", "phase": "Healthy", "stepIndex": null, "stepCount": 0, "steps": [],
            "canaryWeight": 0.0001, "stableRevision": null, "canaryRevision": null, "strategy": false,
            "message": "", "analysis": {"windowSeconds": 0, "stable": {"requests": 0, "errors": 0,
            "errorRate": null, "latencyP99Ms": null}, "canary": null, "verdict": null, "reason": null}}"#,
    )
    .expect("parses");
    let text = render::route_text(&route, NOW);
    assert!(
        text.contains("search  Healthy  fixed split  canary 0.0001%"),
        "{text}"
    );
    assert!(text.contains("stable - → canary -"), "{text}");
    assert!(text.contains("verdict    none yet (failures 0)"), "{text}");
    assert!(
        text.contains("stable          -         0       0         -           -"),
        "{text}"
    );
    assert_eq!(render::routes_text(&[], NOW), "no routes\n");
}

#[test]
fn long_messages_wrap_within_80_columns() {
    let mut route = fixture();
    route.message = "canary judged inconclusive: ".repeat(12);
    let text = render::route_text(&route, NOW);
    assert_fits(&text);
    assert!(text.lines().filter(|l| l.contains("inconclusive")).count() > 3);
    assert_fits(&render::watch_route(&route, NOW));
}

// --- watch view ---

#[test]
fn watch_view_marks_steps_done_current_pending() {
    let frame = render::watch_route(&fixture(), NOW);
    for expected in [
        "Name:          checkout",
        "Phase:         ◌ Progressing",
        "Step:          3/5",
        "Canary weight: 25%",
        "Revisions:     stable v1 → canary v2",
        "Message:       step 3/5: setWeight 25",
        "  ✔ 1. setWeight 5\n",
        "  ✔ 2. pause 30s\n",
        "  ▶ 3. setWeight 25\n",
        "  ○ 4. pause (until promote)\n",
        "  ○ 5. setWeight 100\n",
        "Analysis (last 30s):",
        "Verdict:       pass (failures 0): canary error rate",
    ] {
        assert!(frame.contains(expected), "missing {expected:?} in\n{frame}");
    }
    assert_fits(&frame);
}

#[test]
fn watch_view_counts_down_a_timed_pause() {
    let mut route = fixture();
    route.phase = Phase::Paused;
    route.step_index = Some(1);
    route.canary_weight = 5.0;
    route.pause_deadline_ms = Some(NOW + 12_000);
    let frame = render::watch_route(&route, NOW);
    assert!(frame.contains("  ✔ 1. setWeight 5\n"), "{frame}");
    assert!(frame.contains("  ▶ 2. pause 30s   (12s left)\n"), "{frame}");
    assert!(frame.contains("  ○ 3. setWeight 25\n"), "{frame}");
    assert!(frame.contains("‖ Paused"), "{frame}");
    assert!(render::route_text(&route, NOW).contains("step       pause 30s (12s left)"));

    route.held = true;
    route.pause_deadline_ms = Some(NOW - 1);
    let frame = render::watch_route(&route, NOW);
    assert!(frame.contains("▶ 2. pause 30s   (held, due)"), "{frame}");
    assert!(frame.contains("Paused (held)"), "{frame}");
}

#[test]
fn watch_view_of_a_promoted_rollout_marks_every_step_done() {
    let mut route = fixture();
    route.phase = Phase::Promoted;
    route.step_index = Some(5);
    let frame = render::watch_route(&route, NOW);
    assert_eq!(
        frame.matches('✔').count(),
        6,
        "5 steps and the phase:\n{frame}"
    );
    assert!(!frame.contains('▶') && !frame.contains('○'), "{frame}");
    assert!(frame.contains("Step:          5/5"), "{frame}");
    for index in 0..5 {
        assert_eq!(StepMark::of(&route, index), StepMark::Done);
    }
}

#[test]
fn step_marks_without_a_rollout_are_pending() {
    let mut route = fixture();
    route.phase = Phase::Healthy;
    route.step_index = None;
    assert_eq!(StepMark::of(&route, 0), StepMark::Pending);
    assert_eq!(render::step_label(&route), None);
}

#[test]
fn watch_frames_show_errors_and_the_last_answer() {
    let routes = vec![fixture()];
    let header = render::watch_header("http://127.0.0.1:9900", Some("checkout"), NOW);
    assert!(header.starts_with("weir status checkout · http://127.0.0.1:9900 · "));
    assert!(header.contains("22:13:20 UTC"), "{header}");
    let frame = render::watch_error_frame(
        &header,
        "cannot reach weir at http://127.0.0.1:9900: Connection refused",
        Some((&routes, NOW - 3_000)),
        NOW,
    );
    assert!(
        frame.contains("⚠ cannot reach weir at http://127.0.0.1:9900"),
        "{frame}"
    );
    assert!(frame.contains("retrying"), "{frame}");
    assert!(frame.contains("(3s ago)"), "{frame}");
    assert!(frame.contains("▶ 3. setWeight 25"), "{frame}");
    assert_fits(&frame);
}

#[test]
fn canary_routes_show_their_leader_and_coverage() {
    let mut route = fixture();
    route.name = "shop/checkout".to_owned();
    route.leader = Some("weir-0".to_owned());
    route.coverage = Some("3/3".to_owned());
    let text = render::route_text(&route, NOW);
    assert!(
        text.contains("\n  cluster    leader weir-0, counters from 3/3 replicas\n"),
        "{text}"
    );
    assert!(
        render::watch_route(&route, NOW)
            .contains("Cluster:       leader weir-0, counters from 3/3 replicas"),
    );
    assert_fits(&text);

    route.leader = None;
    route.coverage = None;
    assert_eq!(render::cluster_text(&route).as_deref(), Some("no leader"));
    route.coverage = Some("1/3".to_owned());
    assert_eq!(
        render::cluster_text(&route).as_deref(),
        Some("no leader, counters from 1/3 replicas")
    );
    // A file route says nothing of leaders.
    let file_route = fixture();
    assert_eq!(render::cluster_text(&file_route), None);
    let text = render::route_text(&file_route, NOW);
    assert!(!text.contains("leader"), "{text}");
}

#[test]
fn a_pending_command_is_said() {
    let mut route = fixture();
    route.name = "shop/checkout".to_owned();
    route.phase = Phase::Paused;
    route.step_index = Some(1);
    route.canary_weight = 5.0;
    route.message = "pause 30s".to_owned();
    route.pending_command = Some("abort is written; the leader has not acted".to_owned());
    assert_eq!(
        render::command_line(&route),
        "shop/checkout: Paused at step 2/5, canary 5%: pause 30s \
         (pending: abort is written; the leader has not acted)"
    );
    assert!(
        render::route_text(&route, NOW)
            .contains("  pending    abort is written; the leader has not acted"),
    );
    let answer = PromoteAll {
        error: None,
        promoted: Vec::new(),
        routes: vec![route],
    };
    assert_eq!(
        render::promote_all_line(&answer),
        "shop/checkout: pending: abort is written; the leader has not acted"
    );
}

// --- one-line results ---

#[test]
fn command_lines() {
    let mut route = fixture();
    route.phase = Phase::Paused;
    route.step_index = Some(1);
    route.canary_weight = 5.0;
    route.message = "pause 30s".to_owned();
    assert_eq!(
        render::command_line(&route),
        "checkout: Paused at step 2/5, canary 5%: pause 30s"
    );
    route.phase = Phase::Aborted;
    route.canary_weight = 0.0;
    route.message.clear();
    assert_eq!(
        render::command_line(&route),
        "checkout: Aborted at step 2/5, canary 0%"
    );

    let none = PromoteAll::default();
    assert_eq!(
        render::promote_all_line(&none),
        "no route is Paused: nothing promoted"
    );
    let some = PromoteAll {
        error: None,
        promoted: vec!["a".to_owned(), "b".to_owned()],
        routes: Vec::new(),
    };
    assert_eq!(render::promote_all_line(&some), "promoted 2 route(s): a, b");
}

#[test]
fn formats() {
    assert_eq!(render::percent(25.0), "25%");
    assert_eq!(render::percent(12.5), "12.5%");
    assert_eq!(render::percent(0.0001), "0.0001%");
    assert_eq!(render::percent(0.0), "0%");
    assert_eq!(render::percent(100.0), "100%");
    assert_eq!(render::duration_text(1), "1s");
    assert_eq!(render::duration_text(12_000), "12s");
    assert_eq!(render::duration_text(245_000), "4m05s");
    assert_eq!(render::duration_text(3_720_000), "1h02m");
}

#[test]
fn pretty_json_keeps_order_and_numbers() {
    let raw = r#"{"name":"b","phase":"Healthy","a":[],"o":{},"w":25.0,"s":"x,{y}: \"z\"","n":[1, {"k":null}]}"#;
    let expected = r#"{
  "name": "b",
  "phase": "Healthy",
  "a": [],
  "o": {},
  "w": 25.0,
  "s": "x,{y}: \"z\"",
  "n": [
    1,
    {
      "k": null
    }
  ]
}"#;
    assert_eq!(render::pretty_json(raw), expected);
    // Already pretty input comes out the same.
    assert_eq!(render::pretty_json(expected), expected);
    assert_eq!(render::pretty_json("[]"), "[]");
}

// --- exit codes and errors ---

#[test]
fn exit_codes() {
    let cases = [
        (StatusCode::OK, Exit::Success, 0),
        (StatusCode::BAD_REQUEST, Exit::Refused, 1),
        (StatusCode::CONFLICT, Exit::NotApplicable, 3),
        (StatusCode::NOT_FOUND, Exit::UnknownRoute, 4),
        (StatusCode::UNAUTHORIZED, Exit::Auth, 5),
        (StatusCode::FORBIDDEN, Exit::Auth, 5),
        (StatusCode::INTERNAL_SERVER_ERROR, Exit::Refused, 1),
        (StatusCode::SERVICE_UNAVAILABLE, Exit::Refused, 1),
    ];
    for (status, exit, code) in cases {
        assert_eq!(Exit::for_status(status), exit, "{status}");
        assert_eq!(exit.code(), code);
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            assert_eq!(ClientError::from_answer(status, b"").exit(), exit);
        }
    }
    // A 404 is an unknown route only when it names one: a wrong `--admin`
    // path, or a server that is not weir, is a refusal.
    for (body, exit) in [
        (
            &br#"{"error":"no route named web"}"#[..],
            Exit::UnknownRoute,
        ),
        (
            br#"{"error":"no admin endpoint /foo/api/v1/routes/web"}"#,
            Exit::Refused,
        ),
        (b"<html>Not Found</html>", Exit::Refused),
        (b"", Exit::Refused),
    ] {
        assert_eq!(
            ClientError::from_answer(StatusCode::NOT_FOUND, body).exit(),
            exit,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(Exit::Usage.code(), 2);
    let unreachable = ClientError::Unreachable {
        url: DEFAULT_ADMIN_URL.to_owned(),
        source: "connection refused".into(),
    };
    assert_eq!(unreachable.exit().code(), 6);
    let timeout = ClientError::Timeout {
        url: DEFAULT_ADMIN_URL.to_owned(),
        after: DEFAULT_TIMEOUT,
    };
    assert_eq!(timeout.exit(), Exit::Unreachable);
    assert_eq!(
        timeout.to_string(),
        "no answer from weir at http://127.0.0.1:9900 within 5 s"
    );
    let odd = ClientError::Refused {
        status: StatusCode::OK,
        message: String::new(),
    };
    assert_eq!(odd.exit(), Exit::Refused);
}

#[test]
fn error_text_comes_from_the_json_body() {
    let error = ClientError::from_answer(
        StatusCode::CONFLICT,
        br#"{"error": "retry applies only to an Aborted rollout; checkout is Progressing"}"#,
    );
    assert_eq!(
        error.to_string(),
        "409: retry applies only to an Aborted rollout; checkout is Progressing"
    );
    // Not weir's answer (another server at `--admin`): said so.
    let not_weir = " (not an answer of weir's admin API, which says why in JSON: is --admin the \
                    admin address of a weir?)";
    let plain = ClientError::from_answer(StatusCode::BAD_GATEWAY, b"\n  upstream down\nmore\n");
    assert_eq!(plain.to_string(), format!("502: upstream down{not_weir}"));
    let empty = ClientError::from_answer(StatusCode::NOT_FOUND, b"");
    assert_eq!(empty.to_string(), format!("404: Not Found{not_weir}"));
}

// --- URLs ---

#[test]
fn admin_urls_parse() {
    let url = AdminUrl::parse(DEFAULT_ADMIN_URL).expect("default");
    assert_eq!(
        (url.host(), url.port(), url.base_path()),
        ("127.0.0.1", 9900, "")
    );
    assert_eq!(url, AdminUrl::default());
    assert_eq!(url.to_string(), DEFAULT_ADMIN_URL);

    let url = AdminUrl::parse("http://weir.internal/ops/").expect("prefix");
    assert_eq!(
        (url.host(), url.port(), url.base_path()),
        ("weir.internal", 80, "/ops")
    );
    assert_eq!(url.to_string(), "http://weir.internal/ops");

    let url = AdminUrl::parse("http://[::1]:9900").expect("IPv6");
    assert_eq!((url.host(), url.port()), ("::1", 9900));
    assert_eq!(url.to_string(), "http://[::1]:9900");
}

#[test]
fn bad_admin_urls_say_why() {
    for (text, reason) in [
        ("https://127.0.0.1:9900", "https is not supported"),
        ("127.0.0.1:9900", "no scheme"),
        ("ftp://127.0.0.1", "unsupported scheme `ftp`"),
        ("http://", "not a URL"),
        ("not a url", "not a URL"),
        ("http://user:pw@127.0.0.1:9900", "credentials"),
        ("http://127.0.0.1:9900/?x=1", "query"),
        ("http://127.0.0.1:9900/#top", "fragment"),
        ("http://127.0.0.1:0", "port 0"),
    ] {
        let error = AdminUrl::parse(text).expect_err(text);
        assert_eq!(error.url, text);
        assert!(error.reason.contains(reason), "{text}: {error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("`{text}` cannot be used as the admin URL: "))
        );
    }
}

/// A port that is not a number from 1 to 65535 is refused, naming the URL,
/// rather than read as no port (port 80, where the token would go).
#[test]
fn admin_urls_with_a_port_that_is_not_a_port_are_refused() {
    for (text, reason) in [
        (
            "http://127.0.0.1:95436",
            "port `95436` is not a number from 1 to 65535",
        ),
        (
            "http://127.0.0.1:65536",
            "port `65536` is not a number from 1 to 65535",
        ),
        (
            "http://127.0.0.1:abc",
            "port `abc` is not a number from 1 to 65535",
        ),
        ("http://127.0.0.1:", "the port after `:` is empty"),
        ("http://127.0.0.1:/ops", "the port after `:` is empty"),
        (
            "http://[::1]:99999",
            "port `99999` is not a number from 1 to 65535",
        ),
        ("http://[::1]:", "the port after `:` is empty"),
    ] {
        let error = match AdminUrl::parse(text) {
            Ok(url) => panic!("{text} was taken as {url} (port {})", url.port()),
            Err(error) => error,
        };
        assert_eq!(error.url, text);
        assert!(error.reason.contains(reason), "{text}: {error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("`{text}` cannot be used as the admin URL: ")),
            "{error}"
        );
    }
    // The largest port and a leading zero are ports.
    let url = AdminUrl::parse("http://127.0.0.1:65535").expect("port 65535");
    assert_eq!(url.port(), 65535);
    let url = AdminUrl::parse("http://127.0.0.1:09900").expect("port 09900");
    assert_eq!(url.port(), 9900);
}

#[test]
fn tokens_and_names() {
    let url = AdminUrl::default();
    assert!(matches!(
        AdminClient::new(url.clone(), Some("bad\ntoken")),
        Err(ClientError::InvalidToken(_))
    ));
    let client = AdminClient::new(url.clone(), Some("s3cret")).expect("token");
    assert!(
        !format!("{client:?}").contains("s3cret"),
        "the token is not in Debug"
    );
    let client = AdminClient::new(url, Some("")).expect("empty token");
    assert!(client.authorization.is_none());
    assert_eq!(encode_segment("check out/é"), "check%20out%2F%C3%A9");
    assert_eq!(encode_segment("api-v2.x_y"), "api-v2.x_y");
    assert_eq!(RouteCommand::Promote { full: true }.name(), "promote");
}

#[test]
fn webhooks_show_their_last_call_in_the_status_and_the_watch() {
    let mut route = fixture();
    route.webhooks = serde_json::from_value(serde_json::json!([
        {"name": "approve", "type": "confirm-promotion", "waiting": true,
         "lastResult": "fail", "statusCode": 403, "attempts": 3,
         "message": "HTTP 403: not yet", "lastCalledMs": NOW, "calls": 7},
        {"name": "smoke", "type": "pre-rollout"}
    ]))
    .expect("webhook statuses parse");
    let text = render::route_text(&route, NOW);
    assert!(
        text.contains("webhook    approve (confirm-promotion, waited on): fail after 3 attempts:")
            && text.contains("403: not yet"),
        "{text}"
    );
    assert!(
        text.contains("smoke (pre-rollout): not called yet"),
        "{text}"
    );
    assert_fits(&text);
    let watch = render::watch_route(&route, NOW);
    assert!(
        watch.contains("Webhooks:\n  approve (confirm-promotion"),
        "{watch}"
    );
    // A status without webhooks shows none.
    assert!(!render::route_text(&fixture(), NOW).contains("webhook"));
}

#[test]
fn status_shows_the_latest_analysis_runs_briefly() {
    assert_eq!(render::analysis_runs_text(&serde_json::json!([])), "");
    let runs = serde_json::json!([
        {"name": "rollout 1 background", "templates": ["errors"], "phase": "Running", "message": "",
         "metrics": [{"name": "error-ratio", "phase": "Running", "successful": 3, "failed": 0,
                      "inconclusive": 0, "error": 1,
                      "measurements": [{"value": [0.002], "message": null}]}]},
        {"name": "rollout 1 step 3", "templates": ["smoke"], "phase": "Error",
         "message": "metric smoke: 1 errors in a row exceed consecutiveErrorLimit 0: no answer",
         "metrics": [{"name": "smoke", "phase": "Error", "successful": 0, "failed": 0,
                      "inconclusive": 0, "error": 1,
                      "measurements": [{"value": null, "message": "no answer within 5 s"}]}]}
    ]);
    let text = render::analysis_runs_text(&runs);
    assert!(
        text.contains("rollout 1 background (errors): Running"),
        "{text}"
    );
    assert!(
        text.contains("error-ratio: Running, 3 successful, 0 failed, 0 inconclusive, 1 errors; last value [0.002]"),
        "{text}"
    );
    assert!(
        text.contains("rollout 1 step 3 (smoke): Error: metric smoke"),
        "{text}"
    );
    assert!(text.contains("last: no answer within 5 s"), "{text}");
}

#[test]
fn blue_green_routes_show_their_stage_and_preview() {
    let mut json: serde_json::Value = serde_json::from_str(FIXTURE).expect("the fixture parses");
    json["phase"] = "Paused".into();
    json["stepIndex"] = 1.into();
    json["stepCount"] = 3.into();
    json["steps"] = serde_json::json!([{"setWeight": 0}, {"pause": {}}, {"setWeight": 100}]);
    json["canaryWeight"] = 0.into();
    json["blueGreen"] = serde_json::json!({
        "stage": "AwaitingPromotion",
        "previewLive": true,
        "previewHosts": ["preview.shop.example.com"],
        "previewHeader": {"name": "x-weir-preview", "value": "1"}
    });
    let route: RouteStatus = serde_json::from_value(json).expect("a blue-green status");
    let text = render::route_text(&route, NOW);
    for expected in [
        "checkout  Paused  blue-green AwaitingPromotion  canary 0%",
        "preview    hosts preview.shop.example.com, header x-weir-preview: 1 (live",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let watch = render::watch_route(&route, NOW);
    for expected in ["Strategy:", "blue-green", "Stage:", "AwaitingPromotion"] {
        assert!(watch.contains(expected), "missing {expected:?} in\n{watch}");
    }
    assert_fits(&text);
    // A canary route has no stage; a stage this build does not know reads.
    assert_eq!(render::stage_text(&fixture()), None);
    let newer: weir_config::status::BlueGreenStatus =
        serde_json::from_str(r#"{"stage": "Mirroring"}"#).expect("tolerant");
    assert_eq!(newer.stage, None);
}

#[test]
fn an_analysis_step_is_shown_by_its_template_names() {
    let route: RouteStatus = serde_json::from_str(
        r#"{"phase": "Paused", "steps": [
            {"analysis": {"templates": [{"templateName": "errors"}, {"templateName": "smoke"}],
                          "args": [{"name": "route", "value": "web"}]}}]}"#,
    )
    .expect("parses");
    assert_eq!(render::step_text(&route.steps[0]), "analysis errors, smoke");
}

#[test]
fn a_route_without_a_canary_is_not_called_a_fixed_split() {
    let route: RouteStatus = serde_json::from_str(
        r#"{"name": "api", "phase": "Healthy", "stableRevision": "v1", "canaryRevision": null,
            "canaryWeight": 0, "strategy": false, "steps": []}"#,
    )
    .expect("parses");
    let text = render::route_text(&route, NOW);
    assert!(
        text.starts_with("api  Healthy  no canary  canary 0%"),
        "{text}"
    );
    let split: RouteStatus = serde_json::from_str(
        r#"{"name": "web", "phase": "Healthy", "stableRevision": "v1", "canaryRevision": "v2",
            "canaryWeight": 10, "strategy": false, "steps": []}"#,
    )
    .expect("parses");
    let text = render::route_text(&split, NOW);
    assert!(
        text.starts_with("web  Healthy  fixed split  canary 10%"),
        "{text}"
    );
}

/// A server that answers JSON but not a route's status (not weir's admin
/// API, or another route's) is a bad answer, not a status of `Unknown`.
#[tokio::test]
async fn an_answer_that_is_not_the_routes_status_is_a_bad_answer() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let bodies: [&[u8]; 2] = [br#"{"stable1": 1}"#, br#"{"name": "other"}"#];
        for body in bodies {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body).await;
        }
    });
    let url = AdminUrl::parse(&format!("http://{addr}")).expect("a URL");
    let client = AdminClient::new(url, None).expect("a client");
    for answer in ["no name", "another route's"] {
        let error = client
            .command("main", RouteCommand::Abort)
            .await
            .expect_err(answer);
        assert!(
            matches!(error, ClientError::BadAnswer { .. }),
            "{answer}: {error}"
        );
        assert_eq!(error.exit(), Exit::Refused, "{answer}");
        assert!(
            error
                .to_string()
                .contains("not the status of route \"main\""),
            "{answer}: {error}"
        );
    }
}
