//! The 1.6 configuration keys (OCPP 1.6 edition 2, chapter 9, its errata sheet, and the
//! security whitepaper edition 3, chapter 7) on the device model.
//!
//! [`KEYS`] says where each key the agent knows lives: on device-model variables (GetConfiguration
//! becomes a GetVariables of the first, ChangeConfiguration a SetVariables of all of them, both
//! answered by the provisioning block), or computed here from what the agent is (read-only,
//! answered without a block). A key not in the table is unknown: `unknownKey` in
//! GetConfiguration.conf, `NotSupported` to ChangeConfiguration. Key names are CiString50Type,
//! compared without regard to case (edition 2, 2.2 "CiString", and 6.23); the answer repeats the
//! spelling of the request.

use super::adapter::{Inbound, Lookup, Outbound};
use super::{
    Action, ChangeConfigurationRequest, ChangeConfigurationResponse, ConfigurationStatus,
    GetConfigurationRequest, GetConfigurationResponse, KeyValue,
};
use crate::ocpp::devmodel::{DeviceModel, Mutability, Var, VariableDef};
use crate::ocpp::rpc::{CallError, CallErrorCode};
use crate::ocpp::v201;
use serde_json::Value;

/// The feature profile a key belongs to (chapter 9's sections; Security: the whitepaper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Core,
    FirmwareManagement,
    LocalAuthListManagement,
    Reservation,
    SmartCharging,
    Security,
}

/// Where a key's value is.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// Device-model variables: read from the first, set on each.
    Variables(&'static [Var]),
    /// What the agent is, computed here; always read-only.
    Fixed(fn(&Lookup) -> String),
}

/// How a value is spelled in 1.6 compared with the variable's 2.0.1 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Integers and strings: alike.
    Same,
    /// "true"/"false": alike; a 1.6 value in other case is taken too.
    Bool,
    /// A CSL (comma-separated list): blanks around the items dropped.
    List,
    /// ChargingScheduleAllowedChargingRateUnit: Current/Power for 2.0.1's A/W (errata 3.88).
    RateUnit,
}

/// One 1.6 configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub profile: Profile,
    pub source: Source,
    /// Not settable by ChangeConfiguration (Rejected): 1.6 accessibility R, or a read-only
    /// variable.
    pub readonly: bool,
    pub format: Format,
}

const fn rw(name: &'static str, profile: Profile, vars: &'static [Var], format: Format) -> Key {
    Key {
        name,
        profile,
        source: Source::Variables(vars),
        readonly: false,
        format,
    }
}

const fn ro(name: &'static str, profile: Profile, vars: &'static [Var], format: Format) -> Key {
    Key {
        readonly: true,
        ..rw(name, profile, vars, format)
    }
}

const fn fixed(name: &'static str, profile: Profile, value: fn(&Lookup) -> String) -> Key {
    Key {
        name,
        profile,
        source: Source::Fixed(value),
        readonly: true,
        format: Format::Same,
    }
}

use Format::{Bool, List, RateUnit, Same};
use Profile::{
    Core, FirmwareManagement, LocalAuthListManagement, Reservation, Security, SmartCharging,
};

/// Every 1.6 key the agent knows, in the order GetConfiguration without keys reports them.
///
/// Not known (unknownKey, NotSupported), for lack of the behaviour: BlinkRepeat and
/// LightIntensity (no lighting), MinimumStatusDuration (every status change is reported),
/// ConnectorPhaseRotationMaxLength, SupportedFeatureProfilesMaxLength (errata 3.81: of no use),
/// StopTransactionMaxMeterValues (errata 3.91; no such bound).
#[rustfmt::skip]
pub static KEYS: &[Key] = &[
    // 9.1 Core.
    rw("AllowOfflineTxForUnknownId", Core, &[Var::OfflineTxForUnknownIdEnabled], Bool),
    rw("AuthorizationCacheEnabled", Core, &[Var::AuthCacheEnabled], Bool),
    // R or RW at the implementation's choice (9.1.3).
    rw("AuthorizeRemoteTxRequests", Core, &[Var::AuthorizeRemoteStart], Bool),
    // StopTxnAlignedData is sampled every ClockAlignedDataInterval (9.1.25).
    rw("ClockAlignedDataInterval", Core, &[Var::AlignedInterval, Var::AlignedTxEndedInterval], Same),
    rw("ConnectionTimeOut", Core, &[Var::EvConnectionTimeOut], Same),
    // Required and RW, but the agent does not know the wiring: "Unknown" for each connector.
    fixed("ConnectorPhaseRotation", Core, phase_rotation),
    fixed("GetConfigurationMaxKeys", Core, |_| max_keys().to_string()),
    rw("HeartbeatInterval", Core, &[Var::HeartbeatInterval], Same),
    rw("LocalAuthorizeOffline", Core, &[Var::LocalAuthorizeOffline], Bool),
    rw("LocalPreAuthorize", Core, &[Var::LocalPreAuthorize], Bool),
    rw("MaxEnergyOnInvalidId", Core, &[Var::MaxEnergyOnInvalidId], Same),
    // Errata 3.83 (optional, RW); the variable is read-only here.
    ro("MessageTimeout", Core, &[Var::MessageTimeout], Same),
    rw("MeterValuesAlignedData", Core, &[Var::AlignedMeasurands], List),
    fixed("MeterValuesAlignedDataMaxLength", Core, |_| measurands_max()),
    rw("MeterValuesSampledData", Core, &[Var::TxUpdatedMeasurands], List),
    fixed("MeterValuesSampledDataMaxLength", Core, |_| measurands_max()),
    // StopTxnSampledData is sampled every MeterValueSampleInterval too (9.1.27).
    rw("MeterValueSampleInterval", Core, &[Var::TxUpdatedInterval, Var::TxEndedInterval], Same),
    fixed("NumberOfConnectors", Core, |lk| lk.evses.to_string()),
    rw("ResetRetries", Core, &[Var::ResetRetries], Same),
    rw("StopTransactionOnEVSideDisconnect", Core, &[Var::StopTxOnEvSideDisconnect], Bool),
    rw("StopTransactionOnInvalidId", Core, &[Var::StopTxOnInvalidId], Bool),
    rw("StopTxnAlignedData", Core, &[Var::AlignedTxEndedMeasurands], List),
    fixed("StopTxnAlignedDataMaxLength", Core, |_| measurands_max()),
    rw("StopTxnSampledData", Core, &[Var::TxEndedMeasurands], List),
    fixed("StopTxnSampledDataMaxLength", Core, |_| measurands_max()),
    // The profiles the adapter translates (core_profile: Core and RemoteTrigger; profiles: the
    // others).
    fixed("SupportedFeatureProfiles", Core, |_| SUPPORTED_FEATURE_PROFILES.into()),
    rw("TransactionMessageAttempts", Core, &[Var::MessageAttemptsTransactionEvent], Same),
    rw("TransactionMessageRetryInterval", Core, &[Var::MessageAttemptIntervalTransactionEvent], Same),
    // R or RW (errata 3.84); RW here.
    rw("UnlockConnectorOnEVSideDisconnect", Core, &[Var::UnlockOnEvSideDisconnect], Bool),
    rw("WebSocketPingInterval", Core, &[Var::WebSocketPingInterval], Same),
    // Errata 3.90 (9.5 Firmware Management).
    ro("SupportedFileTransferProtocols", FirmwareManagement, &[Var::FileTransferProtocols], List),
    // 9.2 Local Auth List Management.
    rw("LocalAuthListEnabled", LocalAuthListManagement, &[Var::LocalAuthListEnabled], Bool),
    fixed("LocalAuthListMaxLength", LocalAuthListManagement, |_| LOCAL_AUTH_LIST_MAX_LENGTH.to_string()),
    ro("SendLocalListMaxLength", LocalAuthListManagement, &[Var::ItemsPerMessageSendLocalList], Same),
    // 9.3 Reservation: R in 1.6, so not set over 1.6 (`[variables]` may set it).
    ro("ReserveConnectorZeroSupported", Reservation, &[Var::ReservationNonEvseSpecific], Bool),
    // 9.4 Smart Charging.
    ro("ChargeProfileMaxStackLevel", SmartCharging, &[Var::ProfileStackLevel], Same),
    ro("ChargingScheduleAllowedChargingRateUnit", SmartCharging, &[Var::ChargingRateUnits], RateUnit),
    ro("ChargingScheduleMaxPeriods", SmartCharging, &[Var::PeriodsPerSchedule], Same),
    ro("ConnectorSwitch3to1PhaseSupported", SmartCharging, &[Var::Phases3to1], Bool),
    // The maxLimit of SmartChargingCtrlr.Entries[ChargingProfiles].
    fixed("MaxChargingProfilesInstalled", SmartCharging, |_| {
        DeviceModel::def(Var::ChargingProfileEntries).max.unwrap_or(0).to_string()
    }),
    // Security whitepaper, chapter 7. The one-root rule of M05.FR.08 is not implemented.
    fixed("AdditionalRootCertificateCheck", Security, |_| "false".into()),
    // Write-only (7.2): never reported with a value.
    rw("AuthorizationKey", Security, &[Var::BasicAuthPassword], Same),
    // The certificateChain of CertificateSigned.req is at most 10000 characters (its schema).
    fixed("CertificateSignedMaxChainSize", Security, |_| "10000".into()),
    fixed("CertificateStoreMaxLength", Security, |_| {
        crate::ocpp::blocks::security::MAX_CERTIFICATES.to_string()
    }),
    rw("CpoName", Security, &[Var::SecurityOrganizationName], Same),
    // RW in 7.6 (A05 upgrades), but the profile is the configuration's `csms.security_profile`
    // (or a SetNetworkProfile's): read-only here.
    ro("SecurityProfile", Security, &[Var::SecurityProfile], Same),
];

/// SupportedFeatureProfiles (9.1.29).
pub const SUPPORTED_FEATURE_PROFILES: &str =
    "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger";

/// LocalAuthListMaxLength: the local list has no bound of its own (the journal holds it);
/// this many entries it keeps for sure.
pub const LOCAL_AUTH_LIST_MAX_LENGTH: usize = 10_000;

/// The longest value of a KeyValue (CiString500Type).
const VALUE_MAX: usize = 500;

/// GetConfigurationMaxKeys: each key reads at most one variable, so as many as one
/// GetVariables may hold (ItemsPerMessage[GetVariables], its default).
fn max_keys() -> usize {
    DeviceModel::def(Var::ItemsPerMessageGetVariables)
        .default
        .parse()
        .unwrap_or(1)
}

/// A MeterValues...MaxLength: every measurand of the agent, each at most once.
fn measurands_max() -> String {
    crate::ocpp::devmodel::MEASURANDS.len().to_string()
}

/// 9.1.7: "Unknown" for each connector, as `1.Unknown,2.Unknown`.
fn phase_rotation(lk: &Lookup) -> String {
    (1..=lk.evses)
        .map(|c| format!("{c}.Unknown"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Key {
    /// The variables it maps to; none for a fixed key.
    pub fn variables(&self) -> &'static [Var] {
        match self.source {
            Source::Variables(vars) => vars,
            Source::Fixed(_) => &[],
        }
    }

    /// The variable GetConfiguration reads, unless the key is write-only or fixed.
    fn read_var(&self) -> Option<Var> {
        self.variables()
            .first()
            .copied()
            .filter(|v| DeviceModel::def(*v).mutability != Mutability::WriteOnly)
    }

    pub fn write_only(&self) -> bool {
        self.variables()
            .iter()
            .any(|v| DeviceModel::def(*v).mutability == Mutability::WriteOnly)
    }

    /// A 1.6 value as the variables take it.
    pub fn to_v201(&self, value: &str) -> String {
        match self.format {
            Format::Same => value.to_owned(),
            Format::Bool if value.eq_ignore_ascii_case("true") => "true".into(),
            Format::Bool if value.eq_ignore_ascii_case("false") => "false".into(),
            Format::Bool => value.to_owned(),
            Format::List => list(value).collect::<Vec<_>>().join(","),
            Format::RateUnit => list(value)
                .map(|u| match u {
                    "Current" => "A",
                    "Power" => "W",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// A variable's value as 1.6 spells it.
    pub fn to_v16(&self, value: &str) -> String {
        match self.format {
            Format::RateUnit => list(value)
                .map(|u| match u {
                    "A" => "Current",
                    "W" => "Power",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => value.to_owned(),
        }
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|m| !m.is_empty())
}

/// The key named `name`, in any case.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// The 1.6 keys that read or set the device-model variable with index `index`
/// (`ctl variables` shows them).
pub fn keys_of_variable(index: usize) -> Vec<&'static str> {
    KEYS.iter()
        .filter(|k| k.variables().iter().any(|v| *v as usize == index))
        .map(|k| k.name)
        .collect()
}

/// The device-model variables a 1.6 key maps to: `None` for an unknown key, empty for one
/// the agent computes.
pub fn variables_of_key(name: &str) -> Option<&'static [Var]> {
    find(name).map(Key::variables)
}

/// A `[variables]` entry spelled as a 1.6 key: the `("Component.Variable", value)` pairs it
/// stands for. `None`: not a 1.6 key; `Some(Err)`: one the agent computes.
pub fn config_variables(name: &str, value: &str) -> Option<Result<Vec<(String, String)>, String>> {
    let key = find(name)?;
    Some(match key.source {
        Source::Fixed(_) => Err(format!(
            "the OCPP 1.6 key {} is computed by the agent and cannot be configured",
            key.name
        )),
        Source::Variables(vars) => Ok(vars
            .iter()
            .map(|v| (DeviceModel::def(*v).key(), key.to_v201(value)))
            .collect()),
    })
}

/// The 2.0.1 component and variable of a (station-wide) variable.
fn address(var: Var) -> (v201::Component, v201::Variable) {
    let def: &VariableDef = DeviceModel::def(var);
    (
        v201::Component {
            custom_data: None,
            evse: None,
            name: def.component.into(),
            instance: None,
        },
        v201::Variable {
            custom_data: None,
            name: def.name.into(),
            instance: def.instance.map(Into::into),
        },
    )
}

fn addresses(var: Var, component: &v201::Component, variable: &v201::Variable) -> bool {
    let def = DeviceModel::def(var);
    component.name == def.component
        && component.evse.is_none()
        && variable.name == def.name
        && variable.instance.as_deref() == def.instance
}

/// A key of a GetConfiguration.req: known (with the request's spelling) or not.
enum Asked {
    Known(&'static Key, String),
    Unknown(String),
}

/// The keys a GetConfiguration.req asks for: all when it names none (5.8); each once.
fn asked(payload: &Value) -> Result<Vec<Asked>, CallError> {
    let request: GetConfigurationRequest = serde_json::from_value(payload.clone())
        .map_err(|e| CallError::new(CallErrorCode::FormatViolation, e.to_string()))?;
    let names = request.key.unwrap_or_default();
    if names.is_empty() {
        return Ok(KEYS
            .iter()
            .map(|k| Asked::Known(k, k.name.to_owned()))
            .collect());
    }
    if names.len() > max_keys() {
        return Err(CallError::new(
            CallErrorCode::OccurrenceConstraintViolation,
            format!("more keys than GetConfigurationMaxKeys ({})", max_keys()),
        ));
    }
    let mut asked: Vec<Asked> = Vec::new();
    for name in names {
        let seen = asked.iter().any(|a| match a {
            Asked::Known(_, n) | Asked::Unknown(n) => n.eq_ignore_ascii_case(&name),
        });
        if !seen {
            asked.push(match find(&name) {
                Some(k) => Asked::Known(k, name),
                None => Asked::Unknown(name),
            });
        }
    }
    Ok(asked)
}

/// GetConfiguration.conf from the variables' values the block gave (`results`).
fn configuration(asked: &[Asked], results: &[v201::GetVariableResult], lk: &Lookup) -> Value {
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for a in asked {
        match a {
            Asked::Unknown(name) => unknown.push(name.clone()),
            Asked::Known(key, name) => {
                let value = match key.source {
                    Source::Fixed(f) => Some(f(lk)),
                    Source::Variables(_) => key.read_var().and_then(|var| {
                        results
                            .iter()
                            .find(|r| addresses(var, &r.component, &r.variable))
                            .filter(|r| r.attribute_status == v201::GetVariableStatusEnum::Accepted)
                            .and_then(|r| r.attribute_value.as_deref())
                            .map(|v| key.to_v16(v))
                    }),
                };
                known.push(KeyValue {
                    key: name.clone(),
                    readonly: key.readonly,
                    value: value.map(|v| v.chars().take(VALUE_MAX).collect()),
                });
            }
        }
    }
    let conf = GetConfigurationResponse {
        configuration_key: (!known.is_empty()).then_some(known),
        unknown_key: (!unknown.is_empty()).then_some(unknown),
    };
    serde_json::to_value(conf).expect("a GetConfiguration.conf serializes")
}

fn change_status(status: ConfigurationStatus) -> Value {
    serde_json::to_value(ChangeConfigurationResponse { status })
        .expect("a ChangeConfiguration.conf serializes")
}

/// A 1.6 call of this module's actions as a 2.0.1 call or an answer; `None`: not one of them.
pub fn request(action: Action, payload: &Value, lk: &Lookup) -> Option<Result<Inbound, CallError>> {
    match action {
        Action::GetConfiguration => Some(get_configuration(payload, lk)),
        Action::ChangeConfiguration => Some(change_configuration(payload)),
        _ => None,
    }
}

fn get_configuration(payload: &Value, lk: &Lookup) -> Result<Inbound, CallError> {
    let asked = asked(payload)?;
    let mut reads: Vec<Var> = Vec::new();
    for a in &asked {
        if let Asked::Known(key, _) = a {
            if let Some(var) = key.read_var().filter(|v| !reads.contains(v)) {
                reads.push(var);
            }
        }
    }
    if reads.is_empty() {
        return Ok(Inbound::Answer(configuration(&asked, &[], lk)));
    }
    let request = v201::GetVariablesRequest {
        custom_data: None,
        get_variable_data: reads
            .into_iter()
            .map(|var| {
                let (component, variable) = address(var);
                v201::GetVariableData {
                    custom_data: None,
                    attribute_type: None,
                    component,
                    variable,
                }
            })
            .collect(),
    };
    Ok(Inbound::Call {
        action: v201::Action::GetVariables,
        payload: serde_json::to_value(request).expect("a GetVariablesRequest serializes"),
    })
}

fn change_configuration(payload: &Value) -> Result<Inbound, CallError> {
    let request: ChangeConfigurationRequest = serde_json::from_value(payload.clone())
        .map_err(|e| CallError::new(CallErrorCode::FormatViolation, e.to_string()))?;
    let Some(key) = find(&request.key) else {
        return Ok(Inbound::Answer(change_status(
            ConfigurationStatus::NotSupported,
        )));
    };
    if key.readonly {
        return Ok(Inbound::Answer(change_status(
            ConfigurationStatus::Rejected,
        )));
    }
    let value = key.to_v201(&request.value);
    let request = v201::SetVariablesRequest {
        custom_data: None,
        set_variable_data: key
            .variables()
            .iter()
            .map(|var| {
                let (component, variable) = address(*var);
                v201::SetVariableData {
                    custom_data: None,
                    attribute_type: None,
                    attribute_value: value.clone(),
                    component,
                    variable,
                }
            })
            .collect(),
    };
    Ok(Inbound::Call {
        action: v201::Action::SetVariables,
        payload: serde_json::to_value(request).expect("a SetVariablesRequest serializes"),
    })
}

/// The 1.6 answer to a call `request` of `action` from the block's 2.0.1 `answer`.
pub fn response(action: Action, request: &Value, answer: &Value, lk: &Lookup) -> Option<Value> {
    match action {
        Action::GetConfiguration => {
            let asked = asked(request).ok()?;
            let results = serde_json::from_value::<v201::GetVariablesResponse>(answer.clone())
                .map(|a| a.get_variable_result)
                .unwrap_or_default();
            Some(configuration(&asked, &results, lk))
        }
        Action::ChangeConfiguration => {
            let results = serde_json::from_value::<v201::SetVariablesResponse>(answer.clone())
                .map(|a| a.set_variable_result)
                .unwrap_or_default();
            Some(change_status(set_status(&results)))
        }
        _ => None,
    }
}

/// ChangeConfiguration.conf's status from the SetVariables results of the key's variables:
/// an unknown variable is a key not supported (7.22); any refusal is Rejected.
fn set_status(results: &[v201::SetVariableResult]) -> ConfigurationStatus {
    use v201::SetVariableStatusEnum as S;
    let any = |f: &dyn Fn(S) -> bool| results.iter().any(|r| f(r.attribute_status));
    if results.is_empty() {
        ConfigurationStatus::Rejected
    } else if any(&|s| matches!(s, S::UnknownComponent | S::UnknownVariable)) {
        ConfigurationStatus::NotSupported
    } else if any(&|s| matches!(s, S::Rejected | S::NotSupportedAttributeType)) {
        ConfigurationStatus::Rejected
    } else if any(&|s| s == S::RebootRequired) {
        ConfigurationStatus::RebootRequired
    } else {
        ConfigurationStatus::Accepted
    }
}

/// The 1.6 message for a 2.0.1 message of ours that this module spells: none.
pub fn outgoing(_action: v201::Action, _payload: &Value, _lk: &Lookup) -> Option<Outbound> {
    None
}

/// The 2.0.1 shape of the CSMS's answer to a 1.6 message of this module we sent: none.
pub fn answer_to_v201(_sent: Action, _request: &Value, _answer: &Value) -> Option<Value> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocpp::devmodel::Scope;
    use crate::ocpp::rpc::Frame;
    use crate::ocpp::testkit::{Harness, config_with, default_config};
    use serde_json::json;

    fn lookup<T>(evses: u32, f: impl FnOnce(&Lookup) -> T) -> T {
        f(&Lookup {
            evses,
            local_tx: &|_| None,
            tx16: &|_| None,
            transaction: &|_| None,
            evse_tx: &|_| None,
            unsigned_firmware: false,
        })
    }

    /// A 1.6 call through this module and, when it needs one, the real provisioning block of a
    /// station; every payload checked against its schema.
    fn exchange(h: &mut Harness, action: Action, payload: Value) -> Value {
        crate::ocpp::validate::validate(action.request_schema(), &payload).expect("1.6 request");
        let answer = lookup(3, |lk| match request(action, &payload, lk) {
            Some(Ok(Inbound::Answer(answer))) => answer,
            Some(Ok(Inbound::Call {
                action: a201,
                payload: p201,
            })) => {
                crate::ocpp::v201::validate::validate(a201.request_schema(), &p201)
                    .expect("2.0.1 request");
                match h.call(a201.as_str(), p201) {
                    Frame::CallResult { payload: a, .. } => {
                        response(action, &payload, &a, lk).expect("a 1.6 answer")
                    }
                    other => panic!("{a201:?}: {other:?}"),
                }
            }
            other => panic!("{other:?}"),
        });
        crate::ocpp::validate::validate(action.response_schema(), &answer).expect("1.6 answer");
        answer
    }

    fn get(h: &mut Harness, keys: &[&str]) -> Value {
        exchange(h, Action::GetConfiguration, json!({ "key": keys }))
    }

    fn change(h: &mut Harness, key: &str, value: &str) -> String {
        let answer = exchange(
            h,
            Action::ChangeConfiguration,
            json!({ "key": key, "value": value }),
        );
        answer["status"].as_str().unwrap().to_owned()
    }

    /// `(key, readonly, value)` of a GetConfiguration.conf.
    fn entries(conf: &Value) -> Vec<(String, bool, Option<String>)> {
        conf["configurationKey"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap().to_owned(),
                    kv["readonly"].as_bool().unwrap(),
                    kv["value"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    #[test]
    fn every_mapped_variable_is_a_station_variable_of_the_device_model() {
        for key in KEYS {
            assert!(key.name.len() <= 50, "{}", key.name);
            for var in key.variables() {
                let def = DeviceModel::def(*var);
                // What the provisioning block resolves from the component/variable we send.
                assert_eq!(
                    DeviceModel::find(def.component, None, None, def.name, def.instance),
                    Ok(*var as usize),
                    "{} -> {}",
                    key.name,
                    def.key()
                );
                assert_eq!(DeviceModel::lookup(&def.key()), Some(*var as usize));
                assert_eq!(def.scope, Scope::Station, "{}", key.name);
                // A read-only variable makes a read-only key.
                if def.mutability == Mutability::ReadOnly {
                    assert!(key.readonly, "{} maps to read-only {}", key.name, def.key());
                }
            }
            if let [first, rest @ ..] = key.variables() {
                // Set together: one value fits all or none (no half-applied change).
                for other in rest {
                    let (a, b) = (DeviceModel::def(*first), DeviceModel::def(*other));
                    assert_eq!(
                        (a.data_type, a.min, a.max, a.reboot_required),
                        (b.data_type, b.min, b.max, b.reboot_required),
                        "{}",
                        key.name
                    );
                }
            } else {
                assert!(key.readonly, "{} is computed, so read-only", key.name);
            }
        }
        // Each name once, in any case.
        for (i, key) in KEYS.iter().enumerate() {
            assert!(
                !KEYS[..i]
                    .iter()
                    .any(|k| k.name.eq_ignore_ascii_case(key.name)),
                "{}",
                key.name
            );
        }
        // The write-only key is the password's, and VARIABLES knows it as write-only.
        let written_only: Vec<&str> = KEYS
            .iter()
            .filter(|k| k.write_only())
            .map(|k| k.name)
            .collect();
        assert_eq!(written_only, ["AuthorizationKey"]);
        assert!(!find("AuthorizationKey").unwrap().readonly);
    }

    #[test]
    fn the_required_keys_of_the_profiles_are_known() {
        // Chapter 9 "required", and the whitepaper's keys for profiles 2 and 3.
        for name in [
            "AuthorizeRemoteTxRequests",
            "ClockAlignedDataInterval",
            "ConnectionTimeOut",
            "ConnectorPhaseRotation",
            "GetConfigurationMaxKeys",
            "HeartbeatInterval",
            "LocalAuthorizeOffline",
            "LocalPreAuthorize",
            "MeterValuesAlignedData",
            "MeterValuesSampledData",
            "MeterValueSampleInterval",
            "NumberOfConnectors",
            "ResetRetries",
            "StopTransactionOnEVSideDisconnect",
            "StopTransactionOnInvalidId",
            "StopTxnAlignedData",
            "StopTxnSampledData",
            "SupportedFeatureProfiles",
            "TransactionMessageAttempts",
            "TransactionMessageRetryInterval",
            "UnlockConnectorOnEVSideDisconnect",
            "LocalAuthListEnabled",
            "LocalAuthListMaxLength",
            "SendLocalListMaxLength",
            "ChargeProfileMaxStackLevel",
            "ChargingScheduleAllowedChargingRateUnit",
            "ChargingScheduleMaxPeriods",
            "MaxChargingProfilesInstalled",
            "AdditionalRootCertificateCheck",
            "AuthorizationKey",
        ] {
            assert!(find(name).is_some(), "{name}");
        }
        // Each key's profile is one SupportedFeatureProfiles reports (the whitepaper's are
        // outside the feature profiles).
        for key in KEYS.iter().filter(|k| k.profile != Profile::Security) {
            let profile = format!("{:?}", key.profile);
            assert!(
                SUPPORTED_FEATURE_PROFILES.split(',').any(|p| p == profile),
                "{}",
                key.name
            );
        }
    }

    #[test]
    fn get_configuration_reads_the_variables() {
        let mut h = Harness::new(config_with(&[
            ("OCPPCommCtrlr.HeartbeatInterval", "300"),
            (
                "SampledDataCtrlr.TxUpdatedMeasurands",
                "Energy.Active.Import.Register,Voltage",
            ),
        ]));
        let conf = get(
            &mut h,
            &[
                "HeartbeatInterval",
                "meterValuesSampledData",
                "NumberOfConnectors",
                "ChargingScheduleAllowedChargingRateUnit",
                "LocalPreAuthorize",
                "Colour",
            ],
        );
        assert_eq!(
            entries(&conf),
            vec![
                ("HeartbeatInterval".into(), false, Some("300".into())),
                (
                    "meterValuesSampledData".into(),
                    false,
                    Some("Energy.Active.Import.Register,Voltage".into())
                ),
                ("NumberOfConnectors".into(), true, Some("3".into())),
                (
                    "ChargingScheduleAllowedChargingRateUnit".into(),
                    true,
                    Some("Current,Power".into())
                ),
                ("LocalPreAuthorize".into(), false, Some("false".into())),
            ]
        );
        assert_eq!(conf["unknownKey"], json!(["Colour"]));
    }

    #[test]
    fn keys_the_agent_computes_need_no_block() {
        let payload = json!({"key": ["NumberOfConnectors", "SupportedFeatureProfiles", "Nope"]});
        let Some(Ok(Inbound::Answer(conf))) =
            lookup(2, |lk| request(Action::GetConfiguration, &payload, lk))
        else {
            panic!("answered here")
        };
        crate::ocpp::validate::validate(Action::GetConfiguration.response_schema(), &conf).unwrap();
        assert_eq!(
            entries(&conf),
            vec![
                ("NumberOfConnectors".into(), true, Some("2".into())),
                (
                    "SupportedFeatureProfiles".into(),
                    true,
                    Some(
                        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,\
                         SmartCharging,RemoteTrigger"
                            .into()
                    )
                ),
            ]
        );
        assert_eq!(conf["unknownKey"], json!(["Nope"]));
        let only_unknown = json!({"key": ["Nope"]});
        let Some(Ok(Inbound::Answer(conf))) =
            lookup(2, |lk| request(Action::GetConfiguration, &only_unknown, lk))
        else {
            panic!("answered here")
        };
        assert_eq!(conf, json!({"unknownKey": ["Nope"]}));
    }

    #[test]
    fn without_keys_every_key_is_reported() {
        let mut h = Harness::new(default_config());
        for payload in [json!({}), json!({"key": []})] {
            let conf = exchange(&mut h, Action::GetConfiguration, payload);
            let got = entries(&conf);
            let names: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
            let all: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            assert_eq!(names, all);
            assert!(conf.get("unknownKey").is_none());
            for ((name, readonly, value), key) in got.iter().zip(KEYS) {
                assert_eq!(*readonly, key.readonly, "{name}");
                // 7.2: the password is write-only; every other key has its value.
                assert_eq!(value.is_none(), key.write_only(), "{name}: {value:?}");
            }
            let value = |n: &str| got.iter().find(|e| e.0 == n).unwrap().2.clone();
            assert_eq!(value("AuthorizationKey"), None);
            assert_eq!(value("SecurityProfile").as_deref(), Some("1"));
            assert_eq!(
                value("ConnectorPhaseRotation").as_deref(),
                Some("1.Unknown,2.Unknown,3.Unknown")
            );
            assert_eq!(value("MaxChargingProfilesInstalled").as_deref(), Some("32"));
            assert_eq!(value("GetConfigurationMaxKeys").as_deref(), Some("50"));
        }
        // One GetVariables holds them all (ItemsPerMessage[GetVariables], default).
        let reads = KEYS.iter().filter(|k| k.read_var().is_some()).count();
        assert!(reads <= max_keys(), "{reads}");
    }

    #[test]
    fn too_many_keys_is_an_occurrence_violation() {
        let names: Vec<String> = (0..=max_keys()).map(|i| format!("K{i}")).collect();
        let payload = json!({ "key": names });
        let Some(Err(e)) = lookup(1, |lk| request(Action::GetConfiguration, &payload, lk)) else {
            panic!("refused")
        };
        assert_eq!(e.code, CallErrorCode::OccurrenceConstraintViolation);
    }

    #[test]
    fn change_configuration_sets_the_variables() {
        let mut h = Harness::new(default_config());
        assert_eq!(change(&mut h, "HeartbeatInterval", "90"), "Accepted");
        assert_eq!(
            h.variable_values(&["OCPPCommCtrlr.HeartbeatInterval"]),
            ["90"]
        );
        // One key, two variables: StopTxnSampledData samples every MeterValueSampleInterval.
        assert_eq!(change(&mut h, "metervaluesampleinterval", "30"), "Accepted");
        assert_eq!(
            h.variable_values(&[
                "SampledDataCtrlr.TxUpdatedInterval",
                "SampledDataCtrlr.TxEndedInterval"
            ]),
            ["30", "30"]
        );
        // A CSL with blanks, and a boolean in other case.
        assert_eq!(
            change(
                &mut h,
                "StopTxnSampledData",
                "Energy.Active.Import.Register, Power.Active.Import"
            ),
            "Accepted"
        );
        assert_eq!(
            h.variable_values(&["SampledDataCtrlr.TxEndedMeasurands"]),
            ["Energy.Active.Import.Register,Power.Active.Import"]
        );
        assert_eq!(change(&mut h, "LocalPreAuthorize", "True"), "Accepted");
        assert_eq!(
            h.variable_values(&["AuthCtrlr.LocalPreAuthorize"]),
            ["true"]
        );
        assert_eq!(
            entries(&get(
                &mut h,
                &["StopTxnSampledData", "MeterValueSampleInterval"]
            )),
            vec![
                (
                    "StopTxnSampledData".into(),
                    false,
                    Some("Energy.Active.Import.Register,Power.Active.Import".into())
                ),
                ("MeterValueSampleInterval".into(), false, Some("30".into())),
            ]
        );
    }

    #[test]
    fn change_configuration_refusals() {
        let mut h = Harness::new(default_config());
        // Errata 3.14.4: an unsupported measurand (or a phase) is Rejected, nothing changed.
        assert_eq!(
            change(&mut h, "MeterValuesSampledData", "Voltage.L1"),
            "Rejected"
        );
        assert_eq!(
            change(&mut h, "MeterValuesSampledData", "SoC,Voltage"),
            "Rejected"
        );
        assert_eq!(
            h.variable_values(&["SampledDataCtrlr.TxUpdatedMeasurands"]),
            ["Energy.Active.Import.Register"]
        );
        // 9.1.34: negative ping intervals are Rejected; so is what is no integer.
        assert_eq!(change(&mut h, "WebSocketPingInterval", "-1"), "Rejected");
        assert_eq!(change(&mut h, "HeartbeatInterval", "soon"), "Rejected");
        assert_eq!(change(&mut h, "LocalAuthListEnabled", "yes"), "Rejected");
        // Read-only keys, computed or not.
        assert_eq!(change(&mut h, "NumberOfConnectors", "4"), "Rejected");
        assert_eq!(
            change(&mut h, "ChargeProfileMaxStackLevel", "3"),
            "Rejected"
        );
        assert_eq!(
            change(&mut h, "ReserveConnectorZeroSupported", "false"),
            "Rejected"
        );
        assert_eq!(change(&mut h, "SecurityProfile", "2"), "Rejected");
        // Unknown keys.
        assert_eq!(change(&mut h, "LightIntensity", "50"), "NotSupported");
        assert_eq!(change(&mut h, "Colour", "red"), "NotSupported");
        // The password: checked as the 2.0.1 BasicAuthPassword (A00.FR.205).
        assert_eq!(change(&mut h, "AuthorizationKey", "short"), "Rejected");
        assert_eq!(
            change(
                &mut h,
                "AuthorizationKey",
                "0123456789abcdef0123456789abcdef"
            ),
            "Accepted"
        );
    }

    #[test]
    fn set_variable_statuses_become_configuration_statuses() {
        use v201::SetVariableStatusEnum as S;
        let result = |status| {
            let (component, variable) = address(Var::HeartbeatInterval);
            v201::SetVariableResult {
                custom_data: None,
                attribute_type: None,
                attribute_status: status,
                attribute_status_info: None,
                component,
                variable,
            }
        };
        for (statuses, expected) in [
            (vec![S::Accepted], ConfigurationStatus::Accepted),
            (
                vec![S::Accepted, S::RebootRequired],
                ConfigurationStatus::RebootRequired,
            ),
            (vec![S::Rejected], ConfigurationStatus::Rejected),
            (
                vec![S::Accepted, S::Rejected],
                ConfigurationStatus::Rejected,
            ),
            (vec![S::UnknownVariable], ConfigurationStatus::NotSupported),
            (vec![S::UnknownComponent], ConfigurationStatus::NotSupported),
            (vec![], ConfigurationStatus::Rejected),
        ] {
            let results: Vec<_> = statuses.into_iter().map(result).collect();
            assert_eq!(set_status(&results), expected);
            let answer = change_status(set_status(&results));
            crate::ocpp::validate::validate(Action::ChangeConfiguration.response_schema(), &answer)
                .unwrap();
        }
    }

    #[test]
    fn translations_are_valid_2_0_1_requests() {
        lookup(2, |lk| {
            for key in KEYS {
                let get = json!({ "key": [key.name] });
                if let Some(Ok(Inbound::Call { action, payload })) =
                    request(Action::GetConfiguration, &get, lk)
                {
                    assert_eq!(action, v201::Action::GetVariables);
                    crate::ocpp::v201::validate::validate(action.request_schema(), &payload)
                        .unwrap();
                }
                let set = json!({ "key": key.name, "value": "1" });
                match request(Action::ChangeConfiguration, &set, lk) {
                    Some(Ok(Inbound::Call { action, payload })) => {
                        assert!(!key.readonly, "{}", key.name);
                        assert_eq!(action, v201::Action::SetVariables);
                        crate::ocpp::v201::validate::validate(action.request_schema(), &payload)
                            .unwrap();
                        assert_eq!(
                            payload["setVariableData"].as_array().unwrap().len(),
                            key.variables().len()
                        );
                    }
                    Some(Ok(Inbound::Answer(answer))) => {
                        assert!(key.readonly, "{}", key.name);
                        assert_eq!(answer, json!({"status": "Rejected"}));
                    }
                    other => panic!("{}: {other:?}", key.name),
                }
            }
            assert!(request(Action::Heartbeat, &json!({}), lk).is_none());
            assert!(response(Action::Heartbeat, &json!({}), &json!({}), lk).is_none());
        });
    }

    #[test]
    fn values_convert_both_ways() {
        let rate = find("ChargingScheduleAllowedChargingRateUnit").unwrap();
        assert_eq!(rate.to_v201("Current, Power"), "A,W");
        assert_eq!(rate.to_v16("A,W"), "Current,Power");
        let list = find("MeterValuesAlignedData").unwrap();
        assert_eq!(
            list.to_v201(" Voltage ,,Current.Import"),
            "Voltage,Current.Import"
        );
        assert_eq!(list.to_v201(""), "");
        let flag = find("StopTransactionOnInvalidId").unwrap();
        assert_eq!(flag.to_v201("FALSE"), "false");
        assert_eq!(flag.to_v201("0"), "0");
    }

    #[test]
    fn config_names_map_onto_the_variables() {
        assert_eq!(
            config_variables("meterValueSampleInterval", "15"),
            Some(Ok(vec![
                ("SampledDataCtrlr.TxUpdatedInterval".into(), "15".into()),
                ("SampledDataCtrlr.TxEndedInterval".into(), "15".into()),
            ]))
        );
        assert!(matches!(
            config_variables("NumberOfConnectors", "2"),
            Some(Err(e)) if e.contains("cannot be configured")
        ));
        assert_eq!(
            config_variables("OCPPCommCtrlr.HeartbeatInterval", "1"),
            None
        );
        assert_eq!(
            variables_of_key("heartbeatinterval"),
            Some(&[Var::HeartbeatInterval][..])
        );
        assert_eq!(variables_of_key("NumberOfConnectors"), Some(&[][..]));
        assert_eq!(variables_of_key("Colour"), None);
    }

    const CONFIG: &str = r#"
        [station]
        id = "CP001"
        vendor = "Example"
        model = "AC-2"

        [csms]
        url = "ws://127.0.0.1:9000/ocpp"
        password = "0123456789abcdef"

        [variables]
        VARIABLES

        [[evse]]
        id = 1
        plug = { backend = "sim" }
    "#;

    fn config(variables: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::Config::from_toml_str(&CONFIG.replace("VARIABLES", variables))
    }

    fn config_problems(variables: &str) -> Vec<(String, String)> {
        match config(variables) {
            Err(crate::config::ConfigError::Invalid(p)) => {
                p.into_iter().map(|p| (p.key, p.message)).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn config_variables_take_1_6_names() {
        let c = config(
            r#"HeartbeatInterval = 300
            MeterValuesSampledData = "Energy.Active.Import.Register, Power.Active.Import"
            meterValueSampleInterval = 20
            StopTransactionOnInvalidId = false
            "OCPPCommCtrlr.WebSocketPingInterval" = 10"#,
        )
        .unwrap();
        let pairs = c.variable_pairs();
        let model =
            DeviceModel::with_initial(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(model.int(Var::HeartbeatInterval), 300);
        assert_eq!(
            model.get(Var::TxUpdatedMeasurands),
            "Energy.Active.Import.Register,Power.Active.Import"
        );
        assert_eq!(model.int(Var::TxUpdatedInterval), 20);
        assert_eq!(model.int(Var::TxEndedInterval), 20);
        assert!(!model.bool(Var::StopTxOnInvalidId));
        assert_eq!(model.int(Var::WebSocketPingInterval), 10);
    }

    #[test]
    fn config_problems_name_the_entry_as_written() {
        let p = config_problems(
            r#"Colour = "red"
            NumberOfConnectors = 2
            HeartbeatInterval = "soon"
            MeterValueSampleInterval = 30
            "SampledDataCtrlr.TxEndedInterval" = 0"#,
        );
        let of = |key: &str| {
            p.iter()
                .filter(|(k, _)| k == &format!("variables.\"{key}\""))
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
        };
        // Unknown in both spellings.
        assert!(
            of("Colour")[0].contains("OCPP 1.6 configuration key"),
            "{p:?}"
        );
        assert!(
            of("NumberOfConnectors")[0].contains("cannot be configured"),
            "{p:?}"
        );
        assert!(
            of("HeartbeatInterval")[0].contains("OCPPCommCtrlr.HeartbeatInterval: \"soon\""),
            "{p:?}"
        );
        // One variable, two values.
        assert!(
            of("SampledDataCtrlr.TxEndedInterval")[0].contains("MeterValueSampleInterval"),
            "{p:?}"
        );
        assert_eq!(p.len(), 4, "{p:?}");
        // The same value twice is no conflict.
        assert!(
            config(
                r#"MeterValueSampleInterval = 30
            "SampledDataCtrlr.TxEndedInterval" = 30"#
            )
            .is_ok()
        );
    }

    #[test]
    fn the_readme_lists_every_key() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let start = readme
            .find("## OCPP 1.6 configuration keys")
            .expect("section");
        let section = &readme[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        for key in KEYS {
            let row = section
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", key.name)))
                .unwrap_or_else(|| panic!("{} not in the README", key.name));
            for var in key.variables() {
                let def = DeviceModel::def(*var);
                assert!(row.contains(&format!("`{}`", def.key())), "{row}");
            }
            let access = if key.write_only() {
                "W"
            } else if key.readonly {
                "R"
            } else {
                "RW"
            };
            assert!(row.contains(&format!("| {access} |")), "{row}");
        }
        // What GetConfiguration without keys needs of ItemsPerMessage[GetVariables].
        let reads = KEYS.iter().filter(|k| k.read_var().is_some()).count();
        assert!(
            section.contains(&format!(
                "`DeviceDataCtrlr.ItemsPerMessage[GetVariables]` of at least {reads}"
            )),
            "{reads}"
        );
    }
}
