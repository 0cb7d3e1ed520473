//! The security whitepaper (edition 3) certificate management, security events and
//! ExtendedTriggerMessage, on the 2.0.1 security block and TriggerMessage. The whitepaper
//! took these from 2.0.1 (its 5.x say so); what differs is the enum spellings and that 1.6
//! knows only the charge point's certificate and two root types.

use super::{Connector, Inbound, Lookup, Outbound, answer, call, connector, copy, status_only};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v16::Action;
use crate::ocpp::v201;
use serde_json::{Value, json};

/// Whitepaper 6.4 CertificateUseEnumType → 2.0.1 (Install/GetCertificateIdUse).
fn certificate_use(v16: &Value) -> Value {
    match v16.as_str() {
        Some("CentralSystemRootCertificate") => json!("CSMSRootCertificate"),
        _ => v16.clone(),
    }
}

/// Whitepaper 6.16 MessageTriggerEnumType → 2.0.1 MessageTriggerEnumType.
fn trigger(v16: &str) -> &str {
    match v16 {
        "SignChargePointCertificate" => "SignChargingStationCertificate",
        other => other,
    }
}

pub(super) fn request(
    action: Action,
    payload: &Value,
    lk: &Lookup,
) -> Option<Result<Inbound, CallError>> {
    match action {
        // Whitepaper A02/A03: only the charge point's certificate is signed in 1.6.
        Action::CertificateSigned => call(
            v201::Action::CertificateSigned,
            json!({
                "certificateChain": payload["certificateChain"],
                "certificateType": "ChargingStationCertificate",
            }),
        ),
        Action::InstallCertificate => call(
            v201::Action::InstallCertificate,
            json!({
                "certificateType": certificate_use(&payload["certificateType"]),
                "certificate": payload["certificate"],
            }),
        ),
        Action::DeleteCertificate => call(v201::Action::DeleteCertificate, payload.clone()),
        // 1.6 asks for one type; 2.0.1 for a list of them.
        Action::GetInstalledCertificateIds => call(
            v201::Action::GetInstalledCertificateIds,
            json!({"certificateType": [certificate_use(&payload["certificateType"])]}),
        ),
        Action::ExtendedTriggerMessage => {
            let requested = trigger(payload["requestedMessage"].as_str().unwrap_or_default());
            let mut v = json!({ "requestedMessage": requested });
            if let Some(id) = payload.get("connectorId") {
                match connector(id.as_i64().unwrap_or(-1), lk) {
                    // Whitepaper 5.5: connectorId > 0 names a connector; 0 is the station.
                    Connector::Station => {}
                    // StatusNotification names a connector (F06.FR.12): the EVSE's only one.
                    Connector::Evse(n) if requested == "StatusNotification" => {
                        v["evse"] = json!({"id": n, "connectorId": 1});
                    }
                    Connector::Evse(n) => v["evse"] = json!({ "id": n }),
                    // As TriggerMessage refuses an EVSE it does not have.
                    Connector::Unknown => return answer(json!({"status": "Rejected"})),
                }
            }
            // As TriggerMessage (core_profile): the link answers these two itself.
            match (requested, v.get("evse")) {
                ("BootNotification", _) => {
                    return Some(Ok(Inbound::Link(super::super::adapter::LinkRequest::Boot)));
                }
                ("StatusNotification", None) => {
                    return Some(Ok(Inbound::Link(
                        super::super::adapter::LinkRequest::ReportStatuses {
                            connectors: payload.get("connectorId").is_none(),
                        },
                    )));
                }
                _ => {}
            }
            call(v201::Action::TriggerMessage, v)
        }
        _ => None,
    }
}

pub(super) fn response(action: Action, answer: &Value) -> Option<Value> {
    match action {
        // Statuses spelled alike in both (whitepaper 6.2, 6.7, 6.17 and InstallCertificate's
        // Accepted/Failed/Rejected); 1.6 has no statusInfo.
        Action::CertificateSigned
        | Action::InstallCertificate
        | Action::DeleteCertificate
        | Action::ExtendedTriggerMessage => Some(status_only(answer)),
        Action::GetInstalledCertificateIds => {
            let mut v = status_only(answer);
            // The roots 1.6 asks for have no chain: their own hash data is the answer.
            let hashes: Vec<Value> = answer
                .get("certificateHashDataChain")
                .and_then(Value::as_array)
                .map(|chain| {
                    chain
                        .iter()
                        .map(|c| hash_data(&c["certificateHashData"]))
                        .collect()
                })
                .unwrap_or_default();
            if !hashes.is_empty() {
                v["certificateHashData"] = Value::Array(hashes);
            }
            Some(v)
        }
        _ => None,
    }
}

/// A CertificateHashDataType without 2.0.1's customData.
fn hash_data(h: &Value) -> Value {
    let mut v = json!({});
    for key in [
        "hashAlgorithm",
        "issuerNameHash",
        "issuerKeyHash",
        "serialNumber",
    ] {
        copy(h, key, &mut v, key);
    }
    v
}

pub(super) fn outgoing(action: v201::Action, payload: &Value) -> Option<Outbound> {
    match action {
        v201::Action::SignCertificate => {
            // 1.6 has no V2G certificates (whitepaper 5.17: the CSR is the charge point's).
            if payload["certificateType"] == "V2GCertificate" {
                return Some(Outbound::Skip);
            }
            Some(Outbound::Send {
                action: Action::SignCertificate,
                payload: json!({ "csr": payload["csr"] }),
            })
        }
        v201::Action::SecurityEventNotification => {
            let mut v = json!({"type": payload["type"], "timestamp": payload["timestamp"]});
            copy(payload, "techInfo", &mut v, "techInfo");
            Some(Outbound::Send {
                action: Action::SecurityEventNotification,
                payload: v,
            })
        }
        _ => None,
    }
}

pub(super) fn answer_to_v201(sent: Action, answer: &Value) -> Option<Value> {
    match sent {
        // Accepted/Rejected in both.
        Action::SignCertificate => Some(status_only(answer)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::adapter::LinkRequest;
    use super::super::testkit::inbound;
    use super::super::testkit::{
        answered, call, outgoing, response, statuses_pass, valid16_response, valid201_response,
    };
    use super::*;
    use v201::Action as A;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn hash(serial: &str) -> Value {
        json!({
            "hashAlgorithm": "SHA256",
            "issuerNameHash": "aa11",
            "issuerKeyHash": "bb22",
            "serialNumber": serial,
        })
    }

    #[test]
    fn certificate_signed_is_the_charging_station_certificate() {
        let req = json!({ "certificateChain": PEM });
        let v = call(Action::CertificateSigned, req.clone(), A::CertificateSigned);
        assert_eq!(
            v,
            json!({"certificateChain": PEM, "certificateType": "ChargingStationCertificate"})
        );
        statuses_pass(
            Action::CertificateSigned,
            &req,
            A::CertificateSigned,
            &["Accepted", "Rejected"],
        );
    }

    #[test]
    fn install_certificate_types() {
        for (v16, v201) in [
            ("CentralSystemRootCertificate", "CSMSRootCertificate"),
            ("ManufacturerRootCertificate", "ManufacturerRootCertificate"),
        ] {
            let req = json!({"certificateType": v16, "certificate": PEM});
            let v = call(
                Action::InstallCertificate,
                req.clone(),
                A::InstallCertificate,
            );
            assert_eq!(v, json!({"certificateType": v201, "certificate": PEM}));
            for status in ["Accepted", "Rejected", "Failed"] {
                let out = response(
                    Action::InstallCertificate,
                    &req,
                    A::InstallCertificate,
                    json!({ "status": status }),
                );
                assert_eq!(out, json!({ "status": status }));
            }
        }
    }

    #[test]
    fn delete_certificate() {
        let req = json!({ "certificateHashData": hash("01") });
        assert_eq!(
            call(Action::DeleteCertificate, req.clone(), A::DeleteCertificate),
            req
        );
        statuses_pass(
            Action::DeleteCertificate,
            &req,
            A::DeleteCertificate,
            &["Accepted", "Failed", "NotFound"],
        );
    }

    #[test]
    fn get_installed_certificate_ids() {
        let req = json!({"certificateType": "CentralSystemRootCertificate"});
        let v = call(
            Action::GetInstalledCertificateIds,
            req.clone(),
            A::GetInstalledCertificateIds,
        );
        assert_eq!(v, json!({"certificateType": ["CSMSRootCertificate"]}));
        let out = response(
            Action::GetInstalledCertificateIds,
            &req,
            A::GetInstalledCertificateIds,
            json!({"status": "Accepted", "certificateHashDataChain": [
                {"certificateType": "CSMSRootCertificate", "certificateHashData": hash("01")},
                {"certificateType": "CSMSRootCertificate", "certificateHashData": hash("02"),
                 "childCertificateHashData": [hash("03")]},
            ]}),
        );
        assert_eq!(
            out,
            json!({"status": "Accepted", "certificateHashData": [hash("01"), hash("02")]})
        );
        let out = response(
            Action::GetInstalledCertificateIds,
            &req,
            A::GetInstalledCertificateIds,
            json!({"status": "NotFound"}),
        );
        assert_eq!(out, json!({"status": "NotFound"}));
        let m = call(
            Action::GetInstalledCertificateIds,
            json!({"certificateType": "ManufacturerRootCertificate"}),
            A::GetInstalledCertificateIds,
        );
        assert_eq!(
            m,
            json!({"certificateType": ["ManufacturerRootCertificate"]})
        );
    }

    #[test]
    fn extended_trigger_message() {
        // The link answers BootNotification and StatusNotification of the charge point
        // itself (adapter::LinkRequest).
        for (request, link) in [
            (
                json!({"requestedMessage": "BootNotification"}),
                LinkRequest::Boot,
            ),
            (
                json!({"requestedMessage": "StatusNotification"}),
                LinkRequest::ReportStatuses { connectors: true },
            ),
            (
                json!({"requestedMessage": "StatusNotification", "connectorId": 0}),
                LinkRequest::ReportStatuses { connectors: false },
            ),
        ] {
            assert_eq!(
                inbound(Action::ExtendedTriggerMessage, request),
                Inbound::Link(link)
            );
        }
        for (v16, v201) in [
            ("LogStatusNotification", "LogStatusNotification"),
            ("FirmwareStatusNotification", "FirmwareStatusNotification"),
            ("Heartbeat", "Heartbeat"),
            ("MeterValues", "MeterValues"),
            (
                "SignChargePointCertificate",
                "SignChargingStationCertificate",
            ),
        ] {
            let v = call(
                Action::ExtendedTriggerMessage,
                json!({ "requestedMessage": v16 }),
                A::TriggerMessage,
            );
            assert_eq!(v, json!({ "requestedMessage": v201 }));
        }
        let v = call(
            Action::ExtendedTriggerMessage,
            json!({"requestedMessage": "StatusNotification", "connectorId": 2}),
            A::TriggerMessage,
        );
        assert_eq!(
            v,
            json!({"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}})
        );
        let v = call(
            Action::ExtendedTriggerMessage,
            json!({"requestedMessage": "MeterValues", "connectorId": 1}),
            A::TriggerMessage,
        );
        assert_eq!(
            v,
            json!({"requestedMessage": "MeterValues", "evse": {"id": 1}})
        );
        let v = call(
            Action::ExtendedTriggerMessage,
            json!({"requestedMessage": "MeterValues", "connectorId": 0}),
            A::TriggerMessage,
        );
        assert_eq!(v, json!({"requestedMessage": "MeterValues"}));
        assert_eq!(
            answered(
                Action::ExtendedTriggerMessage,
                json!({"requestedMessage": "MeterValues", "connectorId": 3})
            ),
            json!({"status": "Rejected"})
        );
        for status in ["Accepted", "Rejected", "NotImplemented"] {
            let out = response(
                Action::ExtendedTriggerMessage,
                &json!({"requestedMessage": "Heartbeat"}),
                A::TriggerMessage,
                json!({"status": status, "statusInfo": {"reasonCode": "X"}}),
            );
            assert_eq!(out, json!({ "status": status }));
        }
    }

    #[test]
    fn sign_certificate_outgoing_and_answer() {
        let out = outgoing(
            A::SignCertificate,
            json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----", "certificateType": "ChargingStationCertificate"}),
        );
        assert_eq!(
            out,
            Some((
                Action::SignCertificate,
                json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----"})
            ))
        );
        assert_eq!(
            outgoing(A::SignCertificate, json!({"csr": "x"})),
            Some((Action::SignCertificate, json!({"csr": "x"})))
        );
        assert_eq!(
            outgoing(
                A::SignCertificate,
                json!({"csr": "x", "certificateType": "V2GCertificate"})
            ),
            None
        );
        for status in ["Accepted", "Rejected"] {
            let a = json!({ "status": status });
            valid16_response(Action::SignCertificate, &a);
            let v = super::super::answer_to_v201(Action::SignCertificate, &json!({"csr": "x"}), &a)
                .unwrap();
            valid201_response(A::SignCertificate, &v);
            assert_eq!(v, a);
        }
    }

    #[test]
    fn security_event_notification() {
        let p = json!({"type": "FirmwareUpdated", "timestamp": "2026-12-06T20:00:00Z", "techInfo": "v2"});
        assert_eq!(
            outgoing(A::SecurityEventNotification, p.clone()),
            Some((Action::SecurityEventNotification, p))
        );
        let p = json!({"type": "StartupOfTheDevice", "timestamp": "2026-12-06T20:00:00Z"});
        assert_eq!(
            outgoing(A::SecurityEventNotification, p.clone()),
            Some((Action::SecurityEventNotification, p))
        );
        let v =
            super::super::answer_to_v201(Action::SecurityEventNotification, &json!({}), &json!({}));
        assert_eq!(v, Some(json!({})));
    }
}
