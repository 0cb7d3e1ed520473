#!/usr/bin/env bash
# Runs the ARMv7 build of ocpp-agent under qemu-arm, as a drop-in for the native binary:
#   OCPP_TEST_AGENT_BIN=scripts/qemu-agent.sh cargo test --test e2e_smoke
# (build it first with scripts/cross-armv7.sh). exec keeps the pid, so signals reach qemu.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/armv7-unknown-linux-gnueabihf/release/ocpp-agent
[ -x "$BIN" ] || { echo "qemu-agent.sh: $BIN not built (run scripts/cross-armv7.sh)" >&2; exit 127; }
exec qemu-arm -L /usr/arm-linux-gnueabihf "$BIN" "$@"
