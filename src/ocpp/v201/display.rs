//! The 2.0.1 spelling of display messages (O01-O06): MessageInfoType to and from the
//! protocol-neutral [`DisplayMessage`], and the calls SetDisplayMessage, GetDisplayMessages
//! (+ NotifyDisplayMessages) and ClearDisplayMessage on the display block.

use crate::ocpp::blocks::display::Display;
use crate::ocpp::blocks::display::{
    DisplayMessage, DisplayTarget, MESSAGES_PER_NOTIFY, MessageFilter, Priority, ScreenState,
    SetRefusal,
};
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::Ctx;
use crate::ocpp::model::MessageContent;
use crate::ocpp::rpc::{CallError, CallErrorCode};
use crate::ocpp::v201::{self, Action};
use tracing::info;

fn priority(p: v201::MessagePriorityEnum) -> Priority {
    use v201::MessagePriorityEnum as P;
    match p {
        P::AlwaysFront => Priority::AlwaysFront,
        P::InFront => Priority::InFront,
        P::NormalCycle => Priority::NormalCycle,
    }
}

fn priority_v201(p: Priority) -> v201::MessagePriorityEnum {
    use v201::MessagePriorityEnum as P;
    match p {
        Priority::AlwaysFront => P::AlwaysFront,
        Priority::InFront => P::InFront,
        Priority::NormalCycle => P::NormalCycle,
    }
}

fn state(s: v201::MessageStateEnum) -> ScreenState {
    use v201::MessageStateEnum as S;
    match s {
        S::Charging => ScreenState::Charging,
        S::Faulted => ScreenState::Faulted,
        S::Idle => ScreenState::Idle,
        S::Unavailable => ScreenState::Unavailable,
    }
}

fn state_v201(s: ScreenState) -> v201::MessageStateEnum {
    use v201::MessageStateEnum as S;
    match s {
        ScreenState::Charging => S::Charging,
        ScreenState::Faulted => S::Faulted,
        ScreenState::Idle => S::Idle,
        ScreenState::Unavailable => S::Unavailable,
    }
}

fn format_v201(format: &str) -> v201::MessageFormatEnum {
    use v201::MessageFormatEnum as F;
    match format {
        "HTML" => F::Html,
        "URI" => F::Uri,
        "UTF8" => F::Utf8,
        _ => F::Ascii,
    }
}

fn time(field: &str, value: Option<&String>) -> Result<Option<i64>, SetRefusal> {
    match value {
        None => Ok(None),
        Some(s) => UtcTime::parse_rfc3339(s)
            .map(|t| Some(t.unix_millis()))
            .ok_or_else(|| {
                SetRefusal::Rejected("InvalidValue", format!("{field} {s:?} is not a date-time"))
            }),
    }
}

/// A MessageInfoType from the CSMS as the block's [`DisplayMessage`].
pub fn message(m: &v201::MessageInfo) -> Result<DisplayMessage, SetRefusal> {
    let display = m
        .display
        .as_ref()
        .map(|d| {
            let evse = d.evse.as_ref();
            Ok(DisplayTarget {
                name: d.name.clone(),
                instance: d.instance.clone(),
                evse: evse.map(|e| u32::try_from(e.id)).transpose().map_err(|_| {
                    SetRefusal::Rejected("UnknownEvse", "a negative EVSE id".into())
                })?,
                connector: evse.and_then(|e| e.connector_id).map(v201::id32),
            })
        })
        .transpose()?;
    Ok(DisplayMessage {
        id: m.id,
        priority: priority(m.priority),
        state: m.state.map(state),
        start_ms: time("startDateTime", m.start_date_time.as_ref())?,
        end_ms: time("endDateTime", m.end_date_time.as_ref())?,
        transaction_id: m.transaction_id.clone(),
        display,
        content: MessageContent {
            format: m.message.format.as_str().to_owned(),
            language: m.message.language.clone(),
            content: m.message.content.clone(),
        },
        seq: 0,
    })
}

/// The block's [`DisplayMessage`] as a MessageInfoType.
pub fn message_v201(m: &DisplayMessage) -> v201::MessageInfo {
    let rfc3339 = |ms: i64| UtcTime::from_unix_millis(ms).to_rfc3339();
    v201::MessageInfo {
        custom_data: None,
        display: m.display.as_ref().map(|d| v201::Component {
            custom_data: None,
            evse: d.evse.map(|id| v201::Evse {
                custom_data: None,
                id: i64::from(id),
                connector_id: d.connector.map(i64::from),
            }),
            name: d.name.clone(),
            instance: d.instance.clone(),
        }),
        id: m.id,
        priority: priority_v201(m.priority),
        state: m.state.map(state_v201),
        start_date_time: m.start_ms.map(rfc3339),
        end_date_time: m.end_ms.map(rfc3339),
        transaction_id: m.transaction_id.clone(),
        message: v201::MessageContent {
            custom_data: None,
            format: format_v201(&m.content.format),
            language: m.content.language.clone(),
            content: m.content.content.clone(),
        },
    }
}

/// With DisplayMessageCtrlr.Enabled false the station does not take display messages.
fn check_enabled(cx: &Ctx) -> Result<(), CallError> {
    if Display::enabled(cx) {
        Ok(())
    } else {
        Err(CallError::new(
            CallErrorCode::NotSupported,
            "display messages are disabled (DisplayMessageCtrlr.Enabled)",
        ))
    }
}

/// O01, O02, O06: SetDisplayMessage.
pub fn set_display_message(
    block: &mut Display,
    cx: &mut Ctx,
    now: Instant,
    request: v201::SetDisplayMessageRequest,
) -> Result<v201::SetDisplayMessageResponse, CallError> {
    use v201::DisplayMessageStatusEnum as S;
    check_enabled(cx)?;
    let outcome = message(&request.message).and_then(|m| block.set(cx, now, m));
    let (status, info) = match outcome {
        Ok(()) => (S::Accepted, None),
        Err(r) => {
            let (status, code, info) = match r {
                SetRefusal::Format(f) => (
                    S::NotSupportedMessageFormat,
                    "UnsupportedParam",
                    format!("{f} is not in DisplayMessageCtrlr.SupportedFormats"),
                ),
                SetRefusal::Priority(p) => (
                    S::NotSupportedPriority,
                    "UnsupportedParam",
                    format!(
                        "{} is not in DisplayMessageCtrlr.SupportedPriorities",
                        p.as_str()
                    ),
                ),
                SetRefusal::UnknownTransaction(tx) => (
                    S::UnknownTransaction,
                    "UnknownTxId",
                    format!("no ongoing transaction {tx}"),
                ),
                SetRefusal::Rejected(code, why) => (S::Rejected, code, why),
            };
            info!(
                message = request.message.id,
                status = status.as_str(),
                info,
                "SetDisplayMessage refused"
            );
            (status, Some((code, info)))
        }
    };
    Ok(v201::SetDisplayMessageResponse {
        custom_data: None,
        status,
        status_info: info.map(|(code, i)| v201::StatusInfo {
            custom_data: None,
            reason_code: code.into(),
            additional_info: Some(i.chars().take(512).collect()),
        }),
    })
}

/// O03, O04: GetDisplayMessages, answered now and followed by NotifyDisplayMessages messages
/// of at most [`MESSAGES_PER_NOTIFY`] each, `tbc` on all but the last (O03.FR.03/04).
pub fn get_display_messages(
    block: &mut Display,
    cx: &mut Ctx,
    now: Instant,
    request: v201::GetDisplayMessagesRequest,
) -> Result<v201::GetDisplayMessagesResponse, CallError> {
    check_enabled(cx)?;
    let filter = MessageFilter {
        ids: request.id.clone(),
        priority: request.priority.map(priority),
        state: request.state.map(state),
    };
    let found = block.matching(cx, now, &filter);
    let chunks: Vec<&[DisplayMessage]> = found.chunks(MESSAGES_PER_NOTIFY).collect();
    let last = chunks.len().saturating_sub(1);
    for (n, chunk) in chunks.iter().enumerate() {
        let notify = v201::NotifyDisplayMessagesRequest {
            custom_data: None,
            message_info: Some(chunk.iter().map(message_v201).collect()),
            request_id: request.request_id,
            tbc: (n < last).then_some(true),
        };
        cx.enqueue_triggered_report(Action::NotifyDisplayMessages, v201::to_payload(&notify));
    }
    Ok(v201::GetDisplayMessagesResponse {
        custom_data: None,
        // O03.FR.01/06, O04.FR.01/02/07
        status: if found.is_empty() {
            v201::GetDisplayMessagesStatusEnum::Unknown
        } else {
            v201::GetDisplayMessagesStatusEnum::Accepted
        },
        status_info: None,
    })
}

/// O05: ClearDisplayMessage.
pub fn clear_display_message(
    block: &mut Display,
    cx: &mut Ctx,
    now: Instant,
    request: v201::ClearDisplayMessageRequest,
) -> Result<v201::ClearDisplayMessageResponse, CallError> {
    check_enabled(cx)?;
    Ok(v201::ClearDisplayMessageResponse {
        custom_data: None,
        status: if block.clear(cx, now, request.id) {
            v201::ClearMessageStatusEnum::Accepted
        } else {
            v201::ClearMessageStatusEnum::Unknown
        },
        status_info: None,
    })
}
