//! What the server says of itself to clients: its disco#info identity and
//! features (XEP-0030), and the entity-capabilities hash of them (XEP-0115)
//! that its stream features carry, so a client that has seen the hash
//! before need not ask again.

use crate::xml::{ns, Element};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The caps node: names this software, not a place (XEP-0115 §4).
pub const CAPS_NODE: &str = "urn:x-outpost";

const IDENTITY: (&str, &str, &str) = ("server", "im", "Outpost");

/// Offline storage of messages (XEP-0160 says so with this feature).
const MSGOFFLINE: &str = "msgoffline";

const FEATURES: [&str; 15] = [
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::VERSION,
    ns::ROSTER,
    ns::DELAY,
    ns::CARBONS,
    ns::TIME,
    ns::REGISTER,
    ns::LAST,
    MSGOFFLINE,
    "urn:xmpp:blocking",
    "urn:xmpp:reporting:1",
    "jabber:iq:private",
    "vcard-temp",
];

/// The server's disco#info answer (with `node` when asked for one).
pub fn disco_info(node: Option<&str>) -> Element {
    let (category, kind, name) = IDENTITY;
    let mut q = Element::new("query", ns::DISCO_INFO);
    if let Some(node) = node {
        q = q.attr("node", node);
    }
    q = q.child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", category)
            .attr("type", kind)
            .attr("name", name),
    );
    for f in FEATURES {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
    }
    q
}

/// The verification string's hash (XEP-0115 §5.1: identities then
/// features, sorted, each followed by '<'), SHA-1 in base64.
pub fn caps_ver() -> String {
    let (category, kind, name) = IDENTITY;
    let mut s = format!("{category}/{kind}//{name}<");
    let mut features = FEATURES;
    features.sort_unstable();
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    B64.encode(digest.as_ref())
}

/// The node a client asks about to check the hash: `CAPS_NODE#ver`.
pub fn caps_node_ver() -> String {
    format!("{CAPS_NODE}#{}", caps_ver())
}

/// The stream feature announcing the hash.
pub fn caps_feature() -> String {
    format!(
        "<c xmlns='{}' hash='sha-1' node='{CAPS_NODE}' ver='{}'/>",
        ns::CAPS,
        caps_ver()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2's example: its verification string and hash.
    #[test]
    fn the_hash_is_computed_as_the_xep_does() {
        let s = "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<";
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
        assert_eq!(B64.encode(digest.as_ref()), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn the_hash_follows_the_features_and_the_info_carries_the_node() {
        assert_eq!(caps_ver().len(), 28);
        let info = disco_info(Some(&caps_node_ver())).to_xml(ns::CLIENT);
        assert!(
            info.contains(&format!("node='{}'", caps_node_ver())),
            "{info}"
        );
        assert!(info.contains("var='urn:xmpp:time'") && info.contains("var='msgoffline'"));
    }
}
