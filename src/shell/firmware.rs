//! The shell's side of a firmware update (L01): files in the firmware directory, the
//! download, the signature check over the file, and the integrator's install and activation
//! commands. Each step runs off the event loop and reports an `Input::Firmware`.

use super::http::{self, Fetch, Transfer};
use super::process::run_bounded;
use crate::config::FirmwareSection;
use crate::ocpp::firmware::FirmwareStep;
use crate::ocpp::station::Input;
use crate::ocpp::x509;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, warn};

/// After a successful activation command, how long the restart may take to come.
const RESTART_WAIT: Duration = Duration::from_secs(600);

pub struct FirmwareWorker {
    dir: PathBuf,
    config: FirmwareSection,
    results: mpsc::Sender<Input>,
    /// The step running now (one at a time), to abort when the job is cancelled.
    running: Option<(i64, JoinHandle<()>)>,
}

impl FirmwareWorker {
    pub fn new(
        dir: PathBuf,
        config: FirmwareSection,
        results: mpsc::Sender<Input>,
    ) -> FirmwareWorker {
        FirmwareWorker {
            dir,
            config,
            results,
            running: None,
        }
    }

    fn part_path(&self, request_id: i64) -> PathBuf {
        self.dir.join(format!("{request_id}.part"))
    }

    /// The downloaded image.
    pub fn image_path(&self, request_id: i64) -> PathBuf {
        self.dir.join(format!("{request_id}.bin"))
    }

    fn ensure_dir(&self) -> Result<(), String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| format!("{}: {e}", self.dir.display()))
    }

    fn spawn(
        &mut self,
        request_id: i64,
        step: FirmwareStep,
        work: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let results = self.results.clone();
        let handle = tokio::spawn(
            async move {
                let result = work.await;
                let _ = results
                    .send(Input::Firmware {
                        request_id,
                        step,
                        result,
                    })
                    .await;
            }
            .in_current_span(),
        );
        if let Some((_, old)) = self.running.replace((request_id, handle)) {
            if !old.is_finished() {
                old.abort();
            }
        }
    }

    pub fn download(&mut self, request_id: i64, location: String, transfer: Transfer) {
        let fetch = Fetch {
            tls: transfer.tls,
            stall_timeout: transfer.stall_timeout,
            max_bytes: self.config.max_bytes(),
        };
        let ready = self.ensure_dir();
        let part = self.part_path(request_id);
        let image = self.image_path(request_id);
        self.spawn(request_id, FirmwareStep::Download, async move {
            ready?;
            if tokio::fs::metadata(&image).await.is_ok() {
                return Ok(()); // downloaded before a restart
            }
            // Boxed: the download's future (HTTP and TLS state) is large; inline it would be
            // built on the stack of the station loop that spawns this task (issue 13).
            let size = Box::pin(http::download(&location, &part, &fetch)).await?;
            tokio::fs::rename(&part, &image)
                .await
                .map_err(|e| format!("{}: {e}", image.display()))?;
            let _ = tokio::fs::remove_file(http::validator_path(&part)).await;
            info!(request_id, bytes = size, "firmware image complete");
            Ok(())
        });
    }

    pub fn verify(&mut self, request_id: i64, signer_der: Vec<u8>, signature: Vec<u8>) {
        let image = self.image_path(request_id);
        self.spawn(request_id, FirmwareStep::Verify, async move {
            tokio::task::spawn_blocking(move || verify_file(&image, &signer_der, &signature))
                .await
                .map_err(|e| e.to_string())?
        });
    }

    pub fn install(&mut self, request_id: i64) {
        let Some(command) = self.config.install_command.clone() else {
            return;
        };
        let image = self.image_path(request_id);
        let timeout = self.config.install_timeout();
        self.spawn(request_id, FirmwareStep::Install, async move {
            tokio::task::spawn_blocking(move || {
                run_command("install", &command, Some(&image), request_id, timeout)
            })
            .await
            .map_err(|e| e.to_string())?
        });
    }

    pub fn activate(&mut self, request_id: i64) {
        let Some(command) = self.config.activate_command.clone() else {
            return;
        };
        let timeout = self.config.install_timeout();
        self.spawn(request_id, FirmwareStep::Activate, async move {
            tokio::task::spawn_blocking(move || {
                run_command("activate", &command, None, request_id, timeout)
            })
            .await
            .map_err(|e| e.to_string())??;
            // It ran and we still live: the reboot it started is on its way, and the start-up
            // after it finishes the job. If none comes, the station must not stay out of
            // service: the activation failed.
            tokio::time::sleep(RESTART_WAIT).await;
            Err(format!(
                "the activate command succeeded but the station did not restart within {} s",
                RESTART_WAIT.as_secs()
            ))
        });
    }

    /// Removes the job's files, stopping its step if one runs.
    pub fn discard(&mut self, request_id: i64) {
        if let Some((id, handle)) = &self.running {
            if *id == request_id {
                handle.abort();
                self.running = None;
            }
        }
        let part = self.part_path(request_id);
        for path in [
            http::validator_path(&part),
            part.clone(),
            self.image_path(request_id),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => info!(path = %path.display(), "removed firmware file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not remove a firmware file")
                }
            }
        }
    }
}

/// L01.FR.04: the signature over the whole file. The file is mapped, not read, so a large
/// image costs page cache, not heap.
fn verify_file(path: &Path, signer_der: &[u8], signature: &[u8]) -> Result<(), String> {
    let signer = x509::parse_certificate(signer_der).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let map = Mapped::new(&file).map_err(|e| format!("{}: {e}", path.display()))?;
    x509::verify_file_signature(&signer, map.bytes(), signature).map_err(|e| e.to_string())
}

/// A read-only memory map of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &std::fs::File) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large to map"))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh private read-only mapping of an open file; checked for failure.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`. The file
        // is ours (0700 directory), so nobody truncates it under us.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly what `new` mapped.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

/// Runs an integrator command; its output goes to the log. `Err` names the exit status and
/// the last line it printed.
fn run_command(
    what: &str,
    command: &[String],
    file: Option<&Path>,
    request_id: i64,
    timeout: Duration,
) -> Result<(), String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| format!("the {what} command is empty"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("OCPP_FIRMWARE_REQUEST_ID", request_id.to_string());
    if let Some(f) = file {
        cmd.arg(f).env("OCPP_FIRMWARE_FILE", f);
    }
    info!(request_id, program, "running the firmware {what} command");
    // The output goes to the log; a chatty installer keeps only its last 64 KiB.
    let mut output = Vec::new();
    let finished = run_bounded(&mut cmd, timeout, &mut |chunk| {
        output.extend_from_slice(chunk);
        if output.len() > 128 * 1024 {
            output.drain(..output.len() - 64 * 1024);
        }
        true
    })
    .map_err(|e| format!("{what} command {program}: {e}"))?;
    output.extend_from_slice(&finished.stderr_tail);
    let text = String::from_utf8_lossy(&output);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        info!(request_id, "{what}: {line}");
    }
    if finished.timed_out {
        return Err(format!(
            "the {what} command did not finish within {} s",
            timeout.as_secs()
        ));
    }
    if finished.status.success() {
        Ok(())
    } else {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!(
            "the {what} command failed ({}): {last}",
            finished.status
        ))
    }
}
