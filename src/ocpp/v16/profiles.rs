//! The 1.6 profiles besides Core and Remote Trigger, spelled in 2.0.1 for the blocks:
//! Firmware Management and diagnostics (`firmware`), Local Auth List Management and
//! Reservation (`local`), Smart Charging (`smart`) and the security whitepaper
//! (edition 3) messages (`security`; its GetLog, SignedUpdateFirmware and status
//! notifications are with firmware).
//!
//! Shared conventions:
//! * 1.6 connectorId N is our EVSE N (one connector each), 0 is the station; an id we do not
//!   have is answered here as the block would refuse it.
//! * Every 1.6 idTag is an idToken of type `Central`, in the local list, reservations and
//!   wherever a 1.6 token is presented, so that the blocks compare like with like.
//! * requestIds below 0 are ours (see `firmware`): they mark a firmware update or log
//!   upload that a 1.6 core message (UpdateFirmware, GetDiagnostics) started.

mod firmware;
mod local;
mod security;
mod smart;
#[cfg(all(test, feature = "testkit"))]
mod with_blocks;

use super::Action;
use super::adapter::{Inbound, Lookup, Outbound};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v201;
use serde_json::{Value, json};

/// The idToken type of every 1.6 idTag (see `core_profile::TOKEN_TYPE`).
pub const ID_TAG_TYPE: &str = super::core_profile::TOKEN_TYPE;

pub(super) use smart::charging_profile;

/// A 1.6 call of this module's actions as a 2.0.1 call or an answer; `None`: not one of them.
pub fn request(action: Action, payload: &Value, lk: &Lookup) -> Option<Result<Inbound, CallError>> {
    firmware::request(action, payload, lk)
        .or_else(|| local::request(action, payload, lk))
        .or_else(|| smart::request(action, payload, lk))
        .or_else(|| security::request(action, payload, lk))
}

/// The 1.6 answer to a call `request` of `action` from the block's 2.0.1 `answer`.
pub fn response(action: Action, request: &Value, answer: &Value, lk: &Lookup) -> Option<Value> {
    let _ = lk;
    firmware::response(action, answer)
        .or_else(|| local::response(action, answer))
        .or_else(|| smart::response(action, request, answer))
        .or_else(|| security::response(action, answer))
}

/// The 1.6 message for a 2.0.1 message of ours that this module spells.
pub fn outgoing(action: v201::Action, payload: &Value, lk: &Lookup) -> Option<Outbound> {
    let _ = lk;
    use v201::Action as A;
    match action {
        A::FirmwareStatusNotification | A::LogStatusNotification => {
            Some(firmware::outgoing(action, payload))
        }
        A::SignCertificate | A::SecurityEventNotification => security::outgoing(action, payload),
        // 1.6 has no such message.
        A::NotifyReport
        | A::NotifyEvent
        | A::NotifyMonitoringReport
        | A::NotifyDisplayMessages
        | A::NotifyChargingLimit
        | A::ClearedChargingLimit
        | A::ReportChargingProfiles
        | A::NotifyCustomerInformation
        | A::ReservationStatusUpdate
        | A::NotifyEVChargingNeeds
        | A::NotifyEVChargingSchedule
        | A::PublishFirmwareStatusNotification => Some(Outbound::Skip),
        _ => None,
    }
}

/// The 2.0.1 shape of the CSMS's answer to a 1.6 message of this module we sent.
pub fn answer_to_v201(sent: Action, request: &Value, answer: &Value) -> Option<Value> {
    let _ = request;
    match sent {
        // Empty answers in both versions.
        Action::SecurityEventNotification
        | Action::SignedFirmwareStatusNotification
        | Action::LogStatusNotification
        | Action::FirmwareStatusNotification
        | Action::DiagnosticsStatusNotification => Some(json!({})),
        _ => security::answer_to_v201(sent, answer),
    }
}

/// Where a 1.6 connectorId points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connector {
    /// 0: the station as a whole.
    Station,
    Evse(u32),
    /// Negative or above our EVSEs.
    Unknown,
}

fn connector(id: i64, lk: &Lookup) -> Connector {
    match u32::try_from(id) {
        Ok(0) => Connector::Station,
        Ok(n) if n <= lk.evses => Connector::Evse(n),
        _ => Connector::Unknown,
    }
}

/// The 2.0.1 call `action` with `payload`.
fn call(action: v201::Action, payload: Value) -> Option<Result<Inbound, CallError>> {
    Some(Ok(Inbound::Call { action, payload }))
}

/// The 1.6 answer, made without asking a block.
fn answer(payload: Value) -> Option<Result<Inbound, CallError>> {
    Some(Ok(Inbound::Answer(payload)))
}

/// `{"status": ...}` of a 2.0.1 answer whose 1.6 twin has only the status (no statusInfo).
fn status_only(answer: &Value) -> Value {
    json!({ "status": answer["status"] })
}

/// Copies `from[key]`, when present, to `to[as_key]`.
fn copy(from: &Value, key: &str, to: &mut Value, as_key: &str) {
    if let Some(v) = from.get(key) {
        to[as_key] = v.clone();
    }
}

/// A 1.6 idTag as a 2.0.1 IdTokenType.
fn id_token(id_tag: &Value) -> Value {
    json!({ "idToken": id_tag, "type": ID_TAG_TYPE })
}

#[cfg(test)]
mod testkit {
    use super::super::Action;
    use super::super::adapter::{Inbound, Lookup};
    use crate::ocpp::v201;
    use serde_json::{Value, json};

    /// Two EVSEs; the CSMS's transaction 42 is our "tx-a".
    pub fn with_lookup<R>(f: impl FnOnce(&Lookup) -> R) -> R {
        let local_tx = |id: i64| (id == 42).then(|| "tx-a".to_owned());
        let tx16 = |tx: &str| (tx == "tx-a").then_some(42);
        f(&Lookup {
            evses: 2,
            local_tx: &local_tx,
            tx16: &tx16,
            transaction: &|_| None,
            evse_tx: &|_| None,
            unsigned_firmware: true,
        })
    }

    pub fn valid16_request(action: Action, payload: &Value) {
        if let Err(v) = crate::ocpp::validate::validate(action.request_schema(), payload) {
            panic!("invalid 1.6 {action:?} request {payload}: {v:?}");
        }
    }

    pub fn valid16_response(action: Action, payload: &Value) {
        if let Err(v) = crate::ocpp::validate::validate(action.response_schema(), payload) {
            panic!("invalid 1.6 {action:?} response {payload}: {v:?}");
        }
    }

    pub fn valid201_request(action: v201::Action, payload: &Value) {
        if let Err(v) = v201::validate::validate(action.request_schema(), payload) {
            panic!("invalid 2.0.1 {action:?} request {payload}: {v:?}");
        }
    }

    pub fn valid201_response(action: v201::Action, payload: &Value) {
        if let Err(v) = v201::validate::validate(action.response_schema(), payload) {
            panic!("invalid 2.0.1 {action:?} response {payload}: {v:?}");
        }
    }

    /// A valid 1.6 request through [`super::request`]: what it becomes.
    pub fn inbound(action: Action, payload: Value) -> Inbound {
        valid16_request(action, &payload);
        let inbound = with_lookup(|lk| super::request(action, &payload, lk))
            .expect("one of this module's actions")
            .expect("translated");
        match &inbound {
            Inbound::Call { action, payload } => valid201_request(*action, payload),
            Inbound::Answer(answer) => valid16_response(action, answer),
            Inbound::Link(_) => {}
        }
        inbound
    }

    /// A 1.6 request that must become the 2.0.1 call `to`: its payload.
    pub fn call(action: Action, payload: Value, to: v201::Action) -> Value {
        match inbound(action, payload) {
            Inbound::Call { action, payload } if action == to => payload,
            other => panic!("expected a {to:?} call, got {other:?}"),
        }
    }

    /// A 1.6 request answered without a block: the answer.
    pub fn answered(action: Action, payload: Value) -> Value {
        match inbound(action, payload) {
            Inbound::Answer(answer) => answer,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    /// The 1.6 answer to `request` from a (valid) 2.0.1 answer of `to`, checked valid.
    pub fn response(action: Action, request: &Value, to: v201::Action, answer: Value) -> Value {
        valid201_response(to, &answer);
        let out = with_lookup(|lk| super::response(action, request, &answer, lk))
            .expect("this module answers it");
        valid16_response(action, &out);
        out
    }

    /// Each 2.0.1 answer status of `to` (with a statusInfo 1.6 has no room for) gives the 1.6
    /// answer with the same status.
    pub fn statuses_pass(action: Action, request: &Value, to: v201::Action, statuses: &[&str]) {
        for status in statuses {
            let out = response(
                action,
                request,
                to,
                json!({"status": status, "statusInfo": {"reasonCode": "X"}}),
            );
            assert_eq!(out, json!({ "status": status }), "{action:?} {status}");
        }
    }

    /// Our 2.0.1 message as it goes to a 1.6 CSMS: `(action, payload)`, None when skipped.
    pub fn outgoing(action: v201::Action, payload: Value) -> Option<(Action, Value)> {
        valid201_request(action, &payload);
        match with_lookup(|lk| super::outgoing(action, &payload, lk)) {
            Some(super::Outbound::Send { action, payload }) => {
                valid16_request(action, &payload);
                Some((action, payload))
            }
            Some(super::Outbound::Skip) => None,
            None => panic!("{action:?} is not this module's"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{outgoing, with_lookup};
    use super::*;

    #[test]
    fn connector_ids() {
        with_lookup(|lk| {
            assert_eq!(connector(0, lk), Connector::Station);
            assert_eq!(connector(1, lk), Connector::Evse(1));
            assert_eq!(connector(2, lk), Connector::Evse(2));
            assert_eq!(connector(3, lk), Connector::Unknown);
            assert_eq!(connector(-1, lk), Connector::Unknown);
            assert_eq!(connector(i64::MAX, lk), Connector::Unknown);
        });
    }

    /// Through the adapter: the other modules leave these actions to this one.
    #[test]
    fn the_adapter_reaches_this_module() {
        use super::super::adapter;
        with_lookup(|lk| {
            let (action, inbound) = adapter::request(
                "ReserveNow",
                json!({"connectorId": 1, "expiryDate": "2026-12-06T23:00:00Z",
                       "idTag": "T", "reservationId": 1}),
                lk,
            )
            .unwrap();
            assert_eq!(action, Action::ReserveNow);
            assert!(matches!(
                inbound,
                Inbound::Call {
                    action: v201::Action::ReserveNow,
                    ..
                }
            ));
            let out = adapter::outgoing(
                v201::Action::FirmwareStatusNotification,
                &json!({"status": "Installed", "requestId": 3}),
                lk,
            );
            assert_eq!(
                out,
                Outbound::Send {
                    action: Action::SignedFirmwareStatusNotification,
                    payload: json!({"status": "Installed", "requestId": 3}),
                }
            );
            let answer = adapter::response(
                Action::GetLocalListVersion,
                &json!({}),
                json!({"versionNumber": 3}),
                lk,
            );
            assert_eq!(answer, json!({"listVersion": 3}));
        });
    }

    #[test]
    fn messages_1_6_lacks_are_skipped() {
        let cases = [
            (
                v201::Action::ReservationStatusUpdate,
                json!({"reservationId": 1, "reservationUpdateStatus": "Expired"}),
            ),
            (
                v201::Action::ClearedChargingLimit,
                json!({"chargingLimitSource": "EMS"}),
            ),
            (
                v201::Action::NotifyEvent,
                json!({"generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0, "eventData": [{
                    "eventId": 1, "timestamp": "2026-01-01T00:00:00Z", "trigger": "Alerting",
                    "actualValue": "x", "eventNotificationType": "HardWiredNotification",
                    "component": {"name": "EVSE"}, "variable": {"name": "Problem"}}]}),
            ),
        ];
        for (action, payload) in cases {
            assert_eq!(outgoing(action, payload), None, "{action:?}");
        }
        // Core messages are not ours.
        with_lookup(|lk| {
            assert_eq!(
                super::outgoing(v201::Action::Heartbeat, &json!({}), lk),
                None
            );
            assert!(super::request(Action::Heartbeat, &json!({}), lk).is_none());
        });
    }
}
