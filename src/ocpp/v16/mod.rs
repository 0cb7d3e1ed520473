//! OCPP 1.6J message types and payload validation, generated from the official JSON schemas of
//! OCPP 1.6 (edition 2, with the OCPP-J errata) and of its security whitepaper (edition 3).
//!
//! # What is generated
//!
//! [`generated`] (re-exported here) is written by `tools/gen_v16.py` (with `tools/ocppgen.py`,
//! shared with 2.0.1) from the 56 schema files in `schemas/ocpp-1.6/` and the 22 in
//! `schemas/ocpp-1.6-security/` (verbatim copies). Regenerate it with `python3 tools/gen_v16.py`
//! (needs `rustfmt` on `PATH`); CI runs `python3 tools/gen_v16.py --check`. Do not edit it by
//! hand. As for 2.0.1 (see [`crate::ocpp::v201`]) it contains `{Action}Request` /
//! `{Action}Response` structs for all 39 actions (28 of 1.6, 11 of the security whitepaper)
//! implementing [`RequestPayload`] / [`ResponsePayload`], one type per object or enum, [`Action`]
//! (`as_str`, `from_name`, `ALL`, `request_schema`, `response_schema`), [`for_each_action!`] and
//! [`tables`], nodes of the same [`schema::Schema`] type as 2.0.1's (table set
//! [`schema::TableSet::V16`]), so the one validator, [`validate`], serves both versions.
//!
//! # Naming scheme
//!
//! * Messages: the 1.6 file names drop the `Request` suffix (`BootNotification.json`); the
//!   structs have it, as in 2.0.1: `BootNotificationRequest`, `BootNotificationResponse`.
//! * The 1.6J schemas declare every object and enum inline. Each gets the name of its type in
//!   the specification (edition 2, chapter 7): `StatusNotificationRequest.status` →
//!   [`ChargePointStatus`], `.errorCode` → [`ChargePointErrorCode`], `idTagInfo` → [`IdTagInfo`]
//!   and its `status` → [`AuthorizationStatus`], `meterValue` and `transactionData` →
//!   [`MeterValue`], `sampledValue` → [`SampledValue`] (`measurand` → [`Measurand`], `context` →
//!   [`ReadingContext`], `unit` → [`UnitOfMeasure`], ...), `chargingProfile` and
//!   `csChargingProfiles` → [`ChargingProfile`], `configurationKey` → [`KeyValue`],
//!   `localAuthorizationList` → [`AuthorizationData`]. The spec's names are kept verbatim, `Type`
//!   suffix included ([`ChargingProfilePurposeType`], [`ResetType`]). An inline type the
//!   generator's table does not name would be `{EnclosingType}{Property}`; none is.
//! * The security schemas have definitions, named as in 2.0.1: `LogEnumType` → [`LogEnum`],
//!   `CertificateHashDataType` → [`CertificateHashData`]; where a name is also a core 1.6 type's,
//!   they differ by the suffix ([`FirmwareStatusEnum`] of SignedFirmwareStatusNotification, and
//!   [`FirmwareStatus`] of FirmwareStatusNotification).
//! * Fields, enum variants and table nodes as in 2.0.1: `connectorId` → `connector_id`,
//!   `Energy.Active.Import.Register` → `EnergyActiveImportRegister`, `L1-N` → `L1N`,
//!   `tables::CHARGE_POINT_STATUS`, `tables::STATUS_NOTIFICATION_REQUEST`.
//!
//! # What 1.6 adds to the validator
//!
//! `format: uri` (UpdateFirmware and GetDiagnostics `location`) and `multipleOf: 0.1` (charging
//! schedule `limit` and `minChargingRate`) are checked, both as `PropertyConstraintViolation`
//! (see [`validate`]). The draft-04 `id` and `title` are annotations.
//!
//! # Error codes
//!
//! OCPP-J 1.6 (section 4.2.3, table 7) spells two CALLERROR codes differently from 2.0.1, and
//! its errata sheet (section 5, "known issues that will not be fixed") keeps them:
//! `FormationViolation` and `OccurenceConstraintViolation`. [`call_error_code`] and
//! [`error_code`] give the 1.6 wire string.

pub mod adapter;
pub mod core_profile;
pub mod generated;
pub mod keys;
pub(crate) mod link;
pub mod profiles;

pub use crate::ocpp::{schema, validate};
pub use generated::*;

use crate::ocpp::rpc::CallErrorCode;
use crate::ocpp::validate::ViolationKind;

/// The WebSocket subprotocol of OCPP 1.6J.
pub const PROTOCOL: &str = "ocpp1.6";

/// The OCPP-J 1.6 `errorCode` of a CALLERROR with `code` (OCPP-J 1.6, table 7).
///
/// `FormatViolation` is `FormationViolation` and `OccurrenceConstraintViolation` is
/// `OccurenceConstraintViolation` in 1.6. 1.6 has no `RpcFrameworkError` nor
/// `MessageTypeNotSupported`: a frame that is not a proper RPC message is a `ProtocolError`
/// there (as the Python `ocpp` package answers it for 1.6).
pub fn call_error_code(code: CallErrorCode) -> &'static str {
    match code {
        CallErrorCode::FormatViolation => "FormationViolation",
        CallErrorCode::OccurrenceConstraintViolation => "OccurenceConstraintViolation",
        CallErrorCode::RpcFrameworkError | CallErrorCode::MessageTypeNotSupported => {
            "ProtocolError"
        }
        CallErrorCode::GenericError
        | CallErrorCode::InternalError
        | CallErrorCode::NotImplemented
        | CallErrorCode::NotSupported
        | CallErrorCode::PropertyConstraintViolation
        | CallErrorCode::ProtocolError
        | CallErrorCode::SecurityError
        | CallErrorCode::TypeConstraintViolation => code.as_str(),
    }
}

/// The OCPP-J 1.6 `errorCode` for a payload the validator rejected with `kind`.
pub fn error_code(kind: ViolationKind) -> &'static str {
    match kind {
        ViolationKind::FormatViolation => call_error_code(CallErrorCode::FormatViolation),
        ViolationKind::TypeConstraintViolation => {
            call_error_code(CallErrorCode::TypeConstraintViolation)
        }
        ViolationKind::OccurrenceConstraintViolation => {
            call_error_code(CallErrorCode::OccurrenceConstraintViolation)
        }
        ViolationKind::PropertyConstraintViolation => {
            call_error_code(CallErrorCode::PropertyConstraintViolation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::validate::validate;
    use serde_json::json;

    /// The ten codes of OCPP-J 1.6, table 7, as the JSON wire spells them.
    const V16_CODES: [&str; 10] = [
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    ];

    #[test]
    fn format_violation_is_formation_violation() {
        assert_eq!(
            error_code(ViolationKind::FormatViolation),
            "FormationViolation"
        );
        let v = validate(Action::Heartbeat.request_schema(), &json!([])).unwrap_err();
        assert_eq!(error_code(v.kind), "FormationViolation");
        let v = validate(Action::Heartbeat.request_schema(), &json!({"x": 1})).unwrap_err();
        assert_eq!(error_code(v.kind), "FormationViolation");
    }

    #[test]
    fn occurrence_violation_is_occurence_constraint_violation() {
        assert_eq!(
            error_code(ViolationKind::OccurrenceConstraintViolation),
            "OccurenceConstraintViolation"
        );
        let v = validate(Action::Authorize.request_schema(), &json!({})).unwrap_err();
        assert_eq!(
            (error_code(v.kind), v.path.as_str()),
            ("OccurenceConstraintViolation", "/idTag")
        );
    }

    #[test]
    fn type_constraint_violation_is_spelled_alike() {
        assert_eq!(
            error_code(ViolationKind::TypeConstraintViolation),
            "TypeConstraintViolation"
        );
        let v = validate(Action::Authorize.request_schema(), &json!({"idTag": 12})).unwrap_err();
        assert_eq!(error_code(v.kind), "TypeConstraintViolation");
    }

    #[test]
    fn property_constraint_violation_is_spelled_alike() {
        assert_eq!(
            error_code(ViolationKind::PropertyConstraintViolation),
            "PropertyConstraintViolation"
        );
        let v = validate(
            Action::Authorize.request_schema(),
            &json!({"idTag": "123456789012345678901"}),
        )
        .unwrap_err();
        assert_eq!(
            (error_code(v.kind), v.path.as_str()),
            ("PropertyConstraintViolation", "/idTag")
        );
    }

    #[test]
    fn every_call_error_code_has_a_1_6_spelling() {
        let all = CallErrorCode::ALL;
        for code in all {
            let s = call_error_code(code);
            assert!(V16_CODES.contains(&s), "{code:?} -> {s} is not a 1.6 code");
        }
        // Each 1.6 code is reached, the eight spelled alike as themselves.
        for s in V16_CODES {
            assert!(all.iter().any(|&c| call_error_code(c) == s), "{s}");
        }
        for code in [
            CallErrorCode::GenericError,
            CallErrorCode::InternalError,
            CallErrorCode::NotImplemented,
            CallErrorCode::NotSupported,
            CallErrorCode::ProtocolError,
            CallErrorCode::SecurityError,
        ] {
            assert_eq!(call_error_code(code), code.as_str());
        }
        assert_eq!(
            call_error_code(CallErrorCode::RpcFrameworkError),
            "ProtocolError"
        );
        assert_eq!(
            call_error_code(CallErrorCode::MessageTypeNotSupported),
            "ProtocolError"
        );
    }

    #[test]
    fn actions() {
        assert_eq!(Action::ALL.len(), 39);
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
            assert_eq!(a.request_schema().table_set(), schema::TableSet::V16);
        }
        assert_eq!(
            Action::from_name("StartTransaction"),
            Some(Action::StartTransaction)
        );
        assert_eq!(Action::from_name("TransactionEvent"), None);
        assert_eq!(Action::from_name("startTransaction"), None);
        assert_eq!(ChargePointStatus::SuspendedEvse.as_str(), "SuspendedEVSE");
        assert_eq!(Measurand::VALUES.len(), 22);
    }
}
