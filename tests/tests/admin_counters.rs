//! `GET /api/v1/counters` through real curl on a real weir: the reader and
//! writer tokens read it, no token or a wrong one is 401 and another method
//! 405, each with a JSON error; the answer names the replica (`POD_NAME`),
//! its start time and each route's cumulative counts per role, 502s
//! counted as errors.

use std::time::Duration;

use weir_e2e::{ClosedPort, FakeUpstream, Route, Weir, WeirConfig, send_many, unix_ms, wait_until};

const READER: &str = "reader-41c7aa";
const WRITER: &str = "writer-0be913";

/// Latency slots in a counters answer: 381 bounds (100 µs to 60 s, each at
/// most 5 % above the one before) and one above.
const LATENCY_SLOTS: usize = 382;

/// Runs curl with `args`; returns (status, body).
async fn curl(args: &[&str]) -> (u16, String) {
    let (body, code) = weir_e2e::curl(args, "%{http_code}").await;
    (code.parse().expect("an HTTP status"), body)
}

/// The `error` message of a JSON error body.
fn error_of(body: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not a JSON error body ({e}): {body}"));
    json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {json}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_answer_the_replica_and_its_counts_per_route_and_role() {
    let v1 = FakeUpstream::start("v1").await;
    let v2 = FakeUpstream::start("v2").await;
    let before_start = unix_ms();
    let broken = ClosedPort::bind();
    let config = WeirConfig::new([
        Route::new("web", &[v1.addr])
            .canary(&[v2.addr], 0.0)
            .canary_by_header("x-canary", "always"),
        // Nothing listens there: every request is a 502 of the canary.
        Route::new("broken", &[v1.addr])
            .path_prefix("/broken")
            .canary(&[broken.addr], 100.0),
    ])
    .tokens(Some(READER), Some(WRITER))
    .env("POD_NAME", "weir-e2e-0");
    let weir = Weir::start(config).await;
    let after_start = unix_ms();
    let url = format!("http://{}/api/v1/counters", weir.addrs.admin);

    let reader = format!("Authorization: Bearer {READER}");
    let writer = format!("Authorization: Bearer {WRITER}");
    for (args, want) in [
        (vec![url.as_str()], 401),
        (vec!["-H", "Authorization: Bearer nope", url.as_str()], 401),
        (vec!["-X", "POST", "-H", writer.as_str(), url.as_str()], 405),
        (
            vec!["-X", "DELETE", "-H", reader.as_str(), url.as_str()],
            405,
        ),
    ] {
        let (status, body) = curl(&args).await;
        assert_eq!(status, want, "curl {args:?}: {body}");
        assert!(!error_of(&body).is_empty(), "curl {args:?}: {body}");
    }

    send_many(weir.addrs.http, "/", &[], 7, 2)
        .await
        .expect("stable traffic");
    send_many(weir.addrs.http, "/", &[("x-canary", "always")], 3, 1)
        .await
        .expect("canary traffic");
    send_many(weir.addrs.http, "/broken", &[], 4, 1)
        .await
        .expect("traffic to a canary that is down");

    // Counted when each response ends, so poll until the last one is in.
    let read = |token: &'static str| {
        let url = url.clone();
        async move {
            let auth = format!("Authorization: Bearer {token}");
            let (status, body) = curl(&["-H", &auth, &url]).await;
            assert_eq!(status, 200, "GET /api/v1/counters: {body}");
            serde_json::from_str::<serde_json::Value>(&body).expect("JSON")
        }
    };
    let counters = wait_until(
        Duration::from_secs(10),
        "all 14 requests counted",
        || async {
            let counters = read(READER).await;
            let routes = &counters["routes"];
            let total: u64 = ["web", "broken"]
                .iter()
                .flat_map(|r| ["stable", "canary"].map(|role| routes[r][role]["requests"].as_u64()))
                .map(|n| n.unwrap_or(0))
                .sum();
            (total == 14).then_some(counters)
        },
    )
    .await;

    assert_eq!(counters["replica"], "weir-e2e-0");
    let started_at = counters["startedAt"].as_u64().expect("startedAt");
    assert!(
        (before_start..=after_start).contains(&started_at),
        "startedAt {started_at} is not between {before_start} and {after_start}"
    );
    let role = |route: &str, role: &str| {
        let counts = &counters["routes"][route][role];
        let latency: Vec<u64> = counts["latency"]
            .as_array()
            .expect("latency slots")
            .iter()
            .map(|n| n.as_u64().expect("a count"))
            .collect();
        // The run of slots counted in, from `latencyFrom`, within the slots.
        let from = counts["latencyFrom"].as_u64().expect("latencyFrom");
        assert!(
            usize::try_from(from).expect("small") + latency.len() <= LATENCY_SLOTS,
            "{counts}"
        );
        (
            counts["requests"].as_u64().expect("requests"),
            counts["errors"].as_u64().expect("errors"),
            latency.iter().sum::<u64>(),
        )
    };
    assert_eq!(role("web", "stable"), (7, 0, 7));
    assert_eq!(role("web", "canary"), (3, 0, 3));
    assert_eq!(role("broken", "canary"), (4, 4, 4));
    assert_eq!(role("broken", "stable"), (0, 0, 0));

    // The writer token reads it too, and the answer is the same.
    assert_eq!(read(WRITER).await, counters);
}
