#!/usr/bin/env bash
# Regenerates link/hot-text.txt (x86_64) or link/hot-text-armv7.txt: the functions the agent runs
# at start-up, while idle and through one transaction, which scripts/link-release.sh lays out
# together at the front of .text.
#
#   scripts/hot-text.sh [--armv7]            profile and rewrite the list
#   scripts/hot-text.sh [--armv7] --check    profile and compare: exit 1 if more than 10% of the
#                                            functions that ran are missing from the committed
#                                            list, or if the link found fewer than 90% of the
#                                            list's Rust functions (CI runs this)
#
# How: the release build runs the benchmark scenario (bench/driver.py idle --transaction: boot,
# heartbeats, CSMS pings, plug in, token, 20 s of charging with meter values, unplug) and every
# piece of code that executed is recorded: by valgrind's callgrind on x86_64, by qemu-arm's
# translation log (-d in_asm) for ARMv7, whose compiler (Debian's Rust 1.85) names and merges
# functions differently. The link map names the functions, normalised by
# `scripts/link-release.sh --keys`. Takes 2-4 minutes. Needs valgrind (apt-get install valgrind)
# or scripts/cross-armv7.sh's toolchain, and the Python venv of scripts/setup-python.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
check=0 armv7=0
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        --armv7) armv7=1 ;;
        *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 2 ;;
    esac
done
if [ "$armv7" = 1 ]; then OUT=$ROOT/link/hot-text-armv7.txt; else OUT=$ROOT/link/hot-text.txt; fi
log() { printf '==> %s\n' "$*" >&2; }

[ "$armv7" = 1 ] || command -v valgrind >/dev/null 2>&1 \
    || { echo "hot-text: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
PY=$("$ROOT/scripts/setup-python.sh" | tail -n 1)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
# Profile the very binary cargo builds: another profile (one that keeps symbols, say) gets other
# symbol hashes, and LLVM then merges identical functions under other names.
log "release build"
(cd "$ROOT" && cargo build --release --locked)
CTL=$TARGET_DIR/release/ocpp-agent
if [ "$armv7" = 1 ]; then
    "$ROOT/scripts/cross-armv7.sh" --build >&2
    AGENT=$TARGET_DIR/armv7-unknown-linux-gnueabihf/release/ocpp-agent
else
    AGENT=$CTL
fi
LINKED=$(find "$(dirname "$AGENT")/deps" -maxdepth 1 -samefile "$AGENT" | head -n1)
MAP=$LINKED.map
[ -r "$MAP" ] || { echo "hot-text: no link map $MAP (is scripts/link-release.sh the linker?)" >&2; exit 1; }

if [ "$armv7" = 1 ]; then
    cat >"$WORK/qemu-logging" <<EOF
#!/bin/sh
exec qemu-arm -d in_asm,page -D $WORK/qemu.%d.log "\$@"
EOF
    chmod +x "$WORK/qemu-logging"
    runner=(--agent "$AGENT" --qemu "$WORK/qemu-logging" --qemu-ld-prefix /usr/arm-linux-gnueabihf)
else
    cat >"$WORK/agent-under-callgrind" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.%p --dump-instr=yes \
    --compress-strings=no --compress-pos=no "$AGENT" "\$@"
EOF
    chmod +x "$WORK/agent-under-callgrind"
    runner=(--agent "$WORK/agent-under-callgrind")
fi

log "scenario (boot, idle, transaction)"
"$PY" "$ROOT/bench/driver.py" idle "${runner[@]}" --ctl "$CTL" \
    --work "$WORK/run" --out "$WORK/idle.json" --seconds 25 --settle 5 --transaction --tx-wait 20 \
    >"$WORK/driver.log" 2>&1 || { cat "$WORK/driver.log" >&2; exit 1; }
grep -q "'Ended': 1" "$WORK/driver.log" || { cat "$WORK/driver.log" >&2; echo "hot-text: the transaction did not end" >&2; exit 1; }

# Every instruction address that executed in the agent, mapped through the link map to the input
# section, that is the function (.text.<symbol>), that holds it. callgrind (--dump-instr=yes)
# gives addresses in the file's own numbering; qemu's log gives guest addresses, shifted by the
# load address: its "start_code" is where the first executable segment landed.
"$PY" - "$MAP" "$AGENT" "$WORK" >"$WORK/mangled" <<'PY'
import bisect, glob, os, re, subprocess, sys
map_path, agent, work = sys.argv[1], sys.argv[2], sys.argv[3]
sections = []
for line in open(map_path):
    parts = line.split()
    if len(parts) == 5 and ":(.text" in parts[4]:
        name = re.search(r":\((\.text[^)]*)\)$", parts[4])
        if name:
            sections.append((int(parts[0], 16), int(parts[2], 16), name.group(1)))
sections.sort()
starts = [s[0] for s in sections]

def executed():
    for path in glob.glob(os.path.join(work, "callgrind.*")):
        ob = None
        for line in open(path):
            if line.startswith("ob="):
                ob = line[3:].strip()
            elif line.startswith("0x") and ob == agent:
                yield int(line.split()[0], 16)
    headers = subprocess.run(["readelf", "-lW", agent], capture_output=True, text=True).stdout
    text_vaddr = min(int(l.split()[2], 16) for l in headers.splitlines()
                     if l.split()[:1] == ["LOAD"] and "E" in l.split()[6:-1])
    for path in glob.glob(os.path.join(work, "qemu.*.log")):
        base = None
        for line in open(path, errors="replace"):
            if base is None and line.startswith("start_code"):
                base = int(line.split()[1], 16) - text_vaddr
            elif base is not None and line.startswith("0x"):
                yield int(line.split(":")[0], 16) - base

ran = set()
for addr in executed():
    i = bisect.bisect_right(starts, addr) - 1
    if i >= 0 and addr < sections[i][0] + sections[i][1]:
        ran.add(sections[i][2])
for name in sorted(ran):
    for prefix in (".text.unlikely.", ".text.hot.", ".text.startup.", ".text."):
        if name.startswith(prefix):
            print(name[len(prefix):])
            break
PY
[ -s "$WORK/mangled" ] || { echo "hot-text: the profile recorded no function of $AGENT" >&2; exit 1; }
"$ROOT/scripts/link-release.sh" --keys <"$WORK/mangled" | LC_ALL=C sort -u >"$WORK/keys"
log "$(wc -l <"$WORK/keys") hot functions"

if [ "$check" = 1 ]; then
    linked=$(cat "$LINKED.order.log")
    echo "hot-text: $linked"
    found=$(printf '%s\n' "$linked" | sed -n 's/.*: \([0-9]*\) of \([0-9]*\) .*/\1/p')
    listed=$(printf '%s\n' "$linked" | sed -n 's/.*: \([0-9]*\) of \([0-9]*\) .*/\2/p')
    if [ -z "$found" ] || [ $((found * 10)) -lt $((listed * 9)) ]; then
        echo "hot-text: the release link did not apply the layout" >&2
        exit 1
    fi
    missing=$(LC_ALL=C comm -23 "$WORK/keys" <(grep -v '^#' "$OUT" | LC_ALL=C sort -u) | wc -l)
    total=$(wc -l <"$WORK/keys")
    echo "hot-text: $missing of $total functions that ran are not in ${OUT#"$ROOT"/}"
    [ $((missing * 10)) -le "$total" ] || { echo "hot-text: stale; run scripts/hot-text.sh $*" >&2; exit 1; }
    exit 0
fi

{
    echo "# Functions that ran at start-up, idle and through one transaction (normalised names),"
    echo "# $([ "$armv7" = 1 ] && echo "ARMv7 build (Debian's Rust 1.85)" || echo "x86_64 build")."
    echo "# Generated by scripts/hot-text.sh; read by scripts/link-release.sh. Do not edit."
    cat "$WORK/keys"
} >"$OUT"
log "wrote $OUT"
