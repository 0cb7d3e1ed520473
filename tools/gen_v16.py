#!/usr/bin/env python3
"""Generate src/ocpp/v16/generated.rs from the OCPP 1.6J JSON schemas.

Usage:
    python3 tools/gen_v16.py           # (re)write src/ocpp/v16/generated.rs
    python3 tools/gen_v16.py --check   # exit 1 if the committed file is stale

Reads schemas/ocpp-1.6/*.json (the 56 official OCPP 1.6J schemas, draft-04) and
schemas/ocpp-1.6-security/*.json (the 22 of the 1.6 security whitepaper,
draft-06); a request is `{Action}.json`, its response `{Action}Response.json`.
Emits the same things as tools/gen_v201.py (tools/ocppgen.py does the work for
both): `{Action}Request` / `{Action}Response` structs, one Rust type per shared
definition, the `Action` enum and static validation tables of type
`crate::ocpp::schema::Schema` (table set `TableSet::V16`), which the one
validator (`crate::ocpp::validate`) walks.

The 1.6J schemas have no `definitions`: every object and enum is inline. Before
parsing, each inline object or enum is moved into `definitions` under the name
the OCPP 1.6 specification gives its type (edition 2, chapter 7 "Types"), taken
from SPEC_TYPES below by property name, or by the enclosing type and property
name for the generic `status` / `type` properties. An inline object or enum
that neither table names gets `{EnclosingType}{Property}` (e.g.
`StatusNotificationRequestStatus`) and a note. Types that share a name must be
structurally identical across all files (the shared generator checks; a
difference would be generated as `{Name}{Message}` with a note). Spec names
are kept verbatim (`ChargingProfilePurposeType`, `ResetType`); definitions of
the security schemas are named as in 2.0.1 (`LogEnumType` -> `LogEnum`).

The generator fails loudly on any schema keyword it does not understand.
Python 3.11, standard library only.
"""

import copy
import sys

from ocppgen import ROOT, SchemaError, Version, main, type_name

DRAFT_04 = "http://json-schema.org/draft-04/schema#"
DRAFT_06 = "http://json-schema.org/draft-06/schema#"

# The types of OCPP 1.6 edition 2, chapter 7, and their section numbers.
SPEC_TYPES = {
    "AuthorizationData": "7.1",
    "AuthorizationStatus": "7.2",
    "AvailabilityStatus": "7.3",
    "AvailabilityType": "7.4",
    "CancelReservationStatus": "7.5",
    "ChargePointErrorCode": "7.6",
    "ChargePointStatus": "7.7",
    "ChargingProfile": "7.8",
    "ChargingProfileKindType": "7.9",
    "ChargingProfilePurposeType": "7.10",
    "ChargingProfileStatus": "7.11",
    "ChargingRateUnitType": "7.12",
    "ChargingSchedule": "7.13",
    "ChargingSchedulePeriod": "7.14",
    "ClearCacheStatus": "7.20",
    "ClearChargingProfileStatus": "7.21",
    "ConfigurationStatus": "7.22",
    "DataTransferStatus": "7.23",
    "DiagnosticsStatus": "7.24",
    "FirmwareStatus": "7.25",
    "GetCompositeScheduleStatus": "7.26",
    "IdTagInfo": "7.27",
    "KeyValue": "7.29",
    "Location": "7.30",
    "Measurand": "7.31",
    "MessageTrigger": "7.32",
    "MeterValue": "7.33",
    "Phase": "7.34",
    "ReadingContext": "7.35",
    "Reason": "7.36",
    "RecurrencyKindType": "7.37",
    "RegistrationStatus": "7.38",
    "RemoteStartStopStatus": "7.39",
    "ReservationStatus": "7.40",
    "ResetStatus": "7.41",
    "ResetType": "7.42",
    "SampledValue": "7.43",
    "TriggerMessageStatus": "7.44",
    "UnitOfMeasure": "7.45",
    "UnlockStatus": "7.46",
    "UpdateStatus": "7.47",
    "UpdateType": "7.48",
    "ValueFormat": "7.49",
}

# Property name -> spec type, wherever the property occurs (its messages' field tables).
BY_PROPERTY = {
    "idTagInfo": "IdTagInfo",
    "localAuthorizationList": "AuthorizationData",
    "configurationKey": "KeyValue",
    "meterValue": "MeterValue",
    "transactionData": "MeterValue",
    "sampledValue": "SampledValue",
    "context": "ReadingContext",
    "format": "ValueFormat",
    "measurand": "Measurand",
    "phase": "Phase",
    "location": "Location",
    "unit": "UnitOfMeasure",
    "chargingProfile": "ChargingProfile",
    "csChargingProfiles": "ChargingProfile",
    "chargingProfileKind": "ChargingProfileKindType",
    "chargingProfilePurpose": "ChargingProfilePurposeType",
    "recurrencyKind": "RecurrencyKindType",
    "chargingSchedule": "ChargingSchedule",
    "chargingSchedulePeriod": "ChargingSchedulePeriod",
    "chargingRateUnit": "ChargingRateUnitType",
    "errorCode": "ChargePointErrorCode",
    "reason": "Reason",
    "requestedMessage": "MessageTrigger",
    "updateType": "UpdateType",
}

# (enclosing type, property) -> spec type, for properties whose name says little.
BY_PARENT_PROPERTY = {
    ("IdTagInfo", "status"): "AuthorizationStatus",
    ("BootNotificationResponse", "status"): "RegistrationStatus",
    ("CancelReservationResponse", "status"): "CancelReservationStatus",
    ("ChangeAvailabilityRequest", "type"): "AvailabilityType",
    ("ChangeAvailabilityResponse", "status"): "AvailabilityStatus",
    ("ChangeConfigurationResponse", "status"): "ConfigurationStatus",
    ("ClearCacheResponse", "status"): "ClearCacheStatus",
    ("ClearChargingProfileResponse", "status"): "ClearChargingProfileStatus",
    ("DataTransferResponse", "status"): "DataTransferStatus",
    ("DiagnosticsStatusNotificationRequest", "status"): "DiagnosticsStatus",
    ("FirmwareStatusNotificationRequest", "status"): "FirmwareStatus",
    ("GetCompositeScheduleResponse", "status"): "GetCompositeScheduleStatus",
    ("RemoteStartTransactionResponse", "status"): "RemoteStartStopStatus",
    ("RemoteStopTransactionResponse", "status"): "RemoteStartStopStatus",
    ("ReserveNowResponse", "status"): "ReservationStatus",
    ("ResetRequest", "type"): "ResetType",
    ("ResetResponse", "status"): "ResetStatus",
    ("SendLocalListResponse", "status"): "UpdateStatus",
    ("SetChargingProfileResponse", "status"): "ChargingProfileStatus",
    ("StatusNotificationRequest", "status"): "ChargePointStatus",
    ("TriggerMessageResponse", "status"): "TriggerMessageStatus",
    ("UnlockConnectorResponse", "status"): "UnlockStatus",
}

# Names given to inline schemas, kept verbatim as Rust type names.
HOISTED: set[str] = set()
NOTES: list[str] = []


def split_stem(stem: str) -> tuple[str, str] | None:
    """`BootNotification` -> (`BootNotification`, `Request`); `...Response` -> `Response`."""
    if not stem[:1].isupper() or not stem.isalnum():
        return None
    if stem.endswith("Response") and stem != "Response":
        return stem[: -len("Response")], "Response"
    return stem, "Request"


def _pascal(prop: str) -> str:
    return prop[:1].upper() + prop[1:]


def _is_inline_type(node) -> bool:
    return isinstance(node, dict) and (node.get("type") == "object" or "enum" in node)


def prepare(raw: dict, message: str) -> dict:
    """Check the draft-04 root annotations and move inline objects and enums to `definitions`."""
    raw = copy.deepcopy(raw)
    if raw.get("$schema") == DRAFT_04:
        if "definitions" in raw:
            raise SchemaError(f"{message}: a draft-04 schema with definitions is not expected")
        # draft-04 `id` (draft-06 `$id`) and `title` are annotations; `title` must say which
        # message the file is, so that a misnamed file cannot go unnoticed.
        if raw.pop("title", message) != message:
            raise SchemaError(f"{message}: title does not name the message")
        if not str(raw.pop("id", "")).startswith("urn:OCPP:1.6:"):
            raise SchemaError(f"{message}: id is not an OCPP 1.6 urn")
    defs = raw.setdefault("definitions", {})
    existing = set(defs)

    def spec_name(parent: str, prop: str) -> str:
        name = BY_PARENT_PROPERTY.get((parent, prop)) or BY_PROPERTY.get(prop)
        if name is None:
            name = parent + _pascal(prop)
            NOTES.append(f"{message}: inline type at {parent}.{prop} has no spec name; named {name}")
        return name

    def lift(node, parent: str, prop: str):
        if isinstance(node, dict) and node.get("type") == "array" and isinstance(node.get("items"), dict):
            node["items"] = lift(node["items"], parent, prop)
            return node
        if not _is_inline_type(node):
            return node
        name = spec_name(parent, prop)
        if name in existing:
            raise SchemaError(f"{message}: inline type {name} clashes with a definition")
        if name in SPEC_TYPES and "description" not in node:
            node["description"] = f"{name} (OCPP 1.6 edition 2, {SPEC_TYPES[name]})."
        walk(node, name)
        if defs.setdefault(name, node) != node:
            raise SchemaError(f"{message}: two different inline types would be named {name}")
        HOISTED.add(name)
        return {"$ref": f"#/definitions/{name}"}

    def walk(node, parent: str):
        props = node.get("properties") if isinstance(node, dict) else None
        if isinstance(props, dict):
            for prop in props:
                props[prop] = lift(props[prop], parent, prop)

    walk(raw, message)
    for name in existing:
        walk(defs[name], type_name(name))
    if not defs:
        del raw["definitions"]
    return raw


def v16_type_name(name: str) -> str:
    """Names given by `prepare` stay; the security schemas' definitions as in 2.0.1."""
    return name if name in HOISTED else type_name(name)


VERSION = Version(
    tag="v16",
    label="OCPP 1.6J",
    table_set="TableSet::V16",
    schema_dirs=[ROOT / "schemas" / "ocpp-1.6", ROOT / "schemas" / "ocpp-1.6-security"],
    out_file=ROOT / "src" / "ocpp" / "v16" / "generated.rs",
    command="python3 tools/gen_v16.py",
    drafts={DRAFT_04, DRAFT_06},
    split_stem=split_stem,
    prepare=prepare,
    type_name=v16_type_name,
    notes=NOTES,
)

if __name__ == "__main__":
    sys.exit(main(VERSION, __doc__))
