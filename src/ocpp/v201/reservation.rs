//! The 2.0.1 spelling of reservations (H01-H04): ReserveNow and CancelReservation on the
//! reservation block.

use crate::ocpp::blocks::reservations::{Reservation, Reservations, ReserveOutcome};
use crate::ocpp::clock::{Instant, UtcTime};
use crate::ocpp::ctx::Ctx;
use crate::ocpp::model::IdToken;
use crate::ocpp::rpc::CallError;
use crate::ocpp::v201;

pub fn reserve_now(
    block: &mut Reservations,
    cx: &mut Ctx,
    now: Instant,
    request: v201::ReserveNowRequest,
) -> Result<v201::ReserveNowResponse, CallError> {
    use v201::ReserveNowStatusEnum as S;
    let (status, info) = match UtcTime::parse_rfc3339(&request.expiry_date_time) {
        None => (S::Rejected, Some("expiryDateTime is not a date-time")),
        Some(expiry) => {
            let reservation = Reservation {
                id: request.id,
                expiry_ms: expiry.unix_millis(),
                id_token: IdToken::from(&request.id_token),
                group: request.group_id_token.as_ref().map(IdToken::from),
                evse: request.evse_id.map(v201::id32),
                connector_type: request.connector_type.map(|t| t.as_str().to_owned()),
            };
            let status = match block.reserve(cx, now, reservation) {
                ReserveOutcome::Accepted => S::Accepted,
                ReserveOutcome::Faulted => S::Faulted,
                ReserveOutcome::Occupied => S::Occupied,
                ReserveOutcome::Rejected => S::Rejected,
                ReserveOutcome::Unavailable => S::Unavailable,
            };
            (status, None)
        }
    };
    Ok(v201::ReserveNowResponse {
        custom_data: None,
        status,
        status_info: info.map(|i| v201::StatusInfo {
            custom_data: None,
            reason_code: "InvalidValue".into(),
            additional_info: Some(i.into()),
        }),
    })
}

pub fn cancel_reservation(
    block: &mut Reservations,
    cx: &mut Ctx,
    now: Instant,
    request: v201::CancelReservationRequest,
) -> Result<v201::CancelReservationResponse, CallError> {
    let status = if block.cancel(cx, now, request.reservation_id) {
        v201::CancelReservationStatusEnum::Accepted
    } else {
        v201::CancelReservationStatusEnum::Rejected
    };
    Ok(v201::CancelReservationResponse {
        custom_data: None,
        status,
        status_info: None,
    })
}
