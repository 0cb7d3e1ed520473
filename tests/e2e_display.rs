//! End-to-end display messages (O) and the HMI's view: the real binary against the
//! independent CSMS peers (PyPI `ocpp`, npm `ocpp-rpc` strict, both validating every message
//! against the official schemas). A message with a time window appears in `ctl display` and
//! goes after its end (O01.FR.06/07); `ctl watch` streams a connector's status change and a
//! display message.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{Agent, Csms, agent_binary, utc_in_secs, wait_for};

const T: Duration = Duration::from_secs(30);

/// The contents the screen of `evse` (0: the main display) shows, per `ctl display --json`.
fn shown(agent: &Agent, evse: u64) -> Vec<String> {
    let display = agent.ctl_json(&["display", "--json"]);
    display["screens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["evse"] == evse)
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_message_with_a_time_window_appears_and_goes() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();

    let message = json!({
        "id": 1,
        "priority": "InFront",
        "startDateTime": utc_in_secs(6),
        "endDateTime": utc_in_secs(12),
        "message": {"format": "UTF8", "language": "en", "content": "Free charging tonight"},
    });
    let r = csms.call("SetDisplayMessage", json!({"message": message}));
    assert_eq!(r["status"], "Accepted", "{r}");
    // O01.FR.06: not before its start.
    assert!(shown(&agent, 0).is_empty());
    wait_for(T, "the message on the screens", || {
        (shown(&agent, 1) == ["Free charging tonight"]).then_some(())
    });
    assert_eq!(shown(&agent, 0), ["Free charging tonight"]);
    // For a person.
    let out = agent.ctl(&["display"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EVSE 1: Idle") && text.contains("[InFront] Free charging tonight"),
        "{text}"
    );
    // GetDisplayMessages reports it (O04).
    let r = csms.call("GetDisplayMessages", json!({"requestId": 3, "id": [1]}));
    assert_eq!(r["status"], "Accepted", "{r}");
    let notify = csms.wait_calls("NotifyDisplayMessages", 1, T);
    assert_eq!(notify[0]["payload"]["requestId"], 3);
    assert_eq!(
        notify[0]["payload"]["messageInfo"][0]["message"]["content"],
        "Free charging tonight"
    );
    // O01.FR.07: gone after its end, and removed.
    wait_for(T, "the message to go", || {
        shown(&agent, 1).is_empty().then_some(())
    });
    let r = csms.call("GetDisplayMessages", json!({"requestId": 4}));
    assert_eq!(r["status"], "Unknown", "{r}");
    let r = csms.call("ClearDisplayMessage", json!({"id": 1}));
    assert_eq!(r["status"], "Unknown", "{r}");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}

/// `ctl watch` running, its lines parsed as they come.
struct Watcher {
    child: std::process::Child,
    lines: mpsc::Receiver<Value>,
}

impl Watcher {
    fn start(agent: &Agent) -> Watcher {
        let mut child = Command::new(agent_binary())
            .args(["ctl", "--config"])
            .arg(&agent.config)
            .arg("watch")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next line that `f` accepts (skipping others).
    fn wait(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if f(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("no watch line: {what}"),
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctl_watch_streams_a_status_change_and_a_display_message() {
    let Some(csms) = Csms::start(&["--interval", "60"]) else {
        return;
    };
    let agent = Agent::start(&csms.url(), "");
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();

    let watch = Watcher::start(&agent);
    let first = watch.wait("the whole state", |_| true);
    assert_eq!(first["kind"], "state", "{first}");
    assert_eq!(first["station"], "CP001");
    assert!(first["ts"].is_string());
    assert_eq!(
        first["state"]["status"]["evses"][0]["connectors"][0]["status"],
        "Available"
    );
    assert!(first["state"]["display"]["screens"].is_array());

    agent.ctl_json(&["plug", "1", "in"]);
    let line = watch.wait("EVSE 1's connector occupied", |l| {
        l["kind"] == "connector" && l["evse"] == 1
    });
    assert_eq!(line["connector"], 1, "{line}");
    assert_eq!(line["status"], "Occupied", "{line}");
    assert_eq!(line["plugged"], true, "{line}");

    let message = json!({"id": 9, "priority": "AlwaysFront",
        "display": {"name": "Display", "evse": {"id": 2}},
        "message": {"format": "ASCII", "content": "Out of service soon"}});
    let r = csms.call("SetDisplayMessage", json!({"message": message}));
    assert_eq!(r["status"], "Accepted", "{r}");
    let line = watch.wait("the message on EVSE 2's screen", |l| {
        l["kind"] == "display" && l["evse"] == 2
    });
    let item = &line["display"]["items"][0];
    assert_eq!(item["content"], "Out of service soon", "{line}");
    assert_eq!(item["priority"], "AlwaysFront", "{line}");
    assert_eq!(item["source"], "csms", "{line}");
    assert_eq!(line["display"]["state"], "Idle", "{line}");

    // A transaction on EVSE 1 reaches the stream with its fields.
    agent.ctl_json(&["token", "1", "TOKEN1"]);
    let line = watch.wait("the transaction", |l| {
        l["kind"] == "transaction" && l["evse"] == 1 && l["transaction"].is_object()
    });
    let tx = line["transaction"]["id"].as_str().unwrap().to_owned();
    // The running cost (I02) reaches the stream, and EVSE 1's screen.
    let r = csms.call(
        "CostUpdated",
        json!({"totalCost": 3.75, "transactionId": tx}),
    );
    assert!(r.is_object(), "{r}");
    let line = watch.wait("the running cost", |l| {
        l["kind"] == "price" && l["evse"] == 1 && l["price"]["cost"] == 3.75
    });
    assert_eq!(line["price"]["cost_final"], false, "{line}");
    watch.wait("the cost on EVSE 1's screen", |l| {
        l["kind"] == "display"
            && l["evse"] == 1
            && l["display"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["source"] == "cost" && i["content"] == "Cost so far: 3.75 EUR")
    });
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
}
