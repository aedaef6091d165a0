//! Where the binaries under test are, and free loopback ports to listen on.
//!
//! `cargo test` does not build other packages' binaries, so the first call to
//! [`binary`] in a test process runs `cargo build -p weir-control -p
//! weir-loadtest` (a no-op when they are fresh; cargo has released its lock
//! by the time tests run). This way a test never runs a stale `weir`. Set
//! `WEIR_E2E_SKIP_BUILD=1` to use whatever is in the target directory.
//! Set `WEIR_E2E_PROFILE=release` to run (and build) the release binaries
//! instead of those of the profile the tests were built in, as the
//! measurement examples do.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The packages whose binaries the tests run.
const PACKAGES: [&str; 2] = ["weir-control", "weir-loadtest"];

/// The environment variable naming the profile whose binaries to run.
const PROFILE_VAR: &str = "WEIR_E2E_PROFILE";

/// `<target dir>/<profile>` (normally `target/debug`), found from the
/// running executable, which lives in `<target dir>/<profile>/deps/` (a
/// test) or `<target dir>/<profile>/examples/` (an example); with
/// `WEIR_E2E_PROFILE` set, that profile's directory beside it.
///
/// # Panics
/// When the executable path has no such ancestor.
pub fn target_debug_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let parent = exe.parent().expect("the test executable is in a directory");
    let dir = if parent
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        parent.parent().expect("deps/ has a parent")
    } else {
        parent
    };
    match std::env::var(PROFILE_VAR) {
        Ok(profile) if !profile.is_empty() => dir.with_file_name(profile),
        _ => dir.to_path_buf(),
    }
}

/// The path of binary `name` in [`target_debug_dir`], built first (once per
/// test process) unless `WEIR_E2E_SKIP_BUILD` is set.
///
/// # Panics
/// When the build fails (with cargo's output), or with a message saying how
/// to build it when it is not there.
pub fn binary(name: &str) -> PathBuf {
    if std::env::var_os("WEIR_E2E_SKIP_BUILD").is_none()
        && let Err(output) = BUILT.get_or_init(build)
    {
        panic!("building the binaries under test failed:\n{output}");
    }
    let path = target_debug_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: the end-to-end tests run the real binaries; build them first with \
         `cargo build -p weir-control -p weir-loadtest`",
        path.display()
    );
    path
}

static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

/// `cargo build` of [`PACKAGES`] in the profile the tests run in.
fn build() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.arg("build").current_dir(workspace_root());
    for package in PACKAGES {
        command.args(["-p", package]);
    }
    if target_debug_dir()
        .file_name()
        .is_some_and(|n| n == "release")
    {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The workspace root (parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}
