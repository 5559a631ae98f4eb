//! Multi-user chat (XEP-0045): the rooms this node masters, on its MUC
//! service (`[muc] service`). Durable room state lives in `state.rooms` and
//! changes only through room records; who is in a room is live state here.
//!
//! Every room message gets its `stanza-id` (XEP-0359) and a per-room
//! sequence number where it is first submitted, so mirrors (a later stage)
//! can keep the master's order and identity.

mod admin;
pub mod form;
pub mod mam;
pub(crate) mod moderation;
mod service;
mod sites;
#[cfg(test)]
mod tests;
mod vcard;
pub mod view;

pub(crate) use service::Ctx;
pub use service::{MucOutput, Service};
pub(crate) use vcard::stored_vcard;

pub use crate::model::occupants::{LiveRoom, Occupant, Role};
pub use view::RoomView;

/// Who sent a stanza to a room: a session here, or a user at a mirroring site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A session here, with its full JID.
    Local {
        conn: ConnId,
        jid: Jid,
    },
    Remote {
        peer: PeerId,
        jid: Jid,
    },
}

use crate::common::{ConnId, Payload, PeerId};
use crate::jid::Jid;
use crate::model::event::{LinkEvent, OccupantChange};
use crate::model::room::{Affiliation, Archived, RoomRecord, RoomState, Rooms, Subject};
use crate::stanza;
use crate::xml::{escape, ns, Element, Node as XmlNode};
use std::collections::BTreeSet;

use crate::xml::muc_ns as mns;

/// What a joining client asked for in `<history/>`.
#[derive(Default, Debug, Clone)]
pub struct HistoryRequest {
    maxstanzas: Option<usize>,
    maxchars: Option<usize>,
    seconds: Option<u64>,
    since: Option<u64>,
}

impl HistoryRequest {
    pub fn from_join(x: Option<&Element>) -> HistoryRequest {
        let Some(h) = x.and_then(|x| x.get_child("history", mns::MUC)) else {
            return HistoryRequest::default();
        };
        let num = |a: &str| h.get_attr(a).and_then(|v| v.parse::<u64>().ok());
        HistoryRequest {
            maxstanzas: num("maxstanzas").map(|n| n as usize),
            maxchars: num("maxchars").map(|n| n as usize),
            seconds: num("seconds"),
            since: h.get_attr("since").and_then(stanza::parse_timestamp),
        }
    }
}

impl Ctx<'_> {
    pub(crate) fn is_muc_service(&self, jid: &Jid) -> bool {
        jid.domain() == self.cfg.muc_service
    }

    /// The JID of a room mastered here, from its localpart.
    pub(crate) fn room_jid(&self, room: &str) -> String {
        format!("{room}@{}", self.cfg.muc_service)
    }

    /// Rooms mastered here that have occupants now, in name order (so
    /// what is done to each happens in the same order in every run).
    pub(crate) fn mastered_live_rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.live_rooms.keys().cloned().collect();
        rooms.sort_unstable();
        rooms
    }

    /// Durable state of a room mastered here.
    pub(crate) fn room_state(&self, room: &str) -> &RoomState {
        match self.rooms.get(room) {
            Some(r) => r,
            None => unsynced(),
        }
    }

    fn occupant_jid(&self, room: &str, nick: &str) -> String {
        self.view(room).occupant_jid(nick)
    }

    /// XEP-0421: stable per person and room, unlinkable across rooms.
    fn occupant_id(&self, room: &str, bare: &str) -> String {
        use base64::Engine;
        let salt = &self.rooms[room].salt;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(salt);
        ctx.update(bare.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..12])
    }

    fn role_for(&self, room: &str, affiliation: Affiliation) -> Role {
        let moderated = self.room_state(room).config.moderated;
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    fn live(&self, room: &str) -> Option<&LiveRoom> {
        self.live_rooms.get(room)
    }

    pub(crate) fn origin_jid(&self, origin: &Origin) -> Jid {
        match origin {
            Origin::Local { jid, .. } => jid.clone(),
            Origin::Remote { jid, .. } => jid.clone(),
        }
    }

    /// Answer whoever sent a stanza.
    pub(crate) fn reply(&mut self, origin: &Origin, el: &Element) {
        match origin {
            Origin::Local { conn, .. } => self.send_el(*conn, el),
            Origin::Remote { jid, .. } => {
                let jid = jid.clone();
                self.send_to_jid(&jid, el.clone());
            }
        }
    }

    /// Answer with already serialised XML (archive results, paced).
    pub(crate) fn reply_raw(&mut self, origin: &Origin, xml: String) {
        match origin {
            Origin::Local { conn, .. } => self.send_paced(*conn, xml.into_bytes()),
            Origin::Remote { .. } => match crate::xml::parse_fragment(&xml) {
                Ok(el) => self.reply(origin, &el),
                Err(e) => log::warn!("muc: cannot relay a reply: {e:?}"),
            },
        }
    }

    pub(crate) fn bounce_to(&mut self, origin: &Origin, el: &Element, condition: &str) {
        self.bounce_to_explained(origin, el, condition, "")
    }

    /// Answer with a stanza error that says why (`text`, if not empty).
    pub(crate) fn bounce_to_explained(
        &mut self,
        origin: &Origin,
        el: &Element,
        condition: &str,
        text: &str,
    ) {
        let from = el
            .get_attr("to")
            .unwrap_or(&self.cfg.muc_service)
            .to_string();
        let mut req = el.clone();
        req.set_attr("from", self.origin_jid(origin).to_string());
        if let Some(mut reply) =
            stanza::error_reply(&req, condition, stanza::error_type_for(condition), &from)
        {
            if !text.is_empty() {
                reply = stanza::with_error_text(reply, text);
            }
            self.reply(origin, &reply);
        }
    }

    /// A stanza from a room to one user, wherever they are: a local session
    /// (or the account, for invitations), or a user at a linked site.
    pub(crate) fn send_to_jid(&mut self, to: &Jid, mut el: Element) {
        el.set_attr("to", to.to_string());
        if let Some(c) = self.bound.conn_of_full(to) {
            return self.send_el(c, &el);
        }
        self.send_to_remote_user(to, el);
    }

    /// An invitation or other message from a room to a bare or full JID.
    fn deliver_from_room(&mut self, to: &Jid, el: &Element) {
        if to.domain() == self.cfg.domain {
            // Local accounts: normal routing, offline storage included.
            self.out.push(MucOutput::Route {
                to: to.clone(),
                el: Box::new(el.clone()),
            });
        } else {
            self.send_to_remote_user(to, el.clone());
        }
    }

    /// Deliver a broadcast-type stanza to one local session of an occupant.
    /// Occupants at mirroring sites are served by their site from one copy.
    fn room_send(&mut self, to: &Jid, mut el: Element) {
        if let Some(c) = self.bound.conn_of_full(to) {
            el.set_attr("to", to.to_string());
            self.send_el(c, &el);
        }
    }

    pub(crate) fn on_muc_stanza(&mut self, origin: &Origin, el: Element, to: Jid) {
        if !self.is_muc_service(&to) {
            return;
        }
        // Clients and sites alike: no iq reaches a room unchecked.
        if el.name == "iq" && stanza::check_iq(&el).is_err() {
            return self.bounce_to(origin, &el, "bad-request");
        }
        let Some(room) = to.local().map(str::to_string) else {
            return self.muc_service_stanza(origin, &el);
        };
        let nick = to.resource().map(str::to_string);
        match (el.name.as_str(), nick) {
            ("presence", Some(nick)) => self.muc_presence(origin, el, &room, &nick),
            ("presence", None) if el.get_attr("type") != Some("error") => {
                self.bounce_to(origin, &el, "jid-malformed")
            }
            ("message", None) => self.muc_room_message(origin, el, &room),
            ("message", Some(nick)) => self.muc_private_message(origin, el, &room, &nick),
            ("iq", None) => self.muc_room_iq(origin, &el, &room),
            ("iq", Some(nick)) => self.muc_occupant_iq(origin, el, &room, &nick),
            _ => {}
        }
    }

    fn muc_service_stanza(&mut self, origin: &Origin, el: &Element) {
        let Ok(stanza::Iq::Request { set, payload }) = stanza::check_iq(el) else {
            return;
        };
        let service = self.cfg.muc_service.clone();
        let reply = match (payload.name.as_str(), payload.ns.as_str(), set) {
            ("query", ns::DISCO_INFO, false) => {
                let mut q = Element::new("query", ns::DISCO_INFO).child(
                    Element::new("identity", ns::DISCO_INFO)
                        .attr("category", "conference")
                        .attr("type", "text")
                        .attr("name", "Chatrooms"),
                );
                for f in [
                    ns::DISCO_INFO,
                    ns::DISCO_ITEMS,
                    mns::MUC,
                    mns::SELF_PING,
                    mns::STABLE_ID,
                    crate::link::event::DMUC,
                ] {
                    q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
                }
                q
            }
            ("query", ns::DISCO_ITEMS, false) => {
                let mut q = Element::new("query", ns::DISCO_ITEMS);
                for (name, r) in self.rooms.iter() {
                    if r.config.public && !r.locked {
                        let mut item =
                            Element::new("item", ns::DISCO_ITEMS).attr("jid", self.room_jid(name));
                        if !r.config.name.is_empty() {
                            item.set_attr("name", r.config.name.clone());
                        }
                        q = q.child(item);
                    }
                }
                q
            }
            ("ping", ns::PING, false) => {
                return self.reply(origin, &stanza::iq_result(el, &service, None));
            }
            _ => return self.bounce_to(origin, el, "service-unavailable"),
        };
        self.reply(origin, &stanza::iq_result(el, &service, Some(reply)));
    }

    // ---- presence: join, leave, nick change, status ----------------------------

    fn muc_presence(&mut self, origin: &Origin, el: Element, room: &str, nick: &str) {
        let from = self.origin_jid(origin);
        let current = self.live(room).and_then(|l| l.nick_of(&from));
        match el.get_attr("type") {
            Some("unavailable") => {
                if current.is_some() {
                    self.muc_leave(room, &from, Some(&el));
                }
            }
            Some(_) => {} // Presence errors and subscriptions mean nothing to a room.
            None => match current {
                Some(n) if n == nick => self.muc_status_change(origin, room, nick, &el),
                Some(old) => self.muc_nick_change(origin, room, &old, nick, &el),
                None => self.muc_join(origin, el, room, nick),
            },
        }
    }
}

/// The client's presence without MUC payloads: what others see of it.
pub(crate) fn occupant_payload(el: &Element) -> Element {
    let mut p = Element::new("presence", ns::CLIENT);
    for c in &el.children {
        if let XmlNode::Element(e) = c {
            if e.ns == mns::MUC || e.ns == mns::USER || e.ns == mns::OCCUPANT_ID {
                continue;
            }
        }
        p.children.push(c.clone());
    }
    p
}

impl Ctx<'_> {
    fn muc_join(&mut self, origin: &Origin, el: Element, room: &str, nick: &str) {
        let from = self.origin_jid(origin);
        let bare = from.to_bare().to_string();
        let x = el.get_child("x", mns::MUC);
        let mut created = false;
        let Some(payload) = self.bounded_payload(&el) else {
            let text = "your presence is too large for a room";
            return self.presence_error_explained(origin, &el, "not-acceptable", text);
        };
        // Before a room is created for it: a refused join leaves nothing.
        if let Origin::Local { conn, .. } = origin {
            if self.bound.resource(*conn).map_or(0, |r| r.rooms.len())
                >= self.cfg.muc.rooms_per_session
            {
                return self.presence_error(origin, &el, "resource-constraint");
            }
        }
        if !self.rooms.contains_key(room) {
            if self.rooms.len() >= self.cfg.muc.max_rooms {
                return self.presence_error(origin, &el, "resource-constraint");
            }
            if let Some(why) = self.room_creation_refused(origin, &from) {
                return self.presence_error_explained(origin, &el, "not-allowed", &why);
            }
            let mut salt = vec![0u8; 16];
            self.random_bytes(&mut salt);
            self.commit_room(
                room,
                RoomRecord::Create {
                    owner: bare.clone(),
                    salt,
                },
            );
            created = true;
        }
        let rs = &self.rooms[room];
        let affiliation = rs.affiliation(&bare);
        let live = self.live_rooms.get(room);
        let occupants = live.map_or(0, |l| l.occupants.len());
        let same_person = live
            .and_then(|l| l.occupants.get(nick))
            .map(|o| o.bare == bare);
        let error = if rs.locked && affiliation != Affiliation::Owner {
            Some("item-not-found")
        } else if affiliation == Affiliation::Outcast {
            Some("forbidden")
        } else if rs.config.members_only && affiliation < Affiliation::Member {
            Some("registration-required")
        } else if rs.config.password.is_some()
            && affiliation < Affiliation::Admin
            && x.and_then(|x| x.get_child("password", mns::MUC))
                .map(|p| p.text_content())
                != rs.config.password
        {
            Some("not-authorized")
        } else if same_person == Some(false) {
            Some("conflict")
        } else if same_person.is_none()
            && occupants >= rs.config.max_users as usize
            && affiliation < Affiliation::Admin
        {
            Some("service-unavailable")
        } else {
            None
        };
        if let Some(condition) = error {
            return self.presence_error(origin, &el, condition);
        }
        let history = HistoryRequest::from_join(x);
        let role = self.role_for(room, affiliation);
        let occupant_id = self.occupant_id(room, &bare);
        let peers_before = self.room_peers(room);
        let live = self.live_rooms.entry(room.to_string()).or_default();
        let first_session = match live.occupants.get_mut(nick) {
            Some(o) => {
                o.sessions.push(from.clone());
                o.presence = payload;
                false
            }
            None => {
                live.occupants.insert(
                    nick.to_string(),
                    Occupant {
                        bare: bare.clone(),
                        sessions: vec![from.clone()],
                        role,
                        presence: payload,
                        occupant_id,
                    },
                );
                true
            }
        };
        if let Origin::Local { conn, .. } = origin {
            self.out.push(MucOutput::Joined {
                conn: *conn,
                room: room.to_string(),
            });
        }

        // 1. Everyone else's presence, to the new session.
        let sees = self.sees_jids(room, role);
        let others: Vec<String> = self.live_rooms[room]
            .occupants
            .keys()
            .filter(|n| *n != nick)
            .cloned()
            .collect();
        for other in others {
            let p = self.occupant_presence(room, &other, sees, &[], false);
            self.room_send(&from, p);
        }
        // 2. Self-presence with 110 and the codes that apply.
        let mut codes = self.view(room).self_presence_codes();
        if created {
            codes.push(201);
        }
        let me = self.occupant_presence(room, nick, sees, &codes, false);
        self.room_send(&from, me);
        // 3. The newcomer's presence, to everyone else.
        if first_session {
            self.broadcast_presence_of(room, nick, &[], false, Some(&from));
        }
        // 4. History, 5. subject.
        self.send_history(room, &from, &history);
        self.send_subject(room, &from);
        self.notify_join(origin, room, nick, &peers_before);
        log::debug!("muc {room}: {from} joined as {nick}");
    }

    fn presence_error(&mut self, origin: &Origin, el: &Element, condition: &str) {
        self.presence_error_explained(origin, el, condition, "")
    }

    /// A refused join or presence change, saying why (`text`, if not empty).
    fn presence_error_explained(
        &mut self,
        origin: &Origin,
        el: &Element,
        condition: &str,
        text: &str,
    ) {
        let from = el.get_attr("to").unwrap_or_default().to_string();
        let mut reply = Element::new("presence", ns::CLIENT)
            .attr("from", from)
            .attr("type", "error");
        if let Some(id) = el.get_attr("id") {
            reply.set_attr("id", id);
        }
        reply = reply.child(Element::new("x", mns::MUC)).child(
            Element::new("error", ns::CLIENT)
                .attr("type", stanza::error_type_for(condition))
                .child(Element::new(condition, ns::STANZA_ERRORS)),
        );
        let to = self.origin_jid(origin).to_string();
        reply.set_attr("to", to);
        if !text.is_empty() {
            reply = stanza::with_error_text(reply, text);
        }
        self.reply(origin, &reply);
    }

    /// Why `who` may not create another room, if so: the rooms one account
    /// (or one linked site's accounts together) may own are bounded.
    fn room_creation_refused(&self, origin: &Origin, who: &Jid) -> Option<String> {
        let bare = who.to_bare().to_string();
        let owns = |r: &RoomState, pred: &dyn Fn(&str) -> bool| {
            r.affiliations
                .iter()
                .any(|(j, a)| *a == Affiliation::Owner && pred(j))
        };
        let limits = &self.cfg.muc;
        let mine = self
            .rooms
            .values()
            .filter(|r| owns(r, &|j| j == bare))
            .count();
        if mine >= limits.rooms_per_account {
            return Some(format!(
                "{bare} already owns {mine} rooms, the most one account may create here"
            ));
        }
        if let Origin::Remote { peer, .. } = origin {
            let of_site = |j: &str| j.rsplit_once('@').map_or(j, |(_, d)| d) == peer;
            let site = self.rooms.values().filter(|r| owns(r, &of_site)).count();
            if site >= limits.rooms_per_site {
                return Some(format!(
                    "users of {peer} already own {site} rooms, the most one site may create here"
                ));
            }
        }
        None
    }

    /// An occupant's presence as the room keeps it, if it is within bounds.
    fn bounded_payload(&self, el: &Element) -> Option<Element> {
        let payload = occupant_payload(el);
        (payload.to_xml(ns::CLIENT).len() <= self.cfg.muc.presence_bytes).then_some(payload)
    }

    /// A room mastered here, as its occupants see it.
    pub(crate) fn view(&self, room: &str) -> RoomView<'_> {
        static EMPTY: std::sync::OnceLock<LiveRoom> = std::sync::OnceLock::new();
        RoomView {
            jid: self.room_jid(room),
            state: self.room_state(room),
            live: self
                .live_rooms
                .get(room)
                .unwrap_or_else(|| EMPTY.get_or_init(LiveRoom::default)),
        }
    }

    pub(crate) fn sees_jids(&self, room: &str, viewer: Role) -> bool {
        self.view(room).sees_jids(viewer)
    }

    /// The presence of occupant `nick` of a mastered room as a viewer sees it.
    pub(crate) fn occupant_presence(
        &self,
        room: &str,
        nick: &str,
        show_jid: bool,
        codes: &[u16],
        unavailable: bool,
    ) -> Element {
        self.view(room)
            .occupant_presence(nick, show_jid, codes, unavailable)
    }

    /// Send occupant `nick`'s presence to every session in the room
    /// (except `skip`); its own sessions get status 110 as well.
    pub(crate) fn broadcast_presence_of(
        &mut self,
        room: &str,
        nick: &str,
        codes: &[u16],
        unavailable: bool,
        skip: Option<&Jid>,
    ) {
        let sends = self
            .view(room)
            .presence_to_all(nick, codes, unavailable, skip);
        for (to, p) in sends {
            self.room_send(&to, p);
        }
    }

    /// The history a joining session asked for, paced, within what its
    /// connection may queue and the bound on join history.
    pub(crate) fn send_history(&mut self, room: &str, to: &Jid, req: &HistoryRequest) {
        let Some(conn) = self.bound.conn_of_full(to) else {
            return;
        };
        let budget = self
            .cfg
            .muc
            .join_history_bytes
            .min(self.clients.paced_room(conn));
        let history = self.view(room).history(to, req, budget, self.now.unix_ms);
        for xml in history {
            self.send_paced(conn, xml.into_bytes());
        }
    }

    pub(crate) fn send_subject(&mut self, room: &str, to: &Jid) {
        let id = format!("subject-{}", self.random_id());
        let m = self.view(room).subject_message(id);
        self.room_send(to, m);
    }

    fn muc_status_change(&mut self, origin: &Origin, room: &str, nick: &str, el: &Element) {
        let Some(payload) = self.bounded_payload(el) else {
            let text = "your presence is too large for a room";
            return self.presence_error_explained(origin, el, "not-acceptable", text);
        };
        if let Some(o) = self
            .live_rooms
            .get_mut(room)
            .and_then(|l| l.occupants.get_mut(nick))
        {
            o.presence = payload;
        }
        self.broadcast_presence_of(room, nick, &[], false, None);
        self.notify_occupant(room, nick, OccupantChange::Updated, &BTreeSet::new());
    }

    fn muc_nick_change(&mut self, origin: &Origin, room: &str, old: &str, new: &str, el: &Element) {
        let from = self.origin_jid(origin);
        let bare = from.to_bare().to_string();
        let live = &self.live_rooms[room];
        if live.occupants.get(new).is_some_and(|o| o.bare != bare) {
            return self.presence_error(origin, el, "conflict");
        }
        if live.occupants[old].sessions.len() > 1 || live.occupants.contains_key(new) {
            // Other sessions share the old nick, or the new one is already ours: keep it simple and refuse.
            return self.presence_error(origin, el, "not-acceptable");
        }
        let Some(payload) = self.bounded_payload(el) else {
            let text = "your presence is too large for a room";
            return self.presence_error_explained(origin, el, "not-acceptable", text);
        };
        let renamed = OccupantChange::Renamed {
            new_nick: new.to_string(),
        };
        self.notify_occupant(room, old, renamed, &BTreeSet::new());
        // Unavailable from the old nick with 303 and the new nick, to everyone.
        let recipients = self.live_rooms[room].all_sessions();
        for (vnick, session) in recipients {
            let viewer_role = self.live_rooms[room].occupants[&vnick].role;
            let mut codes = vec![303];
            if vnick == old {
                codes.insert(0, 110);
            }
            let mut p =
                self.occupant_presence(room, old, self.sees_jids(room, viewer_role), &codes, true);
            if let Some(x) = p.children.iter_mut().find_map(|c| match c {
                XmlNode::Element(e) if e.is("x", mns::USER) => Some(e),
                _ => None,
            }) {
                if let Some(XmlNode::Element(item)) = x.children.first_mut() {
                    item.set_attr("nick", new);
                    item.set_attr("role", self.live_rooms[room].occupants[old].role.as_str());
                }
            }
            self.room_send(&session, p);
        }
        let live = self.live_rooms.get_mut(room).expect("room");
        let mut occ = live.occupants.remove(old).expect("occupant");
        occ.presence = payload;
        live.occupants.insert(new.to_string(), occ);
        self.broadcast_presence_of(room, new, &[], false, None);
        self.notify_occupant(room, new, OccupantChange::Updated, &BTreeSet::new());
    }

    /// A session leaves (or is gone). Others hear of it when the person's
    /// last session under that nick leaves.
    pub(crate) fn muc_leave(&mut self, room: &str, session: &Jid, el: Option<&Element>) {
        let Some(nick) = self.live(room).and_then(|l| l.nick_of(session)) else {
            return;
        };
        let role = self.live_rooms[room].occupants[&nick].role;
        let mut own = self.occupant_presence(room, &nick, self.sees_jids(room, role), &[110], true);
        if let Some(status) = el.and_then(|e| e.get_child("status", ns::CLIENT)) {
            own.children.insert(0, XmlNode::Element(status.clone()));
        }
        self.room_send(session, own.clone());
        self.left_room(session, room);
        let live = self.live_rooms.get_mut(room).expect("room");
        let occ = live.occupants.get_mut(&nick).expect("occupant");
        occ.sessions.retain(|s| s != session);
        if occ.sessions.is_empty() {
            let bare = occ.bare.clone();
            let unavailable = el.and_then(|e| e.get_child("status", ns::CLIENT)).cloned();
            // Tell the others while the occupant is still known, then forget it.
            occ.sessions.push(session.clone());
            let status = unavailable.as_ref().map(|s| s.text_content());
            self.notify_occupant(
                room,
                &nick,
                OccupantChange::Left { status },
                &BTreeSet::new(),
            );
            let recipients: Vec<(String, Jid)> = self.live_rooms[room]
                .all_sessions()
                .into_iter()
                .filter(|(n, _)| *n != nick)
                .collect();
            for (vnick, s) in recipients {
                let viewer_role = self.live_rooms[room].occupants[&vnick].role;
                let mut p = self.occupant_presence(
                    room,
                    &nick,
                    self.sees_jids(room, viewer_role),
                    &[],
                    true,
                );
                if let Some(st) = &unavailable {
                    p.children.insert(0, XmlNode::Element(st.clone()));
                }
                self.room_send(&s, p);
            }
            let live = self.live_rooms.get_mut(room).expect("room");
            live.occupants.remove(&nick);
            log::debug!("muc {room}: {bare} left as {nick}");
        }
        self.maybe_close_room(room);
    }

    /// An empty room goes away unless it is persistent.
    fn maybe_close_room(&mut self, room: &str) {
        if self.live(room).is_some_and(|l| l.occupants.is_empty()) {
            self.live_rooms.remove(room);
            let temporary = self
                .rooms
                .get(room)
                .is_some_and(|r| !r.config.persistent || r.locked);
            if temporary {
                self.commit_room(room, RoomRecord::Destroy);
            }
        }
    }

    /// The node is stopping: occupants are told the rooms go (status 332),
    /// but sessions in `kept` (held for their resumption) in rooms that
    /// outlive the restart: they will be back in them.
    pub(crate) fn muc_shutdown(&mut self, kept: &std::collections::BTreeSet<Jid>) {
        let rooms = self.mastered_live_rooms();
        for room in rooms {
            let lasting = self
                .rooms
                .get(&room)
                .is_some_and(|r| r.config.persistent && !r.locked);
            if lasting {
                self.tell_kept_who_goes(&room, kept);
            }
            for (nick, session) in self.live_rooms[&room].all_sessions() {
                if lasting && kept.contains(&session) {
                    continue;
                }
                let role = self.live_rooms[&room].occupants[&nick].role;
                let p = self.occupant_presence(
                    &room,
                    &nick,
                    self.sees_jids(&room, role),
                    &[110, 332],
                    true,
                );
                self.room_send(&session, p);
            }
        }
        self.live_rooms.clear();
        self.drop_rooms_that_died_with_their_occupants();
    }

    /// The sessions `kept` in `room` hear every occupant that is not kept
    /// go: they will be back in it after the restart, the others not
    /// (those at sites announce themselves again).
    fn tell_kept_who_goes(&mut self, room: &str, kept: &std::collections::BTreeSet<Jid>) {
        let live = &self.live_rooms[room];
        let stays: Vec<(String, Jid)> = live
            .all_sessions()
            .into_iter()
            .filter(|(_, s)| kept.contains(s))
            .collect();
        let goes: Vec<String> = live
            .occupants
            .iter()
            .filter(|(_, o)| !o.sessions.iter().any(|s| kept.contains(s)))
            .map(|(n, _)| n.clone())
            .collect();
        for (stays_as, session) in &stays {
            let role = self.live_rooms[room].occupants[stays_as].role;
            for nick in &goes {
                let p =
                    self.occupant_presence(room, nick, self.sees_jids(room, role), &[332], true);
                self.room_send(session, p);
            }
        }
    }

    // ---- messages ----------------------------------------------------------

    fn muc_room_message(&mut self, origin: &Origin, el: Element, room: &str) {
        self.muc_room_message_with_id(origin, el, room, None)
    }

    /// A message to a room; `minted` is the stanza-id a mirroring site gave it.
    pub(crate) fn muc_room_message_with_id(
        &mut self,
        origin: &Origin,
        el: Element,
        room: &str,
        minted: Option<String>,
    ) {
        if el.get_attr("type") == Some("error") {
            return;
        }
        if !self.rooms.contains_key(room) {
            return self.bounce_to(origin, &el, "item-not-found");
        }
        let sender = self.origin_jid(origin);
        if let Some(x) = el.get_child("x", mns::USER) {
            if x.has_child("invite", mns::USER) {
                return self.muc_invite(origin, &el, room, x);
            }
        }
        let Some(nick) = self.live(room).and_then(|l| l.nick_of(&sender)) else {
            return self.bounce_to(origin, &el, "not-acceptable");
        };
        if el.get_attr("type") != Some("groupchat") {
            return self.bounce_to(origin, &el, "bad-request");
        }
        let role = self.live_rooms[room].occupants[&nick].role;
        let config = &self.rooms[room].config;
        if let (Some(subject), false) = (
            el.get_child("subject", ns::CLIENT),
            el.has_child("body", ns::CLIENT),
        ) {
            let allowed =
                role == Role::Moderator || (config.subject_by_anyone && role >= Role::Participant);
            if !allowed {
                return self.bounce_to(origin, &el, "forbidden");
            }
            let text = subject.text_content();
            let stamp_ms = self.now.unix_ms;
            let subject_record = Subject {
                text,
                nick: nick.clone(),
                stamp_ms,
            };
            let seq = self.rooms[room].next_seq;
            self.commit_room(
                room,
                RoomRecord::Subject {
                    subject: subject_record.clone(),
                },
            );
            self.notify_room(
                room,
                LinkEvent::Subject {
                    room: room.to_string(),
                    seq,
                    subject: subject_record,
                },
            );
            let mut out = Element::new("message", ns::CLIENT)
                .attr("from", self.occupant_jid(room, &nick))
                .attr("type", "groupchat")
                .child(subject.clone());
            if let Some(id) = el.get_attr("id") {
                out.set_attr("id", id);
            }
            return self.broadcast_message(room, &out);
        }
        if role == Role::Visitor {
            return self.bounce_to(origin, &el, "forbidden");
        }
        let from_site = match origin {
            Origin::Remote { peer, .. } => Some(peer.as_str()),
            Origin::Local { .. } => None,
        };
        self.submit_groupchat(room, &nick, &sender, &el, minted, from_site);
    }

    /// Stamp a groupchat message with its identity and order, archive it and
    /// send one copy to every session in the room (the sender's included,
    /// keeping the client's id).
    fn submit_groupchat(
        &mut self,
        room: &str,
        nick: &str,
        sender: &Jid,
        el: &Element,
        minted: Option<String>,
        from_site: Option<&str>,
    ) {
        let real_bare = &sender.to_bare().to_string();
        let room_jid = self.room_jid(room);
        // An id minted at a site is kept; a resubmission of it is a duplicate.
        if minted
            .as_ref()
            .is_some_and(|id| self.rooms[room].archive.contains_id(id))
        {
            return;
        }
        let stanza_id = minted.unwrap_or_else(|| self.random_id());
        let occupant_id = self.occupant_id(room, real_bare);
        let from = self.occupant_jid(room, nick);
        let out = stamp_groupchat(el, &from, &room_jid, &stanza_id, &occupant_id);
        if el.has_child("body", ns::CLIENT) {
            let msg = Archived {
                seq: self.rooms[room].next_seq,
                stanza_id,
                // Never before the previous message, even if the clock stepped
                // back: archive queries find a time by binary search.
                stamp_ms: self.now.unix_ms.max(self.rooms[room].archive.last_stamp()),
                nick: nick.to_string(),
                real: real_bare.to_string(),
                xml: out.to_xml(ns::CLIENT),
            };
            self.commit_room(room, RoomRecord::Message { msg: msg.clone() });
            self.trim_archive(room);
            self.notify_room(
                room,
                LinkEvent::Message {
                    room: room.to_string(),
                    msg,
                },
            );
        } else {
            // Chat states and the like: to the other mirroring sites now, or
            // not at all (a stale "typing" after an outage helps nobody).
            let ev = LinkEvent::Groupchat {
                room: room.to_string(),
                from: sender.clone(),
                nick: nick.to_string(),
                stanza_id,
                message: el.clone(),
            };
            for peer in self.room_peers(room) {
                if Some(peer.as_str()) != from_site {
                    self.link_send_transient(&peer, &ev);
                }
            }
        }
        self.broadcast_message(room, &out);
    }

    /// Keep the archive within the configured count and bytes.
    fn trim_archive(&mut self, room: &str) {
        let rs = &self.rooms[room];
        let (max_n, max_bytes) = (self.cfg.muc.archive_messages, self.cfg.muc.archive_bytes);
        if let Some(upto) = rs.archive.trim_point(max_n, max_bytes) {
            self.commit_room(room, RoomRecord::Trim { upto });
        }
    }

    /// One serialisation, then only the `to` differs per recipient.
    fn broadcast_message(&mut self, room: &str, out: &Element) {
        let Some(live) = self.live(room) else { return };
        let sessions: Vec<Jid> = live
            .occupants
            .values()
            .flat_map(|o| o.sessions.iter().cloned())
            .collect();
        let body = out.to_xml(ns::CLIENT);
        // Every copy shares these bytes, whoever is slow to read it.
        let rest: std::rc::Rc<[u8]> = body.as_bytes()["<message".len()..].into();
        for s in sessions {
            if let Some(c) = self.bound.conn_of_full(&s) {
                let to = format!("<message to='{}'", escape(&s.to_string()));
                self.send(c, Payload::shared(to.into_bytes(), &rest));
            }
        }
    }

    fn muc_private_message(&mut self, origin: &Origin, el: Element, room: &str, nick: &str) {
        if el.get_attr("type") == Some("error") {
            return;
        }
        let sender = self.origin_jid(origin);
        let Some(live) = self.live(room) else {
            return self.bounce_to(origin, &el, "item-not-found");
        };
        let Some(from_nick) = live.nick_of(&sender) else {
            return self.bounce_to(origin, &el, "not-acceptable");
        };
        if el.get_attr("type") == Some("groupchat") {
            return self.bounce_to(origin, &el, "bad-request");
        }
        let Some(target) = live.occupants.get(nick) else {
            return self.bounce_to(origin, &el, "item-not-found");
        };
        let sessions = target.sessions.clone();
        let mut out = el.clone();
        out.set_attr("from", self.occupant_jid(room, &from_nick));
        if !out.has_child("x", mns::USER) {
            out = out.child(Element::new("x", mns::USER));
        }
        for s in sessions {
            self.send_to_jid(&s, out.clone());
        }
    }

    /// Mediated invitation (XEP-0045 §7.8.2).
    fn muc_invite(&mut self, origin: &Origin, el: &Element, room: &str, x: &Element) {
        let sender = self.origin_jid(origin);
        let bare = sender.to_bare().to_string();
        let Some(nick) = self.live(room).and_then(|l| l.nick_of(&sender)) else {
            return self.bounce_to(origin, el, "not-acceptable");
        };
        let role = self.live_rooms[room].occupants[&nick].role;
        let rs = &self.rooms[room];
        let affiliation = rs.affiliation(&bare);
        if !(rs.config.allow_invites
            || role == Role::Moderator
            || affiliation >= Affiliation::Admin)
        {
            return self.bounce_to(origin, el, "forbidden");
        }
        let members_only = rs.config.members_only;
        let password = rs.config.password.clone();
        let room_jid = self.room_jid(room);
        let invites: Vec<Element> = x
            .elements()
            .filter(|e| e.is("invite", mns::USER))
            .cloned()
            .collect();
        for invite in invites {
            let Some(invitee) = invite
                .get_attr("to")
                .and_then(|t| Jid::parse(t).ok())
                .map(|j| j.to_bare())
            else {
                return self.bounce_to(origin, el, "jid-malformed");
            };
            let invitee_bare = invitee.to_string();
            if members_only
                && affiliation >= Affiliation::Admin
                && rs_affiliation(self.rooms, room, &invitee_bare) < Affiliation::Member
            {
                let rs = &self.rooms[room];
                if !rs.affiliations.contains_key(&invitee_bare)
                    && rs.affiliations.len() >= self.cfg.muc.affiliations_per_room
                {
                    let text = "the room keeps no more members";
                    return self.bounce_to_explained(origin, el, "resource-constraint", text);
                }
                self.commit_room(
                    room,
                    RoomRecord::Affiliate {
                        jid: invitee_bare.clone(),
                        affiliation: Affiliation::Member,
                    },
                );
            }
            let mut inv = Element::new("invite", mns::USER).attr("from", bare.clone());
            if let Some(reason) = invite.get_child("reason", mns::USER) {
                inv = inv.child(reason.clone());
            }
            let mut ux = Element::new("x", mns::USER).child(inv);
            if let Some(pw) = &password {
                ux = ux.child(Element::new("password", mns::USER).text(pw.clone()));
            }
            let msg = Element::new("message", ns::CLIENT)
                .attr("from", room_jid.clone())
                .attr("to", invitee_bare)
                .attr("id", self.random_id())
                .child(
                    Element::new("body", ns::CLIENT)
                        .text(format!("{bare} invites you to the room {room_jid}")),
                )
                .child(ux);
            self.deliver_from_room(&invitee, &msg);
        }
    }

    // ---- iq ------------------------------------------------------------------

    fn muc_occupant_iq(&mut self, origin: &Origin, el: Element, room: &str, nick: &str) {
        let sender = self.origin_jid(origin);
        let Some(live) = self.live(room) else {
            return self.bounce_to(origin, &el, "item-not-found");
        };
        let Some(from_nick) = live.nick_of(&sender) else {
            // XEP-0410: a client that is not joined learns it from this error.
            return self.bounce_to(origin, &el, "not-acceptable");
        };
        let is_ping = el.get_attr("type") == Some("get") && el.has_child("ping", ns::PING);
        if is_ping && from_nick == nick {
            let r = stanza::iq_result(&el, &self.occupant_jid(room, nick), None);
            return self.reply(origin, &r);
        }
        // Anything else is relayed between occupants, hiding real JIDs.
        let Some(target) = live
            .occupants
            .get(nick)
            .and_then(|o| o.sessions.first().cloned())
        else {
            return self.bounce_to(origin, &el, "item-not-found");
        };
        let mut out = el;
        out.set_attr("from", self.occupant_jid(room, &from_nick));
        self.send_to_jid(&target, out);
    }

    fn muc_room_iq(&mut self, origin: &Origin, el: &Element, room: &str) {
        let Ok(stanza::Iq::Request { set, payload }) = stanza::check_iq(el) else {
            return;
        };
        let (itype, payload) = (if set { "set" } else { "get" }, payload.clone());
        let Some(rs) = self.rooms.get(room) else {
            return self.bounce_to(origin, el, "item-not-found");
        };
        let bare = self.origin_jid(origin).to_bare().to_string();
        if rs.locked && rs.affiliation(&bare) != Affiliation::Owner {
            return self.bounce_to(origin, el, "item-not-found");
        }
        let room_jid = self.room_jid(room);
        match (payload.name.as_str(), payload.ns.as_str(), itype) {
            ("query", ns::DISCO_INFO, "get") => {
                let info = self.room_disco_info(room);
                self.reply(origin, &stanza::iq_result(el, &room_jid, Some(info)));
            }
            ("query", ns::DISCO_ITEMS, "get") => {
                let q = Element::new("query", ns::DISCO_ITEMS);
                self.reply(origin, &stanza::iq_result(el, &room_jid, Some(q)));
            }
            ("ping", ns::PING, "get") => {
                self.reply(origin, &stanza::iq_result(el, &room_jid, None))
            }
            ("moderate", moderation::NS, "set") | ("apply-to", moderation::NS_FASTEN, "set") => {
                self.muc_moderate(origin, el, room, &payload)
            }
            ("vCard", crate::im::NS_VCARD, _) => self.muc_vcard(origin, el, room, set),
            ("query", mns::OWNER, _) => self.muc_owner(origin, el, room, &payload),
            ("query", mns::ADMIN, _) => self.muc_admin(origin, el, room, &payload),
            ("query", mns::MAM, "set") => self.muc_mam(origin, el, room, &payload),
            ("query", mns::MAM, "get") => {
                let q = Element::new("query", mns::MAM).child(crate::mam::form());
                self.reply(origin, &stanza::iq_result(el, &room_jid, Some(q)));
            }
            _ => self.bounce_to(origin, el, "service-unavailable"),
        }
    }

    fn room_disco_info(&self, room: &str) -> Element {
        let rs = self.room_state(room);
        let c = &rs.config;
        let mut q = Element::new("query", ns::DISCO_INFO).child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "conference")
                .attr("type", "text")
                .attr(
                    "name",
                    if c.name.is_empty() {
                        room.to_string()
                    } else {
                        c.name.clone()
                    },
                ),
        );
        let pick = |on: bool, a: &'static str, b: &'static str| if on { a } else { b };
        let mut features = vec![
            mns::MUC,
            mns::STABLE_ID,
            mns::OCCUPANT_ID,
            mns::SELF_PING,
            ns::DISCO_INFO,
            pick(c.persistent, "muc_persistent", "muc_temporary"),
            pick(c.public, "muc_public", "muc_hidden"),
            pick(c.members_only, "muc_membersonly", "muc_open"),
            pick(c.moderated, "muc_moderated", "muc_unmoderated"),
            pick(
                c.password.is_some(),
                "muc_passwordprotected",
                "muc_unsecured",
            ),
            pick(c.whois_anyone, "muc_nonanonymous", "muc_semianonymous"),
            moderation::NS,
            moderation::NS_LEGACY,
            crate::im::NS_VCARD,
        ];
        if c.archiving {
            features.extend([mns::MAM, ns::MAM_EXTENDED]);
        }
        for f in features {
            q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
        }
        let occupants = self.live(room).map_or(0, |l| l.occupants.len());
        let subject = rs.subject.as_ref().map(|s| s.text.as_str()).unwrap_or("");
        let mut info = form::roominfo(c, occupants, subject);
        // XEP-0486: the avatar's hash, if the room has one.
        let hashes = vcard::avatar_hashes(rs);
        if !hashes.is_empty() {
            let mut field = Element::new("field", form::DATA)
                .attr("var", "muc#roominfo_avatarhash")
                .attr("type", "text-multi")
                .attr("label", "Avatar hash");
            for h in hashes {
                field = field.child(Element::new("value", form::DATA).text(h));
            }
            info = info.child(field);
        }
        q.child(info)
    }
}

fn rs_affiliation(rooms: &Rooms, room: &str, bare: &str) -> Affiliation {
    rooms
        .get(room)
        .map_or(Affiliation::None, |r: &RoomState| r.affiliation(bare))
}

impl Ctx<'_> {
    /// After a restart rooms are empty: temporary (and never configured)
    /// rooms do not survive that.
    pub(crate) fn drop_rooms_that_died_with_their_occupants(&mut self) {
        let dead: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.config.persistent || r.locked)
            .map(|(n, _)| n.clone())
            .collect();
        for room in dead {
            self.commit_room(&room, RoomRecord::Destroy);
        }
    }
}

impl Ctx<'_> {
    /// A stanza for a user at another node: over the link to that node's
    /// domain (the node drops it if there is none: no federation).
    pub(crate) fn send_to_remote_user(&mut self, to: &Jid, el: Element) {
        self.out.push(MucOutput::Remote {
            to: to.clone(),
            el: Box::new(el),
        });
    }
}

/// The state of a mirrored room whose snapshot has not come yet.
pub(crate) fn unsynced() -> &'static RoomState {
    thread_local! {
        // One per thread, made once (an archive is not shared across threads).
        static UNSYNCED: &'static RoomState = Box::leak(Box::new(RoomState::new("", Vec::new())));
    }
    UNSYNCED.with(|s| *s)
}

/// A groupchat message as the room sends it: from `room/nick`, the client's
/// id and payload, then the room's stanza-id and the sender's occupant-id.
/// A client cannot forge the room's stanza-id or an occupant-id.
pub(crate) fn stamp_groupchat(
    el: &Element,
    from: &str,
    room_jid: &str,
    stanza_id: &str,
    occupant_id: &str,
) -> Element {
    let mut out = Element::new("message", ns::CLIENT)
        .attr("from", from)
        .attr("type", "groupchat");
    if let Some(id) = el.get_attr("id") {
        out.set_attr("id", id);
    }
    for c in &el.children {
        if let XmlNode::Element(e) = c {
            let forged_id = e.is("stanza-id", mns::SID) && e.get_attr("by") == Some(room_jid);
            if forged_id || e.ns == mns::OCCUPANT_ID {
                continue;
            }
        }
        out.children.push(c.clone());
    }
    out.child(
        Element::new("stanza-id", mns::SID)
            .attr("id", stanza_id)
            .attr("by", room_jid),
    )
    .child(Element::new("occupant-id", mns::OCCUPANT_ID).attr("id", occupant_id))
}

/// Unavailable presence of an occupant of a destroyed room.
pub(crate) fn destroyed_presence(from: &str, destroy: &Element) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("from", from)
        .attr("type", "unavailable")
        .child(
            Element::new("x", mns::USER)
                .child(
                    Element::new("item", mns::USER)
                        .attr("affiliation", "none")
                        .attr("role", "none"),
                )
                .child(destroy.clone()),
        )
}
