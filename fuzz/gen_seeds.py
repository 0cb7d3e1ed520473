#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs and dictionary from the official OCPP 2.0.1 schemas.

    python3 fuzz/gen_seeds.py

* seeds/frame_decode/: for every action a minimal CALL (required properties only) and a
  minimal CALLRESULT with the action name as message id (frame_decode checks such a result
  against the action's response schema); maximal instances (every property) of a few
  messages; a few broken frames.
* seeds/station_frames/: hand-written scenarios in the script format (src/script.rs).
* frame_decode.dict, station_frames.dict: libFuzzer dictionaries of action names, property
  names, enum values and frame fragments (and, for station_frames, the script's operations).

Deterministic: running it again rewrites the same files.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
SCHEMAS = HERE.parent / "schemas" / "ocpp-2.0.1"
MAXIMAL = [
    "RequestStartTransactionRequest",
    "TransactionEventRequest",
    "BootNotificationResponse",
    "AuthorizeResponse",
    "SetChargingProfileRequest",
    "GetVariablesRequest",
    "DataTransferRequest",
    "NotifyReportRequest",
]


def resolve(schema, node):
    ref = node.get("$ref")
    if ref:
        return schema["definitions"][ref.split("/")[-1]]
    return node


def instance(schema, node, maximal):
    node = resolve(schema, node)
    if "enum" in node:
        return node["enum"][-1 if maximal else 0]
    ty = node.get("type")
    if ty == "object":
        required = set(node.get("required", []))
        out = {}
        for name, sub in node.get("properties", {}).items():
            if maximal or name in required:
                out[name] = instance(schema, sub, maximal)
        return out
    if ty == "array":
        n = max(node.get("minItems", 0), 1)
        return [instance(schema, node["items"], maximal) for _ in range(n)]
    if ty == "string":
        if node.get("format") == "date-time":
            return "2024-02-29T23:59:59.999+05:30" if maximal else "2025-01-01T00:00:00Z"
        if maximal and "maxLength" in node:
            return "é" * min(node["maxLength"], 40)
        return "a"
    if ty == "integer":
        return 42 if maximal else 1
    if ty == "number":
        return 12.5 if maximal else 0.5
    if ty == "boolean":
        return maximal
    return {"any": [1, 2.5, None, True, "x"]} if maximal else "opaque"


def collect_words(schema, node, words, seen):
    node = resolve(schema, node)
    if id(node) in seen:
        return
    seen.add(id(node))
    for v in node.get("enum", []):
        words.add(v)
    for name, sub in node.get("properties", {}).items():
        words.add(name)
        collect_words(schema, sub, words, seen)
    if "items" in node:
        collect_words(schema, node["items"], words, seen)


def dict_entry(token):
    """A libFuzzer dictionary line: printable ASCII, with \\", \\\\ and \\xNN escapes."""
    out = []
    for b in token.encode():
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\x{b:02X}")
    return '"' + "".join(out) + '"'


def frame(parts):
    return json.dumps(parts, ensure_ascii=False, separators=(",", ":"))


STATION_SCRIPTS = {
    "lifecycle": """+5
P1 1
T1 TAG-A
+180
U1 1
+60
""",
    "remote_start_stop": """+5
S1 7 TAG-B
P1 1
+65
X1
Q1
Q
U1 1
+60
""",
    "offline_and_power_loss": """+5
P2 1
T2 TAG-C
+30
O0
D
+120
U2 1
P2 2
R0
+300
O1
+600
""",
    "silent_csms_and_late_answer": """+5
N0
P1 1
+10
<
+10
!InternalError
+40
N1
+120
U1 1
""",
    "garbage_frames": """+1
>[2,"a","NoSuchAction",{}]
>[2,"b","RequestStartTransaction",{"idToken":{"idToken":"x","type":"Bogus"},"remoteStartId":1}]
>[3,"nobody",{}]
>[4,"nobody","InternalError","",{}]
>not json
>[2,"c","ClearCache",[]]
>[2,"d","GetTransactionStatus",{"transactionId":"nope"}]
>[2,"e","Reset",{"type":"Immediate"}]
C
""",
    "rejected_boot": """B2
R1
+10
>[2,"a","ClearCache",{}]
B0
+400
P1 1
+5
U1 1
""",
    "auth_statuses": """A4 TAG-A
A1 TAG-B
+5
P1 1
T1 TAG-A
T1 TAG-B
T1 {"idToken":"TAG-C","type":"eMAID"}
T1 {"idToken":"TAG-D","type":"Bogus"}
+130
U1 1
""",
    # OCPP 1.6J (J: the variant in 1.6).
    "v16_lifecycle": """J0
+5
P1 1
T1 TAG-A
+180
U1 1
+60
""",
    "v16_remote_start_stop": """J4
+5
S1 7 TAG-B
P1 1
+65
X1
X-
Q1
U1 1
+60
""",
    "v16_offline_and_power_loss": """J2
+5
P2 1
T2 TAG-C
+30
O0
D
+120
U2 1
R0
+300
O1
+600
""",
    "v16_silent_csms_and_late_answer": """J0
+5
N0
P1 1
T1 TAG-A
+10
<
+40
N1
+120
U1 1
""",
    "v16_garbage_frames": """J0
+1
>[2,"a","NoSuchAction",{}]
>[2,"b","RemoteStartTransaction",{}]
>[2,"c","RemoteStartTransaction",{"idTag":5}]
>[2,"d","GetTransactionStatus",{}]
>[2,"e","Reset",{"type":"Immediate"}]
>[2,"f","RemoteStopTransaction",{"transactionId":99}]
>[2,"g","ChangeAvailability",{"connectorId":3,"type":"Inoperative"}]
>[2,"h","UnlockConnector",{"connectorId":0}]
>[2,"i","GetConfiguration",{"key":["HeartbeatInterval"]}]
>[2,"j","ChangeConfiguration",{"key":"HeartbeatInterval","value":"x"}]
>[2,"k","TriggerMessage",{"requestedMessage":"MeterValues","connectorId":1}]
>not json
C
""",
    "failing_transaction_events": """V3
+5
F5
P2 1
T2 TAG-A
+200
F
+400
U2 1
R1
+600
""",
}

FRAGMENTS = ['[2,"', '[3,"', '[4,"', '",{', '"}', "null", "true", "1.5", "5.0", "-1"]

BROKEN = [
    "",
    "[",
    "[]",
    "null",
    "[2]",
    '[2,"a"]',
    '[2,"a","Reset"]',
    '[2,"a","Reset",[]]',
    '[2,5,"Reset",{}]',
    '[9,"a","Reset",{}]',
    '[3,"a"]',
    '[4,"a","X"]',
    '["2","a","Reset",{}]',
    '[2,"' + "x" * 37 + '","Reset",{}]',
    '[2,"a","Heartbeat",{"x":1e400}]',
    '[2,"a","SetDisplayMessage",{"message":{"id":5.0,"priority":"AlwaysFront","message":{"format":"UTF8","content":"hi"}}}]',
    '[2,"a","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"m","vendorName":"v"},"extra":1}]',
    '[3,"Heartbeat",{"currentTime":"2024-06-30T23:59:60Z"}]',
    '[3,"Heartbeat",{"currentTime":"2024-02-30T00:00:00Z"}]',
    '[4,"a","InternalError","oops",{}]',
]


def main():
    fd = HERE / "seeds" / "frame_decode"
    sf = HERE / "seeds" / "station_frames"
    for d in (fd, sf):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
    words = set()
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        stem = path.stem
        is_request = stem.endswith("Request")
        action = stem[: -len("Request")] if is_request else stem[: -len("Response")]
        words.add(action)
        collect_words(schema, schema, words, set())
        minimal = instance(schema, schema, False)
        text = frame([2, "1", action, minimal] if is_request else [3, action, minimal])
        (fd / f"{stem}-min.json").write_text(text)
        if stem in MAXIMAL:
            maximal = instance(schema, schema, True)
            text = frame([2, "1", action, maximal] if is_request else [3, action, maximal])
            (fd / f"{stem}-max.json").write_text(text)
    for i, text in enumerate(BROKEN):
        (fd / f"broken-{i:02}.json").write_text(text)
    for name, text in STATION_SCRIPTS.items():
        (sf / f"{name}.txt").write_text(text)
    entries = sorted(words) + FRAGMENTS
    dict_lines = ["# libFuzzer dictionary: OCPP 2.0.1 names (generated by gen_seeds.py)"]
    for w in entries:
        # Words as JSON strings, with their quotes.
        dict_lines.append(dict_entry(w if w in FRAGMENTS else f'"{w}"'))
    (HERE / "frame_decode.dict").write_text("\n".join(dict_lines) + "\n")
    # station_frames: the same, plus the script's operations at the start of a line.
    ops = ["\n+60", "\n+600", "\nm500", "\nP1 1", "\nU1 1", "\nP2 2", "\nU2 2", "\nT1 TAG-A",
           "\nA4 TAG-A", "\nS1 7 TAG-A", "\nS- 7 TAG-A", "\nX1", "\nX-", "\nQ1", "\nQ", "\nC",
           '\n>[2,"', "\n<", "\n!InternalError", "\nO0", "\nO1", "\nN0", "\nN1", "\nG0",
           "\nG1", "\nF5", "\nF", "\nB1", "\nB2", "\nD", "\nR0", "\nR1"]
    # OCPP 1.6J: the variant line, and the 1.6 calls the CSMS makes.
    ops += ["J0\n", "J3\n", '\n>[2,"a","RemoteStartTransaction",{"idTag":"TAG-A"}]',
            '\n>[2,"a","RemoteStopTransaction",{"transactionId":1}]', '"connectorId":',
            '"idTag":', '"GetConfiguration"', '"ChangeConfiguration"',
            '\n<{"transactionId":1,"idTagInfo":{"status":"Accepted"}}']
    dict_lines += [dict_entry(o) for o in ops]
    (HERE / "station_frames.dict").write_text("\n".join(dict_lines) + "\n")


if __name__ == "__main__":
    main()
