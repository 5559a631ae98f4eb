//! Users at other nodes of the network: a stanza for a domain that a link
//! reaches crosses that link (the link queues it durably while it is down
//! and delivers it once, in order), and what comes over a link for a
//! local user or this server is routed as if it were sent here, its
//! answers going back over the link (`LINK_CONN`). A message carries the
//! stanza-id its origin minted, so the archives at both ends keep it
//! under one id.

use super::archive;
use super::{Ctx, ImOutput, Routed};
use crate::common::{ConnId, LINK_CONN};
use crate::jid::Jid;
use crate::stanza::{self, Iq};
use crate::xml::{ns, Element};
use std::collections::BTreeMap;

/// The domains the links reach, each with whether its link is up now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    domains: BTreeMap<String, bool>,
}

impl Routes {
    pub fn insert(&mut self, domain: String, up: bool) {
        self.domains.insert(domain, up);
    }

    pub fn reaches(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    pub fn is_up(&self, domain: &str) -> bool {
        self.domains.get(domain).copied().unwrap_or(false)
    }
}

/// How long a query to another node waits for its answer.
pub const REMOTE_IQ_TIMEOUT_MS: u64 = 30_000;
/// Queries to other nodes one session may have waiting.
pub const REMOTE_IQS_PER_SESSION: usize = 32;

/// Queries sent to other nodes, waiting for their answers: by session and
/// id, whom it was for and until when it waits.
#[derive(Debug, Default)]
pub struct PendingQueries {
    by_key: BTreeMap<(ConnId, String), (Jid, u64)>,
}

impl PendingQueries {
    fn of_conn(&self, conn: ConnId) -> usize {
        self.by_key
            .range((conn, String::new())..)
            .take_while(|((c, _), _)| *c == conn)
            .count()
    }

    /// The answer from `from` to `conn`'s query `id`: true (and no longer
    /// waited for) if it was one. A server on the way may answer with an
    /// error (HQ, when the site the query was for is cut off).
    fn answered(&mut self, conn: ConnId, id: &str, from: &Jid, error: bool) -> bool {
        let key = (conn, id.to_string());
        let matches = self.by_key.get(&key).is_some_and(|(to, _)| {
            to == from || to.to_bare() == *from || (error && from.local().is_none())
        });
        if matches {
            self.by_key.remove(&key);
        }
        matches
    }

    pub fn forget(&mut self, conn: ConnId) {
        self.by_key.retain(|(c, _), _| *c != conn);
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.by_key.values().map(|(_, at)| *at).min()
    }
}

/// A chat state and nothing else (XEP-0085): stale after a split, so
/// never queued for one. Receipts, markers and corrections are.
fn is_chat_state_only(el: &Element) -> bool {
    const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
    el.elements().any(|c| c.ns == CHAT_STATES)
        && el
            .elements()
            .all(|c| c.ns == CHAT_STATES || c.is("thread", ns::CLIENT) || c.ns == ns::SID)
}

/// Ids minted elsewhere are taken as they are only if they look like one.
const CARRIED_ID_MAX: usize = 64;

/// The stanza-id the sender's node minted (by the sender's bare JID).
fn carried_stanza_id(el: &Element, from: &Jid) -> Option<String> {
    let by = from.to_bare().to_string();
    let id = el
        .elements()
        .find(|e| e.is("stanza-id", ns::SID) && e.get_attr("by") == Some(by.as_str()))?
        .get_attr("id")?;
    let fine = !id.is_empty()
        && id.len() <= CARRIED_ID_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    fine.then(|| id.to_string())
}

impl Ctx<'_> {
    /// Who sent `el`: the session `conn`, or over a link its `from`.
    pub(crate) fn requester(&self, conn: ConnId, el: &Element) -> Option<Jid> {
        if conn == LINK_CONN {
            return el.get_attr("from").and_then(|f| Jid::parse(f).ok());
        }
        self.bound.jid_of(conn).cloned()
    }

    /// The id a message gets in the archives: the one its origin minted
    /// if it came over a link, a fresh one otherwise.
    pub(super) fn stanza_id_for(&mut self, origin: ConnId, el: &Element) -> String {
        let from = el.get_attr("from").and_then(|f| Jid::parse(f).ok());
        match from.filter(|_| origin == LINK_CONN) {
            Some(from) => carried_stanza_id(el, &from).unwrap_or_else(|| self.mint_stanza_id()),
            None => self.mint_stanza_id(),
        }
    }

    /// A message from the local session `origin` for `to` at another
    /// node, with a fresh stanza-id it carries over the link. Once the
    /// link took it (it may refuse: the sender's share of a split link's
    /// queue), it is archived and copied (`remote_message_sent`).
    pub(super) fn route_remote_message(
        &mut self,
        origin: ConnId,
        el: &Element,
        to: &Jid,
    ) -> Routed {
        let Some(from) = el.get_attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return Routed::Refused;
        };
        if origin == LINK_CONN {
            // Nothing passes through the router from one link to another.
            self.bounce(origin, el, "remote-server-not-found");
            return Routed::Refused;
        }
        let by = from.to_bare().to_string();
        let stanza_id = archive::archivable(el).then(|| self.mint_stanza_id());
        let stamped = match &stanza_id {
            Some(id) => archive::with_stanza_id(el, &by, id),
            None => archive::without_stanza_id(el, &by),
        };
        let transient = is_chat_state_only(&stamped);
        self.out.push(ImOutput::Remote {
            to: to.clone(),
            el: Box::new(stamped),
            transient,
            sent_by: (!transient).then_some(origin),
        });
        Routed::Deferred
    }

    /// The link took a message of the local session `conn`: it goes in the
    /// sender's archive (under the id it carries) and to their other
    /// sessions (carbons).
    pub(crate) fn remote_message_sent(&mut self, conn: ConnId, el: &Element) {
        let Some(from) = el.get_attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return;
        };
        let Some(sender) = self.local_account(&from) else {
            return;
        };
        let by = from.to_bare().to_string();
        let id = el
            .elements()
            .find(|e| e.is("stanza-id", ns::SID) && e.get_attr("by") == Some(by.as_str()))
            .and_then(|e| e.get_attr("id"))
            .map(str::to_string);
        if let Some(id) = id {
            self.archive_message(el, &id, Some(&sender), None);
        }
        if super::carbons::eligible(el) {
            self.carbon_copies(&sender, &[conn], "sent", el);
        }
    }

    /// An iq from the local session `conn` for `to` at another node. A
    /// request while the link is down is answered at once: the other
    /// node cannot answer in time.
    pub(super) fn route_remote_iq(&mut self, conn: ConnId, el: &Element, to: &Jid) {
        let is_request = matches!(stanza::check_iq(el), Ok(Iq::Request { .. }));
        if !self.routes.reaches(to.domain()) || conn == LINK_CONN {
            if is_request {
                self.bounce(conn, el, "remote-server-not-found");
            }
            return;
        }
        if !self.routes.is_up(to.domain()) {
            if is_request {
                let why = "the link to that server is down";
                self.bounce_explained(conn, el, "remote-server-timeout", why);
            }
            return; // An answer nobody waits for any more.
        }
        if is_request {
            let id = el.get_attr("id").unwrap_or("").to_string();
            let pending = &mut self.pending_queries;
            if pending.of_conn(conn) >= REMOTE_IQS_PER_SESSION {
                let why = "too many queries to other servers are waiting";
                return self.bounce_explained(conn, el, "resource-constraint", why);
            }
            let deadline = self.now.mono_ms + REMOTE_IQ_TIMEOUT_MS;
            pending.by_key.insert((conn, id), (to.clone(), deadline));
        }
        // Unnumbered: a query is answered now or not at all.
        self.send_remote(to, el.clone(), true);
    }

    /// Queries to other nodes whose answers did not come in time: their
    /// senders are told.
    pub(crate) fn expire_remote_queries(&mut self) {
        let now = self.now.mono_ms;
        let due: Vec<((ConnId, String), Jid)> = self
            .pending_queries
            .by_key
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, (to, _))| (k.clone(), to.clone()))
            .collect();
        for ((conn, id), to) in due {
            self.pending_queries.by_key.remove(&(conn, id.clone()));
            let Some(me) = self.bound.jid_of(conn).cloned() else {
                continue;
            };
            let request = Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", id)
                .attr("from", me.to_string())
                .attr("to", to.to_string());
            let why = "no answer came from that server";
            self.bounce_explained(conn, &request, "remote-server-timeout", why);
        }
    }

    /// A stanza that came over a link from a user or server at another
    /// node, for a local user or this server (its `from` and `to` are
    /// set and were checked against what that link may speak for).
    pub(crate) fn route_from_link(&mut self, el: Element) {
        let Some(to) = el.get_attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        if to.domain() != self.cfg.domain || !self.passes_blocking(LINK_CONN, &el, &to) {
            return;
        }
        match el.name.as_str() {
            "message" if to.local().is_none() => {
                // Addressed to this node: a contact's PEP notification.
                if let Some(from) = el.get_attr("from").and_then(|f| Jid::parse(f).ok()) {
                    if from.resource().is_none() && from.local().is_some() {
                        self.pep_event_from_link(&el, &from);
                    }
                }
            }
            "message" => {
                let _ = self.route_message(LINK_CONN, &el, &to);
            }
            "iq" => self.iq_from_link(el, &to),
            _ => {
                if let Some(from) = el.get_attr("from").and_then(|f| Jid::parse(f).ok()) {
                    self.presence_from_link(el, &from, &to);
                }
            }
        }
    }

    fn iq_from_link(&mut self, el: Element, to: &Jid) {
        let is_request = matches!(stanza::check_iq(&el), Ok(Iq::Request { .. }));
        if to.local().is_none() {
            // This server: what it tells anyone.
            let public = stanza::check_iq(&el).is_ok_and(|iq| match iq {
                Iq::Request {
                    set: false,
                    payload,
                } => {
                    matches!(
                        (payload.name.as_str(), payload.ns.as_str()),
                        ("ping", ns::PING)
                            | ("query", ns::DISCO_INFO | ns::VERSION | ns::LAST)
                            | ("time", ns::TIME)
                    ) && payload.get_attr("node").is_none()
                }
                _ => false,
            });
            if public {
                return self.server_iq(LINK_CONN, &el, false);
            }
            if is_request {
                self.bounce(LINK_CONN, &el, "service-unavailable");
            }
            return;
        }
        if to.resource().is_some() {
            match self.bound.conn_of_full(to) {
                Some(c) if is_request => self.deliver(&[c], &el),
                // An answer, to the query that still waits for it.
                Some(c) => {
                    let from = el.get_attr("from").and_then(|f| Jid::parse(f).ok());
                    let id = el.get_attr("id").unwrap_or("");
                    let error = el.get_attr("type") == Some("error");
                    if from.is_some_and(|f| self.pending_queries.answered(c, id, &f, error)) {
                        self.deliver(&[c], &el);
                    }
                }
                None if is_request => self.bounce(LINK_CONN, &el, "service-unavailable"),
                None => {}
            }
            return;
        }
        if self.local_account(to).is_none() {
            if is_request {
                self.bounce(LINK_CONN, &el, "service-unavailable");
            }
            return;
        }
        self.account_iq(LINK_CONN, &el, to);
    }

    /// What the router sent `LINK_CONN`: back over the link, to whom it
    /// is addressed.
    pub(super) fn send_back_over_link(&mut self, bytes: &[u8]) {
        let Ok(el) = crate::xml::parse_fragment(&String::from_utf8_lossy(bytes)) else {
            return;
        };
        let Some(to) = el.get_attr("to").and_then(|t| Jid::parse(t).ok()) else {
            return;
        };
        if to.domain() == self.cfg.domain || !self.routes.reaches(to.domain()) {
            return;
        }
        // Answers to queries are unnumbered, like the queries.
        let transient = el.name == "iq";
        self.send_remote(&to, el, transient);
    }

    /// `el` over the link that reaches `to`.
    pub(super) fn send_remote(&mut self, to: &Jid, el: Element, transient: bool) {
        self.out.push(ImOutput::Remote {
            to: to.clone(),
            el: Box::new(el),
            transient,
            sent_by: None,
        });
    }
}
