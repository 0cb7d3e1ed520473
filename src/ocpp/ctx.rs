//! [`Ctx`]: everything a functional block may touch besides its own state: the station's
//! identity, the device model, the two clocks, randomness, the timer table, the effects queue,
//! the core events for other blocks, and the link ([`Session`]) to send requests through.
//!
//! Blocks get `&mut Ctx` in every handler; they never see `Station` or another block's state.
//! What one block's change means to another travels as a [`CoreEvent`], which the station
//! routes once the handler returns.

use super::clock::{Instant, WallClock};
use super::devmodel::DeviceModel;
use super::model::Model;
use super::persist::{Batch, EventKind, PersistOp, Persisted, Record};
use super::session::Session;
use super::station::{Identity, Output};
use super::timer::{Rng, TimerTable};
use super::v201::Action;
use serde_json::json;
use std::collections::VecDeque;
use tracing::{info, warn};

/// Something that happened in one block that other blocks may react to; routed by the station
/// in the order raised.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// The CSMS accepted our BootNotification (B01/B02).
    RegistrationAccepted,
    /// UTC was adjusted by `delta_ms`; `was_trusted`: the clock had the CSMS's time before.
    /// `batch` holds the link's own rebase of queued messages, to be persisted together with
    /// what the blocks rebase.
    ClockAdjusted {
        delta_ms: i64,
        was_trusted: bool,
        batch: Batch,
    },
    /// An Authorize request got no usable answer (lost with the link, CALLERROR, timeout).
    AuthorizeUnanswered {
        evse: usize,
        id_token: super::model::IdToken,
        purpose: super::blocks::transactions::AuthPurpose,
    },
    /// A transaction started on this EVSE (or was found open at start-up).
    TransactionStarted { evse: u32 },
    /// A transaction ended on this EVSE (its Ended event is queued).
    TransactionEnded { evse: u32 },
    /// ChangeAvailability took effect: EVSEs that became inoperative stop offering energy.
    AvailabilityChanged,
    /// A connector of this EVSE became faulted or recovered.
    FaultChanged { evse: u32 },
    /// SmartChargingCtrlr.Enabled changed: the limits again (the ratings alone when off).
    SmartChargingSwitched,
    /// AlignedDataCtrlr.Interval or TxEndedInterval changed.
    AlignedIntervalChanged,
    /// The firmware job ended or was replaced: what waited for it may go.
    FirmwareIdle,
    /// The charging limit of an EVSE with a transaction changed significantly
    /// (LimitChangeSignificance): the transaction reports ChargingRateChanged.
    ChargingRateChanged { evse: u32 },
    /// A driver was authorized to charge at this EVSE (C01, F01), with the personal message
    /// (I01) and the preferred languages (C01.FR.08/09) the CSMS gave with the authorization.
    DriverAuthorized {
        evse: u32,
        personal_message: Option<super::model::MessageContent>,
        languages: Vec<String>,
    },
    /// The CSMS answered a TransactionEvent with a cost or a message for the driver (I02, I03,
    /// I06); `ended`: it answered the Ended event.
    TransactionAnswered {
        transaction_id: String,
        ended: bool,
        total_cost: Option<f64>,
        message: Option<super::model::MessageContent>,
    },
    /// A driver used this reservation to start (H03.FR.09): it is consumed.
    ReservationUsed { id: i64 },
    /// Reservations ended unused (expired, or their EVSE became unusable): to be reported.
    ReservationsEnded {
        ended: Vec<(i64, super::blocks::reservations::Ended)>,
    },
    /// A connector's status as the CSMS sees it may have changed (plug, availability, fault,
    /// firmware installation).
    ConnectorStatusesChanged,
}

/// What a block may touch; see the module documentation.
pub struct Ctx {
    pub(crate) identity: Identity,
    pub(crate) vars: DeviceModel,
    pub(crate) clock: WallClock,
    pub(crate) rng: Rng,
    /// Random per start-up: queued messages made before UTC was known are rebased only within
    /// the boot that made them.
    pub(crate) boot_id: u64,
    pub(crate) timers: TimerTable,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) events: VecDeque<CoreEvent>,
    /// Security events already raised, to report floods once (`InvalidMessages`, ...).
    raised_once: Vec<&'static str>,
    pub(crate) link: Session,
    /// The EVSEs and connectors, as every block sees them.
    pub(crate) model: Model,
    /// The OCPP version spoken with the CSMS.
    pub(crate) protocol: super::station::Protocol,
    /// What 1.6 needs beside the blocks (see `v16::link`).
    pub(crate) link16: super::v16::link::Link16,
}

impl Ctx {
    pub(crate) fn new(
        identity: Identity,
        vars: DeviceModel,
        clock: WallClock,
        mut rng: Rng,
        link: Session,
        model: Model,
    ) -> Self {
        let boot_id = rng.next_u64();
        Ctx {
            identity,
            vars,
            clock,
            rng,
            boot_id,
            timers: TimerTable::default(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            raised_once: Vec::new(),
            link,
            model,
            protocol: Default::default(),
            link16: Default::default(),
        }
    }

    pub(crate) fn emit(&mut self, event: CoreEvent) {
        self.events.push_back(event);
    }

    /// Makes `batch` durable before any later output (persist before send).
    pub(crate) fn persist(&mut self, batch: Batch) {
        if !batch.is_empty() {
            self.outputs.push_back(Output::Persist(batch));
        }
    }

    /// Start-up: a block's record from the journal; one that cannot be read is logged and
    /// removed, and the block starts without it.
    pub(crate) fn restore_record<R: Record>(&mut self, persisted: &Persisted) -> Option<R> {
        match persisted.record::<R>()? {
            Ok(record) => Some(record),
            Err(problem) => {
                warn!(
                    record = R::KEY,
                    problem, "unreadable record in the journal; dropped"
                );
                self.persist(vec![PersistOp::record::<R>(None)]);
                None
            }
        }
    }

    /// A SecurityEventNotification, queued and delivered like transaction messages, and a
    /// line in the station's own security log (N01.FR.03 uploads it).
    pub(crate) fn security_event(&mut self, now: Instant, kind: &'static str, info: Option<&str>) {
        info!(event = kind, info, "security event");
        let timestamp = self.clock.utc(now).to_rfc3339();
        let tech_info = info.map(|i| i.chars().take(255).collect::<String>());
        self.outputs.push_back(Output::RecordSecurityEvent {
            timestamp: timestamp.clone(),
            kind: kind.to_owned(),
            tech_info: tech_info.clone(),
        });
        let mut payload = json!({
            "type": kind,
            "timestamp": timestamp,
        });
        if let Some(i) = tech_info {
            payload["techInfo"] = json!(i);
        }
        self.enqueue_durable(
            now,
            Action::SecurityEventNotification,
            None,
            EventKind::Other,
            payload,
            Vec::new(),
        );
    }

    /// Like `security_event`, once per start-up for a given kind (floods are reported once).
    pub(crate) fn security_event_once(
        &mut self,
        now: Instant,
        kind: &'static str,
        info: Option<&str>,
    ) {
        if !self.raised_once.contains(&kind) {
            self.raised_once.push(kind);
            self.security_event(now, kind, info);
        }
    }
}
