#!/usr/bin/env bash
# Regenerates link/hot-text.txt: the functions the agent runs at start-up, while idle and through
# one transaction, which scripts/link-release.sh lays out together at the front of .text.
#
#   scripts/hot-text.sh            profile and rewrite link/hot-text.txt
#   scripts/hot-text.sh --check    profile and compare: exit 1 if more than 10% of the functions
#                                  that ran are missing from the committed list, or if the link
#                                  found fewer than 90% of the list's Rust functions (CI runs this)
#
# How: the release build runs the benchmark scenario (bench/driver.py idle --transaction: boot,
# heartbeats, CSMS pings, plug in, token, 20 s of charging with meter values, unplug) under
# valgrind's callgrind, which records every piece of code that executed; the link map names the
# functions, normalised by `scripts/link-release.sh --keys`. Takes about 2 minutes.
# Needs valgrind (apt-get install valgrind) and the Python venv of scripts/setup-python.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/link/hot-text.txt
check=0
case "${1-}" in
    --check) check=1 ;;
    "") ;;
    *) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 2 ;;
esac
log() { printf '==> %s\n' "$*" >&2; }

command -v valgrind >/dev/null 2>&1 || { echo "hot-text: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
PY=$("$ROOT/scripts/setup-python.sh" | tail -n 1)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
# Profile the very binary cargo builds: another profile (one that keeps symbols, say) gets other
# symbol hashes, and LLVM then merges identical functions under other names.
log "release build"
(cd "$ROOT" && cargo build --release --locked)
AGENT=$TARGET_DIR/release/ocpp-agent
LINKED=$(find "$TARGET_DIR/release/deps" -maxdepth 1 -samefile "$AGENT" | head -n1)
MAP=$LINKED.map
[ -r "$MAP" ] || { echo "hot-text: no link map $MAP (is scripts/link-release.sh the linker?)" >&2; exit 1; }

cat >"$WORK/agent-under-callgrind" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.%p --dump-instr=yes \
    --compress-strings=no --compress-pos=no "$AGENT" "\$@"
EOF
chmod +x "$WORK/agent-under-callgrind"

log "scenario under callgrind (boot, idle, transaction)"
"$PY" "$ROOT/bench/driver.py" idle --agent "$WORK/agent-under-callgrind" --ctl "$AGENT" \
    --work "$WORK/run" --out "$WORK/idle.json" --seconds 25 --settle 5 --transaction --tx-wait 20 \
    >"$WORK/driver.log" 2>&1 || { cat "$WORK/driver.log" >&2; exit 1; }
grep -q "'Ended': 1" "$WORK/driver.log" || { cat "$WORK/driver.log" >&2; echo "hot-text: the transaction did not end" >&2; exit 1; }

# Every instruction address that executed in the agent (--dump-instr=yes), mapped through the link
# map to the input section, that is the function (.text.<symbol>), that holds it.
"$PY" - "$MAP" "$AGENT" "$WORK"/callgrind.* >"$WORK/mangled" <<'PY'
import bisect, re, sys
map_path, agent, outputs = sys.argv[1], sys.argv[2], sys.argv[3:]
sections = []
for line in open(map_path):
    parts = line.split()
    if len(parts) == 5 and ":(.text" in parts[4]:
        name = re.search(r":\((\.text[^)]*)\)$", parts[4])
        if name:
            sections.append((int(parts[0], 16), int(parts[2], 16), name.group(1)))
sections.sort()
starts = [s[0] for s in sections]
ran = set()
for path in outputs:
    ob = None
    for line in open(path):
        if line.startswith("ob="):
            ob = line[3:].strip()
        elif line.startswith("0x") and ob == agent:
            addr = int(line.split()[0], 16)
            i = bisect.bisect_right(starts, addr) - 1
            if i >= 0 and addr < sections[i][0] + sections[i][1]:
                ran.add(sections[i][2])
for name in sorted(ran):
    for prefix in (".text.unlikely.", ".text.hot.", ".text.startup.", ".text."):
        if name.startswith(prefix):
            print(name[len(prefix):])
            break
PY
[ -s "$WORK/mangled" ] || { echo "hot-text: callgrind recorded no function of $AGENT" >&2; exit 1; }
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
    echo "hot-text: $missing of $total functions that ran are not in link/hot-text.txt"
    [ $((missing * 10)) -le "$total" ] || { echo "hot-text: stale; run scripts/hot-text.sh" >&2; exit 1; }
    exit 0
fi

{
    echo "# Functions that ran at start-up, idle and through one transaction (normalised names)."
    echo "# Generated by scripts/hot-text.sh; read by scripts/link-release.sh. Do not edit."
    cat "$WORK/keys"
} >"$OUT"
log "wrote $OUT"
