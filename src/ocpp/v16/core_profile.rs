//! The Core and Remote Trigger profiles of OCPP 1.6 (edition 2, chapters 4-6) on the blocks:
//! what the CSMS asks, and what we send (boot, heartbeat, status, authorization, and the
//! transaction events as StartTransaction / MeterValues / StopTransaction).

use super::Action;
use super::adapter::{Inbound, LinkRequest, Lookup, Outbound};
use crate::ocpp::devmodel::DeviceModel;
use crate::ocpp::model::{ConnectorStatus, Model};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v201;
use serde_json::{Map, Value, json};
use tracing::{error, warn};

/// The `vendorId` of the customData in which a 2.0.1 message of ours carries what only its
/// 1.6 spelling needs (the 1.6 status of a StatusNotification).
pub const VENDOR: &str = "ocpp-agent.v16";

/// The idToken type every 1.6 idTag gets: 1.6 tokens are bare strings, so the authorization
/// cache, the local list and reservations compare them under one type. Not `Central`: the
/// blocks never cache a Central token and never Authorize one of a remote start (2.0.1 C10,
/// F01), where 1.6 caches every idTag and AuthorizeRemoteTxRequests decides.
pub const TOKEN_TYPE: &str = "ISO14443";

/// What a transaction of ours is in 1.6: its connector, its meterStart, and the
/// transactionId the CSMS gave in its StartTransaction answer (once it did).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tx16 {
    pub evse: u32,
    pub meter_start_wh: i64,
    pub id: Option<i64>,
}

/// The 1.6 ChargePointStatus of an EVSE (1.6 connector), with its errorCode and info (4.9).
pub fn evse_status(
    model: &Model,
    vars: &DeviceModel,
    idx: usize,
) -> (&'static str, &'static str, Option<String>) {
    let evse = &model.evses[idx];
    let Some(ci) = model.connectors.iter().position(|c| c.evse == evse.id) else {
        return ("Unavailable", "NoError", None);
    };
    let connector = &model.connectors[ci];
    let status = match model.connector_status(ci, vars) {
        ConnectorStatus::Faulted => {
            let info = connector
                .fault
                .as_ref()
                .map(|f| f.chars().take(50).collect());
            return ("Faulted", "OtherError", info);
        }
        // A transaction in progress outlives an Inoperative (it is Scheduled, G03), and its
        // connector shows how it charges.
        _ if evse.transaction.is_some() => match evse.charging_state {
            "Charging" => "Charging",
            // Idle: the EV was unplugged and the transaction goes on
            // (StopTransactionOnEVSideDisconnect false, 3.6): SuspendedEV (4.9).
            "SuspendedEV" | "Idle" => "SuspendedEV",
            "SuspendedEVSE" | "EVConnected" => "SuspendedEVSE",
            _ => "Preparing",
        },
        ConnectorStatus::Unavailable => "Unavailable",
        ConnectorStatus::Reserved => "Reserved",
        ConnectorStatus::Occupied if evse.finishing && !evse.authorized => "Finishing",
        ConnectorStatus::Occupied => "Preparing",
        ConnectorStatus::Available if evse.authorized => "Preparing",
        ConnectorStatus::Available => "Available",
    };
    (status, "NoError", None)
}

/// The status of connector 0, the charge point as a whole (4.9).
pub fn station_status(model: &Model, vars: &DeviceModel) -> &'static str {
    if model.station_operative && !model.sessions_blocked(vars) {
        "Available"
    } else {
        "Unavailable"
    }
}

/// The customData that carries a 1.6 status in our 2.0.1 StatusNotification.
pub fn status_data(connector: u32, status: &str, error_code: &str, info: Option<&str>) -> Value {
    let mut data = json!({
        "vendorId": VENDOR,
        "connectorId": connector,
        "status": status,
        "errorCode": error_code,
    });
    if let Some(info) = info {
        data["info"] = json!(info);
    }
    data
}

/// A TxProfile given with RemoteStartTransaction (5.11: its purpose is TxProfile, with no
/// transactionId), in 2.0.1 form; `None` when it cannot be one.
fn charging_profile(profile: &Value, lk: &Lookup) -> Option<Value> {
    if profile["chargingProfilePurpose"] != "TxProfile" || profile.get("transactionId").is_some() {
        return None;
    }
    super::profiles::charging_profile(profile, "TxProfile", lk)
}

fn token(id_tag: &str) -> Value {
    json!({ "idToken": id_tag, "type": TOKEN_TYPE })
}

fn evse_of(connector: i64, lk: &Lookup) -> Option<i64> {
    (connector >= 1 && connector <= i64::from(lk.evses)).then_some(connector)
}

pub fn request(action: Action, payload: &Value, lk: &Lookup) -> Option<Result<Inbound, CallError>> {
    let call = |action: v201::Action, payload: Value| Some(Ok(Inbound::Call { action, payload }));
    let connector = payload["connectorId"].as_i64();
    match action {
        Action::RemoteStartTransaction => {
            let mut start = json!({
                "idToken": token(payload["idTag"].as_str().unwrap_or_default()),
                // 1.6 has no remoteStartId; the transaction reports it to nobody.
                "remoteStartId": 1,
            });
            match connector {
                None => {}
                Some(c) => match evse_of(c, lk) {
                    Some(evse) => start["evseId"] = json!(evse),
                    None => return Some(Ok(Inbound::Answer(json!({"status": "Rejected"})))),
                },
            }
            if let Some(profile) = payload.get("chargingProfile") {
                match charging_profile(profile, lk) {
                    Some(p) => start["chargingProfile"] = p,
                    None => return Some(Ok(Inbound::Answer(json!({"status": "Rejected"})))),
                }
            }
            call(v201::Action::RequestStartTransaction, start)
        }
        Action::RemoteStopTransaction => {
            let id = payload["transactionId"].as_i64().unwrap_or_default();
            match (lk.local_tx)(id) {
                Some(tx) => call(
                    v201::Action::RequestStopTransaction,
                    json!({ "transactionId": tx }),
                ),
                None => Some(Ok(Inbound::Answer(json!({"status": "Rejected"})))),
            }
        }
        // 1.6 5.14: both kinds stop the transactions first (StopTransaction with the reset as
        // reason) and restart; "Immediate" is the 2.0.1 reset that does that now.
        Action::Reset => call(v201::Action::Reset, json!({ "type": "Immediate" })),
        Action::ChangeAvailability => {
            let mut change = json!({ "operationalStatus": payload["type"] });
            match connector {
                Some(0) => {}
                Some(c) => match evse_of(c, lk) {
                    Some(evse) => change["evse"] = json!({ "id": evse }),
                    None => return Some(Ok(Inbound::Answer(json!({"status": "Rejected"})))),
                },
                None => {}
            }
            call(v201::Action::ChangeAvailability, change)
        }
        Action::UnlockConnector => match connector.and_then(|c| evse_of(c, lk)) {
            Some(evse) => call(
                v201::Action::UnlockConnector,
                json!({ "evseId": evse, "connectorId": 1 }),
            ),
            None => Some(Ok(Inbound::Answer(json!({"status": "NotSupported"})))),
        },
        Action::ClearCache => call(v201::Action::ClearCache, json!({})),
        Action::DataTransfer => call(v201::Action::DataTransfer, payload.clone()),
        Action::TriggerMessage => {
            if connector.is_some_and(|c| c != 0 && evse_of(c, lk).is_none()) {
                return Some(Ok(Inbound::Answer(json!({"status": "Rejected"}))));
            }
            match (payload["requestedMessage"].as_str(), connector) {
                // 5.17: no connectorId is the charge point and every connector, 0 the charge
                // point alone.
                (Some("StatusNotification"), None | Some(0)) => {
                    return Some(Ok(Inbound::Link(LinkRequest::ReportStatuses {
                        connectors: connector.is_none(),
                    })));
                }
                (Some("BootNotification"), _) => {
                    return Some(Ok(Inbound::Link(LinkRequest::Boot)));
                }
                _ => {}
            }
            let requested = match payload["requestedMessage"].as_str().unwrap_or_default() {
                "DiagnosticsStatusNotification" => "LogStatusNotification",
                other => other,
            };
            let mut trigger = json!({ "requestedMessage": requested });
            match connector {
                None | Some(0) => {}
                Some(c) => match evse_of(c, lk) {
                    Some(evse) if requested == "StatusNotification" => {
                        trigger["evse"] = json!({ "id": evse, "connectorId": 1 })
                    }
                    Some(evse) => trigger["evse"] = json!({ "id": evse }),
                    None => return Some(Ok(Inbound::Answer(json!({"status": "Rejected"})))),
                },
            }
            call(v201::Action::TriggerMessage, trigger)
        }
        _ => None,
    }
}

pub fn response(action: Action, request: &Value, answer: &Value, _lk: &Lookup) -> Option<Value> {
    let status = answer["status"].as_str().unwrap_or("Rejected");
    Some(match action {
        Action::RemoteStartTransaction | Action::RemoteStopTransaction => {
            json!({ "status": status })
        }
        Action::Reset => json!({
            "status": if status == "Rejected" { "Rejected" } else { "Accepted" }
        }),
        Action::UnlockConnector => json!({
            "status": match status {
                "Unlocked" => "Unlocked",
                "UnknownConnector" => "NotSupported",
                _ => "UnlockFailed",
            }
        }),
        Action::ChangeAvailability | Action::ClearCache => json!({ "status": status }),
        Action::TriggerMessage => json!({
            "status": match status {
                "Accepted" | "Rejected" => status,
                _ => "NotImplemented",
            }
        }),
        Action::DataTransfer => {
            let mut out = json!({ "status": status });
            match &answer["data"] {
                Value::Null => {}
                Value::String(s) => out["data"] = json!(s),
                other => out["data"] = json!(other.to_string()),
            }
            out
        }
        _ => {
            let _ = request;
            return None;
        }
    })
}

/// StopTransaction reasons 1.6 has (7.42); the other 2.0.1 reasons are `Other`.
fn stop_reason(reason: &str) -> &'static str {
    match reason {
        "DeAuthorized" => "DeAuthorized",
        "EmergencyStop" => "EmergencyStop",
        "EVDisconnected" => "EVDisconnected",
        "ImmediateReset" => "HardReset",
        "Local" => "Local",
        "PowerLoss" => "PowerLoss",
        "Reboot" => "Reboot",
        "Remote" => "Remote",
        "SoftReset" => "SoftReset",
        "UnlockCommand" => "UnlockCommand",
        _ => "Other",
    }
}

/// 2.0.1 meter values (numbers, unitOfMeasure) as 1.6 MeterValue (strings, unit): the
/// measurands 1.6 lacks are left out, and a value with a multiplier is scaled.
pub fn meter_values(values: &Value) -> Vec<Value> {
    let measurands = super::Measurand::VALUES;
    let units = super::UnitOfMeasure::VALUES;
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|mv| {
            let sampled: Vec<Value> = mv["sampledValue"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|sv| {
                    let measurand = sv["measurand"]
                        .as_str()
                        .unwrap_or("Energy.Active.Import.Register");
                    if !measurands.contains(&measurand) {
                        return None;
                    }
                    let multiplier = sv["unitOfMeasure"]["multiplier"].as_i64().unwrap_or(0);
                    let value = sv["value"].as_f64()? * 10f64.powi(multiplier as i32);
                    let mut out = Map::new();
                    out.insert("value".into(), json!(format_number(value)));
                    out.insert("measurand".into(), json!(measurand));
                    for key in ["context", "phase", "location"] {
                        if let Some(v) = sv.get(key) {
                            out.insert(key.into(), v.clone());
                        }
                    }
                    if let Some(unit) = sv["unitOfMeasure"]["unit"].as_str() {
                        if units.contains(&unit) {
                            out.insert("unit".into(), json!(unit));
                        }
                    }
                    Some(Value::Object(out))
                })
                .collect();
            (!sampled.is_empty())
                .then(|| json!({ "timestamp": mv["timestamp"], "sampledValue": sampled }))
        })
        .collect()
}

/// A reading as 1.6 writes values (a decimal string, no exponent, no trailing zeros).
fn format_number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The energy register among the event's meter values: the Transaction.Begin/End one if
/// there is one, else the last.
pub fn register_wh(values: &Value, context: &str) -> Option<i64> {
    let mut found = None;
    for mv in values.as_array().into_iter().flatten() {
        for sv in mv["sampledValue"].as_array().into_iter().flatten() {
            if sv["measurand"].as_str() != Some("Energy.Active.Import.Register") {
                continue;
            }
            let multiplier = sv["unitOfMeasure"]["multiplier"].as_i64().unwrap_or(0);
            let kwh = sv["unitOfMeasure"]["unit"].as_str() == Some("kWh");
            let Some(v) = sv["value"].as_f64() else {
                continue;
            };
            let wh = v * 10f64.powi(multiplier as i32) * if kwh { 1000.0 } else { 1.0 };
            let exact = sv["context"].as_str() == Some(context);
            if exact || found.is_none_or(|(e, _): (bool, i64)| !e) {
                found = Some((exact, wh.round() as i64));
            }
        }
    }
    found.map(|(_, wh)| wh)
}

pub fn outgoing(action: v201::Action, payload: &Value, lk: &Lookup) -> Option<Outbound> {
    let send = |action: Action, payload: Value| Some(Outbound::Send { action, payload });
    match action {
        v201::Action::BootNotification => {
            let station = &payload["chargingStation"];
            let mut boot = json!({
                "chargePointVendor": station["vendorName"],
                "chargePointModel": station["model"],
            });
            for (from, to) in [
                ("serialNumber", "chargePointSerialNumber"),
                ("firmwareVersion", "firmwareVersion"),
            ] {
                if let Some(v) = station.get(from) {
                    boot[to] = v.clone();
                }
            }
            send(Action::BootNotification, boot)
        }
        v201::Action::Heartbeat => send(Action::Heartbeat, json!({})),
        v201::Action::StatusNotification => {
            let data = &payload["customData"];
            let status = if data["vendorId"] == VENDOR {
                let mut s = json!({
                    "connectorId": data["connectorId"],
                    "status": data["status"],
                    "errorCode": data["errorCode"],
                });
                if let Some(info) = data.get("info") {
                    s["info"] = info.clone();
                }
                s
            } else {
                // A status queued by an agent speaking 2.0.1 (before a switch of version).
                let status = match payload["connectorStatus"].as_str() {
                    Some("Occupied") => "Preparing",
                    Some(s) => s,
                    None => "Available",
                };
                json!({
                    "connectorId": payload["evseId"],
                    "status": status,
                    "errorCode": if status == "Faulted" { "OtherError" } else { "NoError" },
                })
            };
            let mut status = status;
            status["timestamp"] = payload["timestamp"].clone();
            send(Action::StatusNotification, status)
        }
        v201::Action::Authorize => send(
            Action::Authorize,
            json!({ "idTag": payload["idToken"]["idToken"] }),
        ),
        v201::Action::MeterValues => {
            let mut values = json!({
                "connectorId": payload["evseId"],
                "meterValue": meter_values(&payload["meterValue"]),
            });
            // 4.7: the transaction's id, if the values are of one (a triggered reading).
            let tx = payload["evseId"]
                .as_u64()
                .and_then(|e| (lk.evse_tx)(e as u32))
                .and_then(|tx| (lk.tx16)(&tx));
            if let Some(id) = tx {
                values["transactionId"] = json!(id);
            }
            send(Action::MeterValues, values)
        }
        v201::Action::DataTransfer => {
            let mut out = payload.clone();
            if let Some(data) = out.get("data").filter(|d| !d.is_string()) {
                out["data"] = json!(data.to_string());
            }
            if let Some(o) = out.as_object_mut() {
                o.remove("customData");
            }
            send(Action::DataTransfer, out)
        }
        v201::Action::TransactionEvent => Some(transaction_event(payload, lk)),
        _ => None,
    }
}

/// A TransactionEvent as 1.6 reports transactions (4.8, 4.10, 6.45): Started is a
/// StartTransaction, the meter values of an Updated go in a MeterValues with the CSMS's
/// transactionId, Ended is a StopTransaction; the rest 1.6 does not report.
fn transaction_event(payload: &Value, lk: &Lookup) -> Outbound {
    let tx = payload["transactionInfo"]["transactionId"]
        .as_str()
        .unwrap_or_default();
    let values = &payload["meterValue"];
    match payload["eventType"].as_str() {
        Some("Started") => {
            let mut start = json!({
                "connectorId": payload["evse"]["id"],
                "idTag": payload["idToken"]["idToken"].as_str().unwrap_or_default(),
                "meterStart": register_wh(values, "Transaction.Begin")
                    .or_else(|| (lk.transaction)(tx).map(|t| t.meter_start_wh))
                    .unwrap_or(0),
                "timestamp": payload["timestamp"],
            });
            if let Some(id) = payload.get("reservationId") {
                start["reservationId"] = id.clone();
            }
            if start["connectorId"].is_null() {
                start["connectorId"] = json!((lk.transaction)(tx).map_or(0, |t| t.evse));
            }
            Outbound::Send {
                action: Action::StartTransaction,
                payload: start,
            }
        }
        event => {
            let Some(t) = (lk.transaction)(tx) else {
                error!(
                    transaction_id = tx,
                    "no StartTransaction for this transaction was answered; its later messages cannot name it and are dropped"
                );
                return Outbound::Skip;
            };
            let Some(id) = t.id else {
                error!(
                    transaction_id = tx,
                    "the CSMS gave this transaction no id; its later messages are dropped"
                );
                return Outbound::Skip;
            };
            let samples = meter_values(values);
            if event == Some("Ended") {
                let mut stop = json!({
                    "transactionId": id,
                    "meterStop": register_wh(values, "Transaction.End").unwrap_or(t.meter_start_wh),
                    "timestamp": payload["timestamp"],
                    "reason": match (payload["customData"]["reason"].as_str(), payload["triggerReason"].as_str()) {
                        (Some(r @ ("SoftReset" | "HardReset")), _) => r,
                        // 2.0.1 has no such stoppedReason (Other), only the trigger.
                        (_, Some("UnlockCommand")) => "UnlockCommand",
                        _ => stop_reason(payload["transactionInfo"]["stoppedReason"].as_str().unwrap_or("Local")),
                    },
                });
                if let Some(tag) = payload["idToken"]["idToken"].as_str() {
                    stop["idTag"] = json!(tag);
                }
                if !samples.is_empty() {
                    stop["transactionData"] = json!(samples);
                }
                Outbound::Send {
                    action: Action::StopTransaction,
                    payload: stop,
                }
            } else if samples.is_empty() {
                Outbound::Skip
            } else {
                Outbound::Send {
                    action: Action::MeterValues,
                    payload: json!({
                        "connectorId": t.evse,
                        "transactionId": id,
                        "meterValue": samples,
                    }),
                }
            }
        }
    }
}

/// 1.6 idTagInfo as 2.0.1 idTokenInfo.
fn token_info(info: &Value) -> Value {
    let mut out = json!({ "status": info["status"] });
    if let Some(expiry) = info.get("expiryDate") {
        out["cacheExpiryDateTime"] = expiry.clone();
    }
    if let Some(parent) = info["parentIdTag"].as_str() {
        out["groupIdToken"] = token(parent);
    }
    out
}

pub fn answer_to_v201(sent: Action, _request: &Value, answer: &Value) -> Option<Value> {
    match sent {
        Action::Authorize => Some(json!({ "idTokenInfo": token_info(&answer["idTagInfo"]) })),
        Action::StartTransaction | Action::StopTransaction => Some(match answer.get("idTagInfo") {
            Some(info) => json!({ "idTokenInfo": token_info(info) }),
            None => json!({}),
        }),
        Action::DataTransfer => {
            let mut out = answer.clone();
            if out.get("data").is_some_and(|d| !d.is_string()) {
                warn!("DataTransfer answer data is not a string");
            }
            if let Some(o) = out.as_object_mut() {
                o.remove("customData");
            }
            Some(out)
        }
        _ => None,
    }
}
