//! A test PKI made with the `openssl` command line: a CA, server and client certificates with
//! the subjects OCPP expects (A00.FR.509-511), valid or expired.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Ca {
    pub dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command line tool");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The signature of `file` with `key` (ECDSA over SHA-256, DER), as `openssl dgst -sha256
/// -sign` makes it: the raw bytes and their base64 (as UpdateFirmware carries it).
pub fn sign_file(key: &Path, file: &Path) -> (Vec<u8>, String) {
    let dir = file.parent().unwrap();
    let sig = file.with_extension("sig");
    openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-sign",
            key.to_str().unwrap(),
            "-out",
            sig.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    let b64 = Command::new("openssl")
        .args(["base64", "-A", "-in", sig.to_str().unwrap()])
        .output()
        .expect("openssl base64");
    (
        std::fs::read(&sig).unwrap(),
        String::from_utf8(b64.stdout).unwrap().trim().to_owned(),
    )
}

/// A certificate and its key, PEM files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new self-signed P-256 root in `dir/name`.
    pub fn new(parent: &Path, name: &str) -> Ca {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                &format!("/O=Test CSO/CN={name} Root CA"),
            ],
        );
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("serial"), "1000\n").unwrap();
        let cnf = format!(
            "[ca]\ndefault_ca = ca_default\n[ca_default]\ndir = {d}\ndatabase = {d}/index.txt\n\
             new_certs_dir = {d}\nserial = {d}/serial\ncertificate = {d}/ca.pem\n\
             private_key = {d}/ca.key\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
             copy_extensions = none\n[any]\norganizationName = optional\ncommonName = supplied\n",
            d = dir.display()
        );
        std::fs::write(dir.join("ca.cnf"), cnf).unwrap();
        Ca {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
            dir,
        }
    }

    /// Issues a P-256 certificate for `subject` (e.g. `/O=Test CSO/CN=localhost`), with the
    /// given subjectAltName (e.g. `DNS:localhost,IP:127.0.0.1`) and validity (openssl
    /// `YYMMDDHHMMSSZ` dates; `None`: from now for 30 days).
    pub fn issue(
        &self,
        name: &str,
        subject: &str,
        san: Option<&str>,
        validity: Option<(&str, &str)>,
    ) -> Issued {
        let mut extensions = String::from(
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyAgreement\n",
        );
        if let Some(san) = san {
            extensions.push_str(&format!("subjectAltName = {san}\n"));
        }
        self.issue_with(name, subject, &extensions, validity)
    }

    /// A firmware signing certificate (L01.FR.11): extendedKeyUsage codeSigning.
    pub fn issue_firmware_signer(&self, name: &str) -> Issued {
        self.issue_with(
            name,
            "/O=Test Manufacturer/CN=Firmware Signing",
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = codeSigning\n",
            None,
        )
    }

    pub fn issue_with(
        &self,
        name: &str,
        subject: &str,
        extensions: &str,
        validity: Option<(&str, &str)>,
    ) -> Issued {
        let _ = &self.key;
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, extensions).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
                "-subj",
                subject,
            ],
        );
        self.sign(&csr, &cert, &ext, validity);
        Issued { cert, key }
    }

    /// Signs a CSR (PEM) as a station certificate; returns the certificate PEM followed by the
    /// CA's, as a CertificateSigned chain.
    pub fn sign_csr(&self, name: &str, csr_pem: &str) -> String {
        let csr = self.dir.join(format!("{name}.csr"));
        let cert = self.dir.join(format!("{name}.pem"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&csr, csr_pem).unwrap();
        std::fs::write(
            &ext,
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyAgreement\n",
        )
        .unwrap();
        self.sign(&csr, &cert, &ext, None);
        std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&self.cert).unwrap()
    }

    fn sign(&self, csr: &Path, cert: &Path, ext: &Path, validity: Option<(&str, &str)>) {
        let (start, end) = match validity {
            Some((s, e)) => (s.to_owned(), e.to_owned()),
            None => {
                let now = std::time::SystemTime::now();
                let fmt = |t: std::time::SystemTime| {
                    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                    let (y, mo, d) =
                        ocpp_agent::ocpp::clock::civil_from_days(secs.div_euclid(86_400));
                    let rem = secs.rem_euclid(86_400);
                    format!(
                        "{:02}{mo:02}{d:02}{:02}{:02}{:02}Z",
                        y % 100,
                        rem / 3600,
                        rem / 60 % 60,
                        rem % 60
                    )
                };
                (
                    fmt(now - std::time::Duration::from_secs(3600)),
                    fmt(now + std::time::Duration::from_secs(30 * 86_400)),
                )
            }
        };
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                "ca.cnf",
                "-in",
                csr.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-startdate",
                &start,
                "-enddate",
                &end,
                "-extfile",
                ext.to_str().unwrap(),
            ],
        );
    }
}

/// The CertificateHashDataType (SHA-256) of `cert` as openssl computes it for an OCSP request:
/// an oracle independent of the agent's own code.
#[allow(dead_code)]
pub fn openssl_hash_data(cert: &Path, issuer: &Path) -> serde_json::Value {
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(issuer)
        .arg("-sha256")
        .arg("-cert")
        .arg(cert)
        .args(["-req_text", "-no_nonce"])
        .output()
        .expect("openssl ocsp");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} not in openssl's output: {text}"))
            .trim()
            .to_owned()
    };
    serde_json::json!({
        "hashAlgorithm": "SHA256",
        "issuerNameHash": field("Issuer Name Hash:").to_ascii_lowercase(),
        "issuerKeyHash": field("Issuer Key Hash:").to_ascii_lowercase(),
        "serialNumber": field("Serial Number:").to_ascii_lowercase(),
    })
}
