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
    let Some(csms) = tls_csms(&server, Some(&ca.cert)) else {
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
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(csms.calls("BootNotification").len(), 1);
    assert_ne!(agent.status()["connection"], "connected");
}

/// The agent must refuse the server, log why, and queue InvalidCsmsCertificate.
fn refuses(server: &support::pki::Issued, trusted_ca: &Path, why: &str) {
    let Some(csms) = tls_csms(server, None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let text = tls_config(dir.path(), csms.port, 2, trusted_ca, None);
    let agent = Agent::start_with_config(dir, &text, &[]);
    agent.wait_ready();
    wait_for(T, "the refused TLS handshake in the agent's log", || {
        agent.log().contains("TLS handshake").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        csms.calls("BootNotification").is_empty(),
        "{why}: no OCPP over an unverified link"
    );
    assert!(csms.events("connected").is_empty(), "{why}");
    let log = agent.log();
    assert!(log.contains("InvalidCsmsCertificate"), "{why}: {log}");
    // The security event waits in the durable queue for a verified connection.
    assert!(
        agent.status()["queue"]["depth"].as_u64().unwrap() >= 1,
        "{why}"
    );
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
