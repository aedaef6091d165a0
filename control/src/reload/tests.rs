//! Reload decisions, every kind of change, without a process: what a new
//! config changes ([`changes`]), and what the control state makes of it
//! (`ControlState::adopt`) — rollouts started, ended, kept, or the config
//! refused with the state untouched.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use weir_config::status::Phase;

use super::*;
use crate::controller::ControlState;
use crate::fixtures::{self, START_MS};
use crate::persist::{MemoryStore, StateStore};
use crate::rollout::Command;

const STEPS: &str = "[{setWeight: 20}, {pause: {}}]";

fn web(stable: &str, canary: Option<&str>, steps: Option<&str>) -> String {
    let canary = match (canary, steps) {
        (Some(c), Some(_)) => {
            format!("    canary: {{revision: {c}, endpoints: [127.0.0.1:9002]}}\n")
        }
        (Some(c), None) => {
            format!("    canary: {{revision: {c}, endpoints: [127.0.0.1:9002], weight: 10}}\n")
        }
        (None, _) => String::new(),
    };
    let strategy = steps.map_or_else(String::new, |s| {
        format!("    strategy:\n      steps: {s}\n")
    });
    format!(
        "  - name: web\n    pathPrefix: /web\n    stable: {{revision: {stable}, endpoints: [127.0.0.1:9001]}}\n{canary}{strategy}"
    )
}

fn base_routes() -> String {
    [
        web("v1", Some("v2"), Some(STEPS)),
        fixtures::route("fixed", None),
    ]
    .concat()
}

fn base() -> String {
    fixtures::config_text(Some(("r", "w")), &base_routes())
}

async fn control(text: &str) -> (ControlState, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let loaded = fixtures::loaded(text);
    let resolved = fixtures::resolved(&loaded).await;
    let control = ControlState::restore_with(loaded, resolved, store.clone(), START_MS)
        .unwrap_or_else(|d| panic!("restore: {d:?}"));
    (control, store)
}

/// [`control`] of [`base`], its route `web` promoted (`promote --full`).
async fn promoted_web() -> (ControlState, Arc<MemoryStore>) {
    let (mut control, store) = control(&base()).await;
    control
        .command("web", Command::PromoteFull, START_MS + 1_000)
        .await
        .expect("promoted");
    (control, store)
}

fn phase_of(control: &ControlState, route: &str) -> Option<Phase> {
    control.rollouts.get(route).map(|s| s.phase)
}

/// Has `control` adopt, at `now`, a config of route `web` (as [`web`]
/// writes it) and the route `fixed` with `fixed_steps`.
async fn adopt_web_and_fixed(
    control: &mut ControlState,
    web: String,
    fixed_steps: Option<&str>,
    now: u64,
) -> Result<(), Vec<weir_config::Diagnostic>> {
    let routes = [web, fixtures::route("fixed", fixed_steps)].concat();
    let new = fixtures::loaded(&fixtures::config_text(Some(("r", "w")), &routes));
    let resolved = fixtures::resolved(&new).await;
    control.adopt(new, resolved, now).await
}

/// What adopting the new config must leave behind.
#[derive(Debug)]
enum Then {
    /// Adopted; each route's rollout phase (`None`: no rollout).
    Adopted(&'static [(&'static str, Option<Phase>)]),
}

#[tokio::test]
async fn every_kind_of_change_is_decided() {
    let s = |t: &str| t.to_owned();
    let edited_endpoints = base_routes().replace("127.0.0.1:9001", "127.0.0.1:9011");
    let cases: Vec<(&str, String, Vec<Change>, Then)> = vec![
        (
            "unchanged",
            base(),
            vec![],
            Then::Adopted(&[("web", Some(Phase::Progressing)), ("fixed", None)]),
        ),
        (
            "route added",
            fixtures::config_text(
                Some(("r", "w")),
                &[base_routes(), fixtures::route("other", Some(STEPS))].concat(),
            ),
            vec![Change::RouteAdded(s("other"))],
            Then::Adopted(&[
                ("web", Some(Phase::Progressing)),
                ("other", Some(Phase::Progressing)),
            ]),
        ),
        (
            "route removed",
            fixtures::config_text(Some(("r", "w")), &fixtures::route("fixed", None)),
            vec![Change::RouteRemoved(s("web"))],
            Then::Adopted(&[("web", None), ("fixed", None)]),
        ),
        (
            "route edited",
            fixtures::config_text(Some(("r", "w")), &edited_endpoints),
            vec![
                Change::RouteEdited(s("web")),
                Change::RouteEdited(s("fixed")),
            ],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
        (
            "canary revision changed",
            fixtures::config_text(
                Some(("r", "w")),
                &[
                    web("v1", Some("v3"), Some(STEPS)),
                    fixtures::route("fixed", None),
                ]
                .concat(),
            ),
            vec![Change::CanaryRevision {
                route: s("web"),
                from: Some(s("v2")),
                to: Some(s("v3")),
            }],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
        (
            "strategy removed",
            fixtures::config_text(
                Some(("r", "w")),
                &[web("v1", Some("v2"), None), fixtures::route("fixed", None)].concat(),
            ),
            vec![
                Change::StrategyRemoved(s("web")),
                Change::RouteEdited(s("web")),
            ],
            Then::Adopted(&[("web", None)]),
        ),
        (
            "strategy added",
            fixtures::config_text(
                Some(("r", "w")),
                &[
                    web("v1", Some("v2"), Some(STEPS)),
                    fixtures::route("fixed", Some(STEPS)),
                ]
                .concat(),
            ),
            vec![
                Change::StrategyAdded(s("fixed")),
                Change::RouteEdited(s("fixed")),
            ],
            Then::Adopted(&[
                ("web", Some(Phase::Progressing)),
                ("fixed", Some(Phase::Progressing)),
            ]),
        ),
        (
            "listeners changed",
            base().replacen("127.0.0.1:0", "127.0.0.1:1", 1),
            vec![Change::Listeners],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
        (
            "a listener added",
            base().replace(
                "listeners:\n  - name: public\n    address: 127.0.0.1:0\n",
                "listeners:\n  - name: other\n    address: 127.0.0.1:2\n  - name: public\n    address: 127.0.0.1:0\n",
            ),
            vec![Change::Listeners],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
        (
            "admin address changed",
            base().replace(
                "  address: 127.0.0.1:0\n  readerToken",
                "  address: 127.0.0.1:1\n  readerToken",
            ),
            vec![Change::AdminAddress],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
        (
            "stateDir changed",
            base().replace("stateDir: state", "stateDir: elsewhere"),
            vec![Change::RestartNeeded("stateDir")],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
        (
            "tokens changed",
            fixtures::config_text(Some(("r2", "w2")), &base_routes()),
            vec![Change::Tokens],
            Then::Adopted(&[("web", Some(Phase::Progressing))]),
        ),
    ];
    for (what, text, want_changes, then) in cases {
        let (mut control, store) = control(&base()).await;
        let new = fixtures::loaded(&text);
        assert_eq!(
            changes(control.config(), new.config()),
            want_changes,
            "{what}: changes"
        );
        let resolved = fixtures::resolved(&new).await;
        let adopted = control.adopt(new.clone(), resolved, START_MS + 1_000).await;
        let Then::Adopted(phases) = then;
        assert!(adopted.is_ok(), "{what}: refused: {adopted:?}");
        assert_eq!(
            control.config(),
            new.config(),
            "{what}: the new config is in force"
        );
        for (route, phase) in phases {
            assert_eq!(phase_of(&control, route), *phase, "{what}: {route}");
            if let Some(state) = control.rollouts.get(*route) {
                assert_eq!(
                    store.get(route).as_ref(),
                    Some(state),
                    "{what}: {route} saved"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_new_canary_revision_starts_a_new_rollout() {
    let (mut control, store) = control(&base()).await;
    let before = control.rollouts["web"].rollout_seq;
    let web_v3 = web("v1", Some("v3"), Some(STEPS));
    adopt_web_and_fixed(&mut control, web_v3, None, START_MS + 1_000)
        .await
        .expect("adopted");
    let web = &control.rollouts["web"];
    assert_eq!(
        (web.canary_revision.as_deref(), web.rollout_seq),
        (Some("v3"), before + 1)
    );
    assert_eq!(store.get("web").as_ref(), Some(web));
}

#[tokio::test]
async fn a_config_behind_a_promotion_is_refused_until_it_catches_up() {
    let (mut control, store) = promoted_web().await;
    assert_eq!(phase_of(&control, "web"), Some(Phase::Promoted));
    let in_force = control.config().clone();
    let promoted = control.rollouts["web"].clone();

    // Another canary while the config still names v1 as stable; or the
    // strategy dropped, v1 still stable (v2 as a fixed split, or no
    // canary), which would silently return to v1: each refused, naming the
    // key to change, and nothing changes.
    for (what, route, key) in [
        (
            "another canary",
            web("v1", Some("v3"), Some(STEPS)),
            "routes[0].canary.revision",
        ),
        (
            "a fixed split",
            web("v1", Some("v2"), None),
            "routes[0].stable.revision",
        ),
        (
            "no canary",
            web("v1", None, None),
            "routes[0].stable.revision",
        ),
        // Renamed, it would start its steps again at 50 % of v1; removed,
        // its requests would go elsewhere.
        (
            "renamed",
            web("v1", Some("v2"), Some(STEPS)).replace("name: web", "name: shop"),
            "routes",
        ),
        ("removed", String::new(), "routes"),
    ] {
        let refused = adopt_web_and_fixed(&mut control, route, None, START_MS + 2_000).await;
        let problems = refused.err().unwrap_or_default();
        assert!(
            problems.iter().any(|d| d.path == key),
            "{what}: {problems:?}"
        );
        assert_eq!(
            control.config(),
            &in_force,
            "{what}: the config in force stays"
        );
        assert_eq!(control.rollouts["web"], promoted, "{what}: the state stays");
        assert_eq!(store.get("web").as_ref(), Some(&promoted));
    }

    // Caught up: v2 is the stable revision now, and v3 may start.
    let caught_up = web("v2", Some("v3"), Some(STEPS));
    adopt_web_and_fixed(&mut control, caught_up, None, START_MS + 3_000)
        .await
        .expect("caught up");
    assert_eq!(phase_of(&control, "web"), Some(Phase::Progressing));
    assert_eq!(
        control.rollouts["web"].canary_revision.as_deref(),
        Some("v3")
    );
}

#[tokio::test]
async fn a_state_that_cannot_be_saved_refuses_the_config() {
    let (mut control, store) = control(&base()).await;
    let before = control.rollouts["web"].clone();
    store.fail_saves(true);
    let web_v3 = web("v1", Some("v3"), Some(STEPS));
    let refused = adopt_web_and_fixed(&mut control, web_v3, None, START_MS + 1_000).await;
    let problems = refused.err().unwrap_or_default();
    assert!(
        problems.iter().any(|d| d.path == "stateDir"),
        "{problems:?}"
    );
    assert_eq!(control.rollouts["web"], before, "the state stays");
}

/// A route that gains a strategy has its kept state read first; when that
/// read gives nothing (here it panics; likewise when no thread can be
/// started for it), the config is refused, naming the route, rather than
/// starting the rollout over and writing that over the kept state.
#[tokio::test]
async fn a_state_that_cannot_be_read_refuses_the_config() {
    let store = Arc::new(fixtures::FaultyStore::default());
    let loaded = fixtures::loaded(&base());
    let resolved = fixtures::resolved(&loaded).await;
    let mut control = ControlState::restore_with(loaded, resolved, store.clone(), START_MS)
        .unwrap_or_else(|d| panic!("restore: {d:?}"));
    store.loads_panic.store(true, Relaxed);
    let web_v2 = web("v1", Some("v2"), Some(STEPS));
    let refused = adopt_web_and_fixed(&mut control, web_v2, Some(STEPS), START_MS + 1_000).await;
    let problems = refused.err().unwrap_or_default();
    assert!(
        problems.iter().any(|d| d.path == "stateDir"
            && d.message.contains("route fixed")
            && d.message.contains("a bug in the store")),
        "{problems:?}"
    );
    assert!(!control.rollouts.contains_key("fixed"), "no rollout began");
    store.loads_panic.store(false, Relaxed);
    assert!(
        matches!(store.inner.load("fixed"), crate::persist::Stored::Missing),
        "nothing was written"
    );
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_running_config_keeps_serving() {
    let dir = std::env::temp_dir().join(format!("weir-reload-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("weir.yaml");
    let in_memory = fixtures::process(&base(), path.clone()).await;
    let process = &in_memory.process;
    let version = process.publisher.current().version;

    std::fs::write(&path, base().replace("routes:", "routez:")).expect("write");
    let refused = reload(process, Trigger::Api).await;
    let diagnostics = refused.err().map(|d| d.0).unwrap_or_default();
    assert!(
        diagnostics.iter().any(|d| d.file.ends_with("weir.yaml")),
        "names the file: {diagnostics:?}"
    );
    assert_eq!(process.reloads.failure.get(), 1);
    assert_eq!(
        process.publisher.current().version,
        version,
        "nothing published"
    );
    assert_eq!(process.control.lock().await.loaded.text, base());

    // The same config again is applied (an API reload always publishes).
    std::fs::write(&path, base()).expect("write");
    let applied = reload(process, Trigger::Api).await;
    assert!(
        matches!(applied, Ok(Outcome::Applied(v)) if v > version),
        "{applied:?}"
    );
    // A file change to the same text is no change at all.
    let unchanged = reload(process, Trigger::FileChanged).await;
    assert!(matches!(unchanged, Ok(Outcome::Unchanged)), "{unchanged:?}");
    assert_eq!(process.reloads.success.get(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_answered_while_a_reload_writes_a_state() {
    use std::time::Duration;

    use bytes::Bytes;
    use http::{Request, StatusCode, header};
    use http_body_util::{BodyExt as _, Full};

    use crate::admin::AdminState;
    use crate::fixtures::GatedStore;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.yaml");
    let (store, entered, release) = GatedStore::new();
    let (process, _clock) = fixtures::process_with(&base(), path.clone(), store.clone()).await;
    let admin = AdminState::new(Arc::clone(&process));
    // A new canary revision: the reload starts a rollout, whose state it
    // must write before the new config takes effect.
    let v3 = fixtures::config_text(
        Some(("r", "w")),
        &[
            web("v1", Some("v3"), Some(STEPS)),
            fixtures::route("fixed", None),
        ]
        .concat(),
    );
    std::fs::write(&path, &v3).expect("write");
    store.armed.store(true, Relaxed);

    let reloading = Arc::clone(&process);
    let reload = tokio::spawn(async move { reload(&reloading, Trigger::Api).await });
    let began = tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("the waiting task");
    assert!(began.is_ok(), "the reload's state write began");

    // The write waits for the test; a status read goes through meanwhile,
    // and still shows the config in force: nothing takes effect unwritten.
    let routes = || {
        Request::get("/api/v1/routes")
            .header(header::AUTHORIZATION, "Bearer r")
            .body(Full::new(Bytes::new()))
            .expect("a valid request")
    };
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
    let answer = tokio::time::timeout(Duration::from_secs(10), admin.handle(routes(), peer))
        .await
        .expect("GET /api/v1/routes is answered while a reload writes a state");
    assert_eq!(answer.status(), StatusCode::OK);
    let body = answer.into_body().collect().await.expect("body").to_bytes();
    let statuses: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let canary_of_web = |statuses: &serde_json::Value| {
        statuses
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == "web"))
            .map(|web| web["canaryRevision"].clone())
    };
    assert_eq!(canary_of_web(&statuses), Some("v2".into()), "{statuses}");
    assert_eq!(process.control.lock().await.loaded.text, base());

    release.send(()).expect("release");
    let reloaded = tokio::time::timeout(Duration::from_secs(10), reload)
        .await
        .expect("the reload ends once written")
        .expect("the reload task");
    assert!(matches!(reloaded, Ok(Outcome::Applied(_))), "{reloaded:?}");
    let control = process.control.lock().await;
    assert_eq!(control.loaded.text, v3);
    assert_eq!(
        control.rollouts["web"].canary_revision.as_deref(),
        Some("v3")
    );
    assert_eq!(
        store.inner.get("web").and_then(|s| s.canary_revision),
        Some("v3".to_owned())
    );
}

/// `base()` with the canary of `web` at `revision`: adopting it starts a
/// rollout, whose state is written.
fn with_canary(revision: &str) -> String {
    fixtures::config_text(
        Some(("r", "w")),
        &[
            web("v1", Some(revision), Some(STEPS)),
            fixtures::route("fixed", None),
        ]
        .concat(),
    )
}

/// Writes `text` as the config file by rename, as editors and deployments do.
fn replace_file(path: &std::path::Path, text: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Awaits `future`, failing the test after 10 s.
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 10 s"))
}

#[test]
fn a_reload_behind_another_reads_the_file_when_its_turn_comes() {
    use std::future::Future as _;
    use std::task::Poll;
    use std::time::Duration;

    use crate::fixtures::GatedStore;

    // One blocking thread: file reads, state writes and the test's own
    // write of the file run there one at a time, in the order asked for.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weir.yaml");
        let (store, entered, release) = GatedStore::new();
        let (process, _clock) = fixtures::process_with(&base(), path.clone(), store.clone()).await;
        let (v3, v4) = (with_canary("v3"), with_canary("v4"));

        // A reload of v3 writes the state of its new rollout, holding the
        // blocking thread until released.
        std::fs::write(&path, &v3).expect("write");
        store.armed.store(true, Relaxed);
        let reloading = Arc::clone(&process);
        let first = tokio::spawn(async move { reload(&reloading, Trigger::Api).await });
        let (began_tx, began) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = began_tx.send(entered.recv_timeout(Duration::from_secs(10)));
        });
        let began = within("the first reload's state write", began).await;
        assert!(matches!(began, Ok(Ok(()))), "{began:?}");
        store.armed.store(false, Relaxed);

        // A second reload starts meanwhile, as the watcher's would; then the
        // file changes to v4. Had the second read the file at once, it would
        // have read v3, ahead of the write.
        let mut second = Box::pin(reload(&process, Trigger::FileChanged));
        let polled = std::future::poll_fn(|cx| Poll::Ready(second.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "{polled:?}");
        let writing = path.clone();
        let written = tokio::task::spawn_blocking(move || std::fs::write(writing, v4.as_bytes()));
        release.send(()).expect("release");

        let first = within("the first reload", first)
            .await
            .expect("the first reload's task");
        assert!(matches!(first, Ok(Outcome::Applied(_))), "{first:?}");
        within("the write", written)
            .await
            .expect("the writing task")
            .expect("write");
        let second = within("the second reload", second).await;
        assert!(matches!(second, Ok(Outcome::Applied(_))), "{second:?}");
        assert_eq!(
            process.control.lock().await.loaded.text,
            with_canary("v4"),
            "the config in force is the file as the second reload found it"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_applies_a_file_that_differs_from_the_config_in_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, base()).expect("write");
    let in_memory = fixtures::process(&base(), path.clone()).await;
    let process = Arc::clone(&in_memory.process);
    let (stop_tx, stop) = watch::channel(false);
    let watcher = tokio::spawn(follow(Arc::clone(&process), stop));
    let mut published = process.publisher.reader();
    // An older text, ready to be adopted over the watcher's.
    let stale = fixtures::loaded(&base());
    let stale_resolved = fixtures::resolved(&stale).await;

    let edited = fixtures::config_text(
        Some(("r", "w")),
        &base_routes().replace("127.0.0.1:9001", "127.0.0.1:9011"),
    );
    replace_file(&path, edited.as_bytes());
    within("the watcher's reload", published.changed()).await;
    assert_eq!(process.control.lock().await.loaded.text, edited);

    // A reload that read the file before the edit adopts it now (as one
    // racing the watcher could): the file differs from the config in force.
    {
        let _writing = process.transitions.lock().await;
        let adopted = adopt(&process, Trigger::Api, stale, stale_resolved).await;
        assert!(matches!(adopted, Ok(Some(_))), "{adopted:?}");
    }
    assert_eq!(process.control.lock().await.loaded.text, base());
    within("the watcher applying the file again", async {
        while process.control.lock().await.loaded.text != edited {
            published.changed().await;
        }
    })
    .await;

    stop_tx.send_replace(true);
    within("the watcher's end", watcher)
        .await
        .expect("the watcher's task");
    assert_eq!(process.reloads.failure.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_refuses_a_file_that_is_not_utf8_once_and_locates_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, base()).expect("write");
    let in_memory = fixtures::process(&base(), path.clone()).await;
    let process = Arc::clone(&in_memory.process);
    let version = process.publisher.current().version;
    let mut events = process.control.lock().await.events.subscribe();
    let (stop_tx, stop) = watch::channel(false);
    let watcher = tokio::spawn(follow(Arc::clone(&process), stop));
    // A Latin-1 `ï` in the name of the second route.
    let text = base();
    let (line, column) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| Some((i + 1, l.find("name: fixed")? + 9)))
        .expect("the route is in the file");
    let (before, after) = text.split_once("name: fixed").expect("the route");
    let bad = [before.as_bytes(), b"name: fi\xEFxed", after.as_bytes()].concat();
    replace_file(&path, &bad);

    let refused = within("the refusal", next_reload(&mut events)).await;
    assert_eq!(refused["applied"], false, "{refused}");
    assert_eq!(refused["trigger"], "file_changed", "{refused}");
    assert_eq!(
        refused["errors"][0],
        format!(
            "{}:{line}:{column}: the file is not UTF-8: byte 0xEF here does not belong to a UTF-8 character; save the file as UTF-8",
            path.display()
        ),
        "{refused}"
    );
    assert_eq!(process.reloads.failure.get(), 1);
    assert_eq!(process.publisher.current().version, version);
    assert_eq!(process.control.lock().await.loaded.text, base());

    // Put back, the file is applied: the refusal was counted once.
    replace_file(&path, base().as_bytes());
    let restored = within("the restore", next_reload(&mut events)).await;
    assert_eq!(refused_or_applied(&restored), (true, "file_restored"));
    // The watcher ends once its reload has ended and been counted.
    stop_tx.send_replace(true);
    within("the watcher's end", watcher)
        .await
        .expect("the watcher's task");
    assert_eq!(process.reloads.failure.get(), 1);
    assert_eq!(process.reloads.success.get(), 1);
}

/// The data of the next `reload` event.
async fn next_reload(
    events: &mut tokio::sync::broadcast::Receiver<Arc<crate::controller::events::Event>>,
) -> serde_json::Value {
    loop {
        let event = events.recv().await.expect("the event bus");
        if event.name == "reload" {
            return event.data.clone();
        }
    }
}

/// Whether a reload event applied its config, and its trigger.
fn refused_or_applied(event: &serde_json::Value) -> (bool, &str) {
    (
        event["applied"].as_bool().unwrap_or_default(),
        event["trigger"].as_str().unwrap_or_default(),
    )
}

/// A reload reads new certificate and key paths itself, and the order of
/// the listeners means nothing: neither waits for a restart. An address,
/// a connection limit, a name or TLS turned on does.
#[test]
fn only_what_a_restart_applies_makes_listeners_differ() {
    use weir_config::{Listener, TlsFiles};
    let listener = |name: &str, port: u16, tls: Option<&str>| Listener {
        name: name.to_owned(),
        address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        tls: tls.map(|dir| TlsFiles {
            cert_file: format!("{dir}/cert.pem").into(),
            key_file: format!("{dir}/key.pem").into(),
        }),
        max_connections: 10_000,
    };
    let old = [listener("a", 1, None), listener("b", 2, Some("/etc/old"))];
    let same = [listener("b", 2, Some("/etc/new")), listener("a", 1, None)];
    assert!(!crate::listeners::listeners_differ(&old, &same));
    for new in [
        [listener("a", 3, None), listener("b", 2, Some("/etc/old"))],
        [
            listener("a", 1, Some("/etc/a")),
            listener("b", 2, Some("/etc/old")),
        ],
        [listener("c", 1, None), listener("b", 2, Some("/etc/old"))],
        [
            Listener {
                max_connections: 5,
                ..listener("a", 1, None)
            },
            listener("b", 2, Some("/etc/old")),
        ],
    ] {
        assert!(crate::listeners::listeners_differ(&old, &new), "{new:?}");
    }
}

/// A refusal of the text in force (a certificate that no longer matches
/// its key, reloaded by SIGHUP) is not put back by a later read of the
/// same file: one refusal, one failure counted. Another refused text put
/// back is.
#[test]
fn only_another_refused_text_is_put_back() {
    let in_force: Contents = Ok(b"routes: []".to_vec());
    assert!(!puts_back(None, &in_force));
    assert!(!puts_back(Some(in_force.clone()), &in_force));
    assert!(puts_back(Some(Ok(b"routes: [".to_vec())), &in_force));
    assert!(puts_back(
        Some(Err("cannot read weir.yaml".to_owned())),
        &in_force
    ));
}

#[tokio::test]
async fn a_promoted_route_renamed_and_caught_up_in_one_change_is_taken() {
    let (mut control, _store) = promoted_web().await;
    // Its hosts and prefix, now named `shop`, with v2 (promoted) as stable.
    let renamed = web("v2", None, Some(STEPS)).replace("name: web", "name: shop");
    adopt_web_and_fixed(&mut control, renamed, None, START_MS + 2_000)
        .await
        .expect("renamed and caught up");
    assert_eq!(phase_of(&control, "shop"), Some(Phase::Healthy));
    // Renamed with another prefix: not the same route, refused.
    let (mut control, _store) = promoted_web().await;
    let elsewhere = web("v2", None, Some(STEPS))
        .replace("name: web", "name: shop")
        .replace("pathPrefix: /web", "pathPrefix: /shop");
    let refused = adopt_web_and_fixed(&mut control, elsewhere, None, START_MS + 2_000).await;
    assert!(
        refused
            .err()
            .unwrap_or_default()
            .iter()
            .any(|d| d.path == "routes"),
        "refused at routes"
    );
}

#[tokio::test]
async fn a_reload_that_changes_only_the_stable_revision_rewrites_the_state_file() {
    let (mut control, store) = control(&base()).await;
    let written = |store: &MemoryStore| match store.load("web") {
        crate::persist::Stored::Found(state) => state,
        other => panic!("web's state: {other:?}"),
    };
    assert_eq!(written(&store).stable_revision, "v1");
    adopt_web_and_fixed(
        &mut control,
        web("v0", Some("v2"), Some(STEPS)),
        None,
        START_MS + 1_000,
    )
    .await
    .expect("adopted");
    let state = written(&store);
    assert_eq!(phase_of(&control, "web"), Some(Phase::Progressing));
    assert_eq!(
        state.stable_revision, "v0",
        "the file says the status's stable"
    );
    assert!(state.writes_as(&control.rollouts["web"]));
}
