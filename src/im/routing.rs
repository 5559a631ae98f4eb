//! Routing between local users: the checks every client stanza passes,
//! messages (to resources, to the bare JID, offline), and the server's own
//! iq handlers.

use super::{archive, avatar, blocking, bookmarks, carbons, pep, stored_xml, Ctx};
use crate::c2s::output::Completion;
use crate::common::{ConnId, Payload, NO_CONN};
use crate::jid::Jid;
use crate::server_info;
use crate::stanza::{self, Iq};
use crate::state::Record;
use crate::xml::{ns, Element};

/// Whether a message is kept for an account with no available resource:
/// chat and normal messages with a body or a subject.
fn offline_storable(el: &Element) -> bool {
    let mtype = el.get_attr("type").unwrap_or("normal");
    !matches!(mtype, "error" | "groupchat" | "headline")
        && (el.has_child("body", ns::CLIENT) || el.has_child("subject", ns::CLIENT))
}

/// What became of a message.
pub(crate) enum Routed {
    Refused,
    /// Delivered, stored for later, or for the server itself; with the
    /// stanza-id it was archived under, if it was.
    Accepted {
        stanza_id: Option<String>,
    },
    /// For a user at another node: archived and copied to the sender's
    /// other sessions once its link took it (`remote_message_sent`).
    Deferred,
}

impl Ctx<'_> {
    /// The checks a stanza from the bound session `from` passes before it
    /// goes anywhere: its kind, its `from` (stamped with the session's full
    /// JID), its `to`, and (for iq) its shape. What passes is returned with
    /// its parsed `to`; what fails is answered here.
    pub(crate) fn check(
        &mut self,
        conn: ConnId,
        from: &Jid,
        mut el: Element,
    ) -> Option<(Element, Option<Jid>)> {
        if el.ns != ns::CLIENT || !matches!(el.name.as_str(), "message" | "presence" | "iq") {
            self.stream_error(conn, "unsupported-stanza-type", "");
            return None;
        }
        if !self.bound.resources.contains_key(&conn) {
            return None; // Ended while this stanza waited.
        }
        if let Some(claimed) = el.get_attr("from") {
            let ok = Jid::parse(claimed).is_ok_and(|j| j == *from || j == from.to_bare());
            if !ok {
                self.stream_error(conn, "invalid-from", "the from address is not yours");
                return None;
            }
        }
        el.set_attr("from", from.to_string());
        if el.name == "presence" && el.get_attr("type").is_none() {
            if let Some(user) = from.local() {
                self.add_avatar_hash(user, &mut el);
            }
        }
        let to = match el.get_attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(_)) => {
                el.remove_attr("to");
                self.bounce(conn, &el, "jid-malformed");
                return None;
            }
        };
        if el.name == "iq" {
            if let Err(why) = stanza::check_iq(&el) {
                self.bounce_explained(conn, &el, "bad-request", why);
                return None;
            }
        }
        Some((el, to))
    }

    /// A checked stanza for a local user or this server.
    pub(crate) fn route(&mut self, conn: ConnId, el: Element, to: Option<Jid>) {
        if let Some(to) = &to {
            if !self.passes_blocking(conn, &el, to) {
                return;
            }
        }
        match el.name.as_str() {
            "message" => self.on_message(conn, el, to),
            "presence" => self.on_presence(conn, el, to),
            _ => self.on_iq(conn, el, to),
        }
    }

    /// A client session ended (after it left its rooms): it goes
    /// unavailable; offline messages it was being handed and did not get
    /// stay stored (for another session of the account, or the next one).
    pub(crate) fn ended(&mut self, conn: ConnId, jid: Option<Jid>) {
        self.caps.forget(conn);
        self.pending_queries.forget(conn);
        let unclaimed = self.release_offline_claims(conn);
        if self.bound.resources.contains_key(&conn) {
            self.go_unavailable(conn, None);
            self.bound.forget(conn, jid.as_ref());
        }
        self.hand_offline_to_others(conn, unclaimed);
    }

    /// A session lost its connection and waits to be resumed: the offline
    /// messages it was being handed (still stored) go to another session
    /// of the account now, or to whichever comes next.
    pub(crate) fn detached(&mut self, conn: ConnId) {
        let unclaimed = self.release_offline_claims(conn);
        self.hand_offline_to_others(conn, unclaimed);
    }

    /// A session was resumed: what is stored for it comes now, after the
    /// offline messages up to `offline_upto` it is being sent again.
    pub(crate) fn resumed(&mut self, conn: ConnId, offline_upto: Option<u64>) {
        let available = self
            .bound
            .resources
            .get(&conn)
            .is_some_and(|r| r.receives_bare_messages());
        let Some(user) = self.bound.user_of(conn) else {
            return;
        };
        if let Some(upto) = offline_upto {
            let other = self.offline_claims.get(&user).map(|(c, _)| *c);
            if other.is_none_or(|c| c == conn || !self.bound.resources.contains_key(&c)) {
                self.offline_claims.insert(user.clone(), (conn, upto));
            }
        }
        if available {
            self.deliver_offline(conn, &user);
        }
    }

    /// The accounts whose offline messages `conn` was being handed: no
    /// longer.
    fn release_offline_claims(&mut self, conn: ConnId) -> Vec<String> {
        let mut unclaimed: Vec<String> = self
            .offline_claims
            .iter()
            .filter(|(_, (owner, _))| *owner == conn)
            .map(|(user, _)| user.clone())
            .collect();
        unclaimed.sort_unstable();
        for user in &unclaimed {
            self.offline_claims.remove(user);
        }
        unclaimed
    }

    /// Hand `users`' offline messages to one of their other sessions that
    /// can take them now (a detached one cannot).
    fn hand_offline_to_others(&mut self, conn: ConnId, users: Vec<String>) {
        for user in users {
            for other in self.bound.bare_message_targets(&user) {
                if other != conn && !self.offline_claims.contains_key(&user) {
                    self.deliver_offline(other, &user);
                }
            }
        }
    }

    /// Answer `el` (from the session `conn`) with a stanza error.
    pub(crate) fn bounce(&mut self, conn: ConnId, el: &Element, condition: &str) {
        self.bounce_explained(conn, el, condition, "")
    }

    /// Answer `el` with a stanza error that says why (`text`, if not empty).
    pub(crate) fn bounce_explained(
        &mut self,
        conn: ConnId,
        el: &Element,
        condition: &str,
        text: &str,
    ) {
        let from = el.get_attr("to").unwrap_or(&self.cfg.domain).to_string();
        if let Some(mut reply) =
            stanza::error_reply(el, condition, stanza::error_type_for(condition), &from)
        {
            if !text.is_empty() {
                reply = stanza::with_error_text(reply, text);
            }
            self.send_el(conn, &reply);
        }
    }

    /// The localpart of `jid` if it names an existing local account.
    pub(crate) fn local_account(&self, jid: &Jid) -> Option<String> {
        let local = jid.local()?;
        (jid.domain() == self.cfg.domain && self.accounts.contains_key(local))
            .then(|| local.to_string())
    }

    pub(super) fn deliver(&mut self, conns: &[ConnId], el: &Element) {
        if conns.is_empty() {
            return;
        }
        let bytes = el.to_xml(ns::CLIENT).into_bytes();
        for &c in conns {
            self.send(c, bytes.clone());
        }
    }

    // ---- messages ---------------------------------------------------------

    fn on_message(&mut self, conn: ConnId, el: Element, to: Option<Jid>) {
        let Some(from) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        let to = to.unwrap_or_else(|| from.to_bare());
        let Some(sender) = from.local().map(str::to_string) else {
            return;
        };
        let Routed::Accepted { stanza_id } = self.route_message(conn, &el, &to) else {
            return;
        };
        if carbons::eligible(&el) {
            // The sender's copies carry the id in the sender's archive.
            let me = from.to_bare().to_string();
            let el = match &stanza_id {
                Some(id) => archive::with_stanza_id(&el, &me, id),
                None => archive::without_stanza_id(&el, &me),
            };
            self.carbon_copies(&sender, &[conn], "sent", &el);
        }
    }

    /// Route a message from session `origin` (or from a room: `NO_CONN`).
    pub(crate) fn route_message(&mut self, origin: ConnId, el: &Element, to: &Jid) -> Routed {
        let mtype = el.get_attr("type").unwrap_or("normal").to_string();
        if to.domain() != self.cfg.domain {
            if self.routes.reaches(to.domain()) {
                return self.route_remote_message(origin, el, to);
            }
            self.bounce(origin, el, "remote-server-not-found");
            return Routed::Refused;
        }
        if to.local().is_none() {
            // Messages to the server itself have no recipient.
            return Routed::Accepted { stanza_id: None };
        }
        let Some(user) = self.local_account(to) else {
            self.bounce(origin, el, "service-unavailable");
            return Routed::Refused;
        };
        let direct = to.resource().and_then(|_| self.bound.conn_of_full(to));
        let delivered = match (direct, mtype.as_str()) {
            (Some(c), _) => vec![c],
            (None, "error") => vec![],
            (None, "groupchat") => {
                self.bounce(origin, el, "service-unavailable");
                return Routed::Refused;
            }
            (None, _) => self.bound.bare_message_targets(&user),
        };
        // One id for the message in every archive it enters, carried by
        // the recipient's copies (live, offline and carbons).
        let stanza_id = archive::archivable(el).then(|| self.stanza_id_for(origin, el));
        let recipient = to.to_bare().to_string();
        let stamped = match &stanza_id {
            Some(id) => archive::with_stanza_id(el, &recipient, id),
            None => archive::without_stanza_id(el, &recipient),
        };
        let el = &stamped;
        self.deliver(&delivered, el);
        if delivered.is_empty() && offline_storable(el) {
            if !self.store_offline(origin, &user, el) {
                return Routed::Refused;
            }
        } else if carbons::eligible(el) {
            self.carbon_copies(&user, &delivered, "received", el);
        }
        if let Some(id) = &stanza_id {
            let sender = el
                .get_attr("from")
                .and_then(|f| Jid::parse(f).ok())
                .and_then(|j| self.local_account(&j));
            self.archive_message(el, id, sender.as_deref(), Some(&user));
        }
        Routed::Accepted { stanza_id }
    }

    /// Stanzas the session `conn` of `user` was sent and never
    /// acknowledged (stream management), now that it ends: the messages
    /// among them are stored as offline messages, within the same bounds,
    /// with their first time. Not those sent to the bare JID while another
    /// session of the account is available: that one was sent them too.
    /// (Messages that were archived are in the archive either way.)
    pub(crate) fn keep_undelivered(&mut self, conn: ConnId, user: &str, undelivered: &[Payload]) {
        let others = self
            .bound
            .bare_message_targets(user)
            .iter()
            .any(|c| *c != conn);
        for bytes in undelivered {
            let xml = String::from_utf8_lossy(&bytes.to_vec()).into_owned();
            let Ok(mut el) = crate::xml::parse_fragment(&xml) else {
                continue;
            };
            let to_bare = el
                .get_attr("to")
                .and_then(|t| Jid::parse(t).ok())
                .is_some_and(|t| t.resource().is_none());
            if el.name != "message" || !offline_storable(&el) || (to_bare && others) {
                continue;
            }
            // One <delay/>, with the time it first came (an offline message
            // handed out again).
            let first = el
                .get_child("delay", ns::DELAY)
                .and_then(|d| d.get_attr("stamp"))
                .and_then(stanza::parse_timestamp);
            el.children
                .retain(|c| !matches!(c, crate::xml::Node::Element(e) if e.is("delay", ns::DELAY)));
            let stamp_ms = first.unwrap_or(self.now.unix_ms);
            self.store_offline_at(NO_CONN, user, &el, stamp_ms);
        }
    }

    /// Keep a message for an account with no available resource, within the
    /// bounds per account (count, bytes) and for the node (bytes); over them
    /// the sender is told the recipient's storage is full.
    fn store_offline(&mut self, origin: ConnId, user: &str, el: &Element) -> bool {
        self.store_offline_at(origin, user, el, self.now.unix_ms)
    }

    /// The same, stamped `stamp_ms`.
    fn store_offline_at(
        &mut self,
        origin: ConnId,
        user: &str,
        el: &Element,
        stamp_ms: u64,
    ) -> bool {
        let xml = el.to_xml(ns::CLIENT);
        let Some(acc) = self.accounts.get(user) else {
            self.bounce(origin, el, "service-unavailable");
            return false;
        };
        let size = xml.len() as u64;
        let full = if acc.offline.len() >= self.cfg.offline_limit
            || acc.offline.bytes() + size > self.cfg.offline_bytes_per_account
        {
            Some(format!(
                "{user} is offline and their message storage is full"
            ))
        } else if crate::state::offline_bytes(self.accounts) + size > self.cfg.offline_bytes_total {
            Some(format!(
                "{user} is offline and this server's message storage is full"
            ))
        } else {
            None
        };
        if let Some(text) = full {
            log::info!("offline storage: refused a {size}-byte message: {text}");
            self.bounce_explained(origin, el, "resource-constraint", &text);
            return false;
        }
        self.commit(Record::OfflinePush {
            user: user.to_string(),
            stamp_ms,
            xml,
        });
        true
    }

    /// Hand stored messages to a resource that just became available.
    ///
    /// Paced by what the client reads: an installment that fits the
    /// session's paced backlog goes out, each message is marked delivered
    /// only once it was written (`offline_written`), and the next
    /// installment follows. One session of an account is handed them at a
    /// time, so none is delivered twice; whatever was not written when a
    /// session ends stays stored for the next one.
    pub(crate) fn deliver_offline(&mut self, conn: ConnId, user: &str) {
        let claim = self.offline_claims.get(user).copied();
        if let Some((owner, _)) = claim {
            if owner != conn && self.bound.resources.contains_key(&owner) {
                return; // Another session of the account is being handed them.
            }
        }
        let after = claim
            .filter(|(c, _)| *c == conn)
            .map_or(0, |(_, upto)| upto);
        let Some(acc) = self.accounts.get(user) else {
            return;
        };
        if !self.bound.resources.contains_key(&conn) {
            return;
        }
        let room = self.clients.paced_room(conn);
        let domain = self.cfg.domain.clone();
        let mut out = Vec::new();
        let mut bytes = 0;
        for m in acc.offline.after(after) {
            let delay = stanza::delay(&domain, m.stamp_ms).to_xml(ns::CLIENT);
            let xml = stanza::insert_before_close(&m.xml, &delay).into_bytes();
            bytes += xml.len();
            if bytes > room && !out.is_empty() {
                break;
            }
            out.push((m.id, xml));
        }
        let Some(&(last, _)) = out.last() else {
            return;
        };
        self.offline_claims.insert(user.to_string(), (conn, last));
        for (id, xml) in out {
            let done = Completion::OfflineWritten {
                user: user.to_string(),
                upto: id,
            };
            self.send_paced(conn, xml, Some(done));
        }
    }

    /// Offline messages of `user` up to `upto` were written to `conn`: they
    /// are delivered; the next installment follows if this was the last.
    pub(crate) fn offline_written(&mut self, conn: ConnId, user: &str, upto: u64) {
        self.commit(Record::OfflineDone {
            user: user.to_string(),
            upto,
        });
        if self.offline_claims.get(user) == Some(&(conn, upto)) {
            self.offline_claims.remove(user);
            self.deliver_offline(conn, user);
        }
    }

    // ---- iq -------------------------------------------------------------------

    fn on_iq(&mut self, conn: ConnId, el: Element, to: Option<Jid>) {
        let is_request = matches!(stanza::check_iq(&el), Ok(Iq::Request { .. }));
        let Some(me) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        match to {
            None => self.server_iq(conn, &el, true),
            Some(t)
                if t.local().is_none()
                    && t.resource().is_none()
                    && t.domain() == self.cfg.domain =>
            {
                self.server_iq(conn, &el, false)
            }
            Some(t) if t == me.to_bare() => self.server_iq(conn, &el, true),
            Some(t) if t.domain() != self.cfg.domain => self.route_remote_iq(conn, &el, &t),
            Some(t) if t.resource().is_some() => match self.bound.conn_of_full(&t) {
                Some(c) => self.deliver(&[c], &el),
                None if is_request => self.bounce(conn, &el, "service-unavailable"),
                None => {}
            },
            Some(t) => {
                // Addressed to another account's bare JID: the server answers for it.
                if self.local_account(&t).is_none() {
                    return self.bounce(conn, &el, "service-unavailable");
                }
                self.account_iq(conn, &el, &t)
            }
        }
    }

    /// iq addressed to the server, or (`own_account`) to the sender's bare JID.
    pub(super) fn server_iq(&mut self, conn: ConnId, el: &Element, own_account: bool) {
        let Ok(Iq::Request { set, payload }) = stanza::check_iq(el) else {
            return self.on_caps_answer(conn, el);
        };
        let (itype, payload) = (if set { "set" } else { "get" }, payload.clone());
        let domain = self.cfg.domain.clone();
        let answer_from = el.get_attr("to").unwrap_or(&domain).to_string();
        let reply = |payload: Option<Element>| stanza::iq_result(el, &answer_from, payload);
        match (payload.name.as_str(), payload.ns.as_str(), itype) {
            ("query", ns::ROSTER, _) if own_account => self.on_roster_iq(conn, el, &payload),
            ("query", stored_xml::NS_PRIVATE, _) if own_account => {
                self.on_private_iq(conn, el, &payload, set)
            }
            ("vCard", stored_xml::NS_VCARD, _) if own_account => {
                if let Some(me) = self.bound.jid_of(conn).map(Jid::to_bare) {
                    self.on_vcard_iq(conn, el, &payload, set, &me);
                }
            }
            ("blocklist" | "block" | "unblock", blocking::NS, _) if own_account => {
                self.on_blocking_iq(conn, el, &payload, set)
            }
            ("pubsub", pep::NS | pep::NS_OWNER, _) if own_account => {
                if let Some(me) = self.bound.jid_of(conn).map(Jid::to_bare) {
                    self.on_pep_iq(conn, el, &payload, set, &me);
                }
            }
            ("query", ns::REGISTER, _) => self.on_register_iq(conn, el, &payload),
            ("query" | "prefs" | "metadata", ns::MAM, _) if own_account => {
                self.on_archive_iq(conn, el, &payload, set)
            }
            // Nodes: the server's caps node only (XEP-0115 §6.2); the
            // account and the other nodes have none (XEP-0030 §3.1).
            ("query", ns::DISCO_INFO | ns::DISCO_ITEMS, "get")
                if payload.get_attr("node").is_some_and(|n| {
                    own_account
                        || payload.ns == ns::DISCO_ITEMS
                        || n != server_info::caps_node_ver()
                }) =>
            {
                self.bounce(conn, el, "item-not-found")
            }
            ("query", ns::DISCO_INFO, "get") => {
                let info = if own_account && el.get_attr("to").is_some() {
                    account_disco_info()
                } else {
                    server_info::disco_info(payload.get_attr("node"))
                };
                self.send_el(conn, &reply(Some(info)));
            }
            ("time", ns::TIME, "get") => {
                // The node keeps UTC; it does not know the site's zone.
                let time = Element::new("time", ns::TIME)
                    .child(Element::new("tzo", ns::TIME).text("+00:00"))
                    .child(Element::new("utc", ns::TIME).text(stanza::timestamp(self.now.unix_ms)));
                self.send_el(conn, &reply(Some(time)));
            }
            ("query", ns::DISCO_ITEMS, "get") => {
                let mut q = Element::new("query", ns::DISCO_ITEMS);
                if !own_account {
                    q = q.child(
                        Element::new("item", ns::DISCO_ITEMS)
                            .attr("jid", self.cfg.muc_service.clone())
                            .attr("name", "Chatrooms"),
                    );
                    if self.cfg.upload.enabled {
                        q = q.child(
                            Element::new("item", ns::DISCO_ITEMS)
                                .attr("jid", format!("upload.{}", self.cfg.domain))
                                .attr("name", "HTTP File Upload"),
                        );
                    }
                }
                self.send_el(conn, &reply(Some(q)));
            }
            ("ping", ns::PING, "get") => self.send_el(conn, &reply(None)),
            ("query", ns::LAST, "get") if own_account && el.get_attr("to").is_some() => {
                let me = self.bound.jid_of(conn).map(Jid::to_bare);
                if let Some(me) = me {
                    self.account_last_activity(conn, el, &me);
                }
            }
            ("query", ns::LAST, "get") => self.server_last_activity(conn, el, &answer_from),
            ("enable" | "disable", ns::CARBONS, "set")
                if own_account || el.get_attr("to").is_none() =>
            {
                let on = payload.name == "enable";
                if let Some(r) = self.bound.resources.get_mut(&conn) {
                    r.carbons = on;
                }
                self.send_el(conn, &reply(None));
            }
            ("session", ns::SESSION, "set") => self.send_el(conn, &reply(None)),
            ("query", ns::VERSION, "get") => {
                let v = Element::new("query", ns::VERSION)
                    .child(Element::new("name", ns::VERSION).text("Outpost"))
                    .child(Element::new("version", ns::VERSION).text(env!("CARGO_PKG_VERSION")));
                self.send_el(conn, &reply(Some(v)));
            }
            ("bind", ns::BIND, "set") => self.bounce(conn, el, "not-allowed"),
            _ => self.bounce(conn, el, "service-unavailable"),
        }
    }

    /// iq to another local account's bare JID (RFC 6121 §8.5.2.1.3).
    pub(super) fn account_iq(&mut self, conn: ConnId, el: &Element, target: &Jid) {
        let Ok(Iq::Request { set, payload }) = stanza::check_iq(el) else {
            return;
        };
        let itype = if set { "set" } else { "get" };
        let from = target.to_string();
        match (payload.name.as_str(), payload.ns.as_str(), itype) {
            ("query", ns::DISCO_INFO, "get") => {
                let r = stanza::iq_result(el, &from, Some(account_disco_info()));
                self.send_el(conn, &r);
            }
            ("ping", ns::PING, "get") => {
                let r = stanza::iq_result(el, &from, None);
                self.send_el(conn, &r);
            }
            ("query", ns::LAST, "get") => self.account_last_activity(conn, el, target),
            ("pubsub", pep::NS | pep::NS_OWNER, _) => {
                self.on_pep_iq(conn, el, payload, set, target)
            }
            ("vCard", stored_xml::NS_VCARD, _) => self.on_vcard_iq(conn, el, payload, set, target),
            // Another user's archive is theirs alone.
            (_, ns::MAM, _) => self.bounce(conn, el, "forbidden"),
            _ => self.bounce(conn, el, "service-unavailable"),
        }
    }
}

fn account_disco_info() -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO)
        .child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "account")
                .attr("type", "registered"),
        )
        .child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "pubsub")
                .attr("type", "pep"),
        );
    let conversions = bookmarks::FEATURES.iter().chain([&avatar::FEATURE]);
    for f in pep::FEATURES.iter().chain(conversions) {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", *f));
    }
    for f in [
        ns::DISCO_INFO,
        ns::PING,
        ns::LAST,
        ns::MAM,
        ns::MAM_EXTENDED,
        ns::SID,
    ] {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
    }
    q
}

#[cfg(test)]
mod tests {
    use crate::stanza::insert_before_close;

    #[test]
    fn insert_before_close_works() {
        assert_eq!(
            insert_before_close("<message to='a'><body>x</body></message>", "<d/>"),
            "<message to='a'><body>x</body><d/></message>"
        );
        assert_eq!(
            insert_before_close("<message to='a'/>", "<d/>"),
            "<message to='a'><d/></message>"
        );
    }
}
