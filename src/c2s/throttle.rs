//! Slowing down password guessing, across streams: failures are counted per
//! address and per account, and an attempt from an address or on an
//! account that failed recently is not evaluated before its delay is over
//! (doubling per recent failure, capped). A right password is never
//! refused, only made to wait at most the cap; an account's delay cannot
//! lock its owner out. Memory is bounded: the oldest entries are forgotten.

use crate::admission::AddressKey;
use std::collections::HashMap;
use std::net::IpAddr;

/// Failures older than this no longer count.
const FORGET_AFTER_MS: u64 = 10 * 60_000;
/// The first delay, doubling per failure up to `MAX_DELAY_MS`.
const FIRST_DELAY_MS: u64 = 250;
const MAX_DELAY_MS: u64 = 16_000;
/// Addresses and accounts remembered at most (each).
pub const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: u64,
}

impl Failures {
    fn delay(&self) -> u64 {
        (FIRST_DELAY_MS << (self.count.saturating_sub(1)).min(6)).min(MAX_DELAY_MS)
    }
    fn until(&self) -> u64 {
        self.last_ms + self.delay()
    }
}

#[derive(Default)]
pub struct AuthThrottle {
    by_address: HashMap<AddressKey, Failures>,
    by_account: HashMap<String, Failures>,
}

/// Count a failure of `key`; returns its delay. At the bound, stale
/// entries go first, then those whose wait ends soonest (so the heaviest
/// guessers stay throttled).
fn note<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, Failures>, key: K, now: u64) -> u64 {
    if map.len() >= MAX_REMEMBERED && !map.contains_key(&key) {
        map.retain(|_, f| now.saturating_sub(f.last_ms) < FORGET_AFTER_MS);
        if map.len() >= MAX_REMEMBERED {
            // An eighth at a time, so the cost per failure stays small.
            let mut by_wait: Vec<(u64, K)> =
                map.iter().map(|(k, f)| (f.until(), k.clone())).collect();
            let n = by_wait.len() / 8;
            by_wait.select_nth_unstable_by_key(n, |(until, _)| *until);
            for (_, k) in by_wait.into_iter().take(n) {
                map.remove(&k);
            }
        }
    }
    let f = map.entry(key).or_insert(Failures {
        count: 0,
        last_ms: now,
    });
    if now.saturating_sub(f.last_ms) >= FORGET_AFTER_MS {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last_ms = now;
    f.delay()
}

impl AuthThrottle {
    /// When an attempt from `ip` on `account` may be evaluated (≤ now: at once).
    pub fn ready_at(&self, ip: IpAddr, account: &str) -> u64 {
        let recent = |f: &Failures| f.until();
        let a = self.by_address.get(&AddressKey::of(ip)).map_or(0, recent);
        let b = self.by_account.get(account).map_or(0, recent);
        a.max(b)
    }

    /// An attempt failed: returns the delay before the failure is told.
    pub fn failed(&mut self, ip: IpAddr, account: &str, now: u64) -> u64 {
        let a = note(&mut self.by_address, AddressKey::of(ip), now);
        let b = note(&mut self.by_account, account.to_string(), now);
        a.max(b)
    }

    /// The account's owner got in: its failures are forgotten (the
    /// address's are not: a guesser with one account of its own would reset
    /// them).
    pub fn succeeded(&mut self, account: &str) {
        self.by_account.remove(account);
    }

    pub fn remembered(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_account.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_delay_the_next_attempt_from_the_address_and_on_the_account() {
        let mut t = AuthThrottle::default();
        assert_eq!(t.ready_at(ip("10.0.0.1"), "alice"), 0);
        assert_eq!(t.failed(ip("10.0.0.1"), "alice", 1000), 250);
        assert_eq!(t.failed(ip("10.0.0.1"), "alice", 1250), 500);
        assert_eq!(t.ready_at(ip("10.0.0.1"), "bob"), 1750, "same address");
        assert_eq!(t.ready_at(ip("10.0.0.2"), "alice"), 1750, "same account");
        assert_eq!(t.ready_at(ip("10.0.0.2"), "bob"), 0, "neither");
        for i in 0..20 {
            t.failed(ip("10.0.0.1"), "alice", 2000 + i);
        }
        assert_eq!(
            t.ready_at(ip("10.0.0.3"), "alice"),
            2019 + MAX_DELAY_MS,
            "capped"
        );
        t.succeeded("alice");
        assert_eq!(t.ready_at(ip("10.0.0.3"), "alice"), 0);
        assert!(
            t.ready_at(ip("10.0.0.1"), "carol") > 0,
            "the address stays slowed"
        );
        // Old failures are forgotten.
        assert_eq!(t.failed(ip("10.0.0.9"), "dave", 0), 250);
        assert_eq!(t.failed(ip("10.0.0.9"), "dave", FORGET_AFTER_MS), 250);
    }

    #[test]
    fn memory_is_bounded_against_rotating_addresses_and_accounts() {
        let mut t = AuthThrottle::default();
        for i in 0..(3 * MAX_REMEMBERED as u32) {
            let a = IpAddr::from(i.to_be_bytes());
            t.failed(a, &format!("user{i}"), u64::from(i));
        }
        let (a, b) = t.remembered();
        assert!(a <= MAX_REMEMBERED && b <= MAX_REMEMBERED, "{a} {b}");
    }
}
