//! Network connection profiles (B09, B10): configuration slots, the order they are tried in
//! (`NetworkConfigurationPriority`), how often each is tried (`NetworkProfileConnectionAttempts`),
//! and the fall-back to the last profile that worked (B10.FR.07).

use serde::{Deserialize, Serialize};

/// Slots a CSMS may fill (B09.FR.06: at least two). Slot 1 starts out as the configuration
/// file's `[csms]` section.
pub const SLOTS: &[&str] = &["1", "2", "3", "4"];

/// Where and how to connect: the part of `NetworkConnectionProfileType` this agent uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkProfile {
    pub slot: u32,
    /// The CSMS endpoint without the station id (`ocppCsmsUrl`).
    pub url: String,
    pub security_profile: u8,
    /// MessageTimeout while connected through this profile, seconds (0: the device model's).
    pub message_timeout_s: u32,
}

/// Which profile to try next.
#[derive(Debug, Clone, Default)]
pub struct Network {
    profiles: Vec<NetworkProfile>,
    /// Slots in the order to try (NetworkConfigurationPriority at start-up).
    order: Vec<u32>,
    position: usize,
    attempts: u32,
    /// The slot of the last connection that worked (B10.FR.07).
    pub last_good: Option<u32>,
    /// Trying `last_good` after every slot of the order failed.
    falling_back: bool,
}

impl Network {
    pub fn new(mut profiles: Vec<NetworkProfile>, priority: &str, last_good: Option<u32>) -> Self {
        profiles.sort_by_key(|p| p.slot);
        profiles.dedup_by_key(|p| p.slot);
        let mut order: Vec<u32> = priority
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|s| profiles.iter().any(|p| p.slot == *s))
            .collect();
        if order.is_empty() {
            order = profiles.iter().map(|p| p.slot).take(1).collect();
        }
        Network {
            profiles,
            order,
            position: 0,
            attempts: 0,
            last_good: last_good.filter(|_| true),
            falling_back: false,
        }
    }

    pub fn profile(&self, slot: u32) -> Option<&NetworkProfile> {
        self.profiles.iter().find(|p| p.slot == slot)
    }

    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.profiles.iter().map(|p| p.slot)
    }

    /// The profile to connect with now.
    pub fn current(&self) -> &NetworkProfile {
        let slot = if self.falling_back {
            self.last_good.unwrap_or(self.order[0])
        } else {
            self.order[self.position]
        };
        self.profile(slot)
            .or_else(|| self.profiles.first())
            .expect("there is always the configured profile")
    }

    /// A connection attempt with the current profile failed: after `max_attempts` on one slot,
    /// move on to the next (B10.FR.03); after the last, fall back to the one that last worked
    /// (B10.FR.07); then start over. Returns whether the profile changed.
    pub fn failed(&mut self, max_attempts: u32) -> bool {
        self.attempts += 1;
        if self.attempts < max_attempts.max(1) {
            return false;
        }
        self.attempts = 0;
        let before = self.current().slot;
        if self.falling_back {
            self.falling_back = false;
            self.position = 0;
        } else if self.position + 1 < self.order.len() {
            self.position += 1;
        } else {
            self.position = 0;
            self.falling_back = self
                .last_good
                .is_some_and(|s| self.profile(s).is_some() && self.order.len() > 1);
        }
        self.current().slot != before
    }

    /// A connection worked: remember its slot. Returns it if it is new.
    pub fn succeeded(&mut self) -> Option<u32> {
        self.attempts = 0;
        let slot = self.current().slot;
        (self.last_good != Some(slot)).then(|| {
            self.last_good = Some(slot);
            slot
        })
    }

    /// Stores a profile set by the CSMS (takes effect for new connections after a restart,
    /// B10.FR.04; a slot already in the order is replaced at once for later attempts).
    pub fn set(&mut self, profile: NetworkProfile) {
        self.profiles.retain(|p| p.slot != profile.slot);
        self.profiles.push(profile);
        self.profiles.sort_by_key(|p| p.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(slot: u32) -> NetworkProfile {
        NetworkProfile {
            slot,
            url: format!("ws://csms{slot}/ocpp"),
            security_profile: 1,
            message_timeout_s: 0,
        }
    }

    #[test]
    fn tries_each_slot_then_falls_back_to_the_last_good_one() {
        let mut n = Network::new(vec![p(1), p(2), p(3)], "2,3,1", Some(1));
        let mut seen = Vec::new();
        for _ in 0..9 {
            seen.push(n.current().slot);
            n.failed(2);
        }
        // 2 twice, 3 twice, 1 twice, then the fall-back to 1 twice, then 2 again.
        assert_eq!(seen, vec![2, 2, 3, 3, 1, 1, 1, 1, 2]);
        assert_eq!(n.succeeded(), Some(2));
        assert_eq!(n.succeeded(), None);
    }

    #[test]
    fn unknown_slots_in_the_priority_are_skipped() {
        let n = Network::new(vec![p(1)], "4,1", None);
        assert_eq!(n.current().slot, 1);
        let n = Network::new(vec![p(1)], "", None);
        assert_eq!(n.current().slot, 1);
    }
}
