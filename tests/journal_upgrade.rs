//! Upgrade in place: the agent built from this tree starts on a journal written by the 7600d0d
//! release (schema version 2, `tests/fixtures/journal-7600d0d.db`, see
//! `tests/fixtures/README.md`), against an independent CSMS peer, and everything the old agent
//! left in it goes on: every queued message is delivered, in its order and as it was written,
//! the open transaction is ended with the next seqNo, the firmware job makes its next attempt,
//! and the local list, the CSMS's variables and the authorization cache are still there.
//!
//! `JOURNAL_UPGRADE_FIXTURE=PATH` runs it on another file (e.g. a copy with a row deleted, to see
//! it fail).

mod support;

use ocpp_agent::shell::store::{SCHEMA_VERSION, Store};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use support::{Agent, Csms, admin_call, agent_config, call_response, repo, wait_for};

const T: Duration = Duration::from_secs(60);

const TX_ENDED: &str = "fd86ed86-d564-4973-9a2a-b29a1284465a";
const TX_OPEN: &str = "07b12c3b-62a3-4951-a4fa-cad1dfb94ffc";
const FIRMWARE_REQUEST_ID: i64 = 4242;

/// The fixture's queue (tests/fixtures/README.md): queue_seq, action, transaction id, and the
/// seqNo (TransactionEvent), type (SecurityEventNotification) or status
/// (FirmwareStatusNotification).
const QUEUED: &[(i64, &str, Option<&str>, &str)] = &[
    (6, "TransactionEvent", Some(TX_ENDED), "0"),
    (7, "TransactionEvent", Some(TX_ENDED), "1"),
    (8, "TransactionEvent", Some(TX_ENDED), "2"),
    (9, "SecurityEventNotification", None, "StartupOfTheDevice"),
    (10, "FirmwareStatusNotification", None, "Downloading"),
    (11, "TransactionEvent", Some(TX_OPEN), "0"),
    (12, "TransactionEvent", Some(TX_OPEN), "1"),
];

fn fixture() -> PathBuf {
    match std::env::var_os("JOURNAL_UPGRADE_FIXTURE") {
        Some(path) => PathBuf::from(path),
        None => repo().join("tests/fixtures/journal-7600d0d.db"),
    }
}

/// The identifying detail of a message, as in [`QUEUED`].
fn detail(action: &str, payload: &Value) -> String {
    let v = match action {
        "TransactionEvent" => &payload["seqNo"],
        "SecurityEventNotification" => &payload["type"],
        _ => &payload["status"],
    };
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// JSON equality with numbers compared by value: a peer may log the stored `0.0` as `0` (the
/// npm peer does).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The queued rows of a schema 2 file, read without writing anything (the copy is opened
/// `immutable`: no -wal or -shm is made, and it is certainly not migrated).
fn queued_rows(path: &std::path::Path) -> Vec<(i64, String, Option<String>, Value)> {
    let uri = format!("file:{}?immutable=1", path.display());
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "the fixture is a schema 2 journal");
    let mut stmt = conn
        .prepare("SELECT queue_seq, action, tx_id, payload FROM queue ORDER BY queue_seq")
        .unwrap();
    stmt.query_map([], |r| {
        let payload: String = r.get(3)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            serde_json::from_str(&payload).unwrap(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn a_journal_of_the_previous_release_is_upgraded_and_everything_in_it_goes_on() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    std::fs::copy(fixture(), &db).unwrap();
    // What the old agent queued, for comparing payloads; every row must be one of QUEUED (the
    // test expects all of QUEUED to be delivered, so a row missing from the file fails below).
    let stored = queued_rows(&db);
    for (seq, action, tx, payload) in &stored {
        let row = (
            *seq,
            action.as_str(),
            tx.as_deref(),
            detail(action, payload),
        );
        assert!(
            QUEUED
                .iter()
                .any(|q| (q.0, q.1, q.2, q.3.to_owned()) == row),
            "the fixture holds {row:?}, which tests/fixtures/README.md does not list"
        );
    }

    // The configuration's EVConnectionTimeOut loses to the one the CSMS set (321).
    let text = agent_config(
        dir.path(),
        &csms.url(),
        "\"TxCtrlr.EVConnectionTimeOut\" = 99\n\"AuthCacheCtrlr.LifeTime\" = 600",
    ) + "\n[firmware]\ninstall_command = [\"/bin/true\"]\nallow_unsigned = true\n";
    let mut agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    // The firmware job goes on: this start makes the next attempt (its Downloading is queued
    // first), which fails and is recorded.
    let db = agent.dir.path().join("agent.db");
    let job = wait_for(T, "the next firmware attempt recorded", || {
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let text: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'firmware:job'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        // Rewritten by this agent as a versioned record (ocpp::persist::Record); the
        // fixture's own is the unversioned one with 3 retries left.
        let stored: Value = serde_json::from_str(&text).unwrap();
        (stored["record"]["retries_left"]
            .as_u64()
            .is_some_and(|r| r != 3))
        .then_some(stored)
    });
    assert_eq!(job["version"], 1, "{job}");
    let job = &job["record"];
    assert_eq!(job["request_id"], FIRMWARE_REQUEST_ID);
    assert_eq!(job["phase"], "Scheduled", "waiting for its next attempt");
    assert_eq!(
        job["retries_left"], 2,
        "one attempt more than the fixture's 3"
    );
    // Everything queued is delivered: what the file held, the end of the open transaction and
    // this start's own messages (its SecurityEventNotification, the firmware status).
    wait_for(T, "the queue to drain", || {
        let s = agent.status();
        (s["connection"] == "connected" && s["queue"]["depth"] == 0).then_some(())
    });

    // The station's CALLs after the boot, in the order they arrived.
    let calls: Vec<(String, Value)> = csms
        .records()
        .into_iter()
        .filter(|r| r["event"] == "message" && r["dir"] == "in" && r["type"] == 2)
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["payload"].clone(),
            )
        })
        .collect();
    let events: Vec<(String, String, String)> = calls
        .iter()
        .filter(|(a, _)| a == "TransactionEvent")
        .map(|(_, p)| {
            (
                p["transactionInfo"]["transactionId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                detail("TransactionEvent", p),
                p["eventType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        (TX_ENDED, "0", "Started"),
        (TX_ENDED, "1", "Updated"),
        (TX_ENDED, "2", "Ended"),
        (TX_OPEN, "0", "Started"),
        (TX_OPEN, "1", "Updated"),
        // The transaction the old agent left open ends with the next seqNo (E06, PowerLoss:
        // it was killed).
        (TX_OPEN, "2", "Ended"),
    ]
    .iter()
    .map(|(t, s, k)| (t.to_string(), s.to_string(), k.to_string()))
    .collect();
    assert_eq!(events, expected, "every TransactionEvent, once, in order");
    let last = calls
        .iter()
        .rfind(|(a, _)| a == "TransactionEvent")
        .unwrap();
    assert_eq!(last.1["transactionInfo"]["stoppedReason"], "PowerLoss");

    // Each stored message went out as it was written, in the queue's order.
    let mut position = 0;
    for (seq, action, _, payload) in &stored {
        let found = calls[position..]
            .iter()
            .position(|(a, p)| a == action && same_json(p, payload))
            .unwrap_or_else(|| {
                panic!("queued message {seq} ({action}) not delivered as stored, or out of order")
            });
        position += found + 1;
    }
    assert_eq!(
        stored.len(),
        QUEUED.len(),
        "the fixture holds every row the README lists"
    );

    // The old start's SecurityEventNotification and this one's.
    let security: Vec<&Value> = calls
        .iter()
        .filter(|(a, _)| a == "SecurityEventNotification")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(security.len(), 2, "{security:?}");
    assert!(security.iter().all(|p| p["type"] == "StartupOfTheDevice"));

    // The firmware job goes on: the stored Downloading, then this start's attempt.
    let firmware: Vec<&Value> = calls
        .iter()
        .filter(|(a, _)| a == "FirmwareStatusNotification")
        .map(|(_, p)| p)
        .collect();
    let downloading = json!({"requestId": FIRMWARE_REQUEST_ID, "status": "Downloading"});
    assert_eq!(firmware, [&downloading, &downloading]);

    // The local list and the CSMS's variables.
    let version = call_response(csms.admin(admin_call("GetLocalListVersion", json!({}))));
    assert_eq!(version["versionNumber"], 7, "{version}");
    let got = call_response(csms.admin(admin_call(
        "GetVariables",
        json!({"getVariableData": [
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"}},
            {"component": {"name": "AuthCacheCtrlr"}, "variable": {"name": "LifeTime"}},
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxBeforeAcceptedEnabled"}},
        ]}),
    )));
    let values: Vec<(&str, &str)> = got["getVariableResult"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["attributeStatus"].as_str().unwrap(),
                r["attributeValue"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("Accepted", "321"),
            ("Accepted", "43210"),
            ("Accepted", "true")
        ],
        "{got}"
    );
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());

    // On disk: the current schema, nothing queued, no transaction open, the cache entry kept.
    agent.kill9();
    let store = Store::open(&agent.dir.path().join("agent.db")).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let state = store.load().unwrap();
    assert!(state.queue.is_empty(), "{:?}", state.queue);
    assert!(state.transactions.is_empty(), "{:?}", state.transactions);
    assert_eq!(
        state
            .auth_cache
            .iter()
            .map(|e| (e.key.as_str(), e.info.clone()))
            .collect::<Vec<_>>(),
        [("ISO14443:CACHED-1", json!({"status": "Accepted"}))]
    );
}
