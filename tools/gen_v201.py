#!/usr/bin/env python3
"""Generate src/ocpp/v201/generated.rs from the OCPP 2.0.1 JSON schemas.

Usage:
    python3 tools/gen_v201.py           # (re)write src/ocpp/v201/generated.rs
    python3 tools/gen_v201.py --check   # exit 1 if the committed file is stale

Reads schemas/ocpp-2.0.1/*.json (the 128 official schema files, one request and
one response per action, named `{Action}Request.json` / `{Action}Response.json`)
and emits, per action, `{Action}Request` and `{Action}Response` structs, one Rust
type per shared definition, the `Action` enum and static validation tables
(`tables::*`, of type `schema::Schema`). The work is done by tools/ocppgen.py,
shared with tools/gen_v16.py.

The output is deterministic and passed through `rustfmt --edition 2024` (which
must be on PATH) so that `cargo fmt` leaves it unchanged.

The generator fails loudly on any schema keyword it does not understand, so a
schema change can never be silently ignored by the validator. Python 3.11,
standard library only.
"""

import sys

from ocppgen import ROOT, Version, main, split_request_response

VERSION = Version(
    tag="v201",
    label="OCPP 2.0.1",
    table_set="TableSet::V201",
    schema_dirs=[ROOT / "schemas" / "ocpp-2.0.1"],
    out_file=ROOT / "src" / "ocpp" / "v201" / "generated.rs",
    command="python3 tools/gen_v201.py",
    drafts={"http://json-schema.org/draft-06/schema#"},
    split_stem=split_request_response,
)

if __name__ == "__main__":
    sys.exit(main(VERSION, __doc__))
