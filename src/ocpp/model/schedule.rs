//! Charging schedules (K): the profiles a CSMS or a local energy manager sets, in no protocol
//! version's spelling (2.0.1's SetChargingProfile and 1.6's map onto them), and the composite
//! schedule: what an EVSE, or the whole station, may draw at each instant.
//!
//! Times are UTC milliseconds since the epoch. Limits are kept as amps per phase and a phase
//! count ([`Limit`]); watts convert with the configured nominal voltage (K01.FR.50: the set
//! voltage of the area, not the measured one) and the period's phases.

use serde::{Deserialize, Serialize};

pub const DAY_MS: i64 = 86_400_000;
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// K01.FR.49: three phases unless the period says otherwise.
pub const DEFAULT_PHASES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// The grid connection's limit (EVSE 0 only, K04.FR.03).
    StationMax,
    /// The limit of every transaction without its own profile, on one EVSE or all (EVSE 0).
    TxDefault,
    /// The limit of one transaction (K01.FR.03/04), deleted when it ends (K02.FR.05).
    Tx,
    /// A limit set by a local energy manager, never by the CSMS (K01.FR.22, K11-K13).
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// From the schedule's start.
    Absolute,
    /// From the schedule's start, again every day / week.
    Daily,
    Weekly,
    /// From the start of the transaction (K01.FR.41/42).
    Relative,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RateUnit {
    /// Amps per phase (K01.FR.51).
    A,
    /// Watts, all phases together.
    W,
}

/// Who set a limit (2.0.1 ChargingLimitSourceEnumType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitSource {
    /// The charging station operator, through the CSMS.
    Cso,
    /// A local energy management system.
    Ems,
    /// The system operator of the grid.
    So,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Seconds from the start of the schedule.
    pub start_s: i64,
    /// In the schedule's unit.
    pub limit: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_to_use: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: i64,
    /// Absolute and recurring schedules start here (K01.FR.40); relative ones have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// None: the last period goes on (K01.FR.12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<i64>,
    pub unit: RateUnit,
    /// Ordered by `start_s`, the first at 0 (K01.FR.31/35).
    pub periods: Vec<Period>,
    /// Below this rate the EV charges inefficiently (K01.FR.21): a share smaller than this
    /// pauses the EVSE instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: i64,
    /// 0: the station (its grid connection; for TxDefault: each EVSE, K01.FR.14).
    pub evse: u32,
    pub stack_level: u32,
    pub purpose: Purpose,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to_ms: Option<i64>,
    pub schedule: Schedule,
    /// The transaction a TxProfile belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    pub source: LimitSource,
}

/// What may be drawn: amps on each of `phases` phases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    pub amps: f64,
    pub phases: u8,
}

impl Limit {
    pub fn new(amps: f64, phases: u8) -> Self {
        Limit {
            amps: amps.max(0.0),
            phases: phases.clamp(1, 3),
        }
    }

    pub fn watts(self, voltage: f64) -> f64 {
        self.amps * voltage * f64::from(self.phases)
    }

    /// In `unit`: amps per phase, or watts of all phases.
    pub fn value(self, unit: RateUnit, voltage: f64) -> f64 {
        match unit {
            RateUnit::A => self.amps,
            RateUnit::W => self.watts(voltage),
        }
    }

    /// The one that lets less power through (by watts, so phases count).
    pub fn min(self, other: Limit, voltage: f64) -> Limit {
        if other.watts(voltage) < self.watts(voltage) {
            other
        } else {
            self
        }
    }
}

/// A schedule value in its unit as a [`Limit`] (K01.FR.50/51).
pub fn to_limit(value: f64, unit: RateUnit, phases: u8, voltage: f64) -> Limit {
    match unit {
        RateUnit::A => Limit::new(value, phases),
        RateUnit::W => Limit::new(value / (voltage * f64::from(phases.clamp(1, 3))), phases),
    }
}

impl Profile {
    fn valid_at(&self, t: i64) -> bool {
        // K01.FR.36/37: valid from validFrom (inclusive) until validTo (exclusive).
        self.valid_from_ms.is_none_or(|f| t >= f) && self.valid_to_ms.is_none_or(|to| t < to)
    }

    /// The start of the schedule's occurrence that covers `t`, if one does. A relative profile
    /// runs from the transaction's start (`relative_start`).
    fn occurrence_start(&self, t: i64, relative_start: Option<i64>) -> Option<i64> {
        let period = match self.kind {
            Kind::Absolute => return self.schedule.start_ms.filter(|s| t >= *s),
            Kind::Relative => return relative_start.filter(|s| t >= *s),
            Kind::Daily => DAY_MS,
            Kind::Weekly => WEEK_MS,
        };
        let start = self.schedule.start_ms?;
        (t >= start).then(|| start + (t - start) / period * period)
    }

    /// The limit in force at `t`, or None: not valid, not started, or past its duration
    /// (K01.FR.11/13).
    pub fn limit_at(&self, t: i64, relative_start: Option<i64>, voltage: f64) -> Option<Limit> {
        self.period_at(t, relative_start).map(|p| {
            let phases = p.phases.unwrap_or(DEFAULT_PHASES);
            to_limit(p.limit, self.schedule.unit, phases, voltage)
        })
    }

    fn period_at(&self, t: i64, relative_start: Option<i64>) -> Option<&Period> {
        if !self.valid_at(t) {
            return None;
        }
        let elapsed_s = (t - self.occurrence_start(t, relative_start)?) / 1000;
        if self.schedule.duration_s.is_some_and(|d| elapsed_s >= d) {
            return None;
        }
        // K01.FR.12: a period lasts until the next one starts.
        let n = self
            .schedule
            .periods
            .partition_point(|p| p.start_s <= elapsed_s);
        n.checked_sub(1).map(|i| &self.schedule.periods[i])
    }

    /// The minimum charging rate of the schedule, as amps per phase with `phases` phases.
    pub fn min_rate_amps(&self, phases: u8, voltage: f64) -> Option<f64> {
        self.schedule
            .min_rate
            .map(|r| to_limit(r, self.schedule.unit, phases, voltage).amps)
    }

    /// Every instant in `[from, to)` at which this profile's limit may change.
    pub fn changes(&self, from: i64, to: i64, relative_start: Option<i64>, out: &mut Vec<i64>) {
        let mut push = |t: i64| {
            if t > from && t < to {
                out.push(t);
            }
        };
        for t in [self.valid_from_ms, self.valid_to_ms].into_iter().flatten() {
            push(t);
        }
        let (first, step) = match self.kind {
            Kind::Absolute => (self.schedule.start_ms, None),
            Kind::Relative => (relative_start, None),
            Kind::Daily => (self.schedule.start_ms, Some(DAY_MS)),
            Kind::Weekly => (self.schedule.start_ms, Some(WEEK_MS)),
        };
        let Some(first) = first else {
            return;
        };
        // The occurrence covering `from` (or the first one), then every later one before `to`.
        let mut start = match step {
            Some(step) if from > first => first + (from - first) / step * step,
            _ => first,
        };
        loop {
            push(start);
            for p in &self.schedule.periods {
                push(start + p.start_s * 1000);
            }
            if let Some(d) = self.schedule.duration_s {
                push(start + d * 1000);
            }
            match step {
                Some(step) if start + step < to => start += step,
                _ => break,
            }
        }
    }
}

/// The highest stack level among `profiles` that has a limit at `t` (K01.FR.17: a higher
/// level overrules a lower one; where the higher one's schedule has ended, the next applies).
pub fn top_of_stack<'a>(
    profiles: impl IntoIterator<Item = &'a Profile>,
    t: i64,
    relative_start: Option<i64>,
    voltage: f64,
) -> Option<(Limit, &'a Profile)> {
    let mut best: Option<(Limit, &Profile)> = None;
    for p in profiles {
        if best.is_some_and(|(_, b)| b.stack_level >= p.stack_level) {
            continue;
        }
        if let Some(limit) = p.limit_at(t, relative_start, voltage) {
            best = Some((limit, p));
        }
    }
    best
}

/// The EVSE a composite is computed for, and its transaction.
#[derive(Debug, Clone, Copy)]
pub struct EvseScope<'a> {
    pub evse: u32,
    /// The open transaction's id: its TxProfiles apply.
    pub transaction_id: Option<&'a str>,
    /// When relative profiles start: the transaction's start (or, for a composite asked for
    /// without a transaction, the start of the composite, K08.FR.06).
    pub relative_start: Option<i64>,
    /// What the EVSE's hardware can give (K02.FR.08: the local limit when no profile applies).
    pub local: Limit,
}

/// What governs an EVSE at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvseLimit {
    pub limit: Limit,
    /// The transaction's own minimum rate (from its TxProfile or TxDefaultProfile), in amps
    /// per phase.
    pub min_amps: Option<f64>,
}

/// The composite limit of an EVSE at `t` (K08.FR.04): its TxProfile, else its TxDefaultProfile
/// (its own or EVSE 0's, K01.FR.14/15; K02.FR.04/08), capped by the station's maximum, the
/// external constraints (the EVSE's and the station's) and the hardware.
pub fn evse_limit(profiles: &[Profile], scope: &EvseScope, t: i64, voltage: f64) -> EvseLimit {
    let rel = scope.relative_start;
    let of = |purpose: Purpose, evse_ok: &dyn Fn(u32) -> bool| {
        top_of_stack(
            profiles
                .iter()
                .filter(move |p| p.purpose == purpose && evse_ok(p.evse)),
            t,
            rel,
            voltage,
        )
    };
    let here_or_station = |e: u32| e == scope.evse || e == 0;
    let tx = top_of_stack(
        profiles.iter().filter(|p| {
            p.purpose == Purpose::Tx
                && p.evse == scope.evse
                && scope.transaction_id.is_some()
                && p.transaction_id.as_deref() == scope.transaction_id
        }),
        t,
        rel,
        voltage,
    )
    .or_else(|| of(Purpose::TxDefault, &here_or_station));
    let mut limit = scope.local;
    let mut min_amps = None;
    if let Some((l, p)) = tx {
        limit = limit.min(l, voltage);
        min_amps = p.min_rate_amps(l.phases, voltage);
    }
    for (l, _) in [
        of(Purpose::StationMax, &|e| e == 0),
        of(Purpose::External, &here_or_station),
    ]
    .into_iter()
    .flatten()
    {
        limit = limit.min(l, voltage);
    }
    EvseLimit { limit, min_amps }
}

/// The station's own limit at `t`: its maximum profile and external constraints on EVSE 0,
/// and the grid connection of the configuration (`local`, if any).
pub fn station_limit(
    profiles: &[Profile],
    t: i64,
    local: Option<Limit>,
    voltage: f64,
) -> Option<Limit> {
    let mut limit = local;
    for purpose in [Purpose::StationMax, Purpose::External] {
        let top = top_of_stack(
            profiles
                .iter()
                .filter(|p| p.purpose == purpose && p.evse == 0),
            t,
            None,
            voltage,
        );
        if let Some((l, _)) = top {
            limit = Some(limit.map_or(l, |m| m.min(l, voltage)));
        }
    }
    limit
}

/// One period of a composite schedule: from `start_s` (seconds after the composite's start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompositePeriod {
    pub start_s: i64,
    pub limit: Limit,
}

/// The instants in `[from, to)` where any of `profiles` may change, with `from` first.
pub fn change_points(
    profiles: &[Profile],
    from: i64,
    to: i64,
    relative_start: impl Fn(&Profile) -> Option<i64>,
) -> Vec<i64> {
    let mut points = vec![from];
    for p in profiles {
        p.changes(from, to, relative_start(p), &mut points);
    }
    points.sort_unstable();
    points.dedup();
    points
}

/// Samples `limit_at` at every change point in `[from, from + duration_s)` and merges equal
/// neighbours (K08.FR.02).
pub fn composite(
    points: &[i64],
    from: i64,
    mut limit_at: impl FnMut(i64) -> Limit,
) -> Vec<CompositePeriod> {
    let mut out: Vec<CompositePeriod> = Vec::new();
    for &t in points {
        let limit = limit_at(t);
        if out.last().is_some_and(|last| same(last.limit, limit)) {
            continue;
        }
        out.push(CompositePeriod {
            start_s: (t - from) / 1000,
            limit,
        });
    }
    // Two change points within the same second keep the later value.
    out.dedup_by(|later, earlier| {
        if later.start_s == earlier.start_s {
            earlier.limit = later.limit;
            true
        } else {
            false
        }
    });
    out
}

/// Equal within a rounding error (limits have one decimal on the wire).
pub fn same(a: Limit, b: Limit) -> bool {
    a.phases == b.phases && (a.amps - b.amps).abs() < 0.005
}

/// One EVSE's part in sharing the station's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareRequest {
    /// What the EVSE may draw on its own (its composite), amps per phase.
    pub cap: f64,
    /// What it would use: its cap, or less when its EV draws less (from the meter).
    pub demand: f64,
    /// Below this it is paused rather than given a share (K01.FR.21).
    pub min_amps: f64,
    /// Who keeps charging when not all can: earlier transactions first (smaller is first).
    pub priority: i64,
}

/// Shares `station_amps` among EVSEs (K04.FR.05: never more in total): each gets at most its
/// demand, the rest equally (water filling); an EVSE whose share would be below its minimum
/// rate gets 0 (paused), latest transaction first, and its share goes to the others.
pub fn share(station_amps: f64, requests: &[ShareRequest]) -> Vec<f64> {
    let mut active: Vec<usize> = (0..requests.len()).collect();
    loop {
        let shares = water_fill(station_amps, requests, &active);
        // The latest transaction among those that got too little is paused.
        let starving = active
            .iter()
            .copied()
            .filter(|&i| shares[i] + 1e-9 < requests[i].min_amps)
            .max_by_key(|&i| requests[i].priority);
        match starving {
            Some(i) => active.retain(|&a| a != i),
            None => return shares,
        }
    }
}

fn water_fill(total: f64, requests: &[ShareRequest], active: &[usize]) -> Vec<f64> {
    let mut shares = vec![0.0; requests.len()];
    let mut order: Vec<usize> = active.to_vec();
    order.sort_by(|&a, &b| requests[a].demand.total_cmp(&requests[b].demand));
    let mut left = total.max(0.0);
    for (n, &i) in order.iter().enumerate() {
        let fair = left / (order.len() - n) as f64;
        let want = requests[i].demand.min(requests[i].cap).max(0.0);
        shares[i] = want.min(fair);
        left -= shares[i];
    }
    // What is left when every demand is met goes to all in equal parts, up to their caps (an
    // EV that drew little may want more later).
    let mut open: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| requests[i].cap - shares[i] > 1e-9)
        .collect();
    while left > 1e-9 && !open.is_empty() {
        let each = left / open.len() as f64;
        let mut still = Vec::new();
        for &i in &open {
            let more = (requests[i].cap - shares[i]).max(0.0).min(each);
            shares[i] += more;
            left -= more;
            if requests[i].cap - shares[i] > 1e-9 {
                still.push(i);
            }
        }
        if still.len() == open.len() {
            break;
        }
        open = still;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: f64 = 230.0;
    const H: i64 = 3_600_000;
    /// 2024-01-01T00:00:00Z, a Monday.
    const T0: i64 = 1_704_067_200_000;

    fn profile(
        id: i64,
        purpose: Purpose,
        level: u32,
        kind: Kind,
        periods: &[(i64, f64)],
    ) -> Profile {
        Profile {
            id,
            evse: 1,
            stack_level: level,
            purpose,
            kind,
            valid_from_ms: None,
            valid_to_ms: None,
            schedule: Schedule {
                id,
                start_ms: (kind != Kind::Relative).then_some(T0),
                duration_s: None,
                unit: RateUnit::A,
                periods: periods
                    .iter()
                    .map(|&(s, l)| Period {
                        start_s: s,
                        limit: l,
                        phases: None,
                        phase_to_use: None,
                    })
                    .collect(),
                min_rate: None,
            },
            transaction_id: None,
            source: LimitSource::Cso,
        }
    }

    fn scope(tx: Option<&str>, relative_start: Option<i64>) -> EvseScope<'_> {
        EvseScope {
            evse: 1,
            transaction_id: tx,
            relative_start,
            local: Limit::new(32.0, 3),
        }
    }

    fn amps(profiles: &[Profile], s: &EvseScope, t: i64) -> f64 {
        evse_limit(profiles, s, t, V).limit.amps
    }

    #[test]
    fn a_higher_stack_level_overrules_and_falls_back_when_its_schedule_ends() {
        // K01.FR.17 and K01.FR.13.
        let low = profile(1, Purpose::TxDefault, 0, Kind::Absolute, &[(0, 16.0)]);
        let mut high = profile(
            2,
            Purpose::TxDefault,
            1,
            Kind::Absolute,
            &[(0, 6.0), (1800, 10.0)],
        );
        high.schedule.duration_s = Some(3600);
        let all = [low, high];
        let s = scope(None, None);
        assert_eq!(
            amps(&all, &s, T0 - 1),
            32.0,
            "before any start: the hardware"
        );
        assert_eq!(amps(&all, &s, T0), 6.0);
        assert_eq!(amps(&all, &s, T0 + H / 2), 10.0);
        assert_eq!(
            amps(&all, &s, T0 + H),
            16.0,
            "past its duration: the lower level"
        );
        let points = change_points(&all, T0, T0 + 2 * H, |_| None);
        let c = composite(&points, T0, |t| evse_limit(&all, &s, t, V).limit);
        let got: Vec<(i64, f64)> = c.iter().map(|p| (p.start_s, p.limit.amps)).collect();
        assert_eq!(got, vec![(0, 6.0), (1800, 10.0), (3600, 16.0)]);
    }

    #[test]
    fn a_tx_profile_overrules_the_default_only_for_its_transaction() {
        // K02.FR.04, K02.FR.08.
        let default = profile(1, Purpose::TxDefault, 5, Kind::Absolute, &[(0, 16.0)]);
        let mut tx = profile(2, Purpose::Tx, 0, Kind::Relative, &[(0, 20.0), (600, 8.0)]);
        tx.transaction_id = Some("tx-1".into());
        tx.schedule.duration_s = Some(1200);
        let all = [default, tx];
        let start = T0 + H;
        assert_eq!(amps(&all, &scope(Some("tx-1"), Some(start)), start), 20.0);
        assert_eq!(
            amps(&all, &scope(Some("tx-1"), Some(start)), start + 600_000),
            8.0
        );
        assert_eq!(
            amps(&all, &scope(Some("tx-1"), Some(start)), start + 1_200_000),
            16.0
        );
        assert_eq!(amps(&all, &scope(Some("tx-2"), Some(start)), start), 16.0);
        assert_eq!(amps(&all, &scope(None, Some(start)), start), 16.0);
    }

    #[test]
    fn station_maximum_and_external_constraints_cap_every_evse() {
        // K08.FR.04: never above the lowest of the merged schedules.
        let mut max = profile(1, Purpose::StationMax, 0, Kind::Absolute, &[(0, 12.0)]);
        max.evse = 0;
        let mut ext = profile(
            2,
            Purpose::External,
            0,
            Kind::Absolute,
            &[(0, 20.0), (60, 10.0)],
        );
        ext.source = LimitSource::Ems;
        let default = profile(3, Purpose::TxDefault, 0, Kind::Absolute, &[(0, 16.0)]);
        let all = [max, ext, default];
        let s = scope(None, None);
        assert_eq!(amps(&all, &s, T0), 12.0);
        assert_eq!(amps(&all, &s, T0 + 60_000), 10.0);
        assert_eq!(station_limit(&all, T0, None, V), Some(Limit::new(12.0, 3)));
        assert_eq!(
            station_limit(&all, T0, Some(Limit::new(8.0, 3)), V),
            Some(Limit::new(8.0, 3))
        );
    }

    #[test]
    fn a_station_wide_default_applies_to_each_evse_and_an_own_one_with_a_higher_level_wins() {
        // K01.FR.14/15.
        let mut station = profile(1, Purpose::TxDefault, 0, Kind::Absolute, &[(0, 16.0)]);
        station.evse = 0;
        let mut own = profile(2, Purpose::TxDefault, 1, Kind::Absolute, &[(0, 10.0)]);
        own.evse = 2;
        let all = [station, own];
        let mut s = scope(None, None);
        assert_eq!(amps(&all, &s, T0), 16.0);
        s.evse = 2;
        assert_eq!(amps(&all, &s, T0), 10.0);
    }

    #[test]
    fn daily_recurrence_crosses_midnight() {
        // 22:00-06:00 at 32 A, otherwise 10 A, starting 2024-01-01 00:00 (UTC).
        let p = profile(
            1,
            Purpose::TxDefault,
            0,
            Kind::Daily,
            &[(0, 32.0), (6 * 3600, 10.0), (22 * 3600, 32.0)],
        );
        let all = [p];
        let s = scope(None, None);
        let day3 = T0 + 2 * 24 * H;
        assert_eq!(amps(&all, &s, day3 + 5 * H), 32.0);
        assert_eq!(amps(&all, &s, day3 + 12 * H), 10.0);
        assert_eq!(amps(&all, &s, day3 + 23 * H), 32.0);
        let from = day3 + 20 * H;
        let points = change_points(&all, from, from + 12 * H, |_| None);
        let c = composite(&points, from, |t| evse_limit(&all, &s, t, V).limit);
        let got: Vec<(i64, f64)> = c.iter().map(|p| (p.start_s, p.limit.amps)).collect();
        // 20:00 10 A, 22:00 32 A, through midnight, 06:00 10 A.
        assert_eq!(got, vec![(0, 10.0), (2 * 3600, 32.0), (10 * 3600, 10.0)]);
    }

    #[test]
    fn weekly_recurrence_crosses_the_week_boundary() {
        // Weekend (Saturday, Sunday) 32 A, weekdays 16 A; T0 is a Monday.
        let p = profile(
            1,
            Purpose::TxDefault,
            0,
            Kind::Weekly,
            &[(0, 16.0), (5 * 24 * 3600, 32.0)],
        );
        let all = [p];
        let s = scope(None, None);
        let sunday_noon = T0 + 6 * 24 * H + 12 * H;
        assert_eq!(amps(&all, &s, sunday_noon), 32.0);
        assert_eq!(amps(&all, &s, T0 + 7 * 24 * H), 16.0, "the next Monday");
        let points = change_points(&all, sunday_noon, sunday_noon + 24 * H, |_| None);
        let c = composite(&points, sunday_noon, |t| evse_limit(&all, &s, t, V).limit);
        let got: Vec<(i64, f64)> = c.iter().map(|p| (p.start_s, p.limit.amps)).collect();
        assert_eq!(got, vec![(0, 32.0), (12 * 3600, 16.0)]);
    }

    #[test]
    fn a_relative_profile_started_mid_period_counts_from_the_transaction() {
        let p = profile(
            1,
            Purpose::TxDefault,
            0,
            Kind::Relative,
            &[(0, 6.0), (900, 16.0)],
        );
        let all = [p];
        let started = T0 + 600_000; // the transaction began 10 minutes before `from`
        let s = scope(Some("t"), Some(started));
        let from = T0 + 1_200_000;
        let points = change_points(&all, from, from + H, |_| Some(started));
        let c = composite(&points, from, |t| evse_limit(&all, &s, t, V).limit);
        let got: Vec<(i64, f64)> = c.iter().map(|p| (p.start_s, p.limit.amps)).collect();
        assert_eq!(got, vec![(0, 6.0), (300, 16.0)]);
    }

    #[test]
    fn watts_and_amps_convert_with_the_phases_and_the_nominal_voltage() {
        // K01.FR.50: A = W / (V x phases).
        let mut w = profile(1, Purpose::TxDefault, 0, Kind::Absolute, &[(0, 11_040.0)]);
        w.schedule.unit = RateUnit::W;
        let l = w.limit_at(T0, None, V).unwrap();
        assert!((l.amps - 16.0).abs() < 1e-9);
        assert_eq!(l.phases, 3);
        w.schedule.periods[0].phases = Some(1);
        w.schedule.periods[0].limit = 3680.0;
        let l = w.limit_at(T0, None, V).unwrap();
        assert!((l.amps - 16.0).abs() < 1e-9);
        assert_eq!(l.phases, 1);
        assert!((l.value(RateUnit::W, V) - 3680.0).abs() < 1e-9);
        // 16 A on one phase lets less through than 10 A on three.
        let three = Limit::new(10.0, 3);
        assert_eq!(three.min(l, V), l);
    }

    #[test]
    fn validity_bounds_are_inclusive_from_and_exclusive_to() {
        // K01.FR.36/37.
        let mut p = profile(1, Purpose::TxDefault, 0, Kind::Absolute, &[(0, 6.0)]);
        p.valid_from_ms = Some(T0 + H);
        p.valid_to_ms = Some(T0 + 2 * H);
        assert_eq!(p.limit_at(T0 + H - 1, None, V), None);
        assert!(p.limit_at(T0 + H, None, V).is_some());
        assert_eq!(p.limit_at(T0 + 2 * H, None, V), None);
    }

    #[test]
    fn the_station_limit_is_shared_and_never_exceeded() {
        let req = |cap: f64, demand: f64, min: f64, priority: i64| ShareRequest {
            cap,
            demand,
            min_amps: min,
            priority,
        };
        // Three EVSEs on 32 A: equal shares.
        let s = share(
            32.0,
            &[
                req(32.0, 32.0, 0.0, 1),
                req(32.0, 32.0, 0.0, 2),
                req(32.0, 32.0, 0.0, 3),
            ],
        );
        assert!(s.iter().all(|a| (a - 32.0 / 3.0).abs() < 1e-9), "{s:?}");
        // One EV draws 4 A: the others get the rest.
        let s = share(
            32.0,
            &[
                req(32.0, 4.0, 0.0, 1),
                req(32.0, 32.0, 0.0, 2),
                req(32.0, 32.0, 0.0, 3),
            ],
        );
        assert_eq!(s, vec![4.0, 14.0, 14.0]);
        // A cap below the fair share leaves more for the others.
        let s = share(32.0, &[req(6.0, 32.0, 0.0, 1), req(32.0, 32.0, 0.0, 2)]);
        assert_eq!(s, vec![6.0, 26.0]);
        // 20 A for three EVs that need 8 A each: the latest is paused.
        let s = share(
            20.0,
            &[
                req(32.0, 32.0, 8.0, 1),
                req(32.0, 32.0, 8.0, 3),
                req(32.0, 32.0, 8.0, 2),
            ],
        );
        assert_eq!(s, vec![10.0, 0.0, 10.0]);
        // Enough for everyone: each gets its cap, also the one that drew less.
        let s = share(100.0, &[req(16.0, 16.0, 6.0, 1), req(16.0, 10.0, 6.0, 2)]);
        assert_eq!(s, vec![16.0, 16.0]);
        // No station limit at all.
        let s = share(f64::INFINITY, &[req(16.0, 4.0, 0.0, 1)]);
        assert_eq!(s, vec![16.0]);
        // An own limit below the minimum rate pauses (K01.FR.21).
        let s = share(f64::INFINITY, &[req(5.0, 5.0, 6.0, 1)]);
        assert_eq!(s, vec![0.0]);
    }
}
