//! Bookmarks for clients old and new: XEP-0402 keeps one PEP item per
//! room, while older clients (XEP-0048) read and write the whole list as
//! one `<storage/>`, in private XML storage (XEP-0049) or in the PEP node
//! `storage:bookmarks`. The XEP-0402 node is the one truth (XEP-0411,
//! XEP-0402 §5.3): the old forms are made from it when read and turned
//! into its items when written, so every client sees the same rooms and
//! each change reaches the owner's other devices in the form they asked
//! for. What the old form holds that has no XEP-0402 form (URL bookmarks,
//! a conference without a valid JID) is kept beside it, so nothing a
//! client wrote is lost.

use super::stored_xml::PRIVATE_NODE;
use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::model::pep::{self, Access, PepConfig, PepItem, PepNode, PepRecord, SendLast};
use crate::xml::{ns, Element, Node as XmlNode};

/// The XEP-0402 node, and its payload's namespace.
pub const NODE: &str = "urn:xmpp:bookmarks:1";
/// The XEP-0048 namespace, and the name of its PEP node.
pub const LEGACY: &str = "storage:bookmarks";
/// The key of the old form's leftovers in private XML storage.
const EXTRAS_KEY: &str = "{storage:bookmarks}storage";

/// What an account's disco#info says of the conversion.
pub const FEATURES: &[&str] = &[
    "urn:xmpp:bookmarks-conversion:0",
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:bookmarks:1#compat-pep",
];

/// XEP-0402 §4: the owner alone, every bookmark kept, nothing sent on
/// presence.
fn node_config() -> PepConfig {
    PepConfig {
        access: Access::Whitelist,
        persist_items: true,
        max_items: pep::MAX_ITEMS,
        send_last: SendLast::Never,
        notify_retract: true,
    }
}

/// An old `<conference/>` as a XEP-0402 item (its id is the room), with
/// the extensions `before` had, which the old form cannot carry.
fn to_item(legacy: &Element, before: Option<&Element>) -> Option<(String, Element)> {
    let room = Jid::parse(legacy.get_attr("jid")?).ok()?;
    if room.resource().is_some() || room.local().is_none() {
        return None;
    }
    let mut c = Element::new("conference", NODE);
    if let Some(name) = legacy.get_attr("name") {
        c.set_attr("name", name);
    }
    if matches!(legacy.get_attr("autojoin"), Some("true" | "1")) {
        c.set_attr("autojoin", "true");
    }
    for field in ["nick", "password"] {
        if let Some(v) = legacy.get_child(field, LEGACY) {
            c = c.child(Element::new(field, NODE).text(v.text_content()));
        }
    }
    if let Some(ext) = before.and_then(|b| b.get_child("extensions", NODE)) {
        c = c.child(ext.clone());
    }
    Some((room.to_string(), c))
}

/// A XEP-0402 item as an old `<conference/>`.
fn to_legacy(room: &str, c: &Element) -> Element {
    let mut l = Element::new("conference", LEGACY).attr("jid", room);
    if let Some(name) = c.get_attr("name") {
        l.set_attr("name", name);
    }
    let autojoin = matches!(c.get_attr("autojoin"), Some("true" | "1"));
    l.set_attr("autojoin", if autojoin { "true" } else { "false" });
    for field in ["nick", "password"] {
        if let Some(v) = c.get_child(field, NODE) {
            l = l.child(Element::new(field, LEGACY).text(v.text_content()));
        }
    }
    l
}

fn parsed(item: &PepItem) -> Option<Element> {
    crate::xml::parse_fragment(&item.xml).ok()
}

/// An old `<storage/>` split into the items it means, in order (a room
/// named twice: the last), and what has no XEP-0402 form.
fn split(storage: &Element, node: Option<&PepNode>) -> (Vec<(String, Element)>, Vec<Element>) {
    let mut items: Vec<(String, Element)> = Vec::new();
    let mut extras = Vec::new();
    for child in storage.elements() {
        let before = |room: &str| {
            node.and_then(|n| n.items.iter().find(|i| i.id == room))
                .and_then(parsed)
        };
        let converted = child
            .get_attr("jid")
            .filter(|_| child.is("conference", LEGACY))
            .and_then(|room| to_item(child, before(room).as_ref()));
        match converted {
            Some((room, c)) => {
                items.retain(|(r, _)| *r != room);
                items.push((room, c));
            }
            None if !extras.contains(child) => extras.push(child.clone()),
            None => {}
        }
    }
    (items, extras)
}

impl Ctx<'_> {
    /// The old form of `user`'s bookmarks.
    pub(super) fn legacy_bookmarks(&self, user: &str) -> Element {
        let mut storage = Element::new("storage", LEGACY);
        storage.children = self.legacy_conferences(user);
        if let Some(extras) = self.legacy_extras(user) {
            storage.children.extend(extras.children);
        }
        storage
    }

    /// The XEP-0402 items as old `<conference/>`s.
    fn legacy_conferences(&self, user: &str) -> Vec<XmlNode> {
        let Some(node) = self.accounts[user].pep.get(NODE) else {
            return Vec::new();
        };
        node.items
            .iter()
            .filter_map(|item| {
                let c = parsed(item).filter(|c| c.is("conference", NODE))?;
                Some(XmlNode::Element(to_legacy(&item.id, &c)))
            })
            .collect()
    }

    fn legacy_extras(&self, user: &str) -> Option<Element> {
        self.accounts[user]
            .pep
            .get(PRIVATE_NODE)
            .and_then(|n| n.items.iter().find(|i| i.id == EXTRAS_KEY))
            .and_then(parsed)
    }

    /// Bookmarks written in the old form: the XEP-0402 items become what
    /// it says, within the PEP bounds (all or nothing), and the owner's
    /// sessions hear of the change in both forms.
    pub(super) fn set_legacy_bookmarks(
        &mut self,
        user: &str,
        storage: &Element,
    ) -> Result<(), &'static str> {
        let acc = &self.accounts[user];
        let existing = acc.pep.get(NODE);
        let node_was_there = existing.is_some();
        let (wanted, extras) = split(storage, existing);
        if wanted.len() > pep::MAX_ITEMS as usize {
            return Err("resource-constraint");
        }
        let new_nodes = usize::from(existing.is_none())
            + usize::from(!extras.is_empty() && !acc.pep.contains_key(PRIVATE_NODE));
        if acc.pep.len() + new_nodes > pep::NODES_PER_ACCOUNT {
            return Err("resource-constraint");
        }
        let mut after = existing
            .cloned()
            .unwrap_or_else(|| PepNode::new(node_config()));
        let removed: Vec<String> = after
            .items
            .iter()
            .filter(|i| wanted.iter().all(|(room, _)| *room != i.id))
            .map(|i| i.id.clone())
            .collect();
        let mut changed = Vec::new();
        for (room, c) in &wanted {
            let xml = c.to_xml(ns::CLIENT);
            if after.items.iter().any(|i| i.id == *room && i.xml == xml) {
                continue;
            }
            changed.push(PepItem {
                id: room.clone(),
                xml,
                stamp_ms: self.now.unix_ms,
            });
        }
        for id in &removed {
            after.retract(id);
        }
        for item in &changed {
            after.publish(item.clone());
        }
        let extras_item = (!extras.is_empty()).then(|| {
            let mut keep = Element::new("storage", LEGACY);
            keep.children = extras.into_iter().map(XmlNode::Element).collect();
            PepItem {
                id: EXTRAS_KEY.into(),
                xml: keep.to_xml(ns::CLIENT),
                stamp_ms: self.now.unix_ms,
            }
        });
        let extras_before = self
            .legacy_extras(user)
            .map_or(0, |e| EXTRAS_KEY.len() + e.to_xml(ns::CLIENT).len());
        let extras_after = extras_item.as_ref().map_or(0, PepItem::bytes);
        let grows = (after.bytes() + extras_after).saturating_sub(extras_before);
        if after.items.len() < wanted.len() || !self.pep_bytes_fit(user, NODE, grows) {
            return Err("resource-constraint");
        }
        match extras_item {
            Some(item) => self.store_item(user, PRIVATE_NODE, pep::MAX_ITEMS, item)?,
            None if extras_before > 0 => self.commit_pep(
                user,
                PRIVATE_NODE,
                PepRecord::Retracted {
                    id: EXTRAS_KEY.into(),
                },
            ),
            None => {}
        }
        if !node_was_there && !wanted.is_empty() {
            self.commit_pep(
                user,
                NODE,
                PepRecord::Configured {
                    config: node_config(),
                },
            );
        }
        for id in removed {
            self.commit_pep(user, NODE, PepRecord::Retracted { id: id.clone() });
            let event = Element::new("items", super::pep::NS_EVENT)
                .attr("node", NODE)
                .child(Element::new("retract", super::pep::NS_EVENT).attr("id", id));
            self.pep_notify(user, NODE, event, None);
        }
        for item in changed {
            let event = super::pep::pep_event_items(NODE, &item);
            self.commit_pep(user, NODE, PepRecord::Published { item });
            self.pep_notify(user, NODE, event, None);
        }
        self.notify_legacy_bookmarks(user);
        Ok(())
    }

    /// The owner's sessions that asked for the old PEP node hear the
    /// whole list again (XEP-0411 §3).
    pub(super) fn notify_legacy_bookmarks(&mut self, user: &str) {
        let targets: Vec<ConnId> = self
            .bound
            .conns_of(user)
            .into_iter()
            .filter(|c| self.bound.resources.get(c).is_some_and(|r| r.wants(LEGACY)))
            .collect();
        if targets.is_empty() {
            return;
        }
        let event = Element::new("items", super::pep::NS_EVENT)
            .attr("node", LEGACY)
            .child(
                Element::new("item", super::pep::NS_EVENT)
                    .attr("id", "current")
                    .child(self.legacy_bookmarks(user)),
            );
        self.send_pep_event(user, &targets, &event, None);
    }

    /// At start: bookmarks kept in the old forms before the conversion
    /// existed (an ordinary `storage:bookmarks` PEP node, conferences in
    /// private XML) become XEP-0402 items, and the old node goes (it may
    /// have been readable by contacts).
    pub(crate) fn migrate_legacy_bookmarks(&mut self) {
        let users: Vec<String> = self.accounts.keys().cloned().collect();
        for user in users {
            self.migrate_legacy_bookmarks_of(&user);
        }
    }

    fn migrate_legacy_bookmarks_of(&mut self, user: &str) {
        let acc = &self.accounts[user];
        let old_node = acc.pep.contains_key(LEGACY);
        let extras = self.legacy_extras(user);
        let extra_conferences = extras
            .as_ref()
            .is_some_and(|e| !split(e, None).0.is_empty());
        if !old_node && !extra_conferences {
            return;
        }
        let old_list = acc
            .pep
            .get(LEGACY)
            .and_then(PepNode::last)
            .and_then(parsed)
            .filter(|s| s.is("storage", LEGACY));
        // Oldest form first: a room named twice keeps its XEP-0402 form.
        let mut storage = Element::new("storage", LEGACY);
        for old in [extras, old_list].into_iter().flatten() {
            storage.children.extend(old.children);
        }
        storage.children.extend(self.legacy_conferences(user));
        match self.set_legacy_bookmarks(user, &storage) {
            Ok(()) if old_node => self.commit_pep(user, LEGACY, PepRecord::Deleted),
            Ok(()) => {}
            Err(condition) => log::warn!("{user}: old bookmarks not converted ({condition})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_fragment;

    #[test]
    fn an_old_conference_and_its_new_form_carry_the_same_room() {
        // XEP-0048 §3.2's example, and XEP-0402's form of it.
        let old = parse_fragment(
            "<storage xmlns='storage:bookmarks'>\
               <conference name='Council of Oberon' autojoin='1' jid='council@conference.underhill.org'>\
                 <nick>Puck</nick><password>titania</password></conference>\
               <url name='Complete Works' url='http://the-tech.mit.edu/Shakespeare/'/>\
               <conference name='no room' jid='not a jid@@'/>\
             </storage>",
        )
        .unwrap();
        let (items, extras) = split(&old, None);
        assert_eq!(items.len(), 1);
        let (room, c) = &items[0];
        assert_eq!(room, "council@conference.underhill.org");
        assert_eq!(
            c.to_xml(ns::CLIENT),
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Council of Oberon' autojoin='true'>\
             <nick>Puck</nick><password>titania</password></conference>"
        );
        assert_eq!(extras.len(), 2, "the URL and the bad conference are kept");
        let back = to_legacy(room, c);
        assert_eq!(back.get_attr("jid"), Some(room.as_str()));
        assert_eq!(back.get_attr("autojoin"), Some("true"));
        assert_eq!(
            back.get_child("nick", LEGACY).unwrap().text_content(),
            "Puck"
        );
    }

    #[test]
    fn extensions_the_old_form_cannot_carry_survive_its_write() {
        let mut node = PepNode::new(node_config());
        node.publish(PepItem {
            id: "r@c.example".into(),
            xml: "<conference xmlns='urn:xmpp:bookmarks:1' name='R'>\
                  <extensions><state xmlns='urn:xmpp:example'/></extensions></conference>"
                .into(),
            stamp_ms: 0,
        });
        let old = parse_fragment(
            "<storage xmlns='storage:bookmarks'><conference jid='r@c.example' name='Renamed'/></storage>",
        )
        .unwrap();
        let (items, _) = split(&old, Some(&node));
        let c = &items[0].1;
        assert_eq!(c.get_attr("name"), Some("Renamed"));
        assert!(c.get_child("extensions", NODE).is_some());
    }
}
