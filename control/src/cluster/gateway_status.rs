//! The status of the Gateway API objects weir owns (SPEC section 11),
//! written by the leader only: GatewayClass `Accepted`; Gateway `Accepted`
//! and `Programmed` with one entry per listener (`supportedKinds`,
//! `attachedRoutes`, `Accepted`, `Programmed`, and `ResolvedRefs`, `False`
//! with `InvalidRouteKinds` when its `allowedRoutes.kinds` lists kinds weir
//! does not support); on each HTTPRoute, one
//! `status.parents` entry per parent of ours (`controllerName`
//! `weir.dev/gateway-controller`) with `Accepted` and `ResolvedRefs`, plus
//! `PartiallyInvalid` while some rules of an accepted route are left out
//! (removed, not set `False`, once none is: the Gateway API allows it only
//! `True`), the entries of other controllers kept as they were read.
//!
//! Each condition carries the `observedGeneration` judged and keeps its
//! `lastTransitionTime` while its status stays. A status is written only
//! when it would change: one merge PATCH of `/status` carrying the
//! `resourceVersion` read (a merge patch replaces the whole `parents` list,
//! so the precondition keeps it from dropping an entry another controller
//! wrote meanwhile). A write that fails is logged and tried again at the
//! next change or refresh. The writes of one round run concurrently, at
//! most [`CONCURRENT_WRITES`] at a time, so an API server that does not
//! answer costs a round a few write timeouts, not one per object.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::discovery::{ClusterObjects, ObjectKey};
use super::gateway_api::{
    CONTROLLER_NAME, Condition, ConditionsStatus, Gateway, GatewayClass, GatewayStatus, HttpRoute,
    HttpRouteStatus, ListenerStatus, RouteParentStatus,
};
use super::gateway_routes::{
    CompiledGateways, GatewayVerdict, ObjectVerdict, PARTIALLY_INVALID, ParentVerdict, Verdict,
};
use super::status_codec::format_time;
use super::status_store::WRITE_TIMEOUT;

/// How many status writes of one round may be in flight at once.
pub const CONCURRENT_WRITES: usize = 8;

/// One status write, answering 1 when it failed, else 0.
type PendingWrite<'a> = Pin<Box<dyn Future<Output = usize> + Send + 'a>>;

/// Writes the status of our GatewayClasses, Gateways and HTTPRoutes.
pub struct GatewayStatusWriter {
    client: kube::Client,
    /// The status last written per object (kind and key, without its
    /// transition times) and the `resourceVersion` it was written over: the
    /// same status over the same version is not written twice while the
    /// watch catches up.
    written: Mutex<Written>,
    /// The inputs of the last round, when a write of it failed.
    failed: Mutex<Option<(ClusterObjects, CompiledGateways)>>,
}

/// Per object (kind and key): the `resourceVersion` a status was written
/// over and that status without its transition times.
type Written = BTreeMap<(&'static str, ObjectKey), (String, serde_json::Value)>;

/// The GatewayClass status for `verdict` over `current`; `None` when
/// nothing changes.
pub fn class_status(
    current: Option<&ConditionsStatus>,
    verdict: &ObjectVerdict,
    now_ms: u64,
) -> Option<ConditionsStatus> {
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let next = ConditionsStatus {
        conditions: merge(
            previous,
            &[("Accepted", &verdict.accepted)],
            verdict.generation,
            now_ms,
        ),
    };
    (current != Some(&next)).then_some(next)
}

/// The Gateway status for `verdict` over `current`; `None` when nothing
/// changes.
pub fn gateway_status(
    current: Option<&GatewayStatus>,
    verdict: &GatewayVerdict,
    now_ms: u64,
) -> Option<GatewayStatus> {
    let empty = GatewayStatus::default();
    let previous = current.unwrap_or(&empty);
    let listeners = verdict
        .listeners
        .iter()
        .map(|listener| {
            let before = previous
                .listeners
                .iter()
                .find(|l| l.name == listener.name)
                .map(|l| l.conditions.as_slice())
                .unwrap_or_default();
            let programmed = if listener.accepted.status {
                Verdict::yes("Programmed", "the listener is served")
            } else {
                Verdict::no("Invalid", listener.accepted.message.clone())
            };
            ListenerStatus {
                name: listener.name.clone(),
                supported_kinds: listener.supported_kinds.clone(),
                attached_routes: listener.attached_routes,
                conditions: merge(
                    before,
                    &[
                        ("Accepted", &listener.accepted),
                        ("Programmed", &programmed),
                        ("ResolvedRefs", &listener.resolved_refs),
                    ],
                    verdict.generation,
                    now_ms,
                ),
            }
        })
        .collect();
    let next = GatewayStatus {
        conditions: merge(
            &previous.conditions,
            &[
                ("Accepted", &verdict.accepted),
                ("Programmed", &verdict.programmed),
            ],
            verdict.generation,
            now_ms,
        ),
        listeners,
    };
    (current != Some(&next)).then_some(next)
}

/// The HTTPRoute status for `verdicts` (ours, one per parent) over
/// `current`: the entries of other controllers stay as read, ours are
/// replaced (and dropped for parents no longer named). `None` when nothing
/// changes.
pub fn route_status(
    current: Option<&HttpRouteStatus>,
    verdicts: &[ParentVerdict],
    now_ms: u64,
) -> Option<HttpRouteStatus> {
    let empty = HttpRouteStatus::default();
    let previous = current.unwrap_or(&empty);
    let mut parents: Vec<RouteParentStatus> = previous
        .parents
        .iter()
        .filter(|p| p.controller_name != CONTROLLER_NAME)
        .cloned()
        .collect();
    for verdict in verdicts {
        let before = previous
            .parents
            .iter()
            .find(|p| p.controller_name == CONTROLLER_NAME && p.parent_ref == verdict.parent_ref);
        let mut set = vec![
            ("Accepted", &verdict.accepted),
            ("ResolvedRefs", &verdict.resolved_refs),
        ];
        if let Some(partial) = &verdict.partially_invalid {
            set.push((PARTIALLY_INVALID, partial));
        }
        let mut conditions = merge(
            before.map(|p| p.conditions.as_slice()).unwrap_or_default(),
            &set,
            verdict.generation,
            now_ms,
        );
        if verdict.partially_invalid.is_none() {
            // The Gateway API allows `PartiallyInvalid` only while `True`.
            conditions.retain(|c| c.type_ != PARTIALLY_INVALID);
        }
        parents.push(RouteParentStatus {
            parent_ref: verdict.parent_ref.clone(),
            controller_name: CONTROLLER_NAME.to_owned(),
            conditions,
            other: before.map(|p| p.other.clone()).unwrap_or_default(),
        });
    }
    let next = HttpRouteStatus { parents };
    if current.is_none() && next.parents.is_empty() {
        return None;
    }
    (current != Some(&next)).then_some(next)
}

/// `previous` with each `(type, verdict)` set: a condition whose status
/// stays keeps its `lastTransitionTime`; other conditions stay as they are.
fn merge(
    previous: &[Condition],
    set: &[(&str, &Verdict)],
    generation: Option<i64>,
    now_ms: u64,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| !set.iter().any(|(type_, _)| c.type_ == *type_))
        .cloned()
        .collect();
    for (type_, verdict) in set {
        let status = if verdict.status { "True" } else { "False" };
        let before = previous.iter().find(|c| c.type_ == *type_);
        let last_transition_time = match before {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => format_time(now_ms),
        };
        conditions.push(Condition {
            type_: (*type_).to_owned(),
            status: status.to_owned(),
            reason: verdict.reason.to_owned(),
            message: verdict.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    // Keep the order read, so that an unchanged status compares equal.
    conditions.sort_by_key(|c| {
        previous
            .iter()
            .position(|p| p.type_ == c.type_)
            .unwrap_or(usize::MAX)
    });
    conditions
}

// === impl GatewayStatusWriter ===

impl GatewayStatusWriter {
    /// A writer through `client`.
    pub fn new(client: kube::Client) -> GatewayStatusWriter {
        GatewayStatusWriter {
            client,
            written: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(None),
        }
    }

    /// Writes every status `compiled` changes, when `leading`; remembers a
    /// failed round for [`GatewayStatusWriter::retry`].
    pub async fn write(
        &self,
        leading: bool,
        objects: &ClusterObjects,
        compiled: &CompiledGateways,
    ) {
        if !leading {
            *self.lock_failed() = None;
            return;
        }
        let now = now_ms();
        let mut writes: Vec<PendingWrite<'_>> = Vec::new();
        for (name, verdict) in &compiled.classes {
            let key = ObjectKey::new("", name);
            let Some(class) = objects.gateway_classes.get(&key) else {
                continue;
            };
            if let Some(status) = class_status(class.status.as_ref(), verdict, now) {
                let api: Api<GatewayClass> = Api::all(self.client.clone());
                writes.push(Box::pin(self.patch(
                    api,
                    "GatewayClass",
                    key,
                    &class.metadata,
                    status,
                )));
            }
        }
        for (key, verdict) in &compiled.gateways {
            let Some(gateway) = objects.gateways.get(key) else {
                continue;
            };
            if let Some(status) = gateway_status(gateway.status.as_ref(), verdict, now) {
                let api: Api<Gateway> = Api::namespaced(self.client.clone(), &key.namespace);
                writes.push(Box::pin(self.patch(
                    api,
                    "Gateway",
                    key.clone(),
                    &gateway.metadata,
                    status,
                )));
            }
        }
        for (key, route) in &objects.http_routes {
            let verdicts = compiled
                .http_routes
                .get(key)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let Some(status) = route_status(route.status.as_ref(), verdicts, now) {
                let api: Api<HttpRoute> = Api::namespaced(self.client.clone(), &key.namespace);
                writes.push(Box::pin(self.patch(
                    api,
                    "HTTPRoute",
                    key.clone(),
                    &route.metadata,
                    status,
                )));
            }
        }
        // Each object is written at most once per round, so the writes in
        // flight together never race each other.
        let failures: usize = futures_util::stream::iter(writes)
            .buffer_unordered(CONCURRENT_WRITES)
            .fold(0, |sum, failed| async move { sum + failed })
            .await;
        // Objects gone from the cluster: what was written of them goes too.
        self.lock_written().retain(|(kind, key), _| match *kind {
            "GatewayClass" => objects.gateway_classes.contains_key(key),
            "Gateway" => objects.gateways.contains_key(key),
            _ => objects.http_routes.contains_key(key),
        });
        *self.lock_failed() = (failures > 0).then(|| (objects.clone(), compiled.clone()));
    }

    /// Writes the last round again if one of its writes failed.
    pub async fn retry(&self, leading: bool) {
        let pending = self.lock_failed().take();
        if let Some((objects, compiled)) = pending {
            self.write(leading, &objects, &compiled).await;
        }
    }

    /// One merge PATCH of `/status` with the `resourceVersion` read; 1 when
    /// it failed, else 0.
    async fn patch<K, S>(
        &self,
        api: Api<K>,
        kind: &'static str,
        key: ObjectKey,
        metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        status: S,
    ) -> usize
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
        S: Serialize,
    {
        let version = metadata.resource_version.clone().unwrap_or_default();
        let body = json!({"metadata": {"resourceVersion": version}, "status": status});
        let slot = (kind, key.clone());
        let compared = without_times(&body["status"]);
        let already = self
            .lock_written()
            .get(&slot)
            .is_some_and(|(v, s)| *v == version && *s == compared);
        if already {
            return 0;
        }
        let written = tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body)),
        )
        .await;
        let failure = match written {
            Ok(Ok(_)) => {
                self.lock_written().insert(slot, (version, compared));
                return 0;
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                format!("the status changed since it was read (resourceVersion {version})")
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!(
                "no answer from the API server within {} s",
                WRITE_TIMEOUT.as_secs()
            ),
        };
        tracing::warn!(kind, object = %key, error = %failure, "cannot write the Gateway API status; trying again at the next change");
        1
    }

    fn lock_written(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_failed(&self) -> std::sync::MutexGuard<'_, Option<(ClusterObjects, CompiledGateways)>> {
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for GatewayStatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayStatusWriter")
            .finish_non_exhaustive()
    }
}

/// `status` without its `lastTransitionTime`s: what a rewrite over the
/// same version would change.
fn without_times(status: &serde_json::Value) -> serde_json::Value {
    match status {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, _)| *k != "lastTransitionTime")
            .map(|(k, v)| (k.clone(), without_times(v)))
            .collect(),
        serde_json::Value::Array(items) => items.iter().map(without_times).collect(),
        other => other.clone(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
