//! End-to-end smart charging (K): the real binary against the independent CSMS peers (PyPI
//! `ocpp`, npm `ocpp-rpc` strict, both validating every message against the official
//! schemas). SetChargingProfile then GetCompositeSchedule and GetChargingProfiles; a running
//! transaction's meter power follows a TxDefaultProfile, then a TxProfile; ClearChargingProfile
//! restores the rating; the profiles survive a kill -9 of the agent.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Agent, Csms, utc_in_secs, wait_for};

const T: Duration = Duration::from_secs(30);

/// Power in the periodic meter values, every second.
const FAST: &str = r#""SampledDataCtrlr.TxUpdatedInterval" = 1
"SampledDataCtrlr.TxUpdatedMeasurands" = "Power.Active.Import,Power.Offered""#;

fn profile(id: i64, purpose: &str, amps: f64) -> Value {
    json!({
        "id": id,
        "stackLevel": 0,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [{
            "id": id,
            "startSchedule": utc_in_secs(-5),
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps}],
        }],
    })
}

fn set(csms: &Csms, evse: i64, profile: Value) -> Value {
    csms.call(
        "SetChargingProfile",
        json!({"evseId": evse, "chargingProfile": profile}),
    )
}

/// Every value of `measurand` in the TransactionEvents, in order.
fn sampled(csms: &Csms, measurand: &str) -> Vec<f64> {
    csms.calls("TransactionEvent")
        .iter()
        .filter_map(|r| r["payload"]["meterValue"].as_array().cloned())
        .flatten()
        .flat_map(|m| m["sampledValue"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["measurand"] == measurand)
        .filter_map(|s| s["value"].as_f64())
        .collect()
}

/// The Power.Active.Import of the latest TransactionEvent that has one.
fn last_power(csms: &Csms) -> Option<f64> {
    sampled(csms, "Power.Active.Import").last().copied()
}

fn wait_power(csms: &Csms, watts: f64) {
    wait_for(T, &format!("{watts} W in the meter values"), || {
        last_power(csms)
            .is_some_and(|p| (p - watts).abs() < 1.0)
            .then_some(())
    });
}

/// The profile ids the ReportChargingProfiles of one GetChargingProfiles carried.
fn reported_ids(csms: &Csms, request_id: i64) -> Vec<i64> {
    let status = csms.call(
        "GetChargingProfiles",
        json!({"requestId": request_id, "chargingProfile": {"chargingLimitSource": ["CSO"]}}),
    );
    if status["status"] == "NoProfiles" {
        return Vec::new();
    }
    let reports = wait_for(T, "ReportChargingProfiles", || {
        let r: Vec<Value> = csms
            .calls("ReportChargingProfiles")
            .into_iter()
            .filter(|r| r["payload"]["requestId"] == request_id)
            .collect();
        r.iter().any(|r| r["payload"]["tbc"] != true).then_some(r)
    });
    let mut ids: Vec<i64> = reports
        .iter()
        .flat_map(|r| r["payload"]["chargingProfile"].as_array().cloned().unwrap())
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn profiles_limit_a_running_transaction_and_survive_a_kill_9() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let mut agent = Agent::start(&csms.url(), FAST);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();

    // TC_K_01 then TC_K_39/40: the composite of EVSE 1 is the profile's 10 A.
    assert_eq!(
        set(&csms, 1, profile(1, "TxDefaultProfile", 10.0))["status"],
        "Accepted"
    );
    let r = csms.call(
        "GetCompositeSchedule",
        json!({"evseId": 1, "duration": 600, "chargingRateUnit": "A"}),
    );
    assert_eq!(r["status"], "Accepted", "{r}");
    assert_eq!(
        r["schedule"]["chargingSchedulePeriod"][0]["limit"], 10.0,
        "{r}"
    );
    let r = csms.call(
        "GetCompositeSchedule",
        json!({"evseId": 1, "duration": 600, "chargingRateUnit": "W"}),
    );
    // 10 A x 230 V x 3 phases.
    assert_eq!(
        r["schedule"]["chargingSchedulePeriod"][0]["limit"], 6900.0,
        "{r}"
    );
    assert_eq!(agent.status()["evses"][0]["charging_limit"]["amps"], 10.0);

    // The sim meter (11 kW) draws 6900 W under the profile.
    agent.ctl_json(&["plug", "1", "in"]);
    agent.ctl_json(&["token", "1", "TOKEN1"]);
    wait_power(&csms, 6900.0);
    // Power.Offered: what the limit lets the EV draw.
    let offered = sampled(&csms, "Power.Offered");
    assert!(offered.contains(&6900.0), "{offered:?}");
    let tx = agent.status()["evses"][0]["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // TC_K_60: a TxProfile of the running transaction overrules the default.
    let mut txp = profile(2, "TxProfile", 6.0);
    txp["transactionId"] = json!(tx);
    assert_eq!(set(&csms, 1, txp)["status"], "Accepted");
    wait_power(&csms, 4140.0);
    assert!(
        csms.calls("TransactionEvent")
            .iter()
            .any(|r| r["payload"]["triggerReason"] == "ChargingRateChanged"),
        "no ChargingRateChanged"
    );
    assert_eq!(reported_ids(&csms, 1), vec![1, 2]);

    // TC_K_05: clearing both gives the EV its own 11 kW again (the rating is 32 A).
    for id in [1, 2] {
        let r = csms.call("ClearChargingProfile", json!({"chargingProfileId": id}));
        assert_eq!(r["status"], "Accepted", "{r}");
    }
    wait_power(&csms, 11_000.0);

    // Durable (K01.FR.27): a profile set now is there after a kill -9, and applies at once.
    assert_eq!(
        set(&csms, 0, profile(3, "ChargingStationMaxProfile", 8.0))["status"],
        "Accepted"
    );
    agent.ctl_json(&["plug", "1", "out"]);
    agent.kill9();
    agent.spawn(&[]);
    csms.wait_calls("BootNotification", 2, T);
    agent.wait_ready();
    assert_eq!(reported_ids(&csms, 2), vec![3]);
    // The station's 8 A, split between its two idle EVSEs.
    wait_for(T, "the limit after the restart", || {
        (agent.status()["evses"][1]["charging_limit"]["amps"] == 4.0).then_some(())
    });
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn refused_profiles_carry_a_reason_code() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    // TC_K_02: a TxProfile without a transaction.
    let mut txp = profile(1, "TxProfile", 6.0);
    txp["transactionId"] = json!("nope");
    let r = set(&csms, 1, txp);
    assert_eq!(r["status"], "Rejected", "{r}");
    assert_eq!(r["statusInfo"]["reasonCode"], "TxNotFound", "{r}");
    // TC_K_15: an EVSE the station does not have.
    let r = set(&csms, 9, profile(2, "TxDefaultProfile", 6.0));
    assert_eq!(r["statusInfo"]["reasonCode"], "UnknownEvse", "{r}");
    // TC_K_08: nothing to clear.
    let r = csms.call(
        "ClearChargingProfile",
        json!({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile"}}),
    );
    assert_eq!(r["status"], "Unknown", "{r}");
    assert_eq!(reported_ids(&csms, 4), Vec::<i64>::new());
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn ctl_limit_is_a_local_energy_manager_the_csms_hears_of() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), FAST);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    agent.ctl_json(&["limit", "1", "8", "--for", "600"]);
    let n = csms.wait_calls("NotifyChargingLimit", 1, T);
    assert_eq!(n[0]["payload"]["evseId"], 1);
    assert_eq!(
        n[0]["payload"]["chargingLimit"]["chargingLimitSource"],
        "EMS"
    );
    assert_eq!(agent.status()["evses"][0]["charging_limit"]["amps"], 8.0);
    // The meter follows: 8 A x 230 V x 3 = 5520 W.
    agent.ctl_json(&["plug", "1", "in"]);
    agent.ctl_json(&["token", "1", "TOKEN1"]);
    wait_power(&csms, 5520.0);
    agent.ctl_json(&["limit", "1", "clear"]);
    let c = csms.wait_calls("ClearedChargingLimit", 1, T);
    assert_eq!(c[0]["payload"]["evseId"], 1);
    wait_power(&csms, 11_000.0);
    // Bad input is refused with a reason, and changes nothing.
    let out = agent.ctl(&["limit", "7", "8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no EVSE 7"));
    let out = agent.ctl(&["limit", "1", "lots"]);
    assert!(!out.status.success());
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

/// The test config with EVSE 1's `limit` backend set to `limit`.
fn config_with_limit(dir: &std::path::Path, url: &str, limit: &str) -> String {
    let text = support::agent_config(dir, url, "");
    let evse1 = "[[evse]]\nid = 1\nplug = { backend = \"sim\" }\n";
    assert!(text.contains(evse1));
    text.replace(evse1, &format!("{evse1}limit = {limit}\n"))
}

#[test]
fn the_command_backend_runs_the_integrators_program_with_each_limit() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("limit-calls");
    let limit = format!(
        r#"{{ backend = "command", command = ["/bin/sh", "-c", "echo \"$@\" >> {}", "evse-limit"] }}"#,
        calls.display()
    );
    let text = config_with_limit(dir.path(), &csms.url(), &limit);
    let agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    assert_eq!(
        set(&csms, 1, profile(1, "TxDefaultProfile", 13.5))["status"],
        "Accepted"
    );
    // At start-up the rating (32 A), then the profile's 13.5 A; EVSE 2 has no command.
    let seen = wait_for(T, "the limit command", || {
        let text = std::fs::read_to_string(&calls).unwrap_or_default();
        text.contains("1 13.5 3").then_some(text)
    });
    // Changes that come while the command runs are coalesced, so the rating may be skipped;
    // the last call is the limit in force.
    assert_eq!(seen.lines().last(), Some("1 13.5 3"), "{seen}");
    assert!(
        seen.lines().all(|l| l == "1 32.0 3" || l == "1 13.5 3"),
        "{seen}"
    );
}

#[test]
fn a_missing_pwm_channel_stops_the_agent_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // No PWM controller 97 on any machine this runs on.
    let text = config_with_limit(
        dir.path(),
        "ws://127.0.0.1:9/ocpp",
        r#"{ backend = "pwm", chip = 97, channel = 0 }"#,
    );
    let mut agent = Agent::start_with_config(dir, &text, &[]);
    assert_eq!(agent.wait_exit(T), Some(73));
    let log = agent.log();
    assert!(
        log.contains("evse 1 limit: no PWM controller /sys/class/pwm/pwmchip97"),
        "{log}"
    );
}
