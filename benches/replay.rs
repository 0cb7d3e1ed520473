//! Replay benchmark: how long the real release agent takes to drain a journal of N queued
//! TransactionEvents (default 10,000) to a local CSMS, against the sum of round trips that the
//! one-CALL-in-flight rule makes unavoidable, measured with a minimal client and no agent.
//!
//! `cargo bench --bench replay`. What it does:
//!
//! 1. Builds a journal of N queued TransactionEvents with `Store::apply` (`PersistOp::Enqueue`
//!    batches of 1,000): transactions of `REPLAY_TX_EVENTS` (default 200) events each, Started +
//!    Updated... + Ended, contiguous seqNo, four measurands per meterValue, `offline: true`.
//! 2. Agent run: the Python CSMS (`tests/csms/csms.py --quiet --log ...`, ephemeral port) and
//!    `ocpp-agent run` with a config whose `storage.path` is a copy of that journal (and
//!    `storage.max_queue_bytes` raised, so that no bound thins the queue out). The drain
//!    is timed from the CSMS's JSON-lines log (one wall clock, microseconds): from the first
//!    TransactionEvent received to the CALLRESULT of the N-th sent; also from the agent's spawn,
//!    and until the control socket reports queue depth 0 (polled every 50 ms), confirmed with
//!    `ocpp-agent ctl status`.
//! 3. Client run: the same CSMS, the same settings, and `bench/replay_client.py` sending the same
//!    N payloads one CALL at a time (each waits for its CALLRESULT), timed the same way from the
//!    CSMS log, and by the client's own clock.
//! 4. The ratio agent/client, and per message: the CSMS's own time (CALL in to CALLRESULT out,
//!    from its log) and the time outside the CSMS (CALLRESULT out to next CALL in: the other
//!    side plus the loopback), which is where the agent's cost shows.
//! 5. The same two runs without `--log` (timed from spawn to queue depth 0 and by the client's
//!    clock), for the cost of the CSMS log itself. `REPLAY_NOLOG=0` skips them.
//! 6. Recovery: kill -9 mid-drain, restart, time to BootNotification and to the next
//!    TransactionEvent, and a check that every event arrived (at least once, in order).
//!
//! Env: `REPLAY_EVENTS` (10000), `REPLAY_CLIENT_EVENTS` (all N), `REPLAY_TX_EVENTS` (200),
//! `REPLAY_ROUNDS` (3; medians are reported), `REPLAY_NOLOG` (1), `REPLAY_RECOVERY` (1),
//! `REPLAY_BENCH_DIR` (default `<target>/tmp/replay-bench`, a real disk: the journal fsyncs),
//! `REPLAY_AGENT_BIN` (default: the binary cargo builds for benches, `CARGO_BIN_EXE_ocpp-agent`;
//! it is built with the bench profile, which inherits the release one). The CSMS is the venv's
//! Python (`scripts/setup-python.sh` is run when `.venv` is missing). Files of the last run are
//! kept in the bench directory (printed); every process started is stopped on exit or panic,
//! and dies with the bench (PR_SET_PDEATHSIG) if it is killed.
//!
//! Also printed: CPU per message of the agent, the client and the CSMS (on a CPU, and runnable
//! but waiting for one, from schedstat: on a shared machine the second one explains most of
//! the spread), the agent's VmHWM/RssAnon at the end of the drain, the time from spawn to the
//! BootNotification with the full journal. The journal copy is synced before the agent starts.
//!
//! Without `--bench` (`cargo test --all-targets`, nextest) it is a quick smoke run: 300 events,
//! one round, no no-log runs, no recovery, in a directory of its own that is removed when it
//! passes.

mod common;
use common::env_usize;

use ocpp_agent::ocpp::clock::UtcTime;
use ocpp_agent::ocpp::persist::{EventKind, PersistOp, QueuedMessage, QueuedMeta};
use ocpp_agent::shell::store::Store;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PASSWORD: &str = "0123456789abcdef";
const STATION: &str = "CP001";

unsafe extern "C" {
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}
const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process, stopped (SIGTERM, then SIGKILL after 5 s) when dropped, and killed by the
/// kernel if the bench dies first.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL as u64, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { child, name }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        unsafe { kill(self.pid(), SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU accounting of a process, seconds: user and system time (/proc/PID/stat, 10 ms ticks),
/// on-CPU time and time spent runnable but waiting for a CPU (sum of the threads'
/// /proc/PID/task/*/schedstat, ns).
#[derive(Clone, Copy, Default)]
struct Cpu {
    user: f64,
    sys: f64,
    run: f64,
    wait: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            user: self.user - o.user,
            sys: self.sys - o.sys,
            run: self.run - o.run,
            wait: self.wait - o.wait,
        }
    }
}

fn cpu_of(pid: i32) -> Cpu {
    let mut cpu = Cpu::default();
    if let Some((u, s)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some((f[11].parse::<f64>().ok()?, f[12].parse::<f64>().ok()?))
        })
    {
        cpu.user = u / 100.0;
        cpu.sys = s / 100.0;
    }
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                let f: Vec<f64> = s.split(' ').filter_map(|v| v.trim().parse().ok()).collect();
                if f.len() >= 2 {
                    cpu.run += f[0] / 1e9;
                    cpu.wait += f[1] / 1e9;
                }
            }
        }
    }
    cpu
}

/// A `/proc/PID/status` value in kB.
fn status_kb(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The queued events

/// UTC milliseconds as RFC 3339 with milliseconds and Z, as the agent writes timestamps.
fn rfc3339(ms: i64) -> String {
    UtcTime::from_unix_millis(ms).to_rfc3339()
}

/// Parses the CSMS log's `t` ("2026-11-26T08:19:00.123456Z") to Unix seconds.
fn parse_t(t: &str) -> Option<f64> {
    let micros: f64 = t
        .get(20..t.len() - 1)
        .map_or(Ok(0.0), |f| format!("0.{f}").parse())
        .ok()?;
    let secs = UtcTime::parse_rfc3339(t)?.unix_millis().div_euclid(1000);
    Some(secs as f64 + micros)
}

/// One meterValue with the four measurands the agent can sample, as `ocpp::meter` builds it.
fn meter_value(ms: i64, context: &str, energy_wh: f64, power_w: f64) -> Value {
    let current = (power_w / (3.0 * 230.0) * 1000.0).round() / 1000.0;
    json!({
        "timestamp": rfc3339(ms),
        "sampledValue": [
            {"value": energy_wh, "context": context, "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "Wh"}},
            {"value": power_w, "context": context, "measurand": "Power.Active.Import",
             "unitOfMeasure": {"unit": "W"}},
            {"value": current, "context": context, "measurand": "Current.Import",
             "unitOfMeasure": {"unit": "A"}},
            {"value": 230.0, "context": context, "measurand": "Voltage",
             "unitOfMeasure": {"unit": "V"}},
        ],
    })
}

/// The N queued messages: transactions of `per_tx` events (Started, Updated..., Ended), each on
/// EVSE 1 or 2, one event a minute, created while offline.
fn queued_events(n: usize, per_tx: usize) -> Vec<QueuedMessage> {
    let per_tx = per_tx.max(2);
    let t0 = (wall() * 1000.0) as i64 - n as i64 * 60_000 - 3_600_000;
    let token = json!({"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"});
    let mut out = Vec::with_capacity(n);
    let mut ms = t0;
    let mut tx_no = 0u64;
    while out.len() < n {
        tx_no += 1;
        let tx_id = format!("5f1c{tx_no:04x}-8a2b-4c3d-9e4f-b0a1c2d3e4f5");
        let evse = 1 + (tx_no % 2) as u32;
        let events = per_tx.min(n - out.len()).max(1);
        let (mut energy, power) = (10_000.0 + tx_no as f64 * 1000.0, 11_040.0);
        for seq in 0..events {
            let kind = if seq == 0 {
                EventKind::Started
            } else if seq + 1 == events {
                EventKind::Ended
            } else {
                EventKind::Updated
            };
            ms += 60_000;
            energy = ((energy + power / 60.0) * 1000.0_f64).round() / 1000.0;
            let spent = seq as u64 * 60;
            let mut payload = match kind {
                EventKind::Started => json!({
                    "eventType": "Started", "timestamp": rfc3339(ms), "triggerReason": "Authorized",
                    "seqNo": seq,
                    "transactionInfo": {"transactionId": tx_id, "chargingState": "Charging"},
                    "idToken": token,
                    "evse": {"id": evse, "connectorId": 1},
                    "meterValue": [meter_value(ms, "Transaction.Begin", energy, power)],
                }),
                EventKind::Ended => json!({
                    "eventType": "Ended", "timestamp": rfc3339(ms), "triggerReason": "EVCommunicationLost",
                    "seqNo": seq,
                    "transactionInfo": {"transactionId": tx_id, "chargingState": "Idle",
                                        "timeSpentCharging": spent, "stoppedReason": "EVDisconnected"},
                    "meterValue": [meter_value(ms, "Transaction.End", energy, 0.0)],
                }),
                _ => json!({
                    "eventType": "Updated", "timestamp": rfc3339(ms), "triggerReason": "MeterValuePeriodic",
                    "seqNo": seq,
                    "transactionInfo": {"transactionId": tx_id, "chargingState": "Charging",
                                        "timeSpentCharging": spent},
                    "meterValue": [meter_value(ms, "Sample.Periodic", energy, power)],
                }),
            };
            payload["offline"] = json!(true);
            let queue_seq = out.len() as u64 + 1;
            out.push(QueuedMessage {
                meta: QueuedMeta {
                    protocol: ocpp_agent::ocpp::v201::PROTOCOL.to_owned(),
                    queue_seq,
                    action: "TransactionEvent".into(),
                    tx_id: Some(tx_id.clone()),
                    kind,
                    attempts: 0,
                    bytes: payload.to_string().len() as u64,
                    created_ms: ms,
                    boot_id: 0x5EED_0000_0000_0001,
                    time_trusted: true,
                },
                payload,
            });
        }
    }
    out
}

/// Writes the journal (`Store::apply` of Enqueue batches) and the payloads as JSON lines for
/// the client. Returns (bytes of payloads, file size, seconds to write).
fn build_journal(db: &Path, payloads: &Path, events: &[QueuedMessage]) -> (u64, u64, f64) {
    remove_db(db);
    let start = Instant::now();
    {
        let mut store = Store::open(db).expect("open the store");
        for chunk in events.chunks(1000) {
            let ops: Vec<PersistOp> = chunk.iter().cloned().map(PersistOp::Enqueue).collect();
            store.apply(&ops).expect("apply");
        }
        let loaded = store.load().expect("load");
        assert_eq!(loaded.queue.len(), events.len());
    } // closed: WAL checkpointed into the main file
    let took = start.elapsed().as_secs_f64();
    let mut f = std::io::BufWriter::new(std::fs::File::create(payloads).unwrap());
    for m in events {
        writeln!(f, "{}", m.payload).unwrap();
    }
    f.flush().unwrap();
    let size = std::fs::metadata(db).map_or(0, |m| m.len());
    (events.iter().map(|m| m.meta.bytes).sum(), size, took)
}

/// Copies the journal template and syncs the copy and its directory, so that the agent's first
/// fsync does not also write back the 10 MB just copied (which would count in its start-up).
fn copy_synced(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::File::open(to).unwrap().sync_all().unwrap();
    std::fs::File::open(to.parent().unwrap())
        .unwrap()
        .sync_all()
        .unwrap();
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

// ---------------------------------------------------------------------------------------------
// The CSMS and its log

struct Setup {
    repo: PathBuf,
    python: PathBuf,
    agent: PathBuf,
    dir: PathBuf,
}

struct Csms {
    proc: Proc,
    port: u16,
    log: Option<PathBuf>,
}

fn start_csms(s: &Setup, dir: &Path, with_log: bool) -> Csms {
    let port_file = dir.join("csms.port");
    let log = dir.join("csms.jsonl");
    let _ = std::fs::remove_file(&port_file);
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(&s.python);
    cmd.arg(s.repo.join("tests/csms/csms.py"))
        .args(["--host", "127.0.0.1", "--port", "0", "--port-file"])
        .arg(&port_file)
        .args(["--password", PASSWORD, "--quiet"])
        // No heartbeats and no WebSocket pings during the drain.
        .args(["--interval", "3600", "--ping-interval", "0"]);
    if with_log {
        cmd.arg("--log").arg(&log);
    }
    let mut proc = Proc::spawn("the CSMS", &mut cmd, &dir.join("csms.stderr"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Some(p) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break p;
        }
        if let Some(st) = proc.exited() {
            panic!(
                "the CSMS exited ({st}): {}",
                std::fs::read_to_string(dir.join("csms.stderr")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the CSMS did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    Csms {
        proc,
        port,
        log: with_log.then_some(log),
    }
}

/// The records of the CSMS log that matter here.
#[derive(Default)]
struct Log {
    /// TransactionEvent CALLs received: (t, message id, transactionId, seqNo, offline).
    te_in: Vec<(f64, String, String, u64, bool)>,
    /// CALLRESULTs sent to TransactionEvents: message id -> t.
    te_out: HashMap<String, f64>,
    /// Times of the BootNotification CALLs received.
    boots: Vec<f64>,
    /// CALLERRORs sent and schema violations found.
    errors: usize,
    lines: usize,
    bytes: u64,
}

fn read_log(path: &Path) -> Log {
    let f = std::fs::File::open(path).unwrap();
    let mut log = Log {
        bytes: f.metadata().map_or(0, |m| m.len()),
        ..Log::default()
    };
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        log.lines += 1;
        let Ok(r) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if r["event"] == "violation" {
            log.errors += 1;
        }
        if r["event"] != "message" {
            continue;
        }
        let t = r["t"].as_str().and_then(parse_t).unwrap_or(f64::NAN);
        let id = r["id"].as_str().unwrap_or_default().to_owned();
        match (r["dir"].as_str(), r["type"].as_u64(), r["action"].as_str()) {
            (Some("in"), Some(2), Some("TransactionEvent")) => {
                let p = &r["payload"];
                log.te_in.push((
                    t,
                    id,
                    p["transactionInfo"]["transactionId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    p["seqNo"].as_u64().unwrap_or(u64::MAX),
                    p["offline"] == true,
                ));
            }
            (Some("in"), Some(2), Some("BootNotification")) => log.boots.push(t),
            (Some("out"), Some(3), Some("TransactionEvent")) => {
                log.te_out.insert(id, t);
            }
            (Some("out"), Some(4), _) => log.errors += 1,
            _ => {}
        }
    }
    log
}

/// The drain as the CSMS log shows it.
struct Drain {
    /// First TransactionEvent in, CALLRESULT to the last one out (Unix s).
    first_in: f64,
    last_out: f64,
    /// Per message: CSMS time (CALL in -> CALLRESULT out) and time outside the CSMS
    /// (CALLRESULT out -> next CALL in), seconds.
    csms: Vec<f64>,
    outside: Vec<f64>,
}

impl Drain {
    fn seconds(&self) -> f64 {
        self.last_out - self.first_in
    }
}

fn drain_of(log: &Log, from: usize) -> Drain {
    let ins = &log.te_in[from..];
    let out_t = |id: &str| log.te_out.get(id).copied().unwrap_or(f64::NAN);
    let csms: Vec<f64> = ins.iter().map(|(t, id, ..)| out_t(id) - t).collect();
    let outside: Vec<f64> = ins.windows(2).map(|w| w[1].0 - out_t(&w[0].1)).collect();
    Drain {
        first_in: ins.first().map_or(f64::NAN, |r| r.0),
        last_out: ins.last().map_or(f64::NAN, |r| out_t(&r.1)),
        csms,
        outside,
    }
}

/// Every (transactionId, seqNo) of `expected` arrived, in order; returns the number of
/// duplicate deliveries (at-least-once after a kill).
fn check_delivery(log: &Log, expected: &[QueuedMessage], what: &str) -> usize {
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for (_, _, tx, seq, offline) in &log.te_in {
        assert!(*offline, "{what}: an event arrived without offline: true");
        if seen.insert((tx.clone(), *seq)) {
            order.push((tx.clone(), *seq));
        }
    }
    let want: Vec<(String, u64)> = expected
        .iter()
        .map(|m| {
            (
                m.payload["transactionInfo"]["transactionId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                m.payload["seqNo"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order.len(),
        want.len(),
        "{what}: the CSMS got {} distinct events, expected {}",
        order.len(),
        want.len()
    );
    assert!(order == want, "{what}: events arrived out of order");
    assert_eq!(
        log.errors, 0,
        "{what}: the CSMS sent CALLERRORs or found violations"
    );
    log.te_in.len() - want.len()
}

// ---------------------------------------------------------------------------------------------
// The agent

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"# written by benches/replay.rs
[station]
id = "{STATION}"
vendor = "Example"
model = "AC-2"
serial_number = "SN-0001"

[csms]
url = "ws://127.0.0.1:{port}/ocpp"
security_profile = 1
password = "{PASSWORD}"

[storage]
path = "{db}"
# The queue was built directly, not by the core: no bound may thin it out.
max_queue_bytes = 1073741824

[control]
socket = "{sock}"

[log]
filter = "info"

[variables]
"OCPPCommCtrlr.WebSocketPingInterval" = 0
"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1
"OCPPCommCtrlr.RetryBackOffRandomRange" = 1

[[evse]]
id = 1
plug = {{ backend = "sim" }}

[[evse]]
id = 2
plug = {{ backend = "sim" }}
"#,
            db = dir.join("agent.db").display(),
            sock = dir.join("control.sock").display(),
        ),
    )
    .unwrap();
    cfg
}

fn spawn_agent(s: &Setup, cfg: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(&s.agent);
    cmd.args(["run", "--config"]).arg(cfg);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k == "RUST_LOG" || k == "NOTIFY_SOCKET" || k.starts_with("OCPP_AGENT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("NO_COLOR", "1");
    Proc::spawn("the agent", &mut cmd, log)
}

/// `{"cmd":"status"}` on the control socket (what `ocpp-agent ctl status` sends), without
/// starting a process: cheap enough to poll every 50 ms.
fn status(sock: &Path) -> Option<Value> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"{\"cmd\":\"status\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).ok()?;
    let v: Value = serde_json::from_str(&line).ok()?;
    Some(v["result"].clone())
}

/// Polls the control socket every 50 ms until the agent is accepted with an empty queue.
/// `until_depth` stops earlier, once the depth is at most that. Returns when it was seen.
fn wait_queue(agent: &mut Proc, sock: &Path, until_depth: usize, timeout: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if let Some(st) = agent.exited() {
            panic!("the agent exited ({st})");
        }
        if let Some(v) = status(sock) {
            let depth = v["queue"]["depth"].as_u64().unwrap_or(u64::MAX);
            if v["registration"] == "accepted" && depth <= until_depth as u64 {
                return Instant::now();
            }
        }
        assert!(
            start.elapsed() < timeout,
            "the queue did not drain within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct AgentRun {
    /// Agent spawn (Unix s), the time queue depth 0 was seen (Unix s).
    spawn: f64,
    empty_seen: f64,
    log: Option<Log>,
    drain: Option<Drain>,
    /// The agent from its spawn to the empty queue; the CSMS over the same span.
    cpu: Cpu,
    csms_cpu: Cpu,
    hwm_kb: u64,
    rss_kb: u64,
    anon_kb: u64,
}

fn agent_run(s: &Setup, template: &Path, n: usize, with_log: bool, name: &str) -> AgentRun {
    let dir = s.dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    copy_synced(template, &dir.join("agent.db"));
    let mut csms = start_csms(s, &dir, with_log);
    let cfg = write_config(&dir, csms.port);
    let csms_cpu0 = cpu_of(csms.proc.pid());
    let spawn = wall();
    let t_spawn = Instant::now();
    let mut agent = spawn_agent(s, &cfg, &dir.join("agent.log"));
    let timeout = Duration::from_secs(120 + n as u64 / 50);
    let seen = wait_queue(&mut agent, &dir.join("control.sock"), 0, timeout);
    let empty_seen = spawn + (seen - t_spawn).as_secs_f64();
    let cpu = cpu_of(agent.pid());
    let csms_cpu = cpu_of(csms.proc.pid()) - csms_cpu0;
    let (hwm_kb, rss_kb, anon_kb) = (
        status_kb(agent.pid(), "VmHWM"),
        status_kb(agent.pid(), "VmRSS"),
        status_kb(agent.pid(), "RssAnon"),
    );
    // The same, through the ctl command.
    let ctl = Command::new(&s.agent)
        .args(["ctl", "--config"])
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    let ctl_out: Value = serde_json::from_slice(&ctl.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl status: {e}: {}{}",
            String::from_utf8_lossy(&ctl.stdout),
            String::from_utf8_lossy(&ctl.stderr)
        )
    });
    let depth = ctl_out
        .pointer("/queue/depth")
        .or_else(|| ctl_out.pointer("/result/queue/depth"));
    assert_eq!(
        depth.and_then(Value::as_u64),
        Some(0),
        "ctl status: {ctl_out}"
    );
    std::fs::write(dir.join("ctl-status.json"), &ctl.stdout).unwrap();
    agent.stop();
    csms.proc.stop();
    let (log, drain) = match &csms.log {
        Some(path) => {
            let log = read_log(path);
            let drain = drain_of(&log, 0);
            (Some(log), Some(drain))
        }
        None => (None, None),
    };
    AgentRun {
        spawn,
        empty_seen,
        log,
        drain,
        cpu,
        csms_cpu,
        hwm_kb,
        rss_kb,
        anon_kb,
    }
}

struct ClientRun {
    /// The client's own clock: first CALL sent to the last CALLRESULT received.
    own_s: f64,
    think_s: f64,
    /// The client's loop: getrusage user+sys, on-CPU and run-queue wait of its thread.
    cpu_s: f64,
    run_s: f64,
    wait_s: f64,
    csms_cpu: Cpu,
    drain: Option<Drain>,
}

fn client_run(s: &Setup, payloads: &Path, n: usize, with_log: bool, name: &str) -> ClientRun {
    let dir = s.dir.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csms = start_csms(s, &dir, with_log);
    let csms_cpu0 = cpu_of(csms.proc.pid());
    let result = dir.join("client.json");
    let mut cmd = Command::new(&s.python);
    cmd.arg(s.repo.join("bench/replay_client.py"))
        .arg("--url")
        .arg(format!("ws://127.0.0.1:{}/ocpp", csms.port))
        .args(["--station", STATION, "--password", PASSWORD, "--events"])
        .arg(payloads)
        .arg("--count")
        .arg(n.to_string())
        .arg("--out")
        .arg(&result);
    let mut client = Proc::spawn("the client", &mut cmd, &dir.join("client.log"));
    let exit = client.child.wait().unwrap();
    assert!(
        exit.success(),
        "bench/replay_client.py failed ({exit}): {}",
        std::fs::read_to_string(dir.join("client.log")).unwrap_or_default()
    );
    let csms_cpu = cpu_of(csms.proc.pid()) - csms_cpu0;
    csms.proc.stop();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let drain = csms.log.as_ref().map(|p| {
        let log = read_log(p);
        assert_eq!(log.te_in.len(), n, "client run: the CSMS log misses events");
        assert_eq!(log.errors, 0, "client run: CALLERRORs or violations");
        drain_of(&log, 0)
    });
    ClientRun {
        own_s: r["first_send_to_last_result_s"].as_f64().unwrap(),
        think_s: r["think_s"].as_f64().unwrap(),
        cpu_s: r["cpu_s"].as_f64().unwrap(),
        run_s: r["run_s"].as_f64().unwrap_or(f64::NAN),
        wait_s: r["runqueue_wait_s"].as_f64().unwrap_or(f64::NAN),
        csms_cpu,
        drain,
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn mean(v: &[f64]) -> f64 {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "median {:.2}, min {min:.2}, max {max:.2}; runs: {}",
        median(v),
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn us(s: f64) -> String {
    format!("{:.0} us", s * 1e6)
}

fn per_msg_line(what: &str, d: &Drain) -> String {
    format!(
        "{what}: CSMS time median {} (mean {}, p99 {}); outside the CSMS median {} (mean {}, p99 {}, max {})",
        us(median(&d.csms)),
        us(mean(&d.csms)),
        us(pct(&d.csms, 0.99)),
        us(median(&d.outside)),
        us(mean(&d.outside)),
        us(pct(&d.outside, 0.99)),
        us(pct(&d.outside, 1.0)),
    )
}

/// The mount holding `dir`: (mount point, type).
fn filesystem_of(dir: &Path) -> Option<(String, String)> {
    let dir = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?.to_owned();
            let fstype = right.split(' ').next()?.to_owned();
            dir.starts_with(&mount_point)
                .then_some((mount_point, fstype))
        })
        .max_by_key(|(m, _)| m.len())
}

fn setup(quick: bool) -> Option<Setup> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let agent = std::env::var_os("REPLAY_AGENT_BIN")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_ocpp-agent").map(PathBuf::from))
        .unwrap_or_else(|| target_tmp.parent().unwrap().join("release/ocpp-agent"));
    if !agent.exists() {
        println!(
            "building {}: cargo build --release --bin ocpp-agent",
            agent.display()
        );
        let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "--bin", "ocpp-agent"])
            .env("CARGO_TARGET_DIR", target_tmp.parent().unwrap())
            .current_dir(&repo)
            .status()
            .expect("running cargo");
        assert!(
            st.success() && agent.exists(),
            "could not build {}",
            agent.display()
        );
    }
    let mut python = repo.join(".venv/bin/python");
    if !python.exists() {
        if quick {
            let msg = "the Python CSMS peer is not installed: run scripts/setup-python.sh";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            println!("SKIPPED: {msg}");
            return None;
        }
        println!("setting up the CSMS's venv: scripts/setup-python.sh");
        let out = Command::new(repo.join("scripts/setup-python.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/setup-python.sh");
        assert!(out.status.success(), "scripts/setup-python.sh failed");
        python = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default(),
        );
    }
    let dir = std::env::var_os("REPLAY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The smoke run (tests) gets its own directory, removed when it passes.
            target_tmp.join(if quick {
                format!("replay-smoke-{}", std::process::id())
            } else {
                "replay-bench".into()
            })
        });
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    Some(Setup {
        repo,
        python,
        agent,
        dir,
    })
}

fn main() {
    let Some(quick) = common::harness("replay") else {
        return;
    };
    let n = env_usize("REPLAY_EVENTS", if quick { 300 } else { 10_000 }).max(2);
    let n_client = env_usize("REPLAY_CLIENT_EVENTS", n).clamp(2, n);
    let per_tx = env_usize("REPLAY_TX_EVENTS", 200);
    let rounds = env_usize("REPLAY_ROUNDS", if quick { 1 } else { 3 }).max(1);
    let nolog = env_usize("REPLAY_NOLOG", usize::from(!quick)) != 0;
    let recovery = env_usize("REPLAY_RECOVERY", usize::from(!quick)) != 0;
    let Some(s) = setup(quick) else { return };

    let fs = filesystem_of(&s.dir).map_or("file system unknown".into(), |(m, t)| {
        format!("{t}, mounted at {m}")
    });
    println!("files in {} ({fs}); kept after the run", s.dir.display());
    if fs.starts_with("tmpfs") {
        println!("WARNING: tmpfs does not fsync: set REPLAY_BENCH_DIR to a real disk");
    }
    println!("agent: {}", s.agent.display());
    println!(
        "CSMS: {} tests/csms/csms.py --quiet --interval 3600 --ping-interval 0 [--log FILE]",
        s.python.display()
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {} (2 cores are shared with other work: medians of {rounds} rounds)",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );

    // 1. The journal.
    let events = queued_events(n, per_tx);
    let template = s.dir.join("template.db");
    let payloads = s.dir.join("payloads.jsonl");
    let (bytes, size, took) = build_journal(&template, &payloads, &events);
    let txs = events
        .iter()
        .filter(|m| m.meta.kind == EventKind::Started)
        .count();
    println!(
        "journal: {n} queued TransactionEvents ({txs} transactions of up to {per_tx}: Started, Updated..., Ended; \
         4 measurands; offline: true), {:.0} B per payload on average, {:.1} MB of payloads, {:.1} MB file; \
         written by Store::apply in batches of 1000 in {:.2} s",
        bytes as f64 / n as f64,
        bytes as f64 / 1e6,
        size as f64 / 1e6,
        took
    );
    println!();

    // 2-5. Rounds of agent and client runs, alternating which goes first.
    let mut agent_runs = Vec::new();
    let mut client_runs = Vec::new();
    let mut agent_nolog = Vec::new();
    let mut client_nolog = Vec::new();
    for r in 0..rounds {
        let run_agent = |log: bool| {
            let tag = if log { "log" } else { "nolog" };
            let a = agent_run(&s, &template, n, log, &format!("agent-{tag}-{r}"));
            if let Some(l) = &a.log {
                check_delivery(l, &events, "agent run");
            }
            a
        };
        let run_client = |log: bool| {
            let tag = if log { "log" } else { "nolog" };
            client_run(&s, &payloads, n_client, log, &format!("client-{tag}-{r}"))
        };
        if r % 2 == 0 {
            agent_runs.push(run_agent(true));
            client_runs.push(run_client(true));
        } else {
            client_runs.push(run_client(true));
            agent_runs.push(run_agent(true));
        }
        let (a, c) = (agent_runs.last().unwrap(), client_runs.last().unwrap());
        let (ad, cd) = (a.drain.as_ref().unwrap(), c.drain.as_ref().unwrap());
        let per_a = ad.seconds() / n as f64;
        let per_c = cd.seconds() / n_client as f64;
        println!(
            "round {r}: agent drain {:.2} s ({} per message), client {:.2} s for {n_client} ({}), ratio {:.3}",
            ad.seconds(),
            us(per_a),
            cd.seconds(),
            us(per_c),
            per_a / per_c
        );
        if nolog {
            if r % 2 == 0 {
                agent_nolog.push(run_agent(false));
                client_nolog.push(run_client(false));
            } else {
                client_nolog.push(run_client(false));
                agent_nolog.push(run_agent(false));
            }
            let (a, c) = (agent_nolog.last().unwrap(), client_nolog.last().unwrap());
            println!(
                "         without the CSMS log: agent spawn -> queue empty {:.2} s, client {:.2} s (its own clock)",
                a.empty_seen - a.spawn,
                c.own_s
            );
        }
    }

    // Figures.
    let nf = n as f64;
    let ncf = n_client as f64;
    let ms = |v: &[f64]| v.iter().map(|x| x * 1e3).collect::<Vec<_>>();
    let a_drain: Vec<f64> = agent_runs
        .iter()
        .map(|a| a.drain.as_ref().unwrap().seconds())
        .collect();
    let a_from_spawn: Vec<f64> = agent_runs
        .iter()
        .map(|a| a.drain.as_ref().unwrap().last_out - a.spawn)
        .collect();
    let a_empty: Vec<f64> = agent_runs.iter().map(|a| a.empty_seen - a.spawn).collect();
    let a_boot: Vec<f64> = agent_runs
        .iter()
        .map(|a| a.log.as_ref().unwrap().boots[0] - a.spawn)
        .collect();
    let a_first: Vec<f64> = agent_runs
        .iter()
        .map(|a| a.drain.as_ref().unwrap().first_in - a.spawn)
        .collect();
    let c_drain: Vec<f64> = client_runs
        .iter()
        .map(|c| c.drain.as_ref().unwrap().seconds())
        .collect();
    let c_own: Vec<f64> = client_runs.iter().map(|c| c.own_s).collect();
    let per_a: Vec<f64> = a_drain.iter().map(|d| d / nf).collect();
    let per_c: Vec<f64> = c_drain.iter().map(|d| d / ncf).collect();
    let ratios: Vec<f64> = per_a.iter().zip(&per_c).map(|(a, c)| a / c).collect();
    let pool = |runs: &[&Drain]| Drain {
        first_in: 0.0,
        last_out: 0.0,
        csms: runs.iter().flat_map(|d| d.csms.iter().copied()).collect(),
        outside: runs
            .iter()
            .flat_map(|d| d.outside.iter().copied())
            .collect(),
    };
    let a_all = pool(
        &agent_runs
            .iter()
            .map(|a| a.drain.as_ref().unwrap())
            .collect::<Vec<_>>(),
    );
    let c_all = pool(
        &client_runs
            .iter()
            .map(|c| c.drain.as_ref().unwrap())
            .collect::<Vec<_>>(),
    );
    // Per message, microseconds.
    let per = |v: Vec<f64>, n: f64| v.into_iter().map(|x| x / n * 1e6).collect::<Vec<f64>>();
    let a_run = per(agent_runs.iter().map(|a| a.cpu.run).collect(), nf);
    let a_user = per(agent_runs.iter().map(|a| a.cpu.user).collect(), nf);
    let a_sys = per(agent_runs.iter().map(|a| a.cpu.sys).collect(), nf);
    let a_wait = per(agent_runs.iter().map(|a| a.cpu.wait).collect(), nf);
    let c_run = per(client_runs.iter().map(|c| c.run_s).collect(), ncf);
    let c_wait = per(client_runs.iter().map(|c| c.wait_s).collect(), ncf);
    let c_rusage = per(client_runs.iter().map(|c| c.cpu_s).collect(), ncf);
    let think = per(client_runs.iter().map(|c| c.think_s).collect(), ncf);
    let csms_a_run = per(agent_runs.iter().map(|a| a.csms_cpu.run).collect(), nf);
    let csms_a_wait = per(agent_runs.iter().map(|a| a.csms_cpu.wait).collect(), nf);
    let csms_c_run = per(client_runs.iter().map(|c| c.csms_cpu.run).collect(), ncf);
    let csms_c_wait = per(client_runs.iter().map(|c| c.csms_cpu.wait).collect(), ncf);
    let log_bytes = agent_runs[0].log.as_ref().map_or(0, |l| l.bytes);

    println!();
    println!(
        "Results: medians of {rounds} rounds (min, max, each run); CSMS log on; times from the CSMS \
         log's timestamps unless said otherwise"
    );
    println!(
        "(a) agent: drain of {n} queued TransactionEvents, first one received -> CALLRESULT to the \
         last one sent: {} s",
        spread(&a_drain)
    );
    println!("    per message: {} ms", spread(&ms(&per_a)));
    println!(
        "    from the agent's spawn: to the last CALLRESULT {} s; to queue depth 0 on the control \
         socket (50 ms polls, then `ocpp-agent ctl status` confirms 0) {} s",
        spread(&a_from_spawn),
        spread(&a_empty)
    );
    println!(
        "    from the agent's spawn: to the BootNotification received {} ms; to the first \
         TransactionEvent {} ms",
        spread(&ms(&a_boot)),
        spread(&ms(&a_first))
    );
    println!(
        "(b) client only (bench/replay_client.py, no agent), {n_client} CALLs one at a time, same \
         span: {} s (its own clock: {} s)",
        spread(&c_drain),
        spread(&c_own)
    );
    println!("    per message: {} ms", spread(&ms(&per_c)));
    println!(
        "(c) ratio agent/client, time per message: {:.3} (of the medians); per round: {}",
        median(&per_a) / median(&per_c),
        ratios
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "    the agent adds {} per message to the {} that the round trip and the CSMS take",
        us(median(&per_a) - median(&per_c)),
        us(median(&per_c))
    );
    println!("(d) per message, every message of every round (CSMS log timestamps):");
    println!("    {}", per_msg_line("agent run ", &a_all));
    println!("    {}", per_msg_line("client run", &c_all));
    println!(
        "    -> the agent's side of a round trip (CALLRESULT out -> next CALL in, minus the \
         client's): {} median, {} mean",
        us(median(&a_all.outside) - median(&c_all.outside)),
        us(mean(&a_all.outside) - mean(&c_all.outside))
    );
    println!("(e) CPU per message, us (schedstat: on a CPU / runnable but waiting for one):");
    println!(
        "    agent (spawn to empty queue, start-up included): on-CPU {} (user {}, system {}, \
         10 ms ticks); waiting for a CPU {}",
        spread(&a_run),
        spread(&a_user),
        spread(&a_sys),
        spread(&a_wait)
    );
    println!(
        "    client (its loop): on-CPU {} (getrusage user+sys {}); waiting for a CPU {}; its think time (CALLRESULT in -> \
         next CALL out) {}",
        spread(&c_run),
        spread(&c_rusage),
        spread(&c_wait),
        spread(&think)
    );
    println!(
        "    CSMS: on-CPU {} with the agent, {} with the client; waiting for a CPU {} with the \
         agent, {} with the client",
        spread(&csms_a_run),
        spread(&csms_c_run),
        spread(&csms_a_wait),
        spread(&csms_c_wait)
    );
    println!(
        "(f) agent memory at the end of the drain: VmHWM {} kB (runs: {}), VmRSS {} kB, RssAnon {} kB",
        median(
            &agent_runs
                .iter()
                .map(|a| a.hwm_kb as f64)
                .collect::<Vec<_>>()
        ),
        agent_runs
            .iter()
            .map(|a| a.hwm_kb.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        median(
            &agent_runs
                .iter()
                .map(|a| a.rss_kb as f64)
                .collect::<Vec<_>>()
        ),
        median(
            &agent_runs
                .iter()
                .map(|a| a.anon_kb as f64)
                .collect::<Vec<_>>()
        ),
    );
    if nolog {
        let an: Vec<f64> = agent_nolog.iter().map(|a| a.empty_seen - a.spawn).collect();
        let cn: Vec<f64> = client_nolog.iter().map(|c| c.own_s).collect();
        println!(
            "(g) the CSMS log: {:.1} MB of JSON lines per agent run (one write + flush per \
             record, no fsync); the same runs without --log:",
            log_bytes as f64 / 1e6
        );
        println!(
            "    agent, spawn -> queue empty: {} s without the log, {} s with it",
            spread(&an),
            spread(&a_empty)
        );
        println!(
            "    client, its own clock: {} s without the log, {} s with it",
            spread(&cn),
            spread(&c_own)
        );
        println!(
            "    the log's cost per message: {} with the agent, {} with the client; ratio \
             agent/client without the log {:.3} (agent spawn -> empty against the client's clock)",
            us((median(&a_empty) - median(&an)) / nf),
            us((median(&c_own) - median(&cn)) / ncf),
            (median(&an) / nf) / (median(&cn) / ncf)
        );
    }

    // 6. Recovery after kill -9.
    if recovery {
        let dir = s.dir.join("recovery");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        copy_synced(&template, &dir.join("agent.db"));
        let mut csms = start_csms(&s, &dir, true);
        let cfg = write_config(&dir, csms.port);
        let sock = dir.join("control.sock");
        let mut agent = spawn_agent(&s, &cfg, &dir.join("agent-1.log"));
        let left = n / 2;
        wait_queue(
            &mut agent,
            &sock,
            left,
            Duration::from_secs(120 + n as u64 / 50),
        );
        agent.kill9();
        let killed = wall();
        let spawn = wall();
        let t_spawn = Instant::now();
        let mut agent = spawn_agent(&s, &cfg, &dir.join("agent-2.log"));
        let seen = wait_queue(
            &mut agent,
            &sock,
            0,
            Duration::from_secs(120 + n as u64 / 50),
        );
        agent.stop();
        csms.proc.stop();
        let log = read_log(csms.log.as_ref().unwrap());
        let dups = check_delivery(&log, &events, "recovery");
        let boot = log.boots.iter().copied().find(|t| *t >= killed).unwrap();
        let from = log.te_in.iter().position(|r| r.0 >= killed).unwrap();
        let before = from;
        println!(
            "(h) recovery: kill -9 with {} of {n} events left in the journal ({before} delivered); restart -> \
             BootNotification {:.1} ms, -> first TransactionEvent {:.1} ms, -> queue empty {:.2} s; \
             every event arrived in order, {dups} delivered twice (the one in flight at the kill: \
             at-least-once)",
            n - before,
            (boot - spawn) * 1e3,
            (log.te_in[from].0 - spawn) * 1e3,
            (seen - t_spawn).as_secs_f64()
        );
    }
    println!();
    if quick && std::env::var_os("REPLAY_BENCH_DIR").is_none() {
        let _ = std::fs::remove_dir_all(&s.dir);
    } else {
        println!("files: {}", s.dir.display());
    }
}
