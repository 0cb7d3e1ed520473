//! Fleet mode, the shape a CSMS load test needs: two station tasks with in-memory journals in
//! one single-threaded runtime, under the process's supervisor, against the Python CSMS. Each
//! boots with its own id, control requests reach the station they name, and a stop ends both
//! cleanly.

mod support;

use ocpp_agent::config::Config;
use ocpp_agent::shell::control::{Job, Request};
use ocpp_agent::shell::driver::{self, Exit};
use ocpp_agent::shell::journal_backend::MemoryBackend;
use ocpp_agent::shell::station_task::StationTask;
use ocpp_agent::shell::systemd::Notifier;
use ocpp_agent::shell::{control, logging};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

fn config(dir: &std::path::Path, url: &str, id: &str) -> Config {
    let text = support::agent_config(dir, url, "").replace("CP001", id);
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

async fn ask(jobs: &mpsc::Sender<Job>, station: &str) -> control::Response {
    let (reply, answer) = oneshot::channel();
    jobs.send(Job {
        station: Some(station.into()),
        request: Request::Status,
        reply,
        stream: None,
    })
    .await
    .unwrap();
    answer.await.unwrap()
}

#[tokio::test]
async fn two_stations_in_one_runtime() {
    let Some(csms) = support::Csms::start(&[]) else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut stations = Vec::new();
    for (dir, id) in dirs.iter().zip(["CP-A", "CP-B"]) {
        let span = logging::station_span(id);
        let task = StationTask::with_journal(
            config(dir.path(), &csms.url(), id),
            MemoryBackend::default(),
        )
        .instrument(span.clone())
        .await
        .unwrap();
        stations.push((task, span));
    }
    let (jobs_tx, jobs) = mpsc::channel(4);
    let (stop_tx, stop) = oneshot::channel::<()>();
    let notifier = Notifier::from_env();
    let supervisor = tokio::spawn(async move {
        driver::supervise(stations, jobs, &notifier, async {
            let _ = stop.await;
        })
        .await
    });

    // Both register, each under its own id, and answer for themselves. One full-suite run saw a
    // station not registered after 30 s, which is as long as the agent waits for a handshake
    // that stalls (ws.rs CONNECT_TIMEOUT); the wait allows one such attempt and the reconnect.
    for id in ["CP-A", "CP-B"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(75);
        let mut last = None;
        while std::time::Instant::now() < deadline {
            let status = ask(&jobs_tx, id).await;
            assert!(status.ok, "{status:?}");
            let status = status.result.unwrap();
            if status["connection"] == "connected" && status["registration"] == "accepted" {
                last = None;
                break;
            }
            last = Some(status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last.is_none(), "{id} registered; last status {last:?}");
    }
    let boots: Vec<String> = csms
        .calls("BootNotification")
        .iter()
        .map(|r| r["station"].as_str().unwrap().to_owned())
        .collect();
    assert!(boots.contains(&"CP-A".to_owned()), "{boots:?}");
    assert!(boots.contains(&"CP-B".to_owned()), "{boots:?}");
    let unknown = ask(&jobs_tx, "CP-C").await;
    assert_eq!(
        unknown.error.as_deref(),
        Some("no station \"CP-C\" in this agent")
    );

    stop_tx.send(()).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), supervisor)
        .await
        .expect("both stations stop")
        .unwrap();
    assert_eq!(exit.unwrap(), Exit::Stopped);
}
