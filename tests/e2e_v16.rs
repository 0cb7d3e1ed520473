//! The real agent speaking OCPP 1.6J (`[csms] ocpp_version = "1.6"`) to the real peers in
//! their 1.6 mode (the Python `ocpp.v16` package, or ocpp-rpc strict `ocpp1.6` with
//! `OCPP_PEER=js`), which validate every message against the 1.6 schemas and assign the
//! transactionIds: boot and statuses, a charging session, remote start and stop, and a whole
//! session while the CSMS is down followed by a kill -9, delivered with the id the CSMS
//! assigned, once each.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, Csms, wait_for};

const CONFIG: &str = r#""SampledDataCtrlr.TxUpdatedInterval" = 1
"AuthCtrlr.OfflineTxForUnknownIdEnabled" = true
"OCPPCommCtrlr.WebSocketPingInterval" = 0"#;

/// The transactions the CSMS assigned, and the messages that named an id it never gave.
fn transactions(csms: &Csms) -> (Vec<Value>, Vec<Value>) {
    let answer = csms.admin(json!({"cmd": "transactions"}));
    assert_eq!(answer["ok"], true, "{answer}");
    (
        answer["transactions"].as_array().unwrap().clone(),
        answer["unknown"].as_array().unwrap().clone(),
    )
}

fn statuses(csms: &Csms, connector: i64) -> Vec<String> {
    csms.calls("StatusNotification")
        .iter()
        .filter(|r| r["payload"]["connectorId"] == connector)
        .map(|r| r["payload"]["status"].as_str().unwrap().to_owned())
        .collect()
}

fn ctl(agent: &Agent, args: &[&str]) {
    let out = agent.ctl(args);
    assert!(out.status.success(), "ctl {args:?}: {out:?}");
}

#[test]
fn charging_session_in_1_6() {
    let Some(csms) = Csms::start_v16(&["--interval", "30"]) else {
        return;
    };
    let agent = Agent::start_v16(&csms.url(), CONFIG);
    agent.wait_ready();
    let boot = csms.wait_calls("BootNotification", 1, Duration::from_secs(20));
    assert_eq!(boot[0]["payload"]["chargePointModel"], "AC-2");
    wait_for(Duration::from_secs(20), "connector statuses", || {
        (statuses(&csms, 0) == ["Available"] && statuses(&csms, 2) == ["Available"]).then_some(())
    });

    ctl(&agent, &["plug", "1", "in"]);
    ctl(&agent, &["token", "1", "TAG1"]);
    csms.wait_calls("StartTransaction", 1, Duration::from_secs(20));
    csms.wait_calls("MeterValues", 2, Duration::from_secs(20));
    ctl(&agent, &["plug", "1", "out"]);
    csms.wait_calls("StopTransaction", 1, Duration::from_secs(20));

    let (assigned, unknown) = transactions(&csms);
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(assigned.len(), 1, "{assigned:?}");
    let tx = &assigned[0];
    assert_eq!(
        (tx["connector_id"].clone(), tx["id_tag"].clone()),
        (json!(1), json!("TAG1"))
    );
    assert!(tx["meter_values"].as_array().unwrap().len() >= 2);
    assert_eq!(tx["stops"].as_array().unwrap().len(), 1);
    let stop = &tx["stops"][0]["payload"];
    assert_eq!(stop["reason"], "EVDisconnected");
    assert!(stop["meterStop"].as_i64().unwrap() >= tx["meter_start"].as_i64().unwrap());
    wait_for(Duration::from_secs(10), "connector 1 Available", || {
        (statuses(&csms, 1).last().map(String::as_str) == Some("Available")).then_some(())
    });
    let seen = statuses(&csms, 1);
    assert_eq!(
        &seen[..3],
        ["Available", "Preparing", "Charging"],
        "{seen:?}"
    );

    // Remote start and stop with the CSMS's ids.
    ctl(&agent, &["plug", "2", "in"]);
    let started = csms.call(
        "RemoteStartTransaction",
        json!({"connectorId": 2, "idTag": "REMOTE"}),
    );
    assert_eq!(started["status"], "Accepted", "{started}");
    csms.wait_calls("StartTransaction", 2, Duration::from_secs(20));
    let id = wait_for(Duration::from_secs(10), "the second id", || {
        transactions(&csms)
            .0
            .get(1)
            .map(|t| t["transaction_id"].clone())
    });
    let stopped = csms.call("RemoteStopTransaction", json!({"transactionId": id}));
    assert_eq!(stopped["status"], "Accepted", "{stopped}");
    let stops = csms.wait_calls("StopTransaction", 2, Duration::from_secs(20));
    assert_eq!(stops[1]["payload"]["reason"], "Remote");
    assert_eq!(stops[1]["payload"]["transactionId"], id);
    assert!(csms.errors_sent().is_empty(), "{:?}", csms.errors_sent());
    // `ctl variables` names each variable's 1.6 keys.
    let vars = agent.ctl_json(&["variables", "OCPPCommCtrlr"]);
    let heartbeat = vars
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variable"]["name"] == "HeartbeatInterval")
        .unwrap();
    assert_eq!(heartbeat["ocpp16Keys"], json!(["HeartbeatInterval"]));
}

#[test]
fn offline_session_and_kill_9_get_the_assigned_id_once() {
    let Some(mut csms) = Csms::start_v16(&["--interval", "30"]) else {
        return;
    };
    let mut agent = Agent::start_v16(&csms.url(), CONFIG);
    agent.wait_ready();
    csms.wait_calls("BootNotification", 1, Duration::from_secs(20));
    wait_for(Duration::from_secs(20), "registered", || {
        (agent.status()["registration"] == "accepted").then_some(())
    });
    csms.stop();
    wait_for(Duration::from_secs(20), "offline", || {
        (agent.status()["connection"] != "connected").then_some(())
    });
    // A whole session while the CSMS is down.
    ctl(&agent, &["plug", "2", "in"]);
    ctl(&agent, &["token", "2", "OFFLINE1"]);
    std::thread::sleep(Duration::from_secs(3));
    ctl(&agent, &["plug", "2", "out"]);
    wait_for(Duration::from_secs(10), "the session queued", || {
        let status = agent.status();
        (status["queue"]["depth"].as_u64().unwrap_or(0) >= 4).then_some(())
    });
    agent.kill9();
    agent.spawn(&[]);
    csms.restart();
    let (assigned, unknown) = wait_for(Duration::from_secs(40), "the stop", || {
        let (assigned, unknown) = transactions(&csms);
        assigned
            .iter()
            .any(|t| !t["stops"].as_array().unwrap().is_empty())
            .then_some((assigned, unknown))
    });
    assert!(unknown.is_empty(), "{unknown:?}");
    assert_eq!(assigned.len(), 1, "one StartTransaction: {assigned:?}");
    let tx = &assigned[0];
    assert_eq!(
        (tx["connector_id"].clone(), tx["id_tag"].clone()),
        (json!(2), json!("OFFLINE1"))
    );
    assert_eq!(tx["stops"].as_array().unwrap().len(), 1);
    assert!(!tx["meter_values"].as_array().unwrap().is_empty());
    // Nothing else is left to send, and nothing arrives twice.
    wait_for(Duration::from_secs(20), "an empty queue", || {
        (agent.status()["queue"]["depth"] == 0).then_some(())
    });
    let (again, _) = transactions(&csms);
    assert_eq!(again[0]["stops"].as_array().unwrap().len(), 1);
    assert_eq!(
        again[0]["meter_values"].as_array().unwrap().len(),
        tx["meter_values"].as_array().unwrap().len()
    );
    assert!(csms.errors_sent().is_empty(), "{:?}", csms.errors_sent());
}
