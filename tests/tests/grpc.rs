//! gRPC end to end: an HTTP/2 client calls through weir's plain listener
//! (h2c) to gRPC upstreams spoken to with `protocol: h2c` or `protocol: h2`
//! (TLS with a CA made here): unary and streaming calls, trailers as the
//! upstream sent them, deadlines, gRPC statuses counted per role in the
//! metrics and the analysis, a rollout aborted on a canary's INTERNALs,
//! and `stableFallback` on gRPC calls.

use std::time::Duration;

use weir_e2e::grpc::{
    BIG_HEAD, BREAK, Failure, GrpcClient, GrpcUpstream, HANG, STALL, STREAM, UNARY,
};
use weir_e2e::{
    ClosedPort, FakeUpstream, Route, Step, Strategy, Weir, WeirConfig, phase, promtool_check,
    wait_until, within,
};

const CALL_LIMIT: Duration = Duration::from_secs(10);

/// A request body of gRPC messages streamed as a test makes them.
type StreamedMessages = http_body_util::StreamBody<
    futures_util::stream::BoxStream<
        'static,
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >,
>;

/// An HTTP/2 connection (prior knowledge) to `addr`, for calls whose
/// request stream a test drives.
async fn h2_connection(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<StreamedMessages> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

/// A call of `HANG` through `addr` whose request stream is one message,
/// then left open when `left_open`, else ended.
fn hang_call(addr: std::net::SocketAddr, left_open: bool) -> http::Request<StreamedMessages> {
    use futures_util::StreamExt as _;

    let message = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(weir_e2e::grpc::frame(b"x")))
    });
    let messages = if left_open {
        message.chain(futures_util::stream::pending()).boxed()
    } else {
        message.boxed()
    };
    http::Request::post(format!("http://{addr}{HANG}"))
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(http_body_util::StreamBody::new(messages))
        .expect("a request")
}

/// `protocol: h2c` on `stable`.
fn h2c_route(name: &str, upstream: &GrpcUpstream) -> Route {
    Route::new(name, &[upstream.addr]).stable_key("protocol: h2c")
}

/// The per-role counters the analysis reads, from `/api/v1/counters`:
/// (requests, errors).
async fn counters(weir: &Weir, route: &str, role: &str) -> (u64, u64) {
    let response = weir
        .admin()
        .get("/api/v1/counters")
        .await
        .expect("GET /api/v1/counters");
    let json = response.json();
    let counts = &json["routes"][route][role];
    (
        counts["requests"].as_u64().unwrap_or(0),
        counts["errors"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_passes_through_h2c_with_its_trailers_intact() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;

    let reply = within(
        CALL_LIMIT,
        "a unary call",
        client.call(UNARY, b"hello", &[("x-request-tag", "a1")]),
    )
    .await;
    assert_eq!(reply.http_status, 200, "{reply:?}");
    assert_eq!(reply.messages, [&b"hello"[..]], "{reply:?}");
    assert!(
        reply.trailers.is_some(),
        "the status came in trailers: {reply:?}"
    );
    assert_eq!(reply.status(), Some(0), "{reply:?}");
    assert_eq!(reply.trailer("grpc-message"), Some("served by v1"));
    assert_eq!(reply.trailer("x-upstream-name"), Some("v1"));
    assert_eq!(
        upstream.te_trailers(),
        1,
        "`te: trailers` reached the upstream"
    );

    // Plain HTTP/1.1 through the same route reaches the h2c upstream too.
    let (body, code) = weir_e2e::curl(&[&weir.url("/plain")], "%{http_code}").await;
    assert_eq!((body.as_str(), code.as_str()), ("v1\n", "200"));

    let m = weir.metrics().await;
    let ok = [
        ("route", "grpc"),
        ("role", "stable"),
        ("code", "200"),
        ("grpc_code", "OK"),
    ];
    assert_eq!(
        m.get("weir_http_requests_total", &ok),
        Some(1.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.sum(
            "weir_http_requests_total",
            &[("route", "grpc"), ("role", "stable"), ("code", "200")]
        ),
        2.0,
        "the gRPC call and the plain request: {}",
        m.text
    );
    // One connection carried both: HTTP/2 to the upstream is multiplexed.
    assert_eq!(upstream.connections(), 1);
    // Series with and without `grpc_code` side by side pass promtool.
    promtool_check(&m.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_sends_goaway_gets_a_new_connection() {
    // Each upstream connection is closed gracefully after two calls.
    let upstream = GrpcUpstream::h2c_with_goaway("v1", 2).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    for i in 0..6u64 {
        let reply = within(CALL_LIMIT, "a call", client.call(UNARY, b"x", &[])).await;
        assert_eq!(
            reply.status(),
            Some(0),
            "call {i}: {reply:?}\n{}",
            weir.log()
        );
        if i % 2 == 1 {
            // A call racing the GOAWAY on the wire would fail (see README);
            // the next one goes once the old connection is gone.
            let closed = i.div_ceil(2);
            wait_until(CALL_LIMIT, "the upstream closed its connection", || async {
                (upstream.closed() >= closed).then_some(())
            })
            .await;
        }
    }
    assert_eq!(upstream.calls(), 6);
    assert!(
        upstream.connections() >= 3,
        "{} connections for 6 calls, 2 per connection",
        upstream.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_from_the_canary_counts_as_a_canary_error() {
    canary_failures_are_counted(14, true, "UNAVAILABLE").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_past_16_from_the_canary_counts_as_unknown_and_an_error() {
    canary_failures_are_counted(42, false, "UNKNOWN").await;
}

/// Three calls to a canary that fails each with `status` (in the head when
/// `trailers_only`, else in the trailers) pass the status through, are in
/// the metrics as `grpc_code` = `name`, and are errors of the canary.
async fn canary_failures_are_counted(status: u8, trailers_only: bool, name: &str) {
    let stable = GrpcUpstream::h2c("v1", None).await;
    let failure = Failure {
        every: 1,
        status,
        trailers_only,
    };
    let canary = GrpcUpstream::h2c("v2", Some(failure)).await;
    let route = h2c_route("grpc", &stable)
        .canary(&[canary.addr], 100.0)
        .canary_key("protocol: h2c");
    let weir = Weir::start(WeirConfig::new([route])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;

    for _ in 0..3 {
        let reply = within(CALL_LIMIT, "a call", client.call(UNARY, b"x", &[])).await;
        assert_eq!(reply.http_status, 200, "{reply:?}");
        assert_eq!(reply.status(), Some(status), "{reply:?}");
        assert_eq!(reply.trailer("grpc-message"), Some("injected failure"));
    }
    assert_eq!(canary.calls(), 3);
    assert_eq!(stable.calls(), 0);

    let m = weir.metrics().await;
    let labels = [
        ("route", "grpc"),
        ("role", "canary"),
        ("code", "200"),
        ("grpc_code", name),
    ];
    assert_eq!(
        m.get("weir_http_requests_total", &labels),
        Some(3.0),
        "{}",
        m.text
    );
    assert_eq!(counters(&weir, "grpc", "canary").await, (3, 3));
}

/// A call whose answer breaks after its head (the upstream resets the
/// stream) is one request and one error of its role, as a broken plain
/// answer is: a canary that crashes mid-answer is judged on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_answer_breaks_after_its_head_counts_as_an_error() {
    let stable = GrpcUpstream::h2c("v1", None).await;
    let canary = GrpcUpstream::h2c("v2", None).await;
    let route = h2c_route("grpc", &stable)
        .canary(&[canary.addr], 100.0)
        .canary_key("protocol: h2c");
    let weir = Weir::start(WeirConfig::new([route])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    for _ in 0..3 {
        let _ = within(CALL_LIMIT, "a call", client.try_call(BREAK, b"x", &[])).await;
    }
    assert_eq!(canary.calls(), 3);
    let m = weir_e2e::wait_until(CALL_LIMIT, "three counted calls", || async {
        let m = weir.metrics().await;
        (m.sum(
            "weir_http_requests_total",
            &[("route", "grpc"), ("role", "canary")],
        ) == 3.0)
            .then_some(m)
    })
    .await;
    assert_eq!(
        m.sum(
            "weir_upstream_errors_total",
            &[("route", "grpc"), ("role", "canary"), ("kind", "protocol")]
        ),
        3.0,
        "{}",
        m.text
    );
    // Ended without a status: UNKNOWN, as its client sees it.
    assert_eq!(
        m.sum(
            "weir_http_requests_total",
            &[
                ("route", "grpc"),
                ("role", "canary"),
                ("grpc_code", "UNKNOWN")
            ]
        ),
        3.0,
        "{}",
        m.text
    );
    assert_eq!(counters(&weir, "grpc", "canary").await, (3, 3));
}

/// SPEC 3: an unreachable upstream and weir's own timeout are errors of
/// the role whatever `grpcErrorCodes` lists; a deadline the client chose
/// (its `grpc-timeout`, shorter than the route's) is counted by the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weirs_own_failures_are_errors_whatever_the_grpc_error_codes() {
    let stable = GrpcUpstream::h2c("v1", None).await;
    let canary = GrpcUpstream::h2c("v2", None).await;
    let dead = ClosedPort::bind();
    let strategy = || {
        Strategy::unjudged([Step::SetWeight(100.0), Step::Pause(None)])
            .background("grpcErrorCodes: [NOT_FOUND]")
    };
    let unreachable = h2c_route("dead", &stable)
        .hosts(&["dead.test"])
        .canary(&[dead.addr], 0.0)
        .canary_key("protocol: h2c")
        .strategy(strategy());
    let slow = h2c_route("slow", &stable)
        .hosts(&["slow.test"])
        .canary(&[canary.addr], 0.0)
        .canary_key("protocol: h2c")
        .timeouts("1s", "700ms")
        .strategy(strategy());
    let weir = Weir::start(WeirConfig::new([unreachable, slow])).await;

    let client = GrpcClient::h2c_with_authority(weir.addrs.http, "dead.test").await;
    for _ in 0..2 {
        let reply = within(CALL_LIMIT, "a call", client.call(UNARY, b"x", &[])).await;
        assert_eq!(reply.status(), Some(14), "{reply:?}");
    }
    assert_eq!(counters(&weir, "dead", "canary").await, (2, 2));

    let client = GrpcClient::h2c_with_authority(weir.addrs.http, "slow.test").await;
    let reply = within(
        CALL_LIMIT,
        "a call past its own deadline",
        client.call(HANG, b"x", &[("grpc-timeout", "200m")]),
    )
    .await;
    assert_eq!(reply.status(), Some(4), "{reply:?}");
    assert_eq!(
        counters(&weir, "slow", "canary").await,
        (1, 0),
        "the client's deadline, DEADLINE_EXCEEDED not listed"
    );
    let reply = within(
        CALL_LIMIT,
        "a call past the route's timeout",
        client.call(HANG, b"x", &[]),
    )
    .await;
    assert_eq!(reply.status(), Some(4), "{reply:?}");
    assert_eq!(
        counters(&weir, "slow", "canary").await,
        (2, 1),
        "weir's own timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_streaming_call_of_1000_messages_arrives_whole() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;

    let reply = within(
        CALL_LIMIT,
        "1,000 streamed messages",
        client.call(STREAM, &1000u32.to_be_bytes(), &[]),
    )
    .await;
    assert_eq!(reply.messages.len(), 1000);
    for (i, message) in (0u32..).zip(&reply.messages) {
        assert_eq!(&message[..], &i.to_be_bytes()[..], "message {i}");
    }
    assert_eq!(reply.status(), Some(0));
    assert_eq!(reply.trailer("grpc-message"), Some("served by v1"));
    assert_eq!(counters(&weir, "grpc", "stable").await, (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shorter_of_grpc_timeout_and_the_route_timeout_ends_a_call_with_deadline_exceeded() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([
        // The client's deadline is the shorter one here...
        h2c_route("client-deadline", &upstream).path_prefix("/weir.test.Echo"),
        // ...and the route's here (a path of its own on the same upstream).
        h2c_route("route-deadline", &upstream)
            .path_prefix("/weir.test.Echo/Hang")
            .hosts(&["short.test"])
            .timeouts("1s", "300ms"),
    ]))
    .await;
    let client = GrpcClient::h2c(weir.addrs.http).await;

    let reply = within(
        CALL_LIMIT,
        "a call past its grpc-timeout",
        client.call(HANG, b"x", &[("grpc-timeout", "200m")]),
    )
    .await;
    assert_eq!(reply.http_status, 200, "{reply:?}");
    assert_eq!(reply.status(), Some(4), "DEADLINE_EXCEEDED: {reply:?}");
    assert!(reply.trailers.is_none(), "trailers-only: {reply:?}");
    assert_eq!(
        reply.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/grpc"[..])
    );

    // The route's 300 ms beat the client's 10 s.
    let short = GrpcClient::h2c_with_authority(weir.addrs.http, "short.test").await;
    let reply = within(
        CALL_LIMIT,
        "a call past the route timeout",
        short.call(HANG, b"x", &[("grpc-timeout", "10S")]),
    )
    .await;
    assert_eq!(reply.status(), Some(4), "{reply:?}");

    let m = weir.metrics().await;
    for route in ["client-deadline", "route-deadline"] {
        let labels = [
            ("route", route),
            ("role", "stable"),
            ("grpc_code", "DEADLINE_EXCEEDED"),
        ];
        assert!(
            m.sum("weir_http_requests_total", &labels) >= 1.0,
            "{route}: {}",
            m.text
        );
        assert!(
            m.sum(
                "weir_upstream_errors_total",
                &[("route", route), ("kind", "timeout")]
            ) >= 1.0,
            "{route}: {}",
            m.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weirs_own_502_reaches_a_grpc_client_as_unavailable_in_a_trailers_only_answer() {
    // Nothing listens there: every call is weir's own 502.
    let closed = ClosedPort::bind();
    let weir = Weir::start(WeirConfig::new([
        Route::new("down", &[closed.addr]).stable_key("protocol: h2c")
    ]))
    .await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    let reply = within(
        CALL_LIMIT,
        "a call to an unreachable upstream",
        client.call(UNARY, b"x", &[]),
    )
    .await;
    assert_eq!(reply.http_status, 200, "{reply:?}");
    assert_eq!(reply.status(), Some(14), "UNAVAILABLE: {reply:?}");
    assert!(reply.trailers.is_none(), "trailers-only: {reply:?}");
    assert!(reply.messages.is_empty(), "{reply:?}");
    assert_eq!(
        reply.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/grpc"[..])
    );
    assert_eq!(
        reply.trailer("grpc-message"),
        Some("upstream unreachable (route down, stable)"),
        "{reply:?}"
    );

    // A plain HTTP client still gets the 502.
    let (_, code) = weir_e2e::curl(&[&weir.url("/")], "%{http_code}").await;
    assert_eq!(code, "502");

    let m = weir.metrics().await;
    let grpc = [
        ("route", "down"),
        ("role", "stable"),
        ("code", "200"),
        ("grpc_code", "UNAVAILABLE"),
    ];
    assert_eq!(m.sum("weir_http_requests_total", &grpc), 1.0, "{}", m.text);
    let plain = [("route", "down"), ("code", "502")];
    assert_eq!(m.sum("weir_http_requests_total", &plain), 1.0, "{}", m.text);
    assert_eq!(
        m.sum(
            "weir_upstream_errors_total",
            &[("route", "down"), ("kind", "connect")]
        ),
        2.0,
        "{}",
        m.text
    );
    // Both count as errors of the role for the analysis.
    assert_eq!(counters(&weir, "down", "stable").await, (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_grpc_canary_fails_a_fifth_of_its_calls_is_aborted() {
    let stable = GrpcUpstream::h2c("v1", None).await;
    let internal = Failure {
        every: 5,
        status: 13,
        trailers_only: false,
    };
    let canary = GrpcUpstream::h2c("v2", Some(internal)).await;
    let strategy = Strategy::judged([Step::SetWeight(50.0), Step::Pause(None)]);
    let route = Route::rollout("grpc", &[stable.addr], &[canary.addr], strategy)
        .stable_key("protocol: h2c")
        .canary_key("protocol: h2c");
    let weir = Weir::start(WeirConfig::new([route])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;

    let status = wait_until(Duration::from_secs(30), "the rollout aborted", || async {
        let calls = (0..20).map(|_| client.call(UNARY, b"x", &[]));
        let replies = within(
            CALL_LIMIT,
            "20 calls",
            futures_util::future::join_all(calls),
        )
        .await;
        for reply in &replies {
            assert!(matches!(reply.status(), Some(0 | 13)), "{reply:?}");
        }
        let s = weir.status("grpc").await;
        (phase(&s) == "Aborted").then_some(s)
    })
    .await;
    assert_eq!(status["analysis"]["verdict"], "fail", "{status:#}");
    assert!(canary.calls() >= 5, "the canary failed at least once");

    let m = weir.metrics().await;
    let internal = [
        ("route", "grpc"),
        ("role", "canary"),
        ("grpc_code", "INTERNAL"),
    ];
    assert!(
        m.sum("weir_http_requests_total", &internal) >= 1.0,
        "{}",
        m.text
    );
    let stable_errors = [
        ("route", "grpc"),
        ("role", "stable"),
        ("grpc_code", "INTERNAL"),
    ];
    assert_eq!(m.sum("weir_http_requests_total", &stable_errors), 0.0);
}

/// Unary calls per second through weir and straight to the upstream, in
/// the same run; prints both (a figure to compare, not a bound: run with
/// `--ignored --nocapture`, preferably on an idle machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn grpc_unary_calls_per_second_through_weir_and_direct() {
    const CALLS: usize = 4_000;
    const CONCURRENCY: usize = 16;
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;

    async fn rate(client: GrpcClient) -> f64 {
        // Warm the connections first.
        client.call(UNARY, b"warm", &[]).await;
        let started = std::time::Instant::now();
        let workers = (0..CONCURRENCY).map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..CALLS / CONCURRENCY {
                    let reply = client.call(UNARY, b"0123456789abcdef", &[]).await;
                    assert_eq!(reply.status(), Some(0));
                }
            })
        });
        for worker in futures_util::future::join_all(workers).await {
            worker.expect("a worker");
        }
        CALLS as f64 / started.elapsed().as_secs_f64()
    }

    let direct = rate(GrpcClient::h2c(upstream.addr).await).await;
    let through = rate(GrpcClient::h2c(weir.addrs.http).await).await;
    eprintln!(
        "gRPC unary calls/s, {CALLS} calls, {CONCURRENCY} concurrent, one HTTP/2 connection each: direct {direct:.0}, through weir {through:.0} ({:.0} %)",
        100.0 * through / direct
    );
}

/// A gRPC call whose request stream stays open and quiet (as a
/// bidirectional call's may) while the upstream never answers is the
/// upstream's failure: DEADLINE_EXCEEDED, an upstream timeout and an error
/// of the role, never taken for the client's stall (a hung canary must
/// show in the analysis), whether the upstream speaks HTTP/2 or HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_grpc_request_stream_does_not_hide_a_hung_upstream() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    quiet_stream_to_a_hung_upstream(h2c_route("grpc", &upstream)).await;
}

/// [`a_quiet_grpc_request_stream_does_not_hide_a_hung_upstream`] towards
/// an HTTP/1.1 upstream, where the body is tracked for the connection's
/// sake but its quiet is still not taken for a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_grpc_request_stream_to_an_http_1_1_upstream_does_not_hide_it_either() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    quiet_stream_to_a_hung_upstream(Route::new("grpc", &[upstream.addr])).await;
}

/// Calls `HANG` through `route` (named `grpc`, with a 1 s request
/// timeout added) with one message and the stream left open; asserts the
/// deadline counts against the upstream.
async fn quiet_stream_to_a_hung_upstream(route: Route) {
    let weir = Weir::start(WeirConfig::new([route.timeouts("1s", "1s")])).await;
    let mut sender = h2_connection(weir.addrs.http).await;
    // One message, then nothing more, the stream left open.
    let request = hang_call(weir.addrs.http, true);
    let response = within(
        CALL_LIMIT,
        "the stalled call's answer",
        sender.send_request(request),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"4"[..]),
        "{:?}",
        response.headers()
    );
    let m = weir.metrics().await;
    let route = ("route", "grpc");
    assert_eq!(
        m.sum(
            "weir_http_requests_total",
            &[route, ("grpc_code", "DEADLINE_EXCEEDED")]
        ),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        body_timeouts_and_upstream_errors(&weir, "grpc").await,
        (0.0, 1.0)
    );
    assert_eq!(counters(&weir, "grpc", "stable").await, (1, 1));
}

/// A call its client leaves before any answer is counted as `code="499"`
/// with `grpc_code="CANCELLED"`, as a gRPC request, and is not an error of
/// the role (nor a request in the analysis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_client_leaves_before_the_answer_counts_as_cancelled() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let mut sender = h2_connection(weir.addrs.http).await;
    let request = hang_call(weir.addrs.http, false);
    // The client gives up: its stream is reset.
    let left = tokio::time::timeout(Duration::from_millis(300), sender.send_request(request)).await;
    assert!(left.is_err(), "the hung call was answered: {left:?}");
    let cancelled = wait_until(CALL_LIMIT, "the left call counted", || async {
        let m = weir.metrics().await;
        let labels = [
            ("route", "grpc"),
            ("code", "499"),
            ("grpc_code", "CANCELLED"),
        ];
        (m.sum("weir_http_requests_total", &labels) == 1.0).then_some(m)
    })
    .await;
    assert_eq!(
        cancelled.sum("weir_http_requests_total", &[("route", "grpc")]),
        1.0,
        "{}",
        cancelled.text
    );
    assert_eq!(counters(&weir, "grpc", "stable").await, (0, 0));
}

/// A plain HTTP/1.1 upload towards an HTTP/2 upstream that stalls inside
/// its body gets `408`, the client's fault, as towards HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_its_body_towards_an_h2c_upstream_gets_408() {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    // An h2c upstream that takes requests and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let upstream = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|_request| async {
                        std::future::pending::<
                            Result<
                                http::Response<http_body_util::Empty<bytes::Bytes>>,
                                std::convert::Infallible,
                            >,
                        >()
                        .await
                    }),
                ),
            );
        }
    });
    let weir = Weir::start(WeirConfig::new([Route::new("web", &[upstream])
        .stable_key("protocol: h2c")
        .timeouts("1s", "1s")]))
    .await;
    let answer = weir_e2e::raw_request(
        weir.addrs.http,
        b"POST /up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 100\r\n\r\nfirst",
        CALL_LIMIT,
    )
    .await;
    assert_eq!(
        answer.status,
        408,
        "{:?}",
        String::from_utf8_lossy(&answer.raw)
    );
    assert_eq!(
        body_timeouts_and_upstream_errors(&weir, "web").await,
        (1.0, 0.0)
    );
}

/// `route`'s client errors of kind `body_timeout`, and its upstream errors.
async fn body_timeouts_and_upstream_errors(weir: &Weir, route: &str) -> (f64, f64) {
    let m = weir.metrics().await;
    let route = ("route", route);
    (
        m.sum(
            "weir_client_errors_total",
            &[route, ("kind", "body_timeout")],
        ),
        m.sum("weir_upstream_errors_total", &[route]),
    )
}

/// An answer head from an HTTP/2 upstream may be as large as from an
/// HTTP/1 one (64 KiB), not only h2's default 16 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_kb_answer_head_passes_from_an_h2c_upstream() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    let reply = within(CALL_LIMIT, "a call", client.call(BIG_HEAD, b"hi", &[])).await;
    assert_eq!(reply.http_status, 200, "{:?}", reply.trailers);
    assert_eq!(reply.status(), Some(0), "{:?}", reply.trailers);
    assert_eq!(reply.headers.get("x-big").map(|v| v.len()), Some(40_000));
}

/// A deadline that passes after the answer began ends the stream with
/// DEADLINE_EXCEEDED trailers saying so, after what had come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_during_the_answer_ends_it_saying_so() {
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    let reply = within(
        CALL_LIMIT,
        "a call that stalls mid-answer",
        client.call(STALL, b"hi", &[("grpc-timeout", "300m")]),
    )
    .await;
    assert_eq!(reply.messages, [&b"hi"[..]], "{reply:?}");
    assert_eq!(reply.status(), Some(4), "{reply:?}");
    assert_eq!(
        reply.trailer("grpc-message"),
        Some("deadline exceeded while the upstream answered (weir)"),
        "{reply:?}"
    );
}

/// A call whose canary failed once its own deadline had passed is not
/// sent to stable: its client has given up, and stable would be charged
/// with a timeout that is not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_fallback_sends_no_call_past_its_deadline() {
    let stable = GrpcUpstream::h2c("stable", None).await;
    let canary = GrpcUpstream::h2c("canary", None).await;
    let route = Route::new("late", &[stable.addr])
        .stable_key("protocol: h2c")
        .canary(&[canary.addr], 100.0)
        .canary_key("protocol: h2c")
        .stable_fallback("{ methods: [POST], budget: 1 }")
        .timeouts("5s", "5s");
    let weir = Weir::start(WeirConfig::new([route])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    let reply = within(
        CALL_LIMIT,
        "a call past its deadline",
        client.call(HANG, b"x", &[("grpc-timeout", "300m")]),
    )
    .await;
    assert_eq!(reply.status(), Some(4), "{reply:?}");
    assert_eq!(stable.connections(), 0, "stable was not tried");
    assert_eq!(counters(&weir, "late", "stable").await, (0, 0));
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_stable_fallback_total", &[("route", "late")]),
        0.0,
        "no retry counted, none taken from the budget: {}",
        m.text
    );
}

/// `stableFallback` listing `POST` on gRPC routes whose canary takes every
/// call: a unary call the canary refuses is answered by stable, and a
/// streaming call whose client waits for an answer before it ends its
/// stream is let through rather than held until its deadline for a body
/// that cannot end first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_fallback_retries_unary_calls_and_lets_streaming_calls_through() {
    use futures_util::StreamExt as _;
    use http_body_util::{BodyExt as _, StreamBody};
    use hyper::body::Frame;
    use weir_e2e::grpc::{FIRST, frame, unframe};

    let stable = GrpcUpstream::h2c("stable", None).await;
    let canary = GrpcUpstream::h2c("canary", None).await;
    let refusing = ClosedPort::bind();
    let route = |name: &str, canary: std::net::SocketAddr| {
        Route::new(name, &[stable.addr])
            .hosts(&[&format!("{name}.test")])
            .stable_key("protocol: h2c")
            .canary(&[canary], 100.0)
            .canary_key("protocol: h2c")
            .stable_fallback("{ methods: [POST], budget: 1 }")
            .timeouts("5s", "5s")
    };
    let weir = Weir::start(WeirConfig::new([
        route("live", canary.addr),
        route("refusing", refusing.addr),
    ]))
    .await;

    let client = GrpcClient::h2c_with_authority(weir.addrs.http, "refusing.test").await;
    let reply = within(CALL_LIMIT, "a unary call", client.call(UNARY, b"hi", &[])).await;
    assert_eq!(reply.status(), Some(0), "{reply:?}");
    assert_eq!(reply.messages, [&b"hi"[..]], "{reply:?}");
    assert_eq!(
        reply.trailer("x-upstream-name"),
        Some("stable"),
        "{reply:?}"
    );
    let m = weir.metrics().await;
    assert_eq!(
        m.sum("weir_stable_fallback_total", &[("route", "refusing")]),
        1.0,
        "{}",
        m.text
    );
    // Counted once, as stable's answer: the canary's failure is for its
    // analysis only.
    assert_eq!(
        (
            m.sum("weir_http_requests_total", &[("route", "refusing")]),
            m.sum(
                "weir_http_requests_total",
                &[
                    ("route", "refusing"),
                    ("role", "stable"),
                    ("grpc_code", "OK")
                ]
            ),
        ),
        (1.0, 1.0),
        "{}",
        m.text
    );

    // A unary call whose message comes in two parts, far apart (as over a
    // long round trip): kept whole and retried on stable.
    let mut sender = h2_connection(weir.addrs.http).await;
    let message = frame(&[b'm'; 3000]);
    let (front, back) = (message.slice(..1000), message.slice(1000..));
    let parts = futures_util::stream::iter([front])
        .chain(futures_util::stream::once(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            back
        }))
        .map(|bytes| Ok::<_, std::convert::Infallible>(Frame::data(bytes)))
        .boxed();
    let request = http::Request::post(format!("http://refusing.test{UNARY}"))
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(StreamBody::new(parts))
        .expect("a request");
    let (parts, trailers, data) = within(CALL_LIMIT, "the split call's answer", async {
        let response = sender.send_request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the answer's body");
        (parts, body.trailers().cloned(), body.to_bytes())
    })
    .await;
    assert_eq!(
        trailers.as_ref().and_then(|t| t.get("x-upstream-name")),
        Some(&http::HeaderValue::from_static("stable")),
        "{parts:?} {trailers:?}"
    );
    assert_eq!(unframe(data), [&[b'm'; 3000][..]]);

    // One message, the stream left open until the answer has come.
    let mut sender = h2_connection(weir.addrs.http).await;
    let (end_request, ended) = tokio::sync::oneshot::channel::<()>();
    let messages = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Frame::data(frame(b"first")))
    })
    .chain(
        futures_util::stream::once(async move {
            let _ = ended.await;
        })
        .filter_map(|()| async { None }),
    )
    .boxed();
    let request = http::Request::post(format!("http://live.test{FIRST}"))
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(StreamBody::new(messages))
        .expect("a request");
    let answer = within(CALL_LIMIT, "the streaming call's answer", async {
        let response = sender.send_request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the answer's body");
        (parts, body.trailers().cloned(), body.to_bytes())
    })
    .await;
    drop(end_request);
    let (parts, trailers, data) = answer;
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"));
    assert_eq!(
        status.map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{parts:?} {trailers:?}"
    );
    assert_eq!(unframe(data), [&b"first"[..]]);
    assert_eq!(canary.calls(), 1, "the streaming call reached the canary");
}

/// SPEC 16: a gRPC call carries `grpc_code` in `weir_http_requests_total`
/// also when its upstream answered with plain HTTP: the status a gRPC
/// client reads from the code (503 UNAVAILABLE, an error of the role; 404
/// UNIMPLEMENTED, not one by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_answered_with_plain_http_is_counted_with_the_status_read_from_it() {
    let upstream = FakeUpstream::failing_every("plain", 1).await;
    upstream.fail_with(503);
    let weir = Weir::start(WeirConfig::new([Route::new("plain", &[upstream.addr])])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    for _ in 0..2 {
        let reply = within(CALL_LIMIT, "a call", client.call(UNARY, b"x", &[])).await;
        assert_ne!(reply.status(), Some(0), "{reply:?}");
    }
    upstream.fail_with(404);
    within(CALL_LIMIT, "a call", client.call(UNARY, b"x", &[])).await;

    let metrics = weir.metrics().await;
    let calls = |code: &str, name: &str| {
        metrics.sum(
            "weir_http_requests_total",
            &[("route", "plain"), ("code", code), ("grpc_code", name)],
        )
    };
    assert_eq!(calls("503", "UNAVAILABLE"), 2.0);
    assert_eq!(calls("404", "UNIMPLEMENTED"), 1.0);
    assert_eq!(counters(&weir, "plain", "stable").await, (3, 2));
}

/// A client that calls a service which does not speak gRPC, and answers
/// it `200` with plain text as it answers anyone, cannot make that role
/// fail: the answer is no gRPC answer, so it is counted by its HTTP code
/// (no `grpc_code`, not `UNKNOWN`), and neither is gRPC-Web's
/// `application/grpc-web`, whose trailers travel in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_a_plain_http_service_answers_200_are_counted_by_their_http_code() {
    let upstream = FakeUpstream::start("plain").await;
    let weir = Weir::start(WeirConfig::new([Route::new("plain", &[upstream.addr])])).await;
    let client = GrpcClient::h2c(weir.addrs.http).await;
    for _ in 0..3 {
        let reply = within(CALL_LIMIT, "a call", client.call(UNARY, b"x", &[])).await;
        assert_eq!(reply.status(), None, "{reply:?}");
    }
    let url = weir.url("/web");
    for (protocol, content_type) in [
        ("--http1.1", "application/grpc"),
        ("--http1.1", "application/grpc-web+proto"),
        ("--http2-prior-knowledge", "application/grpc-web-text"),
    ] {
        let header = format!("content-type: {content_type}");
        let (_, written) = weir_e2e::curl(
            &[
                protocol,
                "-H",
                &header,
                "--data-binary",
                "x",
                "-o",
                "/dev/null",
                &url,
            ],
            "%{http_code}",
        )
        .await;
        assert_eq!(written, "200", "{protocol} {content_type}");
    }

    let metrics = weir.metrics().await;
    let route = ("route", "plain");
    assert_eq!(
        metrics.sum("weir_http_requests_total", &[route, ("code", "200")]),
        6.0,
        "{}",
        metrics.text
    );
    assert!(
        !metrics.text.contains("grpc_code"),
        "counted as gRPC calls:\n{}",
        metrics.text
    );
    assert_eq!(counters(&weir, "plain", "stable").await, (6, 0));
}

/// A unary call whose client sends its message in pieces, a second and
/// more in all: the call's latency leaves that time out (it is the
/// client's), so a client that sends slowly cannot make its role look
/// slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_client_sends_slowly_does_not_count_that_time_as_latency() {
    use futures_util::StreamExt as _;
    use http_body_util::BodyExt as _;

    const GAP: Duration = Duration::from_millis(300);
    let upstream = GrpcUpstream::h2c("v1", None).await;
    let weir = Weir::start(WeirConfig::new([h2c_route("grpc", &upstream)])).await;
    let mut sender = h2_connection(weir.addrs.http).await;
    let message = weir_e2e::grpc::frame(b"sent slowly, a piece at a time");
    let pieces: Vec<bytes::Bytes> = message
        .chunks(8)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    assert!(pieces.len() >= 4);
    let body = futures_util::stream::iter(pieces)
        .then(|piece| async move {
            tokio::time::sleep(GAP).await;
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(piece))
        })
        .boxed();
    let request = http::Request::post(format!("http://{}{UNARY}", weir.addrs.http))
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(body))
        .unwrap();
    let response = within(CALL_LIMIT, "the call", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = within(CALL_LIMIT, "the answer", response.into_body().collect())
        .await
        .unwrap();
    let status = answer
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.as_bytes().to_vec());
    assert_eq!(status.as_deref(), Some(&b"0"[..]));

    let metrics = weir.metrics().await;
    let labels = [("route", "grpc"), ("role", "stable")];
    let count = metrics.get("weir_http_request_duration_seconds_count", &labels);
    let fast = metrics.get(
        "weir_http_request_duration_seconds_bucket",
        &[("route", "grpc"), ("role", "stable"), ("le", "0.5")],
    );
    assert_eq!(count, Some(1.0), "{}", metrics.text);
    assert_eq!(
        fast,
        Some(1.0),
        "the client's {:?} counted as the call's latency:\n{}",
        GAP * 4,
        metrics.text
    );
}
