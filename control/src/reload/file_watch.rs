//! When to read the config file again: at once when inotify reports a
//! change of the file or of a link on its path, and otherwise on a slow
//! poll, or a fast one where inotify cannot see every change.
//!
//! The file used to be read every 250 ms, each time on a thread started for
//! it (`off_runtime`), so a change took up to 250 ms to be seen and an idle
//! weir woke 33 times a second. Watched, a change is applied 3 to 7 ms after
//! the write (20 edits, polling the reload counter), and an idle weir wakes
//! 24 times a second; it reads the file once a second
//! ([`BACKSTOP_INTERVAL`]) for the changes inotify does not report (writes
//! through a memory map). Idle CPU fell from 2.1 to 1.8 ms a second (means
//! of five interleaved 20 s runs of `perf stat -e task-clock,context-switches
//! -p PID` on release builds, each spread over ±0.5 ms); not reading the
//! file at all gave 1.4 (two runs).
//!
//! What is watched is every link the path goes through and the file at its
//! end, each by its name in its directory, plus the file itself:
//! - an edit in place ends with `IN_CLOSE_WRITE`;
//! - a file replaced by rename (editors, `sed -i`, `ln -sf`) is
//!   `IN_MOVED_TO` in the directory;
//! - a Kubernetes ConfigMap volume swaps its `..data` link, which is on the
//!   path (`config.yaml -> ..data/config.yaml`);
//! - a file bind-mounted into a container and written from outside it is
//!   seen by the watch on the file, not by its directory's (checked by
//!   hand with `mount --bind`, which needs root, so it is not a test).
//!
//! The paths of the files read with it (the certificates) are watched the
//! same way, by the names on them: a link re-pointed to a new file (certbot
//! renewing `live/` into `archive/`, the old file kept) tells the old file
//! nothing, and was seen only by the read every [`DEEP_READ_EVERY`].
//!
//! A write not yet closed, a file just created, and a file removed or
//! moved away (nothing to read until something takes its place: a file
//! renamed over it is read at once) are read when the writer closes the
//! file, or [`SETTLE`] after the last write (at most [`SETTLE_AT_MOST`]
//! after the first), so that a file written in several pieces, or removed
//! and written again, is not read half written: refused, or worse, applied
//! when its first half is a valid config. One written in two opens (`>`
//! then `>>`) is read at the first close. Each read places the
//! watches again when an event said the path may lead elsewhere, and so
//! does each poll's: a directory on the path replaced by rename (a deploy
//! swapping directories) tells its old watch nothing. On a filesystem whose changes made by another machine
//! inotify cannot see (NFS, SMB, FUSE, anything not known to be local) the
//! file is also read every 250 ms, as before; so it is when inotify cannot
//! be used at all (no instances or watches left).
//!
//! The once-a-second read started a thread each time (the read, and the
//! placing of the watches, may block on a filesystem mounted over the path
//! since). Where the file, and the files read with it (the certificates),
//! are on local filesystems, the second's poll glances instead at them as
//! the last read left them open: `fstat` on an open file of a local
//! filesystem cannot block, and any write (a memory-mapped one included)
//! changes its change time, a removal its link count. The file is read
//! when the glance sees a change, and every [`DEEP_READ_EVERY`] anyway (a
//! directory above the file's own renamed away and kept, a filesystem
//! mounted over the path: changes the open files do not show). An idle
//! weir (release build, the peer harness's config, three interleaved 20 s
//! runs of `perf stat -e task-clock,context-switches -p PID`) spent 0.71,
//! 0.84, 0.81 ms of CPU a second before, 0.51, 0.75, 0.65 with the glance,
//! and 0.59, 0.47, 0.38 once the glance and the control loop's sample
//! shared one wake-up a second (`crate::beat`; context switches from 6 to
//! 2.5 a second). HAProxy idles at about 0.1 ms and one wake-up a second.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustix::fd::OwnedFd;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Interval, Sleep};

use crate::load;
use crate::off_runtime::OffRuntimeError;

/// How often the file is read where inotify cannot be relied on.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the file is looked at while inotify watches it: a glance
/// at the open files where they are local, a read otherwise.
pub const BACKSTOP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the file is read, and the watches placed again, while a
/// glance would do.
pub const DEEP_READ_EVERY: Duration = Duration::from_secs(10);
/// How long after a write not yet closed, or a file's creation, it is read
/// when nothing more is written and its writer has not closed it (a
/// writer's close is read at once). A script writing through one redirect
/// may pause a few hundred milliseconds half-way (it was 100 ms: such a
/// half file, valid, was applied, and a strategy cut off ended its
/// rollout); an editor that keeps the file open after writing it is read
/// this long after.
pub const SETTLE: Duration = Duration::from_millis(500);
/// The longest a file still being written waits to be read, from its first
/// write, when its writer neither closes it nor stops.
pub const SETTLE_AT_MOST: Duration = Duration::from_secs(3);

/// The most links followed on the path, as the kernel's `ELOOP` limit.
const MAX_LINKS: usize = 40;

/// The most inotify events read in one turn of the runtime. A directory on
/// the path with a flood of changes to other files (the config kept in a
/// busy directory) then costs the runtime's thread a bounded slice at a
/// time, the rest read after the requests waiting meanwhile.
const EVENTS_PER_TURN: usize = 256;

/// What a directory's entry changing means, for the entries on the path.
const DIRECTORY_EVENTS: WatchFlags = WatchFlags::CLOSE_WRITE
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR);

/// What is watched on the file itself.
const FILE_EVENTS: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

/// Tells the config watcher when the config file may have changed.
pub struct FileWatch {
    /// The config path, as given.
    path: PathBuf,
    /// The inotify instance, unless none could be made.
    inotify: Option<AsyncFd<Arc<OwnedFd>>>,
    /// What each watch descriptor stands for; empty while not armed.
    watched: Watched,
    /// Whether the watches are in place for the path as it is now.
    armed: bool,
    /// The read that is due whatever inotify says.
    poll: Interval,
    /// The period of `poll`.
    period: Duration,
    /// A write or creation seen, to be read when it has settled, and when
    /// the first such was seen.
    settling: Option<(Pin<Box<Sleep>>, Instant)>,
    /// A read is owed; kept here so that a dropped `changed` loses nothing.
    due: bool,
    /// The watches must be placed again at the next read (the path may
    /// lead elsewhere).
    rearm: bool,
    /// The poll periods, fixed for tests.
    periods: Periods,
    /// The last arming failed and was logged.
    failure_said: bool,
    /// The files the last read looked at, kept open for the polls to
    /// glance at; none when one of them could not be opened or is not on a
    /// local filesystem.
    glance: Option<Glance>,
    /// When the last read began.
    read_at: Instant,
    /// The files read with the config file whose paths the watches follow
    /// too (the certificates): a link on one re-pointed, a file renamed
    /// over one, is a change.
    also_armed: Vec<PathBuf>,
}

/// The poll periods of a [`FileWatch`].
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    /// While inotify sees every change.
    pub backstop: Duration,
    /// Where it cannot.
    pub poll: Duration,
    /// The longest between reads while the backstop's polls glance.
    pub deep: Duration,
}

impl Default for Periods {
    fn default() -> Self {
        Periods {
            backstop: BACKSTOP_INTERVAL,
            poll: POLL_INTERVAL,
            deep: DEEP_READ_EVERY,
        }
    }
}

/// What a watch descriptor stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watch {
    /// A directory on the path, with the names in it that are on the path.
    Directory(HashSet<OsString>),
    /// The file at the end of the path.
    File,
}

/// Every watch descriptor in place, with what it stands for.
type Watched = HashMap<i32, Watch>;

/// What a batch of events asks for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// Read the file now.
    now: bool,
    /// Place the watches again first.
    rearm: bool,
    /// Read the file once the write settles.
    settle: bool,
}

impl Seen {
    /// Read the file now, placing the watches again first when `rearm`.
    const fn now(rearm: bool) -> Seen {
        Seen {
            now: true,
            rearm,
            settle: false,
        }
    }

    /// Read the file once the write settles, placing the watches again
    /// first when `rearm`.
    const fn settle(rearm: bool) -> Seen {
        Seen {
            now: false,
            rearm,
            settle: true,
        }
    }

    fn merge(self, other: Seen) -> Seen {
        Seen {
            now: self.now || other.now,
            rearm: self.rearm || other.rearm,
            settle: self.settle || other.settle,
        }
    }
}

/// The watches placed for a path.
struct Armed {
    watched: Watched,
    /// Every filesystem on the path reports every change to inotify.
    local: bool,
}

impl FileWatch {
    /// Watches `path`; the first [`FileWatch::changed`] returns at once,
    /// and the first [`FileWatch::read`] places the watches.
    pub fn start(path: PathBuf) -> FileWatch {
        FileWatch::with_periods(path, Periods::default())
    }

    /// [`FileWatch::start`] with the given poll periods.
    pub fn with_periods(path: PathBuf, periods: Periods) -> FileWatch {
        let inotify = match new_inotify() {
            Ok(inotify) => Some(inotify),
            Err(error) => {
                tracing::warn!(%error, "cannot watch the config file with inotify; it is read every {:?}", periods.poll);
                None
            }
        };
        FileWatch {
            path,
            inotify,
            watched: Watched::new(),
            armed: false,
            // The first look is at once: the first poll is now.
            poll: polls(Instant::now(), periods.poll),
            period: periods.poll,
            settling: None,
            due: false,
            rearm: true,
            periods,
            failure_said: false,
            glance: None,
            read_at: Instant::now(),
            also_armed: Vec::new(),
        }
    }

    /// Waits until the file may have changed. Cancel safe, and does no
    /// blocking work: a change seen by a call that was dropped is returned
    /// by the next.
    pub async fn changed(&mut self) {
        loop {
            if self.due {
                self.due = false;
                return;
            }
            let mut more_events = false;
            let seen = tokio::select! {
                _ = self.poll.tick() => Ok(self.polled()),
                () = settled(&mut self.settling) => Ok(Seen::now(false)),
                ready = readable(self.inotify.as_ref()) => ready.and_then(|mut guard| {
                    let (seen, drained) = read_events(guard.get_inner(), &self.watched)?;
                    if drained {
                        guard.clear_ready();
                    } else {
                        more_events = true;
                    }
                    Ok(seen)
                }),
            };
            let seen = seen.unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot read the config file's inotify events; it is read every {:?}", self.periods.poll);
                self.inotify = None;
                Seen::now(true)
            });
            self.rearm |= seen.rearm;
            if seen.now {
                self.due = true;
                self.settling = None;
            } else if seen.settle {
                self.settle_later();
            }
            if more_events && !self.due {
                // The rest of the events after the other tasks' turn.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Has the next [`FileWatch::changed`] return at once: something other
    /// than the file says it may differ from what was read.
    pub fn read_soon(&mut self) {
        self.due = true;
    }

    /// Has the next poll read the file rather than glance at it (until the
    /// read after it): a change seen must hold for a look.
    pub fn read_at_next_poll(&mut self) {
        self.glance = None;
    }

    /// Reads the file as it is now, on a thread off the runtime (a network
    /// filesystem can hang), after placing the watches again on the same
    /// thread when the path may lead elsewhere.
    ///
    /// # Errors
    /// No thread could be started, or the work panicked.
    pub async fn read(&mut self) -> Result<Result<Vec<u8>, load::ReadError>, OffRuntimeError> {
        self.read_with(Vec::new(), || ())
            .await
            .map(|(read, ())| read)
    }

    /// [`FileWatch::read`], with `also` run on the same thread after it (a
    /// look at other files, with no thread of its own); the files at
    /// `glanced_too` are opened and kept with the config file for the polls
    /// to glance at (a change of one of them is a change).
    ///
    /// # Errors
    /// No thread could be started, or the work panicked.
    pub async fn read_with<T: Send + 'static>(
        &mut self,
        glanced_too: Vec<PathBuf>,
        also: impl FnOnce() -> T + Send + 'static,
    ) -> Result<(Result<Vec<u8>, load::ReadError>, T), OffRuntimeError> {
        self.read_at = Instant::now();
        let path = self.path.clone();
        // Other files than those watched: their paths are watched too.
        self.rearm |= glanced_too != self.also_armed;
        let arming = self.rearm.then(|| {
            (
                self.inotify
                    .as_ref()
                    .map(|inotify| Arc::clone(inotify.get_ref())),
                self.watched.clone(),
            )
        });
        let (armed, read, glance, also, glanced_too) = crate::off_runtime::run(move || {
            let armed = arming.map(|(inotify, old)| match inotify {
                Some(inotify) => arm(&inotify, &path, &glanced_too, &old),
                None => Err(io::Error::other("no inotify instance")),
            });
            let (read, glance) = match load::read_file_keeping(&path) {
                Ok((bytes, file, stamp)) => (Ok(bytes), Glance::open(file, &stamp, &glanced_too)),
                Err(error) => (Err(error), None),
            };
            (armed, read, glance, also(), glanced_too)
        })
        .await?;
        self.glance = glance;
        if let Some(armed) = armed {
            self.rearm = false;
            if armed.is_ok() {
                self.also_armed = glanced_too;
            }
            self.take_armed(armed);
        }
        Ok((read, also))
    }

    /// What a poll asks for: nothing while the watches are in place on
    /// local filesystems, the last read is recent ([`Periods::deep`]) and a
    /// glance at the files it read finds them as they were; otherwise a
    /// read, placing the watches again (a directory on the path replaced
    /// by rename tells its old watch nothing).
    fn polled(&self) -> Seen {
        let glancing = self.armed
            && self.period == self.periods.backstop
            && self.read_at.elapsed() < self.periods.deep;
        match &self.glance {
            Some(glance) if glancing => {
                if glance.unchanged() || self.settling.is_some() {
                    Seen::default()
                } else {
                    // Changed, perhaps still being written (a write through
                    // a memory map tells inotify nothing): read once it
                    // settles, as after an event. A glance seeing the same
                    // change again (it compares with the last read) does
                    // not put the read off.
                    Seen::settle(true)
                }
            }
            _ => Seen::now(true),
        }
    }

    /// Starts or extends the wait after a write not yet closed, or a file's
    /// creation: [`SETTLE`] after the last, at most [`SETTLE_AT_MOST`] after
    /// the first.
    fn settle_later(&mut self) {
        let now = Instant::now();
        let (sleep, first) = self
            .settling
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep_until(now + SETTLE)), now));
        sleep
            .as_mut()
            .reset((now + SETTLE).min(*first + SETTLE_AT_MOST));
    }

    /// Keeps what placing the watches gave, and sets the poll period to
    /// match.
    fn take_armed(&mut self, armed: io::Result<Armed>) {
        let period = match armed {
            Ok(armed) => {
                self.watched = armed.watched;
                self.armed = true;
                self.failure_said = false;
                if armed.local {
                    self.periods.backstop
                } else {
                    self.periods.poll
                }
            }
            Err(error) => {
                // Said once a failure, not at every retry.
                if self.inotify.is_some() && !self.failure_said {
                    tracing::warn!(path = %self.path.display(), %error, "cannot watch the config file; it is read every {:?} until it can be", self.periods.poll);
                    self.failure_said = true;
                }
                self.armed = false;
                self.periods.poll
            }
        };
        if period != self.period {
            self.period = period;
            self.poll = polls(Instant::now() + period, period);
        }
    }
}

/// Files as a read left them, open: the config file and those read with
/// it, each with how it looked then.
struct Glance {
    files: Vec<(std::fs::File, FileStamp)>,
}

/// What a glance compares: which file it is, its length, when its data
/// and its inode last changed, and its links (none once removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
    links: u64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt as _;
        FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
            links: meta.nlink(),
        }
    }
}

impl Glance {
    /// Keeps `config` (which looked as `stamp` when opened) and opens the
    /// files at `others`; blocking. None when one cannot be opened or one
    /// is not on a local filesystem (a glance at it could block, or miss
    /// another machine's writes).
    fn open(
        config: std::fs::File,
        stamp: &std::fs::Metadata,
        others: &[PathBuf],
    ) -> Option<Glance> {
        use rustix::fs::{Mode, OFlags};
        let mut files = vec![(config, FileStamp::of(stamp))];
        for path in others {
            let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
            let file = std::fs::File::from(rustix::fs::open(path, flags, Mode::empty()).ok()?);
            let stamp = FileStamp::of(&file.metadata().ok()?);
            files.push((file, stamp));
        }
        let local = files
            .iter()
            .all(|(file, _)| rustix::fs::fstatfs(file).is_ok_and(|stat| is_local_stat(&stat)));
        local.then_some(Glance { files })
    }

    /// Whether every file looks as it did: one `fstat` each, which does
    /// not block on a local filesystem.
    fn unchanged(&self) -> bool {
        self.files.iter().all(|(file, stamp)| {
            file.metadata()
                .is_ok_and(|meta| FileStamp::of(&meta) == *stamp)
        })
    }
}

/// Polls every `period` from `start`; one missed while a reload ran is
/// made up once, not in a burst.
fn polls(start: Instant, period: Duration) -> Interval {
    // Once a second, on the process's beat, with the control loop's sample.
    let start = if period == crate::beat::BEAT {
        crate::beat::next_beat(start)
    } else {
        start
    };
    let mut polls = tokio::time::interval_at(start, period);
    polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    polls
}

/// A non-blocking inotify instance, registered with the runtime.
fn new_inotify() -> io::Result<AsyncFd<Arc<OwnedFd>>> {
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
    // Deprecated because a type whose `as_raw_fd` is not its own descriptor
    // would make it unsound; an `Arc<OwnedFd>` owns its descriptor, which
    // lives and closes with the `AsyncFd`.
    #[allow(deprecated)]
    AsyncFd::with_interest(Arc::new(fd), Interest::READABLE)
}

/// Waits until the inotify instance has events; never, without one.
async fn readable(
    inotify: Option<&AsyncFd<Arc<OwnedFd>>>,
) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, Arc<OwnedFd>>> {
    match inotify {
        Some(inotify) => inotify.readable().await,
        None => std::future::pending().await,
    }
}

/// Waits for a settling write's time; never, without one.
async fn settled(settling: &mut Option<(Pin<Box<Sleep>>, Instant)>) {
    match settling {
        Some((sleep, _)) => sleep.await,
        None => std::future::pending().await,
    }
}

/// Reads pending events, about [`EVENTS_PER_TURN`] at most (the rest of
/// the last buffer read is never dropped), and says what they ask for, and
/// whether none is left.
fn read_events(inotify: &OwnedFd, watched: &Watched) -> io::Result<(Seen, bool)> {
    let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
    let mut events = inotify::Reader::new(inotify, &mut buffer);
    let mut seen = Seen::default();
    let mut read = 0;
    loop {
        if read >= EVENTS_PER_TURN && events.is_buffer_empty() {
            return Ok((seen, false));
        }
        match events.next() {
            Ok(event) => {
                read += 1;
                seen = seen.merge(judge(
                    watched,
                    event.wd(),
                    event.events(),
                    event.file_name(),
                ));
            }
            Err(rustix::io::Errno::AGAIN) => return Ok((seen, true)),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// What one event asks for.
fn judge(watched: &Watched, wd: i32, events: ReadFlags, name: Option<&CStr>) -> Seen {
    // Events were lost: anything may have changed.
    if events.contains(ReadFlags::QUEUE_OVERFLOW) {
        return Seen::now(true);
    }
    let Some(watch) = watched.get(&wd) else {
        // A watch removed by the last arming.
        return Seen::default();
    };
    // The file removed or moved away, or its entry on the path: nothing to
    // read until something takes its place. A file renamed over it, or
    // written and closed, is read at once; read now, the path may already
    // lead to a file made but not yet written, refused as empty. One still
    // gone is read once the wait settles.
    let gone = Seen::settle(true);
    if events.contains(ReadFlags::UNMOUNT) {
        return Seen::now(true);
    }
    // A directory on the path itself went away or moved: the path leads
    // elsewhere now.
    if matches!(watch, Watch::Directory(_))
        && events.intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
    {
        return Seen::now(true);
    }
    match watch {
        Watch::Directory(names) => {
            let on_path =
                name.is_some_and(|name| names.contains(OsStr::from_bytes(name.to_bytes())));
            if !on_path {
                Seen::default()
            } else if events.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM)
                || (events.contains(ReadFlags::CREATE) && !events.contains(ReadFlags::ISDIR))
            {
                // Gone, or made anew: a new file is written after it is
                // made (a new link is whole at once, but its watches must
                // be placed).
                gone
            } else {
                Seen::now(true)
            }
        }
        Watch::File
            if events
                .intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) =>
        {
            gone
        }
        // A write not yet closed, and a change of the file's links or
        // mode (a removal shows first as its link count falling).
        Watch::File if events.intersects(ReadFlags::MODIFY | ReadFlags::ATTRIB) => {
            Seen::settle(false)
        }
        Watch::File => Seen::now(false),
    }
}

/// Places a watch on every directory holding a link on `path` or the file
/// at its end, and on the file, and removes the watches of `old` no longer
/// needed. Blocking.
fn arm(inotify: &OwnedFd, path: &Path, also: &[PathBuf], old: &Watched) -> io::Result<Armed> {
    let entries = path_entries(path)?;
    // The links and files on the paths of `also` are watched by their
    // names in their directories, as the config file's are; one that
    // cannot be followed now (missing) is left to the reads and glances.
    let also_entries = also.iter().filter_map(|p| path_entries(p).ok()).flatten();
    let mut watched = Watched::new();
    let mut local = true;
    for (directory, name) in entries.iter().cloned().chain(also_entries) {
        let wd = inotify::add_watch(inotify, directory.as_path(), DIRECTORY_EVENTS)?;
        local &= is_local(&directory);
        match watched
            .entry(wd)
            .or_insert_with(|| Watch::Directory(HashSet::new()))
        {
            Watch::Directory(names) => {
                names.insert(name);
            }
            Watch::File => {}
        }
    }
    // An editor may have removed the file for a moment; its directory's
    // watch sees it come back.
    if let Some((directory, name)) = entries.last() {
        let file = directory.join(name);
        if let Ok(wd) = inotify::add_watch(inotify, file.as_path(), FILE_EVENTS) {
            watched.insert(wd, Watch::File);
            // A file bind-mounted from another filesystem.
            local &= is_local(&file);
        }
    }
    for wd in old.keys().filter(|wd| !watched.contains_key(wd)) {
        // A watch whose inode is gone is removed already.
        let _ = inotify::remove_watch(inotify, *wd);
    }
    Ok(Armed { watched, local })
}

/// Every link `path` goes through and the file it ends at, each as its
/// directory (links resolved) and its name there, in the order met.
fn path_entries(path: &Path) -> io::Result<Vec<(PathBuf, OsString)>> {
    let mut pending: Vec<OsString> = Vec::new();
    let absolute = std::path::absolute(path)?;
    push_components(&mut pending, &absolute);
    let mut resolved = PathBuf::from("/");
    let mut entries: Vec<(PathBuf, OsString)> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        match component.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&component);
        match std::fs::read_link(&candidate) {
            Ok(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "more than {MAX_LINKS} links on the way to {}",
                        path.display()
                    )));
                }
                entries.push((resolved.clone(), component));
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                push_components(&mut pending, &target);
            }
            // Not a link (or not there): the path goes on from it.
            Err(_) => resolved = candidate,
        }
    }
    let end = match (resolved.parent(), resolved.file_name()) {
        (Some(directory), Some(name)) => (directory.to_path_buf(), name.to_os_string()),
        _ => {
            return Err(io::Error::other(format!(
                "{} leads to no file",
                path.display()
            )));
        }
    };
    entries.push(end);
    Ok(entries)
}

/// Puts `path`'s components on the stack `pending`, the first on top.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => pending.push(name.to_os_string()),
            Component::ParentDir => pending.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// Whether `path` is on a filesystem where inotify sees every change: one
/// whose files only this machine writes (and whose open files a look
/// cannot block on a server).
pub(crate) fn is_local(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|stat| is_local_stat(&stat))
}

/// Whether `statfs`'s answer names a filesystem whose files only this
/// machine writes.
fn is_local_stat(stat: &rustix::fs::StatFs) -> bool {
    // The magic numbers are 32-bit; `f_type` is as wide as a long.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    is_local_type(stat.f_type as u32)
}

/// Whether a filesystem type (`statfs`'s `f_type`) is one whose files only
/// this machine writes.
fn is_local_type(magic: u32) -> bool {
    const LOCAL: [u32; 11] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x8584_58F6, // ramfs
        0x794C_7630, // overlayfs
        0xF2F5_2010, // f2fs
        0x2FC1_2FC1, // zfs
        0xCA45_1A4E, // bcachefs
        0x7371_7368, // squashfs
        0x4D44,      // vfat
    ];
    LOCAL.contains(&magic)
}

#[cfg(test)]
mod tests;
