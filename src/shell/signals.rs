//! SIGTERM and SIGINT, read from a signalfd registered with the runtime.
//!
//! Not `tokio::signal`: its registry, set up when the runtime is built with the signal
//! driver, allocates a broadcast slot for each of the 65 signal numbers (22 KB of heap that the
//! agent keeps for its whole life, issue 13) to serve the two signals the agent handles. A
//! signalfd needs the signals blocked in every thread, so that they stay pending for the fd
//! instead of running their default action: [`block_stop_signals`] is called before any thread
//! exists, and the threads created later inherit the mask. Child processes do not: the
//! standard library empties the signal mask of every process it spawns.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// The signals that stop the agent.
fn stop_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only adds valid signal numbers.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        set.assume_init()
    }
}

/// Blocks SIGTERM and SIGINT in the calling thread and in the threads it creates from now
/// on. Call it before the first thread is started (`main`, before the runtime).
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: `set` is initialised; the old mask is not asked for.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// A signalfd for SIGTERM and SIGINT.
pub struct StopSignals {
    fd: AsyncFd<OwnedFd>,
}

impl StopSignals {
    /// Blocks the signals in this thread too (for callers that did not) and opens the fd.
    /// Needs a runtime with I/O enabled.
    pub fn new() -> io::Result<StopSignals> {
        block_stop_signals()?;
        let set = stop_set();
        // SAFETY: a new signalfd (-1) for an initialised set.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd is valid and open, and the AsyncFd owns it (and so keeps it
        // open, the same descriptor) for its whole life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(StopSignals { fd })
    }

    /// Waits for the next signal; returns its number (`libc::SIGTERM` or `libc::SIGINT`).
    pub async fn recv(&mut self) -> io::Result<i32> {
        loop {
            let mut ready = self.fd.readable().await?;
            let read = ready.try_io(|fd| {
                let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                // SAFETY: reads at most `size` bytes into `info`, which has that size.
                let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                if n as usize != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "short signalfd read",
                    ));
                }
                // SAFETY: the kernel filled the whole structure.
                Ok(unsafe { info.assume_init() }.ssi_signo as i32)
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StopSignals;

    /// A SIGINT sent to the process while it is blocked is read from the fd (and does not
    /// end the test process, which it would if the mask were not set).
    #[tokio::test]
    async fn a_blocked_signal_is_read_from_the_fd() {
        let mut signals = StopSignals::new().unwrap();
        // SAFETY: getpid/raise only; SIGINT is blocked in this thread, so raise() leaves it
        // pending for the fd.
        unsafe {
            libc::raise(libc::SIGINT);
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), signals.recv())
            .await
            .expect("the signal reaches the fd")
            .unwrap();
        assert_eq!(got, libc::SIGINT);
    }
}
