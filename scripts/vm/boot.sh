#!/usr/bin/env bash
# Boots the test guest (see prepare.sh) and stays in the foreground as qemu itself (exec: the
# pid is qemu's, so a SIGKILL to it is a power cut).
#
# Usage: scripts/vm/boot.sh --disk IMG --ctl SOCKET --console FILE [--csms-port PORT]
#   --disk      ext4 image, the guest's /dev/vda, mounted on /data (agent binary, config,
#               journal); written through to the host file on the guest's flushes
#   --ctl       unix socket qemu listens on for the control channel (init.sh)
#   --console   file receiving the serial console (kernel, init, agent logs)
#   --csms-port the guest's 10.0.2.100:9000 is relayed to the host's 127.0.0.1:PORT
# Environment: the KEY=VALUE lines of `prepare.sh --env` if set, else prepare.sh is run.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
disk= ctl= console= port=
while [ $# -gt 0 ]; do
    case "$1" in
        --disk) disk=$2; shift 2 ;;
        --ctl) ctl=$2; shift 2 ;;
        --console) console=$2; shift 2 ;;
        --csms-port) port=$2; shift 2 ;;
        *) echo "boot.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$disk" ] && [ -n "$ctl" ] && [ -n "$console" ] || { echo "boot.sh: --disk, --ctl and --console are required" >&2; exit 2; }
if [ -z "${KERNEL-}" ]; then
    eval "$("$HERE/prepare.sh" --env)"
fi
net=(-nic none)
if [ -n "$port" ]; then
    # restrict=on: the guest reaches nothing but the relay
    net=(-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:9000-cmd:python3 $HERE/relay.py $port"
         -device virtio-net-device,netdev=n0)
fi
rm -f "$ctl"
export LD_LIBRARY_PATH=$QEMU_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# cache=writeback + the guest's flushes honoured: what the guest fsync'ed is in the host
# file (host page cache) when qemu dies; what it had not is lost, as on a power cut.
exec "$QEMU" -L "$QEMU_DATA" -M virt -cpu cortex-a7 -m 256 -smp 1 -nographic -monitor none \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyAMA0 panic=-1 quiet loglevel=4" \
    -no-reboot \
    -drive "if=none,id=d0,file=$disk,format=raw,cache=writeback" -device virtio-blk-device,drive=d0 \
    -chardev "socket,id=ctl,path=$ctl,server=on,wait=off" \
    -device virtio-serial-device -device virtserialport,chardev=ctl,name=ctl \
    "${net[@]}" \
    -serial "file:$console"
