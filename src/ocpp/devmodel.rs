//! The device model (part 2, B05-B07 and the appendices' component/variable lists), declared as
//! data in one table. Each variable here is read by the core where it changes behaviour.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Integer,
    Boolean,
    String,
    /// A comma-separated subset of the listed values (may be empty).
    MemberList(&'static [&'static str]),
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Integer => "integer",
            DataType::Boolean => "boolean",
            DataType::String => "string",
            DataType::MemberList(_) => "MemberList",
        }
    }
}

/// The measurands this agent's meters can report (`SampledDataCtrlr.*Measurands`).
pub const MEASURANDS: &[&str] = &[
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
];

/// TxStartPoint / TxStopPoint values this agent supports (E01, E06). ParkingBayOccupancy and
/// DataSigned need hardware the agent does not have (no bay detector, no signing meter).
pub const TX_POINTS: &[&str] = &[
    "EVConnected",
    "Authorized",
    "PowerPathClosed",
    "EnergyTransfer",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
}

/// One declared variable: where it lives, its characteristics and default.
#[derive(Debug)]
pub struct VariableDef {
    pub component: &'static str,
    pub name: &'static str,
    pub instance: Option<&'static str>,
    pub data_type: DataType,
    pub unit: Option<&'static str>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub mutability: Mutability,
    pub default: &'static str,
}

impl VariableDef {
    /// `Component.Variable` or `Component.Variable[Instance]`, as the TOML `[variables]` keys
    /// and the logs spell it.
    pub fn key(&self) -> String {
        match self.instance {
            Some(i) => format!("{}.{}[{}]", self.component, self.name, i),
            None => format!("{}.{}", self.component, self.name),
        }
    }

    fn check(&self, value: &str) -> Result<(), String> {
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
            DataType::Boolean => match value {
                "true" | "false" => Ok(()),
                _ => Err(format!("{value:?} is not a boolean (true or false)")),
            },
            DataType::String => Ok(()),
            DataType::MemberList(allowed) => {
                for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    if !allowed.contains(&member) {
                        return Err(format!("{member:?} is not one of {}", allowed.join(", ")));
                    }
                }
                Ok(())
            }
        }
    }
}

macro_rules! variables {
    ($( $id:ident : $comp:literal . $name:literal $([$inst:literal])?,
        $ty:expr, unit $unit:expr, min $min:expr, max $max:expr, $mutability:ident, default $default:literal; )*) => {
        /// Typed handle of a declared variable (index into [`VARIABLES`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Var { $($id),* }

        pub static VARIABLES: &[VariableDef] = &[$(
            VariableDef {
                component: $comp,
                name: $name,
                instance: variables!(@inst $($inst)?),
                data_type: $ty,
                unit: $unit,
                min: $min,
                max: $max,
                mutability: Mutability::$mutability,
                default: $default,
            }
        ),*];
    };
    (@inst $inst:literal) => { Some($inst) };
    (@inst) => { None };
}

use DataType::{Boolean, Integer, MemberList};

variables! {
    HeartbeatInterval: "OCPPCommCtrlr"."HeartbeatInterval",
        Integer, unit Some("s"), min Some(1), max Some(86_400), ReadWrite, default "60";
    MessageTimeout: "OCPPCommCtrlr"."MessageTimeout"["Default"],
        Integer, unit Some("s"), min Some(1), max Some(3600), ReadOnly, default "30";
    MessageAttemptsTransactionEvent: "OCPPCommCtrlr"."MessageAttempts"["TransactionEvent"],
        Integer, unit None, min Some(1), max Some(100), ReadWrite, default "3";
    MessageAttemptIntervalTransactionEvent: "OCPPCommCtrlr"."MessageAttemptInterval"["TransactionEvent"],
        Integer, unit Some("s"), min Some(0), max Some(3600), ReadWrite, default "60";
    OfflineThreshold: "OCPPCommCtrlr"."OfflineThreshold",
        Integer, unit Some("s"), min Some(0), max None, ReadWrite, default "180";
    RetryBackOffRepeatTimes: "OCPPCommCtrlr"."RetryBackOffRepeatTimes",
        Integer, unit None, min Some(0), max Some(16), ReadWrite, default "5";
    RetryBackOffRandomRange: "OCPPCommCtrlr"."RetryBackOffRandomRange",
        Integer, unit Some("s"), min Some(0), max Some(3600), ReadWrite, default "10";
    RetryBackOffWaitMinimum: "OCPPCommCtrlr"."RetryBackOffWaitMinimum",
        Integer, unit Some("s"), min Some(0), max Some(3600), ReadWrite, default "5";
    WebSocketPingInterval: "OCPPCommCtrlr"."WebSocketPingInterval",
        Integer, unit Some("s"), min Some(0), max Some(3600), ReadWrite, default "30";

    TxStartPoint: "TxCtrlr"."TxStartPoint",
        MemberList(TX_POINTS), unit None, min None, max None, ReadWrite, default "EVConnected,Authorized";
    TxStopPoint: "TxCtrlr"."TxStopPoint",
        MemberList(TX_POINTS), unit None, min None, max None, ReadWrite, default "EVConnected,Authorized";
    EvConnectionTimeOut: "TxCtrlr"."EVConnectionTimeOut",
        Integer, unit Some("s"), min Some(0), max Some(86_400), ReadWrite, default "120";
    StopTxOnEvSideDisconnect: "TxCtrlr"."StopTxOnEVSideDisconnect",
        Boolean, unit None, min None, max None, ReadWrite, default "true";
    StopTxOnInvalidId: "TxCtrlr"."StopTxOnInvalidId",
        Boolean, unit None, min None, max None, ReadWrite, default "true";
    MaxEnergyOnInvalidId: "TxCtrlr"."MaxEnergyOnInvalidId",
        Integer, unit Some("Wh"), min Some(0), max None, ReadWrite, default "0";
    TxBeforeAcceptedEnabled: "TxCtrlr"."TxBeforeAcceptedEnabled",
        Boolean, unit None, min None, max None, ReadWrite, default "false";

    AuthEnabled: "AuthCtrlr"."Enabled",
        Boolean, unit None, min None, max None, ReadWrite, default "true";
    AuthorizeRemoteStart: "AuthCtrlr"."AuthorizeRemoteStart",
        Boolean, unit None, min None, max None, ReadWrite, default "false";
    LocalAuthorizeOffline: "AuthCtrlr"."LocalAuthorizeOffline",
        Boolean, unit None, min None, max None, ReadWrite, default "true";
    LocalPreAuthorize: "AuthCtrlr"."LocalPreAuthorize",
        Boolean, unit None, min None, max None, ReadWrite, default "false";
    OfflineTxForUnknownIdEnabled: "AuthCtrlr"."OfflineTxForUnknownIdEnabled",
        Boolean, unit None, min None, max None, ReadWrite, default "false";
    AuthCacheEnabled: "AuthCacheCtrlr"."Enabled",
        Boolean, unit None, min None, max None, ReadWrite, default "true";
    AuthCacheLifeTime: "AuthCacheCtrlr"."LifeTime",
        Integer, unit Some("s"), min Some(1), max None, ReadWrite, default "86400";

    TxStartedMeasurands: "SampledDataCtrlr"."TxStartedMeasurands",
        MemberList(MEASURANDS), unit None, min None, max None, ReadWrite, default "Energy.Active.Import.Register";
    TxUpdatedMeasurands: "SampledDataCtrlr"."TxUpdatedMeasurands",
        MemberList(MEASURANDS), unit None, min None, max None, ReadWrite, default "Energy.Active.Import.Register";
    TxUpdatedInterval: "SampledDataCtrlr"."TxUpdatedInterval",
        Integer, unit Some("s"), min Some(0), max Some(86_400), ReadWrite, default "60";
    TxEndedMeasurands: "SampledDataCtrlr"."TxEndedMeasurands",
        MemberList(MEASURANDS), unit None, min None, max None, ReadWrite, default "Energy.Active.Import.Register";
    TxEndedInterval: "SampledDataCtrlr"."TxEndedInterval",
        Integer, unit Some("s"), min Some(0), max Some(86_400), ReadWrite, default "0";
    AlignedInterval: "AlignedDataCtrlr"."Interval",
        Integer, unit Some("s"), min Some(0), max Some(86_400), ReadWrite, default "0";
    AlignedMeasurands: "AlignedDataCtrlr"."Measurands",
        MemberList(MEASURANDS), unit None, min None, max None, ReadWrite, default "Energy.Active.Import.Register";
    AlignedTxEndedInterval: "AlignedDataCtrlr"."TxEndedInterval",
        Integer, unit Some("s"), min Some(0), max Some(86_400), ReadWrite, default "0";
    AlignedTxEndedMeasurands: "AlignedDataCtrlr"."TxEndedMeasurands",
        MemberList(MEASURANDS), unit None, min None, max None, ReadWrite, default "Energy.Active.Import.Register";
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

/// The current values of every declared variable.
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
            match VARIABLES[index].check(value) {
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
        for def in VARIABLES {
            assert!(def.check(def.default).is_ok(), "default of {}", def.key());
        }
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
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 3);
        assert!(errs[0].problem.contains("not an integer"));
        assert!(errs[1].problem.contains("unknown variable"));
        assert!(errs[2].problem.contains("below the minimum"));
    }
}
