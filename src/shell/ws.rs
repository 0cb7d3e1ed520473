//! Opening the OCPP-J WebSocket (part 4, chapter 3 and 7): the station id in the path, the
//! `ocpp2.0.1` or `ocpp1.6` subprotocol offered and required, HTTP Basic auth for security profiles 1 and 2,
//! TLS 1.2+ with server verification for 2 and 3 and a client certificate for 3.

use crate::config::Config;
use crate::ocpp::station::ConnectFailure;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Everything needed to connect, prepared once from the configuration (certificates are read
/// and parsed up front so a bad file is a configuration error, not a reconnect loop).
#[derive(Clone)]
pub struct Connector {
    url: String,
    station_id: String,
    password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `ocpp2.0.1` or `ocpp1.6` (`[csms] ocpp_version`): offered, and required in the answer.
    subprotocol: &'static str,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// DNS, TCP, TLS or HTTP trouble: retried with back-off.
    Transport(String),
    /// The CSMS does not speak our OCPP version with us (subprotocol missing).
    Protocol(String),
    /// The CSMS refused our credentials (HTTP 401/403 to the upgrade).
    AuthRejected(String),
    /// The CSMS's certificate did not verify: wrong CA, wrong name, expired, ...
    InvalidServerCertificate(String),
    /// The CSMS offered no TLS version we accept (1.2 and up).
    TlsVersion(String),
    /// The CSMS accepts none of our cipher suites (A00.FR.318/319).
    CipherSuite(String),
}

impl ConnectError {
    /// The core's view of the failure.
    pub fn failure(&self) -> ConnectFailure {
        match self {
            ConnectError::AuthRejected(_) => ConnectFailure::AuthRejected,
            ConnectError::InvalidServerCertificate(_) => ConnectFailure::InvalidCsmsCertificate,
            ConnectError::TlsVersion(_) => ConnectFailure::InvalidTlsVersion,
            ConnectError::CipherSuite(_) => ConnectFailure::InvalidTlsCipherSuite,
            ConnectError::Transport(_) | ConnectError::Protocol(_) => ConnectFailure::Other,
        }
    }
}

/// Sorts a TLS handshake error: certificate and version problems are security events.
fn tls_error(e: std::io::Error) -> ConnectError {
    let text = format!("TLS handshake: {e}");
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => ConnectError::InvalidServerCertificate(text),
        Some(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::SupportedVersionsExtensionRequired,
        ))
        | Some(rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)) => {
            ConnectError::TlsVersion(text)
        }
        // A server without a suite in common answers handshake_failure to our ClientHello.
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure))
        | Some(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon))
        | Some(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SelectedUnofferedCipherSuite,
        )) => ConnectError::CipherSuite(text),
        _ => ConnectError::Transport(text),
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Transport(m)
            | ConnectError::Protocol(m)
            | ConnectError::AuthRejected(m)
            | ConnectError::InvalidServerCertificate(m)
            | ConnectError::TlsVersion(m)
            | ConnectError::CipherSuite(m) => f.write_str(m),
        }
    }
}

impl Connector {
    /// The configuration file's own profile (`[csms]`).
    pub fn from_config(config: &Config) -> Result<Connector, String> {
        let credentials = Credentials {
            password: config.csms.password.clone(),
            ..Credentials::default()
        };
        Self::for_endpoint(
            config,
            &config.csms.url,
            config.csms.security_profile,
            &credentials,
        )
    }

    /// A connector for an endpoint and security profile (a network profile), trusting the
    /// configured CA (or the system's roots) plus the CSMS roots installed through OCPP, and
    /// presenting the installed station certificate, else the configured one.
    pub fn for_endpoint(
        config: &Config,
        endpoint: &str,
        profile: u8,
        credentials: &Credentials,
    ) -> Result<Connector, String> {
        let tls = if profile >= 2 {
            Some(Arc::new(tls_config(config, profile, credentials)?))
        } else {
            None
        };
        Ok(Connector::with_tls(
            config,
            endpoint,
            profile,
            credentials.password.clone(),
            tls,
        ))
    }

    /// A connector with a TLS configuration built before (see [`super::tls::TlsCache`]):
    /// `tls` must be `Some` for profiles 2 and 3.
    pub fn with_tls(
        config: &Config,
        endpoint: &str,
        profile: u8,
        password: Option<String>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Connector {
        Connector {
            url: config.url_for(endpoint),
            station_id: config.station.id.clone(),
            password: if profile <= 2 { password } else { None },
            tls,
            subprotocol: config.csms.ocpp_version.subprotocol(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> Result<Ws, ConnectError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner())
            .await
            .map_err(|_| ConnectError::Transport("connection attempt timed out".into()))?
    }

    async fn connect_inner(&self) -> Result<Ws, ConnectError> {
        let transport = |e: &dyn std::fmt::Display| ConnectError::Transport(e.to_string());
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| transport(&e))?;
        let host = request
            .uri()
            .host()
            .ok_or_else(|| ConnectError::Transport("URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = request.uri().scheme_str() == Some("wss");
        let port = request
            .uri()
            .port_u16()
            .unwrap_or(if tls { 443 } else { 80 });
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(self.subprotocol),
        );
        if let Some(password) = &self.password {
            let credentials =
                basic_credentials(format!("{}:{}", self.station_id, password).as_bytes());
            let mut value = HeaderValue::from_str(&format!("Basic {credentials}"))
                .map_err(|e| transport(&e))?;
            value.set_sensitive(true);
            headers.insert("Authorization", value);
        }

        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Transport(format!("TCP connect to {host}:{port}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let stream: Box<dyn Io> = match (&self.tls, tls) {
            (Some(config), true) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| ConnectError::Transport(format!("bad server name {host}: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(tls_error)?;
                Box::new(tls)
            }
            (None, false) => Box::new(tcp),
            _ => {
                return Err(ConnectError::Protocol(
                    "URL scheme and security profile disagree".into(),
                ));
            }
        };
        let ws_config = ws_config();
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
                .await
                .map_err(|e| match &e {
                    tokio_tungstenite::tungstenite::Error::Http(r)
                        if matches!(r.status().as_u16(), 401 | 403) =>
                    {
                        ConnectError::AuthRejected(format!(
                            "the CSMS refused our credentials (HTTP {})",
                            r.status().as_u16()
                        ))
                    }
                    _ => ConnectError::Transport(format!("WebSocket handshake: {e}")),
                })?;
        let agreed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if agreed != Some(self.subprotocol) {
            return Err(ConnectError::Protocol(format!(
                "the CSMS did not agree to the {} subprotocol (got {agreed:?}); \
                 is [csms] ocpp_version the version this CSMS speaks?",
                self.subprotocol
            )));
        }
        Ok(ws)
    }
}

/// The largest message (and frame) accepted from the CSMS.
const MAX_MESSAGE: usize = 1 << 20;

/// A 4 KiB read buffer instead of tungstenite's 128 KiB, which it zero-fills and keeps
/// resident for the whole connection (132 kB of the idle agent's private memory,
/// BENCHMARKS.md, issue 13): OCPP frames are small, and for a longer one (up to
/// [`MAX_MESSAGE`]) tungstenite reserves the frame's whole length before reading it.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// A00.FR.319-320: TLS 1.3, and for TLS 1.2 only ECDHE with AES-GCM (the spec's ECDSA pair
/// and its RSA-keyed counterparts): no CBC, no static RSA key exchange.
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

/// What the agent authenticates with, beyond the configuration file.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// HTTP Basic auth password (profiles 1 and 2).
    pub password: Option<String>,
    /// CSMS root certificates installed through OCPP (DER).
    pub installed_roots: Vec<Vec<u8>>,
    /// The station certificate chain and key installed through OCPP (A02).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

pub fn tls_config(
    config: &Config,
    profile: u8,
    credentials: &Credentials,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(crypto_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &config.csms.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("csms.ca_file {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("csms.ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("csms.ca_file {}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // Some system bundles carry certificates rustls cannot use; skip those.
                let _ = roots.add(cert);
            }
        }
    }
    for der in &credentials.installed_roots {
        // An unusable installed root is skipped (it was checked when installed).
        let _ = roots.add(CertificateDer::from(der.clone()));
    }
    if roots.is_empty() {
        return Err(
            "no trusted CA certificates: set csms.ca_file or install the system roots".into(),
        );
    }
    // A00.FR.3xx: TLS 1.2 at least; rustls offers nothing older.
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let tls = if profile == 3 {
        let configured = match (&config.csms.client_cert_file, &config.csms.client_key_file) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => None,
        };
        let Some((cert_path, key_path)) = credentials.identity.clone().or(configured) else {
            return Err(
                "security profile 3 needs csms.client_cert_file and csms.client_key_file".into(),
            );
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("csms.client_cert_file {}: {e}", cert_path.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| format!("csms.client_key_file {}: {e}", key_path.display()))?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    Ok(tls)
}

/// Basic authentication credentials (RFC 7617): the `user-id:password` bytes in base64 with
/// the standard alphabet and padding (RFC 4648 section 4), as the WebSocket connection (OCPP
/// security profiles 1 and 2) and the HTTP client (credentials in a URL) send them.
pub fn basic_credentials(user_colon_password: &[u8]) -> String {
    data_encoding::BASE64.encode(user_colon_password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    /// The small read buffer still takes frames up to the limit, in one piece, and refuses
    /// longer ones.
    #[tokio::test]
    async fn frames_longer_than_the_read_buffer_arrive_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sizes = [10, 4 * 1024 + 1, 300_000, MAX_MESSAGE];
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for (i, n) in sizes.iter().enumerate() {
                let text: String = (0..*n)
                    .map(|j| (b'a' + ((i + j) % 26) as u8) as char)
                    .collect();
                ws.send(Message::text(text)).await.unwrap();
            }
            let _ = ws.send(Message::text("x".repeat(MAX_MESSAGE + 1))).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream: Box<dyn Io> = Box::new(tcp);
        let url = format!("ws://{addr}/ocpp/CS1");
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
                .await
                .unwrap();
        for (i, n) in sizes.iter().enumerate() {
            let got = ws.next().await.unwrap().unwrap().into_text().unwrap();
            assert_eq!(got.len(), *n);
            assert!(
                got.bytes()
                    .enumerate()
                    .all(|(j, b)| b == b'a' + ((i + j) % 26) as u8)
            );
        }
        assert!(matches!(
            ws.next().await,
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_)))
        ));
        server.await.unwrap();
    }

    #[test]
    fn basic_credentials_are_rfc4648_base64() {
        // RFC 7617 section 2's example
        assert_eq!(
            basic_credentials(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        // RFC 4648 section 10: the standard alphabet, padded
        let encoded: Vec<String> = (0..=6)
            .map(|n| basic_credentials(&b"foobar"[..n]))
            .collect();
        assert_eq!(
            encoded,
            [
                "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"
            ]
        );
    }
}
