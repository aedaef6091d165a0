//! The Kubernetes side of a running weir (SPEC sections 10 and 11): watches
//! CanaryRoutes, AnalysisTemplates, Services and EndpointSlices (and, with
//! `kubernetes.gatewayApi`, GatewayClasses, Gateways and HTTPRoutes) with
//! kube-runtime reflectors,
//! compiles them into the routes the proxy serves, takes part in the
//! leader election, feeds the status the leader writes into the rollout
//! states, and keeps the guardrail.
//!
//! Nothing here waits on the proxy: a change is compiled, decided and
//! published as a new snapshot like a reload, through the process handle.
//!
//! Nor does serving wait on the status writes that are not rollout states:
//! the problem conditions of CanaryRoutes and the Gateway API statuses are
//! handed to one writer task, which writes them after the sync that found
//! them has let go of the transition lock (see [`write_statuses`]). A slow
//! or silent API server then delays neither the next sync nor an operator's
//! command by more than the one state write it may be in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use weir_config::{Kubernetes, KubernetesRole};

use super::conditions::ProblemReporter;
use super::discovery::{self, ClusterObjects, ObjectKey, RouteProblem};
use super::gateway_api::{Gateway, GatewayClass, HttpRoute};
use super::gateway_routes::{self, CompiledGateways};
use super::gateway_status::GatewayStatusWriter;
use super::lease::{Elector, Leadership, LeaseConfig};
use super::peers::PeerCounters;
use super::resource::{AnalysisTemplate, CanaryRoute, LastValidSpec};
use super::status_codec::Coverage;
use super::status_store::StatusStore;
use crate::controller::cluster_routes::is_cluster_route;
use crate::persist;
use crate::process::{Process, stopped};
use crate::rollout::{Command, RolloutState};

/// How long the leader may be silent before the guardrail may act.
pub const LEADER_SILENCE: Duration = Duration::from_secs(5);
/// The guardrail's error rate: a canary failing this much locally is
/// aborted by any replica while the leader is silent.
pub const GUARDRAIL_ERROR_RATE: f64 = 0.5;
/// The guardrail's fewest canary requests.
pub const GUARDRAIL_MIN_REQUESTS: u64 = 50;
/// How often the leader brings the judgement in the status up to date
/// (when its verdict, reason or coverage changed, or the spec served is of
/// another generation than the status reports).
pub const STATUS_REFRESH: Duration = Duration::from_secs(2);
/// Changes that arrive together are compiled once.
const COALESCE: Duration = Duration::from_millis(20);

/// How soon a sync whose decided status writes did not all land runs again:
/// a write that timed out or failed without a conflict brings no watch
/// event, and the decision (a command, a step) would otherwise wait for an
/// unrelated change.
const UNWRITTEN_RETRY: Duration = Duration::from_secs(1);

/// Who this replica is in the cluster, and what it follows.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `kubernetes` block of the config (or its defaults).
    pub kubernetes: Kubernetes,
    /// This replica's identity in the election (`POD_NAME`).
    pub identity: String,
    /// weir's own namespace (`POD_NAMESPACE`): the Lease and the peers
    /// Service are there.
    pub namespace: String,
}

/// What the admin API and the control loop use of the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This replica's settings.
    pub settings: Settings,
    /// The statuses of the CanaryRoutes, as last seen, and their writer.
    pub statuses: Arc<StatusStore>,
    /// Who leads.
    pub leadership: watch::Receiver<Leadership>,
    /// Every replica's counters (the leader judges their sum).
    pub peers: Option<PeerCounters>,
    /// True once the first full list of every watched kind is applied.
    pub ready: watch::Receiver<bool>,
    /// Writes the CanaryRoutes' problems as conditions (the leader only).
    problems: ProblemReporter,
    /// Rung when the file config changed: the cluster is compiled again
    /// (its templates and routes are part of the result).
    resync: Notify,
    /// Writes the status of the Gateway API objects (the leader only).
    gateway_statuses: GatewayStatusWriter,
    /// Per CanaryRoute, its last spec that validated, from the last sync:
    /// served while an edit does not validate.
    last_valid: std::sync::Mutex<discovery::LastValid>,
    /// The CanaryRoutes this replica's guardrail aborted whose `abort`
    /// input could not be written: kept aborted here (the status still says
    /// otherwise), and the write tried again, while no leader is heard.
    guardrail_aborted: std::sync::Mutex<BTreeSet<String>>,
}

/// What one sync leaves to the status writer: the problem conditions of
/// the CanaryRoutes and the Gateway API statuses, as of that sync.
#[derive(Debug)]
struct StatusRound {
    /// Whether this replica led (and may write) when the sync decided.
    leading: bool,
    /// The objects the sync compiled.
    objects: ClusterObjects,
    /// Per CanaryRoute name, its problems (conflicts included).
    problems: BTreeMap<String, Vec<RouteProblem>>,
    /// The CanaryRoutes served, by name.
    served: BTreeSet<String>,
    /// What the Gateway API objects compiled to, with `gatewayApi` on.
    gateways: Option<CompiledGateways>,
}

/// The latest round of each sync, for the status writer; `None` before the
/// first sync.
type Rounds = Option<Arc<StatusRound>>;

/// The reflector stores of the watched kinds.
struct Stores {
    canary_routes: Vec<Store<CanaryRoute>>,
    analysis_templates: Vec<Store<AnalysisTemplate>>,
    services: Vec<Store<Service>>,
    endpoint_slices: Vec<Store<EndpointSlice>>,
    /// While the Gateway API is served (`kubernetes.gatewayApi`, or the
    /// cluster serving it when the config does not say).
    gateway_api: Option<GatewayStores>,
}

// === impl Settings ===

impl Settings {
    /// The settings of `kubernetes` for this pod: identity from `POD_NAME`
    /// (else the host name), namespace from `POD_NAMESPACE` (else `default`).
    pub fn from_env(kubernetes: Kubernetes) -> Settings {
        let identity = super::counters::pod_or_host_name().unwrap_or_else(|| "weir".to_owned());
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        Settings {
            kubernetes,
            identity,
            namespace,
        }
    }

    /// Whether the Gateway API is served from the start: as the config
    /// says, or, when it says nothing, as [`gateway_api_served`] found.
    pub fn serves_gateway_api(&self) -> bool {
        self.kubernetes.gateway_api == Some(true)
    }

    /// Whether this replica may lead.
    pub fn is_candidate(&self) -> bool {
        self.kubernetes.role == KubernetesRole::Candidate
    }
}

// === impl Cluster ===

impl Cluster {
    /// The handle over its parts; problems are written through `client`.
    pub fn new(
        settings: Settings,
        client: Client,
        statuses: Arc<StatusStore>,
        leadership: watch::Receiver<Leadership>,
        peers: Option<PeerCounters>,
        ready: watch::Receiver<bool>,
    ) -> Cluster {
        let problems = ProblemReporter::new(client.clone(), &settings.identity);
        Cluster {
            settings,
            statuses,
            leadership,
            peers,
            ready,
            problems,
            resync: Notify::new(),
            gateway_statuses: GatewayStatusWriter::new(client),
            last_valid: std::sync::Mutex::default(),
            guardrail_aborted: std::sync::Mutex::default(),
        }
    }

    /// The CanaryRoutes the guardrail aborted and could not say so in
    /// their status.
    fn guardrail_aborted(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.guardrail_aborted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Compiles the cluster's objects again soon: the file config changed
    /// (its analysis templates and routes take part).
    pub fn resync(&self) {
        self.resync.notify_one();
    }

    /// Whether this replica leads now: never once the election has ended.
    pub fn is_leader(&self) -> bool {
        leads(&self.leadership)
    }

    /// Writes `command` as the status input of CanaryRoute `route`, for the
    /// leader to act on.
    ///
    /// # Errors
    /// What the API server answered, or that it did not.
    pub async fn command(&self, route: &str, command: Command) -> Result<(), std::io::Error> {
        self.statuses.write_input(route, command).await
    }
}

/// The API group of the Gateway API, at the version weir reads.
const GATEWAY_API_GROUP_VERSION: &str = "gateway.networking.k8s.io/v1";

/// Whether the cluster serves the Gateway API (`gateway.networking.k8s.io/v1`
/// with GatewayClasses, Gateways and HTTPRoutes), asked of the API
/// server's discovery at the start, for a `kubernetes` block that does not
/// say. Only a clear answer decides: the group served, or not (404, or a
/// kind missing). Anything else (no answer, an error) is asked again every
/// 2 s, with a warning the first time, as the watchers retry: the replica
/// is not ready meanwhile. When it is not served, [`start`] keeps asking in
/// the background, so that CRDs installed later are served without a
/// restart.
pub async fn gateway_api_served(client: &Client) -> bool {
    let mut warned = false;
    loop {
        let asked = ask_gateway_api(client).await;
        let error = match asked {
            Ok(Ok(list)) => {
                let served = serves_gateway_kinds(&list);
                tracing::info!(
                    served,
                    "the cluster serves {GATEWAY_API_GROUP_VERSION}; Gateway API {}",
                    if served {
                        "served"
                    } else {
                        "not served yet: a kind is missing (asked again every 10 s)"
                    }
                );
                return served;
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => {
                tracing::info!(
                    "the cluster does not serve {GATEWAY_API_GROUP_VERSION}: Gateway API not served \
                     yet (asked again every 10 s; kubernetes.gatewayApi decides without asking)"
                );
                return false;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer within 2 s".to_owned(),
        };
        if !warned {
            warned = true;
            tracing::warn!(%error, "cannot tell yet whether the cluster serves the Gateway API; asking again every 2 s before watching (kubernetes.gatewayApi decides without asking)");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The API server's discovery answer for `gateway.networking.k8s.io/v1`,
/// or `Err` when none came within 2 s.
async fn ask_gateway_api(
    client: &Client,
) -> Result<Result<APIResourceList, kube::Error>, tokio::time::error::Elapsed> {
    tokio::time::timeout(
        Duration::from_secs(2),
        client.list_api_group_resources(GATEWAY_API_GROUP_VERSION),
    )
    .await
}

/// Whether a discovery answer for `gateway.networking.k8s.io/v1` lists
/// every kind weir reads.
fn serves_gateway_kinds(list: &APIResourceList) -> bool {
    ["gatewayclasses", "gateways", "httproutes"]
        .iter()
        .all(|kind| list.resources.iter().any(|r| r.name == *kind))
}

/// How often a replica whose cluster did not serve the Gateway API at the
/// start asks again.
const GATEWAY_API_ASKED_AGAIN: Duration = Duration::from_secs(10);

/// The watched Gateway API kinds, one store per watched namespace (one for
/// the GatewayClasses, which have none).
struct GatewayStores {
    gateway_classes: Vec<Store<GatewayClass>>,
    gateways: Vec<Store<Gateway>>,
    http_routes: Vec<Store<HttpRoute>>,
}

impl GatewayStores {
    /// Starts watching the Gateway API kinds in `namespaces`.
    fn watch(
        client: &Client,
        namespaces: &[Option<String>],
        changed: &Arc<Notify>,
        stop: &watch::Receiver<bool>,
    ) -> GatewayStores {
        GatewayStores {
            gateway_classes: vec![reflect(Api::all(client.clone()), changed, stop.clone())],
            gateways: namespaces
                .iter()
                .map(|namespace| reflect(api(client, namespace.as_deref()), changed, stop.clone()))
                .collect(),
            http_routes: namespaces
                .iter()
                .map(|namespace| reflect(api(client, namespace.as_deref()), changed, stop.clone()))
                .collect(),
        }
    }

    /// Waits for the first full list of every kind.
    async fn ready(&self) {
        listed(&self.gateway_classes).await;
        listed(&self.gateways).await;
        listed(&self.http_routes).await;
    }
}

/// For a cluster that did not serve the Gateway API at the start: asks its
/// discovery again every [`GATEWAY_API_ASKED_AGAIN`] and, once the CRDs are
/// there, watches the kinds and hands their stores over when first listed.
async fn watch_gateway_api_once_served(
    client: Client,
    namespaces: Vec<Option<String>>,
    changed: Arc<Notify>,
    found: tokio::sync::oneshot::Sender<GatewayStores>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(GATEWAY_API_ASKED_AGAIN) => {}
        }
        let asked = ask_gateway_api(&client).await;
        match asked {
            Ok(Ok(list)) if serves_gateway_kinds(&list) => break,
            Ok(Ok(_) | Err(kube::Error::Api(_))) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot ask whether the cluster serves the Gateway API")
            }
            Err(_) => tracing::debug!(
                "no answer within 2 s to whether the cluster serves the Gateway API"
            ),
        }
    }
    tracing::info!(
        "the cluster now serves {GATEWAY_API_GROUP_VERSION}: watching GatewayClasses, Gateways and HTTPRoutes"
    );
    let stores = GatewayStores::watch(&client, &namespaces, &changed, &stop);
    tokio::select! {
        () = stopped(&mut stop) => return,
        () = stores.ready() => {}
    }
    let _ = found.send(stores);
}

/// Starts the watchers, the election, the counters of the peers and the
/// loops that keep the process in step with the cluster; returns the handle
/// at once (it is ready when [`Cluster::ready`] turns true).
pub fn start(
    process: Arc<Process>,
    client: Client,
    settings: Settings,
    statuses: Arc<StatusStore>,
    admin_token: Option<String>,
    stop: watch::Receiver<bool>,
) -> Arc<Cluster> {
    let changed = Arc::new(Notify::new());
    let namespaces = watched_namespaces(&settings);
    let mut stores = Stores {
        canary_routes: Vec::new(),
        analysis_templates: Vec::new(),
        services: Vec::new(),
        endpoint_slices: Vec::new(),
        gateway_api: None,
    };
    // A config that says nothing and a cluster that did not serve the
    // Gateway API at the start: its CRDs may come later.
    let mut gateway_api_later = None;
    if settings.serves_gateway_api() {
        stores.gateway_api = Some(GatewayStores::watch(&client, &namespaces, &changed, &stop));
    } else if settings.kubernetes.gateway_api.is_none() {
        let (found, later) = tokio::sync::oneshot::channel();
        gateway_api_later = Some(later);
        tokio::spawn(watch_gateway_api_once_served(
            client.clone(),
            namespaces.clone(),
            Arc::clone(&changed),
            found,
            stop.clone(),
        ));
    }
    for namespace in &namespaces {
        stores.canary_routes.push(reflect(
            api(&client, namespace.as_deref()),
            &changed,
            stop.clone(),
        ));
        stores.analysis_templates.push(reflect(
            api(&client, namespace.as_deref()),
            &changed,
            stop.clone(),
        ));
        stores.services.push(reflect(
            api(&client, namespace.as_deref()),
            &changed,
            stop.clone(),
        ));
        stores.endpoint_slices.push(reflect(
            api(&client, namespace.as_deref()),
            &changed,
            stop.clone(),
        ));
    }
    // The peers Service lives in weir's own namespace, watched or not.
    let peers_watched = namespaces
        .iter()
        .any(|n| n.as_deref().is_none_or(|n| n == settings.namespace));
    if !peers_watched {
        stores.endpoint_slices.push(reflect(
            api(&client, Some(&settings.namespace)),
            &changed,
            stop.clone(),
        ));
    }

    let (leadership_tx, leadership) = watch::channel(Leadership::default());
    statuses.follow_leadership(leadership.clone());
    let elector = Elector::new(
        client.clone(),
        LeaseConfig::new(
            &settings.namespace,
            &settings.kubernetes.lease,
            &settings.identity,
        ),
    );
    if settings.is_candidate() {
        tokio::spawn(elector.run(leadership_tx, stop.clone()));
    } else {
        tokio::spawn(elector.observe(leadership_tx, stop.clone()));
    }

    let (peers_tx, peers_rx) = watch::channel(Vec::new());
    let peers = if settings.is_candidate() {
        match PeerCounters::start(peers_rx, admin_token.as_deref()) {
            Ok(peers) => Some(peers),
            Err(error) => {
                tracing::error!(%error, "cannot read the counters of the other replicas");
                None
            }
        }
    } else {
        None
    };

    let (ready_tx, ready) = watch::channel(false);
    let cluster = Arc::new(Cluster::new(
        settings, client, statuses, leadership, peers, ready,
    ));
    let (rounds_tx, rounds) = watch::channel(None);
    tokio::spawn(write_statuses(
        Arc::clone(&process),
        Arc::clone(&cluster),
        rounds,
        stop.clone(),
    ));
    tokio::spawn(follow(
        process,
        Arc::clone(&cluster),
        stores,
        gateway_api_later,
        changed,
        ready_tx,
        peers_tx,
        rounds_tx,
        stop,
    ));
    cluster
}

/// The namespaces to watch: each listed one, or `None` for all.
fn watched_namespaces(settings: &Settings) -> Vec<Option<String>> {
    match &settings.kubernetes.namespaces {
        Some(list) => list.iter().cloned().map(Some).collect(),
        None => vec![None],
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Starts a reflector of `api` into a new store: each change rings
/// `changed`. Errors are logged and retried with backoff.
fn reflect<K>(api: Api<K>, changed: &Arc<Notify>, mut stop: watch::Receiver<bool>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let changed = Arc::clone(changed);
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        loop {
            let event = tokio::select! {
                () = stopped(&mut stop) => return,
                event = stream.next() => event,
            };
            match event {
                Some(Ok(_)) => {
                    if failing {
                        tracing::info!(%kind, "watching again");
                        failing = false;
                    }
                    changed.notify_one();
                }
                Some(Err(error)) => {
                    if !failing {
                        tracing::warn!(%kind, %error, "cannot watch; retrying with backoff");
                    }
                    failing = true;
                }
                None => return,
            }
        }
    });
    reader
}

/// Keeps the process in step with the cluster until `stop`: waits for the
/// first full lists, then recompiles and decides at every change of the
/// watched objects or of the leadership, handing each sync's other status
/// writes to the status writer through `rounds`.
#[allow(clippy::too_many_arguments)]
async fn follow(
    process: Arc<Process>,
    cluster: Arc<Cluster>,
    mut stores: Stores,
    mut gateway_api_later: Option<tokio::sync::oneshot::Receiver<GatewayStores>>,
    changed: Arc<Notify>,
    ready_tx: watch::Sender<bool>,
    peers_tx: watch::Sender<Vec<SocketAddr>>,
    rounds: watch::Sender<Rounds>,
    mut stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    tokio::select! {
        () = stopped(&mut stop) => return,
        () = all_ready(&stores) => {}
    }
    tracing::info!(elapsed = ?started.elapsed(), "first lists of CanaryRoutes, AnalysisTemplates, Services and EndpointSlices applied");
    // The problems of each invalid AnalysisTemplate, as last logged.
    let mut logged_templates: BTreeMap<ObjectKey, String> = BTreeMap::new();
    let mut leadership = cluster.leadership.clone();
    let mut election_running = true;
    let mut guardrail = tokio::time::interval(Duration::from_millis(250));
    guardrail.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        if !first {
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = changed.notified() => {}
                () = cluster.resync.notified() => {}
                () = wait_until(retry_at) => {}
                found = gateway_api_found(&mut gateway_api_later) => {
                    stores.gateway_api = found;
                }
                () = leadership_changed(&mut leadership, &mut election_running) => {
                    if !election_running && !*stop.borrow() {
                        tracing::error!("the leader election ended; this replica no longer leads");
                    }
                }
                _ = guardrail.tick() => {
                    guard(&process, &cluster, started).await;
                    continue;
                }
            }
            tokio::time::sleep(COALESCE).await;
        }
        let (round, unwritten) = sync(
            &process,
            &cluster,
            &stores,
            &peers_tx,
            &mut logged_templates,
        )
        .await;
        retry_at = unwritten.then(|| tokio::time::Instant::now() + UNWRITTEN_RETRY);
        // The writer takes the latest round: one it has not started yet is
        // replaced, as every round carries all it needs.
        rounds.send_replace(Some(Arc::new(round)));
        if first {
            let _ = ready_tx.send(true);
            first = false;
        }
    }
}

/// Ends at `at`; never without one.
async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for the Gateway API stores of a cluster that began serving it
/// after the start; pending forever when none are coming.
async fn gateway_api_found(
    later: &mut Option<tokio::sync::oneshot::Receiver<GatewayStores>>,
) -> Option<GatewayStores> {
    let Some(receiver) = later else {
        return std::future::pending().await;
    };
    let found = receiver.await.ok();
    *later = None;
    if found.is_none() {
        // The search ended with the process: nothing more will come.
        return std::future::pending().await;
    }
    found
}

/// Whether the election says this replica leads. Once its channel is
/// closed the election task has ended, and with it every renewal: the last
/// value it sent no longer holds.
fn leads(leadership: &watch::Receiver<Leadership>) -> bool {
    leadership.has_changed().is_ok() && leadership.borrow().leads_now()
}

/// Waits for the next change of leadership. The end of the election (its
/// channel closed, `running` turned false) is one last change, to this
/// replica not leading (see [`leads`]); after it nothing comes, where a
/// bare `changed()` would answer at once forever and spin the loop that
/// waits on it.
async fn leadership_changed(leadership: &mut watch::Receiver<Leadership>, running: &mut bool) {
    if *running && leadership.changed().await.is_ok() {
        return;
    }
    if std::mem::take(running) {
        return;
    }
    std::future::pending().await
}

/// Writes, until `stop`, what the syncs hand over through `rounds` (the
/// problem conditions of the CanaryRoutes and the Gateway API statuses),
/// and every [`STATUS_REFRESH`] brings the judgements in the CanaryRoutes'
/// status up to date and tries the failed writes again.
///
/// None of it holds the transition lock but the judgement writes, one
/// route at a time (see [`refresh_judgements`]). The writes cannot undo a
/// transition: a problem write is a merge patch of `status.conditions`
/// alone, and a Gateway API status is on an object no transition writes;
/// both carry the `resourceVersion` read as a precondition, so a status
/// changed meanwhile (by a state write or anyone) answers 409, nothing is
/// written and the next round writes over the newer object. A state write
/// that loses that race to a problem write gets the 409 instead, and the
/// next decision starts from the newer status, as after any other write.
///
/// A refresh and a round take turns: the refresh goes first when both are
/// due, the next refresh is due [`STATUS_REFRESH`] after it ends, and one
/// that follows another gives way at once to a round that waits.
///
/// This task is the only writer of those statuses and does one thing at a
/// time: the writes of a round end (or time out) before the next round or
/// retry starts, so a status of an older round is never written after one
/// of a newer round. A round not started yet is replaced by a newer one.
async fn write_statuses(
    process: Arc<Process>,
    cluster: Arc<Cluster>,
    mut rounds: watch::Receiver<Rounds>,
    mut stop: watch::Receiver<bool>,
) {
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Where the last refresh stopped short: the next one starts after it.
    let mut refreshed_up_to = None;
    let mut refreshed_last = false;
    loop {
        // The refresh first: syncs that follow each other closely must not
        // keep it from its turn.
        let grace_due = cluster.problems.next_due();
        let work = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            _ = refresh.tick() => Work::Refresh,
            // A problem held back for its grace is said when it is due.
            () = wait_until(grace_due) => Work::Retry,
            changed = rounds.changed() => {
                if changed.is_err() {
                    return;
                }
                let round = rounds.borrow_and_update().clone();
                match round {
                    Some(round) => Work::Round(round),
                    None => continue,
                }
            }
        };
        let refreshing = matches!(work, Work::Refresh);
        // Twice in a row, the refresh gives way to a round at once.
        let give_way = std::mem::replace(&mut refreshed_last, refreshing);
        let done = async {
            match work {
                Work::Round(round) => write_round(&cluster, &round).await,
                Work::Retry => {
                    cluster
                        .problems
                        .retry(cluster.is_leader(), &cluster.statuses)
                        .await;
                }
                Work::Refresh => {
                    refresh_judgements(&process, &cluster, &rounds, give_way, &mut refreshed_up_to)
                        .await;
                    // A round waiting to be written supersedes the failed
                    // one: it is written next, in full.
                    if !rounds.has_changed().unwrap_or(false) {
                        let leading = cluster.is_leader();
                        tokio::join!(
                            cluster.problems.retry(leading, &cluster.statuses),
                            cluster
                                .gateway_statuses
                                .retry(leading && cluster.settings.is_candidate()),
                        );
                    }
                }
            }
        };
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = done => {}
        }
        // The next refresh comes a whole period after this one ended, not at
        // once: a refresh slowed by an API server that does not answer
        // leaves the rounds their turn in between.
        if refreshing {
            refresh.reset();
        }
    }
}

/// What the status writer does next.
enum Work {
    /// Write the statuses of a sync.
    Round(Arc<StatusRound>),
    /// Bring the judgements up to date and retry the failed writes.
    Refresh,
    /// Retry the problem writes, one held back for its grace being due.
    Retry,
}

/// Writes the problem conditions and the Gateway API statuses of `round`;
/// they are on different objects, so both go at once.
async fn write_round(cluster: &Cluster, round: &StatusRound) {
    let problems = cluster.problems.report(
        round.leading,
        &round.objects,
        round.problems.clone(),
        round.served.clone(),
        &cluster.statuses,
    );
    let gateways = async {
        if let Some(gateways) = &round.gateways {
            cluster
                .gateway_statuses
                .write(round.leading, &round.objects, gateways)
                .await;
        }
    };
    tokio::join!(problems, gateways);
}

/// The leader writes the judgement of each CanaryRoute whose status tells
/// another verdict, reason or coverage (or another generation than the
/// spec served; see [`StatusStore::judgement_is_stale`]), with the coverage
/// of the replicas' counters; a write that loses a race (409) is retried at
/// the next round.
///
/// Such a write is a rollout state write: the whole state of the route as
/// kept in memory is encoded over the status last seen, with that status's
/// `resourceVersion`. Without the transition lock, a state taken here
/// before a transition and written after it would carry the version the
/// transition's own write returned and undo the transition. So each route
/// is taken, checked and written under the lock, but one route at a time:
/// a command waiting for the lock waits for one write (one API timeout at
/// most), not for every stale route.
///
/// Nor does the status writer wait for every stale route: the refresh stops
/// at the first write that gets no answer in time (the API server is not
/// answering; the rest waits for the next refresh) and, after its first
/// write (before it, when `give_way`), as soon as a newer round waits to
/// be written or once it has run for [`STATUS_REFRESH`]. A refresh that
/// stops short leaves in `up_to` the last route it tried, and the next one
/// starts after it: the refreshes move on through the stale routes, and a
/// route whose writes never get an answer does not keep the others from
/// their turn.
async fn refresh_judgements(
    process: &Process,
    cluster: &Cluster,
    rounds: &watch::Receiver<Rounds>,
    give_way: bool,
    up_to: &mut Option<String>,
) {
    let deadline = Instant::now() + STATUS_REFRESH;
    // A closed channel means the syncs have ended: nothing is worth waiting.
    let round_waiting = || rounds.has_changed().unwrap_or(true);
    let coverage = cluster.peers.as_ref().map(|peers| {
        let (counted, known) = peers.coverage();
        Coverage {
            counted: u32::try_from(counted).unwrap_or(u32::MAX),
            known: u32::try_from(known).unwrap_or(u32::MAX),
        }
    });
    // In name order (the keys of a map), from the one after `up_to`.
    let mut routes: Vec<String> = {
        let control = process.control.lock().await;
        if !control.is_leading() {
            return;
        }
        control
            .rollouts
            .keys()
            .filter(|name| is_cluster_route(name))
            .inspect(|name| {
                if let Some(coverage) = coverage {
                    cluster.statuses.set_coverage(name, coverage);
                }
            })
            .cloned()
            .collect()
    };
    if let Some(last) = up_to.as_deref() {
        let after = routes.partition_point(|name| name.as_str() <= last);
        routes.rotate_left(after);
    }
    // Whether it may stop for a round or the deadline: once it has written
    // one route, or from the start when it gives way.
    let mut may_stop = give_way;
    for name in routes {
        // Stopping before `name`, the next refresh starts with it.
        if may_stop && (round_waiting() || Instant::now() >= deadline) {
            return;
        }
        let _writing = process.transitions.lock().await;
        // The lock may have come after a sync that handed over a round.
        if may_stop && round_waiting() {
            return;
        }
        let (stale, store) = {
            let control = process.control.lock().await;
            // The election's word now, not the last sync's: a replica woken
            // past its renew deadline writes nothing it decided as leader.
            if !control.is_leading() || !cluster.is_leader() {
                return;
            }
            let stale = control
                .rollouts
                .get(&name)
                .filter(|state| cluster.statuses.judgement_is_stale(state))
                .cloned();
            (stale, control.store())
        };
        *up_to = Some(name.clone());
        let Some(stale) = stale else {
            continue;
        };
        may_stop = true;
        for result in persist::save_off_runtime(store, vec![stale]).await {
            if let Err(error) = result {
                if error.kind() == std::io::ErrorKind::TimedOut {
                    tracing::debug!(route = %name, %error, "no answer to a judgement write; the other stale routes wait for the next refresh");
                    return;
                }
                tracing::debug!(route = %name, %error, "the judgement in the status is not updated this round");
            }
        }
    }
    // A full pass: the next one starts from the first route again.
    *up_to = None;
}

/// Waits until every store has applied its first full list.
async fn all_ready(stores: &Stores) {
    listed(&stores.canary_routes).await;
    listed(&stores.analysis_templates).await;
    listed(&stores.services).await;
    listed(&stores.endpoint_slices).await;
    if let Some(gateway_api) = &stores.gateway_api {
        gateway_api.ready().await;
    }
}

/// Waits for the first full list of each of `stores`.
async fn listed<K>(stores: &[Store<K>])
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    for store in stores {
        let _ = store.wait_until_ready().await;
    }
}

/// Compiles the watched objects, records the statuses seen, and brings
/// the rollout states and the snapshot in step: decided under the control
/// lock, written (by the leader) without it, kept and published under it,
/// all under the transition lock. Returns the other status writes it found,
/// for the status writer: they wait for no one and no one waits for them.
async fn sync(
    process: &Process,
    cluster: &Cluster,
    stores: &Stores,
    peers_tx: &watch::Sender<Vec<SocketAddr>>,
    logged_templates: &mut BTreeMap<ObjectKey, String>,
) -> (StatusRound, bool) {
    let objects = collect(stores);
    let namespaces: Option<BTreeSet<String>> = cluster
        .settings
        .kubernetes
        .namespaces
        .as_ref()
        .map(|list| list.iter().cloned().collect());
    let file_templates = process
        .control
        .lock()
        .await
        .file_config()
        .analysis_templates
        .clone();
    let last_valid = std::mem::take(
        &mut *cluster
            .last_valid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut compiled = discovery::compile_cluster_routes(
        &objects,
        namespaces.as_ref(),
        &file_templates,
        &last_valid,
    );
    let last_valid = std::mem::take(&mut compiled.last_valid);
    log_template_problems(&compiled.template_problems, logged_templates);
    let mut present = BTreeSet::new();
    // CanaryRoutes deleted and made again since the last sync (another
    // `uid` under the name): the rollout kept for the name is not theirs.
    let mut made_again = Vec::new();
    for (key, route) in &objects.canary_routes {
        let name = key.to_string();
        if cluster.statuses.observe(&name, route) {
            made_again.push(name.clone());
        }
        present.insert(name);
    }
    // Deleted CanaryRoutes: their last status goes with them.
    cluster
        .statuses
        .forget_others(|route| present.contains(route));
    // A status reports the generation of the spec served, which is an
    // earlier one while an edit does not validate, and keeps that spec.
    for served in &compiled.routes {
        let Some(valid) = served
            .route
            .name
            .split_once('/')
            .and_then(|(namespace, name)| {
                last_valid.get(&ObjectKey {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                })
            })
        else {
            continue;
        };
        let spec = LastValidSpec {
            generation: valid.generation,
            spec: valid.spec.clone(),
        };
        cluster
            .statuses
            .set_served(&served.route.name, spec, pause_lengths_ms(&served.route));
    }
    *cluster
        .last_valid
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = last_valid;
    let peers = discovery::peer_addresses(
        &objects,
        &cluster.settings.namespace,
        &cluster.settings.kubernetes.peers,
    );
    peers_tx.send_if_modified(|current| {
        if *current == peers {
            return false;
        }
        *current = peers;
        true
    });

    let gateways = if stores.gateway_api.is_some() {
        let ports: Vec<u16> = {
            let control = process.control.lock().await;
            control
                .file_config()
                .listeners
                .iter()
                .map(|l| l.address.port())
                .collect()
        };
        Some(gateway_routes::compile_gateways(
            &objects,
            namespaces.as_ref(),
            &ports,
        ))
    } else {
        None
    };
    // Held while deciding, writing the states decided and keeping them:
    // that is what orders this sync with commands, ticks and reloads.
    let writing = process.transitions.lock().await;
    // Read once the lock is held: leadership may have changed while this
    // sync waited for it, and the decisions and writes below follow it.
    let leading = cluster.is_leader() && cluster.settings.is_candidate();
    let now = process.now_ms();
    let (routes, decisions, store, conflicts, served) = {
        let mut control = process.control.lock().await;
        for name in &made_again {
            control.forget_cluster_route(name);
        }
        // A CanaryRoute matching the same requests as a file route is not served.
        let conflicts = discovery::snapshot_routes(control.file_config(), &compiled).conflicts;
        let routes: Vec<weir_config::Route> = compiled
            .routes
            .into_iter()
            .map(|c| c.route)
            .filter(|r| !conflicts.contains_key(&*r.name))
            .collect();
        // The state and the inputs of one same object: the status writer
        // may record a newer one meanwhile.
        let aborted_here = cluster.guardrail_aborted().clone();
        let observe = |name: &str| {
            let mut observed = cluster.statuses.observed(name);
            observed.aborted_here = aborted_here.contains(name);
            observed
        };
        let decisions = control.decide_cluster(&routes, leading, &observe, now);
        let served = routes.iter().map(|r| r.name.to_string()).collect();
        (routes, decisions, control.store(), conflicts, served)
    };
    let mut to_write: Vec<_> = decisions
        .iter()
        .filter_map(|(_, d)| match d {
            crate::controller::cluster_routes::ClusterDecision::Write(o) => Some(o.state.clone()),
            _ => None,
        })
        .collect();
    // A CanaryRoute without a strategy has no rollout state, but a status
    // all the same: the leader writes it (Healthy, at the fixed weight)
    // with the decided states, after them, and keeps nothing of it.
    let decided = to_write.len();
    if leading {
        to_write.extend(
            routes
                .iter()
                .filter(|route| route.strategy.is_none())
                .map(|route| {
                    let mut state = fixed_split_state(route, now);
                    // The sequence goes on from the last rollout, so the
                    // next one gets a rollout id (a cohort) of its own.
                    if let crate::persist::Stored::Found(seen) =
                        cluster.statuses.observed(&route.name).stored
                    {
                        state.rollout_seq = seen.rollout_seq;
                        state.promoted_revision = seen.promoted_revision;
                    }
                    state
                })
                .filter(|state| cluster.statuses.fixed_split_is_stale(state)),
        );
    }
    let mut written = persist::save_off_runtime(store, to_write).await;
    let unwritten = written.iter().any(Result::is_err);
    for result in written.split_off(decided.min(written.len())) {
        if let Err(error) = result {
            tracing::debug!(%error, "the status of a CanaryRoute without a strategy is not written this round");
        }
    }
    {
        let mut control = process.control.lock().await;
        let (mut republish, _kept) = control.apply_cluster(routes, leading, decisions, written);
        // What was served for the old object may not differ from the new
        // one's state as compared, and must go all the same.
        republish |= !made_again.is_empty();
        if let Some(gateways) = &gateways {
            republish |= control.set_gateway_routes(gateways.routes.clone());
        }
        if republish {
            process.publisher.publish(control.snapshot());
        }
    }
    drop(writing);
    let mut problems = compiled.problems;
    for (name, conflict) in conflicts {
        problems.entry(name).or_default().extend(conflict);
    }
    let round = StatusRound {
        leading,
        objects,
        problems,
        served,
        gateways,
    };
    (round, unwritten)
}

/// Per step of `route`'s strategy, a timed pause's length in milliseconds.
fn pause_lengths_ms(route: &weir_config::Route) -> Vec<Option<u64>> {
    route.strategy.as_ref().map_or_else(Vec::new, |strategy| {
        strategy
            .steps
            .iter()
            .map(|step| match step {
                weir_config::Step::Pause(Some(length)) => u64::try_from(length.as_millis()).ok(),
                _ => None,
            })
            .collect()
    })
}

/// The status of CanaryRoute `route`, which has no strategy: no rollout,
/// Healthy, with the canary at its fixed weight (0 without a canary).
fn fixed_split_state(route: &weir_config::Route, now: u64) -> RolloutState {
    let mut state = RolloutState::start(route, now).state;
    let stable = &route.stable.revision;
    match route.canary.as_ref().filter(|c| c.revision != *stable) {
        Some(canary) => {
            state.canary_weight = route.fixed_weight;
            state.canary_revision = Some(canary.revision.to_string());
            state.message = format!(
                "no rollout (no strategy): a fixed split, {}% to canary {}",
                route.fixed_weight, canary.revision
            );
        }
        None => {
            state.canary_weight = weir_config::Weight::ZERO;
            state.message = format!("no rollout (no strategy): all traffic to stable {stable}");
        }
    }
    state
}

/// Logs each AnalysisTemplate that does not validate, once per set of
/// problems, and that it validates again once fixed. The CanaryRoutes
/// naming it say so in their status.
fn log_template_problems(
    found: &BTreeMap<ObjectKey, Vec<weir_config::SpecProblem>>,
    logged: &mut BTreeMap<ObjectKey, String>,
) {
    for (key, problems) in found {
        let text = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if logged.get(key) != Some(&text) {
            tracing::warn!(template = %key, problems = %text, "AnalysisTemplate does not validate; the analyses naming it wait");
            logged.insert(key.clone(), text);
        }
    }
    logged.retain(|key, _| {
        let still = found.contains_key(key);
        if !still {
            tracing::info!(template = %key, "AnalysisTemplate validates again (or is gone)");
        }
        still
    });
}

/// The objects of every store, keyed by `NAMESPACE/NAME`.
fn collect(stores: &Stores) -> ClusterObjects {
    let mut objects = ClusterObjects::default();
    for store in &stores.analysis_templates {
        for template in store.state() {
            objects
                .analysis_templates
                .insert(ObjectKey::of(&template.metadata), template);
        }
    }
    for store in &stores.canary_routes {
        for route in store.state() {
            objects
                .canary_routes
                .insert(ObjectKey::of(&route.metadata), route);
        }
    }
    for store in &stores.services {
        for service in store.state() {
            objects
                .services
                .insert(ObjectKey::of(&service.metadata), service);
        }
    }
    for store in &stores.endpoint_slices {
        for slice in store.state() {
            objects
                .endpoint_slices
                .insert(ObjectKey::of(&slice.metadata), slice);
        }
    }
    let Some(gateway_api) = &stores.gateway_api else {
        return objects;
    };
    for store in &gateway_api.gateway_classes {
        for class in store.state() {
            objects
                .gateway_classes
                .insert(ObjectKey::of(&class.metadata), class);
        }
    }
    for store in &gateway_api.gateways {
        for gateway in store.state() {
            objects
                .gateways
                .insert(ObjectKey::of(&gateway.metadata), gateway);
        }
    }
    for store in &gateway_api.http_routes {
        for route in store.state() {
            objects
                .http_routes
                .insert(ObjectKey::of(&route.metadata), route);
        }
    }
    objects
}

/// Whether the guardrail may act: this replica does not lead, and no
/// leader has been heard from for [`LEADER_SILENCE`]. A leader is heard
/// through each time in `heard` (the Lease's holder renewing, a leader's
/// status write coming in); before anything is heard, the silence counts
/// from `listening_since`, when this replica began to follow the cluster.
fn leader_is_silent(
    leading: bool,
    heard: &[Option<Instant>],
    listening_since: Instant,
    now: Instant,
) -> bool {
    let last = heard
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(listening_since);
    !leading && now.saturating_duration_since(last) >= LEADER_SILENCE
}

/// The guardrail: while the leader is silent, a canary failing badly on
/// this replica's own traffic is aborted here and now, and `abort: true`
/// is written for the leader to come.
async fn guard(process: &Process, cluster: &Cluster, listening_since: Instant) {
    let silent = {
        let lease_heard_at = cluster.leadership.borrow().heard_at;
        leader_is_silent(
            cluster.is_leader(),
            &[lease_heard_at, cluster.statuses.leader_heard_at()],
            listening_since,
            Instant::now(),
        )
    };
    if !silent {
        // A leader is heard: the status (and its judgement) rules again.
        cluster.guardrail_aborted().clear();
        return;
    }
    let now = process.now_ms();
    let failing: Vec<String> = {
        let control = process.control.lock().await;
        control
            .rollouts
            .iter()
            .filter(|(name, state)| is_cluster_route(name) && state.is_active())
            .filter(|(name, state)| {
                control.history.get(*name).is_some_and(|history| {
                    let since = now.saturating_sub(30_000).max(state.rollout_started_ms);
                    let seen = history.observation(since);
                    let canary = seen.canary;
                    canary.requests >= GUARDRAIL_MIN_REQUESTS
                        && canary.errors as f64 >= GUARDRAIL_ERROR_RATE * canary.requests as f64
                })
            })
            .map(|(name, _)| name.clone())
            .collect()
    };
    for name in &failing {
        crate::controller::route_span(name).in_scope(|| {
            tracing::warn!(
                "guardrail: the canary fails on this replica and no leader has been heard from for 5 s; aborting"
            );
        });
        let republish = {
            let mut control = process.control.lock().await;
            let route = control
                .config()
                .routes
                .iter()
                .find(|r| *r.name == *name)
                .cloned();
            let aborted = route.and_then(|route| {
                control
                    .rollouts
                    .get(name)
                    .and_then(|s| s.command(Command::Abort, &route, now).ok())
            });
            match aborted {
                Some(outcome) => {
                    control.rollouts.insert(name.clone(), outcome.state);
                    true
                }
                None => false,
            }
        };
        if republish {
            let control = process.control.lock().await;
            process.publisher.publish(control.snapshot());
        }
    }
    // Written side by side: the sync loop that awaits this waits for one
    // write's time, however many routes fail. An abort whose write failed
    // is kept here, and tried again, until it lands or a leader is heard.
    let mut to_write = cluster.guardrail_aborted().clone();
    to_write.extend(failing);
    let writes = to_write.into_iter().map(|name| async move {
        let written = cluster.statuses.write_input(&name, Command::Abort).await;
        if let Err(error) = &written {
            crate::controller::route_span(&name).in_scope(|| {
                tracing::warn!(%error, "guardrail: cannot write abort to the status");
            });
        }
        (name, written.is_ok())
    });
    for (name, written) in futures_util::future::join_all(writes).await {
        let mut aborted = cluster.guardrail_aborted();
        if written {
            aborted.remove(&name);
        } else {
            aborted.insert(name);
        }
    }
}

#[cfg(test)]
mod tests;
