//! `frame_decode`: one WebSocket text message through `rpc::decode`, and for a CALL the payload
//! through `Action::from_name`, `validate::validate` and `validate::decode` into the generated
//! request type. A CALLRESULT whose message id is an action name (`[3,"Heartbeat",{...}]`) is
//! checked the same way against that action's *response* schema, so the fuzzer reaches the
//! response types too.
//!
//! Properties (a violation panics, which libFuzzer reports as a crash):
//! * nothing panics;
//! * a decoded frame, encoded again, decodes to the same frame; a frame error's answer is a
//!   well-formed CALLERROR with the same id and code;
//! * `validate` and `decode` agree: a payload that validates decodes, one that does not fails
//!   `decode` with the same violation;
//! * a violation's path points into the payload (the offending value, or for a missing
//!   property the object that lacks it);
//! * round trip: a decoded payload re-serialized validates again, and decoding that gives the
//!   same value (serialization is stable).

use ocpp_agent::ocpp::rpc::{self, CallErrorCode, Frame, MAX_MESSAGE_ID_LEN};
use ocpp_agent::ocpp::v201::validate::{self, Violation, ViolationKind};
use ocpp_agent::ocpp::v201::{self, Action};
use serde_json::{Value, json};

macro_rules! typed_dispatch {
    ($(($action:ident, $req:ident, $resp:ident)),* $(,)?) => {
        /// Decodes `value` into the generated type of (action, direction) and serializes it
        /// back.
        pub fn typed_roundtrip(
            action: Action,
            is_request: bool,
            value: Value,
        ) -> Result<Value, Violation> {
            match (action, is_request) {
                $(
                    (Action::$action, true) => {
                        roundtrip::<v201::$req>(action.request_schema(), value)
                    }
                    (Action::$action, false) => {
                        roundtrip::<v201::$resp>(action.response_schema(), value)
                    }
                )*
            }
        }
    };
}
v201::for_each_action!(typed_dispatch);

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(
    schema: &'static v201::schema::Schema,
    value: Value,
) -> Result<Value, Violation> {
    let typed: T = validate::decode(schema, value)?;
    Ok(serde_json::to_value(&typed).expect("a decoded payload serializes"))
}

/// Checks one payload of `action` (request or response).
pub fn check_payload(action: Action, is_request: bool, payload: &Value) {
    let schema = if is_request {
        action.request_schema()
    } else {
        action.response_schema()
    };
    let what = format!(
        "{} {}",
        action.as_str(),
        if is_request { "request" } else { "response" }
    );
    let validated = validate::validate(schema, payload);
    let decoded = typed_roundtrip(action, is_request, payload.clone());
    match (validated, decoded) {
        (Ok(()), Ok(reserialized)) => {
            if let Err(v) = validate::validate(schema, &reserialized) {
                panic!(
                    "{what}: the re-serialized payload does not validate: {v}\n  in: \
                     {payload}\n  out: {reserialized}"
                );
            }
            match typed_roundtrip(action, is_request, reserialized.clone()) {
                Ok(again) => assert_eq!(
                    again, reserialized,
                    "{what}: a second round trip changed the payload"
                ),
                Err(v) => panic!("{what}: the re-serialized payload does not decode: {v}"),
            }
        }
        (Ok(()), Err(v)) => {
            panic!("{what}: validates but does not decode: {v}\n  payload: {payload}")
        }
        (Err(v), Ok(_)) => {
            panic!("{what}: decode accepted a payload validate rejects ({v})\n  {payload}")
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{what}: validate and decode disagree on {payload}");
            check_violation_path(&what, payload, &a);
        }
    }
}

/// The path of a violation names the offending value: it exists, or (missing property) its
/// parent does.
fn check_violation_path(what: &str, payload: &Value, v: &Violation) {
    assert!(
        v.path.is_empty() || v.path.starts_with('/'),
        "{what}: violation path {:?} is not a JSON pointer",
        v.path
    );
    if payload.pointer(&v.path).is_some() {
        return;
    }
    let parent = &v.path[..v.path.rfind('/').unwrap_or(0)];
    assert!(
        v.kind == ViolationKind::OccurrenceConstraintViolation && payload.pointer(parent).is_some(),
        "{what}: violation {v:?} points nowhere in {payload}"
    );
}

/// Checks one text frame.
pub fn check_frame(text: &str) {
    match rpc::decode(text) {
        Ok(frame) => {
            let (id, encoded) = match &frame {
                Frame::Call {
                    id,
                    action,
                    payload,
                } => (id, rpc::encode_call(id, action, payload)),
                Frame::CallResult { id, payload } => (id, rpc::encode_result(id, payload)),
                Frame::CallError {
                    id,
                    code,
                    description,
                    details,
                } => (id, json!([4, id, code, description, details]).to_string()),
            };
            assert!(
                !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN,
                "decoded a frame with message id {id:?}"
            );
            assert_eq!(
                rpc::decode(&encoded).as_ref(),
                Ok(&frame),
                "re-encoded as {encoded}"
            );
            match &frame {
                Frame::Call {
                    action, payload, ..
                } => {
                    if let Some(a) = Action::from_name(action) {
                        assert_eq!(a.as_str(), action);
                        check_payload(a, true, payload);
                    }
                }
                Frame::CallResult { id, payload } => {
                    if let Some(a) = Action::from_name(id) {
                        check_payload(a, false, payload);
                    }
                }
                Frame::CallError { .. } => {}
            }
        }
        Err(e) => {
            assert!(
                e.id == "-1" || (!e.id.is_empty() && e.id.len() <= MAX_MESSAGE_ID_LEN),
                "frame error with id {:?}",
                e.id
            );
            let answer = rpc::encode_error(&e.id, &e.error);
            match rpc::decode(&answer) {
                Ok(Frame::CallError {
                    id,
                    code,
                    description,
                    ..
                }) => {
                    assert_eq!(id, e.id);
                    assert_eq!(CallErrorCode::from_name(&code), Some(e.error.code));
                    assert!(description.chars().count() <= 255);
                }
                other => panic!("the answer {answer} to a broken frame decodes as {other:?}"),
            }
        }
    }
}
