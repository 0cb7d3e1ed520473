#!/usr/bin/env python3
"""Cheap `cargo bloat`: which crates take the space in an UNSTRIPPED release binary.

  bench/bloat.py BINARY [--top N]

Reads `nm -C --size-sort -S BINARY` (symbol sizes, demangled) and `size -A BINARY` (sections)
and attributes every sized symbol to a crate by the first path segment of its demangled
name (`<A as B>::f` counts for A's crate; generic code instantiated for our types counts for
the crate that defines the generic function, e.g. tokio's task poll of our async fns, like
cargo-bloat does). C symbols (no `::`) are attributed by address: the bundled SQLite and
ring's C/asm objects are linked contiguously, so everything between their first and last
named symbol (sqlite3*, ring_core_*) belongs to them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

C_PREFIXES = [
    (re.compile(r"^sqlite3"), "sqlite (C, bundled by libsqlite3-sys)"),
    (re.compile(r"^(ring_core_|ecp_nistz256)"), "ring (its C/asm part)"),
]
STD = {"std", "core", "alloc", "std_detect", "panic_abort", "panic_unwind", "compiler_builtins",
       "rustc_demangle", "addr2line", "gimli", "miniz_oxide", "object"}
STD_LABEL = "std/core/alloc (incl. backtrace: gimli, addr2line, ...)"


def rust_crate(name: str) -> str | None:
    """Crate of a demangled Rust symbol, None for a C symbol."""
    if "::" not in name:
        return None
    s = name.lstrip("<&*(").removeprefix("mut ").removeprefix("dyn ").lstrip("<&*([")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    if not m:  # <u16 as core::convert::From<rustls::...>>: the first non-std crate named
        crates = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)::", name)
        other = [c for c in crates if c not in STD]
        c = other[0] if other else (crates[0] if crates else "std")
    else:
        c = m.group(1)
    return STD_LABEL if c in STD or c == "fmt" else c


def c_ranges(syms) -> list[tuple[int, int, str]]:
    """Address ranges of the bundled C libraries, per symbol kind (code, rodata, data): every
    C object is linked contiguously, and its static functions sit between its named ones."""
    out = []
    for rx, label in C_PREFIXES:
        for kinds in ("tTwW", "rR", "dDbB"):
            addrs = [(a, a + n) for a, n, k, name in syms if k in kinds and rx.match(name)]
            if addrs:
                out.append((min(x for x, _ in addrs), max(y for _, y in addrs), label))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args()
    nm = subprocess.run(["nm", "-C", "--size-sort", "-S", a.binary], capture_output=True, text=True)
    if nm.returncode != 0 or not nm.stdout.strip():
        print(f"bloat.py: nm found no symbols in {a.binary} (stripped?)", file=sys.stderr)
        return 1
    syms = []
    for line in nm.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            syms.append((int(parts[0], 16), int(parts[1], 16), parts[2], parts[3]))
    ranges = c_ranges(syms)
    by_crate: dict[str, int] = {}
    by_kind = {"code": 0, "data": 0}
    for addr, size, kind, name in syms:
        by_kind["code" if kind in "tTwW" else "data"] += size
        c = rust_crate(name)
        if c is None:
            c = next((label for lo, hi, label in ranges if lo <= addr < hi), "[other C: libc glue, compiler-rt, ...]")
        by_crate[c] = by_crate.get(c, 0) + size
    total = sum(by_crate.values())
    sec = subprocess.run(["size", "-A", a.binary], capture_output=True, text=True).stdout
    print(f"sections of {a.binary} (size -A, loaded ones):")
    for line in sec.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].startswith(".") and not f[0].startswith((".debug", ".comment", ".symtab", ".strtab")) and int(f[1]) >= 4096:
            print(f"  {f[0]:<16} {int(f[1]) / 1024:8.1f} KiB")
    print(f"sized symbols: {total / 1024:.0f} KiB (code {by_kind['code'] / 1024:.0f} KiB, "
          f"data/rodata {by_kind['data'] / 1024:.0f} KiB); by crate:")
    for c, n in sorted(by_crate.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"  {n / 1024:8.1f} KiB {n / total:6.1%}  {c}")
    print(f"largest symbols:")
    for _, size, kind, name in sorted(syms, key=lambda x: -x[1])[:12]:
        print(f"  {size / 1024:7.1f} KiB {kind} {name[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
