//! Composite schedule benchmark (issue 14): what GetCompositeSchedule and every limit change
//! compute for one EVSE. Three TxDefaultProfiles at stack levels 0, 1 and 2, each with 48
//! periods (a Daily schedule, one period every 30 minutes, shifted per level), plus a
//! ChargingStationMaxProfile of 48 periods, merged over 24 hours; the result is checked
//! against the limit computed point by point, so the figure is for a correct composite.
//!
//! `cargo bench --bench composite` (x86_64); `scripts/cross-armv7.sh --bench composite` builds
//! it for ARMv7 and runs it under qemu-arm. `COMPOSITE_BENCH_ROUNDS` (default 21) rounds of
//! `COMPOSITE_BENCH_ITERATIONS` (default 200) composites; the median round is reported per
//! composite. The target: under 1 ms per EVSE on ARMv7 (a Cortex-A7 board; qemu-arm on this
//! host is a stand-in, its ratio to x86_64 is printed).

mod common;
use common::env_usize;

use ocpp_agent::ocpp::model::schedule::{
    self, EvseScope, Kind, Limit, LimitSource, Period, Profile, Purpose, RateUnit, Schedule,
};
use std::hint::black_box;
use std::time::Instant;

const V: f64 = 230.0;
/// 2024-01-01T00:00:00Z.
const T0: i64 = 1_704_067_200_000;

fn daily(id: i64, purpose: Purpose, level: u32, shift_s: i64, base: f64) -> Profile {
    Profile {
        id,
        evse: if purpose == Purpose::StationMax { 0 } else { 1 },
        stack_level: level,
        purpose,
        kind: Kind::Daily,
        valid_from_ms: None,
        valid_to_ms: None,
        schedule: Schedule {
            id,
            start_ms: Some(T0 + shift_s * 1000),
            duration_s: None,
            unit: RateUnit::A,
            periods: (0..48)
                .map(|k| Period {
                    start_s: k * 1800,
                    limit: base + ((k * 7 + level as i64 * 3) % 17) as f64,
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

fn composite(profiles: &[Profile], scope: &EvseScope, from: i64) -> Vec<schedule::CompositePeriod> {
    let to = from + 86_400_000;
    let points = schedule::change_points(profiles, from, to, |_| scope.relative_start);
    schedule::composite(&points, from, |t| {
        schedule::evse_limit(profiles, scope, t, V).limit
    })
}

fn main() {
    let Some(quick) = common::harness("composite") else {
        return;
    };
    let rounds = if quick {
        3
    } else {
        env_usize("COMPOSITE_BENCH_ROUNDS", 21)
    };
    let iterations = if quick {
        5
    } else {
        env_usize("COMPOSITE_BENCH_ITERATIONS", 200)
    };
    let profiles = vec![
        daily(1, Purpose::TxDefault, 0, 0, 6.0),
        daily(2, Purpose::TxDefault, 1, 600, 8.0),
        daily(3, Purpose::TxDefault, 2, 1200, 10.0),
        daily(4, Purpose::StationMax, 0, 900, 14.0),
    ];
    let scope = EvseScope {
        evse: 1,
        transaction_id: Some("tx"),
        relative_start: Some(T0),
        local: Limit::new(32.0, 3),
    };
    // Mid-morning of the third day: the recurrences are in their second occurrence.
    let from = T0 + 2 * 86_400_000 + 10 * 3_600_000 + 123_000;
    let c = composite(&profiles, &scope, from);
    for p in &c {
        let exact = schedule::evse_limit(&profiles, &scope, from + p.start_s * 1000, V).limit;
        assert!(schedule::same(p.limit, exact), "{p:?} vs {exact:?}");
    }
    let mut per_composite_us: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(composite(black_box(&profiles), &scope, black_box(from)));
            }
            started.elapsed().as_secs_f64() * 1e6 / iterations as f64
        })
        .collect();
    per_composite_us.sort_by(f64::total_cmp);
    let median = per_composite_us[per_composite_us.len() / 2];
    println!(
        "composite schedule, 24 h, 3 stack levels x 48 periods + a 48-period station maximum: {} periods out",
        c.len()
    );
    println!(
        "{}: median {median:.1} us per EVSE (min {:.1}, max {:.1}; {rounds} rounds of {iterations}){}",
        std::env::consts::ARCH,
        per_composite_us[0],
        per_composite_us[per_composite_us.len() - 1],
        if quick { " [quick run]" } else { "" }
    );
}
