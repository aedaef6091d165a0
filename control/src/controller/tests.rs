//! The control state against an in-memory store: log lines carry their
//! route's span; a state being written holds no reader up; a tick writes
//! the states of its routes together; a state file out of range holds its
//! route; an abort whose write failed is written once the store takes it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use weir_config::Weight;

use super::state::RestoreError;
use super::{ControlState, transitions};
use crate::fixtures::{self, GatedStore, START_MS};
use crate::persist::{FileStore, MemoryStore};
use crate::rollout::{Command, Phase};
use crate::test_log::capture_this_thread;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_answered_while_a_state_is_written() {
    let (store, entered_rx, release_tx) = GatedStore::new();
    let text = fixtures::config_text(None, &fixtures::route("web", Some("[{setWeight: 20}]")));
    let (process, _clock) =
        fixtures::process_with(&text, "/nonexistent/weir.yaml".into(), store.clone()).await;
    store.armed.store(true, Relaxed);

    let commanding = Arc::clone(&process);
    let command =
        tokio::spawn(async move { transitions::command(&commanding, "web", Command::Abort).await });
    let began =
        tokio::task::spawn_blocking(move || entered_rx.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("the waiting task");
    assert!(began.is_ok(), "the abort's state write began");

    // The write waits for the test; the control lock is free meanwhile, and
    // the abort has not taken effect before its state is written.
    let phase = tokio::time::timeout(Duration::from_secs(10), async {
        let control = process.control.lock().await;
        control.status("web", START_MS).map(|s| s.phase)
    })
    .await
    .expect("the status is answered while a state is written");
    assert_eq!(phase, Some(Phase::Progressing));

    release_tx.send(()).expect("release");
    let published = tokio::time::timeout(Duration::from_secs(10), command)
        .await
        .expect("the command ends once written")
        .expect("the command task")
        .expect("aborted");
    assert!(
        published.is_some(),
        "the weight changed: a snapshot was published"
    );
    let control = process.control.lock().await;
    assert_eq!(control.rollouts["web"].phase, Phase::Aborted);
    assert_eq!(
        store.inner.get("web").map(|s| s.phase),
        Some(Phase::Aborted)
    );
}

#[tokio::test]
async fn transitions_are_logged_in_their_routes_span() {
    let captured = capture_this_thread();
    let routes = [
        fixtures::route("spanned-web", Some("[{setWeight: 20}, {pause: {}}]")),
        fixtures::route("spanned-api", Some("[{setWeight: 20}, {pause: {}}]")),
    ]
    .concat();
    let loaded = fixtures::loaded(&fixtures::config_text(None, &routes));
    let resolved = fixtures::resolved(&loaded).await;
    let store = Arc::new(MemoryStore::default());
    let mut control = ControlState::restore_with(loaded, resolved, store, START_MS)
        .unwrap_or_else(|d| panic!("restore: {d:?}"));
    control
        .command("spanned-api", Command::Abort, START_MS + 1_000)
        .await
        .expect("aborted");

    let text = captured.text();
    let logged = |route: &str, kind: &str| {
        text.lines()
            .any(|l| l.contains(&format!("route{{route={route}}}")) && l.contains(kind))
    };
    assert!(logged("spanned-web", "kind=Started"), "{text}");
    assert!(logged("spanned-api", "kind=Started"), "{text}");
    assert!(logged("spanned-api", "kind=Aborted"), "{text}");
    assert!(!logged("spanned-web", "kind=Aborted"), "{text}");
}

/// A state file as weir writes it, of a rollout of `canary` at step `step`.
fn state_file(route: &str, canary: &str, seq: u64, step: u64) -> String {
    format!(
        r#"{{"route":"{route}","phase":"Progressing","stepIndex":{step},"canaryWeight":20,
            "rolloutSeq":{seq},"stableRevision":"v1","canaryRevision":"{canary}",
            "promotedRevision":null,"pauseDeadlineMs":null,"pauseRemainingMs":null,
            "held":false,"rolloutStartedMs":{START_MS},"failures":0,"message":"at step 1",
            "abortReason":null,"lastJudgement":null}}"#
    )
}

/// A state file holding a number the machine has no room after (a hand
/// edit) is unreadable: its route comes up Paused at weight 0 and runs no
/// step, the file is kept aside, and the log names the file and the field.
#[tokio::test]
async fn a_state_file_with_a_number_out_of_range_holds_its_route_at_weight_zero() {
    let captured = capture_this_thread();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let max = u64::MAX;
    // The config's canary v2, at a step with no next one.
    let step_file = dir.path().join("range-step.json");
    std::fs::write(&step_file, state_file("range-step", "v2", 1, max)).expect("written");
    // The last rollout was of v0; the config's v2 would be rollout u64::MAX + 1.
    let seq_file = dir.path().join("range-seq.json");
    std::fs::write(&seq_file, state_file("range-seq", "v0", max, 0)).expect("written");
    let routes = [
        fixtures::route("range-step", Some("[{setWeight: 20}, {pause: {}}]")),
        fixtures::route("range-seq", Some("[{setWeight: 20}, {pause: {}}]")),
    ]
    .concat();
    let loaded = fixtures::loaded(&fixtures::config_text(None, &routes));
    let resolved = fixtures::resolved(&loaded).await;
    let store = FileStore::open(dir.path().to_owned()).expect("the state directory");
    let control = ControlState::restore_with(loaded, resolved, Arc::new(store), START_MS)
        .unwrap_or_else(|d| panic!("restore: {d:?}"));

    let text = captured.text();
    for (route, file, field) in [
        ("range-step", &step_file, "stepIndex"),
        ("range-seq", &seq_file, "rolloutSeq"),
    ] {
        let state = &control.rollouts[route];
        assert_eq!(
            (
                state.phase,
                state.step_index,
                state.canary_weight,
                state.held
            ),
            (Phase::Paused, None, Weight::ZERO, true),
            "{route}"
        );
        assert_eq!(state.rollout_seq, 1, "{route}");
        let named = format!("{}: {field}: {max} leaves no room", file.display());
        assert!(state.message.contains(&named), "{route}: {}", state.message);
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("route{{route={route}}}"))
                    && l.contains("rollout state unreadable")
                    && l.contains(&named)),
            "{route}: {text}"
        );
        let aside = std::fs::read_dir(dir.path())
            .expect("the state directory")
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{route}.json.unreadable-"))
            });
        assert!(aside, "{route}: the unreadable file is kept aside");
    }
}

/// The routes of [`a_tick_writes_the_states_of_its_routes_together`].
const TOGETHER: usize = 5;

/// A tick that moves several routes at once writes their states together:
/// a store whose writes hang (an API server that does not answer) holds the
/// tick, and the transition lock every command waits for, about one write
/// timeout, not one per route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_writes_the_states_of_its_routes_together() {
    let (store, entered_rx, release_tx) = GatedStore::new();
    let steps = "[{setWeight: 5}, {pause: {duration: 30s}}, {setWeight: 50}, {pause: {}}]";
    let names: Vec<String> = (0..TOGETHER).map(|i| format!("together-{i}")).collect();
    let routes: String = names
        .iter()
        .map(|name| fixtures::route(name, Some(steps)))
        .collect();
    let text = fixtures::config_text(None, &routes);
    let (process, clock) =
        fixtures::process_with(&text, "/nonexistent/weir.yaml".into(), store.clone()).await;
    store.armed.store(true, Relaxed);

    // Every route's first step is over: one tick moves them all.
    clock.advance(Duration::from_secs(60));
    let ticking = Arc::clone(&process);
    let tick = tokio::spawn(async move {
        transitions::tick(&ticking, |_, _| weir_proxy::metrics::RoleCounts::zero()).await
    });
    let began = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut began = 0;
        while began < TOGETHER {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if entered_rx.recv_timeout(left).is_err() {
                break;
            }
            began += 1;
        }
        began
    })
    .await
    .expect("the waiting task");
    // Let every write go on, those waiting and those to come.
    for _ in 0..TOGETHER {
        release_tx.send(()).expect("release");
    }
    assert_eq!(
        began, TOGETHER,
        "the tick's state writes were not in flight together"
    );

    tokio::time::timeout(Duration::from_secs(10), tick)
        .await
        .expect("the tick ends once its writes answer")
        .expect("the tick task");
    let control = process.control.lock().await;
    for name in &names {
        assert_eq!(
            (
                control.rollouts[name].phase,
                control.rollouts[name].step_index
            ),
            (Phase::Paused, Some(1)),
            "{name}"
        );
        assert_eq!(
            store.inner.get(name).map(|s| s.step_index),
            Some(Some(1)),
            "{name}: written"
        );
    }
}

/// The files of a state directory and their bytes, sorted by name.
fn state_files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("the state directory")
        .filter_map(Result::ok)
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("a state file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// A config behind its promotion at start (the state says Promoted v2, the
/// config still names v1 as stable and brings v3) is refused as a reload
/// would be, naming the route and the change needed, and nothing is written:
/// not the refused route, not a route met for the first time, not an
/// unreadable file set aside. Naming v2 as the canary again, or as stable,
/// starts normally.
#[tokio::test]
async fn a_config_behind_its_promotion_at_start_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let steps = Some("[{setWeight: 50}, {pause: {}}]");
    let shop = fixtures::route("shop", steps);
    let restore = |text: String| {
        let store = Arc::new(FileStore::open(dir.path().to_owned()).expect("the state directory"));
        restored(text, store)
    };
    let mut control = restore(fixtures::config_text(None, &shop))
        .await
        .unwrap_or_else(|e| panic!("restore: {e:?}"));
    control
        .command("shop", Command::PromoteFull, START_MS + 1_000)
        .await
        .expect("promoted");
    drop(control);
    std::fs::write(dir.path().join("broken.json"), "not json").expect("written");
    let before = state_files(dir.path());

    let with = |shop: &str| {
        let routes = [
            fixtures::route("fresh", steps),
            shop.to_owned(),
            fixtures::route("broken", steps),
        ];
        fixtures::config_text(None, &routes.concat())
    };
    let v3 = shop.replace("canary: {revision: v2", "canary: {revision: v3");
    let diagnostics = match restore(with(&v3)).await {
        Err(RestoreError::Config(diagnostics)) => diagnostics,
        Err(RestoreError::State(problems)) => panic!("refused as a config: {problems:?}"),
        Ok(control) => panic!("started: {:?}", control.rollouts.get("shop")),
    };
    let paths: Vec<&str> = diagnostics.0.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["routes[1].canary.revision"], "{diagnostics}");
    assert_eq!(
        diagnostics.0[0].message,
        "route shop: set stable.revision to v2 (promoted) before starting v3, \
         or name v2 as the canary again"
    );
    assert_eq!(state_files(dir.path()), before, "nothing is written");

    // The strategy (and the canary) dropped, stable still v1: refused too,
    // at `stable.revision`, rather than everything going back to v1.
    // (v2 as the canary of a fixed split would serve at its weight, 10 %.)
    let fixed = fixtures::route("shop", None);
    let dropped = shop
        .lines()
        .take_while(|l| !l.starts_with("    canary"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    for (what, route) in [("a fixed split", &fixed), ("no canary", &dropped)] {
        let diagnostics = match restore(with(route)).await {
            Err(RestoreError::Config(diagnostics)) => diagnostics,
            Err(RestoreError::State(problems)) => panic!("{what}: {problems:?}"),
            Ok(control) => panic!("{what}: started: {:?}", control.rollouts.get("shop")),
        };
        let paths: Vec<&str> = diagnostics.0.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            ["routes[1].stable.revision"],
            "{what}: {diagnostics}"
        );
        assert_eq!(
            state_files(dir.path()),
            before,
            "{what}: nothing is written"
        );
    }

    // v2 named as the canary again: still Promoted, at 100 %.
    let control = restore(with(&shop)).await.expect("v2 as the canary");
    let s = &control.rollouts["shop"];
    assert_eq!((s.phase, s.canary_weight), (Phase::Promoted, Weight::FULL));
    drop(control);
    // v2 named as stable: caught up, and v3's rollout starts.
    let caught_up = v3.replace("stable: {revision: v1", "stable: {revision: v2");
    let control = restore(with(&caught_up)).await.expect("v2 as stable");
    let s = &control.rollouts["shop"];
    assert_eq!(
        (s.phase, s.step_index, s.canary_revision.as_deref()),
        (Phase::Progressing, Some(0), Some("v3"))
    );
}

/// An abort takes effect though its state cannot be written, and is
/// written once the store takes writes again: a restart then finds the
/// route aborted, not back at its canary weight.
#[tokio::test]
async fn an_abort_that_could_not_be_written_is_written_once_the_store_takes_it() {
    let store = Arc::new(fixtures::FaultyStore::default());
    let text = fixtures::config_text(
        None,
        &fixtures::route("web", Some("[{setWeight: 50}, {pause: {}}]")),
    );
    let (process, clock) =
        fixtures::process_with(&text, "/nonexistent/weir.yaml".into(), store.clone()).await;
    let written =
        |store: &fixtures::FaultyStore| store.inner.get("web").map(|s| (s.phase, s.canary_weight));
    assert_eq!(
        written(&store),
        Some((Phase::Progressing, Weight::from_percent_int(50)))
    );

    store.saves_fail.store(true, Relaxed);
    transitions::command(&process, "web", Command::Abort)
        .await
        .expect("an abort takes effect though it cannot be written");
    assert_eq!(
        process.control.lock().await.rollouts["web"].phase,
        Phase::Aborted
    );
    assert_eq!(
        written(&store),
        Some((Phase::Progressing, Weight::from_percent_int(50))),
        "not written yet"
    );
    let zero = |_: &str, _| weir_proxy::metrics::RoleCounts::zero();
    clock.advance(Duration::from_millis(100));
    transitions::tick(&process, zero).await;
    assert_eq!(
        written(&store),
        Some((Phase::Progressing, Weight::from_percent_int(50))),
        "still failing"
    );

    store.saves_fail.store(false, Relaxed);
    clock.advance(Duration::from_secs(1));
    transitions::tick(&process, zero).await;
    assert_eq!(written(&store), Some((Phase::Aborted, Weight::ZERO)));
}

/// A process whose routes `names` each run an analysis step of template
/// `smoke` (metric `up`, passing on `result == 1`, read from
/// `http://{provider}/up`, `options` added to its web provider) between
/// `setWeight: 20` and a pause, with a store whose writes can be made to
/// fail.
async fn process_with_smoke_step(
    names: &[&str],
    provider: std::net::SocketAddr,
    options: &str,
) -> (
    Arc<crate::process::Process>,
    Arc<crate::process::ManualClock>,
    Arc<fixtures::FaultyStore>,
) {
    let store = Arc::new(fixtures::FaultyStore::default());
    let steps = "[{setWeight: 20}, {analysis: {templates: [{templateName: smoke}]}}, {pause: {}}]";
    let routes: String = names
        .iter()
        .map(|name| fixtures::route(name, Some(steps)))
        .collect();
    let templates = format!(
        "analysisTemplates:\n  - name: smoke\n    metrics:\n      - name: up\n        \
         successCondition: result == 1\n        provider:\n          \
         web: {{url: \"http://{provider}/up\", jsonPath: \"{{$.up}}\"{options}}}\n"
    );
    let text = fixtures::config_text(None, &format!("{routes}{templates}"));
    let (process, clock) =
        fixtures::process_with(&text, "/nonexistent/weir.yaml".into(), store.clone()).await;
    (process, clock, store)
}

/// An analysis run started for a step the rollout never entered (the
/// transition into it could not be written) and ended before it measured
/// anything is dropped, not kept among the route's runs as a terminated
/// one; a run of a step the rollout did enter is kept when it ends.
#[tokio::test]
async fn an_analysis_run_of_a_step_never_entered_is_not_kept() {
    // A provider that takes the connection and never answers: no run
    // measures anything during the test.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let address = silent.local_addr().expect("its address");
    let (process, clock, store) =
        process_with_smoke_step(&["web", "api"], address, ", timeoutSeconds: 60").await;
    let zero = |_: &str, _| weir_proxy::metrics::RoleCounts::zero();
    let runs = |control: &ControlState, route: &str| {
        control
            .analysis_runs
            .runs(route)
            .iter()
            .map(|run| (run.key.kind, run.state.phase, run.state.message.clone()))
            .collect::<Vec<_>>()
    };
    let tick = async |by: Duration| {
        clock.advance(by);
        transitions::tick(&process, zero).await;
    };

    // Both decide to enter the analysis step, start its run, and cannot
    // write it.
    store.saves_fail.store(true, Relaxed);
    tick(Duration::from_millis(100)).await;
    {
        let control = process.control.lock().await;
        for route in ["web", "api"] {
            assert_eq!(control.rollouts[route].step_index, Some(0), "{route}");
            assert_eq!(runs(&control, route).len(), 1, "{route}: being retried");
        }
    }
    // `web` never enters it: aborted (in force though not written).
    transitions::command(&process, "web", Command::Abort)
        .await
        .expect("an abort takes effect");
    store.saves_fail.store(false, Relaxed);
    tick(Duration::from_secs(1)).await;
    tick(Duration::from_secs(1)).await;
    {
        let control = process.control.lock().await;
        assert_eq!(
            runs(&control, "web"),
            vec![],
            "no run of a step never entered"
        );
        assert_eq!(
            control.rollouts["api"].step_index,
            Some(1),
            "api entered it"
        );
    }
    // `api` did enter it: its run is kept when the rollout ends it.
    transitions::command(&process, "api", Command::Abort)
        .await
        .expect("aborted");
    tick(Duration::from_secs(1)).await;
    let control = process.control.lock().await;
    let kept = runs(&control, "api");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1, crate::analysis_templates::RunPhase::Successful);
    assert!(kept[0].2.starts_with("terminated: "), "{kept:?}");
    drop(silent);
}

/// While a decision to enter an analysis step cannot be written, the run
/// it started goes on measuring until the decision is made again: it is
/// not ended at the next tick and started afresh at each judgement, which
/// would query its provider again every interval and fill the finished
/// runs with copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_run_waits_for_its_unwritten_decision_to_be_made_again() {
    let captured = capture_this_thread();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let address = silent.local_addr().expect("its address");
    let (process, clock, store) =
        process_with_smoke_step(&["web"], address, ", timeoutSeconds: 60").await;
    let zero = |_: &str, _| weir_proxy::metrics::RoleCounts::zero();

    // Three and a half analysis intervals (1 s) of ticks, every write failing.
    store.saves_fail.store(true, Relaxed);
    for _ in 0..35 {
        clock.advance(Duration::from_millis(100));
        transitions::tick(&process, zero).await;
    }
    {
        let control = process.control.lock().await;
        assert_eq!(control.rollouts["web"].step_index, Some(0), "never written");
        let runs = control.analysis_runs.runs("web");
        assert_eq!(runs.len(), 1, "{runs:#?}");
        assert_eq!(
            runs[0].state.phase,
            crate::analysis_templates::RunPhase::Running,
            "{runs:#?}"
        );
    }
    let log = captured.text();
    assert_eq!(log.matches("analysis run started").count(), 1, "{log}");

    // Once written, the rollout enters the step with that same run.
    store.saves_fail.store(false, Relaxed);
    for _ in 0..10 {
        clock.advance(Duration::from_millis(100));
        transitions::tick(&process, zero).await;
    }
    let control = process.control.lock().await;
    assert_eq!(control.rollouts["web"].step_index, Some(1));
    assert_eq!(control.analysis_runs.runs("web").len(), 1);
    let log = captured.text();
    assert_eq!(log.matches("analysis run started").count(), 1, "{log}");
    drop(silent);
}

/// A step run that passed while the decision to enter its step could not
/// be written completes the step only once the step is in force: the
/// rollout enters the step with a transition of its own, then leaves it,
/// rather than jump over it in one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_run_that_passed_before_its_step_was_written_completes_it_after() {
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let address = provider.local_addr().expect("its address");
    let answering = tokio::spawn(async move {
        while let Ok((mut stream, _)) = provider.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::io::AsyncReadExt::read(&mut stream, &mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                              content-length: 8\r\nconnection: close\r\n\r\n{\"up\":1}";
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, answer.as_bytes()).await;
            });
        }
    });
    let (process, clock, store) = process_with_smoke_step(&["web"], address, "").await;
    let zero = |_: &str, _| weir_proxy::metrics::RoleCounts::zero();
    let step = async || process.control.lock().await.rollouts["web"].step_index;

    // Every write fails until the run has passed.
    store.saves_fail.store(true, Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        clock.advance(Duration::from_millis(100));
        transitions::tick(&process, zero).await;
        let runs = process.control.lock().await.analysis_runs.runs("web");
        if runs
            .iter()
            .any(|run| run.state.phase == crate::analysis_templates::RunPhase::Successful)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{runs:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(step().await, Some(0), "never written");

    // Written now: the step is entered first, then completed.
    store.saves_fail.store(false, Relaxed);
    let mut steps_taken = vec![];
    for _ in 0..40 {
        clock.advance(Duration::from_millis(100));
        transitions::tick(&process, zero).await;
        let now = step().await;
        if steps_taken.last() != Some(&now) && now != Some(0) {
            steps_taken.push(now);
        }
    }
    assert_eq!(steps_taken, vec![Some(1), Some(2)]);
    answering.abort();
}

/// A blue-green preview started by the first load lasts at least one
/// analysis interval (1 s here), as one started by a reload does: nothing
/// was judged before it to count from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_started_at_the_first_load_lasts_an_interval() {
    let route = "  - name: web\n    pathPrefix: /web\n    stable: {revision: v1, endpoints: [127.0.0.1:9001]}\n    canary: {revision: v2, endpoints: [127.0.0.1:9002]}\n    strategy:\n      blueGreen:\n        preview: {header: {name: x-preview, value: \"1\"}}\n";
    let text = fixtures::config_text(None, route);
    let fixtures::InMemory { process, clock, .. } =
        fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let stage = |process: &Arc<crate::process::Process>| {
        let process = Arc::clone(process);
        async move {
            let control = process.control.lock().await;
            let status = control.status("web", process.now_ms()).expect("route");
            status.blue_green.and_then(|bg| bg.stage)
        }
    };
    let zero = |_: &str, _: weir_proxy::Role| weir_proxy::metrics::RoleCounts::zero();
    for _ in 0..9 {
        clock.advance(Duration::from_millis(100));
        transitions::tick(&process, zero).await;
        assert_eq!(
            stage(&process).await,
            Some(crate::rollout::BlueGreenStage::Preview),
            "at {} ms",
            process.now_ms() - START_MS
        );
    }
    clock.advance(Duration::from_millis(200));
    transitions::tick(&process, zero).await;
    assert_ne!(
        stage(&process).await,
        Some(crate::rollout::BlueGreenStage::Preview),
        "the preview ends once an interval has passed"
    );
}

/// A timed pause ends at its deadline, at the control loop's next 100 ms
/// sample, not at the first judgement after it (a judgement a second here,
/// so 500 ms late for a pause of 1.5 s entered at a judgement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_pause_ends_at_its_deadline_not_at_the_next_judgement() {
    let route = "  - name: web\n    pathPrefix: /web\n    stable: {revision: v1, endpoints: [127.0.0.1:9001]}\n    canary: {revision: v2, endpoints: [127.0.0.1:9002]}\n    strategy:\n      steps: [{setWeight: 10}, {pause: {duration: 1500ms}}, {setWeight: 20}, {pause: {}}]\n";
    let text = fixtures::config_text(None, route);
    let fixtures::InMemory { process, clock, .. } =
        fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let zero = |_: &str, _: weir_proxy::Role| weir_proxy::metrics::RoleCounts::zero();
    let step = |process: &Arc<crate::process::Process>| {
        let process = Arc::clone(process);
        async move {
            let control = process.control.lock().await;
            let status = control.status("web", process.now_ms()).expect("route");
            (status.step_index, status.pause_deadline_ms)
        }
    };
    let mut deadline = None;
    for _ in 0..40 {
        clock.advance(Duration::from_millis(100));
        transitions::tick(&process, zero).await;
        let (index, pause_deadline) = step(&process).await;
        match index {
            Some(1) => deadline = deadline.or(pause_deadline),
            Some(2..) => {
                let deadline = deadline.expect("the pause had a deadline");
                let late = process.now_ms().saturating_sub(deadline);
                assert!(late < 100, "the pause ended {late} ms after its deadline");
                return;
            }
            _ => {}
        }
    }
    panic!("the pause did not end within 4 s");
}

/// A settled state (no rollout under way) is sampled once a second by the
/// control loop; a read of the status samples it first, so the status
/// counts every request answered before the read, as when the loop
/// samples every 100 ms. A state with a rollout under way is left to the
/// loop.
#[tokio::test]
async fn a_status_read_of_a_settled_state_counts_up_to_its_own_moment() {
    use weir_proxy::Role;
    use weir_proxy::metrics::{LATENCY_SLOTS, RoleCounts};

    let counts = |stable: u64, canary: u64| {
        move |_: &str, role: Role| RoleCounts {
            requests: if role == Role::Stable { stable } else { canary },
            errors: 0,
            latency: [0; LATENCY_SLOTS],
        }
    };
    let requests = |control: &ControlState, now: u64| {
        let analysis = control
            .status("web", now)
            .and_then(|s| s.analysis)
            .expect("every route has an analysis block");
        (
            analysis.stable.map(|r| r.requests),
            analysis.canary.map(|r| r.requests),
        )
    };

    let text = fixtures::config_text(None, &fixtures::route("web", None));
    let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let mut control = in_memory.process.control.lock().await;
    assert!(control.is_settled());
    control.sample_if_settled(&counts(0, 0), START_MS);
    control.sample_if_settled(&counts(90, 10), START_MS + 300);
    assert_eq!(requests(&control, START_MS + 300), (Some(90), Some(10)));
    drop(control);

    let text = fixtures::config_text(None, &fixtures::route("web", Some("[{pause: {}}]")));
    let in_memory = fixtures::process(&text, "/nonexistent/weir.yaml".into()).await;
    let mut control = in_memory.process.control.lock().await;
    assert!(!control.is_settled(), "a rollout is under way");
    control.sample_if_settled(&counts(0, 0), START_MS);
    control.sample_if_settled(&counts(90, 10), START_MS + 300);
    assert_eq!(requests(&control, START_MS + 300), (Some(0), Some(0)));
}

/// A state file of a route the config no longer has, `Promoted` with the
/// config behind (renamed or removed while weir was stopped), is said at a
/// start and by `weir validate`; other states of missing routes are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_state_of_a_route_gone_from_the_config_is_said() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let steps = Some("[{setWeight: 50}, {pause: {}}]");
    let routes = [
        fixtures::route("shop", steps),
        fixtures::route("cart", steps),
    ]
    .concat();
    let store = Arc::new(FileStore::open(dir.path().to_owned()).expect("the state directory"));
    let mut control = restored(fixtures::config_text(None, &routes), store.clone())
        .await
        .unwrap_or_else(|e| panic!("restore: {e:?}"));
    control
        .command("shop", Command::PromoteFull, START_MS + 1_000)
        .await
        .expect("promoted");
    drop(control);
    std::fs::write(dir.path().join("broken.json"), "not json").expect("written");

    let said = |routes: &str| {
        let loaded = fixtures::loaded(&fixtures::config_text(None, routes));
        super::state::promoted_routes_missing(loaded.config(), &*store)
    };
    // Both routes there: nothing to say.
    assert_eq!(said(&routes), Vec::<String>::new());
    // `shop` gone (renamed to `store`): said; `cart` (Progressing) and the
    // unreadable `broken` are not.
    let renamed = [
        fixtures::route("store", steps),
        fixtures::route("cart", steps),
    ]
    .concat();
    let warnings = said(&renamed);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("the state of route shop in ")
            && warnings[0].contains("Promoted to v2 (stable.revision still v1)")
            && warnings[0].contains("add the route back with stable.revision v2"),
        "{warnings:?}"
    );
    let only_shop = fixtures::route("shop", steps);
    assert_eq!(said(&only_shop), Vec::<String>::new());
}

/// The control state restored at [`START_MS`] from the config `text` and
/// the states in `store`.
async fn restored(text: String, store: Arc<FileStore>) -> Result<ControlState, RestoreError> {
    let loaded = fixtures::loaded(&text);
    let resolved = fixtures::resolved(&loaded).await;
    ControlState::restore_with(loaded, resolved, store, START_MS)
}
