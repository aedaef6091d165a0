//! The admin client against a fake admin API on a real socket: canned JSON,
//! the bearer token checked, the promote body recorded. Covers success, 409,
//! 404, 401/403, a timeout and an unreachable port, and the watch loop.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use weir_control::client::{
    AdminClient, AdminUrl, ClientError, Exit, Phase, RouteCommand, watch, watch_json,
};
use weir_e2e::ClosedPort;

const WRITER: &str = "writer-token";
const READER: &str = "reader-token";

/// A fake admin API and what it was sent.
struct FakeAdmin {
    url: AdminUrl,
    promote_bodies: Arc<Mutex<Vec<Value>>>,
}

fn status(phase: &str, step_index: Option<usize>, weight: f64, message: &str) -> Value {
    json!({
        "name": "checkout", "phase": phase, "stepIndex": step_index, "stepCount": 5,
        "steps": [{"setWeight": 5}, {"pause": {"duration": "30s"}}, {"setWeight": 25},
                  {"pause": {}}, {"setWeight": 100}],
        "canaryWeight": weight, "stableRevision": "v1", "canaryRevision": "v2",
        "promotedRevision": if phase == "Promoted" { json!("v2") } else { Value::Null },
        "configBehind": phase == "Promoted", "held": false, "pauseDeadlineMs": null,
        "rolloutSeq": 1, "strategy": true, "message": message,
        "analysis": {
            "windowSeconds": 30.0,
            "stable": {"requests": 900, "errors": 9, "errorRate": 0.01, "latencyP99Ms": 12.5},
            "canary": {"requests": 100, "errors": 0, "errorRate": 0.0, "latencyP99Ms": 15.0},
            "verdict": "pass", "reason": "canary error rate 0.000 is within 0.050", "failures": 0
        }
    })
}

fn progressing() -> Value {
    status("Progressing", Some(2), 25.0, "step 3/5: setWeight 25")
}

fn answer(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
}

fn refuse(code: StatusCode, error: &str) -> Response<Full<Bytes>> {
    answer(code, &json!({ "error": error }))
}

async fn handle(
    request: Request<Incoming>,
    promote_bodies: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let writes = parts.method == Method::POST;
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match token {
        Some(WRITER) => {}
        Some(READER) if !writes => {}
        Some(READER) => return Ok(refuse(StatusCode::FORBIDDEN, "a reader token cannot write")),
        _ => {
            return Ok(refuse(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            ));
        }
    }
    let path = parts.uri.path().to_owned();
    let response = match (parts.method, path.as_str()) {
        (Method::GET, "/api/v1/routes") => answer(
            StatusCode::OK,
            &json!([progressing(), {"name": "search", "phase": "Healthy", "strategy": false,
                                    "canaryWeight": 10.0, "steps": [], "stepCount": 0}]),
        ),
        (Method::GET, "/api/v1/routes/checkout") => answer(StatusCode::OK, &progressing()),
        (Method::POST, "/api/v1/routes/checkout/promote") => {
            let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let full = sent["full"] == json!(true);
            if let Ok(mut bodies) = promote_bodies.lock() {
                bodies.push(sent);
            }
            if full {
                answer(
                    StatusCode::OK,
                    &status("Promoted", Some(5), 100.0, "promoted: canary serves 100%"),
                )
            } else {
                answer(StatusCode::OK, &status("Paused", Some(1), 5.0, "pause 30s"))
            }
        }
        (Method::POST, "/api/v1/routes/checkout/abort") => answer(
            StatusCode::OK,
            &status("Aborted", Some(2), 0.0, "aborted by operator"),
        ),
        (Method::POST, "/api/v1/routes/checkout/retry") => refuse(
            StatusCode::CONFLICT,
            "retry applies only to an Aborted rollout; checkout is Progressing",
        ),
        (Method::POST, "/api/v1/promote") => answer(
            StatusCode::OK,
            &json!({"promoted": ["checkout"], "routes": [status("Progressing", Some(2), 25.0, "")]}),
        ),
        (Method::POST, "/api/v1/routes/broken/pause") => answer(StatusCode::OK, &json!("nonsense")),
        (_, path) if path.starts_with("/api/v1/routes/") => {
            refuse(StatusCode::NOT_FOUND, "no route named \"ghost\"")
        }
        _ => refuse(StatusCode::NOT_FOUND, "no admin endpoint"),
    };
    Ok(response)
}

async fn start_fake_admin() -> FakeAdmin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let promote_bodies = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::clone(&promote_bodies);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let bodies = Arc::clone(&bodies);
            tokio::spawn(async move {
                let service = service_fn(move |request| handle(request, Arc::clone(&bodies)));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeAdmin {
        url: url_of(addr),
        promote_bodies,
    }
}

fn url_of(addr: SocketAddr) -> AdminUrl {
    AdminUrl::parse(&format!("http://{addr}")).expect("a loopback URL")
}

fn client(url: &AdminUrl, token: Option<&str>) -> AdminClient {
    AdminClient::new(url.clone(), token)
        .expect("a valid token")
        .with_timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn reads_statuses() {
    let fake = start_fake_admin().await;
    let reader = client(&fake.url, Some(READER));

    let routes = reader.routes().await.expect("routes");
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].phase, Phase::Progressing);
    assert_eq!(routes[1].name, "search");
    assert!(!routes[1].strategy);

    let route = reader.route("checkout").await.expect("one route");
    assert_eq!(route.step_index, Some(2));
    assert_eq!(route.canary_weight, 25.0);

    // --json prints what the server sent: same keys, same order.
    let raw = reader.route_json("checkout").await.expect("raw JSON");
    assert_eq!(raw, progressing().to_string());
    let raw = reader.routes_json().await.expect("raw JSON");
    assert!(raw.starts_with('['), "{raw}");
}

#[tokio::test]
async fn commands_return_the_new_status() {
    let fake = start_fake_admin().await;
    let writer = client(&fake.url, Some(WRITER));

    let paused = writer
        .command("checkout", RouteCommand::Promote { full: false })
        .await
        .expect("promote");
    assert_eq!(
        weir_control::client::render::command_line(&paused),
        "checkout: Paused at step 2/5, canary 5%: pause 30s"
    );
    let promoted = writer
        .command("checkout", RouteCommand::Promote { full: true })
        .await
        .expect("promote --full");
    assert_eq!(promoted.phase, Phase::Promoted);
    assert!(promoted.config_behind);
    let bodies = fake.promote_bodies.lock().expect("not poisoned").clone();
    assert_eq!(bodies, vec![json!({"full": false}), json!({"full": true})]);

    let aborted = writer
        .command("checkout", RouteCommand::Abort)
        .await
        .expect("abort");
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(aborted.canary_weight, 0.0);

    let all = writer.promote_all().await.expect("promote --all");
    assert_eq!(all.promoted, vec!["checkout".to_owned()]);
    assert_eq!(all.routes.len(), 1);
}

#[tokio::test]
async fn refusals_map_to_exit_codes() {
    let fake = start_fake_admin().await;
    let writer = client(&fake.url, Some(WRITER));

    let conflict = writer
        .command("checkout", RouteCommand::Retry)
        .await
        .expect_err("409");
    assert_eq!(conflict.exit(), Exit::NotApplicable);
    assert_eq!(conflict.exit().code(), 3);
    assert_eq!(
        conflict.to_string(),
        "409: retry applies only to an Aborted rollout; checkout is Progressing"
    );

    let unknown = writer.route("ghost").await.expect_err("404");
    assert_eq!(unknown.exit().code(), 4);
    assert_eq!(unknown.to_string(), "404: no route named \"ghost\"");
    let unknown = writer
        .command("ghost", RouteCommand::Pause)
        .await
        .expect_err("404");
    assert_eq!(unknown.exit(), Exit::UnknownRoute);

    let anonymous = client(&fake.url, None).routes().await.expect_err("401");
    assert_eq!(anonymous.exit().code(), 5);
    assert_eq!(anonymous.to_string(), "401: missing or wrong bearer token");
    let wrong = client(&fake.url, Some("guess"))
        .routes()
        .await
        .expect_err("401");
    assert_eq!(wrong.exit(), Exit::Auth);
    let reader = client(&fake.url, Some(READER))
        .command("checkout", RouteCommand::Abort)
        .await
        .expect_err("403");
    assert_eq!(reader.exit(), Exit::Auth);
    assert!(reader.to_string().starts_with("403: "), "{reader}");

    let nonsense = writer
        .command("broken", RouteCommand::Pause)
        .await
        .expect_err("not a status");
    assert!(
        matches!(nonsense, ClientError::BadAnswer { .. }),
        "{nonsense:?}"
    );
    assert_eq!(nonsense.exit().code(), 1);
}

#[tokio::test]
async fn an_unreachable_weir_exits_6_naming_the_url() {
    let closed = ClosedPort::bind();
    let addr = closed.addr;
    let url = url_of(addr);
    let error = client(&url, Some(WRITER))
        .routes()
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{error:?}"
    );
    assert_eq!(error.exit().code(), 6);
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("cannot reach weir at http://{addr}: ")),
        "{text}"
    );
}

#[tokio::test]
async fn a_silent_weir_times_out_with_exit_6() {
    // Accepts connections (the kernel queues them) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = url_of(listener.local_addr().expect("local address"));
    let error = client(&url, None)
        .with_timeout(Duration::from_millis(200))
        .routes()
        .await
        .expect_err("no answer");
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert_eq!(error.exit(), Exit::Unreachable);
    drop(listener);
}

/// A watch output that signals once it has received `want` frames (one
/// flush per frame), so tests stop the watch on an event, not a sleep.
struct Frames {
    text: Vec<u8>,
    flushes: usize,
    want: usize,
    done: Option<oneshot::Sender<()>>,
}

impl Frames {
    fn new(want: usize) -> (Frames, impl Future<Output = ()>) {
        let (done, stop) = oneshot::channel();
        let frames = Frames {
            text: Vec::new(),
            flushes: 0,
            want,
            done: Some(done),
        };
        (frames, async move {
            let _ = stop.await;
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.text.clone()).expect("UTF-8")
    }
}

impl Write for Frames {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        if self.flushes >= self.want {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
        Ok(())
    }
}

/// Runs a watch with a 20 ms interval until `out` has its frames; fails the
/// test if that takes 10 s.
async fn run_watch(
    client: &AdminClient,
    route: Option<&str>,
    terminal: bool,
    frames: usize,
) -> (Exit, String) {
    let (mut out, stop) = Frames::new(frames);
    let watching = watch(
        client,
        route,
        Duration::from_millis(20),
        &mut out,
        terminal,
        stop,
    );
    let exit = tokio::time::timeout(Duration::from_secs(10), watching)
        .await
        .expect("the watch stops");
    (exit, out.text())
}

#[tokio::test]
async fn watch_draws_frames_until_stopped() {
    let fake = start_fake_admin().await;
    let reader = client(&fake.url, Some(READER));
    let (exit, text) = run_watch(&reader, Some("checkout"), false, 2).await;
    assert_eq!(exit, Exit::Success);
    assert!(text.contains("weir status checkout · http://"), "{text}");
    assert!(text.contains("  ✔ 2. pause 30s\n"), "{text}");
    assert!(text.contains("  ▶ 3. setWeight 25\n"), "{text}");
    assert!(text.contains("  ○ 4. pause (until promote)\n"), "{text}");
    // Not a terminal: no escape codes, frames separated by a line of dashes.
    assert!(!text.contains('\x1b'));
    assert_eq!(
        text.matches(&format!("\n{}\n", "-".repeat(80))).count(),
        1,
        "{text}"
    );

    let (exit, text) = run_watch(&reader, None, true, 2).await;
    assert_eq!(exit, Exit::Success);
    assert!(text.starts_with("\x1b[2J\x1b[H"), "{text}");
    assert_eq!(text.matches("\x1b[2J\x1b[H").count(), 2, "{text}");
    assert!(text.contains("Name:          search"), "{text}");
}

/// Runs `weir status --watch --json`'s loop with a 20 ms interval until
/// `out` has its lines; fails the test if that takes 10 s.
async fn run_watch_json(client: &AdminClient, route: Option<&str>, lines: usize) -> (Exit, String) {
    let (mut out, stop) = Frames::new(lines);
    let watching = watch_json(client, route, Duration::from_millis(20), &mut out, stop);
    let exit = tokio::time::timeout(Duration::from_secs(10), watching)
        .await
        .expect("the watch stops");
    (exit, out.text())
}

#[tokio::test]
async fn watch_json_prints_one_document_per_line() {
    let fake = start_fake_admin().await;
    let reader = client(&fake.url, Some(READER));
    let (exit, text) = run_watch_json(&reader, Some("checkout"), 2).await;
    assert_eq!(exit, Exit::Success);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        let status: Value = serde_json::from_str(line).expect("one JSON document per line");
        assert_eq!(status["name"], "checkout", "{line}");
    }

    let (exit, text) = run_watch_json(&reader, None, 3).await;
    assert_eq!(exit, Exit::Success);
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let routes: Value = serde_json::from_str(line).expect("one JSON document per line");
        assert_eq!(routes.as_array().map(Vec::len), Some(2), "{line}");
    }
    assert!(!text.contains('\x1b'), "{text}");

    let (exit, text) = run_watch_json(&client(&fake.url, Some("guess")), None, 1).await;
    assert_eq!(exit, Exit::Auth);
    assert!(text.is_empty(), "{text}");
}

#[tokio::test]
async fn watch_keeps_trying_while_weir_is_unreachable() {
    let closed = ClosedPort::bind();
    let url = url_of(closed.addr);
    let (exit, text) = run_watch(&client(&url, None), None, false, 3).await;
    assert_eq!(exit, Exit::Success);
    assert_eq!(text.matches("cannot reach weir at").count(), 3, "{text}");
    assert!(text.contains("retrying"), "{text}");
}

#[tokio::test]
async fn watch_stops_on_a_refusal_before_the_first_answer() {
    let fake = start_fake_admin().await;
    let (exit, text) = run_watch(&client(&fake.url, Some("guess")), None, false, 1).await;
    assert_eq!(exit, Exit::Auth);
    assert!(text.is_empty(), "{text}");
}
