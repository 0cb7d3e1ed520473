//! Local Auth List Management (1.6 sections 5.10, 5.15) and Reservation (5.1, 5.13) on the
//! 2.0.1 local list and reservation blocks. Every idTag is a `Central` idToken (see the
//! parent module).

use super::{Connector, Inbound, Lookup, answer, call, connector, copy, id_token, status_only};
use crate::ocpp::rpc::CallError;
use crate::ocpp::v16::Action;
use crate::ocpp::v201;
use serde_json::{Value, json};

pub(super) fn request(
    action: Action,
    payload: &Value,
    lk: &Lookup,
) -> Option<Result<Inbound, CallError>> {
    match action {
        Action::SendLocalList => {
            let mut v = json!({
                "versionNumber": payload["listVersion"],
                "updateType": payload["updateType"],
            });
            let entries: Vec<Value> = payload
                .get("localAuthorizationList")
                .and_then(Value::as_array)
                .map(|list| list.iter().map(authorization_data).collect())
                .unwrap_or_default();
            // 2.0.1 wants at least one entry or none at all (a Full update with an empty
            // list clears it in both versions).
            if !entries.is_empty() {
                v["localAuthorizationList"] = Value::Array(entries);
            }
            call(v201::Action::SendLocalList, v)
        }
        Action::GetLocalListVersion => call(v201::Action::GetLocalListVersion, json!({})),
        Action::ReserveNow => {
            let mut v = json!({
                "id": payload["reservationId"],
                "expiryDateTime": payload["expiryDate"],
                "idToken": id_token(&payload["idTag"]),
            });
            match connector(payload["connectorId"].as_i64().unwrap_or(-1), lk) {
                Connector::Evse(n) => v["evseId"] = json!(n),
                // 1.6 5.13: connector 0 reserves any (ReserveConnectorZeroSupported); the block
                // accepts it only where reservations without an EVSE are allowed (H01.FR.19).
                Connector::Station => {}
                // H01: a reservation the block could not place is Rejected.
                Connector::Unknown => return answer(json!({"status": "Rejected"})),
            }
            if let Some(parent) = payload.get("parentIdTag") {
                v["groupIdToken"] = id_token(parent);
            }
            call(v201::Action::ReserveNow, v)
        }
        Action::CancelReservation => call(
            v201::Action::CancelReservation,
            json!({"reservationId": payload["reservationId"]}),
        ),
        _ => None,
    }
}

/// A 1.6 AuthorizationData (7.1) as 2.0.1's: idTagInfo without status is not possible in
/// 1.6, and an entry without idTagInfo removes the idTag in a Differential update in both.
fn authorization_data(e: &Value) -> Value {
    let mut v = json!({ "idToken": id_token(&e["idTag"]) });
    if let Some(info) = e.get("idTagInfo") {
        let mut i = json!({ "status": info["status"] });
        copy(info, "expiryDate", &mut i, "cacheExpiryDateTime");
        if let Some(parent) = info.get("parentIdTag") {
            i["groupIdToken"] = id_token(parent);
        }
        v["idTokenInfo"] = i;
    }
    v
}

pub(super) fn response(action: Action, answer: &Value) -> Option<Value> {
    match action {
        // Accepted, Failed, VersionMismatch: spelled alike. NotSupported is never said: the
        // block answers Failed while the list is disabled (D01).
        Action::SendLocalList | Action::ReserveNow | Action::CancelReservation => {
            Some(status_only(answer))
        }
        Action::GetLocalListVersion => Some(json!({"listVersion": answer["versionNumber"]})),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{answered, call, response, statuses_pass};
    use super::*;
    use v201::Action as A;

    #[test]
    fn send_local_list_entries_are_tokens_of_the_1_6_type() {
        let req = json!({
            "listVersion": 5,
            "updateType": "Differential",
            "localAuthorizationList": [
                {"idTag": "TAG1", "idTagInfo": {
                    "status": "Accepted",
                    "expiryDate": "2027-01-01T00:00:00Z",
                    "parentIdTag": "FLEET"}},
                {"idTag": "TAG2", "idTagInfo": {"status": "Blocked"}},
                {"idTag": "TAG3"},
            ],
        });
        let v = call(Action::SendLocalList, req.clone(), A::SendLocalList);
        assert_eq!(
            v,
            json!({
                "versionNumber": 5,
                "updateType": "Differential",
                "localAuthorizationList": [
                    {"idToken": {"idToken": "TAG1", "type": "ISO14443"}, "idTokenInfo": {
                        "status": "Accepted",
                        "cacheExpiryDateTime": "2027-01-01T00:00:00Z",
                        "groupIdToken": {"idToken": "FLEET", "type": "ISO14443"}}},
                    {"idToken": {"idToken": "TAG2", "type": "ISO14443"},
                     "idTokenInfo": {"status": "Blocked"}},
                    {"idToken": {"idToken": "TAG3", "type": "ISO14443"}},
                ],
            })
        );
        statuses_pass(
            Action::SendLocalList,
            &req,
            A::SendLocalList,
            &["Accepted", "Failed", "VersionMismatch"],
        );
    }

    #[test]
    fn send_local_list_every_status() {
        for status in ["Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"] {
            let v = call(
                Action::SendLocalList,
                json!({"listVersion": 1, "updateType": "Full", "localAuthorizationList": [
                    {"idTag": "T", "idTagInfo": {"status": status}}]}),
                A::SendLocalList,
            );
            assert_eq!(
                v["localAuthorizationList"][0]["idTokenInfo"]["status"],
                status
            );
        }
    }

    #[test]
    fn an_empty_full_list_clears() {
        for req in [
            json!({"listVersion": 3, "updateType": "Full", "localAuthorizationList": []}),
            json!({"listVersion": 3, "updateType": "Full"}),
        ] {
            let v = call(Action::SendLocalList, req, A::SendLocalList);
            assert_eq!(v, json!({"versionNumber": 3, "updateType": "Full"}));
        }
    }

    #[test]
    fn get_local_list_version() {
        let v = call(
            Action::GetLocalListVersion,
            json!({}),
            A::GetLocalListVersion,
        );
        assert_eq!(v, json!({}));
        for n in [0, 7] {
            let out = response(
                Action::GetLocalListVersion,
                &json!({}),
                A::GetLocalListVersion,
                json!({ "versionNumber": n }),
            );
            assert_eq!(out, json!({ "listVersion": n }));
        }
    }

    #[test]
    fn reserve_now_on_an_evse() {
        let req = json!({
            "connectorId": 2,
            "expiryDate": "2026-12-06T23:00:00Z",
            "idTag": "TAG1",
            "parentIdTag": "FLEET",
            "reservationId": 31,
        });
        let v = call(Action::ReserveNow, req.clone(), A::ReserveNow);
        assert_eq!(
            v,
            json!({
                "id": 31,
                "expiryDateTime": "2026-12-06T23:00:00Z",
                "idToken": {"idToken": "TAG1", "type": "ISO14443"},
                "evseId": 2,
                "groupIdToken": {"idToken": "FLEET", "type": "ISO14443"},
            })
        );
        statuses_pass(
            Action::ReserveNow,
            &req,
            A::ReserveNow,
            &["Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"],
        );
    }

    #[test]
    fn reserve_now_connector_zero_and_unknown() {
        let mut req = json!({
            "connectorId": 0,
            "expiryDate": "2026-12-06T23:00:00Z",
            "idTag": "TAG1",
            "reservationId": 1,
        });
        let v = call(Action::ReserveNow, req.clone(), A::ReserveNow);
        assert!(v.get("evseId").is_none() && v.get("groupIdToken").is_none());
        for bad in [3, -1] {
            req["connectorId"] = json!(bad);
            assert_eq!(
                answered(Action::ReserveNow, req.clone()),
                json!({"status": "Rejected"})
            );
        }
    }

    #[test]
    fn cancel_reservation() {
        let req = json!({"reservationId": 31});
        assert_eq!(
            call(Action::CancelReservation, req.clone(), A::CancelReservation),
            req
        );
        for status in ["Accepted", "Rejected"] {
            let out = response(
                Action::CancelReservation,
                &req,
                A::CancelReservation,
                json!({ "status": status }),
            );
            assert_eq!(out, json!({ "status": status }));
        }
    }
}
