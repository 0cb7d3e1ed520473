//! The version-independent checks of `tests/schema_validation.rs` (OCPP 2.0.1) and
//! `tests/schema_validation_v16.rs` (OCPP 1.6J): the generated static validation tables against
//! the official JSON schema files, read here independently of the generator.
//!
//! Instances are generated from the schema text (a minimal one with required properties only and
//! a maximal one with every property), and each must pass `validate`, decode into the generated
//! Rust type and re-serialize to an equal value. Mutations of the maximal instance must fail with
//! the right error code (the validator's, 2.0.1 spelling) and path.

use std::collections::BTreeSet;
use std::path::Path;

use ocpp_agent::ocpp::schema::{Format, Node, Schema};
use ocpp_agent::ocpp::validate::{Violation, ViolationKind, validate};
use serde_json::{Map, Value, json};

/// Decodes a payload of (action, request or response) into its generated type and serializes it
/// back.
pub type Roundtrip = fn(&str, bool, Value) -> Result<Value, Violation>;

/// One official schema file.
pub struct SchemaFile {
    /// The message: `BootNotificationRequest`.
    pub stem: String,
    /// The action: `BootNotification`.
    pub action: String,
    pub is_request: bool,
    pub root: Value,
    schema: &'static Schema,
    roundtrip: Roundtrip,
}

/// The schema files in `dirs` (relative to the crate), sorted by file name within each folder;
/// `split` gives a file stem's action and whether it is a request, `table` the generated table
/// of (action, is_request).
pub fn load_all(
    dirs: &[&str],
    split: fn(&str) -> (String, bool),
    table: fn(&str, bool) -> &'static Schema,
    roundtrip: Roundtrip,
) -> Vec<SchemaFile> {
    let mut out = Vec::new();
    for dir in dirs {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let file_stem = path.file_stem().unwrap().to_str().unwrap();
            let (action, is_request) = split(file_stem);
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(SchemaFile {
                stem: format!(
                    "{action}{}",
                    if is_request { "Request" } else { "Response" }
                ),
                schema: table(&action, is_request),
                action,
                is_request,
                root: serde_json::from_str(&text).unwrap(),
                roundtrip,
            });
        }
    }
    out
}

impl SchemaFile {
    pub fn table(&self) -> &'static Schema {
        self.schema
    }

    fn definitions(&self) -> &Map<String, Value> {
        self.root["definitions"].as_object().expect("definitions")
    }

    /// Follow a `$ref` (the schemas only use local `#/definitions/...` references).
    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/definitions/").expect("local $ref");
                &self.definitions()[name]
            }
            None => node,
        }
    }
}

/// For `version::for_each_action!(typed_dispatch)` in a test whose `version` is the OCPP
/// version module and which imports its `Action`, `RequestPayload` and `ResponsePayload`: defines
/// `typed_roundtrip(Action, bool, Value)` and `check_payload_traits()`.
#[allow(unused_macros)]
macro_rules! typed_dispatch {
    ($(($action:ident, $req:ident, $resp:ident)),* $(,)?) => {
        /// Decode `value` into the generated type for (action, direction) and serialize it back.
        fn typed_roundtrip(action: Action, is_request: bool, value: Value) -> Result<Value, Violation> {
            match (action, is_request) {
                $(
                    (Action::$action, true) => roundtrip::<version::$req>(action.request_schema(), value),
                    (Action::$action, false) => roundtrip::<version::$resp>(action.response_schema(), value),
                )*
            }
        }

        /// The trait constants of the generated types agree with `Action`.
        fn check_payload_traits() -> usize {
            let mut n = 0;
            $(
                assert_eq!(<version::$req as RequestPayload>::ACTION, Action::$action);
                assert_eq!(<version::$resp as ResponsePayload>::ACTION, Action::$action);
                assert_eq!(<version::$req as RequestPayload>::SCHEMA, Action::$action.request_schema());
                assert_eq!(<version::$resp as ResponsePayload>::SCHEMA, Action::$action.response_schema());
                assert_eq!(Action::$action.as_str(), stringify!($action));
                n += 1;
            )*
            n
        }
    };
}

/// Defines `load_all()` (the schema files in the folders `$dir`, each file stem mapped to
/// (action name, is request) by `$split`), a `#[test]` comparing the tables with the files, and
/// one `#[test]` per `$check`, a function of this module, with its minimum number of checks. Needs
/// `version::for_each_action!(typed_dispatch)` (for `typed_roundtrip`) and `Action` in scope.
#[allow(unused_macros)]
macro_rules! schema_file_tests {
    (
        dirs: [$($dir:expr),* $(,)?],
        split: $split:expr,
        checks: { $($check:ident: $min:expr),* $(,)? } $(,)?
    ) => {
        fn load_all() -> Vec<schema_files::SchemaFile> {
            schema_files::load_all(
                &[$($dir),*],
                $split,
                |name, is_request| {
                    let action =
                        Action::from_name(name).unwrap_or_else(|| panic!("no Action for {name}"));
                    if is_request {
                        action.request_schema()
                    } else {
                        action.response_schema()
                    }
                },
                |name, is_request, value| {
                    typed_roundtrip(Action::from_name(name).unwrap(), is_request, value)
                },
            )
        }

        #[test]
        fn static_tables_match_schema_files() {
            schema_files::static_tables_match_schema_files(&load_all());
        }

        $(
            #[test]
            fn $check() {
                schema_files::$check(&load_all(), $min);
            }
        )*
    };
}

/// Decodes `value` against `schema` into `T`, then serializes it back.
pub fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(
    schema: &'static Schema,
    value: Value,
) -> Result<Value, Violation> {
    let typed: T = ocpp_agent::ocpp::validate::decode(schema, value)?;
    Ok(serde_json::to_value(&typed).expect("serialize"))
}

fn file_roundtrip(file: &SchemaFile, value: Value) -> Result<Value, Violation> {
    (file.roundtrip)(&file.action, file.is_request, value)
}

// ---------------------------------------------------------------------------------------------
// Instance generation from the schema text
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Size {
    Minimal,
    Maximal,
}

fn instance(file: &SchemaFile, node: &Value, size: Size) -> Value {
    let node = file.resolve(node);
    let maximal = size == Size::Maximal;
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return if maximal {
            values.last()
        } else {
            values.first()
        }
        .unwrap()
        .clone();
    }
    match node.get("type").and_then(Value::as_str) {
        Some("object") => {
            let required: BTreeSet<&str> = node
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if maximal || required.contains(name.as_str()) {
                        out.insert(name.clone(), instance(file, sub, size));
                    }
                }
            }
            if maximal && node.get("additionalProperties") != Some(&Value::Bool(false)) {
                out.insert(
                    "vendorExtension".into(),
                    json!({"nested": [1, "two", null, 2.5]}),
                );
            }
            Value::Object(out)
        }
        Some("array") => {
            let n = node
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .max(1);
            let item = instance(file, &node["items"], size);
            Value::Array(vec![item; n as usize])
        }
        Some("string") => {
            if node.get("format").and_then(Value::as_str) == Some("date-time") {
                return json!(if maximal {
                    "2024-02-29T23:59:59.999+05:30"
                } else {
                    "2024-01-01T00:00:00Z"
                });
            }
            if node.get("format").and_then(Value::as_str) == Some("uri") {
                return json!(if maximal {
                    "ftp://user:pw@[2001:db8::1]:21/fw%20v2.bin?x=1#y"
                } else {
                    "ftp://a"
                });
            }
            match (node.get("maxLength").and_then(Value::as_u64), size) {
                (Some(max), Size::Minimal) => json!("a".repeat(max.min(1) as usize)),
                // Two-byte characters: maxLength counts characters, not bytes.
                (Some(max), Size::Maximal) => json!("é".repeat(max as usize)),
                (None, Size::Minimal) => json!("a"),
                (None, Size::Maximal) => json!("unbounded string"),
            }
        }
        Some("integer") => {
            let min = node.get("minimum").and_then(Value::as_f64);
            let max = node.get("maximum").and_then(Value::as_f64);
            let v = match size {
                Size::Minimal => min.unwrap_or(0.0),
                Size::Maximal => max.or(min).unwrap_or(42.0),
            };
            json!(v as i64)
        }
        Some("number") => {
            let min = node.get("minimum").and_then(Value::as_f64);
            let max = node.get("maximum").and_then(Value::as_f64);
            json!(match size {
                Size::Minimal => min.unwrap_or(0.0),
                Size::Maximal => max.unwrap_or(12.5),
            })
        }
        Some("boolean") => json!(maximal),
        None => {
            if maximal {
                json!({"any": [1, 2.5, null, true, "x"]})
            } else {
                json!("opaque")
            }
        }
        Some(other) => panic!("{}: unexpected type {other}", file.stem),
    }
}

/// A value in an instance together with its (resolved) schema node.
struct Loc<'a> {
    pointer: String,
    node: &'a Value,
}

fn locations<'a>(
    file: &'a SchemaFile,
    node: &'a Value,
    value: &Value,
    pointer: String,
    out: &mut Vec<Loc<'a>>,
) {
    let node = file.resolve(node);
    out.push(Loc {
        pointer: pointer.clone(),
        node,
    });
    match value {
        Value::Object(map) => {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, v) in map {
                    if let Some(sub) = props.get(name) {
                        locations(file, sub, v, format!("{pointer}/{name}"), out);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = node.get("items") {
                for (i, v) in items.iter().enumerate() {
                    locations(file, item_schema, v, format!("{pointer}/{i}"), out);
                }
            }
        }
        _ => {}
    }
}

fn ty(node: &Value) -> Option<&str> {
    node.get("type").and_then(Value::as_str)
}

/// Collects failures so that one run reports all of them.
#[derive(Default)]
struct Report {
    checks: usize,
    failures: Vec<String>,
}

impl Report {
    fn expect_ok(&mut self, file: &SchemaFile, what: &str, value: &Value) {
        self.checks += 1;
        if let Err(v) = validate(file.table(), value) {
            self.failures.push(format!(
                "{} {what}: unexpected {v}\n  value: {value}",
                file.stem
            ));
        }
    }

    fn expect(
        &mut self,
        file: &SchemaFile,
        what: &str,
        value: &Value,
        kind: ViolationKind,
        path: &str,
    ) {
        self.checks += 1;
        match validate(file.table(), value) {
            Ok(()) => self.failures.push(format!(
                "{} {what}: accepted, expected {kind} at {path:?}",
                file.stem
            )),
            Err(v) if v.kind != kind || v.path != path => self.failures.push(format!(
                "{} {what}: got {} at {:?} ({}), expected {kind} at {path:?}",
                file.stem, v.kind, v.path, v.message
            )),
            Err(_) => {}
        }
    }

    fn expect_roundtrip(&mut self, file: &SchemaFile, what: &str, value: &Value) {
        self.checks += 1;
        match file_roundtrip(file, value.clone()) {
            Err(v) => self.failures.push(format!(
                "{} {what}: decode failed: {v}\n  value: {value}",
                file.stem
            )),
            Ok(back) => {
                if &back != value {
                    self.failures.push(format!(
                        "{} {what}: round trip changed the value\n  in:  {value}\n  out: {back}",
                        file.stem
                    ));
                } else if let Err(v) = validate(file.table(), &back) {
                    self.failures.push(format!(
                        "{} {what}: re-serialized value invalid: {v}",
                        file.stem
                    ));
                }
            }
        }
    }

    fn finish(self, min_checks: usize) {
        eprintln!("{} checks, {} failures", self.checks, self.failures.len());
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n{}",
            self.failures.len(),
            self.checks,
            self.failures.join("\n")
        );
        assert!(
            self.checks >= min_checks,
            "only {} checks ran (expected at least {min_checks})",
            self.checks
        );
    }
}

fn set(value: &Value, pointer: &str, new: Value) -> Value {
    let mut v = value.clone();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} exists")) = new;
    v
}

/// Walks the schema text and the static table side by side.
fn compare_tables(
    file: &SchemaFile,
    node: &Value,
    table: &Schema,
    at: &str,
    errors: &mut Vec<String>,
) {
    let node = file.resolve(node);
    macro_rules! err {
        ($($arg:tt)*) => {
            errors.push(format!("{} {at}: {}", file.stem, format!($($arg)*)))
        };
    }
    let u32_of = |key: &str| node.get(key).and_then(Value::as_u64).map(|v| v as u32);
    match (ty(node), table.node()) {
        (Some("object"), Node::Object { props, additional }) => {
            let json_props = node
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let required: BTreeSet<&str> = node
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
                .unwrap_or_default();
            let names: Vec<&str> = props.iter().map(|p| p.name).collect();
            let json_names: Vec<&str> = json_props.keys().map(String::as_str).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            if sorted != json_names {
                err!("properties {names:?} != {json_names:?}");
            }
            let json_additional = node
                .get("additionalProperties")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if additional != json_additional {
                err!("additional {additional} != {json_additional}");
            }
            for p in props.iter() {
                if p.required != required.contains(p.name) {
                    err!("{}: required {} is wrong", p.name, p.required);
                }
                if let Some(sub) = json_props.get(p.name) {
                    compare_tables(file, sub, p.schema, &format!("{at}/{}", p.name), errors);
                }
            }
        }
        (
            Some("array"),
            Node::Array {
                items,
                min_items,
                max_items,
            },
        ) => {
            if (min_items, max_items) != (u32_of("minItems"), u32_of("maxItems")) {
                err!("items bounds {min_items:?}..{max_items:?}");
            }
            compare_tables(file, &node["items"], &items, &format!("{at}/[]"), errors);
        }
        (Some("string"), Node::Enum(values)) => {
            let json_values: Vec<&str> = node["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let values: Vec<&str> = values.iter().collect();
            if values != json_values {
                err!("enum {values:?} != {json_values:?}");
            }
        }
        (Some("string"), Node::String { max_length, format }) => {
            let json_format = match node.get("format").and_then(Value::as_str) {
                Some("date-time") => Some(Format::DateTime),
                Some("uri") => Some(Format::Uri),
                None => None,
                Some(other) => panic!("unexpected format {other}"),
            };
            if node.get("enum").is_some()
                || max_length != u32_of("maxLength")
                || format != json_format
            {
                err!("string {max_length:?} {format:?} does not match");
            }
        }
        (Some("integer"), Node::Integer { min, max }) => {
            let bound = |key: &str| node.get(key).and_then(Value::as_f64).map(|v| v as i64);
            if (min, max) != (bound("minimum"), bound("maximum")) {
                err!("integer bounds {min:?}..{max:?}");
            }
        }
        (
            Some("number"),
            Node::Number {
                min,
                max,
                fraction_digits,
            },
        ) => {
            let bound = |key: &str| node.get(key).and_then(Value::as_f64);
            if (min, max) != (bound("minimum"), bound("maximum")) {
                err!("number bounds {min:?}..{max:?}");
            }
            let multiple_of = fraction_digits.map(|n| format!("1e-{n}").parse::<f64>().unwrap());
            if multiple_of != bound("multipleOf") {
                err!("number fraction digits {fraction_digits:?}");
            }
        }
        (Some("boolean"), Node::Boolean) => {}
        (None, Node::Any) => {}
        (json_ty, table) => err!("type {json_ty:?} vs table {table:?}"),
    }
}

pub fn static_tables_match_schema_files(files: &[SchemaFile]) {
    let mut errors = Vec::new();
    for f in files {
        compare_tables(f, &f.root, f.table(), "", &mut errors);
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

pub fn minimal_and_maximal_instances_validate_and_round_trip(
    files: &[SchemaFile],
    min_checks: usize,
) {
    let mut report = Report::default();
    for f in files {
        for (size, what) in [(Size::Minimal, "minimal"), (Size::Maximal, "maximal")] {
            let value = instance(f, &f.root, size);
            report.expect_ok(f, what, &value);
            report.expect_roundtrip(f, what, &value);
        }
    }
    report.finish(min_checks);
}

pub fn every_enum_value_round_trips(files: &[SchemaFile], min_checks: usize) {
    let mut report = Report::default();
    for f in files {
        let value = instance(f, &f.root, Size::Maximal);
        let mut locs = Vec::new();
        locations(f, &f.root, &value, String::new(), &mut locs);
        for loc in locs {
            for allowed in loc
                .node
                .get("enum")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let v = set(&value, &loc.pointer, allowed.clone());
                report.expect_roundtrip(f, &format!("{} = {allowed}", loc.pointer), &v);
            }
        }
    }
    report.finish(min_checks);
}

pub fn removing_a_required_property_is_an_occurrence_violation(
    files: &[SchemaFile],
    min_checks: usize,
) {
    let mut report = Report::default();
    for f in files {
        let value = instance(f, &f.root, Size::Maximal);
        let mut locs = Vec::new();
        locations(f, &f.root, &value, String::new(), &mut locs);
        for loc in locs {
            for name in loc
                .node
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap();
                let mut v = value.clone();
                v.pointer_mut(&loc.pointer)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove(name);
                let path = format!("{}/{name}", loc.pointer);
                report.expect(
                    f,
                    &format!("without {path}"),
                    &v,
                    ViolationKind::OccurrenceConstraintViolation,
                    &path,
                );
            }
        }
    }
    report.finish(min_checks);
}

pub fn unknown_properties_are_format_violations(files: &[SchemaFile], min_checks: usize) {
    let mut report = Report::default();
    for f in files {
        for size in [Size::Minimal, Size::Maximal] {
            let mut v = instance(f, &f.root, size);
            v["unknownProperty"] = json!(1);
            report.expect(
                f,
                "unknown top-level property",
                &v,
                ViolationKind::FormatViolation,
                "/unknownProperty",
            );
        }
        // Nested objects: rejected where additionalProperties is false, accepted elsewhere.
        let value = instance(f, &f.root, Size::Maximal);
        let mut locs = Vec::new();
        locations(f, &f.root, &value, String::new(), &mut locs);
        for loc in locs
            .iter()
            .filter(|l| ty(l.node) == Some("object") && !l.pointer.is_empty())
        {
            let mut v = value.clone();
            v.pointer_mut(&loc.pointer).unwrap()["zzUnknown"] = json!("x");
            if loc.node.get("additionalProperties") == Some(&Value::Bool(false)) {
                let path = format!("{}/zzUnknown", loc.pointer);
                report.expect(
                    f,
                    "unknown nested property",
                    &v,
                    ViolationKind::FormatViolation,
                    &path,
                );
            } else {
                report.expect_ok(f, "extra property in an open object", &v);
                report.expect_roundtrip(f, "extra property in an open object", &v);
            }
        }
        for not_object in [json!([]), json!(null), json!("x"), json!(1)] {
            report.expect(
                f,
                "non-object payload",
                &not_object,
                ViolationKind::FormatViolation,
                "",
            );
        }
    }
    report.finish(min_checks);
}

pub fn invalid_values_are_property_constraint_violations(files: &[SchemaFile], min_checks: usize) {
    let mut report = Report::default();
    let property = ViolationKind::PropertyConstraintViolation;
    for f in files {
        let value = instance(f, &f.root, Size::Maximal);
        let mut locs = Vec::new();
        locations(f, &f.root, &value, String::new(), &mut locs);
        for loc in &locs {
            let p = loc.pointer.as_str();
            if loc.node.get("enum").is_some() {
                report.expect(
                    f,
                    "enum NotAValue",
                    &set(&value, p, json!("NotAValue")),
                    property,
                    p,
                );
            }
            if let Some(max) = loc.node.get("maxLength").and_then(Value::as_u64) {
                let long = "a".repeat(max as usize + 1);
                report.expect(f, "maxLength+1", &set(&value, p, json!(long)), property, p);
                let exact = "a".repeat(max as usize);
                report.expect_ok(f, "maxLength", &set(&value, p, json!(exact)));
            }
            if loc.node.get("format").and_then(Value::as_str) == Some("date-time") {
                for bad in [
                    "yesterday",
                    "2024-13-01T00:00:00Z",
                    "2024-01-01 00:00:00",
                    "2024-01-01T00:00:00",
                ] {
                    report.expect(f, "bad date-time", &set(&value, p, json!(bad)), property, p);
                }
            }
            if loc.node.get("format").and_then(Value::as_str) == Some("uri") {
                for bad in ["fw.bin", "/fw.bin", "ftp://host/a b", "ftp://host/ü", ""] {
                    report.expect(f, "bad uri", &set(&value, p, json!(bad)), property, p);
                }
            }
            if let Some(m) = loc.node.get("multipleOf").and_then(Value::as_f64) {
                let n = value.pointer(p).unwrap().as_f64().unwrap();
                report.expect(
                    f,
                    "not a multipleOf",
                    &set(&value, p, json!(n + m / 2.0)),
                    property,
                    p,
                );
                report.expect_ok(f, "multipleOf", &set(&value, p, json!(n + 3.0 * m)));
            }
            if let Some(min) = loc.node.get("minimum").and_then(Value::as_f64) {
                report.expect(
                    f,
                    "minimum-1",
                    &set(&value, p, json!(min as i64 - 1)),
                    property,
                    p,
                );
                report.expect_ok(f, "minimum", &set(&value, p, json!(min as i64)));
            }
            if let Some(max) = loc.node.get("maximum").and_then(Value::as_f64) {
                report.expect(
                    f,
                    "maximum+1",
                    &set(&value, p, json!(max as i64 + 1)),
                    property,
                    p,
                );
                report.expect_ok(f, "maximum", &set(&value, p, json!(max as i64)));
            }
        }
    }
    report.finish(min_checks);
}

pub fn wrong_types_are_type_constraint_violations(files: &[SchemaFile], min_checks: usize) {
    let mut report = Report::default();
    let type_violation = ViolationKind::TypeConstraintViolation;
    for f in files {
        let value = instance(f, &f.root, Size::Maximal);
        let mut locs = Vec::new();
        locations(f, &f.root, &value, String::new(), &mut locs);
        for loc in locs.iter().filter(|l| !l.pointer.is_empty()) {
            let p = loc.pointer.as_str();
            let wrong: &[Value] = match ty(loc.node) {
                Some("object") => &[json!([]), json!("x"), json!(null)],
                Some("array") => &[json!({}), json!("x")],
                Some("string") => &[json!(1), json!(true), json!(null), json!(["x"])],
                Some("integer") => &[
                    json!("1"),
                    json!(1.5),
                    json!(true),
                    json!(null),
                    json!(1e30),
                ],
                Some("number") => &[json!("1.5"), json!(false), json!(null)],
                Some("boolean") => &[json!("true"), json!(1), json!(null)],
                _ => &[],
            };
            for w in wrong {
                report.expect(
                    f,
                    &format!("{p} = {w}"),
                    &set(&value, p, w.clone()),
                    type_violation,
                    p,
                );
            }
            // Draft-06: an integral float is an integer, and decode accepts it.
            if ty(loc.node) == Some("integer") {
                let n = value.pointer(p).unwrap().as_i64().unwrap();
                let v = set(&value, p, json!(n as f64));
                report.expect_ok(f, "integral float", &v);
                report.checks += 1;
                match file_roundtrip(f, v) {
                    Ok(back) if back == value => {}
                    other => report
                        .failures
                        .push(format!("{} {p} = {n}.0: decode gave {other:?}", f.stem)),
                }
            }
        }
    }
    report.finish(min_checks);
}

pub fn array_bounds_are_occurrence_violations(files: &[SchemaFile], min_checks: usize) {
    let mut report = Report::default();
    let occurrence = ViolationKind::OccurrenceConstraintViolation;
    for f in files {
        let value = instance(f, &f.root, Size::Maximal);
        let mut locs = Vec::new();
        locations(f, &f.root, &value, String::new(), &mut locs);
        for loc in locs.iter().filter(|l| ty(l.node) == Some("array")) {
            let p = loc.pointer.as_str();
            let item = value.pointer(p).unwrap()[0].clone();
            if let Some(min) = loc
                .node
                .get("minItems")
                .and_then(Value::as_u64)
                .filter(|&m| m > 0)
            {
                let fewer = vec![item.clone(); min as usize - 1];
                report.expect(
                    f,
                    "minItems-1",
                    &set(&value, p, Value::Array(fewer)),
                    occurrence,
                    p,
                );
            }
            if let Some(max) = loc.node.get("maxItems").and_then(Value::as_u64) {
                let exact = vec![item.clone(); max as usize];
                report.expect_ok(f, "maxItems", &set(&value, p, Value::Array(exact)));
                let more = vec![item; max as usize + 1];
                report.expect(
                    f,
                    "maxItems+1",
                    &set(&value, p, Value::Array(more)),
                    occurrence,
                    p,
                );
            }
        }
    }
    report.finish(min_checks);
}
