//! The station's 1.6 state beside the blocks: the transactionIds the CSMS assigned (durable,
//! so a transaction started offline is reported with its id after a restart, and nothing is
//! ever sent with a made-up one), the connector statuses last queued in their 1.6 form, and
//! the translation of what the link sends and receives.

use super::Action;
use super::adapter::{self, LinkRequest, Lookup, Outbound};
use super::core_profile::{self, Tx16};
use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::Ctx;
use crate::ocpp::persist::{PersistOp, Persisted, Record};
use crate::ocpp::session::RequestKind;
use crate::ocpp::v201;
use crate::ocpp::validate::Violation;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// 1.6 state of the link (empty and unused in 2.0.1).
#[derive(Debug, Default)]
pub(crate) struct Link16 {
    /// Our transactions sent as StartTransaction, by our transaction id.
    transactions: BTreeMap<String, Tx16>,
    /// The status (with errorCode and info) last queued for connector 0 and each EVSE.
    statuses: Vec<Option<(&'static str, &'static str, Option<String>)>>,
    /// `[firmware] allow_unsigned` (see `Lookup::unsigned_firmware`).
    pub(crate) unsigned_firmware: bool,
    /// The 1.6 Reset being carried out (`Hard` or `Soft`): the transactions it ends stop
    /// with reason HardReset or SoftReset (2.0.1 has one reason, ImmediateReset).
    pub(crate) reset: Option<&'static str>,
}

#[derive(Serialize, Deserialize)]
struct Transactions16 {
    transactions: BTreeMap<String, Tx16>,
}

impl Record for Transactions16 {
    const KEY: &'static str = "v16_transactions";
    const VERSION: u32 = 1;
}

impl Ctx {
    /// A CALLERROR frame in the spelling of the version spoken.
    pub(crate) fn encode_error(&self, id: &str, error: &crate::ocpp::rpc::CallError) -> String {
        match self.protocol {
            crate::ocpp::station::Protocol::V201 => crate::ocpp::rpc::encode_error(id, error),
            crate::ocpp::station::Protocol::V16 => {
                crate::ocpp::rpc::encode_error_as(id, super::call_error_code(error.code), error)
            }
        }
    }

    /// Start-up: the transactionIds of transactions that still have messages to send, or are
    /// still open (the start-up ends them: their StopTransaction needs the id).
    pub(crate) fn restore16(&mut self, persisted: &Persisted) {
        self.link16.statuses = vec![None; self.model.evses.len() + 1];
        let Some(record) = self.restore_record::<Transactions16>(persisted) else {
            return;
        };
        let before = record.transactions.len();
        self.link16.transactions = record
            .transactions
            .into_iter()
            .filter(|(tx, _)| {
                self.link.outbox.has_messages_for(tx)
                    || persisted.transactions.iter().any(|t| &t.tx_id == tx)
            })
            .collect();
        if self.link16.transactions.len() != before {
            self.persist_transactions16();
        }
        if !self.link16.transactions.is_empty() {
            info!(
                transactions = self.link16.transactions.len(),
                "1.6 transactionIds restored"
            );
        }
    }

    fn persist_transactions16(&mut self) {
        let op = if self.link16.transactions.is_empty() {
            PersistOp::record::<Transactions16>(None)
        } else {
            PersistOp::record(Some(&Transactions16 {
                transactions: self.link16.transactions.clone(),
            }))
        };
        self.persist(vec![op]);
    }

    /// 1.6 has one transaction per charging session that starts when the driver is
    /// authorized and the EV plugged in, both (StartTransaction carries the idTag). It ends
    /// when the driver is no longer authorized; an unplugged EV ends it only with
    /// StopTransactionOnEVSideDisconnect (which then ends the authorization). Set after the
    /// journal's values, which a 2.0.1 CSMS may have set before a switch.
    pub(crate) fn transaction_points16(&mut self) {
        for (key, value) in [
            ("TxCtrlr.TxStartPoint", "PowerPathClosed"),
            ("TxCtrlr.TxStopPoint", "Authorized"),
        ] {
            if let Some(i) = crate::ocpp::devmodel::DeviceModel::lookup(key) {
                self.vars.set_index(i, value);
            }
        }
    }

    /// A 1.6 call the link answers itself.
    pub(crate) fn link_request16(&mut self, now: Instant, request: LinkRequest) -> Value {
        match request {
            LinkRequest::ReportStatuses { connectors } => {
                // Triggered, so they go out while Pending too (4.2).
                self.queue_station_status16(now, true);
                if connectors {
                    for index in 0..self.model.connectors.len() {
                        self.queue_status_triggered(now, index);
                    }
                }
            }
            LinkRequest::Boot if self.is_accepted() => self.trigger_boot_when_accepted(),
            LinkRequest::Boot => self.trigger_boot(),
        }
        json!({ "status": "Accepted" })
    }

    /// A 1.6 call is about to go to the blocks as a 2.0.1 call: a Reset notes its kind for
    /// the transactions it ends (see `annotate16`).
    pub(crate) fn calling16(&mut self, action: Action, payload: &Value) {
        if action == Action::Reset {
            self.link16.reset = Some(if payload["type"] == "Soft" {
                "Soft"
            } else {
                "Hard"
            });
        }
    }

    /// ... and the blocks have answered it.
    pub(crate) fn called16(&mut self) {
        self.link16.reset = None;
    }

    /// What a durable 2.0.1 message of ours needs for its 1.6 spelling, in its customData: the
    /// 1.6 reason of a transaction a 1.6 Reset ended.
    pub(crate) fn annotate16(&self, action: v201::Action, payload: &mut Value) {
        if let (v201::Action::TransactionEvent, Some(kind)) = (action, self.link16.reset) {
            if payload["transactionInfo"]["stoppedReason"] == "ImmediateReset" {
                let reason = if kind == "Soft" {
                    "SoftReset"
                } else {
                    "HardReset"
                };
                payload["customData"] =
                    json!({ "vendorId": core_profile::VENDOR, "reason": reason });
            }
        }
    }

    /// The 1.6 transactionId the CSMS gave our transaction `tx`, once it did.
    pub(crate) fn transaction16_id(&self, tx: &str) -> Option<i64> {
        self.link16.transactions.get(tx).and_then(|t| t.id)
    }

    /// Runs `f` with what the 1.6 translations may look up.
    pub(crate) fn lookup16<R>(&self, f: impl FnOnce(&Lookup) -> R) -> R {
        let transactions = &self.link16.transactions;
        let model = &self.model;
        let local_tx = |id: i64| {
            transactions
                .iter()
                .find(|(tx, t)| {
                    t.id == Some(id)
                        && model
                            .evses
                            .iter()
                            .any(|e| e.active_transaction.as_ref().is_some_and(|a| &a.id == *tx))
                })
                .map(|(tx, _)| tx.clone())
        };
        let tx16 = |tx: &str| transactions.get(tx).and_then(|t| t.id);
        let transaction = |tx: &str| transactions.get(tx).cloned();
        let evse_tx = |evse: u32| {
            let idx = model.evse_index(evse)?;
            model.evses[idx]
                .active_transaction
                .as_ref()
                .map(|a| a.id.clone())
        };
        f(&Lookup {
            evses: self.model.evses.len() as u32,
            local_tx: &local_tx,
            tx16: &tx16,
            transaction: &transaction,
            evse_tx: &evse_tx,
            unsigned_firmware: self.link16.unsigned_firmware,
        })
    }

    /// The 1.6 message for a 2.0.1 message of ours, `None` when 1.6 has none.
    pub(crate) fn outgoing16(
        &mut self,
        action: v201::Action,
        payload: &Value,
    ) -> Option<(Action, Value)> {
        match self.lookup16(|lk| adapter::outgoing(action, payload, lk)) {
            Outbound::Skip => None,
            Outbound::Send { action, payload } => {
                debug_assert!(
                    crate::ocpp::validate::validate(action.request_schema(), &payload).is_ok(),
                    "we built an invalid 1.6 {} payload: {payload}",
                    action.as_str()
                );
                Some((action, payload))
            }
        }
    }

    /// Notes a StartTransaction about to be sent for our transaction `tx`.
    pub(crate) fn starting16(&mut self, tx: &str, start: &Value) {
        // A StartTransaction sent again (its answer lost, or not in the journal yet at a power
        // cut) keeps the id already given until a new answer brings another.
        let id = self.link16.transactions.get(tx).and_then(|t| t.id);
        let entry = Tx16 {
            evse: start["connectorId"].as_u64().unwrap_or(0) as u32,
            meter_start_wh: start["meterStart"].as_i64().unwrap_or(0),
            id,
        };
        self.link16.transactions.insert(tx.to_owned(), entry);
    }

    /// The CSMS's answer to a 1.6 message of ours, in the 2.0.1 shape the block that made the
    /// message reads. A StartTransaction's transactionId is kept (durably, before anything
    /// that follows is sent); a delivered StopTransaction forgets it.
    pub(crate) fn answer16(
        &mut self,
        tx: Option<&str>,
        sent: Action,
        request: &Value,
        answer: Value,
    ) -> Result<Value, Violation> {
        let id = answer["transactionId"].as_i64();
        let translated = adapter::answer_to_v201(sent, request, answer)?;
        match (sent, tx) {
            (Action::StartTransaction, Some(tx)) => {
                let entry = self
                    .link16
                    .transactions
                    .entry(tx.to_owned())
                    .or_insert_with(|| Tx16 {
                        evse: request["connectorId"].as_u64().unwrap_or(0) as u32,
                        meter_start_wh: request["meterStart"].as_i64().unwrap_or(0),
                        id: None,
                    });
                entry.id = id;
                info!(
                    transaction_id = tx,
                    id16 = id,
                    "the CSMS gave the transaction its id"
                );
                self.persist_transactions16();
            }
            (Action::StopTransaction, Some(tx))
                if self.link16.transactions.remove(tx).is_some() =>
            {
                self.persist_transactions16();
            }
            _ => {}
        }
        Ok(translated)
    }

    /// The customData of a StatusNotification of ours: its connector's status in 1.6, noted
    /// as the last queued.
    pub(crate) fn status_data16(&mut self, connector_index: usize) -> Option<Value> {
        let evse = self.model.connectors[connector_index].evse;
        let idx = self.model.evse_index(evse)?;
        let status = core_profile::evse_status(&self.model, &self.vars, idx);
        let data = core_profile::status_data(evse, status.0, status.1, status.2.as_deref());
        if let Some(slot) = self.link16.statuses.get_mut(idx + 1) {
            *slot = Some(status);
        }
        Some(data)
    }

    /// Whether a connector's 1.6 status differs from the one last queued.
    pub(crate) fn status_changed16(&self, connector_index: usize) -> bool {
        let evse = self.model.connectors[connector_index].evse;
        let Some(idx) = self.model.evse_index(evse) else {
            return false;
        };
        let status = core_profile::evse_status(&self.model, &self.vars, idx);
        self.link16.statuses.get(idx + 1) != Some(&Some(status))
    }

    /// 1.6 reports every status change of a connector (4.9), including those 2.0.1 sees as
    /// one (Preparing, Charging, SuspendedEV, Finishing are all Occupied there), and of
    /// connector 0: queues a StatusNotification for each that differs from the last queued.
    pub(crate) fn sync_statuses16(&mut self, now: Instant) {
        if !self.can_send_normal() {
            return;
        }
        let station = core_profile::station_status(&self.model, &self.vars);
        if self.link16.statuses.first() != Some(&Some((station, "NoError", None))) {
            self.queue_station_status16(now, false);
        }
        for idx in 0..self.model.evses.len() {
            let status = core_profile::evse_status(&self.model, &self.vars, idx);
            if self.link16.statuses.get(idx + 1) == Some(&Some(status)) {
                continue;
            }
            let evse = self.model.evses[idx].id;
            if let Some(ci) = self.model.connectors.iter().position(|c| c.evse == evse) {
                self.queue_status(now, ci);
            }
        }
    }

    /// A StatusNotification of connector 0, the charge point as a whole.
    fn queue_station_status16(&mut self, now: Instant, triggered: bool) {
        let station = core_profile::station_status(&self.model, &self.vars);
        self.link16.statuses[0] = Some((station, "NoError", None));
        let payload = json!({
            "timestamp": self.clock.utc(now).to_rfc3339(),
            "connectorStatus": station,
            "evseId": 0,
            "connectorId": 0,
            "customData": core_profile::status_data(0, station, "NoError", None),
        });
        let kind = RequestKind::Other(v201::Action::StatusNotification);
        if triggered {
            self.enqueue_triggered(kind, v201::Action::StatusNotification, payload);
        } else {
            self.enqueue(kind, v201::Action::StatusNotification, payload);
        }
    }

    /// What was queued is lost with the connection: every status goes out again.
    pub(crate) fn forget_statuses16(&mut self) {
        for s in &mut self.link16.statuses {
            *s = None;
        }
    }

    /// The frame of a queued (journal) message of ours: 2.0.1 as stored, or its 1.6
    /// translation; `None` when 1.6 has no such message.
    pub(crate) fn queued_frame16(
        &mut self,
        message_id: &str,
        action: &str,
        tx: Option<&str>,
        payload: &Value,
    ) -> Option<String> {
        let Some(known) = v201::Action::from_name(action) else {
            warn!(action, "queued message of an unknown action; not sent");
            return None;
        };
        let (action16, payload16) = self.outgoing16(known, payload)?;
        if let (Action::StartTransaction, Some(tx)) = (action16, tx) {
            self.starting16(tx, &payload16);
        }
        let frame = crate::ocpp::rpc::encode_call(message_id, action16.as_str(), &payload16);
        self.set_sent16(message_id, action16, payload16);
        Some(frame)
    }
}
