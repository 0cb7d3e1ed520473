//! OCPP-J RPC framing (part 4, chapter 4): CALL `[2, id, action, payload]`, CALLRESULT
//! `[3, id, payload]`, CALLERROR `[4, id, code, description, details]`.

use serde_json::{Map, Value, json};
use std::fmt;

/// Message ids are `string[36]` (part 4, 4.1.4).
pub const MAX_MESSAGE_ID_LEN: usize = 36;

/// The error codes of part 4, table 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallErrorCode {
    FormatViolation,
    GenericError,
    InternalError,
    MessageTypeNotSupported,
    NotImplemented,
    NotSupported,
    OccurrenceConstraintViolation,
    PropertyConstraintViolation,
    ProtocolError,
    RpcFrameworkError,
    SecurityError,
    TypeConstraintViolation,
}

impl CallErrorCode {
    /// Every code, sorted by name.
    pub const ALL: [CallErrorCode; 12] = [
        CallErrorCode::FormatViolation,
        CallErrorCode::GenericError,
        CallErrorCode::InternalError,
        CallErrorCode::MessageTypeNotSupported,
        CallErrorCode::NotImplemented,
        CallErrorCode::NotSupported,
        CallErrorCode::OccurrenceConstraintViolation,
        CallErrorCode::PropertyConstraintViolation,
        CallErrorCode::ProtocolError,
        CallErrorCode::RpcFrameworkError,
        CallErrorCode::SecurityError,
        CallErrorCode::TypeConstraintViolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallErrorCode::FormatViolation => "FormatViolation",
            CallErrorCode::GenericError => "GenericError",
            CallErrorCode::InternalError => "InternalError",
            CallErrorCode::MessageTypeNotSupported => "MessageTypeNotSupported",
            CallErrorCode::NotImplemented => "NotImplemented",
            CallErrorCode::NotSupported => "NotSupported",
            CallErrorCode::OccurrenceConstraintViolation => "OccurrenceConstraintViolation",
            CallErrorCode::PropertyConstraintViolation => "PropertyConstraintViolation",
            CallErrorCode::ProtocolError => "ProtocolError",
            CallErrorCode::RpcFrameworkError => "RpcFrameworkError",
            CallErrorCode::SecurityError => "SecurityError",
            CallErrorCode::TypeConstraintViolation => "TypeConstraintViolation",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for CallErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CALLERROR we answer a CALL with.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    pub code: CallErrorCode,
    pub description: String,
    pub details: Map<String, Value>,
}

impl CallError {
    pub fn new(code: CallErrorCode, description: impl Into<String>) -> Self {
        CallError {
            code,
            description: description.into(),
            details: Map::new(),
        }
    }
}

/// One decoded frame from the CSMS.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call {
        id: String,
        action: String,
        payload: Value,
    },
    CallResult {
        id: String,
        payload: Value,
    },
    CallError {
        id: String,
        code: String,
        description: String,
        details: Value,
    },
}

/// A frame that could not be decoded, with what to answer (if anything).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// The id to answer with: the frame's own if it could be read, else "-1" (part 4, 4.2.3).
    pub id: String,
    pub error: CallError,
    /// Only CALLs get an answer; a broken CALLRESULT or CALLERROR is logged and dropped, since
    /// answering a response with a CALLERROR would start a ping-pong of errors.
    pub answer: bool,
}

fn frame_error(id: &str, code: CallErrorCode, description: &str, answer: bool) -> FrameError {
    FrameError {
        id: id.to_owned(),
        error: CallError::new(code, description),
        answer,
    }
}

/// Decodes one WebSocket text message.
pub fn decode(text: &str) -> Result<Frame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        frame_error(
            "-1",
            CallErrorCode::RpcFrameworkError,
            &format!("message is not valid JSON: {e}"),
            true,
        )
    })?;
    let Value::Array(mut items) = value else {
        return Err(frame_error(
            "-1",
            CallErrorCode::RpcFrameworkError,
            "message is not a JSON array",
            true,
        ));
    };
    let type_id = items.first().and_then(Value::as_u64);
    let id = match items.get(1) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_MESSAGE_ID_LEN => s.clone(),
        _ => {
            return Err(frame_error(
                "-1",
                CallErrorCode::RpcFrameworkError,
                "message id is missing, not a string, or longer than 36 characters",
                type_id == Some(2) || type_id.is_none(),
            ));
        }
    };
    match type_id {
        Some(2) => {
            if items.len() != 4 {
                return Err(frame_error(
                    &id,
                    CallErrorCode::RpcFrameworkError,
                    "a CALL has exactly 4 elements",
                    true,
                ));
            }
            let payload = items.pop().unwrap_or(Value::Null);
            let Some(Value::String(action)) = items.pop() else {
                return Err(frame_error(
                    &id,
                    CallErrorCode::RpcFrameworkError,
                    "the action of a CALL must be a string",
                    true,
                ));
            };
            if !payload.is_object() {
                return Err(frame_error(
                    &id,
                    CallErrorCode::FormatViolation,
                    "the payload of a CALL must be a JSON object",
                    true,
                ));
            }
            Ok(Frame::Call {
                id,
                action,
                payload,
            })
        }
        Some(3) => {
            if items.len() != 3 || !items[2].is_object() {
                return Err(frame_error(
                    &id,
                    CallErrorCode::FormatViolation,
                    "a CALLRESULT has exactly 3 elements and an object payload",
                    false,
                ));
            }
            let payload = items.pop().unwrap_or(Value::Null);
            Ok(Frame::CallResult { id, payload })
        }
        Some(4) => {
            let well_formed = items.len() == 5
                && items[2].is_string()
                && items[3].is_string()
                && items[4].is_object();
            if !well_formed {
                return Err(frame_error(
                    &id,
                    CallErrorCode::FormatViolation,
                    "a CALLERROR is [4, id, code, description, details]",
                    false,
                ));
            }
            let details = items.pop().unwrap_or(Value::Null);
            let description = items.pop().and_then(|v| v.as_str().map(str::to_owned));
            let code = items.pop().and_then(|v| v.as_str().map(str::to_owned));
            Ok(Frame::CallError {
                id,
                code: code.unwrap_or_default(),
                description: description.unwrap_or_default(),
                details,
            })
        }
        Some(_) => Err(frame_error(
            &id,
            CallErrorCode::MessageTypeNotSupported,
            "unknown message type number",
            true,
        )),
        None => Err(frame_error(
            &id,
            CallErrorCode::RpcFrameworkError,
            "message type number is missing or not an integer",
            true,
        )),
    }
}

pub fn encode_call(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload]).to_string()
}

pub fn encode_result(id: &str, payload: &Value) -> String {
    json!([3, id, payload]).to_string()
}

pub fn encode_error(id: &str, error: &CallError) -> String {
    encode_error_as(id, error.code.as_str(), error)
}

/// A CALLERROR with the error code spelled `code` (OCPP 1.6 spells two differently).
pub fn encode_error_as(id: &str, code: &str, error: &CallError) -> String {
    // The description is informative; keep it within what CSMSs commonly store (255).
    let description: String = error.description.chars().take(255).collect();
    json!([4, id, code, description, error.details]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> FrameError {
        decode(text).unwrap_err()
    }

    #[test]
    fn decodes_the_three_frame_kinds() {
        assert_eq!(
            decode(r#"[2,"a1","Reset",{"type":"Immediate"}]"#).unwrap(),
            Frame::Call {
                id: "a1".into(),
                action: "Reset".into(),
                payload: json!({"type":"Immediate"})
            }
        );
        assert_eq!(
            decode(r#"[3,"a1",{}]"#).unwrap(),
            Frame::CallResult {
                id: "a1".into(),
                payload: json!({})
            }
        );
        assert_eq!(
            decode(r#"[4,"a1","NotSupported","nope",{}]"#).unwrap(),
            Frame::CallError {
                id: "a1".into(),
                code: "NotSupported".into(),
                description: "nope".into(),
                details: json!({})
            }
        );
    }

    #[test]
    fn unreadable_frames_are_answered_with_minus_one() {
        for text in [
            "",
            "not json",
            "{}",
            "[]",
            "[2]",
            "[2, 5, \"X\", {}]",
            "\"x\"",
        ] {
            let e = err(text);
            assert_eq!(e.id, "-1", "{text}");
            assert!(e.answer, "{text}");
            assert_eq!(e.error.code, CallErrorCode::RpcFrameworkError, "{text}");
        }
        let long_id = format!(r#"[2,"{}","Reset",{{}}]"#, "x".repeat(37));
        assert_eq!(err(&long_id).id, "-1");
    }

    #[test]
    fn broken_calls_name_the_problem() {
        let e = err(r#"[2,"a","Reset"]"#);
        assert_eq!(
            (e.id.as_str(), e.error.code),
            ("a", CallErrorCode::RpcFrameworkError)
        );
        let e = err(r#"[2,"a",7,{}]"#);
        assert_eq!(e.error.code, CallErrorCode::RpcFrameworkError);
        let e = err(r#"[2,"a","Reset",[1]]"#);
        assert_eq!(e.error.code, CallErrorCode::FormatViolation);
        let e = err(r#"[9,"a","Reset",{}]"#);
        assert_eq!(e.error.code, CallErrorCode::MessageTypeNotSupported);
        assert!(e.answer);
        let e = err(r#"["2","a","Reset",{}]"#);
        assert_eq!(e.error.code, CallErrorCode::RpcFrameworkError);
    }

    #[test]
    fn broken_responses_are_not_answered() {
        assert!(!err(r#"[3,"a"]"#).answer);
        assert!(!err(r#"[3,"a",5]"#).answer);
        assert!(!err(r#"[4,"a","X"]"#).answer);
        assert!(!err(r#"[3,17,{}]"#).answer);
    }

    #[test]
    fn encodes_frames() {
        assert_eq!(
            encode_call("1", "Heartbeat", &json!({})),
            r#"[2,"1","Heartbeat",{}]"#
        );
        assert_eq!(encode_result("1", &json!({"a":1})), r#"[3,"1",{"a":1}]"#);
        let e = CallError::new(CallErrorCode::NotImplemented, "unknown action Foo");
        assert_eq!(
            encode_error("1", &e),
            r#"[4,"1","NotImplemented","unknown action Foo",{}]"#
        );
        assert_eq!(
            CallErrorCode::from_name("SecurityError"),
            Some(CallErrorCode::SecurityError)
        );
    }
}

/// A frame as the trace log may show it: frames that carry a secret are withheld.
pub fn loggable(text: &str) -> &str {
    // A URL with user information (GetLog, UpdateFirmware) carries a password too.
    let url_credentials = text.match_indices("://").any(|(i, _)| {
        let rest = &text[i + 3..];
        let end = rest.find(['/', '"', '?', '#']).unwrap_or(rest.len());
        rest[..end].contains('@')
    });
    if text.contains("BasicAuthPassword") || url_credentials {
        "[frame withheld: it carries a secret]"
    } else {
        text
    }
}

#[cfg(test)]
mod secret_tests {
    use super::loggable;

    #[test]
    fn frames_with_secrets_are_withheld_from_the_log() {
        let plain = r#"[2,"1","GetLog",{"log":{"remoteLocation":"https://h/x@y"}}]"#;
        assert_eq!(loggable(plain), plain);
        for secret in [
            r#"[2,"1","GetLog",{"log":{"remoteLocation":"https://u:p@h/x"}}]"#,
            r#"[2,"1","SetVariables",{"x":"BasicAuthPassword"}]"#,
        ] {
            assert!(loggable(secret).starts_with("[frame withheld"), "{secret}");
        }
    }
}
