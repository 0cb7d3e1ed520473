//! Running the integrator's commands (firmware install and activation, the diagnostics log)
//! with a deadline that holds: the command runs in its own process group, and at the deadline
//! the whole group is killed, so a script's hung child (or one it started in the background)
//! cannot keep the agent waiting on a pipe.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How much of standard error is kept (the end of it).
const STDERR_TAIL: usize = 64 * 1024;

/// How a bounded run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Killed at the deadline.
    pub timed_out: bool,
    /// Stopped because the output consumer wanted no more.
    pub stopped: bool,
    /// The last bytes of standard error.
    pub stderr_tail: Vec<u8>,
}

/// Runs `cmd`, handing its standard output to `on_output` chunk by chunk (return `false` to
/// stop the command), until it exits or `timeout` passes. Blocking: call it off the event loop.
pub fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
    on_output: &mut dyn FnMut(&[u8]) -> bool,
) -> std::io::Result<Finished> {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let group = child.id() as libc::pid_t;
    let kill_group = move || {
        // SAFETY: kill(2) on the process group we created; its leader is reaped only after
        // the last call, so the id cannot have been reused.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            kill_group();
            return true;
        }
        false
    });
    let mut stderr = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        if let Some(err) = stderr.as_mut() {
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
        let keep = tail.len().min(STDERR_TAIL);
        tail.split_off(tail.len() - keep)
    });
    let mut stopped = false;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !on_output(&buf[..n]) {
                        stopped = true;
                        kill_group();
                        break;
                    }
                }
            }
        }
    }
    // Wait for the leader to exit without reaping it, so its id (the group's) stays ours
    // while the group is killed below.
    // SAFETY: waitid(2) on our own child with WNOWAIT; `info` is plain data.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            group as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        );
    }
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    // Whatever the leader left running in its group goes with it.
    kill_group();
    let status = child.wait();
    let stderr_tail = stderr_reader.join().unwrap_or_default();
    Ok(Finished {
        status: status?,
        timed_out,
        stopped,
        stderr_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn output_and_status() {
        let mut out = Vec::new();
        let f = run_bounded(
            &mut sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
            &mut |b| {
                out.extend_from_slice(b);
                true
            },
        )
        .unwrap();
        assert_eq!(out, b"out\n");
        assert_eq!(f.stderr_tail, b"err\n");
        assert_eq!(f.status.code(), Some(3));
        assert!(!f.timed_out && !f.stopped);
    }

    #[test]
    fn the_deadline_kills_children_that_hold_the_pipes() {
        // The script's child keeps stdout and stderr open long after the script is killed.
        let started = Instant::now();
        let f = run_bounded(
            &mut sh("sleep 30 & sleep 30; true"),
            Duration::from_secs(1),
            &mut |_| true,
        )
        .unwrap();
        assert!(f.timed_out);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_consumer_can_stop_a_command() {
        let mut seen = 0;
        let started = Instant::now();
        let f = run_bounded(&mut sh("yes"), Duration::from_secs(30), &mut |b| {
            seen += b.len();
            seen < 100_000
        })
        .unwrap();
        assert!(f.stopped && !f.timed_out);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
