//! The SQLite store: one file, WAL, `synchronous=FULL`, schema versions in `user_version`,
//! migrations applied in one transaction each.
//!
//! It is the durable form of [`MemoryJournal`](crate::ocpp::persist::MemoryJournal): every
//! [`Batch`](crate::ocpp::persist::Batch) the core emits is applied in ONE SQLite transaction
//! ([`Store::apply`]), and [`Store::load`] returns exactly what `MemoryJournal::load` would for the
//! same ops. Errors are classified ([`StoreErrorKind`]) so that the [`Journal`] above it can tell
//! a disk in trouble from a corrupt file or from a batch the schema rejects.
//!
//! [`Journal`]: super::journal::Journal

use crate::ocpp::persist::{
    CacheEntry, EventKind, PersistOp, Persisted, QueuedMessage, QueuedMeta, TxRecord, mark_offline,
    rebase_timestamps,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde_json::Value;
use std::path::Path;

/// Each entry upgrades the schema from version `index` to `index + 1` (public so that tests can
/// write a file of an older version exactly as that release did).
pub const MIGRATIONS: &[&str] = &[
    // 1: key/value state of the agent (boot reason after a requested reset, ...).
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;",
    // 2: the core's durable state (see `ocpp::persist`).
    "
    -- The FIFO of queued messages. queue_seq comes from the core (strictly increasing, never
    -- reused); the order is read with ORDER BY queue_seq. boot_id is a random u64 stored
    -- bit-cast to INTEGER. payload is the JSON text of the request.
    CREATE TABLE queue (
        queue_seq    INTEGER PRIMARY KEY NOT NULL,
        action       TEXT NOT NULL,
        tx_id        TEXT,
        kind         TEXT NOT NULL CHECK (kind IN ('Started', 'Updated', 'Ended', 'Other')),
        attempts     INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        created_ms   INTEGER NOT NULL,
        boot_id      INTEGER NOT NULL,
        time_trusted INTEGER NOT NULL,
        payload      TEXT NOT NULL
    ) STRICT;
    -- The highest queue_seq ever enqueued, so that numbers are not reused once the queue is
    -- empty. One row.
    CREATE TABLE queue_state (
        id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        last_queue_seq INTEGER NOT NULL
    ) STRICT;
    INSERT INTO queue_state (id, last_queue_seq) VALUES (1, 0);
    -- Open transactions. ord is the insertion order (load() returns them in it): assigned on
    -- first insert, untouched by the upsert that replaces a record. The JSON columns hold
    -- serde_json values (NULL for None).
    CREATE TABLE open_tx (
        tx_id              TEXT PRIMARY KEY NOT NULL,
        ord                INTEGER NOT NULL,
        evse               INTEGER NOT NULL,
        connector          INTEGER,
        next_seq_no        INTEGER NOT NULL,
        started_ms         INTEGER NOT NULL,
        id_token           TEXT,
        group_id_token     TEXT,
        authorized         INTEGER NOT NULL,
        remote_start_id    INTEGER,
        last_meter         TEXT,
        ended_meter_values TEXT NOT NULL,
        meter_start_wh     REAL NOT NULL,
        charging_state     TEXT NOT NULL,
        evse_reported      INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    -- The authorization cache (C10); info is IdTokenInfoType JSON.
    CREATE TABLE auth_cache (
        key        TEXT PRIMARY KEY NOT NULL,
        info       TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        used_ms    INTEGER NOT NULL
    ) STRICT;
    ",
    // 3: the queue holds opaque messages, whatever the protocol: no OCPP value in the schema.
    // `kind` (OCPP 2.0.1 eventType names in a CHECK) becomes `role`, a neutral code (see
    // `role_code`), and each message says which protocol it is for. Every message written
    // under versions 1-2 was an OCPP 2.0.1 one. The table is rebuilt (SQLite cannot change a
    // CHECK in place) with every row, queue_seq (the FIFO order) and payload unchanged; a
    // `kind` outside the old CHECK has no role, so the NOT NULL fails the migration (and its
    // transaction) rather than guessing.
    "
    CREATE TABLE queue_v3 (
        queue_seq    INTEGER PRIMARY KEY NOT NULL,
        protocol     TEXT NOT NULL CHECK (protocol <> ''),
        action       TEXT NOT NULL,
        tx_id        TEXT,
        role         INTEGER NOT NULL CHECK (role BETWEEN 0 AND 3),
        attempts     INTEGER NOT NULL,
        bytes        INTEGER NOT NULL,
        created_ms   INTEGER NOT NULL,
        boot_id      INTEGER NOT NULL,
        time_trusted INTEGER NOT NULL,
        payload      TEXT NOT NULL
    ) STRICT;
    INSERT INTO queue_v3 (queue_seq, protocol, action, tx_id, role, attempts, bytes, created_ms,
                          boot_id, time_trusted, payload)
        SELECT queue_seq, 'ocpp2.0.1', action, tx_id,
               CASE kind WHEN 'Other' THEN 0 WHEN 'Started' THEN 1 WHEN 'Updated' THEN 2
                         WHEN 'Ended' THEN 3 END,
               attempts, bytes, created_ms, boot_id, time_trusted, payload
        FROM queue ORDER BY queue_seq;
    DROP TABLE queue;
    ALTER TABLE queue_v3 RENAME TO queue;
    ",
];

/// The protocol of the messages this agent queues, in the queue's `protocol` column (the
/// WebSocket subprotocol name): the spelling of the stored payload. The blocks make their
/// messages in 2.0.1 spelling whatever the version spoken; a station speaking 1.6 translates
/// a row when it sends it (`Station::queued_frame`), so a queue outlives a switch of version.
pub const QUEUE_PROTOCOL: &str = crate::ocpp::v201::PROTOCOL;

/// A queued message's role in a transaction, as stored in `queue.role`: the schema names no
/// protocol's message types or event types, the mapping to the core's [`EventKind`] is here.
fn role_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Other => 0,
        EventKind::Started => 1,
        EventKind::Updated => 2,
        EventKind::Ended => 3,
    }
}

fn role_from_code(code: i64) -> Option<EventKind> {
    match code {
        0 => Some(EventKind::Other),
        1 => Some(EventKind::Started),
        2 => Some(EventKind::Updated),
        3 => Some(EventKind::Ended),
        _ => None,
    }
}

/// The schema version this code writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

pub struct Store {
    conn: Connection,
    read_only: bool,
    /// The file has the version 2 queue (read-only, not migrated): see [`QUEUE_COLUMNS_V2`].
    v2_queue: bool,
}

/// What kind of trouble a [`StoreError`] is, which decides what the journal does about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The disk or the file system: full, read-only, I/O error, cannot open, locked. Transient as
    /// far as we can tell: retry later.
    Disk,
    /// The file is not a database, or is malformed, or holds rows this code cannot read.
    Corrupt,
    /// The database was written by a newer agent (its schema version is unknown here).
    Newer,
    /// This batch was rejected by the schema (constraint, value out of range): retrying it will
    /// fail the same way, whatever the disk does.
    Rejected,
    /// Anything else SQLite reports.
    Other,
}

#[derive(Debug, Clone)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    fn context(self, what: impl std::fmt::Display) -> Self {
        StoreError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }

    fn rejected(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::Rejected, message)
    }

    fn corrupt(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::Corrupt, message)
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        use rusqlite::ffi::ErrorCode as C;
        let kind = match &e {
            E::SqliteFailure(f, _) => match f.code {
                C::DatabaseCorrupt | C::NotADatabase => StoreErrorKind::Corrupt,
                C::ConstraintViolation | C::TypeMismatch | C::TooBig => StoreErrorKind::Rejected,
                C::PermissionDenied
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::OutOfMemory
                | C::ReadOnly
                | C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen
                | C::FileLockingProtocolFailed
                | C::NoLargeFileSupport => StoreErrorKind::Disk,
                _ => StoreErrorKind::Other,
            },
            // Writing a value the schema cannot hold (u64 over i64::MAX).
            E::ToSqlConversionFailure(_) => StoreErrorKind::Rejected,
            // Reading a row this code cannot make sense of.
            E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..)
            | E::InvalidColumnType(..) => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Other,
        };
        StoreError::new(kind, e.to_string())
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// A u64 the core uses as an identifier, as an SQLite INTEGER.
fn int(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::rejected(format!("{what} {v} is out of range")))
}

fn json_text(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::rejected(format!("serialising: {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

fn parse_opt_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| parse_json(&t, what)).transpose()
}

const QUEUE_COLUMNS: &str = "queue_seq, action, tx_id, role, attempts, bytes, created_ms, boot_id, \
     time_trusted, protocol";

/// The same from a version 2 queue (`kind` names), for a file that could only be opened
/// read-only and so was not migrated; an unknown name reads as role -1 (corrupt).
const QUEUE_COLUMNS_V2: &str = "queue_seq, action, tx_id, \
     CASE kind WHEN 'Other' THEN 0 WHEN 'Started' THEN 1 WHEN 'Updated' THEN 2 \
               WHEN 'Ended' THEN 3 ELSE -1 END, \
     attempts, bytes, created_ms, boot_id, time_trusted, 'ocpp2.0.1'";

/// The oldest schema a read-only store can load (version 1 has no queue).
const OLDEST_READABLE: usize = 2;

fn queued_meta(row: &Row<'_>) -> Result<QueuedMeta> {
    let role: i64 = row.get(3)?;
    Ok(QueuedMeta {
        protocol: row.get(9)?,
        queue_seq: row.get(0)?,
        action: row.get(1)?,
        tx_id: row.get(2)?,
        kind: role_from_code(role)
            .ok_or_else(|| StoreError::corrupt(format!("unknown queued message role {role}")))?,
        attempts: row.get(4)?,
        bytes: row.get(5)?,
        created_ms: row.get(6)?,
        boot_id: row.get::<_, i64>(7)? as u64,
        time_trusted: row.get(8)?,
    })
}

fn queued_message(row: &Row<'_>) -> Result<QueuedMessage> {
    let meta = queued_meta(row)?;
    let payload: String = row.get(10)?;
    let payload = parse_json(&payload, "queued payload")?;
    Ok(QueuedMessage { meta, payload })
}

const TX_COLUMNS: &str = "tx_id, evse, connector, next_seq_no, started_ms, id_token, \
     group_id_token, authorized, remote_start_id, last_meter, ended_meter_values, \
     meter_start_wh, charging_state, evse_reported";

fn tx_record(row: &Row<'_>) -> Result<TxRecord> {
    let ended: String = row.get(10)?;
    Ok(TxRecord {
        tx_id: row.get(0)?,
        evse: row.get(1)?,
        connector: row.get(2)?,
        next_seq_no: row.get(3)?,
        started_ms: row.get(4)?,
        id_token: parse_opt_json(row.get(5)?, "transaction idToken")?,
        group_id_token: parse_opt_json(row.get(6)?, "transaction groupIdToken")?,
        authorized: row.get(7)?,
        remote_start_id: row.get(8)?,
        last_meter: parse_opt_json(row.get(9)?, "transaction meter value")?,
        ended_meter_values: parse_json(&ended, "transaction ended meter values")?,
        meter_start_wh: row.get(11)?,
        charging_state: row.get(12)?,
        evse_reported: row.get(13)?,
    })
}

/// Applies one op inside the caller's transaction. Ops on a message, transaction, cache entry or
/// meta key that does not exist are no-ops, as in `MemoryJournal`.
fn apply_op(conn: &Connection, op: &PersistOp) -> Result<()> {
    match op {
        PersistOp::Enqueue(m) => {
            let seq = int(m.meta.queue_seq, "queue_seq")?;
            let payload = json_text(&m.payload)?;
            conn.prepare_cached(
                "INSERT INTO queue (queue_seq, protocol, action, tx_id, role, attempts, bytes,
                                    created_ms, boot_id, time_trusted, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                seq,
                m.meta.protocol,
                m.meta.action,
                m.meta.tx_id,
                role_code(m.meta.kind),
                m.meta.attempts,
                int(m.meta.bytes, "bytes")?,
                m.meta.created_ms,
                m.meta.boot_id as i64,
                m.meta.time_trusted,
                payload,
            ])
            .map_err(|e| StoreError::from(e).context(format!("enqueue {seq}")))?;
            conn.prepare_cached(
                "UPDATE queue_state SET last_queue_seq = ?1 WHERE id = 1 AND last_queue_seq < ?1",
            )?
            .execute([seq])?;
        }
        PersistOp::SetAttempts {
            queue_seq,
            attempts,
        } => {
            if let Ok(seq) = i64::try_from(*queue_seq) {
                conn.prepare_cached("UPDATE queue SET attempts = ?2 WHERE queue_seq = ?1")?
                    .execute(params![seq, attempts])?;
            }
        }
        PersistOp::Remove { queue_seq } => {
            if let Ok(seq) = i64::try_from(*queue_seq) {
                conn.prepare_cached("DELETE FROM queue WHERE queue_seq = ?1")?
                    .execute([seq])?;
            }
        }
        PersistOp::MarkOffline { queue_seq } => {
            rewrite_payload(conn, *queue_seq, |payload, _, _| mark_offline(payload))?;
        }
        PersistOp::Rebase {
            queue_seq,
            delta_ms,
        } => {
            rewrite_payload(conn, *queue_seq, |payload, created_ms, trusted| {
                rebase_timestamps(payload, *delta_ms);
                *created_ms = created_ms.saturating_add(*delta_ms);
                *trusted = true;
            })?;
        }
        PersistOp::PutTransaction(t) => {
            let json_opt = |v: &Option<Value>| v.as_ref().map(json_text).transpose();
            conn.prepare_cached(
                "INSERT INTO open_tx (tx_id, ord, evse, connector, next_seq_no, started_ms,
                                      id_token, group_id_token, authorized, remote_start_id,
                                      last_meter, ended_meter_values, meter_start_wh,
                                      charging_state, evse_reported)
                 VALUES (?1, (SELECT IFNULL(MAX(ord), 0) + 1 FROM open_tx), ?2, ?3, ?4, ?5, ?6,
                         ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (tx_id) DO UPDATE SET
                     evse = excluded.evse, connector = excluded.connector,
                     next_seq_no = excluded.next_seq_no, started_ms = excluded.started_ms,
                     id_token = excluded.id_token, group_id_token = excluded.group_id_token,
                     authorized = excluded.authorized, remote_start_id = excluded.remote_start_id,
                     last_meter = excluded.last_meter,
                     ended_meter_values = excluded.ended_meter_values,
                     meter_start_wh = excluded.meter_start_wh,
                     charging_state = excluded.charging_state,
                     evse_reported = excluded.evse_reported",
            )?
            .execute(params![
                t.tx_id,
                t.evse,
                t.connector,
                int(t.next_seq_no, "next_seq_no")?,
                t.started_ms,
                json_opt(&t.id_token)?,
                json_opt(&t.group_id_token)?,
                t.authorized,
                t.remote_start_id,
                json_opt(&t.last_meter)?,
                json_text(&t.ended_meter_values)?,
                t.meter_start_wh,
                t.charging_state,
                t.evse_reported,
            ])
            .map_err(|e| StoreError::from(e).context(format!("transaction {}", t.tx_id)))?;
        }
        PersistOp::RemoveTransaction { tx_id } => {
            conn.prepare_cached("DELETE FROM open_tx WHERE tx_id = ?1")?
                .execute([tx_id])?;
        }
        PersistOp::PutCacheEntry(e) => {
            conn.prepare_cached(
                "INSERT INTO auth_cache (key, info, expires_ms, used_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET info = excluded.info,
                     expires_ms = excluded.expires_ms, used_ms = excluded.used_ms",
            )?
            .execute(params![e.key, json_text(&e.info)?, e.expires_ms, e.used_ms])?;
        }
        PersistOp::RemoveCacheEntry { key } => {
            conn.prepare_cached("DELETE FROM auth_cache WHERE key = ?1")?
                .execute([key])?;
        }
        PersistOp::ClearCache => {
            conn.prepare_cached("DELETE FROM auth_cache")?.execute([])?;
        }
        PersistOp::PutMeta { key, value } => put_meta(conn, key, value)?,
        PersistOp::DeleteMeta { key } => delete_meta(conn, key)?,
    }
    Ok(())
}

/// Reads a queued payload, lets `f` change it (and `created_ms`, `time_trusted`), writes it back
/// with its new size, as `MemoryJournal` does for MarkOffline and Rebase.
fn rewrite_payload(
    conn: &Connection,
    queue_seq: u64,
    f: impl FnOnce(&mut Value, &mut i64, &mut bool),
) -> Result<()> {
    let Ok(seq) = i64::try_from(queue_seq) else {
        return Ok(());
    };
    let row = conn
        .prepare_cached("SELECT payload, created_ms, time_trusted FROM queue WHERE queue_seq = ?1")?
        .query_row([seq], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })
        .optional()?;
    let Some((text, mut created_ms, mut trusted)) = row else {
        return Ok(());
    };
    let mut payload: Value = parse_json(&text, "queued payload")?;
    f(&mut payload, &mut created_ms, &mut trusted);
    let text = json_text(&payload)?;
    conn.prepare_cached(
        "UPDATE queue SET payload = ?2, bytes = ?3, created_ms = ?4, time_trusted = ?5
         WHERE queue_seq = ?1",
    )?
    .execute(params![seq, text, text.len() as i64, created_ms, trusted])?;
    Ok(())
}

fn put_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

fn delete_meta(conn: &Connection, key: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

impl Store {
    /// Opens (creating it and its directory if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Disk,
                    format!("creating {}: {e}", dir.display()),
                )
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::from(e).context(format!("opening {}", path.display())))?;
        // The journal holds credentials (BasicAuthPassword) and customer data (idTokens):
        // owner-only. SQLite gives its -wal and -shm files the database's permissions.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let mut store = Store {
            conn,
            read_only: false,
            v2_queue: false,
        };
        store
            .init()
            .map_err(|e| e.context(path.display().to_string()))?;
        Ok(store)
    }

    /// Opens an existing database for reading only (what the journal falls back to when the
    /// file system is read-only: the previous state can still be loaded and sent). A read-only
    /// file cannot be migrated: its schema must be the current one or version 2, whose queue is
    /// read as it is.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::from(e).context(format!("opening {}", path.display())))?;
        let mut store = Store {
            conn,
            read_only: true,
            v2_queue: false,
        };
        store.conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version = store.schema_version()?;
        if version > SCHEMA_VERSION {
            return Err(store.newer_error(version));
        }
        // A file of the previous release on a read-only file system (the first start after an
        // upgrade) is still loaded and sent; it is migrated once it can be written.
        store.v2_queue = version == 2;
        if version < OLDEST_READABLE {
            return Err(StoreError::new(
                StoreErrorKind::Disk,
                format!(
                    "{}: schema version {version} needs migrating, and the file is read-only",
                    path.display()
                ),
            ));
        }
        Ok(store)
    }

    fn init(&mut self) -> Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::new(
                StoreErrorKind::Disk,
                format!("could not switch to WAL mode (got {mode})"),
            ));
        }
        self.conn
            .execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        // Every statement of apply() stays prepared while a request runs (`release_memory`
        // drops them between requests).
        self.conn.set_prepared_statement_cache_capacity(32);
        self.migrate()
    }

    fn queue_columns(&self) -> &'static str {
        if self.v2_queue {
            QUEUE_COLUMNS_V2
        } else {
            QUEUE_COLUMNS
        }
    }

    /// Whether this connection was opened read-only ([`Store::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn schema_version(&self) -> Result<usize> {
        let v: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(v as usize)
    }

    fn newer_error(&self, current: usize) -> StoreError {
        StoreError::new(
            StoreErrorKind::Newer,
            format!(
                "the database has schema version {current}, newer than this agent knows \
                 ({SCHEMA_VERSION}); it was written by a newer ocpp-agent"
            ),
        )
    }

    fn migrate(&mut self) -> Result<()> {
        let current = self.schema_version()?;
        if current > SCHEMA_VERSION {
            return Err(self.newer_error(current));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .map_err(|e| StoreError::from(e).context(format!("migration {}", i + 1)))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Frees the page cache's unused pages and the prepared statements (see
    /// `Journal::release_memory`). The statements are kept within a request, whose ops reuse
    /// them, not between requests: cached, they were the largest part of SQLite's idle memory
    /// (about 37 KB in some 1,500 small allocations, twice that in heap with the allocators'
    /// headers; issue 13), and preparing a few statements again per request costs microseconds
    /// on a path that runs a few times a minute.
    pub fn release_memory(&self) {
        let _ = self.conn.release_memory();
        self.conn.flush_prepared_statement_cache();
    }

    /// `PRAGMA quick_check`: a corrupt file is an error of kind [`StoreErrorKind::Corrupt`].
    pub fn quick_check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<_, _>>()?;
        if problems.len() == 1 && problems[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::corrupt(format!(
                "integrity check failed: {}",
                problems.join("; ")
            )))
        }
    }

    /// Applies a batch in one SQLite transaction: all of it, or (on error) nothing.
    pub fn apply(&mut self, batch: &[PersistOp]) -> Result<()> {
        self.apply_all(std::iter::once(batch))
    }

    /// Applies several batches, in order, in one SQLite transaction (the journal flushing what
    /// it kept in memory): all of them, or nothing.
    pub fn apply_all<'a>(
        &mut self,
        batches: impl IntoIterator<Item = &'a [PersistOp]>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for batch in batches {
            for op in batch {
                apply_op(&tx, op)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies `ops` in one SQLite transaction, skipping the ops that the schema rejects
    /// ([`StoreErrorKind::Rejected`]: each op runs in a savepoint) and returning them with their
    /// index. Any other error rolls back everything. The journal uses it for a batch that
    /// [`Store::apply`] rejected, so that one bad op does not cost the rest.
    pub fn apply_lenient(&mut self, ops: &[PersistOp]) -> Result<Vec<(usize, StoreError)>> {
        let mut skipped = Vec::new();
        let mut tx = self.conn.transaction()?;
        for (i, op) in ops.iter().enumerate() {
            let sp = tx.savepoint()?;
            match apply_op(&sp, op) {
                Ok(()) => sp.commit()?,
                Err(e) if e.kind == StoreErrorKind::Rejected => {
                    drop(sp); // rolls back this op only
                    skipped.push((i, e));
                }
                Err(e) => return Err(e),
            }
        }
        tx.commit()?;
        Ok(skipped)
    }

    /// Everything the core is rebuilt from, in the order `MemoryJournal::load` gives.
    pub fn load(&self) -> Result<Persisted> {
        // One read transaction: a consistent snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let mut queue = Vec::new();
        {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {} FROM queue ORDER BY queue_seq",
                self.queue_columns()
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                queue.push(queued_meta(row)?);
            }
        }
        let stored_last: u64 = tx
            .prepare_cached("SELECT last_queue_seq FROM queue_state WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let last_queue_seq = queue
            .last()
            .map_or(stored_last, |m| m.queue_seq.max(stored_last));
        let mut transactions = Vec::new();
        {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {TX_COLUMNS} FROM open_tx ORDER BY ord"))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                transactions.push(tx_record(row)?);
            }
        }
        let mut auth_cache = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT key, info, expires_ms, used_ms FROM auth_cache ORDER BY key",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let info: String = row.get(1)?;
                auth_cache.push(CacheEntry {
                    key: row.get(0)?,
                    info: parse_json(&info, "cache entry")?,
                    expires_ms: row.get(2)?,
                    used_ms: row.get(3)?,
                });
            }
        }
        let meta = tx
            .prepare_cached("SELECT key, value FROM meta ORDER BY key")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        drop(tx);
        Ok(Persisted {
            queue,
            last_queue_seq,
            transactions,
            auth_cache,
            meta,
        })
    }

    /// A queued message with its payload, for sending.
    pub fn queued(&self, queue_seq: u64) -> Result<Option<QueuedMessage>> {
        let Ok(seq) = i64::try_from(queue_seq) else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {}, payload FROM queue WHERE queue_seq = ?1",
            self.queue_columns()
        ))?;
        let mut rows = stmt.query([seq])?;
        match rows.next()? {
            Some(row) => Ok(Some(queued_message(row)?)),
            None => Ok(None),
        }
    }

    /// Every queued message with its payload, in FIFO order.
    pub fn messages(&self) -> Result<Vec<QueuedMessage>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {}, payload FROM queue ORDER BY queue_seq",
            self.queue_columns()
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(queued_message(row)?);
        }
        Ok(out)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        put_meta(&self.conn, key, value)
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        delete_meta(&self.conn, key)
    }

    /// The connection, for tests that simulate trouble (`PRAGMA max_page_count`,
    /// `PRAGMA query_only`, triggers).
    #[doc(hidden)]
    pub fn test_connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Memory the connection's prepared statements use now (`SQLITE_DBSTATUS_STMT_USED`).
    fn statement_bytes(conn: &Connection) -> i32 {
        let (mut current, mut highwater) = (0, 0);
        // SAFETY: the handle is open; the out-pointers live through the call.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED,
                &mut current,
                &mut highwater,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        current
    }

    #[test]
    fn the_connection_keeps_no_statement_between_requests() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("agent.db")).unwrap();
        store.apply(&[PersistOp::Enqueue(message(1))]).unwrap();
        assert_eq!(store.messages().unwrap().len(), 1);
        assert!(
            statement_bytes(&store.conn) > 0,
            "the cache should hold the request's statements"
        );
        store.release_memory();
        assert_eq!(
            statement_bytes(&store.conn),
            0,
            "prepared statements kept after release_memory"
        );
        // And they are prepared again when needed.
        assert_eq!(store.messages().unwrap().len(), 1);
    }

    fn message(seq: u64) -> QueuedMessage {
        let payload = json!({
            "eventType": "Updated",
            "timestamp": "2024-05-01T12:00:00.000Z",
            "seqNo": seq,
            "meterValue": [{"timestamp": "2024-05-01T11:59:00.000Z",
                            "sampledValue": [{"value": 1234.5}]}],
        });
        QueuedMessage {
            meta: QueuedMeta {
                protocol: QUEUE_PROTOCOL.to_owned(),
                queue_seq: seq,
                action: "TransactionEvent".into(),
                tx_id: Some("tx".into()),
                kind: EventKind::Updated,
                attempts: 0,
                bytes: payload.to_string().len() as u64,
                created_ms: 1_714_564_800_000,
                boot_id: u64::MAX - 3,
                time_trusted: false,
            },
            payload,
        }
    }

    #[test]
    fn migrates_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len());
            store.set_meta("k", "v1").unwrap();
            store.set_meta("k", "v2").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get_meta("k").unwrap().as_deref(), Some("v2"));
        store.delete_meta("k").unwrap();
        assert_eq!(store.get_meta("k").unwrap(), None);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // Owner-only: it holds credentials; the WAL follows the database's mode.
        use std::os::unix::fs::PermissionsExt;
        for file in [path.clone(), path.with_extension("db-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn every_event_kind_has_its_own_role_and_the_schema_names_none() {
        let kinds = [
            EventKind::Other,
            EventKind::Started,
            EventKind::Updated,
            EventKind::Ended,
        ];
        let codes: Vec<i64> = kinds.iter().map(|k| role_code(*k)).collect();
        assert_eq!(codes, [0, 1, 2, 3], "the codes the migration writes");
        for k in kinds {
            assert_eq!(role_from_code(role_code(k)), Some(k));
        }
        assert_eq!(role_from_code(4), None);
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("agent.db")).unwrap();
        let schema: Vec<String> = store
            .conn
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let schema = schema.join("\n");
        for kind in kinds {
            assert!(!schema.contains(kind.as_str()), "{schema}");
        }
        assert!(!schema.contains(QUEUE_PROTOCOL), "{schema}");
        // A role outside the codes is refused by the schema, not stored.
        let err = store
            .conn
            .execute(
                "INSERT INTO queue VALUES (1, 'p', 'a', NULL, 4, 0, 2, 0, 0, 0, '{}')",
                [],
            )
            .unwrap_err();
        assert_eq!(StoreError::from(err).kind, StoreErrorKind::Rejected);
        store.apply(&[PersistOp::Enqueue(message(7))]).unwrap();
        let protocol: String = store
            .conn
            .query_row("SELECT protocol FROM queue WHERE queue_seq = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(protocol, QUEUE_PROTOCOL);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        Store::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap();
        assert!(err.message.contains("newer"), "{err}");
        assert_eq!(err.kind, StoreErrorKind::Newer);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        std::fs::write(
            &path,
            b"this is not a database at all, not even close......",
        )
        .unwrap();
        let err = Store::open(&path).err().unwrap();
        assert_eq!(err.kind, StoreErrorKind::Corrupt, "{err}");
    }

    #[test]
    fn boot_id_and_queue_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("agent.db")).unwrap();
        store
            .apply(&[
                PersistOp::Enqueue(message(1)),
                PersistOp::Enqueue(message(2)),
            ])
            .unwrap();
        assert_eq!(store.queued(1).unwrap(), Some(message(1)));
        assert_eq!(store.queued(3).unwrap(), None);
        assert_eq!(store.queued(u64::MAX).unwrap(), None);
        store.apply(&[PersistOp::Remove { queue_seq: 2 }]).unwrap();
        store.apply(&[PersistOp::Remove { queue_seq: 1 }]).unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.queue.is_empty());
        assert_eq!(loaded.last_queue_seq, 2, "kept once the queue is empty");
    }

    #[test]
    fn a_value_the_schema_cannot_hold_is_rejected_and_lenient_apply_skips_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("agent.db")).unwrap();
        let mut bad = message(u64::MAX);
        bad.meta.queue_seq = u64::MAX;
        let batch = vec![
            PersistOp::Enqueue(message(1)),
            PersistOp::Enqueue(bad),
            PersistOp::Enqueue(message(1)), // duplicate key
            PersistOp::PutMeta {
                key: "k".into(),
                value: "v".into(),
            },
        ];
        let err = store.apply(&batch).unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Rejected, "{err}");
        assert_eq!(store.load().unwrap(), Persisted::default());
        let skipped = store.apply_lenient(&batch).unwrap();
        assert_eq!(
            skipped.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let loaded = store.load().unwrap();
        assert_eq!(loaded.queue, vec![message(1).meta]);
        assert_eq!(loaded.meta("k"), Some("v"));
    }
}
