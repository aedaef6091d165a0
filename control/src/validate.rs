//! `weir validate FILE`: every error with its place, or a one-line summary.

use std::path::Path;
use std::process::ExitCode;

use weir_config::Diagnostics;

use crate::cli::ValidateArgs;
use crate::load;
use crate::persist::StateStore as _;

/// Runs the command: exit 0 with a summary when valid, 1 with every error otherwise.
pub fn main(args: &ValidateArgs) -> ExitCode {
    // Without a runtime names cannot be resolved; the rest is checked.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok();
    let checked = match (load::load(&args.file), &runtime) {
        (Ok(loaded), Some(runtime)) => runtime
            .block_on(load::Resolved::resolve(&loaded.document))
            .map(|_| loaded),
        (Ok(loaded), None) => Ok(loaded),
        // The names of a file that does not load are resolved all the same:
        // one run says every error.
        (Err(Diagnostics(mut problems)), Some(runtime)) => {
            // Read as the load reads (a regular file, bounded in size).
            let text = load::read_file(&args.file)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some(text) = text {
                let checks = weir_config::machine_checks(&text, Path::new("."));
                let file = args.file.display().to_string();
                let names = runtime.block_on(load::unresolved_endpoints(&checks, &file, &problems));
                problems.extend(names);
            }
            Err(load::in_file_order(problems))
        }
        (Err(diagnostics), None) => Err(diagnostics),
    };
    let loaded = match checked {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            crate::output::say_text(format_args!("{diagnostics}"));
            crate::output::say(format_args!(
                "{}: {} error(s)",
                args.file.display(),
                diagnostics.0.len()
            ));
            return ExitCode::FAILURE;
        }
    };
    // `weir run` writes the state of every route with a strategy in
    // `stateDir`: when this user could not, that is said, as a warning,
    // since `weir validate` may run as another user than `weir run` (a CI
    // runner checking a server's file).
    let state_dir = &loaded.config().state_dir;
    let with_rollouts: Vec<&str> = loaded
        .config()
        .routes
        .iter()
        .filter(|r| r.strategy.is_some())
        .map(|r| &*r.name)
        .collect();
    if !with_rollouts.is_empty()
        && let Some(problem) = load::state_dir_unwritable(state_dir)
    {
        let diagnostic = loaded.document.diagnostic(
            "stateDir",
            format!(
                "warning: {problem}; weir run writes the rollout state of {} there, and, as \
                 this user, would refuse to start or to take commands",
                with_rollouts.join(", ")
            ),
        );
        crate::output::say(&diagnostic);
    }
    // A config behind a promotion kept in `stateDir` is refused by `weir
    // run` and at a reload: said here too.
    if let Some(store) = crate::persist::FileStore::existing(&loaded.config().state_dir) {
        let refusals =
            crate::controller::state::promotion_refusals(&loaded, &store, crate::process::now_ms());
        if !refusals.is_empty() {
            let diagnostics = Diagnostics(refusals);
            crate::output::say_text(format_args!("{diagnostics}"));
            crate::output::say(format_args!(
                "{}: {} error(s) against the rollout states in {}",
                args.file.display(),
                diagnostics.0.len(),
                loaded.config().state_dir.display()
            ));
            return ExitCode::FAILURE;
        }
        for warning in crate::controller::state::promoted_routes_missing(loaded.config(), &store) {
            crate::output::say(format_args!("{}: warning: {warning}", args.file.display()));
        }
        // An unreadable state is no error of the file, but `weir run` holds
        // that route's canary at weight 0 until an operator acts: said here.
        for route in loaded
            .config()
            .routes
            .iter()
            .filter(|r| r.strategy.is_some())
        {
            if let crate::persist::Stored::Unreadable(why) = store.load(&route.name) {
                crate::output::say(format_args!(
                    "{}: warning: the rollout state of route {} cannot be read ({why}); \
                     weir run holds its canary at weight 0 until an operator acts (resume or \
                     promote start the steps from step 1, promote --full promotes, abort aborts)",
                    args.file.display(),
                    route.name
                ));
            }
        }
    }
    // `stickiness` and `canaryByHeader` choose between two upstreams; on a
    // route without a canary they are accepted and do nothing until it has
    // one: said here, unless the route has a strategy (between rollouts it
    // keeps them for the next).
    for (i, route) in loaded.config().routes.iter().enumerate() {
        if route.canary.is_some() || route.strategy.is_some() {
            continue;
        }
        for (key, set) in [
            ("stickiness", route.stickiness.is_some()),
            ("canaryByHeader", route.canary_by_header.is_some()),
        ] {
            if set {
                let diagnostic = loaded.document.diagnostic(
                    &format!("routes[{i}].{key}"),
                    format!(
                        "warning: route {} has no canary, so `{key}` does nothing until it has one",
                        route.name
                    ),
                );
                crate::output::say(&diagnostic);
            }
        }
    }
    for warning in loaded.certificate_warnings(crate::process::now_ms()) {
        crate::output::say(format_args!("{}: warning: {warning}", args.file.display()));
    }
    let config = loaded.config();
    let canaries = config.routes.iter().filter(|r| r.canary.is_some()).count();
    let rollouts = config
        .routes
        .iter()
        .filter(|r| r.strategy.is_some())
        .count();
    let cluster = match config.kubernetes.as_ref().map(|k| k.namespaces.as_ref()) {
        None => String::new(),
        Some(None) => ", and CanaryRoutes of every namespace".to_owned(),
        Some(Some(watched)) => format!(
            ", and CanaryRoutes of namespace(s) {}",
            watched.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    crate::output::answer(&format!(
        "{}: valid: {} listener(s), {} route(s), {} with a canary, {} with a rollout strategy{cluster}\n",
        args.file.display(),
        config.listeners.len(),
        config.routes.len(),
        canaries,
        rollouts
    ))
}
