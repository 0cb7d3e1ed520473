#!/usr/bin/env python3
"""Self-test of tests/csms/csms.py.

Starts the CSMS as a subprocess (ephemeral ports, temp dir) and talks to it as
fake charging stations: one built on the `ocpp` library's ChargePoint, and a
raw WebSocket client for malformed frames. Exits non-zero on any failure.

Run:  .venv/bin/python tests/csms/selftest.py  [-v]
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import ocpp
import ocpp.messages
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as call_result16
from ocpp.v16.enums import Action as Action16
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

HERE = os.path.dirname(os.path.abspath(__file__))
CSMS_PY = os.path.join(HERE, "csms.py")
SCHEMAS = os.path.join(os.path.dirname(ocpp.__file__), "v201", "schemas")
PASSWORD = "s3cret-pw"
VERBOSE = "-v" in sys.argv

CS_TO_CSMS = sorted(
    """Authorize BootNotification ClearedChargingLimit DataTransfer
    FirmwareStatusNotification Get15118EVCertificate GetCertificateStatus Heartbeat
    LogStatusNotification MeterValues NotifyChargingLimit NotifyCustomerInformation
    NotifyDisplayMessages NotifyEVChargingNeeds NotifyEVChargingSchedule NotifyEvent
    NotifyMonitoringReport NotifyReport PublishFirmwareStatusNotification
    ReportChargingProfiles ReservationStatusUpdate SecurityEventNotification
    SignCertificate StatusNotification TransactionEvent""".split()
)


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def now_iso():
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --------------------------------------------------------------------------
# CSMS process handling
# --------------------------------------------------------------------------


class CsmsProcess:
    def __init__(self, tmp, name, *extra):
        self.dir = os.path.join(tmp, name)
        self.extra = extra
        os.makedirs(self.dir)
        self.port_file = os.path.join(self.dir, "port")
        self.admin_file = os.path.join(self.dir, "admin-port")
        self.log = os.path.join(self.dir, "csms.jsonl")
        self.stderr_path = os.path.join(self.dir, "stderr.txt")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, CSMS_PY, "--host", "127.0.0.1", "--port", "0",
             "--port-file", self.port_file, "--admin-port-file", self.admin_file,
             "--log", self.log, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
        )
        deadline = time.monotonic() + 20
        while not (os.path.exists(self.port_file) and os.path.exists(self.admin_file)):
            if self.proc.poll() is not None:
                raise Failure(f"csms.py exited early ({self.proc.returncode}): {self.stderr_text()}")
            if time.monotonic() > deadline:
                raise Failure("csms.py did not write its port files within 20s")
            time.sleep(0.05)
        self.port = int(open(self.port_file).read())
        self.admin_port = int(open(self.admin_file).read())

    def url(self, station, path="ocpp"):
        return f"ws://127.0.0.1:{self.port}/{path}/{station}"

    def stderr_text(self):
        if not self.stderr.closed:
            self.stderr.flush()
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def events(self):
        if not os.path.exists(self.log):
            return []
        out = []
        with open(self.log, encoding="utf-8") as f:
            for line in f:
                out.append(json.loads(line))  # every line must be JSON
        return out

    async def wait_event(self, pred, timeout=5.0, what="log event"):
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events():
                if pred(ev):
                    return ev
            if time.monotonic() > deadline:
                raise Failure(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def admin(self, req, timeout=40):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.admin_port)
        try:
            writer.write((json.dumps(req) + "\n").encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout)
            return json.loads(line)
        finally:
            writer.close()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("csms.py did not exit within 10s of the signal") from None
        self.stderr.close()
        return self.proc.returncode


# --------------------------------------------------------------------------
# Fake stations
# --------------------------------------------------------------------------


class FakeStation(ChargePoint):
    """Station side, on the ocpp library."""

    @on(Action.get_variables)
    async def on_get_variables(self, get_variable_data, **kwargs):
        return call_result.GetVariables(get_variable_result=[
            {"attribute_status": "Accepted", "attribute_value": f"value-of-{d['variable']['name']}",
             "component": d["component"], "variable": d["variable"]}
            for d in get_variable_data
        ])

    @on(Action.reset, skip_schema_validation=True)
    async def on_reset(self, type, **kwargs):
        return call_result.Reset(status="Bogus")  # deliberately invalid response

    @on(Action.get_base_report)
    async def on_get_base_report(self, request_id, report_base, **kwargs):
        await asyncio.sleep(1.5)  # slower than the admin timeout used in the test
        return call_result.GetBaseReport(status="Accepted")

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id, **kwargs):
        return call_result.DataTransfer(status="Accepted", data=kwargs.get("data"))


class Station:
    def __init__(self, csms, station_id, password=PASSWORD, subprotocol="ocpp2.0.1", cp_class=None,
                 **connect_kw):
        self.csms = csms
        self.id = station_id
        self.password = password
        self.subprotocol = subprotocol
        self.cp_class = cp_class or FakeStation
        self.connect_kw = connect_kw

    async def __aenter__(self):
        headers = {"Authorization": basic(self.id, self.password)} if self.password else {}
        quoted = self.id.replace("%", "%25").replace(" ", "%20").replace("/", "%2F")
        self.ws = await connect(self.csms.url(quoted), subprotocols=[self.subprotocol],
                                additional_headers=headers, **self.connect_kw)
        self.cp = self.cp_class(self.id, self.ws, response_timeout=10)
        self.task = asyncio.ensure_future(self.cp.start())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await self.ws.close()

    async def closed(self, timeout=5):
        """Wait until the CSMS closes the connection; return the close code received."""
        try:
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"{self.id}: connection not closed within {timeout}s") from None
        return self.ws.close_code

    async def boot(self):
        return await self.cp.call(call.BootNotification(
            charging_station={"model": "SelfTest", "vendor_name": "OCPP-Agent-Tests"}, reason="PowerUp"))


class RawStation:
    """Raw WebSocket station for sending arbitrary frames."""

    def __init__(self, csms, station_id, password=PASSWORD, subprotocol="ocpp2.0.1"):
        self.csms, self.id, self.password, self.subprotocol = csms, station_id, password, subprotocol

    async def __aenter__(self):
        self.ws = await connect(self.csms.url(self.id), subprotocols=[self.subprotocol],
                                additional_headers={"Authorization": basic(self.id, self.password)})
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def send(self, frame):
        await self.ws.send(frame)

    async def recv(self, timeout=5.0):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def rpc(self, action, payload, msg_id=None):
        msg_id = msg_id or str(uuid.uuid4())
        await self.send(json.dumps([2, msg_id, action, payload]))
        resp = await self.recv()
        check(resp[1] == msg_id, f"response id {resp[1]!r} != {msg_id!r}")
        return resp

    async def exchange(self, frame):
        """Sends an (action, payload) CALL or a raw frame; returns the answer."""
        if isinstance(frame, tuple):
            return await self.rpc(*frame)
        await self.send(frame)
        return await self.recv()

    async def expect_silence(self, timeout=0.5):
        try:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            return
        raise Failure(f"expected no frame, got {frame}")


# --------------------------------------------------------------------------
# Minimal valid payloads generated from the official schemas
# --------------------------------------------------------------------------


def load_schema(name, schemas=SCHEMAS):
    with open(os.path.join(schemas, name + ".json"), encoding="utf-8-sig") as f:
        return json.load(f)


def minimal_instance(schema, root=None):
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return minimal_instance(root["definitions"][name], root)
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props[k], root) for k in schema.get("required", [])}
    if t == "array":
        return [minimal_instance(schema["items"], root) for _ in range(max(1, schema.get("minItems", 0)))]
    if t == "string":
        if schema.get("format") == "date-time":
            return now_iso()
        return "x"
    if t == "integer":
        return max(0, schema.get("minimum", 0))
    if t == "number":
        return max(0, schema.get("minimum", 0))
    if t == "boolean":
        return False
    return "x"  # untyped (DataTransfer.data)


def validate_response(action, payload, version="2.0.1"):
    validator = ocpp.messages.get_validator(3, action, version)
    errors = sorted(validator.iter_errors(payload), key=str)
    check(not errors, f"{action} response not schema-valid: {errors[:1]}")


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


async def test_port_files_and_listening(c, c2):
    check(c.port > 0 and c.admin_port > 0 and c.port != c.admin_port, "ports")
    ev = await c.wait_event(lambda e: e["event"] == "listening")
    check(ev["port"] == c.port and ev["admin_port"] == c.admin_port, f"listening event {ev}")
    check(ev["password_required"] is True, "password_required")
    check((await c.admin({"cmd": "ping", "id": 7})) == {"ok": True, "id": 7}, "admin ping")


async def test_boot_heartbeat_status(c, c2):
    async with Station(c, "CP001") as st:
        res = await st.boot()
        check(res.status == "Accepted" and res.interval == 10, f"boot result {res}")
        dt.datetime.fromisoformat(res.current_time.replace("Z", "+00:00"))
        check(res.current_time.endswith("Z"), "currentTime must be UTC Z")
        hb = await st.cp.call(call.Heartbeat())
        check(hb.current_time.endswith("Z"), f"heartbeat {hb}")
        await st.cp.call(call.StatusNotification(
            timestamp=now_iso(), connector_status="Available", evse_id=1, connector_id=1))
    ev = await c.wait_event(lambda e: e["event"] == "connected" and e["station"] == "CP001")
    check(ev["subprotocol"] == "ocpp2.0.1" and ev["auth_user"] == "CP001" and ev["auth_ok"] is True
          and ev["path"] == "/ocpp/CP001", f"connected event {ev}")
    await c.wait_event(lambda e: e["event"] == "disconnected" and e["station"] == "CP001"
                       and e["code"] == 1000 and e["initiator"] == "station", what="disconnected")
    msgs = [e for e in c.events() if e["event"] == "message" and e["station"] == "CP001"]
    boot_in = [m for m in msgs if m["dir"] == "in" and m["type"] == 2 and m["action"] == "BootNotification"]
    check(len(boot_in) == 1, "one BootNotification in")
    check(json.loads(boot_in[0]["raw"]) == [2, boot_in[0]["id"], "BootNotification", boot_in[0]["payload"]],
          "raw frame matches parsed fields")
    boot_out = [m for m in msgs if m["dir"] == "out" and m["type"] == 3 and m["id"] == boot_in[0]["id"]]
    check(len(boot_out) == 1 and boot_out[0]["action"] == "BootNotification"
          and boot_out[0]["payload"]["status"] == "Accepted", f"BootNotification result line {boot_out}")
    actions = [(m["dir"], m["type"], m["action"]) for m in msgs]
    for a in ("Heartbeat", "StatusNotification"):
        check(("in", 2, a) in actions and ("out", 3, a) in actions, f"{a} logged both ways")
    check(not [m for m in msgs if m["type"] == 4], "no CALLERROR for valid messages")
    err = c.stderr_text()
    check("CP001 -> BootNotification {" in err and "CP001 <- BootNotification result {" in err,
          "human-readable stderr lines")


async def test_every_cs_to_csms_action(c, c2):
    """A minimal schema-valid request of every CS->CSMS action gets a valid CALLRESULT."""
    async with RawStation(c, "CP-ALL") as st:
        for action in CS_TO_CSMS:
            payload = minimal_instance(load_schema(action + "Request"))
            resp = await st.rpc(action, payload)
            check(resp[0] == 3, f"{action}: expected CALLRESULT, got {resp}")
            validate_response(action, resp[2])
    msgs = [e for e in c.events() if e["event"] == "message" and e["station"] == "CP-ALL"]
    check(not [m for m in msgs if m["type"] == 4], "no CALLERROR")
    results = {m["action"] for m in msgs if m["dir"] == "out" and m["type"] == 3}
    check(results == set(CS_TO_CSMS), f"result lines carry the action: {set(CS_TO_CSMS) - results}")


INVALID_CASES = [
    # (name, frame or (action, payload), expected error codes)
    ("missing required field", ("BootNotification", {"reason": "PowerUp"}),
     {"OccurrenceConstraintViolation", "ProtocolError"}),
    ("bad date-time", ("StatusNotification", {"timestamp": "yesterday", "connectorStatus": "Available",
                                              "evseId": 1, "connectorId": 1}), {"FormatViolation"}),
    ("date-time without zone", ("StatusNotification", {"timestamp": "2024-01-01T00:00:00",
                                                       "connectorStatus": "Available", "evseId": 1,
                                                       "connectorId": 1}), {"FormatViolation"}),
    ("date-time 6 fraction digits", ("StatusNotification", {"timestamp": "2024-01-01T00:00:00.123456Z",
                                                            "connectorStatus": "Available", "evseId": 1,
                                                            "connectorId": 1}), {"FormatViolation"}),
    ("date-time +01:00 offset", ("StatusNotification", {"timestamp": "2024-01-01T01:00:00+01:00",
                                                        "connectorStatus": "Available", "evseId": 1,
                                                        "connectorId": 1}), {"FormatViolation"}),
    ("integer sent as 1.0", ("StatusNotification", {"timestamp": "2024-01-01T00:00:00Z",
                                                    "connectorStatus": "Available", "evseId": 1.0,
                                                    "connectorId": 1}), {"TypeConstraintViolation"}),
    ("additional property", ("Heartbeat", {"foo": 1}), {"FormatViolation"}),
    ("bad enum", ("StatusNotification", {"timestamp": "2024-01-01T00:00:00Z", "connectorStatus": "Open",
                                         "evseId": 1, "connectorId": 1}), {"FormatViolation"}),
    ("string too long", ("Authorize", {"idToken": {"idToken": "x" * 37, "type": "ISO14443"}}),
     {"TypeConstraintViolation", "FormatViolation"}),
    ("unknown action", ("FooBar", {}), {"NotImplemented"}),  # OCPP-J: "not known by receiver"
    ("CSMS->CS action sent by station", ("Reset", {"type": "Immediate"}), {"NotSupported"}),
    ("CALL with 3 elements", '[2,"id-3el","Heartbeat"]', {"RpcFrameworkError"}),
    ("message type 5", '[5,"id-type5","Heartbeat",{}]', {"MessageTypeNotSupported"}),
    ("payload is a list", '[2,"id-list","Heartbeat",[]]', {"FormatViolation"}),
    ("message id too long", json.dumps([2, "x" * 37, "Heartbeat", {}]), {"RpcFrameworkError"}),
    ("duplicate key", '[2,"id-dup","Heartbeat",{"a":1,"a":2}]', {"RpcFrameworkError"}),
    ("NaN", '[2,"id-nan","MeterValues",{"evseId":NaN,"meterValue":[]}]', {"RpcFrameworkError"}),
    ("not JSON", "this is not json", {"RpcFrameworkError"}),
]


async def test_invalid_messages_get_logged_callerror(c, c2):
    async with RawStation(c, "CP-BAD") as st:
        for name, frame, codes in INVALID_CASES:
            resp = await st.exchange(frame)
            check(resp[0] == 4, f"{name}: expected CALLERROR, got {resp}")
            check(resp[2] in codes, f"{name}: error code {resp[2]} not in {codes}")
            if frame == "this is not json":
                check(resp[1] == "-1", "unparseable frame answered with MessageId -1")
            ev = await c.wait_event(lambda e, i=resp[1]: e["event"] == "message" and e["station"] == "CP-BAD"
                                    and e["dir"] == "out" and e["type"] == 4 and e["id"] == i,
                                    what=f"logged CALLERROR for {name}")
            check(ev["error_code"] == resp[2], f"{name}: logged error_code")
            if isinstance(frame, tuple):
                check(ev["action"] == frame[0], f"{name}: CALLERROR line carries action {ev['action']}")
        # binary frame
        await st.send(b'[2,"id-bin","Heartbeat",{}]')
        resp = await st.recv()
        check(resp[0] == 4 and resp[1] == "id-bin" and resp[2] == "RpcFrameworkError", f"binary: {resp}")
        # a CALLRESULT for a MessageId the CSMS never used: no answer, but a violation line
        await st.send('[3,"never-sent",{}]')
        await st.expect_silence()
        await c.wait_event(lambda e: e["event"] == "violation" and e["station"] == "CP-BAD"
                           and "unknown MessageId" in e["reason"], what="violation for unknown id")
        # the connection is still usable
        resp = await st.rpc("Heartbeat", {})
        check(resp[0] == 3, "still works after bad frames")
    check("CP-BAD <- BootNotification CALLERROR" in c.stderr_text(), "human line for CALLERROR")


async def test_admin_call(c, c2):
    async with Station(c, "CP-ADMIN") as st:
        await st.boot()
        payload = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                                        "variable": {"name": "HeartbeatInterval"}}]}
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "GetVariables",
                           "payload": payload, "timeout": 10, "id": "abc"})
        check(r.get("ok") is True and r.get("id") == "abc", f"GetVariables: {r}")
        res = r["response"]["getVariableResult"][0]
        check(res == {"attributeStatus": "Accepted", "attributeValue": "value-of-HeartbeatInterval",
                      "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
              f"camelCase response {res}")
        out = await c.wait_event(lambda e: e["event"] == "message" and e["dir"] == "out" and e["type"] == 2
                                 and e["action"] == "GetVariables", what="GetVariables CALL line")
        check(out["payload"] == payload, "logged payload is what was sent")
        await c.wait_event(lambda e: e["event"] == "message" and e["dir"] == "in" and e["type"] == 3
                           and e["id"] == out["id"] and e["action"] == "GetVariables", what="result line")

        # keys that do not survive camelCase<->snake_case (customData vendor keys): raw path
        dt_payload = {"vendorId": "org.example", "messageId": "m1",
                      "data": {"someKey": 1, "other_key": [1, 2]},
                      "customData": {"vendorId": "org.example", "fooBar_baz": True}}
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "DataTransfer",
                           "payload": dt_payload})
        check(r.get("ok") is True and r["response"]["status"] == "Accepted", f"DataTransfer: {r}")
        sent = await c.wait_event(lambda e: e["event"] == "message" and e["dir"] == "out" and e["type"] == 2
                                  and e["action"] == "DataTransfer", what="DataTransfer CALL line")
        check(sent["payload"] == dt_payload, f"payload sent verbatim: {sent['payload']}")

        # invalid request: rejected by validation, never sent
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "GetVariables", "payload": {}})
        check(r.get("ok") is False and "validation" in r["error"], f"invalid request: {r}")
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "ChangeAvailability",
                           "payload": {"operationalStatus": "Sideways"}})
        check(r.get("ok") is False, f"bad enum in request: {r}")

        # CALLERROR from the station (handler not implemented in the fake station;
        # the ocpp library answers NotImplemented for a known action without handler)
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "ClearCache", "payload": {}})
        check(r.get("ok") is False and r.get("error_code") == "NotImplemented"
              and "NotImplemented" in r["error"], f"CALLERROR: {r}")

        # schema-invalid CALLRESULT from the station -> error + violation line
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "Reset",
                           "payload": {"type": "Immediate"}})
        check(r.get("ok") is False and "schema validation" in r["error"]
              and r.get("invalid_response") == {"status": "Bogus"}, f"invalid response: {r}")
        await c.wait_event(lambda e: e["event"] == "violation" and e["station"] == "CP-ADMIN",
                           what="violation for invalid CALLRESULT")

        # timeout, then the late response is logged as a warning
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "GetBaseReport",
                           "payload": {"requestId": 1, "reportBase": "FullInventory"}, "timeout": 0.3})
        check(r.get("ok") is False and "timeout" in r["error"], f"timeout: {r}")
        await c.wait_event(lambda e: e["event"] == "warning" and "late response" in e["reason"],
                           what="late response warning")
        # and the next call still works
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "GetVariables",
                           "payload": payload})
        check(r.get("ok") is True, f"call after timeout: {r}")

        # raw frame passthrough (no validation): the station's library answers
        r = await c.admin({"cmd": "raw", "station": "CP-ADMIN",
                           "frame": '[2,"raw-1","GetVariables",{"getVariableData":"nope"}]'})
        check(r.get("ok") is True and r["response"][0] == 4 and r["response"][1] == "raw-1",
              f"raw frame: {r}")

        # errors
        r = await c.admin({"cmd": "call", "station": "CP-ADMIN", "action": "Heartbeat", "payload": {}})
        check(r.get("ok") is False and "CSMS->CS" in r["error"], f"CS->CSMS action refused: {r}")
        r = await c.admin({"cmd": "call", "station": "NOPE", "action": "ClearCache", "payload": {}})
        check(r.get("ok") is False and "not connected" in r["error"], f"unknown station: {r}")
        r = await c.admin({"cmd": "frobnicate"})
        check(r.get("ok") is False, "unknown cmd")
        r = await c.admin({"cmd": "transactions"})
        check(r.get("ok") is False and "1.6" in r["error"], f"transactions is for 1.6: {r}")
    # the CSMS itself never answered the station with a CALLERROR in all of this
    check(not [e for e in c.events() if e["event"] == "message" and e["station"] == "CP-ADMIN"
               and e["dir"] == "out" and e["type"] == 4], "no CALLERROR sent to CP-ADMIN")


async def test_admin_set_boot_and_auth(c, c2):
    r = await c.admin({"cmd": "set", "boot_status": "Pending", "interval": 3})
    check(r.get("ok") is True and r["settings"]["boot_status"] == "Pending", f"set: {r}")
    r = await c.admin({"cmd": "set", "auth": {"T-INVALID": "Invalid",
                                              "T-GROUP": {"status": "Accepted", "group": "G1"},
                                              "T-GID": {"status": "Blocked", "group_id": "G2"}}})
    check(r.get("ok") is True, f"set auth: {r}")
    r = await c.admin({"cmd": "set", "boot_status": "Maybe"})
    check(r.get("ok") is False, "invalid boot_status refused")
    r = await c.admin({"cmd": "set", "auth": {"T": "Sure"}})
    check(r.get("ok") is False, "invalid auth status refused")
    try:
        async with Station(c, "CP-SET") as st:
            res = await st.boot()
            check(res.status == "Pending" and res.interval == 3, f"boot after set: {res}")
            await st.cp.call(call.Heartbeat())
            await c.wait_event(lambda e: e["event"] == "warning" and e["station"] == "CP-SET"
                               and "Pending" in e["reason"], what="warning for message while Pending")
            await c.admin({"cmd": "set", "boot_status": "Accepted", "interval": 10})
            res = await st.boot()
            check(res.status == "Accepted" and res.interval == 10, f"boot after reset: {res}")

            def tok(t):
                return {"id_token": t, "type": "ISO14443"}
            a = await st.cp.call(call.Authorize(id_token=tok("T-INVALID")))
            check(a.id_token_info["status"] == "Invalid", f"authorize invalid: {a}")
            a = await st.cp.call(call.Authorize(id_token=tok("SOMEONE")))
            check(a.id_token_info == {"status": "Accepted"}, f"authorize default: {a}")
            a = await st.cp.call(call.Authorize(id_token=tok("T-GID")))
            check(a.id_token_info == {"status": "Blocked", "group_id_token": {"id_token": "G2", "type": "Central"}},
                  f"authorize group_id: {a}")
            te = await st.cp.call(call.TransactionEvent(
                event_type="Started", timestamp=now_iso(), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "tx-1"}, id_token=tok("T-GROUP"), evse={"id": 1}))
            check(te.id_token_info == {"status": "Accepted", "group_id_token": {"id_token": "G1", "type": "Central"}},
                  f"transaction event: {te}")
            te = await st.cp.call(call.TransactionEvent(
                event_type="Updated", timestamp=now_iso(), trigger_reason="MeterValuePeriodic", seq_no=1,
                transaction_info={"transaction_id": "tx-1"}))
            check(te.id_token_info is None, f"no idTokenInfo without idToken: {te}")
            r = await c.admin({"cmd": "set", "auth": {"T-INVALID": None}, "auth_default": "Unknown"})
            check(r.get("ok") is True and "T-INVALID" not in r["settings"]["auth"], f"remove token: {r}")
            a = await st.cp.call(call.Authorize(id_token=tok("T-INVALID")))
            check(a.id_token_info["status"] == "Unknown", f"auth_default: {a}")
    finally:
        await c.admin({"cmd": "set", "boot_status": "Accepted", "interval": 10, "auth_default": "Accepted"})


async def test_stations_disconnect_reconnect(c, c2):
    async with Station(c, "CP-A") as a, Station(c, "CP B/2") as b:
        r = await c.admin({"cmd": "stations"})
        check(r.get("ok") is True and "CP-A" in r["stations"] and "CP B/2" in r["stations"],
              f"stations (percent-decoded ids): {r}")
        r = await c.admin({"cmd": "disconnect", "station": "CP-A"})
        check(r.get("ok") is True, f"disconnect: {r}")
        code = await a.closed()
        check(code == 1000, f"close code {code}")
        await c.wait_event(lambda e: e["event"] == "disconnected" and e["station"] == "CP-A"
                           and e["initiator"] == "csms" and e["code"] == 1000, what="csms-initiated disconnect")
        r = await c.admin({"cmd": "stations"})
        check(r["stations"] == ["CP B/2"] or "CP-A" not in r["stations"], f"A gone: {r}")
        await b.cp.call(call.Heartbeat())  # B unaffected
        r = await c.admin({"cmd": "disconnect", "station": "CP-A"})
        check(r.get("ok") is False, "disconnect of a gone station fails")
    # reconnect
    async with Station(c, "CP-A") as a:
        r = await c.admin({"cmd": "wait_connected", "station": "CP-A", "timeout": 5})
        check(r.get("ok") is True, f"wait_connected: {r}")
        res = await a.boot()
        check(res.status == "Accepted", "boot after reconnect")
        # a second connection with the same id replaces the first
        async with Station(c, "CP-A") as a2:
            code = await a.closed()
            check(code == 1000, f"old connection closed with {code}")
            hb = await a2.cp.call(call.Heartbeat())
            check(hb.current_time, "new connection works")
            r = await c.admin({"cmd": "call", "station": "CP-A", "action": "GetVariables", "payload": {
                "getVariableData": [{"component": {"name": "C"}, "variable": {"name": "V"}}]}})
            check(r.get("ok") is True, f"admin call goes to the new connection: {r}")
    r = await c.admin({"cmd": "wait_connected", "station": "CP-NEVER", "timeout": 0.2})
    check(r.get("ok") is False, "wait_connected timeout")


async def test_handshake_rejections(c, c2):
    async def expect_status(status, url, **kw):
        try:
            ws = await connect(url, **kw)
        except InvalidStatus as e:
            check(e.response.status_code == status, f"{url}: HTTP {e.response.status_code} != {status}")
            return e.response
        await ws.close()
        raise Failure(f"{url}: handshake unexpectedly accepted")

    url = c.url("CP-AUTH")
    good = {"Authorization": basic("CP-AUTH", PASSWORD)}
    resp = await expect_status(401, url, subprotocols=["ocpp2.0.1"],
                               additional_headers={"Authorization": basic("CP-AUTH", "wrong")})
    check("Basic" in (resp.headers.get("WWW-Authenticate") or ""), "WWW-Authenticate header")
    await expect_status(401, url, subprotocols=["ocpp2.0.1"])
    await expect_status(401, url, subprotocols=["ocpp2.0.1"],
                        additional_headers={"Authorization": basic("OTHER", PASSWORD)})
    await expect_status(400, url, additional_headers=good)  # no subprotocol offered
    await expect_status(400, url, subprotocols=["ocpp1.6"], additional_headers=good)
    await expect_status(404, f"ws://127.0.0.1:{c.port}/ocpp/", subprotocols=["ocpp2.0.1"],
                        additional_headers=good)
    rejected = [e for e in c.events() if e["event"] == "rejected"]
    reasons = " | ".join(e["reason"] for e in rejected)
    check(any("wrong password" in e["reason"] and e["station"] == "CP-AUTH" for e in rejected), reasons)
    check(any("missing Authorization" in e["reason"] for e in rejected), reasons)
    check(any("does not match" in e["reason"] for e in rejected), reasons)
    check(sum("subprotocol" in e["reason"] for e in rejected) >= 2, reasons)
    check(not any(e["event"] == "connected" and e["station"] == "CP-AUTH" for e in c.events()),
          "no rejected station got connected")
    # ... and the right credentials + subprotocol are accepted, with a query string and deeper path
    ws = await connect(f"ws://127.0.0.1:{c.port}/a/b/CP-AUTH?x=1", subprotocols=["ocpp2.0.1"],
                       additional_headers=good)
    check(ws.subprotocol == "ocpp2.0.1", "negotiated subprotocol")
    await ws.close()
    await c.wait_event(lambda e: e["event"] == "connected" and e["station"] == "CP-AUTH"
                       and e["path"] == "/a/b/CP-AUTH?x=1")


async def test_cli_options_quiet_and_sigterm(c, c2):
    # c2: no password, --boot-status Rejected --interval 7 --quiet
    async with Station(c2, "CP-Q", password=None) as st:
        res = await st.boot()
        check(res.status == "Rejected" and res.interval == 7, f"CLI boot status/interval: {res}")
        ev = await c2.wait_event(lambda e: e["event"] == "connected")
        check(ev["auth_user"] is None and ev["auth_ok"] is True, f"no-password connect: {ev}")
        st.cp._response_timeout = 2
        await st.cp.call(call.Heartbeat())  # while Rejected -> warning
        await c2.wait_event(lambda e: e["event"] == "warning" and "Rejected" in e["reason"])
        rc = await asyncio.get_running_loop().run_in_executor(None, c2.stop)
        check(rc == 0, f"exit code after SIGTERM: {rc}")
        code = await st.closed()
        check(code == 1001, f"close code on shutdown: {code}")
    evs = c2.events()
    check(evs[-1]["event"] == "stopped", "last log line is 'stopped'")
    check(any(e["event"] == "disconnected" and e["code"] == 1001 and e["initiator"] == "csms" for e in evs),
          "disconnect logged on shutdown")
    check(c2.stderr_text().strip() == "", f"--quiet prints nothing: {c2.stderr_text()[:300]!r}")


async def test_log_format(c, c2):
    evs = c.events()
    check(evs, "log not empty")
    for e in evs:
        check(isinstance(e.get("t"), str) and e["t"].endswith("Z") and "event" in e, f"line {e}")
        dt.datetime.fromisoformat(e["t"].replace("Z", "+00:00"))
        if e["event"] == "message":
            for k in ("station", "dir", "type", "id", "action", "payload", "raw"):
                check(k in e, f"message line lacks {k}: {e}")
            check(e["dir"] in ("in", "out"), "dir")
            if e["type"] == 4:
                check("error_code" in e, "error_code on type 4")
            if e["type"] in (3, 4) and e["dir"] == "out":
                check(e["action"] is not None or e["id"] == "-1" or e["id"].startswith("id-")
                      or len(e["id"]) > 36, f"out response line without action: {e}")


# --------------------------------------------------------------------------
# OCPP 1.6J (--ocpp 1.6)
# --------------------------------------------------------------------------

SCHEMAS_16 = os.path.join(os.path.dirname(ocpp.__file__), "v16", "schemas")
CP_TO_CS_16 = sorted(
    """Authorize BootNotification DataTransfer DiagnosticsStatusNotification
    FirmwareStatusNotification Heartbeat LogStatusNotification MeterValues
    SecurityEventNotification SignCertificate SignedFirmwareStatusNotification
    StartTransaction StatusNotification StopTransaction""".split()
)
OCPP16_ERROR_CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
                      "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                      "TypeConstraintViolation", "GenericError"}


class FakeChargePoint16(ChargePoint16):
    """A 1.6 charge point, on the ocpp library (ocpp.v16)."""

    @on(Action16.get_configuration)
    async def on_get_configuration(self, key=None, **kwargs):
        return call_result16.GetConfiguration(
            configuration_key=[{"key": k, "readonly": False, "value": f"value-of-{k}"} for k in key or []],
            unknown_key=[])

    @on(Action16.remote_start_transaction)
    async def on_remote_start_transaction(self, id_tag, **kwargs):
        return call_result16.RemoteStartTransaction(status="Accepted")

    @on(Action16.extended_trigger_message)
    async def on_extended_trigger_message(self, requested_message, **kwargs):
        return call_result16.ExtendedTriggerMessage(status="Accepted")

    @on(Action16.reset, skip_schema_validation=True)
    async def on_reset(self, type, **kwargs):
        return call_result16.Reset(status="Bogus")  # deliberately invalid response


async def test_v16_handshake(c16):
    ev = await c16.wait_event(lambda e: e["event"] == "listening")
    check(ev["subprotocol"] == "ocpp1.6" and ev["ocpp_version"] == "1.6", f"listening: {ev}")
    good = {"Authorization": basic("CP16-HS", PASSWORD)}
    for offered in (["ocpp2.0.1"], []):
        try:
            ws = await connect(c16.url("CP16-HS"), subprotocols=offered or None, additional_headers=good)
        except InvalidStatus as e:
            check(e.response.status_code == 400, f"offered {offered}: HTTP {e.response.status_code}")
        else:
            await ws.close()
            raise Failure(f"offered {offered}: a 1.6 CSMS accepted it")
    ws = await connect(c16.url("CP16-HS"), subprotocols=["ocpp2.0.1", "ocpp1.6"], additional_headers=good)
    check(ws.subprotocol == "ocpp1.6", f"negotiated {ws.subprotocol}")
    await ws.close()
    r = await c16.admin({"cmd": "set", "auth": {"T": "Unknown"}})
    check(r.get("ok") is False, f"2.0.1-only status refused in 1.6: {r}")
    r = await c16.admin({"cmd": "set", "auth": {"T": {"status": "Accepted", "message": "hi"}}})
    check(r.get("ok") is False and "personalMessage" in r["error"], f"message refused in 1.6: {r}")
    r = await c16.admin({"cmd": "set", "auth": {"T": {"status": "Accepted", "group": "x" * 21}}})
    check(r.get("ok") is False, f"parentIdTag longer than 20 refused: {r}")


async def test_v16_charge_point_scenario(c16):
    """Boot, status, authorize, start (gets an id), meter values, stop, as a 1.6 charge point."""
    r = await c16.admin({"cmd": "set", "auth": {"T-GRP": {"status": "Accepted", "group": "G1"},
                                                "T-INV": "Invalid"}})
    check(r.get("ok") is True, f"set auth: {r}")
    async with Station(c16, "CP16", subprotocol="ocpp1.6", cp_class=FakeChargePoint16) as st:
        cp = st.cp
        res = await cp.call(call16.BootNotification(charge_point_vendor="OCPP-Agent-Tests",
                                                    charge_point_model="SelfTest16"))
        check(res.status == "Accepted" and res.interval == 10 and res.current_time.endswith("Z"), f"boot {res}")
        hb = await cp.call(call16.Heartbeat())
        check(hb.current_time.endswith("Z"), f"heartbeat {hb}")
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing",
                                                timestamp=now_iso()))
        a = await cp.call(call16.Authorize(id_tag="T-GRP"))
        check(a.id_tag_info == {"status": "Accepted", "parent_id_tag": "G1"}, f"authorize: {a}")
        a = await cp.call(call16.Authorize(id_tag="SOMEONE"))
        check(a.id_tag_info == {"status": "Accepted"}, f"authorize default: {a}")
        start_ts = now_iso()
        s1 = await cp.call(call16.StartTransaction(connector_id=1, id_tag="T-GRP", meter_start=100,
                                                   timestamp=start_ts))
        check(type(s1.transaction_id) is int and s1.id_tag_info == {"status": "Accepted", "parent_id_tag": "G1"},
              f"start: {s1}")
        s2 = await cp.call(call16.StartTransaction(connector_id=2, id_tag="T-INV", meter_start=7,
                                                   timestamp=now_iso(), reservation_id=5))
        check(s2.transaction_id > s1.transaction_id and s2.id_tag_info == {"status": "Invalid"}, f"start 2: {s2}")
        tid = s1.transaction_id
        await cp.call(call16.MeterValues(connector_id=1, transaction_id=tid, meter_value=[
            {"timestamp": now_iso(), "sampled_value": [{"value": "150", "measurand": "Energy.Active.Import.Register",
                                                        "unit": "Wh"}]}]))
        await cp.call(call16.MeterValues(connector_id=0, meter_value=[  # no transaction: not filed
            {"timestamp": now_iso(), "sampled_value": [{"value": "230"}]}]))
        stop = await cp.call(call16.StopTransaction(meter_stop=200, timestamp=now_iso(), transaction_id=tid,
                                                    id_tag="T-GRP", reason="Local"))
        check(stop.id_tag_info == {"status": "Accepted", "parent_id_tag": "G1"}, f"stop: {stop}")
        stop = await cp.call(call16.StopTransaction(meter_stop=8, timestamp=now_iso(),
                                                    transaction_id=s2.transaction_id))
        check(stop.id_tag_info is None, f"stop without idTag: {stop}")
        check(not [e for e in c16.events() if e["event"] in ("violation", "warning")
                   or (e["event"] == "message" and e["type"] == 4)], "a valid scenario: no error lines")
        # a StopTransaction with an id this CSMS never gave: answered, but a violation
        await cp.call(call16.StopTransaction(meter_stop=1, timestamp=now_iso(), transaction_id=tid + 1000))
        await c16.wait_event(lambda e: e["event"] == "violation" and "never assigned" in e["reason"]
                             and e["action"] == "StopTransaction", what="violation for a made-up id")
        # a second StopTransaction for the same transaction: a warning
        await cp.call(call16.StopTransaction(meter_stop=200, timestamp=now_iso(), transaction_id=tid))
        await c16.wait_event(lambda e: e["event"] == "warning" and "already stopped" in e["reason"],
                             what="warning for a second stop")
    r = await c16.admin({"cmd": "transactions", "station": "CP16"})
    check(r.get("ok") is True, f"transactions: {r}")
    txs = {t["transaction_id"]: t for t in r["transactions"]}
    check(set(txs) == {tid, s2.transaction_id}, f"assigned ids {sorted(txs)}")
    t1 = txs[tid]
    check((t1["id_tag"], t1["connector_id"], t1["meter_start"], t1["timestamp"]) == ("T-GRP", 1, 100, start_ts)
          and t1["id_tag_info"] == {"status": "Accepted", "parentIdTag": "G1"}, f"transaction {t1}")
    check(len(t1["meter_values"]) == 1 and t1["meter_values"][0]["payload"]["transactionId"] == tid
          and t1["meter_values"][0]["payload"]["meterValue"][0]["sampledValue"][0]["value"] == "150",
          f"meter values filed under {tid}: {t1['meter_values']}")
    check(len(t1["stops"]) == 2 and t1["stops"][0]["payload"]["meterStop"] == 200, f"stops {t1['stops']}")
    check(txs[s2.transaction_id]["reservation_id"] == 5
          and txs[s2.transaction_id]["id_tag_info"] == {"status": "Invalid"}, "second transaction")
    check([u["payload"]["transactionId"] for u in r["unknown"]] == [tid + 1000], f"unknown: {r['unknown']}")
    ev = await c16.wait_event(lambda e: e["event"] == "transaction" and e["transaction_id"] == tid)
    start_call = [m for m in c16.events() if m["event"] == "message" and m["dir"] == "in"
                  and m["action"] == "StartTransaction" and m["payload"]["connectorId"] == 1]
    check(ev["message_id"] == start_call[0]["id"] == t1["message_id"] and ev["id_tag"] == "T-GRP",
          f"transaction event names the StartTransaction: {ev}")


async def test_v16_every_cp_to_cs_action(c16):
    """A minimal schema-valid request of every 1.6 CP->CS action (Core, Firmware Management,
    security whitepaper) gets a valid CALLRESULT."""
    async with RawStation(c16, "CP16-ALL", subprotocol="ocpp1.6") as st:
        tx_id = None
        for action in ["StartTransaction"] + [a for a in CP_TO_CS_16 if a != "StartTransaction"]:
            payload = minimal_instance(load_schema(action, SCHEMAS_16))
            if action in ("MeterValues", "StopTransaction"):
                payload["transactionId"] = tx_id
            resp = await st.rpc(action, payload)
            check(resp[0] == 3, f"{action}: expected CALLRESULT, got {resp}")
            validate_response(action, resp[2], "1.6")
            if action == "StartTransaction":
                tx_id = resp[2]["transactionId"]
    msgs = [e for e in c16.events() if e.get("station") == "CP16-ALL"]
    check(not [m for m in msgs if m["event"] == "violation" or m.get("type") == 4], "no CALLERROR, no violation")
    results = {m["action"] for m in msgs if m["event"] == "message" and m["dir"] == "out" and m["type"] == 3}
    check(results == set(CP_TO_CS_16), f"results: {set(CP_TO_CS_16) - results}")


def _sn(**kw):
    return {"connectorId": 1, "errorCode": "NoError", "status": "Available", **kw}


INVALID_CASES_16 = [
    # (name, frame or (action, payload), expected 1.6 error codes)
    ("missing required field", ("BootNotification", {"chargePointVendor": "V"}), {"ProtocolError"}),
    ("bad enum", ("StatusNotification", _sn(status="Sideways")), {"FormationViolation"}),
    ("additional property", ("Heartbeat", {"foo": 1}), {"FormationViolation"}),
    ("wrong type", ("StatusNotification", _sn(connectorId="1")), {"TypeConstraintViolation"}),
    ("integer sent as 1.0", ("StatusNotification", _sn(connectorId=1.0)), {"TypeConstraintViolation"}),
    ("idTag longer than 20", ("Authorize", {"idTag": "x" * 21}), {"TypeConstraintViolation"}),
    ("date-time without zone", ("StatusNotification", _sn(timestamp="2024-01-01T00:00:00")),
     {"FormationViolation"}),
    ("date-time +01:00 (strict: UTC)", ("StatusNotification", _sn(timestamp="2024-01-01T01:00:00+01:00")),
     {"FormationViolation"}),
    ("2.0.1 action", ("TransactionEvent", {}), {"NotImplemented"}),
    ("CS->CP action sent by the charge point", ("Reset", {"type": "Hard"}), {"NotSupported"}),
    ("CALL with 3 elements", '[2,"id-3el","Heartbeat"]', {"FormationViolation"}),
    ("message type 5", '[5,"id-type5","Heartbeat",{}]', {"FormationViolation"}),
    ("not JSON", "this is not json", {"FormationViolation"}),
]


async def test_v16_invalid_messages(c16):
    async with RawStation(c16, "CP16-BAD", subprotocol="ocpp1.6") as st:
        for name, frame, codes in INVALID_CASES_16:
            resp = await st.exchange(frame)
            check(resp[0] == 4 and resp[2] in codes and resp[2] in OCPP16_ERROR_CODES,
                  f"{name}: expected CALLERROR {codes}, got {resp}")
        # 1.6 allows any number of fractional digits
        resp = await st.rpc("StatusNotification", _sn(timestamp="2024-01-01T00:00:00.123456Z"))
        check(resp[0] == 3, f"6 fractional digits in 1.6: {resp}")
    check(not [e for e in c16.events() if e["event"] == "message" and e["station"] == "CP16-BAD"
               and e["type"] == 4 and e["error_code"] not in OCPP16_ERROR_CODES], "only 1.6 codes sent")


async def test_v16_admin_call(c16):
    async with Station(c16, "CP16-ADMIN", subprotocol="ocpp1.6", cp_class=FakeChargePoint16):
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "GetConfiguration",
                             "payload": {"key": ["HeartbeatInterval"]}})
        check(r.get("ok") is True and r["response"] == {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                  "value": "value-of-HeartbeatInterval"}], "unknownKey": []}, f"GetConfiguration: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "RemoteStartTransaction",
                             "payload": {"idTag": "T1", "connectorId": 1}})
        check(r.get("ok") is True and r["response"] == {"status": "Accepted"}, f"RemoteStartTransaction: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "ExtendedTriggerMessage",
                             "payload": {"requestedMessage": "SignChargePointCertificate"}})
        check(r.get("ok") is True and r["response"] == {"status": "Accepted"}, f"ExtendedTriggerMessage: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "ClearCache", "payload": {}})
        check(r.get("ok") is False and r.get("error_code") == "NotImplemented", f"CALLERROR: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "Reset", "payload": {"type": "Soft"}})
        check(r.get("ok") is False and r.get("invalid_response") == {"status": "Bogus"}, f"invalid response: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "Reset", "payload": {"type": "Warm"}})
        check(r.get("ok") is False and "validation" in r["error"], f"invalid request: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "GetVariables", "payload": {}})
        check(r.get("ok") is False and "1.6 CSMS->CS" in r["error"], f"a 2.0.1 action refused: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-ADMIN", "action": "StartTransaction", "payload": {}})
        check(r.get("ok") is False, f"a CP->CS action refused: {r}")
        r = await c16.admin({"cmd": "raw", "station": "CP16-ADMIN", "frame": '[2,"raw16","ChangeConfiguration",{}]'})
        check(r.get("ok") is True and r["response"][:2] == [4, "raw16"], f"raw: {r}")
    # a CALLERROR with a code 1.6 does not have (the 2.0.1 spelling) is a violation
    async with RawStation(c16, "CP16-RAW", subprotocol="ocpp1.6") as st:
        pending = asyncio.ensure_future(c16.admin({"cmd": "call", "station": "CP16-RAW", "action": "ClearCache",
                                                   "payload": {}, "timeout": 0.5}))
        req = await st.recv()
        await st.send(json.dumps([4, req[1], "FormatViolation", "2.0.1 spelling", {}]))
        r = await pending
        check(r.get("ok") is False, f"call answered with a 2.0.1 code: {r}")
        await c16.wait_event(lambda e: e["event"] == "violation" and e["station"] == "CP16-RAW"
                             and "errorCode" in e["reason"], what="violation for a 2.0.1 error code")


CS_TO_CP_16 = sorted(
    """RemoteStartTransaction RemoteStopTransaction ChangeConfiguration GetConfiguration Reset
    ChangeAvailability UnlockConnector ClearCache TriggerMessage ReserveNow CancelReservation
    SetChargingProfile ClearChargingProfile GetCompositeSchedule GetLocalListVersion SendLocalList
    UpdateFirmware GetDiagnostics DataTransfer ExtendedTriggerMessage CertificateSigned
    InstallCertificate DeleteCertificate GetInstalledCertificateIds GetLog SignedUpdateFirmware""".split()
)


async def test_v16_admin_call_every_cs_to_cp_action(c16):
    """Admin `call` sends a minimal valid request of every 1.6 Central System -> Charge Point
    action and returns the (validated) answer."""
    async with RawStation(c16, "CP16-EVERY", subprotocol="ocpp1.6") as st:
        for action in CS_TO_CP_16:
            payload = minimal_instance(load_schema(action, SCHEMAS_16))
            pending = asyncio.ensure_future(c16.admin({"cmd": "call", "station": "CP16-EVERY", "action": action,
                                                       "payload": payload, "timeout": 5}))
            req = await st.recv()
            check(req[0] == 2 and req[2] == action and req[3] == payload, f"{action} sent: {req}")
            answer = minimal_instance(load_schema(action + "Response", SCHEMAS_16))
            await st.send(json.dumps([3, req[1], answer]))
            r = await pending
            check(r.get("ok") is True and r["response"] == answer, f"{action}: {r}")
        r = await c16.admin({"cmd": "call", "station": "CP16-EVERY", "action": "Heartbeat", "payload": {}})
        check(r.get("ok") is False, f"a CP->CS action is refused: {r}")


async def test_v16_state_survives_restart(c16):
    """With --state, a restarted CSMS goes on numbering where it stopped."""
    r = await c16.admin({"cmd": "transactions"})
    before = max(t["transaction_id"] for t in r["transactions"] if t["station"] == "CP16")
    c16.stop()
    again = CsmsProcess(os.path.dirname(c16.dir), "v16-again", *c16.extra)
    try:
        async with RawStation(again, "CP16", subprotocol="ocpp1.6") as st:
            start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": now_iso()}
            resp = await st.rpc("StartTransaction", start)
            check(resp[0] == 3 and resp[2]["transactionId"] == before + 1, f"id after restart: {resp}")
            # the same StartTransaction again (a retransmission?): a new id and a warning
            resp = await st.rpc("StartTransaction", start)
            check(resp[0] == 3 and resp[2]["transactionId"] == before + 2, f"id of a repeat: {resp}")
            ev = await again.wait_event(lambda e: e["event"] == "warning" and "repeats" in e["reason"])
            check(f"transaction {before + 1}" in ev["reason"], f"warning names the first: {ev}")
        r = await again.admin({"cmd": "transactions", "station": "CP16"})
        check(len(r["transactions"]) == 4 and r["transactions"][-1]["duplicate_of"] == before + 1,
              f"state kept: {r}")
    finally:
        again.stop()


TESTS_16 = [
    test_v16_handshake,
    test_v16_charge_point_scenario,
    test_v16_every_cp_to_cs_action,
    test_v16_invalid_messages,
    test_v16_admin_call,
    test_v16_admin_call_every_cs_to_cp_action,
    test_v16_state_survives_restart,
]


TESTS = [
    test_port_files_and_listening,
    test_boot_heartbeat_status,
    test_every_cs_to_csms_action,
    test_invalid_messages_get_logged_callerror,
    test_admin_call,
    test_admin_set_boot_and_auth,
    test_stations_disconnect_reconnect,
    test_handshake_rejections,
    test_cli_options_quiet_and_sigterm,
    test_log_format,
]


async def run_all(c, c2, c16):
    passed = failed = 0
    for test, procs in [(t, (c, c2)) for t in TESTS] + [(t, (c16,)) for t in TESTS_16]:
        name = test.__name__
        try:
            await asyncio.wait_for(test(*procs), 60)
            passed += 1
            print(f"PASS {name}", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            if VERBOSE or not isinstance(e, Failure):
                traceback.print_exc()
    return passed, failed


def main():
    import logging
    # The station-side library logs every CALLERROR it sends with a traceback.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("ocpp").setLevel(logging.DEBUG if VERBOSE else logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="csms-selftest-") as tmp:
        c = c2 = c16 = None
        try:
            c = CsmsProcess(tmp, "main", "--password", PASSWORD, "--ping-interval", "0")
            c2 = CsmsProcess(tmp, "quiet", "--boot-status", "Rejected", "--interval", "7", "--quiet")
            c16 = CsmsProcess(tmp, "v16", "--ocpp", "1.6", "--password", PASSWORD, "--ping-interval", "0",
                              "--state", os.path.join(tmp, "v16-state.json"), "--first-transaction-id", "41")
            passed, failed = asyncio.run(run_all(c, c2, c16))
        except Failure as e:
            print(f"FAIL setup: {e}", flush=True)
            passed, failed = 0, 1
        finally:
            for proc in (c, c2, c16):
                if proc is not None:
                    try:
                        proc.stop()
                    except Failure as e:
                        print(f"FAIL shutdown: {e}", flush=True)
                        failed += 1
            if c is not None and (failed or VERBOSE):
                print("---- csms stderr (main) ----\n" + c.stderr_text()[-6000:], file=sys.stderr)
        print(f"{passed} passed, {failed} failed")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
