//! The problems discovery finds in CanaryRoutes (a spec that does not
//! validate, a missing Service or port, a conflict with another route) as
//! conditions in their `status` and as Events (SPEC section 10).
//!
//! One condition per kind of problem (`Invalid`, `ServiceMissing`,
//! `PortMissing`, `EndpointsMissing`, `Conflict`,
//! `AnalysisTemplateUnresolved`): `True` with the kind as reason and a message
//! naming each field or role, `False` once the problem is gone (a condition
//! never set stays absent). A `Warning` Event goes out when a condition
//! turns `True` or its message changes, after the status write that says
//! so, so a retried write or a new leader (which reads the condition
//! already `True`) sends none again.
//!
//! Only the leader writes. A write is one merge PATCH of `status.conditions`
//! carrying the `resourceVersion` last read: a merge patch replaces the
//! whole list, so the list written is the one read with the problem
//! conditions changed, and the precondition keeps it from replacing
//! conditions written meanwhile. A write that fails is logged and tried
//! again at the next change or judgement refresh. At most
//! [`CONCURRENT_WRITES`] routes are written at once, so a round over many
//! broken routes does not open a request per route against the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::discovery::{
    ANALYSIS_TEMPLATE_UNRESOLVED, CONFLICT, ClusterObjects, ENDPOINTS_MISSING, INVALID, ObjectKey,
    PORT_MISSING, RouteProblem, SERVICE_MISSING,
};
use super::events::{self, RouteRef};
use super::gateway_status::CONCURRENT_WRITES;
use super::resource::{CanaryRoute, StatusCondition};
use super::status_codec::{NOT_SERVED, format_time};
use super::status_store::{EVENT_TIMEOUT, StatusStore, WRITE_TIMEOUT};

/// The condition types of problems, one per [`RouteProblem::reason`].
pub const PROBLEM_CONDITIONS: [&str; 6] = [
    INVALID,
    SERVICE_MISSING,
    PORT_MISSING,
    ENDPOINTS_MISSING,
    CONFLICT,
    ANALYSIS_TEMPLATE_UNRESOLVED,
];

/// The conditions to write over a status, and the problems to tell in an
/// Event.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionUpdate {
    /// The whole `conditions` list: the one read, with the problem
    /// conditions set.
    pub conditions: Vec<StatusCondition>,
    /// `(type, message)` of each condition that turned `True` or whose
    /// message changed.
    pub appeared: Vec<(&'static str, String)>,
}

/// The problems that may be passing: a CanaryRoute applied with its
/// Services (`kubectl apply -f dir/`) may be read before them, and a new
/// Service before its EndpointSlices. Each turns its condition `True` (and
/// sends its Warning Event) only once it has lasted [`GRACE`]; its role
/// answers 503 meanwhile all the same.
const GRACED: [&str; 3] = [SERVICE_MISSING, PORT_MISSING, ENDPOINTS_MISSING];

/// How long a problem of [`GRACED`] lasts before it is said.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Writes the problem conditions of the CanaryRoutes the leader sees.
pub struct ProblemReporter {
    client: kube::Client,
    identity: String,
    /// The last problems reported, when a write of them failed or some were
    /// held back for [`GRACE`]: tried again at the next
    /// [`ProblemReporter::retry`].
    failed: Mutex<Option<Pending>>,
    /// When each problem of [`GRACED`] not yet said was first seen, by
    /// route and kind.
    first_seen: Mutex<BTreeMap<(String, &'static str), tokio::time::Instant>>,
}

/// One route's problem write, answering the route and what became of it.
type RouteWrite<'a> = Pin<Box<dyn Future<Output = (&'a str, Result<Written, String>)> + Send + 'a>>;

/// What a route's problem write did.
enum Written {
    /// Every problem is said (or there was nothing to write).
    All,
    /// Some problem was held back for [`GRACE`].
    SomeHeldBack,
}

/// What a failed round needs to be tried again.
struct Pending {
    routes: BTreeMap<String, Option<String>>,
    problems: BTreeMap<String, Vec<RouteProblem>>,
    served: BTreeSet<String>,
}

/// The problem conditions for `problems` over `previous` (the conditions
/// read), at `now_ms`; `None` when nothing is to change. A route not
/// `served` (a spec that never validated, a conflict) is also not `Ready`
/// ([`NOT_SERVED`]); once served again, the next write of its rollout
/// state sets `Ready` from its phase.
pub fn update(
    previous: &[StatusCondition],
    problems: &[RouteProblem],
    served: bool,
    now_ms: u64,
) -> Option<ConditionUpdate> {
    let mut conditions = previous.to_vec();
    let mut appeared = Vec::new();
    if !served {
        let reasons: Vec<&str> = PROBLEM_CONDITIONS
            .into_iter()
            .filter(|type_| problems.iter().any(|p| p.reason == *type_))
            .collect();
        let message = format!(
            "the route is not served: see the {} condition",
            reasons.join(" and ")
        );
        set(
            &mut conditions,
            "Ready",
            "False",
            NOT_SERVED,
            message,
            now_ms,
        );
    }
    for type_ in PROBLEM_CONDITIONS {
        let found: Vec<String> = problems
            .iter()
            .filter(|p| p.reason == type_)
            .map(ToString::to_string)
            .collect();
        let current = conditions.iter().position(|c| c.type_ == type_);
        let (status, reason, message) = if found.is_empty() {
            match current.map(|i| &conditions[i]) {
                Some(c) if c.status == "True" => {
                    ("False", resolved_reason(type_), resolved_message(type_))
                }
                _ => continue,
            }
        } else {
            ("True", type_, found.join("; "))
        };
        if status == "True"
            && current
                .is_none_or(|i| conditions[i].status != "True" || conditions[i].message != message)
        {
            appeared.push((type_, message.clone()));
        }
        set(&mut conditions, type_, status, reason, message, now_ms);
    }
    (conditions != previous).then_some(ConditionUpdate {
        conditions,
        appeared,
    })
}

/// Sets condition `type_` in `conditions`, in its place or at the end; its
/// transition time stays while its status does, and is `now_ms` otherwise.
fn set(
    conditions: &mut Vec<StatusCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now_ms: u64,
) {
    let current = conditions.iter().position(|c| c.type_ == type_);
    let kept_time = current
        .map(|i| &conditions[i])
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    let condition = StatusCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: Some(kept_time.unwrap_or_else(|| format_time(now_ms))),
    };
    match current {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// The reason of a problem condition set back to `False`.
fn resolved_reason(type_: &str) -> &'static str {
    match type_ {
        INVALID => "Valid",
        SERVICE_MISSING => "ServiceFound",
        PORT_MISSING => "PortFound",
        ENDPOINTS_MISSING => "EndpointsFound",
        ANALYSIS_TEMPLATE_UNRESOLVED => "AnalysisTemplatesResolved",
        _ => "NoConflict",
    }
}

fn resolved_message(type_: &str) -> String {
    match type_ {
        INVALID => "the spec validates".to_owned(),
        SERVICE_MISSING => "every Service named exists".to_owned(),
        PORT_MISSING => "every Service port named exists".to_owned(),
        ENDPOINTS_MISSING => "every Service named has an endpoint to serve".to_owned(),
        ANALYSIS_TEMPLATE_UNRESOLVED => {
            "every AnalysisTemplate named exists and validates".to_owned()
        }
        _ => "no other route matches the same requests".to_owned(),
    }
}

// === impl ProblemReporter ===

impl ProblemReporter {
    /// A reporter writing through `client`, signing Events as `identity`.
    pub fn new(client: kube::Client, identity: &str) -> ProblemReporter {
        ProblemReporter {
            client,
            identity: identity.to_owned(),
            failed: Mutex::new(None),
            first_seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Brings the problem conditions of every CanaryRoute of `objects` in
    /// step with `problems` (by route name), and `Ready` with whether it is
    /// among the `served`, when `leading`; the statuses
    /// and `resourceVersion`s are those `statuses` last saw, and it keeps
    /// the objects the API server answers with.
    pub async fn report(
        &self,
        leading: bool,
        objects: &ClusterObjects,
        problems: BTreeMap<String, Vec<RouteProblem>>,
        served: BTreeSet<String>,
        statuses: &StatusStore,
    ) {
        let routes = objects
            .canary_routes
            .iter()
            .map(|(key, route): (&ObjectKey, _)| (key.to_string(), route.metadata.uid.clone()))
            .collect();
        let pending = Pending {
            routes,
            problems,
            served,
        };
        self.run(leading, pending, statuses).await;
    }

    /// When the first problem held back for [`GRACE`] is due to be said,
    /// if any is: the status writer retries the last round then.
    pub fn next_due(&self) -> Option<tokio::time::Instant> {
        let first_seen = self.first_seen.lock().ok()?;
        first_seen.values().min().map(|first| *first + GRACE)
    }

    /// Tries the last round again when one of its writes failed.
    pub async fn retry(&self, leading: bool, statuses: &StatusStore) {
        let pending = self.failed.lock().ok().and_then(|mut f| f.take());
        if let Some(pending) = pending {
            self.run(leading, pending, statuses).await;
        }
    }

    async fn run(&self, leading: bool, pending: Pending, statuses: &StatusStore) {
        if !leading {
            if let Ok(mut failed) = self.failed.lock() {
                *failed = None;
            }
            // Leading again later, a problem is timed from then.
            if let Ok(mut first_seen) = self.first_seen.lock() {
                first_seen.clear();
            }
            return;
        }
        let now_ms = now_ms();
        let mut writes: Vec<RouteWrite<'_>> = Vec::with_capacity(pending.routes.len());
        for (route, uid) in &pending.routes {
            let problems = pending.problems.get(route).map_or(&[][..], Vec::as_slice);
            let served = pending.served.contains(route);
            writes.push(Box::pin(async move {
                let result = self
                    .write(route, uid.as_deref(), problems, served, statuses, now_ms)
                    .await;
                (route.as_str(), result)
            }));
        }
        let mut done = futures_util::stream::iter(writes).buffer_unordered(CONCURRENT_WRITES);
        let mut any_failed = false;
        while let Some((route, result)) = done.next().await {
            match result {
                Ok(Written::All) => {}
                // Written again at the next retry, once its grace is over.
                Ok(Written::SomeHeldBack) => any_failed = true,
                Err(error) => {
                    tracing::warn!(route, %error, "cannot write the problem conditions; trying again at the next change");
                    any_failed = true;
                }
            }
        }
        drop(done);
        if let Ok(mut first_seen) = self.first_seen.lock() {
            first_seen.retain(|(route, _), _| pending.routes.contains_key(route));
        }
        if let Ok(mut failed) = self.failed.lock() {
            *failed = any_failed.then_some(pending);
        }
    }

    /// The problems of `route` to say now: those of [`GRACED`] whose
    /// condition is not `True` yet are held back until they have lasted
    /// [`GRACE`]. Returns them, and whether any was held back.
    fn graced(
        &self,
        route: &str,
        problems: &[RouteProblem],
        conditions: &[StatusCondition],
    ) -> (Vec<RouteProblem>, bool) {
        let now = tokio::time::Instant::now();
        let Ok(mut first_seen) = self.first_seen.lock() else {
            return (problems.to_vec(), false);
        };
        first_seen
            .retain(|(r, reason), _| r != route || problems.iter().any(|p| p.reason == *reason));
        let mut held_back = false;
        let said = problems
            .iter()
            .filter(|problem| {
                if !GRACED.contains(&problem.reason) {
                    return true;
                }
                let key = (route.to_owned(), problem.reason);
                let said_already = conditions
                    .iter()
                    .any(|c| c.type_ == problem.reason && c.status == "True");
                let first = *first_seen.entry(key.clone()).or_insert(now);
                let lasted = said_already || now.duration_since(first) >= GRACE;
                // Only what is held back stays timed: `next_due` wakes the
                // status writer for it.
                if lasted {
                    first_seen.remove(&key);
                }
                held_back |= !lasted;
                lasted
            })
            .cloned()
            .collect();
        (said, held_back)
    }

    /// Writes `route`'s problem conditions when they change, then the
    /// Events of those that appeared.
    async fn write(
        &self,
        route: &str,
        uid: Option<&str>,
        problems: &[RouteProblem],
        served: bool,
        statuses: &StatusStore,
        now_ms: u64,
    ) -> Result<Written, String> {
        // The conditions and the version they were read at, together: the
        // list written replaces the whole list, so it must be the one of the
        // object the precondition names.
        let Some((status, resource_version)) = statuses.status_and_version(route) else {
            if let Ok(mut first_seen) = self.first_seen.lock() {
                first_seen.retain(|(r, _), _| r != route);
            }
            return Ok(Written::All);
        };
        let (problems, held_back) = self.graced(route, problems, &status.conditions);
        let written = if held_back {
            Written::SomeHeldBack
        } else {
            Written::All
        };
        let Some(update) = update(&status.conditions, &problems, served, now_ms) else {
            return Ok(written);
        };
        let (namespace, name) = route
            .split_once('/')
            .ok_or_else(|| format!("{route:?} is not a CanaryRoute name"))?;
        let resource_version =
            resource_version.ok_or_else(|| "read without a resourceVersion".to_owned())?;
        let body = json!({
            "metadata": {"resourceVersion": resource_version},
            "status": {"conditions": update.conditions},
        });
        let api: Api<CanaryRoute> = Api::namespaced(self.client.clone(), namespace);
        let answered = tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body)),
        )
        .await;
        let object = match answered {
            Ok(Ok(object)) => object,
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                return Err(format!(
                    "the status changed since it was read (resourceVersion {resource_version})"
                ));
            }
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => {
                return Err(format!(
                    "no answer from the API server within {} s",
                    WRITE_TIMEOUT.as_secs()
                ));
            }
        };
        statuses.observe(route, &object);
        let regarding = RouteRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.map(str::to_owned),
            resource_version: object.metadata.resource_version.clone(),
        };
        for (type_, message) in update.appeared {
            let event = events::problem(type_, &message, &regarding, &self.identity, now_ms);
            match tokio::time::timeout(EVENT_TIMEOUT, events::send(self.client.clone(), &event))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(route, reason = type_, %error, "cannot send the Event")
                }
                Err(_) => tracing::warn!(route, reason = type_, "no answer to the Event in time"),
            }
        }
        Ok(written)
    }
}

impl std::fmt::Debug for ProblemReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProblemReporter")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
