#!/usr/bin/env python3
"""Makes tests/fixtures/journal-<rev>.db: a journal written by a released agent binary, for the
upgrade test (tests/journal_upgrade.rs).

It runs the given binary against the Python CSMS peer (tests/csms/csms.py) with sim plugs and
leaves in the journal, when the agent is killed:
  * the CSMS's SetVariables (TxCtrlr.EVConnectionTimeOut, AuthCacheCtrlr.LifeTime,
    TxCtrlr.TxBeforeAcceptedEnabled),
  * a local authorization list (SendLocalList Full, version 7, LOCAL-1 and LOCAL-2),
  * an authorization cache entry (CACHED-1, from an online transaction),
  * a firmware job (UpdateFirmware requestId 4242 from a location nobody serves, waiting an
    hour before its next attempt),
  * queued messages made while the CSMS was down: the TransactionEvents of an offline
    transaction, then, after a restart without the CSMS, the SecurityEventNotification and the
    FirmwareStatusNotification of that start and the TransactionEvents of a second offline
    transaction, left open.
Then it checkpoints the WAL into the file, copies it to the output and prints the queued rows.

Usage (from the repository root, after scripts/setup-python.sh):
  .venv/bin/python scripts/make-journal-fixture.py /work/notes/ocpp-agent-7600d0d \
      tests/fixtures/journal-7600d0d.db
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "0123456789abcdef"
STATION = "CP001"
FIRMWARE_REQUEST_ID = 4242
LOCAL_LIST_VERSION = 7


def wait_for(what, f, timeout=60.0):
    start = time.monotonic()
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() - start > timeout:
            sys.exit(f"make-journal-fixture: timed out waiting for {what}")
        time.sleep(0.1)


class Csms:
    def __init__(self, work: Path):
        self.work = work
        self.log = work / "csms.jsonl"
        self.proc = None
        self.port = 0
        self.admin_port = 0

    def start(self):
        port_file = self.work / "csms.port"
        admin_file = self.work / "csms.admin"
        for f in (port_file, admin_file):
            f.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/python"), str(ROOT / "tests/csms/csms.py"),
             "--host", "127.0.0.1", "--port", str(self.port), "--port-file", str(port_file),
             "--admin-port-file", str(admin_file), "--log", str(self.log), "--quiet",
             "--password", PASSWORD, "--interval", "10"],
            stdin=subprocess.DEVNULL, stderr=open(self.work / "csms.stderr", "a"))
        self.port = int(wait_for("the CSMS port", lambda: port_file.exists() and port_file.read_text().strip()))
        self.admin_port = int(admin_file.read_text().strip())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def admin(self, request: dict) -> dict:
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=60) as s:
            s.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def call(self, action: str, payload: dict) -> dict:
        answer = self.admin({"cmd": "call", "station": STATION, "action": action, "payload": payload})
        if not answer.get("ok"):
            sys.exit(f"make-journal-fixture: {action} failed: {answer}")
        return answer["response"]

    def calls(self, action: str) -> list:
        out = []
        for line in self.log.read_text().splitlines():
            r = json.loads(line)
            if r.get("event") == "message" and r.get("dir") == "in" and r.get("type") == 2 \
                    and r.get("action") == action:
                out.append(r["payload"])
        return out


class Agent:
    def __init__(self, binary: str, work: Path, url: str):
        self.binary = binary
        self.work = work
        self.config = work / "agent.toml"
        self.db = work / "agent.db"
        self.log = work / "agent.log"
        self.proc = None
        self.config.write_text(f'''
[station]
id = "{STATION}"
vendor = "Example"
model = "AC-2"
serial_number = "SN-0001"

[csms]
url = "{url}"
security_profile = 1
password = "{PASSWORD}"

[storage]
path = "{self.db}"

[control]
socket = "{work / 'control.sock'}"

[log]
filter = "debug"

[firmware]
install_command = ["/bin/true"]
allow_unsigned = true

[variables]
"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 1
"OCPPCommCtrlr.RetryBackOffRandomRange" = 1
"OCPPCommCtrlr.RetryBackOffRepeatTimes" = 2

[[evse]]
id = 1
plug = {{ backend = "sim" }}

[[evse]]
id = 2
plug = {{ backend = "sim" }}
''')

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("RUST_LOG", "NOTIFY_SOCKET", "JOURNAL_STREAM")}
        self.proc = subprocess.Popen([self.binary, "run", "--config", str(self.config)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "a"), env=env)
        wait_for("the control socket", lambda: self.ctl_try("status"))

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def ctl_try(self, *args):
        out = subprocess.run([self.binary, "ctl", "--config", str(self.config), *args],
                             capture_output=True)
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else \
            (out.returncode == 0)

    def ctl(self, *args):
        out = subprocess.run([self.binary, "ctl", "--config", str(self.config), *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"make-journal-fixture: ctl {args} failed: {out.stderr}")
        time.sleep(1.0)  # one event at a time, so the queue order is the order of these steps

    def status(self) -> dict:
        return self.ctl_try("status")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, output = os.path.abspath(sys.argv[1]), Path(sys.argv[2])
    work = Path(tempfile.mkdtemp(prefix="journal-fixture-"))
    print(f"working in {work} (kept if this fails)", file=sys.stderr)
    csms = Csms(work)
    csms.start()
    agent = Agent(binary, work, f"ws://127.0.0.1:{csms.port}/ocpp")
    agent.start()
    wait_for("registration", lambda: agent.status()["registration"] == "accepted")

    # (d) persistent variables set by the CSMS.
    answer = csms.call("SetVariables", {"setVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "EVConnectionTimeOut"},
         "attributeValue": "321"},
        {"component": {"name": "AuthCacheCtrlr"}, "variable": {"name": "LifeTime"},
         "attributeValue": "43210"},
        # B02.FR.03: the agent restarted without the CSMS may start transactions.
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxBeforeAcceptedEnabled"},
         "attributeValue": "true"},
    ]})
    assert all(r["attributeStatus"] == "Accepted" for r in answer["setVariableResult"]), answer

    # (c) the local authorization list.
    answer = csms.call("SendLocalList", {
        "versionNumber": LOCAL_LIST_VERSION, "updateType": "Full",
        "localAuthorizationList": [
            {"idToken": {"idToken": t, "type": "ISO14443"}, "idTokenInfo": {"status": "Accepted"}}
            for t in ("LOCAL-1", "LOCAL-2")]})
    assert answer["status"] == "Accepted", answer

    # An online transaction, for an authorization cache entry (Authorize answered Accepted).
    agent.ctl("plug", "1", "in")
    agent.ctl("token", "1", "CACHED-1")
    agent.ctl("plug", "1", "out")
    wait_for("the online transaction delivered",
             lambda: agent.status()["queue"]["depth"] == 0
             and any(e["eventType"] == "Ended" for e in csms.calls("TransactionEvent")))

    # (b) a firmware job that stays unfinished: nobody listens on port 9 (privileged, so no test
    # peer gets it either), each attempt fails and the next one is an hour later.
    answer = csms.call("UpdateFirmware", {
        "requestId": FIRMWARE_REQUEST_ID, "retries": 5, "retryInterval": 3600,
        "firmware": {"location": "http://127.0.0.1:9/firmware.bin",
                     "retrieveDateTime": "2020-01-01T00:00:00Z"}})
    assert answer["status"] == "Accepted", answer
    wait_for("the first download attempt to fail",
             lambda: "firmware download failed; retrying" in agent.log.read_text())
    wait_for("FirmwareStatusNotification Downloading delivered",
             lambda: agent.status()["queue"]["depth"] == 0
             and csms.calls("FirmwareStatusNotification"))

    # (a) offline: the CSMS goes away, a transaction runs; the agent restarts without the CSMS
    # (its start-up messages are queued) and a second transaction starts and is left open.
    csms.stop()
    wait_for("the agent to notice", lambda: agent.status()["connection"] != "connected")
    agent.ctl("plug", "1", "in")
    agent.ctl("token", "1", "LOCAL-1")
    agent.ctl("plug", "1", "out")
    agent.kill9()
    agent.start()
    wait_for("the second download attempt to fail",
             lambda: agent.log.read_text().count("firmware download failed; retrying") >= 2)
    agent.ctl("plug", "2", "in")
    agent.ctl("token", "2", "LOCAL-2")
    time.sleep(1.0)
    status = agent.status()
    agent.kill9()

    # Checkpoint the WAL into the file (the last connection to close does it), print what the
    # file holds, and copy it (the copy is never opened here: no -wal or -shm beside it).
    conn = sqlite3.connect(agent.db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"user_version {conn.execute('PRAGMA user_version').fetchone()[0]}, "
          f"queue depth at the kill {status['queue']['depth']}")
    print("queue (queue_seq, action, tx_id, kind, attempts, boot_id, seqNo/status/type):")
    for seq, action, tx, kind, attempts, boot, payload in conn.execute(
            "SELECT queue_seq, action, tx_id, kind, attempts, boot_id, payload FROM queue "
            "ORDER BY queue_seq"):
        p = json.loads(payload)
        detail = p.get("seqNo", p.get("status", p.get("type")))
        print(f"  {seq} {action} {tx} {kind} {attempts} {boot} {detail}")
    print("queue_state:", conn.execute("SELECT last_queue_seq FROM queue_state").fetchall())
    print("open_tx (tx_id, evse, next_seq_no, charging_state):",
          conn.execute("SELECT tx_id, evse, next_seq_no, charging_state FROM open_tx").fetchall())
    print("auth_cache:", conn.execute("SELECT key, info FROM auth_cache").fetchall())
    for key, value in conn.execute("SELECT key, value FROM meta ORDER BY key"):
        print(f"meta {key} = {value}")
    conn.close()
    for extra in ("-wal", "-shm"):
        p = Path(str(agent.db) + extra)
        if p.exists() and p.stat().st_size > 0 and extra == "-wal":
            sys.exit(f"make-journal-fixture: {p} is not empty after the checkpoint")
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(agent.db, output)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
