//! The embedded backend: one SQLite file that every process on a machine shares.
//!
//! The file holds three tables: `kv` (the current value of every key, for fast reads), `history` (every
//! version of every key with the revision that wrote it, plus a tombstone row per delete, for reads at past
//! revisions and for watches) and `meta` (format marker, current and compacted revisions).
//!
//! Many processes use the file at once (CNI invocations, calicoctl, calico-node), so every decision that
//! involves the revision counter, create-if-absent or compare-and-swap is taken inside one
//! `BEGIN IMMEDIATE` transaction. The file runs in WAL mode with `synchronous=NORMAL`: durable across
//! process crashes, and readers never wait for writers.
//!
//! Watches poll the history table from their own connection, woken by this store's own commits, by
//! inotify when any process closes a commit signal file (`<file>.signals/<file>.committed.<key class>`,
//! which every writer opens for writing and closes right after each commit, so the commit is visible
//! by then; a watch wakes only for the classes of key its wanted prefixes can hold), and by a slow
//! fallback timer. Only commits wake them: other processes opening, reading and closing the database
//! itself (each CNI invocation does) do not, since the signal files have a directory of their own.

mod ops;
mod sql;
mod watch;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior};

use self::sql::TxError;
use crate::{KeyValue, ListResult, Revision, Store, StoreError, WatchStream, WriteOp};

/// Most ops one [`Store::batch`] accepts.
pub const MAX_BATCH_OPS: usize = 10_000;

/// Whether opening may create the store.
///
/// Only the processes that own a machine's store (calico-node, calico-lab) create it; clients (calicoctl,
/// the CNI plugin) open what exists, so a mistyped path is an error instead of a new, empty cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// A missing or zero-length file (and its directory) is created and initialised.
    Create,
    /// A missing or zero-length file is refused with an error naming the path; nothing is written.
    MustExist,
}

/// Tuning for [`EmbeddedStore::open_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Whether a missing or empty file is initialised or refused.
    pub open_mode: OpenMode,
    /// Revisions of history that automatic compaction keeps (reads and watches may go this far back).
    pub history_retention: i64,
    /// Automatic compaction runs when the revision reaches a multiple of this (0 turns it off).
    pub auto_compact_interval: i64,
    /// How long a write waits for another process's write to finish before giving up with `Unavailable`.
    pub busy_timeout: Duration,
    /// How often a watch re-reads the file when no change notification arrives.
    pub watch_poll_interval: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            open_mode: OpenMode::Create,
            history_retention: 100_000,
            auto_compact_interval: 1_000,
            busy_timeout: Duration::from_secs(10),
            watch_poll_interval: Duration::from_millis(100),
        }
    }
}

/// A [`Store`] in one SQLite file, safe to share between many processes.
///
/// SQLite calls block (a write waits up to the busy timeout while another process holds the file), so
/// every [`Store`] method runs its SQLite work on tokio's blocking pool, never on an async worker: a
/// locked file delays that call, not the runtime's other tasks. Clones share the connection.
#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    display_path: String,
    options: EmbeddedOptions,
    conn: Arc<Mutex<Connection>>,
    /// The newest revision this store committed: wakes this process's watches without waiting for inotify.
    local_commits: Arc<tokio::sync::watch::Sender<Revision>>,
}

/// Milliseconds since the Unix epoch (lease expiry times are shared between processes).
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Runs `work` (SQLite calls) on the blocking pool and waits for it.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Other(format!("an embedded-store task failed: {err}")))?
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Open the store at `path` with default options, creating the file (and its directory) if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Open the store at `path`. A missing or zero-length file is initialised or refused, as
    /// `options.open_mode` says; any other file must be a calico-rs store, or this fails with `Corrupt` and
    /// leaves the file alone.
    pub fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let given = path.as_ref();
        // Absolute, so watches find the directory even if the process changes directory later.
        let path = std::path::absolute(given).map_err(|err| {
            StoreError::Unavailable(format!("cannot resolve {}: {err}", given.display()))
        })?;
        let conn = sql::open_store(&path, options.busy_timeout, options.open_mode)?;
        let display_path = path.display().to_string();
        let (revision, _) =
            ops::revisions(&conn).map_err(|err| err.into_store_error(&display_path))?;
        let (local_commits, _) = tokio::sync::watch::channel(revision);
        Ok(EmbeddedStore {
            path,
            display_path,
            options,
            conn: Arc::new(Mutex::new(conn)),
            local_commits: Arc::new(local_commits),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The oldest revision reads and watches can still reach.
    pub fn compacted_revision(&self) -> Result<Revision, StoreError> {
        self.read(|conn| Ok(ops::revisions(conn)?.1))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back when the guard's owner unwound.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `body` in one read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        body: impl FnOnce(&Connection) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction()?;
            let value = body(&tx)?;
            tx.finish()?;
            Ok(value)
        })();
        result.map_err(|err: TxError| err.into_store_error(&self.display_path))
    }

    /// Run `body` in one write transaction that holds the file's write lock from the start.
    /// Nothing is kept if `body` fails.
    fn write_locked<T>(
        &self,
        body: impl FnOnce(&Connection) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = body(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|err: TxError| err.into_store_error(&self.display_path))
    }

    /// Apply `ops` at one new revision, all or nothing. Returns the revision and each key's prior value.
    fn commit_ops(&self, ops: &[WriteOp]) -> Result<(Revision, Vec<Option<KeyValue>>), StoreError> {
        self.commit_ops_with_lease(ops, None)
    }

    /// [`Self::commit_ops`], then (Some) a lease on the single op's key expiring after the TTL. Keys
    /// whose lease has expired are deleted first, at a revision of their own, as etcd does when a lease
    /// runs out; every write detaches the lease of the keys it writes.
    fn commit_ops_with_lease(
        &self,
        ops: &[WriteOp],
        ttl: Option<Duration>,
    ) -> Result<(Revision, Vec<Option<KeyValue>>), StoreError> {
        for op in ops {
            if op.key().is_empty() {
                return Err(StoreError::Invalid("a key must not be empty".into()));
            }
        }
        let options = &self.options;
        let now_ms = unix_millis();
        let (revision, previous, expired_any) = self.write_locked(|conn| {
            let (mut current, compacted) = ops::revisions(conn)?;
            let expired = ops::expired_keys(conn, now_ms)?;
            let expired_any = !expired.is_empty();
            if !expired.is_empty() {
                current += 1;
                for (seq, key) in (0_i64..).zip(&expired) {
                    let delete = WriteOp::Delete {
                        key: key.clone(),
                        expected_mod_revision: None,
                    };
                    ops::apply(conn, current, seq, &delete)?;
                    ops::set_lease(conn, key, None)?;
                }
            }
            let revision = current + 1;
            let mut previous = Vec::with_capacity(ops.len());
            for (seq, op) in (0_i64..).zip(ops) {
                previous.push(ops::apply(conn, revision, seq, op)?);
                let expires = ttl.map(|ttl| {
                    now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                });
                ops::set_lease(conn, op.key(), expires)?;
            }
            ops::set_meta_counter(conn, "revision", revision)?;
            if options.auto_compact_interval > 0 && revision % options.auto_compact_interval == 0 {
                let target = revision - options.history_retention.max(0);
                if target > compacted {
                    ops::compact_history(conn, target, compacted)?;
                }
            }
            Ok((revision, previous, expired_any))
        })?;
        self.local_commits.send_replace(revision);
        let keys: Vec<&str> = ops.iter().map(WriteOp::key).collect();
        self.signal_commit(&keys, expired_any);
        Ok((revision, previous))
    }

    /// Tells other processes' watches that a commit happened: opening a signal file for writing and
    /// closing it is the inotify event they wait for. There is one signal file per class of key written
    /// (see [`watch::signal_classes`]), so a watch wakes only for commits that can concern its prefix;
    /// a commit that also deleted expired keys signals every watch. If touching fails, the watches still
    /// see the commit at their fallback poll, so the failure is logged rather than returned (the commit
    /// itself succeeded).
    fn signal_commit(&self, keys: &[&str], everyone: bool) {
        let touch = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
        };
        for path in watch::signal_paths(&self.path, keys, everyone) {
            let mut touched = touch(&path);
            if matches!(&touched, Err(err) if err.kind() == std::io::ErrorKind::NotFound) {
                // The first signal since the store was created: the directory is made on demand.
                touched = std::fs::create_dir_all(watch::signal_dir(&self.path))
                    .and_then(|()| touch(&path));
            }
            if let Err(err) = touched {
                tracing::warn!(
                    path = %path.display(),
                    error = %err,
                    "cannot touch a commit signal file; other processes see this commit at their next poll"
                );
            }
        }
    }

    fn commit_one(&self, op: WriteOp) -> Result<(Revision, Option<KeyValue>), StoreError> {
        let (revision, mut previous) = self.commit_ops(std::slice::from_ref(&op))?;
        Ok((revision, previous.pop().flatten()))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let (this, key) = (self.clone(), key.to_string());
        off_runtime(move || this.read(|conn| ops::current_kv(conn, &key))).await
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        let (this, prefix) = (self.clone(), prefix.to_string());
        off_runtime(move || this.list_now(&prefix, at)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let op = WriteOp::Create {
            key: key.to_string(),
            value,
        };
        Ok(self.commit_one_off_runtime(op).await?.0)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
    ) -> Result<Revision, StoreError> {
        let op = WriteOp::Update {
            key: key.to_string(),
            value,
            expected_mod_revision,
        };
        Ok(self.commit_one_off_runtime(op).await?.0)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let op = WriteOp::Put {
            key: key.to_string(),
            value,
        };
        Ok(self.commit_one_off_runtime(op).await?.0)
    }

    async fn put_with_ttl(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Revision, StoreError> {
        let op = WriteOp::Put {
            key: key.to_string(),
            value,
        };
        let this = self.clone();
        Ok(
            off_runtime(move || this.commit_ops_with_lease(&[op], Some(ttl)))
                .await?
                .0,
        )
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let op = WriteOp::Delete {
            key: key.to_string(),
            expected_mod_revision,
        };
        match self.commit_one_off_runtime(op).await? {
            (_, Some(deleted)) => Ok(deleted),
            // `apply` fails a delete of a missing key, so a commit always has the prior value.
            (_, None) => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn batch(&self, ops: Vec<WriteOp>) -> Result<Revision, StoreError> {
        if ops.len() > MAX_BATCH_OPS {
            return Err(StoreError::Invalid(format!(
                "batch of {} ops exceeds the limit of {MAX_BATCH_OPS}",
                ops.len()
            )));
        }
        let mut seen = HashSet::with_capacity(ops.len());
        for op in &ops {
            if !seen.insert(op.key()) {
                return Err(StoreError::Invalid(format!(
                    "batch writes key {} more than once",
                    op.key()
                )));
            }
        }
        if ops.is_empty() {
            // Like an etcd transaction without writes: nothing changes, so the revision stays.
            return self.current_revision().await;
        }
        let this = self.clone();
        Ok(off_runtime(move || this.commit_ops(&ops)).await?.0)
    }

    fn max_batch_ops(&self) -> usize {
        MAX_BATCH_OPS
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.watch_wanting(prefix, &[], from_revision).await
    }

    async fn watch_wanting(
        &self,
        prefix: &str,
        wanted: &[String],
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        if from_revision < 0 {
            return Err(StoreError::Invalid(format!(
                "watch revision {from_revision} is negative"
            )));
        }
        watch::start(
            &self.path,
            &self.options,
            prefix,
            wanted,
            from_revision,
            self.local_commits.subscribe(),
        )
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let this = self.clone();
        off_runtime(move || this.compact_now(revision)).await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let this = self.clone();
        off_runtime(move || this.read(|conn| Ok(ops::revisions(conn)?.0))).await
    }
}

impl EmbeddedStore {
    async fn commit_one_off_runtime(
        &self,
        op: WriteOp,
    ) -> Result<(Revision, Option<KeyValue>), StoreError> {
        let this = self.clone();
        off_runtime(move || this.commit_one(op)).await
    }

    fn list_now(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        self.read(|conn| {
            let (current, compacted) = ops::revisions(conn)?;
            match at {
                None => Ok(ListResult {
                    kvs: ops::list_current(conn, prefix)?,
                    revision: current,
                }),
                Some(at) if at < 0 => {
                    Err(StoreError::Invalid(format!("revision {at} is negative")).into())
                }
                Some(at) if at > current => Err(StoreError::Invalid(format!(
                    "revision {at} is in the future (current revision is {current})"
                ))
                .into()),
                Some(at) if at < compacted => Err(StoreError::Compacted {
                    requested: at,
                    compacted,
                }
                .into()),
                Some(at) if at == current => Ok(ListResult {
                    kvs: ops::list_current(conn, prefix)?,
                    revision: current,
                }),
                Some(at) => Ok(ListResult {
                    kvs: ops::list_at(conn, prefix, at)?,
                    revision: at,
                }),
            }
        })
    }

    fn compact_now(&self, revision: Revision) -> Result<(), StoreError> {
        self.write_locked(|conn| {
            let (current, compacted) = ops::revisions(conn)?;
            if revision > current {
                return Err(StoreError::Invalid(format!(
                    "cannot compact to revision {revision}: the current revision is {current}"
                ))
                .into());
            }
            if revision <= compacted {
                // etcd answers the same way when asked to compact again at or below its compaction point.
                return Err(StoreError::Compacted {
                    requested: revision,
                    compacted,
                }
                .into());
            }
            ops::compact_history(conn, revision, compacted)
        })
    }
}
