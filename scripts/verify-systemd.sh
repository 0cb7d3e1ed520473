#!/usr/bin/env bash
# Verify systemd/ocpp-agent.service with `systemd-analyze verify`, failing on any error or
# warning about the unit (unknown keys, bad values, ... are only warnings for systemd).
#
# /usr/bin/ocpp-agent does not exist on a build machine, so the unit is copied into a temporary
# directory with ExecStart= pointing at a stand-in executable; everything else is verified as
# written. Needs systemd (apt-get install systemd); PID 1 does not have to be systemd.
#
# Usage: scripts/verify-systemd.sh [UNIT_FILE]
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UNIT=${1:-$ROOT_DIR/systemd/ocpp-agent.service}
NAME=$(basename "$UNIT")
BIN=/usr/bin/ocpp-agent

command -v systemd-analyze >/dev/null 2>&1 || {
    echo "verify-systemd: systemd-analyze not found (apt-get install systemd)" >&2
    exit 2
}
[ -f "$UNIT" ] || { echo "verify-systemd: no such unit file: $UNIT" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

grep -q "^ExecStart=$BIN " "$UNIT" || {
    echo "verify-systemd: $NAME: ExecStart= must run $BIN" >&2
    exit 1
}
# stand-in for the agent binary: any executable will do for verify
cp "$(type -P true)" "$tmp/ocpp-agent"
sed "s|^\(ExecStart[A-Za-z]*=[-@:+!]*\)$BIN\b|\1$tmp/ocpp-agent|" "$UNIT" >"$tmp/$NAME"

rc=0
out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$tmp/$NAME" 2>&1) || rc=$?
[ -n "$out" ] && printf '%s\n' "$out"

# lines about our unit (by name or by path); other lines come from the host's own units
ours=$(printf '%s\n' "$out" | grep -F -e "$NAME" -e "$tmp" || true)
if [ "$rc" -ne 0 ] || [ -n "$ours" ]; then
    echo "verify-systemd: FAILED: $NAME (systemd-analyze exit $rc)" >&2
    exit 1
fi
echo "verify-systemd: OK: $NAME ($(systemctl --version | head -n1))"
