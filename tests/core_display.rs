//! Display messages (O01-O06) in the core, on the virtual clock against the scripted CSMS:
//! the part 6 TC_O_*_CS cases, what each screen shows (`Station::display`) by priority, time
//! window, state and transaction, and durability across a restart.

use ocpp_agent::ocpp::clock::UtcTime;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::snapshot::ScreenSnapshot;
use ocpp_agent::ocpp::testkit::{Harness, config_with, default_config};
use serde_json::{Value, json};

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn rfc3339(h: &Harness, plus_s: i64) -> String {
    UtcTime::from_unix_millis(h.station.utc(h.now).unix_millis() + plus_s * 1000).to_rfc3339()
}

/// A MessageInfo: id, priority, content (UTF8), plus `extra` fields.
fn info(id: i64, priority: &str, content: &str, extra: Value) -> Value {
    let mut m = json!({
        "id": id,
        "priority": priority,
        "message": {"format": "UTF8", "content": content},
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn set(h: &mut Harness, message: Value) -> String {
    let r = result(h.call("SetDisplayMessage", json!({"message": message})));
    r["status"].as_str().unwrap().to_owned()
}

fn set_plain(h: &mut Harness, id: i64, priority: &str, content: &str) -> String {
    set(h, info(id, priority, content, json!({})))
}

/// GetDisplayMessages, then the NotifyDisplayMessages it caused: (status, notifies).
fn get(h: &mut Harness, request: Value) -> (String, Vec<Value>) {
    let before = h.csms.of("NotifyDisplayMessages").len();
    let r = result(h.call("GetDisplayMessages", request));
    h.advance_secs(1);
    let notifies = h.csms.of("NotifyDisplayMessages")[before..]
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    (r["status"].as_str().unwrap().to_owned(), notifies)
}

fn get_ids(h: &mut Harness, ids: &[i64]) -> (String, Vec<Value>) {
    get(h, json!({"requestId": 5, "id": ids}))
}

/// The ids of all messages in notifies, in order.
fn notified_ids(notifies: &[Value]) -> Vec<i64> {
    notifies
        .iter()
        .flat_map(|n| n["messageInfo"].as_array().unwrap().iter())
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

fn screen(h: &Harness, evse: u32) -> ScreenSnapshot {
    h.station
        .display(h.now)
        .screens
        .into_iter()
        .find(|s| s.evse == evse)
        .expect("a screen for that EVSE")
}

/// The contents a screen shows now, in order.
fn shown(h: &Harness, evse: u32) -> Vec<String> {
    screen(h, evse)
        .items
        .into_iter()
        .map(|i| i.content)
        .collect()
}

/// DisplayMessageCtrlr.DisplayMessages as GetVariables reports it.
fn count(h: &mut Harness) -> String {
    h.variable_values(&["DisplayMessageCtrlr.DisplayMessages"])
        .remove(0)
}

/// A transaction on EVSE 1: plugged in and authorized; its id.
fn start_transaction(h: &mut Harness) -> String {
    h.plug(1, 1, true);
    h.token(1, "TOKEN1");
    h.advance_secs(1);
    h.events()
        .iter()
        .rev()
        .find_map(|e| e["transactionInfo"]["transactionId"].as_str())
        .unwrap()
        .to_owned()
}

/// Unplugged: the transaction of `start_transaction` ends (TxStopPoint EVConnected).
fn end_transaction(h: &mut Harness) {
    h.plug(1, 1, false);
    h.advance_secs(1);
    assert_eq!(h.events().last().unwrap()["eventType"], "Ended");
}

#[test]
fn tc_o_01_a_message_is_set_reported_and_shown() {
    let mut h = Harness::new(default_config());
    assert_eq!(set_plain(&mut h, 7, "NormalCycle", "Welcome"), "Accepted");
    let (status, notifies) = get(&mut h, json!({"requestId": 42, "id": [7]}));
    assert_eq!(status, "Accepted");
    assert_eq!(notifies.len(), 1);
    // O04.FR.06: the request's id; the message as set.
    assert_eq!(notifies[0]["requestId"], 42);
    assert!(notifies[0].get("tbc").is_none());
    let m = &notifies[0]["messageInfo"][0];
    assert_eq!(m["id"], 7);
    assert_eq!(m["priority"], "NormalCycle");
    assert_eq!(
        m["message"],
        json!({"format": "UTF8", "content": "Welcome"})
    );
    // O01.FR.12: on the main display, and so on every EVSE's.
    for evse in [0, 1, 2] {
        assert_eq!(shown(&h, evse), ["Welcome"], "screen {evse}");
    }
    let item = &screen(&h, 1).items[0];
    assert_eq!(item.id, Some(7));
    assert_eq!(item.format, "UTF8");
    assert_eq!(count(&mut h), "1");
}

#[test]
fn tc_o_02_get_all_reports_every_message_split_with_tbc() {
    let mut h = Harness::new(default_config());
    for id in 1..=23 {
        assert_eq!(
            set_plain(&mut h, id, "NormalCycle", &format!("m{id}")),
            "Accepted"
        );
    }
    let (status, notifies) = get(&mut h, json!({"requestId": 9}));
    assert_eq!(status, "Accepted");
    // O03.FR.03-05: ten a message, tbc on all but the last, the request's id on each.
    assert_eq!(notifies.len(), 3);
    assert_eq!(notifies[0]["tbc"], true);
    assert_eq!(notifies[1]["tbc"], true);
    assert!(notifies[2].get("tbc").is_none());
    assert!(notifies.iter().all(|n| n["requestId"] == 9));
    assert_eq!(notified_ids(&notifies), (1..=23).collect::<Vec<_>>());
}

#[test]
fn tc_o_03_and_33_get_with_nothing_set_is_unknown() {
    let mut h = Harness::new(default_config());
    // O03.FR.06
    let (status, notifies) = get(&mut h, json!({"requestId": 1}));
    assert_eq!((status.as_str(), notifies.len()), ("Unknown", 0));
    // TC_O_33, O04.FR.07
    let (status, notifies) = get_ids(&mut h, &[3]);
    assert_eq!((status.as_str(), notifies.len()), ("Unknown", 0));
}

#[test]
fn tc_o_04_and_05_clear_a_message_or_an_unknown_one() {
    let mut h = Harness::new(default_config());
    set_plain(&mut h, 4, "InFront", "Soon gone");
    let r = result(h.call("ClearDisplayMessage", json!({"id": 4})));
    assert_eq!(r["status"], "Accepted"); // O05.FR.01
    assert_eq!(get_ids(&mut h, &[4]).0, "Unknown");
    assert!(shown(&h, 1).is_empty());
    assert_eq!(count(&mut h), "0");
    // TC_O_05, O05.FR.02
    let r = result(h.call("ClearDisplayMessage", json!({"id": 4})));
    assert_eq!(r["status"], "Unknown");
}

#[test]
fn tc_o_06_a_transactions_message_shows_on_its_evse_and_goes_with_it() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    let m = info(61, "NormalCycle", "Enjoy", json!({"transactionId": tx}));
    assert_eq!(set(&mut h, m), "Accepted");
    assert_eq!(shown(&h, 1), ["Enjoy"]);
    // Not on the main display, nor on the other EVSE's.
    assert!(shown(&h, 0).is_empty());
    assert!(shown(&h, 2).is_empty());
    assert_eq!(
        screen(&h, 1).items[0].transaction_id.as_deref(),
        Some(tx.as_str())
    );
    end_transaction(&mut h);
    // O02.FR.02
    assert!(shown(&h, 1).is_empty());
    assert_eq!(count(&mut h), "0");
    assert_eq!(get_ids(&mut h, &[61]).0, "Unknown");
}

#[test]
fn tc_o_07_08_09_get_specific_messages_by_id_priority_and_state() {
    let mut h = Harness::new(default_config());
    set_plain(&mut h, 1, "NormalCycle", "a");
    set_plain(&mut h, 2, "InFront", "b");
    set(
        &mut h,
        info(3, "NormalCycle", "c", json!({"state": "Idle"})),
    );
    set(&mut h, info(4, "InFront", "d", json!({"state": "Faulted"})));
    // TC_O_07
    let (status, notifies) = get_ids(&mut h, &[2, 3]);
    assert_eq!(status, "Accepted");
    assert_eq!(notified_ids(&notifies), [2, 3]);
    assert_eq!(notifies[0]["requestId"], 5);
    // TC_O_08
    let (status, notifies) = get(&mut h, json!({"requestId": 8, "priority": "InFront"}));
    assert_eq!(status, "Accepted");
    assert_eq!(notified_ids(&notifies), [2, 4]);
    // TC_O_09
    let (status, notifies) = get(&mut h, json!({"requestId": 9, "state": "Faulted"}));
    assert_eq!(status, "Accepted");
    assert_eq!(notified_ids(&notifies), [4]);
    assert_eq!(notifies[0]["messageInfo"][0]["state"], "Faulted");
    // Every field given must match.
    let (_, notifies) = get(
        &mut h,
        json!({"requestId": 10, "id": [1, 2, 3], "priority": "NormalCycle"}),
    );
    assert_eq!(notified_ids(&notifies), [1, 3]);
}

#[test]
fn tc_o_10_a_message_for_an_unknown_transaction_is_refused() {
    let mut h = Harness::new(default_config());
    let m = info(
        1,
        "NormalCycle",
        "x",
        json!({"transactionId": "no-such-tx"}),
    );
    let r = result(h.call("SetDisplayMessage", json!({"message": m})));
    // O02.FR.01
    assert_eq!(r["status"], "UnknownTransaction");
    assert_eq!(r["statusInfo"]["reasonCode"], "UnknownTxId");
    assert_eq!(count(&mut h), "0");
}

#[test]
fn tc_o_11_34_35_a_query_matching_nothing_is_unknown() {
    let mut h = Harness::new(default_config());
    set(&mut h, info(1, "InFront", "x", json!({"state": "Idle"})));
    // TC_O_11: another id.
    assert_eq!(get_ids(&mut h, &[2]).0, "Unknown");
    // TC_O_34: the id, another state (O04.FR.02).
    let (status, notifies) = get(
        &mut h,
        json!({"requestId": 3, "id": [1], "state": "Charging"}),
    );
    assert_eq!((status.as_str(), notifies.len()), ("Unknown", 0));
    // TC_O_35: the id, another priority.
    let (status, _) = get(
        &mut h,
        json!({"requestId": 4, "id": [1], "priority": "NormalCycle"}),
    );
    assert_eq!(status, "Unknown");
}

#[test]
fn tc_o_12_a_message_with_a_known_id_is_replaced_whole() {
    let mut h = Harness::new(default_config());
    set(
        &mut h,
        info(1, "NormalCycle", "old", json!({"state": "Charging"})),
    );
    // O06.FR.01: content and every parameter (here: no state any more).
    assert_eq!(set_plain(&mut h, 1, "InFront", "new"), "Accepted");
    assert_eq!(shown(&h, 1), ["new"]);
    assert_eq!(count(&mut h), "1");
    let (_, notifies) = get_ids(&mut h, &[1]);
    let m = &notifies[0]["messageInfo"][0];
    assert_eq!(m["priority"], "InFront");
    assert!(m.get("state").is_none());
}

#[test]
fn tc_o_13_a_message_shows_from_its_start_time() {
    let mut h = Harness::new(default_config());
    let start = rfc3339(&h, 60);
    let m = info(1, "NormalCycle", "later", json!({"startDateTime": start}));
    assert_eq!(set(&mut h, m), "Accepted");
    // O01.FR.06
    assert!(shown(&h, 0).is_empty());
    let (status, notifies) = get_ids(&mut h, &[1]);
    assert_eq!(status, "Accepted");
    assert_eq!(notifies[0]["messageInfo"][0]["startDateTime"], json!(start));
    h.advance_secs(58);
    assert!(shown(&h, 0).is_empty());
    h.advance_secs(2);
    assert_eq!(shown(&h, 0), ["later"]);
}

#[test]
fn tc_o_14_a_message_is_removed_after_its_end_time() {
    let mut h = Harness::new(default_config());
    let end = rfc3339(&h, 60);
    let m = info(1, "NormalCycle", "briefly", json!({"endDateTime": end}));
    assert_eq!(set(&mut h, m), "Accepted");
    assert_eq!(shown(&h, 0), ["briefly"]);
    let (_, notifies) = get_ids(&mut h, &[1]);
    assert_eq!(notifies[0]["messageInfo"][0]["endDateTime"], json!(end));
    assert_eq!(screen(&h, 0).items[0].until.as_deref(), Some(end.as_str()));
    h.advance_secs(60);
    // O01.FR.07: removed by the station's own timer, not only hidden.
    assert!(shown(&h, 0).is_empty());
    assert_eq!(count(&mut h), "0");
    assert_eq!(get_ids(&mut h, &[1]).0, "Unknown");
}

#[test]
fn tc_o_15_a_messages_language_reaches_the_screen() {
    let mut h = Harness::new(default_config());
    let m = json!({"id": 1, "priority": "NormalCycle",
        "message": {"format": "UTF8", "language": "nl-NL", "content": "Welkom"}});
    assert_eq!(set(&mut h, m), "Accepted");
    let item = &screen(&h, 1).items[0];
    assert_eq!(item.language.as_deref(), Some("nl-NL"));
    let (_, notifies) = get_ids(&mut h, &[1]);
    assert_eq!(
        notifies[0]["messageInfo"][0]["message"]["language"],
        "nl-NL"
    );
}

#[test]
fn tc_o_15_the_drivers_language_comes_first_on_their_screen() {
    // C01.FR.08/09, O01.FR.08: language1 of the authorization, then language2.
    let mut h = Harness::new(default_config());
    h.advance_secs(1);
    for (id, language, content) in [
        (1, "en", "Welcome"),
        (2, "de-DE", "Willkommen"),
        (3, "fr", "Bienvenue"),
    ] {
        let m = json!({"id": id, "priority": "InFront",
            "message": {"format": "UTF8", "language": language, "content": content}});
        assert_eq!(set(&mut h, m), "Accepted");
    }
    // No driver: the order they were set in, newest first.
    assert_eq!(shown(&h, 1), vec!["Bienvenue", "Willkommen", "Welcome"]);
    h.csms.languages = vec!["de", "en"];
    h.token(1, "TOKEN1");
    assert_eq!(screen(&h, 1).languages, vec!["de", "en"]);
    assert_eq!(shown(&h, 1), vec!["Willkommen", "Welcome", "Bienvenue"]);
    // Not on the other EVSE's screen, and not after the session.
    assert_eq!(shown(&h, 2), vec!["Bienvenue", "Willkommen", "Welcome"]);
    h.plug(1, 1, true);
    h.plug(1, 1, false);
    assert!(screen(&h, 1).languages.is_empty());
}

#[test]
fn tc_o_17_a_priority_not_supported_is_refused() {
    let mut h = Harness::new(config_with(&[(
        "DisplayMessageCtrlr.SupportedPriorities",
        "InFront,NormalCycle",
    )]));
    let r = result(h.call(
        "SetDisplayMessage",
        json!({"message": info(1, "AlwaysFront", "x", json!({}))}),
    ));
    // O01.FR.01
    assert_eq!(r["status"], "NotSupportedPriority");
    assert_eq!(count(&mut h), "0");
    assert_eq!(set_plain(&mut h, 1, "InFront", "x"), "Accepted");
}

#[test]
fn every_state_is_supported() {
    // No configuration makes a state unsupported, so TC_O_18 (NotSupportedState) does not
    // apply: every MessageStateEnumType value is taken.
    let mut h = Harness::new(default_config());
    for (id, state) in ["Charging", "Faulted", "Idle", "Unavailable"]
        .into_iter()
        .enumerate()
    {
        let m = info(id as i64, "NormalCycle", state, json!({"state": state}));
        assert_eq!(set(&mut h, m), "Accepted");
    }
}

#[test]
fn tc_o_19_a_format_not_supported_is_refused() {
    let mut h = Harness::new(default_config());
    let m = json!({"id": 1, "priority": "NormalCycle",
        "message": {"format": "HTML", "content": "<b>hi</b>"}});
    let r = result(h.call("SetDisplayMessage", json!({"message": m.clone()})));
    // O01.FR.03: the default SupportedFormats are ASCII and UTF8.
    assert_eq!(r["status"], "NotSupportedMessageFormat");
    assert_eq!(r["statusInfo"]["reasonCode"], "UnsupportedParam");
    // An HMI that renders HTML is configured so.
    let mut h = Harness::new(config_with(&[(
        "DisplayMessageCtrlr.SupportedFormats",
        "ASCII,HTML,UTF8",
    )]));
    assert_eq!(set(&mut h, m), "Accepted");
    assert_eq!(screen(&h, 0).items[0].format, "HTML");
}

#[test]
fn tc_o_20_messages_survive_a_restart() {
    let mut h = Harness::new(default_config());
    let end = rfc3339(&h, 3600);
    set(
        &mut h,
        info(1, "InFront", "kept", json!({"endDateTime": end})),
    );
    set(
        &mut h,
        info(
            2,
            "NormalCycle",
            "also",
            json!({"display": {"name": "Display", "evse": {"id": 2}}}),
        ),
    );
    // O01.FR.10: the answer went out after the journal write; a power cut right after it
    // keeps them.
    h.power_cycle(false);
    let (status, notifies) = get(&mut h, json!({"requestId": 20}));
    assert_eq!(status, "Accepted");
    assert_eq!(notified_ids(&notifies), [1, 2]);
    let m = &notifies[0]["messageInfo"][0];
    assert_eq!(m["priority"], "InFront");
    assert_eq!(m["message"]["content"], "kept");
    assert_eq!(m["endDateTime"], json!(end));
    assert_eq!(
        notifies[0]["messageInfo"][1]["display"],
        json!({"name": "Display", "evse": {"id": 2}})
    );
    assert_eq!(shown(&h, 2), ["kept", "also"]);
    // The end time still holds after the restart.
    h.advance_secs(3600);
    assert_eq!(shown(&h, 2), ["also"]);
}

#[test]
fn a_transactions_messages_do_not_outlive_it_across_a_restart() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    set(
        &mut h,
        info(1, "NormalCycle", "tx", json!({"transactionId": tx})),
    );
    set_plain(&mut h, 2, "NormalCycle", "station");
    // A power cut ends the transaction (at the next start): its message goes, O02.FR.02.
    h.power_cycle(false);
    h.advance_secs(5);
    assert_eq!(shown(&h, 1), ["station"]);
    assert_eq!(count(&mut h), "1");
}

#[test]
fn tc_o_22_in_front_messages_cycle_before_the_normal_cycle() {
    let mut h = Harness::new(default_config());
    set_plain(&mut h, 1, "NormalCycle", "normal");
    assert_eq!(set_plain(&mut h, 2, "InFront", "front 1"), "Accepted");
    assert_eq!(set_plain(&mut h, 3, "InFront", "front 2"), "Accepted");
    assert_eq!(get_ids(&mut h, &[2]).0, "Accepted");
    assert_eq!(get_ids(&mut h, &[3]).0, "Accepted");
    // O01.FR.13/14: both InFront, the newest first, before the normal cycle.
    assert_eq!(shown(&h, 0), ["front 2", "front 1", "normal"]);
}

#[test]
fn tc_o_24_a_second_always_front_message_replaces_the_first() {
    let mut h = Harness::new(default_config());
    assert_eq!(set_plain(&mut h, 1, "AlwaysFront", "first"), "Accepted");
    set_plain(&mut h, 5, "InFront", "in front");
    assert_eq!(set_plain(&mut h, 2, "AlwaysFront", "second"), "Accepted");
    // O01.FR.16
    assert_eq!(get_ids(&mut h, &[1]).0, "Unknown");
    let (status, notifies) = get_ids(&mut h, &[2]);
    assert_eq!(status, "Accepted");
    assert_eq!(notifies[0]["requestId"], 5);
    // O01.FR.15: AlwaysFront first.
    assert_eq!(shown(&h, 0), ["second", "in front"]);
    // An EVSE's display has an AlwaysFront message of its own; it shows before the main
    // display's on that EVSE's screen.
    let m = info(
        3,
        "AlwaysFront",
        "evse 1",
        json!({"display": {"name": "Display", "evse": {"id": 1}}}),
    );
    assert_eq!(set(&mut h, m), "Accepted");
    assert_eq!(get_ids(&mut h, &[2]).0, "Accepted");
    assert_eq!(shown(&h, 1), ["evse 1", "second", "in front"]);
    assert_eq!(shown(&h, 2), ["second", "in front"]);
}

#[test]
fn tc_o_27_a_transactions_message_with_a_start_time() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    let m = info(
        1,
        "NormalCycle",
        "soon",
        json!({"transactionId": tx, "startDateTime": rfc3339(&h, 60)}),
    );
    assert_eq!(set(&mut h, m), "Accepted");
    assert!(shown(&h, 1).is_empty());
    h.advance_secs(60);
    assert_eq!(shown(&h, 1), ["soon"]);
    end_transaction(&mut h);
    assert!(shown(&h, 1).is_empty());
    assert_eq!(get_ids(&mut h, &[1]).0, "Unknown");
}

#[test]
fn tc_o_28_a_transactions_message_with_an_end_time() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    let m = info(
        1,
        "NormalCycle",
        "brief",
        json!({"transactionId": tx, "endDateTime": rfc3339(&h, 60)}),
    );
    assert_eq!(set(&mut h, m), "Accepted");
    assert_eq!(shown(&h, 1), ["brief"]);
    h.advance_secs(60);
    assert!(shown(&h, 1).is_empty());
    assert_eq!(get_ids(&mut h, &[1]).0, "Unknown");
}

#[test]
fn tc_o_30_and_32_a_transactions_in_front_and_always_front_messages() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    let with_tx = |id, priority, content| info(id, priority, content, json!({"transactionId": tx}));
    // TC_O_30
    assert_eq!(set(&mut h, with_tx(1, "InFront", "a")), "Accepted");
    assert_eq!(set(&mut h, with_tx(2, "InFront", "b")), "Accepted");
    assert_eq!(get_ids(&mut h, &[1]).0, "Accepted");
    assert_eq!(get_ids(&mut h, &[2]).0, "Accepted");
    assert_eq!(shown(&h, 1), ["b", "a"]);
    // TC_O_32: O02.FR.18.
    assert_eq!(set(&mut h, with_tx(3, "AlwaysFront", "c")), "Accepted");
    assert_eq!(set(&mut h, with_tx(4, "AlwaysFront", "d")), "Accepted");
    assert_eq!(get_ids(&mut h, &[3]).0, "Unknown");
    assert_eq!(get_ids(&mut h, &[4]).0, "Accepted");
    assert_eq!(shown(&h, 1), ["d", "b", "a"]);
    end_transaction(&mut h);
    assert!(shown(&h, 1).is_empty());
    assert_eq!(get(&mut h, json!({"requestId": 1})).0, "Unknown");
}

#[test]
fn tc_o_36_a_charging_message_shows_during_a_transaction_only() {
    let mut h = Harness::new(default_config());
    let m = info(1, "NormalCycle", "charging", json!({"state": "Charging"}));
    assert_eq!(set(&mut h, m), "Accepted");
    assert!(shown(&h, 1).is_empty());
    start_transaction(&mut h);
    assert_eq!(screen(&h, 1).state.as_str(), "Charging");
    assert_eq!(shown(&h, 1), ["charging"]);
    // The station charges on one of its EVSEs; the other EVSE is idle.
    assert_eq!(shown(&h, 0), ["charging"]);
    assert!(shown(&h, 2).is_empty());
    end_transaction(&mut h);
    assert!(shown(&h, 1).is_empty());
    let (status, notifies) = get_ids(&mut h, &[1]);
    assert_eq!(status, "Accepted");
    assert_eq!(notifies[0]["messageInfo"][0]["state"], "Charging");
}

#[test]
fn tc_o_37_an_idle_message_hides_during_a_transaction() {
    let mut h = Harness::new(default_config());
    let m = info(1, "NormalCycle", "idle", json!({"state": "Idle"}));
    assert_eq!(set(&mut h, m), "Accepted");
    assert_eq!(shown(&h, 1), ["idle"]);
    start_transaction(&mut h);
    assert!(shown(&h, 1).is_empty());
    assert_eq!(shown(&h, 2), ["idle"]);
    end_transaction(&mut h);
    assert_eq!(shown(&h, 1), ["idle"]);
    assert_eq!(get_ids(&mut h, &[1]).0, "Accepted");
}

#[test]
fn tc_o_38_an_unavailable_message_shows_while_inoperative() {
    let mut h = Harness::new(default_config());
    let m = info(1, "NormalCycle", "closed", json!({"state": "Unavailable"}));
    assert_eq!(set(&mut h, m), "Accepted");
    assert!(shown(&h, 0).is_empty());
    let r = result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative"}),
    ));
    assert_eq!(r["status"], "Accepted");
    for evse in [0, 1, 2] {
        assert_eq!(shown(&h, evse), ["closed"], "screen {evse}");
    }
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Operative"}),
    ));
    assert!(shown(&h, 0).is_empty());
    // One EVSE inoperative: its screen only.
    result(h.call(
        "ChangeAvailability",
        json!({"operationalStatus": "Inoperative", "evse": {"id": 2}}),
    ));
    assert_eq!(shown(&h, 2), ["closed"]);
    assert!(shown(&h, 1).is_empty());
    assert!(shown(&h, 0).is_empty());
}

#[test]
fn tc_o_39_a_faulted_message_shows_while_a_connector_is_faulted() {
    let mut h = Harness::new(default_config());
    let m = info(1, "InFront", "out of order", json!({"state": "Faulted"}));
    assert_eq!(set(&mut h, m), "Accepted");
    assert!(shown(&h, 1).is_empty());
    h.fault(1, 1, Some("plug line broken"));
    assert_eq!(screen(&h, 1).state.as_str(), "Faulted");
    assert_eq!(shown(&h, 1), ["out of order"]);
    assert!(shown(&h, 2).is_empty());
    h.fault(1, 1, None);
    assert!(shown(&h, 1).is_empty());
    let (status, notifies) = get_ids(&mut h, &[1]);
    assert_eq!(status, "Accepted");
    assert_eq!(notifies[0]["messageInfo"][0]["state"], "Faulted");
}

#[test]
fn the_number_of_messages_is_limited() {
    let mut h = Harness::new(default_config());
    for id in 0..32 {
        assert_eq!(set_plain(&mut h, id, "NormalCycle", "x"), "Accepted");
    }
    let r = result(h.call(
        "SetDisplayMessage",
        json!({"message": info(99, "NormalCycle", "one too many", json!({}))}),
    ));
    // O01.FR.11
    assert_eq!(r["status"], "Rejected");
    assert_eq!(r["statusInfo"]["reasonCode"], "TooManyElements");
    // Replacing one is no new message.
    assert_eq!(set_plain(&mut h, 5, "InFront", "replaced"), "Accepted");
    assert_eq!(count(&mut h), "32");
    let r = result(h.call(
        "GetVariables",
        json!({"getVariableData": [
            {"component": {"name": "DisplayMessageCtrlr"}, "variable": {"name": "DisplayMessages"}, "attributeType": "Actual"}
        ]}),
    ));
    assert_eq!(r["getVariableResult"][0]["attributeStatus"], "Accepted");
}

#[test]
fn messages_for_a_display_go_to_that_evses_screen_only() {
    let mut h = Harness::new(default_config());
    let m = info(
        1,
        "NormalCycle",
        "evse 2",
        json!({"display": {"name": "Display", "evse": {"id": 2}}}),
    );
    assert_eq!(set(&mut h, m), "Accepted");
    let main = info(
        2,
        "NormalCycle",
        "main",
        json!({"display": {"name": "Display"}}),
    );
    assert_eq!(set(&mut h, main), "Accepted");
    assert_eq!(shown(&h, 2), ["evse 2", "main"]);
    assert_eq!(shown(&h, 1), ["main"]);
    assert_eq!(shown(&h, 0), ["main"]);
    // 001.FR.22 (errata): an unknown display is Rejected.
    for display in [
        json!({"name": "Screen"}),
        json!({"name": "Display", "evse": {"id": 9}}),
    ] {
        let r = result(h.call(
            "SetDisplayMessage",
            json!({"message": info(3, "NormalCycle", "x", json!({"display": display}))}),
        ));
        assert_eq!(r["status"], "Rejected", "{display}");
    }
    assert_eq!(count(&mut h), "2");
}

#[test]
fn the_order_on_a_screen() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    set_plain(&mut h, 1, "NormalCycle", "station normal");
    set(
        &mut h,
        info(2, "NormalCycle", "tx normal", json!({"transactionId": tx})),
    );
    set(
        &mut h,
        info(
            3,
            "NormalCycle",
            "evse normal",
            json!({"display": {"name": "Display", "evse": {"id": 1}}}),
        ),
    );
    set_plain(&mut h, 4, "InFront", "station front");
    set_plain(&mut h, 5, "NormalCycle", "station normal 2");
    set_plain(&mut h, 6, "AlwaysFront", "always");
    // Priority; within one: the transaction's, the EVSE's, the station's, newest first.
    assert_eq!(
        shown(&h, 1),
        [
            "always",
            "station front",
            "tx normal",
            "evse normal",
            "station normal 2",
            "station normal"
        ]
    );
}

#[test]
fn a_message_that_has_already_ended_is_not_kept() {
    let mut h = Harness::new(default_config());
    let m = info(
        1,
        "NormalCycle",
        "x",
        json!({"endDateTime": rfc3339(&h, -5)}),
    );
    assert_eq!(set(&mut h, m), "Accepted");
    assert!(shown(&h, 0).is_empty());
    assert_eq!(count(&mut h), "0");
}

#[test]
fn a_window_that_ends_before_it_starts_is_rejected() {
    let mut h = Harness::new(default_config());
    let m = info(
        1,
        "NormalCycle",
        "x",
        json!({"startDateTime": rfc3339(&h, 60), "endDateTime": rfc3339(&h, 30)}),
    );
    assert_eq!(set(&mut h, m), "Rejected");
}

#[test]
fn disabled_display_messages_are_not_supported_and_not_shown() {
    let mut h = Harness::new(default_config());
    set_plain(&mut h, 1, "NormalCycle", "x");
    let r = result(h.call(
        "SetVariables",
        json!({"setVariableData": [
            {"component": {"name": "DisplayMessageCtrlr"}, "variable": {"name": "Enabled"}, "attributeValue": "false"}
        ]}),
    ));
    assert_eq!(r["setVariableResult"][0]["attributeStatus"], "Accepted");
    assert!(shown(&h, 0).is_empty());
    match h.call(
        "SetDisplayMessage",
        json!({"message": info(2, "NormalCycle", "y", json!({}))}),
    ) {
        Frame::CallError { code, .. } => assert_eq!(code, "NotSupported"),
        other => panic!("expected NotSupported, got {other:?}"),
    }
    // Kept: shown again once enabled.
    h.call(
        "SetVariables",
        json!({"setVariableData": [
            {"component": {"name": "DisplayMessageCtrlr"}, "variable": {"name": "Enabled"}, "attributeValue": "true"}
        ]}),
    );
    assert_eq!(shown(&h, 0), ["x"]);
}

#[test]
fn the_displays_are_in_the_device_model() {
    // 001.FR.21 (errata): a Display component for every display a message may name.
    let mut h = Harness::new(default_config());
    let r = result(h.call(
        "GetVariables",
        json!({"getVariableData": [
            {"component": {"name": "Display"}, "variable": {"name": "Available"}},
            {"component": {"name": "Display", "evse": {"id": 2}}, "variable": {"name": "Available"}},
            {"component": {"name": "DisplayMessageCtrlr"}, "variable": {"name": "SupportedFormats"}},
            {"component": {"name": "DisplayMessageCtrlr"}, "variable": {"name": "SupportedPriorities"}}
        ]}),
    ));
    let values: Vec<(&str, &str)> = r["getVariableResult"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["attributeStatus"].as_str().unwrap(),
                v["attributeValue"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("Accepted", "true"),
            ("Accepted", "true"),
            ("Accepted", "ASCII,UTF8"),
            ("Accepted", "AlwaysFront,InFront,NormalCycle")
        ]
    );
}

#[test]
fn the_drivers_tariff_and_cost_join_the_evses_screen() {
    let mut h = Harness::new(default_config());
    set_plain(&mut h, 1, "InFront", "csms front");
    set_plain(&mut h, 2, "NormalCycle", "csms normal");
    h.csms.personal_message = Some("Your tariff: 0.25 EUR/kWh".into());
    let tx = start_transaction(&mut h);
    let r = result(h.call(
        "CostUpdated",
        json!({"totalCost": 1.5, "transactionId": tx}),
    ));
    assert_eq!(r, json!({}));
    // I01/I02 through the screen: after the CSMS's InFront messages, before the normal cycle.
    assert_eq!(
        shown(&h, 1),
        [
            "csms front",
            "Your tariff: 0.25 EUR/kWh",
            "Cost so far: 1.50 EUR",
            "csms normal"
        ]
    );
    let items = screen(&h, 1).items;
    let sources: Vec<String> = items
        .iter()
        .map(|i| {
            serde_json::to_value(i.source)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(sources, ["csms", "tariff", "cost", "csms"]);
    // Only the driver's EVSE.
    assert_eq!(shown(&h, 2), ["csms front", "csms normal"]);
    assert_eq!(shown(&h, 0), ["csms front", "csms normal"]);
}
