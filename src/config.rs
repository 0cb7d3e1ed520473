//! The TOML configuration (figment: file, then `OCPP_AGENT_...` environment overrides with `__`
//! between key levels, e.g. `OCPP_AGENT_CSMS__URL`), and its semantic checks.
//!
//! Unknown keys are errors. [`Config::check`] collects every semantic problem with the key it
//! concerns, so `check-config` can print them all at once.

use crate::ocpp::devmodel::DeviceModel;
use crate::ocpp::v16::keys;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ocpp-agent/agent.toml";
pub const ENV_PREFIX: &str = "OCPP_AGENT_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub station: StationSection,
    pub csms: CsmsSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub firmware: FirmwareSection,
    #[serde(default)]
    pub transfer: TransferSection,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableValue>,
    #[serde(default)]
    pub evse: Vec<EvseSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationSection {
    pub id: String,
    pub vendor: String,
    pub model: String,
    pub serial_number: Option<String>,
    pub firmware_version: Option<String>,
    /// The grid connection all EVSEs share, in amps per phase (3 phases), if it is less than
    /// their ratings together: smart charging never lets them draw more in total.
    pub max_current_a: Option<f64>,
    /// The nominal voltage of the area (phase to neutral), for limits in watts (K01.FR.50).
    #[serde(default = "default_nominal_voltage")]
    pub nominal_voltage_v: f64,
}

fn default_nominal_voltage() -> f64 {
    230.0
}

fn default_evse_max_current() -> f64 {
    32.0
}

fn default_evse_phases() -> u8 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsmsSection {
    pub url: String,
    /// "2.0.1" (the default) or "1.6": the version spoken, and the subprotocol required.
    #[serde(default)]
    pub ocpp_version: crate::ocpp::station::Protocol,
    #[serde(default = "default_security_profile")]
    pub security_profile: u8,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

fn default_security_profile() -> u8 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    #[serde(default = "default_storage_path")]
    pub path: PathBuf,
    /// Bound of the queued transaction messages' payloads; above it, intermediate Updated
    /// events are dropped (E04.FR.08).
    #[serde(default = "default_max_queue_bytes")]
    pub max_queue_bytes: u64,
}

fn default_max_queue_bytes() -> u64 {
    8 << 20
}

fn default_storage_path() -> PathBuf {
    PathBuf::from("/var/lib/ocpp-agent/agent.db")
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            path: default_storage_path(),
            max_queue_bytes: default_max_queue_bytes(),
        }
    }
}

/// Firmware update (L01): where files go and who installs them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareSection {
    /// The program and arguments that install a downloaded image; the file's path is appended
    /// (e.g. `["/usr/bin/rauc", "install"]`). Without it UpdateFirmware is Rejected.
    pub install_command: Option<Vec<String>>,
    /// Run after a successful install to activate the new image, typically a reboot into the
    /// other A/B slot; the new firmware then reports Installed (L01.FR.32).
    pub activate_command: Option<Vec<String>>,
    /// Accept firmware without signingCertificate and signature (L02). Off: unsigned
    /// firmware is refused.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Where downloads go; default `firmware/` beside the journal.
    pub directory: Option<PathBuf>,
    /// The largest image accepted, in bytes (default 1 GiB).
    pub max_bytes: Option<u64>,
    /// The longest the install command may run, in seconds (default 1800).
    pub install_timeout_s: Option<u64>,
}

/// File transfers: firmware downloads and log uploads over HTTP(S).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSection {
    /// CA certificates (PEM) trusted for https://; default: what the CSMS connection trusts
    /// (csms.ca_file, else the system roots).
    pub ca_file: Option<PathBuf>,
    /// An attempt fails after this many seconds without progress (default 60).
    pub stall_timeout_s: Option<u64>,
}

impl TransferSection {
    pub fn stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stall_timeout_s.unwrap_or(60))
    }
}

impl FirmwareSection {
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.unwrap_or(1 << 30)
    }

    pub fn install_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.install_timeout_s.unwrap_or(1800))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/ocpp-agent/control.sock")
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            socket: default_socket(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A `RUST_LOG`-style filter, e.g. `info` or `info,ocpp_agent=debug`. `RUST_LOG` overrides.
    #[serde(default = "default_log_filter")]
    pub filter: String,
    /// What GetLog(DiagnosticsLog) uploads: this program's standard output (N01.FR.04).
    /// `[]` turns DiagnosticsLog off.
    #[serde(default = "default_diagnostics_command")]
    pub diagnostics_command: Vec<String>,
    /// The station's security log (N01.FR.03); default `security.log` beside the journal.
    pub security_log: Option<PathBuf>,
    /// The largest log uploaded, in bytes (the rest is cut off, and the cut said in the file).
    #[serde(default = "default_upload_max_bytes")]
    pub upload_max_bytes: u64,
}

fn default_log_filter() -> String {
    "info".into()
}

fn default_diagnostics_command() -> Vec<String> {
    [
        "journalctl",
        "--no-pager",
        "--output=short-iso-precise",
        "--unit=ocpp-agent",
    ]
    .map(String::from)
    .to_vec()
}

fn default_upload_max_bytes() -> u64 {
    16 << 20
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: default_log_filter(),
            diagnostics_command: default_diagnostics_command(),
            security_log: None,
            upload_max_bytes: default_upload_max_bytes(),
        }
    }
}

/// Variable values may be written as TOML strings, integers or booleans.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VariableValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

impl fmt::Display for VariableValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariableValue::Text(s) => f.write_str(s),
            VariableValue::Integer(i) => write!(f, "{i}"),
            VariableValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvseSection {
    pub id: u32,
    /// Shorthand for an EVSE with one connector (id 1).
    pub plug: Option<PlugConfig>,
    /// The type of that one connector (ConnectorEnumType, e.g. `cCCS2`); the station's
    /// `Connector.ConnectorType` when absent.
    pub connector_type: Option<String>,
    #[serde(default)]
    pub connectors: Vec<ConnectorSection>,
    /// The EVSE's energy meter; a simulated 11 kW meter when absent.
    #[serde(default)]
    pub meter: MeterConfig,
    /// The EVSE's power path output; simulated when absent.
    #[serde(default)]
    pub contactor: ContactorConfig,
    /// Where its charging limit goes: the simulated meter only, the control pilot (PWM), or
    /// the integrator's command.
    #[serde(default)]
    pub limit: LimitConfig,
    /// Its rating: amps per phase, the limit when no charging profile applies.
    #[serde(default = "default_evse_max_current")]
    pub max_current_a: f64,
    /// The phases it is wired with.
    #[serde(default = "default_evse_phases")]
    pub phases: u8,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum MeterConfig {
    /// Energy grows at `power_w` while the power path is closed (3 phases at 230 V).
    Sim {
        #[serde(default = "default_sim_power_w")]
        power_w: f64,
    },
}

fn default_sim_power_w() -> f64 {
    11_000.0
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig::Sim {
            power_w: default_sim_power_w(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum LimitConfig {
    /// Only the simulated meter follows the limit.
    #[default]
    Sim,
    /// The IEC 61851-1 control pilot: channel `channel` of `/sys/class/pwm/pwmchip<chip>`.
    Pwm { chip: u32, channel: u32 },
    /// The program (and arguments) run with `EVSE AMPS PHASES` appended on every change.
    Command {
        command: Vec<String>,
        #[serde(default = "default_limit_timeout")]
        timeout_s: u64,
    },
}

fn default_limit_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum ContactorConfig {
    /// Only recorded (visible in `ctl status`).
    #[default]
    Sim,
    /// A GPIO output line driving the contactor relay: active = closed.
    Gpio(GpioOutput),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioOutput {
    /// A chip path, name or label, as for plug inputs.
    pub chip: Option<String>,
    /// The line offset on the chip, or the line's name.
    pub line: LineId,
    #[serde(default)]
    pub active_low: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSection {
    pub id: u32,
    pub plug: PlugConfig,
    /// Its type (ConnectorEnumType); the station's `Connector.ConnectorType` when absent.
    pub connector_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum PlugConfig {
    /// Driven by `ocpp-agent ctl plug`.
    Sim,
    /// A GPIO input line on the character device.
    Gpio(GpioLine),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioLine {
    /// A chip path (`/dev/gpiochip0`), name (`gpiochip0`) or label (`pinctrl-stm32mp135`).
    /// Optional when `line` is a line name, which is then searched on every chip.
    pub chip: Option<String>,
    /// The line offset on the chip, or the line's name.
    pub line: LineId,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u32,
}

fn default_debounce_ms() -> u32 {
    50
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LineId {
    Offset(u32),
    Name(String),
}

/// A semantic problem with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file is missing, unreadable, not TOML, or has unknown/mistyped keys.
    Load(String),
    /// It parsed, but values are wrong.
    Invalid(Vec<Problem>),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Load(msg) => f.write_str(msg),
            ConfigError::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl Config {
    /// Loads the file and the environment overrides, then checks the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "{}: no such configuration file",
                path.display()
            )));
        }
        Self::from_figment(Figment::new().merge(Toml::file_exact(path)))
    }

    /// Only `control.socket` (default included), for `ctl`: it must work even when other parts
    /// of the file are unreadable or invalid for the calling user.
    pub fn load_control_socket(path: &Path) -> Result<PathBuf, ConfigError> {
        let figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed(ENV_PREFIX).split("__"));
        match figment.extract_inner::<PathBuf>("control.socket") {
            Ok(p) => Ok(p),
            Err(e) if e.missing() => Ok(default_socket()),
            Err(e) => Err(ConfigError::Load(describe_figment_error(&e))),
        }
    }

    /// Parses TOML text (and the environment), as `load` does for a file.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let config: Config = figment.extract().map_err(|e| {
            let lines: Vec<String> = e.into_iter().map(|e| describe_figment_error(&e)).collect();
            ConfigError::Load(lines.join("\n"))
        })?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every semantic problem, each with its key.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_owned(),
                message,
            })
        };

        // Part 4, 3.1.1: identifierString, at most 48 characters, no ':' (it is the Basic auth
        // user name).
        let id = &self.station.id;
        if id.is_empty() || id.chars().count() > 48 {
            problem(
                "station.id",
                format!("must be 1 to 48 characters, not {}", id.chars().count()),
            );
        }
        if id.contains(':') {
            problem(
                "station.id",
                "must not contain ':' (it is the HTTP Basic auth user name)".into(),
            );
        }
        if let Some(c) = id.chars().find(|c| !is_identifier_char(*c)) {
            problem(
                "station.id",
                format!("{c:?} is not allowed (letters, digits and *-_=+|@. only)"),
            );
        }
        // The BootNotification's ChargingStationType limits.
        for (key, value, max) in [
            ("station.vendor", Some(&self.station.vendor), 50),
            ("station.model", Some(&self.station.model), 20),
            (
                "station.serial_number",
                self.station.serial_number.as_ref(),
                25,
            ),
            (
                "station.firmware_version",
                self.station.firmware_version.as_ref(),
                50,
            ),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.chars().count() > max {
                    problem(key, format!("must be 1 to {max} characters"));
                }
            }
        }

        for (key, command) in [
            ("firmware.install_command", &self.firmware.install_command),
            ("firmware.activate_command", &self.firmware.activate_command),
        ] {
            if command
                .as_ref()
                .is_some_and(|c| c.first().is_none_or(|p| p.trim().is_empty()))
            {
                problem(
                    key,
                    "must name a program: [\"/path/to/program\", \"arg\", ...]".into(),
                );
            }
        }
        if self
            .log
            .diagnostics_command
            .first()
            .is_some_and(|p| p.trim().is_empty())
        {
            problem(
                "log.diagnostics_command",
                "must name a program, or be [] for no DiagnosticsLog".into(),
            );
        }
        if self.log.upload_max_bytes == 0 {
            problem("log.upload_max_bytes", "must be at least 1".into());
        }
        if self.firmware.activate_command.is_some() && self.firmware.install_command.is_none() {
            problem(
                "firmware.activate_command",
                "needs firmware.install_command".into(),
            );
        }
        if self.firmware.max_bytes == Some(0) {
            problem("firmware.max_bytes", "must be at least 1".into());
        }
        for (key, value) in [
            (
                "firmware.install_timeout_s",
                self.firmware.install_timeout_s,
            ),
            ("transfer.stall_timeout_s", self.transfer.stall_timeout_s),
        ] {
            if value == Some(0) {
                problem(key, "must be at least 1".into());
            }
        }

        match self.url_scheme() {
            Some("ws") | Some("wss") => {}
            _ => problem(
                "csms.url",
                format!("{:?} is not a ws:// or wss:// URL", self.csms.url),
            ),
        }
        let host_present = self
            .csms
            .url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
            .is_some_and(|h| !h.is_empty());
        if !host_present {
            problem("csms.url", "has no host".into());
        }
        if self.csms.url.contains(['?', '#']) {
            problem(
                "csms.url",
                "must not carry a query or fragment (the station id is appended to the path)"
                    .into(),
            );
        }
        let profile = self.csms.security_profile;
        match profile {
            1 if self.url_scheme() == Some("wss") => problem(
                "csms.security_profile",
                "profile 1 is Basic auth over plain ws://; use 2 or 3 for wss://".into(),
            ),
            2 | 3 if self.url_scheme() == Some("ws") => problem(
                "csms.url",
                format!("security profile {profile} needs TLS: use a wss:// URL"),
            ),
            1..=3 => {}
            _ => problem(
                "csms.security_profile",
                format!("{profile} is not 1, 2 or 3"),
            ),
        }
        if matches!(profile, 1 | 2) {
            match &self.csms.password {
                None => problem(
                    "csms.password",
                    format!("required for security profile {profile} (HTTP Basic auth)"),
                ),
                // A01: BasicAuthPassword is passwordString, 16 to 40 characters.
                Some(p) if !(16..=40).contains(&p.chars().count()) => problem(
                    "csms.password",
                    "must be 16 to 40 characters (OCPP passwordString)".into(),
                ),
                Some(_) => {}
            }
        }
        if profile == 3 {
            for (key, value) in [
                ("csms.client_cert_file", &self.csms.client_cert_file),
                ("csms.client_key_file", &self.csms.client_key_file),
            ] {
                if value.is_none() {
                    problem(key, "required for security profile 3 (mutual TLS)".into());
                }
            }
        }
        for (key, path) in [
            ("csms.ca_file", &self.csms.ca_file),
            ("csms.client_cert_file", &self.csms.client_cert_file),
            ("csms.client_key_file", &self.csms.client_key_file),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    problem(key, format!("{} is not a readable file", p.display()));
                }
            }
        }

        if self
            .log
            .filter
            .parse::<tracing_subscriber::filter::Targets>()
            .is_err()
        {
            problem(
                "log.filter",
                format!("{:?} is not a valid filter", self.log.filter),
            );
        }

        // Each entry checked alone, so that a problem names the entry as written (a 1.6 key
        // stands for its variables).
        let mut set_by: BTreeMap<String, (&str, String)> = BTreeMap::new();
        for (name, value) in &self.variables {
            let key = format!("variables.\"{name}\"");
            let pairs = match Self::variable_entry(name, value) {
                Ok(pairs) => pairs,
                Err(message) => {
                    problem(&key, message);
                    continue;
                }
            };
            for (var, v) in &pairs {
                if let Some((other, w)) = set_by.insert(var.clone(), (name, v.clone())) {
                    if w != *v {
                        problem(
                            &key,
                            format!("sets {var}, which variables.\"{other}\" sets otherwise"),
                        );
                    }
                }
            }
            if let Err(errors) =
                DeviceModel::with_initial(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            {
                for e in errors {
                    let message = if e.key == *name {
                        e.problem
                    } else {
                        format!("{}: {}", e.key, e.problem)
                    };
                    problem(&key, message);
                }
            }
        }

        if let Some(a) = self.station.max_current_a {
            if !(0.0..=10_000.0).contains(&a) {
                problem("station.max_current_a", "must be 0 to 10000 A".into());
            }
        }
        if !(50.0..=500.0).contains(&self.station.nominal_voltage_v) {
            problem(
                "station.nominal_voltage_v",
                "must be 50 to 500 V (phase to neutral)".into(),
            );
        }
        if self.evse.is_empty() {
            problem("evse", "at least one [[evse]] is required".into());
        }
        if self.csms.ocpp_version == crate::ocpp::station::Protocol::V16 {
            // OCPP 1.6 numbers connectors 1..n across the charge point with no EVSE level:
            // each EVSE is one 1.6 connector, so an EVSE cannot have two.
            for (i, evse) in self.evse.iter().enumerate() {
                if evse.plugs().len() > 1 {
                    problem(
                        &format!("evse[{i}].connectors"),
                        "OCPP 1.6 (csms.ocpp_version) has one connector per EVSE: give each \
                         connector its own [[evse]]"
                            .into(),
                    );
                }
            }
            // BootNotification.req in 1.6: chargePointVendor is CiString20Type (50 in 2.0.1).
            if self.station.vendor.chars().count() > 20 {
                problem(
                    "station.vendor",
                    "must be at most 20 characters in OCPP 1.6 (csms.ocpp_version)".into(),
                );
            }
        }
        for (i, evse) in self.evse.iter().enumerate() {
            let key = format!("evse[{i}]");
            if evse.id == 0 {
                problem(&format!("{key}.id"), "EVSE ids start at 1".into());
            }
            if evse.id as usize != i + 1 {
                problem(
                    &format!("{key}.id"),
                    format!(
                        "EVSE ids must be numbered 1, 2, ... in order; expected {}",
                        i + 1
                    ),
                );
            }
            match (&evse.plug, evse.connectors.is_empty()) {
                (Some(_), false) => problem(
                    &key,
                    "give either `plug` (one connector) or `connectors`, not both".into(),
                ),
                (None, true) => problem(&key, "needs a `plug` or a list of `connectors`".into()),
                _ => {}
            }
            if evse.connector_type.is_some() && evse.plug.is_none() {
                problem(
                    &format!("{key}.connector_type"),
                    "is for the `plug` shorthand; give each of `connectors` its own".into(),
                );
            }
            for (c, t) in evse.connector_types() {
                if !crate::ocpp::v201::ConnectorEnum::VALUES.contains(&t.as_str()) {
                    problem(
                        &format!("{key} connector {c} connector_type"),
                        format!(
                            "{t:?} is not a connector type; one of {}",
                            crate::ocpp::v201::ConnectorEnum::VALUES.join(", ")
                        ),
                    );
                }
            }
            for (j, c) in evse.connectors.iter().enumerate() {
                if c.id as usize != j + 1 {
                    problem(
                        &format!("{key}.connectors[{j}].id"),
                        format!(
                            "connector ids must be numbered 1, 2, ... in order; expected {}",
                            j + 1
                        ),
                    );
                }
            }
            if !(1.0..=1000.0).contains(&evse.max_current_a) {
                problem(
                    &format!("{key}.max_current_a"),
                    "must be 1 to 1000 A".into(),
                );
            }
            if !(1..=3).contains(&evse.phases) {
                problem(&format!("{key}.phases"), "must be 1, 2 or 3".into());
            }
            if let LimitConfig::Command { command, timeout_s } = &evse.limit {
                if command.first().is_none_or(|p| p.is_empty()) {
                    problem(
                        &format!("{key}.limit.command"),
                        "needs a program, e.g. [\"/usr/bin/evse-limit\"]".into(),
                    );
                }
                if !(1..=600).contains(timeout_s) {
                    problem(
                        &format!("{key}.limit.timeout_s"),
                        "must be 1 to 600 s".into(),
                    );
                }
            }
            let MeterConfig::Sim { power_w } = evse.meter;
            if !(0.0..=1_000_000.0).contains(&power_w) {
                problem(
                    &format!("{key}.meter.power_w"),
                    "must be 0 to 1000000 W".into(),
                );
            }
            if let ContactorConfig::Gpio(g) = &evse.contactor {
                if g.chip.is_none() && matches!(g.line, LineId::Offset(_)) {
                    problem(
                        &format!("{key}.contactor"),
                        "a line offset needs a `chip`".into(),
                    );
                }
            }
            for (c, plug) in evse.plugs() {
                if let PlugConfig::Gpio(g) = plug {
                    let pkey = if evse.plug.is_some() {
                        format!("{key}.plug")
                    } else {
                        format!("{key}.connectors[{}].plug", c - 1)
                    };
                    if g.chip.is_none() && matches!(g.line, LineId::Offset(_)) {
                        problem(&pkey, "a line offset needs a `chip`".into());
                    }
                    if g.debounce_ms > 10_000 {
                        problem(
                            &format!("{pkey}.debounce_ms"),
                            "must be at most 10000".into(),
                        );
                    }
                }
            }
        }
        problems
    }

    fn url_scheme(&self) -> Option<&str> {
        self.csms.url.split_once("://").map(|(s, _)| s)
    }

    /// `[variables]` as device-model `("Component.Variable", value)` strings: an entry named
    /// with an OCPP 1.6 configuration key stands for the variables the key maps to.
    pub fn variable_pairs(&self) -> Vec<(String, String)> {
        self.variables
            .iter()
            .flat_map(|(name, value)| {
                // A bad entry (`check` reports it) as written, for `with_initial` to refuse.
                Self::variable_entry(name, value)
                    .unwrap_or_else(|_| vec![(name.clone(), value.to_string())])
            })
            .collect()
    }

    /// The device-model pairs of one `[variables]` entry, or why it has none.
    fn variable_entry(name: &str, value: &VariableValue) -> Result<Vec<(String, String)>, String> {
        let value = value.to_string();
        if DeviceModel::lookup(name).is_some() {
            return Ok(vec![(name.to_owned(), value)]);
        }
        keys::config_variables(name, &value).unwrap_or_else(|| {
            Err("unknown variable (expected \"Component.Variable\" or \
                 \"Component.Variable[Instance]\" of the device model, or an OCPP 1.6 \
                 configuration key)"
                .into())
        })
    }

    /// The WebSocket URL: `csms.url` + `/` + the percent-encoded station id (part 4, 3.1.1).
    pub fn connection_url(&self) -> String {
        self.url_for(&self.csms.url)
    }

    /// The WebSocket URL for a CSMS endpoint (e.g. of a network profile the CSMS set).
    pub fn url_for(&self, endpoint: &str) -> String {
        let base = endpoint.trim_end_matches('/');
        format!("{base}/{}", percent_encode(&self.station.id))
    }
}

impl EvseSection {
    /// `(connector id, type)` of the connectors given a type of their own.
    pub fn connector_types(&self) -> Vec<(u32, String)> {
        match &self.plug {
            Some(_) => self.connector_type.iter().map(|t| (1, t.clone())).collect(),
            None => self
                .connectors
                .iter()
                .filter_map(|c| c.connector_type.clone().map(|t| (c.id, t)))
                .collect(),
        }
    }

    /// `(connector id, plug)` for every connector of this EVSE.
    pub fn plugs(&self) -> Vec<(u32, &PlugConfig)> {
        match &self.plug {
            Some(p) => vec![(1, p)],
            None => self.connectors.iter().map(|c| (c.id, &c.plug)).collect(),
        }
    }
}

/// OCPP identifierString: `a-z A-Z 0-9 * - _ = : + | @ .` (':' is excluded separately).
fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "*-_=:+|@.".contains(c)
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = if e.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", e.path.join("."))
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    format!("{key}{}{source}", e.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [station]
        id = "CP001"
        vendor = "Example"
        model = "AC-2"

        [csms]
        url = "ws://127.0.0.1:9000/ocpp"
        password = "0123456789abcdef"

        [[evse]]
        id = 1
        plug = { backend = "sim" }
    "#;

    fn problems(text: &str) -> Vec<Problem> {
        match Config::from_toml_str(text) {
            Err(ConfigError::Invalid(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn good_config_loads() {
        let c = Config::from_toml_str(GOOD).unwrap();
        assert_eq!(c.connection_url(), "ws://127.0.0.1:9000/ocpp/CP001");
        assert_eq!(c.evse[0].plugs(), vec![(1, &PlugConfig::Sim)]);
    }

    #[test]
    fn ocpp_version_is_2_0_1_or_1_6() {
        use crate::ocpp::station::Protocol;
        assert_eq!(
            Config::from_toml_str(GOOD).unwrap().csms.ocpp_version,
            Protocol::V201
        );
        for spelling in ["\"1.6\"", "1.6"] {
            let text = GOOD.replace(
                "password =",
                &format!("ocpp_version = {spelling}\npassword ="),
            );
            let c = Config::from_toml_str(&text).unwrap();
            assert_eq!(c.csms.ocpp_version, Protocol::V16, "{spelling}");
        }
        let e = Config::from_toml_str(
            &GOOD.replace("password =", "ocpp_version = \"2.0\"\npassword ="),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("csms.ocpp_version") && e.contains("\"2.0.1\" or \"1.6\""),
            "{e}"
        );
    }

    #[test]
    fn ocpp_1_6_has_one_connector_per_evse_and_shorter_names() {
        let text = GOOD
            .replace("password =", "ocpp_version = \"1.6\"\npassword =")
            .replace("vendor = \"Example\"", "vendor = \"Example Charging Systems\"")
            .replace(
                r#"plug = { backend = "sim" }"#,
                r#"connectors = [{ id = 1, plug = { backend = "sim" } }, { id = 2, plug = { backend = "sim" } }]"#,
            );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["evse[0].connectors", "station.vendor"]);
    }

    #[test]
    fn connector_types_are_checked() {
        let c = Config::from_toml_str(&GOOD.replace(
            r#"plug = { backend = "sim" }"#,
            r#"plug = { backend = "sim" }
        connector_type = "cCCS2""#,
        ))
        .unwrap();
        assert_eq!(c.evse[0].connector_types(), vec![(1, "cCCS2".to_owned())]);
        let p = problems(&GOOD.replace(
            r#"plug = { backend = "sim" }"#,
            r#"plug = { backend = "sim" }
        connector_type = "Schuko""#,
        ));
        assert!(
            p.iter()
                .any(|p| p.to_string().contains("\"Schuko\" is not a connector type")),
            "{p:?}"
        );
    }

    #[test]
    fn station_id_is_percent_encoded() {
        let c = Config::from_toml_str(&GOOD.replace("CP001", "CP 1|a@b")).unwrap_err();
        assert!(c.to_string().contains("station.id"));
        let c = Config::from_toml_str(&GOOD.replace("CP001", "CP|1@b")).unwrap();
        assert_eq!(c.connection_url(), "ws://127.0.0.1:9000/ocpp/CP%7C1%40b");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml_str(&GOOD.replace("model = ", "colour = \"red\"\nmodel = "))
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ConfigError::Load(_)));
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn every_problem_is_reported() {
        let text = GOOD
            .replace("CP001", "CP:001")
            .replace("ws://127.0.0.1:9000/ocpp", "http://example.com")
            .replace("password = \"0123456789abcdef\"", "")
            .replace(
                "[[evse]]",
                "[variables]\n\"OCPPCommCtrlr.HeartbeatInterval\" = \"soon\"\n[[evse]]",
            );
        let p = problems(&text);
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"station.id"), "{p:?}");
        assert!(keys.contains(&"csms.url"), "{p:?}");
        assert!(keys.contains(&"csms.password"), "{p:?}");
        assert!(
            keys.contains(&"variables.\"OCPPCommCtrlr.HeartbeatInterval\""),
            "{p:?}"
        );
    }

    #[test]
    fn tls_profiles_need_wss_and_certificates() {
        let p = problems(&GOOD.replace("password =", "security_profile = 3\npassword ="));
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"csms.url"));
        assert!(keys.contains(&"csms.client_cert_file"));
        assert!(keys.contains(&"csms.client_key_file"));
    }

    #[test]
    fn meter_and_contactor_parse_with_defaults() {
        let c = Config::from_toml_str(GOOD).unwrap();
        assert_eq!(c.evse[0].meter, MeterConfig::Sim { power_w: 11_000.0 });
        assert_eq!(c.evse[0].contactor, ContactorConfig::Sim);
        let c = Config::from_toml_str(&GOOD.replace(
            "plug = { backend = \"sim\" }",
            "plug = { backend = \"sim\" }\nmeter = { backend = \"sim\", power_w = 7400 }\ncontactor = { backend = \"gpio\", chip = \"gpiochip1\", line = 5 }",
        ))
        .unwrap();
        assert_eq!(c.evse[0].meter, MeterConfig::Sim { power_w: 7400.0 });
        assert_eq!(
            c.evse[0].contactor,
            ContactorConfig::Gpio(GpioOutput {
                chip: Some("gpiochip1".into()),
                line: LineId::Offset(5),
                active_low: false
            })
        );
    }

    #[test]
    fn gpio_plug_parses() {
        let c = Config::from_toml_str(&GOOD.replace(
            "plug = { backend = \"sim\" }",
            "plug = { backend = \"gpio\", chip = \"/dev/gpiochip0\", line = 17, active_low = true, debounce_ms = 20 }",
        ))
        .unwrap();
        assert_eq!(
            c.evse[0].plug,
            Some(PlugConfig::Gpio(GpioLine {
                chip: Some("/dev/gpiochip0".into()),
                line: LineId::Offset(17),
                active_low: true,
                debounce_ms: 20
            }))
        );
        let e = Config::from_toml_str(&GOOD.replace("backend = \"sim\"", "backend = \"magic\""))
            .unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
    }
}
