//! The CSMS connection's TLS configuration is built once and reused across reconnects, and
//! built again only after what it is made of changed: a CSMS root installed or deleted, a new
//! station certificate, another security profile. Real files (a CA made by openssl), the real
//! build path (`ws::tls_config`), the outputs as the core produces them.

mod support;

use ocpp_agent::config::Config;
use ocpp_agent::ocpp::station::Output;
use ocpp_agent::shell::tls::TlsCache;
use ocpp_agent::shell::ws::Credentials;
use std::cell::Cell;
use std::sync::Arc;
use support::pki::Ca;

#[test]
fn built_once_and_again_only_after_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "csms");
    let client = ca.issue("client", "/O=Test CSO/CN=CP001", None, None);
    let text = support::agent_config(dir.path(), "wss://localhost:1/ocpp", "").replace(
        "security_profile = 1",
        &format!(
            "security_profile = 2\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            ca.cert.display(),
            client.cert.display(),
            client.key.display()
        ),
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();

    let mut cache = TlsCache::default();
    // How often the credentials (installed roots, station identity) were read from disk.
    let reads = Cell::new(0);
    let credentials = || {
        reads.set(reads.get() + 1);
        Credentials::default()
    };
    let connect = |cache: &mut TlsCache, profile: u8| {
        cache
            .get(&config, profile, credentials)
            .unwrap()
            .expect("a TLS configuration")
    };

    // Reconnects share one configuration.
    let first = connect(&mut cache, 2);
    for _ in 0..5 {
        assert!(Arc::ptr_eq(&first, &connect(&mut cache, 2)));
    }
    assert_eq!((cache.builds(), reads.get()), (1, 1));

    // Outputs that change nothing the configuration is made of keep it.
    for output in [
        Output::StoreCertificate {
            kind: "ManufacturerRootCertificate".into(),
            id: "m1".into(),
            pem: String::new(),
        },
        Output::RemoveCertificate {
            kind: "V2GRootCertificate".into(),
            id: "v1".into(),
        },
        Output::Ping,
    ] {
        cache.on_output(&output);
        assert!(Arc::ptr_eq(&first, &connect(&mut cache, 2)), "{output:?}");
    }
    assert_eq!(cache.builds(), 1);

    // Each change is followed by one build, then reuse again.
    let changes = [
        Output::StoreCertificate {
            kind: "CSMSRootCertificate".into(),
            id: "c1".into(),
            pem: String::new(),
        },
        Output::RemoveCertificate {
            kind: "CSMSRootCertificate".into(),
            id: "c1".into(),
        },
        Output::ActivateStationCertificate {
            chain_pem: String::new(),
        },
    ];
    let mut previous = first;
    for (i, change) in changes.iter().enumerate() {
        cache.on_output(change);
        let rebuilt = connect(&mut cache, 2);
        assert!(!Arc::ptr_eq(&previous, &rebuilt), "{change:?}");
        assert!(Arc::ptr_eq(&rebuilt, &connect(&mut cache, 2)));
        assert_eq!(cache.builds(), 2 + i as u64);
        previous = rebuilt;
    }
    assert_eq!(reads.get(), 4);

    // Another security profile (a network profile with a client certificate) needs its own.
    let profile3 = connect(&mut cache, 3);
    assert!(!Arc::ptr_eq(&previous, &profile3));
    assert!(profile3.client_auth_cert_resolver.has_certs());
    assert!(!previous.client_auth_cert_resolver.has_certs());
    assert!(Arc::ptr_eq(&profile3, &connect(&mut cache, 3)));
    assert_eq!(cache.builds(), 5);
    // Profile 1 is a plain WebSocket: nothing to build.
    assert!(cache.get(&config, 1, credentials).unwrap().is_none());
    assert_eq!(cache.builds(), 5);
}

#[test]
fn a_failed_build_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let text = support::agent_config(dir.path(), "wss://localhost:1/ocpp", "").replace(
        "security_profile = 1",
        &format!("security_profile = 2\nca_file = \"{}\"", ca_file.display()),
    );
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(&ca_file, "").unwrap();
    let config = Config::load(&path).unwrap();
    let mut cache = TlsCache::default();
    // An empty CA file trusts nothing: no configuration, and none kept.
    assert!(cache.get(&config, 2, Credentials::default).is_err());
    let ca = Ca::new(dir.path(), "csms");
    std::fs::copy(&ca.cert, &ca_file).unwrap();
    assert!(
        cache
            .get(&config, 2, Credentials::default)
            .unwrap()
            .is_some()
    );
    assert_eq!(cache.builds(), 1);
}
