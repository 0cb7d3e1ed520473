//! Firmware update in the core (L01 signed, L02 unsigned): every state and its
//! FirmwareStatusNotification, the checks of the signing certificate against the installed
//! manufacturer roots, a real signature check over the file, retries, waiting for
//! transactions, and the activation across a restart. The shell's work (download, install)
//! is played by the test; certificates and signatures are made by openssl.

mod support;

use ocpp_agent::ocpp::firmware::FirmwareStep;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::station::StationConfig;
use ocpp_agent::ocpp::station::{Input, Output};
use ocpp_agent::ocpp::testkit::{Harness, default_config};
use ocpp_agent::ocpp::x509;
use serde_json::{Value, json};
use support::pki::{Ca, Issued, sign_file};

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A manufacturer CA, a signing certificate and a signed image.
struct Signed {
    _dir: tempfile::TempDir,
    ca: Ca,
    signer: Issued,
    image: Vec<u8>,
    signature: Vec<u8>,
    signature_b64: String,
}

fn signed_image() -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "manufacturer");
    let signer = ca.issue_firmware_signer("fw-signer");
    let image: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.path().join("image.bin");
    std::fs::write(&path, &image).unwrap();
    let (signature, signature_b64) = sign_file(&signer.key, &path);
    Signed {
        _dir: dir,
        ca,
        signer,
        image,
        signature,
        signature_b64,
    }
}

fn config(installer: bool, activation: bool, allow_unsigned: bool) -> StationConfig {
    let mut config = default_config();
    config.firmware.installer = installer;
    config.firmware.activation = activation;
    config.firmware.allow_unsigned = allow_unsigned;
    config
}

/// A station whose CSMS gives the real time (the test certificates are valid now).
fn station(config: StationConfig) -> Harness {
    Harness::new_with(config, |csms| csms.epoch_ms = real_now_ms())
}

fn install_manufacturer_root(h: &mut Harness, ca: &Ca) {
    let pem = std::fs::read_to_string(&ca.cert).unwrap();
    let r = result(h.call(
        "InstallCertificate",
        json!({"certificateType": "ManufacturerRootCertificate", "certificate": pem}),
    ));
    assert_eq!(r["status"], "Accepted", "{r}");
}

fn update(h: &mut Harness, request_id: i64, s: &Signed, extra: Value) -> Value {
    let mut firmware = json!({
        "location": "https://fw.example.com/image.bin",
        "retrieveDateTime": "2020-01-01T00:00:00Z",
        "signingCertificate": std::fs::read_to_string(&s.signer.cert).unwrap(),
        "signature": s.signature_b64,
    });
    let mut payload = json!({"requestId": request_id, "firmware": firmware.clone()});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "firmware" {
                for (fk, fv) in v.as_object().unwrap() {
                    if fv.is_null() {
                        firmware.as_object_mut().unwrap().remove(fk);
                    } else {
                        firmware[fk] = fv.clone();
                    }
                }
                payload["firmware"] = firmware.clone();
            } else {
                payload[k] = v;
            }
        }
    }
    result(h.call("UpdateFirmware", payload))
}

/// The firmware statuses sent, with their requestIds.
fn statuses(h: &Harness) -> Vec<(String, Option<i64>)> {
    h.csms
        .of("FirmwareStatusNotification")
        .iter()
        .map(|r| {
            (
                r.payload["status"].as_str().unwrap().to_owned(),
                r.payload["requestId"].as_i64(),
            )
        })
        .collect()
}

fn names(list: &[(String, Option<i64>)]) -> Vec<&str> {
    list.iter().map(|(s, _)| s.as_str()).collect()
}

fn security_events(h: &Harness) -> Vec<String> {
    h.csms
        .of("SecurityEventNotification")
        .iter()
        .map(|r| r.payload["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Takes the firmware outputs the station produced since the last call.
fn take(h: &mut Harness) -> Vec<Output> {
    std::mem::take(&mut h.firmware)
}

fn answer(h: &mut Harness, request_id: i64, step: FirmwareStep, result: Result<(), String>) {
    h.station
        .handle_input(
            h.now,
            Input::Firmware {
                request_id,
                step,
                result,
            },
        )
        .unwrap();
    h.settle();
}

/// Plays the shell's verification for real: the signature over the bytes.
fn verify(h: &mut Harness, file: &[u8]) {
    let outputs = take(h);
    let Some(Output::FirmwareVerify {
        request_id,
        signer_der,
        signature,
    }) = outputs.last().cloned()
    else {
        panic!("expected FirmwareVerify, got {outputs:?}");
    };
    let signer = x509::parse_certificate(&signer_der).unwrap();
    let result = x509::verify_file_signature(&signer, file, &signature).map_err(|e| e.to_string());
    answer(h, request_id, FirmwareStep::Verify, result);
}

/// UpdateFirmware accepted, the image downloaded and its signature verified.
fn accept_and_verify(h: &mut Harness, request_id: i64, s: &Signed) {
    assert_eq!(update(h, request_id, s, json!({}))["status"], "Accepted");
    take(h);
    answer(h, request_id, FirmwareStep::Download, Ok(()));
    verify(h, &s.image);
}

#[test]
fn a_signed_update_goes_through_every_state_and_reports_each() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    let r = update(&mut h, 7, &s, json!({}));
    assert_eq!(r["status"], "Accepted", "{r}");
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDownload {
            request_id: 7,
            location: "https://fw.example.com/image.bin".into()
        }]
    );
    answer(&mut h, 7, FirmwareStep::Download, Ok(()));
    let outputs = h.firmware.clone();
    let Some(Output::FirmwareVerify { signature, .. }) = outputs.last() else {
        panic!("{outputs:?}");
    };
    assert_eq!(
        signature, &s.signature,
        "the signature is handed over decoded"
    );
    verify(&mut h, &s.image);
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareInstall { request_id: 7 }]
    );
    answer(&mut h, 7, FirmwareStep::Install, Ok(()));
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDiscard { request_id: 7 }]
    );

    // L01.FR.01, L01.FR.10: each state, each with the requestId.
    let sent = statuses(&h);
    assert_eq!(
        names(&sent),
        [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "Installed"
        ]
    );
    assert!(sent.iter().all(|(_, id)| *id == Some(7)), "{sent:?}");
    // L01.FR.31
    assert!(security_events(&h).contains(&"FirmwareUpdated".to_string()));
    // L01.FR.25: after Installed, a triggered status is Idle.
    let r = result(h.call(
        "TriggerMessage",
        json!({"requestedMessage": "FirmwareStatusNotification"}),
    ));
    assert_eq!(r["status"], "Accepted");
    let last = h
        .csms
        .of("FirmwareStatusNotification")
        .last()
        .unwrap()
        .payload
        .clone();
    assert_eq!(last, json!({"status": "Idle"}));
}

#[test]
fn the_signing_certificate_must_chain_to_an_installed_manufacturer_root() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    // L01.FR.21/22: no manufacturer root installed.
    let r = update(&mut h, 1, &s, json!({}));
    assert_eq!(r["status"], "InvalidCertificate", "{r}");
    assert!(take(&mut h).is_empty(), "nothing is downloaded");
    // L01.FR.02
    assert!(security_events(&h).contains(&"InvalidFirmwareSigningCertificate".to_string()));

    // A root of another manufacturer does not do either.
    let other = tempfile::tempdir().unwrap();
    let other_ca = Ca::new(other.path(), "other");
    install_manufacturer_root(&mut h, &other_ca);
    let r = update(&mut h, 2, &s, json!({}));
    assert_eq!(r["status"], "InvalidCertificate", "{r}");
    assert!(
        r["statusInfo"]["additionalInfo"]
            .as_str()
            .unwrap()
            .contains("issuer"),
        "{r}"
    );

    // A CSMS root is not a manufacturer root.
    let pem = std::fs::read_to_string(&s.ca.cert).unwrap();
    let r = result(h.call(
        "InstallCertificate",
        json!({"certificateType": "CSMSRootCertificate", "certificate": pem}),
    ));
    assert_eq!(r["status"], "Accepted");
    let r = update(&mut h, 3, &s, json!({}));
    assert_eq!(r["status"], "InvalidCertificate", "{r}");

    // A TLS client certificate of the right CA is no code signing certificate.
    install_manufacturer_root(&mut h, &s.ca);
    let client = s.ca.issue_with(
        "client",
        "/O=Test/CN=SN-0001",
        "keyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
        None,
    );
    let r = update(
        &mut h,
        4,
        &s,
        json!({"firmware": {"signingCertificate": std::fs::read_to_string(&client.cert).unwrap()}}),
    );
    assert_eq!(r["status"], "InvalidCertificate", "{r}");
    assert!(statuses(&h).is_empty());
    let r = update(&mut h, 5, &s, json!({}));
    assert_eq!(r["status"], "Accepted", "{r}");
}

#[test]
fn a_bad_signature_stops_the_update_before_installing() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    assert_eq!(update(&mut h, 9, &s, json!({}))["status"], "Accepted");
    take(&mut h);
    answer(&mut h, 9, FirmwareStep::Download, Ok(()));
    let mut tampered = s.image.clone();
    tampered[50_000] ^= 1;
    verify(&mut h, &tampered);
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDiscard { request_id: 9 }]
    );
    assert_eq!(
        names(&statuses(&h)),
        ["Downloading", "Downloaded", "InvalidSignature"]
    );
    // L01.FR.03
    assert!(security_events(&h).contains(&"InvalidFirmwareSignature".to_string()));
    // L01.FR.26: a triggered status repeats the last one.
    h.call(
        "TriggerMessage",
        json!({"requestedMessage": "FirmwareStatusNotification"}),
    );
    let last = h
        .csms
        .of("FirmwareStatusNotification")
        .last()
        .unwrap()
        .payload
        .clone();
    assert_eq!(last, json!({"status": "InvalidSignature", "requestId": 9}));
}

#[test]
fn downloads_are_retried_at_the_interval_then_fail() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    let r = update(&mut h, 3, &s, json!({"retries": 2, "retryInterval": 30}));
    assert_eq!(r["status"], "Accepted");
    let mut attempts = Vec::new();
    for attempt in 0..3 {
        let outputs = take(&mut h);
        assert!(
            matches!(
                outputs.as_slice(),
                [Output::FirmwareDownload { request_id: 3, .. }]
            ),
            "{outputs:?}"
        );
        attempts.push(h.now.as_millis());
        answer(
            &mut h,
            3,
            FirmwareStep::Download,
            Err("connection reset".into()),
        );
        if attempt < 2 {
            h.advance_secs(29);
            assert!(h.firmware.is_empty(), "not before retryInterval");
            h.advance_secs(1);
        }
    }
    assert_eq!(attempts[1] - attempts[0], 30_000);
    assert_eq!(attempts[2] - attempts[1], 30_000);
    // L01.FR.30: after the last retry, DownloadFailed.
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDiscard { request_id: 3 }]
    );
    let sent = names(&statuses(&h)).join(",");
    assert_eq!(sent, "Downloading,Downloading,Downloading,DownloadFailed");
}

#[test]
fn scheduled_download_and_install_times_are_honoured() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    let utc = |offset_s: i64| {
        ocpp_agent::ocpp::clock::UtcTime::from_unix_millis(
            h.csms.epoch_ms + h.now.as_millis() as i64 + offset_s * 1000,
        )
        .to_rfc3339()
    };
    let (retrieve, install) = (utc(600), utc(3600));
    let r = update(
        &mut h,
        4,
        &s,
        json!({"firmware": {"retrieveDateTime": retrieve, "installDateTime": install}}),
    );
    assert_eq!(r["status"], "Accepted");
    // L01.FR.13
    assert_eq!(names(&statuses(&h)), ["DownloadScheduled"]);
    h.advance_secs(599);
    assert!(take(&mut h).is_empty());
    h.advance_secs(1);
    assert!(matches!(
        take(&mut h).as_slice(),
        [Output::FirmwareDownload { .. }]
    ));
    answer(&mut h, 4, FirmwareStep::Download, Ok(()));
    verify(&mut h, &s.image);
    // L01.FR.16
    assert_eq!(
        names(&statuses(&h)),
        [
            "DownloadScheduled",
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "InstallScheduled"
        ]
    );
    assert!(take(&mut h).is_empty());
    h.advance_secs(2999);
    assert!(take(&mut h).is_empty(), "not before installDateTime");
    h.advance_secs(1);
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareInstall { request_id: 4 }]
    );
}

#[test]
fn installation_waits_for_transactions_and_idle_evses_become_unavailable() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    h.plug(1, 1, true);
    h.token(1, "DRIVER1");
    assert!(h.power_path(1), "charging");
    accept_and_verify(&mut h, 5, &s);
    // L01.FR.06: no installation while a transaction runs; L01.FR.34: InstallScheduled.
    assert!(take(&mut h).is_empty(), "installation waits");
    assert_eq!(names(&statuses(&h)).last(), Some(&"InstallScheduled"));
    // L01.FR.07: the idle EVSE 2 is Unavailable; EVSE 1 (charging) is not touched.
    let unavailable: Vec<(i64, i64)> = h
        .csms
        .of("StatusNotification")
        .iter()
        .filter(|r| r.payload["connectorStatus"] == "Unavailable")
        .map(|r| {
            (
                r.payload["evseId"].as_i64().unwrap(),
                r.payload["connectorId"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(unavailable, [(2, 1), (2, 2)]);
    // A new session on EVSE 2 is refused meanwhile.
    h.plug(2, 1, true);
    h.token(2, "DRIVER2");
    assert!(
        !h.power_path(2),
        "no charging on an EVSE waiting for firmware"
    );
    h.plug(2, 1, false);

    h.plug(1, 1, false); // the transaction ends
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareInstall { request_id: 5 }]
    );
    answer(&mut h, 5, FirmwareStep::Install, Ok(()));
    let last: Vec<String> = h
        .csms
        .of("StatusNotification")
        .iter()
        .rev()
        .take(3)
        .map(|r| r.payload["connectorStatus"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        last,
        ["Available", "Available", "Available"],
        "released after Installed"
    );
}

#[test]
fn new_sessions_may_continue_while_waiting_when_the_variable_allows_it() {
    let s = signed_image();
    let mut c = config(true, false, false);
    c.variables = ocpp_agent::ocpp::devmodel::DeviceModel::with_initial([(
        "ChargingStation.AllowNewSessionsPendingFirmwareUpdate",
        "true",
    )])
    .unwrap();
    let mut h = station(c);
    install_manufacturer_root(&mut h, &s.ca);
    h.plug(1, 1, true);
    h.token(1, "DRIVER1");
    accept_and_verify(&mut h, 6, &s);
    h.plug(2, 1, true);
    h.token(2, "DRIVER2");
    assert!(h.power_path(2), "AllowNewSessionsPendingFirmwareUpdate");
    assert!(
        !h.csms
            .of("StatusNotification")
            .iter()
            .any(|r| r.payload["connectorStatus"] == "Unavailable")
    );
}

#[test]
fn the_activation_reboots_and_the_new_firmware_reports_installed() {
    let s = signed_image();
    let mut h = station(config(true, true, false));
    install_manufacturer_root(&mut h, &s.ca);
    accept_and_verify(&mut h, 8, &s);
    take(&mut h);
    answer(&mut h, 8, FirmwareStep::Install, Ok(()));
    // L01.FR.15: InstallRebooting is sent (and answered) before the activation.
    assert_eq!(names(&statuses(&h)).last(), Some(&"InstallRebooting"));
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareActivate { request_id: 8 }]
    );

    // The activation rebooted into a new image (another firmware version).
    let mut c = config(true, true, false);
    c.identity.firmware_version = "2.0.0".into();
    h.set_config(c);
    h.power_cycle(false);
    // L01.FR.32 (a): the new firmware says Installed; L01.FR.31.
    let sent = statuses(&h);
    assert_eq!(sent.last().unwrap(), &("Installed".to_string(), Some(8)));
    assert!(security_events(&h).contains(&"FirmwareUpdated".to_string()));
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDiscard { request_id: 8 }]
    );
}

#[test]
fn an_activation_that_comes_back_with_the_old_firmware_failed_verification() {
    let s = signed_image();
    let mut h = station(config(true, true, false));
    install_manufacturer_root(&mut h, &s.ca);
    accept_and_verify(&mut h, 8, &s);
    take(&mut h);
    answer(&mut h, 8, FirmwareStep::Install, Ok(()));
    take(&mut h);
    h.power_cycle(false); // same firmware version: the old slot booted again
    // L01.FR.29
    assert_eq!(
        statuses(&h).last().unwrap(),
        &("InstallVerificationFailed".to_string(), Some(8))
    );
    assert!(!security_events(&h).contains(&"FirmwareUpdated".to_string()));
}

#[test]
fn a_restart_during_the_download_resumes_it_and_one_during_the_install_fails_it() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    update(&mut h, 11, &s, json!({}));
    take(&mut h);
    h.power_cycle(false);
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDownload {
            request_id: 11,
            location: "https://fw.example.com/image.bin".into()
        }],
        "the download goes on after a restart"
    );
    answer(&mut h, 11, FirmwareStep::Download, Ok(()));
    verify(&mut h, &s.image);
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareInstall { request_id: 11 }]
    );
    h.power_cycle(false);
    assert_eq!(
        statuses(&h).last().unwrap(),
        &("InstallationFailed".to_string(), Some(11))
    );
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareDiscard { request_id: 11 }]
    );
}

#[test]
fn refusals_name_their_reason() {
    let s = signed_image();
    // No install command configured.
    let mut h = station(config(false, false, false));
    let r = update(&mut h, 1, &s, json!({}));
    assert_eq!(r["status"], "Rejected");
    assert_eq!(r["statusInfo"]["reasonCode"], "UnsupportedRequest");

    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    let r = update(
        &mut h,
        1,
        &s,
        json!({"firmware": {"location": "sftp://fw.example.com/a.bin"}}),
    );
    assert_eq!(
        (r["status"].as_str(), r["statusInfo"]["reasonCode"].as_str()),
        (Some("Rejected"), Some("InvalidURL"))
    );
    // Unsigned firmware is refused unless configured (L02).
    let r = update(
        &mut h,
        1,
        &s,
        json!({"firmware": {"signingCertificate": null, "signature": null}}),
    );
    assert_eq!(
        (r["status"].as_str(), r["statusInfo"]["reasonCode"].as_str()),
        (Some("Rejected"), Some("MissingParam"))
    );
    let r = update(&mut h, 1, &s, json!({"firmware": {"signature": null}}));
    assert_eq!(r["statusInfo"]["reasonCode"], "MissingParam");
    let r = update(
        &mut h,
        1,
        &s,
        json!({"firmware": {"signature": "not base64!"}}),
    );
    assert_eq!(r["statusInfo"]["reasonCode"], "InvalidValue");
    assert!(take(&mut h).is_empty());
    assert!(statuses(&h).is_empty());

    // L01.FR.24: a new request cancels the one in progress.
    assert_eq!(update(&mut h, 20, &s, json!({}))["status"], "Accepted");
    take(&mut h);
    let r = update(&mut h, 21, &s, json!({}));
    assert_eq!(r["status"], "AcceptedCanceled");
    let outputs = take(&mut h);
    assert_eq!(outputs[0], Output::FirmwareDiscard { request_id: 20 });
    assert!(matches!(
        outputs[1],
        Output::FirmwareDownload { request_id: 21, .. }
    ));
    // A late answer for the cancelled job changes nothing.
    answer(&mut h, 20, FirmwareStep::Download, Ok(()));
    assert!(take(&mut h).is_empty());
    answer(&mut h, 21, FirmwareStep::Download, Ok(()));
    verify(&mut h, &s.image);
    // L01.FR.27: an installation running is not cancelled.
    let r = update(&mut h, 22, &s, json!({}));
    assert_eq!(
        (r["status"].as_str(), r["statusInfo"]["reasonCode"].as_str()),
        (Some("Rejected"), Some("FwUpdateInProgress"))
    );
    // ... nor cut by a Reset.
    let r = result(h.call("Reset", json!({"type": "Immediate"})));
    assert_eq!(
        (r["status"].as_str(), r["statusInfo"]["reasonCode"].as_str()),
        (Some("Rejected"), Some("FwUpdateInProgress"))
    );
    assert_eq!(h.reboots, 0);
}

#[test]
fn unsigned_firmware_when_allowed_skips_the_signature_states() {
    let s = signed_image();
    let mut h = station(config(true, false, true));
    let r = update(
        &mut h,
        2,
        &s,
        json!({"firmware": {"signingCertificate": null, "signature": null}}),
    );
    assert_eq!(r["status"], "Accepted");
    take(&mut h);
    answer(&mut h, 2, FirmwareStep::Download, Ok(()));
    assert_eq!(
        take(&mut h),
        vec![Output::FirmwareInstall { request_id: 2 }]
    );
    answer(
        &mut h,
        2,
        FirmwareStep::Install,
        Err("exit status 1".into()),
    );
    assert_eq!(
        names(&statuses(&h)),
        [
            "Downloading",
            "Downloaded",
            "Installing",
            "InstallationFailed"
        ]
    );
}

#[test]
fn a_new_update_releases_the_evses_the_replaced_one_held() {
    let s = signed_image();
    let mut h = station(config(true, false, false));
    install_manufacturer_root(&mut h, &s.ca);
    h.plug(1, 1, true);
    h.token(1, "DRIVER1");
    accept_and_verify(&mut h, 5, &s);
    let last_of_evse2 = |h: &Harness| {
        h.csms
            .statuses()
            .into_iter()
            .rev()
            .find(|(e, c, _)| (*e, *c) == (2, 1))
            .map(|(_, _, status)| status)
    };
    assert_eq!(last_of_evse2(&h).as_deref(), Some("Unavailable"));
    // L01.FR.24: the new request replaces the waiting one; its download has not begun, so
    // nothing holds the idle EVSEs any more.
    assert_eq!(
        update(&mut h, 6, &s, json!({}))["status"],
        "AcceptedCanceled"
    );
    assert_eq!(last_of_evse2(&h).as_deref(), Some("Available"));
}
