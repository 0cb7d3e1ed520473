//! A station task: one charging station's event loop. It owns the WebSocket, the journal, the
//! GPIO watchers, meters and contactors, the timers and the core [`Station`]; it feeds events
//! into the core and executes its effects in order (persist before send).
//!
//! The process ([`super::driver`]) starts one task per station and talks to it only through
//! [`Command`]s (control requests, watchdog probes, stop) and [`Report`]s (READY, status,
//! stopping). A task ends with a [`StationExit`]: what a Reset means (today: exit 75, so
//! systemd restarts the agent) is the process's decision, so many stations can share one
//! runtime (the fleet mode of CSMS load tests).

use super::certstore::CertDir;
use super::control::{PlugState, Request as ControlRequest, Response as ControlResponse};
use super::driver::RunError;
use super::firmware::FirmwareWorker;
use super::gpio;
use super::hardware::{Contactor, EvseHardware};
use super::http::Transfer;
use super::journal_backend::{JournalBackend, SqliteJournal};
use super::logs::{LogUploader, SecurityLog};
use super::pilot::LimitOutput;
use super::tls::TlsCache;
use super::watch::{Subscriber, View, Watch};
use super::ws::{ConnectError, Connector, Credentials, Ws};
use crate::config::{Config, PlugConfig};
use crate::ocpp::blocks::provisioning::stored_basic_auth_password;
use crate::ocpp::blocks::smart_charging::ChargingHardware;
use crate::ocpp::certificates::CertificateStore;
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::devmodel::DeviceModel;
use crate::ocpp::firmware::FirmwarePolicy;
use crate::ocpp::model::schedule::Limit;
use crate::ocpp::network::NetworkProfile;
use crate::ocpp::persist::{PersistOp, Persisted, TxRecord};
use crate::ocpp::rpc;
use crate::ocpp::station::{
    CLEAN_SHUTDOWN_KEY, ConnectFailure, EvseLayout, Identity, Input, Output, Station, StationConfig,
};
use crate::ocpp::v201::BootReasonEnum;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{Instrument, debug, error, info, trace, warn};

/// A write that takes longer than this means the link is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// While the journal cannot write, how often to try again.
const JOURNAL_RETRY: Duration = Duration::from_secs(5);
/// While energy flows, how often the sim meters report to the core.
const METER_TICK: Duration = Duration::from_secs(1);

/// Hardware events for the loop: a plug line's level or fault.
struct Event {
    evse: u32,
    connector: u32,
    event: gpio::PlugEvent,
}

/// The monotonic clock of this process, in the core's terms.
struct Clock {
    start: std::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + Duration::from_millis(at.as_millis()))
    }
}

fn system_utc() -> UtcTime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    UtcTime::from_unix_millis(ms)
}

fn sim_meter_key(evse: u32) -> String {
    format!("sim_meter.{evse}")
}

fn station_config(
    config: &Config,
    boot_reason: BootReasonEnum,
    certificates: CertificateStore,
) -> Result<StationConfig, RunError> {
    let pairs = config.variable_pairs();
    let variables = DeviceModel::with_initial(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|errors| {
            RunError::Config(
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    Ok(StationConfig {
        protocol: config.csms.ocpp_version,
        identity: Identity {
            station_id: config.station.id.clone(),
            vendor: config.station.vendor.clone(),
            model: config.station.model.clone(),
            serial_number: config.station.serial_number.clone(),
            firmware_version: config
                .station
                .firmware_version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        },
        evses: config
            .evse
            .iter()
            .map(|e| EvseLayout {
                id: e.id,
                connectors: e.plugs().iter().map(|(c, _)| *c).collect(),
                connector_types: e.connector_types(),
            })
            .collect(),
        boot_reason,
        variables,
        max_queue_bytes: config.storage.max_queue_bytes,
        network: NetworkProfile {
            slot: 1,
            url: config.csms.url.trim_end_matches('/').to_owned(),
            security_profile: config.csms.security_profile,
            message_timeout_s: 0,
        },
        client_certificate: config.csms.client_cert_file.is_some(),
        certificates,
        data_transfer: Vec::new(),
        firmware: FirmwarePolicy {
            installer: config.firmware.install_command.is_some(),
            activation: config.firmware.activate_command.is_some(),
            allow_unsigned: config.firmware.allow_unsigned,
        },
        diagnostics_log: !config.log.diagnostics_command.is_empty(),
        charging: ChargingHardware {
            nominal_voltage: config.station.nominal_voltage_v,
            evse_max: config
                .evse
                .iter()
                .map(|e| (e.id, Limit::new(e.max_current_a, e.phases)))
                .collect(),
            station_max: config.station.max_current_a.map(|a| Limit::new(a, 3)),
        },
    })
}

/// The sim meter's register at start: what was saved when its contactor last opened, or the
/// last reading of a transaction the previous run left open, whichever is higher (a crash
/// while charging leaves the saved value behind).
fn initial_register(persisted: &Persisted, evse: u32) -> f64 {
    let saved = persisted
        .meta(&sim_meter_key(evse))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let from_tx = persisted
        .transactions
        .iter()
        .filter(|t| t.evse == evse)
        .filter_map(TxRecord::last_energy_register_wh)
        .fold(0.0, f64::max);
    saved.max(from_tx)
}

/// How a station task ended; the process decides what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationExit {
    /// The process asked it to stop (SIGTERM / SIGINT), or dropped its command channel.
    Stopped,
    /// The core asked for a reboot (OCPP Reset).
    Reboot,
}

/// What the process asks of a station task.
#[derive(Debug)]
pub enum Command {
    /// A control-socket request, with where to send the answer.
    Control(ControlRequest, oneshot::Sender<ControlResponse>),
    /// `ctl watch`: a subscriber for the station's changes (`shell::watch`), and where to say
    /// whether it was taken.
    Watch(Subscriber, oneshot::Sender<ControlResponse>),
    /// A watchdog probe: the task stores the number in its liveness counter when its loop gets
    /// to it, so a loop stuck (e.g. on a journal write) withholds systemd's WATCHDOG=1.
    Probe(u64),
    /// Stop cleanly (clean-shutdown mark, meters saved, WebSocket closed).
    Stop,
}

/// What a station task tells the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The journal is open and the first connection attempt is under way (READY=1).
    Ready,
    /// A line for systemd's STATUS=.
    Status(String),
    /// The task is shutting down (STOPPING=1).
    Stopping,
}

/// A report with the index of the station that sent it.
pub type Reports = mpsc::UnboundedSender<(usize, Report)>;

/// One station, set up and ready to run, with its journal backend (the SQLite file unless
/// told otherwise: generic, so the binary holds only the backend it uses).
pub struct StationTask<J: JournalBackend = SqliteJournal> {
    /// Boxed: a station task moves a few times before it runs (into the supervisor's list,
    /// into its future), and each move of 3.5 KB by value took stack space in the
    /// supervisor's frame, which every wake-up touches (issue 13).
    agent: Box<Agent<J>>,
    events: mpsc::Receiver<Event>,
    work_results: mpsc::Receiver<Input>,
}

impl StationTask<SqliteJournal> {
    /// Opens the SQLite journal at `storage.path`, then as [`StationTask::with_journal`].
    pub async fn new(config: Config) -> Result<StationTask, RunError> {
        let journal = SqliteJournal::open(&config.storage.path).await;
        build(config, journal).await
    }
}

impl<J: JournalBackend> StationTask<J> {
    /// Loads the journal, reads certificates and keys (a bad file is a configuration error),
    /// opens the hardware lines and builds the core. Run it inside the station's span (and
    /// inside the runtime: GPIO watchers are spawned here).
    pub async fn with_journal(config: Config, journal: J) -> Result<StationTask<J>, RunError> {
        build(config, journal).await
    }

    /// The station id (`station.id`).
    pub fn id(&self) -> &str {
        &self.agent.config.station.id
    }

    /// The counter the task stores answered watchdog probes in.
    pub fn liveness(&self) -> Arc<AtomicU64> {
        self.agent.liveness.clone()
    }

    /// Runs the station until the process stops it or the core asks for a reboot; then shuts
    /// it down cleanly. `index` tags its reports.
    pub async fn run(
        mut self,
        index: usize,
        commands: mpsc::Receiver<Command>,
        reports: Reports,
    ) -> Result<StationExit, RunError> {
        self.agent.reports = Some((index, reports));
        let result = self
            .agent
            .run(self.events, commands, self.work_results)
            .await;
        self.agent.shutdown().await;
        result
    }
}

async fn build<J: JournalBackend>(
    config: Config,
    mut journal: J,
) -> Result<StationTask<J>, RunError> {
    let persisted = journal.load().await;
    // Certificates and keys are read now, so a bad file is a configuration error.
    let connector = Connector::from_config(&config).map_err(RunError::Config)?;
    let cert_dir = CertDir::beside(&config.storage.path);
    let on_disk = cert_dir.load();
    let configured_roots = config
        .csms
        .ca_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let certificates = CertificateStore::load(
        &on_disk.roots,
        &configured_roots,
        on_disk.station_chain.as_deref(),
    );
    // A01: a password the CSMS set replaces the configured one.
    let password = stored_basic_auth_password(&persisted)
        .map(str::to_owned)
        .or_else(|| config.csms.password.clone());

    let mut hardware = Vec::new();
    for evse in &config.evse {
        let label = format!("evse {}", evse.id);
        let contactor = Contactor::open(&evse.contactor, &label)
            .map_err(|e| RunError::CantCreate(format!("{label} contactor: {e}")))?;
        let limit = LimitOutput::open(evse.id, &evse.limit)
            .map_err(|e| RunError::CantCreate(format!("{label} limit: {e}")))?;
        let register = initial_register(&persisted, evse.id);
        hardware.push(EvseHardware::new(
            evse.id,
            &evse.meter,
            contactor,
            limit,
            register,
        ));
    }

    let clock = Clock {
        start: std::time::Instant::now(),
    };
    let seed = getrandom::u64().map_err(|e| RunError::Io(format!("no OS randomness: {e}")))?;
    let station = Station::new(
        station_config(&config, BootReasonEnum::PowerUp, certificates)?,
        persisted,
        clock.now(),
        system_utc(),
        seed,
    );

    let (events_tx, events) = mpsc::channel::<Event>(64);
    for evse in &config.evse {
        for (connector_id, plug) in evse.plugs() {
            if let PlugConfig::Gpio(line) = plug {
                let (tx, mut rx) = mpsc::channel::<gpio::PlugEvent>(8);
                let label = format!("evse {} connector {connector_id}", evse.id);
                tokio::spawn(gpio::watch(line.clone(), label, tx).in_current_span());
                let events_tx = events_tx.clone();
                let evse_id = evse.id;
                tokio::spawn(
                    async move {
                        while let Some(event) = rx.recv().await {
                            let event = Event {
                                evse: evse_id,
                                connector: connector_id,
                                event,
                            };
                            if events_tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    }
                    .in_current_span(),
                );
            }
        }
    }
    drop(events_tx);

    info!(url = connector.url(), "ocpp-agent started");
    // Results of the firmware and log work running off the loop.
    let (work_tx, work_results) = mpsc::channel::<Input>(4);
    let state_dir = config
        .storage
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let firmware = FirmwareWorker::new(
        config
            .firmware
            .directory
            .clone()
            .unwrap_or_else(|| state_dir.join("firmware")),
        config.firmware.clone(),
        work_tx.clone(),
    );
    let security_log_path = config
        .log
        .security_log
        .clone()
        .unwrap_or_else(|| state_dir.join("security.log"));
    let security_log = SecurityLog::new(security_log_path.clone());
    let log_uploader = LogUploader::new(
        state_dir.join("logs"),
        config.log.clone(),
        security_log_path,
        work_tx,
    );
    let agent = Box::new(Agent {
        firmware,
        security_log,
        log_uploader,
        transfer_cache: None,
        tls: TlsCache::default(),
        config,
        station,
        journal,
        hardware,
        clock,
        reports: None,
        liveness: Arc::new(AtomicU64::new(0)),
        password,
        cert_dir,
        link: Link::default(),
        ready_sent: false,
        reboot: false,
        storage_degraded: false,
        watch: None,
    });
    Ok(StationTask {
        agent,
        events,
        work_results,
    })
}

struct Agent<J> {
    /// Downloads, checks and installs firmware for the core (L01).
    firmware: FirmwareWorker,
    /// The station's own security log (N01.FR.03).
    security_log: SecurityLog,
    /// Gathers and uploads logs (N01).
    log_uploader: LogUploader,
    /// The trust of transfers, built at first use (reading the system's CA bundle costs
    /// milliseconds on the event loop) and again after the installed roots change.
    transfer_cache: Option<Transfer>,
    /// The CSMS connection's TLS configuration, shared by every connection attempt.
    tls: TlsCache,
    config: Config,
    station: Station,
    journal: J,
    hardware: Vec<EvseHardware>,
    clock: Clock,
    /// Where to report READY, status and stopping to the process (set by `run`).
    reports: Option<(usize, Reports)>,
    /// The last watchdog probe the loop answered.
    liveness: Arc<AtomicU64>,
    /// The HTTP Basic auth password (profiles 1 and 2).
    password: Option<String>,
    /// Certificates and keys installed through OCPP.
    cert_dir: CertDir,
    link: Link,
    ready_sent: bool,
    /// The core asked for a restart (Reset): stop after executing its outputs.
    reboot: bool,
    /// The journal was failing when last looked at.
    storage_degraded: bool,
    /// `ctl watch` readers; None (nothing built or compared) while nobody watches.
    watch: Option<Box<Watch>>,
}

impl<J: JournalBackend> Agent<J> {
    fn report(&self, report: Report) {
        if let Some((index, reports)) = &self.reports {
            let _ = reports.send((*index, report));
        }
    }

    async fn run(
        &mut self,
        mut events: mpsc::Receiver<Event>,
        mut commands: mpsc::Receiver<Command>,
        mut work_results: mpsc::Receiver<Input>,
    ) -> Result<StationExit, RunError> {
        // Fire what is due at start (the first connect), so READY goes out at once.
        self.station.handle_timeout(self.clock.now());
        loop {
            self.execute_outputs().await;
            self.update_watch();
            if self.reboot {
                info!("restarting for a Reset");
                return Ok(StationExit::Reboot);
            }

            let deadline = self.station.poll_timeout().map(|t| self.clock.deadline(t));
            // Wake-ups only for real work: meters tick only while energy flows, the journal
            // retries only while degraded.
            let meter_tick = self.hardware.iter().any(|h| h.meter.is_flowing());
            let journal_retry = self.journal.stats().degraded;
            tokio::select! {
                result = connect_result(&mut self.link.connecting), if self.link.connecting.is_some() => {
                    self.link.connecting = None;
                    self.feed_meters();
                    match result {
                        Ok(ws) => {
                            self.link.ws = Some(ws);
                            self.report(Report::Status("connected to the CSMS".into()));
                            self.station.handle_connected(self.clock.now());
                        }
                        Err(e) => {
                            self.report(Report::Status(format!("offline: {e}")));
                            self.station.handle_connect_failed(self.clock.now(), &e.to_string(), e.failure());
                        }
                    }
                }
                message = next_message(&mut self.link.ws), if self.link.ws.is_some() => {
                    self.feed_meters();
                    self.received(message);
                }
                _ = sleep_until(deadline) => {
                    self.feed_meters();
                    self.station.handle_timeout(self.clock.now());
                }
                _ = tokio::time::sleep(METER_TICK), if meter_tick => self.feed_meters(),
                _ = tokio::time::sleep(JOURNAL_RETRY), if journal_retry => {
                    self.journal.retry().await;
                    self.storage_health();
                }
                Some(Event { evse, connector, event }) = events.recv() => {
                    self.feed_meters();
                    let input = match event {
                        gpio::PlugEvent::Level(plugged) => Input::Plug { evse, connector, plugged },
                        gpio::PlugEvent::Fault(problem) => Input::Fault { evse, connector, problem },
                    };
                    if let Err(e) = self.station.handle_input(self.clock.now(), input) {
                        error!(error = %e, "hardware event for an unknown connector");
                    }
                }
                Some(input) = work_results.recv() => {
                    let _ = self.station.handle_input(self.clock.now(), input);
                }
                command = commands.recv() => match command {
                    Some(Command::Control(request, reply)) => {
                        self.feed_meters();
                        let response = self.control(request);
                        let _ = reply.send(response);
                    }
                    Some(Command::Watch(subscriber, reply)) => {
                        self.feed_meters();
                        let _ = reply.send(self.subscribe(subscriber));
                    }
                    Some(Command::Probe(n)) => self.liveness.store(n, Ordering::Relaxed),
                    Some(Command::Stop) | None => return Ok(StationExit::Stopped),
                }
            }
        }
    }

    fn received(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) {
        let now = self.clock.now();
        match message {
            Some(Ok(Message::Text(text))) => {
                trace!(frame = rpc::loggable(text.as_str()), "received");
                self.station.handle_frame(now, text.as_str());
            }
            Some(Ok(Message::Pong(_))) => self.station.handle_pong(now),
            Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Binary(_))) => {
                warn!("ignoring a binary WebSocket message (OCPP-J uses text)");
            }
            Some(Ok(Message::Close(frame))) => {
                // RFC 6455 5.5.1: answer the CSMS's Close; tungstenite queued the reply, a
                // flush sends it.
                if let Some(mut ws) = self.link.ws.take() {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    });
                }
                let reason = frame
                    .map(|f| format!("closed by the CSMS: {} {}", f.code, f.reason))
                    .unwrap_or_else(|| "closed by the CSMS".into());
                self.station.handle_disconnected(now, &reason);
            }
            Some(Err(e)) => {
                self.link.ws = None;
                self.station.handle_disconnected(now, &e.to_string());
            }
            None => {
                self.link.ws = None;
                self.station.handle_disconnected(now, "connection closed");
            }
        }
    }

    /// Gives the core the meters' current readings (only what changed).
    fn feed_meters(&mut self) {
        let now = std::time::Instant::now();
        for hw in &mut self.hardware {
            if let Some(reading) = hw.fresh_reading(now) {
                let _ = self.station.handle_input(
                    self.clock.now(),
                    Input::Meter {
                        evse: hw.evse,
                        reading,
                    },
                );
            }
        }
    }

    /// Executes every effect the core produced, strictly in order: a Persist is applied
    /// before anything after it goes on the wire.
    async fn execute_outputs(&mut self) {
        while let Some(output) = self.station.poll_output() {
            self.tls.on_output(&output);
            match output {
                Output::Send(text) => self.send(Message::text(text)).await,
                Output::SendQueued {
                    queue_seq,
                    message_id,
                } => match self.journal.queued(queue_seq).await {
                    Some(m) => {
                        // None: 1.6 has no such message; the core took it as delivered.
                        let now = self.clock.now();
                        if let Some(text) = self.station.queued_frame(now, &message_id, &m) {
                            self.send(Message::text(text)).await;
                        }
                    }
                    // Cannot happen while the journal keeps what it could not write; if it
                    // does, the core's MessageTimeout counts a failed attempt.
                    None => error!(queue_seq, "queued message missing from the journal"),
                },
                Output::Ping => self.send(Message::Ping(Vec::new().into())).await,
                Output::Disconnect { reason } => self.link.close(&reason).await,
                Output::Persist(batch) => {
                    self.persist(batch).await;
                }
                Output::PowerPath { evse, closed } => {
                    if let Some(op) = self.set_power_path(evse, closed) {
                        self.persist(vec![op]).await;
                    }
                }
                other => self.execute_local(other),
            }
        }
    }

    /// Switches an EVSE's power path; the energy register to save when energy stopped
    /// flowing (not for the "open" every contactor gets at start-up: nothing changed, no
    /// fsync).
    fn set_power_path(&mut self, evse: u32, closed: bool) -> Option<PersistOp> {
        let now = std::time::Instant::now();
        let hw = self.hardware.iter_mut().find(|h| h.evse == evse)?;
        let was_flowing = hw.meter.is_flowing();
        let register = hw.set_power_path(closed, now);
        (!closed && was_flowing).then(|| PersistOp::PutMeta {
            key: sim_meter_key(evse),
            value: register.to_string(),
        })
    }

    /// The outputs that need no waiting. Not inlined: inlined, their locals (TLS
    /// configurations, CSRs, certificates) became part of the station loop's one poll
    /// function, whose stack frame every wake-up touches (issue 13: idle stack).
    #[inline(never)]
    fn execute_local(&mut self, output: Output) {
        match output {
            Output::Connect { profile } => self.connect(profile),
            Output::ChargingLimit { evse, limit } => {
                let now = std::time::Instant::now();
                if let Some(hw) = self.hardware.iter_mut().find(|h| h.evse == evse) {
                    hw.set_limit(limit, now);
                }
            }
            Output::Unlock { evse, connector } => {
                // No lock actuator is configured: the sim lock opens at once.
                info!(evse, connector, "connector unlocked");
            }
            Output::Reboot => self.reboot = true,
            Output::BasicAuthPassword(secret) => self.password = Some(secret.0),
            Output::CreateCsr {
                organization,
                common_name,
            } => {
                let input = match self.cert_dir.create_csr(&organization, &common_name) {
                    Ok((csr_pem, spki_der)) => Input::CsrCreated { csr_pem, spki_der },
                    Err(reason) => Input::CsrFailed { reason },
                };
                let _ = self.station.handle_input(self.clock.now(), input);
            }
            Output::StoreCertificate { kind, id, pem } => {
                self.transfer_cache = None;
                if let Err(e) = self.cert_dir.store_root(&kind, &id, &pem) {
                    error!(kind, error = %e, "could not keep an installed certificate");
                }
            }
            Output::RemoveCertificate { kind, id } => {
                self.transfer_cache = None;
                if let Err(e) = self.cert_dir.remove_root(&kind, &id) {
                    error!(kind, error = %e, "could not delete a certificate");
                }
            }
            Output::ActivateStationCertificate { chain_pem } => {
                if let Err(e) = self.cert_dir.activate(&chain_pem) {
                    error!(error = %e, "could not install the station certificate");
                }
            }
            Output::FirmwareDownload {
                request_id,
                location,
            } => {
                let transfer = self.transfer();
                self.firmware.download(request_id, location, transfer);
            }
            Output::FirmwareVerify {
                request_id,
                signer_der,
                signature,
            } => self.firmware.verify(request_id, signer_der, signature),
            Output::FirmwareInstall { request_id } => self.firmware.install(request_id),
            Output::FirmwareActivate { request_id } => self.firmware.activate(request_id),
            Output::FirmwareDiscard { request_id } => self.firmware.discard(request_id),
            Output::UploadLog(request) => {
                let transfer = self.transfer();
                self.log_uploader.upload(request, transfer);
            }
            Output::CancelLogUpload { request_id } => self.log_uploader.cancel(request_id),
            Output::RecordSecurityEvent {
                timestamp,
                kind,
                tech_info,
            } => self
                .security_log
                .record(&timestamp, &kind, tech_info.as_deref()),
            // Awaited: `execute_outputs` runs them and never passes them here. Dropping one
            // would lose a frame or a journal write, so debug builds (every test) stop.
            awaited @ (Output::Send(_)
            | Output::SendQueued { .. }
            | Output::Ping
            | Output::Disconnect { .. }
            | Output::Persist(_)
            | Output::PowerPath { .. }) => {
                debug_assert!(false, "awaited output passed to execute_local: {awaited:?}");
                error!("internal: an output that needs waiting was dropped");
            }
        }
    }

    /// Starts a connection attempt with `profile` (the TLS configuration built or reused).
    /// Not inlined, as `execute_local`.
    #[inline(never)]
    fn connect(&mut self, profile: NetworkProfile) {
        let cert_dir = &self.cert_dir;
        let tls = self
            .tls
            .get(&self.config, profile.security_profile, || Credentials {
                password: None,
                installed_roots: cert_dir.csms_roots(),
                identity: cert_dir.station_identity(),
            });
        match tls.map(|tls| {
            Connector::with_tls(
                &self.config,
                &profile.url,
                profile.security_profile,
                self.password.clone(),
                tls,
            )
        }) {
            Ok(connector) => {
                self.link.connecting = Some(tokio::spawn(async move { connector.connect().await }));
            }
            Err(e) => self.station.handle_connect_failed(
                self.clock.now(),
                &format!("network profile {}: {e}", profile.slot),
                ConnectFailure::Other,
            ),
        }
        if !self.ready_sent {
            // READY once the journal is open and the first connect is under way.
            self.report(Report::Ready);
            self.ready_sent = true;
        }
    }

    /// Trust and patience for firmware downloads and log uploads (N01.FR.15/16):
    /// `transfer.ca_file`, else what the CSMS connection trusts (`csms.ca_file` or the system
    /// roots), plus the CSMS roots installed through OCPP; no client certificate. Built per
    /// transfer, so newly installed roots count.
    #[inline(never)]
    fn transfer(&mut self) -> Transfer {
        if let Some(t) = &self.transfer_cache {
            return t.clone();
        }
        let mut config = self.config.clone();
        if let Some(ca) = &self.config.transfer.ca_file {
            config.csms.ca_file = Some(ca.clone());
        }
        let credentials = Credentials {
            password: None,
            installed_roots: self.cert_dir.csms_roots(),
            identity: None,
        };
        let tls = match super::ws::tls_config(&config, 2, &credentials) {
            Ok(tls) => Some(std::sync::Arc::new(tls)),
            Err(e) => {
                warn!(error = %e, "no TLS trust for https:// transfers");
                None
            }
        };
        let transfer = Transfer {
            tls,
            stall_timeout: self.config.transfer.stall_timeout(),
        };
        self.transfer_cache = Some(transfer.clone());
        transfer
    }

    /// Applies a batch and waits until it is durable (persist before send), then tells the
    /// core if the journal's health changed. The one place the loop writes the journal.
    async fn persist(&mut self, batch: Vec<PersistOp>) {
        self.journal.apply(batch).await;
        self.storage_health();
    }

    /// Tells the core when the journal starts or stops failing.
    fn storage_health(&mut self) {
        let stats = self.journal.stats();
        if stats.degraded != self.storage_degraded {
            self.storage_degraded = stats.degraded;
            let problem = stats
                .degraded
                .then(|| stats.last_error.unwrap_or_else(|| "storage error".into()));
            let _ = self
                .station
                .handle_input(self.clock.now(), Input::Storage { problem });
        }
    }

    async fn send(&mut self, message: Message) {
        if let Err(e) = self.link.send(message).await {
            self.station.handle_disconnected(self.clock.now(), &e);
        }
    }

    /// The view `ctl watch` follows, as `ctl status` and `ctl display` show it.
    fn watch_view(&self) -> (View, String) {
        let now = self.clock.now();
        let status = serde_json::to_value(self.station.snapshot(now)).unwrap_or_default();
        let display = serde_json::to_value(self.station.display(now)).unwrap_or_default();
        let ts = status["utc"].as_str().unwrap_or_default().to_owned();
        (View::new(status, display), ts)
    }

    /// Tells the watch readers what changed; forgets the watch when the last one is gone.
    fn update_watch(&mut self) {
        if self.watch.is_none() {
            return;
        }
        let (view, ts) = self.watch_view();
        if let Some(w) = &mut self.watch {
            w.update(view, &ts);
            if w.is_empty() {
                self.watch = None;
            }
        }
    }

    fn subscribe(&mut self, subscriber: Subscriber) -> ControlResponse {
        // Those already watching get what changed first, so the newcomer's whole view is the
        // one the next changes are counted from.
        self.update_watch();
        let (view, ts) = self.watch_view();
        let id = self.config.station.id.clone();
        let watch = self
            .watch
            .get_or_insert_with(|| Box::new(Watch::new(&id, view)));
        match watch.subscribe(subscriber, &ts) {
            Ok(()) => ControlResponse::ok(json!({"watch": id})),
            Err(e) => ControlResponse::error(e),
        }
    }

    fn control(&mut self, request: ControlRequest) -> ControlResponse {
        let now = self.clock.now();
        match request {
            ControlRequest::Status => {
                let mut status =
                    serde_json::to_value(self.station.snapshot(now)).unwrap_or_default();
                let stats = self.journal.stats();
                status["journal"] = json!({
                    "degraded": stats.degraded,
                    "pending_batches": stats.pending_batches,
                    "pending_bytes": stats.pending_bytes,
                    "last_error": stats.last_error,
                });
                ControlResponse::ok(status)
            }
            ControlRequest::Plug {
                evse,
                connector,
                state,
            } => {
                let backend = self
                    .config
                    .evse
                    .iter()
                    .find(|e| e.id == evse)
                    .and_then(|e| {
                        e.plugs()
                            .into_iter()
                            .find(|(c, _)| *c == connector)
                            .map(|(_, p)| p.clone())
                    });
                match backend {
                    None => {
                        ControlResponse::error(format!("no connector {connector} on EVSE {evse}"))
                    }
                    Some(PlugConfig::Gpio(_)) => ControlResponse::error(format!(
                        "EVSE {evse} connector {connector} reads its plug from GPIO; only `sim` plugs can be set"
                    )),
                    Some(PlugConfig::Sim) => {
                        let plugged = state == PlugState::In;
                        let input = Input::Plug {
                            evse,
                            connector,
                            plugged,
                        };
                        match self.station.handle_input(now, input) {
                            Ok(()) => ControlResponse::ok(json!({
                                "evse": evse, "connector": connector, "plugged": plugged
                            })),
                            Err(e) => ControlResponse::error(e.to_string()),
                        }
                    }
                }
            }
            ControlRequest::Variables { component } => {
                let entries = self.station.device_model(now, component.as_deref());
                if entries.is_empty() {
                    ControlResponse::error(format!(
                        "no component {:?} in the device model",
                        component.unwrap_or_default()
                    ))
                } else {
                    ControlResponse::ok(Value::Array(entries))
                }
            }
            ControlRequest::Limit { evse, amps, for_s } => {
                let input = Input::ExternalLimit {
                    evse,
                    amps,
                    duration_s: for_s,
                };
                match self.station.handle_input(now, input) {
                    Ok(()) => ControlResponse::ok(json!({
                        "evse": evse, "amps": amps, "for_s": for_s
                    })),
                    Err(e) => ControlResponse::error(e.to_string()),
                }
            }
            ControlRequest::Display => ControlResponse::ok(
                serde_json::to_value(self.station.display(now)).unwrap_or_default(),
            ),
            // Routed as Command::Watch, with the subscriber.
            ControlRequest::Watch => ControlResponse::error("watch needs a stream"),
            ControlRequest::Token {
                evse,
                id_token,
                token_type,
            } => {
                let input = Input::token(evse, &id_token, &token_type);
                match self.station.handle_input(now, input) {
                    Ok(()) => ControlResponse::ok(json!({ "evse": evse, "presented": true })),
                    Err(e) => ControlResponse::error(e.to_string()),
                }
            }
        }
    }

    /// STOPPING, the sim meters' registers saved, a clean-shutdown mark (open transactions
    /// end with stoppedReason Reboot at the next start), the WebSocket closed.
    async fn shutdown(&mut self) {
        self.report(Report::Stopping);
        let now = std::time::Instant::now();
        let mut batch = vec![PersistOp::PutMeta {
            key: CLEAN_SHUTDOWN_KEY.into(),
            value: "1".into(),
        }];
        for hw in &mut self.hardware {
            let was_flowing = hw.meter.is_flowing();
            let register = hw.set_power_path(false, now);
            if was_flowing {
                batch.push(PersistOp::PutMeta {
                    key: sim_meter_key(hw.evse),
                    value: register.to_string(),
                });
            }
        }
        self.persist(batch).await;
        self.link.close("the agent is stopping").await;
        info!("stopped");
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The WebSocket, open or being opened.
#[derive(Default)]
struct Link {
    ws: Option<Ws>,
    connecting: Option<JoinHandle<Result<Ws, ConnectError>>>,
}

async fn connect_result(
    connecting: &mut Option<JoinHandle<Result<Ws, ConnectError>>>,
) -> Result<Ws, ConnectError> {
    match connecting.as_mut() {
        Some(handle) => handle
            .await
            .unwrap_or_else(|e| Err(ConnectError::Transport(format!("connect task failed: {e}")))),
        None => std::future::pending().await,
    }
}

async fn next_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws.as_mut() {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

impl Link {
    async fn send(&mut self, message: Message) -> Result<(), String> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(()); // the core counts itself offline already
        };
        if let Message::Text(t) = &message {
            trace!(frame = rpc::loggable(t.as_str()), "sending");
        }
        match tokio::time::timeout(SEND_TIMEOUT, ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.ws = None;
                Err(format!("send failed: {e}"))
            }
            Err(_) => {
                self.ws = None;
                Err("send timed out".into())
            }
        }
    }

    async fn close(&mut self, reason: &str) {
        if let Some(handle) = self.connecting.take() {
            handle.abort();
        }
        if let Some(mut ws) = self.ws.take() {
            debug!(reason, "closing the WebSocket");
            // 1001 "going away": the station is shutting down or dropping a dead link.
            let frame = CloseFrame {
                code: CloseCode::Away,
                reason: reason.chars().take(100).collect::<String>().into(),
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
        }
    }
}
