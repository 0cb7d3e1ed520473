//! Smart Charging (1.6 sections 3.13, 5.5, 5.7, 5.16) on the 2.0.1 smart-charging block.

use super::{Connector, Inbound, Lookup, answer, call, connector, copy, status_only};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v16::Action;
use crate::ocpp::v201;
use serde_json::{Value, json};

/// The 2.0.1 ChargingScheduleType's maxItems of chargingSchedulePeriod.
const MAX_PERIODS: usize = 1024;

pub(super) fn request(
    action: Action,
    payload: &Value,
    lk: &Lookup,
) -> Option<Result<Inbound, CallError>> {
    let evse = |key: &str| connector(payload[key].as_i64().unwrap_or(-1), lk);
    match action {
        Action::SetChargingProfile => {
            let rejected = || answer(json!({"status": "Rejected"}));
            let p = &payload["csChargingProfiles"];
            let at = match evse("connectorId") {
                Connector::Station => 0,
                Connector::Evse(n) => n,
                // K01.FR.28: UnknownEvse.
                Connector::Unknown => return rejected(),
            };
            let purpose = match p["chargingProfilePurpose"].as_str() {
                // 1.6 3.13.1: the station's limit, on connector 0 only.
                Some("ChargePointMaxProfile") if at != 0 => return rejected(),
                Some("ChargePointMaxProfile") => "ChargingStationMaxProfile",
                Some(other) => other,
                None => return rejected(),
            };
            let Some(mut v) = charging_profile(p, purpose, lk) else {
                return rejected();
            };
            // 7.8: transactionId only matters for a TxProfile. The CSMS's integer is ours
            // only once StartTransaction.conf gave it; otherwise no transaction has it
            // (K01.FR.09: TxNotFound). Without one it is for the transaction on the
            // connector (3.13.1), and Rejected when there is none.
            if purpose == "TxProfile" {
                let tx = match p.get("transactionId").and_then(Value::as_i64) {
                    Some(id) => (lk.local_tx)(id),
                    None => (lk.evse_tx)(at),
                };
                match tx {
                    Some(tx) => v["transactionId"] = json!(tx),
                    None => return rejected(),
                }
            }
            call(
                v201::Action::SetChargingProfile,
                json!({"evseId": at, "chargingProfile": v}),
            )
        }
        Action::ClearChargingProfile => {
            // 1.6 6.13: an id names one profile; otherwise the other fields select.
            if let Some(id) = payload.get("id") {
                return call(
                    v201::Action::ClearChargingProfile,
                    json!({ "chargingProfileId": id }),
                );
            }
            let mut criteria = json!({});
            if payload.get("connectorId").is_some() {
                match evse("connectorId") {
                    Connector::Station => criteria["evseId"] = json!(0),
                    Connector::Evse(n) => criteria["evseId"] = json!(n),
                    // No profile can be on it.
                    Connector::Unknown => return answer(json!({"status": "Unknown"})),
                }
            }
            if let Some(p) = payload.get("chargingProfilePurpose") {
                criteria["chargingProfilePurpose"] = match p.as_str() {
                    Some("ChargePointMaxProfile") => json!("ChargingStationMaxProfile"),
                    _ => p.clone(),
                };
            }
            copy(payload, "stackLevel", &mut criteria, "stackLevel");
            let v = if criteria.as_object().is_some_and(|c| c.is_empty()) {
                json!({})
            } else {
                json!({ "chargingProfileCriteria": criteria })
            };
            call(v201::Action::ClearChargingProfile, v)
        }
        Action::GetCompositeSchedule => {
            let at = match evse("connectorId") {
                Connector::Station => 0,
                Connector::Evse(n) => n,
                // K08.FR.05
                Connector::Unknown => return answer(json!({"status": "Rejected"})),
            };
            let mut v = json!({"evseId": at, "duration": payload["duration"]});
            copy(payload, "chargingRateUnit", &mut v, "chargingRateUnit");
            call(v201::Action::GetCompositeSchedule, v)
        }
        _ => None,
    }
}

/// A 1.6 ChargingProfile as the 2.0.1 one with `purpose` (its transactionId left to the
/// caller); `None` when 2.0.1 cannot hold it.
pub(in crate::ocpp::v16) fn charging_profile(
    p: &Value,
    purpose: &str,
    _lk: &Lookup,
) -> Option<Value> {
    let schedule = &p["chargingSchedule"];
    let periods = schedule["chargingSchedulePeriod"]
        .as_array()
        .map_or(0, Vec::len);
    // 2.0.1 wants 1..=1024 periods; the block refuses what does not start at 0.
    if periods == 0 || periods > MAX_PERIODS {
        return None;
    }
    // One schedule per profile: it takes the profile's id.
    let mut s = json!({
        "id": p["chargingProfileId"],
        "chargingRateUnit": schedule["chargingRateUnit"],
        "chargingSchedulePeriod": schedule["chargingSchedulePeriod"],
    });
    for key in ["startSchedule", "duration", "minChargingRate"] {
        copy(schedule, key, &mut s, key);
    }
    let mut v = json!({
        "id": p["chargingProfileId"],
        "stackLevel": p["stackLevel"],
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": p["chargingProfileKind"],
        "chargingSchedule": [s],
    });
    for key in ["recurrencyKind", "validFrom", "validTo"] {
        copy(p, key, &mut v, key);
    }
    Some(v)
}

pub(super) fn response(action: Action, request: &Value, answer: &Value) -> Option<Value> {
    match action {
        // Accepted and Rejected spelled alike (NotSupported: the block answers a CALLERROR
        // NotSupported while smart charging is off); ClearChargingProfile's Accepted/Unknown.
        Action::SetChargingProfile | Action::ClearChargingProfile => Some(status_only(answer)),
        Action::GetCompositeSchedule => Some(composite(request, answer)),
        _ => None,
    }
}

/// 2.0.1 GetCompositeScheduleResponse → 1.6 GetCompositeSchedule.conf (6.22).
fn composite(request: &Value, answer: &Value) -> Value {
    let Some(s) = answer
        .get("schedule")
        .filter(|_| answer["status"] == "Accepted")
    else {
        return json!({"status": "Rejected"});
    };
    // 1.6 limits are multiples of 0.1 (7.14).
    let tenth = |v: &Value| json!((v.as_f64().unwrap_or(0.0) * 10.0).round() / 10.0);
    let periods: Vec<Value> = s["chargingSchedulePeriod"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let mut q =
                        json!({"startPeriod": p["startPeriod"], "limit": tenth(&p["limit"])});
                    copy(p, "numberPhases", &mut q, "numberPhases");
                    q
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "status": "Accepted",
        "connectorId": request["connectorId"],
        "scheduleStart": s["scheduleStart"],
        "chargingSchedule": {
            "duration": s["duration"],
            "startSchedule": s["scheduleStart"],
            "chargingRateUnit": s["chargingRateUnit"],
            "chargingSchedulePeriod": periods,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{answered, call, response, statuses_pass};
    use super::*;
    use v201::Action as A;

    fn profile(purpose: &str) -> Value {
        json!({
            "chargingProfileId": 8,
            "stackLevel": 1,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "validFrom": "2026-12-06T00:00:00Z",
            "validTo": "2026-12-07T00:00:00Z",
            "chargingSchedule": {
                "duration": 3600,
                "startSchedule": "2026-12-06T20:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                    {"startPeriod": 1800, "limit": 10.5},
                ],
                "minChargingRate": 6.0,
            },
        })
    }

    fn set(connector: i64, p: Value) -> Value {
        json!({"connectorId": connector, "csChargingProfiles": p})
    }

    #[test]
    fn tx_default_profile() {
        let v = call(
            Action::SetChargingProfile,
            set(1, profile("TxDefaultProfile")),
            A::SetChargingProfile,
        );
        assert_eq!(
            v,
            json!({
                "evseId": 1,
                "chargingProfile": {
                    "id": 8,
                    "stackLevel": 1,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "validFrom": "2026-12-06T00:00:00Z",
                    "validTo": "2026-12-07T00:00:00Z",
                    "chargingSchedule": [{
                        "id": 8,
                        "duration": 3600,
                        "startSchedule": "2026-12-06T20:00:00Z",
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                            {"startPeriod": 1800, "limit": 10.5},
                        ],
                        "minChargingRate": 6.0,
                    }],
                },
            })
        );
        // On the whole station too.
        let v = call(
            Action::SetChargingProfile,
            set(0, profile("TxDefaultProfile")),
            A::SetChargingProfile,
        );
        assert_eq!(v["evseId"], 0);
    }

    #[test]
    fn recurring_profile_keeps_its_kind() {
        let mut p = profile("TxDefaultProfile");
        p["chargingProfileKind"] = json!("Recurring");
        p["recurrencyKind"] = json!("Weekly");
        p["chargingSchedule"]["chargingRateUnit"] = json!("W");
        let v = call(Action::SetChargingProfile, set(2, p), A::SetChargingProfile);
        let cp = &v["chargingProfile"];
        assert_eq!(
            (&cp["chargingProfileKind"], &cp["recurrencyKind"]),
            (&json!("Recurring"), &json!("Weekly"))
        );
        assert_eq!(cp["chargingSchedule"][0]["chargingRateUnit"], "W");
    }

    #[test]
    fn charge_point_max_profile_only_on_connector_zero() {
        let v = call(
            Action::SetChargingProfile,
            set(0, profile("ChargePointMaxProfile")),
            A::SetChargingProfile,
        );
        assert_eq!(
            v["chargingProfile"]["chargingProfilePurpose"],
            "ChargingStationMaxProfile"
        );
        assert_eq!(v["evseId"], 0);
        assert_eq!(
            answered(
                Action::SetChargingProfile,
                set(1, profile("ChargePointMaxProfile"))
            ),
            json!({"status": "Rejected"})
        );
    }

    #[test]
    fn tx_profile_transaction_ids() {
        let mut p = profile("TxProfile");
        p["transactionId"] = json!(42);
        let v = call(
            Action::SetChargingProfile,
            set(1, p.clone()),
            A::SetChargingProfile,
        );
        assert_eq!(v["chargingProfile"]["transactionId"], "tx-a");
        // A transactionId we never got from StartTransaction.conf.
        p["transactionId"] = json!(43);
        assert_eq!(
            answered(Action::SetChargingProfile, set(1, p)),
            json!({"status": "Rejected"})
        );
        // Without one: the transaction on the connector (3.13.1), Rejected when none runs
        // there (the test lookup has none on connector 1).
        assert_eq!(
            answered(Action::SetChargingProfile, set(1, profile("TxProfile"))),
            json!({"status": "Rejected"})
        );
        // Not a TxProfile: the transactionId means nothing (7.8).
        let mut p = profile("TxDefaultProfile");
        p["transactionId"] = json!(43);
        let v = call(Action::SetChargingProfile, set(1, p), A::SetChargingProfile);
        assert!(v["chargingProfile"].get("transactionId").is_none());
    }

    #[test]
    fn set_charging_profile_refusals_and_answers() {
        for c in [3, -1] {
            assert_eq!(
                answered(
                    Action::SetChargingProfile,
                    set(c, profile("TxDefaultProfile"))
                ),
                json!({"status": "Rejected"})
            );
        }
        let mut p = profile("TxDefaultProfile");
        p["chargingSchedule"]["chargingSchedulePeriod"] = json!([]);
        assert_eq!(
            answered(Action::SetChargingProfile, set(1, p)),
            json!({"status": "Rejected"})
        );
        let req = set(1, profile("TxDefaultProfile"));
        statuses_pass(
            Action::SetChargingProfile,
            &req,
            A::SetChargingProfile,
            &["Accepted", "Rejected"],
        );
    }

    #[test]
    fn clear_charging_profile() {
        let by_id = call(
            Action::ClearChargingProfile,
            json!({"id": 8, "connectorId": 1, "stackLevel": 2}),
            A::ClearChargingProfile,
        );
        assert_eq!(by_id, json!({"chargingProfileId": 8}));
        let all = call(
            Action::ClearChargingProfile,
            json!({}),
            A::ClearChargingProfile,
        );
        assert_eq!(all, json!({}));
        let v = call(
            Action::ClearChargingProfile,
            json!({"connectorId": 0, "chargingProfilePurpose": "ChargePointMaxProfile", "stackLevel": 0}),
            A::ClearChargingProfile,
        );
        assert_eq!(
            v,
            json!({"chargingProfileCriteria": {
                "evseId": 0,
                "chargingProfilePurpose": "ChargingStationMaxProfile",
                "stackLevel": 0,
            }})
        );
        let v = call(
            Action::ClearChargingProfile,
            json!({"connectorId": 2, "chargingProfilePurpose": "TxProfile"}),
            A::ClearChargingProfile,
        );
        assert_eq!(
            v,
            json!({"chargingProfileCriteria": {"evseId": 2, "chargingProfilePurpose": "TxProfile"}})
        );
        assert_eq!(
            answered(Action::ClearChargingProfile, json!({"connectorId": 5})),
            json!({"status": "Unknown"})
        );
        for status in ["Accepted", "Unknown"] {
            let out = response(
                Action::ClearChargingProfile,
                &json!({}),
                A::ClearChargingProfile,
                json!({ "status": status }),
            );
            assert_eq!(out, json!({ "status": status }));
        }
    }

    #[test]
    fn get_composite_schedule() {
        let req = json!({"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"});
        let v = call(
            Action::GetCompositeSchedule,
            req.clone(),
            A::GetCompositeSchedule,
        );
        assert_eq!(
            v,
            json!({"evseId": 1, "duration": 3600, "chargingRateUnit": "W"})
        );
        let v = call(
            Action::GetCompositeSchedule,
            json!({"connectorId": 0, "duration": 60}),
            A::GetCompositeSchedule,
        );
        assert_eq!(v, json!({"evseId": 0, "duration": 60}));
        assert_eq!(
            answered(
                Action::GetCompositeSchedule,
                json!({"connectorId": 9, "duration": 60})
            ),
            json!({"status": "Rejected"})
        );
        let out = response(
            Action::GetCompositeSchedule,
            &req,
            A::GetCompositeSchedule,
            json!({"status": "Accepted", "schedule": {
                "evseId": 1,
                "duration": 3600,
                "scheduleStart": "2026-12-06T21:00:00.000Z",
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 11040.0, "numberPhases": 3},
                    {"startPeriod": 600, "limit": 7359.96, "numberPhases": 1},
                ],
            }}),
        );
        assert_eq!(
            out,
            json!({
                "status": "Accepted",
                "connectorId": 1,
                "scheduleStart": "2026-12-06T21:00:00.000Z",
                "chargingSchedule": {
                    "duration": 3600,
                    "startSchedule": "2026-12-06T21:00:00.000Z",
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 11040.0, "numberPhases": 3},
                        {"startPeriod": 600, "limit": 7360.0, "numberPhases": 1},
                    ],
                },
            })
        );
        let out = response(
            Action::GetCompositeSchedule,
            &req,
            A::GetCompositeSchedule,
            json!({"status": "Rejected", "statusInfo": {"reasonCode": "UnsupportedRateUnit"}}),
        );
        assert_eq!(out, json!({"status": "Rejected"}));
    }
}
