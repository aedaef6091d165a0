//! Blue-green releases (SPEC 12) end to end, under a steady load of about
//! a hundred requests per second per route, with upstreams that name their
//! revision in every answer:
//!
//! - the preview reaches the new revision by host and by header while the
//!   active traffic never does, counted at the upstream;
//! - the swap, by `weir promote` from `AwaitingPromotion` and by
//!   auto-promotion after a passing `pre-rollout` gate, fails no request
//!   and moves all traffic to the new revision;
//! - a failing `pre-rollout` webhook and a failing pre-promotion analysis
//!   (a web provider that runs a smoke test against the preview) abort
//!   before the active traffic has seen the new revision;
//! - a post-promotion analysis asking a real Prometheus swaps back.
//!
//! Run with `--nocapture` to see the measurements: p99 latency around the
//! swap, failed requests, and how long a failed gate takes to abort.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use weir_e2e::{
    Answer, Conn, FakeUpstream, HookReceiver, Prometheus, ReservedPort, Route, Strategy, Weir,
    WeirConfig, canary_weight, count, phase, send_many, shown, wait_until, weir_command, within,
};

/// A rollout's whole course on 2 busy cores, Prometheus' scrapes included.
const LIMIT: Duration = Duration::from_secs(60);

/// Requests per second of each route's active load.
const RATE: u64 = 100;

/// Keep-alive connections of each route's active load.
const CONNECTIONS: u64 = 4;

/// The preview header of every route here.
const PREVIEW_HEADER: &str = "x-weir-preview";

/// One answer of the active load.
#[derive(Debug, Clone)]
struct Sent {
    /// When the request left.
    at: Instant,
    /// How long until the whole answer was in.
    latency: Duration,
    /// `x-upstream-name`, or [`NO_ANSWER`].
    upstream: String,
    /// The status; 0 when the exchange failed.
    status: u16,
}

/// The upstream name of an exchange that got no answer.
const NO_ANSWER: &str = "!no-answer";

/// Paced `GET /` with one `Host` over a few keep-alive connections, keeping
/// every answer with its send time and latency. Stops when dropped.
struct ActiveLoad {
    sent: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

// === impl ActiveLoad ===

impl ActiveLoad {
    fn start(addr: SocketAddr, host: &str) -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(CONNECTIONS as f64 / RATE as f64);
        let mut tasks = JoinSet::new();
        for c in 0..CONNECTIONS {
            let (sent, stop, host) = (Arc::clone(&sent), Arc::clone(&stop), host.to_owned());
            tasks.spawn(async move {
                let offset = period.mul_f64(c as f64 / CONNECTIONS as f64);
                let mut ticks = tokio::time::interval_at(Instant::now() + offset, period);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut conn: Option<Conn> = None;
                while !stop.load(Ordering::SeqCst) {
                    ticks.tick().await;
                    let at = Instant::now();
                    if conn.is_none() {
                        conn = Conn::open(addr).await.ok();
                    }
                    let answer = match conn.as_mut() {
                        Some(c) => c.get("/", &[("host", &host)]).await.ok(),
                        None => None,
                    };
                    let (upstream, status) = match &answer {
                        Some(r) => (r.upstream().to_owned(), r.status.as_u16()),
                        None => {
                            conn = None;
                            (NO_ANSWER.to_owned(), 0)
                        }
                    };
                    sent.lock().expect("no panics while recording").push(Sent {
                        at,
                        latency: at.elapsed(),
                        upstream,
                        status,
                    });
                }
            });
        }
        Self { sent, stop, tasks }
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("no panics while recording").clone()
    }

    /// Waits until a request sent after `after` has been answered.
    async fn wait_answered_after(&self, after: Instant, what: &str) {
        wait_until(LIMIT, what, || async {
            self.sent().iter().any(|s| s.at > after).then_some(())
        })
        .await;
    }

    /// Stops sending and returns every answer, once the requests in flight
    /// are in.
    async fn stop(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        within(LIMIT, "the load's last answers", async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.sent()
    }
}

impl Drop for ActiveLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tasks.abort_all();
    }
}

/// `blueGreen.stage`, or `""`.
fn stage(status: &serde_json::Value) -> &str {
    status["blueGreen"]["stage"].as_str().unwrap_or_default()
}

/// The `preview` line of a route's `blueGreen` block: host
/// `preview.HOST` or header `x-weir-preview: 1`.
fn preview(host: &str) -> String {
    format!(
        "preview: {{hosts: [preview.{host}], header: {{name: {PREVIEW_HEADER}, value: \"1\"}}}}"
    )
}

/// Route `name` on host `NAME.test`, stable `v1` on `blue`, no release.
fn route(name: &str, blue: &FakeUpstream) -> Route {
    Route::new(name, &[blue.addr]).hosts(&[&format!("{name}.test")])
}

/// `route` releasing `v2` on `green` blue-green, with the preview of
/// [`preview`] and these more lines of the `blueGreen` block.
fn release<S: AsRef<str>>(
    route: Route,
    green: &FakeUpstream,
    lines: impl IntoIterator<Item = S>,
) -> Route {
    let host = route.hosts[0].clone();
    let mut all = vec![preview(&host)];
    all.extend(lines.into_iter().map(|l| l.as_ref().to_owned()));
    route
        .canary(&[green.addr], 0.0)
        .strategy(Strategy::blue_green(all))
}

/// Adds webhook `name` of `kind` at `url` to the route's strategy.
fn with_webhook(mut route: Route, name: &str, kind: &str, url: &str) -> Route {
    route.strategy = route.strategy.map(|s| s.webhook(name, kind, url, ""));
    route
}

/// `weir ARGS --admin URL`, with no token.
async fn cli(weir: &Weir, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::from(weir_command());
    command
        .args(args)
        .args(["--admin", &format!("http://{}", weir.addrs.admin)])
        .env_remove("WEIR_TOKEN")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    within(Duration::from_secs(20), "the weir CLI", command.output())
        .await
        .expect("running weir")
}

/// The load's answers from the first answer of `upstream` to a request
/// sent after `after` on: once one request has reached it, every request
/// sent after that answer came in must reach it too (the swap is one
/// snapshot). Returns how many answers came from it.
///
/// # Panics
/// When none reached it, or a later one went elsewhere.
fn settled_on(sent: &[Sent], upstream: &str, after: Instant) -> usize {
    let first = sent
        .iter()
        .filter(|s| s.at > after && s.upstream == upstream)
        .map(|s| s.at + s.latency)
        .min()
        .unwrap_or_else(|| panic!("no request of the load reached {upstream}"));
    let later: Vec<&Sent> = sent.iter().filter(|s| s.at > first).collect();
    let elsewhere: Vec<&&Sent> = later.iter().filter(|s| s.upstream != upstream).collect();
    assert!(
        elsewhere.is_empty(),
        "after the first answer from {upstream}, {} of {} requests went elsewhere: {:?}",
        elsewhere.len(),
        later.len(),
        elsewhere.iter().take(5).collect::<Vec<_>>()
    );
    later.len()
}

/// Answers not `200`, and exchanges with no answer at all.
fn failed(sent: &[Sent]) -> (usize, usize) {
    let not_ok = sent.iter().filter(|s| s.status != 200).count();
    let no_answer = sent.iter().filter(|s| s.status == 0).count();
    (not_ok, no_answer)
}

/// The 99th percentile latency of the answers sent within `from..to`, and
/// how many there were.
fn p99(sent: &[Sent], from: Instant, to: Instant) -> (Duration, usize) {
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .map(|s| s.latency)
        .collect();
    latencies.sort();
    let n = latencies.len();
    if n == 0 {
        return (Duration::ZERO, 0);
    }
    let rank = ((n as f64) * 0.99).ceil() as usize;
    (latencies[rank.clamp(1, n) - 1], n)
}

fn from_upstream(sent: &[Sent], upstream: &str) -> usize {
    sent.iter().filter(|s| s.upstream == upstream).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_answers_from_the_new_revision_and_the_swap_fails_no_request() {
    let blue_manual = FakeUpstream::start("blue-manual").await;
    let green_manual = FakeUpstream::start("green-manual").await;
    let blue_auto = FakeUpstream::start("blue-auto").await;
    let green_auto = FakeUpstream::start("green-auto").await;
    let receiver = HookReceiver::start().await;
    let config = WeirConfig::new([
        release(
            route("manual", &blue_manual),
            &green_manual,
            ["autoPromotionEnabled: false"],
        ),
        route("auto", &blue_auto),
    ]);
    let mut weir = Weir::start(config).await;
    let addr = weir.addrs.http;
    let manual_load = ActiveLoad::start(addr, "manual.test");
    let auto_load = ActiveLoad::start(addr, "auto.test");

    // `manual` started its release with weir and waits for `weir promote`.
    let s = weir
        .wait_status("manual", LIMIT, "stage AwaitingPromotion", |s| {
            stage(s) == "AwaitingPromotion"
        })
        .await;
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    let by_host = within(
        LIMIT,
        "requests to the preview host",
        send_many(addr, "/", &[("host", "preview.manual.test")], 50, 2),
    )
    .await
    .expect("requests to the preview host");
    assert_eq!(count(&by_host, "green-manual", 200), 50, "{by_host:?}");
    let by_header = within(
        LIMIT,
        "requests with the preview header",
        send_many(
            addr,
            "/",
            &[("host", "manual.test"), (PREVIEW_HEADER, "1")],
            50,
            2,
        ),
    )
    .await
    .expect("requests with the preview header");
    assert_eq!(count(&by_header, "green-manual", 200), 50, "{by_header:?}");
    let other_value = within(
        LIMIT,
        "requests with another header value",
        send_many(
            addr,
            "/",
            &[("host", "manual.test"), (PREVIEW_HEADER, "0")],
            20,
            1,
        ),
    )
    .await
    .expect("requests with another header value");
    assert_eq!(
        count(&other_value, "blue-manual", 200),
        20,
        "{other_value:?}"
    );
    wait_until(LIMIT, "200 answers of the active load", || async {
        (manual_load.sent().len() >= 200).then_some(())
    })
    .await;
    let before_swap = manual_load.sent();
    assert_eq!(
        from_upstream(&before_swap, "green-manual"),
        0,
        "active traffic reached the preview"
    );
    assert_eq!(
        green_manual.hits(),
        100,
        "only the 100 preview requests reach the new revision before the swap"
    );

    let status = cli(&weir, &["status", "manual"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", shown(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("AwaitingPromotion"),
        "weir status shows the stage: {}",
        shown(&status)
    );
    let promote_at = Instant::now();
    let promote = cli(&weir, &["promote", "manual"]).await;
    assert_eq!(promote.status.code(), Some(0), "{}", shown(&promote));
    let s = weir
        .wait_status("manual", LIMIT, "stage Done", |s| stage(s) == "Done")
        .await;
    assert_eq!(phase(&s), "Promoted", "{s:#}");
    let manual_done = Instant::now();

    // `auto`: the new revision appears in the config; the pre-rollout gate
    // passes and the route swaps by itself.
    let reload_at = Instant::now();
    let next = weir.config.with_route("auto", |r| {
        let r = release(
            r,
            &green_auto,
            ["autoPromotionEnabled: true", "scaleDownDelaySeconds: 30"],
        );
        with_webhook(r, "smoke", "pre-rollout", &receiver.url("smoke"))
    });
    weir.reload(&next).await;
    let s = weir
        .wait_status("auto", LIMIT, "stage Done", |s| stage(s) == "Done")
        .await;
    assert_eq!(phase(&s), "Promoted", "{s:#}");
    let auto_done = Instant::now();
    assert!(
        receiver.count("smoke") >= 1,
        "the pre-rollout gate was asked"
    );
    let hook = &receiver.requests("smoke")[0].json;
    assert_eq!(hook["weir"]["type"], "pre-rollout", "{hook:#}");
    assert_eq!(hook["weir"]["canaryRevision"], "v2", "{hook:#}");

    // A second of load past each swap, then all of it is in.
    manual_load
        .wait_answered_after(
            manual_done + Duration::from_secs(1),
            "a second past the swap",
        )
        .await;
    auto_load
        .wait_answered_after(auto_done + Duration::from_secs(1), "a second past the swap")
        .await;
    let fresh = within(
        LIMIT,
        "requests after both swaps",
        send_many(addr, "/", &[("host", "auto.test")], 50, 2),
    )
    .await
    .expect("requests after the swap");
    assert_eq!(count(&fresh, "green-auto", 200), 50, "{fresh:?}");
    let manual_sent = manual_load.stop().await;
    let auto_sent = auto_load.stop().await;

    for (name, sent, green, start, done) in [
        (
            "manual",
            &manual_sent,
            "green-manual",
            promote_at,
            manual_done,
        ),
        ("auto", &auto_sent, "green-auto", reload_at, auto_done),
    ] {
        let after = settled_on(sent, green, start);
        let (not_ok, no_answer) = failed(sent);
        let (around, n) = p99(
            sent,
            start - Duration::from_secs(1),
            done + Duration::from_secs(1),
        );
        let (steady, m) = p99(sent, sent[0].at, start - Duration::from_secs(1));
        println!(
            "blue-green swap ({name}): {} requests, {not_ok} failed ({no_answer} without an answer); \
             p99 {:.1} ms over the {n} sent from 1 s before the swap to 1 s after it \
             (p99 before: {:.1} ms over {m}); {after} answered by {green} after the first",
            sent.len(),
            around.as_secs_f64() * 1e3,
            steady.as_secs_f64() * 1e3,
        );
        assert_eq!(not_ok, 0, "{name}: no request fails across the swap");
        assert!(after > 0, "{name}: traffic moved to the new revision");
    }
    assert_eq!(
        blue_auto.hits() as usize + green_auto.hits() as usize,
        auto_sent.len() + 50,
        "every request was answered once"
    );
}

/// A Flagger-like smoke tester for a web provider: `POST /smoke` sends
/// [`SMOKE_REQUESTS`] requests to the preview host through weir and
/// answers `{"summary": {"failed": N, "passed": M}}`.
async fn smoke_tester(weir: Arc<OnceLock<SocketAddr>>, sent: Arc<AtomicU64>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the smoke tester");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (weir, sent) = (Arc::clone(&weir), Arc::clone(&sent));
            tokio::spawn(async move {
                let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let (weir, sent) = (Arc::clone(&weir), Arc::clone(&sent));
                    async move {
                        let (mut passed, mut failed) = (0, 0);
                        if let Some(&addr) = weir.get() {
                            let headers = [("host", "preview.smoked.test")];
                            for _ in 0..SMOKE_REQUESTS {
                                sent.fetch_add(1, Ordering::SeqCst);
                                let ok = match Conn::open(addr).await {
                                    Ok(mut c) => {
                                        c.get("/", &headers).await.is_ok_and(|r| r.status == 200)
                                    }
                                    Err(_) => false,
                                };
                                if ok { passed += 1 } else { failed += 1 }
                            }
                        }
                        let body =
                            format!(r#"{{"summary": {{"failed": {failed}, "passed": {passed}}}}}"#);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Requests per smoke test.
const SMOKE_REQUESTS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pre_promotion_gates_abort_before_active_traffic_sees_the_new_revision() {
    let blue_hooked = FakeUpstream::start("blue-hooked").await;
    let green_hooked = FakeUpstream::start("green-hooked").await;
    let blue_smoked = FakeUpstream::start("blue-smoked").await;
    // The new revision of `smoked` is broken: every answer is a 500.
    let green_smoked = FakeUpstream::failing_every("green-smoked", 1).await;
    let receiver = HookReceiver::start().await;
    receiver.answer("pre", Answer::Status(500));
    let weir_addr = Arc::new(OnceLock::new());
    let smoke_sent = Arc::new(AtomicU64::new(0));
    let smoke = smoke_tester(Arc::clone(&weir_addr), Arc::clone(&smoke_sent)).await;
    let template = format!(
        r#"analysisTemplates:
  - name: smoke
    metrics:
      - name: smoke
        successCondition: result.failed == 0
        provider:
          web: {{url: "http://{smoke}/smoke", method: POST, jsonPath: "{{$.summary}}", timeoutSeconds: 30}}
"#
    );
    let config = WeirConfig::new([route("hooked", &blue_hooked), route("smoked", &blue_smoked)])
        .extra(&template);
    let mut weir = Weir::start(config).await;
    weir_addr
        .set(weir.addrs.http)
        .expect("the address is set once");
    let hooked_load = ActiveLoad::start(weir.addrs.http, "hooked.test");
    let smoked_load = ActiveLoad::start(weir.addrs.http, "smoked.test");
    hooked_load
        .wait_answered_after(Instant::now(), "the load on hooked.test")
        .await;

    let released = Instant::now();
    let next = weir
        .config
        .with_route("hooked", |r| {
            let r = release(r, &green_hooked, Vec::<String>::new());
            with_webhook(r, "smoke", "pre-rollout", &receiver.url("pre"))
        })
        .with_route("smoked", |r| {
            release(
                r,
                &green_smoked,
                ["prePromotionAnalysis: {templates: [{templateName: smoke}]}"],
            )
        });
    weir.reload(&next).await;
    let mut took = Vec::new();
    for name in ["hooked", "smoked"] {
        let s = weir
            .wait_status(name, LIMIT, "Aborted", |s| phase(s) == "Aborted")
            .await;
        took.push((name, released.elapsed()));
        assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    }
    for (name, took) in &took {
        println!(
            "blue-green: a failing pre-promotion gate ({}) aborted {:.0} ms after the config brought the new revision",
            if *name == "hooked" {
                "pre-rollout webhook answering 500"
            } else {
                "web analysis of a smoke test"
            },
            took.as_secs_f64() * 1e3
        );
    }
    assert!(receiver.count("pre") >= 1, "the pre-rollout gate was asked");
    let hooked_sent = hooked_load.stop().await;
    let smoked_sent = smoked_load.stop().await;

    // Nothing but the smoke test reached a new revision.
    assert_eq!(green_hooked.hits(), 0, "green-hooked got requests");
    assert_eq!(
        green_smoked.hits(),
        smoke_sent.load(Ordering::SeqCst),
        "only the smoke test's requests reached green-smoked"
    );
    assert!(green_smoked.hits() > 0, "the smoke test ran on the preview");
    for (name, sent) in [("hooked", &hooked_sent), ("smoked", &smoked_sent)] {
        let blue = format!("blue-{name}");
        assert_eq!(
            from_upstream(sent, &blue),
            sent.len(),
            "{name}: the active traffic stayed on {blue}"
        );
        assert_eq!(failed(sent).0, 0, "{name}: no active request failed");
    }
    let status = weir.status("smoked").await;
    assert!(
        !status["message"].as_str().unwrap_or_default().is_empty(),
        "an abort says why: {status:#}"
    );
}

/// `route` releasing `v2` on `green`: auto-promotion after a `pre-rollout`
/// gate at `receiver`'s `/smoke` and a `confirm-promotion` gate at its
/// `/confirm`, the `errors`
/// template after the swap. The built-in judge would swap back within a
/// second: only the template decides here.
fn post_release(route: Route, green: &FakeUpstream, receiver: &HookReceiver) -> Route {
    let route = release(
        route,
        green,
        [
            "postPromotionAnalysis: {templates: [{templateName: errors}], args: [{name: route, value: post}]}",
            "scaleDownDelaySeconds: 60",
        ],
    );
    let route = with_webhook(route, "smoke", "pre-rollout", &receiver.url("smoke"));
    let mut route = with_webhook(
        route,
        "confirm",
        "confirm-promotion",
        &receiver.url("confirm"),
    );
    route.strategy = route
        .strategy
        .map(|s| s.max_error_rate(1.0).compare_to_stable(false));
    route
}

/// `GET /api/v1/routes/ROUTE/analysisruns`.
async fn analysis_runs(weir: &Weir, route: &str) -> serde_json::Value {
    let path = format!("/api/v1/routes/{route}/analysisruns");
    let answer = weir.admin().get(&path).await.expect("GET analysisruns");
    assert_eq!(answer.status, 200, "{path}: {}", answer.text());
    answer.json()
}

/// The route's 5xx ratio over the last 5 s, whichever revision answered;
/// empty until Prometheus has two scrapes of the route.
const ERROR_RATIO: &str = "(sum(rate(weir_http_requests_total{route=\"{{args.route}}\",code=~\"5..\"}[5s])) or vector(0)) / sum(rate(weir_http_requests_total{route=\"{{args.route}}\"}[5s]))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_post_promotion_analysis_swaps_back_to_the_old_revision() {
    let blue = FakeUpstream::start("blue-post").await;
    // Half of the new revision's answers are 500s.
    let green = FakeUpstream::failing_every("green-post", 2).await;
    let receiver = HookReceiver::start().await;
    let prometheus_port = ReservedPort::bind();
    let prometheus_addr = prometheus_port.addr;
    let template = format!(
        r#"analysisTemplates:
  - name: errors
    args: [{{name: route}}]
    metrics:
      - name: error-ratio
        interval: 1s
        initialDelay: 2s
        count: 30
        consecutiveErrorLimit: 30
        successCondition: len(result) == 0 || isNaN(result[0]) || result[0] <= 0.1
        provider:
          prometheus:
            address: http://{prometheus_addr}
            query: '{ERROR_RATIO}'
"#
    );
    let config = WeirConfig::new([route("post", &blue)]).extra(&template);
    let mut weir = Weir::start(config).await;
    let prometheus = Prometheus::start(prometheus_port, &[weir.addrs.admin]).await;
    let load = ActiveLoad::start(weir.addrs.http, "post.test");
    let query = ERROR_RATIO.replace("{{args.route}}", "post");
    wait_until(LIMIT, "Prometheus has the route's rate", || async {
        let result = prometheus.query(&query).await?;
        result
            .as_array()
            .is_some_and(|r| r.len() == 1)
            .then_some(())
    })
    .await;

    // The route has an `analysis` block: its preview ends once the judge
    // passes on the preview's own traffic.
    let preview_load = ActiveLoad::start(weir.addrs.http, "preview.post.test");
    let released = Instant::now();
    let next = weir
        .config
        .with_route("post", |r| post_release(r, &green, &receiver));
    weir.reload(&next).await;
    let s = weir
        .wait_status("post", LIMIT, "stage PostPromotion", |s| {
            stage(s) == "PostPromotion" || phase(s) == "Aborted"
        })
        .await;
    let swapped = Instant::now();
    assert_eq!(stage(&s), "PostPromotion", "{s:#}");
    let s = weir
        .wait_status("post", LIMIT, "Aborted", |s| phase(s) == "Aborted")
        .await;
    let aborted = Instant::now();
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    load.wait_answered_after(
        aborted + Duration::from_secs(1),
        "a second past the swap back",
    )
    .await;
    let fresh = within(
        LIMIT,
        "requests after the swap back",
        send_many(weir.addrs.http, "/", &[("host", "post.test")], 50, 2),
    )
    .await
    .expect("requests after the swap back");
    assert_eq!(count(&fresh, "blue-post", 200), 50, "{fresh:?}");
    let sent = load.stop().await;

    // The first answer from the new revision marks the swap; the first
    // from the old one after it, the swap back.
    let first_green = sent
        .iter()
        .filter(|s| s.at > released && s.upstream == "green-post")
        .map(|s| s.at + s.latency)
        .min()
        .expect("the load reached the new revision after the swap");
    let back = settled_on(&sent, "blue-post", first_green);
    let on_green = from_upstream(&sent, "green-post");
    println!(
        "blue-green swap back: the post-promotion analysis swapped back {:.0} ms after the swap \
         ({on_green} requests answered by the new revision meanwhile, {back} by the old one after)",
        (aborted - swapped).as_secs_f64() * 1e3,
    );
    assert_eq!(failed(&sent).1, 0, "every request got an answer");
    let runs = analysis_runs(&weir, "post").await;
    assert!(
        runs.as_array()
            .is_some_and(|r| r.iter().any(|run| run["phase"] == "Failed")),
        "the failed post-promotion run: {runs:#}"
    );
    let m = weir.metrics().await;
    assert!(
        m.sum("weir_rollout_aborts_total", &[("route", "post")]) >= 1.0,
        "{}",
        m.text
    );

    // The next revision, with the same strategy, gets a release of its own
    // from the start: its confirm-promotion gate, asked before the swap,
    // now says no and holds it at the preview; no post-promotion analysis
    // runs for it before its swap.
    receiver.answer("confirm", Answer::Status(403));
    let asked = receiver.count("confirm");
    let fixed = FakeUpstream::start("green-post-fixed").await;
    let next = weir.config.with_route("post", |_| {
        post_release(route("post", &blue), &fixed, &receiver).canary_revision("v3")
    });
    weir.reload(&next).await;
    let s = weir
        .wait_status("post", LIMIT, "v3 held by its gate, or past it", |s| {
            s["canaryRevision"] == "v3"
                && (receiver.count("confirm") > asked
                    || matches!(stage(s), "PostPromotion" | "Done")
                    || phase(s) == "Aborted")
        })
        .await;
    assert!(
        matches!(stage(&s), "Preview" | "PrePromotion" | "AwaitingPromotion")
            && phase(&s) != "Aborted",
        "a new revision after a swap back starts at its preview: {s:#}"
    );
    assert_eq!(canary_weight(&s), 0.0, "{s:#}");
    let active = within(
        LIMIT,
        "active requests while v3 waits",
        send_many(weir.addrs.http, "/", &[("host", "post.test")], 20, 1),
    )
    .await
    .expect("active requests while v3 waits");
    assert_eq!(count(&active, "blue-post", 200), 20, "{active:?}");
    let runs = analysis_runs(&weir, "post").await;
    let post_runs = runs.as_array().map_or(0, |r| {
        r.iter()
            .filter(|run| run["kind"] == "postPromotion")
            .count()
    });
    assert_eq!(
        post_runs, 1,
        "no post-promotion analysis for v3 before its swap: {runs:#}"
    );
    drop(preview_load);
}
