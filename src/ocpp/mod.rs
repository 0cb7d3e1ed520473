//! The sans-IO OCPP core: no sockets, no files, no clocks. See `station::Station` for the
//! calling contract.
pub mod v201;
