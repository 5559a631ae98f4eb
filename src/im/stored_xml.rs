//! XML an account keeps on its server for its clients: private XML
//! storage (XEP-0049: bookmarks of older clients, their settings) and its
//! vCard (XEP-0054 vcard-temp, which anyone may read). Both are items of
//! nodes of the account's PEP service that only the owner can see, so
//! they share its bounds, its records and its snapshots.

use super::{bookmarks, Ctx};
use crate::common::ConnId;
use crate::jid::Jid;
use crate::model::pep::{self, Access, PepConfig, PepItem, PepNode, PepRecord, SendLast};
use crate::stanza;
use crate::xml::{ns, Element};

pub const NS_PRIVATE: &str = "jabber:iq:private";
pub const NS_VCARD: &str = "vcard-temp";
/// The nodes that hold them: one item per namespace, and one vCard.
pub(super) const PRIVATE_NODE: &str = "jabber:iq:private";
const VCARD_NODE: &str = "vcard-temp";

fn owner_only(max_items: u32) -> PepConfig {
    PepConfig {
        access: Access::Whitelist,
        persist_items: true,
        max_items,
        send_last: SendLast::Never,
        notify_retract: false,
    }
}

impl Ctx<'_> {
    /// Private XML storage for the account of `conn`.
    pub(crate) fn on_private_iq(&mut self, conn: ConnId, el: &Element, query: &Element, set: bool) {
        let Some(user) = self.bound.user_of(conn) else {
            return;
        };
        let mut children = query.elements();
        let (Some(payload), None) = (children.next(), children.next()) else {
            // One element a query (XEP-0049 §3).
            return self.bounce_explained(conn, el, "not-acceptable", "one element a query");
        };
        if payload.ns == ns::CLIENT || payload.ns == NS_PRIVATE || payload.ns.is_empty() {
            return self.bounce(conn, el, "not-acceptable");
        }
        let key = format!("{{{}}}{}", payload.ns, payload.name);
        if payload.is("storage", bookmarks::LEGACY) {
            return self.on_private_bookmarks(conn, el, &user, payload, set);
        }
        if set {
            let item = PepItem {
                id: key,
                xml: payload.to_xml(ns::CLIENT),
                stamp_ms: self.now.unix_ms,
            };
            if let Err(condition) = self.store_item(&user, PRIVATE_NODE, pep::MAX_ITEMS, item) {
                return self.bounce(conn, el, condition);
            }
            return self.send_el(conn, &stanza::iq_result(el, &self.user_jid(&user), None));
        }
        let stored = self.accounts[&user]
            .pep
            .get(PRIVATE_NODE)
            .and_then(|n| n.items.iter().find(|i| i.id == key))
            .and_then(|i| crate::xml::parse_fragment(&i.xml).ok());
        // Nothing stored: the empty element asked for comes back.
        let answer = stored.unwrap_or_else(|| Element::new(&payload.name, &payload.ns));
        let reply = stanza::iq_result(
            el,
            &self.user_jid(&user),
            Some(Element::new("query", NS_PRIVATE).child(answer)),
        );
        self.send_paced(conn, reply.to_xml(ns::CLIENT).into_bytes(), None);
    }

    /// XEP-0048 bookmarks in private XML: the XEP-0402 ones, converted.
    fn on_private_bookmarks(
        &mut self,
        conn: ConnId,
        el: &Element,
        user: &str,
        storage: &Element,
        set: bool,
    ) {
        if set {
            if let Err(condition) = self.set_legacy_bookmarks(user, storage) {
                return self.bounce(conn, el, condition);
            }
            return self.send_el(conn, &stanza::iq_result(el, &self.user_jid(user), None));
        }
        let query = Element::new("query", NS_PRIVATE).child(self.legacy_bookmarks(user));
        let reply = stanza::iq_result(el, &self.user_jid(user), Some(query));
        self.send_paced(conn, reply.to_xml(ns::CLIENT).into_bytes(), None);
    }

    /// vcard-temp: set by the owner, read by anyone (`owner`: whose).
    pub(crate) fn on_vcard_iq(
        &mut self,
        conn: ConnId,
        el: &Element,
        vcard: &Element,
        set: bool,
        owner: &Jid,
    ) {
        let Some(user) = self.local_account(owner) else {
            return self.bounce(conn, el, "item-not-found");
        };
        let own = self.bound.user_of(conn).as_deref() == Some(user.as_str());
        let from = owner.to_bare().to_string();
        if set {
            if !own {
                return self.bounce(conn, el, "forbidden");
            }
            let stored = self.accounts[&user]
                .pep
                .get(VCARD_NODE)
                .and_then(PepNode::last)
                .map_or(0, |i| i.xml.len());
            let card = match self.vcard_photo_to_pep(&user, vcard, stored) {
                Ok(card) => card,
                Err(condition) => return self.bounce(conn, el, condition),
            };
            let item = PepItem {
                id: "current".into(),
                xml: card.to_xml(ns::CLIENT),
                stamp_ms: self.now.unix_ms,
            };
            if let Err(condition) = self.store_item(&user, VCARD_NODE, 1, item) {
                return self.bounce(conn, el, condition);
            }
            return self.send_el(conn, &stanza::iq_result(el, &from, None));
        }
        let Some(reader) = self.requester(conn, el) else {
            return;
        };
        // XEP-0054 §3.1: an account without one gets an empty vCard.
        let stored = self.accounts[&user]
            .pep
            .get(VCARD_NODE)
            .and_then(PepNode::last)
            .and_then(|i| crate::xml::parse_fragment(&i.xml).ok())
            .unwrap_or_else(|| Element::new("vCard", NS_VCARD));
        let card = self.vcard_with_avatar(&user, &reader, stored);
        let reply = stanza::iq_result(el, &from, Some(card));
        self.send_paced(conn, reply.to_xml(ns::CLIENT).into_bytes(), None);
    }

    /// Keep `item` in the owner-only node `node` of `user`, within the
    /// PEP bounds; the condition to answer with if it does not fit.
    pub(super) fn store_item(
        &mut self,
        user: &str,
        node: &str,
        max_items: u32,
        item: PepItem,
    ) -> Result<(), &'static str> {
        let acc = &self.accounts[user];
        let existing = acc.pep.get(node);
        if existing.is_none() && acc.pep.len() >= pep::NODES_PER_ACCOUNT {
            return Err("resource-constraint");
        }
        let config = existing.map_or_else(|| owner_only(max_items), |n| n.config.clone());
        let full = existing.is_some_and(|n| {
            n.items.len() >= config.max_items as usize && n.items.iter().all(|i| i.id != item.id)
        });
        if full {
            return Err("resource-constraint"); // Never one dropped for another.
        }
        if !self.pep_fits(user, node, &config, &item) {
            return Err("resource-constraint");
        }
        if existing.is_none() {
            self.commit_pep(user, node, PepRecord::Configured { config });
        }
        self.commit_pep(user, node, PepRecord::Published { item });
        Ok(())
    }
}
