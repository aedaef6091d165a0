//! The `weir` CLI against a running weir: `status --json`, `promote`,
//! `abort`, `retry`, `promote --all`, and its exit codes (0 ok, 1 other API
//! error, 3 conflict, 4 not found, 5 auth, 6 unreachable); `--log-format`
//! on every command.

use std::process::{Output, Stdio};
use std::time::Duration;

use weir_e2e::{
    ClosedPort, FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, phase, step_index,
    weir_command,
};

const READER: &str = "cli-reader-51d0";
const WRITER: &str = "cli-writer-a93e";

/// Runs `weir ARGS --admin http://ADMIN` with `WEIR_TOKEN` set to `token`
/// (unset when `None`).
async fn cli(admin: &str, args: &[&str], token: Option<&str>) -> Output {
    let mut command = tokio::process::Command::from(weir_command());
    command
        .args(args)
        .args(["--admin", admin])
        .env_remove("WEIR_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("WEIR_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish within 20 s"))
        .expect("running weir")
}

fn expect_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: want exit code {code}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn stdout_json(output: &Output, what: &str) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn config(v1: &FakeUpstream, v2: &FakeUpstream) -> WeirConfig {
    let strategy = Strategy::unjudged([
        Step::SetWeight(10.0),
        Step::Pause(None),
        Step::SetWeight(50.0),
    ]);
    WeirConfig::new([Route::new("web", &[v1.addr])
        .canary(&[v2.addr], 0.0)
        .strategy(strategy)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_promote_abort_retry_and_exit_codes() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let weir = Weir::start(config(&v1, &v2)).await;
    let admin = format!("http://{}", weir.addrs.admin);

    let out = cli(&admin, &["status", "--json"], None).await;
    expect_exit(&out, 0, "weir status --json");
    let all = stdout_json(&out, "weir status --json");
    let web = match &all {
        serde_json::Value::Array(list) => list
            .iter()
            .find(|s| s["name"] == "web")
            .cloned()
            .unwrap_or_else(|| panic!("no route web in {all:#}")),
        other => panic!("weir status --json prints the list of routes: {other:#}"),
    };
    assert_eq!((phase(&web), step_index(&web)), ("Progressing", Some(0)));

    let out = cli(&admin, &["status", "web", "--json"], None).await;
    expect_exit(&out, 0, "weir status web --json");
    let s = stdout_json(&out, "weir status web --json");
    assert_eq!(s["name"], "web", "{s:#}");

    let out = cli(&admin, &["status", "web"], None).await;
    expect_exit(&out, 0, "weir status web");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("web") && text.contains("Progressing"),
        "weir status web names the route and phase:\n{text}"
    );

    let out = cli(&admin, &["promote", "web"], None).await;
    expect_exit(&out, 0, "weir promote web");
    let s = weir.status("web").await;
    assert_eq!((phase(&s), step_index(&s)), ("Paused", Some(1)), "{s:#}");

    let out = cli(&admin, &["promote", "--all"], None).await;
    expect_exit(&out, 0, "weir promote --all");
    let s = weir.status("web").await;
    assert_eq!(step_index(&s), Some(2), "{s:#}");

    let out = cli(&admin, &["abort", "web"], None).await;
    expect_exit(&out, 0, "weir abort web");
    assert_eq!(phase(&weir.status("web").await), "Aborted");

    let out = cli(&admin, &["promote", "web"], None).await;
    expect_exit(&out, 3, "weir promote web while Aborted (409)");
    assert!(
        !out.stderr.is_empty(),
        "a refused command says why on stderr"
    );

    let out = cli(&admin, &["retry", "web"], None).await;
    expect_exit(&out, 0, "weir retry web");
    let s = weir.status("web").await;
    assert_eq!(
        (phase(&s), step_index(&s)),
        ("Progressing", Some(0)),
        "{s:#}"
    );

    let out = cli(&admin, &["abort", "nosuch"], None).await;
    expect_exit(&out, 4, "weir abort nosuch (404)");
    let out = cli(&admin, &["status", "nosuch"], None).await;
    expect_exit(&out, 4, "weir status nosuch (404)");
    // A wrong path in `--admin` is a 404 too, but names no route.
    let out = cli(&format!("{admin}/foo"), &["status", "web"], None).await;
    expect_exit(&out, 1, "weir status with a wrong --admin path (404)");

    let closed = ClosedPort::bind();
    let out = cli(&format!("http://{}", closed.addr), &["status"], None).await;
    expect_exit(&out, 6, "weir status against nothing");

    // `--log-format` is taken by every command, before or after its name.
    let out = cli(
        &admin,
        &["status", "web", "--json", "--log-format", "json"],
        None,
    )
    .await;
    expect_exit(&out, 0, "weir status web --json --log-format json");
    assert_eq!(stdout_json(&out, "with --log-format json")["name"], "web");
    let out = cli(&admin, &["--log-format", "text", "status", "web"], None).await;
    expect_exit(&out, 0, "weir --log-format text status web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_flag_and_environment() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let weir = Weir::start(config(&v1, &v2).tokens(Some(READER), Some(WRITER))).await;
    let admin = format!("http://{}", weir.addrs.admin);

    let out = cli(&admin, &["status", "--json"], None).await;
    expect_exit(&out, 5, "weir status without a token (401)");
    let out = cli(&admin, &["status", "--json", "--token", "wrong"], None).await;
    expect_exit(&out, 5, "weir status with a wrong token (401)");
    let out = cli(&admin, &["status", "--json", "--token", READER], None).await;
    expect_exit(&out, 0, "weir status --token READER");
    let out = cli(&admin, &["status", "--json"], Some(READER)).await;
    expect_exit(&out, 0, "weir status with WEIR_TOKEN=READER");
    let out = cli(&admin, &["pause", "web"], Some(READER)).await;
    expect_exit(&out, 5, "weir pause as reader (403)");
    let out = cli(&admin, &["pause", "web", "--token", WRITER], Some(READER)).await;
    expect_exit(&out, 0, "weir pause --token WRITER beats WEIR_TOKEN");
    let s = weir
        .admin_with(WRITER)
        .get("/api/v1/routes/web")
        .await
        .unwrap();
    assert_eq!(s.json()["held"], true, "{}", s.text());
    let out = cli(&admin, &["resume", "web"], Some(WRITER)).await;
    expect_exit(&out, 0, "weir resume with WEIR_TOKEN=WRITER");
}

/// Runs `weir ARGS` (no `--admin`) with stdout, or stderr when `on_stderr`,
/// on `/dev/full`, where every write fails.
fn with_full_output(args: &[&str], on_stderr: bool) -> Output {
    let full = || {
        std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .expect("opening /dev/full")
    };
    let mut command = weir_command();
    command
        .args(args)
        .env_remove("WEIR_TOKEN")
        .stdin(Stdio::null());
    if on_stderr {
        command.stdout(Stdio::piped()).stderr(full());
    } else {
        command.stdout(full()).stderr(Stdio::piped());
    }
    command.output().expect("running weir")
}

/// An answer that cannot be written (a full disk) is the command's failure,
/// exit 1 and said on stderr, not exit 0 with nothing written, nor a panic
/// (exit 101); a message that cannot be written on stderr is lost and the
/// exit code still tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_cannot_be_written_fails_the_command() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let weir = Weir::start(config(&v1, &v2)).await;
    let admin = format!("http://{}", weir.addrs.admin);
    let config_path = weir.config_path();
    let config_path = config_path.to_str().expect("a UTF-8 path");
    for args in [
        vec!["status", "--admin", &admin, "--token", READER],
        vec!["status", "--json", "--admin", &admin, "--token", READER],
        vec!["validate", config_path],
        vec!["crd"],
    ] {
        let output = with_full_output(&args, false);
        expect_exit(&output, 1, &format!("weir {args:?} > /dev/full"));
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(
            said.contains("cannot write the answer to standard output"),
            "weir {args:?}: {said}"
        );
    }
    // An error told on a stderr that cannot be written: its code stays.
    let output = with_full_output(
        &["status", "nosuch", "--admin", &admin, "--token", READER],
        true,
    );
    expect_exit(&output, 4, "weir status nosuch 2> /dev/full");
}
