//! XML for XMPP streams: byte-level framing with limits, parsing of complete
//! stanzas, and an element tree with an escaping writer.

mod element;
mod framer;
mod parse;

pub mod muc_ns;

pub use element::{escape, escape_into, is_xml_char, repair, Element, Node};
pub use framer::{Frame, FrameError, Framer, Limits, MAX_STANZA_BYTES_LIMIT};
pub use parse::{parse_fragment, parse_header, parse_stanza, ParseError, StreamHeader};

pub mod ns {
    pub const CLIENT: &str = "jabber:client";
    pub const STREAMS: &str = "http://etherx.jabber.org/streams";
    pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
    pub const ROSTER: &str = "jabber:iq:roster";
    pub const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    pub const PING: &str = "urn:xmpp:ping";
    pub const DELAY: &str = "urn:xmpp:delay";
    pub const VERSION: &str = "jabber:iq:version";
    pub const CARBONS: &str = "urn:xmpp:carbons:2";
    pub const FORWARD: &str = "urn:xmpp:forward:0";
    pub const HINTS: &str = "urn:xmpp:hints";
    pub const TIME: &str = "urn:xmpp:time";
    pub const CSI: &str = "urn:xmpp:csi:0";
    pub const REGISTER: &str = "jabber:iq:register";
    pub const CAPS: &str = "http://jabber.org/protocol/caps";
    pub const DATA: &str = "jabber:x:data";
    pub const SID: &str = "urn:xmpp:sid:0";
    pub const MAM: &str = "urn:xmpp:mam:2";
    pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
    pub const RSM: &str = "http://jabber.org/protocol/rsm";
    pub const LAST: &str = "jabber:iq:last";
}
