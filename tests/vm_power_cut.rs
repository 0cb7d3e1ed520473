//! Power cuts: the ARMv7 agent on Debian's armmp kernel (qemu-system-arm, see
//! tests/support/vm.rs), its journal on an ext4 virtio disk, runs transactions with 1 s meter
//! values online and offline, and qemu is SIGKILLed at random instants: what the guest had not
//! written back is lost, as when the power goes (the agent's fsync discipline is what is
//! tested; the host's page cache keeps what qemu wrote).
//!
//! After every cut, a copy of the disk gets its ext4 journal replayed (`e2fsck`, which must
//! then find it clean) and the SQLite journal read from it must pass `PRAGMA integrity_check`;
//! the messages queued in it are what the agent had accepted but not delivered. At the end,
//! the CSMS must hold: every one of those, unchanged; for every transaction a Started and an
//! Ended with seqNo 0..n and no gap; every transaction cut open ended with stoppedReason
//! PowerLoss, its last event before the cut no older than the meter interval allows (a lost
//! tail would be older); energy readings never going backwards within a transaction; a
//! message twice only if in flight at a cut or a CSMS outage, then identical.
//!
//! `OCPP_VM_CUTS` (default 6; `scripts/vm/power-cut.sh` runs 12) and `OCPP_VM_SEED`.
//! Skipped like tests/vm_gpio.rs without the VM pieces unless `OCPP_VM_REQUIRED=1`.

mod support;

use ocpp_agent::ocpp::clock::UtcTime;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use support::vm::{self, GUEST_CSMS_URL, Vm};
use support::{Csms, Rng, transaction_events, wait_for};

/// Two sim EVSEs, meter values every second, transactions offline too, the journal and the
/// control socket on the ext4 disk.
fn config() -> String {
    support::agent_config(
        Path::new("/data"),
        GUEST_CSMS_URL,
        r#""SampledDataCtrlr.TxUpdatedInterval" = 1
"AuthCtrlr.OfflineTxForUnknownIdEnabled" = true
"TxCtrlr.TxBeforeAcceptedEnabled" = true
"OCPPCommCtrlr.MessageAttempts[TransactionEvent]" = 100
"OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]" = 1
"OCPPCommCtrlr.MessageTimeout[Default]" = 5
"OCPPCommCtrlr.WebSocketPingInterval" = 0"#,
    )
    // the console is a slow emulated UART
    .replace("filter = \"debug\"", "filter = \"info\"")
}

const CTL: &str = "/data/ocpp-agent ctl --config /data/agent.toml";

/// An RFC 3339 timestamp of the agent's, in milliseconds since the epoch.
fn parse_ms(t: &str) -> i64 {
    UtcTime::parse_rfc3339(t)
        .unwrap_or_else(|| panic!("bad timestamp {t:?}"))
        .unix_millis()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn energy(e: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    for mv in e["meterValue"].as_array().into_iter().flatten() {
        for sv in mv["sampledValue"].as_array().into_iter().flatten() {
            let m = sv["measurand"]
                .as_str()
                .unwrap_or("Energy.Active.Import.Register");
            if m == "Energy.Active.Import.Register" {
                out.push(sv["value"].as_f64().unwrap());
            }
        }
    }
    out
}

/// What the replayed disk's journal holds: (tx id, seqNo) -> payload of every queued
/// TransactionEvent. Fails unless `PRAGMA integrity_check` says ok.
fn journal_after_cut(image: &Path, work: &Path) -> BTreeMap<(String, u64), Value> {
    let copy = work.join("cut.img");
    vm::fsck_copy(image, &copy);
    let db = work.join("agent.db");
    let wal = work.join("agent.db-wal");
    let _ = std::fs::remove_file(work.join("agent.db-shm"));
    if !vm::dump(&copy, "agent.db", &db) {
        return BTreeMap::new(); // cut before the agent created it
    }
    vm::dump(&copy, "agent.db-wal", &wal);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(check, vec!["ok".to_string()], "integrity_check after a cut");
    let mut queued = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT payload FROM queue WHERE action = 'TransactionEvent'")
        .unwrap();
    for payload in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let p: Value = serde_json::from_str(&payload.unwrap()).unwrap();
        let key = (
            p["transactionInfo"]["transactionId"]
                .as_str()
                .unwrap()
                .to_owned(),
            p["seqNo"].as_u64().unwrap(),
        );
        queued.insert(key, p);
    }
    queued
}

/// How far the guest's clock may be from the host's (see where it is used).
const GUEST_CLOCK_SLACK_MS: i64 = 2500;

#[test]
fn power_cuts_lose_nothing_the_agent_accepted() {
    let Some(env) = vm::prepare() else {
        return;
    };
    let Some(mut csms) = Csms::start(&["--interval", "30"]) else {
        return;
    };
    let cuts: usize = std::env::var("OCPP_VM_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("OCPP_VM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);
    println!("power-cut test: {cuts} cuts, OCPP_VM_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let disk = vm::agent_disk(&env, dir.path(), &config(), &[("autostart", b"")]);

    let mut cut_at: Vec<i64> = Vec::new();
    let mut accepted: BTreeMap<(String, u64), Value> = BTreeMap::new();
    let mut outages = 0;
    let mut boot_times = Vec::new();
    for cut in 0..cuts {
        // online, offline, or the CSMS going away during the run
        let mode = cut % 3;
        let mut online = mode != 1;
        if !online {
            csms.stop();
            outages += 1;
        }
        let mut vm = Vm::boot(&env, dir.path(), &disk, csms.port);
        boot_times.push(vm.booted_in);
        wait_for(
            Duration::from_secs(60),
            "the agent's control socket",
            || (vm.sh(&format!("{CTL} status")).0 == 0).then_some(()),
        );
        // A transaction charging on each EVSE (meter values every second), then random
        // plugging on EVSE 2 until the cut; EVSE 1's stays open and charging, so every cut
        // falls inside a transaction that writes every second.
        for evse in [1, 2] {
            let token = format!("T{}", rng.below(5));
            vm.ok(&format!(
                "{CTL} plug {evse} in && {CTL} token {evse} {token}"
            ));
        }
        let run = rng.millis(3000, 9000);
        let start = Instant::now();
        while start.elapsed() < run {
            if mode == 2 && online && start.elapsed() > run / 2 {
                csms.stop();
                outages += 1;
                online = false;
            }
            let evse = 2;
            let cmd = match rng.below(5) {
                0 => format!("{CTL} plug {evse} out"),
                1 => format!(
                    "{CTL} plug {evse} in && {CTL} token {evse} T{}",
                    rng.below(5)
                ),
                _ => "true".to_string(),
            };
            let _ = vm.sh(&cmd);
            std::thread::sleep(
                rng.millis(100, 1500)
                    .min(run.saturating_sub(start.elapsed())),
            );
        }
        vm.power_cut();
        cut_at.push(now_ms());
        let queued = journal_after_cut(&disk, dir.path());
        println!(
            "cut {}: after {:?} ({}), {} TransactionEvents queued in the journal",
            cut + 1,
            run,
            ["online", "offline", "CSMS lost mid-run"][mode],
            queued.len()
        );
        accepted.extend(queued);
        if !online {
            csms.restart();
        }
    }

    // Last boot: unplug everything and let the queue drain.
    let mut vm = Vm::boot(&env, dir.path(), &disk, csms.port);
    wait_for(
        Duration::from_secs(60),
        "the agent's control socket",
        || (vm.sh(&format!("{CTL} status")).0 == 0).then_some(()),
    );
    vm.ok(&format!("{CTL} plug 1 out; {CTL} plug 2 out; true"));
    wait_for(Duration::from_secs(180), "the journal to drain", || {
        let (_, out) = vm.sh(&format!("{CTL} status"));
        let s: Value = serde_json::from_str(&out).ok()?;
        (s["queue"]["depth"] == 0 && s["connection"] == "connected").then_some(())
    });

    // --- the CSMS's view
    let (unique, duplicates) = transaction_events(&csms, &format!("seed {seed}"));
    for (key, payload) in &accepted {
        assert_eq!(
            unique.get(key),
            Some(payload),
            "{key:?}, queued in the journal at a cut, must reach the CSMS unchanged (seed {seed})"
        );
    }
    let mut by_tx: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for ((id, _), e) in &unique {
        by_tx.entry(id.clone()).or_default().push(e);
    }
    let mut power_loss = 0;
    for (id, evs) in &by_tx {
        let seq: Vec<u64> = evs.iter().map(|e| e["seqNo"].as_u64().unwrap()).collect();
        assert_eq!(
            seq,
            (0..evs.len() as u64).collect::<Vec<_>>(),
            "seqNo of {id} (seed {seed})"
        );
        assert_eq!(evs[0]["eventType"], "Started", "{id} (seed {seed})");
        let ended = evs.last().unwrap();
        assert_eq!(ended["eventType"], "Ended", "{id} (seed {seed})");
        let readings: Vec<f64> = evs.iter().flat_map(|e| energy(e)).collect();
        assert!(
            readings.windows(2).all(|w| w[0] <= w[1]),
            "energy of {id} goes backwards: {readings:?} (seed {seed})"
        );
        // Which cut, if any, fell inside it: the first after its last event before Ended.
        let before_end = evs[evs.len() - 2..evs.len() - 1]
            .first()
            .map(|e| parse_ms(e["timestamp"].as_str().unwrap()))
            .unwrap_or_else(|| parse_ms(evs[0]["timestamp"].as_str().unwrap()));
        let started = parse_ms(evs[0]["timestamp"].as_str().unwrap());
        // The guest stamps offline events with its own clock (the emulated RTC), which was
        // seen up to ~1.5 s ahead of the host's under load: match cuts with that slack.
        let open_at = cut_at.iter().find(|&&c| {
            started < c + GUEST_CLOCK_SLACK_MS && before_end < c + GUEST_CLOCK_SLACK_MS
        });
        let ended_at = parse_ms(ended["timestamp"].as_str().unwrap());
        let reason = ended["transactionInfo"]["stoppedReason"].as_str();
        match open_at {
            Some(&c) if ended_at > c || reason == Some("PowerLoss") => {
                assert_eq!(
                    reason,
                    Some("PowerLoss"),
                    "{id} was open at a cut (seed {seed})"
                );
                power_loss += 1;
                // Charging, it had an event every second: the last one before the cut is
                // recent unless the journal lost its tail. (3 s: the interval, a commit,
                // and the emulated CPU's pace.)
                // (the state the last reported chargingState says, not any earlier one: a
                // token presented again stops the charging and the meter values)
                let charging = evs[..evs.len() - 1]
                    .iter()
                    .filter_map(|e| e["transactionInfo"]["chargingState"].as_str())
                    .next_back()
                    == Some("Charging");
                if charging {
                    assert!(
                        c - before_end <= 3000 + GUEST_CLOCK_SLACK_MS,
                        "{id}: its last event before the cut is {} ms older than the cut (seed {seed}): {}",
                        c - before_end,
                        evs.iter()
                            .map(|e| format!(
                                "\n  {} {} {} {}",
                                e["seqNo"],
                                e["timestamp"],
                                e["triggerReason"],
                                e["transactionInfo"]["chargingState"]
                            ))
                            .collect::<String>()
                    );
                }
            }
            _ => assert_ne!(
                reason,
                Some("PowerLoss"),
                "{id} ended with PowerLoss without a cut inside it (seed {seed})"
            ),
        }
    }
    // The EVSE's energy register, transaction after transaction (in start order), never
    // goes back either: a cut must not lose what was metered.
    let mut per_evse: BTreeMap<u64, Vec<(i64, f64, f64)>> = BTreeMap::new();
    for evs in by_tx.values() {
        let readings: Vec<f64> = evs.iter().flat_map(|e| energy(e)).collect();
        if let (Some(first), Some(last), Some(evse)) = (
            readings.first(),
            readings.last(),
            evs[0]["evse"]["id"].as_u64(),
        ) {
            let started = parse_ms(evs[0]["timestamp"].as_str().unwrap());
            per_evse
                .entry(evse)
                .or_default()
                .push((started, *first, *last));
        }
    }
    for (evse, mut txs) in per_evse {
        txs.sort_by_key(|t| t.0);
        for w in txs.windows(2) {
            assert!(
                w[0].2 <= w[1].1,
                "EVSE {evse}: a transaction ended at {} Wh, the next started at {} Wh (seed {seed})",
                w[0].2,
                w[1].1
            );
        }
    }
    assert!(
        duplicates <= cuts + outages,
        "{duplicates} duplicates for {cuts} cuts and {outages} CSMS outages (seed {seed})"
    );
    assert!(
        power_loss >= cuts,
        "only {power_loss} transactions were open at the {cuts} cuts (seed {seed})"
    );
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
    let boot_ms: Vec<u128> = boot_times.iter().map(Duration::as_millis).collect();
    println!(
        "power-cut test: {cuts} cuts ({} CSMS outages), {} transactions ({power_loss} ended PowerLoss), \
         {} events, {} queued in the journal at the cuts and all delivered, {duplicates} duplicates \
         (identical), 0 lost; boot to control channel {boot_ms:?} ms",
        outages,
        by_tx.len(),
        unique.len(),
        accepted.len()
    );
}
