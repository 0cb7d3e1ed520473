//! The sans-IO OCPP core: no sockets, no files, no clocks. See [`station::Station`] for the
//! calling contract.
pub mod auth;
pub mod certificates;
pub mod clock;
pub mod devmodel;
pub mod management;
pub mod meter;
pub mod network;
pub mod outbox;
pub mod persist;
pub mod rpc;
pub mod station;
pub mod testkit;
pub mod timer;
pub mod transactions;
pub mod v201;
pub mod x509;
