//! Remote management (Core profile), as methods of [`Station`]: the device model over OCPP
//! (GetVariables, SetVariables, GetBaseReport/GetReport + NotifyReport: B05-B08), Reset (B11/B12),
//! ChangeAvailability (G03/G04), TriggerMessage (F06), UnlockConnector (F05), DataTransfer
//! (P01), the local authorization list (D01/D02), NotifyEvent for hardware problems, and
//! SecurityEventNotification queued like transaction messages (A04).

use crate::ocpp::clock::Instant;
use crate::ocpp::ctx::{CoreEvent, Ctx};
use crate::ocpp::devmodel::{self, DeviceModel, Mutability, Scope, Unknown, VARIABLES, Var};
use crate::ocpp::model::ConnectorStatus;
use crate::ocpp::network::{Network, NetworkProfile};
use crate::ocpp::persist::{PersistOp, Persisted};
use crate::ocpp::rpc::{CallError, CallErrorCode};
use crate::ocpp::session::RequestKind;
use crate::ocpp::station::Output;
use crate::ocpp::v201::id32;
use crate::ocpp::v201::{self, Action};
use serde_json::{Value, json};
use tracing::{info, warn};

const META_BOOT_REASON: &str = "boot_reason";
const META_NETWORK_PROFILE: &str = "netprofile:";
pub(crate) const META_LAST_GOOD_SLOT: &str = "network:last_good";

/// What the device model reports that other blocks keep (dynamic variables, B06).
#[derive(Debug, Clone, Default)]
pub struct LiveValues {
    /// Per EVSE (by index), the meter's power.
    pub power_w: Vec<Option<f64>>,
    pub certificate_entries: usize,
    pub local_list_entries: usize,
    pub charging_profile_entries: usize,
    pub display_messages: usize,
}

/// The provisioning block (B): the device model over OCPP, network connection profiles and
/// Reset.
#[derive(Debug)]
pub struct Provisioning {
    /// A client certificate is configured (security profile 3 is possible).
    client_certificate: bool,
    /// A Reset waiting for transactions to end (OnIdle, B12).
    scheduled_reset: Option<Option<u32>>,
    /// The journal cannot write (ChargingStation.Problem).
    storage_failing: bool,
}

/// Where a variable instance lives: the station (`None`), an EVSE, or a connector of it.
type Location = Option<(i64, Option<i64>)>;

/// NotifyReport frames are measured with a message id as long as ours (UUIDs).
const MESSAGE_ID_PLACEHOLDER: &str = "00000000-0000-4000-8000-000000000000";

impl Provisioning {
    // ----- start-up ----------------------------------------------------------------------------

    /// Applies what the journal holds for the device model: values the CSMS set (they win over
    /// the TOML's initial values), availability, the local list, the next boot reason.
    pub(crate) fn restore(cx: &mut Ctx, persisted: &Persisted, client_certificate: bool) -> Self {
        for (key, value) in &persisted.meta {
            if let Some(var_key) = key.strip_prefix("var:") {
                match DeviceModel::lookup(var_key) {
                    Some(index) if VARIABLES[index].check(value).is_ok() => {
                        cx.vars.set_index(index, value);
                    }
                    _ => warn!(
                        variable = var_key,
                        "ignoring a stored value the device model no longer accepts"
                    ),
                }
            } else if key.starts_with(META_NETWORK_PROFILE) {
                match serde_json::from_str::<NetworkProfile>(value) {
                    Ok(p) => cx.link.network.set(p),
                    Err(e) => warn!(key, error = %e, "ignoring a stored network profile"),
                }
            }
        }
        // B10.FR.04: start with the first entry of NetworkConfigurationPriority.
        let profiles: Vec<NetworkProfile> = cx
            .link
            .network
            .slots()
            .filter_map(|s| cx.link.network.profile(s).cloned())
            .collect();
        let last_good = persisted
            .meta(META_LAST_GOOD_SLOT)
            .and_then(|v| v.parse().ok());
        cx.link.network = Network::new(
            profiles,
            cx.vars.get(Var::NetworkConfigurationPriority),
            last_good,
        );
        if let Some(reason) = persisted.meta(META_BOOT_REASON) {
            if let Ok(reason) = serde_json::from_value(json!(reason)) {
                cx.set_boot_reason(reason);
            }
            cx.outputs
                .push_back(Output::Persist(vec![PersistOp::DeleteMeta {
                    key: META_BOOT_REASON.into(),
                }]));
        }
        Provisioning {
            client_certificate,
            scheduled_reset: None,
            storage_failing: false,
        }
    }

    // ----- availability -----------------------------------------------------------------------

    /// Transactions ended: an OnIdle reset that waited for them may go now (B12).
    pub(crate) fn apply_waiting_reset(&mut self, cx: &mut Ctx, now: Instant) {
        if let Some(scope) = self.scheduled_reset {
            if !cx.model.busy(scope, None) {
                self.scheduled_reset = None;
                self.execute_reset(cx, now, scope);
            }
        }
    }

    /// The journal stopped or resumed writing: a station problem while it lasts.
    pub(crate) fn storage_changed(&mut self, failing: bool) {
        self.storage_failing = failing;
    }

    // ----- reset -------------------------------------------------------------------------------

    /// B11/B12: Reset of the station or an EVSE, Immediate or OnIdle. `Some(scope)`: reset
    /// now, once the transactions in the scope are ended (B11.FR.0x: with ImmediateReset).
    #[allow(clippy::type_complexity)]
    pub(crate) fn reset(
        &mut self,
        cx: &mut Ctx,
        request: v201::ResetRequest,
        firmware_installing: bool,
    ) -> Result<(v201::ResetResponse, Option<Option<u32>>), CallError> {
        if firmware_installing {
            return Ok((
                v201::ResetResponse {
                    custom_data: None,
                    status: v201::ResetStatusEnum::Rejected,
                    status_info: Some(v201::StatusInfo {
                        custom_data: None,
                        reason_code: "FwUpdateInProgress".into(),
                        additional_info: None,
                    }),
                },
                None,
            ));
        }
        let scope = match request.evse_id {
            None | Some(0) => None,
            Some(id) => match cx.model.evse_index(id32(id)) {
                Some(_) => Some(id32(id)),
                None => {
                    return Ok((
                        v201::ResetResponse {
                            custom_data: None,
                            status: v201::ResetStatusEnum::Rejected,
                            status_info: None,
                        },
                        None,
                    ));
                }
            },
        };
        let busy = cx.model.busy(scope, None);
        let (status, now_scope) = if request.r#type == v201::ResetEnum::OnIdle && busy {
            // B12.FR.03 (OnIdle): after the transactions have ended.
            self.scheduled_reset = Some(scope);
            (v201::ResetStatusEnum::Scheduled, None)
        } else {
            (v201::ResetStatusEnum::Accepted, Some(scope))
        };
        Ok((
            v201::ResetResponse {
                custom_data: None,
                status,
                status_info: None,
            },
            now_scope,
        ))
    }

    pub(crate) fn execute_reset(&mut self, cx: &mut Ctx, now: Instant, scope: Option<u32>) {
        match scope {
            // An EVSE has no process of its own: ending its transaction is the reset.
            Some(evse) => info!(evse, "EVSE reset"),
            None => {
                info!("station reset: restarting");
                cx.security_event(now, "ResetOrReboot", Some("Reset requested by the CSMS"));
                cx.outputs
                    .push_back(Output::Persist(vec![PersistOp::PutMeta {
                        key: META_BOOT_REASON.into(),
                        value: "RemoteReset".into(),
                    }]));
                cx.reboot_after_delivery(now);
            }
        }
    }

    // ----- device model ------------------------------------------------------------------------

    /// Resolves a CSMS component/variable to a declared variable, checking that the EVSE and
    /// connector exist.
    fn resolve(
        &self,
        cx: &Ctx,
        component: &v201::Component,
        variable: &v201::Variable,
    ) -> Result<usize, Unknown> {
        let evse = component.evse.as_ref().map(|e| (e.id, e.connector_id));
        let index = DeviceModel::find(
            &component.name,
            component.instance.as_deref(),
            evse,
            &variable.name,
            variable.instance.as_deref(),
        )?;
        if let Some((e, c)) = evse {
            let exists = match c {
                None => cx.model.evse_index(id32(e)).is_some(),
                Some(c) => cx
                    .model
                    .connectors
                    .iter()
                    .any(|x| i64::from(x.evse) == e && i64::from(x.id) == c),
            };
            if !exists {
                return Err(Unknown::Component);
            }
        }
        Ok(index)
    }

    /// The current value of a variable (stored or computed), for one EVSE/connector instance.
    fn value_of(
        &self,
        cx: &Ctx,
        now: Instant,
        live: &LiveValues,
        index: usize,
        evse: Option<(i64, Option<i64>)>,
    ) -> String {
        let def = &VARIABLES[index];
        // A connector with a type of its own (`[[evse]]` configuration).
        if def.component == "Connector" && def.name == "ConnectorType" {
            if let Some((e, Some(c))) = evse {
                if let Some(i) = cx.model.connector_index(id32(e), id32(c)) {
                    return cx.model.connector_type(i, &cx.vars).to_owned();
                }
            }
        }
        if !def.dynamic {
            return cx.vars.value_index(index).to_owned();
        }
        let evse_idx = evse.and_then(|(e, _)| cx.model.evse_index(id32(e)));
        let connector_idx = evse.and_then(|(e, c)| {
            let c = c?;
            cx.model
                .connectors
                .iter()
                .position(|x| i64::from(x.evse) == e && i64::from(x.id) == c)
        });
        let state_of = |statuses: Vec<ConnectorStatus>| -> &'static str {
            use ConnectorStatus as S;
            if statuses.iter().all(|s| *s == S::Faulted) && !statuses.is_empty() {
                "Faulted"
            } else if statuses
                .iter()
                .all(|s| *s == S::Unavailable || *s == S::Faulted)
                && !statuses.is_empty()
            {
                "Unavailable"
            } else if statuses.contains(&S::Occupied) {
                "Occupied"
            } else if statuses.contains(&S::Reserved) {
                "Reserved"
            } else {
                "Available"
            }
        };
        let statuses_of = |evse_id: Option<u32>| -> Vec<ConnectorStatus> {
            (0..cx.model.connectors.len())
                .filter(|i| evse_id.is_none_or(|e| cx.model.connectors[*i].evse == e))
                .map(|i| cx.model.connector_status(i, &cx.vars))
                .collect()
        };
        match def.name {
            "AvailabilityState" => match (def.scope, evse_idx, connector_idx) {
                (Scope::Station, _, _) => state_of(statuses_of(None)).into(),
                (Scope::Evse, Some(i), _) => {
                    state_of(statuses_of(Some(cx.model.evses[i].id))).into()
                }
                (Scope::Connector, _, Some(c)) => {
                    cx.model.connector_status(c, &cx.vars).as_str().into()
                }
                _ => String::new(),
            },
            "Available" => match (def.scope, evse_idx, connector_idx) {
                (Scope::Station, _, _) => cx.model.station_operative.to_string(),
                (Scope::Evse, Some(i), _) => cx.model.evse_operative(i, &cx.vars).to_string(),
                (Scope::Connector, _, Some(c)) => {
                    let conn = &cx.model.connectors[c];
                    let evse_ok = cx
                        .model
                        .evse_index(conn.evse)
                        .is_some_and(|i| cx.model.evse_operative(i, &cx.vars));
                    (evse_ok && conn.operative && conn.fault.is_none()).to_string()
                }
                _ => String::new(),
            },
            "Power" => evse_idx
                .and_then(|i| live.power_w.get(i).copied().flatten())
                .map(|w| format!("{}", (w * 1000.0).round() / 1000.0))
                .unwrap_or_else(|| "0".into()),
            // The appendix's Problem includes what is propagated from contained components: an
            // EVSE with a faulted connector, the station with any.
            "Problem" => match (def.scope, evse_idx, connector_idx) {
                (Scope::Station, _, _) => (self.storage_failing
                    || cx.model.connectors.iter().any(|c| c.fault.is_some()))
                .to_string(),
                (Scope::Evse, Some(i), _) => {
                    let id = cx.model.evses[i].id;
                    cx.model
                        .connectors
                        .iter()
                        .any(|c| c.evse == id && c.fault.is_some())
                        .to_string()
                }
                (Scope::Connector, _, Some(c)) => {
                    cx.model.connectors[c].fault.is_some().to_string()
                }
                _ => String::new(),
            },
            "Model" if def.component == "ChargingStation" => cx.identity.model.clone(),
            "VendorName" if def.component == "ChargingStation" => cx.identity.vendor.clone(),
            "Identity" if def.component == "SecurityCtrlr" => cx.identity.station_id.clone(),
            "ActiveNetworkProfile" => cx.link.network.current().slot.to_string(),
            "DateTime" => cx.clock.utc(now).to_rfc3339(),
            "SecurityProfile" => cx.security_profile().to_string(),
            "CertificateEntries" => live.certificate_entries.to_string(),
            "Entries" if def.component == "SmartChargingCtrlr" => {
                live.charging_profile_entries.to_string()
            }
            "Entries" => live.local_list_entries.to_string(),
            "DisplayMessages" => live.display_messages.to_string(),
            _ => def.default.to_owned(),
        }
    }

    /// B06: GetVariables.
    pub(crate) fn get_variables(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        live: &LiveValues,
        request: v201::GetVariablesRequest,
    ) -> Result<v201::GetVariablesResponse, CallError> {
        // B06.FR.16: more items than ItemsPerMessage[GetVariables].
        if request.get_variable_data.len() as i64 > cx.vars.int(Var::ItemsPerMessageGetVariables) {
            return Err(CallError::new(
                CallErrorCode::OccurrenceConstraintViolation,
                "more getVariableData than ItemsPerMessage[GetVariables]",
            ));
        }
        let reporting_size = cx.vars.int(Var::ReportingValueSize) as usize;
        let results = request
            .get_variable_data
            .into_iter()
            .map(|data| {
                let attribute_type = data.attribute_type.unwrap_or(v201::AttributeEnum::Actual);
                let (status, value) = match self.resolve(cx, &data.component, &data.variable) {
                    Err(Unknown::Component) => {
                        (v201::GetVariableStatusEnum::UnknownComponent, None)
                    }
                    Err(Unknown::Variable) => (v201::GetVariableStatusEnum::UnknownVariable, None),
                    // Only the Actual attribute exists here (B06.FR.08).
                    Ok(_) if attribute_type != v201::AttributeEnum::Actual => {
                        (v201::GetVariableStatusEnum::NotSupportedAttributeType, None)
                    }
                    Ok(index) if VARIABLES[index].mutability == Mutability::WriteOnly => {
                        (v201::GetVariableStatusEnum::Rejected, None)
                    }
                    Ok(index) => {
                        let evse = data.component.evse.as_ref().map(|e| (e.id, e.connector_id));
                        (
                            v201::GetVariableStatusEnum::Accepted,
                            Some(self.value_of(cx, now, live, index, evse)),
                        )
                    }
                };
                v201::GetVariableResult {
                    custom_data: None,
                    attribute_status: status,
                    attribute_status_info: None,
                    attribute_type: Some(attribute_type),
                    attribute_value: value.map(|v| v.chars().take(reporting_size).collect()),
                    component: data.component,
                    variable: data.variable,
                }
            })
            .collect();
        Ok(v201::GetVariablesResponse {
            custom_data: None,
            get_variable_result: results,
        })
    }

    /// B05: SetVariables. Accepted values take effect at once and persist.
    pub(crate) fn set_variables(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        request: v201::SetVariablesRequest,
    ) -> Result<v201::SetVariablesResponse, CallError> {
        if request.set_variable_data.len() as i64 > cx.vars.int(Var::ItemsPerMessageSetVariables) {
            return Err(CallError::new(
                CallErrorCode::OccurrenceConstraintViolation,
                "more setVariableData than ItemsPerMessage[SetVariables]",
            ));
        }
        let mut ops = Vec::new();
        let mut changed = Vec::new();
        let results = request
            .set_variable_data
            .into_iter()
            .map(|data| {
                let attribute_type = data.attribute_type.unwrap_or(v201::AttributeEnum::Actual);
                let mut info = None;
                let status = match self.resolve(cx, &data.component, &data.variable) {
                    Err(Unknown::Component) => v201::SetVariableStatusEnum::UnknownComponent,
                    Err(Unknown::Variable) => v201::SetVariableStatusEnum::UnknownVariable,
                    Ok(_) if attribute_type != v201::AttributeEnum::Actual => {
                        v201::SetVariableStatusEnum::NotSupportedAttributeType
                    }
                    Ok(index) => {
                        let def = &VARIABLES[index];
                        let check = self
                            .check_size(cx, &data.attribute_value)
                            .and_then(|()| def.check(&data.attribute_value))
                            .and_then(|()| self.check_priority(cx, def, &data.attribute_value));
                        match (def.mutability, check) {
                            (Mutability::ReadOnly, _) => {
                                info = Some("ReadOnly");
                                v201::SetVariableStatusEnum::Rejected
                            }
                            (_, Err(problem)) => {
                                warn!(variable = def.key(), problem, "SetVariables value rejected");
                                info = Some("InvalidValue");
                                v201::SetVariableStatusEnum::Rejected
                            }
                            (_, Ok(())) => {
                                if def.is_secret() {
                                    info!(variable = def.key(), "secret variable set by the CSMS");
                                } else {
                                    info!(
                                        variable = def.key(),
                                        value = data.attribute_value,
                                        "variable set by the CSMS"
                                    );
                                }
                                cx.vars.set_index(index, &data.attribute_value);
                                ops.push(PersistOp::PutMeta {
                                    key: devmodel::meta_key(def),
                                    value: data.attribute_value.trim().to_owned(),
                                });
                                changed.push(index);
                                if def.reboot_required {
                                    v201::SetVariableStatusEnum::RebootRequired
                                } else {
                                    v201::SetVariableStatusEnum::Accepted
                                }
                            }
                        }
                    }
                };
                v201::SetVariableResult {
                    custom_data: None,
                    attribute_type: Some(attribute_type),
                    attribute_status: status,
                    attribute_status_info: info.map(|reason| v201::StatusInfo {
                        custom_data: None,
                        reason_code: reason.into(),
                        additional_info: None,
                    }),
                    component: data.component,
                    variable: data.variable,
                }
            })
            .collect();
        if !ops.is_empty() {
            cx.outputs.push_back(Output::Persist(ops));
        }
        for index in changed {
            self.variable_changed(cx, now, index);
        }
        Ok(v201::SetVariablesResponse {
            custom_data: None,
            set_variable_result: results,
        })
    }

    /// DeviceDataCtrlr.ConfigurationValueSize: the longest value SetVariables takes.
    fn check_size(&self, cx: &Ctx, value: &str) -> Result<(), String> {
        let max = cx.vars.int(Var::ConfigurationValueSize);
        let n = value.chars().count();
        if n as i64 > max {
            return Err(format!(
                "{n} characters, more than ConfigurationValueSize ({max})"
            ));
        }
        Ok(())
    }

    /// B10.FR.02: every slot in NetworkConfigurationPriority must hold a profile.
    fn check_priority(
        &self,
        cx: &Ctx,
        def: &devmodel::VariableDef,
        value: &str,
    ) -> Result<(), String> {
        if def.name != "NetworkConfigurationPriority" {
            return Ok(());
        }
        for slot in value.split(',').map(str::trim) {
            let known = slot
                .parse::<u32>()
                .ok()
                .is_some_and(|s| cx.link.network.profile(s).is_some());
            if !known {
                return Err(format!(
                    "configuration slot {slot} holds no network profile"
                ));
            }
        }
        Ok(())
    }

    /// B09: SetNetworkProfile. The profile is checked and stored; it is used after a restart
    /// once NetworkConfigurationPriority names its slot (B10.FR.04).
    pub(crate) fn set_network_profile(
        &mut self,
        cx: &mut Ctx,
        request: v201::SetNetworkProfileRequest,
    ) -> Result<v201::SetNetworkProfileResponse, CallError> {
        let c = &request.connection_data;
        let slot = request.configuration_slot;
        let scheme = c.ocpp_csms_url.split_once("://").map(|(s, _)| s);
        let problem = if !(1..=crate::ocpp::network::SLOTS.len() as i64).contains(&slot) {
            // B09.FR.05
            Some("no such configuration slot".to_owned())
        } else if c.ocpp_version != v201::OcppVersionEnum::Ocpp20
            || c.ocpp_transport != v201::OcppTransportEnum::Json
        {
            Some("only OCPP 2.0.1 over JSON".to_owned())
        } else if !(1..=3).contains(&c.security_profile) {
            Some("security profile must be 1, 2 or 3".to_owned())
        } else if (c.security_profile as u8) < cx.security_profile() {
            // B09.FR.04, A00.FR.005: never lower the security profile through OCPP.
            Some(format!(
                "security profile {} is lower than the current {}",
                c.security_profile,
                cx.security_profile()
            ))
        } else if (c.security_profile == 1) != (scheme == Some("ws"))
            || !matches!(scheme, Some("ws") | Some("wss"))
        {
            Some("the URL scheme does not fit the security profile (ws:// for 1, wss:// for 2 and 3)".to_owned())
        } else if c.security_profile == 3 && !self.client_certificate {
            Some("security profile 3 needs a client certificate, and none is configured".to_owned())
        } else if c.ocpp_csms_url.contains(['?', '#'])
            || c.ocpp_csms_url
                .split_once("://")
                .is_none_or(|(_, r)| r.is_empty())
        {
            Some("not a usable CSMS URL".to_owned())
        } else {
            None
        };
        if let Some(why) = problem {
            warn!(slot, reason = why, "SetNetworkProfile rejected");
            return Ok(v201::SetNetworkProfileResponse {
                custom_data: None,
                status: v201::SetNetworkProfileStatusEnum::Rejected,
                status_info: Some(v201::StatusInfo {
                    custom_data: None,
                    reason_code: "InvalidProfile".into(),
                    additional_info: Some(why.chars().take(512).collect()),
                }),
            });
        }
        let profile = NetworkProfile {
            slot: slot as u32,
            url: c.ocpp_csms_url.trim_end_matches('/').to_owned(),
            security_profile: c.security_profile as u8,
            message_timeout_s: c.message_timeout.clamp(0, 3600) as u32,
        };
        info!(
            slot,
            url = profile.url,
            security_profile = profile.security_profile,
            "network profile stored"
        );
        cx.outputs
            .push_back(Output::Persist(vec![PersistOp::PutMeta {
                key: format!("{META_NETWORK_PROFILE}{slot}"),
                value: serde_json::to_string(&profile).unwrap_or_default(),
            }]));
        cx.link.network.set(profile);
        Ok(v201::SetNetworkProfileResponse {
            custom_data: None,
            status: v201::SetNetworkProfileStatusEnum::Accepted,
            status_info: None,
        })
    }

    /// Makes a new value effective where it drives a timer.
    fn variable_changed(&mut self, cx: &mut Ctx, now: Instant, index: usize) {
        let def = &VARIABLES[index];
        match def.key().as_str() {
            "OCPPCommCtrlr.WebSocketPingInterval" => cx.restart_ping(now),
            "OCPPCommCtrlr.HeartbeatInterval" => cx.set_heartbeat_interval(now),
            "SmartChargingCtrlr.Enabled" => cx.emit(CoreEvent::SmartChargingSwitched),
            "AlignedDataCtrlr.Interval" | "AlignedDataCtrlr.TxEndedInterval" => {
                cx.emit(CoreEvent::AlignedIntervalChanged)
            }
            "SecurityCtrlr.BasicAuthPassword" => {
                // A01: the new password is used for the next connection, made right after the
                // answer; the change goes to the security log.
                let password = cx.vars.value_index(index).to_owned();
                cx.outputs
                    .push_back(Output::BasicAuthPassword(crate::ocpp::station::Secret(
                        password,
                    )));
                cx.link.reconnect_after_answer = true;
                cx.security_event(
                    now,
                    "ReconfigurationOfSecurityParameters",
                    Some("BasicAuthPassword changed"),
                );
            }
            _ => {}
        }
    }

    /// Where the instances of a variable live: once for the station, per EVSE, per connector.
    fn locations(cx: &Ctx, def: &devmodel::VariableDef) -> Vec<Location> {
        match def.scope {
            Scope::Station => vec![None],
            Scope::Evse => cx
                .model
                .evses
                .iter()
                .map(|e| Some((i64::from(e.id), None)))
                .collect(),
            Scope::Connector => cx
                .model
                .connectors
                .iter()
                .map(|c| Some((i64::from(c.evse), Some(i64::from(c.id)))))
                .collect(),
        }
    }

    /// One `ReportDataType`: the variable at one location, with its characteristics
    /// (B07.FR.13/B08.FR.12) and without the value of a WriteOnly variable (B08.FR.03).
    fn report_entry(
        &self,
        cx: &Ctx,
        now: Instant,
        live: &LiveValues,
        index: usize,
        evse: Location,
    ) -> Value {
        let def = &VARIABLES[index];
        let mut component = json!({ "name": def.component });
        if let Some((e, c)) = evse {
            let mut ev = json!({ "id": e });
            if let Some(c) = c {
                ev["connectorId"] = json!(c);
            }
            component["evse"] = ev;
        }
        let mut variable = json!({ "name": def.name });
        if let Some(i) = def.instance {
            variable["instance"] = json!(i);
        }
        let mut attribute = json!({
            "type": "Actual",
            "mutability": def.mutability.as_str(),
            "persistent": !def.dynamic || def.constant,
            "constant": (def.mutability == Mutability::ReadOnly && !def.dynamic) || def.constant,
        });
        if def.mutability != Mutability::WriteOnly {
            let value: String = self
                .value_of(cx, now, live, index, evse)
                .chars()
                .take(cx.vars.int(Var::ReportingValueSize) as usize)
                .collect();
            attribute["value"] = json!(value);
        }
        let mut characteristics = json!({
            "dataType": def.data_type.as_str(),
            "supportsMonitoring": false,
        });
        if let Some(u) = def.unit {
            characteristics["unit"] = json!(u);
        }
        if let Some(min) = def.min {
            characteristics["minLimit"] = json!(min);
        }
        if let Some(max) = def.max {
            characteristics["maxLimit"] = json!(max);
        }
        if let Some(values) = def.data_type.values_list() {
            characteristics["valuesList"] = json!(values.join(","));
        }
        json!({
            "component": component,
            "variable": variable,
            "variableAttribute": [attribute],
            "variableCharacteristics": characteristics,
        })
    }

    /// One `ReportDataType` per instance of the variable.
    fn report_entries(
        &self,
        cx: &Ctx,
        now: Instant,
        live: &LiveValues,
        index: usize,
    ) -> Vec<Value> {
        Self::locations(cx, &VARIABLES[index])
            .into_iter()
            .map(|evse| self.report_entry(cx, now, live, index, evse))
            .collect()
    }

    /// The device model as it is now (for `ctl variables`): one entry per variable instance,
    /// optionally only for one component.
    pub fn device_model(
        &self,
        cx: &Ctx,
        now: Instant,
        live: &LiveValues,
        component: Option<&str>,
    ) -> Vec<Value> {
        (0..VARIABLES.len())
            .filter(|&i| component.is_none_or(|c| VARIABLES[i].component.eq_ignore_ascii_case(c)))
            .flat_map(|i| self.report_entries(cx, now, live, i))
            .collect()
    }

    /// Queues a report as NotifyReport messages: seqNo from 0, `tbc` on all but the last
    /// (B07.FR.10, B08.FR.14), each within ItemsPerMessage[GetReport] entries and
    /// BytesPerMessage[GetReport] bytes. Returns how many messages.
    fn send_report(
        &self,
        cx: &mut Ctx,
        now: Instant,
        request_id: i64,
        entries: Vec<Value>,
    ) -> usize {
        let generated_at = cx.clock.utc(now).to_rfc3339();
        let pages = notify_report_payloads(
            request_id,
            &generated_at,
            entries,
            cx.vars.int(Var::ItemsPerMessageGetReport).max(1) as usize,
            cx.vars.int(Var::BytesPerMessageGetReport).max(1) as usize,
        );
        let messages = pages.len();
        for payload in pages {
            cx.enqueue_triggered(RequestKind::NotifyReport, Action::NotifyReport, payload);
        }
        messages
    }

    /// B07: GetBaseReport, answered now and followed by NotifyReport messages.
    pub(crate) fn get_base_report(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        live: &LiveValues,
        request: v201::GetBaseReportRequest,
    ) -> Result<v201::GetBaseReportResponse, CallError> {
        let selected: Vec<usize> = (0..VARIABLES.len())
            .filter(|&i| {
                let def = &VARIABLES[i];
                match request.report_base {
                    v201::ReportBaseEnum::FullInventory => true,
                    // B07.FR.07: what the operator can set.
                    v201::ReportBaseEnum::ConfigurationInventory => {
                        def.mutability != Mutability::ReadOnly
                    }
                    // B07.FR.09: availability and condition.
                    v201::ReportBaseEnum::SummaryInventory => {
                        matches!(def.name, "AvailabilityState" | "Available" | "Problem")
                    }
                }
            })
            .collect();
        let entries: Vec<Value> = selected
            .into_iter()
            .flat_map(|i| self.report_entries(cx, now, live, i))
            .collect();
        let items = entries.len();
        let messages = self.send_report(cx, now, request.request_id, entries);
        info!(
            request_id = request.request_id,
            items, messages, "base report"
        );
        Ok(v201::GetBaseReportResponse {
            custom_data: None,
            status: v201::GenericDeviceModelStatusEnum::Accepted,
            status_info: None,
        })
    }

    /// B08: GetReport, the variables that match componentVariable (if given) of the components
    /// that meet one of componentCriteria (if given; B08.FR.05/11/13), answered now and
    /// followed by NotifyReport messages; EmptyResultSet when nothing matches (B08.FR.15).
    /// `request_bytes`: the size of the request's payload (B08.FR.18).
    pub(crate) fn get_report(
        &mut self,
        cx: &mut Ctx,
        now: Instant,
        live: &LiveValues,
        request: v201::GetReportRequest,
        request_bytes: usize,
    ) -> Result<v201::GetReportResponse, CallError> {
        let filters = request.component_variable.unwrap_or_default();
        // B08.FR.06/17: at most ItemsPerMessage[GetReport] componentVariables.
        if filters.len() as i64 > cx.vars.int(Var::ItemsPerMessageGetReport) {
            return Err(CallError::new(
                CallErrorCode::OccurrenceConstraintViolation,
                "more componentVariable than ItemsPerMessage[GetReport]",
            ));
        }
        // B08.FR.18
        if request_bytes as i64 > cx.vars.int(Var::BytesPerMessageGetReport) {
            return Err(CallError::new(
                CallErrorCode::FormatViolation,
                "the request is longer than BytesPerMessage[GetReport]",
            ));
        }
        let criteria = request.component_criteria.unwrap_or_default();
        let mut entries = Vec::new();
        for (index, def) in VARIABLES.iter().enumerate() {
            for evse in Self::locations(cx, def) {
                let wanted = filters.is_empty()
                    || filters
                        .iter()
                        .any(|f| component_variable_matches(f, def, evse));
                // B08.FR.13: a component that meets any one of the criteria.
                if wanted
                    && (criteria.is_empty()
                        || criteria
                            .iter()
                            .any(|c| self.meets(cx, now, live, def, evse, *c)))
                {
                    entries.push(self.report_entry(cx, now, live, index, evse));
                }
            }
        }
        if entries.is_empty() {
            info!(
                request_id = request.request_id,
                "custom report: nothing matches"
            );
            return Ok(v201::GetReportResponse {
                custom_data: None,
                status: v201::GenericDeviceModelStatusEnum::EmptyResultSet,
                status_info: Some(v201::StatusInfo {
                    custom_data: None,
                    reason_code: "NotFound".into(),
                    additional_info: None,
                }),
            });
        }
        let items = entries.len();
        let messages = self.send_report(cx, now, request.request_id, entries);
        info!(
            request_id = request.request_id,
            items, messages, "custom report"
        );
        Ok(v201::GetReportResponse {
            custom_data: None,
            status: v201::GenericDeviceModelStatusEnum::Accepted,
            status_info: None,
        })
    }

    /// Whether the component that `def` belongs to, at `evse`, meets a criterion. Active,
    /// Available, Enabled: its variable of that name is true, or it has none (B08.FR.07-09).
    /// Problem: its Problem variable is true (B08.FR.10).
    fn meets(
        &self,
        cx: &Ctx,
        now: Instant,
        live: &LiveValues,
        def: &devmodel::VariableDef,
        evse: Location,
        criterion: v201::ComponentCriterionEnum,
    ) -> bool {
        let holder = VARIABLES.iter().position(|d| {
            d.component == def.component
                && d.scope == def.scope
                && d.name == criterion.as_str()
                && d.instance.is_none()
        });
        match holder {
            Some(i) => self.value_of(cx, now, live, i, evse) == "true",
            None => criterion != v201::ComponentCriterionEnum::Problem,
        }
    }

    /// B08.FR.02: a GetReport whose only fault is a componentCriteria value outside the
    /// schema's enumeration names a criterion this station does not support: NotSupported,
    /// rather than a CALLERROR for the whole request. `None` for anything else.
    pub(crate) fn unsupported_criteria(action: &str, payload: &Value) -> Option<Value> {
        if action != Action::GetReport.as_str() {
            return None;
        }
        let criteria = payload.get("componentCriteria")?.as_array()?;
        let known = |c: &Value| {
            c.as_str()
                .is_some_and(|c| v201::ComponentCriterionEnum::VALUES.contains(&c))
        };
        let unknown: Vec<String> = criteria
            .iter()
            .filter(|c| !known(c))
            .map(|c| c.to_string())
            .collect();
        if unknown.is_empty() {
            return None;
        }
        let mut rest = payload.clone();
        let kept: Vec<Value> = criteria.iter().filter(|c| known(c)).cloned().collect();
        if kept.is_empty() {
            rest.as_object_mut()?.remove("componentCriteria");
        } else {
            rest["componentCriteria"] = Value::Array(kept);
        }
        v201::validate::validate(Action::GetReport.request_schema(), &rest).ok()?;
        warn!(
            criteria = unknown.join(","),
            "GetReport with unsupported componentCriteria"
        );
        Some(v201::to_payload(&v201::GetReportResponse {
            custom_data: None,
            status: v201::GenericDeviceModelStatusEnum::NotSupported,
            status_info: Some(v201::StatusInfo {
                custom_data: None,
                reason_code: "UnsupportedParam".into(),
                additional_info: Some(
                    format!("componentCriteria {} not supported", unknown.join(", "))
                        .chars()
                        .take(512)
                        .collect(),
                ),
            }),
        }))
    }
}

/// Whether a GetReport componentVariable selects the variable `def` at `evse`. Names are
/// case-insensitive (ComponentType, VariableType). Without evse: every location (B08.FR.23);
/// evse.id without connectorId: the EVSE and its connectors (B08.FR.22); without variable:
/// every variable of the component (B08.FR.20); without variable instance: every instance
/// (B08.FR.21). This station's components have no instances, so a component instance
/// matches nothing (B08.FR.24/25).
fn component_variable_matches(
    filter: &v201::ComponentVariable,
    def: &devmodel::VariableDef,
    evse: Location,
) -> bool {
    let c = &filter.component;
    if !c.name.eq_ignore_ascii_case(def.component)
        || c.instance.as_deref().is_some_and(|i| !i.is_empty())
    {
        return false;
    }
    let at = match (&c.evse, evse) {
        (None, _) => true,
        (Some(want), Some((id, connector))) => {
            want.id == id && want.connector_id.is_none_or(|w| connector == Some(w))
        }
        (Some(_), None) => false,
    };
    at && filter.variable.as_ref().is_none_or(|v| {
        v.name.eq_ignore_ascii_case(def.name)
            && match v.instance.as_deref().filter(|i| !i.is_empty()) {
                None => true,
                Some(i) => def.instance.is_some_and(|d| d.eq_ignore_ascii_case(i)),
            }
    })
}

/// Splits report entries into NotifyReport payloads of at most `max_items` entries whose
/// whole CALL frame is at most `max_bytes` (an entry longer than that alone goes alone).
fn notify_report_payloads(
    request_id: i64,
    generated_at: &str,
    entries: Vec<Value>,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Value> {
    let payload = |seq: usize, data: Vec<Value>, tbc: bool| {
        let mut p = json!({
            "requestId": request_id,
            "generatedAt": generated_at,
            "seqNo": seq,
            "reportData": data,
        });
        if tbc {
            p["tbc"] = json!(true);
        }
        p
    };
    // The frame without entries, counted with `tbc` (a few bytes more than the last needs).
    let empty_frame = |seq: usize| {
        json!([
            2,
            MESSAGE_ID_PLACEHOLDER,
            "NotifyReport",
            payload(seq, Vec::new(), true)
        ])
        .to_string()
        .len()
    };
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut page: Vec<Value> = Vec::new();
    let mut used = empty_frame(0);
    for entry in entries {
        let len = entry.to_string().len();
        if !page.is_empty() && (page.len() >= max_items || used + 1 + len > max_bytes) {
            pages.push(std::mem::take(&mut page));
            used = empty_frame(pages.len());
        }
        if page.is_empty() && used + len > max_bytes {
            warn!(
                bytes = len,
                max_bytes, "a report entry is longer than BytesPerMessage[GetReport]; sent alone"
            );
        }
        used += len + usize::from(!page.is_empty());
        page.push(entry);
    }
    if !page.is_empty() {
        pages.push(page);
    }
    let last = pages.len().saturating_sub(1);
    pages
        .into_iter()
        .enumerate()
        .map(|(seq, data)| payload(seq, data, seq < last))
        .collect()
}

/// A BasicAuthPassword the CSMS set (A01), which replaces the configured one: the shell needs
/// it before the first connection.
pub fn stored_basic_auth_password(persisted: &Persisted) -> Option<&str> {
    persisted.meta(&devmodel::meta_key(DeviceModel::def(
        Var::BasicAuthPassword,
    )))
}
