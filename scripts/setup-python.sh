#!/usr/bin/env bash
# Create or update the Python virtualenv at <repo>/.venv with the pinned
# packages of tests/csms/requirements.txt (the CSMS test peer and its self-test).
#
# Idempotent and fast when up to date: a stamp file inside the venv records a
# hash of the requirements file and of the interpreter; when it matches (and the
# venv's python still runs and imports the packages) nothing is installed.
#
# Usage: scripts/setup-python.sh        (prints the venv's python path on success)
# Env:   PYTHON=/path/to/python3        interpreter used to create the venv (default: python3)
#        SETUP_PYTHON_FORCE=1           reinstall even if the stamp matches
# Needs no stdin and works with CI=true. Exits non-zero with a message on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQ="$ROOT/tests/csms/requirements.txt"
STAMP="$VENV/.requirements.stamp"
PYTHON="${PYTHON:-python3}"

die() {
    echo "setup-python.sh: error: $*" >&2
    exit 1
}

[ -f "$REQ" ] || die "requirements file not found: $REQ"
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install Python >= 3.10 (or set PYTHON=...)"

"$PYTHON" - <<'EOF' || die "'$PYTHON' is too old: Python >= 3.10 is required"
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
EOF

# The stamp covers the requirements, the base interpreter and this script's
# install recipe (bump RECIPE when the install steps change).
RECIPE=1
PY_ID="$("$PYTHON" -c 'import sys, platform; print(sys.version.replace("\n", " "), platform.machine(), sys.base_prefix)')"
WANT="$("$PYTHON" - "$REQ" "$PY_ID" "$RECIPE" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    h.update(f.read())
h.update(b"\0" + sys.argv[2].encode() + b"\0" + sys.argv[3].encode())
print(h.hexdigest())
EOF
)"

VPY="$VENV/bin/python"

venv_works() {
    [ -x "$VPY" ] && "$VPY" -c 'import sys' >/dev/null 2>&1
}

if [ "${SETUP_PYTHON_FORCE:-0}" != "1" ] && venv_works && [ -f "$STAMP" ] \
    && [ "$(cat "$STAMP")" = "$WANT" ] \
    && "$VPY" -c 'import ocpp.v201, websockets, jsonschema' >/dev/null 2>&1; then
    echo "$VPY"
    exit 0
fi

# (Re)create the venv when it is missing, broken, or built from another interpreter.
if venv_works; then
    same_base="$("$VPY" -c 'import sys; print(sys.base_prefix)')"
    want_base="$("$PYTHON" -c 'import sys; print(sys.base_prefix)')"
    want_ver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    have_ver="$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$same_base" != "$want_base" ] || [ "$have_ver" != "$want_ver" ]; then
        echo "setup-python.sh: venv was built with another interpreter; recreating $VENV" >&2
        rm -rf "$VENV"
    fi
else
    if [ -e "$VENV" ]; then
        echo "setup-python.sh: $VENV is broken; recreating it" >&2
        rm -rf "$VENV"
    fi
fi

if [ ! -x "$VPY" ]; then
    echo "setup-python.sh: creating virtualenv $VENV" >&2
    "$PYTHON" -m venv "$VENV" >&2 \
        || die "'$PYTHON -m venv $VENV' failed (on Debian/Ubuntu: apt-get install python3-venv)"
fi

rm -f "$STAMP"
echo "setup-python.sh: installing $(basename "$REQ") into $VENV" >&2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VPY" -m pip install --quiet --no-input -r "$REQ" >&2 \
    || die "pip install -r $REQ failed (is PyPI reachable?)"

# Everything installed must be pinned in the requirements file: compare the
# venv's `pip freeze` with the pins (catches an unpinned transitive dependency).
"$VPY" - "$REQ" <<'EOF' || die "installed packages do not match the pins in $REQ (see above)"
import re, subprocess, sys

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

pins = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
    if not m:
        print(f"not an exact pin: {line!r}", file=sys.stderr)
        sys.exit(1)
    pins[norm(m.group(1))] = m.group(2)

out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"],
                     check=True, capture_output=True, text=True).stdout
ok = True
seen = set()
for line in out.splitlines():
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
    if not m:
        continue
    name, ver = norm(m.group(1)), m.group(2)
    if name in ("pip", "setuptools", "wheel"):
        continue  # the venv's own tooling
    seen.add(name)
    if name not in pins:
        print(f"installed but not pinned: {name}=={ver}", file=sys.stderr)
        ok = False
    elif pins[name] != ver:
        print(f"version mismatch: {name} installed {ver}, pinned {pins[name]}", file=sys.stderr)
        ok = False
for name in sorted(set(pins) - seen):
    print(f"pinned but not installed: {name}", file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
EOF

if ! check_out="$("$VPY" -m pip check 2>&1)"; then
    echo "$check_out" >&2
    die "pip check failed: inconsistent dependencies in $VENV"
fi
"$VPY" -c 'import ocpp.v201, websockets.asyncio.server, jsonschema' \
    || die "the venv cannot import ocpp/websockets after installing"

echo "$WANT" >"$STAMP"
echo "$VPY"
