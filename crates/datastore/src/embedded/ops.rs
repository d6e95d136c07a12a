//! The SQL behind each store operation. Every function runs inside a transaction the caller opened, so
//! a check and the write it guards are decided atomically across processes.

use rusqlite::{Connection, OptionalExtension, params};

use super::sql::TxError;
use crate::{EventKind, KeyValue, Revision, StoreError, WatchEvent, WriteOp};

/// The exclusive upper bound of the keys starting with `prefix`. Keys are UTF-8, which never contains
/// the byte 0xFF, so incrementing the last byte (or 0xFF for the empty prefix) bounds every key.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

/// Current keys in `[?1, ?2)`, served by the `kv` primary-key index.
pub(super) const LIST_CURRENT_SQL: &str =
    "SELECT key, value, create_revision, mod_revision, version FROM kv
     WHERE key >= ?1 AND key < ?2 ORDER BY key";

/// Keys in `[?1, ?2)` as of revision ?3, served by the `history (key, revision)` index. SQLite takes the
/// bare columns from the row that holds MAX(revision) within each group.
pub(super) const LIST_AT_SQL: &str =
    "SELECT key, MAX(revision), value, create_revision, version, deleted
     FROM history WHERE key >= ?1 AND key < ?2 AND revision <= ?3
     GROUP BY key ORDER BY key";

/// History rows after (?1, ?2) up to revision ?3 for keys in `[?4, ?5)`, at most ?6, in write order.
/// `+key` keeps the planner on the (revision, seq) primary key instead of the key index.
/// Events one watch read returns at most; also bounds how long one read holds a snapshot open.
pub(super) const WATCH_CHUNK: usize = 512;

/// The limit is written into the text, not bound: SQLite plans with a bound LIMIT's value, so binding
/// it expires the statement and every watch read compiled the query again (a fifth of an idle
/// calico-node's CPU per commit in a 20-host lab).
pub(super) const WATCH_SQL: &str =
    "SELECT revision, seq, key, value, create_revision, version, deleted
     FROM history WHERE (revision, seq) > (?1, ?2) AND revision <= ?3 AND +key >= ?4 AND +key < ?5
     ORDER BY revision, seq LIMIT 512";

fn key_from_blob(blob: Vec<u8>) -> Result<String, TxError> {
    String::from_utf8(blob)
        .map_err(|err| TxError::Store(StoreError::Other(format!("stored key is not UTF-8: {err}"))))
}

pub(super) fn meta_counter(conn: &Connection, name: &str) -> Result<i64, TxError> {
    let value: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    value.ok_or_else(|| TxError::Store(StoreError::Other(format!("meta entry {name} is missing"))))
}

pub(super) fn set_meta_counter(conn: &Connection, name: &str, value: i64) -> Result<(), TxError> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(params![name, value])?;
    Ok(())
}

/// The store's (current revision, compacted revision).
pub(super) fn revisions(conn: &Connection) -> Result<(Revision, Revision), TxError> {
    Ok((
        meta_counter(conn, "revision")?,
        meta_counter(conn, "compacted_revision")?,
    ))
}

pub(super) fn current_kv(conn: &Connection, key: &str) -> Result<Option<KeyValue>, TxError> {
    let found = conn
        .prepare_cached(
            "SELECT value, create_revision, mod_revision, version FROM kv WHERE key = ?1",
        )?
        .query_row([key.as_bytes()], |row| {
            Ok(KeyValue {
                key: key.to_string(),
                value: row.get(0)?,
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
                version: row.get(3)?,
            })
        })
        .optional()?;
    Ok(found)
}

/// Current keys under `prefix`, in key order.
pub(super) fn list_current(conn: &Connection, prefix: &str) -> Result<Vec<KeyValue>, TxError> {
    let mut stmt = conn.prepare_cached(LIST_CURRENT_SQL)?;
    let mut rows = stmt.query(params![prefix.as_bytes(), prefix_end(prefix)])?;
    let mut kvs = Vec::new();
    while let Some(row) = rows.next()? {
        kvs.push(KeyValue {
            key: key_from_blob(row.get(0)?)?,
            value: row.get(1)?,
            create_revision: row.get(2)?,
            mod_revision: row.get(3)?,
            version: row.get(4)?,
        });
    }
    Ok(kvs)
}

/// Keys under `prefix` as they were at revision `at`: per key, its newest history row at or below `at`,
/// unless that row is a deletion.
pub(super) fn list_at(
    conn: &Connection,
    prefix: &str,
    at: Revision,
) -> Result<Vec<KeyValue>, TxError> {
    let mut stmt = conn.prepare_cached(LIST_AT_SQL)?;
    let mut rows = stmt.query(params![prefix.as_bytes(), prefix_end(prefix), at])?;
    let mut kvs = Vec::new();
    while let Some(row) = rows.next()? {
        let deleted: bool = row.get(5)?;
        if deleted {
            continue;
        }
        kvs.push(KeyValue {
            key: key_from_blob(row.get(0)?)?,
            mod_revision: row.get(1)?,
            value: row.get(2)?,
            create_revision: row.get(3)?,
            version: row.get(4)?,
        });
    }
    Ok(kvs)
}

fn record_put(
    conn: &Connection,
    revision: Revision,
    seq: i64,
    key: &str,
    value: &[u8],
    create_revision: Revision,
    version: i64,
) -> Result<(), TxError> {
    conn.prepare_cached(
        "INSERT INTO kv (key, value, create_revision, mod_revision, version)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
             create_revision = excluded.create_revision, mod_revision = excluded.mod_revision,
             version = excluded.version",
    )?
    .execute(params![
        key.as_bytes(),
        value,
        create_revision,
        revision,
        version
    ])?;
    conn.prepare_cached(
        "INSERT INTO history (revision, seq, key, value, create_revision, version, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
    )?
    .execute(params![
        revision,
        seq,
        key.as_bytes(),
        value,
        create_revision,
        version
    ])?;
    Ok(())
}

fn record_delete(
    conn: &Connection,
    revision: Revision,
    seq: i64,
    key: &str,
) -> Result<(), TxError> {
    conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
        .execute([key.as_bytes()])?;
    conn.prepare_cached(
        "INSERT INTO history (revision, seq, key, value, create_revision, version, deleted)
         VALUES (?1, ?2, ?3, X'', 0, 0, 1)",
    )?
    .execute(params![revision, seq, key.as_bytes()])?;
    Ok(())
}

/// Apply one op as write number `seq` of `revision`. Returns the key's value before the op.
pub(super) fn apply(
    conn: &Connection,
    revision: Revision,
    seq: i64,
    op: &WriteOp,
) -> Result<Option<KeyValue>, TxError> {
    let key = op.key();
    let existing = current_kv(conn, key)?;
    match op {
        WriteOp::Create { value, .. } => {
            if existing.is_some() {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                }
                .into());
            }
            record_put(conn, revision, seq, key, value, revision, 1)?;
        }
        WriteOp::Update {
            value,
            expected_mod_revision,
            ..
        } => {
            let current = existing.as_ref().ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            if current.mod_revision != *expected_mod_revision {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: *expected_mod_revision,
                    actual: current.mod_revision,
                }
                .into());
            }
            record_put(
                conn,
                revision,
                seq,
                key,
                value,
                current.create_revision,
                current.version + 1,
            )?;
        }
        WriteOp::Put { value, .. } => {
            let (create_revision, version) = match &existing {
                Some(current) => (current.create_revision, current.version + 1),
                None => (revision, 1),
            };
            record_put(conn, revision, seq, key, value, create_revision, version)?;
        }
        WriteOp::Delete {
            expected_mod_revision,
            ..
        } => {
            let current = existing.as_ref().ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            if let Some(expected) = expected_mod_revision
                && current.mod_revision != *expected
            {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: *expected,
                    actual: current.mod_revision,
                }
                .into());
            }
            record_delete(conn, revision, seq, key)?;
        }
    }
    Ok(existing)
}

/// Drop history older than `target`, keeping per key the newest row at or below `target` unless it is
/// a deletion, so reads at any revision >= `target` still see every live key.
///
/// Rows below the previous compaction point are already one live row per key, so only keys written
/// since then can have rows to drop.
pub(super) fn compact_history(
    conn: &Connection,
    target: Revision,
    previous: Revision,
) -> Result<(), TxError> {
    conn.prepare_cached(
        "DELETE FROM history
         WHERE revision < ?1
           AND key IN (SELECT key FROM history WHERE revision >= ?2 AND revision <= ?1)
           AND (deleted = 1
                OR revision < (SELECT MAX(newer.revision) FROM history AS newer
                               WHERE newer.key = history.key AND newer.revision <= ?1))",
    )?
    .execute(params![target, previous])?;
    set_meta_counter(conn, "compacted_revision", target)?;
    Ok(())
}

/// Where a watch has got to: it has delivered every matching event up to and including
/// (`revision`, `seq`) in (revision, op order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WatchCursor {
    pub revision: Revision,
    pub seq: i64,
}

impl WatchCursor {
    /// A cursor before the first event of `revision`.
    pub fn before(revision: Revision) -> Self {
        WatchCursor {
            revision: revision - 1,
            seq: i64::MAX,
        }
    }

    /// The oldest revision the watch still needs whole: compaction past it loses events.
    pub fn needed_revision(&self) -> Revision {
        if self.seq == i64::MAX {
            self.revision + 1
        } else {
            self.revision
        }
    }
}

/// One read of new events for a watch.
pub(super) struct WatchChunk {
    pub events: Vec<WatchEvent>,
    /// True when every event up to the store's revision has been read.
    pub caught_up: bool,
}

/// Read up to [`WATCH_CHUNK`] events after `cursor` under `prefix`, advancing the cursor.
pub(super) fn read_events(
    conn: &mut Connection,
    prefix: &str,
    cursor: &mut WatchCursor,
) -> Result<WatchChunk, TxError> {
    let limit = WATCH_CHUNK;
    // One read transaction: the compaction check and the rows come from the same snapshot.
    let tx = conn.transaction()?;
    let (current, compacted) = revisions(&tx)?;
    let needed = cursor.needed_revision();
    if needed < compacted {
        return Err(StoreError::Compacted {
            requested: needed,
            compacted,
        }
        .into());
    }
    let mut events = Vec::new();
    {
        let mut stmt = tx.prepare_cached(WATCH_SQL)?;
        let mut rows = stmt.query(params![
            cursor.revision,
            cursor.seq,
            current,
            prefix.as_bytes(),
            prefix_end(prefix),
        ])?;
        while let Some(row) = rows.next()? {
            let revision: Revision = row.get(0)?;
            let seq: i64 = row.get(1)?;
            let deleted: bool = row.get(6)?;
            let key = key_from_blob(row.get(2)?)?;
            let event = if deleted {
                WatchEvent {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key,
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: revision,
                        version: 0,
                    },
                }
            } else {
                WatchEvent {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value: row.get(3)?,
                        create_revision: row.get(4)?,
                        mod_revision: revision,
                        version: row.get(5)?,
                    },
                }
            };
            events.push(event);
            *cursor = WatchCursor { revision, seq };
        }
    }
    tx.finish()?;
    let caught_up = events.len() < limit;
    if caught_up && cursor.needed_revision() <= current {
        *cursor = WatchCursor {
            revision: current,
            seq: i64::MAX,
        };
    }
    Ok(WatchChunk { events, caught_up })
}

/// Keys with a TTL and when they expire (ms since the Unix epoch).
pub(super) const LEASES_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS leases (key BLOB PRIMARY KEY, expires_at_ms INTEGER NOT NULL);";

/// Keys whose lease expired at `now_ms`, in key order.
pub(super) fn expired_keys(conn: &Connection, now_ms: i64) -> Result<Vec<String>, TxError> {
    let mut stmt =
        conn.prepare_cached("SELECT key FROM leases WHERE expires_at_ms <= ?1 ORDER BY key")?;
    let keys = stmt
        .query_map([now_ms], |row| row.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys
        .into_iter()
        .map(|key| String::from_utf8_lossy(&key).into_owned())
        .collect())
}

/// Attaches a lease to `key` (Some) or detaches any (None).
pub(super) fn set_lease(
    conn: &Connection,
    key: &str,
    expires_at_ms: Option<i64>,
) -> Result<(), TxError> {
    match expires_at_ms {
        Some(at) => conn
            .prepare_cached(
                "INSERT INTO leases (key, expires_at_ms) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(rusqlite::params![key.as_bytes(), at])?,
        None => conn
            .prepare_cached("DELETE FROM leases WHERE key = ?1")?
            .execute([key.as_bytes()])?,
    };
    Ok(())
}
