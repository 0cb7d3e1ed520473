//! Remote management (Core profile), as methods of [`Station`]: the device model over OCPP
//! (GetVariables, SetVariables, GetBaseReport + NotifyReport: B05-B07), Reset (B11/B12),
//! ChangeAvailability (G03/G04), TriggerMessage (F06), UnlockConnector (F05), DataTransfer
//! (P01), the local authorization list (D01/D02), NotifyEvent for hardware problems, and
//! SecurityEventNotification queued like transaction messages (A04).

use super::clock::Instant;
use super::devmodel::{self, DeviceModel, Mutability, Scope, Unknown, VARIABLES, Var};
use super::meter::{self, Context};
use super::model::ConnectorStatus;
use super::network::{Network, NetworkProfile};
use super::persist::{PersistOp, Persisted};
use super::rpc::{CallError, CallErrorCode};
use super::session::RequestKind;
use super::station::{Output, Station};
use super::v201::{self, Action};
use serde_json::{Value, json};
use tracing::{info, warn};

const META_BOOT_REASON: &str = "boot_reason";
const META_NETWORK_PROFILE: &str = "netprofile:";
pub(super) const META_LAST_GOOD_SLOT: &str = "network:last_good";

impl Station {
    // ----- start-up ----------------------------------------------------------------------------

    /// Applies what the journal holds for the device model: values the CSMS set (they win over
    /// the TOML's initial values), availability, the local list, the next boot reason.
    pub(super) fn restore_management(&mut self, persisted: &Persisted) {
        for (key, value) in &persisted.meta {
            if let Some(var_key) = key.strip_prefix("var:") {
                match DeviceModel::lookup(var_key) {
                    Some(index) if VARIABLES[index].check(value).is_ok() => {
                        self.cx.vars.set_index(index, value);
                    }
                    _ => warn!(
                        variable = var_key,
                        "ignoring a stored value the device model no longer accepts"
                    ),
                }
            } else if key.starts_with(META_NETWORK_PROFILE) {
                match serde_json::from_str::<NetworkProfile>(value) {
                    Ok(p) => self.cx.link.network.set(p),
                    Err(e) => warn!(key, error = %e, "ignoring a stored network profile"),
                }
            }
        }
        // B10.FR.04: start with the first entry of NetworkConfigurationPriority.
        let profiles: Vec<NetworkProfile> = self
            .cx
            .link
            .network
            .slots()
            .filter_map(|s| self.cx.link.network.profile(s).cloned())
            .collect();
        let last_good = persisted
            .meta(META_LAST_GOOD_SLOT)
            .and_then(|v| v.parse().ok());
        self.cx.link.network = Network::new(
            profiles,
            self.cx.vars.get(Var::NetworkConfigurationPriority),
            last_good,
        );
        if let Some(reason) = persisted.meta(META_BOOT_REASON) {
            if let Ok(reason) = serde_json::from_value(json!(reason)) {
                self.cx.set_boot_reason(reason);
            }
            self.cx
                .outputs
                .push_back(Output::Persist(vec![PersistOp::DeleteMeta {
                    key: META_BOOT_REASON.into(),
                }]));
        }
    }

    // ----- availability -----------------------------------------------------------------------

    pub(super) fn evse_operative(&self, idx: usize) -> bool {
        self.cx.model.evse_operative(idx, &self.cx.vars)
    }

    pub(super) fn connector_status(&self, index: usize) -> ConnectorStatus {
        self.cx.model.connector_status(index, &self.cx.vars)
    }

    /// Transactions ended: an OnIdle reset that waited for them may go (B12).
    pub(super) fn apply_waiting_reset(&mut self, now: Instant) {
        if let Some(scope) = self.scheduled_reset {
            let busy = self
                .transactions
                .evses
                .iter()
                .any(|e| e.tx.is_some() && scope.is_none_or(|id| id == e.id));
            if !busy {
                self.scheduled_reset = None;
                self.execute_reset(now, scope);
            }
        }
    }

    // ----- reset -------------------------------------------------------------------------------

    /// B11/B12: Reset of the station or an EVSE, Immediate or OnIdle.
    pub(super) fn reset(
        &mut self,
        now: Instant,
        request: v201::ResetRequest,
    ) -> Result<v201::ResetResponse, CallError> {
        if self.firmware.firmware_installing() {
            return Ok(v201::ResetResponse {
                custom_data: None,
                status: v201::ResetStatusEnum::Rejected,
                status_info: Some(v201::StatusInfo {
                    custom_data: None,
                    reason_code: "FwUpdateInProgress".into(),
                    additional_info: None,
                }),
            });
        }
        let scope = match request.evse_id {
            None | Some(0) => None,
            Some(id) => match self.evse_index(id32(id)) {
                Some(_) => Some(id32(id)),
                None => {
                    return Ok(v201::ResetResponse {
                        custom_data: None,
                        status: v201::ResetStatusEnum::Rejected,
                        status_info: None,
                    });
                }
            },
        };
        let busy = self
            .transactions
            .evses
            .iter()
            .any(|e| e.tx.is_some() && scope.is_none_or(|id| id == e.id));
        let status = if request.r#type == v201::ResetEnum::OnIdle && busy {
            // B12.FR.03 (OnIdle): after the transactions have ended.
            self.scheduled_reset = Some(scope);
            v201::ResetStatusEnum::Scheduled
        } else {
            // B11.FR.0x: end running transactions with ImmediateReset, then reset.
            for idx in 0..self.transactions.evses.len() {
                if self.transactions.evses[idx].tx.is_some()
                    && scope.is_none_or(|id| id == self.transactions.evses[idx].id)
                {
                    self.transactions
                        .end_transaction_for_reset(&mut self.cx, now, idx);
                }
            }
            self.execute_reset(now, scope);
            v201::ResetStatusEnum::Accepted
        };
        Ok(v201::ResetResponse {
            custom_data: None,
            status,
            status_info: None,
        })
    }

    fn execute_reset(&mut self, now: Instant, scope: Option<u32>) {
        match scope {
            // An EVSE has no process of its own: ending its transaction is the reset.
            Some(evse) => info!(evse, "EVSE reset"),
            None => {
                info!("station reset: restarting");
                self.cx
                    .security_event(now, "ResetOrReboot", Some("Reset requested by the CSMS"));
                self.cx
                    .outputs
                    .push_back(Output::Persist(vec![PersistOp::PutMeta {
                        key: META_BOOT_REASON.into(),
                        value: "RemoteReset".into(),
                    }]));
                self.cx.outputs.push_back(Output::Reboot);
            }
        }
    }

    // ----- device model ------------------------------------------------------------------------

    /// Resolves a CSMS component/variable to a declared variable, checking that the EVSE and
    /// connector exist.
    fn resolve(
        &self,
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
                None => self.evse_index(id32(e)).is_some(),
                Some(c) => self
                    .cx
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
    fn value_of(&self, now: Instant, index: usize, evse: Option<(i64, Option<i64>)>) -> String {
        let def = &VARIABLES[index];
        if !def.dynamic {
            return self.cx.vars.value_index(index).to_owned();
        }
        let evse_idx = evse.and_then(|(e, _)| self.evse_index(id32(e)));
        let connector_idx = evse.and_then(|(e, c)| {
            let c = c?;
            self.cx
                .model
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
            } else {
                "Available"
            }
        };
        let statuses_of = |evse_id: Option<u32>| -> Vec<ConnectorStatus> {
            (0..self.cx.model.connectors.len())
                .filter(|i| evse_id.is_none_or(|e| self.cx.model.connectors[*i].evse == e))
                .map(|i| self.connector_status(i))
                .collect()
        };
        match def.name {
            "AvailabilityState" => match (def.scope, evse_idx, connector_idx) {
                (Scope::Station, _, _) => state_of(statuses_of(None)).into(),
                (Scope::Evse, Some(i), _) => {
                    state_of(statuses_of(Some(self.transactions.evses[i].id))).into()
                }
                (Scope::Connector, _, Some(c)) => self.connector_status(c).as_str().into(),
                _ => String::new(),
            },
            "Available" => match (def.scope, evse_idx, connector_idx) {
                (Scope::Station, _, _) => self.cx.model.station_operative.to_string(),
                (Scope::Evse, Some(i), _) => self.evse_operative(i).to_string(),
                (Scope::Connector, _, Some(c)) => {
                    let conn = &self.cx.model.connectors[c];
                    let evse_ok = self
                        .evse_index(conn.evse)
                        .is_some_and(|i| self.evse_operative(i));
                    (evse_ok && conn.operative && conn.fault.is_none()).to_string()
                }
                _ => String::new(),
            },
            "Power" => evse_idx
                .and_then(|i| self.transactions.evses[i].meter)
                .map(|m| format!("{}", (m.power_w * 1000.0).round() / 1000.0))
                .unwrap_or_else(|| "0".into()),
            "Problem" => connector_idx
                .map(|c| self.cx.model.connectors[c].fault.is_some().to_string())
                .unwrap_or_default(),
            "DateTime" => self.cx.clock.utc(now).to_rfc3339(),
            "SecurityProfile" => self.cx.security_profile().to_string(),
            "CertificateEntries" => self.security.store.roots.len().to_string(),
            "Entries" => self.authorization.local_list.entries.len().to_string(),
            _ => def.default.to_owned(),
        }
    }

    /// B06: GetVariables.
    pub(super) fn get_variables(
        &mut self,
        now: Instant,
        request: v201::GetVariablesRequest,
    ) -> Result<v201::GetVariablesResponse, CallError> {
        // B06.FR.16: more items than ItemsPerMessage[GetVariables].
        if request.get_variable_data.len() as i64
            > self.cx.vars.int(Var::ItemsPerMessageGetVariables)
        {
            return Err(CallError::new(
                CallErrorCode::OccurrenceConstraintViolation,
                "more getVariableData than ItemsPerMessage[GetVariables]",
            ));
        }
        let results = request
            .get_variable_data
            .into_iter()
            .map(|data| {
                let attribute_type = data.attribute_type.unwrap_or(v201::AttributeEnum::Actual);
                let (status, value) = match self.resolve(&data.component, &data.variable) {
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
                            Some(self.value_of(now, index, evse)),
                        )
                    }
                };
                v201::GetVariableResult {
                    custom_data: None,
                    attribute_status: status,
                    attribute_status_info: None,
                    attribute_type: Some(attribute_type),
                    attribute_value: value.map(|v| v.chars().take(2500).collect()),
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
    pub(super) fn set_variables(
        &mut self,
        now: Instant,
        request: v201::SetVariablesRequest,
    ) -> Result<v201::SetVariablesResponse, CallError> {
        if request.set_variable_data.len() as i64
            > self.cx.vars.int(Var::ItemsPerMessageSetVariables)
        {
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
                let status = match self.resolve(&data.component, &data.variable) {
                    Err(Unknown::Component) => v201::SetVariableStatusEnum::UnknownComponent,
                    Err(Unknown::Variable) => v201::SetVariableStatusEnum::UnknownVariable,
                    Ok(_) if attribute_type != v201::AttributeEnum::Actual => {
                        v201::SetVariableStatusEnum::NotSupportedAttributeType
                    }
                    Ok(index) => {
                        let def = &VARIABLES[index];
                        let check = def
                            .check(&data.attribute_value)
                            .and_then(|()| self.check_priority(def, &data.attribute_value));
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
                                self.cx.vars.set_index(index, &data.attribute_value);
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
            self.cx.outputs.push_back(Output::Persist(ops));
        }
        for index in changed {
            self.variable_changed(now, index);
        }
        Ok(v201::SetVariablesResponse {
            custom_data: None,
            set_variable_result: results,
        })
    }

    /// B10.FR.02: every slot in NetworkConfigurationPriority must hold a profile.
    fn check_priority(&self, def: &devmodel::VariableDef, value: &str) -> Result<(), String> {
        if def.name != "NetworkConfigurationPriority" {
            return Ok(());
        }
        for slot in value.split(',').map(str::trim) {
            let known = slot
                .parse::<u32>()
                .ok()
                .is_some_and(|s| self.cx.link.network.profile(s).is_some());
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
    pub(super) fn set_network_profile(
        &mut self,
        request: v201::SetNetworkProfileRequest,
    ) -> Result<v201::SetNetworkProfileResponse, CallError> {
        let c = &request.connection_data;
        let slot = request.configuration_slot;
        let scheme = c.ocpp_csms_url.split_once("://").map(|(s, _)| s);
        let problem = if !(1..=super::network::SLOTS.len() as i64).contains(&slot) {
            // B09.FR.05
            Some("no such configuration slot".to_owned())
        } else if c.ocpp_version != v201::OcppVersionEnum::Ocpp20
            || c.ocpp_transport != v201::OcppTransportEnum::Json
        {
            Some("only OCPP 2.0.1 over JSON".to_owned())
        } else if !(1..=3).contains(&c.security_profile) {
            Some("security profile must be 1, 2 or 3".to_owned())
        } else if (c.security_profile as u8) < self.cx.security_profile() {
            // B09.FR.04, A00.FR.005: never lower the security profile through OCPP.
            Some(format!(
                "security profile {} is lower than the current {}",
                c.security_profile,
                self.cx.security_profile()
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
        self.cx
            .outputs
            .push_back(Output::Persist(vec![PersistOp::PutMeta {
                key: format!("{META_NETWORK_PROFILE}{slot}"),
                value: serde_json::to_string(&profile).unwrap_or_default(),
            }]));
        self.cx.link.network.set(profile);
        Ok(v201::SetNetworkProfileResponse {
            custom_data: None,
            status: v201::SetNetworkProfileStatusEnum::Accepted,
            status_info: None,
        })
    }

    /// Makes a new value effective where it drives a timer.
    fn variable_changed(&mut self, now: Instant, index: usize) {
        let def = &VARIABLES[index];
        match def.key().as_str() {
            "OCPPCommCtrlr.WebSocketPingInterval" => self.cx.restart_ping(now),
            "OCPPCommCtrlr.HeartbeatInterval" => self.cx.set_heartbeat_interval(now),
            "AlignedDataCtrlr.Interval" | "AlignedDataCtrlr.TxEndedInterval" => {
                self.transactions.schedule_aligned(&mut self.cx, now)
            }
            "SecurityCtrlr.BasicAuthPassword" => {
                // A01: the new password is used for the next connection, made right after the
                // answer; the change goes to the security log.
                let password = self.cx.vars.value_index(index).to_owned();
                self.cx
                    .outputs
                    .push_back(Output::BasicAuthPassword(super::station::Secret(password)));
                self.cx.link.reconnect_after_answer = true;
                self.cx.security_event(
                    now,
                    "ReconfigurationOfSecurityParameters",
                    Some("BasicAuthPassword changed"),
                );
            }
            _ => {}
        }
    }

    /// One `ReportDataType` per instance of the variable.
    fn report_entries(&self, now: Instant, index: usize) -> Vec<Value> {
        let def = &VARIABLES[index];
        let instances: Vec<Option<(i64, Option<i64>)>> = match def.scope {
            Scope::Station => vec![None],
            Scope::Evse => self
                .transactions
                .evses
                .iter()
                .map(|e| Some((i64::from(e.id), None)))
                .collect(),
            Scope::Connector => self
                .cx
                .model
                .connectors
                .iter()
                .map(|c| Some((i64::from(c.evse), Some(i64::from(c.id)))))
                .collect(),
        };
        instances
            .into_iter()
            .map(|evse| {
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
                    "persistent": !def.dynamic,
                    "constant": def.mutability == Mutability::ReadOnly && !def.dynamic,
                });
                if def.mutability != Mutability::WriteOnly {
                    let value: String =
                        self.value_of(now, index, evse).chars().take(2500).collect();
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
            })
            .collect()
    }

    /// The device model as it is now (for `ctl variables`): one entry per variable instance,
    /// optionally only for one component.
    pub fn device_model(&self, now: Instant, component: Option<&str>) -> Vec<Value> {
        (0..VARIABLES.len())
            .filter(|&i| component.is_none_or(|c| VARIABLES[i].component.eq_ignore_ascii_case(c)))
            .flat_map(|i| self.report_entries(now, i))
            .collect()
    }

    /// B07: GetBaseReport, answered now and followed by NotifyReport messages split by
    /// ItemsPerMessage[GetReport], seqNo from 0, `tbc` on all but the last (B07.FR.10).
    pub(super) fn get_base_report(
        &mut self,
        now: Instant,
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
            .flat_map(|i| self.report_entries(now, i))
            .collect();
        let per_message = self.cx.vars.int(Var::ItemsPerMessageGetReport).max(1) as usize;
        let chunks: Vec<&[Value]> = entries.chunks(per_message).collect();
        let generated_at = self.cx.clock.utc(now).to_rfc3339();
        for (seq, chunk) in chunks.iter().enumerate() {
            let mut payload = json!({
                "requestId": request.request_id,
                "generatedAt": generated_at,
                "seqNo": seq,
                "reportData": chunk,
            });
            if seq + 1 < chunks.len() {
                payload["tbc"] = json!(true);
            }
            self.cx
                .enqueue_triggered(RequestKind::NotifyReport, Action::NotifyReport, payload);
        }
        info!(
            request_id = request.request_id,
            items = entries.len(),
            messages = chunks.len(),
            "base report"
        );
        Ok(v201::GetBaseReportResponse {
            custom_data: None,
            status: v201::GenericDeviceModelStatusEnum::Accepted,
            status_info: None,
        })
    }

    // ----- TriggerMessage, UnlockConnector, DataTransfer -----------------------------------

    /// F06: TriggerMessage. The response goes out first; the requested message follows.
    pub(super) fn trigger_message(
        &mut self,
        now: Instant,
        request: v201::TriggerMessageRequest,
    ) -> Result<v201::TriggerMessageResponse, CallError> {
        use v201::MessageTriggerEnum as M;
        use v201::TriggerMessageStatusEnum as S;
        let evse = request.evse.as_ref().map(|e| id32(e.id));
        let connector = request.evse.as_ref().and_then(|e| e.connector_id).map(id32);
        if evse.is_some_and(|e| self.evse_index(e).is_none()) {
            return Ok(trigger_status(S::Rejected));
        }
        let status = match request.requested_message {
            M::BootNotification => {
                // F06.FR.17: not once accepted.
                if self.cx.is_accepted() {
                    S::Rejected
                } else {
                    self.cx.trigger_boot();
                    S::Accepted
                }
            }
            M::Heartbeat => {
                self.cx
                    .enqueue_triggered(RequestKind::Heartbeat, Action::Heartbeat, json!({}));
                S::Accepted
            }
            M::StatusNotification => {
                // F06.FR.12: only for one connector.
                match (evse, connector) {
                    (Some(e), Some(c)) => match self
                        .cx
                        .model
                        .connectors
                        .iter()
                        .position(|x| x.evse == e && x.id == c)
                    {
                        Some(index) => {
                            self.cx.queue_status_triggered(now, index);
                            S::Accepted
                        }
                        None => S::Rejected,
                    },
                    _ => S::Rejected,
                }
            }
            M::MeterValues => {
                // F06.FR.06: the AlignedDataCtrlr measurands, for the EVSE or all.
                let mut sent = false;
                for idx in 0..self.transactions.evses.len() {
                    if evse.is_some_and(|e| e != self.transactions.evses[idx].id) {
                        continue;
                    }
                    let mv = meter::meter_value(
                        self.transactions.evses[idx].meter.as_ref(),
                        self.cx.vars.list(Var::AlignedMeasurands),
                        Context::Trigger,
                        self.cx.clock.utc(now),
                    );
                    if let Some(mv) = mv {
                        let payload = json!({ "evseId": self.transactions.evses[idx].id, "meterValue": [mv] });
                        self.cx.enqueue_triggered(
                            RequestKind::MeterValues,
                            Action::MeterValues,
                            payload,
                        );
                        sent = true;
                    }
                }
                if sent { S::Accepted } else { S::Rejected }
            }
            M::TransactionEvent => {
                // F06.FR.07: triggerReason Trigger with the charging state and meter values.
                let running: Vec<usize> = (0..self.transactions.evses.len())
                    .filter(|i| {
                        self.transactions.evses[*i].tx.is_some()
                            && evse.is_none_or(|e| e == self.transactions.evses[*i].id)
                    })
                    .collect();
                if running.is_empty() {
                    S::Rejected
                } else {
                    for idx in running {
                        self.transactions
                            .trigger_transaction_event(&mut self.cx, now, idx);
                    }
                    S::Accepted
                }
            }
            M::LogStatusNotification => {
                // F06.FR.15, N01.FR.13
                self.diagnostics.log_status_triggered(&mut self.cx);
                S::Accepted
            }
            M::FirmwareStatusNotification => {
                // F06.FR.16, L01.FR.25/26
                self.firmware.firmware_status_triggered(&mut self.cx);
                S::Accepted
            }
            M::SignChargingStationCertificate => {
                // A02: a new key and CSR; the shell answers with the CSR.
                self.security.start_key_update(&mut self.cx);
                S::Accepted
            }
            _ => S::NotImplemented,
        };
        Ok(trigger_status(status))
    }

    /// F05: UnlockConnector.
    pub(super) fn unlock_connector(
        &mut self,
        now: Instant,
        request: v201::UnlockConnectorRequest,
    ) -> Result<v201::UnlockConnectorResponse, CallError> {
        let (evse, connector) = (id32(request.evse_id), id32(request.connector_id));
        let status = match self.evse_index(evse) {
            None => v201::UnlockStatusEnum::UnknownConnector,
            Some(_)
                if !self
                    .cx
                    .model
                    .connectors
                    .iter()
                    .any(|c| c.evse == evse && c.id == connector) =>
            {
                v201::UnlockStatusEnum::UnknownConnector
            }
            Some(idx) => {
                let on_connector = self.transactions.evses[idx]
                    .tx
                    .as_ref()
                    .is_some_and(|t| t.connector.is_none_or(|c| c == connector));
                if on_connector && self.transactions.evses[idx].auth.is_some() {
                    // F05.FR.02: never under an authorized transaction.
                    v201::UnlockStatusEnum::OngoingAuthorizedTransaction
                } else {
                    if on_connector {
                        self.transactions
                            .end_transaction_for_unlock(&mut self.cx, now, idx);
                    }
                    self.cx
                        .outputs
                        .push_back(Output::Unlock { evse, connector });
                    v201::UnlockStatusEnum::Unlocked
                }
            }
        };
        Ok(v201::UnlockConnectorResponse {
            custom_data: None,
            status,
            status_info: None,
        })
    }
}

/// An EVSE or connector id from the CSMS as ours: an id out of range (negative, or above
/// u32::MAX) becomes u32::MAX, which no EVSE or connector has (they are numbered from 1), so
/// it is "unknown" instead of silently naming another one.
pub(super) fn id32(id: i64) -> u32 {
    u32::try_from(id).unwrap_or(u32::MAX)
}

fn trigger_status(status: v201::TriggerMessageStatusEnum) -> v201::TriggerMessageResponse {
    v201::TriggerMessageResponse {
        custom_data: None,
        status,
        status_info: None,
    }
}
