//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// weir: a canary-release L7 proxy.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic with the routes of a config file.
    Run(RunArgs),
    /// Check a config file and print every error with its location.
    Validate(ValidateArgs),
}

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (weir.yaml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Arguments of `weir validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}
