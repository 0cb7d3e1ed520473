//! The core against the scripted fake CSMS on a virtual clock: registration (B01-B03), heartbeats
//! (G02), connector status (G01, B04), reconnect back-off (part 4, 5.3), pings, and the RPC rules
//! of part 4. Every request the station sends is validated against the official schema by the
//! test kit.

use ocpp_agent::ocpp::clock::Instant;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::station::{ConnectionState, Registration};
use ocpp_agent::ocpp::testkit::{CSMS_EPOCH_MS, Harness, config_with, default_config};
use serde_json::json;
use std::time::Duration;

fn error_code(frame: &Frame) -> &str {
    match frame {
        Frame::CallError { code, .. } => code,
        other => panic!("expected a CALLERROR, got {other:?}"),
    }
}

#[test]
fn boots_accepted_then_reports_every_connector_and_heartbeats() {
    let mut h = Harness::new(default_config());
    assert_eq!(
        h.connect_attempts,
        vec![Instant::ZERO],
        "B01.FR.01: connects at start-up"
    );
    let boot = &h.csms.received[0];
    assert_eq!(boot.action, "BootNotification");
    assert_eq!(boot.payload["reason"], "PowerUp");
    assert_eq!(
        boot.payload["chargingStation"],
        json!({"vendorName":"Example","model":"AC-2","serialNumber":"SN-0001","firmwareVersion":"1.0.0"})
    );
    assert_eq!(h.station.registration(), Registration::Accepted);
    // B01.FR.05: one StatusNotification per connector, with its current state.
    assert_eq!(
        h.csms.statuses(),
        vec![
            (1, 1, "Available".into()),
            (2, 1, "Available".into()),
            (2, 2, "Available".into())
        ]
    );
    // B01.FR.06: the CSMS's time replaced the (wrong) system clock.
    let utc = h.station.utc(h.now).unix_millis();
    assert_eq!(utc, CSMS_EPOCH_MS);
    let ts = h.csms.of("StatusNotification")[0].payload["timestamp"].clone();
    assert_eq!(ts, "2025-01-01T00:00:00.000Z");

    // G02: heartbeats at the accepted interval (300 s), and only then.
    h.advance_secs(299);
    assert!(h.csms.of("Heartbeat").is_empty());
    h.advance_secs(1);
    assert_eq!(h.csms.of("Heartbeat").len(), 1);
    h.advance_secs(900);
    let times: Vec<u64> = h
        .csms
        .of("Heartbeat")
        .iter()
        .map(|r| r.at.as_millis() / 1000)
        .collect();
    assert_eq!(times, vec![300, 600, 900, 1200]);
}

#[test]
fn heartbeat_timer_restarts_when_other_messages_go_out() {
    // No periodic TransactionEvents, so the heartbeat timer is visible.
    let mut h = Harness::new(config_with(&[("SampledDataCtrlr.TxUpdatedInterval", "0")]));
    h.advance_secs(200);
    h.plug(1, 1, true); // a StatusNotification at t=200 (G02.FR.05)
    h.advance_secs(299);
    assert!(h.csms.of("Heartbeat").is_empty());
    h.advance_secs(1);
    assert_eq!(h.csms.of("Heartbeat")[0].at.as_millis(), 500_000);
}

#[test]
fn pending_retries_at_the_interval_and_sends_nothing_else() {
    let mut h = Harness::new_with(default_config(), |csms| {
        csms.boot_status = "Pending";
        csms.interval = 60;
    });
    assert_eq!(h.station.registration(), Registration::Pending);
    h.plug(1, 1, true);
    h.advance_secs(59);
    // B01.FR.08 / B02.FR.02: nothing but BootNotification before Accepted.
    assert_eq!(h.csms.actions(), vec!["BootNotification"]);
    h.advance_secs(1);
    // B02.FR.08: again after the interval.
    assert_eq!(
        h.csms.actions(),
        vec!["BootNotification", "BootNotification"]
    );
    // B02.FR.01: the CSMS may talk to a pending station, which answers (not SecurityError).
    let answer = h.call("ClearCache", json!({}));
    assert!(matches!(answer, Frame::CallResult { .. }), "{answer:?}");
    h.csms.boot_status = "Accepted";
    h.advance_secs(60);
    assert_eq!(h.station.registration(), Registration::Accepted);
    // The plug-in that happened while pending is in the full report after acceptance.
    assert!(h.csms.statuses().contains(&(1, 1, "Occupied".into())));
}

#[test]
fn a_triggered_boot_notification_says_triggered_and_only_that_one() {
    let mut h = Harness::new_with(default_config(), |csms| {
        csms.boot_status = "Pending";
        csms.interval = 60;
    });
    let reasons = |h: &Harness| -> Vec<String> {
        h.csms
            .of("BootNotification")
            .iter()
            .map(|r| r.payload["reason"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(reasons(&h), ["PowerUp"]);
    // F06.FR.17 allows it while Pending; BootReasonEnumType: "Triggered".
    let answer = h.call(
        "TriggerMessage",
        json!({"requestedMessage": "BootNotification"}),
    );
    assert!(matches!(answer, Frame::CallResult { .. }), "{answer:?}");
    h.settle();
    assert_eq!(reasons(&h), ["PowerUp", "Triggered"]);
    // The periodic retry is not triggered: the start-up reason again.
    h.advance_secs(60);
    assert_eq!(reasons(&h), ["PowerUp", "Triggered", "PowerUp"]);
}

#[test]
fn rejected_waits_the_interval_and_refuses_csms_calls() {
    let mut h = Harness::new_with(default_config(), |csms| {
        csms.boot_status = "Rejected";
        csms.interval = 120;
    });
    assert_eq!(h.station.registration(), Registration::Rejected);
    // B03.FR.08: every CSMS request gets SecurityError.
    let answer = h.call("GetVariables", json!({"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}));
    assert_eq!(error_code(&answer), "SecurityError");
    h.plug(1, 1, true);
    h.advance_secs(119);
    // B03.FR.02: nothing at all until the interval expired.
    assert_eq!(h.csms.actions(), vec!["BootNotification"]);
    h.csms.boot_status = "Accepted";
    h.advance_secs(1);
    assert_eq!(h.csms.actions()[1], "BootNotification");
    assert_eq!(h.station.registration(), Registration::Accepted);
}

#[test]
fn boot_without_answer_times_out_and_retries() {
    let mut h = Harness::new_with(default_config(), |csms| csms.answering = false);
    assert_eq!(h.csms.actions(), vec!["BootNotification"]);
    // MessageTimeout (30 s), then our own retry interval (30 s, B02.FR.07).
    h.advance_secs(59);
    assert_eq!(h.csms.actions().len(), 1);
    h.csms.answering = true;
    h.advance_secs(1);
    assert_eq!(h.csms.of("BootNotification").len(), 2);
    assert_eq!(h.station.registration(), Registration::Accepted);
    let ids: Vec<&str> = h.csms.received.iter().map(|r| r.id.as_str()).collect();
    assert_ne!(
        ids[0], ids[1],
        "part 4 4.1.4: a retry gets a new message id"
    );
}

#[test]
fn reconnect_back_off_doubles_with_jitter_up_to_repeat_times() {
    let config = config_with(&[
        ("OCPPCommCtrlr.RetryBackOffWaitMinimum", "10"),
        ("OCPPCommCtrlr.RetryBackOffRandomRange", "5"),
        ("OCPPCommCtrlr.RetryBackOffRepeatTimes", "3"),
    ]);
    let mut h = Harness::new(config);
    assert!(h.connected);
    h.csms.online = false;
    h.drop_connection();
    h.advance_secs(3600);
    let attempts: Vec<u64> = h.connect_attempts.iter().map(|t| t.as_millis()).collect();
    assert!(attempts.len() > 8, "{attempts:?}");
    // attempts[0] is the start-up connect; the outage began at t=0.
    let mut previous = 0;
    for (k, at) in attempts[1..].iter().enumerate() {
        let gap = at - previous;
        let base = 10_000 * (1u64 << k.min(3));
        assert!(
            (base..=base + 5_000).contains(&gap),
            "attempt {k}: waited {gap} ms, expected {base}..{} ms",
            base + 5_000
        );
        previous = *at;
    }
    // The random part is really random.
    let gaps: Vec<u64> = attempts.windows(2).skip(4).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().any(|g| *g != gaps[0]), "{gaps:?}");

    // A good connection resets the back-off.
    h.csms.online = true;
    h.advance_secs(200);
    assert!(h.connected);
    assert_eq!(h.station.connection(), ConnectionState::Connected);
    h.csms.online = false;
    let t0 = h.now.as_millis();
    h.drop_connection();
    let before = h.connect_attempts.len();
    h.advance_secs(16);
    let next = h.connect_attempts[before].as_millis() - t0;
    assert!((10_000..=15_000).contains(&next), "{next}");
}

#[test]
fn no_second_boot_after_reconnect_only_changed_connectors_reported() {
    let mut h = Harness::new(config_with(&[("OCPPCommCtrlr.OfflineThreshold", "600")]));
    let reports_before = h.csms.statuses().len();
    h.drop_connection();
    h.plug(2, 2, true);
    h.advance_secs(60);
    assert!(h.connected);
    assert_eq!(
        h.csms.of("BootNotification").len(),
        1,
        "B01: boot only at start-up"
    );
    // B04.FR.02: a short outage reports just what changed.
    assert_eq!(
        h.csms.statuses()[reports_before..],
        [(2, 2, "Occupied".to_string())]
    );
}

#[test]
fn a_long_outage_reports_every_connector() {
    let mut h = Harness::new(config_with(&[("OCPPCommCtrlr.OfflineThreshold", "30")]));
    let before = h.csms.statuses().len();
    h.csms.online = false;
    h.drop_connection();
    h.advance_secs(120);
    h.csms.online = true;
    h.advance_secs(400);
    assert!(h.connected);
    // B04.FR.01: everything, as the outage exceeded OfflineThreshold.
    assert_eq!(h.csms.statuses().len() - before, 3);
}

#[test]
fn every_plug_change_while_connected_is_reported_in_order() {
    let mut h = Harness::new(default_config());
    let before = h.csms.statuses().len();
    h.plug(1, 1, true);
    h.plug(1, 1, false);
    h.plug(1, 1, true);
    h.plug(1, 1, true); // no change, no message
    assert_eq!(
        h.csms.statuses()[before..],
        [
            (1, 1, "Occupied".to_string()),
            (1, 1, "Available".to_string()),
            (1, 1, "Occupied".to_string())
        ]
    );
}

#[test]
fn one_call_in_flight_at_a_time() {
    let mut h = Harness::new_with(default_config(), |csms| csms.answering = false);
    h.csms.answering = true;
    // Boot is in flight and unanswered; plug events must wait for it.
    h.plug(1, 1, true);
    assert_eq!(h.csms.actions(), vec!["BootNotification"]);
    let boot_id = h.csms.received[0].id.clone();
    let answer = json!({"currentTime":"2025-01-01T00:00:00Z","interval":300,"status":"Accepted"});
    h.send_raw(&format!(r#"[3,"{boot_id}",{answer}]"#));
    // Then, one after the other, in the order they were generated (see `pump`): the durable
    // queue of the start-up (StartupOfTheDevice, and SettingSystemTime as the station's clock
    // was 25 years off, made while the boot answer was applied), then the three statuses of
    // B01.FR.05 made at acceptance, the plug's Occupied among them, then the transaction the
    // plug-in starts once accepted. (This asserted the statuses first, before the queues were
    // merged by generation; the spec orders neither way.)
    assert_eq!(
        h.csms.actions(),
        vec![
            "BootNotification",
            "SecurityEventNotification",
            "SecurityEventNotification",
            "StatusNotification",
            "StatusNotification",
            "StatusNotification",
            "TransactionEvent",
        ]
    );
}

#[test]
fn pings_and_a_dead_link() {
    let mut h = Harness::new(config_with(&[(
        "OCPPCommCtrlr.WebSocketPingInterval",
        "20",
    )]));
    h.advance_secs(100);
    assert_eq!(h.pings, 5);
    assert!(h.connected);
    h.csms.answering_pings = false;
    h.advance_secs(20); // ping sent, no pong
    assert!(h.connected);
    h.advance_secs(30); // MessageTimeout (30 s) > ping interval: dead after 30 s
    assert!(!h.connected, "a missing pong drops the link");
    assert_eq!(h.disconnects, vec!["no pong in time".to_string()]);
    h.csms.answering_pings = true;
    h.advance_secs(30);
    assert!(h.connected, "and reconnects");
}

#[test]
fn ping_interval_zero_disables_pings() {
    let mut h = Harness::new(config_with(&[("OCPPCommCtrlr.WebSocketPingInterval", "0")]));
    h.advance_secs(1000);
    assert_eq!(h.pings, 0);
}

#[test]
fn malformed_frames_get_the_right_callerror() {
    let mut h = Harness::new(default_config());
    let cases: &[(&str, &str, &str)] = &[
        ("not json at all", "-1", "RpcFrameworkError"),
        ("{\"a\":1}", "-1", "RpcFrameworkError"),
        ("[]", "-1", "RpcFrameworkError"),
        ("[2]", "-1", "RpcFrameworkError"),
        ("[2, 17, \"Reset\", {}]", "-1", "RpcFrameworkError"),
        ("[2, \"a\", \"Reset\"]", "a", "RpcFrameworkError"),
        ("[2, \"b\", 5, {}]", "b", "RpcFrameworkError"),
        ("[2, \"c\", \"Reset\", [1,2]]", "c", "FormatViolation"),
        ("[7, \"d\", \"Reset\", {}]", "d", "MessageTypeNotSupported"),
        ("[2, \"e\", \"FlyToTheMoon\", {}]", "e", "NotImplemented"),
        (
            "[2, \"f\", \"Reset\", {}]",
            "f",
            "OccurrenceConstraintViolation",
        ),
        (
            "[2, \"g\", \"Reset\", {\"type\": 5}]",
            "g",
            "TypeConstraintViolation",
        ),
        (
            "[2, \"h\", \"Reset\", {\"type\": \"Sometime\"}]",
            "h",
            "PropertyConstraintViolation",
        ),
        (
            "[2, \"i\", \"Reset\", {\"type\": \"Immediate\", \"colour\": 1}]",
            "i",
            "FormatViolation",
        ),
        (
            "[2, \"j\", \"SetMonitoringLevel\", {\"severity\": 3}]",
            "j",
            "NotSupported",
        ),
    ];
    for (text, id, code) in cases {
        let answer = h
            .send_raw(text)
            .unwrap_or_else(|| panic!("no answer to {text}"));
        match &answer {
            Frame::CallError {
                id: got,
                code: got_code,
                ..
            } => {
                assert_eq!((got.as_str(), got_code.as_str()), (*id, *code), "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Every answer is itself a well-formed CALLERROR frame.
    for raw in &h.raw_answers {
        let v: serde_json::Value = serde_json::from_str(raw).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 5, "{raw}");
        assert!(v[4].is_object());
    }
    // Responses that match nothing, or are broken, are not answered and change nothing.
    for text in [
        r#"[3,"nobody",{}]"#,
        r#"[4,"nobody","GenericError","",{}]"#,
        r#"[3,"x"]"#,
        r#"[4]"#,
    ] {
        assert!(h.send_raw(text).is_none(), "{text}");
    }
    assert!(h.connected);
    assert_eq!(h.station.registration(), Registration::Accepted);
}

#[test]
fn an_invalid_boot_answer_is_not_taken_as_accepted() {
    let mut h = Harness::new_with(default_config(), |csms| csms.answering = false);
    let id = h.csms.received[0].id.clone();
    h.send_raw(&format!(r#"[3,"{id}",{{"status":"Accepted"}}]"#));
    assert_eq!(h.station.registration(), Registration::None);
    h.csms.answering = true;
    h.advance(Duration::from_secs(30));
    assert_eq!(h.station.registration(), Registration::Accepted);
}

#[test]
fn an_integral_float_interval_is_an_integer() {
    // JSON Schema (draft-06) counts 300.0 as an integer; a CSMS may send it.
    let mut h = Harness::new_with(default_config(), |csms| csms.answering = false);
    let id = h.csms.received[0].id.clone();
    h.send_raw(&format!(
        r#"[3,"{id}",{{"status":"Accepted","interval":120.0,"currentTime":"2025-01-01T00:00:00Z"}}]"#
    ));
    assert_eq!(h.station.registration(), Registration::Accepted);
    assert_eq!(h.station.snapshot(h.now).heartbeat_interval_s, 120);
}

#[test]
fn a_callerror_to_boot_is_retried() {
    let mut h = Harness::new_with(default_config(), |csms| csms.answering = false);
    let id = h.csms.received[0].id.clone();
    h.send_raw(&format!(r#"[4,"{id}","InternalError","oops",{{}}]"#));
    assert_eq!(h.station.registration(), Registration::None);
    h.csms.answering = true;
    h.advance_secs(30);
    assert_eq!(h.station.registration(), Registration::Accepted);
}

#[test]
fn status_snapshot_for_ctl() {
    let mut h = Harness::new(default_config());
    h.plug(2, 2, true);
    let s = serde_json::to_value(h.station.snapshot(h.now)).unwrap();
    assert_eq!(s["connection"], "connected");
    assert_eq!(s["registration"], "accepted");
    assert_eq!(
        s["evses"][1]["connectors"][1],
        json!({"id":2,"status":"Occupied","plugged":true})
    );
    assert_eq!(s["time_source"], "csms");
}
