//! Running a binary to completion under a deadline, and showing what it
//! printed.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Runs `program ARGS` to completion (stdin closed, output captured) and
/// returns what it did; the child is killed if the test gives up.
///
/// # Panics
/// When it cannot start, or takes longer than `limit` (naming the command).
pub async fn run_within(program: &Path, args: &[&str], limit: Duration) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, child).await {
        Ok(output) => output.unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display())),
        Err(_) => panic!("{} {args:?} took more than {limit:?}", program.display()),
    }
}

/// The exit status, stdout and stderr of `output`, for assertion messages.
pub fn shown(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Holds a process stopped (SIGSTOP) until dropped (SIGCONT): what peers
/// send meanwhile waits in its sockets, so it finds bytes and a reset
/// already there when it goes on.
pub struct Stopped(u32);

impl Stopped {
    /// How long the kernel may take to show the process stopped.
    const LIMIT: Duration = Duration::from_secs(20);

    /// Stops `pid` and returns once the kernel shows it stopped: a signal
    /// is delivered later than `kill` returns.
    ///
    /// # Panics
    /// When `kill` fails, or the process is not seen stopped in time.
    pub fn new(pid: u32) -> Stopped {
        signal(pid, "-STOP");
        let deadline = std::time::Instant::now() + Self::LIMIT;
        // Every thread: the state follows the command name, which is in
        // parentheses.
        let all_stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"))
                .all(|task| {
                    task.ok().is_none_or(|task| {
                        let stat =
                            std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
        };
        while !all_stopped() {
            assert!(std::time::Instant::now() < deadline, "{pid} not stopped");
            std::thread::yield_now();
        }
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to `pid` with `kill`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill {signal} {pid}: {e}"));
    assert!(status.success(), "kill {signal} {pid}");
}

/// Sends `bytes` on `client` and resets the connection (zero linger)
/// while `pid` is stopped: the process finds both in its socket at once
/// when it goes on.
///
/// # Panics
/// When the process cannot be stopped, or the write or the linger fails.
pub async fn send_then_reset_while_stopped(
    pid: u32,
    mut client: tokio::net::TcpStream,
    bytes: &[u8],
) {
    use tokio::io::AsyncWriteExt as _;
    let _stopped = Stopped::new(pid);
    client
        .write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("writing to a stopped process: {e}"));
    client
        .set_zero_linger()
        .unwrap_or_else(|e| panic!("zero linger: {e}"));
    drop(client);
}
