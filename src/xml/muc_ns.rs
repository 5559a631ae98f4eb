//! Namespaces of MUC and the extensions rooms speak.

pub use super::ns::{MAM, RSM, SID};

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const USER: &str = "http://jabber.org/protocol/muc#user";
pub const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
pub const SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
pub const STABLE_ID: &str = "http://jabber.org/protocol/muc#stable_id";
