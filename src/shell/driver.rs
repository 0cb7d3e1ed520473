//! The process: starts one station task per station (today exactly one) in this runtime and
//! owns what is the process's, not a station's: signals, systemd notification and watchdog,
//! and the control socket, whose requests it routes to the station they name (with one station,
//! to that one). A station task ends with a [`StationExit`]; this module decides what it means
//! for the process (a Reset: exit so systemd starts the agent again, exit code 75).

use super::control;
use super::journal_backend::JournalBackend;
use super::logging;
use super::signals::StopSignals;
use super::station_task::{Command, Report, StationExit, StationTask};
use super::systemd::Notifier;
use crate::config::Config;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::{Instrument, info};

/// Why the agent could not run; `main` maps each to an exit code.
#[derive(Debug)]
pub enum RunError {
    /// Bad configuration discovered at start (e.g. an unreadable certificate).
    Config(String),
    /// The control socket or a hardware line could not be set up.
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

/// How the agent stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM / SIGINT.
    Stopped,
    /// An OCPP Reset: the service manager should start the agent again.
    Reboot,
}

/// The process's side of a running station task.
struct Handle {
    id: String,
    commands: mpsc::Sender<Command>,
    /// The last watchdog probe the task answered.
    liveness: Arc<AtomicU64>,
    ready: bool,
    running: bool,
}

/// Runs the agent until SIGTERM or SIGINT, or until an OCPP Reset asks for a restart. Call it
/// inside [`logging::process_span`].
pub async fn run(config: Config, notifier: Notifier) -> Result<Exit, RunError> {
    let control_path = config.control.socket.clone();
    // Before the station's threads (the journal's) exist, so that they inherit the mask.
    super::signals::block_stop_signals().map_err(|e| RunError::Io(e.to_string()))?;
    let span = logging::station_span(&config.station.id);
    let station = build_station(config, span.clone()).await?;
    let stations = vec![(station, span)];

    let listener = control::bind(&control_path).map_err(|e| {
        RunError::CantCreate(format!("control socket {}: {e}", control_path.display()))
    })?;
    let (jobs_tx, jobs) = mpsc::channel::<control::Job>(16);
    tokio::spawn(control::serve(listener, jobs_tx));
    let mut signals = StopSignals::new().map_err(|e| RunError::Io(e.to_string()))?;
    let stop = async move {
        match signals.recv().await {
            Ok(libc::SIGINT) => info!("SIGINT: stopping"),
            Ok(_) => info!("SIGTERM: stopping"),
            Err(e) => {
                // Without the fd the agent cannot hear a signal: stop now rather than run on
                // deaf to systemd's SIGTERM.
                tracing::error!("reading signals: {e}; stopping");
            }
        }
    };
    let result = supervise(stations, jobs, &notifier, stop).await;
    let _ = std::fs::remove_file(&control_path);
    result
}

/// Starts the station tasks (each in its span) and serves them until they have all ended:
/// routes the control requests of `jobs`, reports READY, status and STOPPING to systemd and
/// pings its watchdog while every station loop answers. When `stop` completes (the process:
/// SIGTERM or SIGINT), or when one station ends, it stops the others cleanly.
pub async fn supervise<J: JournalBackend>(
    stations: Vec<(StationTask<J>, tracing::Span)>,
    mut jobs: mpsc::Receiver<control::Job>,
    notifier: &Notifier,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Exit, RunError> {
    tokio::pin!(stop);
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<(usize, Report)>();
    let mut handles = Vec::new();
    // The station tasks are polled here rather than spawned: one task in the runtime's
    // eyes, each station woken on its own (FuturesUnordered), and a smaller binary.
    let mut tasks = FuturesUnordered::new();
    for (index, (station, span)) in stations.into_iter().enumerate() {
        let (commands, commands_rx) = mpsc::channel::<Command>(16);
        handles.push(Handle {
            id: station.id().to_owned(),
            commands,
            liveness: station.liveness(),
            ready: false,
            running: true,
        });
        tasks.push(boxed_station(
            index,
            station,
            commands_rx,
            reports_tx.clone(),
            span,
        ));
    }
    drop(reports_tx);

    // The first ping follows READY by one period, and goes out only while every station's
    // loop answers the probes (a stuck loop must let systemd's watchdog restart us).
    let mut watchdog = notifier
        .watchdog_interval()
        .map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
    let mut probe: u64 = 1;
    if watchdog.is_some() {
        for h in &handles {
            let _ = h.commands.try_send(Command::Probe(probe));
        }
    }
    let mut ready_sent = false;
    let mut stopping_sent = false;
    let mut exit = Exit::Stopped;
    let mut failure: Option<RunError> = None;
    let mut stopping = false;
    while handles.iter().any(|h| h.running) {
        tokio::select! {
            Some((index, result)) = tasks.next() => {
                handles[index].running = false;
                match result {
                    // Today the product is one station: its Reset restarts the process.
                    Ok(StationExit::Reboot) => exit = Exit::Reboot,
                    Ok(StationExit::Stopped) => {}
                    Err(e) => failure = Some(e),
                }
                // One station ending ends the process: stop the others cleanly.
                if !stopping {
                    stopping = true;
                    stop_all(&handles).await;
                }
            }
            Some((index, report)) = reports.recv() => match report {
                Report::Ready => {
                    handles[index].ready = true;
                    if !ready_sent && handles.iter().all(|h| h.ready) {
                        notifier.ready();
                        ready_sent = true;
                    }
                }
                Report::Status(text) if handles.len() == 1 => notifier.status(&text),
                Report::Status(text) => notifier.status(&format!("{}: {text}", handles[index].id)),
                Report::Stopping => {
                    if !stopping_sent {
                        notifier.stopping();
                        stopping_sent = true;
                    }
                }
            },
            Some(job) = jobs.recv() => route(&handles, job),
            _ = tick(&mut watchdog) => {
                let answered = handles
                    .iter()
                    .filter(|h| h.running)
                    .all(|h| h.liveness.load(Ordering::Relaxed) == probe);
                if ready_sent && answered {
                    notifier.watchdog();
                }
                if answered {
                    probe += 1;
                    for h in handles.iter().filter(|h| h.running) {
                        let _ = h.commands.try_send(Command::Probe(probe));
                    }
                }
            }
            _ = &mut stop, if !stopping => {
                stopping = true;
                notifier.stopping();
                stopping_sent = true;
                stop_all(&handles).await;
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(exit),
    }
}

/// Opening the journal and building a station, boxed and not inlined: that future is built
/// on the stack before it moves into the box, and inlined it became part of the stack frame
/// of `run`, touched on every wake-up (issue 13).
#[inline(never)]
fn build_station(
    config: Config,
    span: tracing::Span,
) -> futures_util::future::BoxFuture<'static, Result<StationTask, RunError>> {
    Box::pin(StationTask::new(config).instrument(span))
}

/// A station task's future, boxed: FuturesUnordered keeps a stub task as large as its future
/// type, and a station's future is about 11 KB; boxed, only the box pointer is duplicated.
/// Not inlined: the future is built on the stack before it moves into the box, and inlined
/// that space became part of `supervise`'s stack frame, touched on every wake-up (issue 13).
#[inline(never)]
fn boxed_station<J: JournalBackend>(
    index: usize,
    station: StationTask<J>,
    commands: mpsc::Receiver<Command>,
    reports: mpsc::UnboundedSender<(usize, Report)>,
    span: tracing::Span,
) -> futures_util::future::BoxFuture<'static, (usize, Result<StationExit, RunError>)> {
    Box::pin(async move { (index, station.run(index, commands, reports).await) }.instrument(span))
}

async fn stop_all(handles: &[Handle]) {
    for h in handles.iter().filter(|h| h.running) {
        let _ = h.commands.send(Command::Stop).await;
    }
}

/// Hands a control request to the station it names; with one station, the station need not
/// be named.
fn route(handles: &[Handle], job: control::Job) {
    let target = match &job.station {
        Some(id) => handles.iter().find(|h| &h.id == id),
        None if handles.len() == 1 => handles.first(),
        None => None,
    };
    let Some(handle) = target else {
        let message = match &job.station {
            Some(id) => format!("no station {id:?} in this agent"),
            None => "name the station: this agent runs several".to_owned(),
        };
        let _ = job.reply.send(control::Response::error(message));
        return;
    };
    if !handle.running {
        let _ = job
            .reply
            .send(control::Response::error("the agent is shutting down"));
        return;
    }
    // Never waits: a station busy for a while (a slow journal write) must hold up neither
    // the other stations nor the signals; it has room for a few requests queued meanwhile.
    let command = match job.stream {
        Some(stream) => Command::Watch(stream, job.reply),
        None => Command::Control(job.request, job.reply),
    };
    if let Err(e) = handle.commands.try_send(command) {
        let (message, command) = match e {
            mpsc::error::TrySendError::Full(c) => ("the station is busy: try again", c),
            mpsc::error::TrySendError::Closed(c) => ("the agent is shutting down", c),
        };
        if let Command::Control(_, reply) | Command::Watch(_, reply) = command {
            let _ = reply.send(control::Response::error(message));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use control::{Job, Request, Response};
    use tokio::sync::oneshot;

    fn handle(id: &str) -> (Handle, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(4);
        let h = Handle {
            id: id.into(),
            commands,
            liveness: Arc::new(AtomicU64::new(0)),
            ready: false,
            running: true,
        };
        (h, rx)
    }

    fn job(station: Option<&str>) -> (Job, oneshot::Receiver<Response>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            station: station.map(str::to_owned),
            request: Request::Status,
            reply,
            stream: None,
        };
        (job, rx)
    }

    /// Answers the first control request on `rx` with the station's id.
    async fn answer(rx: &mut mpsc::Receiver<Command>, id: &str) {
        match rx.recv().await {
            Some(Command::Control(Request::Status, reply)) => {
                let _ = reply.send(Response::ok(id.into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn control_requests_go_to_the_station_they_name() {
        let (a, mut a_rx) = handle("A");
        let (b, mut b_rx) = handle("B");
        let one = [a];
        // One station: it need not be named.
        let (j, answer_rx) = job(None);
        route(&one, j);
        answer(&mut a_rx, "A").await;
        assert_eq!(answer_rx.await.unwrap(), Response::ok("A".into()));

        let [a] = one;
        let both = [a, b];
        let (j, answer_rx) = job(Some("B"));
        route(&both, j);
        answer(&mut b_rx, "B").await;
        assert_eq!(answer_rx.await.unwrap(), Response::ok("B".into()));
        assert!(a_rx.try_recv().is_err());
        // Several stations: a request must name one that is there.
        for (station, error) in [
            (None, "name the station: this agent runs several"),
            (Some("C"), "no station \"C\" in this agent"),
        ] {
            let (j, answer_rx) = job(station);
            route(&both, j);
            assert_eq!(answer_rx.await.unwrap(), Response::error(error));
        }
    }
}
