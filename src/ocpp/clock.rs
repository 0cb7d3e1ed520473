//! Time as data. The core never reads a clock: the shell passes a monotonic [`Instant`] into
//! every call, and UTC is derived from it through an offset that the shell seeds from the system
//! clock and the CSMS corrects with its `currentTime` (B01.FR.06, G02.FR.06).

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the monotonic clock, in milliseconds since an arbitrary origin (the shell uses
/// process start; tests use zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later (time never runs backwards here).
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

/// A UTC time in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime(i64);

impl UtcTime {
    pub fn from_unix_millis(ms: i64) -> Self {
        UtcTime(ms)
    }

    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 date-time as the OCPP schemas mean it ("date-time"), e.g.
    /// `2024-05-01T12:00:00Z`, `2024-05-01T14:00:00.250+02:00`.
    pub fn parse_rfc3339(s: &str) -> Option<UtcTime> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        if hour > 23 || min > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    millis = millis * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            for _ in (i - start)..3 {
                millis *= 10;
            }
        }
        let offset_min = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let m = oh * 60 + om;
                if *sign == b'-' { -m } else { m }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + min * 60 + sec.min(59) - offset_min * 60;
        Some(UtcTime(secs * 1000 + millis))
    }

    /// Formats as RFC 3339 in UTC with millisecond precision, e.g. `2024-05-01T12:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl Add<Duration> for UtcTime {
    type Output = UtcTime;
    fn add(self, d: Duration) -> UtcTime {
        UtcTime(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64),
        )
    }
}

pub(crate) fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1-12) of year `y`; 0 for a month that does not exist.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian calendar).

/// Days since 1970-01-01 of the date `y`-`m`-`d`.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a day number counted from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The core's idea of UTC: monotonic time plus an offset. Seeded from the system clock by the
/// shell, replaced by the CSMS's time whenever a BootNotification or Heartbeat answer carries it.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// UTC milliseconds at monotonic zero.
    offset_ms: i64,
    source: TimeSource,
}

/// Where the current UTC estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// The system clock at start-up, which may be wrong on boards without an RTC.
    System,
    /// The CSMS's `currentTime`.
    Csms,
}

impl WallClock {
    pub fn new(now: Instant, system_utc: UtcTime) -> Self {
        WallClock {
            offset_ms: system_utc.0 - now.0 as i64,
            source: TimeSource::System,
        }
    }

    pub fn utc(&self, now: Instant) -> UtcTime {
        UtcTime(self.offset_ms + now.0 as i64)
    }

    pub fn source(&self) -> TimeSource {
        self.source
    }

    /// Whether UTC is believed: the CSMS gave it, or the system clock is past 2024-01-01 (a
    /// board without RTC boots in 1970 or 2000 until NTP or the CSMS sets it).
    pub fn trusted(&self, now: Instant) -> bool {
        const PLAUSIBLE_MS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        self.source == TimeSource::Csms || self.utc(now).0 >= PLAUSIBLE_MS
    }

    /// Adopts the CSMS's time; returns how far (ms) our estimate was off.
    pub fn sync(&mut self, now: Instant, csms_utc: UtcTime) -> i64 {
        let new_offset = csms_utc.0 - now.0 as i64;
        let drift = new_offset - self.offset_ms;
        self.offset_ms = new_offset;
        self.source = TimeSource::Csms;
        drift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = UtcTime::parse_rfc3339("2024-02-29T23:59:58.123Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-02-29T23:59:58.123Z");
        assert_eq!(
            UtcTime::from_unix_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        let t2 = UtcTime::parse_rfc3339("2024-03-01T01:59:58.123+02:00").unwrap();
        assert_eq!(t, t2);
        let t3 = UtcTime::parse_rfc3339("2024-02-29T20:29:58.1234567-03:30").unwrap();
        assert_eq!(t, t3);
        assert_eq!(
            UtcTime::parse_rfc3339("2021-01-01T00:00:00Z")
                .unwrap()
                .unix_millis(),
            1_609_459_200_000
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "yesterday at noon...",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert!(UtcTime::parse_rfc3339(bad).is_none(), "{bad} accepted");
        }
    }

    #[test]
    fn wall_clock_follows_csms() {
        let mut c = WallClock::new(Instant::from_millis(1000), UtcTime::from_unix_millis(5000));
        assert_eq!(c.utc(Instant::from_millis(2000)).unix_millis(), 6000);
        assert_eq!(c.source(), TimeSource::System);
        let drift = c.sync(
            Instant::from_millis(2000),
            UtcTime::from_unix_millis(10_000),
        );
        assert_eq!(drift, 4000);
        assert_eq!(c.utc(Instant::from_millis(3000)).unix_millis(), 11_000);
        assert_eq!(c.source(), TimeSource::Csms);
    }
}
