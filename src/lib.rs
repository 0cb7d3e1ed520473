//! ocpp-agent: an OCPP 2.0.1 charge-point agent for embedded Linux.
//!
//! `ocpp` is the sans-IO protocol core; `shell` is the tokio side that owns sockets, files and
//! GPIO lines and executes the core's effects; `config` is the TOML configuration.
pub mod config;
pub mod ocpp;
pub mod shell;
