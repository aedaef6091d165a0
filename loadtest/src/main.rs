//! The `weir-loadtest` binary: parses the command line, sets up logging to
//! stderr and runs one subcommand from the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weir_loadtest::{experiment, run, upstream};

/// Fake upstreams and load for weir.
#[derive(Debug, Parser)]
#[command(name = "weir-loadtest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a fake upstream that names itself and injects faults.
    Upstream(upstream::UpstreamArgs),
    /// Send open-loop load and report what came back.
    Run(run::RunArgs),
    /// Run a canary experiment end to end and write a report.
    Experiment(experiment::ExperimentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An experiment prints its own timeline; only warnings go to stderr.
    let default_filter = match cli.command {
        Command::Experiment(_) => "warn",
        Command::Upstream(_) | Command::Run(_) => "info",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .init();
    match run_command(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        match command {
            Command::Upstream(args) => upstream::main(args).await.map(|()| 0),
            Command::Run(args) => run::main(args).await,
            Command::Experiment(args) => Ok(experiment::main(args).await),
        }
    })
}
