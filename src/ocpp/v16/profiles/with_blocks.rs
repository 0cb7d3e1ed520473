//! The translations against the real blocks: a 1.6 call, translated, goes to a 2.0.1 station
//! (the test kit's), and its answer comes back in 1.6; what the station sends goes out in 1.6.

use super::super::Action;
use super::super::adapter::Inbound;
use super::testkit::{valid16_request, valid16_response, with_lookup};
use crate::ocpp::clock::UtcTime;
use crate::ocpp::rpc::Frame;
use crate::ocpp::testkit::{Harness, config_with, default_config};
use crate::ocpp::v201;
use serde_json::{Value, json};

/// The 1.6 answer of the station `h` to a 1.6 call.
fn call16(h: &mut Harness, action: Action, payload: Value) -> Value {
    valid16_request(action, &payload);
    let inbound = with_lookup(|lk| super::request(action, &payload, lk))
        .expect("one of this module's actions")
        .expect("translated");
    let out = match inbound {
        Inbound::Call {
            action: to,
            payload: p,
        } => match h.call(to.as_str(), p) {
            Frame::CallResult {
                payload: answer, ..
            } => with_lookup(|lk| super::response(action, &payload, &answer, lk))
                .expect("this module answers it"),
            other => panic!("{action:?}: {other:?}"),
        },
        Inbound::Answer(answer) => answer,
        Inbound::Link(request) => panic!("{action:?}: not a profiles call: {request:?}"),
    };
    valid16_response(action, &out);
    out
}

/// What the CSMS received of `action` (2.0.1), each as it goes out in 1.6.
fn sent16(h: &Harness, action: v201::Action) -> Vec<Option<(Action, Value)>> {
    h.csms
        .of(action.as_str())
        .iter()
        .map(
            |r| match with_lookup(|lk| super::outgoing(action, &r.payload, lk)) {
                Some(super::Outbound::Send { action, payload }) => {
                    valid16_request(action, &payload);
                    Some((action, payload))
                }
                _ => None,
            },
        )
        .collect()
}

fn in_secs(h: &Harness, s: i64) -> String {
    UtcTime::from_unix_millis(h.station.utc(h.now).unix_millis() + s * 1000).to_rfc3339()
}

#[test]
fn reservations() {
    let mut h = Harness::new(default_config());
    h.advance_secs(1);
    let expiry = in_secs(&h, 3600);
    let reserve = |h: &mut Harness, id: i64, connector: i64| {
        call16(
            h,
            Action::ReserveNow,
            json!({"connectorId": connector, "expiryDate": expiry, "idTag": "TAG1", "reservationId": id}),
        )
    };
    assert_eq!(reserve(&mut h, 1, 1), json!({"status": "Accepted"}));
    assert_eq!(reserve(&mut h, 2, 0), json!({"status": "Accepted"}));
    assert_eq!(reserve(&mut h, 3, 3), json!({"status": "Rejected"}));
    let cancel = |h: &mut Harness, id: i64| {
        call16(h, Action::CancelReservation, json!({ "reservationId": id }))
    };
    assert_eq!(cancel(&mut h, 1), json!({"status": "Accepted"}));
    assert_eq!(cancel(&mut h, 1), json!({"status": "Rejected"}));
    // ReservationStatusUpdate has no 1.6 counterpart.
    h.advance_secs(3700);
    assert!(!h.csms.of("ReservationStatusUpdate").is_empty());
    assert!(
        sent16(&h, v201::Action::ReservationStatusUpdate)
            .iter()
            .all(Option::is_none)
    );
}

#[test]
fn local_list() {
    let mut h = Harness::new(config_with(&[("LocalAuthListCtrlr.Enabled", "true")]));
    h.advance_secs(1);
    let out = call16(
        &mut h,
        Action::SendLocalList,
        json!({"listVersion": 4, "updateType": "Full", "localAuthorizationList": [
            {"idTag": "TAG1", "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"}},
            {"idTag": "TAG2", "idTagInfo": {"status": "Blocked"}},
        ]}),
    );
    assert_eq!(out, json!({"status": "Accepted"}));
    assert_eq!(
        call16(&mut h, Action::GetLocalListVersion, json!({})),
        json!({"listVersion": 4})
    );
    let out = call16(
        &mut h,
        Action::SendLocalList,
        json!({"listVersion": 4, "updateType": "Differential", "localAuthorizationList": [{"idTag": "TAG2"}]}),
    );
    assert_eq!(out, json!({"status": "VersionMismatch"}));
    let out = call16(
        &mut h,
        Action::SendLocalList,
        json!({"listVersion": 5, "updateType": "Differential", "localAuthorizationList": [{"idTag": "TAG2"}]}),
    );
    assert_eq!(out, json!({"status": "Accepted"}));
    let out = call16(
        &mut h,
        Action::SendLocalList,
        json!({"listVersion": 6, "updateType": "Full", "localAuthorizationList": []}),
    );
    assert_eq!(out, json!({"status": "Accepted"}));
}

#[test]
fn smart_charging() {
    let mut h = Harness::new(default_config());
    h.advance_secs(1);
    let start = in_secs(&h, -60);
    let profile = |id: i64, purpose: &str| {
        json!({
            "chargingProfileId": id,
            "stackLevel": 1,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": start,
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0, "numberPhases": 3}],
            },
        })
    };
    let set = |h: &mut Harness, connector: i64, p: Value| {
        call16(
            h,
            Action::SetChargingProfile,
            json!({"connectorId": connector, "csChargingProfiles": p}),
        )
    };
    let accepted = json!({"status": "Accepted"});
    let rejected = json!({"status": "Rejected"});
    assert_eq!(
        set(&mut h, 0, profile(1, "ChargePointMaxProfile")),
        accepted
    );
    assert_eq!(
        set(&mut h, 1, profile(2, "ChargePointMaxProfile")),
        rejected
    );
    assert_eq!(set(&mut h, 1, profile(3, "TxDefaultProfile")), accepted);
    // No transaction on connector 1.
    let mut tx = profile(4, "TxProfile");
    tx["transactionId"] = json!(42);
    assert_eq!(set(&mut h, 1, tx), rejected);
    let out = call16(
        &mut h,
        Action::GetCompositeSchedule,
        json!({"connectorId": 1, "duration": 600, "chargingRateUnit": "A"}),
    );
    assert_eq!(out["status"], "Accepted");
    assert_eq!(out["connectorId"], 1);
    assert_eq!(out["chargingSchedule"]["chargingRateUnit"], "A");
    assert_eq!(
        out["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"],
        json!(10.0)
    );
    let out = call16(
        &mut h,
        Action::GetCompositeSchedule,
        json!({"connectorId": 7, "duration": 600}),
    );
    assert_eq!(out, rejected);
    let clear = |h: &mut Harness, p: Value| call16(h, Action::ClearChargingProfile, p);
    assert_eq!(
        clear(
            &mut h,
            json!({"connectorId": 0, "chargingProfilePurpose": "ChargePointMaxProfile"})
        ),
        accepted
    );
    assert_eq!(
        clear(&mut h, json!({"id": 1})),
        json!({"status": "Unknown"})
    );
    assert_eq!(clear(&mut h, json!({"id": 3})), accepted);
}

#[test]
fn unsigned_firmware_update_reports_in_core_messages() {
    let mut config = default_config();
    config.firmware.installer = true;
    config.firmware.allow_unsigned = true;
    let mut h = Harness::new(config);
    h.advance_secs(1);
    let retrieve = in_secs(&h, 0);
    let out = call16(
        &mut h,
        Action::UpdateFirmware,
        json!({"location": "https://fw.example.com/fw.bin", "retrieveDate": retrieve}),
    );
    assert_eq!(out, json!({}));
    let sent = sent16(&h, v201::Action::FirmwareStatusNotification);
    assert_eq!(
        sent.first().cloned().flatten(),
        Some((
            Action::FirmwareStatusNotification,
            json!({"status": "Downloading"})
        ))
    );
    // Without allow_unsigned the block refuses it, and 1.6 cannot say so.
    let mut config = default_config();
    config.firmware.installer = true;
    let mut h = Harness::new(config);
    h.advance_secs(1);
    let out = call16(
        &mut h,
        Action::UpdateFirmware,
        json!({"location": "https://fw.example.com/fw.bin", "retrieveDate": retrieve}),
    );
    assert_eq!(out, json!({}));
    assert!(h.csms.of("FirmwareStatusNotification").is_empty());
}

#[test]
fn diagnostics_and_logs() {
    let mut h = Harness::new(default_config());
    h.advance_secs(1);
    let out = call16(
        &mut h,
        Action::GetDiagnostics,
        json!({"location": "https://logs.example.com/upload"}),
    );
    let name = out["fileName"].as_str().expect("a file name");
    assert!(name.contains("DiagnosticsLog"), "{name}");
    let out = call16(
        &mut h,
        Action::GetLog,
        json!({"logType": "SecurityLog", "requestId": 12, "log": {"remoteLocation": "https://logs.example.com/upload"}}),
    );
    assert_eq!(out["status"], "AcceptedCanceled");
    let sent: Vec<_> = sent16(&h, v201::Action::LogStatusNotification)
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                Action::DiagnosticsStatusNotification,
                json!({"status": "Uploading"})
            ),
            (
                Action::LogStatusNotification,
                json!({"status": "Uploading", "requestId": 12})
            ),
        ]
    );
}

#[test]
fn extended_trigger_message() {
    let mut h = Harness::new(default_config());
    h.advance_secs(1);
    let trigger = |h: &mut Harness, p: Value| call16(h, Action::ExtendedTriggerMessage, p);
    assert_eq!(
        trigger(&mut h, json!({"requestedMessage": "Heartbeat"})),
        json!({"status": "Accepted"})
    );
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "StatusNotification", "connectorId": 2})
        ),
        json!({"status": "Accepted"})
    );
    assert_eq!(
        trigger(
            &mut h,
            json!({"requestedMessage": "StatusNotification", "connectorId": 3})
        ),
        json!({"status": "Rejected"})
    );
}
