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
use weir_proxy::metrics::{LATENCY_BOUNDS_MICROS, LATENCY_SLOTS, RoleCounts};
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Requests answered (client-caused failures excluded).
    pub requests: u64,
    /// Of those, errors of the role (5xx and broken bodies).
    pub errors: u64,
    /// Non-cumulative counts per latency slot
    /// ([`weir_proxy::metrics::LATENCY_BOUNDS_MICROS`], then one above):
    /// every slot, or with [`Counts::latency_from`] the run from that slot
    /// to the last one counted in (the others are zero).
    pub latency: Vec<u64>,
    /// The slot of `latency[0]` when only a run of slots is sent; absent,
    /// `latency` holds every slot (as earlier builds send it).
    #[serde(
        rename = "latencyFrom",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub latency_from: Option<usize>,
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

impl From<&RoleCounts> for Counts {
    /// Only the run of slots counted in: a route's requests fall in some
    /// dozens of the 382, and peers read every route's counts four times a
    /// second.
    fn from(counts: &RoleCounts) -> Counts {
        let slots = counts.counted_slots();
        Counts {
            requests: counts.requests,
            errors: counts.errors,
            latency_from: Some(slots.start),
            latency: counts.latency[slots].to_vec(),
        }
    }
}

impl Counts {
    /// The counts as [`RoleCounts`]; `Err(slots)` when the latency has
    /// neither [`LATENCY_SLOTS`] slots nor the 60 of earlier builds, whose
    /// bounds are among this build's (each is counted in the slot with the
    /// same upper bound, so a rolling upgrade keeps its coverage). An empty
    /// latency reads as all zero.
    fn to_role_counts(&self) -> Result<RoleCounts, usize> {
        let mut latency = [0; LATENCY_SLOTS];
        if let Some(from) = self.latency_from {
            let run = from
                .checked_add(self.latency.len())
                .filter(|&end| end <= LATENCY_SLOTS)
                .map(|end| &mut latency[from..end]);
            let Some(run) = run else {
                return Err(from.saturating_add(self.latency.len()));
            };
            run.copy_from_slice(&self.latency);
            return Ok(RoleCounts {
                requests: self.requests,
                errors: self.errors,
                latency,
            });
        }
        match self.latency.len() {
            0 => {}
            LATENCY_SLOTS => latency.copy_from_slice(&self.latency),
            n if n == EARLIER_BOUNDS_MICROS.len() + 1 => {
                for (i, &count) in self.latency.iter().enumerate() {
                    let slot = EARLIER_BOUNDS_MICROS
                        .get(i)
                        .map_or(LATENCY_SLOTS - 1, |bound| {
                            LATENCY_BOUNDS_MICROS.partition_point(|&b| b < *bound)
                        });
                    latency[slot] += count;
                }
            }
            n => return Err(n),
        }
        Ok(RoleCounts {
            requests: self.requests,
            errors: self.errors,
            latency,
        })
    }
}

/// The latency bounds of builds before the 5 % buckets, in microseconds:
/// 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5 per decade from 100 µs to 60 s.
const EARLIER_BOUNDS_MICROS: [u64; 59] = [
    100, 125, 150, 200, 250, 300, 400, 500, 600, 750, //
    1_000, 1_250, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000, 7_500, //
    10_000, 12_500, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 60_000, 75_000, //
    100_000, 125_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000, 600_000,
    750_000, //
    1_000_000, 1_250_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000, 4_000_000, 5_000_000,
    6_000_000, 7_500_000, //
    10_000_000, 12_500_000, 15_000_000, 20_000_000, 25_000_000, 30_000_000, 40_000_000, 50_000_000,
    60_000_000,
];

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

        // An earlier build's 60 slots: each count lands in the slot with its
        // upper bound (125 µs, 1 ms, 60 s, above 60 s).
        let mut earlier = vec![0u64; 60];
        earlier[1] = 3;
        earlier[10] = 5;
        earlier[58] = 7;
        earlier[59] = 11;
        let text = format!(
            r#"{{"replica": "a", "startedAt": 5,
            "routes": {{"web": {{"stable": {{"requests": 26, "errors": 0, "latency": {earlier:?}}}}}}}}}"#
        );
        let answer: ReplicaCounters = serde_json::from_str(&text).expect("decodes");
        let counts = answer.role_counts().expect("an earlier build's slots");
        let latency = counts[&("web".to_owned(), Role::Stable)].latency;
        let slot_of = |bound: u64| LATENCY_BOUNDS_MICROS.iter().position(|&b| b == bound);
        assert_eq!(latency[slot_of(125).expect("a bound")], 3);
        assert_eq!(latency[slot_of(1_000).expect("a bound")], 5);
        assert_eq!(latency[slot_of(60_000_000).expect("a bound")], 7);
        assert_eq!(latency[LATENCY_SLOTS - 1], 11);
        assert_eq!(latency.iter().sum::<u64>(), 26);

        let missing = serde_json::from_str::<ReplicaCounters>(r#"{"replica": "a"}"#)
            .expect_err("startedAt is needed to notice restarts");
        assert!(missing.to_string().contains("startedAt"), "{missing}");
    }
}
