//! End-to-end reservations (H): the real binary against the independent CSMS peers (PyPI
//! `ocpp`, npm `ocpp-rpc` strict, both validating every message against the official schemas).
//! A reserved EVSE refuses another idToken and serves its own; cancel; expiry with
//! ReservationStatusUpdate; a reservation kept across a kill -9.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, Csms, utc_in_secs, wait_for};

const T: Duration = Duration::from_secs(30);

fn reserve(csms: &Csms, id: i64, evse: i64, id_token: &str, expiry_s: i64) -> Value {
    csms.call(
        "ReserveNow",
        json!({"id": id, "evseId": evse, "expiryDateTime": utc_in_secs(expiry_s),
               "idToken": {"idToken": id_token, "type": "ISO14443"}}),
    )
}

/// How many StatusNotifications with this status the CSMS got for (evse, connector).
fn count_status(csms: &Csms, evse: i64, connector: i64, status: &str) -> usize {
    csms.calls("StatusNotification")
        .iter()
        .filter(|r| {
            r["payload"]["evseId"] == evse
                && r["payload"]["connectorId"] == connector
                && r["payload"]["connectorStatus"] == status
        })
        .count()
}

fn wait_status(csms: &Csms, evse: i64, connector: i64, status: &str, count: usize) {
    wait_for(
        T,
        &format!("{status} #{count} of {evse}/{connector}"),
        || (count_status(csms, evse, connector, status) >= count).then_some(()),
    );
}

#[test]
fn a_reserved_evse_refuses_another_idtoken_and_charges_its_own() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();

    let r = reserve(&csms, 31, 1, "TOKEN1", 600);
    assert_eq!(r["status"], "Accepted", "{r}");
    wait_status(&csms, 1, 1, "Reserved", 1);

    // Another driver plugs in and presents their card: no charging, still Reserved.
    agent.ctl_json(&["plug", "1", "in"]);
    agent.ctl_json(&["token", "1", "TOKEN2"]);
    wait_for(T, "the refusal", || {
        let note = agent.status()["evses"][0]["last_authorization"].clone();
        note.as_str()
            .is_some_and(|n| n.contains("reserved"))
            .then_some(())
    });
    assert_eq!(agent.status()["evses"][0]["power_path_closed"], false);
    assert_eq!(count_status(&csms, 1, 1, "Occupied"), 0);
    // A remote start for them is Rejected too (TC_H_02_CS B).
    let r = csms.call(
        "RequestStartTransaction",
        json!({"idToken": {"idToken": "TOKEN2", "type": "ISO14443"}, "evseId": 1,
               "remoteStartId": 1}),
    );
    assert_eq!(r["status"], "Rejected", "{r}");

    // The reservation's driver charges there; the transaction names the reservation.
    agent.ctl_json(&["token", "1", "TOKEN1"]);
    wait_for(T, "charging with the reservation", || {
        csms.calls("TransactionEvent")
            .iter()
            .any(|r| r["payload"]["reservationId"] == 31)
            .then_some(())
    });
    wait_status(&csms, 1, 1, "Occupied", 1);
    wait_for(T, "the power path", || {
        (agent.status()["evses"][0]["power_path_closed"] == true).then_some(())
    });
    // Used: CancelReservation no longer knows it.
    let r = csms.call("CancelReservation", json!({"reservationId": 31}));
    assert_eq!(r["status"], "Rejected", "{r}");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn reservations_are_cancelled_expire_and_survive_a_kill_9() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let mut agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();

    // Cancel (H02): Available again, and no ReservationStatusUpdate.
    assert_eq!(reserve(&csms, 1, 2, "TOKEN1", 600)["status"], "Accepted");
    wait_status(&csms, 2, 1, "Reserved", 1);
    let r = csms.call("CancelReservation", json!({"reservationId": 1}));
    assert_eq!(r["status"], "Accepted", "{r}");
    wait_for(T, "EVSE 2 available", || {
        (count_status(&csms, 2, 1, "Available") >= 2).then_some(())
    });

    // Kept across a kill -9: reported Reserved after the new boot, then it expires (H04).
    assert_eq!(reserve(&csms, 2, 1, "TOKEN1", 12)["status"], "Accepted");
    wait_status(&csms, 1, 1, "Reserved", 1);
    agent.kill9();
    agent.spawn(&[]);
    csms.wait_calls("BootNotification", 2, T);
    agent.wait_ready();
    wait_status(&csms, 1, 1, "Reserved", 2);
    let updates = csms.wait_calls("ReservationStatusUpdate", 1, T);
    assert_eq!(updates[0]["payload"]["reservationId"], 2);
    assert_eq!(updates[0]["payload"]["reservationUpdateStatus"], "Expired");
    wait_for(T, "EVSE 1 available after the expiry", || {
        (agent.status()["evses"][0]["connectors"][0]["status"] == "Available").then_some(())
    });
    assert_eq!(csms.calls("ReservationStatusUpdate").len(), 1);
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
