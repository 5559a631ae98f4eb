//! Blocking (XEP-0191) with abuse reports (XEP-0377): an account's
//! blocklist, its pushes to the sessions that fetched it, and what a block
//! means: nothing from a blocked address reaches the user (an iq gets
//! `<service-unavailable/>`), nothing the user sends reaches it (the user
//! is told `<not-acceptable/>` with `<blocked/>`), and presence stops both
//! ways. A report that comes with a block is kept for the operator.

use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::stanza;
use crate::state::{AbuseReport, Account, Record};
use crate::xml::{ns, Element, Node as XmlNode};

pub const NS: &str = "urn:xmpp:blocking";
pub const NS_ERRORS: &str = "urn:xmpp:blocking:errors";
pub const NS_REPORTING: &str = "urn:xmpp:reporting:1";
/// Addresses one account may block.
pub const BLOCKLIST_MAX: usize = 1000;
/// Reports kept per account (the oldest go), and the text of each.
pub const REPORTS_MAX: usize = 100;
pub const REPORT_TEXT_MAX: usize = 1024;

/// Whether `acc` blocks `jid`: its full JID, bare JID, domain or
/// domain/resource is on the list (XEP-0191 §3.5 by way of XEP-0016).
pub fn blocks(acc: &Account, jid: &Jid) -> bool {
    if acc.blocked.is_empty() {
        return false;
    }
    let mut forms = vec![
        jid.to_string(),
        jid.to_bare().to_string(),
        jid.domain().to_string(),
    ];
    if let Some(r) = jid.resource() {
        forms.push(format!("{}/{r}", jid.domain()));
    }
    forms.iter().any(|f| acc.blocked.contains(f))
}

impl Ctx<'_> {
    /// A blocking command from `conn` for its own account.
    pub(crate) fn on_blocking_iq(
        &mut self,
        conn: ConnId,
        el: &Element,
        payload: &Element,
        set: bool,
    ) {
        let Some(me) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        let Some(user) = me.local().map(str::to_string) else {
            return;
        };
        let from = me.to_bare().to_string();
        match (payload.name.as_str(), set) {
            ("blocklist", false) => {
                if let Some(r) = self.bound.resources.get_mut(&conn) {
                    r.blocklist_requested = true;
                }
                let mut list = Element::new("blocklist", NS);
                for jid in &self.accounts[&user].blocked {
                    list = list.child(Element::new("item", NS).attr("jid", jid.clone()));
                }
                let reply = stanza::iq_result(el, &from, Some(list));
                self.send_paced(conn, reply.to_xml(ns::CLIENT).into_bytes(), None);
            }
            ("block" | "unblock", true) => {
                let block = payload.name == "block";
                let mut jids = Vec::new();
                for item in payload.elements().filter(|i| i.is("item", NS)) {
                    match item.get_attr("jid").map(Jid::parse) {
                        Some(Ok(j)) => {
                            jids.push((j.to_string(), item.get_child("report", NS_REPORTING)))
                        }
                        _ => return self.bounce(conn, el, "jid-malformed"),
                    }
                }
                if block && jids.is_empty() {
                    return self.bounce(conn, el, "bad-request");
                }
                let acc = &self.accounts[&user];
                let new = jids
                    .iter()
                    .filter(|(j, _)| !acc.blocked.contains(j))
                    .count();
                if block && acc.blocked.len() + new > BLOCKLIST_MAX {
                    return self.bounce_explained(
                        conn,
                        el,
                        "resource-constraint",
                        "the blocklist is full",
                    );
                }
                // A report comes with a new block only, one per address.
                let mut reported = std::collections::BTreeSet::new();
                let reports: Vec<AbuseReport> = jids
                    .iter()
                    .filter(|(j, _)| {
                        block && !acc.blocked.contains(j) && reported.insert(j.clone())
                    })
                    .filter_map(|(jid, report)| {
                        Some(report_of(jid, report.as_ref()?, self.now.unix_ms))
                    })
                    .collect();
                let list: Vec<String> = jids.into_iter().map(|(j, _)| j).collect();
                let before: Vec<String> = self.accounts[&user].blocked.iter().cloned().collect();
                self.commit(Record::Blocklist {
                    user: user.clone(),
                    jids: list.clone(),
                    blocked: block,
                });
                for report in reports {
                    log::warn!(
                        "abuse report from {user} about {}: {} {:?}",
                        report.jid,
                        report.reason.escape_debug(),
                        report.text
                    );
                    self.commit(Record::AbuseReported {
                        user: user.clone(),
                        report,
                    });
                }
                self.send_el(conn, &stanza::iq_result(el, &from, None));
                // Unblocking everything names nobody (so does its push), and
                // changes presence for all that were.
                self.push_blocklist(&user, payload.name.as_str(), &list);
                let changed = if !block && list.is_empty() {
                    before
                } else {
                    list
                };
                self.presence_after_block(&user, &changed, block);
            }
            _ => self.bounce(conn, el, "bad-request"),
        }
    }

    /// The change goes to the sessions that fetched the blocklist.
    fn push_blocklist(&mut self, user: &str, what: &str, jids: &[String]) {
        let mut change = Element::new(what, NS);
        for jid in jids {
            change = change.child(Element::new("item", NS).attr("jid", jid.clone()));
        }
        for c in self.bound.conns_of(user) {
            let Some(to) = self
                .bound
                .resources
                .get(&c)
                .filter(|r| r.blocklist_requested)
                .map(|r| r.jid.to_string())
            else {
                continue;
            };
            let push = Element::new("iq", ns::CLIENT)
                .attr("type", "set")
                .attr("id", self.next_push_id())
                .attr("to", to)
                .child(change.clone());
            self.send_el(c, &push);
        }
    }

    /// What a block changes in presence, both ways, for those who saw it:
    /// a contact subscribed to the user's presence sees the user go (and
    /// the user, subscribed to the contact's, sees the contact go); an
    /// unblock shows them again, unless another entry still blocks.
    fn presence_after_block(&mut self, user: &str, jids: &[String], block: bool) {
        let mine: Vec<(ConnId, Jid)> = self
            .bound
            .available_conns(user)
            .into_iter()
            .filter_map(|c| Some((c, self.bound.jid_of(c)?.clone())))
            .collect();
        for target in jids.iter().filter_map(|j| Jid::parse(j).ok()) {
            if target.domain() != self.cfg.domain && self.routes.reaches(target.domain()) {
                self.presence_after_remote_block(user, &target, block);
                continue;
            }
            let Some(contact) = self.local_account(&target) else {
                continue;
            };
            let item = self.accounts[user]
                .roster
                .get(&target.to_bare().to_string());
            let they_see_me = item.is_some_and(|i| i.subscription.has_from());
            let i_see_them = item.is_some_and(|i| i.subscription.has_to());
            for c in self.bound.available_conns(&contact) {
                let Some(their) = self.bound.jid_of(c).cloned() else {
                    continue;
                };
                if target.resource().is_some() && their != target {
                    continue; // A full JID names one session.
                }
                for (mine_c, my_jid) in &mine {
                    let still_blocked = !block
                        && (blocks(&self.accounts[user], &their)
                            || blocks(&self.accounts[&contact], my_jid));
                    if still_blocked {
                        continue;
                    }
                    if they_see_me {
                        let p = self.presence_for(*mine_c, my_jid, &their, block);
                        self.send_el(c, &p);
                    }
                    if i_see_them {
                        let p = self.presence_for(c, &their, my_jid, block);
                        self.send_el(*mine_c, &p);
                    }
                }
            }
        }
    }

    /// A block of `target` at another node: it sees the user go (and the
    /// user sees it go), or, unblocked, come back. The user's presence is
    /// said again to its node, with whom not to show it to.
    fn presence_after_remote_block(&mut self, user: &str, target: &Jid, block: bool) {
        let key = target.to_bare().to_string();
        let item = self.accounts[user].roster.get(&key).cloned();
        let they_see_me = item.as_ref().is_some_and(|i| i.subscription.has_from());
        let i_see_them = item.as_ref().is_some_and(|i| i.subscription.has_to());
        if they_see_me {
            if block {
                for (_, p) in self.bound.available_presences(user) {
                    let gone = Element::new("presence", ns::CLIENT)
                        .attr("type", "unavailable")
                        .attr("from", p.get_attr("from").unwrap_or_default())
                        .attr("to", key.clone());
                    self.send_remote(target, gone, true);
                }
            }
            self.say_presence_of(user, target.domain());
        }
        if i_see_them {
            let conns = self.bound.available_conns(user);
            let me = self.user_jid(user);
            for (full, presence) in self.remote_presence_of(&target.to_bare()) {
                let mut p = match block {
                    true => Element::new("presence", ns::CLIENT).attr("type", "unavailable"),
                    false => super::remote_presence::without_hidden(&presence),
                };
                p.set_attr("from", full.to_string());
                p.set_attr("to", me.clone());
                self.deliver(&conns, &p);
            }
        }
    }

    /// The presence of the session `conn` (`from`) for `to`: unavailable
    /// when blocking, else the one it shows.
    fn presence_for(&self, conn: ConnId, from: &Jid, to: &Jid, unavailable: bool) -> Element {
        let shown = self
            .bound
            .resources
            .get(&conn)
            .and_then(|r| r.presence.clone());
        let mut p = match (unavailable, shown) {
            (false, Some(p)) => p,
            _ => Element::new("presence", ns::CLIENT).attr("type", "unavailable"),
        };
        p.set_attr("from", from.to_string());
        p.set_attr("to", to.to_string());
        p
    }

    /// A stanza from the session `conn` to `to`: false (and answered or
    /// dropped) if either side blocks the other.
    pub(crate) fn passes_blocking(&mut self, conn: ConnId, el: &Element, to: &Jid) -> bool {
        let Some(from) = self.requester(conn, el) else {
            return true;
        };
        // The server and the account itself are never blocked for it.
        let own = to.domain() == self.cfg.domain
            && (to.local().is_none() || to.to_bare() == from.to_bare());
        let sender_blocks = !own
            && self
                .local_account(&from)
                .and_then(|u| self.accounts.get(&u))
                .is_some_and(|acc| blocks(acc, to));
        if sender_blocks {
            if el.name != "presence" {
                self.refuse_blocked(conn, el);
            }
            return false;
        }
        let recipient_blocks = self
            .local_account(to)
            .and_then(|u| self.accounts.get(&u))
            .is_some_and(|acc| blocks(acc, &from));
        if recipient_blocks {
            // Nothing is said of the block (XEP-0191 §3.4): messages and
            // requests are unavailable, presence vanishes.
            let request = el.name == "iq" && matches!(el.get_attr("type"), Some("get" | "set"));
            if request || el.name == "message" {
                self.bounce(conn, el, "service-unavailable");
            }
            return false;
        }
        true
    }

    fn refuse_blocked(&mut self, conn: ConnId, el: &Element) {
        let from = el.get_attr("to").unwrap_or(&self.cfg.domain).to_string();
        let Some(mut reply) = stanza::error_reply(el, "not-acceptable", "cancel", &from) else {
            return;
        };
        if let Some(XmlNode::Element(error)) = reply.children.last_mut() {
            error
                .children
                .push(XmlNode::Element(Element::new("blocked", NS_ERRORS)));
        }
        self.send_el(conn, &reply);
    }

    /// Whether the accounts `a` and `b` (localparts) block each other either way.
    pub(crate) fn blocked_between(&self, a: &str, b: &str) -> bool {
        let jid = |u: &str| Jid::parse(&format!("{u}@{}", self.cfg.domain)).ok();
        let (Some(ja), Some(jb)) = (jid(a), jid(b)) else {
            return false;
        };
        self.accounts.get(a).is_some_and(|acc| blocks(acc, &jb))
            || self.accounts.get(b).is_some_and(|acc| blocks(acc, &ja))
    }
}

fn report_of(jid: &str, report: &Element, now_ms: u64) -> AbuseReport {
    let reason = report
        .get_attr("reason")
        .unwrap_or("urn:xmpp:reporting:abuse")
        .chars()
        .take(128)
        .collect();
    let text: String = report
        .get_child("text", NS_REPORTING)
        .map(|t| t.text_content())
        .unwrap_or_default();
    let mut end = text.len().min(REPORT_TEXT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    AbuseReport {
        jid: jid.to_string(),
        reason,
        text: text[..end].to_string(),
        stamp_ms: now_ms,
    }
}
