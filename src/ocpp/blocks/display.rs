//! Display messages (O01-O06): the messages the CSMS sets for the station's screen, kept
//! durable (O01.FR.10, O02.FR.10), removed after their endDateTime (O01.FR.07) or with their
//! transaction (O02.FR.02), and the list of what a screen shows now ([`Display::items`]),
//! which the station merges with its other sources (see `Station::display`).
//!
//! The screen itself is another program (the integrator's HMI): the agent tells it what to
//! show, in order, through `ctl display` and `ctl watch`.
//!
//! The block works on the protocol-neutral [`DisplayMessage`]; the 2.0.1 spelling of requests
//! and answers is `v201::display`.

use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::Ctx;
use crate::ocpp::devmodel::{DeviceModel, Var};
use crate::ocpp::model::{ConnectorStatus, MessageContent, Model};
use crate::ocpp::persist::{PersistOp, Persisted, Record};
use crate::ocpp::timer::Timer;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing::info;

/// DisplayMessageCtrlr.DisplayMessages maxLimit: messages kept at once (O01.FR.11). Each is
/// rewritten to the journal with the others on a change.
pub const MAX_MESSAGES: i64 = 32;

/// Messages per NotifyDisplayMessages (O03.FR.03, O04.FR.04): a message may hold 512
/// characters of content, so ten stay well below any CSMS's frame limit.
pub const MESSAGES_PER_NOTIFY: usize = 10;

/// The component name of a display in a message's `display` (001.FR.22/23): the station's
/// main display without an EVSE, an EVSE's own display with one.
pub const DISPLAY_COMPONENT: &str = "Display";

/// How a message competes for the screen (O01.FR.12-16). Ordered: the first shows first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Shown regardless of anything else; one per display, a new one replaces it
    /// (O01.FR.15/16).
    AlwaysFront,
    /// Shown before the normal cycle; several cycle among themselves (O01.FR.13/14).
    InFront,
    /// In the normal cycle of messages (O01.FR.12).
    NormalCycle,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::AlwaysFront => "AlwaysFront",
            Priority::InFront => "InFront",
            Priority::NormalCycle => "NormalCycle",
        }
    }
}

/// The state of the station or an EVSE a message is for (MessageStateEnumType), and the
/// state a screen is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScreenState {
    /// A transaction is ongoing.
    Charging,
    /// A connector is faulted.
    Faulted,
    /// Nothing of the others.
    Idle,
    /// Set Inoperative (ChangeAvailability) or held by a firmware update, with no transaction.
    Unavailable,
}

impl ScreenState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScreenState::Charging => "Charging",
            ScreenState::Faulted => "Faulted",
            ScreenState::Idle => "Idle",
            ScreenState::Unavailable => "Unavailable",
        }
    }

    /// The state of an EVSE (by model index): Faulted when one of its connectors is, else
    /// Charging while a transaction is ongoing, else Unavailable when it is inoperative, else
    /// Idle.
    pub fn of_evse(model: &Model, vars: &DeviceModel, idx: usize) -> ScreenState {
        let id = model.evses[idx].id;
        let statuses = || {
            model
                .connectors
                .iter()
                .enumerate()
                .filter(move |(_, c)| c.evse == id)
                .map(|(i, _)| model.connector_status(i, vars))
        };
        if statuses().any(|s| s == ConnectorStatus::Faulted) {
            ScreenState::Faulted
        } else if model.evses[idx].transaction.is_some() {
            ScreenState::Charging
        } else if !model.evse_operative(idx, vars)
            || statuses().all(|s| s == ConnectorStatus::Unavailable)
        {
            ScreenState::Unavailable
        } else {
            ScreenState::Idle
        }
    }

    /// The state of the station as a whole: Charging while any EVSE charges, else Faulted or
    /// Unavailable when every EVSE is, else Idle.
    pub fn of_station(evses: &[ScreenState]) -> ScreenState {
        if evses.contains(&ScreenState::Charging) {
            ScreenState::Charging
        } else if !evses.is_empty() && evses.iter().all(|s| *s == ScreenState::Faulted) {
            ScreenState::Faulted
        } else if !evses.is_empty()
            && evses
                .iter()
                .all(|s| matches!(s, ScreenState::Faulted | ScreenState::Unavailable))
        {
            ScreenState::Unavailable
        } else {
            ScreenState::Idle
        }
    }
}

/// The display a message is for, as the CSMS named it (kept to report it back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayTarget {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The EVSE whose display it is; None: the station's main display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evse: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<u32>,
}

/// A message the CSMS set (MessageInfoType).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisplayMessage {
    pub id: i64,
    pub priority: Priority,
    /// Shown only in this state; None: in any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ScreenState>,
    /// Not shown before (UTC ms, O01.FR.06).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// Removed after (UTC ms, O01.FR.07).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// Shown during this transaction only, removed when it ends (O02.FR.02).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<DisplayTarget>,
    pub content: MessageContent,
    /// When it was set, in the order of setting (a replacement counts as new): the newest
    /// of a priority shows first.
    #[serde(default)]
    pub seq: u64,
}

impl DisplayMessage {
    /// The EVSE whose display it is for, if one was named.
    pub fn evse(&self) -> Option<u32> {
        self.display
            .as_ref()
            .and_then(|d| d.evse)
            .filter(|e| *e > 0)
    }
}

/// Why a SetDisplayMessage is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRefusal {
    /// O01.FR.03, O02.FR.05: not in DisplayMessageCtrlr.SupportedFormats.
    Format(String),
    /// O01.FR.01, O02.FR.03: not in DisplayMessageCtrlr.SupportedPriorities.
    Priority(Priority),
    /// O02.FR.01: no ongoing transaction has that id.
    UnknownTransaction(String),
    /// O01.FR.11 (full: TooManyElements), 001.FR.22 (an unknown display: NotFound or
    /// UnknownEvse), or a window that ends before it starts (InvalidValue): a reason code of
    /// the appendix and words for a person.
    Rejected(&'static str, String),
}

/// Which messages a GetDisplayMessages means (every given field must match).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageFilter {
    pub ids: Option<Vec<i64>>,
    pub priority: Option<Priority>,
    pub state: Option<ScreenState>,
}

impl MessageFilter {
    fn matches(&self, m: &DisplayMessage) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&m.id))
            && self.priority.is_none_or(|p| p == m.priority)
            && self.state.is_none_or(|s| m.state == Some(s))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredMessages {
    messages: Vec<DisplayMessage>,
    #[serde(default)]
    next_seq: u64,
}

impl Record for StoredMessages {
    const KEY: &'static str = "display:messages";
    const VERSION: u32 = 1;
}

/// Where a message shows: on the screen of an EVSE or of the station (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenScope<'a> {
    /// 0: the station's main display.
    pub evse: u32,
    pub state: ScreenState,
    /// The EVSE's ongoing transaction.
    pub transaction_id: Option<&'a str>,
}

/// The display-message block.
#[derive(Debug, Default)]
pub struct Display {
    messages: Vec<DisplayMessage>,
    next_seq: u64,
}

impl Display {
    /// Start-up: the messages the journal holds. Those of a transaction go when it is found
    /// ended ([`Display::transactions_changed`]); expired ones go at once.
    pub(crate) fn restore(cx: &mut Ctx, now: Instant, persisted: &Persisted) -> Self {
        let stored = cx
            .restore_record::<StoredMessages>(persisted)
            .unwrap_or_default();
        let mut block = Display {
            messages: stored.messages,
            next_seq: stored.next_seq,
        };
        if !block.messages.is_empty() {
            info!(messages = block.messages.len(), "display messages restored");
        }
        block.expire(cx, now);
        block
    }

    pub(crate) fn entries(&self) -> usize {
        self.messages.len()
    }

    pub(crate) fn enabled(cx: &Ctx) -> bool {
        cx.vars.bool(Var::DisplayMessageEnabled)
    }

    fn save(&self, cx: &mut Ctx) {
        let record = StoredMessages {
            messages: self.messages.clone(),
            next_seq: self.next_seq,
        };
        cx.persist(vec![PersistOp::record(Some(&record))]);
    }

    fn utc_ms(cx: &Ctx, now: Instant) -> i64 {
        cx.clock.utc(now).unix_millis()
    }

    /// O01, O02, O06: installs a message, or replaces the one with its id (O06.FR.01).
    pub(crate) fn set(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        mut message: DisplayMessage,
    ) -> Result<(), SetRefusal> {
        if !cx.vars.contains(
            Var::DisplayMessageSupportedPriorities,
            message.priority.as_str(),
        ) {
            return Err(SetRefusal::Priority(message.priority));
        }
        if !cx
            .vars
            .contains(Var::DisplayMessageSupportedFormats, &message.content.format)
        {
            return Err(SetRefusal::Format(message.content.format));
        }
        if let Some(d) = &message.display {
            // 001.FR.22: the displays are the station's and each EVSE's.
            if !d.name.eq_ignore_ascii_case(DISPLAY_COMPONENT) {
                return Err(SetRefusal::Rejected(
                    "NotFound",
                    format!(
                        "no display component {:?} (the displays are {DISPLAY_COMPONENT} and {DISPLAY_COMPONENT} of each EVSE)",
                        d.name
                    ),
                ));
            }
            if let Some(e) = d.evse.filter(|e| *e > 0) {
                if cx.model.evse_index(e).is_none() {
                    return Err(SetRefusal::Rejected("UnknownEvse", format!("no EVSE {e}")));
                }
            }
        }
        if let Some(tx) = &message.transaction_id {
            if !ongoing(&cx.model, tx) {
                return Err(SetRefusal::UnknownTransaction(tx.clone()));
            }
        }
        if let (Some(from), Some(to)) = (message.start_ms, message.end_ms) {
            if to <= from {
                return Err(SetRefusal::Rejected(
                    "InvalidValue",
                    "endDateTime is not after startDateTime".into(),
                ));
            }
        }
        let replacing = self.messages.iter().any(|m| m.id == message.id);
        // O01.FR.16, O02.FR.18: a new AlwaysFront message replaces the one already set for the
        // same display (and transaction).
        let displaced: Vec<i64> = if message.priority == Priority::AlwaysFront {
            self.messages
                .iter()
                .filter(|m| {
                    m.id != message.id
                        && m.priority == Priority::AlwaysFront
                        && m.evse() == message.evse()
                        && m.transaction_id == message.transaction_id
                })
                .map(|m| m.id)
                .collect()
        } else {
            Vec::new()
        };
        let after = self.messages.len() + usize::from(!replacing) - displaced.len();
        if after as i64 > MAX_MESSAGES {
            // O01.FR.11, O02.FR.11
            return Err(SetRefusal::Rejected(
                "TooManyElements",
                format!(
                    "{MAX_MESSAGES} messages are set (DisplayMessageCtrlr.DisplayMessages maxLimit)"
                ),
            ));
        }
        message.seq = self.next_seq;
        self.next_seq += 1;
        info!(
            message = message.id,
            priority = message.priority.as_str(),
            evse = message.evse(),
            transaction = message.transaction_id.as_deref(),
            replacing,
            ?displaced,
            "display message set"
        );
        self.messages
            .retain(|m| m.id != message.id && !displaced.contains(&m.id));
        self.messages.push(message);
        self.save(cx);
        // One that has already ended goes at once (O01.FR.07).
        self.expire(cx, now);
        Ok(())
    }

    /// O05: removes a message; false if there is none with that id (O05.FR.02).
    pub(crate) fn clear(&mut self, cx: &mut Ctx, now: Instant, id: i64) -> bool {
        self.expire(cx, now);
        let before = self.messages.len();
        self.messages.retain(|m| m.id != id);
        if self.messages.len() == before {
            return false;
        }
        info!(message = id, "display message cleared");
        self.save(cx);
        self.arm(cx, now);
        true
    }

    /// O03, O04: the messages a filter means, in the order they were set.
    pub(crate) fn matching(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        filter: &MessageFilter,
    ) -> Vec<DisplayMessage> {
        self.expire(cx, now);
        let mut found: Vec<DisplayMessage> = self
            .messages
            .iter()
            .filter(|m| filter.matches(m))
            .cloned()
            .collect();
        found.sort_by_key(|m| m.seq);
        found
    }

    /// O02.FR.02: a transaction ended (or was found ended at start-up): its messages go.
    pub(crate) fn transactions_changed(&mut self, cx: &mut Ctx, now: Instant) {
        let model = &cx.model;
        let keep: Vec<bool> = self
            .messages
            .iter()
            .map(|m| {
                m.transaction_id
                    .as_ref()
                    .is_none_or(|tx| ongoing(model, tx))
            })
            .collect();
        self.remove(cx, keep, "display messages of an ended transaction removed");
        self.arm(cx, now);
    }

    /// O01.FR.07: removes the messages past their endDateTime, then waits for the next start
    /// or end (the timer, and the UTC clock moved).
    pub(crate) fn expire(&mut self, cx: &mut Ctx, now: Instant) {
        let t = Self::utc_ms(cx, now);
        let keep = self
            .messages
            .iter()
            .map(|m| m.end_ms.is_none_or(|end| end > t))
            .collect();
        self.remove(cx, keep, "display messages past their end removed");
        self.arm(cx, now);
    }

    /// Keeps the messages `keep` says (one flag each), saving when any went.
    fn remove(&mut self, cx: &mut Ctx, keep: Vec<bool>, why: &'static str) {
        let before = self.messages.len();
        let mut flags = keep.into_iter();
        self.messages.retain(|_| flags.next().unwrap_or(true));
        if self.messages.len() != before {
            info!(removed = before - self.messages.len(), "{why}");
            self.save(cx);
        }
    }

    /// The timer at the next start or end of a message, when the screens change.
    fn arm(&self, cx: &mut Ctx, now: Instant) {
        let t = Self::utc_ms(cx, now);
        let next = self
            .messages
            .iter()
            .flat_map(|m| [m.start_ms, m.end_ms])
            .flatten()
            .filter(|at| *at > t)
            .min();
        match next {
            Some(at) => cx.timers.set(
                Timer::DisplayMessage,
                now + Duration::from_millis((at - t) as u64),
            ),
            None => cx.timers.stop(Timer::DisplayMessage),
        }
    }

    /// The messages a screen shows now (O01.FR.06/07 windows, states, transactions), unsorted:
    /// the station orders them with its other items. Nothing while
    /// DisplayMessageCtrlr.Enabled is false.
    pub(crate) fn showing<'a>(
        &'a self,
        cx: &Ctx,
        now: Instant,
        scope: ScreenScope<'a>,
    ) -> impl Iterator<Item = &'a DisplayMessage> + 'a {
        let t = Self::utc_ms(cx, now);
        let enabled = Self::enabled(cx);
        self.messages.iter().filter(move |m| {
            enabled
                && m.start_ms.is_none_or(|s| s <= t)
                && m.end_ms.is_none_or(|e| e > t)
                && m.state.is_none_or(|s| s == scope.state)
                && match (&m.transaction_id, m.evse()) {
                    // A transaction's message is for the screen of its EVSE.
                    (Some(tx), _) => scope.evse != 0 && scope.transaction_id == Some(tx.as_str()),
                    // An EVSE's display.
                    (None, Some(e)) => e == scope.evse,
                    // The main display: the station's screen, and every EVSE's.
                    (None, None) => true,
                }
        })
    }
}

/// A transaction with this id is ongoing on one of the EVSEs.
fn ongoing(model: &Model, tx: &str) -> bool {
    model
        .evses
        .iter()
        .any(|e| e.active_transaction.as_ref().is_some_and(|t| t.id == tx))
}

/// How specific a message is, for the order within a priority: a transaction's first, then
/// an EVSE's, then the station's.
pub fn specificity(m: &DisplayMessage) -> u8 {
    match (&m.transaction_id, m.evse()) {
        (Some(_), _) => 0,
        (None, Some(_)) => 1,
        (None, None) => 2,
    }
}
