//! Transactions (E), authorization (C) and remote control (F) in the core, on a virtual clock
//! against the scripted CSMS. Every message is validated against the official schemas by the
//! test kit; the journal is the in-memory reference journal, and `power_cycle` rebuilds the
//! station from it exactly as a restart does.

use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::testkit::{CSMS_EPOCH_MS, Harness, config_with, default_config};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

/// (eventType, triggerReason) of each TransactionEvent.
fn summary(h: &Harness) -> Vec<(String, String)> {
    h.events()
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap().to_owned(),
                e["triggerReason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Every transaction's events: Started first, Ended last, seqNo 0..n without gaps.
fn check_transactions(events: &[&Value]) -> BTreeMap<String, Vec<Value>> {
    let mut by_tx: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in events {
        let id = e["transactionInfo"]["transactionId"]
            .as_str()
            .unwrap()
            .to_owned();
        by_tx.entry(id).or_default().push((*e).clone());
    }
    for (id, evs) in &by_tx {
        let seq: Vec<u64> = evs.iter().map(|e| e["seqNo"].as_u64().unwrap()).collect();
        assert_eq!(
            seq,
            (0..evs.len() as u64).collect::<Vec<_>>(),
            "seqNo of {id}"
        );
        assert_eq!(evs[0]["eventType"], "Started", "{id}");
        for e in &evs[1..evs.len() - 1] {
            assert_eq!(e["eventType"], "Updated", "{id}");
        }
    }
    by_tx
}

fn energy(event: &Value) -> Option<f64> {
    event["meterValue"].as_array()?.last()?["sampledValue"]
        .as_array()?
        .iter()
        .find(|s| s["measurand"] == "Energy.Active.Import.Register")?["value"]
        .as_f64()
}

#[test]
fn online_lifecycle_plug_token_charge_unplug() {
    let mut h = Harness::new(default_config());
    h.advance_secs(5);
    h.plug(1, 1, true);
    let started = h.events()[0].clone();
    assert_eq!(started["eventType"], "Started");
    assert_eq!(started["triggerReason"], "CablePluggedIn");
    assert_eq!(started["seqNo"], 0);
    assert_eq!(started["transactionInfo"]["chargingState"], "EVConnected");
    assert_eq!(started["evse"], json!({"id": 1, "connectorId": 1}));
    assert!(started.get("offline").is_none());
    assert!(started.get("idToken").is_none());
    // E01.FR.09: TxStartedMeasurands with context Transaction.Begin.
    assert_eq!(
        started["meterValue"][0]["sampledValue"][0]["context"],
        "Transaction.Begin"
    );
    assert!(!h.power_path(1));

    h.token(1, "TOKEN1");
    assert_eq!(
        h.csms.of("Authorize").len(),
        1,
        "C01.FR.02: online, unknown token -> Authorize"
    );
    assert!(
        h.power_path(1),
        "authorized + EV connected closes the power path"
    );
    let authorized = h.events()[1].clone();
    assert_eq!(authorized["triggerReason"], "Authorized");
    assert_eq!(
        authorized["idToken"],
        json!({"idToken": "TOKEN1", "type": "ISO14443"})
    );
    assert_eq!(authorized["transactionInfo"]["chargingState"], "Charging");
    assert!(
        authorized.get("evse").is_none(),
        "evse only once after the EV connected"
    );

    h.advance_secs(180); // TxUpdatedInterval 60 s: three periodic updates
    h.plug(1, 1, false);
    assert!(!h.power_path(1));
    assert_eq!(
        summary(&h),
        pairs(&[
            ("Started", "CablePluggedIn"),
            ("Updated", "Authorized"),
            ("Updated", "MeterValuePeriodic"),
            ("Updated", "MeterValuePeriodic"),
            ("Updated", "MeterValuePeriodic"),
            ("Ended", "EVCommunicationLost"),
        ])
    );
    let events: Vec<Value> = h.events().into_iter().cloned().collect();
    let ended = events.last().unwrap();
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "EVDisconnected");
    assert_eq!(
        ended["meterValue"][0]["sampledValue"][0]["context"],
        "Transaction.End"
    );
    // The idToken only once (E01.FR.10); energy grows at 11 kW while charging.
    assert_eq!(
        events.iter().filter(|e| e.get("idToken").is_some()).count(),
        1
    );
    let e1 = energy(&events[2]).unwrap();
    let e3 = energy(&events[4]).unwrap();
    assert!(
        (e3 - e1 - 11_000.0 * 120.0 / 3600.0).abs() < 1.0,
        "{e1} {e3}"
    );
    check_transactions(&h.events());
    // Everything was answered: the journal holds nothing, no transaction is open.
    let persisted = h.journal.load();
    assert!(persisted.queue.is_empty());
    assert!(persisted.transactions.is_empty());
    let status = h.station.snapshot(h.now);
    assert!(status.evses[0].transaction.is_none());
}

#[test]
fn token_first_then_plug() {
    let mut h = Harness::new(default_config());
    h.token(1, "T");
    assert_eq!(summary(&h), pairs(&[("Started", "Authorized")]));
    let started = h.events()[0].clone();
    assert_eq!(started["transactionInfo"]["chargingState"], "Idle");
    assert_eq!(started["evse"], json!({"id": 1}));
    assert_eq!(started["idToken"]["idToken"], "T");
    h.advance_secs(30);
    h.plug(1, 1, true);
    let plugged = h.events()[1].clone();
    assert_eq!(plugged["triggerReason"], "CablePluggedIn");
    assert_eq!(plugged["transactionInfo"]["chargingState"], "Charging");
    assert_eq!(plugged["evse"], json!({"id": 1, "connectorId": 1}));
    assert!(h.power_path(1));
}

#[test]
fn the_same_token_stops_and_so_does_one_of_the_same_group() {
    let mut h = Harness::new(default_config());
    h.csms.set_auth("A", "Accepted", Some("FLEET"));
    h.csms.set_auth("B", "Accepted", Some("FLEET"));
    h.csms.set_auth("C", "Accepted", Some("OTHER"));
    h.plug(1, 1, true);
    h.token(1, "A");
    h.token(1, "C"); // another group: ignored (C09.FR.11)
    assert!(h.power_path(1));
    h.token(1, "B"); // same group: stops (C09.FR.03, E07)
    assert!(!h.power_path(1));
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["eventType"], "Ended");
    assert_eq!(ended["triggerReason"], "StopAuthorized");
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "Local");
    assert_eq!(
        ended["idToken"]["idToken"], "B",
        "E07.FR.02: the stopping idToken"
    );

    // Same token stops too.
    h.plug(1, 1, false);
    h.plug(1, 1, true);
    h.token(1, "A");
    h.token(1, "A");
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["triggerReason"], "StopAuthorized");
    check_transactions(&h.events());
}

#[test]
fn rejected_tokens_do_not_charge() {
    let mut h = Harness::new(default_config());
    for (token, status) in [("I", "Invalid"), ("B", "Blocked"), ("E", "Expired")] {
        h.csms.set_auth(token, status, None);
    }
    h.plug(1, 1, true);
    for token in ["I", "B", "E"] {
        h.token(1, token);
        assert!(!h.power_path(1), "{token}");
        let s = h.station.snapshot(h.now);
        assert!(
            s.evses[0]
                .last_authorization
                .as_deref()
                .unwrap()
                .starts_with("rejected"),
            "{token}"
        );
    }
    // Only the Started of the plug-in: rejected tokens change nothing (E02.FR.20).
    assert_eq!(summary(&h), pairs(&[("Started", "CablePluggedIn")]));
}

#[test]
fn offline_authorization_uses_the_cache_and_c15() {
    let mut h = Harness::new(default_config());
    // Learn token K online, then lose the CSMS.
    h.plug(1, 1, true);
    h.token(1, "K");
    h.plug(1, 1, false);
    h.csms.online = false;
    h.drop_connection();

    // Cached and Accepted: charges offline (C12, LocalAuthorizeOffline).
    h.plug(2, 1, true);
    h.token(2, "K");
    assert!(h.power_path(2));
    h.plug(2, 1, false);
    // Unknown: rejected, unless OfflineTxForUnknownIdEnabled (C15).
    h.plug(2, 1, true);
    h.token(2, "STRANGER");
    assert!(!h.power_path(2));
    h.plug(2, 1, false);

    let mut h2 = Harness::new(config_with(&[(
        "AuthCtrlr.OfflineTxForUnknownIdEnabled",
        "true",
    )]));
    h2.csms.online = false;
    h2.drop_connection();
    h2.plug(1, 1, true);
    h2.token(1, "STRANGER");
    assert!(h2.power_path(1));
}

#[test]
fn offline_transactions_are_delivered_in_order_with_the_offline_flag() {
    let mut h = Harness::new(config_with(&[(
        "AuthCtrlr.OfflineTxForUnknownIdEnabled",
        "true",
    )]));
    h.advance_secs(10);
    h.csms.online = false;
    h.drop_connection();
    let online_events = h.events().len();
    for evse in [1, 2] {
        h.plug(evse, 1, true);
        h.token(evse, &format!("T{evse}"));
        h.advance_secs(150);
        h.plug(evse, 1, false);
    }
    assert_eq!(
        h.events().len(),
        online_events,
        "nothing is sent while offline"
    );
    let status = h.station.snapshot(h.now);
    assert!(status.queue.depth >= 10, "{:?}", status.queue);
    assert!(status.queue.oldest_unsent_age_s.unwrap() >= 290);

    h.csms.online = true;
    h.advance_secs(300);
    let events = h.events();
    let txs = check_transactions(&events);
    assert_eq!(txs.len(), 2);
    for (id, evs) in &txs {
        assert_eq!(evs.last().unwrap()["eventType"], "Ended", "{id}");
        for e in evs {
            assert_eq!(e["offline"], true, "E04.FR.03: {e}");
        }
    }
    // FIFO: the transaction on EVSE 1 (first) arrives entirely before the one on EVSE 2.
    let evse_order: Vec<i64> = events
        .iter()
        .filter_map(|e| e["evse"]["id"].as_i64())
        .collect();
    assert_eq!(evse_order.first(), Some(&1));
    assert_eq!(h.station.snapshot(h.now).queue.depth, 0);
}

#[test]
fn ev_connection_timeout_ends_the_transaction() {
    let mut h = Harness::new(config_with(&[("TxCtrlr.EVConnectionTimeOut", "90")]));
    h.token(1, "T");
    h.advance_secs(89);
    assert!(summary(&h).iter().all(|(kind, _)| kind != "Ended"));
    h.advance_secs(1);
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["triggerReason"], "EVConnectTimeout");
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "Timeout");
}

#[test]
fn remote_start_and_stop() {
    let mut h = Harness::new(default_config());
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 77, "idToken": {"idToken": "APP", "type": "Central"}}),
    ));
    assert_eq!(answer["status"], "Accepted");
    let started = h.events()[0].clone();
    assert_eq!(started["triggerReason"], "RemoteStart");
    assert_eq!(started["transactionInfo"]["remoteStartId"], 77);
    assert_eq!(started["idToken"]["idToken"], "APP");
    // The CALLRESULT went out before the TransactionEvent (F01).
    assert!(
        h.csms.of("Authorize").is_empty(),
        "C03.FR.01: no Authorize for Central"
    );
    h.plug(1, 1, true);
    assert!(h.power_path(1));
    let tx_id = started["transactionInfo"]["transactionId"].clone();

    let status = result(h.call("GetTransactionStatus", json!({"transactionId": tx_id})));
    assert_eq!(
        status,
        json!({"ongoingIndicator": true, "messagesInQueue": false})
    );

    let answer = result(h.call("RequestStopTransaction", json!({"transactionId": tx_id})));
    assert_eq!(answer["status"], "Accepted");
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["triggerReason"], "RemoteStop");
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "Remote");
    assert!(!h.power_path(1));

    let answer = result(h.call("RequestStopTransaction", json!({"transactionId": "nope"})));
    assert_eq!(answer["status"], "Rejected");
    let status = result(h.call("GetTransactionStatus", json!({"transactionId": tx_id})));
    assert_eq!(
        status,
        json!({"ongoingIndicator": false, "messagesInQueue": false})
    );
    let status = result(h.call("GetTransactionStatus", json!({})));
    assert_eq!(status, json!({"messagesInQueue": false}));
}

#[test]
fn remote_start_on_a_plugged_evse_returns_its_transaction_id() {
    let mut h = Harness::new(config_with(&[("AuthCtrlr.AuthorizeRemoteStart", "true")]));
    h.plug(2, 1, true);
    let tx_id = h.events()[0]["transactionInfo"]["transactionId"].clone();
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 2, "remoteStartId": 5, "idToken": {"idToken": "U", "type": "ISO14443"}}),
    ));
    assert_eq!(answer["transactionId"], tx_id);
    assert_eq!(h.csms.of("Authorize").len(), 1, "AuthorizeRemoteStart");
    assert!(h.power_path(2));
    let last = h.events().last().cloned().cloned().unwrap();
    assert_eq!(last["triggerReason"], "RemoteStart");
    assert_eq!(last["transactionInfo"]["remoteStartId"], 5);
}

#[test]
fn remote_start_is_rejected_while_pending() {
    let mut h = Harness::new_with(default_config(), |c| c.boot_status = "Pending");
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"remoteStartId": 1, "idToken": {"idToken": "APP", "type": "Central"}}),
    ));
    assert_eq!(answer["status"], "Rejected", "B02.FR.05");
}

#[test]
fn failed_transaction_messages_are_retried_then_discarded() {
    let mut h = Harness::new(config_with(&[
        ("OCPPCommCtrlr.MessageAttempts[TransactionEvent]", "3"),
        (
            "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]",
            "10",
        ),
    ]));
    h.csms.failing = vec!["TransactionEvent"]; // CALLERROR for every TransactionEvent
    h.plug(1, 1, true); // attempt 1 fails at once; retry after 10 s x 1
    assert_eq!(h.csms.of("TransactionEvent").len(), 1);
    h.advance_secs(9);
    assert_eq!(h.csms.of("TransactionEvent").len(), 1);
    h.advance_secs(1); // attempt 2 fails; retry after 10 s x 2 (E13.FR.03)
    assert_eq!(h.csms.of("TransactionEvent").len(), 2);
    h.advance_secs(19);
    assert_eq!(h.csms.of("TransactionEvent").len(), 2);
    h.advance_secs(1); // attempt 3 fails: discarded (E13.FR.04)
    assert_eq!(h.csms.of("TransactionEvent").len(), 3);
    assert_eq!(h.station.snapshot(h.now).queue.dropped, 1);
    assert!(h.journal.load().queue.is_empty());
    // Each retry got a new message id (part 4), same payload.
    let sent = h.csms.of("TransactionEvent");
    assert_ne!(sent[0].id, sent[1].id);
    assert_eq!(sent[0].payload, sent[2].payload);
}

#[test]
fn a_lost_connection_is_not_a_delivery_attempt() {
    let mut h = Harness::new(config_with(&[(
        "OCPPCommCtrlr.MessageAttempts[TransactionEvent]",
        "1",
    )]));
    h.csms.answering = false;
    h.plug(1, 1, true);
    h.drop_connection(); // the Started was in flight
    h.csms.answering = true;
    h.advance_secs(60);
    assert_eq!(
        h.csms.of("TransactionEvent").len(),
        2,
        "resent after reconnect"
    );
    assert_eq!(h.station.snapshot(h.now).queue.dropped, 0);
}

#[test]
fn power_loss_ends_open_transactions_with_the_last_reading() {
    let mut h = Harness::new(default_config());
    h.plug(1, 1, true);
    h.token(1, "T");
    h.advance_secs(150); // two periodic updates and two meter checkpoints
    let tx_id = h.events()[0]["transactionInfo"]["transactionId"].clone();
    let sent_before = h.events().len();
    h.csms.online = false;
    h.power_cycle(false);
    assert!(!h.power_path(1), "the contactor starts open");
    h.csms.online = true;
    h.advance_secs(60);
    let events: Vec<Value> = h.events().into_iter().cloned().collect();
    let ended = events
        .iter()
        .find(|e| e["eventType"] == "Ended")
        .expect("the open transaction was ended");
    assert_eq!(ended["transactionInfo"]["transactionId"], tx_id);
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "PowerLoss");
    assert_eq!(ended["seqNo"], sent_before as u64);
    let last_energy = energy(ended).unwrap();
    assert!(last_energy > 11_000.0 * 119.0 / 3600.0, "{last_energy}");
    check_transactions(
        &h.events()
            .into_iter()
            .take(sent_before + 1)
            .collect::<Vec<_>>(),
    );
}

#[test]
fn a_clean_restart_ends_them_with_reboot() {
    let mut h = Harness::new(default_config());
    h.plug(1, 1, true);
    h.power_cycle(true);
    h.advance_secs(10);
    let ended = h
        .events()
        .into_iter()
        .find(|e| e["eventType"] == "Ended")
        .cloned()
        .unwrap();
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "Reboot");
    assert!(
        h.journal.load().meta("clean_shutdown").is_none(),
        "the clean-shutdown mark is consumed"
    );
}

#[test]
fn queue_bound_drops_intermediate_updates_only() {
    let mut config = config_with(&[
        ("SampledDataCtrlr.TxUpdatedInterval", "10"),
        ("AuthCtrlr.OfflineTxForUnknownIdEnabled", "true"),
    ]);
    config.max_queue_bytes = 12_000;
    let mut h = Harness::new(config);
    h.csms.online = false;
    h.drop_connection();
    h.plug(1, 1, true);
    h.token(1, "T");
    h.advance_secs(3000); // ~300 periodic updates of ~400 bytes: far over 12 kB
    h.plug(1, 1, false);
    let s = h.station.snapshot(h.now);
    assert!(s.queue.bytes <= 12_000, "{:?}", s.queue);
    assert!(s.queue.dropped > 200, "{:?}", s.queue);
    h.csms.online = true;
    h.advance_secs(600);
    let events = h.events();
    assert_eq!(events.first().unwrap()["eventType"], "Started");
    assert_eq!(events.last().unwrap()["eventType"], "Ended");
    // seqNo has gaps now (the CSMS sees what was dropped) but stays increasing.
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["seqNo"].as_u64().unwrap())
        .collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
    // The remaining Updated events still span the whole transaction.
    assert!(events.len() > 5);
}

#[test]
fn events_before_the_time_is_known_are_rebased() {
    // The CSMS is down at start: the station's clock says 2000-01-01 (no RTC).
    let mut h = Harness::new_with(
        config_with(&[
            ("TxCtrlr.TxBeforeAcceptedEnabled", "true"),
            ("AuthCtrlr.OfflineTxForUnknownIdEnabled", "true"),
        ]),
        |c| c.online = false,
    );
    h.advance_secs(20);
    h.plug(1, 1, true);
    h.token(1, "T");
    h.advance_secs(100);
    h.csms.online = true;
    h.advance_secs(120);
    let events = h.events();
    assert!(!events.is_empty());
    let started = events[0];
    // Plugged at virtual t=20 s: on the CSMS's clock that is CSMS_EPOCH + 20 s.
    let expected = ocpp_agent::ocpp::clock::UtcTime::from_unix_millis(CSMS_EPOCH_MS + 20_000);
    assert_eq!(started["timestamp"], expected.to_rfc3339());
    for e in &events {
        let t = ocpp_agent::ocpp::clock::UtcTime::parse_rfc3339(e["timestamp"].as_str().unwrap())
            .unwrap();
        assert!(t.unix_millis() >= CSMS_EPOCH_MS, "{e}");
        for mv in e["meterValue"].as_array().into_iter().flatten() {
            let t =
                ocpp_agent::ocpp::clock::UtcTime::parse_rfc3339(mv["timestamp"].as_str().unwrap())
                    .unwrap();
            assert!(t.unix_millis() >= CSMS_EPOCH_MS, "{mv}");
        }
    }
}

#[test]
fn an_invalid_id_in_the_transaction_response_ends_it() {
    let mut h = Harness::new(default_config());
    h.plug(1, 1, true);
    h.token(1, "T"); // Authorize says Accepted ...
    h.csms.set_auth("T", "Invalid", None); // ... but the TransactionEvent's answer says Invalid
    h.advance_secs(61); // the next event carrying no token changes nothing; re-present:
    assert!(h.power_path(1));
    // The Authorized event went out with the token while the CSMS still accepted it; make the
    // CSMS refuse it in a fresh transaction instead.
    h.plug(1, 1, false);
    h.plug(1, 1, true);
    h.csms.set_auth("T", "Accepted", None);
    h.csms.answering = false;
    h.token(1, "T");
    // Authorize is in flight; answer it Accepted by hand, then the TE with Invalid.
    let auth = h.csms.received.last().unwrap().clone();
    assert_eq!(auth.action, "Authorize");
    h.send_raw(&format!(
        r#"[3,"{}",{{"idTokenInfo":{{"status":"Accepted"}}}}]"#,
        auth.id
    ));
    let te = h.csms.received.last().unwrap().clone();
    assert_eq!(te.payload["triggerReason"], "Authorized");
    h.send_raw(&format!(
        r#"[3,"{}",{{"idTokenInfo":{{"status":"Invalid"}}}}]"#,
        te.id
    ));
    h.csms.answering = true;
    h.advance_secs(1);
    assert!(!h.power_path(1));
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["triggerReason"], "Deauthorized");
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "DeAuthorized");
}

#[test]
fn clock_aligned_meter_values_and_ended_samples() {
    let mut h = Harness::new(config_with(&[
        ("AlignedDataCtrlr.Interval", "900"),
        (
            "AlignedDataCtrlr.Measurands",
            "Energy.Active.Import.Register,Voltage",
        ),
        ("SampledDataCtrlr.TxEndedInterval", "300"),
        (
            "SampledDataCtrlr.TxEndedMeasurands",
            "Energy.Active.Import.Register,Power.Active.Import",
        ),
        ("SampledDataCtrlr.TxUpdatedInterval", "0"),
    ]));
    h.advance_secs(900);
    // Outside a transaction: MeterValues requests, one per EVSE, on the quarter hour.
    let mv = h.csms.of("MeterValues");
    assert_eq!(mv.len(), 2);
    assert_eq!(
        mv[0].payload["meterValue"][0]["sampledValue"][0]["context"],
        "Sample.Clock"
    );
    assert!(
        mv[0].payload["meterValue"][0]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with(":15:00.000Z")
    );
    h.plug(1, 1, true);
    h.token(1, "T");
    h.advance_secs(900);
    let clock_events: Vec<Value> = h
        .events()
        .into_iter()
        .filter(|e| e["triggerReason"] == "MeterValueClock")
        .cloned()
        .collect();
    assert_eq!(clock_events.len(), 1);
    assert_eq!(
        clock_events[0]["meterValue"][0]["sampledValue"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    h.plug(1, 1, false);
    let ended = h.events().last().cloned().cloned().unwrap();
    let values = ended["meterValue"].as_array().unwrap();
    // Three Sample.Periodic samples (every 300 s) and the Transaction.End one.
    let contexts: Vec<&str> = values
        .iter()
        .map(|v| v["sampledValue"][0]["context"].as_str().unwrap())
        .collect();
    assert_eq!(
        contexts,
        vec![
            "Sample.Periodic",
            "Sample.Periodic",
            "Sample.Periodic",
            "Transaction.End"
        ]
    );
}

/// The CSMS's clock steps back a few ms (a Heartbeat answer) while an aligned timer is armed:
/// the timer then fires just before the boundary by the new clock. One reading per boundary,
/// stamped with the boundary, in MeterValues and in the transaction (an independent suite saw
/// two readings 2 ms apart at a :30:00 boundary).
#[test]
fn one_clock_aligned_reading_per_boundary_when_the_csms_clock_steps_back() {
    let mut h = Harness::new(config_with(&[
        ("AlignedDataCtrlr.Interval", "60"),
        ("AlignedDataCtrlr.TxEndedInterval", "60"),
        ("SampledDataCtrlr.TxUpdatedInterval", "0"),
    ]));
    let step_back = |h: &mut Harness, ms: i64| {
        h.csms.epoch_ms -= ms;
        h.call("TriggerMessage", json!({"requestedMessage": "Heartbeat"}));
    };
    let stamps = |values: Vec<&Value>| -> Vec<String> {
        values
            .iter()
            .map(|mv| mv["timestamp"].as_str().unwrap()[11..].to_owned())
            .collect()
    };
    // Five seconds before each boundary, the clock steps back; then ten seconds pass.
    let cross = |h: &mut Harness, minute: u64, ms: i64| {
        let now_s = h.now.as_millis() / 1000;
        h.advance_secs(minute * 60 - 5 - now_s);
        step_back(h, ms);
        h.advance_secs(10);
    };
    // Idle: MeterValues for EVSE 1 at 00:01:00 and 00:02:00.
    cross(&mut h, 1, 3);
    cross(&mut h, 2, 2);
    let idle: Vec<&Value> = h
        .csms
        .of("MeterValues")
        .into_iter()
        .filter(|r| r.payload["evseId"] == 1)
        .map(|r| &r.payload["meterValue"][0])
        .collect();
    assert_eq!(stamps(idle), ["00:01:00.000Z", "00:02:00.000Z"]);

    // In a transaction: Updated events (MeterValueClock) and the Ended event's samples.
    h.plug(1, 1, true);
    h.token(1, "T");
    cross(&mut h, 3, 4);
    cross(&mut h, 4, 1);
    let clock: Vec<&Value> = h
        .events()
        .into_iter()
        .filter(|e| e["triggerReason"] == "MeterValueClock")
        .map(|e| &e["meterValue"][0])
        .collect();
    assert_eq!(stamps(clock), ["00:03:00.000Z", "00:04:00.000Z"]);
    h.plug(1, 1, false);
    let ended = h.events().last().cloned().cloned().unwrap();
    let aligned: Vec<&Value> = ended["meterValue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["sampledValue"][0]["context"] == "Sample.Clock")
        .collect();
    assert_eq!(stamps(aligned), ["00:03:00.000Z", "00:04:00.000Z"]);
}

#[test]
fn max_energy_on_invalid_id() {
    let mut h = Harness::new(config_with(&[
        ("TxCtrlr.StopTxOnInvalidId", "false"),
        ("TxCtrlr.MaxEnergyOnInvalidId", "1000"),
    ]));
    h.plug(1, 1, true);
    h.csms.answering = false;
    h.token(1, "T");
    let auth = h.csms.received.last().unwrap().clone();
    h.send_raw(&format!(
        r#"[3,"{}",{{"idTokenInfo":{{"status":"Accepted"}}}}]"#,
        auth.id
    ));
    let te = h.csms.received.last().unwrap().clone();
    h.send_raw(&format!(
        r#"[3,"{}",{{"idTokenInfo":{{"status":"Invalid"}}}}]"#,
        te.id
    ));
    h.csms.answering = true;
    assert!(h.power_path(1), "E05.FR.03: energy until the limit");
    h.advance_secs(300); // 11 kW x 300 s = 917 Wh
    assert!(h.power_path(1));
    h.advance_secs(60);
    assert!(!h.power_path(1), "limit reached");
    assert!(
        h.events()
            .iter()
            .any(|e| e["triggerReason"] == "EnergyLimitReached")
    );
    assert!(
        h.station.snapshot(h.now).evses[0].transaction.is_some(),
        "the transaction goes on"
    );
}

#[test]
fn clear_cache_forgets_tokens() {
    let mut h = Harness::new(config_with(&[("AuthCtrlr.LocalPreAuthorize", "true")]));
    h.plug(1, 1, true);
    h.token(1, "K");
    h.plug(1, 1, false);
    assert_eq!(h.csms.of("Authorize").len(), 1);
    h.plug(1, 1, true);
    h.token(1, "K");
    assert_eq!(
        h.csms.of("Authorize").len(),
        1,
        "LocalPreAuthorize: the cache decided"
    );
    h.plug(1, 1, false);
    assert_eq!(
        result(h.call("ClearCache", json!({})))["status"],
        "Accepted"
    );
    assert!(h.journal.load().auth_cache.is_empty());
    h.plug(1, 1, true);
    h.token(1, "K");
    assert_eq!(h.csms.of("Authorize").len(), 2);
}

/// The sans-IO version of the kill -9 test: a restart after every single step of a busy
/// scenario (CSMS flapping, two EVSEs) loses nothing and duplicates at most the message in
/// flight at the restart.
#[test]
fn restarting_at_any_step_loses_nothing() {
    for restart_at in 0..40 {
        let mut h = Harness::new(config_with(&[
            ("SampledDataCtrlr.TxUpdatedInterval", "20"),
            ("AuthCtrlr.OfflineTxForUnknownIdEnabled", "true"),
            ("TxCtrlr.TxBeforeAcceptedEnabled", "true"),
        ]));
        for step in 0..40 {
            if step == restart_at {
                h.power_cycle(step % 2 == 0);
            }
            match step % 10 {
                0 => h.plug(1, 1, true),
                1 => h.token(1, "A"),
                2 => h.plug(2, 1, true),
                3 => {
                    h.csms.online = false;
                    h.drop_connection();
                }
                4 => h.token(2, "B"),
                5 => h.csms.online = true,
                6 => h.plug(1, 1, false),
                8 => h.plug(2, 1, false),
                _ => {}
            }
            h.advance_secs(25);
        }
        h.plug(1, 1, false);
        h.plug(2, 1, false);
        h.csms.online = true;
        h.advance_secs(3600);
        let mut seen: BTreeMap<(String, u64), Value> = BTreeMap::new();
        for e in h.events() {
            let key = (
                e["transactionInfo"]["transactionId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                e["seqNo"].as_u64().unwrap(),
            );
            if let Some(previous) = seen.get(&key) {
                assert_eq!(
                    previous, e,
                    "restart at {restart_at}: a duplicate must be identical"
                );
            }
            seen.insert(key, e.clone());
        }
        let unique: Vec<&Value> = seen.values().collect();
        let by_tx = {
            let mut by_tx: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for e in &unique {
                by_tx
                    .entry(
                        e["transactionInfo"]["transactionId"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    )
                    .or_default()
                    .push(e["seqNo"].as_u64().unwrap());
            }
            by_tx
        };
        assert!(by_tx.len() >= 4, "restart at {restart_at}: {by_tx:?}");
        for (id, seqs) in &by_tx {
            assert_eq!(
                *seqs,
                (0..seqs.len() as u64).collect::<Vec<_>>(),
                "restart at {restart_at}: {id}"
            );
            let last = unique
                .iter()
                .filter(|e| e["transactionInfo"]["transactionId"] == id.as_str())
                .max_by_key(|e| e["seqNo"].as_u64())
                .unwrap();
            assert_eq!(last["eventType"], "Ended", "restart at {restart_at}: {id}");
            let ends = unique
                .iter()
                .filter(|e| {
                    e["transactionInfo"]["transactionId"] == id.as_str()
                        && e["eventType"] != "Updated"
                })
                .count();
            assert_eq!(
                ends, 2,
                "restart at {restart_at}: {id} has one Started and one Ended"
            );
        }
        assert!(h.journal.load().queue.is_empty(), "restart at {restart_at}");
    }
}

#[test]
fn transaction_status_reports_queued_messages() {
    // TC_E_28..34: the CSMS refuses TransactionEvents for now, so they stay queued (E13).
    let mut h = Harness::new(default_config());
    h.csms.failing = vec!["TransactionEvent"];
    h.plug(1, 1, true);
    let tx_id =
        h.csms.of("TransactionEvent")[0].payload["transactionInfo"]["transactionId"].clone();
    let status = |h: &mut Harness, payload: Value| result(h.call("GetTransactionStatus", payload));
    assert_eq!(
        status(&mut h, json!({"transactionId": tx_id})),
        json!({"ongoingIndicator": true, "messagesInQueue": true})
    );
    assert_eq!(status(&mut h, json!({})), json!({"messagesInQueue": true}));
    h.plug(1, 1, false);
    assert_eq!(
        status(&mut h, json!({"transactionId": tx_id})),
        json!({"ongoingIndicator": false, "messagesInQueue": true})
    );
    assert_eq!(
        status(&mut h, json!({"transactionId": "unknown"})),
        json!({"ongoingIndicator": false, "messagesInQueue": false})
    );
}

/// C16 without a UI (TC_C_49_CS): a Master Pass presented at any reader, once the CSMS says
/// its group is AuthCtrlr.MasterPassGroupId, stops every ongoing transaction with
/// triggerReason StopAuthorized and stoppedReason MasterPass (C16.FR.02).
#[test]
fn a_master_pass_stops_every_ongoing_transaction() {
    let mut h = Harness::new(config_with(&[("AuthCtrlr.MasterPassGroupId", "POLICE")]));
    h.csms.set_auth("MASTER", "Accepted", Some("POLICE"));
    h.plug(1, 1, true);
    h.token(1, "A");
    h.plug(2, 2, true);
    h.token(2, "B");
    assert!(h.power_path(1) && h.power_path(2));
    h.token(1, "MASTER");
    assert_eq!(
        h.csms.of("Authorize").len(),
        3,
        "the Master Pass is authorized"
    );
    assert!(!h.power_path(1) && !h.power_path(2));
    let ended: Vec<&Value> = h
        .events()
        .into_iter()
        .filter(|e| e["eventType"] == "Ended")
        .collect();
    assert_eq!(
        ended.len(),
        2,
        "both transactions end (TxStopPoint Authorized)"
    );
    for e in ended {
        assert_eq!(e["triggerReason"], "StopAuthorized");
        assert_eq!(e["transactionInfo"]["stoppedReason"], "MasterPass");
        assert_eq!(e["idToken"]["idToken"], "MASTER");
    }
    check_transactions(&h.events());
}

/// C16.FR.03 (TC_C_45_CS): a Master Pass never starts a transaction, presented locally or in
/// a RequestStartTransaction.
#[test]
fn a_master_pass_cannot_start_a_transaction() {
    let mut h = Harness::new(config_with(&[
        ("AuthCtrlr.MasterPassGroupId", "POLICE"),
        ("TxCtrlr.TxStartPoint", "Authorized"),
    ]));
    h.csms.set_auth("MASTER", "Accepted", Some("POLICE"));
    h.token(1, "MASTER");
    h.plug(1, 1, true);
    assert!(h.events().is_empty());
    assert!(!h.power_path(1));
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 3, "idToken": {"idToken": "MASTER", "type": "ISO14443"},
               "groupIdToken": {"idToken": "POLICE", "type": "Central"}}),
    ));
    assert_eq!(answer["status"], "Rejected");
    assert!(h.events().is_empty());
    // Without the variable set, the same group is an ordinary one.
    let mut h = Harness::new(config_with(&[("TxCtrlr.TxStartPoint", "Authorized")]));
    h.csms.set_auth("MASTER", "Accepted", Some("POLICE"));
    h.token(1, "MASTER");
    assert_eq!(h.events().len(), 1);
}

/// C16.FR.04/05 (TC_C_14_CS): a Master Pass recognised from the cache with LocalPreAuthorize,
/// and from the local list while offline.
#[test]
fn a_master_pass_is_recognised_from_the_cache_and_the_local_list() {
    let mut h = Harness::new(config_with(&[
        ("AuthCtrlr.MasterPassGroupId", "POLICE"),
        ("AuthCtrlr.LocalPreAuthorize", "true"),
    ]));
    h.csms.set_auth("MASTER", "Accepted", Some("POLICE"));
    h.plug(2, 1, true);
    h.token(2, "MASTER"); // authorized by the CSMS, cached, starts nothing
    assert_eq!(h.csms.of("Authorize").len(), 1);
    h.token(2, "A");
    assert!(h.power_path(2));
    let authorizes = h.csms.of("Authorize").len();
    h.token(2, "MASTER"); // from the cache: no Authorize
    assert_eq!(h.csms.of("Authorize").len(), authorizes);
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "MasterPass");

    let mut h = Harness::new(config_with(&[("AuthCtrlr.MasterPassGroupId", "POLICE")]));
    let list = json!([{"idToken": {"idToken": "MASTER", "type": "ISO14443"},
                       "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "POLICE", "type": "Central"}}},
                      {"idToken": {"idToken": "A", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]);
    let r = result(h.call(
        "SendLocalList",
        json!({"versionNumber": 1, "updateType": "Full", "localAuthorizationList": list}),
    ));
    assert_eq!(r["status"], "Accepted");
    h.csms.online = false;
    h.drop_connection();
    h.plug(1, 1, true);
    h.token(1, "A");
    assert!(h.power_path(1));
    h.token(1, "MASTER");
    assert!(!h.power_path(1));
    h.csms.online = true;
    h.advance_secs(120);
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["transactionInfo"]["stoppedReason"], "MasterPass");
    assert_eq!(ended["offline"], true);
}

/// C09/C10: the groupIdToken of a TransactionEventResponse applies to the running transaction
/// (another token of that group may stop it) and goes into the cache.
#[test]
fn a_group_given_in_a_transaction_event_response_applies_to_the_transaction() {
    let mut h = Harness::new(config_with(&[("AuthCtrlr.LocalPreAuthorize", "true")]));
    // A remote start of a Central token sends no Authorize: the group comes with the
    // answer to the Started event.
    h.csms.set_auth("APP", "Accepted", Some("FAMILY"));
    h.csms.set_auth("PARTNER", "Accepted", Some("FAMILY"));
    let answer = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 9, "idToken": {"idToken": "APP", "type": "Central"}}),
    ));
    assert_eq!(answer["status"], "Accepted");
    h.plug(1, 1, true);
    assert!(h.power_path(1));
    assert!(h.csms.of("Authorize").is_empty());
    h.token(1, "PARTNER");
    assert!(!h.power_path(1), "the same group stops it (C09.FR.03)");
    let ended = h.events().last().cloned().cloned().unwrap();
    assert_eq!(ended["triggerReason"], "StopAuthorized");
    assert_eq!(ended["idToken"]["idToken"], "PARTNER");
}

/// F01.FR.20/23/24: RequestStartTransaction without evseId picks an EVSE that can take the
/// session (connector availability and faults count), the one where an EV waits first, and
/// is Rejected when none can.
#[test]
fn remote_start_without_evse_selects_one_that_can_take_the_session() {
    let start = |h: &mut Harness, id: i64| -> Value {
        result(h.call(
            "RequestStartTransaction",
            json!({"remoteStartId": id, "idToken": {"idToken": format!("APP{id}"), "type": "Central"}}),
        ))
    };
    let mut h = Harness::new(default_config());
    // EVSE 1's only connector Inoperative: EVSE 2 is chosen.
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 1, "connectorId": 1}}),
    ));
    assert_eq!(r["status"], "Accepted");
    assert_eq!(start(&mut h, 1)["status"], "Accepted");
    let started = h.events()[0].clone();
    assert_eq!(started["evse"]["id"], 2);
    // Nothing else can take one: EVSE 2 is authorized, EVSE 1 inoperative (F01.FR.23/24).
    assert_eq!(start(&mut h, 2)["status"], "Rejected");
    // Explicitly on the inoperative connector's EVSE: Rejected (F01.FR.23).
    let r = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 3, "idToken": {"idToken": "APP3", "type": "Central"}}),
    ));
    assert_eq!(r["status"], "Rejected");

    // A faulted EVSE is skipped, and an EV already plugged in is preferred.
    let mut h = Harness::new(default_config());
    h.fault(1, 1, Some("ground fault"));
    h.plug(2, 2, true);
    assert_eq!(start(&mut h, 4)["status"], "Accepted");
    let last = h.events().last().cloned().cloned().unwrap();
    assert_eq!(last["triggerReason"], "RemoteStart");
    assert!(h.power_path(2), "on the EVSE where the EV waits");
    assert!(!h.power_path(1));
}

/// AuthCtrlr.DisableRemoteAuthorization: no Authorize; the list and the cache decide.
/// AuthCacheCtrlr.DisablePostAuthorize: a cached non-Accepted token is not asked about again.
#[test]
fn remote_authorization_and_post_authorization_can_be_disabled() {
    let mut h = Harness::new(config_with(&[(
        "AuthCtrlr.DisableRemoteAuthorization",
        "true",
    )]));
    h.plug(1, 1, true);
    h.token(1, "STRANGER");
    assert!(h.csms.of("Authorize").is_empty());
    assert!(!h.power_path(1), "unknown locally: rejected");
    let list = json!([{"idToken": {"idToken": "LISTED", "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}]);
    h.call(
        "SendLocalList",
        json!({"versionNumber": 1, "updateType": "Full", "localAuthorizationList": list}),
    );
    h.token(1, "LISTED");
    assert!(h.power_path(1));
    assert!(h.csms.of("Authorize").is_empty());

    let mut h = Harness::new(config_with(&[(
        "AuthCacheCtrlr.DisablePostAuthorize",
        "true",
    )]));
    h.csms.set_auth("BLOCKED", "Blocked", None);
    h.plug(1, 1, true);
    h.token(1, "BLOCKED");
    assert_eq!(h.csms.of("Authorize").len(), 1);
    h.token(1, "BLOCKED"); // cached Blocked: not asked again
    assert_eq!(h.csms.of("Authorize").len(), 1);
    assert!(!h.power_path(1));
    // The default asks again (C10.FR.03).
    let mut h = Harness::new(default_config());
    h.csms.set_auth("BLOCKED", "Blocked", None);
    h.plug(1, 1, true);
    h.token(1, "BLOCKED");
    h.token(1, "BLOCKED");
    assert_eq!(h.csms.of("Authorize").len(), 2);

    // The local list: a listed token that is not Accepted is asked about (C14.FR.03) unless
    // LocalAuthListCtrlr.DisablePostAuthorize (TC_C_28_CS, the second of that number).
    for (disabled, authorizes) in [("false", 1), ("true", 0)] {
        let mut h = Harness::new(config_with(&[(
            "LocalAuthListCtrlr.DisablePostAuthorize",
            disabled,
        )]));
        let list = json!([{"idToken": {"idToken": "LISTED-BLOCKED", "type": "ISO14443"},
                           "idTokenInfo": {"status": "Blocked"}}]);
        h.call(
            "SendLocalList",
            json!({"versionNumber": 1, "updateType": "Full", "localAuthorizationList": list}),
        );
        h.plug(1, 1, true);
        h.token(1, "LISTED-BLOCKED");
        assert_eq!(h.csms.of("Authorize").len(), authorizes, "{disabled}");
    }
}

/// SampledDataCtrlr.Enabled / AlignedDataCtrlr.Enabled = false: no readings of their kind;
/// AlignedDataCtrlr.SendDuringIdle: no clock-aligned readings while a transaction runs.
#[test]
fn sampled_and_aligned_data_can_be_switched_off() {
    let mut h = Harness::new(config_with(&[
        ("SampledDataCtrlr.Enabled", "false"),
        ("SampledDataCtrlr.TxUpdatedInterval", "60"),
        ("AlignedDataCtrlr.Interval", "300"),
    ]));
    h.plug(1, 1, true);
    h.token(1, "T");
    h.advance_secs(600);
    h.plug(1, 1, false);
    for e in h.events() {
        let contexts: Vec<&str> = e["meterValue"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|m| m["sampledValue"][0]["context"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            contexts.iter().all(|c| *c == "Sample.Clock"),
            "only aligned readings: {e}"
        );
    }
    assert_eq!(
        h.events()
            .iter()
            .filter(|e| e["triggerReason"] == "MeterValueClock")
            .count(),
        2
    );

    let mut h = Harness::new(config_with(&[
        ("AlignedDataCtrlr.Enabled", "false"),
        ("AlignedDataCtrlr.Interval", "300"),
    ]));
    h.advance_secs(900);
    assert!(h.csms.of("MeterValues").is_empty());

    let mut h = Harness::new(config_with(&[
        ("AlignedDataCtrlr.SendDuringIdle", "true"),
        ("AlignedDataCtrlr.Interval", "300"),
        ("SampledDataCtrlr.TxUpdatedInterval", "0"),
    ]));
    h.advance_secs(300);
    assert_eq!(h.csms.of("MeterValues").len(), 2, "idle: one per EVSE");
    h.plug(1, 1, true);
    h.token(1, "T");
    h.advance_secs(600);
    assert_eq!(h.csms.of("MeterValues").len(), 2, "none while charging");
    assert!(
        h.events()
            .iter()
            .all(|e| e["triggerReason"] != "MeterValueClock")
    );
    h.plug(1, 1, false);
    h.advance_secs(300);
    assert_eq!(h.csms.of("MeterValues").len(), 4);
}

// ----- delivery order across the two queues (issue 12; `Ctx::pump`) ------------------------

/// What the CSMS received from `from` on, one short line per request: the action and what
/// tells it apart (event type, connector status, idToken).
fn trace(h: &Harness, from: usize) -> Vec<String> {
    h.csms.received[from..]
        .iter()
        .map(|r| {
            let p = &r.payload;
            match r.action.as_str() {
                "TransactionEvent" => {
                    format!("TransactionEvent {}", p["eventType"].as_str().unwrap())
                }
                "StatusNotification" => format!(
                    "StatusNotification {}/{} {}",
                    p["evseId"],
                    p["connectorId"],
                    p["connectorStatus"].as_str().unwrap()
                ),
                "Authorize" => format!("Authorize {}", p["idToken"]["idToken"].as_str().unwrap()),
                "SecurityEventNotification" => {
                    format!("SecurityEventNotification {}", p["type"].as_str().unwrap())
                }
                other => other.to_owned(),
            }
        })
        .collect()
}

fn lines(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Advances in small steps until the station is connected again (nothing is answered while
/// the CSMS holds its answers, so no MessageTimeout may pass).
fn until_connected(h: &mut Harness) {
    for _ in 0..1000 {
        if h.connected {
            return;
        }
        h.advance_secs(1);
    }
    panic!("the station did not reconnect");
}

#[test]
fn after_an_outage_the_ended_goes_before_the_status_and_authorize_made_later() {
    // Short outage (B04.FR.02: only the changed connector) and one longer than
    // OfflineThreshold (B04.FR.01: every connector); the order is the same.
    for (outage_s, statuses) in [
        (20, vec!["StatusNotification 1/1 Available"]),
        (
            200,
            vec![
                "StatusNotification 1/1 Available",
                "StatusNotification 2/1 Available",
                "StatusNotification 2/2 Available",
            ],
        ),
    ] {
        let mut h = Harness::new(config_with(&[("SampledDataCtrlr.TxUpdatedInterval", "0")]));
        h.plug(1, 1, true);
        h.token(1, "T1");
        h.advance_secs(10);
        h.csms.online = false;
        h.drop_connection();
        h.advance_secs(5);
        h.plug(1, 1, false); // ends the transaction offline: its Ended is queued (E04.FR.01)
        h.advance_secs(outage_s);
        let from = h.csms.received.len();
        // A slow CSMS: the first request after reconnecting is still unanswered when the next
        // driver presents a token.
        h.csms.online = true;
        h.csms.holding = true;
        until_connected(&mut h);
        h.token(1, "T2");
        h.release_all();
        let mut expected = vec!["TransactionEvent Ended"];
        expected.extend(statuses.iter().copied());
        // T2 is accepted and starts a transaction (TxStartPoint Authorized).
        expected.extend(["Authorize T2", "TransactionEvent Started"]);
        assert_eq!(trace(&h, from), lines(&expected), "outage of {outage_s} s");
        let ended = h.events().into_iter().find(|e| e["eventType"] == "Ended");
        assert_eq!(ended.unwrap()["offline"], true, "E04.FR.03");
    }
}

#[test]
fn an_ended_in_flight_when_the_link_drops_goes_before_the_statuses_made_after() {
    let mut h = Harness::new(config_with(&[("SampledDataCtrlr.TxUpdatedInterval", "0")]));
    h.plug(1, 1, true);
    h.token(1, "T1");
    h.advance_secs(10);
    let from = h.csms.received.len();
    h.csms.holding = true;
    // Unplugging makes the status first and then the Ended (the order of part 6's reusable
    // state EVDisconnected); the status goes out and is lost with the connection.
    h.plug(1, 1, false);
    assert_eq!(
        trace(&h, from),
        lines(&["StatusNotification 1/1 Available"])
    );
    h.csms.held.clear();
    h.csms.holding = false;
    h.drop_connection();
    until_connected(&mut h);
    // B04.FR.02: the status the CSMS never acknowledged is made again after reconnecting, so
    // after the Ended that was queued before it.
    assert_eq!(
        trace(&h, from),
        lines(&[
            "StatusNotification 1/1 Available",
            "TransactionEvent Ended",
            "StatusNotification 1/1 Available",
        ])
    );
}

#[test]
fn after_a_restart_the_old_queue_goes_before_the_new_statuses() {
    // The transaction ended before the restart (its Ended waits in the journal), or was open
    // at the power cut (the restart ends it with PowerLoss); the volatile queue is gone either
    // way, and the statuses B01.FR.05 makes after the boot follow the old queue.
    for ended_before in [true, false] {
        let mut h = Harness::new(config_with(&[("SampledDataCtrlr.TxUpdatedInterval", "0")]));
        h.plug(1, 1, true);
        h.token(1, "T1");
        h.advance_secs(10);
        h.csms.online = false;
        h.drop_connection();
        h.advance_secs(5);
        if ended_before {
            h.plug(1, 1, false);
        }
        h.power_cycle(false);
        if !ended_before {
            h.plug(1, 1, false); // the cable came out during the power cut
        }
        let from = h.csms.received.len();
        h.csms.online = true;
        h.csms.holding = true;
        until_connected(&mut h);
        assert_eq!(trace(&h, from), lines(&["BootNotification"]));
        h.release(); // Accepted
        h.token(1, "T2");
        h.release_all();
        let ended = h.events().into_iter().find(|e| e["eventType"] == "Ended");
        assert_eq!(
            ended.unwrap()["transactionInfo"]["stoppedReason"],
            if ended_before {
                "EVDisconnected"
            } else {
                "PowerLoss"
            },
            "{ended_before}"
        );
        assert_eq!(
            trace(&h, from),
            lines(&[
                "BootNotification",
                "TransactionEvent Ended",
                // Made at start-up, and when the CSMS's time replaced the station's (25 years off).
                "SecurityEventNotification StartupOfTheDevice",
                "SecurityEventNotification SettingSystemTime",
                "StatusNotification 1/1 Available",
                "StatusNotification 2/1 Available",
                "StatusNotification 2/2 Available",
                "Authorize T2",
                "TransactionEvent Started",
            ]),
            "ended before the restart: {ended_before}"
        );
    }
}

#[test]
fn a_queued_message_in_retry_back_off_does_not_hold_back_status_and_authorize() {
    let mut h = Harness::new(config_with(&[
        ("SampledDataCtrlr.TxUpdatedInterval", "0"),
        (
            "OCPPCommCtrlr.MessageAttemptInterval[TransactionEvent]",
            "60",
        ),
    ]));
    h.plug(1, 1, true);
    h.token(1, "T1");
    h.advance_secs(10);
    let from = h.csms.received.len();
    let t0 = h.now;
    // The CSMS fails to process the Ended: retried after 60 s (E13.FR.03).
    h.csms.failing = vec!["TransactionEvent"];
    h.plug(1, 1, false);
    h.csms.failing.clear();
    h.advance_secs(5);
    h.token(1, "T2");
    h.advance_secs(1);
    h.plug(1, 1, true);
    let at = |h: &Harness, i: usize| (h.csms.received[from + i].at - t0).as_secs();
    // Status and Authorize at once; the new transaction's Started is durable and waits behind
    // the Ended (the durable queue stays FIFO, E13.FR.04).
    assert_eq!(
        trace(&h, from),
        lines(&[
            "StatusNotification 1/1 Available",
            "TransactionEvent Ended",
            "Authorize T2",
            "StatusNotification 1/1 Occupied",
        ])
    );
    assert_eq!((at(&h, 2), at(&h, 3)), (5, 6));
    h.advance_secs(60);
    assert_eq!(
        trace(&h, from)[4..6],
        lines(&["TransactionEvent Ended", "TransactionEvent Started"])
    );
    assert_eq!(at(&h, 4), 60, "E13.FR.03: MessageAttemptInterval x 1");
    let (first, retry) = (&h.csms.received[from + 1], &h.csms.received[from + 4]);
    assert_eq!(
        first.payload, retry.payload,
        "the retry is the same message"
    );
}
