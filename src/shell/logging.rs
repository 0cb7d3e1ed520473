//! Logging: to journald with structured fields when systemd connected our output to the journal
//! (`$JOURNAL_STREAM`), else human-readable lines on stderr. `RUST_LOG` overrides `log.filter`.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init(config_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<EnvFilter>().ok())
        .or_else(|| config_filter.parse().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            // Fields become OCPP_ACTION, OCPP_MESSAGE_ID, OCPP_EVSE, ... (a prefix keeps them
            // clear of journald's own MESSAGE_ID).
            let journald = journald
                .with_field_prefix(Some("OCPP".into()))
                .with_syslog_identifier("ocpp-agent".into());
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .try_init();
            return;
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
