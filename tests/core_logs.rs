//! Log upload in the core (N01): GetLog answered with the file name, the upload asked of the
//! shell, LogStatusNotification for each step with the requestId, retries, cancellation by a
//! new request, TriggerMessage, and an upload cut by a restart made after it.

use ocpp_agent::ocpp::logs::{UploadFailure, UploadRequest};
use ocpp_agent::ocpp::rpc::Frame;
use ocpp_agent::ocpp::station::{Input, Output};
use ocpp_agent::ocpp::testkit::{Harness, default_config};
use serde_json::{Value, json};

fn result(frame: Frame) -> Value {
    match frame {
        Frame::CallResult { payload, .. } => payload,
        other => panic!("expected a CALLRESULT, got {other:?}"),
    }
}

fn get_log(h: &mut Harness, request_id: i64, log_type: &str, extra: Value) -> Value {
    let mut payload = json!({
        "requestId": request_id,
        "logType": log_type,
        "log": {"remoteLocation": "https://logs.example.com/upload"},
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "log" {
                for (lk, lv) in v.as_object().unwrap() {
                    payload["log"][lk] = lv.clone();
                }
            } else {
                payload[k] = v;
            }
        }
    }
    result(h.call("GetLog", payload))
}

fn statuses(h: &Harness) -> Vec<Value> {
    h.csms
        .of("LogStatusNotification")
        .iter()
        .map(|r| r.payload.clone())
        .collect()
}

fn uploaded(h: &mut Harness, request_id: i64, result: Result<(), (UploadFailure, String)>) {
    h.station
        .handle_input(h.now, Input::LogUploaded { request_id, result })
        .unwrap();
    h.settle();
}

fn take(h: &mut Harness) -> Vec<Output> {
    std::mem::take(&mut h.log_uploads)
}

#[test]
fn a_security_log_is_uploaded_and_each_step_reported() {
    let mut h = Harness::new(default_config());
    // The station's own security log has the start-up (N01.FR.03 uploads it).
    assert_eq!(h.security_log[0].1, "StartupOfTheDevice");
    let r = get_log(
        &mut h,
        5,
        "SecurityLog",
        json!({"log": {"oldestTimestamp": "2025-01-01T00:00:00Z", "latestTimestamp": "2025-01-02T00:00:00.500Z"}}),
    );
    assert_eq!(r["status"], "Accepted", "{r}");
    // N01.FR.01: the file name is in the answer.
    let filename = r["filename"].as_str().unwrap().to_owned();
    assert!(
        filename.starts_with("CP001_SecurityLog_") && filename.ends_with("Z.log"),
        "{filename}"
    );
    assert_eq!(
        take(&mut h),
        vec![Output::UploadLog(UploadRequest {
            request_id: 5,
            log_type: "SecurityLog".into(),
            location: "https://logs.example.com/upload".into(),
            filename,
            oldest_ms: Some(1_735_689_600_000),
            latest_ms: Some(1_735_776_000_500),
        })]
    );
    uploaded(&mut h, 5, Ok(()));
    // N01.FR.07-09
    assert_eq!(
        statuses(&h),
        [
            json!({"status": "Uploading", "requestId": 5}),
            json!({"status": "Uploaded", "requestId": 5})
        ]
    );
}

#[test]
fn failed_transfers_are_retried_and_refusals_are_reported_at_once() {
    let mut h = Harness::new(default_config());
    get_log(
        &mut h,
        6,
        "DiagnosticsLog",
        json!({"retries": 1, "retryInterval": 20}),
    );
    take(&mut h);
    uploaded(
        &mut h,
        6,
        Err((UploadFailure::Transfer, "connection refused".into())),
    );
    h.advance_secs(19);
    assert!(take(&mut h).is_empty(), "not before retryInterval");
    h.advance_secs(1);
    assert!(matches!(
        take(&mut h).as_slice(),
        [Output::UploadLog(UploadRequest { request_id: 6, .. })]
    ));
    uploaded(&mut h, 6, Err((UploadFailure::Transfer, "again".into())));
    h.advance_secs(60);
    assert!(take(&mut h).is_empty(), "no retries left");
    let names: Vec<String> = statuses(&h)
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Uploading", "Uploading", "UploadFailure"]);

    // A refusal by the server is not retried (N01.FR.10).
    get_log(&mut h, 7, "SecurityLog", json!({"retries": 3}));
    take(&mut h);
    uploaded(
        &mut h,
        7,
        Err((UploadFailure::PermissionDenied, "HTTP 403".into())),
    );
    h.advance_secs(600);
    assert!(take(&mut h).is_empty());
    assert_eq!(
        statuses(&h).last().unwrap(),
        &json!({"status": "PermissionDenied", "requestId": 7})
    );
}

#[test]
fn a_new_request_cancels_the_upload_in_progress() {
    let mut h = Harness::new(default_config());
    get_log(&mut h, 1, "SecurityLog", json!({}));
    take(&mut h);
    // F06.FR.15 / N01.FR.13: triggered while uploading.
    h.call(
        "TriggerMessage",
        json!({"requestedMessage": "LogStatusNotification"}),
    );
    assert_eq!(
        statuses(&h).last().unwrap(),
        &json!({"status": "Uploading", "requestId": 1})
    );
    // N01.FR.12, N01.FR.20
    let r = get_log(&mut h, 2, "SecurityLog", json!({}));
    assert_eq!(r["status"], "AcceptedCanceled");
    let outputs = take(&mut h);
    assert_eq!(outputs[0], Output::CancelLogUpload { request_id: 1 });
    assert!(matches!(
        outputs[1],
        Output::UploadLog(UploadRequest { request_id: 2, .. })
    ));
    assert!(
        statuses(&h).contains(&json!({"status": "AcceptedCanceled", "requestId": 1})),
        "{:?}",
        statuses(&h)
    );
    // A late result of the cancelled upload changes nothing.
    uploaded(&mut h, 1, Ok(()));
    assert!(!statuses(&h).contains(&json!({"status": "Uploaded", "requestId": 1})));
    uploaded(&mut h, 2, Ok(()));
    h.call(
        "TriggerMessage",
        json!({"requestedMessage": "LogStatusNotification"}),
    );
    assert_eq!(statuses(&h).last().unwrap(), &json!({"status": "Idle"}));
}

#[test]
fn an_upload_cut_by_a_restart_is_made_after_it() {
    let mut h = Harness::new(default_config());
    get_log(&mut h, 3, "SecurityLog", json!({}));
    take(&mut h);
    h.power_cycle(false);
    assert!(matches!(
        take(&mut h).as_slice(),
        [Output::UploadLog(UploadRequest { request_id: 3, .. })]
    ));
    uploaded(&mut h, 3, Ok(()));
    h.power_cycle(true);
    assert!(take(&mut h).is_empty(), "done is done");
}

#[test]
fn refusals_name_their_reason() {
    let mut config = default_config();
    config.diagnostics_log = false;
    let mut h = Harness::new(config);
    // N01.FR.05
    let r = get_log(&mut h, 1, "DiagnosticsLog", json!({}));
    assert_eq!(
        (r["status"].as_str(), r["statusInfo"]["reasonCode"].as_str()),
        (Some("Rejected"), Some("UnsupportedRequest"))
    );
    let r = get_log(
        &mut h,
        1,
        "SecurityLog",
        json!({"log": {"remoteLocation": "sftp://logs.example.com/"}}),
    );
    assert_eq!(r["statusInfo"]["reasonCode"], "InvalidURL");
    assert!(take(&mut h).is_empty());
    assert!(statuses(&h).is_empty());
}
