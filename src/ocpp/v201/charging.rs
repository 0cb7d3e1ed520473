//! The 2.0.1 spelling of smart charging (K01-K10): ChargingProfileType to and from the
//! protocol-neutral [`Profile`], and the calls SetChargingProfile, ClearChargingProfile,
//! GetChargingProfiles (+ ReportChargingProfiles) and GetCompositeSchedule on the
//! smart-charging block.

use crate::ocpp::blocks::smart_charging::{
    ProfileFilter, Rejection, SmartCharging, reject, unit_name,
};
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::Ctx;
use crate::ocpp::devmodel::Var;
use crate::ocpp::model::schedule::{
    Kind, LimitSource, Period, Profile, Purpose, RateUnit, Schedule,
};
use crate::ocpp::rpc::{CallError, CallErrorCode};
use crate::ocpp::v201::{self, Action};
use tracing::info;

fn purpose(p: v201::ChargingProfilePurposeEnum) -> Purpose {
    use v201::ChargingProfilePurposeEnum as P;
    match p {
        P::ChargingStationExternalConstraints => Purpose::External,
        P::ChargingStationMaxProfile => Purpose::StationMax,
        P::TxDefaultProfile => Purpose::TxDefault,
        P::TxProfile => Purpose::Tx,
    }
}

fn purpose_v201(p: Purpose) -> v201::ChargingProfilePurposeEnum {
    use v201::ChargingProfilePurposeEnum as P;
    match p {
        Purpose::External => P::ChargingStationExternalConstraints,
        Purpose::StationMax => P::ChargingStationMaxProfile,
        Purpose::TxDefault => P::TxDefaultProfile,
        Purpose::Tx => P::TxProfile,
    }
}

fn unit(u: v201::ChargingRateUnitEnum) -> RateUnit {
    match u {
        v201::ChargingRateUnitEnum::A => RateUnit::A,
        v201::ChargingRateUnitEnum::W => RateUnit::W,
    }
}

fn unit_v201(u: RateUnit) -> v201::ChargingRateUnitEnum {
    match u {
        RateUnit::A => v201::ChargingRateUnitEnum::A,
        RateUnit::W => v201::ChargingRateUnitEnum::W,
    }
}

fn source(s: v201::ChargingLimitSourceEnum) -> LimitSource {
    use v201::ChargingLimitSourceEnum as S;
    match s {
        S::Ems => LimitSource::Ems,
        S::Other => LimitSource::Other,
        S::So => LimitSource::So,
        S::Cso => LimitSource::Cso,
    }
}

fn source_v201(s: LimitSource) -> v201::ChargingLimitSourceEnum {
    use v201::ChargingLimitSourceEnum as S;
    match s {
        LimitSource::Ems => S::Ems,
        LimitSource::Other => S::Other,
        LimitSource::So => S::So,
        LimitSource::Cso => S::Cso,
    }
}

fn time(field: &str, value: Option<&String>) -> Result<Option<i64>, Rejection> {
    match value {
        None => Ok(None),
        Some(s) => match UtcTime::parse_rfc3339(s) {
            Some(t) => Ok(Some(t.unix_millis())),
            None => reject(
                "InvalidProfile",
                format!("{field} {s:?} is not a date-time"),
            ),
        },
    }
}

/// A ChargingProfileType from the CSMS for `evse`, as the block's [`Profile`].
pub fn profile(evse: u32, p: &v201::ChargingProfile) -> Result<Profile, Rejection> {
    // K01.FR.34: one schedule without ISO 15118.
    let [s] = p.charging_schedule.as_slice() else {
        return reject(
            "InvalidSchedule",
            "exactly one chargingSchedule is supported (no ISO 15118)",
        );
    };
    let kind = match (p.charging_profile_kind, p.recurrency_kind) {
        (v201::ChargingProfileKindEnum::Absolute, _) => Kind::Absolute,
        (v201::ChargingProfileKindEnum::Relative, _) => Kind::Relative,
        (v201::ChargingProfileKindEnum::Recurring, Some(v201::RecurrencyKindEnum::Daily)) => {
            Kind::Daily
        }
        (v201::ChargingProfileKindEnum::Recurring, Some(v201::RecurrencyKindEnum::Weekly)) => {
            Kind::Weekly
        }
        (v201::ChargingProfileKindEnum::Recurring, None) => {
            return reject("InvalidProfile", "a Recurring profile needs recurrencyKind");
        }
    };
    let stack_level = u32::try_from(p.stack_level)
        .or_else(|_| reject("InvalidStackLevel", "stackLevel is negative"))?;
    Ok(Profile {
        id: p.id,
        evse,
        stack_level,
        purpose: purpose(p.charging_profile_purpose),
        kind,
        valid_from_ms: time("validFrom", p.valid_from.as_ref())?,
        valid_to_ms: time("validTo", p.valid_to.as_ref())?,
        schedule: Schedule {
            id: s.id,
            start_ms: time("startSchedule", s.start_schedule.as_ref())?,
            duration_s: s.duration,
            unit: unit(s.charging_rate_unit),
            periods: s
                .charging_schedule_period
                .iter()
                .map(|x| {
                    Ok(Period {
                        start_s: x.start_period,
                        limit: x.limit,
                        phases: phases(x.number_phases)?,
                        phase_to_use: phases(x.phase_to_use)?,
                    })
                })
                .collect::<Result<_, Rejection>>()?,
            min_rate: s.min_charging_rate,
        },
        transaction_id: p.transaction_id.clone(),
        source: LimitSource::Cso,
    })
}

fn phases(n: Option<i64>) -> Result<Option<u8>, Rejection> {
    match n {
        None => Ok(None),
        Some(n @ 1..=3) => Ok(Some(n as u8)),
        Some(n) => reject("InvalidSchedule", format!("{n} phases")),
    }
}

/// The block's [`Profile`] as a ChargingProfileType.
pub fn profile_v201(p: &Profile) -> v201::ChargingProfile {
    let (kind, recurrency) = match p.kind {
        Kind::Absolute => (v201::ChargingProfileKindEnum::Absolute, None),
        Kind::Relative => (v201::ChargingProfileKindEnum::Relative, None),
        Kind::Daily => (
            v201::ChargingProfileKindEnum::Recurring,
            Some(v201::RecurrencyKindEnum::Daily),
        ),
        Kind::Weekly => (
            v201::ChargingProfileKindEnum::Recurring,
            Some(v201::RecurrencyKindEnum::Weekly),
        ),
    };
    let rfc3339 = |ms: i64| UtcTime::from_unix_millis(ms).to_rfc3339();
    let s = &p.schedule;
    v201::ChargingProfile {
        custom_data: None,
        id: p.id,
        stack_level: i64::from(p.stack_level),
        charging_profile_purpose: purpose_v201(p.purpose),
        charging_profile_kind: kind,
        recurrency_kind: recurrency,
        valid_from: p.valid_from_ms.map(rfc3339),
        valid_to: p.valid_to_ms.map(rfc3339),
        charging_schedule: vec![v201::ChargingSchedule {
            custom_data: None,
            id: s.id,
            start_schedule: s.start_ms.map(rfc3339),
            duration: s.duration_s,
            charging_rate_unit: unit_v201(s.unit),
            charging_schedule_period: s
                .periods
                .iter()
                .map(|x| v201::ChargingSchedulePeriod {
                    custom_data: None,
                    start_period: x.start_s,
                    limit: x.limit,
                    number_phases: x.phases.map(i64::from),
                    phase_to_use: x.phase_to_use.map(i64::from),
                })
                .collect(),
            min_charging_rate: s.min_rate,
            sales_tariff: None,
        }],
        transaction_id: p.transaction_id.clone(),
    }
}

fn status_info(r: &Rejection) -> v201::StatusInfo {
    v201::StatusInfo {
        custom_data: None,
        reason_code: r.reason_code.into(),
        additional_info: Some(r.info.chars().take(512).collect()),
    }
}

/// K01.FR.29: with SmartChargingCtrlr.Enabled false the station does not do smart charging.
pub fn check_enabled(cx: &Ctx) -> Result<(), CallError> {
    if cx.vars.bool(Var::SmartChargingEnabled) {
        Ok(())
    } else {
        Err(CallError::new(
            CallErrorCode::NotSupported,
            "smart charging is disabled (SmartChargingCtrlr.Enabled)",
        ))
    }
}

/// K01: SetChargingProfile.
pub fn set_charging_profile(
    block: &mut SmartCharging,
    cx: &mut Ctx,
    now: Instant,
    request: v201::SetChargingProfileRequest,
) -> Result<v201::SetChargingProfileResponse, CallError> {
    check_enabled(cx)?;
    let outcome = u32::try_from(request.evse_id)
        .or_else(|_| reject("UnknownEvse", "a negative evseId"))
        .and_then(|evse| profile(evse, &request.charging_profile))
        .and_then(|p| block.set_profile(cx, now, p));
    Ok(match outcome {
        Ok(()) => v201::SetChargingProfileResponse {
            custom_data: None,
            status: v201::ChargingProfileStatusEnum::Accepted,
            status_info: None,
        },
        Err(r) => {
            info!(
                profile = request.charging_profile.id,
                reason = r.reason_code,
                info = r.info,
                "SetChargingProfile rejected"
            );
            v201::SetChargingProfileResponse {
                custom_data: None,
                status: v201::ChargingProfileStatusEnum::Rejected,
                status_info: Some(status_info(&r)),
            }
        }
    })
}

/// K10: ClearChargingProfile.
pub fn clear_charging_profile(
    block: &mut SmartCharging,
    cx: &mut Ctx,
    now: Instant,
    request: v201::ClearChargingProfileRequest,
) -> Result<v201::ClearChargingProfileResponse, CallError> {
    check_enabled(cx)?;
    let criteria = request.charging_profile_criteria.unwrap_or_default();
    let filter = ProfileFilter {
        ids: request.charging_profile_id.map(|id| vec![id]),
        evse: criteria.evse_id.map(v201::id32),
        purpose: criteria.charging_profile_purpose.map(purpose),
        stack_level: criteria
            .stack_level
            .map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
        sources: None,
    };
    let status = if block.clear(cx, now, &filter) {
        v201::ClearChargingProfileStatusEnum::Accepted
    } else {
        v201::ClearChargingProfileStatusEnum::Unknown
    };
    Ok(v201::ClearChargingProfileResponse {
        custom_data: None,
        status,
        status_info: None,
    })
}

/// K09: GetChargingProfiles, answered now and followed by ReportChargingProfiles messages,
/// one per EVSE and limit source (the message carries one of each), `tbc` on all but the
/// last (K09.FR.02).
pub fn get_charging_profiles(
    block: &SmartCharging,
    cx: &mut Ctx,
    request: v201::GetChargingProfilesRequest,
) -> Result<v201::GetChargingProfilesResponse, CallError> {
    check_enabled(cx)?;
    let c = &request.charging_profile;
    let filter = ProfileFilter {
        ids: c.charging_profile_id.clone(),
        evse: request.evse_id.map(v201::id32),
        purpose: c.charging_profile_purpose.map(purpose),
        stack_level: c.stack_level.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
        sources: c
            .charging_limit_source
            .as_ref()
            .map(|s| s.iter().copied().map(source).collect()),
    };
    let mut found = block.matching(&filter);
    found.sort_by_key(|p| (p.evse, p.source as u8, p.id));
    let mut groups: Vec<Vec<&Profile>> = Vec::new();
    for p in found {
        match groups.last_mut() {
            Some(g) if g[0].evse == p.evse && g[0].source == p.source => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    let status = if groups.is_empty() {
        v201::GetChargingProfileStatusEnum::NoProfiles
    } else {
        v201::GetChargingProfileStatusEnum::Accepted
    };
    let last = groups.len().saturating_sub(1);
    for (n, group) in groups.iter().enumerate() {
        let report = v201::ReportChargingProfilesRequest {
            custom_data: None,
            request_id: request.request_id,
            charging_limit_source: source_v201(group[0].source),
            charging_profile: group.iter().map(|p| profile_v201(p)).collect(),
            tbc: (n < last).then_some(true),
            evse_id: i64::from(group[0].evse),
        };
        cx.enqueue_triggered_report(Action::ReportChargingProfiles, v201::to_payload(&report));
    }
    Ok(v201::GetChargingProfilesResponse {
        custom_data: None,
        status,
        status_info: None,
    })
}

/// K08: GetCompositeSchedule.
pub fn get_composite_schedule(
    block: &SmartCharging,
    cx: &mut Ctx,
    now: Instant,
    request: v201::GetCompositeScheduleRequest,
) -> Result<v201::GetCompositeScheduleResponse, CallError> {
    check_enabled(cx)?;
    let rejected = |code: &'static str, info: &str| {
        Ok(v201::GetCompositeScheduleResponse {
            custom_data: None,
            status: v201::GenericStatusEnum::Rejected,
            status_info: Some(status_info(&Rejection {
                reason_code: code,
                info: info.into(),
            })),
            schedule: None,
        })
    };
    // K08.FR.07; without a unit asked for, amps when the station may use them.
    let wanted = match request.charging_rate_unit.map(unit) {
        Some(u) => u,
        None if cx.vars.contains(Var::ChargingRateUnits, "A") => RateUnit::A,
        None => RateUnit::W,
    };
    if !cx.vars.contains(Var::ChargingRateUnits, unit_name(wanted)) {
        return rejected("UnsupportedRateUnit", "not in SmartChargingCtrlr.RateUnit");
    }
    let Ok(evse) = u32::try_from(request.evse_id) else {
        return rejected("UnknownEvse", "a negative evseId");
    };
    // K08.FR.05
    let Some(c) = block.composite(cx, now, evse, request.duration, wanted) else {
        return rejected("UnknownEvse", "no such EVSE");
    };
    let v = block.voltage();
    Ok(v201::GetCompositeScheduleResponse {
        custom_data: None,
        status: v201::GenericStatusEnum::Accepted,
        status_info: None,
        schedule: Some(v201::CompositeSchedule {
            custom_data: None,
            charging_schedule_period: c
                .periods
                .iter()
                .map(|p| v201::ChargingSchedulePeriod {
                    custom_data: None,
                    start_period: p.start_s,
                    // One decimal, as the schema's description allows.
                    limit: (p.limit.value(c.unit, v) * 10.0).floor() / 10.0,
                    number_phases: Some(i64::from(p.limit.phases)),
                    phase_to_use: None,
                })
                .collect(),
            evse_id: i64::from(c.evse),
            duration: c.duration_s,
            schedule_start: UtcTime::from_unix_millis(c.start_ms).to_rfc3339(),
            charging_rate_unit: unit_v201(c.unit),
        }),
    })
}

/// K05: the TxProfile of a RequestStartTransaction, checked (K05.FR.05: an invalid one makes
/// the answer Rejected, see [`remote_start_rejected`]); None without one, or while smart
/// charging is off (K05.FR.04: ignored).
pub fn remote_start_profile(
    block: &SmartCharging,
    cx: &Ctx,
    request: &v201::RequestStartTransactionRequest,
) -> Result<Option<Profile>, Rejection> {
    let Some(p) = &request.charging_profile else {
        return Ok(None);
    };
    if !cx.vars.bool(Var::SmartChargingEnabled) {
        return Ok(None);
    }
    // Without an evseId the station picks the EVSE later; the checks use the first one.
    let evse = request
        .evse_id
        .map(v201::id32)
        .or_else(|| cx.model.evses.first().map(|e| e.id))
        .unwrap_or(0);
    profile(evse, p)
        .and_then(|profile| block.check_remote_start(cx, &profile).map(|()| profile))
        .map(Some)
}

/// K05.FR.05: the answer to a RequestStartTransaction whose profile was refused.
pub fn remote_start_rejected(r: &Rejection) -> v201::RequestStartTransactionResponse {
    info!(
        reason = r.reason_code,
        info = r.info,
        "RequestStartTransaction rejected: its charging profile"
    );
    v201::RequestStartTransactionResponse {
        custom_data: None,
        status: v201::RequestStartStopStatusEnum::Rejected,
        status_info: Some(status_info(r)),
        transaction_id: None,
    }
}

/// K12/K13: NotifyChargingLimit for an external limit of an EVSE (0: the station, whose
/// evseId is left out as the schema asks for one above 0), with its schedule when
/// NotifyChargingLimitWithSchedules; ClearedChargingLimit when there is none any more.
pub fn external_limit_report(
    evse: u32,
    profile: Option<&Profile>,
    with_schedule: bool,
) -> (Action, serde_json::Value) {
    let mut payload = match profile {
        Some(p) => {
            let mut payload = serde_json::json!({
                "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": false},
            });
            if with_schedule {
                let schedule = profile_v201(p).charging_schedule;
                payload["chargingSchedule"] = v201::to_payload(&schedule);
            }
            payload
        }
        None => serde_json::json!({"chargingLimitSource": "EMS"}),
    };
    if evse > 0 {
        payload["evseId"] = serde_json::json!(evse);
    }
    let action = if profile.is_some() {
        Action::NotifyChargingLimit
    } else {
        Action::ClearedChargingLimit
    };
    (action, payload)
}
