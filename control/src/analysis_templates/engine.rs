//! The runs of every route: each run is a tokio task that measures its
//! metrics when due (providers in [`super::providers`]) and records them in
//! the run's [`RunState`] kept here, behind a short synchronous lock. The
//! control loop only reads: [`AnalysisRuns::ensure`] starts a run the
//! rollout wants and returns its phase, [`AnalysisRuns::keep_only`] ends
//! those it no longer wants. Nothing here waits on the network while the
//! lock is held.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::proto::{MetricFamily, MetricType};
use weir_config::AnalysisRef;
use weir_proxy::metrics::Family;

use super::providers::{self, HttpClient};
use super::run::{Measurement, RunKey, RunPhase, RunState, bounded_message, judge, shown};
use crate::process::now_ms;

/// Finished runs kept per route for the admin API.
pub const KEPT_FINISHED_RUNS: usize = 10;

/// `weir_analysis_measurements_total{route, template, metric, phase}`.
pub const ANALYSIS_MEASUREMENTS: Family = Family {
    name: "weir_analysis_measurements_total",
    help: "Measurements of analysis template metrics, by route, template, metric and phase.",
    kind: MetricType::COUNTER,
    labels: &["route", "template", "metric", "phase"],
};

/// The analysis runs of every route; cheap to clone (one shared table).
#[derive(Clone)]
pub struct AnalysisRuns {
    inner: Arc<Mutex<Table>>,
    client: HttpClient,
}

/// A run as the admin API shows it.
#[derive(Debug, Clone)]
pub struct RunView {
    /// Which run of the rollout.
    pub key: RunKey,
    /// Its state.
    pub state: RunState,
}

/// A metric due for a measurement: its index in the run, and the metric.
type DueMetric = (usize, Arc<weir_config::Metric>);

#[derive(Default)]
struct Table {
    routes: BTreeMap<String, RouteRuns>,
    /// Measurements by (route, template, metric, phase).
    measurements: BTreeMap<(String, String, String, &'static str), u64>,
}

#[derive(Default)]
struct RouteRuns {
    /// Runs the rollout wants (running or ended), newest last.
    current: Vec<Current>,
    /// Runs it no longer wants, newest last.
    finished: VecDeque<RunView>,
}

struct Current {
    view: RunView,
    task: Option<tokio::task::AbortHandle>,
    /// The run ended Inconclusive and the rollout was seen held on it.
    held_the_rollout: bool,
    /// A state in force (written, or held in memory) wanted the run, not
    /// only a decision still to be written (see [`AnalysisRuns::entered`]).
    entered: bool,
}

impl std::fmt::Debug for AnalysisRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnalysisRuns")
    }
}

impl Default for AnalysisRuns {
    fn default() -> Self {
        AnalysisRuns::new()
    }
}

// === impl AnalysisRuns ===

impl AnalysisRuns {
    /// No runs yet.
    pub fn new() -> AnalysisRuns {
        AnalysisRuns {
            inner: Arc::new(Mutex::new(Table::default())),
            client: providers::client(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The phase and message of run `key` of `route`, starting it (a task
    /// on the current tokio runtime) when it is not known yet, or when it
    /// was waiting for templates that `analysis` now resolves, or when it is
    /// a background run that held the rollout Inconclusive and an operator
    /// released the hold (`held` false again): as Argo Rollouts starts a
    /// new run, so that its old result does not hold every later step.
    /// Never waits on a measurement.
    pub fn ensure(
        &self,
        route: &str,
        key: &RunKey,
        analysis: &AnalysisRef,
        held: bool,
        now_ms: u64,
    ) -> (RunPhase, String) {
        let mut table = self.lock();
        let runs = table.routes.entry(route.to_owned()).or_default();
        if let Some(i) = runs.current.iter().position(|c| c.view.key == *key) {
            let current = &runs.current[i];
            let released = key.kind == super::RunKind::Background
                && current.view.state.phase == RunPhase::Inconclusive
                && current.held_the_rollout
                && !held;
            let state = &current.view.state;
            // A run waiting for its templates is replaced once they are
            // resolved (or waits with the new reason); any other run keeps
            // the templates it started with.
            let replace = released
                || (state.waiting_for.is_some() && state.waiting_for != analysis.waiting_for);
            if !replace {
                return (state.phase, state.message.clone());
            }
            let replaced = runs.current.remove(i);
            if let Some(task) = replaced.task {
                task.abort();
            }
            if released {
                runs.finished.push_back(replaced.view);
                if runs.finished.len() > KEPT_FINISHED_RUNS {
                    runs.finished.pop_front();
                }
            }
        }
        let state = RunState::new(analysis, now_ms);
        let answer = (state.phase, state.message.clone());
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let drive = drive(self.clone(), route.to_owned(), key.clone());
            runtime.spawn(drive).abort_handle()
        });
        tracing::info!(
            route,
            run = %key,
            templates = ?analysis.templates,
            "analysis run started"
        );
        runs.current.push(Current {
            view: RunView {
                key: key.clone(),
                state,
            },
            task,
            held_the_rollout: false,
            entered: false,
        });
        answer
    }

    /// Notes that the state in force of `route` wants runs `keys`: a run
    /// started for a decision whose write then failed (a step the rollout
    /// never entered) is never noted, and [`Self::keep_only`] drops it
    /// when it ends without having measured anything, rather than keep it
    /// among the rollout's runs.
    pub fn entered(&self, route: &str, keys: &[RunKey]) {
        let mut table = self.lock();
        if let Some(runs) = table.routes.get_mut(route) {
            for run in &mut runs.current {
                if keys.contains(&run.view.key) {
                    run.entered = true;
                }
            }
        }
    }

    /// Whether a state in force of `route` wanted its current run `key`
    /// (see [`Self::entered`]).
    pub fn is_entered(&self, route: &str, key: &RunKey) -> bool {
        self.lock().routes.get(route).is_some_and(|runs| {
            runs.current
                .iter()
                .any(|run| run.view.key == *key && run.entered)
        })
    }

    /// Notes that the rollout is held while run `key` of `route` is
    /// Inconclusive: once an operator releases the hold, [`Self::ensure`]
    /// starts a background run again.
    pub fn held_the_rollout(&self, route: &str, key: &RunKey) {
        let mut table = self.lock();
        if let Some(current) = table
            .routes
            .get_mut(route)
            .and_then(|runs| runs.current.iter_mut().find(|c| c.view.key == *key))
        {
            current.held_the_rollout = true;
        }
    }

    /// Ends the runs of `route` other than `keep` (terminating those still
    /// measuring, the rollout being in `phase`) and keeps them among the
    /// finished runs; one no state in force wanted that measured nothing
    /// is dropped (see [`Self::entered`]).
    pub fn keep_only(&self, route: &str, keep: &[RunKey], now_ms: u64, phase: &str) {
        let mut table = self.lock();
        let Some(runs) = table.routes.get_mut(route) else {
            return;
        };
        if runs.current.iter().all(|c| keep.contains(&c.view.key)) {
            return;
        }
        let (kept, ended): (Vec<Current>, Vec<Current>) = std::mem::take(&mut runs.current)
            .into_iter()
            .partition(|c| keep.contains(&c.view.key));
        runs.current = kept;
        for mut run in ended {
            if let Some(task) = run.task.take() {
                task.abort();
            }
            let measured = run
                .view
                .state
                .metrics
                .iter()
                .any(|m| !m.measurements.is_empty());
            if !run.entered && !measured {
                continue;
            }
            let why = match run.view.key.kind {
                // Started for a decision whose write failed, then decided
                // otherwise.
                _ if !run.entered => format!(
                    "the rollout never entered it: the state that would have was not written \
                     (it is {phase})"
                ),
                super::RunKind::Step(_) => format!("the rollout left the step (it is {phase})"),
                super::RunKind::PrePromotion(_) | super::RunKind::PostPromotion(_) => {
                    format!("the rollout left the stage (it is {phase})")
                }
                super::RunKind::Background => format!("the rollout is {phase}"),
            };
            run.view.state.terminate(now_ms, &why);
            runs.finished.push_back(run.view);
            if runs.finished.len() > KEPT_FINISHED_RUNS {
                runs.finished.pop_front();
            }
        }
    }

    /// Ends every run of routes not in `routes` (removed from the config),
    /// and drops their `weir_analysis_measurements_total` series.
    pub fn forget_other_routes(&self, routes: &[&str]) {
        let live: std::collections::HashSet<&str> = routes.iter().copied().collect();
        let mut table = self.lock();
        table
            .measurements
            .retain(|(route, ..), _| live.contains(route.as_str()));
        table.routes.retain(|name, runs| {
            let keep = live.contains(name.as_str());
            if !keep {
                for run in &mut runs.current {
                    if let Some(task) = run.task.take() {
                        task.abort();
                    }
                }
            }
            keep
        });
    }

    /// The runs of `route`, finished ones first, oldest first.
    pub fn runs(&self, route: &str) -> Vec<RunView> {
        let table = self.lock();
        table.routes.get(route).map_or_else(Vec::new, |runs| {
            runs.finished
                .iter()
                .cloned()
                .chain(runs.current.iter().map(|c| c.view.clone()))
                .collect()
        })
    }

    /// `weir_analysis_measurements_total`, empty before any measurement.
    pub fn metric_families(&self) -> Vec<MetricFamily> {
        let table = self.lock();
        let samples: Vec<_> = table
            .measurements
            .iter()
            .map(|((route, template, metric, phase), count)| {
                ANALYSIS_MEASUREMENTS.counter(&[route, template, metric, phase], *count)
            })
            .collect();
        if samples.is_empty() {
            return Vec::new();
        }
        vec![ANALYSIS_MEASUREMENTS.with(samples)]
    }

    /// What is due next in run `key` of `route`, with the metrics to
    /// measure; `None` when the run has ended or is gone.
    fn next_due(&self, route: &str, key: &RunKey) -> Option<(u64, Vec<DueMetric>)> {
        let table = self.lock();
        let current = table
            .routes
            .get(route)?
            .current
            .iter()
            .find(|c| c.view.key == *key)?;
        let state = &current.view.state;
        let (at, which) = state.next_due()?;
        Some((
            at,
            which
                .into_iter()
                .filter_map(|i| state.metrics.get(i).map(|m| (i, Arc::clone(&m.metric))))
                .collect(),
        ))
    }

    fn record(&self, route: &str, key: &RunKey, results: Vec<(usize, Measurement)>) {
        let mut table = self.lock();
        let Table {
            routes,
            measurements,
        } = &mut *table;
        let Some(current) = routes
            .get_mut(route)
            .and_then(|runs| runs.current.iter_mut().find(|c| c.view.key == *key))
        else {
            return;
        };
        let state = &mut current.view.state;
        for (index, measurement) in results {
            if let Some(metric) = state.metrics.get(index) {
                let label = (
                    route.to_owned(),
                    metric.metric.template.to_string(),
                    metric.metric.name.to_string(),
                    measurement.phase.as_str(),
                );
                *measurements.entry(label).or_default() += 1;
            }
            state.record(index, measurement);
        }
        if state.phase.is_completed() {
            tracing::info!(
                route,
                run = %key,
                phase = state.phase.as_str(),
                "analysis run ended: {}",
                state.message
            );
        }
    }
}

/// Measures run `key` of `route` until it ends or is terminated.
async fn drive(runs: AnalysisRuns, route: String, key: RunKey) {
    while let Some((due, metrics)) = runs.next_due(&route, &key) {
        let now = now_ms();
        if due > now {
            tokio::time::sleep(Duration::from_millis(due - now)).await;
        }
        let client = &runs.client;
        let measured = metrics.into_iter().map(|(index, metric)| async move {
            let started_ms = now_ms();
            let measured = providers::measure(client, &metric.provider).await;
            let (phase, value, message) = match measured.value {
                Ok(value) => {
                    let (phase, message) = judge(&metric, &value);
                    (phase, Some(shown(value)), message)
                }
                Err(error) => (RunPhase::Error, None, Some(bounded_message(error))),
            };
            (
                index,
                Measurement {
                    phase,
                    value,
                    message,
                    started_ms,
                    finished_ms: now_ms(),
                },
            )
        });
        let results = futures_util::future::join_all(measured).await;
        runs.record(&route, &key, results);
    }
}

// === JSON for the admin API ===

/// The runs of a route as `GET /api/v1/routes/{name}/analysisruns` answers
/// them: each run with its templates, phase, message, start and end, and
/// every metric with its counts and measurements.
pub fn runs_json(views: &[RunView]) -> serde_json::Value {
    use crate::cluster::status_codec::format_time;
    let runs: Vec<serde_json::Value> = views
        .iter()
        .map(|view| {
            let state = &view.state;
            let metrics: Vec<serde_json::Value> = state
                .metrics
                .iter()
                .map(|m| {
                    let (provider, resolved_key) = match &m.metric.provider {
                        weir_config::Provider::Prometheus(_) => ("prometheus", "query"),
                        weir_config::Provider::Web(_) => ("web", "request"),
                    };
                    let measurements: Vec<serde_json::Value> = m
                        .measurements
                        .iter()
                        .map(|x| {
                            serde_json::json!({
                                "phase": x.phase,
                                "value": x.value.as_ref().map(weir_config::condition::Value::to_json),
                                "message": x.message,
                                "startedAt": format_time(x.started_ms),
                                "finishedAt": format_time(x.finished_ms),
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "name": &*m.metric.name,
                        "template": &*m.metric.template,
                        "phase": m.phase,
                        "message": m.message,
                        "provider": provider,
                        resolved_key: providers::resolved(&m.metric.provider),
                        "successCondition": m.metric.success_condition.as_ref().map(ToString::to_string),
                        "failureCondition": m.metric.failure_condition.as_ref().map(ToString::to_string),
                        "dryRun": m.metric.dry_run,
                        "count": m.counted(),
                        "successful": m.successful,
                        "failed": m.failed,
                        "inconclusive": m.inconclusive,
                        "error": m.errors,
                        "consecutiveError": m.consecutive_errors,
                        "measurements": measurements,
                    })
                })
                .collect();
            let step = view.key.kind.step_index();
            serde_json::json!({
                "name": view.key.to_string(),
                "kind": view.key.kind.as_str(),
                "stepIndex": step,
                "rolloutSeq": view.key.rollout_seq,
                "templates": state.templates.iter().map(|t| &**t).collect::<Vec<_>>(),
                "phase": state.phase,
                "message": state.message,
                "startedAt": format_time(state.started_ms),
                "finishedAt": state.finished_ms.map(format_time),
                "metrics": metrics,
            })
        })
        .collect();
    serde_json::Value::Array(runs)
}
