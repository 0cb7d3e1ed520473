//! Log upload (N01), as methods of [`Station`]: GetLog answered with the file name, the
//! upload asked of the shell (`Output::UploadLog`), retried as the request says, and every
//! step reported with a durable LogStatusNotification carrying the requestId (N01.FR.07). The
//! job is kept in the journal, so an upload cut by a restart is done after it.

use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::Ctx;
use crate::ocpp::persist::{EventKind, PersistOp, Persisted, Record};
use crate::ocpp::rpc::CallError;
use crate::ocpp::station::Output;
use crate::ocpp::timer::Timer;
use crate::ocpp::v201::{self, Action};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tracing::{info, warn};

const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// Why an upload failed, as LogStatusNotification tells it (N01.FR.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFailure {
    /// Network, server error, ...: `UploadFailure`.
    Transfer,
    /// The server refused our credentials (HTTP 401/403).
    PermissionDenied,
    /// The server refused the request itself (HTTP 400 and other 4xx).
    BadMessage,
    /// The location's protocol or method is not supported.
    NotSupportedOperation,
}

impl UploadFailure {
    fn status(self) -> v201::UploadLogStatusEnum {
        use v201::UploadLogStatusEnum as U;
        match self {
            UploadFailure::Transfer => U::UploadFailure,
            UploadFailure::PermissionDenied => U::PermissionDenied,
            UploadFailure::BadMessage => U::BadMessage,
            UploadFailure::NotSupportedOperation => U::NotSupportedOperation,
        }
    }
}

/// The upload in progress, kept in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogJob {
    pub upload: UploadRequest,
    pub retries_left: u32,
    pub retry_interval_s: u64,
}

impl Record for LogJob {
    const KEY: &'static str = "log:job";
    const VERSION: u32 = 1;
}

/// What the shell uploads: the log (`DiagnosticsLog` or `SecurityLog`, the entries between
/// the UTC times when given) as `filename` to `location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub request_id: i64,
    pub log_type: String,
    pub location: String,
    pub filename: String,
    pub oldest_ms: Option<i64>,
    pub latest_ms: Option<i64>,
}

/// The diagnostics block (N01): the log upload in progress.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// A diagnostics source is configured (without one, DiagnosticsLog is Rejected).
    diagnostics: bool,
    job: Option<LogJob>,
}

impl Diagnostics {
    pub(crate) fn new(diagnostics_source: bool) -> Self {
        Diagnostics {
            diagnostics: diagnostics_source,
            job: None,
        }
    }

    /// N01: GetLog.
    pub(crate) fn get_log(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::GetLogRequest,
    ) -> Result<v201::GetLogResponse, CallError> {
        use v201::LogStatusEnum as S;
        let refuse = |code: &str, info: &str| v201::GetLogResponse {
            custom_data: None,
            status: S::Rejected,
            status_info: Some(v201::StatusInfo {
                custom_data: None,
                reason_code: code.into(),
                additional_info: Some(info.into()),
            }),
            filename: None,
        };
        let location = request.log.remote_location.trim();
        if !crate::ocpp::firmware::valid_location(location) {
            return Ok(refuse(
                "InvalidURL",
                "the remote location must be an https://, http:// or ftp:// URL",
            ));
        }
        let log_type = request.log_type.as_str();
        // N01.FR.05
        if request.log_type == v201::LogEnum::DiagnosticsLog && !self.diagnostics {
            return Ok(refuse(
                "UnsupportedRequest",
                "no diagnostics source is configured (logs.diagnostics_command)",
            ));
        }
        let mut status = S::Accepted;
        if let Some(old) = self.job.take() {
            // N01.FR.12, N01.FR.20: the new request replaces the upload in progress.
            info!(
                request_id = old.upload.request_id,
                "log upload cancelled by a new GetLog"
            );
            cx.outputs.push_back(Output::CancelLogUpload {
                request_id: old.upload.request_id,
            });
            cx.timers.stop(Timer::LogRetry);
            self.log_status(
                cx,
                now,
                v201::UploadLogStatusEnum::AcceptedCanceled,
                Some(old.upload.request_id),
            );
            status = S::AcceptedCanceled;
        }
        let parse = |s: &Option<String>| {
            s.as_deref()
                .and_then(UtcTime::parse_rfc3339)
                .map(UtcTime::unix_millis)
        };
        let stamp = cx.clock.utc(now).to_rfc3339();
        // 20261126T104300Z from 2026-11-26T10:43:00.000Z
        let compact: String = stamp[..19]
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        let filename = format!("{}_{log_type}_{compact}Z.log", cx.identity.station_id);
        let (retries_left, retry_interval_s) = super::transfer_retries(
            request.retries,
            request.retry_interval,
            DEFAULT_RETRIES,
            DEFAULT_RETRY_INTERVAL,
        );
        let job = LogJob {
            upload: UploadRequest {
                request_id: request.request_id,
                log_type: log_type.to_owned(),
                location: location.to_owned(),
                filename: filename.clone(),
                oldest_ms: parse(&request.log.oldest_timestamp),
                latest_ms: parse(&request.log.latest_timestamp),
            },
            retries_left,
            retry_interval_s,
        };
        info!(request_id = job.upload.request_id, log_type, location = %crate::ocpp::firmware::redacted(&job.upload.location), "log upload accepted");
        self.job = Some(job);
        self.start_upload(cx, now);
        Ok(v201::GetLogResponse {
            custom_data: None,
            status,
            status_info: None,
            filename: Some(filename),
        })
    }

    fn start_upload(&mut self, cx: &mut Ctx, now: Instant) {
        let Some(job) = self.job.clone() else {
            return;
        };
        self.save_log_job(cx);
        // N01.FR.08
        self.log_status(
            cx,
            now,
            v201::UploadLogStatusEnum::Uploading,
            Some(job.upload.request_id),
        );
        cx.outputs.push_back(Output::UploadLog(job.upload));
    }

    pub(crate) fn log_retry_timer(&mut self, cx: &mut Ctx, now: Instant) {
        if self.job.is_some() {
            self.start_upload(cx, now);
        }
    }

    /// The shell finished an upload attempt.
    pub(crate) fn log_upload_result(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request_id: i64,
        result: Result<(), (UploadFailure, String)>,
    ) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if job.upload.request_id != request_id {
            return; // cancelled
        }
        match result {
            Ok(()) => {
                info!(request_id, "log uploaded");
                self.job = None;
                self.save_log_job(cx);
                // N01.FR.09
                self.log_status(
                    cx,
                    now,
                    v201::UploadLogStatusEnum::Uploaded,
                    Some(request_id),
                );
            }
            Err((kind, why)) if job.retries_left > 0 && kind == UploadFailure::Transfer => {
                job.retries_left -= 1;
                let wait = Duration::from_secs(job.retry_interval_s);
                warn!(request_id, %why, retries_left = job.retries_left, "log upload failed; retrying");
                self.save_log_job(cx);
                cx.timers.set(Timer::LogRetry, now + wait);
            }
            Err((kind, why)) => {
                warn!(request_id, %why, "log upload failed");
                self.job = None;
                self.save_log_job(cx);
                // N01.FR.10
                self.log_status(cx, now, kind.status(), Some(request_id));
            }
        }
    }

    fn log_status(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        status: v201::UploadLogStatusEnum,
        request_id: Option<i64>,
    ) {
        let payload = v201::adapter::status_report(status.as_str(), request_id);
        cx.enqueue_durable(
            now,
            Action::LogStatusNotification,
            None,
            EventKind::Other,
            payload,
            Vec::new(),
        );
    }

    /// F06.FR.15, N01.FR.13: the answer to TriggerMessage(LogStatusNotification).
    pub(crate) fn log_status_triggered(&mut self, cx: &mut Ctx) {
        let payload = match &self.job {
            Some(job) => json!({"status": "Uploading", "requestId": job.upload.request_id}),
            None => json!({"status": "Idle"}),
        };
        cx.enqueue_triggered_report(Action::LogStatusNotification, payload);
    }

    fn save_log_job(&mut self, cx: &mut Ctx) {
        cx.persist(vec![PersistOp::record(self.job.as_ref())]);
    }

    /// Start-up: an upload a restart cut is made again.
    pub(crate) fn restore_log_upload(&mut self, cx: &mut Ctx, now: Instant, persisted: &Persisted) {
        if let Some(job) = cx.restore_record::<LogJob>(persisted) {
            info!(
                request_id = job.upload.request_id,
                "resuming the log upload"
            );
            self.job = Some(job);
            self.start_upload(cx, now);
        }
    }
}
