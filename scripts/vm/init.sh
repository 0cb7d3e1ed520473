#!/bin/sh
# /init of the test guest (busybox): mounts, loads the modules the initramfs carries, brings up
# the user-mode network (10.0.2.15, the CSMS relay at 10.0.2.100:9000), mounts the data disk
# (/dev/vda, ext4) on /data, starts the agent if /data/autostart exists, then serves the
# control channel: one base64-encoded shell command per line on the virtio-serial port "ctl",
# answered with its output and "\036rc=N".
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
while read -r m; do
    insmod "/lib/modules/$m" || echo "init: insmod $m failed"
done </lib/modules/load-order
mount -t configfs configfs /sys/kernel/config
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2

# /bin/agent-start: the agent as its service would run it (logs on the console, which the
# host keeps in a file).
cat >/bin/agent-start <<'EOS'
#!/bin/sh
# /data/agent.env (optional): environment, like the unit's EnvironmentFile
[ -e /data/agent.env ] && . /data/agent.env
cd /data && exec /data/ocpp-agent run --config /data/agent.toml </dev/null >/dev/console 2>&1
EOS
chmod +x /bin/agent-start
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -b /dev/vda ]; then
    mount -t ext4 -o errors=remount-ro /dev/vda /data || echo "init: cannot mount /dev/vda"
fi
if [ -e /data/autostart ]; then
    agent-start &
fi
echo "init: up in $(cut -d' ' -f1 /proc/uptime) s"

port=
for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = ctl ] && port=/dev/$(basename "$p")
done
[ -n "$port" ] || echo "init: no virtio-serial port named ctl"
while true; do
    # One open for both directions (virtio_console allows a single opener); a compound
    # command, so a failing open does not end init. Commands write to a file, not to the
    # port: a background job (agent-start &) must not keep the port open after a disconnect.
    {
        while IFS= read -r line <&3; do
            cmd=$(echo "$line" | base64 -d)
            (eval "$cmd") </dev/null >/tmp/.ctl-out 2>&1 3>&-
            rc=$?
            cat /tmp/.ctl-out >&3
            printf '\036rc=%d\n' $rc >&3
        done
    } 3<>"$port"
    sleep 0.2
done
