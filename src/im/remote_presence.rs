//! Presence and subscriptions with users at other nodes (RFC 6121 across
//! the links). Each node keeps its own users' side of a subscription:
//! requests and answers cross durably, so a pending request survives a
//! split and a restart. A presence change crosses once per node that has
//! subscribers, addressed to that node's domain; the node it reaches
//! hands it to its users whose rosters say they see the sender, and keeps
//! the last one (`RemotePresence`), so probes are answered locally and
//! only changes reach clients. Broadcasts are unnumbered: after a split
//! or a restart each side says its users' presence again (on hello) and
//! asks the other for theirs (a probe from its domain).

use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::xml::{ns, Element};
use std::collections::{BTreeMap, BTreeSet};

/// Presences of users at other nodes kept at most, and their bytes.
pub const REMOTE_PRESENCES_MAX: usize = 10_000;
pub const REMOTE_PRESENCE_BYTES: usize = 4 * 1024 * 1024;
/// Sessions of one user, and presences of one domain, kept at most: one
/// peer cannot crowd the others out.
pub const REMOTE_SESSIONS_PER_USER: usize = 16;
pub const REMOTE_PRESENCES_PER_DOMAIN: usize = 2_000;

/// The last presence of each available session of users at other nodes
/// that a local user sees, by full JID.
#[derive(Debug, Default)]
pub struct RemotePresence {
    by_jid: BTreeMap<Jid, Element>,
    bytes: usize,
    /// Per domain, the sessions kept when we last asked it for its users'
    /// presence and not said again since: gone, once it says it is done.
    unconfirmed: BTreeMap<String, BTreeSet<Jid>>,
}

/// What one node tells another of its own presences: who, among the
/// receiving node's users, must not be shown one (the sender blocks
/// them), and that it has said all of its users' presence.
pub const NS_NETWORK: &str = "urn:xmpp:outpost:network:0";

/// `el` with the list of those not to be shown it (bare JIDs).
fn with_hidden(mut el: Element, hidden: &[String]) -> Element {
    el = without_hidden(&el);
    if hidden.is_empty() {
        return el;
    }
    let mut list = Element::new("hidden", NS_NETWORK);
    for j in hidden {
        list = list.child(Element::new("item", NS_NETWORK).attr("jid", j.clone()));
    }
    el.child(list)
}

pub(super) fn hidden_from(el: &Element) -> BTreeSet<String> {
    el.get_child("hidden", NS_NETWORK)
        .map(|h| {
            h.elements()
                .filter_map(|i| i.get_attr("jid"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn without_hidden(el: &Element) -> Element {
    let mut el = el.clone();
    el.children
        .retain(|c| !matches!(c, crate::xml::Node::Element(e) if e.ns == NS_NETWORK));
    el
}

impl RemotePresence {
    fn size(el: &Element) -> usize {
        el.to_xml(ns::CLIENT).len()
    }

    /// Keep `el` as `jid`'s presence; false if it is what was kept.
    fn set(&mut self, jid: &Jid, el: &Element) -> bool {
        let mut el = el.clone();
        el.remove_attr("to");
        let el = &el;
        if self.by_jid.get(jid) == Some(el) {
            return false;
        }
        self.remove(jid);
        let size = Self::size(el);
        let bare = jid.to_bare();
        let of_user = self.by_jid.keys().filter(|j| j.to_bare() == bare).count();
        let of_domain = self.of_domain(jid.domain()).len();
        if self.by_jid.len() < REMOTE_PRESENCES_MAX
            && self.bytes + size <= REMOTE_PRESENCE_BYTES
            && of_user < REMOTE_SESSIONS_PER_USER
            && of_domain < REMOTE_PRESENCES_PER_DOMAIN
        {
            self.bytes += size;
            self.by_jid.insert(jid.clone(), el.clone());
        } else {
            log::warn!("remote presence: past its bounds; {jid} is not kept");
        }
        true
    }

    /// Forget `jid`; true if it was kept.
    fn remove(&mut self, jid: &Jid) -> bool {
        match self.by_jid.remove(jid) {
            Some(el) => {
                self.bytes -= Self::size(&el);
                true
            }
            None => false,
        }
    }

    fn of_bare(&self, bare: &Jid) -> Vec<(Jid, Element)> {
        self.by_jid
            .iter()
            .filter(|(j, _)| j.to_bare() == *bare)
            .map(|(j, e)| (j.clone(), e.clone()))
            .collect()
    }

    /// We ask `domain` for its users' presence: what we keep of it waits
    /// to be said again.
    fn asking(&mut self, domain: &str) {
        let kept = self.of_domain(domain).into_iter().collect();
        self.unconfirmed.insert(domain.to_string(), kept);
    }

    fn confirmed(&mut self, jid: &Jid) {
        if let Some(set) = self.unconfirmed.get_mut(jid.domain()) {
            set.remove(jid);
        }
    }

    /// `domain` said all it has: what it did not say again is gone.
    fn unconfirmed_of(&mut self, domain: &str) -> Vec<Jid> {
        self.unconfirmed
            .remove(domain)
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    fn of_domain(&self, domain: &str) -> Vec<Jid> {
        self.by_jid
            .keys()
            .filter(|j| j.domain() == domain)
            .cloned()
            .collect()
    }
}

impl Ctx<'_> {
    /// The other nodes' domains where `user` has subscribers.
    pub(super) fn remote_audience(&self, user: &str) -> BTreeSet<String> {
        let Some(acc) = self.accounts.get(user) else {
            return BTreeSet::new();
        };
        acc.roster
            .iter()
            .filter(|(_, i)| i.subscription.has_from())
            .filter_map(|(c, _)| Jid::parse(c).ok())
            .map(|j| j.domain().to_string())
            .filter(|d| *d != self.cfg.domain && self.routes.reaches(d))
            .collect()
    }

    /// `presence` (from a full JID of `user`) to each other node where
    /// `user` has subscribers: one copy a node.
    pub(super) fn broadcast_remote(&mut self, user: &str, presence: &Element) {
        for domain in self.remote_audience(user) {
            let Ok(to) = Jid::parse(&domain) else {
                continue;
            };
            let Some(hidden) = self.hidden_at(user, &domain) else {
                continue;
            };
            let mut p = with_hidden(presence.clone(), &hidden);
            p.set_attr("to", domain);
            self.send_remote(&to, p, true);
        }
    }

    /// Those at `domain` that `user` blocks, not to be shown what is sent
    /// there once for all (XEP-0191 across the links); none at all if the
    /// whole domain is blocked.
    pub(super) fn hidden_at(&self, user: &str, domain: &str) -> Option<Vec<String>> {
        let acc = self.accounts.get(user)?;
        let whole = Jid::parse(domain).is_ok_and(|d| super::blocking::blocks(acc, &d));
        if whole {
            return None;
        }
        if acc.blocked.is_empty() {
            return Some(Vec::new());
        }
        let hidden = acc
            .roster
            .keys()
            .filter_map(|c| Jid::parse(c).ok())
            .filter(|c| c.domain() == domain && super::blocking::blocks(acc, c))
            .map(|c| c.to_string())
            .collect();
        Some(hidden)
    }

    /// Every available session's presence of users with subscribers at
    /// `domain`, to it: after a split or a restart, or asked (a probe).
    pub(crate) fn say_presence_to(&mut self, domain: &str) {
        let Ok(to) = Jid::parse(domain) else {
            return;
        };
        let users: Vec<String> = self
            .accounts
            .keys()
            .filter(|u| self.remote_audience(u).contains(domain))
            .cloned()
            .collect();
        for user in users {
            self.say_presence_of(&user, domain);
        }
        // All said: what the other node kept of ours and did not hear
        // again is gone.
        let done = Element::new("presence", ns::CLIENT)
            .attr("from", self.cfg.domain.clone())
            .attr("to", domain)
            .child(Element::new("synced", NS_NETWORK));
        self.send_remote(&to, done, true);
    }

    /// `user`'s available sessions' presence to `domain`.
    pub(super) fn say_presence_of(&mut self, user: &str, domain: &str) {
        let (Ok(to), Some(hidden)) = (Jid::parse(domain), self.hidden_at(user, domain)) else {
            return;
        };
        for (_, p) in self.bound.available_presences(user) {
            let mut p = with_hidden(p, &hidden);
            p.set_attr("to", domain);
            self.send_remote(&to, p, true);
        }
    }

    /// Ask `domain` for its users' presence (after a split or a restart).
    pub(crate) fn probe_domain(&mut self, domain: &str) {
        let Ok(to) = Jid::parse(domain) else {
            return;
        };
        let probe = Element::new("presence", ns::CLIENT)
            .attr("type", "probe")
            .attr("from", self.cfg.domain.clone())
            .attr("to", domain);
        self.remote_presence.asking(domain);
        self.send_remote(&to, probe, true);
    }

    /// The link to `domain` is gone past its grace period: its users go
    /// unavailable to the local users who saw them.
    pub(crate) fn remote_domain_gone(&mut self, domain: &str) {
        for jid in self.remote_presence.of_domain(domain) {
            let gone = Element::new("presence", ns::CLIENT)
                .attr("type", "unavailable")
                .attr("from", jid.to_string());
            self.remote_presence.remove(&jid);
            self.hand_out_remote_presence(&jid, &gone);
        }
    }

    /// A presence from over a link (its `from` and `to` checked).
    pub(super) fn presence_from_link(&mut self, el: Element, from: &Jid, to: &Jid) {
        let kind = el.get_attr("type").map(str::to_string);
        match (kind.as_deref(), to.local(), from.local()) {
            // A node asks for our users' presence, or says all of its
            // users are gone.
            (Some("probe"), None, None) => self.say_presence_to(from.domain()),
            (Some("unavailable"), None, None) => self.remote_domain_gone(from.domain()),
            (None, None, None) if el.has_child("synced", NS_NETWORK) => {
                for jid in self.remote_presence.unconfirmed_of(from.domain()) {
                    let gone = Element::new("presence", ns::CLIENT)
                        .attr("type", "unavailable")
                        .attr("from", jid.to_string());
                    self.remote_presence.remove(&jid);
                    self.hand_out_remote_presence(&jid, &gone);
                }
            }
            // A user's broadcast, for whoever here sees them.
            (None | Some("unavailable"), None, Some(_)) => {
                // Kept only for someone here who sees the sender: a peer
                // cannot fill the cache with users nobody follows.
                let bare = from.to_bare().to_string();
                let watched = self
                    .accounts
                    .values()
                    .any(|a| a.roster.get(&bare).is_some_and(|i| i.subscription.has_to()));
                if !watched {
                    return;
                }
                self.remote_presence.confirmed(from);
                let changed = match kind.as_deref() {
                    None => self.remote_presence.set(from, &el),
                    _ => self.remote_presence.remove(from),
                };
                if changed {
                    self.hand_out_remote_presence(from, &el);
                }
            }
            (
                Some(sub @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")),
                Some(_),
                Some(_),
            ) => match self.local_account(to) {
                Some(user) => self.remote_subscription(&user, &from.to_bare(), sub),
                // Nobody here by that name: it can never approve.
                None if sub == "subscribe" => {
                    let no = Element::new("presence", ns::CLIENT)
                        .attr("type", "unsubscribed")
                        .attr("from", to.to_bare().to_string())
                        .attr("to", from.to_bare().to_string());
                    self.send_remote(&from.to_bare(), no, false);
                }
                None => {}
            },
            // Probes are the servers' business, not the clients'.
            (Some("probe"), _, _) => {}
            // Directed presence, and errors, to a session or an account here.
            (_, Some(_), Some(_)) => {
                let targets = match to.resource() {
                    Some(_) => self.bound.conn_of_full(to).into_iter().collect(),
                    None => self
                        .local_account(to)
                        .map(|u| self.bound.available_conns(&u))
                        .unwrap_or_default(),
                };
                self.deliver(&targets, &el);
            }
            _ => {}
        }
    }

    /// `presence` of the user at another node `from`, to the available
    /// sessions of local users subscribed to them.
    fn hand_out_remote_presence(&mut self, from: &Jid, presence: &Element) {
        let bare = from.to_bare().to_string();
        let hidden = hidden_from(presence);
        let presence = without_hidden(presence);
        let watchers: Vec<String> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.roster.get(&bare).is_some_and(|i| i.subscription.has_to()))
            .filter(|(_, a)| !super::blocking::blocks(a, from))
            .map(|(u, _)| u.clone())
            .filter(|u| !hidden.contains(&self.user_jid(u)))
            .collect();
        for user in watchers {
            let to = self.user_jid(&user);
            let mut p = presence.clone();
            p.set_attr("from", from.to_string());
            p.set_attr("to", to);
            let conns = self.bound.available_conns(&user);
            self.deliver(&conns, &p);
        }
    }

    /// To a session just come online: the presence of the contacts at
    /// other nodes it sees, as last heard.
    pub(super) fn remote_presence_for(&mut self, conn: ConnId, user: &str) {
        let Some(me) = self.bound.jid_of(conn).map(Jid::to_string) else {
            return;
        };
        let contacts: Vec<Jid> = self.accounts[user]
            .roster
            .iter()
            .filter(|(_, i)| i.subscription.has_to())
            .filter_map(|(c, _)| Jid::parse(c).ok())
            .filter(|j| j.domain() != self.cfg.domain)
            .collect();
        let me_bare = self.user_jid(user);
        for contact in contacts {
            for (full, presence) in self.remote_presence.of_bare(&contact) {
                if super::blocking::blocks(&self.accounts[user], &full)
                    || hidden_from(&presence).contains(&me_bare)
                {
                    continue;
                }
                let mut p = without_hidden(&presence);
                p.set_attr("from", full.to_string());
                p.set_attr("to", me.clone());
                self.send_el(conn, &p);
            }
        }
    }

    /// A subscription presence between `user` here and `contact` at
    /// another node, sent from here (durably: it must not be lost).
    pub(super) fn send_subscription(&mut self, user: &str, contact: &Jid, kind: &str) {
        let el = Element::new("presence", ns::CLIENT)
            .attr("type", kind)
            .attr("from", self.user_jid(user))
            .attr("to", contact.to_string());
        self.send_remote(contact, el, false);
    }

    /// `user`'s available sessions' presence to `contact`'s node after an
    /// approval (as a broadcast: its node keeps it, and those who saw it
    /// already are not shown it again), or their going to `contact` alone
    /// after a cancel (`gone`).
    pub(super) fn share_presence_remote(&mut self, user: &str, contact: &Jid, gone: bool) {
        let to = match gone {
            true => contact.clone(),
            false => match Jid::parse(contact.domain()) {
                Ok(domain) => domain,
                Err(_) => return,
            },
        };
        for (_, presence) in self.bound.available_presences(user) {
            let mut p = match gone {
                true => Element::new("presence", ns::CLIENT)
                    .attr("type", "unavailable")
                    .attr("from", presence.get_attr("from").unwrap_or_default()),
                false => presence,
            };
            p.set_attr("to", to.to_string());
            self.send_remote(&to, p, true);
        }
    }

    /// The contact's side of a subscription: `contact` at another node
    /// asked, answered or cancelled, for the local `user`.
    fn remote_subscription(&mut self, user: &str, contact: &Jid, kind: &str) {
        let key = contact.to_string();
        let item = self.accounts[user].roster.get(&key).cloned();
        let contact_jid = key.clone();
        match kind {
            "subscribe" => {
                if item.as_ref().is_some_and(|i| i.subscription.has_from()) {
                    // Approved before: confirmed at once.
                    self.send_subscription(user, contact, "subscribed");
                    return self.share_presence_remote(user, contact, false);
                }
                if self.accounts[user].preapproved.contains(&key) {
                    let _ = self.approve_remote(user, contact);
                    return;
                }
                if self
                    .update_item(user, &key, |i| i.pending_in = true)
                    .is_err()
                {
                    // No room for one more request: refused, said so.
                    return self.send_subscription(user, contact, "unsubscribed");
                }
                self.notify(user, &contact_jid, "subscribe");
            }
            "subscribed" => {
                if !item.as_ref().is_some_and(|i| i.ask_out) {
                    return; // Not asked (or already granted): nothing changes.
                }
                let _ = self.update_item(user, &key, |i| {
                    i.ask_out = false;
                    i.subscription = i.subscription.with_to(true);
                    i.visible = true;
                });
                self.notify(user, &contact_jid, "subscribed");
                // Someone here followed the contact already: the kept
                // presence now (the contact's node says it again, and an
                // unchanged one is not handed out twice).
                let me_bare = self.user_jid(user);
                let conns = self.bound.available_conns(user);
                for (full, presence) in self.remote_presence.of_bare(contact) {
                    if hidden_from(&presence).contains(&me_bare) {
                        continue;
                    }
                    let mut p = without_hidden(&presence);
                    p.set_attr("from", full.to_string());
                    p.set_attr("to", me_bare.clone());
                    self.deliver(&conns, &p);
                }
            }
            "unsubscribe" => {
                if !item
                    .as_ref()
                    .is_some_and(|i| i.subscription.has_from() || i.pending_in)
                {
                    return;
                }
                let _ = self.update_item(user, &key, |i| {
                    i.subscription = i.subscription.with_from(false);
                    i.pending_in = false;
                });
                self.notify(user, &contact_jid, "unsubscribe");
            }
            _ => {
                if !item
                    .as_ref()
                    .is_some_and(|i| i.subscription.has_to() || i.ask_out)
                {
                    return;
                }
                let _ = self.update_item(user, &key, |i| {
                    i.subscription = i.subscription.with_to(false);
                    i.ask_out = false;
                });
                self.notify(user, &contact_jid, "unsubscribed");
                // What the user saw of the contact goes.
                let conns = self.bound.available_conns(user);
                for (full, _) in self.remote_presence.of_bare(contact) {
                    let gone = Element::new("presence", ns::CLIENT)
                        .attr("type", "unavailable")
                        .attr("from", full.to_string())
                        .attr("to", self.user_jid(user));
                    self.deliver(&conns, &gone);
                }
                self.forget_unfollowed(contact);
            }
        }
    }

    /// Forget what was kept of `contact` (at another node) once nobody
    /// here sees them: their node no longer tells us of changes.
    pub(super) fn forget_unfollowed(&mut self, contact: &Jid) {
        let bare = contact.to_bare().to_string();
        let followed = self
            .accounts
            .values()
            .any(|a| a.roster.get(&bare).is_some_and(|i| i.subscription.has_to()));
        if !followed {
            for (jid, _) in self.remote_presence.of_bare(contact) {
                self.remote_presence.remove(&jid);
            }
        }
    }

    /// The sessions of `contact` (at another node) last heard of.
    pub(super) fn remote_presence_of(&self, contact: &Jid) -> Vec<(Jid, Element)> {
        self.remote_presence.of_bare(contact)
    }

    /// `user` approves `contact` (at another node): recorded here, the
    /// contact's node told, and `user`'s presence shared with it.
    pub(super) fn approve_remote(&mut self, user: &str, contact: &Jid) -> Result<(), &'static str> {
        let key = contact.to_string();
        if self.accounts[user].preapproved.contains(&key) {
            self.commit(crate::state::Record::RosterPreapproved {
                user: user.to_string(),
                contact: key.clone(),
                on: false,
            });
        }
        self.update_item(user, &key, |i| {
            i.pending_in = false;
            i.subscription = i.subscription.with_from(true);
            i.visible = true;
        })
        .map_err(|_| "your roster is full")?;
        self.send_subscription(user, contact, "subscribed");
        self.share_presence_remote(user, contact, false);
        Ok(())
    }
}
