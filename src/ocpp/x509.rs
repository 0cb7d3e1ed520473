//! X.509 certificates for OCPP 2.0.1 security: the charging station's own key and certificate
//! (A02/A03 SignCertificate/CertificateSigned) and the installed CA certificates (M03
//! GetInstalledCertificateIds, M04 DeleteCertificate, M05 InstallCertificate), plus firmware
//! signing certificates (L01).
//!
//! Pure, like the rest of the core: no IO, no clock, no OS randomness. Time comes in as UTC
//! milliseconds since the epoch; randomness (key generation, ECDSA signing) as a
//! `&dyn ring::rand::SecureRandom`, which the shell creates (`ring::rand::SystemRandom::new()`).
//!
//! * PEM: [`pem_blocks`] (decoded by `rustls-pki-types`), [`to_pem`],
//!   [`parse_pem_certificates`]. OCPP transmits certificates and CSRs as PEM (A00.FR.507,
//!   A02.FR.03).
//! * Certificates: [`parse_certificate`] into a [`Certificate`] with the fields OCPP needs,
//!   read by RustCrypto's `x509-cert`/`der`.
//! * OCPP `CertificateHashDataType`: [`hash_data`], [`hash_data_matches`].
//! * Chain verification: [`verify_chain`], by rustls-webpki (the verifier of the agent's TLS
//!   connections) with the time passed in, plus the root's validity and issuers' keyCertSign;
//!   the field reader only names the certificate an error concerns.
//! * Firmware signatures: [`verify_file_signature`] (`ring`).
//! * Key and CSR: [`generate_key`] (ECDSA P-256, PKCS#8, `ring`), [`key_spki`], [`sign_with`],
//!   [`build_csr`] (PKCS#10, RFC 2986, encoded by `x509-cert`).
//!
//! Reading is strict DER (`der` refuses BER: indefinite or non-minimal lengths, trailing data;
//! on top, a certificate must encode back to exactly its bytes, and the inner and outer
//! signature algorithms must be equal) and never panics on bad input; errors say what was
//! wrong in words ([`X509Error`]'s `Display`), not as a dump of the DER tree.

use crate::ocpp::clock::civil_from_days;
use crate::ocpp::v201::{CertificateHashData, HashAlgorithmEnum};
use ring::rand::SecureRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use std::fmt;
use x509_cert::der::asn1::{AnyRef, BitString, ObjectIdentifier as Oid, SetOfVec, UintRef};
use x509_cert::der::{self, Any, Decode, Encode, Tag, Tagged};

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a certificate, key, CSR or chain was refused. `Display` gives a one-line explanation
/// that names the certificate by its subject (e.g. `O=Test CSO, CN=CS001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X509Error {
    /// The text is not usable PEM: no block with the wanted label, a block without its END
    /// line, bad base64, or PEM headers (e.g. an encrypted key).
    Pem(String),
    /// The bytes are not a well-formed DER structure of the expected kind; says which part.
    Malformed(String),
    /// Well-formed, but uses something this module does not handle: a signature algorithm,
    /// key type or curve, or a critical extension it cannot process.
    Unsupported(String),
    /// [`verify_chain`] got an empty chain.
    EmptyChain,
    /// The certificate's validity period ended before the time of the check.
    Expired { subject: String, not_after_ms: i64 },
    /// The certificate's validity period starts after the time of the check.
    NotYetValid { subject: String, not_before_ms: i64 },
    /// No certificate named as the issuer is in the chain or among the trusted roots.
    UnknownIssuer { subject: String, issuer: String },
    /// The signature does not verify with the issuer's public key (tampered certificate, or an
    /// issuer with the right name but another key).
    BadSignature { subject: String, issuer: String },
    /// A file's signature does not verify with the signing certificate's key.
    BadFileSignature { signer: String },
    /// A certificate that issued another one may not act as a CA.
    NotCa {
        subject: String,
        reason: &'static str,
    },
    /// The end-entity certificate may not be used for the requested [`Usage`].
    WrongUsage {
        subject: String,
        reason: &'static str,
    },
    /// Key generation, key loading or signing failed.
    Crypto(String),
}

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X509Error::Pem(m) => write!(f, "invalid PEM: {m}"),
            X509Error::Malformed(m) => write!(f, "malformed DER: {m}"),
            X509Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            X509Error::EmptyChain => write!(f, "no certificate to verify"),
            X509Error::Expired {
                subject,
                not_after_ms,
            } => write!(
                f,
                "certificate \"{subject}\" expired at {}",
                format_time(*not_after_ms)
            ),
            X509Error::NotYetValid {
                subject,
                not_before_ms,
            } => write!(
                f,
                "certificate \"{subject}\" is not valid before {}",
                format_time(*not_before_ms)
            ),
            X509Error::UnknownIssuer { subject, issuer } => write!(
                f,
                "the issuer \"{issuer}\" of certificate \"{subject}\" is neither a trusted root \
                 nor the next certificate of the chain"
            ),
            X509Error::BadSignature { subject, issuer } => write!(
                f,
                "the signature of certificate \"{subject}\" does not verify with the public key \
                 of \"{issuer}\""
            ),
            X509Error::BadFileSignature { signer } => write!(
                f,
                "the signature does not verify with the public key of \"{signer}\" over the \
                 SHA-256 of the file"
            ),
            X509Error::NotCa { subject, reason } => {
                write!(
                    f,
                    "certificate \"{subject}\" may not issue certificates: {reason}"
                )
            }
            X509Error::WrongUsage { subject, reason } => {
                write!(
                    f,
                    "certificate \"{subject}\" may not be used here: {reason}"
                )
            }
            X509Error::Crypto(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for X509Error {}

fn malformed(what: &str, problem: &str) -> X509Error {
    X509Error::Malformed(format!("{what}: {problem}"))
}

// ---------------------------------------------------------------------------------------------
// PEM (RFC 7468)
// ---------------------------------------------------------------------------------------------

/// The PEM labels the agent reads, as `rustls-pki-types` knows them.
fn section_kind(label: &str) -> Option<rustls_pki_types::pem::SectionKind> {
    use rustls_pki_types::pem::SectionKind as K;
    Some(match label {
        "CERTIFICATE" => K::Certificate,
        "CERTIFICATE REQUEST" => K::Csr,
        "PRIVATE KEY" => K::PrivateKey,
        "EC PRIVATE KEY" => K::EcPrivateKey,
        "PUBLIC KEY" => K::PublicKey,
        _ => return None,
    })
}

/// Puts every PEM block of `text` on lines of its own, the base64 re-wrapped at 64 columns,
/// as `rustls-pki-types` wants it: it finds BEGIN and END only at the start of a line, so a
/// whole block on one line (as some CSMSs put PEM in JSON) or text before a BEGIN on the
/// same line would be missed. Checks the block structure on the way, for errors that say
/// what is wrong: a BEGIN line not closed by "-----", a block without its END line, a BEGIN
/// inside a block, and RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, an encrypted key), which
/// are not supported. Text outside the blocks is dropped; the base64 itself is decoded (and
/// judged) by pki-types.
fn normalise_pem(text: &str) -> Result<String, X509Error> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let label_end = after
            .find("-----")
            .filter(|&i| !after[..i].contains('\n'))
            .ok_or_else(|| X509Error::Pem("a BEGIN line is not closed by \"-----\"".into()))?;
        let label = &after[..label_end];
        let body_and_rest = &after[label_end + 5..];
        let end_line = format!("-----END {label}-----");
        let body_end = body_and_rest
            .find(&end_line)
            .ok_or_else(|| X509Error::Pem(format!("the {label} block has no END line")))?;
        let body = &body_and_rest[..body_end];
        if body.contains(BEGIN) {
            return Err(X509Error::Pem(format!(
                "the {label} block has no END line before the next BEGIN line"
            )));
        }
        if body.contains(':') {
            return Err(X509Error::Pem(format!(
                "a {label} block has headers (an encrypted key?), which are not supported"
            )));
        }
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        let digits: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        for line in digits.chunks(64) {
            // ASCII whitespace was removed, other bytes are kept for pki-types to refuse.
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(&end_line);
        out.push('\n');
        rest = &body_and_rest[body_end + end_line.len()..];
    }
    Ok(out)
}

/// Decodes every PEM block labelled `label` in `text`, in order: `"CERTIFICATE"`,
/// `"CERTIFICATE REQUEST"`, `"PRIVATE KEY"`, `"EC PRIVATE KEY"` or `"PUBLIC KEY"` (the labels
/// `rustls-pki-types` decodes; any other label is an error).
///
/// Text around the blocks and blocks with other labels are ignored. Line breaks may be `\n` or
/// `\r\n`, lines may have any length, and a whole block on one line (as some CSMSs send PEM in
/// JSON) is accepted. An error if no block has the label, if a block lacks its END line, is
/// empty, has bad base64, or has RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, …).
pub fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, X509Error> {
    use rustls_pki_types::pem::{PemObject, SectionKind};
    let wanted = section_kind(label)
        .ok_or_else(|| X509Error::Pem(format!("the PEM label {label:?} is not supported")))?;
    let normal = normalise_pem(text)?;
    let mut blocks = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(normal.as_bytes()) {
        let (kind, der) = section.map_err(|e| {
            let n = blocks.len() + 1;
            X509Error::Pem(match e {
                rustls_pki_types::pem::Error::Base64Decode(why) => {
                    format!("{label} block {n}: invalid base64 ({why})")
                }
                e => format!("{label} block {n}: {e}"),
            })
        })?;
        if kind != wanted {
            continue;
        }
        if der.is_empty() {
            return Err(X509Error::Pem(format!(
                "{label} block {} is empty",
                blocks.len() + 1
            )));
        }
        blocks.push(der);
    }
    if blocks.is_empty() {
        return Err(X509Error::Pem(format!(
            "no \"-----BEGIN {label}-----\" block found"
        )));
    }
    Ok(blocks)
}

/// Encodes `der` as one PEM block: `-----BEGIN {label}-----`, base64 in 64-character lines,
/// `-----END {label}-----`, each line ending in `\n`. Use `"CERTIFICATE"` for certificates,
/// `"CERTIFICATE REQUEST"` for a CSR and `"PRIVATE KEY"` for the PKCS#8 key of
/// [`generate_key`] (the label rustls' `PrivateKeyDer::from_pem_*` loads as PKCS#8).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let base64 = data_encoding::BASE64.encode(der);
    let mut out = String::with_capacity(base64.len() + base64.len() / 64 + 2 * label.len() + 40);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    // base64 is ASCII: every 64-byte chunk is whole characters.
    for line in base64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes base64 (RFC 4648, `data-encoding`) as OCPP carries binary data in JSON, e.g. the
/// firmware signature (L01): whitespace between the digits (a signature pasted from a wrapped
/// `openssl base64`) is skipped, and the `=` padding may be left out.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let encoding = if digits.len() % 4 == 0 {
        &data_encoding::BASE64
    } else {
        &data_encoding::BASE64_NOPAD
    };
    encoding
        .decode(&digits)
        .map_err(|e| format!("invalid base64: {e}"))
}

// ---------------------------------------------------------------------------------------------
// DER reading (x509-cert / der)
// ---------------------------------------------------------------------------------------------

/// A `der` error in words, with where it happened: `what: truncated (at byte 12)`.
fn der_error(what: &str, e: der::Error) -> X509Error {
    use der::ErrorKind as K;
    let words = match e.kind() {
        K::Incomplete { .. } => "truncated".to_string(),
        K::TrailingData { .. } => "unexpected data after the last field".to_string(),
        K::IndefiniteLength => "indefinite length (BER, not DER)".to_string(),
        K::Noncanonical { tag } => format!("{tag} not minimally encoded (not DER)"),
        K::Overlength => "length too large or not minimally encoded (not DER)".to_string(),
        K::TagUnexpected {
            expected: Some(expected),
            actual,
        } => format!("expected {expected}, found {actual}"),
        K::Length { tag } => format!("{tag} length invalid or not minimally encoded (not DER)"),
        K::Value { tag } => format!("invalid {tag}"),
        K::DateTime => "not a valid RFC 5280 time (YYMMDDHHMMSSZ, from 1970)".to_string(),
        other => other.to_string(),
    };
    match e.position() {
        Some(at) => malformed(what, &format!("{words} (at byte {at})")),
        None => malformed(what, &words),
    }
}

// ---------------------------------------------------------------------------------------------
// Object identifiers
// ---------------------------------------------------------------------------------------------

const OID_CN: Oid = Oid::new_unwrap("2.5.4.3");
const OID_O: Oid = Oid::new_unwrap("2.5.4.10");
const NAME_ATTRIBUTES: &[(Oid, &str)] = &[
    (OID_CN, "CN"),
    (OID_O, "O"),
    (Oid::new_unwrap("2.5.4.11"), "OU"),
    (Oid::new_unwrap("2.5.4.6"), "C"),
    (Oid::new_unwrap("2.5.4.7"), "L"),
    (Oid::new_unwrap("2.5.4.8"), "ST"),
    (Oid::new_unwrap("2.5.4.5"), "serialNumber"),
    (Oid::new_unwrap("1.2.840.113549.1.9.1"), "emailAddress"),
    (Oid::new_unwrap("0.9.2342.19200300.100.1.25"), "DC"),
];

const OID_BASIC_CONSTRAINTS: Oid = Oid::new_unwrap("2.5.29.19");
const OID_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.15");
const OID_EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
/// Extensions that may be critical although only read for information (or not at all):
/// subjectAltName, subjectKeyIdentifier, authorityKeyIdentifier.
const OIDS_HARMLESS: &[Oid] = &[
    Oid::new_unwrap("2.5.29.17"),
    Oid::new_unwrap("2.5.29.14"),
    Oid::new_unwrap("2.5.29.35"),
];

/// id-kp-codeSigning, the DER contents of the OID (as webpki's `KeyUsage` takes it).
const OID_EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

const OID_EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
const OID_P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: Oid = Oid::new_unwrap("1.3.132.0.34");
const OID_RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSASSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
const OID_ED25519: Oid = Oid::new_unwrap("1.3.101.112");

const OID_ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Decodes a directory string; `None` for non-string types or invalid encodings.
fn decode_string(value: &Any) -> Option<String> {
    let v = value.value();
    match value.tag() {
        Tag::Utf8String => String::from_utf8(v.to_vec()).ok(),
        Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            v.is_ascii().then(|| v.iter().map(|&b| b as char).collect())
        }
        // TeletexString: treated as Latin-1, as most software does
        Tag::TeletexString => Some(v.iter().map(|&b| b as char).collect()),
        // BMPString: UCS-2 big-endian
        Tag::BmpString if v.len() % 2 == 0 => {
            char::decode_utf16(v.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
                .collect::<Result<String, _>>()
                .ok()
        }
        // (UniversalString: der has no such tag, so a Name with one does not decode.)
        _ => None,
    }
}

/// Renders a Name (the full TLV, as in [`Certificate::subject_der`]) for people, in DER order:
/// `O=Test CSO, CN=CS001` (the format of `openssl x509 -nameopt sep_comma_plus_space,sname`).
/// Unknown attribute types appear as dotted OIDs, non-string values as `#` and hex. Values are
/// not escaped.
pub fn name_to_string(name_der: &[u8]) -> String {
    let Ok(name) = x509_cert::name::Name::from_der(name_der) else {
        return "<malformed name>".into();
    };
    let mut out = String::new();
    for (i, rdn) in name.iter_rdn().enumerate() {
        for (j, atv) in rdn.iter().enumerate() {
            match (i, j) {
                (0, 0) => {}
                (_, 0) => out.push_str(", "),
                _ => out.push_str(" + "),
            }
            match NAME_ATTRIBUTES.iter().find(|(o, _)| *o == atv.oid) {
                Some((_, short)) => out.push_str(short),
                None => out.push_str(&atv.oid.to_string()),
            }
            out.push('=');
            match decode_string(&atv.value) {
                Some(s) => out.push_str(&s),
                None => {
                    out.push('#');
                    out.push_str(&hex(atv.value.value()));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// `2024-01-31T12:00:00Z` for UTC milliseconds since the epoch (seconds precision).
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A `Time` (RFC 5280 4.1.2.5; `der` has checked UTCTime `YYMMDDHHMMSSZ` for 1950-2049 or
/// GeneralizedTime `YYYYMMDDHHMMSSZ`, from 1970 on) as UTC milliseconds since the epoch.
fn time_ms(time: &x509_cert::time::Time) -> i64 {
    // At most year 9999: far inside i64 milliseconds.
    time.to_unix_duration().as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// The public key types the field reader tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    EcP256,
    EcP384,
    Rsa,
    RsaPss,
    Ed25519,
    Other,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::EcP256 => "ECDSA P-256",
            KeyKind::EcP384 => "ECDSA P-384",
            KeyKind::Rsa => "RSA",
            KeyKind::RsaPss => "RSASSA-PSS",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Other => "unsupported",
        }
    }
}

/// The key type of a SubjectPublicKeyInfo and its subjectPublicKey BIT STRING contents
/// without the unused-bits byte, which must be 0 (keys are whole bytes).
fn parse_spki(spki: &x509_cert::SubjectPublicKeyInfo) -> Result<(KeyKind, &[u8]), X509Error> {
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| malformed("subjectPublicKey", "BIT STRING with unused bits"))?;
    let kind = match spki.algorithm.oid {
        OID_EC_PUBLIC_KEY => match spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<Oid>().ok())
        {
            Some(OID_P256) => KeyKind::EcP256,
            Some(OID_P384) => KeyKind::EcP384,
            _ => KeyKind::Other,
        },
        OID_RSA_ENCRYPTION => KeyKind::Rsa,
        OID_RSASSA_PSS => KeyKind::RsaPss,
        OID_ED25519 => KeyKind::Ed25519,
        _ => KeyKind::Other,
    };
    Ok((kind, bits))
}

/// A parsed X.509 v1/v3 certificate (RFC 5280). All byte fields are copies of parts of `der`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The whole certificate, DER.
    pub der: Vec<u8>,
    /// The serialNumber INTEGER's contents exactly as encoded: big-endian two's complement,
    /// so a serial whose top bit is set keeps its leading 0x00 byte (`0x00 0xff` for 255).
    /// See [`Certificate::serial_hex`] for OCPP's string form.
    pub serial: Vec<u8>,
    /// The issuer Name, the full TLV (`30 ..`), as encoded in this certificate.
    pub issuer_der: Vec<u8>,
    /// The subject Name, the full TLV.
    pub subject_der: Vec<u8>,
    /// The first commonName of the subject (charging station: its serial number, A00.FR.511;
    /// CSMS: its FQDN, A00.FR.510).
    pub subject_cn: Option<String>,
    /// The first organizationName of the subject (A00.FR.509).
    pub subject_o: Option<String>,
    /// Start of the validity period, UTC milliseconds since the epoch (inclusive).
    pub not_before_ms: i64,
    /// End of the validity period, UTC milliseconds since the epoch (inclusive).
    pub not_after_ms: i64,
    /// The SubjectPublicKeyInfo, the full TLV: compare it with [`generate_key`]'s to check
    /// that a signed certificate belongs to a key.
    pub spki_der: Vec<u8>,
    /// The subjectPublicKey BIT STRING contents without the unused-bits byte (the uncompressed
    /// EC point, or the RSAPublicKey DER): what OCPP's issuerKeyHash hashes.
    pub public_key_bits: Vec<u8>,
    /// basicConstraints cA is true.
    pub is_ca: bool,
    /// Self-issued: the issuer Name equals the subject Name byte for byte (the signature is not
    /// checked).
    pub self_signed: bool,
    path_len: Option<u8>,
    /// keyUsage bits, bit n of the BIT STRING (0 = digitalSignature, 5 = keyCertSign) as 1 << n.
    key_usage: Option<u16>,
    unsupported_critical: Option<String>,
    key: KeyKind,
}

const KEY_USAGE_KEY_CERT_SIGN: u16 = 1 << 5;

impl Certificate {
    /// OCPP's serialNumber: "the string representation of the hexadecimal value of the serial
    /// number without the prefix "0x" and without leading zeroes" (part 2, 2.6
    /// CertificateHashDataType). Lower-case (as EVerest's libevse-security writes it; OCPP does
    /// not say); `"0"` for a zero serial. `openssl x509 -serial` prints the same digits in
    /// upper case, padded to whole bytes (`0A` for `a`).
    pub fn serial_hex(&self) -> String {
        let digits = hex(&self.serial);
        match digits.trim_start_matches('0') {
            "" => "0".into(),
            trimmed => trimmed.into(),
        }
    }

    /// The subject for people, e.g. `O=Test CSO, CN=CS001` ([`name_to_string`]).
    pub fn subject(&self) -> String {
        name_to_string(&self.subject_der)
    }

    /// The issuer for people ([`name_to_string`]).
    pub fn issuer(&self) -> String {
        name_to_string(&self.issuer_der)
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        to_pem("CERTIFICATE", &self.der)
    }
}

/// The contents of a DER TLV (an INTEGER's bytes, what webpki keeps of names and keys).
fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    AnyRef::from_der(tlv).ok().map(AnyRef::value)
}

/// Parses one DER certificate (RFC 5280 4.1) with `x509-cert`. Accepts v1 and v3 certificates
/// with any public key and signature algorithm (unsupported ones fail only in verification);
/// rejects BER encodings, trailing bytes, different inner and outer signature algorithms,
/// duplicated extensions and invalid times.
pub fn parse_certificate(der: &[u8]) -> Result<Certificate, X509Error> {
    use x509_cert::certificate::{CertificateInner, Raw};
    use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
    // The Raw profile (behind x509-cert's `hazmat` feature): no RFC 5280 limit on the
    // serial's length, and times encode back as they came (the Rfc5280 profile re-encodes a
    // GeneralizedTime before 2050 as UTCTime, which the check below would then refuse).
    let cert = CertificateInner::<Raw>::from_der(der).map_err(|e| der_error("certificate", e))?;
    // The byte fields below are re-encoded from the parsed structure: that they are the
    // certificate's own bytes (hashed for CertificateHashData) rests on this.
    if cert.to_der().ok().as_deref() != Some(der) {
        return Err(malformed(
            "certificate",
            "not in canonical DER (it does not encode back to the same bytes)",
        ));
    }
    let tbs = cert.tbs_certificate();
    if tbs.signature() != cert.signature_algorithm() {
        return Err(malformed(
            "signature",
            "the signature algorithm inside tbsCertificate differs from the outer one",
        ));
    }
    fn encode(what: &str, v: &impl Encode) -> Result<Vec<u8>, X509Error> {
        v.to_der().map_err(|e| der_error(what, e))
    }
    let serial_tlv = encode("serialNumber", tbs.serial_number())?;
    let issuer_der = encode("issuer", tbs.issuer())?;
    let subject_der = encode("subject", tbs.subject())?;
    let spki = tbs.subject_public_key_info();
    let spki_der = encode("subjectPublicKeyInfo", spki)?;
    let (key, public_key_bits) = parse_spki(spki)?;

    let mut subject_cn = None;
    let mut subject_o = None;
    for atv in tbs.subject().iter() {
        let (slot, what) = match atv.oid {
            OID_CN => (&mut subject_cn, "subject commonName"),
            OID_O => (&mut subject_o, "subject organizationName"),
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode_string(&atv.value).ok_or_else(|| malformed(what, "not a string"))?);
        }
    }

    let validity = tbs.validity();
    let mut c = Certificate {
        der: der.to_vec(),
        serial: der_contents(&serial_tlv).unwrap_or_default().to_vec(),
        self_signed: issuer_der == subject_der,
        issuer_der,
        subject_der,
        subject_cn,
        subject_o,
        not_before_ms: time_ms(&validity.not_before),
        not_after_ms: time_ms(&validity.not_after),
        public_key_bits: public_key_bits.to_vec(),
        spki_der,
        is_ca: false,
        path_len: None,
        key_usage: None,
        unsupported_critical: None,
        key,
    };
    let Some(extensions) = tbs.extensions() else {
        return Ok(c);
    };
    if tbs.version() != x509_cert::Version::V3 {
        return Err(malformed(
            "extensions",
            "only v3 certificates have extensions",
        ));
    }
    let mut seen: Vec<Oid> = Vec::new();
    for e in extensions {
        let oid = e.extn_id;
        if seen.contains(&oid) {
            return Err(malformed(
                "extensions",
                &format!("extension {oid} appears twice"),
            ));
        }
        seen.push(oid);
        let value = e.extn_value.as_bytes();
        match oid {
            OID_BASIC_CONSTRAINTS => {
                let bc = BasicConstraints::from_der(value)
                    .map_err(|e| der_error("basicConstraints", e))?;
                c.is_ca = bc.ca;
                c.path_len = bc.path_len_constraint;
            }
            OID_KEY_USAGE => {
                let ku = KeyUsage::from_der(value).map_err(|e| der_error("keyUsage", e))?;
                c.key_usage = Some(ku.0.bits());
            }
            OID_EXT_KEY_USAGE => {
                // Read so that a malformed one is refused here; webpki checks the purposes.
                x509_cert::ext::pkix::ExtendedKeyUsage::from_der(value)
                    .map_err(|e| der_error("extKeyUsage", e))?;
            }
            _ if e.critical && !OIDS_HARMLESS.contains(&oid) => {
                c.unsupported_critical
                    .get_or_insert_with(|| oid.to_string());
            }
            _ => {}
        }
    }
    Ok(c)
}

/// Decodes every `CERTIFICATE` PEM block of `text` (a certificate or a chain, as in
/// CertificateSignedRequest.certificateChain or InstallCertificateRequest.certificate) and
/// parses each, in order.
pub fn parse_pem_certificates(text: &str) -> Result<Vec<Certificate>, X509Error> {
    pem_blocks(text, "CERTIFICATE")?
        .iter()
        .enumerate()
        .map(|(i, der)| {
            parse_certificate(der).map_err(|e| match e {
                X509Error::Malformed(m) => {
                    X509Error::Malformed(format!("certificate {} of the PEM text: {m}", i + 1))
                }
                e => e,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// OCPP CertificateHashDataType
// ---------------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// OCPP's `CertificateHashDataType` for `cert` (part 2, 2.6; the fields of an OCSP CertID,
/// RFC 6960 4.1.1), as sent in GetInstalledCertificateIdsResponse and matched against
/// DeleteCertificateRequest:
///
/// * `issuerNameHash`: hash of "the DER encoding of the issuer's name field in the certificate
///   being checked", i.e. of `cert.issuer_der` (the whole Name TLV);
/// * `issuerKeyHash`: hash of "the value (excluding tag and length) of the subject public key
///   field in the issuer's certificate", i.e. of the issuer's [`Certificate::public_key_bits`]:
///   the BIT STRING contents without the unused-bits byte, as OpenSSL's `OCSP_cert_to_id` and
///   `openssl ocsp -req_text` compute it (and as RFC 5280 4.2.1.2 method 1 words it);
/// * `serialNumber`: [`Certificate::serial_hex`].
///
/// Hashes are lower-case hex (OCPP does not fix the case; [`hash_data_matches`] ignores it).
///
/// `issuer`: the certificate that issued `cert`. With `None`, a self-issued certificate (a
/// root, [`Certificate::self_signed`]) is its own issuer; for any other certificate the
/// issuer's key is unknown and `issuerKeyHash` is the empty string (the name hash and the
/// serial, which RFC 5280 makes unique per issuer, are still right). Pass the issuer whenever
/// it is installed.
pub fn hash_data(
    cert: &Certificate,
    issuer: Option<&Certificate>,
    algorithm: HashAlgorithmEnum,
) -> CertificateHashData {
    let digest_alg = match algorithm {
        HashAlgorithmEnum::Sha256 => &ring::digest::SHA256,
        HashAlgorithmEnum::Sha384 => &ring::digest::SHA384,
        HashAlgorithmEnum::Sha512 => &ring::digest::SHA512,
    };
    let digest = |data: &[u8]| hex(ring::digest::digest(digest_alg, data).as_ref());
    let issuer = issuer.or(if cert.self_signed { Some(cert) } else { None });
    CertificateHashData {
        custom_data: None,
        hash_algorithm: algorithm,
        issuer_name_hash: digest(&cert.issuer_der),
        issuer_key_hash: issuer
            .map(|issuer| digest(&issuer.public_key_bits))
            .unwrap_or_default(),
        serial_number: cert.serial_hex(),
    }
}

/// Whether two `CertificateHashData` identify the same certificate: same algorithm, hashes
/// equal ignoring hex case, serial numbers equal ignoring case and leading zeroes (a CSMS may
/// send `0A` for `a`). `customData` is ignored.
pub fn hash_data_matches(a: &CertificateHashData, b: &CertificateHashData) -> bool {
    let serial = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
    a.hash_algorithm == b.hash_algorithm
        && a.issuer_name_hash.eq_ignore_ascii_case(&b.issuer_name_hash)
        && a.issuer_key_hash.eq_ignore_ascii_case(&b.issuer_key_hash)
        && serial(&a.serial_number) == serial(&b.serial_number)
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/// What the end-entity certificate of a chain is for ([`verify_chain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS client: the charging station's own certificate (A02/A03, security profile 3).
    ClientAuth,
    /// TLS server: a CSMS certificate.
    ServerAuth,
    /// Code signing: a firmware signing certificate (L01), checked like `ClientAuth` but
    /// against the codeSigning purpose.
    CodeSigning,
    /// Any extendedKeyUsage (the certificate must still be an end entity, not a CA).
    Any,
}

/// The size of an RSAPublicKey's modulus in bits.
fn rsa_modulus_bits(key: &[u8]) -> Option<usize> {
    let modulus = AnyRef::from_der(key)
        .ok()?
        .sequence(|r| {
            let modulus = UintRef::decode(r)?;
            UintRef::decode(r)?; // publicExponent
            Ok::<_, der::Error>(modulus)
        })
        .ok()?;
    let modulus = modulus.as_bytes();
    let first = *modulus.first()?;
    Some(modulus.len() * 8 - first.leading_zeros() as usize)
}

type Verifier = &'static dyn sig::VerificationAlgorithm;

/// Verifies a firmware signature (L01.FR.04, L01.FR.12): made over the whole file with SHA-256
/// by the key of the signing certificate. RSA keys: RSASSA-PSS (salt as long as the hash, as
/// the spec asks) or, as many signing tools make them, PKCS#1 v1.5; EC keys (P-256, P-384):
/// ECDSA, the signature DER-encoded or as the fixed-size r||s.
pub fn verify_file_signature(
    signer: &Certificate,
    file: &[u8],
    signature: &[u8],
) -> Result<(), X509Error> {
    let candidates: &[Verifier] = match signer.key {
        KeyKind::Rsa | KeyKind::RsaPss => {
            let bits = rsa_modulus_bits(&signer.public_key_bits).unwrap_or(0);
            if bits < 2048 {
                return Err(X509Error::Unsupported(format!(
                    "a {bits}-bit RSA signing key: at least 2048 bits are required (A00.FR.502)"
                )));
            }
            &[
                &sig::RSA_PSS_2048_8192_SHA256,
                &sig::RSA_PKCS1_2048_8192_SHA256,
            ]
        }
        KeyKind::EcP256 => &[&sig::ECDSA_P256_SHA256_ASN1, &sig::ECDSA_P256_SHA256_FIXED],
        KeyKind::EcP384 => &[&sig::ECDSA_P384_SHA256_ASN1],
        KeyKind::Ed25519 | KeyKind::Other => {
            return Err(X509Error::Unsupported(format!(
                "a firmware signing key of type {}",
                signer.key.name()
            )));
        }
    };
    candidates
        .iter()
        .any(|alg| {
            UnparsedPublicKey::new(*alg, &signer.public_key_bits)
                .verify(file, signature)
                .is_ok()
        })
        .then_some(())
        .ok_or_else(|| X509Error::BadFileSignature {
            signer: signer.subject(),
        })
}

fn check_time(cert: &Certificate, now_ms: i64) -> Result<(), X509Error> {
    if now_ms < cert.not_before_ms {
        Err(X509Error::NotYetValid {
            subject: cert.subject(),
            not_before_ms: cert.not_before_ms,
        })
    } else if now_ms > cert.not_after_ms {
        Err(X509Error::Expired {
            subject: cert.subject(),
            not_after_ms: cert.not_after_ms,
        })
    } else {
        Ok(())
    }
}

/// An issuer of a certificate must be allowed to sign certificates: rustls-webpki checks
/// basicConstraints and pathLenConstraint but not keyUsage (RFC 5280 4.2.1.3), so that is
/// checked here, on the path webpki verified.
fn check_key_cert_sign(cert: &Certificate) -> Result<(), X509Error> {
    if cert
        .key_usage
        .is_some_and(|ku| ku & KEY_USAGE_KEY_CERT_SIGN == 0)
    {
        return Err(X509Error::NotCa {
            subject: cert.subject(),
            reason: "its keyUsage lacks keyCertSign",
        });
    }
    Ok(())
}

/// The extendedKeyUsage a leaf needs for a [`Usage`]: the purpose, if the leaf lists any.
struct Purpose(Usage);

impl webpki::ExtendedKeyUsageValidator for Purpose {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        use webpki::KeyUsage;
        match self.0 {
            Usage::ClientAuth => KeyUsage::client_auth().validate(iter),
            Usage::ServerAuth => KeyUsage::server_auth().validate(iter),
            Usage::CodeSigning => {
                KeyUsage::required_if_present(OID_EKU_CODE_SIGNING).validate(iter)
            }
            Usage::Any => Ok(()),
        }
    }
}

/// Verifies a certificate chain at `now_ms` (UTC milliseconds since the epoch) with
/// rustls-webpki, the verifier of the agent's TLS connections, for A02.FR.06
/// (CertificateSigned), M05 (sub-CAs) and L01 (firmware signing certificate):
///
/// * `chain` is leaf first (as CertificateSignedRequest.certificateChain is ordered); the
///   other certificates are candidate intermediates, and it may end with the root or not.
/// * webpki builds and checks the path to one of `roots`: signatures (ECDSA P-256/P-384 with
///   SHA-256/384, RSA 2048-8192 bits PKCS#1 v1.5 and PSS, Ed25519), validity of every
///   certificate below the root, basicConstraints and pathLenConstraint, critical extensions
///   it cannot process, name constraints, and the leaf's extendedKeyUsage for `usage` (if the
///   leaf has one; OCPP recommends against it, A00.FR.514). A CA is never an end entity.
/// * On top of webpki, on the verified path: the root's validity (A02.FR.06 as amended by the
///   2025 errata: every certificate on the path, the root included), and keyCertSign of every
///   issuer that has a keyUsage.
///
/// Errors are the module's [`X509Error`], naming the certificate concerned (found with the
/// field reader, as webpki's errors do not say which certificate failed). Revocation is not
/// checked.
pub fn verify_chain(
    chain: &[Certificate],
    roots: &[Certificate],
    now_ms: i64,
    usage: Usage,
) -> Result<(), X509Error> {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let leaf = chain.first().ok_or(X509Error::EmptyChain)?;
    let leaf_der = CertificateDer::from(leaf.der.as_slice());
    let end_entity = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| webpki_error(e, chain, roots, now_ms))?;
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.der.as_slice()))
        .collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect();
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_millis(now_ms.max(0) as u64));
    // Extra checks on a candidate path: an error here makes webpki try another path.
    let extra = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let anchor = path.anchor();
        let root = roots.iter().find(|r| {
            der_contents(&r.subject_der) == Some(anchor.subject.as_ref())
                && der_contents(&r.spki_der) == Some(anchor.subject_public_key_info.as_ref())
        });
        let issuers: Vec<&Certificate> = path
            .intermediate_certificates()
            .filter_map(|cert| chain.iter().find(|c| c.der == cert.der().as_ref()))
            .chain(root)
            .collect();
        if issuers.iter().any(|c| check_key_cert_sign(c).is_err()) {
            return Err(webpki::Error::ExtensionValueInvalid);
        }
        // webpki compares whole seconds; validity ends are kept to the millisecond here.
        if std::iter::once(leaf)
            .chain(issuers)
            .any(|c| check_time(c, now_ms).is_err())
        {
            return Err(webpki::Error::CertExpired {
                time,
                not_after: time,
            });
        }
        Ok(())
    };
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            Purpose(usage),
            None,
            Some(&extra),
        )
        .map(|_| ())
        .map_err(|e| webpki_error(e, chain, roots, now_ms))
}

/// webpki's reason, said of the certificate it concerns: the chain and the roots are searched
/// with the field reader for the certificate that explains it.
fn webpki_error(
    error: webpki::Error,
    chain: &[Certificate],
    roots: &[Certificate],
    now_ms: i64,
) -> X509Error {
    use webpki::Error as E;
    let leaf_subject = || chain.first().map(Certificate::subject).unwrap_or_default();
    // The path from the leaf through the chain, by names, as far as it goes.
    let mut path: Vec<&Certificate> = Vec::new();
    if let Some(leaf) = chain.first() {
        path.push(leaf);
        while let Some(last) = path.last() {
            if last.self_signed || roots.iter().any(|r| r.der == last.der) {
                break;
            }
            let Some(next) = chain[1..]
                .iter()
                .find(|c| c.subject_der == last.issuer_der && !path.contains(c))
            else {
                break;
            };
            path.push(next);
        }
    }
    let issuer_of = |cert: &Certificate| -> Vec<&Certificate> {
        roots
            .iter()
            .chain(chain[1..].iter())
            .filter(|r| r.subject_der == cert.issuer_der)
            .collect()
    };
    let on_path_and_roots = || path.iter().copied().chain(roots.iter());
    match error {
        E::CertExpired { .. } | E::CertNotValidYet { .. } => on_path_and_roots()
            .find_map(|c| check_time(c, now_ms).err())
            .unwrap_or(X509Error::Expired {
                subject: leaf_subject(),
                not_after_ms: chain.first().map_or(0, |c| c.not_after_ms),
            }),
        E::UnknownIssuer => match path.iter().find(|c| issuer_of(c).is_empty()) {
            Some(c) => X509Error::UnknownIssuer {
                subject: c.subject(),
                issuer: c.issuer(),
            },
            None => X509Error::UnknownIssuer {
                subject: leaf_subject(),
                issuer: chain.first().map(Certificate::issuer).unwrap_or_default(),
            },
        },
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::UnsupportedSignatureAlgorithmContext(_) => {
            // A short RSA issuer key is the most common cause worth saying (A00.FR.502).
            let weak = path.iter().flat_map(|c| issuer_of(c)).find_map(|issuer| {
                let bits = matches!(issuer.key, KeyKind::Rsa | KeyKind::RsaPss)
                    .then(|| rsa_modulus_bits(&issuer.public_key_bits))
                    .flatten()?;
                (bits < 2048).then(|| {
                    X509Error::Unsupported(format!(
                        "the {bits}-bit RSA key of \"{}\": at least 2048 bits are required \
                         (A00.FR.502)",
                        issuer.subject()
                    ))
                })
            });
            let subject = path.last().copied().or(chain.first());
            weak.unwrap_or_else(|| match error {
                E::InvalidSignatureForPublicKey => X509Error::BadSignature {
                    subject: subject.map(Certificate::subject).unwrap_or_default(),
                    issuer: subject.map(Certificate::issuer).unwrap_or_default(),
                },
                _ => X509Error::Unsupported(format!(
                    "the signature algorithm of \"{}\" (ECDSA P-256/P-384 with SHA-256/384, \
                     RSA PKCS#1 v1.5 or PSS with SHA-256/384/512 and a salt as long as the \
                     hash, Ed25519)",
                    subject.map(Certificate::subject).unwrap_or_default()
                )),
            })
        }
        E::UnsupportedCriticalExtension => X509Error::Unsupported(
            match on_path_and_roots().find(|c| c.unsupported_critical.is_some()) {
                Some(c) => format!(
                    "certificate \"{}\" has a critical extension {} that cannot be processed",
                    c.subject(),
                    c.unsupported_critical.as_deref().unwrap_or_default()
                ),
                None => "a critical extension that cannot be processed".into(),
            },
        ),
        E::CaUsedAsEndEntity => X509Error::WrongUsage {
            subject: leaf_subject(),
            reason: "it is a CA certificate, not an end-entity certificate",
        },
        E::RequiredEkuNotFoundContext(_) => X509Error::WrongUsage {
            subject: leaf_subject(),
            reason: "its extendedKeyUsage lacks the purpose it is used for \
                     (clientAuth, serverAuth or codeSigning)",
        },
        E::EndEntityUsedAsCa => {
            let subject = path
                .iter()
                .skip(1)
                .copied()
                .chain(roots.iter())
                .find(|c| !c.is_ca)
                .map(|c| c.subject())
                .unwrap_or_default();
            X509Error::NotCa {
                subject,
                reason: "its basicConstraints do not make it a CA",
            }
        }
        E::PathLenConstraintViolated => X509Error::NotCa {
            subject: path
                .iter()
                .skip(1)
                .find(|c| c.path_len.is_some())
                .map(|c| c.subject())
                .unwrap_or_default(),
            reason: "its pathLenConstraint is exceeded",
        },
        E::ExtensionValueInvalid => {
            match on_path_and_roots()
                .skip(1)
                .find_map(|c| check_key_cert_sign(c).err())
            {
                Some(e) => e,
                None => X509Error::Malformed(format!(
                    "an extension of \"{}\" or its issuers is invalid",
                    leaf_subject()
                )),
            }
        }
        other => X509Error::Malformed(format!(
            "certificate \"{}\" or its chain: {other}",
            leaf_subject()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and CSRs
// ---------------------------------------------------------------------------------------------

fn p256_key_pair(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<EcdsaKeyPair, X509Error> {
    EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, rng)
        .map_err(|e| X509Error::Crypto(format!("not an ECDSA P-256 PKCS#8 private key: {e}")))
}

/// Generates an ECDSA P-256 key pair (A02.FR.02, A00.FR.503): returns the private key as
/// PKCS#8 DER (store it as PEM with label `"PRIVATE KEY"`, [`to_pem`]; rustls loads that) and
/// the public key as a SubjectPublicKeyInfo DER for [`build_csr`].
///
/// Pure given `rng`: the shell passes `&ring::rand::SystemRandom::new()`.
pub fn generate_key(rng: &dyn SecureRandom) -> Result<(Vec<u8>, Vec<u8>), X509Error> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_ASN1_SIGNING, rng)
        .map_err(|_| X509Error::Crypto("ECDSA P-256 key generation failed".into()))?;
    let spki = key_spki(pkcs8.as_ref(), rng)?;
    Ok((pkcs8.as_ref().to_vec(), spki))
}

/// An encoding failure of `x509-cert` (only possible for absurd sizes) as an error.
fn encoding(what: &str) -> impl Fn(der::Error) -> X509Error + '_ {
    move |e| X509Error::Crypto(format!("encoding the {what}: {e}"))
}

/// The SubjectPublicKeyInfo DER of an ECDSA P-256 PKCS#8 private key (as [`generate_key`]
/// returns it), e.g. to check that a certificate from CertificateSignedRequest belongs to the
/// key: `cert.spki_der == key_spki(..)?`.
pub fn key_spki(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, X509Error> {
    let key_pair = p256_key_pair(pkcs8, rng)?;
    let spki = x509_cert::SubjectPublicKeyInfo {
        algorithm: x509_cert::AlgorithmIdentifier {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(Any::from(&OID_P256)),
        },
        subject_public_key: BitString::from_bytes(key_pair.public_key().as_ref())
            .map_err(encoding("public key"))?,
    };
    spki.to_der().map_err(encoding("public key"))
}

/// Signs `msg` with an ECDSA P-256 PKCS#8 private key: ECDSA with SHA-256, the signature as
/// ASN.1 DER `Ecdsa-Sig-Value` (what X.509 and PKCS#10 carry). ECDSA needs randomness: `rng`.
pub fn sign_with(pkcs8: &[u8], msg: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, X509Error> {
    let key_pair = p256_key_pair(pkcs8, rng)?;
    key_pair
        .sign(rng, msg)
        .map(|s| s.as_ref().to_vec())
        .map_err(|_| X509Error::Crypto("ECDSA signing failed".into()))
}

/// Builds a PKCS#10 certificate signing request (RFC 2986) as DER for SignCertificateRequest
/// (A02.FR.03: send it PEM encoded, `to_pem("CERTIFICATE REQUEST", &der)`), with
/// `x509-cert`'s `CertReq` types:
///
/// * subject `O=<organization>, CN=<common_name>`, both UTF8String (A00.FR.509/511: the
///   organization, e.g. SecurityCtrlr.OrganizationName, and the charging station's serial
///   number); an empty `organization` leaves O out; each at most 64 characters (RFC 5280
///   upper bounds), the CN not empty;
/// * the public key `spki_der` (a SubjectPublicKeyInfo, ECDSA P-256 or P-384);
/// * no attributes (no requested extensions: the CA decides them);
/// * signature algorithm ecdsa-with-SHA256 for P-256 (ecdsa-with-SHA384 for P-384); `sign`
///   is given the DER CertificationRequestInfo and must return its ASN.1 DER ECDSA signature,
///   e.g. `|m| sign_with(&pkcs8, m, &rng)`. The signature is checked against `spki_der`, so a
///   closure using another key fails here rather than at the CA.
#[allow(clippy::type_complexity)] // the closure type is the interface: spelled out on purpose
pub fn build_csr(
    organization: &str,
    common_name: &str,
    spki_der: &[u8],
    sign: &dyn Fn(&[u8]) -> Result<Vec<u8>, X509Error>,
) -> Result<Vec<u8>, X509Error> {
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
    use x509_cert::request::{CertReq, CertReqInfo, Version};
    let spki = x509_cert::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| der_error("subjectPublicKeyInfo", e))?;
    let (key, public_key) = parse_spki(&spki)?;
    let public_key = public_key.to_vec();
    let (signature_oid, verify): (Oid, Verifier) = match key {
        KeyKind::EcP256 => (OID_ECDSA_SHA256, &sig::ECDSA_P256_SHA256_ASN1),
        KeyKind::EcP384 => (OID_ECDSA_SHA384, &sig::ECDSA_P384_SHA384_ASN1),
        other => {
            return Err(X509Error::Unsupported(format!(
                "a CSR for a {} key (only ECDSA P-256 and P-384)",
                other.name()
            )));
        }
    };
    if common_name.is_empty() || common_name.chars().count() > 64 {
        return Err(X509Error::Malformed(
            "CSR subject: the common name must have 1 to 64 characters".into(),
        ));
    }
    if organization.chars().count() > 64 {
        return Err(X509Error::Malformed(
            "CSR subject: the organization name may have at most 64 characters".into(),
        ));
    }
    let mut rdns = RdnSequence::default();
    for (oid, value) in [(OID_O, organization), (OID_CN, common_name)] {
        if value.is_empty() {
            continue;
        }
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(AttributeTypeAndValue {
            oid,
            value: Any::new(Tag::Utf8String, value.as_bytes()).map_err(encoding("subject"))?,
        })
        .map_err(encoding("subject"))?;
        rdns.push(rdn);
    }
    // A Name is its RDNSequence (RFC 5280 4.1.2.4); x509-cert builds a Name only by decoding.
    let subject = Name::from_der(&rdns.to_der().map_err(encoding("subject"))?)
        .map_err(encoding("subject"))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key: spki,
        attributes: SetOfVec::new(),
    };
    let info_der = info.to_der().map_err(encoding("CSR"))?;
    let signature = sign(&info_der)?;
    UnparsedPublicKey::new(verify, &public_key)
        .verify(&info_der, &signature)
        .map_err(|_| {
            X509Error::Crypto(
                "the CSR signature does not verify with the CSR's public key (wrong key?)".into(),
            )
        })?;
    CertReq {
        info,
        algorithm: x509_cert::AlgorithmIdentifier {
            oid: signature_oid,
            parameters: None,
        },
        signature: BitString::from_bytes(&signature).map_err(encoding("CSR"))?,
    }
    .to_der()
    .map_err(encoding("CSR"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::clock::days_from_civil;

    /// `openssl ca -selfsign`, P-256, serial 0xF0, 2024-01-01T00:00:00Z (UTCTime) to
    /// 2060-01-01T00:00:00Z (GeneralizedTime), CA:TRUE, keyCertSign.
    const ROOT: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASigAwIBAgICAPAwCgYIKoZIzj0EAwIwJzERMA8GA1UECgwIVW5pdCBD
U08xEjAQBgNVBAMMCVVuaXQgUm9vdDAgFw0yNDAxMDEwMDAwMDBaGA8yMDYwMDEw
MTAwMDAwMFowJzERMA8GA1UECgwIVW5pdCBDU08xEjAQBgNVBAMMCVVuaXQgUm9v
dDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJ25iymHx4+4XwTbt+qclbZEt5Ha
I/a6z1FBlBUSrLigBZb9Ww0d7I0z+wcqs22S4NvXVaQmUFI6COsl9OpuENqjQjBA
MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMB0GA1UdDgQWBBR4bsg/
N6clF4seN16zoi6pC+VU/DAKBggqhkjOPQQDAgNHADBEAiBLIubZ9DGT7nG0qDPF
cFj7qBjY1SPgqqiySR7aqo0vYAIgCKtrMNqxsKgPhpEvjZJlfaax7tPURcmUtWVP
oyB82KE=
-----END CERTIFICATE-----
";

    /// Issued by ROOT: serial 0xF1, 2024-02-01T12:00:00Z to 2034-02-01T12:00:00Z, CA:FALSE.
    const LEAF: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUKgAwIBAgICAPEwCgYIKoZIzj0EAwIwJzERMA8GA1UECgwIVW5pdCBD
U08xEjAQBgNVBAMMCVVuaXQgUm9vdDAeFw0yNDAyMDExMjAwMDBaFw0zNDAyMDEx
MjAwMDBaMCUxETAPBgNVBAoMCFVuaXQgQ1NPMRAwDgYDVQQDDAdDUy0wMDAxMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZ5MGQDedfTh2csq6xV54RGB/F+UUfTZe
wNE5eX+jxOrb6O5dcLTrDGzGzx4BezNnYGKVAjqWjaqp0pvSU/63aKNgMF4wDAYD
VR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwHQYDVR0OBBYEFFgNfsnvS5mMg/Bv
oxTW3zqozHNYMB8GA1UdIwQYMBaAFHhuyD83pyUXix43XrOiLqkL5VT8MAoGCCqG
SM49BAMCA0gAMEUCIQDPx23SsMs+jCJGr1ONvWKEKYKaHUQ7lta289FM/1xRPAIg
LEBgMHWIrSi6lDBDRs6Jrrs0rmdp3qCSAxP0qkKeHVY=
-----END CERTIFICATE-----
";

    /// `openssl ocsp -issuer root.pem -sha256 -cert leaf.pem -req_text` (upper-case there).
    const NAME_HASH: &str = "b7dda907067f29f9597d65278ee69f9ee907fd69736bff7073b9a8f8ebdccb18";
    const KEY_HASH: &str = "6ed84bc502820abc72b92a5cec057fc69a6af1f47b538ad97d0dd79eb6cad1fc";

    const MS_2025: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

    fn root() -> Certificate {
        parse_pem_certificates(ROOT).unwrap().remove(0)
    }

    fn leaf() -> Certificate {
        parse_pem_certificates(LEAF).unwrap().remove(0)
    }

    fn der_of(pem: &str) -> Vec<u8> {
        pem_blocks(pem, "CERTIFICATE").unwrap().remove(0)
    }

    #[test]
    fn pem_round_trip_and_layout() {
        for len in 0..200 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            // A label rustls-pki-types decodes (it skips unknown ones, so "TEST" is gone).
            let pem = to_pem("CERTIFICATE", &data);
            assert!(pem.lines().all(|l| l.len() <= 64));
            assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
            if len > 0 {
                assert_eq!(pem_blocks(&pem, "CERTIFICATE").unwrap(), vec![data]);
            }
        }
        let der = der_of(ROOT);
        assert_eq!(to_pem("CERTIFICATE", &der), ROOT);
    }

    #[test]
    fn pem_blocks_selects_by_label_and_tolerates_layout() {
        let text = format!(
            "subject=whatever\r\n{}\r\n{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            LEAF.replace('\n', "\r\n"),
            ROOT
        );
        let blocks = pem_blocks(&text, "CERTIFICATE").unwrap();
        assert_eq!(blocks, vec![der_of(LEAF), der_of(ROOT)]);
        assert_eq!(
            pem_blocks(&text, "PRIVATE KEY").unwrap(),
            vec![vec![0, 0, 0]]
        );
        // one line, no line breaks at all
        let one_line: String = ROOT.lines().collect();
        assert_eq!(
            pem_blocks(&one_line, "CERTIFICATE").unwrap(),
            vec![der_of(ROOT)]
        );
    }

    #[test]
    fn pem_garbage_is_refused_with_reasons() {
        let err = |t: &str| pem_blocks(t, "CERTIFICATE").unwrap_err().to_string();
        assert!(err("").contains("no \"-----BEGIN CERTIFICATE-----\" block"));
        assert!(err("hello world").contains("no \"-----BEGIN CERTIFICATE-----\""));
        assert!(err(&ROOT.replace("-----END CERTIFICATE-----\n", "")).contains("no END line"));
        // rustls-pki-types judges the base64 now; its reasons follow ours.
        assert!(err(&ROOT.replace("MIIB", "MI*B")).contains("invalid base64"));
        assert!(err(&ROOT.replace("oyB82KE=", "oyB82")).contains("invalid base64"));
        assert!(err(&ROOT.replace("oyB82KE=", "oyB82KE=A")).contains("invalid base64"));
        assert!(
            err(&ROOT.replace("oyB82KE=", "oyB82KE=A"))
                .starts_with("invalid PEM: CERTIFICATE block 1: ")
        );
        assert!(err("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----").contains("empty"));
        assert!(
            err("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END CERTIFICATE-----")
                .contains("headers")
        );
        let two_begins = format!("-----BEGIN CERTIFICATE-----\nAAAA\n{ROOT}");
        assert!(err(&two_begins).contains("before the next BEGIN"));
    }

    #[test]
    fn base64_decode_takes_rfc4648_vectors_padded_or_not() {
        for (expected, text) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_decode(text).unwrap(), expected.as_bytes(), "{text}");
            let unpadded = text.trim_end_matches('=');
            assert_eq!(base64_decode(unpadded).unwrap(), expected.as_bytes());
        }
        // a signature wrapped by `openssl base64` (64 columns, CRLF after a JSON round trip)
        assert_eq!(base64_decode(" Zm9v\r\nYmFy\n").unwrap(), b"foobar");
        // (data-encoding reads concatenated padded blocks: "Zg==Zg==" is "ff", not an error)
        for bad in ["Zm9v!", "Zg=", "Z", "Zg==Z", "Zh=="] {
            let err = base64_decode(bad).unwrap_err();
            assert!(err.starts_with("invalid base64"), "{bad}: {err}");
        }
    }

    #[test]
    fn parses_the_fields() {
        let root = root();
        let leaf = leaf();
        assert_eq!(root.serial, vec![0x00, 0xf0]);
        assert_eq!(root.serial_hex(), "f0");
        assert_eq!(leaf.serial_hex(), "f1");
        assert_eq!(root.subject(), "O=Unit CSO, CN=Unit Root");
        assert_eq!(leaf.subject(), "O=Unit CSO, CN=CS-0001");
        assert_eq!(leaf.issuer(), "O=Unit CSO, CN=Unit Root");
        assert_eq!(leaf.issuer_der, root.subject_der);
        assert_eq!(leaf.subject_cn.as_deref(), Some("CS-0001"));
        assert_eq!(leaf.subject_o.as_deref(), Some("Unit CSO"));
        assert_eq!(root.not_before_ms, days_from_civil(2024, 1, 1) * 86_400_000);
        assert_eq!(root.not_after_ms, days_from_civil(2060, 1, 1) * 86_400_000);
        assert_eq!(format_time(leaf.not_before_ms), "2024-02-01T12:00:00Z");
        assert_eq!(format_time(leaf.not_after_ms), "2034-02-01T12:00:00Z");
        assert!(root.is_ca && root.self_signed);
        assert!(!leaf.is_ca && !leaf.self_signed);
        assert_eq!(root.key_usage, Some(KEY_USAGE_KEY_CERT_SIGN | 1 << 6));
        assert_eq!(leaf.key_usage, Some(1));
        assert_eq!(leaf.public_key_bits.len(), 65);
        assert_eq!(leaf.public_key_bits[0], 4);
        assert_eq!(leaf.spki_der.len(), 91);
        assert!(leaf.spki_der.ends_with(&leaf.public_key_bits));
        assert_eq!(leaf.key, KeyKind::EcP256);
        assert_eq!(leaf.to_pem(), LEAF);
    }

    #[test]
    fn serial_hex_is_ocpp_form() {
        let with = |serial: &[u8]| Certificate {
            serial: serial.to_vec(),
            ..root()
        };
        assert_eq!(with(&[0x00]).serial_hex(), "0");
        assert_eq!(with(&[0x0a]).serial_hex(), "a");
        assert_eq!(with(&[0x01, 0x00]).serial_hex(), "100");
        assert_eq!(with(&[0x00, 0xff, 0x0e]).serial_hex(), "ff0e");
    }

    #[test]
    fn hash_data_matches_openssl_ocsp() {
        let root = root();
        let leaf = leaf();
        let h = hash_data(&leaf, Some(&root), HashAlgorithmEnum::Sha256);
        assert_eq!(h.issuer_name_hash, NAME_HASH);
        assert_eq!(h.issuer_key_hash, KEY_HASH);
        assert_eq!(h.serial_number, "f1");
        // a root is its own issuer
        let r = hash_data(&root, None, HashAlgorithmEnum::Sha256);
        assert_eq!(
            (r.issuer_name_hash.as_str(), r.issuer_key_hash.as_str()),
            (NAME_HASH, KEY_HASH)
        );
        assert_eq!(r.serial_number, "f0");
        // unknown issuer: no key hash, the rest is right
        let u = hash_data(&leaf, None, HashAlgorithmEnum::Sha256);
        assert_eq!(u.issuer_key_hash, "");
        assert_eq!(u.issuer_name_hash, NAME_HASH);
        let long = hash_data(&leaf, Some(&root), HashAlgorithmEnum::Sha512);
        assert_eq!(long.issuer_name_hash.len(), 128);
        assert_eq!(
            hash_data(&leaf, Some(&root), HashAlgorithmEnum::Sha384)
                .issuer_key_hash
                .len(),
            96
        );
    }

    #[test]
    fn hash_data_matching_ignores_case_and_leading_zeroes() {
        let h = hash_data(&leaf(), Some(&root()), HashAlgorithmEnum::Sha256);
        let mut csms = h.clone();
        csms.issuer_name_hash = csms.issuer_name_hash.to_uppercase();
        csms.issuer_key_hash = csms.issuer_key_hash.to_uppercase();
        csms.serial_number = "00F1".into();
        assert!(hash_data_matches(&h, &csms));
        csms.serial_number = "F2".into();
        assert!(!hash_data_matches(&h, &csms));
        let other_alg = hash_data(&leaf(), Some(&root()), HashAlgorithmEnum::Sha384);
        assert!(!hash_data_matches(&h, &other_alg));
        let root_hash = hash_data(&root(), None, HashAlgorithmEnum::Sha256);
        assert!(!hash_data_matches(&h, &root_hash));
    }

    #[test]
    fn verifies_the_chain() {
        let (root, leaf) = (root(), leaf());
        for usage in [
            Usage::ClientAuth,
            Usage::ServerAuth,
            Usage::CodeSigning,
            Usage::Any,
        ] {
            verify_chain(
                std::slice::from_ref(&leaf),
                std::slice::from_ref(&root),
                MS_2025,
                usage,
            )
            .unwrap();
        }
        // root included at the end of the chain
        verify_chain(
            &[leaf.clone(), root.clone()],
            std::slice::from_ref(&root),
            MS_2025,
            Usage::ClientAuth,
        )
        .unwrap();
        // the root itself is no end entity, for any usage (rustls-webpki)
        assert!(matches!(
            verify_chain(
                std::slice::from_ref(&root),
                std::slice::from_ref(&root),
                MS_2025,
                Usage::Any,
            ),
            Err(X509Error::WrongUsage { .. })
        ));
        assert!(matches!(
            verify_chain(
                std::slice::from_ref(&root),
                std::slice::from_ref(&root),
                MS_2025,
                Usage::ClientAuth
            ),
            Err(X509Error::WrongUsage { .. })
        ));
        // validity bounds are inclusive
        verify_chain(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&root),
            leaf.not_after_ms,
            Usage::Any,
        )
        .unwrap();
        verify_chain(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&root),
            leaf.not_before_ms,
            Usage::Any,
        )
        .unwrap();
    }

    #[test]
    fn refuses_bad_chains() {
        let (root, leaf) = (root(), leaf());
        let err = verify_chain(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&root),
            leaf.not_after_ms + 1,
            Usage::Any,
        )
        .unwrap_err();
        assert!(matches!(err, X509Error::Expired { .. }));
        assert_eq!(
            err.to_string(),
            "certificate \"O=Unit CSO, CN=CS-0001\" expired at 2034-02-01T12:00:00Z"
        );
        let err = verify_chain(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&root),
            leaf.not_before_ms - 1,
            Usage::Any,
        )
        .unwrap_err();
        assert!(matches!(err, X509Error::NotYetValid { .. }));
        let err = verify_chain(std::slice::from_ref(&leaf), &[], MS_2025, Usage::Any).unwrap_err();
        assert!(matches!(err, X509Error::UnknownIssuer { .. }));
        assert!(err.to_string().contains("\"O=Unit CSO, CN=Unit Root\""));
        assert_eq!(
            verify_chain(&[], std::slice::from_ref(&root), MS_2025, Usage::Any),
            Err(X509Error::EmptyChain)
        );
        // an untrusted self-signed certificate (a CA: webpki refuses it as an end entity first)
        assert!(matches!(
            verify_chain(std::slice::from_ref(&root), &[], MS_2025, Usage::Any),
            Err(X509Error::WrongUsage { .. })
        ));
        // a leaf cannot issue: the leaf "issued" itself in this chain
        assert!(matches!(
            verify_chain(&[leaf.clone(), leaf.clone()], &[], MS_2025, Usage::Any),
            Err(X509Error::BadSignature { .. }) | Err(X509Error::UnknownIssuer { .. })
        ));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let root = root();
        let der = der_of(LEAF);
        // a byte of the subject's CN ("CS-0001" -> "CS-0002")
        let at = der.windows(7).position(|w| w == b"CS-0001").unwrap() + 6;
        let mut tampered = der.clone();
        tampered[at] = b'2';
        let cert = parse_certificate(&tampered).unwrap();
        assert_eq!(cert.subject_cn.as_deref(), Some("CS-0002"));
        let err =
            verify_chain(&[cert], std::slice::from_ref(&root), MS_2025, Usage::Any).unwrap_err();
        assert!(matches!(err, X509Error::BadSignature { .. }), "{err}");
        // the last byte of the signature
        let mut tampered = der.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let cert = parse_certificate(&tampered).unwrap();
        assert!(matches!(
            verify_chain(&[cert], std::slice::from_ref(&root), MS_2025, Usage::Any),
            Err(X509Error::BadSignature { .. })
        ));
        // signed by the root, but checked against the leaf's key
        assert!(verify_chain(&[leaf()], &[leaf()], MS_2025, Usage::Any).is_err());
    }

    #[test]
    fn strict_der() {
        let der = der_of(ROOT);
        let err = |bytes: &[u8]| match parse_certificate(bytes) {
            Err(X509Error::Malformed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(&[]).contains("truncated"));
        assert!(err(b"not a certificate at all").contains("expected SEQUENCE"));
        assert!(err(&der[..der.len() - 1]).contains("truncated"));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(err(&trailing).contains("unexpected data"));
        // the outer length 0x82 0x01 0x81 re-encoded non-minimally as 0x83 0x00 0x01 0x81
        let mut long = vec![0x30, 0x83, 0x00];
        long.extend_from_slice(&der[2..]);
        assert!(err(&long).contains("minimally"));
        let mut indefinite = der.clone();
        indefinite[1] = 0x80;
        assert!(err(&indefinite).contains("indefinite"));
        // the outer signature algorithm changed to ecdsa-with-SHA384
        let mut alg = der.clone();
        let sig_alg = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let at = alg.windows(10).rposition(|w| w == sig_alg).unwrap();
        alg[at + 9] = 0x03;
        assert!(err(&alg).contains("differs"));
        // every truncation fails cleanly
        for n in 0..der.len() {
            assert!(parse_certificate(&der[..n]).is_err());
        }
    }

    /// A DER element with a short length (test inputs only).
    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        assert!(contents.len() < 0x80);
        [&[tag, contents.len() as u8], contents].concat()
    }

    #[test]
    fn times() {
        let parse = |tag: u8, s: &str| {
            x509_cert::time::Time::from_der(&tlv(tag, s.as_bytes())).map(|t| time_ms(&t))
        };
        const UTC_TIME: u8 = 0x17;
        const GENERALIZED_TIME: u8 = 0x18;
        assert_eq!(parse(UTC_TIME, "700101000000Z"), Ok(0));
        assert_eq!(parse(UTC_TIME, "491231235959Z"), Ok(2_524_607_999_000));
        // der's dates start in 1970: a UTCTime of 1950-1969 (which the home-made reader took
        // as negative milliseconds) is refused; no certificate OCPP handles starts that early.
        assert!(parse(UTC_TIME, "500101000000Z").is_err());
        assert_eq!(
            parse(GENERALIZED_TIME, "20491231235959Z"),
            Ok(2_524_607_999_000)
        );
        assert_eq!(
            parse(GENERALIZED_TIME, "99991231235959Z"),
            Ok(253_402_300_799_000)
        );
        assert_eq!(parse(UTC_TIME, "240229000000Z"), Ok(1_709_164_800_000));
        for bad in [
            "230229000000Z",
            "241301000000Z",
            "240101240000Z",
            "2401010000Z",
            "240101000000+0100",
            "24010100000aZ",
        ] {
            assert!(parse(UTC_TIME, bad).is_err(), "{bad}");
        }
        assert!(parse(GENERALIZED_TIME, "20240101000000.5Z").is_err());
        assert!(parse(0x02, "240101000000Z").is_err());
        assert_eq!(format_time(-1), "1969-12-31T23:59:59Z");
        for days in [-800_000, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn names() {
        let sequence = |parts: &[&[u8]]| tlv(0x30, &parts.concat());
        let atv = |oid: &[u8], tag: u8, v: &[u8]| sequence(&[&tlv(0x06, oid), &tlv(tag, v)]);
        let name = sequence(&[
            &tlv(0x31, &atv(&[0x55, 0x04, 0x06], 0x13, b"NL")),
            // a multi-valued RDN, in DER order (a SET OF is sorted by encoding)
            &tlv(
                0x31,
                &[
                    atv(&[0x2a, 0x03], 0x04, &[0xab]),
                    atv(&[0x55, 0x04, 0x0a], 0x1e, &[0, b'A', 0x20, 0xac]),
                ]
                .concat(),
            ),
        ]);
        assert_eq!(name_to_string(&name), "C=NL, 1.2.3=#ab + O=A\u{20ac}");
        assert_eq!(name_to_string(&[0x30, 0x01]), "<malformed name>");
        assert_eq!(name_to_string(&[0x30, 0x00]), "");
    }

    #[test]
    fn key_csr_and_signature() {
        let rng = ring::rand::SystemRandom::new();
        let (pkcs8, spki) = generate_key(&rng).unwrap();
        assert_eq!(key_spki(&pkcs8, &rng).unwrap(), spki);
        let csr = build_csr("Test CSO", "CS-0001", &spki, &|m| {
            sign_with(&pkcs8, m, &rng)
        })
        .unwrap();
        // CertificationRequest ::= SEQUENCE { info, algorithm, signature }
        let req = x509_cert::request::CertReq::from_der(&csr).unwrap();
        assert_eq!(req.algorithm.oid, OID_ECDSA_SHA256);
        assert_eq!(req.algorithm.parameters, None);
        let info_der = req.info.to_der().unwrap();
        assert!(csr.windows(info_der.len()).any(|w| w == info_der));
        UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, &spki[spki.len() - 65..])
            .verify(&info_der, req.signature.as_bytes().unwrap())
            .unwrap();
        assert_eq!(req.info.version, x509_cert::request::Version::V1);
        assert_eq!(
            name_to_string(&req.info.subject.to_der().unwrap()),
            "O=Test CSO, CN=CS-0001"
        );
        assert_eq!(req.info.public_key.to_der().unwrap(), spki);
        assert!(req.info.attributes.is_empty());
        // both names UTF8String (A00.FR.509/511)
        assert!(
            req.info
                .subject
                .iter()
                .all(|atv| atv.value.tag() == Tag::Utf8String)
        );

        // no organization
        let csr = build_csr("", "CS-0001", &spki, &|m| sign_with(&pkcs8, m, &rng)).unwrap();
        assert!(csr.windows(3).all(|w| w != [0x55, 0x04, 0x0a]));
        // another key's signature is caught
        let (other, _) = generate_key(&rng).unwrap();
        let err = build_csr("O", "CN", &spki, &|m| sign_with(&other, m, &rng)).unwrap_err();
        assert!(matches!(err, X509Error::Crypto(_)));
        assert!(build_csr("O", "", &spki, &|m| sign_with(&pkcs8, m, &rng)).is_err());
        assert!(build_csr("O", &"x".repeat(65), &spki, &|m| sign_with(&pkcs8, m, &rng)).is_err());
        assert!(build_csr("O", "CN", &leaf().der, &|m| sign_with(&pkcs8, m, &rng)).is_err());
        // a key that is not PKCS#8 P-256
        assert!(matches!(
            sign_with(b"junk", b"m", &rng),
            Err(X509Error::Crypto(_))
        ));
    }
}
