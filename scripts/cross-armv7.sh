#!/usr/bin/env bash
# Cross-build ocpp-agent for armv7-unknown-linux-gnueabihf (e.g. MYIR MYD-YF13X, STM32MP13,
# Cortex-A7) with Debian bookworm's own Rust toolchain (rustc-web: 1.85 when this was written,
# 1.96 on 2026-12-02), and optionally run the result under qemu-arm. Works without rustup targets (nothing is downloaded but Debian packages).
#
# Usage:
#   scripts/cross-armv7.sh                    install the toolchain if needed, then build
#   scripts/cross-armv7.sh --install-only     only install the toolchain (idempotent)
#   scripts/cross-armv7.sh --build            same as no flag
#   scripts/cross-armv7.sh --run [--] ARGS    run the built binary under qemu-arm with ARGS
#   scripts/cross-armv7.sh --build --run -- ARGS   build, then run
#   scripts/cross-armv7.sh --bench NAME       build benches/NAME.rs for ARMv7 and run it under
#                                             qemu-arm (`cargo bench` there: the full run)
# --run exits with the binary's exit code.
#
# Installation (skipped when a quick check finds everything present), as root or via sudo:
#   dpkg --add-architecture armhf; apt-get update (a failing armhf index is tolerated)
#   apt-get install rustc-web=V cargo-web=V libstd-rust-web-dev=V gcc-arm-linux-gnueabihf
#                   libc6-dev-armhf-cross binutils-arm-linux-gnueabihf qemu-user
#   with V = the version `apt-cache madison libstd-rust-web-dev:armhf` offers; then the armhf
#   standard library is extracted from libstd-rust-web-dev:armhf (+ its libstd-rust-web-1.NN
#   dependency) with `apt-get download` + `dpkg -x` and copied to
#   /usr/lib/rustlib/armv7-unknown-linux-gnueabihf (installing the armhf package through apt
#   fails on a multiarch conflict).
#
# The build uses /usr/bin/cargo and /usr/bin/rustc (Debian's), never a rustup proxy; while
# Debian served 1.85 a green build also proved the MSRV (it serves 1.96 now, which proves only
# that Debian's current Rust builds it). Respects CARGO_TARGET_DIR.
set -euo pipefail

TARGET=armv7-unknown-linux-gnueabihf
TRIPLE_GCC=arm-linux-gnueabihf
RUSTLIB_DIR=/usr/lib/rustlib/$TARGET
QEMU_LD_PREFIX=/usr/$TRIPLE_GCC
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'cross-armv7: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

do_install=0 do_build=0 do_run=0 install_only=0
bench=""
run_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --install-only) install_only=1; shift ;;
        --build) do_build=1; shift ;;
        --bench) [ $# -ge 2 ] || die "--bench needs a name"; bench=$2; shift 2 ;;
        --run)
            do_run=1; shift
            [ "${1-}" = "--" ] && shift
            run_args=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
if [ "$install_only" = 1 ]; then
    do_install=1 do_build=0 do_run=0
elif [ -n "$bench" ]; then
    do_install=1 do_build=0 do_run=0
elif [ "$do_run" = 0 ] || [ "$do_build" = 1 ]; then
    # default (no flag) and --build: install if needed, then build
    do_install=1 do_build=1
fi

# ---------------------------------------------------------------------------------------------
# privileges: root, or sudo (non-interactive when there is no terminal, e.g. CI)
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
    else
        die "need root (or sudo) to run: $*"
    fi
}

# ---------------------------------------------------------------------------------------------
# quick check: is the whole toolchain present and consistent?
toolchain_ok() {
    local t
    for t in /usr/bin/rustc /usr/bin/cargo "$TRIPLE_GCC-gcc" "$TRIPLE_GCC-ar" "$TRIPLE_GCC-strip" \
        qemu-arm; do
        command -v "$t" >/dev/null 2>&1 || { log "missing: $t"; return 1; }
    done
    [ -e "$QEMU_LD_PREFIX/lib/crt1.o" ] || { log "missing: libc6-dev-armhf-cross"; return 1; }
    compgen -G "$RUSTLIB_DIR/lib/libstd-*.rlib" >/dev/null || { log "missing: $RUSTLIB_DIR"; return 1; }
    # The armhf std must come from the very same rustc build: load it (no codegen, ~0.2 s).
    local tmp rc=0
    tmp=$(mktemp -d)
    echo 'fn main() {}' >"$tmp/m.rs"
    /usr/bin/rustc --target "$TARGET" --edition 2021 --emit=metadata -o "$tmp/m.rmeta" "$tmp/m.rs" \
        >"$tmp/log" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || { log "armhf std does not match /usr/bin/rustc:"; sed 's/^/    /' "$tmp/log" >&2; }
    rm -rf "$tmp"
    return "$rc"
}

install_toolchain() {
    export DEBIAN_FRONTEND=noninteractive
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script needs Debian bookworm"

    if ! dpkg --print-foreign-architectures | grep -qx armhf; then
        log "dpkg --add-architecture armhf"
        as_root dpkg --add-architecture armhf
    fi
    log "apt-get update (a failing index, e.g. a third-party repo without armhf, is tolerated)"
    as_root apt-get update || log "apt-get update reported errors; continuing"

    local v
    v=$(apt-cache madison libstd-rust-web-dev:armhf 2>/dev/null | awk -F'|' 'NR==1 {gsub(/ /, "", $2); print $2}')
    [ -n "$v" ] || die "apt-cache madison libstd-rust-web-dev:armhf offers no version (is the armhf index of bookworm available?)"
    # the runtime package carries the version in its name (libstd-rust-web-1.85): read it from Depends
    local rt
    rt=$(apt-cache show "libstd-rust-web-dev:armhf=$v" 2>/dev/null \
        | sed -n 's/^Depends:.*\(libstd-rust-web-1\.[0-9]*\) .*/\1/p' | head -n1)
    [ -n "$rt" ] || die "cannot find the runtime dependency of libstd-rust-web-dev:armhf=$v"
    log "Debian Rust version: $v (runtime package $rt)"

    log "apt-get install rustc-web=$v cargo-web=$v libstd-rust-web-dev=$v + cross gcc, qemu-user"
    as_root apt-get install -y --no-install-recommends --allow-downgrades \
        "rustc-web=$v" "cargo-web=$v" "libstd-rust-web-dev=$v" \
        gcc-arm-linux-gnueabihf libc6-dev-armhf-cross binutils-arm-linux-gnueabihf qemu-user

    local tmp
    tmp=$(mktemp -d)
    chmod 0777 "$tmp" # apt-get download runs as _apt when called as root
    log "extracting the armhf standard library into $RUSTLIB_DIR"
    (cd "$tmp" && apt-get download "libstd-rust-web-dev:armhf=$v" "$rt:armhf=$v")
    local deb
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
    [ -d "$tmp/root/usr/lib/rustlib/$TARGET" ] || die "the armhf packages contain no usr/lib/rustlib/$TARGET"
    as_root rm -rf "$RUSTLIB_DIR"
    as_root mkdir -p /usr/lib/rustlib
    as_root cp -a "$tmp/root/usr/lib/rustlib/$TARGET" /usr/lib/rustlib/
    rm -rf "$tmp"

    toolchain_ok || die "toolchain still incomplete after installation"
}

# ---------------------------------------------------------------------------------------------
target_dir() {
    local d=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
    case "$d" in /*) ;; *) d=$ROOT_DIR/$d ;; esac
    printf '%s\n' "$d"
}
binary() { printf '%s/%s/release/ocpp-agent\n' "$(target_dir)" "$TARGET"; }

debian_toolchain() {
    # Debian's toolchain first, whatever rustup puts on PATH; no rustup override may leak in.
    export PATH=/usr/bin:$PATH
    export RUSTC=/usr/bin/rustc
    unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER || true
    # a plain link with the cross gcc (and its GNU ld), as cross-rs and Yocto do
    export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=$TRIPLE_GCC-gcc
    export CC_armv7_unknown_linux_gnueabihf=$TRIPLE_GCC-gcc
    export AR_armv7_unknown_linux_gnueabihf=$TRIPLE_GCC-ar
    log "$(/usr/bin/cargo --version), $(/usr/bin/rustc --version)"
    cd "$ROOT_DIR"
}

build() {
    debian_toolchain
    /usr/bin/cargo build --locked --release --target "$TARGET"

    local bin size
    bin=$(binary)
    [ -x "$bin" ] || die "build produced no $bin"
    if LC_ALL=C "$TRIPLE_GCC-readelf" -S "$bin" | grep -q '\.symtab'; then
        "$TRIPLE_GCC-strip" -o "$bin.stripped" "$bin"
        size=$(stat -c %s "$bin.stripped")
        log "binary: $bin (not stripped by the profile; stripped copy: $bin.stripped)"
    else
        size=$(stat -c %s "$bin")
        log "binary: $bin (already stripped by the release profile)"
    fi
    local glibc
    glibc=$(LC_ALL=C "$TRIPLE_GCC-objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1)
    log "needs at least ${glibc:-an unknown glibc} on the target"
    if LC_ALL=C "$TRIPLE_GCC-readelf" -V "$bin" | grep -q GLIBC_ABI_DT_RELR; then
        log "and glibc >= 2.36 for its packed relocations (GLIBC_ABI_DT_RELR)"
    fi
    printf 'stripped size: %s bytes (%s KiB)\n' "$size" "$(( (size + 1023) / 1024 ))"
}

run_bench() {
    debian_toolchain
    local exe
    exe=$(/usr/bin/cargo bench --locked --no-run --target "$TARGET" --bench "$bench" \
            --message-format=json \
        | grep '"kind":\["bench"\]' \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
    [ -n "$exe" ] && [ -x "$exe" ] || die "no executable for bench $bench"
    log "running $exe under qemu-arm"
    qemu-arm -L "$QEMU_LD_PREFIX" "$exe" --bench
}

run() {
    local bin
    bin=$(binary)
    [ -x "$bin" ] || die "$bin not built yet: run $0 --build first (or --build --run -- ARGS)"
    command -v qemu-arm >/dev/null 2>&1 || die "qemu-arm missing: run $0 --install-only"
    exec qemu-arm -L "$QEMU_LD_PREFIX" "$bin" ${run_args[@]+"${run_args[@]}"}
}

if [ "$do_install" = 1 ]; then
    if toolchain_ok; then
        log "toolchain present: $(/usr/bin/rustc --version), $RUSTLIB_DIR"
    else
        install_toolchain
    fi
fi
[ "$do_build" = 1 ] && build
[ -n "$bench" ] && run_bench
[ "$do_run" = 1 ] && run
exit 0
