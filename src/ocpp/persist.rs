//! What the core asks to persist, and what it is rebuilt from after a restart.
//!
//! The core emits [`Batch`]es of [`PersistOp`]s (as `Output::Persist`); the shell applies each
//! batch atomically (one SQLite transaction) and strictly before any later output, so a message
//! is durable before it can be on the wire. On start-up the shell loads a [`Persisted`] snapshot
//! and the core is rebuilt from it, exactly as the test kit's `power_cycle` does with its
//! in-memory journal.
//!
//! Queued message payloads live only in the journal: the core keeps the metadata
//! ([`QueuedMeta`]) and asks the shell to send a stored row (`Output::SendQueued`), so a long
//! outage costs disk, not RAM.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kind of a TransactionEvent, for the E04.FR.08 drop rule (only Updated may be dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Started,
    Updated,
    Ended,
    /// Not a TransactionEvent (e.g. a SecurityEventNotification queued like one).
    Other,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "Started",
            EventKind::Updated => "Updated",
            EventKind::Ended => "Ended",
            EventKind::Other => "Other",
        }
    }
}

/// A durable queued request, without its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMeta {
    /// Position in the FIFO (strictly increasing, never reused).
    pub queue_seq: u64,
    /// The protocol the payload is written in (`ocpp2.0.1`, the blocks' spelling): over a 1.6
    /// connection it is translated when sent (`v16::adapter::outgoing`).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The OCPP action (`TransactionEvent`, ...).
    pub action: String,
    pub tx_id: Option<String>,
    pub kind: EventKind,
    /// Failed deliveries so far (E13): answered with CALLERROR or timed out while connected.
    pub attempts: u32,
    /// Size of the payload in bytes, for the queue bound.
    pub bytes: u64,
    /// UTC milliseconds when the message was created (for `ctl status`'s oldest age).
    pub created_ms: i64,
    /// The boot the message was created in, and whether UTC was known then: messages created
    /// before the CSMS gave us the time are rebased once it does, within the same boot.
    pub boot_id: u64,
    pub time_trusted: bool,
}

fn default_protocol() -> String {
    crate::ocpp::v201::PROTOCOL.to_owned()
}

/// A queued message with its payload, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub meta: QueuedMeta,
    pub payload: Value,
}

/// A transaction that has started and not yet ended (its Ended event not yet queued).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxRecord {
    pub tx_id: String,
    pub evse: u32,
    /// The connector, once the EV connected.
    pub connector: Option<u32>,
    /// The next seqNo to use (E01.FR.07).
    pub next_seq_no: u64,
    pub started_ms: i64,
    /// The idToken that authorized it, as JSON (`IdTokenType`).
    pub id_token: Option<Value>,
    pub group_id_token: Option<Value>,
    pub authorized: bool,
    pub remote_start_id: Option<i64>,
    /// The last meter values known for this transaction (`MeterValueType` JSON), used to end it
    /// after a power loss (E06 with stoppedReason PowerLoss).
    pub last_meter: Option<Value>,
    /// Sampled values collected for the Ended event (TxEndedInterval / aligned TxEndedInterval).
    pub ended_meter_values: Vec<Value>,
    /// Energy register (Wh) at the start, for MaxEnergyOnInvalidId.
    pub meter_start_wh: f64,
    /// Charging state last reported (`ChargingStateEnumType` value).
    pub charging_state: String,
    /// Whether `evse.connectorId` was reported since the EV connected (E01.FR.16).
    pub evse_reported: bool,
}

impl TxRecord {
    /// The energy register (Wh) of the transaction's last meter values, if they had one: what
    /// a meter that keeps no register of its own resumes from after a crash.
    pub fn last_energy_register_wh(&self) -> Option<f64> {
        self.last_meter.as_ref()?["sampledValue"]
            .as_array()?
            .iter()
            .find(|s| s["measurand"] == "Energy.Active.Import.Register")?["value"]
            .as_f64()
    }
}

/// An entry of the authorization cache (C10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// `type:idToken`, the cache key.
    pub key: String,
    /// `IdTokenInfoType` JSON as the CSMS sent it.
    pub info: Value,
    /// UTC milliseconds after which the entry is expired (C10.FR.08, C10.FR.13).
    pub expires_ms: i64,
    /// UTC milliseconds of the last use, for eviction (C10.FR.07).
    pub used_ms: i64,
}

/// One change to the durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersistOp {
    /// Append a message to the queue.
    Enqueue(QueuedMessage),
    /// Record a failed delivery.
    SetAttempts {
        queue_seq: u64,
        attempts: u32,
    },
    /// The CSMS answered it, or it was discarded (E13.FR.04, E04.FR.08).
    Remove {
        queue_seq: u64,
    },
    /// Set `"offline": true` in the payload (E11.FR.07: what was still queued when the
    /// connection went down).
    MarkOffline {
        queue_seq: u64,
    },
    /// Shift every `timestamp` in the payload by `delta_ms` and mark it trusted: the message was
    /// created before the CSMS told us the time.
    Rebase {
        queue_seq: u64,
        delta_ms: i64,
    },
    /// Insert or replace an open transaction.
    PutTransaction(TxRecord),
    /// The transaction's Ended event is queued: it is no longer open.
    RemoveTransaction {
        tx_id: String,
    },
    PutCacheEntry(CacheEntry),
    RemoveCacheEntry {
        key: String,
    },
    ClearCache,
    /// A small key/value of the core's own state (e.g. the next boot reason).
    PutMeta {
        key: String,
        value: String,
    },
    DeleteMeta {
        key: String,
    },
}

impl PersistOp {
    /// A meta entry holding `value` as JSON, or its removal for `None`.
    pub fn meta_json<T: Serialize>(key: &str, value: Option<&T>) -> PersistOp {
        match value {
            Some(v) => PersistOp::PutMeta {
                key: key.into(),
                value: serde_json::to_string(v).unwrap_or_default(),
            },
            None => PersistOp::DeleteMeta { key: key.into() },
        }
    }
}

/// A block's durable state: one typed record under its own key, written with its version so
/// that a later agent knows what an older one wrote (records written before versions existed
/// read as the current version, which has the same fields).
pub trait Record: Serialize + serde::de::DeserializeOwned {
    const KEY: &'static str;
    const VERSION: u32;
}

#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    version: u32,
    record: T,
}

impl PersistOp {
    /// Writes the record, or removes it for `None`.
    pub fn record<R: Record>(value: Option<&R>) -> PersistOp {
        match value {
            Some(record) => PersistOp::PutMeta {
                key: R::KEY.into(),
                value: serde_json::to_string(&Versioned {
                    version: R::VERSION,
                    record,
                })
                .unwrap_or_default(),
            },
            None => PersistOp::DeleteMeta { key: R::KEY.into() },
        }
    }
}

/// Ops that must be applied together (one SQLite transaction).
pub type Batch = Vec<PersistOp>;

/// Everything the core is rebuilt from at start-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// Queued messages in FIFO order (ascending `queue_seq`).
    pub queue: Vec<QueuedMeta>,
    /// The highest `queue_seq` ever used (0 if none), so numbers are never reused.
    pub last_queue_seq: u64,
    /// Open transactions.
    pub transactions: Vec<TxRecord>,
    pub auth_cache: Vec<CacheEntry>,
    pub meta: Vec<(String, String)>,
}

impl Persisted {
    /// A block's record, `Err` when it cannot be read (another version, damaged).
    pub fn record<R: Record>(&self) -> Option<Result<R, String>> {
        let text = self.meta(R::KEY)?;
        Some(match serde_json::from_str::<Versioned<R>>(text) {
            Ok(v) if v.version == R::VERSION => Ok(v.record),
            Ok(v) => Err(format!(
                "{} is version {}; this agent reads version {}",
                R::KEY,
                v.version,
                R::VERSION
            )),
            Err(_) => serde_json::from_str::<R>(text).map_err(|e| e.to_string()),
        })
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Applies `Rebase` to a payload: every string under a `timestamp` key that parses as RFC 3339
/// is shifted by `delta_ms`. Shared by the SQLite journal and the test kit's memory journal.
pub fn rebase_timestamps(value: &mut Value, delta_ms: i64) {
    use super::clock::UtcTime;
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "timestamp" {
                    if let Some(t) = v.as_str().and_then(UtcTime::parse_rfc3339) {
                        let shifted = UtcTime::from_unix_millis(t.unix_millis() + delta_ms);
                        *v = Value::String(shifted.to_rfc3339());
                    }
                } else {
                    rebase_timestamps(v, delta_ms);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rebase_timestamps(v, delta_ms);
            }
        }
        _ => {}
    }
}

/// Applies `MarkOffline` to a payload.
pub fn mark_offline(value: &mut Value) {
    if let Value::Object(map) = value {
        map.insert("offline".into(), Value::Bool(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rebase_shifts_every_timestamp() {
        let mut v = json!({
            "timestamp": "2000-01-01T00:00:00.000Z",
            "meterValue": [{"timestamp": "2000-01-01T00:00:01.000Z", "sampledValue": [{"value": 1}]}],
            "transactionInfo": {"transactionId": "2000-01-01T00:00:00.000Z"}
        });
        rebase_timestamps(&mut v, 1000);
        assert_eq!(v["timestamp"], "2000-01-01T00:00:01.000Z");
        assert_eq!(v["meterValue"][0]["timestamp"], "2000-01-01T00:00:02.000Z");
        assert_eq!(
            v["transactionInfo"]["transactionId"],
            "2000-01-01T00:00:00.000Z"
        );
        mark_offline(&mut v);
        assert_eq!(v["offline"], true);
    }
}

/// The reference implementation of the journal's semantics, in memory: the test kit uses it for
/// `power_cycle`, and the SQLite journal is tested against it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryJournal {
    pub queue: Vec<QueuedMessage>,
    pub last_queue_seq: u64,
    pub transactions: Vec<TxRecord>,
    pub auth_cache: Vec<CacheEntry>,
    pub meta: Vec<(String, String)>,
}

impl MemoryJournal {
    pub fn apply(&mut self, batch: &[PersistOp]) {
        for op in batch {
            self.apply_one(op);
        }
    }

    fn message(&mut self, queue_seq: u64) -> Option<&mut QueuedMessage> {
        self.queue
            .iter_mut()
            .find(|m| m.meta.queue_seq == queue_seq)
    }

    fn apply_one(&mut self, op: &PersistOp) {
        match op {
            PersistOp::Enqueue(m) => {
                debug_assert!(
                    m.meta.queue_seq > self.last_queue_seq,
                    "queue_seq {} reused",
                    m.meta.queue_seq
                );
                self.last_queue_seq = self.last_queue_seq.max(m.meta.queue_seq);
                self.queue.push(m.clone());
                self.queue.sort_by_key(|m| m.meta.queue_seq);
            }
            PersistOp::SetAttempts {
                queue_seq,
                attempts,
            } => {
                if let Some(m) = self.message(*queue_seq) {
                    m.meta.attempts = *attempts;
                }
            }
            PersistOp::Remove { queue_seq } => {
                self.queue.retain(|m| m.meta.queue_seq != *queue_seq)
            }
            PersistOp::MarkOffline { queue_seq } => {
                if let Some(m) = self.message(*queue_seq) {
                    mark_offline(&mut m.payload);
                    m.meta.bytes = m.payload.to_string().len() as u64;
                }
            }
            PersistOp::Rebase {
                queue_seq,
                delta_ms,
            } => {
                if let Some(m) = self.message(*queue_seq) {
                    rebase_timestamps(&mut m.payload, *delta_ms);
                    m.meta.created_ms = m.meta.created_ms.saturating_add(*delta_ms);
                    m.meta.time_trusted = true;
                    m.meta.bytes = m.payload.to_string().len() as u64;
                }
            }
            PersistOp::PutTransaction(t) => {
                match self.transactions.iter_mut().find(|x| x.tx_id == t.tx_id) {
                    Some(x) => *x = t.clone(),
                    None => self.transactions.push(t.clone()),
                }
            }
            PersistOp::RemoveTransaction { tx_id } => {
                self.transactions.retain(|t| t.tx_id != *tx_id)
            }
            PersistOp::PutCacheEntry(e) => {
                match self.auth_cache.iter_mut().find(|x| x.key == e.key) {
                    Some(x) => *x = e.clone(),
                    None => self.auth_cache.push(e.clone()),
                }
            }
            PersistOp::RemoveCacheEntry { key } => self.auth_cache.retain(|e| e.key != *key),
            PersistOp::ClearCache => self.auth_cache.clear(),
            PersistOp::PutMeta { key, value } => {
                match self.meta.iter_mut().find(|(k, _)| k == key) {
                    Some((_, v)) => *v = value.clone(),
                    None => self.meta.push((key.clone(), value.clone())),
                }
            }
            PersistOp::DeleteMeta { key } => self.meta.retain(|(k, _)| k != key),
        }
    }

    /// The stored payload of a queued message.
    pub fn payload(&self, queue_seq: u64) -> Option<&QueuedMessage> {
        self.queue.iter().find(|m| m.meta.queue_seq == queue_seq)
    }

    /// What a restart would load. Transactions are in insertion order, cache entries in key
    /// order, meta in key order (the SQLite journal sorts the same way).
    pub fn load(&self) -> Persisted {
        let mut auth_cache = self.auth_cache.clone();
        auth_cache.sort_by(|a, b| a.key.cmp(&b.key));
        let mut meta = self.meta.clone();
        meta.sort();
        Persisted {
            queue: self.queue.iter().map(|m| m.meta.clone()).collect(),
            last_queue_seq: self.last_queue_seq,
            transactions: self.transactions.clone(),
            auth_cache,
            meta,
        }
    }
}
