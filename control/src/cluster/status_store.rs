//! The rollout state of CanaryRoutes kept in their `status` (SPEC section
//! 10): [`StatusStore`] is the [`StateStore`] of cluster routes
//! (`NAMESPACE/NAME`), so the state machine keeps one code path for file
//! and cluster routes ([`crate::persist::RoutedStore`] picks the store).
//!
//! The store holds, per route, the last CanaryRoute seen (its status,
//! `resourceVersion`, generation and steps), fed by the runtime from its
//! watch through [`StatusStore::observe`]. A save is one merge PATCH of
//! `/status` that carries that `resourceVersion` as a precondition: when
//! the status changed meanwhile (another leader wrote, a command arrived)
//! the API server answers 409, nothing is kept, and the caller decides again
//! from the newer status the watch delivers. So a deposed leader never
//! overwrites a newer state.
//!
//! Each save also sends the transition's Event: before the status write for
//! an abort, after it for the others; a failed or slow Event is logged and
//! never stops the status write. An abort whose status write failed (a 409
//! after another write landed first) is decided again from the newer
//! status; its Event went out already and is not sent a second time.
//!
//! [`StateStore`] is synchronous and called off the runtime: the
//! request runs as a task on the runtime whose handle the store keeps, and
//! the calling thread waits for its answer (2 s at most). Waiting on a
//! channel rather than `Handle::block_on` keeps a call from a runtime thread
//! (the controller's start-up restore) an error instead of a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

use super::events::{self, EventReason, RouteRef};
use super::lease::Leadership;
use super::resource::{CanaryRoute, CanaryRouteStatus, LastValidSpec, UnreadableField};
use super::status_codec::{self, Coverage, StatusContext, StatusRefused};
use crate::controller::cluster_routes::Observed;
use crate::persist::{StateStore, Stored};
use crate::rollout::{Command, Phase, RolloutState};

/// How long a status write may take before it counts as failed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an abort's Event may delay the status write that follows it.
pub const EVENT_TIMEOUT: Duration = Duration::from_millis(500);

/// The rollout states of CanaryRoutes, in their `status`.
pub struct StatusStore {
    client: kube::Client,
    runtime: Handle,
    identity: String,
    routes: Mutex<BTreeMap<String, Seen>>,
    /// When a status written by a leader was last seen come in.
    leader_heard_at: Mutex<Option<Instant>>,
    /// The election's word, once the cluster runs: a rollout state is
    /// written only while this replica leads at that instant.
    leadership: OnceLock<watch::Receiver<Leadership>>,
    /// The API server dropped the `lastValidSpec` a write sent: its CRD is
    /// older than this weir (`weir crd` not applied since the upgrade).
    /// The spec is then taken as kept, or every refresh would write it
    /// again, for ever.
    spec_dropped: std::sync::atomic::AtomicBool,
}

/// A CanaryRoute as last seen (from the watch or the answer to a write).
#[derive(Debug, Clone, Default)]
struct Seen {
    status: CanaryRouteStatus,
    resource_version: Option<String>,
    generation: Option<i64>,
    /// The generation of the spec served (the last that validated), as the
    /// last sync compiled it; `None` before: `generation` counts.
    served_generation: Option<i64>,
    /// Per step of the spec served, a timed pause's length: the steps the
    /// status counts while an edit that does not validate is not served.
    served_pause_lengths_ms: Option<Vec<Option<u64>>>,
    /// The spec served, as the last sync compiled it: written as
    /// `lastValidSpec`.
    served_spec: Option<LastValidSpec>,
    /// `(field, problem)` of each status field of a wrong type, left out of
    /// `status`: the status is refused, and the leader's next write
    /// removes them.
    unreadable: Vec<UnreadableField>,
    uid: Option<String>,
    /// One entry per step: a timed pause's length in milliseconds.
    pause_lengths_ms: Vec<Option<u64>>,
    coverage: Option<Coverage>,
    /// The abort (`rollout_seq`, `rollout_started_ms`) whose Event went
    /// out before a status write that has not landed yet.
    abort_announced: Option<(u64, u64)>,
}

// === impl Seen ===

impl Seen {
    /// The rollout state the status holds: refused for a field of a wrong
    /// type (the first, named) as for a value out of its range.
    fn decoded(&self, route: &str) -> Result<Option<RolloutState>, StatusRefused> {
        if let Some(unreadable) = self.unreadable.first() {
            return Err(StatusRefused {
                field: unreadable.field.clone(),
                problem: format!("{}; the field is left out", unreadable.problem),
            });
        }
        status_codec::decode(route, &self.status, self.pause_lengths().len())
    }

    /// Per step of the spec served, a timed pause's length: the served
    /// spec's while the object holds another generation (an edit that does
    /// not validate), else the object's own.
    fn pause_lengths(&self) -> &[Option<u64>] {
        match &self.served_pause_lengths_ms {
            Some(served) if self.served_generation != self.generation => served,
            _ => &self.pause_lengths_ms,
        }
    }
}

/// Everything one status write needs, taken from the store under its lock.
struct Write {
    namespace: String,
    name: String,
    resource_version: String,
    body: Value,
    event: Option<(EventReason, k8s_openapi::api::events::v1::Event)>,
    /// The abort (`rollout_seq`, `rollout_started_ms`) whose Event goes out
    /// before the write.
    abort: Option<(u64, u64)>,
    /// The status written holds `lastValidSpec`.
    sends_spec: bool,
}

// === impl StatusStore ===

impl StatusStore {
    /// A store writing through `client`, running its requests on `runtime`,
    /// signing the status and Events as `identity` (`POD_NAME`).
    pub fn new(client: kube::Client, runtime: Handle, identity: &str) -> StatusStore {
        StatusStore {
            client,
            runtime,
            identity: identity.to_owned(),
            routes: Mutex::new(BTreeMap::new()),
            leader_heard_at: Mutex::new(None),
            leadership: OnceLock::new(),
            spec_dropped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether `next` keeps the same generation as `lastValidSpec` as
    /// `previous`: its text is compared by generation only, so that an API
    /// server writing the spec back in another form (number formats,
    /// defaults) never makes a write of its own at every round; and always,
    /// once the API server is known to drop the field.
    fn spec_kept(&self, next: &CanaryRouteStatus, previous: &CanaryRouteStatus) -> bool {
        let generation =
            |status: &CanaryRouteStatus| status.last_valid_spec.as_ref().map(|s| s.generation);
        self.spec_dropped.load(std::sync::atomic::Ordering::Relaxed)
            || generation(next) == generation(previous)
    }

    /// Notes a landed write whose answer lacks the `lastValidSpec` it sent
    /// (`sent`): said once, with what to do.
    fn check_spec_kept(&self, sent: bool, answered: &CanaryRoute) {
        let kept = answered
            .status
            .as_ref()
            .is_some_and(|s| s.last_valid_spec.is_some());
        if sent
            && !kept
            && !self
                .spec_dropped
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "the API server drops status.lastValidSpec: the CanaryRoute CRD is older than \
                 this weir; apply `weir crd` so that replicas started while an edit does not \
                 validate serve the last spec that did"
            );
        }
    }

    /// Writes rollout states from now on only while `leadership` says this
    /// replica leads (see [`Leadership::leads_now`]), checked as each
    /// write is sent: a replica deposed while it decided (stopped past its
    /// renew deadline, then woken) would otherwise write what it decided
    /// as leader over the next leader's status, with the `resourceVersion`
    /// of that newer status once its first try failed. A second call is
    /// ignored.
    pub fn follow_leadership(&self, leadership: watch::Receiver<Leadership>) {
        let _ = self.leadership.set(leadership);
    }

    /// `Ok` unless the election is followed and says this replica does not
    /// lead now.
    fn may_write_state(&self, route: &str) -> io::Result<()> {
        if deposed(self.leadership.get()) {
            return Err(not_leading(route));
        }
        Ok(())
    }

    /// Takes the CanaryRoute `route` (`NAMESPACE/NAME`) as the watch
    /// delivered it. An object older than the one already seen (a lagging
    /// watch event after this store's own write) is ignored; an object of
    /// another `uid` (deleted and made again under the same name) replaces
    /// what was seen, whatever its version. Returns whether it was such an
    /// object: the rollout state kept for the name is the old object's.
    pub fn observe(&self, route: &str, object: &CanaryRoute) -> bool {
        let incoming = object.metadata.resource_version.clone();
        let Ok(mut routes) = self.routes.lock() else {
            return false;
        };
        let seen = routes.entry(route.to_owned()).or_default();
        let made_again =
            seen.uid.is_some() && object.metadata.uid.is_some() && seen.uid != object.metadata.uid;
        if made_again {
            *seen = Seen::default();
        } else if is_older(incoming.as_deref(), seen.resource_version.as_deref()) {
            return false;
        }
        let read = object.status.clone().unwrap_or_default();
        let status = read.status;
        if is_leader_write(
            &seen.status,
            seen.resource_version.as_deref(),
            &status,
            incoming.as_deref(),
        ) && let Ok(mut heard) = self.leader_heard_at.lock()
        {
            *heard = Some(Instant::now());
        }
        // Another leader wrote since: what this replica announced is its
        // own past, and an abort it decides next is news.
        if status
            .leader
            .as_deref()
            .is_some_and(|leader| leader != self.identity)
            && is_leader_write(
                &seen.status,
                seen.resource_version.as_deref(),
                &status,
                incoming.as_deref(),
            )
        {
            seen.abort_announced = None;
        }
        seen.status = status;
        seen.unreadable = read.unreadable;
        seen.resource_version = incoming;
        seen.generation = object.metadata.generation;
        seen.uid = object.metadata.uid.clone();
        seen.pause_lengths_ms = pause_lengths_ms(object);
        made_again
    }

    /// When this store last saw a leader's status write come in (a new
    /// version of a status already seen, changed beyond the command inputs
    /// and naming a leader), by this replica's clock; `None` before the
    /// first. The statuses found at the first read are not counted: when
    /// they were written is unknown.
    pub fn leader_heard_at(&self) -> Option<Instant> {
        *self.leader_heard_at.lock().ok()?
    }

    /// Records that `route` is served from `spec` (the last that
    /// validated), whose generation its status reports as
    /// `observedGeneration` and which it keeps as `lastValidSpec`, with its
    /// steps' timed pauses (`pause_lengths_ms`, one entry per step): the
    /// status counts the steps of the spec served.
    pub fn set_served(&self, route: &str, spec: LastValidSpec, pause_lengths_ms: Vec<Option<u64>>) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(seen) = routes.get_mut(route)
        {
            seen.served_generation = spec.generation;
            seen.served_spec = Some(spec);
            seen.served_pause_lengths_ms = Some(pause_lengths_ms);
        }
    }

    /// Forgets the CanaryRoutes for which `present` is false (deleted).
    pub fn forget_others(&self, present: impl Fn(&str) -> bool) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.retain(|route, _| present(route));
        }
    }

    /// The replicas counted in `route`'s last judgement, written with its
    /// next status.
    pub fn set_coverage(&self, route: &str, coverage: Coverage) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(seen) = routes.get_mut(route)
        {
            seen.coverage = Some(coverage);
        }
    }

    /// The `resourceVersion` the next write of `route` will carry.
    pub fn resource_version(&self, route: &str) -> Option<String> {
        self.routes
            .lock()
            .ok()?
            .get(route)
            .and_then(|s| s.resource_version.clone())
    }

    /// The status of `route` as last seen.
    pub fn status(&self, route: &str) -> Option<CanaryRouteStatus> {
        Some(self.routes.lock().ok()?.get(route)?.status.clone())
    }

    /// The status of `route` as last seen, with the `resourceVersion` of
    /// that same object: both are taken under one hold of the lock, so a
    /// write recorded meanwhile never pairs one object's status with
    /// another's version (a write carrying the older status under the newer
    /// version would pass its precondition and undo the newer one).
    pub fn status_and_version(&self, route: &str) -> Option<(CanaryRouteStatus, Option<String>)> {
        let routes = self.routes.lock().ok()?;
        let seen = routes.get(route)?;
        Some((seen.status.clone(), seen.resource_version.clone()))
    }

    /// The rollout state and the command inputs of `route`'s status as
    /// last seen, both of the same object (taken under one hold of the
    /// lock).
    pub fn observed(&self, route: &str) -> Observed {
        let Ok(routes) = self.routes.lock() else {
            return Observed {
                stored: Stored::Unreadable("the status store's lock is poisoned".to_owned()),
                inputs: Vec::new(),
                marked_not_served: false,
                aborted_here: false,
            };
        };
        let seen = routes.get(route);
        Observed {
            stored: stored(route, seen),
            inputs: seen
                .map(|s| status_codec::inputs(&s.status))
                .unwrap_or_default(),
            marked_not_served: seen.is_some_and(|s| status_codec::marked_not_served(&s.status)),
            aborted_here: false,
        }
    }

    /// Writes the input of `command` into `route`'s status, from any
    /// replica: one merge PATCH of `/status` without a precondition (the
    /// leader acts on it at its next read).
    ///
    /// # Errors
    /// A route name without `/`, the API server's refusal (404 for a
    /// CanaryRoute that does not exist), a transport error, or no answer
    /// within [`WRITE_TIMEOUT`].
    pub async fn write_input(&self, route: &str, command: Command) -> io::Result<()> {
        let (namespace, name) = split_route(route)?;
        let api: Api<CanaryRoute> = Api::namespaced(self.client.clone(), namespace);
        let body = json!({ "status": status_codec::input_of(command) });
        let written = tokio::time::timeout(
            WRITE_TIMEOUT,
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body)),
        )
        .await;
        match written {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("CanaryRoute {route} does not exist"),
            )),
            Ok(Err(error)) => Err(io::Error::other(format!(
                "cannot write {command} into the status of CanaryRoute {route}: {error}"
            ))),
            Err(_) => Err(no_answer(route)),
        }
    }

    /// Whether the status seen for `state`'s route tells another judgement
    /// than `state` holds (verdict, reason or coverage), names another
    /// leader, or reports another generation than the spec served (an edit
    /// that made no transition): the leader then writes it again, so
    /// `kubectl get` shows the analysis in force, who leads and which spec
    /// is reconciled (`observedGeneration`). An edit that does not validate
    /// leaves the last spec that did served, and `observedGeneration` at
    /// its generation.
    pub fn judgement_is_stale(&self, state: &RolloutState) -> bool {
        let Ok(routes) = self.routes.lock() else {
            return false;
        };
        let Some(seen) = routes.get(state.route.as_str()) else {
            return false;
        };
        let encoded = status_codec::encode(state, &seen.status, &self.context(seen, None, 0));
        let summary = |status: &CanaryRouteStatus| {
            status
                .analysis
                .as_ref()
                .map(|a| (a.verdict.clone(), a.reason.clone(), a.coverage.clone()))
        };
        // A new leader names itself at once, even when nothing else changed.
        summary(&encoded) != summary(&seen.status)
            || seen.status.leader.as_deref() != Some(self.identity.as_str())
            || seen
                .served_generation
                .or(seen.generation)
                .is_some_and(|served| seen.status.observed_generation != Some(served))
            || !self.spec_kept(&encoded, &seen.status)
    }

    /// Whether `state`, the status of a CanaryRoute without a strategy (no
    /// rollout: Healthy at its fixed weight), is to be written: the route
    /// has been read, its status holds no other phase than Healthy (the
    /// state of an earlier rollout is left as it is), and it says anything
    /// else than `state` would (a first status, another weight, generation
    /// or leader).
    pub fn fixed_split_is_stale(&self, state: &RolloutState) -> bool {
        let Ok(routes) = self.routes.lock() else {
            return false;
        };
        let Some(seen) = routes.get(state.route.as_str()) else {
            return false;
        };
        let healthy = Phase::Healthy.as_str();
        if seen
            .status
            .phase
            .as_deref()
            .is_some_and(|phase| phase != healthy)
        {
            return false;
        }
        let mut encoded = status_codec::encode(state, &seen.status, &self.context(seen, None, 0));
        if self.spec_kept(&encoded, &seen.status) {
            encoded
                .last_valid_spec
                .clone_from(&seen.status.last_valid_spec);
        }
        encoded != seen.status
    }

    /// What encoding a state for the route `seen` needs besides the state.
    fn context<'a>(
        &'a self,
        seen: &'a Seen,
        refused: Option<&'a StatusRefused>,
        now_ms: u64,
    ) -> StatusContext<'a> {
        StatusContext {
            leader: &self.identity,
            observed_generation: seen.served_generation.or(seen.generation),
            pause_lengths_ms: seen.pause_lengths(),
            coverage: seen.coverage,
            last_valid_spec: seen.served_spec.as_ref(),
            refused,
            now_ms,
        }
    }

    /// Takes what one write needs under the lock, which is never held
    /// across a request.
    fn prepare(&self, state: &RolloutState, now_ms: u64) -> io::Result<Write> {
        let route = &state.route;
        let (namespace, name) = split_route(route)?;
        let mut routes = self
            .routes
            .lock()
            .map_err(|_| io::Error::other("the status store's lock is poisoned"))?;
        let seen = routes.get_mut(route.as_str()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("CanaryRoute {route} has not been read yet; its status cannot be written"),
            )
        })?;
        let resource_version = seen.resource_version.clone().ok_or_else(|| {
            io::Error::other(format!(
                "CanaryRoute {route} was read without a resourceVersion; its status cannot be \
                 written safely"
            ))
        })?;
        let decoded = seen.decoded(route);
        let status = status_codec::encode(
            state,
            &seen.status,
            &self.context(seen, decoded.as_ref().err(), now_ms),
        );
        // Over a refused status the change is unknown: no Event is made up.
        let this_abort = (state.rollout_seq, state.rollout_started_ms);
        let event = decoded
            .ok()
            .and_then(|previous| events::transition_between(previous.as_ref(), state))
            .and_then(|kind| EventReason::from_transition(kind, state.phase))
            .filter(|&reason| {
                reason != EventReason::Aborted || seen.abort_announced != Some(this_abort)
            })
            .map(|reason| {
                let regarding = RouteRef {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    uid: seen.uid.clone(),
                    resource_version: Some(resource_version.clone()),
                };
                let event =
                    events::event(reason, &state.message, &regarding, &self.identity, now_ms);
                (reason, event)
            });
        let abort = matches!(event, Some((EventReason::Aborted, _))).then_some(this_abort);
        Ok(Write {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            body: status_patch(&seen.status, &seen.unreadable, &status, &resource_version)?,
            resource_version,
            event,
            abort,
            sends_spec: status.last_valid_spec.is_some(),
        })
    }

    /// Notes what became of a write of `route`: when it landed, an abort
    /// announced before it is in the status now and a later one is news
    /// again; when it did not, `announced` (the abort whose Event went out
    /// before it) is not to be announced a second time.
    fn after_write(&self, route: &str, landed: bool, announced: Option<(u64, u64)>) {
        if let Ok(mut routes) = self.routes.lock()
            && let Some(seen) = routes.get_mut(route)
        {
            if landed {
                seen.abort_announced = None;
            } else if announced.is_some() {
                seen.abort_announced = announced;
            }
        }
    }

    /// Keeps the CanaryRoute the API server answered a write with.
    fn record(&self, route: &str, object: &CanaryRoute) {
        self.observe(route, object);
    }
}

impl StateStore for StatusStore {
    fn load(&self, route: &str) -> Stored {
        let Ok(routes) = self.routes.lock() else {
            return Stored::Unreadable("the status store's lock is poisoned".to_owned());
        };
        stored(route, routes.get(route))
    }

    fn save(&self, state: &RolloutState) -> io::Result<()> {
        let route = state.route.clone();
        self.may_write_state(&route)?;
        let write = self.prepare(state, now_ms())?;
        let resource_version = write.resource_version.clone();
        let sends_spec = write.sends_spec;
        let client = self.client.clone();
        let leadership = self.leadership.get().cloned();
        let (answer_tx, answer) = std::sync::mpsc::channel();
        let task_route = route.clone();
        let task = self.runtime.spawn(async move {
            let Write {
                namespace,
                name,
                resource_version: _,
                body,
                event,
                abort,
                sends_spec: _,
            } = write;
            let (before, after) = match event {
                Some((EventReason::Aborted, event)) => (Some(event), None),
                other => (None, other.map(|(_, event)| event)),
            };
            // A replica that no longer leads announces nothing either.
            if deposed(leadership.as_ref()) {
                let _ = answer_tx.send((Sent::NotLeading, None));
                return;
            }
            let announced = match before {
                Some(event) => send_event(client.clone(), event, &task_route)
                    .await
                    .then_some(abort)
                    .flatten(),
                None => None,
            };
            // Checked again as the write goes: an abort's Event may have
            // taken half a second.
            if deposed(leadership.as_ref()) {
                let _ = answer_tx.send((Sent::NotLeading, announced));
                return;
            }
            let api: Api<CanaryRoute> = Api::namespaced(client.clone(), &namespace);
            let written = match tokio::time::timeout(
                WRITE_TIMEOUT,
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)),
            )
            .await
            {
                Ok(answer) => Sent::Answered(answer.map(Box::new)),
                Err(_) => Sent::NoAnswer,
            };
            if let (Sent::Answered(Ok(_)), Some(event)) = (&written, after) {
                let route = task_route.clone();
                tokio::spawn(async move { send_event(client, event, &route).await });
            }
            let _ = answer_tx.send((written, announced));
        });
        let waited = answer.recv_timeout(EVENT_TIMEOUT + WRITE_TIMEOUT + Duration::from_secs(1));
        if let Ok((written, announced)) = &waited {
            let landed = matches!(written, Sent::Answered(Ok(_)));
            self.after_write(&route, landed, *announced);
        }
        match waited.map(|(written, _)| written) {
            Ok(Sent::Answered(Ok(object))) => {
                self.check_spec_kept(sends_spec, &object);
                self.record(&route, &object);
                Ok(())
            }
            Ok(Sent::NotLeading) => Err(not_leading(&route)),
            Ok(Sent::Answered(Err(kube::Error::Api(status)))) if status.code == 409 => {
                Err(io::Error::other(format!(
                    "the status of CanaryRoute {route} changed since it was read \
                     (resourceVersion {resource_version}); nothing was written, the next \
                     decision starts from the newer status"
                )))
            }
            Ok(Sent::Answered(Err(error))) => Err(io::Error::other(format!(
                "cannot write the status of CanaryRoute {route}: {error}"
            ))),
            Ok(Sent::NoAnswer) => Err(no_answer(&route)),
            Err(_) => {
                task.abort();
                Err(no_answer(&route))
            }
        }
    }

    fn set_aside(&self, _route: &str, _now_ms: u64) -> Option<String> {
        // A refused status stays in the resource, where an operator reads
        // it, until the leader's next write replaces it: nothing to move.
        None
    }

    fn location(&self) -> String {
        "the status of its CanaryRoute".to_owned()
    }
}

impl fmt::Debug for StatusStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusStore")
            .field("identity", &self.identity)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// The rollout state `seen` (the route `route` as last seen) holds.
fn stored(route: &str, seen: Option<&Seen>) -> Stored {
    let Some(seen) = seen else {
        return Stored::Missing;
    };
    match seen.decoded(route) {
        Ok(Some(state)) => Stored::Found(Box::new(state)),
        Ok(None) => Stored::Missing,
        Err(refused) => Stored::Unreadable(format!(
            "the status of CanaryRoute {route} is refused: {refused}"
        )),
    }
}

/// What became of a rollout state's write.
enum Sent {
    /// The API server's answer.
    Answered(Result<Box<CanaryRoute>, kube::Error>),
    /// No answer within [`WRITE_TIMEOUT`].
    NoAnswer,
    /// Not sent: this replica no longer leads.
    NotLeading,
}

/// Whether the election, when followed, says this replica does not lead
/// now (see [`Leadership::leads_now`]).
fn deposed(leadership: Option<&watch::Receiver<Leadership>>) -> bool {
    leadership.is_some_and(|l| !l.borrow().leads_now())
}

/// The refusal of a rollout state write by a replica that does not lead.
fn not_leading(route: &str) -> io::Error {
    io::Error::other(format!(
        "this replica no longer leads; the status of CanaryRoute {route} is the leader's to write"
    ))
}

/// Sends an Event within [`EVENT_TIMEOUT`]; a failure is logged, nothing
/// more. Whether it was sent.
async fn send_event(
    client: kube::Client,
    event: k8s_openapi::api::events::v1::Event,
    route: &str,
) -> bool {
    let reason = event.reason.clone().unwrap_or_default();
    match tokio::time::timeout(EVENT_TIMEOUT, events::send(client, &event)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(route, reason, %error, "cannot send the Event");
            false
        }
        Err(_) => {
            tracing::warn!(route, reason, timeout = ?EVENT_TIMEOUT, "no answer to the Event in time");
            false
        }
    }
}

/// The merge patch writing `next` over `previous` with the precondition
/// `resourceVersion`: fields `previous` had and `next` has not are `null`,
/// since a merge patch keeps what it does not mention, and so are the
/// fields of a wrong type left out of `previous` (`unreadable`).
fn status_patch(
    previous: &CanaryRouteStatus,
    unreadable: &[UnreadableField],
    next: &CanaryRouteStatus,
    resource_version: &str,
) -> io::Result<Value> {
    let previous = serde_json::to_value(previous).map_err(io::Error::other)?;
    let mut status = serde_json::to_value(next).map_err(io::Error::other)?;
    null_removed(&previous, &mut status);
    if let Value::Object(fields) = &mut status {
        for unreadable in unreadable.iter().filter(|u| !u.field.is_empty()) {
            // Replaced by what the write holds, with the keys written
            // inside it that the write does not name removed; removed
            // whole when the write does not hold it.
            match fields.get_mut(&unreadable.field) {
                Some(next) => null_removed(&unreadable.written, next),
                None => {
                    fields.insert(unreadable.field.clone(), Value::Null);
                }
            }
        }
    }
    Ok(json!({
        "metadata": { "resourceVersion": resource_version },
        "status": status,
    }))
}

/// Sets to `null` every key of `previous` that `next` lacks, in nested
/// objects too (lists are replaced whole by a merge patch).
fn null_removed(previous: &Value, next: &mut Value) {
    if let (Value::Object(previous), Value::Object(next)) = (previous, next) {
        for (key, old) in previous {
            match next.get_mut(key) {
                Some(new) => null_removed(old, new),
                None => {
                    next.insert(key.clone(), Value::Null);
                }
            }
        }
    }
}

/// `NAMESPACE/NAME` → (namespace, name).
fn split_route(route: &str) -> io::Result<(&str, &str)> {
    route
        .split_once('/')
        .filter(|(namespace, name)| !namespace.is_empty() && !name.is_empty())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{route:?} is not a CanaryRoute name (NAMESPACE/NAME)"),
            )
        })
}

/// Whether `next` (at `next_version`) is a leader's write over `previous`
/// (at `previous_version`): a newer version of a status already seen, that
/// names a leader and changed more than the command inputs, which any
/// replica writes.
fn is_leader_write(
    previous: &CanaryRouteStatus,
    previous_version: Option<&str>,
    next: &CanaryRouteStatus,
    next_version: Option<&str>,
) -> bool {
    // The command inputs are anyone's; the conditions are written by any
    // replica too (a spec that does not validate), the status still naming
    // the last leader.
    let without_inputs = |status: &CanaryRouteStatus| CanaryRouteStatus {
        abort: None,
        promote_full: None,
        paused: None,
        promote: None,
        conditions: Vec::new(),
        ..status.clone()
    };
    previous_version.is_some()
        && next_version != previous_version
        && next.leader.is_some()
        && without_inputs(previous) != without_inputs(next)
}

/// True when both versions are numbers and `incoming` is below `seen`
/// (versions are opaque to clients, but every API server counts upward).
fn is_older(incoming: Option<&str>, seen: Option<&str>) -> bool {
    match (
        incoming.and_then(|v| v.parse::<u64>().ok()),
        seen.and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(incoming), Some(seen)) => incoming < seen,
        _ => false,
    }
}

/// Per step of a blue-green strategy (as `weir_config::BlueGreen::steps`
/// runs it): the preview, the pre-promotion analysis, the wait for
/// promotion (timed with `autoPromotionSeconds`), the swap, the
/// post-promotion analysis.
fn blue_green_pause_lengths_ms(bg: &weir_config::schema::BlueGreenSpec) -> Vec<Option<u64>> {
    let mut steps = vec![None];
    if bg.pre_promotion_analysis.is_some() {
        steps.push(None);
    }
    let delay_s = bg.auto_promotion_seconds.unwrap_or(0);
    match bg.auto_promotion_enabled.unwrap_or(true) {
        false => steps.push(None),
        true if delay_s > 0 => steps.push(Some(delay_s.saturating_mul(1000))),
        true => {}
    }
    steps.push(None);
    if bg.post_promotion_analysis.is_some() {
        steps.push(None);
    }
    steps
}

/// Per step of the CanaryRoute's strategy: a timed pause's length.
fn pause_lengths_ms(object: &CanaryRoute) -> Vec<Option<u64>> {
    let Some(strategy) = object.spec.fields().ok().and_then(|fields| fields.strategy) else {
        return Vec::new();
    };
    if let Some(bg) = &strategy.blue_green {
        return blue_green_pause_lengths_ms(bg);
    }
    strategy
        .steps
        .iter()
        .map(|step| {
            let duration = step.pause.as_ref()?.duration.as_ref()?;
            let length = duration.to_duration().ok()?;
            u64::try_from(length.as_millis()).ok()
        })
        .collect()
}

fn no_answer(route: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no answer from the API server within {} s while writing the status of CanaryRoute \
             {route}; nothing is assumed written",
            WRITE_TIMEOUT.as_secs()
        ),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
