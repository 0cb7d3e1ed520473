#!/usr/bin/env bash
# Run the ocpp-agent against the local test CSMS and drive the simulated plug.
#
#   scripts/demo.sh                  # runs until Ctrl-C
#   DEMO_SECONDS=30 scripts/demo.sh  # stops by itself 30 s after the agent started (CI smoke run)
#   DEMO_PORT=9100 scripts/demo.sh   # CSMS on another port (agent URL overridden)
#   scripts/demo.sh --ocpp 1.6       # the same session in OCPP 1.6J (CSMS and agent)
#
# It sets up the Python venv (scripts/setup-python.sh), builds the agent
# (cargo build --release), starts tests/csms/csms.py on 127.0.0.1:$DEMO_PORT
# (log: .demo/csms.jsonl), starts `ocpp-agent run --config config/demo.toml`,
# then plugs the simulated cable into connector 1, presents a card, shows the agent's
# status, a charging profile lowering the power, a display message with the driver's tariff
# and running cost on the screen (`ctl display`), and unplugs it again (a transaction with
# meter values, then its total cost). Heartbeats keep coming until Ctrl-C (or DEMO_SECONDS).
# Output lines are prefixed [csms], [agent], [ctl] and [demo].
#
# With DEMO_SECONDS set the run is checked at the end: it fails unless the CSMS
# got a BootNotification and sent no CALLERROR (every agent message was valid
# OCPP 2.0.1, or 1.6 with --ocpp 1.6) and logged no protocol violation.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OCPP_VERSION="2.0.1"
while [ $# -gt 0 ]; do
    case "$1" in
    --ocpp)
        [ $# -ge 2 ] || { echo "[demo] error: --ocpp needs 2.0.1 or 1.6" >&2; exit 1; }
        OCPP_VERSION="$2"
        shift 2
        ;;
    --ocpp=*) OCPP_VERSION="${1#--ocpp=}"; shift ;;
    *) echo "[demo] error: unknown argument '$1' (usage: $0 [--ocpp 2.0.1|1.6])" >&2; exit 1 ;;
    esac
done
case "$OCPP_VERSION" in 2.0.1 | 1.6) ;; *) echo "[demo] error: --ocpp must be 2.0.1 or 1.6, got '$OCPP_VERSION'" >&2; exit 1 ;; esac

DEMO_PORT_GIVEN="${DEMO_PORT:+yes}"
DEMO_PORT="${DEMO_PORT:-9000}"
DEMO_SECONDS="${DEMO_SECONDS:-}"
CONFIG="config/demo.toml"
DEMO_DIR="$ROOT/.demo"
CSMS_LOG="$DEMO_DIR/csms.jsonl"
PORT_FILE="$DEMO_DIR/csms.port"
ADMIN_PORT_FILE="$DEMO_DIR/csms.admin-port"
AGENT="$ROOT/target/release/ocpp-agent"

say() { echo "[demo] $*" >&2; }
die() { echo "[demo] error: $*" >&2; exit 1; }

case "$DEMO_PORT" in '' | *[!0-9]*) die "DEMO_PORT must be a port number, got '$DEMO_PORT'" ;; esac
if [ -n "$DEMO_SECONDS" ]; then
    case "$DEMO_SECONDS" in *[!0-9]*) die "DEMO_SECONDS must be a whole number of seconds, got '$DEMO_SECONDS'" ;; esac
fi
[ -f "$CONFIG" ] || die "$CONFIG not found (run from a complete checkout)"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"

# The agent's environment: when DEMO_PORT is given, the figment env override
# points the agent at it (config/demo.toml has ws://127.0.0.1:9000/ocpp).
AGENT_ENV=()
if [ -n "$DEMO_PORT_GIVEN" ]; then
    AGENT_ENV=("OCPP_AGENT_CSMS__URL=ws://127.0.0.1:$DEMO_PORT/ocpp")
fi
# --ocpp 1.6: the same config with [csms] ocpp_version = "1.6" (the figment env override).
# The CSMS keeps the transactionIds it assigned in .demo, as the agent keeps its journal there:
# a session a previous demo left open ends with the id that CSMS gave it.
CSMS_STATE=()
if [ "$OCPP_VERSION" = 1.6 ]; then
    AGENT_ENV+=("OCPP_AGENT_CSMS__OCPP_VERSION=1.6")
    CSMS_STATE=(--state "$DEMO_DIR/csms-state.json")
fi

CSMS_PID="" AGENT_PID="" CSMS_SED="" AGENT_SED=""
START=$SECONDS # reset when the agent starts: DEMO_SECONDS counts from there

stop_pid() { # stop_pid PID NAME: SIGTERM, up to 5 s grace, then SIGKILL
    local pid="$1" name="$2"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name did not stop within 5 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

summary() { # print what the CSMS saw; in smoke mode, fail on errors
    [ -s "$CSMS_LOG" ] && [ -n "${PY:-}" ] || return 0
    "$PY" - "$CSMS_LOG" "${DEMO_SECONDS:+strict}" <<'EOF'
import collections, json, sys
msgs = collections.defaultdict(collections.Counter)
errors, violations, boots = [], [], 0
for line in open(sys.argv[1], encoding="utf-8"):
    e = json.loads(line)
    if e.get("event") == "message":
        if e["dir"] == "in" and e["type"] == 2:
            msgs[e["station"]][e["action"]] += 1
            boots += e["action"] == "BootNotification"
        if e["dir"] == "out" and e["type"] == 4:
            errors.append(e)
    elif e.get("event") == "violation":
        violations.append(e)
for station, counter in msgs.items():
    print(f"[demo] CSMS received from {station}: "
          + ", ".join(f"{a} x{n}" for a, n in counter.most_common()), file=sys.stderr)
for e in errors:
    details = e.get("error_details")
    cause = details.get("cause") if isinstance(details, dict) else None
    cause = str(cause).splitlines()[0] if cause else json.dumps(details)
    print(f"[demo] CALLERROR sent to {e['station']} for {e.get('action')}: "
          f"{e.get('error_code')}: {cause[:400]}", file=sys.stderr)
for e in violations:
    print(f"[demo] protocol violation by {e['station']}: {e['reason']}", file=sys.stderr)
print(f"[demo] CALLERRORs sent by the CSMS: {len(errors)}, protocol violations: {len(violations)}",
      file=sys.stderr)
if len(sys.argv) > 2 and sys.argv[2] == "strict":
    if boots == 0:
        print("[demo] FAILED: the CSMS never received a BootNotification", file=sys.stderr)
        sys.exit(1)
    if errors or violations:
        print("[demo] FAILED: the agent sent invalid OCPP messages", file=sys.stderr)
        sys.exit(1)
EOF
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$AGENT_PID$CSMS_PID" ]; then
        say "stopping"
    fi
    stop_pid "$AGENT_PID" "ocpp-agent"
    stop_pid "$CSMS_PID" "csms"
    # let the output prefixers drain
    [ -n "$AGENT_SED" ] && wait "$AGENT_SED" 2>/dev/null
    [ -n "$CSMS_SED" ] && wait "$CSMS_SED" 2>/dev/null
    if ! summary && [ "$rc" = 0 ]; then
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo >&2; exit 0' INT TERM

elapsed() { echo $((SECONDS - START)); }

check_children() {
    if [ -n "$CSMS_PID" ] && ! kill -0 "$CSMS_PID" 2>/dev/null; then
        wait "$CSMS_PID" 2>/dev/null && rc=0 || rc=$?
        CSMS_PID=""
        die "the CSMS exited unexpectedly (status $rc)"
    fi
    if [ -n "$AGENT_PID" ] && ! kill -0 "$AGENT_PID" 2>/dev/null; then
        wait "$AGENT_PID" 2>/dev/null && rc=0 || rc=$?
        AGENT_PID=""
        die "ocpp-agent exited unexpectedly (status $rc)"
    fi
}

# pause N: wait N seconds while watching both processes; ends the demo
# (successfully) when the DEMO_SECONDS deadline is reached.
pause() {
    local until=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$until" ]; do
        check_children
        if [ -n "$DEMO_SECONDS" ] && [ "$(elapsed)" -ge "$DEMO_SECONDS" ]; then
            say "DEMO_SECONDS=$DEMO_SECONDS reached"
            exit 0
        fi
        sleep 0.2
    done
}

ctl() { # ctl ARGS...: run `ocpp-agent ctl`, output prefixed [ctl]
    local out rc=0 try
    for try in 1 2 3; do
        rc=0
        out="$(env ${AGENT_ENV[@]+"${AGENT_ENV[@]}"} "$AGENT" ctl --config "$CONFIG" "$@" 2>&1)" || rc=$?
        [ "$rc" = 0 ] && break
        [ "$try" = 3 ] || { say "ctl $* failed (status $rc), retrying"; sleep 1; }
    done
    if [ -n "$out" ]; then
        printf '%s\n' "$out" | sed 's/^/[ctl] /' >&2
    fi
    [ "$rc" = 0 ] || die "'ocpp-agent ctl $*' failed (status $rc)"
}

# csms_admin REQUEST: a request to the CSMS's admin port (see tests/csms/README.md); what it
# answers (the station's answer, for a call) is printed prefixed [csms-admin]
csms_admin() {
    local out
    out="$("$PY" - "$(cat "$ADMIN_PORT_FILE")" "$1" <<'EOF'
import json, socket, sys
port, request = int(sys.argv[1]), json.loads(sys.argv[2])
with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
    s.sendall((json.dumps(request) + "\n").encode())
    answer = json.loads(s.makefile().readline())
print(json.dumps(answer.get("response", answer)))
sys.exit(0 if answer.get("ok") else 1)
EOF
)" || die "the CSMS refused $1: $out"
    printf '%s\n' "$out" | sed 's/^/[csms-admin] /' >&2
}

# csms_call ACTION PAYLOAD: the CSMS sends a CALL to the station
csms_call() {
    csms_admin "{\"cmd\": \"call\", \"station\": \"CP001\", \"action\": \"$1\", \"payload\": $2}"
}

# transaction_id EVSE: the id of the EVSE's open transaction, from ctl status
transaction_id() {
    env ${AGENT_ENV[@]+"${AGENT_ENV[@]}"} "$AGENT" ctl --config "$CONFIG" status |
        "$PY" -c "import json, sys; print(json.load(sys.stdin)['evses'][$1 - 1]['transaction']['id'])"
}

# --- 1. Python venv for the CSMS -----------------------------------------
say "setting up the Python venv (scripts/setup-python.sh)"
PY="$("$ROOT/scripts/setup-python.sh" | tail -n 1)"
[ -x "$PY" ] || die "scripts/setup-python.sh did not produce a python"

# --- 2. build the agent ------------------------------------------------------
say "building the agent (cargo build --release --bin ocpp-agent; the first build takes a few minutes)"
cargo build --release --bin ocpp-agent
[ -x "$AGENT" ] || die "$AGENT was not built"

# --- 3. start the CSMS ---------------------------------------------------------
mkdir -p "$DEMO_DIR"
rm -f "$CSMS_LOG" "$PORT_FILE" "$ADMIN_PORT_FILE"
say "starting the CSMS (OCPP $OCPP_VERSION) on ws://127.0.0.1:$DEMO_PORT/ocpp (log: ${CSMS_LOG#"$ROOT"/})"
exec 3> >(trap '' INT; exec sed -u 's/^/[csms] /' >&2)
CSMS_SED=$!
# The password is the one in config/demo.toml: the CSMS checks HTTP Basic auth CP001:<password>.
"$PY" -u "$ROOT/tests/csms/csms.py" --host 127.0.0.1 --port "$DEMO_PORT" --interval 10 \
    --ocpp "$OCPP_VERSION" ${CSMS_STATE[@]+"${CSMS_STATE[@]}"} --password 0123456789abcdef \
    --log "$CSMS_LOG" --port-file "$PORT_FILE" --admin-port-file "$ADMIN_PORT_FILE" \
    </dev/null >&3 2>&3 &
CSMS_PID=$!
exec 3>&-

for _ in $(seq 150); do
    [ -s "$PORT_FILE" ] && [ -s "$ADMIN_PORT_FILE" ] && break
    if ! kill -0 "$CSMS_PID" 2>/dev/null; then
        CSMS_PID=""
        die "the CSMS failed to start (is port $DEMO_PORT in use? try DEMO_PORT=9100 $0)"
    fi
    sleep 0.1
done
[ -s "$PORT_FILE" ] || die "the CSMS did not start listening within 15 s"

# --- 4. start the agent ----------------------------------------------------------
[ -t 2 ] || export NO_COLOR=1 # no ANSI colours in the agent's log when not on a terminal
say "starting: ${AGENT_ENV[*]+${AGENT_ENV[*]} }target/release/ocpp-agent run --config $CONFIG"
exec 3> >(trap '' INT; exec sed -u 's/^/[agent] /' >&2)
AGENT_SED=$!
env ${AGENT_ENV[@]+"${AGENT_ENV[@]}"} "$AGENT" run --config "$CONFIG" </dev/null >&3 2>&3 &
AGENT_PID=$!
exec 3>&-
START=$SECONDS

# --- 5. drive the simulated plug, RFID reader and meter ---------------------------
pause 4
if [ "$OCPP_VERSION" = 1.6 ]; then
    say "plugging the cable into connector 1: ocpp-agent ctl --config $CONFIG plug 1 in"
    ctl plug 1 in
    pause 2
    say "presenting RFID card DEMO-CARD at connector 1: Authorize, then StartTransaction (the CSMS assigns the transactionId)"
    ctl token 1 DEMO-CARD
    pause 5
    say "agent status (charging at 11 kW; MeterValues every 10 s carry the CSMS's transactionId): ocpp-agent ctl --config $CONFIG status"
    ctl status
    say "the CSMS asks two configuration keys (GetConfiguration)"
    csms_call GetConfiguration '{"key": ["HeartbeatInterval", "MeterValueSampleInterval"]}'
    say "the CSMS limits connector 1 to 8 A (SetChargingProfile, TxDefaultProfile); the meter follows: 5520 W"
    csms_call SetChargingProfile '{"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1,
        "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8.0}]}}}'
    pause 6
    ctl status
    csms_call ClearChargingProfile '{"id": 1}'
    pause 1
    say "unplugging connector 1: StopTransaction with the CSMS's transactionId"
    ctl plug 1 out
    pause 1
    say "the transactions as the CSMS recorded them (admin transactions)"
    csms_admin '{"cmd": "transactions"}'
else
say "plugging the cable into connector 1: ocpp-agent ctl --config $CONFIG plug 1 in"
ctl plug 1 in
pause 2
say "the CSMS will give DEMO-CARD its tariff (personalMessage) and the session a total cost of 2.50"
csms_admin '{"cmd": "set", "total_cost": 2.5,
    "auth": {"DEMO-CARD": {"status": "Accepted", "message": "Your tariff: 0.35 EUR/kWh"}}}'
say "presenting RFID card DEMO-CARD at EVSE 1: ocpp-agent ctl --config $CONFIG token 1 DEMO-CARD"
ctl token 1 DEMO-CARD
pause 5
say "agent status (charging at 11 kW): ocpp-agent ctl --config $CONFIG status"
ctl status
say "the CSMS limits EVSE 1 to 8 A per phase (SetChargingProfile, TxDefaultProfile); the meter follows: 5520 W"
csms_call SetChargingProfile '{"evseId": 1, "chargingProfile": {"id": 1, "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
    "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8.0}]}]}}'
pause 6
say "agent status (charging_limit 8 A, 5.5 kW): ocpp-agent ctl --config $CONFIG status"
ctl status
say "the CSMS puts a message on the screens (SetDisplayMessage); what the HMI shows: ocpp-agent ctl --config $CONFIG display"
csms_call SetDisplayMessage '{"message": {"id": 1, "priority": "InFront",
    "message": {"format": "UTF8", "language": "en", "content": "Charging at 8 A: the building needs the rest"}}}'
say "the CSMS tells the running cost (CostUpdated): the screen shows the message, the driver's tariff and the cost"
csms_call CostUpdated "{\"totalCost\": 1.15, \"transactionId\": \"$(transaction_id 1)\"}"
ctl display
say "the CSMS removes the profile and the message again (ClearChargingProfile, ClearDisplayMessage)"
csms_call ClearDisplayMessage '{"id": 1}'

csms_call ClearChargingProfile '{"chargingProfileId": 1}'
pause 1
say "unplugging connector 1: ocpp-agent ctl --config $CONFIG plug 1 out"
ctl plug 1 out
pause 1
say "the session's total, from the CSMS's answer to the Ended event: ocpp-agent ctl --config $CONFIG display"
ctl display
fi

# --- 6. keep running -----------------------------------------------------------------
if [ -n "$DEMO_SECONDS" ]; then
    say "running until DEMO_SECONDS=$DEMO_SECONDS (heartbeats every 10 s)"
else
    say "running; heartbeats every 10 s. Press Ctrl-C to stop."
fi
while :; do
    pause 3600
done
