//! Test fixtures: a config from YAML text, and a whole [`Process`] in
//! memory (no sockets, no files, a clock that moves when told).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use weir_proxy::{Metrics, Proxy};

use crate::controller::ControlState;
use crate::load::{Loaded, Resolved};
use crate::persist::{MemoryStore, StateStore, Stored};
use crate::process::{ManualClock, Process};
use crate::rollout::RolloutState;

/// Where the fixtures' clock starts: 2023-11-14, in ms since the epoch.
pub(crate) const START_MS: u64 = 1_700_000_000_000;

/// A process over a config, in memory.
pub(crate) struct InMemory {
    /// The handle the admin API, reloads and the control loop share.
    pub(crate) process: Arc<Process>,
    /// Its clock.
    pub(crate) clock: Arc<ManualClock>,
    /// Its state store.
    pub(crate) store: Arc<MemoryStore>,
}

/// A store whose saves, once armed, wait until the test releases them: a
/// state write stalled for as long as a test needs.
#[derive(Debug)]
pub(crate) struct GatedStore {
    /// Where the states go once released.
    pub(crate) inner: MemoryStore,
    /// Whether saves wait; off while a process is being built.
    pub(crate) armed: AtomicBool,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl GatedStore {
    /// An unarmed store, the receiver told when an armed save begins, and
    /// the sender that lets one save go on.
    pub(crate) fn new() -> (Arc<GatedStore>, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let store = Arc::new(GatedStore {
            inner: MemoryStore::default(),
            armed: AtomicBool::new(false),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        });
        (store, entered_rx, release_tx)
    }
}

impl StateStore for GatedStore {
    fn load(&self, route: &str) -> Stored {
        self.inner.load(route)
    }

    fn save(&self, state: &RolloutState) -> std::io::Result<()> {
        if self.armed.load(Relaxed) {
            let _ = self.entered.lock().expect("sender").send(());
            let released = self
                .release
                .lock()
                .expect("receiver")
                .recv_timeout(Duration::from_secs(20));
            if released.is_err() {
                return Err(std::io::Error::other("never released"));
            }
        }
        self.inner.save(state)
    }

    fn set_aside(&self, route: &str, now_ms: u64) -> Option<String> {
        self.inner.set_aside(route, now_ms)
    }

    fn location(&self) -> String {
        "gated".to_owned()
    }
}

/// A store whose reads panic while `loads_panic` is set (a bug in the
/// store), and whose saves fail while `saves_fail` is set (a full disk).
#[derive(Debug, Default)]
pub(crate) struct FaultyStore {
    /// Where the states go.
    pub(crate) inner: MemoryStore,
    /// Whether reads panic.
    pub(crate) loads_panic: AtomicBool,
    /// Whether saves fail.
    pub(crate) saves_fail: AtomicBool,
}

impl StateStore for FaultyStore {
    fn load(&self, route: &str) -> Stored {
        assert!(!self.loads_panic.load(Relaxed), "a bug in the store");
        self.inner.load(route)
    }

    fn save(&self, state: &RolloutState) -> std::io::Result<()> {
        if self.saves_fail.load(Relaxed) {
            return Err(std::io::Error::other("no space left on device"));
        }
        self.inner.save(state)
    }

    fn set_aside(&self, route: &str, now_ms: u64) -> Option<String> {
        self.inner.set_aside(route, now_ms)
    }

    fn location(&self) -> String {
        "faulty".to_owned()
    }
}

/// A config of `routes` (YAML list items, indented by four), with the
/// admin tokens given, listeners and admin on ephemeral loopback ports.
pub(crate) fn config_text(tokens: Option<(&str, &str)>, routes: &str) -> String {
    let tokens = tokens.map_or_else(String::new, |(reader, writer)| {
        format!("  readerToken: {reader}\n  writerToken: {writer}\n")
    });
    format!(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\n{tokens}stateDir: state\nroutes:\n{routes}"
    )
}

/// A route `name` from v1 to canary v2 with `steps` (YAML flow list); no
/// steps means a fixed split of 10 %.
pub(crate) fn route(name: &str, steps: Option<&str>) -> String {
    let mut text = format!(
        "  - name: {name}\n    pathPrefix: /{name}\n    stable: {{revision: v1, endpoints: [127.0.0.1:9001]}}\n"
    );
    match steps {
        Some(steps) => {
            text.push_str("    canary: {revision: v2, endpoints: [127.0.0.1:9002]}\n");
            text.push_str(&format!("    strategy:\n      steps: {steps}\n"));
        }
        None => {
            text.push_str("    canary: {revision: v2, endpoints: [127.0.0.1:9002], weight: 10}\n")
        }
    }
    text
}

/// `text` validated as the config file `weir.yaml`, or the diagnostics.
pub(crate) fn try_loaded(text: &str) -> Result<Loaded, weir_config::Diagnostics> {
    let document = weir_config::parse(text, "weir.yaml", Path::new("/weir"), &|_| None)?;
    Ok(Loaded {
        tls: document.config.listeners.iter().map(|_| None).collect(),
        certificates: document.config.listeners.iter().map(|_| None).collect(),
        document,
        text: text.to_owned(),
    })
}

/// `text` validated; panics with the diagnostics when it is not valid.
pub(crate) fn loaded(text: &str) -> Loaded {
    try_loaded(text).unwrap_or_else(|d| panic!("fixture config does not validate:\n{d}"))
}

/// The addresses of `loaded` (IP endpoints only: no DNS).
pub(crate) async fn resolved(loaded: &Loaded) -> Resolved {
    Resolved::resolve(&loaded.document)
        .await
        .unwrap_or_else(|d| panic!("fixture endpoints do not resolve:\n{d}"))
}

/// A process started with `text` as its config and an empty state store;
/// `config_path` is where reloads read (nothing there unless a test writes
/// it). Must run in a tokio runtime.
pub(crate) async fn process(text: &str, config_path: PathBuf) -> InMemory {
    let store = Arc::new(MemoryStore::default());
    let (process, clock) = process_with(text, config_path, store.clone()).await;
    InMemory {
        process,
        clock,
        store,
    }
}

/// A process as [`process`] makes it, over `store`.
pub(crate) async fn process_with(
    text: &str,
    config_path: PathBuf,
    store: Arc<dyn StateStore>,
) -> (Arc<Process>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(START_MS));
    let loaded = loaded(text);
    let resolved = resolved(&loaded).await;
    let control = ControlState::restore_with(loaded, resolved, store, START_MS)
        .unwrap_or_else(|d| panic!("restore: {d:?}"));
    let (publisher, reader) = weir_config::channel(control.snapshot());
    let proxy = Proxy::new(reader, Arc::new(Metrics::new()));
    let process = Arc::new(
        Process::new(config_path, publisher, proxy, control, clock.clone())
            .expect("the metric families are valid and registered once"),
    );
    (process, clock)
}
