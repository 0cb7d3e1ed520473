//! A local HTTP/HTTPS file server for firmware download and log upload tests: the independent
//! `tests/csms/fileserver.py` (Python standard library only), on an ephemeral localhost port.

use super::{repo, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Python interpreter for the file server: the project's `.venv` (as for the CSMS peer),
/// else a `python3` >= 3.11 on the PATH (the server needs only the standard library). Neither:
/// [`super::missing_peer`] (a failure, or `None` with the opt-out).
fn python() -> Option<PathBuf> {
    let venv = repo().join(".venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    let system = PathBuf::from("python3");
    let usable = Command::new(&system)
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 11))"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if usable {
        return Some(system);
    }
    super::missing_peer("no Python >= 3.11 for the file server: run scripts/setup-python.sh");
    None
}

/// A running `tests/csms/fileserver.py`. Uploads (PUT/POST) land in [`FileServer::uploads`].
pub struct FileServer {
    child: Child,
    /// Holds the port file, `fileserver.jsonl`, `fileserver.stderr` and `uploads/`.
    pub dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
}

impl FileServer {
    /// Starts the server on 127.0.0.1:ephemeral serving the files below `root`; `extra` is
    /// passed through (e.g. `["--drop-after", "1000"]`, `["--fail-first", "2"]`,
    /// `["--stall-after", "4096"]`). `tls`: `Some((cert, key))` (PEM) for HTTPS.
    /// `None` when Python is unavailable and the opt-out is set (see [`super::missing_peer`]).
    pub fn start(root: &Path, tls: Option<(&Path, &Path)>, extra: &[&str]) -> Option<FileServer> {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let uploads = dir.path().join("uploads");
        std::fs::create_dir_all(&uploads).unwrap();
        let mut command = Command::new(python);
        command
            .arg(repo().join("tests/csms/fileserver.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--root")
            .arg(root)
            .arg("--log")
            .arg(dir.path().join("fileserver.jsonl"));
        if !extra.contains(&"--upload-dir") {
            command.arg("--upload-dir").arg(&uploads);
        }
        if let Some((cert, key)) = tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let mut child = command
            .args(extra)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("fileserver.stderr")).unwrap())
            .spawn()
            .expect("starting tests/csms/fileserver.py");
        let port = wait_for(Duration::from_secs(30), "the file server port", || {
            if let Ok(Some(status)) = child.try_wait() {
                let stderr = std::fs::read_to_string(dir.path().join("fileserver.stderr"))
                    .unwrap_or_default();
                panic!("the file server exited early ({status}): {stderr}");
            }
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse::<u16>()
                .ok()
        });
        Some(FileServer {
            child,
            dir,
            port,
            tls: tls.is_some(),
        })
    }

    /// `https://localhost:PORT/<path>` (the test certificates are for DNS:localhost) or
    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        if self.tls {
            format!("https://localhost:{}/{path}", self.port)
        } else {
            format!("http://127.0.0.1:{}/{path}", self.port)
        }
    }

    /// Every request so far, one JSON object each: `t`, `method`, `path`, `range` (the Range
    /// header or null), `status`, `bytes` (body bytes sent; received for PUT/POST), `dropped`,
    /// `stalled`.
    pub fn requests(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("fileserver.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until at least `count` requests are logged; returns them all.
    pub fn wait_requests(&self, count: usize, timeout: Duration) -> Vec<Value> {
        wait_for(timeout, &format!("{count} file server requests"), || {
            let requests = self.requests();
            (requests.len() >= count).then_some(requests)
        })
    }

    /// The directory uploads are saved in (unless `--upload-dir` was passed in `extra`).
    pub fn uploads(&self) -> PathBuf {
        self.dir.path().join("uploads")
    }

    /// The bytes uploaded as `name` (the last path segment of the PUT/POST URL, sanitized).
    pub fn uploaded(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.uploads().join(name)).ok()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fileserver.stderr")).unwrap_or_default()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- file server requests ---\n{}",
                std::fs::read_to_string(self.dir.path().join("fileserver.jsonl"))
                    .unwrap_or_default()
            );
        }
    }
}

/// A running `tests/csms/ftpserver.py` (the PyPI package pyftpdlib): user `ocpp`, password
/// `secret`, full rights on the root it serves.
pub struct FtpServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl FtpServer {
    pub const USER: &'static str = "ocpp";
    pub const PASSWORD: &'static str = "secret";

    /// Serves `root` on 127.0.0.1:ephemeral. Without the project's venv: a failure, or `None`
    /// with the opt-out, as with the CSMS peer ([`super::missing_peer`]).
    pub fn start(root: &Path) -> Option<FtpServer> {
        let python = repo().join(".venv/bin/python");
        if !python.exists() {
            super::missing_peer("no .venv for the FTP server: run scripts/setup-python.sh");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let mut child = Command::new(python)
            .arg(repo().join("tests/csms/ftpserver.py"))
            .arg("--root")
            .arg(root)
            .args(["--user", Self::USER, "--password", Self::PASSWORD])
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(dir.path().join("ftp.jsonl"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("ftp.stderr")).unwrap())
            .spawn()
            .expect("starting tests/csms/ftpserver.py");
        let port = wait_for(Duration::from_secs(30), "the FTP server port", || {
            if let Ok(Some(status)) = child.try_wait() {
                let stderr =
                    std::fs::read_to_string(dir.path().join("ftp.stderr")).unwrap_or_default();
                panic!("the FTP server exited early ({status}): {stderr}");
            }
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse::<u16>()
                .ok()
        });
        Some(FtpServer { child, dir, port })
    }

    /// `ftp://ocpp:secret@127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://{}:{}@127.0.0.1:{}/{}",
            Self::USER,
            Self::PASSWORD,
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// Every command the client sent: `cmd`, `arg` (the resolved path for file commands;
    /// never the password), `code` (the reply).
    pub fn commands(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("ftp.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
