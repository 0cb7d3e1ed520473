//! Every timer of the core in one enum-indexed table; the next deadline is the minimum.

use super::clock::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Open the WebSocket (first connect, or reconnect after back-off).
    Connect,
    /// Send the next BootNotification (Pending/Rejected interval, or after a failure).
    BootRetry,
    /// Send a Heartbeat when nothing else was sent for the heartbeat interval (G02.FR.05).
    Heartbeat,
    /// The CALL in flight has waited MessageTimeout for its answer.
    CallTimeout,
    /// Send a WebSocket ping (WebSocketPingInterval).
    Ping,
    /// The last ping got no pong in time: the link is dead.
    PongTimeout,
    /// Retry the head of the transaction queue (E13.FR.03).
    QueueRetry,
    /// Clock-aligned meter values (AlignedDataCtrlr.Interval).
    AlignedData,
    /// Clock-aligned values for Ended events (AlignedDataCtrlr.TxEndedInterval).
    AlignedTxEnded,
    /// Periodic TransactionEvent Updated of an EVSE (SampledDataCtrlr.TxUpdatedInterval).
    TxUpdated(u32),
    /// A sample for the Ended event of an EVSE's transaction (SampledDataCtrlr.TxEndedInterval).
    TxEndedSample(u32),
    /// Authorized but no EV connected within EVConnectionTimeOut (E03.FR.05).
    EvConnectTimeout(u32),
    /// Close the connection to reconnect with new credentials (a grace period after the
    /// answer, so the CSMS surely reads it first).
    Relink,
    /// Resend the pending CSR (A02.FR.17).
    CsrRetry,
    /// Check the validity of the station certificate and roots (A03.FR.02).
    CertificateCheck,
    /// The firmware job's next timed step: download, retry, install or activation (L01).
    Firmware,
    /// The next attempt of the log upload (N01).
    LogRetry,
    /// Persist the latest meter reading of a charging EVSE so a power loss ends the
    /// transaction with a recent value.
    MeterCheckpoint(u32),
    /// The next instant a charging profile changes a limit (K01, K08).
    ChargingLimit,
    /// The next start or end of a display message's window (O01.FR.06/07).
    DisplayMessage,
    /// The earliest reservation's expiryDateTime (H04).
    ReservationExpiry,
    /// A station Reset restarts now, even if what it queued is not answered yet.
    Reboot,
}

/// The deadlines of the running timers. Few timers run at once (a handful per EVSE), so a
/// small vector beats a map.
#[derive(Debug, Default, Clone)]
pub struct TimerTable {
    deadlines: Vec<(Timer, Instant)>,
}

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        match self.deadlines.iter_mut().find(|(t, _)| *t == timer) {
            Some(entry) => entry.1 = at,
            None => self.deadlines.push((timer, at)),
        }
    }

    pub fn stop(&mut self, timer: Timer) {
        self.deadlines.retain(|(t, _)| *t != timer);
    }

    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, at)| *at)
    }

    pub fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().map(|(_, at)| *at).min()
    }

    /// Stops and returns the timers due at `now`, earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<Timer> {
        let mut due: Vec<(Timer, Instant)> = self
            .deadlines
            .iter()
            .filter(|(_, at)| *at <= now)
            .copied()
            .collect();
        due.sort_by_key(|(_, at)| *at);
        self.deadlines.retain(|(_, at)| *at > now);
        due.into_iter().map(|(t, _)| t).collect()
    }
}

/// A small deterministic PRNG (SplitMix64) for back-off jitter and message ids. The shell seeds
/// it from the OS; tests seed it with a constant.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn below_inclusive(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }

    /// A random (version 4) UUID, as OCPP message ids and transaction ids use.
    pub fn uuid_v4(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_deadline_is_the_minimum_and_expiry_stops_timers() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_deadline(), None);
        t.set(Timer::Heartbeat, Instant::from_millis(500));
        t.set(Timer::Ping, Instant::from_millis(200));
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(200)));
        let due = t.expire(Instant::from_millis(300));
        assert_eq!(due, vec![Timer::Ping]);
        assert!(!t.is_set(Timer::Ping));
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(500)));
    }

    #[test]
    fn uuids_are_version_4_and_distinct() {
        let mut r = Rng::new(1);
        let a = r.uuid_v4();
        let b = r.uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        for _ in 0..1000 {
            assert!(r.below_inclusive(3) <= 3);
        }
    }
}
