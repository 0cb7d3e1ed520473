//! Remote management in the core: the device model over OCPP (B05-B07), Reset (B11/B12),
//! ChangeAvailability (G03/G04), TriggerMessage (F06), UnlockConnector (F05), DataTransfer
//! (P01), the local authorization list (D01/D02), NotifyEvent, and security events.

use ocpp_agent::ocpp::blocks::data_transfer::DataTransferHandler;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::testkit::{Harness, config_with, default_config};
use ocpp_agent::ocpp::v201;
use serde_json::{Value, json};
use std::sync::Arc;

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn error_code(frame: &Frame) -> String {
    match frame {
        Frame::CallError { code, .. } => code.clone(),
        other => panic!("expected a CALLERROR, got {other:?}"),
    }
}

fn get(h: &mut Harness, items: Value) -> Vec<Value> {
    let r = result(h.call("GetVariables", json!({ "getVariableData": items })));
    r["getVariableResult"].as_array().unwrap().clone()
}

fn set(h: &mut Harness, items: Value) -> Vec<Value> {
    let r = result(h.call("SetVariables", json!({ "setVariableData": items })));
    r["setVariableResult"].as_array().unwrap().clone()
}

#[test]
fn get_variables_answers_every_status() {
    let mut h = Harness::new(config_with(&[("OCPPCommCtrlr.HeartbeatInterval", "120")]));
    h.plug(2, 2, true);
    let results = get(
        &mut h,
        json!([
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"}},
            {"component": {"name": "Nope"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Nope"}},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeType": "Target"},
            {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "AvailabilityState"}},
            {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 2}}, "variable": {"name": "AvailabilityState"}},
            {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 9}}, "variable": {"name": "AvailabilityState"}},
            {"component": {"name": "EVSE"}, "variable": {"name": "Power"}},
            {"component": {"name": "ClockCtrlr"}, "variable": {"name": "DateTime"}},
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "SecurityProfile"}}
        ]),
    );
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["attributeStatus"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "Accepted",
            "Accepted",
            "UnknownComponent",
            "UnknownVariable",
            "NotSupportedAttributeType",
            "Accepted",
            "Accepted",
            "UnknownComponent",
            "UnknownComponent",
            "Accepted",
            "Accepted"
        ]
    );
    // B06.FR.11: Actual when absent; B06.FR.06-08: no value unless Accepted.
    assert_eq!(results[0]["attributeType"], "Actual");
    assert_eq!(results[0]["attributeValue"], "120");
    assert_eq!(results[1]["attributeValue"], "30");
    assert!(results[2].get("attributeValue").is_none());
    assert_eq!(results[5]["attributeValue"], "Occupied");
    assert_eq!(results[6]["attributeValue"], "Occupied");
    assert!(
        results[9]["attributeValue"]
            .as_str()
            .unwrap()
            .starts_with("2025-01-01T")
    );
    assert_eq!(results[10]["attributeValue"], "1");
    // B06.FR.02: the same component/variable back.
    assert_eq!(results[7]["component"]["evse"]["connectorId"], 9);

    // B06.FR.16: more items than ItemsPerMessage[GetVariables] (50).
    let many: Vec<Value> = (0..51)
        .map(|_| json!({"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}))
        .collect();
    let answer = h.call("GetVariables", json!({ "getVariableData": many }));
    assert_eq!(error_code(&answer), "OccurrenceConstraintViolation");
}

#[test]
fn set_variables_answers_every_status_and_values_persist() {
    let mut h = Harness::new(default_config());
    let results = set(
        &mut h,
        json!([
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "45"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "soon"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "WebSocketPingInterval"}, "attributeValue": "99999"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"}, "attributeValue": "10"},
            {"component": {"name": "Nope"}, "variable": {"name": "X"}, "attributeValue": "1"},
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "Nope"}, "attributeValue": "1"},
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}, "attributeValue": "Authorized", "attributeType": "MaxSet"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}, "attributeValue": "1"},
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}, "attributeValue": "Authorized"}
        ]),
    );
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["attributeStatus"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "Accepted",
            "Rejected",
            "Rejected",
            "Rejected",
            "UnknownComponent",
            "UnknownVariable",
            "NotSupportedAttributeType",
            "RebootRequired",
            "Accepted"
        ]
    );
    assert_eq!(results[3]["attributeStatusInfo"]["reasonCode"], "ReadOnly");
    // The new heartbeat interval is in force at once (it replaces the boot's 300 s).
    let before = h.csms.of("Heartbeat").len();
    h.advance_secs(46);
    assert_eq!(h.csms.of("Heartbeat").len(), before + 1);
    // The new TxStartPoint too: a plug-in alone no longer starts a transaction.
    h.plug(1, 1, true);
    assert!(h.csms.of("TransactionEvent").is_empty());
    // ... and both survive a restart.
    h.plug(1, 1, false);
    h.power_cycle(true);
    let values = get(
        &mut h,
        json!([
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}}
        ]),
    );
    assert_eq!(values[0]["attributeValue"], "45");
    assert_eq!(values[1]["attributeValue"], "Authorized");
}

#[test]
fn base_reports_are_split_by_items_per_message() {
    let mut h = Harness::new(default_config());
    let answer = result(h.call(
        "GetBaseReport",
        json!({"requestId": 7, "reportBase": "FullInventory"}),
    ));
    assert_eq!(answer["status"], "Accepted");
    let reports: Vec<Value> = h
        .csms
        .of("NotifyReport")
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    assert!(reports.len() >= 3, "{} reports", reports.len());
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["requestId"], 7);
        assert_eq!(r["seqNo"], i);
        assert!(r["reportData"].as_array().unwrap().len() <= 20);
        assert_eq!(
            r.get("tbc").is_some(),
            i + 1 < reports.len(),
            "B07.FR.10/tbc"
        );
    }
    let items: Vec<&Value> = reports
        .iter()
        .flat_map(|r| r["reportData"].as_array().unwrap())
        .collect();
    let has = |component: &str, variable: &str| {
        items
            .iter()
            .any(|d| d["component"]["name"] == component && d["variable"]["name"] == variable)
    };
    assert!(has("OCPPCommCtrlr", "HeartbeatInterval"));
    assert!(has("ClockCtrlr", "DateTime"));
    // Per-connector components, one entry per connector (3 here).
    let connectors = items
        .iter()
        .filter(|d| {
            d["component"]["name"] == "Connector" && d["variable"]["name"] == "AvailabilityState"
        })
        .count();
    assert_eq!(connectors, 3);
    let heartbeat = items
        .iter()
        .find(|d| d["variable"]["name"] == "HeartbeatInterval")
        .unwrap();
    assert_eq!(heartbeat["variableAttribute"][0]["mutability"], "ReadWrite");
    assert_eq!(heartbeat["variableCharacteristics"]["dataType"], "integer");
    assert_eq!(heartbeat["variableCharacteristics"]["unit"], "s");

    // ConfigurationInventory: only what can be set.
    result(h.call(
        "GetBaseReport",
        json!({"requestId": 8, "reportBase": "ConfigurationInventory"}),
    ));
    let config_items: Vec<Value> = h
        .csms
        .of("NotifyReport")
        .iter()
        .filter(|r| r.payload["requestId"] == 8)
        .flat_map(|r| r.payload["reportData"].as_array().unwrap().clone())
        .collect();
    assert!(!config_items.is_empty());
    assert!(
        config_items
            .iter()
            .all(|d| d["variableAttribute"][0]["mutability"] != "ReadOnly")
    );
    // SummaryInventory: availability.
    result(h.call(
        "GetBaseReport",
        json!({"requestId": 9, "reportBase": "SummaryInventory"}),
    ));
    let summary: Vec<Value> = h
        .csms
        .of("NotifyReport")
        .iter()
        .filter(|r| r.payload["requestId"] == 9)
        .flat_map(|r| r.payload["reportData"].as_array().unwrap().clone())
        .collect();
    assert!(summary.iter().all(|d| {
        ["AvailabilityState", "Available", "Problem"]
            .contains(&d["variable"]["name"].as_str().unwrap())
    }));
}

#[test]
fn a_pending_station_answers_reports_and_triggers() {
    let mut h = Harness::new_with(default_config(), |c| c.boot_status = "Pending");
    result(h.call(
        "GetBaseReport",
        json!({"requestId": 1, "reportBase": "FullInventory"}),
    ));
    assert!(
        !h.csms.of("NotifyReport").is_empty(),
        "B02.FR.02: triggered messages may go out"
    );
    let r = result(h.call(
        "TriggerMessage",
        json!({"requestedMessage": "BootNotification"}),
    ));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(h.csms.of("BootNotification").len(), 2);
    // Nothing untriggered went out.
    assert!(h.csms.of("StatusNotification").is_empty());
}

#[test]
fn reset_ends_transactions_and_restarts_with_remote_reset() {
    let mut h = Harness::new(default_config());
    h.plug(1, 1, true);
    h.token(1, "T");
    let r = result(h.call("Reset", json!({"type": "Immediate"})));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(h.reboots, 1);
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["eventType"], "Ended");
    assert_eq!(ended["triggerReason"], "ResetCommand");
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "ImmediateReset");
    assert!(
        h.csms
            .of("SecurityEventNotification")
            .iter()
            .any(|r| r.payload["type"] == "ResetOrReboot")
    );
    h.power_cycle(true);
    let boots = h.csms.of("BootNotification");
    assert_eq!(boots.last().unwrap().payload["reason"], "RemoteReset");
    // Only once: the next start is a power-up again.
    h.power_cycle(true);
    assert_eq!(
        h.csms.of("BootNotification").last().unwrap().payload["reason"],
        "PowerUp"
    );
}

#[test]
fn reset_on_idle_waits_for_the_transaction() {
    let mut h = Harness::new(default_config());
    h.plug(2, 1, true);
    let r = result(h.call("Reset", json!({"type": "OnIdle"})));
    assert_eq!(r["status"], "Scheduled");
    assert_eq!(h.reboots, 0);
    h.plug(2, 1, false);
    assert_eq!(h.reboots, 1, "reset once the transaction ended");
    // An EVSE reset ends only that EVSE's transaction, without restarting the agent.
    let mut h = Harness::new(default_config());
    h.plug(1, 1, true);
    h.plug(2, 1, true);
    let r = result(h.call("Reset", json!({"type": "Immediate", "evseId": 2})));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(h.reboots, 0);
    let ended: Vec<Value> = h
        .events()
        .into_iter()
        .filter(|e| e["eventType"] == "Ended")
        .cloned()
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(
        ended[0]["transactionInfo"]["stoppedReason"],
        "ImmediateReset"
    );
    let r = result(h.call("Reset", json!({"type": "Immediate", "evseId": 9})));
    assert_eq!(r["status"], "Rejected");
}

#[test]
fn change_availability_is_reported_enforced_and_persistent() {
    let mut h = Harness::new(default_config());
    let before = h.csms.statuses().len();
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 1}}),
    ));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(
        h.csms.statuses()[before..],
        [(1, 1, "Unavailable".to_string())]
    );
    // An inoperative EVSE does not charge.
    h.plug(1, 1, true);
    h.token(1, "T");
    assert!(!h.power_path(1));
    assert!(h.csms.of("TransactionEvent").is_empty());
    h.plug(1, 1, false);
    // G03.FR.03: the state it already is in.
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 1}}),
    ));
    assert_eq!(r["status"], "Accepted");
    // G03.FR.08: it survives a restart.
    h.power_cycle(false);
    h.advance_secs(5);
    let s = h.station.snapshot(h.now);
    assert_eq!(s.evses[0].connectors[0].status, "Unavailable");
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Operative", "evse": {"id": 1}}),
    ));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(
        h.csms.statuses().last().unwrap(),
        &(1, 1, "Available".to_string())
    );

    // G03.FR.05: with a transaction running: Scheduled, applied when it ends.
    h.plug(2, 1, true);
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 2}}),
    ));
    assert_eq!(r["status"], "Scheduled");
    assert_eq!(
        h.station.snapshot(h.now).evses[1].connectors[0].status,
        "Occupied"
    );
    h.plug(2, 1, false);
    assert_eq!(
        h.station.snapshot(h.now).evses[1].connectors[0].status,
        "Unavailable"
    );
    assert_eq!(
        h.station.snapshot(h.now).evses[1].connectors[1].status,
        "Unavailable"
    );

    // G04: the whole station; then a connector alone.
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative"}),
    ));
    assert_eq!(r["status"], "Accepted");
    assert!(
        h.station
            .snapshot(h.now)
            .evses
            .iter()
            .all(|e| e.connectors.iter().all(|c| c.status == "Unavailable"))
    );
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 5}}),
    ));
    assert_eq!(r["status"], "Rejected");
}

#[test]
fn trigger_message_sends_what_was_asked() {
    let mut h = Harness::new(config_with(&[(
        "AlignedDataCtrlr.Measurands",
        "Energy.Active.Import.Register,Voltage",
    )]));
    let trigger = |h: &mut Harness, payload: Value| {
        result(h.call("TriggerMessage", payload))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "BootNotification"})),
        "Rejected",
        "F06.FR.17"
    );
    let hb = h.csms.of("Heartbeat").len();
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "Heartbeat"})),
        "Accepted"
    );
    assert_eq!(h.csms.of("Heartbeat").len(), hb + 1);
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "StatusNotification"})),
        "Rejected",
        "F06.FR.12"
    );
    let st = h.csms.statuses().len();
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 2}})
        ),
        "Accepted"
    );
    assert_eq!(h.csms.statuses()[st..], [(2, 2, "Available".to_string())]);
    h.advance_secs(1); // meters report
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "MeterValues", "evse": {"id": 1}})
        ),
        "Accepted"
    );
    let mv = h.csms.of("MeterValues");
    assert_eq!(mv.len(), 1);
    assert_eq!(
        mv[0].payload["meterValue"][0]["sampledValue"][1]["measurand"],
        "Voltage"
    );
    assert_eq!(
        mv[0].payload["meterValue"][0]["sampledValue"][0]["context"],
        "Trigger"
    );
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "TransactionEvent"})),
        "Rejected"
    );
    h.plug(1, 1, true);
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "TransactionEvent", "evse": {"id": 1}})
        ),
        "Accepted"
    );
    let last = h.events().last().cloned().cloned().unwrap();
    assert_eq!(last["triggerReason"], "Trigger");
    assert!(
        last["transactionInfo"]["chargingState"].is_string(),
        "F06.FR.07"
    );
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "LogStatusNotification"})),
        "Accepted"
    );
    assert_eq!(
        h.csms.of("LogStatusNotification")[0].payload["status"],
        "Idle"
    );
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "FirmwareStatusNotification"})
        ),
        "Accepted"
    );
    assert_eq!(
        h.csms.of("FirmwareStatusNotification")[0].payload["status"],
        "Idle"
    );
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "SignV2GCertificate"})),
        "NotImplemented"
    );
    // A02: a key update: the station makes a key and sends its CSR.
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "SignChargingStationCertificate"})
        ),
        "Accepted"
    );
    let sign = h.csms.of("SignCertificate");
    assert_eq!(sign.len(), 1);
    assert!(
        sign[0].payload["csr"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE REQUEST")
    );
}

#[test]
fn unlock_connector() {
    let mut h = Harness::new(default_config());
    let unlock = |h: &mut Harness, evse: i64, connector: i64| {
        result(h.call(
            "UnlockConnector",
            json!({"evseId": evse, "connectorId": connector}),
        ))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(unlock(&mut h, 9, 1), "UnknownConnector");
    assert_eq!(unlock(&mut h, 1, 4), "UnknownConnector");
    assert_eq!(
        unlock(&mut h, 1, 1),
        "Unlocked",
        "F05.FR.06: even without a cable"
    );
    assert_eq!(h.unlocks, vec![(1, 1)]);
    h.plug(1, 1, true);
    h.token(1, "T");
    assert_eq!(unlock(&mut h, 1, 1), "OngoingAuthorizedTransaction");
    // An unauthorized transaction is ended by the unlock.
    h.plug(2, 1, true);
    assert_eq!(unlock(&mut h, 2, 1), "Unlocked");
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["triggerReason"], "UnlockCommand");
}

#[derive(Debug)]
struct Echo;

impl DataTransferHandler for Echo {
    fn handle(&self, request: &v201::DataTransferRequest) -> Option<v201::DataTransferResponse> {
        (request.vendor_id == "com.example").then(|| v201::DataTransferResponse {
            custom_data: None,
            status: v201::DataTransferStatusEnum::Accepted,
            status_info: None,
            data: request.data.clone(),
        })
    }
}

#[test]
fn data_transfer_goes_to_vendor_handlers() {
    let mut h = Harness::new(default_config());
    let r = result(h.call("DataTransfer", json!({"vendorId": "org.nobody"})));
    assert_eq!(r["status"], "UnknownVendorId");
    let mut config = default_config();
    config.data_transfer = vec![Arc::new(Echo)];
    let mut h = Harness::new(config);
    let r = result(h.call(
        "DataTransfer",
        json!({"vendorId": "com.example", "data": {"x": 1}}),
    ));
    assert_eq!(r, json!({"status": "Accepted", "data": {"x": 1}}));
}

#[test]
fn local_authorization_list() {
    let mut h = Harness::new(default_config());
    assert_eq!(
        result(h.call("GetLocalListVersion", json!({})))["versionNumber"],
        0
    );
    let list = json!([
        {"idToken": {"idToken": "LIST-OK", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}},
        {"idToken": {"idToken": "LIST-BLOCKED", "type": "ISO14443"}, "idTokenInfo": {"status": "Blocked"}}
    ]);
    let r = result(h.call(
        "SendLocalList",
        json!({"versionNumber": 3, "updateType": "Full", "localAuthorizationList": list}),
    ));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(
        result(h.call("GetLocalListVersion", json!({})))["versionNumber"],
        3
    );
    // D01.FR.18: 0 means "no list"; neither update type may set it, and the list stays.
    for update_type in ["Full", "Differential"] {
        let r = result(h.call(
            "SendLocalList",
            json!({"versionNumber": 0, "updateType": update_type}),
        ));
        assert_eq!(r["status"], "Failed", "{update_type}");
        assert_eq!(r["statusInfo"]["reasonCode"], "InvalidValue");
    }
    assert_eq!(
        result(h.call("GetLocalListVersion", json!({})))["versionNumber"],
        3
    );
    // D01.FR.19: a differential update must raise the version.
    let r = result(h.call(
        "SendLocalList",
        json!({"versionNumber": 3, "updateType": "Differential"}),
    ));
    assert_eq!(r["status"], "VersionMismatch");
    let r = result(h.call(
        "SendLocalList",
        json!({"versionNumber": 4, "updateType": "Differential", "localAuthorizationList": [
            {"idToken": {"idToken": "LIST-NEW", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}},
            {"idToken": {"idToken": "LIST-BLOCKED", "type": "ISO14443"}}
        ]}),
    ));
    assert_eq!(r["status"], "Accepted");
    let entries = get(
        &mut h,
        json!([{"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}}]),
    );
    assert_eq!(entries[0]["attributeValue"], "2");
    // Offline, the list authorizes (C13); it survives a restart (D01.FR.10).
    h.power_cycle(true);
    h.csms.online = false;
    h.advance_secs(1);
    h.drop_connection();
    h.plug(1, 1, true);
    h.token(1, "LIST-NEW");
    assert!(h.power_path(1));
    h.plug(2, 1, true);
    h.token(2, "STRANGER");
    assert!(!h.power_path(2));
}

#[test]
fn faults_raise_a_notify_event_and_faulted_status() {
    let mut h = Harness::new(default_config());
    h.fault(1, 1, Some("plug input line failed"));
    assert_eq!(
        h.csms.statuses().last().unwrap(),
        &(1, 1, "Faulted".to_string())
    );
    let events = h.csms.of("NotifyEvent");
    assert_eq!(events.len(), 1);
    let e = &events[0].payload["eventData"][0];
    assert_eq!(
        e["component"],
        json!({"name": "Connector", "evse": {"id": 1, "connectorId": 1}})
    );
    assert_eq!(e["variable"]["name"], "Problem");
    assert_eq!(e["actualValue"], "true");
    assert_eq!(e["trigger"], "Delta");
    // A faulted connector does not charge.
    h.plug(1, 1, true);
    h.token(1, "T");
    assert!(!h.power_path(1));
    // Recovery.
    h.fault(1, 1, None);
    assert_eq!(h.csms.of("NotifyEvent").len(), 2);
    assert!(h.power_path(1), "charges once the fault is gone");
}

/// A NotifyEvent lost with the connection (queued behind a request in flight) is sent again
/// after reconnection: the CSMS must learn of the problem.
#[test]
fn a_fault_report_lost_with_the_connection_is_sent_after_reconnection() {
    let mut h = Harness::new(default_config());
    h.csms.holding = true;
    h.call("TriggerMessage", json!({"requestedMessage": "Heartbeat"}));
    assert_eq!(h.csms.held.len(), 1, "a Heartbeat in flight");
    h.fault(2, 1, Some("plug input line failed"));
    assert!(h.csms.of("NotifyEvent").is_empty(), "queued behind it");
    h.csms.holding = false;
    h.csms.held.clear();
    h.drop_connection();
    h.advance_secs(60);
    let events = h.csms.of("NotifyEvent");
    assert_eq!(events.len(), 1, "reported after reconnection");
    let e = &events[0].payload["eventData"][0];
    assert_eq!(e["component"]["evse"], json!({"id": 2, "connectorId": 1}));
    assert_eq!(e["actualValue"], "true");
}

#[test]
fn security_events_are_queued_like_transaction_messages() {
    let mut h = Harness::new_with(default_config(), |c| c.rejecting_auth = true);
    h.advance_secs(30);
    assert!(
        h.csms.of("SecurityEventNotification").is_empty(),
        "nothing before Accepted"
    );
    h.csms.rejecting_auth = false;
    h.advance_secs(120);
    let kinds: Vec<String> = h
        .csms
        .of("SecurityEventNotification")
        .iter()
        .map(|r| r.payload["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"StartupOfTheDevice".to_string()),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "FailedToAuthenticateAtCsms")
            .count(),
        1,
        "once, however many attempts: {kinds:?}"
    );
    // Unreadable CSMS frames: InvalidMessages.
    h.send_raw("garbage");
    h.send_raw("more garbage");
    let invalid = h
        .csms
        .of("SecurityEventNotification")
        .iter()
        .filter(|r| r.payload["type"] == "InvalidMessages")
        .count();
    assert_eq!(invalid, 1);
}

#[test]
fn a_new_basic_auth_password_is_used_from_the_next_connection() {
    let mut h = Harness::new(default_config());
    let pw = "NewSecret-0123456789";
    let r = set(
        &mut h,
        json!([
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": "short"},
        ]),
    );
    assert_eq!(r[0]["attributeStatus"], "Rejected");
    assert!(h.passwords.is_empty());
    let r = set(
        &mut h,
        json!([
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": pw},
        ]),
    );
    assert_eq!(r[0]["attributeStatus"], "Accepted");
    // A01: the answer goes out, then the station reconnects with the new password.
    assert_eq!(h.passwords, vec![pw.to_string()]);
    assert!(h.disconnects.is_empty(), "the answer is read first");
    h.advance_secs(1);
    assert_eq!(h.disconnects, vec!["new credentials".to_string()]);
    h.advance_secs(30);
    assert!(h.connected);
    // Write-only: never read back (B06.FR.09), never in a report.
    let g = get(
        &mut h,
        json!([{"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]),
    );
    assert_eq!(g[0]["attributeStatus"], "Rejected");
    assert!(g[0].get("attributeValue").is_none());
    let model =
        serde_json::to_string(&h.station.device_model(h.now, Some("SecurityCtrlr"))).unwrap();
    assert!(!model.contains(pw));
    assert!(
        h.csms
            .of("SecurityEventNotification")
            .iter()
            .any(|r| r.payload["type"] == "ReconfigurationOfSecurityParameters")
    );
    // Kept for the next start (the shell reads it from the journal).
    assert!(
        h.journal
            .load()
            .meta
            .iter()
            .any(|(k, v)| k == "var:SecurityCtrlr.BasicAuthPassword" && v == pw)
    );
}

#[test]
fn customer_information_reports_and_clears_what_is_kept() {
    let mut h = Harness::new(default_config());
    h.plug(1, 1, true);
    h.token(1, "ALICE");
    h.plug(1, 1, false);
    let info = |h: &mut Harness, payload: Value| {
        result(h.call("CustomerInformation", payload))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let alice = json!({"idToken": "ALICE", "type": "ISO14443"});
    // N09.FR.09: exactly one reference; N09.FR.07: something to do.
    assert_eq!(
        info(
            &mut h,
            json!({"requestId": 1, "report": true, "clear": false})
        ),
        "Invalid"
    );
    assert_eq!(
        info(
            &mut h,
            json!({"requestId": 1, "report": false, "clear": false, "idToken": alice})
        ),
        "Rejected"
    );
    assert_eq!(
        info(
            &mut h,
            json!({"requestId": 2, "report": true, "clear": true, "idToken": alice})
        ),
        "Accepted"
    );
    let reports = h.csms.of("NotifyCustomerInformation");
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].payload["data"]
            .as_str()
            .unwrap()
            .contains("authorization cache entry")
    );
    assert_eq!(reports[0].payload["requestId"], 2);
    assert!(h.journal.load().auth_cache.is_empty(), "N10: cleared");
    assert_eq!(
        info(
            &mut h,
            json!({"requestId": 3, "report": true, "clear": false, "idToken": alice})
        ),
        "Accepted"
    );
    let reports = h.csms.of("NotifyCustomerInformation");
    assert_eq!(
        reports[1].payload["data"], "No data found for this customer",
        "N09.FR.06"
    );
    assert_eq!(
        info(
            &mut h,
            json!({"requestId": 4, "report": true, "clear": false, "customerIdentifier": "C-1"})
        ),
        "Accepted"
    );
}

fn profile(url: &str, security_profile: i64) -> Value {
    json!({
        "ocppVersion": "OCPP20",
        "ocppTransport": "JSON",
        "ocppCsmsUrl": url,
        "messageTimeout": 20,
        "securityProfile": security_profile,
        "ocppInterface": "Wired0"
    })
}

#[test]
fn network_profiles_priority_and_fall_back() {
    let mut h = Harness::new(config_with(&[(
        "OCPPCommCtrlr.NetworkProfileConnectionAttempts",
        "2",
    )]));
    let set_profile = |h: &mut Harness, slot: i64, data: Value| {
        result(h.call(
            "SetNetworkProfile",
            json!({"configurationSlot": slot, "connectionData": data}),
        ))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // B09.FR.05: slots 1-4; B09.FR.04: never a lower security profile; scheme must fit.
    assert_eq!(
        set_profile(&mut h, 9, profile("ws://new.test/ocpp", 1)),
        "Rejected"
    );
    assert_eq!(
        set_profile(&mut h, 2, profile("wss://new.test/ocpp", 1)),
        "Rejected"
    );
    assert_eq!(
        set_profile(&mut h, 2, profile("ws://new.test/ocpp", 3)),
        "Rejected",
        "no client certificate"
    );
    assert_eq!(
        set_profile(&mut h, 2, profile("ws://new.test/ocpp", 1)),
        "Accepted"
    );
    // B10.FR.02: a slot without a profile is refused; with profiles: RebootRequired.
    let r = set(
        &mut h,
        json!([{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}, "attributeValue": "3,1"}]),
    );
    assert_eq!(r[0]["attributeStatus"], "Rejected");
    let r = set(
        &mut h,
        json!([{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}, "attributeValue": "2,1"}]),
    );
    assert_eq!(r[0]["attributeStatus"], "RebootRequired");
    // Still on slot 1 until the restart (B10.FR.04).
    assert!(h.connect_urls.iter().all(|u| u == "ws://csms.test/ocpp"));
    h.power_cycle(true);
    assert_eq!(
        h.connect_urls.last().unwrap(),
        "ws://new.test/ocpp",
        "the first entry first"
    );
    assert!(h.connected);
    // Both go away: 2 attempts on each slot in order (B10.FR.03: slot 2, then slot 1), then
    // the one that worked last (B10.FR.07: slot 2), then the order again.
    h.csms.unreachable = vec!["ws://new.test/ocpp".into(), "ws://csms.test/ocpp".into()];
    h.drop_connection();
    let from = h.connect_urls.len();
    h.advance_secs(600);
    let tried: Vec<&str> = h.connect_urls[from..]
        .iter()
        .map(String::as_str)
        .take(7)
        .collect();
    assert_eq!(
        tried,
        vec![
            "ws://new.test/ocpp",
            "ws://new.test/ocpp",
            "ws://csms.test/ocpp",
            "ws://csms.test/ocpp",
            "ws://new.test/ocpp",
            "ws://new.test/ocpp",
            "ws://new.test/ocpp",
        ]
    );
    h.csms.unreachable.clear();
    h.advance_secs(600);
    assert!(h.connected);
}

#[test]
fn a_failing_journal_is_memory_exhaustion_once() {
    let mut h = Harness::new(default_config());
    for _ in 0..3 {
        h.station
            .handle_input(
                h.now,
                ocpp_agent::ocpp::station::Input::Storage {
                    problem: Some("database or disk is full".into()),
                },
            )
            .unwrap();
        h.settle();
    }
    let events: Vec<&Value> = h
        .csms
        .of("SecurityEventNotification")
        .into_iter()
        .map(|r| &r.payload)
        .filter(|p| p["type"] == "MemoryExhaustion")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["techInfo"], "database or disk is full");
}

// ----- GetReport (B08) -----------------------------------------------------------------------

/// Sends a GetReport; returns its answer and the NotifyReport payloads for its requestId.
fn get_report(h: &mut Harness, request: Value) -> (Value, Vec<Value>) {
    let request_id = request["requestId"].clone();
    let answer = result(h.call("GetReport", request));
    let reports = h
        .csms
        .of("NotifyReport")
        .iter()
        .filter(|r| r.payload["requestId"] == request_id)
        .map(|r| r.payload.clone())
        .collect();
    (answer, reports)
}

fn report_data(reports: &[Value]) -> Vec<Value> {
    reports
        .iter()
        .flat_map(|r| r["reportData"].as_array().unwrap().clone())
        .collect()
}

/// `Component[evse/connector].Variable[instance]` of a report entry.
fn key(d: &Value) -> String {
    let mut k = d["component"]["name"].as_str().unwrap().to_owned();
    if let Some(e) = d["component"]["evse"]["id"].as_i64() {
        k.push_str(&format!("@{e}"));
        if let Some(c) = d["component"]["evse"]["connectorId"].as_i64() {
            k.push_str(&format!("/{c}"));
        }
    }
    k.push('.');
    k.push_str(d["variable"]["name"].as_str().unwrap());
    if let Some(i) = d["variable"]["instance"].as_str() {
        k.push_str(&format!("[{i}]"));
    }
    k
}

fn keys(reports: &[Value]) -> Vec<String> {
    report_data(reports).iter().map(key).collect()
}

#[test]
fn get_report_selects_by_component_and_variable() {
    let mut h = Harness::new(default_config());
    // TC_B_17_CS: one variable of one EVSE, with its characteristics (B08.FR.11/12).
    let (answer, reports) = get_report(
        &mut h,
        json!({"requestId": 1, "componentVariable": [
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}
        ]}),
    );
    assert_eq!(answer, json!({"status": "Accepted"}));
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(r["seqNo"], 0, "B08.FR.14");
    assert!(r.get("tbc").is_none());
    assert!(r["generatedAt"].is_string());
    let data = r["reportData"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(
        data[0]["component"],
        json!({"name": "EVSE", "evse": {"id": 1}})
    );
    assert_eq!(data[0]["variable"], json!({"name": "AvailabilityState"}));
    let c = &data[0]["variableCharacteristics"];
    assert_eq!(c["dataType"], "OptionList");
    assert_eq!(
        c["valuesList"],
        "Available,Occupied,Reserved,Unavailable,Faulted"
    );
    let a = &data[0]["variableAttribute"][0];
    assert_eq!(
        (&a["type"], &a["mutability"]),
        (&json!("Actual"), &json!("ReadOnly"))
    );
    assert_eq!(a["value"], "Available");

    // TC_B_54_CS, B08.FR.21: no variable instance, every instance.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 2, "componentVariable": [
            {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage"}}
        ]}),
    );
    assert_eq!(
        keys(&reports),
        [
            "DeviceDataCtrlr.ItemsPerMessage[GetReport]",
            "DeviceDataCtrlr.ItemsPerMessage[GetVariables]",
            "DeviceDataCtrlr.ItemsPerMessage[SetVariables]"
        ]
    );
    // TC_B_55_CS: one instance.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 3, "componentVariable": [
            {"component": {"name": "DeviceDataCtrlr"}, "variable": {"name": "ItemsPerMessage", "instance": "GetReport"}}
        ]}),
    );
    assert_eq!(
        keys(&reports),
        ["DeviceDataCtrlr.ItemsPerMessage[GetReport]"]
    );
    // TC_B_56_CS, B08.FR.23: no evse, every EVSE.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 4, "componentVariable": [
            {"component": {"name": "EVSE"}, "variable": {"name": "AvailabilityState"}}
        ]}),
    );
    assert_eq!(
        keys(&reports),
        ["EVSE@1.AvailabilityState", "EVSE@2.AvailabilityState"]
    );
    // B08.FR.22: evse.id without connectorId, every connector of that EVSE.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 5, "componentVariable": [
            {"component": {"name": "Connector", "evse": {"id": 2}}, "variable": {"name": "AvailabilityState"}}
        ]}),
    );
    assert_eq!(
        keys(&reports),
        [
            "Connector@2/1.AvailabilityState",
            "Connector@2/2.AvailabilityState"
        ]
    );
    // B08.FR.20: no variable, every variable of the component (here of one connector); names
    // are case-insensitive; several componentVariables add up.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 6, "componentVariable": [
            {"component": {"name": "connector", "evse": {"id": 2, "connectorId": 2}}},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "heartbeatinterval"}}
        ]}),
    );
    let got = keys(&reports);
    for k in [
        "Connector@2/2.AvailabilityState",
        "Connector@2/2.Available",
        "Connector@2/2.ConnectorType",
        "Connector@2/2.Problem",
        "OCPPCommCtrlr.HeartbeatInterval",
    ] {
        assert!(got.contains(&k.to_owned()), "{k} in {got:?}");
    }
    assert!(
        got.iter()
            .all(|k| k.starts_with("Connector@2/2.") || k == "OCPPCommCtrlr.HeartbeatInterval"),
        "{got:?}"
    );
    // A WriteOnly variable is reported without its value (B08.FR.03 as amended).
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 7, "componentVariable": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
        ]}),
    );
    let data = report_data(&reports);
    assert_eq!(data[0]["variableAttribute"][0]["mutability"], "WriteOnly");
    assert!(data[0]["variableAttribute"][0].get("value").is_none());

    // B08.FR.15: nothing matches, no NotifyReport. An unknown component, a component instance
    // (B08.FR.24: this station's components have none), a connector of an EVSE component.
    let before = h.csms.of("NotifyReport").len();
    for (id, cv) in [
        (8, json!({"component": {"name": "FluxCapacitor"}})),
        (
            9,
            json!({"component": {"name": "OCPPCommCtrlr", "instance": "Second"}}),
        ),
        (
            10,
            json!({"component": {"name": "EVSE", "evse": {"id": 1, "connectorId": 1}}}),
        ),
        (
            11,
            json!({"component": {"name": "EVSE", "evse": {"id": 9}}}),
        ),
        (
            12,
            json!({"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval", "instance": "Fast"}}),
        ),
    ] {
        let (answer, _) = get_report(&mut h, json!({"requestId": id, "componentVariable": [cv]}));
        assert_eq!(answer["status"], "EmptyResultSet", "{cv}");
        assert_eq!(answer["statusInfo"]["reasonCode"], "NotFound");
    }
    assert_eq!(h.csms.of("NotifyReport").len(), before);
}

#[test]
fn get_report_selects_components_by_criteria() {
    let mut h = Harness::new(config_with(&[("AuthCacheCtrlr.Enabled", "false")]));
    // Without criteria or componentVariable, everything (what FullInventory reports).
    let (_, all) = get_report(&mut h, json!({"requestId": 1}));
    result(h.call(
        "GetBaseReport",
        json!({"requestId": 2, "reportBase": "FullInventory"}),
    ));
    let full: Vec<Value> = h
        .csms
        .of("NotifyReport")
        .iter()
        .filter(|r| r.payload["requestId"] == 2)
        .map(|r| r.payload.clone())
        .collect();
    assert_eq!(keys(&all), keys(&full));

    // TC_B_16_CS, B08.FR.09: Enabled, every component whose Enabled is true or that has none.
    let (answer, reports) = get_report(
        &mut h,
        json!({"requestId": 3, "componentCriteria": ["Enabled"]}),
    );
    assert_eq!(answer["status"], "Accepted");
    let got = keys(&reports);
    assert!(got.contains(&"AuthCtrlr.Enabled".to_owned()));
    assert!(got.contains(&"LocalAuthListCtrlr.Entries".to_owned()));
    assert!(got.contains(&"OCPPCommCtrlr.HeartbeatInterval".to_owned()));
    assert!(
        !got.iter().any(|k| k.starts_with("AuthCacheCtrlr.")),
        "{got:?}"
    );
    for d in report_data(&reports) {
        if d["variable"]["name"] == "Enabled" {
            assert_eq!(d["variableAttribute"][0]["value"], "true", "{d}");
        }
    }
    // B08.FR.07: no component has an Active variable, so all of them meet Active.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 4, "componentCriteria": ["Active"]}),
    );
    assert_eq!(keys(&reports), keys(&full));

    // TC_B_18_CS: EVSE 1's AvailabilityState from Available components, then from Problem ones.
    let evse1 = json!([{"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]);
    let (answer, reports) = get_report(
        &mut h,
        json!({"requestId": 5, "componentCriteria": ["Available"], "componentVariable": evse1}),
    );
    assert_eq!(answer["status"], "Accepted");
    assert_eq!(keys(&reports), ["EVSE@1.AvailabilityState"]);
    let (answer, _) = get_report(
        &mut h,
        json!({"requestId": 6, "componentCriteria": ["Problem"], "componentVariable": evse1}),
    );
    assert_eq!(answer["status"], "EmptyResultSet", "B08.FR.05/10/15");
    // B08.FR.10: no problem anywhere, nothing meets Problem.
    let (answer, _) = get_report(
        &mut h,
        json!({"requestId": 7, "componentCriteria": ["Problem"]}),
    );
    assert_eq!(answer["status"], "EmptyResultSet");

    // A faulted connector: it, its EVSE and the station have a Problem (propagated up).
    h.fault(1, 1, Some("contactor welded"));
    let (answer, reports) = get_report(
        &mut h,
        json!({"requestId": 8, "componentCriteria": ["Problem"]}),
    );
    assert_eq!(answer["status"], "Accepted");
    let got = keys(&reports);
    assert!(got.contains(&"Connector@1/1.ConnectorType".to_owned()));
    assert!(got.contains(&"EVSE@1.Power".to_owned()));
    assert!(got.contains(&"ChargingStation.SupplyPhases".to_owned()));
    assert!(
        got.iter().all(|k| k.starts_with("Connector@1/1.")
            || k.starts_with("EVSE@1.")
            || k.starts_with("ChargingStation.")),
        "{got:?}"
    );

    // EVSE 1 set Inoperative: it no longer meets Available; with Problem as well it does
    // again (B08.FR.13: any one criterion).
    let change = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 1}}),
    ));
    assert_eq!(change["status"], "Accepted");
    let (answer, _) = get_report(
        &mut h,
        json!({"requestId": 9, "componentCriteria": ["Available"], "componentVariable": evse1}),
    );
    assert_eq!(answer["status"], "EmptyResultSet");
    let (answer, reports) = get_report(
        &mut h,
        json!({"requestId": 10, "componentCriteria": ["Available", "Problem"], "componentVariable": evse1}),
    );
    assert_eq!(answer["status"], "Accepted");
    assert_eq!(keys(&reports), ["EVSE@1.AvailabilityState"]);
    assert_eq!(
        report_data(&reports)[0]["variableAttribute"][0]["value"],
        "Faulted"
    );
}

/// The CALL frame a NotifyReport went out in, as the CSMS received it.
fn frame_len(r: &ocpp_agent::ocpp::testkit::Received) -> usize {
    json!([2, r.id, r.action, r.payload]).to_string().len()
}

#[test]
fn reports_are_paged_by_items_and_by_bytes() {
    // B08.FR.14, ItemsPerMessage[GetReport]: 8 DeviceDataCtrlr variables, 3 per message.
    let mut h = Harness::new(config_with(&[(
        "DeviceDataCtrlr.ItemsPerMessage[GetReport]",
        "3",
    )]));
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 1, "componentVariable": [{"component": {"name": "DeviceDataCtrlr"}}]}),
    );
    let sizes: Vec<usize> = reports
        .iter()
        .map(|r| r["reportData"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [3, 3, 2]);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["seqNo"], i);
        assert_eq!(r["requestId"], 1, "B08.FR.04");
        assert_eq!(r.get("tbc").is_some(), i + 1 < reports.len());
    }

    // BytesPerMessage[GetReport]: every frame within it, for GetReport and GetBaseReport, and
    // no message cut short: the next entry would not have fitted.
    let limit = 1200;
    let mut h = Harness::new(config_with(&[(
        "DeviceDataCtrlr.BytesPerMessage[GetReport]",
        "1200",
    )]));
    let (_, unlimited) = {
        let mut big = Harness::new(default_config());
        get_report(&mut big, json!({"requestId": 2}))
    };
    result(h.call("GetReport", json!({"requestId": 2})));
    result(h.call(
        "GetBaseReport",
        json!({"requestId": 3, "reportBase": "FullInventory"}),
    ));
    for request_id in [2, 3] {
        let sent: Vec<&ocpp_agent::ocpp::testkit::Received> = h
            .csms
            .of("NotifyReport")
            .into_iter()
            .filter(|r| r.payload["requestId"] == request_id)
            .collect();
        let payloads: Vec<Value> = sent.iter().map(|r| r.payload.clone()).collect();
        assert!(sent.len() > 5, "{} messages", sent.len());
        assert_eq!(keys(&payloads).len(), keys(&unlimited).len());
        for (i, r) in sent.iter().enumerate() {
            assert_eq!(r.payload["seqNo"], i);
            assert_eq!(r.payload.get("tbc").is_some(), i + 1 < sent.len());
            assert!(frame_len(r) <= limit, "message {i}: {} bytes", frame_len(r));
            let data = r.payload["reportData"].as_array().unwrap();
            if let Some(next) = sent.get(i + 1) {
                let first = &next.payload["reportData"][0];
                assert!(
                    data.len() == 20 || frame_len(r) + 1 + first.to_string().len() > limit,
                    "message {i} had room for the next entry"
                );
            }
        }
    }
}

#[test]
fn get_report_limits_and_unsupported_criteria() {
    let mut h = Harness::new(config_with(&[
        ("DeviceDataCtrlr.ItemsPerMessage[GetReport]", "2"),
        ("DeviceDataCtrlr.BytesPerMessage[GetReport]", "300"),
    ]));
    let cv = |name: &str| json!({"component": {"name": name}});
    // B08.FR.17: more componentVariables than ItemsPerMessage[GetReport].
    let answer = h.call(
        "GetReport",
        json!({"requestId": 1, "componentVariable": [cv("ClockCtrlr"), cv("OCPPCommCtrlr"), cv("SecurityCtrlr")]}),
    );
    assert_eq!(error_code(&answer), "OccurrenceConstraintViolation");
    // B08.FR.18: a request longer than BytesPerMessage[GetReport].
    let long = "X".repeat(50);
    let answer = h.call(
        "GetReport",
        json!({"requestId": 2, "componentVariable": [
            {"component": {"name": long, "instance": long}, "variable": {"name": long, "instance": long}},
            {"component": {"name": long, "instance": long}, "variable": {"name": long, "instance": long}}
        ]}),
    );
    assert_eq!(error_code(&answer), "FormatViolation");
    // TC_B_19_CS, B08.FR.02: a criterion this station does not know is NotSupported; all four
    // of the enumeration are supported.
    let answer = h
        .send_raw(r#"[2,"u1","GetReport",{"requestId":3,"componentCriteria":["Available","Teleported"]}]"#)
        .unwrap();
    let answer = result(answer);
    assert_eq!(answer["status"], "NotSupported");
    assert_eq!(answer["statusInfo"]["reasonCode"], "UnsupportedParam");
    // Anything else wrong stays a CALLERROR.
    let answer = h
        .send_raw(r#"[2,"u2","GetReport",{"requestId":"four","componentCriteria":["Teleported"]}]"#)
        .unwrap();
    assert_eq!(error_code(&answer), "TypeConstraintViolation");
    let (answer, _) = get_report(
        &mut h,
        json!({"requestId": 4, "componentCriteria": ["Active", "Available", "Enabled", "Problem"], "componentVariable": [cv("ClockCtrlr")]}),
    );
    assert_eq!(answer["status"], "Accepted");
    assert!(
        h.csms
            .of("NotifyReport")
            .iter()
            .all(|r| r.payload["requestId"] == 4)
    );
}

#[test]
fn problem_identity_and_value_size_variables() {
    let mut h = Harness::new(config_with(&[
        ("DeviceDataCtrlr.ReportingValueSize", "10"),
        ("DeviceDataCtrlr.ConfigurationValueSize", "3"),
    ]));
    let problems = |h: &mut Harness| -> Vec<String> {
        get(
            h,
            json!([
                {"component": {"name": "ChargingStation"}, "variable": {"name": "Problem"}},
                {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Problem"}},
                {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "Problem"}},
                {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 1}}, "variable": {"name": "Problem"}},
                {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 2}}, "variable": {"name": "Problem"}}
            ]),
        )
        .iter()
        .map(|r| r["attributeValue"].as_str().unwrap().to_owned())
        .collect()
    };
    assert_eq!(problems(&mut h), ["false"; 5]);
    h.fault(2, 2, Some("plug line stuck"));
    assert_eq!(problems(&mut h), ["true", "false", "true", "false", "true"]);
    h.fault(2, 2, None);
    assert_eq!(problems(&mut h), ["false"; 5]);
    // A journal that cannot write is a problem of the station.
    for problem in [Some("disk full".to_owned()), None] {
        let failing = problem.is_some();
        h.station
            .handle_input(h.now, ocpp_agent::ocpp::station::Input::Storage { problem })
            .unwrap();
        h.settle();
        assert_eq!(problems(&mut h)[0], failing.to_string());
        assert_eq!(problems(&mut h)[1], "false");
    }

    let values = get(
        &mut h,
        json!([
            {"component": {"name": "ChargingStation"}, "variable": {"name": "Model"}},
            {"component": {"name": "ChargingStation"}, "variable": {"name": "VendorName"}},
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "Identity"}},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "ActiveNetworkProfile"}},
            {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "AllowReset"}},
            {"component": {"name": "ClockCtrlr"}, "variable": {"name": "DateTime"}}
        ]),
    );
    let v: Vec<&str> = values
        .iter()
        .map(|r| r["attributeValue"].as_str().unwrap())
        .collect();
    // The clock is cut to ReportingValueSize (10 characters: the date).
    assert_eq!(v[..5], ["AC-2", "Example", "CP001", "1", "true"]);
    assert_eq!(v[5].chars().count(), 10, "{}", v[5]);
    // Identity comes from the configuration: not settable.
    let set_results = set(
        &mut h,
        json!([
            {"component": {"name": "ChargingStation"}, "variable": {"name": "Model"}, "attributeValue": "X"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "1000"},
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}, "attributeValue": "999"}
        ]),
    );
    let statuses: Vec<&str> = set_results
        .iter()
        .map(|r| r["attributeStatus"].as_str().unwrap())
        .collect();
    // ConfigurationValueSize 3: "1000" is too long.
    assert_eq!(statuses, ["Rejected", "Rejected", "Accepted"]);
    // In a report, the identity is constant and persistent.
    let (_, reports) = get_report(
        &mut h,
        json!({"requestId": 1, "componentVariable": [{"component": {"name": "ChargingStation"}, "variable": {"name": "Model"}}]}),
    );
    let a = &report_data(&reports)[0]["variableAttribute"][0];
    assert_eq!(
        (&a["constant"], &a["persistent"]),
        (&json!(true), &json!(true))
    );
}
