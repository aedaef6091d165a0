//! Request ids and request logging: each request goes upstream with an
//! `x-request-id` (the client's, or a new one), and a failed upstream
//! request is logged as a warning that names its route, role and request id;
//! the startup log names each listener and the admin API by its address.

use std::collections::BTreeSet;
use std::time::Duration;

use weir_e2e::{
    ClosedPort, Conn, FakeUpstream, ForwardingPath, Route, Weir, WeirConfig, wait_until, within,
};

/// The `x-request-id` the upstream received for a request with `headers`.
async fn id_upstream_got(weir: &Weir, headers: &[(&str, &str)]) -> String {
    let mut conn = Conn::open(weir.addrs.http).await.expect("connect");
    let response = within(
        Duration::from_secs(10),
        "the headers the upstream got",
        conn.get("/__upstream/headers", headers),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.json();
    seen["x-request-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no x-request-id upstream: {seen}"))
        .to_owned()
}

fn is_uuid_v4(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && groups[2].starts_with('4')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_clients_request_id_or_a_new_one() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;

    let kept = id_upstream_got(&weir, &[("x-request-id", "client-chosen-17")]).await;
    assert_eq!(kept, "client-chosen-17");

    let mut made = BTreeSet::new();
    for headers in [&[][..], &[][..], &[("x-request-id", "")][..]] {
        let id = id_upstream_got(&weir, headers).await;
        assert!(is_uuid_v4(&id), "a new request id is a UUID: {id:?}");
        made.insert(id);
    }
    assert_eq!(made.len(), 3, "every new request id differs: {made:?}");
}

/// A client's `x-request-id` that its `Connection` header names is
/// hop-by-hop: replaced by a new one, which goes upstream, on both
/// forwarding paths (hyper's removed it and sent none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_by_hop_request_id_is_replaced_on_both_paths() {
    let stable = FakeUpstream::start("stable").await;
    for path in [ForwardingPath::Own, ForwardingPath::Hyper] {
        let weir = path
            .start_weir(WeirConfig::new([Route::new("web", &[stable.addr])]))
            .await;
        let id = id_upstream_got(
            &weir,
            &[("connection", "x-request-id"), ("x-request-id", "abc")],
        )
        .await;
        assert!(is_uuid_v4(&id), "{path:?}: {id:?}");
    }
}

/// The JSON log lines of `weir` at `level` whose message is `message`.
fn log_lines(weir: &Weir, level: &str, message: &str) -> Vec<serde_json::Value> {
    weir.log()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["level"] == level && line["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upstream_request_is_a_warning_naming_its_route_and_request_id() {
    // Held bound, never listening: every connection is refused.
    let dead = ClosedPort::bind();
    // At the default level the request span is off and the warning makes
    // its own; at debug level it is logged in the request's span.
    for rust_log in ["info", "debug"] {
        let weir = Weir::start(
            WeirConfig::new([Route::new("web", &[dead.addr]).timeouts("1s", "5s")])
                .env("RUST_LOG", rust_log)
                .log_json(),
        )
        .await;
        let mut conn = Conn::open(weir.addrs.http).await.expect("connect");
        let response = within(
            Duration::from_secs(10),
            "an answer from a dead upstream",
            conn.get("/orders", &[("x-request-id", "req-dead-1")]),
        )
        .await
        .expect("an answer");
        assert_eq!(response.status, 502, "{}", response.text());

        let line = wait_until(
            Duration::from_secs(10),
            "a warning about the failed request",
            || async {
                log_lines(&weir, "WARN", "upstream failed")
                    .into_iter()
                    .find(|line| line["span"]["request_id"] == "req-dead-1")
            },
        )
        .await;
        let span = &line["span"];
        assert_eq!(span["name"], "request", "RUST_LOG={rust_log}: {line}");
        assert_eq!(span["route"], "web", "RUST_LOG={rust_log}: {line}");
        assert_eq!(span["role"], "stable", "RUST_LOG={rust_log}: {line}");
        assert_eq!(span["method"], "GET", "RUST_LOG={rust_log}: {line}");
        assert_eq!(span["path"], "/orders", "RUST_LOG={rust_log}: {line}");
        assert_eq!(line["status"], 502, "RUST_LOG={rust_log}: {line}");
        if rust_log == "debug" {
            // The request's span sits in its connection's.
            let spans = line["spans"].as_array().cloned().unwrap_or_default();
            assert!(
                spans
                    .iter()
                    .any(|s| s["name"] == "connection" && s["listener"] == "plain"),
                "{line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_log_names_each_address_as_written() {
    let stable = FakeUpstream::start("stable").await;
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[stable.addr])])).await;
    let log = weir.log();
    for line in [
        format!("address={}", weir.addrs.http),
        format!("admin API listening address={}", weir.addrs.admin),
    ] {
        assert!(log.contains(&line), "no `{line}` in the log:\n{log}");
    }
    assert!(!log.contains("Some("), "a Rust Option in the log:\n{log}");
}
