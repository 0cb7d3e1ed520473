//! What a station task needs of a journal, and two backends: the SQLite [`Journal`] on a
//! thread of its own ([`SqliteJournal`], the product) and the core's [`MemoryJournal`]
//! ([`MemoryBackend`]: fleet mode and tests, nothing survives the process).
//!
//! The station task is generic over the backend rather than holding a `Box<dyn ...>`: the
//! binary instantiates only `SqliteJournal`, and no boxed futures are needed.
//!
//! One long-lived thread per journal rather than tokio's blocking pool (issue 13, measured in
//! BENCHMARKS.md): the pool let its idle thread go after 10 s and started a new one for the
//! next batch, and each new thread could get another glibc malloc arena and stack, which
//! glibc keeps after the thread exits; SQLite's page cache and statements were spread over
//! them. A thread that stays keeps one stack and one arena, reused by every batch.
//!
//! Persist before send: [`JournalBackend::apply`] completes only once the batch is as durable
//! as the backend makes it (for SQLite: committed, or kept in memory while the disk refuses
//! writes, see [`Journal::apply`]), and the station task awaits it before executing the next
//! output. SQLite's fsyncs and busy waits thus stall that station only, not the runtime.

use super::journal::{Journal, JournalStats};
use crate::ocpp::persist::{MemoryJournal, PersistOp, Persisted, QueuedMessage};
use std::future::Future;
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// A station's durable state, as the station task drives it.
pub trait JournalBackend: Send + 'static {
    /// What the core is rebuilt from (called once, at start).
    fn load(&mut self) -> impl Future<Output = Persisted> + Send;
    /// Applies a batch atomically; done when it is durable.
    fn apply(&mut self, batch: Vec<PersistOp>) -> impl Future<Output = ()> + Send;
    /// A queued message with its payload (`Output::SendQueued`).
    fn queued(&mut self, queue_seq: u64) -> impl Future<Output = Option<QueuedMessage>> + Send;
    /// Tries again to write what could not be written (while `stats().degraded`).
    fn retry(&mut self) -> impl Future<Output = ()> + Send;
    /// Health, as of the last operation.
    fn stats(&self) -> JournalStats;
}

/// A request to the journal, run on its thread.
#[derive(Debug)]
enum Request {
    Load,
    Apply(Vec<PersistOp>),
    Queued(u64),
    Retry,
}

/// The answer: what was asked for, and the stats after it. One type for every
/// request keeps the channel code single (the binary small).
#[derive(Debug, Default)]
struct Reply {
    persisted: Option<Persisted>,
    message: Option<QueuedMessage>,
    stats: JournalStats,
}

type Call = (Request, oneshot::Sender<Reply>);

/// The SQLite journal, run on a thread of its own so that its writes (fsync, a lock held by
/// another process) do not block the runtime. One request at a time: each is awaited before
/// the next is made.
pub struct SqliteJournal {
    /// `None` once dropped: the thread ends when it sees the channel closed.
    requests: Option<mpsc::Sender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: JournalStats,
}

const GONE: &str = "the journal thread ended";

impl SqliteJournal {
    /// Opens the journal at `path` (see [`Journal::open`]: never fails) on the journal's
    /// thread (opening may check and salvage a file). What it logs goes into the caller's
    /// current span (the station's).
    pub async fn open(path: &Path) -> SqliteJournal {
        let (requests, incoming) = mpsc::channel::<Call>();
        let (opened, ready) = oneshot::channel::<JournalStats>();
        let span = tracing::Span::current();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let _span = span.entered();
                let mut journal = Journal::open(&path);
                journal.release_memory();
                give_back_free_heap();
                let _ = opened.send(journal.stats());
                // Ends when the SqliteJournal is dropped; the journal (its connection) with it.
                while let Ok((request, reply)) = incoming.recv() {
                    let _ = reply.send(serve(&mut journal, request));
                    // Between requests the connection holds no page: the agent idles with
                    // none cached (issue 13).
                    journal.release_memory();
                    give_back_free_heap();
                }
            })
            .expect("spawning the journal thread");
        let stats = ready.await.expect(GONE);
        SqliteJournal {
            requests: Some(requests),
            thread: Some(thread),
            stats,
        }
    }

    /// Hands a request to the journal's thread and waits for its answer.
    async fn call(&mut self, request: Request) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .expect(GONE)
            .send((request, reply))
            .expect(GONE);
        let reply = answer.await.expect(GONE);
        self.stats = reply.stats.clone();
        reply
    }
}

/// Returns the free pages inside the heap to the kernel (`malloc_trim(0)`). Opening the journal
/// is the process's largest passing use of memory (SQLite's journal buffers while a file is
/// created or migrated, the integrity check's pages: about 270 KB at the peak); once freed, malloc
/// keeps those pages resident for reuse, and what the agent allocates later does not fill them
/// (issue 13). Called after opening and after every request: a request prepares SQLite
/// statements and frees them when it is done (`Journal::release_memory`), which leaves pages
/// free that later allocations do not fill (idle heap 248 -> 236 kB).
fn give_back_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) only releases free memory; it is thread-safe (takes the arena lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

fn serve(journal: &mut Journal, request: Request) -> Reply {
    let mut answer = Reply::default();
    match request {
        Request::Load => answer.persisted = Some(journal.load()),
        Request::Apply(batch) => journal.apply(&batch),
        Request::Queued(queue_seq) => answer.message = journal.queued(queue_seq),
        Request::Retry => journal.retry(),
    }
    answer.stats = journal.stats();
    answer
}

impl Drop for SqliteJournal {
    /// Closes the database before returning, as dropping the [`Journal`] itself would: a
    /// station that restarts (Reset) or a process that exits finds the file closed, its WAL
    /// checkpointed.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl JournalBackend for SqliteJournal {
    async fn load(&mut self) -> Persisted {
        self.call(Request::Load).await.persisted.unwrap_or_default()
    }

    async fn apply(&mut self, batch: Vec<PersistOp>) {
        if !batch.is_empty() {
            self.call(Request::Apply(batch)).await;
        }
    }

    async fn queued(&mut self, queue_seq: u64) -> Option<QueuedMessage> {
        self.call(Request::Queued(queue_seq)).await.message
    }

    async fn retry(&mut self) {
        self.call(Request::Retry).await;
    }

    fn stats(&self) -> JournalStats {
        self.stats.clone()
    }
}

/// A journal in memory: what the core persists lives as long as the process.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    pub journal: MemoryJournal,
}

impl JournalBackend for MemoryBackend {
    async fn load(&mut self) -> Persisted {
        self.journal.load()
    }

    async fn apply(&mut self, batch: Vec<PersistOp>) {
        self.journal.apply(&batch);
    }

    async fn queued(&mut self, queue_seq: u64) -> Option<QueuedMessage> {
        self.journal.payload(queue_seq).cloned()
    }

    async fn retry(&mut self) {}

    fn stats(&self) -> JournalStats {
        JournalStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::persist::{EventKind, QueuedMeta};

    fn message(queue_seq: u64) -> QueuedMessage {
        QueuedMessage {
            meta: QueuedMeta {
                protocol: crate::ocpp::v201::PROTOCOL.to_owned(),
                queue_seq,
                action: "TransactionEvent".into(),
                tx_id: Some("tx-1".into()),
                kind: EventKind::Started,
                attempts: 0,
                bytes: 2,
                created_ms: 0,
                boot_id: 1,
                time_trusted: true,
            },
            payload: serde_json::json!({}),
        }
    }

    /// The same batches through both backends give the same state.
    async fn exercise(backend: &mut impl JournalBackend) -> (Persisted, Option<QueuedMessage>) {
        assert_eq!(backend.load().await, Persisted::default());
        backend
            .apply(vec![
                PersistOp::Enqueue(message(1)),
                PersistOp::Enqueue(message(2)),
                PersistOp::PutMeta {
                    key: "k".into(),
                    value: "v".into(),
                },
            ])
            .await;
        backend
            .apply(vec![
                PersistOp::Remove { queue_seq: 1 },
                PersistOp::SetAttempts {
                    queue_seq: 2,
                    attempts: 1,
                },
            ])
            .await;
        backend.retry().await;
        assert!(!backend.stats().degraded);
        assert_eq!(backend.queued(1).await, None);
        let second = backend.queued(2).await;
        (backend.load().await, second)
    }

    #[tokio::test]
    async fn sqlite_writes_are_on_disk_when_apply_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let mut sqlite = SqliteJournal::open(&path).await;
        let (persisted, second) = exercise(&mut sqlite).await;
        let mut memory = MemoryBackend::default();
        assert_eq!(
            exercise(&mut memory).await,
            (persisted.clone(), second.clone())
        );
        assert_eq!(second.unwrap().meta.attempts, 1);
        // Another connection to the file, while the backend still has it open, sees every
        // batch: apply returned after the commit.
        assert_eq!(Journal::open(&path).load(), persisted);
        assert_eq!(persisted.last_queue_seq, 2);
        drop(sqlite);
        assert_eq!(Journal::open(&path).load(), persisted);
    }
}
