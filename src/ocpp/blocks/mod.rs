//! One module per functional block of part 2. Each owns its state and is driven by the
//! station with a [`Ctx`](super::ctx::Ctx): CSMS calls, answers, core events and timers.

pub mod authorization;
pub mod availability;
pub mod data_transfer;
pub mod diagnostics;
pub mod display;
pub mod firmware;
pub mod local_list;
pub mod provisioning;
pub mod reservations;
pub mod security;
pub mod smart_charging;
pub mod tariff;
pub mod transactions;

/// The retries of a transfer (firmware download, log upload) as the CSMS asked for them:
/// attempts after the first (at most 100) and the seconds between them (at most a day), or
/// the block's defaults.
pub(crate) fn transfer_retries(
    retries: Option<i64>,
    interval_s: Option<i64>,
    default_retries: u32,
    default_interval: std::time::Duration,
) -> (u32, u64) {
    (
        retries.map_or(default_retries, |r| r.clamp(0, 100) as u32),
        interval_s.map_or(default_interval.as_secs(), |s| s.clamp(0, 86_400) as u64),
    )
}
