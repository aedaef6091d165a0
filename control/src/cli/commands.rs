//! The commands that talk to a running weir through its admin API: each
//! parses nothing more, builds an [`AdminClient`] from its arguments, runs on
//! a current-thread runtime and maps the outcome to an [`Exit`] code.

use std::future::Future;
use std::io::{self, IsTerminal as _};
use std::process::ExitCode;

use super::{AdminArgs, PromoteArgs, RouteArgs, StatusArgs};
use crate::client::{
    AdminClient, ClientError, Exit, RouteCommand, WATCH_INTERVAL, now_ms, render, watch, watch_json,
};

/// `weir status [ROUTE] [--watch] [--json]`.
pub fn status(args: &StatusArgs) -> ExitCode {
    let Some(client) = client(&args.admin) else {
        return Exit::Usage.into();
    };
    let route = args.route.as_deref();
    if args.watch && args.json {
        return block_on(async {
            let mut stdout = io::stdout();
            watch_json(&client, route, WATCH_INTERVAL, &mut stdout, ctrl_c())
                .await
                .into()
        });
    }
    if args.watch {
        let terminal = io::stdout().is_terminal();
        return block_on(async {
            let mut stdout = io::stdout();
            let stop = ctrl_c();
            watch(&client, route, WATCH_INTERVAL, &mut stdout, terminal, stop)
                .await
                .into()
        });
    }
    block_on(async {
        let now = now_ms();
        let outcome = match (route, args.json) {
            (Some(name), true) => client
                .route_json(name)
                .await
                .map(|raw| render::pretty_json(&raw)),
            (None, true) => client
                .routes_json()
                .await
                .map(|raw| render::pretty_json(&raw)),
            (Some(name), false) => match client.route(name).await {
                Ok(status) => {
                    // The runs are extra: a failure to read them leaves them out.
                    let runs = client.analysis_runs(name).await.unwrap_or_default();
                    Ok(render::route_text(&status, now) + &render::analysis_runs_text(&runs))
                }
                Err(error) => Err(error),
            },
            (None, false) => client
                .routes()
                .await
                .map(|routes| render::routes_text(&routes, now)),
        };
        finish(outcome)
    })
}

/// `weir promote ROUTE [--full]` and `weir promote --all`.
pub fn promote(args: &PromoteArgs) -> ExitCode {
    let Some(client) = client(&args.admin) else {
        return Exit::Usage.into();
    };
    block_on(async {
        let outcome = match (&args.route, args.all) {
            (_, true) => client
                .promote_all()
                .await
                .map(|answer| render::promote_all_line(&answer)),
            (Some(route), false) => client
                .command(route, RouteCommand::Promote { full: args.full })
                .await
                .map(|status| render::command_line(&status)),
            (None, false) => {
                // clap requires one of the two; kept for callers building args by hand.
                crate::output::say(format_args!("weir: promote needs a ROUTE or --all"));
                return Exit::Usage.into();
            }
        };
        finish(outcome)
    })
}

/// `weir abort|retry|pause|resume ROUTE` (or any other [`RouteCommand`]).
pub fn route_command(args: &RouteArgs, command: RouteCommand) -> ExitCode {
    let Some(client) = client(&args.admin) else {
        return Exit::Usage.into();
    };
    block_on(async {
        let outcome = client
            .command(&args.route, command)
            .await
            .map(|status| render::command_line(&status));
        finish(outcome)
    })
}

// === helpers ===

/// The client for `--admin` and `--token`, or `None` after printing why not.
fn client(args: &AdminArgs) -> Option<AdminClient> {
    match AdminClient::new(args.admin.clone(), args.token.as_deref()) {
        Ok(client) => Some(client),
        Err(error) => {
            crate::output::say(format_args!("weir: {error}"));
            None
        }
    }
}

/// Runs `future` on a current-thread runtime; a runtime that cannot start is
/// reported and ends the command with exit 1.
fn block_on(future: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            crate::output::say(format_args!("weir: cannot start the runtime: {error}"));
            Exit::Refused.into()
        }
    }
}

/// Prints the result of a one-shot command: the text on stdout and exit 0,
/// or `weir: <error>` on stderr and the error's exit code.
fn finish(outcome: Result<String, ClientError>) -> ExitCode {
    match outcome {
        Ok(mut text) => {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            // A closed stdout (`| head`) is not the command's failure; a
            // full disk is.
            crate::output::answer(&text)
        }
        Err(error) => {
            crate::output::say(format_args!("weir: {error}"));
            error.exit().into()
        }
    }
}

/// Completes on Ctrl-C; never, if the signal cannot be listened for.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
