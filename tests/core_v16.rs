//! OCPP 1.6J on the same core: boot, statuses, a charging session as StartTransaction /
//! MeterValues / StopTransaction, remote start and stop, and the transactionId the CSMS
//! assigns, across outages and restarts. The fake CSMS speaks 1.6 (every message validated
//! against the 1.6 schemas) and numbers transactions 1, 2, ...

use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::station::{EvseLayout, Protocol, StationConfig};
use ocpp_agent::ocpp::testkit::{Harness, default_config};
use serde_json::{Value, json};

/// Two EVSEs of one connector each, speaking 1.6, meter values every 60 s.
fn config() -> StationConfig {
    config_with(&[])
}

fn config_with(extra: &[(&'static str, &'static str)]) -> StationConfig {
    let mut config = default_config();
    config.protocol = Protocol::V16;
    config.evses = (1..=2)
        .map(|id| EvseLayout {
            id,
            connectors: vec![1],
            connector_types: Vec::new(),
        })
        .collect();
    config.variables = ocpp_agent::ocpp::devmodel::DeviceModel::with_initial(
        [("SampledDataCtrlr.TxUpdatedInterval", "60")]
            .into_iter()
            .chain(extra.iter().copied()),
    )
    .unwrap();
    config
}

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

/// (connectorId, status) of each StatusNotification.
fn statuses(h: &Harness) -> Vec<(i64, String)> {
    h.csms
        .of("StatusNotification")
        .iter()
        .map(|r| {
            (
                r.payload["connectorId"].as_i64().unwrap(),
                r.payload["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn status_pairs(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(c, s)| (*c, s.to_string())).collect()
}

/// The first StopTransaction's transactionId and reason.
fn stopped(h: &Harness) -> (i64, &str) {
    let stop = &h.csms.of("StopTransaction")[0].payload;
    (
        stop["transactionId"].as_i64().unwrap(),
        stop["reason"].as_str().unwrap(),
    )
}

/// The transaction messages received: (action, transactionId or 0).
fn transaction_messages(h: &Harness) -> Vec<(String, i64)> {
    h.csms
        .received
        .iter()
        .filter(|r| {
            matches!(
                r.action.as_str(),
                "StartTransaction" | "StopTransaction" | "MeterValues"
            )
        })
        .map(|r| {
            (
                r.action.clone(),
                r.payload["transactionId"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn boot_and_statuses_in_1_6() {
    let h = Harness::new(config());
    let boot = &h.csms.of("BootNotification")[0].payload;
    assert_eq!(boot["chargePointVendor"], "Example");
    assert_eq!(boot["chargePointModel"], "AC-2");
    assert_eq!(boot["chargePointSerialNumber"], "SN-0001");
    // 4.9: every connector after the boot was accepted, and connector 0.
    let mut seen = statuses(&h);
    seen.sort();
    assert_eq!(
        seen,
        status_pairs(&[(0, "Available"), (1, "Available"), (2, "Available")])
    );
    for r in h.csms.of("StatusNotification") {
        assert_eq!(r.payload["errorCode"], "NoError");
    }
}

#[test]
fn a_charging_session_is_start_meter_values_and_stop() {
    let mut h = Harness::new(config());
    let before = h.csms.received.len();
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(130);
    h.plug(1, 1, false);
    h.advance_secs(1);
    let after: Vec<&str> = h.csms.received[before..]
        .iter()
        .map(|r| r.action.as_str())
        .filter(|a| *a != "Heartbeat")
        .collect();
    assert!(after.contains(&"Authorize"), "{after:?}");
    let start = &h.csms.of("StartTransaction")[0].payload;
    assert_eq!(start["connectorId"], 1);
    assert_eq!(start["idTag"], "TAG1");
    assert!(start["meterStart"].is_i64());
    assert_eq!(
        transaction_messages(&h),
        vec![
            ("StartTransaction".to_string(), 0),
            ("MeterValues".to_string(), 1),
            ("MeterValues".to_string(), 1),
            ("StopTransaction".to_string(), 1),
        ]
    );
    let meter = &h.csms.of("MeterValues")[0].payload;
    assert_eq!(meter["connectorId"], 1);
    let sample = &meter["meterValue"][0]["sampledValue"][0];
    assert!(sample["value"].is_string(), "{meter}");
    let stop = &h.csms.of("StopTransaction")[0].payload;
    assert_eq!(stop["reason"], "EVDisconnected");
    let meter_stop = stop["meterStop"].as_i64().unwrap();
    assert!(
        meter_stop > start["meterStart"].as_i64().unwrap(),
        "130 s at 11 kW: {stop}"
    );
    // Preparing on plug-in, Charging once the power path closed, Available after.
    let connector1: Vec<String> = statuses(&h)
        .into_iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        connector1,
        vec!["Available", "Preparing", "Charging", "Available"]
    );
}

#[test]
fn finishing_until_the_cable_is_out() {
    let mut h = Harness::new(config());
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(5);
    // The driver stops with the same tag: the transaction ends, the EV stays plugged.
    h.token(1, "TAG1");
    h.advance_secs(5);
    let stop = &h.csms.of("StopTransaction")[0].payload;
    assert_eq!(stop["reason"], "Local");
    assert_eq!(stop["idTag"], "TAG1");
    h.plug(1, 1, false);
    h.advance_secs(1);
    let connector1: Vec<String> = statuses(&h)
        .into_iter()
        .filter(|(c, _)| *c == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        connector1,
        vec![
            "Available",
            "Preparing",
            "Charging",
            "Finishing",
            "Available"
        ]
    );
}

#[test]
fn offline_session_then_restart_gets_the_id_the_csms_assigns() {
    let mut h = Harness::new(config_with(&[(
        "AuthCtrlr.OfflineTxForUnknownIdEnabled",
        "true",
    )]));
    h.csms.online = false;
    h.drop_connection();
    h.plug(2, 1, true);
    h.token(2, "TAG2");
    h.advance_secs(125);
    h.plug(2, 1, false);
    h.advance_secs(1);
    assert!(h.csms.of("StartTransaction").is_empty());
    // A restart before the CSMS is back: the journal holds the whole session.
    h.power_cycle(true);
    h.csms.next_transaction_id = 41;
    h.csms.online = true;
    h.advance_secs(600);
    assert_eq!(
        transaction_messages(&h),
        vec![
            ("StartTransaction".to_string(), 0),
            ("MeterValues".to_string(), 41),
            ("MeterValues".to_string(), 41),
            ("StopTransaction".to_string(), 41),
        ]
    );
    assert_eq!(h.csms.of("StartTransaction")[0].payload["connectorId"], 2);
    assert!(h.journal.queue.is_empty(), "everything delivered");
}

#[test]
fn restart_between_start_transaction_and_its_answer() {
    let mut h = Harness::new(config());
    h.csms.holding = true;
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    // Answer what comes (statuses, the Authorize) until the StartTransaction is out.
    for _ in 0..10 {
        if h.csms.held.last().unwrap().action == "StartTransaction" {
            break;
        }
        h.release();
    }
    assert_eq!(h.csms.held.last().unwrap().action, "StartTransaction");
    h.csms.held.clear();
    h.csms.holding = false;
    // The first StartTransaction reached the CSMS, which numbered it 1 but its answer was
    // lost with a power cut.
    h.csms.next_transaction_id = 2;
    h.power_cycle(false);
    h.advance_secs(60);
    let messages = transaction_messages(&h);
    // Sent again after the restart, then stopped (PowerLoss) with the id of the answer.
    assert_eq!(
        messages.last().unwrap(),
        &("StopTransaction".to_string(), 2),
        "{messages:?}"
    );
    assert_eq!(
        h.csms.of("StopTransaction")[0].payload["reason"],
        "PowerLoss"
    );
    assert!(
        messages
            .iter()
            .all(|(a, id)| a == "StartTransaction" || *id == 2)
    );
}

#[test]
fn remote_start_and_stop_with_the_csms_ids() {
    let mut h = Harness::new(config());
    h.plug(2, 1, true);
    let answer = result(h.call(
        "RemoteStartTransaction",
        json!({ "connectorId": 2, "idTag": "REMOTE1" }),
    ));
    assert_eq!(answer, json!({ "status": "Accepted" }));
    h.advance_secs(5);
    let start = &h.csms.of("StartTransaction")[0].payload;
    assert_eq!(
        (start["connectorId"].clone(), start["idTag"].clone()),
        (json!(2), json!("REMOTE1"))
    );
    let snapshot = h.station.snapshot(h.now);
    let tx = snapshot.evses[1].transaction.as_ref().unwrap();
    assert_eq!(tx.ocpp16_id, Some(1), "ctl status shows the CSMS's id");
    let unknown = result(h.call("RemoteStopTransaction", json!({ "transactionId": 99 })));
    assert_eq!(unknown, json!({ "status": "Rejected" }));
    let stop = result(h.call("RemoteStopTransaction", json!({ "transactionId": 1 })));
    assert_eq!(stop, json!({ "status": "Accepted" }));
    h.advance_secs(5);
    assert_eq!(stopped(&h), (1, "Remote"));
}

#[test]
fn core_calls_answer_in_1_6() {
    let mut h = Harness::new(config());
    assert_eq!(
        result(h.call(
            "ChangeAvailability",
            json!({"connectorId": 1, "type": "Inoperative"})
        )),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    assert_eq!(
        statuses(&h).last().unwrap(),
        &(1, "Unavailable".to_string())
    );
    assert_eq!(
        result(h.call("UnlockConnector", json!({"connectorId": 7}))),
        json!({ "status": "NotSupported" })
    );
    assert_eq!(
        result(h.call("ClearCache", json!({}))),
        json!({ "status": "Accepted" })
    );
    assert_eq!(
        result(h.call("DataTransfer", json!({"vendorId": "com.example"}))),
        json!({ "status": "UnknownVendorId" })
    );
    let before = h.csms.of("Heartbeat").len();
    assert_eq!(
        result(h.call("TriggerMessage", json!({"requestedMessage": "Heartbeat"}))),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    assert_eq!(h.csms.of("Heartbeat").len(), before + 1);
    // 5.17: a BootNotification may be triggered once accepted too (2.0.1 refuses it).
    assert_eq!(
        result(h.call(
            "TriggerMessage",
            json!({"requestedMessage": "BootNotification"})
        )),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    assert_eq!(h.csms.of("BootNotification").len(), 2);
    // 5.17: StatusNotification without a connector: connector 0 and every connector.
    let before = statuses(&h).len();
    assert_eq!(
        result(h.call(
            "TriggerMessage",
            json!({"requestedMessage": "StatusNotification"})
        )),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    let mut triggered = statuses(&h)[before..].to_vec();
    triggered.sort();
    assert_eq!(
        triggered,
        status_pairs(&[(0, "Available"), (1, "Unavailable"), (2, "Available")])
    );
    assert_eq!(
        result(h.call("Reset", json!({"type": "Soft"}))),
        json!({ "status": "Accepted" })
    );
}

#[test]
fn errors_in_1_6_spelling() {
    let mut h = Harness::new(config());
    match h.call("RemoteStartTransaction", json!({})) {
        Frame::CallError { code, .. } => assert_eq!(code, "OccurenceConstraintViolation"),
        other => panic!("{other:?}"),
    }
    match h.call("RemoteStartTransaction", json!({"idTag": 5})) {
        Frame::CallError { code, .. } => assert_eq!(code, "TypeConstraintViolation"),
        other => panic!("{other:?}"),
    }
    match h.call("TransactionEvent", json!({})) {
        Frame::CallError { code, .. } => assert_eq!(code, "NotImplemented"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_session_queued_in_2_0_1_is_delivered_in_1_6_after_a_switch() {
    // Offline in 2.0.1: the whole session waits in the journal as TransactionEvents.
    let mut config201 = config_with(&[("AuthCtrlr.OfflineTxForUnknownIdEnabled", "true")]);
    config201.protocol = Protocol::V201;
    let mut h = Harness::new(config201);
    h.csms.online = false;
    h.drop_connection();
    h.plug(1, 1, true);
    h.token(1, "TAG9");
    h.advance_secs(65);
    h.plug(1, 1, false);
    h.advance_secs(1);
    assert!(!h.journal.queue.is_empty());
    // The integrator switches the station to 1.6 and restarts it.
    h.set_config(config_with(&[(
        "AuthCtrlr.OfflineTxForUnknownIdEnabled",
        "true",
    )]));
    h.power_cycle(true);
    h.csms.protocol = Protocol::V16;
    h.csms.online = true;
    h.advance_secs(300);
    // Every message the CSMS got was 1.6 (the fake CSMS validated each against the 1.6
    // schemas), the session included.
    assert!(h.csms.of("TransactionEvent").is_empty());
    let messages = transaction_messages(&h);
    assert_eq!(
        messages.first().unwrap(),
        &("StartTransaction".to_string(), 0)
    );
    assert_eq!(
        messages.last().unwrap(),
        &("StopTransaction".to_string(), 1)
    );
    assert!(messages[1..].iter().all(|(_, id)| *id == 1), "{messages:?}");
    // 2.0.1 started it at the plug-in (TxStartPoint EVConnected), before any idToken: 1.6
    // has no tag to name, and the journal holds only that Started event when it is sent.
    assert_eq!(h.csms.of("StartTransaction")[0].payload["idTag"], "");
    assert!(h.journal.queue.is_empty());
}

#[test]
fn start_transaction_answered_invalid_stops_the_offline_session() {
    let mut h = Harness::new(config_with(&[(
        "AuthCtrlr.OfflineTxForUnknownIdEnabled",
        "true",
    )]));
    h.csms.set_auth("STOLEN", "Invalid", None);
    h.csms.online = false;
    h.drop_connection();
    h.plug(1, 1, true);
    h.token(1, "STOLEN");
    h.advance_secs(5);
    assert!(h.power_path(1), "charging offline for an unknown id (C15)");
    h.csms.online = true;
    h.advance_secs(120);
    // StopTransactionOnInvalidId (default true): the CSMS's Invalid in the StartTransaction
    // answer ends the session (1.6 5.16 / 2.0.1 E05).
    assert!(!h.power_path(1));
    assert_eq!(stopped(&h), (1, "DeAuthorized"));
}

#[test]
fn charging_profiles_in_1_6() {
    let mut h = Harness::new(config());
    h.plug(1, 1, true);
    let profile = |id: i64, purpose: &str| {
        json!({"chargingProfileId": id, "stackLevel": 1, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}})
    };
    // RemoteStartTransaction with its TxProfile (5.11): bound to the transaction it starts.
    let answer = result(h.call(
        "RemoteStartTransaction",
        json!({"connectorId": 1, "idTag": "REMOTE1", "chargingProfile": profile(7, "TxProfile")}),
    ));
    assert_eq!(answer, json!({ "status": "Accepted" }));
    h.advance_secs(5);
    assert_eq!(h.charging_limit(1).map(|l| l.amps), Some(10.0));
    // A TxProfile without transactionId is for the transaction on that connector (3.13.1),
    // and Rejected on a connector without one.
    let set = |connector: i64, p: Value| json!({"connectorId": connector, "csChargingProfiles": p});
    let mut lower = profile(8, "TxProfile");
    lower["stackLevel"] = json!(2);
    lower["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = json!(6.0);
    assert_eq!(
        result(h.call("SetChargingProfile", set(1, lower.clone()))),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    assert_eq!(h.charging_limit(1).map(|l| l.amps), Some(6.0));
    assert_eq!(
        result(h.call("SetChargingProfile", set(2, lower))),
        json!({ "status": "Rejected" })
    );
    // With the CSMS's transactionId.
    let mut by_id = profile(9, "TxProfile");
    by_id["stackLevel"] = json!(3);
    by_id["transactionId"] = json!(1);
    by_id["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = json!(8.0);
    assert_eq!(
        result(h.call("SetChargingProfile", set(1, by_id))),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    assert_eq!(h.charging_limit(1).map(|l| l.amps), Some(8.0));
    let composite = result(h.call(
        "GetCompositeSchedule",
        json!({"connectorId": 1, "duration": 60, "chargingRateUnit": "A"}),
    ));
    assert_eq!(composite["status"], "Accepted", "{composite}");
    assert_eq!(composite["connectorId"], 1);
    assert_eq!(
        composite["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"],
        json!(8.0)
    );
    // The transaction's profiles go with it (K02.FR.05).
    let stop = result(h.call("RemoteStopTransaction", json!({ "transactionId": 1 })));
    assert_eq!(stop, json!({ "status": "Accepted" }));
    h.advance_secs(1);
    assert_eq!(
        result(h.call("ClearChargingProfile", json!({ "id": 9 }))),
        json!({ "status": "Unknown" })
    );
}

#[test]
fn smart_charging_off_is_not_supported_and_unsigned_firmware_refused() {
    let mut h = Harness::new(config_with(&[("SmartChargingCtrlr.Enabled", "false")]));
    let profile = json!({"connectorId": 0, "csChargingProfiles": {"chargingProfileId": 1,
        "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A",
            "startSchedule": "2030-01-01T00:00:00Z",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}});
    assert_eq!(
        result(h.call("SetChargingProfile", profile)),
        json!({ "status": "NotSupported" })
    );
    // Whitepaper L01.FR.20: 1.6's unsigned UpdateFirmware is NotSupported unless the
    // integrator allows unsigned firmware.
    match h.call(
        "UpdateFirmware",
        json!({"location": "https://example.com/fw.bin", "retrieveDate": "2030-01-01T00:00:00Z"}),
    ) {
        Frame::CallError { code, .. } => assert_eq!(code, "NotSupported"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pending_and_rejected_in_1_6() {
    let mut h = Harness::new_with(config(), |csms| {
        csms.boot_status = "Pending";
        csms.interval = 60;
    });
    h.plug(1, 1, true);
    h.advance_secs(59);
    // 4.2: nothing but BootNotification before Accepted; the CSMS may configure a pending
    // station.
    assert_eq!(h.csms.actions(), vec!["BootNotification"]);
    let answer = result(h.call("GetConfiguration", json!({"key": ["HeartbeatInterval"]})));
    assert_eq!(answer["configurationKey"][0]["key"], "HeartbeatInterval");
    h.csms.boot_status = "Rejected";
    h.advance_secs(1);
    assert_eq!(h.csms.of("BootNotification").len(), 2);
    // 4.2: while Rejected the station does not answer the CSMS at all.
    let answers = h.answers.len();
    h.send_raw(&ocpp_agent::ocpp::rpc::encode_call(
        "r1",
        "ClearCache",
        &json!({}),
    ));
    assert_eq!(h.answers.len(), answers);
    h.csms.boot_status = "Accepted";
    h.advance_secs(60);
    // Accepted: the statuses, connector 1 already Preparing.
    assert!(
        statuses(&h).contains(&(1, "Preparing".to_string())),
        "{:?}",
        statuses(&h)
    );
}

#[test]
fn a_reset_stops_the_transaction_with_its_kind_as_reason() {
    for (kind, reason) in [("Soft", "SoftReset"), ("Hard", "HardReset")] {
        let mut h = Harness::new(config());
        h.plug(1, 1, true);
        h.token(1, "TAG1");
        h.advance_secs(5);
        assert_eq!(
            result(h.call("Reset", json!({ "type": kind }))),
            json!({ "status": "Accepted" })
        );
        h.advance_secs(5);
        assert_eq!(stopped(&h), (1, reason));
        assert_eq!(h.reboots, 1, "{kind}");
    }
}

#[test]
fn a_transaction_open_at_a_power_cut_stops_with_its_id() {
    // Every message of an open transaction delivered, then a power cut: the restart dropped
    // the transaction's id (it kept only those with queued messages), so the PowerLoss
    // StopTransaction was never sent (found here and by the 1.6 property test).
    let mut h = Harness::new(config());
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(5);
    // Everything delivered: the StartTransaction answered, nothing queued.
    assert!(h.journal.queue.is_empty());
    h.power_cycle(false);
    h.advance_secs(30);
    assert_eq!(stopped(&h), (1, "PowerLoss"));
    // Delivered, the id is forgotten.
    assert!(
        !h.journal
            .meta
            .iter()
            .any(|(k, v)| k == "v16_transactions" && v.contains("\"id\":1")),
        "{:?}",
        h.journal.meta
    );
}

#[test]
fn a_reset_restarts_once_the_stop_transaction_was_answered() {
    let mut h = Harness::new(config());
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(5);
    h.csms.holding = true;
    assert_eq!(
        result(h.call("Reset", json!({ "type": "Hard" }))),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    // The StopTransaction is out but not answered: no restart yet (else it would be sent
    // again after it, and 1.6 has no seqNo to tell a repeat).
    assert_eq!(h.csms.held.last().unwrap().action, "StopTransaction");
    assert_eq!(h.reboots, 0);
    h.csms.holding = false;
    h.release_all();
    assert_eq!(h.reboots, 1);
    // Unanswered, the restart comes after MessageTimeout.
    let mut h = Harness::new(config());
    h.csms.answering = false;
    assert_eq!(
        result(h.call("Reset", json!({ "type": "Soft" }))),
        json!({ "status": "Accepted" })
    );
    h.advance_secs(1);
    assert_eq!(h.reboots, 0);
    h.advance_secs(60);
    assert_eq!(h.reboots, 1);
}

#[test]
fn meter_values_follow_the_1_6_keys() {
    let mut h = Harness::new(config());
    for (key, value) in [
        ("MeterValueSampleInterval", "60"),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register,Power.Active.Import",
        ),
        ("StopTxnSampledData", "Energy.Active.Import.Register"),
        ("ClockAlignedDataInterval", "900"),
        ("MeterValuesAlignedData", "Energy.Active.Import.Register"),
        ("StopTxnAlignedData", ""),
    ] {
        let answer = result(h.call("ChangeConfiguration", json!({"key": key, "value": value})));
        assert_eq!(answer, json!({"status": "Accepted"}), "{key}");
    }
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(130);
    h.plug(1, 1, false);
    h.advance_secs(1);
    // MeterValues every MeterValueSampleInterval with MeterValuesSampledData (9.1.19/20).
    let periodic: Vec<&Value> = h
        .csms
        .of("MeterValues")
        .into_iter()
        .map(|r| &r.payload)
        .filter(|p| p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic")
        .collect();
    assert_eq!(periodic.len(), 2, "{periodic:?}");
    for p in &periodic {
        assert_eq!(p["transactionId"], 1);
        let measurands: Vec<&str> = p["meterValue"][0]["sampledValue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["measurand"].as_str().unwrap())
            .collect();
        assert_eq!(
            measurands,
            ["Energy.Active.Import.Register", "Power.Active.Import"]
        );
    }
    // StopTxnSampledData every MeterValueSampleInterval in transactionData (9.1.27), and the
    // register at the end.
    let stop = &h.csms.of("StopTransaction")[0].payload;
    let contexts: Vec<&str> = stop["transactionData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sampledValue"][0]["context"].as_str().unwrap())
        .collect();
    assert_eq!(
        contexts,
        ["Sample.Periodic", "Sample.Periodic", "Transaction.End"],
        "{stop}"
    );
    let register = |m: &Value| -> f64 {
        m["sampledValue"][0]["value"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let data = stop["transactionData"].as_array().unwrap();
    assert_eq!(
        register(data.last().unwrap()).round() as i64,
        stop["meterStop"].as_i64().unwrap()
    );
    // Clock-aligned data at the quarter hour while idle (ClockAlignedDataInterval).
    h.advance_secs(900);
    let aligned = h
        .csms
        .of("MeterValues")
        .into_iter()
        .filter(|r| r.payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock")
        .count();
    assert!(aligned >= 1);
}

#[test]
fn unplugging_ends_the_session_only_with_stop_transaction_on_ev_side_disconnect() {
    let mut h = Harness::new(config());
    let answer = result(h.call(
        "ChangeConfiguration",
        json!({"key": "StopTransactionOnEVSideDisconnect", "value": "false"}),
    ));
    assert_eq!(answer, json!({"status": "Accepted"}));
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(5);
    h.plug(1, 1, false);
    h.advance_secs(5);
    // 3.6: the transaction goes on, suspended by the EV; the driver ends it.
    assert!(h.csms.of("StopTransaction").is_empty());
    assert_eq!(
        statuses(&h).last().unwrap(),
        &(1, "SuspendedEV".to_string())
    );
    h.token(1, "TAG1");
    h.advance_secs(5);
    assert_eq!(stopped(&h), (1, "Local"));
}

#[test]
fn unlock_connector_finishes_the_transaction_first() {
    let mut h = Harness::new(config());
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(5);
    // 5.18: the transaction is stopped, then the connector unlocked.
    assert_eq!(
        result(h.call("UnlockConnector", json!({"connectorId": 1}))),
        json!({"status": "Unlocked"})
    );
    h.advance_secs(1);
    assert_eq!(stopped(&h), (1, "UnlockCommand"));
    assert_eq!(h.unlocks, vec![(1, 1)]);
}
