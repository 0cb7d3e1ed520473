//! Logging: to journald with structured fields when systemd connected our output to the journal
//! (`$JOURNAL_STREAM`), else human-readable lines on stderr. `RUST_LOG` overrides `log.filter`.
//!
//! Filters are `target=level` directives (`info,ocpp_agent=debug`), parsed by
//! `tracing_subscriber::filter::Targets`: the regex-based `EnvFilter` would add ~160 KiB to the
//! binary for span-field filters nobody needs on a charger (BENCHMARKS.md).
//!
//! The station id is a span field, not a process-wide one: every station task runs inside
//! [`station_span`], whose `station` field the journald layer writes into every entry of that
//! task as `OCPP_STATION` (span fields get the same `OCPP_` prefix as event fields), so two
//! stations in one process log their own ids. The process's own lines run inside
//! [`process_span`], which carries the id too while there is one station.

use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Parses a filter as `log.filter` and `RUST_LOG` spell it.
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    text.trim().parse::<Targets>().map_err(|e| e.to_string())
}

/// The span a station task runs in: its id, as `OCPP_STATION` in the journal. It has no
/// parent, so a station's lines carry its id only, whatever span started it. At ERROR level
/// so that no filter that lets a line through disables the span (and drops the id).
pub fn station_span(station: &str) -> tracing::Span {
    tracing::error_span!(parent: None, "station", station)
}

/// The span of the process's own lines (signals, start-up errors, control socket): with one
/// station its id (the product: `OCPP_STATION` on every entry), with several none.
pub fn process_span(stations: &[&str]) -> tracing::Span {
    match stations {
        [one] => tracing::error_span!("agent", station = *one),
        _ => tracing::error_span!("agent"),
    }
}

/// Installs the subscriber: journald when `$JOURNAL_STREAM` says our output goes there.
pub fn init(config_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| parse_filter(&f).ok())
        .or_else(|| parse_filter(config_filter).ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        if let Ok(journald) = tracing_journald::layer() {
            // Fields become OCPP_ACTION, OCPP_MESSAGE_ID, OCPP_EVSE, ... (a prefix keeps them
            // clear of journald's own MESSAGE_ID).
            let journald = journald
                .with_field_prefix(Some("OCPP".into()))
                .with_syslog_identifier("ocpp-agent".into());
            let _ = tracing_subscriber::registry()
                .with(journald)
                .with(filter)
                .try_init();
            return;
        }
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_parse_like_rust_log() {
        assert!(super::parse_filter("info").is_ok());
        assert!(super::parse_filter("warn,ocpp_agent=debug").is_ok());
        assert!(super::parse_filter("info,=nonsense=").is_err());
    }
}
