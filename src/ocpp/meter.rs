//! Meter readings as the shell reports them, and the OCPP `MeterValueType` built from them for
//! the configured measurands (SampledDataCtrlr / AlignedDataCtrlr).

use super::clock::UtcTime;
use super::model::{MeterSample, SampledValue, UnitOfMeasure};

/// The latest values of an EVSE's meter. Real meters (Modbus, ...) and the `sim` meter both
/// report through this.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterReading {
    /// Energy.Active.Import.Register, Wh.
    pub energy_wh: f64,
    /// Power.Active.Import, W.
    pub power_w: f64,
    /// Current.Import, A (per phase).
    pub current_a: f64,
    /// Voltage, V (phase to neutral).
    pub voltage_v: f64,
}

/// `ReadingContextEnumType` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    TransactionBegin,
    TransactionEnd,
    SamplePeriodic,
    SampleClock,
    Trigger,
}

impl Context {
    fn as_str(self) -> &'static str {
        match self {
            Context::TransactionBegin => "Transaction.Begin",
            Context::TransactionEnd => "Transaction.End",
            Context::SamplePeriodic => "Sample.Periodic",
            Context::SampleClock => "Sample.Clock",
            Context::Trigger => "Trigger",
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A `MeterValueType` JSON object with one sampled value per measurand, or `None` when no
/// measurand is configured or no reading is known yet. `offered_w` is Power.Offered: what the
/// charging limit lets the EV draw (smart charging), if known.
pub fn meter_value<'a>(
    reading: Option<&MeterReading>,
    offered_w: Option<f64>,
    measurands: impl IntoIterator<Item = &'a str>,
    context: Context,
    at: UtcTime,
) -> Option<MeterSample> {
    let reading = reading?;
    let sampled: Vec<SampledValue> = measurands
        .into_iter()
        .filter_map(|m| {
            let (value, unit) = match m {
                "Energy.Active.Import.Register" => (reading.energy_wh, "Wh"),
                "Power.Active.Import" => (reading.power_w, "W"),
                "Current.Import" => (reading.current_a, "A"),
                "Voltage" => (reading.voltage_v, "V"),
                "Power.Offered" => (offered_w?, "W"),
                _ => return None,
            };
            Some(SampledValue {
                value: round3(value),
                context: Some(context.as_str().to_owned()),
                measurand: Some(m.to_owned()),
                unit_of_measure: Some(UnitOfMeasure { unit: unit.into() }),
            })
        })
        .collect();
    if sampled.is_empty() {
        return None;
    }
    Some(MeterSample {
        timestamp: at.to_rfc3339(),
        sampled_value: sampled,
    })
}

/// Drops intermediate values first (E06.FR.13, E04.FR.08: the 2nd, 4th, ... entry, never the
/// first or the last) until `values` holds at most `max` (at least 2).
pub fn thin_out<T>(values: &mut Vec<T>, max: usize) {
    let max = max.max(2);
    while values.len() > max {
        let last = values.len() - 1;
        let mut index = 0;
        values.retain(|_| {
            let keep = index == last || index % 2 == 0;
            index += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_sampled_values_for_the_measurands() {
        let r = MeterReading {
            energy_wh: 1234.56789,
            power_w: 11000.0,
            current_a: 15.94,
            voltage_v: 230.0,
        };
        let mv = meter_value(
            Some(&r),
            Some(6900.0),
            ["Energy.Active.Import.Register", "Voltage", "Power.Offered"],
            Context::TransactionBegin,
            UtcTime::from_unix_millis(0),
        )
        .unwrap();
        let mv = serde_json::to_value(&mv).unwrap();
        assert_eq!(mv["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(mv["sampledValue"][0]["value"], 1234.568);
        assert_eq!(mv["sampledValue"][0]["context"], "Transaction.Begin");
        assert_eq!(mv["sampledValue"][1]["unitOfMeasure"]["unit"], "V");
        assert_eq!(mv["sampledValue"][2]["measurand"], "Power.Offered");
        assert_eq!(mv["sampledValue"][2]["value"], 6900.0);
        assert!(
            meter_value(
                None,
                None,
                ["Voltage"],
                Context::SampleClock,
                UtcTime::from_unix_millis(0)
            )
            .is_none()
        );
        assert!(
            meter_value(
                Some(&r),
                None,
                [],
                Context::SampleClock,
                UtcTime::from_unix_millis(0)
            )
            .is_none()
        );
    }

    #[test]
    fn thinning_keeps_first_and_last() {
        let mut v: Vec<u32> = (1..=10).collect();
        thin_out(&mut v, 6);
        assert_eq!(v.first(), Some(&1));
        assert!(v.len() <= 6, "{v:?}");
        assert_eq!(v, vec![1, 3, 5, 7, 9, 10]);
        let mut w: Vec<u32> = (1..=3).collect();
        thin_out(&mut w, 5);
        assert_eq!(w, vec![1, 2, 3]);
    }
}
