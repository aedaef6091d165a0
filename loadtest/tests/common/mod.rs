//! Helpers of the loadtest integration tests: the shared end-to-end harness
//! of `weir-e2e` (binaries built once, processes killed on drop, every wait
//! under a deadline), named as these tests use it.

#![allow(dead_code, reason = "each test file uses the helpers it needs")]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// The `weir-loadtest` binary.
pub(crate) fn loadtest() -> PathBuf {
    weir_e2e::binary("weir-loadtest")
}

/// The real `weir` binary, built (with `weir-loadtest`) once per test
/// process: `cargo test -p weir-loadtest` does not build it.
pub(crate) fn weir() -> PathBuf {
    weir_e2e::binary("weir")
}

/// Runs `weir-loadtest ARGS` to completion, failing the test after `limit`.
pub(crate) async fn run_loadtest(args: &[&str], limit: Duration) -> Output {
    weir_e2e::run_within(&loadtest(), args, limit).await
}
