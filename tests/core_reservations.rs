//! Reservations (H01-H04) in the core, on the virtual clock against the scripted CSMS: the
//! part 6 TC_H charging-station cases, the reservations of no particular EVSE and of a
//! connector type, and durability across a restart.
//!
//! The default station has EVSE 1 (connector 1) and EVSE 2 (connectors 1 and 2), TxStartPoint
//! EVConnected,Authorized, all connectors of type cType2.

use ocpp_agent::ocpp::clock::UtcTime;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::testkit::{Harness, config_with, default_config};
use serde_json::{Value, json};

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn in_secs(h: &Harness, s: i64) -> String {
    UtcTime::from_unix_millis(h.station.utc(h.now).unix_millis() + s * 1000).to_rfc3339()
}

fn token(id: &str) -> Value {
    json!({"idToken": id, "type": "ISO14443"})
}

/// ReserveNow for `evse` (None: any EVSE) and `id_token`, expiring in an hour; its status.
fn reserve(h: &mut Harness, id: i64, evse: Option<i64>, id_token: &str) -> String {
    let mut request =
        json!({"id": id, "expiryDateTime": in_secs(h, 3600), "idToken": token(id_token)});
    if let Some(e) = evse {
        request["evseId"] = json!(e);
    }
    reserve_with(h, request)
}

fn reserve_with(h: &mut Harness, request: Value) -> String {
    let answer = result(h.call("ReserveNow", request));
    answer["status"].as_str().unwrap().to_owned()
}

fn cancel(h: &mut Harness, id: i64) -> String {
    let answer = result(h.call("CancelReservation", json!({"reservationId": id})));
    answer["status"].as_str().unwrap().to_owned()
}

/// The StatusNotifications received since `from`: (evse, connector, status).
fn statuses_since(h: &Harness, from: usize) -> Vec<(i64, i64, String)> {
    h.csms.statuses()[from..].to_vec()
}

fn s(evse: i64, connector: i64, status: &str) -> (i64, i64, String) {
    (evse, connector, status.to_owned())
}

/// The last status the CSMS got for each connector.
fn last_status(h: &Harness, evse: i64, connector: i64) -> String {
    h.csms
        .statuses()
        .into_iter()
        .rev()
        .find(|(e, c, _)| *e == evse && *c == connector)
        .map(|(_, _, st)| st)
        .unwrap_or_default()
}

fn status_updates(h: &Harness) -> Vec<(i64, String)> {
    h.csms
        .of("ReservationStatusUpdate")
        .iter()
        .map(|r| {
            (
                r.payload["reservationId"].as_i64().unwrap(),
                r.payload["reservationUpdateStatus"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

fn charging(h: &Harness) -> bool {
    h.events()
        .iter()
        .any(|e| e["transactionInfo"]["chargingState"] == "Charging")
}

fn booted() -> Harness {
    let mut h = Harness::new(default_config());
    h.advance_secs(1);
    h
}

#[test]
fn tc_h_01_a_reserved_evse_is_used_by_its_idtoken_and_the_transaction_names_the_reservation() {
    let mut h = booted();
    let before = h.csms.statuses().len();
    assert_eq!(reserve(&mut h, 7, Some(1), "A"), "Accepted");
    // H01.FR.23: every connector of the EVSE Reserved.
    assert_eq!(statuses_since(&h, before), vec![s(1, 1, "Reserved")]);
    let before = h.csms.statuses().len();
    h.token(1, "A");
    // H03.FR.10: used, no cable yet: Available; then Occupied with the EV.
    assert_eq!(statuses_since(&h, before), vec![s(1, 1, "Available")]);
    h.plug(1, 1, true);
    assert_eq!(last_status(&h, 1, 1), "Occupied");
    assert!(h.power_path(1));
    // H01.FR.15: reservationId in the TransactionEvent that carries the idToken, once.
    let with_reservation: Vec<&Value> = h
        .events()
        .into_iter()
        .filter(|e| e.get("reservationId").is_some())
        .collect();
    assert_eq!(with_reservation.len(), 1);
    assert_eq!(with_reservation[0]["reservationId"], 7);
    assert_eq!(with_reservation[0]["idToken"]["idToken"], "A");
    // H03.FR.09: consumed: nothing expires later, nothing to cancel.
    h.advance_secs(3700);
    assert!(status_updates(&h).is_empty());
    assert_eq!(cancel(&mut h, 7), "Rejected");
}

#[test]
fn tc_h_02_a_reserved_evse_refuses_another_idtoken_and_stays_reserved_when_plugged() {
    let mut h = booted();
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Accepted");
    let before = h.csms.statuses().len();
    // G01.FR.09: a plug-in without the reservation's idToken changes nothing.
    h.plug(1, 1, true);
    assert_eq!(statuses_since(&h, before), vec![]);
    h.token(1, "B");
    assert!(!h.power_path(1));
    assert!(!charging(&h));
    let snapshot = h.station.snapshot(h.now);
    assert_eq!(
        snapshot.evses[0].last_authorization.as_deref(),
        Some("rejected: the EVSE is reserved for another idToken")
    );
    // Main B: a remote start for another idToken is Rejected.
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"idToken": token("B"), "evseId": 1, "remoteStartId": 5}),
    ));
    assert_eq!(answer["status"], "Rejected");
    // The reservation's idToken still charges there.
    h.token(1, "A");
    assert!(h.power_path(1));
    assert_eq!(last_status(&h, 1, 1), "Occupied");
}

#[test]
fn tc_h_02_a_remote_start_for_the_reservation_uses_it() {
    let mut h = booted();
    assert_eq!(reserve(&mut h, 3, Some(1), "A"), "Accepted");
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"idToken": token("A"), "evseId": 1, "remoteStartId": 9}),
    ));
    assert_eq!(answer["status"], "Accepted");
    h.plug(1, 1, true);
    assert!(h.power_path(1));
    assert!(h.events().iter().any(|e| e["reservationId"] == 3));
}

#[test]
fn tc_h_03_04_06_a_specific_evse_that_is_not_available_is_not_reserved() {
    let mut h = booted();
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Accepted");
    // TC_H_03: already reserved (H01.FR.11).
    assert_eq!(reserve(&mut h, 2, Some(1), "B"), "Occupied");
    // TC_H_04: an EV plugged in.
    h.plug(2, 2, true);
    assert_eq!(reserve(&mut h, 3, Some(2), "B"), "Occupied");
    h.plug(2, 2, false);
    // TC_H_06: Inoperative (H01.FR.14).
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 2}}),
    ));
    assert_eq!(reserve(&mut h, 4, Some(2), "B"), "Unavailable");
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Operative", "evse": {"id": 2}}),
    ));
    // H01.FR.12: every connector faulted.
    h.fault(2, 1, Some("plug input failed"));
    h.fault(2, 2, Some("plug input failed"));
    assert_eq!(reserve(&mut h, 5, Some(2), "B"), "Faulted");
    // No such EVSE.
    assert_eq!(reserve(&mut h, 6, Some(9), "B"), "Rejected");
    // An expiry in the past.
    let past =
        json!({"id": 8, "expiryDateTime": in_secs(&h, -10), "idToken": token("B"), "evseId": 1});
    assert_eq!(reserve_with(&mut h, past), "Rejected");
}

#[test]
fn tc_h_07_an_unused_reservation_expires_and_the_evse_is_free_again() {
    let mut h = booted();
    let request =
        json!({"id": 11, "expiryDateTime": in_secs(&h, 60), "idToken": token("A"), "evseId": 1});
    assert_eq!(reserve_with(&mut h, request), "Accepted");
    let before = h.csms.actions().len();
    h.advance_secs(59);
    assert!(status_updates(&h).is_empty());
    h.advance_secs(2);
    // H04.FR.03 then H04.FR.01, in that order (TC_H_07 steps 1 and 3).
    let after: Vec<&str> = h.csms.actions()[before..]
        .iter()
        .copied()
        .filter(|a| *a != "Heartbeat")
        .collect();
    assert_eq!(after, vec!["StatusNotification", "ReservationStatusUpdate"]);
    assert_eq!(last_status(&h, 1, 1), "Available");
    assert_eq!(status_updates(&h), vec![(11, "Expired".to_owned())]);
    // H04.FR.02: anyone charges there again.
    h.token(1, "B");
    h.plug(1, 1, true);
    assert!(h.power_path(1));
}

#[test]
fn tc_h_08_14_reservations_of_no_evse_reserve_the_last_free_evses() {
    let mut h = booted();
    let before = h.csms.statuses().len();
    // TC_H_08: two EVSEs free, one reservation: nothing shows Reserved.
    assert_eq!(reserve(&mut h, 1, None, "A"), "Accepted");
    assert_eq!(statuses_since(&h, before), vec![]);
    // TC_H_14 / H01.FR.20: as many reservations as free EVSEs: all connectors Reserved.
    assert_eq!(reserve(&mut h, 2, None, "B"), "Accepted");
    let mut got = statuses_since(&h, before);
    got.sort();
    assert_eq!(
        got,
        vec![
            s(1, 1, "Reserved"),
            s(2, 1, "Reserved"),
            s(2, 2, "Reserved")
        ]
    );
    // TC_H_09: none left (H01.FR.11).
    assert_eq!(reserve(&mut h, 3, None, "C"), "Occupied");
    // H01.FR.07: a third driver may not take one.
    h.token(1, "C");
    assert!(
        h.station.snapshot(h.now).evses[0]
            .last_authorization
            .as_deref()
            .is_some_and(|n| n.contains("reserved"))
    );
    // B uses EVSE 2 (H03.FR.03): EVSE 2 is free of it; EVSE 1 stays held for A.
    h.token(2, "B");
    assert_eq!(last_status(&h, 2, 1), "Available");
    assert_eq!(last_status(&h, 1, 1), "Reserved");
    h.plug(2, 1, true);
    assert!(h.power_path(2));
    assert!(h.events().iter().any(|e| e["reservationId"] == 2));
    // A charges at EVSE 1.
    h.token(1, "A");
    h.plug(1, 1, true);
    assert!(h.power_path(1));
    assert!(h.events().iter().any(|e| e["reservationId"] == 1));
}

#[test]
fn tc_h_10_12_13_reservations_of_no_evse_when_none_is_available_or_allowed() {
    let mut h = booted();
    // TC_H_10: every EVSE occupied.
    h.plug(1, 1, true);
    h.plug(2, 1, true);
    assert_eq!(reserve(&mut h, 1, None, "A"), "Occupied");
    h.plug(1, 1, false);
    h.plug(2, 1, false);
    // TC_H_12: every EVSE unavailable.
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative"}),
    ));
    assert_eq!(reserve(&mut h, 2, None, "A"), "Unavailable");
    // TC_H_13: H01.FR.19.
    let mut h = Harness::new(config_with(&[(
        "ReservationCtrlr.NonEvseSpecific",
        "false",
    )]));
    h.advance_secs(1);
    assert_eq!(reserve(&mut h, 3, None, "A"), "Rejected");
    assert_eq!(reserve(&mut h, 4, Some(1), "A"), "Accepted");
}

#[test]
fn tc_h_15_16_reservations_of_a_connector_type() {
    let mut h = booted();
    let typed = |h: &Harness, id: i64, kind: &str| json!({"id": id, "expiryDateTime": in_secs(h, 3600), "idToken": token("A"), "connectorType": kind});
    // No connector of that type here.
    let r = typed(&h, 1, "cCCS2");
    assert_eq!(reserve_with(&mut h, r), "Rejected");
    let before = h.csms.statuses().len();
    let r = typed(&h, 2, "cType2");
    assert_eq!(reserve_with(&mut h, r), "Accepted");
    assert_eq!(statuses_since(&h, before), vec![]);
    // TC_H_16 / H01.FR.24: as many as the EVSEs of that type.
    let r = typed(&h, 3, "cType2");
    assert_eq!(reserve_with(&mut h, r), "Accepted");
    assert_eq!(statuses_since(&h, before).len(), 3);
    assert!(
        statuses_since(&h, before)
            .iter()
            .all(|(_, _, st)| st == "Reserved")
    );
}

#[test]
fn tc_h_17_18_cancel_a_reservation() {
    let mut h = booted();
    assert_eq!(reserve(&mut h, 5, Some(2), "A"), "Accepted");
    let before = h.csms.statuses().len();
    assert_eq!(cancel(&mut h, 5), "Accepted");
    // H02.FR.04, and no ReservationStatusUpdate: the CSMS asked.
    let mut got = statuses_since(&h, before);
    got.sort();
    assert_eq!(got, vec![s(2, 1, "Available"), s(2, 2, "Available")]);
    assert!(status_updates(&h).is_empty());
    // TC_H_18 / H02.FR.01.
    assert_eq!(cancel(&mut h, 5), "Rejected");
    assert_eq!(cancel(&mut h, 99), "Rejected");
    // H02.FR.03: anyone again.
    h.token(2, "B");
    h.plug(2, 1, true);
    assert!(h.power_path(2));
}

#[test]
fn tc_h_19_24_an_idtoken_of_the_reservations_group_uses_it() {
    let mut h = booted();
    h.csms.set_auth("B", "Accepted", Some("G1"));
    h.csms.set_auth("C", "Accepted", Some("G2"));
    let request = json!({"id": 4, "expiryDateTime": in_secs(&h, 3600), "idToken": token("A"),
        "groupIdToken": {"idToken": "G1", "type": "Central"}, "evseId": 1});
    assert_eq!(reserve_with(&mut h, request), "Accepted");
    // Another group: not here (H03.FR.04).
    h.token(1, "C");
    assert!(!h.power_path(1));
    h.plug(1, 1, true);
    assert!(!h.power_path(1));
    // H03.FR.08: the group comes with the Authorize answer.
    h.token(1, "B");
    assert!(h.power_path(1));
    assert!(h.events().iter().any(|e| e["reservationId"] == 4));
    // TC_H_24: a reservation of no EVSE, for a group.
    let request = json!({"id": 6, "expiryDateTime": in_secs(&h, 3600), "idToken": token("A"),
        "groupIdToken": {"idToken": "G2", "type": "Central"}});
    assert_eq!(reserve_with(&mut h, request), "Accepted");
    // EVSE 2 is the last free one: held for it.
    assert_eq!(last_status(&h, 2, 1), "Reserved");
    h.token(2, "C");
    assert_eq!(last_status(&h, 2, 1), "Available");
    h.plug(2, 1, true);
    assert!(h.power_path(2));
    assert!(h.events().iter().any(|e| e["reservationId"] == 6));
}

#[test]
fn tc_h_20_21_a_reserved_evse_that_becomes_faulted_or_unavailable_loses_its_reservation() {
    let mut h = booted();
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Accepted");
    // TC_H_21 / H01.FR.17.
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 1}}),
    ));
    assert_eq!(last_status(&h, 1, 1), "Unavailable");
    assert_eq!(status_updates(&h), vec![(1, "Removed".to_owned())]);
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Operative", "evse": {"id": 1}}),
    ));
    assert_eq!(last_status(&h, 1, 1), "Available");
    h.token(1, "B");
    h.plug(1, 1, true);
    assert!(h.power_path(1));
    // H01.FR.16: Faulted.
    assert_eq!(reserve(&mut h, 2, Some(2), "A"), "Accepted");
    h.fault(2, 1, Some("plug input failed"));
    h.fault(2, 2, Some("plug input failed"));
    assert_eq!(
        status_updates(&h),
        vec![(1, "Removed".to_owned()), (2, "Removed".to_owned())]
    );
}

#[test]
fn tc_h_22_reservations_switched_off_are_rejected() {
    let mut h = Harness::new(config_with(&[("ReservationCtrlr.Enabled", "false")]));
    h.advance_secs(1);
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Rejected");
    assert_eq!(reserve(&mut h, 2, None, "A"), "Rejected");
}

#[test]
fn tc_h_23_a_reservation_with_a_known_id_replaces_it() {
    let mut h = booted();
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Accepted");
    assert_eq!(reserve(&mut h, 1, Some(2), "A"), "Accepted");
    assert_eq!(last_status(&h, 1, 1), "Available");
    assert_eq!(last_status(&h, 2, 1), "Reserved");
    assert_eq!(last_status(&h, 2, 2), "Reserved");
    // Replacing by one that cannot be had keeps the old one.
    h.plug(1, 1, true);
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Occupied");
    assert_eq!(last_status(&h, 2, 1), "Reserved");
    h.token(2, "B");
    assert!(!h.power_path(2));
}

#[test]
fn reservations_survive_a_restart_and_expire_on_time_after_it() {
    let mut h = booted();
    let request =
        json!({"id": 21, "expiryDateTime": in_secs(&h, 600), "idToken": token("A"), "evseId": 1});
    assert_eq!(reserve_with(&mut h, request), "Accepted");
    let request =
        json!({"id": 22, "expiryDateTime": in_secs(&h, 60), "idToken": token("A"), "evseId": 2});
    assert_eq!(reserve_with(&mut h, request), "Accepted");
    h.power_cycle(false);
    h.advance_secs(1);
    // After the boot, every connector is reported: the reserved ones Reserved.
    assert_eq!(last_status(&h, 1, 1), "Reserved");
    assert_eq!(last_status(&h, 2, 1), "Reserved");
    h.token(1, "B");
    assert!(
        !h.station.snapshot(h.now).evses[0]
            .last_authorization
            .as_deref()
            .unwrap_or("")
            .starts_with("accepted")
    );
    h.advance_secs(60);
    assert_eq!(status_updates(&h), vec![(22, "Expired".to_owned())]);
    // One that expired while the agent was off ends when it is back.
    h.power_cycle(false);
    h.advance_secs(600);
    assert_eq!(
        status_updates(&h),
        vec![(22, "Expired".to_owned()), (21, "Expired".to_owned())]
    );
    assert_eq!(last_status(&h, 1, 1), "Available");
}

#[test]
fn reservation_variables_are_in_the_device_model() {
    let mut h = booted();
    let values = h.variable_values(&[
        "ReservationCtrlr.Enabled",
        "ReservationCtrlr.Available",
        "ReservationCtrlr.NonEvseSpecific",
    ]);
    assert_eq!(values, vec!["true", "true", "true"]);
    assert_eq!(reserve(&mut h, 1, Some(1), "A"), "Accepted");
    assert_eq!(
        h.variable_values(&["EVSE@1.AvailabilityState"]),
        vec!["Reserved"]
    );
}
