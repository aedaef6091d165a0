//! The answer of `GET /api/v1/counters` (SPEC.md section 10): one replica's
//! cumulative per-route, per-role counts, as the admin API writes them and
//! [`super::peers::PeerCounters`] reads them. One set of serde types for
//! both sides.
//!
//! Reading tolerates a newer server (unknown fields are ignored, a missing
//! role reads as no requests) but refuses an answer it cannot add up
//! correctly: a latency histogram with another number of slots than this
//! build's [`LATENCY_SLOTS`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use weir_proxy::metrics::{LATENCY_SLOTS, RoleCounts};
use weir_proxy::{Metrics, Role};

/// One replica's counters since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounters {
    /// Who answers: `POD_NAME`, else the host name, else the admin address.
    pub replica: String,
    /// When the replica's process started, in milliseconds since the UNIX
    /// epoch: a reader that sees it change knows the counts began again.
    pub started_at: u64,
    /// Counts by route name.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteCounters>,
}

/// The counts of both roles of one route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteCounters {
    /// The stable role.
    pub stable: Counts,
    /// The canary role.
    pub canary: Counts,
}

/// The cumulative counts of one role, as [`RoleCounts`] in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Requests answered (client-caused failures excluded).
    pub requests: u64,
    /// Of those, errors of the role (5xx and broken bodies).
    pub errors: u64,
    /// Non-cumulative counts per latency slot
    /// ([`weir_proxy::metrics::LATENCY_BOUNDS_MICROS`], then one above).
    pub latency: Vec<u64>,
}

/// Who this replica is, as its counters answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The replica's name.
    pub name: String,
    /// When its process started, in milliseconds since the UNIX epoch.
    pub started_at: u64,
}

/// An answer whose counts cannot be added to this build's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route}, role {role}: {slots} latency slots where this build has {LATENCY_SLOTS}")]
pub struct SlotMismatch {
    /// The route.
    pub route: String,
    /// The role's label.
    pub role: &'static str,
    /// How many slots the answer had.
    pub slots: usize,
}

// === impl ReplicaCounters ===

impl ReplicaCounters {
    /// The counts of every route in `routes`, both roles, from `metrics`
    /// (zero for a role that never served).
    pub fn read<'a>(
        replica: &Replica,
        metrics: &Metrics,
        routes: impl IntoIterator<Item = &'a str>,
    ) -> ReplicaCounters {
        let counts = |route: &str, role: Role| {
            metrics
                .get(route, role)
                .map_or_else(RoleCounts::zero, |m| m.counts())
        };
        let routes = routes
            .into_iter()
            .map(|route| {
                let both = RouteCounters {
                    stable: Counts::from(&counts(route, Role::Stable)),
                    canary: Counts::from(&counts(route, Role::Canary)),
                };
                (route.to_owned(), both)
            })
            .collect();
        ReplicaCounters {
            replica: replica.name.clone(),
            started_at: replica.started_at,
            routes,
        }
    }

    /// The counts by (route, role), ready to add up.
    ///
    /// # Errors
    /// [`SlotMismatch`] naming the first route and role whose latency has
    /// another number of slots than this build's.
    pub fn role_counts(&self) -> Result<BTreeMap<(String, Role), RoleCounts>, SlotMismatch> {
        let mut out = BTreeMap::new();
        for (route, both) in &self.routes {
            for (role, counts) in [(Role::Stable, &both.stable), (Role::Canary, &both.canary)] {
                let counts = counts.to_role_counts().map_err(|slots| SlotMismatch {
                    route: route.clone(),
                    role: role.metric_label(),
                    slots,
                })?;
                out.insert((route.clone(), role), counts);
            }
        }
        Ok(out)
    }
}

// === impl Counts ===

impl Default for Counts {
    fn default() -> Counts {
        Counts::from(&RoleCounts::zero())
    }
}

impl From<&RoleCounts> for Counts {
    fn from(counts: &RoleCounts) -> Counts {
        Counts {
            requests: counts.requests,
            errors: counts.errors,
            latency: counts.latency.to_vec(),
        }
    }
}

impl Counts {
    /// The counts as [`RoleCounts`]; `Err(slots)` when the latency does not
    /// have [`LATENCY_SLOTS`] slots. An empty latency reads as all zero.
    fn to_role_counts(&self) -> Result<RoleCounts, usize> {
        let mut latency = [0; LATENCY_SLOTS];
        if !self.latency.is_empty() {
            if self.latency.len() != LATENCY_SLOTS {
                return Err(self.latency.len());
            }
            latency.copy_from_slice(&self.latency);
        }
        Ok(RoleCounts {
            requests: self.requests,
            errors: self.errors,
            latency,
        })
    }
}

// === impl Replica ===

impl Replica {
    /// This process: named by `POD_NAME`, else the host name, else
    /// `admin` (the admin API's address), started at `started_at`.
    pub fn detect(admin: Option<SocketAddr>, started_at: u64) -> Replica {
        let name = pod_or_host_name()
            .or_else(|| admin.map(|a| a.to_string()))
            .unwrap_or_else(|| "unknown".to_owned());
        Replica { name, started_at }
    }
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// This pod's name (`POD_NAME`), else the host name: a replica's identity.
pub fn pod_or_host_name() -> Option<String> {
    non_empty(std::env::var("POD_NAME").ok()).or_else(host_name)
}

/// The kernel's host name (Linux), or `/etc/hostname`.
fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| non_empty(std::fs::read_to_string(path).ok()))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_every_route_and_role_and_round_trips() {
        let metrics = Metrics::new();
        let web: Arc<str> = Arc::from("web");
        let canary = metrics.role(&web, Role::Canary);
        canary.record(200, Duration::from_millis(2));
        canary.record(503, Duration::from_millis(2));
        let replica = Replica {
            name: "weir-0".to_owned(),
            started_at: 1_700_000_000_000,
        };
        let answer = ReplicaCounters::read(&replica, &metrics, ["web", "idle"]);
        let text = serde_json::to_string(&answer).expect("encodes");
        assert!(text.contains("\"startedAt\":1700000000000"), "{text}");
        let back: ReplicaCounters = serde_json::from_str(&text).expect("decodes");
        assert_eq!(back, answer);

        let counts = back.role_counts().expect("this build's slots");
        let web_canary = &counts[&("web".to_owned(), Role::Canary)];
        assert_eq!((web_canary.requests, web_canary.errors), (2, 1));
        assert_eq!(web_canary.latency.iter().sum::<u64>(), 2);
        assert_eq!(
            counts[&("web".to_owned(), Role::Stable)],
            RoleCounts::zero()
        );
        assert_eq!(
            counts[&("idle".to_owned(), Role::Canary)],
            RoleCounts::zero()
        );
    }

    #[test]
    fn reading_tolerates_missing_roles_and_refuses_other_slot_counts() {
        let text = r#"{"replica": "a", "startedAt": 5, "future": 1,
            "routes": {"web": {"canary": {"requests": 3, "errors": 1}}}}"#;
        let answer: ReplicaCounters = serde_json::from_str(text).expect("tolerant");
        let counts = answer.role_counts().expect("no latency reads as zero");
        assert_eq!(counts[&("web".to_owned(), Role::Canary)].requests, 3);
        assert_eq!(counts[&("web".to_owned(), Role::Stable)].requests, 0);

        let text = r#"{"replica": "a", "startedAt": 5,
            "routes": {"web": {"stable": {"requests": 1, "errors": 0, "latency": [1, 0]}}}}"#;
        let answer: ReplicaCounters = serde_json::from_str(text).expect("decodes");
        let refused = answer.role_counts().expect_err("two slots");
        assert_eq!(refused.slots, 2);
        let message = refused.to_string();
        assert!(
            message.contains("route web, role stable: 2 latency slots"),
            "{message}"
        );

        let missing = serde_json::from_str::<ReplicaCounters>(r#"{"replica": "a"}"#)
            .expect_err("startedAt is needed to notice restarts");
        assert!(missing.to_string().contains("startedAt"), "{missing}");
    }
}
