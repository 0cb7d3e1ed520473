//! Firmware Management (1.6 sections 5.19, 4.5, 5.9, 4.4) and the whitepaper's secure firmware
//! update and log upload (whitepaper L01, N01), all on the 2.0.1 firmware and diagnostics
//! blocks.
//!
//! The 2.0.1 calls need a requestId and the status notifications carry it. Whether a
//! notification goes out as the core message (FirmwareStatusNotification,
//! DiagnosticsStatusNotification) or the whitepaper's (SignedFirmwareStatusNotification,
//! LogStatusNotification) is told by that id alone, since the blocks keep it in the journal
//! across the reboot of a firmware install: the ids we make for UpdateFirmware and
//! GetDiagnostics are negative, and a whitepaper request with a negative id is refused.

use super::{Inbound, Lookup, Outbound, answer, call, copy, status_only};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v16::Action;
use crate::ocpp::v201;
use serde_json::{Value, json};

/// The 2.0.1 schemas' maxLength of a firmware or log location; 1.6 sets none.
const MAX_LOCATION: usize = 512;

/// A requestId of ours (reserved range): the request came as a 1.6 core message.
pub(super) fn ours(request_id: i64) -> bool {
    request_id < 0
}

/// The requestId for a 1.6 core request: in the reserved range, from the request itself
/// (FNV-1a of its JSON), so that a repeated request is the one already in progress
/// (the firmware block refuses it as DuplicateRequestId) and a new one replaces it.
fn our_request_id(payload: &Value) -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in payload.to_string().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    -1 - i64::from(h & 0x7fff_ffff)
}

fn location_too_long(location: &Value) -> bool {
    location
        .as_str()
        .is_some_and(|s| s.chars().count() > MAX_LOCATION)
}

pub(super) fn request(
    action: Action,
    payload: &Value,
    lk: &Lookup,
) -> Option<Result<Inbound, CallError>> {
    match action {
        Action::UpdateFirmware => {
            // Whitepaper L01.FR.20: a station that installs signed firmware only answers 1.6's
            // own UpdateFirmware with NotSupported and starts nothing.
            if !lk.unsigned_firmware {
                return Some(Err(CallError::new(
                    crate::ocpp::rpc::CallErrorCode::NotSupported,
                    "unsigned firmware is not accepted: use SignedUpdateFirmware",
                )));
            }
            // 1.6 UpdateFirmware.conf has no status: an update the block cannot take is
            // refused the only way 1.6 allows, by not doing it.
            if location_too_long(&payload["location"]) {
                return answer(json!({}));
            }
            let mut v = json!({
                "requestId": our_request_id(payload),
                "firmware": {
                    "location": payload["location"],
                    "retrieveDateTime": payload["retrieveDate"],
                },
            });
            copy(payload, "retries", &mut v, "retries");
            copy(payload, "retryInterval", &mut v, "retryInterval");
            call(v201::Action::UpdateFirmware, v)
        }
        Action::SignedUpdateFirmware => {
            if payload["requestId"].as_i64().is_none_or(ours) {
                return answer(json!({"status": "Rejected"}));
            }
            // The whitepaper's request is 2.0.1's UpdateFirmware, field for field.
            call(v201::Action::UpdateFirmware, payload.clone())
        }
        Action::GetDiagnostics => {
            // No fileName: nothing will be uploaded (1.6 section 6.26).
            if location_too_long(&payload["location"]) {
                return answer(json!({}));
            }
            let mut log = json!({ "remoteLocation": payload["location"] });
            copy(payload, "startTime", &mut log, "oldestTimestamp");
            copy(payload, "stopTime", &mut log, "latestTimestamp");
            let mut v = json!({
                "logType": "DiagnosticsLog",
                "requestId": our_request_id(payload),
                "log": log,
            });
            copy(payload, "retries", &mut v, "retries");
            copy(payload, "retryInterval", &mut v, "retryInterval");
            call(v201::Action::GetLog, v)
        }
        Action::GetLog => {
            if payload["requestId"].as_i64().is_none_or(ours) {
                return answer(json!({"status": "Rejected"}));
            }
            call(v201::Action::GetLog, payload.clone())
        }
        _ => None,
    }
}

pub(super) fn response(action: Action, answer: &Value) -> Option<Value> {
    match action {
        Action::UpdateFirmware => Some(json!({})),
        Action::SignedUpdateFirmware => Some(status_only(answer)),
        Action::GetDiagnostics => {
            let accepted = matches!(
                answer["status"].as_str(),
                Some("Accepted" | "AcceptedCanceled")
            );
            Some(match answer.get("filename") {
                Some(name) if accepted => json!({ "fileName": name }),
                _ => json!({}),
            })
        }
        Action::GetLog => {
            let mut v = status_only(answer);
            copy(answer, "filename", &mut v, "filename");
            Some(v)
        }
        _ => None,
    }
}

/// FirmwareStatusNotification or LogStatusNotification of ours in 1.6.
///
/// Without a requestId (a triggered Idle, nothing in progress) the core message is sent:
/// every 1.6 CSMS knows it, and which trigger asked cannot be told here.
pub(super) fn outgoing(action: v201::Action, payload: &Value) -> Outbound {
    let status = payload["status"].as_str().unwrap_or_default();
    let id = payload.get("requestId").and_then(Value::as_i64);
    let core = id.is_none_or(ours);
    let send = |action, payload| Outbound::Send { action, payload };
    match action {
        v201::Action::FirmwareStatusNotification if core => match core_firmware_status(status) {
            Some(s) => send(Action::FirmwareStatusNotification, json!({"status": s})),
            None => Outbound::Skip,
        },
        // Whitepaper 5.19: 2.0.1's message renamed, the same 14 statuses.
        v201::Action::FirmwareStatusNotification => {
            send(Action::SignedFirmwareStatusNotification, payload.clone())
        }
        v201::Action::LogStatusNotification if core => match diagnostics_status(status) {
            Some(s) => send(Action::DiagnosticsStatusNotification, json!({"status": s})),
            None => Outbound::Skip,
        },
        // Whitepaper 6.19 lacks only AcceptedCanceled: the GetLog answer that replaced the
        // upload said it already.
        v201::Action::LogStatusNotification if status == "AcceptedCanceled" => Outbound::Skip,
        v201::Action::LogStatusNotification => send(Action::LogStatusNotification, payload.clone()),
        _ => Outbound::Skip,
    }
}

/// A 2.0.1 FirmwareStatusEnum in 1.6 (section 7.25): the 1.6 state the station is still
/// in, so that a triggered notification says something (a repeated state is harmless);
/// None before the download starts, where 1.6 has only Idle, which is for triggers alone.
fn core_firmware_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "Downloading" | "DownloadPaused" => "Downloading",
        "Downloaded" | "SignatureVerified" | "InstallScheduled" => "Downloaded",
        "DownloadFailed" => "DownloadFailed",
        "Idle" => "Idle",
        "Installing" | "InstallRebooting" => "Installing",
        "Installed" => "Installed",
        // The update ended without an install: the nearest failure 1.6 has.
        "InstallationFailed" | "InstallVerificationFailed" | "InvalidSignature" => {
            "InstallationFailed"
        }
        // DownloadScheduled
        _ => return None,
    })
}

/// A 2.0.1 UploadLogStatusEnum in 1.6 (section 7.24); None: not reported.
fn diagnostics_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "Idle" => "Idle",
        "Uploaded" => "Uploaded",
        "Uploading" => "Uploading",
        "UploadFailure" | "BadMessage" | "PermissionDenied" | "NotSupportedOperation" => {
            "UploadFailed"
        }
        // AcceptedCanceled: a new GetDiagnostics replaced the upload; its Uploading follows.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{answered, call, outgoing, response, statuses_pass};
    use super::*;
    use v201::Action as A;

    const ALL_FIRMWARE_STATUSES: [&str; 14] = [
        "Downloaded",
        "DownloadFailed",
        "Downloading",
        "DownloadScheduled",
        "DownloadPaused",
        "Idle",
        "InstallationFailed",
        "Installing",
        "Installed",
        "InstallRebooting",
        "InstallScheduled",
        "InstallVerificationFailed",
        "InvalidSignature",
        "SignatureVerified",
    ];

    const ALL_LOG_STATUSES: [&str; 8] = [
        "BadMessage",
        "Idle",
        "NotSupportedOperation",
        "PermissionDenied",
        "Uploaded",
        "UploadFailure",
        "Uploading",
        "AcceptedCanceled",
    ];

    #[test]
    fn update_firmware_gets_a_reserved_request_id() {
        let req = json!({
            "location": "https://fw.example.com/fw-2.bin",
            "retrieveDate": "2026-12-06T21:00:00Z",
            "retries": 2,
            "retryInterval": 30,
        });
        let v = call(Action::UpdateFirmware, req.clone(), A::UpdateFirmware);
        let id = v["requestId"].as_i64().unwrap();
        assert!(ours(id) && id >= i64::from(i32::MIN), "{id}");
        assert_eq!(
            v["firmware"],
            json!({
                "location": "https://fw.example.com/fw-2.bin",
                "retrieveDateTime": "2026-12-06T21:00:00Z",
            })
        );
        assert_eq!(
            (v["retries"].clone(), v["retryInterval"].clone()),
            (json!(2), json!(30))
        );
        // Unsigned: no signature nor signingCertificate.
        assert!(v["firmware"].get("signature").is_none());
        // The same request, the same id; another request, another id.
        let again = call(Action::UpdateFirmware, req, A::UpdateFirmware);
        assert_eq!(again["requestId"], id);
        let other = call(
            Action::UpdateFirmware,
            json!({"location": "https://fw.example.com/fw-3.bin", "retrieveDate": "2026-12-06T21:00:00Z"}),
            A::UpdateFirmware,
        );
        assert_ne!(other["requestId"], id);
        assert!(other.get("retries").is_none());
    }

    #[test]
    fn update_firmware_answers_are_empty() {
        let req =
            json!({"location": "https://x.example/f", "retrieveDate": "2026-12-06T21:00:00Z"});
        for status in [
            "Accepted",
            "Rejected",
            "AcceptedCanceled",
            "InvalidCertificate",
            "RevokedCertificate",
        ] {
            let out = response(
                Action::UpdateFirmware,
                &req,
                A::UpdateFirmware,
                json!({"status": status, "statusInfo": {"reasonCode": "X"}}),
            );
            assert_eq!(out, json!({}));
        }
        // A location the 2.0.1 block could not take: not done, silently.
        let long = format!("https://x.example/{}", "a".repeat(600));
        let out = answered(
            Action::UpdateFirmware,
            json!({"location": long, "retrieveDate": "2026-12-06T21:00:00Z"}),
        );
        assert_eq!(out, json!({}));
    }

    #[test]
    fn signed_update_firmware_keeps_the_csms_request_id() {
        let req = json!({
            "requestId": 17,
            "retries": 1,
            "firmware": {
                "location": "https://fw.example.com/fw.bin",
                "retrieveDateTime": "2026-12-06T21:00:00Z",
                "installDateTime": "2026-12-06T22:00:00Z",
                "signingCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                "signature": "c2lnbmF0dXJl",
            },
        });
        let v = call(Action::SignedUpdateFirmware, req.clone(), A::UpdateFirmware);
        assert_eq!(v, req);
        statuses_pass(
            Action::SignedUpdateFirmware,
            &req,
            A::UpdateFirmware,
            &[
                "Accepted",
                "Rejected",
                "AcceptedCanceled",
                "InvalidCertificate",
                "RevokedCertificate",
            ],
        );
        // A negative requestId is in our range: refused.
        let mut neg = req.clone();
        neg["requestId"] = json!(-5);
        assert_eq!(
            answered(Action::SignedUpdateFirmware, neg),
            json!({"status": "Rejected"})
        );
        let mut zero = req;
        zero["requestId"] = json!(0);
        call(Action::SignedUpdateFirmware, zero, A::UpdateFirmware);
    }

    #[test]
    fn firmware_status_from_update_firmware_is_the_core_message() {
        let expected = [
            ("Downloaded", Some("Downloaded")),
            ("DownloadFailed", Some("DownloadFailed")),
            ("Downloading", Some("Downloading")),
            ("DownloadScheduled", None),
            ("DownloadPaused", Some("Downloading")),
            ("Idle", Some("Idle")),
            ("InstallationFailed", Some("InstallationFailed")),
            ("Installing", Some("Installing")),
            ("Installed", Some("Installed")),
            ("InstallRebooting", Some("Installing")),
            ("InstallScheduled", Some("Downloaded")),
            ("InstallVerificationFailed", Some("InstallationFailed")),
            ("InvalidSignature", Some("InstallationFailed")),
            ("SignatureVerified", Some("Downloaded")),
        ];
        assert_eq!(expected.len(), ALL_FIRMWARE_STATUSES.len());
        for (status, core) in expected {
            let out = outgoing(
                A::FirmwareStatusNotification,
                json!({"status": status, "requestId": -1_234_567}),
            );
            let want = core.map(|s| (Action::FirmwareStatusNotification, json!({"status": s})));
            assert_eq!(out, want, "{status}");
        }
        // Triggered with nothing in progress: the core message too.
        assert_eq!(
            outgoing(A::FirmwareStatusNotification, json!({"status": "Idle"})),
            Some((
                Action::FirmwareStatusNotification,
                json!({"status": "Idle"})
            ))
        );
    }

    #[test]
    fn firmware_status_from_signed_update_is_the_whitepaper_message() {
        for status in ALL_FIRMWARE_STATUSES {
            for id in [0, 17, i64::from(i32::MAX)] {
                let payload = json!({"status": status, "requestId": id});
                assert_eq!(
                    outgoing(A::FirmwareStatusNotification, payload.clone()),
                    Some((Action::SignedFirmwareStatusNotification, payload))
                );
            }
        }
    }

    #[test]
    fn get_diagnostics_is_a_diagnostics_log() {
        let req = json!({
            "location": "ftp://user:pw@logs.example.com/up",
            "retries": 3,
            "retryInterval": 60,
            "startTime": "2026-12-01T00:00:00Z",
            "stopTime": "2026-12-06T00:00:00Z",
        });
        let v = call(Action::GetDiagnostics, req.clone(), A::GetLog);
        assert!(ours(v["requestId"].as_i64().unwrap()));
        assert_eq!(v["logType"], "DiagnosticsLog");
        assert_eq!(
            v["log"],
            json!({
                "remoteLocation": "ftp://user:pw@logs.example.com/up",
                "oldestTimestamp": "2026-12-01T00:00:00Z",
                "latestTimestamp": "2026-12-06T00:00:00Z",
            })
        );
        assert_eq!(
            (v["retries"].clone(), v["retryInterval"].clone()),
            (json!(3), json!(60))
        );
        let minimal = call(
            Action::GetDiagnostics,
            json!({"location": "https://logs.example.com/up"}),
            A::GetLog,
        );
        assert_eq!(
            minimal["log"],
            json!({"remoteLocation": "https://logs.example.com/up"})
        );

        let name = "CS1_DiagnosticsLog_20261206T204300Z.log";
        for (status, file) in [
            ("Accepted", Some(name)),
            ("AcceptedCanceled", Some(name)),
            ("Rejected", None),
        ] {
            let mut a = json!({"status": status, "filename": name});
            if status == "Rejected" {
                a = json!({"status": status, "statusInfo": {"reasonCode": "UnsupportedRequest"}});
            }
            let out = response(Action::GetDiagnostics, &req, A::GetLog, a);
            let want = file.map_or(json!({}), |f| json!({ "fileName": f }));
            assert_eq!(out, want, "{status}");
        }
        let long = format!("https://x.example/{}", "a".repeat(600));
        assert_eq!(
            answered(Action::GetDiagnostics, json!({"location": long})),
            json!({})
        );
    }

    #[test]
    fn get_log_keeps_the_csms_request_id() {
        let req = json!({
            "logType": "SecurityLog",
            "requestId": 9,
            "retries": 1,
            "log": {"remoteLocation": "https://logs.example.com/", "oldestTimestamp": "2026-12-01T00:00:00Z"},
        });
        assert_eq!(call(Action::GetLog, req.clone(), A::GetLog), req);
        for status in ["Accepted", "Rejected", "AcceptedCanceled"] {
            let out = response(
                Action::GetLog,
                &req,
                A::GetLog,
                json!({"status": status, "filename": "f.log", "statusInfo": {"reasonCode": "X"}}),
            );
            assert_eq!(out, json!({"status": status, "filename": "f.log"}));
        }
        let out = response(
            Action::GetLog,
            &req,
            A::GetLog,
            json!({"status": "Rejected"}),
        );
        assert_eq!(out, json!({"status": "Rejected"}));
        let mut neg = req;
        neg["requestId"] = json!(-1);
        assert_eq!(answered(Action::GetLog, neg), json!({"status": "Rejected"}));
    }

    #[test]
    fn log_status_by_origin() {
        let core = [
            ("BadMessage", Some("UploadFailed")),
            ("Idle", Some("Idle")),
            ("NotSupportedOperation", Some("UploadFailed")),
            ("PermissionDenied", Some("UploadFailed")),
            ("Uploaded", Some("Uploaded")),
            ("UploadFailure", Some("UploadFailed")),
            ("Uploading", Some("Uploading")),
            ("AcceptedCanceled", None),
        ];
        assert_eq!(core.len(), ALL_LOG_STATUSES.len());
        for (status, want) in core {
            let out = outgoing(
                A::LogStatusNotification,
                json!({"status": status, "requestId": -77}),
            );
            let want = want.map(|s| (Action::DiagnosticsStatusNotification, json!({"status": s})));
            assert_eq!(out, want, "{status}");
        }
        for status in ALL_LOG_STATUSES {
            let payload = json!({"status": status, "requestId": 9});
            let out = outgoing(A::LogStatusNotification, payload.clone());
            if status == "AcceptedCanceled" {
                assert_eq!(out, None);
            } else {
                assert_eq!(out, Some((Action::LogStatusNotification, payload)));
            }
        }
        assert_eq!(
            outgoing(A::LogStatusNotification, json!({"status": "Idle"})),
            Some((
                Action::DiagnosticsStatusNotification,
                json!({"status": "Idle"})
            ))
        );
    }

    #[test]
    fn our_ids_stay_in_the_reserved_range() {
        for p in [json!({}), json!({"a": 1}), json!("x".repeat(1000))] {
            let id = our_request_id(&p);
            assert!((i64::from(i32::MIN)..0).contains(&id), "{id}");
        }
        assert!(!ours(0) && !ours(1) && ours(-1));
    }
}
