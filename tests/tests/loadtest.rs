//! `weir-loadtest` on its own, without weir: the fake upstream's contract
//! (name tag, body counting, header echo, faults, WebSocket echo) and the
//! load generator's report and bounds. The other tests rely on both.

use std::process::Output;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::Request;
use http_body_util::{BodyExt as _, Full};
use tokio_tungstenite::tungstenite::Message;
use weir_e2e::{ClosedPort, Conn, LoadtestUpstream, binary, wait_until, within};

const LIMIT: Duration = Duration::from_secs(20);

async fn loadtest(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(binary("weir-loadtest"))
        .args(args)
        .kill_on_drop(true)
        .output();
    within(Duration::from_secs(30), "weir-loadtest run", child)
        .await
        .expect("running weir-loadtest")
}

fn report(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "weir-loadtest failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_names_itself_counts_bodies_and_echoes_headers() {
    let up = LoadtestUpstream::start("alpha", &[]);
    within(LIMIT, "upstream exchanges", async {
        let mut conn = Conn::open(up.addr).await.unwrap();
        let r = conn.get("/anything?x=1", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "alpha\n");
        assert_eq!(r.upstream(), "alpha");

        let r = conn
            .get(
                "/__upstream/headers",
                &[("x-test", "one"), ("x-Other", "two")],
            )
            .await
            .unwrap();
        let headers = r.json();
        assert_eq!(headers["x-test"], "one");
        assert_eq!(headers["x-other"], "two");
        assert_eq!(r.upstream(), "alpha");

        let body = Bytes::from(vec![7u8; 1_000_003]);
        let request = Request::post("/__upstream/echo-body-len")
            .body(
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let r = conn.send(request).await.unwrap();
        assert_eq!(r.text().trim(), "1000003");

        let stats = up.stats().await;
        assert_eq!(stats["name"], "alpha");
        assert_eq!(stats["requests"], 3, "{stats}");
        assert_eq!(stats["bodyBytes"], 1_000_003, "{stats}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_change_at_runtime_and_after_fail_after() {
    let up = LoadtestUpstream::start("beta", &["--latency", "200ms"]);
    within(LIMIT, "fault injection", async {
        let mut conn = Conn::open(up.addr).await.unwrap();
        let started = Instant::now();
        let r = conn.get("/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "latency not applied"
        );

        let faults = up
            .control(serde_json::json!({"errorRate": 1.0, "latencyMs": 0}))
            .await;
        assert_eq!(faults["errorRate"], 1.0);
        for _ in 0..5 {
            let r = conn.get("/", &[]).await.unwrap();
            assert_eq!(r.status, 500);
            assert_eq!(r.text(), "beta error\n");
            assert_eq!(r.upstream(), "beta");
        }
        up.control(serde_json::json!({"errorRate": 0.0, "failAfterMs": 0}))
            .await;
        // Fail-after counts from the process start: 0 means failing now.
        let r = conn.get("/", &[]).await.unwrap();
        assert_eq!(r.status, 500);
        up.control(serde_json::json!({"failAfterMs": null})).await;
        let r = conn.get("/", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        let stats = up.stats().await;
        assert_eq!(stats["errors"], 6, "{stats}");
        assert_eq!(stats["ok"], 2, "{stats}");
    })
    .await;

    // Long enough for the first request to come before it on a loaded
    // machine (the clock starts with the process).
    let failing = LoadtestUpstream::start("gamma", &["--fail-after", "3s"]);
    within(LIMIT, "--fail-after", async {
        let r = weir_e2e::get(failing.addr, "/").await.unwrap();
        assert_eq!(r.status, 200, "fails before --fail-after");
        wait_until(
            Duration::from_secs(15),
            "--fail-after to take effect",
            || async {
                let r = weir_e2e::get(failing.addr, "/").await.unwrap();
                (r.status == 500).then_some(())
            },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_echoes_websocket_frames() {
    let up = LoadtestUpstream::start("ws", &[]);
    within(LIMIT, "websocket echo", async {
        let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/chat", up.addr))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(vec![0u8, 1, 2, 255])
        );
        ws.close(None).await.unwrap();
        assert_eq!(up.stats().await["websockets"], 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_counts_per_upstream_and_second() {
    let up = LoadtestUpstream::start("alpha", &[]);
    let target = format!("http://{}/", up.addr);
    let out = loadtest(&[
        "run",
        "--target",
        &target,
        "--rate",
        "200",
        "--duration",
        "2s",
        "--users",
        "5",
        "--json",
    ])
    .await;
    let r = report(&out);
    // Requests are scheduled at i / rate for i / rate < duration: exactly 400.
    assert_eq!(r["total"], 400, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["byUpstream"]["alpha"]["200"], 400, "{r:#}");
    let seconds = r["perSecond"].as_array().unwrap();
    assert_eq!(seconds.len(), 2, "{r:#}");
    for s in seconds {
        assert_eq!(s["total"], 200, "{r:#}");
    }
    let l = &r["latencyMs"];
    let p50 = l["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= l["p99"].as_f64().unwrap(), "{l}");
    assert!(
        l["p999"].as_f64().unwrap() <= l["max"].as_f64().unwrap(),
        "{l}"
    );
    assert_eq!(up.stats().await["requests"], 400);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scheduled"),
        "no progress on stderr: {stderr}"
    );

    // The text report names the upstream and the percentiles.
    let out = loadtest(&[
        "run",
        "--target",
        &target,
        "--rate",
        "50",
        "--duration",
        "1s",
    ])
    .await;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alpha") && text.contains("p99.9"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_counts_failures_and_stops_within_its_grace() {
    // Nothing listens on a held port: every request is a connect error.
    let closed = ClosedPort::bind();
    let out = loadtest(&[
        "run",
        "--target",
        &format!("http://{}/", closed.addr),
        "--rate",
        "50",
        "--duration",
        "1s",
        "--json",
    ])
    .await;
    let r = report(&out);
    assert_eq!(r["total"], 50, "{r:#}");
    assert_eq!(r["errors"], 50, "{r:#}");
    assert_eq!(r["errorKinds"]["connect"], 50, "{r:#}");
    // Nothing answered: no latency, not one of 0 ms.
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latencyMs"][key].is_null(), "{key}: {r:#}");
    }

    // An upstream slower than the run: 4 connections stay busy, the rest
    // never leave; the run still ends at duration + at most 5 s of grace.
    let slow = LoadtestUpstream::start("slow", &["--latency", "60s"]);
    let out = loadtest(&[
        "run",
        "--target",
        &format!("http://{}/", slow.addr),
        "--rate",
        "20",
        "--duration",
        "1s",
        "--connections",
        "4",
        "--json",
    ])
    .await;
    // The upstream answers after 60 s and `loadtest` fails the test after
    // 30 s: a report at all means the run ended at its grace, and the
    // counts below say how.
    let r = report(&out);
    assert_eq!(r["total"], 20, "{r:#}");
    assert_eq!(r["errors"], 20, "{r:#}");
    assert_eq!(r["errorKinds"]["timeout"], 4, "{r:#}");
    assert_eq!(r["errorKinds"]["unsent"], 16, "{r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_non_loopback_targets() {
    // An IP literal is checked before any connection is attempted.
    let out = loadtest(&[
        "run",
        "--target",
        "http://192.0.2.1:80/",
        "--rate",
        "1",
        "--duration",
        "1s",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

/// Options refused by the run's own checks exit 2, as those the argument
/// parser refuses do: a script tells a usage error from a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_options_out_of_range_with_exit_2() {
    let closed = ClosedPort::bind();
    let target = format!("http://{}/", closed.addr);
    for (options, said) in [
        (&["--rate", "0", "--duration", "1s"][..], "--rate"),
        (&["--rate", "-5", "--duration", "1s"][..], "-5"),
        (&["--rate", "5", "--duration", "0s"][..], "--duration"),
        (
            &["--rate", "5", "--duration", "1s", "--users", "0"][..],
            "--users",
        ),
    ] {
        let mut args = vec!["run", "--target", &target];
        args.extend_from_slice(options);
        let out = loadtest(&args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{options:?}: {stderr}");
        assert!(stderr.contains(said), "{options:?}: {stderr}");
    }
}
