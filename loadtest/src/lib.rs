//! `weir-loadtest`: the tools that exercise weir from outside.
//!
//! - [`upstream`] is a fake upstream (HTTP/1.1, h2c, WebSocket) that names
//!   itself in every answer and injects errors and latency on demand.
//! - [`run`] is an open-loop load generator with per-user cookie jars that
//!   reports counts per upstream and status, per second, and latency
//!   percentiles.
//!
//! Both only ever talk to loopback unless told otherwise, and both stop by
//! themselves: the load generator at its duration, the upstream on a signal.

pub mod run;
pub mod upstream;

use std::time::Duration;

/// Parses a command-line duration with the grammar of `weir.yaml`
/// (`500ms`, `2s`, `1m30s`, a bare integer of seconds).
///
/// # Errors
/// A message naming the text and what is wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weir_config::duration::parse_duration(text).map_err(|e| e.to_string())
}
