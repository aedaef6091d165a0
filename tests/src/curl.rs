//! Real curl, for tests that must see what a common client sees.

use std::time::Duration;

use crate::within;

/// Runs `curl -sS --max-time 10 -w "\n<write_out>" ARGS` (under a 20 s
/// deadline) and returns the body and what `write_out` printed, for example
/// `%{http_code}` or `%{http_version} %{http_code}`.
///
/// # Panics
/// When curl cannot be run, fails, or does not print `write_out`.
pub async fn curl(args: &[&str], write_out: &str) -> (String, String) {
    let output = within(
        Duration::from_secs(20),
        "curl",
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", &format!("\n{write_out}")])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {args:?} failed ({}): {}{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, written) = stdout.rsplit_once('\n').expect("curl printed -w");
    (body.to_owned(), written.to_owned())
}
