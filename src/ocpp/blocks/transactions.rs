//! Transactions (functional block E) and remote start/stop (F): per EVSE, who is authorized,
//! whether the power path is closed, and the open transaction with its TransactionEvents, seqNo
//! and meter values. What the station knows of an idToken is the authorization block's.
//!
//! Every state change goes through [`Transactions::update_evse`] with its [`Cause`]: it closes or
//! opens the power path, starts or ends the transaction per TxStartPoint / TxStopPoint (E01,
//! E06), and queues at most one TransactionEvent describing the change.

use super::authorization::Authorization;
use crate::ocpp::auth::Lookup;
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::{CoreEvent, Ctx};
use crate::ocpp::devmodel::Var;
use crate::ocpp::meter::{self, Context, MeterReading};
use crate::ocpp::model::{
    ActiveTransaction, AuthorizationInfo, IdToken, MessageContent, MeterSample,
};
use crate::ocpp::persist::{Batch, EventKind, PersistOp, Persisted, TxRecord};
use crate::ocpp::rpc::CallError;
use crate::ocpp::session::RequestKind;

const ENERGY_REGISTER: &str = "Energy.Active.Import.Register";
use crate::ocpp::snapshot::{ConnectorSnapshot, EvseSnapshot, MeterSnapshot, TransactionSnapshot};
use crate::ocpp::station::{CLEAN_SHUTDOWN_KEY, Output};
use crate::ocpp::timer::Timer;
use crate::ocpp::v201::id32;
use crate::ocpp::v201::{self, Action};
use serde_json::{Value, json};
use std::time::Duration;
use tracing::{info, warn};

/// Sampled values kept for one Ended event (E06.FR.12/13 thin them out beyond this).
const MAX_ENDED_VALUES: usize = 96;
/// How often a charging EVSE's meter reading is made durable, so a power loss ends the
/// transaction with a recent value.
const METER_CHECKPOINT: Duration = Duration::from_secs(60);

/// Why an idToken is being authorized.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthPurpose {
    /// Presented at the EVSE to start charging.
    Start,
    /// Presented during an authorized transaction: may stop it if its group matches (C09).
    Stop,
    /// RequestStartTransaction with AuthorizeRemoteStart (F02).
    RemoteStart { remote_start_id: i64 },
}

/// The current authorization of an EVSE.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    pub(crate) id_token: IdToken,
    pub(crate) group: Option<IdToken>,
    /// `Authorized` or `RemoteStart`.
    trigger: &'static str,
    remote_start_id: Option<i64>,
    /// The reservation it used (H03.FR.09); reported with the idToken (H01.FR.15).
    reservation_id: Option<i64>,
    /// The idToken went out in a TransactionEvent already (E01.FR.10: once).
    reported: bool,
}

/// The open transaction of an EVSE.
#[derive(Debug, Clone)]
pub(crate) struct Tx {
    pub(crate) id: String,
    pub(crate) next_seq_no: u64,
    pub(crate) connector: Option<u32>,
    pub(crate) started_ms: i64,
    pub(crate) charging_state: &'static str,
    pub(crate) meter_start_wh: f64,
    /// `evse.connectorId` went out since the EV connected (E01.FR.16).
    evse_reported: bool,
    remote_start_id: Option<i64>,
    remote_start_reported: bool,
    ended_values: Vec<MeterSample>,
    last_meter: Option<MeterSample>,
}

/// The transaction block (E, F): per EVSE who is authorized, whether the power path is
/// closed, and the open transaction with its TransactionEvents, seqNo and meter values.
#[derive(Debug)]
pub struct Transactions {
    evses: Vec<Evse>,
    /// The idToken last reported per transaction, to file the CSMS's idTokenInfo (C10.FR.05).
    reported_tokens: Vec<(String, IdToken)>,
    /// Per clock-aligned timer ([`Aligned`]), the UTC boundary (ms) that had its reading.
    aligned_done: [Option<i64>; 2],
    /// The personal message (I01) and preferred languages (C01.FR.08/09) of the
    /// authorization being decided, for the grant.
    driver: (Option<MessageContent>, Vec<String>),
}

/// The two clock-aligned timers: MeterValues / Updated events (AlignedDataCtrlr.Interval) and
/// the Ended event's samples (AlignedDataCtrlr.TxEndedInterval).
#[derive(Debug, Clone, Copy)]
enum Aligned {
    Data = 0,
    TxEnded = 1,
}

impl Aligned {
    fn timer_and_interval(self) -> (Timer, Var) {
        match self {
            Aligned::Data => (Timer::AlignedData, Var::AlignedInterval),
            Aligned::TxEnded => (Timer::AlignedTxEnded, Var::AlignedTxEndedInterval),
        }
    }
}

impl Transactions {
    pub(crate) fn new(evses: impl IntoIterator<Item = u32>) -> Self {
        Transactions {
            evses: evses.into_iter().map(Evse::new).collect(),
            reported_tokens: Vec::new(),
            aligned_done: [None; 2],
            driver: (None, Vec::new()),
        }
    }

    /// Tells the model which EVSEs have an authorized driver (what reservations count as
    /// taken).
    pub(crate) fn publish_authorized(&self, cx: &mut Ctx) {
        for (e, m) in self.evses.iter().zip(cx.model.evses.iter_mut()) {
            m.authorized = e.auth.is_some();
        }
    }

    /// The idTokens that authorize a session now, per EVSE (N09: what is kept of a customer).
    pub(crate) fn session_tokens(&self) -> Vec<(u32, IdToken)> {
        self.evses
            .iter()
            .filter_map(|e| e.auth.as_ref().map(|a| (e.id, a.id_token.clone())))
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct Evse {
    pub(crate) id: u32,
    pub(crate) meter: Option<MeterReading>,
    pub(crate) power_path: bool,
    pub(crate) auth: Option<Auth>,
    pub(crate) tx: Option<Tx>,
    /// Energy stopped because the CSMS deauthorized the idToken but the transaction goes on
    /// (E05.FR.02/03).
    suspended: bool,
    /// Deauthorized by the CSMS, energy allowed until MaxEnergyOnInvalidId (E05.FR.03).
    energy_limit_armed: bool,
    pub(crate) last_authorization: Option<String>,
}

impl Evse {
    pub(crate) fn new(id: u32) -> Self {
        Evse {
            id,
            meter: None,
            power_path: false,
            auth: None,
            tx: None,
            suspended: false,
            energy_limit_armed: false,
            last_authorization: None,
        }
    }
}

/// What changed on an EVSE.
#[derive(Debug, Clone, PartialEq)]
enum Cause {
    PlugIn,
    PlugOut,
    Authorized,
    StopAuthorized(IdToken),
    /// A Master Pass token stops every ongoing transaction (C16.FR.02).
    MasterPass(IdToken),
    Deauthorized,
    RemoteStop,
    EvConnectTimeout,
    EnergyLimit,
    Periodic,
    /// A clock-aligned boundary, with the time the reading is stamped with.
    Clock(UtcTime),
    /// Availability or a fault changed: an Updated only if the power path changed.
    Refresh,
}

impl Transactions {
    fn has_start(&self, cx: &Ctx, point: &str) -> bool {
        cx.vars.contains(Var::TxStartPoint, point)
    }

    fn has_stop(&self, cx: &Ctx, point: &str) -> bool {
        cx.vars.contains(Var::TxStopPoint, point)
    }

    /// B02.FR.03 / TxBeforeAcceptedEnabled: before the CSMS accepted us, only if configured.
    fn tx_allowed(&self, cx: &Ctx) -> bool {
        cx.is_accepted() || cx.vars.bool(Var::TxBeforeAcceptedEnabled)
    }

    fn ev_connected(&self, cx: &Ctx, idx: usize) -> bool {
        let at = self.evses[idx].tx.as_ref().and_then(|t| t.connector);
        cx.model.ev_connected(idx, at)
    }

    fn plugged_connector(&self, cx: &Ctx, idx: usize) -> Option<u32> {
        cx.model.plugged_connector(idx)
    }

    fn now_ms(&self, cx: &Ctx, now: Instant) -> i64 {
        cx.clock.utc(now).unix_millis()
    }

    // ----- inputs ----------------------------------------------------------------------------

    pub(crate) fn plug_changed(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        evse: u32,
        connector: u32,
        plugged: bool,
    ) {
        let Some(idx) = cx.model.evse_index(evse) else {
            return;
        };
        if !plugged && cx.model.plugged_connector(idx).is_none() {
            cx.model.evses[idx].finishing = false;
        }
        if plugged {
            // C01 with AuthCtrlr.Enabled = false: free charging, no idToken needed (C02); not
            // where a reservation holds the EVSE for someone.
            if !cx.vars.bool(Var::AuthEnabled)
                && self.evses[idx].auth.is_none()
                && !cx.model.evses[idx].reservation.exclusive
            {
                self.evses[idx].auth = Some(Auth {
                    id_token: IdToken::new("", "NoAuthorization"),
                    group: None,
                    trigger: "Authorized",
                    remote_start_id: None,
                    reservation_id: None,
                    reported: false,
                });
            }
            cx.timers.stop(Timer::EvConnectTimeout(evse));
            if let Some(tx) = self.evses[idx].tx.as_mut() {
                if tx.connector.is_none() {
                    tx.connector = Some(connector);
                    tx.evse_reported = false;
                    cx.model.evses[idx].transaction = Some(Some(connector));
                }
            }
            self.update_evse(cx, now, idx, Cause::PlugIn);
        } else {
            let tx_connector = self.evses[idx].tx.as_ref().and_then(|t| t.connector);
            if tx_connector.is_some_and(|c| c != connector) {
                return; // another connector of the EVSE; the transaction is not on it
            }
            // E09.FR.01: unplugging on the EV side deauthorizes.
            if cx.vars.bool(Var::StopTxOnEvSideDisconnect) || self.evses[idx].tx.is_none() {
                self.evses[idx].auth = None;
            }
            self.update_evse(cx, now, idx, Cause::PlugOut);
            // E09.FR.02: release the cable at the station side too.
            if cx.vars.bool(Var::UnlockOnEvSideDisconnect) {
                cx.outputs.push_back(Output::Unlock { evse, connector });
            }
        }
    }

    /// An idToken presented at an EVSE's reader (C01, E07, C09).
    pub(crate) fn present_token(
        &mut self,
        cx: &mut Ctx,
        auth: &mut Authorization,
        now: Instant,
        idx: usize,
        id_token: IdToken,
    ) {
        info!(
            evse = self.evses[idx].id,
            token_type = id_token.kind.as_str(),
            "idToken presented"
        );
        let Some(current) = self.evses[idx].auth.clone() else {
            if !cx.model.evse_operative(idx, &cx.vars) {
                self.evses[idx].last_authorization =
                    Some("rejected: the EVSE is unavailable".into());
                return;
            }
            self.authorize(cx, auth, now, idx, id_token, AuthPurpose::Start);
            return;
        };
        if current.id_token.same(&id_token) {
            if self.evses[idx].tx.is_some() {
                self.stop_authorized(cx, now, idx, id_token);
            } else {
                // Presented again before the EV came: the driver changed their mind.
                self.evses[idx].auth = None;
                self.evses[idx].last_authorization = Some("cancelled".into());
                cx.timers.stop(Timer::EvConnectTimeout(self.evses[idx].id));
            }
            return;
        }
        let master_pass_configured = !cx.vars.get(Var::MasterPassGroupId).is_empty();
        if (self.evses[idx].tx.is_some() && current.group.is_some()) || master_pass_configured {
            // C09: another token of the same group may stop it; C16: so may a Master Pass,
            // which only its authorization tells.
            self.authorize(cx, auth, now, idx, id_token, AuthPurpose::Stop);
        } else {
            self.evses[idx].last_authorization = Some("ignored: the EVSE is in use".into());
        }
    }

    /// Decides an idToken locally or asks the CSMS (C01, C10-C15).
    fn authorize(
        &mut self,
        cx: &mut Ctx,
        auth: &mut Authorization,
        now: Instant,
        idx: usize,
        id_token: IdToken,
        purpose: AuthPurpose,
    ) {
        let lookup = auth.lookup(cx, now, &id_token);
        if cx.can_send_normal() {
            // AuthCtrlr.DisableRemoteAuthorization: the list and the cache decide alone.
            if cx.vars.bool(Var::DisableRemoteAuthorization) {
                let (accepted, group, note) = match lookup {
                    Lookup::Accepted { group } => (true, group, "accepted (local)".to_owned()),
                    Lookup::NotAccepted { status } => (false, None, format!("rejected: {status}")),
                    Lookup::Unknown => (
                        false,
                        None,
                        "rejected: unknown, and remote authorization is disabled".to_owned(),
                    ),
                };
                self.authorization_result(cx, now, idx, id_token, purpose, accepted, group, &note);
                return;
            }
            if let Lookup::NotAccepted { status } = &lookup {
                if !auth.may_post_authorize(cx, &id_token) {
                    let note = format!("rejected: {status} (known locally, not asked again)");
                    self.authorization_result(cx, now, idx, id_token, purpose, false, None, &note);
                    return;
                }
            }
            // C12 / LocalPreAuthorize: a valid cached Accepted starts at once; the CSMS checks
            // the idToken in the TransactionEvent (E05).
            if let (true, Lookup::Accepted { group }) =
                (cx.vars.bool(Var::LocalPreAuthorize), &lookup)
            {
                let group = group.clone();
                self.authorization_result(
                    cx,
                    now,
                    idx,
                    id_token,
                    purpose,
                    true,
                    group,
                    "accepted (cache)",
                );
                return;
            }
            let payload = json!({ "idToken": id_token });
            cx.enqueue(
                RequestKind::Authorize {
                    evse: idx,
                    id_token,
                    purpose,
                },
                Action::Authorize,
                payload,
            );
        } else {
            self.authorize_offline(cx, now, idx, id_token, purpose, lookup);
        }
    }

    /// C12/C13/C15: offline decisions.
    fn authorize_offline(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        idx: usize,
        id_token: IdToken,
        purpose: AuthPurpose,
        lookup: Lookup,
    ) {
        match lookup {
            Lookup::Accepted { group } if cx.vars.bool(Var::LocalAuthorizeOffline) => self
                .authorization_result(
                    cx,
                    now,
                    idx,
                    id_token,
                    purpose,
                    true,
                    group,
                    "accepted offline (cache)",
                ),
            Lookup::Unknown if cx.vars.bool(Var::OfflineTxForUnknownIdEnabled) => self
                .authorization_result(
                    cx,
                    now,
                    idx,
                    id_token,
                    purpose,
                    true,
                    None,
                    "accepted offline (unknown id)",
                ),
            Lookup::NotAccepted { status } => {
                let note = format!("rejected offline: {status}");
                self.authorization_result(cx, now, idx, id_token, purpose, false, None, &note)
            }
            _ => self.authorization_result(
                cx,
                now,
                idx,
                id_token,
                purpose,
                false,
                None,
                "rejected: offline",
            ),
        }
    }

    /// The answer to an Authorize request, or `None` if it failed or was lost (then the offline
    /// rules decide).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn authorize_answered(
        &mut self,
        cx: &mut Ctx,
        auth: &mut Authorization,
        now: Instant,
        idx: usize,
        id_token: IdToken,
        purpose: AuthPurpose,
        info: Option<AuthorizationInfo>,
    ) {
        let Some(info) = info else {
            let lookup = auth.lookup(cx, now, &id_token);
            self.authorize_offline(cx, now, idx, id_token, purpose, lookup);
            cx.pump(now);
            return;
        };
        auth.remember(cx, now, &id_token, &info);
        let status = info.status.as_str();
        // C01.FR.21: an evseId list limits where the token may charge.
        let allowed_here = info.allows_evse(self.evses[idx].id);
        let accepted = info.accepted() && allowed_here;
        let note = if accepted {
            "accepted".to_owned()
        } else if !allowed_here {
            "rejected: not allowed on this EVSE".to_owned()
        } else {
            format!("rejected: {status}")
        };
        let group = info.group_id_token.clone();
        let languages = [info.language1, info.language2].into_iter().flatten();
        self.driver = (info.personal_message, languages.collect());
        self.authorization_result(cx, now, idx, id_token, purpose, accepted, group, &note);
        self.driver = (None, Vec::new());
        cx.pump(now);
    }

    #[allow(clippy::too_many_arguments)]
    fn authorization_result(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        idx: usize,
        id_token: IdToken,
        purpose: AuthPurpose,
        accepted: bool,
        group: Option<IdToken>,
        note: &str,
    ) {
        info!(evse = self.evses[idx].id, result = note, "authorization");
        self.evses[idx].last_authorization = Some(note.to_owned());
        if accepted && Authorization::is_master_pass(cx, group.as_ref()) {
            if matches!(purpose, AuthPurpose::RemoteStart { .. }) {
                // C16.FR.03; a remote start is not a Master Pass presented at the station.
                self.evses[idx].last_authorization =
                    Some("rejected: a Master Pass cannot start a transaction".into());
            } else {
                self.master_pass(cx, now, idx, id_token);
            }
            return;
        }
        match purpose {
            AuthPurpose::Stop => {
                // C09.FR.03/11: same group and Accepted.
                let tx_group = self.evses[idx].auth.as_ref().and_then(|a| a.group.clone());
                let same_group = match (&group, &tx_group) {
                    (Some(g), Some(t)) => g.id_token == t.id_token,
                    _ => false,
                };
                if accepted && same_group {
                    self.stop_authorized(cx, now, idx, id_token);
                } else {
                    self.evses[idx].last_authorization =
                        Some("ignored: not allowed to stop this transaction".into());
                }
            }
            AuthPurpose::Start | AuthPurpose::RemoteStart { .. } => {
                if !accepted || self.evses[idx].auth.is_some() {
                    return;
                }
                let (trigger, remote_start_id) = match purpose {
                    AuthPurpose::RemoteStart { remote_start_id } => {
                        ("RemoteStart", Some(remote_start_id))
                    }
                    _ => ("Authorized", None),
                };
                self.grant(cx, now, idx, id_token, group, trigger, remote_start_id);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        idx: usize,
        id_token: IdToken,
        group: Option<IdToken>,
        trigger: &'static str,
        remote_start_id: Option<i64>,
    ) {
        // H03: a reserved EVSE is for its claimants; a claimant uses its reservation.
        let gate = &cx.model.evses[idx].reservation;
        let reservation_id = gate.claim(&id_token, group.as_ref());
        if reservation_id.is_none() && gate.exclusive {
            info!(
                evse = self.evses[idx].id,
                "not authorized here: the EVSE is reserved for another idToken"
            );
            self.evses[idx].last_authorization =
                Some("rejected: the EVSE is reserved for another idToken".into());
            return;
        }
        if let Some(id) = reservation_id {
            cx.emit(CoreEvent::ReservationUsed { id });
        }
        cx.emit(CoreEvent::DriverAuthorized {
            evse: self.evses[idx].id,
            personal_message: self.driver.0.take(),
            languages: std::mem::take(&mut self.driver.1),
        });
        self.evses[idx].auth = Some(Auth {
            id_token,
            group,
            trigger,
            remote_start_id,
            reservation_id,
            reported: false,
        });
        self.evses[idx].suspended = false;
        if let (Some(tx), Some(id)) = (self.evses[idx].tx.as_mut(), remote_start_id) {
            tx.remote_start_id = Some(id);
        }
        if !self.ev_connected(cx, idx) {
            // E03.FR.05: the driver has EVConnectionTimeOut to plug in.
            let timeout = cx.vars.seconds(Var::EvConnectionTimeOut);
            if !timeout.is_zero() {
                cx.timers
                    .set(Timer::EvConnectTimeout(self.evses[idx].id), now + timeout);
            }
        }
        self.update_evse(cx, now, idx, Cause::Authorized);
    }

    /// C16: a Master Pass token, wherever presented, stops every ongoing transaction
    /// (C16.FR.02: the agent has no UI to choose from) and never starts one (C16.FR.03).
    fn master_pass(&mut self, cx: &mut Ctx, now: Instant, at: usize, id_token: IdToken) {
        let ongoing: Vec<usize> = (0..self.evses.len())
            .filter(|i| self.evses[*i].tx.is_some())
            .collect();
        info!(
            evse = self.evses[at].id,
            transactions = ongoing.len(),
            "Master Pass: stopping every ongoing transaction"
        );
        self.evses[at].last_authorization = Some(format!(
            "Master Pass: stopped {} transaction(s); it cannot start one",
            ongoing.len()
        ));
        for idx in ongoing {
            self.evses[idx].auth = None;
            if idx != at {
                self.evses[idx].last_authorization = Some("stopped by a Master Pass".into());
            }
            self.update_evse(cx, now, idx, Cause::MasterPass(id_token.clone()));
        }
    }

    fn stop_authorized(&mut self, cx: &mut Ctx, now: Instant, idx: usize, id_token: IdToken) {
        self.evses[idx].auth = None;
        self.evses[idx].last_authorization = Some("stopped by idToken".into());
        self.update_evse(cx, now, idx, Cause::StopAuthorized(id_token));
    }

    pub(crate) fn meter_reading(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        idx: usize,
        reading: MeterReading,
    ) {
        self.evses[idx].meter = Some(reading);
        // E05.FR.03: after an invalid id, energy flows up to MaxEnergyOnInvalidId.
        let limit = cx.vars.int(Var::MaxEnergyOnInvalidId) as f64;
        if self.evses[idx].energy_limit_armed && self.evses[idx].used_energy() >= limit {
            self.evses[idx].energy_limit_armed = false;
            self.evses[idx].suspended = true;
            self.update_evse(cx, now, idx, Cause::EnergyLimit);
        }
    }

    // ----- the state machine -------------------------------------------------------------------

    fn update_evse(&mut self, cx: &mut Ctx, now: Instant, idx: usize, cause: Cause) {
        let evse_id = self.evses[idx].id;
        let connected = self.ev_connected(cx, idx);
        let authorized = self.evses[idx].auth.is_some() && !self.evses[idx].suspended;
        let at = self.evses[idx]
            .tx
            .as_ref()
            .and_then(|t| t.connector)
            .or(self.plugged_connector(cx, idx));
        let usable = cx.model.connector_usable(idx, at, &cx.vars);
        let want_closed = authorized && connected && usable && self.tx_allowed(cx);
        let path_changed = want_closed != self.evses[idx].power_path;
        if path_changed {
            self.evses[idx].power_path = want_closed;
            info!(evse = evse_id, closed = want_closed, "power path");
            cx.outputs.push_back(Output::PowerPath {
                evse: evse_id,
                closed: want_closed,
            });
            if want_closed {
                cx.timers
                    .set(Timer::MeterCheckpoint(evse_id), now + METER_CHECKPOINT);
            } else {
                cx.timers.stop(Timer::MeterCheckpoint(evse_id));
            }
        }

        if self.evses[idx].tx.is_none() {
            let start = self.tx_allowed(cx)
                && cx.model.evse_operative(idx, &cx.vars)
                && match &cause {
                    Cause::PlugIn => self.has_start(cx, "EVConnected"),
                    Cause::Authorized => self.has_start(cx, "Authorized"),
                    _ => false,
                }
                || (path_changed
                    && want_closed
                    && (self.has_start(cx, "PowerPathClosed")
                        || self.has_start(cx, "EnergyTransfer")));
            if start {
                let trigger = match &cause {
                    Cause::PlugIn => "CablePluggedIn",
                    Cause::Authorized => self.evses[idx]
                        .auth
                        .as_ref()
                        .map_or("Authorized", |a| a.trigger),
                    _ => "ChargingStateChanged",
                };
                self.start_transaction(cx, now, idx, trigger);
            } else if cause == Cause::PlugOut {
                // Nothing running: an EV leaving ends any waiting authorization.
                self.evses[idx].auth = None;
            }
            return;
        }

        // A transaction is running: does this end it (E06)?
        let deauthorized = self.evses[idx].auth.is_none();
        let path_opened = path_changed && !want_closed;
        let stop = match &cause {
            Cause::RemoteStop => Some(("RemoteStop", "Remote")),
            Cause::EvConnectTimeout => Some(("EVConnectTimeout", "Timeout")),
            Cause::PlugOut
                if self.has_stop(cx, "EVConnected")
                    || (deauthorized && self.has_stop(cx, "Authorized"))
                    || (path_opened && self.has_stop(cx, "PowerPathClosed")) =>
            {
                Some(("EVCommunicationLost", "EVDisconnected"))
            }
            Cause::StopAuthorized(_) | Cause::MasterPass(_)
                if self.has_stop(cx, "Authorized")
                    || (path_opened
                        && (self.has_stop(cx, "PowerPathClosed")
                            || self.has_stop(cx, "EnergyTransfer"))) =>
            {
                let reason = match cause {
                    Cause::MasterPass(_) => "MasterPass",
                    _ => "Local",
                };
                Some(("StopAuthorized", reason))
            }
            Cause::Deauthorized
                if deauthorized
                    && (self.has_stop(cx, "Authorized")
                        || self.has_stop(cx, "PowerPathClosed")
                        || self.has_stop(cx, "EnergyTransfer")) =>
            {
                Some(("Deauthorized", "DeAuthorized"))
            }
            _ if path_opened && self.has_stop(cx, "EnergyTransfer") => {
                Some(("ChargingStateChanged", "Other"))
            }
            _ => None,
        };
        if let Some((trigger, reason)) = stop {
            let stop_token = match &cause {
                Cause::StopAuthorized(t) | Cause::MasterPass(t) => Some(t.clone()),
                _ => None,
            };
            self.end_transaction(cx, now, idx, trigger, reason, stop_token);
            return;
        }
        let (trigger, meter_values) = match &cause {
            Cause::PlugIn => ("CablePluggedIn", Vec::new()),
            Cause::PlugOut => ("EVCommunicationLost", Vec::new()),
            Cause::Authorized => (
                self.evses[idx]
                    .auth
                    .as_ref()
                    .map_or("Authorized", |a| a.trigger),
                Vec::new(),
            ),
            Cause::StopAuthorized(_) | Cause::MasterPass(_) => ("StopAuthorized", Vec::new()),
            Cause::Deauthorized => ("Deauthorized", Vec::new()),
            Cause::EnergyLimit => ("EnergyLimitReached", Vec::new()),
            Cause::Periodic => {
                let mv = self.sample(
                    cx,
                    now,
                    idx,
                    Var::TxUpdatedMeasurands,
                    Context::SamplePeriodic,
                );
                if mv.is_none() && !path_changed {
                    return;
                }
                ("MeterValuePeriodic", mv.into_iter().collect())
            }
            Cause::Clock(at) => {
                let mv = self.sample_at(cx, *at, idx, Var::AlignedMeasurands, Context::SampleClock);
                if mv.is_none() && !path_changed {
                    return;
                }
                ("MeterValueClock", mv.into_iter().collect())
            }
            Cause::Refresh => {
                if !path_changed {
                    return;
                }
                ("ChargingStateChanged", Vec::new())
            }
            Cause::RemoteStop | Cause::EvConnectTimeout => unreachable!("always ends"),
        };
        let token = match &cause {
            Cause::StopAuthorized(t) | Cause::MasterPass(t) => Some(t.clone()),
            _ => None,
        };
        self.queue_event(
            cx,
            now,
            idx,
            EventKind::Updated,
            trigger,
            None,
            meter_values,
            token,
        );
    }

    fn start_transaction(&mut self, cx: &mut Ctx, now: Instant, idx: usize, trigger: &'static str) {
        let id = cx.rng.uuid_v4();
        let evse = &self.evses[idx];
        let connector = self.plugged_connector(cx, idx);
        info!(
            evse = evse.id,
            transaction_id = id,
            trigger,
            "transaction started"
        );
        let started_ms = self.now_ms(cx, now);
        cx.model.evses[idx].finishing = false;
        cx.model.evses[idx].active_transaction = Some(ActiveTransaction {
            id: id.clone(),
            started_ms,
        });
        let tx = Tx {
            id,
            next_seq_no: 0,
            connector,
            started_ms,
            charging_state: "Idle",
            meter_start_wh: evse.meter.map_or(0.0, |m| m.energy_wh),
            evse_reported: false,
            remote_start_id: evse.auth.as_ref().and_then(|a| a.remote_start_id),
            remote_start_reported: false,
            ended_values: Vec::new(),
            last_meter: None,
        };
        self.evses[idx].tx = Some(tx);
        cx.model.evses[idx].transaction = Some(connector);
        cx.emit(CoreEvent::TransactionStarted {
            evse: self.evses[idx].id,
        });
        let begin = self.sample(
            cx,
            now,
            idx,
            Var::TxStartedMeasurands,
            Context::TransactionBegin,
        );
        self.queue_event(
            cx,
            now,
            idx,
            EventKind::Started,
            trigger,
            None,
            begin.into_iter().collect(),
            None,
        );
        self.schedule_sampling(cx, now, idx);
    }

    fn end_transaction(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        idx: usize,
        trigger: &'static str,
        reason: &'static str,
        stop_token: Option<IdToken>,
    ) {
        let evse_id = self.evses[idx].id;
        if self.evses[idx].power_path {
            self.evses[idx].power_path = false;
            cx.outputs.push_back(Output::PowerPath {
                evse: evse_id,
                closed: false,
            });
        }
        let end = self.sample(
            cx,
            now,
            idx,
            Var::TxEndedMeasurands,
            Context::TransactionEnd,
        );
        let mut values = self.evses[idx]
            .tx
            .as_mut()
            .map(|t| std::mem::take(&mut t.ended_values))
            .unwrap_or_default();
        values.extend(end);
        self.queue_event(
            cx,
            now,
            idx,
            EventKind::Ended,
            trigger,
            Some(reason),
            values,
            stop_token,
        );
        cx.model.evses[idx].finishing = self.ev_connected(cx, idx);
        cx.model.evses[idx].charging_state = "";
        let tx = self.evses[idx].tx.take();
        cx.model.evses[idx].transaction = None;
        cx.model.evses[idx].active_transaction = None;
        self.evses[idx].auth = None;
        self.evses[idx].suspended = false;
        self.evses[idx].energy_limit_armed = false;
        for t in [
            Timer::TxUpdated(evse_id),
            Timer::TxEndedSample(evse_id),
            Timer::EvConnectTimeout(evse_id),
            Timer::MeterCheckpoint(evse_id),
        ] {
            cx.timers.stop(t);
        }
        if let Some(tx) = tx {
            info!(
                evse = evse_id,
                transaction_id = tx.id,
                reason,
                "transaction ended"
            );
        }
        cx.emit(CoreEvent::TransactionEnded { evse: evse_id });
    }

    /// B11/B12: a Reset ends the transactions of the station (`None`) or of an EVSE.
    pub(crate) fn end_for_reset(&mut self, cx: &mut Ctx, now: Instant, scope: Option<u32>) {
        for idx in 0..self.evses.len() {
            if self.evses[idx].tx.is_some() && scope.is_none_or(|id| id == self.evses[idx].id) {
                self.evses[idx].auth = None;
                self.end_transaction(cx, now, idx, "ResetCommand", "ImmediateReset", None);
            }
        }
    }

    /// F05: unlocking the connector of an unauthorized transaction ends it (in 1.6 any
    /// transaction there).
    pub(crate) fn end_transaction_for_unlock(&mut self, cx: &mut Ctx, now: Instant, idx: usize) {
        self.evses[idx].auth = None;
        self.end_transaction(cx, now, idx, "UnlockCommand", "Other", None);
    }

    /// The smart-charging limit of the EVSE changed significantly (K01, LimitChangeSignificance):
    /// an Updated event with triggerReason ChargingRateChanged, and the charging state if a
    /// limit of 0 paused the EV or a new one let it charge again.
    pub(crate) fn charging_rate_changed(&mut self, cx: &mut Ctx, now: Instant, idx: usize) {
        if self.evses[idx].tx.is_none() {
            return;
        }
        self.queue_event(
            cx,
            now,
            idx,
            EventKind::Updated,
            "ChargingRateChanged",
            None,
            Vec::new(),
            None,
        );
    }

    /// Re-evaluates the power path after a fault or availability change.
    pub(crate) fn refresh_power_path(&mut self, cx: &mut Ctx, now: Instant, idx: usize) {
        if self.evses[idx].tx.is_some() {
            self.update_evse(cx, now, idx, Cause::Refresh);
        } else {
            let connected = self.ev_connected(cx, idx);
            let at = self.plugged_connector(cx, idx);
            let usable = cx.model.connector_usable(idx, at, &cx.vars);
            let want = self.evses[idx].auth.is_some() && connected && usable && self.tx_allowed(cx);
            if want != self.evses[idx].power_path {
                self.evses[idx].power_path = want;
                cx.outputs.push_back(Output::PowerPath {
                    evse: self.evses[idx].id,
                    closed: want,
                });
            }
        }
    }

    /// F06.FR.07: a TransactionEvent with triggerReason Trigger, the charging state and the
    /// latest meter values.
    fn trigger_transaction_event(&mut self, cx: &mut Ctx, now: Instant, idx: usize) {
        if let Some(tx) = self.evses[idx].tx.as_mut() {
            // An empty state differs from any real one: the event carries chargingState.
            tx.charging_state = "";
        }
        let mv = self.sample(cx, now, idx, Var::AlignedMeasurands, Context::Trigger);
        self.queue_event(
            cx,
            now,
            idx,
            EventKind::Updated,
            "Trigger",
            None,
            mv.into_iter().collect(),
            None,
        );
    }

    /// A meter value of the EVSE's latest reading, for the measurands of `var`.
    fn sample(
        &self,
        cx: &Ctx,
        now: Instant,
        idx: usize,
        var: Var,
        context: Context,
    ) -> Option<MeterSample> {
        self.sample_at(cx, cx.clock.utc(now), idx, var, context)
    }

    fn sample_at(
        &self,
        cx: &Ctx,
        at: UtcTime,
        idx: usize,
        var: Var,
        context: Context,
    ) -> Option<MeterSample> {
        // SampledDataCtrlr.Enabled / AlignedDataCtrlr.Enabled switch their readings off; a
        // reading the CSMS asked for (TriggerMessage) is always taken.
        let enabled = match var {
            _ if context == Context::Trigger => true,
            Var::TxStartedMeasurands | Var::TxUpdatedMeasurands | Var::TxEndedMeasurands => {
                cx.vars.bool(Var::SampledDataEnabled)
            }
            Var::AlignedMeasurands | Var::AlignedTxEndedMeasurands => {
                cx.vars.bool(Var::AlignedDataEnabled)
            }
            _ => true,
        };
        if !enabled {
            return None;
        }
        // OCPP 1.6 StartTransaction and StopTransaction carry the energy register
        // (meterStart, meterStop) whatever the measurands configured.
        let register = (cx.protocol == crate::ocpp::station::Protocol::V16
            && matches!(context, Context::TransactionBegin | Context::TransactionEnd)
            && !cx.vars.contains(var, ENERGY_REGISTER))
        .then_some(ENERGY_REGISTER);
        meter::meter_value(
            self.evses[idx].meter.as_ref(),
            cx.model.evses[idx].offered_w,
            cx.vars.list(var).chain(register),
            context,
            at,
        )
    }

    fn charging_state(&self, cx: &Ctx, idx: usize) -> &'static str {
        let evse = &self.evses[idx];
        if !self.ev_connected(cx, idx) {
            "Idle"
        } else if evse.power_path && !cx.model.evses[idx].charging_paused {
            "Charging"
        } else if evse.auth.is_some() {
            "SuspendedEVSE"
        } else {
            "EVConnected"
        }
    }

    /// Builds, persists and queues one TransactionEvent for the EVSE's transaction (E01-E12).
    #[allow(clippy::too_many_arguments)]
    fn queue_event(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        idx: usize,
        kind: EventKind,
        trigger: &'static str,
        stopped_reason: Option<&'static str>,
        meter_values: Vec<MeterSample>,
        explicit_token: Option<IdToken>,
    ) {
        let charging_state = self.charging_state(cx, idx);
        let connected = self.ev_connected(cx, idx);
        let offline = !cx.can_send_normal();
        let utc = cx.clock.utc(now);
        let evse_id = self.evses[idx].id;
        let auth = self.evses[idx].auth.clone();
        let Some(tx) = self.evses[idx].tx.as_mut() else {
            return;
        };
        let mut info = json!({ "transactionId": tx.id });
        // E01.FR.18: the charging state whenever it changed (and always at the start).
        if kind == EventKind::Started || tx.charging_state != charging_state {
            info["chargingState"] = json!(charging_state);
            tx.charging_state = charging_state;
            cx.model.evses[idx].charging_state = charging_state;
        }
        if let Some(reason) = stopped_reason {
            info["stoppedReason"] = json!(reason);
        }
        // C05.FR.03: the remoteStartId at least once.
        if let (Some(id), false) = (tx.remote_start_id, tx.remote_start_reported) {
            info["remoteStartId"] = json!(id);
            tx.remote_start_reported = true;
        }
        let mut payload = json!({
            "eventType": kind.as_str(),
            "timestamp": utc.to_rfc3339(),
            "triggerReason": trigger,
            "seqNo": tx.next_seq_no,
            "transactionInfo": info,
        });
        tx.next_seq_no += 1;
        if offline {
            payload["offline"] = json!(true);
        }
        // E01.FR.16: evse in the Started event, and evse + connectorId in the first event after
        // the EV connected.
        if kind == EventKind::Started || (connected && !tx.evse_reported) {
            let mut evse = json!({ "id": evse_id });
            if connected {
                if let Some(c) = tx.connector {
                    evse["connectorId"] = json!(c);
                    tx.evse_reported = true;
                }
            }
            payload["evse"] = evse;
        }
        // E01.FR.10 / E02.FR.20: the idToken once, when the authorization is reported; the
        // stopping token with StopAuthorized (E07.FR.02).
        let mut reservation_id = None;
        let token = match explicit_token {
            Some(t) => Some(t),
            None => match auth {
                Some(a) if !a.reported => {
                    if let Some(evse_auth) = self.evses[idx].auth.as_mut() {
                        evse_auth.reported = true;
                    }
                    reservation_id = a.reservation_id;
                    Some(a.id_token)
                }
                _ => None,
            },
        };
        // H01.FR.15: the reservation the transaction used, with its idToken.
        if let Some(id) = reservation_id {
            payload["reservationId"] = json!(id);
        }
        let tx = self.evses[idx].tx.as_mut().expect("checked above");
        if let Some(token) = &token {
            payload["idToken"] = v201::to_payload(token);
        }
        if let Some(last) = meter_values.last() {
            tx.last_meter = Some(last.clone());
        }
        if !meter_values.is_empty() {
            payload["meterValue"] = v201::to_payload(&meter_values);
        }
        let tx_id = tx.id.clone();
        if let Some(token) = token {
            self.reported_tokens.retain(|(id, _)| *id != tx_id);
            self.reported_tokens.push((tx_id.clone(), token));
        }
        let batch: Batch = if kind == EventKind::Ended {
            vec![PersistOp::RemoveTransaction {
                tx_id: tx_id.clone(),
            }]
        } else {
            vec![PersistOp::PutTransaction(self.tx_record(idx))]
        };
        cx.enqueue_durable(
            now,
            Action::TransactionEvent,
            Some(tx_id),
            kind,
            payload,
            batch,
        );
    }

    /// The durable image of the EVSE's open transaction.
    fn tx_record(&self, idx: usize) -> TxRecord {
        let evse = &self.evses[idx];
        let tx = evse.tx.as_ref().expect("a transaction is open");
        TxRecord {
            tx_id: tx.id.clone(),
            evse: evse.id,
            connector: tx.connector,
            next_seq_no: tx.next_seq_no,
            started_ms: tx.started_ms,
            id_token: evse.auth.as_ref().map(|a| v201::to_payload(&a.id_token)),
            group_id_token: evse
                .auth
                .as_ref()
                .and_then(|a| a.group.as_ref().map(v201::to_payload)),
            authorized: evse.auth.is_some(),
            remote_start_id: tx.remote_start_id,
            last_meter: tx.last_meter.as_ref().map(v201::to_payload),
            ended_meter_values: tx.ended_values.iter().map(v201::to_payload).collect(),
            meter_start_wh: tx.meter_start_wh,
            charging_state: tx.charging_state.to_owned(),
            evse_reported: tx.evse_reported,
        }
    }

    // ----- timers --------------------------------------------------------------------------------

    fn schedule_sampling(&mut self, cx: &mut Ctx, now: Instant, idx: usize) {
        let id = self.evses[idx].id;
        let updated = cx.vars.seconds(Var::TxUpdatedInterval);
        if !updated.is_zero() {
            cx.timers.set(Timer::TxUpdated(id), now + updated);
        }
        let ended = cx.vars.seconds(Var::TxEndedInterval);
        if !ended.is_zero() {
            cx.timers.set(Timer::TxEndedSample(id), now + ended);
        }
    }

    /// Arms both clock-aligned timers (start-up, a new interval, a clock step).
    pub(crate) fn schedule_aligned(&mut self, cx: &mut Ctx, now: Instant) {
        for which in [Aligned::Data, Aligned::TxEnded] {
            self.arm_aligned(cx, now, which);
        }
    }

    /// Arms one clock-aligned timer for the next multiple of its interval since midnight UTC,
    /// never for a boundary that already had its reading: the UTC clock follows the CSMS
    /// (Heartbeat), so a timer may fire a few ms before the boundary it was armed for, and the
    /// boundary after "now" would then be the same one again.
    fn arm_aligned(&mut self, cx: &mut Ctx, now: Instant, which: Aligned) {
        let (timer, var) = which.timer_and_interval();
        let interval = cx.vars.int(var) * 1000;
        if interval <= 0 {
            cx.timers.stop(timer);
            return;
        }
        let utc = cx.clock.utc(now).unix_millis();
        let mut next = (utc.div_euclid(interval) + 1) * interval;
        if let Some(last) = self.aligned_done[which as usize] {
            if next <= last {
                next = last + interval;
            }
        }
        cx.timers.set(
            timer,
            now + Duration::from_millis((next - utc).max(0) as u64),
        );
    }

    /// A clock-aligned timer fired: the time to stamp the reading with, if this boundary still
    /// needs one (exactly one per boundary). A firing up to a second early belongs to the
    /// boundary ahead and is stamped with it, so that a CSMS filing readings by interval puts
    /// it in the right one.
    fn aligned_boundary_due(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        which: Aligned,
    ) -> Option<UtcTime> {
        let (_, var) = which.timer_and_interval();
        let interval = cx.vars.int(var) * 1000;
        let mut due = None;
        if interval > 0 {
            let utc = cx.clock.utc(now).unix_millis();
            let early = (interval / 2).min(1000);
            let boundary = (utc + early).div_euclid(interval) * interval;
            if self.aligned_done[which as usize].is_none_or(|last| boundary > last) {
                self.aligned_done[which as usize] = Some(boundary);
                due = Some(UtcTime::from_unix_millis(utc.max(boundary)));
            }
        }
        self.arm_aligned(cx, now, which);
        due
    }

    pub(crate) fn transaction_timer(&mut self, cx: &mut Ctx, now: Instant, timer: Timer) {
        let evse_idx = |cx: &Ctx, id: u32| cx.model.evse_index(id);
        match timer {
            Timer::TxUpdated(id) => {
                if let Some(idx) = evse_idx(cx, id).filter(|i| self.evses[*i].tx.is_some()) {
                    self.update_evse(cx, now, idx, Cause::Periodic);
                    let interval = cx.vars.seconds(Var::TxUpdatedInterval);
                    if !interval.is_zero() && self.evses[idx].tx.is_some() {
                        cx.timers.set(Timer::TxUpdated(id), now + interval);
                    }
                }
            }
            Timer::TxEndedSample(id) => {
                if let Some(idx) = evse_idx(cx, id).filter(|i| self.evses[*i].tx.is_some()) {
                    let mv = self.sample(
                        cx,
                        now,
                        idx,
                        Var::TxEndedMeasurands,
                        Context::SamplePeriodic,
                    );
                    self.add_ended_value(cx, idx, mv);
                    let interval = cx.vars.seconds(Var::TxEndedInterval);
                    if !interval.is_zero() {
                        cx.timers.set(Timer::TxEndedSample(id), now + interval);
                    }
                }
            }
            Timer::EvConnectTimeout(id) => {
                if let Some(idx) = evse_idx(cx, id) {
                    if !self.ev_connected(cx, idx) && self.evses[idx].auth.is_some() {
                        info!(evse = id, "no EV connected within EVConnectionTimeOut");
                        self.evses[idx].auth = None;
                        self.evses[idx].last_authorization =
                            Some("expired: no EV connected".into());
                        if self.evses[idx].tx.is_some() {
                            self.update_evse(cx, now, idx, Cause::EvConnectTimeout);
                        }
                    }
                }
            }
            Timer::MeterCheckpoint(id) => {
                if let Some(idx) = evse_idx(cx, id).filter(|i| self.evses[*i].power_path) {
                    if self.evses[idx].tx.is_some() {
                        let mv = self.sample(
                            cx,
                            now,
                            idx,
                            Var::TxEndedMeasurands,
                            Context::SamplePeriodic,
                        );
                        if let (Some(mv), Some(tx)) = (mv, self.evses[idx].tx.as_mut()) {
                            tx.last_meter = Some(mv);
                            let record = self.tx_record(idx);
                            cx.outputs
                                .push_back(Output::Persist(vec![PersistOp::PutTransaction(
                                    record,
                                )]));
                        }
                    }
                    cx.timers
                        .set(Timer::MeterCheckpoint(id), now + METER_CHECKPOINT);
                }
            }
            Timer::AlignedData => {
                let Some(at) = self.aligned_boundary_due(cx, now, Aligned::Data) else {
                    return;
                };
                // AlignedDataCtrlr.SendDuringIdle: none while a transaction is ongoing.
                if cx.vars.bool(Var::AlignedSendDuringIdle)
                    && self.evses.iter().any(|e| e.tx.is_some())
                {
                    return;
                }
                for idx in 0..self.evses.len() {
                    if self.evses[idx].tx.is_some() {
                        self.update_evse(cx, now, idx, Cause::Clock(at));
                    } else if cx.can_send_normal() {
                        if let Some(mv) = self.sample_at(
                            cx,
                            at,
                            idx,
                            Var::AlignedMeasurands,
                            Context::SampleClock,
                        ) {
                            let payload =
                                json!({ "evseId": self.evses[idx].id, "meterValue": [mv] });
                            cx.enqueue(RequestKind::MeterValues, Action::MeterValues, payload);
                        }
                    }
                }
            }
            Timer::AlignedTxEnded => {
                let Some(at) = self.aligned_boundary_due(cx, now, Aligned::TxEnded) else {
                    return;
                };
                for idx in 0..self.evses.len() {
                    if self.evses[idx].tx.is_some() {
                        let mv = self.sample_at(
                            cx,
                            at,
                            idx,
                            Var::AlignedTxEndedMeasurands,
                            Context::SampleClock,
                        );
                        self.add_ended_value(cx, idx, mv);
                    }
                }
            }
            _ => {}
        }
    }

    fn add_ended_value(&mut self, cx: &mut Ctx, idx: usize, value: Option<MeterSample>) {
        let Some(value) = value else {
            return;
        };
        if let Some(tx) = self.evses[idx].tx.as_mut() {
            tx.ended_values.push(value.clone());
            tx.last_meter = Some(value);
            // E06.FR.13: drop intermediate values first when there are too many.
            meter::thin_out(&mut tx.ended_values, MAX_ENDED_VALUES);
            let record = self.tx_record(idx);
            cx.outputs
                .push_back(Output::Persist(vec![PersistOp::PutTransaction(record)]));
        }
    }

    // ----- start-up, time, acceptance ------------------------------------------------------------

    /// Ends every transaction that was open when the agent stopped (power loss, crash, or a
    /// reboot), with its last persisted meter reading. The contactors start open.
    pub(crate) fn recover(&mut self, cx: &mut Ctx, now: Instant, persisted: &Persisted) {
        let clean = persisted.meta(CLEAN_SHUTDOWN_KEY).is_some();
        let reason = if clean { "Reboot" } else { "PowerLoss" };
        for record in &persisted.transactions {
            warn!(
                transaction_id = record.tx_id,
                evse = record.evse,
                reason,
                "ending a transaction left open by the previous run"
            );
            let mut values = record.ended_meter_values.clone();
            let mut timestamp = UtcTime::from_unix_millis(record.started_ms).to_rfc3339();
            if let Some(last) = &record.last_meter {
                let mut end = last.clone();
                if let Some(items) = end["sampledValue"].as_array_mut() {
                    for item in items {
                        item["context"] = json!("Transaction.End");
                    }
                }
                if let Some(t) = end["timestamp"].as_str() {
                    timestamp = t.to_owned();
                }
                values.push(end);
            }
            let mut payload = json!({
                "eventType": "Ended",
                "timestamp": timestamp,
                "triggerReason": "AbnormalCondition",
                "seqNo": record.next_seq_no,
                "offline": true,
                "transactionInfo": {
                    "transactionId": record.tx_id,
                    "stoppedReason": reason,
                },
            });
            if !values.is_empty() {
                payload["meterValue"] = Value::Array(values);
            }
            let batch = vec![PersistOp::RemoveTransaction {
                tx_id: record.tx_id.clone(),
            }];
            cx.enqueue_durable(
                now,
                Action::TransactionEvent,
                Some(record.tx_id.clone()),
                EventKind::Ended,
                payload,
                batch,
            );
        }
        if clean {
            cx.outputs
                .push_back(Output::Persist(vec![PersistOp::DeleteMeta {
                    key: CLEAN_SHUTDOWN_KEY.into(),
                }]));
        }
        for evse in &self.evses {
            cx.outputs.push_back(Output::PowerPath {
                evse: evse.id,
                closed: false,
            });
        }
    }

    /// Shifts the open transactions' timestamps once UTC became known.
    pub(crate) fn rebase_transactions(&mut self, delta_ms: i64) -> Vec<PersistOp> {
        let mut ops = Vec::new();
        for idx in 0..self.evses.len() {
            let Some(tx) = self.evses[idx].tx.as_mut() else {
                continue;
            };
            tx.started_ms += delta_ms;
            for v in tx.ended_values.iter_mut().chain(tx.last_meter.iter_mut()) {
                v.rebase(delta_ms);
            }
            ops.push(PersistOp::PutTransaction(self.tx_record(idx)));
        }
        ops
    }

    /// The CSMS accepted us: transactions may now start (TxBeforeAcceptedEnabled = false) for
    /// EVs already plugged in and drivers already authorized.
    /// EVSEs that became inoperative stop offering energy (G03).
    pub(crate) fn availability_changed(&mut self, cx: &mut Ctx) {
        for idx in 0..self.evses.len() {
            if !cx.model.evse_operative(idx, &cx.vars)
                && self.evses[idx].auth.is_some()
                && self.evses[idx].tx.is_none()
            {
                self.evses[idx].auth = None;
            }
        }
    }

    pub(crate) fn accepted(&mut self, cx: &mut Ctx, now: Instant) {
        for idx in 0..self.evses.len() {
            if self.evses[idx].tx.is_none()
                && self.ev_connected(cx, idx)
                && self.has_start(cx, "EVConnected")
            {
                self.update_evse(cx, now, idx, Cause::PlugIn);
            }
        }
    }

    // ----- answers and CSMS requests ---------------------------------------------------------------

    /// The CSMS answered a queued message (E13: it leaves the journal only now).
    pub(crate) fn queued_answered(
        &mut self,
        cx: &mut Ctx,
        auth: &mut Authorization,
        now: Instant,
        meta: &crate::ocpp::persist::QueuedMeta,
        payload: Value,
    ) -> Result<(), v201::validate::Violation> {
        if meta.action == "TransactionEvent" {
            let response: v201::TransactionEventResponse =
                v201::validate::decode(&v201::tables::TRANSACTION_EVENT_RESPONSE, payload)?;
            let mut message = response
                .updated_personal_message
                .as_ref()
                .and_then(|m| serde_json::from_value(v201::to_payload(m)).ok());
            if let (Some(info), Some(tx_id)) = (response.id_token_info, &meta.tx_id) {
                let info = v201::authorization_info(&info);
                // Only the driver's own, accepted token speaks to them (I01/I06).
                if info.accepted() {
                    message = message.or(info.personal_message.clone());
                }
                self.token_info_received(cx, auth, now, tx_id, info);
            }
            // I02/I03/I06: for the driver.
            if let (Some(tx_id), true) = (
                &meta.tx_id,
                response.total_cost.is_some() || message.is_some(),
            ) {
                cx.emit(CoreEvent::TransactionAnswered {
                    transaction_id: tx_id.clone(),
                    ended: meta.kind == EventKind::Ended,
                    total_cost: response.total_cost,
                    message,
                });
            }
        }
        if let Some(op) = cx.link.outbox.delivered(meta.queue_seq) {
            cx.outputs.push_back(Output::Persist(vec![op]));
        }
        if let Some(tx_id) = &meta.tx_id {
            if !cx.link.outbox.has_messages_for(tx_id)
                && !self
                    .evses
                    .iter()
                    .any(|e| e.tx.as_ref().is_some_and(|t| t.id == *tx_id))
            {
                self.reported_tokens.retain(|(id, _)| id != tx_id);
            }
        }
        Ok(())
    }

    /// C10.FR.05 and E05: the idTokenInfo of a TransactionEventResponse.
    fn token_info_received(
        &mut self,
        cx: &mut Ctx,
        auth: &mut Authorization,
        now: Instant,
        tx_id: &str,
        info: AuthorizationInfo,
    ) {
        let Some(token) = self
            .reported_tokens
            .iter()
            .find(|(id, _)| id == tx_id)
            .map(|(_, t)| t.clone())
        else {
            return;
        };
        auth.remember(cx, now, &token, &info);
        let Some(idx) = self
            .evses
            .iter()
            .position(|e| e.tx.as_ref().is_some_and(|t| t.id == tx_id))
        else {
            return;
        };
        let Some(current) = self.evses[idx]
            .auth
            .as_mut()
            .filter(|a| a.id_token.same(&token))
        else {
            return;
        };
        if info.accepted() {
            // C09/C10: the group the CSMS gives the token is the transaction's from now on
            // (another token of that group may stop it).
            if let Some(group) = &info.group_id_token {
                if current.group.as_ref() != Some(group) {
                    info!(
                        transaction_id = tx_id,
                        "the CSMS gave the transaction's idToken a group"
                    );
                    current.group = Some(group.clone());
                }
            }
            return;
        }
        warn!(
            transaction_id = tx_id,
            status = info.status.as_str(),
            "the CSMS did not accept the idToken of a running transaction (E05)"
        );
        self.evses[idx].last_authorization = Some(format!(
            "deauthorized by the CSMS: {}",
            info.status.as_str()
        ));
        if cx.vars.bool(Var::StopTxOnInvalidId) {
            self.evses[idx].auth = None;
        } else {
            // E05.FR.02/03: stop the energy, or allow up to MaxEnergyOnInvalidId.
            let limit = cx.vars.int(Var::MaxEnergyOnInvalidId);
            let used = self.evses[idx].used_energy();
            if limit <= 0 || used >= limit as f64 {
                self.evses[idx].suspended = true;
            } else {
                self.evses[idx].energy_limit_armed = true;
                return;
            }
        }
        self.update_evse(cx, now, idx, Cause::Deauthorized);
    }

    /// F01/F02: RequestStartTransaction.
    pub(crate) fn request_start(
        &mut self,
        cx: &mut Ctx,
        auth: &mut Authorization,
        now: Instant,
        request: v201::RequestStartTransactionRequest,
    ) -> Result<(v201::RequestStartTransactionResponse, Option<u32>), CallError> {
        let rejected = |note: &str| {
            info!(reason = note, "RequestStartTransaction rejected");
            Ok((
                v201::RequestStartTransactionResponse {
                    custom_data: None,
                    status: v201::RequestStartStopStatusEnum::Rejected,
                    status_info: None,
                    transaction_id: None,
                },
                None,
            ))
        };
        // B02.FR.05: not while Pending.
        if !cx.is_accepted() {
            return rejected("not accepted by the CSMS yet");
        }
        let id_token = IdToken::from(&request.id_token);
        let group = request.group_id_token.as_ref().map(IdToken::from);
        let idx = match request.evse_id {
            Some(id) => match cx.model.evse_index(id32(id)) {
                Some(i) => i,
                None => return rejected("no such EVSE"),
            },
            // F01.FR.20: the station picks the EVSE.
            None => match self.select_evse(cx, &id_token, group.as_ref()) {
                Some(i) => i,
                None => return rejected("no EVSE can take a session"),
            },
        };
        // F01.FR.24: Occupied by an authorized transaction.
        if self.evses[idx].auth.is_some() {
            return rejected("the EVSE is already authorized");
        }
        // F01.FR.23: Unavailable or Faulted (the EVSE, or every connector it has).
        if !self.can_take_session(cx, idx) {
            return rejected("the EVSE is unavailable or faulted");
        }
        // C16.FR.03: a Master Pass never starts a transaction.
        if Authorization::is_master_pass(
            cx,
            request.group_id_token.as_ref().map(IdToken::from).as_ref(),
        ) {
            return rejected("a Master Pass token cannot start a transaction");
        }
        // H03 (TC_H_02_CS): a reserved EVSE refuses another driver's remote start. A token of
        // the reservation's group is only known after its authorization, which decides then.
        let gate = &cx.model.evses[idx].reservation;
        let group_may_claim = cx.vars.bool(Var::AuthorizeRemoteStart)
            && gate.claimants.iter().any(|c| c.group.is_some());
        if gate.exclusive && gate.claim(&id_token, group.as_ref()).is_none() && !group_may_claim {
            return rejected("the EVSE is reserved for another idToken");
        }
        let transaction_id = self.evses[idx].tx.as_ref().map(|t| t.id.clone());
        let remote_start_id = request.remote_start_id;
        // C03.FR.01/F02: Central tokens and AuthorizeRemoteStart = false need no Authorize.
        let central = id_token.kind == "Central";
        if cx.vars.bool(Var::AuthorizeRemoteStart) && !central {
            self.authorize(
                cx,
                auth,
                now,
                idx,
                id_token,
                AuthPurpose::RemoteStart { remote_start_id },
            );
        } else {
            self.evses[idx].last_authorization = Some("remote start".into());
            self.grant(
                cx,
                now,
                idx,
                id_token,
                group,
                "RemoteStart",
                Some(remote_start_id),
            );
        }
        Ok((
            v201::RequestStartTransactionResponse {
                custom_data: None,
                status: v201::RequestStartStopStatusEnum::Accepted,
                status_info: None,
                transaction_id,
            },
            Some(self.evses[idx].id),
        ))
    }

    /// Whether an EVSE can take a new session now: operative, not authorized, and the EV's
    /// connector (or, with none plugged, any connector) operative and not faulted.
    fn can_take_session(&self, cx: &Ctx, idx: usize) -> bool {
        self.evses[idx].auth.is_none()
            && cx
                .model
                .connector_usable(idx, self.plugged_connector(cx, idx), &cx.vars)
    }

    /// F01.FR.20: the EVSE for a RequestStartTransaction without evseId: one the driver's
    /// reservation holds (H03), else one where an EV is already plugged in and waits (the
    /// driver asked from there), else the first free one; never one reserved for another.
    fn select_evse(&self, cx: &Ctx, id_token: &IdToken, group: Option<&IdToken>) -> Option<usize> {
        let candidates = || {
            (0..self.evses.len()).filter(|i| {
                let gate = &cx.model.evses[*i].reservation;
                self.can_take_session(cx, *i)
                    && (!gate.exclusive || gate.claim(id_token, group).is_some())
            })
        };
        candidates()
            .find(|i| {
                let gate = &cx.model.evses[*i].reservation;
                gate.exclusive && gate.claim(id_token, group).is_some()
            })
            .or_else(|| candidates().find(|i| self.plugged_connector(cx, *i).is_some()))
            .or_else(|| candidates().find(|i| self.evses[*i].tx.is_none()))
    }

    /// F03: RequestStopTransaction.
    pub(crate) fn request_stop(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::RequestStopTransactionRequest,
    ) -> Result<v201::RequestStopTransactionResponse, CallError> {
        let idx = self.evses.iter().position(|e| {
            e.tx.as_ref()
                .is_some_and(|t| t.id == request.transaction_id)
        });
        let status = match idx {
            Some(idx) if cx.is_accepted() => {
                self.evses[idx].auth = None;
                self.evses[idx].last_authorization = Some("stopped remotely".into());
                self.update_evse(cx, now, idx, Cause::RemoteStop);
                v201::RequestStartStopStatusEnum::Accepted
            }
            _ => v201::RequestStartStopStatusEnum::Rejected,
        };
        Ok(v201::RequestStopTransactionResponse {
            custom_data: None,
            status,
            status_info: None,
        })
    }

    /// E14: GetTransactionStatus.
    pub(crate) fn transaction_status(
        &mut self,
        cx: &mut Ctx,
        request: v201::GetTransactionStatusRequest,
    ) -> Result<v201::GetTransactionStatusResponse, CallError> {
        let response = match request.transaction_id {
            Some(id) => v201::GetTransactionStatusResponse {
                custom_data: None,
                ongoing_indicator: Some(
                    self.evses
                        .iter()
                        .any(|e| e.tx.as_ref().is_some_and(|t| t.id == id)),
                ),
                messages_in_queue: cx.link.outbox.has_messages_for(&id),
            },
            None => v201::GetTransactionStatusResponse {
                custom_data: None,
                ongoing_indicator: None,
                messages_in_queue: cx
                    .link
                    .outbox
                    .iter()
                    .any(|m| m.action == "TransactionEvent"),
            },
        };
        Ok(response)
    }
}

impl Transactions {
    /// F06.FR.06: MeterValues of the AlignedDataCtrlr measurands, for the EVSE or all; false
    /// when no meter has a reading.
    pub(crate) fn trigger_meter_values(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        evse: Option<u32>,
    ) -> bool {
        let mut sent = false;
        for e in self
            .evses
            .iter()
            .filter(|e| evse.is_none_or(|id| id == e.id))
        {
            let offered = cx
                .model
                .evse_index(e.id)
                .and_then(|i| cx.model.evses[i].offered_w);
            let mv = meter::meter_value(
                e.meter.as_ref(),
                offered,
                cx.vars.list(Var::AlignedMeasurands),
                Context::Trigger,
                cx.clock.utc(now),
            );
            if let Some(mv) = mv {
                let payload = json!({ "evseId": e.id, "meterValue": [mv] });
                cx.enqueue_triggered(RequestKind::MeterValues, Action::MeterValues, payload);
                sent = true;
            }
        }
        sent
    }

    /// F06.FR.07: a TransactionEvent (triggerReason Trigger, charging state and meter values)
    /// for each transaction of the EVSE or of all; false when none runs.
    pub(crate) fn trigger_transaction_events(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        evse: Option<u32>,
    ) -> bool {
        let running: Vec<usize> = (0..self.evses.len())
            .filter(|i| self.evses[*i].tx.is_some() && evse.is_none_or(|e| e == self.evses[*i].id))
            .collect();
        for &idx in &running {
            self.trigger_transaction_event(cx, now, idx);
        }
        !running.is_empty()
    }

    /// Per EVSE, what `ctl status` shows.
    pub(crate) fn snapshot(&self, cx: &Ctx) -> Vec<EvseSnapshot> {
        self.evses
            .iter()
            .map(|e| EvseSnapshot {
                id: e.id,
                power_path_closed: e.power_path,
                authorized: e.auth.is_some(),
                charging_limit: None,
                price: None,
                meter: e.meter.map(|m| MeterSnapshot {
                    energy_wh: m.energy_wh,
                    power_w: m.power_w,
                }),
                transaction: e.tx.as_ref().map(|t| TransactionSnapshot {
                    id: t.id.clone(),
                    charging_state: t.charging_state.to_owned(),
                    next_seq_no: t.next_seq_no,
                    energy_wh: e.meter.map(|m| m.energy_wh - t.meter_start_wh),
                    ocpp16_id: cx.transaction16_id(&t.id),
                }),
                last_authorization: e.last_authorization.clone(),
                connectors: (0..cx.model.connectors.len())
                    .filter(|&i| cx.model.connectors[i].evse == e.id)
                    .map(|i| ConnectorSnapshot {
                        id: cx.model.connectors[i].id,
                        status: cx.model.connector_status(i, &cx.vars).as_str(),
                        plugged: cx.model.connectors[i].plugged,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Per EVSE, the meter's power (for the device model's Power variable).
    pub(crate) fn power_w(&self) -> Vec<Option<f64>> {
        self.evses
            .iter()
            .map(|e| e.meter.map(|m| m.power_w))
            .collect()
    }
}

impl Transactions {
    /// F05: UnlockConnector.
    pub(crate) fn unlock_connector(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::UnlockConnectorRequest,
    ) -> Result<v201::UnlockConnectorResponse, CallError> {
        let (evse, connector) = (id32(request.evse_id), id32(request.connector_id));
        let status = match cx.model.evse_index(evse) {
            None => v201::UnlockStatusEnum::UnknownConnector,
            Some(_)
                if !cx
                    .model
                    .connectors
                    .iter()
                    .any(|c| c.evse == evse && c.id == connector) =>
            {
                v201::UnlockStatusEnum::UnknownConnector
            }
            Some(idx) => {
                let on_connector = self.evses[idx]
                    .tx
                    .as_ref()
                    .is_some_and(|t| t.connector.is_none_or(|c| c == connector));
                // 1.6 5.18 differs: the transaction on the connector is finished first, then
                // the connector unlocked.
                let v16 = cx.protocol == crate::ocpp::station::Protocol::V16;
                if on_connector && self.evses[idx].auth.is_some() && !v16 {
                    // F05.FR.02: never under an authorized transaction.
                    v201::UnlockStatusEnum::OngoingAuthorizedTransaction
                } else {
                    if on_connector {
                        self.end_transaction_for_unlock(cx, now, idx);
                    }
                    cx.outputs.push_back(Output::Unlock { evse, connector });
                    v201::UnlockStatusEnum::Unlocked
                }
            }
        };
        Ok(v201::UnlockConnectorResponse {
            custom_data: None,
            status,
            status_info: None,
        })
    }
}

impl Evse {
    fn used_energy(&self) -> f64 {
        match (&self.tx, &self.meter) {
            (Some(tx), Some(m)) => m.energy_wh - tx.meter_start_wh,
            _ => 0.0,
        }
    }
}
