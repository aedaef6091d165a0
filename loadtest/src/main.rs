//! The `weir-loadtest` binary: parses the command line, sets up logging to
//! stderr and runs one subcommand from the library.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use weir_loadtest::{run, upstream};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Upstream(args) => upstream::main(args).await,
            Command::Run(args) => run::main(args).await,
        }
    })
}
