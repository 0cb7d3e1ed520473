#!/usr/bin/env bash
# Footprint benchmark of ocpp-agent: prints each figure with how it was obtained, then a
# Markdown summary table (figure, value, budget, MicroOcpp peer) for BENCHMARKS.md.
#
#   scripts/bench.sh                 full run: idle window 600 s, 11 boot runs, ARMv7 (~45 min)
#   scripts/bench.sh --quick         idle window 60 s, 5 boot runs, short qemu idle (~10 min)
#   scripts/bench.sh --no-armv7      skip the ARMv7 cross build and the qemu-arm measurement
#   scripts/bench.sh --bloat         also build an unstripped release binary and list which
#                                    crates take the space (bench/bloat.py, nm)
#
# Figures:
#   1. release binary size, x86_64 (cargo build --release) and ARMv7 (scripts/cross-armv7.sh)
#   2. idle memory of the release agent connected to the Python CSMS (tests/csms/csms.py,
#      heartbeat interval 10 s, CSMS pings every 20 s, agent pings every 30 s): RssAnon,
#      Private_Dirty and Pss beside VmRSS (/proc/PID/status, /proc/PID/smaps_rollup), and where
#      the private memory is (/proc/PID/smaps per mapping); for the ARMv7 binary under qemu-arm,
#      the same sums over the guest's mappings in qemu's smaps (qemu's own status figures are
#      the emulator's)
#   3. idle CPU (schedstat ns and utime+stime) and wake-ups (context switches) over the window
#   4. process start to the first BootNotification frame, measured by a WebSocket listener in
#      the process that spawns the agent (median, min, max of N runs)
#   5. the peak of the same figures through a transaction (ctl plug 1 in, ctl token 1 TOKEN1
#      when the agent has it, 20 s, ctl plug 1 out), sampled every second, and VmHWM; on x86_64
#      and under qemu-arm
# Figures 2, 3 and 5 are measured in BENCH_ROUNDS rounds (default 3), each with a new agent and
# CSMS; the summary gives the medians.
#
# Env: BENCH_IDLE_SECONDS, BENCH_BOOT_RUNS, BENCH_QEMU_SECONDS, BENCH_ROUNDS override the
#      windows/runs; BENCH_NICE the niceness of the builds (default 10);
#      BENCH_DIR keeps the logs and JSON results there (default: a new /tmp/ocpp-agent-bench.*);
#      CARGO_TARGET_DIR is respected (native and ARMv7 builds); BENCH_ARMV7_TARGET_DIR
#      overrides it for the ARMv7 build only.
# Works as root on a fresh clone with CI=true: it runs scripts/setup-python.sh and
# scripts/cross-armv7.sh (which installs Debian's armhf toolchain when missing). Builds run
# under `nice`; the measured processes do not. Every process started is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=0 ARMV7=1 BLOAT=0
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-armv7) ARMV7=0 ;;
        --bloat) BLOAT=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; echo "bench.sh: unknown argument: $1" >&2; exit 64 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    IDLE_SECONDS="${BENCH_IDLE_SECONDS:-60}" BOOT_RUNS="${BENCH_BOOT_RUNS:-5}"
    QEMU_SECONDS="${BENCH_QEMU_SECONDS:-30}" TX_WAIT=20
else
    IDLE_SECONDS="${BENCH_IDLE_SECONDS:-600}" BOOT_RUNS="${BENCH_BOOT_RUNS:-11}"
    QEMU_SECONDS="${BENCH_QEMU_SECONDS:-120}" TX_WAIT=20
fi
ROUNDS="${BENCH_ROUNDS:-3}"
for v in IDLE_SECONDS BOOT_RUNS QEMU_SECONDS ROUNDS; do
    case "${!v}" in '' | *[!0-9]*) echo "bench.sh: $v must be a whole number, got '${!v}'" >&2; exit 64 ;; esac
done

NICE=(nice -n "${BENCH_NICE:-10}")
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
AGENT="$TARGET_DIR/release/ocpp-agent"
ARMV7_TARGET_DIR="${BENCH_ARMV7_TARGET_DIR:-$TARGET_DIR}"
ARMV7_BIN="$ARMV7_TARGET_DIR/armv7-unknown-linux-gnueabihf/release/ocpp-agent"
if [ -n "${BENCH_DIR:-}" ]; then
    WORK="$BENCH_DIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/ocpp-agent-bench.XXXXXX")"
fi
RESULTS="$WORK/results"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

DRIVER_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true # it stops the CSMS and the agent
        for _ in $(seq 100); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DRIVER_PID" 2>/dev/null || true # its children die with it (PDEATHSIG)
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# The driver runs in the background so that a signal reaches the trap at once.
driver() {
    "$PY" "$ROOT/bench/driver.py" "$@" &
    DRIVER_PID=$!
    local rc=0
    wait "$DRIVER_PID" || rc=$?
    DRIVER_PID=""
    return "$rc"
}

section() { printf '\n## %s\n\n' "$*"; }
note() { printf '  %s\n' "$*"; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
stripped_size() { # stripped_size BIN READELF STRIP: size of BIN, or of a stripped copy
    local bin="$1" readelf="$2" strip="$3"
    if LC_ALL=C "$readelf" -S "$bin" | grep -q '\.symtab'; then
        "$strip" -o "$WORK/stripped.tmp" "$bin"
        stat -c %s "$WORK/stripped.tmp"
        rm -f "$WORK/stripped.tmp"
    else
        stat -c %s "$bin"
    fi
}

# ---------------------------------------------------------------------------------------------
section "Machine"
note "date:   $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note "host:   nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2 / 1048576}' /proc/meminfo)"
note "kernel: $(uname -srm)"
note "load:   $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; other jobs share these cores)"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    # What the binary is built from: src/, Cargo.lock, .cargo/ and Cargo.toml, except [[bench]]
    # sections (they do not change the binary).
    CHANGED="$(git -C "$ROOT" diff --name-only HEAD -- src Cargo.lock .cargo | tr '\n' ' ')"
    if git -C "$ROOT" diff -U0 HEAD -- Cargo.toml | grep '^[+-]' | grep -v '^\(+++\|---\)' \
        | grep -qv '^[+-]\(\[\[bench\]\]\|name = .*\|harness = .*\|\)$'; then
        CHANGED="${CHANGED}Cargo.toml"
    fi
    note "commit: $(git -C "$ROOT" rev-parse HEAD | cut -c1-12)${CHANGED:+ + uncommitted changes in: $CHANGED}"
else
    note "commit: unknown (not a git checkout)"
fi
note "mode:   $([ "$QUICK" = 1 ] && echo --quick || echo full): idle window ${IDLE_SECONDS} s, ${BOOT_RUNS} boot runs, qemu idle ${QEMU_SECONDS} s, ${ROUNDS} rounds"
note "logs:   $WORK"

section "Setup"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
note "Python venv for the CSMS: scripts/setup-python.sh"
PY="$("$ROOT/scripts/setup-python.sh" | tail -n 1)"
[ -x "$PY" ] || die "scripts/setup-python.sh did not produce a python"
note "x86_64 release build: nice cargo build --release --bin ocpp-agent  ($(cargo --version))"
if ! "${NICE[@]}" cargo build --release --bin ocpp-agent 2>&1 | sed 's/^/    /'; then
    die "cargo build --release failed"
fi
[ -x "$AGENT" ] || die "$AGENT was not built"

ARMV7_OK=0 ARMV7_NOTE=""
if [ "$ARMV7" = 1 ]; then
    note "ARMv7 release build: nice scripts/cross-armv7.sh (CARGO_TARGET_DIR=$ARMV7_TARGET_DIR; installs the toolchain if needed)"
    if CARGO_TARGET_DIR="$ARMV7_TARGET_DIR" "${NICE[@]}" "$ROOT/scripts/cross-armv7.sh" >"$WORK/cross-armv7.log" 2>&1; then
        sed 's/^/    /' "$WORK/cross-armv7.log" | grep -v '^    *Compiling' || true
        [ -x "$ARMV7_BIN" ] && ARMV7_OK=1 || ARMV7_NOTE="scripts/cross-armv7.sh produced no $ARMV7_BIN"
    else
        tail -n 15 "$WORK/cross-armv7.log" | sed 's/^/    /'
        ARMV7_NOTE="scripts/cross-armv7.sh failed (toolchain not installable or build error; log: $WORK/cross-armv7.log)"
    fi
    [ "$ARMV7_OK" = 1 ] || note "ARMv7 SKIPPED: $ARMV7_NOTE"
else
    ARMV7_NOTE="--no-armv7"
    note "ARMv7 skipped (--no-armv7)"
fi

# ---------------------------------------------------------------------------------------------
section "1. Release binary size"
X86_SIZE="$(stripped_size "$AGENT" readelf strip)"
note "x86_64: $AGENT"
OPT_LEVEL="$(sed -n '/^\[profile\.release\]/,/^\[/s/^opt-level *= *"\{0,1\}\([^"]*\)"\{0,1\}.*/\1/p' "$ROOT/Cargo.toml")"
note "  $X86_SIZE bytes = $(mib "$X86_SIZE") stripped (stat -c %s; profile: opt-level=${OPT_LEVEL:-?}, lto, codegen-units=1, panic=abort, strip)"
note "  sections (size -A, loaded): $(size -A "$AGENT" | awk '$1 ~ /^\.(text|rodata|eh_frame|eh_frame_hdr|data\.rel\.ro|rela\.dyn)$/ {printf "%s %.0f KiB, ", $1, $2 / 1024}' | sed 's/, $//')"
note "  MicroOcpp Linux simulator (x86_64, stripped, no database): 1.64 MiB -> ratio $(awk -v b="$X86_SIZE" 'BEGIN { printf "%.2f", b / (1.64 * 1048576) }')"
ARMV7_SIZE=""
if [ "$ARMV7_OK" = 1 ]; then
    ARMV7_SIZE="$(stripped_size "$ARMV7_BIN" arm-linux-gnueabihf-readelf arm-linux-gnueabihf-strip)"
    note "ARMv7: $ARMV7_BIN"
    note "  $ARMV7_SIZE bytes = $(mib "$ARMV7_SIZE") stripped; budget <= 3.5 MiB (3670016 B, issue 13): $(awk -v b="$ARMV7_SIZE" 'BEGIN { printf "%s, %.0f%% of it", (b <= 3670016 ? "OK" : "OVER"), 100 * b / 3670016 }')"
    note "  $(file -b "$ARMV7_BIN" | cut -d, -f1-2)"
    note "  ratio to MicroOcpp's 1.64 MiB (x86_64): $(awk -v b="$ARMV7_SIZE" 'BEGIN { printf "%.2f", b / (1.64 * 1048576) }')"
else
    note "ARMv7: skipped ($ARMV7_NOTE)"
fi
printf '{"x86_64": %s, "armv7": %s, "armv7_note": "%s"}\n' "$X86_SIZE" "${ARMV7_SIZE:-null}" \
    "$(printf '%s' "$ARMV7_NOTE" | sed 's/["\\]/ /g')" >"$RESULTS/size.json"

if [ "$BLOAT" = 1 ]; then
    BLOAT_DIR="$TARGET_DIR/bench-unstripped"
    note ""
    note "what takes the space (--bloat): CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$BLOAT_DIR nice cargo build --release, then bench/bloat.py"
    CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR="$BLOAT_DIR" "${NICE[@]}" \
        cargo build --release --bin ocpp-agent >"$WORK/bloat-build.log" 2>&1 || die "unstripped build failed: $WORK/bloat-build.log"
    "$PY" "$ROOT/bench/bloat.py" "$BLOAT_DIR/release/ocpp-agent" --top 20 | sed 's/^/    /'
fi

# ---------------------------------------------------------------------------------------------
for r in $(seq "$ROUNDS"); do
    section "2+3+5. Idle memory, idle CPU and wake-ups, transaction peak (x86_64), round $r of $ROUNDS"
    note "command: $PY bench/driver.py idle --agent $AGENT --seconds $IDLE_SECONDS --transaction --tx-wait $TX_WAIT"
    driver idle --agent "$AGENT" --work "$WORK/idle-$r" --out "$RESULTS/idle-$r.json" \
        --seconds "$IDLE_SECONDS" --transaction --tx-wait "$TX_WAIT" --progress
done

section "4. Start to first BootNotification on the wire (x86_64)"
note "command: $PY bench/driver.py boot --agent $AGENT --runs $BOOT_RUNS"
driver boot --agent "$AGENT" --work "$WORK/boot" --out "$RESULTS/boot.json" --runs "$BOOT_RUNS"

if [ "$ARMV7_OK" = 1 ] && command -v qemu-arm >/dev/null 2>&1; then
    for r in $(seq "$ROUNDS"); do
        section "2b+5b. Idle memory and transaction peak of the ARMv7 binary under qemu-arm, round $r of $ROUNDS"
        note "command: $PY bench/driver.py idle --agent $ARMV7_BIN --qemu qemu-arm --qemu-ld-prefix /usr/arm-linux-gnueabihf --ctl $AGENT --seconds $QEMU_SECONDS --settle 5 --transaction --tx-wait $TX_WAIT"
        driver idle --agent "$ARMV7_BIN" --ctl "$AGENT" --qemu qemu-arm --qemu-ld-prefix /usr/arm-linux-gnueabihf \
            --work "$WORK/qemu-$r" --out "$RESULTS/qemu-$r.json" --seconds "$QEMU_SECONDS" --settle 5 \
            --transaction --tx-wait "$TX_WAIT"
    done
else
    section "2b+5b. Idle memory and transaction peak of the ARMv7 binary under qemu-arm"
    note "skipped: ${ARMV7_NOTE:-qemu-arm not installed}"
fi

# ---------------------------------------------------------------------------------------------
section "Summary (paste into BENCHMARKS.md)"
"$PY" "$ROOT/bench/driver.py" summary --results "$RESULTS"
echo
note "JSON results and logs: $WORK"
