#!/bin/sh
# Linker wrapper (set in .cargo/config.toml): links the release binary with the code that runs
# at start-up, idle and in a transaction laid out together at the front of .text.
#
# Why: the kernel maps file pages around every page fault (fault-around, 64 KiB by default), so
# with the hot functions scattered over 2.6 MiB of code nearly all of it ended up resident. Packed
# together they touch far fewer windows: idle VmRSS fell by about 1.6 MiB (BENCHMARKS.md,
# "Code layout"). The lists of hot functions (link/hot-text.txt; link/hot-text-armv7.txt through
# scripts/link-release-armv7.sh) are written by scripts/hot-text.sh from a profiled run; their
# names carry no hashes, so they stay valid across rustc versions and edits. A stale or partial
# list only costs locality, never correctness.
#
# Only the final link of the release binary (target/**/release/deps/ocpp_agent-*) is changed; every
# other link (tests, build scripts, debug builds) goes straight to the real linker. The release
# link also packs relative relocations (RELR) when the linker is lld >= 15.
#
#   OCPP_AGENT_CC       the real linker driver (default: cc; scripts/link-release-armv7.sh sets
#                       arm-linux-gnueabihf-gcc)
#   OCPP_AGENT_LLD_DIR  a directory holding ld.lld, for drivers that do not use lld already
#   OCPP_AGENT_HOT      the hot-function list (default: link/hot-text.txt of this tree)
#
# `scripts/link-release.sh --keys` reads symbol names (mangled) on stdin and prints the
# normalised key of each: what link/hot-text.txt holds.
set -eu

cc=${OCPP_AGENT_CC:-cc}
tools_prefix=
case $cc in *-gcc) tools_prefix=${cc%gcc} ;; esac
cxxfilt=${tools_prefix}c++filt
nm=${tools_prefix}nm

# mangled names on stdin -> "key<TAB>mangled" on stdout. The key is the demangled name without
# what changes from one build or compiler to the next: v0 crate disambiguators ([0123abcd]),
# legacy hashes (::h0123456789abcdef), LLVM's .llvm.NNN suffixes; and inherent-impl brackets,
# which v0 writes (<a::B>::f) and legacy does not (a::B::f).
keys() {
    tmp=$(mktemp)
    sed 's/\.llvm\.[0-9][0-9]*$//' >"$tmp"
    # shellcheck disable=SC2094 # both only read $tmp
    "$cxxfilt" <"$tmp" | paste - "$tmp" | awk -F'\t' '{
        k = $1
        gsub(/\[[0-9a-f][0-9a-f]*\]/, "", k)
        sub(/::h[0-9a-f][0-9a-f]*$/, "", k)
        if (substr(k, 1, 1) == "<") {
            depth = 0
            for (i = 1; i <= length(k); i++) {
                c = substr(k, i, 1)
                if (c == "<") depth++
                else if (c == ">") { depth--; if (depth == 0) break }
            }
            inner = substr(k, 2, i - 2)
            if (index(inner, " as ") == 0 && substr(k, i + 1, 2) == "::")
                k = inner substr(k, i + 1)
        }
        print k "\t" $2
    }'
    rm -f "$tmp"
}

if [ "${1-}" = "--keys" ]; then
    keys | cut -f1
    exit 0
fi

out='' prev=''
for a in "$@"; do
    [ "$prev" = "-o" ] && out=$a
    prev=$a
done
case $out in
    */release/deps/ocpp_agent-*) ;;
    *) exec "$cc" "$@" ;;
esac

here=$(cd "$(dirname "$0")/.." && pwd)
hot=${OCPP_AGENT_HOT:-$here/link/hot-text.txt}
warn() { printf 'link-release: warning: %s; linking without the hot-code layout\n' "$*" >&2; }

uses_lld=0
for a in "$@"; do
    case $a in -fuse-ld=lld) uses_lld=1 ;; esac
done
extra=
if [ "$uses_lld" = 0 ]; then
    if [ -n "${OCPP_AGENT_LLD_DIR-}" ] && [ -x "$OCPP_AGENT_LLD_DIR/ld.lld" ]; then
        extra="-fuse-ld=lld -B$OCPP_AGENT_LLD_DIR/"
    elif command -v ld.lld >/dev/null 2>&1; then
        extra="-fuse-ld=lld"
    else
        warn "no ld.lld found (GNU ld cannot order by symbol)"
        exec "$cc" "$@"
    fi
fi
for t in "$nm" "$cxxfilt"; do
    command -v "$t" >/dev/null 2>&1 || { warn "$t not found"; exec "$cc" "$@"; }
done
[ -r "$hot" ] || { warn "$hot missing"; exec "$cc" "$@"; }

order=$out.order
pairs=$out.keys
for a in "$@"; do
    case $a in *.o) "$nm" --defined-only "$a" 2>/dev/null ;; esac
done | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u | keys >"$pairs"

# Hot keys in list order, each replaced by every symbol of this link with that key (generic
# functions share one key across their instances). Keys no Rust object defines are C functions
# (SQLite, ring, compiler builtins) whose names are their keys.
awk -F'\t' '
    NR == FNR { if ($0 !~ /^#/ && $0 != "") hot[++n] = $0; next }
    { syms[$1] = ($1 in syms) ? syms[$1] "\n" $2 : $2 }
    END {
        for (i = 1; i <= n; i++) {
            k = hot[i]
            if (k in syms) { print syms[k]; if (k ~ /::/) found++ }
            else if (k ~ /^[A-Za-z_][A-Za-z0-9_.]*$/) print k
            if (k ~ /::/) rust++
        }
        printf "link-release: %d of %d hot Rust functions found in this link\n", found, rust > "/dev/stderr"
    }' "$hot" "$pairs" >"$order" 2>"$order.log"
rm -f "$pairs"

# RELR ("-z pack-relative-relocs") needs lld >= 15 and glibc >= 2.36 on the target; the binary
# then names that requirement (GLIBC_ABI_DT_RELR), so an older glibc refuses it at load. lld 14
# only has --pack-dyn-relocs=relr, which does not record the requirement: not used.
relr=
lld_version=$(
    # the same driver and linker-selection flags (-B, -fuse-ld) as the real link
    for a in "$@"; do
        case $a in -B*|-fuse-ld=*) set -- "$@" "$a" ;; esac
        shift
    done
    # shellcheck disable=SC2086
    "$cc" "$@" $extra -Wl,--version 2>/dev/null | sed -n 's/.*LLD \([0-9][0-9]*\)\..*/\1/p' | head -n1
)
if [ -n "$lld_version" ] && [ "$lld_version" -ge 15 ]; then
    relr="-Wl,-z,pack-relative-relocs"
fi

# The link map (next to the binary) lets scripts/hot-text.sh name the code a profile of the
# stripped binary ran.
# shellcheck disable=SC2086 # $extra and $relr are lists of flags
exec "$cc" "$@" $extra $relr -Wl,--symbol-ordering-file="$order" -Wl,--no-warn-symbol-ordering \
    -Wl,-Map="$out.map"
