//! The `weir` binary: parses the command line and hands over to the command.

use std::process::ExitCode;

use weir_control::cli::commands;
use weir_control::cli::{Cli, Command};
use weir_control::client::RouteCommand;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    weir_control::telemetry::init(cli.log_format, level);
    match cli.command {
        Command::Run(args) => weir_control::run::main(args, cli.log_format),
        Command::Validate(args) => weir_control::validate::main(&args),
        Command::Status(args) => commands::status(&args),
        Command::Promote(args) => commands::promote(&args),
        Command::Abort(args) => commands::route_command(&args, RouteCommand::Abort),
        Command::Retry(args) => commands::route_command(&args, RouteCommand::Retry),
        Command::Pause(args) => commands::route_command(&args, RouteCommand::Pause),
        Command::Resume(args) => commands::route_command(&args, RouteCommand::Resume),
        Command::Demo(args) => weir_control::demo::main(&args),
        Command::Crd => match weir_control::cluster::resource::crd_yaml() {
            Ok(yaml) => weir_control::output::answer(&yaml),
            Err(error) => {
                weir_control::output::say(format_args!("weir: cannot render the CRD: {error}"));
                ExitCode::FAILURE
            }
        },
    }
}
