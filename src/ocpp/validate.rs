//! Payload validation against the static schema tables, with OCPP-J error codes.
//!
//! [`validate`] walks a `serde_json::Value` alongside a [`Schema`] of any version (2.0.1 or
//! 1.6) and reports the first violation as a [`Violation`] carrying the OCPP-J RPC framework
//! error code (OCPP 2.0.1 part 4, table 8) and a JSON pointer to the offending value. It
//! allocates only when it fails. OCPP-J 1.6 spells two of the codes differently on the wire:
//! `crate::ocpp::v16::error_code` gives the 1.6 spelling.
//!
//! Error mapping:
//!
//! * `FormatViolation`: the payload (root) is not a JSON object; a property that
//!   `additionalProperties: false` does not allow (at any depth).
//! * `OccurrenceConstraintViolation`: a required property is missing; an array violates
//!   `minItems` / `maxItems`.
//! * `TypeConstraintViolation`: a value of the wrong JSON type, including `null`, `1.5` or `"1"`
//!   for an integer, and integers that do not fit in an `i64`.
//! * `PropertyConstraintViolation`: a string not in the `enum`; a string longer than `maxLength`
//!   (counted in characters); a number outside `minimum` / `maximum` or not a `multipleOf`; a
//!   malformed `date-time`.
//!
//! Order (deterministic): at each object, first properties that are not allowed (in the map's
//! iteration order), then missing required properties (schema order), then the values of the
//! present properties (schema order, depth first). Arrays: item count, then items in order.
//!
//! Integers: as JSON Schema draft-06 (which the OCPP schemas declare) specifies, a number with a
//! zero fractional part such as `5.0` or `5e0` *is* an integer and is accepted. serde cannot
//! deserialize `5.0` into an `i64`, so [`decode`] rewrites such values to plain integers before
//! deserializing. Use [`decode`] rather than `validate` + `serde_json::from_value` for typed
//! payloads. Integers must fit in an `i64` (the generated Rust type).
//! The OCPP 1.6J schemas declare draft-04, which does not count `5.0` as an integer; it is
//! accepted for 1.6 all the same (what a CSMS meant is clear, and decode normalizes it).
//!
//! `multipleOf` (only OCPP 1.6's `0.1` on charging limits, a power of ten in the tables:
//! `fraction_digits`): the value times 10^n must be an integer up to a relative 1e-9, since the
//! wire's decimal `0.3` is no exact binary multiple of `0.1` (`0.3 / 0.1` is
//! `2.9999999999999996`); `16.05` is rejected, `16.1` accepted.
//!
//! `date-time` is RFC 3339 `date-time` (`YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)`, `T`/`Z` also in
//! lower case, leap second `:60` only at 23:59 UTC), as JSON Schema defines it; no offset, a
//! space instead of `T`, or impossible dates are rejected.

use std::fmt;

use serde_json::Value;

use crate::ocpp::schema::{Format, Node, Schema};

/// The OCPP-J error codes a payload validation can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    /// Payload is syntactically incorrect.
    FormatViolation,
    /// A field violates data type constraints.
    TypeConstraintViolation,
    /// A field violates occurrence constraints.
    OccurrenceConstraintViolation,
    /// A field contains an invalid value.
    PropertyConstraintViolation,
}

impl ViolationKind {
    /// The OCPP-J `errorCode` string.
    pub fn as_str(&self) -> &'static str {
        match self {
            ViolationKind::FormatViolation => "FormatViolation",
            ViolationKind::TypeConstraintViolation => "TypeConstraintViolation",
            ViolationKind::OccurrenceConstraintViolation => "OccurrenceConstraintViolation",
            ViolationKind::PropertyConstraintViolation => "PropertyConstraintViolation",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The OCPP-J error code.
    pub kind: ViolationKind,
    /// JSON pointer (RFC 6901) to the offending value, e.g. `/evse/id`; `""` is the payload.
    pub path: String,
    /// Human-readable detail, short enough for a CALLERROR `errorDescription`.
    pub message: String,
}

impl Violation {
    fn new(kind: ViolationKind, message: String) -> Violation {
        Violation {
            kind,
            path: String::new(),
            message,
        }
    }

    /// Prepend a path segment (object key) while the error propagates outwards.
    fn under_key(mut self, key: &str) -> Violation {
        let mut prefix = String::with_capacity(key.len() + 1 + self.path.len());
        prefix.push('/');
        for c in key.chars() {
            match c {
                '~' => prefix.push_str("~0"),
                '/' => prefix.push_str("~1"),
                c => prefix.push(c),
            }
        }
        prefix.push_str(&self.path);
        self.path = prefix;
        self
    }

    fn under_index(mut self, index: usize) -> Violation {
        self.path = format!("/{index}{}", self.path);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.kind, self.message)
        } else {
            write!(f, "{} at {}: {}", self.kind, self.path, self.message)
        }
    }
}

impl std::error::Error for Violation {}

/// Validate `value` against `schema`, returning the first violation.
pub fn validate(schema: &'static Schema, value: &Value) -> Result<(), Violation> {
    check_root(schema, value).map(|_| ())
}

/// Validate `value` against `schema`, then deserialize it into `T`.
///
/// Integral floats in integer positions (`5.0`) are rewritten to integers first (see the module
/// docs). A deserialization error after successful validation means `T` does not match
/// `schema`; it is reported as `FormatViolation` with serde's message.
pub fn decode<T: serde::de::DeserializeOwned>(
    schema: &'static Schema,
    mut value: Value,
) -> Result<T, Violation> {
    if check_root(schema, &value)? {
        normalize_integers(schema, &mut value);
    }
    serde_json::from_value(value)
        .map_err(|e| Violation::new(ViolationKind::FormatViolation, e.to_string()))
}

/// Returns whether an integral float was accepted for an integer (decode must normalize).
fn check_root(schema: &Schema, value: &Value) -> Result<bool, Violation> {
    if matches!(schema.node(), Node::Object { .. }) && !value.is_object() {
        return Err(Violation::new(
            ViolationKind::FormatViolation,
            format!("payload must be a JSON object, found {}", type_name(value)),
        ));
    }
    let mut saw_integral_float = false;
    check(schema, value, &mut saw_integral_float)?;
    Ok(saw_integral_float)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(expected: &str, value: &Value) -> Violation {
    Violation::new(
        ViolationKind::TypeConstraintViolation,
        format!("expected {expected}, found {}", type_name(value)),
    )
}

fn property_error(message: String) -> Violation {
    Violation::new(ViolationKind::PropertyConstraintViolation, message)
}

/// At most 40 characters of `s`, for quoting user input in messages.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((end, _)) => format!("{:?}...", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// The `i64` value of a JSON integer, accepting integral floats (`5.0`).
/// `Err(())` if the number is not an integer or does not fit in an `i64`.
fn as_integer(n: &serde_json::Number, saw_integral_float: &mut bool) -> Result<i64, ()> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.is_u64() {
        return Err(());
    }
    let f = n.as_f64().ok_or(())?;
    // -2^63 <= f < 2^63, both exactly representable as f64.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
    {
        *saw_integral_float = true;
        Ok(f as i64)
    } else {
        Err(())
    }
}

fn check(schema: &Schema, value: &Value, saw_integral_float: &mut bool) -> Result<(), Violation> {
    match schema.node() {
        Node::Object { props, additional } => {
            let Value::Object(map) = value else {
                return Err(type_error("object", value));
            };
            if !additional {
                if let Some(key) = map
                    .keys()
                    .find(|k| !props.iter().any(|p| p.name == k.as_str()))
                {
                    return Err(Violation::new(
                        ViolationKind::FormatViolation,
                        "property is not allowed by the schema".to_owned(),
                    )
                    .under_key(key));
                }
            }
            if let Some(p) = props
                .iter()
                .find(|p| p.required && !map.contains_key(p.name))
            {
                return Err(Violation::new(
                    ViolationKind::OccurrenceConstraintViolation,
                    "required property is missing".to_owned(),
                )
                .under_key(p.name));
            }
            for p in props.iter() {
                if let Some(v) = map.get(p.name) {
                    check(p.schema, v, saw_integral_float).map_err(|e| e.under_key(p.name))?;
                }
            }
            Ok(())
        }
        Node::Array {
            items,
            min_items,
            max_items,
        } => {
            let Value::Array(elements) = value else {
                return Err(type_error("array", value));
            };
            let len = elements.len();
            if let Some(min) = min_items.filter(|&min| len < min as usize) {
                return Err(Violation::new(
                    ViolationKind::OccurrenceConstraintViolation,
                    format!("array has {len} items, fewer than minItems {min}"),
                ));
            }
            if let Some(max) = max_items.filter(|&max| len > max as usize) {
                return Err(Violation::new(
                    ViolationKind::OccurrenceConstraintViolation,
                    format!("array has {len} items, more than maxItems {max}"),
                ));
            }
            for (i, element) in elements.iter().enumerate() {
                check(&items, element, saw_integral_float).map_err(|e| e.under_index(i))?;
            }
            Ok(())
        }
        Node::String { max_length, format } => {
            let Value::String(s) = value else {
                return Err(type_error("string", value));
            };
            if let Some(max) = max_length {
                // Byte length bounds the character count from above: skip counting if short.
                if s.len() > max as usize {
                    let chars = s.chars().count();
                    if chars > max as usize {
                        return Err(property_error(format!(
                            "string has {chars} characters, more than maxLength {max}"
                        )));
                    }
                }
            }
            match format {
                Some(Format::DateTime) if !is_date_time(s) => Err(property_error(format!(
                    "{} is not an RFC 3339 date-time",
                    excerpt(s)
                ))),
                Some(Format::Uri) if !is_uri(s) => Err(property_error(format!(
                    "{} is not an RFC 3986 URI",
                    excerpt(s)
                ))),
                _ => Ok(()),
            }
        }
        Node::Enum(values) => {
            let Value::String(s) = value else {
                return Err(type_error("string", value));
            };
            if values.contains(s) {
                Ok(())
            } else {
                Err(property_error(format!(
                    "{} is not an allowed value",
                    excerpt(s)
                )))
            }
        }
        Node::Integer { min, max } => {
            let Value::Number(n) = value else {
                return Err(type_error("integer", value));
            };
            let Ok(i) = as_integer(n, saw_integral_float) else {
                return Err(Violation::new(
                    ViolationKind::TypeConstraintViolation,
                    format!("expected integer, found {n}"),
                ));
            };
            check_bounds(i, min, max)
        }
        Node::Number {
            min,
            max,
            fraction_digits,
        } => {
            let Some(f) = value.as_f64() else {
                return Err(type_error("number", value));
            };
            check_bounds(f, min, max)?;
            match fraction_digits {
                Some(n) if !has_fraction_digits(f, n) => Err(property_error(format!(
                    "{f} has more than {n} digits after the decimal point (multipleOf 1e-{n})"
                ))),
                _ => Ok(()),
            }
        }
        Node::Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(type_error("boolean", value)),
        },
        Node::Any => Ok(()),
    }
}

fn check_bounds<T: PartialOrd + fmt::Display>(
    v: T,
    min: Option<T>,
    max: Option<T>,
) -> Result<(), Violation> {
    if let Some(min) = min.filter(|min| v < *min) {
        return Err(property_error(format!("{v} is less than minimum {min}")));
    }
    if let Some(max) = max.filter(|max| v > *max) {
        return Err(property_error(format!("{v} is greater than maximum {max}")));
    }
    Ok(())
}

/// Whether `v` has at most `n` digits after the decimal point, i.e. `v * 10^n` is an integer
/// up to a relative 1e-9 (see the module docs).
fn has_fraction_digits(v: f64, n: u8) -> bool {
    let scaled = v * 10f64.powi(i32::from(n));
    scaled.is_finite() && (scaled - scaled.round()).abs() <= 1e-9 * scaled.abs().max(1.0)
}

/// Rewrite integral floats in integer positions to integers. Only called on valid values.
fn normalize_integers(schema: &Schema, value: &mut Value) {
    match (schema.node(), value) {
        (Node::Object { props, .. }, Value::Object(map)) => {
            for p in props.iter() {
                if let Some(v) = map.get_mut(p.name) {
                    normalize_integers(p.schema, v);
                }
            }
        }
        (Node::Array { items, .. }, Value::Array(elements)) => {
            for element in elements {
                normalize_integers(&items, element);
            }
        }
        (Node::Integer { .. }, value @ Value::Number(_)) => {
            if let Some(f) = value.as_f64().filter(|_| value.is_f64()) {
                *value = Value::from(f as i64);
            }
        }
        _ => {}
    }
}

/// RFC 3986 `URI` (JSON Schema's `uri`: absolute, with a scheme), checked at the level of its
/// characters: a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), `:`, then only
/// unreserved, reserved and percent-encoded (`%` and two hex digits) characters. Spaces,
/// non-ASCII characters and a relative reference are rejected; the structure of the authority
/// and path is not checked further (the downloader parses the URL).
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut scheme_chars = scheme.bytes();
    if !scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !scheme_chars.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
    {
        return false;
    }
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// RFC 3339 `date-time`: `full-date "T" full-time`, with `time-offset` mandatory.
pub fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return false;
    };
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let start = i;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    // Offset in minutes east of UTC.
    let offset: i64 = if at(i, b"Zz") && b.len() == i + 1 {
        0
    } else if at(i, b"+-") && b.len() == i + 6 && at(i + 3, b":") {
        let (Some(oh), Some(om)) = (num(i + 1..i + 3), num(i + 4..i + 6)) else {
            return false;
        };
        if oh > 23 || om > 59 {
            return false;
        }
        let minutes = i64::from(oh * 60 + om);
        if b[i] == b'-' { -minutes } else { minutes }
    } else {
        return false;
    };
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap_year => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    if second == 60 {
        // A leap second is only valid at 23:59:60 UTC.
        let utc_minute = (i64::from(hour * 60 + minute) - offset).rem_euclid(24 * 60);
        if utc_minute != 23 * 60 + 59 {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ocpp::v201::generated::*;

    fn violation(schema: &'static Schema, value: Value) -> (ViolationKind, String) {
        let v = validate(schema, &value).expect_err("payload should be rejected");
        (v.kind, v.path)
    }

    fn boot_notification() -> Value {
        json!({
            "reason": "PowerUp",
            "chargingStation": {
                "model": "SingleSocketCharger",
                "vendorName": "VendorX",
                "serialNumber": "SN-0001",
                "firmwareVersion": "1.2.3",
                "modem": { "iccid": "8931", "imsi": "2040" },
                "customData": { "vendorId": "com.example", "anything": [1, 2, {"x": null}] }
            },
            "customData": { "vendorId": "com.example" }
        })
    }

    fn transaction_event() -> Value {
        json!({
            "eventType": "Updated",
            "timestamp": "2024-05-01T10:00:00.123Z",
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 3,
            "offline": false,
            "numberOfPhasesUsed": 3,
            "cableMaxCurrent": 32,
            "reservationId": 7,
            "transactionInfo": {
                "transactionId": "b1c2d3",
                "chargingState": "Charging",
                "timeSpentCharging": 120
            },
            "idToken": {
                "idToken": "04A2B3C4D5",
                "type": "ISO14443",
                "additionalInfo": [{ "additionalIdToken": "x", "type": "y" }]
            },
            "evse": { "id": 1, "connectorId": 1 },
            "meterValue": [{
                "timestamp": "2024-05-01T12:00:00+02:00",
                "sampledValue": [
                    {
                        "value": 1234.5,
                        "context": "Sample.Periodic",
                        "measurand": "Energy.Active.Import.Register",
                        "phase": "L1-N",
                        "location": "Outlet",
                        "unitOfMeasure": { "unit": "Wh", "multiplier": 0 },
                        "signedMeterValue": {
                            "signedMeterData": "AAAA",
                            "signingMethod": "ECDSA",
                            "encodingMethod": "OCMF",
                            "publicKey": "BBBB"
                        }
                    },
                    { "value": 16 }
                ]
            }]
        })
    }

    fn get_variables() -> Value {
        json!({
            "getVariableData": [
                {
                    "component": { "name": "OCPPCommCtrlr" },
                    "variable": { "name": "HeartbeatInterval" }
                },
                {
                    "attributeType": "Target",
                    "component": { "name": "EVSE", "instance": "1", "evse": { "id": 1 } },
                    "variable": { "name": "Power", "instance": "Max" }
                }
            ]
        })
    }

    fn set_variables() -> Value {
        json!({
            "setVariableData": [{
                "attributeType": "Actual",
                "attributeValue": "300",
                "component": { "name": "OCPPCommCtrlr" },
                "variable": { "name": "HeartbeatInterval" }
            }]
        })
    }

    #[test]
    fn valid_payloads_pass_and_decode() {
        let boot = <BootNotificationRequest as RequestPayload>::SCHEMA;
        validate(boot, &boot_notification()).unwrap();
        let req: BootNotificationRequest = decode(boot, boot_notification()).unwrap();
        assert_eq!(req.reason, BootReasonEnum::PowerUp);
        assert_eq!(req.charging_station.model, "SingleSocketCharger");
        let extra = &req.charging_station.custom_data.as_ref().unwrap().extra;
        assert_eq!(extra["anything"], json!([1, 2, {"x": null}]));
        assert_eq!(serde_json::to_value(&req).unwrap(), boot_notification());

        let tx = Action::TransactionEvent.request_schema();
        validate(tx, &transaction_event()).unwrap();
        let tx_req: TransactionEventRequest = decode(tx, transaction_event()).unwrap();
        let sv = &tx_req.meter_value.as_ref().unwrap()[0].sampled_value;
        assert_eq!(
            sv[0].measurand,
            Some(MeasurandEnum::EnergyActiveImportRegister)
        );
        assert_eq!(sv[0].phase, Some(PhaseEnum::L1N));
        assert_eq!(sv[1].value, 16.0);
        assert_eq!(
            tx_req.id_token.as_ref().unwrap().r#type,
            IdTokenEnum::Iso14443
        );
        assert_eq!(tx_req.evse.as_ref().unwrap().connector_id, Some(1));

        let gv = Action::GetVariables.request_schema();
        validate(gv, &get_variables()).unwrap();
        let gv_req: GetVariablesRequest = decode(gv, get_variables()).unwrap();
        assert_eq!(gv_req.get_variable_data.len(), 2);
        assert_eq!(serde_json::to_value(&gv_req).unwrap(), get_variables());

        let sv_schema = Action::SetVariables.request_schema();
        validate(sv_schema, &set_variables()).unwrap();
        let sv_req: SetVariablesRequest = decode(sv_schema, set_variables()).unwrap();
        assert_eq!(sv_req.set_variable_data[0].attribute_value, "300");

        // Empty payloads of messages without required properties.
        validate(Action::Heartbeat.request_schema(), &json!({})).unwrap();
        let _: HeartbeatRequest = decode(Action::Heartbeat.request_schema(), json!({})).unwrap();
    }

    #[test]
    fn format_violations() {
        let boot = Action::BootNotification.request_schema();
        for not_object in [json!([]), json!("x"), json!(null), json!(1)] {
            assert_eq!(
                violation(boot, not_object),
                (ViolationKind::FormatViolation, String::new())
            );
        }
        let mut v = boot_notification();
        v["unexpected"] = json!(1);
        assert_eq!(
            violation(boot, v),
            (ViolationKind::FormatViolation, "/unexpected".to_owned())
        );
        let mut v = boot_notification();
        v["chargingStation"]["modem"]["a/b~c"] = json!(1);
        assert_eq!(
            violation(boot, v),
            (
                ViolationKind::FormatViolation,
                "/chargingStation/modem/a~1b~0c".to_owned()
            )
        );
        // CustomData allows extra properties at any depth.
        let mut v = boot_notification();
        v["customData"]["extension"] = json!({"deep": true});
        validate(boot, &v).unwrap();
    }

    #[test]
    fn occurrence_violations() {
        let boot = Action::BootNotification.request_schema();
        let mut v = boot_notification();
        v.as_object_mut().unwrap().remove("reason");
        assert_eq!(
            violation(boot, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/reason".to_owned()
            )
        );
        let mut v = boot_notification();
        v["chargingStation"]
            .as_object_mut()
            .unwrap()
            .remove("vendorName");
        assert_eq!(
            violation(boot, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/chargingStation/vendorName".to_owned()
            )
        );
        let mut v = boot_notification();
        v["customData"].as_object_mut().unwrap().remove("vendorId");
        assert_eq!(
            violation(boot, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/customData/vendorId".to_owned()
            )
        );

        let gv = Action::GetVariables.request_schema();
        assert_eq!(
            violation(gv, json!({ "getVariableData": [] })),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/getVariableData".to_owned()
            )
        );
        // SampledValue.phase etc. aside, TransactionEvent idToken.additionalInfo has minItems 1.
        let tx = Action::TransactionEvent.request_schema();
        let mut v = transaction_event();
        v["idToken"]["additionalInfo"] = json!([]);
        assert_eq!(
            violation(tx, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/idToken/additionalInfo".to_owned()
            )
        );
        // maxItems: AuthorizeRequest.iso15118CertificateHashData has at most 4 entries.
        let item = json!({
            "hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b",
            "serialNumber": "c", "responderURL": "http://ocsp"
        });
        let auth = Action::Authorize.request_schema();
        let mut v = json!({ "idToken": { "idToken": "x", "type": "Central" } });
        v["iso15118CertificateHashData"] = json!([item, item, item, item]);
        validate(auth, &v).unwrap();
        v["iso15118CertificateHashData"] = json!([item, item, item, item, item]);
        assert_eq!(
            violation(auth, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/iso15118CertificateHashData".to_owned()
            )
        );
    }

    #[test]
    fn type_violations() {
        let tx = Action::TransactionEvent.request_schema();
        let cases = [
            ("/seqNo", json!("3")),
            ("/seqNo", json!(3.5)),
            ("/seqNo", json!(null)),
            ("/seqNo", json!(u64::MAX)),
            ("/seqNo", json!(1e300)),
            ("/offline", json!("false")),
            ("/offline", json!(0)),
            ("/timestamp", json!(20240501)),
            ("/evse", json!("1")),
            ("/evse/id", json!(true)),
            ("/meterValue", json!({})),
            ("/meterValue/0/sampledValue/1/value", json!("16")),
            ("/eventType", json!(1)),
        ];
        for (pointer, bad) in cases {
            let mut v = transaction_event();
            *v.pointer_mut(pointer).unwrap() = bad.clone();
            assert_eq!(
                violation(tx, v),
                (ViolationKind::TypeConstraintViolation, pointer.to_owned()),
                "{pointer} = {bad}"
            );
        }
    }

    #[test]
    fn property_violations() {
        let tx = Action::TransactionEvent.request_schema();
        let cases = [
            ("/eventType", json!("Begun")),
            ("/eventType", json!("started")),
            ("/meterValue/0/sampledValue/0/measurand", json!("Energy")),
            ("/transactionInfo/transactionId", json!("x".repeat(37))),
            ("/timestamp", json!("yesterday")),
            ("/meterValue/0/timestamp", json!("2024-13-01T00:00:00Z")),
            ("/timestamp", json!("2024-01-01 00:00:00")),
        ];
        for (pointer, bad) in cases {
            let mut v = transaction_event();
            *v.pointer_mut(pointer).unwrap() = bad.clone();
            assert_eq!(
                violation(tx, v),
                (
                    ViolationKind::PropertyConstraintViolation,
                    pointer.to_owned()
                ),
                "{pointer} = {bad}"
            );
        }
        // maxLength counts characters, not bytes: 36 two-byte characters are fine.
        let mut v = transaction_event();
        v["transactionInfo"]["transactionId"] = json!("é".repeat(36));
        validate(tx, &v).unwrap();

        // minimum / maximum: SalesTariffEntry.ePriceLevel >= 0, DC stateOfCharge in 0..=100.
        let cp = Action::SetChargingProfile.request_schema();
        let mut v = json!({
            "evseId": 0,
            "chargingProfile": {
                "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": [{
                    "id": 1, "chargingRateUnit": "A", "startSchedule": "2024-01-01T00:00:00Z",
                    "chargingSchedulePeriod": [{ "startPeriod": 0, "limit": 16.0 }],
                    "salesTariff": {
                        "id": 1,
                        "salesTariffEntry": [{
                            "relativeTimeInterval": { "start": 0 },
                            "ePriceLevel": 0
                        }]
                    }
                }]
            }
        });
        validate(cp, &v).unwrap();
        let pointer =
            "/chargingProfile/chargingSchedule/0/salesTariff/salesTariffEntry/0/ePriceLevel";
        *v.pointer_mut(pointer).unwrap() = json!(-1);
        assert_eq!(
            violation(cp, v),
            (
                ViolationKind::PropertyConstraintViolation,
                pointer.to_owned()
            )
        );
        let needs = Action::NotifyEVChargingNeeds.request_schema();
        let mut v = json!({
            "evseId": 1,
            "chargingNeeds": {
                "requestedEnergyTransfer": "DC",
                "dcChargingParameters": { "evMaxCurrent": 100, "evMaxVoltage": 400, "stateOfCharge": 100 }
            }
        });
        validate(needs, &v).unwrap();
        v["chargingNeeds"]["dcChargingParameters"]["stateOfCharge"] = json!(101);
        assert_eq!(
            violation(needs, v),
            (
                ViolationKind::PropertyConstraintViolation,
                "/chargingNeeds/dcChargingParameters/stateOfCharge".to_owned()
            )
        );
    }

    #[test]
    fn date_times() {
        for ok in [
            "2024-01-01T00:00:00Z",
            "2024-05-01T12:00:00+02:00",
            "2024-05-01T12:00:00.123456-05:30",
            "2024-02-29T23:59:59.5Z",
            "2000-02-29T00:00:00z",
            "2024-01-01t00:00:00+00:00",
            "1998-12-31T23:59:60Z",
            "1998-12-31T15:59:60.123-08:00",
        ] {
            assert!(is_date_time(ok), "{ok} should be accepted");
        }
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-01-01 00:00:00",
            "2024-01-01T00:00:00",
            "yesterday",
            "",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:61Z",
            "1998-12-31T23:58:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+2:00",
            "2024-01-01T00:00:00+02:60",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00Z ",
            "24-01-01T00:00:00Z",
            "2024-1-01T00:00:00Z",
            "2024-01-01T00:00:00ZZ",
            "२०२४-01-01T00:00:00Z",
        ] {
            assert!(!is_date_time(bad), "{bad} should be rejected");
        }
    }

    #[test]
    fn uris() {
        for ok in [
            "ftp://user:pass@example.com/firmware.bin",
            "https://example.com:8443/fw?v=1.2&x=%20y#frag",
            "http://[2001:db8::1]/diag",
            "urn:oid:1.2.3",
            "a+b-c.d:",
        ] {
            assert!(is_uri(ok), "{ok} should be accepted");
        }
        for bad in [
            "",
            "example.com/firmware.bin",
            "/relative/path",
            "1ftp://example.com",
            "ftp://example.com/a file",
            "ftp://example.com/%2",
            "ftp://example.com/%zz",
            "ftp://example.com/ü",
            "ftp://example.com/\"quoted\"",
            "ft p://example.com",
        ] {
            assert!(!is_uri(bad), "{bad} should be rejected");
        }
    }

    #[test]
    fn fraction_digits() {
        for (v, n) in [
            (8.1, 1),
            (0.3, 1),
            (16.0, 1),
            (-0.7, 1),
            (0.0, 1),
            (1e6, 1),
            (2.25, 2),
        ] {
            assert!(has_fraction_digits(v, n), "{v} has at most {n}");
        }
        for (v, n) in [
            (16.05, 1),
            (0.01, 1),
            (8.15, 1),
            (1.5, 0),
            (0.125, 2),
            (f64::MAX, 1),
        ] {
            assert!(!has_fraction_digits(v, n), "{v} has more than {n}");
        }
    }

    #[test]
    fn integral_floats_are_integers() {
        let tx = Action::TransactionEvent.request_schema();
        let mut v = transaction_event();
        v["seqNo"] = json!(3.0);
        v["evse"]["id"] = json!(1e0);
        validate(tx, &v).unwrap();
        let req: TransactionEventRequest = decode(tx, v).unwrap();
        assert_eq!(req.seq_no, 3);
        assert_eq!(req.evse.unwrap().id, 1);
        // Plain serde would have refused it, which is why `decode` normalizes.
        let mut v = transaction_event();
        v["seqNo"] = json!(3.0);
        assert!(serde_json::from_value::<TransactionEventRequest>(v).is_err());
    }

    #[test]
    fn first_violation_is_deterministic() {
        // Not-allowed property beats missing property beats nested errors.
        let boot = Action::BootNotification.request_schema();
        let v = json!({ "zzz": 1, "chargingStation": { "model": 1 } });
        assert_eq!(
            violation(boot, v),
            (ViolationKind::FormatViolation, "/zzz".to_owned())
        );
        let v = json!({ "chargingStation": { "model": 1 } });
        assert_eq!(
            violation(boot, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/reason".to_owned()
            )
        );
        let v = json!({ "reason": "Nope", "chargingStation": { "model": 1 } });
        assert_eq!(
            violation(boot, v),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "/chargingStation/vendorName".to_owned()
            )
        );
    }

    #[test]
    fn kinds_and_display() {
        let kinds = [
            (ViolationKind::FormatViolation, "FormatViolation"),
            (
                ViolationKind::TypeConstraintViolation,
                "TypeConstraintViolation",
            ),
            (
                ViolationKind::OccurrenceConstraintViolation,
                "OccurrenceConstraintViolation",
            ),
            (
                ViolationKind::PropertyConstraintViolation,
                "PropertyConstraintViolation",
            ),
        ];
        for (kind, name) in kinds {
            assert_eq!(kind.as_str(), name);
        }
        let boot = Action::BootNotification.request_schema();
        let v = validate(
            boot,
            &json!({ "reason": "x".repeat(100), "chargingStation": {
            "model": "m", "vendorName": "v" } }),
        )
        .unwrap_err();
        assert_eq!(v.path, "/reason");
        assert!(v.message.len() < 80, "{}", v.message);
        assert!(
            v.to_string()
                .starts_with("PropertyConstraintViolation at /reason: ")
        );
    }

    #[test]
    fn decode_reports_serde_errors_as_format_violation() {
        // A schema/type mismatch (here: the wrong type for the schema) surfaces as
        // FormatViolation instead of panicking.
        let err = decode::<BootNotificationResponse>(Action::Heartbeat.request_schema(), json!({}))
            .unwrap_err();
        assert_eq!(err.kind, ViolationKind::FormatViolation);
        assert!(err.message.contains("missing field"), "{}", err.message);
    }

    #[test]
    fn actions() {
        assert_eq!(Action::ALL.len(), 64);
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i);
            assert_eq!(Action::from_name(a.as_str()), Some(*a));
            // Schemas are table indices: the same node is the same index.
            assert_ne!(a.request_schema(), a.response_schema());
        }
        assert_eq!(
            Action::from_name("BootNotification"),
            Some(Action::BootNotification)
        );
        assert_eq!(Action::BootNotification.as_str(), "BootNotification");
        assert_eq!(Action::from_name("bootnotification"), None);
        assert_eq!(Action::from_name("BootNotificationRequest"), None);
        assert_eq!(Action::from_name(""), None);
        assert_eq!(
            Action::Authorize.request_schema(),
            <AuthorizeRequest as RequestPayload>::SCHEMA
        );
        assert_eq!(
            Action::Authorize.response_schema(),
            <<AuthorizeRequest as RequestPayload>::Response as ResponsePayload>::SCHEMA
        );
        assert_eq!(
            <UpdateFirmwareResponse as ResponsePayload>::ACTION,
            Action::UpdateFirmware
        );
    }

    #[test]
    fn enum_as_str_matches_serde() {
        for (value, text) in [
            (
                MeasurandEnum::EnergyActiveImportRegister,
                "Energy.Active.Import.Register",
            ),
            (MeasurandEnum::SoC, "SoC"),
            (MeasurandEnum::Voltage, "Voltage"),
        ] {
            assert_eq!(value.as_str(), text);
            assert_eq!(serde_json::to_value(value).unwrap(), json!(text));
        }
        assert_eq!(ConnectorEnum::S309_1P16A.as_str(), "s309-1P-16A");
    }
}
