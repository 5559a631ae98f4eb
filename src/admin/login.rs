//! Web sessions, CSRF tokens and the login throttle (sans-IO: the shell
//! passes the time and fresh random bytes in).

use crate::scram::constant_time_eq;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// An idle session ends after this long.
pub const SESSION_IDLE_MS: u64 = 30 * 60 * 1000;
/// Sessions kept at once (a login past this evicts the oldest).
pub const MAX_SESSIONS: usize = 16;
/// Failed logins allowed before each further attempt must wait.
const FREE_FAILURES: u32 = 3;
const MAX_WAIT_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// Every form carries it; a POST without it changes nothing.
    pub csrf: String,
    pub authenticated: bool,
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
    /// A new session (anonymous until `authenticate`), from 32 random bytes.
    pub fn open(&mut self, now: u64, random: [u8; 32]) -> &Session {
        self.list.retain(|s| s.expires_ms > now);
        if self.list.len() >= MAX_SESSIONS {
            // Anonymous ones go first, then the oldest.
            let victim = self.list.iter().position(|s| !s.authenticated).unwrap_or(0);
            self.list.remove(victim);
        }
        self.list.push(Session {
            id: token(&random[..16]),
            csrf: token(&random[16..]),
            authenticated: false,
            expires_ms: now + SESSION_IDLE_MS,
            flash: None,
        });
        self.list.last().expect("just pushed")
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
    pub fn authenticate(&mut self, old: &str, now: u64, random: [u8; 32]) -> &Session {
        self.close(old);
        let s = self.open(now, random);
        let id = s.id.clone();
        let s = self.list.iter_mut().find(|s| s.id == id).expect("opened");
        s.authenticated = true;
        s
    }

    pub fn close(&mut self, id: &str) {
        self.list.retain(|s| s.id != id);
    }
}

/// Slows password guessing: after a few failures each attempt waits twice
/// as long as the last (up to a minute). One throttle for the whole page:
/// guesses from many addresses count together.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: u32,
    blocked_until: u64,
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
        if self.failures >= FREE_FAILURES {
            let wait = (1000u64 << (self.failures - FREE_FAILURES).min(16)).min(MAX_WAIT_MS);
            self.blocked_until = now + wait;
        }
    }

    pub fn succeeded(&mut self) {
        *self = Throttle::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_are_bounded_and_rotate_on_login() {
        let mut s = Sessions::default();
        let anon = s.open(0, [1; 32]).id.clone();
        let authed = s.authenticate(&anon, 10, [2; 32]).clone();
        assert_ne!(authed.id, anon);
        assert!(s.get(Some(&anon), 20).is_none());
        assert!(s.get(Some(&authed.id), 20).unwrap().authenticated);
        assert!(s.get(Some(&authed.id), 20 + SESSION_IDLE_MS + 1).is_none());
        for i in 0..(MAX_SESSIONS as u8 + 5) {
            s.open(100, [i + 10; 32]);
        }
        assert!(s.list.len() <= MAX_SESSIONS);
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
}
