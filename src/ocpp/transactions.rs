//! Transactions (functional block E), authorization (C) and remote start/stop (F), as methods of
//! [`Station`]: per EVSE, who is authorized, whether the power path is closed, and the open
//! transaction with its TransactionEvents, seqNo and meter values.
//!
//! Every state change goes through [`Station::update_evse`] with its [`Cause`]: it closes or
//! opens the power path, starts or ends the transaction per TxStartPoint / TxStopPoint (E01,
//! E06), and queues at most one TransactionEvent describing the change.

use super::auth::Lookup;
use super::clock::{Instant, UtcTime};
use super::ctx::CoreEvent;
use super::devmodel::Var;
use super::management::id32;
use super::meter::{self, Context, MeterReading};
use super::persist::{Batch, EventKind, PersistOp, Persisted, TxRecord};
use super::rpc::CallError;
use super::session::RequestKind;
use super::station::{CLEAN_SHUTDOWN_KEY, Output, Station};
use super::timer::Timer;
use super::v201::{self, Action};
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
pub(super) struct Auth {
    pub(super) id_token: Value,
    pub(super) group: Option<Value>,
    /// `Authorized` or `RemoteStart`.
    trigger: &'static str,
    remote_start_id: Option<i64>,
    /// The idToken went out in a TransactionEvent already (E01.FR.10: once).
    reported: bool,
}

/// The open transaction of an EVSE.
#[derive(Debug, Clone)]
pub(super) struct Tx {
    pub(super) id: String,
    pub(super) next_seq_no: u64,
    pub(super) connector: Option<u32>,
    pub(super) started_ms: i64,
    pub(super) charging_state: &'static str,
    pub(super) meter_start_wh: f64,
    /// `evse.connectorId` went out since the EV connected (E01.FR.16).
    evse_reported: bool,
    remote_start_id: Option<i64>,
    remote_start_reported: bool,
    ended_values: Vec<Value>,
    last_meter: Option<Value>,
}

#[derive(Debug)]
pub(super) struct Evse {
    pub(super) id: u32,
    pub(super) meter: Option<MeterReading>,
    pub(super) power_path: bool,
    pub(super) auth: Option<Auth>,
    pub(super) tx: Option<Tx>,
    /// Energy stopped because the CSMS deauthorized the idToken but the transaction goes on
    /// (E05.FR.02/03).
    suspended: bool,
    /// Deauthorized by the CSMS, energy allowed until MaxEnergyOnInvalidId (E05.FR.03).
    energy_limit_armed: bool,
    pub(super) last_authorization: Option<String>,
}

impl Evse {
    pub(super) fn new(id: u32) -> Self {
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
    StopAuthorized(Value),
    Deauthorized,
    RemoteStop,
    EvConnectTimeout,
    EnergyLimit,
    Periodic,
    Clock,
    /// Availability or a fault changed: an Updated only if the power path changed.
    Refresh,
}

fn same_token(a: &Value, b: &Value) -> bool {
    a["idToken"] == b["idToken"] && a["type"] == b["type"]
}

impl Station {
    fn has_start(&self, point: &str) -> bool {
        self.cx.vars.contains(Var::TxStartPoint, point)
    }

    fn has_stop(&self, point: &str) -> bool {
        self.cx.vars.contains(Var::TxStopPoint, point)
    }

    /// B02.FR.03 / TxBeforeAcceptedEnabled: before the CSMS accepted us, only if configured.
    fn tx_allowed(&self) -> bool {
        self.cx.is_accepted() || self.cx.vars.bool(Var::TxBeforeAcceptedEnabled)
    }

    fn ev_connected(&self, idx: usize) -> bool {
        let at = self.evses[idx].tx.as_ref().and_then(|t| t.connector);
        self.cx.model.ev_connected(idx, at)
    }

    fn plugged_connector(&self, idx: usize) -> Option<u32> {
        self.cx.model.plugged_connector(idx)
    }

    fn now_ms(&self, now: Instant) -> i64 {
        self.cx.clock.utc(now).unix_millis()
    }

    // ----- inputs ----------------------------------------------------------------------------

    pub(super) fn plug_changed(&mut self, now: Instant, evse: u32, connector: u32, plugged: bool) {
        let Some(idx) = self.evse_index(evse) else {
            return;
        };
        if plugged {
            // C01 with AuthCtrlr.Enabled = false: free charging, no idToken needed (C02).
            if !self.cx.vars.bool(Var::AuthEnabled) && self.evses[idx].auth.is_none() {
                self.evses[idx].auth = Some(Auth {
                    id_token: json!({"idToken": "", "type": "NoAuthorization"}),
                    group: None,
                    trigger: "Authorized",
                    remote_start_id: None,
                    reported: false,
                });
            }
            self.cx.timers.stop(Timer::EvConnectTimeout(evse));
            if let Some(tx) = self.evses[idx].tx.as_mut() {
                if tx.connector.is_none() {
                    tx.connector = Some(connector);
                    tx.evse_reported = false;
                    self.cx.model.evses[idx].transaction = Some(Some(connector));
                }
            }
            self.update_evse(now, idx, Cause::PlugIn);
        } else {
            let tx_connector = self.evses[idx].tx.as_ref().and_then(|t| t.connector);
            if tx_connector.is_some_and(|c| c != connector) {
                return; // another connector of the EVSE; the transaction is not on it
            }
            // E09.FR.01: unplugging on the EV side deauthorizes.
            if self.cx.vars.bool(Var::StopTxOnEvSideDisconnect) || self.evses[idx].tx.is_none() {
                self.evses[idx].auth = None;
            }
            self.update_evse(now, idx, Cause::PlugOut);
            // E09.FR.02: release the cable at the station side too.
            if self.cx.vars.bool(Var::UnlockOnEvSideDisconnect) {
                self.cx
                    .outputs
                    .push_back(Output::Unlock { evse, connector });
            }
        }
    }

    /// An idToken presented at an EVSE's reader (C01, E07, C09).
    pub(super) fn present_token(&mut self, now: Instant, idx: usize, id_token: Value) {
        info!(
            evse = self.evses[idx].id,
            token_type = id_token["type"].as_str(),
            "idToken presented"
        );
        let Some(current) = self.evses[idx].auth.clone() else {
            if !self.evse_operative(idx) {
                self.evses[idx].last_authorization =
                    Some("rejected: the EVSE is unavailable".into());
                return;
            }
            self.authorize(now, idx, id_token, AuthPurpose::Start);
            return;
        };
        if same_token(&current.id_token, &id_token) {
            if self.evses[idx].tx.is_some() {
                self.stop_authorized(now, idx, id_token);
            } else {
                // Presented again before the EV came: the driver changed their mind.
                self.evses[idx].auth = None;
                self.evses[idx].last_authorization = Some("cancelled".into());
                self.cx
                    .timers
                    .stop(Timer::EvConnectTimeout(self.evses[idx].id));
            }
            return;
        }
        if self.evses[idx].tx.is_some() && current.group.is_some() {
            // C09: another token of the same group may stop it.
            self.authorize(now, idx, id_token, AuthPurpose::Stop);
        } else {
            self.evses[idx].last_authorization = Some("ignored: the EVSE is in use".into());
        }
    }

    /// Decides an idToken locally or asks the CSMS (C01, C10-C15).
    fn authorize(&mut self, now: Instant, idx: usize, id_token: Value, purpose: AuthPurpose) {
        let lookup = self.local_lookup(now, &id_token);
        if self.cx.can_send_normal() {
            // C12 / LocalPreAuthorize: a valid cached Accepted starts at once; the CSMS checks
            // the idToken in the TransactionEvent (E05).
            if let (true, Lookup::Accepted { group }) =
                (self.cx.vars.bool(Var::LocalPreAuthorize), &lookup)
            {
                let group = group.clone();
                self.authorization_result(
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
            self.cx.enqueue(
                RequestKind::Authorize {
                    evse: idx,
                    id_token,
                    purpose,
                },
                Action::Authorize,
                payload,
            );
        } else {
            self.authorize_offline(now, idx, id_token, purpose, lookup);
        }
    }

    /// What the station knows of a token: the local authorization list first (C13/C14, D01),
    /// then the authorization cache (C10-C12).
    fn local_lookup(&mut self, now: Instant, id_token: &Value) -> Lookup {
        if let Some(list) = self.local_list.active(&self.cx) {
            if let Some(info) = list.lookup(id_token) {
                let status = info["status"].as_str().unwrap_or("Unknown");
                let expired = info["cacheExpiryDateTime"]
                    .as_str()
                    .and_then(UtcTime::parse_rfc3339)
                    .is_some_and(|t| t.unix_millis() <= self.now_ms(now));
                return if status == "Accepted" && !expired {
                    Lookup::Accepted {
                        group: info.get("groupIdToken").cloned(),
                    }
                } else {
                    Lookup::NotAccepted {
                        status: if expired {
                            "Expired".into()
                        } else {
                            status.into()
                        },
                    }
                };
            }
        }
        if !self.cx.vars.bool(Var::AuthCacheEnabled) {
            return Lookup::Unknown;
        }
        let (lookup, op) = self.auth_cache.lookup(id_token, self.now_ms(now));
        if let Some(op) = op {
            self.cx.outputs.push_back(Output::Persist(vec![op]));
        }
        lookup
    }

    /// C12/C13/C15: offline decisions.
    fn authorize_offline(
        &mut self,
        now: Instant,
        idx: usize,
        id_token: Value,
        purpose: AuthPurpose,
        lookup: Lookup,
    ) {
        match lookup {
            Lookup::Accepted { group } if self.cx.vars.bool(Var::LocalAuthorizeOffline) => self
                .authorization_result(
                    now,
                    idx,
                    id_token,
                    purpose,
                    true,
                    group,
                    "accepted offline (cache)",
                ),
            Lookup::Unknown if self.cx.vars.bool(Var::OfflineTxForUnknownIdEnabled) => self
                .authorization_result(
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
                self.authorization_result(now, idx, id_token, purpose, false, None, &note)
            }
            _ => self.authorization_result(
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
    pub(super) fn authorize_answered(
        &mut self,
        now: Instant,
        idx: usize,
        id_token: Value,
        purpose: AuthPurpose,
        info: Option<Value>,
    ) {
        let Some(info) = info else {
            let lookup = self.local_lookup(now, &id_token);
            self.authorize_offline(now, idx, id_token, purpose, lookup);
            self.cx.pump(now);
            return;
        };
        if self.cx.vars.bool(Var::AuthCacheEnabled) {
            let lifetime = self.cx.vars.seconds(Var::AuthCacheLifeTime).as_millis() as i64;
            let ops = self
                .auth_cache
                .update(&id_token, &info, self.now_ms(now), lifetime);
            if !ops.is_empty() {
                self.cx.outputs.push_back(Output::Persist(ops));
            }
        }
        let status = info["status"].as_str().unwrap_or("Unknown");
        // C01.FR.21: an evseId list limits where the token may charge.
        let evse_id = self.evses[idx].id;
        let allowed_here = info["evseId"].as_array().is_none_or(|ids| {
            ids.is_empty() || ids.iter().any(|i| i.as_u64() == Some(u64::from(evse_id)))
        });
        let accepted = status == "Accepted" && allowed_here;
        let note = if accepted {
            "accepted".to_owned()
        } else if !allowed_here {
            "rejected: not allowed on this EVSE".to_owned()
        } else {
            format!("rejected: {status}")
        };
        let group = info.get("groupIdToken").cloned();
        self.authorization_result(now, idx, id_token, purpose, accepted, group, &note);
        self.cx.pump(now);
    }

    #[allow(clippy::too_many_arguments)]
    fn authorization_result(
        &mut self,
        now: Instant,
        idx: usize,
        id_token: Value,
        purpose: AuthPurpose,
        accepted: bool,
        group: Option<Value>,
        note: &str,
    ) {
        info!(evse = self.evses[idx].id, result = note, "authorization");
        self.evses[idx].last_authorization = Some(note.to_owned());
        match purpose {
            AuthPurpose::Stop => {
                // C09.FR.03/11: same group and Accepted.
                let tx_group = self.evses[idx].auth.as_ref().and_then(|a| a.group.clone());
                let same_group = match (&group, &tx_group) {
                    (Some(g), Some(t)) => g["idToken"] == t["idToken"],
                    _ => false,
                };
                if accepted && same_group {
                    self.stop_authorized(now, idx, id_token);
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
                self.grant(now, idx, id_token, group, trigger, remote_start_id);
            }
        }
    }

    fn grant(
        &mut self,
        now: Instant,
        idx: usize,
        id_token: Value,
        group: Option<Value>,
        trigger: &'static str,
        remote_start_id: Option<i64>,
    ) {
        self.evses[idx].auth = Some(Auth {
            id_token,
            group,
            trigger,
            remote_start_id,
            reported: false,
        });
        self.evses[idx].suspended = false;
        if let (Some(tx), Some(id)) = (self.evses[idx].tx.as_mut(), remote_start_id) {
            tx.remote_start_id = Some(id);
        }
        if !self.ev_connected(idx) {
            // E03.FR.05: the driver has EVConnectionTimeOut to plug in.
            let timeout = self.cx.vars.seconds(Var::EvConnectionTimeOut);
            if !timeout.is_zero() {
                self.cx
                    .timers
                    .set(Timer::EvConnectTimeout(self.evses[idx].id), now + timeout);
            }
        }
        self.update_evse(now, idx, Cause::Authorized);
    }

    fn stop_authorized(&mut self, now: Instant, idx: usize, id_token: Value) {
        self.evses[idx].auth = None;
        self.evses[idx].last_authorization = Some("stopped by idToken".into());
        self.update_evse(now, idx, Cause::StopAuthorized(id_token));
    }

    pub(super) fn meter_reading(&mut self, now: Instant, idx: usize, reading: MeterReading) {
        self.evses[idx].meter = Some(reading);
        // E05.FR.03: after an invalid id, energy flows up to MaxEnergyOnInvalidId.
        let limit = self.cx.vars.int(Var::MaxEnergyOnInvalidId) as f64;
        if self.evses[idx].energy_limit_armed && self.evses[idx].used_energy() >= limit {
            self.evses[idx].energy_limit_armed = false;
            self.evses[idx].suspended = true;
            self.update_evse(now, idx, Cause::EnergyLimit);
        }
    }

    // ----- the state machine -------------------------------------------------------------------

    fn update_evse(&mut self, now: Instant, idx: usize, cause: Cause) {
        let evse_id = self.evses[idx].id;
        let connected = self.ev_connected(idx);
        let authorized = self.evses[idx].auth.is_some() && !self.evses[idx].suspended;
        let usable = self.connector_usable(
            idx,
            self.evses[idx]
                .tx
                .as_ref()
                .and_then(|t| t.connector)
                .or(self.plugged_connector(idx)),
        );
        let want_closed = authorized && connected && usable && self.tx_allowed();
        let path_changed = want_closed != self.evses[idx].power_path;
        if path_changed {
            self.evses[idx].power_path = want_closed;
            info!(evse = evse_id, closed = want_closed, "power path");
            self.cx.outputs.push_back(Output::PowerPath {
                evse: evse_id,
                closed: want_closed,
            });
            if want_closed {
                self.cx
                    .timers
                    .set(Timer::MeterCheckpoint(evse_id), now + METER_CHECKPOINT);
            } else {
                self.cx.timers.stop(Timer::MeterCheckpoint(evse_id));
            }
        }

        if self.evses[idx].tx.is_none() {
            let start = self.tx_allowed()
                && self.evse_operative(idx)
                && match &cause {
                    Cause::PlugIn => self.has_start("EVConnected"),
                    Cause::Authorized => self.has_start("Authorized"),
                    _ => false,
                }
                || (path_changed
                    && want_closed
                    && (self.has_start("PowerPathClosed") || self.has_start("EnergyTransfer")));
            if start {
                let trigger = match &cause {
                    Cause::PlugIn => "CablePluggedIn",
                    Cause::Authorized => self.evses[idx]
                        .auth
                        .as_ref()
                        .map_or("Authorized", |a| a.trigger),
                    _ => "ChargingStateChanged",
                };
                self.start_transaction(now, idx, trigger);
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
                if self.has_stop("EVConnected")
                    || (deauthorized && self.has_stop("Authorized"))
                    || (path_opened && self.has_stop("PowerPathClosed")) =>
            {
                Some(("EVCommunicationLost", "EVDisconnected"))
            }
            Cause::StopAuthorized(_)
                if self.has_stop("Authorized")
                    || (path_opened
                        && (self.has_stop("PowerPathClosed")
                            || self.has_stop("EnergyTransfer"))) =>
            {
                Some(("StopAuthorized", "Local"))
            }
            Cause::Deauthorized
                if deauthorized
                    && (self.has_stop("Authorized")
                        || self.has_stop("PowerPathClosed")
                        || self.has_stop("EnergyTransfer")) =>
            {
                Some(("Deauthorized", "DeAuthorized"))
            }
            _ if path_opened && self.has_stop("EnergyTransfer") => {
                Some(("ChargingStateChanged", "Other"))
            }
            _ => None,
        };
        if let Some((trigger, reason)) = stop {
            let stop_token = match &cause {
                Cause::StopAuthorized(t) => Some(t.clone()),
                _ => None,
            };
            self.end_transaction(now, idx, trigger, reason, stop_token);
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
            Cause::StopAuthorized(_) => ("StopAuthorized", Vec::new()),
            Cause::Deauthorized => ("Deauthorized", Vec::new()),
            Cause::EnergyLimit => ("EnergyLimitReached", Vec::new()),
            Cause::Periodic => {
                let mv = self.sample(now, idx, Var::TxUpdatedMeasurands, Context::SamplePeriodic);
                if mv.is_none() && !path_changed {
                    return;
                }
                ("MeterValuePeriodic", mv.into_iter().collect())
            }
            Cause::Clock => {
                let mv = self.sample(now, idx, Var::AlignedMeasurands, Context::SampleClock);
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
            Cause::StopAuthorized(t) => Some(t.clone()),
            _ => None,
        };
        self.queue_event(
            now,
            idx,
            EventKind::Updated,
            trigger,
            None,
            meter_values,
            token,
        );
    }

    fn start_transaction(&mut self, now: Instant, idx: usize, trigger: &'static str) {
        let id = self.cx.rng.uuid_v4();
        let evse = &self.evses[idx];
        let connector = self.plugged_connector(idx);
        info!(
            evse = evse.id,
            transaction_id = id,
            trigger,
            "transaction started"
        );
        let tx = Tx {
            id,
            next_seq_no: 0,
            connector,
            started_ms: self.now_ms(now),
            charging_state: "Idle",
            meter_start_wh: evse.meter.map_or(0.0, |m| m.energy_wh),
            evse_reported: false,
            remote_start_id: evse.auth.as_ref().and_then(|a| a.remote_start_id),
            remote_start_reported: false,
            ended_values: Vec::new(),
            last_meter: None,
        };
        self.evses[idx].tx = Some(tx);
        self.cx.model.evses[idx].transaction = Some(connector);
        self.cx.emit(CoreEvent::TransactionStarted {
            evse: self.evses[idx].id,
        });
        let begin = self.sample(
            now,
            idx,
            Var::TxStartedMeasurands,
            Context::TransactionBegin,
        );
        self.queue_event(
            now,
            idx,
            EventKind::Started,
            trigger,
            None,
            begin.into_iter().collect(),
            None,
        );
        self.schedule_sampling(now, idx);
    }

    fn end_transaction(
        &mut self,
        now: Instant,
        idx: usize,
        trigger: &'static str,
        reason: &'static str,
        stop_token: Option<Value>,
    ) {
        let evse_id = self.evses[idx].id;
        if self.evses[idx].power_path {
            self.evses[idx].power_path = false;
            self.cx.outputs.push_back(Output::PowerPath {
                evse: evse_id,
                closed: false,
            });
        }
        let end = self.sample(now, idx, Var::TxEndedMeasurands, Context::TransactionEnd);
        let mut values = self.evses[idx]
            .tx
            .as_mut()
            .map(|t| std::mem::take(&mut t.ended_values))
            .unwrap_or_default();
        values.extend(end);
        self.queue_event(
            now,
            idx,
            EventKind::Ended,
            trigger,
            Some(reason),
            values,
            stop_token,
        );
        let tx = self.evses[idx].tx.take();
        self.cx.model.evses[idx].transaction = None;
        self.evses[idx].auth = None;
        self.evses[idx].suspended = false;
        self.evses[idx].energy_limit_armed = false;
        for t in [
            Timer::TxUpdated(evse_id),
            Timer::TxEndedSample(evse_id),
            Timer::EvConnectTimeout(evse_id),
            Timer::MeterCheckpoint(evse_id),
        ] {
            self.cx.timers.stop(t);
        }
        if let Some(tx) = tx {
            info!(
                evse = evse_id,
                transaction_id = tx.id,
                reason,
                "transaction ended"
            );
        }
        self.cx.emit(CoreEvent::TransactionEnded { evse: evse_id });
    }

    /// B11/B12: a Reset ends the EVSE's transaction.
    pub(super) fn end_transaction_for_reset(&mut self, now: Instant, idx: usize) {
        self.evses[idx].auth = None;
        self.end_transaction(now, idx, "ResetCommand", "ImmediateReset", None);
    }

    /// F05: unlocking the connector of an unauthorized transaction ends it.
    pub(super) fn end_transaction_for_unlock(&mut self, now: Instant, idx: usize) {
        self.evses[idx].auth = None;
        self.end_transaction(now, idx, "UnlockCommand", "Other", None);
    }

    /// Re-evaluates the power path after a fault or availability change.
    pub(super) fn refresh_power_path(&mut self, now: Instant, idx: usize) {
        if self.evses[idx].tx.is_some() {
            self.update_evse(now, idx, Cause::Refresh);
        } else {
            let connected = self.ev_connected(idx);
            let usable = self.connector_usable(idx, self.plugged_connector(idx));
            let want = self.evses[idx].auth.is_some() && connected && usable && self.tx_allowed();
            if want != self.evses[idx].power_path {
                self.evses[idx].power_path = want;
                self.cx.outputs.push_back(Output::PowerPath {
                    evse: self.evses[idx].id,
                    closed: want,
                });
            }
        }
    }

    /// F06.FR.07: a TransactionEvent with triggerReason Trigger, the charging state and the
    /// latest meter values.
    pub(super) fn trigger_transaction_event(&mut self, now: Instant, idx: usize) {
        if let Some(tx) = self.evses[idx].tx.as_mut() {
            // An empty state differs from any real one: the event carries chargingState.
            tx.charging_state = "";
        }
        let mv = self.sample(now, idx, Var::AlignedMeasurands, Context::Trigger);
        self.queue_event(
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
    fn sample(&self, now: Instant, idx: usize, var: Var, context: Context) -> Option<Value> {
        meter::meter_value(
            self.evses[idx].meter.as_ref(),
            self.cx.vars.list(var),
            context,
            self.cx.clock.utc(now),
        )
    }

    fn charging_state(&self, idx: usize) -> &'static str {
        let evse = &self.evses[idx];
        if !self.ev_connected(idx) {
            "Idle"
        } else if evse.power_path {
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
        now: Instant,
        idx: usize,
        kind: EventKind,
        trigger: &'static str,
        stopped_reason: Option<&'static str>,
        meter_values: Vec<Value>,
        explicit_token: Option<Value>,
    ) {
        let charging_state = self.charging_state(idx);
        let connected = self.ev_connected(idx);
        let offline = !self.cx.can_send_normal();
        let utc = self.cx.clock.utc(now);
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
        let token = match explicit_token {
            Some(t) => Some(t),
            None => match auth {
                Some(a) if !a.reported => {
                    if let Some(evse_auth) = self.evses[idx].auth.as_mut() {
                        evse_auth.reported = true;
                    }
                    Some(a.id_token)
                }
                _ => None,
            },
        };
        let tx = self.evses[idx].tx.as_mut().expect("checked above");
        if let Some(token) = &token {
            payload["idToken"] = token.clone();
        }
        if let Some(last) = meter_values.last() {
            tx.last_meter = Some(last.clone());
        }
        if !meter_values.is_empty() {
            payload["meterValue"] = Value::Array(meter_values);
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
        self.cx.enqueue_durable(
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
            id_token: evse.auth.as_ref().map(|a| a.id_token.clone()),
            group_id_token: evse.auth.as_ref().and_then(|a| a.group.clone()),
            authorized: evse.auth.is_some(),
            remote_start_id: tx.remote_start_id,
            last_meter: tx.last_meter.clone(),
            ended_meter_values: tx.ended_values.clone(),
            meter_start_wh: tx.meter_start_wh,
            charging_state: tx.charging_state.to_owned(),
            evse_reported: tx.evse_reported,
        }
    }

    // ----- timers --------------------------------------------------------------------------------

    fn schedule_sampling(&mut self, now: Instant, idx: usize) {
        let id = self.evses[idx].id;
        let updated = self.cx.vars.seconds(Var::TxUpdatedInterval);
        if !updated.is_zero() {
            self.cx.timers.set(Timer::TxUpdated(id), now + updated);
        }
        let ended = self.cx.vars.seconds(Var::TxEndedInterval);
        if !ended.is_zero() {
            self.cx.timers.set(Timer::TxEndedSample(id), now + ended);
        }
    }

    /// Arms the clock-aligned timers for the next multiple of their interval since midnight UTC.
    pub(super) fn schedule_aligned(&mut self, now: Instant) {
        let utc = self.cx.clock.utc(now).unix_millis();
        for (timer, var) in [
            (Timer::AlignedData, Var::AlignedInterval),
            (Timer::AlignedTxEnded, Var::AlignedTxEndedInterval),
        ] {
            let interval = self.cx.vars.int(var) * 1000;
            if interval <= 0 {
                self.cx.timers.stop(timer);
                continue;
            }
            let next = (utc.div_euclid(interval) + 1) * interval;
            self.cx
                .timers
                .set(timer, now + Duration::from_millis((next - utc) as u64));
        }
    }

    pub(super) fn transaction_timer(&mut self, now: Instant, timer: Timer) {
        let evse_idx = |s: &Station, id: u32| s.evse_index(id);
        match timer {
            Timer::TxUpdated(id) => {
                if let Some(idx) = evse_idx(self, id).filter(|i| self.evses[*i].tx.is_some()) {
                    self.update_evse(now, idx, Cause::Periodic);
                    let interval = self.cx.vars.seconds(Var::TxUpdatedInterval);
                    if !interval.is_zero() && self.evses[idx].tx.is_some() {
                        self.cx.timers.set(Timer::TxUpdated(id), now + interval);
                    }
                }
            }
            Timer::TxEndedSample(id) => {
                if let Some(idx) = evse_idx(self, id).filter(|i| self.evses[*i].tx.is_some()) {
                    let mv = self.sample(now, idx, Var::TxEndedMeasurands, Context::SamplePeriodic);
                    self.add_ended_value(idx, mv);
                    let interval = self.cx.vars.seconds(Var::TxEndedInterval);
                    if !interval.is_zero() {
                        self.cx.timers.set(Timer::TxEndedSample(id), now + interval);
                    }
                }
            }
            Timer::EvConnectTimeout(id) => {
                if let Some(idx) = evse_idx(self, id) {
                    if !self.ev_connected(idx) && self.evses[idx].auth.is_some() {
                        info!(evse = id, "no EV connected within EVConnectionTimeOut");
                        self.evses[idx].auth = None;
                        self.evses[idx].last_authorization =
                            Some("expired: no EV connected".into());
                        if self.evses[idx].tx.is_some() {
                            self.update_evse(now, idx, Cause::EvConnectTimeout);
                        }
                    }
                }
            }
            Timer::MeterCheckpoint(id) => {
                if let Some(idx) = evse_idx(self, id).filter(|i| self.evses[*i].power_path) {
                    if self.evses[idx].tx.is_some() {
                        let mv =
                            self.sample(now, idx, Var::TxEndedMeasurands, Context::SamplePeriodic);
                        if let (Some(mv), Some(tx)) = (mv, self.evses[idx].tx.as_mut()) {
                            tx.last_meter = Some(mv);
                            let record = self.tx_record(idx);
                            self.cx.outputs.push_back(Output::Persist(vec![
                                PersistOp::PutTransaction(record),
                            ]));
                        }
                    }
                    self.cx
                        .timers
                        .set(Timer::MeterCheckpoint(id), now + METER_CHECKPOINT);
                }
            }
            Timer::AlignedData => {
                for idx in 0..self.evses.len() {
                    if self.evses[idx].tx.is_some() {
                        self.update_evse(now, idx, Cause::Clock);
                    } else if self.cx.can_send_normal() {
                        if let Some(mv) =
                            self.sample(now, idx, Var::AlignedMeasurands, Context::SampleClock)
                        {
                            let payload =
                                json!({ "evseId": self.evses[idx].id, "meterValue": [mv] });
                            self.cx
                                .enqueue(RequestKind::MeterValues, Action::MeterValues, payload);
                        }
                    }
                }
                self.schedule_aligned(now);
            }
            Timer::AlignedTxEnded => {
                for idx in 0..self.evses.len() {
                    if self.evses[idx].tx.is_some() {
                        let mv = self.sample(
                            now,
                            idx,
                            Var::AlignedTxEndedMeasurands,
                            Context::SampleClock,
                        );
                        self.add_ended_value(idx, mv);
                    }
                }
                self.schedule_aligned(now);
            }
            _ => {}
        }
    }

    fn add_ended_value(&mut self, idx: usize, value: Option<Value>) {
        let Some(value) = value else {
            return;
        };
        if let Some(tx) = self.evses[idx].tx.as_mut() {
            tx.ended_values.push(value.clone());
            tx.last_meter = Some(value);
            // E06.FR.13: drop intermediate values first when there are too many.
            meter::thin_out(&mut tx.ended_values, MAX_ENDED_VALUES);
            let record = self.tx_record(idx);
            self.cx
                .outputs
                .push_back(Output::Persist(vec![PersistOp::PutTransaction(record)]));
        }
    }

    // ----- start-up, time, acceptance ------------------------------------------------------------

    /// Ends every transaction that was open when the agent stopped (power loss, crash, or a
    /// reboot), with its last persisted meter reading. The contactors start open.
    pub(super) fn recover(&mut self, now: Instant, persisted: &Persisted) {
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
            self.cx.enqueue_durable(
                now,
                Action::TransactionEvent,
                Some(record.tx_id.clone()),
                EventKind::Ended,
                payload,
                batch,
            );
        }
        if clean {
            self.cx
                .outputs
                .push_back(Output::Persist(vec![PersistOp::DeleteMeta {
                    key: CLEAN_SHUTDOWN_KEY.into(),
                }]));
        }
        for evse in &self.evses {
            self.cx.outputs.push_back(Output::PowerPath {
                evse: evse.id,
                closed: false,
            });
        }
    }

    /// Shifts the open transactions' timestamps once UTC became known.
    pub(super) fn rebase_transactions(&mut self, delta_ms: i64) -> Vec<PersistOp> {
        let mut ops = Vec::new();
        for idx in 0..self.evses.len() {
            let Some(tx) = self.evses[idx].tx.as_mut() else {
                continue;
            };
            tx.started_ms += delta_ms;
            for v in tx.ended_values.iter_mut().chain(tx.last_meter.iter_mut()) {
                super::persist::rebase_timestamps(v, delta_ms);
            }
            ops.push(PersistOp::PutTransaction(self.tx_record(idx)));
        }
        ops
    }

    /// The CSMS accepted us: transactions may now start (TxBeforeAcceptedEnabled = false) for
    /// EVs already plugged in and drivers already authorized.
    /// EVSEs that became inoperative stop offering energy (G03).
    pub(super) fn availability_changed(&mut self) {
        for idx in 0..self.evses.len() {
            if !self.evse_operative(idx)
                && self.evses[idx].auth.is_some()
                && self.evses[idx].tx.is_none()
            {
                self.evses[idx].auth = None;
            }
        }
    }

    pub(super) fn accepted(&mut self, now: Instant) {
        for idx in 0..self.evses.len() {
            if self.evses[idx].tx.is_none()
                && self.ev_connected(idx)
                && self.has_start("EVConnected")
            {
                self.update_evse(now, idx, Cause::PlugIn);
            }
        }
    }

    // ----- answers and CSMS requests ---------------------------------------------------------------

    /// The CSMS answered a queued message (E13: it leaves the journal only now).
    pub(super) fn queued_answered(
        &mut self,
        now: Instant,
        meta: &super::persist::QueuedMeta,
        payload: Value,
    ) -> Result<(), v201::validate::Violation> {
        if meta.action == "TransactionEvent" {
            let response: v201::TransactionEventResponse =
                v201::validate::decode(&v201::tables::TRANSACTION_EVENT_RESPONSE, payload)?;
            if let (Some(info), Some(tx_id)) = (response.id_token_info, &meta.tx_id) {
                let info = serde_json::to_value(&info).unwrap_or(Value::Null);
                self.token_info_received(now, tx_id, info);
            }
        }
        if let Some(op) = self.cx.link.outbox.delivered(meta.queue_seq) {
            self.cx.outputs.push_back(Output::Persist(vec![op]));
        }
        if let Some(tx_id) = &meta.tx_id {
            if !self.cx.link.outbox.has_messages_for(tx_id)
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
    fn token_info_received(&mut self, now: Instant, tx_id: &str, info: Value) {
        let Some(token) = self
            .reported_tokens
            .iter()
            .find(|(id, _)| id == tx_id)
            .map(|(_, t)| t.clone())
        else {
            return;
        };
        if self.cx.vars.bool(Var::AuthCacheEnabled) {
            let lifetime = self.cx.vars.seconds(Var::AuthCacheLifeTime).as_millis() as i64;
            let ops = self
                .auth_cache
                .update(&token, &info, self.now_ms(now), lifetime);
            if !ops.is_empty() {
                self.cx.outputs.push_back(Output::Persist(ops));
            }
        }
        if info["status"] == "Accepted" {
            return;
        }
        let Some(idx) = self
            .evses
            .iter()
            .position(|e| e.tx.as_ref().is_some_and(|t| t.id == tx_id))
        else {
            return;
        };
        let holds = self.evses[idx]
            .auth
            .as_ref()
            .is_some_and(|a| same_token(&a.id_token, &token));
        if !holds {
            return;
        }
        warn!(
            transaction_id = tx_id,
            status = info["status"].as_str(),
            "the CSMS did not accept the idToken of a running transaction (E05)"
        );
        self.evses[idx].last_authorization = Some(format!(
            "deauthorized by the CSMS: {}",
            info["status"].as_str().unwrap_or("?")
        ));
        if self.cx.vars.bool(Var::StopTxOnInvalidId) {
            self.evses[idx].auth = None;
        } else {
            // E05.FR.02/03: stop the energy, or allow up to MaxEnergyOnInvalidId.
            let limit = self.cx.vars.int(Var::MaxEnergyOnInvalidId);
            let used = self.evses[idx].used_energy();
            if limit <= 0 || used >= limit as f64 {
                self.evses[idx].suspended = true;
            } else {
                self.evses[idx].energy_limit_armed = true;
                return;
            }
        }
        self.update_evse(now, idx, Cause::Deauthorized);
    }

    /// F01/F02: RequestStartTransaction.
    pub(super) fn request_start(
        &mut self,
        now: Instant,
        request: v201::RequestStartTransactionRequest,
    ) -> Result<v201::RequestStartTransactionResponse, CallError> {
        let rejected = |note: &str| {
            info!(reason = note, "RequestStartTransaction rejected");
            Ok(v201::RequestStartTransactionResponse {
                custom_data: None,
                status: v201::RequestStartStopStatusEnum::Rejected,
                status_info: None,
                transaction_id: None,
            })
        };
        // B02.FR.05: not while Pending.
        if !self.cx.is_accepted() {
            return rejected("not accepted by the CSMS yet");
        }
        let idx = match request.evse_id {
            Some(id) => match self.evse_index(id32(id)) {
                Some(i) => i,
                None => return rejected("no such EVSE"),
            },
            None => match (0..self.evses.len()).position(|i| {
                let e = &self.evses[i];
                e.auth.is_none()
                    && e.tx.is_none()
                    && self.cx.model.evses[i].operative
                    && self.cx.model.station_operative
            }) {
                Some(i) => i,
                None => return rejected("no free EVSE"),
            },
        };
        if self.evses[idx].auth.is_some() {
            return rejected("the EVSE is already authorized");
        }
        if !self.evse_operative(idx) {
            return rejected("the EVSE is unavailable");
        }
        let id_token = serde_json::to_value(&request.id_token).unwrap_or(Value::Null);
        let transaction_id = self.evses[idx].tx.as_ref().map(|t| t.id.clone());
        let remote_start_id = request.remote_start_id;
        let group = request
            .group_id_token
            .as_ref()
            .and_then(|g| serde_json::to_value(g).ok());
        // C03.FR.01/F02: Central tokens and AuthorizeRemoteStart = false need no Authorize.
        let central = id_token["type"] == "Central";
        if self.cx.vars.bool(Var::AuthorizeRemoteStart) && !central {
            self.authorize(
                now,
                idx,
                id_token,
                AuthPurpose::RemoteStart { remote_start_id },
            );
        } else {
            self.evses[idx].last_authorization = Some("remote start".into());
            self.grant(
                now,
                idx,
                id_token,
                group,
                "RemoteStart",
                Some(remote_start_id),
            );
        }
        Ok(v201::RequestStartTransactionResponse {
            custom_data: None,
            status: v201::RequestStartStopStatusEnum::Accepted,
            status_info: None,
            transaction_id,
        })
    }

    /// F03: RequestStopTransaction.
    pub(super) fn request_stop(
        &mut self,
        now: Instant,
        request: v201::RequestStopTransactionRequest,
    ) -> Result<v201::RequestStopTransactionResponse, CallError> {
        let idx = self.evses.iter().position(|e| {
            e.tx.as_ref()
                .is_some_and(|t| t.id == request.transaction_id)
        });
        let status = match idx {
            Some(idx) if self.cx.is_accepted() => {
                self.evses[idx].auth = None;
                self.evses[idx].last_authorization = Some("stopped remotely".into());
                self.update_evse(now, idx, Cause::RemoteStop);
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
    pub(super) fn transaction_status(
        &mut self,
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
                messages_in_queue: self.cx.link.outbox.has_messages_for(&id),
            },
            None => v201::GetTransactionStatusResponse {
                custom_data: None,
                ongoing_indicator: None,
                messages_in_queue: self
                    .cx
                    .link
                    .outbox
                    .iter()
                    .any(|m| m.action == "TransactionEvent"),
            },
        };
        Ok(response)
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
