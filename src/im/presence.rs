//! Presence (RFC 6121 §3, §4): subscriptions between local users, broadcast,
//! probes answered from live sessions, directed presence.

use super::{Ctx, ImOutput};
use crate::common::ConnId;
use crate::jid::Jid;
use crate::state::{Record, RosterItem};
use crate::xml::{ns, Element};

impl Ctx<'_> {
    pub(crate) fn on_presence(&mut self, conn: ConnId, el: Element, to: Option<Jid>) {
        let ptype = el.get_attr("type").map(str::to_string);
        match (ptype.as_deref(), to) {
            (None | Some("unavailable"), None) => self.broadcast_presence(conn, el),
            (None | Some("unavailable"), Some(to)) => self.directed_presence(conn, el, &to),
            (
                Some(kind @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")),
                Some(to),
            ) => {
                let Some(user) = self.bound.user_of(conn) else {
                    return;
                };
                let reachable = to.domain() == self.cfg.domain || self.routes.reaches(to.domain());
                if !reachable || to.local().is_none() {
                    return self.bounce(conn, &el, "remote-server-not-found");
                }
                let contact = to.to_bare();
                // Clearing flags never needs room in a roster, so only a
                // subscription request can meet a full one.
                match kind {
                    "subscribe" => {
                        if let Err(why) = self.subscribe(&user, &contact) {
                            self.bounce_explained(conn, &el, "resource-constraint", why);
                        }
                    }
                    "subscribed" => {
                        if let Err(why) = self.approve(&user, &contact) {
                            self.bounce_explained(conn, &el, "resource-constraint", why);
                        }
                    }
                    "unsubscribe" => {
                        let _ = self.update_item(&user, &contact.to_string(), |i| {
                            i.subscription = i.subscription.with_to(false);
                            i.ask_out = false;
                        });
                        self.contact_side_unsubscribe(&user, &contact);
                    }
                    _ => {
                        // Also withdraws a pre-approval (RFC 6121 §3.4).
                        self.set_preapproved(&user, &contact.to_string(), false);
                        let _ = self.update_item(&user, &contact.to_string(), |i| {
                            i.subscription = i.subscription.with_from(false);
                            i.pending_in = false;
                        });
                        self.contact_side_unsubscribed(&user, &contact);
                    }
                }
            }
            (Some("probe"), _) => {} // Probes are the server's business; clients need not send them.
            (Some("error"), Some(to)) => {
                if let Some(c) = self.bound.conn_of_full(&to) {
                    self.send_el(c, &el);
                }
            }
            _ => self.bounce(conn, &el, "bad-request"),
        }
    }

    pub(super) fn user_jid(&self, user: &str) -> String {
        format!("{user}@{}", self.cfg.domain)
    }

    fn roster_item(&self, user: &str, contact: &str) -> Option<RosterItem> {
        self.accounts.get(user)?.roster.get(contact).cloned()
    }

    /// Send a subscription-related presence from `from_user` to every available resource of `to_user`.
    pub(super) fn notify(&mut self, to_user: &str, from_user_jid: &str, ptype: &str) {
        let el = Element::new("presence", ns::CLIENT)
            .attr("from", from_user_jid)
            .attr("to", self.user_jid(to_user))
            .attr("type", ptype);
        let conns = self.bound.available_conns(to_user);
        for c in conns {
            self.send_el(c, &el);
        }
    }

    /// Send the current presence of each available resource of `from` to each available resource of `to`.
    fn share_presence(&mut self, from: &str, to: &str, unavailable: bool) {
        let targets = self.bound.available_conns(to);
        for src in self.bound.available_conns(from) {
            let Some((full, presence)) = self.bound.resources.get(&src).and_then(|r| r.available())
            else {
                continue;
            };
            let mut el = if unavailable {
                Element::new("presence", ns::CLIENT).attr("type", "unavailable")
            } else {
                presence.clone()
            };
            el.set_attr("from", full.to_string());
            for &t in &targets {
                let Some(to) = self.bound.jid_of(t).map(Jid::to_string) else {
                    continue;
                };
                let mut e = el.clone();
                e.set_attr("to", to);
                self.send_el(t, &e);
            }
        }
    }

    /// `user` asks to see `contact`'s presence. Refused (with why) if either
    /// roster has no room for it: the bounds hold for requests too.
    fn subscribe(&mut self, user: &str, contact: &Jid) -> Result<(), &'static str> {
        let contact_key = contact.to_string();
        let already = self
            .roster_item(user, &contact_key)
            .is_some_and(|i| i.subscription.has_to());
        if !already {
            let asked = self.update_item(user, &contact_key, |i| {
                i.ask_out = true;
                i.visible = true;
            });
            asked.map_err(|_| "your roster is full")?;
        }
        let user_jid = self.user_jid(user);
        if contact.domain() != self.cfg.domain {
            // Its node keeps the contact's side, and answers.
            self.send_subscription(user, contact, "subscribe");
            return Ok(());
        }
        let Some(cuser) = self.local_account(contact) else {
            // No such account: it can never approve.
            let _ = self.update_item(user, &contact_key, |i| i.ask_out = false);
            self.notify(user, &contact_key, "unsubscribed");
            return Ok(());
        };
        let user = Jid::new(Some(user), &self.cfg.domain, None).map_err(|_| "bad address")?;
        if self
            .roster_item(&cuser, &user_jid)
            .is_some_and(|i| i.subscription.has_from())
        {
            // Already approved earlier: confirm at once.
            return self.approve(&cuser, &user);
        }
        if self.is_preapproved(&cuser, &user_jid) {
            // Approved before it was asked (RFC 6121 §3.4): at once.
            self.complete_approval(&cuser, &user);
            return Ok(());
        }
        if self
            .update_item(&cuser, &user_jid, |i| i.pending_in = true)
            .is_err()
        {
            let _ = self.update_item(user.local().unwrap_or(""), &contact_key, |i| {
                i.ask_out = false
            });
            return Err("the contact cannot take more contact requests");
        }
        self.notify(&cuser, &user_jid, "subscribe");
        Ok(())
    }

    fn is_preapproved(&self, user: &str, contact: &str) -> bool {
        self.accounts
            .get(user)
            .is_some_and(|a| a.preapproved.contains(contact))
    }

    fn set_preapproved(&mut self, user: &str, contact: &str, on: bool) {
        if self.is_preapproved(user, contact) != on {
            self.commit(Record::RosterPreapproved {
                user: user.to_string(),
                contact: contact.to_string(),
                on,
            });
        }
    }

    /// `user` approves `contact`'s request to see `user`'s presence; with
    /// no request yet, approves it in advance (RFC 6121 §3.4): the item is
    /// in the roster, marked `approved`, and a request later is approved at
    /// once. Refused (with why) if the roster has no room for it.
    fn approve(&mut self, user: &str, contact: &Jid) -> Result<(), &'static str> {
        let contact_key = contact.to_string();
        let pending = self
            .roster_item(user, &contact_key)
            .is_some_and(|i| i.pending_in);
        let already = self
            .roster_item(user, &contact_key)
            .is_some_and(|i| i.subscription.has_from());
        if !pending && !already {
            if self.is_preapproved(user, &contact_key) {
                return Ok(());
            }
            let shown = self
                .roster_item(user, &contact_key)
                .is_some_and(|i| i.visible);
            self.set_preapproved(user, &contact_key, true);
            if self
                .update_item(user, &contact_key, |i| i.visible = true)
                .is_err()
            {
                self.set_preapproved(user, &contact_key, false);
                return Err("your roster is full");
            }
            if shown {
                // The item did not change; its push says `approved` now.
                self.push_item(user, &contact_key);
            }
            return Ok(());
        }
        self.complete_approval(user, contact);
        Ok(())
    }

    /// `user`'s approval of `contact`'s request takes effect on both sides.
    fn complete_approval(&mut self, user: &str, contact: &Jid) {
        let contact_key = contact.to_string();
        self.set_preapproved(user, &contact_key, false);
        // The item is there (a request was pending, it was approved, or
        // pre-approved).
        let _ = self.update_item(user, &contact_key, |i| {
            i.pending_in = false;
            i.subscription = i.subscription.with_from(true);
            i.visible = true;
        });
        let user_jid = self.user_jid(user);
        if contact.domain() != self.cfg.domain {
            self.send_subscription(user, contact, "subscribed");
            return self.share_presence_remote(user, contact, false);
        }
        let Some(cuser) = self.local_account(contact) else {
            return;
        };
        // The requester's item holds its request; if it was removed and the
        // roster filled since, the approval is not recorded there.
        let _ = self.update_item(&cuser, &user_jid, |i| {
            i.ask_out = false;
            i.subscription = i.subscription.with_to(true);
            i.visible = true;
        });
        self.notify(&cuser, &user_jid, "subscribed");
        self.share_presence(user, &cuser, false);
    }

    /// `user` no longer wants `contact`'s presence: the contact's side.
    pub(crate) fn contact_side_unsubscribe(&mut self, user: &str, contact: &Jid) {
        if contact.domain() != self.cfg.domain {
            self.send_subscription(user, contact, "unsubscribe");
            return self.forget_remote_presence_of(user, contact);
        }
        let user_jid = self.user_jid(user);
        let Some(cuser) = self.local_account(contact) else {
            return;
        };
        let Some(item) = self.roster_item(&cuser, &user_jid) else {
            return;
        };
        if !item.subscription.has_from() && !item.pending_in {
            return;
        }
        let _ = self.update_item(&cuser, &user_jid, |i| {
            i.subscription = i.subscription.with_from(false);
            i.pending_in = false;
        });
        self.notify(&cuser, &user_jid, "unsubscribe");
        self.share_presence(&cuser, user, true);
    }

    /// `user` cancels or denies `contact`'s subscription: the contact's side.
    pub(crate) fn contact_side_unsubscribed(&mut self, user: &str, contact: &Jid) {
        if contact.domain() != self.cfg.domain {
            self.send_subscription(user, contact, "unsubscribed");
            return self.share_presence_remote(user, contact, true);
        }
        let user_jid = self.user_jid(user);
        let Some(cuser) = self.local_account(contact) else {
            return;
        };
        let Some(item) = self.roster_item(&cuser, &user_jid) else {
            return;
        };
        if !item.subscription.has_to() && !item.ask_out {
            return;
        }
        let _ = self.update_item(&cuser, &user_jid, |i| {
            i.subscription = i.subscription.with_to(false);
            i.ask_out = false;
        });
        self.notify(&cuser, &user_jid, "unsubscribed");
        self.share_presence(user, &cuser, true);
    }

    /// Everyone who sees `conn`'s broadcast presence: subscribed contacts'
    /// available resources, plus the user's own available resources.
    fn presence_audience(&self, conn: ConnId) -> Vec<(ConnId, String)> {
        let Some(user) = self.bound.jid_of(conn).and_then(|j| j.local()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(acc) = self.accounts.get(user) {
            for (contact, item) in &acc.roster {
                if !item.subscription.has_from() {
                    continue;
                }
                let Ok(cj) = Jid::parse(contact) else {
                    continue;
                };
                if let Some(cuser) = self.local_account(&cj) {
                    if self.blocked_between(user, &cuser) {
                        continue;
                    }
                    for c in self.bound.available_conns(&cuser) {
                        out.push((c, contact.clone()));
                    }
                }
            }
        }
        let own = self.user_jid(user);
        for c in self.bound.available_conns(user) {
            out.push((c, own.clone()));
        }
        out
    }

    fn broadcast_presence(&mut self, conn: ConnId, mut el: Element) {
        let Some(user) = self.bound.user_of(conn) else {
            return;
        };
        el.remove_attr("to");
        if el.get_attr("type") == Some("unavailable") {
            // Joined rooms count as directed presence: the session leaves them.
            self.out.push(ImOutput::LeaveRooms { conn });
            return self.go_unavailable(conn, Some(el));
        }
        let priority = el
            .get_child("priority", ns::CLIENT)
            .and_then(|p| p.text_content().trim().parse::<i8>().ok())
            .unwrap_or(0);
        let Some(s) = self.bound.resources.get_mut(&conn) else {
            return;
        };
        let initial = s.presence.is_none();
        s.presence = Some(el.clone());
        s.priority = priority;
        for (c, to) in self.presence_audience(conn) {
            let mut e = el.clone();
            e.set_attr("to", to);
            self.send_el(c, &e);
        }
        self.broadcast_remote(&user, &el);
        if initial {
            self.answer_probes(conn, &user);
            self.remote_presence_for(conn, &user);
            self.deliver_pending_requests(conn, &user);
            if priority >= 0 {
                self.deliver_offline(conn, &user);
            }
        }
        self.pep_presence(conn, &el);
    }

    /// Presence of the contacts `user` is subscribed to, for a resource just come online.
    fn answer_probes(&mut self, conn: ConnId, user: &str) {
        let Some(me) = self.bound.jid_of(conn).map(Jid::to_string) else {
            return;
        };
        let mut contacts: Vec<String> = self.accounts[user]
            .roster
            .iter()
            .filter(|(_, i)| i.subscription.has_to())
            .map(|(c, _)| c.clone())
            .collect();
        // Own other resources too (RFC 6121 §4.4.2).
        contacts.push(self.user_jid(user));
        for contact in contacts {
            let Some(cuser) = Jid::parse(&contact)
                .ok()
                .and_then(|j| self.local_account(&j))
            else {
                continue;
            };
            if self.blocked_between(user, &cuser) {
                continue;
            }
            for (c, mut p) in self.bound.available_presences(&cuser) {
                if c == conn {
                    continue;
                }
                p.set_attr("to", me.clone());
                self.send_el(conn, &p);
            }
        }
    }

    fn deliver_pending_requests(&mut self, conn: ConnId, user: &str) {
        let me = self.user_jid(user);
        let pending: Vec<String> = self.accounts[user]
            .roster
            .iter()
            .filter(|(_, i)| i.pending_in)
            .map(|(c, _)| c.clone())
            .collect();
        for contact in pending {
            let el = Element::new("presence", ns::CLIENT)
                .attr("from", contact)
                .attr("to", me.clone())
                .attr("type", "subscribe");
            self.send_el(conn, &el);
        }
    }

    /// Make `conn` unavailable, telling everyone who saw it available.
    /// `el` is the client's unavailable presence (its status is kept).
    pub(crate) fn go_unavailable(&mut self, conn: ConnId, el: Option<Element>) {
        let Some(s) = self.bound.resources.get(&conn) else {
            return;
        };
        if s.presence.is_none() && s.directed.is_empty() {
            return;
        }
        let full = s.jid.to_string();
        let mut el =
            el.unwrap_or_else(|| Element::new("presence", ns::CLIENT).attr("type", "unavailable"));
        el.set_attr("from", full);
        let mut audience = if s.presence.is_some() {
            self.presence_audience(conn)
        } else {
            Vec::new()
        };
        let directed: Vec<String> = s.directed.iter().cloned().collect();
        for d in directed.clone() {
            let Ok(j) = Jid::parse(&d) else { continue };
            let targets = match j.resource() {
                Some(_) => self.bound.conn_of_full(&j).into_iter().collect(),
                None => self
                    .local_account(&j)
                    .map(|u| self.bound.available_conns(&u))
                    .unwrap_or_default(),
            };
            for t in targets {
                if !audience.iter().any(|(c, _)| *c == t) {
                    audience.push((t, d.clone()));
                }
            }
        }
        let Some(s) = self.bound.resources.get_mut(&conn) else {
            return;
        };
        let was_available = s.presence.take().is_some();
        // Back later, it gets the last items again (XEP-0163 §6.2).
        s.pep_primed = false;
        s.directed.clear();
        let user = s.jid.local().map(str::to_string);
        for (c, to) in audience {
            let mut e = el.clone();
            e.set_attr("to", to);
            self.send_el(c, &e);
        }
        for d in directed.iter().filter_map(|d| Jid::parse(d).ok()) {
            if d.domain() != self.cfg.domain {
                let mut e = el.clone();
                e.set_attr("to", d.to_string());
                self.send_remote(&d, e, true);
            }
        }
        if let Some(user) = user.as_deref().filter(|_| was_available) {
            self.broadcast_remote(user, &el);
        }
        if let Some(user) = user.filter(|_| was_available) {
            self.remember_last_seen(&user, &el);
        }
    }

    fn directed_presence(&mut self, conn: ConnId, el: Element, to: &Jid) {
        let remote = to.domain() != self.cfg.domain;
        if remote && !self.routes.reaches(to.domain()) {
            return self.bounce(conn, &el, "remote-server-not-found");
        }
        let targets = match (remote, to.resource()) {
            (true, _) => Vec::new(),
            (false, Some(_)) => self.bound.conn_of_full(to).into_iter().collect(),
            (false, None) => match self.local_account(to) {
                Some(user) => self.bound.available_conns(&user),
                None => return,
            },
        };
        let available = el.get_attr("type").is_none();
        let Some(s) = self.bound.resources.get_mut(&conn) else {
            return;
        };
        if available {
            if s.directed.len() < 1000 {
                s.directed.insert(to.to_string());
            }
        } else {
            s.directed.remove(&to.to_string());
        }
        for t in targets {
            self.send_el(t, &el);
        }
        if remote {
            self.send_remote(to, el, true);
        }
    }

    /// `user` no longer sees `contact` (at another node): what it saw of
    /// the contact goes.
    fn forget_remote_presence_of(&mut self, user: &str, contact: &Jid) {
        let conns = self.bound.available_conns(user);
        let me = self.user_jid(user);
        for (full, _) in self.remote_presence_of(contact) {
            let gone = Element::new("presence", ns::CLIENT)
                .attr("type", "unavailable")
                .attr("from", full.to_string())
                .attr("to", me.clone());
            self.deliver(&conns, &gone);
        }
        self.forget_unfollowed(contact);
    }
}
