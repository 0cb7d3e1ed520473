//! The end-to-end smoke scenario, short enough to run under emulation too: boot accepted,
//! heartbeat, plug in, token, charging with meter values, unplug, transaction ended, every
//! message valid per the peer. CI runs it against the ARMv7 build under qemu-arm:
//! `OCPP_TEST_AGENT_BIN=scripts/qemu-agent.sh cargo test --test e2e_smoke`.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Agent, Csms, wait_for};

const T: Duration = Duration::from_secs(60);

#[test]
fn boot_heartbeat_and_a_charging_session() {
    let Some(csms) = Csms::start(&["--interval", "2"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), r#""SampledDataCtrlr.TxUpdatedInterval" = 2"#);
    let boot = csms.wait_calls("BootNotification", 1, T);
    assert_eq!(boot[0]["payload"]["reason"], "PowerUp");
    csms.wait_calls("Heartbeat", 1, T);
    agent.wait_ready();

    agent.ctl_json(&["plug", "1", "in"]);
    agent.ctl_json(&["token", "1", "SMOKE"]);
    let events = |csms: &Csms| -> Vec<Value> {
        csms.calls("TransactionEvent")
            .into_iter()
            .map(|r| r["payload"].clone())
            .collect()
    };
    wait_for(T, "charging with meter values", || {
        events(&csms)
            .iter()
            .any(|e| e["triggerReason"] == "MeterValuePeriodic" && e["meterValue"].is_array())
            .then_some(())
    });
    assert_eq!(
        agent.status()["evses"][0]["transaction"]["charging_state"],
        "Charging"
    );
    agent.ctl_json(&["plug", "1", "out"]);
    wait_for(T, "the transaction ended", || {
        events(&csms)
            .iter()
            .any(|e| e["eventType"] == "Ended")
            .then_some(())
    });
    let evs = events(&csms);
    let seq: Vec<u64> = evs.iter().map(|e| e["seqNo"].as_u64().unwrap()).collect();
    assert_eq!(seq, (0..evs.len() as u64).collect::<Vec<_>>());
    assert_eq!(evs[0]["eventType"], "Started");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
