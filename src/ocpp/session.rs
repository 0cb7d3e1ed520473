//! The link to the CSMS (part 4 and B01-B04, G02): connecting with back-off (OCPP-J 5.3),
//! registration by BootNotification, heartbeats and pings, the one CALL in flight, and the two
//! send queues (volatile requests, and the durable queue of `outbox`).
//!
//! The state is [`Session`]; the operations are methods of [`Ctx`], since sending needs the
//! timers, the effects queue and the device model that every block shares.

use super::blocks::transactions::AuthPurpose;
use super::clock::{Instant, UtcTime};
use super::ctx::{CoreEvent, Ctx};
use super::devmodel::Var;
use super::model::{ConnectorStatus, IdToken};
use super::network::Network;
use super::outbox::{Failure, Outbox};
use super::persist::{Batch, EventKind, PersistOp, QueuedMessage, QueuedMeta};
use super::rpc;
use super::snapshot::QueueSnapshot;
use super::station::{ConnectFailure, ConnectionState, Output, Protocol, Registration};
use super::timer::Timer;
use super::v201::to_payload;
use super::v201::{self, Action};
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// How long to wait before retrying a BootNotification that failed or timed out, or that was
/// answered with interval 0 (B02.FR.07, B03.FR.05: our own interval, not flooding the CSMS).
const BOOT_RETRY_FALLBACK: Duration = Duration::from_secs(30);

/// What a volatile request is, so its answer can be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    BootNotification,
    Heartbeat,
    StatusNotification {
        connector: usize,
        status: ConnectorStatus,
    },
    Authorize {
        evse: usize,
        id_token: IdToken,
        purpose: AuthPurpose,
    },
    MeterValues,
    NotifyReport,
    /// Connector.Problem of a connector (its index) became `problem`.
    NotifyEvent {
        connector: usize,
        problem: bool,
    },
    SignCertificate,
    /// Only checked against its response schema (triggered LogStatusNotification, ...).
    Other(Action),
}

/// A request that is not worth keeping across an outage (rebuilt from state when needed).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) kind: RequestKind,
    pub(crate) action: Action,
    pub(crate) payload: Value,
    /// Asked for by the CSMS (TriggerMessage, GetBaseReport): may go out before Accepted
    /// (B02.FR.02).
    pub(crate) triggered: bool,
}

/// A volatile request in the queue, with its place in the order of generation: every durable
/// message with `queue_seq <= after` was generated before it (see [`Ctx::pump`]).
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) request: Request,
    pub(crate) after: u64,
}

#[derive(Debug)]
pub(crate) enum InFlightKind {
    Volatile(Request),
    Queued(QueuedMeta),
}

#[derive(Debug)]
pub(crate) struct InFlight {
    id: String,
    kind: InFlightKind,
    /// What went on the wire when it was translated to 1.6: the action and payload its answer
    /// is read against.
    pub(crate) sent16: Option<(super::v16::Action, Value)>,
}

impl InFlight {
    fn action(&self) -> &str {
        match &self.kind {
            InFlightKind::Volatile(r) => r.action.as_str(),
            InFlightKind::Queued(m) => &m.action,
        }
    }
}

/// The state of the link.
pub struct Session {
    pub(crate) connection: ConnectionState,
    /// Failed connection attempts since the last good connection (the back-off exponent).
    pub(crate) reconnect_attempts: u32,
    pub(crate) offline_since: Option<Instant>,
    pub(crate) awaiting_pong: bool,
    pub(crate) registration: Registration,
    pub(crate) boot_reason: v201::BootReasonEnum,
    /// A BootNotification should go out as soon as the link allows.
    pub(crate) boot_due: bool,
    /// The next BootNotification is the one TriggerMessage asked for: reason `Triggered`
    /// (BootReasonEnumType) for that one only; later retries carry `boot_reason` again.
    pub(crate) boot_triggered: bool,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) outbox: Outbox,
    pub(crate) max_queue_bytes: u64,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) network: Network,
    /// The network profile slot the CSMS accepted us on.
    pub(crate) accepted_slot: Option<u32>,
    /// Close the connection shortly after the answer to the current CSMS call is out (new
    /// credentials).
    pub(crate) reconnect_after_answer: bool,
    /// A station Reset waits for what is queued to be answered (see `reboot_after_delivery`).
    pub(crate) reboot_pending: bool,
}

impl Session {
    pub(crate) fn new(
        boot_reason: v201::BootReasonEnum,
        heartbeat_interval: Duration,
        outbox: Outbox,
        max_queue_bytes: u64,
        network: Network,
    ) -> Self {
        Session {
            connection: ConnectionState::Offline,
            reconnect_attempts: 0,
            offline_since: None,
            awaiting_pong: false,
            registration: Registration::None,
            boot_reason,
            boot_due: true,
            boot_triggered: false,
            heartbeat_interval,
            queue: VecDeque::new(),
            outbox,
            max_queue_bytes,
            in_flight: None,
            network,
            accepted_slot: None,
            reconnect_after_answer: false,
            reboot_pending: false,
        }
    }
}

impl Ctx {
    /// MessageTimeout: the connection profile's, else the device model's (it is configured in
    /// the network connection profile, OCPPCommCtrlr.MessageTimeout).
    pub(crate) fn message_timeout(&self) -> Duration {
        match self.link.network.current().message_timeout_s {
            0 => self.vars.seconds(Var::MessageTimeout),
            s => Duration::from_secs(u64::from(s)),
        }
    }

    /// The security profile in use: the one of the profile being (or last) connected with.
    pub(crate) fn security_profile(&self) -> u8 {
        self.link.network.current().security_profile
    }

    pub fn ping_interval(&self) -> Duration {
        self.vars.seconds(Var::WebSocketPingInterval)
    }

    /// Whether requests other than BootNotification may go out (B01.FR.08, B02.FR.02).
    pub(crate) fn can_send_normal(&self) -> bool {
        self.link.connection == ConnectionState::Connected
            && self.link.registration == Registration::Accepted
    }

    pub(crate) fn is_accepted(&self) -> bool {
        self.link.registration == Registration::Accepted
    }

    fn go_offline(&mut self, now: Instant) {
        self.link.connection = ConnectionState::Offline;
        self.link.offline_since = Some(now);
        self.link.awaiting_pong = false;
        for t in [
            Timer::Ping,
            Timer::PongTimeout,
            Timer::Heartbeat,
            Timer::CallTimeout,
        ] {
            self.timers.stop(t);
        }
        if let Some(f) = self.link.in_flight.take() {
            debug!(action = f.action(), "request lost with the connection");
            if let InFlightKind::Volatile(r) = f.kind {
                self.volatile_failed(now, r);
            }
            // A queued message in flight stays at the head; a lost connection is not a
            // delivery attempt (E13 counts only what the CSMS failed to process).
        }
        // Heartbeats and status reports are not worth keeping: statuses are re-derived from
        // what the CSMS acknowledged when the link is back (B04).
        let dropped: Vec<Queued> = self.link.queue.drain(..).collect();
        for q in dropped {
            self.volatile_failed(now, q.request);
        }
        for c in &mut self.model.connectors {
            c.queued = None;
        }
        self.forget_statuses16();
        self.mark_queue_offline();
        self.schedule_reconnect(now);
    }

    /// E11.FR.07: what is still queued when the connection goes down is marked offline. The
    /// head is left alone: it may have been on the wire already, and a retransmission must be
    /// identical so the CSMS can recognise it.
    fn mark_queue_offline(&mut self) {
        let batch: Batch = self
            .link
            .outbox
            .take_offline_candidates()
            .into_iter()
            .map(|queue_seq| PersistOp::MarkOffline { queue_seq })
            .collect();
        if !batch.is_empty() {
            self.outputs.push_back(Output::Persist(batch));
        }
    }

    /// OCPP-J 5.3 (part 4): RetryBackOffWaitMinimum, doubled after every failed attempt up to
    /// RetryBackOffRepeatTimes times, plus a fresh random part up to RetryBackOffRandomRange.
    fn schedule_reconnect(&mut self, now: Instant) {
        let min_ms = self.vars.seconds(Var::RetryBackOffWaitMinimum).as_millis() as u64;
        let doublings = self
            .link
            .reconnect_attempts
            .min(self.vars.int(Var::RetryBackOffRepeatTimes).max(0) as u32);
        let base = min_ms.saturating_mul(1u64 << doublings.min(32));
        let range_ms = self.vars.seconds(Var::RetryBackOffRandomRange).as_millis() as u64;
        let jitter = self.rng.below_inclusive(range_ms);
        let delay = Duration::from_millis(base.saturating_add(jitter));
        self.link.reconnect_attempts = self.link.reconnect_attempts.saturating_add(1);
        info!(
            delay_ms = delay.as_millis() as u64,
            attempt = self.link.reconnect_attempts,
            "reconnecting after back-off"
        );
        self.timers.set(Timer::Connect, now + delay);
    }

    /// A station Reset (B11/B12, 1.6 5.14): the restart waits until what is queued (the
    /// Ended events or StopTransactions of the transactions it ended) was answered, at most
    /// MessageTimeout, so nothing the CSMS already has is sent again after the restart (1.6
    /// messages carry no seqNo to recognise a repeat by). Offline it restarts at once: the
    /// journal keeps the queue.
    pub(crate) fn reboot_after_delivery(&mut self, now: Instant) {
        self.link.reboot_pending = true;
        self.timers.set(Timer::Reboot, now + self.message_timeout());
        self.check_reboot();
    }

    fn check_reboot(&mut self) {
        let delivered = self.link.in_flight.is_none() && self.link.outbox.is_empty();
        if self.link.reboot_pending
            && (delivered || self.link.connection != ConnectionState::Connected)
        {
            self.reboot_now();
        }
    }

    fn reboot_now(&mut self) {
        if std::mem::take(&mut self.link.reboot_pending) {
            self.timers.stop(Timer::Reboot);
            self.outputs.push_back(Output::Reboot);
        }
    }

    /// A new WebSocketPingInterval: the next ping follows it.
    pub(crate) fn restart_ping(&mut self, now: Instant) {
        if self.link.connection == ConnectionState::Connected {
            self.schedule_ping(now);
        }
    }

    /// A new HeartbeatInterval from the CSMS (SetVariables): it replaces the one from the
    /// BootNotificationResponse.
    pub(crate) fn set_heartbeat_interval(&mut self, now: Instant) {
        self.link.heartbeat_interval = self.vars.seconds(Var::HeartbeatInterval);
        self.reset_heartbeat(now);
    }

    pub(crate) fn set_boot_reason(&mut self, reason: v201::BootReasonEnum) {
        self.link.boot_reason = reason;
    }

    /// 1.6 TriggerMessage(BootNotification) once accepted (5.17 allows it; 2.0.1 F06.FR.17
    /// does not): a BootNotification with reason Triggered, in the queue's order.
    pub(crate) fn trigger_boot_when_accepted(&mut self) {
        self.link.boot_triggered = true;
        let mut request = self.boot_request();
        self.link.boot_triggered = false;
        request.triggered = true;
        self.push_volatile(request);
    }

    /// TriggerMessage(BootNotification) before acceptance: send one now (B02.FR.04 allows it).
    pub(crate) fn trigger_boot(&mut self) {
        self.timers.stop(Timer::BootRetry);
        self.link.boot_due = true;
        self.link.boot_triggered = true;
    }

    fn schedule_ping(&mut self, now: Instant) {
        let interval = self.ping_interval();
        if interval.is_zero() {
            self.timers.stop(Timer::Ping);
        } else {
            self.timers.set(Timer::Ping, now + interval);
        }
    }

    fn reset_heartbeat(&mut self, now: Instant) {
        if self.link.registration == Registration::Accepted
            && !self.link.heartbeat_interval.is_zero()
        {
            self.timers
                .set(Timer::Heartbeat, now + self.link.heartbeat_interval);
        }
    }

    pub(crate) fn enqueue(&mut self, kind: RequestKind, action: Action, payload: Value) {
        self.push_volatile(Request {
            kind,
            action,
            payload,
            triggered: false,
        });
    }

    /// Queues a message the CSMS asked for (F06, B07): allowed while Pending (B02.FR.02).
    pub(crate) fn enqueue_triggered(&mut self, kind: RequestKind, action: Action, payload: Value) {
        self.push_volatile(Request {
            kind,
            action,
            payload,
            triggered: true,
        });
    }

    /// Appends to the volatile queue, noting the durable messages generated before it.
    fn push_volatile(&mut self, request: Request) {
        let after = self.link.outbox.last_queue_seq();
        self.link.queue.push_back(Queued { request, after });
    }

    /// A status report the CSMS asked for (F06), whose answer carries nothing to apply.
    pub(crate) fn enqueue_triggered_report(&mut self, action: Action, payload: Value) {
        self.enqueue_triggered(RequestKind::Other(action), action, payload);
    }

    /// Appends a message to the durable queue: its payload goes to the journal in `batch`
    /// (with whatever else must change atomically with it), before it can be sent.
    pub(crate) fn enqueue_durable(
        &mut self,
        now: Instant,
        action: Action,
        tx_id: Option<String>,
        kind: EventKind,
        mut payload: Value,
        mut batch: Batch,
    ) {
        if self.protocol == Protocol::V16 {
            self.annotate16(action, &mut payload);
        }
        debug_assert!(
            v201::validate::validate(action.request_schema(), &payload).is_ok(),
            "we built an invalid {} payload: {payload}",
            action.as_str()
        );
        let payload_offline = payload["offline"] == Value::Bool(true);
        let meta = QueuedMeta {
            protocol: v201::PROTOCOL.to_owned(),
            queue_seq: self.link.outbox.next_queue_seq(),
            action: action.as_str().to_owned(),
            tx_id,
            kind,
            attempts: 0,
            bytes: payload.to_string().len() as u64,
            created_ms: self.clock.utc(now).unix_millis(),
            boot_id: self.boot_id,
            time_trusted: self.clock.trusted(now),
        };
        batch.insert(
            0,
            PersistOp::Enqueue(QueuedMessage {
                meta: meta.clone(),
                payload,
            }),
        );
        let offline = payload_offline;
        self.link.outbox.push(meta, offline);
        let protected = self.in_flight_queue_seq();
        let removed = self
            .link
            .outbox
            .enforce_bound(self.link.max_queue_bytes, protected);
        if !removed.is_empty() {
            warn!(
                dropped = removed.len(),
                queue_bytes = self.link.outbox.bytes(),
                "transaction queue over its size limit: dropped intermediate Updated events (E04.FR.08)"
            );
            batch.extend(removed);
            self.outputs.push_back(Output::Persist(batch));
            // Once per start-up: raising it queues a message, which must not recurse forever.
            self.security_event_once(now, "MemoryExhaustion", Some("transaction queue full"));
            return;
        }
        self.outputs.push_back(Output::Persist(batch));
    }

    fn in_flight_queue_seq(&self) -> Option<u64> {
        match &self.link.in_flight {
            Some(InFlight {
                kind: InFlightKind::Queued(m),
                ..
            }) => Some(m.queue_seq),
            _ => None,
        }
    }

    fn boot_request(&self) -> Request {
        let request = v201::BootNotificationRequest {
            custom_data: None,
            charging_station: v201::ChargingStation {
                custom_data: None,
                serial_number: self.identity.serial_number.clone(),
                model: self.identity.model.clone(),
                modem: None,
                vendor_name: self.identity.vendor.clone(),
                firmware_version: Some(self.identity.firmware_version.clone()),
            },
            reason: if self.link.boot_triggered {
                v201::BootReasonEnum::Triggered
            } else {
                self.link.boot_reason
            },
        };
        Request {
            kind: RequestKind::BootNotification,
            action: Action::BootNotification,
            payload: to_payload(&request),
            triggered: false,
        }
    }

    /// Sends the next request if the link is free (one CALL in flight, part 4 4.1.1).
    ///
    /// Order:
    /// * BootNotification, until accepted (B01.FR.08: nothing else before).
    /// * While Pending, only what the CSMS asked for (B02.FR.02), whatever the durable queue
    ///   holds: none of it may be sent before Accepted, so it cannot go first.
    /// * Once Accepted, the volatile queue and the durable queue (each FIFO) are merged in the
    ///   order the messages were generated: a durable message goes before the volatile front
    ///   when it was queued before that request was made (`queue_seq <= after`). The spec sets
    ///   no order across message kinds, but a CSMS must never learn a consequence before its
    ///   cause: a StatusNotification Available, or a new driver's Authorize, made after a
    ///   transaction ended must not arrive before that transaction's queued Ended. Statuses
    ///   changed during an outage are not kept but re-read when the link is back (B04.FR.01/02)
    ///   and so follow everything queued during the outage; after a restart likewise
    ///   (B01.FR.05), behind the queue the journal kept.
    /// * Exception: a durable head waiting out its retry interval after the CSMS failed to
    ///   process it (E13.FR.03, MessageAttemptInterval x attempts: minutes) does not hold
    ///   volatile requests back. The CSMS has seen that message already, and part 2 E 1.3.2
    ///   expects retried TransactionEvents to arrive out of order (the seqNo shows gaps); what
    ///   E13 orders is only the durable queue, whose later messages still wait for the head
    ///   (E13.FR.04 "continue with the next" after the last attempt). Holding back status and
    ///   Authorize for the retry interval would leave a driver waiting for nothing. The price:
    ///   during that interval a volatile request may overtake durable messages queued behind
    ///   the failed head (say, the Ended after a refused Updated).
    pub(crate) fn pump(&mut self, now: Instant) {
        self.check_reboot();
        if self.link.connection != ConnectionState::Connected || self.link.in_flight.is_some() {
            return;
        }
        if self.link.boot_due && self.link.registration != Registration::Accepted {
            self.link.boot_due = false;
            let request = self.boot_request();
            self.link.boot_triggered = false;
            self.send_request(request);
        } else if self.link.registration != Registration::Accepted {
            // Pending: only what the CSMS asked for (B02.FR.02); Rejected: nothing (B03.FR.02).
            match self.link.queue.front() {
                Some(q)
                    if q.request.triggered && self.link.registration == Registration::Pending =>
                {
                    let queued = self.link.queue.pop_front().expect("front exists");
                    if !self.send_request(queued.request) {
                        return self.pump(now);
                    }
                }
                _ => return,
            }
        } else if self.volatile_goes_first(now) {
            let queued = self.link.queue.pop_front().expect("front exists");
            if !self.send_request(queued.request) {
                return self.pump(now);
            }
        } else if self.link.outbox.ready(now) {
            let meta = self
                .link
                .outbox
                .head()
                .cloned()
                .expect("ready means non-empty");
            let id = self.rng.uuid_v4();
            debug!(
                action = meta.action,
                message_id = id,
                queue_seq = meta.queue_seq,
                tx_id = meta.tx_id.as_deref(),
                "sending queued request"
            );
            self.outputs.push_back(Output::SendQueued {
                queue_seq: meta.queue_seq,
                message_id: id.clone(),
            });
            self.link.in_flight = Some(InFlight {
                id,
                kind: InFlightKind::Queued(meta),
                sent16: None,
            });
        } else {
            if let Some(at) = self.link.outbox.retry_at() {
                self.timers.set(Timer::QueueRetry, at);
            }
            return;
        }
        self.timers
            .set(Timer::CallTimeout, now + self.message_timeout());
        // G02.FR.05: any message sent counts as a sign of life.
        self.reset_heartbeat(now);
    }

    /// Whether the volatile front is next (see [`Ctx::pump`]): no durable message generated
    /// before it is waiting, or the one that is waits out a retry interval (E13.FR.03).
    fn volatile_goes_first(&self, now: Instant) -> bool {
        let Some(front) = self.link.queue.front() else {
            return false;
        };
        match self.link.outbox.head() {
            Some(head) if head.queue_seq <= front.after => !self.link.outbox.ready(now),
            _ => true,
        }
    }

    /// Sends a volatile request; `false` when 1.6 has no such message (nothing was sent).
    fn send_request(&mut self, request: Request) -> bool {
        let id = self.rng.uuid_v4();
        debug_assert!(
            v201::validate::validate(request.action.request_schema(), &request.payload).is_ok(),
            "we built an invalid {} payload",
            request.action.as_str()
        );
        let sent16 = match self.protocol {
            Protocol::V201 => None,
            Protocol::V16 => match self.outgoing16(request.action, &request.payload) {
                Some(sent) => Some(sent),
                None => {
                    debug!(
                        action = request.action.as_str(),
                        "not a message of OCPP 1.6; not sent"
                    );
                    return false;
                }
            },
        };
        debug!(
            action = request.action.as_str(),
            message_id = id,
            "sending request"
        );
        let frame = match &sent16 {
            Some((action, payload)) => rpc::encode_call(&id, action.as_str(), payload),
            None => rpc::encode_call(&id, request.action.as_str(), &request.payload),
        };
        self.send_raw(frame);
        self.link.in_flight = Some(InFlight {
            id,
            kind: InFlightKind::Volatile(request),
            sent16,
        });
        true
    }

    pub(crate) fn send_raw(&mut self, frame: String) {
        if self.link.connection == ConnectionState::Connected {
            self.outputs.push_back(Output::Send(frame));
        }
    }

    /// The queued message in flight (`id`) went out translated to 1.6.
    pub(crate) fn set_sent16(&mut self, id: &str, action: super::v16::Action, payload: Value) {
        if let Some(f) = self.link.in_flight.as_mut().filter(|f| f.id == id) {
            f.sent16 = Some((action, payload));
        }
    }

    fn take_in_flight(&mut self, id: &str) -> Option<InFlightKind> {
        if self.link.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.timers.stop(Timer::CallTimeout);
            self.link.in_flight.take().map(|f| f.kind)
        } else {
            warn!(message_id = id, "answer to no request of ours; ignored");
            None
        }
    }

    fn call_timed_out(&mut self, now: Instant) {
        let Some(f) = self.link.in_flight.take() else {
            return;
        };
        warn!(
            action = f.action(),
            message_id = f.id,
            "no answer from the CSMS within MessageTimeout"
        );
        self.request_failed(now, f.kind);
    }

    /// A request got a CALLERROR, an invalid answer, or no answer in time (while connected).
    pub(crate) fn request_failed(&mut self, now: Instant, kind: InFlightKind) {
        match kind {
            InFlightKind::Volatile(request) => self.volatile_failed(now, request),
            InFlightKind::Queued(meta) => {
                let max = self.vars.int(Var::MessageAttemptsTransactionEvent).max(1) as u32;
                let interval = self
                    .vars
                    .seconds(Var::MessageAttemptIntervalTransactionEvent);
                let (failure, op) = self.link.outbox.failed(meta.queue_seq, now, max, interval);
                match failure {
                    Failure::Retry(at) => {
                        info!(
                            queue_seq = meta.queue_seq,
                            retry_in_s = at.saturating_since(now).as_secs(),
                            "transaction message not accepted; will retry (E13)"
                        );
                        self.timers.set(Timer::QueueRetry, at);
                    }
                    Failure::Discarded => {
                        error!(
                            queue_seq = meta.queue_seq,
                            tx_id = meta.tx_id.as_deref(),
                            attempts = max,
                            "transaction message discarded after the last attempt (E13.FR.04)"
                        );
                    }
                }
                self.outputs.push_back(Output::Persist(vec![op]));
            }
        }
    }

    /// A volatile request failed or was lost with the connection.
    fn volatile_failed(&mut self, now: Instant, request: Request) {
        match request.kind {
            RequestKind::BootNotification => {
                if self.link.connection == ConnectionState::Connected {
                    self.timers.set(Timer::BootRetry, now + BOOT_RETRY_FALLBACK);
                } else {
                    self.link.boot_due = true;
                }
            }
            RequestKind::Authorize {
                evse,
                id_token,
                purpose,
            } => self.emit(CoreEvent::AuthorizeUnanswered {
                evse,
                id_token,
                purpose,
            }),
            RequestKind::StatusNotification { connector, .. } => {
                if let Some(c) = self.model.connectors.get_mut(connector) {
                    c.queued = None;
                }
            }
            // The CSMS was not told: report the problem state again after reconnection.
            RequestKind::NotifyEvent { connector, problem } => {
                if let Some(c) = self.model.connectors.get_mut(connector) {
                    if c.fault_reported == problem {
                        c.fault_reported = !problem;
                    }
                }
            }
            _ => {}
        }
    }

    fn boot_answered(&mut self, now: Instant, response: v201::BootNotificationResponse) {
        self.sync_clock(now, &response.current_time);
        let interval = Duration::from_secs(response.interval.max(0) as u64);
        match response.status {
            v201::RegistrationStatusEnum::Accepted => {
                info!(interval_s = interval.as_secs(), "BootNotification accepted");
                self.link.registration = Registration::Accepted;
                self.link.accepted_slot = Some(self.link.network.current().slot);
                self.timers.stop(Timer::BootRetry);
                // B01.FR.04: adopt the interval when > 0.
                if !interval.is_zero() {
                    self.link.heartbeat_interval = interval;
                }
                self.reset_heartbeat(now);
                // B01.FR.05: every connector is reported; the blocks react (station router).
                self.emit(CoreEvent::RegistrationAccepted);
            }
            status => {
                self.link.registration = if status == v201::RegistrationStatusEnum::Pending {
                    Registration::Pending
                } else {
                    Registration::Rejected
                };
                let wait = if interval.is_zero() {
                    BOOT_RETRY_FALLBACK
                } else {
                    interval
                };
                info!(
                    status = status.as_str(),
                    retry_s = wait.as_secs(),
                    "BootNotification not accepted"
                );
                self.timers.set(Timer::BootRetry, now + wait);
            }
        }
    }

    pub(crate) fn sync_clock(&mut self, now: Instant, current_time: &str) {
        let Some(t) = UtcTime::parse_rfc3339(current_time) else {
            return;
        };
        let was_trusted = self.clock.trusted(now);
        let drift_ms = self.clock.sync(now, t);
        if drift_ms.abs() > 2000 {
            info!(drift_ms, utc = %t, "adopted the CSMS's time");
        }
        if drift_ms.abs() > 20_000 {
            self.security_event(
                now,
                "SettingSystemTime",
                Some(&format!("adjusted by {drift_ms} ms")),
            );
        }
        let batch = if was_trusted {
            Vec::new()
        } else {
            self.rebase_untrusted(drift_ms)
        };
        self.emit(CoreEvent::ClockAdjusted {
            delta_ms: drift_ms,
            was_trusted,
            batch,
        });
    }

    /// Queued messages stamped before UTC was known are shifted onto the CSMS's time (same
    /// boot only: the monotonic clock relates them); the ops to persist.
    fn rebase_untrusted(&mut self, delta_ms: i64) -> Batch {
        let boot_id = self.boot_id;
        let mut batch: Batch = Vec::new();
        for m in self.link.outbox.iter_mut() {
            if !m.time_trusted && m.boot_id == boot_id {
                m.time_trusted = true;
                m.created_ms += delta_ms;
                batch.push(PersistOp::Rebase {
                    queue_seq: m.queue_seq,
                    delta_ms,
                });
            }
        }
        batch
    }

    /// The attempt to open the WebSocket failed, and why: some causes are security events
    /// (A00.FR.310/413, A00.FR.316, A01).
    pub(crate) fn link_connect_failed(
        &mut self,
        now: Instant,
        reason: &str,
        failure: ConnectFailure,
    ) {
        if self.link.connection != ConnectionState::Connecting {
            return;
        }
        warn!(reason, "connecting to the CSMS failed");
        match failure {
            ConnectFailure::Other => {}
            ConnectFailure::AuthRejected => {
                self.security_event_once(now, "FailedToAuthenticateAtCsms", Some(reason))
            }
            ConnectFailure::InvalidCsmsCertificate => {
                self.security_event_once(now, "InvalidCsmsCertificate", Some(reason))
            }
            ConnectFailure::InvalidTlsVersion => {
                self.security_event_once(now, "InvalidTLSVersion", Some(reason))
            }
            ConnectFailure::InvalidTlsCipherSuite => {
                self.security_event_once(now, "InvalidTLSCipherSuite", Some(reason))
            }
        }
        self.link.connection = ConnectionState::Offline;
        self.link.offline_since.get_or_insert(now);
        let attempts = self.vars.int(Var::NetworkProfileConnectionAttempts).max(1) as u32;
        if self.link.network.failed(attempts) {
            let p = self.link.network.current();
            info!(
                slot = p.slot,
                url = p.url,
                "trying the next network connection profile (B10)"
            );
        }
        self.schedule_reconnect(now);
    }

    /// The link's timers; `false` for a timer that belongs to a block.
    pub(crate) fn link_timer(&mut self, now: Instant, timer: Timer) -> bool {
        match timer {
            Timer::Connect => {
                if self.link.connection == ConnectionState::Offline {
                    self.link.connection = ConnectionState::Connecting;
                    let profile = self.link.network.current().clone();
                    self.outputs.push_back(Output::Connect { profile });
                }
            }
            Timer::BootRetry => {
                self.link.boot_due = self.link.registration != Registration::Accepted
            }
            Timer::Heartbeat => {
                if self.can_send_normal() && self.link.queue.is_empty() {
                    self.enqueue(
                        RequestKind::Heartbeat,
                        Action::Heartbeat,
                        Value::Object(Default::default()),
                    );
                }
            }
            Timer::CallTimeout => self.call_timed_out(now),
            Timer::Reboot => {
                warn!("restarting for the Reset before the CSMS answered what was sent");
                self.reboot_now();
            }
            Timer::Ping => {
                if self.link.connection == ConnectionState::Connected {
                    if !self.link.awaiting_pong {
                        self.outputs.push_back(Output::Ping);
                        self.link.awaiting_pong = true;
                        // The link is dead if the pong is not back within a ping interval,
                        // but at least MessageTimeout so slow links are not cut needlessly.
                        let wait = self.ping_interval().max(self.message_timeout());
                        self.timers.set(Timer::PongTimeout, now + wait);
                    }
                    self.schedule_ping(now);
                }
            }
            Timer::PongTimeout => {
                if self.link.awaiting_pong && self.link.connection == ConnectionState::Connected {
                    warn!("no WebSocket pong from the CSMS in time; dropping the connection");
                    self.go_offline(now);
                    self.outputs.push_back(Output::Disconnect {
                        reason: "no pong in time".into(),
                    });
                }
            }
            Timer::QueueRetry => {} // the pump sends the head
            Timer::Relink => {
                if self.link.connection == ConnectionState::Connected {
                    info!("reconnecting with the new credentials");
                    self.go_offline(now);
                    self.outputs.push_back(Output::Disconnect {
                        reason: "new credentials".into(),
                    });
                }
            }
            _ => return false,
        }
        true
    }

    /// The WebSocket is open. `Some(all)` when registered: the connector statuses to report
    /// after the outage (B04: the changed ones, or all after more than OfflineThreshold).
    pub(crate) fn link_connected(&mut self, now: Instant) -> Option<bool> {
        if self.link.connection != ConnectionState::Connecting {
            debug!("ignoring a connection the core did not ask for");
            return None;
        }
        self.link.connection = ConnectionState::Connected;
        self.link.awaiting_pong = false;
        self.schedule_ping(now);
        let offline_for = self
            .link
            .offline_since
            .take()
            .map(|t| now.saturating_since(t));
        // Registration is with a CSMS: a connection through another network profile (B10
        // fall-back) starts with a BootNotification again.
        if self.link.registration == Registration::Accepted
            && self.link.accepted_slot != Some(self.link.network.current().slot)
        {
            info!(
                slot = self.link.network.current().slot,
                "another network profile: registering again"
            );
            self.link.registration = Registration::None;
            self.timers.stop(Timer::BootRetry);
        }
        info!(
            offline_s = offline_for.map(|d| d.as_secs()),
            "connected to the CSMS"
        );
        match self.link.registration {
            Registration::Accepted => {
                self.reset_heartbeat(now);
                Some(offline_for.is_none_or(|d| d > self.vars.seconds(Var::OfflineThreshold)))
            }
            // B02.FR.04 / B03.FR.02: a running BootRetry timer means we must wait for it.
            _ => {
                self.link.boot_due = !self.timers.is_set(Timer::BootRetry);
                None
            }
        }
    }

    /// The WebSocket closed or broke.
    pub(crate) fn link_disconnected(&mut self, now: Instant, reason: &str) {
        if self.link.connection != ConnectionState::Connected {
            return;
        }
        warn!(reason, "connection to the CSMS lost");
        self.go_offline(now);
    }

    pub(crate) fn link_pong(&mut self) {
        self.link.awaiting_pong = false;
        self.timers.stop(Timer::PongTimeout);
    }

    /// A CALLRESULT: the request it answers, if it was ours. A working exchange proves the
    /// link: the next outage starts back-off from scratch, and this profile is the one to fall
    /// back to (B10.FR.07).
    pub(crate) fn take_answered(
        &mut self,
        id: &str,
    ) -> Option<(InFlightKind, Option<(super::v16::Action, Value)>)> {
        let sent16 = self
            .link
            .in_flight
            .as_mut()
            .filter(|f| f.id == id)
            .and_then(|f| f.sent16.take());
        let kind = self.take_in_flight(id)?;
        self.link.reconnect_attempts = 0;
        if let Some(slot) = self.link.network.succeeded() {
            self.outputs
                .push_back(Output::Persist(vec![PersistOp::PutMeta {
                    key: super::blocks::provisioning::META_LAST_GOOD_SLOT.into(),
                    value: slot.to_string(),
                }]));
        }
        Some((kind, sent16))
    }

    pub(crate) fn link_call_error(
        &mut self,
        now: Instant,
        id: &str,
        code: &str,
        description: &str,
    ) {
        let Some(kind) = self.take_in_flight(id) else {
            return;
        };
        let action = match &kind {
            InFlightKind::Volatile(r) => r.action.as_str().to_owned(),
            InFlightKind::Queued(m) => m.action.clone(),
        };
        warn!(
            action,
            message_id = id,
            code,
            description,
            "CSMS answered with CALLERROR"
        );
        self.request_failed(now, kind);
    }

    /// The answer to a BootNotification or a Heartbeat.
    pub(crate) fn link_answered(
        &mut self,
        now: Instant,
        kind: &RequestKind,
        payload: Value,
    ) -> Option<Result<(), v201::validate::Violation>> {
        Some(match kind {
            RequestKind::BootNotification => {
                v201::decode_response::<v201::BootNotificationResponse>(payload)
                    .map(|r| self.boot_answered(now, r))
            }
            RequestKind::Heartbeat => v201::decode_response::<v201::HeartbeatResponse>(payload)
                .map(|r| self.sync_clock(now, &r.current_time)),
            _ => return None,
        })
    }

    /// A StatusNotification of a connector (G01), asked for by the CSMS (F06).
    pub(crate) fn queue_status_triggered(&mut self, now: Instant, index: usize) {
        self.queue_status_as(now, index, true);
    }

    /// A StatusNotification of a connector's current status (G01).
    pub(crate) fn queue_status(&mut self, now: Instant, index: usize) {
        self.queue_status_as(now, index, false);
    }

    fn queue_status_as(&mut self, now: Instant, index: usize, triggered: bool) {
        // 1.6 reports each change of its finer status once (`sync_statuses16`); a change
        // 2.0.1 sees may be none in 1.6, or be seen mid-way (a plug-out before the transaction
        // it ends has ended).
        if self.protocol == Protocol::V16 && !triggered && !self.status_changed16(index) {
            return;
        }
        let status = self.model.connector_status(index, &self.vars);
        if self.link.connection == ConnectionState::Connected {
            self.model.connectors[index].queued = Some(status);
        }
        let c = &self.model.connectors[index];
        let request = v201::StatusNotificationRequest {
            custom_data: None,
            timestamp: self.clock.utc(now).to_rfc3339(),
            connector_status: status.into(),
            evse_id: i64::from(c.evse),
            connector_id: i64::from(c.id),
        };
        let mut payload = to_payload(&request);
        if self.protocol == Protocol::V16 {
            if let Some(data) = self.status_data16(index) {
                payload["customData"] = data;
            }
        }
        let kind = RequestKind::StatusNotification {
            connector: index,
            status,
        };
        if triggered {
            self.enqueue_triggered(kind, Action::StatusNotification, payload);
        } else {
            self.enqueue(kind, Action::StatusNotification, payload);
        }
    }

    /// StatusNotifications of every connector (`all`), or of those whose status differs from
    /// what was last queued, or after an outage what the CSMS acknowledged last (B04.FR.02).
    pub(crate) fn queue_connector_statuses(&mut self, now: Instant, all: bool) {
        for index in 0..self.model.connectors.len() {
            let c = &self.model.connectors[index];
            if all
                || c.queued.or(c.reported) != Some(self.model.connector_status(index, &self.vars))
            {
                self.queue_status(now, index);
            }
        }
    }

    /// The durable queue, for `ctl status`.
    pub(crate) fn queue_snapshot(&self, now: Instant) -> QueueSnapshot {
        let utc_ms = self.clock.utc(now).unix_millis();
        let outbox = &self.link.outbox;
        QueueSnapshot {
            depth: outbox.len(),
            bytes: outbox.bytes(),
            oldest_unsent_age_s: outbox
                .oldest_created_ms()
                .map(|c| ((utc_ms - c).max(0) / 1000) as u64),
            dropped: outbox.dropped,
        }
    }
}
