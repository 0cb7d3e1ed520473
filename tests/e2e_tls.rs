//! Security profiles 2 and 3 end to end: the agent against the Python `ocpp` CSMS over wss://
//! with a test PKI made by openssl (CA, CSMS server certificate, station client certificate
//! with O = SecurityCtrlr.OrganizationName and CN = the serial number). Failures: an unknown
//! CA, a wrong host name and an expired server certificate each keep the agent from
//! connecting and raise InvalidCsmsCertificate (A00.FR.310/311); there is no fallback to an
//! unverified connection.

mod support;

use std::path::Path;
use std::time::Duration;
use support::pki::Ca;
use support::{Agent, Csms, agent_config, wait_for};

const T: Duration = Duration::from_secs(30);

fn tls_csms(server: &support::pki::Issued, client_ca: Option<&Path>) -> Option<Csms> {
    let mut args = vec![
        "--tls-cert".to_string(),
        server.cert.display().to_string(),
        "--tls-key".to_string(),
        server.key.display().to_string(),
    ];
    let args_ref: Vec<&str>;
    if let Some(ca) = client_ca {
        // Profile 3: the client certificate is the credential, no Basic auth.
        args.push("--tls-client-ca".into());
        args.push(ca.display().to_string());
        args_ref = args.iter().map(String::as_str).collect();
        return Csms::start_plain(&args_ref);
    }
    args_ref = args.iter().map(String::as_str).collect();
    Csms::start(&args_ref)
}

/// The agent's configuration for `profile` against `wss://localhost:<port>/ocpp`.
fn tls_config(
    dir: &Path,
    port: u16,
    profile: u8,
    ca: &Path,
    client: Option<&support::pki::Issued>,
) -> String {
    let url = format!("wss://localhost:{port}/ocpp");
    let mut section = format!(
        "security_profile = {profile}\nca_file = \"{}\"",
        ca.display()
    );
    if let Some(c) = client {
        section.push_str(&format!(
            "\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            c.cert.display(),
            c.key.display()
        ));
    }
    let mut text = agent_config(dir, &url, "").replace("security_profile = 1", &section);
    if profile == 3 {
        text = text.replace(&format!("password = \"{}\"", support::PASSWORD), "");
    }
    text
}

/// A CSO CA, a CSMS server certificate for localhost, a station certificate and a CSMS that
/// requires it (profile 3).
struct MutualTls {
    _pki: tempfile::TempDir,
    ca: Ca,
    client: support::pki::Issued,
    csms: Csms,
}

impl MutualTls {
    fn start() -> Option<MutualTls> {
        let pki = tempfile::tempdir().unwrap();
        let ca = Ca::new(pki.path(), "cso");
        let server = ca.issue(
            "server",
            "/O=Test CSO/CN=localhost",
            Some("DNS:localhost"),
            None,
        );
        // A00.FR.510/511: O = the CSO's organization name, CN = the station's serial number.
        let client = ca.issue("station", "/O=Test CSO/CN=SN-0001", None, None);
        let csms = tls_csms(&server, Some(&ca.cert))?;
        Some(MutualTls {
            _pki: pki,
            ca,
            client,
            csms,
        })
    }
}

#[test]
fn profile_2_basic_auth_over_tls() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "csms");
    let server = ca.issue(
        "server",
        "/O=Test CSO/CN=localhost",
        Some("DNS:localhost,IP:127.0.0.1"),
        None,
    );
    let Some(csms) = tls_csms(&server, None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(dir.path(), csms.port, 2, &ca.cert, None);
    let agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    let connected = &csms.events("connected")[0];
    assert_eq!(connected["auth_ok"], true);
    assert_eq!(connected["auth_user"], "CP001");
    let version = connected["tls"].as_str().unwrap();
    assert!(version == "TLSv1.3" || version == "TLSv1.2", "{version}");
    agent.wait_ready();
    assert_eq!(agent.status()["connection"], "connected");
}

#[test]
fn profile_3_mutual_tls_with_the_station_certificate() {
    let Some(MutualTls {
        _pki,
        ca,
        client,
        csms,
    }) = MutualTls::start()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(dir.path(), csms.port, 3, &ca.cert, Some(&client));
    let _agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    let connected = &csms.events("connected")[0];
    assert_eq!(connected["client_cert_subject"]["commonName"], "SN-0001");
    assert_eq!(
        connected["client_cert_subject"]["organizationName"],
        "Test CSO"
    );

    // Without its certificate the same station is refused by the CSMS.
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(dir.path(), csms.port, 2, &ca.cert, None);
    let agent = Agent::start_with_config(dir, &text, &[]);
    wait_failed_attempts(&agent, 2);
    assert_eq!(csms.calls("BootNotification").len(), 1);
    assert_ne!(agent.status()["connection"], "connected");
}

/// Waits until the agent's log reports `n` failed connection attempts. The agent makes the
/// next attempt only after the previous one is over (back-off), so by then the first one and
/// anything after it (an unverified fallback, say) had their chance to reach the CSMS: a
/// station that got through instead stays connected and the wait fails.
fn wait_failed_attempts(agent: &Agent, n: usize) {
    wait_for(T, &format!("{n} failed connection attempts"), || {
        let failed = agent.log().matches("connecting to the CSMS failed").count();
        (failed >= n).then_some(())
    });
}

/// The agent must refuse the server, log why, and queue InvalidCsmsCertificate.
fn refuses(server: &support::pki::Issued, trusted_ca: &Path, why: &str) {
    let Some(csms) = tls_csms(server, None) else {
        return;
    };
    refused_with(&csms, trusted_ca, why, "InvalidCsmsCertificate");
}

/// The agent refuses the CSMS's TLS, logs why, sends no OCPP, and queues `event`.
fn refused_with(csms: &Csms, trusted_ca: &Path, why: &str, event: &str) {
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(dir.path(), csms.port, 2, trusted_ca, None);
    let agent = Agent::start_with_config(dir, &text, &[]);
    agent.wait_ready();
    wait_for(T, "the refused TLS handshake in the agent's log", || {
        agent.log().contains("TLS handshake").then_some(())
    });
    wait_failed_attempts(&agent, 2);
    assert!(
        csms.calls("BootNotification").is_empty(),
        "{why}: no OCPP over an unverified link"
    );
    assert!(csms.events("connected").is_empty(), "{why}");
    let log = agent.log();
    assert!(log.contains(event), "{why}: {log}");
    // The security event waits in the durable queue for a verified connection.
    assert!(
        agent.status()["queue"]["depth"].as_u64().unwrap() >= 1,
        "{why}"
    );
}

/// A00.FR.318/319: a server that only offers suites outside the required ECDHE-GCM set (here
/// CBC with SHA-1 over TLS 1.2) is refused with InvalidTLSCipherSuite. The server is
/// `openssl s_server`, which answers with the handshake_failure alert as TLS servers do.
#[test]
fn a_csms_without_an_allowed_cipher_suite_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "csms");
    let server = ca.issue(
        "server",
        "/O=Test CSO/CN=localhost",
        Some("DNS:localhost"),
        None,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s_server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-naccept", "100", "-tls1_2"])
        .args(["-cipher", "ECDHE-ECDSA-AES128-SHA", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&server.cert)
        .arg("-key")
        .arg(&server.key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    wait_for(T, "openssl s_server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(dir.path(), port, 2, &ca.cert, None);
    let agent = Agent::start_with_config(dir, &text, &[]);
    wait_for(T, "InvalidTLSCipherSuite", || {
        agent.log().contains("InvalidTLSCipherSuite").then_some(())
    });
    let log = agent.log();
    assert!(log.contains("HandshakeFailure"), "{log}");
    assert!(agent.status()["queue"]["depth"].as_u64().unwrap() >= 1);
    let _ = s_server.kill();
    let _ = s_server.wait();
}

#[test]
fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let trusted = Ca::new(pki.path(), "trusted");
    let rogue = Ca::new(pki.path(), "rogue");
    let server = rogue.issue(
        "server",
        "/O=Rogue/CN=localhost",
        Some("DNS:localhost"),
        None,
    );
    refuses(&server, &trusted.cert, "unknown CA");
}

#[test]
fn a_server_certificate_for_another_host_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "csms");
    let server = ca.issue(
        "server",
        "/O=Test CSO/CN=csms.example.com",
        Some("DNS:csms.example.com"),
        None,
    );
    refuses(&server, &ca.cert, "wrong host name");
}

#[test]
fn an_expired_server_certificate_is_refused() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "csms");
    let server = ca.issue(
        "server",
        "/O=Test CSO/CN=localhost",
        Some("DNS:localhost"),
        Some(("200101000000Z", "200201000000Z")),
    );
    refuses(&server, &ca.cert, "expired");
}

/// A02/M03-M05 end to end on a profile 3 connection: install a root, list it, update the
/// station's key with SignCertificate/CertificateSigned (the CSR signed by the test CA with
/// openssl), reconnect with the new certificate, refuse a certificate for another key, delete
/// the root.
#[test]
fn certificate_management_and_key_update_over_mutual_tls() {
    use serde_json::{Value, json};
    use std::os::unix::fs::PermissionsExt;
    let Some(MutualTls {
        _pki,
        ca,
        client,
        csms,
    }) = MutualTls::start()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let text = tls_config(dir.path(), csms.port, 3, &ca.cert, Some(&client)).replace(
        "[variables]",
        "[variables]\n\"SecurityCtrlr.OrganizationName\" = \"Test CSO\"",
    );
    let agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    let call = |action: &str, payload: Value| {
        let answer = csms.admin(support::admin_call(action, payload));
        assert_eq!(answer["ok"], true, "{action}: {answer}");
        answer["response"].clone()
    };

    // M05: install the CSO root as CSMS root; M03: it is listed with its hash data.
    let root_pem = std::fs::read_to_string(&ca.cert).unwrap();
    let r = call(
        "InstallCertificate",
        json!({"certificateType": "CSMSRootCertificate", "certificate": root_pem}),
    );
    assert_eq!(r["status"], "Accepted");
    let r = call(
        "InstallCertificate",
        json!({"certificateType": "CSMSRootCertificate", "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
    );
    assert_eq!(r["status"], "Rejected");
    let ids = call(
        "GetInstalledCertificateIds",
        json!({"certificateType": ["CSMSRootCertificate"]}),
    );
    assert_eq!(ids["status"], "Accepted");
    let hash = ids["certificateHashDataChain"][0]["certificateHashData"].clone();
    let serial = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&ca.cert)
        .output()
        .unwrap();
    let serial = String::from_utf8_lossy(&serial.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    assert_eq!(
        hash["serialNumber"].as_str().unwrap(),
        serial.trim_start_matches('0'),
        "serialNumber is the hex serial without leading zeroes"
    );
    let agent_roots = agent.ctl_json(&["variables", "SecurityCtrlr"]).to_string();
    assert!(agent_roots.contains("CertificateEntries"));

    // A02: key update.
    let r = call(
        "TriggerMessage",
        json!({"requestedMessage": "SignChargingStationCertificate"}),
    );
    assert_eq!(r["status"], "Accepted");
    let sign = csms.wait_calls("SignCertificate", 1, T);
    let csr = sign[0]["payload"]["csr"].as_str().unwrap().to_owned();
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert_eq!(
        sign[0]["payload"]["certificateType"],
        "ChargingStationCertificate"
    );
    // The key never left the station; it waits, owner-only, for the certificate.
    let pending = state.join("certs/station-key.pending.pem");
    assert_eq!(
        std::fs::metadata(&pending).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A certificate for another key is refused (A02.FR.07).
    let other = ca.issue("other", "/O=Test CSO/CN=SN-0001", None, None);
    let other_chain = std::fs::read_to_string(&other.cert).unwrap();
    let r = call(
        "CertificateSigned",
        json!({"certificateChain": other_chain, "certificateType": "ChargingStationCertificate"}),
    );
    assert_eq!(r["status"], "Rejected");

    let chain = ca.sign_csr("renewed", &csr);
    let r = call(
        "CertificateSigned",
        json!({"certificateChain": chain, "certificateType": "ChargingStationCertificate"}),
    );
    assert_eq!(r["status"], "Accepted");
    // A02.FR.08: the station reconnects with the new certificate.
    wait_for(T, "a reconnection with the new certificate", || {
        (csms.events("connected").len() >= 2).then_some(())
    });
    assert!(state.join("certs/station-cert.pem").is_file());
    assert_eq!(
        std::fs::metadata(state.join("certs/station-key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let events: Vec<Value> = csms
        .calls("SecurityEventNotification")
        .iter()
        .map(|r| r["payload"]["type"].clone())
        .collect();
    assert!(
        events.contains(&json!("InvalidChargingStationCertificate")),
        "{events:?}"
    );

    // M04.FR.06: the station's own certificate is never deleted (openssl reads the leaf, the
    // first certificate of the chain; core_certificates covers a chain of the leaf alone).
    let leaf = state.join("renewed-leaf.pem");
    std::fs::write(&leaf, &chain).unwrap();
    let own = support::pki::openssl_hash_data(&leaf, &ca.cert);
    let r = call("DeleteCertificate", json!({"certificateHashData": own}));
    assert_eq!(r["status"], "Failed", "{r}");

    // M04: delete the installed root (the configured CA still anchors the connection).
    let r = call("DeleteCertificate", json!({"certificateHashData": hash}));
    assert_eq!(r["status"], "Accepted");
    let ids = call("GetInstalledCertificateIds", json!({}));
    assert_eq!(ids["status"], "NotFound");
    let r = call("DeleteCertificate", json!({"certificateHashData": hash}));
    assert_eq!(r["status"], "NotFound");
    assert_eq!(csms.errors_sent(), Vec::<Value>::new());
    drop(agent);
}

/// Security profiles 2 and 3 in OCPP 1.6J (security whitepaper 2.4, 2.5): the same TLS and
/// credentials, the `ocpp1.6` subprotocol.
#[test]
fn profiles_2_and_3_in_ocpp_1_6() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "cso");
    let server = ca.issue(
        "server",
        "/O=Test CSO/CN=localhost",
        Some("DNS:localhost"),
        None,
    );
    let client = ca.issue("station", "/O=Test CSO/CN=SN-0001", None, None);
    let tls = [
        "--tls-cert".to_string(),
        server.cert.display().to_string(),
        "--tls-key".to_string(),
        server.key.display().to_string(),
    ];
    for profile in [2u8, 3] {
        let mut args = tls.to_vec();
        if profile == 3 {
            args.extend(["--tls-client-ca".to_string(), ca.cert.display().to_string()]);
            args.extend(["--ocpp".to_string(), "1.6".to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Profile 3: the client certificate is the credential, no Basic auth.
        let csms = if profile == 2 {
            Csms::start_v16(&args)
        } else {
            Csms::start_plain(&args)
        };
        let Some(csms) = csms else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let text = tls_config(
            dir.path(),
            csms.port,
            profile,
            &ca.cert,
            (profile == 3).then_some(&client),
        )
        .replacen("[csms]\n", "[csms]\nocpp_version = \"1.6\"\n", 1);
        let agent = Agent::start_with_config(dir, &text, &[]);
        let boot = csms.wait_calls("BootNotification", 1, T);
        assert_eq!(boot[0]["payload"]["chargePointModel"], "AC-2");
        let connected = &csms.events("connected")[0];
        let version = connected["tls"].as_str().unwrap();
        assert!(version == "TLSv1.3" || version == "TLSv1.2", "{version}");
        if profile == 2 {
            assert_eq!(connected["auth_user"], "CP001");
        }
        agent.wait_ready();
        assert_eq!(
            agent.status()["connection"],
            "connected",
            "profile {profile}"
        );
        assert!(csms.errors_sent().is_empty(), "{:?}", csms.errors_sent());
    }
}
