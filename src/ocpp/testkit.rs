//! A test kit for the core: a virtual clock and a scripted fake CSMS that answers the
//! station's requests synchronously. Tests (and later, load generators) drive a [`Harness`]
//! instead of sockets: `advance` moves time and fires due timers; everything the station sends
//! is validated against the official schema, recorded, and answered.

use super::clock::{Instant, UtcTime};
use super::devmodel::DeviceModel;
use super::rpc::{self, Frame};
use super::station::{EvseLayout, Identity, Input, Output, Station, StationConfig};
use super::v201::{self, Action};
use serde_json::{Value, json};
use std::time::Duration;

/// 2025-01-01T00:00:00Z: the fake CSMS's clock at virtual time zero.
pub const CSMS_EPOCH_MS: i64 = 1_735_689_600_000;
/// The station's (wrong) system clock at virtual time zero: 2000-01-01, like a board without RTC.
pub const STATION_EPOCH_MS: i64 = 946_684_800_000;

/// A request the station sent, as the fake CSMS saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub id: String,
    pub action: String,
    pub payload: Value,
}

/// How the fake CSMS behaves; tests change these fields between steps.
#[derive(Debug, Clone)]
pub struct FakeCsms {
    /// Accept WebSocket connections.
    pub online: bool,
    /// Answer requests (false: let them time out).
    pub answering: bool,
    /// Answer WebSocket pings.
    pub answering_pings: bool,
    pub boot_status: &'static str,
    pub interval: i64,
    pub received: Vec<Received>,
}

impl Default for FakeCsms {
    fn default() -> Self {
        FakeCsms {
            online: true,
            answering: true,
            answering_pings: true,
            boot_status: "Accepted",
            interval: 300,
            received: Vec::new(),
        }
    }
}

impl FakeCsms {
    fn answer(&self, now: Instant, action: &str, _payload: &Value) -> Value {
        let current_time =
            UtcTime::from_unix_millis(CSMS_EPOCH_MS + now.as_millis() as i64).to_rfc3339();
        match action {
            "BootNotification" => json!({
                "currentTime": current_time,
                "interval": self.interval,
                "status": self.boot_status,
            }),
            "Heartbeat" => json!({ "currentTime": current_time }),
            _ => json!({}),
        }
    }

    /// The actions received, in order.
    pub fn actions(&self) -> Vec<&str> {
        self.received.iter().map(|r| r.action.as_str()).collect()
    }

    pub fn of(&self, action: &str) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.action == action)
            .collect()
    }
}

/// A station under test, its virtual clock, and the fake CSMS it talks to.
pub struct Harness {
    pub station: Station,
    pub now: Instant,
    pub csms: FakeCsms,
    /// Whether the fake WebSocket is open.
    pub connected: bool,
    /// Times at which the station asked to connect.
    pub connect_attempts: Vec<Instant>,
    /// Frames the station sent that answer a CSMS call (CALLRESULT / CALLERROR).
    pub answers: Vec<Frame>,
    /// Raw text of answers the station sent to frames the CSMS sent.
    pub raw_answers: Vec<String>,
    pub pings: usize,
    pub disconnects: Vec<String>,
}

/// A typical station: one EVSE with one connector, a second EVSE with two.
pub fn default_config() -> StationConfig {
    StationConfig {
        identity: Identity {
            vendor: "Example".into(),
            model: "AC-2".into(),
            serial_number: Some("SN-0001".into()),
            firmware_version: "1.0.0".into(),
        },
        evses: vec![
            EvseLayout {
                id: 1,
                connectors: vec![1],
            },
            EvseLayout {
                id: 2,
                connectors: vec![1, 2],
            },
        ],
        boot_reason: v201::BootReasonEnum::PowerUp,
        variables: DeviceModel::default(),
    }
}

/// `default_config` with device-model values set.
pub fn config_with(vars: &[(&str, &str)]) -> StationConfig {
    let mut config = default_config();
    config.variables =
        DeviceModel::with_initial(vars.iter().copied()).expect("valid test variables");
    config
}

impl Harness {
    pub fn new(config: StationConfig) -> Harness {
        Self::new_with(config, |_| {})
    }

    /// Like `new`, with the fake CSMS set up by `setup` before the station's first connect.
    pub fn new_with(config: StationConfig, setup: impl FnOnce(&mut FakeCsms)) -> Harness {
        let now = Instant::ZERO;
        let station = Station::new(config, now, UtcTime::from_unix_millis(STATION_EPOCH_MS), 42);
        let mut h = Harness {
            station,
            now,
            csms: FakeCsms::default(),
            connected: false,
            connect_attempts: Vec::new(),
            answers: Vec::new(),
            raw_answers: Vec::new(),
            pings: 0,
            disconnects: Vec::new(),
        };
        setup(&mut h.csms);
        h.fire_due();
        h
    }

    /// Executes the station's outputs until it has none, playing the CSMS's part.
    pub fn settle(&mut self) {
        while let Some(output) = self.station.poll_output() {
            match output {
                Output::Connect => {
                    self.connect_attempts.push(self.now);
                    if self.csms.online {
                        self.connected = true;
                        self.station.handle_connected(self.now);
                    } else {
                        self.station.handle_connect_failed(self.now, "CSMS is down");
                    }
                }
                Output::Disconnect { reason } => {
                    self.connected = false;
                    self.disconnects.push(reason);
                }
                Output::Ping => {
                    self.pings += 1;
                    if self.csms.answering_pings {
                        self.station.handle_pong(self.now);
                    }
                }
                Output::Send(text) => {
                    assert!(self.connected, "sent while not connected: {text}");
                    self.receive(&text);
                }
            }
        }
    }

    fn receive(&mut self, text: &str) {
        let frame =
            rpc::decode(text).unwrap_or_else(|e| panic!("station sent a bad frame {text}: {e:?}"));
        match frame {
            Frame::Call {
                id,
                action,
                payload,
            } => {
                let known = Action::from_name(&action)
                    .unwrap_or_else(|| panic!("station sent unknown action {action}"));
                if let Err(v) = v201::validate::validate(known.request_schema(), &payload) {
                    panic!("station sent an invalid {action}: {v:?}\n{payload}");
                }
                assert!(
                    !self.csms.received.iter().any(|r| r.id == id),
                    "message id {id} reused"
                );
                self.csms.received.push(Received {
                    at: self.now,
                    id: id.clone(),
                    action: action.clone(),
                    payload: payload.clone(),
                });
                if self.csms.answering {
                    let answer = self.csms.answer(self.now, &action, &payload);
                    assert!(
                        v201::validate::validate(known.response_schema(), &answer).is_ok(),
                        "the fake CSMS built an invalid answer"
                    );
                    self.station
                        .handle_frame(self.now, &rpc::encode_result(&id, &answer));
                }
            }
            other => {
                self.raw_answers.push(text.to_owned());
                self.answers.push(other);
            }
        }
    }

    fn fire_due(&mut self) {
        self.settle();
        while let Some(t) = self.station.poll_timeout() {
            if t > self.now {
                break;
            }
            self.station.handle_timeout(self.now);
            self.settle();
        }
    }

    /// Moves virtual time forward, firing every timer at its own deadline.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        self.fire_due();
        while let Some(t) = self.station.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.station.handle_timeout(self.now);
            self.settle();
        }
        self.now = end;
        self.fire_due();
    }

    pub fn advance_secs(&mut self, secs: u64) {
        self.advance(Duration::from_secs(secs));
    }

    /// The CSMS side drops the connection.
    pub fn drop_connection(&mut self) {
        if self.connected {
            self.connected = false;
            self.station
                .handle_disconnected(self.now, "dropped by the test");
            self.settle();
        }
    }

    pub fn plug(&mut self, evse: u32, connector: u32, plugged: bool) {
        self.station
            .handle_input(
                self.now,
                Input::Plug {
                    evse,
                    connector,
                    plugged,
                },
            )
            .expect("known connector");
        self.settle();
    }

    /// Sends raw text as the CSMS and returns what the station answered, if anything.
    pub fn send_raw(&mut self, text: &str) -> Option<Frame> {
        let before = self.answers.len();
        self.station.handle_frame(self.now, text);
        self.settle();
        self.answers.get(before).cloned()
    }

    /// Sends a CALL as the CSMS and returns the station's answer.
    pub fn call(&mut self, action: &str, payload: Value) -> Frame {
        let id = format!("csms-{}", self.answers.len());
        self.send_raw(&rpc::encode_call(&id, action, &payload))
            .expect("the station answers every CALL")
    }
}
