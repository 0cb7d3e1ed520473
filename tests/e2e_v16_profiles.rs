//! The 1.6 feature profiles end to end: the real agent speaking OCPP 1.6J to the real peers in
//! their 1.6 mode (every message validated against the 1.6 and security-whitepaper schemas):
//! configuration keys, Reset, the Core and Remote Trigger operations, the local list,
//! reservations, smart charging, signed firmware, diagnostics and log upload, and the
//! whitepaper's certificate messages. e2e_v16.rs has boot, sessions and offline delivery.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::fileserver::FileServer;
use support::pki::{Ca, sign_file};
use support::{Agent, Csms, admin_call, agent_config_v16, utc_in_secs, wait_for};

const T: Duration = Duration::from_secs(30);

/// Meter values every second, no WebSocket pings.
const CONFIG: &str = r#"MeterValueSampleInterval = 1
"OCPPCommCtrlr.WebSocketPingInterval" = 0"#;

fn start(extra: &str) -> Option<(Csms, Agent)> {
    let csms = Csms::start_v16(&["--interval", "300"])?;
    let agent = Agent::start_v16(&csms.url(), &format!("{CONFIG}\n{extra}"));
    agent.wait_ready();
    csms.wait_calls("BootNotification", 1, T);
    wait_for(T, "the connector statuses", || {
        (statuses(&csms, 1).len() == 1 && statuses(&csms, 2).len() == 1).then_some(())
    });
    Some((csms, agent))
}

fn statuses(csms: &Csms, connector: i64) -> Vec<String> {
    csms.calls("StatusNotification")
        .iter()
        .filter(|r| r["payload"]["connectorId"] == connector)
        .map(|r| r["payload"]["status"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_status(csms: &Csms, connector: i64, status: &str) {
    wait_for(T, &format!("connector {connector} {status}"), || {
        (statuses(csms, connector).last().map(String::as_str) == Some(status)).then_some(())
    });
}

fn ctl(agent: &Agent, args: &[&str]) {
    let out = agent.ctl(args);
    assert!(out.status.success(), "ctl {args:?}: {out:?}");
}

fn payloads(csms: &Csms, action: &str) -> Vec<Value> {
    csms.calls(action)
        .into_iter()
        .map(|r| r["payload"].clone())
        .collect()
}

/// The transactions the CSMS assigned (see tests/csms/README.md, "Transactions").
fn transactions(csms: &Csms) -> Vec<Value> {
    let answer = csms.admin(json!({"cmd": "transactions"}));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["unknown"], json!([]), "{answer}");
    answer["transactions"].as_array().unwrap().clone()
}

/// A session on `connector` with `tag`; its transactionId once the CSMS assigned it.
fn start_session(csms: &Csms, agent: &Agent, connector: &str, tag: &str) -> i64 {
    let before = transactions(csms).len();
    ctl(agent, &["plug", connector, "in"]);
    ctl(agent, &["token", connector, tag]);
    wait_for(T, "the transactionId", || {
        transactions(csms)
            .get(before)
            .and_then(|t| t["transaction_id"].as_i64())
    })
}

fn errors(csms: &Csms) -> Vec<Value> {
    csms.errors_sent()
}

fn power(agent: &Agent, evse: usize) -> bool {
    agent.status()["evses"][evse - 1]["power_path_closed"] == true
}

/// The configurationKey entries of a GetConfiguration answer by key.
fn key<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["configurationKey"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == name)
        .unwrap_or_else(|| panic!("{name} not in {answer}"))
}

#[test]
fn configuration_keys_are_read_changed_and_take_effect() {
    let Some((csms, agent)) = start("HeartbeatInterval = 300") else {
        return;
    };
    // All keys (5.8): each known key once, none unknown; the [variables] value in 1.6 terms.
    let all = csms.call("GetConfiguration", json!({}));
    let keys = all["configurationKey"].as_array().unwrap();
    assert!(keys.len() >= 40, "{all}");
    assert!(
        all.get("unknownKey").is_none_or(|u| u == &json!([])),
        "{all}"
    );
    assert_eq!(
        key(&all, "HeartbeatInterval"),
        &json!({"key": "HeartbeatInterval", "readonly": false, "value": "300"})
    );
    assert_eq!(
        key(&all, "NumberOfConnectors"),
        &json!({"key": "NumberOfConnectors", "readonly": true, "value": "2"})
    );
    assert_eq!(
        key(&all, "SupportedFeatureProfiles")["value"],
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
    );
    assert_eq!(key(&all, "MeterValueSampleInterval")["value"], "1");
    // Whitepaper 7.2: AuthorizationKey is write-only, never reported with its value.
    assert!(
        key(&all, "AuthorizationKey").get("value").is_none(),
        "{all}"
    );
    let mut names: Vec<&str> = keys.iter().map(|k| k["key"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), keys.len(), "each key once: {all}");

    // Some keys, one unknown (5.8: unknownKey).
    let some = csms.call(
        "GetConfiguration",
        json!({"key": ["HeartbeatInterval", "NoSuchKey", "NumberOfConnectors"]}),
    );
    assert_eq!(
        some,
        json!({
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": false, "value": "300"},
                {"key": "NumberOfConnectors", "readonly": true, "value": "2"},
            ],
            "unknownKey": ["NoSuchKey"],
        })
    );

    // ChangeConfiguration (5.3): Accepted, Rejected for a read-only key, NotSupported for an
    // unknown one.
    let change = |k: &str, v: &str| {
        csms.call("ChangeConfiguration", json!({"key": k, "value": v}))["status"].clone()
    };
    assert_eq!(change("NumberOfConnectors", "4"), "Rejected");
    assert_eq!(change("NoSuchKey", "1"), "NotSupported");
    assert_eq!(change("HeartbeatInterval", "often"), "Rejected");
    let before = csms.calls("Heartbeat").len();
    assert_eq!(change("HeartbeatInterval", "2"), "Accepted");
    let got = csms.call("GetConfiguration", json!({"key": ["HeartbeatInterval"]}));
    assert_eq!(key(&got, "HeartbeatInterval")["value"], "2", "{got}");
    let got = csms.call("GetConfiguration", json!({"key": ["NumberOfConnectors"]}));
    assert_eq!(key(&got, "NumberOfConnectors")["value"], "2", "{got}");
    // The new interval takes effect: heartbeats 2 s apart (the CSMS's log times them).
    let beats = csms.wait_calls("Heartbeat", before + 4, Duration::from_secs(20));
    let at = |r: &Value| {
        let t = r["t"].as_str().unwrap();
        let secs: f64 = t[17..t.len() - 1].parse().unwrap();
        let minutes: f64 = t[14..16].parse().unwrap();
        minutes * 60.0 + secs
    };
    // The mean of two gaps after the first beat (which may come early, at the change).
    let gap = (at(&beats[before + 3]) - at(&beats[before + 1])).rem_euclid(3600.0) / 2.0;
    assert!((1.0..4.0).contains(&gap), "{gap} s between heartbeats");
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
    drop(agent);
}

/// Reset of `kind` during a session: Accepted, the agent exits with 75 (systemd restarts it,
/// as for 2.0.1's Reset in e2e_management) and boots again, Available; the StopTransactions
/// the CSMS got for the session (all alike).
fn reset_during_a_session(kind: &str) -> (Csms, Agent, i64, Vec<Value>) {
    let (csms, mut agent) = start("").expect("the peers");
    let id = start_session(&csms, &agent, "1", "TAG1");
    wait_for(T, "charging", || power(&agent, 1).then_some(()));
    let answer = csms.call("Reset", json!({"type": kind}));
    assert_eq!(answer, json!({"status": "Accepted"}));
    assert_eq!(agent.wait_exit(T), Some(75));
    agent.spawn(&[]);
    csms.wait_calls("BootNotification", 2, T);
    agent.wait_ready();
    // After the boot every connector is reported again (4.9), Available.
    wait_for(T, "Available after the reset", || {
        let s = statuses(&csms, 1);
        (s.len() >= 4 && s.last().map(String::as_str) == Some("Available")).then_some(())
    });
    let stops = payloads(&csms, "StopTransaction");
    assert!(!stops.is_empty());
    assert!(stops.iter().all(|s| s == &stops[0]), "{stops:#?}");
    assert_eq!(stops[0]["transactionId"], id);
    assert_eq!(transactions(&csms).len(), 1);
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
    (csms, agent, id, stops)
}

#[test]
fn hard_reset_stops_the_session_with_hard_reset_and_boots_again() {
    if support::peer_command().is_none() {
        return;
    }
    let (_csms, _agent, _, stops) = reset_during_a_session("Hard");
    // 7.37 Reason: HardReset.
    assert_eq!(stops[0]["reason"], "HardReset", "{stops:#?}");
}

#[test]
fn soft_reset_stops_the_session_with_soft_reset_and_boots_again() {
    if support::peer_command().is_none() {
        return;
    }
    let (_csms, _agent, _, stops) = reset_during_a_session("Soft");
    assert_eq!(stops[0]["reason"], "SoftReset", "{stops:#?}");
}

#[test]
fn a_reset_delivers_the_stop_transaction_once() {
    if support::peer_command().is_none() {
        return;
    }
    for kind in ["Hard", "Soft"] {
        let (csms, _agent, id, stops) = reset_during_a_session(kind);
        assert_eq!(stops.len(), 1, "{kind}: {stops:#?}");
        let tx = &transactions(&csms)[0];
        assert_eq!(tx["transaction_id"], id);
        assert_eq!(tx["stops"].as_array().unwrap().len(), 1, "{kind}: {tx}");
    }
}

#[test]
fn availability_unlock_clear_cache_and_trigger_message() {
    let Some((csms, agent)) = start("") else {
        return;
    };
    // ChangeAvailability (5.2).
    let r = csms.call(
        "ChangeAvailability",
        json!({"connectorId": 2, "type": "Inoperative"}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    wait_status(&csms, 2, "Unavailable");
    let r = csms.call(
        "ChangeAvailability",
        json!({"connectorId": 2, "type": "Operative"}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    wait_status(&csms, 2, "Available");
    assert_eq!(
        statuses(&csms, 2),
        ["Available", "Unavailable", "Available"]
    );
    let r = csms.call(
        "ChangeAvailability",
        json!({"connectorId": 7, "type": "Inoperative"}),
    );
    assert_eq!(r, json!({"status": "Rejected"}));

    // UnlockConnector (5.18): the sim connector unlocks; an unknown connector is NotSupported.
    let r = csms.call("UnlockConnector", json!({"connectorId": 1}));
    assert_eq!(r, json!({"status": "Unlocked"}));
    let r = csms.call("UnlockConnector", json!({"connectorId": 7}));
    assert_eq!(r, json!({"status": "NotSupported"}));
    // ClearCache (5.4).
    assert_eq!(
        csms.call("ClearCache", json!({})),
        json!({"status": "Accepted"})
    );

    // TriggerMessage (5.17): each requested message follows its Accepted.
    let trigger = |message: &str, connector: Option<i64>| {
        let mut payload = json!({"requestedMessage": message});
        if let Some(c) = connector {
            payload["connectorId"] = json!(c);
        }
        csms.call("TriggerMessage", payload)
    };
    let before = statuses(&csms, 1).len();
    assert_eq!(
        trigger("StatusNotification", Some(1)),
        json!({"status": "Accepted"})
    );
    wait_for(T, "the triggered status", || {
        (statuses(&csms, 1).len() == before + 1).then_some(())
    });
    assert_eq!(statuses(&csms, 1).last().unwrap(), "Available");
    assert_eq!(trigger("Heartbeat", None), json!({"status": "Accepted"}));
    csms.wait_calls("Heartbeat", 1, T);
    assert!(csms.calls("MeterValues").is_empty());
    assert_eq!(
        trigger("DiagnosticsStatusNotification", None),
        json!({"status": "Accepted"})
    );
    // Nothing uploaded yet: Idle (4.4).
    let d = csms.wait_calls("DiagnosticsStatusNotification", 1, T);
    assert_eq!(d[0]["payload"], json!({"status": "Idle"}));
    // MeterValues of a connector whose meter has a reading (a session on it), context Trigger.
    start_session(&csms, &agent, "1", "TAG1");
    assert_eq!(
        trigger("MeterValues", Some(1)),
        json!({"status": "Accepted"})
    );
    let triggered = wait_for(T, "the triggered meter values", || {
        csms.calls("MeterValues")
            .into_iter()
            .map(|r| r["payload"].clone())
            .find(|p| p["meterValue"][0]["sampledValue"][0]["context"] == "Trigger")
    });
    assert_eq!(triggered["connectorId"], 1, "{triggered}");
    assert_eq!(
        triggered["meterValue"][0]["sampledValue"][0]["measurand"], "Energy.Active.Import.Register",
        "{triggered}"
    );
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}

#[test]
fn a_triggered_boot_notification_is_sent() {
    let Some((csms, _agent)) = start("") else {
        return;
    };
    let r = csms.call(
        "TriggerMessage",
        json!({"requestedMessage": "BootNotification"}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    let boots = csms.wait_calls("BootNotification", 2, T);
    assert_eq!(boots[1]["payload"], boots[0]["payload"]);
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}

#[test]
fn local_list_full_and_differential_and_a_listed_tag_charging_offline() {
    let Some((mut csms, agent)) =
        start("LocalAuthListEnabled = true\nLocalAuthorizeOffline = true")
    else {
        return;
    };
    let accepted = json!({"status": "Accepted"});
    let r = csms.call(
        "SendLocalList",
        json!({"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
            {"idTag": "LOCAL1", "idTagInfo": accepted},
            {"idTag": "LOCAL2", "idTagInfo": accepted},
        ]}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    assert_eq!(
        csms.call("GetLocalListVersion", json!({})),
        json!({"listVersion": 3})
    );
    // Differential (5.15): LOCAL2 without idTagInfo is removed, LOCAL3 added.
    let r = csms.call(
        "SendLocalList",
        json!({"listVersion": 4, "updateType": "Differential", "localAuthorizationList": [
            {"idTag": "LOCAL2"},
            {"idTag": "LOCAL3", "idTagInfo": accepted},
        ]}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    assert_eq!(
        csms.call("GetLocalListVersion", json!({})),
        json!({"listVersion": 4})
    );

    // Offline: a listed tag charges (3.5, LocalAuthorizeOffline), a removed one does not.
    csms.stop();
    wait_for(T, "offline", || {
        (agent.status()["connection"] != "connected").then_some(())
    });
    ctl(&agent, &["plug", "2", "in"]);
    ctl(&agent, &["token", "2", "LOCAL2"]);
    ctl(&agent, &["plug", "1", "in"]);
    ctl(&agent, &["token", "1", "LOCAL3"]);
    wait_for(T, "charging offline", || power(&agent, 1).then_some(()));
    let note = wait_for(T, "LOCAL2 decided", || {
        let note = agent.status()["evses"][1]["last_authorization"].clone();
        note.is_string().then_some(note)
    });
    assert_eq!(note, "rejected: offline");
    assert!(!power(&agent, 2), "LOCAL2 was removed from the list");
    csms.restart();
    let starts = csms.wait_calls("StartTransaction", 1, T);
    assert_eq!(starts[0]["payload"]["idTag"], "LOCAL3");
    assert_eq!(starts[0]["payload"]["connectorId"], 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(csms.calls("StartTransaction").len(), 1);
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}

/// The authorization note of `evse` once it changed from `before`.
fn wait_note(agent: &Agent, evse: usize, before: &Value) -> Value {
    wait_for(T, "an authorization decision", || {
        let note = agent.status()["evses"][evse - 1]["last_authorization"].clone();
        (note.is_string() && &note != before).then_some(note)
    })
}

#[test]
fn clear_cache_forgets_the_cached_tags() {
    let Some((mut csms, agent)) =
        start("AuthorizationCacheEnabled = true\nLocalAuthorizeOffline = true")
    else {
        return;
    };
    // Authorize.conf fills the cache (3.4); presenting the tag again cancels the authorization.
    let present_online = |tag: &str, authorizes: usize| {
        ctl(&agent, &["token", "2", tag]);
        csms.wait_calls("Authorize", authorizes, T);
        wait_for(T, "authorized", || {
            (agent.status()["evses"][1]["last_authorization"] != Value::Null).then_some(())
        });
        ctl(&agent, &["token", "2", tag]);
        wait_for(T, "cancelled", || {
            (agent.status()["evses"][1]["last_authorization"] == "cancelled").then_some(())
        });
    };
    present_online("CACHED1", 1);
    assert_eq!(
        csms.call("ClearCache", json!({})),
        json!({"status": "Accepted"})
    );
    present_online("CACHED2", 2);
    csms.stop();
    wait_for(T, "offline", || {
        (agent.status()["connection"] != "connected").then_some(())
    });
    // Offline: the tag cached after the ClearCache is accepted, the one before it is not.
    ctl(&agent, &["token", "2", "CACHED1"]);
    let note = wait_note(&agent, 2, &json!("cancelled"));
    assert_eq!(note, "rejected: offline");
    ctl(&agent, &["plug", "2", "in"]);
    ctl(&agent, &["token", "2", "CACHED2"]);
    wait_for(T, "charging offline", || power(&agent, 2).then_some(()));
    csms.restart();
    let starts = csms.wait_calls("StartTransaction", 1, T);
    assert_eq!(starts[0]["payload"]["idTag"], "CACHED2");
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}

#[test]
fn a_reservation_serves_its_tag_only_and_is_cancelled() {
    let Some((csms, agent)) = start("") else {
        return;
    };
    let reserve = |id: i64, connector: i64, tag: &str| {
        csms.call(
            "ReserveNow",
            json!({"connectorId": connector, "expiryDate": utc_in_secs(600), "idTag": tag,
                   "reservationId": id}),
        )
    };
    assert_eq!(reserve(7, 1, "RES1"), json!({"status": "Accepted"}));
    wait_status(&csms, 1, "Reserved");
    // Another tag is refused on the reserved connector (5.13): no transaction.
    ctl(&agent, &["plug", "1", "in"]);
    ctl(&agent, &["token", "1", "OTHER"]);
    wait_for(T, "the refusal", || {
        let note = agent.status()["evses"][0]["last_authorization"].clone();
        note.as_str()
            .is_some_and(|n| n.contains("reserved"))
            .then_some(())
    });
    assert!(!power(&agent, 1));
    assert!(csms.calls("StartTransaction").is_empty());
    // The reservation's tag starts, naming the reservation.
    ctl(&agent, &["token", "1", "RES1"]);
    let starts = csms.wait_calls("StartTransaction", 1, T);
    let start = &starts[0]["payload"];
    assert_eq!(
        (
            &start["connectorId"],
            &start["idTag"],
            &start["reservationId"]
        ),
        (&json!(1), &json!("RES1"), &json!(7)),
        "{start}"
    );
    wait_for(T, "charging", || power(&agent, 1).then_some(()));

    // CancelReservation (5.1): Available again; a second cancel knows it no more.
    assert_eq!(reserve(8, 2, "RES2"), json!({"status": "Accepted"}));
    wait_status(&csms, 2, "Reserved");
    let r = csms.call("CancelReservation", json!({"reservationId": 8}));
    assert_eq!(r, json!({"status": "Accepted"}));
    wait_status(&csms, 2, "Available");
    let r = csms.call("CancelReservation", json!({"reservationId": 8}));
    assert_eq!(r, json!({"status": "Rejected"}));
    // The occupied connector cannot be reserved (5.13).
    assert_eq!(reserve(9, 1, "RES3"), json!({"status": "Occupied"}));
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}

fn profile(id: i64, purpose: &str, amps: f64, transaction: Option<i64>) -> Value {
    let mut p = json!({
        "chargingProfileId": id,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": utc_in_secs(-5),
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}],
        },
    });
    if let Some(t) = transaction {
        p["transactionId"] = json!(t);
    }
    p
}

fn limit(agent: &Agent, evse: usize) -> Value {
    agent.status()["evses"][evse - 1]["charging_limit"]["amps"].clone()
}

fn wait_limit(agent: &Agent, evse: usize, amps: f64) {
    wait_for(T, &format!("{amps} A on {evse}"), || {
        (limit(agent, evse) == json!(amps)).then_some(())
    });
}

#[test]
fn charging_profiles_limit_the_connector_and_the_composite_schedule() {
    let Some((csms, agent)) = start("") else {
        return;
    };
    let set = |connector: i64, p: Value| {
        csms.call(
            "SetChargingProfile",
            json!({"connectorId": connector, "csChargingProfiles": p}),
        )["status"]
            .clone()
    };
    // TxDefaultProfile (3.13.2).
    assert_eq!(
        set(1, profile(1, "TxDefaultProfile", 10.0, None)),
        "Accepted"
    );
    wait_limit(&agent, 1, 10.0);
    let composite = csms.call(
        "GetCompositeSchedule",
        json!({"connectorId": 1, "duration": 600, "chargingRateUnit": "A"}),
    );
    assert_eq!(composite["status"], "Accepted", "{composite}");
    assert_eq!(composite["connectorId"], 1, "{composite}");
    let schedule = &composite["chargingSchedule"];
    assert_eq!(schedule["chargingRateUnit"], "A", "{composite}");
    assert_eq!(
        schedule["chargingSchedulePeriod"][0]["limit"], 10.0,
        "{composite}"
    );
    assert!(composite["scheduleStart"].is_string(), "{composite}");

    // TxProfile for the running transaction (3.13.3), then one for an id that is not running.
    let id = start_session(&csms, &agent, "1", "TAG1");
    assert_eq!(set(1, profile(2, "TxProfile", 6.0, Some(id))), "Accepted");
    wait_limit(&agent, 1, 6.0);
    assert_eq!(
        set(1, profile(3, "TxProfile", 8.0, Some(id + 100))),
        "Rejected"
    );
    let composite = csms.call(
        "GetCompositeSchedule",
        json!({"connectorId": 1, "duration": 300, "chargingRateUnit": "A"}),
    );
    assert_eq!(
        composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"], 6.0,
        "{composite}"
    );

    // ClearChargingProfile (5.5): the TxProfile by id, then the rest; an unknown id: Unknown.
    let clear = |payload: Value| csms.call("ClearChargingProfile", payload)["status"].clone();
    assert_eq!(clear(json!({"id": 2})), "Accepted");
    wait_limit(&agent, 1, 10.0);
    assert_eq!(clear(json!({"id": 2})), "Unknown");
    assert_eq!(
        clear(json!({"connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile"})),
        "Accepted"
    );
    wait_for(T, "no profile limit", || {
        (limit(&agent, 1) != json!(10.0)).then_some(())
    });
    assert_eq!(limit(&agent, 1), json!(32.0), "the rating");
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}

/// The agent with a transfer CA, an install command and a diagnostics command, for firmware
/// and log upload over HTTPS (as e2e_firmware and e2e_logs).
struct Files {
    pki: tempfile::TempDir,
    manufacturer: Ca,
    server: FileServer,
    csms: Csms,
    agent: Agent,
}

fn files(image: &[u8]) -> Option<Files> {
    let pki = tempfile::tempdir().unwrap();
    let manufacturer = Ca::new(pki.path(), "manufacturer");
    let web_ca = Ca::new(pki.path(), "web");
    let web = web_ca.issue("web", "/O=Test/CN=localhost", Some("DNS:localhost"), None);
    let root = pki.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("image.bin"), image).unwrap();
    let server = FileServer::start(&root, Some((&web.cert, &web.key)), &[])?;
    let csms = Csms::start_v16(&["--interval", "300"])?;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("install.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\ncp \"$1\" {}\n",
            dir.path().join("installed.bin").display()
        ),
    )
    .unwrap();
    let text = agent_config_v16(dir.path(), &csms.url(), CONFIG).replace(
        "[log]\nfilter = \"debug\"",
        "[log]\nfilter = \"debug\"\ndiagnostics_command = [\"/bin/sh\", \"-c\", \
         \"echo diagnostics line 1\"]",
    ) + &format!(
        "\n[transfer]\nca_file = \"{}\"\n[firmware]\ninstall_command = [\"/bin/sh\", \"{}\"]\n",
        web_ca.cert.display(),
        script.display()
    );
    let agent = Agent::start_with_config(dir, &text, &[]);
    agent.wait_ready();
    csms.wait_calls("BootNotification", 1, T);
    Some(Files {
        pki,
        manufacturer,
        server,
        csms,
        agent,
    })
}

#[test]
fn signed_firmware_update_reports_each_step_with_its_request_id() {
    let image: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let Some(f) = files(&image) else {
        return;
    };
    let csms = &f.csms;
    let signer = f.manufacturer.issue_firmware_signer("signer");
    let image_path = f.pki.path().join("image.bin");
    std::fs::write(&image_path, &image).unwrap();
    let signature = sign_file(&signer.key, &image_path).1;
    let root = std::fs::read_to_string(&f.manufacturer.cert).unwrap();
    let r = csms.call(
        "InstallCertificate",
        json!({"certificateType": "ManufacturerRootCertificate", "certificate": root}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));

    // Whitepaper L01.FR.20: plain UpdateFirmware is NotSupported when only signed firmware is
    // installed (the default), and starts nothing.
    let answer = csms.admin(admin_call(
        "UpdateFirmware",
        json!({"location": f.server.url("image.bin"), "retrieveDate": utc_in_secs(-1)}),
    ));
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error_code"], "NotSupported", "{answer}");

    let r = csms.call(
        "SignedUpdateFirmware",
        json!({
            "requestId": 17,
            "retries": 1,
            "retryInterval": 1,
            "firmware": {
                "location": f.server.url("image.bin"),
                "retrieveDateTime": utc_in_secs(-1),
                "signingCertificate": std::fs::read_to_string(&signer.cert).unwrap(),
                "signature": signature,
            },
        }),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    let seen = wait_for(T, "Installed", || {
        let s = payloads(csms, "SignedFirmwareStatusNotification");
        s.iter().any(|p| p["status"] == "Installed").then_some(s)
    });
    assert!(seen.iter().all(|p| p["requestId"] == 17), "{seen:?}");
    let names: Vec<&str> = seen.iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "Installed"
        ]
    );
    let installed = std::fs::read(f.agent.dir.path().join("installed.bin")).unwrap();
    assert!(installed == image, "the installed image is the served one");
    assert!(csms.calls("FirmwareStatusNotification").is_empty());
    wait_for(T, "the FirmwareUpdated security event", || {
        payloads(csms, "SecurityEventNotification")
            .iter()
            .any(|e| e["type"] == "FirmwareUpdated")
            .then_some(())
    });
    assert!(errors(csms).is_empty(), "{:?}", errors(csms));
}

#[test]
fn get_diagnostics_and_get_log_upload_with_their_notifications() {
    let Some(f) = files(b"unused") else {
        return;
    };
    let csms = &f.csms;
    // GetDiagnostics (5.9): the fileName, then Uploading and Uploaded (4.4).
    let r = csms.call(
        "GetDiagnostics",
        json!({"location": f.server.url("upload/"), "retries": 0}),
    );
    let name = r["fileName"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(!name.is_empty());
    let d = wait_for(T, "Uploaded", || {
        let d = payloads(csms, "DiagnosticsStatusNotification");
        d.iter().any(|p| p["status"] != "Uploading").then_some(d)
    });
    assert_eq!(
        d,
        [
            json!({"status": "Uploading"}),
            json!({"status": "Uploaded"})
        ]
    );
    let body = f
        .server
        .uploaded(name)
        .unwrap_or_else(|| panic!("{name} not uploaded: {:?}", f.server.requests()));
    assert!(
        String::from_utf8_lossy(&body).contains("diagnostics line 1"),
        "{body:?}"
    );

    // GetLog (whitepaper N01): the security log, LogStatusNotification with its requestId.
    let r = csms.call(
        "GetLog",
        json!({"logType": "SecurityLog", "requestId": 5, "retries": 0,
               "log": {"remoteLocation": f.server.url("upload/")}}),
    );
    assert_eq!(r["status"], "Accepted", "{r}");
    let filename = r["filename"].as_str().unwrap().to_owned();
    let l = wait_for(T, "the log Uploaded", || {
        let l = payloads(csms, "LogStatusNotification");
        l.iter().any(|p| p["status"] != "Uploading").then_some(l)
    });
    assert_eq!(
        l,
        [
            json!({"status": "Uploading", "requestId": 5}),
            json!({"status": "Uploaded", "requestId": 5})
        ]
    );
    let log = f.server.uploaded(&filename).unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("StartupOfTheDevice"),
        "{log:?}"
    );
    assert!(errors(csms).is_empty(), "{:?}", errors(csms));
}

#[test]
fn security_events_certificates_and_a_signed_charge_point_certificate() {
    let Some((csms, agent)) = start(r#"CpoName = "Test CSO""#) else {
        return;
    };
    // Whitepaper 2.3 / A.4: StartupOfTheDevice at start-up.
    let events = wait_for(T, "the start-up security event", || {
        let e = payloads(&csms, "SecurityEventNotification");
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(events[0]["type"], "StartupOfTheDevice", "{events:?}");
    assert!(events[0]["timestamp"].is_string());

    // Certificate management (whitepaper 4.1-4.3).
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "cso");
    let root = std::fs::read_to_string(&ca.cert).unwrap();
    let r = csms.call(
        "InstallCertificate",
        json!({"certificateType": "CentralSystemRootCertificate", "certificate": root}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    let ids = csms.call(
        "GetInstalledCertificateIds",
        json!({"certificateType": "CentralSystemRootCertificate"}),
    );
    assert_eq!(ids["status"], "Accepted", "{ids}");
    let hashes = ids["certificateHashData"].as_array().unwrap();
    assert_eq!(hashes.len(), 1, "{ids}");
    let hash = hashes[0].clone();
    // openssl's hash data; the serial in hex without leading zeroes (whitepaper,
    // CertificateHashDataType).
    let mut want = support::pki::openssl_hash_data(&ca.cert, &ca.cert);
    want["serialNumber"] = json!(
        want["serialNumber"]
            .as_str()
            .unwrap()
            .trim_start_matches('0')
    );
    assert_eq!(hash, want);
    let none = csms.call(
        "GetInstalledCertificateIds",
        json!({"certificateType": "ManufacturerRootCertificate"}),
    );
    assert_eq!(none, json!({"status": "NotFound"}));
    // ExtendedTriggerMessage SignChargePointCertificate -> SignCertificate (whitepaper 3.2).
    let r = csms.call(
        "ExtendedTriggerMessage",
        json!({"requestedMessage": "SignChargePointCertificate"}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    let sign = csms.wait_calls("SignCertificate", 1, T);
    let csr = sign[0]["payload"]["csr"].as_str().unwrap().to_owned();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    // The CSMS signs it: CertificateSigned.
    let chain = ca.sign_csr("station", &csr);
    let r = csms.call("CertificateSigned", json!({"certificateChain": chain}));
    assert_eq!(r, json!({"status": "Accepted"}));
    wait_for(T, "the station certificate stored", || {
        agent
            .dir
            .path()
            .join("certs/station-cert.pem")
            .is_file()
            .then_some(())
    });
    // DeleteCertificate (whitepaper 4.2): the root goes, a second delete finds nothing.
    let r = csms.call("DeleteCertificate", json!({"certificateHashData": hash}));
    assert_eq!(r, json!({"status": "Accepted"}));
    let r = csms.call("DeleteCertificate", json!({"certificateHashData": hash}));
    assert_eq!(r, json!({"status": "NotFound"}));

    // ExtendedTriggerMessage of a status for one connector.
    let before = statuses(&csms, 2).len();
    let r = csms.call(
        "ExtendedTriggerMessage",
        json!({"requestedMessage": "StatusNotification", "connectorId": 2}),
    );
    assert_eq!(r, json!({"status": "Accepted"}));
    wait_for(T, "the triggered status", || {
        (statuses(&csms, 2).len() == before + 1).then_some(())
    });
    assert!(errors(&csms).is_empty(), "{:?}", errors(&csms));
}
