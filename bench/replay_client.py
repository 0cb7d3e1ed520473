#!/usr/bin/env python3
"""Client-only baseline of the replay benchmark (benches/replay.rs runs it; the venv's Python).

A minimal OCPP-J client with no journal and no logic: it connects to tests/csms/csms.py as the
station (Basic auth, subprotocol ocpp2.0.1), sends a BootNotification, then the TransactionEvent
payloads of --events (one JSON object per line, the same payloads the agent's journal holds)
one CALL at a time, each waiting for its CALLRESULT, as the one-CALL-in-flight rule requires.
Frames are encoded before the clock starts, so the loop is only send, receive, check the id.
What it measures is the round trips the protocol makes unavoidable plus the CSMS's own
processing; the replay benchmark compares the agent's drain time with it.

  replay_client.py --url ws://127.0.0.1:PORT/ocpp --station CP001 --password PW \
                   --events FILE [--count N] --out RESULT.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import sys
import time
import uuid


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def schedstat() -> tuple[int, int]:
    """(ns on a CPU, ns runnable but waiting for a CPU) of this thread, or zeros."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


async def main(a) -> int:
    from websockets.asyncio.client import connect

    with open(a.events, encoding="utf-8") as f:
        payloads = [json.loads(line) for line in f if line.strip()]
    if a.count:
        payloads = payloads[: a.count]
    n = len(payloads)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    frames = [json.dumps([2, i, "TransactionEvent", p], separators=(",", ":")) for i, p in zip(ids, payloads)]
    prefixes = [f'[3,"{i}"' for i in ids]
    auth = base64.b64encode(f"{a.station}:{a.password}".encode()).decode()
    url = f"{a.url.rstrip('/')}/{a.station}"
    async with connect(url, subprotocols=["ocpp2.0.1"], additional_headers={"Authorization": f"Basic {auth}"},
                       compression=None, ping_interval=None, max_size=None) as ws:
        boot_id = str(uuid.uuid4())
        await ws.send(json.dumps([2, boot_id, "BootNotification", {
            "reason": "PowerUp", "chargingStation": {"model": "AC-2", "vendorName": "Example"}}]))
        reply = json.loads(await ws.recv())
        if reply[:2] != [3, boot_id] or reply[2].get("status") != "Accepted":
            print(f"replay_client: BootNotification not accepted: {reply}", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)
        think = 0.0  # time between a CALLRESULT and the next CALL: the client's own share
        c0 = cpu_s()
        s0 = schedstat()
        t0 = time.perf_counter()
        t_recv = t0
        for k in range(n):
            t_send = time.perf_counter()
            if k:
                think += t_send - t_recv
            await ws.send(frames[k])
            reply = await ws.recv()
            t_recv = time.perf_counter()
            if not reply.startswith(prefixes[k]):
                print(f"replay_client: message {k}: unexpected reply {reply[:300]}", file=sys.stderr)
                return 1
        t1 = t_recv
        c1 = cpu_s()
        s1 = schedstat()
    res = {"count": n, "first_send_to_last_result_s": t1 - t0, "think_s": think, "cpu_s": c1 - c0,
           "run_s": (s1[0] - s0[0]) / 1e9, "runqueue_wait_s": (s1[1] - s0[1]) / 1e9}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--station", default="CP001")
    p.add_argument("--password", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--out", required=True)
    sys.exit(asyncio.run(main(p.parse_args())))
