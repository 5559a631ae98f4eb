//! XEP-0352 client state indication: while a client says it is inactive
//! (a phone in a pocket), presence updates for it are held, only the
//! latest from each sender kept, and go out when it is active again or
//! before anything else is sent to it (a message, an iq, a subscription
//! request, a large delivery), so the order of what it reads never
//! changes. What a phone on a metered link gains is every superseded
//! update: each contact's status flapping while it is idle costs one
//! presence, not one per change.

use crate::common::Payload;
use std::collections::HashMap;

/// Senders whose latest presence is held, and their bytes: past either,
/// everything held goes out (the client gets more than it needs, the
/// node holds no more).
pub const HELD_SENDERS_MAX: usize = 512;
pub const HELD_BYTES_MAX: usize = 256 * 1024;
/// Presences longer than this are not held (nor looked into).
const HOLDABLE_BYTES_MAX: usize = 16 * 1024;

/// The latest presence from each sender, in the order they were first
/// held (a sender's update replaces its older one in place).
#[derive(Default)]
pub struct Held {
    order: Vec<String>,
    latest: HashMap<String, Payload>,
    bytes: usize,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Hold `payload` if it is a presence that a later one from the same
    /// sender supersedes; give it back otherwise.
    pub fn hold(&mut self, payload: Payload) -> Result<(), Payload> {
        let Some(sender) = holdable_sender(&payload) else {
            return Err(payload);
        };
        self.bytes += payload.len();
        match self.latest.insert(sender.clone(), payload) {
            Some(older) => self.bytes -= older.len(),
            None => self.order.push(sender),
        }
        Ok(())
    }

    /// Whether the held presences passed a bound and are to go out.
    pub fn is_full(&self) -> bool {
        self.order.len() > HELD_SENDERS_MAX || self.bytes > HELD_BYTES_MAX
    }

    /// Everything held, in order; nothing is held after.
    pub fn take(&mut self) -> Vec<Payload> {
        self.bytes = 0;
        let mut latest = std::mem::take(&mut self.latest);
        let order = std::mem::take(&mut self.order);
        order
            .into_iter()
            .filter_map(|s| latest.remove(&s))
            .collect()
    }
}

/// The sender of a presence that only says where someone is (available or
/// not): not a subscription request or answer, not an error, not a room's
/// presence about the client itself (status 110: a join, a nick change or
/// a removal the client must see in order).
fn holdable_sender(payload: &Payload) -> Option<String> {
    if payload.len() > HOLDABLE_BYTES_MAX {
        return None;
    }
    let bytes = payload.to_vec();
    let text = std::str::from_utf8(&bytes).ok()?;
    let start_tag = text.strip_prefix("<presence")?;
    let start_tag = &start_tag[..start_tag.find('>')?];
    if !start_tag.starts_with([' ', '/']) {
        return None;
    }
    match attr(start_tag, "type") {
        None | Some("unavailable") => {}
        Some(_) => return None,
    }
    if text.contains("code='110'") || text.contains("code=\"110\"") {
        return None;
    }
    attr(start_tag, "from").map(str::to_string)
}

/// An attribute's value in a start tag the node wrote (either quote).
fn attr<'a>(start_tag: &'a str, name: &str) -> Option<&'a str> {
    for quote in ['\'', '"'] {
        let key = format!(" {name}={quote}");
        if let Some(at) = start_tag.find(&key) {
            let rest = &start_tag[at + key.len()..];
            return rest.find(quote).map(|end| &rest[..end]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(from: &str, rest: &str) -> Payload {
        format!("<presence from='{from}' to='a@x/p'{rest}")
            .into_bytes()
            .into()
    }

    #[test]
    fn the_latest_presence_of_each_sender_is_held_in_first_seen_order() {
        let mut held = Held::default();
        for i in 0..5 {
            held.hold(presence(
                "b@x/1",
                &format!("><status>{i}</status></presence>"),
            ))
            .unwrap();
            held.hold(presence(
                "c@x/1",
                &format!("><status>{i}</status></presence>"),
            ))
            .unwrap();
        }
        held.hold(presence("b@x/1", " type='unavailable'/>"))
            .unwrap();
        let out: Vec<String> = held
            .take()
            .iter()
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
            .collect();
        assert_eq!(out.len(), 2);
        assert!(
            out[0].contains("b@x/1") && out[0].contains("unavailable"),
            "{out:?}"
        );
        assert!(
            out[1].contains("c@x/1") && out[1].contains("<status>4</status>"),
            "{out:?}"
        );
        assert!(held.is_empty() && held.take().is_empty());
    }

    #[test]
    fn what_must_arrive_in_order_is_not_held() {
        let mut held = Held::default();
        for important in [
            presence("b@x", " type='subscribe'/>"),
            presence("b@x", " type='subscribed'/>"),
            presence("b@x", " type='error'><error/></presence>"),
            presence("r@c/me", "><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>"),
            "<message from='b@x'><body>hi</body></message>".as_bytes().to_vec().into(),
            "<presenceX from='b@x'/>".as_bytes().to_vec().into(),
        ] {
            assert!(held.hold(important).is_err());
        }
        assert!(held.is_empty());
    }

    #[test]
    fn many_senders_fill_it_to_a_bound() {
        let mut held = Held::default();
        for i in 0..HELD_SENDERS_MAX {
            held.hold(presence(&format!("u{i}@x/r"), "/>")).unwrap();
            assert!(!held.is_full());
        }
        held.hold(presence("one-more@x/r", "/>")).unwrap();
        assert!(held.is_full());
        let mut big = Held::default();
        let status = "s".repeat(8 * 1024);
        for i in 0..40 {
            big.hold(presence(
                &format!("u{i}@x/r"),
                &format!("><status>{status}</status></presence>"),
            ))
            .unwrap();
        }
        assert!(big.is_full(), "{} bytes", big.bytes);
        assert_eq!(big.take().len(), 40);
    }
}
