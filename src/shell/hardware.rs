//! The EVSE hardware besides plug inputs: energy meters and power-path contactors. Meters
//! report through [`crate::ocpp::meter::MeterReading`]; the `sim` meter's register grows while
//! its contactor is closed and survives restarts (kept in the journal's meta table).

use super::pilot::LimitOutput;
use crate::config::{ContactorConfig, GpioOutput, MeterConfig};
use crate::ocpp::meter::MeterReading;
use crate::ocpp::model::schedule::Limit;
use gpiocdev::line::Value;
use std::time::Instant;
use tracing::{error, info};

const SIM_VOLTAGE_V: f64 = 230.0;
const SIM_PHASES: f64 = 3.0;

/// A simulated meter: `power_w` flows while the contactor is closed, or less when the
/// charging limit allows less (the simulated EV follows the pilot signal at once).
#[derive(Debug)]
pub struct SimMeter {
    power_w: f64,
    /// The charging limit in watts (at the sim meter's 230 V), if one was given.
    limit_w: Option<f64>,
    /// The register at `since` (or now, when open).
    energy_wh: f64,
    closed_since: Option<Instant>,
}

impl SimMeter {
    pub fn new(power_w: f64, energy_wh: f64) -> Self {
        SimMeter {
            power_w,
            limit_w: None,
            energy_wh,
            closed_since: None,
        }
    }

    /// What flows while the contactor is closed.
    fn flow_w(&self) -> f64 {
        self.limit_w.map_or(self.power_w, |l| self.power_w.min(l))
    }

    /// A new charging limit: the energy so far is counted at the old power.
    pub fn set_limit(&mut self, limit: Limit, now: Instant) {
        self.energy_wh = self.reading(now).energy_wh;
        if self.closed_since.is_some() {
            self.closed_since = Some(now);
        }
        self.limit_w = Some(limit.watts(SIM_VOLTAGE_V));
    }

    pub fn reading(&self, now: Instant) -> MeterReading {
        let (energy, power) = match self.closed_since {
            Some(since) => (
                self.energy_wh
                    + self.flow_w() * now.saturating_duration_since(since).as_secs_f64() / 3600.0,
                self.flow_w(),
            ),
            None => (self.energy_wh, 0.0),
        };
        MeterReading {
            energy_wh: energy,
            power_w: power,
            current_a: power / SIM_PHASES / SIM_VOLTAGE_V,
            voltage_v: SIM_VOLTAGE_V,
        }
    }

    /// Follows the contactor; returns the register, to be saved when it opens.
    pub fn set_closed(&mut self, closed: bool, now: Instant) -> f64 {
        self.energy_wh = self.reading(now).energy_wh;
        self.closed_since = closed.then_some(now);
        self.energy_wh
    }

    pub fn is_flowing(&self) -> bool {
        self.closed_since.is_some() && self.flow_w() > 0.0
    }
}

pub enum Contactor {
    Sim,
    Gpio {
        request: gpiocdev::Request,
        offset: u32,
    },
}

impl Contactor {
    /// Opens the output line, open (inactive) from the start.
    pub fn open(config: &ContactorConfig, label: &str) -> Result<Contactor, String> {
        match config {
            ContactorConfig::Sim => Ok(Contactor::Sim),
            ContactorConfig::Gpio(out) => {
                let (request, offset) = request_output(out)?;
                info!(
                    contactor = label,
                    offset, "contactor output line ready (open)"
                );
                Ok(Contactor::Gpio { request, offset })
            }
        }
    }

    pub fn set(&mut self, closed: bool) -> Result<(), String> {
        match self {
            Contactor::Sim => Ok(()),
            Contactor::Gpio { request, offset } => request
                .set_value(
                    *offset,
                    if closed {
                        Value::Active
                    } else {
                        Value::Inactive
                    },
                )
                .map(|_| ())
                .map_err(|e| format!("setting the contactor line: {e}")),
        }
    }
}

fn request_output(out: &GpioOutput) -> Result<(gpiocdev::Request, u32), String> {
    let line = super::gpio::resolve(&crate::config::GpioLine {
        chip: out.chip.clone(),
        line: out.line.clone(),
        active_low: out.active_low,
        debounce_ms: 0,
    })?;
    let mut builder = gpiocdev::Request::builder();
    builder
        .with_consumer("ocpp-agent")
        .on_chip(&line.chip)
        .with_line(line.offset)
        .as_output(Value::Inactive);
    if out.active_low {
        builder.as_active_low();
    }
    let request = builder
        .request()
        .map_err(|e| format!("requesting {}:{}: {e}", line.chip.display(), line.offset))?;
    Ok((request, line.offset))
}

/// One EVSE's meter, contactor and limit output.
pub struct EvseHardware {
    pub evse: u32,
    pub meter: SimMeter,
    pub contactor: Contactor,
    pub limit: LimitOutput,
    /// The reading last given to the core.
    pub reported: Option<MeterReading>,
}

impl EvseHardware {
    pub fn new(
        evse: u32,
        meter: &MeterConfig,
        contactor: Contactor,
        limit: LimitOutput,
        energy_wh: f64,
    ) -> Self {
        let MeterConfig::Sim { power_w } = meter;
        EvseHardware {
            evse,
            meter: SimMeter::new(*power_w, energy_wh),
            contactor,
            limit,
            reported: None,
        }
    }

    /// Drives the contactor; a failing output is logged (the meter then shows no energy).
    pub fn set_power_path(&mut self, closed: bool, now: Instant) -> f64 {
        if let Err(e) = self.contactor.set(closed) {
            error!(evse = self.evse, error = %e, "contactor output failed");
        }
        self.meter.set_closed(closed, now)
    }

    /// The charging limit for this EVSE (K): to its pilot or command, and the sim meter
    /// follows it.
    pub fn set_limit(&mut self, limit: Limit, now: Instant) {
        self.limit.set(self.evse, limit);
        self.meter.set_limit(limit, now);
    }

    /// The current reading if it differs from the last one given to the core.
    pub fn fresh_reading(&mut self, now: Instant) -> Option<MeterReading> {
        let reading = self.meter.reading(now);
        if self.reported == Some(reading) {
            return None;
        }
        self.reported = Some(reading);
        Some(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sim_meter_counts_only_while_closed() {
        let t0 = Instant::now();
        let mut m = SimMeter::new(3600.0, 100.0);
        assert_eq!(m.reading(t0 + Duration::from_secs(10)).energy_wh, 100.0);
        m.set_closed(true, t0);
        let r = m.reading(t0 + Duration::from_secs(10));
        assert!((r.energy_wh - 110.0).abs() < 1e-9);
        assert_eq!(r.power_w, 3600.0);
        assert!((r.current_a - 3600.0 / 3.0 / 230.0).abs() < 1e-9);
        let saved = m.set_closed(false, t0 + Duration::from_secs(20));
        assert!((saved - 120.0).abs() < 1e-9);
        assert_eq!(m.reading(t0 + Duration::from_secs(100)).energy_wh, saved);
        assert_eq!(m.reading(t0 + Duration::from_secs(100)).power_w, 0.0);
    }

    #[test]
    fn sim_meter_follows_the_charging_limit() {
        let t0 = Instant::now();
        let mut m = SimMeter::new(11_040.0, 0.0);
        m.set_closed(true, t0);
        // 8 A on 3 phases at 230 V = 5520 W, from 10 s on.
        m.set_limit(Limit::new(8.0, 3), t0 + Duration::from_secs(10));
        let r = m.reading(t0 + Duration::from_secs(20));
        assert!((r.power_w - 5520.0).abs() < 1e-9);
        let expected = 11_040.0 * 10.0 / 3600.0 + 5520.0 * 10.0 / 3600.0;
        assert!((r.energy_wh - expected).abs() < 1e-9, "{}", r.energy_wh);
        // A limit above the EV's own draw changes nothing; 0 A stops the flow.
        m.set_limit(Limit::new(32.0, 3), t0 + Duration::from_secs(20));
        assert_eq!(m.reading(t0 + Duration::from_secs(21)).power_w, 11_040.0);
        m.set_limit(Limit::new(0.0, 3), t0 + Duration::from_secs(21));
        assert!(!m.is_flowing());
    }
}
