//! Fault injection: the real agent is killed with SIGKILL at random instants across a run of
//! transactions while the CSMS flaps (killed and restarted), then restarted until everything is
//! delivered. The CSMS's record must hold, for every transaction, a Started and an Ended with
//! seqNo 0..n and no gap; a message may arrive twice only if it was in flight at a kill or a
//! flap, and then identical in content.
//!
//! `KILL_TEST_ROUNDS` (default 30) sets the number of kills; `KILL_TEST_SEED` replays a run.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Agent, Csms, Rng, transaction_events, wait_for};

const CONFIG: &str = r#""SampledDataCtrlr.TxUpdatedInterval" = 1
"AuthCtrlr.OfflineTxForUnknownIdEnabled" = true
"TxCtrlr.TxBeforeAcceptedEnabled" = true
"OCPPCommCtrlr.MessageAttempts[TransactionEvent]" = 100
"OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]" = 1
"OCPPCommCtrlr.MessageTimeout[Default]" = 5
"OCPPCommCtrlr.WebSocketPingInterval" = 0"#;

#[test]
fn kill_9_at_random_instants_loses_and_duplicates_nothing() {
    let Some(csms) = Csms::start(&["--interval", "5"]) else {
        return;
    };
    let rounds: usize = std::env::var("KILL_TEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
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
    println!("kill test: {rounds} rounds, KILL_TEST_SEED={seed}");
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

    let mut agent = Agent::start(&url, CONFIG);
    let mut kills = 0;
    for round in 0..rounds {
        let deadline = Instant::now() + rng.millis(500, 4000);
        while Instant::now() < deadline {
            let evse = (1 + rng.below(2)).to_string();
            let action = rng.below(4);
            let args: Vec<String> = match action {
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
        agent.kill9();
        kills += 1;
        if round + 1 < rounds {
            agent.spawn(&[]);
            std::thread::sleep(rng.millis(0, 300));
        }
    }
    stop.store(true, Ordering::Relaxed);
    flapper.join().unwrap();
    {
        let mut c = csms.lock().unwrap();
        c.restart();
    }
    // Last start: unplug everything so no transaction stays open, and drain the queue.
    agent.spawn(&[]);
    agent.wait_ready();
    wait_for(Duration::from_secs(120), "the journal to drain", || {
        let s = agent.status();
        (s["queue"]["depth"] == 0 && s["connection"] == "connected").then_some(())
    });

    let csms = csms.lock().unwrap();
    let (unique, duplicates) = transaction_events(&csms, &format!("seed {seed}"));
    let mut by_tx: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for ((id, _), e) in &unique {
        by_tx.entry(id.clone()).or_default().push(e);
    }
    for (id, evs) in &by_tx {
        let seq: Vec<u64> = evs.iter().map(|e| e["seqNo"].as_u64().unwrap()).collect();
        assert_eq!(
            seq,
            (0..evs.len() as u64).collect::<Vec<_>>(),
            "seqNo of {id} (seed {seed})"
        );
        assert_eq!(evs[0]["eventType"], "Started", "{id} (seed {seed})");
        assert_eq!(
            evs.last().unwrap()["eventType"],
            "Ended",
            "{id} (seed {seed})"
        );
    }
    let flaps = flaps.load(Ordering::Relaxed);
    assert!(
        duplicates <= kills + flaps,
        "{duplicates} duplicates for {kills} kills and {flaps} CSMS restarts (seed {seed})"
    );
    assert!(
        by_tx.len() >= rounds / 3,
        "too few transactions: {} (seed {seed})",
        by_tx.len()
    );
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
    println!(
        "kill test: {kills} kills, {flaps} CSMS restarts, {} transactions, {} events, {duplicates} duplicates (all identical)",
        by_tx.len(),
        unique.len()
    );
}
