//! The sans-IO OCPP core: no sockets, no files, no clocks. See [`station::Station`] for the
//! calling contract.
pub mod auth;
pub mod blocks;
pub mod clock;
pub mod contract;
pub mod ctx;
pub mod devmodel;
pub mod meter;
pub mod model;
pub mod network;
pub mod outbox;
pub mod persist;
pub mod rpc;
pub mod schema;
pub mod session;
pub mod snapshot;
pub mod station;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod timer;
pub mod v16;
pub mod v201;
pub mod validate;
pub mod x509;

// The blocks' types in the shell's and the tests' vocabulary.
pub use blocks::diagnostics as logs;
pub use blocks::firmware;
pub use blocks::security as certificates;
