//! Checks of `strategy.webhooks`, `strategy.threshold` and the top-level
//! `notifications` (SPEC 14), converted into [`crate::hooks`] types. Every
//! problem is recorded at its key with the accepted values.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::check::Checker;
use super::holes::Lost;
use crate::hooks::{
    DEFAULT_HOOK_TIMEOUT, DEFAULT_RETRY_MAX, MAX_NOTIFICATION_RETRIES, MAX_WEBHOOK_RETRIES,
    Notification, Trigger, Webhook, WebhookKind, Webhooks,
};
use crate::schema::{NotificationSpec, RouteSpec, StrategySpec, WebhookSpec};

/// Longest webhook or receiver name (a metric label value).
const MAX_NAME_LEN: usize = 63;

/// The accepted names, quoted: "`a`, `b` or `c`".
fn listed(names: impl Iterator<Item = &'static str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// Why `name` cannot name a webhook or receiver, if it cannot.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty; give a short name such as `load-test`".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "the name has {} characters; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "`{}` contains {bad:?}; use letters, digits, `-`, `_` and `.`",
            name.escape_debug()
        ));
    }
    None
}

/// Why `url` cannot be called, if it cannot.
fn url_problem(url: &str) -> Option<String> {
    let parsed = match url.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(error) => {
            return Some(format!(
                "`{}` is not a URL ({error}); write e.g. `http://flagger-loadtester.test/`",
                url.escape_debug()
            ));
        }
    };
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Some(format!(
                "`{}` uses the scheme `{other}`; weir calls `http://` and `https://` URLs",
                url.escape_debug()
            ));
        }
        None => {
            return Some(format!(
                "`{}` has no scheme; write e.g. `http://{}`",
                url.escape_debug(),
                url.escape_debug()
            ));
        }
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Some(format!("`{}` has no host", url.escape_debug()));
    }
    if !super::analysis_templates::port_in_range(&parsed) {
        return Some(format!(
            "`{}` has a port outside 1 to 65535",
            url.escape_debug()
        ));
    }
    None
}

/// The file's route names, for a receiver's `routes`.
struct KnownRoutes<'r> {
    names: HashSet<&'r str>,
    /// The names as a message lists them.
    listed: String,
    /// The routes left out by the structural pass, which a receiver may
    /// name too.
    left_out: Option<Lost>,
}

// === impl Checker ===

impl Checker<'_> {
    /// `strategy.webhooks` and `strategy.threshold` of the strategy at `at`.
    pub(super) fn webhooks(&mut self, at: &str, spec: &StrategySpec) -> Option<Webhooks> {
        let mut hooks = Some(Vec::with_capacity(spec.webhooks.len()));
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, hook) in spec.webhooks.iter().enumerate() {
            let path = format!("{at}.webhooks[{i}]");
            if self.holes.is_stand_in(&path) {
                hooks = None;
                continue;
            }
            if let Some(first) = names.get(hook.name.as_str()) {
                self.error(
                    &format!("{path}.name"),
                    format!(
                        "webhook name `{}` is already used by webhooks[{first}]; webhook names must be unique within a route",
                        hook.name.escape_debug()
                    ),
                );
                hooks = None;
            } else {
                names.insert(&hook.name, i);
            }
            let hook = self.webhook(&path, hook);
            match (&mut hooks, hook) {
                (Some(all), Some(hook)) => all.push(hook),
                _ => hooks = None,
            }
        }
        Some(Webhooks {
            hooks: hooks?,
            threshold: spec.threshold.unwrap_or(0),
        })
    }

    fn webhook(&mut self, at: &str, spec: &WebhookSpec) -> Option<Webhook> {
        let name = self.hook_name(&format!("{at}.name"), &spec.name);
        let kind_path = format!("{at}.type");
        let kind = match self.text(&kind_path, &spec.kind) {
            None => None,
            Some(text) => {
                let kind = WebhookKind::from_name(text);
                if kind.is_none() {
                    self.error(
                        &kind_path,
                        format!(
                            "unknown webhook type `{}`; expected {}",
                            text.escape_debug(),
                            listed(WebhookKind::ALL.iter().map(|k| k.as_str()))
                        ),
                    );
                }
                kind
            }
        };
        let url = self.hook_url(&format!("{at}.url"), &spec.url);
        let timeout = self.duration_or(
            &format!("{at}.timeout"),
            spec.timeout.as_ref(),
            DEFAULT_HOOK_TIMEOUT,
            "10s",
        );
        let retries = spec.retries.unwrap_or(0);
        let retries = if retries > MAX_WEBHOOK_RETRIES {
            self.error(
                &format!("{at}.retries"),
                format!("{retries} retries; at most {MAX_WEBHOOK_RETRIES} are allowed"),
            );
            None
        } else {
            Some(retries)
        };
        let metadata = self.string_map(&format!("{at}.metadata"), spec.metadata.as_ref());
        Some(Webhook {
            name: name?,
            kind: kind?,
            url: url?,
            timeout: timeout?,
            retries: retries?,
            metadata: metadata?,
        })
    }

    /// The top-level `notifications`; `routes` are the file's routes, which
    /// a receiver's `routes` may name (CanaryRoutes, `NAMESPACE/NAME`, are
    /// not known before they are watched and are taken as written).
    pub(super) fn notifications(
        &mut self,
        specs: &[NotificationSpec],
        routes: &[RouteSpec],
    ) -> Option<Vec<Notification>> {
        let mut out = Some(Vec::with_capacity(specs.len()));
        let mut names: HashMap<&str, usize> = HashMap::new();
        // Looked up by name, listed at most `LISTED` in a message: a
        // receiver naming thousands of routes is checked in linear time.
        let left_out = self.holes.lost("routes").cloned();
        let routes: Vec<&RouteSpec> = routes
            .iter()
            .enumerate()
            .filter(|(i, _)| left_out.is_none() || !self.holes.is_stand_in(&format!("routes[{i}]")))
            .map(|(_, r)| r)
            .collect();
        let known = KnownRoutes {
            names: routes.iter().map(|r| r.name.as_str()).collect(),
            listed: if routes.is_empty() {
                "none".to_owned()
            } else {
                let quoted: Vec<String> = routes.iter().map(|r| format!("`{}`", r.name)).collect();
                super::listed(&quoted)
            },
            left_out,
        };
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("notifications[{i}]");
            if self.holes.is_stand_in(&at) {
                out = None;
                continue;
            }
            if let Some(first) = names.get(spec.name.as_str()) {
                self.error(
                    &format!("{at}.name"),
                    format!(
                        "receiver name `{}` is already used by notifications[{first}]; receiver names must be unique",
                        spec.name.escape_debug()
                    ),
                );
                out = None;
            } else {
                names.insert(&spec.name, i);
            }
            let receiver = self.notification(&at, spec, &known);
            match (&mut out, receiver) {
                (Some(all), Some(receiver)) => all.push(receiver),
                _ => out = None,
            }
        }
        out
    }

    fn notification(
        &mut self,
        at: &str,
        spec: &NotificationSpec,
        routes: &KnownRoutes<'_>,
    ) -> Option<Notification> {
        let name = self.hook_name(&format!("{at}.name"), &spec.name);
        let url = self.hook_url(&format!("{at}.url"), &spec.url);
        let headers = self.headers(&format!("{at}.headers"), spec.headers.as_ref());
        let triggers = self.triggers(&format!("{at}.triggers"), &spec.triggers);
        let mut route_names = Some(Vec::new());
        for (k, route) in spec.routes.iter().flatten().enumerate() {
            let path = format!("{at}.routes[{k}]");
            let Some(route) = self.text(&path, route) else {
                route_names = None;
                continue;
            };
            // A CanaryRoute (`NAMESPACE/NAME`) is only known once watched.
            let known = route.contains('/') || routes.names.contains(route);
            if !known && routes.left_out.as_ref().is_some_and(|l| l.may_name(route)) {
                route_names = None;
            } else if !known {
                self.error(
                    &path,
                    format!(
                        "no route is named `{}`; the routes are {}",
                        route.escape_debug(),
                        routes.listed
                    ),
                );
                route_names = None;
            } else if let Some(all) = &mut route_names {
                all.push(route.to_owned());
            }
        }
        let timeout = self.duration_or(
            &format!("{at}.timeout"),
            spec.timeout.as_ref(),
            DEFAULT_HOOK_TIMEOUT,
            "10s",
        );
        let retry_max = spec.retry_max.unwrap_or(DEFAULT_RETRY_MAX);
        let retry_max = if retry_max > MAX_NOTIFICATION_RETRIES {
            self.error(
                &format!("{at}.retryMax"),
                format!("retryMax is {retry_max}; at most {MAX_NOTIFICATION_RETRIES} are allowed"),
            );
            None
        } else {
            Some(retry_max)
        };
        Some(Notification {
            name: name?,
            url: url?,
            headers: headers?,
            triggers: triggers?,
            routes: route_names?,
            timeout: timeout?,
            retry_max: retry_max?,
        })
    }

    fn triggers(&mut self, at: &str, names: &[String]) -> Option<Vec<Trigger>> {
        if names.is_empty() {
            self.error(
                at,
                format!(
                    "no triggers; list at least one of {}",
                    listed(Trigger::ALL.iter().map(|t| t.as_str()))
                ),
            );
            return None;
        }
        let mut out = Some(Vec::with_capacity(names.len()));
        for (k, name) in names.iter().enumerate() {
            let path = format!("{at}[{k}]");
            let Some(name) = self.text(&path, name) else {
                out = None;
                continue;
            };
            match Trigger::from_name(name) {
                Some(trigger) => {
                    if let Some(all) = &mut out {
                        if all.contains(&trigger) {
                            self.error(&path, format!("trigger `{name}` is listed twice"));
                        } else {
                            all.push(trigger);
                        }
                    }
                }
                None => {
                    self.error(
                        &path,
                        format!(
                            "unknown trigger `{}`; expected {}",
                            name.escape_debug(),
                            listed(Trigger::ALL.iter().map(|t| t.as_str()))
                        ),
                    );
                    out = None;
                }
            }
        }
        out
    }

    fn hook_name(&mut self, path: &str, name: &str) -> Option<Arc<str>> {
        let name = self.text(path, name)?;
        if let Some(problem) = name_problem(name) {
            self.error(path, problem);
            return None;
        }
        Some(Arc::from(name))
    }

    fn hook_url(&mut self, path: &str, url: &str) -> Option<Arc<str>> {
        let url = self.text(path, url)?;
        if let Some(problem) = url_problem(url) {
            self.error(path, problem);
            return None;
        }
        Some(Arc::from(url))
    }

    fn string_map(
        &mut self,
        at: &str,
        map: Option<&BTreeMap<String, String>>,
    ) -> Option<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in map.into_iter().flatten() {
            let path = format!("{at}.{key}");
            if key.is_empty() {
                self.error(&path, "an empty key; give each entry a name");
                ok = false;
                continue;
            }
            match self.text(&path, value) {
                Some(value) => {
                    out.insert(key.clone(), value.to_owned());
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn headers(
        &mut self,
        at: &str,
        map: Option<&BTreeMap<String, String>>,
    ) -> Option<Vec<(String, String)>> {
        let map = self.string_map(at, map)?;
        let mut out = Some(Vec::with_capacity(map.len()));
        for (name, value) in map {
            let path = format!("{at}.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.error(
                    &path,
                    format!("`{}` is not a header name", name.escape_debug()),
                );
                out = None;
            } else if http::HeaderValue::from_str(&value).is_err() {
                self.error(
                    &path,
                    "the value is not a valid header value (control characters or non-ASCII)",
                );
                out = None;
            } else if let Some(all) = &mut out {
                all.push((name, value));
            }
        }
        out
    }
}
