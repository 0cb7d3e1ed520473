//! What a charging station *is*, in no protocol version's spelling: its EVSEs and connectors,
//! their plug, availability and fault state, and the status that follows from it. Every block
//! reads it through [`Ctx`](super::ctx::Ctx); the hardware events, the availability block and
//! the transaction and firmware blocks each write only their own parts of it. How 2.0.1 (or
//! 1.6) names a status is the version adapter's business.

pub mod schedule;

use super::devmodel::{DeviceModel, Var};
use serde::{Deserialize, Serialize};

/// An identifier presented to authorize charging (an RFID card, an app account, a key...):
/// the identifier and its kind (`ISO14443`, `eMAID`, `Central`, ...). Stored and compared as
/// is; the spelling of its kinds on the wire is the version adapter's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdToken {
    pub id_token: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Further identifiers of the same holder, as the CSMS or the reader gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_info: Vec<AdditionalIdToken>,
}

/// Meter readings taken at one instant (E01-E06, J01/J02): what transactions report and keep
/// for their Ended event. Its serialised form is the one the journal has always stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterSample {
    /// RFC 3339 UTC.
    pub timestamp: String,
    pub sampled_value: Vec<SampledValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampledValue {
    pub value: f64,
    /// Why it was taken: `Transaction.Begin`, `Sample.Periodic`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `Energy.Active.Import.Register`, `Power.Active.Import`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_of_measure: Option<UnitOfMeasure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitOfMeasure {
    pub unit: String,
}

impl MeterSample {
    /// Moves the timestamp by `delta_ms` (it was taken before UTC was known).
    pub fn rebase(&mut self, delta_ms: i64) {
        if let Some(t) = super::clock::UtcTime::parse_rfc3339(&self.timestamp) {
            self.timestamp =
                super::clock::UtcTime::from_unix_millis(t.unix_millis() + delta_ms).to_rfc3339();
        }
    }
}

/// What the CSMS (or the local list) says of an idToken (C01, C10, D01). Its serialised form
/// is the one the journal has always stored for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationInfo {
    pub status: AuthorizationStatus,
    /// Until when it may be used from the cache or the list (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_expiry_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charging_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language2: Option<String>,
    /// The EVSEs where the token may charge (C01.FR.21); empty: all.
    #[serde(default, rename = "evseId", skip_serializing_if = "Vec::is_empty")]
    pub evse_ids: Vec<i64>,
    /// The group it belongs to (C09).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id_token: Option<IdToken>,
    /// A message for the driver (tariff, welcome).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_message: Option<MessageContent>,
}

impl AuthorizationInfo {
    pub fn accepted(&self) -> bool {
        self.status == AuthorizationStatus::Accepted
    }

    /// The token may charge at this EVSE (C01.FR.21).
    pub fn allows_evse(&self, evse: u32) -> bool {
        self.evse_ids.is_empty() || self.evse_ids.contains(&i64::from(evse))
    }
}

/// The verdicts on an idToken that part 2 defines (1.6's are a subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthorizationStatus {
    Accepted,
    Blocked,
    ConcurrentTx,
    Expired,
    Invalid,
    NoCredit,
    #[serde(rename = "NotAllowedTypeEVSE")]
    NotAllowedTypeEvse,
    NotAtThisLocation,
    NotAtThisTime,
    Unknown,
}

impl AuthorizationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Accepted => "Accepted",
            AuthorizationStatus::Blocked => "Blocked",
            AuthorizationStatus::ConcurrentTx => "ConcurrentTx",
            AuthorizationStatus::Expired => "Expired",
            AuthorizationStatus::Invalid => "Invalid",
            AuthorizationStatus::NoCredit => "NoCredit",
            AuthorizationStatus::NotAllowedTypeEvse => "NotAllowedTypeEVSE",
            AuthorizationStatus::NotAtThisLocation => "NotAtThisLocation",
            AuthorizationStatus::NotAtThisTime => "NotAtThisTime",
            AuthorizationStatus::Unknown => "Unknown",
        }
    }
}

/// A text for a person, in a format and language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageContent {
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalIdToken {
    pub additional_id_token: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl IdToken {
    pub fn new(id_token: &str, kind: &str) -> Self {
        IdToken {
            id_token: id_token.to_owned(),
            kind: kind.to_owned(),
            additional_info: Vec::new(),
        }
    }

    /// The same identifier (C09: additional info does not make another token).
    pub fn same(&self, other: &IdToken) -> bool {
        self.id_token == other.id_token && self.kind == other.kind
    }

    /// `kind:id`, the authorization cache's key.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.id_token)
    }

    /// Tokens whose authorization is not the CSMS's to cache (C02.FR.03, C03.FR.02, C05.FR.02).
    pub fn cacheable(&self) -> bool {
        !matches!(self.kind.as_str(), "NoAuthorization" | "Central")
    }
}

/// A connector's status, as part 2 defines it (G01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorStatus {
    Available,
    Occupied,
    Reserved,
    Unavailable,
    Faulted,
}

impl ConnectorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorStatus::Available => "Available",
            ConnectorStatus::Occupied => "Occupied",
            ConnectorStatus::Reserved => "Reserved",
            ConnectorStatus::Unavailable => "Unavailable",
            ConnectorStatus::Faulted => "Faulted",
        }
    }
}

/// A connector: hardware state (plug, fault) and availability (G03).
#[derive(Debug, Clone)]
pub struct Connector {
    pub evse: u32,
    pub id: u32,
    pub plugged: bool,
    /// Set Inoperative by ChangeAvailability (G03), persistent.
    pub operative: bool,
    /// A hardware problem (e.g. its plug input line failed).
    pub fault: Option<String>,
    /// The `Problem` value last sent in a NotifyEvent.
    pub fault_reported: bool,
    /// The last status the CSMS acknowledged, to report only changes after a short outage
    /// (B04.FR.02).
    pub reported: Option<ConnectorStatus>,
    /// The status last queued for the CSMS while connected (None after a failure or an
    /// outage: then what it acknowledged counts), so a status is not reported twice.
    pub queued: Option<ConnectorStatus>,
    /// Its type (ConnectorEnumType spelling), if configured; else `Connector.ConnectorType`.
    pub kind: Option<String>,
}

/// An EVSE as the other blocks see it.
#[derive(Debug, Clone)]
pub struct Evse {
    pub id: u32,
    /// Set Inoperative by ChangeAvailability (G03), persistent.
    pub operative: bool,
    /// A transaction is open here (kept by the transaction block), and on which connector.
    pub transaction: Option<Option<u32>>,
    /// The open transaction's id and start (kept by the transaction block): TxProfiles name
    /// it, relative charging profiles count from its start.
    pub active_transaction: Option<ActiveTransaction>,
    /// The smart-charging limit leaves too little to charge with (below the EV's minimum
    /// rate, or 0 A): energy is offered again when the limit rises (kept by that block).
    pub charging_paused: bool,
    /// Power.Offered: what the charging limit lets the EV draw, in W (kept by the
    /// smart-charging block).
    pub offered_w: Option<f64>,
    /// Who may still start here because of a reservation (kept by the reservation block).
    pub reservation: ReservationGate,
    /// A driver is authorized here, with or without a transaction yet (kept by the
    /// transaction block).
    pub authorized: bool,
    /// The open transaction's chargingState as last reported (`Charging`, `SuspendedEV`,
    /// ...; kept by the transaction block): OCPP 1.6 reports it as the connector status.
    pub charging_state: &'static str,
    /// A transaction ended here and the EV is still plugged in (1.6 `Finishing`; kept by the
    /// transaction block).
    pub finishing: bool,
}

/// What reservations mean for one EVSE (H01, H03), as the reservation block decides it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReservationGate {
    /// Only a claimant may start here: the EVSE is reserved for one of them, or the
    /// reservations of no particular EVSE need it (H01.FR.07/09/20/24). Its connectors are
    /// Reserved.
    pub exclusive: bool,
    /// The reservations a driver may use here.
    pub claimants: Vec<Claimant>,
}

/// A reservation a driver may use at an EVSE: its id and who it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimant {
    pub reservation_id: i64,
    pub id_token: IdToken,
    pub group: Option<IdToken>,
}

impl ReservationGate {
    /// The reservation an idToken (or its group, H03.FR.04-06) uses here, if any.
    pub fn claim(&self, id_token: &IdToken, group: Option<&IdToken>) -> Option<i64> {
        self.claimants
            .iter()
            .find(|c| c.id_token.same(id_token))
            .or_else(|| {
                self.claimants.iter().find(|c| {
                    matches!((&c.group, group), (Some(want), Some(have)) if want.id_token == have.id_token)
                })
            })
            .map(|c| c.reservation_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTransaction {
    pub id: String,
    /// UTC milliseconds.
    pub started_ms: i64,
}

/// What a firmware update does to EVSEs without a transaction (L01.FR.07); kept by the
/// firmware block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirmwareHold {
    #[default]
    None,
    /// The install waits for transactions to end: idle EVSEs are Unavailable unless
    /// AllowNewSessionsPendingFirmwareUpdate.
    WaitingForIdle,
    /// Installing or activating: idle EVSEs are Unavailable.
    Installing,
}

/// The station's EVSEs and connectors.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub evses: Vec<Evse>,
    pub connectors: Vec<Connector>,
    /// Set Inoperative by ChangeAvailability for the whole station (G04), persistent.
    pub station_operative: bool,
    pub firmware_hold: FirmwareHold,
}

impl Model {
    /// A station with these EVSEs (id, connector ids), all operative, nothing plugged.
    pub fn new(layout: impl IntoIterator<Item = (u32, Vec<u32>)>) -> Self {
        let mut model = Model {
            station_operative: true,
            ..Default::default()
        };
        for (evse, connectors) in layout {
            model.evses.push(Evse {
                id: evse,
                operative: true,
                transaction: None,
                active_transaction: None,
                charging_paused: false,
                offered_w: None,
                reservation: ReservationGate::default(),
                authorized: false,
                charging_state: "",
                finishing: false,
            });
            model
                .connectors
                .extend(connectors.into_iter().map(|id| Connector {
                    evse,
                    id,
                    plugged: false,
                    operative: true,
                    fault: None,
                    fault_reported: false,
                    reported: None,
                    queued: None,
                    kind: None,
                }));
        }
        model
    }

    /// A connector's type: its own, or the station's `Connector.ConnectorType`.
    pub fn connector_type<'a>(&'a self, index: usize, vars: &'a DeviceModel) -> &'a str {
        self.connectors[index]
            .kind
            .as_deref()
            .unwrap_or_else(|| vars.get(Var::ConnectorType))
    }

    pub fn evse_index(&self, evse: u32) -> Option<usize> {
        self.evses.iter().position(|e| e.id == evse)
    }

    pub fn connector_index(&self, evse: u32, connector: u32) -> Option<usize> {
        self.connectors
            .iter()
            .position(|c| c.evse == evse && c.id == connector)
    }

    /// A transaction runs in this scope: the station (`None`), an EVSE, or a connector of it.
    pub fn busy(&self, evse: Option<u32>, connector: Option<u32>) -> bool {
        self.evses.iter().any(|e| {
            e.transaction
                .is_some_and(|at| connector.is_none_or(|c| at == Some(c)))
                && evse.is_none_or(|id| id == e.id)
        })
    }

    /// Whether idle EVSEs are held Unavailable by a firmware update (L01.FR.07).
    pub fn sessions_blocked(&self, vars: &DeviceModel) -> bool {
        match self.firmware_hold {
            FirmwareHold::None => false,
            FirmwareHold::WaitingForIdle => !vars.bool(Var::AllowNewSessionsPendingFirmwareUpdate),
            FirmwareHold::Installing => true,
        }
    }

    /// Operative: neither the station, nor the EVSE was set Inoperative (G03/G04). An EVSE
    /// without a transaction is also unavailable while a firmware installation waits or runs
    /// (L01.FR.07).
    pub fn evse_operative(&self, idx: usize, vars: &DeviceModel) -> bool {
        let evse = &self.evses[idx];
        self.station_operative
            && evse.operative
            && !(evse.transaction.is_none() && self.sessions_blocked(vars))
    }

    /// G01: the status of a connector.
    pub fn connector_status(&self, index: usize, vars: &DeviceModel) -> ConnectorStatus {
        let c = &self.connectors[index];
        let evse_ok = self
            .evse_index(c.evse)
            .is_some_and(|i| self.evse_operative(i, vars));
        if c.fault.is_some() {
            ConnectorStatus::Faulted
        } else if !evse_ok || !c.operative {
            ConnectorStatus::Unavailable
        } else if self
            .evse_index(c.evse)
            .is_some_and(|i| self.evses[i].reservation.exclusive)
        {
            // G01.FR.09: a plug-in does not change Reserved; using the reservation does
            // (H03.FR.10).
            ConnectorStatus::Reserved
        } else if c.plugged {
            ConnectorStatus::Occupied
        } else {
            ConnectorStatus::Available
        }
    }

    /// Whether a connector (any of the EVSE's for `None`) may charge: operative and not
    /// faulted.
    pub fn connector_usable(
        &self,
        evse_idx: usize,
        connector: Option<u32>,
        vars: &DeviceModel,
    ) -> bool {
        let evse = self.evses[evse_idx].id;
        self.evse_operative(evse_idx, vars)
            && self
                .connectors
                .iter()
                .filter(|c| c.evse == evse && connector.is_none_or(|id| c.id == id))
                .any(|c| c.operative && c.fault.is_none())
    }

    /// The first plugged connector of an EVSE.
    pub fn plugged_connector(&self, evse_idx: usize) -> Option<u32> {
        let id = self.evses[evse_idx].id;
        self.connectors
            .iter()
            .find(|c| c.evse == id && c.plugged)
            .map(|c| c.id)
    }

    /// An EV is plugged in: at the transaction's connector if it has one, else at any.
    pub fn ev_connected(&self, evse_idx: usize, at: Option<u32>) -> bool {
        let id = self.evses[evse_idx].id;
        self.connectors
            .iter()
            .any(|x| x.evse == id && at.is_none_or(|c| x.id == c) && x.plugged)
    }
}
