//! Where an EVSE's charging limit goes (`[[evse]] limit`): the IEC 61851-1 control pilot
//! through the kernel's PWM sysfs interface, or the integrator's command (a Modbus charge
//! controller, an EVSE board's serial protocol, ...). The `sim` backend only lets the simulated
//! meter follow the limit, which every backend does (hardware.rs).

use super::process::run_bounded;
use crate::config::LimitConfig;
use crate::ocpp::model::schedule::Limit;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};

/// Where the kernel exposes PWM controllers.
pub const PWM_SYSFS: &str = "/sys/class/pwm";

/// IEC 61851-1: the pilot oscillates at 1 kHz.
const PILOT_PERIOD_NS: u64 = 1_000_000;

/// The pilot's duty cycle (percent) that offers `amps` per phase, IEC 61851-1 table A.8:
/// 6-51 A: amps / 0.6 (10-85 %); 51-80 A: amps / 2.5 + 64 (up to 96 %). Below 6 A an EV may not
/// charge: 100 % (no oscillation) pauses it. Above 80 A: 80 A, the most the pilot can offer.
pub fn duty_percent(amps: f64) -> f64 {
    if !amps.is_finite() || amps < 6.0 {
        100.0
    } else if amps <= 51.0 {
        amps / 0.6
    } else {
        amps.min(80.0) / 2.5 + 64.0
    }
}

/// A PWM channel driving the control pilot.
#[derive(Debug)]
pub struct PwmPilot {
    /// `<root>/pwmchipN/pwmM`.
    channel_dir: PathBuf,
}

impl PwmPilot {
    /// Exports channel `channel` of `<root>/pwmchip<chip>`, sets 1 kHz and enables it at
    /// 100 % (no charging until the first limit arrives).
    pub fn open(root: &Path, chip: u32, channel: u32) -> Result<PwmPilot, String> {
        let chip_dir = root.join(format!("pwmchip{chip}"));
        if !chip_dir.is_dir() {
            return Err(format!(
                "no PWM controller {}: is its driver loaded and enabled in the device tree?",
                chip_dir.display()
            ));
        }
        let npwm: u32 = std::fs::read_to_string(chip_dir.join("npwm"))
            .map_err(|e| format!("reading {}/npwm: {e}", chip_dir.display()))?
            .trim()
            .parse()
            .map_err(|_| format!("{}/npwm is not a number", chip_dir.display()))?;
        if channel >= npwm {
            return Err(format!(
                "pwmchip{chip} has {npwm} channel(s), numbered from 0: there is no channel {channel}"
            ));
        }
        let channel_dir = chip_dir.join(format!("pwm{channel}"));
        if !channel_dir.is_dir() {
            write(&chip_dir.join("export"), &channel.to_string())?;
            // udev may still be changing the new files' owner: give it a moment.
            for _ in 0..50 {
                if channel_dir.join("enable").exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let pilot = PwmPilot { channel_dir };
        // A duty cycle above the new period is refused by the kernel: 0 first.
        pilot.write("duty_cycle", "0")?;
        pilot.write("period", &PILOT_PERIOD_NS.to_string())?;
        pilot.write("duty_cycle", &PILOT_PERIOD_NS.to_string())?;
        pilot.write("enable", "1")?;
        Ok(pilot)
    }

    /// Offers `amps` per phase to the EV.
    pub fn set(&self, amps: f64) -> Result<(), String> {
        let ns = (duty_percent(amps) / 100.0 * PILOT_PERIOD_NS as f64).round() as u64;
        self.write("duty_cycle", &ns.to_string())
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        write(&self.channel_dir.join(file), value)
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value} to {}: {e}", path.display()))
}

/// The integrator's program, run with `EVSE AMPS PHASES` as arguments whenever the limit
/// changes, bounded in time. Changes that come while it runs are coalesced: it then runs
/// once more with the latest.
#[derive(Debug, Clone)]
pub struct CommandLimit {
    evse: u32,
    program: Vec<String>,
    timeout: Duration,
    /// The limit not yet given to the program, and whether a worker is giving it.
    pending: Arc<Mutex<(Option<Limit>, bool)>>,
}

impl CommandLimit {
    pub fn new(evse: u32, program: Vec<String>, timeout: Duration) -> Self {
        CommandLimit {
            evse,
            program,
            timeout,
            pending: Arc::new(Mutex::new((None, false))),
        }
    }

    pub fn set(&self, limit: Limit) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        pending.0 = Some(limit);
        if pending.1 {
            return;
        }
        pending.1 = true;
        let this = self.clone();
        std::thread::spawn(move || this.work());
    }

    fn work(&self) {
        loop {
            let next = match self.pending.lock() {
                Ok(mut p) => match p.0.take() {
                    Some(limit) => limit,
                    None => {
                        p.1 = false;
                        return;
                    }
                },
                Err(_) => return,
            };
            self.run(next);
        }
    }

    fn run(&self, limit: Limit) {
        let Some((program, args)) = self.program.split_first() else {
            return;
        };
        let amps = format!("{:.1}", limit.amps);
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg(self.evse.to_string())
            .arg(&amps)
            .arg(limit.phases.to_string());
        match run_bounded(&mut cmd, self.timeout, &mut |_| true) {
            Ok(f) if f.status.success() => {
                info!(evse = self.evse, amps, "charging limit command done")
            }
            Ok(f) => error!(
                evse = self.evse,
                amps,
                status = %f.status,
                timed_out = f.timed_out,
                stderr = %String::from_utf8_lossy(&f.stderr_tail).trim_end(),
                "the charging limit command failed"
            ),
            Err(e) => error!(
                evse = self.evse,
                program,
                error = %e,
                "the charging limit command could not be started"
            ),
        }
    }
}

/// An EVSE's limit output.
#[derive(Debug)]
pub enum LimitOutput {
    Sim,
    Pwm(PwmPilot),
    Command(CommandLimit),
}

impl LimitOutput {
    /// Sets the backend up; a missing PWM chip or channel is an error the agent stops for.
    pub fn open(evse: u32, config: &LimitConfig) -> Result<LimitOutput, String> {
        match config {
            LimitConfig::Sim => Ok(LimitOutput::Sim),
            LimitConfig::Pwm { chip, channel } => {
                let pilot = PwmPilot::open(Path::new(PWM_SYSFS), *chip, *channel)?;
                info!(evse, chip, channel, "control pilot ready (PWM, 100 %)");
                Ok(LimitOutput::Pwm(pilot))
            }
            LimitConfig::Command { command, timeout_s } => Ok(LimitOutput::Command(
                CommandLimit::new(evse, command.clone(), Duration::from_secs(*timeout_s)),
            )),
        }
    }

    pub fn set(&self, evse: u32, limit: Limit) {
        match self {
            LimitOutput::Sim => {}
            LimitOutput::Pwm(pilot) => {
                if let Err(e) = pilot.set(limit.amps) {
                    warn!(evse, error = %e, "setting the control pilot failed");
                }
            }
            LimitOutput::Command(c) => c.set(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn duty_cycles_follow_iec_61851_table_a8() {
        assert_eq!(duty_percent(0.0), 100.0);
        assert_eq!(duty_percent(5.9), 100.0);
        assert!((duty_percent(6.0) - 10.0).abs() < 1e-9);
        assert!((duty_percent(16.0) - 26.666_666).abs() < 1e-3);
        assert!((duty_percent(32.0) - 53.333_333).abs() < 1e-3);
        assert!((duty_percent(51.0) - 85.0).abs() < 1e-9);
        assert!((duty_percent(63.0) - 89.2).abs() < 1e-9);
        assert!((duty_percent(80.0) - 96.0).abs() < 1e-9);
        assert!((duty_percent(120.0) - 96.0).abs() < 1e-9);
        assert_eq!(duty_percent(f64::NAN), 100.0);
    }

    /// A directory laid out as the kernel lays out a PWM controller whose channel 1 was
    /// exported (the kernel creates `pwm1/` on export; here it exists already).
    fn fake_chip(npwm: u32) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let chip = root.path().join("pwmchip0");
        std::fs::create_dir_all(chip.join("pwm1")).unwrap();
        std::fs::write(chip.join("npwm"), format!("{npwm}\n")).unwrap();
        for f in ["export", "pwm1/period", "pwm1/duty_cycle", "pwm1/enable"] {
            std::fs::write(chip.join(f), "").unwrap();
        }
        root
    }

    #[test]
    fn the_pwm_pilot_runs_at_1_khz_and_sets_the_duty_cycle() {
        let root = fake_chip(2);
        let pilot = PwmPilot::open(root.path(), 0, 1).unwrap();
        let read =
            |f: &str| std::fs::read_to_string(root.path().join("pwmchip0/pwm1").join(f)).unwrap();
        assert_eq!(read("period"), "1000000");
        assert_eq!(read("enable"), "1");
        assert_eq!(read("duty_cycle"), "1000000", "100 % until a limit comes");
        pilot.set(16.0).unwrap();
        assert_eq!(read("duty_cycle"), "266667");
        pilot.set(0.0).unwrap();
        assert_eq!(read("duty_cycle"), "1000000");
    }

    #[test]
    fn a_missing_chip_or_channel_is_a_clear_error() {
        let root = fake_chip(1);
        let e = PwmPilot::open(root.path(), 3, 0).unwrap_err();
        assert!(
            e.contains("no PWM controller") && e.contains("pwmchip3"),
            "{e}"
        );
        let e = PwmPilot::open(root.path(), 0, 1).unwrap_err();
        assert!(
            e.contains("has 1 channel(s)") && e.contains("no channel 1"),
            "{e}"
        );
    }

    #[test]
    fn the_command_gets_evse_amps_and_phases_and_changes_coalesce() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let script = format!("sleep 0.3; echo \"$@\" >> {}", log.display());
        let c = CommandLimit::new(
            2,
            vec!["/bin/sh".into(), "-c".into(), script, "limit".into()],
            Duration::from_secs(10),
        );
        c.set(Limit::new(16.0, 3));
        // These come while the first runs: only the latest is given.
        std::thread::sleep(Duration::from_millis(50));
        c.set(Limit::new(10.0, 3));
        c.set(Limit::new(6.5, 1));
        let started = Instant::now();
        let calls = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().count() >= 2 || started.elapsed() > Duration::from_secs(10) {
                break text;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "2 16.0 3\n2 6.5 1\n",
            "{calls}"
        );
    }
}
