//! Plug detection on GPIO input lines through the character device (uAPI v2, via `gpiocdev`):
//! both edges, kernel debouncing, `active_low`, lines found by chip path/name/label and line
//! offset/name.

use crate::config::{GpioLine, LineId};
use gpiocdev::line::{EdgeDetection, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{error, info};

/// How long to wait before retrying a line that could not be opened or failed.
const RETRY: Duration = Duration::from_secs(5);

/// How often a watched line is read back even without an edge: a kernel may not wake the
/// poller when the chip goes away (Linux 6.1 does not), and only a read then sees the error.
const READ_BACK: Duration = Duration::from_secs(5);

/// A resolved line: the chip device and the offset on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLine {
    pub chip: PathBuf,
    pub offset: u32,
}

/// Finds the line a configuration names.
pub fn resolve(line: &GpioLine) -> Result<ResolvedLine, String> {
    let chip = line.chip.as_deref().map(resolve_chip).transpose()?;
    match (&line.line, chip) {
        (LineId::Offset(offset), Some(chip)) => Ok(ResolvedLine {
            chip,
            offset: *offset,
        }),
        (LineId::Offset(_), None) => Err("a line offset needs a chip".into()),
        (LineId::Name(name), Some(chip)) => {
            let c =
                gpiocdev::Chip::from_path(&chip).map_err(|e| format!("{}: {e}", chip.display()))?;
            let info = c
                .find_line_info(name)
                .ok_or_else(|| format!("no line named {name:?} on {}", chip.display()))?;
            Ok(ResolvedLine {
                chip,
                offset: info.offset,
            })
        }
        (LineId::Name(name), None) => {
            let found = gpiocdev::find_named_line(name)
                .ok_or_else(|| format!("no GPIO line named {name:?} on any chip"))?;
            Ok(ResolvedLine {
                chip: found.chip,
                offset: found.info.offset,
            })
        }
    }
}

/// A chip given as a path (`/dev/gpiochip0`), a device name (`gpiochip0`) or a label.
fn resolve_chip(chip: &str) -> Result<PathBuf, String> {
    if chip.starts_with('/') {
        return Ok(PathBuf::from(chip));
    }
    let chips = gpiocdev::chip::chips().map_err(|e| format!("listing GPIO chips: {e}"))?;
    for path in &chips {
        if path.file_name().is_some_and(|n| n == chip) {
            return Ok(path.clone());
        }
        if let Ok(info) = gpiocdev::Chip::from_path(path).and_then(|c| c.info()) {
            if info.label == chip {
                return Ok(path.clone());
            }
        }
    }
    Err(format!("no GPIO chip with path, name or label {chip:?}"))
}

/// What a plug line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlugEvent {
    /// The debounced level: `true` is plugged.
    Level(bool),
    /// The line failed (`Some(why)`) or works again (`None`).
    Fault(Option<String>),
}

/// Watches one plug line forever, sending the level on every debounced change (starting with
/// the current one). A failing line is reported as a fault and reopened every few seconds.
pub async fn watch(config: GpioLine, label: String, tx: mpsc::Sender<PlugEvent>) {
    let mut faulted = false;
    loop {
        match watch_once(&config, &label, &tx, &mut faulted).await {
            Ok(()) => return, // the receiver is gone: the agent is stopping
            Err(e) => {
                error!(plug = label, error = %e, "GPIO plug line failed; retrying");
                if !faulted {
                    faulted = true;
                    if tx.send(PlugEvent::Fault(Some(e))).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn watch_once(
    config: &GpioLine,
    label: &str,
    tx: &mpsc::Sender<PlugEvent>,
    faulted: &mut bool,
) -> Result<(), String> {
    let line = resolve(config)?;
    let mut builder = gpiocdev::Request::builder();
    builder
        .with_consumer("ocpp-agent")
        .on_chip(&line.chip)
        .with_line(line.offset)
        .as_input()
        .with_edge_detection(EdgeDetection::BothEdges)
        .with_debounce_period(Duration::from_millis(u64::from(config.debounce_ms)));
    if config.active_low {
        builder.as_active_low();
    }
    let request = builder
        .request()
        .map_err(|e| format!("requesting {}:{}: {e}", line.chip.display(), line.offset))?;
    info!(plug = label, chip = %line.chip.display(), offset = line.offset, "watching GPIO plug line");
    let read = |r: &gpiocdev::Request| {
        r.value(line.offset)
            .map(|v| v == Value::Active)
            .map_err(|e| format!("reading line: {e}"))
    };
    let mut last = read(&request)?;
    if *faulted {
        *faulted = false;
        if tx.send(PlugEvent::Fault(None)).await.is_err() {
            return Ok(());
        }
    }
    if tx.send(PlugEvent::Level(last)).await.is_err() {
        return Ok(());
    }
    // SAFETY: the gpiocdev Request owns its line-request fd, keeps it open until it is dropped,
    // and always returns the same fd; the AsyncFd owns the Request for its whole life.
    let fd = unsafe { AsyncFd::register(request) }.map_err(|e| format!("polling line: {e}"))?;
    loop {
        tokio::select! {
            guard = fd.readable() => {
                let mut guard = guard.map_err(|e| e.to_string())?;
                // Drain the events; the level after the (kernel-debounced) edges is what
                // counts.
                while fd.get_ref().has_edge_event().map_err(|e| e.to_string())? {
                    fd.get_ref().read_edge_event().map_err(|e| e.to_string())?;
                }
                guard.clear_ready();
            }
            _ = tokio::time::sleep(READ_BACK) => {}
        }
        let now = read(fd.get_ref())?;
        if now != last {
            last = now;
            if tx.send(PlugEvent::Level(now)).await.is_err() {
                return Ok(());
            }
        }
    }
}
