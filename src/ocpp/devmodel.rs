//! The device model (part 2, B05-B07 and the appendices' component/variable lists), declared as
//! data in one table: every variable with its component, characteristics, mutability and
//! default. Stored variables keep their value here (and in the journal once the CSMS set them);
//! dynamic ones (availability, clock, power, ...) are computed by the station when read. Each
//! variable is read by the core where it changes behaviour.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Integer,
    Decimal,
    Boolean,
    String,
    DateTime,
    /// One of the listed values.
    OptionList(&'static [&'static str]),
    /// A comma-separated subset of the listed values (may be empty).
    MemberList(&'static [&'static str]),
    /// A comma-separated ordered list of the listed values, each at most once.
    SequenceList(&'static [&'static str]),
}

impl DataType {
    /// The `DataEnumType` value of the characteristics.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Integer => "integer",
            DataType::Decimal => "decimal",
            DataType::Boolean => "boolean",
            DataType::String => "string",
            DataType::DateTime => "dateTime",
            DataType::OptionList(_) => "OptionList",
            DataType::MemberList(_) => "MemberList",
            DataType::SequenceList(_) => "SequenceList",
        }
    }

    pub fn values_list(self) -> Option<&'static [&'static str]> {
        match self {
            DataType::OptionList(v) | DataType::MemberList(v) | DataType::SequenceList(v) => {
                Some(v)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "ReadOnly",
            Mutability::ReadWrite => "ReadWrite",
            Mutability::WriteOnly => "WriteOnly",
        }
    }
}

/// Where a component lives: once per station, per EVSE, or per connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Station,
    Evse,
    Connector,
}

/// The measurands this agent's meters can report (`SampledDataCtrlr.*Measurands`).
pub const MEASURANDS: &[&str] = &[
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    // What the charging limit lets the EV draw (smart charging).
    "Power.Offered",
];

/// TxStartPoint / TxStopPoint values this agent supports (E01, E06). ParkingBayOccupancy and
/// DataSigned need hardware the agent does not have (no bay detector, no signing meter).
pub const TX_POINTS: &[&str] = &[
    "EVConnected",
    "Authorized",
    "PowerPathClosed",
    "EnergyTransfer",
];

/// `AvailabilityState` values (ConnectorStatusEnumType).
pub const AVAILABILITY_STATES: &[&str] = &[
    "Available",
    "Occupied",
    "Reserved",
    "Unavailable",
    "Faulted",
];

/// Time sources: the agent takes the time from the CSMS's Heartbeat/Boot answers (B01.FR.06)
/// and never sets the system clock.
pub const TIME_SOURCES: &[&str] = &["Heartbeat"];

/// A check of a value beyond its data type.
pub type Validator = fn(&str) -> Result<(), String>;

/// One declared variable: where it lives, its characteristics and default.
#[derive(Debug, Clone, Copy)]
pub struct VariableDef {
    pub component: &'static str,
    pub name: &'static str,
    pub instance: Option<&'static str>,
    pub scope: Scope,
    pub data_type: DataType,
    pub unit: Option<&'static str>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub mutability: Mutability,
    pub default: &'static str,
    /// Computed from the station's state when read, not stored.
    pub dynamic: bool,
    /// Computed from the configuration (the station's identity): fixed while the agent runs,
    /// so reported constant and persistent although not stored here.
    pub constant: bool,
    /// A new value takes effect only after a restart (SetVariables answers RebootRequired).
    pub reboot_required: bool,
    /// An extra check of the value beyond the data type.
    pub validator: Option<Validator>,
}

const fn var(
    component: &'static str,
    name: &'static str,
    data_type: DataType,
    default: &'static str,
) -> VariableDef {
    VariableDef {
        component,
        name,
        instance: None,
        scope: Scope::Station,
        data_type,
        unit: None,
        min: None,
        max: None,
        mutability: Mutability::ReadWrite,
        default,
        dynamic: false,
        constant: false,
        reboot_required: false,
        validator: None,
    }
}

/// OCPP passwordString (A00.FR.205): 16 to 40 characters of letters, digits and `*-_=:+|@.`.
fn password_string(value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if !(16..=40).contains(&n) {
        return Err(format!("a password has 16 to 40 characters, not {n}"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !"*-_=:+|@.".contains(*c))
    {
        return Err(format!("{c:?} is not allowed in a password"));
    }
    Ok(())
}

/// ISO 4217: three capital letters (TariffCostCtrlr.Currency).
fn currency_code(value: &str) -> Result<(), String> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not an ISO 4217 currency code (e.g. EUR)"
        ))
    }
}

/// A message for the driver: what a personalMessage may hold, at most 255 characters here.
fn driver_message(value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if n <= 255 {
        Ok(())
    } else {
        Err(format!("at most 255 characters, not {n}"))
    }
}

impl VariableDef {
    const fn instance(mut self, instance: &'static str) -> Self {
        self.instance = Some(instance);
        self
    }
    const fn unit(mut self, unit: &'static str) -> Self {
        self.unit = Some(unit);
        self
    }
    const fn range(mut self, min: i64, max: i64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    const fn min(mut self, min: i64) -> Self {
        self.min = Some(min);
        self
    }
    const fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }
    const fn dynamic(mut self) -> Self {
        self.dynamic = true;
        self.mutability = Mutability::ReadOnly;
        self
    }
    /// Taken from the configuration, not settable (e.g. the model reported in BootNotification).
    const fn constant(mut self) -> Self {
        self.constant = true;
        self.dynamic()
    }
    const fn per_evse(mut self) -> Self {
        self.scope = Scope::Evse;
        self
    }
    const fn per_connector(mut self) -> Self {
        self.scope = Scope::Connector;
        self
    }
    const fn reboot(mut self) -> Self {
        self.reboot_required = true;
        self
    }
    const fn write_only(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self
    }
    const fn validate(mut self, f: Validator) -> Self {
        self.validator = Some(f);
        self
    }

    /// A secret: never logged, never shown.
    pub fn is_secret(&self) -> bool {
        self.mutability == Mutability::WriteOnly
    }

    /// `Component.Variable` or `Component.Variable[Instance]`, as the TOML `[variables]` keys
    /// and the logs spell it.
    pub fn key(&self) -> String {
        match self.instance {
            Some(i) => format!("{}.{}[{}]", self.component, self.name, i),
            None => format!("{}.{}", self.component, self.name),
        }
    }

    /// Whether `value` is acceptable for this variable (B05.FR.07/08).
    pub fn check(&self, value: &str) -> Result<(), String> {
        if let Some(validator) = self.validator {
            validator(value)?;
        }
        match self.data_type {
            DataType::Integer => {
                let v: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{value:?} is not an integer"))?;
                if let Some(min) = self.min.filter(|m| v < *m) {
                    return Err(format!("{v} is below the minimum {min}"));
                }
                if let Some(max) = self.max.filter(|m| v > *m) {
                    return Err(format!("{v} is above the maximum {max}"));
                }
                Ok(())
            }
            DataType::Decimal => {
                let v: f64 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| format!("{value:?} is not a decimal"))?;
                if let Some(min) = self.min.filter(|m| v < *m as f64) {
                    return Err(format!("{v} is below the minimum {min}"));
                }
                if let Some(max) = self.max.filter(|m| v > *m as f64) {
                    return Err(format!("{v} is above the maximum {max}"));
                }
                Ok(())
            }
            DataType::Boolean => match value {
                "true" | "false" => Ok(()),
                _ => Err(format!("{value:?} is not a boolean (true or false)")),
            },
            DataType::String | DataType::DateTime => {
                if value.chars().count() > 1000 {
                    Err("longer than 1000 characters".into())
                } else {
                    Ok(())
                }
            }
            DataType::OptionList(allowed) => {
                if allowed.contains(&value) {
                    Ok(())
                } else {
                    Err(format!("{value:?} is not one of {}", allowed.join(", ")))
                }
            }
            DataType::MemberList(allowed) | DataType::SequenceList(allowed) => {
                let members: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .collect();
                for (i, member) in members.iter().enumerate() {
                    if !allowed.contains(member) {
                        return Err(format!("{member:?} is not one of {}", allowed.join(", ")));
                    }
                    if members[..i].contains(member) {
                        return Err(format!("{member:?} is listed twice"));
                    }
                }
                if matches!(self.data_type, DataType::SequenceList(_)) && members.is_empty() {
                    return Err("the list must not be empty".into());
                }
                Ok(())
            }
        }
    }
}

macro_rules! variables {
    ($( $id:ident => $def:expr; )*) => {
        /// Typed handle of a declared variable (index into [`VARIABLES`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Var { $($id),* }

        pub static VARIABLES: &[VariableDef] = &[$($def),*];
    };
}

use DataType::{Boolean, DateTime, Decimal, Integer, MemberList, OptionList, SequenceList};

variables! {
    // The station and its parts (dynamic: computed from the live state).
    StationAvailabilityState => var("ChargingStation", "AvailabilityState", OptionList(AVAILABILITY_STATES), "Available").dynamic();
    StationAvailable => var("ChargingStation", "Available", Boolean, "true").dynamic();
    StationSupplyPhases => var("ChargingStation", "SupplyPhases", Integer, "3").read_only();
    // A connector fault, propagated up (appendix: Problem includes what is propagated from
    // contained components), or a journal that cannot write.
    StationProblem => var("ChargingStation", "Problem", Boolean, "false").dynamic();
    // What BootNotification reports ([station] of the configuration).
    StationModel => var("ChargingStation", "Model", DataType::String, "").constant();
    StationVendorName => var("ChargingStation", "VendorName", DataType::String, "").constant();
    // L01.FR.07: EVSEs stay usable while a firmware installation waits for transactions.
    AllowNewSessionsPendingFirmwareUpdate => var("ChargingStation", "AllowNewSessionsPendingFirmwareUpdate", Boolean, "false");
    EvseAvailabilityState => var("EVSE", "AvailabilityState", OptionList(AVAILABILITY_STATES), "Available").dynamic().per_evse();
    EvseAvailable => var("EVSE", "Available", Boolean, "true").dynamic().per_evse();
    EvsePower => var("EVSE", "Power", Decimal, "0").unit("W").dynamic().per_evse();
    EvseSupplyPhases => var("EVSE", "SupplyPhases", Integer, "3").read_only().per_evse();
    // One of its connectors is faulted.
    EvseProblem => var("EVSE", "Problem", Boolean, "false").dynamic().per_evse();
    // B11/B12: Reset with an evseId ends that EVSE's transaction only.
    EvseAllowReset => var("EVSE", "AllowReset", Boolean, "true").read_only().per_evse();
    ConnectorAvailabilityState => var("Connector", "AvailabilityState", OptionList(AVAILABILITY_STATES), "Available").dynamic().per_connector();
    ConnectorAvailable => var("Connector", "Available", Boolean, "true").dynamic().per_connector();
    ConnectorType => var("Connector", "ConnectorType", DataType::String, "cType2").read_only().per_connector();
    ConnectorSupplyPhases => var("Connector", "SupplyPhases", Integer, "3").read_only().per_connector();
    // Its hardware fault (Input::Fault); the NotifyEvent of a fault names this variable.
    ConnectorProblem => var("Connector", "Problem", Boolean, "false").dynamic().per_connector();

    ClockDateTime => var("ClockCtrlr", "DateTime", DateTime, "").dynamic();
    ClockTimeSource => var("ClockCtrlr", "TimeSource", SequenceList(TIME_SOURCES), "Heartbeat");

    ItemsPerMessageGetReport => var("DeviceDataCtrlr", "ItemsPerMessage", Integer, "20").instance("GetReport").read_only();
    ItemsPerMessageGetVariables => var("DeviceDataCtrlr", "ItemsPerMessage", Integer, "50").instance("GetVariables").read_only();
    ItemsPerMessageSetVariables => var("DeviceDataCtrlr", "ItemsPerMessage", Integer, "50").instance("SetVariables").read_only();
    BytesPerMessageGetReport => var("DeviceDataCtrlr", "BytesPerMessage", Integer, "65536").instance("GetReport").read_only();
    BytesPerMessageGetVariables => var("DeviceDataCtrlr", "BytesPerMessage", Integer, "65536").instance("GetVariables").read_only();
    BytesPerMessageSetVariables => var("DeviceDataCtrlr", "BytesPerMessage", Integer, "65536").instance("SetVariables").read_only();
    // Longer values are cut in GetVariables and NotifyReport (at most the schemas' 2500).
    ReportingValueSize => var("DeviceDataCtrlr", "ReportingValueSize", Integer, "2500").range(1, 2500).read_only();
    // Longer SetVariables values are rejected (at most the schema's 1000).
    ConfigurationValueSize => var("DeviceDataCtrlr", "ConfigurationValueSize", Integer, "1000").range(1, 1000).read_only();

    FileTransferProtocols => var("OCPPCommCtrlr", "FileTransferProtocols", MemberList(&["HTTP", "HTTPS", "FTP"]), "HTTPS,HTTP,FTP").read_only();
    HeartbeatInterval => var("OCPPCommCtrlr", "HeartbeatInterval", Integer, "60").unit("s").range(1, 86_400);
    MessageTimeout => var("OCPPCommCtrlr", "MessageTimeout", Integer, "30").instance("Default").unit("s").range(1, 3600).read_only();
    MessageAttemptsTransactionEvent => var("OCPPCommCtrlr", "MessageAttempts", Integer, "3").instance("TransactionEvent").range(1, 100);
    MessageAttemptIntervalTransactionEvent => var("OCPPCommCtrlr", "MessageAttemptInterval", Integer, "60").instance("TransactionEvent").unit("s").range(0, 3600);
    // The configuration slots in the order to try (B10); read at start-up (RebootRequired).
    // Slot 1 starts as the configuration file's [csms] section.
    NetworkConfigurationPriority => var("OCPPCommCtrlr", "NetworkConfigurationPriority", SequenceList(super::network::SLOTS), "1").reboot();
    // The slot the station connects with now (B10).
    ActiveNetworkProfile => var("OCPPCommCtrlr", "ActiveNetworkProfile", DataType::String, "1").dynamic();
    NetworkProfileConnectionAttempts => var("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", Integer, "3").range(1, 100);
    OfflineThreshold => var("OCPPCommCtrlr", "OfflineThreshold", Integer, "180").unit("s").min(0);
    ResetRetries => var("OCPPCommCtrlr", "ResetRetries", Integer, "1").range(0, 10);
    RetryBackOffRepeatTimes => var("OCPPCommCtrlr", "RetryBackOffRepeatTimes", Integer, "5").range(0, 16);
    RetryBackOffRandomRange => var("OCPPCommCtrlr", "RetryBackOffRandomRange", Integer, "10").unit("s").range(0, 3600);
    RetryBackOffWaitMinimum => var("OCPPCommCtrlr", "RetryBackOffWaitMinimum", Integer, "5").unit("s").range(0, 3600);
    UnlockOnEvSideDisconnect => var("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", Boolean, "true");
    WebSocketPingInterval => var("OCPPCommCtrlr", "WebSocketPingInterval", Integer, "30").unit("s").range(0, 3600);

    SecurityOrganizationName => var("SecurityCtrlr", "OrganizationName", DataType::String, "ocpp-agent");
    // A01: set by the CSMS; the agent then reconnects with it. The initial password is
    // `csms.password` of the configuration.
    BasicAuthPassword => var("SecurityCtrlr", "BasicAuthPassword", DataType::String, "").write_only().validate(password_string);
    SecurityProfile => var("SecurityCtrlr", "SecurityProfile", Integer, "1").dynamic();
    // The station id it connects and authenticates with ([station] id).
    SecurityIdentity => var("SecurityCtrlr", "Identity", DataType::String, "").constant();
    // A02.FR.17-19: resend the CSR when no CertificateSigned came, doubling the wait.
    CertSigningWaitMinimum => var("SecurityCtrlr", "CertSigningWaitMinimum", Integer, "60").unit("s").range(1, 86_400);
    CertSigningRepeatTimes => var("SecurityCtrlr", "CertSigningRepeatTimes", Integer, "3").range(0, 10);
    CertificateEntries => var("SecurityCtrlr", "CertificateEntries", Integer, "0").dynamic();

    TxStartPoint => var("TxCtrlr", "TxStartPoint", MemberList(TX_POINTS), "EVConnected,Authorized");
    TxStopPoint => var("TxCtrlr", "TxStopPoint", MemberList(TX_POINTS), "EVConnected,Authorized");
    EvConnectionTimeOut => var("TxCtrlr", "EVConnectionTimeOut", Integer, "120").unit("s").range(0, 86_400);
    StopTxOnEvSideDisconnect => var("TxCtrlr", "StopTxOnEVSideDisconnect", Boolean, "true");
    StopTxOnInvalidId => var("TxCtrlr", "StopTxOnInvalidId", Boolean, "true");
    MaxEnergyOnInvalidId => var("TxCtrlr", "MaxEnergyOnInvalidId", Integer, "0").unit("Wh").min(0);
    TxBeforeAcceptedEnabled => var("TxCtrlr", "TxBeforeAcceptedEnabled", Boolean, "false");

    AuthEnabled => var("AuthCtrlr", "Enabled", Boolean, "true");
    AuthorizeRemoteStart => var("AuthCtrlr", "AuthorizeRemoteStart", Boolean, "false");
    LocalAuthorizeOffline => var("AuthCtrlr", "LocalAuthorizeOffline", Boolean, "true");
    LocalPreAuthorize => var("AuthCtrlr", "LocalPreAuthorize", Boolean, "false");
    OfflineTxForUnknownIdEnabled => var("AuthCtrlr", "OfflineTxForUnknownIdEnabled", Boolean, "false");
    // C16: tokens of this group stop every ongoing transaction and never start one; "" = none.
    MasterPassGroupId => var("AuthCtrlr", "MasterPassGroupId", DataType::String, "");
    // No Authorize requests: the local list and the cache decide alone.
    DisableRemoteAuthorization => var("AuthCtrlr", "DisableRemoteAuthorization", Boolean, "false");
    AuthCacheAvailable => var("AuthCacheCtrlr", "Available", Boolean, "true").read_only();
    AuthCacheEnabled => var("AuthCacheCtrlr", "Enabled", Boolean, "true");
    AuthCacheLifeTime => var("AuthCacheCtrlr", "LifeTime", Integer, "86400").unit("s").min(1);
    // Entries not used for the longest time go first (auth.rs).
    AuthCachePolicy => var("AuthCacheCtrlr", "Policy", OptionList(&["LRU"]), "LRU").read_only();
    // C10.FR.03 / C12.FR.05: a cached idToken that is not Accepted is rejected without asking.
    AuthCacheDisablePostAuthorize => var("AuthCacheCtrlr", "DisablePostAuthorize", Boolean, "false");
    LocalAuthListAvailable => var("LocalAuthListCtrlr", "Available", Boolean, "true").read_only();
    LocalAuthListEnabled => var("LocalAuthListCtrlr", "Enabled", Boolean, "true");
    // C14.FR.03: a listed idToken that is not Accepted is rejected without asking.
    LocalAuthListDisablePostAuthorize => var("LocalAuthListCtrlr", "DisablePostAuthorize", Boolean, "false");
    LocalAuthListEntries => var("LocalAuthListCtrlr", "Entries", Integer, "0").dynamic();
    ItemsPerMessageSendLocalList => var("LocalAuthListCtrlr", "ItemsPerMessage", Integer, "100").read_only();
    BytesPerMessageSendLocalList => var("LocalAuthListCtrlr", "BytesPerMessage", Integer, "65536").read_only();

    SampledDataAvailable => var("SampledDataCtrlr", "Available", Boolean, "true").read_only();
    // false: no sampled meter values in TransactionEvents (Started, Updated, Ended).
    SampledDataEnabled => var("SampledDataCtrlr", "Enabled", Boolean, "true");
    // The meters the agent reads do not sign their readings.
    SampledDataSignReadings => var("SampledDataCtrlr", "SignReadings", Boolean, "false").read_only();
    TxStartedMeasurands => var("SampledDataCtrlr", "TxStartedMeasurands", MemberList(MEASURANDS), "Energy.Active.Import.Register");
    TxUpdatedMeasurands => var("SampledDataCtrlr", "TxUpdatedMeasurands", MemberList(MEASURANDS), "Energy.Active.Import.Register");
    TxUpdatedInterval => var("SampledDataCtrlr", "TxUpdatedInterval", Integer, "60").unit("s").range(0, 86_400);
    TxEndedMeasurands => var("SampledDataCtrlr", "TxEndedMeasurands", MemberList(MEASURANDS), "Energy.Active.Import.Register");
    TxEndedInterval => var("SampledDataCtrlr", "TxEndedInterval", Integer, "0").unit("s").range(0, 86_400);
    AlignedDataAvailable => var("AlignedDataCtrlr", "Available", Boolean, "true").read_only();
    // false: no clock-aligned readings at all (MeterValues, Updated events, Ended samples).
    AlignedDataEnabled => var("AlignedDataCtrlr", "Enabled", Boolean, "true");
    // true: no clock-aligned meter values while a transaction is ongoing.
    AlignedSendDuringIdle => var("AlignedDataCtrlr", "SendDuringIdle", Boolean, "false");
    AlignedSignReadings => var("AlignedDataCtrlr", "SignReadings", Boolean, "false").read_only();
    AlignedInterval => var("AlignedDataCtrlr", "Interval", Integer, "0").unit("s").range(0, 86_400);
    AlignedMeasurands => var("AlignedDataCtrlr", "Measurands", MemberList(MEASURANDS), "Energy.Active.Import.Register");
    AlignedTxEndedInterval => var("AlignedDataCtrlr", "TxEndedInterval", Integer, "0").unit("s").range(0, 86_400);
    AlignedTxEndedMeasurands => var("AlignedDataCtrlr", "TxEndedMeasurands", MemberList(MEASURANDS), "Energy.Active.Import.Register");

    // H01-H04: reservations (blocks/reservations.rs). Enabled false: ReserveNow is Rejected
    // (H01.FR.01); NonEvseSpecific false: a reservation without an EVSE is (H01.FR.19).
    ReservationAvailable => var("ReservationCtrlr", "Available", Boolean, "true").read_only();
    ReservationEnabled => var("ReservationCtrlr", "Enabled", Boolean, "true");
    ReservationNonEvseSpecific => var("ReservationCtrlr", "NonEvseSpecific", Boolean, "true");

    // I01-I08: tariff and cost for the driver (blocks/tariff.rs), shown by the integrator's
    // HMI through `ctl display` / `ctl watch`. Enabled false: personal messages, resp. costs,
    // are not passed on.
    TariffAvailable => var("TariffCostCtrlr", "Available", Boolean, "true").instance("Tariff").read_only();
    TariffEnabled => var("TariffCostCtrlr", "Enabled", Boolean, "true").instance("Tariff");
    CostAvailable => var("TariffCostCtrlr", "Available", Boolean, "true").instance("Cost").read_only();
    CostEnabled => var("TariffCostCtrlr", "Enabled", Boolean, "true").instance("Cost");
    Currency => var("TariffCostCtrlr", "Currency", DataType::String, "EUR").validate(currency_code);
    // I04.FR.01: shown when there is no driver-specific tariff (or the station is offline).
    TariffFallbackMessage => var("TariffCostCtrlr", "TariffFallbackMessage", DataType::String, "").validate(driver_message);
    // I05.FR.02: shown when a transaction ended offline, so its cost is not known here.
    TotalCostFallbackMessage => var("TariffCostCtrlr", "TotalCostFallbackMessage", DataType::String, "").validate(driver_message);

    // K01-K10: charging profiles (blocks/smart_charging.rs). false: the K messages are answered
    // NotSupported (K01.FR.29) and no profile limits charging.
    SmartChargingAvailable => var("SmartChargingCtrlr", "Available", Boolean, "true").read_only();
    SmartChargingEnabled => var("SmartChargingCtrlr", "Enabled", Boolean, "true");
    // The installed profiles; at most maxLimit (a SetChargingProfile beyond it is Rejected).
    ChargingProfileEntries => var("SmartChargingCtrlr", "Entries", Integer, "0").instance("ChargingProfiles").dynamic().range(0, super::blocks::smart_charging::MAX_PROFILES);
    // A limit that changes by less than this (percent) sends no TransactionEvent
    // ChargingRateChanged; the hardware gets every change.
    LimitChangeSignificance => var("SmartChargingCtrlr", "LimitChangeSignificance", Decimal, "10").unit("Percent").range(0, 100);
    // false: `ctl limit` (a local energy manager) is refused.
    ExternalControlSignalsEnabled => var("SmartChargingCtrlr", "ExternalControlSignalsEnabled", Boolean, "true");
    // NotifyChargingLimit carries the external limit's schedule too.
    NotifyChargingLimitWithSchedules => var("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", Boolean, "false");
    PeriodsPerSchedule => var("SmartChargingCtrlr", "PeriodsPerSchedule", Integer, "48").read_only();
    ProfileStackLevel => var("SmartChargingCtrlr", "ProfileStackLevel", Integer, "8").read_only();
    // K01.FR.26 / K08.FR.07: the units a schedule or a composite may use.
    ChargingRateUnits => var("SmartChargingCtrlr", "RateUnit", MemberList(&["A", "W"]), "A,W").read_only();
    // No switching between 3 and 1 phases during a transaction, nor of the phase used
    // (K01.FR.48: a phaseToUse is Rejected).
    Phases3to1 => var("SmartChargingCtrlr", "Phases3to1", Boolean, "false").read_only();
    AcPhaseSwitchingSupported => var("SmartChargingCtrlr", "ACPhaseSwitchingSupported", Boolean, "false").read_only().per_evse();

    // O01-O06: display messages (blocks/display.rs) for the integrator's HMI (`ctl display`,
    // `ctl watch`). false: the O messages are answered NotSupported and no message is shown.
    DisplayMessageAvailable => var("DisplayMessageCtrlr", "Available", Boolean, "true").read_only();
    DisplayMessageEnabled => var("DisplayMessageCtrlr", "Enabled", Boolean, "true");
    // The messages set; at most maxLimit (a SetDisplayMessage beyond it is Rejected, O01.FR.11).
    DisplayMessages => var("DisplayMessageCtrlr", "DisplayMessages", Integer, "0").dynamic().range(0, super::blocks::display::MAX_MESSAGES);
    // What the HMI can show: a message in another format is NotSupportedMessageFormat
    // (O01.FR.03). The configuration may widen it to HTML and URI for an HMI that renders them.
    DisplayMessageSupportedFormats => var("DisplayMessageCtrlr", "SupportedFormats", MemberList(&["ASCII", "HTML", "URI", "UTF8"]), "ASCII,UTF8").read_only();
    // A message of another priority is NotSupportedPriority (O01.FR.01).
    // 001.FR.21 (errata): the displays a message's `display` may name: the main one, and one
    // per EVSE (the integrator's HMI shows each EVSE's screen where it has one).
    MainDisplayAvailable => var("Display", "Available", Boolean, "true").read_only();
    EvseDisplayAvailable => var("Display", "Available", Boolean, "true").read_only().per_evse();
    DisplayMessageSupportedPriorities => var("DisplayMessageCtrlr", "SupportedPriorities", MemberList(&["AlwaysFront", "InFront", "NormalCycle"]), "AlwaysFront,InFront,NormalCycle").read_only();
}

/// A bad value for a variable, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for VariableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Why a component/variable pair was not found (B05.FR.04/05, B06.FR.06/07).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    Component,
    Variable,
}

/// The journal meta key under which a value set by the CSMS is kept.
pub fn meta_key(def: &VariableDef) -> String {
    format!("var:{}", def.key())
}

/// The current values of every stored variable.
#[derive(Debug, Clone)]
pub struct DeviceModel {
    values: Vec<String>,
}

impl Default for DeviceModel {
    fn default() -> Self {
        DeviceModel {
            values: VARIABLES.iter().map(|d| d.default.to_owned()).collect(),
        }
    }
}

impl DeviceModel {
    pub fn def(var: Var) -> &'static VariableDef {
        &VARIABLES[var as usize]
    }

    /// Finds a variable by its `Component.Variable[Instance]` key.
    pub fn lookup(key: &str) -> Option<usize> {
        VARIABLES.iter().position(|d| d.key() == key)
    }

    /// Finds a variable as a CSMS names it. Whether the EVSE/connector exists is the station's
    /// business; here only the shape is checked: station components take no `evse`, EVSE
    /// components an `evse.id`, connector components `evse.id` and `evse.connectorId`.
    pub fn find(
        component: &str,
        component_instance: Option<&str>,
        evse: Option<(i64, Option<i64>)>,
        variable: &str,
        variable_instance: Option<&str>,
    ) -> Result<usize, Unknown> {
        let scope_fits = |d: &VariableDef| {
            matches!(
                (d.scope, evse),
                (Scope::Station, None)
                    | (Scope::Evse, Some((_, None)))
                    | (Scope::Connector, Some((_, Some(_))))
            )
        };
        fn empty_is_none(s: Option<&str>) -> Option<&str> {
            s.filter(|s| !s.is_empty())
        }
        if empty_is_none(component_instance).is_some()
            || !VARIABLES
                .iter()
                .any(|d| d.component == component && scope_fits(d))
        {
            return Err(Unknown::Component);
        }
        VARIABLES
            .iter()
            .position(|d| {
                d.component == component
                    && scope_fits(d)
                    && d.name == variable
                    && d.instance == empty_is_none(variable_instance)
            })
            .ok_or(Unknown::Variable)
    }

    /// Applies initial values (the TOML `[variables]` table), collecting every problem.
    pub fn with_initial<'a>(
        values: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, Vec<VariableError>> {
        let mut model = DeviceModel::default();
        let mut errors = Vec::new();
        for (key, value) in values {
            let Some(index) = Self::lookup(key) else {
                errors.push(VariableError {
                    key: key.to_owned(),
                    problem: "unknown variable (expected \"Component.Variable\" or \
                              \"Component.Variable[Instance]\" of the device model)"
                        .into(),
                });
                continue;
            };
            let def = &VARIABLES[index];
            let result = if def.dynamic || def.scope != Scope::Station {
                Err("reflects the station's state and cannot be configured".into())
            } else if def.is_secret() {
                Err("set csms.password instead".into())
            } else {
                def.check(value)
            };
            match result {
                Ok(()) => model.values[index] = value.trim().to_owned(),
                Err(problem) => errors.push(VariableError {
                    key: key.to_owned(),
                    problem,
                }),
            }
        }
        if errors.is_empty() {
            Ok(model)
        } else {
            Err(errors)
        }
    }

    /// Sets a stored value by index (already checked).
    pub fn set_index(&mut self, index: usize, value: &str) {
        self.values[index] = value.trim().to_owned();
    }

    pub fn value_index(&self, index: usize) -> &str {
        &self.values[index]
    }

    pub fn get(&self, var: Var) -> &str {
        &self.values[var as usize]
    }

    /// The value of an integer variable. Values are checked when set, so the fallback to the
    /// default never triggers in practice.
    pub fn int(&self, var: Var) -> i64 {
        self.get(var)
            .parse()
            .or_else(|_| Self::def(var).default.parse())
            .unwrap_or(0)
    }

    /// The value of a decimal variable (checked when set, like `int`).
    pub fn decimal(&self, var: Var) -> f64 {
        self.get(var)
            .trim()
            .parse()
            .or_else(|_| Self::def(var).default.parse())
            .unwrap_or(0.0)
    }

    pub fn bool(&self, var: Var) -> bool {
        self.get(var) == "true"
    }

    /// The members of a MemberList variable.
    pub fn list(&self, var: Var) -> impl Iterator<Item = &str> {
        self.get(var)
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
    }

    pub fn contains(&self, var: Var, member: &str) -> bool {
        self.list(var).any(|m| m == member)
    }

    pub fn seconds(&self, var: Var) -> std::time::Duration {
        std::time::Duration::from_secs(self.int(var).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_enum_agree() {
        assert_eq!(
            DeviceModel::def(Var::WebSocketPingInterval).key(),
            "OCPPCommCtrlr.WebSocketPingInterval"
        );
        assert_eq!(
            DeviceModel::def(Var::MessageTimeout).key(),
            "OCPPCommCtrlr.MessageTimeout[Default]"
        );
        assert_eq!(
            DeviceModel::def(Var::AlignedTxEndedMeasurands).key(),
            "AlignedDataCtrlr.TxEndedMeasurands"
        );
        for def in VARIABLES {
            if !def.dynamic && !def.is_secret() {
                assert!(def.check(def.default).is_ok(), "default of {}", def.key());
            }
        }
        let mut keys: Vec<(String, Scope)> = VARIABLES.iter().map(|d| (d.key(), d.scope)).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        assert_eq!(keys.len(), VARIABLES.len(), "duplicate declarations");
    }

    #[test]
    fn every_variable_the_appendix_requires_for_the_core_controllers_exists() {
        // dm_components_vars.csv, Required = yes, for the components the Core profile uses.
        for (component, variable, instance) in [
            ("AlignedDataCtrlr", "Interval", None),
            ("AlignedDataCtrlr", "Measurands", None),
            ("AlignedDataCtrlr", "TxEndedInterval", None),
            ("AlignedDataCtrlr", "TxEndedMeasurands", None),
            ("AuthCtrlr", "AuthorizeRemoteStart", None),
            ("AuthCtrlr", "LocalAuthorizeOffline", None),
            ("AuthCtrlr", "LocalPreAuthorize", None),
            ("ChargingStation", "AvailabilityState", None),
            ("ChargingStation", "Available", None),
            ("ChargingStation", "SupplyPhases", None),
            ("ClockCtrlr", "DateTime", None),
            ("ClockCtrlr", "TimeSource", None),
            ("Connector", "Available", None),
            ("Connector", "ConnectorType", None),
            ("Connector", "SupplyPhases", None),
            ("DeviceDataCtrlr", "BytesPerMessage", Some("GetReport")),
            ("DeviceDataCtrlr", "BytesPerMessage", Some("GetVariables")),
            ("DeviceDataCtrlr", "BytesPerMessage", Some("SetVariables")),
            ("DeviceDataCtrlr", "ItemsPerMessage", Some("GetReport")),
            ("DeviceDataCtrlr", "ItemsPerMessage", Some("GetVariables")),
            ("DeviceDataCtrlr", "ItemsPerMessage", Some("SetVariables")),
            ("EVSE", "AvailabilityState", None),
            ("EVSE", "Available", None),
            ("EVSE", "Power", None),
            ("EVSE", "SupplyPhases", None),
            ("OCPPCommCtrlr", "FileTransferProtocols", None),
            ("OCPPCommCtrlr", "MessageTimeout", Some("Default")),
            (
                "OCPPCommCtrlr",
                "MessageAttemptInterval",
                Some("TransactionEvent"),
            ),
            ("OCPPCommCtrlr", "MessageAttempts", Some("TransactionEvent")),
            ("OCPPCommCtrlr", "NetworkConfigurationPriority", None),
            ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", None),
            ("OCPPCommCtrlr", "OfflineThreshold", None),
            ("OCPPCommCtrlr", "ResetRetries", None),
            ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect", None),
            ("SampledDataCtrlr", "TxEndedInterval", None),
            ("SampledDataCtrlr", "TxEndedMeasurands", None),
            ("SampledDataCtrlr", "TxStartedMeasurands", None),
            ("SampledDataCtrlr", "TxUpdatedInterval", None),
            ("SampledDataCtrlr", "TxUpdatedMeasurands", None),
            ("SecurityCtrlr", "CertificateEntries", None),
            ("SecurityCtrlr", "OrganizationName", None),
            ("SecurityCtrlr", "SecurityProfile", None),
            // The Smart Charging profile's (issue 14).
            ("SmartChargingCtrlr", "Entries", Some("ChargingProfiles")),
            ("SmartChargingCtrlr", "LimitChangeSignificance", None),
            ("SmartChargingCtrlr", "PeriodsPerSchedule", None),
            ("SmartChargingCtrlr", "ProfileStackLevel", None),
            ("SmartChargingCtrlr", "RateUnit", None),
            // The Advanced User Interface profile's display messages (issue 15).
            ("DisplayMessageCtrlr", "DisplayMessages", None),
            ("DisplayMessageCtrlr", "SupportedFormats", None),
            ("DisplayMessageCtrlr", "SupportedPriorities", None),
            ("TxCtrlr", "EVConnectionTimeOut", None),
            ("TxCtrlr", "StopTxOnEVSideDisconnect", None),
            ("TxCtrlr", "StopTxOnInvalidId", None),
            ("TxCtrlr", "TxStartPoint", None),
            ("TxCtrlr", "TxStopPoint", None),
        ] {
            assert!(
                VARIABLES.iter().any(|d| d.component == component
                    && d.name == variable
                    && d.instance == instance),
                "{component}.{variable} {instance:?}"
            );
        }
    }

    #[test]
    fn optional_appendix_variables_whose_behaviour_the_agent_has_exist() {
        // dm_components_vars.csv (Required = no) and the generic Problem of the appendix's
        // component descriptions, for behaviour the agent has: each is read where it acts.
        for (component, variable, instance, scope) in [
            (
                "ChargingStation",
                "AllowNewSessionsPendingFirmwareUpdate",
                None,
                Scope::Station,
            ),
            ("ChargingStation", "Model", None, Scope::Station),
            ("ChargingStation", "Problem", None, Scope::Station),
            ("ChargingStation", "VendorName", None, Scope::Station),
            ("EVSE", "AllowReset", None, Scope::Evse),
            ("EVSE", "Problem", None, Scope::Evse),
            ("Connector", "AvailabilityState", None, Scope::Connector),
            ("Connector", "Problem", None, Scope::Connector),
            (
                "DeviceDataCtrlr",
                "ConfigurationValueSize",
                None,
                Scope::Station,
            ),
            (
                "DeviceDataCtrlr",
                "ReportingValueSize",
                None,
                Scope::Station,
            ),
            (
                "OCPPCommCtrlr",
                "ActiveNetworkProfile",
                None,
                Scope::Station,
            ),
            ("OCPPCommCtrlr", "HeartbeatInterval", None, Scope::Station),
            (
                "OCPPCommCtrlr",
                "RetryBackOffRandomRange",
                None,
                Scope::Station,
            ),
            (
                "OCPPCommCtrlr",
                "RetryBackOffRepeatTimes",
                None,
                Scope::Station,
            ),
            (
                "OCPPCommCtrlr",
                "RetryBackOffWaitMinimum",
                None,
                Scope::Station,
            ),
            (
                "OCPPCommCtrlr",
                "WebSocketPingInterval",
                None,
                Scope::Station,
            ),
            ("SecurityCtrlr", "BasicAuthPassword", None, Scope::Station),
            (
                "SecurityCtrlr",
                "CertSigningRepeatTimes",
                None,
                Scope::Station,
            ),
            (
                "SecurityCtrlr",
                "CertSigningWaitMinimum",
                None,
                Scope::Station,
            ),
            ("SecurityCtrlr", "Identity", None, Scope::Station),
            ("DisplayMessageCtrlr", "Available", None, Scope::Station),
            ("DisplayMessageCtrlr", "Enabled", None, Scope::Station),
        ] {
            assert!(
                VARIABLES.iter().any(|d| d.component == component
                    && d.name == variable
                    && d.instance == instance
                    && d.scope == scope),
                "{component}.{variable} {instance:?}"
            );
        }
        // Taken from the configuration: not settable, reported constant.
        for var in [
            Var::StationModel,
            Var::StationVendorName,
            Var::SecurityIdentity,
        ] {
            let d = DeviceModel::def(var);
            assert!(d.constant && d.dynamic && d.mutability == Mutability::ReadOnly);
        }
    }

    #[test]
    fn find_follows_the_component_shape() {
        assert!(DeviceModel::find("OCPPCommCtrlr", None, None, "HeartbeatInterval", None).is_ok());
        assert_eq!(
            DeviceModel::find(
                "OCPPCommCtrlr",
                None,
                Some((1, None)),
                "HeartbeatInterval",
                None
            ),
            Err(Unknown::Component)
        );
        assert_eq!(
            DeviceModel::find("Nope", None, None, "X", None),
            Err(Unknown::Component)
        );
        assert_eq!(
            DeviceModel::find("OCPPCommCtrlr", None, None, "Nope", None),
            Err(Unknown::Variable)
        );
        assert_eq!(
            DeviceModel::find("OCPPCommCtrlr", None, None, "MessageTimeout", None),
            Err(Unknown::Variable),
            "the instance is part of the name"
        );
        assert!(
            DeviceModel::find(
                "OCPPCommCtrlr",
                None,
                None,
                "MessageTimeout",
                Some("Default")
            )
            .is_ok()
        );
        assert!(DeviceModel::find("EVSE", None, Some((1, None)), "Power", None).is_ok());
        assert_eq!(
            DeviceModel::find("EVSE", None, None, "Power", None),
            Err(Unknown::Component)
        );
        assert!(
            DeviceModel::find("Connector", None, Some((1, Some(1))), "ConnectorType", None).is_ok()
        );
    }

    #[test]
    fn initial_values_are_checked_and_all_errors_reported() {
        let m =
            DeviceModel::with_initial([("OCPPCommCtrlr.RetryBackOffWaitMinimum", "7")]).unwrap();
        assert_eq!(m.int(Var::RetryBackOffWaitMinimum), 7);
        let errs = DeviceModel::with_initial([
            ("OCPPCommCtrlr.RetryBackOffWaitMinimum", "soon"),
            ("OCPPCommCtrlr.Nope", "1"),
            ("OCPPCommCtrlr.WebSocketPingInterval", "-1"),
            ("TxCtrlr.TxStartPoint", "EVConnected,Teleportation"),
            ("ChargingStation.AvailabilityState", "Unavailable"),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 5);
        assert!(errs[0].problem.contains("not an integer"));
        assert!(errs[1].problem.contains("unknown variable"));
        assert!(errs[2].problem.contains("below the minimum"));
        assert!(errs[3].problem.contains("Teleportation"));
        assert!(errs[4].problem.contains("cannot be configured"));
    }

    #[test]
    fn lists_are_checked() {
        let d = DeviceModel::def(Var::ClockTimeSource);
        assert!(d.check("Heartbeat").is_ok());
        assert!(d.check("").is_err());
        assert!(d.check("NTP").is_err());
        let d = DeviceModel::def(Var::TxUpdatedMeasurands);
        assert!(d.check("").is_ok());
        assert!(d.check("Voltage,Voltage").is_err());
    }
}
