//! What a station task needs of a journal, and two backends: the SQLite [`Journal`] on a
//! thread of its own ([`SqliteJournal`], the product) and the core's [`MemoryJournal`]
//! ([`MemoryBackend`]: fleet mode and tests, nothing survives the process).
//!
//! Persist before send: [`JournalBackend::apply`] completes only once the batch is as durable
//! as the backend makes it (for SQLite: committed, or kept in memory while the disk refuses
//! writes, see [`Journal::apply`]), and the station task awaits it before executing the next
//! output. SQLite's fsyncs and busy waits thus stall that station only, not the runtime.

use super::journal::{Journal, JournalStats};
use crate::ocpp::persist::{MemoryJournal, PersistOp, Persisted, QueuedMessage};
use std::future::Future;
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

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

/// A request to the journal thread, with where to send the answer and the stats after it.
enum Request {
    Load(oneshot::Sender<(Persisted, JournalStats)>),
    Apply(Vec<PersistOp>, oneshot::Sender<JournalStats>),
    Queued(u64, oneshot::Sender<(Option<QueuedMessage>, JournalStats)>),
    Retry(oneshot::Sender<JournalStats>),
}

/// The SQLite journal, run on a dedicated thread so that its writes (fsync, a lock held by
/// another process) do not block the runtime. Requests are served in order, one at a time.
pub struct SqliteJournal {
    requests: Option<mpsc::UnboundedSender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: JournalStats,
}

const GONE: &str = "the journal thread ended";

impl SqliteJournal {
    /// Opens the journal at `path` on its thread (see [`Journal::open`]: never fails). The
    /// thread logs inside the caller's current span (the station's).
    pub fn open(path: &Path) -> std::io::Result<SqliteJournal> {
        let (requests, mut inbox) = mpsc::unbounded_channel::<Request>();
        let span = tracing::Span::current();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let _span = span.entered();
                let mut journal = Journal::open(&path);
                // Each answer may find its asker gone (a station task stopped): no matter.
                // A plain thread, outside the runtime: it may block on the channel.
                while let Some(request) = inbox.blocking_recv() {
                    match request {
                        Request::Load(reply) => {
                            let persisted = journal.load();
                            let _ = reply.send((persisted, journal.stats()));
                        }
                        Request::Apply(batch, reply) => {
                            journal.apply(&batch);
                            let _ = reply.send(journal.stats());
                        }
                        Request::Queued(queue_seq, reply) => {
                            let message = journal.queued(queue_seq);
                            let _ = reply.send((message, journal.stats()));
                        }
                        Request::Retry(reply) => {
                            journal.retry();
                            let _ = reply.send(journal.stats());
                        }
                    }
                }
            })?;
        Ok(SqliteJournal {
            requests: Some(requests),
            thread: Some(thread),
            stats: JournalStats::default(),
        })
    }

    fn send(&self, request: Request) {
        if let Some(requests) = &self.requests {
            requests.send(request).ok().expect(GONE);
        }
    }
}

impl JournalBackend for SqliteJournal {
    async fn load(&mut self) -> Persisted {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Load(tx));
        let (persisted, stats) = rx.await.expect(GONE);
        self.stats = stats;
        persisted
    }

    async fn apply(&mut self, batch: Vec<PersistOp>) {
        if batch.is_empty() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.send(Request::Apply(batch, tx));
        self.stats = rx.await.expect(GONE);
    }

    async fn queued(&mut self, queue_seq: u64) -> Option<QueuedMessage> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Queued(queue_seq, tx));
        let (message, stats) = rx.await.expect(GONE);
        self.stats = stats;
        message
    }

    async fn retry(&mut self) {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Retry(tx));
        self.stats = rx.await.expect(GONE);
    }

    fn stats(&self) -> JournalStats {
        self.stats.clone()
    }
}

impl Drop for SqliteJournal {
    /// Closes the file before the station task is done (the thread ends with its inbox).
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
        let mut sqlite = SqliteJournal::open(&path).unwrap();
        let (persisted, second) = exercise(&mut sqlite).await;
        let mut memory = MemoryBackend::default();
        assert_eq!(
            exercise(&mut memory).await,
            (persisted.clone(), second.clone())
        );
        assert_eq!(second.unwrap().meta.attempts, 1);
        // Another connection to the file, while the thread still has it open, sees every
        // batch: apply returned after the commit.
        assert_eq!(Journal::open(&path).load(), persisted);
        assert_eq!(persisted.last_queue_seq, 2);
        drop(sqlite);
        assert_eq!(Journal::open(&path).load(), persisted);
    }
}
