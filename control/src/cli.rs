//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::{AdminUrl, DEFAULT_ADMIN_URL, EXIT_CODES_HELP};

pub mod commands;

/// weir: a canary-release L7 proxy.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr, for every command.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic with the routes of a config file.
    Run(RunArgs),
    /// Check a config file and print every error with its location.
    Validate(ValidateArgs),
    /// Show the rollout status of every route, or of one.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(StatusArgs),
    /// End the current pause (or skip the current step) of a route; with
    /// --full skip every remaining step; with --all promote every Paused route.
    #[command(after_help = EXIT_CODES_HELP)]
    Promote(PromoteArgs),
    /// Abort a route's rollout: canary weight 0 at once.
    #[command(after_help = EXIT_CODES_HELP)]
    Abort(RouteArgs),
    /// Start an aborted rollout's steps again.
    #[command(after_help = EXIT_CODES_HELP)]
    Retry(RouteArgs),
    /// Hold a route's step timer.
    #[command(after_help = EXIT_CODES_HELP)]
    Pause(RouteArgs),
    /// Release a route's step timer.
    #[command(after_help = EXIT_CODES_HELP)]
    Resume(RouteArgs),
    /// Run the built-in canary experiment: v2 is promoted step by step, v3
    /// fails part of its requests and is rolled back on its own.
    Demo(DemoArgs),
    /// Print the CanaryRoute and AnalysisTemplate
    /// CustomResourceDefinitions as YAML, for `weir crd | kubectl apply -f -`.
    Crd,
}

/// The commands that talk to a running weir, and so take `--admin` and
/// `--token`.
const ADMIN_COMMANDS: [&str; 6] = ["status", "promote", "abort", "retry", "pause", "resume"];

impl Cli {
    /// Parses the process's arguments, exiting with clap's message on an
    /// error (see [`Cli::parse_args`]).
    pub fn from_env() -> Cli {
        match Cli::parse_args(std::env::args_os()) {
            Ok(cli) => cli,
            Err(error) => error.exit(),
        }
    }

    /// Parses `args` (the program's name first). `--admin` and `--token`
    /// written before a command that takes them (`weir --admin URL status`)
    /// are read as written after it, like `--log-format`.
    ///
    /// # Errors
    /// clap's, for arguments that do not parse.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        Cli::try_parse_from(admin_options_after_the_command(args))
    }
}

/// `args` with any `--admin`/`--token` (and their values) that come before
/// a command of [`ADMIN_COMMANDS`] moved to just after it; unchanged when
/// there is no such command.
fn admin_options_after_the_command(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(command) = args
        .iter()
        .position(|a| a.to_str().is_some_and(|a| ADMIN_COMMANDS.contains(&a)))
    else {
        return args;
    };
    let mut before = Vec::with_capacity(command);
    let mut moved = Vec::new();
    let mut i = 0;
    while i < command {
        let arg = &args[i];
        let text = arg.to_str().unwrap_or("");
        if i > 0 && (text == "--admin" || text == "--token") && i + 1 < command {
            moved.extend([arg.clone(), args[i + 1].clone()]);
            i += 2;
            continue;
        }
        if i > 0 && (text.starts_with("--admin=") || text.starts_with("--token=")) {
            moved.push(arg.clone());
        } else {
            before.push(arg.clone());
        }
        i += 1;
    }
    before.push(args[command].clone());
    before.extend(moved);
    before.extend(args[command + 1..].iter().cloned());
    before
}

/// The built-in experiments of `weir demo --scenario NAME`.
pub const DEMO_SCENARIOS: [&str; 2] = ["demo", "blue-green"];

/// Arguments of `weir demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The built-in experiment: `demo` (canary steps, a bad canary rolled
    /// back) or `blue-green` (a release swapped in after its smoke test,
    /// then a slow one swapped back; needs `/usr/bin/prometheus`).
    #[arg(long, value_name = "NAME", default_value = "demo", value_parser = DEMO_SCENARIOS)]
    pub scenario: String,
    /// Where the report goes (default: a new directory under the current one).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run the scenario this many times faster (e.g. 3 for a ~20 s run).
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f64>,
}

/// Arguments of `weir run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (weir.yaml).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Watch CanaryRoutes, Services and EndpointSlices even when the config
    /// has no `kubernetes` block (its defaults apply).
    #[arg(long)]
    pub kubernetes: bool,
}

/// Arguments of `weir validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config file to check.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Where a running weir's admin API is, and the token for it: the options
/// of every command that talks to one.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The admin API's base URL (plain http:// only).
    #[arg(long, value_name = "URL", default_value = DEFAULT_ADMIN_URL, value_parser = AdminUrl::parse)]
    pub admin: AdminUrl,
    /// Bearer token for the admin API (a writer token for commands that change
    /// a rollout).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WEIR_TOKEN",
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub token: Option<String>,
}

/// Arguments of `weir status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this route.
    #[arg(value_name = "ROUTE", value_parser = parse_route)]
    pub route: Option<String>,
    /// Redraw every second until Ctrl-C, with every step marked done (✔),
    /// current (▶) or pending (○).
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Print the admin API's JSON as it is (one object for ROUTE, else an
    /// array); with --watch, one document per line every second.
    #[arg(long)]
    pub json: bool,
    /// Where the admin API is.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Arguments of `weir promote`.
#[derive(Debug, Clone, Args)]
pub struct PromoteArgs {
    /// The route to promote.
    #[arg(
        value_name = "ROUTE",
        required_unless_present = "all",
        conflicts_with = "all",
        value_parser = parse_route
    )]
    pub route: Option<String>,
    /// Skip the remaining steps: 100 % canary, phase Promoted.
    #[arg(long, conflicts_with = "all")]
    pub full: bool,
    /// Promote every route that is Paused.
    #[arg(long)]
    pub all: bool,
    /// Where the admin API is.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Arguments of `weir abort|retry|pause|resume`.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// The route.
    #[arg(value_name = "ROUTE", value_parser = parse_route)]
    pub route: String,
    /// Where the admin API is.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Accepts a token an HTTP header can carry (visible ASCII, no spaces); an
/// empty one means none.
/// A route name as given: a file route's name or a CanaryRoute's
/// `NAMESPACE/NAME`, never empty.
fn parse_route(route: &str) -> Result<String, String> {
    if route.is_empty() {
        Err("a route name is not empty (`weir status` lists them)".to_owned())
    } else {
        Ok(route.to_owned())
    }
}

fn parse_token(token: &str) -> Result<String, String> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token.to_owned())
    } else {
        Err("a token must be visible ASCII characters without spaces".to_owned())
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(std::iter::once("weir").chain(args.iter().copied()))
    }

    /// SPEC 8: the commands that talk to a running weir take `--admin`
    /// and `--token`, also when written before the command.
    #[test]
    fn admin_options_may_come_before_the_command() {
        for args in [
            &[
                "--admin",
                "http://10.0.0.1:9000",
                "--token",
                "t",
                "status",
                "checkout",
            ][..],
            &[
                "--admin=http://10.0.0.1:9000",
                "--token=t",
                "status",
                "checkout",
            ],
            &[
                "--log-format",
                "json",
                "--admin",
                "http://10.0.0.1:9000",
                "status",
                "checkout",
                "--token",
                "t",
            ],
        ] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let Command::Status(status) = cli.command else {
                panic!("{args:?}: status");
            };
            assert_eq!(
                status.admin.admin.to_string(),
                "http://10.0.0.1:9000",
                "{args:?}"
            );
            assert_eq!(status.admin.token.as_deref(), Some("t"), "{args:?}");
            assert_eq!(status.route.as_deref(), Some("checkout"), "{args:?}");
        }
        // A command without them still refuses them.
        assert!(parse(&["--admin", "http://10.0.0.1:9000", "validate", "weir.yaml"]).is_err());
    }

    #[test]
    fn admin_commands_parse() {
        let cli = parse(&[
            "status",
            "checkout",
            "--json",
            "--admin",
            "http://10.0.0.1:9000",
        ])
        .expect("valid");
        let Command::Status(args) = cli.command else {
            panic!("not status");
        };
        assert_eq!(args.route.as_deref(), Some("checkout"));
        assert!(args.json && !args.watch);
        assert_eq!(args.admin.admin.to_string(), "http://10.0.0.1:9000");

        let cli = parse(&["promote", "checkout", "--full", "--token", "s3cret"]).expect("valid");
        let Command::Promote(args) = cli.command else {
            panic!("not promote");
        };
        assert!(args.full && !args.all);
        assert_eq!(args.admin.admin.to_string(), DEFAULT_ADMIN_URL);
        assert_eq!(args.admin.token.as_deref(), Some("s3cret"));

        let cli = parse(&["promote", "--all"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Promote(PromoteArgs {
                all: true,
                route: None,
                ..
            })
        ));
        for command in ["abort", "retry", "pause", "resume"] {
            assert!(parse(&[command, "checkout"]).is_ok(), "{command}");
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["promote"][..],
            &["promote", "checkout", "--all"],
            &["promote", "--all", "--full"],
            &["abort"],
            &["status", "--admin", "https://127.0.0.1:9900"],
            &["status", "--admin", "127.0.0.1:9900"],
            &["status", "--token", "two words"],
            &["promote", ""],
            &["abort", ""],
            &["status", ""],
        ] {
            let error = parse(args).expect_err("a usage error");
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
        let error = parse(&["status", "--admin", "https://weir:9900"]).expect_err("https");
        assert!(
            error.to_string().contains("https is not supported"),
            "{error}"
        );
    }

    #[test]
    fn help_lists_exit_codes() {
        let error = parse(&["promote", "--help"]).expect_err("help exits");
        let help = error.to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("6  weir cannot be reached"), "{help}");
    }
}
