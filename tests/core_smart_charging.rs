//! Smart charging (K01-K10) in the core, on the virtual clock against the scripted CSMS: the
//! part 6 TC_K cases that need no ISO 15118, the limits given to the hardware (and followed by
//! the simulated meters), sharing a station limit, durability across a restart.

use ocpp_agent::ocpp::blocks::smart_charging::ChargingHardware;
use ocpp_agent::ocpp::clock::UtcTime;
use ocpp_agent::ocpp::model::schedule::Limit;
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::station::{Input, StationConfig};
use ocpp_agent::ocpp::testkit::{Harness, config_with, default_config};
use serde_json::{Value, json};

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn now_rfc3339(h: &Harness, plus_s: i64) -> String {
    UtcTime::from_unix_millis(h.station.utc(h.now).unix_millis() + plus_s * 1000).to_rfc3339()
}

/// An Absolute profile starting now (amps, 3 phases).
fn absolute(h: &Harness, id: i64, purpose: &str, level: i64, periods: &[(i64, f64)]) -> Value {
    json!({
        "id": id,
        "stackLevel": level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [{
            "id": id,
            "startSchedule": now_rfc3339(h, 0),
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": periods
                .iter()
                .map(|(s, l)| json!({"startPeriod": s, "limit": l}))
                .collect::<Vec<_>>(),
        }],
    })
}

fn set(h: &mut Harness, evse: i64, profile: Value) -> Value {
    result(h.call(
        "SetChargingProfile",
        json!({"evseId": evse, "chargingProfile": profile}),
    ))
}

/// `set` of an `absolute` profile.
fn set_abs(
    h: &mut Harness,
    evse: i64,
    id: i64,
    purpose: &str,
    level: i64,
    periods: &[(i64, f64)],
) -> Value {
    let profile = absolute(h, id, purpose, level, periods);
    set(h, evse, profile)
}

fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap()
}

fn reason(v: &Value) -> &str {
    v["statusInfo"]["reasonCode"].as_str().unwrap_or("")
}

/// GetChargingProfiles, then the ReportChargingProfiles it caused: (status, reports).
fn get_profiles(
    h: &mut Harness,
    request_id: i64,
    evse: Option<i64>,
    criteria: Value,
) -> (String, Vec<Value>) {
    let before = h.csms.of("ReportChargingProfiles").len();
    let mut request = json!({"requestId": request_id, "chargingProfile": criteria});
    if let Some(e) = evse {
        request["evseId"] = json!(e);
    }
    let r = result(h.call("GetChargingProfiles", request));
    h.advance_secs(1);
    let reports = h.csms.of("ReportChargingProfiles")[before..]
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    (status(&r).to_owned(), reports)
}

fn composite(h: &mut Harness, evse: i64, duration: i64) -> Value {
    result(h.call(
        "GetCompositeSchedule",
        json!({"evseId": evse, "duration": duration, "chargingRateUnit": "A"}),
    ))
}

/// (startPeriod, limit) of a composite schedule.
fn periods(r: &Value) -> Vec<(i64, f64)> {
    r["schedule"]["chargingSchedulePeriod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["startPeriod"].as_i64().unwrap(),
                p["limit"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// A transaction on EVSE 1: plugged in and authorized.
fn start_transaction(h: &mut Harness) -> String {
    h.plug(1, 1, true);
    h.token(1, "TOKEN1");
    h.advance_secs(1);
    h.events()
        .iter()
        .rev()
        .find_map(|e| e["transactionInfo"]["transactionId"].as_str())
        .unwrap()
        .to_owned()
}

#[test]
fn tc_k_01_a_tx_default_profile_for_one_evse_is_installed_and_reported() {
    let mut h = Harness::new(default_config());
    let profile = absolute(&h, 11, "TxDefaultProfile", 0, &[(0, 16.0)]);
    assert_eq!(status(&set(&mut h, 1, profile.clone())), "Accepted");
    let (s, reports) = get_profiles(&mut h, 7, Some(1), json!({"chargingProfileId": [11]}));
    assert_eq!(s, "Accepted");
    assert_eq!(reports.len(), 1);
    // K09.FR.01: the request's id; the same profile as sent.
    assert_eq!(reports[0]["requestId"], 7);
    assert_eq!(reports[0]["evseId"], 1);
    assert_eq!(reports[0]["chargingLimitSource"], "CSO");
    assert!(reports[0].get("tbc").is_none());
    assert_eq!(reports[0]["chargingProfile"][0], profile);
    // The hardware got the limit.
    assert_eq!(h.charging_limit(1), Some(Limit::new(16.0, 3)));
}

#[test]
fn tc_k_02_11_16_60_a_tx_profile_needs_the_transaction_on_its_evse_and_ends_with_it() {
    let mut h = Harness::new(default_config());
    let mut profile = absolute(&h, 5, "TxProfile", 0, &[(0, 10.0)]);
    profile["transactionId"] = json!("no-such-transaction");
    // TC_K_02: no transaction on the EVSE (K01.FR.09).
    let r = set(&mut h, 1, profile.clone());
    assert_eq!((status(&r), reason(&r)), ("Rejected", "TxNotFound"));
    let tx = start_transaction(&mut h);
    // TC_K_16: an unknown transaction id (K01.FR.33).
    let r = set(&mut h, 1, profile.clone());
    assert_eq!((status(&r), reason(&r)), ("Rejected", "TxNotFound"));
    // TC_K_11, K01.FR.16: never on EVSE 0.
    profile["transactionId"] = json!(tx);
    let r = set(&mut h, 0, profile.clone());
    assert_eq!(status(&r), "Rejected");
    // TC_K_60: the running transaction's id.
    assert_eq!(status(&set(&mut h, 1, profile)), "Accepted");
    assert_eq!(h.charging_limit(1), Some(Limit::new(10.0, 3)));
    let (s, reports) = get_profiles(
        &mut h,
        1,
        None,
        json!({"chargingProfilePurpose": "TxProfile"}),
    );
    assert_eq!(s, "Accepted");
    assert_eq!(
        reports[0]["chargingProfile"][0]["transactionId"],
        tx.as_str()
    );
    // The limit changed during the transaction: an Updated with ChargingRateChanged.
    assert!(
        h.events()
            .iter()
            .any(|e| e["triggerReason"] == "ChargingRateChanged"
                && e["transactionInfo"]["transactionId"] == tx.as_str()),
        "{:?}",
        h.events()
    );
    // K02.FR.05: deleted when the transaction ends; the rating applies again (K02.FR.08).
    h.plug(1, 1, false);
    h.advance_secs(1);
    let (s, _) = get_profiles(
        &mut h,
        2,
        None,
        json!({"chargingProfilePurpose": "TxProfile"}),
    );
    assert_eq!(s, "NoProfiles");
    assert_eq!(h.charging_limit(1), Some(Limit::new(32.0, 3)));
}

#[test]
fn tc_k_04_05_06_08_replace_and_clear() {
    let mut h = Harness::new(default_config());
    assert_eq!(
        status(&set_abs(&mut h, 1, 1, "TxDefaultProfile", 0, &[(0, 16.0)])),
        "Accepted"
    );
    // TC_K_04, K01.FR.05: the same id replaces.
    assert_eq!(
        status(&set_abs(&mut h, 1, 1, "TxDefaultProfile", 0, &[(0, 8.0)])),
        "Accepted"
    );
    let (_, reports) = get_profiles(&mut h, 1, None, json!({"chargingProfileId": [1]}));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["chargingProfile"].as_array().unwrap().len(), 1);
    assert_eq!(
        reports[0]["chargingProfile"][0]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"],
        8.0
    );
    assert_eq!(h.charging_limit(1), Some(Limit::new(8.0, 3)));
    // TC_K_05: clear by id.
    let r = result(h.call("ClearChargingProfile", json!({"chargingProfileId": 1})));
    assert_eq!(status(&r), "Accepted");
    assert_eq!(
        get_profiles(&mut h, 2, None, json!({"chargingProfileId": [1]})).0,
        "NoProfiles"
    );
    assert_eq!(h.charging_limit(1), Some(Limit::new(32.0, 3)));
    // TC_K_06: clear by stack level and purpose, only the matching one.
    set_abs(&mut h, 1, 2, "TxDefaultProfile", 1, &[(0, 16.0)]);
    set_abs(&mut h, 2, 3, "TxDefaultProfile", 2, &[(0, 16.0)]);
    let r = result(h.call(
        "ClearChargingProfile",
        json!({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}}),
    ));
    assert_eq!(status(&r), "Accepted");
    assert_eq!(
        get_profiles(&mut h, 3, None, json!({"chargingProfileId": [2]})).0,
        "NoProfiles"
    );
    assert_eq!(
        get_profiles(&mut h, 4, None, json!({"chargingProfileId": [3]})).0,
        "Accepted"
    );
    // TC_K_08, K10.FR.01: nothing matches.
    let r = result(h.call(
        "ClearChargingProfile",
        json!({"chargingProfileCriteria": {"chargingProfilePurpose": "ChargingStationMaxProfile", "stackLevel": 0}}),
    ));
    assert_eq!(status(&r), "Unknown");
}

#[test]
fn profiles_that_break_a_rule_are_rejected_with_a_reason() {
    let mut h = Harness::new(config_with(&[]));
    let cases: Vec<(i64, Value, &str)> = vec![
        // TC_K_14, K01.FR.28
        (
            3,
            absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 16.0)]),
            "UnknownEvse",
        ),
        // K01.FR.31
        (
            1,
            absolute(&h, 1, "TxDefaultProfile", 0, &[(10, 16.0)]),
            "InvalidSchedule",
        ),
        // K01.FR.35
        (
            1,
            absolute(
                &h,
                1,
                "TxDefaultProfile",
                0,
                &[(0, 16.0), (60, 8.0), (30, 6.0)],
            ),
            "InvalidSchedule",
        ),
        // SmartChargingCtrlr.ProfileStackLevel (8)
        (
            1,
            absolute(&h, 1, "TxDefaultProfile", 9, &[(0, 16.0)]),
            "InvalidStackLevel",
        ),
        // SmartChargingCtrlr.PeriodsPerSchedule (48)
        (
            1,
            absolute(
                &h,
                1,
                "TxDefaultProfile",
                0,
                &(0..49).map(|i| (i * 60, 16.0)).collect::<Vec<_>>(),
            ),
            "TooManyElements",
        ),
        // K01.FR.22
        (
            0,
            absolute(&h, 1, "ChargingStationExternalConstraints", 0, &[(0, 16.0)]),
            "InvalidProfile",
        ),
        // A station maximum is for EVSE 0 only.
        (
            1,
            absolute(&h, 1, "ChargingStationMaxProfile", 0, &[(0, 16.0)]),
            "InvalidProfile",
        ),
    ];
    for (evse, profile, code) in cases {
        let r = set(&mut h, evse, profile.clone());
        assert_eq!((status(&r), reason(&r)), ("Rejected", code), "{profile}");
    }
    // K01.FR.41: a Relative profile has no startSchedule.
    let mut relative = absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 16.0)]);
    relative["chargingProfileKind"] = json!("Relative");
    assert_eq!(reason(&set(&mut h, 1, relative.clone())), "InvalidSchedule");
    // K01.FR.38: a station maximum is never Relative.
    relative["chargingProfilePurpose"] = json!("ChargingStationMaxProfile");
    relative["chargingSchedule"][0]
        .as_object_mut()
        .unwrap()
        .remove("startSchedule");
    assert_eq!(reason(&set(&mut h, 0, relative)), "InvalidProfile");
    // K01.FR.48: no phase switching on this station.
    let mut phase = absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 16.0)]);
    phase["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] = json!(1);
    phase["chargingSchedule"][0]["chargingSchedulePeriod"][0]["phaseToUse"] = json!(2);
    assert_eq!(reason(&set(&mut h, 1, phase)), "InvalidSchedule");
    // K01.FR.06: the same stack level and purpose on the same EVSE under another id.
    assert_eq!(
        status(&set_abs(&mut h, 1, 1, "TxDefaultProfile", 0, &[(0, 16.0)])),
        "Accepted"
    );
    let r = set_abs(&mut h, 1, 2, "TxDefaultProfile", 0, &[(0, 10.0)]);
    assert_eq!((status(&r), reason(&r)), ("Rejected", "DuplicateProfile"));
    // K01.FR.52: a station-wide default beside an EVSE's own at the same level.
    let r = set_abs(&mut h, 0, 3, "TxDefaultProfile", 0, &[(0, 10.0)]);
    assert_eq!((status(&r), reason(&r)), ("Rejected", "DuplicateProfile"));
    // Nothing of the refused ones is installed.
    let (_, reports) = get_profiles(
        &mut h,
        9,
        None,
        json!({"chargingProfilePurpose": "TxDefaultProfile"}),
    );
    let ids: Vec<i64> = reports
        .iter()
        .flat_map(|r| r["chargingProfile"].as_array().unwrap().clone())
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1]);
}

#[test]
fn tc_k_12_42_k01_fr_26_k08_fr_07_a_rate_unit_the_station_does_not_use_is_rejected() {
    let mut h = Harness::new(config_with(&[("SmartChargingCtrlr.RateUnit", "A")]));
    let mut watts = absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 11_000.0)]);
    watts["chargingSchedule"][0]["chargingRateUnit"] = json!("W");
    let r = set(&mut h, 1, watts);
    assert_eq!(
        (status(&r), reason(&r)),
        ("Rejected", "UnsupportedRateUnit")
    );
    let r = result(h.call(
        "GetCompositeSchedule",
        json!({"evseId": 1, "duration": 60, "chargingRateUnit": "W"}),
    ));
    assert_eq!(status(&r), "Rejected");
    assert!(r.get("schedule").is_none());
}

#[test]
fn tc_k_39_47_without_profiles_the_composite_is_the_local_limit() {
    let mut h = Harness::new(default_config());
    let r = composite(&mut h, 0, 300);
    assert_eq!(status(&r), "Accepted");
    assert_eq!(r["schedule"]["evseId"], 0);
    assert_eq!(r["schedule"]["duration"], 300);
    assert_eq!(r["schedule"]["chargingRateUnit"], "A");
    // Two EVSEs of 32 A on 3 phases, no grid limit configured.
    assert_eq!(periods(&r), vec![(0, 64.0)]);
    let r = composite(&mut h, 1, 300);
    assert_eq!(periods(&r), vec![(0, 32.0)]);
    // K08.FR.05
    assert_eq!(status(&composite(&mut h, 7, 300)), "Rejected");
}

#[test]
fn tc_k_40_stacked_profiles_make_the_composite() {
    let mut h = Harness::new(default_config());
    let mut p1 = absolute(
        &h,
        1,
        "TxDefaultProfile",
        0,
        &[(0, 6.0), (100, 8.0), (200, 10.0)],
    );
    p1["validFrom"] = json!(now_rfc3339(&h, 0));
    p1["validTo"] = json!(now_rfc3339(&h, 401));
    p1["chargingSchedule"][0]["duration"] = json!(400);
    let mut p2 = absolute(&h, 2, "TxDefaultProfile", 1, &[(0, 7.0), (100, 9.0)]);
    p2["validFrom"] = json!(now_rfc3339(&h, 0));
    p2["validTo"] = json!(now_rfc3339(&h, 401));
    p2["chargingSchedule"][0]["duration"] = json!(150);
    assert_eq!(status(&set(&mut h, 1, p1)), "Accepted");
    assert_eq!(status(&set(&mut h, 1, p2)), "Accepted");
    let r = composite(&mut h, 1, 350);
    assert_eq!(status(&r), "Accepted");
    assert_eq!(r["schedule"]["duration"], 350);
    assert_eq!(
        periods(&r),
        vec![(0, 7.0), (100, 9.0), (150, 8.0), (200, 10.0)]
    );
}

#[test]
fn tc_k_41_station_maximum_default_and_tx_profile_combine() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    let mut max = absolute(&h, 1, "ChargingStationMaxProfile", 0, &[(0, 10.0)]);
    max["chargingSchedule"][0]["duration"] = json!(86_400);
    let mut default = absolute(
        &h,
        2,
        "TxDefaultProfile",
        0,
        &[(0, 6.0), (60, 10.0), (120, 8.0), (180, 15.0), (260, 8.0)],
    );
    default["chargingSchedule"][0]["duration"] = json!(300);
    let mut txp = absolute(
        &h,
        3,
        "TxProfile",
        0,
        &[(0, 8.0), (50, 11.0), (140, 16.0), (200, 6.0), (240, 12.0)],
    );
    txp["chargingSchedule"][0]["duration"] = json!(260);
    txp["transactionId"] = json!(tx);
    for (evse, p) in [(0, max), (1, default), (1, txp)] {
        assert_eq!(status(&set(&mut h, evse, p)), "Accepted");
    }
    let r = composite(&mut h, 1, 400);
    // K08.FR.04: never above any merged schedule; the TxProfile over the default (K02.FR.04),
    // the default after the TxProfile's duration (K02.FR.08), the rating after both.
    assert_eq!(
        periods(&r),
        vec![
            (0, 8.0),
            (50, 10.0),
            (200, 6.0),
            (240, 10.0),
            (260, 8.0),
            (300, 10.0)
        ]
    );
}

#[test]
fn the_limit_follows_the_schedule_over_time_and_the_meter_follows_the_limit() {
    let mut h = Harness::new(config_with(&[
        ("SampledDataCtrlr.TxUpdatedInterval", "30"),
        (
            "SampledDataCtrlr.TxUpdatedMeasurands",
            "Power.Active.Import",
        ),
    ]));
    let tx = start_transaction(&mut h);
    let profile = absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 16.0), (120, 8.0)]);
    assert_eq!(status(&set(&mut h, 1, profile)), "Accepted");
    assert_eq!(h.charging_limit(1), Some(Limit::new(16.0, 3)));
    h.advance_secs(119);
    assert_eq!(h.charging_limit(1), Some(Limit::new(16.0, 3)));
    h.advance_secs(2);
    assert_eq!(h.charging_limit(1), Some(Limit::new(8.0, 3)));
    h.advance_secs(60);
    // 8 A x 230 V x 3 phases = 5520 W in the periodic meter values.
    let power: Vec<f64> = h
        .events()
        .iter()
        .filter(|e| e["transactionInfo"]["transactionId"] == tx.as_str())
        .filter_map(|e| e["meterValue"].as_array())
        .flatten()
        .flat_map(|m| m["sampledValue"].as_array().unwrap().clone())
        .filter(|s| s["measurand"] == "Power.Active.Import")
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert!(power.contains(&11_000.0), "{power:?}");
    assert!(power.contains(&5520.0), "{power:?}");
    let changes = h
        .events()
        .iter()
        .filter(|e| e["triggerReason"] == "ChargingRateChanged")
        .count();
    assert_eq!(changes, 2, "16 A, then 8 A");
}

#[test]
fn a_change_below_limit_change_significance_is_applied_but_not_reported() {
    let mut h = Harness::new(config_with(&[(
        "SmartChargingCtrlr.LimitChangeSignificance",
        "20",
    )]));
    start_transaction(&mut h);
    set_abs(
        &mut h,
        1,
        1,
        "TxDefaultProfile",
        0,
        &[(0, 16.0), (60, 15.0), (120, 6.0)],
    );
    let reported = |h: &Harness| {
        h.events()
            .iter()
            .filter(|e| e["triggerReason"] == "ChargingRateChanged")
            .count()
    };
    assert_eq!(reported(&h), 1);
    h.advance_secs(61);
    assert_eq!(h.charging_limit(1), Some(Limit::new(15.0, 3)));
    assert_eq!(reported(&h), 1, "16 -> 15 A is 6 %");
    h.advance_secs(60);
    assert_eq!(h.charging_limit(1), Some(Limit::new(6.0, 3)));
    assert_eq!(reported(&h), 2);
}

#[test]
fn tc_k_13_k01_fr_27_profiles_survive_a_restart_and_tx_profiles_end_with_their_transaction() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    let mut txp = absolute(&h, 9, "TxProfile", 0, &[(0, 12.0)]);
    txp["transactionId"] = json!(tx);
    assert_eq!(status(&set(&mut h, 1, txp)), "Accepted");
    let mut max = absolute(&h, 1, "ChargingStationMaxProfile", 0, &[(0, 20.0)]);
    max["chargingProfileKind"] = json!("Recurring");
    max["recurrencyKind"] = json!("Daily");
    assert_eq!(status(&set(&mut h, 0, max.clone())), "Accepted");
    h.power_cycle(false);
    h.advance_secs(5);
    let (s, reports) = get_profiles(&mut h, 3, None, json!({"stackLevel": 0}));
    assert_eq!(s, "Accepted");
    let ids: Vec<i64> = reports
        .iter()
        .flat_map(|r| r["chargingProfile"].as_array().unwrap().clone())
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1], "the TxProfile went with its transaction");
    assert_eq!(reports[0]["chargingProfile"][0], max);
    // The restarted station gives the hardware its limit at once: the station's 20 A, split
    // between the two idle EVSEs.
    assert_eq!(h.charging_limit(1), Some(Limit::new(10.0, 3)));
    assert_eq!(h.charging_limit(2), Some(Limit::new(10.0, 3)));
}

fn two_evse_station(station_amps: f64) -> StationConfig {
    let mut config = default_config();
    config.charging = ChargingHardware {
        nominal_voltage: 230.0,
        evse_max: vec![(1, Limit::new(32.0, 3)), (2, Limit::new(32.0, 3))],
        station_max: Some(Limit::new(station_amps, 3)),
    };
    config
}

/// The EVSE's limit in amps, to 0.01 A.
fn amps(h: &Harness, evse: u32) -> f64 {
    (h.charging_limit(evse).unwrap().amps * 100.0).round() / 100.0
}

/// K04.FR.05: replaying every limit the hardware was given, in order, the EVSEs together were
/// never allowed more than `station` amps on 3 phases, not even between two outputs.
fn assert_never_above(h: &Harness, station: f64) {
    let mut last: Vec<(u32, Limit)> = Vec::new();
    for (n, (evse, limit)) in h.charging_limits.iter().enumerate() {
        last.retain(|(e, _)| e != evse);
        last.push((*evse, *limit));
        let total: f64 = last.iter().map(|(_, l)| l.watts(230.0)).sum();
        assert!(
            total <= station * 230.0 * 3.0 + 1e-6,
            "output {n}: {total} W allowed in total: {:?}",
            h.charging_limits
        );
    }
}

#[test]
fn the_grid_connection_is_shared_and_never_exceeded() {
    let mut h = Harness::new(two_evse_station(40.0));
    // Idle: the connection split between the two.
    assert_eq!((amps(&h, 1), amps(&h, 2)), (20.0, 20.0));
    start_transaction(&mut h);
    // The charging one may take its rating, the idle one what is left.
    assert_eq!((amps(&h, 1), amps(&h, 2)), (32.0, 8.0));
    h.plug(2, 1, true);
    h.token(2, "TOKEN2");
    h.advance_secs(1);
    assert_eq!((amps(&h, 1), amps(&h, 2)), (20.0, 20.0));
    // An EV that draws less (4 A: 2760 W) gives the rest to the other, keeping some room.
    h.meters[0].1 = 2760.0;
    h.meters[1].1 = 22_080.0;
    // Each meter reading moves the shares on, until they settle.
    for _ in 0..10 {
        h.advance_secs(5);
    }
    assert_eq!((amps(&h, 1), amps(&h, 2)), (8.0, 32.0));
    // It draws its share again: equal shares again.
    h.meters[0].1 = 22_080.0;
    for _ in 0..10 {
        h.advance_secs(5);
    }
    assert_eq!((amps(&h, 1), amps(&h, 2)), (20.0, 20.0));
    // A station maximum below the connection lowers both.
    set_abs(&mut h, 0, 1, "ChargingStationMaxProfile", 0, &[(0, 24.0)]);
    assert_eq!((amps(&h, 1), amps(&h, 2)), (12.0, 12.0));
    let r = composite(&mut h, 0, 60);
    assert_eq!(periods(&r), vec![(0, 24.0)]);
    assert_never_above(&h, 40.0);
}

#[test]
fn an_evse_whose_share_is_below_its_minimum_rate_is_paused() {
    // K01.FR.21: 16 A for two EVs that need 10 A each: the later one waits (SuspendedEVSE).
    let mut h = Harness::new(two_evse_station(16.0));
    let mut default = absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 32.0)]);
    default["chargingSchedule"][0]["minChargingRate"] = json!(10.0);
    assert_eq!(status(&set(&mut h, 0, default)), "Accepted");
    start_transaction(&mut h);
    h.plug(2, 1, true);
    h.token(2, "TOKEN2");
    h.advance_secs(1);
    assert_eq!(h.charging_limit(1), Some(Limit::new(16.0, 3)));
    assert_eq!(h.charging_limit(2).map(|l| l.amps), Some(0.0));
    // Its transaction says why it does not charge.
    let tx2 = h
        .events()
        .iter()
        .find(|e| e["evse"]["id"] == 2)
        .map(|e| e["transactionInfo"]["transactionId"].clone())
        .unwrap();
    let states: Vec<&str> = h
        .events()
        .iter()
        .filter(|e| e["transactionInfo"]["transactionId"] == tx2)
        .filter_map(|e| e["transactionInfo"]["chargingState"].as_str())
        .collect();
    assert_eq!(states.last(), Some(&"SuspendedEVSE"), "{states:?}");
    // The first ends: the second gets the connection.
    h.plug(1, 1, false);
    h.advance_secs(1);
    assert_eq!(h.charging_limit(2), Some(Limit::new(16.0, 3)));
    let last = h
        .events()
        .iter()
        .rev()
        .find(|e| e["transactionInfo"]["transactionId"] == tx2)
        .cloned()
        .unwrap();
    assert_eq!(last["triggerReason"], "ChargingRateChanged");
    assert_eq!(last["transactionInfo"]["chargingState"], "Charging");
}

#[test]
fn tc_k_37_a_remote_start_with_a_tx_profile_binds_it_to_the_transaction() {
    let mut h = Harness::new(default_config());
    let mut profile = json!({
        "id": 77,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}],
    });
    // K05.FR.05: a profile that is not a TxProfile is refused.
    let mut wrong = profile.clone();
    wrong["chargingProfilePurpose"] = json!("TxDefaultProfile");
    let r = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 1, "idToken": {"idToken": "R1", "type": "Central"}, "chargingProfile": wrong}),
    ));
    assert_eq!((status(&r), reason(&r)), ("Rejected", "InvalidProfile"));
    let r = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 2, "idToken": {"idToken": "R1", "type": "Central"}, "chargingProfile": profile.clone()}),
    ));
    assert_eq!(status(&r), "Accepted");
    h.plug(1, 1, true);
    h.advance_secs(1);
    assert_eq!(h.charging_limit(1), Some(Limit::new(6.0, 3)));
    let tx = h.events()[0]["transactionInfo"]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, reports) = get_profiles(&mut h, 5, Some(1), json!({"chargingProfileId": [77]}));
    assert_eq!(s, "Accepted");
    profile["transactionId"] = json!(tx);
    assert_eq!(reports[0]["chargingProfile"][0], profile);
}

#[test]
fn tc_k_15_k01_fr_29_with_smart_charging_disabled_the_calls_are_not_supported() {
    let mut h = Harness::new(config_with(&[("SmartChargingCtrlr.Enabled", "false")]));
    let frame = h.call(
        "SetChargingProfile",
        json!({"evseId": 1, "chargingProfile": absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 6.0)])}),
    );
    match frame {
        Frame::CallError { code, .. } => assert_eq!(code, "NotSupported"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.charging_limit(1), Some(Limit::new(32.0, 3)));
}

#[test]
fn the_device_model_reports_the_smart_charging_controller() {
    let mut h = Harness::new(default_config());
    set_abs(&mut h, 1, 1, "TxDefaultProfile", 0, &[(0, 6.0)]);
    let r = result(h.call(
        "GetVariables",
        json!({"getVariableData": [
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Entries", "instance": "ChargingProfiles"}},
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}},
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "PeriodsPerSchedule"}},
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "ProfileStackLevel"}}
        ]}),
    ));
    let values: Vec<&str> = r["getVariableResult"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["attributeValue"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["1", "A,W", "48", "8"]);
}

fn external(
    h: &mut Harness,
    evse: u32,
    amps: Option<f64>,
    duration_s: Option<u64>,
) -> Result<(), String> {
    let now = h.now;
    let r = h
        .station
        .handle_input(
            now,
            Input::ExternalLimit {
                evse,
                amps,
                duration_s,
            },
        )
        .map_err(|e| e.to_string());
    h.settle();
    h.advance_secs(1);
    r
}

#[test]
fn tc_k_52_a_local_energy_manager_limits_the_station_and_the_csms_hears_of_it() {
    let mut h = Harness::new(two_evse_station(32.0));
    external(&mut h, 0, Some(16.0), Some(600)).unwrap();
    // The station's 16 A split between the two idle EVSEs.
    assert_eq!((amps(&h, 1), amps(&h, 2)), (8.0, 8.0));
    let notified = h.csms.of("NotifyChargingLimit");
    assert_eq!(notified.len(), 1);
    assert_eq!(
        notified[0].payload["chargingLimit"]["chargingLimitSource"],
        "EMS"
    );
    // The station's limit has no evseId (the schema wants one above 0).
    assert!(notified[0].payload.get("evseId").is_none());
    assert!(notified[0].payload.get("chargingSchedule").is_none());
    // TC_K_52: reported with source EMS.
    let (s, reports) = get_profiles(&mut h, 4, None, json!({"chargingLimitSource": ["EMS"]}));
    assert_eq!(s, "Accepted");
    assert_eq!(reports[0]["chargingLimitSource"], "EMS");
    assert_eq!(
        reports[0]["chargingProfile"][0]["chargingProfilePurpose"],
        "ChargingStationExternalConstraints"
    );
    // K10.FR.08: the CSMS cannot clear it.
    let r = result(h.call(
        "ClearChargingProfile",
        json!({"chargingProfileCriteria": {"evseId": 0}}),
    ));
    assert_eq!(status(&r), "Unknown");
    // A change below LimitChangeSignificance (10 %) is applied, not reported; a larger one is.
    external(&mut h, 0, Some(15.0), Some(600)).unwrap();
    assert_eq!(amps(&h, 1), 7.5);
    assert_eq!(h.csms.of("NotifyChargingLimit").len(), 1);
    external(&mut h, 0, Some(10.0), Some(600)).unwrap();
    assert_eq!(h.csms.of("NotifyChargingLimit").len(), 2);
    // It runs out: ClearedChargingLimit, the connection alone again.
    h.advance_secs(600);
    let cleared = h.csms.of("ClearedChargingLimit");
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].payload["chargingLimitSource"], "EMS");
    assert_eq!((amps(&h, 1), amps(&h, 2)), (16.0, 16.0));
}

#[test]
fn an_evse_external_limit_with_its_schedule_and_lifted_by_hand() {
    let mut h = Harness::new(config_with(&[(
        "SmartChargingCtrlr.NotifyChargingLimitWithSchedules",
        "true",
    )]));
    external(&mut h, 2, Some(6.0), None).unwrap();
    assert_eq!(amps(&h, 2), 6.0);
    assert_eq!(amps(&h, 1), 32.0);
    let n = h.csms.of("NotifyChargingLimit");
    assert_eq!(n[0].payload["evseId"], 2);
    assert_eq!(
        n[0].payload["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"],
        6.0
    );
    // Survives a restart.
    h.power_cycle(false);
    h.advance_secs(5);
    assert_eq!(amps(&h, 2), 6.0);
    external(&mut h, 2, None, None).unwrap();
    assert_eq!(amps(&h, 2), 32.0);
    let cleared = h.csms.of("ClearedChargingLimit");
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].payload["evseId"], 2);
    // Refused when switched off, or for an EVSE that does not exist.
    assert!(
        external(&mut h, 9, Some(6.0), None)
            .unwrap_err()
            .contains("no EVSE 9")
    );
    let mut h = Harness::new(config_with(&[(
        "SmartChargingCtrlr.ExternalControlSignalsEnabled",
        "false",
    )]));
    let e = external(&mut h, 0, Some(6.0), None).unwrap_err();
    assert!(e.contains("ExternalControlSignalsEnabled"), "{e}");
    assert_eq!(amps(&h, 1), 32.0);
}

#[test]
fn an_external_limit_set_while_offline_is_reported_after_reconnection() {
    let mut h = Harness::new(default_config());
    h.csms.online = false;
    h.drop_connection();
    external(&mut h, 1, Some(10.0), None).unwrap();
    assert_eq!(amps(&h, 1), 10.0, "applied offline");
    assert_eq!(h.csms.of("NotifyChargingLimit").len(), 0);
    h.csms.online = true;
    h.advance_secs(120);
    let n = h.csms.of("NotifyChargingLimit");
    assert_eq!(n.len(), 1, "{:?}", h.csms.actions());
    assert_eq!(n[0].payload["evseId"], 1);
}

#[test]
fn k06_offline_the_station_keeps_its_profiles_and_a_default_limits_an_offline_transaction() {
    let mut h = Harness::new(config_with(&[(
        "AuthCtrlr.OfflineTxForUnknownIdEnabled",
        "true",
    )]));
    set_abs(
        &mut h,
        1,
        1,
        "TxDefaultProfile",
        0,
        &[(0, 16.0), (600, 10.0)],
    );
    h.csms.online = false;
    h.drop_connection();
    h.plug(1, 1, true);
    h.token(1, "OFFLINE1");
    h.advance_secs(1);
    assert!(h.power_path(1), "charging offline");
    assert_eq!(amps(&h, 1), 16.0);
    // The schedule goes on without the CSMS.
    h.advance_secs(600);
    assert_eq!(amps(&h, 1), 10.0);
    assert!(h.events().is_empty(), "nothing sent while offline");
    // Delivered once back, the change included.
    h.csms.online = true;
    h.advance_secs(120);
    assert!(
        h.events()
            .iter()
            .any(|e| e["triggerReason"] == "ChargingRateChanged" && e["offline"] == true),
        "{:?}",
        h.events()
    );
}

#[test]
fn switching_smart_charging_off_leaves_the_ratings_and_on_again_the_profiles() {
    let mut h = Harness::new(default_config());
    set_abs(&mut h, 1, 1, "TxDefaultProfile", 0, &[(0, 10.0)]);
    assert_eq!(amps(&h, 1), 10.0);
    let set_enabled = |h: &mut Harness, v: &str| {
        let r = result(h.call(
            "SetVariables",
            json!({"setVariableData": [{"component": {"name": "SmartChargingCtrlr"},
                "variable": {"name": "Enabled"}, "attributeValue": v}]}),
        ));
        assert_eq!(
            r["setVariableResult"][0]["attributeStatus"], "Accepted",
            "{r}"
        );
    };
    set_enabled(&mut h, "false");
    assert_eq!(amps(&h, 1), 32.0);
    set_enabled(&mut h, "true");
    assert_eq!(amps(&h, 1), 10.0);
}

#[test]
fn tc_k_03_10_28_station_maximum_and_a_station_wide_default_apply_to_every_evse() {
    let mut h = Harness::new(default_config());
    let tx = start_transaction(&mut h);
    // TC_K_28/K01.FR.32: a default set during a transaction applies to it at once.
    set_abs(&mut h, 0, 1, "TxDefaultProfile", 0, &[(0, 20.0)]);
    assert_eq!(
        (amps(&h, 1), amps(&h, 2)),
        (20.0, 20.0),
        "TC_K_10: every EVSE"
    );
    assert!(
        h.events()
            .iter()
            .any(|e| e["triggerReason"] == "ChargingRateChanged"
                && e["transactionInfo"]["transactionId"] == tx.as_str())
    );
    // TC_K_03: the station maximum is the whole station's: the charging EVSE takes it, the
    // idle one gets what is left (nothing) until its own transaction shares it.
    set_abs(&mut h, 0, 2, "ChargingStationMaxProfile", 0, &[(0, 12.0)]);
    assert_eq!((amps(&h, 1), amps(&h, 2)), (12.0, 0.0));
    h.plug(2, 1, true);
    h.token(2, "TOKEN2");
    h.advance_secs(1);
    assert_eq!((amps(&h, 1), amps(&h, 2)), (6.0, 6.0));
    let (s, reports) = get_profiles(
        &mut h,
        1,
        Some(0),
        json!({"chargingProfilePurpose": "ChargingStationMaxProfile"}),
    );
    assert_eq!(s, "Accepted");
    assert_eq!(reports[0]["evseId"], 0);
    assert_eq!(reports[0]["chargingProfile"][0]["id"], 2);
}

#[test]
fn tc_k_07_09_24_clearing_by_criteria() {
    let mut h = Harness::new(default_config());
    start_transaction(&mut h);
    set_abs(&mut h, 1, 1, "TxDefaultProfile", 0, &[(0, 10.0)]);
    set_abs(&mut h, 2, 2, "TxDefaultProfile", 0, &[(0, 12.0)]);
    set_abs(&mut h, 1, 3, "TxDefaultProfile", 1, &[(0, 8.0)]);
    // TC_K_07: no profile with this combination.
    let r = result(h.call(
        "ClearChargingProfile",
        json!({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 5}}),
    ));
    assert_eq!(status(&r), "Unknown");
    // TC_K_24: one stack level and purpose matching on two EVSEs: both go.
    let r = result(h.call(
        "ClearChargingProfile",
        json!({"chargingProfileCriteria": {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}}),
    ));
    assert_eq!(status(&r), "Accepted");
    assert_eq!(
        get_profiles(&mut h, 1, None, json!({"stackLevel": 0})).0,
        "NoProfiles"
    );
    assert_eq!((amps(&h, 1), amps(&h, 2)), (8.0, 32.0));
    // TC_K_09/K10.FR.07: the transaction goes on as if it had no default.
    let r = result(h.call("ClearChargingProfile", json!({"chargingProfileId": 3})));
    assert_eq!(status(&r), "Accepted");
    assert_eq!(amps(&h, 1), 32.0);
    assert!(h.power_path(1), "still charging");
}

#[test]
fn tc_k_19_21_22_23_recurrence_validity_and_start_in_the_future() {
    let mut h = Harness::new(default_config());
    // TC_K_23/K01.FR.30: a schedule that starts in 10 minutes limits from then on.
    let mut later = absolute(&h, 1, "TxDefaultProfile", 0, &[(0, 10.0)]);
    later["chargingSchedule"][0]["startSchedule"] = json!(now_rfc3339(&h, 600));
    assert_eq!(status(&set(&mut h, 1, later)), "Accepted");
    assert_eq!(amps(&h, 1), 32.0);
    h.advance_secs(601);
    assert_eq!(amps(&h, 1), 10.0);
    // TC_K_21/22: valid from in 5 minutes, to in 10 (K01.FR.36/37).
    let mut window = absolute(&h, 2, "TxDefaultProfile", 1, &[(0, 6.0)]);
    window["validFrom"] = json!(now_rfc3339(&h, 300));
    window["validTo"] = json!(now_rfc3339(&h, 600));
    assert_eq!(status(&set(&mut h, 1, window)), "Accepted");
    assert_eq!(amps(&h, 1), 10.0);
    h.advance_secs(301);
    assert_eq!(amps(&h, 1), 6.0);
    h.advance_secs(300);
    assert_eq!(amps(&h, 1), 10.0);
    // TC_K_19: a Daily profile of EVSE 2, 8 A for the first hour of each day from now.
    let mut daily = absolute(&h, 3, "TxDefaultProfile", 0, &[(0, 8.0), (3600, 16.0)]);
    daily["chargingProfileKind"] = json!("Recurring");
    daily["recurrencyKind"] = json!("Daily");
    assert_eq!(status(&set(&mut h, 2, daily)), "Accepted");
    assert_eq!(amps(&h, 2), 8.0);
    h.advance_secs(3601);
    assert_eq!(amps(&h, 2), 16.0);
    h.advance_secs(86_400 - 3601 + 1);
    assert_eq!(amps(&h, 2), 8.0, "the next day");
    let r = result(h.call(
        "GetCompositeSchedule",
        json!({"evseId": 2, "duration": 7200, "chargingRateUnit": "A"}),
    ));
    let p = periods(&r);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].1, 8.0);
    assert_eq!(p[1].1, 16.0);
}

#[test]
fn tc_k_29_to_36_get_charging_profiles_filters() {
    let mut h = Harness::new(default_config());
    set_abs(&mut h, 0, 1, "ChargingStationMaxProfile", 0, &[(0, 30.0)]);
    set_abs(&mut h, 1, 2, "TxDefaultProfile", 0, &[(0, 16.0)]);
    set_abs(&mut h, 1, 3, "TxDefaultProfile", 1, &[(0, 10.0)]);
    set_abs(&mut h, 2, 4, "TxDefaultProfile", 0, &[(0, 12.0)]);
    let ids = |h: &mut Harness, evse: Option<i64>, criteria: Value| -> Vec<i64> {
        let (_, reports) = get_profiles(h, 9, evse, criteria);
        // K09.FR.02: tbc on all but the last.
        for (n, r) in reports.iter().enumerate() {
            assert_eq!(r["tbc"] == true, n + 1 < reports.len(), "{reports:?}");
        }
        reports
            .iter()
            .flat_map(|r| r["chargingProfile"].as_array().unwrap().clone())
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    };
    let all = json!({"chargingLimitSource": ["CSO"]});
    assert_eq!(ids(&mut h, Some(0), all.clone()), vec![1], "TC_K_29");
    assert_eq!(ids(&mut h, Some(1), all.clone()), vec![2, 3], "TC_K_30");
    assert_eq!(ids(&mut h, None, all), vec![1, 2, 3, 4], "TC_K_31");
    assert_eq!(
        ids(&mut h, None, json!({"chargingProfileId": [3, 4]})),
        vec![3, 4],
        "TC_K_32"
    );
    assert_eq!(
        ids(&mut h, Some(1), json!({"stackLevel": 1})),
        vec![3],
        "TC_K_33"
    );
    assert_eq!(
        ids(&mut h, Some(1), json!({"chargingLimitSource": ["EMS"]})),
        Vec::<i64>::new(),
        "TC_K_34"
    );
    assert_eq!(
        ids(
            &mut h,
            Some(1),
            json!({"chargingProfilePurpose": "TxDefaultProfile"})
        ),
        vec![2, 3],
        "TC_K_35"
    );
    assert_eq!(
        ids(
            &mut h,
            Some(1),
            json!({"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0})
        ),
        vec![2],
        "TC_K_36"
    );
}

#[test]
fn tc_k_38_a_station_without_smart_charging_ignores_a_remote_starts_profile() {
    // K05.FR.04
    let mut h = Harness::new(config_with(&[("SmartChargingCtrlr.Enabled", "false")]));
    let r = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 3, "idToken": {"idToken": "R1", "type": "Central"},
            "chargingProfile": {"id": 5, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative", "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}]}}),
    ));
    assert_eq!(status(&r), "Accepted");
    h.plug(1, 1, true);
    h.advance_secs(1);
    assert!(h.power_path(1));
    assert_eq!(amps(&h, 1), 32.0);
}

#[test]
fn a_remote_starts_profile_waits_for_its_transaction_only_evconnectiontimeout() {
    // The transaction starts when the EV connects, not at the remote start's authorization.
    let mut h = Harness::new(config_with(&[
        ("TxCtrlr.EVConnectionTimeOut", "60"),
        ("TxCtrlr.TxStartPoint", "EVConnected"),
    ]));
    let r = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 1, "remoteStartId": 4, "idToken": {"idToken": "R1", "type": "Central"},
            "chargingProfile": {"id": 9, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative", "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}]}}),
    ));
    assert_eq!(status(&r), "Accepted");
    // On EVSE 2 the EV comes in time: the profile binds to the transaction it opens (K05).
    let r = result(h.call(
        "RequestStartTransaction",
        json!({"evseId": 2, "remoteStartId": 5, "idToken": {"idToken": "R2", "type": "Central"},
            "chargingProfile": {"id": 8, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative", "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7.0}]}]}}),
    ));
    assert_eq!(status(&r), "Accepted");
    assert_eq!(amps(&h, 2), 32.0, "no transaction yet");
    h.advance_secs(10);
    h.plug(2, 1, true);
    h.advance_secs(1);
    assert_eq!(amps(&h, 2), 7.0);
    // On EVSE 1 no EV came: the authorization and the profile lapse together.
    h.advance_secs(61);
    h.plug(1, 1, true);
    h.token(1, "LATER");
    h.advance_secs(1);
    assert!(h.power_path(1));
    assert_eq!(
        amps(&h, 1),
        32.0,
        "the later transaction is not the remote start's"
    );
    assert_eq!(
        get_profiles(&mut h, 2, None, json!({"chargingProfileId": [9]})).0,
        "NoProfiles"
    );
}
