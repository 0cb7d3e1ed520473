//! Property test: the core driven by random sequences of CSMS calls (remote start/stop,
//! transaction status, ClearCache, management calls such as SetVariables, Reset,
//! ChangeAvailability, TriggerMessage, SendLocalList; invalid payloads, unknown actions and
//! garbage frames), plug events, idTokens with varied CSMS answers, time advances, CSMS outages,
//! silent CSMS periods, late answers, failing actions, dropped connections and power cycles (and
//! the restart a Reset asks for), on the test kit's virtual clock, with invariants checked after
//! every step. Seven station configurations rotate (TxStartPoint, offline and pre-authorization,
//! clock-aligned data, ...).
//!
//! After every step:
//! * at most one CALL of the station in flight: a new CALL goes out only after the previous one
//!   was answered, timed out (MessageTimeout) or lost with the connection (derived from the fake
//!   CSMS's `received` times and its answering state, and the connect attempts);
//! * every message the station sends is schema-valid (the test kit asserts it);
//! * every frame the CSMS sends gets the answer part 4 prescribes: exactly one CALLRESULT whose
//!   payload validates against the response schema, or a CALLERROR with the right code
//!   (SecurityError while Rejected, NotImplemented for unknown actions, the violation's code for
//!   invalid payloads, RpcFrameworkError & co. for broken frames); nothing for CALLRESULT /
//!   CALLERROR frames;
//! * answers agree with the state: stopping an unknown transaction is Rejected and an accepted
//!   stop ends it; GetTransactionStatus's ongoingIndicator is right; RequestStartTransaction,
//!   Reset, ChangeAvailability and UnlockConnector naming an EVSE/connector that does not
//!   exist are rejected;
//! * the station's durable queue and open transactions match what the journal holds.
//!
//! At the end (CSMS back online and answering, everything unplugged, time advanced until the
//! queue drained): the journal's queue is empty, no transaction is open, and
//! [`check_delivery`] holds for what the CSMS saw of the durable queue (TransactionEvent,
//! SecurityEventNotification), in every case, discards or not:
//! * per transactionId, seqNos first sent in strictly increasing order starting at 0, a
//!   retransmission identical to the first transmission and never after the CSMS accepted it;
//!   Started (seqNo 0) first, Ended last, only Updated between; a transaction open at a power
//!   cycle ends with AbnormalCondition and stoppedReason Reboot (clean) or PowerLoss;
//! * loss only where the spec allows it, and counted: a message the CSMS never accepted, or a
//!   seqNo it never saw, is a discard the station counted; E13.FR.04 needs MessageAttempts
//!   failed sends of that message; E04.FR.08 drops only Updated events, and only a queue that
//!   came near its bound; the station's discard count is at most the number of undelivered
//!   messages and at most what the configuration makes possible (failed sends / MessageAttempts,
//!   plus the Updated events when the queue bound was in reach).
//!
//! The summary line reports the discards and that bound.
//!
//! One case in three runs in OCPP 1.6J ([`config16_for`]: the same variants, one connector per
//! EVSE): the CSMS's calls are 1.6 (RemoteStart/StopTransaction with the transactionId it
//! assigned, Reset, ChangeAvailability, TriggerMessage, Get/ChangeConfiguration, ...), invalid
//! 1.6 payloads must get the 1.6 spelling of the violation's code (FormationViolation,
//! OccurenceConstraintViolation, ...), unknown actions (2.0.1 ones among them) NotImplemented,
//! and the end-of-run check is [`check_delivery16`]: per transaction (the test kit says which
//! queued event each 1.6 message was made from) StartTransaction first, retransmitted only
//! identically, then MeterValues and one StopTransaction carrying exactly the transactionId
//! the CSMS assigned to its StartTransaction (the last assignment, if it was sent again), never
//! an id the CSMS had not assigned; every transaction that got an id stopped, those open at a
//! power cycle with reason Reboot/PowerLoss; losses only as counted discards (a StartTransaction
//! discarded after MessageAttempts takes the rest of its transaction with it: 1.6 cannot name
//! it).
//!
//! `PROPERTY_CASES=n` runs more cases (default 300), `PROPERTY_STEPS=n` longer ones (default
//! 200), `PROPERTY_SEED=0x...` replays one case (the seed a failure prints).
//!
//! The fuzz target `station_frames` (fuzz/) compiles this file as a module and drives the same
//! [`Driver`] with fuzzer-chosen operations, so both check the same invariants.
#![allow(dead_code)]

use ocpp_agent::ocpp::clock::{Instant, UtcTime};
use ocpp_agent::ocpp::devmodel::Var;
use ocpp_agent::ocpp::rpc::{self, CallErrorCode, Frame};
use ocpp_agent::ocpp::station::{
    EvseLayout, Input, InputError, Protocol, Registration, StationConfig,
};
use ocpp_agent::ocpp::testkit::{CSMS_EPOCH_MS, Harness, config_with};
use ocpp_agent::ocpp::v16;
use ocpp_agent::ocpp::v201::{self, Action};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// The idToken statuses the fake CSMS can give (IdTokenInfo `AuthorizationStatusEnumType`).
pub const AUTH_STATUSES: &[&str] = &[
    "Accepted",
    "Blocked",
    "ConcurrentTx",
    "Expired",
    "Invalid",
    "NoCredit",
    "NotAllowedTypeEVSE",
    "NotAtThisLocation",
    "NotAtThisTime",
    "Unknown",
];

/// The idTag statuses of a 1.6 CSMS (`AuthorizationStatus`).
pub const AUTH_STATUSES16: &[&str] = &["Accepted", "Blocked", "ConcurrentTx", "Expired", "Invalid"];

/// The actions the station sends (what the fake CSMS can be told to fail).
pub const STATION_ACTIONS: &[Action] = &[
    Action::BootNotification,
    Action::Heartbeat,
    Action::StatusNotification,
    Action::Authorize,
    Action::MeterValues,
    Action::TransactionEvent,
];

pub const BOOT_STATUSES: &[&str] = &["Accepted", "Pending", "Rejected"];

/// CSMS calls the station implements: a valid payload must get a CALLRESULT.
const SUPPORTED: &[&str] = &[
    "RequestStartTransaction",
    "RequestStopTransaction",
    "GetTransactionStatus",
    "ClearCache",
];

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Op {
    /// Virtual time moves on (timers fire at their deadlines).
    Advance(Duration),
    Plug {
        evse: u32,
        connector: u32,
        plugged: bool,
    },
    /// An idToken at an EVSE's reader (`id_token` is the IdTokenType JSON).
    Token {
        evse: u32,
        id_token: Value,
    },
    /// The fake CSMS's answer for an idToken from now on.
    SetAuth {
        token: String,
        status: &'static str,
    },
    /// RequestStartTransaction (F01/F02).
    RemoteStart {
        evse: Option<i64>,
        token: String,
        remote_start_id: i64,
    },
    /// RequestStopTransaction for the transaction on this EVSE, or an unknown id.
    RemoteStop {
        evse: Option<u32>,
    },
    /// GetTransactionStatus for the transaction on this EVSE (an unknown id if none), or
    /// without an id.
    TxStatus {
        evse: Option<u32>,
        with_id: bool,
    },
    ClearCache,
    /// Any text frame, sent as the CSMS.
    Raw(String),
    /// The CSMS finally answers the station's unanswered CALL: with this payload, or (None) a
    /// valid one.
    LateResult(Option<Value>),
    /// ... or answers it with a CALLERROR.
    LateError(String),
    /// The CSMS accepts connections (or refuses them).
    Online(bool),
    /// The CSMS answers requests (or lets them time out).
    Answering(bool),
    /// The CSMS answers WebSocket pings.
    Pings(bool),
    /// These actions are answered with CALLERROR InternalError.
    Failing(Vec<Action>),
    /// What the CSMS answers a BootNotification with.
    BootStatus(&'static str),
    /// The CSMS drops the connection.
    Drop,
    /// The agent restarts from its journal; `clean` = SIGTERM first.
    PowerCycle {
        clean: bool,
    },
}

// ---------------------------------------------------------------------------------------------
// The driver and its invariants
// ---------------------------------------------------------------------------------------------

/// What the station must answer to a frame the CSMS sent.
enum Expect {
    Nothing,
    Error {
        id: String,
        code: CallErrorCode,
    },
    Call {
        id: String,
        action: String,
        payload: Value,
        rejected: bool,
    },
}

/// Counts of what happened, for the summary line.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub transactions: usize,
    pub transaction_events: usize,
    pub power_cycles: usize,
    pub csms_frames: usize,
    /// Messages discarded where the spec allows it (E13.FR.04 / E04.FR.08)...
    pub discarded: u64,
    /// ... the cases where that happened ...
    pub lossy_cases: usize,
    /// ... the most in one case ...
    pub max_case_discards: u64,
    /// ... and the sum of the per-case bounds (see [`check_delivery`]).
    pub discard_bound: u64,
    /// seqNos the CSMS never saw (E04.FR.08 drops before the first transmission).
    pub seq_gaps: u64,
    /// CALLs of the station that found the previous one unanswered (timed out or lost).
    pub after_unanswered: usize,
    /// Late answers to the station's unanswered CALL.
    pub late_answers: usize,
    /// Cases in OCPP 1.6 (their transactions are in `transactions` too) ...
    pub v16_cases: usize,
    /// ... and their transactions ...
    pub v16_transactions: usize,
    /// ... and discards.
    pub v16_discarded: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.transactions += other.transactions;
        self.transaction_events += other.transaction_events;
        self.power_cycles += other.power_cycles;
        self.csms_frames += other.csms_frames;
        self.discarded += other.discarded;
        self.lossy_cases += other.lossy_cases;
        self.max_case_discards = self.max_case_discards.max(other.max_case_discards);
        self.discard_bound += other.discard_bound;
        self.seq_gaps += other.seq_gaps;
        self.after_unanswered += other.after_unanswered;
        self.late_answers += other.late_answers;
        self.v16_cases += other.v16_cases;
        self.v16_transactions += other.v16_transactions;
        self.v16_discarded += other.v16_discarded;
    }
}

/// A harness plus what the invariants need to remember between steps.
pub struct Driver {
    pub h: Harness,
    evses: Vec<(u32, Vec<u32>)>,
    message_timeout: Duration,
    /// The station's last CALL that nobody answered yet: (message id, action, sent at).
    pending: Option<(String, String, Instant)>,
    /// How many of `csms.received` the in-flight check has seen.
    seen_received: usize,
    /// Messages dropped by stations that were power-cycled away.
    dropped_before: u64,
    next_id: u64,
    /// Transactions open at a power cycle, and whether it was clean.
    cycled: Vec<(String, bool)>,
    /// Reboots (Reset) the station asked for that were carried out.
    seen_reboots: usize,
    /// How the CSMS answered each of `csms.received`.
    answers: Vec<Answer>,
    limits: QueueLimits,
    pub stats: Stats,
    protocol: Protocol,
    /// 1.6: the transactionId the CSMS gave in its answer to each of `csms.received` (a
    /// StartTransaction answered at once or late).
    assigned: Vec<Option<i64>>,
    /// 1.6: the fake CSMS's `next_transaction_id` as the answers counted so far make it.
    next16: i64,
}

type Check = Result<(), String>;

impl Driver {
    pub fn new(
        config: StationConfig,
        setup: impl FnOnce(&mut ocpp_agent::ocpp::testkit::FakeCsms),
    ) -> Self {
        let evses = config
            .evses
            .iter()
            .map(|e| (e.id, e.connectors.clone()))
            .collect();
        let message_timeout = config.variables.seconds(Var::MessageTimeout);
        let limits = QueueLimits {
            attempts: config
                .variables
                .int(Var::MessageAttemptsTransactionEvent)
                .max(1) as u64,
            max_queue_bytes: config.max_queue_bytes,
        };
        let protocol = config.protocol;
        let mut d = Driver {
            h: Harness::new_with(config, setup),
            evses,
            message_timeout,
            pending: None,
            seen_received: 0,
            dropped_before: 0,
            next_id: 0,
            cycled: Vec::new(),
            seen_reboots: 0,
            answers: Vec::new(),
            limits,
            stats: Stats::default(),
            protocol,
            assigned: Vec::new(),
            next16: 1,
        };
        d.check_calls().expect("start-up");
        d
    }

    /// (EVSE, connector) pairs of the layout.
    pub fn connectors(&self) -> Vec<(u32, u32)> {
        self.evses
            .iter()
            .flat_map(|(e, cs)| cs.iter().map(move |c| (*e, *c)))
            .collect()
    }

    /// The id of the transaction open on an EVSE.
    pub fn tx_on(&self, evse: u32) -> Option<String> {
        let snapshot = self.h.station.snapshot(self.h.now);
        snapshot
            .evses
            .iter()
            .find(|e| e.id == evse)
            .and_then(|e| e.transaction.as_ref())
            .map(|t| t.id.clone())
    }

    /// 1.6: the transactionId the station keeps for our transaction `tx` (its durable
    /// `v16_transactions` record), once the CSMS assigned one.
    pub fn tx16(&self, tx: &str) -> Option<i64> {
        let (_, text) = self
            .h
            .journal
            .meta
            .iter()
            .find(|(k, _)| k == "v16_transactions")?;
        let record: Value = serde_json::from_str(text).ok()?;
        record["record"]["transactions"][tx]["id"].as_i64()
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("csms-{}", self.next_id)
    }

    /// Applies one operation, then checks the invariants.
    pub fn step(&mut self, op: &Op) -> Check {
        let now = self.h.now;
        match op {
            Op::Advance(by) => self.h.advance(*by),
            Op::Plug {
                evse,
                connector,
                plugged,
            } => {
                let known = self.connectors().contains(&(*evse, *connector));
                let result = self.input(Input::Plug {
                    evse: *evse,
                    connector: *connector,
                    plugged: *plugged,
                });
                match (known, result) {
                    (true, Ok(())) => {}
                    (false, Err(InputError::UnknownConnector { .. })) => {}
                    (_, r) => return Err(format!("plug {evse}/{connector}: {r:?}")),
                }
            }
            Op::Token { evse, id_token } => {
                let known = self.evses.iter().any(|(e, _)| e == evse);
                let valid = v201::validate::validate(&v201::tables::ID_TOKEN, id_token).is_ok()
                    // A 1.6 idTag has at most 20 characters.
                    && (self.protocol == Protocol::V201
                        || id_token["idToken"].as_str().is_some_and(|t| t.chars().count() <= 20));
                let result = self.input(Input::Token {
                    evse: *evse,
                    id_token: id_token.clone(),
                });
                match (known, valid, result) {
                    (true, true, Ok(())) => {}
                    (false, _, Err(InputError::UnknownEvse { .. })) => {}
                    (true, false, Err(InputError::BadToken(_))) => {}
                    (_, _, r) => return Err(format!("token {id_token} at {evse}: {r:?}")),
                }
            }
            Op::SetAuth { token, status } => {
                // 1.6 has five of the statuses (7.2); the others mean Invalid there.
                let status = match (self.protocol, *status) {
                    (Protocol::V16, s) if !AUTH_STATUSES16.contains(&s) => "Invalid",
                    (_, s) => s,
                };
                self.h.csms.set_auth(token, status, None)
            }
            Op::RemoteStart { evse, token, .. } if self.protocol == Protocol::V16 => {
                let mut payload = json!({ "idTag": token });
                if let Some(e) = evse {
                    payload["connectorId"] = json!(e);
                }
                self.call("RemoteStartTransaction", payload)?;
            }
            Op::RemoteStart {
                evse,
                token,
                remote_start_id,
            } => {
                let mut payload = json!({
                    "idToken": {"idToken": token, "type": "Central"},
                    "remoteStartId": remote_start_id,
                });
                if let Some(e) = evse {
                    payload["evseId"] = json!(e);
                }
                self.call("RequestStartTransaction", payload)?;
            }
            Op::RemoteStop { evse } if self.protocol == Protocol::V16 => {
                // An id the CSMS never assigns (it counts from 1) when there is none.
                let id = evse
                    .and_then(|e| self.tx_on(e))
                    .and_then(|tx| self.tx16(&tx))
                    .unwrap_or(1_000_000 + self.next_id as i64);
                self.call("RemoteStopTransaction", json!({ "transactionId": id }))?;
            }
            Op::RemoteStop { evse } => {
                let id = evse
                    .and_then(|e| self.tx_on(e))
                    .unwrap_or_else(|| format!("no-such-tx-{}", self.next_id));
                self.call("RequestStopTransaction", json!({ "transactionId": id }))?;
            }
            Op::TxStatus { evse, with_id } => {
                let payload = if *with_id {
                    let id = evse
                        .and_then(|e| self.tx_on(e))
                        .unwrap_or_else(|| "no-such-tx".into());
                    json!({ "transactionId": id })
                } else {
                    json!({})
                };
                self.call("GetTransactionStatus", payload)?;
            }
            Op::ClearCache => self.call("ClearCache", json!({}))?,
            Op::Raw(text) => self.send(text)?,
            Op::LateResult(payload) => {
                if let Some((id, action, _)) = self.pending.clone() {
                    let at = self.h.csms.received.iter().rposition(|r| r.id == id);
                    // A late StartTransaction answer carries the number the CSMS gave it.
                    let number = at.and_then(|i| self.assigned.get(i).copied().flatten());
                    let payload = match (payload, self.protocol) {
                        (Some(p), _) => p.clone(),
                        (None, Protocol::V201) => valid_answer(&action, now, &self.h),
                        (None, Protocol::V16) => valid_answer16(&action, now, &self.h, number),
                    };
                    self.pending = None;
                    self.stats.late_answers += 1;
                    // Delivered if it came within MessageTimeout; the station may also have
                    // given up on it already (or find the payload invalid): undecided.
                    if let Some(i) = at {
                        self.answers[i] = Answer::Late;
                        if self.protocol == Protocol::V16 && action == "StartTransaction" {
                            // The id it names, if the station can take the answer at all.
                            let schema = v16::Action::StartTransaction.response_schema();
                            self.assigned[i] = v16::validate::validate(schema, &payload)
                                .ok()
                                .and_then(|()| payload["transactionId"].as_i64());
                        }
                    }
                    self.send(&rpc::encode_result(&id, &payload))?;
                }
            }
            Op::LateError(code) => {
                if let Some((id, _, _)) = self.pending.take() {
                    self.stats.late_answers += 1;
                    let text = json!([4, id, code, "late error", {}]).to_string();
                    self.send(&text)?;
                }
            }
            Op::Online(on) => self.h.csms.online = *on,
            Op::Answering(on) => self.h.csms.answering = *on,
            Op::Pings(on) => self.h.csms.answering_pings = *on,
            Op::Failing(actions) => {
                self.h.csms.failing = match self.protocol {
                    Protocol::V201 => actions.iter().map(|a| a.as_str()).collect(),
                    // 1.6 spells TransactionEvent as three messages.
                    Protocol::V16 => actions
                        .iter()
                        .flat_map(|a| match a {
                            Action::TransactionEvent => {
                                vec!["StartTransaction", "MeterValues", "StopTransaction"]
                            }
                            other => vec![other.as_str()],
                        })
                        .collect(),
                };
            }
            Op::BootStatus(status) => self.h.csms.boot_status = status,
            Op::Drop => {
                if self.h.connected {
                    self.pending = None;
                }
                self.h.drop_connection();
            }
            Op::PowerCycle { clean } => self.power_cycle(*clean),
        }
        self.check_calls()?;
        // Output::Reboot (Reset): the shell shuts down cleanly and systemd starts it again.
        while self.h.reboots > self.seen_reboots {
            self.seen_reboots = self.h.reboots;
            self.power_cycle(true);
            self.check_calls()?;
        }
        self.check_durable()
    }

    fn power_cycle(&mut self, clean: bool) {
        let snapshot = self.h.station.snapshot(self.h.now);
        self.dropped_before += snapshot.queue.dropped;
        for e in &snapshot.evses {
            if let Some(t) = &e.transaction {
                self.cycled.push((t.id.clone(), clean));
            }
        }
        self.pending = None;
        self.stats.power_cycles += 1;
        self.h.power_cycle(clean);
    }

    fn input(&mut self, input: Input) -> Result<(), InputError> {
        let result = self.h.station.handle_input(self.h.now, input);
        self.h.settle();
        result
    }

    fn call(&mut self, action: &str, payload: Value) -> Check {
        let id = self.new_id();
        self.send(&rpc::encode_call(&id, action, &payload))
    }

    /// Sends a frame as the CSMS (only over an open connection) and checks the answer.
    pub fn send(&mut self, text: &str) -> Check {
        if !self.h.connected {
            return Ok(());
        }
        self.stats.csms_frames += 1;
        let rejected = self.h.station.registration() == Registration::Rejected;
        let expect = match rpc::decode(text) {
            // 1.6 4.2: while Rejected the station answers no CSMS call at all.
            Ok(Frame::Call { .. }) if rejected && self.protocol == Protocol::V16 => Expect::Nothing,
            Ok(Frame::Call {
                id,
                action,
                payload,
            }) => Expect::Call {
                id,
                action,
                payload,
                rejected,
            },
            Err(e) if e.answer => Expect::Error {
                id: e.id,
                code: e.error.code,
            },
            _ => Expect::Nothing,
        };
        let open_before = self.open_transactions();
        let open16_before = self.open16();
        let before = self.h.answers.len();
        self.h.send_raw(text);
        let answers = &self.h.answers[before..];
        let raw = &self.h.raw_answers[before..];
        check_answer(&expect, answers, raw, self.protocol)
            .and_then(|()| match (&expect, answers) {
                (
                    Expect::Call {
                        action, payload, ..
                    },
                    [
                        Frame::CallResult {
                            payload: result, ..
                        },
                    ],
                ) if self.protocol == Protocol::V16 => {
                    self.check_semantics16(action, payload, result, &open16_before)
                }
                (
                    Expect::Call {
                        action, payload, ..
                    },
                    [
                        Frame::CallResult {
                            payload: result, ..
                        },
                    ],
                ) => self.check_semantics(action, payload, result, &open_before),
                _ => Ok(()),
            })
            .map_err(|e| format!("{e}\n  CSMS sent: {text}"))
    }

    /// The ids of the open transactions.
    fn open_transactions(&self) -> Vec<String> {
        let snapshot = self.h.station.snapshot(self.h.now);
        snapshot
            .evses
            .iter()
            .filter_map(|e| e.transaction.as_ref().map(|t| t.id.clone()))
            .collect()
    }

    /// 1.6: the transactionIds of the open transactions that have one.
    fn open16(&self) -> Vec<i64> {
        self.open_transactions()
            .iter()
            .filter_map(|tx| self.tx16(tx))
            .collect()
    }

    /// 1.6: what the answers of the remote-control calls say agrees with the station's state.
    fn check_semantics16(
        &self,
        action: &str,
        payload: &Value,
        result: &Value,
        open_before: &[i64],
    ) -> Check {
        let status = result["status"].as_str().unwrap_or("");
        let connector = payload["connectorId"].as_f64();
        // 1.6 connectors are our EVSEs (one connector each); 0 is the charge point.
        let exists = |c: f64| self.evses.iter().any(|(id, _)| f64::from(*id) == c);
        let fail = || {
            Err(format!(
                "{action} {payload} answered {result} (connectors {:?}, open transactions {open_before:?})",
                self.evses.iter().map(|(id, _)| id).collect::<Vec<_>>()
            ))
        };
        let missing = |c: Option<f64>| c.is_some_and(|c| !exists(c));
        let ok = match action {
            // 5.11: a connector that does not exist cannot start anything.
            "RemoteStartTransaction" => !missing(connector) || status == "Rejected",
            // 5.12: only a running transaction can be stopped; an accepted stop ends it (unless
            // a late answer of the fuzzer gave two open transactions that id).
            "RemoteStopTransaction" => {
                let id = payload["transactionId"].as_i64();
                let named = open_before.iter().filter(|t| Some(**t) == id).count();
                let ended = named > 1 || !id.is_some_and(|id| self.open16().contains(&id));
                (named > 0 || status == "Rejected") && (status != "Accepted" || ended)
            }
            // 5.2, 5.17, 6.2: a connector that does not exist is refused (0: the charge point).
            "ChangeAvailability" | "TriggerMessage" => {
                !missing(connector.filter(|c| *c != 0.0)) || status == "Rejected"
            }
            "UnlockConnector" => !missing(connector) || status == "NotSupported",
            _ => true,
        };
        if ok { Ok(()) } else { fail() }
    }

    /// What the answers of the remote-control calls say agrees with the station's state.
    fn check_semantics(
        &self,
        action: &str,
        payload: &Value,
        result: &Value,
        open_before: &[String],
    ) -> Check {
        let known_tx = |id: &Value| {
            id.as_str()
                .is_some_and(|id| open_before.iter().any(|t| t == id))
        };
        match action {
            // F01/F02: an EVSE that does not exist cannot start anything.
            "RequestStartTransaction" => {
                let Some(evse) = payload.get("evseId").and_then(Value::as_f64) else {
                    return Ok(());
                };
                let exists = self.evses.iter().any(|(id, _)| f64::from(*id) == evse);
                if !exists && result["status"] != "Rejected" {
                    return Err(format!(
                        "RequestStartTransaction for EVSE {evse}, which does not exist, answered {result}"
                    ));
                }
            }
            // F03: only a running transaction can be stopped; an accepted stop ends it.
            "RequestStopTransaction" => {
                let id = &payload["transactionId"];
                if !known_tx(id) && result["status"] != "Rejected" {
                    return Err(format!(
                        "stopping unknown transaction {id} answered {result}"
                    ));
                }
                if result["status"] == "Accepted"
                    && self.open_transactions().iter().any(|t| id == t)
                {
                    return Err(format!(
                        "transaction {id} still open after an accepted stop"
                    ));
                }
            }
            // E14: ongoingIndicator says whether the transaction runs.
            "GetTransactionStatus" => {
                if let Some(id) = payload.get("transactionId") {
                    let ongoing = result["ongoingIndicator"].as_bool();
                    if ongoing != Some(known_tx(id)) {
                        return Err(format!(
                            "GetTransactionStatus for {id} (open: {open_before:?}) answered {result}"
                        ));
                    }
                }
            }
            _ => {}
        }
        // A request naming an EVSE or connector that does not exist does nothing (B11/B12
        // Reset, G03 ChangeAvailability, F05 UnlockConnector). EVSE id 0 means the whole
        // station where the message allows it.
        let evse = |v: &Value| v.as_f64().filter(|e| *e != 0.0);
        let exists = |e: f64, c: Option<f64>| {
            self.evses.iter().any(|(id, connectors)| {
                f64::from(*id) == e
                    && c.is_none_or(|c| connectors.iter().any(|x| f64::from(*x) == c))
            })
        };
        let (target, ok_status): (Option<(f64, Option<f64>)>, &[&str]) = match action {
            "Reset" => (evse(&payload["evseId"]).map(|e| (e, None)), &["Rejected"]),
            "ChangeAvailability" => (
                evse(&payload["evse"]["id"]).map(|e| (e, payload["evse"]["connectorId"].as_f64())),
                &["Rejected"],
            ),
            "UnlockConnector" => (
                payload["evseId"]
                    .as_f64()
                    .map(|e| (e, payload["connectorId"].as_f64())),
                &["UnknownConnector"],
            ),
            _ => (None, &[]),
        };
        if let Some((e, c)) = target {
            let status = result["status"].as_str().unwrap_or("");
            if !exists(e, c) && !ok_status.contains(&status) {
                return Err(format!(
                    "{action} for EVSE {e} connector {c:?}, which does not exist, answered {result}"
                ));
            }
        }
        Ok(())
    }

    /// At most one CALL of the station in flight. The fake CSMS answers synchronously when
    /// `answering` (or fails the action), so a CALL it did not answer stays in flight until a
    /// late answer, MessageTimeout after it was sent, or a new connection.
    fn check_calls(&mut self) -> Check {
        let csms = &self.h.csms;
        let mut unanswered = 0;
        for r in &csms.received[self.seen_received..] {
            if let Some((id, action, at)) = &self.pending {
                let timed_out = r.at >= *at + self.message_timeout;
                // A connect attempt after the CALL means the connection (and the CALL) was lost.
                // One at the same instant normally came first (connected, then sent); two there
                // can only be a reconnect without back-off after it.
                let attempts = &self.h.connect_attempts;
                let reconnected = attempts.iter().any(|c| c > at && *c <= r.at)
                    || attempts.iter().filter(|c| *c == at).count() >= 2;
                self.stats.after_unanswered += 1;
                if !timed_out && !reconnected {
                    return Err(format!(
                        "two CALLs in flight: {} {} sent at {} ms while {action} {id} (sent at \
                         {} ms) was neither answered nor timed out",
                        r.action,
                        r.id,
                        r.at.as_millis(),
                        at.as_millis()
                    ));
                }
            }
            let failing = csms.failing.contains(&r.action.as_str());
            // The test kit answers at once: a CALLERROR when failing, else a CALLRESULT when
            // answering, else nothing (until a late answer).
            self.answers.push(match (failing, csms.answering) {
                (false, true) => Answer::Accepted,
                _ => Answer::Failed,
            });
            // The fake CSMS numbers the StartTransactions it answers; one it leaves unanswered
            // gets a number too (a CSMS that took it but whose answer is lost or late), which
            // the driver takes from the fake CSMS's count below.
            let numbered =
                self.protocol == Protocol::V16 && r.action == "StartTransaction" && !failing;
            if numbered && !csms.answering {
                unanswered += 1;
            }
            self.assigned.push(numbered.then(|| {
                self.next16 += 1;
                self.next16 - 1
            }));
            let answered = csms.answering || failing;
            self.pending = if answered {
                None
            } else {
                Some((r.id.clone(), r.action.clone(), r.at))
            };
        }
        self.seen_received = csms.received.len();
        if csms.next_transaction_id + unanswered != self.next16 {
            return Err(format!(
                "the CSMS's next transactionId is {} (+{unanswered} unanswered), the driver \
                 counted {}",
                csms.next_transaction_id, self.next16
            ));
        }
        self.h.csms.next_transaction_id = self.next16;
        Ok(())
    }

    /// The station's durable queue and open transactions are what the journal holds, so a
    /// power cycle at this point loses nothing.
    fn check_durable(&self) -> Check {
        let snapshot = self.h.station.snapshot(self.h.now);
        let journal = &self.h.journal;
        if snapshot.queue.depth != journal.queue.len() {
            return Err(format!(
                "the station has {} queued messages, the journal {}",
                snapshot.queue.depth,
                journal.queue.len()
            ));
        }
        let open: BTreeMap<String, u64> = snapshot
            .evses
            .iter()
            .filter_map(|e| e.transaction.as_ref())
            .map(|t| (t.id.clone(), t.next_seq_no))
            .collect();
        let stored: BTreeMap<String, u64> = journal
            .transactions
            .iter()
            .map(|t| (t.tx_id.clone(), t.next_seq_no))
            .collect();
        if open != stored {
            return Err(format!(
                "open transactions (id -> next seqNo) {open:?}, in the journal {stored:?}"
            ));
        }
        Ok(())
    }

    /// Brings the CSMS back, unplugs everything, lets the queue drain, and checks that nothing
    /// was lost.
    pub fn finish(&mut self) -> Check {
        self.step(&Op::Failing(Vec::new()))?;
        self.step(&Op::BootStatus("Accepted"))?;
        self.step(&Op::Online(true))?;
        self.step(&Op::Answering(true))?;
        self.step(&Op::Pings(true))?;
        for (evse, connector) in self.connectors() {
            self.step(&Op::Plug {
                evse,
                connector,
                plugged: false,
            })?;
        }
        let mut drained = false;
        for _ in 0..2 * 24 * 6 {
            self.step(&Op::Advance(Duration::from_secs(600)))?;
            let snapshot = self.h.station.snapshot(self.h.now);
            drained = self.h.connected
                && self.h.station.registration() == Registration::Accepted
                && self.h.journal.queue.is_empty()
                && self.h.journal.transactions.is_empty()
                && snapshot.evses.iter().all(|e| e.transaction.is_none());
            if drained {
                break;
            }
        }
        let snapshot = self.h.station.snapshot(self.h.now);
        if !drained {
            return Err(format!(
                "not drained after two days online: connected {}, {:?}, queue {}, open {:?}",
                self.h.connected,
                self.h.station.registration(),
                self.h.journal.queue.len(),
                snapshot
                    .evses
                    .iter()
                    .filter_map(|e| e.transaction.as_ref().map(|t| &t.id))
                    .collect::<Vec<_>>()
            ));
        }
        let discarded = self.dropped_before + snapshot.queue.dropped;
        if self.protocol == Protocol::V16 {
            return self.finish16(discarded);
        }
        let sent: Vec<Sent> = self
            .h
            .csms
            .received
            .iter()
            .zip(&self.answers)
            .filter(|(r, _)| DURABLE.contains(&r.action.as_str()))
            .map(|(r, a)| Sent {
                action: &r.action,
                payload: &r.payload,
                answer: *a,
            })
            .collect();
        let report = check_delivery(&sent, discarded, &self.limits, &self.cycled)?;
        self.stats.transactions += report.transactions;
        self.stats.transaction_events += report.events;
        self.stats.discarded += discarded;
        self.stats.lossy_cases += usize::from(discarded > 0);
        self.stats.max_case_discards = self.stats.max_case_discards.max(discarded);
        self.stats.discard_bound += report.bound;
        self.stats.seq_gaps += report.gaps;
        Ok(())
    }
}

impl Driver {
    /// The end-of-run delivery check in 1.6 terms ([`check_delivery16`]).
    fn finish16(&mut self, discarded: u64) -> Check {
        let received = &self.h.csms.received;
        let sent: Vec<Sent16> = received
            .iter()
            .zip(&self.answers)
            .zip(&self.assigned)
            .filter(|((r, _), _)| r.queued.is_some() && DURABLE16.contains(&r.action.as_str()))
            .map(|((r, a), id)| Sent16 {
                action: &r.action,
                payload: &r.payload,
                queued: r.queued.as_ref().expect("filtered"),
                answer: *a,
                assigned: *id,
            })
            .collect();
        let report = check_delivery16(&sent, discarded, &self.limits, &self.cycled)?;
        self.stats.transactions += report.transactions;
        self.stats.v16_transactions += report.transactions;
        self.stats.v16_cases += 1;
        self.stats.v16_discarded += discarded;
        self.stats.transaction_events += report.events;
        self.stats.discarded += discarded;
        self.stats.lossy_cases += usize::from(discarded > 0);
        self.stats.max_case_discards = self.stats.max_case_discards.max(discarded);
        self.stats.discard_bound += report.bound;
        self.stats.seq_gaps += report.gaps;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery of the durable queue
// ---------------------------------------------------------------------------------------------

/// The actions of the durable queue (E13 retries and discards them) in these scenarios:
/// transaction messages and security events. (Log and firmware status notifications are durable
/// only during an upload or update job, which the scenarios do not start; triggered ones are
/// volatile.)
pub const DURABLE: &[&str] = &["TransactionEvent", "SecurityEventNotification"];

/// How the fake CSMS answered one CALL of the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A CALLRESULT at once: delivered.
    Accepted,
    /// A CALLERROR, or nothing (timed out, or lost with the connection).
    Failed,
    /// A CALLRESULT later (`Op::LateResult`): delivered if within MessageTimeout, else a failure.
    Late,
}

/// One CALL of a durable-queue action, as the CSMS saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub action: &'a str,
    pub payload: &'a Value,
    pub answer: Answer,
}

/// What bounds the discards: MessageAttempts[TransactionEvent] (E13.FR.04) and the queue's
/// byte bound (E04.FR.08).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub attempts: u64,
    pub max_queue_bytes: u64,
}

/// What [`check_delivery`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub transactions: usize,
    pub events: usize,
    /// seqNos the CSMS never saw.
    pub gaps: u64,
    /// Messages it saw but never accepted.
    pub lost: u64,
    /// The most discards the configuration allows for what happened.
    pub bound: u64,
}

/// One message of the durable queue (all transmissions of one TransactionEvent, or of one
/// SecurityEventNotification payload).
struct Msg<'a> {
    payload: &'a Value,
    kind: &'a str,
    accepted: bool,
    late: bool,
    /// Transmissions that got no CALLRESULT at once (CALLERROR, none, late): an upper bound on
    /// the failed delivery attempts E13 counts (a CALL lost with the connection is no attempt).
    failed_sends: u64,
}

impl<'a> Msg<'a> {
    fn new(payload: &'a Value, kind: &'a str) -> Self {
        Msg {
            payload,
            kind,
            accepted: false,
            late: false,
            failed_sends: 0,
        }
    }

    fn record(&mut self, answer: Answer) {
        match answer {
            Answer::Accepted => self.accepted = true,
            Answer::Failed => self.failed_sends += 1,
            Answer::Late => {
                self.late = true;
                self.failed_sends += 1;
            }
        }
    }
}

/// Checks what the CSMS saw of the durable queue after it drained (every message delivered or
/// discarded), given the station's count of discards (E13.FR.04 after the last attempt,
/// E04.FR.08 above the queue bound) and the transactions open at power cycles (id, clean).
pub fn check_delivery(
    sent: &[Sent],
    discarded: u64,
    limits: &QueueLimits,
    cycled: &[(String, bool)],
) -> Result<DeliveryReport, String> {
    // Per transaction, its messages in the order of their first transmission.
    let mut txs: BTreeMap<&str, Vec<(u64, Msg)>> = BTreeMap::new();
    let mut others: Vec<Msg> = Vec::new();
    let mut report = DeliveryReport::default();
    for s in sent {
        if s.action != "TransactionEvent" {
            // Identical payloads count as one message: retransmissions, or events alike in
            // type, time and techInfo (the discard bounds below allow for those).
            match others.iter_mut().find(|m| m.payload == s.payload) {
                Some(m) => m.record(s.answer),
                None => {
                    let mut m = Msg::new(s.payload, s.action);
                    m.record(s.answer);
                    others.push(m);
                }
            }
            continue;
        }
        report.events += 1;
        let e = s.payload;
        let tx = e["transactionInfo"]["transactionId"]
            .as_str()
            .ok_or_else(|| format!("TransactionEvent without transactionId: {e}"))?;
        let seq = e["seqNo"]
            .as_u64()
            .ok_or_else(|| format!("TransactionEvent without seqNo: {e}"))?;
        let msgs = txs.entry(tx).or_default();
        if let Some((_, m)) = msgs.iter_mut().find(|(q, _)| *q == seq) {
            if m.payload != e {
                return Err(format!(
                    "transaction {tx}: seqNo {seq} sent twice, differently:\n  {}\n  {e}",
                    m.payload
                ));
            }
            if m.accepted {
                return Err(format!(
                    "transaction {tx}: seqNo {seq} sent again after the CSMS accepted it"
                ));
            }
            m.record(s.answer);
            continue;
        }
        match msgs.last() {
            None if seq != 0 => {
                return Err(format!(
                    "transaction {tx}: first seqNo sent is {seq}, not 0 (Started is never dropped)"
                ));
            }
            Some((last, _)) if seq <= *last => {
                return Err(format!(
                    "transaction {tx}: seqNo {seq} first sent after {last} (out of order)"
                ));
            }
            _ => {}
        }
        let kind = e["eventType"].as_str().unwrap_or("?");
        let mut m = Msg::new(e, kind);
        m.record(s.answer);
        msgs.push((seq, m));
    }
    report.transactions = txs.len();

    let mut updated_slots = 0;
    for (tx, msgs) in &txs {
        let kinds: Vec<&str> = msgs.iter().map(|(_, m)| m.kind).collect();
        let well_formed = kinds.len() >= 2
            && kinds[0] == "Started"
            && kinds[kinds.len() - 1] == "Ended"
            && kinds[1..kinds.len() - 1].iter().all(|k| *k == "Updated");
        if !well_formed {
            return Err(format!(
                "transaction {tx}: events {kinds:?} (want Started, Updated..., Ended)"
            ));
        }
        // Started is 0 and Ended the last seqNo: everything between is Updated, seen or not.
        let last = msgs[msgs.len() - 1].0;
        report.gaps += last + 1 - msgs.len() as u64;
        updated_slots += last - 1;
    }

    // E04.FR.08 removes messages only while the queue is over its bound, and stops as soon as
    // it is not; what stays is sent later. So a queue that dropped anything later sent (about)
    // max_queue_bytes: if the CSMS saw less than half of that in all, nothing was dropped.
    let all = || {
        txs.values()
            .flat_map(|msgs| msgs.iter().map(|(_, m)| m))
            .chain(others.iter())
    };
    let seen_bytes: u64 = all().map(|m| m.payload.to_string().len() as u64).sum();
    let e04_possible = seen_bytes > limits.max_queue_bytes / 2;
    if report.gaps > 0 && !e04_possible {
        return Err(format!(
            "{} seqNos never sent, but the queue never came near its bound ({seen_bytes} bytes \
             sent in all, bound {})",
            report.gaps, limits.max_queue_bytes
        ));
    }
    let mut undecided = 0;
    let mut failed_sends = 0;
    for m in all() {
        failed_sends += m.failed_sends;
        let other = m.kind == "SecurityEventNotification";
        if other {
            // Possibly several alike messages (two start-ups at one instant): each one
            // discarded took MessageAttempts failed sends (E04.FR.08 drops only Updated).
            undecided += m.failed_sends / limits.attempts;
        }
        if m.accepted {
            continue;
        }
        if m.late {
            undecided += u64::from(!other);
            continue;
        }
        report.lost += 1;
        if m.failed_sends < limits.attempts {
            // Not discarded by E13.FR.04, which takes MessageAttempts failed attempts: only
            // E04.FR.08 remains, which drops only Updated events of a full queue.
            if m.kind != "Updated" || !e04_possible {
                return Err(format!(
                    "never accepted after {} failed sends (MessageAttempts {}; E04.FR.08 \
                     possible: {e04_possible}): {}",
                    m.failed_sends, limits.attempts, m.payload
                ));
            }
        }
    }
    let undelivered = report.gaps + report.lost;
    if discarded < undelivered {
        return Err(format!(
            "{undelivered} messages never delivered ({} seqNos never sent, {} never accepted), \
             but the station discarded only {discarded}: silent loss",
            report.gaps, report.lost
        ));
    }
    // Never accepted: counted once in `undelivered`, possibly more often in `undecided`.
    let others_lost = others.iter().filter(|m| !m.accepted && !m.late).count() as u64;
    let possible = undelivered - others_lost + undecided;
    if discarded > possible {
        return Err(format!(
            "the station discarded {discarded} messages, but only {undelivered} were not \
             delivered (at most {possible}, with late answers and repeated security events)"
        ));
    }
    report.bound = failed_sends / limits.attempts + if e04_possible { updated_slots } else { 0 };
    if discarded > report.bound {
        return Err(format!(
            "{discarded} messages discarded, more than the configuration allows ({} failed \
             sends / MessageAttempts {}, E04.FR.08 possible: {e04_possible})",
            failed_sends, limits.attempts
        ));
    }

    for (tx, clean) in cycled {
        let ended = txs
            .get(tx.as_str())
            .and_then(|msgs| msgs.iter().find(|(_, m)| m.kind == "Ended"))
            .map(|(_, m)| m.payload)
            .ok_or_else(|| format!("transaction {tx} open at a power cycle never ended"))?;
        let reason = if *clean { "Reboot" } else { "PowerLoss" };
        if ended["triggerReason"] != "AbnormalCondition"
            || ended["transactionInfo"]["stoppedReason"] != reason
        {
            return Err(format!(
                "transaction {tx} open at a power cycle (clean: {clean}) ended with {ended}"
            ));
        }
    }
    Ok(report)
}

/// The 1.6 messages of the durable queue: a TransactionEvent is sent as one of the first
/// three (or not at all: an Updated without 1.6 meter values), a security event as itself.
pub const DURABLE16: &[&str] = &[
    "StartTransaction",
    "MeterValues",
    "StopTransaction",
    "SecurityEventNotification",
];

/// One 1.6 CALL of a queued message, as the CSMS saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sent16<'a> {
    pub action: &'a str,
    pub payload: &'a Value,
    /// The queued 2.0.1 message it was made from (which transaction, which seqNo).
    pub queued: &'a Value,
    pub answer: Answer,
    /// The transactionId the CSMS answered a StartTransaction with (at once or late).
    pub assigned: Option<i64>,
}

/// One transaction as a 1.6 CSMS saw it.
#[derive(Default)]
struct Tx16Log<'a> {
    /// Its messages by seqNo of the queued event, in the order of their first transmission.
    msgs: Vec<(u64, Msg<'a>)>,
    /// (answer, transactionId given) of each StartTransaction transmission.
    starts: Vec<(Answer, Option<i64>)>,
    /// The transactionId each MeterValues / StopTransaction named.
    ids: Vec<i64>,
}

/// [`check_delivery`] in 1.6 terms, given every transactionId the CSMS assigned:
/// * per transaction, StartTransaction first (retransmissions identical, never after the
///   CSMS accepted it), then MeterValues and one StopTransaction, all with the id the CSMS
///   assigned to its StartTransaction (the last one if it was sent again), never an id the
///   CSMS did not assign (or had not yet);
/// * a transaction whose StartTransaction got an id stopped; one open at a power cycle stopped
///   with reason Reboot (clean) or PowerLoss;
/// * a StartTransaction that never got an id was discarded after MessageAttempts failed sends
///   (counted); its later messages cannot name it and are not sent;
/// * the discard bounds of [`check_delivery`]; seqNos never sent are no loss here (an Updated
///   without meter values has no 1.6 message), but count as possible E04.FR.08 discards.
pub fn check_delivery16(
    sent: &[Sent16],
    discarded: u64,
    limits: &QueueLimits,
    cycled: &[(String, bool)],
) -> Result<DeliveryReport, String> {
    let mut txs: BTreeMap<&str, Tx16Log> = BTreeMap::new();
    let mut others: Vec<Msg> = Vec::new();
    let mut report = DeliveryReport::default();
    // The ids assigned before the message at hand was sent.
    let mut given: BTreeSet<i64> = BTreeSet::new();
    let mut seen_bytes = 0u64;
    for s in sent {
        let q = s.queued;
        let Some(tx) = q["transactionInfo"]["transactionId"].as_str() else {
            seen_bytes += q.to_string().len() as u64;
            match others.iter_mut().find(|m| m.payload == s.payload) {
                Some(m) => m.record(s.answer),
                None => {
                    let mut m = Msg::new(s.payload, s.action);
                    m.record(s.answer);
                    others.push(m);
                }
            }
            continue;
        };
        report.events += 1;
        let seq = q["seqNo"]
            .as_u64()
            .ok_or_else(|| format!("queued TransactionEvent without seqNo: {q}"))?;
        let kind = q["eventType"].as_str().unwrap_or("?");
        let want = match kind {
            "Started" => "StartTransaction",
            "Ended" => "StopTransaction",
            _ => "MeterValues",
        };
        if s.action != want {
            return Err(format!(
                "transaction {tx}: its {kind} event sent as {}: {}",
                s.action, s.payload
            ));
        }
        let log = txs.entry(tx).or_default();
        if s.action == "StartTransaction" {
            log.starts.push((s.answer, s.assigned));
        } else {
            let id = s.payload["transactionId"]
                .as_i64()
                .ok_or_else(|| format!("{} without transactionId: {}", s.action, s.payload))?;
            if !given.contains(&id) {
                return Err(format!(
                    "transaction {tx}: {} with transactionId {id}, which the CSMS had not \
                     assigned (it had {given:?}): {}",
                    s.action, s.payload
                ));
            }
            log.ids.push(id);
        }
        given.extend(s.assigned);
        if let Some((_, m)) = log.msgs.iter_mut().find(|(q, _)| *q == seq) {
            if m.payload != s.payload {
                return Err(format!(
                    "transaction {tx}: seqNo {seq} sent twice, differently:\n  {}\n  {}",
                    m.payload, s.payload
                ));
            }
            if m.accepted {
                return Err(format!(
                    "transaction {tx}: seqNo {seq} ({}) sent again after the CSMS accepted it",
                    s.action
                ));
            }
            m.record(s.answer);
            continue;
        }
        seen_bytes += q.to_string().len() as u64;
        match log.msgs.last() {
            None if seq != 0 => {
                return Err(format!(
                    "transaction {tx}: first message sent is seqNo {seq} ({}), not its \
                     StartTransaction",
                    s.action
                ));
            }
            Some((last, _)) if seq <= *last => {
                return Err(format!(
                    "transaction {tx}: seqNo {seq} ({}) first sent after {last} (out of order)",
                    s.action
                ));
            }
            _ => {}
        }
        let mut m = Msg::new(s.payload, kind);
        m.record(s.answer);
        log.msgs.push((seq, m));
    }
    report.transactions = txs.len();

    let mut updated_slots = 0;
    let mut never_started = 0;
    for (tx, log) in &txs {
        let kinds: Vec<&str> = log.msgs.iter().map(|(_, m)| m.kind).collect();
        // The ids the station may have taken: that of the StartTransaction the CSMS accepted
        // (sent last, checked above), else any of those answered late.
        let allowed: Vec<i64> = match log
            .starts
            .iter()
            .rev()
            .find(|(a, _)| *a == Answer::Accepted)
        {
            Some((_, id)) => id.iter().copied().collect(),
            None => log
                .starts
                .iter()
                .filter(|(a, _)| *a == Answer::Late)
                .filter_map(|(_, id)| *id)
                .collect(),
        };
        let accepted = log.starts.iter().any(|(a, _)| *a == Answer::Accepted);
        if let Some(id) = log
            .ids
            .iter()
            .find(|id| !allowed.contains(id) || **id != log.ids[0])
        {
            return Err(format!(
                "transaction {tx}: named transactionId {id} (all: {:?}), but the CSMS answered \
                 its StartTransaction with {:?}",
                log.ids, log.starts
            ));
        }
        let ended = kinds.len() >= 2
            && kinds[0] == "Started"
            && kinds[kinds.len() - 1] == "Ended"
            && kinds[1..kinds.len() - 1].iter().all(|k| *k == "Updated");
        if !ended {
            // Only a StartTransaction that never got an id (discarded) leaves the rest unsent.
            let start = &log.msgs[0].1;
            if kinds != ["Started"] || accepted || start.failed_sends < limits.attempts {
                return Err(format!(
                    "transaction {tx}: sent {kinds:?} (want StartTransaction, MeterValues..., \
                     StopTransaction; StartTransaction answers {:?}, MessageAttempts {})",
                    log.starts, limits.attempts
                ));
            }
            never_started += 1;
            continue;
        }
        let last = log.msgs[log.msgs.len() - 1].0;
        report.gaps += last + 1 - log.msgs.len() as u64;
        updated_slots += last - 1;
    }

    // As in check_delivery: E04.FR.08 drops only from a queue near its bound.
    let e04_possible = seen_bytes > limits.max_queue_bytes / 2;
    let all = || {
        txs.values()
            .flat_map(|log| log.msgs.iter().map(|(_, m)| m))
            .chain(others.iter())
    };
    let mut undecided = 0;
    let mut failed_sends = 0;
    for m in all() {
        failed_sends += m.failed_sends;
        let other = m.kind == "SecurityEventNotification";
        if other {
            undecided += m.failed_sends / limits.attempts;
        }
        if m.accepted {
            continue;
        }
        if m.late {
            undecided += u64::from(!other);
            continue;
        }
        report.lost += 1;
        if m.failed_sends < limits.attempts && (m.kind != "Updated" || !e04_possible) {
            return Err(format!(
                "never accepted after {} failed sends (MessageAttempts {}; E04.FR.08 \
                 possible: {e04_possible}): {}",
                m.failed_sends, limits.attempts, m.payload
            ));
        }
    }
    if discarded < report.lost {
        return Err(format!(
            "{} messages never accepted ({never_started} StartTransactions), but the station \
             discarded only {discarded}: silent loss",
            report.lost
        ));
    }
    // Never sent: an Updated without meter values (no 1.6 message), or dropped by E04.FR.08.
    let dropped_unsent = if e04_possible { report.gaps } else { 0 };
    let others_lost = others.iter().filter(|m| !m.accepted && !m.late).count() as u64;
    let possible = report.lost - others_lost + undecided + dropped_unsent;
    if discarded > possible {
        return Err(format!(
            "the station discarded {discarded} messages, but only {} were not delivered (at \
             most {possible}, with late answers, repeated security events and E04.FR.08)",
            report.lost
        ));
    }
    report.bound = failed_sends / limits.attempts + if e04_possible { updated_slots } else { 0 };
    if discarded > report.bound {
        return Err(format!(
            "{discarded} messages discarded, more than the configuration allows ({} failed \
             sends / MessageAttempts {}, E04.FR.08 possible: {e04_possible})",
            failed_sends, limits.attempts
        ));
    }

    for (tx, clean) in cycled {
        let log = txs
            .get(tx.as_str())
            .ok_or_else(|| format!("transaction {tx} open at a power cycle was never sent"))?;
        let Some((_, stop)) = log.msgs.iter().find(|(_, m)| m.kind == "Ended") else {
            continue; // its StartTransaction was discarded (checked above)
        };
        let reason = if *clean { "Reboot" } else { "PowerLoss" };
        if stop.payload["reason"] != reason {
            return Err(format!(
                "transaction {tx} open at a power cycle (clean: {clean}) stopped with {}",
                stop.payload
            ));
        }
    }
    Ok(report)
}

/// A valid answer of the CSMS to one of the station's requests.
pub fn valid_answer(action: &str, now: Instant, h: &Harness) -> Value {
    let time = UtcTime::from_unix_millis(CSMS_EPOCH_MS + now.as_millis() as i64).to_rfc3339();
    match action {
        "BootNotification" => {
            json!({"currentTime": time, "interval": h.csms.interval, "status": h.csms.boot_status})
        }
        "Heartbeat" => json!({ "currentTime": time }),
        "Authorize" => json!({"idTokenInfo": {"status": "Accepted"}}),
        _ => json!({}),
    }
}

/// The CALLERROR codes of OCPP-J 1.6 (table 7), as the wire spells them.
const V16_CODES: &[&str] = &[
    "NotImplemented",
    "NotSupported",
    "InternalError",
    "ProtocolError",
    "SecurityError",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "TypeConstraintViolation",
    "GenericError",
];

/// 1.6 CSMS calls the station implements: a valid payload must get a CALLRESULT (a
/// RemoteStartTransaction's chargingProfile is not supported).
fn supported16(action: &str, payload: &Value) -> bool {
    match action {
        "RemoteStartTransaction" => payload.get("chargingProfile").is_none(),
        _ => [
            "RemoteStopTransaction",
            "ClearCache",
            "Reset",
            "ChangeAvailability",
            "UnlockConnector",
            "TriggerMessage",
            "GetConfiguration",
            "ChangeConfiguration",
            "DataTransfer",
        ]
        .contains(&action),
    }
}

fn check_answer(expect: &Expect, answers: &[Frame], raw: &[String], protocol: Protocol) -> Check {
    if protocol == Protocol::V16 {
        return check_answer16(expect, answers, raw);
    }
    let too_long = |text: &&String| {
        matches!(rpc::decode(text), Ok(Frame::CallError { description, .. })
            if description.chars().count() > 255)
    };
    if let Some(text) = raw.iter().find(too_long) {
        return Err(format!("CALLERROR description over 255 characters: {text}"));
    }
    let (id, answer) = match (expect, answers) {
        (Expect::Nothing, []) => return Ok(()),
        (Expect::Nothing, _) => {
            return Err(format!("answered a CALLRESULT/CALLERROR with {raw:?}"));
        }
        (Expect::Error { id, .. } | Expect::Call { id, .. }, [answer]) => (id, answer),
        (_, _) => return Err(format!("want exactly one answer, got {raw:?}")),
    };
    let (answer_id, result) = match answer {
        Frame::CallResult { id, payload } => (id, Ok(payload)),
        Frame::CallError { id, code, .. } => {
            if CallErrorCode::from_name(code).is_none() {
                return Err(format!("unknown CALLERROR code in {raw:?}"));
            }
            (id, Err(code.as_str()))
        }
        Frame::Call { .. } => return Err(format!("answered with a CALL: {raw:?}")),
    };
    if answer_id != id {
        return Err(format!("answer {raw:?} does not carry the id {id:?}"));
    }
    match expect {
        Expect::Nothing => unreachable!(),
        Expect::Error { code, .. } => match result {
            Err(c) if c == code.as_str() => Ok(()),
            _ => Err(format!("want CALLERROR {code}, got {raw:?}")),
        },
        Expect::Call {
            action,
            payload,
            rejected,
            ..
        } => {
            let known = Action::from_name(action);
            let want_error = if *rejected {
                Some("SecurityError")
            } else {
                match known {
                    None => Some("NotImplemented"),
                    Some(a) => v201::validate::validate(a.request_schema(), payload)
                        .err()
                        .map(|v| v.kind.as_str()),
                }
            };
            match (result, want_error, known) {
                (Err(c), Some(want), _) if c == want => Ok(()),
                (Err(c), None, _) if !SUPPORTED.contains(&action.as_str()) => match c {
                    "NotSupported" | "NotImplemented" | "GenericError" | "InternalError" => Ok(()),
                    _ => Err(format!("a valid {action} answered {raw:?}")),
                },
                (Ok(p), None, Some(a)) => v201::validate::validate(a.response_schema(), p)
                    .map_err(|v| format!("invalid {action} response {raw:?}: {v}")),
                _ => Err(format!(
                    "{action}: want {}, got {raw:?}",
                    want_error.unwrap_or("a CALLRESULT")
                )),
            }
        }
    }
}

/// [`check_answer`] in 1.6: the 1.6 schemas and the 1.6 spelling of the error codes.
fn check_answer16(expect: &Expect, answers: &[Frame], raw: &[String]) -> Check {
    let (id, answer) = match (expect, answers) {
        (Expect::Nothing, []) => return Ok(()),
        (Expect::Nothing, _) => {
            return Err(format!("answered a CALLRESULT/CALLERROR with {raw:?}"));
        }
        (Expect::Error { id, .. } | Expect::Call { id, .. }, [answer]) => (id, answer),
        (_, _) => return Err(format!("want exactly one answer, got {raw:?}")),
    };
    let (answer_id, result) = match answer {
        Frame::CallResult { id, payload } => (id, Ok(payload)),
        Frame::CallError {
            id,
            code,
            description,
            ..
        } => {
            if !V16_CODES.contains(&code.as_str()) {
                return Err(format!("not a 1.6 CALLERROR code in {raw:?}"));
            }
            if description.chars().count() > 255 {
                return Err(format!(
                    "CALLERROR description over 255 characters: {raw:?}"
                ));
            }
            (id, Err(code.as_str()))
        }
        Frame::Call { .. } => return Err(format!("answered with a CALL: {raw:?}")),
    };
    if answer_id != id {
        return Err(format!("answer {raw:?} does not carry the id {id:?}"));
    }
    match expect {
        Expect::Nothing => unreachable!(),
        Expect::Error { code, .. } => match result {
            Err(c) if c == v16::call_error_code(*code) => Ok(()),
            _ => Err(format!(
                "want CALLERROR {}, got {raw:?}",
                v16::call_error_code(*code)
            )),
        },
        Expect::Call {
            action,
            payload,
            rejected,
            ..
        } => {
            let known = v16::Action::from_name(action);
            let want_error = if *rejected {
                Some("SecurityError")
            } else {
                match known {
                    None => Some("NotImplemented"),
                    Some(a) => v16::validate::validate(a.request_schema(), payload)
                        .err()
                        .map(|v| v16::error_code(v.kind)),
                }
            };
            match (result, want_error, known) {
                (Err(c), Some(want), _) if c == want => Ok(()),
                (Err(c), None, _) if !supported16(action, payload) => match c {
                    "NotSupported" | "NotImplemented" | "GenericError" | "InternalError" => Ok(()),
                    _ => Err(format!("a valid {action} answered {raw:?}")),
                },
                (Ok(p), None, Some(a)) => v16::validate::validate(a.response_schema(), p)
                    .map_err(|v| format!("invalid {action} response {raw:?}: {v}")),
                _ => Err(format!(
                    "{action}: want {}, got {raw:?}",
                    want_error.unwrap_or("a CALLRESULT")
                )),
            }
        }
    }
}

/// A valid answer of a 1.6 CSMS to one of the station's requests; a StartTransaction gets the
/// number the CSMS gave it when it came.
pub fn valid_answer16(action: &str, now: Instant, h: &Harness, number: Option<i64>) -> Value {
    let time = UtcTime::from_unix_millis(CSMS_EPOCH_MS + now.as_millis() as i64).to_rfc3339();
    let accepted = json!({"status": "Accepted"});
    match action {
        "BootNotification" => {
            json!({"currentTime": time, "interval": h.csms.interval, "status": h.csms.boot_status})
        }
        "Heartbeat" => json!({ "currentTime": time }),
        "Authorize" => json!({ "idTagInfo": accepted }),
        "StartTransaction" => {
            json!({ "transactionId": number.unwrap_or(i64::MAX), "idTagInfo": accepted })
        }
        "DataTransfer" => json!({ "status": "UnknownVendorId" }),
        _ => json!({}),
    }
}

// ---------------------------------------------------------------------------------------------
// Random scenarios
// ---------------------------------------------------------------------------------------------

/// The core's seedable SplitMix64, with the choices the scenarios make.
pub struct Rng(ocpp_agent::ocpp::timer::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(ocpp_agent::ocpp::timer::Rng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `*pick(items)`: spelt out, rustc 1.95 needs the deref and its clippy calls it needless
    /// (explicit_auto_deref).
    pub fn pick_copied<T: Copy>(&mut self, items: &[T]) -> T {
        *self.pick(items)
    }
}

/// Station configurations the cases rotate through. All but the default one (5) raise
/// MessageAttempts[TransactionEvent] so that E13.FR.04 discards (allowed loss) stay rare; the
/// last one has a queue bound of a few messages, so that offline periods reach E04.FR.08.
pub fn config_for(variant: u64) -> StationConfig {
    const ATTEMPTS: (&str, &str) = ("OCPPCommCtrlr.MessageAttempts[TransactionEvent]", "100");
    let vars: &[(&str, &str)] = match variant % 7 {
        0 => &[ATTEMPTS],
        1 => &[ATTEMPTS, ("TxCtrlr.TxStartPoint", "Authorized")],
        2 => &[
            ATTEMPTS,
            ("AuthCtrlr.LocalPreAuthorize", "true"),
            ("AuthCtrlr.OfflineTxForUnknownIdEnabled", "true"),
            ("TxCtrlr.TxBeforeAcceptedEnabled", "true"),
        ],
        3 => &[
            ATTEMPTS,
            ("TxCtrlr.TxStartPoint", "PowerPathClosed"),
            ("TxCtrlr.StopTxOnInvalidId", "false"),
            ("TxCtrlr.MaxEnergyOnInvalidId", "500"),
        ],
        4 => &[
            ATTEMPTS,
            ("AlignedDataCtrlr.Interval", "900"),
            ("SampledDataCtrlr.TxEndedInterval", "120"),
            ("AuthCtrlr.AuthorizeRemoteStart", "true"),
            ("OCPPCommCtrlr.WebSocketPingInterval", "0"),
        ],
        5 => &[],
        _ => &[ATTEMPTS, ("SampledDataCtrlr.TxUpdatedInterval", "60")],
    };
    let mut config = config_with(vars);
    if variant % 7 == 6 {
        config.max_queue_bytes = 4096;
    }
    config
}

/// [`config_for`]'s variant in OCPP 1.6J: two EVSEs of one connector each (1.6 connectors
/// 1 and 2), the device model as in 2.0.1 (the 1.6 keys are views of it).
pub fn config16_for(variant: u64) -> StationConfig {
    let mut config = config_for(variant);
    config.protocol = Protocol::V16;
    config.evses = (1..=2)
        .map(|id| EvseLayout {
            id,
            connectors: vec![1],
            connector_types: Vec::new(),
        })
        .collect();
    config
}

const TOKENS: &[&str] = &["TAG-A", "TAG-B", "TAG-C", "TAG-D"];

fn token_json(rng: &mut Rng) -> Value {
    match rng.below(20) {
        0 => json!({"idToken": "x".repeat(37), "type": "ISO14443"}), // too long
        1 => json!({"idToken": "TAG-A", "type": "Bogus"}),
        2 => json!({"idToken": "TAG-A"}),
        _ => {
            json!({"idToken": rng.pick(TOKENS), "type": rng.pick(&["ISO14443", "Central", "eMAID"])})
        }
    }
}

/// A CSMS frame the station must survive: broken JSON, wrong frame shapes, unknown actions,
/// invalid payloads, actions it does not implement, answers to nothing.
fn garbage(rng: &mut Rng, id: &str) -> String {
    let start = json!({"idToken": {"idToken": "TAG-A", "type": "Central"}, "remoteStartId": 7});
    match rng.below(16) {
        0 => String::new(),
        1 => rng
            .pick(&[
                "[",
                "[2",
                "{}",
                "null",
                "[]",
                "\"x\"",
                "[2,\"a\"]",
                "[5,\"a\",{}]",
            ])
            .to_string(),
        2 => {
            let len = rng.below(40) as usize;
            (0..len)
                .map(|_| char::from(rng.range(0x20, 0x7e) as u8))
                .collect()
        }
        3 => format!(r#"[2,"{id}","NoSuchAction",{{}}]"#),
        4 => format!(r#"[2,"{}","ClearCache",{{}}]"#, "i".repeat(37)),
        5 => format!(r#"[2,"{id}","ClearCache",[]]"#),
        6 => format!(r#"[2,"{id}","ClearCache",{{}},"extra"]"#),
        7 => format!(r#"[3,"nobody-{id}",{{}}]"#),
        8 => format!(r#"[4,"nobody-{id}","InternalError","",{{}}]"#),
        9 => format!(r#"[3,"{id}"]"#),
        10 => rpc::encode_call(id, "Reset", &json!({"type": "Immediate"})),
        11 => rpc::encode_call(
            id,
            "TriggerMessage",
            &json!({"requestedMessage": "Heartbeat"}),
        ),
        12 => rpc::encode_call(id, "GetVariables", &json!({"getVariableData": []})),
        _ => {
            // A RequestStartTransaction with one thing wrong.
            let mut p = start;
            match rng.below(6) {
                0 => p["idToken"]["type"] = json!("Bogus"),
                1 => p["remoteStartId"] = json!("7"),
                2 => p["unexpected"] = json!(1),
                3 => p["evseId"] = json!(1.5),
                4 => {
                    p.as_object_mut().map(|o| o.remove("idToken"));
                }
                _ => p["idToken"]["idToken"] = json!("x".repeat(37)),
            }
            rpc::encode_call(id, "RequestStartTransaction", &p)
        }
    }
}

/// Device-model variables a CSMS may set, with good and bad values: none of them can leave a
/// transaction without a way to end (TxStopPoint & co. stay as configured).
const SETTABLE: &[(&str, &str, &[&str])] = &[
    (
        "OCPPCommCtrlr",
        "HeartbeatInterval",
        &["30", "600", "0", "x"],
    ),
    ("OCPPCommCtrlr", "WebSocketPingInterval", &["0", "20"]),
    ("OCPPCommCtrlr", "OfflineThreshold", &["10", "600"]),
    ("OCPPCommCtrlr", "MessageTimeout", &["5"]), // read-only
    ("SampledDataCtrlr", "TxUpdatedInterval", &["0", "30", "-1"]),
    (
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        &["Power.Active.Import", "Bogus"],
    ),
    ("AlignedDataCtrlr", "Interval", &["0", "300"]),
    ("AuthCtrlr", "LocalPreAuthorize", &["true", "false"]),
    ("AuthCacheCtrlr", "Enabled", &["true", "false", "maybe"]),
    ("TxCtrlr", "EVConnectionTimeOut", &["30", "120"]),
    ("NoSuchCtrlr", "Nothing", &["1"]),
];

/// A management call (B, C, D, F, G, N blocks) with random arguments, valid or not.
fn management(rng: &mut Rng, id: &str, evse: u32) -> String {
    // Now and then an id beyond u32 that truncates to a real EVSE (the fuzzer's finding): it
    // must be unknown, never EVSE `evse`.
    let evse: i64 = if rng.chance(3) {
        (1i64 << 32) + i64::from(evse)
    } else {
        i64::from(evse)
    };
    let connector = if rng.chance(3) {
        (1i64 << 32) + rng.range(0, 3) as i64
    } else {
        rng.range(0, 3) as i64
    };
    let (action, payload) = match rng.below(10) {
        0 => {
            let (component, variable, _) = rng.pick(SETTABLE);
            (
                "GetVariables",
                json!({"getVariableData": [{"component": {"name": component}, "variable": {"name": variable}}]}),
            )
        }
        1 => {
            let (component, variable, values) = rng.pick(SETTABLE);
            (
                "SetVariables",
                json!({"setVariableData": [{"attributeValue": rng.pick(values), "component": {"name": component}, "variable": {"name": variable}}]}),
            )
        }
        2 => {
            let mut p = json!({"type": rng.pick(&["Immediate", "OnIdle"])});
            if rng.chance(50) {
                p["evseId"] = json!(evse);
            }
            ("Reset", p)
        }
        3 => {
            let mut p = json!({"operationalStatus": rng.pick(&["Operative", "Inoperative"])});
            if rng.chance(70) {
                p["evse"] = json!({"id": evse});
                if rng.chance(50) {
                    p["evse"]["connectorId"] = json!(connector);
                }
            }
            ("ChangeAvailability", p)
        }
        4 => {
            let message = rng.pick(&[
                "BootNotification",
                "Heartbeat",
                "StatusNotification",
                "MeterValues",
                "TransactionEvent",
                "LogStatusNotification",
            ]);
            let mut p = json!({"requestedMessage": message});
            if rng.chance(60) {
                p["evse"] = json!({"id": evse, "connectorId": connector});
            }
            ("TriggerMessage", p)
        }
        5 => (
            "UnlockConnector",
            json!({"evseId": evse, "connectorId": connector}),
        ),
        6 => (
            "GetBaseReport",
            json!({"requestId": rng.below(100), "reportBase": rng.pick(&["ConfigurationInventory", "FullInventory", "SummaryInventory"])}),
        ),
        7 => {
            let entry = json!({
                "idToken": {"idToken": rng.pick(TOKENS), "type": "ISO14443"},
                "idTokenInfo": {"status": rng.pick(AUTH_STATUSES)},
            });
            (
                "SendLocalList",
                json!({"versionNumber": rng.below(5), "updateType": rng.pick(&["Full", "Differential"]), "localAuthorizationList": [entry]}),
            )
        }
        8 => ("GetLocalListVersion", json!({})),
        _ => (
            "DataTransfer",
            json!({"vendorId": rng.pick(&["org.example", "x"]), "messageId": "m", "data": {"n": 1}}),
        ),
    };
    rpc::encode_call(id, action, &payload)
}

/// [`garbage`] for a 1.6 station: broken frames, unknown actions (2.0.1 ones among them),
/// invalid 1.6 payloads.
fn garbage16(rng: &mut Rng, id: &str) -> String {
    let start = json!({"idTag": "TAG-A", "connectorId": 1});
    match rng.below(16) {
        0..=9 => garbage(rng, id).replace("RequestStartTransaction", "RemoteStartTransaction"),
        10 => rpc::encode_call(id, "GetTransactionStatus", &json!({})),
        11 => rpc::encode_call(id, "Reset", &json!({"type": "Immediate"})), // 2.0.1's type
        12 => rpc::encode_call(id, "RemoteStopTransaction", &json!({"transactionId": "1"})),
        _ => {
            // A RemoteStartTransaction with one thing wrong.
            let mut p = start;
            match rng.below(6) {
                0 => p["idTag"] = json!(5),
                1 => p["connectorId"] = json!("1"),
                2 => p["unexpected"] = json!(1),
                3 => p["connectorId"] = json!(1.5),
                4 => {
                    p.as_object_mut().map(|o| o.remove("idTag"));
                }
                _ => p["idTag"] = json!("x".repeat(21)),
            }
            rpc::encode_call(id, "RemoteStartTransaction", &p)
        }
    }
}

/// 1.6 configuration keys a CSMS may change, with good and bad values (none can leave a
/// transaction without a way to end, nor changes MessageAttempts under the driver).
const KEYS16: &[(&str, &[&str])] = &[
    ("HeartbeatInterval", &["30", "600", "0", "x"]),
    ("WebSocketPingInterval", &["0", "20"]),
    ("MeterValueSampleInterval", &["0", "30", "-1"]),
    ("MeterValuesSampledData", &["Power.Active.Import", "Bogus"]),
    ("ClockAlignedDataInterval", &["0", "300"]),
    ("LocalPreAuthorize", &["true", "false"]),
    ("AuthorizationCacheEnabled", &["true", "false", "maybe"]),
    ("ConnectionTimeOut", &["30", "120"]),
    ("TransactionMessageRetryInterval", &["5"]),
    ("NumberOfConnectors", &["3"]), // read-only
    ("NoSuchKey", &["1"]),
];

/// [`management`] in 1.6: the Core, Local Auth List and Remote Trigger calls.
fn management16(rng: &mut Rng, id: &str, evse: u32) -> String {
    // Now and then a connector id beyond u32 that truncates to a real one.
    let connector: i64 = match rng.below(10) {
        0 => (1i64 << 32) + i64::from(evse),
        1 => 0,
        _ => i64::from(evse),
    };
    let (action, payload) = match rng.below(10) {
        0 => {
            let mut p = json!({});
            if rng.chance(70) {
                let keys: Vec<&str> = (0..rng.range(1, 3)).map(|_| rng.pick(KEYS16).0).collect();
                p["key"] = json!(keys);
            }
            ("GetConfiguration", p)
        }
        1 => {
            let (key, values) = rng.pick(KEYS16);
            (
                "ChangeConfiguration",
                json!({"key": key, "value": rng.pick(values)}),
            )
        }
        2 => ("Reset", json!({"type": rng.pick(&["Hard", "Soft"])})),
        3 => (
            "ChangeAvailability",
            json!({"connectorId": connector, "type": rng.pick(&["Operative", "Inoperative"])}),
        ),
        4 => {
            let message = rng.pick(&[
                "BootNotification",
                "DiagnosticsStatusNotification",
                "FirmwareStatusNotification",
                "Heartbeat",
                "MeterValues",
                "StatusNotification",
            ]);
            let mut p = json!({"requestedMessage": message});
            if rng.chance(60) {
                p["connectorId"] = json!(connector);
            }
            ("TriggerMessage", p)
        }
        5 => ("UnlockConnector", json!({"connectorId": connector})),
        6 => {
            let entry = json!({
                "idTag": rng.pick(TOKENS),
                "idTagInfo": {"status": rng.pick(&["Accepted", "Blocked", "Expired", "Invalid"])},
            });
            (
                "SendLocalList",
                json!({"listVersion": rng.below(5), "updateType": rng.pick(&["Full", "Differential"]), "localAuthorizationList": [entry]}),
            )
        }
        7 => ("GetLocalListVersion", json!({})),
        8 => ("ClearCache", json!({})),
        _ => (
            "DataTransfer",
            json!({"vendorId": rng.pick(&["org.example", "x"]), "messageId": "m", "data": "n=1"}),
        ),
    };
    rpc::encode_call(id, action, &payload)
}

fn random_op(rng: &mut Rng, d: &Driver) -> Op {
    let evse = |rng: &mut Rng| {
        if rng.chance(5) {
            rng.pick(&[0, 3, 99])
        } else {
            &d.evses[rng.below(d.evses.len() as u64) as usize].0
        }
        .to_owned()
    };
    match rng.below(100) {
        0..=29 => {
            let ms = match rng.below(10) {
                0..=3 => rng.below(5_000),
                4..=6 => rng.range(5_000, 120_000),
                7..=8 => rng.range(120_000, 600_000),
                _ => rng.range(600_000, 1_800_000),
            };
            Op::Advance(Duration::from_millis(ms))
        }
        30..=44 => {
            let (evse, connector) = if rng.chance(5) {
                (rng.below(4) as u32, rng.below(4) as u32)
            } else {
                *rng.pick(&d.connectors())
            };
            Op::Plug {
                evse,
                connector,
                plugged: rng.chance(55),
            }
        }
        45..=52 => Op::Token {
            evse: evse(rng),
            id_token: if d.protocol == Protocol::V16 && rng.chance(5) {
                // Valid in 2.0.1, too long for a 1.6 idTag (20).
                json!({"idToken": "T".repeat(rng.range(21, 36) as usize), "type": "ISO14443"})
            } else {
                token_json(rng)
            },
        },
        53..=55 => Op::SetAuth {
            token: rng.pick(TOKENS).to_string(),
            status: rng.pick_copied(AUTH_STATUSES),
        },
        56..=60 => Op::RemoteStart {
            evse: if rng.chance(30) {
                None
            } else if rng.chance(3) {
                Some((1i64 << 32) + i64::from(evse(rng)))
            } else {
                Some(i64::from(evse(rng)))
            },
            token: rng.pick(TOKENS).to_string(),
            remote_start_id: rng.below(1000) as i64,
        },
        61..=65 => Op::RemoteStop {
            evse: rng.chance(80).then(|| evse(rng)),
        },
        66..=68 => Op::TxStatus {
            evse: rng.chance(80).then(|| evse(rng)),
            with_id: rng.chance(70),
        },
        69 => Op::ClearCache,
        70..=73 => {
            let id = format!("g-{}", rng.below(1 << 20));
            Op::Raw(match d.protocol {
                Protocol::V201 => garbage(rng, &id),
                Protocol::V16 => garbage16(rng, &id),
            })
        }
        74..=76 => {
            let id = format!("m-{}", rng.below(1 << 20));
            let evse = evse(rng);
            Op::Raw(match d.protocol {
                Protocol::V201 => management(rng, &id, evse),
                Protocol::V16 => management16(rng, &id, evse),
            })
        }
        77..=78 => Op::LateResult(None),
        79 => Op::LateResult(Some(json!({"unexpected": true}))),
        80 => Op::LateError(
            rng.pick(&["InternalError", "NotSupported", "Bogus"])
                .to_string(),
        ),
        81..=83 => Op::Online(rng.chance(60)),
        84..=87 => Op::Answering(rng.chance(60)),
        88 => Op::Pings(rng.chance(70)),
        89..=90 => Op::Failing(if rng.chance(50) {
            Vec::new()
        } else {
            vec![*rng.pick(STATION_ACTIONS)]
        }),
        91 => Op::BootStatus(if rng.chance(70) {
            "Accepted"
        } else {
            rng.pick_copied(BOOT_STATUSES)
        }),
        92..=95 => Op::Drop,
        _ => Op::PowerCycle {
            clean: rng.chance(50),
        },
    }
}

/// Runs one case; on failure returns the step (the final drain is step `steps`) and why.
fn run_case(seed: u64, steps: usize, ops: &mut Vec<Op>) -> Result<Stats, (usize, String)> {
    let mut rng = Rng::new(seed);
    // One case in three in 1.6; the 2.0.1 cases stay what they were for the same seed.
    let variant = rng.next_u64();
    let config = if (variant >> 32) % 3 == 0 {
        config16_for(variant)
    } else {
        config_for(variant)
    };
    let mut d = Driver::new(config, |_| {});
    for step in 0..steps {
        let op = random_op(&mut rng, &d);
        ops.push(op.clone());
        d.step(&op).map_err(|e| (step, e))?;
    }
    d.finish().map_err(|e| (steps, e))?;
    Ok(d.stats)
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// Runs the cases `shard`, `shard + SHARDS`, ... (the test harness runs shards in parallel).
fn run_shard(shard: u64) {
    let cases = env_u64("PROPERTY_CASES").unwrap_or(300);
    let steps = env_u64("PROPERTY_STEPS").unwrap_or(200) as usize;
    let seeds: Vec<(u64, u64)> = match env_u64("PROPERTY_SEED") {
        Some(seed) if shard == 0 => vec![(0, seed)],
        Some(_) => Vec::new(),
        None => {
            let mut base = Rng::new(0x0C99_2001);
            (0..cases)
                .map(|case| (case, base.next_u64()))
                .filter(|(case, _)| case % SHARDS == shard)
                .collect()
        }
    };
    let mut total = Stats::default();
    for &(case, seed) in &seeds {
        let mut ops = Vec::new();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_case(seed, steps, &mut ops)
        }));
        let (step, why) = match outcome {
            Ok(Ok(stats)) => {
                total.add(&stats);
                continue;
            }
            Ok(Err(failure)) => failure,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                (ops.len().saturating_sub(1), format!("panic: {why}"))
            }
        };
        let mut recent = String::new();
        for (i, op) in ops.iter().enumerate().skip(ops.len().saturating_sub(12)) {
            let _ = writeln!(recent, "  step {i}: {op:?}");
        }
        panic!(
            "case {case} failed at step {step} of {steps} (step {steps} = the final drain): \
             {why}\nlast steps:\n{recent}replay: PROPERTY_SEED={seed:#x} PROPERTY_STEPS={steps} \
             cargo test --test property"
        );
    }
    println!(
        "shard {shard}: {} cases x {steps} steps ({} in 1.6): {} transactions ({} in 1.6; {} \
         TransactionEvents, as 1.6 messages there), {} power cycles, {} CSMS frames, {} CALLs after an unanswered one, {} late answers; {} \
         messages discarded as E13/E04 allow ({} in 1.6; bound {}), in {} cases, at most {} in \
         one, {} seqNos never sent",
        seeds.len(),
        total.v16_cases,
        total.transactions,
        total.v16_transactions,
        total.transaction_events,
        total.power_cycles,
        total.csms_frames,
        total.after_unanswered,
        total.late_answers,
        total.discarded,
        total.v16_discarded,
        total.discard_bound,
        total.lossy_cases,
        total.max_case_discards,
        total.seq_gaps,
    );
}

const SHARDS: u64 = 4;

#[test]
fn random_scenarios_keep_the_invariants_0() {
    run_shard(0);
}

#[test]
fn random_scenarios_keep_the_invariants_1() {
    run_shard(1);
}

#[test]
fn random_scenarios_keep_the_invariants_2() {
    run_shard(2);
}

#[test]
fn random_scenarios_keep_the_invariants_3() {
    run_shard(3);
}

#[test]
fn the_driver_catches_two_calls_in_flight() {
    // The in-flight check itself: a CALL "sent" while another is unanswered is reported.
    let mut d = Driver::new(config_for(0), |_| {});
    d.step(&Op::Answering(false)).unwrap();
    d.step(&Op::Plug {
        evse: 1,
        connector: 1,
        plugged: true,
    })
    .unwrap();
    let first = d.h.csms.received.last().unwrap().clone();
    let mut second = first.clone();
    second.id = "forged".into();
    d.h.csms.received.push(second);
    let err = d.step(&Op::Advance(Duration::from_secs(1))).unwrap_err();
    assert!(err.contains("two CALLs in flight"), "{err}");
}

// The delivery checker against fabricated CSMS logs: each rule must be able to fail, also in a
// case with discards (the checks used to be skipped there).
#[cfg(test)]
mod delivery_check {
    use super::*;

    fn te(tx: &str, seq: u64, kind: &str) -> Value {
        json!({"eventType": kind, "seqNo": seq, "triggerReason": "Authorized",
               "transactionInfo": {"transactionId": tx}})
    }

    const LIMITS: QueueLimits = QueueLimits {
        attempts: 3,
        max_queue_bytes: 1 << 20,
    };

    fn deliver(
        log: &[(Value, Answer)],
        discarded: u64,
        limits: QueueLimits,
    ) -> Result<DeliveryReport, String> {
        let sent: Vec<Sent> = log
            .iter()
            .map(|(payload, answer)| Sent {
                action: "TransactionEvent",
                payload,
                answer: *answer,
            })
            .collect();
        check_delivery(&sent, discarded, &limits, &[])
    }

    use Answer::{Accepted as Ok_, Failed as Fail};

    #[test]
    fn the_delivery_check_accepts_a_complete_log_and_counted_discards() {
        let ok = [
            (te("a", 0, "Started"), Ok_),
            (te("a", 1, "Updated"), Fail),
            (te("a", 1, "Updated"), Ok_),
            (te("a", 2, "Ended"), Ok_),
        ];
        let r = deliver(&ok, 0, LIMITS).unwrap();
        assert_eq!((r.transactions, r.events, r.gaps, r.lost), (1, 4, 0, 0));
        // An Updated discarded after MessageAttempts (3) failed sends (E13.FR.04): one discard.
        let lossy = [
            (te("a", 0, "Started"), Ok_),
            (te("a", 1, "Updated"), Fail),
            (te("a", 1, "Updated"), Fail),
            (te("a", 1, "Updated"), Fail),
            (te("a", 2, "Ended"), Ok_),
        ];
        let r = deliver(&lossy, 1, LIMITS).unwrap();
        assert_eq!((r.lost, r.bound), (1, 1));
    }

    #[test]
    fn the_delivery_check_catches_bad_logs_despite_discards() {
        let e13 = |seq, kind| {
            vec![
                (te("a", seq, kind), Fail),
                (te("a", seq, kind), Fail),
                (te("a", seq, kind), Fail),
            ]
        };
        let case = |parts: Vec<Vec<(Value, Answer)>>| parts.concat();
        let fails = |log: &[(Value, Answer)], discarded, limits, want: &str| {
            let err = deliver(log, discarded, limits).expect_err(want);
            assert!(err.contains(want), "want {want:?}, got {err}");
        };
        let started = || vec![(te("a", 0, "Started"), Ok_)];
        let ended = |seq| vec![(te("a", seq, "Ended"), Ok_)];

        // A seqNo retransmitted with other content, in a case with an allowed discard.
        let mut changed = te("a", 2, "Updated");
        changed["offline"] = json!(true);
        let log = case(vec![
            started(),
            e13(1, "Updated"),
            vec![(te("a", 2, "Updated"), Fail), (changed, Ok_)],
            ended(3),
        ]);
        fails(&log, 1, LIMITS, "sent twice, differently");

        // Out of order, a duplicate after acceptance, a transaction not beginning with Started.
        let log = case(vec![
            started(),
            e13(2, "Updated"),
            vec![(te("a", 1, "Updated"), Ok_)],
            ended(3),
        ]);
        fails(&log, 1, LIMITS, "out of order");
        let log = case(vec![started(), e13(1, "Updated"), ended(2), ended(2)]);
        fails(&log, 1, LIMITS, "sent again after the CSMS accepted it");
        let log = case(vec![vec![(te("a", 1, "Updated"), Ok_)], ended(2)]);
        fails(&log, 1, LIMITS, "first seqNo sent is 1");

        // Ended missing, or not last.
        let log = case(vec![
            started(),
            e13(1, "Updated"),
            vec![(te("a", 2, "Updated"), Ok_)],
        ]);
        fails(&log, 1, LIMITS, "want Started, Updated..., Ended");
        let log = case(vec![
            started(),
            ended(1),
            vec![(te("a", 2, "Updated"), Ok_)],
        ]);
        fails(&log, 0, LIMITS, "want Started, Updated..., Ended");

        // The Ended event never accepted, and not discarded: silent loss.
        let log = case(vec![started(), e13(1, "Ended")]);
        fails(&log, 0, LIMITS, "silent loss");
        // Discarded after fewer than MessageAttempts failures (E04.FR.08 cannot drop an Ended).
        let log = case(vec![started(), vec![(te("a", 1, "Ended"), Fail)]]);
        fails(&log, 1, LIMITS, "never accepted after 1 failed sends");

        // A seqNo never sent: E04.FR.08 only, which needs a queue near its bound.
        let log = case(vec![started(), ended(2)]);
        fails(&log, 1, LIMITS, "seqNos never sent");
        let tiny = QueueLimits {
            attempts: 3,
            max_queue_bytes: 100,
        };
        assert_eq!(deliver(&log, 1, tiny).unwrap().gaps, 1);
        fails(&log, 0, tiny, "silent loss");

        // More discards than messages not delivered, or than the configuration allows.
        let log = case(vec![started(), e13(1, "Updated"), ended(2)]);
        fails(&log, 2, LIMITS, "only 1 were not delivered");
        // One send answered late: it may have been a timeout, but one failure is not
        // MessageAttempts (3) of them.
        let late = case(vec![
            started(),
            e13(1, "Updated"),
            vec![(te("a", 2, "Updated"), Answer::Late)],
            ended(3),
        ]);
        fails(&late, 2, LIMITS, "more than the configuration allows");
        let late = case(vec![
            started(),
            e13(1, "Updated"),
            vec![
                (te("a", 2, "Updated"), Fail),
                (te("a", 2, "Updated"), Fail),
                (te("a", 2, "Updated"), Answer::Late),
            ],
            ended(3),
        ]);
        assert_eq!(deliver(&late, 2, LIMITS).unwrap().bound, 2);
        let hundred = QueueLimits {
            attempts: 100,
            ..LIMITS
        };
        fails(&late, 2, hundred, "never accepted after 3 failed sends");
        let log = case(vec![
            started(),
            e13(1, "Updated"),
            vec![(te("a", 2, "Updated"), Answer::Late)],
            ended(3),
        ]);
        let mut tiny_many = tiny;
        tiny_many.attempts = 100;
        // 4 failed sends / 100 attempts = 0, plus 2 Updated slots (E04 possible): at most 2.
        fails(&log, 3, tiny_many, "only 1 were not delivered");
        assert_eq!(deliver(&log, 2, tiny_many).unwrap().bound, 2);
    }

    /// A 1.6 log: (1.6 action, transactionId it names or was given, answer, queued event).
    type Log16 = Vec<(&'static str, i64, Answer, Value)>;

    fn deliver16(
        log: &Log16,
        discarded: u64,
        cycled: &[(String, bool)],
    ) -> Result<DeliveryReport, String> {
        let payloads: Vec<Value> = log
            .iter()
            .map(|(action, id, _, q)| match *action {
                "StartTransaction" => json!({"connectorId": 1, "idTag": "A", "meterStart": 0,
                    "timestamp": "2025-01-01T00:00:00Z"}),
                "StopTransaction" => json!({"transactionId": id, "meterStop": 0,
                    "timestamp": "2025-01-01T00:00:00Z",
                    "reason": q["transactionInfo"]["stoppedReason"].as_str().unwrap_or("Local")}),
                _ => json!({"connectorId": 1, "transactionId": id, "meterValue": [], "seq": q["seqNo"]}),
            })
            .collect();
        let sent: Vec<Sent16> = log
            .iter()
            .zip(&payloads)
            .map(|((action, id, answer, q), payload)| Sent16 {
                action,
                payload,
                queued: q,
                answer: *answer,
                assigned: (*action == "StartTransaction" && *answer != Answer::Failed)
                    .then_some(*id),
            })
            .collect();
        check_delivery16(&sent, discarded, &LIMITS, cycled)
    }

    #[test]
    fn the_1_6_delivery_check_accepts_a_complete_log_and_catches_bad_ones() {
        let start = |id, answer| ("StartTransaction", id, answer, te("a", 0, "Started"));
        let meter = |id, seq| ("MeterValues", id, Ok_, te("a", seq, "Updated"));
        let stop = |id, seq| ("StopTransaction", id, Ok_, te("a", seq, "Ended"));
        let fails = |log: &Log16, discarded, cycled: &[(String, bool)], want: &str| {
            let err = deliver16(log, discarded, cycled).expect_err(want);
            assert!(err.contains(want), "want {want:?}, got {err}");
        };
        // Sent again after a lost answer: the id of the answer taken (2) from then on.
        let ok: Log16 = vec![
            start(1, Fail),
            start(2, Ok_),
            meter(2, 1),
            meter(2, 3),
            stop(2, 4),
        ];
        let r = deliver16(&ok, 0, &[]).unwrap();
        assert_eq!((r.transactions, r.events, r.gaps, r.lost), (1, 5, 1, 0));
        // A late answer the station may have taken.
        assert!(deliver16(&vec![start(7, Answer::Late), stop(7, 1)], 0, &[]).is_ok());

        // An id the CSMS gave another StartTransaction, or never gave.
        let other: Log16 = vec![
            ("StartTransaction", 1, Ok_, te("b", 0, "Started")),
            start(2, Ok_),
            stop(1, 1),
        ];
        fails(&other, 0, &[], "answered its StartTransaction with");
        fails(
            &vec![start(1, Ok_), stop(5, 1)],
            0,
            &[],
            "which the CSMS had not assigned",
        );
        // Mixed ids, a stop missing, a start sent again after it was accepted.
        fails(
            &vec![start(1, Ok_), meter(1, 1), stop(2, 2)],
            0,
            &[],
            "had not assigned",
        );
        fails(
            &vec![start(1, Ok_), meter(1, 1)],
            0,
            &[],
            "want StartTransaction",
        );
        fails(
            &vec![start(1, Ok_), start(2, Ok_), stop(2, 1)],
            0,
            &[],
            "after the CSMS accepted it",
        );
        // A StartTransaction never answered: counted after MessageAttempts (3) failures only,
        // and then nothing else of it can be sent.
        let lost: Log16 = vec![start(0, Fail), start(0, Fail), start(0, Fail)];
        assert_eq!(deliver16(&lost, 1, &[]).unwrap().lost, 1);
        fails(&lost, 0, &[], "silent loss");
        fails(&lost[..2].to_vec(), 1, &[], "want StartTransaction");
        // A MeterValues never accepted and not discarded.
        let mut silent = ok.clone();
        silent[2].2 = Fail;
        fails(&silent, 0, &[], "never accepted after 1 failed sends");
        // Open at a power cycle: PowerLoss (unclean) or Reboot (clean).
        let mut cut = te("a", 4, "Ended");
        cut["transactionInfo"]["stoppedReason"] = json!("PowerLoss");
        let mut cycled = ok.clone();
        cycled[4].3 = cut;
        assert!(deliver16(&cycled, 0, &[("a".into(), false)]).is_ok());
        fails(&cycled, 0, &[("a".into(), true)], "open at a power cycle");
        fails(&ok, 0, &[("a".into(), false)], "open at a power cycle");
    }

    #[test]
    fn the_delivery_check_counts_security_events_alike_as_possibly_several() {
        let sen = json!({"timestamp": "2025-01-01T00:00:00Z", "type": "StartupOfTheDevice"});
        let sent = |answers: &[Answer]| -> Vec<(Value, Answer)> {
            answers.iter().map(|a| (sen.clone(), *a)).collect()
        };
        let check = |log: &[(Value, Answer)], discarded| {
            let sent: Vec<Sent> = log
                .iter()
                .map(|(payload, answer)| Sent {
                    action: "SecurityEventNotification",
                    payload,
                    answer: *answer,
                })
                .collect();
            check_delivery(&sent, discarded, &LIMITS, &[])
        };
        // Two start-ups at one instant, both discarded after 3 failed sends each.
        let log = sent(&[Fail; 6]);
        assert_eq!(check(&log, 2).unwrap().lost, 1);
        assert!(check(&log, 3).unwrap_err().contains("at most 2"));
        assert!(check(&log, 0).unwrap_err().contains("silent loss"));
        // One delivered, one discarded; fewer than MessageAttempts failures lose nothing.
        assert!(check(&sent(&[Fail, Fail, Fail, Ok_]), 1).is_ok());
        let err = check(&sent(&[Fail, Fail]), 1).unwrap_err();
        assert!(err.contains("never accepted after 2 failed sends"), "{err}");
    }
}
