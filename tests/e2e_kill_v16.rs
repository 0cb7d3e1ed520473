//! Fault injection in OCPP 1.6J: the real agent is killed with SIGKILL at random instants
//! across a run of sessions while the CSMS flaps (killed and restarted on its `--state`), then
//! restarted until everything is delivered. 1.6 has no seqNo and the CSMS assigns the ids: a
//! StartTransaction whose answer was lost at a kill or a flap comes again, identical, and gets
//! a second id (`duplicate_of`). The CSMS's record must show no message naming an id it never
//! gave, and for each session (its StartTransactions grouped by content) the stop and the
//! meter values under the last id assigned only, every copy of the stop identical.
//!
//! `KILL_TEST_ROUNDS` (default 15) sets the number of kills; `KILL_TEST_SEED` replays a run.

mod support;

use ocpp_agent::ocpp::clock::UtcTime;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Agent, Csms, Rng, wait_for};

const CONFIG: &str = r#"MeterValueSampleInterval = 1
AllowOfflineTxForUnknownId = true
TransactionMessageAttempts = 100
TransactionMessageRetryInterval = 1
WebSocketPingInterval = 0
"TxCtrlr.TxBeforeAcceptedEnabled" = true
"OCPPCommCtrlr.MessageTimeout[Default]" = 5"#;

/// 1.6's StopTransaction reasons (7.42).
const REASONS: [&str; 11] = [
    "DeAuthorized",
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
];

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The sessions the agent's log says it started: (EVSE, unix ms).
fn started(log: &str) -> Vec<(u64, i64)> {
    log.lines()
        .filter(|l| l.contains("transaction started"))
        .filter_map(|l| {
            let at = UtcTime::parse_rfc3339(l.split_whitespace().next()?)?;
            let evse = l.split("evse=").nth(1)?.split_whitespace().next()?;
            Some((evse.parse().ok()?, at.unix_millis()))
        })
        .collect()
}

#[test]
fn kill_9_at_random_instants_in_1_6_loses_nothing_and_makes_up_no_id() {
    let Some(csms) = Csms::start_v16(&["--interval", "5"]) else {
        return;
    };
    let rounds: usize = std::env::var("KILL_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("KILL_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("kill test 1.6: {rounds} rounds, KILL_TEST_SEED={seed}");
    let mut rng = Rng(seed);

    let url = csms.url();
    let csms = Arc::new(Mutex::new(csms));
    // The CSMS flaps in the background: down for 0.3-2 s every 1-4 s.
    let stop = Arc::new(AtomicBool::new(false));
    let flaps = Arc::new(AtomicUsize::new(0));
    let flapper = {
        let (csms, stop, flaps) = (csms.clone(), stop.clone(), flaps.clone());
        let mut rng = Rng(seed.rotate_left(17) | 1);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(rng.millis(1000, 4000));
                csms.lock().unwrap().stop();
                flaps.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(rng.millis(300, 2000));
                csms.lock().unwrap().restart();
            }
        })
    };

    let mut agent = Agent::start_v16(&url, CONFIG);
    let mut kills = 0;
    let mut killed_at = Vec::new();
    for round in 0..rounds {
        let deadline = Instant::now() + rng.millis(500, 4000);
        while Instant::now() < deadline {
            let evse = (1 + rng.below(2)).to_string();
            let args: Vec<String> = match rng.below(4) {
                0 => vec!["plug".into(), evse, "in".into()],
                1 => vec!["token".into(), evse, format!("T{}", rng.below(5))],
                2 => vec!["plug".into(), evse, "out".into()],
                _ => Vec::new(),
            };
            if !args.is_empty() {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let _ = agent.ctl(&args); // may fail while the agent starts: that is fine
            }
            std::thread::sleep(rng.millis(50, 600));
        }
        killed_at.push(unix_ms());
        agent.kill9();
        kills += 1;
        if round + 1 < rounds {
            agent.spawn(&[]);
            std::thread::sleep(rng.millis(0, 300));
        }
    }
    stop.store(true, Ordering::Relaxed);
    flapper.join().unwrap();
    csms.lock().unwrap().restart();
    // Last start: nothing plugged, every session ended, the queue drained.
    agent.spawn(&[]);
    agent.wait_ready();
    for evse in ["1", "2"] {
        let _ = agent.ctl(&["plug", evse, "out"]);
    }
    wait_for(Duration::from_secs(120), "the queue to drain", || {
        let s = agent.status();
        let open = s["evses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| !e["transaction"].is_null());
        (s["queue"]["depth"] == 0 && s["connection"] == "connected" && !open).then_some(())
    });

    let csms = csms.lock().unwrap();
    let answer = csms.admin(json!({"cmd": "transactions", "station": "CP001"}));
    assert_eq!(answer["ok"], true, "{answer}");
    let assigned = answer["transactions"].as_array().unwrap();
    // (1) No message named an id the CSMS never gave.
    assert_eq!(answer["unknown"], json!([]), "seed {seed}");

    // (2) Sessions: the StartTransactions grouped by content, in the order assigned.
    let mut sessions: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for t in assigned {
        let key = json!([
            t["connector_id"],
            t["id_tag"],
            t["meter_start"],
            t["timestamp"]
        ]);
        sessions.entry(key.to_string()).or_default().push(t);
    }
    let (mut start_copies, mut stop_copies, mut power_loss) = (0, 0, 0);
    for (key, ids) in &sessions {
        let (last, earlier) = ids.split_last().unwrap();
        start_copies += earlier.len();
        for t in &ids[1..] {
            assert_eq!(
                t["duplicate_of"], ids[0]["transaction_id"],
                "{t} (seed {seed})"
            );
        }
        for t in earlier {
            // Its answer was lost: nothing after it could name it.
            assert_eq!(
                t["stops"],
                json!([]),
                "stop under a lost id {key} (seed {seed})"
            );
            assert_eq!(t["meter_values"], json!([]), "{key} (seed {seed})");
        }
        let id = &last["transaction_id"];
        let stops = last["stops"].as_array().unwrap();
        assert!(
            !stops.is_empty(),
            "session {key} id {id}: no StopTransaction (seed {seed})"
        );
        stop_copies += stops.len() - 1;
        for s in stops {
            assert_eq!(
                s["payload"], stops[0]["payload"],
                "copies of {id} (seed {seed})"
            );
        }
        // (3) The stop.
        let stop = &stops[0]["payload"];
        assert_eq!(&stop["transactionId"], id, "seed {seed}");
        let meter_start = last["meter_start"].as_i64().unwrap();
        assert!(
            stop["meterStop"].as_i64().unwrap() >= meter_start,
            "{id}: {stop} (seed {seed})"
        );
        let reason = stop["reason"].as_str().unwrap_or("Local");
        assert!(REASONS.contains(&reason), "{id}: {stop} (seed {seed})");
        if matches!(reason, "PowerLoss" | "Reboot") {
            power_loss += 1;
        }
        for mv in last["meter_values"].as_array().unwrap() {
            assert_eq!(mv["payload"]["transactionId"], *id, "seed {seed}");
            assert_eq!(
                mv["payload"]["connectorId"], last["connector_id"],
                "seed {seed}"
            );
        }
    }
    // Every session the agent started that it had time to store (1 s before a kill) reached
    // the CSMS: its StartTransaction has the start's connector and instant.
    let mut checked = 0;
    for (evse, at) in started(&agent.log()) {
        if killed_at.iter().any(|k| (at..at + 1000).contains(k)) {
            continue;
        }
        checked += 1;
        let found = sessions.values().any(|ids| {
            let t = ids[0];
            let ts = UtcTime::parse_rfc3339(t["timestamp"].as_str().unwrap()).unwrap();
            t["connector_id"] == evse && (ts.unix_millis() - at).abs() < 500
        });
        assert!(
            found,
            "the session started at {at} on {evse} never reached the CSMS (seed {seed})"
        );
    }
    // Stopped by a restart only when open at a kill (two connectors).
    assert!(
        power_loss <= 2 * kills,
        "{power_loss} sessions stopped by a restart for {kills} kills (seed {seed})"
    );
    let flaps = flaps.load(Ordering::Relaxed);
    assert!(
        start_copies + stop_copies <= kills + flaps,
        "{start_copies} + {stop_copies} repeats for {kills} kills and {flaps} CSMS restarts (seed {seed})"
    );
    // The random actions make some sessions, not a fixed share of the rounds (seed
    // 1796599096239725345 made 4 in 15 rounds, every other check passing): the run must
    // have exercised at least one.
    assert!(
        !sessions.is_empty(),
        "no session in {rounds} rounds (seed {seed})"
    );
    // (4) Nothing left to send, nothing open (checked above); every message was valid.
    assert_eq!(csms.errors_sent(), Vec::<Value>::new(), "seed {seed}");
    println!(
        "kill test 1.6: {kills} kills, {flaps} CSMS restarts, {} sessions, {start_copies} repeated StartTransaction, {stop_copies} repeated StopTransaction, {power_loss} stopped by a restart, {checked} starts found",
        sessions.len()
    );
}
