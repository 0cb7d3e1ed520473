//! The durable FIFO of transaction-related messages (E04, E11-E13): what is queued, in which
//! order, how often it was tried, and when it may be tried again. Payloads live in the journal;
//! this holds the metadata.

use super::clock::Instant;
use super::persist::{EventKind, PersistOp, QueuedMeta};
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<QueuedMeta>,
    last_queue_seq: u64,
    bytes: u64,
    /// The head may not be sent before this (E13.FR.03).
    retry_at: Option<Instant>,
    /// Messages dropped by the queue bound (E04.FR.08) or after the last attempt (E13.FR.04)
    /// since start-up.
    pub dropped: u64,
    /// TransactionEvents known to carry `offline: true` already.
    offline: BTreeSet<u64>,
}

/// What happened to the head after a failed delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Retry at the given time.
    Retry(Instant),
    /// MessageAttempts reached: the message was discarded.
    Discarded,
}

impl Outbox {
    pub fn new(queue: Vec<QueuedMeta>, last_queue_seq: u64) -> Self {
        let bytes = queue.iter().map(|m| m.bytes).sum();
        let last_queue_seq = queue
            .iter()
            .map(|m| m.queue_seq)
            .max()
            .unwrap_or(0)
            .max(last_queue_seq);
        Outbox {
            queue: queue.into(),
            last_queue_seq,
            bytes,
            retry_at: None,
            dropped: 0,
            offline: BTreeSet::new(),
        }
    }

    /// The last queue number handed out (0: none yet); never decreases, across restarts too.
    pub fn last_queue_seq(&self) -> u64 {
        self.last_queue_seq
    }

    pub fn next_queue_seq(&mut self) -> u64 {
        self.last_queue_seq += 1;
        self.last_queue_seq
    }

    /// Appends a message; `offline` says its payload already carries `offline: true`.
    pub fn push(&mut self, meta: QueuedMeta, offline: bool) {
        self.bytes += meta.bytes;
        if offline {
            self.offline.insert(meta.queue_seq);
        }
        self.queue.push_back(meta);
    }

    /// E11.FR.07: the TransactionEvents to mark offline when the connection goes down: all
    /// queued but the head (which may have been transmitted, and must be retransmitted
    /// unchanged), and not already marked. They count as marked from now on.
    pub fn take_offline_candidates(&mut self) -> Vec<u64> {
        let candidates: Vec<u64> = self
            .queue
            .iter()
            .skip(1)
            .filter(|m| m.action == "TransactionEvent" && !self.offline.contains(&m.queue_seq))
            .map(|m| m.queue_seq)
            .collect();
        self.offline.extend(candidates.iter().copied());
        candidates
    }

    pub fn head(&self) -> Option<&QueuedMeta> {
        self.queue.front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = &QueuedMeta> {
        self.queue.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut QueuedMeta> {
        self.queue.iter_mut()
    }

    pub fn has_messages_for(&self, tx_id: &str) -> bool {
        self.queue.iter().any(|m| m.tx_id.as_deref() == Some(tx_id))
    }

    /// Whether the head may be sent now.
    pub fn ready(&self, now: Instant) -> bool {
        !self.queue.is_empty() && self.retry_at.is_none_or(|t| t <= now)
    }

    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.queue.is_empty())
    }

    /// The CSMS answered the head.
    pub fn delivered(&mut self, queue_seq: u64) -> Option<PersistOp> {
        let head = self.queue.front()?;
        if head.queue_seq != queue_seq {
            return None;
        }
        let head = self.queue.pop_front()?;
        self.bytes -= head.bytes;
        self.offline.remove(&queue_seq);
        self.retry_at = None;
        Some(PersistOp::Remove { queue_seq })
    }

    /// The head failed to deliver: CALLERROR or no answer within MessageTimeout, while
    /// connected (a lost connection is not a delivery attempt). E13.FR.02-04.
    pub fn failed(
        &mut self,
        queue_seq: u64,
        now: Instant,
        max_attempts: u32,
        interval: Duration,
    ) -> (Failure, PersistOp) {
        let Some(head) = self.queue.front_mut().filter(|h| h.queue_seq == queue_seq) else {
            return (Failure::Discarded, PersistOp::Remove { queue_seq });
        };
        head.attempts += 1;
        if head.attempts >= max_attempts {
            let head = self.queue.pop_front().expect("head exists");
            self.bytes -= head.bytes;
            self.dropped += 1;
            self.retry_at = None;
            (Failure::Discarded, PersistOp::Remove { queue_seq })
        } else {
            // E13.FR.03: the interval times the number of preceding transmissions.
            let at = now + interval * head.attempts;
            self.retry_at = Some(at);
            (
                Failure::Retry(at),
                PersistOp::SetAttempts {
                    queue_seq,
                    attempts: head.attempts,
                },
            )
        }
    }

    /// E04.FR.08: while over `max_bytes`, drop Updated events of the oldest transaction that
    /// has more than one, every other one (1st, 3rd, 5th, ...), never Started or Ended and never
    /// `protected` (the message in flight). Returns the removals.
    pub fn enforce_bound(&mut self, max_bytes: u64, protected: Option<u64>) -> Vec<PersistOp> {
        let mut ops = Vec::new();
        while self.bytes > max_bytes {
            let droppable =
                |m: &QueuedMeta| m.kind == EventKind::Updated && Some(m.queue_seq) != protected;
            // The oldest transaction with droppable Updated events.
            let Some(tx_id) = self
                .queue
                .iter()
                .find(|m| droppable(m))
                .map(|m| m.tx_id.clone())
            else {
                break; // only Started/Ended left: they are never dropped
            };
            // The 1st, 3rd, 5th, ... droppable Updated of that transaction.
            let victims: Vec<u64> = self
                .queue
                .iter()
                .filter(|m| droppable(m) && m.tx_id == tx_id)
                .step_by(2)
                .map(|m| m.queue_seq)
                .collect();
            for seq in victims {
                if let Some(pos) = self.queue.iter().position(|m| m.queue_seq == seq) {
                    let m = self.queue.remove(pos).expect("position is valid");
                    self.bytes -= m.bytes;
                    self.dropped += 1;
                    ops.push(PersistOp::Remove { queue_seq: seq });
                }
                if self.bytes <= max_bytes {
                    break;
                }
            }
        }
        ops
    }

    /// Age of the oldest queued message, in ms, given the current UTC.
    pub fn oldest_created_ms(&self) -> Option<i64> {
        self.queue.front().map(|m| m.created_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, tx: &str, kind: EventKind) -> QueuedMeta {
        QueuedMeta {
            protocol: crate::ocpp::v201::PROTOCOL.to_owned(),
            queue_seq: seq,
            action: "TransactionEvent".into(),
            tx_id: Some(tx.into()),
            kind,
            attempts: 0,
            bytes: 100,
            created_ms: 0,
            boot_id: 1,
            time_trusted: true,
        }
    }

    #[test]
    fn retries_with_growing_interval_then_discards() {
        let mut o = Outbox::new(vec![meta(1, "a", EventKind::Started)], 0);
        let t0 = Instant::from_millis(0);
        let (f, op) = o.failed(1, t0, 3, Duration::from_secs(10));
        assert_eq!(f, Failure::Retry(Instant::from_millis(10_000)));
        assert_eq!(
            op,
            PersistOp::SetAttempts {
                queue_seq: 1,
                attempts: 1
            }
        );
        assert!(!o.ready(Instant::from_millis(9_999)));
        assert!(o.ready(Instant::from_millis(10_000)));
        let (f, _) = o.failed(1, Instant::from_millis(10_000), 3, Duration::from_secs(10));
        assert_eq!(f, Failure::Retry(Instant::from_millis(30_000)));
        let (f, op) = o.failed(1, Instant::from_millis(30_000), 3, Duration::from_secs(10));
        assert_eq!(
            (f, op),
            (Failure::Discarded, PersistOp::Remove { queue_seq: 1 })
        );
        assert!(o.is_empty());
        assert_eq!(o.dropped, 1);
    }

    #[test]
    fn queue_numbers_are_never_reused() {
        let mut o = Outbox::new(Vec::new(), 41);
        assert_eq!(o.next_queue_seq(), 42);
        let mut o = Outbox::new(vec![meta(50, "a", EventKind::Started)], 41);
        assert_eq!(o.next_queue_seq(), 51);
    }

    #[test]
    fn bound_drops_every_other_updated_never_started_or_ended() {
        let mut q = vec![meta(1, "a", EventKind::Started)];
        for i in 2..=9 {
            q.push(meta(i, "a", EventKind::Updated));
        }
        q.push(meta(10, "a", EventKind::Ended));
        q.push(meta(11, "b", EventKind::Started));
        q.push(meta(12, "b", EventKind::Updated));
        let mut o = Outbox::new(q, 0);
        assert_eq!(o.bytes(), 1200);
        let ops = o.enforce_bound(900, Some(2));
        // Updated of "a" without the protected head: 3..=9; every other one from the first.
        let removed: Vec<u64> = ops
            .iter()
            .map(|op| match op {
                PersistOp::Remove { queue_seq } => *queue_seq,
                _ => panic!(),
            })
            .collect();
        assert_eq!(removed, vec![3, 5, 7]);
        assert_eq!(o.bytes(), 900);
        let ops = o.enforce_bound(0, None);
        let kinds: Vec<EventKind> = o.iter().map(|m| m.kind).collect();
        assert!(
            kinds.iter().all(|k| *k != EventKind::Updated),
            "{kinds:?} {ops:?}"
        );
        assert_eq!(
            kinds,
            vec![EventKind::Started, EventKind::Ended, EventKind::Started]
        );
    }
}
