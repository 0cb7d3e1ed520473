//! End-to-end: the real binary against the independent Python `ocpp` CSMS on localhost.
//! Boot, heartbeats, connector status, `ctl plug`, CSMS restart and reconnect, Basic auth,
//! clean shutdown, and `check-config`.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::{Agent, Csms, PASSWORD, agent_config, check_config, wait_for};

const T: Duration = Duration::from_secs(30);

fn seconds(record: &Value) -> f64 {
    let t = record["t"].as_str().unwrap();
    // "2026-11-26T06:49:19.123456+00:00" or with Z: seconds within the day is enough here.
    let time = &t[11..];
    let h: f64 = time[0..2].parse().unwrap();
    let m: f64 = time[3..5].parse().unwrap();
    let s: f64 = time[6..]
        .trim_end_matches('Z')
        .split(['+', '-'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    h * 3600.0 + m * 60.0 + s
}

fn statuses(csms: &Csms) -> Vec<(i64, i64, String)> {
    csms.calls("StatusNotification")
        .iter()
        .map(|r| {
            let p = &r["payload"];
            (
                p["evseId"].as_i64().unwrap(),
                p["connectorId"].as_i64().unwrap(),
                p["connectorStatus"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn boots_heartbeats_and_reports_connectors_with_plug_changes() {
    let Some(csms) = Csms::start(&["--interval", "2"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");

    let boot = csms.wait_calls("BootNotification", 1, T);
    assert_eq!(boot[0]["payload"]["reason"], "PowerUp");
    assert_eq!(
        boot[0]["payload"]["chargingStation"]["vendorName"],
        "Example"
    );
    let connected = &csms.events("connected")[0];
    assert_eq!(connected["subprotocol"], "ocpp2.0.1");
    assert_eq!(connected["auth_user"], "CP001");
    assert_eq!(connected["auth_ok"], true);
    assert!(connected["path"].as_str().unwrap().ends_with("/ocpp/CP001"));

    // B01.FR.05: both connectors reported Available after acceptance.
    wait_for(T, "two StatusNotifications", || {
        (statuses(&csms).len() >= 2).then_some(())
    });
    assert_eq!(
        statuses(&csms),
        vec![(1, 1, "Available".into()), (2, 1, "Available".into())]
    );

    // Heartbeats at the 2 s interval from the BootNotificationResponse.
    let hb = csms.wait_calls("Heartbeat", 3, T);
    for pair in hb.windows(2) {
        let gap = seconds(&pair[1]) - seconds(&pair[0]);
        assert!((1.5..6.0).contains(&gap), "heartbeat gap {gap} s");
    }

    let status = agent.status();
    assert_eq!(status["connection"], "connected");
    assert_eq!(status["registration"], "accepted");
    assert_eq!(status["evses"][0]["id"], 1);
    assert_eq!(status["evses"][0]["connectors"][0]["status"], "Available");

    // ctl plug: Occupied, then Available.
    agent.ctl_json(&["plug", "1", "in"]);
    wait_for(T, "Occupied", || {
        statuses(&csms)
            .contains(&(1, 1, "Occupied".into()))
            .then_some(())
    });
    assert_eq!(
        agent.status()["evses"][0]["connectors"][0]["status"],
        "Occupied"
    );
    agent.ctl_json(&["plug", "1", "out", "--connector", "1"]);
    wait_for(T, "Available again", || {
        (statuses(&csms).last() == Some(&(1, 1, "Available".into()))).then_some(())
    });
    assert_eq!(statuses(&csms).len(), 4);

    // Bad ctl requests are errors, not crashes.
    let out = agent.ctl(&["plug", "7", "in"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connector 1 on EVSE 7"));

    // The ocpp library validated every message we sent against the official schemas.
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn reconnects_after_a_csms_restart_and_reports_what_changed() {
    let Some(mut csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    wait_for(T, "initial statuses", || {
        (statuses(&csms).len() >= 2).then_some(())
    });

    csms.stop();
    wait_for(T, "the agent to notice", || {
        (agent.status()["connection"] != "connected").then_some(())
    });
    agent.ctl_json(&["plug", "2", "in"]);
    csms.restart();

    wait_for(T, "the reconnect", || {
        (csms.events("connected").len() >= 2).then_some(())
    });
    wait_for(T, "the offline change", || {
        statuses(&csms)
            .contains(&(2, 1, "Occupied".into()))
            .then_some(())
    });
    // Same process: no second BootNotification (B01 boots once per start), and only the
    // connector that changed is reported (B04.FR.02).
    assert_eq!(csms.calls("BootNotification").len(), 1);
    assert_eq!(statuses(&csms).len(), 3);
    assert_eq!(agent.status()["connection"], "connected");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

#[test]
fn wrong_password_is_rejected_and_retried_with_back_off() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = agent_config(dir.path(), &csms.url(), "").replace(PASSWORD, "fedcba9876543210");
    let agent = Agent::start_with_config(dir, &text, &[]);
    wait_for(T, "two rejected attempts", || {
        (csms.events("rejected").len() >= 2).then_some(())
    });
    assert!(csms.calls("BootNotification").is_empty());
    assert_eq!(agent.status()["registration"], "none");
    // The password never appears in the agent's log.
    assert!(!agent.log().contains("fedcba9876543210"));
}

#[test]
fn sigterm_stops_cleanly() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let mut agent = Agent::start(&csms.url(), "");
    agent.wait_ready();
    csms.wait_calls("BootNotification", 1, T);
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!agent.dir.path().join("control.sock").exists());
    let disconnected = wait_for(T, "the disconnect", || csms.events("disconnected").pop());
    assert_eq!(disconnected["code"], 1001, "{disconnected}");
}

#[test]
fn env_overrides_the_config_file() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = agent_config(dir.path(), "ws://127.0.0.1:1/nowhere", "");
    let url = csms.url();
    let _agent = Agent::start_with_config(dir, &text, &[("OCPP_AGENT_CSMS__URL", &url)]);
    csms.wait_calls("BootNotification", 1, T);
}

/// The running agent's environment as the kernel shows it, entries on lines. glibc writes a
/// NUL after each tunable's value it parses, in place, so `GLIBC_TUNABLES=a=1:b=2` reads back
/// as two lines, `GLIBC_TUNABLES=a=1` and `b=2`.
fn environment_of(agent: &Agent) -> String {
    let environ = std::fs::read(format!("/proc/{}/environ", agent.pid())).unwrap();
    String::from_utf8_lossy(&environ).replace('\0', "\n")
}

/// Issue 13: the agent runs without glibc's per-thread malloc cache (it starts itself again
/// with the tunable, keeping its pid and the tunables it was given), and a cache size of the
/// user's own is left as it is.
#[test]
fn runs_without_the_malloc_thread_cache_unless_told_otherwise() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = agent_config(dir.path(), &csms.url(), "");
    let given = [("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")];
    let agent = Agent::start_with_config(dir, &text, &given);
    agent.wait_ready();
    csms.wait_calls("BootNotification", 1, T);
    let environment = environment_of(&agent);
    assert!(
        environment.contains("GLIBC_TUNABLES=glibc.malloc.arena_max=1")
            && environment.contains("glibc.malloc.tcache_count=0"),
        "{environment}"
    );
    assert!(!agent.log().contains("thread cache"), "{}", agent.log());

    let dir = tempfile::tempdir().unwrap();
    let text = agent_config(dir.path(), &csms.url(), "");
    let own = [("GLIBC_TUNABLES", "glibc.malloc.tcache_count=3")];
    let agent = Agent::start_with_config(dir, &text, &own);
    agent.wait_ready();
    let environment = environment_of(&agent);
    assert!(
        environment.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=3")
            && !environment.contains("tcache_count=0"),
        "{environment}"
    );
}

#[test]
fn check_config_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = agent_config(dir.path(), "ws://127.0.0.1:9000/ocpp", "");
    assert_eq!(check_config(&good).0, 0);

    let cases = [
        (
            good.replace("model = ", "colour = \"red\"\nmodel = "),
            "colour",
        ),
        (
            good.replace("ws://127.0.0.1:9000/ocpp", "http://127.0.0.1:9000/ocpp"),
            "csms.url",
        ),
        (
            good.replace("id = \"CP001\"", "id = \"CP:001\""),
            "station.id",
        ),
        (
            good.replace(&format!("password = \"{PASSWORD}\""), ""),
            "csms.password",
        ),
        (
            good.replace("backend = \"sim\"", "backend = \"magic\""),
            "magic",
        ),
        (
            good.replace(
                "RetryBackOffRepeatTimes\" = 2",
                "RetryBackOffRepeatTimes\" = \"often\"",
            ),
            "OCPPCommCtrlr.RetryBackOffRepeatTimes",
        ),
        ("this is [not toml".to_string(), "TOML"),
    ];
    for (text, needle) in cases {
        let (code, stderr) = check_config(&text);
        assert_eq!(code, 78, "{needle}: {stderr}");
        assert!(stderr.contains(needle), "{needle} not named in: {stderr}");
    }

    // Several problems at once are all reported.
    let text = good
        .replace("id = \"CP001\"", "id = \"CP:001\"")
        .replace(&format!("password = \"{PASSWORD}\""), "");
    let (code, stderr) = check_config(&text);
    assert_eq!(code, 78);
    assert!(
        stderr.contains("station.id") && stderr.contains("csms.password"),
        "{stderr}"
    );

    // `run` refuses a bad config with the same exit code.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, good.replace("ws://", "http://")).unwrap();
    let out = std::process::Command::new(support::agent_binary())
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let missing = std::process::Command::new(support::agent_binary())
        .args(["check-config", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(78));
}
