#!/usr/bin/env python3
"""Writes the guest's initramfs (a newc cpio archive, gzip-compressed) without cpio or root.

usage: initramfs.py OUT.cpio.gz MODULES_DIR BUSYBOX INIT SYSROOT_LIB EXTRA_KO... -- MODULE...

The kernel modules named after `--` are looked up under MODULES_DIR and written, with what
they depend on (the `depends=` of their .modinfo: the host may have no depmod), in load
order to /lib/modules/load-order, which /init insmods one by one; the EXTRA_KO files
(gpio-sim, built out of tree) come last. The dynamic loader and the libraries the ARMv7
agent needs are copied from SYSROOT_LIB (Debian's armhf cross libc).
"""
import gzip
import os
import re
import sys


class Cpio:
    def __init__(self, out):
        self.out = out
        self.ino = 1

    def entry(self, name, mode, data=b""):
        name_b = name.encode() + b"\0"
        head = "070701" + "".join(
            "%08X" % v
            for v in (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0)
        )
        self.ino += 1
        self.out.write(head.encode() + name_b)
        self.out.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
        self.out.write(data)
        self.out.write(b"\0" * ((4 - len(data) % 4) % 4))

    def dir(self, name):
        self.entry(name, 0o040755)

    def file(self, name, data, mode=0o644):
        self.entry(name, 0o100000 | mode, data)

    def symlink(self, name, target):
        self.entry(name, 0o120777, target.encode())

    def trailer(self):
        self.entry("TRAILER!!!", 0)


def module_order(root, wanted):
    paths = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".ko"):
                paths[f[:-3].replace("-", "_")] = os.path.join(d, f)
    order = []

    def visit(name):
        name = name.replace("-", "_")
        if name in order:
            return
        if name not in paths:
            sys.exit(f"initramfs.py: no module {name} under {root}")
        data = open(paths[name], "rb").read()
        m = re.search(rb"\0depends=([^\0]*)\0", data)
        for dep in m.group(1).decode().split(",") if m and m.group(1) else []:
            visit(dep)
        order.append(name)

    for w in wanted:
        visit(w)
    return [paths[n] for n in order]


def main():
    args = sys.argv[1:]
    split = args.index("--")
    out, modroot, busybox, init, libdir, *extra = args[:split]
    modules = module_order(modroot, args[split + 1 :]) + extra
    keep = os.environ.get("KEEP_MODULES")  # a directory to copy the modules to, for rebuilds
    if keep:
        os.makedirs(keep, exist_ok=True)
        for path in modules:
            with open(path, "rb") as src, open(os.path.join(keep, os.path.basename(path)), "wb") as dst:
                dst.write(src.read())
    with gzip.open(out, "wb", compresslevel=6) as f:
        c = Cpio(f)
        for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "run", "data", "lib",
                  "lib/modules", "etc", "root", "var", "usr", "usr/bin", "usr/sbin"):
            c.dir(d)
        c.file("bin/busybox", open(busybox, "rb").read(), 0o755)
        c.symlink("bin/sh", "busybox")
        c.file("init", open(init, "rb").read(), 0o755)
        for lib in ("ld-linux-armhf.so.3", "libc.so.6", "libm.so.6", "libgcc_s.so.1"):
            c.file("lib/" + lib, open(os.path.join(libdir, lib), "rb").read(), 0o755)
        names = []
        for path in modules:
            name = os.path.basename(path)
            c.file("lib/modules/" + name, open(path, "rb").read())
            names.append(name)
        c.file("lib/modules/load-order", ("\n".join(names) + "\n").encode())
        c.trailer()


if __name__ == "__main__":
    main()
