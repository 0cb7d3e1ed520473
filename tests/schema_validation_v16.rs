//! Cross-checks the generated OCPP 1.6J types and static validation tables against the official
//! JSON schema files in `schemas/ocpp-1.6/` and `schemas/ocpp-1.6-security/`, with the checks of
//! `tests/support/schema_files.rs` (shared with OCPP 2.0.1); then validates hand-written
//! payloads, one valid and a few invalid per request a CSMS sends, with the CALLERROR code 1.6
//! answers them with.

#[macro_use]
#[path = "support/schema_files.rs"]
mod schema_files;

use std::collections::BTreeSet;

use ocpp_agent::ocpp::v16 as version;
use schema_files::roundtrip;
use serde_json::{Value, json};
use version::validate::{Violation, validate};
use version::{Action, RequestPayload, ResponsePayload};

version::for_each_action!(typed_dispatch);

schema_file_tests! {
    dirs: ["schemas/ocpp-1.6", "schemas/ocpp-1.6-security"],
    split: |stem| match stem.strip_suffix("Response") {
        Some(name) => (name.to_owned(), false),
        None => (stem.to_owned(), true),
    },
    checks: {
        minimal_and_maximal_instances_validate_and_round_trip: 4 * 78,
        every_enum_value_round_trips: 340,
        removing_a_required_property_is_an_occurrence_violation: 130,
        unknown_properties_are_format_violations: 480,
        invalid_values_are_property_constraint_violations: 290,
        wrong_types_are_type_constraint_violations: 1000,
        array_bounds_are_occurrence_violations: 1,
    },
}

#[test]
fn every_schema_file_maps_to_an_action() {
    let files = load_all();
    assert_eq!(files.len(), 78);
    let mut seen = BTreeSet::new();
    for (i, f) in files.iter().enumerate() {
        assert!(
            seen.insert((f.action.as_str(), f.is_request)),
            "{} twice",
            f.stem
        );
        // The 56 files of 1.6J come first, then the 22 of the security whitepaper.
        let draft = if i < 56 { "draft-04" } else { "draft-06" };
        assert_eq!(
            f.root["$schema"],
            format!("http://json-schema.org/{draft}/schema#")
        );
    }
    assert_eq!(seen.len(), 2 * Action::ALL.len());
    assert_eq!(check_payload_traits(), 39);
    for a in Action::ALL {
        assert!(seen.contains(&(a.as_str(), true)) && seen.contains(&(a.as_str(), false)));
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written payloads of the requests a CSMS sends (and what a charge point answers)
// ---------------------------------------------------------------------------------------------

/// The requests only a charge point sends; every other action is sent by the CSMS (DataTransfer
/// both ways).
const CHARGE_POINT_INITIATED: [&str; 13] = [
    "Authorize",
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
];

/// One valid payload, then invalid ones with the 1.6 `errorCode` and the path of the violation.
struct Example {
    action: &'static str,
    valid: Value,
    invalid: Vec<(Value, &'static str, &'static str)>,
}

fn charging_profile() -> Value {
    json!({
        "chargingProfileId": 12,
        "transactionId": 1001,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "validFrom": "2024-05-01T00:00:00Z",
        "validTo": "2024-05-02T00:00:00.000Z",
        "chargingSchedule": {
            "duration": 3600,
            "startSchedule": "2024-05-01T10:00:00+02:00",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                {"startPeriod": 1800, "limit": 8.1}
            ],
            "minChargingRate": 6.0
        }
    })
}

const FORMATION: &str = "FormationViolation";
const OCCURENCE: &str = "OccurenceConstraintViolation";
const PROPERTY: &str = "PropertyConstraintViolation";
const TYPE: &str = "TypeConstraintViolation";

fn examples() -> Vec<Example> {
    let ex = |action, valid, invalid| Example {
        action,
        valid,
        invalid,
    };
    let hash = json!({
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "a1b2c3",
        "issuerKeyHash": "d4e5f6",
        "serialNumber": "0123456789abcdef"
    });
    let mut profile_recurring = charging_profile();
    profile_recurring["chargingProfileKind"] = json!("Recurring");
    profile_recurring["recurrencyKind"] = json!("Daily");
    let mut limit_two_decimals = charging_profile();
    limit_two_decimals["chargingSchedule"]["chargingSchedulePeriod"][1]["limit"] = json!(8.15);
    let mut no_schedule = charging_profile();
    no_schedule
        .as_object_mut()
        .unwrap()
        .remove("chargingSchedule");
    let mut rate_unit_kw = charging_profile();
    rate_unit_kw["chargingSchedule"]["chargingRateUnit"] = json!("kW");
    let period = "/csChargingProfiles/chargingSchedule/chargingSchedulePeriod/1/limit";
    vec![
        ex(
            "CancelReservation",
            json!({"reservationId": 7}),
            vec![
                (json!({}), OCCURENCE, "/reservationId"),
                (json!({"reservationId": "7"}), TYPE, "/reservationId"),
            ],
        ),
        ex(
            "CertificateSigned",
            json!({"certificateChain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}),
            vec![
                (
                    json!({"certificateChain": "x".repeat(10_001)}),
                    PROPERTY,
                    "/certificateChain",
                ),
                (json!({"certificate": "x"}), FORMATION, "/certificate"),
            ],
        ),
        ex(
            "ChangeAvailability",
            json!({"connectorId": 0, "type": "Inoperative"}),
            vec![
                (
                    json!({"connectorId": 1, "type": "Unavailable"}),
                    PROPERTY,
                    "/type",
                ),
                (json!({"type": "Operative"}), OCCURENCE, "/connectorId"),
                (
                    json!({"connectorId": 1.5, "type": "Operative"}),
                    TYPE,
                    "/connectorId",
                ),
            ],
        ),
        ex(
            "ChangeConfiguration",
            json!({"key": "HeartbeatInterval", "value": "300"}),
            vec![
                (
                    json!({"key": "HeartbeatInterval", "value": 300}),
                    TYPE,
                    "/value",
                ),
                (
                    json!({"key": "K".repeat(51), "value": "1"}),
                    PROPERTY,
                    "/key",
                ),
                (json!({"key": "HeartbeatInterval"}), OCCURENCE, "/value"),
            ],
        ),
        ex(
            "ClearCache",
            json!({}),
            vec![
                (json!({"all": true}), FORMATION, "/all"),
                (json!(null), FORMATION, ""),
            ],
        ),
        ex(
            "ClearChargingProfile",
            json!({"id": 12, "connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}),
            vec![
                (
                    json!({"chargingProfilePurpose": "TxDefault"}),
                    PROPERTY,
                    "/chargingProfilePurpose",
                ),
                (json!({"id": "12"}), TYPE, "/id"),
            ],
        ),
        ex(
            "DataTransfer",
            json!({"vendorId": "com.example", "messageId": "SetPrice", "data": "{\"price\":0.25}"}),
            vec![
                (json!({"messageId": "SetPrice"}), OCCURENCE, "/vendorId"),
                (
                    json!({"vendorId": "com.example", "data": {"price": 0.25}}),
                    TYPE,
                    "/data",
                ),
                (json!({"vendorId": "v".repeat(256)}), PROPERTY, "/vendorId"),
            ],
        ),
        ex(
            "DeleteCertificate",
            json!({"certificateHashData": hash.clone()}),
            vec![
                (
                    json!({"certificateHashData": {"hashAlgorithm": "MD5", "issuerNameHash": "a", "issuerKeyHash": "b", "serialNumber": "c"}}),
                    PROPERTY,
                    "/certificateHashData/hashAlgorithm",
                ),
                (
                    json!({"certificateHashData": {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b"}}),
                    OCCURENCE,
                    "/certificateHashData/serialNumber",
                ),
            ],
        ),
        ex(
            "ExtendedTriggerMessage",
            json!({"requestedMessage": "SignChargePointCertificate", "connectorId": 0}),
            vec![
                (
                    json!({"requestedMessage": "SignCertificate"}),
                    PROPERTY,
                    "/requestedMessage",
                ),
                (json!({"connectorId": 1}), OCCURENCE, "/requestedMessage"),
            ],
        ),
        ex(
            "GetCompositeSchedule",
            json!({"connectorId": 1, "duration": 86400, "chargingRateUnit": "W"}),
            vec![
                (json!({"connectorId": 1}), OCCURENCE, "/duration"),
                (
                    json!({"connectorId": 1, "duration": 60, "chargingRateUnit": "kW"}),
                    PROPERTY,
                    "/chargingRateUnit",
                ),
            ],
        ),
        ex(
            "GetConfiguration",
            json!({"key": ["HeartbeatInterval", "MeterValueSampleInterval"]}),
            vec![
                (json!({"key": "HeartbeatInterval"}), TYPE, "/key"),
                (json!({"key": ["K".repeat(51)]}), PROPERTY, "/key/0"),
            ],
        ),
        ex(
            "GetDiagnostics",
            json!({"location": "ftp://user:secret@diag.example.com/uploads/", "retries": 3, "retryInterval": 60, "startTime": "2024-05-01T00:00:00Z", "stopTime": "2024-05-02T00:00:00Z"}),
            vec![
                (
                    json!({"location": "diag.example.com/uploads"}),
                    PROPERTY,
                    "/location",
                ),
                (
                    json!({"location": "ftp://h/", "startTime": "2024-05-01"}),
                    PROPERTY,
                    "/startTime",
                ),
                (json!({"retries": 3}), OCCURENCE, "/location"),
            ],
        ),
        ex(
            "GetInstalledCertificateIds",
            json!({"certificateType": "CentralSystemRootCertificate"}),
            vec![
                (
                    json!({"certificateType": "V2GRootCertificate"}),
                    PROPERTY,
                    "/certificateType",
                ),
                (json!({}), OCCURENCE, "/certificateType"),
            ],
        ),
        ex(
            "GetLocalListVersion",
            json!({}),
            vec![(json!({"listVersion": 1}), FORMATION, "/listVersion")],
        ),
        ex(
            "GetLog",
            json!({"log": {"remoteLocation": "https://logs.example.com/upload", "oldestTimestamp": "2024-05-01T00:00:00Z"}, "logType": "SecurityLog", "requestId": 3, "retries": 1}),
            vec![
                (
                    json!({"log": {}, "logType": "SecurityLog", "requestId": 3}),
                    OCCURENCE,
                    "/log/remoteLocation",
                ),
                (
                    json!({"log": {"remoteLocation": "x"}, "logType": "AuditLog", "requestId": 3}),
                    PROPERTY,
                    "/logType",
                ),
            ],
        ),
        ex(
            "InstallCertificate",
            json!({"certificateType": "ManufacturerRootCertificate", "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}),
            vec![
                (
                    json!({"certificateType": "ManufacturerRootCertificate", "certificate": "x".repeat(5501)}),
                    PROPERTY,
                    "/certificate",
                ),
                (json!({"certificate": "x"}), OCCURENCE, "/certificateType"),
            ],
        ),
        ex(
            "RemoteStartTransaction",
            json!({"connectorId": 1, "idTag": "04A2B3C4D5E6F7", "chargingProfile": charging_profile()}),
            vec![
                (json!({"connectorId": 1}), OCCURENCE, "/idTag"),
                (
                    json!({"idTag": "123456789012345678901"}),
                    PROPERTY,
                    "/idTag",
                ),
                (
                    json!({"idTag": "A", "chargingProfile": {"chargingProfileId": 1}}),
                    OCCURENCE,
                    "/chargingProfile/stackLevel",
                ),
            ],
        ),
        ex(
            "RemoteStopTransaction",
            json!({"transactionId": 1001}),
            vec![
                (json!({"transactionId": "1001"}), TYPE, "/transactionId"),
                (json!({}), OCCURENCE, "/transactionId"),
            ],
        ),
        ex(
            "ReserveNow",
            json!({"connectorId": 0, "expiryDate": "2024-05-01T12:00:00Z", "idTag": "TAG1", "parentIdTag": "GROUP1", "reservationId": 42}),
            vec![
                (
                    json!({"connectorId": 0, "expiryDate": "2024-05-01T12:00:00", "idTag": "TAG1", "reservationId": 42}),
                    PROPERTY,
                    "/expiryDate",
                ),
                (
                    json!({"connectorId": 0, "expiryDate": "2024-05-01T12:00:00Z", "idTag": "TAG1"}),
                    OCCURENCE,
                    "/reservationId",
                ),
            ],
        ),
        ex(
            "Reset",
            json!({"type": "Soft"}),
            vec![
                (json!({"type": "soft"}), PROPERTY, "/type"),
                (json!({}), OCCURENCE, "/type"),
            ],
        ),
        ex(
            "SendLocalList",
            json!({"listVersion": 5, "updateType": "Differential", "localAuthorizationList": [
                {"idTag": "TAG1", "idTagInfo": {"status": "Accepted", "expiryDate": "2025-01-01T00:00:00Z", "parentIdTag": "GROUP1"}},
                {"idTag": "TAG2"}
            ]}),
            vec![
                (
                    json!({"listVersion": 5, "updateType": "Full", "localAuthorizationList": [{"idTag": "T", "idTagInfo": {}}]}),
                    OCCURENCE,
                    "/localAuthorizationList/0/idTagInfo/status",
                ),
                (
                    json!({"listVersion": 5, "updateType": "Partial"}),
                    PROPERTY,
                    "/updateType",
                ),
                (
                    json!({"listVersion": 5, "updateType": "Full", "localAuthorizationList": {}}),
                    TYPE,
                    "/localAuthorizationList",
                ),
            ],
        ),
        ex(
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": charging_profile()}),
            vec![
                (
                    json!({"connectorId": 1, "csChargingProfiles": limit_two_decimals}),
                    PROPERTY,
                    period,
                ),
                (
                    json!({"connectorId": 1, "csChargingProfiles": no_schedule}),
                    OCCURENCE,
                    "/csChargingProfiles/chargingSchedule",
                ),
                (
                    json!({"connectorId": 1, "csChargingProfiles": rate_unit_kw}),
                    PROPERTY,
                    "/csChargingProfiles/chargingSchedule/chargingRateUnit",
                ),
                (
                    json!({"connectorId": 1, "chargingProfile": profile_recurring}),
                    FORMATION,
                    "/chargingProfile",
                ),
            ],
        ),
        ex(
            "SignedUpdateFirmware",
            json!({"requestId": 9, "retries": 2, "firmware": {"location": "https://fw.example.com/fw-2.0.bin", "retrieveDateTime": "2024-05-01T03:00:00Z", "signingCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "signature": "c2lnbmF0dXJl"}}),
            vec![
                (
                    json!({"requestId": 9, "firmware": {"location": "x", "retrieveDateTime": "2024-05-01T03:00:00Z", "signingCertificate": "c"}}),
                    OCCURENCE,
                    "/firmware/signature",
                ),
                (
                    json!({"requestId": "9", "firmware": {}}),
                    TYPE,
                    "/requestId",
                ),
            ],
        ),
        ex(
            "TriggerMessage",
            json!({"requestedMessage": "StatusNotification", "connectorId": 1}),
            vec![
                (
                    json!({"requestedMessage": "SignChargePointCertificate"}),
                    PROPERTY,
                    "/requestedMessage",
                ),
                (
                    json!({"requestedMessage": "Heartbeat", "connectorId": "1"}),
                    TYPE,
                    "/connectorId",
                ),
            ],
        ),
        ex(
            "UnlockConnector",
            json!({"connectorId": 2}),
            vec![
                (json!({}), OCCURENCE, "/connectorId"),
                (json!({"connectorId": 2, "evseId": 1}), FORMATION, "/evseId"),
            ],
        ),
        ex(
            "UpdateFirmware",
            json!({"location": "http://fw.example.com/fw-1.2.bin", "retrieveDate": "2024-05-01T03:00:00+02:00", "retries": 3, "retryInterval": 120}),
            vec![
                (
                    json!({"location": "http://fw.example.com/fw 1.2.bin", "retrieveDate": "2024-05-01T03:00:00Z"}),
                    PROPERTY,
                    "/location",
                ),
                (
                    json!({"location": "http://fw.example.com/fw.bin"}),
                    OCCURENCE,
                    "/retrieveDate",
                ),
                (
                    json!({"location": "http://fw.example.com/fw.bin", "retrieveDate": "2024-05-01T03:00:00Z", "retries": "3"}),
                    TYPE,
                    "/retries",
                ),
            ],
        ),
    ]
}

#[test]
fn every_request_a_csms_sends_has_examples() {
    let names: Vec<&str> = examples().iter().map(|e| e.action).collect();
    for a in Action::ALL {
        let sent_by_csms = !CHARGE_POINT_INITIATED.contains(&a.as_str());
        assert_eq!(
            names.contains(&a.as_str()),
            sent_by_csms,
            "{}: examples exactly for the requests a CSMS sends",
            a.as_str()
        );
    }
    assert_eq!(names.len(), 26);
}

#[test]
fn hand_written_requests_validate_with_their_1_6_error_codes() {
    let mut failures = Vec::new();
    for e in examples() {
        let action = Action::from_name(e.action).unwrap();
        match typed_roundtrip(action, true, e.valid.clone()) {
            Ok(back) if back == e.valid => {}
            other => failures.push(format!("{}: valid payload gave {other:?}", e.action)),
        }
        assert!(!e.invalid.is_empty(), "{}: no invalid payload", e.action);
        for (payload, code, path) in e.invalid {
            match validate(action.request_schema(), &payload) {
                Ok(()) => failures.push(format!("{}: {payload} accepted", e.action)),
                Err(v) => {
                    let got = (version::error_code(v.kind), v.path.as_str());
                    if got != (code, path) {
                        failures.push(format!(
                            "{}: {payload}: got {got:?} ({}), expected ({code}, {path})",
                            e.action, v.message
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn answers_of_a_csms_validate() {
    // What SteVe and other 1.6 CSMSs answer to the charge point's requests.
    let ok: [(&str, Value); 6] = [
        (
            "BootNotification",
            json!({"status": "Accepted", "currentTime": "2024-05-01T10:00:00.000Z", "interval": 300}),
        ),
        ("Heartbeat", json!({"currentTime": "2024-05-01T10:00:00Z"})),
        (
            "Authorize",
            json!({"idTagInfo": {"status": "Accepted", "expiryDate": "2024-05-02T10:00:00Z", "parentIdTag": "GROUP1"}}),
        ),
        (
            "StartTransaction",
            json!({"transactionId": 1001, "idTagInfo": {"status": "ConcurrentTx"}}),
        ),
        ("StopTransaction", json!({})),
        ("StatusNotification", json!({})),
    ];
    for (name, payload) in ok {
        let action = Action::from_name(name).unwrap();
        let back = typed_roundtrip(action, false, payload.clone())
            .unwrap_or_else(|v| panic!("{name}: {v}"));
        assert_eq!(back, payload, "{name}");
    }
    let bad: [(&str, Value, &str, &str); 4] = [
        (
            "BootNotification",
            json!({"status": "Accepted", "currentTime": "2024-05-01T10:00:00Z"}),
            OCCURENCE,
            "/interval",
        ),
        (
            "StartTransaction",
            json!({"idTagInfo": {"status": "Accepted"}}),
            OCCURENCE,
            "/transactionId",
        ),
        (
            "Authorize",
            json!({"idTagInfo": {"status": "Unknown"}}),
            PROPERTY,
            "/idTagInfo/status",
        ),
        (
            "Heartbeat",
            json!({"currentTime": 1714557600}),
            TYPE,
            "/currentTime",
        ),
    ];
    for (name, payload, code, path) in bad {
        let v =
            validate(Action::from_name(name).unwrap().response_schema(), &payload).expect_err(name);
        assert_eq!(
            (version::error_code(v.kind), v.path.as_str()),
            (code, path),
            "{name}"
        );
    }
}

#[test]
fn typed_payloads_read_as_the_spec_names_them() {
    let req: version::StatusNotificationRequest = version::validate::decode(
        Action::StatusNotification.request_schema(),
        json!({"connectorId": 1, "errorCode": "NoError", "status": "SuspendedEVSE", "timestamp": "2024-05-01T10:00:00Z"}),
    )
    .unwrap();
    assert_eq!(req.status, version::ChargePointStatus::SuspendedEvse);
    assert_eq!(req.error_code, version::ChargePointErrorCode::NoError);
    let set: version::SetChargingProfileRequest = version::validate::decode(
        Action::SetChargingProfile.request_schema(),
        json!({"connectorId": 1, "csChargingProfiles": charging_profile()}),
    )
    .unwrap();
    let profile: version::ChargingProfile = set.cs_charging_profiles;
    assert_eq!(
        profile.charging_profile_purpose,
        version::ChargingProfilePurposeType::TxProfile
    );
    assert_eq!(
        profile.charging_schedule.charging_schedule_period[1].limit,
        8.1
    );
    // Both spellings of the 1.6 errata are valid units.
    for unit in ["Celcius", "Celsius"] {
        let meter = json!({"connectorId": 1, "meterValue": [{"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [
            {"value": "21.5", "measurand": "Temperature", "unit": unit, "context": "Sample.Periodic", "location": "Body"}
        ]}]});
        let m: version::MeterValuesRequest =
            version::validate::decode(Action::MeterValues.request_schema(), meter).unwrap();
        assert_eq!(
            m.meter_value[0].sampled_value[0].unit.unwrap().as_str(),
            unit
        );
    }
}
