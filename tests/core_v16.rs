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
    let unknown = result(h.call("RemoteStopTransaction", json!({ "transactionId": 99 })));
    assert_eq!(unknown, json!({ "status": "Rejected" }));
    let stop = result(h.call("RemoteStopTransaction", json!({ "transactionId": 1 })));
    assert_eq!(stop, json!({ "status": "Accepted" }));
    h.advance_secs(5);
    let stop = &h.csms.of("StopTransaction")[0].payload;
    assert_eq!(
        (stop["transactionId"].clone(), stop["reason"].clone()),
        (json!(1), json!("Remote"))
    );
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
    let stop = &h.csms.of("StopTransaction")[0].payload;
    assert_eq!(
        (stop["transactionId"].clone(), stop["reason"].clone()),
        (json!(1), json!("DeAuthorized"))
    );
}

#[test]
fn power_loss_after_the_start_was_delivered_stops_with_the_csms_id() {
    // Found by the property test in 1.6: every message of an open transaction delivered,
    // then a power cut. The restart dropped the transaction's id (it kept only those with
    // queued messages), so the PowerLoss StopTransaction was never sent.
    let mut h = Harness::new(config());
    h.plug(1, 1, true);
    h.token(1, "TAG1");
    h.advance_secs(5);
    assert_eq!(
        transaction_messages(&h),
        vec![("StartTransaction".to_string(), 0)]
    );
    assert!(h.journal.queue.is_empty(), "everything delivered");
    h.power_cycle(false);
    h.advance_secs(60);
    assert_eq!(
        transaction_messages(&h).last().unwrap(),
        &("StopTransaction".to_string(), 1)
    );
    assert_eq!(
        h.csms.of("StopTransaction")[0].payload["reason"],
        "PowerLoss"
    );
}
