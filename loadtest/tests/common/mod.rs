//! Helpers of the loadtest integration tests: the binaries under test, a
//! fake upstream run as its own process, a plain HTTP GET, and runs of
//! `weir-loadtest` bounded in time.

#![allow(dead_code, reason = "each test file uses the helpers it needs")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// The `weir-loadtest` binary cargo built for these tests.
pub(crate) fn loadtest() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir-loadtest"))
}

/// `<target dir>/<profile>`, found from the running test executable in its
/// `deps/` directory.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The real `weir` binary next to the test executable's profile directory,
/// built with `$CARGO build -p weir-control` (once per test process) when
/// it is missing: `cargo test -p weir-loadtest` does not build it.
pub(crate) fn weir() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let path = target_dir().join("weir");
    if !path.is_file() {
        let built = BUILT.get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the package is in the workspace");
            let mut command = Command::new(cargo);
            command
                .args(["build", "-p", "weir-control"])
                .current_dir(root);
            if target_dir().file_name().is_some_and(|n| n == "release") {
                command.arg("--release");
            }
            let output = command
                .output()
                .map_err(|e| format!("running cargo: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        });
        if let Err(e) = built {
            panic!("building weir failed:\n{e}");
        }
    }
    assert!(path.is_file(), "{} not found", path.display());
    path
}

/// A `weir-loadtest upstream` process, killed on drop.
pub(crate) struct UpstreamProcess {
    child: std::process::Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl UpstreamProcess {
    /// Starts `weir-loadtest upstream --listen 127.0.0.1:0 --name NAME
    /// EXTRA...` and reads its address from the first stdout line.
    pub(crate) fn start(name: &str, extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(loadtest())
            .args(["upstream", "--listen", "127.0.0.1:0", "--name", name])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting weir-loadtest upstream");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the upstream's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Self { child, addr }
    }
}

impl Drop for UpstreamProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr`, as JSON.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    serde_json::from_slice(&body).expect("a JSON body")
}

/// Runs `weir-loadtest ARGS` to completion, failing the test after `limit`.
pub(crate) async fn run_loadtest(args: &[&str], limit: Duration) -> Output {
    let child = tokio::process::Command::new(loadtest())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("weir-loadtest {args:?} took more than {limit:?}"))
        .expect("running weir-loadtest")
}

/// stdout and stderr of `output`, for assertion messages.
pub(crate) fn shown(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
