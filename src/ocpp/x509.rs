//! X.509 certificates for OCPP 2.0.1 security: the charging station's own key and certificate
//! (A02/A03 SignCertificate/CertificateSigned) and the installed CA certificates (M03
//! GetInstalledCertificateIds, M04 DeleteCertificate, M05 InstallCertificate), plus firmware
//! signing certificates (L01).
//!
//! Pure, like the rest of the core: no IO, no clock, no OS randomness. Time comes in as UTC
//! milliseconds since the epoch; randomness (key generation, ECDSA signing) as a
//! `&dyn ring::rand::SecureRandom`, which the shell creates (`ring::rand::SystemRandom::new()`).
//!
//! * PEM: [`pem_blocks`], [`to_pem`], [`parse_pem_certificates`]. OCPP transmits certificates
//!   and CSRs as PEM (A00.FR.507, A02.FR.03).
//! * Certificates: [`parse_certificate`] into a [`Certificate`] with the fields OCPP needs.
//! * OCPP `CertificateHashDataType`: [`hash_data`], [`hash_data_matches`].
//! * Chain verification: [`verify_chain`], by rustls-webpki (the verifier of the agent's TLS
//!   connections) with the time passed in, plus the root's validity and issuers' keyCertSign;
//!   the field reader below only names the certificate an error concerns.
//! * Firmware signatures: [`verify_file_signature`] (`ring`).
//! * Key and CSR: [`generate_key`] (ECDSA P-256, PKCS#8), [`key_spki`], [`sign_with`],
//!   [`build_csr`] (PKCS#10, RFC 2986).
//!
//! The DER reader is strict (definite minimal lengths, no trailing data, the inner and outer
//! signature algorithms equal) and never panics on bad input; errors say what was wrong in
//! words ([`X509Error`]'s `Display`), not as a dump of the DER tree.

use crate::ocpp::clock::{civil_from_days, days_from_civil, days_in_month};
use crate::ocpp::v201::{CertificateHashData, HashAlgorithmEnum};
use ring::rand::SecureRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use std::fmt;

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

/// Decodes every PEM block labelled `label` (e.g. `"CERTIFICATE"`, `"CERTIFICATE REQUEST"`,
/// `"PRIVATE KEY"`) in `text`, in order.
///
/// Text around the blocks and blocks with other labels are ignored. Line breaks may be `\n` or
/// `\r\n`, lines may have any length, and a whole block on one line (as some CSMSs send PEM in
/// JSON) is accepted. An error if no block has the label, if a block lacks its END line, is
/// empty, has bad base64, or has RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, …).
pub fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>, X509Error> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let label_end = after
            .find("-----")
            .filter(|&i| !after[..i].contains('\n'))
            .ok_or_else(|| X509Error::Pem("a BEGIN line is not closed by \"-----\"".into()))?;
        let this = &after[..label_end];
        let body_and_rest = &after[label_end + 5..];
        let end_line = format!("-----END {this}-----");
        let body_end = body_and_rest
            .find(&end_line)
            .ok_or_else(|| X509Error::Pem(format!("the {this} block has no END line")))?;
        let body = &body_and_rest[..body_end];
        if body.contains(BEGIN) {
            return Err(X509Error::Pem(format!(
                "the {this} block has no END line before the next BEGIN line"
            )));
        }
        if this == label {
            let n = blocks.len() + 1;
            if body.contains(':') {
                return Err(X509Error::Pem(format!(
                    "{label} block {n} has headers (an encrypted key?), which are not supported"
                )));
            }
            let der = base64_decode(body)
                .map_err(|e| X509Error::Pem(format!("{label} block {n}: {e}")))?;
            if der.is_empty() {
                return Err(X509Error::Pem(format!("{label} block {n} is empty")));
            }
            blocks.push(der);
        }
        rest = &body_and_rest[body_end + end_line.len()..];
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
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut column = 0;
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            let c = if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            };
            out.push(c);
            column += 1;
            if column == 64 {
                out.push('\n');
                column = 0;
            }
        }
    }
    if column != 0 {
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes base64 (RFC 4648, with padding; whitespace between the digits is skipped).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits, mut digits, mut padding) = (0u32, 0u32, 0usize, 0usize);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err("invalid base64 character"),
        };
        if padding > 0 {
            return Err("base64 data after the padding");
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        digits += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if digits % 4 == 1 || padding > 2 || (padding > 0 && (digits + padding) % 4 != 0) {
        return Err("truncated base64");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// DER reading
// ---------------------------------------------------------------------------------------------

const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// A cursor over DER-encoded elements.
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// Reads one element: its tag, contents and the whole TLV.
    fn next(&mut self, what: &str) -> Result<(u8, &'a [u8], &'a [u8]), X509Error> {
        let d = self.0;
        if d.len() < 2 {
            return Err(malformed(what, "truncated"));
        }
        let tag = d[0];
        if tag & 0x1f == 0x1f {
            return Err(malformed(what, "high tag numbers are not used in X.509"));
        }
        let (len, header) = match d[1] {
            n if n < 0x80 => (usize::from(n), 2),
            0x80 => return Err(malformed(what, "indefinite length (BER, not DER)")),
            n => {
                let k = usize::from(n & 0x7f);
                if k > 4 || d.len() < 2 + k {
                    return Err(malformed(what, "truncated or oversized length"));
                }
                let len = d[2..2 + k]
                    .iter()
                    .fold(0usize, |len, &b| (len << 8) | usize::from(b));
                if d[2] == 0 || len < 0x80 {
                    return Err(malformed(what, "length not minimally encoded (not DER)"));
                }
                (len, 2 + k)
            }
        };
        if d.len() - header < len {
            return Err(malformed(what, "truncated"));
        }
        let (whole, rest) = d.split_at(header + len);
        self.0 = rest;
        Ok((tag, &whole[header..], whole))
    }

    /// Reads an element that must have `tag`: (contents, whole TLV).
    fn expect_tlv(&mut self, tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), X509Error> {
        // The tag first: for garbage, "expected SEQUENCE" says more than "truncated".
        if let Some(&found) = self.0.first().filter(|&&t| t != tag) {
            return Err(malformed(
                what,
                &format!("expected {}, found {}", tag_name(tag), tag_name(found)),
            ));
        }
        let (found, contents, whole) = self.next(what)?;
        if found != tag {
            return Err(malformed(
                what,
                &format!("expected {}, found {}", tag_name(tag), tag_name(found)),
            ));
        }
        Ok((contents, whole))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], X509Error> {
        self.expect_tlv(tag, what).map(|(contents, _)| contents)
    }

    /// Reads the next element if it has `tag`.
    fn optional(&mut self, tag: u8, what: &str) -> Result<Option<&'a [u8]>, X509Error> {
        if self.0.first() == Some(&tag) {
            self.expect(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn end(&self, what: &str) -> Result<(), X509Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(malformed(what, "unexpected data after the last field"))
        }
    }
}

fn tag_name(tag: u8) -> String {
    match tag {
        BOOLEAN => "BOOLEAN".into(),
        INTEGER => "INTEGER".into(),
        BIT_STRING => "BIT STRING".into(),
        OCTET_STRING => "OCTET STRING".into(),
        0x05 => "NULL".into(),
        OID => "OBJECT IDENTIFIER".into(),
        UTC_TIME => "UTCTime".into(),
        GENERALIZED_TIME => "GeneralizedTime".into(),
        SEQUENCE => "SEQUENCE".into(),
        SET => "SET".into(),
        t if t & 0xc0 == 0x80 => format!("[{}]", t & 0x1f),
        t => format!("tag 0x{t:02x}"),
    }
}

/// Parses `data` as exactly one element with `tag` and returns its contents.
fn single<'a>(data: &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], X509Error> {
    let mut d = Der(data);
    let contents = d.expect(tag, what)?;
    d.end(what)?;
    Ok(contents)
}

/// INTEGER contents: non-empty and minimally encoded.
fn check_integer(c: &[u8], what: &str) -> Result<(), X509Error> {
    match c {
        [] => Err(malformed(what, "empty INTEGER")),
        [0x00, b, ..] if b & 0x80 == 0 => Err(malformed(what, "INTEGER not minimally encoded")),
        [0xff, b, ..] if b & 0x80 != 0 => Err(malformed(what, "INTEGER not minimally encoded")),
        _ => Ok(()),
    }
}

/// A small non-negative INTEGER (version, pathLenConstraint, saltLength).
fn small_uint(c: &[u8], what: &str) -> Result<u32, X509Error> {
    check_integer(c, what)?;
    if c[0] & 0x80 != 0 {
        return Err(malformed(what, "negative value"));
    }
    let c = if c[0] == 0 { &c[1..] } else { c };
    if c.len() > 4 {
        return Err(malformed(what, "value too large"));
    }
    Ok(c.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)))
}

fn boolean(c: &[u8], what: &str) -> Result<bool, X509Error> {
    match c {
        [b] => Ok(*b != 0),
        _ => Err(malformed(what, "BOOLEAN must be one byte")),
    }
}

/// BIT STRING contents without the unused-bits byte, which must be 0 (keys and signatures are
/// whole bytes).
fn bit_string<'a>(c: &'a [u8], what: &str) -> Result<&'a [u8], X509Error> {
    match c {
        [0, rest @ ..] => Ok(rest),
        [] => Err(malformed(what, "empty BIT STRING")),
        _ => Err(malformed(what, "BIT STRING with unused bits")),
    }
}

// ---------------------------------------------------------------------------------------------
// Object identifiers (DER contents)
// ---------------------------------------------------------------------------------------------

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
const NAME_ATTRIBUTES: &[(&[u8], &str)] = &[
    (OID_CN, "CN"),
    (OID_O, "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "emailAddress",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
];

const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// Extensions that may be critical although only read for information (or not at all):
/// subjectAltName, subjectKeyIdentifier, authorityKeyIdentifier.
const OIDS_HARMLESS: &[&[u8]] = &[
    &[0x55, 0x1d, 0x11],
    &[0x55, 0x1d, 0x0e],
    &[0x55, 0x1d, 0x23],
];

const OID_EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

/// Dotted form of an OID's DER contents, for messages.
fn oid_string(oid: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut v = 0u64;
    for &b in oid {
        v = v.wrapping_shl(7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
        }
    }
    let Some((&first, rest)) = arcs.split_first() else {
        return "<empty OID>".into();
    };
    let (a, b) = if first < 80 {
        (first / 40, first % 40)
    } else {
        (2, first - 80)
    };
    let mut s = format!("{a}.{b}");
    for arc in rest {
        s.push_str(&format!(".{arc}"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// One attribute of a Name: the index of its relative distinguished name, type and value.
struct Attribute<'a> {
    rdn: usize,
    oid: &'a [u8],
    tag: u8,
    value: &'a [u8],
}

/// The attributes of a Name (its SEQUENCE contents), in order.
fn name_attributes(name: &[u8]) -> Result<Vec<Attribute<'_>>, X509Error> {
    let mut out = Vec::new();
    let mut rdns = Der(name);
    let mut index = 0;
    while !rdns.is_empty() {
        let mut set = Der(rdns.expect(SET, "Name")?);
        if set.is_empty() {
            return Err(malformed("Name", "empty relative distinguished name"));
        }
        while !set.is_empty() {
            let mut atv = Der(set.expect(SEQUENCE, "Name attribute")?);
            let oid = atv.expect(OID, "Name attribute type")?;
            let (tag, value, _) = atv.next("Name attribute value")?;
            atv.end("Name attribute")?;
            out.push(Attribute {
                rdn: index,
                oid,
                tag,
                value,
            });
        }
        index += 1;
    }
    Ok(out)
}

/// Decodes a directory string; `None` for non-string types or invalid encodings.
fn decode_string(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        UTF8_STRING => String::from_utf8(v.to_vec()).ok(),
        // PrintableString, IA5String, NumericString, VisibleString
        0x13 | 0x16 | 0x12 | 0x1a => v.is_ascii().then(|| v.iter().map(|&b| b as char).collect()),
        // TeletexString: treated as Latin-1, as most software does
        0x14 => Some(v.iter().map(|&b| b as char).collect()),
        // BMPString: UCS-2 big-endian
        0x1e if v.len() % 2 == 0 => {
            char::decode_utf16(v.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
                .collect::<Result<String, _>>()
                .ok()
        }
        // UniversalString: UCS-4 big-endian
        0x1c if v.len() % 4 == 0 => v
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// Renders a Name (the full TLV, as in [`Certificate::subject_der`]) for people, in DER order:
/// `O=Test CSO, CN=CS001` (the format of `openssl x509 -nameopt sep_comma_plus_space,sname`).
/// Unknown attribute types appear as dotted OIDs, non-string values as `#` and hex. Values are
/// not escaped.
pub fn name_to_string(name_der: &[u8]) -> String {
    let attributes = single(name_der, SEQUENCE, "Name").and_then(name_attributes);
    let Ok(attributes) = attributes else {
        return "<malformed name>".into();
    };
    let mut out = String::new();
    let mut last_rdn = None;
    for Attribute {
        rdn,
        oid,
        tag,
        value,
    } in attributes
    {
        if let Some(last) = last_rdn {
            out.push_str(if last == rdn { " + " } else { ", " });
        }
        last_rdn = Some(rdn);
        match NAME_ATTRIBUTES.iter().find(|(o, _)| *o == oid) {
            Some((_, short)) => out.push_str(short),
            None => out.push_str(&oid_string(oid)),
        }
        out.push('=');
        match decode_string(tag, value) {
            Some(s) => out.push_str(&s),
            None => {
                out.push('#');
                out.push_str(&hex(value));
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

/// Parses a `Time` (RFC 5280 4.1.2.5): UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or
/// GeneralizedTime `YYYYMMDDHHMMSSZ`, to UTC milliseconds since the epoch.
fn parse_time(d: &mut Der, what: &str) -> Result<i64, X509Error> {
    let (tag, c, _) = d.next(what)?;
    let bad = || malformed(what, "not a valid RFC 5280 time (YYMMDDHHMMSSZ)");
    let number = |digits: &[u8]| -> Option<i64> {
        digits.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, c.len()) {
        (UTC_TIME, 13) => {
            let yy = number(&c[..2]).ok_or_else(bad)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &c[2..])
        }
        (GENERALIZED_TIME, 15) => (number(&c[..4]).ok_or_else(bad)?, &c[4..]),
        (UTC_TIME | GENERALIZED_TIME, _) => return Err(bad()),
        (t, _) => {
            return Err(malformed(
                what,
                &format!("expected UTCTime or GeneralizedTime, found {}", tag_name(t)),
            ));
        }
    };
    if rest[10] != b'Z' {
        return Err(bad());
    }
    let field = |i: usize| number(&rest[i..i + 2]).ok_or_else(bad);
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
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

/// Parses SubjectPublicKeyInfo contents: the key type and the subjectPublicKey BIT STRING
/// contents without the unused-bits byte.
fn parse_spki(spki: &[u8]) -> Result<(KeyKind, &[u8]), X509Error> {
    let mut d = Der(spki);
    let mut alg = Der(d.expect(SEQUENCE, "subjectPublicKeyInfo algorithm")?);
    let bits = bit_string(
        d.expect(BIT_STRING, "subjectPublicKey")?,
        "subjectPublicKey",
    )?;
    d.end("subjectPublicKeyInfo")?;
    let oid = alg.expect(OID, "public key algorithm")?;
    let params = alg.0;
    let kind = match oid {
        OID_EC_PUBLIC_KEY => match single(params, OID, "EC curve") {
            Ok(OID_P256) => KeyKind::EcP256,
            Ok(OID_P384) => KeyKind::EcP384,
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
    has_basic_constraints: bool,
    path_len: Option<u32>,
    /// keyUsage bits, bit n of the BIT STRING (0 = digitalSignature, 5 = keyCertSign) as 1 << n.
    key_usage: Option<u16>,
    ext_key_usage: Option<Vec<Vec<u8>>>,
    unsupported_critical: Option<String>,
    key: KeyKind,
    tbs: (usize, usize),
    signature_algorithm: Vec<u8>,
    signature: Vec<u8>,
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

/// Parses one DER certificate (RFC 5280 4.1). Accepts v1 and v3 certificates with any public
/// key and signature algorithm (unsupported ones fail only in verification); rejects BER
/// encodings, trailing bytes, different inner and outer signature algorithms, duplicated
/// extensions and invalid times.
pub fn parse_certificate(der: &[u8]) -> Result<Certificate, X509Error> {
    let mut outer = Der(der);
    let contents = outer.expect(SEQUENCE, "certificate")?;
    outer.end("certificate")?;
    let mut cert = Der(contents);
    let (tbs, tbs_whole) = cert.expect_tlv(SEQUENCE, "tbsCertificate")?;
    let signature_algorithm = cert.expect(SEQUENCE, "signatureAlgorithm")?;
    let signature = bit_string(cert.expect(BIT_STRING, "signatureValue")?, "signatureValue")?;
    cert.end("certificate")?;

    let mut t = Der(tbs);
    let version = match t.optional(0xa0, "version")? {
        Some(v) => small_uint(single(v, INTEGER, "version")?, "version")?,
        None => 0,
    };
    if version > 2 {
        return Err(malformed("version", "unknown certificate version"));
    }
    let serial = t.expect(INTEGER, "serialNumber")?;
    check_integer(serial, "serialNumber")?;
    if t.expect(SEQUENCE, "signature")? != signature_algorithm {
        return Err(malformed(
            "signature",
            "the signature algorithm inside tbsCertificate differs from the outer one",
        ));
    }
    let (issuer, issuer_der) = t.expect_tlv(SEQUENCE, "issuer")?;
    let mut validity = Der(t.expect(SEQUENCE, "validity")?);
    let not_before_ms = parse_time(&mut validity, "notBefore")?;
    let not_after_ms = parse_time(&mut validity, "notAfter")?;
    validity.end("validity")?;
    let (subject, subject_der) = t.expect_tlv(SEQUENCE, "subject")?;
    let (spki, spki_der) = t.expect_tlv(SEQUENCE, "subjectPublicKeyInfo")?;
    let (key, public_key_bits) = parse_spki(spki)?;
    t.optional(0x81, "issuerUniqueID")?;
    t.optional(0x82, "subjectUniqueID")?;
    let extensions = t.optional(0xa3, "extensions")?;
    t.end("tbsCertificate")?;

    name_attributes(issuer)?;
    let mut subject_cn = None;
    let mut subject_o = None;
    for Attribute {
        oid, tag, value, ..
    } in name_attributes(subject)?
    {
        let slot = match oid {
            OID_CN => &mut subject_cn,
            OID_O => &mut subject_o,
            _ => continue,
        };
        if slot.is_none() {
            let what = if oid == OID_CN {
                "subject commonName"
            } else {
                "subject organizationName"
            };
            *slot = Some(decode_string(tag, value).ok_or_else(|| malformed(what, "not a string"))?);
        }
    }

    // tbsCertificate is the first element of the outer SEQUENCE, which spans all of `der`.
    let tbs_start = der.len() - contents.len();
    let mut c = Certificate {
        der: der.to_vec(),
        serial: serial.to_vec(),
        issuer_der: issuer_der.to_vec(),
        subject_der: subject_der.to_vec(),
        subject_cn,
        subject_o,
        not_before_ms,
        not_after_ms,
        spki_der: spki_der.to_vec(),
        public_key_bits: public_key_bits.to_vec(),
        is_ca: false,
        self_signed: issuer_der == subject_der,
        has_basic_constraints: false,
        path_len: None,
        key_usage: None,
        ext_key_usage: None,
        unsupported_critical: None,
        key,
        tbs: (tbs_start, tbs_start + tbs_whole.len()),
        signature_algorithm: signature_algorithm.to_vec(),
        signature: signature.to_vec(),
    };
    if let Some(extensions) = extensions {
        if version != 2 {
            return Err(malformed(
                "extensions",
                "only v3 certificates have extensions",
            ));
        }
        parse_extensions(extensions, &mut c)?;
    }
    Ok(c)
}

fn parse_extensions(extensions: &[u8], c: &mut Certificate) -> Result<(), X509Error> {
    let mut list = Der(single(extensions, SEQUENCE, "extensions")?);
    let mut seen: Vec<&[u8]> = Vec::new();
    while !list.is_empty() {
        let mut e = Der(list.expect(SEQUENCE, "extension")?);
        let oid = e.expect(OID, "extension id")?;
        let critical = match e.optional(BOOLEAN, "extension critical flag")? {
            Some(b) => boolean(b, "extension critical flag")?,
            None => false,
        };
        let value = e.expect(OCTET_STRING, "extension value")?;
        e.end("extension")?;
        if seen.contains(&oid) {
            return Err(malformed(
                "extensions",
                &format!("extension {} appears twice", oid_string(oid)),
            ));
        }
        seen.push(oid);
        match oid {
            OID_BASIC_CONSTRAINTS => {
                let mut bc = Der(single(value, SEQUENCE, "basicConstraints")?);
                c.has_basic_constraints = true;
                c.is_ca = match bc.optional(BOOLEAN, "basicConstraints cA")? {
                    Some(b) => boolean(b, "basicConstraints cA")?,
                    None => false,
                };
                c.path_len = match bc.optional(INTEGER, "pathLenConstraint")? {
                    Some(n) => Some(small_uint(n, "pathLenConstraint")?),
                    None => None,
                };
                bc.end("basicConstraints")?;
            }
            OID_KEY_USAGE => {
                let bits = single(value, BIT_STRING, "keyUsage")?;
                if bits.is_empty() || bits[0] > 7 {
                    return Err(malformed("keyUsage", "bad BIT STRING"));
                }
                let byte = |i: usize| u16::from(bits.get(i).copied().unwrap_or(0).reverse_bits());
                c.key_usage = Some(byte(1) | (byte(2) << 8));
            }
            OID_EXT_KEY_USAGE => {
                let mut purposes = Der(single(value, SEQUENCE, "extKeyUsage")?);
                let mut list = Vec::new();
                while !purposes.is_empty() {
                    list.push(purposes.expect(OID, "extKeyUsage purpose")?.to_vec());
                }
                c.ext_key_usage = Some(list);
            }
            _ if critical && !OIDS_HARMLESS.contains(&oid) => {
                c.unsupported_critical
                    .get_or_insert_with(|| oid_string(oid));
            }
            _ => {}
        }
    }
    Ok(())
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
    let mut k = Der(single(key, SEQUENCE, "RSAPublicKey").ok()?);
    let modulus = k.expect(INTEGER, "modulus").ok()?;
    check_integer(modulus, "modulus").ok()?;
    let modulus = match modulus {
        [0, rest @ ..] => rest,
        m => m,
    };
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

/// The contents of a DER TLV (what webpki keeps of names and keys in a trust anchor).
fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    let mut d = Der(tlv);
    let (_, contents, _) = d.next("").ok()?;
    d.is_empty().then_some(contents)
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
// DER writing, keys and CSRs
// ---------------------------------------------------------------------------------------------

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

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

/// The SubjectPublicKeyInfo DER of an ECDSA P-256 PKCS#8 private key (as [`generate_key`]
/// returns it), e.g. to check that a certificate from CertificateSignedRequest belongs to the
/// key: `cert.spki_der == key_spki(..)?`.
pub fn key_spki(pkcs8: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>, X509Error> {
    let key_pair = p256_key_pair(pkcs8, rng)?;
    let algorithm = sequence(&[&tlv(OID, OID_EC_PUBLIC_KEY), &tlv(OID, OID_P256)]);
    let mut bits = vec![0];
    bits.extend_from_slice(key_pair.public_key().as_ref());
    Ok(sequence(&[&algorithm, &tlv(BIT_STRING, &bits)]))
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
/// (A02.FR.03: send it PEM encoded, `to_pem("CERTIFICATE REQUEST", &der)`):
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
    let (key, public_key) = parse_spki(single(spki_der, SEQUENCE, "subjectPublicKeyInfo")?)?;
    let (signature_oid, verify): (&[u8], Verifier) = match key {
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
    let rdn = |oid: &[u8], value: &str| {
        tlv(
            SET,
            &sequence(&[&tlv(OID, oid), &tlv(UTF8_STRING, value.as_bytes())]),
        )
    };
    let mut name = Vec::new();
    if !organization.is_empty() {
        name.extend(rdn(OID_O, organization));
    }
    name.extend(rdn(OID_CN, common_name));
    let info = sequence(&[
        &[INTEGER, 1, 0],
        &tlv(SEQUENCE, &name),
        spki_der,
        &[0xa0, 0x00],
    ]);
    let signature = sign(&info)?;
    UnparsedPublicKey::new(verify, public_key)
        .verify(&info, &signature)
        .map_err(|_| {
            X509Error::Crypto(
                "the CSR signature does not verify with the CSR's public key (wrong key?)".into(),
            )
        })?;
    let mut bits = vec![0];
    bits.extend(signature);
    Ok(sequence(&[
        &info,
        &sequence(&[&tlv(OID, signature_oid)]),
        &tlv(BIT_STRING, &bits),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let pem = to_pem("TEST", &data);
            assert!(pem.lines().all(|l| l.len() <= 64));
            assert!(pem.ends_with("-----END TEST-----\n"));
            if len > 0 {
                assert_eq!(pem_blocks(&pem, "TEST").unwrap(), vec![data]);
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
        assert!(err(&ROOT.replace("MIIB", "MI*B")).contains("invalid base64"));
        assert!(err(&ROOT.replace("oyB82KE=", "oyB82")).contains("truncated base64"));
        assert!(err(&ROOT.replace("oyB82KE=", "oyB82KE=A")).contains("after the padding"));
        assert!(err("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----").contains("empty"));
        assert!(
            err("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END CERTIFICATE-----")
                .contains("headers")
        );
        let two_begins = format!("-----BEGIN CERTIFICATE-----\nAAAA\n{ROOT}");
        assert!(err(&two_begins).contains("before the next BEGIN"));
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

    #[test]
    fn times() {
        let parse = |tag: u8, s: &str| parse_time(&mut Der(&tlv(tag, s.as_bytes())), "t");
        assert_eq!(parse(UTC_TIME, "700101000000Z"), Ok(0));
        assert_eq!(parse(UTC_TIME, "491231235959Z"), Ok(2_524_607_999_000));
        assert_eq!(parse(UTC_TIME, "500101000000Z"), Ok(-631_152_000_000));
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
        assert!(parse(INTEGER, "240101000000Z").is_err());
        assert_eq!(format_time(-1), "1969-12-31T23:59:59Z");
        for days in [-800_000, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn names_and_oids() {
        assert_eq!(oid_string(OID_P256), "1.2.840.10045.3.1.7");
        assert_eq!(oid_string(OID_ED25519), "1.3.101.112");
        assert_eq!(oid_string(&[0x88, 0x37, 0x03]), "2.999.3");
        let atv = |oid: &[u8], tag: u8, v: &[u8]| sequence(&[&tlv(OID, oid), &tlv(tag, v)]);
        let name = sequence(&[
            &tlv(SET, &atv(&[0x55, 0x04, 0x06], 0x13, b"NL")),
            &tlv(
                SET,
                &[
                    atv(OID_O, 0x1e, &[0, b'A', 0x20, 0xac]),
                    atv(&[0x2a, 0x03], 0x04, &[0xab]),
                ]
                .concat(),
            ),
        ]);
        assert_eq!(name_to_string(&name), "C=NL, O=A\u{20ac} + 1.2.3=#ab");
        assert_eq!(name_to_string(&[0x30, 0x01]), "<malformed name>");
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
        let mut outer = Der(single(&csr, SEQUENCE, "csr").unwrap());
        let (info, info_whole) = outer.expect_tlv(SEQUENCE, "info").unwrap();
        assert_eq!(
            outer.expect(SEQUENCE, "alg").unwrap(),
            tlv(OID, OID_ECDSA_SHA256)
        );
        let signature = bit_string(outer.expect(BIT_STRING, "sig").unwrap(), "sig").unwrap();
        outer.end("csr").unwrap();
        UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_ASN1, &spki[spki.len() - 65..])
            .verify(info_whole, signature)
            .unwrap();
        let mut info = Der(info);
        assert_eq!(info.expect(INTEGER, "version").unwrap(), [0]);
        let (_, subject) = info.expect_tlv(SEQUENCE, "subject").unwrap();
        assert_eq!(name_to_string(subject), "O=Test CSO, CN=CS-0001");
        assert_eq!(
            info.expect_tlv(SEQUENCE, "spki").unwrap().1,
            spki.as_slice()
        );
        assert!(info.expect(0xa0, "attributes").unwrap().is_empty());
        info.end("info").unwrap();

        // no organization
        let csr = build_csr("", "CS-0001", &spki, &|m| sign_with(&pkcs8, m, &rng)).unwrap();
        assert!(csr.windows(3).all(|w| w != OID_O));
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
