#!/usr/bin/env bash
# The full power-cut loop on the emulated ARMv7 board (tests/vm_power_cut.rs): CUTS (default
# 12) SIGKILLs of qemu at random instants; CI runs the same test with fewer. Builds the ARMv7
# binary and the VM pieces first. OCPP_VM_SEED=N replays a run.
#   scripts/vm/power-cut.sh [CUTS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
scripts/cross-armv7.sh >/dev/null
scripts/vm/prepare.sh
OCPP_VM_CUTS=${1:-12} OCPP_VM_REQUIRED=1 cargo test --locked --test vm_power_cut -- --nocapture
