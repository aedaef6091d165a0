//! `weir-loadtest experiment`: runs a canary experiment end to end and
//! writes a report.
//!
//! A [scenario] names fake upstreams, a weir config, a load, a
//! timeline of actions (config rewrites, faults, rollout commands) and
//! expectations. The runner starts the upstreams in-process, starts the real
//! `weir run` binary on loopback ports, sends open-loop load through it with
//! [`crate::run`], applies the timeline, samples `GET /api/v1/routes`, then
//! tears everything down, checks the expectations and writes `report.json`
//! and a self-contained `report.html` into the run directory.
//!
//! Exit codes: [`EXIT_PASSED`], [`EXIT_FAILED`], [`EXIT_ERROR`].
//!
//! It never sends anything off loopback and always stops: the load at the
//! scenario's duration, weir within a few seconds of SIGTERM.

mod check;
mod html;
mod observe;
mod process;
mod prometheus;
pub mod report;
mod reserved_port;
mod runner;
pub mod scenario;
mod smoke;

pub use report::ExperimentReport;
pub use scenario::{Scenario, ScenarioError};

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every expectation held.
pub const EXIT_PASSED: u8 = 0;
/// An expectation did not hold.
pub const EXIT_FAILED: u8 = 1;
/// The scenario was refused, or the experiment could not start or finish.
pub const EXIT_ERROR: u8 = 2;

/// The speed of `--short`.
pub const SHORT_SPEED: f64 = 3.0;

/// Command-line options of `weir-loadtest experiment`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every expectation holds and every timeline action \
                        takes, 1 when an expectation fails or an action does not take (a \
                        command weir refuses), 2 for a bad scenario or a failure to start."
)]
pub struct ExperimentArgs {
    /// The scenario file (YAML).
    #[arg(
        value_name = "FILE",
        required_unless_present = "builtin",
        conflicts_with = "builtin"
    )]
    pub file: Option<PathBuf>,
    /// Run a built-in scenario instead of a file.
    #[arg(long, value_name = "NAME", value_parser = BUILTIN_SCENARIOS)]
    pub builtin: Option<String>,
    /// The weir binary; default: `weir` next to this executable, then on PATH.
    #[arg(long, value_name = "PATH")]
    pub weir: Option<PathBuf>,
    /// The run directory; default `./weir-experiment-<name>-<timestamp>/`.
    /// It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print no live timeline, only the summary at the end.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run the scenario F times faster: durations, offsets, `by` limits and
    /// pause steps are divided by F.
    #[arg(long, value_name = "F", conflicts_with = "short")]
    pub speed: Option<f64>,
    /// Same as `--speed 3`.
    #[arg(long)]
    pub short: bool,
}

/// Why an experiment did not produce a verdict.
#[derive(Debug)]
pub enum Failure {
    /// The scenario was refused.
    Scenario(ScenarioError),
    /// An upstream, weir or the run directory could not be set up.
    Start(String),
    /// The run or its report failed after the start.
    Run(String),
}

/// How to run a scenario: see [`run`].
#[derive(Debug, Clone)]
pub struct Options {
    /// The weir binary.
    pub weir: PathBuf,
    /// The run directory (created; must not exist or be empty).
    pub out: PathBuf,
    /// No live timeline.
    pub quiet: bool,
    /// The `--speed` factor (1 = as written).
    pub speed: f64,
}

/// Runs `weir-loadtest experiment` and returns its exit code.
pub async fn main(args: ExperimentArgs) -> u8 {
    match main_inner(&args).await {
        Ok(report) => {
            if report.passed {
                EXIT_PASSED
            } else {
                EXIT_FAILED
            }
        }
        Err(Failure::Scenario(e)) => {
            eprintln!("error: the scenario is not valid:\n{e}");
            EXIT_ERROR
        }
        Err(Failure::Start(e)) => {
            eprintln!("error: the experiment could not start: {e}");
            EXIT_ERROR
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: the experiment failed: {e}");
            EXIT_ERROR
        }
    }
}

async fn main_inner(args: &ExperimentArgs) -> Result<ExperimentReport, Failure> {
    let (text, origin) = match (&args.builtin, &args.file) {
        (Some(name), _) => (
            builtin(name)
                .ok_or_else(|| Failure::Start(format!("no built-in scenario {name}")))?
                .to_owned(),
            format!("builtin {name}"),
        ),
        (None, Some(file)) => (
            std::fs::read_to_string(file)
                .map_err(|e| Failure::Start(format!("reading {}: {e}", file.display())))?,
            file.display().to_string(),
        ),
        (None, None) => {
            return Err(Failure::Start(
                "give a scenario FILE or --builtin NAME".into(),
            ));
        }
    };
    let speed = if args.short {
        SHORT_SPEED
    } else {
        args.speed.unwrap_or(1.0)
    };
    let scenario = scenario::parse(&text, &origin)
        .and_then(|s| s.scaled(speed, &origin))
        .map_err(Failure::Scenario)?;
    let weir = match &args.weir {
        // Checked before anything is made: a run directory left empty
        // behind a mistyped path helps no one.
        Some(path) if !path.is_file() => {
            return Err(Failure::Start(format!(
                "--weir {}: no such file",
                path.display()
            )));
        }
        Some(path) => path.clone(),
        None => find_weir().ok_or_else(|| {
            Failure::Start(
                "no weir binary next to weir-loadtest or on PATH; pass --weir PATH".into(),
            )
        })?,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "weir-experiment-{}-{}",
            scenario.name,
            runner::compact_timestamp(SystemTime::now())
        ))
    });
    let options = Options {
        weir,
        out,
        quiet: args.quiet,
        speed,
    };
    let report = run(scenario, &options).await?;
    println!("{}", report.summary_text().trim_end());
    println!(
        "report: {}\n        {}",
        options.out.join("report.json").display(),
        options.out.join("report.html").display()
    );
    Ok(report)
}

/// Runs an already parsed (and scaled) scenario with `options` and writes
/// `report.json` and `report.html` into `options.out`.
///
/// # Errors
/// [`Failure::Start`] when the run directory is not empty or an upstream or
/// weir cannot be started; [`Failure::Run`] when the load or the report
/// fails.
pub async fn run(scenario: Scenario, options: &Options) -> Result<ExperimentReport, Failure> {
    check_out_dir(&options.out)?;
    if !options.quiet {
        println!(
            "experiment {}: {} upstreams, {} req/s for {} (speed ×{}), run dir {}",
            scenario.name,
            scenario.upstreams.len(),
            scenario.load.rate,
            scenario.duration,
            options.speed,
            options.out.display()
        );
    }
    let plan = runner::Plan {
        scenario,
        speed: options.speed,
        weir: options.weir.clone(),
        dir: options.out.clone(),
        quiet: options.quiet,
    };
    runner::run(&plan).await
}

/// The names of the built-in scenarios.
pub const BUILTIN_SCENARIOS: [&str; 2] = ["demo", "blue-green"];

/// The text of a built-in scenario.
pub fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "demo" => Some(crate::DEMO_SCENARIO),
        "blue-green" => Some(crate::BLUE_GREEN_SCENARIO),
        _ => None,
    }
}

/// `weir` next to the running executable, else the first on `PATH`.
pub fn find_weir() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("weir")))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("weir"))
            .find(|p| p.is_file())
    })
}

/// Refuses a run directory that already holds something: a leftover
/// `weir-state` would make weir resume an old rollout.
fn check_out_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure::Start(format!(
                    "{} is not empty; give a new directory with --out",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::Start(format!("{}: {e}", dir.display()))),
    }
}

// === impl Failure ===

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scenario(e) => write!(f, "the scenario is not valid: {e}"),
            Self::Start(e) => write!(f, "the experiment could not start: {e}"),
            Self::Run(e) => write!(f, "the experiment failed: {e}"),
        }
    }
}

impl std::error::Error for Failure {}
