//! What `ctl status` shows of a station (and what the logs say of it).

use super::blocks::display::{Priority, ScreenState};
use super::blocks::firmware::Phase;
use super::model::MessageContent;
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
    /// OCPP 1.6: the transactionId the CSMS gave in its StartTransaction answer, once it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ocpp16_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSnapshot {
    pub id: u32,
    pub status: &'static str,
    pub plugged: bool,
}

/// What the screens show now (`ctl display`, `ctl watch`): the station's main display (EVSE
/// 0) and each EVSE's, every one with its items in the order to show them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisplaySnapshot {
    pub screens: Vec<ScreenSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScreenSnapshot {
    /// 0: the station's main display.
    pub evse: u32,
    /// The state the messages are chosen by (a message with a `state` shows only in it).
    pub state: ScreenState,
    /// The driver's preferred languages (language1, language2 of their authorization): show
    /// the messages in the first of them there is (C01.FR.08/09).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// First shown first: by priority (AlwaysFront, InFront, NormalCycle); within one, a
    /// transaction's messages, then the EVSE's, then the station's, the most recently set
    /// first; items of the agent's own sources after the CSMS's of the same priority. An
    /// AlwaysFront item is shown alone while it lasts (O01.FR.15), InFront items cycle before
    /// the normal cycle (O01.FR.13/14).
    pub items: Vec<DisplayItem>,
}

/// One thing to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DisplayItem {
    pub source: DisplaySource,
    /// The CSMS's message id (source `csms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub priority: Priority,
    /// ASCII, HTML, URI or UTF8.
    pub format: String,
    /// RFC 5646.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub content: String,
    /// Shown while this transaction lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Shown until then (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Where a display item comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisplaySource {
    /// A message the CSMS set (SetDisplayMessage, O01-O06).
    Csms,
    /// The driver's tariff: the personalMessage of their authorization, or the fallback (I01,
    /// I04, I06).
    Tariff,
    /// The session's cost so far or its total (I02, I03), or the fallback when it ended
    /// offline (I05).
    Cost,
}

impl DisplayItem {
    /// The items of the price the driver at an EVSE is to be shown: the tariff, then the cost
    /// (InFront: for the driver, before the normal cycle).
    pub fn of_price(price: &super::blocks::tariff::DriverPrice) -> Vec<DisplayItem> {
        let item = |source, content: &MessageContent| DisplayItem {
            source,
            id: None,
            priority: Priority::InFront,
            format: content.format.clone(),
            language: content.language.clone(),
            content: content.content.clone(),
            transaction_id: None,
            until: None,
        };
        let mut items = Vec::new();
        if let Some(t) = &price.tariff {
            items.push(item(DisplaySource::Tariff, t));
        }
        if let Some(cost) = price.cost {
            let what = if price.cost_final {
                "Total"
            } else {
                "Cost so far"
            };
            let text = MessageContent {
                format: "UTF8".into(),
                language: Some("en".into()),
                content: format!("{what}: {cost:.2} {}", price.currency),
            };
            items.push(item(DisplaySource::Cost, &text));
        } else if let Some(f) = &price.cost_fallback {
            items.push(item(DisplaySource::Cost, f));
        }
        items
    }
}
