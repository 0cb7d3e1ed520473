//! Arbitrary bytes as a certificate (chain) from the CSMS, or as the subject of the station's
//! CSR: PEM (rustls-pki-types after our re-layout) and DER (x509-cert) parsing, the
//! CertificateHashData computation, chain verification against a fixed root and the PKCS#10
//! writer must not panic; a parsed certificate must parse again to the same fields from its
//! own DER, PEM must round-trip (also as one line, as CSMSs send it in JSON), and a CSR must
//! read back as what was asked (InstallCertificate, CertificateSigned, UpdateFirmware's
//! signingCertificate and signature, SignCertificate).
#![no_main]

use ocpp_agent::ocpp::v201::HashAlgorithmEnum;
use ocpp_agent::ocpp::x509;
use std::sync::OnceLock;
use x509_cert::der::{Decode, Encode};

/// A real root (P-256), so that chains from the input can reach a trust anchor.
const ROOT_PEM: &str = include_str!("../seeds/certificates/root.pem");
/// 2030-01-01T00:00:00Z: inside the validity of the seeds (made 2026-12-02, 19 years).
const NOW_MS: i64 = 1_893_456_000_000;
/// An input starting with this asks for a CSR: `CSR:<organization>\n<common name>`. Gated,
/// because a CSR costs an ECDSA signature and its check (about 0.1 ms).
const CSR_PREFIX: &[u8] = b"CSR:";

fn root() -> &'static x509::Certificate {
    static ROOT: OnceLock<x509::Certificate> = OnceLock::new();
    ROOT.get_or_init(|| x509::parse_pem_certificates(ROOT_PEM).unwrap().remove(0))
}

/// The station's key, made once (PKCS#8, SubjectPublicKeyInfo).
fn key() -> &'static (Vec<u8>, Vec<u8>) {
    static KEY: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    KEY.get_or_init(|| x509::generate_key(&ring::rand::SystemRandom::new()).unwrap())
}

fn exercise(cert: &x509::Certificate, chain: &[x509::Certificate]) {
    let again = x509::parse_certificate(&cert.der).expect("a parsed certificate parses again");
    assert_eq!(&again, cert, "parsing is deterministic");
    let from_pem = x509::parse_pem_certificates(&cert.to_pem()).expect("its PEM parses");
    assert_eq!(from_pem, [cert.clone()]);
    for alg in [
        HashAlgorithmEnum::Sha256,
        HashAlgorithmEnum::Sha384,
        HashAlgorithmEnum::Sha512,
    ] {
        let hash = x509::hash_data(cert, Some(root()), alg);
        assert!(x509::hash_data_matches(&hash, &hash));
    }
    let _ = (cert.serial_hex(), cert.subject(), cert.issuer());
    for usage in [
        x509::Usage::ClientAuth,
        x509::Usage::CodeSigning,
        x509::Usage::Any,
    ] {
        let _ = x509::verify_chain(chain, std::slice::from_ref(root()), NOW_MS, usage);
    }
}

/// Blocks that decoded encode to PEM that decodes to the same, in 64-column lines and all on
/// one line.
fn pem_round_trip(label: &str, blocks: &[Vec<u8>]) {
    for der in blocks {
        let pem = x509::to_pem(label, der);
        assert_eq!(x509::pem_blocks(&pem, label).unwrap(), [der.clone()]);
        let one_line: String = pem.lines().collect();
        assert_eq!(x509::pem_blocks(&one_line, label).unwrap(), [der.clone()]);
    }
}

/// SignCertificate's CSR for a subject from the input: refused only for the documented
/// reasons, otherwise it reads back (x509-cert) with that subject, the key and a signature
/// that verifies.
fn csr(text: &str) {
    let (organization, common_name) = text.split_once('\n').unwrap_or(("", text));
    let (pkcs8, spki) = key();
    let rng = ring::rand::SystemRandom::new();
    let built = x509::build_csr(organization, common_name, spki, &|m| {
        x509::sign_with(pkcs8, m, &rng)
    });
    let length_ok =
        (1..=64).contains(&common_name.chars().count()) && organization.chars().count() <= 64;
    let Ok(der) = built else {
        assert!(!length_ok, "{organization:?} {common_name:?}: {built:?}");
        return;
    };
    assert!(length_ok);
    let req = x509_cert::request::CertReq::from_der(&der).expect("our CSR reads back");
    assert_eq!(req.to_der().unwrap(), der, "canonical DER");
    let subject = x509::name_to_string(&req.info.subject.to_der().unwrap());
    let expected = match organization {
        "" => format!("CN={common_name}"),
        o => format!("O={o}, CN={common_name}"),
    };
    assert_eq!(subject, expected);
    assert_eq!(&req.info.public_key.to_der().unwrap(), spki);
    let point = &spki[spki.len() - 65..];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(
            &req.info.to_der().unwrap(),
            req.signature.as_bytes().unwrap(),
        )
        .expect("the CSR's signature verifies");
    pem_round_trip("CERTIFICATE REQUEST", &[der]);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(subject) = data.strip_prefix(CSR_PREFIX) {
        if let Ok(text) = std::str::from_utf8(subject) {
            csr(text);
        }
        return;
    }
    // As DER (InstallCertificate's PEM decoded) ...
    if let Ok(cert) = x509::parse_certificate(data) {
        exercise(&cert, std::slice::from_ref(&cert));
    }
    // ... and as the PEM text OCPP sends (a CertificateSigned chain, leaf first).
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(chain) = x509::parse_pem_certificates(text) {
            for cert in &chain {
                exercise(cert, &chain);
            }
        }
        for label in ["CERTIFICATE", "CERTIFICATE REQUEST", "PRIVATE KEY"] {
            if let Ok(blocks) = x509::pem_blocks(text, label) {
                pem_round_trip(label, &blocks);
            }
        }
        // UpdateFirmware's signature
        if let Ok(bytes) = x509::base64_decode(text) {
            if !bytes.is_empty() {
                pem_round_trip("CERTIFICATE", &[bytes]);
            }
        }
    }
});
