//! The `weir` CLI against a replica that does not lead (SPEC sections 8
//! and 10): `weir status` lists the CanaryRoute with its leader and the
//! coverage of the counters, `weir abort` writes the status input that the
//! leader acts on and every replica follows, `weir retry` starts the steps
//! again. Three `weir run` replicas against the test API server, with
//! admin tokens, as an operator would run the CLI.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{
    Cluster, FakeUpstream, WeirConfig, count, replica_name, send_many, wait_until, weir_command,
};

const NAMESPACE: &str = "shop";
const NAME: &str = "checkout";
/// The CanaryRoute's route name, as the CLI takes it.
const ROUTE: &str = "shop/checkout";

const READER: &str = "cluster-reader-7c1e";
const WRITER: &str = "cluster-writer-2f9a";

/// The first status the leader writes after the replicas start.
const START_LIMIT: Duration = Duration::from_secs(20);

/// From a command to the state every replica serves. SPEC: the leader acts
/// within 1 s and every replica applies a status within 1 s; slack for a
/// loaded 2-core machine.
const FOLLOW_LIMIT: Duration = Duration::from_secs(10);

/// Answers in a row that must all come from stable.
const IN_A_ROW: u64 = 20;

/// Runs `weir ARGS --admin http://ADMIN` with `WEIR_TOKEN` = `token`.
async fn cli(admin: SocketAddr, args: &[&str], token: &str) -> Output {
    let mut command = tokio::process::Command::from(weir_command());
    command
        .args(args)
        .args(["--admin", &format!("http://{admin}")])
        .env("WEIR_TOKEN", token)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish within 20 s"))
        .expect("running weir")
}

fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn expect_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: {}",
        shown(output)
    );
}

/// The entry of `shop/checkout` in `weir status --json`'s array.
fn checkout_of(output: &Output) -> Option<Value> {
    let routes: Value = serde_json::from_slice(&output.stdout).ok()?;
    routes
        .as_array()?
        .iter()
        .find(|r| r["name"] == ROUTE)
        .cloned()
}

/// Waits until [`IN_A_ROW`] answers in a row from replica `i` come from
/// `upstream` with 200.
async fn wait_serving_only(cluster: &Cluster, i: usize, upstream: &str) {
    let what = format!("{} to answer only from {upstream}", replica_name(i));
    wait_until(FOLLOW_LIMIT, &what, || async {
        let counts = send_many(cluster.replica(i).addrs.http, "/", &[], IN_A_ROW, 2)
            .await
            .ok()?;
        (count(&counts, upstream, 200) == IN_A_ROW).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_against_a_replica_that_does_not_lead_shows_aborts_and_retries_a_canary_route() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let base = WeirConfig::default().tokens(Some(READER), Some(WRITER));
    let cluster = Cluster::start_with(3, base, "").await;
    cluster.add_checkout_services(NAMESPACE, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        NAME,
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        }),
    );
    let paused_at_the_pause =
        |s: &Value| s["phase"] == "Paused" && s["stepIndex"] == 1 && s["canaryWeight"] == 50.0;
    let status = cluster
        .wait_status(NAMESPACE, NAME, START_LIMIT, "Paused at step 1", |s| {
            paused_at_the_pause(s)
        })
        .await;
    let leader = cluster.wait_leader(START_LIMIT).await;
    assert_eq!(status["leader"], replica_name(leader), "{status:#}");
    let follower = (leader + 1) % cluster.len();
    let admin = cluster.replica(follower).addrs.admin;

    // weir status --json on the follower: the CanaryRoute beside the file
    // routes, with the leader and the coverage of the counters once the
    // follower has read every replica's.
    // The follower learns the phase from the CanaryRoute's status through
    // its watch, which may come a little after the leader wrote it.
    let listed = wait_until(
        START_LIMIT,
        "the status to count 3/3 replicas and show the pause",
        || async {
            let output = cli(admin, &["status", "--json"], READER).await;
            expect_exit(&output, 0, "weir status --json");
            checkout_of(&output)
                .filter(|route| route["coverage"] == "3/3" && route["phase"] == "Paused")
        },
    )
    .await;
    assert_eq!(listed["leader"], replica_name(leader), "{listed:#}");
    assert_eq!(listed["phase"], "Paused", "{listed:#}");
    let text = cli(admin, &["status", ROUTE], READER).await;
    expect_exit(&text, 0, "weir status shop/checkout");
    let expected = format!(
        "leader {}, counters from 3/3 replicas",
        replica_name(leader)
    );
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&expected),
        "{}",
        shown(&text)
    );

    // weir abort on the follower: the leader acts, every replica serves
    // stable only.
    let aborted = cli(admin, &["abort", ROUTE], WRITER).await;
    expect_exit(&aborted, 0, "weir abort shop/checkout");
    let said = String::from_utf8_lossy(&aborted.stdout);
    assert!(
        said.starts_with("shop/checkout: Aborted"),
        "{}",
        shown(&aborted)
    );
    let status = cluster
        .wait_status(NAMESPACE, NAME, FOLLOW_LIMIT, "Aborted", |s| {
            s["phase"] == "Aborted" && s["canaryWeight"] == 0.0
        })
        .await;
    assert_eq!(status["leader"], replica_name(leader), "{status:#}");
    for i in 0..cluster.len() {
        wait_serving_only(&cluster, i, "v1").await;
    }

    // Once more: Aborted already, refused (409) as for a file route.
    let again = cli(admin, &["abort", ROUTE], WRITER).await;
    expect_exit(&again, 3, "a second abort");
    // The reader token cannot command.
    let reader = cli(admin, &["retry", ROUTE], READER).await;
    expect_exit(&reader, 5, "retry with the reader token");

    // weir retry on the follower: the steps start again and come back to
    // the pause, at 50 %.
    let retried = cli(admin, &["retry", ROUTE], WRITER).await;
    expect_exit(&retried, 0, "weir retry shop/checkout");
    assert!(
        !String::from_utf8_lossy(&retried.stdout).contains("Aborted"),
        "{}",
        shown(&retried)
    );
    let status = cluster
        .wait_status(
            NAMESPACE,
            NAME,
            FOLLOW_LIMIT,
            "Paused at step 1 again",
            |s| paused_at_the_pause(s) && s["abort"] != true,
        )
        .await;
    assert_eq!(status["leader"], replica_name(leader), "{status:#}");
    wait_until(FOLLOW_LIMIT, "the follower to serve both roles", || async {
        let counts = send_many(cluster.replica(follower).addrs.http, "/", &[], 40, 2)
            .await
            .ok()?;
        (count(&counts, "v1", 200) > 0 && count(&counts, "v2", 200) > 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_routes_by_the_leaders_status_and_never_writes() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let base = WeirConfig::default().tokens(Some(READER), Some(WRITER));
    let mut cluster = Cluster::start_with(1, base.clone(), "").await;
    let sidecar = cluster.start_follower(base).await;
    cluster.add_checkout_services(NAMESPACE, v1.addr, v2.addr);
    cluster.apply_canary_route(
        NAMESPACE,
        NAME,
        json!({
            "pathPrefix": "/",
            "stable": {"revision": "v1", "service": {"name": "checkout-v1", "port": 80}},
            "canary": {"revision": "v2", "service": {"name": "checkout-v2", "port": 80}},
            "strategy": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        }),
    );
    cluster
        .wait_status(NAMESPACE, NAME, START_LIMIT, "Paused at step 1", |s| {
            s["phase"] == "Paused" && s["stepIndex"] == 1 && s["canaryWeight"] == 50.0
        })
        .await;
    assert_eq!(
        cluster.wait_leader(START_LIMIT).await,
        0,
        "the candidate leads"
    );

    // The follower splits by the leader's status.
    wait_until(FOLLOW_LIMIT, "the follower to serve both roles", || async {
        let counts = send_many(cluster.replica(sidecar).addrs.http, "/", &[], 40, 2)
            .await
            .ok()?;
        (count(&counts, "v1", 200) > 0 && count(&counts, "v2", 200) > 0).then_some(())
    })
    .await;

    // A command sent to the follower is refused: it never writes status.
    let admin = cluster.replica(sidecar).addrs.admin;
    let refused = cli(admin, &["abort", ROUTE], WRITER).await;
    expect_exit(&refused, 3, "weir abort on a follower");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("follower"),
        "{}",
        shown(&refused)
    );
    let status = cluster.status(NAMESPACE, NAME);
    assert_eq!(status["phase"], "Paused", "nothing was written: {status:#}");

    // The leader acts on a status input written with kubectl; the follower
    // follows, and it never took the Lease.
    cluster
        .patch_status(NAMESPACE, NAME, json!({"status": {"promote": true}}))
        .await;
    wait_serving_only(&cluster, sidecar, "v2").await;
    assert_eq!(cluster.leader(), Some(0));
    assert_eq!(cluster.status(NAMESPACE, NAME)["leader"], replica_name(0));
}
