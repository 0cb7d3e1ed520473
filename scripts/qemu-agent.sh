#!/usr/bin/env bash
# Runs the ARMv7 build of ocpp-agent under qemu-arm, as a drop-in for the native binary:
#   OCPP_TEST_AGENT_BIN=scripts/qemu-agent.sh cargo test --test e2e_smoke
# (build it first with scripts/cross-armv7.sh). exec keeps the pid, so signals reach qemu.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/armv7-unknown-linux-gnueabihf/release/ocpp-agent
[ -x "$BIN" ] || { echo "qemu-agent.sh: $BIN not built (run scripts/cross-armv7.sh)" >&2; exit 127; }
# As the systemd unit does on a board: no per-thread malloc cache. Without it `run` would try
# to execute itself again with it, which an ARM binary cannot do here (the host's kernel
# would be asked to run it: refused, or without -L under binfmt_misc's emulator).
case "${GLIBC_TUNABLES:-}" in
    *glibc.malloc.tcache_count*) ;;
    "") export GLIBC_TUNABLES=glibc.malloc.tcache_count=0 ;;
    *) export GLIBC_TUNABLES="$GLIBC_TUNABLES:glibc.malloc.tcache_count=0" ;;
esac
exec qemu-arm -L /usr/arm-linux-gnueabihf "$BIN" "$@"
