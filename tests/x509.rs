//! `ocpp::x509` against the `openssl` command line: certificates, chains and CSRs made by
//! openssl at test time, and the values openssl itself computes from them (serial, names,
//! dates, OCSP CertID hashes), so that the module is checked against an independent
//! implementation rather than against itself.

use ocpp_agent::ocpp::v201::HashAlgorithmEnum;
use ocpp_agent::ocpp::x509::{
    Certificate, Usage, X509Error, build_csr, generate_key, hash_data, hash_data_matches, key_spki,
    parse_certificate, parse_pem_certificates, pem_blocks, sign_with, to_pem, verify_chain,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(dead_code)]
#[path = "support/pki.rs"]
mod pki;

const NAMEOPT: &[&str] = &["-nameopt", "sep_comma_plus_space,sname,utf8"];

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command line tool")
}

/// Runs openssl, which must succeed; returns stdout and stderr together.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `YYYY-MM-DD HH:MM:SSZ` (openssl `-dateopt iso_8601`) to UTC milliseconds.
fn iso_ms(s: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000
}

fn load(path: &Path) -> Certificate {
    let certs = parse_pem_certificates(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(certs.len(), 1);
    certs.into_iter().next().unwrap()
}

/// A certificate made by openssl, with its key.
struct Node {
    pem: PathBuf,
    key: PathBuf,
    cert: Certificate,
}

/// A new private key `{name}.key`: `ec:P-256`, `ec:P-384`, `rsa:2048`, `ed25519`.
fn new_key(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let key = format!("{name}.key");
    let mut args = vec!["genpkey", "-out", &key];
    let bits;
    match kind.split_once(':') {
        Some(("ec", curve)) => {
            bits = format!("ec_paramgen_curve:{curve}");
            args.extend(["-algorithm", "EC", "-pkeyopt", &bits]);
        }
        Some(("rsa", n)) => {
            bits = format!("rsa_keygen_bits:{n}");
            args.extend(["-algorithm", "RSA", "-pkeyopt", &bits]);
        }
        _ => args.extend(["-algorithm", "ED25519"]),
    }
    openssl(dir, &args);
    dir.join(key)
}

/// A self-signed CA `/O=Test CSO/CN={name}` valid from now for 30 days.
fn make_root(dir: &Path, name: &str, kind: &str, extra: &[&str]) -> Node {
    let key = new_key(dir, name, kind);
    let pem = dir.join(format!("{name}.pem"));
    let subject = format!("/O=Test CSO/CN={name}");
    let mut args = vec![
        "req",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &subject,
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        pem.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    let cert = load(&pem);
    Node { pem, key, cert }
}

/// `/O=Test CSO/CN={name}` with a new key of `kind`, signed by `issuer` with `openssl x509
/// -req` (serial `serial`, from now for 30 days, extensions `ext`, more options `extra`).
fn issue(
    dir: &Path,
    name: &str,
    kind: &str,
    issuer: &Node,
    serial: &str,
    ext: &str,
    extra: &[&str],
) -> Node {
    let key = new_key(dir, name, kind);
    let csr = dir.join(format!("{name}.csr"));
    let pem = dir.join(format!("{name}.pem"));
    let ext_file = dir.join(format!("{name}.ext"));
    std::fs::write(&ext_file, ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/O=Test CSO/CN={name}"),
            "-out",
            csr.to_str().unwrap(),
        ],
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        issuer.pem.to_str().unwrap(),
        "-CAkey",
        issuer.key.to_str().unwrap(),
        "-set_serial",
        serial,
        "-days",
        "30",
        "-extfile",
        ext_file.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
    let cert = load(&pem);
    Node { pem, key, cert }
}

const LEAF_EXT: &str =
    "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n";
const CA_EXT: &str = "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign\n";

/// What `openssl x509 -noout -serial -subject -issuer -dates` prints, as (key, value).
fn openssl_fields(dir: &Path, pem: &Path) -> Vec<(String, String)> {
    let mut args = vec![
        "x509",
        "-in",
        pem.to_str().unwrap(),
        "-noout",
        "-serial",
        "-subject",
        "-issuer",
        "-dates",
        "-dateopt",
        "iso_8601",
    ];
    args.extend_from_slice(NAMEOPT);
    openssl(dir, &args)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn assert_fields_match_openssl(dir: &Path, pem: &Path, cert: &Certificate) {
    let fields = openssl_fields(dir, pem);
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .unwrap_or_else(|| panic!("{k} in {fields:?}"))
            .1
            .clone()
    };
    // openssl: upper case, padded to whole bytes ("00" for zero, "0A" for ten)
    let serial = get("serial").to_ascii_lowercase();
    let serial = match serial.trim_start_matches('0') {
        "" => "0".to_owned(),
        s => s.to_owned(),
    };
    assert_eq!(cert.serial_hex(), serial);
    assert_eq!(cert.subject(), get("subject"));
    assert_eq!(cert.issuer(), get("issuer"));
    assert_eq!(cert.not_before_ms, iso_ms(&get("notBefore")));
    assert_eq!(cert.not_after_ms, iso_ms(&get("notAfter")));
}

#[test]
fn fields_match_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // the project's test PKI (openssl ca, UTCTime), a leaf with explicit dates, one past 2049
    // (GeneralizedTime)
    let ca = pki::Ca::new(dir, "fields");
    let leaf = ca.issue("cs", "/O=Test CSO/CN=CS001", None, None);
    let dated = ca.issue(
        "dated",
        "/O=Test CSO/CN=dated",
        None,
        Some(("200229123456Z", "20550101000000Z")),
    );
    for pem in [&ca.cert, &leaf.cert, &dated.cert] {
        assert_fields_match_openssl(dir, pem, &load(pem));
    }
    let root = load(&ca.cert);
    let leaf = load(&leaf.cert);
    assert!(root.is_ca && root.self_signed);
    assert!(!leaf.is_ca && !leaf.self_signed);
    assert_eq!(leaf.subject_cn.as_deref(), Some("CS001"));
    assert_eq!(leaf.subject_o.as_deref(), Some("Test CSO"));
    assert_eq!(leaf.issuer_der, root.subject_der);
    assert_eq!(
        load(&dated.cert).not_after_ms,
        iso_ms("2055-01-01 00:00:00Z")
    );

    // serials: zero, one nibble, top bit set (DER adds 0x00), 20 bytes, openssl's random one
    for (i, serial) in [
        "0",
        "10",
        "0x7f",
        "255",
        "0x8000",
        "0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff",
        "0x7fffffffffffffffffffffffffffffffffffffff",
    ]
    .iter()
    .enumerate()
    {
        let r = make_root(
            dir,
            &format!("serial{i}"),
            "ec:P-256",
            &["-set_serial", serial],
        );
        assert_fields_match_openssl(dir, &r.pem, &r.cert);
    }
    let random = make_root(dir, "random-serial", "ec:P-256", &[]);
    assert_fields_match_openssl(dir, &random.pem, &random.cert);
    let r = make_root(dir, "ff", "ec:P-256", &["-set_serial", "255"]);
    assert_eq!(r.cert.serial, vec![0x00, 0xff]);
    assert_eq!(r.cert.serial_hex(), "ff");

    // a DER file, and PEM with openssl's -text dump in front, parse to the same certificate
    let der = dir.join("cs.der");
    openssl(
        dir,
        &[
            "x509",
            "-in",
            leaf_path(&ca).to_str().unwrap(),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ],
    );
    assert_eq!(
        parse_certificate(&std::fs::read(&der).unwrap()).unwrap(),
        leaf
    );
    let text = openssl(
        dir,
        &["x509", "-in", leaf_path(&ca).to_str().unwrap(), "-text"],
    );
    assert_eq!(parse_pem_certificates(&text).unwrap(), vec![leaf.clone()]);
    assert_eq!(
        std::fs::read_to_string(leaf_path(&ca)).unwrap(),
        leaf.to_pem()
    );
}

fn leaf_path(ca: &pki::Ca) -> PathBuf {
    ca.dir.join("cs.pem")
}

/// (issuerNameHash, issuerKeyHash, serialNumber) of the OCSP CertID that `openssl ocsp`
/// builds for `cert` issued by `issuer` (RFC 6960 4.1.1, what OCPP's CertificateHashDataType
/// copies), lower-cased.
fn ocsp_cert_id(dir: &Path, issuer: &Path, cert: &Path, digest: &str) -> (String, String, String) {
    let text = openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            issuer.to_str().unwrap(),
            digest,
            "-cert",
            cert.to_str().unwrap(),
            "-no_nonce",
            "-req_text",
        ],
    );
    // long hashes continue on the next line after a backslash
    let text = text.replace("\\\n", "");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .trim()
            .to_ascii_lowercase()
    };
    (
        field("Issuer Name Hash:"),
        field("Issuer Key Hash:"),
        field("Serial Number:"),
    )
}

fn assert_hash_data_matches_openssl(dir: &Path, cert: &Node, issuer: &Node) {
    for (alg, digest) in [
        (HashAlgorithmEnum::Sha256, "-sha256"),
        (HashAlgorithmEnum::Sha384, "-sha384"),
        (HashAlgorithmEnum::Sha512, "-sha512"),
    ] {
        let (name, key, serial) = ocsp_cert_id(dir, &issuer.pem, &cert.pem, digest);
        let ours = hash_data(&cert.cert, Some(&issuer.cert), alg);
        assert_eq!(ours.hash_algorithm, alg);
        assert_eq!(ours.issuer_name_hash, name, "{digest}");
        assert_eq!(ours.issuer_key_hash, key, "{digest}");
        assert_eq!(
            ours.serial_number,
            match serial.trim_start_matches('0') {
                "" => "0",
                s => s,
            }
        );
    }
}

/// The byte ranges `openssl asn1parse` reports: (offset, header length, length, text) of each
/// element at `depth`.
fn asn1_elements(dir: &Path, der: &Path, depth: usize) -> Vec<(usize, usize, usize, String)> {
    let text = openssl(
        dir,
        &["asn1parse", "-inform", "DER", "-in", der.to_str().unwrap()],
    );
    let mut out = Vec::new();
    for line in text.lines() {
        // "   23:d=2  hl=2 l=  34 cons: SEQUENCE"
        let Some((offset, rest)) = line.split_once(":d=") else {
            continue;
        };
        let (d, rest) = rest.split_once("hl=").unwrap();
        let (hl, rest) = rest.split_once("l=").unwrap();
        let (l, what) = rest.trim_start().split_once(' ').unwrap();
        if d.trim().parse::<usize>().unwrap() == depth {
            out.push((
                offset.trim().parse().unwrap(),
                hl.trim().parse().unwrap(),
                l.trim().parse().unwrap(),
                what.to_owned(),
            ));
        }
    }
    out
}

fn sha256_by_openssl(dir: &Path, bytes: &[u8]) -> String {
    let file = dir.join("hash-input.bin");
    std::fs::write(&file, bytes).unwrap();
    let out = openssl(dir, &["dgst", "-sha256", "-r", file.to_str().unwrap()]);
    out.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn hash_data_matches_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root_node = make_root(dir, "Hash Root", "ec:P-256", &[]);
    let sub = issue(
        dir,
        "Hash Sub",
        "ec:P-384",
        &root_node,
        "0x0100",
        CA_EXT,
        &[],
    );
    let leaf = issue(
        dir,
        "CS-7",
        "ec:P-256",
        &sub,
        "0x0a",
        LEAF_EXT,
        &["-sha384"],
    );
    let rsa_root = make_root(dir, "RSA Root", "rsa:2048", &[]);
    let rsa_leaf = issue(dir, "CS-8", "ec:P-256", &rsa_root, "0x00", LEAF_EXT, &[]);

    assert_hash_data_matches_openssl(dir, &leaf, &sub);
    assert_hash_data_matches_openssl(dir, &sub, &root_node);
    assert_hash_data_matches_openssl(dir, &root_node, &root_node);
    assert_hash_data_matches_openssl(dir, &rsa_leaf, &rsa_root);
    assert_hash_data_matches_openssl(dir, &rsa_root, &rsa_root);
    // a root without a given issuer is its own issuer
    assert_eq!(
        hash_data(&root_node.cert, None, HashAlgorithmEnum::Sha256),
        hash_data(
            &root_node.cert,
            Some(&root_node.cert),
            HashAlgorithmEnum::Sha256
        )
    );
    assert_eq!(leaf.cert.serial_hex(), "a");
    assert_eq!(rsa_leaf.cert.serial_hex(), "0");

    // The same from first principles: openssl asn1parse locates the issuer Name in the leaf's
    // tbsCertificate (the 4th element: version, serial, signature, issuer) and the
    // subjectPublicKey BIT STRING in the issuer's SubjectPublicKeyInfo (the 7th); openssl dgst
    // hashes those bytes, the key without the BIT STRING's unused-bits byte.
    let leaf_der = dir.join("leaf.der");
    let sub_der = dir.join("sub.der");
    for (pem, der) in [(&leaf.pem, &leaf_der), (&sub.pem, &sub_der)] {
        openssl(
            dir,
            &[
                "x509",
                "-in",
                pem.to_str().unwrap(),
                "-outform",
                "DER",
                "-out",
                der.to_str().unwrap(),
            ],
        );
    }
    let leaf_bytes = std::fs::read(&leaf_der).unwrap();
    let (off, hl, l, what) = asn1_elements(dir, &leaf_der, 2)[3].clone();
    assert!(what.contains("SEQUENCE"), "{what}");
    let name_hash = sha256_by_openssl(dir, &leaf_bytes[off..off + hl + l]);
    let sub_bytes = std::fs::read(&sub_der).unwrap();
    let (spki_off, ..) = asn1_elements(dir, &sub_der, 2)[6].clone();
    let (off, hl, l, _) = asn1_elements(dir, &sub_der, 3)
        .into_iter()
        .find(|(o, _, _, what)| *o > spki_off && what.contains("BIT STRING"))
        .unwrap();
    assert_eq!(sub_bytes[off + hl], 0, "no unused bits");
    let key_hash = sha256_by_openssl(dir, &sub_bytes[off + hl + 1..off + hl + l]);
    let ours = hash_data(&leaf.cert, Some(&sub.cert), HashAlgorithmEnum::Sha256);
    assert_eq!(ours.issuer_name_hash, name_hash);
    assert_eq!(ours.issuer_key_hash, key_hash);

    // what a CSMS sends back (upper case, padded serial) matches
    let mut back = ours.clone();
    back.issuer_name_hash = back.issuer_name_hash.to_uppercase();
    back.issuer_key_hash = back.issuer_key_hash.to_uppercase();
    back.serial_number = "0A".into();
    assert!(hash_data_matches(&ours, &back));
    let sub_hash = hash_data(&sub.cert, Some(&root_node.cert), HashAlgorithmEnum::Sha256);
    assert!(!hash_data_matches(&ours, &sub_hash));
}

#[test]
fn csr_is_accepted_by_openssl_and_the_signed_certificate_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rng = ring::rand::SystemRandom::new();
    let (pkcs8, spki) = generate_key(&rng).unwrap();
    let csr = build_csr("Test CSO", "CS-000042", &spki, &|m| {
        sign_with(&pkcs8, m, &rng)
    })
    .unwrap();
    let csr_pem = to_pem("CERTIFICATE REQUEST", &csr);
    assert!(csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
    assert_eq!(
        pem_blocks(&csr_pem, "CERTIFICATE REQUEST").unwrap(),
        vec![csr.clone()]
    );
    let csr_file = dir.join("cs.csr");
    std::fs::write(&csr_file, &csr_pem).unwrap();
    let mut args = vec![
        "req",
        "-in",
        csr_file.to_str().unwrap(),
        "-verify",
        "-noout",
        "-subject",
    ];
    args.extend_from_slice(NAMEOPT);
    let out = openssl(dir, &args);
    assert!(out.contains("self-signature verify OK"), "{out}");
    assert!(out.contains("subject=O=Test CSO, CN=CS-000042"), "{out}");
    let text = openssl(
        dir,
        &["req", "-in", csr_file.to_str().unwrap(), "-noout", "-text"],
    );
    assert!(text.contains("Version: 1 (0x0)"), "{text}");
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    assert!(text.contains("NIST CURVE: P-256"), "{text}");

    // a tampered CSR fails openssl's check
    let mut bad = csr.clone();
    let at = bad.windows(9).position(|w| w == b"CS-000042").unwrap();
    bad[at] = b'X';
    let bad_file = dir.join("bad.csr");
    std::fs::write(&bad_file, to_pem("CERTIFICATE REQUEST", &bad)).unwrap();
    let out = run(
        dir,
        &[
            "req",
            "-in",
            bad_file.to_str().unwrap(),
            "-verify",
            "-noout",
        ],
    );
    assert!(!out.status.success() || String::from_utf8_lossy(&out.stderr).contains("fail"));

    // the key: PKCS#8 PEM that openssl reads, with the same public key
    let key_file = dir.join("cs.key");
    std::fs::write(&key_file, to_pem("PRIVATE KEY", &pkcs8)).unwrap();

    // the CA signs the CSR
    let ca = make_root(dir, "CSO Root", "ec:P-256", &[]);
    let ext = dir.join("cs.ext");
    std::fs::write(&ext, LEAF_EXT).unwrap();
    let cert_file = dir.join("cs.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr_file.to_str().unwrap(),
            "-CA",
            ca.pem.to_str().unwrap(),
            "-CAkey",
            ca.key.to_str().unwrap(),
            "-set_serial",
            "0x1234",
            "-days",
            "30",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert_file.to_str().unwrap(),
        ],
    );
    let cert = load(&cert_file);
    assert_eq!(cert.spki_der, spki);
    assert_eq!(key_spki(&pkcs8, &rng).unwrap(), cert.spki_der);
    assert_eq!(cert.subject_cn.as_deref(), Some("CS-000042"));
    assert_eq!(cert.subject_o.as_deref(), Some("Test CSO"));
    assert_eq!(cert.serial_hex(), "1234");
    verify_chain(
        std::slice::from_ref(&cert),
        std::slice::from_ref(&ca.cert),
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap();
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            ca.pem.to_str().unwrap(),
            cert_file.to_str().unwrap(),
        ],
    );
    assert!(out.contains(": OK"), "{out}");
    // openssl agrees that key and certificate belong together
    let from_cert = openssl(
        dir,
        &[
            "x509",
            "-in",
            cert_file.to_str().unwrap(),
            "-noout",
            "-pubkey",
        ],
    );
    let from_key = openssl(dir, &["pkey", "-in", key_file.to_str().unwrap(), "-pubout"]);
    assert_eq!(from_cert, from_key);

    // rustls (the agent's TLS) takes the key and the certificate as a client identity
    use rustls::pki_types::pem::PemObject;
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(to_pem("PRIVATE KEY", &pkcs8).as_bytes())
            .unwrap();
    assert!(matches!(key, rustls::pki_types::PrivateKeyDer::Pkcs8(_)));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der.clone().into()).unwrap();
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![cert.der.clone().into()], key)
    .unwrap();
}

#[test]
fn chains_with_intermediates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root_node = make_root(dir, "Chain Root", "ec:P-256", &[]);
    let sub_ext =
        "basicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign\n";
    let sub = issue(dir, "Sub CA", "ec:P-256", &root_node, "2", sub_ext, &[]);
    let leaf = issue(dir, "CS-1", "ec:P-256", &sub, "3", LEAF_EXT, &[]);
    let (root, sub_c, leaf_c) = (&root_node.cert, &sub.cert, &leaf.cert);
    let roots = std::slice::from_ref(root);

    verify_chain(
        &[leaf_c.clone(), sub_c.clone()],
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap();
    verify_chain(
        &[leaf_c.clone(), sub_c.clone(), root.clone()],
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap();
    // a sub-CA on its own is no end entity, whatever the usage (rustls-webpki)
    let err = verify_chain(std::slice::from_ref(sub_c), roots, now_ms(), Usage::Any).unwrap_err();
    assert!(matches!(err, X509Error::WrongUsage { .. }), "{err}");
    // the chain as PEM text, as in CertificateSignedRequest
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&leaf.pem).unwrap(),
        std::fs::read_to_string(&sub.pem).unwrap()
    );
    let chain = parse_pem_certificates(&bundle).unwrap();
    verify_chain(&chain, roots, now_ms(), Usage::ClientAuth).unwrap();

    // the sub-CA missing
    let err = verify_chain(
        std::slice::from_ref(leaf_c),
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert!(
        matches!(&err, X509Error::UnknownIssuer { issuer, .. } if issuer == "O=Test CSO, CN=Sub CA"),
        "{err}"
    );
    // chain in the wrong order: the sub-CA is taken for the end entity
    let err = verify_chain(
        &[sub_c.clone(), leaf_c.clone()],
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert!(matches!(err, X509Error::WrongUsage { .. }), "{err}");
    // another root
    let other = make_root(dir, "Other Root", "ec:P-256", &[]);
    let err = verify_chain(
        &[leaf_c.clone(), sub_c.clone()],
        std::slice::from_ref(&other.cert),
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert!(matches!(err, X509Error::UnknownIssuer { .. }), "{err}");

    // Refused as "not a CA", for the reason named.
    let refused_as_not_ca = |chain: &[Certificate], why: &str| {
        let err = verify_chain(chain, roots, now_ms(), Usage::ClientAuth).unwrap_err();
        assert!(
            matches!(&err, X509Error::NotCa { reason, .. } if reason.contains(why)),
            "{err}"
        );
    };
    // pathlen:0 forbids a second sub-CA under the first
    let sub2 = issue(dir, "Sub CA 2", "ec:P-256", &sub, "4", CA_EXT, &[]);
    let leaf2 = issue(dir, "CS-2", "ec:P-256", &sub2, "5", LEAF_EXT, &[]);
    refused_as_not_ca(
        &[leaf2.cert.clone(), sub2.cert.clone(), sub_c.clone()],
        "pathLen",
    );
    // an issuer that is no CA
    let not_ca = issue(dir, "Not CA", "ec:P-256", &root_node, "6", LEAF_EXT, &[]);
    let leaf3 = issue(dir, "CS-3", "ec:P-256", &not_ca, "7", LEAF_EXT, &[]);
    refused_as_not_ca(
        &[leaf3.cert.clone(), not_ca.cert.clone()],
        "basicConstraints",
    );
    // a CA without keyCertSign
    let no_sign = issue(
        dir,
        "No Sign CA",
        "ec:P-256",
        &root_node,
        "8",
        "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, digitalSignature\n",
        &[],
    );
    let leaf4 = issue(dir, "CS-4", "ec:P-256", &no_sign, "9", LEAF_EXT, &[]);
    refused_as_not_ca(&[leaf4.cert.clone(), no_sign.cert.clone()], "keyCertSign");
}

#[test]
fn signature_algorithms() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Through rustls-webpki: a trust anchor is trusted as installed (its self-signature is not
    // checked, and it is never an end entity), so each root is checked through a leaf.
    let check = |leaf: &Node, root: &Node| {
        if leaf.cert.is_ca {
            return;
        }
        verify_chain(
            std::slice::from_ref(&leaf.cert),
            std::slice::from_ref(&root.cert),
            now_ms(),
            Usage::ClientAuth,
        )
        .unwrap();
    };
    let refused = |leaf: &Node, root: &Node| {
        verify_chain(
            std::slice::from_ref(&leaf.cert),
            std::slice::from_ref(&root.cert),
            now_ms(),
            Usage::ClientAuth,
        )
        .unwrap_err()
    };
    // RSA 2048 root (sha256WithRSAEncryption), leaves signed with PKCS#1 v1.5 SHA-384/512 and
    // RSASSA-PSS SHA-256/384 (salt = hash length)
    let rsa = make_root(dir, "RSA Root", "rsa:2048", &[]);
    check(&rsa, &rsa);
    for (i, extra) in [
        &["-sha384"][..],
        &["-sha512"],
        &[
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
        &[
            "-sha384",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
    ]
    .iter()
    .enumerate()
    {
        let leaf = issue(
            dir,
            &format!("rsa{i}"),
            "ec:P-256",
            &rsa,
            "1",
            LEAF_EXT,
            extra,
        );
        check(&leaf, &rsa);
    }
    // PSS with the maximal salt: well-formed, but ring verifies only salt = hash length
    let pss_max = issue(
        dir,
        "pss-max",
        "rsa:2048",
        &rsa,
        "2",
        LEAF_EXT,
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:max",
        ],
    );
    let err = refused(&pss_max, &rsa);
    assert!(matches!(err, X509Error::Unsupported(_)), "{err}");

    // P-384 root signing with SHA-384 and SHA-256; P-256 root signing with SHA-384
    let p384 = make_root(dir, "P384 Root", "ec:P-384", &["-sha384"]);
    check(&p384, &p384);
    check(
        &issue(dir, "p384a", "ec:P-256", &p384, "3", LEAF_EXT, &["-sha384"]),
        &p384,
    );
    check(
        &issue(dir, "p384b", "rsa:2048", &p384, "4", LEAF_EXT, &["-sha256"]),
        &p384,
    );
    let p256 = make_root(dir, "P256 Root", "ec:P-256", &[]);
    check(
        &issue(dir, "p256a", "ec:P-384", &p256, "5", LEAF_EXT, &["-sha384"]),
        &p256,
    );
    // Ed25519
    let ed = make_root(dir, "Ed Root", "ed25519", &[]);
    check(&ed, &ed);
    check(&issue(dir, "ed1", "ec:P-256", &ed, "6", LEAF_EXT, &[]), &ed);

    // RSA keys under 2048 bits are refused (A00.FR.502), with a clear reason
    let weak = make_root(dir, "Weak Root", "rsa:1024", &[]);
    let leaf = issue(dir, "weak1", "ec:P-256", &weak, "7", LEAF_EXT, &[]);
    let err = refused(&leaf, &weak);
    assert!(err.to_string().contains("1024-bit RSA key"), "{err}");
    // P-256 SHA-512 is not in ring
    let sha512 = issue(
        dir,
        "p256-512",
        "ec:P-256",
        &p256,
        "8",
        LEAF_EXT,
        &["-sha512"],
    );
    let err = refused(&sha512, &p256);
    assert!(matches!(err, X509Error::Unsupported(_)), "{err}");
}

#[test]
fn usages_and_critical_extensions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = make_root(dir, "Usage Root", "ec:P-256", &[]);
    let roots = std::slice::from_ref(&ca.cert);
    let with_ext = |name: &str, serial: &str, extra: &str| {
        issue(
            dir,
            name,
            "ec:P-256",
            &ca,
            serial,
            &format!("{LEAF_EXT}{extra}\n"),
            &[],
        )
        .cert
    };
    let verify =
        |c: &Certificate, usage| verify_chain(std::slice::from_ref(c), roots, now_ms(), usage);

    let server = with_ext("server", "1", "extendedKeyUsage = serverAuth");
    verify(&server, Usage::ServerAuth).unwrap();
    verify(&server, Usage::Any).unwrap();
    let err = verify(&server, Usage::ClientAuth).unwrap_err();
    assert!(
        matches!(err, X509Error::WrongUsage { reason, .. } if reason.contains("clientAuth")),
        "{err}"
    );
    let client = with_ext("client", "2", "extendedKeyUsage = clientAuth, serverAuth");
    verify(&client, Usage::ClientAuth).unwrap();
    verify(&client, Usage::ServerAuth).unwrap();
    assert!(verify(&client, Usage::CodeSigning).is_err());
    let code = with_ext("firmware", "3", "extendedKeyUsage = codeSigning");
    verify(&code, Usage::CodeSigning).unwrap();
    assert!(verify(&code, Usage::ClientAuth).is_err());
    // without extendedKeyUsage (as OCPP recommends, A00.FR.514) any usage is allowed
    let plain = with_ext("plain", "4", "");
    for usage in [Usage::ClientAuth, Usage::ServerAuth, Usage::CodeSigning] {
        verify(&plain, usage).unwrap();
    }

    // a critical extension the module cannot process, and the same one non-critical
    let critical = with_ext("critical", "5", "1.2.3.4 = critical, DER:05:00");
    let err = verify(&critical, Usage::Any).unwrap_err();
    assert!(
        matches!(&err, X509Error::Unsupported(m) if m.contains("1.2.3.4")),
        "{err}"
    );
    verify(
        &with_ext("noncritical", "6", "1.2.3.4 = DER:05:00"),
        Usage::Any,
    )
    .unwrap();
    let san = with_ext("san", "7", "subjectAltName = critical, DNS:cs.example");
    verify(&san, Usage::ClientAuth).unwrap();
}

#[test]
fn validity_periods() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = pki::Ca::new(dir, "validity");
    let roots = vec![load(&ca.cert)];
    let cert = |name: &str, validity| {
        load(
            &ca.issue(name, &format!("/O=Test CSO/CN={name}"), None, validity)
                .cert,
        )
    };
    let ok = cert("current", None);
    verify_chain(
        std::slice::from_ref(&ok),
        &roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap();
    let expired = cert("expired", Some(("200101000000Z", "210101000000Z")));
    let err = verify_chain(
        std::slice::from_ref(&expired),
        &roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "certificate \"O=Test CSO, CN=expired\" expired at 2021-01-01T00:00:00Z"
    );
    let future = cert("future", Some(("400101000000Z", "410101000000Z")));
    let err = verify_chain(
        std::slice::from_ref(&future),
        &roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert!(matches!(err, X509Error::NotYetValid { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("not valid before 2040-01-01T00:00:00Z")
    );
    // the root's validity counts too
    let later = ok.not_after_ms.max(roots[0].not_after_ms) + 1;
    assert!(matches!(
        verify_chain(std::slice::from_ref(&ok), &roots, later, Usage::ClientAuth),
        Err(X509Error::Expired { .. })
    ));
    let late_leaf = cert("late", Some(("250101000000Z", "20991231235959Z")));
    let err = verify_chain(
        std::slice::from_ref(&late_leaf),
        &roots,
        roots[0].not_after_ms + 1,
        Usage::Any,
    )
    .unwrap_err();
    assert!(
        matches!(&err, X509Error::Expired { subject, .. } if subject.ends_with("validity Root CA")),
        "{err}"
    );
}

#[test]
fn forgeries_and_garbage_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = pki::Ca::new(dir, "genuine");
    let root = load(&ca.cert);
    let leaf = load(&ca.issue("cs", "/O=Test CSO/CN=CS-9", None, None).cert);
    let roots = std::slice::from_ref(&root);
    verify_chain(
        std::slice::from_ref(&leaf),
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap();

    // an impostor root with the same name and another key
    let impostor = load(&pki::Ca::new(&dir.join("impostor"), "genuine").cert);
    assert_eq!(impostor.subject_der, root.subject_der);
    let err = verify_chain(
        std::slice::from_ref(&leaf),
        std::slice::from_ref(&impostor),
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert!(matches!(err, X509Error::BadSignature { .. }), "{err}");
    // with both roots trusted, the right one is found
    verify_chain(
        std::slice::from_ref(&leaf),
        &[impostor.clone(), root.clone()],
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap();
    // a leaf of the impostor
    let impostor_ca = pki::Ca::new(&dir.join("impostor2"), "genuine");
    let forged = load(
        &impostor_ca
            .issue("cs", "/O=Test CSO/CN=CS-9", None, None)
            .cert,
    );
    let err = verify_chain(
        std::slice::from_ref(&forged),
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert!(matches!(err, X509Error::BadSignature { .. }), "{err}");

    // tampered signature, tampered content
    let mut der = leaf.der.clone();
    let last = der.len() - 3;
    der[last] ^= 0x40;
    let tampered = parse_certificate(&der).unwrap();
    assert!(matches!(
        verify_chain(
            std::slice::from_ref(&tampered),
            roots,
            now_ms(),
            Usage::ClientAuth
        ),
        Err(X509Error::BadSignature { .. })
    ));
    let mut der = leaf.der.clone();
    let at = der.windows(4).position(|w| w == b"CS-9").unwrap() + 3;
    der[at] = b'8';
    let tampered = parse_certificate(&der).unwrap();
    assert_eq!(tampered.subject_cn.as_deref(), Some("CS-8"));
    let err = verify_chain(
        std::slice::from_ref(&tampered),
        roots,
        now_ms(),
        Usage::ClientAuth,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the signature of certificate \"O=Test CSO, CN=CS-8\" does not verify with the public \
         key of \"O=Test CSO, CN=genuine Root CA\""
    );

    // garbage
    for text in [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        let err = parse_pem_certificates(text).unwrap_err();
        assert!(matches!(err, X509Error::Pem(_)), "{text:?}: {err}");
    }
    let err = parse_pem_certificates(&to_pem("CERTIFICATE", b"\x30\x03abc")).unwrap_err();
    assert!(matches!(err, X509Error::Malformed(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("malformed DER: certificate 1 of the PEM text")
    );
    let pem = std::fs::read_to_string(&ca.cert).unwrap();
    let truncated = to_pem("CERTIFICATE", &root.der[..root.der.len() / 2]);
    let err = parse_pem_certificates(&format!("{pem}{truncated}")).unwrap_err();
    assert!(
        err.to_string().contains("certificate 2 of the PEM text"),
        "{err}"
    );
    // a CSR is not a certificate
    let csr = std::fs::read_to_string(ca.dir.join("cs.csr")).unwrap();
    assert!(matches!(
        parse_pem_certificates(&csr),
        Err(X509Error::Pem(_))
    ));
    let csr_der = pem_blocks(&csr, "CERTIFICATE REQUEST").unwrap().remove(0);
    assert!(matches!(
        parse_certificate(&csr_der),
        Err(X509Error::Malformed(_))
    ));
    // a key in PKCS#8 from openssl is not a P-256 ring key if it is P-384
    let p384 = new_key(dir, "p384", "ec:P-384");
    let p384 = pem_blocks(&std::fs::read_to_string(p384).unwrap(), "PRIVATE KEY")
        .unwrap()
        .remove(0);
    let rng = ring::rand::SystemRandom::new();
    assert!(matches!(
        sign_with(&p384, b"m", &rng),
        Err(X509Error::Crypto(_))
    ));
    // while openssl's P-256 PKCS#8 keys work
    let p256 = pem_blocks(
        &std::fs::read_to_string(dir.join("genuine/cs.key")).unwrap(),
        "PRIVATE KEY",
    )
    .unwrap()
    .remove(0);
    assert_eq!(key_spki(&p256, &rng).unwrap(), leaf.spki_der);
}
