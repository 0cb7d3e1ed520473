//! The shell's side of GetLog (N01): the station's own security log file, gathering a log
//! (the security log, or the diagnostics command's output) into a file, and uploading it.

use super::http::{self, Fetch, Transfer};
use super::process::run_bounded;
use crate::config::LogSection;
use crate::ocpp::clock::UtcTime;
use crate::ocpp::logs::{UploadFailure, UploadRequest};
use crate::ocpp::station::Input;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, warn};

/// The security log is rotated (one old file kept) at this size.
const SECURITY_LOG_MAX: u64 = 1 << 20;
/// The diagnostics command is stopped after this long.
const GATHER_TIMEOUT: Duration = Duration::from_secs(120);

/// The station's security log: one line per security event, `TIMESTAMP TYPE [techInfo]`.
pub struct SecurityLog {
    path: PathBuf,
}

impl SecurityLog {
    pub fn new(path: PathBuf) -> SecurityLog {
        SecurityLog { path }
    }

    fn rotated(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends one event; a failure is logged, never fatal (the event also goes to the CSMS).
    pub fn record(&self, timestamp: &str, kind: &str, tech_info: Option<&str>) {
        if let Err(e) = self.append(timestamp, kind, tech_info) {
            warn!(path = %self.path.display(), error = %e, "could not write the security log");
        }
    }

    fn append(&self, timestamp: &str, kind: &str, tech_info: Option<&str>) -> std::io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= SECURITY_LOG_MAX) {
            std::fs::rename(&self.path, self.rotated())?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        let mut line = format!("{timestamp} {kind}");
        if let Some(info) = tech_info {
            // One event, one line.
            line.push(' ');
            line.extend(info.chars().map(|c| if c.is_control() { ' ' } else { c }));
        }
        line.push('\n');
        file.write_all(line.as_bytes())
    }

    /// The lines whose timestamp lies within [oldest, latest], oldest file first.
    fn write_filtered(
        &self,
        out: &mut impl Write,
        oldest_ms: Option<i64>,
        latest_ms: Option<i64>,
        max_bytes: u64,
    ) -> std::io::Result<()> {
        let mut written = 0u64;
        for path in [self.rotated(), self.path.clone()] {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in text.lines() {
                let at = line
                    .split(' ')
                    .next()
                    .and_then(UtcTime::parse_rfc3339)
                    .map(UtcTime::unix_millis);
                let inside = at.is_none_or(|t| {
                    oldest_ms.is_none_or(|o| t >= o) && latest_ms.is_none_or(|l| t <= l)
                });
                if inside {
                    if written + line.len() as u64 + 1 > max_bytes {
                        writeln!(out, "[cut at {max_bytes} bytes]")?;
                        return Ok(());
                    }
                    writeln!(out, "{line}")?;
                    written += line.len() as u64 + 1;
                }
            }
        }
        Ok(())
    }
}

pub struct LogUploader {
    dir: PathBuf,
    config: LogSection,
    security_log_path: PathBuf,
    results: mpsc::Sender<Input>,
    running: Option<(i64, JoinHandle<()>)>,
}

impl LogUploader {
    pub fn new(
        dir: PathBuf,
        config: LogSection,
        security_log_path: PathBuf,
        results: mpsc::Sender<Input>,
    ) -> LogUploader {
        LogUploader {
            dir,
            config,
            security_log_path,
            results,
            running: None,
        }
    }

    pub fn upload(&mut self, job: UploadRequest, transfer: Transfer) {
        self.cancel_running();
        let fetch = Fetch {
            tls: transfer.tls,
            stall_timeout: transfer.stall_timeout,
            max_bytes: self.config.upload_max_bytes,
        };
        let dir = self.dir.clone();
        let command = self.config.diagnostics_command.clone();
        let security_log = SecurityLog::new(self.security_log_path.clone());
        let max_bytes = self.config.upload_max_bytes;
        let results = self.results.clone();
        let request_id = job.request_id;
        let handle = tokio::spawn(
            async move {
                let file = dir.join(format!("{}.log", job.request_id));
                let gathered = {
                    let file = file.clone();
                    let (log_type, oldest, latest) =
                        (job.log_type.clone(), job.oldest_ms, job.latest_ms);
                    tokio::task::spawn_blocking(move || {
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(&dir)
                            .map_err(|e| format!("{}: {e}", dir.display()))?;
                        gather(
                            &log_type,
                            &file,
                            &command,
                            &security_log,
                            oldest,
                            latest,
                            max_bytes,
                        )
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                };
                let result = match gathered {
                    // Boxed, as the firmware download (`FirmwareWorker::download`).
                    Ok(()) => Box::pin(http::upload(&job.location, &job.filename, &file, &fetch))
                        .await
                        .map_err(|e| (failure_kind(e.status), e.message)),
                    Err(why) => Err((UploadFailure::Transfer, why)),
                };
                let _ = tokio::fs::remove_file(&file).await;
                match &result {
                    Ok(()) => info!(request_id, "log file sent"),
                    Err((_, why)) => warn!(request_id, error = %why, "log upload attempt failed"),
                }
                let _ = results
                    .send(Input::LogUploaded { request_id, result })
                    .await;
            }
            .in_current_span(),
        );
        self.running = Some((request_id, handle));
    }

    pub fn cancel(&mut self, request_id: i64) {
        if self
            .running
            .as_ref()
            .is_some_and(|(id, _)| *id == request_id)
        {
            self.cancel_running();
            let _ = std::fs::remove_file(self.dir.join(format!("{request_id}.log")));
        }
    }

    fn cancel_running(&mut self) {
        if let Some((_, handle)) = self.running.take() {
            handle.abort();
        }
    }
}

/// N01.FR.10: what an HTTP status means for the CSMS.
fn failure_kind(status: Option<u16>) -> UploadFailure {
    match status {
        Some(401 | 403) => UploadFailure::PermissionDenied,
        Some(405 | 501) => UploadFailure::NotSupportedOperation,
        Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => UploadFailure::BadMessage,
        _ => UploadFailure::Transfer,
    }
}

/// Writes the requested log into `file`.
fn gather(
    log_type: &str,
    file: &Path,
    command: &[String],
    security_log: &SecurityLog,
    oldest_ms: Option<i64>,
    latest_ms: Option<i64>,
    max_bytes: u64,
) -> Result<(), String> {
    let describe = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .map_err(describe)?;
    if log_type == "SecurityLog" {
        security_log
            .write_filtered(&mut out, oldest_ms, latest_ms, max_bytes)
            .map_err(describe)?;
    } else {
        run_diagnostics(
            command,
            &mut out,
            (oldest_ms, latest_ms),
            max_bytes,
            GATHER_TIMEOUT,
        )?;
    }
    out.sync_all().map_err(describe)
}

/// journalctl's `--since` form of a UTC time.
fn journal_time(ms: i64) -> String {
    let text = UtcTime::from_unix_millis(ms).to_rfc3339();
    format!("{} {} UTC", &text[..10], &text[11..19])
}

/// Runs the diagnostics command into `out` (at most `max_bytes`). The time window goes to
/// journalctl as `--since/--until`, to any command as `OCPP_LOG_SINCE/UNTIL` (RFC 3339).
fn run_diagnostics(
    command: &[String],
    out: &mut std::fs::File,
    (oldest_ms, latest_ms): (Option<i64>, Option<i64>),
    max_bytes: u64,
    timeout: Duration,
) -> Result<(), String> {
    let (program, args) = command
        .split_first()
        .ok_or("no diagnostics command is configured")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let is_journalctl = Path::new(program)
        .file_name()
        .is_some_and(|n| n == "journalctl");
    for (flag, env, at) in [
        ("--since", "OCPP_LOG_SINCE", oldest_ms),
        ("--until", "OCPP_LOG_UNTIL", latest_ms),
    ] {
        if let Some(ms) = at {
            cmd.env(env, UtcTime::from_unix_millis(ms).to_rfc3339());
            if is_journalctl {
                cmd.arg(format!("{flag}={}", journal_time(ms)));
            }
        }
    }
    let mut written = 0u64;
    let mut failed: Option<String> = None;
    let finished = run_bounded(&mut cmd, timeout, &mut |chunk| {
        let keep = (max_bytes - written).min(chunk.len() as u64) as usize;
        if let Err(e) = out.write_all(&chunk[..keep]) {
            failed = Some(e.to_string());
            return false;
        }
        written += keep as u64;
        keep == chunk.len()
    })
    .map_err(|e| format!("diagnostics command {program}: {e}"))?;
    if let Some(e) = failed {
        return Err(e);
    }
    if finished.timed_out {
        writeln!(
            out,
            "\n[the diagnostics command was stopped after {} s]",
            timeout.as_secs()
        )
        .map_err(|e| e.to_string())?;
        return Ok(());
    }
    if finished.stopped {
        writeln!(out, "\n[cut at {written} bytes]").map_err(|e| e.to_string())?;
        return Ok(());
    }
    if !finished.status.success() {
        return Err(format!(
            "the diagnostics command failed ({})",
            finished.status
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_log_filters_by_time_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let log = SecurityLog::new(dir.path().join("security.log"));
        log.record("2026-01-01T00:00:00.000Z", "StartupOfTheDevice", None);
        log.record("2026-01-02T00:00:00.000Z", "FirmwareUpdated", Some("a\nb"));
        log.record("2026-01-03T00:00:00.000Z", "ResetOrReboot", None);
        let mut out = Vec::new();
        let day = 86_400_000;
        let jan2 = UtcTime::parse_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .unix_millis();
        log.write_filtered(&mut out, Some(jan2), Some(jan2 + day - 1), 1 << 20)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T00:00:00.000Z FirmwareUpdated a b\n"
        );
        let mut out = Vec::new();
        log.write_filtered(&mut out, None, None, 60).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-01T00:00:00.000Z StartupOfTheDevice\n[cut at 60 bytes]\n"
        );
        // Rotation keeps the old file and reads it first.
        std::fs::write(log.rotated(), "2025-12-31T00:00:00.000Z Old\n").unwrap();
        let mut out = Vec::new();
        log.write_filtered(&mut out, None, None, 1 << 20).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("2025-12-31T00:00:00.000Z Old\n")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("security.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn diagnostics(
        command: &[&str],
        max_bytes: u64,
        timeout_s: u64,
    ) -> (Result<(), String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let mut out = std::fs::File::create(&path).unwrap();
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let result = run_diagnostics(
            &command,
            &mut out,
            (Some(0), None),
            max_bytes,
            Duration::from_secs(timeout_s),
        );
        (result, std::fs::read_to_string(&path).unwrap())
    }

    #[test]
    fn diagnostics_commands_are_bounded_in_size_and_time() {
        let (r, text) = diagnostics(&["/bin/sh", "-c", "echo since=$OCPP_LOG_SINCE"], 1000, 10);
        assert_eq!(
            (r, text.as_str()),
            (Ok(()), "since=1970-01-01T00:00:00.000Z\n")
        );
        let (r, text) = diagnostics(&["/bin/sh", "-c", "yes line"], 100, 10);
        assert!(r.is_ok());
        assert!(text.ends_with("\n[cut at 100 bytes]\n"), "{text}");
        // Hangs without output: stopped at the deadline, what came is kept.
        let started = std::time::Instant::now();
        let (r, text) = diagnostics(&["/bin/sh", "-c", "echo partial; exec sleep 60"], 1000, 1);
        assert!(r.is_ok());
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(
            text,
            "partial\n\n[the diagnostics command was stopped after 1 s]\n"
        );
        let (r, _) = diagnostics(&["/bin/sh", "-c", "exit 3"], 1000, 10);
        assert!(r.unwrap_err().contains("failed"));
        let (r, _) = diagnostics(&["/nonexistent/program"], 1000, 10);
        assert!(r.unwrap_err().contains("/nonexistent/program"));
    }

    #[test]
    fn http_statuses_map_to_upload_statuses() {
        assert_eq!(failure_kind(Some(403)), UploadFailure::PermissionDenied);
        assert_eq!(failure_kind(Some(401)), UploadFailure::PermissionDenied);
        assert_eq!(failure_kind(Some(400)), UploadFailure::BadMessage);
        assert_eq!(
            failure_kind(Some(405)),
            UploadFailure::NotSupportedOperation
        );
        assert_eq!(failure_kind(Some(503)), UploadFailure::Transfer);
        assert_eq!(failure_kind(Some(429)), UploadFailure::Transfer);
        assert_eq!(failure_kind(None), UploadFailure::Transfer);
        assert_eq!(journal_time(0), "1970-01-01 00:00:00 UTC");
    }
}
