//! The 2.0.1 side of a CSMS call: which action it is, whether its payload is valid (part 4,
//! table 8: the error code of each violation), and the typed request a block handles and the
//! JSON of its answer.

use super::validate::Violation;
use super::{Action, RequestPayload};
use crate::ocpp::model::IdToken;
use crate::ocpp::rpc::{CallError, CallErrorCode};
use serde::Serialize;
use serde_json::Value;

/// The action of a CALL, once its payload validated against the action's schema.
pub fn check_call(action: &str, payload: &Value) -> Result<Action, CallError> {
    let Some(known) = Action::from_name(action) else {
        return Err(CallError::new(
            CallErrorCode::NotImplemented,
            format!("unknown action {action:?}"),
        ));
    };
    super::validate::validate(known.request_schema(), payload).map_err(violation)?;
    Ok(known)
}

/// Decodes the request, lets `handle` answer it, encodes the answer.
pub fn answer<Req: RequestPayload, Resp: Serialize>(
    payload: Value,
    handle: impl FnOnce(Req) -> Result<Resp, CallError>,
) -> Result<Value, CallError> {
    let request = super::decode_request::<Req>(payload).map_err(violation)?;
    handle(request).map(|response| crate::ocpp::v201::to_payload(&response))
}

/// The violation kinds are named after the error codes of part 4, table 8.
fn violation(v: Violation) -> CallError {
    let code = CallErrorCode::from_name(v.kind.as_str()).unwrap_or(CallErrorCode::FormatViolation);
    CallError::new(code, format!("{}: {}", v.path, v.message))
}

/// A token presented at a reader, given as an `IdTokenType` object: checked against the schema.
pub fn id_token(json: &Value) -> Result<IdToken, String> {
    super::validate::validate(&super::tables::ID_TOKEN, json)
        .map_err(|v| format!("{}: {}", v.path, v.message))?;
    let token: super::IdToken = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
    Ok(IdToken::from(&token))
}

/// A Firmware/LogStatusNotification payload: the status, and the request it reports on.
pub fn status_report(status: &str, request_id: Option<i64>) -> Value {
    let mut payload = serde_json::json!({ "status": status });
    if let Some(id) = request_id {
        payload["requestId"] = serde_json::json!(id);
    }
    payload
}
