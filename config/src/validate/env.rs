//! `${VAR}` substitution in every string value of a parsed [`ConfigSpec`].

use crate::schema::{ConfigSpec, DurationSpec, RouteSpec};

/// Looks a variable up; `None` when unset.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces `${VAR}` in every string of `spec`. Returns `(path, message)` for
/// each reference that cannot be replaced; such values are left as written.
pub(super) fn substitute(spec: &mut ConfigSpec, env: Env<'_>) -> Vec<(String, String)> {
    let mut walk = Walk {
        env,
        errors: Vec::new(),
    };
    for (i, listener) in spec.listeners.iter_mut().enumerate() {
        let at = format!("listeners[{i}]");
        walk.text(&mut listener.name, &at, "name");
        walk.text(&mut listener.address, &at, "address");
        if let Some(tls) = &mut listener.tls {
            let at = format!("{at}.tls");
            walk.text(&mut tls.cert_file, &at, "certFile");
            walk.text(&mut tls.key_file, &at, "keyFile");
        }
    }
    if let Some(admin) = &mut spec.admin {
        walk.text(&mut admin.address, "admin", "address");
        walk.opt(&mut admin.reader_token, "admin", "readerToken");
        walk.opt(&mut admin.writer_token, "admin", "writerToken");
    }
    walk.opt(&mut spec.state_dir, "", "stateDir");
    for (i, route) in spec.routes.iter_mut().enumerate() {
        walk.route(route, &format!("routes[{i}]"));
    }
    walk.errors
}

/// Expands `${VAR}` references in `text`; every problem is returned, each as
/// a message.
pub(super) fn expand(text: &str, env: Env<'_>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push(
                "`${` without a closing `}`; write `${NAME}` to use the environment variable NAME"
                    .to_owned(),
            );
            rest = "";
            break;
        };
        let name = &after[..end];
        if !is_variable_name(name) {
            errors.push(format!(
                "`${{{name}}}` does not name a variable; write `${{NAME}}` with letters, digits and `_`, not starting with a digit"
            ));
        } else {
            match env(name) {
                Some(value) => out.push_str(&value),
                None => errors.push(format!(
                    "environment variable `{name}` is not set; set it, or write the value in place of `${{{name}}}`"
                )),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The substitution pass and the problems it found.
struct Walk<'a> {
    env: Env<'a>,
    errors: Vec<(String, String)>,
}

// === impl Walk ===

impl Walk<'_> {
    fn text(&mut self, value: &mut String, parent: &str, key: &str) {
        if !value.contains("${") {
            return;
        }
        match expand(value, self.env) {
            Ok(expanded) => *value = expanded,
            Err(messages) => {
                let path = crate::location::child_key(parent, key);
                self.errors
                    .extend(messages.into_iter().map(|m| (path.clone(), m)));
            }
        }
    }

    fn opt(&mut self, value: &mut Option<String>, parent: &str, key: &str) {
        if let Some(value) = value {
            self.text(value, parent, key);
        }
    }

    fn duration(&mut self, value: &mut Option<DurationSpec>, parent: &str, key: &str) {
        if let Some(DurationSpec::Text(text)) = value {
            self.text(text, parent, key);
        }
    }

    fn list(&mut self, values: &mut [String], parent: &str, key: &str) {
        for (i, value) in values.iter_mut().enumerate() {
            self.text(value, parent, &format!("{key}[{i}]"));
        }
    }

    fn route(&mut self, route: &mut RouteSpec, at: &str) {
        self.text(&mut route.name, at, "name");
        self.list(&mut route.hosts, at, "hosts");
        self.opt(&mut route.path_prefix, at, "pathPrefix");
        let stable = format!("{at}.stable");
        self.text(&mut route.stable.revision, &stable, "revision");
        self.list(&mut route.stable.endpoints, &stable, "endpoints");
        if let Some(canary) = &mut route.canary {
            let at = format!("{at}.canary");
            self.text(&mut canary.revision, &at, "revision");
            self.list(&mut canary.endpoints, &at, "endpoints");
        }
        if let Some(sticky) = &mut route.stickiness {
            let at = format!("{at}.stickiness");
            self.text(&mut sticky.cookie, &at, "cookie");
            self.duration(&mut sticky.max_age, &at, "maxAge");
        }
        if let Some(header) = &mut route.canary_by_header {
            let at = format!("{at}.canaryByHeader");
            self.text(&mut header.name, &at, "name");
            self.text(&mut header.value, &at, "value");
        }
        if let Some(timeouts) = &mut route.timeouts {
            let at = format!("{at}.timeouts");
            self.duration(&mut timeouts.connect, &at, "connect");
            self.duration(&mut timeouts.request, &at, "request");
        }
        if let Some(strategy) = &mut route.strategy {
            let at = format!("{at}.strategy");
            for (i, step) in strategy.steps.iter_mut().enumerate() {
                if let Some(pause) = &mut step.pause {
                    self.duration(
                        &mut pause.duration,
                        &format!("{at}.steps[{i}].pause"),
                        "duration",
                    );
                }
            }
            if let Some(analysis) = &mut strategy.analysis {
                let at = format!("{at}.analysis");
                self.duration(&mut analysis.interval, &at, "interval");
                self.duration(&mut analysis.window, &at, "window");
                self.duration(&mut analysis.max_latency_p99, &at, "maxLatencyP99");
            }
        }
    }
}
