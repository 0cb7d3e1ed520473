//! End-to-end test support: the real `ocpp-agent` binary against the independent Python CSMS
//! (`tests/csms/csms.py`, built on the PyPI package `ocpp`), on ephemeral localhost ports.
#![allow(dead_code)]

pub mod fileserver;
pub mod pki;
pub mod vm;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "0123456789abcdef";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The agent under test: this build's binary, or `OCPP_TEST_AGENT_BIN` (e.g.
/// `scripts/qemu-agent.sh`, which runs the ARMv7 build under qemu-arm).
pub fn agent_binary() -> PathBuf {
    match std::env::var_os("OCPP_TEST_AGENT_BIN") {
        Some(bin) => {
            let bin = PathBuf::from(bin);
            if bin.is_relative() {
                repo().join(bin)
            } else {
                bin
            }
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_ocpp-agent")),
    }
}

/// Which independent CSMS peer the end-to-end tests talk to: `OCPP_PEER=python` (default, the
/// PyPI `ocpp` package, tests/csms/csms.py) or `OCPP_PEER=js` (the npm `ocpp-rpc` package in
/// strict mode, tests/csms-js/csms.js). Both speak the same CLI, log and admin protocol.
pub fn peer_command() -> Option<Command> {
    let peer = std::env::var("OCPP_PEER").unwrap_or_else(|_| "python".into());
    let (program, script, setup) = match peer.as_str() {
        "js" => (
            PathBuf::from("node"),
            repo().join("tests/csms-js/csms.js"),
            repo().join("tests/csms-js/node_modules/ocpp-rpc"),
        ),
        "python" => (
            repo().join(".venv/bin/python"),
            repo().join("tests/csms/csms.py"),
            repo().join(".venv/bin/python"),
        ),
        other => panic!("OCPP_PEER={other}: expected python or js"),
    };
    if setup.exists() {
        let mut command = Command::new(program);
        command.arg(script);
        return Some(command);
    }
    missing_peer(&format!(
        "the {peer} CSMS peer is not installed: run scripts/setup-python.sh and scripts/setup-node.sh"
    ));
    None
}

/// The opt-out of [`missing_peer`].
pub const SKIP_MISSING_PEERS: &str = "OCPP_SKIP_MISSING_PEERS";

/// A peer the test needs (CSMS, file server, ...) is not installed: the test fails, so that a
/// missing peer is not mistaken for a pass. With `OCPP_SKIP_MISSING_PEERS=1` it prints a skip
/// and returns (the caller returns `None` and the test passes without running); under
/// `CI=true` it always fails.
pub fn missing_peer(msg: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let opted_out = std::env::var(SKIP_MISSING_PEERS).is_ok_and(|v| v == "1");
    if ci {
        panic!("{msg} (CI=true: missing peers are never skipped)");
    }
    if !opted_out {
        panic!("{msg} (or set {SKIP_MISSING_PEERS}=1 to skip the tests that need it)");
    }
    eprintln!("SKIPPED ({SKIP_MISSING_PEERS}=1): {msg}");
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The port a child writes into `path`, or `None` if the child exits first.
fn read_port(path: &Path, child: &mut Child, what: &str) -> Option<u16> {
    wait_for(Duration::from_secs(30), what, || {
        if let Ok(Some(_)) = child.try_wait() {
            return Some(None);
        }
        let port = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
        Some(Some(port))
    })
}

/// A running Python CSMS.
pub struct Csms {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    args: Vec<String>,
}

impl Csms {
    /// Starts the CSMS on an ephemeral port with the given extra arguments (e.g.
    /// `["--interval", "2"]`). Basic auth with [`PASSWORD`] is required. `None` only when the
    /// peer is missing and `OCPP_SKIP_MISSING_PEERS=1` (see [`missing_peer`]).
    pub fn start(extra: &[&str]) -> Option<Csms> {
        let mut args = vec!["--password", PASSWORD];
        args.extend_from_slice(extra);
        Self::start_plain(&args)
    }

    /// Like `start`, for OCPP 1.6J (`--ocpp 1.6`, see tests/csms/README.md): the peer requires
    /// the `ocpp1.6` subprotocol and speaks 1.6. The transactionIds it assigns are kept in
    /// `csms-state.json` in its directory (`--state`), so after `restart` it goes on numbering
    /// where it stopped; `csms.admin(json!({"cmd": "transactions"}))` lists them.
    pub fn start_v16(extra: &[&str]) -> Option<Csms> {
        let mut args = vec!["--ocpp", "1.6", "--password", PASSWORD];
        args.extend_from_slice(extra);
        Self::start_in(&args, true)
    }

    /// Like `start`, without requiring Basic auth (security profile 3).
    pub fn start_plain(extra: &[&str]) -> Option<Csms> {
        Self::start_in(extra, false)
    }

    fn start_in(extra: &[&str], state: bool) -> Option<Csms> {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if state {
            args.push("--state".into());
            args.push(dir.path().join("csms-state.json").display().to_string());
        }
        peer_command()?;
        let (child, port, admin_port) =
            Self::spawn(dir.path(), 0, &args).unwrap_or_else(|e| panic!("{e}"));
        Some(Csms {
            child,
            dir,
            port,
            admin_port,
            args,
        })
    }

    fn spawn(dir: &Path, port: u16, extra: &[String]) -> Result<(Child, u16, u16), String> {
        let mut command = peer_command().ok_or("no CSMS peer")?;
        let port_file = dir.join(format!("port-{}", rand_suffix()));
        let admin_file = dir.join(format!("admin-{}", rand_suffix()));
        let mut child = command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--admin-port-file")
            .arg(&admin_file)
            .arg("--log")
            .arg(dir.join("csms.jsonl"))
            .arg("--quiet")
            .args(extra)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.join("csms.stderr")).unwrap())
            .spawn()
            .expect("starting the Python CSMS");
        let early_exit = |dir: &Path| {
            format!(
                "the CSMS exited early: {}",
                std::fs::read_to_string(dir.join("csms.stderr")).unwrap_or_default()
            )
        };
        let port =
            read_port(&port_file, &mut child, "the CSMS port").ok_or_else(|| early_exit(dir))?;
        let admin = read_port(&admin_file, &mut child, "the CSMS admin port")
            .ok_or_else(|| early_exit(dir))?;
        Ok((child, port, admin))
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ocpp", self.port)
    }

    /// Kills the CSMS (connections drop) without restarting it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, with the same log.
    pub fn restart(&mut self) {
        self.stop();
        // The port may take a moment to be free again.
        let (child, _, admin) = wait_for(Duration::from_secs(15), "the CSMS to restart", || {
            Self::spawn(self.dir.path(), self.port, &self.args).ok()
        });
        self.child = child;
        self.admin_port = admin;
    }

    /// Every record of the CSMS's JSON-lines log.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("csms.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The CALLs the station sent for `action`, in order.
    pub fn calls(&self, action: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| {
                r["event"] == "message"
                    && r["dir"] == "in"
                    && r["type"] == 2
                    && r["action"] == action
            })
            .collect()
    }

    /// Every CALLERROR the CSMS sent and every schema violation it found in a reply: a
    /// non-empty list means the station sent something the `ocpp` library (or the peer's own
    /// RPC-level checks) found invalid.
    pub fn errors_sent(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| {
                (r["event"] == "message" && r["dir"] == "out" && r["type"] == 4)
                    || r["event"] == "violation"
            })
            .collect()
    }

    pub fn events(&self, event: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    pub fn wait_calls(&self, action: &str, count: usize, timeout: Duration) -> Vec<Value> {
        wait_for(timeout, &format!("{count} {action} calls"), || {
            let calls = self.calls(action);
            (calls.len() >= count).then_some(calls)
        })
    }

    /// One admin request (see tests/csms/README.md).
    pub fn admin(&self, request: Value) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        writeln!(stream, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("csms.stderr")).unwrap_or_default()
    }
}

impl Drop for Csms {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A xorshift generator: random instants and actions that a seed replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

/// The TransactionEvents the CSMS received, by (transaction id, seqNo), and how many arrived
/// more than once; a message that arrived twice must be identical (`context` names the run).
pub fn transaction_events(
    csms: &Csms,
    context: &str,
) -> (std::collections::BTreeMap<(String, u64), Value>, usize) {
    let mut unique = std::collections::BTreeMap::new();
    let mut duplicates = 0;
    for e in csms
        .calls("TransactionEvent")
        .into_iter()
        .map(|r| r["payload"].clone())
    {
        let key = (
            e["transactionInfo"]["transactionId"]
                .as_str()
                .unwrap()
                .to_owned(),
            e["seqNo"].as_u64().unwrap(),
        );
        if let Some(previous) = unique.get(&key) {
            assert_eq!(previous, &e, "a duplicate must be identical ({context})");
            duplicates += 1;
        } else {
            unique.insert(key, e);
        }
    }
    (unique, duplicates)
}

/// A config for the agent against `url` with two sim EVSEs, quick reconnects, files in `dir`.
pub fn agent_config(dir: &Path, url: &str, extra: &str) -> String {
    format!(
        r#"
[station]
id = "CP001"
vendor = "Example"
model = "AC-2"
serial_number = "SN-0001"

[csms]
url = "{url}"
security_profile = 1
password = "{PASSWORD}"

[storage]
path = "{db}"

[control]
socket = "{sock}"

[log]
filter = "debug"

[variables]
"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1
"OCPPCommCtrlr.RetryBackOffRandomRange" = 1
"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 2
{extra}

[[evse]]
id = 1
plug = {{ backend = "sim" }}

[[evse]]
id = 2
plug = {{ backend = "sim" }}
"#,
        db = dir.join("agent.db").display(),
        sock = dir.join("control.sock").display(),
    )
}

/// `agent_config` for OCPP 1.6J (`[csms] ocpp_version = "1.6"`).
pub fn agent_config_v16(dir: &Path, url: &str, extra: &str) -> String {
    agent_config(dir, url, extra).replacen(
        "security_profile = 1\n",
        "security_profile = 1\nocpp_version = \"1.6\"\n",
        1,
    )
}

/// The real agent binary, running.
pub struct Agent {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Agent {
    /// Starts `ocpp-agent run` with `agent_config(url, extra_variables)`.
    pub fn start(url: &str, extra_variables: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let text = agent_config(dir.path(), url, extra_variables);
        Self::start_with_config(dir, &text, &[])
    }

    /// Like `start`, speaking OCPP 1.6J.
    pub fn start_v16(url: &str, extra_variables: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let text = agent_config_v16(dir.path(), url, extra_variables);
        Self::start_with_config(dir, &text, &[])
    }

    pub fn start_with_config(
        dir: tempfile::TempDir,
        config_text: &str,
        env: &[(&str, &str)],
    ) -> Agent {
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, config_text).unwrap();
        let mut agent = Agent {
            child: None,
            dir,
            config,
        };
        agent.spawn(env);
        agent
    }

    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new(agent_binary())
            .args(["run", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting ocpp-agent");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(agent_binary())
            .args(["ctl", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// `ctl` that must succeed; returns its JSON output.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ctl {args:?} failed: {}\n--- agent log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn status(&self) -> Value {
        self.ctl_json(&["status"])
    }

    /// Waits until `ctl status` answers (the control socket is up).
    pub fn wait_ready(&self) -> Value {
        wait_for(Duration::from_secs(20), "the control socket", || {
            let out = self.ctl(&["status"]);
            out.status
                .success()
                .then(|| serde_json::from_slice(&out.stdout).unwrap())
        })
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let status = wait_for(timeout, "the agent to exit", || child.try_wait().unwrap());
        status.code()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log());
        }
    }
}

/// `ocpp-agent check-config` on a config text; returns (exit code, stderr).
pub fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(agent_binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn admin_call(action: &str, payload: Value) -> Value {
    json!({"cmd": "call", "station": "CP001", "action": action, "payload": payload})
}

/// The CSMS's payload of a successful `admin_call` answer (fails the test on an error answer).
pub fn call_response(answer: Value) -> Value {
    assert_eq!(answer["ok"], true, "{answer}");
    answer["response"].clone()
}

impl Csms {
    /// The CSMS sends `action` to the station; the station's answer (fails the test on an
    /// error).
    pub fn call(&self, action: &str, payload: Value) -> Value {
        call_response(self.admin(admin_call(action, payload)))
    }
}

/// This host's UTC `secs` from now (negative: ago), RFC 3339.
pub fn utc_in_secs(secs: i64) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    ocpp_agent::ocpp::clock::UtcTime::from_unix_millis(ms + secs * 1000).to_rfc3339()
}
