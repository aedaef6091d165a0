//! Analysis providers over `https://` (SPEC 13 with the TLS of SPEC 16):
//! a web and a Prometheus metric against a local TLS server whose CA weir
//! trusts through `SSL_CERT_FILE` pass; a server signed by a CA weir does
//! not trust is an errored measurement naming the certificate problem
//! (and aborts the rollout); Argo's `insecure: true` accepts it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use weir_e2e::grpc::Pki;
use weir_e2e::{LoadtestUpstream, Route, Step, Strategy, Weir, WeirConfig, phase};

/// Start, the runs and their single measurements: slack for 2 busy cores.
const LIMIT: Duration = Duration::from_secs(30);

/// What the server answers to any request: a Prometheus scalar of 1.
const ANSWER: &str =
    r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}"#;

/// An HTTPS/1.1 server on `127.0.0.1:0` with `config`, answering [`ANSWER`].
async fn https_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the HTTPS server");
    let addr = listener.local_addr().expect("an address");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_: hyper::Request<hyper::body::Incoming>| async {
                    let mut response = hyper::Response::new(Full::new(Bytes::from(ANSWER)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A template named `name` with a web and a Prometheus metric against
/// `https://{addr}`, `insecure` as given; the first error ends the run.
fn template(name: &str, addr: SocketAddr, insecure: bool) -> String {
    format!(
        r#"  - name: {name}
    metrics:
      - name: web
        successCondition: result == "success"
        consecutiveErrorLimit: 0
        provider:
          web: {{url: "https://{addr}/smoke", jsonPath: "{{$.status}}", timeoutSeconds: 5, insecure: {insecure}}}
      - name: prometheus
        successCondition: result == 1
        consecutiveErrorLimit: 0
        provider:
          prometheus: {{address: "https://{addr}", query: "vector(1)", timeout: 5, insecure: {insecure}}}
"#
    )
}

fn route(name: &str, stable: SocketAddr, canary: SocketAddr) -> Route {
    Route::rollout(
        name,
        &[stable],
        &[canary],
        Strategy::new([
            Step::SetWeight(10.0),
            Step::Raw(format!(
                "analysis: {{ templates: [{{ templateName: {name} }}] }}"
            )),
            Step::SetWeight(100.0),
        ]),
    )
    .path_prefix(&format!("/{name}"))
}

async fn analysis_runs(weir: &Weir, route: &str) -> serde_json::Value {
    let path = format!("/api/v1/routes/{route}/analysisruns");
    let answer = weir.admin().get(&path).await.expect("GET analysisruns");
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_providers_trust_the_system_roots_and_insecure_skips_verification() {
    let trusted_pki = Pki::new();
    let other_pki = Pki::new();
    let trusted = https_server(trusted_pki.server_config()).await;
    let untrusted = https_server(other_pki.server_config()).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &trusted_pki.ca_pem).expect("writing ca.pem");

    let stable = LoadtestUpstream::start("stable", &[]);
    let canary = LoadtestUpstream::start("canary", &[]);
    let templates = format!(
        "analysisTemplates:\n{}{}{}",
        template("trusted", trusted, false),
        template("untrusted", untrusted, false),
        template("insecure", untrusted, true),
    );
    let config = WeirConfig::new([
        route("trusted", stable.addr, canary.addr),
        route("untrusted", stable.addr, canary.addr),
        route("insecure", stable.addr, canary.addr),
    ])
    .env("SSL_CERT_FILE", &ca.display().to_string())
    .extra(&templates);
    let weir = Weir::start(config).await;

    for name in ["trusted", "insecure"] {
        let status = weir
            .wait_status(name, LIMIT, "Promoted", |s| {
                matches!(phase(s), "Promoted" | "Aborted")
            })
            .await;
        let runs = analysis_runs(&weir, name).await;
        assert_eq!(phase(&status), "Promoted", "{name}: {status:#}\n{runs:#}");
        let run = &runs[0];
        assert_eq!(run["phase"], "Successful", "{name}: {runs:#}");
        assert_eq!(run["metrics"][0]["measurements"][0]["value"], "success");
        assert_eq!(run["metrics"][1]["measurements"][0]["value"], 1.0);
    }

    let status = weir
        .wait_status("untrusted", LIMIT, "Aborted", |s| {
            matches!(phase(s), "Promoted" | "Aborted")
        })
        .await;
    let runs = analysis_runs(&weir, "untrusted").await;
    assert_eq!(phase(&status), "Aborted", "{status:#}\n{runs:#}");
    let metrics = runs[0]["metrics"].as_array().expect("metrics");
    let measured: Vec<&serde_json::Value> = metrics
        .iter()
        .filter_map(|m| m["measurements"].get(0))
        .collect();
    assert!(!measured.is_empty(), "{runs:#}");
    for measured in measured {
        assert_eq!(measured["phase"], "Error", "{runs:#}");
        let message = measured["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("cannot reach https://{untrusted}"))
                && message.contains("UnknownIssuer"),
            "the certificate problem is named: {message}"
        );
    }
}
