//! The real agent over wss:// (security profile 2) builds its TLS configuration once: the
//! reconnects after two CSMS restarts reuse it; a CSMS root installed through OCPP (M05) makes
//! the next connection build it again, once. Counted from the agent's debug log line
//! "TLS configuration built".

mod support;

use serde_json::json;
use std::time::Duration;
use support::pki::Ca;
use support::{Agent, Csms, agent_config, wait_for};

const T: Duration = Duration::from_secs(30);

fn builds(agent: &Agent) -> usize {
    agent.log().matches("TLS configuration built").count()
}

fn wait_connections(csms: &Csms, n: usize) {
    wait_for(T, &format!("{n} connections"), || {
        (csms.events("connected").len() >= n).then_some(())
    });
}

#[test]
fn reconnects_reuse_the_tls_configuration_until_a_root_is_installed() {
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new(pki.path(), "csms");
    let server = ca.issue(
        "server",
        "/O=Test CSO/CN=localhost",
        Some("DNS:localhost,IP:127.0.0.1"),
        None,
    );
    let cert = server.cert.display().to_string();
    let key = server.key.display().to_string();
    let Some(mut csms) = Csms::start(&["--tls-cert", &cert, "--tls-key", &key]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("wss://localhost:{}/ocpp", csms.port);
    let text = agent_config(dir.path(), &url, "").replace(
        "security_profile = 1",
        &format!("security_profile = 2\nca_file = \"{}\"", ca.cert.display()),
    );
    let agent = Agent::start_with_config(dir, &text, &[]);
    csms.wait_calls("BootNotification", 1, T);
    agent.wait_ready();
    assert_eq!(builds(&agent), 1, "{}", agent.log());

    for n in [2, 3] {
        csms.restart();
        wait_connections(&csms, n);
    }
    assert_eq!(builds(&agent), 1, "reconnects reuse it:\n{}", agent.log());

    // M05: a CSMS root installed: the next connection trusts it, so builds anew.
    let root_pem = std::fs::read_to_string(&ca.cert).unwrap();
    let answer = csms.admin(support::admin_call(
        "InstallCertificate",
        json!({"certificateType": "CSMSRootCertificate", "certificate": root_pem}),
    ));
    assert_eq!(support::call_response(answer)["status"], "Accepted");
    csms.restart();
    wait_connections(&csms, 4);
    csms.restart();
    wait_connections(&csms, 5);
    assert_eq!(builds(&agent), 2, "{}", agent.log());
}
