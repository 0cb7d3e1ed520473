//! The TLS client configuration of the CSMS connection, built once and shared.
//!
//! Building it reads and parses the CA file (or the system's bundle: milliseconds on a small
//! board, on the event loop), the installed CSMS roots and the client certificate and key. It
//! depends only on those and on the security profile (3 adds the client certificate), not on
//! the URL (the server name is given per connection) nor on the Basic auth password, so a
//! reconnect reuses the same `Arc`. It is rebuilt only after what it was built from changed:
//! a new station certificate activated (A02.FR.08), a CSMS root stored or removed (M04/M05),
//! or a network profile with another security profile (B09/B10).

use super::ws::{Credentials, tls_config};
use crate::config::Config;
use crate::ocpp::station::Output;
use std::sync::Arc;

/// The kind of installed root the CSMS connection trusts (the others: firmware, V2G, MO).
const CSMS_ROOT: &str = "CSMSRootCertificate";

/// The cached configuration and what it was built for.
#[derive(Default)]
pub struct TlsCache {
    /// The security profile it was built for, and the configuration.
    cached: Option<(u8, Arc<rustls::ClientConfig>)>,
    builds: u64,
}

impl TlsCache {
    /// The configuration for `profile` (`None` for profile 1: plain WebSocket). Built (with
    /// `credentials()`: the installed roots and station identity) when there is none for this
    /// profile; a failed build is not kept, so the next connection tries again.
    pub fn get(
        &mut self,
        config: &Config,
        profile: u8,
        credentials: impl FnOnce() -> Credentials,
    ) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
        if profile < 2 {
            return Ok(None);
        }
        if let Some((built_for, tls)) = &self.cached {
            if *built_for == profile {
                return Ok(Some(tls.clone()));
            }
        }
        self.cached = None;
        let tls = Arc::new(tls_config(config, profile, &credentials())?);
        self.builds += 1;
        tracing::debug!(profile, builds = self.builds, "TLS configuration built");
        self.cached = Some((profile, tls.clone()));
        Ok(Some(tls))
    }

    /// Forgets the configuration if `output` changes what it is built from. Call it for
    /// every output the core produces, before executing it.
    pub fn on_output(&mut self, output: &Output) {
        match output {
            Output::ActivateStationCertificate { .. } => self.invalidate(),
            Output::StoreCertificate { kind, .. } | Output::RemoveCertificate { kind, .. }
                if kind == CSMS_ROOT =>
            {
                self.invalidate()
            }
            _ => {}
        }
    }

    /// The next connection builds the configuration again.
    pub fn invalidate(&mut self) {
        self.cached = None;
    }

    /// How many configurations were built so far.
    pub fn builds(&self) -> u64 {
        self.builds
    }
}
