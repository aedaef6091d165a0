//! One experiment from start to end: upstreams, weir, load, timeline,
//! sampling, teardown, report files.
//!
//! Every wait is bounded: weir must be ready within [`READY_WITHIN`], the
//! load stops at the scenario's duration (plus [`LOAD_GRACE`] for requests
//! in flight), and weir gets [`STOP_GRACE`] to exit after SIGTERM before it
//! is killed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

use super::observe::Observations;
use super::process::{Admin, Weir};
use super::prometheus;
use super::report::{
    self, Event, EventKind, ExperimentReport, RouteState, RunData, Sample, UpstreamInfo, WeirInfo,
    round_ms,
};
use super::scenario::{
    ActionKind, PROMETHEUS_VAR, Phase, SMOKE_TESTER_VAR, Scenario, upstream_env_var,
};
use super::smoke;
use super::{Failure, html};
use crate::run::{self, Hooks, RunArgs};
use crate::upstream::{FaultsUpdate, Upstream, UpstreamArgs};
use weir_config::status::RouteStatus;

/// How often the admin API and the upstreams' counters are sampled.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How long weir may take to answer `/readyz` with 200.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(15);

/// How long requests still in flight at the end of the load may take.
pub(crate) const LOAD_GRACE: Duration = Duration::from_secs(2);

/// How long the scenario's Prometheus may take to answer `/-/ready`.
pub(crate) const PROMETHEUS_READY_WITHIN: Duration = Duration::from_secs(30);

/// How long weir may take to exit after SIGTERM.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Keep-alive connections of the load when the scenario sets none.
const DEFAULT_CONNECTIONS: usize = 64;

/// What to run and where.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) scenario: Scenario,
    pub(crate) speed: f64,
    pub(crate) weir: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) quiet: bool,
}

/// A fake upstream running in this process.
struct Running {
    name: String,
    addr: SocketAddr,
    state: Arc<Upstream>,
    task: JoinHandle<()>,
}

/// The event log shared by the sampler and the timeline, printed as it
/// grows unless quiet.
struct Events {
    quiet: bool,
    events: Mutex<Vec<Event>>,
}

/// The timeline task: what it needs to apply the scenario's actions.
struct Timeline {
    scenario: Scenario,
    applied: Arc<Mutex<Applied>>,
    dir: PathBuf,
    config_path: PathBuf,
    upstreams: Vec<(String, Arc<Upstream>)>,
    admin: Admin,
    start: Instant,
    events: Arc<Events>,
}

/// What the timeline task has applied so far.
#[derive(Debug, Default)]
struct Applied {
    actions: Vec<Option<f64>>,
    configs: Vec<(f64, String)>,
    /// The actions that did not take: their event lines.
    failed: Vec<String>,
}

/// Runs the plan and writes `report.json` and `report.html` into its
/// directory.
///
/// # Errors
/// [`Failure::Start`] when an upstream, weir or the run directory cannot be
/// set up; [`Failure::Run`] when the load or the report fails.
pub(crate) async fn run(plan: &Plan) -> Result<ExperimentReport, Failure> {
    std::fs::create_dir_all(&plan.dir)
        .map_err(|e| Failure::Start(format!("creating {}: {e}", plan.dir.display())))?;
    let upstreams = start_upstreams(&plan.scenario).await?;
    let result = run_with(plan, &upstreams).await;
    for u in &upstreams {
        u.task.abort();
    }
    result
}

async fn run_with(plan: &Plan, upstreams: &[Running]) -> Result<ExperimentReport, Failure> {
    let scenario = &plan.scenario;
    let mut env = BTreeMap::new();
    for u in upstreams {
        env.insert(upstream_env_var(&u.name), u.addr.to_string());
    }
    // Prometheus and the smoke tester get their addresses before weir
    // starts, so that weir's config can name them.
    let planned_prometheus = match &scenario.prometheus {
        Some(spec) => {
            let planned = prometheus::Planned::new(spec).map_err(Failure::Start)?;
            env.insert(PROMETHEUS_VAR.into(), planned.url());
            Some(planned)
        }
        None => None,
    };
    let smoke_listener = match &scenario.smoke_tester {
        Some(_) => {
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| Failure::Start(format!("binding the smoke tester: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| Failure::Start(format!("the smoke tester: {e}")))?;
            env.insert(SMOKE_TESTER_VAR.into(), addr.to_string());
            Some(listener)
        }
        None => None,
    };
    let config_path = plan.dir.join("weir.yaml");
    // `weir.yaml` is the config in force, rewritten by the timeline (each
    // change also kept as `weir.timeline-N.yaml`); the one weir started
    // with is kept too.
    let initial_path = plan.dir.join("weir.initial.yaml");
    for path in [&initial_path, &config_path] {
        std::fs::write(path, &scenario.weir.config)
            .map_err(|e| Failure::Start(format!("writing {}: {e}", path.display())))?;
    }
    let starting = Instant::now();
    let weir = Weir::start(
        &plan.weir,
        &config_path,
        &env,
        &plan.dir.join("weir.log"),
        scenario.weir.token.clone(),
        READY_WITHIN,
    )
    .await
    .map_err(|e| Failure::Start(e.0))?;
    env.insert("WEIR_LISTEN".into(), weir.listen.to_string());
    env.insert("WEIR_ADMIN".into(), weir.admin.addr().to_string());
    if !plan.quiet {
        println!(
            "weir {} ready in {:.2} s (pid {}): public {}, admin {}",
            plan.weir.display(),
            starting.elapsed().as_secs_f64(),
            weir.pid().map_or("?".to_owned(), |p| p.to_string()),
            weir.listen,
            weir.admin.addr()
        );
        let list: Vec<String> = upstreams
            .iter()
            .map(|u| format!("{} {}", u.name, u.addr))
            .collect();
        println!("upstreams: {}", list.join(", "));
    }
    let prometheus = match &planned_prometheus {
        Some(planned) => {
            let starting = Instant::now();
            match planned
                .start(
                    weir.admin.addr(),
                    &plan.dir.join("prometheus"),
                    PROMETHEUS_READY_WITHIN,
                )
                .await
            {
                Ok(running) => {
                    if !plan.quiet {
                        println!(
                            "prometheus {} ready in {:.2} s, scraping weir's /metrics every second",
                            planned.url(),
                            starting.elapsed().as_secs_f64()
                        );
                    }
                    Some(running)
                }
                Err(e) => {
                    weir.stop(STOP_GRACE).await;
                    return Err(Failure::Start(e));
                }
            }
        }
        None => None,
    };

    // t = 0: the first request. A little ahead so every task is waiting.
    let start = Instant::now() + Duration::from_millis(200);
    let started_at = SystemTime::now() + Duration::from_millis(200);
    let names: Vec<String> = scenario.upstreams.iter().map(|u| u.name.clone()).collect();
    let observations = Arc::new(Observations::new(start, &names));
    let events = Arc::new(Events {
        quiet: plan.quiet,
        events: Mutex::new(Vec::new()),
    });
    let latest = Arc::new(Mutex::new(Vec::<RouteState>::new()));
    let (stop_tx, stop_rx) = watch::channel(false);

    let states: Vec<Arc<Upstream>> = upstreams.iter().map(|u| Arc::clone(&u.state)).collect();
    let sampler = tokio::spawn(sample(
        weir.admin.clone(),
        states.clone(),
        start,
        Arc::clone(&events),
        Arc::clone(&latest),
        stop_rx.clone(),
    ));
    let applied = Arc::new(Mutex::new(Applied {
        actions: vec![None; scenario.timeline.len()],
        configs: Vec::new(),
        failed: Vec::new(),
    }));
    let timeline = tokio::spawn(
        Timeline {
            scenario: scenario.clone(),
            applied: Arc::clone(&applied),
            dir: plan.dir.clone(),
            config_path: config_path.clone(),
            upstreams: upstreams
                .iter()
                .map(|u| (u.name.clone(), Arc::clone(&u.state)))
                .collect(),
            admin: weir.admin.clone(),
            start,
            events: Arc::clone(&events),
        }
        .run(),
    );
    let smoke_task = smoke_listener.map(|listener| {
        let requests = scenario
            .smoke_tester
            .as_ref()
            .and_then(|s| s.requests)
            .unwrap_or(smoke::DEFAULT_REQUESTS);
        let events = Arc::clone(&events);
        let report: Arc<dyn Fn(&smoke::Outcome) + Send + Sync> = Arc::new(move |outcome| {
            events.push(Event {
                t: since(start),
                kind: EventKind::Smoke,
                route: Some(outcome.route.clone()),
                action: None,
                from: None,
                to: None,
                revision: Some(outcome.revision.clone()),
                text: outcome.text(),
            });
        });
        tokio::spawn(smoke::serve(listener, weir.listen, requests, report))
    });
    let printer = (!plan.quiet).then(|| {
        tokio::spawn(print_seconds(
            scenario.duration.0,
            start,
            Arc::clone(&observations),
            Arc::clone(&latest),
        ))
    });

    let args = RunArgs {
        target: format!("http://{}{}", weir.listen, scenario.load.path),
        rate: scenario.load.rate,
        duration: scenario.duration.0,
        users: scenario.load.users,
        connections: scenario.load.connections.unwrap_or(DEFAULT_CONNECTIONS),
        headers: Vec::new(),
        json: false,
        allow_remote: false,
    };
    let observer: Arc<dyn run::Observer> = Arc::clone(&observations) as _;
    let hooks = Hooks {
        observer: Some(observer),
        progress: false,
        grace: LOAD_GRACE,
        start: Some(start),
    };
    let load = run::execute_with(&args, hooks).await;

    // Teardown, whatever the load did.
    if let Some(mut printer) = printer {
        // Let it print the last second's line, which comes 250 ms late.
        if tokio::time::timeout(Duration::from_millis(500), &mut printer)
            .await
            .is_err()
        {
            printer.abort();
        }
    }
    // Actions still pending at the end of the load are not applied.
    timeline.abort();
    let _ = timeline.await;
    let applied = std::mem::take(&mut *applied.lock().unwrap_or_else(PoisonError::into_inner));
    let _ = stop_tx.send(true);
    let samples = sampler.await.unwrap_or_default();
    let listen = weir.listen;
    if let Some(task) = smoke_task {
        task.abort();
    }
    let mut stopped = weir.stop(STOP_GRACE).await;
    if let Some(prometheus) = prometheus {
        prometheus.stop().await;
    }
    if !plan.quiet {
        println!("weir {stopped}");
    }
    let load = load.map_err(|e| Failure::Run(format!("the load generator failed: {e:#}")))?;
    if samples.is_empty() {
        stopped.push_str("; the admin API never answered during the run");
    }

    let mut configs = vec![(0.0, scenario.weir.config.clone())];
    configs.extend(applied.configs);
    let mut all_events =
        std::mem::take(&mut *events.events.lock().unwrap_or_else(PoisonError::into_inner));
    all_events.sort_by(|a, b| a.t.total_cmp(&b.t));
    let data = RunData {
        scenario: scenario.clone(),
        speed: plan.speed,
        started_at: rfc3339(started_at),
        weir: WeirInfo {
            binary: plan.weir.display().to_string(),
            listen: listen.to_string(),
            admin: env.get("WEIR_ADMIN").cloned().unwrap_or_default(),
            stopped,
        },
        upstreams: upstreams
            .iter()
            .map(|u| UpstreamInfo {
                name: u.name.clone(),
                address: u.addr.to_string(),
            })
            .collect(),
        recorded: observations.finish(),
        samples,
        events: all_events,
        actions: applied.actions,
        failed_actions: applied.failed,
        configs,
        env,
        upstream_stats: states.iter().map(|s| s.stats()).collect(),
        scheduled: load.total,
    };
    let report = report::build(&data);
    write_reports(&plan.dir, &report)?;
    Ok(report)
}

/// Writes `report.json` and `report.html` into `dir`.
///
/// # Errors
/// [`Failure::Run`] naming the file that could not be written.
fn write_reports(dir: &Path, report: &ExperimentReport) -> Result<(), Failure> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Failure::Run(format!("encoding report.json: {e}")))?;
    let path = dir.join("report.json");
    std::fs::write(&path, json)
        .map_err(|e| Failure::Run(format!("writing {}: {e}", path.display())))?;
    let page =
        html::render(report).map_err(|e| Failure::Run(format!("drawing report.html: {e}")))?;
    let path = dir.join("report.html");
    std::fs::write(&path, page)
        .map_err(|e| Failure::Run(format!("writing {}: {e}", path.display())))?;
    Ok(())
}

async fn start_upstreams(scenario: &Scenario) -> Result<Vec<Running>, Failure> {
    let mut running = Vec::new();
    for spec in &scenario.upstreams {
        let listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::Start(format!("binding upstream {}: {e}", spec.name)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::Start(format!("upstream {}: {e}", spec.name)))?;
        let args = UpstreamArgs {
            listen: addr,
            name: spec.name.clone(),
            error_rate: spec.error_rate,
            latency: spec.latency.unwrap_or_default(),
            fail_after: None,
        };
        let state = Arc::new(
            Upstream::new(&args)
                .map_err(|e| Failure::Start(format!("upstream {}: {e:#}", spec.name)))?,
        );
        let task = tokio::spawn(crate::upstream::serve(listener, Arc::clone(&state)));
        running.push(Running {
            name: spec.name.clone(),
            addr,
            state,
            task,
        });
    }
    Ok(running)
}

/// Seconds since `start`, to the millisecond (negative before it).
fn since(start: Instant) -> f64 {
    let now = Instant::now();
    let t = if now >= start {
        now.duration_since(start).as_secs_f64()
    } else {
        -start.duration_since(now).as_secs_f64()
    };
    round_ms(t)
}

// === impl Timeline ===

impl Timeline {
    /// Applies the actions at their offsets, in time order.
    async fn run(self) {
        let Timeline {
            scenario,
            applied,
            dir,
            config_path,
            upstreams,
            admin,
            start,
            events,
        } = self;
        let mut order: Vec<usize> = (0..scenario.timeline.len()).collect();
        order.sort_by_key(|&i| scenario.timeline[i].at);
        let lock = || applied.lock().unwrap_or_else(PoisonError::into_inner);
        for i in order {
            let action = &scenario.timeline[i];
            sleep_until(start + action.at.0).await;
            let Some(kind) = action.kind() else { continue };
            let (t, event_kind, route, text, took) = match kind {
                ActionKind::Config(text) => {
                    let copy = dir.join(format!("weir.timeline-{i}.yaml"));
                    let next = dir.join("weir.yaml.next");
                    let written = std::fs::write(&copy, text)
                        .and_then(|()| std::fs::write(&next, text))
                        .and_then(|()| std::fs::rename(&next, &config_path));
                    let t = since(start);
                    // weir follows the file by itself; the reload asked for
                    // here says whether it took the new one.
                    let (took, text) = match written {
                        Ok(()) => match admin.post("/api/v1/reload", "{}").await {
                            Ok((status, _)) if status.is_success() => {
                                lock().configs.push((t, text.to_owned()));
                                (
                                    true,
                                    format!(
                                        "timeline[{i}]: config rewritten and applied ({})",
                                        copy.display()
                                    ),
                                )
                            }
                            Ok((status, body)) => (
                                false,
                                format!(
                                    "timeline[{i}]: config rewritten ({}) but refused by weir → {status} {}",
                                    copy.display(),
                                    refusal_text(&body)
                                ),
                            ),
                            Err(e) => (
                                false,
                                format!(
                                    "timeline[{i}]: config rewritten ({}), its reload not confirmed: {e}",
                                    copy.display()
                                ),
                            ),
                        },
                        Err(e) => (false, format!("timeline[{i}]: config NOT rewritten: {e}")),
                    };
                    (t, EventKind::Config, None, text, took)
                }
                ActionKind::Fault(fault) => {
                    let update = FaultsUpdate {
                        error_rate: fault.error_rate,
                        latency: fault.latency,
                        latency_ms: None,
                        fail_after_ms: None,
                    };
                    let found = upstreams.iter().find(|(n, _)| *n == fault.upstream);
                    let text = match found {
                        Some((_, state)) => {
                            let now = state.update_faults(&update);
                            format!(
                                "timeline[{i}]: fault on {}: errorRate {}, latency {}",
                                fault.upstream, now.error_rate, now.latency
                            )
                        }
                        None => format!("timeline[{i}]: no upstream {}", fault.upstream),
                    };
                    (since(start), EventKind::Fault, None, text, found.is_some())
                }
                ActionKind::Command(command) => {
                    let t = since(start);
                    let (verb, body) = command.action.endpoint();
                    let path = format!("/api/v1/routes/{}/{verb}", command.route);
                    let (outcome, took) = match admin.post(&path, body).await {
                        Ok((status, body)) => (
                            format!("{status} {}", refusal_text(&body)),
                            status.is_success(),
                        ),
                        Err(e) => (format!("failed: {e}"), false),
                    };
                    (
                        t,
                        EventKind::Command,
                        Some(command.route.clone()),
                        format!(
                            "timeline[{i}]: {} {} → {}",
                            command.action.as_str(),
                            command.route,
                            outcome.trim()
                        ),
                        took,
                    )
                }
            };
            if let Some(slot) = lock().actions.get_mut(i) {
                *slot = Some(t);
            }
            if !took {
                lock().failed.push(text.clone());
            }
            events.push(Event {
                t,
                kind: event_kind,
                route,
                action: Some(i),
                from: None,
                to: None,
                revision: None,
                text,
            });
        }
    }
}

/// What an admin answer says: its `error`, or else the route's `phase`.
fn refusal_text(body: &[u8]) -> String {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    json.get("error")
        .or_else(|| json.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Samples the routes and the upstreams' counters every
/// [`SAMPLE_INTERVAL`] until `stop`, then once more; notes every change.
async fn sample(
    admin: Admin,
    upstreams: Vec<Arc<Upstream>>,
    start: Instant,
    events: Arc<Events>,
    latest: Arc<Mutex<Vec<RouteState>>>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut previous: BTreeMap<String, RouteState> = BTreeMap::new();
    let mut failing: Option<String> = None;
    let mut tick = tokio::time::interval_at(start, SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let t = since(start);
        let received: Vec<u64> = upstreams.iter().map(|u| u.stats().requests).collect();
        match admin
            .get("/api/v1/routes")
            .await
            .and_then(|(status, body)| {
                if status.is_success() {
                    parse_routes(&body)
                } else {
                    Err(format!("/api/v1/routes answered {status}"))
                }
            }) {
            Ok(routes) => {
                if failing.take().is_some() {
                    events.push(weir_event(t, "the admin API answers again".into()));
                }
                for r in &routes {
                    for e in changes(t, previous.get(&r.name), r) {
                        events.push(e);
                    }
                    previous.insert(r.name.clone(), r.clone());
                }
                latest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone_from(&routes);
                samples.push(Sample {
                    t,
                    routes,
                    received,
                });
            }
            Err(e) => {
                if failing.is_none() {
                    events.push(weir_event(t, format!("the admin API does not answer: {e}")));
                }
                failing = Some(e);
            }
        }
        if last {
            return samples;
        }
    }
}

fn weir_event(t: f64, text: String) -> Event {
    Event {
        t,
        kind: EventKind::Weir,
        route: None,
        action: None,
        from: None,
        to: None,
        revision: None,
        text,
    }
}

/// Reads `GET /api/v1/routes` as the admin API's own status type, which
/// tolerates missing fields and phases this build does not know.
pub(crate) fn parse_routes(body: &[u8]) -> Result<Vec<RouteState>, String> {
    let routes: Vec<RouteStatus> = serde_json::from_slice(body)
        .map_err(|e| format!("/api/v1/routes is not a list of route statuses: {e}"))?;
    Ok(routes
        .into_iter()
        .map(|r| RouteState {
            stage: r
                .blue_green
                .and_then(|b| b.stage)
                .map(|s| s.as_str().to_owned()),
            name: r.name,
            phase: r.phase.as_str().to_owned(),
            step: r.step_index.map(|i| i as u64),
            step_count: r.step_count as u64,
            weight: r.canary_weight,
            canary_revision: r.canary_revision,
            stable_revision: r.stable_revision,
            message: r.message,
            reason: r.analysis.and_then(|a| a.reason),
        })
        .collect())
}

/// The events between two samples of one route.
pub(crate) fn changes(t: f64, before: Option<&RouteState>, now: &RouteState) -> Vec<Event> {
    let route = Some(now.name.clone());
    let event = |kind, from: Option<Value>, to: Option<Value>, text: String| Event {
        t,
        kind,
        route: route.clone(),
        action: None,
        from,
        to,
        revision: None,
        text,
    };
    // Numbered from 1 as weir's own messages and `weir status` number
    // them (the report's values stay the 0-based `stepIndex`).
    let step_text = |r: &RouteState| match r.step {
        Some(s) if s < r.step_count => format!("step {}/{}", s + 1, r.step_count),
        Some(_) => format!("all {} steps done", r.step_count),
        None => "no step".to_owned(),
    };
    let Some(before) = before else {
        return vec![event(
            EventKind::Phase,
            None,
            Some(Value::from(now.phase.clone())),
            format!(
                "{}: {} at {}, weight {} %{}",
                now.name,
                now.phase,
                step_text(now),
                now.weight,
                now.canary_revision
                    .as_deref()
                    .map_or(String::new(), |r| format!(", canary {r}"))
            ),
        )];
    };
    let mut out = Vec::new();
    if before.canary_revision != now.canary_revision {
        out.push(event(
            EventKind::Revision,
            before.canary_revision.clone().map(Value::from),
            now.canary_revision.clone().map(Value::from),
            format!(
                "{}: canary revision {} → {} (stable {})",
                now.name,
                before.canary_revision.as_deref().unwrap_or("none"),
                now.canary_revision.as_deref().unwrap_or("none"),
                now.stable_revision.as_deref().unwrap_or("?")
            ),
        ));
    }
    if before.phase != now.phase {
        out.push(event(
            EventKind::Phase,
            Some(Value::from(before.phase.clone())),
            Some(Value::from(now.phase.clone())),
            format!("{}: phase {} → {}", now.name, before.phase, now.phase),
        ));
        if now.phase == Phase::Aborted.as_str() {
            // weir's message names the cause when something other than the
            // built-in judge aborted (an analysis run, a webhook, a command);
            // the judge's last reason otherwise.
            let why = if now.message.starts_with("aborted") {
                now.message.clone()
            } else {
                now.reason
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| now.message.clone())
            };
            let mut abort = event(
                EventKind::Abort,
                Some(Value::from(before.weight)),
                Some(Value::from(now.weight)),
                format!(
                    "{}: ABORTED canary {} at weight {} → {}: {why}",
                    now.name,
                    now.canary_revision.as_deref().unwrap_or("?"),
                    before.weight,
                    now.weight
                ),
            );
            abort.revision = now.canary_revision.clone();
            out.push(abort);
        }
    }
    if before.stage != now.stage
        && let Some(stage) = &now.stage
    {
        out.push(event(
            EventKind::Stage,
            before.stage.clone().map(Value::from),
            Some(Value::from(stage.clone())),
            format!(
                "{}: blue-green stage {} → {stage}{}",
                now.name,
                before.stage.as_deref().unwrap_or("none"),
                now.canary_revision
                    .as_deref()
                    .map_or(String::new(), |r| format!(" (new revision {r})"))
            ),
        ));
    }
    if before.step != now.step {
        out.push(event(
            EventKind::Step,
            before.step.map(Value::from),
            now.step.map(Value::from),
            format!("{}: {} → {}", now.name, step_text(before), step_text(now)),
        ));
    }
    if before.weight != now.weight {
        out.push(event(
            EventKind::Weight,
            Some(Value::from(before.weight)),
            Some(Value::from(now.weight)),
            format!(
                "{}: weight {} % → {} %",
                now.name, before.weight, now.weight
            ),
        ));
    }
    out
}

/// Prints one line per second of load: weight and phase per route, req/s
/// and error % per upstream.
async fn print_seconds(
    duration: Duration,
    start: Instant,
    observations: Arc<Observations>,
    latest: Arc<Mutex<Vec<RouteState>>>,
) {
    let seconds = duration.as_secs_f64().ceil() as u64;
    for s in 0..seconds {
        // The routes as the second ends; its answers a quarter second
        // later, when nearly all are in.
        let end = start + Duration::from_secs(s + 1);
        sleep_until(end).await;
        let routes = latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        sleep_until(end + Duration::from_millis(250)).await;
        let live = observations.live(s);
        let names = observations.names();
        let mut line = format!("[{:>6}s]", s + 1);
        for r in &routes {
            line.push_str(&format!(
                " {} {:>5.1}% {:<11} {}",
                r.name,
                r.weight,
                r.phase,
                // Numbered from 1, as the events above number them.
                r.step.map_or("-".to_owned(), |s| format!(
                    "{}/{}",
                    (s + 1).min(r.step_count),
                    r.step_count
                ))
            ));
        }
        for (i, name) in names.iter().enumerate() {
            let (n, e) = live.by_upstream.get(i).copied().unwrap_or((0, 0));
            if name == "-" && n == 0 {
                continue;
            }
            line.push_str(&format!(
                " | {name} {n:>4}/s {:>5.1}%",
                report::rate(e, n) * 100.0
            ));
        }
        if live.failures > 0 {
            line.push_str(&format!(" | no answer {}", live.failures));
        }
        println!("{line}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let (date, time, ms) = civil(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

/// `YYYYMMDD-HHMMSS` in UTC, for directory names.
pub(crate) fn compact_timestamp(at: SystemTime) -> String {
    let (date, time, _) = civil(at);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        date.0, date.1, date.2, time.0, time.1, time.2
    )
}

/// UTC calendar date, time of day and milliseconds of `at` (H. Hinnant's
/// days-to-civil algorithm).
fn civil(at: SystemTime) -> ((i64, u32, u32), (u64, u64, u64), u32) {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        (year, month, day),
        (rem / 3600, rem % 3600 / 60, rem % 60),
        since.subsec_millis(),
    )
}

// === impl Events ===

impl Events {
    fn push(&self, event: Event) {
        if !self.quiet {
            println!("[{:>7.2}s] * {}", event.t, event.text);
        }
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20.123Z");
        assert_eq!(compact_timestamp(at), "20231114-221320");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn route_changes_become_events() {
        let body = br#"[{"name":"web","phase":"Progressing","stepIndex":0,"stepCount":5,
            "canaryWeight":20.0,"canaryRevision":"v2","stableRevision":"v1","message":"",
            "analysis":{"reason":null}}]"#;
        let routes = parse_routes(body).unwrap();
        let first = changes(1.0, None, &routes[0]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind, EventKind::Phase);
        // Steps are numbered as weir numbers them: stepIndex 0 is step 1.
        assert_eq!(
            first[0].text,
            "web: Progressing at step 1/5, weight 20 %, canary v2"
        );
        let mut next = routes[0].clone();
        next.step = Some(1);
        let step = &changes(1.5, Some(&routes[0]), &next)[0];
        assert_eq!(step.kind, EventKind::Step);
        assert_eq!(step.text, "web: step 1/5 → step 2/5");
        assert_eq!(
            (step.from.clone(), step.to.clone()),
            (Some(Value::from(0)), Some(Value::from(1)))
        );
        next.step = Some(5);
        let done = &changes(1.7, Some(&routes[0]), &next)[0];
        assert_eq!(done.text, "web: step 1/5 → all 5 steps done");
        let mut aborted = routes[0].clone();
        aborted.phase = "Aborted".into();
        aborted.weight = 0.0;
        aborted.reason = Some("canary error rate 30 %".into());
        let kinds: Vec<EventKind> = changes(2.0, Some(&routes[0]), &aborted)
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![EventKind::Phase, EventKind::Abort, EventKind::Weight]
        );
        let abort = &changes(2.0, Some(&routes[0]), &aborted)[1];
        assert_eq!(abort.revision.as_deref(), Some("v2"));
        assert!(abort.text.contains("30 %"), "{}", abort.text);
        assert!(parse_routes(b"{}").is_err());
    }
}
