//! End-to-end remote management against the independent peers: device model over OCPP
//! (persisted across restarts), base reports, availability, TriggerMessage, and Reset ending
//! with the exit code that makes systemd restart the agent.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, Csms, admin_call, call_response, wait_for};

const T: Duration = Duration::from_secs(30);

#[test]
fn device_model_reports_availability_trigger_and_reset() {
    let Some(csms) = Csms::start(&["--interval", "300"]) else {
        return;
    };
    let mut agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    wait_for(T, "statuses", || {
        (csms.calls("StatusNotification").len() >= 2).then_some(())
    });

    // SetVariables / GetVariables.
    let set = call_response(csms.admin(admin_call(
        "SetVariables",
        json!({"setVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "2"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"}, "attributeValue": "5"}
        ]}),
    )));
    assert_eq!(set["setVariableResult"][0]["attributeStatus"], "Accepted");
    assert_eq!(set["setVariableResult"][1]["attributeStatus"], "Rejected");
    let before = csms.calls("Heartbeat").len();
    csms.wait_calls("Heartbeat", before + 2, T);

    // The device model through ctl.
    let vars = agent.ctl_json(&["variables", "OCPPCommCtrlr"]);
    let hb = vars
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variable"]["name"] == "HeartbeatInterval")
        .unwrap();
    assert_eq!(hb["variableAttribute"][0]["value"], "2");

    // GetBaseReport: NotifyReport messages, validated by the peer.
    let report = call_response(csms.admin(admin_call(
        "GetBaseReport",
        json!({"requestId": 42, "reportBase": "FullInventory"}),
    )));
    assert_eq!(report["status"], "Accepted");
    let reports = wait_for(T, "the whole report", || {
        let r = csms.calls("NotifyReport");
        r.last()
            .filter(|last| last["payload"]["tbc"].is_null())
            .map(|_| r.clone())
    });
    assert!(reports.len() >= 3);
    assert!(reports.iter().all(|r| r["payload"]["requestId"] == 42));

    // ChangeAvailability: the connector goes Unavailable.
    let change = call_response(csms.admin(admin_call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 2}}),
    )));
    assert_eq!(change["status"], "Accepted");
    wait_for(T, "Unavailable", || {
        csms.calls("StatusNotification")
            .iter()
            .any(|r| {
                r["payload"]["evseId"] == 2 && r["payload"]["connectorStatus"] == "Unavailable"
            })
            .then_some(())
    });

    // TriggerMessage.
    let trigger = call_response(csms.admin(admin_call(
        "TriggerMessage",
        json!({"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}),
    )));
    assert_eq!(trigger["status"], "Accepted");

    // The value set by the CSMS and the availability survive a restart.
    agent.kill9();
    agent.spawn(&[]);
    agent.wait_ready();
    csms.wait_calls("BootNotification", 2, T);
    let get = call_response(csms.admin(admin_call(
        "GetVariables",
        json!({"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "Available"}}
        ]}),
    )));
    assert_eq!(get["getVariableResult"][0]["attributeValue"], "2");
    assert_eq!(get["getVariableResult"][1]["attributeValue"], "false");

    // Reset: the agent exits with 75 (systemd restarts it) and boots with RemoteReset.
    let reset = call_response(csms.admin(admin_call("Reset", json!({"type": "Immediate"}))));
    assert_eq!(reset["status"], "Accepted");
    assert_eq!(agent.wait_exit(T), Some(75));
    agent.spawn(&[]);
    let boots = csms.wait_calls("BootNotification", 3, T);
    assert_eq!(boots.last().unwrap()["payload"]["reason"], "RemoteReset");
    let kinds: Vec<Value> = wait_for(T, "the security events", || {
        let e: Vec<Value> = csms
            .calls("SecurityEventNotification")
            .iter()
            .map(|r| r["payload"]["type"].clone())
            .collect();
        e.contains(&json!("ResetOrReboot")).then_some(e)
    });
    assert!(kinds.contains(&json!("StartupOfTheDevice")), "{kinds:?}");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn unknown_and_unsupported_actions_and_bad_payloads() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    // A known action the agent does not do yet: NotSupported, never silence.
    let answer = csms.admin(json!({"cmd": "raw", "station": "CP001",
        "frame": "[2,\"x1\",\"SetMonitoringLevel\",{\"severity\":3}]"}));
    assert!(answer.to_string().contains("NotSupported"), "{answer}");
    let answer = csms.admin(json!({"cmd": "raw", "station": "CP001",
        "frame": "[2,\"x2\",\"Teleport\",{}]"}));
    assert!(answer.to_string().contains("NotImplemented"), "{answer}");
    let answer = csms.admin(json!({"cmd": "raw", "station": "CP001",
        "frame": "[2,\"x3\",\"GetVariables\",{\"getVariableData\":\"all\"}]"}));
    assert!(
        answer.to_string().contains("TypeConstraintViolation"),
        "{answer}"
    );
    // Still healthy.
    assert_eq!(agent.status()["connection"], "connected");
}

#[test]
fn a_broken_gpio_plug_line_faults_its_connector_and_nothing_else() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // EVSE 2's plug input names a GPIO chip this machine does not have.
    let text = support::agent_config(dir.path(), &csms.url(), "").replacen(
        "id = 2\nplug = { backend = \"sim\" }",
        "id = 2\nplug = { backend = \"gpio\", chip = \"/dev/gpiochip-missing\", line = 3 }",
        1,
    );
    assert!(text.contains("gpiochip-missing"));
    let agent = Agent::start_with_config(dir, &text, &[]);
    agent.wait_ready();
    wait_for(T, "Faulted", || {
        csms.calls("StatusNotification")
            .iter()
            .any(|r| r["payload"]["evseId"] == 2 && r["payload"]["connectorStatus"] == "Faulted")
            .then_some(())
    });
    let event = wait_for(T, "the NotifyEvent", || csms.calls("NotifyEvent").pop());
    let data = &event["payload"]["eventData"][0];
    assert_eq!(data["component"]["name"], "Connector");
    assert_eq!(data["variable"]["name"], "Problem");
    assert_eq!(data["actualValue"], "true");
    // EVSE 1 is unaffected.
    agent.ctl_json(&["plug", "1", "in"]);
    agent.ctl_json(&["token", "1", "T"]);
    wait_for(T, "charging on EVSE 1", || {
        (agent.status()["evses"][0]["power_path_closed"] == true).then_some(())
    });
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn basic_auth_password_change_reconnects_and_survives_a_restart() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let mut agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    let new_password = "Rotated-Secret-4711";
    let answer = call_response(csms.admin(admin_call(
        "SetVariables",
        json!({"setVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": new_password}
        ]}),
    )));
    assert_eq!(
        answer["setVariableResult"][0]["attributeStatus"],
        "Accepted"
    );
    // A01.FR.03: the CSMS now only accepts the new password.
    let set = csms.admin(json!({"cmd": "set", "password": new_password}));
    assert_eq!(set["ok"], true, "{set}");
    let reconnected = wait_for(T, "a reconnection with the new password", || {
        csms.events("connected").into_iter().nth(1)
    });
    assert_eq!(reconnected["auth_ok"], true);
    // A restart keeps the new password.
    agent.kill9();
    agent.spawn(&[]);
    wait_for(T, "a third connection", || {
        csms.events("connected").into_iter().nth(2)
    });
    csms.wait_calls("BootNotification", 2, T);
    // Never refused for its credentials. (A handshake the kill -9 cut short is logged by
    // ocpp-rpc as a rejected upgrade with ECONNRESET: not a refusal.)
    let refused: Vec<Value> = csms
        .events("rejected")
        .into_iter()
        .filter(|e| e["http_status"] != "ECONNRESET")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    // Never in the agent's log (A01.FR.12), never shown by ctl.
    assert!(!agent.log().contains(new_password));
    let model = agent.ctl_json(&["variables", "SecurityCtrlr"]).to_string();
    assert!(!model.contains(new_password));
}

#[test]
fn set_network_profile_moves_the_station_and_falls_back() {
    let (Some(a), Some(mut b)) = (Csms::start(&[]), Csms::start(&[])) else {
        return;
    };
    let mut agent = Agent::start(
        &a.url(),
        r#""OCPPCommCtrlr.NetworkProfileConnectionAttempts" = 1"#,
    );
    a.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    let answer = call_response(a.admin(admin_call(
        "SetNetworkProfile",
        json!({"configurationSlot": 2, "connectionData": {
            "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": b.url(),
            "messageTimeout": 30, "securityProfile": 1, "ocppInterface": "Wired0"}}),
    )));
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let answer = call_response(a.admin(admin_call(
        "SetVariables",
        json!({"setVariableData": [{"component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "NetworkConfigurationPriority"}, "attributeValue": "2,1"}]}),
    )));
    assert_eq!(
        answer["setVariableResult"][0]["attributeStatus"],
        "RebootRequired"
    );
    // B10.FR.05: the new first entry after a reboot.
    let reset = call_response(a.admin(admin_call("Reset", json!({"type": "Immediate"}))));
    assert_eq!(reset["status"], "Accepted");
    assert_eq!(agent.wait_exit(T), Some(75));
    agent.spawn(&[]);
    let boots = b.wait_calls("BootNotification", 1, T);
    assert_eq!(boots[0]["payload"]["reason"], "RemoteReset");
    // B is gone: after its attempt the agent tries slot 1 (A) and stays there.
    b.stop();
    a.wait_calls("BootNotification", 2, Duration::from_secs(60));
    wait_for(T, "connected to A again", || {
        (agent.status()["connection"] == "connected").then_some(())
    });
    assert_eq!(a.errors_sent(), Vec::<Value>::new());
}

/// The NotifyReport messages of one report, once its last (no `tbc`) arrived.
fn whole_report(csms: &Csms, request_id: i64) -> Vec<Value> {
    wait_for(T, &format!("report {request_id}"), || {
        let r: Vec<Value> = csms
            .calls("NotifyReport")
            .into_iter()
            .filter(|r| r["payload"]["requestId"] == request_id)
            .collect();
        r.iter().any(|m| m["payload"]["tbc"].is_null()).then_some(r)
    })
}

fn entry_keys(reports: &[Value]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| r["payload"]["reportData"].as_array().unwrap().clone())
        .map(|d| {
            let evse = &d["component"]["evse"];
            format!(
                "{}{}{}.{}{}",
                d["component"]["name"].as_str().unwrap(),
                evse["id"]
                    .as_i64()
                    .map(|e| format!("@{e}"))
                    .unwrap_or_default(),
                evse["connectorId"]
                    .as_i64()
                    .map(|c| format!("/{c}"))
                    .unwrap_or_default(),
                d["variable"]["name"].as_str().unwrap(),
                d["variable"]["instance"]
                    .as_str()
                    .map(|i| format!("[{i}]"))
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn get_report_filters_criteria_and_pages() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    // EVSE 2's plug input names a GPIO chip this machine does not have: its connector is
    // faulted from the start (a Problem to report). Small pages: 3 entries, 1500 bytes.
    let dir = tempfile::tempdir().unwrap();
    let text = support::agent_config(
        dir.path(),
        &csms.url(),
        "\"DeviceDataCtrlr.ItemsPerMessage[GetReport]\" = 3\n\
         \"DeviceDataCtrlr.BytesPerMessage[GetReport]\" = 1500",
    )
    .replacen(
        "id = 2\nplug = { backend = \"sim\" }",
        "id = 2\nplug = { backend = \"gpio\", chip = \"/dev/gpiochip-missing\", line = 3 }",
        1,
    );
    assert!(text.contains("gpiochip-missing"));
    let agent = Agent::start_with_config(dir, &text, &[]);
    agent.wait_ready();
    wait_for(T, "the fault's NotifyEvent", || {
        csms.calls("NotifyEvent").pop()
    });

    // TC_B_54_CS: every instance of ItemsPerMessage, then all of DeviceDataCtrlr in 3 pages.
    let answer = call_response(csms.admin(admin_call(
        "GetReport",
        json!({"requestId": 1, "componentVariable": [
            {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}}]}),
    )));
    assert_eq!(answer["status"], "Accepted");
    assert_eq!(
        entry_keys(&whole_report(&csms, 1)),
        [
            "DeviceDataCtrlr.ItemsPerMessage[GetReport]",
            "DeviceDataCtrlr.ItemsPerMessage[GetVariables]",
            "DeviceDataCtrlr.ItemsPerMessage[SetVariables]"
        ]
    );
    call_response(csms.admin(admin_call(
        "GetReport",
        json!({"requestId": 2, "componentVariable": [{"component": {"name": "DeviceDataCtrlr"}}]}),
    )));
    let pages = whole_report(&csms, 2);
    let sizes: Vec<usize> = pages
        .iter()
        .map(|r| r["payload"]["reportData"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 2]);
    for (i, r) in pages.iter().enumerate() {
        assert_eq!(r["payload"]["seqNo"], i, "B08.FR.14");
        assert_eq!(
            r["payload"]["tbc"].as_bool(),
            (i + 1 < pages.len()).then_some(true)
        );
    }

    // B08.FR.10: Problem, the faulted connector, its EVSE and the station.
    let answer = call_response(csms.admin(admin_call(
        "GetReport",
        json!({"requestId": 3, "componentCriteria": ["Problem"]}),
    )));
    assert_eq!(answer["status"], "Accepted");
    let keys = entry_keys(&whole_report(&csms, 3));
    assert!(
        keys.contains(&"Connector@2/1.Problem".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"EVSE@2.AvailabilityState".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"ChargingStation.Problem".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("Connector@2/1.")
            || k.starts_with("EVSE@2.")
            || k.starts_with("ChargingStation.")),
        "{keys:?}"
    );
    // TC_B_18_CS: EVSE 1 has no problem; it is Available.
    let evse1 = json!([{"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]);
    let answer = call_response(csms.admin(admin_call(
        "GetReport",
        json!({"requestId": 4, "componentCriteria": ["Problem"], "componentVariable": evse1}),
    )));
    assert_eq!(answer["status"], "EmptyResultSet", "B08.FR.15");
    let answer = call_response(csms.admin(admin_call(
        "GetReport",
        json!({"requestId": 5, "componentCriteria": ["Available"], "componentVariable": evse1}),
    )));
    assert_eq!(answer["status"], "Accepted");
    let report = whole_report(&csms, 5);
    assert_eq!(entry_keys(&report), ["EVSE@1.AvailabilityState"]);
    let data = &report[0]["payload"]["reportData"][0];
    assert_eq!(data["variableCharacteristics"]["dataType"], "OptionList");
    assert_eq!(data["variableAttribute"][0]["value"], "Available");

    // Everything, within BytesPerMessage[GetReport] per frame (the agent's ids are UUIDs).
    call_response(csms.admin(admin_call("GetReport", json!({"requestId": 6}))));
    let pages = whole_report(&csms, 6);
    assert!(pages.len() > 10, "{} pages", pages.len());
    for r in &pages {
        let frame = json!([
            2,
            "00000000-0000-4000-8000-000000000000",
            "NotifyReport",
            r["payload"]
        ]);
        assert!(frame.to_string().len() <= 1500, "{frame}");
    }
    assert!(
        csms.calls("NotifyReport")
            .iter()
            .all(|r| r["payload"]["requestId"] != 4)
    );
    // Both peers validate every NotifyReport against the official schema.
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
