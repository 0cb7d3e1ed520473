//! Firmware update (L01 signed, L02 unsigned where the configuration allows it),: the firmware block.
//! The core keeps the job and its state durable and decides every step; the shell
//! downloads, checks the signature over the file, and runs the integrator's install and
//! activation commands when asked (`Output::Firmware*`), answering with `Input::Firmware`.
//!
//! States and the FirmwareStatusNotification each sends (L01.FR.01, L01.FR.10: every one with
//! the requestId of the UpdateFirmware):
//! DownloadScheduled -> Downloading -> Downloaded -> SignatureVerified (or InvalidSignature)
//! -> [InstallScheduled] -> Installing -> Installed, or InstallRebooting when an activation
//! command reboots into the new image, which then reports Installed (L01.FR.32 a).

use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::{CoreEvent, Ctx};
use crate::ocpp::model::FirmwareHold;
use crate::ocpp::persist::{EventKind, PersistOp, Persisted, Record};
use crate::ocpp::rpc::CallError;
use crate::ocpp::snapshot::FirmwareSnapshot;
use crate::ocpp::station::Output;
use crate::ocpp::timer::Timer;
use crate::ocpp::v201::{self, Action};
use crate::ocpp::x509;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tracing::{info, warn};

const META_LAST_STATUS: &str = "firmware:last_status";
/// Download attempts when the request does not say (`retries` absent).
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// The longest the activation waits for the CSMS to have InstallRebooting (L01.FR.15).
const ACTIVATION_GRACE: Duration = Duration::from_secs(30);

/// What the integrator configured (`[firmware]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwarePolicy {
    /// An install command is configured; without one UpdateFirmware is Rejected.
    pub installer: bool,
    /// An activation command (e.g. a reboot into the new A/B slot) follows the install.
    pub activation: bool,
    /// Accept UpdateFirmware without signingCertificate/signature (L02). Off by default.
    pub allow_unsigned: bool,
}

/// What the shell reports back for a firmware step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareStep {
    Download,
    Verify,
    Install,
    Activate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waiting for retrieveDateTime or for the next attempt.
    Scheduled,
    Downloading,
    Verifying,
    /// Downloaded and verified: waiting for installDateTime or for the transactions to end.
    Verified,
    Installing,
    /// Installed; InstallRebooting is queued and the activation command comes next (or ran:
    /// the start-up after it finishes the job).
    Activating,
}

/// The firmware update in progress, kept in the journal so it survives a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareJob {
    pub request_id: i64,
    pub location: String,
    pub retrieve_ms: i64,
    pub install_ms: Option<i64>,
    /// The signing certificate (DER) and the signature; both absent for unsigned firmware.
    pub signer_der: Option<Vec<u8>>,
    pub signature: Option<Vec<u8>>,
    pub retries_left: u32,
    pub retry_interval_s: u64,
    pub phase: Phase,
    /// Our firmware version when the job started: after the activation, a different one
    /// proves the new image runs.
    pub version_before: String,
    /// InstallScheduled was reported (it is said once).
    #[serde(default)]
    pub install_scheduled_sent: bool,
    /// The install time has come; transactions are still running (L01.FR.06).
    #[serde(default)]
    pub waiting_for_idle: bool,
}

impl Record for FirmwareJob {
    const KEY: &'static str = "firmware:job";
    const VERSION: u32 = 1;
}

/// The firmware block (L01/L02): the update in progress.
#[derive(Debug, Clone, Default)]
pub struct Firmware {
    policy: FirmwarePolicy,
    job: Option<FirmwareJob>,
    /// The last status sent and its requestId (L01.FR.25/26).
    last_status: Option<(String, Option<i64>)>,
    /// The InstallRebooting message must leave before the activation (queue sequence) and
    /// when we stop waiting for it.
    activation_wait: Option<(u64, Instant)>,
    /// The EVSEs with a transaction (from core events): the install waits for none (L01.FR.06).
    busy_evses: Vec<u32>,
}

impl Firmware {
    pub(crate) fn new(policy: FirmwarePolicy) -> Self {
        Firmware {
            policy,
            ..Default::default()
        }
    }

    /// The update in progress, for `ctl status`.
    pub(crate) fn snapshot(&self) -> Option<FirmwareSnapshot> {
        self.job.as_ref().map(|j| FirmwareSnapshot {
            request_id: j.request_id,
            phase: j.phase,
            last_status: self.last_status.as_ref().map(|(s, _)| s.clone()),
        })
    }

    /// L01/L02: UpdateFirmware.
    pub(crate) fn update_firmware(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::UpdateFirmwareRequest,
        manufacturer_roots: &[x509::Certificate],
    ) -> Result<v201::UpdateFirmwareResponse, CallError> {
        use v201::UpdateFirmwareStatusEnum as S;
        let answer = |status: S, reason: Option<(&str, &str)>| v201::UpdateFirmwareResponse {
            custom_data: None,
            status,
            status_info: reason.map(|(code, info)| v201::StatusInfo {
                custom_data: None,
                reason_code: code.into(),
                additional_info: Some(info.chars().take(512).collect()),
            }),
        };
        if !self.policy.installer {
            return Ok(answer(
                S::Rejected,
                Some((
                    "UnsupportedRequest",
                    "no firmware install command is configured",
                )),
            ));
        }
        let location = request.firmware.location.trim();
        if !valid_location(location) {
            return Ok(answer(
                S::Rejected,
                Some((
                    "InvalidURL",
                    "the location must be an http:// or https:// URL",
                )),
            ));
        }
        let f = &request.firmware;
        let (signer_der, signature) = match (&f.signing_certificate, &f.signature) {
            (Some(pem), Some(signature)) => {
                // L01.FR.21/22: the certificate is checked before the request is accepted.
                match self.check_signing_certificate(cx, now, pem, manufacturer_roots) {
                    Ok(der) => (Some(der), Some(signature.clone())),
                    Err(why) => {
                        warn!(request_id = request.request_id, %why, "firmware signing certificate refused");
                        // L01.FR.02
                        cx.security_event(now, "InvalidFirmwareSigningCertificate", Some(&why));
                        return Ok(answer(
                            S::InvalidCertificate,
                            Some(("InvalidCertificate", &why)),
                        ));
                    }
                }
            }
            (None, None) if self.policy.allow_unsigned => (None, None),
            (None, None) => {
                return Ok(answer(
                    S::Rejected,
                    Some((
                        "MissingParam",
                        "signingCertificate and signature are required: unsigned firmware is not allowed",
                    )),
                ));
            }
            _ => {
                return Ok(answer(
                    S::Rejected,
                    Some((
                        "MissingParam",
                        "signingCertificate and signature go together",
                    )),
                ));
            }
        };
        let signature = match signature.map(|s| x509::base64_decode(&s)) {
            None => None,
            Some(Ok(bytes)) => Some(bytes),
            Some(Err(why)) => {
                return Ok(answer(
                    S::Rejected,
                    Some(("InvalidValue", &format!("signature: {why}"))),
                ));
            }
        };
        let mut status = S::Accepted;
        if let Some(old) = &self.job {
            if matches!(old.phase, Phase::Installing | Phase::Activating) {
                // L01.FR.27: an installation cannot be cancelled.
                return Ok(answer(
                    S::Rejected,
                    Some(("FwUpdateInProgress", "a firmware installation is running")),
                ));
            }
            if old.request_id == request.request_id {
                return Ok(answer(
                    S::Rejected,
                    Some(("DuplicateRequestId", "this firmware update is in progress")),
                ));
            }
            // L01.FR.24: the new request replaces the one in progress.
            let old_id = old.request_id;
            info!(
                request_id = old_id,
                "firmware update cancelled by a new UpdateFirmware"
            );
            cx.outputs
                .push_back(Output::FirmwareDiscard { request_id: old_id });
            status = S::AcceptedCanceled;
        }
        let utc_now = cx.clock.utc(now).unix_millis();
        let parse = |s: &str| UtcTime::parse_rfc3339(s).map(UtcTime::unix_millis);
        // `retries` counts attempts after the first.
        let (retries_left, retry_interval_s) = super::transfer_retries(
            request.retries,
            request.retry_interval,
            DEFAULT_RETRIES,
            DEFAULT_RETRY_INTERVAL,
        );
        let job = FirmwareJob {
            request_id: request.request_id,
            location: location.to_owned(),
            retrieve_ms: parse(&f.retrieve_date_time).unwrap_or(utc_now),
            install_ms: f.install_date_time.as_deref().and_then(parse),
            signer_der,
            signature,
            retries_left,
            retry_interval_s,
            phase: Phase::Scheduled,
            version_before: cx.identity.firmware_version.clone(),
            install_scheduled_sent: false,
            waiting_for_idle: false,
        };
        info!(
            request_id = job.request_id,
            location = %redacted(&job.location),
            signed = job.signer_der.is_some(),
            "firmware update accepted"
        );
        self.job = Some(job);
        self.activation_wait = None;
        cx.timers.stop(Timer::Firmware);
        self.save_firmware_job(cx);
        if status == S::AcceptedCanceled {
            // The replaced job may have held idle EVSEs Unavailable, or a Reset back.
            cx.emit(CoreEvent::ConnectorStatusesChanged);
            cx.emit(CoreEvent::FirmwareIdle);
        }
        // L01.FR.13: not downloading right away is reported.
        if self.firmware_due(cx, now, self.job.as_ref().map_or(0, |j| j.retrieve_ms)) {
            self.start_download(cx, now);
        } else {
            self.firmware_status(cx, now, v201::FirmwareStatusEnum::DownloadScheduled);
            self.arm_firmware_timer(cx, now);
        }
        Ok(answer(status, None))
    }

    /// Checks the firmware signing certificate against the installed manufacturer roots
    /// (L01.FR.12, M05): returns its DER.
    fn check_signing_certificate(
        &self,
        cx: &Ctx,
        now: Instant,
        pem: &str,
        manufacturer_roots: &[x509::Certificate],
    ) -> Result<Vec<u8>, String> {
        let chain = x509::parse_pem_certificates(pem).map_err(|e| e.to_string())?;
        let Some(leaf) = chain.first() else {
            return Err("no certificate in signingCertificate".into());
        };
        let roots = manufacturer_roots;
        if roots.is_empty() {
            return Err("no ManufacturerRootCertificate is installed".into());
        }
        let now_ms = cx.clock.utc(now).unix_millis();
        x509::verify_chain(&chain, roots, now_ms, x509::Usage::CodeSigning)
            .map_err(|e| e.to_string())?;
        Ok(leaf.der.clone())
    }

    /// Whether a UTC time (ms) has come.
    fn firmware_due(&self, cx: &Ctx, now: Instant, utc_ms: i64) -> bool {
        cx.clock.utc(now).unix_millis() >= utc_ms
    }

    /// The Instant at which the job's next timed step is due.
    fn arm_firmware_timer(&mut self, cx: &mut Ctx, now: Instant) {
        let Some(job) = &self.job else {
            return;
        };
        let at_ms = match job.phase {
            Phase::Scheduled => job.retrieve_ms,
            Phase::Verified => job.install_ms.unwrap_or(0),
            _ => return,
        };
        let wait = at_ms.saturating_sub(cx.clock.utc(now).unix_millis()).max(0) as u64;
        cx.timers
            .set(Timer::Firmware, now + Duration::from_millis(wait));
    }

    fn start_download(&mut self, cx: &mut Ctx, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        job.phase = Phase::Downloading;
        let (request_id, location) = (job.request_id, job.location.clone());
        self.save_firmware_job(cx);
        self.firmware_status(cx, now, v201::FirmwareStatusEnum::Downloading);
        cx.outputs.push_back(Output::FirmwareDownload {
            request_id,
            location,
        });
    }

    pub(crate) fn firmware_timer(&mut self, cx: &mut Ctx, now: Instant) {
        let Some(phase) = self.job.as_ref().map(|j| j.phase) else {
            return;
        };
        match phase {
            Phase::Scheduled => self.start_download(cx, now),
            Phase::Verified => self.try_install(cx, now),
            Phase::Activating => self.try_activate(cx, now),
            _ => {}
        }
    }

    /// The shell finished a step of the firmware job `request_id`.
    pub(crate) fn firmware_result(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request_id: i64,
        step: FirmwareStep,
        result: Result<(), String>,
    ) {
        use v201::FirmwareStatusEnum as F;
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if job.request_id != request_id {
            return; // a cancelled job
        }
        match (step, job.phase, result) {
            (FirmwareStep::Download, Phase::Downloading, Ok(())) => {
                info!(request_id, "firmware downloaded");
                self.firmware_status(cx, now, F::Downloaded);
                let job = self.job.as_mut().expect("checked above");
                match (job.signer_der.clone(), job.signature.clone()) {
                    (Some(signer_der), Some(signature)) => {
                        job.phase = Phase::Verifying;
                        self.save_firmware_job(cx);
                        cx.outputs.push_back(Output::FirmwareVerify {
                            request_id,
                            signer_der,
                            signature,
                        });
                    }
                    _ => self.firmware_verified(cx, now),
                }
            }
            (FirmwareStep::Download, Phase::Downloading, Err(why)) => {
                if job.retries_left > 0 {
                    job.retries_left -= 1;
                    job.phase = Phase::Scheduled;
                    let wait = Duration::from_secs(job.retry_interval_s);
                    warn!(request_id, %why, retries_left = job.retries_left, "firmware download failed; retrying");
                    self.save_firmware_job(cx);
                    cx.timers.set(Timer::Firmware, now + wait);
                } else {
                    // L01.FR.30
                    warn!(request_id, %why, "firmware download failed; no retries left");
                    self.finish_firmware(cx, now, F::DownloadFailed);
                }
            }
            (FirmwareStep::Verify, Phase::Verifying, Ok(())) => self.firmware_verified(cx, now),
            (FirmwareStep::Verify, Phase::Verifying, Err(why)) => {
                warn!(request_id, %why, "firmware signature invalid");
                // L01.FR.03
                cx.security_event(now, "InvalidFirmwareSignature", Some(&why));
                self.finish_firmware(cx, now, F::InvalidSignature);
            }
            (FirmwareStep::Install, Phase::Installing, Ok(())) => {
                if self.policy.activation {
                    // L01.FR.15, L01.FR.32 (a): say so, then activate; the new image reports
                    // Installed.
                    job.phase = Phase::Activating;
                    self.save_firmware_job(cx);
                    self.firmware_status(cx, now, F::InstallRebooting);
                    let seq = cx.link.outbox.iter().last().map_or(0, |m| m.queue_seq);
                    self.activation_wait = Some((seq, now + ACTIVATION_GRACE));
                    self.try_activate(cx, now);
                } else {
                    self.firmware_installed(cx, now);
                }
            }
            (FirmwareStep::Install, Phase::Installing, Err(why)) => {
                warn!(request_id, %why, "firmware installation failed");
                self.finish_firmware(cx, now, F::InstallationFailed);
            }
            (FirmwareStep::Activate, Phase::Activating, Err(why)) => {
                warn!(request_id, %why, "firmware activation failed");
                self.finish_firmware(cx, now, F::InstallationFailed);
            }
            (step, phase, result) => {
                warn!(
                    request_id,
                    ?step,
                    ?phase,
                    ?result,
                    "unexpected firmware step result ignored"
                );
            }
        }
    }

    fn firmware_verified(&mut self, cx: &mut Ctx, now: Instant) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let signed = job.signer_der.is_some();
        job.phase = Phase::Verified;
        self.save_firmware_job(cx);
        if signed {
            self.firmware_status(cx, now, v201::FirmwareStatusEnum::SignatureVerified);
        }
        self.try_install(cx, now);
    }

    /// L01.FR.05/06/16: install once installDateTime has come and no transaction runs.
    fn try_install(&mut self, cx: &mut Ctx, now: Instant) {
        use v201::FirmwareStatusEnum as F;
        let Some(job) = self.job.as_ref() else {
            return;
        };
        if job.phase != Phase::Verified {
            return;
        }
        let (request_id, install_ms, sent) =
            (job.request_id, job.install_ms, job.install_scheduled_sent);
        let time_due = install_ms.is_none_or(|t| self.firmware_due(cx, now, t));
        let busy = !self.busy_evses.is_empty();
        if !time_due || busy {
            if let Some(job) = self.job.as_mut() {
                job.install_scheduled_sent = true;
                job.waiting_for_idle = time_due;
            }
            self.save_firmware_job(cx);
            if !sent {
                // L01.FR.16 (a time in the future), L01.FR.34 (waiting for transactions).
                self.firmware_status(cx, now, F::InstallScheduled);
            }
            if time_due {
                // L01.FR.07: idle EVSEs become Unavailable while we wait.
                cx.emit(CoreEvent::ConnectorStatusesChanged);
            } else {
                self.arm_firmware_timer(cx, now);
            }
            return;
        }
        if let Some(job) = self.job.as_mut() {
            job.phase = Phase::Installing;
        }
        self.save_firmware_job(cx);
        cx.emit(CoreEvent::ConnectorStatusesChanged);
        self.firmware_status(cx, now, F::Installing);
        info!(request_id, "installing firmware");
        cx.outputs.push_back(Output::FirmwareInstall { request_id });
    }

    /// Transactions start and end: an installation that waited for them (L01.FR.06) may go.
    pub(crate) fn on_event(&mut self, cx: &mut Ctx, now: Instant, event: &CoreEvent) {
        match *event {
            CoreEvent::TransactionStarted { evse } if !self.busy_evses.contains(&evse) => {
                self.busy_evses.push(evse);
            }
            CoreEvent::TransactionEnded { evse } => {
                self.busy_evses.retain(|&e| e != evse);
                if self
                    .job
                    .as_ref()
                    .is_some_and(|j| j.phase == Phase::Verified && j.waiting_for_idle)
                {
                    self.try_install(cx, now);
                }
            }
            _ => {}
        }
    }

    /// InstallRebooting reached the CSMS: activate now.
    pub(crate) fn firmware_status_delivered(&mut self, cx: &mut Ctx, now: Instant, queue_seq: u64) {
        if self
            .activation_wait
            .is_some_and(|(seq, _)| seq == queue_seq)
        {
            self.activation_wait = None;
            cx.timers.stop(Timer::Firmware);
            self.try_activate(cx, now);
        }
    }

    /// Runs the activation once InstallRebooting has left (or after a grace period).
    fn try_activate(&mut self, cx: &mut Ctx, now: Instant) {
        let Some(job) = self.job.as_ref() else {
            return;
        };
        let request_id = job.request_id;
        if let Some((seq, deadline)) = self.activation_wait {
            if cx.link.outbox.iter().any(|m| m.queue_seq == seq) && now < deadline {
                // `firmware_status_delivered` or the deadline, whichever comes first.
                cx.timers.set(Timer::Firmware, deadline);
                return;
            }
        }
        self.activation_wait = None;
        info!(request_id, "activating the new firmware");
        cx.outputs
            .push_back(Output::FirmwareActivate { request_id });
    }

    fn firmware_installed(&mut self, cx: &mut Ctx, now: Instant) {
        info!("firmware installed");
        self.finish_firmware(cx, now, v201::FirmwareStatusEnum::Installed);
        // L01.FR.31
        cx.security_event(now, "FirmwareUpdated", None);
    }

    /// The job ends with `status`: files go, the EVSEs are released.
    fn finish_firmware(&mut self, cx: &mut Ctx, now: Instant, status: v201::FirmwareStatusEnum) {
        if let Some(job) = self.job.take() {
            self.firmware_status_for(cx, now, status, Some(job.request_id));
            cx.outputs.push_back(Output::FirmwareDiscard {
                request_id: job.request_id,
            });
        }
        self.activation_wait = None;
        cx.timers.stop(Timer::Firmware);
        self.save_firmware_job(cx);
        cx.emit(CoreEvent::ConnectorStatusesChanged);
        // A Reset or availability change that waited may go now.
        cx.emit(CoreEvent::FirmwareIdle);
    }

    /// The install or activation command runs: a Reset would cut it (answered Rejected with
    /// FwUpdateInProgress).
    pub(crate) fn firmware_installing(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| j.phase == Phase::Installing)
    }

    /// What the job does to EVSEs without a transaction (L01.FR.07): they are Unavailable
    /// while the install waits for transactions to end (unless
    /// AllowNewSessionsPendingFirmwareUpdate) and while it runs.
    fn hold(&self) -> FirmwareHold {
        match self.job.as_ref().map(|j| (j.phase, j.waiting_for_idle)) {
            Some((Phase::Installing | Phase::Activating, _)) => FirmwareHold::Installing,
            Some((Phase::Verified, true)) => FirmwareHold::WaitingForIdle,
            _ => FirmwareHold::None,
        }
    }

    /// A FirmwareStatusNotification for the current job, durable like transaction messages so
    /// the CSMS learns every step even across an outage.
    fn firmware_status(&mut self, cx: &mut Ctx, now: Instant, status: v201::FirmwareStatusEnum) {
        let id = self.job.as_ref().map(|j| j.request_id);
        self.firmware_status_for(cx, now, status, id);
    }

    fn firmware_status_for(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        status: v201::FirmwareStatusEnum,
        request_id: Option<i64>,
    ) {
        let payload = v201::adapter::status_report(status.as_str(), request_id);
        self.last_status = Some((status.as_str().to_owned(), request_id));
        let last = json!([status.as_str(), request_id]).to_string();
        cx.enqueue_durable(
            now,
            Action::FirmwareStatusNotification,
            None,
            EventKind::Other,
            payload,
            vec![PersistOp::PutMeta {
                key: META_LAST_STATUS.into(),
                value: last,
            }],
        );
    }

    /// L01.FR.25/26: the answer to TriggerMessage(FirmwareStatusNotification).
    pub(crate) fn firmware_status_triggered(&mut self, cx: &mut Ctx) {
        let payload = match &self.last_status {
            Some((status, id)) if status != "Installed" => {
                v201::adapter::status_report(status, *id)
            }
            _ => json!({"status": "Idle"}),
        };
        cx.enqueue_triggered_report(Action::FirmwareStatusNotification, payload);
    }

    /// Every change of the job is saved, and what it means for the EVSEs published.
    fn save_firmware_job(&mut self, cx: &mut Ctx) {
        cx.model.firmware_hold = self.hold();
        cx.persist(vec![PersistOp::record(self.job.as_ref())]);
    }

    /// Start-up: pick the job up where it stopped.
    pub(crate) fn restore_firmware(&mut self, cx: &mut Ctx, now: Instant, persisted: &Persisted) {
        use v201::FirmwareStatusEnum as F;
        if let Some(last) = persisted.meta(META_LAST_STATUS) {
            if let Ok((status, id)) = serde_json::from_str::<(String, Option<i64>)>(last) {
                self.last_status = Some((status, id));
            }
        }
        let Some(job) = cx.restore_record::<FirmwareJob>(persisted) else {
            return;
        };
        info!(request_id = job.request_id, phase = ?job.phase, "resuming the firmware update");
        let phase = job.phase;
        let changed = job.version_before != cx.identity.firmware_version;
        self.job = Some(job);
        cx.model.firmware_hold = self.hold();
        if phase == Phase::Activating {
            cx.set_boot_reason(v201::BootReasonEnum::FirmwareUpdate);
        }
        match phase {
            Phase::Scheduled => self.arm_firmware_timer(cx, now),
            Phase::Downloading => {
                // The partial file is still there: the download resumes.
                self.job.as_mut().expect("set").phase = Phase::Scheduled;
                self.start_download(cx, now);
            }
            Phase::Verifying => {
                let job = self.job.as_ref().expect("set");
                if let (Some(signer_der), Some(signature)) =
                    (job.signer_der.clone(), job.signature.clone())
                {
                    let request_id = job.request_id;
                    cx.outputs.push_back(Output::FirmwareVerify {
                        request_id,
                        signer_der,
                        signature,
                    });
                }
            }
            Phase::Verified => self.try_install(cx, now),
            // Stopped in the middle of the install command: its result is unknown.
            Phase::Installing => self.finish_firmware(cx, now, F::InstallationFailed),
            // L01.FR.32 (a): the new image reports Installed; the old one still running means
            // the activation did not take (L01.FR.29).
            Phase::Activating if changed => self.firmware_installed(cx, now),
            Phase::Activating => self.finish_firmware(cx, now, F::InstallVerificationFailed),
        }
    }
}

/// The URL without its user information (credentials never go to the log).
pub fn redacted(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => location.to_owned(),
            }
        }
        None => location.to_owned(),
    }
}

/// http(s) and ftp URLs with a host (OCPPCommCtrlr.FileTransferProtocols).
pub(crate) fn valid_location(location: &str) -> bool {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .or_else(|| location.strip_prefix("ftp://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::{redacted, valid_location};

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redacted("https://u:p@h:1/a@b"), "https://***@h:1/a@b");
        assert_eq!(redacted("https://h/a@b"), "https://h/a@b");
        assert_eq!(redacted("garbage"), "garbage");
    }

    #[test]
    fn locations() {
        assert!(valid_location("https://fw.example.com/a.bin"));
        assert!(valid_location("http://127.0.0.1:8080/a"));
        assert!(valid_location("ftp://fw.example.com/a.bin"));
        assert!(!valid_location("sftp://fw.example.com/a.bin"));
        assert!(!valid_location("https:///a.bin"));
        assert!(!valid_location("https://a b/"));
        assert!(!valid_location("/local/file"));
    }
}
