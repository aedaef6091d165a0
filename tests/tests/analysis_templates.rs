//! Analysis templates against a real Prometheus scraping weir every second,
//! and against a small web endpoint: an `analysis` step passes for a
//! healthy canary, aborts a canary the fake upstream makes fail, and a
//! query Prometheus cannot parse is an errored measurement carrying
//! Prometheus' own message.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use weir_e2e::{
    Load, LoadtestUpstream, Prometheus, ReservedPort, Route, Step, Strategy, Weir, WeirConfig,
    phase, promtool_check, step_index, wait_until,
};

/// Prometheus' start, two scrapes and the run: slack for 2 busy cores.
const LIMIT: Duration = Duration::from_secs(60);

/// The canary's 5xx ratio over the last 10 s; empty until Prometheus has
/// two scrapes of the route's canary requests.
const ERROR_RATIO: &str = "(sum(rate(weir_http_requests_total{route=\"{{args.route}}\",role=\"canary\",code=~\"5..\"}[10s])) or vector(0)) / sum(rate(weir_http_requests_total{route=\"{{args.route}}\",role=\"canary\"}[10s]))";

fn templates(prometheus: &str) -> String {
    format!(
        r#"analysisTemplates:
  - name: errors
    args: [{{name: route}}, {{name: max, value: "0.05"}}]
    metrics:
      - name: error-ratio
        interval: 1s
        count: 2
        successCondition: len(result) == 1 && result[0] <= {{{{args.max}}}}
        provider:
          prometheus:
            address: {prometheus}
            query: '{ERROR_RATIO}'
  - name: errors-in-background
    args: [{{name: route}}]
    metrics:
      - name: error-ratio
        interval: 1s
        consecutiveErrorLimit: 120
        successCondition: len(result) == 0 || result[0] <= 0.05
        provider:
          prometheus:
            address: {prometheus}
            query: '{ERROR_RATIO}'
  - name: broken
    metrics:
      - name: syntax
        consecutiveErrorLimit: 0
        provider:
          prometheus:
            address: {prometheus}
            query: sum(rate(weir_http_requests_total[1m])) by
"#
    )
}

/// setWeight 50, wait for promote (the test promotes once Prometheus has
/// data), the analysis step, then 100 %. The built-in judge cannot fail
/// (`maxErrorRate: 1`), so only the template decides.
fn route(name: &str, stable: SocketAddr, canary: SocketAddr, analysis: &str) -> Route {
    let strategy = Strategy::new([
        Step::SetWeight(50.0),
        Step::Pause(None),
        Step::Raw(analysis.to_owned()),
        Step::SetWeight(100.0),
    ])
    .max_error_rate(1.0)
    .compare_to_stable(false);
    Route::rollout(name, &[stable], &[canary], strategy).path_prefix(&format!("/{name}"))
}

fn uses(template: &str, route: &str) -> String {
    format!(
        "analysis: {{ templates: [{{ templateName: {template} }}], args: [{{ name: route, value: {route} }}] }}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_templates_pass_abort_and_report_query_errors() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let failing = LoadtestUpstream::start("failing", &["--error-rate", "1"]);
    let prometheus_port = ReservedPort::bind();
    let prometheus_addr = prometheus_port.addr;
    let prometheus_url = format!("http://{prometheus_addr}");
    let config = WeirConfig::new([
        route("good", stable.addr, canary.addr, &uses("errors", "good")),
        route("bad", stable.addr, failing.addr, &uses("errors", "bad")),
        // A background run for the whole rollout, at a step that waits.
        Route::rollout(
            "background",
            &[stable.addr],
            &[failing.addr],
            Strategy::new([Step::SetWeight(50.0), Step::Pause(None)])
                .max_error_rate(1.0)
                .compare_to_stable(false)
                .background("templates: [{templateName: errors-in-background}]")
                .background("args: [{name: route, value: background}]"),
        )
        .path_prefix("/background"),
        // No traffic and no `analysis` block: the steps go by commands.
        Route::rollout(
            "broken",
            &[stable.addr],
            &[canary.addr],
            Strategy::new([
                Step::SetWeight(50.0),
                Step::Pause(None),
                Step::Raw("analysis: { templates: [{ templateName: broken }] }".to_owned()),
                Step::SetWeight(100.0),
            ]),
        )
        .path_prefix("/broken"),
    ])
    .extra(&templates(&prometheus_url));
    let weir = Weir::start(config).await;
    let prometheus = Prometheus::start(prometheus_port, &[weir.addrs.admin]).await;
    let loads = [
        Load::start(weir.addrs.http, "/good", 40, 2),
        Load::start(weir.addrs.http, "/bad", 40, 2),
        Load::start(weir.addrs.http, "/background", 40, 2),
    ];

    // Promote into the analysis step once Prometheus has the canaries'
    // requests of both routes.
    for name in ["good", "bad"] {
        let query = ERROR_RATIO.replace("{{args.route}}", name);
        wait_until(
            LIMIT,
            &format!("Prometheus has {name}'s canary rate"),
            || async {
                let result = prometheus.query(&query).await?;
                (result.as_array().is_some_and(|r| r.len() == 1)).then_some(())
            },
        )
        .await;
    }
    for name in ["good", "bad", "broken"] {
        weir.wait_status(name, LIMIT, "the pause", |s| step_index(s) == Some(1))
            .await;
        let answer = weir.command(name, "promote", None).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.text());
    }

    let good = weir
        .wait_status("good", LIMIT, "Promoted", |s| phase(s) != "Progressing")
        .await;
    assert_eq!(phase(&good), "Promoted", "{good:#}\n{}", weir.log());
    let bad = weir
        .wait_status("bad", LIMIT, "Aborted", |s| phase(s) != "Progressing")
        .await;
    assert_eq!(phase(&bad), "Aborted", "{bad:#}");
    let message = bad["message"].as_str().unwrap_or_default();
    assert!(message.contains("aborted (analysis_run)"), "{bad:#}");
    assert!(message.contains("Failed"), "{bad:#}");
    let broken = weir
        .wait_status("broken", LIMIT, "Aborted", |s| phase(s) != "Progressing")
        .await;
    assert_eq!(phase(&broken), "Aborted", "{broken:#}");

    let background = weir
        .wait_status("background", LIMIT, "Aborted", |s| phase(s) == "Aborted")
        .await;
    assert!(
        background["message"].as_str().is_some_and(
            |m| m.contains("aborted (analysis_run): the background analysis run is Failed")
        ),
        "{background:#}"
    );
    let runs = analysis_runs(&weir, "background").await;
    assert_eq!(runs[0]["kind"], "background", "{runs:#}");
    assert_eq!(runs[0]["phase"], "Failed", "{runs:#}");

    // The runs, their metrics and measurements in the admin API.
    let runs = analysis_runs(&weir, "good").await;
    let run = &runs[0];
    assert_eq!(run["phase"], "Successful", "{runs:#}");
    assert_eq!(run["kind"], "step", "{runs:#}");
    assert_eq!(run["templates"], serde_json::json!(["errors"]));
    let metric = &run["metrics"][0];
    assert_eq!(metric["successful"], 2, "{runs:#}");
    assert!(
        metric["query"]
            .as_str()
            .is_some_and(|q| q.contains("route=\"good\"")),
        "the resolved query: {runs:#}"
    );
    let value = &metric["measurements"][0]["value"];
    assert!(value[0].as_f64().is_some_and(|v| v <= 0.05), "{runs:#}");

    let runs = analysis_runs(&weir, "bad").await;
    assert_eq!(runs[0]["phase"], "Failed", "{runs:#}");
    let measured = &runs[0]["metrics"][0]["measurements"][0];
    assert_eq!(measured["phase"], "Failed", "{runs:#}");
    assert!(
        measured["value"][0].as_f64().is_some_and(|v| v > 0.5),
        "{runs:#}"
    );

    let runs = analysis_runs(&weir, "broken").await;
    assert_eq!(runs[0]["phase"], "Error", "{runs:#}");
    let measured = &runs[0]["metrics"][0]["measurements"][0];
    assert_eq!(measured["phase"], "Error", "{runs:#}");
    let error = measured["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("Prometheus answered 400 Bad Request: bad_data:")
            && error.contains("parse error"),
        "Prometheus' own message: {runs:#}"
    );

    let m = weir.metrics().await;
    let counted = |route: &str, phase: &str| {
        m.sum(
            "weir_analysis_measurements_total",
            &[("route", route), ("phase", phase)],
        )
    };
    assert_eq!(counted("good", "Successful"), 2.0, "{}", m.text);
    assert_eq!(counted("bad", "Failed"), 1.0, "{}", m.text);
    assert_eq!(counted("broken", "Error"), 1.0, "{}", m.text);
    assert_eq!(
        m.sum(
            "weir_rollout_aborts_total",
            &[("route", "bad"), ("reason", "analysis_run")]
        ),
        1.0
    );
    promtool_check(&m.text);
    for load in loads {
        load.stop().await;
    }
}

async fn analysis_runs(weir: &Weir, route: &str) -> serde_json::Value {
    let path = format!("/api/v1/routes/{route}/analysisruns");
    let answer = weir.admin().get(&path).await.expect("GET analysisruns");
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    answer.json()
}

/// A web endpoint answering each request with the JSON `answer` gives for
/// its path.
async fn json_server(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the JSON server");
    let addr = listener.local_addr().expect("an address");
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = std::sync::Arc::clone(&answer);
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = answer(req.uri().path());
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A web endpoint answering `{"summary": {"failed": N}}` with N = 0 on
/// `/smoke` and 2 elsewhere.
async fn smoke_server() -> SocketAddr {
    json_server(|path| {
        let failed = if path == "/smoke" { 0 } else { 2 };
        format!(r#"{{"summary": {{"failed": {failed}, "passed": 12}}}}"#)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_templates_read_the_json_path() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let smoke = smoke_server().await;
    let template = format!(
        r#"analysisTemplates:
  - name: smoke
    args: [{{name: path}}]
    metrics:
      - name: smoke
        successCondition: result.failed == 0
        provider:
          web: {{url: "http://{smoke}{{{{args.path}}}}", method: POST, jsonBody: {{suite: checkout}}, jsonPath: "{{$.summary}}", timeoutSeconds: 5}}
"#
    );
    let step = |path: &str| {
        Step::Raw(format!(
            "analysis: {{ templates: [{{ templateName: smoke }}], args: [{{ name: path, value: {path} }}] }}"
        ))
    };
    let config = WeirConfig::new([
        Route::rollout(
            "pass",
            &[stable.addr],
            &[canary.addr],
            Strategy::new([
                Step::SetWeight(10.0),
                step("/smoke"),
                Step::SetWeight(100.0),
            ]),
        )
        .path_prefix("/pass"),
        Route::rollout(
            "fail",
            &[stable.addr],
            &[canary.addr],
            Strategy::new([
                Step::SetWeight(10.0),
                step("/smoke-bad"),
                Step::SetWeight(100.0),
            ]),
        )
        .path_prefix("/fail"),
    ])
    .extra(&template);
    let mut weir = Weir::start(config.clone()).await;
    let pass = weir
        .wait_status("pass", LIMIT, "Promoted", |s| phase(s) == "Promoted")
        .await;
    assert_eq!(step_index(&pass), Some(3), "{pass:#}");
    let fail = weir
        .wait_status("fail", LIMIT, "Aborted", |s| phase(s) == "Aborted")
        .await;
    assert!(
        fail["message"]
            .as_str()
            .is_some_and(|m| m.contains("analysis_run")),
        "{fail:#}"
    );
    let runs = analysis_runs(&weir, "pass").await;
    let metric = &runs[0]["metrics"][0];
    assert_eq!(metric["provider"], "web", "{runs:#}");
    assert_eq!(
        metric["request"],
        format!("POST http://{smoke}/smoke"),
        "{runs:#}"
    );
    assert_eq!(
        metric["measurements"][0]["value"],
        serde_json::json!({"failed": 0, "passed": 12}),
        "{runs:#}"
    );
    let runs = analysis_runs(&weir, "fail").await;
    assert_eq!(
        runs[0]["metrics"][0]["measurements"][0]["phase"], "Failed",
        "{runs:#}"
    );
    let counted = |m: &weir_e2e::Metrics, route: &str| {
        m.get(
            "weir_analysis_measurements_total",
            &[("route", route), ("phase", "Successful")],
        )
        .or_else(|| {
            m.get(
                "weir_analysis_measurements_total",
                &[("route", route), ("phase", "Failed")],
            )
        })
    };
    let m = weir.metrics().await;
    assert!(counted(&m, "fail").is_some(), "{}", m.text);

    // A route gone from the config takes its measurement series with it.
    let kept = WeirConfig {
        routes: config
            .routes
            .iter()
            .filter(|r| r.name == "pass")
            .cloned()
            .collect(),
        ..config
    };
    weir.reload(&kept).await;
    wait_until(LIMIT, "no measurement series of route fail", || async {
        let m = weir.metrics().await;
        (counted(&m, "fail").is_none() && counted(&m, "pass").is_some()).then_some(())
    })
    .await;
}

/// A web provider whose URL is wholly an argument: weir starts with it,
/// and the run calls the URL the step gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_url_wholly_from_an_argument_is_called_as_the_step_gives_it() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let smoke = smoke_server().await;
    let template = r#"analysisTemplates:
  - name: smoke
    args: [{name: url}]
    metrics:
      - name: smoke
        successCondition: result.failed == 0
        provider:
          web: {url: "{{args.url}}", jsonPath: "{$.summary}", timeoutSeconds: 5}
"#;
    let config = WeirConfig::new([Route::rollout(
        "whole",
        &[stable.addr],
        &[canary.addr],
        Strategy::new([
            Step::SetWeight(10.0),
            Step::Raw(format!(
                "analysis: {{ templates: [{{ templateName: smoke }}], args: [{{ name: url, value: \"http://{smoke}/smoke\" }}] }}"
            )),
            Step::SetWeight(100.0),
        ]),
    )
    .path_prefix("/whole")])
    .extra(template);
    let weir = Weir::start(config).await;
    let whole = weir
        .wait_status("whole", LIMIT, "Promoted", |s| phase(s) != "Progressing")
        .await;
    assert_eq!(phase(&whole), "Promoted", "{whole:#}\n{}", weir.log());
    let runs = analysis_runs(&weir, "whole").await;
    assert_eq!(runs[0]["phase"], "Successful", "{runs:#}");
    let metric = &runs[0]["metrics"][0];
    assert_eq!(
        metric["request"],
        format!("GET http://{smoke}/smoke"),
        "{runs:#}"
    );
    assert_eq!(metric["measurements"][0]["phase"], "Successful", "{runs:#}");
    assert_eq!(
        metric["measurements"][0]["value"],
        serde_json::json!({"failed": 0, "passed": 12}),
        "{runs:#}"
    );
}

/// A background run ends when a reload takes the route's strategy away:
/// it does not go on measuring (and calling its provider) for a rollout
/// that no longer exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_run_ends_when_a_reload_removes_the_strategy() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let smoke = smoke_server().await;
    let template = format!(
        r#"analysisTemplates:
  - name: smoke
    metrics:
      - name: smoke
        interval: 1s
        successCondition: result.failed == 0
        provider:
          web: {{url: "http://{smoke}/smoke", jsonPath: "{{$.summary}}", timeoutSeconds: 5}}
"#
    );
    let config = WeirConfig::new([Route::rollout(
        "bg",
        &[stable.addr],
        &[canary.addr],
        Strategy::new([Step::SetWeight(10.0), Step::Pause(None)])
            .background("templates: [{templateName: smoke}]"),
    )])
    .extra(&template);
    let mut weir = Weir::start(config.clone()).await;
    wait_until(LIMIT, "the background run measuring", || async {
        let runs = analysis_runs(&weir, "bg").await;
        let run = &runs[0];
        (run["phase"] == "Running" && run["metrics"][0]["measurements"][0].is_object())
            .then_some(())
    })
    .await;

    let fixed = config.with_route("bg", |mut route| {
        route.strategy = None;
        route
    });
    weir.reload(&fixed).await;
    let runs = wait_until(LIMIT, "the background run ended", || async {
        let runs = analysis_runs(&weir, "bg").await;
        (runs[0]["phase"] != "Running").then_some(runs)
    })
    .await;
    assert!(runs[0]["finishedAt"].is_string(), "{runs:#}");
}

/// A background run that held the rollout Inconclusive is started again
/// once an operator releases the hold, as Argo Rollouts starts a new run:
/// its old result does not hold every later step again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_run_released_from_inconclusive_runs_again() {
    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(2));
    let server = json_server({
        let failed = std::sync::Arc::clone(&failed);
        move |_| {
            let n = failed.load(std::sync::atomic::Ordering::SeqCst);
            format!(r#"{{"failed": {n}}}"#)
        }
    })
    .await;
    let template = format!(
        r#"analysisTemplates:
  - name: tests
    metrics:
      - name: tests
        interval: 1s
        successCondition: result.failed == 0
        failureCondition: result.failed > 5
        provider:
          web: {{url: "http://{server}/", timeoutSeconds: 5}}
"#
    );
    let config = WeirConfig::new([Route::rollout(
        "bg",
        &[stable.addr],
        &[canary.addr],
        Strategy::new([
            Step::SetWeight(10.0),
            Step::Pause(None),
            Step::SetWeight(20.0),
            Step::Pause(None),
        ])
        .background("templates: [{templateName: tests}]"),
    )])
    .extra(&template);
    let weir = Weir::start(config).await;
    let held = weir
        .wait_status("bg", LIMIT, "held by the Inconclusive run", |s| {
            s["held"] == true
                && s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Inconclusive"))
        })
        .await;
    let held_at = step_index(&held);

    // The tests pass now; the operator goes on.
    failed.store(0, std::sync::atomic::Ordering::SeqCst);
    let r = weir.command("bg", "promote", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let runs = wait_until(LIMIT, "a new background run measuring", || async {
        let runs = analysis_runs(&weir, "bg").await;
        let found = runs.as_array().is_some_and(|list| {
            list.iter().any(|run| {
                run["phase"] == "Running"
                    && run["metrics"][0]["measurements"][0]["phase"] == "Successful"
            })
        });
        found.then_some(runs)
    })
    .await;
    let s = weir.status("bg").await;
    assert_eq!(
        s["held"], false,
        "held again by the old result: {s:#}\n{runs:#}"
    );
    assert!(step_index(&s) > held_at, "{s:#}");
}
