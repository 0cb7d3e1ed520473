#!/usr/bin/env bash
# A short run of each cargo-fuzz (libFuzzer) target in fuzz/: frame_decode, station_frames,
# certificates, config, control_request, http_response and ftp_reply.
#
#   scripts/fuzz-smoke.sh [SECONDS]      (default 60 s per target; CI runs it with 20)
#
# Needs a nightly toolchain (cargo fuzz builds with -Z sanitizer/coverage flags): without one it
# asks rustup for a minimal one, and if that fails too it prints "skipped: no nightly toolchain"
# and exits 0 (so CI's log says so). Installs cargo-fuzz (a pinned version,
# --locked) from crates.io if it is missing. Starts from the committed seeds (fuzz/seeds/...)
# plus whatever an earlier run left in fuzz/corpus/<target> (not committed), prints the
# executions per target, and exits non-zero if a target crashed (panic, broken invariant,
# timeout, out of memory), naming the reproducer in fuzz/artifacts/<target>/.
#
# Environment:
#   FUZZ_SANITIZER   cargo fuzz --sanitizer (default none: the targets only reach safe Rust, and
#                    without ASan they run about twice as fast; "address" works too)
#   FUZZ_JOBS        libFuzzer processes per target (default 1)
#   CARGO_TARGET_DIR the build goes to $CARGO_TARGET_DIR/fuzz (default fuzz/target)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-60}"
CARGO_FUZZ_VERSION=0.13.2
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"
TARGETS=(frame_decode station_frames certificates config control_request http_response ftp_reply)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
else
    TARGET_DIR="fuzz/target"
fi

if ! cargo +nightly --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
    echo "no nightly toolchain: installing one (rustup, minimal profile)"
    rustup toolchain install nightly --profile minimal --no-self-update || true
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke run skipped: no nightly toolchain (cargo +nightly does not work here)"
    exit 0
fi
echo "fuzz smoke run: $(cargo +nightly --version)"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --quiet
fi

fuzz() {
    cargo +nightly fuzz "$@"
}

echo "building the fuzz targets (sanitizer: $SANITIZER)"
fuzz build --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=0
total=0
for target in "${TARGETS[@]}"; do
    corpus="fuzz/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    log="$logs/$target.log"
    started="$logs/$target.started"
    touch "$started"
    args=(
        -max_total_time="$SECONDS_PER_TARGET"
        -timeout=30
        -rss_limit_mb=2048
        -dict="fuzz/$target.dict"
        -print_final_stats=1
    )
    if [ "$JOBS" -gt 1 ]; then
        args+=(-fork="$JOBS")
    fi
    echo "running $target for ${SECONDS_PER_TARGET}s"
    status=0
    fuzz run --sanitizer "$SANITIZER" --target-dir "$TARGET_DIR" "$target" \
        "$corpus" "fuzz/seeds/$target" -- "${args[@]}" >"$log" 2>&1 || status=$?
    # libFuzzer's own summary ("Done N runs in S second(s)", or stat::number_of_executed_units).
    runs="$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n1)"
    fi
    runs="${runs:-0}"
    files="$(find "$corpus" -type f | wc -l)"
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "FAILED: $target crashed after ${runs} executions (exit status $status)"
        grep -E -A3 "panicked at" "$log" | head -n 20 || true
        grep -E "ERROR: libFuzzer|Test unit written" "$log" | head -n 5 || true
        echo "--- last lines of the log:"
        tail -n 40 "$log"
        find "$artifacts" -type f -newer "$started" | while read -r crash; do
            echo "reproduce: cargo +nightly fuzz run --sanitizer $SANITIZER $target $crash"
        done
    else
        total=$((total + runs))
        echo "$target: $runs executions in ${SECONDS_PER_TARGET}s, no crash (corpus: $files files)"
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "fuzz smoke run: FAILED"
    exit 1
fi
echo "fuzz smoke run: ${total} executions, no crash"
