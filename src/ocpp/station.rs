//! The charging station state machine: connection life cycle, registration (B01-B04),
//! heartbeats (G02), connector status (G01), the RPC rules of part 4, and the two send queues
//! (volatile requests, and the durable transaction queue of `outbox`). The transaction logic
//! (functional blocks C, E, F) is in `transactions.rs`.
//!
//! # Calling contract
//!
//! [`Station`] is sans-IO: it never touches a socket, a file or a clock. The shell drives it:
//!
//! 1. Load the [`Persisted`] state and build it with [`Station::new`], passing the monotonic
//!    time and the system's UTC estimate.
//! 2. Feed every event in as it happens, with the current monotonic time (which never goes
//!    backwards): [`handle_connected`](Station::handle_connected) /
//!    [`handle_connect_failed`](Station::handle_connect_failed) /
//!    [`handle_disconnected`](Station::handle_disconnected) for the WebSocket,
//!    [`handle_frame`](Station::handle_frame) for each text message,
//!    [`handle_pong`](Station::handle_pong), [`handle_input`](Station::handle_input) for
//!    hardware, meters and local commands, and [`handle_timeout`](Station::handle_timeout) when
//!    the deadline from [`poll_timeout`](Station::poll_timeout) has passed.
//! 3. After each call, drain [`poll_output`](Station::poll_output) and execute the effects
//!    strictly in order: a [`Output::Persist`] batch must be durable before any later output
//!    is executed (persist before send).
//! 4. Sleep until [`poll_timeout`](Station::poll_timeout) or the next event.

use super::auth::AuthCache;
use super::clock::{Instant, TimeSource, UtcTime, WallClock};
use super::devmodel::{DeviceModel, Var};
use super::meter::MeterReading;
use super::outbox::{Failure, Outbox};
use super::persist::{Batch, EventKind, PersistOp, Persisted, QueuedMessage, QueuedMeta};
use super::rpc::{self, CallError, CallErrorCode, Frame};
use super::timer::{Rng, Timer, TimerTable};
use super::transactions::{AuthPurpose, Evse};
use super::v201::{self, Action};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// How long to wait before retrying a BootNotification that failed or timed out, or that was
/// answered with interval 0 (B02.FR.07, B03.FR.05: our own interval, not flooding the CSMS).
const BOOT_RETRY_FALLBACK: Duration = Duration::from_secs(30);

/// How long after answering a credential change the connection is closed for a new one.
const RELINK_GRACE: Duration = Duration::from_secs(1);

/// The meta key under which the shell records a clean shutdown (SIGTERM), so transactions left
/// open are ended with stoppedReason Reboot rather than PowerLoss.
pub const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown";

/// Who we are, as the BootNotification tells the CSMS.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The charging station identity (the Basic auth user, the last path segment).
    pub station_id: String,
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
    /// Bound of the durable queue's payloads (E04.FR.08 applies above it).
    pub max_queue_bytes: u64,
    /// The connection profile of the configuration file (slot 1 until the CSMS sets another).
    pub network: super::network::NetworkProfile,
    /// A client certificate is configured (security profile 3 is possible).
    pub client_certificate: bool,
    /// Root certificates and the station certificate the shell found on disk.
    pub certificates: super::certificates::CertificateStore,
    /// Vendor extensions answering DataTransfer (P01); none answers UnknownVendorId.
    pub data_transfer: Vec<std::sync::Arc<dyn super::management::DataTransferHandler>>,
    /// What the integrator allows and provides for firmware updates (L01).
    pub firmware: super::firmware::FirmwarePolicy,
    /// A diagnostics log source is configured (GetLog DiagnosticsLog, N01).
    pub diagnostics_log: bool,
}

/// Events from hardware and the local control interface.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The plug of a connector went in (`plugged`) or out.
    Plug {
        evse: u32,
        connector: u32,
        plugged: bool,
    },
    /// An idToken presented at an EVSE's reader (`IdTokenType` JSON: `idToken`, `type`).
    Token { evse: u32, id_token: Value },
    /// The latest reading of an EVSE's meter.
    Meter { evse: u32, reading: MeterReading },
    /// The shell made the key pair and CSR the core asked for (`Output::CreateCsr`).
    CsrCreated { csr_pem: String, spki_der: Vec<u8> },
    /// ... or could not.
    CsrFailed { reason: String },
    /// The log upload asked for by `Output::UploadLog` finished.
    LogUploaded {
        request_id: i64,
        result: Result<(), (super::logs::UploadFailure, String)>,
    },
    /// A firmware step asked for by an `Output::Firmware*` finished (`Err`: why it failed).
    Firmware {
        request_id: i64,
        step: super::firmware::FirmwareStep,
        result: Result<(), String>,
    },
    /// The journal cannot write (`Some(why)`: disk full, read-only, ...) or works again.
    Storage { problem: Option<String> },
    /// A connector's hardware failed (`Some(what)`) or recovered (`None`), e.g. its plug input.
    Fault {
        evse: u32,
        connector: u32,
        problem: Option<String>,
    },
}

/// Effects for the shell to execute, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open the WebSocket with this profile; answer with `handle_connected` or
    /// `handle_connect_failed`.
    Connect {
        profile: super::network::NetworkProfile,
    },
    /// Close the WebSocket. The core already counts itself offline and has scheduled the
    /// reconnect; a later `handle_disconnected` is ignored.
    Disconnect { reason: String },
    /// Send this text frame.
    Send(String),
    /// Send the queued message `queue_seq` from the journal as a CALL with this message id.
    SendQueued { queue_seq: u64, message_id: String },
    /// Send a WebSocket ping; answer a pong with `handle_pong`.
    Ping,
    /// Make these changes durable, atomically, before executing any later output.
    Persist(Batch),
    /// Close (`true`) or open the EVSE's power path (contactor).
    PowerPath { evse: u32, closed: bool },
    /// Release the connector's cable lock (UnlockConnector, E06.FR.10).
    Unlock { evse: u32, connector: u32 },
    /// Restart the agent (Reset, B11/B12): everything before this output is done; exit so the
    /// service manager starts it again.
    Reboot,
    /// Make a new key pair and a CSR for it (A02.FR.02); answer with `Input::CsrCreated`
    /// (or `Input::CsrFailed`).
    CreateCsr {
        organization: String,
        common_name: String,
    },
    /// Keep an installed root certificate (M05).
    StoreCertificate {
        kind: String,
        id: String,
        pem: String,
    },
    /// Delete an installed root certificate (M04).
    RemoveCertificate { kind: String, id: String },
    /// The CSMS signed our CSR: this chain and the CSR's key become the station's TLS client
    /// identity (A02.FR.08).
    ActivateStationCertificate { chain_pem: String },
    /// Use this HTTP Basic auth password from now on (A01); the core closes the connection
    /// shortly after answering, so the next connection uses it.
    BasicAuthPassword(Secret),
    /// Download the firmware at `location` (resuming a partial download of the same
    /// `request_id`); answer with `Input::Firmware` step `Download`.
    FirmwareDownload { request_id: i64, location: String },
    /// Check the downloaded file's signature with the signing certificate (DER); answer with
    /// step `Verify`.
    FirmwareVerify {
        request_id: i64,
        signer_der: Vec<u8>,
        signature: Vec<u8>,
    },
    /// Run the install command on the downloaded file; answer with step `Install`.
    FirmwareInstall { request_id: i64 },
    /// Run the activation command (typically a reboot); answer only a failure (step
    /// `Activate`).
    FirmwareActivate { request_id: i64 },
    /// Delete the files of this firmware job.
    FirmwareDiscard { request_id: i64 },
    /// Gather the log and upload it; answer with `Input::LogUploaded`.
    UploadLog(super::logs::UploadRequest),
    /// Stop the upload of this request, if it still runs.
    CancelLogUpload { request_id: i64 },
    /// Append a security event to the station's own security log (N01.FR.03 uploads it).
    RecordSecurityEvent {
        timestamp: String,
        kind: String,
        tech_info: Option<String>,
    },
}

/// Why a connection attempt failed, as far as the core cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Network, DNS, HTTP, ...: retried with back-off.
    Other,
    /// The CSMS refused our credentials (HTTP 401).
    AuthRejected,
    /// The CSMS's certificate did not verify (A00.FR.310/413).
    InvalidCsmsCertificate,
    /// The CSMS offered only TLS older than 1.2 (A00.FR.316).
    InvalidTlsVersion,
    /// The CSMS allows none of the cipher suites of A00.FR.318/319.
    InvalidTlsCipherSuite,
}

/// A secret value: `Debug` does not show it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
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

/// Errors of the caller: an input that names something that does not exist or is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    UnknownConnector { evse: u32, connector: u32 },
    UnknownEvse { evse: u32 },
    BadToken(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::UnknownConnector { evse, connector } => {
                write!(f, "no connector {connector} on EVSE {evse}")
            }
            InputError::UnknownEvse { evse } => write!(f, "no EVSE {evse}"),
            InputError::BadToken(why) => write!(f, "bad idToken: {why}"),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Connector {
    pub(super) evse: u32,
    pub(super) id: u32,
    pub(super) plugged: bool,
    /// Set Inoperative by ChangeAvailability (G03), persistent.
    pub(super) operative: bool,
    /// A hardware problem (e.g. its plug input line failed).
    pub(super) fault: Option<String>,
    /// The `Problem` value last sent in a NotifyEvent.
    pub(super) fault_reported: bool,
    /// The last status the CSMS acknowledged, to report only changes after a short outage
    /// (B04.FR.02).
    pub(super) reported: Option<v201::ConnectorStatusEnum>,
}

/// What a volatile request is, so its answer can be applied.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RequestKind {
    BootNotification,
    Heartbeat,
    StatusNotification {
        connector: usize,
        status: v201::ConnectorStatusEnum,
    },
    Authorize {
        evse: usize,
        id_token: Value,
        purpose: AuthPurpose,
    },
    MeterValues,
    NotifyReport,
    NotifyEvent,
    SignCertificate,
    /// Only checked against its response schema (triggered LogStatusNotification, ...).
    Other(Action),
}

/// A request that is not worth keeping across an outage (rebuilt from state when needed).
#[derive(Debug, Clone)]
pub(super) struct Request {
    kind: RequestKind,
    action: Action,
    payload: Value,
    /// Asked for by the CSMS (TriggerMessage, GetBaseReport): may go out before Accepted
    /// (B02.FR.02).
    triggered: bool,
}

#[derive(Debug)]
enum InFlightKind {
    Volatile(Request),
    Queued(QueuedMeta),
}

#[derive(Debug)]
struct InFlight {
    id: String,
    kind: InFlightKind,
}

impl InFlight {
    fn action(&self) -> &str {
        match &self.kind {
            InFlightKind::Volatile(r) => r.action.as_str(),
            InFlightKind::Queued(m) => &m.action,
        }
    }
}

/// A snapshot for `ctl status` and logs.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    pub connection: ConnectionState,
    pub registration: Registration,
    pub utc: String,
    pub time_source: &'static str,
    pub heartbeat_interval_s: u64,
    pub queue: QueueSnapshot,
    pub evses: Vec<EvseSnapshot>,
    /// The firmware update in progress, if any.
    pub firmware: Option<FirmwareSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirmwareSnapshot {
    pub request_id: i64,
    pub phase: super::firmware::Phase,
    /// The last FirmwareStatusNotification status sent.
    pub last_status: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    /// Transaction-related messages waiting for the CSMS.
    pub depth: usize,
    pub bytes: u64,
    /// Age of the oldest unsent message, seconds.
    pub oldest_unsent_age_s: Option<u64>,
    /// Messages dropped since start-up (E04.FR.08 bound, or E13.FR.04 after the last attempt).
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvseSnapshot {
    pub id: u32,
    /// The power path (contactor) is closed.
    pub power_path_closed: bool,
    pub authorized: bool,
    pub meter: Option<MeterSnapshot>,
    pub transaction: Option<TransactionSnapshot>,
    /// What happened to the last idToken presented here.
    pub last_authorization: Option<String>,
    pub connectors: Vec<ConnectorSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeterSnapshot {
    pub energy_wh: f64,
    pub power_w: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransactionSnapshot {
    pub id: String,
    pub charging_state: String,
    pub next_seq_no: u64,
    pub energy_wh: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSnapshot {
    pub id: u32,
    pub status: &'static str,
    pub plugged: bool,
}

pub struct Station {
    pub(super) identity: Identity,
    boot_reason: v201::BootReasonEnum,
    pub(super) vars: DeviceModel,
    pub(super) clock: WallClock,
    pub(super) rng: Rng,
    /// Random per start-up: queued messages made before UTC was known are rebased only within
    /// the boot that made them.
    pub(super) boot_id: u64,
    pub(super) timers: TimerTable,
    pub(super) outputs: VecDeque<Output>,

    connection: ConnectionState,
    /// Failed connection attempts since the last good connection (the back-off exponent).
    reconnect_attempts: u32,
    offline_since: Option<Instant>,
    awaiting_pong: bool,

    registration: Registration,
    /// A BootNotification should go out as soon as the link allows.
    boot_due: bool,
    heartbeat_interval: Duration,

    pub(super) connectors: Vec<Connector>,
    pub(super) evses: Vec<Evse>,
    queue: VecDeque<Request>,
    pub(super) outbox: Outbox,
    pub(super) max_queue_bytes: u64,
    in_flight: Option<InFlight>,
    pub(super) auth_cache: AuthCache,
    /// The idToken last reported per transaction, to file the CSMS's idTokenInfo (C10.FR.05).
    pub(super) reported_tokens: Vec<(String, Value)>,
    pub(super) network: super::network::Network,
    pub(super) client_certificate: bool,
    pub(super) data_transfer: Vec<std::sync::Arc<dyn super::management::DataTransferHandler>>,
    /// Set Inoperative by ChangeAvailability for the whole station (G04), persistent.
    pub(super) station_operative: bool,
    /// Availability changes waiting for transactions to end (G03.FR.05, G04.FR.06).
    pub(super) scheduled_availability: Vec<super::management::AvailabilityChange>,
    /// A Reset waiting for transactions to end (OnIdle, B12).
    pub(super) scheduled_reset: Option<Option<u32>>,
    pub(super) local_list: super::management::LocalList,
    /// Security events already raised, to report floods once (`InvalidMessages`, ...).
    pub(super) raised_once: Vec<&'static str>,
    /// Sequence for NotifyEvent eventIds.
    pub(super) next_event_id: i64,
    /// Close the connection shortly after the answer to the current CSMS call is out (new
    /// credentials).
    pub(super) reconnect_after_answer: bool,
    /// The network profile slot the CSMS accepted us on.
    accepted_slot: Option<u32>,
    pub(super) certificates: super::certificates::CertificateStore,
    /// The CSR sent for signing and its public key (SubjectPublicKeyInfo DER).
    pub(super) pending_csr: Option<(String, Vec<u8>)>,
    pub(super) csr_attempts: u32,
    pub(super) firmware: super::firmware::Firmware,
    pub(super) logs: super::logs::Logs,
}

impl Station {
    pub fn new(
        config: StationConfig,
        persisted: Persisted,
        now: Instant,
        system_utc: UtcTime,
        rng_seed: u64,
    ) -> Self {
        let connectors: Vec<Connector> = config
            .evses
            .iter()
            .flat_map(|e| {
                e.connectors.iter().map(|&c| Connector {
                    evse: e.id,
                    id: c,
                    plugged: false,
                    operative: true,
                    fault: None,
                    fault_reported: false,
                    reported: None,
                })
            })
            .collect();
        let evses = config.evses.iter().map(|e| Evse::new(e.id)).collect();
        let heartbeat_interval = config.variables.seconds(Var::HeartbeatInterval);
        let mut rng = Rng::new(rng_seed);
        let boot_id = rng.next_u64();
        let mut station = Station {
            identity: config.identity,
            boot_reason: config.boot_reason,
            vars: config.variables,
            clock: WallClock::new(now, system_utc),
            rng,
            boot_id,
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
            evses,
            queue: VecDeque::new(),
            outbox: Outbox::new(persisted.queue.clone(), persisted.last_queue_seq),
            max_queue_bytes: config.max_queue_bytes,
            in_flight: None,
            auth_cache: AuthCache::new(persisted.auth_cache.clone()),
            reported_tokens: Vec::new(),
            network: super::network::Network::new(vec![config.network], "1", None),
            client_certificate: config.client_certificate,
            data_transfer: config.data_transfer,
            station_operative: true,
            scheduled_availability: Vec::new(),
            scheduled_reset: None,
            local_list: Default::default(),
            raised_once: Vec::new(),
            next_event_id: 1,
            reconnect_after_answer: false,
            accepted_slot: None,
            certificates: config.certificates,
            pending_csr: None,
            csr_attempts: 0,
            firmware: super::firmware::Firmware {
                policy: config.firmware,
                ..Default::default()
            },
            logs: super::logs::Logs {
                diagnostics: config.diagnostics_log,
                job: None,
            },
        };
        station.restore_management(&persisted);
        station.restore_pending_csr(&persisted);
        // A03: the first validity check soon after start-up, then daily.
        station
            .timers
            .set(Timer::CertificateCheck, now + Duration::from_secs(300));
        station.recover(now, &persisted);
        station.restore_firmware(now, &persisted);
        station.restore_log_upload(now, &persisted);
        station.security_event(now, "StartupOfTheDevice", None);
        station.schedule_aligned(now);
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
                        let profile = self.network.current().clone();
                        self.outputs.push_back(Output::Connect { profile });
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
                            let wait = self.ping_interval().max(self.message_timeout());
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
                Timer::QueueRetry => {} // pump below sends the head
                Timer::CsrRetry => self.csr_retry(now),
                Timer::CertificateCheck => self.check_certificate_expiry(now),
                Timer::Firmware => self.firmware_timer(now),
                Timer::LogRetry => self.log_retry_timer(now),
                Timer::Relink => {
                    if self.connection == ConnectionState::Connected {
                        info!("reconnecting with the new credentials");
                        self.go_offline(now);
                        self.outputs.push_back(Output::Disconnect {
                            reason: "new credentials".into(),
                        });
                    }
                }
                Timer::AlignedData
                | Timer::AlignedTxEnded
                | Timer::TxUpdated(_)
                | Timer::TxEndedSample(_)
                | Timer::EvConnectTimeout(_)
                | Timer::MeterCheckpoint(_) => self.transaction_timer(now, timer),
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
        // Registration is with a CSMS: a connection through another network profile (B10
        // fall-back) starts with a BootNotification again.
        if self.registration == Registration::Accepted
            && self.accepted_slot != Some(self.network.current().slot)
        {
            info!(
                slot = self.network.current().slot,
                "another network profile: registering again"
            );
            self.registration = Registration::None;
            self.timers.stop(Timer::BootRetry);
        }
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
                self.report_faults(now);
                self.reset_heartbeat(now);
            }
            // B02.FR.04 / B03.FR.02: a running BootRetry timer means we must wait for it.
            _ => self.boot_due = !self.timers.is_set(Timer::BootRetry),
        }
        self.pump(now);
    }

    /// The attempt to open the WebSocket failed, and why: some causes are security events
    /// (A00.FR.310/413, A00.FR.316, A01).
    pub fn handle_connect_failed(&mut self, now: Instant, reason: &str, failure: ConnectFailure) {
        if self.connection != ConnectionState::Connecting {
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
        self.connection = ConnectionState::Offline;
        self.offline_since.get_or_insert(now);
        let attempts = self.vars.int(Var::NetworkProfileConnectionAttempts).max(1) as u32;
        if self.network.failed(attempts) {
            let p = self.network.current();
            info!(
                slot = p.slot,
                url = p.url,
                "trying the next network connection profile (B10)"
            );
        }
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

    pub fn handle_pong(&mut self, _now: Instant) {
        self.awaiting_pong = false;
        self.timers.stop(Timer::PongTimeout);
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
                self.plug_changed(now, evse, connector, plugged);
            }
            Input::Token { evse, id_token } => {
                let index = self
                    .evse_index(evse)
                    .ok_or(InputError::UnknownEvse { evse })?;
                let token: v201::IdToken = serde_json::from_value(id_token.clone())
                    .map_err(|e| InputError::BadToken(e.to_string()))?;
                v201::validate::validate(&v201::tables::ID_TOKEN, &id_token)
                    .map_err(|v| InputError::BadToken(format!("{}: {}", v.path, v.message)))?;
                let _ = token;
                self.present_token(now, index, id_token);
            }
            Input::Meter { evse, reading } => {
                let index = self
                    .evse_index(evse)
                    .ok_or(InputError::UnknownEvse { evse })?;
                self.meter_reading(now, index, reading);
            }
            Input::CsrCreated { csr_pem, spki_der } => self.csr_created(now, csr_pem, spki_der),
            Input::CsrFailed { reason } => {
                error!(reason, "could not make a key and CSR");
            }
            Input::Firmware {
                request_id,
                step,
                result,
            } => self.firmware_result(now, request_id, step, result),
            Input::LogUploaded { request_id, result } => {
                self.log_upload_result(now, request_id, result)
            }
            Input::Storage { problem } => match problem {
                // The flash is full or failing: the spec's MemoryExhaustion (once per start).
                Some(why) => {
                    error!(
                        problem = why,
                        "the journal cannot write; keeping changes in memory"
                    );
                    self.security_event_once(now, "MemoryExhaustion", Some(&why));
                }
                None => info!("the journal writes again"),
            },
            Input::Fault {
                evse,
                connector,
                problem,
            } => {
                let index = self
                    .connector_index(evse, connector)
                    .ok_or(InputError::UnknownConnector { evse, connector })?;
                self.connector_fault(now, index, problem);
            }
        }
        self.pump(now);
        Ok(())
    }

    pub fn handle_frame(&mut self, now: Instant, text: &str) {
        match rpc::decode(text) {
            Err(e) => {
                warn!(error = %e.error.description, "unreadable frame from the CSMS");
                self.security_event_once(now, "InvalidMessages", Some(&e.error.description));
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
                if std::mem::take(&mut self.reconnect_after_answer) {
                    self.timers.set(Timer::Relink, now + RELINK_GRACE);
                }
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

    /// MessageTimeout: the connection profile's, else the device model's (it is configured in
    /// the network connection profile, OCPPCommCtrlr.MessageTimeout).
    pub(super) fn message_timeout(&self) -> Duration {
        match self.network.current().message_timeout_s {
            0 => self.vars.seconds(Var::MessageTimeout),
            s => Duration::from_secs(u64::from(s)),
        }
    }

    /// The security profile in use: the one of the profile being (or last) connected with.
    pub(super) fn security_profile(&self) -> u8 {
        self.network.current().security_profile
    }

    pub fn ping_interval(&self) -> Duration {
        self.vars.seconds(Var::WebSocketPingInterval)
    }

    pub fn snapshot(&self, now: Instant) -> StatusSnapshot {
        let utc_ms = self.clock.utc(now).unix_millis();
        let evses = self
            .evses
            .iter()
            .map(|e| EvseSnapshot {
                id: e.id,
                power_path_closed: e.power_path,
                authorized: e.auth.is_some(),
                meter: e.meter.map(|m| MeterSnapshot {
                    energy_wh: m.energy_wh,
                    power_w: m.power_w,
                }),
                transaction: e.tx.as_ref().map(|t| TransactionSnapshot {
                    id: t.id.clone(),
                    charging_state: t.charging_state.to_owned(),
                    next_seq_no: t.next_seq_no,
                    energy_wh: e.meter.map(|m| m.energy_wh - t.meter_start_wh),
                }),
                last_authorization: e.last_authorization.clone(),
                connectors: self
                    .connectors
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.evse == e.id)
                    .map(|(i, c)| ConnectorSnapshot {
                        id: c.id,
                        status: self.connector_status(i).as_str(),
                        plugged: c.plugged,
                    })
                    .collect(),
            })
            .collect();
        StatusSnapshot {
            connection: self.connection,
            registration: self.registration,
            utc: self.clock.utc(now).to_rfc3339(),
            time_source: match self.clock.source() {
                TimeSource::System => "system",
                TimeSource::Csms => "csms",
            },
            heartbeat_interval_s: self.heartbeat_interval.as_secs(),
            queue: QueueSnapshot {
                depth: self.outbox.len(),
                bytes: self.outbox.bytes(),
                oldest_unsent_age_s: self
                    .outbox
                    .oldest_created_ms()
                    .map(|c| ((utc_ms - c).max(0) / 1000) as u64),
                dropped: self.outbox.dropped,
            },
            evses,
            firmware: self.firmware.job.as_ref().map(|j| FirmwareSnapshot {
                request_id: j.request_id,
                phase: j.phase,
                last_status: self.firmware.last_status.as_ref().map(|(s, _)| s.clone()),
            }),
        }
    }

    // ----- internals -------------------------------------------------------------------------

    fn connector_index(&self, evse: u32, connector: u32) -> Option<usize> {
        self.connectors
            .iter()
            .position(|c| c.evse == evse && c.id == connector)
    }

    pub(super) fn evse_index(&self, evse: u32) -> Option<usize> {
        self.evses.iter().position(|e| e.id == evse)
    }

    /// Whether requests other than BootNotification may go out (B01.FR.08, B02.FR.02).
    pub(super) fn can_send_normal(&self) -> bool {
        self.connection == ConnectionState::Connected && self.registration == Registration::Accepted
    }

    pub(super) fn is_accepted(&self) -> bool {
        self.registration == Registration::Accepted
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
            debug!(action = f.action(), "request lost with the connection");
            if let InFlightKind::Volatile(r) = f.kind {
                self.volatile_failed(now, r);
            }
            // A queued message in flight stays at the head; a lost connection is not a
            // delivery attempt (E13 counts only what the CSMS failed to process).
        }
        // Heartbeats and status reports are not worth keeping: statuses are re-derived from
        // what the CSMS acknowledged when the link is back (B04).
        let dropped: Vec<Request> = self.queue.drain(..).collect();
        for r in dropped {
            self.volatile_failed(now, r);
        }
        self.mark_queue_offline();
        self.schedule_reconnect(now);
    }

    /// E11.FR.07: what is still queued when the connection goes down is marked offline. The
    /// head is left alone: it may have been on the wire already, and a retransmission must be
    /// identical so the CSMS can recognise it.
    fn mark_queue_offline(&mut self) {
        let batch: Batch = self
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

    /// A new WebSocketPingInterval: the next ping follows it.
    pub(super) fn restart_ping(&mut self, now: Instant) {
        if self.connection == ConnectionState::Connected {
            self.schedule_ping(now);
        }
    }

    /// A new HeartbeatInterval from the CSMS (SetVariables): it replaces the one from the
    /// BootNotificationResponse.
    pub(super) fn set_heartbeat_interval(&mut self, now: Instant) {
        self.heartbeat_interval = self.vars.seconds(Var::HeartbeatInterval);
        self.reset_heartbeat(now);
    }

    /// The CN of the station certificate (A00.FR.511): the serial number, else the identity.
    pub(super) fn station_serial(&self) -> String {
        self.identity
            .serial_number
            .clone()
            .unwrap_or_else(|| self.identity.station_id.clone())
    }

    pub(super) fn set_boot_reason(&mut self, reason: v201::BootReasonEnum) {
        self.boot_reason = reason;
    }

    /// TriggerMessage(BootNotification) before acceptance: send one now (B02.FR.04 allows it).
    pub(super) fn trigger_boot(&mut self) {
        self.timers.stop(Timer::BootRetry);
        self.boot_due = true;
    }

    pub(super) fn queue_status_triggered(&mut self, now: Instant, index: usize) {
        self.queue_status(now, index);
        if let Some(last) = self.queue.back_mut() {
            last.triggered = true;
        }
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

    pub(super) fn enqueue(&mut self, kind: RequestKind, action: Action, payload: Value) {
        self.queue.push_back(Request {
            kind,
            action,
            payload,
            triggered: false,
        });
    }

    /// Queues a message the CSMS asked for (F06, B07): allowed while Pending (B02.FR.02).
    pub(super) fn enqueue_triggered(&mut self, kind: RequestKind, action: Action, payload: Value) {
        self.queue.push_back(Request {
            kind,
            action,
            payload,
            triggered: true,
        });
    }

    /// Appends a message to the durable queue: its payload goes to the journal in `batch`
    /// (with whatever else must change atomically with it), before it can be sent.
    pub(super) fn enqueue_durable(
        &mut self,
        now: Instant,
        action: Action,
        tx_id: Option<String>,
        kind: EventKind,
        payload: Value,
        mut batch: Batch,
    ) {
        debug_assert!(
            v201::validate::validate(action.request_schema(), &payload).is_ok(),
            "we built an invalid {} payload: {payload}",
            action.as_str()
        );
        let payload_offline = payload["offline"] == Value::Bool(true);
        let meta = QueuedMeta {
            queue_seq: self.outbox.next_queue_seq(),
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
        self.outbox.push(meta, offline);
        let protected = self.in_flight_queue_seq();
        let removed = self.outbox.enforce_bound(self.max_queue_bytes, protected);
        if !removed.is_empty() {
            warn!(
                dropped = removed.len(),
                queue_bytes = self.outbox.bytes(),
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
        match &self.in_flight {
            Some(InFlight {
                kind: InFlightKind::Queued(m),
                ..
            }) => Some(m.queue_seq),
            _ => None,
        }
    }

    pub(super) fn queue_status(&mut self, now: Instant, index: usize) {
        let status = self.connector_status(index);
        let c = &self.connectors[index];
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

    pub(super) fn queue_connector_statuses(&mut self, now: Instant, all: bool) {
        for index in 0..self.connectors.len() {
            if all || self.connectors[index].reported != Some(self.connector_status(index)) {
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
            triggered: false,
        }
    }

    /// Sends the next request if the link is free (one CALL in flight, part 4 4.1.1).
    /// Order: BootNotification until accepted; then volatile requests (status, authorization,
    /// heartbeats: small and current); then the durable queue, FIFO.
    pub(super) fn pump(&mut self, now: Instant) {
        if self.connection != ConnectionState::Connected || self.in_flight.is_some() {
            return;
        }
        let id = if self.boot_due && self.registration != Registration::Accepted {
            self.boot_due = false;
            let request = self.boot_request();
            self.send_request(request)
        } else if self.registration != Registration::Accepted {
            // Pending: only what the CSMS asked for (B02.FR.02); Rejected: nothing (B03.FR.02).
            match self.queue.front() {
                Some(r) if r.triggered && self.registration == Registration::Pending => {
                    let request = self.queue.pop_front().expect("front exists");
                    self.send_request(request)
                }
                _ => return,
            }
        } else if let Some(request) = self.queue.pop_front() {
            self.send_request(request)
        } else if self.outbox.ready(now) {
            let meta = self.outbox.head().cloned().expect("ready means non-empty");
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
            self.in_flight = Some(InFlight {
                id: id.clone(),
                kind: InFlightKind::Queued(meta),
            });
            id
        } else {
            if let Some(at) = self.outbox.retry_at() {
                self.timers.set(Timer::QueueRetry, at);
            }
            return;
        };
        let _ = id;
        self.timers
            .set(Timer::CallTimeout, now + self.message_timeout());
        // G02.FR.05: any message sent counts as a sign of life.
        self.reset_heartbeat(now);
    }

    fn send_request(&mut self, request: Request) -> String {
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
        self.in_flight = Some(InFlight {
            id: id.clone(),
            kind: InFlightKind::Volatile(request),
        });
        id
    }

    pub(super) fn send_raw(&mut self, frame: String) {
        if self.connection == ConnectionState::Connected {
            self.outputs.push_back(Output::Send(frame));
        }
    }

    fn take_in_flight(&mut self, id: &str) -> Option<InFlightKind> {
        if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.timers.stop(Timer::CallTimeout);
            self.in_flight.take().map(|f| f.kind)
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
            action = f.action(),
            message_id = f.id,
            "no answer from the CSMS within MessageTimeout"
        );
        self.request_failed(now, f.kind);
    }

    fn handle_result(&mut self, now: Instant, id: &str, payload: Value) {
        let Some(kind) = self.take_in_flight(id) else {
            return;
        };
        // A working exchange proves the link: the next outage starts back-off from scratch,
        // and this profile is the one to fall back to (B10.FR.07).
        self.reconnect_attempts = 0;
        if let Some(slot) = self.network.succeeded() {
            self.outputs
                .push_back(Output::Persist(vec![PersistOp::PutMeta {
                    key: super::management::META_LAST_GOOD_SLOT.into(),
                    value: slot.to_string(),
                }]));
        }
        let outcome = match &kind {
            InFlightKind::Queued(meta) => self.queued_answered(now, meta, payload),
            InFlightKind::Volatile(request) => match &request.kind {
                RequestKind::BootNotification => decode::<v201::BootNotificationResponse>(payload)
                    .map(|r| self.boot_answered(now, r)),
                RequestKind::Heartbeat => decode::<v201::HeartbeatResponse>(payload)
                    .map(|r| self.sync_clock(now, &r.current_time)),
                RequestKind::StatusNotification { connector, status } => {
                    decode::<v201::StatusNotificationResponse>(payload)
                        .map(|_| self.connectors[*connector].reported = Some(*status))
                }
                RequestKind::Authorize {
                    evse,
                    id_token,
                    purpose,
                } => decode::<v201::AuthorizeResponse>(payload).map(|r| {
                    let info = serde_json::to_value(&r.id_token_info).unwrap_or(Value::Null);
                    self.authorize_answered(
                        now,
                        *evse,
                        id_token.clone(),
                        purpose.clone(),
                        Some(info),
                    )
                }),
                RequestKind::MeterValues => {
                    decode::<v201::MeterValuesResponse>(payload).map(|_| ())
                }
                RequestKind::NotifyReport => {
                    decode::<v201::NotifyReportResponse>(payload).map(|_| ())
                }
                RequestKind::NotifyEvent => {
                    decode::<v201::NotifyEventResponse>(payload).map(|_| ())
                }
                RequestKind::SignCertificate => decode::<v201::SignCertificateResponse>(payload)
                    .map(|r| self.sign_certificate_answered(r.status)),
                RequestKind::Other(action) => {
                    v201::validate::validate(action.response_schema(), &payload)
                }
            },
        };
        if let Err(v) = outcome {
            warn!(
                message_id = id,
                path = v.path,
                problem = v.message,
                "CSMS answered with an invalid payload"
            );
            self.request_failed(now, kind);
        }
    }

    fn handle_call_error(&mut self, now: Instant, id: &str, code: &str, description: &str) {
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

    /// A request got a CALLERROR, an invalid answer, or no answer in time (while connected).
    fn request_failed(&mut self, now: Instant, kind: InFlightKind) {
        match kind {
            InFlightKind::Volatile(request) => self.volatile_failed(now, request),
            InFlightKind::Queued(meta) => {
                let max = self.vars.int(Var::MessageAttemptsTransactionEvent).max(1) as u32;
                let interval = self
                    .vars
                    .seconds(Var::MessageAttemptIntervalTransactionEvent);
                let (failure, op) = self.outbox.failed(meta.queue_seq, now, max, interval);
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
                if self.connection == ConnectionState::Connected {
                    self.timers.set(Timer::BootRetry, now + BOOT_RETRY_FALLBACK);
                } else {
                    self.boot_due = true;
                }
            }
            RequestKind::Authorize {
                evse,
                id_token,
                purpose,
            } => self.authorize_answered(now, evse, id_token, purpose, None),
            _ => {}
        }
    }

    fn boot_answered(&mut self, now: Instant, response: v201::BootNotificationResponse) {
        self.sync_clock(now, &response.current_time);
        let interval = Duration::from_secs(response.interval.max(0) as u64);
        match response.status {
            v201::RegistrationStatusEnum::Accepted => {
                info!(interval_s = interval.as_secs(), "BootNotification accepted");
                self.registration = Registration::Accepted;
                self.accepted_slot = Some(self.network.current().slot);
                self.timers.stop(Timer::BootRetry);
                // B01.FR.04: adopt the interval when > 0.
                if !interval.is_zero() {
                    self.heartbeat_interval = interval;
                }
                // B01.FR.05: report every connector.
                self.queue_connector_statuses(now, true);
                self.reset_heartbeat(now);
                self.accepted(now);
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

    pub(super) fn sync_clock(&mut self, now: Instant, current_time: &str) {
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
        if !was_trusted {
            self.rebase_untrusted(drift_ms);
        }
        if drift_ms.abs() > 1000 {
            self.schedule_aligned(now);
        }
    }

    /// Messages and open transactions stamped before UTC was known are shifted onto the
    /// CSMS's time (same boot only: the monotonic clock relates them).
    fn rebase_untrusted(&mut self, delta_ms: i64) {
        let boot_id = self.boot_id;
        let mut batch: Batch = Vec::new();
        for m in self.outbox.iter_mut() {
            if !m.time_trusted && m.boot_id == boot_id {
                m.time_trusted = true;
                m.created_ms += delta_ms;
                batch.push(PersistOp::Rebase {
                    queue_seq: m.queue_seq,
                    delta_ms,
                });
            }
        }
        batch.extend(self.rebase_transactions(delta_ms));
        if !batch.is_empty() {
            info!(
                entries = batch.len(),
                delta_ms, "rebased timestamps made before the CSMS gave the time"
            );
            self.outputs.push_back(Output::Persist(batch));
        }
    }

    /// Answers a CALL from the CSMS (part 4 4.2.3 and table 8).
    fn handle_call(
        &mut self,
        now: Instant,
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
        let violation = |v: v201::validate::Violation| {
            // The violation kinds are named after the error codes of part 4, table 8.
            let code =
                CallErrorCode::from_name(v.kind.as_str()).unwrap_or(CallErrorCode::FormatViolation);
            CallError::new(code, format!("{}: {}", v.path, v.message))
        };
        v201::validate::validate(known.request_schema(), &payload).map_err(violation)?;
        let result = match known {
            Action::RequestStartTransaction => self
                .request_start(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::RequestStopTransaction => self
                .request_stop(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::GetTransactionStatus => self
                .transaction_status(decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::ClearCache => Ok(self.clear_cache()),
            Action::GetVariables => self
                .get_variables(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::SetVariables => self
                .set_variables(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::GetBaseReport => self
                .get_base_report(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::Reset => self
                .reset(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::ChangeAvailability => self
                .change_availability(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::TriggerMessage => self
                .trigger_message(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::UnlockConnector => self
                .unlock_connector(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::DataTransfer => self
                .data_transfer(decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::GetLocalListVersion => Ok(self.local_list_version()),
            Action::SetNetworkProfile => self
                .set_network_profile(decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::GetInstalledCertificateIds => self
                .get_installed_certificate_ids(decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::InstallCertificate => self
                .install_certificate(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::DeleteCertificate => self
                .delete_certificate(decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::CertificateSigned => self
                .certificate_signed(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::CustomerInformation => self
                .customer_information(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::GetLog => self
                .get_log(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::UpdateFirmware => self
                .update_firmware(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            Action::SendLocalList => self
                .send_local_list(now, decode_request(payload).map_err(violation)?)
                .map(|r| to_payload(&r)),
            _ => Err(CallError::new(
                CallErrorCode::NotSupported,
                format!("{action} is not supported by this charging station yet"),
            )),
        }?;
        debug_assert!(
            v201::validate::validate(known.response_schema(), &result).is_ok(),
            "we built an invalid {action} response: {result}"
        );
        Ok(result)
    }

    /// C11: ClearCache.
    fn clear_cache(&mut self) -> Value {
        if !self.vars.bool(Var::AuthCacheEnabled) {
            return json!({"status": "Rejected"});
        }
        let op = self.auth_cache.clear();
        self.outputs.push_back(Output::Persist(vec![op]));
        json!({"status": "Accepted"})
    }
}

/// Validates a response against its schema and decodes it.
fn decode<T: v201::ResponsePayload>(payload: Value) -> Result<T, v201::validate::Violation> {
    v201::validate::decode(T::SCHEMA, payload)
}

fn decode_request<T: v201::RequestPayload>(payload: Value) -> Result<T, v201::validate::Violation> {
    v201::validate::decode(T::SCHEMA, payload)
}

pub(super) fn to_payload<T: Serialize>(value: &T) -> Value {
    // Serializing our own plain data types cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}
