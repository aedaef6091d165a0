//! `weir-loadtest`: the tools that exercise weir from outside.
//!
//! - [`upstream`] is a fake upstream (HTTP/1.1, h2c, WebSocket) that names
//!   itself in every answer and injects errors and latency on demand.
//! - [`run`] is an open-loop load generator with per-user cookie jars that
//!   reports counts per upstream and status, per second, and latency
//!   percentiles.
//! - [`experiment`] runs a canary scenario end to end (upstreams, the real
//!   weir binary, load, timed faults and commands) and writes a report.
//!
//! They only ever talk to loopback unless told otherwise, and they stop by
//! themselves: the load generator and experiments at their duration, the
//! upstream on a signal.

pub mod experiment;
pub mod run;
pub mod upstream;

/// The built-in demo scenario that `weir demo` runs (about a minute; a third
/// of that with `--short`).
pub const DEMO_SCENARIO: &str = include_str!("../scenarios/demo.yaml");

/// The built-in blue-green scenario that `weir demo --scenario blue-green`
/// runs: a good release swapped in after its smoke test, then a slow one
/// swapped back by a Prometheus-backed post-promotion analysis.
pub const BLUE_GREEN_SCENARIO: &str = include_str!("../scenarios/blue-green.yaml");

use std::time::Duration;

/// Parses a command-line duration with the grammar of `weir.yaml`
/// (`500ms`, `2s`, `1m30s`, a bare integer of seconds).
///
/// # Errors
/// A message naming the text and what is wrong with it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weir_config::duration::parse_duration(text).map_err(|e| e.to_string())
}
