//! What `ctl status` shows of a station (and what the logs say of it).

use super::blocks::firmware::Phase;
use super::station::{ConnectionState, Registration};
use serde::Serialize;

/// A snapshot for `ctl status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub connection: ConnectionState,
    pub registration: Registration,
    pub utc: String,
    pub time_source: &'static str,
    pub heartbeat_interval_s: u64,
    pub queue: QueueSnapshot,
    pub evses: Vec<EvseSnapshot>,
    /// The firmware update in progress, if any.
    pub firmware: Option<FirmwareSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirmwareSnapshot {
    pub request_id: i64,
    pub phase: Phase,
    /// The last FirmwareStatusNotification status sent.
    pub last_status: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    /// Transaction-related messages waiting for the CSMS.
    pub depth: usize,
    pub bytes: u64,
    /// Age of the oldest unsent message, seconds.
    pub oldest_unsent_age_s: Option<u64>,
    /// Messages dropped since start-up (E04.FR.08 bound, or E13.FR.04 after the last attempt).
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvseSnapshot {
    pub id: u32,
    /// The power path (contactor) is closed.
    pub power_path_closed: bool,
    pub authorized: bool,
    pub meter: Option<MeterSnapshot>,
    pub transaction: Option<TransactionSnapshot>,
    /// What happened to the last idToken presented here.
    pub last_authorization: Option<String>,
    pub connectors: Vec<ConnectorSnapshot>,
    /// The smart-charging limit given to the hardware (K).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charging_limit: Option<LimitSnapshot>,
    /// What the driver here is shown of the price: tariff, running or final cost (I).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<super::blocks::tariff::DriverPrice>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitSnapshot {
    /// Per phase.
    pub amps: f64,
    pub phases: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeterSnapshot {
    pub energy_wh: f64,
    pub power_w: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransactionSnapshot {
    pub id: String,
    pub charging_state: String,
    pub next_seq_no: u64,
    pub energy_wh: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSnapshot {
    pub id: u32,
    pub status: &'static str,
    pub plugged: bool,
}
