//! The `weir` binary: parses the command line and hands over to the command.

use std::process::ExitCode;

use clap::Parser;
use weir_control::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => weir_control::run::main(args),
        Command::Validate(args) => weir_control::validate::main(&args),
    }
}
