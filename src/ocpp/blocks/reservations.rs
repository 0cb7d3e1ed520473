//! Reservations (functional block H): a bay held for a driver until an expiry time, for one
//! EVSE, for any EVSE, or for any EVSE with a connector of a type. The block keeps the
//! reservations (durable, with their expiry) and decides, after every change of the station,
//! which EVSEs only their claimants may use ([`ReservationGate`] in the model): the transaction
//! block consults the gate when a driver is authorized, and the connectors of an exclusive EVSE
//! report Reserved.
//!
//! The model is protocol-neutral: 1.6's ReserveNow (a connectorId, 0 for any) maps onto the
//! same requests; the 2.0.1 spelling is in `v201/reservation.rs`.

use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::{CoreEvent, Ctx};
use crate::ocpp::devmodel::Var;
use crate::ocpp::model::{Claimant, IdToken, ReservationGate};
use crate::ocpp::persist::{EventKind, PersistOp, Persisted, Record};
use crate::ocpp::timer::Timer;
use crate::ocpp::v201::Action;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tracing::info;

/// How many reservations the station holds at once; one more is Rejected.
pub const MAX_RESERVATIONS: usize = 32;

/// A reservation as the CSMS made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: i64,
    /// UTC milliseconds.
    pub expiry_ms: i64,
    pub id_token: IdToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<IdToken>,
    /// The EVSE reserved; none: any EVSE (of `connector_type`, if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evse: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_type: Option<String>,
}

/// The answer to a reservation request (H01), in no version's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    Accepted,
    Faulted,
    Occupied,
    Rejected,
    Unavailable,
}

/// Why a reservation ended without being used (H01.FR.16/17, H04.FR.01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Expired,
    Removed,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Expired => "Expired",
            Ended::Removed => "Removed",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HeldReservations {
    reservations: Vec<Reservation>,
}

impl Record for HeldReservations {
    const KEY: &'static str = "reservations";
    const VERSION: u32 = 1;
}

/// An EVSE's state as a reservation sees it, reservations aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Available,
    Occupied,
    Unavailable,
    Faulted,
}

/// The reservation block.
#[derive(Debug, Default)]
pub struct Reservations {
    /// In the order made (a later one is removed first when not all can be kept).
    held: Vec<Reservation>,
}

impl Reservations {
    /// Start-up: the reservations the journal holds; expired ones end at the first refresh.
    pub(crate) fn restore(cx: &mut Ctx, persisted: &Persisted) -> Self {
        let held = cx
            .restore_record::<HeldReservations>(persisted)
            .map(|r| r.reservations)
            .unwrap_or_default();
        if !held.is_empty() {
            info!(reservations = held.len(), "reservations restored");
        }
        Reservations { held }
    }

    pub fn list(&self) -> &[Reservation] {
        &self.held
    }

    fn record(&self) -> PersistOp {
        PersistOp::record(Some(&HeldReservations {
            reservations: self.held.clone(),
        }))
    }

    // ----- ReserveNow (H01) ----------------------------------------------------------------

    /// H01: a reservation, replacing one with the same id (H01.FR.02) if the new one can be
    /// kept; made durable before the answer.
    pub(crate) fn reserve(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        reservation: Reservation,
    ) -> ReserveOutcome {
        let outcome = self.check(cx, now, &reservation);
        info!(
            reservation = reservation.id,
            evse = reservation.evse,
            connector_type = reservation.connector_type.as_deref(),
            outcome = ?outcome,
            "ReserveNow"
        );
        if outcome == ReserveOutcome::Accepted {
            self.held.retain(|r| r.id != reservation.id);
            self.held.push(reservation);
            cx.persist(vec![self.record()]);
            self.refresh(cx, now);
        }
        outcome
    }

    fn check(&self, cx: &Ctx, now: Instant, new: &Reservation) -> ReserveOutcome {
        // H01.FR.01
        if !cx.vars.bool(Var::ReservationEnabled) || !cx.vars.bool(Var::ReservationAvailable) {
            return ReserveOutcome::Rejected;
        }
        if new.expiry_ms <= cx.clock.utc(now).unix_millis() {
            return ReserveOutcome::Rejected;
        }
        // The one it replaces does not count against it.
        let others: Vec<&Reservation> = self.held.iter().filter(|r| r.id != new.id).collect();
        if others.len() >= MAX_RESERVATIONS {
            return ReserveOutcome::Rejected;
        }
        let targets: Vec<usize> = match new.evse {
            Some(evse) => match cx.model.evse_index(evse) {
                Some(i) => vec![i],
                None => return ReserveOutcome::Rejected,
            },
            // H01.FR.19
            None if !cx.vars.bool(Var::ReservationNonEvseSpecific) => {
                return ReserveOutcome::Rejected;
            }
            None => (0..cx.model.evses.len())
                .filter(|i| has_type(cx, *i, new.connector_type.as_deref()))
                .collect(),
        };
        if targets.is_empty() {
            return ReserveOutcome::Rejected; // no connector of that type here
        }
        // H01.FR.11/12/14: what the targeted EVSEs are; one reserved by another reservation
        // counts as Occupied.
        let bases: Vec<Base> = targets
            .iter()
            .map(|i| {
                let id = cx.model.evses[*i].id;
                match base(cx, *i) {
                    Base::Available if others.iter().any(|r| r.evse == Some(id)) => Base::Occupied,
                    b => b,
                }
            })
            .collect();
        let refusal = if bases.iter().all(|b| *b == Base::Faulted) {
            ReserveOutcome::Faulted
        } else if bases
            .iter()
            .all(|b| matches!(b, Base::Faulted | Base::Unavailable))
        {
            ReserveOutcome::Unavailable
        } else {
            ReserveOutcome::Occupied
        };
        // Only an Available EVSE can be reserved (H01, errata 2025-01).
        if !bases.contains(&Base::Available) {
            return refusal;
        }
        // Every reservation of no particular EVSE, this one included, must keep an EVSE of
        // its own (H01.FR.07/09); a reserved EVSE is no longer one of theirs.
        let mut with_new = others;
        with_new.push(new);
        if feasible(cx, &with_new, &current_gates(cx)) {
            ReserveOutcome::Accepted
        } else {
            refusal
        }
    }

    // ----- CancelReservation (H02) ---------------------------------------------------------

    /// H02: true if it was held (H02.FR.01/02). No ReservationStatusUpdate: the CSMS asked.
    pub(crate) fn cancel(&mut self, cx: &mut Ctx, now: Instant, id: i64) -> bool {
        let before = self.held.len();
        self.held.retain(|r| r.id != id);
        let found = self.held.len() != before;
        info!(reservation = id, found, "CancelReservation");
        if found {
            cx.persist(vec![self.record()]);
            self.refresh(cx, now);
        }
        found
    }

    // ----- what happens to them ------------------------------------------------------------

    /// H03.FR.09: a driver used it.
    pub(crate) fn used(&mut self, cx: &mut Ctx, now: Instant, id: i64) {
        let before = self.held.len();
        self.held.retain(|r| r.id != id);
        if self.held.len() != before {
            info!(reservation = id, "reservation used");
            cx.persist(vec![self.record()]);
        }
        self.refresh(cx, now);
    }

    /// H04.FR.01, H01.FR.16/17: tells the CSMS, in one batch with the reservations that are
    /// left, so a power cut cannot lose one without the other.
    pub(crate) fn report_ended(&mut self, cx: &mut Ctx, now: Instant, ended: Vec<(i64, Ended)>) {
        let mut batch = vec![self.record()];
        for (id, why) in ended {
            info!(reservation = id, why = why.as_str(), "reservation ended");
            let payload = json!({
                "reservationId": id,
                "reservationUpdateStatus": why.as_str(),
            });
            cx.enqueue_durable(
                now,
                Action::ReservationStatusUpdate,
                None,
                EventKind::Other,
                payload,
                std::mem::take(&mut batch),
            );
        }
    }

    pub(crate) fn expiry_timer(&mut self, cx: &mut Ctx, now: Instant) {
        self.refresh(cx, now);
    }

    /// After any change of the station (a plug, a fault, availability, a transaction, the
    /// clock): end what expired (H04.FR.01) or can no longer be kept (H01.FR.16/17: its EVSE
    /// became Faulted or Unavailable; for reservations of no EVSE, the newest first), then
    /// decide the gates and report connectors whose status follows from them.
    pub(crate) fn refresh(&mut self, cx: &mut Ctx, now: Instant) {
        let utc = cx.clock.utc(now).unix_millis();
        let mut ended: Vec<(Reservation, Ended)> = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].expiry_ms <= utc {
                ended.push((self.held.remove(i), Ended::Expired));
            } else {
                i += 1;
            }
        }
        // A reservation of one EVSE that became Faulted or Unavailable (H01.FR.16/17).
        let mut i = 0;
        while i < self.held.len() {
            let gone = self.held[i].evse.is_some_and(|evse| {
                cx.model
                    .evse_index(evse)
                    .is_none_or(|idx| matches!(base(cx, idx), Base::Faulted | Base::Unavailable))
            });
            if gone {
                ended.push((self.held.remove(i), Ended::Removed));
            } else {
                i += 1;
            }
        }
        // The others must all still fit on distinct free EVSEs (H01.FR.07/09).
        loop {
            let held: Vec<&Reservation> = self.held.iter().collect();
            let current = current_gates(cx);
            if feasible(cx, &held, &current) {
                break;
            }
            let Some(newest) = self.held.iter().rposition(|r| r.evse.is_none()) else {
                break;
            };
            ended.push((self.held.remove(newest), Ended::Removed));
        }
        let changed = self.apply_gates(cx);
        if changed {
            cx.emit(CoreEvent::ConnectorStatusesChanged);
        }
        if !ended.is_empty() {
            // Reported once the statuses are queued (TC_H_07: StatusNotification first).
            cx.emit(CoreEvent::ReservationsEnded {
                ended: ended.into_iter().map(|(r, why)| (r.id, why)).collect(),
            });
        }
        self.arm_timer(cx, now, utc);
    }

    fn arm_timer(&self, cx: &mut Ctx, now: Instant, utc: i64) {
        match self.held.iter().map(|r| r.expiry_ms).min() {
            Some(at) => cx.timers.set(
                Timer::ReservationExpiry,
                now + Duration::from_millis((at - utc).max(0) as u64),
            ),
            None => cx.timers.stop(Timer::ReservationExpiry),
        }
    }

    /// Writes every EVSE's gate; true if an exclusive flag changed (a status changes).
    fn apply_gates(&self, cx: &mut Ctx) -> bool {
        let held: Vec<&Reservation> = self.held.iter().collect();
        let current = current_gates(cx);
        let gates = gates_for_with(cx, &held, &current);
        let mut changed = false;
        for (i, gate) in gates.into_iter().enumerate() {
            let evse = &mut cx.model.evses[i];
            changed |= evse.reservation.exclusive != gate.exclusive;
            evse.reservation = gate;
        }
        changed
    }
}

/// Whether the EVSE has a connector of this type (any type for None). A connector's type is
/// the station's Connector.ConnectorType.
fn has_type(cx: &Ctx, _idx: usize, connector_type: Option<&str>) -> bool {
    connector_type.is_none_or(|t| cx.vars.get(Var::ConnectorType) == t)
}

/// An EVSE's state with reservations left out: Faulted if every connector is, Unavailable if
/// it cannot be used, Occupied if an EV is plugged in or a transaction runs.
fn base(cx: &Ctx, idx: usize) -> Base {
    let id = cx.model.evses[idx].id;
    let connectors: Vec<_> = cx
        .model
        .connectors
        .iter()
        .filter(|c| c.evse == id)
        .collect();
    if !connectors.is_empty() && connectors.iter().all(|c| c.fault.is_some()) {
        Base::Faulted
    } else if !cx.model.connector_usable(idx, None, &cx.vars) {
        Base::Unavailable
    } else if cx.model.evses[idx].transaction.is_some() || connectors.iter().any(|c| c.plugged) {
        Base::Occupied
    } else {
        Base::Available
    }
}

/// The gates as they are now (the previous decision), for the hysteresis in [`free`].
fn current_gates(cx: &Ctx) -> Vec<bool> {
    cx.model
        .evses
        .iter()
        .map(|e| e.reservation.exclusive)
        .collect()
}

/// An EVSE a reservation of no particular EVSE may count on: Available and not reserved
/// itself. One already held exclusive stays free while a driver who may not charge there
/// plugs in (G01.FR.09: its status does not change).
fn free(cx: &Ctx, held: &[&Reservation], exclusive_now: &[bool], idx: usize) -> bool {
    let id = cx.model.evses[idx].id;
    if held.iter().any(|r| r.evse == Some(id)) {
        return false;
    }
    match base(cx, idx) {
        Base::Available => true,
        Base::Occupied => exclusive_now[idx],
        Base::Unavailable | Base::Faulted => false,
    }
}

/// Whether every reservation of no particular EVSE can have its own free EVSE of its type
/// (a bipartite matching; a station has a handful of EVSEs).
fn feasible(cx: &Ctx, held: &[&Reservation], exclusive_now: &[bool]) -> bool {
    let free: Vec<bool> = (0..cx.model.evses.len())
        .map(|i| free(cx, held, exclusive_now, i))
        .collect();
    matches_all(cx, held, &free)
}

fn matches_all(cx: &Ctx, held: &[&Reservation], free: &[bool]) -> bool {
    let floating: Vec<&Reservation> = held.iter().copied().filter(|r| r.evse.is_none()).collect();
    let mut owner: Vec<Option<usize>> = vec![None; free.len()];
    fn augment(
        cx: &Ctx,
        r: usize,
        floating: &[&Reservation],
        free: &[bool],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for e in 0..free.len() {
            if !free[e] || seen[e] || !has_type(cx, e, floating[r].connector_type.as_deref()) {
                continue;
            }
            seen[e] = true;
            if owner[e].is_none_or(|other| augment(cx, other, floating, free, owner, seen)) {
                owner[e] = Some(r);
                return true;
            }
        }
        false
    }
    (0..floating.len()).all(|r| {
        let mut seen = vec![false; free.len()];
        augment(cx, r, &floating, free, &mut owner, &mut seen)
    })
}

/// Each EVSE's gate: reserved for one reservation, or needed by those of no EVSE (taking it
/// would leave one of them without an EVSE: H01.FR.20/24), with who may use it.
fn gates_for_with(cx: &Ctx, held: &[&Reservation], exclusive_now: &[bool]) -> Vec<ReservationGate> {
    let free: Vec<bool> = (0..cx.model.evses.len())
        .map(|i| free(cx, held, exclusive_now, i))
        .collect();
    (0..cx.model.evses.len())
        .map(|idx| {
            let id = cx.model.evses[idx].id;
            let claimant = |r: &Reservation| Claimant {
                reservation_id: r.id,
                id_token: r.id_token.clone(),
                group: r.group.clone(),
            };
            if let Some(r) = held.iter().find(|r| r.evse == Some(id)) {
                return ReservationGate {
                    exclusive: true,
                    claimants: vec![claimant(r)],
                };
            }
            let claimants: Vec<Claimant> = held
                .iter()
                .filter(|r| r.evse.is_none() && has_type(cx, idx, r.connector_type.as_deref()))
                .map(|r| claimant(r))
                .collect();
            let exclusive = free[idx] && !claimants.is_empty() && {
                let mut without = free.clone();
                without[idx] = false;
                !matches_all(cx, held, &without)
            };
            ReservationGate {
                exclusive,
                claimants,
            }
        })
        .collect()
}
