//! Watches: a tokio task per watch with its own read connection. It reads new history rows whenever
//! something may have changed: inotify reports that a process closed the commit signal file (every
//! writer does right after each commit), this store committed, or the fallback poll interval passed.
//! The task ends when the stream is dropped.

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

/// Events read per query; also bounds how long one read holds a snapshot open.
const READ_CHUNK: usize = 512;
/// Events buffered between the task and the consumer before the task waits.
const CHANNEL_CAPACITY: usize = 1024;
/// How often a watch reads anyway while inotify reports commits: a safety net for a lost event, rare
/// enough that hundreds of idle watches on one machine (twenty calico-nodes in a lab) cost nothing.
const POLL_WITH_INOTIFY: Duration = Duration::from_secs(2);

/// The commit signal file's name is the database file's name with this appended.
const COMMIT_SIGNAL_SUFFIX: &str = ".committed";

/// The file writers open for writing and close after each commit (`datastore.db.committed`).
pub(super) fn commit_signal_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(COMMIT_SIGNAL_SUFFIX);
    path.with_file_name(name)
}

type Item = Result<WatchEvent, StoreError>;

pub(super) fn start(
    path: &Path,
    options: &EmbeddedOptions,
    prefix: &str,
    from_revision: Revision,
    local_commits: tokio::sync::watch::Receiver<Revision>,
) -> Result<WatchStream, StoreError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        StoreError::Other("an embedded-store watch must be started inside a tokio runtime".into())
    })?;
    let display_path = path.display().to_string();
    let conn = sql::connect(path, options.busy_timeout, false)?;
    let file_changes = match FileChanges::new(path) {
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

/// inotify on the directory holding the database, for the commit signal file being closed after a
/// write (the directory is watched rather than the file, which may not exist yet).
struct FileChanges {
    events: EventStream<Vec<u8>>,
    /// The commit signal file's name.
    signal_name: OsString,
}

impl FileChanges {
    fn new(path: &Path) -> std::io::Result<Self> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let signal_name = commit_signal_path(path)
            .file_name()
            .map(|name| name.to_os_string())
            .unwrap_or_default();
        let inotify = Inotify::init()?;
        inotify.watches().add(dir, WatchMask::CLOSE_WRITE)?;
        let events = inotify.into_event_stream(vec![0u8; 4096])?;
        Ok(FileChanges {
            events,
            signal_name,
        })
    }

    /// Wait for a commit by any process. `None` when inotify stopped working.
    async fn next_change(&mut self) -> Option<()> {
        loop {
            let event = self.events.next().await?.ok()?;
            let ours = match &event.name {
                Some(name) => *name == self.signal_name,
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

enum Wake {
    Stop,
    Changed,
    FileChanged,
    Timer,
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
            let wake = tokio::select! {
                _ = sender.closed() => Wake::Stop,
                changed = local_commits.changed(), if local_open => {
                    if changed.is_err() {
                        // The store was dropped; other processes' writes still arrive via inotify.
                        local_open = false;
                    }
                    Wake::Changed
                }
                change = next_file_change(&mut file_changes) => match change {
                    Some(()) => Wake::FileChanged,
                    None => {
                        tracing::warn!(path = %self.display_path, "inotify stopped; watch falls back to polling");
                        file_changes = None;
                        Wake::Changed
                    }
                },
                _ = tokio::time::sleep_until(deadline) => Wake::Timer,
            };
            match wake {
                Wake::Stop => return,
                Wake::Changed | Wake::FileChanged | Wake::Timer => {}
            }
        }
    }

    /// Send every new event. Returns false when the watch is over (consumer gone or a final error sent).
    async fn deliver(&mut self, sender: &mpsc::Sender<Item>) -> bool {
        loop {
            let chunk =
                ops::read_events(&mut self.conn, &self.prefix, &mut self.cursor, READ_CHUNK);
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
