//! End-to-end authorization and remote-start rules of the Core profile against the real
//! binary and an independent CSMS peer (Python `ocpp` by default, `ocpp-rpc` with
//! OCPP_PEER=js): a Master Pass (C16), a group given in a TransactionEventResponse (C09/C10),
//! RequestStartTransaction without evseId (F01.FR.20/23), a triggered BootNotification, and
//! SendLocalList with versionNumber 0 (D01.FR.18).

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, Csms, admin_call, wait_for};

const T: Duration = Duration::from_secs(30);

fn events(csms: &Csms) -> Vec<Value> {
    csms.calls("TransactionEvent")
        .into_iter()
        .map(|r| r["payload"].clone())
        .collect()
}

fn ended(csms: &Csms, count: usize) -> Vec<Value> {
    wait_for(T, &format!("{count} Ended event(s)"), || {
        let ended: Vec<Value> = events(csms)
            .into_iter()
            .filter(|e| e["eventType"] == "Ended")
            .collect();
        (ended.len() >= count).then_some(ended)
    })
}

fn power(agent: &Agent, evse: usize) -> bool {
    agent.status()["evses"][evse - 1]["power_path_closed"] == true
}

#[test]
fn master_pass_group_from_the_csms_and_remote_start_without_evse() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let set = csms.admin(json!({"cmd": "set", "auth": {
        "MASTER": {"status": "Accepted", "group": "POLICE"},
        "APP": {"status": "Accepted", "group": "FAMILY"},
        "PARTNER": {"status": "Accepted", "group": "FAMILY"},
    }}));
    assert_eq!(set["ok"], true, "{set}");
    let agent = Agent::start(&csms.url(), r#""AuthCtrlr.MasterPassGroupId" = "POLICE""#);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    wait_for(T, "statuses", || {
        (csms.calls("StatusNotification").len() >= 2).then_some(())
    });

    // F01.FR.20/23: EVSE 1's connector is Inoperative, so a start without evseId goes to 2.
    let answer = csms.admin(admin_call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}),
    ));
    assert_eq!(answer["response"]["status"], "Accepted", "{answer}");
    let answer = csms.admin(admin_call(
        "RequestStartTransaction",
        json!({"remoteStartId": 7, "idToken": {"idToken": "APP", "type": "Central"}}),
    ));
    assert_eq!(answer["response"]["status"], "Accepted", "{answer}");
    let started = wait_for(T, "the remote start", || events(&csms).into_iter().next());
    assert_eq!(started["evse"]["id"], 2);
    assert_eq!(started["triggerReason"], "RemoteStart");
    // Nothing else can take a session now (EVSE 2 authorized, EVSE 1 inoperative).
    let answer = csms.admin(admin_call(
        "RequestStartTransaction",
        json!({"remoteStartId": 8, "idToken": {"idToken": "APP", "type": "Central"}}),
    ));
    assert_eq!(answer["response"]["status"], "Rejected", "{answer}");

    // C09/C10: the CSMS gave APP the group FAMILY in its TransactionEventResponse (no
    // Authorize for a Central token); PARTNER, of the same group, stops the transaction.
    agent.ctl_json(&["plug", "2", "in"]);
    wait_for(T, "charging", || power(&agent, 2).then_some(()));
    agent.ctl_json(&["token", "2", "PARTNER"]);
    let first = ended(&csms, 1).remove(0);
    assert_eq!(first["triggerReason"], "StopAuthorized");
    assert_eq!(first["idToken"]["idToken"], "PARTNER");
    assert_eq!(first["transactionInfo"]["stoppedReason"], "Local");
    assert!(!power(&agent, 2));

    // C16.FR.02: a Master Pass stops what runs; C16.FR.03: it starts nothing.
    agent.ctl_json(&["plug", "2", "out"]);
    agent.ctl_json(&["plug", "2", "in"]);
    agent.ctl_json(&["token", "2", "DRIVER"]);
    wait_for(T, "charging again", || power(&agent, 2).then_some(()));
    agent.ctl_json(&["token", "2", "MASTER"]);
    let last = ended(&csms, 2).remove(1);
    assert_eq!(last["triggerReason"], "StopAuthorized");
    assert_eq!(last["idToken"]["idToken"], "MASTER");
    assert_eq!(last["transactionInfo"]["stoppedReason"], "MasterPass");
    agent.ctl_json(&["plug", "2", "out"]);
    let before = events(&csms).len();
    agent.ctl_json(&["plug", "2", "in"]);
    agent.ctl_json(&["token", "2", "MASTER"]);
    wait_for(T, "the Master Pass authorization", || {
        let note = agent.status()["evses"][1]["last_authorization"]
            .as_str()?
            .to_owned();
        note.contains("Master Pass").then_some(())
    });
    assert!(!power(&agent, 2));
    // EVConnected starts a transaction at plug-in, but no Authorized event follows.
    assert!(
        events(&csms)[before..]
            .iter()
            .all(|e| e["triggerReason"] != "Authorized"),
        "{:?}",
        &events(&csms)[before..]
    );
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn triggered_boot_notification_and_local_list_version_zero() {
    let Some(csms) = Csms::start(&["--interval", "60", "--boot-status", "Pending"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    // B02/F06: while Pending, the CSMS may ask for a BootNotification: reason Triggered.
    let answer = csms.admin(admin_call(
        "TriggerMessage",
        json!({"requestedMessage": "BootNotification"}),
    ));
    assert_eq!(answer["response"]["status"], "Accepted", "{answer}");
    let boots = csms.wait_calls("BootNotification", 2, T);
    assert_eq!(boots[0]["payload"]["reason"], "PowerUp");
    assert_eq!(boots[1]["payload"]["reason"], "Triggered");
    let set = csms.admin(json!({"cmd": "set", "boot_status": "Accepted"}));
    assert_eq!(set["ok"], true, "{set}");
    let answer = csms.admin(admin_call(
        "TriggerMessage",
        json!({"requestedMessage": "BootNotification"}),
    ));
    assert_eq!(answer["response"]["status"], "Accepted", "{answer}");
    csms.wait_calls("BootNotification", 3, T);
    agent.wait_ready();

    // D01.FR.18: versionNumber 0 is refused and the list version stays.
    let list = json!([{"idToken": {"idToken": "LISTED", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]);
    let answer = csms.admin(admin_call(
        "SendLocalList",
        json!({"versionNumber": 5, "updateType": "Full", "localAuthorizationList": list}),
    ));
    assert_eq!(answer["response"]["status"], "Accepted", "{answer}");
    let answer = csms.admin(admin_call(
        "SendLocalList",
        json!({"versionNumber": 0, "updateType": "Full"}),
    ));
    assert_eq!(answer["response"]["status"], "Failed", "{answer}");
    let answer = csms.admin(admin_call("GetLocalListVersion", json!({})));
    assert_eq!(answer["response"]["versionNumber"], 5, "{answer}");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
