//! Smart charging (K01-K10): the charging profiles the CSMS installs, kept durable (K01.FR.27),
//! the composite schedule of an EVSE or of the station (K08), and the limit each EVSE may draw
//! now, given to the hardware as [`Output::ChargingLimit`] whenever it changes. A station limit
//! (ChargingStationMaxProfile, or the grid connection of the configuration) is shared among
//! the EVSEs with a transaction, never exceeded in total (`schedule::share`).
//!
//! The block works on the protocol-neutral [`Profile`]; the 2.0.1 spelling of requests and
//! answers is `v201::charging`.

use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::{CoreEvent, Ctx};
use crate::ocpp::devmodel::Var;
use crate::ocpp::model::schedule::{
    self, CompositePeriod, EvseScope, Kind, Limit, LimitSource, Profile, Purpose, RateUnit,
    ShareRequest,
};
use crate::ocpp::persist::{PersistOp, Persisted, Record};
use crate::ocpp::session::RequestKind;
use crate::ocpp::station::Output;
use crate::ocpp::timer::Timer;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing::{info, warn};

/// SmartChargingCtrlr.Entries maxLimit: profiles kept at once (every EVSE's and the
/// station's). Each is rewritten to the journal with the others on a change.
pub const MAX_PROFILES: i64 = 32;

/// Room (3-phase amps) an EV gets above what it draws when a station limit is shared, so it
/// can rise; at least this, or 10 % of its draw.
const DEMAND_HEADROOM_A: f64 = 2.0;

/// The profile id of a local energy manager's limit on EVSE `n` (0: the station) is this + n:
/// far above what a CSMS numbers its profiles with, and refused to it (K01.FR.05).
pub const EXTERNAL_ID_BASE: i64 = 2_000_000_000;

/// How far ahead the next change of a limit is looked for; a later one is found when this
/// horizon is reached (the timer then fires with nothing to change, and looks again).
const HORIZON_MS: i64 = 7 * schedule::DAY_MS;

/// The electrical facts the limits are computed with (the configuration's).
#[derive(Debug, Clone, PartialEq)]
pub struct ChargingHardware {
    /// The nominal voltage of the area, for A <-> W (K01.FR.50).
    pub nominal_voltage: f64,
    /// What each EVSE can give at most (its rating): the limit when no profile applies
    /// (K02.FR.08).
    pub evse_max: Vec<(u32, Limit)>,
    /// The grid connection shared by all EVSEs, if the station has one below the sum of its
    /// EVSEs' ratings.
    pub station_max: Option<Limit>,
}

impl Default for ChargingHardware {
    fn default() -> Self {
        ChargingHardware {
            nominal_voltage: 230.0,
            evse_max: Vec::new(),
            station_max: None,
        }
    }
}

/// Why a profile is refused: a reason code of the appendix and words for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason_code: &'static str,
    pub info: String,
}

pub fn reject<T>(reason_code: &'static str, info: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        reason_code,
        info: info.into(),
    })
}

/// Which profiles a ClearChargingProfile or GetChargingProfiles means (every given field must
/// match).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileFilter {
    pub ids: Option<Vec<i64>>,
    pub evse: Option<u32>,
    pub purpose: Option<Purpose>,
    pub stack_level: Option<u32>,
    pub sources: Option<Vec<LimitSource>>,
}

impl ProfileFilter {
    fn matches(&self, p: &Profile) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&p.id))
            && self.evse.is_none_or(|e| e == p.evse)
            && self.purpose.is_none_or(|x| x == p.purpose)
            && self.stack_level.is_none_or(|l| l == p.stack_level)
            && self.sources.as_ref().is_none_or(|s| s.contains(&p.source))
    }
}

/// A composite schedule (K08): from `start_ms`, for `duration_s`, in `unit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Composite {
    pub evse: u32,
    pub start_ms: i64,
    pub duration_s: i64,
    pub unit: RateUnit,
    pub periods: Vec<CompositePeriod>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct InstalledProfiles {
    profiles: Vec<Profile>,
}

impl Record for InstalledProfiles {
    const KEY: &'static str = "smart_charging:profiles";
    const VERSION: u32 = 1;
}

/// The smart-charging block.
#[derive(Debug)]
pub struct SmartCharging {
    hardware: ChargingHardware,
    profiles: Vec<Profile>,
    /// Per EVSE (model index), the limit last given to the hardware.
    applied: Vec<Option<Limit>>,
    /// Per EVSE, the limit last reported in a TransactionEvent (LimitChangeSignificance).
    reported: Vec<Option<Limit>>,
    /// Remote starts' TxProfiles waiting for their transaction (K05), until a deadline.
    pending: Vec<(Profile, Instant)>,
    /// Per EVSE, what its EV draws while charging (3-phase-equivalent amps), from its meter.
    drawn: Vec<Option<f64>>,
    /// Per EVSE id (0: the station), the external limit last reported to the CSMS (amps), or
    /// None when its clearing was; absent: nothing to report.
    external_reported: Vec<(u32, Option<f64>)>,
}

impl SmartCharging {
    /// Start-up: the profiles the journal holds. TxProfiles are gone with their transactions,
    /// which a restart ends (K02.FR.05).
    pub(crate) fn restore(cx: &mut Ctx, persisted: &Persisted, hardware: ChargingHardware) -> Self {
        let mut profiles = cx
            .restore_record::<InstalledProfiles>(persisted)
            .map(|r| r.profiles)
            .unwrap_or_default();
        let before = profiles.len();
        profiles.retain(|p| p.purpose != Purpose::Tx);
        let evses = cx.model.evses.len();
        let block = SmartCharging {
            hardware,
            profiles,
            applied: vec![None; evses],
            reported: vec![None; evses],
            pending: Vec::new(),
            drawn: vec![None; evses],
            external_reported: Vec::new(),
        };
        if block.profiles.len() != before {
            block.save(cx);
        }
        if !block.profiles.is_empty() {
            info!(
                profiles = block.profiles.len(),
                "charging profiles restored"
            );
        }
        block
    }

    fn enabled(cx: &Ctx) -> bool {
        cx.vars.bool(Var::SmartChargingEnabled)
    }

    pub(crate) fn entries(&self) -> usize {
        self.profiles.len()
    }

    fn save(&self, cx: &mut Ctx) {
        let record = InstalledProfiles {
            profiles: self.profiles.clone(),
        };
        cx.persist(vec![PersistOp::record(Some(&record))]);
    }

    /// The area's nominal voltage, for A <-> W (K01.FR.50).
    pub(crate) fn voltage(&self) -> f64 {
        self.hardware.nominal_voltage
    }

    /// What the EVSE can give with no profile at all.
    fn evse_rating(&self, evse: u32) -> Limit {
        self.hardware
            .evse_max
            .iter()
            .find(|(e, _)| *e == evse)
            .map(|(_, l)| *l)
            .unwrap_or(Limit::new(32.0, 3))
    }

    // ----- SetChargingProfile (K01) --------------------------------------------------------

    /// The checks every profile passes before it is installed or used for a remote start.
    pub(crate) fn check(&self, cx: &Ctx, profile: &Profile) -> Result<(), Rejection> {
        if profile.evse != 0 && cx.model.evse_index(profile.evse).is_none() {
            // K01.FR.28
            return reject("UnknownEvse", format!("no EVSE {}", profile.evse));
        }
        if profile.stack_level as i64 > cx.vars.int(Var::ProfileStackLevel) {
            return reject(
                "InvalidStackLevel",
                format!(
                    "stackLevel {} is above SmartChargingCtrlr.ProfileStackLevel {}",
                    profile.stack_level,
                    cx.vars.int(Var::ProfileStackLevel)
                ),
            );
        }
        match profile.purpose {
            // K01.FR.22: only a local energy manager sets external constraints.
            Purpose::External if profile.source == LimitSource::Cso => {
                return reject(
                    "InvalidProfile",
                    "ChargingStationExternalConstraints cannot be set by the CSMS",
                );
            }
            Purpose::StationMax if profile.evse != 0 => {
                return reject(
                    "InvalidProfile",
                    "a ChargingStationMaxProfile is for EVSE 0 only",
                );
            }
            // K01.FR.38
            Purpose::StationMax if profile.kind == Kind::Relative => {
                return reject(
                    "InvalidProfile",
                    "a ChargingStationMaxProfile cannot be Relative",
                );
            }
            // K01.FR.16
            Purpose::Tx if profile.evse == 0 => {
                return reject("InvalidProfile", "a TxProfile needs an EVSE id above 0");
            }
            _ => {}
        }
        let s = &profile.schedule;
        // K01.FR.40/41
        match (profile.kind, s.start_ms) {
            (Kind::Relative, Some(_)) => {
                return reject(
                    "InvalidSchedule",
                    "a Relative profile must not have startSchedule",
                );
            }
            (Kind::Absolute | Kind::Daily | Kind::Weekly, None) => {
                return reject(
                    "InvalidSchedule",
                    "an Absolute or Recurring profile needs startSchedule",
                );
            }
            _ => {}
        }
        if !cx.vars.contains(Var::ChargingRateUnits, unit_name(s.unit)) {
            // K01.FR.26
            return reject(
                "UnsupportedRateUnit",
                format!(
                    "chargingRateUnit {} is not in SmartChargingCtrlr.RateUnit",
                    unit_name(s.unit)
                ),
            );
        }
        if s.periods.is_empty() || s.periods[0].start_s != 0 {
            // K01.FR.31
            return reject(
                "InvalidSchedule",
                "the first chargingSchedulePeriod must start at 0",
            );
        }
        if s.periods.len() as i64 > cx.vars.int(Var::PeriodsPerSchedule) {
            return reject(
                "TooManyElements",
                format!(
                    "{} periods; SmartChargingCtrlr.PeriodsPerSchedule is {}",
                    s.periods.len(),
                    cx.vars.int(Var::PeriodsPerSchedule)
                ),
            );
        }
        if s.periods.windows(2).any(|w| w[1].start_s <= w[0].start_s) {
            // K01.FR.35
            return reject(
                "InvalidSchedule",
                "chargingSchedulePeriods must be in increasing startPeriod order",
            );
        }
        if s.duration_s.is_some_and(|d| d <= 0) {
            return reject("InvalidSchedule", "the duration must be positive");
        }
        for p in &s.periods {
            if !p.limit.is_finite() || p.limit < 0.0 {
                return reject("InvalidSchedule", "a limit must not be negative");
            }
            if p.phases.is_some_and(|n| !(1..=3).contains(&n)) {
                return reject("InvalidSchedule", "numberPhases must be 1, 2 or 3");
            }
            // K01.FR.19/20/48: the EVSEs cannot switch the phase they use.
            if p.phase_to_use.is_some() {
                return reject(
                    "InvalidSchedule",
                    "phaseToUse needs ACPhaseSwitchingSupported, which this station does not have",
                );
            }
        }
        if s.min_rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
            return reject("InvalidSchedule", "minChargingRate must not be negative");
        }
        if let (Some(from), Some(to)) = (profile.valid_from_ms, profile.valid_to_ms) {
            if to <= from {
                return reject("InvalidProfile", "validTo is not after validFrom");
            }
        }
        Ok(())
    }

    /// K01: installs (or replaces, K01.FR.05) a profile.
    pub(crate) fn set_profile(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        mut profile: Profile,
    ) -> Result<(), Rejection> {
        self.check(cx, &profile)?;
        if profile.purpose == Purpose::Tx {
            let active = cx
                .model
                .evse_index(profile.evse)
                .and_then(|i| cx.model.evses[i].active_transaction.as_ref());
            match (&profile.transaction_id, active) {
                // K01.FR.03
                (None, _) => {
                    return reject("InvalidProfile", "a TxProfile needs a transactionId");
                }
                // K01.FR.09
                (Some(_), None) => {
                    return reject(
                        "TxNotFound",
                        format!("no transaction on EVSE {}", profile.evse),
                    );
                }
                // K01.FR.33
                (Some(id), Some(tx)) if *id != tx.id => {
                    return reject(
                        "TxNotFound",
                        format!("transaction {id} is not the one on EVSE {}", profile.evse),
                    );
                }
                _ => {}
            }
        } else {
            // Only a TxProfile names a transaction.
            profile.transaction_id = None;
        }
        if let Some(old) = self.profiles.iter().find(|p| p.id == profile.id) {
            // K01.FR.05: an external constraint cannot be replaced by the CSMS.
            if old.purpose == Purpose::External && profile.source == LimitSource::Cso {
                return reject(
                    "InvalidProfile",
                    "that id belongs to a ChargingStationExternalConstraints profile",
                );
            }
        }
        for other in self.profiles.iter().filter(|p| p.id != profile.id) {
            if conflicts(&profile, other) {
                return reject(
                    "DuplicateProfile",
                    format!(
                        "profile {} has the same stackLevel {} and purpose here",
                        other.id, other.stack_level
                    ),
                );
            }
        }
        let replacing = self.profiles.iter().any(|p| p.id == profile.id);
        if !replacing && self.profiles.len() as i64 >= MAX_PROFILES {
            return reject(
                "TooManyElements",
                format!("{MAX_PROFILES} profiles are installed (SmartChargingCtrlr.Entries)"),
            );
        }
        info!(
            profile = profile.id,
            evse = profile.evse,
            purpose = ?profile.purpose,
            stack_level = profile.stack_level,
            replacing,
            "charging profile installed"
        );
        self.profiles.retain(|p| p.id != profile.id);
        self.profiles.push(profile);
        self.save(cx);
        // K01.FR.07/32: re-evaluate now.
        self.apply(cx, now);
        Ok(())
    }

    // ----- ClearChargingProfile (K10), GetChargingProfiles (K09) ---------------------------

    /// Removes the matching profiles, never external constraints (K10.FR.03/04/08/09); false
    /// when nothing matched (answered Unknown, K10.FR.01).
    pub(crate) fn clear(&mut self, cx: &mut Ctx, now: Instant, filter: &ProfileFilter) -> bool {
        let before = self.profiles.len();
        self.profiles
            .retain(|p| p.purpose == Purpose::External || !filter.matches(p));
        let removed = before - self.profiles.len();
        if removed == 0 {
            return false;
        }
        info!(removed, "charging profiles cleared");
        self.save(cx);
        // K10.FR.05
        self.apply(cx, now);
        true
    }

    /// The installed profiles a GetChargingProfiles asks for (K09.FR.04-06).
    pub(crate) fn matching(&self, filter: &ProfileFilter) -> Vec<&Profile> {
        self.profiles.iter().filter(|p| filter.matches(p)).collect()
    }

    // ----- GetCompositeSchedule (K08) ------------------------------------------------------

    /// The composite schedule of an EVSE (or, for 0, of the station's grid connection) from
    /// now for `duration_s`; None for an unknown EVSE (K08.FR.05).
    pub(crate) fn composite(
        &self,
        cx: &Ctx,
        now: Instant,
        evse: u32,
        duration_s: i64,
        unit: RateUnit,
    ) -> Option<Composite> {
        let from = cx.clock.utc(now).unix_millis();
        let to = from.saturating_add(duration_s.max(0).saturating_mul(1000));
        let v = self.voltage();
        let periods = if evse == 0 {
            let scopes: Vec<EvseScope> = (0..cx.model.evses.len())
                .map(|i| self.scope(cx, i, from))
                .collect();
            let points = self.change_points(cx, from, to);
            // K08.FR.03: what the station may draw from the grid: its EVSEs together, capped
            // by the station's own limit.
            schedule::composite(&points, from, |t| {
                let watts: f64 = scopes
                    .iter()
                    .map(|s| schedule::evse_limit(&self.profiles, s, t, v).limit.watts(v))
                    .sum();
                let all = Limit::new(watts / (v * 3.0), 3);
                match schedule::station_limit(&self.profiles, t, self.hardware.station_max, v) {
                    Some(station) => all.min(station, v),
                    None => all,
                }
            })
        } else {
            let idx = cx.model.evse_index(evse)?;
            // K08.FR.06: without a transaction, as if one started now.
            let scope = self.scope(cx, idx, from);
            let points = self.change_points(cx, from, to);
            schedule::composite(&points, from, |t| {
                schedule::evse_limit(&self.profiles, &scope, t, v).limit
            })
        };
        Some(Composite {
            evse,
            start_ms: from,
            duration_s,
            unit,
            periods,
        })
    }

    fn scope<'a>(&self, cx: &'a Ctx, idx: usize, from: i64) -> EvseScope<'a> {
        let evse = &cx.model.evses[idx];
        let tx = evse.active_transaction.as_ref();
        EvseScope {
            evse: evse.id,
            transaction_id: tx.map(|t| t.id.as_str()),
            relative_start: Some(tx.map_or(from, |t| t.started_ms)),
            local: self.evse_rating(evse.id),
        }
    }

    /// Every instant in `[from, to)` at which a limit may change, `from` first.
    fn change_points(&self, cx: &Ctx, from: i64, to: i64) -> Vec<i64> {
        schedule::change_points(&self.profiles, from, to, |p| {
            let started = cx
                .model
                .evse_index(p.evse)
                .and_then(|i| cx.model.evses[i].active_transaction.as_ref())
                .map(|t| t.started_ms);
            // A relative profile without a transaction counts from now (K08.FR.06).
            Some(started.unwrap_or(from))
        })
    }

    // ----- the limits in force -------------------------------------------------------------

    /// What each EVSE may draw at `t` (UTC ms): its own composite limit, and its share of the
    /// station's limit among the EVSEs with a transaction.
    fn limits_at(&self, cx: &Ctx, t: i64) -> Vec<Limit> {
        let v = self.voltage();
        let evses = &cx.model.evses;
        let own: Vec<schedule::EvseLimit> = (0..evses.len())
            .map(|i| schedule::evse_limit(&self.profiles, &self.scope(cx, i, t), t, v))
            .collect();
        let mut limits: Vec<Limit> = own.iter().map(|l| l.limit).collect();
        let Some(station) =
            schedule::station_limit(&self.profiles, t, self.hardware.station_max, v)
        else {
            return limits;
        };
        // Shared in amps per phase of the station's phases; an EVSE with fewer phases counts
        // its watts against the same grid (K04.FR.05: never above the station limit).
        let sharing: Vec<usize> = (0..evses.len())
            .filter(|&i| evses[i].active_transaction.is_some())
            .collect();
        let station_amps = station.amps * f64::from(station.phases) / 3.0;
        let requests: Vec<ShareRequest> = sharing
            .iter()
            .map(|&i| {
                let as_three = own[i].limit.watts(v) / (v * 3.0);
                ShareRequest {
                    cap: as_three,
                    demand: self.demand(i, as_three),
                    min_amps: own[i].min_amps.unwrap_or(0.0) * f64::from(own[i].limit.phases) / 3.0,
                    priority: evses[i]
                        .active_transaction
                        .as_ref()
                        .map_or(i64::MAX, |t| t.started_ms),
                }
            })
            .collect();
        let shares = schedule::share(station_amps, &requests);
        for (n, &i) in sharing.iter().enumerate() {
            let phases = own[i].limit.phases;
            let amps = shares[n] * 3.0 / f64::from(phases);
            limits[i] = Limit::new(amps.min(own[i].limit.amps), phases);
        }
        // EVSEs without a transaction draw nothing yet; what is left is split among them, so
        // that the limits together never allow more than the station's, even in the instant
        // between a transaction's start and the next sharing.
        let used: f64 = sharing.iter().map(|&i| limits[i].watts(v)).sum();
        let idle: Vec<usize> = (0..evses.len()).filter(|i| !sharing.contains(i)).collect();
        let left = (station.watts(v) - used).max(0.0) / idle.len().max(1) as f64;
        for i in idle {
            let phases = limits[i].phases;
            let amps = left / (v * f64::from(phases));
            limits[i] = Limit::new(limits[i].amps.min(amps), phases);
        }
        limits
    }

    /// Gives each EVSE the limit in force now when it changed, and arms the timer for the next
    /// change. The minimum rate (K01.FR.21) pauses an EVSE rather than give it too little.
    pub(crate) fn apply(&mut self, cx: &mut Ctx, now: Instant) {
        let t = cx.clock.utc(now).unix_millis();
        self.expire_external(cx, t);
        let limits = if Self::enabled(cx) {
            self.limits_at(cx, t)
        } else {
            (0..cx.model.evses.len())
                .map(|i| self.evse_rating(cx.model.evses[i].id))
                .collect()
        };
        let v = self.voltage();
        let significance = cx.vars.decimal(Var::LimitChangeSignificance) / 100.0;
        // Lowered limits first: the hardware never allows more than the station limit in
        // total, also between two of these outputs.
        let mut changed: Vec<(usize, Limit)> = limits
            .into_iter()
            .enumerate()
            .filter(|(i, l)| !self.applied[*i].is_some_and(|a| schedule::same(a, *l)))
            .collect();
        changed.sort_by(|(i, a), (j, b)| {
            let delta = |k: usize, l: &Limit| {
                l.watts(v) - self.applied[k].map_or(f64::INFINITY, |x| x.watts(v))
            };
            delta(*i, a).total_cmp(&delta(*j, b))
        });
        for (i, limit) in changed {
            let evse = cx.model.evses[i].id;
            info!(
                evse,
                amps = limit.amps,
                phases = limit.phases,
                "charging limit"
            );
            self.applied[i] = Some(limit);
            let min = self.min_amps_at(cx, i, t);
            let paused = limit.amps <= 0.0 || min.is_some_and(|m| limit.amps + 1e-9 < m);
            let was_paused = std::mem::replace(&mut cx.model.evses[i].charging_paused, paused);
            cx.model.evses[i].offered_w = Some(if paused { 0.0 } else { limit.watts(v) });
            cx.outputs.push_back(Output::ChargingLimit {
                evse,
                limit: if paused {
                    Limit::new(0.0, limit.phases)
                } else {
                    limit
                },
            });
            // K01 / E: a running transaction hears of a change that matters.
            let significant = match self.reported[i] {
                None => true,
                Some(old) => {
                    let (a, b) = (old.watts(v), limit.watts(v));
                    (a - b).abs() > significance * a.max(b) || was_paused != paused
                }
            };
            if cx.model.evses[i].active_transaction.is_some() && significant {
                self.reported[i] = Some(limit);
                cx.emit(CoreEvent::ChargingRateChanged { evse });
            } else if cx.model.evses[i].active_transaction.is_none() {
                self.reported[i] = Some(limit);
            }
        }
        self.arm_timer(cx, now, t);
    }

    /// What an EVSE's EV would use (3-phase amps): what it draws now plus some room to rise,
    /// or its whole cap before it drew anything.
    fn demand(&self, idx: usize, cap: f64) -> f64 {
        match self.drawn[idx] {
            Some(drawn) => (drawn + (drawn * 0.1).max(DEMAND_HEADROOM_A)).min(cap),
            None => cap,
        }
    }

    /// An EVSE's meter: what its EV draws decides its share when EVSEs share a station limit
    /// (an EV that draws less than its share gives the rest to the others). Only a change of
    /// more than the headroom shares again, so a meter's jitter changes nothing.
    pub(crate) fn meter_reading(&mut self, cx: &mut Ctx, now: Instant, idx: usize, power_w: f64) {
        let charging = cx.model.evses[idx].active_transaction.is_some() && power_w > 0.0;
        let drawn = charging.then(|| power_w / (3.0 * self.voltage()));
        let moved = match (self.drawn[idx], drawn) {
            (Some(a), Some(b)) => (a - b).abs() > DEMAND_HEADROOM_A / 2.0,
            (None, None) => false,
            _ => true,
        };
        if !moved {
            return;
        }
        self.drawn[idx] = drawn;
        let sharing = cx
            .model
            .evses
            .iter()
            .filter(|e| e.active_transaction.is_some())
            .count()
            > 1;
        let station = schedule::station_limit(
            &self.profiles,
            cx.clock.utc(now).unix_millis(),
            self.hardware.station_max,
            self.voltage(),
        );
        if sharing && station.is_some() && Self::enabled(cx) {
            self.apply(cx, now);
        }
    }

    fn min_amps_at(&self, cx: &Ctx, idx: usize, t: i64) -> Option<f64> {
        schedule::evse_limit(&self.profiles, &self.scope(cx, idx, t), t, self.voltage()).min_amps
    }

    fn arm_timer(&self, cx: &mut Ctx, now: Instant, t: i64) {
        let next = if Self::enabled(cx) && !self.profiles.is_empty() {
            self.change_points(cx, t, t + HORIZON_MS)
                .into_iter()
                .find(|p| *p > t)
                .or(Some(t + HORIZON_MS))
        } else {
            None
        };
        match next {
            Some(at) => cx.timers.set(
                Timer::ChargingLimit,
                now + Duration::from_millis((at - t).max(0) as u64),
            ),
            None => cx.timers.stop(Timer::ChargingLimit),
        }
    }

    /// A transaction started or ended, or the clock or a variable moved: the limits again.
    /// A TxProfile ends with its transaction (K02.FR.05).
    pub(crate) fn on_event(&mut self, cx: &mut Ctx, now: Instant, event: &CoreEvent) {
        if let CoreEvent::TransactionStarted { evse } = event {
            self.pending.retain(|(_, until)| *until >= now);
            if let Some(n) = self.pending.iter().position(|(p, _)| p.evse == *evse) {
                let (profile, _) = self.pending.remove(n);
                // set_profile applies the limits.
                self.bind_remote_start(cx, now, profile);
            }
        }
        if let CoreEvent::TransactionEnded { evse } = event {
            let idx = cx.model.evse_index(*evse);
            let before = self.profiles.len();
            self.profiles.retain(|p| {
                p.purpose != Purpose::Tx
                    || p.evse != *evse
                    || idx
                        .and_then(|i| cx.model.evses[i].active_transaction.as_ref())
                        .is_some_and(|t| p.transaction_id.as_deref() == Some(&t.id))
            });
            if self.profiles.len() != before {
                info!(evse, "the transaction's charging profile ended with it");
                self.save(cx);
            }
            if let Some(i) = idx {
                self.reported[i] = None;
                self.drawn[i] = None;
            }
        }
        self.apply(cx, now);
    }

    // ----- a local energy manager (K11-K13) ------------------------------------------------

    /// `ctl limit`: a local energy manager limits an EVSE (or, for 0, the station) to `amps`
    /// per phase, for `duration_s` or until changed; None lifts its limit. Kept like the
    /// CSMS's profiles (purpose ChargingStationExternalConstraints, source EMS) and reported
    /// with NotifyChargingLimit when it changes by more than LimitChangeSignificance, with
    /// ClearedChargingLimit when lifted or run out.
    pub(crate) fn external_limit(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        evse: u32,
        amps: Option<f64>,
        duration_s: Option<u64>,
    ) -> Result<(), String> {
        if !Self::enabled(cx) {
            return Err("smart charging is disabled (SmartChargingCtrlr.Enabled)".into());
        }
        if !cx.vars.bool(Var::ExternalControlSignalsEnabled) {
            return Err(
                "external limits are switched off (SmartChargingCtrlr.ExternalControlSignalsEnabled)"
                    .into(),
            );
        }
        if evse != 0 && cx.model.evse_index(evse).is_none() {
            return Err(format!("no EVSE {evse}"));
        }
        let id = EXTERNAL_ID_BASE + i64::from(evse);
        let Some(amps) = amps else {
            let before = self.profiles.len();
            self.profiles.retain(|p| p.id != id);
            if self.profiles.len() != before {
                info!(evse, "external charging limit lifted");
                self.save(cx);
                self.external_changed(cx, evse, None);
                self.apply(cx, now);
            }
            return Ok(());
        };
        if !amps.is_finite() || !(0.0..=10_000.0).contains(&amps) {
            return Err(format!("{amps} A is not a limit (0 to 10000 A)"));
        }
        if duration_s == Some(0) {
            return Err("the duration must be positive".into());
        }
        let profile = Profile {
            id,
            evse,
            stack_level: 0,
            purpose: Purpose::External,
            kind: Kind::Absolute,
            valid_from_ms: None,
            valid_to_ms: None,
            schedule: schedule::Schedule {
                id,
                start_ms: Some(cx.clock.utc(now).unix_millis()),
                duration_s: duration_s.map(|d| d.min(i64::MAX as u64 / 1000) as i64),
                unit: RateUnit::A,
                periods: vec![schedule::Period {
                    start_s: 0,
                    limit: amps,
                    phases: None,
                    phase_to_use: None,
                }],
                min_rate: None,
            },
            transaction_id: None,
            source: LimitSource::Ems,
        };
        info!(evse, amps, duration_s, "external charging limit");
        self.profiles.retain(|p| p.id != id);
        self.profiles.push(profile);
        self.save(cx);
        self.external_changed(cx, evse, Some(amps));
        self.apply(cx, now);
        Ok(())
    }

    /// K12/K13: tells the CSMS of an external limit that changed significantly, or was lifted.
    fn external_changed(&mut self, cx: &mut Ctx, evse: u32, amps: Option<f64>) {
        let last = self
            .external_reported
            .iter()
            .find(|(e, _)| *e == evse)
            .map(|(_, a)| *a);
        let significance = cx.vars.decimal(Var::LimitChangeSignificance) / 100.0;
        let significant = match (last, amps) {
            (Some(Some(a)), Some(b)) => (a - b).abs() > significance * a.max(b),
            (Some(None) | None, None) => false,
            _ => true,
        };
        // Offline: reported once connected (`report_external`).
        if !significant || !cx.can_send_normal() {
            return;
        }
        self.external_reported.retain(|(e, _)| *e != evse);
        self.external_reported.push((evse, amps));
        let profile = self
            .profiles
            .iter()
            .find(|p| p.id == EXTERNAL_ID_BASE + i64::from(evse));
        let with_schedule = cx.vars.bool(Var::NotifyChargingLimitWithSchedules);
        let (action, payload) = crate::ocpp::v201::charging::external_limit_report(
            evse,
            profile.filter(|_| amps.is_some()),
            with_schedule,
        );
        cx.enqueue(RequestKind::Other(action), action, payload);
    }

    /// Connected and accepted: the external limits that changed while offline.
    pub(crate) fn report_external(&mut self, cx: &mut Ctx) {
        let mut evses: Vec<u32> = vec![0];
        evses.extend(cx.model.evses.iter().map(|e| e.id));
        for evse in evses {
            let amps = self
                .profiles
                .iter()
                .find(|p| p.id == EXTERNAL_ID_BASE + i64::from(evse))
                .and_then(|p| p.schedule.periods.first())
                .map(|p| p.limit);
            self.external_changed(cx, evse, amps);
        }
    }

    /// External limits whose duration ran out are lifted (K13: ClearedChargingLimit).
    fn expire_external(&mut self, cx: &mut Ctx, t: i64) {
        let expired: Vec<u32> = self
            .profiles
            .iter()
            .filter(|p| p.purpose == Purpose::External)
            .filter(|p| {
                p.schedule
                    .start_ms
                    .zip(p.schedule.duration_s)
                    .is_some_and(|(s, d)| t >= s + d * 1000)
            })
            .map(|p| p.evse)
            .collect();
        if expired.is_empty() {
            return;
        }
        self.profiles.retain(|p| {
            !(p.purpose == Purpose::External
                && p.source == LimitSource::Ems
                && expired.contains(&p.evse))
        });
        self.save(cx);
        for evse in expired {
            info!(evse, "external charging limit ran out");
            self.external_changed(cx, evse, None);
        }
    }

    pub(crate) fn limit_timer(&mut self, cx: &mut Ctx, now: Instant) {
        self.apply(cx, now);
    }

    /// The limit last given to the hardware, per EVSE id (for `ctl status`).
    pub(crate) fn applied(&self, cx: &Ctx) -> Vec<(u32, Option<Limit>)> {
        cx.model
            .evses
            .iter()
            .zip(&self.applied)
            .map(|(e, l)| (e.id, *l))
            .collect()
    }

    /// K05: a RequestStartTransaction's TxProfile, to be bound to the transaction it starts:
    /// checked now (K05.FR.05), installed once the transaction has its id.
    pub(crate) fn check_remote_start(&self, cx: &Ctx, profile: &Profile) -> Result<(), Rejection> {
        if profile.purpose != Purpose::Tx {
            // K05.FR.02
            return reject(
                "InvalidProfile",
                "a remote start's profile must be a TxProfile",
            );
        }
        self.check(cx, profile)?;
        if let Some(other) = self.profiles.iter().find(|p| p.id == profile.id) {
            if other.purpose != Purpose::Tx {
                return reject(
                    "InvalidProfile",
                    format!("profile id {} is installed with another purpose", other.id),
                );
            }
        }
        Ok(())
    }

    /// K05.FR.03: a remote start was accepted on `evse`: its profile applies to the
    /// transaction open there, or to the one the remote start opens (once the EV is plugged
    /// in, within EVConnectionTimeOut).
    pub(crate) fn remote_start(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        evse: u32,
        mut profile: Profile,
    ) {
        profile.evse = evse;
        let open = cx
            .model
            .evse_index(evse)
            .is_some_and(|i| cx.model.evses[i].active_transaction.is_some());
        if open {
            self.bind_remote_start(cx, now, profile);
        } else {
            let until = now + cx.vars.seconds(Var::EvConnectionTimeOut);
            self.pending.retain(|(p, _)| p.evse != evse);
            self.pending.push((profile, until));
        }
    }

    fn bind_remote_start(&mut self, cx: &mut Ctx, now: Instant, mut profile: Profile) {
        let tx = cx
            .model
            .evse_index(profile.evse)
            .and_then(|i| cx.model.evses[i].active_transaction.clone());
        let Some(tx) = tx else {
            warn!(
                evse = profile.evse,
                "no transaction to bind the remote start's charging profile to"
            );
            return;
        };
        profile.transaction_id = Some(tx.id);
        if let Err(r) = self.set_profile(cx, now, profile) {
            warn!(
                reason = r.reason_code,
                info = r.info,
                "the remote start's charging profile was not installed"
            );
        }
    }
}

/// K01.FR.06/39/52/53: two profiles that may not be installed together: the same stack level
/// and purpose for the same EVSE with overlapping validity, a station-wide default beside an
/// EVSE's own at the same level (whatever their validity), or two TxProfiles of one transaction.
fn conflicts(new: &Profile, old: &Profile) -> bool {
    if new.stack_level != old.stack_level || new.purpose != old.purpose {
        return false;
    }
    let overlap = new.valid_from_ms.unwrap_or(i64::MIN) < old.valid_to_ms.unwrap_or(i64::MAX)
        && old.valid_from_ms.unwrap_or(i64::MIN) < new.valid_to_ms.unwrap_or(i64::MAX);
    match new.purpose {
        Purpose::Tx => new.transaction_id == old.transaction_id,
        // A station-wide default and an EVSE's own at the same level collide too.
        Purpose::TxDefault => {
            (overlap && new.evse == old.evse) || (new.evse == 0) != (old.evse == 0)
        }
        _ => overlap && new.evse == old.evse,
    }
}

pub fn unit_name(unit: RateUnit) -> &'static str {
    match unit {
        RateUnit::A => "A",
        RateUnit::W => "W",
    }
}
