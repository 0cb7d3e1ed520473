"""The OCPP type generator shared by tools/gen_v201.py and tools/gen_v16.py.

Each of those scripts describes its OCPP version (a `Version`: schema folders,
file naming, output file) and calls `main`. From the official JSON schema files
of the version (one request and one response per action) it emits, per action,
`{Action}Request` and `{Action}Response` structs, one Rust type per shared
definition, the `Action` enum and static validation tables (`tables::*`, of type
`crate::ocpp::schema::Schema`, tagged with the version's `TableSet`).

The output is deterministic and passed through `rustfmt --edition 2024` (which
must be on PATH) so that `cargo fmt` leaves it unchanged.

The generator fails loudly on any schema keyword it does not understand, so a
schema change can never be silently ignored by the validator. Python 3.11,
standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import html
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

# Keywords that carry no validation meaning (annotations / metadata).
ANNOTATIONS = {"$schema", "$id", "comment", "description", "javaType", "default"}
# Validation keywords understood by this generator, per JSON type.
COMMON = {"type"}
BY_TYPE = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems", "additionalItems"},
    # `additionalProperties` on a string is a no-op in JSON Schema; the OCPP
    # schemas put `additionalProperties: false` on every enum definition.
    "string": {"maxLength", "format", "enum", "additionalProperties"},
    "integer": {"minimum", "maximum"},
    "number": {"minimum", "maximum", "multipleOf"},
    "boolean": set(),
}
# JSON format -> (Rust `Format` variant, table node name prefix)
FORMATS = {"date-time": ("Format::DateTime", "DATE_TIME"), "uri": ("Format::Uri", "URI")}

RUST_KEYWORDS = set(
    """as async await break const continue crate dyn else enum extern false fn for
    if impl in let loop match mod move mut pub ref return self Self static struct
    super trait true type unsafe use where while abstract become box do final gen
    macro override priv try typeof unsized virtual yield""".split()
)
# Type names the generated code relies on; a definition must not shadow them.
RESERVED_TYPE_NAMES = {
    "Action", "Schema", "Prop", "Format", "Option", "Some", "None", "Result", "Ok",
    "Err", "String", "Vec", "Box", "RequestPayload", "ResponsePayload", "tables",
    "TableSet",
}


@dataclass
class Version:
    """What differs between the OCPP versions the generator serves."""

    tag: str  # module name under src/ocpp and `TableSet` variant suffix: "v201", "v16"
    label: str  # "OCPP 2.0.1"
    table_set: str  # "TableSet::V201"
    schema_dirs: list[Path]
    out_file: Path
    command: str  # "python3 tools/gen_v201.py"
    drafts: set[str]  # accepted `$schema` values
    # file stem -> (action, "Request" | "Response"), or None if the name does not fit
    split_stem: Callable[[str], tuple[str, str] | None]
    # raw schema, its message name ("BootNotificationRequest") -> raw schema the parser
    # understands (e.g. with inline objects and enums moved to `definitions`)
    prepare: Callable[[dict, str], dict] = lambda raw, message: raw
    # definition name -> Rust type name
    type_name: Callable[[str], str] = lambda name: type_name(name)
    # notes `prepare` adds, printed like the generator's own
    notes: list[str] = field(default_factory=list)


def split_request_response(stem: str) -> tuple[str, str] | None:
    """`BootNotificationRequest` -> (`BootNotification`, `Request`) (OCPP 2.0.1 file names)."""
    m = re.fullmatch(r"([A-Z][A-Za-z0-9]*)(Request|Response)", stem)
    return (m.group(1), m.group(2)) if m else None


class SchemaError(Exception):
    pass


# ---------------------------------------------------------------------------
# Naming
# ---------------------------------------------------------------------------

WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|[0-9]+")


def _pascal_words(text: str) -> list[str]:
    """Split `text` into words; all-caps acronyms become Capitalised."""
    if re.fullmatch(r"[A-Z][A-Z0-9]+", text):  # one acronym: `L2TP` -> `L2tp`
        return [text[0] + text[1:].lower()]
    words = []
    for w in WORD_RE.findall(text):
        if w.isupper() and len(w) > 1:
            w = w[0] + w[1:].lower()
        else:
            w = w[0].upper() + w[1:]
        words.append(w)
    return words


def type_name(def_name: str) -> str:
    """`EVSEType` -> `Evse`, `ConnectorStatusEnumType` -> `ConnectorStatusEnum`."""
    base = def_name[: -len("Type")] if def_name.endswith("Type") else def_name
    if not re.fullmatch(r"[A-Za-z0-9]+", base):
        raise SchemaError(f"definition name {def_name!r} is not alphanumeric")
    return "".join(_pascal_words(base))


def variant_name(value: str) -> str:
    """`Energy.Active.Import.Register` -> `EnergyActiveImportRegister`,
    `s309-1P-16A` -> `S309_1P16A` (an underscore only between two digits)."""
    out = ""
    for part in re.split(r"[^A-Za-z0-9]+", value):
        if not part:
            continue
        word = "".join(_pascal_words(part))
        if out and out[-1].isdigit() and word[0].isdigit():
            out += "_"
        out += word
    if not out or out[0].isdigit():
        out = "V" + out
    return out


def snake_name(json_name: str) -> str:
    """`evseId` -> `evse_id`, `responderURL` -> `responder_url`."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", json_name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = s.lower()
    if not re.fullmatch(r"[a-z][a-z0-9_]*", s):
        raise SchemaError(f"cannot derive a Rust field name from {json_name!r}")
    return s


def serde_camel(snake: str) -> str:
    """What `#[serde(rename_all = "camelCase")]` makes of a snake_case field."""
    out, upper = "", False
    for c in snake:
        if c == "_":
            upper = True
        elif upper:
            out += c.upper()
            upper = False
        else:
            out += c
    return out


def screaming(rust_type: str) -> str:
    """`IdToken` -> `ID_TOKEN`, `NotifyEVChargingNeedsRequest` -> `NOTIFY_EV_CHARGING_NEEDS_REQUEST`."""
    return "_".join(w.upper() for w in WORD_RE.findall(rust_type))


# ---------------------------------------------------------------------------
# Schema parsing into a small immutable IR (tuples, so they compare and hash)
# ---------------------------------------------------------------------------
#   ("ref", def_name)                       local `#/definitions/...` reference
#   ("object", ((json_name, node, required), ...), additional: bool)
#   ("array", item_node, min_items, max_items)
#   ("string", max_length, format)
#   ("enum", (value, ...))
#   ("integer", min, max) / ("number", min, max, fraction_digits)
#   ("boolean",) / ("any",)


@dataclass
class Docs:
    text: str | None = None
    props: dict[str, str] = field(default_factory=dict)


def _int_bound(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"{where}: bound {v!r} is not a number")
    if isinstance(v, float):
        if not v.is_integer():
            raise SchemaError(f"{where}: non-integral bound {v!r} on an integer")
        v = int(v)
    return v


def _float_bound(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SchemaError(f"{where}: bound {v!r} is not a number")
    return float(v)


def _count(v, where):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 0xFFFF_FFFF:
        raise SchemaError(f"{where}: {v!r} is not a valid count")
    return v


def parse_node(node, where: str, docs: Docs | None = None):
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: schema node is not an object")
    keys = set(node) - ANNOTATIONS
    if "$ref" in node:
        if keys != {"$ref"}:
            raise SchemaError(f"{where}: $ref with sibling keywords {sorted(keys - {'$ref'})}")
        m = re.fullmatch(r"#/definitions/([A-Za-z0-9_]+)", node["$ref"])
        if not m:
            raise SchemaError(f"{where}: unsupported $ref {node['$ref']!r}")
        return ("ref", m.group(1))
    if "type" not in node:
        if keys:
            raise SchemaError(f"{where}: untyped schema with keywords {sorted(keys)}")
        return ("any",)
    ty = node["type"]
    if not isinstance(ty, str) or ty not in BY_TYPE:
        raise SchemaError(f"{where}: unsupported type {ty!r}")
    unknown = keys - COMMON - BY_TYPE[ty]
    if unknown:
        raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)} for type {ty}")

    if ty == "object":
        props = node.get("properties", {})
        required = node.get("required", [])
        additional = node.get("additionalProperties", True)
        if not isinstance(additional, bool):
            raise SchemaError(f"{where}: additionalProperties must be a boolean")
        if not isinstance(props, dict) or not isinstance(required, list):
            raise SchemaError(f"{where}: malformed properties/required")
        if len(set(required)) != len(required):
            raise SchemaError(f"{where}: duplicate names in required")
        for r in required:
            if r not in props:
                raise SchemaError(f"{where}: required property {r!r} is not declared")
        out = []
        for name, sub in props.items():
            out.append((name, parse_node(sub, f"{where}.{name}"), name in required))
            if docs is not None and isinstance(sub, dict) and sub.get("description"):
                docs.props[name] = sub["description"]
        return ("object", tuple(out), additional)
    if ty == "array":
        items = node.get("items")
        if not isinstance(items, dict):
            raise SchemaError(f"{where}: array without a single `items` schema")
        # With a single `items` schema, `additionalItems` has no effect (draft-06 9.10).
        if "additionalItems" in node and not isinstance(node["additionalItems"], bool):
            raise SchemaError(f"{where}: additionalItems must be a boolean")
        lo = _count(node["minItems"], where) if "minItems" in node else None
        hi = _count(node["maxItems"], where) if "maxItems" in node else None
        return ("array", parse_node(items, f"{where}[]"), lo, hi)
    if ty == "string":
        if "enum" in node:
            values = node["enum"]
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) for v in values)
                or len(set(values)) != len(values)
            ):
                raise SchemaError(f"{where}: enum must be a list of distinct strings")
            if "maxLength" in node or "format" in node:
                raise SchemaError(f"{where}: enum combined with maxLength/format")
            return ("enum", tuple(values))
        fmt = node.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise SchemaError(f"{where}: unsupported format {fmt!r}")
        ml = _count(node["maxLength"], where) if "maxLength" in node else None
        return ("string", ml, fmt)
    if ty in ("integer", "number"):
        conv = _int_bound if ty == "integer" else _float_bound
        lo = conv(node["minimum"], where) if "minimum" in node else None
        hi = conv(node["maximum"], where) if "maximum" in node else None
        if ty == "integer":
            return (ty, lo, hi)
        digits = None
        if "multipleOf" in node:
            # Only powers of ten (0.1: at most one digit after the decimal point), which the
            # tables keep as a digit count.
            mult = _float_bound(node["multipleOf"], where)
            digits = next((n for n in range(16) if float(f"1e-{n}") == mult), None)
            if digits is None:
                raise SchemaError(f"{where}: multipleOf {mult!r} is not 1, 0.1, 0.01, ...")
        return (ty, lo, hi, digits)
    return ("boolean",)


@dataclass
class SchemaFile:
    stem: str  # e.g. "BootNotificationRequest"
    action: str  # e.g. "BootNotification"
    kind: str  # "Request" or "Response"
    root: tuple
    root_docs: Docs
    defs: dict[str, tuple]
    def_docs: dict[str, Docs]


def load_schema_file(path: Path, version: Version) -> SchemaFile:
    split = version.split_stem(path.stem)
    if not split:
        raise SchemaError(f"{path.name}: file name does not name an action's request or response")
    action, kind = split
    stem = action + kind
    raw = json.loads(path.read_text(encoding="utf-8"))
    where = path.name
    if raw.get("$schema") not in version.drafts:
        raise SchemaError(f"{where}: unexpected $schema {raw.get('$schema')!r}")
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: not a JSON object")
    raw = version.prepare(raw, stem)
    if raw.get("type") != "object":
        raise SchemaError(f"{where}: root schema is not an object")
    definitions = raw.get("definitions", {})
    root_docs = Docs(raw.get("description"))
    root = parse_node({k: v for k, v in raw.items() if k != "definitions"}, where, root_docs)
    defs, def_docs = {}, {}
    for name, sub in definitions.items():
        d = Docs(sub.get("description") if isinstance(sub, dict) else None)
        defs[name] = parse_node(sub, f"{where}#/definitions/{name}", d)
        def_docs[name] = d
    sf = SchemaFile(stem, action, kind, root, root_docs, defs, def_docs)
    for node_where, node in [(where, root)] + list(defs.items()):
        for ref in iter_refs(node):
            if ref not in defs:
                raise SchemaError(f"{where}: {node_where} references unknown definition {ref!r}")
    return sf


def iter_refs(node):
    kind = node[0]
    if kind == "ref":
        yield node[1]
    elif kind == "object":
        for _, sub, _ in node[1]:
            yield from iter_refs(sub)
    elif kind == "array":
        yield from iter_refs(node[1])


def deep_key(sf: SchemaFile, name: str, stack=()):
    """Structure of definition `name` with all references expanded (names kept)."""
    if name in stack:
        raise SchemaError(f"{sf.stem}: recursive definition {name!r} is not supported")

    def expand(node):
        kind = node[0]
        if kind == "ref":
            return ("ref", node[1], deep_key(sf, node[1], stack + (name,)))
        if kind == "object":
            return ("object", tuple(sorted((n, expand(s), r) for n, s, r in node[1])), node[2])
        if kind == "array":
            return ("array", expand(node[1]), node[2], node[3])
        return node

    return expand(sf.defs[name])


# ---------------------------------------------------------------------------
# Model: unique Rust types
# ---------------------------------------------------------------------------


@dataclass
class RustType:
    name: str
    node: tuple  # IR with ("ref", x) replaced by ("type", RustName)
    docs: Docs
    origin: str  # where it came from, for messages


def build_model(files: list[SchemaFile], version: Version):
    notes: list[str] = []
    # def name -> list of (deep key, rust name, first file)
    variants: dict[str, list[tuple]] = {}
    rust_of: dict[tuple[str, str], str] = {}
    for sf in files:
        for name in sf.defs:
            key = deep_key(sf, name)
            seen = variants.setdefault(name, [])
            for k, rname, _ in seen:
                if k == key:
                    rust_of[(sf.stem, name)] = rname
                    break
            else:
                rname = version.type_name(name)
                if seen:
                    rname += sf.stem
                if seen:
                    notes.append(
                        f"definition {name} in {sf.stem}.json differs from the one in "
                        f"{seen[0][2]}.json; generated as {rname}"
                    )
                seen.append((key, rname, sf.stem))
                rust_of[(sf.stem, name)] = rname

    def resolve(sf, node):
        kind = node[0]
        if kind == "ref":
            return ("type", rust_of[(sf.stem, node[1])])
        if kind == "object":
            return ("object", tuple((n, resolve(sf, s), r) for n, s, r in node[1]), node[2])
        if kind == "array":
            return ("array", resolve(sf, node[1]), node[2], node[3])
        return node

    types: dict[str, RustType] = {}
    for sf in files:
        for name, node in sf.defs.items():
            rname = rust_of[(sf.stem, name)]
            if rname not in types:
                types[rname] = RustType(rname, resolve(sf, node), sf.def_docs[name], f"{sf.stem}.json#{name}")
    messages: dict[str, RustType] = {}
    for sf in files:
        messages[sf.stem] = RustType(sf.stem, resolve(sf, sf.root), sf.root_docs, f"{sf.stem}.json")

    # Global name checks.
    all_names: dict[str, str] = {}
    for t in list(types.values()) + list(messages.values()):
        if t.name in all_names:
            raise SchemaError(f"type name {t.name} used by both {all_names[t.name]} and {t.origin}")
        if t.name in RESERVED_TYPE_NAMES:
            raise SchemaError(f"{t.origin}: type name {t.name} is reserved")
        all_names[t.name] = t.origin
        if t.node[0] not in ("object", "enum"):
            raise SchemaError(f"{t.origin}: only object and enum definitions are supported")
    return types, messages, notes


# ---------------------------------------------------------------------------
# Rust emission
# ---------------------------------------------------------------------------


def clean_doc(text: str | None) -> list[str]:
    """Turn an OCPP schema description into markdown-safe doc paragraphs."""
    if not text:
        return []
    text = html.unescape(text).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    # Drop the data-dictionary header ("Charging_ Profile. Valid_ From. Date_ Time")
    # and URN lines ("urn:x-oca:ocpp:uid:1:569234").
    if len(lines) > 1 and lines[1].strip().startswith("urn:"):
        lines = lines[2:]
    lines = [l for l in lines if not l.strip().startswith("urn:")]
    text = "\n".join(lines)
    text = re.sub(r"<<[^,>]*,\s*([^>]*?)\s*>>", r"\1", text)  # <<anchor,Text>> -> Text
    text = re.sub(r"<<([^>]*)>>", r"\1", text)
    text = text.replace("\\", "\\\\")
    for ch in "[]<":
        text = text.replace(ch, "\\" + ch)
    paras = []
    for para in re.split(r"\n\s*\n", text):
        words = para.split()
        if words:
            paras.append(words)
    return paras


# Words that markdown would treat as block syntax at the start of a line.
RISKY_RE = re.compile(r"[-+*]$|#{1,6}$|>|\d{1,9}[.)]$|[-=_*]{2,}$|```|~~~")


def doc_lines(text: str | None, indent: str, extra: list[str] | None = None) -> list[str]:
    paras = clean_doc(text)
    if extra:
        paras.append(extra)
    width = 100 - len(indent) - 4
    out: list[str] = []
    for i, words in enumerate(paras):
        if i:
            out.append(f"{indent}///")
        line = ""
        if RISKY_RE.match(words[0]):
            w = words[0]
            words = [re.sub(r"^(\d+)([.)])", r"\1\\\2", w) if w[0].isdigit() else "\\" + w] + words[1:]
        for w in words:
            # Never start a line with something markdown treats as block syntax.
            risky = RISKY_RE.match(w) is not None
            if line and (len(line) + 1 + len(w) <= width or risky):
                line += " " + w
            elif line:
                out.append(f"{indent}/// {line}")
                line = w
            else:
                line = w
        if line:
            out.append(f"{indent}/// {line}")
    return out


def rust_field_type(node) -> str:
    kind = node[0]
    if kind == "type":
        return node[1]
    if kind == "string":
        return "String"
    if kind == "integer":
        return "i64"
    if kind == "number":
        return "f64"
    if kind == "boolean":
        return "bool"
    if kind == "any":
        return "serde_json::Value"
    if kind == "array":
        return f"Vec<{rust_field_type(node[1])}>"
    raise SchemaError(f"inline {kind} schemas are not supported as field types")


def field_extra_doc(node) -> list[str]:
    kind = node[0]
    if kind == "array":
        return field_extra_doc(node[1])
    if kind == "string":
        parts = []
        if node[2] == "date-time":
            parts += ["RFC", "3339", "date-time."]
        if node[2] == "uri":
            parts += ["RFC", "3986", "URI."]
        if node[1] is not None:
            parts += ["At", "most", str(node[1]), "characters."]
        return parts
    if kind == "number" and node[3] is not None:
        return ["A", "multiple", "of", f"{10 ** -node[3]:.{node[3]}f}."]
    return []


def emit_struct(t: RustType, lines: list[str]):
    props = t.node[1]
    additional = t.node[2]
    lines += doc_lines(t.docs.text, "")
    all_optional = all(not r for _, _, r in props)
    derives = ["Debug", "Clone", "PartialEq"]
    if all_optional:
        derives.append("Default")
    derives += ["serde::Serialize", "serde::Deserialize"]
    lines.append(f"#[derive({', '.join(derives)})]")
    lines.append('#[serde(rename_all = "camelCase")]')
    lines.append(f"pub struct {t.name} {{")
    seen = {}
    for json_name, node, required in props:
        fname = snake_name(json_name)
        if fname in seen:
            raise SchemaError(f"{t.origin}: fields {seen[fname]} and {json_name} collide")
        seen[fname] = json_name
        ident = f"r#{fname}" if fname in RUST_KEYWORDS else fname
        ty = rust_field_type(node)
        lines += doc_lines(t.docs.props.get(json_name), "    ", field_extra_doc(node))
        attrs = []
        if serde_camel(fname) != json_name:
            attrs.append(f'rename = "{json_name}"')
        if not required:
            attrs += ["default", 'skip_serializing_if = "Option::is_none"']
            ty = f"Option<{ty}>"
        if attrs:
            lines.append(f"    #[serde({', '.join(attrs)})]")
        lines.append(f"    pub {ident}: {ty},")
    if additional:
        lines.append("    /// Properties not defined by the schema (it allows additional properties).")
        lines.append("    #[serde(flatten)]")
        lines.append("    pub extra: serde_json::Map<String, serde_json::Value>,")
    lines.append("}")
    lines.append("")


def emit_enum(t: RustType, lines: list[str]):
    values = t.node[1]
    lines += doc_lines(t.docs.text, "")
    lines.append("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]")
    lines.append(f"pub enum {t.name} {{")
    seen = {}
    for v in values:
        vn = variant_name(v)
        if vn in seen:
            raise SchemaError(f"{t.origin}: enum values {seen[vn]!r} and {v!r} collide as {vn}")
        seen[vn] = v
        if vn != v:
            lines.append(f'    #[serde(rename = "{v}")]')
        lines.append(f"    {vn},")
    lines.append("}")
    lines.append("")
    lines.append(f"impl {t.name} {{")
    lines.append("    /// The JSON string values, indexed by discriminant.")
    lines.append("    pub const VALUES: &'static [&'static str] = &[")
    for v in values:
        lines.append(f'        "{v}",')
    lines.append("    ];")
    lines.append("")
    lines.append("    /// The exact JSON string value.")
    lines.append("    pub fn as_str(&self) -> &'static str {")
    lines.append("        Self::VALUES[*self as usize]")
    lines.append("    }")
    lines.append("}")
    lines.append("")


class Tables:
    """Collects the static validation nodes, deduplicating anonymous ones."""

    def __init__(self):
        self.named: dict[str, str] = {}  # node name -> expression (pub)
        self.anon: dict[str, str] = {}  # node name -> expression (private)
        # Indices, not pointers (issue 13: no load-time relocations): object properties and
        # enum values are ranges of PROPS and ENUM_VALUES, strings ranges of one blob.
        self.props: list[str] = []  # PropEntry expressions, with the name as a comment
        self.enum_values: list[str] = []  # Str expressions
        self.blob: list[str] = []
        self.strings: dict[str, str] = {}  # string -> Str expression
        self.blob_len = 0

    def string(self, text: str) -> str:
        if text not in self.strings:
            size = len(text.encode("utf-8"))
            if size > 255 or self.blob_len + size > 65535:
                raise SchemaError(f"string {text!r} does not fit the u8 length / u16 offset")
            self.strings[text] = f"Str::new({self.blob_len}, {size})"
            self.blob.append(text)
            self.blob_len += size
        return self.strings[text]

    @staticmethod
    def _num(v) -> str:
        s = repr(v) if isinstance(v, float) else str(v)
        return s.replace("-", "NEG").replace(".", "_")

    def ref(self, node) -> str:
        kind = node[0]
        if kind == "type":
            return screaming(node[1])
        if kind == "string":
            name = FORMATS[node[2]][1] if node[2] else "STRING"
            if node[1] is not None:
                name += f"_MAX_{node[1]}"
        elif kind in ("integer", "number"):
            name = kind.upper()
            if node[1] is not None:
                name += f"_MIN_{self._num(node[1])}"
            if node[2] is not None:
                name += f"_MAX_{self._num(node[2])}"
            if kind == "number" and node[3] is not None:
                name += f"_FRACTION_DIGITS_{node[3]}"
        elif kind == "boolean":
            name = "BOOLEAN"
        elif kind == "any":
            name = "ANY"
        elif kind == "array":
            name = f"ARRAY_OF_{self.ref(node[1])}"
            if node[2] is not None:
                name += f"_MIN_{node[2]}"
            if node[3] is not None:
                name += f"_MAX_{node[3]}"
        else:
            raise SchemaError(f"inline {kind} schema is not supported")
        expr = self.expr(node)
        if self.anon.setdefault(name, expr) != expr:
            raise SchemaError(f"static name {name} would denote two different schemas")
        return name

    def expr(self, node, rust_name: str | None = None) -> str:
        kind = node[0]
        opt = lambda v: "None" if v is None else f"Some({v})"  # noqa: E731
        if kind == "object":
            start = len(self.props)
            for json_name, sub, required in node[1]:
                self.props.append(
                    f"PropEntry::new({self.string(json_name)}, {self.ref(sub)}, "
                    f"{'true' if required else 'false'}), // {json_name}"
                )
            return "Node::Object { props: Props::new(SET, %d, %d), additional: %s }" % (
                start,
                len(self.props) - start,
                "true" if node[2] else "false",
            )
        if kind == "enum":
            start = len(self.enum_values)
            self.enum_values += [f"{self.string(v)}, // {v}" for v in node[1]]
            return f"Node::Enum(EnumValues::new(SET, {start}, {len(node[1])}))"
        if kind == "string":
            fmt = FORMATS[node[2]][0] if node[2] else None
            return f"Node::String {{ max_length: {opt(node[1])}, format: {opt(fmt)} }}"
        if kind == "integer":
            return f"Node::Integer {{ min: {opt(node[1])}, max: {opt(node[2])} }}"
        if kind == "number":
            f = lambda v: None if v is None else repr(float(v))  # noqa: E731
            return (
                f"Node::Number {{ min: {opt(f(node[1]))}, max: {opt(f(node[2]))}, "
                f"fraction_digits: {opt(node[3])} }}"
            )
        if kind == "boolean":
            return "Node::Boolean"
        if kind == "any":
            return "Node::Any"
        if kind == "array":
            return (
                f"Node::Array {{ items: {self.ref(node[1])}, "
                f"min_items: {opt(node[2])}, max_items: {opt(node[3])} }}"
            )
        raise SchemaError(f"cannot emit {kind}")

    def add_named(self, rust_name: str, node):
        name = screaming(rust_name)
        if name in self.named:
            raise SchemaError(f"static name {name} is used twice")
        self.named[name] = self.expr(node, rust_name)


def header(version: Version) -> str:
    dirs = ", ".join(f"{d.relative_to(ROOT)}/*.json" for d in version.schema_dirs)
    cmd = version.command
    return (
        f"// @generated by `{cmd}` from {dirs} -- DO NOT EDIT.\n"
        f"// Regenerate with `{cmd}`; CI runs `{cmd} --check`.\n"
    )


def generate(files: list[SchemaFile], version: Version) -> tuple[str, list[str]]:
    types, messages, notes = build_model(files, version)
    label, tag = version.label, version.tag
    actions = sorted({sf.action for sf in files})
    by_stem = {sf.stem: sf for sf in files}
    for a in actions:
        for kind in ("Request", "Response"):
            if a + kind not in by_stem:
                raise SchemaError(f"action {a} has no {kind} schema")
    n = len(actions)

    out: list[str] = [header(version).rstrip("\n")]
    out += [
        f"//! Types and validation tables for all {label} actions; see the parent module docs.",
        "",
        "// Enum variants mirror the wire values, which share pre- and suffixes by design.",
        "#![allow(clippy::enum_variant_names)]",
        "",
        "use crate::ocpp::schema::{Format, Schema};",
        "",
        f"/// Every {label} action (message name without `Request`/`Response`).",
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]",
        "pub enum Action {",
    ]
    out += [f"    {a}," for a in actions]
    out += [
        "}",
        "",
        "impl Action {",
        f"    /// All {n} actions, sorted by name.",
        f"    pub const ALL: [Action; {n}] = [",
    ]
    out += [f"        Action::{a}," for a in actions]
    out += [
        "    ];",
        "",
        "    /// The action names as they appear on the wire, in the same order as [`Action::ALL`].",
        f"    const NAMES: [&'static str; {n}] = [",
    ]
    out += [f'        "{a}",' for a in actions]
    out += [
        "    ];",
        "",
        "    /// The action name as used in an OCPP-J CALL.",
        "    pub fn as_str(&self) -> &'static str {",
        "        Self::NAMES[*self as usize]",
        "    }",
        "",
        "    /// Look an action up by its exact (case-sensitive) name.",
        "    pub fn from_name(name: &str) -> Option<Action> {",
        "        Self::NAMES",
        "            .binary_search(&name)",
        "            .ok()",
        "            .map(|i| Self::ALL[i])",
        "    }",
        "",
        "    /// The validation table for this action's request payload.",
        "    pub fn request_schema(self) -> &'static Schema {",
        "        &tables::REQUESTS[self as usize]",
        "    }",
        "",
        "    /// The validation table for this action's response payload.",
        "    pub fn response_schema(self) -> &'static Schema {",
        "        &tables::RESPONSES[self as usize]",
        "    }",
        "}",
        "",
        "/// Implemented by every `{Action}Request` type.",
        "pub trait RequestPayload: serde::Serialize + serde::de::DeserializeOwned {",
        "    /// The action this payload belongs to.",
        "    const ACTION: Action;",
        "    /// The validation table for this payload.",
        "    const SCHEMA: &'static Schema;",
        "    /// The matching response payload type.",
        "    type Response: ResponsePayload;",
        "}",
        "",
        "/// Implemented by every `{Action}Response` type.",
        "pub trait ResponsePayload: serde::Serialize + serde::de::DeserializeOwned {",
        "    /// The action this payload belongs to.",
        "    const ACTION: Action;",
        "    /// The validation table for this payload.",
        "    const SCHEMA: &'static Schema;",
        "}",
        "",
        "/// Invokes `$callback! { (Action, ActionRequest, ActionResponse), ... }` with all actions.",
        "#[doc(hidden)]",
        "#[macro_export]",
        f"macro_rules! __ocpp_{tag}_for_each_action {{",
        "    ($callback:ident) => {",
        "        $callback! {",
    ]
    out += [f"            ({a}, {a}Request, {a}Response)," for a in actions]
    out += [
        "        }",
        "    };",
        "}",
        "",
        "/// Calls a macro with the list of all actions: `for_each_action!(my_macro)` expands to",
        "/// `my_macro! { (Authorize, AuthorizeRequest, AuthorizeResponse), ... }`.",
        f"pub use crate::__ocpp_{tag}_for_each_action as for_each_action;",
        "",
    ]

    for a in actions:
        for kind in ("Request", "Response"):
            t = messages[a + kind]
            emit_struct(t, out)
        out += [
            f"impl RequestPayload for {a}Request {{",
            f"    const ACTION: Action = Action::{a};",
            f"    const SCHEMA: &'static Schema = &tables::{screaming(a + 'Request')};",
            f"    type Response = {a}Response;",
            "}",
            "",
            f"impl ResponsePayload for {a}Response {{",
            f"    const ACTION: Action = Action::{a};",
            f"    const SCHEMA: &'static Schema = &tables::{screaming(a + 'Response')};",
            "}",
            "",
        ]

    for name in sorted(types):
        t = types[name]
        if t.node[0] == "enum":
            emit_enum(t, out)
        else:
            emit_struct(t, out)

    tables = Tables()
    for name in sorted(types):
        tables.add_named(name, types[name].node)
    for stem in sorted(messages):
        tables.add_named(stem, messages[stem].node)
    clash = set(tables.named) & set(tables.anon)
    if clash:
        raise SchemaError(f"static names used for both named and anonymous schemas: {sorted(clash)}")

    order = sorted(tables.named) + sorted(tables.anon)
    if len(order) > 65535:
        raise SchemaError("more nodes than a u16 index can name")
    out += [
        "/// Static validation tables: one node per definition and per message payload, plus",
        "/// shared anonymous leaf/array nodes, referring to each other by index (see",
        "/// [`super::schema`]). Pure data, nothing is allocated.",
        "pub mod tables {",
        "    use super::*;",
        "    use crate::ocpp::schema::{EnumValues, Node, PropEntry, Props, Str, TableSet};",
        "",
        f"    const SET: TableSet = {version.table_set};",
        "",
        f"    pub(super) static REQUESTS: [Schema; {n}] = [",
    ]
    out += [f"        {screaming(a + 'Request')}," for a in actions]
    out += ["    ];", "", f"    pub(super) static RESPONSES: [Schema; {n}] = ["]
    out += [f"        {screaming(a + 'Response')}," for a in actions]
    out += ["    ];", ""]
    for i, name in enumerate(order):
        vis = "pub " if name in tables.named else ""
        out.append(f"    {vis}const {name}: Schema = Schema::new(SET, {i});")
    out += [
        "",
        "    /// Every node, indexed by [`Schema`].",
        f"    pub(in crate::ocpp) static NODES: [Node; {len(order)}] = [",
    ]
    out += [f"        {(tables.named | tables.anon)[name]}, // {name}" for name in order]
    out += [
        "    ];",
        "",
        "    /// The properties of every object node, each object's a range.",
        f"    pub(in crate::ocpp) static PROPS: [PropEntry; {len(tables.props)}] = [",
    ]
    out += [f"        {p}" for p in tables.props]
    out += [
        "    ];",
        "",
        "    /// The values of every enum node, each enum's a range.",
        f"    pub(in crate::ocpp) static ENUM_VALUES: [Str; {len(tables.enum_values)}] = [",
    ]
    out += [f"        {v}" for v in tables.enum_values]
    blob = "".join(tables.blob)
    if "\\" in blob or '"' in blob:
        raise SchemaError("a name or enum value needs escaping in the string blob")
    out += [
        "    ];",
        "",
        "    /// Property names and enum values, each once.",
        f'    pub(in crate::ocpp) const STRINGS: &str = "{blob}";',
        "}",
    ]
    text = "\n".join(out) + "\n"
    if "Format::" not in text:
        text = text.replace(
            "use crate::ocpp::schema::{Format, Schema};", "use crate::ocpp::schema::Schema;"
        )
    return text, notes


def rustfmt(text: str) -> str:
    exe = shutil.which("rustfmt")
    if exe is None:
        raise SchemaError("rustfmt not found on PATH (needed to produce the canonical output)")
    proc = subprocess.run(
        [exe, "--edition", "2024", "--emit", "stdout"],
        input=text,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SchemaError(f"rustfmt failed:\n{proc.stderr}")
    return proc.stdout


def main(version: Version, doc: str, argv=None) -> int:
    """The command line of a generator script: `doc` is its docstring."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the generated file is stale")
    args = ap.parse_args(argv)
    prog = Path(version.command.split()[-1]).stem  # "gen_v201"
    out_file = version.out_file
    try:
        paths = [p for d in version.schema_dirs for p in sorted(d.glob("*.json"))]
        for d in version.schema_dirs:
            if not any(d.glob("*.json")):
                raise SchemaError(f"no schemas found in {d}")
        files = [load_schema_file(p, version) for p in paths]
        stems = [sf.stem for sf in files]
        if len(set(stems)) != len(stems):
            raise SchemaError("two schema files describe the same message")
        text, notes = generate(files, version)
        text = rustfmt(text)
    except SchemaError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    for note in version.notes + notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    rel = out_file.relative_to(ROOT)
    if args.check:
        current = out_file.read_text(encoding="utf-8") if out_file.exists() else ""
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{rel} (committed)",
                f"{rel} (from schemas)",
                n=1,
            )
            sys.stderr.writelines(list(diff)[:200])
            print(f"{prog}: {rel} is stale; run `{version.command}`", file=sys.stderr)
            return 1
        print(f"{prog}: {rel} is up to date ({len(files)} schemas)")
        return 0
    out_file.write_text(text, encoding="utf-8")
    print(f"{prog}: wrote {rel} ({len(files)} schemas, {len(text)} bytes)")
    return 0
