//! The config file's watch on real files: each kind of change is seen
//! without a poll (the polls here come once an hour), unrelated changes are
//! not, and the path's links are followed as they change.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::time::Duration;

use super::*;

/// No poll comes during a test: what is seen, inotify reported.
const NO_POLL: Periods = Periods {
    backstop: Duration::from_secs(3600),
    poll: Duration::from_secs(3600),
    deep: Duration::from_secs(3600),
};

/// How long a change may take to be seen.
const DEADLINE: Duration = Duration::from_secs(5);

/// A watch on `path` whose first look (at once, placing the watches) is
/// taken.
async fn watching(path: &Path) -> FileWatch {
    let mut watch = FileWatch::with_periods(path.to_path_buf(), NO_POLL);
    seen(&mut watch, "the first look").await;
    assert!(
        watch.armed,
        "the watches could not be placed for {}",
        path.display()
    );
    watch
}

/// Waits for a change to be reported.
async fn reported(watch: &mut FileWatch, what: &str) {
    tokio::time::timeout(DEADLINE, watch.changed())
        .await
        .unwrap_or_else(|_| panic!("{what} was not seen within {DEADLINE:?}"));
}

/// Waits for a change to be reported, then reads the file as the config
/// watcher does (which places the watches again when needed).
async fn seen(watch: &mut FileWatch, what: &str) {
    reported(watch, what).await;
    // The file may be missing for a moment (removed, not yet written).
    let _ = watch.read().await.expect("a thread for the read");
}

/// Waits a while for a change that must not be reported.
async fn not_seen(watch: &mut FileWatch, what: &str) {
    let waited = SETTLE * 3;
    let reported = tokio::time::timeout(waited, watch.changed()).await;
    assert!(
        reported.is_err(),
        "{what} was reported as a change of the config file"
    );
}

#[tokio::test]
async fn an_edit_in_place_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    std::fs::write(&path, "b").unwrap();
    seen(&mut watch, "an edit in place").await;
}

#[tokio::test]
async fn a_file_replaced_by_rename_is_seen_and_then_its_edits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    let next = dir.path().join(".weir.yaml.swp");
    std::fs::write(&next, "b").unwrap();
    std::fs::rename(&next, &path).unwrap();
    seen(&mut watch, "a rename over the file").await;
    // The new file is watched, not the one replaced.
    std::fs::write(&path, "c").unwrap();
    seen(&mut watch, "an edit of the new file").await;
}

#[tokio::test]
async fn a_write_not_yet_closed_is_seen_once_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    let mut open = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    open.write_all(b"b").unwrap();
    seen(&mut watch, "a write still open").await;
    drop(open);
}

/// A writer that pauses half-way through the file (a script writing
/// through one redirect, a slow download) is read once it closes the file,
/// not at the pause: the first half may be a valid config, which would be
/// applied (a route's strategy cut off ends its rollout).
#[tokio::test]
async fn a_write_that_pauses_is_read_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    let mut open = std::fs::File::create(&path).unwrap();
    open.write_all(b"first half").unwrap();
    // The writer's pause, part of the scenario: a change reported meanwhile
    // would be read half written.
    let early = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
    assert!(early.is_err(), "read while its writer paused");
    open.write_all(b", second half").unwrap();
    drop(open);
    reported(&mut watch, "the closed write").await;
    let read = watch.read().await.expect("a thread for the read");
    assert_eq!(read.expect("the file"), b"first half, second half");
}

#[tokio::test]
async fn a_removed_file_written_again_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    std::fs::remove_file(&path).unwrap();
    seen(&mut watch, "the removal").await;
    std::fs::write(&path, "b").unwrap();
    seen(&mut watch, "the new file").await;
    std::fs::write(&path, "c").unwrap();
    seen(&mut watch, "an edit of the new file").await;
}

/// A file removed and made again at once, as some programs save, is read
/// once it is written and closed, not while it is new and still empty
/// (which would be refused, and counted, as a config with no settings).
#[tokio::test]
async fn a_file_removed_and_made_again_is_read_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    std::fs::remove_file(&path).unwrap();
    let mut made = std::fs::File::create(&path).unwrap();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        made.write_all(b"b").unwrap();
    });
    reported(&mut watch, "the new file").await;
    let read = watch.read().await.expect("a thread for the read");
    assert_eq!(
        read.ok().as_deref(),
        Some(&b"b"[..]),
        "the file was read before it was written"
    );
    writer.await.unwrap();
}

#[tokio::test]
async fn other_files_in_the_directory_are_not_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    std::fs::write(dir.path().join("other.yaml"), "x").unwrap();
    std::fs::rename(dir.path().join("other.yaml"), dir.path().join("third.yaml")).unwrap();
    not_seen(&mut watch, "a change of other files").await;
}

/// A ConfigMap volume: `config.yaml -> ..data/config.yaml`, `..data ->
/// ..<timestamp>`; an update writes a new timestamped directory and renames
/// a new `..data` link over the old one.
#[tokio::test]
async fn a_config_map_update_is_seen_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let version = |n: u32, text: &str| {
        let versioned = dir.path().join(format!("..2026_12_06_{n}"));
        std::fs::create_dir(&versioned).unwrap();
        std::fs::write(versioned.join("config.yaml"), text).unwrap();
        let link = dir.path().join("..data_tmp");
        symlink(format!("..2026_12_06_{n}"), &link).unwrap();
        std::fs::rename(&link, dir.path().join("..data")).unwrap();
    };
    version(1, "a");
    symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
    let path = dir.path().join("config.yaml");
    let mut watch = watching(&path).await;
    version(2, "b");
    seen(&mut watch, "the first update").await;
    std::fs::remove_dir_all(dir.path().join("..2026_12_06_1")).unwrap();
    version(3, "c");
    seen(&mut watch, "the second update").await;
    // The watches follow the link to the newest directory.
    let newest = dir.path().join("..2026_12_06_3");
    let entries = path_entries(&path).unwrap();
    assert_eq!(
        entries.last(),
        Some(&(newest.clone(), OsString::from("config.yaml"))),
        "{entries:?}"
    );
    std::fs::write(newest.join("config.yaml"), "d").unwrap();
    seen(&mut watch, "an edit in the newest directory").await;
}

#[test]
fn the_entries_of_a_path_are_its_links_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("real")).unwrap();
    std::fs::write(root.join("real/weir.yaml"), "a").unwrap();
    symlink("real", root.join("current")).unwrap();
    symlink(root.join("current/weir.yaml"), root.join("weir.yaml")).unwrap();
    let entries = path_entries(&root.join("weir.yaml")).unwrap();
    assert_eq!(
        entries,
        vec![
            (root.clone(), OsString::from("weir.yaml")),
            (root.clone(), OsString::from("current")),
            (root.join("real"), OsString::from("weir.yaml")),
        ]
    );
    // `..` after a link is taken from where the link leads.
    let entries = path_entries(&root.join("current/../real/./weir.yaml")).unwrap();
    assert_eq!(
        entries,
        vec![
            (root.clone(), OsString::from("current")),
            (root.join("real"), OsString::from("weir.yaml")),
        ]
    );
}

#[test]
fn a_loop_of_links_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    symlink("b", dir.path().join("a")).unwrap();
    symlink("a", dir.path().join("b")).unwrap();
    let error = path_entries(&dir.path().join("a")).unwrap_err();
    assert!(error.to_string().contains("links"), "{error}");
}

#[test]
fn network_filesystems_are_not_local() {
    // tmpfs, ext4 and overlayfs (containers) are; NFS, SMB and FUSE are not.
    assert!(is_local_type(0x0102_1994));
    assert!(is_local_type(0xEF53));
    assert!(is_local_type(0x794C_7630));
    assert!(!is_local_type(0x6969));
    assert!(!is_local_type(0xFE53_4D42));
    assert!(!is_local_type(0x6573_5546));
}

#[tokio::test]
async fn a_path_that_cannot_be_watched_is_polled_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-yet/weir.yaml");
    let periods = Periods {
        backstop: Duration::from_secs(3600),
        poll: Duration::from_millis(50),
        deep: Duration::from_secs(3600),
    };
    let mut watch = FileWatch::with_periods(path.clone(), periods);
    seen(&mut watch, "the first look").await;
    assert!(!watch.armed, "a directory that does not exist was watched");
    // Only a poll can see this, and it places the watches.
    std::fs::create_dir(dir.path().join("not-yet")).unwrap();
    std::fs::write(&path, "a").unwrap();
    seen(&mut watch, "the file's creation").await;
    assert!(
        watch.armed,
        "the watches were not placed once they could be"
    );
    assert_eq!(watch.period, periods.backstop);
    std::fs::write(&path, "b").unwrap();
    seen(&mut watch, "an edit").await;
}

/// Writes `pieces` to the open `path`, `gap` apart; the task's result is
/// the file, still open (closed, it would be read at once).
fn write_in_pieces(
    path: &Path,
    pieces: usize,
    gap: Duration,
) -> tokio::task::JoinHandle<std::fs::File> {
    let mut open = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    tokio::spawn(async move {
        for _ in 0..pieces {
            open.write_all(b"x").unwrap();
            tokio::time::sleep(gap).await;
        }
        open
    })
}

#[tokio::test]
async fn a_file_written_in_pieces_is_read_after_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    let began = Instant::now();
    // Three pieces 60 ms apart: the last at 120 ms, so no read before 220.
    let writer = write_in_pieces(&path, 3, Duration::from_millis(60));
    seen(&mut watch, "the pieces").await;
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "read {waited:?} after the first piece, before the last had settled"
    );
    writer.await.unwrap();
}

#[tokio::test]
async fn a_file_written_on_and_on_is_read_within_the_longest_settle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    // A piece every 50 ms for longer than the longest settle: each would
    // put the read off again.
    let pieces = usize::try_from((SETTLE_AT_MOST * 2).as_millis() / 50).unwrap();
    let writer = write_in_pieces(&path, pieces, Duration::from_millis(50));
    let limit = SETTLE_AT_MOST + Duration::from_secs(1);
    let seen_in = tokio::time::timeout(limit, watch.changed()).await;
    assert!(
        seen_in.is_ok(),
        "a file still being written was not read within {limit:?}"
    );
    writer.abort();
}

#[tokio::test]
async fn a_directory_on_the_path_replaced_is_watched_after_a_poll() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, text: &str| {
        std::fs::create_dir_all(dir.path().join(name).join("conf")).unwrap();
        std::fs::write(dir.path().join(name).join("conf/weir.yaml"), text).unwrap();
    };
    make("app", "a");
    let path = dir.path().join("app/conf/weir.yaml");
    let mut watch = watching(&path).await;
    // A deploy swaps the directory above the file's: no watch hears it.
    make("app.new", "b");
    std::fs::rename(dir.path().join("app"), dir.path().join("app.old")).unwrap();
    std::fs::rename(dir.path().join("app.new"), dir.path().join("app")).unwrap();
    // What a poll does: it asks for the watches again, and the read places them.
    watch.rearm = true;
    watch.read().await.unwrap().unwrap();
    std::fs::write(&path, "c").unwrap();
    seen(&mut watch, "an edit in the new directory").await;
}

#[tokio::test]
async fn a_poll_places_the_watches_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let periods = Periods {
        backstop: Duration::from_millis(50),
        poll: Duration::from_millis(50),
        deep: Duration::from_millis(50),
    };
    let mut watch = FileWatch::with_periods(path, periods);
    seen(&mut watch, "the first look").await;
    assert!(!watch.rearm, "the first read left the watches to place");
    tokio::time::timeout(DEADLINE, watch.changed())
        .await
        .unwrap();
    assert!(watch.rearm, "a poll did not ask for the watches again");
}

/// Polls that glance: every 50 ms, reading only every hour.
const GLANCING: Periods = Periods {
    backstop: Duration::from_millis(50),
    poll: Duration::from_millis(50),
    deep: Duration::from_secs(3600),
};

/// A watch on `path` (and `also`, as the certificate files) with glancing
/// polls, its first look taken, and inotify's reports no longer heard: what
/// is seen from then on, a glance saw.
async fn glancing(path: &Path, also: &[PathBuf]) -> FileWatch {
    let mut watch = FileWatch::with_periods(path.to_path_buf(), GLANCING);
    reported(&mut watch, "the first look").await;
    watch
        .read_with(also.to_vec(), || ())
        .await
        .expect("a thread for the read")
        .0
        .expect("the file is read");
    assert!(watch.armed, "the watches were not placed");
    assert!(watch.glance.is_some(), "nothing to glance at");
    // Events of watch descriptors not in the table are not heard.
    watch.watched.clear();
    watch
}

/// A config file written in a new directory, and a glancing watch on it.
async fn a_glanced_file() -> (tempfile::TempDir, PathBuf, FileWatch) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let watch = glancing(&path, &[]).await;
    (dir, path, watch)
}

#[tokio::test]
async fn an_unchanged_file_is_glanced_at_not_read() {
    let (_dir, _, mut watch) = a_glanced_file().await;
    // Some ten polls, none of which asks for a read.
    not_seen(&mut watch, "a poll of an unchanged file").await;
    // The same polls without a glance read the file each time.
    watch.glance = None;
    reported(&mut watch, "a poll without a glance (it reads)").await;
}

#[tokio::test]
async fn a_change_inotify_did_not_report_is_seen_at_a_glance() {
    let (_dir, path, mut watch) = a_glanced_file().await;
    // Same length, in place: its change time tells.
    std::fs::write(&path, "b").unwrap();
    reported(&mut watch, "an edit, at a glance,").await;
    assert!(
        watch.rearm,
        "a read after a glance places the watches again"
    );
    assert_eq!(watch.read().await.unwrap().unwrap(), b"b");
}

#[tokio::test]
async fn a_file_replaced_is_seen_at_a_glance() {
    let (dir, path, mut watch) = a_glanced_file().await;
    // The file read is removed (the new one is a new inode).
    std::fs::write(dir.path().join("new.yaml"), "a").unwrap();
    std::fs::rename(dir.path().join("new.yaml"), &path).unwrap();
    reported(&mut watch, "a replaced file, at a glance,").await;
}

#[tokio::test]
async fn a_change_of_a_file_read_with_it_is_seen_at_a_glance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    let certificate = dir.path().join("tls.crt");
    std::fs::write(&path, "a").unwrap();
    std::fs::write(&certificate, "one").unwrap();
    let mut watch = glancing(&path, std::slice::from_ref(&certificate)).await;
    not_seen(&mut watch, "a poll of unchanged files").await;
    std::fs::write(&certificate, "two").unwrap();
    reported(&mut watch, "a certificate's change, at a glance,").await;
}

/// A certificate behind a link re-pointed to a new file (certbot's
/// `live/` into `archive/`, the old file kept) is a change seen at once,
/// without a poll: the old file, which a glance looks at, did not change.
#[tokio::test]
async fn a_link_to_a_file_read_with_it_re_pointed_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let (live, archive) = (dir.path().join("live"), dir.path().join("archive"));
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::write(archive.join("cert1.pem"), "one").unwrap();
    std::fs::write(archive.join("cert2.pem"), "two").unwrap();
    let certificate = live.join("cert.pem");
    symlink("../archive/cert1.pem", &certificate).unwrap();
    let mut watch = watching(&path).await;
    watch
        .read_with(vec![certificate.clone()], || ())
        .await
        .expect("a thread for the read")
        .0
        .expect("the file is read");
    not_seen(&mut watch, "a read with the certificate").await;
    symlink("../archive/cert2.pem", live.join("cert.pem.new")).unwrap();
    std::fs::rename(live.join("cert.pem.new"), &certificate).unwrap();
    reported(&mut watch, "the certificate's link re-pointed").await;
}

#[tokio::test]
async fn a_read_asked_for_the_next_poll_is_made_though_nothing_changed() {
    let (_dir, _, mut watch) = a_glanced_file().await;
    // A certificate change seen once must hold for the next look.
    watch.read_at_next_poll();
    reported(&mut watch, "the read asked for the next poll").await;
    watch.read().await.unwrap().unwrap();
    assert!(watch.glance.is_some(), "the read did not glance again");
}

#[tokio::test]
async fn a_missing_file_read_with_it_leaves_nothing_to_glance_at() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = FileWatch::with_periods(path, GLANCING);
    seen(&mut watch, "the first look").await;
    let missing = dir.path().join("tls.crt");
    watch
        .read_with(vec![missing], || ())
        .await
        .unwrap()
        .0
        .unwrap();
    assert!(
        watch.glance.is_none(),
        "a glance cannot see a missing file come"
    );
}

#[tokio::test]
async fn the_file_is_read_at_the_deep_period_however_it_looks() {
    let (_dir, _, mut watch) = a_glanced_file().await;
    watch.periods.deep = Duration::from_millis(200);
    reported(&mut watch, "the read at the deep period").await;
    assert!(
        watch.read_at.elapsed() >= Duration::from_millis(200),
        "read before the deep period"
    );
}

/// A flood of changes to other files in the config's directory is read
/// a bounded batch at a time, and a change of the config file inside it is
/// still seen.
#[tokio::test]
async fn a_flood_of_events_is_read_a_batch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.yaml");
    std::fs::write(&path, "a").unwrap();
    let mut watch = watching(&path).await;
    // Each write of a new file is two events (created, closed).
    let flood = |from: usize| {
        for n in from..from + EVENTS_PER_TURN * 2 {
            std::fs::write(dir.path().join(format!("other-{n}")), "x").unwrap();
        }
    };
    flood(0);
    let inotify = Arc::clone(watch.inotify.as_ref().unwrap().get_ref());
    let (asked, drained) = read_events(&inotify, &watch.watched).unwrap();
    assert_eq!(asked, Seen::default(), "other files are not changes");
    assert!(!drained, "a flood was read whole in one turn");
    flood(EVENTS_PER_TURN * 2);
    std::fs::write(&path, "b").unwrap();
    flood(EVENTS_PER_TURN * 4);
    seen(&mut watch, "an edit inside a flood").await;
    not_seen(&mut watch, "the rest of the flood").await;
}
