//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's
//! semantics, so that only one replica runs steps and writes rollout status.
//!
//! Each candidate reads the Lease every `retry_period`. A Lease held by
//! another identity is left alone while its record keeps changing: it counts
//! as expired only once this candidate has seen the same record for
//! `lease_duration` by its own clock (clocks of different nodes are never
//! compared). Taking or renewing is a replace carrying the `resourceVersion`
//! that was read, so of two candidates that race, exactly one wins and the
//! other gets 409. A leader that has not renewed within `renew_deadline`
//! steps down before any other candidate may take over (`renew_deadline` <
//! `lease_duration`), and a leader that stops cleanly clears the holder so
//! that another takes over at its next read instead of after the lease
//! duration.
//!
//! weir writes this small election itself, on `Api<Lease>`, instead of using
//! a leader-election crate: it is about a hundred lines, its timing is the
//! part failover depends on, and it is tested here against a real API
//! server's semantics (conflicts, a server that goes away).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Lease is, who this candidate is, and the election's timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's namespace (weir's own, from `POD_NAMESPACE`).
    pub namespace: String,
    /// The Lease's name (`kubernetes.lease`).
    pub name: String,
    /// This replica's identity (`POD_NAME`).
    pub identity: String,
    /// How long a silent holder keeps the Lease (15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal (10 s).
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed (2 s).
    pub retry_period: Duration,
}

/// Who leads, as this replica last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    /// Whether this replica leads.
    pub is_leader: bool,
    /// The identity holding the Lease, if it is held and not expired.
    pub leader: Option<String>,
    /// When a leader was last heard from: this replica's own renewal, or
    /// the last change of the holder's record, by this replica's clock.
    pub heard_at: Option<Instant>,
    /// While this replica leads: when its leadership ends unless renewed
    /// (its last renewal plus the renew deadline), by its own clock.
    pub leads_until: Option<Instant>,
}

impl Leadership {
    /// Whether this replica leads at this instant: the election said so
    /// and its renewal has not run out since. A process stopped past its
    /// renew deadline (SIGSTOP, a VM paused) and woken again reads `false`
    /// before its election's next round says so, so that nothing it had
    /// decided as leader is written over the next leader's status.
    pub fn leads_now(&self) -> bool {
        self.is_leader && self.leads_until.is_some_and(|until| Instant::now() < until)
    }
}

/// One candidate in the election.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

/// Whether the reads of the Lease are failing: the first failure of a run
/// of them is a warning, the others are logged at debug level, and the
/// first read that succeeds again says so.
#[derive(Debug, Default)]
struct ReadFailures {
    failing: bool,
}

/// The Lease as last read, and when its record last changed by our clock.
#[derive(Debug, Clone)]
struct Observed {
    spec: LeaseSpec,
    changed_at: Instant,
}

// === impl LeaseConfig ===

impl LeaseConfig {
    /// The timing of SPEC section 10 (lease 15 s; client-go's renew
    /// deadline of 10 s and retry period of 2 s).
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

// === impl Elector ===

impl Elector {
    /// A candidate for the Lease `config` names, through `client`.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Elector {
        let api = Api::namespaced(client, &config.namespace);
        Elector {
            api,
            config,
            observed: None,
        }
    }

    /// Reads the Lease and takes or renews it when it is free, expired or
    /// ours. Returns whether this candidate holds it now.
    ///
    /// # Errors
    /// When the API server cannot be reached or refuses the read; a lost
    /// race for the Lease (409) is `Ok(false)`, not an error.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            return self.create(Instant::now()).await;
        };
        // Seen now, after the read: a holder's silence is counted from when
        // this candidate saw its record, never from before (a slow read
        // would otherwise shorten the lease others grant it).
        let now = Instant::now();
        let spec = current.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|o| o.spec != spec);
        if changed {
            self.observed = Some(Observed {
                spec: spec.clone(),
                changed_at: now,
            });
        }
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        let ours = holder == self.config.identity;
        if !holder.is_empty() && !ours && !self.expired(now) {
            return Ok(false);
        }
        let stamp = MicroTime(Timestamp::now());
        let next = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(duration_seconds(self.config.lease_duration)),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(stamp.clone())
            },
            renew_time: Some(stamp),
            lease_transitions: Some(next_transitions(
                spec.lease_transitions,
                !ours && !holder.is_empty(),
            )),
            ..LeaseSpec::default()
        };
        let mut lease = current;
        lease.spec = Some(next.clone());
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observed = Some(Observed {
                    spec: next,
                    changed_at: now,
                });
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Clears the holder of a Lease this candidate holds, so that another
    /// takes over at its next read.
    ///
    /// # Errors
    /// When the API server cannot be reached; a Lease taken meanwhile by
    /// another is left alone.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Who holds the Lease as last read: `None` when free or expired.
    pub fn holder(&self) -> Option<String> {
        let observed = self.observed.as_ref()?;
        let holder = observed.spec.holder_identity.as_ref()?;
        let ours = *holder == self.config.identity;
        (!holder.is_empty() && (ours || !self.expired(Instant::now()))).then(|| holder.clone())
    }

    /// Runs the election until `shutdown` turns true, publishing every
    /// change of leadership; releases the Lease on the way out if held.
    ///
    /// A read that fails or gets no answer tells nothing new: the holder
    /// last read stays the leader (until its record expires by this
    /// replica's clock) and `heard_at` stays when it was last heard from,
    /// so that silence is measured from the last time a leader was heard.
    pub async fn run(
        mut self,
        leadership: watch::Sender<Leadership>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut last_renewal: Option<Instant> = None;
        let mut failures = ReadFailures::default();
        loop {
            // A round that hangs (a server that does not answer, a client
            // that retries) must not keep a leader leading past its
            // deadline: a leader's round ends by it at the latest.
            let started = Instant::now();
            let deadline = last_renewal.map(|at| at + self.config.renew_deadline);
            let attempt = (self.config.renew_deadline / 2)
                .min(deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(started)));
            let result = tokio::time::timeout(attempt, self.try_acquire_or_renew()).await;
            let now = Instant::now();
            match result {
                Ok(Ok(taken)) => {
                    failures.answered(&self.config.name);
                    // Counted from before the request: the server may have
                    // stamped the renewal as soon as it was sent.
                    last_renewal = taken.then_some(started);
                }
                Ok(Err(error)) => failures.failed(&self.config.name, &error),
                Err(_) => failures.failed(
                    &self.config.name,
                    &format!("no answer within {} s", attempt.as_secs_f64()),
                ),
            }
            // A leader that could not renew keeps leading only until the
            // renew deadline, which ends before any other may take over.
            let is_leader =
                last_renewal.is_some_and(|at| now.duration_since(at) < self.config.renew_deadline);
            if !is_leader {
                last_renewal = None;
            }
            // A record naming this replica that it no longer renews is no
            // leader anyone hears.
            let leader = if is_leader {
                Some(self.config.identity.clone())
            } else {
                self.holder().filter(|h| *h != self.config.identity)
            };
            let heard_at = if is_leader {
                last_renewal
            } else {
                leader
                    .as_ref()
                    .and(self.observed.as_ref().map(|o| o.changed_at))
            };
            let leads_until = last_renewal.map(|at| at + self.config.renew_deadline);
            leadership.send_if_modified(|current| {
                current.heard_at = heard_at;
                current.leads_until = leads_until;
                if current.is_leader == is_leader && current.leader == leader {
                    return false;
                }
                tracing::info!(lease = %self.config.name, leader = ?leader, is_leader, "leadership changed");
                current.is_leader = is_leader;
                current.leader = leader;
                true
            });
            // A leader wakes by its renew deadline at the latest, to step
            // down then if the next round cannot renew.
            let pause = last_renewal.map_or(self.config.retry_period, |at| {
                self.config
                    .retry_period
                    .min((at + self.config.renew_deadline).saturating_duration_since(now))
            });
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if last_renewal.is_some() {
            leadership.send_replace(Leadership::default());
            if let Err(error) = self.release().await {
                tracing::warn!(lease = %self.config.name, %error, "cannot release the leader Lease");
            }
        }
    }

    /// Follows the election without taking part (a follower: it never
    /// leads): reads the Lease every retry period and publishes who holds
    /// it and when the holder was last heard from, until `shutdown`.
    ///
    /// A follower often cannot read the Lease (it lives in the gateway's
    /// namespace, and a sidecar's ServiceAccount has no Role there): a
    /// failed read keeps what was last read, and is logged once as a
    /// warning, then at debug level until a read succeeds again.
    pub async fn observe(
        mut self,
        leadership: watch::Sender<Leadership>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut failures = ReadFailures::default();
        loop {
            let attempt = self.config.renew_deadline / 2;
            match tokio::time::timeout(attempt, self.api.get_opt(&self.config.name)).await {
                Ok(Ok(lease)) => {
                    failures.answered(&self.config.name);
                    let spec = lease.and_then(|l| l.spec).unwrap_or_default();
                    if self.observed.as_ref().is_none_or(|o| o.spec != spec) {
                        self.observed = Some(Observed {
                            spec,
                            changed_at: Instant::now(),
                        });
                    }
                }
                Ok(Err(error)) => failures.failed(&self.config.name, &error),
                Err(_) => failures.failed(
                    &self.config.name,
                    &format!("no answer within {} s", attempt.as_secs_f64()),
                ),
            }
            let leader = self.holder();
            let heard_at = leader
                .as_ref()
                .and(self.observed.as_ref().map(|o| o.changed_at));
            leadership.send_if_modified(|current| {
                current.heard_at = heard_at;
                let changed = current.leader != leader;
                current.leader = leader;
                changed
            });
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
    }

    /// Creates the Lease with this candidate as holder; a lost race is
    /// `Ok(false)`.
    async fn create(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let stamp = MicroTime(Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(duration_seconds(self.config.lease_duration)),
            acquire_time: Some(stamp.clone()),
            renew_time: Some(stamp),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec.clone()),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                self.observed = Some(Observed {
                    spec,
                    changed_at: now,
                });
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Whether the observed record has stood unchanged for its lease
    /// duration by our clock.
    fn expired(&self, now: Instant) -> bool {
        self.observed.as_ref().is_none_or(|o| {
            let seconds = o
                .spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(self.config.lease_duration.as_secs());
            now.duration_since(o.changed_at) >= Duration::from_secs(seconds)
        })
    }
}

// === impl ReadFailures ===

impl ReadFailures {
    /// Logs a failed read of the Lease `lease`.
    fn failed(&mut self, lease: &str, error: &dyn std::fmt::Display) {
        if std::mem::replace(&mut self.failing, true) {
            tracing::debug!(lease, %error, "cannot read the leader Lease (still)");
        } else {
            tracing::warn!(lease, %error, "cannot read the leader Lease; the leader last read is kept, and this is logged again at debug level until a read succeeds");
        }
    }

    /// Notes a read of the Lease `lease` that was answered.
    fn answered(&mut self, lease: &str) {
        if std::mem::take(&mut self.failing) {
            tracing::info!(lease, "the leader Lease is read again");
        }
    }
}

/// `leaseTransitions` after a write: one more when the Lease changes hands.
/// The field is an int32 the API server requires to be non-negative, and a
/// real one may already hold `i32::MAX`: the count stops there instead of
/// overflowing (a panic in the election task, or a negative count the
/// server refuses), and a negative count read back is taken as 0.
fn next_transitions(current: Option<i32>, taken_over: bool) -> i32 {
    current
        .unwrap_or_default()
        .max(0)
        .saturating_add(i32::from(taken_over))
}

/// Whole seconds, at least 1, as the Lease field wants them.
fn duration_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
