//! The SQLite journal against the reference semantics (`MemoryJournal`), on real files: random
//! op sequences, atomicity, a real crash (SIGKILL), migrations, and a disk in trouble (full,
//! read-only, corrupt, missing).

use ocpp_agent::ocpp::persist::{
    CacheEntry, EventKind, MemoryJournal, PersistOp, Persisted, QueuedMessage, QueuedMeta, TxRecord,
};
use ocpp_agent::shell::journal::Journal;
use ocpp_agent::shell::store::{MIGRATIONS, SCHEMA_VERSION, Store, StoreErrorKind};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// ----- deterministic random data -------------------------------------------------------------

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Whether this build's serde_json parses back every f64 it prints (the `float_roundtrip`
/// feature). Without it, a value such as 0.1 + 0.2 comes back one ULP off, so the payload read
/// back from the file is not bit-for-bit the one written; the random data then keeps to values
/// a meter prints (few significant digits), which parse exactly either way.
fn floats_round_trip() -> bool {
    static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBE.get_or_init(|| {
        let mut rng = Rng::new(1);
        (0..10_000).all(|_| {
            let x = f64::from_bits(rng.next() >> 2);
            serde_json::from_str::<f64>(&serde_json::to_string(&x).unwrap()).unwrap() == x
        }) && serde_json::from_str::<f64>("190.20000000000002").unwrap() == 190.20000000000002
    })
}

fn number(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(rng.below(1_000_000)),
        1 => json!(-(rng.below(1_000_000) as i64)),
        2 if floats_round_trip() => json!(f64::from_bits(rng.next() >> 2)),
        3 => json!(u64::MAX - rng.below(10)),
        _ => json!(rng.below(100_000_000) as f64 / 1000.0),
    }
}

const TIMESTAMPS: &[&str] = &[
    "2000-01-01T00:00:00.000Z",
    "2024-05-01T12:00:00Z",
    "2024-05-01T14:00:00.250+02:00",
    "2024-02-29T23:59:59.999Z",
    "not a time",
    "1970-01-01T00:00:00Z",
];

const TEXTS: &[&str] = &[
    "",
    "plain",
    "quote \" and backslash \\ and newline \n",
    "Zürich — ✓ ⚡ 充電",
    "0123456789ABCDEF",
];

fn meter_value(rng: &mut Rng) -> Value {
    let samples: Vec<Value> = (0..1 + rng.below(3))
        .map(|_| {
            json!({
                "value": number(rng),
                "measurand": rng.pick(&["Energy.Active.Import.Register", "Power.Active.Import", "SoC"]),
                "context": "Sample.Periodic",
                "unitOfMeasure": {"unit": "Wh", "multiplier": 0},
            })
        })
        .collect();
    json!({"timestamp": rng.pick(TIMESTAMPS), "sampledValue": samples})
}

/// A TransactionEvent as the core writes it, with nested meterValue timestamps.
fn transaction_event(rng: &mut Rng, kind: EventKind, tx_id: &str) -> Value {
    let mut payload = json!({
        "eventType": kind.as_str(),
        "timestamp": rng.pick(TIMESTAMPS),
        "triggerReason": rng.pick(&["MeterValuePeriodic", "ChargingStateChanged", "Authorized"]),
        "seqNo": rng.below(10_000),
        "transactionInfo": {"transactionId": tx_id, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
    });
    if rng.chance(70) {
        payload["meterValue"] = (0..1 + rng.below(3)).map(|_| meter_value(rng)).collect();
    }
    if rng.chance(30) {
        payload["idToken"] = json!({"idToken": rng.pick(TEXTS), "type": "ISO14443"});
    }
    if rng.chance(10) {
        payload["offline"] = json!(false);
    }
    payload
}

fn enqueue(rng: &mut Rng, queue_seq: u64) -> QueuedMessage {
    let kind = [
        EventKind::Started,
        EventKind::Updated,
        EventKind::Ended,
        EventKind::Other,
    ][rng.below(4) as usize];
    let tx_id = format!("tx-{}", rng.below(4));
    let (action, tx_id, payload) = if kind == EventKind::Other {
        (
            "SecurityEventNotification",
            None,
            json!({"type": "StartupOfTheDevice", "timestamp": rng.pick(TIMESTAMPS), "techInfo": rng.pick(TEXTS)}),
        )
    } else {
        let payload = transaction_event(rng, kind, &tx_id);
        ("TransactionEvent", Some(tx_id), payload)
    };
    QueuedMessage {
        meta: QueuedMeta {
            protocol: ocpp_agent::ocpp::v201::PROTOCOL.to_owned(),
            queue_seq,
            action: action.into(),
            tx_id,
            kind,
            attempts: rng.below(3) as u32,
            bytes: payload.to_string().len() as u64,
            created_ms: 1_714_564_800_000 - rng.below(2_000_000_000_000) as i64,
            boot_id: rng.next(),
            time_trusted: rng.chance(50),
        },
        payload,
    }
}

fn json_or_none(rng: &mut Rng) -> Option<Value> {
    match rng.below(4) {
        0 => None,
        1 => Some(Value::Null),
        _ => Some(json!({"idToken": rng.pick(TEXTS), "type": "Central"})),
    }
}

fn tx_record(rng: &mut Rng, tx_id: String) -> TxRecord {
    TxRecord {
        tx_id,
        evse: rng.below(3) as u32 + 1,
        connector: rng.chance(70).then(|| rng.below(2) as u32 + 1),
        next_seq_no: rng.below(100_000),
        started_ms: rng.next() as i64 >> 20,
        id_token: json_or_none(rng),
        group_id_token: json_or_none(rng),
        authorized: rng.chance(50),
        remote_start_id: rng.chance(30).then(|| rng.next() as i64),
        last_meter: rng.chance(60).then(|| meter_value(rng)),
        ended_meter_values: (0..rng.below(4)).map(|_| meter_value(rng)).collect(),
        meter_start_wh: rng.below(100_000_000) as f64 / 1000.0,
        charging_state: rng
            .pick(&["Charging", "EVConnected", "SuspendedEV", "Idle", "Zürich ✓"])
            .into(),
        evse_reported: rng.chance(50),
    }
}

/// Generates ops the way the core does: queue_seq strictly increasing and never reused, other
/// ops aimed mostly at things that exist.
struct OpGen {
    rng: Rng,
    next_seq: u64,
}

impl OpGen {
    fn new(seed: u64) -> Self {
        OpGen {
            rng: Rng::new(seed),
            next_seq: 1,
        }
    }

    fn existing_seq(&mut self) -> u64 {
        // Mostly recent (likely still queued), sometimes one that never existed.
        let back = 1 + self.rng.below(12);
        self.next_seq.saturating_sub(back).max(1) + u64::from(self.rng.chance(3)) * 1000
    }

    fn op(&mut self) -> PersistOp {
        let rng = &mut self.rng;
        let key = format!(
            "{}:{}",
            rng.pick(&["ISO14443", "Central", "eMAID"]),
            rng.below(6)
        );
        let meta_key = rng
            .pick(&["bootReason", "simMeter.1", "cleanShutdown", "ключ", ""])
            .to_owned();
        match rng.below(20) {
            0..=4 => {
                let seq = self.next_seq;
                // Sometimes skip numbers (discarded before being queued).
                self.next_seq += 1 + u64::from(self.rng.chance(10)) * 3;
                PersistOp::Enqueue(enqueue(&mut self.rng, seq))
            }
            5 => PersistOp::SetAttempts {
                queue_seq: self.existing_seq(),
                attempts: self.rng.below(10) as u32,
            },
            6..=8 => PersistOp::Remove {
                queue_seq: self.existing_seq(),
            },
            9 => PersistOp::MarkOffline {
                queue_seq: self.existing_seq(),
            },
            10 => {
                let delta_ms = self.rng.below(400_000_000_000) as i64 - 100_000_000_000;
                PersistOp::Rebase {
                    queue_seq: self.existing_seq(),
                    delta_ms,
                }
            }
            11 | 12 => {
                let id = format!("tx-{}", rng.below(6));
                PersistOp::PutTransaction(tx_record(rng, id))
            }
            13 => PersistOp::RemoveTransaction {
                tx_id: format!("tx-{}", rng.below(6)),
            },
            14 | 15 => PersistOp::PutCacheEntry(CacheEntry {
                key,
                info: json!({"status": rng.pick(&["Accepted", "Blocked"]), "groupIdToken": json_or_none(rng)}),
                expires_ms: rng.next() as i64,
                used_ms: rng.next() as i64 >> 8,
            }),
            16 => PersistOp::RemoveCacheEntry { key },
            17 if rng.chance(30) => PersistOp::ClearCache,
            17 | 18 => PersistOp::PutMeta {
                key: meta_key,
                value: rng.pick(TEXTS).to_owned(),
            },
            _ => PersistOp::DeleteMeta { key: meta_key },
        }
    }

    fn batch(&mut self) -> Vec<PersistOp> {
        let n = match self.rng.below(10) {
            0..=5 => 1 + self.rng.below(2),
            6..=8 => 2 + self.rng.below(4),
            _ => 5 + self.rng.below(20),
        };
        (0..n).map(|_| self.op()).collect()
    }
}

// ----- helpers -------------------------------------------------------------------------------

/// Every message (with payload) the store holds equals the memory journal's, and none other.
fn assert_same_messages(store: &Store, memory: &MemoryJournal, upto: u64, context: &str) {
    for seq in 0..=upto {
        assert_eq!(
            store.queued(seq).unwrap().as_ref(),
            memory.payload(seq),
            "{context}: queue_seq {seq}"
        );
    }
}

fn assert_journal_messages(journal: &Journal, memory: &MemoryJournal, upto: u64, context: &str) {
    for seq in 0..=upto {
        assert_eq!(
            journal.queued(seq).as_ref(),
            memory.payload(seq),
            "{context}: queue_seq {seq}"
        );
    }
}

fn read_meta_raw(path: &Path, key: &str) -> Option<String> {
    let conn =
        Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .ok()
}

fn files_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    found.sort();
    found
}

fn big_message(seq: u64, size: usize) -> QueuedMessage {
    let payload = json!({
        "eventType": "Updated",
        "timestamp": "2024-05-01T12:00:00.000Z",
        "seqNo": seq,
        "customData": {"vendorId": "test", "pad": "x".repeat(size)},
    });
    QueuedMessage {
        meta: QueuedMeta {
            protocol: ocpp_agent::ocpp::v201::PROTOCOL.to_owned(),
            queue_seq: seq,
            action: "TransactionEvent".into(),
            tx_id: Some("tx-big".into()),
            kind: EventKind::Updated,
            attempts: 0,
            bytes: payload.to_string().len() as u64,
            created_ms: 1_714_564_800_000,
            boot_id: 1,
            time_trusted: true,
        },
        payload,
    }
}

// ----- equivalence ---------------------------------------------------------------------------

#[test]
fn the_store_behaves_like_the_memory_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut total_ops = 0;
    let mut total_batches = 0;
    for seed in 0..24u64 {
        let path = dir.path().join(format!("equivalence-{seed}.db"));
        let mut store = Store::open(&path).unwrap();
        let mut memory = MemoryJournal::default();
        let mut ops = OpGen::new(seed);
        let batches = 60 + seed * 2;
        for b in 0..batches {
            let batch = ops.batch();
            total_ops += batch.len();
            total_batches += 1;
            store.apply(&batch).unwrap();
            memory.apply(&batch);
            let context = format!("seed {seed} batch {b}");
            assert_eq!(store.load().unwrap(), memory.load(), "{context}");
            if b % 5 == 0 {
                assert_same_messages(&store, &memory, ops.next_seq + 1, &context);
            }
            if b % 25 == 24 {
                drop(store);
                store = Store::open(&path).unwrap();
                assert_eq!(store.load().unwrap(), memory.load(), "{context} reopened");
            }
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.load().unwrap(),
            memory.load(),
            "seed {seed} at the end"
        );
        assert_same_messages(
            &store,
            &memory,
            ops.next_seq + 1000,
            &format!("seed {seed} end"),
        );
    }
    assert!(
        total_ops > 5000,
        "only {total_ops} ops in {total_batches} batches"
    );
}

/// The journal (store + overlay) gives the same results as the store alone when nothing goes
/// wrong, including its compaction-free path.
#[test]
fn the_journal_behaves_like_the_memory_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut journal = Journal::open(&path);
    assert_eq!(journal.load(), Persisted::default());
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(99);
    for b in 0..150 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
        if b % 10 == 0 {
            assert_eq!(journal.load(), memory.load(), "batch {b}");
            assert_journal_messages(&journal, &memory, ops.next_seq + 1, &format!("batch {b}"));
        }
    }
    assert!(!journal.stats().degraded);
    drop(journal);
    let mut journal = Journal::open(&path);
    assert_eq!(journal.load(), memory.load());
    assert_eq!(journal.stats().pending_batches, 0);
}

/// serde_json without its `float_roundtrip` feature parses some f64 one ULP off, so such a value
/// in a payload does not come back bit-for-bit from the file (the wire text differs in the last
/// digit). Run with `--ignored` once the feature is on.
#[test]
fn payload_floats_come_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("agent.db")).unwrap();
    let mut m = big_message(1, 0);
    m.payload["meterValue"] = json!([{"timestamp": "2024-05-01T12:00:00Z",
        "sampledValue": [{"value": 0.1 + 0.2}, {"value": 190.20000000000002}]}]);
    store.apply(&[PersistOp::Enqueue(m.clone())]).unwrap();
    assert_eq!(store.queued(1).unwrap(), Some(m));
}

// ----- atomicity -----------------------------------------------------------------------------

fn populated(path: &Path, seed: u64) -> (Store, MemoryJournal, OpGen) {
    let mut store = Store::open(path).unwrap();
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(seed);
    for _ in 0..30 {
        let batch = ops.batch();
        store.apply(&batch).unwrap();
        memory.apply(&batch);
    }
    (store, memory, ops)
}

#[test]
fn a_batch_whose_last_op_fails_leaves_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, memory, mut ops) = populated(&dir.path().join("agent.db"), 5);
    let before = store.load().unwrap();
    assert!(!before.queue.is_empty());
    store
        .test_connection()
        .execute_batch(
            "CREATE TEMP TRIGGER fail_cache BEFORE INSERT ON auth_cache
             BEGIN SELECT RAISE(ABORT, 'simulated failure'); END;",
        )
        .unwrap();
    let first = before.queue[0].queue_seq;
    let last = before.queue[before.queue.len() - 1].queue_seq;
    let mut batch = vec![
        PersistOp::Enqueue(enqueue(&mut ops.rng, ops.next_seq + 10)),
        PersistOp::SetAttempts {
            queue_seq: last,
            attempts: 77,
        },
        PersistOp::MarkOffline { queue_seq: last },
        PersistOp::Rebase {
            queue_seq: last,
            delta_ms: 5000,
        },
        PersistOp::Remove { queue_seq: first },
        PersistOp::PutTransaction(tx_record(&mut ops.rng, "tx-new".into())),
        PersistOp::RemoveTransaction {
            tx_id: "tx-1".into(),
        },
        PersistOp::ClearCache,
        PersistOp::PutMeta {
            key: "k".into(),
            value: "v".into(),
        },
        PersistOp::DeleteMeta {
            key: "bootReason".into(),
        },
    ];
    batch.push(PersistOp::PutCacheEntry(CacheEntry {
        key: "ISO14443:new".into(),
        info: json!({"status": "Accepted"}),
        expires_ms: 1,
        used_ms: 1,
    }));
    let err = store.apply(&batch).unwrap_err();
    assert!(err.message.contains("simulated failure"), "{err}");
    assert_eq!(store.load().unwrap(), before);
    assert_same_messages(&store, &memory, ops.next_seq + 20, "after the failed batch");
    // The same batch without its failing op goes through whole.
    batch.pop();
    store.apply(&batch).unwrap();
    let mut expected = memory.clone();
    expected.apply(&batch);
    assert_eq!(store.load().unwrap(), expected.load());
}

#[test]
fn a_batch_that_fills_the_disk_half_way_leaves_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, memory, ops) = populated(&dir.path().join("agent.db"), 6);
    let before = store.load().unwrap();
    let conn = store.test_connection();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let limit: i64 = conn
        .query_row(&format!("PRAGMA max_page_count = {}", pages + 4), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(limit, pages + 4);
    // 40 messages of 3 KB need ~40 pages: the first few fit, then the disk is "full".
    let batch: Vec<PersistOp> = (0..40)
        .map(|i| PersistOp::Enqueue(big_message(ops.next_seq + 100 + i, 3000)))
        .chain([PersistOp::PutMeta {
            key: "after".into(),
            value: "1".into(),
        }])
        .collect();
    let err = store.apply(&batch).unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Disk, "{err}");
    assert!(err.message.contains("full"), "{err}");
    assert_eq!(store.load().unwrap(), before);
    assert_same_messages(
        &store,
        &memory,
        ops.next_seq + 200,
        "after the failed batch",
    );
    drop(store);
    let store = Store::open(&dir.path().join("agent.db")).unwrap();
    assert_eq!(store.load().unwrap(), before, "after reopening");
}

// ----- a real crash --------------------------------------------------------------------------

const CRASH_ENV: &str = "OCPP_AGENT_JOURNAL_CRASH_CHILD";

/// Batch number `i` of the crash test: a pure function of `i`, so the parent can replay it.
fn crash_batch(i: u64) -> Vec<PersistOp> {
    let mut rng = Rng::new(1_000_000 + i);
    let mut batch = Vec::new();
    // Some batches are large (many pages), to widen the window of a commit.
    let messages = if i % 7 == 3 { 30 } else { 1 };
    for k in 0..messages {
        batch.push(PersistOp::Enqueue(enqueue(&mut rng, i * 100 + k + 1)));
    }
    batch.push(PersistOp::PutTransaction(tx_record(
        &mut rng,
        format!("tx-{}", i % 3),
    )));
    if i >= 2 {
        batch.push(PersistOp::Remove {
            queue_seq: (i - 2) * 100 + 1,
        });
        batch.push(PersistOp::MarkOffline {
            queue_seq: (i - 1) * 100 + 1,
        });
    }
    if i % 5 == 0 {
        batch.push(PersistOp::RemoveTransaction {
            tx_id: format!("tx-{}", (i + 1) % 3),
        });
    }
    batch.push(PersistOp::PutMeta {
        key: "progress".into(),
        value: i.to_string(),
    });
    batch
}

/// Not a test on its own: the body of the child process of `survives_sigkill_at_random_moments`
/// (selected by an environment variable; without it, it does nothing).
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let mut store = Store::open(Path::new(&path)).unwrap();
    let start = store
        .get_meta("progress")
        .unwrap()
        .map_or(0, |p| p.parse::<u64>().unwrap() + 1);
    let mut i = start;
    loop {
        store.apply(&crash_batch(i)).unwrap();
        println!("committed {i}");
        i += 1;
    }
}

#[test]
fn survives_sigkill_at_random_moments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(std::process::id() as u64);
    let mut previous = None;
    for round in 0..15 {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let wanted = 1 + rng.below(25);
        let mut reported = None;
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(i) = line.strip_prefix("committed ") {
                reported = Some(i.parse::<u64>().unwrap());
                seen += 1;
                if seen == wanted {
                    break;
                }
            }
        }
        // A random moment after the last report: mid-commit, mid-statement, mid-fsync...
        std::thread::sleep(std::time::Duration::from_micros(rng.below(4000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let reported =
            reported.unwrap_or_else(|| panic!("round {round}: the child reported nothing"));

        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        let progress: u64 = loaded
            .meta("progress")
            .expect("progress is committed")
            .parse()
            .unwrap();
        assert!(
            progress >= reported,
            "round {round}: batch {reported} was reported committed, the file has {progress}"
        );
        assert!(previous.is_none_or(|p| progress > p));
        previous = Some(progress);
        let mut expected = MemoryJournal::default();
        for i in 0..=progress {
            expected.apply(&crash_batch(i));
        }
        assert_eq!(loaded, expected.load(), "round {round}: batch {progress}");
        assert_same_messages(
            &store,
            &expected,
            (progress + 2) * 100,
            &format!("round {round}"),
        );
        eprintln!("round {round}: killed after {reported} reported, {progress} on disk");
    }
}

// ----- migrations ----------------------------------------------------------------------------

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_meta() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;
             INSERT INTO meta (key, value) VALUES ('bootReason', 'RemoteReset');
             PRAGMA user_version=1;",
        )
        .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 2) };
    assert_eq!(
        store.get_meta("bootReason").unwrap().as_deref(),
        Some("RemoteReset")
    );
    // The new tables work.
    let mut memory = MemoryJournal::default();
    memory.apply(&[PersistOp::PutMeta {
        key: "bootReason".into(),
        value: "RemoteReset".into(),
    }]);
    let mut ops = OpGen::new(3);
    for _ in 0..20 {
        let batch = ops.batch();
        store.apply(&batch).unwrap();
        memory.apply(&batch);
    }
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), memory.load());

    // The journal opens a version 1 file the same way.
    let v1 = dir.path().join("v1.db");
    {
        let conn = Connection::open(&v1).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;
             INSERT INTO meta (key, value) VALUES ('k', 'v');
             PRAGMA user_version=1;",
        )
        .unwrap();
    }
    let mut journal = Journal::open(&v1);
    assert!(!journal.stats().degraded);
    assert_eq!(journal.load().meta, vec![("k".to_owned(), "v".to_owned())]);
}

/// The tables of schema version 2 as the 7600d0d release wrote them (tests/fixtures/README.md):
/// the store's own first two migrations, with `queue.kind` checked against OCPP 2.0.1 eventType
/// names and no protocol column.
fn v2_schema() -> String {
    MIGRATIONS[..2].join("\n")
}

/// Writes `state` into a new version 2 file, row by row, the way that release stored it (queued
/// messages inserted newest first: the order must come from queue_seq, not from the insertion).
fn write_v2(path: &Path, schema: &str, state: &MemoryJournal) {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(schema).unwrap();
    for m in state.queue.iter().rev() {
        let q = &m.meta;
        tx.execute(
            "INSERT INTO queue (queue_seq, action, tx_id, kind, attempts, bytes, created_ms,
                                boot_id, time_trusted, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                q.queue_seq as i64,
                q.action,
                q.tx_id,
                q.kind.as_str(),
                q.attempts,
                q.bytes as i64,
                q.created_ms,
                q.boot_id as i64,
                q.time_trusted,
                m.payload.to_string(),
            ],
        )
        .unwrap();
    }
    tx.execute(
        "UPDATE queue_state SET last_queue_seq = ?1",
        [state.last_queue_seq as i64],
    )
    .unwrap();
    let json_opt = |v: &Option<Value>| v.as_ref().map(Value::to_string);
    for (ord, t) in state.transactions.iter().enumerate() {
        tx.execute(
            "INSERT INTO open_tx (tx_id, ord, evse, connector, next_seq_no, started_ms, id_token,
                                  group_id_token, authorized, remote_start_id, last_meter,
                                  ended_meter_values, meter_start_wh, charging_state,
                                  evse_reported)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            rusqlite::params![
                t.tx_id,
                ord as i64 + 1,
                t.evse,
                t.connector,
                t.next_seq_no as i64,
                t.started_ms,
                json_opt(&t.id_token),
                json_opt(&t.group_id_token),
                t.authorized,
                t.remote_start_id,
                json_opt(&t.last_meter),
                Value::from(t.ended_meter_values.clone()).to_string(),
                t.meter_start_wh,
                t.charging_state,
                t.evse_reported,
            ],
        )
        .unwrap();
    }
    for e in &state.auth_cache {
        tx.execute(
            "INSERT INTO auth_cache (key, info, expires_ms, used_ms) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![e.key, e.info.to_string(), e.expires_ms, e.used_ms],
        )
        .unwrap();
    }
    for (key, value) in &state.meta {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            rusqlite::params![key, value],
        )
        .unwrap();
    }
    tx.pragma_update(None, "user_version", 2).unwrap();
    tx.commit().unwrap();
}

/// A state with queued messages of every kind, transactions, cache entries and meta.
fn varied_state(seed: u64) -> MemoryJournal {
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(seed);
    for _ in 0..300 {
        memory.apply(&ops.batch());
    }
    for kind in [
        EventKind::Started,
        EventKind::Updated,
        EventKind::Ended,
        EventKind::Other,
    ] {
        assert!(
            memory.queue.iter().any(|m| m.meta.kind == kind),
            "seed {seed}: no {kind:?} queued"
        );
    }
    assert!(memory.queue.len() > 20 && !memory.transactions.is_empty());
    assert!(!memory.auth_cache.is_empty() && !memory.meta.is_empty());
    memory
}

/// Every statement of the schema, as SQLite keeps it.
fn schema_text(conn: &Connection) -> String {
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .join("\n")
}

#[test]
fn a_version_2_database_is_migrated_in_place_keeping_every_row_and_its_order() {
    const { assert!(SCHEMA_VERSION == 3) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let memory = varied_state(11);
    write_v2(&path, &v2_schema(), &memory);

    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.load().unwrap(), memory.load());
    assert_eq!(
        store.messages().unwrap(),
        memory.queue,
        "payloads, in FIFO order"
    );
    assert_same_messages(&store, &memory, memory.last_queue_seq + 1, "migrated");
    store.quick_check().unwrap();
    {
        let conn = store.test_connection();
        // The schema names no OCPP value any more: the queue is opaque.
        let schema = schema_text(conn);
        for name in [
            "Started",
            "Updated",
            "Ended",
            "'Other'",
            "Transaction",
            "ocpp",
        ] {
            assert!(!schema.contains(name), "{name} in the schema:\n{schema}");
        }
        let protocols: Vec<(String, i64)> = conn
            .prepare("SELECT protocol, COUNT(*) FROM queue GROUP BY protocol")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            protocols,
            vec![(
                ocpp_agent::shell::store::QUEUE_PROTOCOL.to_owned(),
                memory.queue.len() as i64
            )],
            "every message of a version 2 file was an OCPP 2.0.1 one"
        );
        // Nothing of the rebuild is left behind.
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            ["auth_cache", "meta", "open_tx", "queue", "queue_state"]
        );
    }

    // The migrated file goes on like a new one.
    let mut memory = memory;
    let mut ops = OpGen::new(12);
    ops.next_seq = memory.last_queue_seq + 1;
    for _ in 0..100 {
        let batch = ops.batch();
        store.apply(&batch).unwrap();
        memory.apply(&batch);
    }
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), memory.load());
    assert_same_messages(&store, &memory, ops.next_seq + 1, "after more batches");

    // The journal opens a version 2 file the same way.
    let path = dir.path().join("journal.db");
    let memory = varied_state(13);
    write_v2(&path, &v2_schema(), &memory);
    let mut journal = Journal::open(&path);
    assert!(!journal.stats().degraded);
    assert_eq!(journal.load(), memory.load());
    assert_journal_messages(&journal, &memory, memory.last_queue_seq + 1, "journal");
}

#[test]
fn a_version_2_file_on_a_read_only_file_system_is_loaded_then_migrated_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut memory = varied_state(31);
    write_v2(&path, &v2_schema(), &memory);
    let mut journal = Journal::open_read_only_for_tests(&path);
    assert!(journal.stats().degraded);
    assert!(journal.test_store().unwrap().is_read_only());
    assert_eq!(journal.test_store().unwrap().schema_version().unwrap(), 2);
    assert_eq!(
        journal.load(),
        memory.load(),
        "the previous release's state"
    );
    assert_journal_messages(&journal, &memory, memory.last_queue_seq + 1, "read-only v2");
    let mut ops = OpGen::new(32);
    ops.next_seq = memory.last_queue_seq + 1;
    for _ in 0..20 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
    }
    assert_journal_messages(
        &journal,
        &memory,
        ops.next_seq + 1,
        "read-only v2 + pending",
    );
    // Writable again: migrated, then the pending batches written.
    journal.retry();
    let stats = journal.stats();
    assert!(!stats.degraded && stats.pending_batches == 0, "{stats:?}");
    drop(journal);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.load().unwrap(), memory.load());
    assert_same_messages(&store, &memory, ops.next_seq + 1, "migrated");
}

#[test]
fn a_migration_that_fails_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut memory = varied_state(21);
    // A row with a kind that has no role (a hand-edited file: the v2 CHECK is left out so that
    // it can be written). It comes after other rows: the rebuild has copied some when it fails.
    let schema = v2_schema().replace(
        "CHECK (kind IN ('Started', 'Updated', 'Ended', 'Other'))",
        "",
    );
    write_v2(&path, &schema, &memory);
    let last = memory.queue.last().unwrap().meta.queue_seq;
    let read_queue = |path: &Path| -> Vec<(i64, String, String)> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT queue_seq, kind, payload FROM queue ORDER BY queue_seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE queue SET kind = 'Bogus' WHERE queue_seq = ?1",
            [last as i64],
        )
        .unwrap();
    }
    let before = read_queue(&path);

    let err = Store::open(&path).err().expect("the migration must fail");
    assert!(err.message.contains("migration 3"), "{err}");
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "the version is not bumped");
    assert!(
        schema_text(&conn).contains("kind"),
        "the old queue table is there"
    );
    drop(conn);
    assert_eq!(read_queue(&path), before, "every row as it was");

    // Once the row is readable, the same file migrates.
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE queue SET kind = 'Other' WHERE queue_seq = ?1",
            [last as i64],
        )
        .unwrap();
    memory.queue.last_mut().unwrap().meta.kind = EventKind::Other;
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), memory.load());
    assert_eq!(store.messages().unwrap(), memory.queue);
}

#[test]
fn a_database_from_a_newer_agent_is_refused_and_the_journal_sets_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    Store::open(&path).unwrap().set_meta("k", "v").unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION as i64 + 1)
        .unwrap();
    let err = Store::open(&path).err().unwrap();
    assert_eq!(err.kind, StoreErrorKind::Newer);
    assert!(err.message.contains("newer ocpp-agent"), "{err}");

    let mut journal = Journal::open(&path);
    assert!(!journal.stats().degraded);
    assert_eq!(journal.load(), Persisted::default());
    let aside = files_named(dir.path(), "agent.db.newer-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(read_meta_raw(&aside[0], "k").as_deref(), Some("v"));
}

// ----- a disk in trouble ---------------------------------------------------------------------

/// Runs the common scenario: a journal working, then `break_it` makes writes fail; batches keep
/// coming (and must stay usable from memory, in order); `fix_it` repairs the disk and `retry()`
/// writes everything.
fn trouble_scenario(
    seed: u64,
    break_it: impl Fn(&Journal),
    fix_it: impl Fn(&Journal),
    error_contains: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut journal = Journal::open(&path);
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(seed);
    for _ in 0..20 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
    }
    assert!(!journal.stats().degraded);

    break_it(&journal);
    // Large messages so that a full disk is hit at once.
    let mut n = 0;
    while !journal.stats().degraded {
        let batch = vec![PersistOp::Enqueue(big_message(ops.next_seq, 3000))];
        ops.next_seq += 1;
        journal.apply(&batch);
        memory.apply(&batch);
        n += 1;
        assert!(n < 50, "the journal never noticed the trouble");
    }
    let stats = journal.stats();
    assert!(stats.pending_batches == 1, "{stats:?}");
    assert!(
        stats
            .last_error
            .as_deref()
            .unwrap()
            .contains(error_contains),
        "{stats:?}"
    );
    // Batches keep coming; a small one that would fit on disk must still wait its turn.
    journal.apply(&[PersistOp::PutMeta {
        key: "after".into(),
        value: "1".into(),
    }]);
    memory.apply(&[PersistOp::PutMeta {
        key: "after".into(),
        value: "1".into(),
    }]);
    for b in 0..60 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
        if b % 10 == 0 {
            assert_journal_messages(
                &journal,
                &memory,
                ops.next_seq + 1,
                &format!("degraded {b}"),
            );
        }
    }
    let stats = journal.stats();
    assert!(stats.degraded && stats.pending_batches > 30, "{stats:?}");
    assert!(stats.pending_bytes > 3000 && !stats.over_bound, "{stats:?}");
    assert_eq!(
        read_meta_raw(&path, "after"),
        None,
        "written before earlier batches"
    );
    assert_journal_messages(&journal, &memory, ops.next_seq + 1, "degraded");
    assert_eq!(journal.load(), memory.load());

    // Retrying while the disk is still in trouble changes nothing.
    journal.retry();
    assert!(journal.stats().degraded);
    assert_eq!(read_meta_raw(&path, "after"), None);

    fix_it(&journal);
    journal.retry();
    let stats = journal.stats();
    assert!(!stats.degraded && stats.pending_batches == 0, "{stats:?}");
    assert_eq!(read_meta_raw(&path, "after").as_deref(), Some("1"));
    assert_eq!(journal.load(), memory.load());
    assert_journal_messages(&journal, &memory, ops.next_seq + 1, "recovered");

    // And it is back to writing through.
    let batch = ops.batch();
    journal.apply(&batch);
    memory.apply(&batch);
    assert_eq!(journal.stats().pending_batches, 0);
    drop(journal);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), memory.load());
    assert_same_messages(&store, &memory, ops.next_seq + 1, "reopened");
}

fn conn(journal: &Journal) -> &Connection {
    journal.test_store().unwrap().test_connection()
}

#[test]
fn disk_full_keeps_batches_in_memory_and_flushes_them_in_order() {
    trouble_scenario(
        11,
        |j| {
            let pages: i64 = conn(j)
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            conn(j)
                .execute_batch(&format!("PRAGMA max_page_count = {pages}"))
                .unwrap();
        },
        |j| {
            conn(j)
                .execute_batch("PRAGMA max_page_count = 1000000")
                .unwrap()
        },
        "full",
    );
}

#[test]
fn read_only_database_keeps_batches_in_memory_and_flushes_them_in_order() {
    trouble_scenario(
        12,
        |j| conn(j).execute_batch("PRAGMA query_only = ON").unwrap(),
        |j| conn(j).execute_batch("PRAGMA query_only = OFF").unwrap(),
        "readonly",
    );
}

#[test]
fn a_read_only_file_system_at_start_still_loads_and_sends_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let (store, mut memory, mut ops) = populated(&path, 21);
    drop(store);
    let mut journal = Journal::open_read_only_for_tests(&path);
    let stats = journal.stats();
    assert!(stats.degraded, "{stats:?}");
    assert!(journal.test_store().unwrap().is_read_only());
    assert_eq!(journal.load(), memory.load());
    assert_journal_messages(&journal, &memory, ops.next_seq + 1, "read-only");
    for _ in 0..30 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
    }
    assert_eq!(journal.stats().pending_batches, 30);
    assert_journal_messages(&journal, &memory, ops.next_seq + 1, "read-only + pending");
    assert_eq!(journal.load(), memory.load());
    // The file system is writable again.
    journal.retry();
    let stats = journal.stats();
    assert!(!stats.degraded && stats.pending_batches == 0, "{stats:?}");
    assert!(!journal.test_store().unwrap().is_read_only());
    assert_eq!(journal.load(), memory.load());
    drop(journal);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), memory.load());
    assert_same_messages(&store, &memory, ops.next_seq + 1, "reopened");
}

#[test]
fn a_path_that_cannot_be_created_runs_from_memory_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: not even root can create the database.
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, b"").unwrap();
    let path = blocker.join("agent.db");
    let mut journal = Journal::open(&path);
    let stats = journal.stats();
    assert!(
        stats.degraded && journal.test_store().is_none(),
        "{stats:?}"
    );
    assert_eq!(journal.load(), Persisted::default());
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(31);
    for _ in 0..40 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
    }
    assert_journal_messages(&journal, &memory, ops.next_seq + 1, "memory only");
    assert_eq!(journal.load(), memory.load());
    journal.retry();
    assert!(journal.stats().degraded);

    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    journal.retry();
    let stats = journal.stats();
    assert!(!stats.degraded && stats.pending_batches == 0, "{stats:?}");
    assert_eq!(journal.load(), memory.load());
    drop(journal);
    assert_eq!(Store::open(&path).unwrap().load().unwrap(), memory.load());
}

#[test]
fn a_file_found_later_with_a_state_the_agent_never_read_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("state");
    std::fs::write(&blocker, b"").unwrap();
    let path = blocker.join("agent.db");
    let mut journal = Journal::open(&path);
    assert_eq!(journal.load(), Persisted::default());
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(41);
    for _ in 0..10 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
    }
    // The directory comes back (a late mount) with an old state in it.
    std::fs::remove_file(&blocker).unwrap();
    let (old, _, _) = populated(&path, 42);
    drop(old);
    journal.retry();
    assert!(!journal.stats().degraded);
    assert_eq!(journal.load(), memory.load());
    assert_eq!(files_named(&blocker, "agent.db.unread-").len(), 1);
}

#[test]
fn a_corrupt_file_is_moved_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let garbage = b"SQLite format 2\0 but really just garbage bytes, repeated ".repeat(200);
    std::fs::write(&path, &garbage).unwrap();
    // A WAL next to it must not be replayed into the new file.
    let wal_bytes = b"stale write-ahead log".repeat(100);
    std::fs::write(dir.path().join("agent.db-wal"), &wal_bytes).unwrap();
    let mut journal = Journal::open(&path);
    let stats = journal.stats();
    assert!(!stats.degraded, "{stats:?}");
    assert_eq!(journal.load(), Persisted::default());
    let aside = files_named(dir.path(), "agent.db.corrupt-");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    // SQLite itself removes a WAL it cannot use when the connection closes; if one is left, it
    // went aside with the file.
    assert!(aside.len() <= 2, "{aside:?}");
    if let Some(wal) = aside.get(1) {
        assert!(wal.to_string_lossy().ends_with("-wal"), "{aside:?}");
        assert_eq!(std::fs::read(wal).unwrap(), wal_bytes);
    }
    let corrupt_files = aside.len();
    // The new file works and is durable.
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(51);
    for _ in 0..10 {
        let batch = ops.batch();
        journal.apply(&batch);
        memory.apply(&batch);
    }
    drop(journal);
    let mut journal = Journal::open(&path);
    assert_eq!(journal.load(), memory.load());
    assert_eq!(
        files_named(dir.path(), "agent.db.corrupt-").len(),
        corrupt_files
    );
}

#[test]
fn a_malformed_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    {
        let mut store = Store::open(&path).unwrap();
        let batch: Vec<PersistOp> = (1..=200)
            .map(|i| PersistOp::Enqueue(big_message(i, 500)))
            .collect();
        store.apply(&batch).unwrap();
    }
    // Clobber pages in the middle of the file (the schema on page 1 stays readable).
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8 * 4096);
    for b in &mut bytes[3 * 4096..6 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let mut journal = Journal::open(&path);
    assert!(!journal.stats().degraded);
    assert_eq!(journal.load(), Persisted::default());
    let aside = files_named(dir.path(), "agent.db.corrupt-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::metadata(&aside[0]).unwrap().len(),
        bytes.len() as u64
    );
    // The new file works.
    journal.apply(&[PersistOp::Enqueue(big_message(1, 10))]);
    drop(journal);
    assert_eq!(Journal::open(&path).load().queue.len(), 1);
}

/// A file whose free-list is clobbered: the integrity check fails, but every table still reads.
fn corrupt_free_list(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let page_size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let trunk = u32::from_be_bytes(bytes[32..36].try_into().unwrap()) as usize;
    let free = u32::from_be_bytes(bytes[36..40].try_into().unwrap());
    assert!(trunk > 1 && free > 10, "trunk {trunk}, {free} free pages");
    bytes[(trunk - 1) * page_size..trunk * page_size].fill(0xA5);
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn a_corrupt_file_whose_content_still_reads_is_salvaged_into_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let (mut store, mut memory, mut ops) = populated(&path, 61);
    // Fill and empty the queue: its pages go to the free list.
    let fill: Vec<PersistOp> = (0..200)
        .map(|i| PersistOp::Enqueue(big_message(ops.next_seq + i, 1500)))
        .collect();
    let empty: Vec<PersistOp> = (0..200)
        .map(|i| PersistOp::Remove {
            queue_seq: ops.next_seq + i,
        })
        .collect();
    ops.next_seq += 200;
    for batch in [fill, empty] {
        store.apply(&batch).unwrap();
        memory.apply(&batch);
    }
    drop(store);
    corrupt_free_list(&path);
    let err = Store::open(&path).unwrap().quick_check().unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Corrupt, "{err}");

    let mut journal = Journal::open(&path);
    let stats = journal.stats();
    assert!(!stats.degraded && stats.pending_batches == 0, "{stats:?}");
    assert_eq!(files_named(dir.path(), "agent.db.corrupt-").len(), 1);
    assert_eq!(journal.load(), memory.load());
    assert_journal_messages(&journal, &memory, ops.next_seq + 1, "salvaged");
    drop(journal);
    let store = Store::open(&path).unwrap();
    store.quick_check().unwrap();
    assert_eq!(store.load().unwrap(), memory.load());
    assert_same_messages(&store, &memory, ops.next_seq + 1, "salvaged, reopened");
}

/// `release_memory` gives the page cache back (issue 13: the agent idles with none cached), and
/// the store works on as before: later writes and reads see every page they need.
#[test]
fn released_page_cache_is_given_back_and_the_store_works_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let mut store = Store::open(&path).unwrap();
    let mut memory = MemoryJournal::default();
    let mut ops = OpGen::new(5);
    for _ in 0..200 {
        let batch = ops.batch();
        store.apply(&batch).unwrap();
        memory.apply(&batch);
    }
    // Reads every page of the file into the cache (what the agent does at start).
    store.quick_check().unwrap();
    // SAFETY: reads SQLite's process-wide allocation counter (nextest: one test per process).
    let used = || unsafe { rusqlite::ffi::sqlite3_memory_used() };
    let before = used();
    store.release_memory();
    let after = used();
    assert!(
        before - after >= 8 * 4096,
        "the cached pages were freed: {before} -> {after} bytes"
    );
    for _ in 0..20 {
        let batch = ops.batch();
        store.apply(&batch).unwrap();
        memory.apply(&batch);
        store.release_memory();
    }
    assert_eq!(store.load().unwrap(), memory.load());
    drop(store);
    assert_eq!(Store::open(&path).unwrap().load().unwrap(), memory.load());
}
