//! In-band registration of new accounts (XEP-0077), when the operator
//! allows it (`[c2s] allow_registration`): before logging in, over TLS,
//! at most one account per address (an IPv6 /64 is one) every ten
//! minutes and [`PER_HOUR`] for the whole node, so a script cannot fill
//! the node with accounts.

use crate::admission::AddressKey;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

pub const PER_ADDRESS_INTERVAL_MS: u64 = 10 * 60_000;
pub const PER_HOUR: usize = 30;
const HOUR_MS: u64 = 60 * 60_000;
/// Addresses remembered at most (older ones are let go first).
const REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub struct RegistrationLimit {
    by_address: HashMap<AddressKey, u64>,
    /// When the registrations of the last hour were made, oldest first.
    recent: VecDeque<u64>,
}

impl RegistrationLimit {
    /// Whether `ip` may register an account now; if not, why.
    pub fn check(&mut self, now: u64, ip: IpAddr) -> Result<(), &'static str> {
        while self.recent.front().is_some_and(|t| now >= t + HOUR_MS) {
            self.recent.pop_front();
        }
        self.by_address
            .retain(|_, t| now < *t + PER_ADDRESS_INTERVAL_MS);
        if self.by_address.contains_key(&AddressKey::of(ip)) {
            return Err("an account was registered from your address less than ten minutes ago");
        }
        if self.recent.len() >= PER_HOUR {
            return Err("this server registers no more accounts this hour; try again later");
        }
        Ok(())
    }

    /// `ip` registered an account.
    pub fn note(&mut self, now: u64, ip: IpAddr) {
        if self.by_address.len() >= REMEMBERED {
            if let Some(oldest) = self
                .by_address
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k)
            {
                self.by_address.remove(&oldest);
            }
        }
        self.by_address.insert(AddressKey::of(ip), now);
        self.recent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_address_per_interval_and_a_cap_per_hour() {
        let mut limit = RegistrationLimit::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limit.check(0, a).is_ok());
        limit.note(0, a);
        assert!(limit.check(1_000, a).is_err());
        assert!(limit.check(PER_ADDRESS_INTERVAL_MS, a).is_ok());
        // The same /64 is one address.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        limit.note(1, v6);
        assert!(limit.check(2, "2001:db8::2".parse().unwrap()).is_err());
        for i in 0..PER_HOUR as u32 {
            limit.note(10, IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
        }
        assert!(limit.check(20, "198.51.100.7".parse().unwrap()).is_err());
        assert!(limit
            .check(10 + HOUR_MS, "198.51.100.7".parse().unwrap())
            .is_ok());
    }
}
