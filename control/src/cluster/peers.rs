//! Counters across replicas (SPEC.md section 10): [`PeerCounters`] reads
//! every replica's `GET /api/v1/counters` every 250 ms and adds them up per
//! (route, role), so that the leader judges the canary on every replica's
//! traffic.
//!
//! The sum is a cumulative counter like one replica's own, so the windowed
//! analysis can subtract two samples of it. It never goes down:
//!
//! - Counting begins when [`PeerCounters`] starts. A replica's first answer
//!   is its baseline (what it counted before belongs to no window of
//!   ours), unless the replica started after counting began: then
//!   everything it counted is new (unless it was counted before, left the
//!   set of peers and came back).
//! - A replica that restarted (its `startedAt` changed, or a count went
//!   down) keeps what it had counted before, and from then on adds all it
//!   counts after the restart.
//! - A replica that stops answering, or leaves the set of peers, keeps its
//!   last counts in the sum: those requests happened. Only its coverage
//!   ends: it is counted in [`PeerCounters::coverage`] while its last answer
//!   is at most 2 s old.
//! - A route missing from an answer (removed from that replica's config)
//!   keeps its last counts, until [`PeerCounters::forget_routes`] forgets
//!   the routes gone from this replica's own config (a deleted
//!   CanaryRoute). A replica's counters of a route run on across its
//!   removal and return, so a peer that names a forgotten route again is
//!   counted from that answer on: what it counted before belongs to no
//!   window of ours.
//!
//! The decisions are in [`Tally`], a plain value fed answers and times, so
//! they are tested without sockets; [`PeerCounters`] only fetches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use weir_proxy::Role;
use weir_proxy::metrics::RoleCounts;

use super::counters::{ReplicaCounters, SlotMismatch};
use crate::process;

/// How often every peer is read.
pub const READ_INTERVAL: Duration = Duration::from_millis(250);

/// How long one read of one peer may take, connecting included.
pub const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// How old a peer's last answer may be for the peer to count as covered.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Largest counters answer read from a peer.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Counts by (route, role).
pub type CountsByRole = BTreeMap<(String, Role), RoleCounts>;

/// Whether a judgement may use counters from `counted` of `known`
/// replicas: at least two thirds of them, and at least one.
pub fn enough_coverage(counted: usize, known: usize) -> bool {
    known > 0 && counted.saturating_mul(3) >= known.saturating_mul(2)
}

/// The fewest replicas of `known` whose counters make a judgement.
pub fn replicas_needed(known: usize) -> usize {
    (known.saturating_mul(2)).div_ceil(3).max(1)
}

/// Reads every peer's counters in the background and adds them up; stops
/// when dropped.
#[derive(Debug)]
pub struct PeerCounters {
    tally: Arc<Mutex<Tally>>,
    task: JoinHandle<()>,
}

/// What [`PeerCounters`] knows of the peers, fed by hand in tests.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Wall-clock ms when counting began: a replica started after this has
    /// counted only new requests.
    since_ms: u64,
    /// The peers as last told.
    known: BTreeSet<SocketAddr>,
    /// What each peer answered, for those that ever did.
    peers: BTreeMap<SocketAddr, Peer>,
    /// The last failure of each known peer, until it answers again.
    failures: BTreeMap<SocketAddr, String>,
    /// What peers that left the set had counted.
    departed: CountsByRole,
    /// The processes (address, `startedAt`) counted before they left: if
    /// one comes back, what it counted is already in `departed`.
    departed_processes: BTreeSet<(SocketAddr, u64)>,
    /// Routes whose counts were forgotten: a peer that names one again,
    /// without a restart, is counted from that answer on.
    forgotten: BTreeSet<String>,
}

/// One peer's answers.
#[derive(Debug, Clone)]
struct Peer {
    /// `startedAt` of its last answer.
    started_at: u64,
    /// When it last answered.
    answered_at: Instant,
    /// Its counts when counting began for this process of it.
    baseline: CountsByRole,
    /// Its last counts (a route missing from later answers keeps these).
    last: CountsByRole,
    /// What earlier processes at this address counted.
    banked: CountsByRole,
}

/// What an answer did to a peer's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first answer of this peer: its baseline.
    First,
    /// A later answer of the same process.
    Updated,
    /// The peer's process restarted since its last answer.
    Restarted,
    /// The peer is no longer known; the answer was ignored.
    Ignored,
}

/// Why a peer's counters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No answer within [`READ_TIMEOUT`].
    #[error("no answer within {READ_TIMEOUT:?}")]
    Timeout,
    /// The connection failed.
    #[error("unreachable: {0}")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An answer other than 200.
    #[error("answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the body (the admin API's error).
        body: String,
    },
    /// A 200 whose body is not a counters answer.
    #[error("the answer is not a counters answer: {0}")]
    NotCounters(#[source] serde_json::Error),
    /// Counts this build cannot add.
    #[error(transparent)]
    Slots(#[from] SlotMismatch),
}

/// The bearer token is not a valid header value.
#[derive(Debug, thiserror::Error)]
#[error("the admin token for peer counters is not a valid header value")]
pub struct InvalidToken(#[source] http::header::InvalidHeaderValue);

// === impl PeerCounters ===

impl PeerCounters {
    /// Starts reading the admin APIs at the addresses in `peers` (which may
    /// change at any time; this replica's own address among them), sending
    /// `Authorization: Bearer TOKEN` when a token is given. Must run in a
    /// tokio runtime.
    ///
    /// # Errors
    /// [`InvalidToken`] when the token has characters a header cannot hold.
    pub fn start(
        peers: watch::Receiver<Vec<SocketAddr>>,
        token: Option<&str>,
    ) -> Result<PeerCounters, InvalidToken> {
        let authorization = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).map_err(InvalidToken))
            .transpose()?;
        let tally = Arc::new(Mutex::new(Tally::new(process::now_ms())));
        let task = tokio::spawn(read_peers(Arc::clone(&tally), peers, authorization));
        Ok(PeerCounters { tally, task })
    }

    /// The sum of every replica's counts of `role` on `route` since
    /// counting began; never goes down.
    pub fn sum(&self, route: &str, role: Role) -> RoleCounts {
        self.lock().sum(route, role)
    }

    /// Forgets what peers counted of the routes `keep` refuses (see
    /// [`Tally::forget_routes`]).
    pub fn forget_routes(&self, keep: impl Fn(&str) -> bool) {
        self.lock().forget_routes(keep);
    }

    /// (replicas counted, replicas known): how many of the peers now known
    /// answered within the last 2 s.
    pub fn coverage(&self) -> (usize, usize) {
        self.lock().coverage(Instant::now())
    }

    /// The known peers whose last read failed, with why.
    pub fn failures(&self) -> Vec<(SocketAddr, String)> {
        self.lock()
            .failures
            .iter()
            .map(|(addr, why)| (*addr, why.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PeerCounters {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every [`READ_INTERVAL`]: read every peer at once and record the answers.
async fn read_peers(
    tally: Arc<Mutex<Tally>>,
    mut peers: watch::Receiver<Vec<SocketAddr>>,
    authorization: Option<HeaderValue>,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(connector);
    let mut ticker = tokio::time::interval(READ_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let addrs = peers.borrow_and_update().clone();
        tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_peers(&addrs);
        let mut reads = JoinSet::new();
        for addr in addrs {
            let (client, authorization) = (client.clone(), authorization.clone());
            reads.spawn(async move {
                let read =
                    tokio::time::timeout(READ_TIMEOUT, read_peer(&client, addr, authorization));
                let answer = read.await.unwrap_or(Err(PeerError::Timeout));
                (addr, answer)
            });
        }
        while let Some(joined) = reads.join_next().await {
            let Ok((addr, answer)) = joined else { continue };
            // Decided under the lock, logged after it.
            let outcome = {
                let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                match answer.and_then(|counters| {
                    let recorded = tally.record(addr, &counters, Instant::now())?;
                    Ok((counters.replica, recorded))
                }) {
                    Ok(recorded) => Ok(recorded),
                    Err(error) => {
                        let news = tally.failed(addr, &error);
                        Err((error, news))
                    }
                }
            };
            match outcome {
                Ok((replica, Recorded::Restarted)) => tracing::info!(
                    peer = %addr,
                    %replica,
                    "the peer restarted; its counts before the restart stay in the sum"
                ),
                Ok(_) => {}
                Err((error, true)) => {
                    tracing::warn!(peer = %addr, %error, "cannot read the peer's counters");
                }
                Err((error, false)) => {
                    tracing::debug!(peer = %addr, %error, "cannot read the peer's counters");
                }
            }
        }
    }
}

/// One `GET /api/v1/counters`.
async fn read_peer(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    authorization: Option<HeaderValue>,
) -> Result<ReplicaCounters, PeerError> {
    let mut request = Request::get(format!("http://{addr}/api/v1/counters"))
        .header(header::ACCEPT, "application/json");
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| PeerError::Unreachable(e.into()))?;
    let answer = client
        .request(request)
        .await
        .map_err(|e| PeerError::Unreachable(e.into()))?;
    let status = answer.status();
    let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(PeerError::Unreachable)?
        .to_bytes();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body);
        return Err(PeerError::Status {
            status,
            body: text.chars().take(200).collect(),
        });
    }
    serde_json::from_slice(&body).map_err(PeerError::NotCounters)
}

// === impl Tally ===

impl Tally {
    /// Nothing counted yet; counting begins at wall-clock `since_ms`.
    pub fn new(since_ms: u64) -> Tally {
        Tally {
            since_ms,
            known: BTreeSet::new(),
            peers: BTreeMap::new(),
            failures: BTreeMap::new(),
            departed: BTreeMap::new(),
            departed_processes: BTreeSet::new(),
            forgotten: BTreeSet::new(),
        }
    }

    /// Drops what every peer counted of the routes `keep` refuses. The sum
    /// of such a route starts again from zero; a peer that names it again
    /// is counted from that answer on.
    pub fn forget_routes(&mut self, keep: impl Fn(&str) -> bool) {
        let Tally {
            peers,
            departed,
            forgotten,
            ..
        } = self;
        let mut retain = |map: &mut CountsByRole| {
            map.retain(|(route, _), _| {
                let kept = keep(route);
                if !kept && !forgotten.contains(route) {
                    forgotten.insert(route.clone());
                }
                kept
            });
        };
        retain(departed);
        for peer in peers.values_mut() {
            retain(&mut peer.baseline);
            retain(&mut peer.last);
            retain(&mut peer.banked);
        }
    }

    /// The peers now. A peer no longer among them keeps what it counted in
    /// the sum and leaves the coverage; if it comes back, it is a new peer.
    pub fn set_peers(&mut self, addrs: &[SocketAddr]) {
        self.known = addrs.iter().copied().collect();
        let gone: Vec<SocketAddr> = self
            .peers
            .keys()
            .filter(|addr| !self.known.contains(addr))
            .copied()
            .collect();
        for addr in gone {
            if let Some(peer) = self.peers.remove(&addr) {
                self.departed_processes.insert((addr, peer.started_at));
                for key in peer.keys() {
                    add_into(&mut self.departed, &key, &peer.contribution(&key));
                }
            }
        }
        self.failures.retain(|addr, _| self.known.contains(addr));
    }

    /// Records `answer` from the peer at `addr`, received at `now`. An
    /// answer from an address no longer known is ignored.
    ///
    /// # Errors
    /// [`SlotMismatch`] for counts this build cannot add; nothing changes.
    pub fn record(
        &mut self,
        addr: SocketAddr,
        answer: &ReplicaCounters,
        now: Instant,
    ) -> Result<Recorded, SlotMismatch> {
        let counts = answer.role_counts()?;
        if !self.known.contains(&addr) {
            return Ok(Recorded::Ignored);
        }
        self.failures.remove(&addr);
        match self.peers.get_mut(&addr) {
            None => {
                let all_new = answer.started_at >= self.since_ms
                    && !self.departed_processes.contains(&(addr, answer.started_at));
                let baseline = if all_new {
                    CountsByRole::new()
                } else {
                    counts.clone()
                };
                self.peers.insert(
                    addr,
                    Peer {
                        started_at: answer.started_at,
                        answered_at: now,
                        baseline,
                        last: counts,
                        banked: CountsByRole::new(),
                    },
                );
            }
            Some(peer) => {
                return Ok(peer.update(answer.started_at, counts, now, &self.forgotten));
            }
        }
        Ok(Recorded::First)
    }

    /// Records that the peer at `addr` could not be read; true when it
    /// answered (or was new) before, so the failure is news.
    pub fn failed(&mut self, addr: SocketAddr, error: &PeerError) -> bool {
        if !self.known.contains(&addr) {
            return false;
        }
        self.failures.insert(addr, error.to_string()).is_none()
    }

    /// Every replica's counts of `role` on `route` since counting began.
    pub fn sum(&self, route: &str, role: Role) -> RoleCounts {
        let key = (route.to_owned(), role);
        let mut total = self
            .departed
            .get(&key)
            .copied()
            .unwrap_or_else(RoleCounts::zero);
        for peer in self.peers.values() {
            add(&mut total, &peer.contribution(&key));
        }
        total
    }

    /// (replicas counted, replicas known) at `now`: known peers whose last
    /// answer is at most [`FRESH_FOR`] old.
    pub fn coverage(&self, now: Instant) -> (usize, usize) {
        let counted = self
            .known
            .iter()
            .filter_map(|addr| self.peers.get(addr))
            .filter(|peer| now.saturating_duration_since(peer.answered_at) <= FRESH_FOR)
            .count();
        (counted, self.known.len())
    }
}

// === impl Peer ===

impl Peer {
    /// Takes a new answer; a restart banks what the old process counted. A
    /// route in `forgotten` named again by the same process is counted from
    /// here on.
    fn update(
        &mut self,
        started_at: u64,
        counts: CountsByRole,
        now: Instant,
        forgotten: &BTreeSet<String>,
    ) -> Recorded {
        let went_down = counts.iter().any(|(key, new)| {
            self.last.get(key).is_some_and(|old| {
                new.requests < old.requests
                    || new.errors < old.errors
                    || new.latency.iter().zip(&old.latency).any(|(n, o)| n < o)
            })
        });
        let restarted = started_at != self.started_at || went_down;
        if restarted {
            for key in self.keys() {
                let before = self.contribution(&key);
                self.banked.insert(key, before);
            }
            self.baseline.clear();
            self.last.clear();
            self.started_at = started_at;
        } else {
            for (key, counted) in &counts {
                if !self.last.contains_key(key) && forgotten.contains(&key.0) {
                    self.baseline.insert(key.clone(), *counted);
                }
            }
        }
        // A route missing from the answer keeps its last counts.
        self.last.extend(counts);
        self.answered_at = now;
        if restarted {
            Recorded::Restarted
        } else {
            Recorded::Updated
        }
    }

    /// Every (route, role) this peer ever counted.
    fn keys(&self) -> BTreeSet<(String, Role)> {
        self.last
            .keys()
            .chain(self.banked.keys())
            .cloned()
            .collect()
    }

    /// What this peer counted of `key` since counting began.
    fn contribution(&self, key: &(String, Role)) -> RoleCounts {
        let mut total = self
            .banked
            .get(key)
            .copied()
            .unwrap_or_else(RoleCounts::zero);
        if let Some(last) = self.last.get(key) {
            let since = match self.baseline.get(key) {
                Some(baseline) => minus(last, baseline),
                None => *last,
            };
            add(&mut total, &since);
        }
        total
    }
}

/// `into[key] += counts`.
fn add_into(into: &mut CountsByRole, key: &(String, Role), counts: &RoleCounts) {
    add(
        into.entry(key.clone()).or_insert_with(RoleCounts::zero),
        counts,
    );
}

/// `total += counts`, field by field.
fn add(total: &mut RoleCounts, counts: &RoleCounts) {
    total.requests = total.requests.saturating_add(counts.requests);
    total.errors = total.errors.saturating_add(counts.errors);
    for (t, c) in total.latency.iter_mut().zip(&counts.latency) {
        *t = t.saturating_add(*c);
    }
}

/// `later - earlier`, field by field, never below zero.
fn minus(later: &RoleCounts, earlier: &RoleCounts) -> RoleCounts {
    let mut out = *later;
    out.requests = later.requests.saturating_sub(earlier.requests);
    out.errors = later.errors.saturating_sub(earlier.errors);
    for (o, e) in out.latency.iter_mut().zip(&earlier.latency) {
        *o = o.saturating_sub(*e);
    }
    out
}

#[cfg(test)]
mod tests;
