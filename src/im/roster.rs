//! Roster management (RFC 6121 §2): get with versioning, set, remove, pushes.

use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::stanza;
use crate::state::{Record, RosterItem};
use crate::xml::{ns, Element};

const MAX_NAME_BYTES: usize = 1023;
/// Groups one roster item may be in.
const MAX_GROUPS: usize = 32;

/// What a roster item costs, for the bound on a roster's bytes.
fn item_bytes(contact: &str, item: &RosterItem) -> usize {
    contact.len()
        + item.name.as_ref().map_or(0, String::len)
        + item.groups.iter().map(|g| g.len() + 16).sum::<usize>()
        + 64
}

/// The roster has no room for a change (items or bytes).
#[derive(Debug)]
pub(crate) struct RosterFull;

impl Ctx<'_> {
    /// Change one roster item of `user` durably and push it to interested
    /// resources. Every path that adds to a roster goes through here, so the
    /// bounds (items and bytes per account) hold on all of them.
    pub(crate) fn update_item(
        &mut self,
        user: &str,
        contact: &str,
        change: impl FnOnce(&mut RosterItem),
    ) -> Result<(), RosterFull> {
        let Some(acc) = self.accounts.get(user) else {
            return Ok(());
        };
        let before = acc.roster.get(contact).cloned();
        let mut item = before.clone().unwrap_or_default();
        change(&mut item);
        if before.as_ref() == Some(&item) {
            return Ok(());
        }
        let empty = !item.visible
            && !item.pending_in
            && !item.ask_out
            && item.subscription == Default::default();
        if !empty {
            let old = before.as_ref().map_or(0, |b| item_bytes(contact, b));
            let bytes: usize = acc.roster.iter().map(|(c, i)| item_bytes(c, i)).sum();
            let too_many = before.is_none() && acc.roster.len() >= self.cfg.roster_limit;
            if too_many || bytes - old + item_bytes(contact, &item) > self.cfg.roster_bytes {
                return Err(RosterFull);
            }
        }
        let was_visible = before.as_ref().is_some_and(|i| i.visible);
        if empty {
            if before.is_some() {
                self.commit(Record::RosterDel {
                    user: user.to_string(),
                    contact: contact.to_string(),
                });
            }
        } else {
            self.commit(Record::RosterSet {
                user: user.to_string(),
                contact: contact.to_string(),
                item: item.clone(),
            });
        }
        if item.visible || was_visible {
            let shown = (item.visible && !empty).then_some(&item);
            self.roster_push(user, contact, shown.cloned());
        }
        Ok(())
    }

    /// Push the item as it is now (a change outside it: its pre-approval).
    pub(crate) fn push_item(&mut self, user: &str, contact: &str) {
        let item = self
            .accounts
            .get(user)
            .and_then(|a| a.roster.get(contact))
            .cloned();
        self.roster_push(user, contact, item.filter(|i| i.visible));
    }

    fn roster_push(&mut self, user: &str, contact: &str, item: Option<RosterItem>) {
        let acc = &self.accounts[user];
        let ver = acc.roster_ver.to_string();
        let approved = acc.preapproved.contains(contact);
        let query = Element::new("query", ns::ROSTER)
            .attr("ver", ver)
            .child(item_element(contact, item.as_ref(), approved));
        for c in self.bound.conns_of(user) {
            let Some(s) = self.bound.resources.get(&c).filter(|s| s.roster_requested) else {
                continue;
            };
            let to = s.jid.to_string();
            let id = self.next_push_id();
            let push = Element::new("iq", ns::CLIENT)
                .attr("type", "set")
                .attr("id", id)
                .attr("to", to)
                .child(query.clone());
            self.send_el(c, &push);
        }
    }

    pub(crate) fn on_roster_iq(&mut self, conn: ConnId, iq: &Element, query: &Element) {
        let Some(me) = self.bound.jid_of(conn).map(|j| j.to_bare().to_string()) else {
            return;
        };
        let Some(user) = self.bound.user_of(conn) else {
            return;
        };
        if iq.get_attr("type") == Some("get") {
            if let Some(s) = self.bound.resources.get_mut(&conn) {
                s.roster_requested = true;
            }
            let acc = &self.accounts[&user];
            let ver = acc.roster_ver.to_string();
            let payload = if query.get_attr("ver") == Some(ver.as_str()) {
                None // The client's copy is current; changes arrive as pushes.
            } else {
                let mut q = Element::new("query", ns::ROSTER).attr("ver", ver);
                for (contact, item) in acc.roster.iter().filter(|(_, i)| i.visible) {
                    let approved = acc.preapproved.contains(contact);
                    q = q.child(item_element(contact, Some(item), approved));
                }
                Some(q)
            };
            let mut reply = stanza::iq_result(iq, &me, payload);
            reply.remove_attr("from");
            // Up to `roster_bytes`: paced like other large deliveries.
            let bytes = reply.to_xml(ns::CLIENT).into_bytes();
            return self.send_paced(conn, bytes, None);
        }
        let items: Vec<&Element> = query
            .elements()
            .filter(|e| e.is("item", ns::ROSTER))
            .collect();
        if items.len() != 1 {
            return self.bounce_from_account(conn, iq, "bad-request");
        }
        let item = items[0];
        let Some(contact) = item
            .get_attr("jid")
            .and_then(|j| Jid::parse(j).ok())
            .map(|j| j.to_bare())
        else {
            return self.bounce_from_account(conn, iq, "bad-request");
        };
        let key = contact.to_string();
        if item.get_attr("subscription") == Some("remove") {
            let Some(existing) = self.accounts[&user].roster.get(&key).cloned() else {
                return self.bounce_from_account(conn, iq, "item-not-found");
            };
            if existing.subscription.has_to() || existing.ask_out {
                self.contact_side_unsubscribe(&user, &contact);
            }
            if existing.subscription.has_from() || existing.pending_in {
                self.contact_side_unsubscribed(&user, &contact);
            }
            // Emptying an item never needs room.
            let _ = self.update_item(&user, &key, |i| *i = RosterItem::default());
        } else {
            let name = item
                .get_attr("name")
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            let mut groups: Vec<String> = Vec::new();
            for g in item.elements().filter(|e| e.is("group", ns::ROSTER)) {
                let g = g.text_content();
                if g.is_empty() || g.len() > MAX_NAME_BYTES || groups.len() >= MAX_GROUPS {
                    return self.bounce_from_account(conn, iq, "not-acceptable");
                }
                if groups.contains(&g) {
                    return self.bounce_from_account(conn, iq, "bad-request");
                }
                groups.push(g);
            }
            if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
                return self.bounce_from_account(conn, iq, "not-acceptable");
            }
            let updated = self.update_item(&user, &key, |i| {
                i.name = name;
                i.groups = groups;
                i.visible = true;
            });
            if updated.is_err() {
                return self.bounce_from_account(conn, iq, "resource-constraint");
            }
        }
        let mut reply = stanza::iq_result(iq, &me, None);
        reply.remove_attr("from");
        self.send_el(conn, &reply);
    }

    fn bounce_from_account(&mut self, conn: ConnId, iq: &Element, condition: &str) {
        let mut req = iq.clone();
        req.remove_attr("to");
        let Some(me) = self.bound.jid_of(conn).map(|j| j.to_bare().to_string()) else {
            return;
        };
        if let Some(mut r) =
            stanza::error_reply(&req, condition, stanza::error_type_for(condition), &me)
        {
            r.remove_attr("from");
            self.send_el(conn, &r);
        }
    }
}

fn item_element(contact: &str, item: Option<&RosterItem>, approved: bool) -> Element {
    let mut el = Element::new("item", ns::ROSTER).attr("jid", contact);
    match item {
        None => el.set_attr("subscription", "remove"),
        Some(i) => {
            if let Some(n) = &i.name {
                el.set_attr("name", n.clone());
            }
            el.set_attr("subscription", i.subscription.as_str());
            if i.ask_out {
                el.set_attr("ask", "subscribe");
            }
            if approved {
                el.set_attr("approved", "true");
            }
            for g in &i.groups {
                el = el.child(Element::new("group", ns::ROSTER).text(g.clone()));
            }
        }
    }
    el
}
