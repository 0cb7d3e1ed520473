#!/usr/bin/env bash
# Builds and caches the pieces of the ARMv7 test guest (qemu-system-arm -M virt, Cortex-A7):
#   - Debian bookworm's armmp kernel (linux-image-6.1.0-N-armmp:armhf) and the modules the
#     guest needs (virtio mmio/blk/net/console, ext4, configfs);
#   - gpio-sim + irq_sim (neither is in any Debian kernel) built out of tree from the matching
#     linux-source against linux-headers-N-armmp and the host's linux-kbuild, with two edits
#     (see build_gpio_sim);
#   - an initramfs with busybox-static:armhf, the armhf glibc the agent links with, the
#     modules, and scripts/vm/init.sh as /init;
#   - qemu-system-arm and its libraries, unpacked into the cache (nothing installed: on a
#     machine with a backported qemu, installing bookworm's would replace parts of it).
# Everything comes from Debian packages through `apt-get download`; nothing is installed but
# dpkg's armhf architecture (as scripts/cross-armv7.sh does) and e2fsprogs if missing.
#
# Usage: scripts/vm/prepare.sh            prepare (idempotent; ~40 s the first time)
#        scripts/vm/prepare.sh --env      prepare, then print KEY=VALUE lines for boot.sh/tests
# Cache: $OCPP_VM_CACHE (default /var/cache/ocpp-agent-vm, ~450 MB); keyed by kernel version.
set -euo pipefail

CACHE=${OCPP_VM_CACHE:-/var/cache/ocpp-agent-vm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
print_env=0
[ "${1-}" = --env ] && print_env=1

log() { printf 'vm/prepare: %s\n' "$*" >&2; }
die() { printf 'vm/prepare: error: %s\n' "$*" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else die "need root (or sudo) to run: $*"; fi
}

command -v apt-get >/dev/null || die "apt-get not found: Debian bookworm is needed"
command -v arm-linux-gnueabihf-gcc >/dev/null || die "arm-linux-gnueabihf-gcc missing: run scripts/cross-armv7.sh --install-only"
[ -e /usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3 ] || die "libc6-armhf-cross missing: run scripts/cross-armv7.sh --install-only"
if ! command -v mkfs.ext4 >/dev/null && [ ! -x /sbin/mkfs.ext4 ]; then
    as_root apt-get install -y -qq e2fsprogs
fi
mkdir -p "$CACHE/debs"

# The kernel ABI (6.1.0-N-armmp) and version that apt offers now; without an index (offline),
# the newest complete cache entry.
abi=$(apt-cache depends linux-image-armmp:armhf 2>/dev/null \
    | sed -n 's/.*Depends: linux-image-\(.*-armmp\):armhf/\1/p' | head -n1 || true)
if [ -z "$abi" ] && ! dpkg --print-foreign-architectures | grep -qx armhf; then
    log "dpkg --add-architecture armhf; apt-get update"
    as_root dpkg --add-architecture armhf
    as_root apt-get update -qq || true
    abi=$(apt-cache depends linux-image-armmp:armhf 2>/dev/null \
        | sed -n 's/.*Depends: linux-image-\(.*-armmp\):armhf/\1/p' | head -n1 || true)
fi
if [ -n "$abi" ]; then
    kver=$(apt-cache policy "linux-image-$abi:armhf" | sed -n 's/ *Candidate: //p')
    key="$abi-$kver"
else
    key=$(cd "$CACHE" && ls -d 6.*-armmp-*/ 2>/dev/null | sed 's:/$::' | while read -r d; do
        [ -e "$d/ready" ] && echo "$d"; done | sort -V | tail -n1 || true)
    [ -n "$key" ] || die "apt knows no linux-image-armmp:armhf and nothing is cached in $CACHE"
    log "no apt index for armhf: using the cached $key"
fi
OUT=$CACHE/$key

emit_env() {
    [ "$print_env" = 1 ] || return 0
    local q
    q=$(cat "$CACHE/qemu-current")
    printf 'KERNEL=%s\nINITRD=%s\nQEMU=%s\nQEMU_DATA=%s\nQEMU_LIBS=%s\n' \
        "$OUT/vmlinuz" "$OUT/initrd.gz" "$q/usr/bin/qemu-system-arm" "$q/usr/share/qemu" \
        "$q/usr/lib/x86_64-linux-gnu:$q/lib/x86_64-linux-gnu"
}

download() { # packages... into $CACHE/debs (apt-get download runs as _apt when root)
    chmod 0777 "$CACHE/debs" 2>/dev/null || true
    (cd "$CACHE/debs" && apt-get download "$@" >/dev/null) || {
        log "apt-get download failed; apt-get update and retry"
        as_root apt-get update -qq || true
        (cd "$CACHE/debs" && apt-get download "$@" >/dev/null)
    }
}
deb() { # the cached .deb of package $1 version $2 (any version if empty)
    local f
    f=$(ls "$CACHE/debs/${1}_"*"${2:+_}"*.deb 2>/dev/null | grep -F "${2//:/%3a}" | tail -n1 || true)
    [ -n "$f" ] || die "no cached .deb for $1 $2"
    printf '%s\n' "$f"
}

prepare_qemu() {
    local v dir pkgs
    v=$(apt-cache policy qemu-system-arm 2>/dev/null | sed -n 's/ *Candidate: //p')
    if [ -z "$v" ] || [ "$v" = "(none)" ]; then
        [ -e "$CACHE/qemu-current" ] && return 0
        die "apt offers no qemu-system-arm"
    fi
    dir=$CACHE/qemu-${v//:/_}
    if [ ! -e "$dir/ready" ]; then
        # what installing it would pull in on this machine, minus what is already there
        pkgs=$(apt-get install -s --no-install-recommends qemu-system-arm 2>/dev/null \
            | awk '/^Inst /{print $2}')
        [ -n "$pkgs" ] || pkgs=qemu-system-arm
        log "unpacking qemu-system-arm $v and its libraries: $(echo $pkgs)"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        # shellcheck disable=SC2086
        download $pkgs
        local p
        for p in $pkgs; do dpkg -x "$(deb "$p" "")" "$dir.tmp"; done
        rm -rf "$dir" && mv "$dir.tmp" "$dir" && touch "$dir/ready"
    fi
    LD_LIBRARY_PATH="$dir/usr/lib/x86_64-linux-gnu:$dir/lib/x86_64-linux-gnu" \
        "$dir/usr/bin/qemu-system-arm" --version >/dev/null \
        || die "the unpacked $dir/usr/bin/qemu-system-arm does not run"
    echo "$dir" >"$CACHE/qemu-current"
}

build_gpio_sim() { # $1: extracted root, $2: linux-source .deb, $3: kernel release
    local root=$1 src=$2 rel=$3 mod=$OUT/gpio-sim
    local common=${rel%-armmp}-common
    rm -rf "$mod" && mkdir -p "$mod"
    # The headers' Makefile includes the -common tree by its absolute /usr/src path.
    echo "include $root/usr/src/linux-headers-$common/Makefile" \
        >"$root/usr/src/linux-headers-$rel/Makefile"
    dpkg-deb --fsys-tarfile "$src" | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' \
        | tar -xJ -C "$mod" --strip-components=3 --wildcards \
            '*/drivers/gpio/gpio-sim.c' '*/drivers/gpio/gpiolib.h' '*/kernel/irq/irq_sim.c'
    # Debian's amd64 modpost has x86-64 device-table sizes and stops on an arm OF table; the
    # table only serves device-tree autoloading, which the guest does not use.
    sed -i '/^MODULE_DEVICE_TABLE(of, gpio_sim_of_match);/d' "$mod/gpio-sim.c"
    # irq_to_desc is not exported to modules; generic_handle_irq_safe does the same.
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq_safe(irqnum);/' \
        "$mod/irq_sim.c"
    grep -q generic_handle_irq_safe "$mod/irq_sim.c" || die "irq_sim.c changed: the edit did not apply"
    printf 'obj-m := gpio_sim_oot.o\ngpio_sim_oot-y := gpio-sim.o irq_sim.o\n' >"$mod/Kbuild"
    make -s -C "$root/usr/src/linux-headers-$rel" M="$mod" ARCH=arm \
        CROSS_COMPILE=arm-linux-gnueabihf- -j2 modules >&2
    [ -e "$mod/gpio_sim_oot.ko" ] || die "gpio-sim did not build"
}

build_initramfs() { # $1: where the kernel's modules are
    python3 "$HERE/initramfs.py" "$OUT/initrd.gz" "$1" "$OUT/busybox" "$HERE/init.sh" \
        /usr/arm-linux-gnueabihf/lib "$OUT/gpio-sim/gpio_sim_oot.ko" -- \
        virtio_mmio virtio_blk virtio_net virtio_console crc32c_generic ext4 configfs
}

prepare_kernel() {
    [ -e "$OUT/ready" ] && return 0
    [ -n "$abi" ] || die "nothing cached for $key"
    log "preparing $key in $OUT"
    local srcver kb
    download "linux-image-$abi:armhf=$kver" "linux-headers-$abi:armhf=$kver" \
        "linux-headers-${abi%-armmp}-common=$kver" "linux-kbuild-6.1=$kver" \
        "linux-source-6.1=$kver" busybox-static:armhf
    rm -rf "$OUT" && mkdir -p "$OUT"
    local root=$OUT/root
    mkdir -p "$root"
    for p in "linux-image-$abi" "linux-headers-$abi" "linux-headers-${abi%-armmp}-common" \
        linux-kbuild-6.1; do
        dpkg -x "$(deb "$p" "$kver")" "$root"
    done
    dpkg -x "$(deb busybox-static "")" "$root"
    build_gpio_sim "$root" "$(deb linux-source-6.1 "$kver")" "$abi"
    cp "$root/boot/vmlinuz-$abi" "$OUT/vmlinuz"
    cp "$root/bin/busybox" "$OUT/busybox"
    KEEP_MODULES=$OUT/modules build_initramfs "$root/lib/modules/$abi"
    # keep only what boots (and rebuilds the initramfs): the unpacked tree is ~300 MB
    rm -rf "$root"
    touch "$OUT/ready"
    log "ready: $OUT"
}

prepare_qemu
prepare_kernel
# the initramfs carries init.sh: rebuild it when the script changed (no download)
if [ "$HERE/init.sh" -nt "$OUT/initrd.gz" ]; then
    log "init.sh changed: rebuilding the initramfs"
    build_initramfs "$OUT/modules"
fi
emit_env
