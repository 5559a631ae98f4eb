//! Entity capabilities (XEP-0115) of the node's clients: what a client's
//! presence says it supports, asked of it once per capability string and
//! kept when the answer verifies, so PEP knows who wants which
//! notifications (`+notify`) without asking every session.

use crate::common::ConnId;
use crate::xml::{ns, Element};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

/// Capability strings whose features are kept; past it, the oldest go.
pub const KNOWN_MAX: usize = 128;
/// An answer with more features than this, or a longer one, is not kept.
pub const FEATURES_MAX: usize = 300;
pub const FEATURE_BYTES_MAX: usize = 256;

pub type Features = Rc<BTreeSet<String>>;

#[derive(Default)]
pub struct Caps {
    known: HashMap<String, Features>,
    order: VecDeque<String>,
    /// Queries out: iq id → (capability string, the session asked).
    asked: HashMap<String, (String, ConnId)>,
    counter: u64,
}

/// The capability string (`node#ver`) and hash a presence announces.
pub fn announced(presence: &Element) -> Option<(String, String)> {
    let c = presence.get_child("c", ns::CAPS)?;
    let (node, ver) = (c.get_attr("node")?, c.get_attr("ver")?);
    let hash = c.get_attr("hash").unwrap_or("sha-1");
    if node.len() + ver.len() > FEATURE_BYTES_MAX {
        return None;
    }
    Some((format!("{node}#{ver}"), hash.to_string()))
}

impl Caps {
    pub fn get(&self, caps: &str) -> Option<Features> {
        self.known.get(caps).cloned()
    }

    /// The query to send to `conn` (whose JID is `to`) for `caps`; none if
    /// this session has a query out already.
    pub fn ask(&mut self, conn: ConnId, caps: &str, from: &str, to: &str) -> Option<Element> {
        if self.asked.values().any(|(_, c)| *c == conn) {
            return None;
        }
        self.counter += 1;
        let id = format!("caps-{}", self.counter);
        self.asked.insert(id.clone(), (caps.to_string(), conn));
        Some(
            Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", id)
                .attr("from", from)
                .attr("to", to)
                .child(Element::new("query", ns::DISCO_INFO).attr("node", caps)),
        )
    }

    /// An answer from `conn`: the capability string it was about, and the
    /// features (none for an error or an answer out of bounds), kept for
    /// everyone if the hash `hash` verifies.
    pub fn answered(
        &mut self,
        conn: ConnId,
        iq: &Element,
        hash: &str,
    ) -> Option<(String, Option<Features>)> {
        let id = iq.get_attr("id")?;
        if self.asked.get(id).is_none_or(|(_, c)| *c != conn) {
            return None;
        }
        let (caps, _) = self.asked.remove(id)?;
        let query = iq.get_child("query", ns::DISCO_INFO);
        let features = query.filter(|_| iq.get_attr("type") == Some("result"));
        let Some(features) = features.and_then(features_of) else {
            return Some((caps, None));
        };
        let features = Rc::new(features);
        let ver = caps.rsplit_once('#').map_or("", |(_, v)| v);
        if query.is_some_and(|q| verification(q, hash).as_deref() == Some(ver)) {
            self.keep(&caps, features.clone());
        }
        Some((caps, Some(features)))
    }

    /// Keep verified features for everyone; past [`KNOWN_MAX`] the oldest go.
    fn keep(&mut self, caps: &str, features: Features) {
        if self.known.contains_key(caps) {
            return;
        }
        if self.known.len() >= KNOWN_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.known.remove(&oldest);
            }
        }
        self.known.insert(caps.to_string(), features);
        self.order.push_back(caps.to_string());
    }

    /// The session ended: its query is forgotten.
    pub fn forget(&mut self, conn: ConnId) {
        self.asked.retain(|_, (_, c)| *c != conn);
    }
}

fn features_of(query: &Element) -> Option<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    for f in query.elements().filter(|e| e.is("feature", ns::DISCO_INFO)) {
        let var = f.get_attr("var")?;
        if var.len() > FEATURE_BYTES_MAX || found.len() >= FEATURES_MAX {
            return None;
        }
        found.insert(var.to_string());
    }
    Some(found)
}

/// The verification string's hash (XEP-0115 §5.1), base64; none for a
/// hash function not supported here.
fn verification(query: &Element, hash: &str) -> Option<String> {
    let algorithm = match hash {
        "sha-1" => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha-256" => &ring::digest::SHA256,
        _ => return None,
    };
    let mut s = String::new();
    let mut identities: Vec<String> = query
        .elements()
        .filter(|e| e.is("identity", ns::DISCO_INFO))
        .map(|i| {
            let a = |n: &str| i.get_attr(n).unwrap_or("").to_string();
            format!(
                "{}/{}/{}/{}<",
                a("category"),
                a("type"),
                a("xml:lang"),
                a("name")
            )
        })
        .collect();
    identities.sort();
    identities.iter().for_each(|i| s.push_str(i));
    let mut features: Vec<&str> = query
        .elements()
        .filter(|e| e.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.get_attr("var"))
        .collect();
    features.sort_unstable();
    features.iter().for_each(|f| {
        s.push_str(f);
        s.push('<');
    });
    let mut forms: Vec<(String, String)> = Vec::new();
    for x in query.elements().filter(|e| e.is("x", ns::DATA)) {
        let values = |f: &Element| -> Vec<String> {
            let mut v: Vec<String> = f
                .elements()
                .filter(|v| v.is("value", ns::DATA))
                .map(|v| v.text_content())
                .collect();
            v.sort();
            v
        };
        let fields: Vec<&Element> = x.elements().filter(|f| f.is("field", ns::DATA)).collect();
        let form_type = fields
            .iter()
            .find(|f| f.get_attr("var") == Some("FORM_TYPE"))
            .map(|f| values(f).join(""))?;
        let mut rest: Vec<(&str, Vec<String>)> = fields
            .iter()
            .filter_map(|f| Some((f.get_attr("var")?, values(f))))
            .filter(|(var, _)| *var != "FORM_TYPE")
            .collect();
        rest.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = format!("{form_type}<");
        for (var, vals) in rest {
            text.push_str(var);
            text.push('<');
            for v in vals {
                text.push_str(&v);
                text.push('<');
            }
        }
        forms.push((form_type, text));
    }
    forms.sort();
    forms.iter().for_each(|(_, t)| s.push_str(t));
    Some(B64.encode(ring::digest::digest(algorithm, s.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.3, the complex generation example.
    #[test]
    fn the_xep_example_verifies() {
        let xml = "<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='><identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/><identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/><feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='http://jabber.org/protocol/muc'/><x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field><field var='ip_version'><value>ipv4</value><value>ipv6</value></field><field var='os'><value>Mac</value></field><field var='os_version'><value>10.5.1</value></field><field var='software'><value>Psi</value></field><field var='software_version'><value>0.11</value></field></x></query>";
        let q = crate::xml::parse_fragment(xml).unwrap();
        assert_eq!(
            verification(&q, "sha-1").as_deref(),
            Some("q07IKJEyjvHSyhy//CH0CxmKi8w=")
        );
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    fn answer(id: &str, features: usize, len: usize) -> Element {
        let mut q = Element::new("query", ns::DISCO_INFO);
        for i in 0..features {
            let var = format!("{i:0>len$}");
            q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", var));
        }
        Element::new("iq", ns::CLIENT)
            .attr("type", "result")
            .attr("id", id)
            .child(q)
    }

    #[test]
    fn one_query_out_a_session_and_the_cache_keeps_the_newest_strings() {
        let mut caps = Caps::default();
        assert!(caps.ask(1, "n#a", "d", "u@d/r").is_some());
        assert!(caps.ask(1, "n#b", "d", "u@d/r").is_none(), "one at a time");
        // Unverifiable answers serve their session and are not kept.
        let (_, f) = caps.answered(1, &answer("caps-1", 1, 3), "sha-1").unwrap();
        assert!(f.is_some() && caps.get("n#a").is_none());
        // An answer past the bounds gives no features at all.
        caps.ask(2, "n#c", "d", "u@d/r");
        let (_, f) = caps
            .answered(2, &answer("caps-2", FEATURES_MAX + 1, 3), "sha-1")
            .unwrap();
        assert!(f.is_none());
        caps.ask(3, "n#d", "d", "u@d/r");
        let (_, f) = caps
            .answered(3, &answer("caps-3", 1, FEATURE_BYTES_MAX + 1), "sha-1")
            .unwrap();
        assert!(f.is_none());
        // Past KNOWN_MAX verified strings, the oldest goes.
        for i in 0..=KNOWN_MAX {
            caps.keep(&format!("s{i}"), Rc::new(BTreeSet::new()));
            caps.keep("s1", Rc::new(BTreeSet::new()));
        }
        assert_eq!(caps.known.len(), KNOWN_MAX);
        assert!(caps.get("s0").is_none() && caps.get(&format!("s{KNOWN_MAX}")).is_some());
    }
}
