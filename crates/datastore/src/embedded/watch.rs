//! Watches: a tokio task per watch with its own read connection. It reads new history rows whenever
//! something may have changed: inotify reports that a process closed a commit signal file (every
//! writer does right after each commit), this store committed, or the fallback poll interval passed.
//! The task ends when the stream is dropped.
//!
//! Signal files live in a directory of their own next to the database, so the other files there (the
//! database, its WAL and shared memory, which every CNI invocation closes on exit, and whatever else
//! shares the directory) wake no watch.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventStream, Inotify, WatchMask};
use rusqlite::{Connection, ErrorCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::EmbeddedOptions;
use super::ops::{self, WatchCursor};
use super::sql::{self, TxError};
use crate::{Revision, StoreError, WatchEvent, WatchStream};

/// Events buffered between the task and the consumer before the task waits.
const CHANNEL_CAPACITY: usize = 1024;
/// How often a watch reads anyway while inotify reports commits: a safety net for a lost event, rare
/// enough that hundreds of idle watches on one machine (twenty calico-nodes in a lab) cost nothing.
const POLL_WITH_INOTIFY: Duration = Duration::from_secs(2);

/// Commit signal files are named after the database file with this appended, then `.` and a key
/// class; without a class the file signals every watch.
const COMMIT_SIGNAL_SUFFIX: &str = ".committed";
/// The directory holding the signal files is named after the database file with this appended.
const SIGNAL_DIR_SUFFIX: &str = ".signals";
/// A key's class: at most this many of its leading path segments, never its last one (the name), so
/// a class separates the kinds of resource (`/calico/resources/v3/projectcalico.org/workloadendpoints`)
/// and IPAM's blocks from its handles.
const CLASS_SEGMENTS: usize = 5;
/// Longest file name most filesystems take.
const MAX_FILE_NAME: usize = 255;

/// The class of `key` (see [`CLASS_SEGMENTS`]), without a trailing `/`.
fn key_class(key: &str) -> String {
    let segments: Vec<&str> = key.split('/').collect();
    // `/a/b/name` splits into "", "a", "b", "name": the leading "" keeps the class's leading `/`.
    let keep = segments.len().saturating_sub(1).min(CLASS_SEGMENTS + 1);
    segments[..keep].join("/")
}

/// Whether a commit of a key of `class` may concern a watch of `prefix`: some key under the class
/// starts with the prefix.
fn class_concerns(class: &str, prefix: &str) -> bool {
    let under = format!("{class}/");
    under.starts_with(prefix) || prefix.starts_with(&under)
}

/// Whether a commit of a key of `class` may concern a watch that wants keys under any of `interest`.
fn class_concerns_any(class: &str, interest: &[String]) -> bool {
    interest.iter().any(|prefix| class_concerns(class, prefix))
}

/// File-name form of a class: `%` and `/` escaped.
fn escape_class(class: &str) -> String {
    class.replace('%', "%25").replace('/', "%2F")
}

fn unescape_class(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}

/// The directory of the signal files (`datastore.db.signals`, next to `datastore.db`).
pub(super) fn signal_dir(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(SIGNAL_DIR_SUFFIX);
    path.with_file_name(name)
}

/// The signal file that wakes every watch (`datastore.db.signals/datastore.db.committed`).
fn everyone_signal(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(COMMIT_SIGNAL_SUFFIX);
    signal_dir(path).join(name)
}

/// The signal files a commit of `keys` touches: one per class of key, or the one for every watch when
/// `everyone` or when a class is too long for a file name.
pub(super) fn signal_paths(path: &Path, keys: &[&str], everyone: bool) -> Vec<PathBuf> {
    let everyone_path = everyone_signal(path);
    if everyone {
        return vec![everyone_path];
    }
    let dir = signal_dir(path);
    let base = everyone_path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut names = std::collections::BTreeSet::new();
    for key in keys {
        let name = format!("{base}.{}", escape_class(&key_class(key)));
        if name.len() > MAX_FILE_NAME {
            return vec![everyone_path];
        }
        names.insert(name);
    }
    names.into_iter().map(|name| dir.join(name)).collect()
}

/// Whether a closed file named `name` is a commit signal that concerns a watch wanting keys under any
/// of `interest`, given the database's everyone-signal name `base`.
fn signal_concerns(name: &str, base: &str, interest: &[String]) -> bool {
    if name == base {
        return true;
    }
    match name
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('.'))
    {
        Some(class) => class_concerns_any(&unescape_class(class), interest),
        None => false,
    }
}

type Item = Result<WatchEvent, StoreError>;

/// A watch of `prefix` that wakes only for commits of keys that may lie under one of `interest` (each
/// under `prefix`; empty means all of `prefix`).
pub(super) fn start(
    path: &Path,
    options: &EmbeddedOptions,
    prefix: &str,
    interest: &[String],
    from_revision: Revision,
    local_commits: tokio::sync::watch::Receiver<Revision>,
) -> Result<WatchStream, StoreError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Other("an embedded-store watch must be started inside a tokio runtime".into())
    })?;
    let display_path = path.display().to_string();
    let conn = sql::connect(path, options.busy_timeout, false)?;
    let interest = if interest.is_empty() {
        vec![prefix.to_string()]
    } else {
        interest.to_vec()
    };
    let file_changes = match FileChanges::new(path, interest) {
        Ok(changes) => Some(changes),
        Err(err) => {
            tracing::warn!(
                path = %display_path,
                error = %err,
                "cannot watch the datastore file with inotify; falling back to polling"
            );
            None
        }
    };
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let watcher = Watcher {
        conn,
        display_path,
        prefix: prefix.to_string(),
        cursor: WatchCursor::before(from_revision),
        poll_interval: options.watch_poll_interval,
    };
    runtime.spawn(watcher.run(sender, local_commits, file_changes));
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok(Box::pin(stream))
}

/// inotify on the signal directory, for commit signal files being closed after a write (the directory
/// is watched rather than the files, which may not exist yet).
struct FileChanges {
    events: EventStream<Vec<u8>>,
    /// The name of the signal file that wakes every watch; class signals add `.<class>`.
    base: String,
    /// The prefixes whose keys the watch wants.
    interest: Vec<String>,
}

impl FileChanges {
    fn new(path: &Path, interest: Vec<String>) -> std::io::Result<Self> {
        let dir = signal_dir(path);
        std::fs::create_dir_all(&dir)?;
        let base = everyone_signal(path)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let inotify = Inotify::init()?;
        inotify.watches().add(&dir, WatchMask::CLOSE_WRITE)?;
        let events = inotify.into_event_stream(vec![0u8; 4096])?;
        Ok(FileChanges {
            events,
            base,
            interest,
        })
    }

    /// Wait for a commit by any process that may concern this watch. `None` when inotify stopped
    /// working.
    async fn next_change(&mut self) -> Option<()> {
        loop {
            let event = self.events.next().await?.ok()?;
            let ours = match &event.name {
                Some(name) => signal_concerns(&name.to_string_lossy(), &self.base, &self.interest),
                // An event without a name (such as a queue overflow) may hide ours.
                None => true,
            };
            if ours {
                return Some(());
            }
        }
    }
}

struct Watcher {
    conn: Connection,
    display_path: String,
    prefix: String,
    cursor: WatchCursor,
    poll_interval: Duration,
}

impl Watcher {
    async fn run(
        mut self,
        sender: mpsc::Sender<Item>,
        mut local_commits: tokio::sync::watch::Receiver<Revision>,
        mut file_changes: Option<FileChanges>,
    ) {
        let mut local_open = true;
        loop {
            if !self.deliver(&sender).await {
                return;
            }
            // With inotify every commit wakes us and the timer is only a safety net; without it the
            // timer is how commits are seen.
            let interval = if file_changes.is_some() {
                self.poll_interval.max(POLL_WITH_INOTIFY)
            } else {
                self.poll_interval
            };
            let deadline = Instant::now() + interval;
            // Every wake-up but the consumer leaving means: read again.
            let stop = tokio::select! {
                _ = sender.closed() => true,
                changed = local_commits.changed(), if local_open => {
                    if changed.is_err() {
                        // The store was dropped; other processes' writes still arrive via inotify.
                        local_open = false;
                    }
                    false
                }
                change = next_file_change(&mut file_changes) => {
                    if change.is_none() {
                        tracing::warn!(path = %self.display_path, "inotify stopped; watch falls back to polling");
                        file_changes = None;
                    }
                    false
                }
                _ = tokio::time::sleep_until(deadline) => false,
            };
            if stop {
                return;
            }
        }
    }

    /// Send every new event. Returns false when the watch is over (consumer gone or a final error sent).
    async fn deliver(&mut self, sender: &mpsc::Sender<Item>) -> bool {
        loop {
            let chunk = ops::read_events(&mut self.conn, &self.prefix, &mut self.cursor);
            match chunk {
                Ok(chunk) => {
                    for event in chunk.events {
                        if sender.send(Ok(event)).await.is_err() {
                            return false;
                        }
                    }
                    if chunk.caught_up {
                        return true;
                    }
                }
                Err(TxError::Sql(err)) if is_busy(&err) => {
                    // Another process holds the file briefly (e.g. recovering the WAL): try again later.
                    tracing::debug!(path = %self.display_path, error = %err, "watch read deferred");
                    return true;
                }
                Err(err) => {
                    let err = err.into_store_error(&self.display_path);
                    // Best effort: the consumer may already be gone.
                    let _ = sender.send(Err(err)).await;
                    return false;
                }
            }
        }
    }
}

async fn next_file_change(file_changes: &mut Option<FileChanges>) -> Option<()> {
    match file_changes {
        Some(changes) => changes.next_change().await,
        None => std::future::pending().await,
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod signal_tests {
    use super::*;

    #[test]
    fn a_key_s_class_is_its_leading_segments_without_its_name() {
        assert_eq!(
            key_class("/calico/resources/v3/projectcalico.org/workloadendpoints/ns/name"),
            "/calico/resources/v3/projectcalico.org/workloadendpoints"
        );
        assert_eq!(
            key_class("/calico/ipam/v2/assignment/ipv4/block/198.19.0.0-26"),
            "/calico/ipam/v2/assignment/ipv4"
        );
        assert_eq!(
            key_class("/calico/ipam/v2/handle/h1"),
            "/calico/ipam/v2/handle"
        );
        assert_eq!(key_class("/x/1"), "/x");
        assert_eq!(key_class("/top"), "");
    }

    #[test]
    fn a_watch_wakes_for_classes_its_prefix_can_hold_and_no_others() {
        let wep = "/calico/resources/v3/projectcalico.org/workloadendpoints";
        let block = "/calico/ipam/v2/assignment/ipv4";
        let handle = "/calico/ipam/v2/handle";
        // calico-node's two watches.
        assert!(class_concerns(wep, "/calico/resources/v3/"));
        assert!(!class_concerns(block, "/calico/resources/v3/"));
        assert!(class_concerns(block, "/calico/ipam/v2/assignment/"));
        assert!(!class_concerns(handle, "/calico/ipam/v2/assignment/"));
        assert!(!class_concerns(wep, "/calico/ipam/v2/assignment/"));
        // Narrower and broader prefixes, and everything.
        assert!(class_concerns(wep, &format!("{wep}/ns1/")));
        assert!(class_concerns(wep, "/calico/"));
        assert!(class_concerns(wep, ""));
        assert!(class_concerns("/x", "/x/"));
        assert!(!class_concerns("/xy", "/x/"));
        assert!(class_concerns("", "/anything/"));
    }

    #[test]
    fn signal_files_are_one_per_class_and_name_their_class() {
        let db = Path::new("/run/lab/datastore.db");
        let paths = signal_paths(
            db,
            &[
                "/calico/ipam/v2/assignment/ipv4/block/198.19.0.0-26",
                "/calico/ipam/v2/handle/h1",
                "/calico/ipam/v2/handle/h2",
            ],
            false,
        );
        let names: Vec<String> = paths
            .iter()
            .map(|p| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "datastore.db.committed.%2Fcalico%2Fipam%2Fv2%2Fassignment%2Fipv4".to_string(),
                "datastore.db.committed.%2Fcalico%2Fipam%2Fv2%2Fhandle".to_string(),
            ]
        );
        let base = "datastore.db.committed";
        let assignment = vec!["/calico/ipam/v2/assignment/".to_string()];
        assert!(signal_concerns(&names[0], base, &assignment));
        assert!(!signal_concerns(&names[1], base, &assignment));
        assert!(signal_concerns(base, base, &assignment));
        let everything = vec!["/calico/".to_string()];
        assert!(!signal_concerns("datastore.db-wal", base, &everything));
        assert!(!signal_concerns("other.db.committed", base, &everything));
        assert_eq!(
            signal_paths(db, &["/calico/a/b"], true),
            vec![PathBuf::from(
                "/run/lab/datastore.db.signals/datastore.db.committed"
            )]
        );
        let long = format!("/{}/name", "x".repeat(300));
        assert_eq!(
            signal_paths(db, &[long.as_str()], false),
            vec![PathBuf::from(
                "/run/lab/datastore.db.signals/datastore.db.committed"
            )]
        );
        // A class with `%` in it survives the file-name round trip.
        assert_eq!(unescape_class(&escape_class("/a%2F/b")), "/a%2F/b");
    }

    #[test]
    fn signal_files_live_apart_from_the_database_s_own_files() {
        // The database, its WAL and shared memory are closed after writing by every process that
        // used them; in the signal directory those closes would wake every watch.
        let db = Path::new("/run/lab/datastore.db");
        let dir = signal_dir(db);
        assert_eq!(dir, PathBuf::from("/run/lab/datastore.db.signals"));
        let paths = signal_paths(
            db,
            &["/calico/resources/v3/projectcalico.org/workloadendpoints/ns/a"],
            false,
        );
        assert!(paths.iter().all(|p| p.parent() == Some(dir.as_path())));
        for own in ["datastore.db", "datastore.db-wal", "datastore.db-shm"] {
            assert_ne!(db.with_file_name(own).parent(), Some(dir.as_path()));
        }
    }

    #[test]
    fn a_watch_with_several_interests_wakes_only_for_their_classes() {
        // calico-node's syncer watches `/calico/` (the common prefix) but wants only these two: IPAM
        // handles and Felix status reports, which share that prefix, must not wake it.
        let interest = vec![
            "/calico/resources/v3/".to_string(),
            "/calico/ipam/v2/assignment/".to_string(),
        ];
        let base = "datastore.db.committed";
        let name = |class: &str| format!("{base}.{}", escape_class(class));
        assert!(signal_concerns(
            &name("/calico/resources/v3/projectcalico.org/workloadendpoints"),
            base,
            &interest
        ));
        assert!(signal_concerns(
            &name("/calico/ipam/v2/assignment/ipv4"),
            base,
            &interest
        ));
        assert!(!signal_concerns(
            &name("/calico/ipam/v2/handle"),
            base,
            &interest
        ));
        assert!(!signal_concerns(
            &name("/calico/felix/v2/no-region/host"),
            base,
            &interest
        ));
        assert!(signal_concerns(base, base, &interest));
    }
}
