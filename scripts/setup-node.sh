#!/usr/bin/env bash
# Install the npm packages of the second CSMS test peer (tests/csms-js: ocpp-rpc in
# strict mode) into tests/csms-js/node_modules, exactly as pinned in its
# package-lock.json (`npm ci`: no version resolution, integrity-checked).
#
# Idempotent and fast when up to date: a stamp file inside node_modules records a
# hash of package.json, package-lock.json, the Node major version and this
# script's recipe; when it matches (and ocpp-rpc still loads) nothing is run.
#
# Usage: scripts/setup-node.sh        (prints the path of csms.js on success)
# Env:   SETUP_NODE_FORCE=1           reinstall even if the stamp matches
# Needs only the npm registry, no stdin, works with CI=true. Exits non-zero with a
# message on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tests/csms-js"
LOCK="$DIR/package-lock.json"
MODULES="$DIR/node_modules"
STAMP="$MODULES/.setup-node.stamp"
RECIPE=1 # bump when the install steps below change

die() {
    echo "setup-node.sh: error: $*" >&2
    exit 1
}

[ -f "$DIR/package.json" ] || die "not found: $DIR/package.json"
[ -f "$LOCK" ] || die "not found: $LOCK"
command -v node >/dev/null 2>&1 || die "'node' not found; install Node.js >= 18 (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "'npm' not found (Debian: apt-get install npm)"

NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 18 ] 2>/dev/null || die "Node.js >= 18 is required (found $(node --version))"

WANT="$(
    {
        cat "$DIR/package.json" "$LOCK"
        printf '\0node%s\0recipe%s\0' "$NODE_MAJOR" "$RECIPE"
    } | sha256sum | cut -d' ' -f1
)"

loads() {
    (cd "$DIR" && node -e 'require("ocpp-rpc"); require("ocpp-rpc/lib/schemas/ocpp2_0_1.json")') >/dev/null 2>&1
}

if [ "${SETUP_NODE_FORCE:-0}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && loads; then
    echo "$DIR/csms.js"
    exit 0
fi

echo "setup-node.sh: installing the packages of tests/csms-js/package-lock.json (npm ci)" >&2
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# No package of this tree needs an install script (ws's native add-ons are optional
# and not installed), so none are run.
(cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
    || die "npm ci in $DIR failed (is the npm registry reachable?)"

# The installed tree must be exactly the lockfile's (npm ls exits non-zero on a
# missing, extraneous or mismatched package).
(cd "$DIR" && npm ls --all >/dev/null 2>&1) || {
    (cd "$DIR" && npm ls --all >&2) || true
    die "node_modules does not match $LOCK"
}
loads || die "ocpp-rpc does not load after npm ci"

echo "$WANT" >"$STAMP"
echo "$DIR/csms.js"
