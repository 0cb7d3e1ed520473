#!/bin/sh
# Linker for armv7-unknown-linux-gnueabihf (.cargo/config.toml): scripts/link-release.sh driving
# the Debian/Ubuntu cross gcc (or the driver named by OCPP_AGENT_ARMV7_CC), with the hot-function
# list profiled on ARMv7 (Debian's Rust 1.85 names and merges functions its own way).
OCPP_AGENT_CC=${OCPP_AGENT_ARMV7_CC:-arm-linux-gnueabihf-gcc}
OCPP_AGENT_HOT=${OCPP_AGENT_HOT:-$(dirname "$0")/../link/hot-text-armv7.txt}
export OCPP_AGENT_CC OCPP_AGENT_HOT
exec "$(dirname "$0")/link-release.sh" "$@"
