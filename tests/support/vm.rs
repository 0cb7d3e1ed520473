//! The ARMv7 agent on a real ARMv7 kernel: Debian's armmp kernel under `qemu-system-arm -M
//! virt` (TCG), booted by `scripts/vm/boot.sh` from the pieces `scripts/vm/prepare.sh` caches.
//! The agent binary and its config sit on an ext4 image (the guest's `/data`); the guest's
//! init serves a control channel (virtio-serial) on which the test runs shell commands; the
//! guest reaches the CSMS on the host's 127.0.0.1 through qemu's guestfwd and a relay.

use super::{repo, wait_for};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The guest's address for the CSMS (guestfwd to the host's 127.0.0.1).
pub const GUEST_CSMS_URL: &str = "ws://10.0.2.100:9000/ocpp";

/// Set (to 1) where the VM tests must run (CI): a piece that cannot be prepared is a failure.
pub const REQUIRED: &str = "OCPP_VM_REQUIRED";

/// What `prepare.sh --env` printed (kernel, initramfs, qemu) and the ARMv7 agent to boot.
#[derive(Clone)]
pub struct VmEnv {
    vars: Vec<(String, String)>,
    pub agent: PathBuf,
}

/// The ARMv7 release build of the agent (`scripts/cross-armv7.sh`).
fn armv7_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_relative() { repo().join(d) } else { d })
        .unwrap_or_else(|| repo().join("target"));
    target.join("armv7-unknown-linux-gnueabihf/release/ocpp-agent")
}

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_source(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// Prepares the VM pieces, or says why not: `None` (the test returns, printing a skip) unless
/// `OCPP_VM_REQUIRED=1`, where it fails.
pub fn prepare() -> Option<VmEnv> {
    let required = std::env::var(REQUIRED).is_ok_and(|v| v == "1");
    let skip = |why: String| -> Option<VmEnv> {
        if required {
            panic!("{why} ({REQUIRED}=1: the VM tests may not be skipped)");
        }
        eprintln!("SKIPPED (the VM tests need it; {REQUIRED}=1 makes this a failure): {why}");
        None
    };
    let agent = armv7_binary();
    let Ok(meta) = std::fs::metadata(&agent) else {
        return skip(format!(
            "no ARMv7 agent at {}: build it with scripts/cross-armv7.sh",
            agent.display()
        ));
    };
    // A stale binary would test old code.
    let built = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if built < newest_source(&repo().join("src")) {
        return skip(format!(
            "{} is older than src/: rebuild it with scripts/cross-armv7.sh",
            agent.display()
        ));
    }
    let out = Command::new(repo().join("scripts/vm/prepare.sh"))
        .arg("--env")
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/vm/prepare.sh");
    if !out.status.success() {
        return skip(format!(
            "scripts/vm/prepare.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let vars = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(VmEnv { vars, agent })
}

fn sbin(tool: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(tool))
}

/// Makes `image`, an ext4 file system of `mib` MiB holding `files` (name, content, mode).
pub fn make_disk(image: &Path, mib: u32, files: &[(&str, &[u8], u32)]) {
    let staging = tempfile::tempdir().unwrap();
    for (name, data, mode) in files {
        let path = staging.path().join(name);
        std::fs::write(&path, data).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let out = Command::new(sbin("mkfs.ext4"))
        .args(["-q", "-F", "-L", "data", "-d"])
        .arg(staging.path())
        .arg(image)
        .arg(format!("{mib}M"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The guest's data disk, `dir`/data.img (64 MiB): the ARMv7 agent, `config` as agent.toml,
/// and `extra` files.
pub fn agent_disk(env: &VmEnv, dir: &Path, config: &str, extra: &[(&str, &[u8])]) -> PathBuf {
    let image = dir.join("data.img");
    let agent = std::fs::read(&env.agent).unwrap();
    let mut files: Vec<(&str, &[u8], u32)> = vec![
        ("ocpp-agent", &agent, 0o755),
        ("agent.toml", config.as_bytes(), 0o644),
    ];
    files.extend(extra.iter().map(|(name, data)| (*name, *data, 0o644)));
    make_disk(&image, 64, &files);
    image
}

/// Checks the file system of `image` as the guest's next mount would find it: a copy gets
/// the ext4 journal replayed (`e2fsck -fy`, exit 0 or 1), then must check clean
/// (`e2fsck -fn`, exit 0). Returns the copy, for reading files out of it with [`dump`].
pub fn fsck_copy(image: &Path, copy: &Path) {
    std::fs::copy(image, copy).unwrap();
    let replay = Command::new(sbin("e2fsck"))
        .arg("-fy")
        .arg(copy)
        .output()
        .unwrap();
    let code = replay.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "e2fsck -fy exited {code}: {}",
        String::from_utf8_lossy(&replay.stdout)
    );
    let check = Command::new(sbin("e2fsck"))
        .arg("-fn")
        .arg(copy)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the file system is not clean after the journal replay: {}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Copies `/name` out of the ext4 `image` to `out` (false if it does not exist).
pub fn dump(image: &Path, name: &str, out: &Path) -> bool {
    let _ = std::fs::remove_file(out);
    let status = Command::new(sbin("debugfs"))
        .arg("-R")
        .arg(format!("dump /{name} {}", out.display()))
        .arg(image)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    status.success() && out.exists() && std::fs::metadata(out).is_ok_and(|m| m.len() > 0)
}

/// A running guest.
pub struct Vm {
    child: Option<Child>,
    ctl: Option<UnixStream>,
    pub dir: PathBuf,
    pub console: PathBuf,
    /// Host time at which the control channel first answered.
    pub booted_in: Duration,
}

impl Vm {
    /// Boots the guest on `disk` (`dir` holds the console log and the control socket), with
    /// the guest's CSMS relayed to the host's 127.0.0.1:`csms_port`, and waits for its
    /// control channel. The console log keeps growing across boots (one file per `dir`).
    pub fn boot(env: &VmEnv, dir: &Path, disk: &Path, csms_port: u16) -> Vm {
        let console = dir.join("console.log");
        let socket = dir.join("ctl.sock");
        // qemu truncates its -serial file: keep earlier boots' output
        if let Ok(text) = std::fs::read(&console) {
            let mut old = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("console.old.log"))
                .unwrap();
            old.write_all(&text).unwrap();
        }
        let start = Instant::now();
        let child = Command::new(repo().join("scripts/vm/boot.sh"))
            .arg("--disk")
            .arg(disk)
            .arg("--ctl")
            .arg(&socket)
            .arg("--console")
            .arg(&console)
            .args(["--csms-port", &csms_port.to_string()])
            .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.stderr")).unwrap())
            .spawn()
            .expect("starting scripts/vm/boot.sh");
        let mut vm = Vm {
            child: Some(child),
            ctl: None,
            dir: dir.to_owned(),
            console,
            booted_in: Duration::ZERO,
        };
        let stream = wait_for(Duration::from_secs(30), "qemu's control socket", || {
            if let Some(Ok(Some(status))) = vm.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "qemu exited ({status}): {}",
                    std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default()
                );
            }
            UnixStream::connect(&socket).ok()
        });
        vm.ctl = Some(stream);
        let (rc, _) = vm.sh_timeout("true", Duration::from_secs(120));
        assert_eq!(rc, 0);
        vm.booted_in = start.elapsed();
        vm
    }

    /// Runs `cmd` (busybox sh) in the guest; returns its exit code and output.
    pub fn sh(&mut self, cmd: &str) -> (i32, String) {
        self.sh_timeout(cmd, Duration::from_secs(60))
    }

    fn sh_timeout(&mut self, cmd: &str, timeout: Duration) -> (i32, String) {
        self.run(cmd, timeout)
            .unwrap_or_else(|e| panic!("{e} ({cmd:?})\n--- console ---\n{}", self.console_text()))
    }

    fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(i32, String), String> {
        let line = format!("{}\n", base64(cmd.as_bytes()));
        let stream = self.ctl.as_mut().ok_or("no control channel")?;
        stream
            .write_all(line.as_bytes())
            .map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return Err("the control channel closed".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("control channel: {e}")),
            }
            if let Some(at) = buf.iter().rposition(|&b| b == 0x1e) {
                let tail = String::from_utf8_lossy(&buf[at + 1..]).into_owned();
                if let Some(rc) = tail.strip_prefix("rc=").and_then(|t| t.strip_suffix('\n')) {
                    let out = String::from_utf8_lossy(&buf[..at]).into_owned();
                    return Ok((rc.parse().map_err(|_| format!("bad rc {rc:?}"))?, out));
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("no answer in {timeout:?}"));
            }
        }
    }

    /// Runs `cmd` in the guest; it must succeed. Returns its output.
    pub fn ok(&mut self, cmd: &str) -> String {
        let (rc, out) = self.sh(cmd);
        assert!(
            rc == 0,
            "guest command {cmd:?} exited {rc}: {out}\n--- console ---\n{}",
            self.console_text()
        );
        out
    }

    /// Writes `text` to the guest file `path`.
    pub fn write_file(&mut self, path: &str, text: &str) {
        self.ok(&format!(
            "echo {} | base64 -d > {path}",
            base64(text.as_bytes())
        ));
    }

    /// The serial console so far (kernel, init, agent logs), this boot and earlier ones.
    pub fn console_text(&self) -> String {
        let old = std::fs::read_to_string(self.dir.join("console.old.log")).unwrap_or_default();
        let now = std::fs::read(&self.console).unwrap_or_default();
        format!("{old}{}", String::from_utf8_lossy(&now))
    }

    /// Power cut: SIGKILL to qemu. What the guest had not written back is gone.
    pub fn power_cut(&mut self) {
        self.ctl = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // the kernel's view of the GPIO lines and interrupts, where the agent's threads
            // wait, and whether its event loop answers: for a failed check
            if let Ok((_, out)) = self.run(
                "cat /sys/kernel/debug/gpio /proc/interrupts; \
                 for t in /proc/$(pidof ocpp-agent)/task/*; do \
                 echo \"$t $(cat $t/comm) $(cat $t/wchan)\"; done; \
                 timeout 5 /data/ocpp-agent ctl --config /data/agent.toml status",
                Duration::from_secs(10),
            ) {
                eprintln!(
                    "--- guest: GPIO lines, interrupts, agent threads, ctl status ---\n{out}"
                );
            }
        }
        self.power_cut();
        if std::thread::panicking() {
            let text = self.console_text();
            let tail: String = text
                .lines()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- guest console (last 200 lines) ---\n{tail}");
        }
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
