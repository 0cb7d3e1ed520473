//! The event loop: owns the WebSocket, the control socket, GPIO watchers, the store and systemd
//! notification; feeds events into the core and executes its effects in order.

use super::control::{self, PlugState, Request as ControlRequest, Response as ControlResponse};
use super::gpio;
use super::store::Store;
use super::systemd::Notifier;
use super::ws::{ConnectError, Connector, Ws};
use crate::config::{Config, PlugConfig};
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::devmodel::DeviceModel;
use crate::ocpp::station::{EvseLayout, Identity, Input, Output, Station, StationConfig};
use crate::ocpp::v201::BootReasonEnum;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, error, info, trace, warn};

/// A write that takes longer than this means the link is stuck.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The meta key under which a requested boot reason survives a restart.
const BOOT_REASON_KEY: &str = "next_boot_reason";

/// Why the agent could not run; `main` maps each to an exit code.
#[derive(Debug)]
pub enum RunError {
    /// Bad configuration discovered at start (e.g. an unreadable certificate).
    Config(String),
    /// The store or the control socket could not be created.
    CantCreate(String),
    /// The runtime failed.
    Io(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(m) | RunError::CantCreate(m) | RunError::Io(m) => f.write_str(m),
        }
    }
}

/// Hardware and local events for the loop.
enum Event {
    Plug {
        evse: u32,
        connector: u32,
        plugged: bool,
    },
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

fn station_config(config: &Config, boot_reason: BootReasonEnum) -> Result<StationConfig, RunError> {
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
        identity: Identity {
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
            })
            .collect(),
        boot_reason,
        variables,
    })
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config, notifier: Notifier) -> Result<(), RunError> {
    let store = Store::open(&config.storage.path).map_err(|e| {
        RunError::CantCreate(format!("store {}: {e}", config.storage.path.display()))
    })?;
    let boot_reason = match store.get_meta(BOOT_REASON_KEY) {
        Ok(Some(reason)) => serde_json::from_value(serde_json::Value::String(reason))
            .unwrap_or(BootReasonEnum::PowerUp),
        _ => BootReasonEnum::PowerUp,
    };
    let _ = store.delete_meta(BOOT_REASON_KEY);
    let connector = Connector::from_config(&config).map_err(RunError::Config)?;

    let clock = Clock {
        start: std::time::Instant::now(),
    };
    let seed = getrandom::u64().map_err(|e| RunError::Io(format!("no OS randomness: {e}")))?;
    let mut station = Station::new(
        station_config(&config, boot_reason)?,
        clock.now(),
        system_utc(),
        seed,
    );

    let listener = control::bind(&config.control.socket).map_err(|e| {
        RunError::CantCreate(format!(
            "control socket {}: {e}",
            config.control.socket.display()
        ))
    })?;
    let (jobs_tx, mut jobs) = mpsc::channel::<control::Job>(16);
    tokio::spawn(control::serve(listener, jobs_tx));

    let (events_tx, mut events) = mpsc::channel::<Event>(64);
    for evse in &config.evse {
        for (connector_id, plug) in evse.plugs() {
            if let PlugConfig::Gpio(line) = plug {
                let (tx, mut rx) = mpsc::channel::<bool>(8);
                let label = format!("evse {} connector {connector_id}", evse.id);
                tokio::spawn(gpio::watch(line.clone(), label, tx));
                let events_tx = events_tx.clone();
                let evse_id = evse.id;
                tokio::spawn(async move {
                    while let Some(plugged) = rx.recv().await {
                        let event = Event::Plug {
                            evse: evse_id,
                            connector: connector_id,
                            plugged,
                        };
                        if events_tx.send(event).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    }
    drop(events_tx);

    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| RunError::Io(e.to_string()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| RunError::Io(e.to_string()))?;
    let mut watchdog = notifier.watchdog_interval().map(tokio::time::interval);

    info!(
        url = connector.url(),
        station = config.station.id,
        "ocpp-agent started"
    );
    let mut link = Link::default();
    let mut ready_sent = false;
    loop {
        // Execute every effect the core produced, strictly in order.
        while let Some(output) = station.poll_output() {
            match output {
                Output::Connect => {
                    let connector = connector.clone();
                    link.connecting = Some(tokio::spawn(async move { connector.connect().await }));
                    if !ready_sent {
                        // READY once the store is open and the first connect is under way.
                        notifier.ready();
                        ready_sent = true;
                    }
                }
                Output::Send(text) => {
                    if let Err(e) = link.send(Message::text(text)).await {
                        station.handle_disconnected(clock.now(), &e);
                    }
                }
                Output::Ping => {
                    if let Err(e) = link.send(Message::Ping(Vec::new().into())).await {
                        station.handle_disconnected(clock.now(), &e);
                    }
                }
                Output::Disconnect { reason } => link.close(&reason).await,
            }
        }

        let deadline = station.poll_timeout().map(|t| clock.deadline(t));
        tokio::select! {
            result = connect_result(&mut link.connecting), if link.connecting.is_some() => {
                link.connecting = None;
                match result {
                    Ok(ws) => {
                        link.ws = Some(ws);
                        notifier.status("connected to the CSMS");
                        station.handle_connected(clock.now());
                    }
                    Err(e) => {
                        notifier.status(&format!("offline: {e}"));
                        station.handle_connect_failed(clock.now(), &e.to_string());
                    }
                }
            }
            message = next_message(&mut link.ws), if link.ws.is_some() => {
                match message {
                    Some(Ok(Message::Text(text))) => {
                        trace!(frame = %text.as_str(), "received");
                        station.handle_frame(clock.now(), text.as_str());
                    }
                    Some(Ok(Message::Pong(_))) => station.handle_pong(clock.now()),
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Binary(_))) => {
                        warn!("ignoring a binary WebSocket message (OCPP-J uses text)");
                    }
                    Some(Ok(Message::Close(frame))) => {
                        link.ws = None;
                        let reason = frame.map(|f| format!("closed by the CSMS: {} {}", f.code, f.reason)).unwrap_or_else(|| "closed by the CSMS".into());
                        station.handle_disconnected(clock.now(), &reason);
                    }
                    Some(Err(e)) => {
                        link.ws = None;
                        station.handle_disconnected(clock.now(), &e.to_string());
                    }
                    None => {
                        link.ws = None;
                        station.handle_disconnected(clock.now(), "connection closed");
                    }
                }
            }
            _ = sleep_until(deadline) => station.handle_timeout(clock.now()),
            Some(Event::Plug { evse, connector, plugged }) = events.recv() => {
                if let Err(e) = station.handle_input(clock.now(), Input::Plug { evse, connector, plugged }) {
                    error!(error = %e, "plug event for an unknown connector");
                }
            }
            Some((request, reply)) = jobs.recv() => {
                let response = control_request(&config, &mut station, &clock, request);
                let _ = reply.send(response);
            }
            _ = tick(&mut watchdog) => notifier.watchdog(),
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
        }
    }

    notifier.stopping();
    link.close("the agent is stopping").await;
    let _ = std::fs::remove_file(&config.control.socket);
    info!("stopped");
    Ok(())
}

fn control_request(
    config: &Config,
    station: &mut Station,
    clock: &Clock,
    request: ControlRequest,
) -> ControlResponse {
    match request {
        ControlRequest::Status => match serde_json::to_value(station.snapshot(clock.now())) {
            Ok(v) => ControlResponse::ok(v),
            Err(e) => ControlResponse::error(e.to_string()),
        },
        ControlRequest::Plug {
            evse,
            connector,
            state,
        } => {
            let backend = config.evse.iter().find(|e| e.id == evse).and_then(|e| {
                e.plugs()
                    .into_iter()
                    .find(|(c, _)| *c == connector)
                    .map(|(_, p)| p.clone())
            });
            match backend {
                None => ControlResponse::error(format!("no connector {connector} on EVSE {evse}")),
                Some(PlugConfig::Gpio(_)) => ControlResponse::error(format!(
                    "EVSE {evse} connector {connector} reads its plug from GPIO; only `sim` plugs can be set"
                )),
                Some(PlugConfig::Sim) => {
                    let plugged = state == PlugState::In;
                    match station.handle_input(
                        clock.now(),
                        Input::Plug {
                            evse,
                            connector,
                            plugged,
                        },
                    ) {
                        Ok(()) => ControlResponse::ok(serde_json::json!({
                            "evse": evse, "connector": connector, "plugged": plugged
                        })),
                        Err(e) => ControlResponse::error(e.to_string()),
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
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
            trace!(frame = %t.as_str(), "sending");
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
