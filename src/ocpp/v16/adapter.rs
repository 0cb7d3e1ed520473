//! The 1.6J side of the station: the blocks speak the protocol-neutral model and (for what is
//! spelled alike) the 2.0.1 messages; this adapter spells them in 1.6 on the wire.
//!
//! * A CSMS call in 1.6 ([`request`]): validated against its 1.6 schema (1.6 error codes), then
//!   either turned into the 2.0.1 call of the block that answers it ([`Inbound::Call`]), whose
//!   answer [`response`] spells back in 1.6, or answered here ([`Inbound::Answer`]) when 1.6
//!   asks something the blocks do not need to see.
//! * A message of ours ([`outgoing`]): the 2.0.1 message the core made (a volatile request
//!   when it is sent, a journal row when it leaves the queue) becomes its 1.6 message, or
//!   nothing when 1.6 has no such message ([`Outbound::Skip`]: delivered as far as the queue is
//!   concerned). Its answer comes back through [`answer_to_v201`].
//!
//! Each profile's translations live in their own module and are tried in turn: `core_profile`
//! (Core profile and Remote Trigger), `keys` (configuration keys), `profiles` (firmware,
//! diagnostics, local list, reservation, smart charging, security whitepaper).

use super::Action;
use crate::ocpp::rpc::{CallError, CallErrorCode};
use crate::ocpp::v201;
use serde_json::Value;

/// What a translation may look up in the station's state.
pub struct Lookup<'a> {
    /// EVSEs of the station: 1.6 connector ids 1..=evses (each EVSE has one connector in 1.6).
    pub evses: u32,
    /// Our transaction id of a 1.6 transactionId the CSMS assigned, if it is one of ours.
    pub local_tx: &'a dyn Fn(i64) -> Option<String>,
    /// The 1.6 transactionId the CSMS assigned to our transaction `tx`, once it did.
    pub tx16: &'a dyn Fn(&str) -> Option<i64>,
    /// What 1.6 knows of our transaction `tx` (sent as a StartTransaction).
    pub transaction: &'a dyn Fn(&str) -> Option<super::core_profile::Tx16>,
    /// Our open transaction on an EVSE (1.6 connector).
    pub evse_tx: &'a dyn Fn(u32) -> Option<String>,
    /// The integrator allows firmware without a signature (`[firmware] allow_unsigned`):
    /// 1.6's own UpdateFirmware is taken; else it is NotSupported (whitepaper L01.FR.20).
    pub unsigned_firmware: bool,
}

/// A 1.6 CSMS call, as the station will handle it.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The 2.0.1 call a block answers; [`response`] turns its answer into the 1.6 one.
    Call {
        action: v201::Action,
        payload: Value,
    },
    /// The 1.6 answer, made here.
    Answer(Value),
    /// Something of the link's own, which 2.0.1 does not ask for.
    Link(LinkRequest),
}

/// 1.6 calls the link answers itself (see `v16::link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRequest {
    /// TriggerMessage StatusNotification of connector 0, and of every connector when no
    /// connectorId was given (5.17; 2.0.1 triggers one connector only, F06.FR.12).
    ReportStatuses { connectors: bool },
    /// TriggerMessage BootNotification (5.17; once accepted 2.0.1 refuses it, F06.FR.17).
    Boot,
}

/// A message of ours, as it goes to a 1.6 CSMS.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Send {
        action: Action,
        payload: Value,
    },
    /// 1.6 has no such message: not sent, taken as delivered.
    Skip,
}

/// The CALLERROR of a 1.6 payload that failed its schema (OCPP-J 1.6, 4.2.3).
pub fn violation(v: crate::ocpp::validate::Violation) -> CallError {
    let code = CallErrorCode::from_name(v.kind.as_str()).unwrap_or(CallErrorCode::FormatViolation);
    CallError::new(code, format!("{}: {}", v.path, v.message))
}

/// A 1.6 CSMS call: its action, validated, then translated.
pub fn request(action: &str, payload: Value, lk: &Lookup) -> Result<(Action, Inbound), CallError> {
    let Some(known) = Action::from_name(action) else {
        return Err(CallError::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {action:?}"),
        ));
    };
    crate::ocpp::validate::validate(known.request_schema(), &payload).map_err(violation)?;
    let inbound = super::core_profile::request(known, &payload, lk)
        .or_else(|| super::keys::request(known, &payload, lk))
        .or_else(|| super::profiles::request(known, &payload, lk))
        .unwrap_or_else(|| {
            Err(CallError::new(
                CallErrorCode::NotSupported,
                format!("{action} is not supported"),
            ))
        })?;
    Ok((known, inbound))
}

/// The 1.6 answer to `request` (a 1.6 call of `action`) from the 2.0.1 `answer` a block gave.
pub fn response(action: Action, request: &Value, answer: Value, lk: &Lookup) -> Value {
    super::core_profile::response(action, request, &answer, lk)
        .or_else(|| super::keys::response(action, request, &answer, lk))
        .or_else(|| super::profiles::response(action, request, &answer, lk))
        .unwrap_or(answer)
}

/// The 1.6 message for a 2.0.1 message of ours.
pub fn outgoing(action: v201::Action, payload: &Value, lk: &Lookup) -> Outbound {
    super::core_profile::outgoing(action, payload, lk)
        .or_else(|| super::profiles::outgoing(action, payload, lk))
        .unwrap_or(Outbound::Skip)
}

/// The 1.6 answer when the block refused the 2.0.1 call with `error`, where 1.6 has a status
/// for it instead of an error (smart charging switched off: SetChargingProfile NotSupported).
pub fn error_answer(action: Action, error: &CallError) -> Option<Value> {
    match (action, error.code) {
        (Action::SetChargingProfile, CallErrorCode::NotSupported) => {
            Some(serde_json::json!({ "status": "NotSupported" }))
        }
        _ => None,
    }
}

/// The CSMS's answer to a 1.6 message we sent (`sent`, its payload `request`), in the 2.0.1
/// shape of the answer the block that made the message expects; validated against the 1.6
/// response schema first.
pub fn answer_to_v201(
    sent: Action,
    request: &Value,
    answer: Value,
) -> Result<Value, crate::ocpp::validate::Violation> {
    crate::ocpp::validate::validate(sent.response_schema(), &answer)?;
    Ok(super::core_profile::answer_to_v201(sent, request, &answer)
        .or_else(|| super::profiles::answer_to_v201(sent, request, &answer))
        .unwrap_or(answer))
}
