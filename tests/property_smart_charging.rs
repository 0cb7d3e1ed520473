//! Property tests of smart charging (issue 14), on random profile sets:
//!
//! * the composite schedule of an EVSE is exact (at every second of its span it equals the
//!   limit computed for that instant: no change point is missed) and never exceeds the
//!   top-of-stack profile of any purpose in force then (K08.FR.04), nor the EVSE's rating;
//! * sharing a station limit never gives out more than it, never more than an EVSE's cap, and
//!   never a share below an EVSE's minimum rate (0 instead, K01.FR.21);
//! * the station, driven through the core with random profiles, transactions, EV draws and
//!   time, never lets its EVSEs together draw more than the grid connection, replaying every
//!   limit it gave the hardware in order.
//!
//! `PROPERTY_CASES=n` runs more cases (default 300), `PROPERTY_SEED=n` replays one.

use ocpp_agent::ocpp::blocks::smart_charging::ChargingHardware;
use ocpp_agent::ocpp::clock::UtcTime;
use ocpp_agent::ocpp::model::schedule::{
    self, EvseScope, Kind, Limit, LimitSource, Period, Profile, Purpose, RateUnit, Schedule,
    ShareRequest,
};
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::testkit::{Harness, default_config};
use serde_json::json;

const V: f64 = 230.0;
/// 2024-01-01T00:00:00Z, a Monday.
const T0: i64 = 1_704_067_200_000;
const DAY: i64 = 86_400_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn cases() -> (u64, u64) {
    let n = std::env::var("PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    match std::env::var("PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => (seed, 1),
        None => (0x5eed_cafe, n),
    }
}

fn random_profile(r: &mut Rng, id: i64) -> Profile {
    let purpose = [
        Purpose::StationMax,
        Purpose::TxDefault,
        Purpose::Tx,
        Purpose::External,
    ][r.below(4) as usize];
    let kind = match r.below(4) {
        0 => Kind::Absolute,
        1 => Kind::Daily,
        2 => Kind::Weekly,
        _ if purpose == Purpose::StationMax => Kind::Absolute,
        _ => Kind::Relative,
    };
    let span = if kind == Kind::Weekly {
        7 * 86_400
    } else {
        86_400
    };
    let mut starts: Vec<i64> = (0..r.range(1, 6)).map(|_| r.range(0, span)).collect();
    starts[0] = 0;
    starts.sort_unstable();
    starts.dedup();
    let unit = if r.chance(50) {
        RateUnit::A
    } else {
        RateUnit::W
    };
    let periods = starts
        .into_iter()
        .map(|s| {
            let phases = [None, Some(1), Some(3)][r.below(3) as usize];
            let amps = r.range(0, 40) as f64;
            let limit = match unit {
                RateUnit::A => amps,
                RateUnit::W => amps * V * f64::from(phases.unwrap_or(3)),
            };
            Period {
                start_s: s,
                limit,
                phases,
                phase_to_use: None,
            }
        })
        .collect();
    let valid_from = r.chance(30).then(|| T0 + r.range(-DAY, DAY) / 1000 * 1000);
    Profile {
        id,
        evse: if purpose == Purpose::StationMax || r.chance(30) {
            0
        } else {
            1
        },
        stack_level: r.below(3) as u32,
        purpose,
        kind,
        valid_from_ms: valid_from,
        valid_to_ms: r
            .chance(30)
            .then(|| valid_from.unwrap_or(T0) + r.range(1, 2 * 86_400) * 1000),
        schedule: Schedule {
            id,
            start_ms: (kind != Kind::Relative).then(|| T0 + r.range(-2 * 86_400, 86_400) * 1000),
            duration_s: r.chance(40).then(|| r.range(60, 2 * 86_400)),
            unit,
            periods,
            min_rate: None,
        },
        transaction_id: (purpose == Purpose::Tx).then(|| "tx".to_owned()),
        source: if purpose == Purpose::External {
            LimitSource::Ems
        } else {
            LimitSource::Cso
        },
    }
}

#[test]
fn the_composite_is_exact_and_never_above_a_profile_in_force() {
    let (seed, n) = cases();
    for case in 0..n {
        let mut r = Rng(seed.wrapping_add(case).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let profiles: Vec<Profile> = (0..r.range(1, 8))
            .map(|i| random_profile(&mut r, i))
            .collect();
        let tx_start = T0 + r.range(-86_400, 86_400) * 1000;
        let scope = EvseScope {
            evse: 1,
            transaction_id: r.chance(70).then_some("tx"),
            relative_start: Some(tx_start),
            local: Limit::new(32.0, 3),
        };
        let from = T0 + r.range(-86_400, 2 * 86_400) * 1000;
        let to = from + 2 * DAY;
        let points = schedule::change_points(&profiles, from, to, |_| Some(tx_start));
        let c = schedule::composite(&points, from, |t| {
            schedule::evse_limit(&profiles, &scope, t, V).limit
        });
        for _ in 0..200 {
            let s = r.range(0, 2 * 86_400);
            let t = from + s * 1000;
            let period = c.iter().rev().find(|p| p.start_s <= s).unwrap();
            let exact = schedule::evse_limit(&profiles, &scope, t, V).limit;
            assert!(
                schedule::same(period.limit, exact),
                "case {case} (seed {seed}): at +{s} s the composite says {:?}, the limit is {exact:?}\n{profiles:#?}",
                period.limit
            );
            // K08.FR.04: at or below every purpose's top of stack in force, and the rating.
            let mut bounds = vec![scope.local];
            for purpose in [Purpose::StationMax, Purpose::External, Purpose::TxDefault] {
                let top = schedule::top_of_stack(
                    profiles
                        .iter()
                        .filter(|p| p.purpose == purpose && (p.evse == 0 || p.evse == 1)),
                    t,
                    Some(tx_start),
                    V,
                );
                // A TxProfile in force overrules the default (K02.FR.04).
                let tx_in_force = scope.transaction_id.is_some()
                    && schedule::top_of_stack(
                        profiles
                            .iter()
                            .filter(|p| p.purpose == Purpose::Tx && p.evse == 1),
                        t,
                        Some(tx_start),
                        V,
                    )
                    .is_some();
                if purpose == Purpose::TxDefault && tx_in_force {
                    continue;
                }
                // Station-wide and own defaults/constraints: the EVSE's composite is capped by
                // the station's maximum only on EVSE 0.
                if let Some((l, p)) = top {
                    if purpose != Purpose::StationMax || p.evse == 0 {
                        bounds.push(l);
                    }
                }
            }
            for b in bounds {
                assert!(
                    period.limit.watts(V) <= b.watts(V) + 1e-6,
                    "case {case} (seed {seed}): at +{s} s {:?} is above {b:?}\n{profiles:#?}",
                    period.limit
                );
            }
        }
    }
}

#[test]
fn sharing_never_gives_more_than_the_station_nor_a_share_below_the_minimum() {
    let (seed, n) = cases();
    for case in 0..n {
        let mut r = Rng(seed.wrapping_add(case).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1);
        let station = r.range(0, 100) as f64;
        let requests: Vec<ShareRequest> = (0..r.range(1, 6))
            .map(|i| {
                let cap = r.range(0, 40) as f64;
                ShareRequest {
                    cap,
                    demand: if r.chance(50) {
                        cap
                    } else {
                        r.range(0, 40) as f64
                    },
                    min_amps: if r.chance(50) {
                        0.0
                    } else {
                        r.range(0, 16) as f64
                    },
                    priority: i,
                }
            })
            .collect();
        let shares = schedule::share(station, &requests);
        let total: f64 = shares.iter().sum();
        assert!(total <= station + 1e-6, "case {case}: {total} > {station}");
        for (s, q) in shares.iter().zip(&requests) {
            assert!(*s <= q.cap + 1e-6, "case {case}: {s} above the cap {q:?}");
            assert!(
                *s == 0.0 || *s + 1e-6 >= q.min_amps,
                "case {case}: {s} below the minimum {q:?}"
            );
        }
    }
}

#[test]
fn the_station_never_allows_more_than_its_grid_connection() {
    let (seed, n) = cases();
    for case in 0..n.min(60) {
        let mut r = Rng(seed.wrapping_add(case).wrapping_mul(0x94D0_49BB_1331_11EB) | 1);
        let grid = r.range(6, 64) as f64;
        let mut config = default_config();
        config.charging = ChargingHardware {
            nominal_voltage: V,
            evse_max: vec![(1, Limit::new(32.0, 3)), (2, Limit::new(16.0, 1))],
            station_max: Some(Limit::new(grid, 3)),
        };
        let mut h = Harness::new(config);
        let mut next_id = 1;
        for _ in 0..40 {
            match r.below(6) {
                0 => {
                    let evse = r.below(3) as i64;
                    let purpose = if evse == 0 && r.chance(50) {
                        "ChargingStationMaxProfile"
                    } else {
                        "TxDefaultProfile"
                    };
                    let start =
                        UtcTime::from_unix_millis(h.station.utc(h.now).unix_millis()).to_rfc3339();
                    let periods: Vec<_> = (0..r.range(1, 4))
                        .map(|k| json!({"startPeriod": k * r.range(1, 600), "limit": r.range(0, 40)}))
                        .collect();
                    let mut periods = periods;
                    periods[0]["startPeriod"] = json!(0);
                    periods.sort_by_key(|p| p["startPeriod"].as_i64());
                    periods.dedup_by_key(|p| p["startPeriod"].as_i64());
                    let frame = h.call(
                        "SetChargingProfile",
                        json!({"evseId": evse, "chargingProfile": {
                            "id": next_id, "stackLevel": r.below(3), "chargingProfilePurpose": purpose,
                            "chargingProfileKind": "Absolute",
                            "chargingSchedule": [{"id": 1, "startSchedule": start, "chargingRateUnit": "A",
                                "minChargingRate": if r.chance(30) { 6.0 } else { 0.0 },
                                "chargingSchedulePeriod": periods}]}}),
                    );
                    assert!(matches!(frame, Frame::CallResult { .. }), "{frame:?}");
                    next_id += 1;
                }
                1 => {
                    let evse = 1 + r.below(2) as u32;
                    h.plug(evse, 1, true);
                    h.token(evse, &format!("T{evse}"));
                }
                2 => h.plug(1 + r.below(2) as u32, 1, false),
                3 => {
                    let i = r.below(2) as usize;
                    h.meters[i].1 = r.range(0, 25_000) as f64;
                }
                _ => h.advance_secs(r.range(1, 400) as u64),
            }
            let mut last: Vec<(u32, Limit)> = Vec::new();
            for (evse, limit) in &h.charging_limits {
                last.retain(|(e, _)| e != evse);
                last.push((*evse, *limit));
                let total: f64 = last.iter().map(|(_, l)| l.watts(V)).sum();
                assert!(
                    total <= grid * V * 3.0 + 1e-6,
                    "case {case} (seed {seed}): {total} W allowed on a {grid} A connection: {:?}",
                    h.charging_limits
                );
            }
        }
    }
}
