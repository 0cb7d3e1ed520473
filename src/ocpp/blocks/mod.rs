//! One module per functional block of part 2. Each owns its state and is driven by the
//! station with a [`Ctx`](super::ctx::Ctx): CSMS calls, answers, core events and timers.

pub mod authorization;
pub mod availability;
pub mod data_transfer;
pub mod diagnostics;
pub mod firmware;
pub mod local_list;
pub mod provisioning;
pub mod security;
pub mod transactions;
