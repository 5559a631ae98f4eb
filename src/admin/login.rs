//! Web sessions, CSRF tokens and the login throttles (sans-IO: the shell
//! passes the time, the peer's address and fresh random bytes in).

use crate::admission::AddressKey;
use crate::scram::constant_time_eq;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;
use std::net::IpAddr;

/// An idle session ends after this long.
pub const SESSION_IDLE_MS: u64 = 30 * 60 * 1000;
/// Logged-in sessions kept at once; a login past this ends the least
/// recently used one. Only a login can end one early, never a form load.
pub const MAX_LOGGED_IN: usize = 16;
/// Login forms (anonymous sessions) kept at once, in all and per address,
/// so that reloading the form from one address only displaces that
/// address's own forms.
pub const MAX_FORMS: usize = 64;
pub const MAX_FORMS_PER_ADDRESS: usize = 4;
/// Failed logins allowed before each further attempt must wait.
const FREE_FAILURES: u32 = 3;
const MAX_WAIT_MS: u64 = 60_000;
/// Addresses whose failed logins are remembered at once.
pub const MAX_THROTTLED_ADDRESSES: usize = 1024;
/// An address's failures are forgotten this long after its last one.
const FORGET_FAILURES_AFTER_MS: u64 = 15 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// Every form carries it; a POST without it changes nothing.
    pub csrf: String,
    pub authenticated: bool,
    /// Who opened it; forms are counted per address.
    from: AddressKey,
    expires_ms: u64,
    /// The outcome of the last action, shown once on the next page.
    pub flash: Option<Result<String, String>>,
}

#[derive(Default)]
pub struct Sessions {
    list: Vec<Session>,
}

fn token(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// A new anonymous session (a login form) for `from`, from 32 random
    /// bytes. It may displace another form, never a logged-in session.
    pub fn open(&mut self, from: IpAddr, now: u64, random: [u8; 32]) -> &Session {
        let from = AddressKey::of(from);
        self.list.retain(|s| s.expires_ms > now);
        self.make_room_for_a_form(from);
        self.push(from, false, now, random)
    }

    /// The live session with this id; using it extends it.
    pub fn get(&mut self, id: Option<&str>, now: u64) -> Option<&mut Session> {
        let id = id?;
        let s = self
            .list
            .iter_mut()
            .find(|s| s.expires_ms > now && constant_time_eq(s.id.as_bytes(), id.as_bytes()))?;
        s.expires_ms = now + SESSION_IDLE_MS;
        Some(s)
    }

    /// Log in: the anonymous session is replaced by a new one (new id and
    /// token, so an id planted before the login is worth nothing).
    pub fn authenticate(
        &mut self,
        old: &str,
        from: IpAddr,
        now: u64,
        random: [u8; 32],
    ) -> &Session {
        self.close(old);
        self.list.retain(|s| s.expires_ms > now);
        if self.list.iter().filter(|s| s.authenticated).count() >= MAX_LOGGED_IN {
            self.evict_least_recently_used(|s| s.authenticated);
        }
        self.push(AddressKey::of(from), true, now, random)
    }

    pub fn close(&mut self, id: &str) {
        self.list.retain(|s| s.id != id);
    }

    fn push(
        &mut self,
        from: AddressKey,
        authenticated: bool,
        now: u64,
        random: [u8; 32],
    ) -> &Session {
        self.list.push(Session {
            id: token(&random[..16]),
            csrf: token(&random[16..]),
            authenticated,
            from,
            expires_ms: now + SESSION_IDLE_MS,
            flash: None,
        });
        self.list.last().expect("just pushed")
    }

    /// An address at its share gives up its own oldest form; when all forms
    /// are taken, the address holding the most gives one up, so that
    /// displacing someone else's form takes `MAX_FORMS` addresses.
    fn make_room_for_a_form(&mut self, from: AddressKey) {
        let forms = self.forms_per_address();
        if forms.get(&from).copied().unwrap_or(0) >= MAX_FORMS_PER_ADDRESS {
            self.evict_least_recently_used(|s| !s.authenticated && s.from == from);
        } else if forms.values().sum::<usize>() >= MAX_FORMS {
            let busiest = forms.values().copied().max().unwrap_or(0);
            self.evict_least_recently_used(|s| !s.authenticated && forms[&s.from] == busiest);
        }
    }

    fn forms_per_address(&self) -> HashMap<AddressKey, usize> {
        let mut forms = HashMap::new();
        for s in self.list.iter().filter(|s| !s.authenticated) {
            *forms.entry(s.from).or_insert(0) += 1;
        }
        forms
    }

    fn evict_least_recently_used(&mut self, among: impl Fn(&Session) -> bool) {
        let victim = (self.list.iter().enumerate())
            .filter(|(_, s)| among(s))
            .min_by_key(|(_, s)| s.expires_ms)
            .map(|(i, _)| i);
        if let Some(i) = victim {
            self.list.remove(i);
        }
    }
}

/// Slows password guessing from one source (the serial console, or one
/// address of the web page): after a few failures each attempt waits twice
/// as long as the last (up to a minute).
#[derive(Debug, Default, Clone)]
pub struct Throttle {
    failures: u32,
    blocked_until: u64,
    last_failure: u64,
}

impl Throttle {
    /// `Err(ms)`: try again in that many milliseconds.
    pub fn check(&self, now: u64) -> Result<(), u64> {
        if now < self.blocked_until {
            Err(self.blocked_until - now)
        } else {
            Ok(())
        }
    }

    pub fn failed(&mut self, now: u64) {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        if self.failures >= FREE_FAILURES {
            let wait = (1000u64 << (self.failures - FREE_FAILURES).min(16)).min(MAX_WAIT_MS);
            self.blocked_until = now + wait;
        }
    }

    pub fn succeeded(&mut self) {
        *self = Throttle::default();
    }
}

/// The web page's throttle: one `Throttle` per address (an IPv6 /64 counts
/// as one, as in `Admission`), so a guesser slows only itself and the right
/// password from elsewhere gets in at once. At most
/// `MAX_THROTTLED_ADDRESSES` are remembered; see `remember`.
///
/// No throttle across addresses: anything a guesser can trip for everyone
/// would also keep the real admin out.
#[derive(Debug, Default)]
pub struct AddressThrottle {
    by_address: HashMap<AddressKey, Throttle>,
}

impl AddressThrottle {
    /// Before checking a password from `ip`: `Err(ms)` to wait that long, or
    /// `Ok` and the attempt counts as failed until `succeeded` says
    /// otherwise. Counted now rather than when the check fails, so that
    /// parallel guesses from one address cannot all start before the first
    /// failure lands.
    pub fn attempt(&mut self, ip: IpAddr, now: u64) -> Result<(), u64> {
        let key = AddressKey::of(ip);
        if let Some(t) = self.by_address.get(&key) {
            t.check(now)?;
        }
        self.remember(key, now).failed(now);
        Ok(())
    }

    /// The right password from `ip`: its failures are forgotten.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.by_address.remove(&AddressKey::of(ip));
    }

    /// Addresses remembered now.
    pub fn remembered(&self) -> usize {
        self.by_address.len()
    }

    /// The entry for `key`, making room at the bound: first addresses with
    /// no failure for `FORGET_FAILURES_AFTER_MS` go, then the one whose wait
    /// ends soonest, so the heaviest guessers stay slowed the longest. An
    /// attacker with more addresses than the bound can get its own
    /// addresses forgotten (and a few free guesses each again), but never
    /// slow anyone else.
    fn remember(&mut self, key: AddressKey, now: u64) -> &mut Throttle {
        if !self.by_address.contains_key(&key) && self.by_address.len() >= MAX_THROTTLED_ADDRESSES {
            self.by_address
                .retain(|_, t| now.saturating_sub(t.last_failure) < FORGET_FAILURES_AFTER_MS);
            if self.by_address.len() >= MAX_THROTTLED_ADDRESSES {
                let soonest = (self.by_address.iter())
                    .min_by_key(|(_, t)| (t.blocked_until, t.last_failure))
                    .map(|(k, _)| *k);
                if let Some(k) = soonest {
                    self.by_address.remove(&k);
                }
            }
        }
        let t = self.by_address.entry(key).or_default();
        if now.saturating_sub(t.last_failure) >= FORGET_FAILURES_AFTER_MS {
            *t = Throttle::default();
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A distinct IPv4 address for each `n`.
    fn nth_ip(n: u32) -> IpAddr {
        IpAddr::V4((0x0a00_0000 + n).into())
    }

    fn random(n: u32) -> [u8; 32] {
        let mut r = [0u8; 32];
        r[..4].copy_from_slice(&n.to_le_bytes());
        r[16..20].copy_from_slice(&n.to_le_bytes());
        r
    }

    #[test]
    fn sessions_expire_and_rotate_on_login() {
        let mut s = Sessions::default();
        let anon = s.open(ip("10.0.0.1"), 0, [1; 32]).id.clone();
        let authed = s.authenticate(&anon, ip("10.0.0.1"), 10, [2; 32]).clone();
        assert_ne!(authed.id, anon);
        assert!(s.get(Some(&anon), 20).is_none());
        assert!(s.get(Some(&authed.id), 20).unwrap().authenticated);
        assert!(s.get(Some(&authed.id), 20 + SESSION_IDLE_MS + 1).is_none());
    }

    #[test]
    fn reloading_the_form_from_one_address_displaces_only_its_own_forms() {
        let mut s = Sessions::default();
        let mine = s.open(ip("10.0.0.1"), 0, random(0)).id.clone();
        for n in 1..200 {
            s.open(ip("10.0.0.2"), n as u64, random(n));
        }
        assert!(s.get(Some(&mine), 300).is_some());
        assert_eq!(s.list.len(), 1 + MAX_FORMS_PER_ADDRESS);
        // An IPv6 host's whole /64 is one address.
        for n in 200..300 {
            s.open(nth_ip6(n), 300, random(n));
        }
        assert_eq!(s.list.len(), 1 + 2 * MAX_FORMS_PER_ADDRESS);
    }

    fn nth_ip6(n: u32) -> IpAddr {
        format!("2001:db8::{n:x}").parse().unwrap()
    }

    #[test]
    fn when_all_forms_are_taken_the_busiest_address_gives_one_up() {
        let mut s = Sessions::default();
        let oldest = s.open(nth_ip(0), 0, random(0)).id.clone();
        let mut n = 1;
        while s.list.len() < MAX_FORMS {
            s.open(nth_ip(1 + n % 20), n as u64, random(n));
            n += 1;
        }
        let newcomer = s.open(nth_ip(999), 1000, random(n)).id.clone();
        assert_eq!(s.list.len(), MAX_FORMS);
        assert!(s.get(Some(&oldest), 1000).is_some(), "not the busiest");
        assert!(s.get(Some(&newcomer), 1000).is_some());
    }

    #[test]
    fn forms_never_displace_a_logged_in_session() {
        let mut s = Sessions::default();
        let form = s.open(ip("10.0.0.1"), 0, random(0)).id.clone();
        let admin = s
            .authenticate(&form, ip("10.0.0.1"), 0, random(1))
            .id
            .clone();
        for n in 2..1000 {
            s.open(nth_ip(n), n as u64, random(n));
        }
        assert!(s.get(Some(&admin), 1000).unwrap().authenticated);
        assert_eq!(s.list.len(), MAX_FORMS + 1);
    }

    #[test]
    fn a_login_past_the_cap_ends_the_least_recently_used_login() {
        let mut s = Sessions::default();
        let logins: Vec<String> = (0..MAX_LOGGED_IN as u32)
            .map(|n| {
                s.authenticate("", nth_ip(n), n as u64, random(n))
                    .id
                    .clone()
            })
            .collect();
        assert!(s.get(Some(&logins[0]), 100).is_some());
        s.authenticate("", nth_ip(99), 101, random(99));
        assert!(s.get(Some(&logins[0]), 102).is_some(), "used lately");
        assert!(
            s.get(Some(&logins[1]), 102).is_none(),
            "least recently used"
        );
        assert_eq!(s.list.len(), MAX_LOGGED_IN);
    }

    #[test]
    fn the_throttle_doubles_the_wait() {
        let mut t = Throttle::default();
        for _ in 0..2 {
            t.failed(0);
            assert!(t.check(0).is_ok());
        }
        t.failed(0);
        assert_eq!(t.check(0), Err(1000));
        t.failed(1000);
        assert_eq!(t.check(1000), Err(2000));
        t.succeeded();
        assert!(t.check(1000).is_ok());
    }

    #[test]
    fn a_guesser_slows_only_its_own_address_and_doubles_its_wait() {
        let mut t = AddressThrottle::default();
        let guesser = ip("192.0.2.66");
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.attempt(guesser, 0), Ok(()));
        }
        assert_eq!(t.attempt(guesser, 0), Err(1000));
        assert_eq!(t.attempt(ip("192.0.2.1"), 0), Ok(()), "another address");
        assert_eq!(t.attempt(guesser, 1000), Ok(()));
        assert_eq!(t.attempt(guesser, 1000), Err(2000));
        assert_eq!(t.attempt(guesser, 3000), Ok(()));
        assert_eq!(t.attempt(guesser, 3000), Err(4000));
        // The same IPv6 /64 is the same guesser; another /64 is not.
        for _ in 0..FREE_FAILURES {
            t.attempt(ip("2001:db8::1"), 0).unwrap();
        }
        assert_eq!(t.attempt(ip("2001:db8::2"), 0), Err(1000));
        assert_eq!(t.attempt(ip("2001:db8:0:1::1"), 0), Ok(()));
        // The right password clears the address's failures.
        t.succeeded(guesser);
        assert_eq!(t.attempt(guesser, 3000), Ok(()));
    }

    #[test]
    fn the_throttle_forgets_old_failures() {
        let mut t = AddressThrottle::default();
        let guesser = ip("192.0.2.66");
        for _ in 0..10 {
            let _ = t.attempt(guesser, 0);
        }
        assert!(t.attempt(guesser, 1).is_err());
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.attempt(guesser, FORGET_FAILURES_AFTER_MS), Ok(()));
        }
    }

    #[test]
    fn addresses_rotating_past_the_bound_cannot_grow_memory_or_free_a_guesser() {
        let mut t = AddressThrottle::default();
        let guesser = ip("192.0.2.66");
        for _ in 0..10 {
            let _ = t.attempt(guesser, 0);
        }
        for n in 0..(3 * MAX_THROTTLED_ADDRESSES as u32) {
            t.attempt(nth_ip(n), 1).unwrap();
            assert!(t.remembered() <= MAX_THROTTLED_ADDRESSES);
        }
        assert!(
            t.attempt(guesser, 2).is_err(),
            "the heavy guesser stays slowed"
        );
    }
}
