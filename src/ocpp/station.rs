//! The charging station: it owns the link ([`Session`], inside the [`Ctx`] every block gets)
//! and the functional blocks (`blocks/`), and routes: CSMS calls to the block that answers
//! them (through the 2.0.1 adapter, or the 1.6 one in `v16/` that spells them as 2.0.1 calls
//! first), answers to the block that asked, hardware inputs and
//! timers to their block, and the core events one block raises to the blocks that react.
//! No OCPP rule lives here.
//!
//! Adding a block: a module under `blocks/` with its state and handlers, a field here, and a
//! line in each routing table it takes part in (`handle_call`, `handle_timeout`,
//! `route_events`).
//!
//! # Calling contract
//!
//! [`Station`] is sans-IO: it never touches a socket, a file or a clock. The shell drives it:
//!
//! 1. Load the [`Persisted`] state and build it with [`Station::new`], passing the monotonic
//!    time and the system's UTC estimate.
//! 2. Feed every event in as it happens, with the current monotonic time (which never goes
//!    backwards): [`handle_connected`](Station::handle_connected) /
//!    [`handle_connect_failed`](Station::handle_connect_failed) /
//!    [`handle_disconnected`](Station::handle_disconnected) for the WebSocket,
//!    [`handle_frame`](Station::handle_frame) for each text message,
//!    [`handle_pong`](Station::handle_pong), [`handle_input`](Station::handle_input) for
//!    hardware, meters and local commands, and [`handle_timeout`](Station::handle_timeout) when
//!    the deadline from [`poll_timeout`](Station::poll_timeout) has passed.
//! 3. After each call, drain [`poll_output`](Station::poll_output) and execute the effects
//!    strictly in order: a [`Output::Persist`] batch must be durable before any later output
//!    is executed (persist before send).
//! 4. Sleep until [`poll_timeout`](Station::poll_timeout) or the next event.

use super::blocks::authorization::Authorization;
use super::blocks::availability::Availability;
use super::blocks::data_transfer::DataTransfer;
use super::blocks::diagnostics::Diagnostics;
use super::blocks::display::{self, Display, ScreenScope, ScreenState};
use super::blocks::firmware::Firmware;
use super::blocks::provisioning::{LiveValues, Provisioning};
use super::blocks::reservations::Reservations;
use super::blocks::security::Security;
use super::blocks::smart_charging::SmartCharging;
use super::blocks::tariff::TariffCost;
use super::blocks::transactions::Transactions;
use super::clock::{Instant, TimeSource, UtcTime, WallClock};
use super::ctx::{CoreEvent, Ctx};
use super::devmodel::{DeviceModel, Var};
use super::model::Model;
use super::outbox::Outbox;
use super::persist::Persisted;
use super::rpc::{self, CallError, CallErrorCode, Frame};
use super::session::{InFlightKind, RequestKind, Session};
use super::timer::{Rng, Timer};
use super::v201::adapter::{self, answer};
use super::v201::charging;
use super::v201::display as v201_display;
use super::v201::reservation;
use super::v201::{self, Action};
use serde_json::Value;
use std::time::Duration;
use tracing::{error, info, warn};

/// How long after answering a credential change the connection is closed for a new one.
const RELINK_GRACE: Duration = Duration::from_secs(1);

pub use super::contract::*;
pub use super::snapshot::*;

pub struct Station {
    cx: Ctx,
    transactions: Transactions,
    authorization: Authorization,
    data_transfer: DataTransfer,
    availability: Availability,
    provisioning: Provisioning,
    security: Security,
    firmware: Firmware,
    diagnostics: Diagnostics,
    smart_charging: SmartCharging,
    display: Display,
    reservations: Reservations,
    tariff: TariffCost,
}

impl Station {
    pub fn new(
        config: StationConfig,
        persisted: Persisted,
        now: Instant,
        system_utc: UtcTime,
        rng_seed: u64,
    ) -> Self {
        let mut model = Model::new(config.evses.iter().map(|e| (e.id, e.connectors.clone())));
        for e in &config.evses {
            for (c, kind) in &e.connector_types {
                if let Some(i) = model.connector_index(e.id, *c) {
                    model.connectors[i].kind = Some(kind.clone());
                }
            }
        }
        let link = Session::new(
            config.boot_reason,
            config.variables.seconds(Var::HeartbeatInterval),
            Outbox::new(persisted.queue.clone(), persisted.last_queue_seq),
            config.max_queue_bytes,
            super::network::Network::new(vec![config.network], "1", None),
        );
        let mut cx = Ctx::new(
            config.identity,
            config.variables,
            WallClock::new(now, system_utc),
            Rng::new(rng_seed),
            link,
            model,
        );
        cx.protocol = config.protocol;
        cx.link16.unsigned_firmware = config.firmware.allow_unsigned;
        cx.restore16(&persisted);
        let availability = Availability::restore(&mut cx, &persisted);
        let provisioning = Provisioning::restore(&mut cx, &persisted, config.client_certificate);
        let smart_charging = SmartCharging::restore(&mut cx, &persisted, config.charging);
        let display = Display::restore(&mut cx, now, &persisted);
        let reservations = Reservations::restore(&mut cx, &persisted);
        let mut station = Station {
            cx,
            availability,
            transactions: Transactions::new(config.evses.iter().map(|e| e.id)),
            authorization: Authorization::restore(&persisted),
            data_transfer: DataTransfer::new(config.data_transfer),
            provisioning,
            security: Security::new(config.certificates),
            firmware: Firmware::new(config.firmware),
            diagnostics: Diagnostics::new(config.diagnostics_log),
            smart_charging,
            display,
            reservations,
            tariff: TariffCost::new(config.evses.len()),
        };
        if config.protocol == Protocol::V16 {
            station.cx.transaction_points16();
        }
        station.security.restore_pending_csr(&persisted);
        // A03: the first validity check soon after start-up, then daily.
        station
            .cx
            .timers
            .set(Timer::CertificateCheck, now + Duration::from_secs(300));
        station
            .transactions
            .recover(&mut station.cx, now, &persisted);
        // Reserved connectors, and what expired while the agent was down (H04).
        station.refresh_reservations(now);
        station.route_events(now);
        // O02.FR.02: the messages of transactions that did not survive the restart.
        station.display.transactions_changed(&mut station.cx, now);
        station
            .firmware
            .restore_firmware(&mut station.cx, now, &persisted);
        station
            .diagnostics
            .restore_log_upload(&mut station.cx, now, &persisted);
        station.cx.security_event(now, "StartupOfTheDevice", None);
        station.transactions.schedule_aligned(&mut station.cx, now);
        // Every EVSE's hardware learns its limit before anything can charge.
        station.smart_charging.apply(&mut station.cx, now);
        // B01.FR.01: connect and boot right after start-up.
        station.cx.timers.set(Timer::Connect, now);
        station
    }

    // ----- the calling contract -------------------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        self.cx.outputs.pop_front()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.cx.timers.expire(now) {
            if self.cx.link_timer(now, timer) {
                continue;
            }
            match timer {
                Timer::CsrRetry => self.security.csr_retry(&mut self.cx, now),
                Timer::CertificateCheck => {
                    self.security.check_certificate_expiry(&mut self.cx, now)
                }
                Timer::Firmware => self.firmware.firmware_timer(&mut self.cx, now),
                Timer::LogRetry => self.diagnostics.log_retry_timer(&mut self.cx, now),
                Timer::ChargingLimit => self.smart_charging.limit_timer(&mut self.cx, now),
                Timer::DisplayMessage => self.display.expire(&mut self.cx, now),
                Timer::ReservationExpiry => {
                    self.transactions.publish_authorized(&mut self.cx);
                    self.reservations.expiry_timer(&mut self.cx, now)
                }
                _ => self
                    .transactions
                    .transaction_timer(&mut self.cx, now, timer),
            }
            // Each timer's consequences before the next timer.
            self.route_events(now);
        }
        self.cx.pump(now);
    }

    /// The WebSocket is open (handshake done, subprotocol agreed).
    pub fn handle_connected(&mut self, now: Instant) {
        if let Some(all) = self.cx.link_connected(now) {
            // B04: after an outage, report connectors that changed, or all of them if the
            // outage was longer than OfflineThreshold.
            self.cx.queue_connector_statuses(now, all);
            self.availability.report_faults(&mut self.cx, now);
            self.smart_charging.report_external(&mut self.cx);
        }
        self.route_events(now);
        self.cx.pump(now);
    }

    /// The attempt to open the WebSocket failed, and why: some causes are security events
    /// (A00.FR.310/413, A00.FR.316, A01).
    pub fn handle_connect_failed(&mut self, now: Instant, reason: &str, failure: ConnectFailure) {
        self.cx.link_connect_failed(now, reason, failure);
        self.route_events(now);
    }

    /// The WebSocket closed or broke.
    pub fn handle_disconnected(&mut self, now: Instant, reason: &str) {
        self.cx.link_disconnected(now, reason);
        self.route_events(now);
        // Nothing goes out now, but a Reset waiting for answers restarts at once.
        self.cx.pump(now);
    }

    pub fn handle_pong(&mut self, _now: Instant) {
        self.cx.link_pong();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cx.timers.next_deadline()
    }

    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), InputError> {
        match input {
            Input::Plug {
                evse,
                connector,
                plugged,
            } => {
                let index = self
                    .cx
                    .model
                    .connector_index(evse, connector)
                    .ok_or(InputError::UnknownConnector { evse, connector })?;
                if self.cx.model.connectors[index].plugged == plugged {
                    return Ok(());
                }
                let before = self.cx.model.connector_status(index, &self.cx.vars);
                self.cx.model.connectors[index].plugged = plugged;
                info!(evse, connector, plugged, "plug state changed");
                // While offline the change is reported after reconnect (B04.FR.02); before
                // Accepted, the boot answer makes us report every connector (B01.FR.05). A
                // Reserved connector stays Reserved (G01.FR.09).
                if self.cx.can_send_normal()
                    && self.cx.model.connector_status(index, &self.cx.vars) != before
                {
                    self.cx.queue_status(now, index);
                }
                self.transactions
                    .plug_changed(&mut self.cx, now, evse, connector, plugged);
                self.refresh_reservations(now);
            }
            Input::Token { evse, id_token } => {
                let index = self
                    .cx
                    .model
                    .evse_index(evse)
                    .ok_or(InputError::UnknownEvse { evse })?;
                let mut token = adapter::id_token(&id_token).map_err(InputError::BadToken)?;
                if self.cx.protocol == Protocol::V16 {
                    // 1.6 idTags are strings of up to 20 characters (IdToken, 7.28), all of
                    // one kind.
                    if token.id_token.chars().count() > 20 {
                        return Err(InputError::BadToken(
                            "an OCPP 1.6 idTag has at most 20 characters".into(),
                        ));
                    }
                    token.kind = super::v16::core_profile::TOKEN_TYPE.into();
                    token.additional_info.clear();
                }
                self.transactions.present_token(
                    &mut self.cx,
                    &mut self.authorization,
                    now,
                    index,
                    token,
                );
            }
            Input::Meter { evse, reading } => {
                let index = self
                    .cx
                    .model
                    .evse_index(evse)
                    .ok_or(InputError::UnknownEvse { evse })?;
                self.transactions
                    .meter_reading(&mut self.cx, now, index, reading);
                self.smart_charging
                    .meter_reading(&mut self.cx, now, index, reading.power_w);
            }
            Input::CsrCreated { csr_pem, spki_der } => {
                self.security
                    .csr_created(&mut self.cx, now, csr_pem, spki_der)
            }
            Input::CsrFailed { reason } => {
                error!(reason, "could not make a key and CSR");
            }
            Input::Firmware {
                request_id,
                step,
                result,
            } => self
                .firmware
                .firmware_result(&mut self.cx, now, request_id, step, result),
            Input::LogUploaded { request_id, result } => {
                self.diagnostics
                    .log_upload_result(&mut self.cx, now, request_id, result)
            }
            Input::Storage { problem } => {
                self.provisioning.storage_changed(problem.is_some());
                match problem {
                    // The flash is full or failing: the spec's MemoryExhaustion (once per start).
                    Some(why) => {
                        error!(
                            problem = why,
                            "the journal cannot write; keeping changes in memory"
                        );
                        self.cx
                            .security_event_once(now, "MemoryExhaustion", Some(&why));
                    }
                    None => info!("the journal writes again"),
                }
            }
            Input::ExternalLimit {
                evse,
                amps,
                duration_s,
            } => {
                self.smart_charging
                    .external_limit(&mut self.cx, now, evse, amps, duration_s)
                    .map_err(InputError::Refused)?;
            }
            Input::Fault {
                evse,
                connector,
                problem,
            } => {
                let index = self
                    .cx
                    .model
                    .connector_index(evse, connector)
                    .ok_or(InputError::UnknownConnector { evse, connector })?;
                self.availability
                    .connector_fault(&mut self.cx, now, index, problem);
            }
        }
        self.route_events(now);
        self.cx.pump(now);
        Ok(())
    }

    pub fn handle_frame(&mut self, now: Instant, text: &str) {
        match rpc::decode(text) {
            Err(e) => {
                warn!(error = %e.error.description, "unreadable frame from the CSMS");
                self.cx
                    .security_event_once(now, "InvalidMessages", Some(&e.error.description));
                if e.answer {
                    let frame = self.cx.encode_error(&e.id, &e.error);
                    self.cx.send_raw(frame);
                }
            }
            Ok(Frame::Call {
                id,
                action,
                payload,
            }) => {
                let answer = match self.cx.protocol {
                    Protocol::V201 => self.handle_call(now, &action, payload),
                    // 1.6 4.2: while Rejected, no answer at all (2.0.1 answers SecurityError).
                    Protocol::V16 if self.cx.link.registration == Registration::Rejected => {
                        warn!(
                            action,
                            message_id = id,
                            "a CSMS call while Rejected: not answered (1.6 4.2)"
                        );
                        return;
                    }
                    Protocol::V16 => self.handle_call16(now, &action, payload),
                };
                let frame = match answer {
                    Ok(result) => rpc::encode_result(&id, &result),
                    Err(error) => {
                        warn!(action, message_id = id, code = %error.code, "answering a CSMS call with CALLERROR");
                        self.cx.encode_error(&id, &error)
                    }
                };
                self.cx.send_raw(frame);
                if std::mem::take(&mut self.cx.link.reconnect_after_answer) {
                    self.cx.timers.set(Timer::Relink, now + RELINK_GRACE);
                }
            }
            Ok(Frame::CallResult { id, payload }) => self.handle_result(now, &id, payload),
            Ok(Frame::CallError {
                id,
                code,
                description,
                ..
            }) => self.cx.link_call_error(now, &id, &code, &description),
        }
        self.route_events(now);
        self.cx.pump(now);
    }

    /// The frame of the queued message the core asked to send (`Output::SendQueued`), as
    /// the journal gave it back: the shell sends it. `None` when 1.6 has no such message:
    /// nothing is sent, it counts as delivered, and the outputs that follow from that
    /// (journal, next message) are queued.
    pub fn queued_frame(
        &mut self,
        now: Instant,
        message_id: &str,
        message: &super::persist::QueuedMessage,
    ) -> Option<String> {
        let meta = &message.meta;
        if self.cx.protocol == Protocol::V201 {
            return Some(rpc::encode_call(message_id, &meta.action, &message.payload));
        }
        let frame = self.cx.queued_frame16(
            message_id,
            &meta.action,
            meta.tx_id.as_deref(),
            &message.payload,
        );
        if frame.is_none() {
            self.handle_result(now, message_id, serde_json::json!({}));
            self.route_events(now);
            self.cx.pump(now);
        }
        frame
    }

    /// A CSMS call in 1.6: translated to the 2.0.1 call of the block that answers it, and its
    /// answer back (or answered by the adapter).
    fn handle_call16(
        &mut self,
        now: Instant,
        action: &str,
        payload: Value,
    ) -> Result<Value, CallError> {
        use super::v16::adapter::{self as v16, Inbound};
        let (known, inbound) = self
            .cx
            .lookup16(|lk| v16::request(action, payload.clone(), lk))?;
        match inbound {
            Inbound::Answer(answer) => Ok(answer),
            Inbound::Link(request) => Ok(self.cx.link_request16(now, request)),
            Inbound::Call {
                action: call,
                payload: call_payload,
            } => {
                self.cx.calling16(known, &payload);
                let answer = self.handle_call(now, call.as_str(), call_payload);
                self.cx.called16();
                let answer = match answer {
                    Ok(answer) => answer,
                    Err(e) => return v16::error_answer(known, &e).ok_or(e),
                };
                Ok(self
                    .cx
                    .lookup16(|lk| v16::response(known, &payload, answer, lk)))
            }
        }
    }

    // ----- queries ---------------------------------------------------------------------------

    pub fn connection(&self) -> ConnectionState {
        self.cx.link.connection
    }

    pub fn registration(&self) -> Registration {
        self.cx.link.registration
    }

    pub fn utc(&self, now: Instant) -> UtcTime {
        self.cx.clock.utc(now)
    }

    pub fn snapshot(&self, now: Instant) -> StatusSnapshot {
        StatusSnapshot {
            connection: self.cx.link.connection,
            registration: self.cx.link.registration,
            utc: self.cx.clock.utc(now).to_rfc3339(),
            time_source: match self.cx.clock.source() {
                TimeSource::System => "system",
                TimeSource::Csms => "csms",
            },
            heartbeat_interval_s: self.cx.link.heartbeat_interval.as_secs(),
            queue: self.cx.queue_snapshot(now),
            evses: {
                let mut evses = self.transactions.snapshot(&self.cx);
                for (e, (id, limit)) in evses.iter_mut().zip(self.smart_charging.applied(&self.cx))
                {
                    debug_assert_eq!(e.id, id);
                    e.charging_limit = limit.map(|l| LimitSnapshot {
                        amps: (l.amps * 10.0).round() / 10.0,
                        phases: l.phases,
                    });
                }
                for (idx, e) in evses.iter_mut().enumerate() {
                    e.price = self.tariff.price(&self.cx, idx);
                }
                evses
            },
            firmware: self.firmware.snapshot(),
        }
    }

    /// What the screens show now: the station's main display (EVSE 0), then each EVSE's, with
    /// the items in the order to show them (see [`ScreenSnapshot::items`]).
    pub fn display(&self, now: Instant) -> DisplaySnapshot {
        let model = &self.cx.model;
        let states: Vec<ScreenState> = (0..model.evses.len())
            .map(|i| ScreenState::of_evse(model, &self.cx.vars, i))
            .collect();
        let station = (0, ScreenState::of_station(&states), None);
        let evses = model.evses.iter().zip(&states).map(|(e, s)| {
            let tx = e.active_transaction.as_ref().map(|t| t.id.as_str());
            (e.id, *s, tx)
        });
        let screens = std::iter::once(station)
            .chain(evses)
            .map(|(evse, state, transaction_id)| {
                let scope = ScreenScope {
                    evse,
                    state,
                    transaction_id,
                };
                let mut messages: Vec<_> = self.display.showing(&self.cx, now, scope).collect();
                messages.sort_by_key(|m| {
                    (
                        m.priority,
                        display::specificity(m),
                        std::cmp::Reverse(m.seq),
                    )
                });
                let mut items: Vec<DisplayItem> = messages
                    .into_iter()
                    .map(|m| DisplayItem {
                        source: DisplaySource::Csms,
                        id: Some(m.id),
                        priority: m.priority,
                        format: m.content.format.clone(),
                        language: m.content.language.clone(),
                        content: m.content.content.clone(),
                        transaction_id: m.transaction_id.clone(),
                        until: m
                            .end_ms
                            .map(|ms| UtcTime::from_unix_millis(ms).to_rfc3339()),
                    })
                    .collect();
                // The driver's price at an EVSE (I); a stable sort keeps the CSMS's messages
                // first within a priority, those in the driver's languages before the others
                // (C01.FR.08/09, O01.FR.08).
                let price = model
                    .evse_index(evse)
                    .filter(|_| evse != 0)
                    .and_then(|i| self.tariff.price(&self.cx, i));
                let languages = price
                    .as_ref()
                    .map(|p| p.languages.clone())
                    .unwrap_or_default();
                if let Some(price) = &price {
                    items.extend(DisplayItem::of_price(price));
                }
                items.sort_by_key(|i| (i.priority, language_rank(&languages, i)));
                ScreenSnapshot {
                    evse,
                    state,
                    languages,
                    items,
                }
            })
            .collect();
        DisplaySnapshot { screens }
    }

    /// A CALLRESULT: the link takes its request back, the block that asked applies it.
    fn handle_result(&mut self, now: Instant, id: &str, payload: Value) {
        let Some((kind, sent16)) = self.cx.take_answered(id) else {
            return;
        };
        // An answer to a message sent in 1.6: checked against the 1.6 schema, then in the
        // 2.0.1 shape the block that made the message reads.
        let payload = match sent16 {
            None => Ok(payload),
            Some((sent, request)) => {
                let tx = match &kind {
                    InFlightKind::Queued(meta) => meta.tx_id.as_deref(),
                    InFlightKind::Volatile(_) => None,
                };
                self.cx.answer16(tx, sent, &request, payload)
            }
        };
        let payload = match payload {
            Ok(payload) => payload,
            Err(v) => {
                warn!(
                    message_id = id,
                    path = v.path,
                    problem = v.message,
                    "CSMS answered with an invalid payload"
                );
                self.cx.request_failed(now, kind);
                return;
            }
        };
        let outcome = match &kind {
            InFlightKind::Queued(meta) => {
                let outcome = self.transactions.queued_answered(
                    &mut self.cx,
                    &mut self.authorization,
                    now,
                    meta,
                    payload,
                );
                if outcome.is_ok() && meta.action == "FirmwareStatusNotification" {
                    self.firmware
                        .firmware_status_delivered(&mut self.cx, now, meta.queue_seq);
                }
                outcome
            }
            InFlightKind::Volatile(request) => match &request.kind {
                RequestKind::BootNotification | RequestKind::Heartbeat => self
                    .cx
                    .link_answered(now, &request.kind, payload)
                    .unwrap_or(Ok(())),
                RequestKind::StatusNotification { connector, status } => {
                    v201::decode_response::<v201::StatusNotificationResponse>(payload)
                        .map(|_| self.cx.model.connectors[*connector].reported = Some(*status))
                }
                RequestKind::Authorize {
                    evse,
                    id_token,
                    purpose,
                } => v201::decode_response::<v201::AuthorizeResponse>(payload).map(|r| {
                    let info = v201::authorization_info(&r.id_token_info);
                    self.transactions.authorize_answered(
                        &mut self.cx,
                        &mut self.authorization,
                        now,
                        *evse,
                        id_token.clone(),
                        purpose.clone(),
                        Some(info),
                    )
                }),
                RequestKind::SignCertificate => {
                    v201::decode_response::<v201::SignCertificateResponse>(payload).map(|r| {
                        self.security
                            .sign_certificate_answered(&mut self.cx, r.status)
                    })
                }
                RequestKind::MeterValues
                | RequestKind::NotifyReport
                | RequestKind::NotifyEvent { .. }
                | RequestKind::Other(_) => {
                    v201::validate::validate(request.action.response_schema(), &payload)
                }
            },
        };
        if let Err(v) = outcome {
            warn!(
                message_id = id,
                path = v.path,
                problem = v.message,
                "CSMS answered with an invalid payload"
            );
            self.cx.request_failed(now, kind);
        }
    }

    /// The reservations after a change of the station, with who is authorized where.
    fn refresh_reservations(&mut self, now: Instant) {
        self.transactions.publish_authorized(&mut self.cx);
        self.reservations.refresh(&mut self.cx, now);
    }

    /// Delivers the core events raised so far, in order, to the blocks that react to them.
    fn route_events(&mut self, now: Instant) {
        self.route_core_events(now);
        if self.cx.protocol == Protocol::V16 {
            self.cx.sync_statuses16(now);
        }
    }

    fn route_core_events(&mut self, now: Instant) {
        while let Some(event) = self.cx.events.pop_front() {
            match event {
                CoreEvent::RegistrationAccepted => {
                    // B01.FR.05: report every connector.
                    self.cx.queue_connector_statuses(now, true);
                    self.availability.report_faults(&mut self.cx, now);
                    self.smart_charging.report_external(&mut self.cx);
                    self.transactions.accepted(&mut self.cx, now);
                }
                CoreEvent::ClockAdjusted {
                    delta_ms,
                    was_trusted,
                    mut batch,
                } => {
                    if !was_trusted {
                        batch.extend(self.transactions.rebase_transactions(delta_ms));
                        if !batch.is_empty() {
                            info!(
                                entries = batch.len(),
                                delta_ms, "rebased timestamps made before the CSMS gave the time"
                            );
                            self.cx.persist(batch);
                        }
                    }
                    if delta_ms.abs() > 1000 {
                        self.transactions.schedule_aligned(&mut self.cx, now);
                        self.smart_charging.apply(&mut self.cx, now);
                        self.display.expire(&mut self.cx, now);
                        self.refresh_reservations(now);
                    }
                }
                CoreEvent::AuthorizeUnanswered {
                    evse,
                    id_token,
                    purpose,
                } => self.transactions.authorize_answered(
                    &mut self.cx,
                    &mut self.authorization,
                    now,
                    evse,
                    id_token,
                    purpose,
                    None,
                ),
                CoreEvent::TransactionStarted { evse } => {
                    self.firmware.on_event(&mut self.cx, now, &event);
                    self.smart_charging.on_event(&mut self.cx, now, &event);
                    self.refresh_reservations(now);
                    if let Some(idx) = self.cx.model.evse_index(evse) {
                        self.tariff.transaction_started(&self.cx, idx);
                    }
                }
                CoreEvent::TransactionEnded { .. } => {
                    self.availability.apply_waiting(&mut self.cx, now);
                    self.firmware.on_event(&mut self.cx, now, &event);
                    self.provisioning.apply_waiting_reset(&mut self.cx, now);
                    self.smart_charging.on_event(&mut self.cx, now, &event);
                    self.display.transactions_changed(&mut self.cx, now);
                    self.refresh_reservations(now);
                    if let CoreEvent::TransactionEnded { evse } = event {
                        if let Some(idx) = self.cx.model.evse_index(evse) {
                            self.tariff.transaction_ended(&self.cx, idx);
                        }
                    }
                }
                CoreEvent::DriverAuthorized {
                    evse,
                    personal_message,
                    languages,
                } => {
                    if let Some(idx) = self.cx.model.evse_index(evse) {
                        self.tariff
                            .session_authorized(&self.cx, idx, personal_message, languages);
                    }
                }
                CoreEvent::TransactionAnswered {
                    transaction_id,
                    ended,
                    total_cost,
                    message,
                } => self.tariff.transaction_answer(
                    &self.cx,
                    &transaction_id,
                    ended,
                    total_cost,
                    message,
                ),
                CoreEvent::ReservationUsed { id } => self.reservations.used(&mut self.cx, now, id),
                CoreEvent::ReservationsEnded { ended } => {
                    self.reservations.report_ended(&mut self.cx, now, ended)
                }
                CoreEvent::ChargingRateChanged { evse } => {
                    if let Some(idx) = self.cx.model.evse_index(evse) {
                        self.transactions
                            .charging_rate_changed(&mut self.cx, now, idx);
                    }
                }
                CoreEvent::AvailabilityChanged => {
                    self.transactions.availability_changed(&mut self.cx);
                    self.refresh_reservations(now);
                }
                CoreEvent::FaultChanged { evse } => {
                    if let Some(idx) = self.cx.model.evse_index(evse) {
                        self.transactions.refresh_power_path(&mut self.cx, now, idx);
                    }
                    self.refresh_reservations(now);
                }
                CoreEvent::SmartChargingSwitched => self.smart_charging.apply(&mut self.cx, now),
                CoreEvent::AlignedIntervalChanged => {
                    self.transactions.schedule_aligned(&mut self.cx, now)
                }
                CoreEvent::FirmwareIdle => {
                    self.availability.apply_waiting(&mut self.cx, now);
                    self.provisioning.apply_waiting_reset(&mut self.cx, now);
                }
                CoreEvent::ConnectorStatusesChanged => {
                    self.refresh_reservations(now);
                    if self.cx.can_send_normal() {
                        self.cx.queue_connector_statuses(now, false);
                    }
                }
            }
        }
    }

    /// Answers a CALL from the CSMS (part 4 4.2.3 and table 8): the 2.0.1 adapter checks and
    /// decodes it, the block it belongs to answers.
    fn handle_call(
        &mut self,
        now: Instant,
        action: &str,
        payload: Value,
    ) -> Result<Value, CallError> {
        // B03.FR.08: while Rejected, every CSMS request is a security error.
        if self.cx.link.registration == Registration::Rejected {
            return Err(CallError::new(
                CallErrorCode::SecurityError,
                "the charging station is not accepted by the CSMS",
            ));
        }
        let known = match adapter::check_call(action, &payload) {
            Ok(known) => known,
            // B08.FR.02: a criterion outside the enumeration is answered NotSupported.
            Err(e) => return Provisioning::unsupported_criteria(action, &payload).ok_or(e),
        };
        if known == Action::TriggerMessage {
            return answer(payload, |r| Ok(self.trigger_message(now, r)));
        }
        let live = self.live_values();
        let Station {
            cx,
            transactions,
            authorization,
            data_transfer,
            availability,
            provisioning,
            security,
            firmware,
            diagnostics,
            smart_charging,
            display,
            reservations,
            tariff,
        } = self;
        let result = match known {
            Action::RequestStartTransaction => answer(payload, |r| {
                // K05: a TxProfile for the transaction it starts, checked first (K05.FR.05);
                // ignored while smart charging is off (K05.FR.04).
                let profile = match charging::remote_start_profile(smart_charging, cx, &r) {
                    Ok(profile) => profile,
                    Err(rejection) => return Ok(charging::remote_start_rejected(&rejection)),
                };
                let (response, evse) = transactions.request_start(cx, authorization, now, r)?;
                if let (Some(profile), Some(evse)) = (profile, evse) {
                    smart_charging.remote_start(cx, now, evse, profile);
                }
                Ok(response)
            }),
            Action::RequestStopTransaction => {
                answer(payload, |r| transactions.request_stop(cx, now, r))
            }
            Action::GetTransactionStatus => {
                answer(payload, |r| transactions.transaction_status(cx, r))
            }
            Action::UnlockConnector => {
                answer(payload, |r| transactions.unlock_connector(cx, now, r))
            }
            Action::ClearCache => Ok(authorization.clear_cache(cx)),
            Action::GetLocalListVersion => Ok(authorization.local_list_version(cx)),
            Action::SendLocalList => answer(payload, |r| authorization.send_local_list(cx, r)),
            Action::CustomerInformation => {
                let sessions = transactions.session_tokens();
                answer(payload, |r| {
                    authorization.customer_information(cx, now, &sessions, r)
                })
            }
            Action::GetVariables => {
                answer(payload, |r| provisioning.get_variables(cx, now, &live, r))
            }
            Action::SetVariables => answer(payload, |r| provisioning.set_variables(cx, now, r)),
            Action::GetBaseReport => {
                answer(payload, |r| provisioning.get_base_report(cx, now, &live, r))
            }
            Action::GetReport => {
                let bytes = payload.to_string().len();
                answer(payload, |r| {
                    provisioning.get_report(cx, now, &live, r, bytes)
                })
            }
            Action::SetNetworkProfile => {
                answer(payload, |r| provisioning.set_network_profile(cx, r))
            }
            Action::Reset => answer(payload, |r| {
                let (response, reset_now) =
                    provisioning.reset(cx, r, firmware.firmware_installing())?;
                if let Some(scope) = reset_now {
                    // B11: transactions end with ImmediateReset before the reset.
                    transactions.end_for_reset(cx, now, scope);
                    provisioning.execute_reset(cx, now, scope);
                }
                Ok(response)
            }),
            Action::ChangeAvailability => {
                answer(payload, |r| availability.change_availability(cx, now, r))
            }
            Action::DataTransfer => answer(payload, |r| Ok(data_transfer.data_transfer(r))),
            Action::GetInstalledCertificateIds => {
                answer(payload, |r| security.get_installed_certificate_ids(r))
            }
            Action::InstallCertificate => {
                answer(payload, |r| security.install_certificate(cx, now, r))
            }
            Action::DeleteCertificate => answer(payload, |r| security.delete_certificate(cx, r)),
            Action::CertificateSigned => {
                answer(payload, |r| security.certificate_signed(cx, now, r))
            }
            Action::GetLog => answer(payload, |r| diagnostics.get_log(cx, now, r)),
            Action::SetChargingProfile => answer(payload, |r| {
                charging::set_charging_profile(smart_charging, cx, now, r)
            }),
            Action::ClearChargingProfile => answer(payload, |r| {
                charging::clear_charging_profile(smart_charging, cx, now, r)
            }),
            Action::GetChargingProfiles => answer(payload, |r| {
                charging::get_charging_profiles(smart_charging, cx, r)
            }),
            Action::GetCompositeSchedule => answer(payload, |r| {
                charging::get_composite_schedule(smart_charging, cx, now, r)
            }),
            Action::SetDisplayMessage => answer(payload, |r| {
                v201_display::set_display_message(display, cx, now, r)
            }),
            Action::GetDisplayMessages => answer(payload, |r| {
                v201_display::get_display_messages(display, cx, now, r)
            }),
            Action::ClearDisplayMessage => answer(payload, |r| {
                v201_display::clear_display_message(display, cx, now, r)
            }),
            // I02.FR.02: answered whatever the transaction; shown if it is one of ours.
            Action::CostUpdated => answer(payload, |r: v201::CostUpdatedRequest| {
                if !tariff.cost_updated(cx, &r.transaction_id, r.total_cost) {
                    info!(
                        transaction_id = r.transaction_id,
                        "CostUpdated for a transaction no EVSE has"
                    );
                }
                Ok(v201::CostUpdatedResponse { custom_data: None })
            }),
            Action::ReserveNow => answer(payload, |r| {
                transactions.publish_authorized(cx);
                reservation::reserve_now(reservations, cx, now, r)
            }),
            Action::CancelReservation => answer(payload, |r| {
                transactions.publish_authorized(cx);
                reservation::cancel_reservation(reservations, cx, now, r)
            }),
            Action::UpdateFirmware => {
                let roots = security.manufacturer_roots();
                answer(payload, |r| firmware.update_firmware(cx, now, r, &roots))
            }
            _ => Err(CallError::new(
                CallErrorCode::NotSupported,
                format!("{action} is not supported by this charging station yet"),
            )),
        }?;
        debug_assert!(
            v201::validate::validate(known.response_schema(), &result).is_ok(),
            "we built an invalid {action} response: {result}"
        );
        Ok(result)
    }

    /// What the device model reports that the blocks keep (dynamic variables).
    fn live_values(&self) -> LiveValues {
        LiveValues {
            power_w: self.transactions.power_w(),
            certificate_entries: self.security.certificate_entries(),
            local_list_entries: self.authorization.local_list_entries(),
            charging_profile_entries: self.smart_charging.entries(),
            display_messages: self.display.entries(),
        }
    }

    /// The device model as it is now (for `ctl variables`): one entry per variable instance,
    /// optionally only for one component.
    pub fn device_model(&self, now: Instant, component: Option<&str>) -> Vec<Value> {
        let mut entries =
            self.provisioning
                .device_model(&self.cx, now, &self.live_values(), component);
        // Each variable's 1.6 configuration keys, for an integrator whose CSMS speaks 1.6.
        for entry in &mut entries {
            let key = format!(
                "{}.{}{}",
                entry["component"]["name"].as_str().unwrap_or_default(),
                entry["variable"]["name"].as_str().unwrap_or_default(),
                entry["variable"]["instance"]
                    .as_str()
                    .map(|i| format!("[{i}]"))
                    .unwrap_or_default()
            );
            let keys = DeviceModel::lookup(&key)
                .map(super::v16::keys::keys_of_variable)
                .unwrap_or_default();
            if !keys.is_empty() {
                entry["ocpp16Keys"] = serde_json::json!(keys);
            }
        }
        entries
    }

    /// F06: TriggerMessage, routed to the block that sends what is asked for. The response
    /// goes out first; the requested message follows.
    fn trigger_message(
        &mut self,
        now: Instant,
        request: v201::TriggerMessageRequest,
    ) -> v201::TriggerMessageResponse {
        use v201::MessageTriggerEnum as M;
        use v201::TriggerMessageStatusEnum as S;
        let evse = request.evse.as_ref().map(|e| v201::id32(e.id));
        let connector = request
            .evse
            .as_ref()
            .and_then(|e| e.connector_id)
            .map(v201::id32);
        let status = if evse.is_some_and(|e| self.cx.model.evse_index(e).is_none()) {
            S::Rejected
        } else {
            match request.requested_message {
                // F06.FR.17: not once accepted.
                M::BootNotification if self.cx.is_accepted() => S::Rejected,
                M::BootNotification => {
                    self.cx.trigger_boot();
                    S::Accepted
                }
                M::Heartbeat => {
                    self.cx.enqueue_triggered(
                        RequestKind::Heartbeat,
                        Action::Heartbeat,
                        Value::Object(Default::default()),
                    );
                    S::Accepted
                }
                // F06.FR.12: only for one connector.
                M::StatusNotification => {
                    match evse
                        .zip(connector)
                        .and_then(|(e, c)| self.cx.model.connector_index(e, c))
                    {
                        Some(index) => {
                            self.cx.queue_status_triggered(now, index);
                            S::Accepted
                        }
                        None => S::Rejected,
                    }
                }
                M::MeterValues => accepted(self.transactions.trigger_meter_values(
                    &mut self.cx,
                    now,
                    evse,
                )),
                M::TransactionEvent => accepted(self.transactions.trigger_transaction_events(
                    &mut self.cx,
                    now,
                    evse,
                )),
                // F06.FR.15, N01.FR.13
                M::LogStatusNotification => {
                    self.diagnostics.log_status_triggered(&mut self.cx);
                    S::Accepted
                }
                // F06.FR.16, L01.FR.25/26
                M::FirmwareStatusNotification => {
                    self.firmware.firmware_status_triggered(&mut self.cx);
                    S::Accepted
                }
                // A02: a new key and CSR; the shell answers with the CSR.
                M::SignChargingStationCertificate => {
                    self.security.start_key_update(&mut self.cx);
                    S::Accepted
                }
                _ => S::NotImplemented,
            }
        };
        v201::TriggerMessageResponse {
            custom_data: None,
            status,
            status_info: None,
        }
    }
}

/// Where an item's language stands in the driver's preference: 0 for language1, 1 for
/// language2 (`de` matches `de-CH`), 2 for any other or none.
fn language_rank(languages: &[String], item: &DisplayItem) -> usize {
    let primary = |tag: &str| tag.split('-').next().unwrap_or("").to_ascii_lowercase();
    item.language
        .as_deref()
        .and_then(|l| languages.iter().position(|p| primary(p) == primary(l)))
        .unwrap_or(2)
}

fn accepted(done: bool) -> v201::TriggerMessageStatusEnum {
    if done {
        v201::TriggerMessageStatusEnum::Accepted
    } else {
        v201::TriggerMessageStatusEnum::Rejected
    }
}
