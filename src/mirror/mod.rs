//! Mirrored rooms (the site side of DMUC): a local replica of a room
//! mastered on another node, created when the first local user joins and
//! dropped when the last one leaves.
//!
//! The master decides everything (admission, order, roles); the mirror
//! renders the room to local users from its replica, so the link carries one
//! copy of each room event for the whole site. A local user's message is
//! delivered locally at once with a stanza-id minted here, and submitted to
//! the master, which keeps that id and gives the message its place in order.

use crate::common::{ConnId, Payload, PeerId};
use crate::jid::Jid;
use crate::model::event::{LinkEvent, OccupantChange, OccupantInfo};
use crate::model::room::Affiliation;
use crate::muc::Occupant;
use crate::stanza;
use crate::xml::muc_ns as mns;
use crate::xml::{escape, ns, Element, Node as XmlNode};
use std::collections::{BTreeSet, HashSet};

mod render;
mod service;
#[cfg(test)]
mod tests;

use crate::model::replica::MirrorRecord;
pub(crate) use service::Ctx;
pub use service::{MirrorOutput, Mirrors, Replicas};

/// A room message reaching local users later than this after the master
/// stamped it is marked with `<delay/>`.
const LATE_AFTER_MS: u64 = 5_000;

/// Site messages delivered here and awaiting the master's echo, per room.
const MAX_EARLY: usize = 10_000;
/// Messages held past a sequence gap while a resync is under way, per room.
const MAX_HELD: usize = 10_000;

/// The live side of a replica; its durable side (room state, archive, last
/// sequence applied) is `State::mirrors`, present once the master's snapshot
/// has arrived.
pub struct Mirror {
    /// The upstream MUC service (the link's peer key).
    pub upstream: PeerId,
    /// The room's localpart at the master.
    pub room: String,
    /// Local sessions whose join awaits the master's answer, with the history they asked for.
    /// `true` marks a provisional join, already shown here during a split.
    pending: Vec<(Jid, crate::muc::HistoryRequest, bool)>,
    /// Stanza-ids of local messages delivered here before the master's echo.
    delivered_early: HashSet<String>,
    /// The same ids, oldest first, to forget the oldest past the bound (a
    /// message the master refused is never echoed).
    early_order: std::collections::VecDeque<String>,
    /// A resync was asked for; messages that arrive past a gap wait for it.
    resyncing: bool,
    held: Vec<crate::model::room::Archived>,
}

impl Mirror {
    /// What it holds for later: joins awaiting the master, messages held
    /// past a gap, local messages awaiting the master's echo.
    pub fn backlog(&self) -> usize {
        self.pending.len() + self.held.len() + self.delivered_early.len()
    }

    fn new(upstream: &PeerId, room: &str) -> Mirror {
        Mirror {
            upstream: upstream.clone(),
            room: room.to_string(),
            pending: Vec::new(),
            delivered_early: HashSet::new(),
            early_order: std::collections::VecDeque::new(),
            resyncing: false,
            held: Vec::new(),
        }
    }
}

impl Ctx<'_> {
    /// A local user's stanza to a room on an upstream MUC service.
    pub(crate) fn on_mirror_stanza(&mut self, conn: ConnId, el: Element, to: Jid) {
        let Some(me) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        let upstream = PeerId::new(to.domain());
        let Some(room) = to.local().map(str::to_string) else {
            return self.relay_up(&upstream, &me, &to, el); // The service itself (disco…).
        };
        let key = to.to_bare().to_string();
        let joined_nick = self.mirror_rooms.get(&key).and_then(|l| l.nick_of(&me));
        // While the master is unreachable, what needs it fails at once, clearly.
        let cached = self.replicas.contains_key(&key);
        if !self.link_is_up(&upstream) && needs_master(&el, joined_nick.is_some(), cached) {
            return self.master_unreachable(conn, &el, &upstream);
        }
        match (el.name.as_str(), to.resource()) {
            ("presence", Some(nick)) => {
                let nick = nick.to_string();
                match (el.get_attr("type"), joined_nick) {
                    (Some("unavailable"), Some(_)) => {
                        self.mirror_local_leave(&key, &me, strip_addressing(&el))
                    }
                    (None, Some(_)) => {
                        let presence = strip_addressing(&el);
                        self.link_send(
                            &upstream,
                            &LinkEvent::Update {
                                room,
                                nick,
                                from: me,
                                presence,
                            },
                        );
                    }
                    (None, None) => self.mirror_join(conn, &upstream, &room, &key, &nick, &el),
                    (Some("unavailable"), None) if self.is_pending(&key, &me) => {
                        self.cancel_join(&key, &me, &nick, strip_addressing(&el))
                    }
                    _ => {}
                }
            }
            ("message", None) if el.get_attr("type") == Some("groupchat") => {
                let is_subject =
                    el.has_child("subject", ns::CLIENT) && !el.has_child("body", ns::CLIENT);
                match joined_nick {
                    None => self.bounce(conn, &el, "not-acceptable"),
                    Some(nick) if !is_subject => self.mirror_groupchat(conn, &key, &nick, el),
                    Some(_) => self.relay_up(&upstream, &me, &to, el),
                }
            }
            ("iq", Some(nick))
                if el.get_attr("type") == Some("get") && el.has_child("ping", ns::PING) =>
            {
                // Self-ping (XEP-0410) is answered here: it must work while the link is slow.
                if joined_nick.as_deref() == Some(nick) {
                    let r = stanza::iq_result(&el, &to.to_string(), None);
                    self.send_el(conn, &r);
                } else {
                    self.bounce(conn, &el, "not-acceptable");
                }
            }
            ("iq", None)
                if el.get_attr("type") == Some("get")
                    && el.has_child("vCard", crate::im::NS_VCARD)
                    && self.replicas.contains_key(&key) =>
            {
                // The room's avatar, from the replica: it crossed the link once.
                let card = crate::muc::stored_vcard(&self.replicas[&key].state);
                let r = stanza::iq_result(&el, &to.to_string(), Some(card));
                self.send_paced(conn, r.to_xml(ns::CLIENT).into_bytes());
            }
            ("iq", None)
                if el.get_attr("type") == Some("set") && el.has_child("query", mns::MAM) =>
            {
                // The site's copy answers archive queries.
                if self.replicas.contains_key(&key) && joined_nick.is_some() {
                    let query = el.get_child("query", mns::MAM).expect("checked").clone();
                    self.mirror_mam(conn, &el, &key, &query);
                } else {
                    self.relay_up(&upstream, &me, &to, el);
                }
            }
            _ => self.relay_up(&upstream, &me, &to, el),
        }
    }

    fn relay_up(&mut self, upstream: &PeerId, from: &Jid, to: &Jid, el: Element) {
        let stanza = strip_addressing(&el);
        self.link_send(
            upstream,
            &LinkEvent::Relay {
                from: from.clone(),
                to: to.clone(),
                stanza,
            },
        );
    }

    fn mirror_join(
        &mut self,
        conn: ConnId,
        upstream: &PeerId,
        room: &str,
        key: &str,
        nick: &str,
        el: &Element,
    ) {
        let Some(me) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        if self.bound.resource(conn).map_or(0, |r| r.rooms.len()) >= self.cfg.muc.rooms_per_session
        {
            return self.bounce(conn, el, "resource-constraint");
        }
        let first = !self.mirrors.contains_key(key);
        let m = self
            .mirrors
            .entry(key.to_string())
            .or_insert_with(|| Mirror::new(upstream, room));
        m.pending.retain(|(p, _, _)| p != &me);
        let history = crate::muc::HistoryRequest::from_join(el.get_child("x", mns::MUC));
        // During a split, a room known here admits provisionally from its
        // cached state; the master confirms or refuses when the link is back.
        let provisional = self.replicas.contains_key(key) && !self.link_is_up(upstream);
        if provisional {
            if let Err(condition) = self.cached_admission(key, &me, nick, el) {
                return self.bounce(conn, el, condition);
            }
        }
        let m = self.mirrors.get_mut(key).expect("mirror");
        m.pending.push((me.clone(), history.clone(), provisional));
        self.mirror_rooms.entry(key.to_string()).or_default();
        self.out.push(MirrorOutput::Joined {
            conn,
            key: key.to_string(),
        });
        if first {
            log::info!("mirror {key}: created for {me}");
        }
        if provisional {
            self.provisional_join(key, &me, nick, el, &history);
        }
        // The mirror serves history itself: the master needs only the rest.
        let mut presence = strip_addressing(el);
        for c in presence.children.iter_mut() {
            if let XmlNode::Element(x) = c {
                if x.is("x", mns::MUC) {
                    x.children
                        .retain(|h| !matches!(h, XmlNode::Element(h) if h.name == "history"));
                }
            }
        }
        self.link_send(
            upstream,
            &LinkEvent::Join {
                room: room.to_string(),
                nick: nick.to_string(),
                from: me,
                presence,
            },
        );
    }

    fn mirror_groupchat(&mut self, conn: ConnId, key: &str, nick: &str, el: Element) {
        let Some(me) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        let occ = &self.mirror_rooms[key].occupants[nick];
        if occ.role == crate::muc::Role::Visitor {
            return self.bounce(conn, &el, "forbidden");
        }
        let occupant_id = occ.occupant_id.clone();
        let random = self.random_id();
        let stanza_id = format!("{}-{random}", self.cfg.domain);
        // Local delivery at once, with the identity the message keeps everywhere.
        let out = crate::muc::stamp_groupchat(
            &el,
            &format!("{key}/{nick}"),
            key,
            &stanza_id,
            &occupant_id,
        );
        self.mirror_broadcast(key, &out.to_xml(ns::CLIENT));
        let m = self.mirrors.get_mut(key).expect("mirror");
        let (upstream, room) = (m.upstream.clone(), m.room.clone());
        let event = LinkEvent::Groupchat {
            room,
            from: me,
            nick: nick.to_string(),
            stanza_id: stanza_id.clone(),
            message: strip_addressing(&el),
        };
        if event.is_transient() {
            // A chat state: to the master now or never, and no echo to await.
            return self.link_send_transient(&upstream, &event);
        }
        m.delivered_early.insert(stanza_id.clone());
        m.early_order.push_back(stanza_id.clone());
        if m.early_order.len() > MAX_EARLY {
            if let Some(old) = m.early_order.pop_front() {
                m.delivered_early.remove(&old);
            }
        }
        self.link_send(&upstream, &event);
    }

    /// A chat state from the master's room: to the local sessions, as the
    /// room shows it (nothing is kept).
    fn mirror_transient(&mut self, upstream: &PeerId, ev: LinkEvent) {
        let LinkEvent::Groupchat {
            room,
            nick,
            stanza_id,
            message,
            ..
        } = ev
        else {
            return;
        };
        let key = &format!("{room}@{upstream}");
        let Some(occupant_id) = self
            .mirror_rooms
            .get(key)
            .and_then(|l| l.occupants.get(&nick))
            .map(|o| o.occupant_id.clone())
        else {
            return; // Not (or no longer) in the room as this site shows it.
        };
        let out = crate::muc::stamp_groupchat(
            &message,
            &format!("{key}/{nick}"),
            key,
            &stanza_id,
            &occupant_id,
        );
        self.mirror_broadcast(key, &out.to_xml(ns::CLIENT));
    }

    /// One serialised message to every local session in a mirrored room.
    fn mirror_broadcast(&mut self, key: &str, xml: &str) {
        let Some(live) = self.mirror_rooms.get(key) else {
            return;
        };
        let sessions: Vec<Jid> = live
            .occupants
            .values()
            .flat_map(|o| o.sessions.iter().cloned())
            .collect();
        // Every copy shares these bytes, whoever is slow to read it.
        let rest: std::rc::Rc<[u8]> = xml.as_bytes()["<message".len()..].into();
        for s in sessions {
            if let Some(c) = self.bound.conn_of_full(&s) {
                let to = format!("<message to='{}'", escape(&s.to_string()));
                let bytes = Payload::shared(to.into_bytes(), &rest);
                self.count_fanout(key, bytes.len());
                self.send(c, bytes);
            }
        }
    }

    /// Bytes a mirror delivered locally: without this site, each copy would
    /// have crossed the link to a client of the master.
    fn count_fanout(&mut self, key: &str, bytes: usize) {
        if let Some(m) = self.mirrors.get(key) {
            self.out.push(MirrorOutput::Fanout {
                upstream: m.upstream.clone(),
                bytes,
            });
        }
    }

    /// An event from the master of rooms we mirror.
    pub(crate) fn on_upstream_event(&mut self, peer: &PeerId, ev: LinkEvent) {
        match ev {
            LinkEvent::Relay { from, to, stanza } => self.relay_down(peer, from, to, stanza),
            LinkEvent::Snapshot {
                room,
                config,
                affiliations,
                subject,
                occupants,
                history,
                next_seq,
                gap,
                locked,
            } => {
                let key = format!("{room}@{peer}");
                let Some(m) = self.mirrors.get_mut(&key) else {
                    return;
                };
                // A replica already cached here (live, or kept across a restart).
                let cached = self.replicas.get(&key).map(|c| c.last_seq);
                // Back from a split: what local users missed, in the master's
                // order, marked as delayed (their own messages they have seen).
                let missed: Vec<crate::model::room::Archived> = match cached {
                    Some(last) => history
                        .iter()
                        .filter(|h| h.seq > last && !m.delivered_early.remove(&h.stanza_id))
                        .cloned()
                        .collect(),
                    None => Vec::new(),
                };
                m.resyncing = false;
                let mut held = std::mem::take(&mut m.held);
                let resync = cached.is_some();
                self.commit(crate::state::Record::Mirror {
                    key: key.clone(),
                    change: Box::new(MirrorRecord::Synced {
                        upstream: peer.clone(),
                        room,
                        config,
                        affiliations,
                        subject,
                        history,
                        next_seq,
                    }),
                });
                if locked {
                    self.commit_mirror(&key, MirrorRecord::Locked);
                }
                held.sort_by_key(|h| h.seq);
                if resync {
                    self.deliver_missed(&key, &missed, gap);
                    self.reconcile_occupants(&key, occupants);
                    for msg in held {
                        self.mirror_message(&key, msg);
                    }
                } else {
                    self.mirror_rooms.entry(key.clone()).or_default();
                    for info in occupants {
                        self.insert_remote_occupant(&key, &info);
                    }
                }
                log::info!("mirror {key}: synchronised at event {next_seq}");
            }
            LinkEvent::Occupant { room, info, change } => {
                self.mirror_occupant(&format!("{room}@{peer}"), info, change)
            }
            LinkEvent::Message { room, msg } => self.mirror_message(&format!("{room}@{peer}"), msg),
            LinkEvent::Subject { room, seq, subject } => {
                let key = format!("{room}@{peer}");
                if !self.replicas.contains_key(&key) {
                    return;
                }
                self.commit_mirror(&key, MirrorRecord::Subject { seq, subject });
                for s in self.local_sessions(&key) {
                    self.mirror_send_subject(&key, &s);
                }
            }
            LinkEvent::Config { room, config } => {
                let key = format!("{room}@{peer}");
                let changed = self
                    .replicas
                    .get(&key)
                    .is_some_and(|c| c.state.config != config);
                self.commit_mirror(&key, MirrorRecord::Config { config });
                if changed {
                    self.mirror_config_changed(&key);
                }
            }
            LinkEvent::Affiliation {
                room,
                jid,
                affiliation,
            } => self.commit_mirror(
                &format!("{room}@{peer}"),
                MirrorRecord::Affiliation { jid, affiliation },
            ),
            LinkEvent::Destroyed { room, alt, reason } => {
                self.mirror_destroyed(&format!("{room}@{peer}"), alt, reason)
            }
            LinkEvent::Vcard { room, vcard } => self.mirror_vcard(&format!("{room}@{peer}"), vcard),
            ev @ LinkEvent::Groupchat { .. } if ev.is_transient() => {
                self.mirror_transient(peer, ev)
            }
            _ => log::warn!("link {peer}: refused a site-to-master event from the master"),
        }
    }

    /// Messages from a split, to every local session, with `<delay/>`.
    fn deliver_missed(&mut self, key: &str, missed: &[crate::model::room::Archived], gap: bool) {
        let sessions = self.local_sessions(key);
        if gap {
            let notice = Element::new("message", ns::CLIENT)
                .attr("from", key)
                .attr("type", "groupchat")
                .child(Element::new("body", ns::CLIENT).text(
                    "Some messages sent while the link was down are no longer kept at the room's server and could not be fetched.",
                ));
            for s in &sessions {
                let mut n = notice.clone();
                n.set_attr("to", s.to_string());
                if let Some(c) = self.bound.conn_of_full(s) {
                    self.send_el(c, &n);
                }
            }
        }
        for m in missed {
            let delay = stanza::delay(key, m.stamp_ms).to_xml(ns::CLIENT);
            for s in &sessions {
                let xml = format!(
                    "<message to='{}'{}",
                    escape(&s.to_string()),
                    &m.xml["<message".len()..]
                );
                if let Some(c) = self.bound.conn_of_full(s) {
                    let bytes = stanza::insert_before_close(&xml, &delay).into_bytes();
                    self.count_fanout(key, bytes.len());
                    self.send(c, bytes);
                }
            }
        }
    }

    /// The master's admission rules, applied to the cached room state.
    fn cached_admission(
        &self,
        key: &str,
        who: &Jid,
        nick: &str,
        el: &Element,
    ) -> Result<(), &'static str> {
        let rs = &self.replicas[key].state;
        let bare = who.to_bare().to_string();
        let aff = rs.affiliation(&bare);
        let live = &self.mirror_rooms[key];
        let password = el
            .get_child("x", mns::MUC)
            .and_then(|x| x.get_child("password", mns::MUC))
            .map(|p| p.text_content());
        if aff == Affiliation::Outcast {
            Err("forbidden")
        } else if rs.config.members_only && aff < Affiliation::Member {
            Err("registration-required")
        } else if rs.config.password.is_some()
            && aff < Affiliation::Admin
            && password != rs.config.password
        {
            Err("not-authorized")
        } else if live.occupants.get(nick).is_some_and(|o| o.bare != bare) {
            Err("conflict")
        } else if live.occupants.len() >= rs.config.max_users as usize && aff < Affiliation::Admin {
            Err("service-unavailable")
        } else {
            Ok(())
        }
    }

    /// Admit a local user during a split, from cached state, and show it.
    fn provisional_join(
        &mut self,
        key: &str,
        who: &Jid,
        nick: &str,
        el: &Element,
        history: &crate::muc::HistoryRequest,
    ) {
        use base64::Engine;
        let rs = &self.replicas[key].state;
        let bare = who.to_bare().to_string();
        let role = match rs.affiliation(&bare) {
            Affiliation::Owner | Affiliation::Admin => crate::muc::Role::Moderator,
            Affiliation::Member => crate::muc::Role::Participant,
            _ if rs.config.moderated => crate::muc::Role::Visitor,
            _ => crate::muc::Role::Participant,
        };
        // A stand-in until the master's own occupant-id arrives.
        let digest =
            ring::digest::digest(&ring::digest::SHA256, format!("{key}\0{bare}").as_bytes());
        let occupant_id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        let presence = crate::muc::occupant_payload(el);
        let live = self.mirror_rooms.entry(key.to_string()).or_default();
        match live.occupants.get_mut(nick) {
            Some(o) => o.sessions.push(who.clone()),
            None => {
                live.occupants.insert(
                    nick.to_string(),
                    Occupant {
                        bare,
                        sessions: vec![who.clone()],
                        role,
                        presence,
                        occupant_id,
                    },
                );
            }
        }
        log::info!(
            "mirror {key}: {who} joined provisionally as {nick} (the master is unreachable)"
        );
        self.finish_local_join(key, nick, who, history);
    }

    /// A fresh snapshot for a replica that was already in use: show local
    /// users only the differences (who left, who came) and keep local sessions.
    fn reconcile_occupants(&mut self, key: &str, occupants: Vec<OccupantInfo>) {
        let local_domain = self.cfg.domain.clone();
        let is_remote = |o: &Occupant| o.sessions.iter().all(|s| s.domain() != local_domain);
        let now: std::collections::BTreeMap<String, OccupantInfo> =
            occupants.into_iter().map(|o| (o.nick.clone(), o)).collect();
        let gone: Vec<String> = self.mirror_rooms[key]
            .occupants
            .iter()
            .filter(|(n, o)| is_remote(o) && !now.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for nick in gone {
            self.remote_departs(key, &nick, &[]);
        }
        for (nick, info) in now {
            // A provisional join the master has (a session kept across a
            // restart here, rejoined while the link was down): confirmed.
            // One waiting for the master is completed by its `Joined`.
            if let (Some(m), Ok(jid)) = (self.mirrors.get_mut(key), Jid::parse(&info.jid)) {
                m.pending
                    .retain(|(p, _, provisional)| !(*provisional && p == &jid));
            }
            let live = self.mirror_rooms.get_mut(key).expect("room");
            match live.occupants.get_mut(&nick) {
                Some(o) => {
                    let presence = bounded_presence(&info.presence, self.cfg.muc.presence_bytes);
                    let changed = o.role != info.role || o.presence != presence;
                    o.role = info.role;
                    o.presence = presence;
                    o.occupant_id = info.occupant_id.clone();
                    if changed {
                        self.mirror_broadcast_presence(key, &nick, &[], false, None);
                    }
                }
                None => {
                    if self.insert_remote_occupant(key, &info) {
                        self.mirror_broadcast_presence(key, &nick, &[], false, None);
                    }
                }
            }
        }
    }

    /// At start: the replicas cached in the log, without occupants until
    /// local users join again (during a split, from the cache).
    pub(crate) fn restore_mirrors(&mut self) {
        let cached: Vec<(String, PeerId, String)> = self
            .replicas
            .iter()
            .map(|(k, c)| (k.clone(), c.upstream.clone(), c.room.clone()))
            .collect();
        for (key, upstream, room) in cached {
            if !self.is_mirrored_service(&Jid::parse(&key).expect("cached room JID")) {
                // The upstream was removed from the configuration.
                self.commit_mirror(&key, MirrorRecord::Drop);
                continue;
            }
            self.mirrors
                .insert(key.clone(), Mirror::new(&upstream, &room));
            self.mirror_rooms.entry(key).or_default();
        }
    }

    /// The link to `upstream` is up: a replica nobody here has rejoined since
    /// the restart goes after the grace period.
    pub(crate) fn schedule_idle_mirror_drop(&mut self, upstream: &PeerId) {
        let idle = self
            .mirrors_of(upstream)
            .iter()
            .any(|k| self.local_sessions(k).is_empty());
        if idle {
            let due = self.now.mono_ms + self.cfg.link.grace_ms;
            self.idle_due.insert(upstream.clone(), due);
        }
    }

    pub(crate) fn drop_idle_mirrors(&mut self, upstream: &PeerId) {
        for key in self.mirrors_of(upstream) {
            self.maybe_drop_mirror(&key);
        }
    }

    /// Keys of the rooms mirrored here from `upstream`.
    /// The rooms mirrored from `upstream`, in name order.
    fn mirrors_of(&self, upstream: &PeerId) -> Vec<String> {
        let mut keys: Vec<String> = self
            .mirrors
            .iter()
            .filter(|(_, m)| m.upstream == *upstream)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The master has been out of reach past the grace period: its occupants
    /// (everyone not at this site) are shown leaving with status 333.
    pub(crate) fn mirror_detach(&mut self, upstream: &PeerId) {
        let local_domain = self.cfg.domain.clone();
        let keys = self.mirrors_of(upstream);
        for key in keys {
            let remote: Vec<String> = self.mirror_rooms[&key]
                .occupants
                .iter()
                .filter(|(_, o)| o.sessions.iter().all(|s| s.domain() != local_domain))
                .map(|(n, _)| n.clone())
                .collect();
            for nick in remote {
                self.remote_departs(&key, &nick, &[333]);
            }
        }
    }

    /// Back from a split or a master restart: announce our occupants, then
    /// ask for everything after the last event applied here.
    pub(crate) fn resync_upstream(&mut self, upstream: &PeerId) {
        self.reannounce_occupants(upstream);
        let mut rooms = Vec::new();
        for (key, m) in self
            .mirrors
            .iter_mut()
            .filter(|(_, m)| m.upstream == *upstream)
        {
            if let Some(c) = self.replicas.get(key) {
                m.resyncing = true;
                rooms.push((m.room.clone(), c.last_seq));
            }
        }
        for (room, last_seq) in rooms {
            self.link_send(upstream, &LinkEvent::Resync { room, last_seq });
        }
    }

    /// At start: every session named in events still queued for `upstream`
    /// died with the previous run, but those `kept` for their resumption.
    /// Their events still go (messages are not lost), followed by a leave,
    /// so the master keeps no ghost occupant.
    pub(crate) fn leave_for_dead_sessions(&mut self, upstream: &PeerId, kept: &BTreeSet<Jid>) {
        let Some(queue) = self.link_queues.get(upstream) else {
            return;
        };
        let mut sessions = std::collections::BTreeSet::new();
        for queued in &queue.unacked {
            match queued.event(upstream) {
                Some(LinkEvent::Join { room, from, .. })
                | Some(LinkEvent::Update { room, from, .. })
                | Some(LinkEvent::Groupchat { room, from, .. }) => {
                    sessions.insert((room, from));
                }
                _ => {}
            }
        }
        for (room, from) in sessions {
            if kept.contains(&from) {
                continue;
            }
            let presence = Element::new("presence", ns::CLIENT).attr("type", "unavailable");
            self.link_send(
                upstream,
                &LinkEvent::Leave {
                    room,
                    from,
                    presence,
                },
            );
        }
    }

    /// The node is stopping and keeps the sessions `kept`: in the mirrored
    /// rooms they are in, the occupants at other nodes are shown leaving
    /// (332). Nothing here keeps them across the restart; the master's
    /// list after it brings back those still in.
    pub(crate) fn mirror_shutdown(&mut self, kept: &BTreeSet<Jid>) {
        let local = self.cfg.domain.clone();
        let mut keys: Vec<String> = self
            .mirror_rooms
            .iter()
            .filter(|(_, l)| {
                l.occupants
                    .values()
                    .any(|o| o.sessions.iter().any(|s| kept.contains(s)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        for key in keys {
            let remote: Vec<String> = self.mirror_rooms[&key]
                .occupants
                .iter()
                .filter(|(_, o)| o.sessions.iter().all(|s| s.domain() != local))
                .map(|(n, _)| n.clone())
                .collect();
            for nick in remote {
                self.remote_departs(&key, &nick, &[332]);
            }
        }
    }

    /// After the master restarted: tell it again who is in its rooms from here.
    pub(crate) fn reannounce_occupants(&mut self, upstream: &PeerId) {
        let keys = self.mirrors_of(upstream);
        for key in keys {
            let room = self.mirrors[&key].room.clone();
            let mut joins = Vec::new();
            for (nick, o) in &self.mirror_rooms[&key].occupants {
                for s in o.sessions.iter().filter(|s| s.domain() == self.cfg.domain) {
                    let presence = o.presence.clone().child(Element::new("x", mns::MUC));
                    joins.push(LinkEvent::Join {
                        room: room.clone(),
                        nick: nick.clone(),
                        from: s.clone(),
                        presence,
                    });
                }
            }
            log::info!(
                "mirror {key}: the master restarted; re-announcing {} local sessions",
                joins.len()
            );
            for j in joins {
                self.link_send(upstream, &j);
            }
        }
    }

    /// A room message in the master's order: into the replica, and to local
    /// users unless they already have it.
    fn mirror_message(&mut self, key: &str, msg: crate::model::room::Archived) {
        let (Some(m), Some(c)) = (self.mirrors.get_mut(key), self.replicas.get(key)) else {
            return;
        };
        if msg.seq <= c.last_seq {
            return; // Already applied (e.g. part of a snapshot).
        }
        if msg.seq > c.last_seq + 1 {
            // Events were skipped (the master showed us as gone for a while):
            // hold this one and ask for the gap, unless that is already asked.
            // Bounded: the snapshot answering the resync holds these anyway.
            if m.held.len() < MAX_HELD {
                m.held.push(msg);
            }
            if !m.resyncing {
                m.resyncing = true;
                let (upstream, room, last_seq) = (m.upstream.clone(), m.room.clone(), c.last_seq);
                self.link_send(&upstream, &LinkEvent::Resync { room, last_seq });
            }
            return;
        }
        let early = m.delivered_early.remove(&msg.stanza_id);
        let (xml, stamp_ms) = (msg.xml.clone(), msg.stamp_ms);
        self.commit_mirror(key, MirrorRecord::Message { msg });
        self.apply_moderation(key, &xml, stamp_ms);
        if !early {
            // Held up (a split, a queue): say when it was really sent.
            let late = self.now.unix_ms > stamp_ms + LATE_AFTER_MS;
            let xml = if late {
                stanza::insert_before_close(&xml, &stanza::delay(key, stamp_ms).to_xml(ns::CLIENT))
            } else {
                xml
            };
            self.mirror_broadcast(key, &xml);
        }
    }

    /// A message from the master that retracts an archived one (XEP-0425):
    /// the replica's copy reads as the master's tombstone from now on.
    fn apply_moderation(&mut self, key: &str, xml: &str, stamp_ms: u64) {
        let Some(id) = crate::muc::moderation::retracted_id(xml) else {
            return;
        };
        let Some(c) = self.replicas.get(key) else {
            return;
        };
        let archive = &c.state.archive;
        let Some(msg) = archive
            .seq_of(&id)
            .and_then(|seq| archive.get(archive.position(seq)?))
        else {
            return;
        };
        let Ok(retraction) = crate::xml::parse_fragment(xml) else {
            return;
        };
        if let Some(tombstone) = crate::muc::moderation::tombstone(&msg, &retraction, stamp_ms) {
            let seq = msg.seq;
            self.commit_mirror(key, MirrorRecord::Moderated { seq, tombstone });
        }
    }

    fn local_sessions(&self, key: &str) -> Vec<Jid> {
        let Some(live) = self.mirror_rooms.get(key) else {
            return Vec::new();
        };
        live.occupants
            .values()
            .flat_map(|o| o.sessions.iter())
            .filter(|s| s.domain() == self.cfg.domain)
            .cloned()
            .collect()
    }

    fn mirror_occupant(&mut self, key: &str, info: OccupantInfo, change: OccupantChange) {
        if !self.mirrors.contains_key(key) {
            return;
        }
        let jid = Jid::parse(&info.jid).ok();
        let nick = info.nick.clone();
        let known = self
            .mirror_rooms
            .get(key)
            .is_some_and(|l| l.occupants.contains_key(&nick));
        if !known && change != OccupantChange::Joined {
            return; // Already gone here (a local leave confirmed at once).
        }
        let cached = self.replicas.get(key);
        if cached.is_some_and(|c| c.state.affiliation(&info.bare) != info.affiliation) {
            self.commit_mirror(
                key,
                MirrorRecord::Affiliation {
                    jid: info.bare.clone(),
                    affiliation: info.affiliation,
                },
            );
        }
        match change {
            OccupantChange::Joined => {
                // The master gave this nick to someone else (a provisional join
                // here lost it): its occupant wins, ours goes.
                let taken = self
                    .mirror_rooms
                    .get(key)
                    .and_then(|l| l.occupants.get(&nick))
                    .is_some_and(|o| o.bare != info.bare);
                if taken {
                    self.remote_departs(key, &nick, &[]);
                }
                let live = self.mirror_rooms.entry(key.to_string()).or_default();
                let local_joiner = jid
                    .as_ref()
                    .and_then(|j| self.mirrors[key].pending.iter().find(|(p, _, _)| p == j))
                    .cloned();
                // A session already here, unchanged: a re-announcement after
                // the master restarted; nobody needs to hear of it again.
                let mut unchanged = false;
                match live.occupants.get_mut(&nick) {
                    Some(o) => {
                        let presence =
                            bounded_presence(&info.presence, self.cfg.muc.presence_bytes);
                        unchanged = jid.as_ref().is_some_and(|j| o.sessions.contains(j))
                            && o.role == info.role
                            && o.presence == presence;
                        if let Some((j, _, _)) = &local_joiner {
                            if !o.sessions.contains(j) {
                                o.sessions.push(j.clone());
                            }
                        }
                        o.role = info.role;
                        o.presence = presence;
                        o.occupant_id = info.occupant_id.clone();
                    }
                    None => {
                        let at_bound = live.occupants.len() >= self.cfg.muc.max_users as usize;
                        if at_bound && local_joiner.is_none() {
                            return log::warn!(
                                "mirror {key}: the master announced more occupants than any room may have; ignored"
                            );
                        }
                        let mut o = remote_occupant(&info, self.cfg.muc.presence_bytes);
                        if let Some((j, _, _)) = &local_joiner {
                            o.sessions = vec![j.clone()];
                        }
                        live.occupants.insert(nick.clone(), o);
                    }
                }
                match local_joiner {
                    Some((j, history, provisional)) => {
                        self.mirrors
                            .get_mut(key)
                            .expect("mirror")
                            .pending
                            .retain(|(p, _, _)| p != &j);
                        if provisional {
                            // Shown at the time; the master's confirmation only
                            // refreshes what it decides (role, occupant-id).
                            if !unchanged {
                                self.mirror_broadcast_presence(key, &nick, &[], false, None);
                            }
                        } else {
                            self.finish_local_join(key, &nick, &j, &history);
                        }
                    }
                    None if unchanged => {}
                    None => self.mirror_broadcast_presence(key, &nick, &[], false, None),
                }
            }
            OccupantChange::Updated => {
                if let Some(o) = self
                    .mirror_rooms
                    .get_mut(key)
                    .and_then(|l| l.occupants.get_mut(&nick))
                {
                    o.role = info.role;
                    o.presence = bounded_presence(&info.presence, self.cfg.muc.presence_bytes);
                    self.mirror_broadcast_presence(key, &nick, &[], false, None);
                }
            }
            OccupantChange::Renamed { new_nick } => {
                let Some(live) = self.mirror_rooms.get_mut(key) else {
                    return;
                };
                let Some(occ) = live.occupants.remove(&nick) else {
                    return;
                };
                live.occupants.insert(nick.clone(), occ.clone());
                self.render_departure(key, &nick, &[303], Some(&new_nick), None);
                let live = self.mirror_rooms.get_mut(key).expect("room");
                live.occupants.remove(&nick);
                live.occupants.insert(new_nick.clone(), occ);
                self.mirror_broadcast_presence(key, &new_nick, &[], false, None);
            }
            // Local sessions leave here at once, so the master's echo is old
            // news; and it may name a session that died with a restart whose
            // successor has the same address and is in the room now.
            OccupantChange::Left { .. }
                if jid.as_ref().is_some_and(|j| j.domain() == self.cfg.domain) => {}
            OccupantChange::Left { status } => {
                self.render_departure(key, &nick, &[], None, status.as_deref());
                self.forget_occupant(key, &nick);
            }
            OccupantChange::Removed { code, .. } => {
                self.render_departure(key, &nick, &[code], None, None);
                self.forget_occupant(key, &nick);
            }
        }
    }

    /// The join sequence for a local session, rendered from the replica.
    fn finish_local_join(
        &mut self,
        key: &str,
        nick: &str,
        session: &Jid,
        history: &crate::muc::HistoryRequest,
    ) {
        let role = self.mirror_rooms[key].occupants[nick].role;
        let sees = self.mirror_view(key).sees_jids(role);
        let others: Vec<String> = self.mirror_rooms[key]
            .occupants
            .keys()
            .filter(|n| *n != nick)
            .cloned()
            .collect();
        let Some(conn) = self.bound.conn_of_full(session) else {
            return;
        };
        for other in others {
            let mut p = self
                .mirror_view(key)
                .occupant_presence(&other, sees, &[], false);
            p.set_attr("to", session.to_string());
            self.send_el(conn, &p);
        }
        let mut codes = self.mirror_view(key).self_presence_codes();
        // Only its owner can be in a room that waits for configuration:
        // the creator, who is told to configure it (as at the master).
        if self.replicas.get(key).is_some_and(|c| c.state.locked) {
            codes.push(201);
        }
        let mut me = self
            .mirror_view(key)
            .occupant_presence(nick, sees, &codes, false);
        me.set_attr("to", session.to_string());
        self.send_el(conn, &me);
        // Others at the site see the newcomer.
        self.mirror_broadcast_presence(key, nick, &[], false, Some(session));
        self.mirror_send_history(key, session, history);
        self.mirror_send_subject(key, session);
    }

    /// Unavailable presence of `nick` to every local session, its own with 110.
    fn render_departure(
        &mut self,
        key: &str,
        nick: &str,
        codes: &[u16],
        new_nick: Option<&str>,
        status: Option<&str>,
    ) {
        for (vnick, session) in self.mirror_rooms[key].all_sessions() {
            if session.domain() != self.cfg.domain {
                continue;
            }
            let viewer_role = self.mirror_rooms[key].occupants[&vnick].role;
            let sees = self.mirror_view(key).sees_jids(viewer_role);
            let mut all = codes.to_vec();
            if vnick == nick {
                all.insert(0, 110);
            }
            let mut p = self
                .mirror_view(key)
                .occupant_presence(nick, sees, &all, true);
            if let Some(n) = new_nick {
                set_item_attr(&mut p, "nick", n);
            }
            if let Some(s) = status {
                p.children.insert(
                    0,
                    XmlNode::Element(Element::new("status", ns::CLIENT).text(s)),
                );
            }
            if let Some(c) = self.bound.conn_of_full(&session) {
                p.set_attr("to", session.to_string());
                self.send_el(c, &p);
            }
        }
    }

    /// An occupant leaves the local view of the room at the master's word
    /// (gone remote occupants, a nick the master gave to someone else); the
    /// replica stays, whoever is left.
    fn remote_departs(&mut self, key: &str, nick: &str, codes: &[u16]) {
        self.render_departure(key, nick, codes, None, None);
        if let Some(live) = self.mirror_rooms.get_mut(key) {
            live.occupants.remove(nick);
        }
    }

    fn forget_occupant(&mut self, key: &str, nick: &str) {
        let Some(occ) = self
            .mirror_rooms
            .get_mut(key)
            .and_then(|l| l.occupants.remove(nick))
        else {
            return;
        };
        for s in &occ.sessions {
            self.left_room(s, key);
        }
        self.maybe_drop_mirror(key);
    }

    /// The replica goes when no local user is in the room or joining it.
    fn maybe_drop_mirror(&mut self, key: &str) {
        let local = !self.local_sessions(key).is_empty();
        let pending = self.mirrors.get(key).is_some_and(|m| !m.pending.is_empty());
        if !local && !pending {
            self.drop_mirror(key);
            log::info!("mirror {key}: no local occupants left; dropped");
        }
    }

    fn mirror_destroyed(&mut self, key: &str, alt: Option<String>, reason: Option<String>) {
        let mut destroy = Element::new("destroy", mns::USER);
        if let Some(a) = alt {
            destroy.set_attr("jid", a);
        }
        if let Some(r) = reason {
            destroy = destroy.child(Element::new("reason", mns::USER).text(r));
        }
        for (nick, session) in self
            .mirror_rooms
            .get(key)
            .map(|l| l.all_sessions())
            .unwrap_or_default()
        {
            let Some(c) = self.bound.conn_of_full(&session) else {
                continue;
            };
            let mut p = crate::muc::destroyed_presence(&format!("{key}/{nick}"), &destroy);
            p.set_attr("to", session.to_string());
            self.send_el(c, &p);
            self.left_room(&session, key);
        }
        // Joins the master had not answered yet fail: the room is gone.
        let pending: Vec<Jid> = self
            .mirrors
            .get(key)
            .map(|m| m.pending.iter().map(|(p, _, _)| p.clone()).collect())
            .unwrap_or_default();
        for session in pending {
            let join = Element::new("presence", ns::CLIENT).attr("from", session.to_string());
            if let (Some(c), Some(error)) = (
                self.bound.conn_of_full(&session),
                stanza::error_reply(&join, "gone", "cancel", key),
            ) {
                self.send_el(c, &stanza::with_error_text(error, "the room was destroyed"));
            }
            self.left_room(&session, key);
        }
        self.drop_mirror(key);
    }

    fn drop_mirror(&mut self, key: &str) {
        self.mirrors.remove(key);
        self.mirror_rooms.remove(key);
        if self.replicas.contains_key(key) {
            self.commit_mirror(key, MirrorRecord::Drop);
        }
    }

    /// A stanza from the master's side for one of our users.
    fn relay_down(&mut self, peer: &PeerId, from: Jid, to: Jid, mut stanza: Element) {
        if to.domain() != self.cfg.domain || from.domain() != peer {
            return log::warn!("link {peer}: refused a relay from {from} to {to}");
        }
        stanza.set_attr("from", from.to_string());
        stanza.set_attr("to", to.to_string());
        let key = from.to_bare().to_string();
        // A refused join reaches only the one user (DMUC §3.2.2).
        if stanza.name == "presence" && stanza.get_attr("type") == Some("error") {
            if let Some(nick) = self.mirror_rooms.get(&key).and_then(|l| l.nick_of(&to)) {
                // A provisional join the master refused: the others see them go.
                let shown = self
                    .mirrors
                    .get(&key)
                    .is_some_and(|m| m.pending.iter().any(|(p, _, v)| p == &to && *v));
                if shown {
                    self.render_departure(&key, &nick, &[], None, None);
                    let live = self.mirror_rooms.get_mut(&key).expect("room");
                    if let Some(o) = live.occupants.get_mut(&nick) {
                        o.sessions.retain(|s| s != &to);
                        if o.sessions.is_empty() {
                            live.occupants.remove(&nick);
                        }
                    }
                }
            }
            if let Some(m) = self.mirrors.get_mut(&key) {
                m.pending.retain(|(p, _, _)| p != &to);
                self.left_room(&to, &key);
                self.maybe_drop_mirror(&key);
            }
        }
        match self.bound.conn_of_full(&to) {
            Some(c) => self.send_el(c, &stanza),
            None if stanza.name == "message" => {
                self.out.push(MirrorOutput::Route {
                    to: to.clone(),
                    el: Box::new(stanza.clone()),
                });
            }
            None => {}
        }
    }

    /// A local session leaves a mirrored room (it went away).
    pub(crate) fn mirror_leave(&mut self, key: &str, session: &Jid) {
        let presence = Element::new("presence", ns::CLIENT).attr("type", "unavailable");
        self.mirror_local_leave(key, session, presence);
    }

    /// A local session leaves: confirmed here at once (slow links, splits),
    /// told to the others here, and submitted to the master.
    fn is_pending(&self, key: &str, session: &Jid) -> bool {
        self.mirrors
            .get(key)
            .is_some_and(|m| m.pending.iter().any(|(p, _, _)| p == session))
    }

    /// A session leaves before the master answered its join: it is out at
    /// once, and the master (which may admit it first) hears it leave, in
    /// order after the join.
    fn cancel_join(&mut self, key: &str, session: &Jid, nick: &str, presence: Element) {
        let Some(m) = self.mirrors.get_mut(key) else {
            return;
        };
        m.pending.retain(|(p, _, _)| p != session);
        let (upstream, room) = (m.upstream.clone(), m.room.clone());
        if let Some(conn) = self.bound.conn_of_full(session) {
            let x = Element::new("x", mns::USER)
                .child(
                    Element::new("item", mns::USER)
                        .attr("affiliation", "none")
                        .attr("role", "none"),
                )
                .child(Element::new("status", mns::USER).attr("code", "110"));
            let own = Element::new("presence", ns::CLIENT)
                .attr("type", "unavailable")
                .attr("from", format!("{key}/{nick}"))
                .attr("to", session.to_string())
                .child(x);
            self.send_el(conn, &own);
        }
        self.left_upstream(key, session, &upstream, room, presence);
    }

    /// The session is out here: its room list, the master (in order after
    /// its join), and the mirror if nobody is left.
    fn left_upstream(
        &mut self,
        key: &str,
        session: &Jid,
        upstream: &PeerId,
        room: String,
        presence: Element,
    ) {
        self.left_room(session, key);
        self.link_send(
            upstream,
            &LinkEvent::Leave {
                room,
                from: session.clone(),
                presence,
            },
        );
        self.maybe_drop_mirror(key);
    }

    fn mirror_local_leave(&mut self, key: &str, session: &Jid, presence: Element) {
        let Some(m) = self.mirrors.get_mut(key) else {
            return;
        };
        m.pending.retain(|(p, _, _)| p != session);
        let (upstream, room) = (m.upstream.clone(), m.room.clone());
        if let Some(nick) = self.mirror_rooms.get(key).and_then(|l| l.nick_of(session)) {
            let status = presence
                .get_child("status", ns::CLIENT)
                .map(|s| s.text_content());
            let last = self.mirror_rooms[key].occupants[&nick].sessions.len() == 1;
            if last {
                self.render_departure(key, &nick, &[], None, status.as_deref());
                self.mirror_rooms
                    .get_mut(key)
                    .expect("room")
                    .occupants
                    .remove(&nick);
            } else {
                let role = self.mirror_rooms[key].occupants[&nick].role;
                let sees = self.mirror_view(key).sees_jids(role);
                let mut own = self
                    .mirror_view(key)
                    .occupant_presence(&nick, sees, &[110], true);
                own.set_attr("to", session.to_string());
                if let Some(c) = self.bound.conn_of_full(session) {
                    self.send_el(c, &own);
                }
                let o = self
                    .mirror_rooms
                    .get_mut(key)
                    .expect("room")
                    .occupants
                    .get_mut(&nick)
                    .expect("occupant");
                o.sessions.retain(|s| s != session);
            }
        }
        self.left_upstream(key, session, &upstream, room, presence);
    }

    fn link_is_up(&self, upstream: &PeerId) -> bool {
        self.links.is_up(upstream)
    }

    fn master_unreachable(&mut self, conn: ConnId, el: &Element, upstream: &PeerId) {
        let Some(mut reply) = stanza::error_reply(
            el,
            "remote-server-timeout",
            "wait",
            el.get_attr("to").unwrap_or(upstream),
        ) else {
            return;
        };
        if let Some(XmlNode::Element(error)) = reply.children.last_mut() {
            error.children.push(XmlNode::Element(
                Element::new("text", ns::STANZA_ERRORS)
                    .text(format!("{upstream} is unreachable from this site right now; try again when the link is back")),
            ));
        }
        self.send_el(conn, &reply);
    }

    fn mirror_mam(&mut self, conn: ConnId, el: &Element, key: &str, query: &Element) {
        let Some(jid) = self.bound.jid_of(conn).cloned() else {
            return;
        };
        let max_page = self.cfg.muc.mam_max_page;
        match crate::muc::mam::answer(&self.mirror_view(key), &jid, el, query, max_page) {
            Ok(page) => {
                for xml in page.results {
                    self.send_paced(conn, xml.into_bytes());
                }
                self.send_el(conn, &page.fin);
            }
            Err(condition) => self.bounce(conn, el, condition),
        }
    }
}

fn remote_occupant(info: &OccupantInfo, presence_bytes: usize) -> Occupant {
    Occupant {
        bare: info.bare.clone(),
        sessions: Jid::parse(&info.jid).into_iter().collect(),
        role: info.role,
        presence: bounded_presence(&info.presence, presence_bytes),
        occupant_id: info.occupant_id.clone(),
    }
}

/// A remote occupant's presence as a replica keeps it: a master may send a
/// huge one, the site keeps only a plain presence then.
fn bounded_presence(presence: &Element, max_bytes: usize) -> Element {
    if presence.to_xml(ns::CLIENT).len() <= max_bytes {
        presence.clone()
    } else {
        Element::new("presence", ns::CLIENT)
    }
}

impl Ctx<'_> {
    /// Show a remote occupant the master announced, unless the room is
    /// already at the most occupants any room may have here (a master
    /// cannot make a site hold without bound). True if it was added.
    fn insert_remote_occupant(&mut self, key: &str, info: &OccupantInfo) -> bool {
        let (max, presence_bytes) = (self.cfg.muc.max_users as usize, self.cfg.muc.presence_bytes);
        let Some(live) = self.mirror_rooms.get_mut(key) else {
            return false;
        };
        if live.occupants.len() >= max && !live.occupants.contains_key(&info.nick) {
            log::warn!(
                "mirror {key}: the master announced more occupants than any room may have; ignored"
            );
            return false;
        }
        live.occupants
            .insert(info.nick.clone(), remote_occupant(info, presence_bytes));
        true
    }
}

/// What cannot be done without the master: joining a room not joined yet,
/// and administration (room owner and admin requests, subject changes).
impl Ctx<'_> {
    /// The master's vCard for a mirrored room, kept within the replicas'
    /// bounds (past them the site has none to show, and says so in its log).
    fn mirror_vcard(&mut self, key: &str, vcard: Option<Element>) {
        use crate::model::room::{VCARDS_TOTAL, VCARD_BYTES};
        let mut vcard = vcard.map(|v| v.to_xml(ns::CLIENT));
        let size = vcard.as_ref().map_or(0, String::len);
        let others: usize = self
            .replicas
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .filter_map(|(_, c)| c.state.vcard.as_ref())
            .map(String::len)
            .sum();
        if size > VCARD_BYTES || others + size > VCARDS_TOTAL {
            log::warn!(
                "mirror {key}: the room's vCard ({size} bytes) is past the bounds; not kept"
            );
            vcard = None;
        }
        let Some(before) = self.replicas.get(key).map(|c| &c.state.vcard) else {
            return;
        };
        if *before == vcard {
            return; // The same again (it follows every snapshot).
        }
        self.commit_mirror(key, MirrorRecord::Vcard { vcard });
        self.mirror_config_changed(key);
    }

    /// Status 104 to the local occupants: the room's configuration (or
    /// its avatar) changed at the master.
    fn mirror_config_changed(&mut self, key: &str) {
        let Ok(room) = Jid::parse(key) else {
            return;
        };
        let m = Element::new("message", ns::CLIENT)
            .attr("from", room.to_string())
            .attr("type", "groupchat")
            .child(
                Element::new("x", mns::USER)
                    .child(Element::new("status", mns::USER).attr("code", "104")),
            );
        for s in self.local_sessions(key) {
            self.deliver_local(&s, m.clone());
        }
    }
}

fn needs_master(el: &Element, joined: bool, cached: bool) -> bool {
    match el.name.as_str() {
        "presence" => !joined && !cached && el.get_attr("type").is_none(),
        "iq" => el.elements().any(|p| {
            p.ns == mns::ADMIN
                || p.ns == mns::OWNER
                || (p.is("vCard", crate::im::NS_VCARD) && el.get_attr("type") == Some("set"))
        }),
        "message" => el.has_child("subject", ns::CLIENT) && !el.has_child("body", ns::CLIENT),
        _ => false,
    }
}

/// The stanza without `from`/`to`: the event carries the addressing.
fn strip_addressing(el: &Element) -> Element {
    let mut e = el.clone();
    e.remove_attr("from");
    e.remove_attr("to");
    e
}

fn set_item_attr(p: &mut Element, name: &str, value: &str) {
    for c in p.children.iter_mut() {
        if let XmlNode::Element(x) = c {
            if x.is("x", mns::USER) {
                if let Some(XmlNode::Element(item)) = x.children.first_mut() {
                    item.set_attr(name, value);
                }
            }
        }
    }
}
