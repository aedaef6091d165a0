//! AnalysisTemplates in Kubernetes mode (SPEC 13): a CanaryRoute's
//! `analysis` step runs an AnalysisTemplate of its namespace (the web
//! provider, against a small local endpoint) and the rollout is promoted;
//! a template that is missing, then invalid, holds the step with a
//! condition naming the template and the field while the route keeps
//! serving, and the template applied later lets the rollout proceed. A
//! CanaryRoute naming a good template meanwhile is never held up, and one
//! may name a template of `weir.yaml` too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use weir_e2e::{Cluster, FakeUpstream, count, send_many, wait_until};

const NAMESPACE: &str = "shop";

/// From the first list to a status write, and the analysis run: slack for
/// a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(30);

/// A web endpoint answering `{"summary": {"failed": 0}}`.
async fn smoke_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the smoke server");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|_: hyper::Request<hyper::body::Incoming>| async {
                    let body = r#"{"summary": {"failed": 0, "passed": 12}}"#;
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A template of the web provider asking `http://{{args.host}}/smoke`,
/// with the given success condition.
fn smoke_template(success: &str) -> Value {
    json!({
        "args": [{"name": "host"}],
        "metrics": [{
            "name": "smoke",
            "successCondition": success,
            "provider": {"web": {
                "url": "http://{{args.host}}/smoke",
                "jsonPath": "{$.summary}",
                "timeoutSeconds": 5
            }}
        }]
    })
}

/// A CanaryRoute at `path_prefix` whose second step runs `template`.
fn route_spec(path_prefix: &str, template: &str, host: &str) -> Value {
    json!({
        "pathPrefix": path_prefix,
        "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
        "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
        "strategy": {"steps": [
            {"setWeight": 20},
            {"analysis": {
                "templates": [{"templateName": template}],
                "args": [{"name": "host", "value": host}]
            }},
            {"setWeight": 100}
        ]}
    })
}

fn condition<'s>(status: &'s Value, type_: &str) -> Option<&'s Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn unresolved_message(status: &Value) -> Option<&str> {
    let found = condition(status, "AnalysisTemplateUnresolved")?;
    (found["status"] == "True").then(|| found["message"].as_str().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_template_runs_and_a_missing_one_holds_until_it_is_applied() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let smoke = smoke_server().await;
    let host = smoke.to_string();
    // A template of weir.yaml, which CanaryRoutes may name too.
    let file_template = r#"analysisTemplates:
  - name: from-file
    args: [{name: host}]
    metrics:
      - name: smoke
        successCondition: result.failed == 0
        provider:
          web: {url: "http://{{args.host}}/smoke", jsonPath: "{$.summary}", timeoutSeconds: 5}
"#;
    let mut cluster = Cluster::start(1, file_template).await;
    cluster.add_checkout_services(NAMESPACE, v1.addr, v2.addr);

    // `cart` names a good template; `checkout` one that does not exist yet.
    cluster.apply_analysis_template(NAMESPACE, "ok", smoke_template("result.failed == 0"));
    cluster.apply_canary_route(NAMESPACE, "cart", route_spec("/cart", "ok", &host));
    cluster.apply_canary_route(
        NAMESPACE,
        "orders",
        route_spec("/orders", "from-file", &host),
    );
    cluster.apply_canary_route(NAMESPACE, "checkout", route_spec("/", "smoke", &host));

    let status = cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            LIMIT,
            "held at the analysis step, saying the template is missing",
            |s| {
                s["stepIndex"] == 1
                    && unresolved_message(s).is_some_and(|m| {
                        m.contains("there is no AnalysisTemplate `smoke` in namespace `shop`")
                    })
            },
        )
        .await;
    let message = unresolved_message(&status).unwrap_or_default();
    assert!(
        message.contains("spec.strategy.steps[1].analysis.templates[0].templateName"),
        "the condition names the field: {status:#}"
    );
    assert_eq!(status["canaryWeight"], 20.0, "{status:#}");
    // The route keeps serving both roles meanwhile.
    let http = cluster.replica(0).addrs.http;
    wait_until(LIMIT, "both roles of checkout served", || async {
        let counts = send_many(http, "/", &[], 100, 2).await.ok()?;
        (count(&counts, "v1", 200) > 0 && count(&counts, "v2", 200) > 0).then_some(())
    })
    .await;

    // The good templates' routes are never held up by the other one.
    for name in ["cart", "orders"] {
        cluster
            .wait_status(NAMESPACE, name, LIMIT, "Promoted", |s| {
                s["phase"] == "Promoted"
            })
            .await;
    }

    // An invalid template: still held, the condition names template and field.
    cluster.apply_analysis_template(NAMESPACE, "smoke", smoke_template("result.failed =="));
    let status = cluster
        .wait_status(
            NAMESPACE,
            "checkout",
            LIMIT,
            "the condition naming the invalid template's field",
            |s| {
                unresolved_message(s).is_some_and(|m| {
                    m.contains(
                        "AnalysisTemplate `shop/smoke` is invalid: spec.metrics[0].successCondition",
                    )
                })
            },
        )
        .await;
    assert_eq!(status["stepIndex"], 1, "still held: {status:#}");
    assert_ne!(status["phase"], "Aborted", "{status:#}");

    // Fixed: the run starts, passes, and the rollout is promoted.
    cluster.apply_analysis_template(NAMESPACE, "smoke", smoke_template("result.failed == 0"));
    let status = cluster
        .wait_status(NAMESPACE, "checkout", LIMIT, "checkout Promoted", |s| {
            s["phase"] == "Promoted"
        })
        .await;
    let resolved = condition(&status, "AnalysisTemplateUnresolved").expect("the condition is kept");
    assert_eq!(resolved["status"], "False", "{status:#}");

    let answer = cluster
        .replica(0)
        .admin()
        .get("/api/v1/routes/shop%2Fcheckout/analysisruns")
        .await
        .expect("GET analysisruns");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let runs = answer.json();
    let passed = runs
        .as_array()
        .expect("a list of runs")
        .iter()
        // A run that measured: one ended before it measured (the rollout
        // left its step) is terminated with nothing to read.
        .find(|r| {
            r["phase"] == "Successful"
                && r["templates"] == json!(["smoke"])
                && r["metrics"][0]["measurements"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty())
        })
        .unwrap_or_else(|| panic!("a Successful run of `smoke`: {runs:#}"));
    let measured = &passed["metrics"][0]["measurements"][0];
    assert_eq!(measured["phase"], "Successful", "{runs:#}");
    assert_eq!(
        measured["value"],
        json!({"failed": 0, "passed": 12}),
        "{runs:#}"
    );

    // A template added to weir.yaml by a reload resolves a waiting route.
    cluster.apply_canary_route(NAMESPACE, "late", route_spec("/late", "added-later", &host));
    cluster
        .wait_status(NAMESPACE, "late", LIMIT, "held, naming the template", |s| {
            unresolved_message(s).is_some_and(|m| m.contains("`added-later`"))
        })
        .await;
    let path = cluster.replica(0).config_path();
    let text = std::fs::read_to_string(&path).expect("reading weir.yaml");
    let added = file_template
        .replace("analysisTemplates:\n", "")
        .replace("from-file", "added-later");
    let before = cluster.replica(0).reloads("success").await;
    cluster
        .replica_mut(0)
        .write_text(&format!("{text}{added}"), false);
    cluster.replica(0).wait_for_reload("success", before).await;
    cluster
        .wait_status(NAMESPACE, "late", LIMIT, "late Promoted", |s| {
            s["phase"] == "Promoted"
        })
        .await;
}
