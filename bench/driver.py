#!/usr/bin/env python3
"""Measurement driver of scripts/bench.sh (run it through that script).

Run with the project's venv (scripts/setup-python.sh), because `boot` needs `websockets`:

  driver.py idle  --agent BIN --work DIR --out FILE [--seconds 600] [--qemu QEMU --qemu-ld-prefix P --ctl BIN]
  driver.py boot  --agent BIN --work DIR --out FILE [--runs 11]
  driver.py summary --results DIR

Every figure is printed together with how it was obtained; results go to JSON files that
`summary` turns into the Markdown table of BENCHMARKS.md. All processes started here get
PR_SET_PDEATHSIG(SIGKILL) and are stopped (SIGTERM, then SIGKILL) on exit and on
SIGTERM/SIGINT/SIGHUP.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSMS_PY = ROOT / "tests/csms/csms.py"
PASSWORD = "0123456789abcdef"  # Basic auth password of the agent's config, checked by the CSMS
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Budgets and peer figures (from the issue).
BUDGET_ARMV7_SIZE = 3_670_016  # 3.5 MiB stripped (issue 13: room for kept crates in security code)
BUDGET_IDLE_RSS_KB = 4 * 1024
BUDGET_TX_HWM_KB = 6 * 1024
PEER_SIZE = 1.64 * MIB  # MicroOcpp Linux simulator, stripped, x86_64, no database
PEER_IDLE_RSS_KB = 4.8 * 1024
PEER_CPU_MS_PER_20S = (10, 20)  # MicroOcpp polls every 100 ms


def out(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# child processes


class Children:
    """Every process we start; stopped on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def add(self, p: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p: subprocess.Popen, grace: float = 5.0) -> None:
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        self.procs.clear()


CHILDREN = Children()
_libc = ctypes.CDLL(None, use_errno=True)


def _pdeathsig() -> None:  # preexec_fn: die with the driver, whatever happens to it
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def spawn(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "ab") as f:
        return CHILDREN.add(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                             env=env, preexec_fn=_pdeathsig))


def agent_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUST_LOG", "NOTIFY_SOCKET", "JOURNAL_STREAM") and not k.startswith("OCPP_AGENT_")}
    env["NO_COLOR"] = "1"
    return env


def wait_file_int(path: Path, proc: subprocess.Popen, what: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"driver: {what}: the process exited with status {proc.returncode}")
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise SystemExit(f"driver: timed out waiting for {what}")


# ---------------------------------------------------------------------------------------------
# /proc readers


def proc_status(pid: int, task: int | None = None) -> dict:
    path = f"/proc/{pid}/task/{task}/status" if task else f"/proc/{pid}/status"
    d = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if v and v[0].isdigit():
                d[k] = int(v[0])  # kB for the Vm*/Rss* lines
    return d


def tasks(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def cpu_snapshot(pid: int) -> dict:
    """utime+stime of the process (all threads, dead ones included, clock ticks) and the
    precise on-CPU time (ns, sum of /proc/PID/task/*/schedstat) and context switches of its
    live threads, in total and per thread (tid -> (ns, voluntary, involuntary)): a thread that
    exits between two snapshots (tokio's blocking thread, 10 s after its last job) takes its
    counts with it, so differences are taken per thread (cpu_delta)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    per = {}
    for t in tasks(pid):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                ns = int(f.read().split()[0])
            st = proc_status(pid, t)
            per[t] = (ns, st.get("voluntary_ctxt_switches", 0), st.get("nonvoluntary_ctxt_switches", 0))
        except FileNotFoundError:
            pass  # thread exited meanwhile
    return {"t": time.monotonic(), "ticks": ticks, "ns": sum(v[0] for v in per.values()),
            "vol": sum(v[1] for v in per.values()), "invol": sum(v[2] for v in per.values()),
            "per": per, "threads": len(per)}


def cpu_delta(p: dict, q: dict) -> tuple[int, int, int]:
    """(ns, voluntary, involuntary) from snapshot p to q, over the threads alive at q (a thread
    started in between counts from 0; one that exited in between is lost)."""
    d = [0, 0, 0]
    for t, v in q["per"].items():
        w = p["per"].get(t, (0, 0, 0))
        for i in range(3):
            d[i] += v[i] - w[i]
    return d[0], d[1], d[2]


def smaps(pid: int) -> list[dict]:
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": parts[1],
                       "path": parts[5] if len(parts) > 5 else ""}
                maps.append(cur)
            elif parts[0].endswith(":") and len(parts) >= 2 and parts[1].isdigit():
                cur[parts[0][:-1]] = int(parts[1])
    return maps


def rollup(pid: int) -> dict:
    d = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0].endswith(":") and len(parts) >= 2 and parts[1].isdigit():
                d[parts[0][:-1]] = int(parts[1])
    return d


def by_object(maps: list[dict]) -> list[tuple[str, int]]:
    """Resident kB per mapped object ([anon] for anonymous mappings)."""
    acc: dict[str, int] = {}
    for m in maps:
        name = m["path"] or "[anon]"
        acc[name] = acc.get(name, 0) + m.get("Rss", 0)
    return sorted(((k, v) for k, v in acc.items() if v), key=lambda kv: -kv[1])


def guest_memory(pid: int, guest_binary: str) -> dict:
    """Resident memory of the guest (the ARMv7 process) inside a qemu-user process: qemu
    reserves the guest's 4 GiB address space as one block at guest_base; every guest mapping
    (binary, ARM libc, heap, stack) lies inside it, qemu's own memory (TCG code cache, its
    heap, host libraries) outside."""
    maps = sorted(smaps(pid), key=lambda m: m["lo"])
    guest_binary = os.path.realpath(guest_binary)
    idx = [i for i, m in enumerate(maps) if m["path"] == guest_binary]
    if not idx:
        raise SystemExit(f"driver: {guest_binary} is not mapped in qemu process {pid}")
    if maps[idx[-1]]["hi"] <= 1 << 32:
        lo, hi = 0, 1 << 32  # guest_base 0 (the usual case on 64-bit hosts)
    else:  # contiguous block around the binary
        i = j = idx[0]
        while i > 0 and maps[i - 1]["hi"] == maps[i]["lo"]:
            i -= 1
        while j + 1 < len(maps) and maps[j + 1]["lo"] == maps[j]["hi"]:
            j += 1
        lo, hi = maps[i]["lo"], maps[j]["hi"]
    guest = [m for m in maps if m["lo"] >= lo and m["hi"] <= hi]
    rss = sum(m.get("Rss", 0) for m in guest)
    anon = sum(m.get("Anonymous", 0) for m in guest)
    return {"region": [hex(lo), hex(hi)], "rss_kb": rss, "anon_kb": anon, "file_kb": rss - anon,
            "pss_kb": sum(m.get("Pss", 0) for m in guest),
            "private_dirty_kb": sum(m.get("Private_Dirty", 0) for m in guest),
            "private_clean_kb": sum(m.get("Private_Clean", 0) for m in guest),
            "objects": by_object(guest)}


# The memory figures reported side by side, in kB. What a board's budget should use is
# Private_Dirty (or RssAnon, nearly the same here): pages only this process has written, which
# the kernel can neither drop nor share (no swap on the boards). Pss adds the process's share of
# the clean file pages (code, read-only data), which the kernel can drop and read back.
MEM_KEYS = ("RssAnon", "Private_Dirty", "Pss", "VmRSS")


def mem_native(pid: int) -> dict:
    """/proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile) and smaps_rollup (Pss, Private_*)."""
    st, ru = proc_status(pid), rollup(pid)
    return {"VmRSS": st["VmRSS"], "VmHWM": st["VmHWM"], "RssAnon": st["RssAnon"],
            "RssFile": st["RssFile"], "Pss": ru.get("Pss", 0),
            "Private_Dirty": ru.get("Private_Dirty", 0), "Private_Clean": ru.get("Private_Clean", 0)}


def mem_guest(pid: int, guest_binary: str) -> dict:
    """The same figures for the guest of a qemu-user process, summed over the mappings inside
    the guest address space (qemu's own /proc/PID/status describes the emulator): Anonymous
    stands in for RssAnon, the guest mappings' Rss for VmRSS; there is no VmHWM."""
    g = guest_memory(pid, guest_binary)
    return {"VmRSS": g["rss_kb"], "RssAnon": g["anon_kb"], "RssFile": g["file_kb"],
            "Pss": g["pss_kb"], "Private_Dirty": g["private_dirty_kb"],
            "Private_Clean": g["private_clean_kb"]}


def anon_breakdown(maps: list[dict], exe: str) -> list[tuple[str, int, int, int]]:
    """Where the private dirty memory is, per kind of mapping: (what, Anonymous kB,
    Private_Dirty kB, number of mappings). Thread stacks and malloc arenas are recognised by their shape: glibc puts
    a PROT_NONE guard page below a thread stack, and reserves an arena's 64 MiB (1 MiB on 32-bit)
    as PROT_NONE, making only the used front read-write. An unnamed mapping right after a file's
    last mapping is that file's .bss. Heap and arenas hold every malloc'd byte: SQLite's page
    cache, the WebSocket/TLS buffers and the agent's state cannot be told apart from here."""
    maps = sorted(maps, key=lambda m: m["lo"])
    acc: dict[str, list[int]] = {}
    for i, m in enumerate(maps):
        anon, dirty = m.get("Anonymous", 0), m.get("Private_Dirty", 0)
        if not anon and not dirty:
            continue
        prev = maps[i - 1] if i > 0 and maps[i - 1]["hi"] == m["lo"] else None
        nxt = maps[i + 1] if i + 1 < len(maps) and maps[i + 1]["lo"] == m["hi"] else None
        path = m["path"]
        if path == "[heap]":
            what = "[heap]: brk heap (main malloc arena)"
        elif path == "[stack]":
            what = "[stack]: main thread's stack"
        elif path.startswith("/") and m["perms"].endswith("s"):
            what = f"{os.path.basename(path)}: shared file mapping (pages written through it)"
        elif path.startswith("/"):
            name = "the agent binary" if os.path.realpath(path) == exe else os.path.basename(path)
            what = f"{name}: relocated data (RELRO: .data.rel.ro, .got), .data"
        elif path:
            what = path
        elif prev is not None and prev["path"].startswith("/"):
            name = "the agent binary" if os.path.realpath(prev["path"]) == exe else os.path.basename(prev["path"])
            what = f"{name}: .bss"
        elif (nxt is not None and not nxt["path"] and nxt["perms"].startswith("---")
              and is_pow2(m["hi"] - m["lo"] + nxt["hi"] - nxt["lo"])):
            what = "malloc arenas of other threads (tokio's blocking pool: SQLite)"
        elif (prev is not None and not prev["path"] and prev["perms"].startswith("---")
              and prev["hi"] - prev["lo"] <= 64 * 1024):
            what = "thread stacks (live, or cached by glibc after the thread exited)"
        else:
            what = ("other anonymous mappings (malloc blocks of 128 KiB and more, each mmap'd: "
                    "tungstenite's 128 KiB read buffer; ld.so, thread-local storage)")
        a = acc.setdefault(what, [0, 0, 0])
        a[0] += anon
        a[1] += dirty
        a[2] += 1
    return sorted(((k, v[0], v[1], v[2]) for k, v in acc.items()), key=lambda r: -max(r[1], r[2]))


def is_pow2(n: int) -> bool:
    return n >= 1 << 20 and n & (n - 1) == 0


def mem_line(m: dict) -> str:
    return ", ".join(f"{k} {m[k]} kB" for k in MEM_KEYS if k in m) + (
        f", VmHWM {m['VmHWM']} kB" if "VmHWM" in m else "")


# ---------------------------------------------------------------------------------------------
# CSMS and agent


def start_csms(work: Path, interval: int, ping: float) -> tuple[subprocess.Popen, int, Path]:
    port_file, log = work / "csms.port", work / "csms.jsonl"
    for p in (port_file, log):
        p.unlink(missing_ok=True)
    proc = spawn([sys.executable, str(CSMS_PY), "--host", "127.0.0.1", "--port", "0",
                  "--port-file", str(port_file), "--log", str(log), "--password", PASSWORD,
                  "--interval", str(interval), "--ping-interval", str(ping), "--quiet"],
                 work / "csms.stderr")
    return proc, wait_file_int(port_file, proc, "the CSMS port"), log


def has_transactions(agent_bin: str) -> bool:
    """Whether this build has transactions (`ctl token`, the SampledDataCtrlr variables)."""
    helptext = subprocess.run([agent_bin, "--help"], capture_output=True, text=True).stdout
    return " token " in helptext


def write_config(work: Path, url: str, ping_interval: int = 30, tx_vars: bool = True) -> Path:
    cfg = work / "agent.toml"
    # Meter values every 5 s with the four measurands during the transaction (builds before
    # transactions do not know these variables).
    tx = ('"SampledDataCtrlr.TxUpdatedInterval" = 5\n"SampledDataCtrlr.TxUpdatedMeasurands" = '
          '"Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"\n') if tx_vars else ""
    cfg.write_text(f'''# written by bench/driver.py
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
path = "{work / 'agent.db'}"

[control]
socket = "{work / 'control.sock'}"

[log]
filter = "info"

[variables]
"OCPPCommCtrlr.RetryBackOffWaitMinimum" = 2
"OCPPCommCtrlr.RetryBackOffRandomRange" = 2
"OCPPCommCtrlr.WebSocketPingInterval" = {ping_interval}
{tx}
[[evse]]
id = 1
plug = {{ backend = "sim" }}

[[evse]]
id = 2
plug = {{ backend = "sim" }}
''')
    return cfg


def ctl(ctl_bin: str, cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ctl_bin, "ctl", "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def wait_accepted(ctl_bin: str, cfg: Path, agent: subprocess.Popen, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if agent.poll() is not None:
            raise SystemExit(f"driver: the agent exited with status {agent.returncode}")
        r = ctl(ctl_bin, cfg, "status")
        if r.returncode == 0:
            st = json.loads(r.stdout)
            if st.get("connection") == "connected" and st.get("registration") == "accepted":
                return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit(f"driver: the agent was not connected+accepted within {timeout:.0f} s")


def csms_records(log: Path) -> list[dict]:
    recs = []
    with open(log, encoding="utf-8") as f:
        for line in f:
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    return recs


def station_calls(recs: list[dict]) -> dict[str, int]:
    acc: dict[str, int] = {}
    for r in recs:
        if r.get("event") == "message" and r.get("dir") == "in" and r.get("type") == 2:
            acc[r["action"]] = acc.get(r["action"], 0) + 1
    return acc


def csms_errors(recs: list[dict]) -> int:
    return sum(1 for r in recs if (r.get("event") == "message" and r.get("dir") == "out"
                                   and r.get("type") == 4) or r.get("event") == "violation")


def fmt_kb(kb: float) -> str:
    return f"{kb / 1024:.2f} MiB ({kb:.0f} kB)"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------------------
# idle: RSS, CPU, wake-ups, and the transaction peak


def cmd_idle(a) -> int:
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    qemu = bool(a.qemu)
    res: dict = {"kind": "qemu" if qemu else "native", "agent": a.agent, "seconds": a.seconds,
                 "interval": a.interval, "ws_ping_agent": 30, "ws_ping_csms": a.csms_ping}
    csms, port, log = start_csms(work, a.interval, a.csms_ping)
    ctl_bin = a.ctl or a.agent
    cfg = write_config(work, f"ws://127.0.0.1:{port}/ocpp", tx_vars=has_transactions(ctl_bin))
    cmd = [a.agent, "run", "--config", str(cfg)]
    if qemu:
        cmd = [a.qemu, "-L", a.qemu_ld_prefix, *cmd]
    out(f"  CSMS: tests/csms/csms.py on 127.0.0.1:{port}, --interval {a.interval} (heartbeat), "
        f"--ping-interval {a.csms_ping:g} (CSMS WebSocket pings); agent WebSocketPingInterval 30 s")
    out(f"  agent: {' '.join(cmd)}  (log: {work / 'agent.log'})")
    env = agent_env()
    if qemu:
        # What the systemd unit sets on a board. Natively the agent sets it itself (it starts
        # again with it); under qemu-user that exec of an ARM binary fails, and the figure
        # would be of an agent with malloc's thread cache.
        env["GLIBC_TUNABLES"] = "glibc.malloc.tcache_count=0"
    agent = spawn(cmd, work / "agent.log", env)
    took = wait_accepted(ctl_bin, cfg, agent, 60 if qemu else 30)
    out(f"  connected and BootNotification accepted after {took:.2f} s (polled `ocpp-agent ctl status`)")
    pid = agent.pid
    out(f"  settling {a.settle} s, then idling {a.seconds} s; sampling /proc/{pid} every {a.sample} s")
    time.sleep(a.settle)
    recs0 = len(csms_records(log))
    s0 = cpu_snapshot(pid)
    snaps, rss = [s0], []
    guest_samples = []
    t_end = s0["t"] + a.seconds
    while True:
        now = time.monotonic()
        if now >= t_end - 0.01:
            break
        time.sleep(min(a.sample, t_end - now))
        if agent.poll() is not None:
            raise SystemExit(f"driver: the agent exited during the idle window ({agent.returncode})")
        snaps.append(cpu_snapshot(pid))
        rss.append(proc_status(pid)["VmRSS"])
        if qemu:
            guest_samples.append(guest_memory(pid, a.agent))
        elapsed = snaps[-1]["t"] - s0["t"]
        if a.progress and int(elapsed) % 60 < a.sample and elapsed > 1:
            out(f"    ... {elapsed:.0f} s idle, CPU so far "
            f"{sum(cpu_delta(p, q)[0] for p, q in zip(snaps, snaps[1:])) / 1e6:.1f} ms")
    s1 = snaps[-1]
    st = proc_status(pid)
    ru = rollup(pid)
    maps = smaps(pid)
    res["mem_idle"] = mem_guest(pid, a.agent) if qemu else mem_native(pid)
    with open(f"/proc/{pid}/smaps") as f:  # kept for a closer look (where the memory is)
        (work / "smaps-idle.txt").write_text(f.read())
    window = s1["t"] - s0["t"]
    recs = csms_records(log)
    calls_idle = station_calls(recs[recs0:])
    res.update({"window_s": window, "status": st, "rollup": ru, "rss_samples_kb": rss,
                "objects_kb": by_object(maps), "threads": s1["threads"], "idle_calls": calls_idle})

    if qemu:
        g = guest_samples[-1]
        res["guest"] = g
        res["guest_rss_samples_kb"] = [x["rss_kb"] for x in guest_samples]
        out("")
        out(f"  qemu-arm process (host view, /proc/{pid}/status): VmRSS {fmt_kb(st['VmRSS'])}, "
            f"VmHWM {fmt_kb(st['VmHWM'])}, RssAnon {st['RssAnon']} kB, threads {st['Threads']}")
        out("    -> NOT the ARMv7 agent's figure: it is the emulator's own footprint (TCG code "
            "cache, qemu heap, host libraries) plus the guest's pages. qemu-user does not emulate "
            "/proc/PID/status for the guest, so there is no guest VmRSS/VmHWM.")
        out(f"  guest mappings only (sum of /proc/{pid}/smaps Rss inside the guest address space "
            f"{g['region'][0]}..{g['region'][1]}):")
        out(f"    guest RSS {fmt_kb(g['rss_kb'])} = anonymous {g['anon_kb']} kB + file-backed "
            f"{g['file_kb']} kB; median of {len(guest_samples)} samples "
            f"{fmt_kb(med(res['guest_rss_samples_kb']))}, max {fmt_kb(max(res['guest_rss_samples_kb']))}")
        for name, kb in g["objects"][:8]:
            out(f"      {kb:6d} kB  {name}")
        out("    (an estimate of the agent's RSS on a real ARMv7 board: same binary, same ARM glibc "
            "and malloc; file-backed pages are faulted in by the host kernel, see the note on "
            "file-backed RSS)")
        m = res["mem_idle"]
        out(f"    guest private dirty {m['Private_Dirty']} kB, anonymous {m['RssAnon']} kB, Pss {m['Pss']} kB "
            "(sums over the same mappings; qemu itself writes some guest pages, e.g. the stack it "
            "sets up, and maps the guest's brk heap as anonymous memory)")
    else:
        out("")
        out(f"  idle memory after {window:.0f} s idle (/proc/{pid}/status):")
        out(f"    VmRSS {fmt_kb(st['VmRSS'])}   (budget <= 4 MiB: "
            f"{'OK' if st['VmRSS'] <= BUDGET_IDLE_RSS_KB else 'OVER'}; MicroOcpp 4.8 MiB: ratio "
            f"{st['VmRSS'] / PEER_IDLE_RSS_KB:.2f})")
        out(f"    VmHWM {fmt_kb(st['VmHWM'])}; VmRSS median of {len(rss)} samples {fmt_kb(med(rss))}, "
            f"min {min(rss)} kB, max {max(rss)} kB")
        out(f"    RssAnon {st['RssAnon']} kB (heap, stacks: the agent's own memory), RssFile "
            f"{st['RssFile']} kB (mapped binary and shared libraries), RssShmem {st.get('RssShmem', 0)} kB")
        out(f"    Pss {ru.get('Pss', 0)} kB (shared pages divided among their users), Private "
            f"{ru.get('Private_Clean', 0) + ru.get('Private_Dirty', 0)} kB, Private_Dirty "
            f"{ru.get('Private_Dirty', 0)} kB (/proc/{pid}/smaps_rollup)")
        out("    resident kB per mapped object (/proc/PID/smaps):")
        for name, kb in res["objects_kb"][:8]:
            out(f"      {kb:6d} kB  {name}")
        exe = os.path.realpath(a.agent)
        res["anon_breakdown"] = anon_breakdown(maps, exe)
        out("    where the private memory is (/proc/PID/smaps per mapping; Anonymous / Private_Dirty kB):")
        for what, anon, dirty, n in res["anon_breakdown"]:
            out(f"      {anon:6d} / {dirty:6d}  {what}" + (f" ({n} mappings)" if n > 1 else ""))
        b_rss = sum(m.get("Rss", 0) for m in maps if m["path"] == exe)
        b_size = sum(m.get("Size", 0) for m in maps if m["path"] == exe)
        res["binary_mapped_kb"], res["binary_resident_kb"] = b_size, b_rss
        out(f"    note: {b_rss} of the binary's {b_size} mapped kB are resident ({b_rss / max(b_size, 1):.0%}). "
            f"File-backed RSS counts every page of the page cache mapped into the process, and "
            f"kernel {os.uname().release} maps file pages around each fault (fault-around, large "
            "folios): code that never runs counts as resident when it shares a 64 KiB window "
            "with code that does. These pages are clean, shared and reclaimable; the agent's own "
            "memory is RssAnon / Private_Dirty.")

    # CPU and wake-ups
    cpu_ns = vol = invol = 0
    for p, q in zip(snaps, snaps[1:]):
        dn, dv, di = cpu_delta(p, q)
        cpu_ns, vol, invol = cpu_ns + dn, vol + dv, invol + di
    ticks = s1["ticks"] - s0["ticks"]
    sw = vol + invol
    slices = []  # per-slice (ms per 20 s, wakeups per 20 s)
    for p, q in zip(snaps, snaps[1:]):
        dt_s = q["t"] - p["t"]
        if dt_s > 0.5 * a.sample:
            dn, dv, di = cpu_delta(p, q)
            slices.append((dn / 1e6 * 20 / dt_s, (dv + di) * 20 / dt_s))
    ms20 = [x[0] for x in slices]
    wk20 = [x[1] for x in slices]
    res["cpu"] = {"ns": cpu_ns, "ticks": ticks, "clk_tck": CLK_TCK, "switches": sw, "voluntary": vol,
                  "ms_per_20s_total": cpu_ns / 1e6 * 20 / window,
                  "ms_per_20s_slices": ms20, "wakeups_per_20s_slices": wk20,
                  "wakeups_per_min": sw * 60 / window}
    hb = calls_idle.get("Heartbeat", 0)
    timers = window / a.interval + window / 30 + (window / a.csms_ping if a.csms_ping else 0)
    res["cpu"]["expected_timer_events"] = timers
    label = "qemu-arm (emulated: translation and emulation cost, not the ARMv7 agent's)" if qemu else "agent"
    out("")
    out(f"  idle CPU of the {label} over {window:.1f} s:")
    out(f"    {cpu_ns / 1e6:.1f} ms on-CPU (sum of /proc/{pid}/task/*/schedstat, ns), "
        f"{ticks / CLK_TCK * 1000:.0f} ms utime+stime (/proc/{pid}/stat, {1000 // CLK_TCK} ms ticks)")
    out(f"    = {res['cpu']['ms_per_20s_total']:.2f} ms per 20 s over the whole window; per {a.sample} s "
        f"slice, scaled to 20 s: median {med(ms20):.2f} ms, min {min(ms20):.2f}, max {max(ms20):.2f}"
        + ("" if qemu else f"  (MicroOcpp: 10-20 ms per 20 s; ratio {med(ms20) / 15:.3f} of its midpoint)"))
    out(f"    wake-ups: {sw} context switches ({vol} voluntary) of the process's threads "
        f"(/proc/{pid}/task/*/status) = {res['cpu']['wakeups_per_min']:.1f} per minute; per 20 s "
        f"slice median {med(wk20):.1f}")
    out(f"    timer events expected in the window: {window / a.interval:.0f} heartbeats + "
        f"{window / 30:.0f} agent pings + {window / a.csms_ping if a.csms_ping else 0:.0f} CSMS pings "
        f"= {timers:.0f}; the CSMS received {calls_idle} from the agent in the window")
    out(f"    switches per timer event: {sw / timers:.2f} (a 100 ms poll loop would make >= "
        f"{window * 10:.0f})")
    out(f"    threads: {s1['threads']}")

    # transaction
    if a.transaction:
        res["tx"] = transaction(a, ctl_bin, cfg, pid, log,
                                (lambda: mem_guest(pid, a.agent)) if qemu else (lambda: mem_native(pid)))

    res["csms_calls"] = station_calls(csms_records(log))
    res["csms_errors"] = csms_errors(csms_records(log))
    out("")
    out(f"  the CSMS received {res['csms_calls']}; CALLERRORs/violations: {res['csms_errors']}")
    Children.stop(agent)
    res["agent_exit"] = agent.returncode
    Children.stop(csms)
    Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


def ctl_status(ctl_bin: str, cfg: Path) -> dict | None:
    r = ctl(ctl_bin, cfg, "status")
    if r.returncode != 0:
        return None
    try:
        st = json.loads(r.stdout)
    except ValueError:
        return None
    return st.get("result", st) if isinstance(st, dict) else None


def evse_status(st: dict | None, evse: int) -> dict:
    for e in (st or {}).get("evses", []):
        if e.get("id") == evse:
            return e
    return {}


def wait_status(ctl_bin: str, cfg: Path, pred, timeout: float) -> tuple[float | None, dict | None]:
    """Polls `ctl status` every 0.1 s until pred(status); returns (seconds, status) or (None, last)."""
    t0 = time.monotonic()
    st = None
    while time.monotonic() - t0 < timeout:
        st = ctl_status(ctl_bin, cfg)
        if st is not None and pred(st):
            return time.monotonic() - t0, st
        time.sleep(0.1)
    return None, st


def transaction(a, ctl_bin: str, cfg: Path, pid: int, log: Path, mem) -> dict:
    """mem() reads the memory figures (mem_native or mem_guest); they are sampled every second
    from plug-in to a second after the Ended event, and the peak of each is kept (VmHWM, where
    there is one, is the kernel's exact peak of VmRSS)."""
    has_token = has_transactions(ctl_bin)
    hwm0 = proc_status(pid)["VmHWM"]
    samples = [mem()]
    n0 = len(csms_records(log))
    out("")
    out("  transaction: `ctl plug 1 in`" + (", `ctl token 1 TOKEN1`" if has_token else "")
        + f", charging {a.tx_wait:g} s (TxUpdatedInterval 5 s, 4 measurands), `ctl plug 1 out`, "
        "wait for the Ended event to be delivered, read VmHWM")
    res: dict = {"has_token": has_token, "hwm_before_kb": hwm0}
    r = ctl(ctl_bin, cfg, "plug", "1", "in")
    out(f"    ctl plug 1 in: exit {r.returncode} {r.stderr.strip()[:200]}")
    if has_token:
        time.sleep(0.5)
        t_token = time.monotonic()
        r = ctl(ctl_bin, cfg, "token", "1", "TOKEN1")
        out(f"    ctl token 1 TOKEN1: exit {r.returncode} {r.stderr.strip()[:200]}")
        took, st = wait_status(ctl_bin, cfg, lambda s: evse_status(s, 1).get("transaction")
                               and evse_status(s, 1).get("power_path_closed"), 10)
        e = evse_status(st, 1)
        if took is None:
            out(f"    WARNING: no transaction with the power path closed within 10 s; EVSE 1: {json.dumps(e)}")
        else:
            took = time.monotonic() - t_token
            out(f"    transaction started, power path closed {took * 1000:.0f} ms after `ctl token` "
                f"(polled `ctl status`): transaction {json.dumps(e.get('transaction'))}")
        res["start_s"] = took
    t_charge = time.monotonic()
    while time.monotonic() - t_charge < a.tx_wait:
        time.sleep(1)
        samples.append(mem())
    peak_rss = max(x["VmRSS"] for x in samples)
    st = ctl_status(ctl_bin, cfg)
    e = evse_status(st, 1)
    res["charging_status"] = e
    out(f"    after {a.tx_wait:g} s: power_path_closed {e.get('power_path_closed')}, meter {json.dumps(e.get('meter'))}, "
        f"queue {json.dumps((st or {}).get('queue'))}")
    r = ctl(ctl_bin, cfg, "plug", "1", "out")
    out(f"    ctl plug 1 out: exit {r.returncode} {r.stderr.strip()[:200]}")
    took, st = wait_status(ctl_bin, cfg, lambda s: (samples.append(mem()) or True)
                           and not evse_status(s, 1).get("transaction")
                           and s.get("queue", {}).get("depth") == 0, 15)
    out(f"    transaction ended and queue empty after {took:.2f} s" if took is not None
        else f"    WARNING: transaction not ended / queue not empty after 15 s: {json.dumps(st)[:400]}")
    time.sleep(1)
    stp = proc_status(pid)
    samples.append(mem())
    peak = {k: max(x[k] for x in samples) for k in samples[-1]}
    if "VmHWM" in peak:
        peak["VmRSS"] = peak["VmHWM"] = stp["VmHWM"]
    recs = csms_records(log)[n0:]
    calls = station_calls(recs)
    kinds: dict[str, int] = {}
    for rec in recs:
        if rec.get("event") == "message" and rec.get("dir") == "in" and rec.get("type") == 2 \
                and rec.get("action") == "TransactionEvent":
            k = (rec.get("payload") or {}).get("eventType", "?")
            kinds[k] = kinds.get(k, 0) + 1
    res.update({"hwm_kb": stp["VmHWM"], "rss_kb": stp["VmRSS"], "anon_kb": stp["RssAnon"],
                "peak_rss_sampled_kb": max(peak_rss, stp["VmRSS"]), "calls": calls,
                "transaction_events": kinds, "errors": csms_errors(recs),
                "mem_peak": peak, "mem_after": samples[-1], "mem_samples": len(samples)})
    out(f"    peak of {len(samples)} samples (1 s apart) from plug-in to after the Ended event: {mem_line(peak)}")
    out(f"    the CSMS received {calls}; TransactionEvents by eventType {kinds}; "
        f"CALLERRORs/violations {res['errors']}")
    if has_token and "VmHWM" not in peak:
        out("    (qemu's own VmHWM is the emulator's; the guest's peak is the sampled one above)")
        if not (kinds.get("Started") and kinds.get("Ended")):
            out("    WARNING: the CSMS did not see both a Started and an Ended TransactionEvent")
    elif has_token:
        out(f"    VmHWM after the transaction {fmt_kb(stp['VmHWM'])} (before it {hwm0} kB; budget <= 6 MiB: "
            f"{'OK' if stp['VmHWM'] <= BUDGET_TX_HWM_KB else 'OVER'}), VmRSS now {stp['VmRSS']} kB "
            f"(highest sampled during charging {peak_rss} kB), RssAnon {stp['RssAnon']} kB")
        if not (kinds.get("Started") and kinds.get("Ended")):
            out("    WARNING: the CSMS did not see both a Started and an Ended TransactionEvent")
    else:
        out("    full transaction: not available (`ocpp-agent --help` has no `ctl token`)")
        out(f"    (plug in/out only: VmHWM {fmt_kb(stp['VmHWM'])}, before {hwm0} kB)")
    return res


# ---------------------------------------------------------------------------------------------
# boot: process start to the first WebSocket frame (the BootNotification)


def cmd_boot(a) -> int:
    return asyncio.run(boot_main(a))


async def boot_main(a) -> int:
    from websockets.asyncio.server import serve

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    state: dict = {}

    def process_request(_conn, _request):
        if "fut" in state and "t_upgrade" not in state:
            state["t_upgrade"] = time.perf_counter()
        return None

    async def handler(ws):
        fut = state.get("fut")
        try:
            msg = await ws.recv()
            t = time.perf_counter()
            if fut is not None and not fut.done():
                fut.set_result((t, msg))
            frame = json.loads(msg)
            if isinstance(frame, list) and frame[:1] == [2] and frame[2] == "BootNotification":
                now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
                await ws.send(json.dumps([3, frame[1], {"currentTime": now, "interval": 10,
                                                        "status": "Accepted"}]))
            async for _ in ws:  # keep the connection open until the agent goes
                pass
        except Exception:
            pass

    results = {"cold": [], "warm": [], "cold_upgrade": [], "warm_upgrade": []}
    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"],
                     process_request=process_request, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ocpp"
        out(f"  listener: websockets server in this process on 127.0.0.1:{port} (subprotocol ocpp2.0.1,"
            " answers the BootNotification Accepted)")
        out(f"  each run: t0 = time.perf_counter(); Popen([{a.agent}, run, --config, ...]); "
            "t1 = perf_counter() when the first text frame arrives; it must be a BootNotification")
        out(f"  cold = new empty state directory (SQLite store created at start); warm = existing "
            f"store (restart); {a.runs} runs each, interleaved, agent stopped with SIGTERM after each")
        warm_dir = work / "warm"
        warm_dir.mkdir(exist_ok=True)
        tx_vars = has_transactions(a.agent)
        warm_cfg = write_config(warm_dir, url, tx_vars=tx_vars)

        async def one(cfg: Path) -> tuple[float, float]:
            loop = asyncio.get_running_loop()
            state.clear()
            state["fut"] = loop.create_future()
            t0 = time.perf_counter()
            p = spawn([a.agent, "run", "--config", str(cfg)], cfg.parent / "agent.log", agent_env())
            try:
                t1, msg = await asyncio.wait_for(state["fut"], 30)
            except asyncio.TimeoutError:
                raise SystemExit(f"driver: no frame within 30 s (see {cfg.parent / 'agent.log'})")
            frame = json.loads(msg)
            if not (isinstance(frame, list) and len(frame) > 2 and frame[2] == "BootNotification"):
                raise SystemExit(f"driver: the first frame is not a BootNotification: {msg[:200]}")
            await asyncio.sleep(0.05)
            await loop.run_in_executor(None, Children.stop, p)
            CHILDREN.procs.remove(p)
            return (t1 - t0) * 1000, (state.get("t_upgrade", t1) - t0) * 1000

        await one(warm_cfg)  # creates the warm store; not counted
        for i in range(a.runs):
            cold_dir = work / f"cold-{i}"
            cold_dir.mkdir(exist_ok=True)
            ms, up = await one(write_config(cold_dir, url, tx_vars=tx_vars))
            results["cold"].append(ms)
            results["cold_upgrade"].append(up)
            ms, up = await one(warm_cfg)
            results["warm"].append(ms)
            results["warm_upgrade"].append(up)
            await asyncio.sleep(0.2)

    # baseline: the same binary's `--version` (exec, dynamic loading, exit)
    base = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        subprocess.run([a.agent, "--version"], stdout=subprocess.DEVNULL, check=True)
        base.append((time.perf_counter() - t0) * 1000)
    results["version_baseline"] = base

    def line(name, xs):
        return (f"{name}: median {med(xs):.1f} ms, min {min(xs):.1f}, max {max(xs):.1f} "
                f"(n={len(xs)}: {', '.join(f'{x:.1f}' for x in xs)})")

    out("  start -> first BootNotification frame:")
    out("    " + line("warm (existing store)", results["warm"]))
    out("    " + line("cold (new store)     ", results["cold"]))
    out("  start -> WebSocket upgrade request received (TCP connected, HTTP request read):")
    out("    " + line("warm", results["warm_upgrade"]))
    out("    " + line("cold", results["cold_upgrade"]))
    out("  baseline, spawn to exit of `ocpp-agent --version`: "
        f"median {med(base):.1f} ms, min {min(base):.1f}, max {max(base):.1f}")
    Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


# ---------------------------------------------------------------------------------------------
# summary table


def cmd_summary(a) -> int:
    d = Path(a.results)

    def load(name):
        p = d / name
        return json.loads(p.read_text()) if p.exists() else None

    def rounds(kind):  # kind-1.json, kind-2.json, ... (or kind.json from one round)
        rs = [json.loads(p.read_text()) for p in sorted(d.glob(f"{kind}-*.json"))]
        return rs or [r for r in [load(f"{kind}.json")] if r]

    size, boot = load("size.json") or {}, load("boot.json")
    idles, qemus = rounds("idle"), rounds("qemu")
    idle, qemu = (idles[0] if idles else None), (qemus[0] if qemus else None)
    rows = []

    def mib(b):
        return f"{b / MIB:.2f} MiB ({b:,} B)".replace(",", " ")

    def mkb(xs):  # "median (min-max)" of kB values
        xs = [x for x in xs if x is not None]
        if not xs:
            return "n/a"
        m = med(xs)
        return f"{m:.0f}" + (f" ({min(xs)}-{max(xs)})" if len(xs) > 1 and min(xs) != max(xs) else "")

    x = size.get("x86_64")
    rows.append(("Release binary, x86_64, stripped", mib(x) if x else "n/a",
                 "none (the 3.5 MiB budget is for ARMv7)",
                 "1.64 MiB (Linux simulator, x86_64, no database)"
                 + (f"; ours {x / PEER_SIZE:.2f}x" if x else "")))
    arm = size.get("armv7")
    rows.append(("Release binary, ARMv7, stripped", mib(arm) if arm else f"skipped: {size.get('armv7_note', '')}",
                 "<= 3.5 MiB" + (f": {'OK' if arm <= BUDGET_ARMV7_SIZE else 'OVER'} ({arm / BUDGET_ARMV7_SIZE:.0%})"
                               if arm else ""),
                 "1.64 MiB (x86_64)" + (f"; ours {arm / PEER_SIZE:.2f}x" if arm else "")))
    n = len(idles)
    if idles:
        mi = [r["mem_idle"] for r in idles if "mem_idle" in r]
        rss = med([r["status"]["VmRSS"] for r in idles])
        rows.append((f"Idle VmRSS, x86_64 (after {idle['window_s']:.0f} s idle, median of {n})",
                     f"{rss / 1024:.2f} MiB (RssAnon {med([m['RssAnon'] for m in mi]) / 1024:.2f}, "
                     f"Private_Dirty {med([m['Private_Dirty'] for m in mi]) / 1024:.2f}, "
                     f"Pss {med([m['Pss'] for m in mi]) / 1024:.2f})" if mi else f"{rss / 1024:.2f} MiB",
                     f"<= 4 MiB: {'OK' if rss <= BUDGET_IDLE_RSS_KB else 'OVER'}",
                     f"4.8 MiB RSS; ours {rss / PEER_IDLE_RSS_KB:.2f}x"))
    if qemus:
        g = med([r["guest"]["rss_kb"] for r in qemus])
        rows.append((f"Idle RSS, ARMv7 under qemu-arm (guest mappings, median of {len(qemus)})",
                     f"{g / 1024:.2f} MiB (anon {med([r['guest']['anon_kb'] for r in qemus]) / 1024:.2f}); "
                     f"qemu process itself {med([r['status']['VmRSS'] for r in qemus]) / 1024:.1f} MiB",
                     f"<= 4 MiB: {'OK' if g <= BUDGET_IDLE_RSS_KB else 'OVER'} (estimate)",
                     f"4.8 MiB; ours {g / PEER_IDLE_RSS_KB:.2f}x"))
    if idles:
        c = idles[0]["cpu"]
        tot = med([r["cpu"]["ms_per_20s_total"] for r in idles])
        rows.append((f"Idle CPU, x86_64 ({idle['window_s']:.0f} s window, median of {n})",
                     f"{tot:.2f} ms per 20 s (round 1: {c['ns'] / 1e6:.1f} ms total, median of 20 s "
                     f"slices {med(c['ms_per_20s_slices']):.2f})",
                     "",
                     f"10-20 ms per 20 s; ours {tot / 15:.3f}x of 15 ms"))
        wk = med([r["cpu"]["wakeups_per_min"] for r in idles])
        per = med([r["cpu"]["switches"] / r["cpu"]["expected_timer_events"] for r in idles])
        rows.append(("Idle wake-ups (context switches)", f"{wk:.1f}/min ({per:.2f} per timer event)",
                     "only real timers", ">= 600/min (100 ms poll loop)"))
    if boot:
        w, cold = boot["warm"], boot["cold"]
        rows.append((f"Start -> first BootNotification, warm (median of {len(w)})",
                     f"{med(w):.1f} ms (min {min(w):.1f}, max {max(w):.1f})", "", ""))
        rows.append((f"Start -> first BootNotification, new store (median of {len(cold)})",
                     f"{med(cold):.1f} ms (min {min(cold):.1f}, max {max(cold):.1f})", "", ""))
    txs = [r["tx"] for r in idles if r.get("tx")]
    if txs and txs[0]["has_token"]:
        k = txs[0].get("transaction_events", {})
        detail = ", ".join(f"{v} {n}" for n, v in k.items())
        hwm = med([t["hwm_kb"] for t in txs])
        rows.append((f"Peak VmHWM through a transaction, x86_64 (median of {len(txs)})",
                     f"{hwm / 1024:.2f} MiB (TransactionEvents of round 1: {detail or 'none!'})",
                     f"<= 6 MiB: {'OK' if hwm <= BUDGET_TX_HWM_KB else 'OVER'}", ""))
    elif txs:
        rows.append(("Peak VmHWM through a transaction, x86_64",
                     f"not available yet (no `ctl token`; plug in/out only: {txs[0]['hwm_kb'] / 1024:.2f} MiB)",
                     "<= 6 MiB", ""))
    elif idles:
        rows.append(("Peak VmHWM through a transaction", "not measured", "<= 6 MiB", ""))

    out("| Figure | Value | Budget | Peer (MicroOcpp) |")
    out("| --- | --- | --- | --- |")
    for r in rows:
        out("| " + " | ".join(r) + " |")

    # The memory table: each figure idle and at its peak through the transaction.
    cols = []
    if idles and "mem_idle" in idles[0]:
        cols.append(("x86_64 idle", [r["mem_idle"] for r in idles]))
        cols.append(("x86_64 peak, transaction", [t["mem_peak"] for t in txs if "mem_peak" in t]))
    if qemus and "mem_idle" in qemus[0]:
        cols.append(("ARMv7 guest idle (qemu-arm)", [r["mem_idle"] for r in qemus]))
        cols.append(("ARMv7 guest peak, transaction",
                     [r["tx"]["mem_peak"] for r in qemus if r.get("tx") and "mem_peak" in r["tx"]]))
    if cols:
        out("")
        out(f"Memory in kB, median of the rounds (min-max): x86_64 {len(idles)}, ARMv7 {len(qemus)}. "
            "x86_64: /proc/PID/status and smaps_rollup of the agent. ARMv7: sums over the guest's "
            "mappings in qemu-arm's /proc/PID/smaps (Anonymous for RssAnon, Rss for VmRSS); peaks "
            "sampled every second (x86_64 VmRSS peak: VmHWM).")
        out("")
        out("| Figure | " + " | ".join(c[0] for c in cols) + " |")
        out("| --- |" + " --- |" * len(cols))
        labels = {"RssAnon": "RssAnon (anonymous: heap, stacks)",
                  "Private_Dirty": "Private_Dirty (written by this process: cannot be reclaimed)",
                  "Pss": "Pss (own share of every resident page)",
                  "VmRSS": "VmRSS (every resident page, clean shared file pages included)"}
        for key in MEM_KEYS:
            out(f"| {labels[key]} | " + " | ".join(mkb([m.get(key) for m in c[1]]) for c in cols) + " |")
    bds = [r["anon_breakdown"] for r in idles if r.get("anon_breakdown")]
    if bds:
        whats = []
        for bd in bds:
            for what, *_ in bd:
                if what not in whats:
                    whats.append(what)
        out("")
        out(f"Idle private memory of the x86_64 agent by mapping (/proc/PID/smaps, kB, median of {len(bds)}):")
        out("")
        out("| Mapping | Anonymous | Private_Dirty |")
        out("| --- | --- | --- |")
        cells = []
        for what in whats:
            an = [next((r[1] for r in bd if r[0] == what), 0) for bd in bds]
            dd = [next((r[2] for r in bd if r[0] == what), 0) for bd in bds]
            cells.append((med(dd), f"| {what} | {mkb(an)} | {mkb(dd)} |"))
        for _, line in sorted(cells, key=lambda c: -c[0]):
            out(line)
        out(f"| total (RssAnon; Private_Dirty also counts written pages of shared file mappings) | "
            f"{mkb([sum(r[1] for r in bd) for bd in bds])} | {mkb([sum(r[2] for r in bd) for bd in bds])} |")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("idle")
    i.add_argument("--agent", required=True)
    i.add_argument("--ctl", help="native binary for `ctl` (default: --agent)")
    i.add_argument("--qemu", help="run the agent under this qemu-user binary")
    i.add_argument("--qemu-ld-prefix", default="/usr/arm-linux-gnueabihf")
    i.add_argument("--work", required=True)
    i.add_argument("--out", required=True)
    i.add_argument("--seconds", type=float, default=600)
    i.add_argument("--settle", type=float, default=10)
    i.add_argument("--sample", type=float, default=20)
    i.add_argument("--interval", type=int, default=10)
    i.add_argument("--csms-ping", type=float, default=20)
    i.add_argument("--transaction", action="store_true")
    i.add_argument("--tx-wait", type=float, default=20)
    i.add_argument("--progress", action="store_true")
    b = sub.add_parser("boot")
    b.add_argument("--agent", required=True)
    b.add_argument("--work", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--runs", type=int, default=11)
    s = sub.add_parser("summary")
    s.add_argument("--results", required=True)
    a = p.parse_args()
    try:
        return {"idle": cmd_idle, "boot": cmd_boot, "summary": cmd_summary}[a.cmd](a)
    finally:
        CHILDREN.stop_all()


if __name__ == "__main__":
    sys.exit(main())
