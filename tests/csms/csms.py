#!/usr/bin/env python3
"""Scriptable OCPP 2.0.1 (or, with --ocpp 1.6, OCPP 1.6J) CSMS for end-to-end tests and
the demo.

An independent test peer for the ocpp-agent, built on the PyPI package `ocpp`
(which validates every message against the official OCPP 2.0.1 / 1.6 JSON schemas)
and `websockets`. See tests/csms/README.md for the CLI, the JSON-lines log
format and the admin protocol.

Run with the project's venv:  .venv/bin/python tests/csms/csms.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import os
import re
import signal
import ssl
import sys
import urllib.parse
import uuid
from http import HTTPStatus
from typing import Any

import jsonschema
import ocpp.messages
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, MessageType, validate_payload
from ocpp.routing import on
from ocpp.v201 import ChargePoint as V201ChargePoint
from ocpp.v201 import call as v201_call
from ocpp.v201 import call_result, datatypes, enums
from ocpp.v201.enums import Action
from ocpp.v16 import ChargePoint as V16ChargePoint
from ocpp.v16 import call as v16_call
from ocpp.v16 import call_result as v16_result
from ocpp.v16 import enums as v16_enums
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

# OCPP 2.0.1 actions initiated by the Charging Station (everything else, plus
# DataTransfer which goes both ways, is initiated by the CSMS).
CS_TO_CSMS_201 = frozenset(
    """Authorize BootNotification ClearedChargingLimit DataTransfer
    FirmwareStatusNotification Get15118EVCertificate GetCertificateStatus Heartbeat
    LogStatusNotification MeterValues NotifyChargingLimit NotifyCustomerInformation
    NotifyDisplayMessages NotifyEVChargingNeeds NotifyEVChargingSchedule NotifyEvent
    NotifyMonitoringReport NotifyReport PublishFirmwareStatusNotification
    ReportChargingProfiles ReservationStatusUpdate SecurityEventNotification
    SignCertificate StatusNotification TransactionEvent""".split()
)
# OCPP 1.6 actions initiated by the Charge Point: Core, Firmware Management and the
# security whitepaper (edition 3); DataTransfer goes both ways.
CS_TO_CSMS_16 = frozenset(
    """Authorize BootNotification DataTransfer DiagnosticsStatusNotification
    FirmwareStatusNotification Heartbeat LogStatusNotification MeterValues
    SecurityEventNotification SignCertificate SignedFirmwareStatusNotification
    StartTransaction StatusNotification StopTransaction""".split()
)

# RPC framework error codes of OCPP-J 2.0.1 (Part 4, CallError).
OCPP201_ERROR_CODES = frozenset(
    """FormatViolation GenericError InternalError MessageTypeNotSupported NotImplemented
    NotSupported OccurrenceConstraintViolation PropertyConstraintViolation ProtocolError
    RpcFrameworkError SecurityError TypeConstraintViolation""".split()
)
# OCPP-J 1.6 section 4.2.3, as printed: the errata sheet (section 5, "known issues that
# will not be fixed") keeps the spellings FormationViolation and OccurenceConstraintViolation.
OCPP16_ERROR_CODES = frozenset(
    """NotImplemented NotSupported InternalError ProtocolError SecurityError FormationViolation
    PropertyConstraintViolation OccurenceConstraintViolation TypeConstraintViolation
    GenericError""".split()
)
# The codes we (and the ocpp library) use, in their 1.6 spelling. 1.6 has no
# RpcFrameworkError / MessageTypeNotSupported: a frame that is not a well-formed
# message "does not conform to the PDU structure" (FormationViolation).
OCPP16_SPELLING = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "RpcFrameworkError": "FormationViolation",
    "MessageTypeNotSupported": "FormationViolation",
}
MAX_MESSAGE_ID_LEN = 36


class Protocol:
    """What differs between the OCPP versions this CSMS speaks (chosen with --ocpp)."""

    def __init__(self, version, subprotocol, all_actions, cs_to_csms, error_codes, spelling,
                 call_module, registration_statuses, authorization_statuses,
                 max_fraction_digits, group_max_len):
        self.version = version
        self.subprotocol = subprotocol
        self.all_actions = frozenset(all_actions)
        self.cs_to_csms = cs_to_csms
        self.csms_to_cs = frozenset((self.all_actions - cs_to_csms) | {"DataTransfer"})
        self.error_codes = error_codes
        self.spelling = spelling
        self.call_module = call_module
        self.registration_statuses = registration_statuses
        self.authorization_statuses = authorization_statuses
        self.max_fraction_digits = max_fraction_digits  # strict date-time rule; None: no limit
        self.group_max_len = group_max_len  # groupIdToken.idToken (2.0.1) / parentIdTag (1.6)

    def error_code(self, code: str) -> str:
        """An error code as this version spells it."""
        return self.spelling.get(code, code)


PROTOCOLS = {
    "2.0.1": Protocol(
        "2.0.1", "ocpp2.0.1", (a.value for a in Action), CS_TO_CSMS_201, OCPP201_ERROR_CODES, {},
        v201_call, [s.value for s in enums.RegistrationStatusEnumType],
        [s.value for s in enums.AuthorizationStatusEnumType], 3, 36),
    "1.6": Protocol(
        "1.6", "ocpp1.6", (a.value for a in v16_enums.Action), CS_TO_CSMS_16, OCPP16_ERROR_CODES,
        OCPP16_SPELLING, v16_call, [s.value for s in v16_enums.RegistrationStatus],
        [s.value for s in v16_enums.AuthorizationStatus], None, 20),
}
PROTO = PROTOCOLS["2.0.1"]  # set from --ocpp


# --------------------------------------------------------------------------
# Strict validation
# --------------------------------------------------------------------------
# The ocpp library validates with jsonschema.Draft4Validator *without* a format
# checker, so `"format": "date-time"` is silently not checked. We wrap the
# library's validator factory so every validation (incoming CALLs, our
# responses, our CALLs, the station's CALLRESULTs) also checks date-time
# strings. Failures surface as the library's own FormatViolation CALLERROR.

STRICT_DATETIME = True  # toggled by --lenient-datetime

_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))"
)

def _check_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return True  # "format" only constrains strings
    m = _DATETIME_RE.fullmatch(value)
    if not m:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.fff]Z)")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    try:
        dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError as e:
        raise ValueError(f"{value!r} is not a valid date-time: {e}") from None
    if second > 60:
        raise ValueError(f"{value!r}: seconds out of range")
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        raise ValueError(f"{value!r}: invalid UTC offset")
    if STRICT_DATETIME:
        frac = m.group(7)
        limit = PROTO.max_fraction_digits
        if frac is not None and limit is not None and len(frac) - 1 > limit:
            raise ValueError(f"{value!r}: more than {limit} fractional second digits (OCPP 2.0.1 limit)")
        if m.group(8) != "Z":
            raise ValueError(f"{value!r}: not UTC with 'Z' designator")
    return True


class _FormatChecker(jsonschema.FormatChecker):
    """Checks only "date-time", with an error message that says what is wrong
    (jsonschema's own message is just "'x' is not a 'date-time'")."""

    def check(self, instance, format):
        if format == "date-time":
            try:
                _check_datetime(instance)
            except ValueError as e:
                raise jsonschema.exceptions.FormatError(str(e), cause=e) from None


FORMAT_CHECKER = _FormatChecker(formats=())

_orig_get_validator = ocpp.messages.get_validator
_strict_validators: dict[int, jsonschema.Draft4Validator] = {}


def _strict_get_validator(message_type_id, action, ocpp_version, parse_float=float):
    base = _orig_get_validator(message_type_id, action, ocpp_version, parse_float)
    strict = _strict_validators.get(id(base))
    if strict is None:
        strict = jsonschema.Draft4Validator(base.schema, format_checker=FORMAT_CHECKER)
        _strict_validators[id(base)] = strict
    return strict


ocpp.messages.get_validator = _strict_get_validator


class FrameError(Exception):
    """A frame that is not a well-formed OCPP-J 2.0.1 message."""

    def __init__(self, code: str, description: str, msg_id: str, answer: bool):
        super().__init__(description)
        self.code = code
        self.description = description
        self.msg_id = msg_id
        self.answer = answer  # True: answer with a CALLERROR (it was, or may be, a CALL)


def strict_json_loads(raw: str) -> Any:
    """json.loads that rejects NaN/Infinity and duplicate object keys."""

    def reject_constant(name):
        raise ValueError(f"{name} is not valid JSON")

    def pairs(items):
        obj = {}
        for k, v in items:
            if k in obj:
                raise ValueError(f"duplicate object key {k!r}")
            obj[k] = v
        return obj

    return json.loads(raw, parse_constant=reject_constant, object_pairs_hook=pairs)


def check_frame(raw: str | bytes) -> list:
    """Parse and structurally check one OCPP-J frame; raise FrameError if bad."""
    if isinstance(raw, (bytes, bytearray)):
        msg_id, answer = "-1", True
        try:
            msg = json.loads(raw)
            if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str):
                msg_id = msg[1]
                answer = msg[0] not in (MessageType.CallResult, MessageType.CallError)
        except Exception:
            pass
        raise FrameError("RpcFrameworkError", "binary WebSocket frame; OCPP-J uses text frames", msg_id, answer)
    try:
        msg = strict_json_loads(raw)
    except (ValueError, RecursionError) as e:
        raise FrameError("RpcFrameworkError", f"frame is not valid JSON: {e}", "-1", True) from None
    if not isinstance(msg, list) or not msg:
        raise FrameError("RpcFrameworkError", "frame is not a non-empty JSON array", "-1", True)
    mtype = msg[0]
    msg_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else "-1"
    if type(mtype) is not int:
        raise FrameError("RpcFrameworkError", "MessageTypeId is not an integer", msg_id, True)
    if mtype not in (2, 3, 4):
        raise FrameError("MessageTypeNotSupported", f"MessageTypeId {mtype} is not supported", msg_id, True)
    answer = mtype == MessageType.Call
    expected_len = {2: 4, 3: 3, 4: 5}[mtype]
    if len(msg) != expected_len:
        raise FrameError(
            "RpcFrameworkError",
            f"message type {mtype} must have {expected_len} elements, got {len(msg)}",
            msg_id,
            answer,
        )
    if not isinstance(msg[1], str):
        raise FrameError("RpcFrameworkError", "MessageId is not a string", "-1", answer)
    if len(msg[1]) > MAX_MESSAGE_ID_LEN:
        raise FrameError(
            "RpcFrameworkError", f"MessageId longer than {MAX_MESSAGE_ID_LEN} characters", msg[1], answer
        )
    if mtype == MessageType.Call:
        if not isinstance(msg[2], str):
            raise FrameError("RpcFrameworkError", "Action is not a string", msg_id, True)
        if not isinstance(msg[3], dict):
            raise FrameError("FormatViolation", "payload is not a JSON object", msg_id, True)
    elif mtype == MessageType.CallResult:
        if not isinstance(msg[2], dict):
            raise FrameError("FormatViolation", "CALLRESULT payload is not a JSON object", msg_id, False)
    else:
        if not isinstance(msg[2], str) or msg[2] not in PROTO.error_codes:
            raise FrameError("RpcFrameworkError", f"CALLERROR has invalid errorCode {msg[2]!r}", msg_id, False)
        if not isinstance(msg[3], str):
            raise FrameError("RpcFrameworkError", "CALLERROR errorDescription is not a string", msg_id, False)
        if len(msg[3]) > 255:
            raise FrameError("RpcFrameworkError", "CALLERROR errorDescription longer than 255", msg_id, False)
        if not isinstance(msg[4], dict):
            raise FrameError("RpcFrameworkError", "CALLERROR errorDetails is not a JSON object", msg_id, False)
    return msg


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def describe_error(e: BaseException | None) -> str:
    """One-line description of a (validation) error from the ocpp library."""
    if isinstance(e, OCPPError):
        cause = e.details.get("cause") if isinstance(e.details, dict) else None
        text = f"{e.code}: {cause if cause else e.description}"
    else:
        text = f"{type(e).__name__}: {e}"
    return text.strip().splitlines()[0] if text.strip() else text


def utc_now_iso() -> str:
    """Current UTC time as RFC 3339 with milliseconds and 'Z' (OCPP style)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def parse_station_path(path: str) -> str | None:
    """Station id = last path segment, percent-decoded (query string ignored)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    last = path.rsplit("/", 1)[-1]
    station = urllib.parse.unquote(last)
    return station or None


def parse_basic_auth(header: str | None) -> tuple[str | None, str | None, str | None]:
    """Return (user, password, error)."""
    if header is None:
        return None, None, "missing Authorization header"
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None, f"unsupported Authorization scheme {scheme!r}"
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None, "malformed Basic credentials"
    user, sep, password = decoded.partition(":")
    if not sep:
        return user, None, "malformed Basic credentials (no ':')"
    return user, password, None


def offered_subprotocols(headers) -> list[str]:
    offered = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        offered.extend(p.strip() for p in value.split(",") if p.strip())
    return offered


# --------------------------------------------------------------------------
# Settings and event sink
# --------------------------------------------------------------------------


class Settings:
    def __init__(self, boot_status: str, interval: int, proto: Protocol):
        self.proto = proto
        self.boot_status = boot_status
        self.interval = interval
        self.auth_default = "Accepted"
        self.password: str | None = None
        # idToken -> {"status": ..., "group": ... or None, "message": ... or None}
        self.auth: dict[str, dict[str, Any]] = {}
        # totalCost of the answer to every TransactionEvent Ended (None: omitted)
        self.total_cost: float | None = None

    def as_dict(self) -> dict:
        return {
            "boot_status": self.boot_status,
            "interval": self.interval,
            "auth_default": self.auth_default,
            "auth": self.auth,
            "total_cost": self.total_cost,
        }

    def apply(self, req: dict) -> None:
        """Apply a `set` admin command; raises ValueError on bad input (nothing applied)."""
        boot_status, interval = self.boot_status, self.interval
        auth_default, auth = self.auth_default, dict(self.auth)
        total_cost = self.total_cost
        if "total_cost" in req:
            tc = req["total_cost"]
            if tc is not None and (type(tc) not in (int, float) or tc < 0):
                raise ValueError("total_cost must be a non-negative number or null")
            if tc is not None and self.proto.version == "1.6":
                raise ValueError("total_cost: OCPP 1.6 has no totalCost")
            total_cost = tc
        if "boot_status" in req:
            if req["boot_status"] not in self.proto.registration_statuses:
                raise ValueError(f"boot_status must be one of {self.proto.registration_statuses}")
            boot_status = req["boot_status"]
        if "interval" in req:
            if type(req["interval"]) is not int or req["interval"] < 0:
                raise ValueError("interval must be a non-negative integer")
            interval = req["interval"]
        if "auth_default" in req:
            if req["auth_default"] not in self.proto.authorization_statuses:
                raise ValueError(f"auth_default must be one of {self.proto.authorization_statuses}")
            auth_default = req["auth_default"]
        if "auth" in req:
            if not isinstance(req["auth"], dict):
                raise ValueError("auth must be an object {idToken: status | {status, group} | null}")
            for token, entry in req["auth"].items():
                if entry is None:
                    auth.pop(token, None)
                    continue
                if isinstance(entry, str):
                    entry = {"status": entry}
                if not isinstance(entry, dict):
                    raise ValueError(f"auth[{token!r}] must be a status string, an object or null")
                unknown = set(entry) - {"status", "group", "group_id", "message"}
                if unknown:
                    raise ValueError(f"auth[{token!r}]: unknown keys {sorted(unknown)}")
                status = entry.get("status", "Accepted")
                if status not in self.proto.authorization_statuses:
                    raise ValueError(f"auth[{token!r}].status must be one of {self.proto.authorization_statuses}")
                group = entry.get("group", entry.get("group_id"))
                max_len = self.proto.group_max_len
                if group is not None and (not isinstance(group, str) or not 0 < len(group) <= max_len):
                    raise ValueError(f"auth[{token!r}].group must be a string of 1..{max_len} characters")
                message = entry.get("message")
                if message is not None and self.proto.version == "1.6":
                    raise ValueError(f"auth[{token!r}].message: OCPP 1.6 has no personalMessage")
                if message is not None and (not isinstance(message, str) or not 0 < len(message) <= 512):
                    raise ValueError(f"auth[{token!r}].message must be a string of 1..512 characters")
                auth[token] = {"status": status, "group": group, "message": message}
        if "password" in req:
            if not isinstance(req["password"], str) or not req["password"]:
                raise ValueError("password must be a non-empty string")
        unknown = set(req) - {"cmd", "id", "boot_status", "interval", "auth", "auth_default", "password", "total_cost"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        self.boot_status, self.interval = boot_status, interval
        self.total_cost = total_cost
        self.auth_default, self.auth = auth_default, auth
        if "password" in req:
            # The Basic auth password the CSMS requires from now on (A01: after the station
            # accepted a new BasicAuthPassword).
            self.password = req["password"]

    def _auth_entry(self, token: str | None) -> tuple[str, str | None, str | None]:
        """(status, group, message) for an idToken (2.0.1) / idTag (1.6)."""
        entry = self.auth.get(token)
        if entry is None:
            return self.auth_default, None, None
        return entry["status"], entry.get("group"), entry.get("message")

    def id_tag_info(self, id_tag: str) -> dict:
        """OCPP 1.6 IdTagInfo (camelCase): status and the group as parentIdTag."""
        status, group, _ = self._auth_entry(id_tag)
        return {"status": status, "parent_id_tag": group} if group else {"status": status}

    def id_token_info(self, id_token: dict) -> datatypes.IdTokenInfoType:
        status, group, message = self._auth_entry(id_token.get("id_token"))
        return datatypes.IdTokenInfoType(
            status=status,
            group_id_token=datatypes.IdTokenType(id_token=group, type="Central") if group else None,
            personal_message=datatypes.MessageContentType(format="UTF8", content=message) if message else None,
        )


class EventSink:
    """JSON-lines log file + human-readable stderr lines."""

    def __init__(self, log_path: str | None, quiet: bool):
        self.quiet = quiet
        self._f = open(log_path, "a", encoding="utf-8") if log_path else None

    def event(self, event: str, **fields) -> None:
        if self._f is None:
            return
        rec = {"t": log_timestamp(), "event": event}
        rec.update(fields)
        try:
            line = compact(rec)
        except (TypeError, ValueError):
            line = compact({k: (v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
                            for k, v in rec.items()})
        self._f.write(line + "\n")
        self._f.flush()

    def human(self, text: str) -> None:
        if self.quiet:
            return
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        try:
            sys.stderr.write(f"{stamp} {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _short(obj: Any, limit: int = 600) -> str:
    text = compact(obj)
    return text if len(text) <= limit else text[:limit] + "…"


class TransactionStore:
    """OCPP 1.6: the transactionIds this CSMS assigned in its StartTransaction answers (per
    station: integers, increasing, never given twice) and the MeterValues and StopTransaction
    it received for each. With --state it lives in that JSON file (rewritten atomically on
    every change, read at start), so a restarted CSMS goes on where it stopped."""

    def __init__(self, path: str | None, first_id: int):
        self.path = path
        self.first_id = first_id
        self.next_id: dict[str, int] = {}
        self.transactions: list[dict] = []
        self.unknown: list[dict] = []  # MeterValues / StopTransaction for an id never assigned
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.next_id = data["next_id"]
            self.transactions = data["transactions"]
            self.unknown = data["unknown"]

    def _save(self) -> None:
        if self.path:
            write_atomic(self.path, compact({"next_id": self.next_id, "transactions": self.transactions,
                                             "unknown": self.unknown}) + "\n")

    def find(self, station: str, tx_id: Any) -> dict | None:
        for tx in self.transactions:
            if tx["station"] == station and tx["transaction_id"] == tx_id:
                return tx
        return None

    def start(self, station: str, message_id: str, payload: dict, id_tag_info: dict) -> dict:
        """Assigns the next id of `station` to this StartTransaction."""
        tx_id = self.next_id.get(station, self.first_id)
        self.next_id[station] = tx_id + 1
        key = ("connectorId", "idTag", "meterStart", "timestamp")
        repeats = [t["transaction_id"] for t in self.transactions
                   if t["station"] == station and all(t["request"].get(k) == payload.get(k) for k in key)]
        tx = {"station": station, "transaction_id": tx_id, "message_id": message_id,
              "received": log_timestamp(), "connector_id": payload.get("connectorId"),
              "id_tag": payload.get("idTag"), "meter_start": payload.get("meterStart"),
              "timestamp": payload.get("timestamp"), "reservation_id": payload.get("reservationId"),
              "id_tag_info": id_tag_info, "request": payload, "duplicate_of": repeats[0] if repeats else None,
              "meter_values": [], "stops": []}
        self.transactions.append(tx)
        self._save()
        return tx

    def add(self, kind: str, station: str, message_id: str, payload: dict) -> dict | None:
        """Files a MeterValues ("meter_values") or StopTransaction ("stops") under its
        transaction; None (and filed as unknown) if this CSMS never assigned that id."""
        entry = {"message_id": message_id, "received": log_timestamp(), "payload": payload}
        tx = self.find(station, payload.get("transactionId"))
        if tx is None:
            self.unknown.append({"station": station, "kind": kind, **entry})
        else:
            tx[kind].append(entry)
        self._save()
        return tx

    def listing(self, station: str | None) -> dict:
        return {"transactions": [t for t in self.transactions if station in (None, t["station"])],
                "unknown": [u for u in self.unknown if station in (None, u["station"])]}


# --------------------------------------------------------------------------
# The per-connection ChargePoint (CSMS side)
# --------------------------------------------------------------------------


class LoggedConnection:
    """Wraps the WebSocket so every raw text frame is recorded exactly as sent/received."""

    def __init__(self, ws: ServerConnection, cp: "SessionBase"):
        self.ws = ws
        self.cp = cp

    async def recv(self):
        raw = await self.ws.recv()
        self.cp.record("in", raw)
        return raw

    async def send(self, raw: str):
        # Record before sending: the response may be read before send() returns.
        self.cp.record("out", raw)
        try:
            await self.ws.send(raw)
        except ConnectionClosed:
            self.cp.csms.sink.event("send_failed", station=self.cp.id, raw=raw)
            raise


_ERROR_CLASSES = {cls.code: cls for cls in OCPPError.__subclasses__()}


class SessionBase:
    """One connected Charging Station, seen from the CSMS: everything but the handlers of
    the station's CALLs, which the version's subclass adds (with its ocpp ChargePoint)."""

    def __init__(self, station_id: str, ws: ServerConnection, csms: "CSMS"):
        self.csms = csms
        self.ws = ws
        self.settings = csms.settings
        # in-CALL id -> action (for logging our responses), out-CALL id -> action
        self._in_calls: dict[str, str] = {}
        self._out_calls: dict[str, str] = {}
        self._expired: dict[str, str | None] = {}  # timed-out out-CALL id -> action
        self._responses: dict[str, list] = {}  # raw parsed response per out-CALL id
        self._raw_waiters: dict[str, asyncio.Future] = {}
        self._in_payloads: dict[str, dict] = {}  # payload (camelCase, as received) of the CALL being handled
        self.closed_by_csms = False
        # Per-call timeouts are enforced by the admin command with wait_for.
        super().__init__(station_id, LoggedConnection(ws, self), response_timeout=24 * 3600)

    # ---- frame recording -------------------------------------------------

    def record(self, direction: str, raw) -> None:
        sink = self.csms.sink
        text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
        rec: dict[str, Any] = {"station": self.id, "dir": direction, "type": None, "id": None,
                               "action": None, "payload": None}
        if isinstance(raw, (bytes, bytearray)):
            rec["binary"] = True
        arrow = "->" if direction == "in" else "<-"
        try:
            msg = json.loads(text)
            ok = isinstance(msg, list) and len(msg) >= 3 and msg[0] in (2, 3, 4)
        except ValueError:
            msg, ok = None, False
        if not ok:
            rec["raw"] = text
            sink.event("message", **rec)
            sink.human(f"{self.id} {arrow} (malformed frame) {text[:300]}")
            return
        mtype, msg_id = msg[0], msg[1]
        rec["type"], rec["id"] = mtype, msg_id
        hashable_id = msg_id if isinstance(msg_id, str) else compact(msg_id)
        if mtype == 2:
            action = msg[2] if isinstance(msg[2], str) else None
            rec["action"] = action
            rec["payload"] = msg[3] if len(msg) > 3 else None
            if action is not None:
                (self._in_calls if direction == "in" else self._out_calls)[hashable_id] = action
            human = f"{self.id} {arrow} {action} {_short(rec['payload'])}"
        else:
            if direction == "out":
                action = self._in_calls.pop(hashable_id, None)
            else:
                action = self._out_calls.get(hashable_id) or self._expired.get(hashable_id)
            rec["action"] = action
            if mtype == 3:
                rec["payload"] = msg[2]
                human = f"{self.id} {arrow} {action or '?'} result {_short(msg[2])}"
            else:
                rec["error_code"] = msg[2]
                rec["error_description"] = msg[3] if len(msg) > 3 else None
                rec["error_details"] = msg[4] if len(msg) > 4 else None
                human = (f"{self.id} {arrow} {action or '?'} CALLERROR {msg[2]}: "
                         f"{rec['error_description']} {_short(rec['error_details'], 300)}")
        rec["raw"] = text
        sink.event("message", **rec)
        sink.human(human)

    def violation(self, reason: str, raw=None, **extra) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else raw
        self.csms.sink.event("violation", station=self.id, reason=reason, raw=text, **extra)
        self.csms.sink.human(f"{self.id} !! protocol violation: {reason}")

    def warning(self, reason: str, **extra) -> None:
        self.csms.sink.event("warning", station=self.id, reason=reason, **extra)
        self.csms.sink.human(f"{self.id} !! warning: {reason}")

    # ---- routing -----------------------------------------------------------

    async def route_message(self, raw):
        try:
            msg = check_frame(raw)
        except FrameError as e:
            code = PROTO.error_code(e.code)
            self.violation(f"{code}: {e.description}", raw)
            if e.answer:
                err = CallError(e.msg_id, code, e.description, {"cause": e.description})
                await self._send(err.to_json())
            return
        mtype, msg_id = msg[0], msg[1]
        if mtype == MessageType.Call:
            action = msg[2]
            state = self.csms.boot_state.get(self.id)
            if action != "BootNotification" and state in ("Pending", "Rejected"):
                self.warning(
                    f"{action} sent while the last BootNotification was answered {state}"
                    + (" (allowed only when triggered by TriggerMessage)" if state == "Pending" else ""),
                    action=action, id=msg_id,
                )
            if action not in self.route_map:
                # The library swaps these two codes; use OCPP-J's meanings.
                if action in PROTO.all_actions:
                    code, desc = "NotSupported", f"{action} is recognized but not supported by this CSMS"
                else:
                    code, desc = "NotImplemented", f"Requested Action {action!r} is not known by this CSMS"
                await self._send(CallError(msg_id, code, desc[:255], {}).to_json())
                return
            self._in_payloads[msg_id] = msg[3]
            try:
                await super().route_message(raw)
            except ConnectionClosed:
                raise
            except Exception as e:  # never let a bug kill the connection's read loop
                logging.getLogger("csms").exception("error handling %s", action)
                err = CallError(msg_id, "InternalError", f"CSMS internal error: {e}"[:255], {})
                await self._send(err.to_json())
            finally:
                self._in_payloads.pop(msg_id, None)
            return
        # CALLRESULT / CALLERROR
        if msg_id in self._raw_waiters:
            self._out_calls.pop(msg_id, None)
            fut = self._raw_waiters.pop(msg_id)
            if not fut.done():
                fut.set_result(msg)
            return
        if msg_id not in self._out_calls:
            if msg_id in self._expired:
                action = self._expired.pop(msg_id)
                self.warning(f"late response to {action} (the CALL already timed out)", id=msg_id, action=action)
            else:
                self.violation("response to an unknown MessageId (no outstanding CALL)", raw, id=msg_id)
            return
        self._out_calls.pop(msg_id, None)
        self._responses[msg_id] = msg
        await super().route_message(raw)

    async def _handle_call(self, msg):
        """The library's CALL handling, with its CALLERROR codes in this version's spelling
        (in 1.6 the library says FormatViolation, which 1.6 spells FormationViolation)."""
        try:
            return await super()._handle_call(msg)
        except OCPPError as e:
            code = PROTO.error_code(e.code)
            if code == e.code:
                raise
            raise _ERROR_CLASSES[code](description=e.description, details=e.details) from e

    # ---- admin-initiated CALLs ---------------------------------------------

    async def _raw_validated_call(self, action: str, payload: dict, unique_id: str) -> None:
        """Same steps as ChargePoint.call(), for payloads whose keys would not
        survive the library's camelCase<->snake_case round trip."""
        request = Call(unique_id=unique_id, action=action, payload=payload)
        await validate_payload(request, self._ocpp_version)
        async with self._call_lock:
            await self._send(request.to_json())
            response = await self._get_specific_response(unique_id, self._response_timeout)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        response.action = action
        await validate_payload(response, self._ocpp_version)

    async def _until_closed(self, aw, timeout: float):
        """Await `aw` with a timeout; raise ConnectionClosed if the station goes away first."""
        task = asyncio.ensure_future(aw)
        closed = asyncio.ensure_future(self.ws.wait_closed())
        try:
            done, _ = await asyncio.wait({task, closed}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            if closed in done:
                # A response read just before the close frame may still be routing: a
                # station that answers and then restarts (Reset) did answer.
                try:
                    return await asyncio.wait_for(asyncio.shield(task), 1.0)
                except asyncio.TimeoutError:
                    raise ConnectionClosed(None, None)
            raise asyncio.TimeoutError
        finally:
            for t in (task, closed):
                if not t.done():
                    t.cancel()

    async def admin_call(self, action: str, payload: dict, timeout: float) -> dict:
        unique_id = str(uuid.uuid4())
        snake = camel_to_snake_case(payload)
        use_library_call = snake_to_camel_case(snake) == payload
        if use_library_call:
            cls = getattr(PROTO.call_module, action)
            try:
                request = cls(**snake)
            except TypeError:
                # Missing/unknown fields: let schema validation explain (never sent).
                use_library_call = False
            else:
                # The library fills in some optional fields (e.g. 1.6 SendLocalList's
                # localAuthorizationList = []): send exactly what was asked for.
                use_library_call = snake_to_camel_case(remove_nones(serialize_as_dict(request))) == payload
                if use_library_call:
                    coro = self.call(request, suppress=False, unique_id=unique_id)
        if not use_library_call:
            coro = self._raw_validated_call(action, payload, unique_id)
        try:
            await self._until_closed(coro, timeout)
            error = None
        except asyncio.TimeoutError:
            if unique_id in self._out_calls:
                self._expired[unique_id] = self._out_calls.pop(unique_id)
            return {"ok": False, "error": f"timeout: no response to {action} within {timeout}s"}
        except ConnectionClosed:
            return {"ok": False, "error": "station disconnected"}
        except (OCPPError, UnknownCallErrorCodeError) as e:
            error = e
        except Exception as e:  # pragma: no cover - defensive
            error = e
        response = self._responses.pop(unique_id, None)
        if response is None:
            # Nothing came back: the request itself was rejected before sending.
            return {"ok": False, "error": f"request rejected by schema validation: {describe_error(error)}"}
        if response[0] == MessageType.CallError:
            return {
                "ok": False,
                "error": f"CALLERROR {response[2]}: {response[3]}",
                "error_code": response[2],
                "error_description": response[3],
                "error_details": response[4],
            }
        if error is not None:
            reason = f"CALLRESULT to {action} failed schema validation: {describe_error(error)}"
            self.violation(reason, compact(response), id=unique_id, action=action)
            return {"ok": False, "error": reason, "invalid_response": response[2]}
        return {"ok": True, "response": response[2]}

    async def admin_raw(self, frame: str, timeout: float) -> dict:
        """Send a frame verbatim (no validation). If it is a CALL, wait for its response."""
        msg_id = None
        try:
            msg = json.loads(frame)
            if isinstance(msg, list) and len(msg) >= 2 and msg[0] == 2 and isinstance(msg[1], str):
                msg_id = msg[1]
        except ValueError:
            pass
        fut = None
        if msg_id is not None:
            fut = asyncio.get_running_loop().create_future()
            self._raw_waiters[msg_id] = fut
        try:
            await self._send(frame)
        except ConnectionClosed:
            self._raw_waiters.pop(msg_id, None)
            return {"ok": False, "error": "station disconnected"}
        if fut is None:
            return {"ok": True}
        try:
            response = await self._until_closed(fut, timeout)
        except ConnectionClosed:
            self._raw_waiters.pop(msg_id, None)
            return {"ok": False, "error": "station disconnected"}
        except asyncio.TimeoutError:
            self._raw_waiters.pop(msg_id, None)
            self._expired[msg_id] = self._out_calls.pop(msg_id, None)
            return {"ok": False, "error": f"timeout: no response within {timeout}s"}
        return {"ok": True, "response": response}

    def _boot_answer(self) -> dict:
        """BootNotification's answer from the settings (the same fields in 1.6 and 2.0.1)."""
        status = self.settings.boot_status
        self.csms.boot_state[self.id] = status
        return {"current_time": utc_now_iso(), "interval": self.settings.interval, "status": status}


class StationSession201(SessionBase, V201ChargePoint):
    """OCPP 2.0.1: the handlers for every CS -> CSMS action."""

    @on(Action.boot_notification)
    async def on_boot_notification(self, charging_station, reason, **kwargs):
        return call_result.BootNotification(**self._boot_answer())

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kwargs):
        return call_result.Heartbeat(current_time=utc_now_iso())

    @on(Action.status_notification)
    async def on_status_notification(self, **kwargs):
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token, **kwargs):
        return call_result.Authorize(id_token_info=self.settings.id_token_info(id_token))

    @on(Action.transaction_event)
    async def on_transaction_event(self, id_token=None, event_type=None, **kwargs):
        info = self.settings.id_token_info(id_token) if id_token is not None else None
        total_cost = self.settings.total_cost if event_type == "Ended" else None
        return call_result.TransactionEvent(id_token_info=info, total_cost=total_cost)

    @on(Action.meter_values)
    async def on_meter_values(self, **kwargs):
        return call_result.MeterValues()

    @on(Action.notify_report)
    async def on_notify_report(self, **kwargs):
        return call_result.NotifyReport()

    @on(Action.notify_event)
    async def on_notify_event(self, **kwargs):
        return call_result.NotifyEvent()

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, **kwargs):
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, **kwargs):
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status_notification(self, **kwargs):
        return call_result.LogStatusNotification()

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, **kwargs):
        return call_result.SignCertificate(status=enums.GenericStatusEnumType.accepted)

    @on(Action.data_transfer)
    async def on_data_transfer(self, **kwargs):
        return call_result.DataTransfer(status=enums.DataTransferStatusEnumType.unknown_vendor_id)

    @on(Action.get_certificate_status)
    async def on_get_certificate_status(self, **kwargs):
        # This test CSMS has no OCSP responder.
        return call_result.GetCertificateStatus(status=enums.GetCertificateStatusEnumType.failed)

    @on(Action.notify_customer_information)
    async def on_notify_customer_information(self, **kwargs):
        return call_result.NotifyCustomerInformation()

    @on(Action.notify_monitoring_report)
    async def on_notify_monitoring_report(self, **kwargs):
        return call_result.NotifyMonitoringReport()

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(self, **kwargs):
        return call_result.ReportChargingProfiles()

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, **kwargs):
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(self, **kwargs):
        return call_result.ClearedChargingLimit()

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(self, **kwargs):
        return call_result.NotifyEVChargingNeeds(status=enums.NotifyEVChargingNeedsStatusEnumType.accepted)

    @on(Action.notify_ev_charging_schedule)
    async def on_notify_ev_charging_schedule(self, **kwargs):
        return call_result.NotifyEVChargingSchedule(status=enums.GenericStatusEnumType.accepted)

    @on(Action.notify_display_messages)
    async def on_notify_display_messages(self, **kwargs):
        return call_result.NotifyDisplayMessages()

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(self, **kwargs):
        return call_result.ReservationStatusUpdate()

    @on(Action.publish_firmware_status_notification)
    async def on_publish_firmware_status_notification(self, **kwargs):
        return call_result.PublishFirmwareStatusNotification()

    @on(Action.get_15118_ev_certificate)
    async def on_get_15118_ev_certificate(self, **kwargs):
        # No contract-certificate backend: answer Failed (exiResponse is required).
        return call_result.Get15118EVCertificate(
            status=enums.Iso15118EVCertificateStatusEnumType.failed, exi_response=""
        )


class StationSession16(SessionBase, V16ChargePoint):
    """OCPP 1.6: the handlers for every Charge Point -> Central System action (Core,
    Firmware Management, security whitepaper edition 3)."""

    @on(v16_enums.Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor, charge_point_model, **kwargs):
        return v16_result.BootNotification(**self._boot_answer())

    @on(v16_enums.Action.heartbeat)
    async def on_heartbeat(self, **kwargs):
        return v16_result.Heartbeat(current_time=utc_now_iso())

    @on(v16_enums.Action.authorize)
    async def on_authorize(self, id_tag, **kwargs):
        return v16_result.Authorize(id_tag_info=self.settings.id_tag_info(id_tag))

    @on(v16_enums.Action.start_transaction)
    async def on_start_transaction(self, id_tag, call_unique_id, **kwargs):
        info = self.settings.id_tag_info(id_tag)
        tx = self.csms.transactions.start(self.id, call_unique_id, self._in_payloads[call_unique_id],
                                          snake_to_camel_case(info))
        self.csms.sink.event("transaction", station=self.id, transaction_id=tx["transaction_id"],
                             message_id=call_unique_id, connector_id=tx["connector_id"], id_tag=id_tag,
                             meter_start=tx["meter_start"], timestamp=tx["timestamp"],
                             id_tag_status=info["status"], duplicate_of=tx["duplicate_of"])
        if tx["duplicate_of"] is not None:
            self.warning(f"StartTransaction repeats transaction {tx['duplicate_of']} (same connectorId, "
                         f"idTag, meterStart and timestamp); it gets a new id {tx['transaction_id']}",
                         id=call_unique_id, action="StartTransaction")
        return v16_result.StartTransaction(transaction_id=tx["transaction_id"], id_tag_info=info)

    def _file(self, kind: str, action: str, call_unique_id: str) -> None:
        """Files a MeterValues / StopTransaction under the transaction its transactionId names:
        an id this CSMS never gave this station is a violation (a made-up id)."""
        payload = self._in_payloads[call_unique_id]
        tx = self.csms.transactions.add(kind, self.id, call_unique_id, payload)
        tx_id = payload.get("transactionId")
        if tx is None:
            self.violation(f"{action} for transactionId {tx_id}, which this CSMS never assigned to "
                           f"{self.id!r}", compact(payload), id=call_unique_id, action=action)
        elif tx["stops"] and (kind == "meter_values" or len(tx["stops"]) > 1):
            self.warning(f"{action} for transactionId {tx_id}, which was already stopped",
                         id=call_unique_id, action=action)

    @on(v16_enums.Action.meter_values)
    async def on_meter_values(self, call_unique_id, transaction_id=None, **kwargs):
        if transaction_id is not None:
            self._file("meter_values", "MeterValues", call_unique_id)
        return v16_result.MeterValues()

    @on(v16_enums.Action.stop_transaction)
    async def on_stop_transaction(self, call_unique_id, id_tag=None, **kwargs):
        self._file("stops", "StopTransaction", call_unique_id)
        info = self.settings.id_tag_info(id_tag) if id_tag is not None else None
        return v16_result.StopTransaction(id_tag_info=info)

    @on(v16_enums.Action.status_notification)
    async def on_status_notification(self, **kwargs):
        return v16_result.StatusNotification()

    @on(v16_enums.Action.data_transfer)
    async def on_data_transfer(self, **kwargs):
        return v16_result.DataTransfer(status=v16_enums.DataTransferStatus.unknown_vendor_id)

    @on(v16_enums.Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, **kwargs):
        return v16_result.DiagnosticsStatusNotification()

    @on(v16_enums.Action.firmware_status_notification)
    async def on_firmware_status_notification(self, **kwargs):
        return v16_result.FirmwareStatusNotification()

    @on(v16_enums.Action.security_event_notification)
    async def on_security_event_notification(self, **kwargs):
        return v16_result.SecurityEventNotification()

    @on(v16_enums.Action.sign_certificate)
    async def on_sign_certificate(self, **kwargs):
        return v16_result.SignCertificate(status=v16_enums.GenericStatus.accepted)

    @on(v16_enums.Action.log_status_notification)
    async def on_log_status_notification(self, **kwargs):
        return v16_result.LogStatusNotification()

    @on(v16_enums.Action.signed_firmware_status_notification)
    async def on_signed_firmware_status_notification(self, **kwargs):
        return v16_result.SignedFirmwareStatusNotification()


SESSION_CLASSES = {"2.0.1": StationSession201, "1.6": StationSession16}


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class CSMS:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.settings = Settings(args.boot_status, args.interval, PROTO)
        self.sink = EventSink(args.log, args.quiet)
        self.transactions = TransactionStore(args.state, args.first_transaction_id)
        self.stations: dict[str, SessionBase] = {}
        self.boot_state: dict[str, str] = {}
        self.shutting_down = False
        self._stop = asyncio.Event()

    # ---- WebSocket handshake -------------------------------------------------

    def _handshake_info(self, request) -> dict:
        station = parse_station_path(request.path)
        user, password, auth_error = parse_basic_auth(request.headers.get("Authorization"))
        return {"station": station, "path": request.path, "user": user, "password": password,
                "auth_error": auth_error, "offered": offered_subprotocols(request.headers)}

    def _reject(self, connection, status: HTTPStatus, reason: str, info: dict, **headers):
        peer = _peer(connection)
        self.sink.event("rejected", station=info["station"], path=info["path"], reason=reason,
                        http_status=int(status), auth_user=info["user"],
                        subprotocols=info["offered"], peer=peer)
        self.sink.human(f"{info['station'] or '?'} handshake rejected ({int(status)}): {reason}")
        response = connection.respond(status, reason + "\n")
        for k, v in headers.items():
            response.headers[k.replace("_", "-")] = v
        return response

    def process_request(self, connection, request):
        info = self._handshake_info(request)
        if self.shutting_down:
            return self._reject(connection, HTTPStatus.SERVICE_UNAVAILABLE, "CSMS shutting down", info)
        if info["station"] is None:
            return self._reject(connection, HTTPStatus.NOT_FOUND,
                                "no station id: the URL path must end with /<station id>", info)
        if PROTO.subprotocol not in info["offered"]:
            return self._reject(connection, HTTPStatus.BAD_REQUEST,
                                f"subprotocol {PROTO.subprotocol} not offered (offered: {info['offered']})", info)
        required = self.settings.password if self.settings.password is not None else self.args.password
        if required is not None:
            if info["auth_error"] is not None:
                return self._reject(connection, HTTPStatus.UNAUTHORIZED, info["auth_error"], info,
                                    WWW_Authenticate='Basic realm="OCPP", charset="UTF-8"')
            if info["user"] != info["station"]:
                return self._reject(connection, HTTPStatus.UNAUTHORIZED,
                                    f"Basic auth user {info['user']!r} does not match station id "
                                    f"{info['station']!r}", info,
                                    WWW_Authenticate='Basic realm="OCPP", charset="UTF-8"')
            if not hmac.compare_digest(info["password"].encode(), required.encode()):
                return self._reject(connection, HTTPStatus.UNAUTHORIZED,
                                    f"wrong password for {info['user']!r}", info,
                                    WWW_Authenticate='Basic realm="OCPP", charset="UTF-8"')
        return None

    async def handle_station(self, ws: ServerConnection) -> None:
        info = self._handshake_info(ws.request)
        station = info["station"]
        session = SESSION_CLASSES[PROTO.version](station, ws, self)
        old = self.stations.get(station)
        self.stations[station] = session
        cert = ws.transport.get_extra_info("peercert") if self.args.tls_cert else None
        client_subject = ({k: v for rdn in cert.get("subject", ()) for (k, v) in rdn}
                          if cert else None)
        tls_version = ws.transport.get_extra_info("ssl_object").version() if self.args.tls_cert else None
        self.sink.event("connected", station=station, subprotocol=ws.subprotocol, auth_user=info["user"],
                        auth_ok=True, path=info["path"], peer=_peer(ws),
                        password_required=self.args.password is not None,
                        tls=tls_version, client_cert_subject=client_subject)
        self.sink.human(f"{station} connected (subprotocol {ws.subprotocol}, path {info['path']}, "
                        f"from {_peer(ws)})")
        if old is not None:
            session.warning("station reconnected while its previous connection was still open; "
                            "closing the old connection")
            old.closed_by_csms = True
            asyncio.get_running_loop().create_task(old.ws.close(1000, "replaced by a new connection"))
        try:
            await session.start()
        except ConnectionClosed:
            pass
        finally:
            if self.stations.get(station) is session:
                del self.stations[station]
            code = ws.close_code
            self.sink.event("disconnected", station=station, code=code, reason=ws.close_reason,
                            initiator="csms" if (session.closed_by_csms or self.shutting_down) else "station")
            self.sink.human(f"{station} disconnected (code {code}{' ' + ws.close_reason if ws.close_reason else ''})")

    # ---- admin protocol --------------------------------------------------------

    async def handle_admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    resp = {"ok": False, "error": "request line too long"}
                    writer.write((compact(resp) + "\n").encode())
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("request must be a JSON object")
                except ValueError as e:
                    resp = {"ok": False, "error": f"invalid request: {e}"}
                    req = None
                else:
                    try:
                        resp = await self.admin_command(req)
                    except Exception as e:  # keep the admin connection alive
                        logging.getLogger("csms").exception("admin command failed")
                        resp = {"ok": False, "error": f"internal error: {e!r}"}
                    if "id" in req:
                        resp["id"] = req["id"]
                self.sink.event("admin", request=req, ok=resp.get("ok"),
                                error=resp.get("error"))
                writer.write((compact(resp) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _station(self, req: dict) -> SessionBase:
        station = req.get("station")
        if not isinstance(station, str):
            raise ValueError("'station' (string) is required")
        session = self.stations.get(station)
        if session is None:
            raise LookupError(f"station {station!r} is not connected")
        return session

    @staticmethod
    def _timeout(req: dict, default: float = 30.0) -> float:
        timeout = req.get("timeout", default)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError("'timeout' must be a positive number of seconds")
        return float(timeout)

    async def admin_command(self, req: dict) -> dict:
        cmd = req.get("cmd")
        try:
            if cmd == "ping":
                return {"ok": True}
            if cmd == "stations":
                return {"ok": True, "stations": sorted(self.stations)}
            if cmd == "set":
                self.settings.apply(req)
                return {"ok": True, "settings": self.settings.as_dict()}
            if cmd == "call":
                action = req.get("action")
                if action not in PROTO.csms_to_cs:
                    raise ValueError(f"'action' must be an OCPP {PROTO.version} CSMS->CS action, got {action!r}")
                payload = req.get("payload", {})
                if not isinstance(payload, dict):
                    raise ValueError("'payload' must be a JSON object")
                timeout = self._timeout(req)
                return await self._station(req).admin_call(action, payload, timeout)
            if cmd == "raw":
                frame = req.get("frame")
                if not isinstance(frame, str):
                    frame = compact(frame)
                timeout = self._timeout(req)
                return await self._station(req).admin_raw(frame, timeout)
            if cmd == "disconnect":
                session = self._station(req)
                code = req.get("code", 1000)
                reason = req.get("reason", "closed by CSMS")
                session.closed_by_csms = True
                await session.ws.close(code, reason)
                return {"ok": True}
            if cmd == "wait_connected":
                station = req.get("station")
                if not isinstance(station, str):
                    raise ValueError("'station' (string) is required")
                timeout = self._timeout(req)
                deadline = asyncio.get_running_loop().time() + timeout
                while station not in self.stations:
                    if asyncio.get_running_loop().time() >= deadline:
                        return {"ok": False, "error": f"station {station!r} did not connect within {timeout}s"}
                    await asyncio.sleep(0.05)
                return {"ok": True}
            if cmd == "settings":
                return {"ok": True, "settings": self.settings.as_dict()}
            if cmd == "transactions":
                if PROTO.version != "1.6":
                    raise ValueError("transactions: only with --ocpp 1.6 (in 2.0.1 the station chooses "
                                     "the transactionId)")
                station = req.get("station")
                if station is not None and not isinstance(station, str):
                    raise ValueError("'station' must be a string")
                return {"ok": True, **self.transactions.listing(station)}
            return {"ok": False, "error": f"unknown cmd {cmd!r}"}
        except (ValueError, LookupError) as e:
            return {"ok": False, "error": str(e)}

    # ---- lifecycle -----------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def tls_context(self) -> ssl.SSLContext | None:
        """wss:// for security profiles 2 and 3: TLS 1.2+, and client certificates required
        when --tls-client-ca is given (profile 3)."""
        if not self.args.tls_cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion[self.args.tls_min_version]
        if self.args.tls_max_version:
            ctx.maximum_version = ssl.TLSVersion[self.args.tls_max_version]
        ctx.load_cert_chain(self.args.tls_cert, self.args.tls_key)
        if self.args.tls_client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.args.tls_client_ca)
        return ctx

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        ping = self.args.ping_interval if self.args.ping_interval > 0 else None
        server = await serve(
            self.handle_station,
            self.args.host,
            self.args.port,
            subprotocols=[PROTO.subprotocol],
            process_request=self.process_request,
            compression=None,
            ping_interval=ping,
            ping_timeout=ping,
            max_size=self.args.max_size,
            ssl=self.tls_context(),
        )
        port = server.sockets[0].getsockname()[1]
        admin_server = None
        admin_port = None
        if self.args.admin_port_file:
            admin_server = await asyncio.start_server(self.handle_admin, "127.0.0.1", 0, limit=64 * 2**20)
            admin_port = admin_server.sockets[0].getsockname()[1]
            write_atomic(self.args.admin_port_file, f"{admin_port}\n")
        if self.args.port_file:
            write_atomic(self.args.port_file, f"{port}\n")
        self.sink.event("listening", host=self.args.host, port=port, admin_port=admin_port,
                        subprotocol=PROTO.subprotocol, ocpp_version=PROTO.version,
                        password_required=self.args.password is not None,
                        boot_status=self.settings.boot_status, interval=self.settings.interval,
                        strict_datetime=STRICT_DATETIME, pid=os.getpid())
        self.sink.human(f"CSMS listening on ws://{self.args.host}:{port}/<path>/<station id> "
                        f"(subprotocol {PROTO.subprotocol}"
                        + (f", admin on 127.0.0.1:{admin_port}" if admin_port else "") + ")")
        await self._stop.wait()
        self.shutting_down = True
        self.sink.human("CSMS shutting down")
        if admin_server is not None:
            admin_server.close()
        server.close()  # closes station connections with 1001 (going away)
        try:
            await asyncio.wait_for(server.wait_closed(), 15)
        except asyncio.TimeoutError:
            pass
        self.sink.event("stopped")
        self.sink.close()
        return 0


def _peer(ws) -> str | None:
    try:
        addr = ws.remote_address
        return f"{addr[0]}:{addr[1]}" if addr else None
    except Exception:
        return None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Scriptable OCPP 2.0.1 / 1.6J CSMS test peer (ocpp + websockets).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=9000, help="WebSocket port; 0 = ephemeral")
    p.add_argument("--port-file", help="write the actual WebSocket port here (atomically) once listening")
    p.add_argument("--admin-port-file",
                   help="also serve the JSON-lines admin protocol on 127.0.0.1:<ephemeral>; write its port here")
    p.add_argument("--log", help="append a JSON-lines record of all events/messages to this file")
    p.add_argument("--password", help="require HTTP Basic auth <station id>:<PASSWORD>")
    p.add_argument("--tls-cert", help="serve wss:// with this PEM certificate chain")
    p.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", help="require TLS client certificates issued by this PEM CA")
    p.add_argument("--tls-min-version", default="TLSv1_2", choices=["TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"],
                   help="lowest TLS version accepted (default TLSv1_2)")
    p.add_argument("--tls-max-version", choices=["TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3"],
                   help="highest TLS version offered")
    p.add_argument("--ocpp", default="2.0.1", choices=sorted(PROTOCOLS),
                   help="OCPP version: the subprotocol required (ocpp2.0.1 / ocpp1.6) and the messages spoken")
    p.add_argument("--state", help="OCPP 1.6: keep the assigned transactionIds (and what was received for "
                                   "them) in this JSON file, read again at start (survives a restart)")
    p.add_argument("--first-transaction-id", type=int, default=1,
                   help="OCPP 1.6: the first transactionId given to each station")
    p.add_argument("--boot-status", default="Accepted", choices=PROTOCOLS["2.0.1"].registration_statuses,
                   help="status of BootNotificationResponse")
    p.add_argument("--interval", type=int, default=10,
                   help="interval in BootNotificationResponse (heartbeat / boot retry interval)")
    p.add_argument("--ping-interval", type=float, default=20,
                   help="WebSocket ping interval and timeout in seconds; 0 disables pings")
    p.add_argument("--max-size", type=int, default=4 * 2**20, help="maximum incoming frame size in bytes")
    p.add_argument("--lenient-datetime", action="store_true",
                   help="accept any RFC 3339 date-time (offsets other than Z, >3 fractional digits)")
    p.add_argument("--quiet", action="store_true", help="no human-readable output on stderr")
    p.add_argument("--debug", action="store_true", help="verbose library logging on stderr")
    args = p.parse_args(argv)
    if args.interval < 0:
        p.error("--interval must be >= 0")
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0..65535")
    return args


def main(argv=None) -> int:
    global STRICT_DATETIME, PROTO
    args = parse_args(argv)
    STRICT_DATETIME = not args.lenient_datetime
    PROTO = PROTOCOLS[args.ocpp]
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    if not args.debug:
        # The library logs (with tracebacks) every CALLERROR it sends; our own
        # message lines already show them.
        logging.getLogger("ocpp").setLevel(logging.CRITICAL)
        logging.getLogger("websockets").setLevel(logging.CRITICAL if args.quiet else logging.ERROR)
    if args.quiet:
        logging.getLogger("csms").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_amain(args))
    except OSError as e:
        print(f"csms.py: error: {e}", file=sys.stderr)
        return 1


async def _amain(args) -> int:
    return await CSMS(args).run()


if __name__ == "__main__":
    sys.exit(main())
