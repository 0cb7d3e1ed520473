//! The charging station state machine: connection life cycle, registration (B01-B04),
//! heartbeats (G02), connector status (G01) and the RPC rules of part 4.
//!
//! # Calling contract
//!
//! [`Station`] is sans-IO: it never touches a socket, a file or a clock. The shell drives it:
//!
//! 1. Build it with [`Station::new`], passing the monotonic time and the system's UTC estimate.
//! 2. Feed every event in as it happens, with the current monotonic time (which never goes
//!    backwards): [`handle_connected`](Station::handle_connected) /
//!    [`handle_connect_failed`](Station::handle_connect_failed) /
//!    [`handle_disconnected`](Station::handle_disconnected) for the WebSocket,
//!    [`handle_frame`](Station::handle_frame) for each text message,
//!    [`handle_pong`](Station::handle_pong), [`handle_input`](Station::handle_input) for
//!    hardware and local commands, and [`handle_timeout`](Station::handle_timeout) when the
//!    deadline from [`poll_timeout`](Station::poll_timeout) has passed.
//! 3. After each call, drain [`poll_output`](Station::poll_output) and execute the effects
//!    strictly in order.
//! 4. Sleep until [`poll_timeout`](Station::poll_timeout) or the next event.

use super::clock::{Instant, TimeSource, UtcTime, WallClock};
use super::devmodel::{DeviceModel, Var};
use super::rpc::{self, CallError, CallErrorCode, Frame};
use super::timer::{Rng, Timer, TimerTable};
use super::v201::{self, Action};
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long to wait before retrying a BootNotification that failed or timed out, or that was
/// answered with interval 0 (B02.FR.07, B03.FR.05: our own interval, not flooding the CSMS).
const BOOT_RETRY_FALLBACK: Duration = Duration::from_secs(30);

/// Who we are, as the BootNotification tells the CSMS.
#[derive(Debug, Clone)]
pub struct Identity {
    pub vendor: String,
    pub model: String,
    pub serial_number: Option<String>,
    pub firmware_version: String,
}

/// An EVSE and the ids of its connectors.
#[derive(Debug, Clone)]
pub struct EvseLayout {
    pub id: u32,
    pub connectors: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct StationConfig {
    pub identity: Identity,
    pub evses: Vec<EvseLayout>,
    pub boot_reason: v201::BootReasonEnum,
    pub variables: DeviceModel,
}

/// Events from hardware and the local control interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The plug of a connector went in (`plugged`) or out.
    Plug {
        evse: u32,
        connector: u32,
        plugged: bool,
    },
}

/// Effects for the shell to execute, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open the WebSocket; answer with `handle_connected` or `handle_connect_failed`.
    Connect,
    /// Close the WebSocket. The core already counts itself offline and has scheduled the
    /// reconnect; a later `handle_disconnected` is ignored.
    Disconnect { reason: String },
    /// Send this text frame.
    Send(String),
    /// Send a WebSocket ping; answer a pong with `handle_pong`.
    Ping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Offline,
    Connecting,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// No answer to a BootNotification yet.
    None,
    Pending,
    Accepted,
    Rejected,
}

/// Errors of the caller: an input that names something that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    UnknownConnector { evse: u32, connector: u32 },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::UnknownConnector { evse, connector } => {
                write!(f, "no connector {connector} on EVSE {evse}")
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Connector {
    evse: u32,
    id: u32,
    plugged: bool,
    /// The last status the CSMS acknowledged, to report only changes after a short outage
    /// (B04.FR.02).
    reported: Option<v201::ConnectorStatusEnum>,
}

impl Connector {
    fn status(&self) -> v201::ConnectorStatusEnum {
        if self.plugged {
            v201::ConnectorStatusEnum::Occupied
        } else {
            v201::ConnectorStatusEnum::Available
        }
    }
}

/// What a queued or in-flight request is, so its answer can be applied.
#[derive(Debug, Clone, PartialEq)]
enum RequestKind {
    BootNotification,
    Heartbeat,
    StatusNotification {
        connector: usize,
        status: v201::ConnectorStatusEnum,
    },
}

#[derive(Debug, Clone)]
struct Request {
    kind: RequestKind,
    action: Action,
    payload: Value,
}

#[derive(Debug)]
struct InFlight {
    id: String,
    request: Request,
}

/// A snapshot for `ctl status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub connection: ConnectionState,
    pub registration: Registration,
    pub utc: String,
    pub time_source: &'static str,
    pub heartbeat_interval_s: u64,
    pub evses: Vec<EvseSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvseSnapshot {
    pub id: u32,
    pub connectors: Vec<ConnectorSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSnapshot {
    pub id: u32,
    pub status: &'static str,
    pub plugged: bool,
}

pub struct Station {
    identity: Identity,
    boot_reason: v201::BootReasonEnum,
    vars: DeviceModel,
    clock: WallClock,
    rng: Rng,
    timers: TimerTable,
    outputs: VecDeque<Output>,

    connection: ConnectionState,
    /// Failed connection attempts since the last good connection (the back-off exponent).
    reconnect_attempts: u32,
    offline_since: Option<Instant>,
    awaiting_pong: bool,

    registration: Registration,
    /// A BootNotification should go out as soon as the link allows.
    boot_due: bool,
    heartbeat_interval: Duration,

    connectors: Vec<Connector>,
    queue: VecDeque<Request>,
    in_flight: Option<InFlight>,
}

impl Station {
    pub fn new(config: StationConfig, now: Instant, system_utc: UtcTime, rng_seed: u64) -> Self {
        let connectors = config
            .evses
            .iter()
            .flat_map(|e| {
                e.connectors.iter().map(|&c| Connector {
                    evse: e.id,
                    id: c,
                    plugged: false,
                    reported: None,
                })
            })
            .collect();
        let heartbeat_interval = config.variables.seconds(Var::HeartbeatInterval);
        let mut station = Station {
            identity: config.identity,
            boot_reason: config.boot_reason,
            vars: config.variables,
            clock: WallClock::new(now, system_utc),
            rng: Rng::new(rng_seed),
            timers: TimerTable::default(),
            outputs: VecDeque::new(),
            connection: ConnectionState::Offline,
            reconnect_attempts: 0,
            offline_since: None,
            awaiting_pong: false,
            registration: Registration::None,
            boot_due: true,
            heartbeat_interval,
            connectors,
            queue: VecDeque::new(),
            in_flight: None,
        };
        // B01.FR.01: connect and boot right after start-up.
        station.timers.set(Timer::Connect, now);
        station
    }

    // ----- the calling contract -------------------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expire(now) {
            match timer {
                Timer::Connect => {
                    if self.connection == ConnectionState::Offline {
                        self.connection = ConnectionState::Connecting;
                        self.outputs.push_back(Output::Connect);
                    }
                }
                Timer::BootRetry => self.boot_due = self.registration != Registration::Accepted,
                Timer::Heartbeat => {
                    if self.can_send_normal() && self.queue.is_empty() {
                        self.enqueue(
                            RequestKind::Heartbeat,
                            Action::Heartbeat,
                            Value::Object(Default::default()),
                        );
                    }
                }
                Timer::CallTimeout => self.call_timed_out(now),
                Timer::Ping => {
                    if self.connection == ConnectionState::Connected {
                        if !self.awaiting_pong {
                            self.outputs.push_back(Output::Ping);
                            self.awaiting_pong = true;
                            // The link is dead if the pong is not back within a ping interval,
                            // but at least MessageTimeout so slow links are not cut needlessly.
                            let wait = self
                                .ping_interval()
                                .max(self.vars.seconds(Var::MessageTimeout));
                            self.timers.set(Timer::PongTimeout, now + wait);
                        }
                        self.schedule_ping(now);
                    }
                }
                Timer::PongTimeout => {
                    if self.awaiting_pong && self.connection == ConnectionState::Connected {
                        warn!("no WebSocket pong from the CSMS in time; dropping the connection");
                        self.go_offline(now);
                        self.outputs.push_back(Output::Disconnect {
                            reason: "no pong in time".into(),
                        });
                    }
                }
            }
        }
        self.pump(now);
    }

    /// The WebSocket is open (handshake done, subprotocol agreed).
    pub fn handle_connected(&mut self, now: Instant) {
        if self.connection != ConnectionState::Connecting {
            debug!("ignoring a connection the core did not ask for");
            return;
        }
        self.connection = ConnectionState::Connected;
        self.awaiting_pong = false;
        self.schedule_ping(now);
        let offline_for = self.offline_since.take().map(|t| now.saturating_since(t));
        info!(
            offline_s = offline_for.map(|d| d.as_secs()),
            "connected to the CSMS"
        );
        match self.registration {
            Registration::Accepted => {
                // B04: after an outage, report connectors that changed, or all of them if the
                // outage was longer than OfflineThreshold.
                let all = offline_for.is_none_or(|d| d > self.vars.seconds(Var::OfflineThreshold));
                self.queue_connector_statuses(now, all);
                self.reset_heartbeat(now);
            }
            // B02.FR.04 / B03.FR.02: a running BootRetry timer means we must wait for it.
            _ => self.boot_due = !self.timers.is_set(Timer::BootRetry),
        }
        self.pump(now);
    }

    /// The attempt to open the WebSocket failed.
    pub fn handle_connect_failed(&mut self, now: Instant, reason: &str) {
        if self.connection != ConnectionState::Connecting {
            return;
        }
        warn!(reason, "connecting to the CSMS failed");
        self.connection = ConnectionState::Offline;
        self.offline_since.get_or_insert(now);
        self.schedule_reconnect(now);
    }

    /// The WebSocket closed or broke.
    pub fn handle_disconnected(&mut self, now: Instant, reason: &str) {
        if self.connection != ConnectionState::Connected {
            return;
        }
        warn!(reason, "connection to the CSMS lost");
        self.go_offline(now);
    }

    pub fn handle_pong(&mut self, now: Instant) {
        self.awaiting_pong = false;
        self.timers.stop(Timer::PongTimeout);
        let _ = now;
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), InputError> {
        match input {
            Input::Plug {
                evse,
                connector,
                plugged,
            } => {
                let index = self
                    .connector_index(evse, connector)
                    .ok_or(InputError::UnknownConnector { evse, connector })?;
                let c = &mut self.connectors[index];
                if c.plugged == plugged {
                    return Ok(());
                }
                c.plugged = plugged;
                info!(evse, connector, plugged, "plug state changed");
                // While offline the change is reported after reconnect (B04.FR.02); before
                // Accepted, the boot answer makes us report every connector (B01.FR.05).
                if self.can_send_normal() {
                    self.queue_status(now, index);
                }
            }
        }
        self.pump(now);
        Ok(())
    }

    pub fn handle_frame(&mut self, now: Instant, text: &str) {
        match rpc::decode(text) {
            Err(e) => {
                warn!(error = %e.error.description, "unreadable frame from the CSMS");
                if e.answer {
                    self.send_raw(rpc::encode_error(&e.id, &e.error));
                }
            }
            Ok(Frame::Call {
                id,
                action,
                payload,
            }) => {
                let frame = match self.handle_call(now, &action, payload) {
                    Ok(result) => rpc::encode_result(&id, &result),
                    Err(error) => {
                        warn!(action, message_id = id, code = %error.code, "answering a CSMS call with CALLERROR");
                        rpc::encode_error(&id, &error)
                    }
                };
                self.send_raw(frame);
            }
            Ok(Frame::CallResult { id, payload }) => self.handle_result(now, &id, payload),
            Ok(Frame::CallError {
                id,
                code,
                description,
                ..
            }) => self.handle_call_error(now, &id, &code, &description),
        }
        self.pump(now);
    }

    // ----- queries ---------------------------------------------------------------------------

    pub fn connection(&self) -> ConnectionState {
        self.connection
    }

    pub fn registration(&self) -> Registration {
        self.registration
    }

    pub fn utc(&self, now: Instant) -> UtcTime {
        self.clock.utc(now)
    }

    pub fn ping_interval(&self) -> Duration {
        self.vars.seconds(Var::WebSocketPingInterval)
    }

    pub fn snapshot(&self, now: Instant) -> StatusSnapshot {
        let mut evses: Vec<EvseSnapshot> = Vec::new();
        for c in &self.connectors {
            let connector = ConnectorSnapshot {
                id: c.id,
                status: c.status().as_str(),
                plugged: c.plugged,
            };
            match evses.iter_mut().find(|e| e.id == c.evse) {
                Some(e) => e.connectors.push(connector),
                None => evses.push(EvseSnapshot {
                    id: c.evse,
                    connectors: vec![connector],
                }),
            }
        }
        StatusSnapshot {
            connection: self.connection,
            registration: self.registration,
            utc: self.clock.utc(now).to_rfc3339(),
            time_source: match self.clock.source() {
                TimeSource::System => "system",
                TimeSource::Csms => "csms",
            },
            heartbeat_interval_s: self.heartbeat_interval.as_secs(),
            evses,
        }
    }

    // ----- internals -------------------------------------------------------------------------

    fn connector_index(&self, evse: u32, connector: u32) -> Option<usize> {
        self.connectors
            .iter()
            .position(|c| c.evse == evse && c.id == connector)
    }

    /// Whether requests other than BootNotification may go out (B01.FR.08, B02.FR.02).
    fn can_send_normal(&self) -> bool {
        self.connection == ConnectionState::Connected && self.registration == Registration::Accepted
    }

    fn go_offline(&mut self, now: Instant) {
        self.connection = ConnectionState::Offline;
        self.offline_since = Some(now);
        self.awaiting_pong = false;
        for t in [
            Timer::Ping,
            Timer::PongTimeout,
            Timer::Heartbeat,
            Timer::CallTimeout,
        ] {
            self.timers.stop(t);
        }
        if let Some(f) = self.in_flight.take() {
            debug!(
                action = f.request.action.as_str(),
                "request lost with the connection"
            );
            if f.request.kind == RequestKind::BootNotification {
                self.boot_due = true;
            }
        }
        // Heartbeats and status reports are not worth keeping: statuses are re-derived from
        // what the CSMS acknowledged when the link is back (B04).
        self.queue.clear();
        self.schedule_reconnect(now);
    }

    /// OCPP-J 5.3 (part 4): RetryBackOffWaitMinimum, doubled after every failed attempt up to
    /// RetryBackOffRepeatTimes times, plus a fresh random part up to RetryBackOffRandomRange.
    fn schedule_reconnect(&mut self, now: Instant) {
        let min_ms = self.vars.seconds(Var::RetryBackOffWaitMinimum).as_millis() as u64;
        let doublings = self
            .reconnect_attempts
            .min(self.vars.int(Var::RetryBackOffRepeatTimes).max(0) as u32);
        let base = min_ms.saturating_mul(1u64 << doublings.min(32));
        let range_ms = self.vars.seconds(Var::RetryBackOffRandomRange).as_millis() as u64;
        let jitter = self.rng.below_inclusive(range_ms);
        let delay = Duration::from_millis(base.saturating_add(jitter));
        self.reconnect_attempts = self.reconnect_attempts.saturating_add(1);
        info!(
            delay_ms = delay.as_millis() as u64,
            attempt = self.reconnect_attempts,
            "reconnecting after back-off"
        );
        self.timers.set(Timer::Connect, now + delay);
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
        if self.registration == Registration::Accepted && !self.heartbeat_interval.is_zero() {
            self.timers
                .set(Timer::Heartbeat, now + self.heartbeat_interval);
        }
    }

    fn enqueue(&mut self, kind: RequestKind, action: Action, payload: Value) {
        self.queue.push_back(Request {
            kind,
            action,
            payload,
        });
    }

    fn queue_status(&mut self, now: Instant, index: usize) {
        let c = &self.connectors[index];
        let status = c.status();
        let request = v201::StatusNotificationRequest {
            custom_data: None,
            timestamp: self.clock.utc(now).to_rfc3339(),
            connector_status: status,
            evse_id: i64::from(c.evse),
            connector_id: i64::from(c.id),
        };
        self.enqueue(
            RequestKind::StatusNotification {
                connector: index,
                status,
            },
            Action::StatusNotification,
            to_payload(&request),
        );
    }

    fn queue_connector_statuses(&mut self, now: Instant, all: bool) {
        for index in 0..self.connectors.len() {
            let c = &self.connectors[index];
            if all || c.reported != Some(c.status()) {
                self.queue_status(now, index);
            }
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
            reason: self.boot_reason,
        };
        Request {
            kind: RequestKind::BootNotification,
            action: Action::BootNotification,
            payload: to_payload(&request),
        }
    }

    /// Sends the next request if the link is free (one CALL in flight, part 4 4.1.1).
    fn pump(&mut self, now: Instant) {
        if self.connection != ConnectionState::Connected || self.in_flight.is_some() {
            return;
        }
        let request = if self.boot_due && self.registration != Registration::Accepted {
            self.boot_due = false;
            self.boot_request()
        } else if self.registration == Registration::Accepted {
            match self.queue.pop_front() {
                Some(r) => r,
                None => return,
            }
        } else {
            return;
        };
        let id = self.rng.uuid_v4();
        debug_assert!(
            v201::validate::validate(request.action.request_schema(), &request.payload).is_ok(),
            "we built an invalid {} payload",
            request.action.as_str()
        );
        debug!(
            action = request.action.as_str(),
            message_id = id,
            "sending request"
        );
        self.send_raw(rpc::encode_call(
            &id,
            request.action.as_str(),
            &request.payload,
        ));
        self.timers.set(
            Timer::CallTimeout,
            now + self.vars.seconds(Var::MessageTimeout),
        );
        // G02.FR.05: any message sent counts as a sign of life.
        self.reset_heartbeat(now);
        self.in_flight = Some(InFlight { id, request });
    }

    fn send_raw(&mut self, frame: String) {
        if self.connection == ConnectionState::Connected {
            self.outputs.push_back(Output::Send(frame));
        }
    }

    fn take_in_flight(&mut self, id: &str) -> Option<Request> {
        if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.timers.stop(Timer::CallTimeout);
            self.in_flight.take().map(|f| f.request)
        } else {
            warn!(message_id = id, "answer to no request of ours; ignored");
            None
        }
    }

    fn call_timed_out(&mut self, now: Instant) {
        let Some(f) = self.in_flight.take() else {
            return;
        };
        warn!(
            action = f.request.action.as_str(),
            message_id = f.id,
            "no answer from the CSMS within MessageTimeout"
        );
        if f.request.kind == RequestKind::BootNotification {
            self.timers.set(Timer::BootRetry, now + BOOT_RETRY_FALLBACK);
        }
    }

    fn handle_result(&mut self, now: Instant, id: &str, payload: Value) {
        let Some(request) = self.take_in_flight(id) else {
            return;
        };
        // A working exchange proves the link: the next outage starts back-off from scratch.
        self.reconnect_attempts = 0;
        let outcome = match &request.kind {
            RequestKind::BootNotification => decode::<v201::BootNotificationResponse>(payload)
                .map(|r| self.boot_answered(now, r)),
            RequestKind::Heartbeat => decode::<v201::HeartbeatResponse>(payload)
                .map(|r| self.sync_clock(now, &r.current_time)),
            RequestKind::StatusNotification { connector, status } => {
                decode::<v201::StatusNotificationResponse>(payload)
                    .map(|_| self.connectors[*connector].reported = Some(*status))
            }
        };
        if let Err(v) = outcome {
            warn!(
                action = request.action.as_str(),
                message_id = id,
                path = v.path,
                problem = v.message,
                "CSMS answered with an invalid payload"
            );
            self.request_failed(now, request);
        }
    }

    fn handle_call_error(&mut self, now: Instant, id: &str, code: &str, description: &str) {
        let Some(request) = self.take_in_flight(id) else {
            return;
        };
        warn!(
            action = request.action.as_str(),
            message_id = id,
            code,
            description,
            "CSMS answered with CALLERROR"
        );
        self.request_failed(now, request);
    }

    fn request_failed(&mut self, now: Instant, request: Request) {
        if request.kind == RequestKind::BootNotification {
            self.timers.set(Timer::BootRetry, now + BOOT_RETRY_FALLBACK);
        }
    }

    fn boot_answered(&mut self, now: Instant, response: v201::BootNotificationResponse) {
        self.sync_clock(now, &response.current_time);
        let interval = Duration::from_secs(response.interval.max(0) as u64);
        match response.status {
            v201::RegistrationStatusEnum::Accepted => {
                info!(interval_s = interval.as_secs(), "BootNotification accepted");
                self.registration = Registration::Accepted;
                self.timers.stop(Timer::BootRetry);
                // B01.FR.04: adopt the interval when > 0.
                if !interval.is_zero() {
                    self.heartbeat_interval = interval;
                }
                // B01.FR.05: report every connector.
                self.queue_connector_statuses(now, true);
                self.reset_heartbeat(now);
            }
            status => {
                self.registration = if status == v201::RegistrationStatusEnum::Pending {
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

    fn sync_clock(&mut self, now: Instant, current_time: &str) {
        if let Some(t) = UtcTime::parse_rfc3339(current_time) {
            let drift_ms = self.clock.sync(now, t);
            if drift_ms.abs() > 2000 {
                info!(drift_ms, utc = %t, "adopted the CSMS's time");
            }
        }
    }

    /// Answers a CALL from the CSMS (part 4 4.2.3 and table 8).
    fn handle_call(
        &mut self,
        _now: Instant,
        action: &str,
        payload: Value,
    ) -> Result<Value, CallError> {
        // B03.FR.08: while Rejected, every CSMS request is a security error.
        if self.registration == Registration::Rejected {
            return Err(CallError::new(
                CallErrorCode::SecurityError,
                "the charging station is not accepted by the CSMS",
            ));
        }
        let Some(known) = Action::from_name(action) else {
            return Err(CallError::new(
                CallErrorCode::NotImplemented,
                format!("unknown action {action:?}"),
            ));
        };
        if let Err(v) = v201::validate::validate(known.request_schema(), &payload) {
            // The violation kinds are named after the error codes of part 4, table 8.
            let code =
                CallErrorCode::from_name(v.kind.as_str()).unwrap_or(CallErrorCode::FormatViolation);
            return Err(CallError::new(code, format!("{}: {}", v.path, v.message)));
        }
        Err(CallError::new(
            CallErrorCode::NotSupported,
            format!("{action} is not supported by this charging station yet"),
        ))
    }
}

/// Validates a response against its schema and decodes it.
fn decode<T: v201::ResponsePayload>(payload: Value) -> Result<T, v201::validate::Violation> {
    v201::validate::decode(T::SCHEMA, payload)
}

fn to_payload<T: Serialize>(value: &T) -> Value {
    // Serializing our own plain data types cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}
