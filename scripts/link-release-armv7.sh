#!/bin/sh
# Linker for armv7-unknown-linux-gnueabihf (.cargo/config.toml): scripts/link-release.sh driving
# the Debian/Ubuntu cross gcc, or the driver named by OCPP_AGENT_ARMV7_CC.
OCPP_AGENT_CC=${OCPP_AGENT_ARMV7_CC:-arm-linux-gnueabihf-gcc}
export OCPP_AGENT_CC
exec "$(dirname "$0")/link-release.sh" "$@"
