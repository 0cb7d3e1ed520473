//! OCPP 2.0.1 message types and payload validation, generated from the official JSON schemas.
//!
//! # What is generated
//!
//! [`generated`] (re-exported here) is written by `tools/gen_v201.py` from the 128 schema files
//! in `schemas/ocpp-2.0.1/` (a verbatim copy of the official OCPP 2.0.1 schemas). Regenerate it
//! with `python3 tools/gen_v201.py` (needs `rustfmt` on `PATH`); CI runs
//! `python3 tools/gen_v201.py --check`, which fails if the file and the schemas have drifted. Do
//! not edit it by hand. It contains:
//!
//! * `{Action}Request` / `{Action}Response` structs for all 64 actions, implementing
//!   [`RequestPayload`] / [`ResponsePayload`] (action, schema table, response type);
//! * one Rust type per shared schema definition (a definition used by several messages is
//!   generated once; the generator verifies that all same-named definitions are structurally
//!   identical and gives differing ones distinct names);
//! * [`Action`] with `as_str`, `from_name`, `ALL`, `request_schema`, `response_schema`;
//! * [`tables`]: one node ([`schema::Schema`], an index) per definition and per payload, the
//!   data that [`validate::validate`] walks (no JSON parsing, no allocation and no load-time
//!   relocation: nodes, properties and strings refer to each other by index);
//! * [`for_each_action!`] for code that needs to handle every action generically.
//!
//! # Naming scheme
//!
//! * Message structs keep the schema file name: `BootNotificationRequest`,
//!   `NotifyEVChargingNeedsRequest`; [`Action`] variants are the wire action names.
//! * Definitions drop the `Type` suffix and write acronyms as words: `IdTokenType` → `IdToken`,
//!   `EVSEType` → `Evse`, `ConnectorStatusEnumType` → `ConnectorStatusEnum`,
//!   `OCSPRequestDataType` → `OcspRequestData`, `AuthorizationData` → `AuthorizationData`. A
//!   definition that differed between schemas would get the message name appended
//!   (`{Name}{Message}`); the OCPP 2.0.1 schemas have no such collision.
//! * Fields are snake_case of the JSON name (`evseId` → `evse_id`, `type` → `r#type`); serde
//!   maps them back with `rename_all = "camelCase"`, plus an explicit `rename` where that does not
//!   reproduce the JSON name (`responderURL` → `responder_url`).
//! * Enum variants are the JSON values in PascalCase with separators removed and acronyms as
//!   words (`Energy.Active.Import.Register` → `EnergyActiveImportRegister`, `ISO14443` →
//!   `Iso14443`, `s309-1P-16A` → `S309_1P16A`); every enum has `as_str()` and `VALUES` with the
//!   exact JSON strings.
//! * Table nodes are the SCREAMING_SNAKE_CASE of the type: `tables::ID_TOKEN`,
//!   `tables::BOOT_NOTIFICATION_REQUEST`.
//!
//! # Type mapping
//!
//! `integer` → `i64`, `number` → `f64`, `boolean` → `bool`, `string` (also `date-time`, which the
//! validator checks) → `String`, `array` → `Vec<T>`, untyped (`DataTransfer` `data`) →
//! `serde_json::Value`. Properties not in `required` are `Option<T>`, omitted when `None`
//! (structs whose fields are all optional also derive `Default`). `CustomData` keeps arbitrary
//! vendor properties in `extra`. Schema `default` values are annotations only; they are not
//! applied.
//!
//! Decode incoming payloads with [`validate::decode`], which validates first so that errors carry
//! the right OCPP-J error code.

pub mod adapter;
pub mod charging;
pub mod display;
pub mod generated;
pub mod reservation;
/// The table node types and the validator, shared with OCPP 1.6 (they live in `crate::ocpp`;
/// re-exported here so `v201::validate::decode` and `v201::schema::Schema` keep working).
pub use crate::ocpp::{schema, validate};

pub use generated::*;

/// The WebSocket subprotocol of OCPP 2.0.1, and the protocol of what the core queues in it.
pub const PROTOCOL: &str = "ocpp2.0.1";

/// Validates a response against its own schema and decodes it.
pub fn decode_response<T: ResponsePayload>(
    payload: serde_json::Value,
) -> Result<T, validate::Violation> {
    validate::decode(T::SCHEMA, payload)
}

/// Validates a request against its own schema and decodes it.
pub fn decode_request<T: RequestPayload>(
    payload: serde_json::Value,
) -> Result<T, validate::Violation> {
    validate::decode(T::SCHEMA, payload)
}

impl From<crate::ocpp::model::ConnectorStatus> for ConnectorStatusEnum {
    fn from(status: crate::ocpp::model::ConnectorStatus) -> Self {
        use crate::ocpp::model::ConnectorStatus as S;
        match status {
            S::Available => ConnectorStatusEnum::Available,
            S::Occupied => ConnectorStatusEnum::Occupied,
            S::Reserved => ConnectorStatusEnum::Reserved,
            S::Unavailable => ConnectorStatusEnum::Unavailable,
            S::Faulted => ConnectorStatusEnum::Faulted,
        }
    }
}

/// An EVSE or connector id from the CSMS as ours: an id out of range (negative, or above
/// u32::MAX) becomes u32::MAX, which no EVSE or connector has (they are numbered from 1), so
/// it is "unknown" instead of silently naming another one.
pub fn id32(id: i64) -> u32 {
    u32::try_from(id).unwrap_or(u32::MAX)
}

/// The JSON of a payload we built (serializing our own plain data types cannot fail).
pub fn to_payload<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl From<&IdToken> for crate::ocpp::model::IdToken {
    fn from(token: &IdToken) -> Self {
        crate::ocpp::model::IdToken {
            id_token: token.id_token.clone(),
            kind: token.r#type.as_str().to_owned(),
            additional_info: token
                .additional_info
                .iter()
                .flatten()
                .map(|a| crate::ocpp::model::AdditionalIdToken {
                    additional_id_token: a.additional_id_token.clone(),
                    kind: a.r#type.clone(),
                })
                .collect(),
        }
    }
}

/// The model's form of a 2.0.1 idTokenInfo (the two serialise alike; a payload that passed
/// validation converts).
pub fn authorization_info(info: &IdTokenInfo) -> crate::ocpp::model::AuthorizationInfo {
    serde_json::from_value(to_payload(info)).unwrap_or(crate::ocpp::model::AuthorizationInfo {
        status: crate::ocpp::model::AuthorizationStatus::Unknown,
        cache_expiry_date_time: None,
        charging_priority: None,
        language1: None,
        language2: None,
        evse_ids: Vec::new(),
        group_id_token: None,
        personal_message: None,
    })
}
