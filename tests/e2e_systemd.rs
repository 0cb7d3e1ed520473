//! The sd_notify protocol as systemd sees it: with `NOTIFY_SOCKET` pointing at a datagram
//! socket the test owns, the agent sends `READY=1`, then `WATCHDOG=1` at half of
//! `WATCHDOG_USEC`, and `STOPPING=1` on SIGTERM. A stalled event loop (here: the journal's
//! SQLite file locked by another process while the agent must write) stops the pings, which
//! is what lets systemd's watchdog restart a hung agent.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{Agent, Csms, agent_config, wait_for};

/// Messages received on the notify socket with their arrival times.
fn collect(socket: &UnixDatagram, until: Instant, into: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        socket
            .set_read_timeout(Some(
                until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => into.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(_) => return,
        }
    }
}

#[test]
fn ready_watchdog_and_stopping() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    let text = agent_config(dir.path(), &csms.url(), "");
    let notify = notify_path.to_str().unwrap().to_owned();
    let mut agent = Agent::start_with_config(
        dir,
        &text,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1000000")],
    );
    let start = Instant::now();
    let mut messages = Vec::new();
    collect(&socket, start + Duration::from_secs(4), &mut messages);
    let first_ready = messages
        .iter()
        .position(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .expect("READY=1");
    let pings: Vec<Instant> = messages
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    // Half of 1 s: about 8 pings in 4 s (at least 5 on a loaded machine).
    assert!(pings.len() >= 5, "{messages:?}");
    assert!(
        messages[..first_ready]
            .iter()
            .all(|(_, m)| m != "WATCHDOG=1"),
        "READY comes first: {messages:?}"
    );
    for gap in pings.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap < Duration::from_millis(900), "watchdog gap {gap:?}");
    }

    agent.signal("TERM");
    let mut after = Vec::new();
    collect(&socket, Instant::now() + Duration::from_secs(3), &mut after);
    assert!(after.iter().any(|(_, m)| m == "STOPPING=1"), "{after:?}");
    assert_eq!(agent.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_stalled_event_loop_stops_the_watchdog_pings() {
    let Some(csms) = Csms::start(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify_path).unwrap();
    let db = dir.path().join("agent.db");
    let text = agent_config(dir.path(), &csms.url(), "");
    let notify = notify_path.to_str().unwrap().to_owned();
    let agent = Agent::start_with_config(
        dir,
        &text,
        &[("NOTIFY_SOCKET", &notify), ("WATCHDOG_USEC", "1000000")],
    );
    agent.wait_ready();
    csms.wait_calls("BootNotification", 1, Duration::from_secs(30));

    // Another process takes the database's write lock; the next state change the agent must
    // persist (a plug-in starts a transaction) blocks its loop until SQLite gives up.
    let locker = rusqlite_free_lock(&db);
    let mut messages = Vec::new();
    collect(
        &socket,
        Instant::now() + Duration::from_millis(1500),
        &mut messages,
    );
    let plug = std::thread::spawn({
        let config = agent.config.clone();
        move || {
            std::process::Command::new(support::agent_binary())
                .args(["ctl", "--config"])
                .arg(config)
                .args(["plug", "1", "in"])
                .output()
                .unwrap()
        }
    });
    collect(
        &socket,
        Instant::now() + Duration::from_secs(8),
        &mut messages,
    );
    drop(locker);
    collect(
        &socket,
        Instant::now() + Duration::from_secs(3),
        &mut messages,
    );
    let _ = plug.join();
    let pings: Vec<Instant> = messages
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest >= Duration::from_secs(3),
        "the stalled loop must not ping (longest gap {longest:?})"
    );
    // ... and it pings again once the loop runs.
    let last = *pings.last().unwrap();
    assert!(
        Instant::now() - last < Duration::from_secs(2),
        "pings resumed"
    );
    // The transaction was not lost: the journal kept it in memory and wrote it later.
    wait_for(
        Duration::from_secs(30),
        "the transaction at the CSMS",
        || (!csms.calls("TransactionEvent").is_empty()).then_some(()),
    );
}

/// Holds an exclusive lock on a SQLite database from a separate process (python3's sqlite3),
/// until dropped.
fn rusqlite_free_lock(db: &std::path::Path) -> LockHolder {
    let child = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3,sys,time\n\
             c=sqlite3.connect(sys.argv[1],isolation_level=None,timeout=30)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked',flush=True)\n\
             sys.stdin.read()\n",
        )
        .arg(db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    LockHolder(child)
}

struct LockHolder(std::process::Child);

impl Drop for LockHolder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}
