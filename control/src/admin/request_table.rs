//! The whole admin request handling, without sockets: every path, method
//! and token against a process in memory, in order (commands change the
//! state the next rows see).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;
use weir_config::status::{Phase, PromoteAll, RouteStatus};
use weir_proxy::Role;

use crate::cluster::counters::{Replica, ReplicaCounters};

use super::AdminState;
use crate::fixtures::{self, InMemory};
use crate::messages::Refusal;

const READER: &str = "read-token";
const WRITER: &str = "write-token";

/// Who calls: which token, from where.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Anonymous,
    Wrong,
    Reader,
    Writer,
    /// Two `Authorization` headers: the reader's and the writer's.
    Both,
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

fn peer(ip: [u8; 4]) -> SocketAddr {
    SocketAddr::from((ip, 40_000))
}

async fn call(
    admin: &AdminState,
    method: &Method,
    path: &str,
    caller: Caller,
    body: &str,
    from: SocketAddr,
) -> Answer {
    let mut request = Request::builder().method(method.clone()).uri(path);
    let token = match caller {
        Caller::Anonymous => None,
        Caller::Wrong => Some("nope"),
        Caller::Reader => Some(READER),
        Caller::Writer | Caller::Both => Some(WRITER),
    };
    if matches!(caller, Caller::Both) {
        request = request.header(header::AUTHORIZATION, format!("Bearer {READER}"));
    }
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a valid request");
    let response = admin.handle(request, from).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a full body")
        .to_bytes();
    Answer { status, body }
}

fn error_of(answer: &Answer) -> String {
    serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

async fn started() -> (InMemory, AdminState) {
    let routes = [
        fixtures::route(
            "web",
            Some("[{setWeight: 20}, {pause: {}}, {setWeight: 50}]"),
        ),
        fixtures::route("fixed", None),
    ]
    .concat();
    let text = fixtures::config_text(Some((READER, WRITER)), &routes);
    let config_path = std::env::temp_dir().join(format!(
        "weir-admin-table-{}-missing.yaml",
        std::process::id()
    ));
    let in_memory = fixtures::process(&text, config_path).await;
    let admin = AdminState::new(Arc::clone(&in_memory.process));
    (in_memory, admin)
}

#[tokio::test]
async fn every_path_method_and_token_answers_its_status() {
    use Caller::*;
    let (in_memory, admin) = started().await;
    let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
    let local = peer([127, 0, 0, 1]);
    // (method, path, caller, body, status), in order: commands change the
    // state later rows see.
    // Over the 64 KiB an admin body may have.
    let big_body = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000));
    let table: Vec<(&Method, &str, Caller, &str, u16)> = vec![
        // Open endpoints: any caller.
        (&get, "/healthz", Anonymous, "", 200),
        (&get, "/healthz", Wrong, "", 200),
        (&get, "/readyz", Anonymous, "", 503),
        (&get, "/metrics", Anonymous, "", 200),
        (&post, "/healthz", Writer, "", 405),
        (&put, "/metrics", Writer, "", 405),
        (&get, "/nosuch", Writer, "", 404),
        (&get, "/api/v1/routes/../healthz", Writer, "", 404),
        // Reading: a token is needed, either one will do.
        (&get, "/api/v1/routes", Anonymous, "", 401),
        (&get, "/api/v1/routes", Wrong, "", 401),
        // Which of two Authorization headers counts would be a guess.
        (&get, "/api/v1/routes", Both, "", 400),
        (&post, "/api/v1/routes/web/pause", Both, "", 400),
        (&get, "/api/v1/routes", Reader, "", 200),
        (&get, "/api/v1/routes", Writer, "", 200),
        (&get, "/api/v1/routes/", Reader, "", 200),
        (&get, "/api/v1/routes/web", Anonymous, "", 401),
        (&get, "/api/v1/routes/web", Wrong, "", 401),
        (&get, "/api/v1/routes/web", Reader, "", 200),
        (&get, "/api/v1/routes/fixed", Writer, "", 200),
        (&get, "/api/v1/routes/nosuch", Reader, "", 404),
        // Analysis runs: read like the routes.
        (&get, "/api/v1/routes/web/analysisruns", Anonymous, "", 401),
        (&get, "/api/v1/routes/web/analysisruns", Reader, "", 200),
        (&get, "/api/v1/routes/web/analysisruns", Writer, "", 200),
        (&get, "/api/v1/routes/nosuch/analysisruns", Reader, "", 404),
        (&post, "/api/v1/routes/web/analysisruns", Writer, "", 405),
        // Route names are percent-decoded; a bad escape is 400.
        (&get, "/api/v1/routes/w%65b", Reader, "", 200),
        (&get, "/api/v1/routes/shop%2Fcheckout", Reader, "", 404),
        (&get, "/api/v1/routes/shop%2", Reader, "", 400),
        (&get, "/api/v1/routes/%FF", Reader, "", 400),
        (&get, "/api/v1/routes/%2e%2E", Reader, "", 404),
        (
            &post,
            "/api/v1/routes/shop%2Fcheckout/abort",
            Writer,
            "",
            404,
        ),
        (&post, "/api/v1/routes/shop%ZZ/abort", Writer, "", 400),
        (&delete, "/api/v1/routes/web", Writer, "", 405),
        (&post, "/api/v1/routes", Writer, "", 405),
        // Counters: read like the routes.
        (&get, "/api/v1/counters", Anonymous, "", 401),
        (&get, "/api/v1/counters", Wrong, "", 401),
        (&get, "/api/v1/counters", Reader, "", 200),
        (&get, "/api/v1/counters", Writer, "", 200),
        (&get, "/api/v1/counters/", Reader, "", 200),
        (&post, "/api/v1/counters", Anonymous, "", 405),
        (&post, "/api/v1/counters", Reader, "", 405),
        (&post, "/api/v1/counters", Writer, "", 405),
        (&put, "/api/v1/counters", Writer, "", 405),
        (&get, "/api/v1/counters/web", Reader, "", 404),
        // Events: read like the routes (streams that open: see below).
        (&get, "/api/v1/events", Anonymous, "", 401),
        (&get, "/api/v1/events", Wrong, "", 401),
        (&post, "/api/v1/events", Writer, "", 405),
        (&get, "/api/v1/events/web", Reader, "", 404),
        // The dashboard's files: no token (they hold no data).
        (&get, "/ui", Anonymous, "", 308),
        (&get, "/ui/", Anonymous, "", 200),
        (&get, "/ui/", Wrong, "", 200),
        (&get, "/ui/index.html", Anonymous, "", 200),
        (&get, "/ui/app.js", Anonymous, "", 200),
        (&get, "/ui/app.css", Anonymous, "", 200),
        (&get, "/ui/icon.svg", Anonymous, "", 200),
        (&get, "/ui/nosuch.js", Anonymous, "", 404),
        (&get, "/ui/app.js/x", Anonymous, "", 404),
        (&get, "/ui/../api/v1/routes", Anonymous, "", 404),
        (&post, "/ui/", Writer, "", 405),
        (&post, "/ui/app.js", Writer, "", 405),
        // Commands: the writer token only.
        (&post, "/api/v1/routes/web/pause", Anonymous, "", 401),
        (&post, "/api/v1/routes/web/pause", Wrong, "", 401),
        (&post, "/api/v1/routes/web/pause", Reader, "", 403),
        (&get, "/api/v1/routes/web/pause", Writer, "", 405),
        (&post, "/api/v1/routes/web/launch", Writer, "", 404),
        (&post, "/api/v1/routes/web/pause", Writer, "", 200),
        (&post, "/api/v1/routes/web/pause", Writer, "", 409),
        (&post, "/api/v1/routes/web/resume", Writer, "", 200),
        (&post, "/api/v1/routes/web/resume", Writer, "", 409),
        (&post, "/api/v1/routes/web/retry", Writer, "", 409),
        (&post, "/api/v1/routes/nosuch/abort", Writer, "", 404),
        (&post, "/api/v1/routes/fixed/abort", Writer, "", 409),
        // Bodies are checked before the command runs.
        (&post, "/api/v1/routes/web/promote", Writer, "[1]", 400),
        (&post, "/api/v1/routes/web/promote", Writer, "{", 400),
        (
            &post,
            "/api/v1/routes/web/promote",
            Writer,
            r#"{"full": "yes"}"#,
            400,
        ),
        (
            &post,
            "/api/v1/routes/web/abort",
            Writer,
            r#"{"full": true}"#,
            400,
        ),
        (
            &post,
            "/api/v1/routes/web/promote",
            Writer,
            r#"{"full": true, "full": false}"#,
            400,
        ),
        (&post, "/api/v1/promote", Writer, r#"{"x": 1, "x": 1}"#, 400),
        (&post, "/api/v1/routes/web/promote", Writer, "{}", 200),
        (
            &post,
            "/api/v1/routes/web/promote",
            Writer,
            r#"{"full": true}"#,
            200,
        ),
        (&post, "/api/v1/routes/web/promote", Writer, "", 409),
        (&post, "/api/v1/routes/web/abort", Writer, "", 200),
        (&post, "/api/v1/routes/web/abort", Writer, "", 409),
        (&post, "/api/v1/routes/web/retry", Reader, "", 403),
        (&post, "/api/v1/routes/web/retry", Writer, "", 200),
        // Promote every Paused route; reload.
        (&post, "/api/v1/promote", Reader, "", 403),
        (&get, "/api/v1/promote", Writer, "", 405),
        (&post, "/api/v1/promote", Writer, r#"{"full": true"#, 400),
        (
            &post,
            "/api/v1/promote",
            Writer,
            r#"{"routes": ["web"]}"#,
            400,
        ),
        (&post, "/api/v1/promote", Writer, "{}", 200),
        (&post, "/api/v1/promote", Writer, "", 200),
        (&post, "/api/v1/reload", Anonymous, "", 401),
        (&post, "/api/v1/reload", Reader, "", 403),
        (&get, "/api/v1/reload", Writer, "", 405),
        // A reload takes no body: fields, or more than 64 KiB, are refused.
        (&post, "/api/v1/reload", Writer, big_body.as_str(), 413),
        (&post, "/api/v1/reload", Writer, "[1]", 400),
        // The config file does not exist: refused, the config in force stays.
        (&post, "/api/v1/reload", Writer, "", 400),
    ];
    for (method, path, caller, body, want) in table {
        let answer = call(&admin, method, path, caller, body, local).await;
        assert_eq!(
            answer.status.as_u16(),
            want,
            "{method} {path} as {caller:?} with {body:?}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        if !answer.status.is_success()
            && !answer.status.is_redirection()
            && !path.ends_with("readyz")
        {
            assert!(
                !error_of(&answer).is_empty(),
                "{method} {path}: a refusal names its reason"
            );
        }
    }
    admin.set_ready(true);
    let ready = call(&admin, &get, "/readyz", Anonymous, "", local).await;
    assert_eq!(ready.status, StatusCode::OK);
    let web = in_memory.process.control.lock().await.rollouts["web"].clone();
    assert_eq!(web.phase, Phase::Progressing, "retried, at its first step");
    assert!(
        in_memory
            .store
            .get("web")
            .is_some_and(|s| s.rollout_seq == web.rollout_seq),
        "every transition was saved"
    );
}

#[tokio::test]
async fn refusals_say_what_is_wrong() {
    use Caller::*;
    let (_in_memory, admin) = started().await;
    let local = peer([127, 0, 0, 1]);
    let cases: [(&Method, &str, Caller, Refusal); 7] = [
        (
            &Method::GET,
            "/api/v1/routes/shop%2Fnosuch",
            Reader,
            Refusal::NoRoute {
                route: "shop/nosuch".to_owned(),
            },
        ),
        (
            &Method::POST,
            "/api/v1/routes/shop%2/pause",
            Writer,
            Refusal::BadRouteName {
                segment: "shop%2".to_owned(),
                problem: "`%2` at byte 4 is not a percent-escape (% and two hex digits)".to_owned(),
            },
        ),
        (
            &Method::GET,
            "/api/v1/routes",
            Anonymous,
            Refusal::MissingToken,
        ),
        (&Method::GET, "/api/v1/routes", Wrong, Refusal::WrongToken),
        (
            &Method::POST,
            "/api/v1/routes/web/abort",
            Reader,
            Refusal::ReaderCannotWrite,
        ),
        (
            &Method::GET,
            "/api/v1/routes/nosuch",
            Reader,
            Refusal::NoRoute {
                route: "nosuch".to_owned(),
            },
        ),
        (
            &Method::POST,
            "/api/v1/routes/web",
            Writer,
            Refusal::MethodNotAllowed {
                method: Method::POST,
                path: "/api/v1/routes/web".to_owned(),
            },
        ),
    ];
    for (method, path, caller, want) in cases {
        let answer = call(&admin, method, path, caller, "", local).await;
        assert_eq!(answer.status, want.status(), "{method} {path}");
        assert_eq!(error_of(&answer), want.to_string(), "{method} {path}");
    }
}

#[tokio::test]
async fn without_tokens_only_local_callers_are_answered() {
    let text = fixtures::config_text(None, &fixtures::route("web", Some("[{pause: {}}]")));
    let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let admin = AdminState::new(Arc::clone(&in_memory.process));
    for (from, want) in [
        (peer([127, 0, 0, 1]), StatusCode::OK),
        (peer([10, 0, 0, 7]), StatusCode::FORBIDDEN),
    ] {
        let answer = call(
            &admin,
            &Method::GET,
            "/api/v1/routes",
            Caller::Anonymous,
            "",
            from,
        )
        .await;
        assert_eq!(answer.status, want, "from {from}");
    }
    let far = call(
        &admin,
        &Method::POST,
        "/api/v1/routes/web/promote",
        Caller::Anonymous,
        "",
        peer([10, 0, 0, 7]),
    )
    .await;
    assert_eq!(error_of(&far), Refusal::LocalOnly.to_string());
}

#[tokio::test]
async fn answers_read_as_the_status_type() {
    let (in_memory, admin) = started().await;
    let local = peer([127, 0, 0, 1]);
    let answer = call(
        &admin,
        &Method::GET,
        "/api/v1/routes",
        Caller::Reader,
        "",
        local,
    )
    .await;
    let routes: Vec<RouteStatus> = serde_json::from_slice(&answer.body).expect("statuses");
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["web", "fixed"]);
    assert_eq!(routes[0].phase, Phase::Progressing);
    assert_eq!((routes[0].step_index, routes[0].step_count), (Some(0), 3));
    assert_eq!(routes[0].canary_weight, 20.0);
    assert_eq!((routes[1].strategy, routes[1].rollout_seq), (false, None));
    // The JSON keys are the contract's, in the order they always had.
    let raw: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let keys: Vec<&str> = raw[0]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "analysis",
            "canaryRevision",
            "canaryWeight",
            "configBehind",
            "held",
            "message",
            "name",
            "pauseDeadlineMs",
            "phase",
            "promotedRevision",
            "rolloutSeq",
            "stableRevision",
            "stepCount",
            "stepIndex",
            "steps",
            "strategy",
        ]
    );

    // The window is read on the process's clock: none yet at the start,
    // 1.5 s once the clock moved by that much.
    let window = |routes: &[RouteStatus]| routes[0].analysis.as_ref().map(|a| a.window_seconds);
    assert_eq!(window(&routes), Some(0.0));
    in_memory
        .clock
        .advance(std::time::Duration::from_millis(1_500));
    let later = call(
        &admin,
        &Method::GET,
        "/api/v1/routes",
        Caller::Reader,
        "",
        local,
    )
    .await;
    let later: Vec<RouteStatus> = serde_json::from_slice(&later.body).expect("statuses");
    assert_eq!(window(&later), Some(1.5));

    let promoted = call(
        &admin,
        &Method::POST,
        "/api/v1/promote",
        Caller::Writer,
        "",
        local,
    )
    .await;
    let answer: PromoteAll = serde_json::from_slice(&promoted.body).expect("promote answer");
    assert_eq!(answer.promoted, Vec::<String>::new(), "nothing was Paused");
    assert_eq!(answer.error, None);
}

#[tokio::test]
async fn counters_answer_every_route_of_this_replica() {
    let (in_memory, admin) = started().await;
    let admin = admin.with_replica(Replica {
        name: "weir-7".to_owned(),
        started_at: 1_234,
    });
    let metrics = in_memory.process.proxy.metrics();
    let canary = metrics.role(&std::sync::Arc::from("web"), Role::Canary);
    canary.record(200, std::time::Duration::from_millis(1));
    canary.record(502, std::time::Duration::from_millis(1));
    let answer = call(
        &admin,
        &Method::GET,
        "/api/v1/counters",
        Caller::Reader,
        "",
        peer([127, 0, 0, 1]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let counters: ReplicaCounters = serde_json::from_slice(&answer.body).expect("counters");
    assert_eq!(
        (counters.replica.as_str(), counters.started_at),
        ("weir-7", 1_234)
    );
    let routes: Vec<&str> = counters.routes.keys().map(String::as_str).collect();
    assert_eq!(routes, ["fixed", "web"]);
    let web = &counters.routes["web"];
    assert_eq!((web.canary.requests, web.canary.errors), (2, 1));
    assert_eq!(web.stable.requests, 0);
    // The run of latency slots counted in, from `latencyFrom`.
    let from = web.canary.latency_from.expect("a run of slots");
    assert!(from + web.canary.latency.len() <= weir_proxy::metrics::LATENCY_SLOTS);
    assert_eq!(web.canary.latency.iter().sum::<u64>(), 2);
    let raw: Value = serde_json::from_slice(&answer.body).expect("JSON");
    let keys: Vec<&str> = raw
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["replica", "routes", "startedAt"]);
}

/// The first frame of an event stream, and the rest of the stream.
async fn first_frame(answer: http::Response<super::AdminBody>) -> (String, super::AdminBody) {
    let mut body = answer.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("a frame within 10 s")
        .expect("a frame")
        .expect("no error");
    let data = frame.into_data().expect("a data frame");
    (String::from_utf8_lossy(&data).into_owned(), body)
}

/// The JSON of an SSE frame's `data:` line.
fn frame_data(frame: &str) -> Value {
    let data = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line in {frame:?}"));
    serde_json::from_str(data).expect("JSON data")
}

async fn open_events(
    admin: &AdminState,
    token: Option<&str>,
    from: SocketAddr,
) -> http::Response<super::AdminBody> {
    let mut request = Request::get("/api/v1/events");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    admin.handle(request, from).await
}

#[tokio::test]
async fn event_streams_open_with_a_snapshot_saying_what_the_caller_may_do() {
    let (_in_memory, admin) = started().await;
    let local = peer([127, 0, 0, 1]);
    for (token, access) in [(READER, "read"), (WRITER, "write")] {
        let answer = open_events(&admin, Some(token), local).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.headers()[header::CONTENT_TYPE],
            "text/event-stream",
            "{token}"
        );
        let (frame, _stream) = first_frame(answer).await;
        assert!(frame.starts_with("event: snapshot\n"), "{frame}");
        let snapshot = frame_data(&frame);
        assert_eq!(snapshot["access"], access, "{token}: {snapshot}");
        assert_eq!(snapshot["tokens"], true);
        let names: Vec<&str> = snapshot["routes"]
            .as_array()
            .map(|r| r.iter().filter_map(|s| s["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["web", "fixed"], "{snapshot}");
    }

    // Without tokens, a local caller may do everything; a far one nothing.
    let text = fixtures::config_text(None, &fixtures::route("web", Some("[{pause: {}}]")));
    let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let open = AdminState::new(Arc::clone(&in_memory.process));
    let (frame, _stream) = first_frame(open_events(&open, None, local).await).await;
    let snapshot = frame_data(&frame);
    assert_eq!(
        (&snapshot["access"], &snapshot["tokens"]),
        (&Value::from("write"), &Value::from(false))
    );
    let far = open_events(&open, None, peer([10, 0, 0, 7])).await;
    assert_eq!(far.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_command_reaches_an_open_event_stream_as_a_transition_then_a_command() {
    let (in_memory, admin) = started().await;
    let local = peer([127, 0, 0, 1]);
    let (_, mut stream) = first_frame(open_events(&admin, Some(READER), local).await).await;
    let answer = call(
        &admin,
        &Method::POST,
        "/api/v1/routes/web/pause",
        Caller::Writer,
        "",
        local,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let refused = call(
        &admin,
        &Method::POST,
        "/api/v1/routes/web/pause",
        Caller::Writer,
        "",
        local,
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let mut events = Vec::new();
    while events.len() < 3 {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), stream.frame())
            .await
            .expect("an event within 10 s")
            .expect("a frame")
            .expect("no error");
        let text = String::from_utf8_lossy(frame.data_ref().expect("data")).into_owned();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or_default()
            .to_owned();
        events.push((name, frame_data(&text)));
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["transition", "command", "command"]);
    let (_, held) = &events[0];
    assert_eq!(
        (&held["route"], &held["kind"]),
        (&Value::from("web"), &Value::from("held"))
    );
    assert_eq!(held["status"]["held"], true, "{held}");
    assert_eq!(
        (&events[1].1["ok"], &events[1].1["status"]),
        (&Value::from(true), &Value::from(200))
    );
    assert_eq!(events[2].1["status"], 409);
    assert!(
        events[2].1["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a refused command says why: {}",
        events[2].1
    );
    drop(in_memory);
}

#[tokio::test]
async fn a_refused_reload_reaches_an_open_event_stream_with_its_errors() {
    let (_in_memory, admin) = started().await;
    let local = peer([127, 0, 0, 1]);
    let (_, mut stream) = first_frame(open_events(&admin, Some(READER), local).await).await;
    let refused = call(
        &admin,
        &Method::POST,
        "/api/v1/reload",
        Caller::Writer,
        "",
        local,
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), stream.frame())
        .await
        .expect("an event within 10 s")
        .expect("a frame")
        .expect("no error");
    let text = String::from_utf8_lossy(frame.data_ref().expect("data")).into_owned();
    assert!(text.contains("event: reload\n"), "{text}");
    let reload = frame_data(&text);
    assert_eq!(
        (&reload["applied"], &reload["trigger"]),
        (&Value::from(false), &Value::from("api"))
    );
    assert!(
        reload["errors"].as_array().is_some_and(|e| !e.is_empty()),
        "the errors are named: {reload}"
    );
}
