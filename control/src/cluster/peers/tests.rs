//! The sum of peers' counters over answers fed by hand: baselines,
//! restarts, peers that stop answering or leave, and coverage.

use std::collections::BTreeMap;

use weir_proxy::metrics::LATENCY_SLOTS;

use super::*;
use crate::cluster::counters::{Counts, RouteCounters};
use crate::messages;

/// When counting begins, in wall-clock ms.
const SINCE_MS: u64 = 1_700_000_000_000;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 9900))
}

/// Counts of one role: `requests`, of which `errors` failed; every request
/// in latency slot 3.
fn counts(requests: u64, errors: u64) -> Counts {
    let mut latency = vec![0; LATENCY_SLOTS];
    latency[3] = requests;
    Counts {
        requests,
        errors,
        latency,
        latency_from: None,
    }
}

/// An answer of a replica started at `started_at` with, per route,
/// (stable requests, stable errors, canary requests, canary errors).
fn answer(started_at: u64, routes: &[(&str, u64, u64, u64, u64)]) -> ReplicaCounters {
    ReplicaCounters {
        replica: "weir-x".to_owned(),
        started_at,
        routes: routes
            .iter()
            .map(|&(name, sr, se, cr, ce)| {
                let both = RouteCounters {
                    stable: counts(sr, se),
                    canary: counts(cr, ce),
                };
                (name.to_owned(), both)
            })
            .collect(),
    }
}

/// (requests, errors, latency slot 3) of `counts`.
fn seen(counts: &RoleCounts) -> (u64, u64, u64) {
    (counts.requests, counts.errors, counts.latency[3])
}

fn tally_of(addrs: &[SocketAddr]) -> Tally {
    let mut tally = Tally::new(SINCE_MS);
    tally.set_peers(addrs);
    tally
}

fn record(tally: &mut Tally, peer: SocketAddr, answer: &ReplicaCounters, at: Instant) -> Recorded {
    tally
        .record(peer, answer, at)
        .unwrap_or_else(|e| panic!("answer of {peer} refused: {e}"))
}

/// Replicas started before counting began.
const EARLIER: u64 = SINCE_MS - 60_000;

#[test]
fn sums_what_every_replica_counted_since_counting_began() {
    let now = Instant::now();
    let (a, b, c) = (addr(1), addr(2), addr(3));
    let mut tally = tally_of(&[a, b, c]);
    // First answers are baselines: those requests belong to no window.
    let first = answer(EARLIER, &[("web", 100, 5, 10, 1)]);
    assert_eq!(record(&mut tally, a, &first, now), Recorded::First);
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 50, 0, 0, 0)]),
        now,
    );
    assert_eq!(seen(&tally.sum("web", Role::Stable)), (0, 0, 0));
    assert_eq!(tally.coverage(now), (2, 3));

    // c started after counting began: all it counted is new.
    record(
        &mut tally,
        c,
        &answer(SINCE_MS + 10, &[("web", 7, 1, 3, 3)]),
        now,
    );
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 110, 6, 14, 2)]),
        now,
    );
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 52, 0, 1, 0)]),
        now,
    );
    assert_eq!(
        seen(&tally.sum("web", Role::Stable)),
        (10 + 2 + 7, 1 + 1, 19)
    );
    assert_eq!(seen(&tally.sum("web", Role::Canary)), (4 + 1 + 3, 1 + 3, 8));
    assert_eq!(seen(&tally.sum("nosuch", Role::Canary)), (0, 0, 0));
    assert_eq!(tally.coverage(now), (3, 3));
}

#[test]
fn a_restarted_replica_adds_only_what_it_counted_after_the_restart() {
    let now = Instant::now();
    let a = addr(1);
    let mut tally = tally_of(&[a]);
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 100, 0, 40, 4)]),
        now,
    );
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 130, 0, 50, 5)]),
        now,
    );
    assert_eq!(seen(&tally.sum("web", Role::Canary)), (10, 1, 10));

    // A new startedAt: the counts began again from zero.
    let restarted = SINCE_MS + 5_000;
    let recorded = record(
        &mut tally,
        a,
        &answer(restarted, &[("web", 3, 0, 2, 2)]),
        now,
    );
    assert_eq!(recorded, Recorded::Restarted);
    assert_eq!(seen(&tally.sum("web", Role::Canary)), (12, 3, 12));
    assert_eq!(seen(&tally.sum("web", Role::Stable)), (33, 0, 33));
    record(
        &mut tally,
        a,
        &answer(restarted, &[("web", 3, 0, 9, 2)]),
        now,
    );
    assert_eq!(seen(&tally.sum("web", Role::Canary)), (19, 3, 19));
}

#[test]
fn counts_going_down_are_a_restart_even_with_the_same_start_time() {
    let now = Instant::now();
    let a = addr(1);
    let mut tally = tally_of(&[a]);
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 0, 0, 40, 0)]),
        now,
    );
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 0, 0, 45, 0)]),
        now,
    );
    let recorded = record(&mut tally, a, &answer(EARLIER, &[("web", 0, 0, 4, 1)]), now);
    assert_eq!(recorded, Recorded::Restarted);
    assert_eq!(seen(&tally.sum("web", Role::Canary)), (5 + 4, 1, 9));
}

#[test]
fn a_silent_replica_keeps_its_counts_and_leaves_the_coverage_after_two_seconds() {
    let start = Instant::now();
    let (a, b, c) = (addr(1), addr(2), addr(3));
    let mut tally = tally_of(&[a, b, c]);
    for peer in [a, b, c] {
        record(
            &mut tally,
            peer,
            &answer(EARLIER, &[("web", 0, 0, 0, 0)]),
            start,
        );
    }
    for (peer, canary) in [(a, 10), (b, 20), (c, 30)] {
        record(
            &mut tally,
            peer,
            &answer(EARLIER, &[("web", 0, 0, canary, 0)]),
            start,
        );
    }
    assert_eq!(tally.sum("web", Role::Canary).requests, 60);

    // c stops answering; a and b go on.
    let later = start + Duration::from_millis(1_500);
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 0, 0, 11, 0)]),
        later,
    );
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 0, 0, 22, 0)]),
        later,
    );
    assert!(
        tally.failed(c, &PeerError::Timeout),
        "the first failure is news"
    );
    assert!(!tally.failed(c, &PeerError::Timeout), "the second is not");
    assert_eq!(
        tally.coverage(start + FRESH_FOR),
        (3, 3),
        "2 s is still fresh"
    );
    let stale = start + FRESH_FOR + Duration::from_millis(1);
    assert_eq!(tally.coverage(stale), (2, 3));
    assert_eq!(tally.sum("web", Role::Canary).requests, 11 + 22 + 30);
    assert_eq!(
        tally.failures.get(&c).map(String::as_str),
        Some("no answer within 200ms")
    );
}

#[test]
fn a_replica_that_leaves_keeps_its_counts_and_comes_back_as_a_new_one() {
    let now = Instant::now();
    let (a, b) = (addr(1), addr(2));
    let mut tally = tally_of(&[a, b]);
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 0, 0, 100, 0)]),
        now,
    );
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 0, 0, 100, 0)]),
        now,
    );
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 0, 0, 107, 0)]),
        now,
    );
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 0, 0, 103, 0)]),
        now,
    );
    tally.failed(b, &PeerError::Timeout);

    tally.set_peers(&[a]);
    assert_eq!(tally.coverage(now), (1, 1));
    assert_eq!(tally.sum("web", Role::Canary).requests, 10);
    assert!(
        tally.failures.is_empty(),
        "failures of peers that left are dropped"
    );
    // An answer from b that was on its way when b left is ignored.
    let late = answer(EARLIER, &[("web", 0, 0, 150, 0)]);
    assert_eq!(record(&mut tally, b, &late, now), Recorded::Ignored);
    assert_eq!(tally.sum("web", Role::Canary).requests, 10);

    // b is back with the same process: its first answer is a new baseline,
    // nothing is counted twice.
    tally.set_peers(&[a, b]);
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 0, 0, 160, 0)]),
        now,
    );
    assert_eq!(tally.sum("web", Role::Canary).requests, 10);
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 0, 0, 161, 0)]),
        now,
    );
    assert_eq!(seen(&tally.sum("web", Role::Canary)), (11, 0, 11));
}

#[test]
fn a_route_missing_from_an_answer_keeps_its_counts_and_is_no_restart() {
    let now = Instant::now();
    let a = addr(1);
    let mut tally = tally_of(&[a]);
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 10, 0, 0, 0), ("api", 5, 0, 0, 0)]),
        now,
    );
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 12, 0, 0, 0), ("api", 9, 0, 0, 0)]),
        now,
    );
    // api removed from that replica's config.
    let recorded = record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 15, 0, 0, 0)]),
        now,
    );
    assert_eq!(recorded, Recorded::Updated);
    assert_eq!(tally.sum("web", Role::Stable).requests, 5);
    assert_eq!(tally.sum("api", Role::Stable).requests, 4);
    // A route first seen later counts from zero: it is new on that replica.
    record(
        &mut tally,
        a,
        &answer(EARLIER, &[("web", 15, 0, 0, 0), ("new", 0, 0, 2, 0)]),
        now,
    );
    assert_eq!(tally.sum("new", Role::Canary).requests, 2);
    assert_eq!(tally.sum("web", Role::Stable).requests, 5);
}

#[test]
fn a_forgotten_route_is_dropped_and_counted_again_only_from_its_return() {
    let now = Instant::now();
    let (a, b, c) = (addr(1), addr(2), addr(3));
    let mut tally = tally_of(&[a, b, c]);
    let both =
        |web: u64, gone: u64| answer(EARLIER, &[("web", web, 0, 0, 0), ("gone", gone, 1, 0, 0)]);
    record(&mut tally, a, &both(10, 100), now);
    record(&mut tally, b, &both(10, 50), now);
    record(&mut tally, a, &both(12, 130), now);
    record(&mut tally, b, &both(11, 60), now);
    // c answered, then left: its counts of `gone` are kept as departed.
    record(
        &mut tally,
        c,
        &answer(SINCE_MS + 1, &[("gone", 7, 0, 0, 0)]),
        now,
    );
    tally.set_peers(&[a, b]);
    assert_eq!(tally.sum("gone", Role::Stable).requests, 30 + 10 + 7);
    // `gone` was deleted: everything counted of it is dropped.
    tally.forget_routes(|route| route == "web");
    assert_eq!(tally.sum("gone", Role::Stable).requests, 0);
    assert!(
        tally
            .peers
            .values()
            .all(|peer| peer.keys().iter().all(|(route, _)| route == "web")),
        "{:?}",
        tally.peers
    );
    assert!(tally.departed.keys().all(|(route, _)| route == "web"));
    assert_eq!(tally.sum("web", Role::Stable).requests, 3);
    // a still has it in its config (its counters ran on): counted only
    // from the answer that names it again, not from its start.
    record(&mut tally, a, &both(13, 140), now);
    assert_eq!(tally.sum("gone", Role::Stable).requests, 0);
    record(&mut tally, a, &both(14, 145), now);
    assert_eq!(tally.sum("gone", Role::Stable).requests, 5);
    // b had dropped it from its config and adds it back later.
    record(
        &mut tally,
        b,
        &answer(EARLIER, &[("web", 12, 0, 0, 0)]),
        now,
    );
    record(&mut tally, b, &both(13, 61), now);
    record(&mut tally, b, &both(13, 64), now);
    assert_eq!(tally.sum("gone", Role::Stable).requests, 5 + 3);
    // A restarted replica counts everything after its restart, as ever.
    record(
        &mut tally,
        b,
        &answer(SINCE_MS + 5, &[("gone", 2, 0, 0, 0)]),
        now,
    );
    assert_eq!(tally.sum("gone", Role::Stable).requests, 5 + 3 + 2);
    assert_eq!(tally.sum("web", Role::Stable).requests, 4 + 3);
}

#[test]
fn an_answer_with_other_latency_slots_is_refused_and_changes_nothing() {
    let now = Instant::now();
    let a = addr(1);
    let mut tally = tally_of(&[a]);
    record(&mut tally, a, &answer(EARLIER, &[("web", 0, 0, 1, 0)]), now);
    record(&mut tally, a, &answer(EARLIER, &[("web", 0, 0, 3, 0)]), now);
    let mut odd = answer(EARLIER, &[("web", 0, 0, 9, 0)]);
    if let Some(web) = odd.routes.get_mut("web") {
        web.canary.latency.push(0);
    }
    let later = now + Duration::from_secs(3);
    let refused = tally.record(a, &odd, later).expect_err("one slot too many");
    tally.failed(a, &PeerError::from(refused));
    assert_eq!(tally.sum("web", Role::Canary).requests, 2);
    assert_eq!(
        tally.coverage(later),
        (0, 1),
        "a refused answer is no answer"
    );
    let why = tally.failures.get(&a).cloned().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "route web, role canary: {} latency slots",
            LATENCY_SLOTS + 1
        )),
        "{why}"
    );
}

#[test]
fn the_sum_never_goes_down_and_counts_every_observed_request() {
    // Seeded: three replicas count, answer or not, restart, leave and come
    // back at random; after every step the sum is at least the one before,
    // and it is exactly what was counted while the replica was watched.
    let mut rng = fastrand::Rng::with_seed(7);
    let peers = [addr(1), addr(2), addr(3)];
    let mut tally = tally_of(&peers);
    let mut now = Instant::now();
    // Per replica: start time, cumulative canary count, and whether it is in the set.
    let mut replicas: Vec<(u64, u64, bool)> = vec![(EARLIER, 1_000, true); 3];
    // What the sum should be: the increments each watched replica showed.
    let mut expected = 0u64;
    // The count of each replica at its last recorded answer, if any since it
    // was (re)discovered or restarted.
    let mut last_seen: BTreeMap<usize, u64> = BTreeMap::new();
    // The processes (replica, start) that were counted and then left.
    let mut left: std::collections::BTreeSet<(usize, u64)> = Default::default();
    let mut previous = 0;
    for step in 0..2_000 {
        let i = rng.usize(0..3);
        now += Duration::from_millis(rng.u64(0..300));
        match rng.u8(0..10) {
            0..=5 => replicas[i].1 += rng.u64(0..20),
            6 => {
                // Restart: counts begin again.
                replicas[i] = (SINCE_MS + step, 0, replicas[i].2);
                last_seen.remove(&i);
            }
            7 => {
                replicas[i].2 = !replicas[i].2;
                if last_seen.remove(&i).is_some() {
                    left.insert((i, replicas[i].0));
                }
                let set: Vec<SocketAddr> = (0..3)
                    .filter(|&j| replicas[j].2)
                    .map(|j| peers[j])
                    .collect();
                tally.set_peers(&set);
            }
            _ => {}
        }
        // Every replica in the set answers most of the time.
        for j in 0..3 {
            if replicas[j].2 && rng.u8(0..4) > 0 {
                let (started, count, _) = replicas[j];
                record(
                    &mut tally,
                    peers[j],
                    &answer(started, &[("web", 0, 0, count, 0)]),
                    now,
                );
                match last_seen.insert(j, count) {
                    Some(before) => expected += count - before,
                    // A process started after counting began counts from
                    // zero, unless it was counted before it left.
                    None if started >= SINCE_MS && !left.contains(&(j, started)) => {
                        expected += count;
                    }
                    None => {}
                }
            }
        }
        let sum = tally.sum("web", Role::Canary).requests;
        assert!(
            sum >= previous,
            "step {step}: the sum went down from {previous} to {sum}"
        );
        assert_eq!(sum, expected, "step {step}");
        previous = sum;
    }
    assert!(
        expected > 1_000,
        "the simulation counted something: {expected}"
    );
}

#[test]
fn judgements_need_two_thirds_of_the_known_replicas() {
    let cases = [
        (0, 0, false),
        (0, 1, false),
        (1, 1, true),
        (1, 2, false),
        (2, 2, true),
        (1, 3, false),
        (2, 3, true),
        (3, 3, true),
        (2, 4, false),
        (3, 4, true),
        (3, 5, false),
        (4, 5, true),
    ];
    for (counted, known, want) in cases {
        assert_eq!(
            enough_coverage(counted, known),
            want,
            "{counted} of {known}"
        );
        assert_eq!(
            replicas_needed(known) <= counted,
            want || known == 0 && counted > 0,
            "need {} of {known}",
            replicas_needed(known)
        );
    }
    assert_eq!(
        messages::too_few_replicas(1, 3),
        "counters from 1 of 3 replicas; need 2"
    );
    assert_eq!(
        messages::too_few_replicas(0, 0),
        "counters from 0 of 0 replicas; need 1"
    );
}
