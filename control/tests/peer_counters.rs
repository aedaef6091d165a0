//! `PeerCounters` over three real `weir run` processes: it sums exactly
//! what each one counted; a replica killed with SIGKILL keeps its last
//! counts in the sum while the coverage drops to 2 of 3; restarted on the
//! same address, it adds only what it counts after the restart. A wrong
//! token is refused by every peer, and each failure says why.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use weir_control::cluster::peers::{PeerCounters, enough_coverage};
use weir_e2e::{FakeUpstream, Route, Weir, WeirConfig, send_many, wait_until, within};
use weir_proxy::Role;

const READER: &str = "reader-77f0c2";
const WRITER: &str = "writer-1aa93e";

/// How long a change may take to show in the sum or the coverage: reads
/// every 250 ms, stale after 2 s; the rest is slack for a busy machine.
const SHOWS_WITHIN: Duration = Duration::from_secs(15);

async fn wait_for_sum(peers: &PeerCounters, want: u64, what: &str) {
    wait_until(SHOWS_WITHIN, what, || async {
        let sum = peers.sum("web", Role::Stable);
        assert!(
            sum.requests <= want,
            "{what}: the sum is {} already, more than {want}",
            sum.requests
        );
        (sum.requests == want).then_some(())
    })
    .await;
    let sum = peers.sum("web", Role::Stable);
    assert_eq!(sum.errors, 0, "{what}");
    assert_eq!(
        sum.latency.iter().sum::<u64>(),
        want,
        "{what}: latency slots"
    );
    assert_eq!(peers.sum("web", Role::Canary).requests, 0, "{what}");
}

async fn wait_for_coverage(peers: &PeerCounters, want: (usize, usize)) {
    let what = format!("coverage {} of {}", want.0, want.1);
    wait_until(SHOWS_WITHIN, &what, || async {
        (peers.coverage() == want).then_some(())
    })
    .await;
}

async fn send(weir: &Weir, n: u64) {
    let what = format!("{n} requests to {}", weir.addrs.http);
    let counts = within(
        Duration::from_secs(20),
        &what,
        send_many(weir.addrs.http, "/", &[], n, 1),
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(weir_e2e::count(&counts, "v1", 200), n, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_three_replicas_through_a_kill_and_a_restart() {
    let v1 = FakeUpstream::start("v1").await;
    let config =
        WeirConfig::new([Route::new("web", &[v1.addr])]).tokens(Some(READER), Some(WRITER));
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Weir::start(config.clone()).await);
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|w| w.addrs.admin).collect();
    let (_set, peer_set) = watch::channel(addrs);
    let peers = PeerCounters::start(peer_set.clone(), Some(READER)).expect("a valid token");
    wait_for_coverage(&peers, (3, 3)).await;
    // A wrong token: every peer refuses, each failure says so.
    let refused =
        PeerCounters::start(peer_set.clone(), Some("not-the-token")).expect("a valid header");
    // A read that timed out on a loaded machine shows as that until the
    // next read: wait for three refusals.
    let failures = wait_until(SHOWS_WITHIN, "three refusals", || async {
        let failures = refused.failures();
        (failures.len() == 3 && failures.iter().all(|(_, why)| why.contains("401")))
            .then_some(failures)
    })
    .await;
    for (addr, why) in &failures {
        assert!(
            why.contains("401") && why.contains("wrong bearer token"),
            "{addr}: {why}"
        );
    }
    assert_eq!(refused.coverage(), (0, 3));
    drop(refused);
    // Counting begins at the first answers.
    wait_for_sum(&peers, 0, "nothing counted yet").await;

    for (weir, n) in replicas.iter().zip([5, 10, 20]) {
        send(weir, n).await;
    }
    wait_for_sum(&peers, 35, "5 + 10 + 20 requests").await;

    // SIGKILL: its 20 requests stay in the sum, its coverage ends.
    replicas[2].kill9();
    wait_for_coverage(&peers, (2, 3)).await;
    let (counted, known) = peers.coverage();
    assert!(enough_coverage(counted, known), "2 of 3 may still judge");
    assert!(
        !peers.failures().is_empty(),
        "the killed replica's failure is known"
    );
    send(&replicas[0], 4).await;
    wait_for_sum(&peers, 39, "4 more on a live replica").await;

    // Restarted on the same address: its counts start from zero, and even
    // those counted before its first read are added once.
    replicas[2].restart().await;
    send(&replicas[2], 6).await;
    wait_for_coverage(&peers, (3, 3)).await;
    wait_for_sum(&peers, 45, "6 requests after the restart").await;
    send(&replicas[1], 1).await;
    wait_for_sum(&peers, 46, "one more after the restart").await;
    wait_until(SHOWS_WITHIN, "no failure left", || async {
        peers.failures().is_empty().then_some(())
    })
    .await;
}
