//! Admin API authentication: bearer tokens (one from `${VAR}`, one
//! literal), 401 without or with a wrong token, 403 for the reader token on
//! writer endpoints, the writer token reads too, JSON error bodies; health
//! and metrics stay open. weir refuses a non-loopback admin address without
//! tokens.

use std::process::Stdio;
use std::time::Duration;

use weir_e2e::{
    Addrs, Conn, FakeUpstream, ReservedPort, Response, Route, Step, Strategy, Weir, WeirConfig,
    phase, weir_command, within,
};

const READER: &str = "reader-7f3a9c";
const WRITER: &str = "writer-e41b02";

fn assert_error(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let json = r.json();
    assert!(
        json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: body is not {{\"error\": \"...\"}}: {json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_reads_and_writes() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let strategy = Strategy::unjudged([Step::SetWeight(10.0), Step::Pause(None)]);
    let config = WeirConfig::new([Route::rollout("web", &[v1.addr], &[v2.addr], strategy)])
        .tokens(Some("${WEIR_E2E_READER_TOKEN}"), Some(WRITER))
        .env("WEIR_E2E_READER_TOKEN", READER);
    let weir = Weir::start(config).await;
    let none = weir.admin();
    let wrong = weir.admin_with("not-a-token");
    let reader = weir.admin_with(READER);
    let writer = weir.admin_with(WRITER);

    within(Duration::from_secs(20), "admin exchanges", async {
        // Open endpoints.
        for path in ["/healthz", "/readyz", "/metrics"] {
            let r = none.get(path).await.unwrap();
            assert_eq!(r.status, 200, "GET {path} without a token: {}", r.text());
        }

        // Reads.
        for path in ["/api/v1/routes", "/api/v1/routes/web"] {
            assert_error(
                &none.get(path).await.unwrap(),
                401,
                &format!("GET {path}, no token"),
            );
            assert_error(
                &wrong.get(path).await.unwrap(),
                401,
                &format!("GET {path}, wrong token"),
            );
            for (who, client) in [("reader", &reader), ("writer", &writer)] {
                let r = client.get(path).await.unwrap();
                assert_eq!(r.status, 200, "GET {path} as {who}: {}", r.text());
                r.json();
            }
        }
        // A token in another scheme is no token.
        let basic = format!("Basic {WRITER}");
        let r = Conn::open(weir.addrs.admin)
            .await
            .unwrap()
            .get("/api/v1/routes", &[("authorization", &basic)])
            .await
            .unwrap();
        assert_error(&r, 401, "GET with the writer token as Basic");
        let r = reader.get("/api/v1/routes/nosuch").await.unwrap();
        assert_error(&r, 404, "GET unknown route as reader");

        // Writes: 401 / 403 change nothing.
        let writes = [
            "/api/v1/routes/web/pause",
            "/api/v1/routes/web/abort",
            "/api/v1/routes/web/promote",
            "/api/v1/promote",
            "/api/v1/reload",
        ];
        for path in writes {
            assert_error(
                &none.post(path, None).await.unwrap(),
                401,
                &format!("POST {path}, no token"),
            );
            assert_error(
                &wrong.post(path, None).await.unwrap(),
                401,
                &format!("POST {path}, wrong token"),
            );
            assert_error(
                &reader.post(path, None).await.unwrap(),
                403,
                &format!("POST {path}, reader token"),
            );
        }
        let s = reader.get("/api/v1/routes/web").await.unwrap().json();
        assert_eq!(phase(&s), "Progressing", "refused writes changed it: {s:#}");

        // The writer may.
        let r = writer.post("/api/v1/routes/web/pause", None).await.unwrap();
        assert_eq!(r.status, 200, "pause as writer: {}", r.text());
        assert_eq!(phase(&r.json()), "Paused");
        let r = writer.post("/api/v1/reload", None).await.unwrap();
        assert_eq!(r.status, 200, "reload as writer: {}", r.text());
        let r = writer
            .post("/api/v1/routes/web/resume", None)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "resume as writer: {}", r.text());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_non_loopback_admin_address_without_tokens() {
    for format in ["text", "json"] {
        refused_with_log_format(format).await;
    }
}

/// `weir run` with admin address 0.0.0.0 and no tokens, `--log-format
/// FORMAT`: refused, the error said once; in JSON every line of stderr is
/// a JSON object.
async fn refused_with_log_format(format: &str) {
    let v1 = FakeUpstream::start("v1").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Reserved for the whole test: should weir wrongly start, it binds
    // these ports and not one another test is using.
    let http = ReservedPort::bind();
    let admin = ReservedPort::bind();
    let admin_port = admin.addr.port();
    let addrs = Addrs {
        http: http.addr,
        https: None,
        admin: ([0, 0, 0, 0], admin_port).into(),
    };
    let config = WeirConfig::new([Route::new("web", &[v1.addr])]);
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, config.render(&addrs)).expect("the config written");
    let mut command = tokio::process::Command::from(weir_command());
    command
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(["--log-format", format])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| {
            panic!("weir started with admin address 0.0.0.0:{admin_port} and no tokens")
        })
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "weir exited 0 with a non-loopback admin address and no tokens:\n{stderr}{stdout}"
    );
    let said = format!("{stderr}{stdout}").to_ascii_lowercase();
    assert!(
        said.contains("admin") && said.contains("token") && said.contains("loopback"),
        "the message should name the admin address, loopback and tokens:\n{stderr}{stdout}"
    );
    assert_eq!(
        said.matches("is not loopback").count(),
        1,
        "{format}: the error said once:\n{stderr}"
    );
    if format == "json" {
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not a JSON log line: {line}"
            );
        }
    }
    eprintln!("weir said: {}", stderr.trim());
}
