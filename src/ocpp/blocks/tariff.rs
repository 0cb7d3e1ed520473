//! Tariff and cost (functional block I): what the driver at each EVSE is to be shown of the
//! price: their tariff before and during the session (the CSMS's personal message, I01/I06, or
//! TariffFallbackMessage when there is none or the station is offline, I04), the running cost
//! (CostUpdated or a TransactionEventResponse, I02) and the final cost at the end (I03, or
//! TotalCostFallbackMessage when the station ended offline, I05).
//!
//! The station has no screen of its own: the integrator's HMI reads this through `ctl status`,
//! `ctl display` and `ctl watch`. Nothing here is durable: after a restart the CSMS's next
//! answers tell it again.

use crate::ocpp::ctx::Ctx;
use crate::ocpp::devmodel::Var;
use crate::ocpp::model::MessageContent;
use serde::Serialize;
use tracing::info;

/// What one EVSE's driver is shown of the price.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriverPrice {
    /// Their tariff (I01, I06), or the fallback (I04).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tariff: Option<MessageContent>,
    /// The session's cost so far, or its total once `cost_final` (in `currency`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    pub cost_final: bool,
    pub currency: String,
    /// The transaction ended offline: its cost is not known here (I05.FR.02).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_fallback: Option<MessageContent>,
    #[serde(skip_serializing)]
    transaction_id: Option<String>,
    /// The driver's preferred languages (language1, language2), for their screen (C01.FR.08).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// The session ended: only its total (or the fallback) is left, until the next one.
    #[serde(skip_serializing)]
    ended: bool,
}

impl DriverPrice {
    fn is_empty(&self) -> bool {
        self.tariff.is_none()
            && self.cost.is_none()
            && self.cost_fallback.is_none()
            && self.languages.is_empty()
    }
}

/// The tariff-and-cost block.
#[derive(Debug, Default)]
pub struct TariffCost {
    /// Per EVSE (model index).
    evses: Vec<DriverPrice>,
}

fn fallback(cx: &Ctx, var: Var) -> Option<MessageContent> {
    let text = cx.vars.get(var);
    (!text.is_empty()).then(|| MessageContent {
        format: "UTF8".into(),
        language: None,
        content: text.to_owned(),
    })
}

impl TariffCost {
    pub(crate) fn new(evses: usize) -> Self {
        TariffCost {
            evses: vec![DriverPrice::default(); evses],
        }
    }

    fn tariff_on(cx: &Ctx) -> bool {
        cx.vars.bool(Var::TariffEnabled) && cx.vars.bool(Var::TariffAvailable)
    }

    fn cost_on(cx: &Ctx) -> bool {
        cx.vars.bool(Var::CostEnabled) && cx.vars.bool(Var::CostAvailable)
    }

    /// A driver was authorized at the EVSE: a new session, with the personal message the CSMS
    /// gave with the authorization (I01.FR.03), or the fallback (I04.FR.01).
    pub(crate) fn session_authorized(
        &mut self,
        cx: &Ctx,
        idx: usize,
        personal_message: Option<MessageContent>,
        languages: Vec<String>,
    ) {
        let Some(price) = self.evses.get_mut(idx) else {
            return;
        };
        // The last session's final cost is not this driver's.
        let transaction_id = cx.model.evses[idx]
            .active_transaction
            .as_ref()
            .map(|t| t.id.clone());
        *price = DriverPrice {
            transaction_id,
            languages,
            ..Default::default()
        };
        if Self::tariff_on(cx) {
            price.tariff = personal_message.or_else(|| fallback(cx, Var::TariffFallbackMessage));
        }
        if let Some(t) = &price.tariff {
            info!(
                evse = cx.model.evses[idx].id,
                tariff = t.content.as_str(),
                "driver's tariff"
            );
        }
    }

    /// A transaction started at the EVSE: later costs name it. A new session unless the
    /// driver was authorized for it just before: nothing of the last driver's is shown.
    pub(crate) fn transaction_started(&mut self, cx: &Ctx, idx: usize) {
        let id = cx.model.evses[idx]
            .active_transaction
            .as_ref()
            .map(|t| t.id.clone());
        if let Some(price) = self.evses.get_mut(idx) {
            if price.ended || price.transaction_id.is_some() && price.transaction_id != id {
                *price = DriverPrice::default();
            }
            price.transaction_id = id;
        }
    }

    /// A transaction ended at the EVSE: the tariff and the running cost go; the total comes
    /// with the answer to the Ended event, or, offline, cannot come: the fallback message says
    /// so (I05.FR.02).
    pub(crate) fn transaction_ended(&mut self, cx: &Ctx, idx: usize) {
        let online = cx.can_send_normal();
        let Some(price) = self.evses.get_mut(idx) else {
            return;
        };
        price.ended = true;
        price.tariff = None;
        price.languages.clear();
        price.cost = None;
        price.cost_final = false;
        if !online && Self::cost_on(cx) {
            price.cost_final = true;
            price.cost_fallback = fallback(cx, Var::TotalCostFallbackMessage);
        }
    }

    fn evse_of(&self, transaction_id: &str) -> Option<usize> {
        self.evses
            .iter()
            .position(|p| p.transaction_id.as_deref() == Some(transaction_id))
    }

    /// I02: CostUpdated, the running cost of a transaction. False if no EVSE has it.
    pub(crate) fn cost_updated(&mut self, cx: &Ctx, transaction_id: &str, total: f64) -> bool {
        let Some(idx) = self.evse_of(transaction_id) else {
            return false;
        };
        if Self::cost_on(cx) && !self.evses[idx].ended {
            self.evses[idx].cost = Some(total);
            info!(evse = cx.model.evses[idx].id, cost = total, "running cost");
        }
        true
    }

    /// A TransactionEventResponse: the running cost (I02.FR.04) or, answering the Ended event,
    /// the total (I03.FR.03); an updated tariff (I06.FR.03).
    pub(crate) fn transaction_answer(
        &mut self,
        cx: &Ctx,
        transaction_id: &str,
        ended: bool,
        total_cost: Option<f64>,
        message: Option<MessageContent>,
    ) {
        let Some(idx) = self.evse_of(transaction_id) else {
            return;
        };
        let currency = cx.vars.get(Var::Currency).to_owned();
        let evse = cx.model.evses[idx].id;
        let price = &mut self.evses[idx];
        if price.ended && !ended {
            return; // a late answer to an Updated event of a session that is over
        }
        if let (Some(total), true) = (total_cost, Self::cost_on(cx)) {
            price.cost = Some(total);
            price.cost_final = ended;
            price.cost_fallback = None;
            info!(
                evse,
                cost = total,
                currency,
                total = ended,
                "transaction cost"
            );
        }
        if let (Some(m), true, false) = (message, Self::tariff_on(cx), price.ended) {
            price.tariff = Some(m);
        }
    }

    /// What the driver at the EVSE is shown, if anything.
    pub(crate) fn price(&self, cx: &Ctx, idx: usize) -> Option<DriverPrice> {
        let price = self.evses.get(idx)?;
        (!price.is_empty()).then(|| DriverPrice {
            currency: cx.vars.get(Var::Currency).to_owned(),
            ..price.clone()
        })
    }
}
