//! Who may hold a connection that has not proved itself yet (a TLS or
//! stream handshake, a login): caps in total and per address, so that one
//! address cannot take every slot of a listener. Sans-IO: the caller says
//! when a connection arrives and when it goes or proves itself.

use std::collections::HashMap;
use std::net::IpAddr;

/// An address as the caps count it. IPv6 hosts usually own a whole /64, so
/// that is what one "address" is; IPv4-mapped IPv6 counts as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(u128);

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(u32::from(v4) as u128),
                // Top bit set so no /64 collides with an IPv4 address.
                None => AddressKey((u128::from(v6) >> 64) | (1 << 127)),
            },
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener's slots for unproven connections are all taken.
    Full,
    /// This address already holds its share.
    TooManyFromAddress,
}

impl Refused {
    pub fn text(self) -> &'static str {
        match self {
            Refused::Full => "the server has too many connections in progress; try again soon",
            Refused::TooManyFromAddress => {
                "too many connections in progress from your address; try again soon"
            }
        }
    }
}

/// Counts open connections in total and per address against two caps.
#[derive(Debug, Clone)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    total: usize,
    by_address: HashMap<AddressKey, usize>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Admission {
        Admission {
            max_total,
            max_per_address: max_per_address.min(max_total),
            total: 0,
            by_address: HashMap::new(),
        }
    }

    /// Take a slot for a connection from `ip`, or say why not. Every `Ok`
    /// must be matched by one `release` with the same address.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.total >= self.max_total {
            return Err(Refused::Full);
        }
        let n = self.by_address.entry(AddressKey::of(ip)).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Refused::TooManyFromAddress);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Give back the slot a connection from `ip` held.
    pub fn release(&mut self, ip: IpAddr) {
        let key = AddressKey::of(ip);
        if let Some(n) = self.by_address.get_mut(&key) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.by_address.remove(&key);
            }
        }
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.total
    }

    /// New caps (settings changed while running); slots already taken stay.
    pub fn set_caps(&mut self, max_total: usize, max_per_address: usize) {
        self.max_total = max_total;
        self.max_per_address = max_per_address.min(max_total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let mut a = Admission::new(10, 3);
        for _ in 0..3 {
            a.admit(ip("10.0.0.1")).unwrap();
        }
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refused::TooManyFromAddress));
        a.admit(ip("10.0.0.2")).unwrap();
        a.release(ip("10.0.0.1"));
        a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.open(), 4);
    }

    #[test]
    fn the_total_is_capped_across_addresses() {
        let mut a = Admission::new(4, 2);
        for last in 1..=4 {
            a.admit(ip(&format!("10.0.0.{last}"))).unwrap();
        }
        assert_eq!(a.admit(ip("10.0.0.9")), Err(Refused::Full));
        a.release(ip("10.0.0.3"));
        a.admit(ip("10.0.0.9")).unwrap();
        // Releasing an address that holds nothing changes nothing.
        a.release(ip("192.0.2.1"));
        assert_eq!(a.open(), 4);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address_and_mapped_ipv4_is_ipv4() {
        let mut a = Admission::new(100, 2);
        a.admit(ip("2001:db8::1")).unwrap();
        a.admit(ip("2001:db8::ffff:1")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8::abcd")),
            Err(Refused::TooManyFromAddress)
        );
        a.admit(ip("2001:db8:0:1::1")).unwrap();
        a.admit(ip("10.0.0.1")).unwrap();
        a.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1")), Err(Refused::TooManyFromAddress));
    }
}
