#!/usr/bin/env bash
# The project's test command (README): sets up the independent CSMS peers, checks that the
# generated OCPP types match the schemas, and runs every test (unit, core with virtual clock,
# end-to-end with the real binary against real peers on localhost).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-python.sh >/dev/null
scripts/setup-node.sh >/dev/null
python3 tools/gen_v201.py --check
python3 tools/gen_v16.py --check
.venv/bin/python tests/csms/selftest.py
node tests/csms-js/selftest.js

# Everything, with the Python `ocpp` peer; then the end-to-end tests again with the npm
# `ocpp-rpc` peer (strict mode), so both independent validators see every scenario. (The TLS
# tests need a wss:// server, which only the Python peer offers.)
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --all-targets --no-fail-fast "$@"
    OCPP_PEER=js cargo nextest run --no-fail-fast -E '(binary(/^e2e_/) and not binary(e2e_tls)) or binary(journal_upgrade)' "$@"
    # nextest does not run doctests
    cargo test --doc --quiet
else
    cargo test --all-targets --no-fail-fast "$@"
    for t in tests/e2e_*.rs tests/journal_upgrade.rs; do
        t=$(basename "$t" .rs)
        [ "$t" = e2e_tls ] || OCPP_PEER=js cargo test --no-fail-fast --test "$t" "$@"
    done
fi
