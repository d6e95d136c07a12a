//! Opening the SQLite file: connection settings, the schema, the format marker, damage detection and
//! the mapping of SQLite errors to [`StoreError`].

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::OpenMode;
use crate::StoreError;

/// Written into the `meta` table; a file without it is not ours.
pub(super) const FORMAT_MARKER: &str = "calico-rs embedded datastore";
/// Bumped whenever the schema changes incompatibly.
pub(super) const FORMAT_VERSION: i64 = 1;

/// Bytes of WAL kept after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const SQLITE_HEADER_LEN: usize = 100;

/// Keys are stored as BLOBs so SQLite compares them byte-wise (etcd's order), and so the exclusive upper
/// bound of a prefix scan may be any byte string.
const SCHEMA: &str = "
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value NOT NULL
);
CREATE TABLE kv (
    key             BLOB PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    version         INTEGER NOT NULL
);
CREATE TABLE history (
    revision        INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    key             BLOB NOT NULL,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    PRIMARY KEY (revision, seq)
);
CREATE UNIQUE INDEX history_by_key ON history (key, revision);
";

/// Errors inside a transaction: either the store's answer (conflict, not found...) or SQLite failing.
#[derive(Debug)]
pub(super) enum TxError {
    Store(StoreError),
    Sql(rusqlite::Error),
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        TxError::Store(err)
    }
}

impl From<rusqlite::Error> for TxError {
    fn from(err: rusqlite::Error) -> Self {
        TxError::Sql(err)
    }
}

impl TxError {
    pub(super) fn into_store_error(self, path: &str) -> StoreError {
        match self {
            TxError::Store(err) => err,
            TxError::Sql(err) => classify(path, err),
        }
    }
}

/// Map a SQLite failure to the store's error vocabulary, naming the file.
pub(super) fn classify(path: &str, err: rusqlite::Error) -> StoreError {
    let code = match &err {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            path: path.to_string(),
            reason: err.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(
            format!("{path}: locked by another process for longer than the busy timeout ({err})"),
        ),
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::NoLargeFileSupport
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::AuthorizationForStatementDenied,
        ) => StoreError::Unavailable(format!("{path}: {err}")),
        _ => StoreError::Other(format!("{path}: {err}")),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io_unavailable(path: &Path, what: &str, err: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {err}", path.display()))
}

/// Open a connection with the settings every connection needs. `create` allows creating a missing file.
pub(super) fn connect(
    path: &Path,
    busy_timeout: Duration,
    create: bool,
) -> Result<Connection, StoreError> {
    let display = path.display().to_string();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|err| classify(&display, err))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|err| classify(&display, err))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// What a user who pointed at a file that holds no store should hear: the path, and who makes stores.
fn no_store(path: &Path, what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "no datastore at {}: {what} (only calico-node and calico-lab create the embedded store; check \
         CALICO_DATASTORE_PATH or the configured datastore path)",
        path.display()
    ))
}

/// Open the store file at `path` and return a connection in WAL mode. With [`OpenMode::Create`] a missing
/// or zero-length file (and its directory) is initialised; with [`OpenMode::MustExist`] either is refused
/// with `Unavailable` naming the path, and nothing is created or written.
///
/// A file that exists with content must be a SQLite database carrying our format marker; anything else is
/// reported as `Corrupt` and left untouched.
pub(super) fn open_store(
    path: &Path,
    busy_timeout: Duration,
    mode: OpenMode,
) -> Result<Connection, StoreError> {
    let create = mode == OpenMode::Create;
    if create && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|err| io_unavailable(parent, "cannot create directory", &err))?;
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(StoreError::Unavailable(format!(
                "{} is a directory, not a datastore file",
                path.display()
            )));
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(no_store(path, "the file does not exist"));
            }
        }
        Err(err) => return Err(io_unavailable(path, "cannot access", &err)),
    }

    let display = path.display().to_string();
    // Without the create flag a file removed since the check above is an error, not a new empty file.
    let mut conn = connect(path, busy_timeout, create).map_err(|err| match err {
        StoreError::Unavailable(_) if !create && !path.exists() => {
            no_store(path, "the file does not exist")
        }
        other => other,
    })?;
    if !already_complete(&mut conn, path)? {
        // Holding the write lock while we look at the file means no other process is half-way through
        // initialising it, so "zero length" really means "new".
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| classify(&display, err))?;
        let file_len = check_file(path)?;
        let tables = table_names(&tx).map_err(|err| classify(&display, err))?;
        if tables.is_empty() && file_len == 0 {
            if !create {
                // Dropping the transaction rolls back: nothing was written.
                return Err(no_store(
                    path,
                    "the file is empty (zero length), not an initialised store",
                ));
            }
            initialise(&tx).map_err(|err| classify(&display, err))?;
        } else {
            validate(&tx, path, &tables)?;
        }
        // Files made before leases existed gain the table here, once per open rather than per write.
        tx.execute_batch(super::ops::LEASES_SCHEMA)
            .map_err(|err| classify(&display, err))?;
        tx.commit().map_err(|err| classify(&display, err))?;
    }
    enable_wal(&conn, path, busy_timeout)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|err| classify(&display, err))?;
    // A big batch grows the WAL; give the space back after the next checkpoint.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(|err| classify(&display, err))?;
    Ok(conn)
}

/// Whether the file is already a complete, valid store (every table there), judged in a read
/// transaction. Most opens (each CNI invocation, each calicoctl command) end here and never take the
/// write lock, so they neither wait for writers nor make writers wait. A file that is not a store is
/// reported as `Corrupt`; anything else (new, empty, or missing a table) is left to the locked path.
fn already_complete(conn: &mut Connection, path: &Path) -> Result<bool, StoreError> {
    let display = path.display().to_string();
    let tx = conn.transaction().map_err(|err| classify(&display, err))?;
    if check_file(path)? == 0 {
        return Ok(false);
    }
    let tables = table_names(&tx).map_err(|err| classify(&display, err))?;
    if tables.is_empty() || !tables.iter().any(|t| t == "leases") {
        return Ok(false);
    }
    validate(&tx, path, &tables)?;
    tx.finish().map_err(|err| classify(&display, err))?;
    Ok(true)
}

/// The names of the file's tables.
fn table_names(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    rows.collect()
}

fn initialise(tx: &rusqlite::Transaction<'_>) -> Result<(), rusqlite::Error> {
    tx.execute_batch(SCHEMA)?;
    let mut insert = tx.prepare("INSERT INTO meta (name, value) VALUES (?1, ?2)")?;
    insert.execute(rusqlite::params!["format", FORMAT_MARKER])?;
    insert.execute(rusqlite::params!["format_version", FORMAT_VERSION])?;
    insert.execute(rusqlite::params!["revision", 0_i64])?;
    insert.execute(rusqlite::params!["compacted_revision", 0_i64])?;
    Ok(())
}

fn validate(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    tables: &[String],
) -> Result<(), StoreError> {
    let display = path.display().to_string();
    let sql = |err| classify(&display, err);
    if tables.is_empty() {
        return Err(corrupt(
            path,
            "a SQLite database without any tables: not a calico-rs datastore (refusing to initialise a non-empty file)",
        ));
    }
    if !tables.iter().any(|t| t == "meta") {
        return Err(corrupt(
            path,
            format!(
                "a SQLite database without the calico-rs format marker (tables: {})",
                tables.join(", ")
            ),
        ));
    }
    let meta = |name: &str| -> Result<Option<rusqlite::types::Value>, StoreError> {
        tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .optional()
        .map_err(sql)
    };
    match meta("format")? {
        Some(rusqlite::types::Value::Text(marker)) if marker == FORMAT_MARKER => {}
        other => {
            return Err(corrupt(
                path,
                format!("format marker is {other:?}, expected {FORMAT_MARKER:?}"),
            ));
        }
    }
    match meta("format_version")? {
        Some(rusqlite::types::Value::Integer(FORMAT_VERSION)) => {}
        Some(rusqlite::types::Value::Integer(version)) => {
            return Err(corrupt(
                path,
                format!(
                    "format version {version} is not supported (this build reads version {FORMAT_VERSION})"
                ),
            ));
        }
        other => {
            return Err(corrupt(
                path,
                format!("format version is {other:?}, expected an integer"),
            ));
        }
    }
    for table in ["kv", "history"] {
        if !tables.iter().any(|t| t == table) {
            return Err(corrupt(path, format!("table {table} is missing")));
        }
    }
    let counter = |name: &str| -> Result<i64, StoreError> {
        match meta(name)? {
            Some(rusqlite::types::Value::Integer(value)) if value >= 0 => Ok(value),
            other => Err(corrupt(
                path,
                format!("meta {name} is {other:?}, expected a non-negative integer"),
            )),
        }
    };
    let revision = counter("revision")?;
    let compacted = counter("compacted_revision")?;
    // Touch the root of every table so a damaged b-tree is reported now, not at the first write.
    let newest_history: Option<i64> = tx
        .query_row("SELECT MAX(revision) FROM history", [], |row| row.get(0))
        .map_err(sql)?;
    let newest_kv: Option<i64> = tx
        .query_row("SELECT MAX(mod_revision) FROM kv", [], |row| row.get(0))
        .map_err(sql)?;
    if compacted > revision
        || newest_history.unwrap_or(0) > revision
        || newest_kv.unwrap_or(0) > revision
    {
        return Err(corrupt(
            path,
            format!(
                "inconsistent revisions: store revision {revision}, compacted {compacted}, newest history {}, newest key {}",
                newest_history.unwrap_or(0),
                newest_kv.unwrap_or(0)
            ),
        ));
    }
    Ok(())
}

/// Look at the raw file: returns its length, or `Corrupt` if it cannot be a whole SQLite database.
fn check_file(path: &Path) -> Result<u64, StoreError> {
    let wal_has_frames_before = sidecar_has_content(path, "-wal")?;
    let mut file = fs::File::open(path).map_err(|err| io_unavailable(path, "cannot open", &err))?;
    let len = file
        .metadata()
        .map_err(|err| io_unavailable(path, "cannot stat", &err))?
        .len();
    if len == 0 {
        return Ok(0);
    }
    let mut header = [0u8; SQLITE_HEADER_LEN];
    let mut filled = 0;
    while filled < header.len() {
        match file.read(&mut header[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(io_unavailable(path, "cannot read", &err)),
        }
    }
    if filled < SQLITE_MAGIC.len() || &header[..SQLITE_MAGIC.len()] != SQLITE_MAGIC {
        return Err(corrupt(path, "not a SQLite database (bad file header)"));
    }
    if filled < SQLITE_HEADER_LEN {
        return Err(corrupt(
            path,
            format!("truncated: only {len} bytes, shorter than a SQLite header"),
        ));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536_u64,
        size if size >= 512 && size.is_power_of_two() => u64::from(size),
        size => return Err(corrupt(path, format!("invalid page size {size} in header"))),
    };
    let page_count = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    let change_counter = &header[24..28];
    let valid_for = &header[92..96];
    // While a WAL has frames a checkpoint may be growing the file, so the header can briefly be ahead
    // of the file length; SQLite itself reports damage then.
    let wal_busy = wal_has_frames_before
        || sidecar_has_content(path, "-wal")?
        || sidecar_has_content(path, "-journal")?;
    let expected = page_count.saturating_mul(page_size);
    if !wal_busy && change_counter == valid_for && len < expected {
        return Err(corrupt(
            path,
            format!(
                "truncated: the file has {len} bytes but its header describes {page_count} pages of {page_size} bytes ({expected} bytes)"
            ),
        ));
    }
    Ok(len)
}

fn sidecar_has_content(path: &Path, suffix: &str) -> Result<bool, StoreError> {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    let sidecar = Path::new(&name);
    match fs::metadata(sidecar) {
        Ok(meta) => Ok(meta.len() > 0),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(io_unavailable(sidecar, "cannot access", &err)),
    }
}

/// Switch to WAL (a no-op for an existing store). Changing the mode needs a moment of exclusive access,
/// so retry while other processes hold the file, up to the busy timeout.
fn enable_wal(conn: &Connection, path: &Path, busy_timeout: Duration) -> Result<(), StoreError> {
    let display = path.display().to_string();
    let deadline = Instant::now() + busy_timeout;
    loop {
        let result: Result<String, rusqlite::Error> =
            conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0));
        match result {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::Unavailable(format!(
                    "{display}: cannot switch to WAL journal mode (still {mode})"
                )));
            }
            Err(err) => {
                let busy = matches!(
                    &err,
                    rusqlite::Error::SqliteFailure(failure, _)
                        if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                );
                if !busy || Instant::now() >= deadline {
                    return Err(classify(&display, err));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
