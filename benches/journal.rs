//! Journal benchmark: durable TransactionEvents per second through `Store::apply`, against a bare
//! rusqlite loop doing one INSERT + COMMIT per row with the same pragmas (WAL, synchronous=FULL);
//! the ratio is the journal's overhead over the physical cost of one fsync'ed commit. Also the
//! time to load a queue of 10,000 messages.
//!
//! `cargo bench --bench journal`; `JOURNAL_BENCH_EVENTS` (default 500) events per round,
//! `JOURNAL_BENCH_ROUNDS` (default 7) rounds, medians reported. The files go to
//! `JOURNAL_BENCH_DIR`, by default cargo's target tmp dir (a real disk, not tmpfs: fsync on tmpfs
//! costs nothing and the figures would mean nothing).

mod common;
use common::env_usize;

use ocpp_agent::ocpp::persist::{EventKind, PersistOp, QueuedMessage, QueuedMeta, TxRecord};
use ocpp_agent::shell::journal::Journal;
use ocpp_agent::shell::store::Store;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A TransactionEvent Updated as the core queues it (about 600 bytes of JSON).
fn updated_event(seq_no: u64, energy_wh: f64) -> Value {
    json!({
        "eventType": "Updated",
        "timestamp": "2024-05-01T12:34:56.789Z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {
            "transactionId": "7f3c2a1e-5b4d-4c3a-9e8f-0123456789ab",
            "chargingState": "Charging",
            "timeSpentCharging": seq_no * 60,
        },
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{
            "timestamp": "2024-05-01T12:34:56.000Z",
            "sampledValue": [
                {"value": energy_wh, "context": "Sample.Periodic",
                 "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                 "unitOfMeasure": {"unit": "Wh", "multiplier": 0}},
                {"value": 7360.0, "context": "Sample.Periodic",
                 "measurand": "Power.Active.Import",
                 "unitOfMeasure": {"unit": "W", "multiplier": 0}},
            ],
        }],
    })
}

fn last_meter(energy_wh: f64) -> Value {
    json!({
        "timestamp": "2024-05-01T12:34:56.000Z",
        "sampledValue": [{"value": energy_wh, "context": "Sample.Periodic",
                          "measurand": "Energy.Active.Import.Register",
                          "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}],
    })
}

/// What the core emits per TransactionEvent: the message and the transaction's advanced seqNo,
/// in one batch.
fn event_batch(queue_seq: u64) -> Vec<PersistOp> {
    let energy = 12_000.0 + queue_seq as f64 * 12.5;
    let payload = updated_event(queue_seq, energy);
    let meta = QueuedMeta {
        protocol: ocpp_agent::ocpp::v201::PROTOCOL.to_owned(),
        queue_seq,
        action: "TransactionEvent".into(),
        tx_id: Some("7f3c2a1e-5b4d-4c3a-9e8f-0123456789ab".into()),
        kind: EventKind::Updated,
        attempts: 0,
        bytes: payload.to_string().len() as u64,
        created_ms: 1_714_566_896_789,
        boot_id: 0x9E37_79B9_7F4A_7C15,
        time_trusted: true,
    };
    let record = TxRecord {
        tx_id: "7f3c2a1e-5b4d-4c3a-9e8f-0123456789ab".into(),
        evse: 1,
        connector: Some(1),
        next_seq_no: queue_seq + 1,
        started_ms: 1_714_560_000_000,
        id_token: Some(json!({"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"})),
        group_id_token: None,
        authorized: true,
        remote_start_id: None,
        last_meter: Some(last_meter(energy)),
        ended_meter_values: vec![last_meter(12_000.0), last_meter(energy)],
        meter_start_wh: 12_000.0,
        charging_state: "Charging".into(),
        evse_reported: true,
    };
    vec![
        PersistOp::Enqueue(QueuedMessage { meta, payload }),
        PersistOp::PutTransaction(record),
    ]
}

/// The journal's side: `Store::apply` of the core's batches.
struct Ours {
    store: Store,
    batches: std::vec::IntoIter<Vec<PersistOp>>,
}

impl Ours {
    fn new(path: &Path, events: usize) -> Self {
        let mut store = Store::open(path).expect("open the store");
        store.apply(&event_batch(0)).unwrap(); // warm the statement cache
        // Batches are built by the core before they reach the journal: not timed.
        let batches: Vec<Vec<PersistOp>> = (1..=events as u64).map(event_batch).collect();
        Ours {
            store,
            batches: batches.into_iter(),
        }
    }

    fn run(&mut self, n: usize) -> f64 {
        let slice: Vec<Vec<PersistOp>> = self.batches.by_ref().take(n).collect();
        let start = Instant::now();
        for batch in &slice {
            self.store.apply(batch).expect("apply");
        }
        start.elapsed().as_secs_f64()
    }
}

/// The bare side: one INSERT of a comparable row (same payload, same kind of columns) and one
/// COMMIT per row, prepared statement, same pragmas.
struct Bare {
    conn: Connection,
    rows: std::vec::IntoIter<(i64, String)>,
}

impl Bare {
    fn new(path: &Path, events: usize) -> Self {
        let conn = Connection::open(path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE events (seq INTEGER PRIMARY KEY NOT NULL, action TEXT NOT NULL,
                                  tx_id TEXT, kind TEXT NOT NULL, attempts INTEGER NOT NULL,
                                  bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                                  payload TEXT NOT NULL) STRICT;",
        )
        .unwrap();
        let rows: Vec<(i64, String)> = (1..=events as u64)
            .map(|i| {
                let payload = updated_event(i, 12_000.0 + i as f64 * 12.5).to_string();
                (i as i64, payload)
            })
            .collect();
        Bare {
            conn,
            rows: rows.into_iter(),
        }
    }

    fn run(&mut self, n: usize) -> f64 {
        let slice: Vec<(i64, String)> = self.rows.by_ref().take(n).collect();
        let start = Instant::now();
        for (seq, payload) in &slice {
            let tx = self.conn.transaction().unwrap();
            tx.prepare_cached(
                "INSERT INTO events (seq, action, tx_id, kind, attempts, bytes, created_ms,
                                     payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap()
            .execute(params![
                seq,
                "TransactionEvent",
                "7f3c2a1e-5b4d-4c3a-9e8f-0123456789ab",
                "Updated",
                0,
                payload.len() as i64,
                1_714_566_896_789i64,
                payload,
            ])
            .unwrap();
            tx.commit().unwrap();
        }
        start.elapsed().as_secs_f64()
    }
}

/// One round: both sides on fresh files, interleaved event by event (alternating which goes
/// first) so that both see the same disk: this machine's disk is shared with other work and its
/// fsync time drifts by a factor of ten. Returns seconds per event (ours, bare).
fn round(dir: &Path, round: usize, events: usize, synchronous: &str) -> (f64, f64) {
    let ours_path = dir.join(format!("ours-{round}.db"));
    let bare_path = dir.join(format!("bare-{round}.db"));
    let mut ours = Ours::new(&ours_path, events);
    let mut bare = Bare::new(&bare_path, events);
    let pragma = format!("PRAGMA synchronous={synchronous}");
    ours.store.test_connection().execute_batch(&pragma).unwrap();
    bare.conn.execute_batch(&pragma).unwrap();
    let (mut t_ours, mut t_bare) = (0.0, 0.0);
    for k in 0..events {
        if (k + round) % 2 == 0 {
            t_ours += ours.run(1);
            t_bare += bare.run(1);
        } else {
            t_bare += bare.run(1);
            t_ours += ours.run(1);
        }
    }
    drop((ours, bare));
    remove_db(&ours_path);
    remove_db(&bare_path);
    (t_ours / events as f64, t_bare / events as f64)
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The mount holding `dir`: (mount point, type, source), from /proc/self/mountinfo.
fn filesystem_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?.to_owned();
            let mut right = right.split(' ');
            let fstype = right.next()?.to_owned();
            let source = right.next()?.to_owned();
            dir.starts_with(&mount_point)
                .then_some((mount_point, fstype, source))
        })
        .max_by_key(|(mount_point, _, _)| mount_point.len())
}

fn main() {
    let Some(quick) = common::harness("journal") else {
        return;
    };
    let events = env_usize("JOURNAL_BENCH_EVENTS", if quick { 20 } else { 500 });
    let rounds = env_usize("JOURNAL_BENCH_ROUNDS", if quick { 1 } else { 7 });
    let queue = env_usize("JOURNAL_BENCH_QUEUE", if quick { 500 } else { 10_000 }) as u64;
    let base = std::env::var_os("JOURNAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("journal-bench-")
        .tempdir_in(&base)
        .unwrap();
    match filesystem_of(dir.path()) {
        Some((mount_point, fstype, source)) => {
            println!(
                "files in {} ({fstype} on {source}, mounted at {mount_point})",
                dir.path().display()
            );
            if fstype == "tmpfs" || fstype == "ramfs" {
                println!("WARNING: {fstype} does not fsync: set JOURNAL_BENCH_DIR to a real disk");
            }
        }
        None => println!("files in {} (file system unknown)", dir.path().display()),
    }
    println!("{rounds} rounds of {events} events (median of rounds), WAL, synchronous=FULL");

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for round_no in 0..rounds {
        let (o, b) = round(dir.path(), round_no, events, "FULL");
        println!(
            "  round {round_no}: journal {:8.0} events/s   bare {:8.0} rows/s   ratio {:.3}",
            1.0 / o,
            1.0 / b,
            o / b
        );
        ours.push(o);
        bare.push(b);
    }
    let (o, b) = (median(ours.clone()), median(bare.clone()));
    let ratios: Vec<f64> = ours.iter().zip(&bare).map(|(o, b)| o / b).collect();
    println!(
        "(a) journal (Store::apply, Enqueue ~{} B + PutTransaction per batch): {:.0} durable TransactionEvents/s ({:.3} ms each)",
        updated_event(1, 12_012.5).to_string().len(),
        1.0 / o,
        o * 1e3
    );
    println!(
        "(b) bare rusqlite, one INSERT + COMMIT per row:                  {:.0} rows/s ({:.3} ms each)",
        1.0 / b,
        b * 1e3
    );
    println!(
        "(c) ratio journal/bare (time per event): {:.3} (medians), {:.3} (median of per-round ratios); target <= 1.2",
        o / b,
        median(ratios)
    );

    // (d) Loading a queue of 10,000 messages.
    let path = dir.path().join("load.db");
    {
        let mut store = Store::open(&path).unwrap();
        let ops: Vec<PersistOp> = (1..=queue)
            .flat_map(|i| event_batch(i).into_iter().take(1))
            .collect();
        store.apply(&ops).unwrap();
    }
    let mut load_times = Vec::new();
    let mut open_times = Vec::new();
    for _ in 0..5 {
        let store = Store::open(&path).unwrap();
        let start = Instant::now();
        let loaded = store.load().unwrap();
        load_times.push(start.elapsed().as_secs_f64());
        assert_eq!(loaded.queue.len() as u64, queue);
        drop(store);
        let start = Instant::now();
        let mut journal = Journal::open(&path);
        let loaded = journal.load();
        open_times.push(start.elapsed().as_secs_f64());
        assert_eq!(loaded.queue.len() as u64, queue);
    }
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!(
        "(d) Store::load of a {queue}-message queue ({:.1} MB file): {:.1} ms; Journal::open + load (with quick_check): {:.1} ms",
        size as f64 / 1e6,
        median(load_times) * 1e3,
        median(open_times) * 1e3
    );

    // (e) The same without fsync: what is left is CPU and page cache, the journal's own cost.
    let (mut ours_cpu, mut bare_cpu) = (Vec::new(), Vec::new());
    for round_no in 0..rounds {
        let (o, b) = round(dir.path(), round_no, events, "OFF");
        ours_cpu.push(o);
        bare_cpu.push(b);
    }
    let (oc, bc) = (median(ours_cpu), median(bare_cpu));
    println!(
        "(e) for reference, synchronous=OFF (no fsync): journal {:.1} us/event, bare {:.1} us/row: \
         the fsync'ed commit is {:.0}% of the journal's time per event",
        oc * 1e6,
        bc * 1e6,
        100.0 * (1.0 - oc / o).max(0.0)
    );
}
