//! `weir demo`: runs a built-in experiment (`--scenario`, by default the
//! canary one) with `weir-loadtest`, which starts its own upstreams, this
//! `weir`, the load and the timeline, and writes a report.
//!
//! The experiment runner lives in `weir-loadtest` (control never links the
//! load-test crate); the demo finds that binary next to its own, and when
//! started through `cargo run` builds it first, so the first command of the
//! README works on a fresh checkout.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::cli::DemoArgs;

/// Runs the demo and exits with the experiment's code (0: every expectation held).
pub fn main(args: &DemoArgs) -> ExitCode {
    let weir = match std::env::current_exe() {
        Ok(path) => path,
        Err(error) => {
            crate::output::say(format_args!(
                "weir demo: cannot find the weir executable: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let loadtest = match find_loadtest(&weir) {
        Ok(path) => path,
        Err(message) => {
            crate::output::say(format_args!("weir demo: {message}"));
            return ExitCode::FAILURE;
        }
    };
    let mut command = Command::new(&loadtest);
    command
        .args(["experiment", "--builtin", &args.scenario, "--weir"])
        .arg(&weir);
    if let Some(out) = &args.out {
        command.arg("--out").arg(out);
    }
    if let Some(speed) = args.speed {
        command.arg("--speed").arg(speed.to_string());
    }
    match command.status() {
        Ok(status) => status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .map_or(ExitCode::FAILURE, ExitCode::from),
        Err(error) => {
            crate::output::say(format_args!(
                "weir demo: cannot run {}: {error}",
                loadtest.display()
            ));
            ExitCode::FAILURE
        }
    }
}

/// `weir-loadtest` next to `weir`; built with the same profile when missing
/// and `weir` itself was started by cargo.
fn find_loadtest(weir: &Path) -> Result<PathBuf, String> {
    let dir = weir
        .parent()
        .ok_or("the weir executable has no directory")?;
    let candidate = dir.join("weir-loadtest");
    if candidate.is_file() {
        return Ok(candidate);
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Err(format!(
            "{} is missing; build it with `cargo build --release -p weir-loadtest` or install it next to weir",
            candidate.display()
        ));
    };
    let release = dir.file_name().is_some_and(|name| name == "release");
    crate::output::say(format_args!("weir demo: building weir-loadtest (once)..."));
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "weir-loadtest"]);
    if release {
        build.arg("--release");
    }
    match build.status() {
        Ok(status) if status.success() && candidate.is_file() => Ok(candidate),
        Ok(status) => Err(format!("building weir-loadtest failed ({status})")),
        Err(error) => Err(format!("cannot run cargo to build weir-loadtest: {error}")),
    }
}
