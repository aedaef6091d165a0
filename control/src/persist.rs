//! Where rollout state is kept: the [`StateStore`] trait the controller
//! uses, and its first implementation, [`FileStore`]: one JSON file per
//! route in `stateDir`, replaced atomically (write a temporary file, fsync
//! it, rename it over the old one, fsync the directory), so a crash at any
//! point leaves either the old or the new state, never a torn one.
//!
//! Stores block (files, the Kubernetes API); the controller calls them
//! through [`save_off_runtime`] and [`load_off_runtime`], off the runtime
//! ([`crate::off_runtime`]), never on the threads that serve traffic; a batch
//! writes the states of different routes concurrently.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::controller::cluster_routes::is_cluster_route;
use crate::rollout::RolloutState;

/// Loads, saves and sets aside the [`RolloutState`] of routes. Every
/// method but [`StateStore::intact_at_a_glance`] may block; call them off
/// the runtime threads.
pub trait StateStore: fmt::Debug + Send + Sync {
    /// Reads the state of `route`.
    fn load(&self, route: &str) -> Stored;

    /// Writes `state` durably; once this returns `Ok`, a restart finds it.
    ///
    /// # Errors
    /// The I/O error; the previous state is then untouched.
    fn save(&self, state: &RolloutState) -> io::Result<()>;

    /// Keeps an unreadable state of `route` aside, so the new state does not
    /// destroy what an operator may want to inspect; returns where it went.
    fn set_aside(&self, route: &str, now_ms: u64) -> Option<String>;

    /// Where the states are, for messages (a directory, a resource).
    fn location(&self) -> String;

    /// Whether the store lost the states written to it since it was last
    /// asked (its directory was removed under the running process, and is
    /// made again): every state kept must then be written again for a
    /// restart to find it. Looks now, and may block.
    fn lost_states(&self) -> bool {
        false
    }

    /// The routes of the config file that have a state here, in no
    /// particular order (CanaryRoutes' states are not listed). May block.
    fn file_routes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether a look that cannot block finds the store has lost nothing,
    /// so that [`StateStore::lost_states`] need not be asked now; `false`
    /// when such a look cannot tell. A store that cannot lose its states
    /// needs no look.
    fn intact_at_a_glance(&self) -> bool {
        true
    }
}

/// The state files in one directory (`stateDir`).
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Set when the directory was found gone and made again; taken by
    /// [`StateStore::lost_states`].
    remade: Arc<AtomicBool>,
    /// An open handle on the directory, for
    /// [`StateStore::intact_at_a_glance`]: a removed directory has no
    /// links left. Held only where the directory is on a local filesystem,
    /// where a look at an open handle cannot block; replaced when the
    /// directory is made again.
    held: Arc<Mutex<Option<File>>>,
}

/// A state directory held by this process: two processes writing the same
/// rollout states would each undo the other's transitions, and whichever
/// restarted next would take the other's phase for its own. Held with an
/// advisory lock on a file in the directory, which the kernel releases
/// when the process ends however it ends (a `kill -9` too).
#[derive(Debug)]
pub struct StateDirLock {
    /// The open lock file; the lock lasts as long as it is open.
    _file: File,
}

/// The lock file's name in `stateDir` (no route's state file can have it:
/// route names do not begin with a dot).
pub const STATE_DIR_LOCK: &str = ".weir.lock";

/// Why a state directory could not be held.
#[derive(Debug)]
pub enum StateDirLockError {
    /// Another process holds it; its pid when it wrote one.
    Held(Option<u32>),
    /// The directory or its lock file could not be used.
    Io(io::Error),
}

impl fmt::Display for StateDirLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateDirLockError::Held(Some(pid)) => write!(
                f,
                "it is in use by another weir process (pid {pid}); give each process its own stateDir"
            ),
            StateDirLockError::Held(None) => f.write_str(
                "it is in use by another weir process; give each process its own stateDir",
            ),
            StateDirLockError::Io(error) => write!(f, "{error}"),
        }
    }
}

// === impl StateDirLock ===

impl StateDirLock {
    /// Holds `dir` (created if needed) for this process, writing its pid in
    /// the lock file for the message another process gives.
    ///
    /// # Errors
    /// [`StateDirLockError::Held`] when another process holds it, else the
    /// I/O error.
    pub fn acquire(dir: &Path) -> Result<StateDirLock, StateDirLockError> {
        ensure_dir(dir).map_err(StateDirLockError::Io)?;
        let path = dir.join(STATE_DIR_LOCK);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StateDirLockError::Io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let pid = fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.trim().parse().ok());
                return Err(StateDirLockError::Held(pid));
            }
            Err(errno) => return Err(StateDirLockError::Io(errno.into())),
        }
        // The pid is only for messages: a failure to write it loses nothing.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(StateDirLock { _file: file })
    }
}

/// States held in memory: for tests, and for a process that must not
/// write (nothing survives a restart).
#[derive(Debug, Default)]
pub struct MemoryStore {
    states: Mutex<BTreeMap<String, RolloutState>>,
    failing: std::sync::atomic::AtomicBool,
}

/// One store for every route: cluster routes (`NAMESPACE/NAME`, a `/` in
/// the name) go to `cluster`, file routes to `files`, so the state machine
/// has one code path for both.
#[derive(Debug, Clone)]
pub struct RoutedStore {
    files: Arc<dyn StateStore>,
    cluster: Arc<dyn StateStore>,
}

/// What reading a route's state file found.
#[derive(Debug)]
pub enum Stored {
    /// No file: the route has no persisted state yet.
    Missing,
    /// The state as persisted.
    Found(Box<RolloutState>),
    /// A file that cannot be read or parsed; the message says why.
    Unreadable(String),
}

// === impl FileStore ===

impl FileStore {
    /// The store in `dir`, created if needed.
    ///
    /// # Errors
    /// The I/O error, for the caller to report with the directory's name.
    pub fn open(dir: PathBuf) -> io::Result<FileStore> {
        ensure_dir(&dir)?;
        Ok(FileStore {
            held: Arc::new(Mutex::new(hold(&dir))),
            dir,
            remade: Arc::default(),
        })
    }

    /// The store in `dir` when it is a directory already; creates nothing
    /// (for `weir validate`, which only reads).
    pub fn existing(dir: &Path) -> Option<FileStore> {
        dir.is_dir().then(|| FileStore {
            dir: dir.to_path_buf(),
            remade: Arc::default(),
            held: Arc::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory again after it was removed under the running
    /// process, with its lock: taken again (and held until the process
    /// ends), so that a second process still cannot start on it; if one
    /// already has, this one writes nothing.
    fn remake(&self) -> io::Result<()> {
        match StateDirLock::acquire(&self.dir) {
            Ok(lock) => std::mem::forget(lock),
            Err(StateDirLockError::Io(error)) => return Err(error),
            Err(held @ StateDirLockError::Held(_)) => {
                return Err(io::Error::other(held.to_string()));
            }
        }
        self.remade.store(true, Ordering::Relaxed);
        if let Ok(mut held) = self.held.lock() {
            *held = hold(&self.dir);
        }
        tracing::warn!(dir = %self.dir.display(), "the state directory was gone; made it again, and every state is written again");
        Ok(())
    }
}

impl StateStore for FileStore {
    fn load(&self, route: &str) -> Stored {
        load(&self.dir, route)
    }

    fn file_routes(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let route = name.strip_suffix(".json")?;
                (!route.is_empty() && !route.starts_with('.')).then(|| route.to_owned())
            })
            .collect()
    }

    fn save(&self, state: &RolloutState) -> io::Result<()> {
        match save(&self.dir, state) {
            // The directory was removed under the running process: made
            // again, so that states are kept rather than lost until a
            // restart (which would then resume from nothing).
            Err(error) if error.kind() == io::ErrorKind::NotFound && !self.dir.exists() => {
                self.remake()?;
                save(&self.dir, state)
            }
            written => written,
        }
    }

    fn set_aside(&self, route: &str, now_ms: u64) -> Option<String> {
        set_aside(&self.dir, route, now_ms).map(|p| p.display().to_string())
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn lost_states(&self) -> bool {
        if !self.dir.exists() {
            if let Err(error) = self.remake() {
                tracing::warn!(dir = %self.dir.display(), %error, "the state directory is gone and cannot be made again");
            }
        }
        self.remade.swap(false, Ordering::Relaxed)
    }

    fn intact_at_a_glance(&self) -> bool {
        if self.remade.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(held) = self.held.lock() else {
            return false;
        };
        held.as_ref()
            .is_some_and(|dir| dir.metadata().is_ok_and(|found| found.nlink() > 0))
    }
}

/// An open handle on `dir` when it is on a local filesystem (see
/// [`FileStore`]'s `held`).
fn hold(dir: &Path) -> Option<File> {
    if !crate::reload::file_watch::is_local(dir) {
        return None;
    }
    File::open(dir).ok()
}

// === impl MemoryStore ===

impl MemoryStore {
    /// Makes every later save fail (a full disk), or succeed again.
    pub fn fail_saves(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::Relaxed);
    }

    /// The state saved for `route`, if any.
    pub fn get(&self, route: &str) -> Option<RolloutState> {
        self.states
            .lock()
            .ok()
            .and_then(|states| states.get(route).cloned())
    }
}

impl StateStore for MemoryStore {
    fn load(&self, route: &str) -> Stored {
        match self.get(route) {
            Some(state) => Stored::Found(Box::new(state)),
            None => Stored::Missing,
        }
    }

    fn file_routes(&self) -> Vec<String> {
        self.states
            .lock()
            .map(|states| {
                states
                    .keys()
                    .filter(|route| !is_cluster_route(route))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn save(&self, state: &RolloutState) -> io::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::other("the store refuses writes"));
        }
        let mut states = self
            .states
            .lock()
            .map_err(|_| io::Error::other("the store's lock is poisoned"))?;
        states.insert(state.route.clone(), state.clone());
        Ok(())
    }

    fn set_aside(&self, route: &str, _now_ms: u64) -> Option<String> {
        let mut states = self.states.lock().ok()?;
        states.remove(route).map(|_| format!("memory:{route}"))
    }

    fn location(&self) -> String {
        "memory".to_owned()
    }
}

// === impl RoutedStore ===

impl RoutedStore {
    /// File routes to `files`, CanaryRoutes to `cluster`.
    pub fn new(files: Arc<dyn StateStore>, cluster: Arc<dyn StateStore>) -> RoutedStore {
        RoutedStore { files, cluster }
    }

    fn store_of(&self, route: &str) -> &dyn StateStore {
        if is_cluster_route(route) {
            &*self.cluster
        } else {
            &*self.files
        }
    }
}

impl StateStore for RoutedStore {
    fn load(&self, route: &str) -> Stored {
        self.store_of(route).load(route)
    }

    fn save(&self, state: &RolloutState) -> io::Result<()> {
        self.store_of(&state.route).save(state)
    }

    fn set_aside(&self, route: &str, now_ms: u64) -> Option<String> {
        self.store_of(route).set_aside(route, now_ms)
    }

    fn lost_states(&self) -> bool {
        self.files.lost_states()
    }

    fn file_routes(&self) -> Vec<String> {
        self.files.file_routes()
    }

    fn intact_at_a_glance(&self) -> bool {
        self.files.intact_at_a_glance()
    }

    fn location(&self) -> String {
        format!(
            "{} (file routes) or {} (CanaryRoutes)",
            self.files.location(),
            self.cluster.location()
        )
    }
}

/// The state file of `route` in `state_dir`.
pub fn path_of(state_dir: &Path, route: &str) -> PathBuf {
    state_dir.join(format!("{route}.json"))
}

/// Creates `state_dir` if needed.
///
/// # Errors
/// The I/O error, for the caller to report with the directory's name.
pub fn ensure_dir(state_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(state_dir)
}

/// Reads the state of `route`: unreadable when the file cannot be read or
/// parsed, holds another route, or holds a number out of range
/// ([`RolloutState::check_range`]).
pub fn load(state_dir: &Path, route: &str) -> Stored {
    let path = path_of(state_dir, route);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Stored::Missing,
        Err(error) => {
            return Stored::Unreadable(format!("cannot read {}: {error}", path.display()));
        }
    };
    match serde_json::from_slice::<RolloutState>(&bytes) {
        Ok(state) if state.route != route => Stored::Unreadable(format!(
            "{} holds the state of route {}, not {route}",
            path.display(),
            state.route
        )),
        Ok(state) => match state.check_range() {
            Ok(()) => Stored::Found(Box::new(state)),
            Err(out_of_range) => Stored::Unreadable(format!("{}: {out_of_range}", path.display())),
        },
        Err(error) => Stored::Unreadable(format!("cannot parse {}: {error}", path.display())),
    }
}

/// Moves an unreadable state file aside (`<route>.json.unreadable-<ms>`), so
/// the new state does not destroy what an operator may want to inspect.
pub fn set_aside(state_dir: &Path, route: &str, now_ms: u64) -> Option<PathBuf> {
    let from = path_of(state_dir, route);
    let to = state_dir.join(format!("{route}.json.unreadable-{now_ms}"));
    fs::rename(&from, &to).ok().map(|()| to)
}

/// Writes `state` atomically and durably.
///
/// # Errors
/// The I/O error; the previous file is then untouched.
pub fn save(state_dir: &Path, state: &RolloutState) -> io::Result<()> {
    let path = path_of(state_dir, &state.route);
    let tmp = state_dir.join(format!(".{}.json.tmp", state.route));
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    {
        let mut file = File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    // The rename itself is durable only once the directory is synced.
    File::open(state_dir)?.sync_all()
}

/// How many routes' states [`save_off_runtime`] writes at once.
pub const CONCURRENT_SAVES: usize = 8;

/// Writes each of `states` to `store` off the runtime: the fsyncs
/// and API requests never stall the runtime threads that serve traffic.
/// Returns one result per state, in the same order; the caller acts on a
/// state only after its write succeeded.
///
/// The states of different routes are written concurrently, at most
/// [`CONCURRENT_SAVES`] routes at a time, so a slow store (an API server
/// that does not answer its status PATCHes) costs a batch about one write
/// timeout rather than one per route, and the transition lock held across
/// the batch is released that much sooner. That is safe because the writes
/// touch different objects: each route has its own state file (and its own
/// temporary file, renamed over it atomically), or its own CanaryRoute
/// whose status PATCH carries that object's own `resourceVersion` as a
/// precondition. Several states of one route (a batch may hold one route's
/// transitions in order) are written one after the other, in their order,
/// on one thread: a later write then starts from what the earlier one left
/// (the newer `resourceVersion`), and the last one is what stays.
pub async fn save_off_runtime(
    store: Arc<dyn StateStore>,
    states: Vec<RolloutState>,
) -> Vec<io::Result<()>> {
    use futures_util::StreamExt as _;

    let count = states.len();
    if count == 0 {
        // The common case of a control-loop tick: no thread hand-off.
        return Vec::new();
    }
    // One chain per route, in order of first appearance; each entry keeps
    // its index in `states`.
    let mut chains: Vec<Vec<(usize, RolloutState)>> = Vec::new();
    let mut chain_of: BTreeMap<String, usize> = BTreeMap::new();
    for (index, state) in states.into_iter().enumerate() {
        match chain_of.get(&state.route) {
            Some(&chain) => chains[chain].push((index, state)),
            None => {
                chain_of.insert(state.route.clone(), chains.len());
                chains.push(vec![(index, state)]);
            }
        }
    }
    let writes = chains.into_iter().map(|chain| {
        let store = Arc::clone(&store);
        async move {
            let indices: Vec<usize> = chain.iter().map(|(index, _)| *index).collect();
            let written = crate::off_runtime::run(move || {
                chain
                    .iter()
                    .map(|(index, state)| (*index, store.save(state)))
                    .collect::<Vec<_>>()
            })
            .await;
            match written {
                Ok(results) => results,
                // The writer could not start or panicked: no write of this
                // route can be trusted.
                Err(error) => indices
                    .into_iter()
                    .map(|index| {
                        let failed = format!("the state writer failed: {error}");
                        (index, Err(io::Error::other(failed)))
                    })
                    .collect(),
            }
        }
    });
    let mut results: Vec<Option<io::Result<()>>> = (0..count).map(|_| None).collect();
    let mut done = futures_util::stream::iter(writes).buffer_unordered(CONCURRENT_SAVES);
    while let Some(chain) = done.next().await {
        for (index, result) in chain {
            results[index] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|result| {
            // Every index belongs to exactly one chain, and every chain answers.
            result.unwrap_or_else(|| Err(io::Error::other("the state was not written")))
        })
        .collect()
}

/// Reads the state of `route` from `store`, off the runtime.
///
/// # Errors
/// When the store could not be asked (no thread for it) or the read
/// panicked: nothing is known of the state, which may well be there.
pub async fn load_off_runtime(
    store: Arc<dyn StateStore>,
    route: String,
) -> Result<Stored, crate::off_runtime::OffRuntimeError> {
    crate::off_runtime::run(move || store.load(&route)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(route: &str) -> RolloutState {
        let text = format!(
            r#"{{"route":"{route}","phase":"Paused","stepIndex":1,"canaryWeight":5,"rolloutSeq":2,
               "stableRevision":"v1","canaryRevision":"v2","promotedRevision":null,
               "pauseDeadlineMs":1700000000000,"pauseRemainingMs":null,"held":false,
               "rolloutStartedMs":1699999990000,"failures":0,"message":"paused",
               "abortReason":null,"lastJudgement":null}}"#
        );
        serde_json::from_str(&text).expect("fixture parses")
    }

    /// A state directory removed under the running process is made again
    /// by the next write, so states are kept instead of failing until a
    /// restart, and the store tells that the states written before are lost.
    #[test]
    fn a_removed_state_dir_is_made_again_by_the_next_write() {
        let dir = std::env::temp_dir().join(format!("weir-persist-gone-{}", std::process::id()));
        let store = FileStore::open(dir.clone()).expect("made");
        assert!(
            store.intact_at_a_glance(),
            "a directory on a local filesystem is held and seen in place"
        );
        store.save(&state("web")).expect("first write");
        fs::remove_dir_all(&dir).expect("removed");
        let mut aborted = state("web");
        aborted.phase = crate::rollout::Phase::Aborted;
        store.save(&aborted).expect("written again");
        match store.load("web") {
            Stored::Found(found) => assert_eq!(found.phase, crate::rollout::Phase::Aborted),
            other => panic!("not found again: {other:?}"),
        }
        // Its lock is held again: no second process starts on it.
        assert!(
            matches!(StateDirLock::acquire(&dir), Err(StateDirLockError::Held(_))),
            "the lock was taken again"
        );
        // The other states are lost: said once.
        assert!(store.lost_states(), "the loss is told");
        assert!(!store.lost_states(), "the loss is told once");
        // Asking finds a removal with no write since, and makes the
        // directory again; a glance finds it without asking.
        assert!(
            store.intact_at_a_glance(),
            "the directory made again is held"
        );
        fs::remove_dir_all(&dir).expect("removed");
        assert!(!store.intact_at_a_glance(), "a glance sees the removal");
        assert!(store.lost_states(), "a removal is found by asking");
        assert!(dir.is_dir(), "made again by asking");
        assert!(store.intact_at_a_glance(), "the new directory is held");
        let _ = fs::remove_dir_all(&dir);
    }

    /// The temporary file is a FIFO, so opening it for writing blocks until
    /// a reader opens it. The reader is a task on the same single-threaded
    /// runtime: it can run only if the write is off the runtime thread.
    #[test]
    fn writes_do_not_block_the_runtime_thread() {
        let dir = std::env::temp_dir().join(format!("weir-persist-fifo-{}", std::process::id()));
        ensure_dir(&dir).expect("temp dir");
        let fifo = dir.join(".web.json.tmp");
        let _ = fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());

        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (state_dir, reader_path) = (dir.clone(), fifo.clone());
        let runner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let reader = tokio::spawn(async move {
                    tokio::fs::read_to_string(&reader_path)
                        .await
                        .unwrap_or_default()
                });
                // A FIFO cannot be fsynced, so the save itself fails; what
                // matters is that the reader ran meanwhile.
                let store: Arc<dyn StateStore> =
                    Arc::new(FileStore::existing(&state_dir).expect("a directory"));
                let _ = save_off_runtime(store, vec![state("web")]).await;
                let read = reader.await.expect("the reader task ran");
                let _ = done_tx.send(read);
            });
        });
        let read = match done_rx.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(read) => read,
            Err(_) => {
                // Unblock the writer so the thread can end, then fail.
                let _ = fs::read(&fifo);
                panic!("the state write blocked the runtime thread");
            }
        };
        let _ = runner.join();
        assert!(
            read.contains("\"route\": \"web\""),
            "read through the FIFO: {read}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// A store whose saves, once begun, wait until the gate opens, and
    /// which records what it saw meanwhile. A state whose message starts
    /// with `refused` fails to save.
    #[derive(Debug, Default)]
    struct Gate {
        seen: Mutex<Seen>,
        changed: std::sync::Condvar,
    }

    /// What the saves of a [`Gate`] did.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        open: bool,
        /// Saves in flight now, per route.
        routes: BTreeMap<String, usize>,
        /// Saves in flight now, and at most.
        now: usize,
        peak: usize,
        /// Routes that had two saves in flight at once.
        overlapped: Vec<String>,
        /// The route and message of each state saved, in the order their
        /// saves ended.
        ended: Vec<(String, String)>,
    }

    impl Gate {
        /// Waits until `done` holds of what the saves did, or 10 s pass;
        /// opens the gate and fails the test then.
        fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut seen = self.seen.lock().expect("the gate");
            while !done(&seen) {
                let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                    let snapshot = seen.clone();
                    drop(seen);
                    self.open();
                    panic!("{what}: not within 10 s; the saves did {snapshot:?}");
                };
                seen = self.changed.wait_timeout(seen, left).expect("the gate").0;
            }
        }

        /// Lets every save, waiting or to come, go on.
        fn open(&self) {
            self.seen.lock().expect("the gate").open = true;
            self.changed.notify_all();
        }
    }

    impl StateStore for Gate {
        fn load(&self, _route: &str) -> Stored {
            Stored::Missing
        }

        fn save(&self, state: &RolloutState) -> io::Result<()> {
            let mut seen = self.seen.lock().expect("the gate");
            let writing = seen.routes.entry(state.route.clone()).or_default();
            *writing += 1;
            if *writing > 1 {
                seen.overlapped.push(state.route.clone());
            }
            seen.now += 1;
            seen.peak = seen.peak.max(seen.now);
            self.changed.notify_all();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !seen.open {
                let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                    return Err(io::Error::other("the gate never opened"));
                };
                seen = self.changed.wait_timeout(seen, left).expect("the gate").0;
            }
            seen.now -= 1;
            if let Some(writing) = seen.routes.get_mut(&state.route) {
                *writing -= 1;
            }
            seen.ended
                .push((state.route.clone(), state.message.clone()));
            self.changed.notify_all();
            if state.message.starts_with("refused") {
                return Err(io::Error::other(state.message.clone()));
            }
            Ok(())
        }

        fn set_aside(&self, _route: &str, _now_ms: u64) -> Option<String> {
            None
        }

        fn location(&self) -> String {
            "gate".to_owned()
        }
    }

    fn state_saying(route: &str, message: &str) -> RolloutState {
        let mut state = state(route);
        state.message = message.to_owned();
        state
    }

    /// Writes `states` to `gate` on a task of the test's runtime.
    fn save_in_background(
        gate: &Arc<Gate>,
        states: Vec<RolloutState>,
    ) -> tokio::task::JoinHandle<Vec<io::Result<()>>> {
        let store: Arc<dyn StateStore> = Arc::clone(gate) as Arc<dyn StateStore>;
        tokio::spawn(save_off_runtime(store, states))
    }

    /// Waits on `gate` off the runtime threads.
    async fn wait_for(gate: &Arc<Gate>, what: &'static str, done: fn(&Seen) -> bool) {
        let gate = Arc::clone(gate);
        tokio::task::spawn_blocking(move || gate.wait_for(what, done))
            .await
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked.into_panic()));
    }

    /// A batch of five routes whose writes all hang has all five in flight
    /// at once: it costs one write's time, not five, and the results still
    /// come back in the order of the states.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_states_of_different_routes_are_written_together() {
        let gate = Arc::new(Gate::default());
        let states: Vec<RolloutState> = (0..5)
            .map(|i| {
                let verb = if i == 2 { "refused" } else { "kept" };
                state_saying(&format!("route-{i}"), &format!("{verb} {i}"))
            })
            .collect();
        let batch = save_in_background(&gate, states);
        wait_for(&gate, "five writes in flight at once", |seen| seen.now == 5).await;
        gate.open();
        let results = tokio::time::timeout(std::time::Duration::from_secs(10), batch)
            .await
            .expect("the batch ends once the writes answer")
            .expect("the batch task");
        let failed: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].is_err())
            .collect();
        assert_eq!(
            failed,
            vec![2],
            "each result is its own state's: {results:?}"
        );
        let seen = gate.seen.lock().expect("the gate").clone();
        assert_eq!(seen.peak, 5, "{seen:?}");
    }

    /// Several states of one route are written one after the other, in
    /// their order, never together; no more than [`CONCURRENT_SAVES`] routes
    /// are written at once; every result is its own state's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_states_of_one_route_are_written_in_order_and_the_routes_are_bounded() {
        let gate = Arc::new(Gate::default());
        let routes = CONCURRENT_SAVES + 4;
        let mut states: Vec<RolloutState> = (0..routes)
            .map(|i| state_saying(&format!("route-{i}"), &format!("kept route-{i}")))
            .collect();
        // Two more transitions of route-1 among the others, the second
        // refused, and one more of the last route.
        states.insert(3, state_saying("route-1", "kept route-1 again"));
        states.insert(7, state_saying("route-1", "refused route-1 at last"));
        states.push(state_saying(
            &format!("route-{}", routes - 1),
            "refused the last route again",
        ));
        let messages: Vec<String> = states.iter().map(|s| s.message.clone()).collect();
        let batch = save_in_background(&gate, states);
        wait_for(&gate, "a full set of routes written at once", |seen| {
            seen.now == CONCURRENT_SAVES
        })
        .await;
        gate.open();
        let results = tokio::time::timeout(std::time::Duration::from_secs(10), batch)
            .await
            .expect("the batch ends once the writes answer")
            .expect("the batch task");
        assert_eq!(results.len(), messages.len());
        for (message, result) in messages.iter().zip(&results) {
            assert_eq!(
                result.is_err(),
                message.starts_with("refused"),
                "{message}: {result:?}"
            );
        }
        let seen = gate.seen.lock().expect("the gate").clone();
        assert_eq!(seen.peak, CONCURRENT_SAVES, "{seen:?}");
        assert!(seen.overlapped.is_empty(), "{seen:?}");
        let route_1: Vec<&str> = seen
            .ended
            .iter()
            .filter(|(route, _)| route == "route-1")
            .map(|(_, message)| message.as_str())
            .collect();
        assert_eq!(
            route_1,
            [
                "kept route-1",
                "kept route-1 again",
                "refused route-1 at last"
            ],
            "{seen:?}"
        );
        assert_eq!(seen.ended.len(), messages.len(), "{seen:?}");
    }

    #[test]
    fn the_routed_store_sends_cluster_routes_to_the_cluster_store() {
        let files = Arc::new(MemoryStore::default());
        let cluster = Arc::new(MemoryStore::default());
        let routed = RoutedStore::new(files.clone(), cluster.clone());
        routed.save(&state("web")).expect("saved");
        routed.save(&state("shop/checkout")).expect("saved");
        assert!(files.get("web").is_some() && files.get("shop/checkout").is_none());
        assert!(cluster.get("shop/checkout").is_some() && cluster.get("web").is_none());
        assert!(
            matches!(routed.load("shop/checkout"), Stored::Found(s) if s.route == "shop/checkout")
        );
        cluster.fail_saves(true);
        assert!(routed.save(&state("shop/checkout")).is_err());
        assert!(
            routed.save(&state("web")).is_ok(),
            "file routes are not affected"
        );
        assert_eq!(
            routed.set_aside("shop/checkout", 1).as_deref(),
            Some("memory:shop/checkout")
        );
        assert!(matches!(routed.load("shop/checkout"), Stored::Missing));
        assert!(matches!(routed.load("web"), Stored::Found(_)));
    }

    /// A number the machine has no room after makes the file unreadable
    /// (the route comes up held at weight 0), with the file and the field
    /// named.
    #[test]
    fn a_number_out_of_range_makes_a_state_file_unreadable() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let max = u64::MAX.to_string();
        let cases = [
            ("rolloutSeq", "rolloutSeq", max.as_str()),
            ("stepIndex", "stepIndex", max.as_str()),
            (
                "webhooks",
                "webhooks.wait.step",
                r#"{"wait": {"gate": "confirm-promotion", "step": 18446744073709551615}}"#,
            ),
        ];
        for (key, field, value) in cases {
            let mut json = serde_json::to_value(state("web")).expect("serializable");
            json[key] = serde_json::from_str(value).expect("a JSON value");
            fs::write(path_of(dir.path(), "web"), json.to_string()).expect("written");
            match load(dir.path(), "web") {
                Stored::Unreadable(message) => {
                    let file = path_of(dir.path(), "web").display().to_string();
                    assert!(
                        message.starts_with(&format!("{file}: {field}: 18446744073709551615 ")),
                        "{message}"
                    );
                }
                other => panic!("{field}: expected an unreadable state, got {other:?}"),
            }
        }
        // One below is a state the machine goes on from.
        let mut json = serde_json::to_value(state("web")).expect("serializable");
        json["rolloutSeq"] = serde_json::json!(u64::MAX - 1);
        json["stepIndex"] = serde_json::json!(u64::MAX - 1);
        fs::write(path_of(dir.path(), "web"), json.to_string()).expect("written");
        assert!(matches!(load(dir.path(), "web"), Stored::Found(_)));
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = std::env::temp_dir().join(format!("weir-persist-{}", std::process::id()));
        ensure_dir(&dir).expect("temp dir");
        assert!(matches!(load(&dir, "web"), Stored::Missing));
        let s = state("web");
        save(&dir, &s).expect("save");
        match load(&dir, "web") {
            Stored::Found(found) => assert_eq!(*found, s),
            other => panic!("expected the saved state, got {other:?}"),
        }
        assert!(
            !dir.join(".web.json.tmp").exists(),
            "the temporary file was renamed"
        );

        fs::write(path_of(&dir, "web"), b"{ not json").expect("corrupt");
        assert!(
            matches!(load(&dir, "web"), Stored::Unreadable(msg) if msg.contains("cannot parse"))
        );
        let aside = set_aside(&dir, "web", 42).expect("moved aside");
        assert!(aside.ends_with("web.json.unreadable-42"));
        assert!(matches!(load(&dir, "web"), Stored::Missing));

        save(&dir, &state("other")).expect("save");
        fs::rename(path_of(&dir, "other"), path_of(&dir, "web")).expect("rename");
        assert!(
            matches!(load(&dir, "web"), Stored::Unreadable(msg) if msg.contains("route other"))
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
