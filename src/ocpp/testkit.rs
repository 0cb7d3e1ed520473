//! A test kit for the core: a virtual clock and a scripted fake CSMS that answers the
//! station's requests synchronously. Tests (and later, load generators) drive a [`Harness`]
//! instead of sockets: `advance` moves time and fires due timers; everything the station sends
//! is validated against the official schema, recorded, and answered.

use super::clock::{Instant, UtcTime};
use super::devmodel::DeviceModel;
use super::meter::MeterReading;
use super::model::schedule::Limit;
use super::persist::MemoryJournal;
use super::rpc::{self, Frame};
use super::station::{EvseLayout, Identity, Input, Output, Protocol, Station, StationConfig};
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
    /// The journal payload (2.0.1) of the queued message this was sent for, `None` for a
    /// volatile one: ties a 1.6 transaction message to our transaction and seqNo.
    pub queued: Option<Value>,
}

/// How the fake CSMS behaves; tests change these fields between steps.
#[derive(Debug, Clone)]
pub struct FakeCsms {
    /// Accept WebSocket connections.
    pub online: bool,
    /// Answer requests (false: let them time out).
    pub answering: bool,
    /// Hold answers back until the test calls [`Harness::release`] (a slow CSMS: the test
    /// acts while a request is in flight).
    pub holding: bool,
    /// Requests received while `holding`, not answered yet (oldest first).
    pub held: Vec<Received>,
    /// Answer WebSocket pings.
    pub answering_pings: bool,
    pub boot_status: &'static str,
    pub interval: i64,
    /// CSMS URLs that cannot be reached (for network profile fall-back).
    pub unreachable: Vec<String>,
    /// Refuse the station's credentials (HTTP 401 at the WebSocket upgrade).
    pub rejecting_auth: bool,
    /// Actions answered with CALLERROR InternalError.
    pub failing: Vec<&'static str>,
    /// idTokenInfo status per idToken for Authorize and TransactionEvent (default Accepted).
    pub auth: Vec<(String, &'static str, Option<&'static str>)>,
    /// The personalMessage of every idTokenInfo it gives (the driver's tariff, I01).
    pub personal_message: Option<String>,
    /// language1 and language2 of every idTokenInfo it gives (C01.FR.08/09).
    pub languages: Vec<&'static str>,
    /// Fields added to its TransactionEvent answers, per eventType (`totalCost`,
    /// `updatedPersonalMessage`, I02/I03/I06).
    pub transaction_answers: Vec<(&'static str, Value)>,
    /// The CSMS's UTC at virtual time zero (default `CSMS_EPOCH_MS`); a test with real
    /// certificates sets the real time.
    pub epoch_ms: i64,
    pub received: Vec<Received>,
    /// The version it speaks (the station's): in 1.6 it validates against the 1.6 schemas,
    /// answers as a 1.6 CSMS and assigns transactionIds from `next_transaction_id`.
    pub protocol: Protocol,
    pub next_transaction_id: i64,
}

impl Default for FakeCsms {
    fn default() -> Self {
        FakeCsms {
            online: true,
            answering: true,
            holding: false,
            held: Vec::new(),
            answering_pings: true,
            boot_status: "Accepted",
            interval: 300,
            unreachable: Vec::new(),
            rejecting_auth: false,
            failing: Vec::new(),
            auth: Vec::new(),
            personal_message: None,
            languages: Vec::new(),
            transaction_answers: Vec::new(),
            epoch_ms: CSMS_EPOCH_MS,
            received: Vec::new(),
            protocol: Protocol::V201,
            next_transaction_id: 1,
        }
    }
}

impl FakeCsms {
    /// Sets the authorization status (and group) the CSMS gives an idToken.
    pub fn set_auth(&mut self, id_token: &str, status: &'static str, group: Option<&'static str>) {
        self.auth.retain(|(t, _, _)| t != id_token);
        self.auth.push((id_token.to_owned(), status, group));
    }

    fn token_info(&self, id_token: &Value) -> Value {
        let id = id_token["idToken"].as_str().unwrap_or("");
        let (status, group) = self
            .auth
            .iter()
            .find(|(t, _, _)| t == id)
            .map(|(_, s, g)| (*s, *g))
            .unwrap_or(("Accepted", None));
        let mut info = json!({ "status": status });
        if let Some(g) = group {
            info["groupIdToken"] = json!({"idToken": g, "type": "Central"});
        }
        if let Some(m) = &self.personal_message {
            info["personalMessage"] = json!({"format": "UTF8", "content": m});
        }
        for (key, language) in ["language1", "language2"].iter().zip(&self.languages) {
            info[*key] = json!(language);
        }
        info
    }

    /// The 1.6 idTagInfo of an idTag.
    fn tag_info(&self, id_tag: &Value) -> Value {
        let info = self.token_info(&json!({ "idToken": id_tag }));
        let mut out = json!({ "status": info["status"] });
        if let Some(group) = info["groupIdToken"]["idToken"].as_str() {
            out["parentIdTag"] = json!(group);
        }
        out
    }

    fn answer(&mut self, now: Instant, action: &str, payload: &Value) -> Value {
        let current_time =
            UtcTime::from_unix_millis(self.epoch_ms + now.as_millis() as i64).to_rfc3339();
        if self.protocol == Protocol::V16 {
            return match action {
                "BootNotification" => json!({
                    "currentTime": current_time,
                    "interval": self.interval,
                    "status": self.boot_status,
                }),
                "Heartbeat" => json!({ "currentTime": current_time }),
                "Authorize" => json!({ "idTagInfo": self.tag_info(&payload["idTag"]) }),
                "StartTransaction" => {
                    let id = self.next_transaction_id;
                    self.next_transaction_id += 1;
                    json!({ "transactionId": id, "idTagInfo": self.tag_info(&payload["idTag"]) })
                }
                "StopTransaction" => match payload.get("idTag") {
                    Some(tag) => json!({ "idTagInfo": self.tag_info(tag) }),
                    None => json!({}),
                },
                "DataTransfer" => json!({ "status": "UnknownVendorId" }),
                "SignCertificate" => json!({ "status": "Accepted" }),
                _ => json!({}),
            };
        }
        match action {
            "BootNotification" => json!({
                "currentTime": current_time,
                "interval": self.interval,
                "status": self.boot_status,
            }),
            "Heartbeat" => json!({ "currentTime": current_time }),
            "Authorize" => json!({ "idTokenInfo": self.token_info(&payload["idToken"]) }),
            "SignCertificate" => json!({ "status": "Accepted" }),
            "TransactionEvent" => {
                let mut answer = json!({});
                if payload.get("idToken").is_some() {
                    answer["idTokenInfo"] = self.token_info(&payload["idToken"]);
                }
                for (kind, extra) in &self.transaction_answers {
                    if payload["eventType"] == *kind {
                        for (k, v) in extra.as_object().into_iter().flatten() {
                            answer[k] = v.clone();
                        }
                    }
                }
                answer
            }
            _ => json!({}),
        }
    }

    /// The request and response schemas of an action the station sent, in the version
    /// spoken.
    fn schemas(
        &self,
        action: &str,
    ) -> (
        &'static super::schema::Schema,
        &'static super::schema::Schema,
    ) {
        match self.protocol {
            Protocol::V201 => {
                let known = Action::from_name(action)
                    .unwrap_or_else(|| panic!("station sent unknown action {action}"));
                (known.request_schema(), known.response_schema())
            }
            Protocol::V16 => {
                let known = super::v16::Action::from_name(action)
                    .unwrap_or_else(|| panic!("station sent unknown 1.6 action {action}"));
                (known.request_schema(), known.response_schema())
            }
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

    /// The StatusNotifications received, in order: (evseId, connectorId, connectorStatus).
    pub fn statuses(&self) -> Vec<(i64, i64, String)> {
        self.of("StatusNotification")
            .iter()
            .map(|r| {
                (
                    r.payload["evseId"].as_i64().unwrap_or(-1),
                    r.payload["connectorId"].as_i64().unwrap_or(-1),
                    r.payload["connectorStatus"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
            })
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
    /// The CSMS URL of each connection attempt.
    pub connect_urls: Vec<String>,
    /// Frames the station sent that answer a CSMS call (CALLRESULT / CALLERROR).
    pub answers: Vec<Frame>,
    /// Raw text of answers the station sent to frames the CSMS sent.
    pub raw_answers: Vec<String>,
    pub pings: usize,
    pub disconnects: Vec<String>,
    /// What the station persisted, as the SQLite journal would hold it.
    pub journal: MemoryJournal,
    /// Persist batches in the order they were emitted.
    pub batches: usize,
    /// Power path (contactor) state per EVSE id, as last actuated.
    pub power_paths: Vec<(u32, bool)>,
    /// Connectors unlocked, in order.
    pub unlocks: Vec<(u32, u32)>,
    /// Charging limits given to the hardware, in order (`Output::ChargingLimit`); the
    /// simulated meters draw no more than the latest of their EVSE.
    pub charging_limits: Vec<(u32, Limit)>,
    /// Times the station asked to be restarted (Reset).
    pub reboots: usize,
    /// Basic auth passwords the station switched to (A01).
    pub passwords: Vec<String>,
    /// Private keys (PKCS#8) made for CSRs, in order.
    pub csr_keys: Vec<Vec<u8>>,
    /// Root certificates the station keeps: (kind, id, pem).
    pub stored_certificates: Vec<(String, String, String)>,
    /// Station certificate chains activated (A02.FR.08).
    pub station_chains: Vec<String>,
    /// Simulated meters: EVSE id, power while the power path is closed (W), register (Wh).
    pub meters: Vec<(u32, f64, f64)>,
    /// Firmware work the station asked of the shell (`Output::Firmware*`), in order; the test
    /// answers with `Input::Firmware`.
    pub firmware: Vec<Output>,
    /// Log uploads asked of the shell (`Output::UploadLog`, `CancelLogUpload`), in order.
    pub log_uploads: Vec<Output>,
    /// The station's security log (`Output::RecordSecurityEvent`): (timestamp, type).
    pub security_log: Vec<(String, String)>,
    config: StationConfig,
    seed: u64,
}

/// A typical station: one EVSE with one connector, a second EVSE with two.
pub fn default_config() -> StationConfig {
    StationConfig {
        protocol: Default::default(),
        identity: Identity {
            station_id: "CP001".into(),
            vendor: "Example".into(),
            model: "AC-2".into(),
            serial_number: Some("SN-0001".into()),
            firmware_version: "1.0.0".into(),
        },
        evses: vec![
            EvseLayout {
                id: 1,
                connectors: vec![1],
                connector_types: Vec::new(),
            },
            EvseLayout {
                id: 2,
                connectors: vec![1, 2],
                connector_types: Vec::new(),
            },
        ],
        boot_reason: v201::BootReasonEnum::PowerUp,
        variables: DeviceModel::default(),
        max_queue_bytes: 1 << 20,
        network: super::network::NetworkProfile {
            slot: 1,
            url: "ws://csms.test/ocpp".into(),
            security_profile: 1,
            message_timeout_s: 0,
        },
        client_certificate: false,
        certificates: Default::default(),
        data_transfer: Vec::new(),
        firmware: Default::default(),
        diagnostics_log: true,
        charging: Default::default(),
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
        let station = Station::new(
            config.clone(),
            Default::default(),
            now,
            UtcTime::from_unix_millis(STATION_EPOCH_MS),
            42,
        );
        let meters = config.evses.iter().map(|e| (e.id, 11_000.0, 0.0)).collect();
        let mut h = Harness {
            station,
            now,
            csms: FakeCsms {
                protocol: config.protocol,
                ..FakeCsms::default()
            },
            connected: false,
            connect_attempts: Vec::new(),
            connect_urls: Vec::new(),
            answers: Vec::new(),
            raw_answers: Vec::new(),
            pings: 0,
            disconnects: Vec::new(),
            journal: MemoryJournal::default(),
            batches: 0,
            power_paths: Vec::new(),
            unlocks: Vec::new(),
            charging_limits: Vec::new(),
            reboots: 0,
            passwords: Vec::new(),
            csr_keys: Vec::new(),
            stored_certificates: Vec::new(),
            station_chains: Vec::new(),
            meters,
            firmware: Vec::new(),
            log_uploads: Vec::new(),
            security_log: Vec::new(),
            config,
            seed: 42,
        };
        setup(&mut h.csms);
        h.fire_due();
        h
    }

    /// Executes the station's outputs until it has none, playing the CSMS's part.
    pub fn settle(&mut self) {
        while let Some(output) = self.station.poll_output() {
            match output {
                Output::Connect { profile } => {
                    self.connect_attempts.push(self.now);
                    self.connect_urls.push(profile.url.clone());
                    if self.csms.unreachable.contains(&profile.url) {
                        self.station.handle_connect_failed(
                            self.now,
                            "no route to that CSMS",
                            super::station::ConnectFailure::Other,
                        );
                    } else if self.csms.rejecting_auth {
                        self.station.handle_connect_failed(
                            self.now,
                            "HTTP 401",
                            super::station::ConnectFailure::AuthRejected,
                        );
                    } else if self.csms.online {
                        self.connected = true;
                        self.station.handle_connected(self.now);
                    } else {
                        self.station.handle_connect_failed(
                            self.now,
                            "CSMS is down",
                            super::station::ConnectFailure::Other,
                        );
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
                    self.receive_queued(&text, None);
                }
                Output::SendQueued {
                    queue_seq,
                    message_id,
                } => {
                    assert!(self.connected, "sent a queued message while not connected");
                    let message = self
                        .journal
                        .payload(queue_seq)
                        .unwrap_or_else(|| {
                            panic!("queued message {queue_seq} was not persisted before sending")
                        })
                        .clone();
                    if let Some(text) = self.station.queued_frame(self.now, &message_id, &message) {
                        self.receive_queued(&text, Some(message.payload));
                    }
                }
                Output::Persist(batch) => {
                    self.journal.apply(&batch);
                    self.batches += 1;
                }
                Output::PowerPath { evse, closed } => {
                    self.power_paths.retain(|(e, _)| *e != evse);
                    self.power_paths.push((evse, closed));
                }
                // Energy is counted up to `now` before every event, so the meter follows the new
                // limit from here on.
                Output::ChargingLimit { evse, limit } => self.charging_limits.push((evse, limit)),
                Output::Unlock { evse, connector } => self.unlocks.push((evse, connector)),
                Output::Reboot => self.reboots += 1,
                Output::FirmwareDownload { .. }
                | Output::FirmwareVerify { .. }
                | Output::FirmwareInstall { .. }
                | Output::FirmwareActivate { .. }
                | Output::FirmwareDiscard { .. } => self.firmware.push(output),
                Output::UploadLog(_) | Output::CancelLogUpload { .. } => {
                    self.log_uploads.push(output)
                }
                Output::RecordSecurityEvent {
                    timestamp, kind, ..
                } => self.security_log.push((timestamp, kind)),
                Output::BasicAuthPassword(secret) => self.passwords.push(secret.0),
                Output::CreateCsr {
                    organization,
                    common_name,
                } => {
                    // As the shell does: a real P-256 key and CSR (the key stays here).
                    let rng = ring::rand::SystemRandom::new();
                    let (pkcs8, spki) = super::x509::generate_key(&rng).expect("key");
                    let csr = super::x509::build_csr(&organization, &common_name, &spki, &|m| {
                        super::x509::sign_with(&pkcs8, m, &rng)
                    })
                    .expect("csr");
                    self.csr_keys.push(pkcs8);
                    let csr_pem = super::x509::to_pem("CERTIFICATE REQUEST", &csr);
                    let _ = self.station.handle_input(
                        self.now,
                        Input::CsrCreated {
                            csr_pem,
                            spki_der: spki,
                        },
                    );
                }
                Output::StoreCertificate { kind, id, pem } => {
                    self.stored_certificates.push((kind, id, pem))
                }
                Output::RemoveCertificate { kind, id } => self
                    .stored_certificates
                    .retain(|(k, i, _)| !(*k == kind && *i == id)),
                Output::ActivateStationCertificate { chain_pem } => {
                    self.station_chains.push(chain_pem)
                }
            }
        }
    }

    /// The charging limit last given to the EVSE's hardware.
    pub fn charging_limit(&self, evse: u32) -> Option<Limit> {
        self.charging_limits
            .iter()
            .rev()
            .find(|(e, _)| *e == evse)
            .map(|(_, l)| *l)
    }

    /// Whether the EVSE's power path is closed.
    pub fn power_path(&self, evse: u32) -> bool {
        self.power_paths.iter().any(|(e, c)| *e == evse && *c)
    }

    /// Simulated meters advance to `self.now` (energy grows while the power path is closed)
    /// and report to the station, as the shell does before every event.
    fn feed_meters(&mut self, elapsed: Duration) {
        let hours = elapsed.as_secs_f64() / 3600.0;
        for i in 0..self.meters.len() {
            let (evse, power, energy) = self.meters[i];
            let power = match self.charging_limit(evse) {
                Some(limit) => power.min(limit.watts(230.0)),
                None => power,
            };
            let closed = self.power_path(evse);
            let energy = if closed {
                energy + power * hours
            } else {
                energy
            };
            self.meters[i].2 = energy;
            let reading = MeterReading {
                energy_wh: energy,
                power_w: if closed { power } else { 0.0 },
                current_a: if closed { power / 3.0 / 230.0 } else { 0.0 },
                voltage_v: 230.0,
            };
            let _ = self
                .station
                .handle_input(self.now, Input::Meter { evse, reading });
        }
        self.settle();
    }

    /// The configuration the next `power_cycle` starts with (e.g. a new firmware version).
    pub fn set_config(&mut self, config: StationConfig) {
        self.config = config;
    }

    /// Rebuilds the station from what it persisted, as a restart of the process would: same
    /// virtual time, a new random seed, the connection gone. `clean` records a clean shutdown
    /// (SIGTERM) first, as the shell does.
    pub fn power_cycle(&mut self, clean: bool) {
        if clean {
            self.journal.apply(&[super::persist::PersistOp::PutMeta {
                key: super::station::CLEAN_SHUTDOWN_KEY.into(),
                value: "1".into(),
            }]);
        }
        self.seed += 1;
        self.connected = false;
        self.power_paths.clear();
        self.station = Station::new(
            self.config.clone(),
            self.journal.load(),
            self.now,
            UtcTime::from_unix_millis(STATION_EPOCH_MS + self.now.as_millis() as i64),
            self.seed,
        );
        self.fire_due();
    }

    fn receive_queued(&mut self, text: &str, queued: Option<Value>) {
        let frame =
            rpc::decode(text).unwrap_or_else(|e| panic!("station sent a bad frame {text}: {e:?}"));
        match frame {
            Frame::Call {
                id,
                action,
                payload,
            } => {
                let schemas = self.csms.schemas(&action);
                if let Err(v) = v201::validate::validate(schemas.0, &payload) {
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
                    queued,
                });
                if self.csms.failing.contains(&action.as_str()) {
                    let error = rpc::CallError::new(rpc::CallErrorCode::InternalError, "test");
                    self.station
                        .handle_frame(self.now, &rpc::encode_error(&id, &error));
                } else if self.csms.holding {
                    let request = self.csms.received.last().expect("just recorded").clone();
                    self.csms.held.push(request);
                } else if self.csms.answering {
                    let answer = self.csms.answer(self.now, &action, &payload);
                    assert!(
                        v201::validate::validate(schemas.1, &answer).is_ok(),
                        "the fake CSMS built an invalid {action} answer: {answer}"
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
            let before = self.now;
            self.now = self.now.max(t);
            self.feed_meters(self.now - before);
            self.station.handle_timeout(self.now);
            self.settle();
        }
        let before = self.now;
        self.now = end;
        self.feed_meters(self.now - before);
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

    /// Answers the oldest held request (see [`FakeCsms::holding`]); `false` if none is held.
    /// What the station sends next is held too while `holding` is set.
    pub fn release(&mut self) -> bool {
        if self.csms.held.is_empty() {
            return false;
        }
        let request = self.csms.held.remove(0);
        let schemas = self.csms.schemas(&request.action);
        let answer = self
            .csms
            .answer(self.now, &request.action, &request.payload);
        assert!(
            v201::validate::validate(schemas.1, &answer).is_ok(),
            "the fake CSMS built an invalid answer"
        );
        self.station
            .handle_frame(self.now, &rpc::encode_result(&request.id, &answer));
        self.settle();
        true
    }

    /// Answers held requests until none is left.
    pub fn release_all(&mut self) {
        while self.release() {}
    }

    /// Presents an idToken (type ISO14443) at an EVSE's reader.
    pub fn token(&mut self, evse: u32, id_token: &str) {
        self.station
            .handle_input(
                self.now,
                Input::Token {
                    evse,
                    id_token: json!({"idToken": id_token, "type": "ISO14443"}),
                },
            )
            .expect("known EVSE and valid token");
        self.settle();
    }

    /// The TransactionEvents the CSMS received, in order.
    pub fn events(&self) -> Vec<&Value> {
        self.csms
            .of("TransactionEvent")
            .into_iter()
            .map(|r| &r.payload)
            .collect()
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

    /// A hardware problem on a connector (`Some`) or its end (`None`).
    pub fn fault(&mut self, evse: u32, connector: u32, problem: Option<&str>) {
        self.station
            .handle_input(
                self.now,
                Input::Fault {
                    evse,
                    connector,
                    problem: problem.map(str::to_owned),
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

    /// GetVariables as the CSMS for `component.variable[instance]` names (`EVSE@1` for an
    /// EVSE's component, `Connector@2/1` for a connector's): each attributeValue, "" for none.
    pub fn variable_values(&mut self, names: &[&str]) -> Vec<String> {
        let data: Vec<Value> = names
            .iter()
            .map(|name| {
                let (component, rest) = name.split_once('.').expect("component.variable");
                let (variable, instance) = match rest.split_once('[') {
                    Some((v, i)) => (v, Some(i.trim_end_matches(']'))),
                    None => (rest, None),
                };
                let mut c = json!({ "name": component });
                if let Some((n, at)) = component.split_once('@') {
                    let (evse, connector) = match at.split_once('/') {
                        Some((e, c)) => (e, Some(c.parse::<i64>().expect("connector id"))),
                        None => (at, None),
                    };
                    c = json!({ "name": n, "evse": {"id": evse.parse::<i64>().expect("evse id")} });
                    if let Some(id) = connector {
                        c["evse"]["connectorId"] = json!(id);
                    }
                }
                let mut v = json!({ "name": variable });
                if let Some(i) = instance {
                    v["instance"] = json!(i);
                }
                json!({ "component": c, "variable": v })
            })
            .collect();
        match self.call("GetVariables", json!({ "getVariableData": data })) {
            Frame::CallResult { payload, .. } => payload["getVariableResult"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r["attributeValue"].as_str().unwrap_or("").to_owned())
                .collect(),
            other => panic!("GetVariables: {other:?}"),
        }
    }

    /// Sends a CALL as the CSMS and returns the station's answer.
    pub fn call(&mut self, action: &str, payload: Value) -> Frame {
        let id = format!("csms-{}", self.answers.len());
        self.send_raw(&rpc::encode_call(&id, action, &payload))
            .expect("the station answers every CALL")
    }
}
