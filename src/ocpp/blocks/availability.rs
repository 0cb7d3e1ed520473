//! Availability (G01, G03, G04) and hardware faults: ChangeAvailability for the station, an
//! EVSE or a connector, persistent and scheduled while transactions run; Faulted connectors
//! and their NotifyEvent (Connector.Problem). The flags live in the shared model, since every
//! block's decisions depend on them; this block is the only one that changes them.

use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::{CoreEvent, Ctx};
use crate::ocpp::model::ConnectorStatus;
use crate::ocpp::persist::{PersistOp, Persisted};
use crate::ocpp::rpc::CallError;
use crate::ocpp::session::RequestKind;
use crate::ocpp::v201::id32;
use crate::ocpp::v201::{self, Action};
use serde_json::json;
use tracing::{info, warn};

const META_AVAILABILITY: &str = "availability:";

/// What a ChangeAvailability addresses, and to which state.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityChange {
    pub evse: Option<u32>,
    pub connector: Option<u32>,
    pub operative: bool,
}

impl AvailabilityChange {
    fn meta_key(&self) -> String {
        match (self.evse, self.connector) {
            (None, _) => format!("{META_AVAILABILITY}station"),
            (Some(e), None) => format!("{META_AVAILABILITY}evse:{e}"),
            (Some(e), Some(c)) => format!("{META_AVAILABILITY}connector:{e}:{c}"),
        }
    }
}

/// The availability block.
#[derive(Debug)]
pub struct Availability {
    /// Availability changes waiting for transactions to end (G03.FR.05, G04.FR.06).
    scheduled: Vec<AvailabilityChange>,
    /// Sequence for NotifyEvent eventIds.
    next_event_id: i64,
}

impl Availability {
    /// Start-up: the availability the journal holds (G03.FR.08: it survives restarts).
    pub(crate) fn restore(cx: &mut Ctx, persisted: &Persisted) -> Self {
        for (key, _) in &persisted.meta {
            let Some(target) = key.strip_prefix(META_AVAILABILITY) else {
                continue;
            };
            let model = &mut cx.model;
            let parts: Vec<&str> = target.split(':').collect();
            match parts.as_slice() {
                ["station"] => model.station_operative = false,
                ["evse", e] => {
                    if let Some(idx) = e.parse().ok().and_then(|e| model.evse_index(e)) {
                        model.evses[idx].operative = false;
                    }
                }
                ["connector", e, c] => {
                    let index = match (e.parse(), c.parse()) {
                        (Ok(e), Ok(c)) => model.connector_index(e, c),
                        _ => None,
                    };
                    if let Some(index) = index {
                        model.connectors[index].operative = false;
                    }
                }
                _ => warn!(key, "ignoring an unknown availability record"),
            }
        }
        Availability {
            scheduled: Vec::new(),
            next_event_id: 1,
        }
    }

    /// G03/G04: ChangeAvailability.
    pub(crate) fn change_availability(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::ChangeAvailabilityRequest,
    ) -> Result<v201::ChangeAvailabilityResponse, CallError> {
        let operative = request.operational_status == v201::OperationalStatusEnum::Operative;
        let evse = request.evse.as_ref().map(|e| id32(e.id));
        let connector = request.evse.as_ref().and_then(|e| e.connector_id).map(id32);
        let rejected = |why: &str| {
            info!(reason = why, "ChangeAvailability rejected");
            Ok(v201::ChangeAvailabilityResponse {
                custom_data: None,
                status: v201::ChangeAvailabilityStatusEnum::Rejected,
                status_info: None,
            })
        };
        // EVSE id 0 means the whole station.
        let evse = evse.filter(|e| *e != 0);
        if let Some(e) = evse {
            let Some(idx) = cx.model.evse_index(e) else {
                return rejected("no such EVSE");
            };
            if let Some(c) = connector {
                if !cx
                    .model
                    .connectors
                    .iter()
                    .any(|x| x.evse == cx.model.evses[idx].id && x.id == c)
                {
                    return rejected("no such connector");
                }
            }
        }
        let change = AvailabilityChange {
            evse,
            connector,
            operative,
        };
        // G03.FR.05 / G04.FR.06: wait for transactions in the scope when going Inoperative.
        let busy = !operative && cx.model.busy(evse, connector);
        let status = if busy {
            self.scheduled
                .retain(|c| (c.evse, c.connector) != (evse, connector));
            self.scheduled.push(change);
            v201::ChangeAvailabilityStatusEnum::Scheduled
        } else {
            self.apply(cx, now, change);
            v201::ChangeAvailabilityStatusEnum::Accepted
        };
        Ok(v201::ChangeAvailabilityResponse {
            custom_data: None,
            status,
            status_info: None,
        })
    }

    /// Applies an availability change, persists it (G03.FR.08), and reports the connectors
    /// whose status changed (G03.FR.04, G04.FR.05).
    fn apply(&mut self, cx: &mut Ctx, now: Instant, change: AvailabilityChange) {
        let before: Vec<ConnectorStatus> = (0..cx.model.connectors.len())
            .map(|i| cx.model.connector_status(i, &cx.vars))
            .collect();
        match (change.evse, change.connector) {
            (None, _) => cx.model.station_operative = change.operative,
            (Some(e), None) => {
                if let Some(idx) = cx.model.evse_index(e) {
                    cx.model.evses[idx].operative = change.operative;
                }
            }
            (Some(e), Some(c)) => {
                if let Some(conn) = cx
                    .model
                    .connectors
                    .iter_mut()
                    .find(|x| x.evse == e && x.id == c)
                {
                    conn.operative = change.operative;
                }
            }
        }
        info!(
            evse = change.evse,
            connector = change.connector,
            operative = change.operative,
            "availability changed"
        );
        let op = if change.operative {
            PersistOp::DeleteMeta {
                key: change.meta_key(),
            }
        } else {
            PersistOp::PutMeta {
                key: change.meta_key(),
                value: "Inoperative".into(),
            }
        };
        cx.persist(vec![op]);
        for (index, previous) in before.into_iter().enumerate() {
            if cx.model.connector_status(index, &cx.vars) != previous && cx.can_send_normal() {
                cx.queue_status(now, index);
            }
        }
        // An EVSE that became inoperative stops offering energy.
        cx.emit(CoreEvent::AvailabilityChanged);
    }

    /// A connector's hardware failed or recovered: Faulted status and a NotifyEvent on its
    /// `Problem` variable.
    pub(crate) fn connector_fault(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        index: usize,
        problem: Option<String>,
    ) {
        if cx.model.connectors[index].fault == problem {
            return;
        }
        let (evse, connector) = (
            cx.model.connectors[index].evse,
            cx.model.connectors[index].id,
        );
        warn!(
            evse,
            connector,
            problem = problem.as_deref(),
            "connector hardware problem changed"
        );
        cx.model.connectors[index].fault = problem;
        if cx.can_send_normal() {
            cx.queue_status(now, index);
            self.report_faults(cx, now);
        }
        cx.emit(CoreEvent::FaultChanged { evse });
    }

    /// NotifyEvent (Connector.Problem, Delta) for every connector whose problem state differs
    /// from what the CSMS was last told: at once while connected, else after acceptance or
    /// reconnection.
    pub(crate) fn report_faults(&mut self, cx: &mut Ctx, now: Instant) {
        for index in 0..cx.model.connectors.len() {
            let c = &cx.model.connectors[index];
            let active = c.fault.is_some();
            if active == c.fault_reported {
                continue;
            }
            let (evse, connector, problem) = (c.evse, c.id, c.fault.clone());
            cx.model.connectors[index].fault_reported = active;
            let event_id = self.next_event_id;
            self.next_event_id += 1;
            let mut event = json!({
                "eventId": event_id,
                "timestamp": cx.clock.utc(now).to_rfc3339(),
                "trigger": "Delta",
                "actualValue": if active { "true" } else { "false" },
                "eventNotificationType": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": evse, "connectorId": connector}},
                "variable": {"name": "Problem"},
            });
            if let Some(p) = &problem {
                event["techCode"] = json!("HardwareFault");
                event["techInfo"] = json!(p.chars().take(500).collect::<String>());
            }
            let payload = json!({
                "generatedAt": cx.clock.utc(now).to_rfc3339(),
                "seqNo": 0,
                "eventData": [event],
            });
            cx.enqueue(
                RequestKind::NotifyEvent {
                    connector: index,
                    problem: active,
                },
                Action::NotifyEvent,
                payload,
            );
        }
    }

    /// Transactions ended: apply the availability changes that waited for them.
    pub(crate) fn apply_waiting(&mut self, cx: &mut Ctx, now: Instant) {
        let waiting = std::mem::take(&mut self.scheduled);
        for change in waiting {
            let busy = cx.model.busy(change.evse, change.connector);
            if busy {
                self.scheduled.push(change);
            } else {
                self.apply(cx, now, change);
            }
        }
    }
}
