//! The local control socket: a Unix stream socket speaking JSON lines, one request and one
//! response per line. `ocpp-agent ctl` is its client.

use super::watch::{self, Subscriber};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Longest request line we read; anything longer is refused.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Status,
    Plug {
        evse: u32,
        #[serde(default = "one")]
        connector: u32,
        state: PlugState,
    },
    /// The device model as it is now, optionally one component.
    Variables {
        #[serde(default)]
        component: Option<String>,
    },
    /// A local energy manager's limit for an EVSE (0: the station): amps per phase, for
    /// `for_s` seconds or until the next; no `amps`: lifted.
    Limit {
        evse: u32,
        #[serde(default)]
        amps: Option<f64>,
        #[serde(default)]
        for_s: Option<u64>,
    },
    /// An idToken presented at the EVSE's (simulated) reader.
    Token {
        evse: u32,
        id_token: String,
        #[serde(default = "iso14443")]
        token_type: String,
    },
    /// What the screens show now (display messages), per EVSE.
    Display,
    /// JSON lines of what changes, after the response line, until the client goes
    /// (`shell::watch`).
    Watch,
}

fn iso14443() -> String {
    "ISO14443".into()
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlugState {
    In,
    Out,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(result: Value) -> Self {
        Response {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            result: None,
            error: Some(message.into()),
        }
    }
}

/// A request from a client, with where to send the answer.
#[derive(Debug)]
pub struct Job {
    /// The station it is for (the request line's `"station"` key); `None` with one station.
    pub station: Option<String>,
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
    /// For [`Request::Watch`]: where the station sends its lines.
    pub stream: Option<Subscriber>,
}

/// A request line: a [`Request`], optionally with the `"station"` it is for. Public for the
/// fuzz target `control_request` (the socket is owner-only, but its input is still untrusted).
pub fn parse_line(line: &str) -> Result<(Option<String>, Request), String> {
    let mut value: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let mut station = None;
    if let Value::Object(map) = &mut value {
        if map.contains_key("station") {
            // Rebuilt without the key rather than `remove`d: BTreeMap's removal code would
            // cost the binary 3.5 KiB for a line that is read once.
            let mut rest = serde_json::Map::new();
            for (key, v) in std::mem::take(map) {
                match (key.as_str(), v) {
                    ("station", Value::String(id)) => station = Some(id),
                    ("station", _) => return Err("station must be a string".into()),
                    (_, v) => {
                        rest.insert(key, v);
                    }
                }
            }
            *map = rest;
        }
    }
    let request = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok((station, request))
}

/// Binds the socket with owner-only permissions (a stale socket file from a crash is replaced).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Create it under a tight umask-equivalent: bind, then restrict before anyone can use it
    // meaningfully; the directory (RuntimeDirectory, 0755 owned by us) already limits creation.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts clients forever, forwarding their requests to the event loop.
pub async fn serve(listener: UnixListener, jobs: mpsc::Sender<Job>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_client(stream, jobs.clone()));
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle_client(stream: UnixStream, jobs: mpsc::Sender<Job>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await
        {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                debug!(error = %e, "control client read failed");
                return;
            }
        }
        let response = if line.len() > MAX_LINE {
            Response::error("request too long")
        } else {
            match parse_line(line.trim()) {
                Err(e) => Response::error(format!("bad request: {e}")),
                Ok((station, request)) => {
                    let (tx, rx) = oneshot::channel();
                    let (stream, feed) = if request == Request::Watch {
                        let (s, f) = mpsc::channel(watch::BUFFER);
                        (Some(s), Some(f))
                    } else {
                        (None, None)
                    };
                    let job = Job {
                        station,
                        request,
                        reply: tx,
                        stream,
                    };
                    if jobs.send(job).await.is_err() {
                        return;
                    }
                    let response = rx
                        .await
                        .unwrap_or_else(|_| Response::error("the agent is shutting down"));
                    match feed {
                        Some(feed) if response.ok => {
                            stream_watch(&response, feed, &mut lines, &mut write).await;
                            return;
                        }
                        _ => response,
                    }
                }
            }
        };
        let mut text = serde_json::to_string(&response).unwrap_or_default();
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
        if line.len() > MAX_LINE {
            return;
        }
    }
}

/// A watch: the response line, then the station's lines as they come, until the station lets
/// the reader go (the last line says why) or the client closes its end.
async fn stream_watch<R: tokio::io::AsyncRead + Unpin>(
    response: &Response,
    mut feed: mpsc::Receiver<Arc<str>>,
    client: &mut R,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) {
    let mut text = serde_json::to_string(response).unwrap_or_default();
    text.push('\n');
    if write.write_all(text.as_bytes()).await.is_err() {
        return;
    }
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            line = feed.recv() => {
                let Some(line) = line else { return };
                let mut text = String::with_capacity(line.len() + 1);
                text.push_str(&line);
                text.push('\n');
                if write.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
            // What the client sends is ignored; its end closing ends the watch.
            read = client.read(&mut scratch) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

/// Client side of a watch: sends the request and hands every line after the response to
/// `each` until the agent closes the stream; the response's error if it refused.
pub async fn watch(
    path: &Path,
    request: &Request,
    mut each: impl FnMut(&str),
) -> std::io::Result<Result<(), String>> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let Some(first) = lines.next_line().await? else {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    };
    let response: Response = serde_json::from_str(&first).map_err(std::io::Error::other)?;
    if !response.ok {
        return Ok(Err(response.error.unwrap_or_default()));
    }
    while let Some(line) = lines.next_line().await? {
        each(&line);
    }
    Ok(Ok(()))
}

/// Client side: sends one request and returns the response.
pub async fn call(path: &Path, request: &Request) -> std::io::Result<Response> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"plug","evse":2,"state":"in"}"#).unwrap(),
            Request::Plug {
                evse: 2,
                connector: 1,
                state: PlugState::In
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"explode"}"#).is_err());
        // The station a request is for rides beside the command.
        assert_eq!(
            parse_line(r#"{"cmd":"status","station":"CP-2"}"#).unwrap(),
            (Some("CP-2".to_owned()), Request::Status)
        );
        assert_eq!(
            parse_line(r#"{"cmd":"status"}"#).unwrap(),
            (None, Request::Status)
        );
        assert!(parse_line(r#"{"cmd":"status","station":7}"#).is_err());
        assert!(parse_line(r#"{"cmd":"plug","evse":1,"state":"in","stat":"x"}"#).is_err());
    }

    #[tokio::test]
    async fn a_watch_streams_lines_until_the_reader_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel::<Job>(4);
        tokio::spawn(serve(listener, tx));
        let (closed_tx, closed_rx) = oneshot::channel();
        tokio::spawn(async move {
            let job = rx.recv().await.unwrap();
            assert_eq!(job.request, Request::Watch);
            let stream = job.stream.expect("a watch gets a stream");
            let _ = job
                .reply
                .send(Response::ok(serde_json::json!({"watch": "CP1"})));
            for n in 0..3 {
                stream.send(format!("{{\"n\":{n}}}").into()).await.unwrap();
            }
            // The reader goes: the stream closes without another line being sent.
            stream.closed().await;
            let _ = closed_tx.send(());
        });
        let stream = UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"{\"cmd\":\"watch\"}\n").await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let first: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(first.ok);
        for n in 0..3 {
            assert_eq!(
                lines.next_line().await.unwrap().unwrap(),
                format!("{{\"n\":{n}}}")
            );
        }
        drop(lines);
        drop(write);
        tokio::time::timeout(std::time::Duration::from_secs(5), closed_rx)
            .await
            .expect("the station learns that the reader went")
            .unwrap();
    }

    #[tokio::test]
    async fn socket_is_owner_only_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/control.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (tx, mut rx) = mpsc::channel::<Job>(4);
        tokio::spawn(serve(listener, tx));
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let mut echo = serde_json::to_value(&job.request).unwrap();
                if let Some(station) = job.station {
                    echo["station"] = Value::String(station);
                }
                let _ = job.reply.send(Response::ok(echo));
            }
        });
        let r = call(&path, &Request::Status).await.unwrap();
        assert_eq!(r, Response::ok(serde_json::json!({"cmd":"status"})));
        // A garbage line gets an error, and the connection stays usable.
        let stream = UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(b"{nonsense\n{\"cmd\":\"status\"}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        let first: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(!first.ok);
        let second: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert!(second.ok);
        write
            .write_all(b"{\"cmd\":\"status\",\"station\":\"CP-2\"}\n")
            .await
            .unwrap();
        let third: Response =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        assert_eq!(
            third,
            Response::ok(serde_json::json!({"cmd":"status","station":"CP-2"}))
        );
    }
}
