//! The journal fields as journald receives them: the real binary, with `$JOURNAL_STREAM` set,
//! sends its entries over the native protocol to `/run/systemd/journal/socket`. The test runs
//! the agent in a private mount namespace (`unshare --mount --map-root-user`) with a tmpfs on
//! `/run`, where a receiver it owns stands in for journald, and checks that every entry names
//! the station in `OCPP_STATION` (now a field of the station task's span, no longer a
//! process-wide constant). Skipped, saying so, where user namespaces are not allowed.

mod support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{agent_binary, agent_config, wait_for};

/// Receives datagrams on the journald socket and appends them, length-prefixed, to a file;
/// exits when its parent (the agent) is gone.
const RECEIVER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
s.settimeout(0.2)
parent = os.getppid()
out = open(sys.argv[1], "ab")
while os.getppid() == parent:
    try:
        d = s.recv(1 << 20)
    except socket.timeout:
        continue
    out.write(len(d).to_bytes(8, "little") + d)
    out.flush()
"#;

/// One entry of the native protocol: `KEY=value\n`, or `KEY\n` + u64 LE length + data + `\n`.
fn parse_entry(mut d: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&rest[8..8 + len]).into_owned();
            fields.push((name, value));
            d = &rest[(8 + len + 1).min(rest.len())..];
        }
    }
    fields
}

fn entries(file: &std::path::Path) -> Vec<Vec<(String, String)>> {
    let data = std::fs::read(file).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 8 {
        let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        if len > 0 {
            out.push(parse_entry(&rest[8..8 + len]));
        }
        rest = &rest[8 + len..];
    }
    out
}

#[test]
fn every_journal_entry_names_the_station() {
    let probe = Command::new("unshare")
        .args(["--mount", "--map-root-user", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no private mount namespace here (unshare --mount --map-root-user)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of the loopback: the agent logs its failed attempts.
    let text = agent_config(dir.path(), "ws://127.0.0.1:9/ocpp", "")
        .replace(r#"id = "CP001""#, r#"id = "CP-JOURNAL-7""#);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, text).unwrap();
    let received = dir.path().join("journal.bin");
    let script = r#"mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal || exit 99
python3 -c "$RECEIVER" "$OUT" &
while [ ! -S /run/systemd/journal/socket ]; do sleep 0.05; done
exec "$AGENT" run --config "$CONFIG""#;
    let mut child = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script])
        .env("RECEIVER", RECEIVER)
        .env("OUT", &received)
        .env("AGENT", agent_binary())
        .env("CONFIG", &config)
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    // The agent answers on its control socket (outside /run), and has tried the CSMS twice.
    wait_for(
        Duration::from_secs(30),
        "two failed connection attempts",
        || {
            let failed = entries(&received)
                .iter()
                .filter(|e| {
                    e.iter()
                        .any(|(k, v)| k == "OCPP_REASON" && v.contains("Connection refused"))
                })
                .count();
            (failed >= 2).then_some(())
        },
    );
    let out = Command::new(agent_binary())
        .args(["ctl", "--config"])
        .arg(&config)
        .arg("status")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // SIGTERM: the process's own line ("SIGTERM: stopping") and the station's "stopped".
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_for(Duration::from_secs(20), "the agent to exit", || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));

    let entries = entries(&received);
    let messages: Vec<&str> = entries
        .iter()
        .flat_map(|e| {
            e.iter()
                .filter(|(k, _)| k == "MESSAGE")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    for expected in ["ocpp-agent started", "SIGTERM: stopping", "stopped"] {
        assert!(messages.contains(&expected), "{expected:?} in {messages:?}");
    }
    for entry in &entries {
        let fields: HashMap<&str, Vec<&str>> =
            entry.iter().fold(HashMap::new(), |mut m, (k, v)| {
                m.entry(k.as_str()).or_default().push(v.as_str());
                m
            });
        assert_eq!(
            fields.get("OCPP_STATION"),
            Some(&vec!["CP-JOURNAL-7"]),
            "one OCPP_STATION on every entry: {entry:?}"
        );
        assert_eq!(fields.get("SYSLOG_IDENTIFIER"), Some(&vec!["ocpp-agent"]));
    }
    // The station's lines come from its task's span, the process's from its own.
    let span_of = |message: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.iter().any(|(k, v)| k == "MESSAGE" && v == message))
            .flat_map(|e| {
                e.iter()
                    .filter(|(k, _)| k == "SPAN_NAME")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    };
    assert_eq!(span_of("ocpp-agent started"), ["station"]);
    assert_eq!(span_of("SIGTERM: stopping"), ["agent"]);
}
