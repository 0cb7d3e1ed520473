//! The vocabulary of the calling contract (see [`Station`](super::station::Station)): what
//! the shell configures the core with, the events it feeds in, the effects it executes.

use super::blocks::data_transfer::DataTransferHandler;
use super::blocks::diagnostics::{UploadFailure, UploadRequest};
use super::blocks::firmware::{FirmwarePolicy, FirmwareStep};
use super::blocks::security::CertificateStore;
use super::blocks::smart_charging::ChargingHardware;
use super::devmodel::DeviceModel;
use super::meter::MeterReading;
use super::model::schedule::Limit;
use super::network::NetworkProfile;
use super::persist::Batch;
use super::v201;
use serde::Serialize;
use serde_json::Value;

/// The meta key under which the shell records a clean shutdown (SIGTERM), so transactions left
/// open are ended with stoppedReason Reboot rather than PowerLoss.
pub const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown";

/// Who we are, as the BootNotification tells the CSMS.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The charging station identity (the Basic auth user, the last path segment).
    pub station_id: String,
    pub vendor: String,
    pub model: String,
    pub serial_number: Option<String>,
    pub firmware_version: String,
}

impl Identity {
    /// The CN of the station certificate (A00.FR.511): the serial number, else the identity.
    pub fn certificate_serial(&self) -> String {
        self.serial_number
            .clone()
            .unwrap_or_else(|| self.station_id.clone())
    }
}

/// The OCPP version of the link: the WebSocket subprotocol offered and required, and how the
/// core's messages are spelled on the wire (2.0.1 as the blocks make them, or 1.6J through
/// `v16::adapter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "2.0.1")]
    V201,
    #[serde(rename = "1.6")]
    V16,
}

/// `"2.0.1"` or `"1.6"`; also the number 1.6, as TOML `ocpp_version = 1.6` and the environment
/// (`OCPP_AGENT_CSMS__OCPP_VERSION=1.6`, which figment reads as a float) give it.
impl<'de> serde::Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Version;
        impl serde::de::Visitor<'_> for Version {
            type Value = Protocol;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"2.0.1\" or \"1.6\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Protocol, E> {
                match v {
                    "2.0.1" => Ok(Protocol::V201),
                    "1.6" => Ok(Protocol::V16),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Protocol, E> {
                if v == 1.6 {
                    Ok(Protocol::V16)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(Version)
    }
}

impl Protocol {
    /// The WebSocket subprotocol (OCPP-J: `ocpp2.0.1`, `ocpp1.6`), also the protocol of
    /// the messages queued in the journal.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Protocol::V201 => crate::ocpp::v201::PROTOCOL,
            Protocol::V16 => crate::ocpp::v16::PROTOCOL,
        }
    }

    /// As `[csms] ocpp_version` writes it.
    pub fn version(self) -> &'static str {
        match self {
            Protocol::V201 => "2.0.1",
            Protocol::V16 => "1.6",
        }
    }
}

/// An EVSE and the ids of its connectors.
#[derive(Debug, Clone)]
pub struct EvseLayout {
    pub id: u32,
    pub connectors: Vec<u32>,
    /// Connector types (ConnectorEnumType, e.g. `cCCS2`) of connectors that have their own;
    /// the others have `Connector.ConnectorType`.
    pub connector_types: Vec<(u32, String)>,
}

#[derive(Debug, Clone)]
pub struct StationConfig {
    pub identity: Identity,
    /// The OCPP version spoken with the CSMS (`[csms] ocpp_version`).
    pub protocol: Protocol,
    pub evses: Vec<EvseLayout>,
    pub boot_reason: v201::BootReasonEnum,
    pub variables: DeviceModel,
    /// Bound of the durable queue's payloads (E04.FR.08 applies above it).
    pub max_queue_bytes: u64,
    /// The connection profile of the configuration file (slot 1 until the CSMS sets another).
    pub network: NetworkProfile,
    /// A client certificate is configured (security profile 3 is possible).
    pub client_certificate: bool,
    /// Root certificates and the station certificate the shell found on disk.
    pub certificates: CertificateStore,
    /// Vendor extensions answering DataTransfer (P01); none answers UnknownVendorId.
    pub data_transfer: Vec<std::sync::Arc<dyn DataTransferHandler>>,
    /// What the integrator allows and provides for firmware updates (L01).
    pub firmware: FirmwarePolicy,
    /// A diagnostics log source is configured (GetLog DiagnosticsLog, N01).
    pub diagnostics_log: bool,
    /// The ratings and the nominal voltage smart charging computes with (K).
    pub charging: ChargingHardware,
}

/// Events from hardware and the local control interface.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The plug of a connector went in (`plugged`) or out.
    Plug {
        evse: u32,
        connector: u32,
        plugged: bool,
    },
    /// An idToken presented at an EVSE's reader (`IdTokenType` JSON: `idToken`, `type`).
    Token { evse: u32, id_token: Value },
    /// The latest reading of an EVSE's meter.
    Meter { evse: u32, reading: MeterReading },
    /// The shell made the key pair and CSR the core asked for (`Output::CreateCsr`).
    CsrCreated { csr_pem: String, spki_der: Vec<u8> },
    /// ... or could not.
    CsrFailed { reason: String },
    /// The log upload asked for by `Output::UploadLog` finished.
    LogUploaded {
        request_id: i64,
        result: Result<(), (UploadFailure, String)>,
    },
    /// A firmware step asked for by an `Output::Firmware*` finished (`Err`: why it failed).
    Firmware {
        request_id: i64,
        step: FirmwareStep,
        result: Result<(), String>,
    },
    /// The journal cannot write (`Some(why)`: disk full, read-only, ...) or works again.
    Storage { problem: Option<String> },
    /// A local energy manager limits an EVSE (0: the whole station) to `amps` per phase, for
    /// `duration_s` or until the next one; `amps` None lifts its limit (K11-K13).
    ExternalLimit {
        evse: u32,
        amps: Option<f64>,
        duration_s: Option<u64>,
    },
    /// A connector's hardware failed (`Some(what)`) or recovered (`None`), e.g. its plug input.
    Fault {
        evse: u32,
        connector: u32,
        problem: Option<String>,
    },
}

impl Input {
    /// An idToken of this type presented at an EVSE's reader.
    pub fn token(evse: u32, id_token: &str, token_type: &str) -> Input {
        Input::Token {
            evse,
            id_token: serde_json::json!({ "idToken": id_token, "type": token_type }),
        }
    }
}

/// Effects for the shell to execute, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open the WebSocket with this profile; answer with `handle_connected` or
    /// `handle_connect_failed`.
    Connect { profile: NetworkProfile },
    /// Close the WebSocket. The core already counts itself offline and has scheduled the
    /// reconnect; a later `handle_disconnected` is ignored.
    Disconnect { reason: String },
    /// Send this text frame.
    Send(String),
    /// Send the queued message `queue_seq` from the journal as a CALL with this message id.
    SendQueued { queue_seq: u64, message_id: String },
    /// Send a WebSocket ping; answer a pong with `handle_pong`.
    Ping,
    /// Make these changes durable, atomically, before executing any later output.
    Persist(Batch),
    /// Close (`true`) or open the EVSE's power path (contactor).
    PowerPath { evse: u32, closed: bool },
    /// Let the EVSE draw at most this (K01-K08): amps per phase on `limit.phases` phases; 0 A
    /// pauses charging. Given at start-up and whenever it changes.
    ChargingLimit { evse: u32, limit: Limit },
    /// Release the connector's cable lock (UnlockConnector, E06.FR.10).
    Unlock { evse: u32, connector: u32 },
    /// Restart the agent (Reset, B11/B12): everything before this output is done; exit so the
    /// service manager starts it again.
    Reboot,
    /// Make a new key pair and a CSR for it (A02.FR.02); answer with `Input::CsrCreated`
    /// (or `Input::CsrFailed`).
    CreateCsr {
        organization: String,
        common_name: String,
    },
    /// Keep an installed root certificate (M05).
    StoreCertificate {
        kind: String,
        id: String,
        pem: String,
    },
    /// Delete an installed root certificate (M04).
    RemoveCertificate { kind: String, id: String },
    /// The CSMS signed our CSR: this chain and the CSR's key become the station's TLS client
    /// identity (A02.FR.08).
    ActivateStationCertificate { chain_pem: String },
    /// Use this HTTP Basic auth password from now on (A01); the core closes the connection
    /// shortly after answering, so the next connection uses it.
    BasicAuthPassword(Secret),
    /// Download the firmware at `location` (resuming a partial download of the same
    /// `request_id`); answer with `Input::Firmware` step `Download`.
    FirmwareDownload { request_id: i64, location: String },
    /// Check the downloaded file's signature with the signing certificate (DER); answer with
    /// step `Verify`.
    FirmwareVerify {
        request_id: i64,
        signer_der: Vec<u8>,
        signature: Vec<u8>,
    },
    /// Run the install command on the downloaded file; answer with step `Install`.
    FirmwareInstall { request_id: i64 },
    /// Run the activation command (typically a reboot); answer only a failure (step
    /// `Activate`).
    FirmwareActivate { request_id: i64 },
    /// Delete the files of this firmware job.
    FirmwareDiscard { request_id: i64 },
    /// Gather the log and upload it; answer with `Input::LogUploaded`.
    UploadLog(UploadRequest),
    /// Stop the upload of this request, if it still runs.
    CancelLogUpload { request_id: i64 },
    /// Append a security event to the station's own security log (N01.FR.03 uploads it).
    RecordSecurityEvent {
        timestamp: String,
        kind: String,
        tech_info: Option<String>,
    },
}

/// Why a connection attempt failed, as far as the core cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Network, DNS, HTTP, ...: retried with back-off.
    Other,
    /// The CSMS refused our credentials (HTTP 401).
    AuthRejected,
    /// The CSMS's certificate did not verify (A00.FR.310/413).
    InvalidCsmsCertificate,
    /// The CSMS offered only TLS older than 1.2 (A00.FR.316).
    InvalidTlsVersion,
    /// The CSMS allows none of the cipher suites of A00.FR.318/319.
    InvalidTlsCipherSuite,
}

/// A secret value: `Debug` does not show it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Offline,
    Connecting,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// No answer to a BootNotification yet.
    None,
    Pending,
    Accepted,
    Rejected,
}

/// Errors of the caller: an input that names something that does not exist or is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    UnknownConnector {
        evse: u32,
        connector: u32,
    },
    UnknownEvse {
        evse: u32,
    },
    BadToken(String),
    /// The station refuses it as it is configured now (and says why).
    Refused(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::UnknownConnector { evse, connector } => {
                write!(f, "no connector {connector} on EVSE {evse}")
            }
            InputError::UnknownEvse { evse } => write!(f, "no EVSE {evse}"),
            InputError::BadToken(why) => write!(f, "bad idToken: {why}"),
            InputError::Refused(why) => f.write_str(why),
        }
    }
}
