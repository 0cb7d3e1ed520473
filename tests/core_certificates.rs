//! The station certificate's life in the core (A02/A03): a CSR that gets no CertificateSigned
//! is sent again with a doubling wait, and a certificate close to its end is renewed.

mod support;

use ocpp_agent::ocpp::certificates::CertificateStore;
use ocpp_agent::ocpp::testkit::{Harness, config_with};
use serde_json::json;
use support::pki::Ca;

fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The times (virtual seconds) at which SignCertificate went out.
fn sign_times(h: &Harness) -> Vec<u64> {
    h.csms
        .of("SignCertificate")
        .iter()
        .map(|r| r.at.as_millis() / 1000)
        .collect()
}

#[test]
fn a_csr_without_an_answer_is_sent_again_with_a_doubling_wait() {
    let mut h = Harness::new(config_with(&[
        ("SecurityCtrlr.CertSigningWaitMinimum", "10"),
        ("SecurityCtrlr.CertSigningRepeatTimes", "2"),
    ]));
    let start = h.now.as_millis() / 1000;
    h.call(
        "TriggerMessage",
        json!({"requestedMessage": "SignChargingStationCertificate"}),
    );
    h.advance_secs(3600);
    // A02.FR.17/18: 10 s, then 20 s more; CertSigningRepeatTimes = 2 resends, then no more.
    let offsets: Vec<u64> = sign_times(&h).iter().map(|t| t - start).collect();
    assert_eq!(offsets, [0, 10, 30]);
    // The same CSR each time (the key stays on the station, one key per update).
    let csrs: Vec<String> = h
        .csms
        .of("SignCertificate")
        .iter()
        .map(|r| r.payload["csr"].as_str().unwrap().to_owned())
        .collect();
    assert!(csrs.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(h.csr_keys.len(), 1);
}

#[test]
fn a_station_certificate_close_to_its_end_is_renewed() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "cso");
    // Valid for 30 days from (almost) now: inside the month before expiry (A03.FR.02).
    let station = ca.issue("station", "/O=Test CSO/CN=SN-0001", None, None);
    let chain = std::fs::read_to_string(&station.cert).unwrap();
    let mut config = config_with(&[("SecurityCtrlr.OrganizationName", "Test CSO")]);
    config.certificates = CertificateStore::load(&[], "", Some(&chain));
    let mut h = Harness::new_with(config, |csms| csms.epoch_ms = real_now_ms());
    assert!(sign_times(&h).is_empty(), "not at once");
    // The first validity check comes five minutes after start-up.
    h.advance_secs(301);
    let sign = h.csms.of("SignCertificate");
    assert_eq!(sign.len(), 1, "renewed by a key update");
    assert_eq!(
        sign[0].payload["certificateType"],
        "ChargingStationCertificate"
    );

    // A certificate with more than a month left is not touched.
    let long = ca.issue(
        "long",
        "/O=Test CSO/CN=SN-0001",
        None,
        Some(("250101000000Z", "491231000000Z")),
    );
    let mut config = config_with(&[("SecurityCtrlr.OrganizationName", "Test CSO")]);
    let chain = std::fs::read_to_string(&long.cert).unwrap();
    config.certificates = CertificateStore::load(&[], "", Some(&chain));
    let mut h = Harness::new_with(config, |csms| csms.epoch_ms = real_now_ms());
    h.advance_secs(3 * 24 * 3600);
    assert!(sign_times(&h).is_empty());
}

#[test]
fn the_station_certificate_is_never_deleted_even_when_its_chain_is_the_leaf_alone() {
    use ocpp_agent::ocpp::rpc::Frame;
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "cso");
    let station = ca.issue("station", "/O=Test CSO/CN=SN-0001", None, None);
    let leaf = std::fs::read_to_string(&station.cert).unwrap();
    let root = std::fs::read_to_string(&ca.cert).unwrap();
    let hash = support::pki::openssl_hash_data(&station.cert, &ca.cert);
    let root_hash = support::pki::openssl_hash_data(&ca.cert, &ca.cert);
    let delete = |h: &mut Harness, hash: &serde_json::Value| -> String {
        match h.call("DeleteCertificate", json!({"certificateHashData": hash})) {
            Frame::CallResult { payload, .. } => payload["status"].as_str().unwrap().to_owned(),
            other => panic!("{other:?}"),
        }
    };
    // The chain holds the leaf alone; its issuer is an installed root (M04.FR.06: Failed).
    let mut config = config_with(&[]);
    config.certificates = CertificateStore::load(
        &[("ManufacturerRootCertificate".into(), root.clone())],
        "",
        Some(&leaf),
    );
    let mut h = Harness::new_with(config, |csms| csms.epoch_ms = real_now_ms());
    assert_eq!(delete(&mut h, &hash), "Failed");
    // The root above it may go; afterwards the leaf is still recognised (name hash and serial).
    assert_eq!(delete(&mut h, &root_hash), "Accepted");
    assert_eq!(delete(&mut h, &hash), "Failed");
    // A certificate that is not installed at all.
    let other = ca.issue("other", "/O=Test CSO/CN=SN-0002", None, None);
    assert_eq!(
        delete(
            &mut h,
            &support::pki::openssl_hash_data(&other.cert, &ca.cert)
        ),
        "NotFound"
    );

    // The whole chain stored, issuer found in it.
    let mut config = config_with(&[]);
    config.certificates = CertificateStore::load(&[], "", Some(&format!("{leaf}{root}")));
    let mut h = Harness::new_with(config, |csms| csms.epoch_ms = real_now_ms());
    assert_eq!(delete(&mut h, &hash), "Failed");
}
