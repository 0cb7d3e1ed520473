//! The journal: the shell's durable store of the core's state, which survives a disk in trouble.
//!
//! It wraps the SQLite [`Store`] and an in-memory overlay of *pending* batches: the batches that
//! could not be written. Nothing here is fatal:
//!
//! - [`Journal::open`]: a corrupt file (not a database, or failing `PRAGMA quick_check`) or one
//!   written by a newer agent is moved aside to `<path>.corrupt-<unix seconds>` (`.newer-…`), with
//!   its `-wal`, and a fresh one is created. If the corrupt file's content can still be read
//!   whole (the damage is in a free page or an index), it is salvaged into the new file. The same
//!   happens in [`Journal::retry`] when a write reported the file corrupt while running. A file
//!   that cannot be opened for writing (read-only file system, permissions, no directory) is
//!   read read-only if possible, so the previous state is still loaded and its queued messages
//!   can still be sent; otherwise the journal starts empty. Either way it runs from memory and
//!   opens the file again on [`Journal::retry`]; if it then finds a state there that it could
//!   not read at start (a late mount), that file is moved aside (`.unread-…`) rather than mixed
//!   with the state the core was built from.
//! - [`Journal::apply`]: if the store fails (full, read-only, I/O error), the error is logged once
//!   per episode and the batch is kept in memory; every later batch queues behind it (batch N+1
//!   never reaches the disk before batch N). [`Journal::queued`] and [`Journal::load`] see the
//!   pending batches, so a message enqueued while the disk was full can still be sent.
//!   [`Journal::retry`] (the driver calls it every few seconds while [`JournalStats::degraded`])
//!   writes every pending batch, in order, in one SQLite transaction, and clears them.
//! - A batch the *schema* rejects (a constraint: e.g. a reused `queue_seq`) would fail forever
//!   whatever the disk does: it is applied op by op, the rejected ops are logged and skipped, the
//!   rest is committed ([`JournalStats::rejected_ops`]).
//!
//! # The memory bound
//!
//! Pending batches are never dropped: any of them may hold the only copy of an Ended event or of
//! the seqNo counter of a transaction, and losing one means a wrong bill or a duplicate seqNo.
//! Instead memory is kept proportional to the *live* state rather than to the length of the
//! outage: once pending ops exceed a threshold they are compacted into one batch with the same
//! effect (a transaction or cache entry or meta key written many times keeps only its last
//! value, a message enqueued, sent and acknowledged during the outage leaves nothing but the
//! `queue_seq` high-water mark, changes to a message enqueued during the outage are folded into
//! it). Compaction merges batches: that is still atomic, since pending batches are only ever
//! written together, in one transaction. What remains is bounded by the core's own queue bound
//! (which drops Updated events, E04.FR.08) plus one record per open transaction, cache entry and
//! meta key. If even that exceeds [`PENDING_BOUND`] (4 MiB of estimated payload), the journal
//! reports `over_bound` (and logs a warning once) so that the driver or the core can stop
//! creating non-essential messages; it still keeps everything.

use super::store::{Store, StoreError, StoreErrorKind};
use crate::ocpp::persist::{
    Batch, MemoryJournal, PersistOp, Persisted, QueuedMessage, mark_offline, rebase_timestamps,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tracing::{debug, error, info, warn};

/// Pending (unwritten) bytes above which [`JournalStats::over_bound`] is reported.
pub const PENDING_BOUND: usize = 4 * 1024 * 1024;

/// Pending bytes below which compaction is not worth its time.
const COMPACT_FLOOR: usize = 256 * 1024;

/// The journal's health, for `ctl status` and the driver's retry timer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// The store cannot be written (or is not open): batches are kept in memory.
    pub degraded: bool,
    /// Batches waiting to be written.
    pub pending_batches: usize,
    /// Their estimated size in memory (payloads, records).
    pub pending_bytes: usize,
    /// `pending_bytes` is over [`PENDING_BOUND`] even after compaction.
    pub over_bound: bool,
    /// Ops the schema rejected and that were skipped (a bug in the core if ever non-zero).
    pub rejected_ops: u64,
    /// The last error of the store, if any (kept after recovery, for diagnosis).
    pub last_error: Option<String>,
}

pub struct Journal {
    path: PathBuf,
    /// `None` while the file cannot be opened at all; a read-only store while it can only be
    /// read.
    store: Option<Store>,
    /// Whether the state the core was given came from this file (or the file was fresh). When
    /// the journal started without being able to read it, a file found later with content in it
    /// is moved aside rather than mixed with a state the core never saw.
    file_read: bool,
    /// What the file held when it was opened, handed out by the first `load()`.
    snapshot: Option<Persisted>,
    pending: Vec<Batch>,
    pending_bytes: usize,
    compact_at: usize,
    degraded: bool,
    over_bound: bool,
    rejected_ops: u64,
    last_error: Option<String>,
    /// The kind of the last error: a corrupt file is reopened (and salvaged) by `retry()`.
    last_kind: Option<StoreErrorKind>,
}

impl Journal {
    /// Opens the journal at `path`. Never fails: see the module documentation.
    pub fn open(path: &Path) -> Journal {
        Journal::open_inner(path, true)
    }

    /// Opens the journal as if the file system were read-only: the file is opened read-only and
    /// the journal is degraded; `retry()` opens it for writing. For tests.
    #[doc(hidden)]
    pub fn open_read_only_for_tests(path: &Path) -> Journal {
        Journal::open_inner(path, false)
    }

    fn open_inner(path: &Path, writable: bool) -> Journal {
        let mut journal = Journal {
            path: path.to_owned(),
            store: None,
            file_read: false,
            snapshot: None,
            pending: Vec::new(),
            pending_bytes: 0,
            compact_at: COMPACT_FLOOR,
            degraded: false,
            over_bound: false,
            rejected_ops: 0,
            last_error: None,
            last_kind: None,
        };
        let result = if writable {
            journal.attach(true)
        } else {
            Err(StoreError::new(
                StoreErrorKind::Disk,
                "read-only file system (simulated)",
            ))
        };
        if let Err(e) = result {
            error!(
                path = %path.display(),
                error = %e,
                "cannot open the journal for writing: keeping changes in memory until it can be written"
            );
            journal.degraded = true;
            journal.last_error = Some(e.to_string());
            journal.last_kind = Some(e.kind);
            if path.exists() {
                match Store::open_read_only(path).and_then(|s| Ok((s.load()?, s))) {
                    Ok((snapshot, store)) => {
                        info!(path = %path.display(), "journal opened read-only: the previous state is loaded");
                        journal.snapshot = Some(snapshot);
                        journal.store = Some(store);
                        journal.file_read = true;
                    }
                    Err(e) => {
                        error!(path = %path.display(), error = %e, "cannot read the journal either: starting empty");
                    }
                }
            }
        } else if !journal.pending.is_empty() {
            // What was salvaged from a corrupt file goes into the new one.
            journal.flush();
        }
        journal
    }

    /// Opens the file for writing and makes it the store. A corrupt file or one from a newer agent
    /// is moved aside (what can still be read from a corrupt one is salvaged: it goes in front of
    /// the pending batches, to be written into the new file); so is, after start-up
    /// (`!initial`), a file with a state in it that the core was not built from.
    fn attach(&mut self, initial: bool) -> Result<(), StoreError> {
        let (store, snapshot) = match open_checked(&self.path) {
            Ok(opened) => opened,
            Err(e) if matches!(e.kind, StoreErrorKind::Corrupt | StoreErrorKind::Newer) => {
                let (tag, salvaged) = if e.kind == StoreErrorKind::Corrupt {
                    ("corrupt", salvage(&self.path))
                } else {
                    ("newer", None)
                };
                self.set_aside(tag, &e)?;
                if let Some(view) = salvaged {
                    warn!(
                        messages = view.queue.len(),
                        transactions = view.transactions.len(),
                        cache_entries = view.auth_cache.len(),
                        meta = view.meta.len(),
                        "salvaged the corrupt journal's content: it goes into the new file"
                    );
                    let ops = snapshot_ops(&view);
                    self.pending_bytes += ops.iter().map(op_cost).sum::<usize>();
                    self.pending.insert(0, ops);
                }
                open_checked(&self.path)?
            }
            Err(e) => return Err(e),
        };
        let (store, snapshot) = if !initial && !self.file_read && !is_empty(&snapshot) {
            // The core started without this state (the file could not be read then): writing our
            // changes on top of it would mix two histories (reused queue_seq, stale transactions).
            drop(store);
            let e = StoreError::new(
                StoreErrorKind::Other,
                "the file holds a state the agent could not read when it started",
            );
            self.set_aside("unread", &e)?;
            open_checked(&self.path)?
        } else {
            (store, snapshot)
        };
        // (With a salvaged state pending, load() reads the file and the pending batches.)
        if initial && self.pending.is_empty() {
            self.snapshot = Some(snapshot);
        }
        // A read-only store is replaced by the writable one (same file, same content).
        self.store = Some(store);
        self.file_read = true;
        Ok(())
    }

    fn set_aside(&mut self, tag: &str, why: &StoreError) -> Result<(), StoreError> {
        self.store = None;
        match move_aside(&self.path, tag) {
            Ok(aside) => {
                error!(
                    path = %self.path.display(),
                    moved_to = %aside.display(),
                    error = %why,
                    "journal unusable: moved it aside and started a new one"
                );
                Ok(())
            }
            Err(io) => Err(StoreError::new(
                StoreErrorKind::Disk,
                format!("{why}; and it cannot be moved aside: {io}",),
            )),
        }
    }

    /// What the core is rebuilt from: the file's content with the pending batches applied.
    pub fn load(&mut self) -> Persisted {
        if self.pending.is_empty() {
            if let Some(snapshot) = self.snapshot.take() {
                return snapshot;
            }
            if let Some(store) = &self.store {
                match store.load() {
                    Ok(p) => return p,
                    Err(e) => error!(error = %e, "cannot load the journal"),
                }
            }
        }
        self.snapshot = None;
        self.memory_view().load()
    }

    /// The store's content and the pending batches, in memory (used while degraded only).
    fn memory_view(&self) -> MemoryJournal {
        let mut view = MemoryJournal::default();
        if let Some(store) = &self.store {
            match store.load().and_then(|p| Ok((p, store.messages()?))) {
                Ok((p, messages)) => {
                    view.queue = messages;
                    view.last_queue_seq = p.last_queue_seq;
                    view.transactions = p.transactions;
                    view.auth_cache = p.auth_cache;
                    view.meta = p.meta;
                }
                Err(e) => error!(error = %e, "cannot load the journal"),
            }
        }
        for batch in &self.pending {
            view.apply(batch);
        }
        view
    }

    /// A queued message with its payload, for sending: from the pending batches if it was
    /// enqueued (or changed) while the disk could not be written, else from the file.
    pub fn queued(&self, queue_seq: u64) -> Option<QueuedMessage> {
        let ops: Vec<&PersistOp> = self
            .pending
            .iter()
            .flatten()
            .filter(|op| op_queue_seq(op) == Some(queue_seq))
            .collect();
        let enqueued = ops
            .iter()
            .rposition(|op| matches!(op, PersistOp::Enqueue(_)));
        let (mut message, rest) = match enqueued {
            Some(i) => {
                let PersistOp::Enqueue(m) = ops[i] else {
                    unreachable!()
                };
                (Some(m.clone()), &ops[i + 1..])
            }
            None => {
                let stored = match &self.store {
                    Some(store) => store.queued(queue_seq).unwrap_or_else(|e| {
                        error!(queue_seq, error = %e, "cannot read a queued message");
                        None
                    }),
                    None => None,
                };
                (stored, &ops[..])
            }
        };
        for op in rest {
            apply_to_message(&mut message, op);
        }
        message
    }

    /// Applies a batch: to the file (one transaction), or, if it cannot be written or earlier
    /// batches are still pending, to memory.
    pub fn apply(&mut self, batch: &[PersistOp]) {
        if batch.is_empty() {
            return;
        }
        self.snapshot = None;
        if self.pending.is_empty() {
            if let Some(store) = self.store.as_mut() {
                let result = match store.apply(batch) {
                    Err(e) if e.kind == StoreErrorKind::Rejected => self.apply_lenient(batch),
                    other => other,
                };
                match result {
                    Ok(()) => return,
                    Err(e) => self.failed(&e),
                }
            }
        }
        self.push_pending(batch.to_vec());
    }

    /// A batch the schema rejected: apply what it accepts, log what it does not.
    fn apply_lenient(&mut self, ops: &[PersistOp]) -> Result<(), StoreError> {
        let Some(store) = self.store.as_mut() else {
            return Err(StoreError::new(StoreErrorKind::Other, "no store"));
        };
        let skipped = store.apply_lenient(ops)?;
        for (i, e) in skipped {
            self.rejected_ops += 1;
            error!(op = ?ops[i], error = %e, "the journal rejected an op: skipped");
            self.last_error = Some(e.to_string());
        }
        Ok(())
    }

    fn failed(&mut self, e: &StoreError) {
        if self.degraded {
            debug!(error = %e, "journal still cannot write");
        } else {
            error!(
                path = %self.path.display(),
                error = %e,
                "cannot write the journal: keeping changes in memory until it can be written"
            );
        }
        self.degraded = true;
        self.last_error = Some(e.to_string());
        self.last_kind = Some(e.kind);
    }

    fn push_pending(&mut self, batch: Batch) {
        self.snapshot = None;
        self.pending_bytes += batch.iter().map(op_cost).sum::<usize>();
        self.pending.push(batch);
        if self.pending_bytes > self.compact_at {
            self.compact_pending();
        }
        let over = self.pending_bytes > PENDING_BOUND;
        if over && !self.over_bound {
            warn!(
                pending_bytes = self.pending_bytes,
                bound = PENDING_BOUND,
                "the journal keeps more in memory than its bound while the disk cannot be written"
            );
        }
        self.over_bound = over;
    }

    fn compact_pending(&mut self) {
        let before = self.pending_bytes;
        let ops: Vec<PersistOp> = std::mem::take(&mut self.pending)
            .into_iter()
            .flatten()
            .collect();
        let ops = compact(ops);
        self.pending_bytes = ops.iter().map(op_cost).sum();
        self.pending = vec![ops];
        self.compact_at = COMPACT_FLOOR.max(2 * self.pending_bytes);
        debug!(
            before,
            after = self.pending_bytes,
            "compacted the journal's pending batches"
        );
    }

    /// Tries again: opens the file if it is not open for writing (or was found corrupt), then
    /// writes every pending batch in one transaction.
    pub fn retry(&mut self) {
        // A file found corrupt is opened again: the check at open decides (and sets it aside,
        // salvaging what it can).
        if self.last_kind == Some(StoreErrorKind::Corrupt)
            || self.store.as_ref().is_none_or(Store::is_read_only)
        {
            if let Err(e) = self.attach(false) {
                self.failed(&e);
                return;
            }
        }
        self.flush();
    }

    /// Writes every pending batch, in order, in one transaction.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.snapshot = None;
            let Some(store) = self.store.as_mut() else {
                return;
            };
            let result = match store.apply_all(self.pending.iter().map(Vec::as_slice)) {
                Err(e) if e.kind == StoreErrorKind::Rejected => {
                    let ops: Vec<PersistOp> = self.pending.iter().flatten().cloned().collect();
                    self.apply_lenient(&ops)
                }
                other => other,
            };
            if let Err(e) = result {
                self.failed(&e);
                return;
            }
        }
        if self.degraded {
            info!(
                batches = self.pending.len(),
                bytes = self.pending_bytes,
                "the journal can write again: wrote what was kept in memory"
            );
        }
        self.pending.clear();
        self.pending_bytes = 0;
        self.compact_at = COMPACT_FLOOR;
        self.degraded = false;
        self.over_bound = false;
        self.last_kind = None;
    }

    pub fn stats(&self) -> JournalStats {
        JournalStats {
            degraded: self.degraded,
            pending_batches: self.pending.len(),
            pending_bytes: self.pending_bytes,
            over_bound: self.over_bound,
            rejected_ops: self.rejected_ops,
            last_error: self.last_error.clone(),
        }
    }

    /// Gives SQLite's cached pages back to malloc (`sqlite3_db_release_memory`). The page
    /// cache keeps every page read until the connection closes: after the start-up
    /// `quick_check` that is the whole file, tens of kB held for nothing while the agent idles.
    /// A later statement reads the pages it needs again (from the kernel's page cache);
    /// durability does not depend on it. The prepared statements go too (`Store::release_memory`).
    /// Best effort: an error only means memory stays held.
    pub fn release_memory(&self) {
        if let Some(store) = &self.store {
            store.release_memory();
        }
    }

    /// The store, for tests that simulate trouble on its connection.
    #[doc(hidden)]
    pub fn test_store(&self) -> Option<&Store> {
        self.store.as_ref()
    }
}

/// Opens, checks and loads the file.
fn open_checked(path: &Path) -> Result<(Store, Persisted), StoreError> {
    let store = Store::open(path)?;
    store.quick_check()?;
    let snapshot = store.load()?;
    Ok((store, snapshot))
}

/// Reads what can be read of a file that failed its integrity check (read-only: nothing is
/// written into it). `None` if the state cannot be read whole.
fn salvage(path: &Path) -> Option<MemoryJournal> {
    let store = Store::open_read_only(path).ok()?;
    let p = store.load().ok()?;
    let queue = store.messages().ok()?;
    Some(MemoryJournal {
        queue,
        last_queue_seq: p.last_queue_seq,
        transactions: p.transactions,
        auth_cache: p.auth_cache,
        meta: p.meta,
    })
}

/// Ops that rebuild `state` from an empty file.
fn snapshot_ops(state: &MemoryJournal) -> Vec<PersistOp> {
    let mut ops: Vec<PersistOp> = state
        .queue
        .iter()
        .cloned()
        .map(PersistOp::Enqueue)
        .collect();
    let max_queued = state.queue.iter().map(|m| m.meta.queue_seq).max();
    if state.last_queue_seq > max_queued.unwrap_or(0) {
        // The high-water mark of queue_seq: a message enqueued and removed.
        let stub = QueuedMessage {
            meta: crate::ocpp::persist::QueuedMeta {
                protocol: crate::ocpp::v201::PROTOCOL.to_owned(),
                queue_seq: state.last_queue_seq,
                action: String::new(),
                tx_id: None,
                kind: crate::ocpp::persist::EventKind::Other,
                attempts: 0,
                bytes: 4,
                created_ms: 0,
                boot_id: 0,
                time_trusted: false,
            },
            payload: Value::Null,
        };
        ops.push(PersistOp::Enqueue(stub));
        ops.push(PersistOp::Remove {
            queue_seq: state.last_queue_seq,
        });
    }
    ops.extend(
        state
            .transactions
            .iter()
            .cloned()
            .map(PersistOp::PutTransaction),
    );
    ops.extend(
        state
            .auth_cache
            .iter()
            .cloned()
            .map(PersistOp::PutCacheEntry),
    );
    ops.extend(state.meta.iter().map(|(key, value)| PersistOp::PutMeta {
        key: key.clone(),
        value: value.clone(),
    }));
    ops
}

fn is_empty(p: &Persisted) -> bool {
    p.queue.is_empty()
        && p.last_queue_seq == 0
        && p.transactions.is_empty()
        && p.auth_cache.is_empty()
        && p.meta.is_empty()
}

/// Renames `path` (and its `-wal`, which must not be replayed into a new file) to
/// `<path>.<tag>-<unix seconds>[.n]`; removes its `-shm`.
fn move_aside(path: &Path, tag: &str) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let with_suffix = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    let mut aside = with_suffix(path, &format!(".{tag}-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = with_suffix(path, &format!(".{tag}-{secs}.{n}"));
        n += 1;
    }
    if path.exists() {
        std::fs::rename(path, &aside)?;
    }
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(path, suffix);
        let Ok(meta) = std::fs::metadata(&side) else {
            continue;
        };
        // The shared-memory index is rebuilt from the WAL by whoever opens the file; an empty
        // WAL holds nothing. Neither is worth keeping.
        if suffix == "-shm" || meta.len() == 0 {
            std::fs::remove_file(&side)?;
        } else {
            std::fs::rename(&side, with_suffix(&aside, suffix))?;
        }
    }
    Ok(aside)
}

/// The message an op is about, for ops on queued messages.
fn op_queue_seq(op: &PersistOp) -> Option<u64> {
    match op {
        PersistOp::Enqueue(m) => Some(m.meta.queue_seq),
        PersistOp::SetAttempts { queue_seq, .. }
        | PersistOp::Remove { queue_seq }
        | PersistOp::MarkOffline { queue_seq }
        | PersistOp::Rebase { queue_seq, .. } => Some(*queue_seq),
        _ => None,
    }
}

/// What `op` does to one queued message, as `MemoryJournal` does it.
fn apply_to_message(message: &mut Option<QueuedMessage>, op: &PersistOp) {
    match op {
        PersistOp::Enqueue(m) if message.is_none() => *message = Some(m.clone()),
        PersistOp::Enqueue(_) => {}
        PersistOp::Remove { .. } => *message = None,
        PersistOp::SetAttempts { attempts, .. } => {
            if let Some(m) = message {
                m.meta.attempts = *attempts;
            }
        }
        PersistOp::MarkOffline { .. } => {
            if let Some(m) = message {
                mark_offline(&mut m.payload);
                m.meta.bytes = m.payload.to_string().len() as u64;
            }
        }
        PersistOp::Rebase { delta_ms, .. } => {
            if let Some(m) = message {
                rebase_timestamps(&mut m.payload, *delta_ms);
                m.meta.created_ms += delta_ms;
                m.meta.time_trusted = true;
                m.meta.bytes = m.payload.to_string().len() as u64;
            }
        }
        _ => {}
    }
}

/// The estimated memory an op takes while pending.
fn op_cost(op: &PersistOp) -> usize {
    std::mem::size_of::<PersistOp>()
        + match op {
            PersistOp::Enqueue(m) => {
                m.meta.bytes as usize
                    + m.meta.action.len()
                    + m.meta.tx_id.as_ref().map_or(0, String::len)
            }
            PersistOp::PutTransaction(_) | PersistOp::PutCacheEntry(_) => {
                serde_json::to_string(op).map_or(0, |s| s.len())
            }
            PersistOp::RemoveTransaction { tx_id } => tx_id.len(),
            PersistOp::RemoveCacheEntry { key } | PersistOp::DeleteMeta { key } => key.len(),
            PersistOp::PutMeta { key, value } => key.len() + value.len(),
            _ => 0,
        }
}

/// An op list with the same effect on any state as `ops` (the final state only: intermediate
/// states are not kept), and usually far fewer and smaller ops. See the module documentation.
///
/// Assumes what the core guarantees: a `queue_seq` is enqueued at most once and only above every
/// earlier one. Sequences of ops on one message that do not follow that are left as they are.
fn compact(ops: Vec<PersistOp>) -> Vec<PersistOp> {
    let mut ops: Vec<Option<PersistOp>> = ops.into_iter().map(Some).collect();

    // Queued messages, per queue_seq.
    let mut by_seq: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut max_enqueued = None;
    for (i, op) in ops.iter().enumerate() {
        let op = op.as_ref().expect("all present");
        if let Some(seq) = op_queue_seq(op) {
            by_seq.entry(seq).or_default().push(i);
        }
        if let PersistOp::Enqueue(m) = op {
            max_enqueued = max_enqueued.max(Some(m.meta.queue_seq));
        }
    }
    for (seq, idxs) in by_seq {
        let is = |i: usize, f: fn(&PersistOp) -> bool| ops[i].as_ref().is_some_and(f);
        let enqueue = |op: &PersistOp| matches!(op, PersistOp::Enqueue(_));
        let remove = |op: &PersistOp| matches!(op, PersistOp::Remove { .. });
        let (first, last) = (idxs[0], idxs[idxs.len() - 1]);
        let enqueues = idxs.iter().filter(|&&i| is(i, enqueue)).count();
        let removes = idxs.iter().filter(|&&i| is(i, remove)).count();
        match (enqueues, removes) {
            // Enqueued, changed, removed during the outage: nothing left but the high-water
            // mark of queue_seq, if it is the highest.
            (1, 1) if idxs.len() >= 2 && is(first, enqueue) && is(last, remove) => {
                for &i in &idxs[1..idxs.len() - 1] {
                    ops[i] = None;
                }
                if Some(seq) == max_enqueued {
                    if let Some(PersistOp::Enqueue(m)) = &mut ops[first] {
                        m.payload = Value::Null;
                        m.meta.bytes = 4;
                    }
                } else {
                    ops[first] = None;
                    ops[last] = None;
                }
            }
            // Changed and removed: only the removal matters.
            (0, 1) if is(last, remove) => {
                for &i in &idxs[..idxs.len() - 1] {
                    ops[i] = None;
                }
            }
            // Enqueued and changed: fold the changes into the message.
            (1, 0) if is(first, enqueue) && idxs.len() > 1 => {
                let mut message = match ops[first].take() {
                    Some(PersistOp::Enqueue(m)) => Some(m),
                    _ => unreachable!(),
                };
                for &i in &idxs[1..] {
                    apply_to_message(&mut message, ops[i].as_ref().expect("present"));
                    ops[i] = None;
                }
                ops[first] = message.map(PersistOp::Enqueue);
            }
            _ => {}
        }
    }

    // Open transactions, per tx_id: a Put replaced by a later Put takes the later value at its
    // place (keeping the insertion order); a Put followed by a Remove is dropped.
    let mut open_put: HashMap<String, usize> = HashMap::new();
    let mut removed: HashMap<String, bool> = HashMap::new();
    for i in 0..ops.len() {
        match &ops[i] {
            Some(PersistOp::PutTransaction(t)) => {
                let id = t.tx_id.clone();
                removed.remove(&id);
                if let Some(&j) = open_put.get(&id) {
                    ops[j] = ops[i].take();
                } else {
                    open_put.insert(id, i);
                }
            }
            Some(PersistOp::RemoveTransaction { tx_id }) => {
                let id = tx_id.clone();
                if let Some(j) = open_put.remove(&id) {
                    ops[j] = None;
                }
                if removed.insert(id, true).is_some() {
                    ops[i] = None; // removed twice in a row
                }
            }
            _ => {}
        }
    }

    // Cache entries and meta keys are loaded sorted by key: only the last op on each key (after
    // the last ClearCache) matters.
    let last_clear = ops
        .iter()
        .rposition(|op| matches!(op, Some(PersistOp::ClearCache)));
    let mut seen_cache: HashMap<String, ()> = HashMap::new();
    let mut seen_meta: HashMap<String, ()> = HashMap::new();
    for i in (0..ops.len()).rev() {
        let superseded = match &ops[i] {
            Some(PersistOp::PutCacheEntry(e)) => {
                last_clear.is_some_and(|c| i < c) || seen_cache.insert(e.key.clone(), ()).is_some()
            }
            Some(PersistOp::RemoveCacheEntry { key }) => {
                last_clear.is_some_and(|c| i < c) || seen_cache.insert(key.clone(), ()).is_some()
            }
            Some(PersistOp::ClearCache) => last_clear != Some(i),
            Some(PersistOp::PutMeta { key, .. } | PersistOp::DeleteMeta { key }) => {
                seen_meta.insert(key.clone(), ()).is_some()
            }
            _ => false,
        };
        if superseded {
            ops[i] = None;
        }
    }

    ops.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::persist::{CacheEntry, EventKind, QueuedMeta, TxRecord};
    use serde_json::json;

    /// xorshift64*, deterministic.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn message(seq: u64, rng: &mut Rng) -> QueuedMessage {
        let payload = json!({
            "timestamp": "2024-05-01T12:00:00.000Z",
            "seqNo": rng.below(100),
            "meterValue": [{"timestamp": "2024-05-01T11:59:00.000Z", "sampledValue": [{"value": rng.below(1000)}]}],
        });
        QueuedMessage {
            meta: QueuedMeta {
                protocol: crate::ocpp::v201::PROTOCOL.to_owned(),
                queue_seq: seq,
                action: "TransactionEvent".into(),
                tx_id: Some(format!("tx{}", rng.below(3))),
                kind: EventKind::Updated,
                attempts: 0,
                bytes: payload.to_string().len() as u64,
                created_ms: 1_714_564_800_000,
                boot_id: 7,
                time_trusted: false,
            },
            payload,
        }
    }

    fn tx(id: u64, rng: &mut Rng) -> TxRecord {
        TxRecord {
            tx_id: format!("tx{id}"),
            evse: 1,
            connector: Some(1),
            next_seq_no: rng.below(1000),
            started_ms: 0,
            id_token: None,
            group_id_token: None,
            authorized: true,
            remote_start_id: None,
            last_meter: None,
            ended_meter_values: vec![],
            meter_start_wh: 0.0,
            charging_state: "Charging".into(),
            evse_reported: false,
        }
    }

    fn random_op(rng: &mut Rng, next_seq: &mut u64) -> PersistOp {
        let seq = next_seq.saturating_sub(1 + rng.below(6)).max(1);
        let key = format!("k{}", rng.below(4));
        match rng.below(13) {
            0..=2 => {
                *next_seq += 1;
                PersistOp::Enqueue(message(*next_seq - 1, rng))
            }
            3 => PersistOp::SetAttempts {
                queue_seq: seq,
                attempts: rng.below(5) as u32,
            },
            4 | 5 => PersistOp::Remove { queue_seq: seq },
            6 => PersistOp::MarkOffline { queue_seq: seq },
            7 => PersistOp::Rebase {
                queue_seq: seq,
                delta_ms: rng.below(100_000) as i64,
            },
            8 => PersistOp::PutTransaction(tx(rng.below(4), rng)),
            9 => PersistOp::RemoveTransaction {
                tx_id: format!("tx{}", rng.below(4)),
            },
            10 => match rng.below(5) {
                0 => PersistOp::ClearCache,
                1 | 2 => PersistOp::RemoveCacheEntry { key },
                _ => PersistOp::PutCacheEntry(CacheEntry {
                    key,
                    info: json!({"status": "Accepted"}),
                    expires_ms: rng.below(1000) as i64,
                    used_ms: 0,
                }),
            },
            11 => PersistOp::PutMeta {
                key,
                value: rng.below(100).to_string(),
            },
            _ => PersistOp::DeleteMeta { key },
        }
    }

    #[test]
    fn compaction_has_the_same_effect_on_any_state() {
        let mut shrunk = 0;
        for seed in 1..400u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut next_seq = 1;
            // A state already on disk...
            let mut base = MemoryJournal::default();
            for _ in 0..rng.below(30) {
                let op = random_op(&mut rng, &mut next_seq);
                base.apply(&[op]);
            }
            // ... and what happened during the outage.
            let ops: Vec<PersistOp> = (0..rng.below(200))
                .map(|_| random_op(&mut rng, &mut next_seq))
                .collect();
            let compacted = compact(ops.clone());
            shrunk += ops.len() - compacted.len();
            let mut expected = base.clone();
            expected.apply(&ops);
            let mut actual = base.clone();
            actual.apply(&compacted);
            assert_eq!(actual.load(), expected.load(), "seed {seed}");
            for seq in 0..next_seq + 1 {
                assert_eq!(
                    actual.payload(seq),
                    expected.payload(seq),
                    "seed {seed} seq {seq}"
                );
            }
            // Compacting again changes nothing more.
            let again = compact(compacted.clone());
            let mut twice = base.clone();
            twice.apply(&again);
            assert_eq!(twice.load(), expected.load(), "seed {seed}");
        }
        assert!(shrunk > 10_000, "compaction removed only {shrunk} ops");
    }

    #[test]
    fn a_long_outage_with_traffic_stays_small() {
        // Hours of charging with the disk full: each event is enqueued, then acknowledged; the
        // transaction record is rewritten every time.
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("agent.db"));
        journal.degraded = true;
        journal.store = None; // as if the file could not be opened
        let mut rng = Rng(42);
        let mut memory = MemoryJournal::default();
        for seq in 1..=20_000u64 {
            let mut record = tx(1, &mut rng);
            record.ended_meter_values = vec![json!({"value": seq}); 20];
            let batch = vec![
                PersistOp::Enqueue(message(seq, &mut rng)),
                PersistOp::PutTransaction(record),
            ];
            journal.apply(&batch);
            memory.apply(&batch);
            let ack = vec![PersistOp::Remove { queue_seq: seq }];
            journal.apply(&ack);
            memory.apply(&ack);
        }
        let stats = journal.stats();
        assert!(stats.pending_bytes < 2 * COMPACT_FLOOR, "{stats:?}");
        assert!(!stats.over_bound);
        assert_eq!(journal.load(), memory.load());
    }

    #[test]
    fn queued_sees_pending_changes_over_the_stored_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(&dir.path().join("agent.db"));
        let mut rng = Rng(7);
        let m1 = message(1, &mut rng);
        journal.apply(&[PersistOp::Enqueue(m1.clone())]);
        // The disk goes away.
        journal.degraded = true;
        journal.pending.push(vec![PersistOp::SetAttempts {
            queue_seq: 1,
            attempts: 2,
        }]);
        journal.apply(&[PersistOp::MarkOffline { queue_seq: 1 }]);
        let q = journal.queued(1).unwrap();
        assert_eq!(q.meta.attempts, 2);
        assert_eq!(q.payload["offline"], true);
        assert_eq!(q.meta.bytes, q.payload.to_string().len() as u64);
        journal.apply(&[PersistOp::Remove { queue_seq: 1 }]);
        assert_eq!(journal.queued(1), None);
        journal.retry();
        assert!(!journal.stats().degraded);
        assert_eq!(journal.queued(1), None);
        assert_eq!(journal.load().last_queue_seq, 1);
    }

    #[test]
    fn a_file_found_corrupt_at_run_time_is_salvaged_by_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let mut rng = Rng(9);
        let mut memory = MemoryJournal::default();
        {
            let mut store = Store::open(&path).unwrap();
            let mut fill: Vec<PersistOp> = (1..=100)
                .map(|seq| {
                    let mut m = message(seq, &mut rng);
                    m.payload["pad"] = json!("x".repeat(2000));
                    m.meta.bytes = m.payload.to_string().len() as u64;
                    PersistOp::Enqueue(m)
                })
                .collect();
            fill.push(PersistOp::PutTransaction(tx(1, &mut rng)));
            let empty: Vec<PersistOp> = (1..=95)
                .map(|queue_seq| PersistOp::Remove { queue_seq })
                .collect();
            for batch in [fill, empty] {
                store.apply(&batch).unwrap();
                memory.apply(&batch);
            }
        }
        let mut journal = Journal::open(&path);
        assert!(!journal.stats().degraded);
        // The disk goes bad under the running journal: the free list is clobbered, and a write
        // reports SQLITE_CORRUPT.
        let mut bytes = std::fs::read(&path).unwrap();
        let trunk = u32::from_be_bytes(bytes[32..36].try_into().unwrap()) as usize;
        assert!(trunk > 1);
        bytes[(trunk - 1) * 4096..trunk * 4096].fill(0xA5);
        std::fs::write(&path, &bytes).unwrap();
        let batch = vec![
            PersistOp::Enqueue(message(101, &mut rng)),
            PersistOp::Remove { queue_seq: 96 },
        ];
        journal.failed(&StoreError::new(StoreErrorKind::Corrupt, "simulated"));
        journal.push_pending(batch.clone());
        memory.apply(&batch);

        journal.retry();
        let stats = journal.stats();
        assert!(!stats.degraded && stats.pending_batches == 0, "{stats:?}");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("agent.db.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(journal.load(), memory.load());
        for seq in 90..=102 {
            assert_eq!(
                journal.queued(seq).as_ref(),
                memory.payload(seq),
                "seq {seq}"
            );
        }
        drop(journal);
        let store = Store::open(&path).unwrap();
        store.quick_check().unwrap();
        assert_eq!(store.load().unwrap(), memory.load());
    }
}
