//! Certificate management (A02, A03, M03-M05), as methods of [`Station`]: the installed root
//! certificates, the station's own certificate, and the key-update flow (SignCertificate /
//! CertificateSigned). Parsing and checking are pure (`x509`); the shell generates keys, writes
//! files and builds the CSR when the core asks.

use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::Ctx;
use crate::ocpp::devmodel::Var;
use crate::ocpp::persist::PersistOp;
use crate::ocpp::rpc::CallError;
use crate::ocpp::session::RequestKind;
use crate::ocpp::station::Output;
use crate::ocpp::timer::Timer;
use crate::ocpp::v201::{self, Action};
use crate::ocpp::x509;
use serde_json::json;
use std::time::Duration;
use tracing::{info, warn};

/// Most root certificates kept (SecurityCtrlr.CertificateEntries maxLimit, M05.FR.06).
pub const MAX_CERTIFICATES: usize = 20;
/// Renew the station certificate when it expires within this (A03.FR.02: one month).
const RENEW_BEFORE_MS: i64 = 30 * 24 * 3600 * 1000;
/// How often validity is checked.
const EXPIRY_CHECK: Duration = Duration::from_secs(24 * 3600);

const META_CSR_PEM: &str = "csr:pending_pem";
const META_CSR_SPKI: &str = "csr:pending_spki";

/// The kinds of installable certificates (InstallCertificateUseEnumType).
pub fn kind_name(kind: v201::InstallCertificateUseEnum) -> &'static str {
    kind.as_str()
}

/// A certificate the station holds, with what it was installed as.
#[derive(Debug, Clone)]
pub struct Installed {
    /// `CSMSRootCertificate`, `ManufacturerRootCertificate`, `V2GRootCertificate`,
    /// `MORootCertificate`.
    pub kind: String,
    pub pem: String,
    pub cert: x509::Certificate,
}

/// Certificates handed to the core at start-up by the shell.
#[derive(Debug, Clone, Default)]
pub struct CertificateStore {
    /// Installed root certificates.
    pub roots: Vec<Installed>,
    /// Trust anchors from the configuration (csms.ca_file), used to check a new station
    /// certificate (not reported: they are not installed through OCPP).
    pub configured_roots: Vec<x509::Certificate>,
    /// The station certificate chain in use (leaf first), if any.
    pub station_chain: Vec<x509::Certificate>,
}

impl CertificateStore {
    /// The certificate that issued `cert`: the next one of the station chain, an installed
    /// root or a configured one, by subject name.
    pub fn issuer_of(&self, cert: &x509::Certificate) -> Option<&x509::Certificate> {
        self.station_chain
            .iter()
            .skip(1)
            .chain(self.roots.iter().map(|r| &r.cert))
            .chain(self.configured_roots.iter())
            .find(|c| c.subject_der == cert.issuer_der)
    }

    /// The installed ManufacturerRootCertificates, which firmware signers must chain to (L01).
    pub fn manufacturer_roots(&self) -> Vec<x509::Certificate> {
        self.roots
            .iter()
            .filter(|r| r.kind == "ManufacturerRootCertificate")
            .map(|r| r.cert.clone())
            .collect()
    }

    /// Parses `(kind, pem)` pairs; unreadable entries are logged and skipped.
    pub fn load(
        roots: &[(String, String)],
        configured_roots_pem: &str,
        station_chain_pem: Option<&str>,
    ) -> CertificateStore {
        let parse_all = |pem: &str| -> Vec<x509::Certificate> {
            x509::pem_blocks(pem, "CERTIFICATE")
                .unwrap_or_default()
                .iter()
                .filter_map(|der| x509::parse_certificate(der).ok())
                .collect()
        };
        let roots = roots
            .iter()
            .filter_map(|(kind, pem)| {
                let cert = parse_all(pem).into_iter().next();
                if cert.is_none() {
                    warn!(kind, "ignoring an unreadable installed certificate");
                }
                cert.map(|cert| Installed {
                    kind: kind.clone(),
                    pem: pem.clone(),
                    cert,
                })
            })
            .collect();
        CertificateStore {
            roots,
            configured_roots: parse_all(configured_roots_pem),
            station_chain: station_chain_pem.map(parse_all).unwrap_or_default(),
        }
    }
}

/// The GetCertificateIdUseEnumType of an installed kind.
fn id_use(kind: &str) -> Option<v201::GetCertificateIdUseEnum> {
    serde_json::from_value(json!(kind)).ok()
}

/// The security block (A02-A03, M03-M05): the installed certificates and the key update.
#[derive(Debug, Default)]
pub struct Security {
    store: CertificateStore,
    /// The CSR sent for signing and its public key (SubjectPublicKeyInfo DER).
    pending_csr: Option<(String, Vec<u8>)>,
    csr_attempts: u32,
}

impl Security {
    /// The installed ManufacturerRootCertificates (firmware signers chain to them, L01).
    pub(crate) fn manufacturer_roots(&self) -> Vec<x509::Certificate> {
        self.store.manufacturer_roots()
    }

    /// CertificateEntries of the device model: the installed roots.
    pub(crate) fn certificate_entries(&self) -> usize {
        self.store.roots.len()
    }

    pub(crate) fn new(store: CertificateStore) -> Self {
        Security {
            store,
            pending_csr: None,
            csr_attempts: 0,
        }
    }

    /// The subject the station certificate must have (A00.FR.510-511): O from
    /// SecurityCtrlr.OrganizationName, CN the serial number (the station id without one).
    fn certificate_subject(&self, cx: &Ctx) -> (String, String) {
        (
            cx.vars.get(Var::SecurityOrganizationName).to_owned(),
            cx.identity.certificate_serial(),
        )
    }

    /// M03: GetInstalledCertificateIds.
    pub(crate) fn get_installed_certificate_ids(
        &self,
        request: v201::GetInstalledCertificateIdsRequest,
    ) -> Result<v201::GetInstalledCertificateIdsResponse, CallError> {
        let wanted = request.certificate_type.unwrap_or_default();
        let chains: Vec<v201::CertificateHashDataChain> = self
            .store
            .roots
            .iter()
            .filter_map(|i| {
                let kind = id_use(&i.kind)?;
                (wanted.is_empty() || wanted.contains(&kind)).then(|| {
                    v201::CertificateHashDataChain {
                        custom_data: None,
                        certificate_hash_data: x509::hash_data(
                            &i.cert,
                            None,
                            v201::HashAlgorithmEnum::Sha256,
                        ),
                        certificate_type: kind,
                        child_certificate_hash_data: None,
                    }
                })
            })
            .collect();
        // M03.FR.02/03
        let status = if chains.is_empty() {
            v201::GetInstalledCertificateStatusEnum::NotFound
        } else {
            v201::GetInstalledCertificateStatusEnum::Accepted
        };
        Ok(v201::GetInstalledCertificateIdsResponse {
            custom_data: None,
            status,
            status_info: None,
            certificate_hash_data_chain: (!chains.is_empty()).then_some(chains),
        })
    }

    /// M05: InstallCertificate (root certificates).
    pub(crate) fn install_certificate(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::InstallCertificateRequest,
    ) -> Result<v201::InstallCertificateResponse, CallError> {
        use v201::InstallCertificateStatusEnum as S;
        let respond = |status, why: Option<&str>| {
            if let Some(w) = why {
                warn!(reason = w, "InstallCertificate not accepted");
            }
            Ok(v201::InstallCertificateResponse {
                custom_data: None,
                status,
                status_info: why.map(|w| v201::StatusInfo {
                    custom_data: None,
                    reason_code: "InvalidCertificate".into(),
                    additional_info: Some(w.chars().take(512).collect()),
                }),
            })
        };
        let kind = kind_name(request.certificate_type).to_owned();
        let cert = match x509::pem_blocks(&request.certificate, "CERTIFICATE")
            .ok()
            .and_then(|blocks| blocks.into_iter().next())
            .map(|der| x509::parse_certificate(&der))
        {
            Some(Ok(c)) => c,
            Some(Err(e)) => return respond(S::Rejected, Some(&e.to_string())),
            None => return respond(S::Rejected, Some("no PEM certificate")),
        };
        // M05.FR.07: a root must be a CA certificate, valid now.
        let now_ms = cx.clock.utc(now).unix_millis();
        if !cert.is_ca {
            return respond(S::Rejected, Some("not a CA certificate"));
        }
        if now_ms < cert.not_before_ms || now_ms > cert.not_after_ms {
            return respond(S::Rejected, Some("not valid now"));
        }
        // M05.FR.17: the same certificate again replaces it.
        let same =
            |i: &Installed| i.cert.serial == cert.serial && i.cert.issuer_der == cert.issuer_der;
        let replaced = self.store.roots.iter().position(same);
        if replaced.is_none() && self.store.roots.len() >= MAX_CERTIFICATES {
            // M05.FR.06
            return respond(S::Rejected, Some("CertificateEntries is at its limit"));
        }
        if let Some(i) = replaced {
            self.store.roots.remove(i);
        }
        let pem = x509::to_pem("CERTIFICATE", &cert.der);
        info!(kind, serial = cert.serial_hex(), "certificate installed");
        cx.outputs.push_back(Output::StoreCertificate {
            kind: kind.clone(),
            id: cert.serial_hex(),
            pem: pem.clone(),
        });
        self.store.roots.push(Installed { kind, pem, cert });
        respond(S::Accepted, None)
    }

    /// M04: DeleteCertificate.
    pub(crate) fn delete_certificate(
        &mut self,
        cx: &mut Ctx,
        request: v201::DeleteCertificateRequest,
    ) -> Result<v201::DeleteCertificateResponse, CallError> {
        use v201::DeleteCertificateStatusEnum as S;
        let wanted = &request.certificate_hash_data;
        // The leaf is hashed with its issuer (the next certificate of the chain) where at hand;
        // roots are their own issuers.
        let matches = |c: &x509::Certificate, issuer: Option<&x509::Certificate>| {
            x509::hash_data_matches(&x509::hash_data(c, issuer, wanted.hash_algorithm), wanted)
        };
        // M04.FR.06: never the station certificate itself (the chain's leaf; the CAs above it
        // may also be installed roots, which can go). Its issuerKeyHash needs the issuer's key:
        // the next certificate of the chain, else an installed or configured root, since a
        // CertificateSigned chain may hold the leaf alone.
        let is_station_certificate = self.store.station_chain.first().is_some_and(|leaf| {
            match self.store.issuer_of(leaf) {
                Some(issuer) => matches(leaf, Some(issuer)),
                // No issuer at hand: the name hash and the serial (unique per issuer, RFC 5280
                // 4.1.2.2) still identify it; refusing is the safe side.
                None => {
                    let mut ours = x509::hash_data(leaf, None, wanted.hash_algorithm);
                    ours.issuer_key_hash = wanted.issuer_key_hash.clone();
                    x509::hash_data_matches(&ours, wanted)
                }
            }
        });
        let status = if is_station_certificate {
            S::Failed
        } else {
            match self.store.roots.iter().position(|i| matches(&i.cert, None)) {
                None => S::NotFound,
                Some(i) => {
                    let csms_roots = self
                        .store
                        .roots
                        .iter()
                        .filter(|r| r.kind == "CSMSRootCertificate")
                        .count();
                    let last_csms_root = self.store.roots[i].kind == "CSMSRootCertificate"
                        && csms_roots == 1
                        && self.store.configured_roots.is_empty()
                        && cx.security_profile() >= 2;
                    if last_csms_root {
                        // M04.FR.03: refusing keeps the station able to reach its CSMS.
                        warn!("refusing to delete the only CSMS root certificate in use");
                        S::Failed
                    } else {
                        let removed = self.store.roots.remove(i);
                        info!(
                            kind = removed.kind,
                            serial = removed.cert.serial_hex(),
                            "certificate deleted"
                        );
                        cx.outputs.push_back(Output::RemoveCertificate {
                            kind: removed.kind,
                            id: removed.cert.serial_hex(),
                        });
                        S::Accepted
                    }
                }
            }
        };
        Ok(v201::DeleteCertificateResponse {
            custom_data: None,
            status,
            status_info: None,
        })
    }

    /// A02.FR.02: a new key pair and CSR, made by the shell.
    pub(crate) fn start_key_update(&mut self, cx: &mut Ctx) {
        let (organization, common_name) = self.certificate_subject(cx);
        info!(
            organization,
            common_name, "generating a new station key and CSR"
        );
        cx.outputs.push_back(Output::CreateCsr {
            organization,
            common_name,
        });
    }

    /// The shell made the CSR: send it (A02.FR.03), keep it for resending (A02.FR.17).
    pub(crate) fn csr_created(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        csr_pem: String,
        spki_der: Vec<u8>,
    ) {
        let spki_hex: String = spki_der.iter().map(|b| format!("{b:02x}")).collect();
        cx.outputs.push_back(Output::Persist(vec![
            PersistOp::PutMeta {
                key: META_CSR_PEM.into(),
                value: csr_pem.clone(),
            },
            PersistOp::PutMeta {
                key: META_CSR_SPKI.into(),
                value: spki_hex,
            },
        ]));
        self.pending_csr = Some((csr_pem, spki_der));
        self.csr_attempts = 0;
        self.send_csr(cx, now);
    }

    fn send_csr(&mut self, cx: &mut Ctx, now: Instant) {
        let Some((csr, _)) = &self.pending_csr else {
            return;
        };
        let payload = json!({ "csr": csr, "certificateType": "ChargingStationCertificate" });
        cx.enqueue_triggered(
            RequestKind::SignCertificate,
            Action::SignCertificate,
            payload,
        );
        // A02.FR.17/18: resend when no CertificateSigned came, doubling the wait.
        let wait =
            cx.vars.seconds(Var::CertSigningWaitMinimum) * (1u32 << self.csr_attempts.min(16));
        if self.csr_attempts < cx.vars.int(Var::CertSigningRepeatTimes).max(0) as u32 {
            cx.timers.set(Timer::CsrRetry, now + wait);
        }
        self.csr_attempts += 1;
    }

    pub(crate) fn csr_retry(&mut self, cx: &mut Ctx, now: Instant) {
        if self.pending_csr.is_some() {
            info!("no CertificateSigned yet: sending the CSR again (A02.FR.17)");
            self.send_csr(cx, now);
        }
    }

    /// The answer to SignCertificate.
    pub(crate) fn sign_certificate_answered(
        &mut self,
        cx: &mut Ctx,
        status: v201::GenericStatusEnum,
    ) {
        if status != v201::GenericStatusEnum::Accepted {
            warn!("the CSMS rejected the CSR; no retry until it asks again (A02.FR.19)");
            cx.timers.stop(Timer::CsrRetry);
        }
    }

    /// A02/A03: CertificateSigned. The chain must be for our pending key, with the right
    /// subject, valid now, and chain to a trusted root (A02.FR.06); else Rejected and an
    /// InvalidChargingStationCertificate security event (A02.FR.07).
    pub(crate) fn certificate_signed(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::CertificateSignedRequest,
    ) -> Result<v201::CertificateSignedResponse, CallError> {
        let respond = |status| {
            Ok(v201::CertificateSignedResponse {
                custom_data: None,
                status,
                status_info: None,
            })
        };
        if request.certificate_type == Some(v201::CertificateSigningUseEnum::V2GCertificate) {
            return respond(v201::CertificateSignedStatusEnum::Rejected);
        }
        match self.check_signed_chain(cx, now, &request.certificate_chain) {
            Ok(chain) => {
                let leaf = &chain[0];
                info!(
                    serial = leaf.serial_hex(),
                    not_after_ms = leaf.not_after_ms,
                    "new station certificate accepted"
                );
                let chain_pem: String = chain
                    .iter()
                    .map(|c| x509::to_pem("CERTIFICATE", &c.der))
                    .collect();
                cx.outputs
                    .push_back(Output::ActivateStationCertificate { chain_pem });
                cx.outputs.push_back(Output::Persist(vec![
                    PersistOp::DeleteMeta {
                        key: META_CSR_PEM.into(),
                    },
                    PersistOp::DeleteMeta {
                        key: META_CSR_SPKI.into(),
                    },
                ]));
                self.pending_csr = None;
                cx.timers.stop(Timer::CsrRetry);
                self.store.station_chain = chain;
                // A02.FR.08: with profile 3, reconnect with the new certificate.
                if cx.security_profile() == 3 {
                    cx.link.reconnect_after_answer = true;
                }
                respond(v201::CertificateSignedStatusEnum::Accepted)
            }
            Err(why) => {
                warn!(reason = why, "CertificateSigned rejected");
                cx.security_event(now, "InvalidChargingStationCertificate", Some(&why));
                respond(v201::CertificateSignedStatusEnum::Rejected)
            }
        }
    }

    fn check_signed_chain(
        &self,
        cx: &Ctx,
        now: Instant,
        pem: &str,
    ) -> Result<Vec<x509::Certificate>, String> {
        let chain: Vec<x509::Certificate> = x509::pem_blocks(pem, "CERTIFICATE")
            .map_err(|e| e.to_string())?
            .iter()
            .map(|der| x509::parse_certificate(der).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let leaf = chain.first().ok_or("no certificate in the chain")?;
        let Some((_, spki)) = &self.pending_csr else {
            return Err("no CSR is pending".into());
        };
        if &leaf.spki_der != spki {
            return Err("the certificate is not for the key of our CSR".into());
        }
        let (organization, common_name) = self.certificate_subject(cx);
        if leaf.subject_cn.as_deref() != Some(common_name.as_str()) {
            return Err(format!(
                "CN {:?} is not the serial number {common_name:?}",
                leaf.subject_cn
            ));
        }
        if leaf.subject_o.as_deref() != Some(organization.as_str()) {
            return Err(format!(
                "O {:?} is not OrganizationName {organization:?}",
                leaf.subject_o
            ));
        }
        let roots: Vec<x509::Certificate> = self
            .store
            .roots
            .iter()
            .filter(|r| r.kind == "CSMSRootCertificate" || r.kind == "ManufacturerRootCertificate")
            .map(|r| r.cert.clone())
            .chain(self.store.configured_roots.iter().cloned())
            .collect();
        let now_ms = cx.clock.utc(now).unix_millis();
        x509::verify_chain(&chain, &roots, now_ms, x509::Usage::ClientAuth)
            .map_err(|e| e.to_string())?;
        Ok(chain)
    }

    /// A03.FR.02: renew the station certificate a month before it expires (checked daily).
    pub(crate) fn check_certificate_expiry(&mut self, cx: &mut Ctx, now: Instant) {
        cx.timers.set(Timer::CertificateCheck, now + EXPIRY_CHECK);
        if !cx.clock.trusted(now) {
            return;
        }
        let now_ms = cx.clock.utc(now).unix_millis();
        if let Some(leaf) = self.store.station_chain.first() {
            if leaf.not_after_ms - now_ms < RENEW_BEFORE_MS
                && self.pending_csr.is_none()
                && cx.is_accepted()
            {
                info!(
                    not_after_ms = leaf.not_after_ms,
                    "the station certificate expires within a month: renewing (A03)"
                );
                self.start_key_update(cx);
            }
        }
        for root in &self.store.roots {
            if root.cert.not_after_ms < now_ms {
                warn!(
                    kind = root.kind,
                    serial = root.cert.serial_hex(),
                    "an installed certificate has expired"
                );
            }
        }
    }

    /// Restores a CSR that was pending at shutdown (its key is in the shell's state directory).
    pub(crate) fn restore_pending_csr(&mut self, persisted: &crate::ocpp::persist::Persisted) {
        if let (Some(pem), Some(spki_hex)) =
            (persisted.meta(META_CSR_PEM), persisted.meta(META_CSR_SPKI))
        {
            let spki: Option<Vec<u8>> = (0..spki_hex.len())
                .step_by(2)
                .map(|i| {
                    spki_hex
                        .get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            if let Some(spki) = spki {
                self.pending_csr = Some((pem.to_owned(), spki));
            }
        }
    }
}
