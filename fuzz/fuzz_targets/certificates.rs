//! Arbitrary bytes as a certificate (chain) from the CSMS: PEM and DER parsing, the
//! CertificateHashData computation and chain verification against a fixed root must not
//! panic, and a parsed certificate must parse again to the same fields from its own DER
//! (InstallCertificate, CertificateSigned, UpdateFirmware's signingCertificate).
#![no_main]

use ocpp_agent::ocpp::v201::HashAlgorithmEnum;
use ocpp_agent::ocpp::x509;
use std::sync::OnceLock;

/// A real root (P-256), so that chains from the input can reach a trust anchor.
const ROOT_PEM: &str = include_str!("../seeds/certificates/root.pem");
/// 2030-01-01T00:00:00Z: inside the validity of the seeds (made 2026-12-02, 19 years).
const NOW_MS: i64 = 1_893_456_000_000;

fn root() -> &'static x509::Certificate {
    static ROOT: OnceLock<x509::Certificate> = OnceLock::new();
    ROOT.get_or_init(|| x509::parse_pem_certificates(ROOT_PEM).unwrap().remove(0))
}

fn exercise(cert: &x509::Certificate, chain: &[x509::Certificate]) {
    let again = x509::parse_certificate(&cert.der).expect("a parsed certificate parses again");
    assert_eq!(&again, cert, "parsing is deterministic");
    for alg in [
        HashAlgorithmEnum::Sha256,
        HashAlgorithmEnum::Sha384,
        HashAlgorithmEnum::Sha512,
    ] {
        let hash = x509::hash_data(cert, Some(root()), alg);
        assert!(x509::hash_data_matches(&hash, &hash));
    }
    let _ = (cert.serial_hex(), cert.subject(), cert.issuer(), cert.to_pem());
    for usage in [
        x509::Usage::ClientAuth,
        x509::Usage::CodeSigning,
        x509::Usage::Any,
    ] {
        let _ = x509::verify_chain(chain, std::slice::from_ref(root()), NOW_MS, usage);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // As DER (InstallCertificate's PEM decoded) ...
    if let Ok(cert) = x509::parse_certificate(data) {
        exercise(&cert, std::slice::from_ref(&cert));
    }
    // ... and as the PEM text OCPP sends.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(chain) = x509::parse_pem_certificates(text) {
            for cert in &chain {
                exercise(cert, &chain);
            }
        }
        let _ = x509::pem_blocks(text, "CERTIFICATE");
    }
});
