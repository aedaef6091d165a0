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
