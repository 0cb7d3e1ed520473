//! End-to-end tariff and cost (I): the real binary against the independent CSMS peers (PyPI
//! `ocpp`, npm `ocpp-rpc` strict). The driver's tariff from the authorization, the running
//! cost from CostUpdated, the total from the answer to the Ended event, as `ctl status` shows
//! them to the HMI.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, Csms, wait_for};

const T: Duration = Duration::from_secs(30);

fn price(agent: &Agent, evse: usize) -> Value {
    agent.status()["evses"][evse - 1]["price"].clone()
}

#[test]
fn the_drivers_tariff_running_cost_and_total_reach_the_hmi() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), r#""TariffCostCtrlr.Currency" = "EUR""#);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    let answer = csms.admin(json!({"cmd": "set", "total_cost": 4.2,
        "auth": {"TOKEN1": {"status": "Accepted", "message": "0.35 EUR/kWh"}}}));
    assert_eq!(answer["ok"], true, "{answer}");

    agent.ctl_json(&["token", "1", "TOKEN1"]);
    wait_for(T, "the tariff", || {
        (price(&agent, 1)["tariff"]["content"] == "0.35 EUR/kWh").then_some(())
    });
    agent.ctl_json(&["plug", "1", "in"]);
    let tx = wait_for(T, "the transaction", || {
        agent.status()["evses"][0]["transaction"]["id"]
            .as_str()
            .map(str::to_owned)
    });

    // I02: the CSMS tells the running cost.
    let r = csms.call(
        "CostUpdated",
        json!({"totalCost": 1.25, "transactionId": tx}),
    );
    assert_eq!(r, json!({}));
    let p = price(&agent, 1);
    assert_eq!(p["cost"], 1.25, "{p}");
    assert_eq!(p["cost_final"], false, "{p}");
    assert_eq!(p["currency"], "EUR", "{p}");

    // I03: the total, from the answer to the Ended event.
    agent.ctl_json(&["plug", "1", "out"]);
    wait_for(T, "the total cost", || {
        let p = price(&agent, 1);
        (p["cost"] == 4.2 && p["cost_final"] == true).then_some(())
    });
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
