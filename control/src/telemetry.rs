//! Logging to stderr with `tracing`, filtered by `RUST_LOG` (default `info`
//! for `weir run`, `warn` for the other commands, whose output is their
//! answer).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber, `default` the level without `RUST_LOG`;
/// a second call is ignored.
pub fn init(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr a closed pipe, a full
        // disk, a terminal gone) is lost, and nothing else: by default the
        // subscriber reports it with `eprintln!`, which panics on that same
        // stderr, in whatever task was logging (the control loop, an admin
        // request, a proxied request's error path).
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
