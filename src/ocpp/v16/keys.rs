//! STUB (being written).
#![allow(unused_variables)]

use super::Action;
use super::adapter::{Inbound, Lookup, Outbound};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v201;
use serde_json::Value;

/// A 1.6 call of this module's actions as a 2.0.1 call or an answer; `None`: not one of them.
pub fn request(action: Action, payload: &Value, lk: &Lookup) -> Option<Result<Inbound, CallError>> {
    None
}

/// The 1.6 answer to a call `request` of `action` from the block's 2.0.1 `answer`.
pub fn response(action: Action, request: &Value, answer: &Value, lk: &Lookup) -> Option<Value> {
    None
}

/// The 1.6 message for a 2.0.1 message of ours that this module spells.
pub fn outgoing(action: v201::Action, payload: &Value, lk: &Lookup) -> Option<Outbound> {
    None
}

/// The 2.0.1 shape of the CSMS's answer to a 1.6 message of this module we sent.
pub fn answer_to_v201(sent: Action, request: &Value, answer: &Value) -> Option<Value> {
    None
}
