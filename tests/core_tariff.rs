//! Tariff and cost (I01-I08) in the core, on the virtual clock against the scripted CSMS: the
//! driver's tariff from the authorization or the fallback, the running cost (CostUpdated and
//! TransactionEventResponse), the total at the end, and the fallbacks offline (part 6 TC_I_02_CS
//! and TC_I_07_CS, and the requirements they rest on).

use ocpp_agent::ocpp::blocks::tariff::DriverPrice;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::testkit::{Harness, config_with};
use serde_json::{Value, json};

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn price(h: &Harness, evse: usize) -> Option<DriverPrice> {
    h.station.snapshot(h.now).evses[evse - 1].price.clone()
}

fn tariff(h: &Harness, evse: usize) -> Option<String> {
    price(h, evse).and_then(|p| p.tariff.map(|t| t.content))
}

fn cost(h: &Harness, evse: usize) -> (Option<f64>, bool) {
    price(h, evse).map_or((None, false), |p| (p.cost, p.cost_final))
}

fn station(vars: &[(&str, &str)]) -> Harness {
    let mut h = Harness::new(config_with(vars));
    h.advance_secs(1);
    h
}

fn tx_id(h: &Harness, evse: usize) -> String {
    h.station.snapshot(h.now).evses[evse - 1]
        .transaction
        .as_ref()
        .unwrap()
        .id
        .clone()
}

#[test]
fn i01_the_drivers_tariff_comes_with_the_authorization_else_the_fallback() {
    let mut h = station(&[("TariffCostCtrlr.TariffFallbackMessage", "0.30 EUR/kWh")]);
    // I04.FR.01: nothing driver-specific from the CSMS: the fallback.
    h.token(1, "A");
    assert_eq!(tariff(&h, 1).as_deref(), Some("0.30 EUR/kWh"));
    // I01.FR.03: the personal message of the idTokenInfo.
    h.csms.personal_message = Some("Your tariff: 0.25 EUR/kWh".into());
    h.token(2, "B");
    assert_eq!(tariff(&h, 2).as_deref(), Some("Your tariff: 0.25 EUR/kWh"));
    let p = price(&h, 2).unwrap();
    assert_eq!(p.currency, "EUR");
    assert_eq!(p.cost, None);
}

#[test]
fn i04_offline_the_fallback_tariff_is_shown() {
    let mut h = station(&[
        (
            "TariffCostCtrlr.TariffFallbackMessage",
            "Standard tariff applies",
        ),
        ("AuthCtrlr.OfflineTxForUnknownIdEnabled", "true"),
    ]);
    h.csms.personal_message = Some("never seen offline".into());
    h.csms.online = false;
    h.drop_connection();
    h.token(1, "A");
    assert_eq!(tariff(&h, 1).as_deref(), Some("Standard tariff applies"));
}

#[test]
fn tc_i_07_the_running_cost_from_transaction_event_responses_and_cost_updated() {
    let mut h = station(&[("SampledDataCtrlr.TxUpdatedInterval", "60")]);
    h.csms
        .transaction_answers
        .push(("Updated", json!({"totalCost": 1.5})));
    h.token(1, "A");
    h.plug(1, 1, true);
    h.advance_secs(61);
    // I02.FR.04
    assert_eq!(cost(&h, 1), (Some(1.5), false));
    // I02.FR.02/03: CostUpdated, answered and shown.
    let tx = tx_id(&h, 1);
    let answer = result(h.call(
        "CostUpdated",
        json!({"totalCost": 2.25, "transactionId": tx}),
    ));
    assert_eq!(answer, json!({}));
    assert_eq!(cost(&h, 1), (Some(2.25), false));
    // A transaction the station does not have is answered too, and changes nothing.
    result(h.call(
        "CostUpdated",
        json!({"totalCost": 9.0, "transactionId": "not-ours"}),
    ));
    assert_eq!(cost(&h, 1), (Some(2.25), false));
    assert_eq!(cost(&h, 2), (None, false));
}

#[test]
fn tc_i_02_the_total_cost_after_charging_until_the_next_session() {
    let mut h = station(&[]);
    h.csms
        .transaction_answers
        .push(("Ended", json!({"totalCost": 12.34})));
    h.token(1, "A");
    h.plug(1, 1, true);
    h.advance_secs(30);
    h.plug(1, 1, false);
    // I03.FR.03
    assert_eq!(cost(&h, 1), (Some(12.34), true));
    // I03.FR.04: 0.00 is a free transaction, and shown as such.
    h.csms.transaction_answers = vec![("Ended", json!({"totalCost": 0.0}))];
    h.token(2, "B");
    h.plug(2, 1, true);
    h.plug(2, 1, false);
    assert_eq!(cost(&h, 2), (Some(0.0), true));
    // The next driver at EVSE 1 does not see the last one's total.
    h.token(1, "C");
    assert_eq!(cost(&h, 1), (None, false));
}

#[test]
fn i05_a_transaction_ended_offline_shows_the_total_cost_fallback() {
    let mut h = station(&[(
        "TariffCostCtrlr.TotalCostFallbackMessage",
        "Your receipt will follow by e-mail",
    )]);
    h.token(1, "A");
    h.plug(1, 1, true);
    h.csms.online = false;
    h.drop_connection();
    h.plug(1, 1, false);
    let p = price(&h, 1).unwrap();
    assert!(p.cost_final);
    assert_eq!(p.cost, None);
    assert_eq!(
        p.cost_fallback.map(|m| m.content).as_deref(),
        Some("Your receipt will follow by e-mail")
    );
}

#[test]
fn i06_an_updated_personal_message_replaces_the_tariff() {
    let mut h = station(&[]);
    h.csms.personal_message = Some("0.25 EUR/kWh".into());
    h.csms.transaction_answers.push((
        "Updated",
        json!({"updatedPersonalMessage": {"format": "UTF8", "content": "From 22:00: 0.20 EUR/kWh"}}),
    ));
    h.token(1, "A");
    assert_eq!(tariff(&h, 1).as_deref(), Some("0.25 EUR/kWh"));
    // The EV connects: an Updated event, whose answer updates the tariff (I06.FR.03).
    h.plug(1, 1, true);
    assert_eq!(tariff(&h, 1).as_deref(), Some("From 22:00: 0.20 EUR/kWh"));
}

#[test]
fn tariff_and_cost_can_be_switched_off() {
    let mut h = station(&[
        ("TariffCostCtrlr.Enabled[Tariff]", "false"),
        ("TariffCostCtrlr.Enabled[Cost]", "false"),
        ("TariffCostCtrlr.TariffFallbackMessage", "fallback"),
    ]);
    h.csms.personal_message = Some("personal".into());
    h.csms
        .transaction_answers
        .push(("Ended", json!({"totalCost": 3.0})));
    h.token(1, "A");
    h.plug(1, 1, true);
    h.plug(1, 1, false);
    assert_eq!(price(&h, 1), None);
}

#[test]
fn tariff_cost_variables_are_in_the_device_model() {
    let mut h = station(&[("TariffCostCtrlr.Currency", "CHF")]);
    let values = h.variable_values(&[
        "TariffCostCtrlr.Currency",
        "TariffCostCtrlr.Enabled[Tariff]",
        "TariffCostCtrlr.Available[Cost]",
        "TariffCostCtrlr.TotalCostFallbackMessage",
    ]);
    assert_eq!(values, vec!["CHF", "true", "true", ""]);
}

#[test]
fn the_next_driver_sees_nothing_of_the_last_ones_session() {
    let mut h = station(&[]);
    h.csms.personal_message = Some("Hello Alice: 0.30 EUR/kWh".into());
    h.token(1, "ALICE");
    h.plug(1, 1, true);
    let tx = tx_id(&h, 1);
    result(h.call(
        "CostUpdated",
        json!({"totalCost": 7.5, "transactionId": tx}),
    ));
    assert_eq!(cost(&h, 1), (Some(7.5), false));
    // The CSMS gives no total (I03.FR.04 allows it): her tariff and running cost go with the
    // session.
    h.plug(1, 1, false);
    assert_eq!(price(&h, 1), None);
    // The next EV plugs in first (TxStartPoint EVConnected): nothing of Alice's.
    h.csms.personal_message = None;
    h.plug(1, 1, true);
    assert_eq!(price(&h, 1), None);
    // A late CostUpdated for her transaction is answered and not shown.
    result(h.call(
        "CostUpdated",
        json!({"totalCost": 8.0, "transactionId": tx}),
    ));
    assert_eq!(price(&h, 1), None);
}

#[test]
fn the_currency_and_fallback_messages_are_checked() {
    let mut h = station(&[]);
    let answer = result(h.call(
        "SetVariables",
        json!({"setVariableData": [
            {"component": {"name": "TariffCostCtrlr"}, "variable": {"name": "Currency"}, "attributeValue": "euro"},
            {"component": {"name": "TariffCostCtrlr"}, "variable": {"name": "Currency"}, "attributeValue": "CHF"},
            {"component": {"name": "TariffCostCtrlr"}, "variable": {"name": "TariffFallbackMessage"}, "attributeValue": "x".repeat(256)},
        ]}),
    ));
    let statuses: Vec<&str> = answer["setVariableResult"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributeStatus"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["Rejected", "Accepted", "Rejected"]);
}
