//! The MUC service at the node: what reaches it (client stanzas for its
//! rooms, sites' events, link notices, sessions leaving) and what it asks
//! (deliveries, records, events for sites, the sessions' room lists).

use super::{Action, Node};
use crate::common::{ConnId, PeerId, NO_CONN};
use crate::jid::Jid;
use crate::model::event::LinkEvent;
use crate::model::room::RoomKey;
use crate::muc::{MucOutput, Origin};
use crate::xml::Element;

impl Node {
    /// Run `f` on the MUC service, then carry out what it asked.
    pub(crate) fn with_muc<R>(&mut self, f: impl FnOnce(&mut crate::muc::Ctx) -> R) -> R {
        let result = {
            let mut ctx = self.muc.ctx(
                &mut self.state.rooms,
                self.im.bound(),
                &self.clients,
                &self.links,
                self.now,
            );
            f(&mut ctx)
        };
        self.drain_muc();
        self.keep_archives_within_total();
        result
    }

    fn drain_muc(&mut self) {
        loop {
            let out = self.muc.take_output();
            if out.is_empty() {
                return;
            }
            for o in out {
                match o {
                    MucOutput::Send { conn, bytes } => self.clients.send(conn, bytes),
                    MucOutput::Paced { conn, bytes } => self.clients.send_paced(conn, bytes, None),
                    MucOutput::Remote { to, el } => {
                        if !self.link_deliver_stanza(&to, &el) {
                            log::debug!(
                                "muc: no link towards {}; dropped a stanza for {to}",
                                to.domain()
                            );
                        }
                    }
                    MucOutput::Route { to, el } => {
                        self.route_message(NO_CONN, &el, &to);
                    }
                    MucOutput::Persist(record) => self.push_action(Action::Persist(record)),
                    MucOutput::ToSite {
                        peer,
                        event,
                        transient: false,
                    } => self.link_send(&peer, &event),
                    MucOutput::ToSite { peer, event, .. } => {
                        self.link_send_transient(&peer, &event)
                    }
                    MucOutput::Joined { conn, room } => {
                        if let Some(r) = self.im.bound_mut().resource_mut(conn) {
                            r.rooms.insert(RoomKey::Mastered(room));
                        }
                    }
                    MucOutput::Left { session, room } => self
                        .im
                        .bound_mut()
                        .forget_joined_room(&session, &RoomKey::Mastered(room)),
                }
            }
        }
    }

    pub(crate) fn is_muc_service(&self, jid: &Jid) -> bool {
        jid.domain() == self.cfg.muc_service
    }

    /// A stanza for the MUC service or one of its rooms.
    pub(crate) fn on_muc_stanza(&mut self, origin: &Origin, el: Element, to: Jid) {
        self.with_muc(|m| m.on_muc_stanza(origin, el, to));
    }

    /// An event from a mirroring site.
    pub(crate) fn on_site_event(&mut self, peer: &PeerId, ev: LinkEvent) {
        if let LinkEvent::Resync { .. } = &ev {
            self.links.reattached(peer);
        }
        if let LinkEvent::Relay { from, to, stanza } = ev {
            if self.is_muc_service(&to) {
                let ev = LinkEvent::Relay { from, to, stanza };
                return self.with_muc(|m| m.on_site_event(peer, ev));
            }
            return self.on_remote_stanza(peer, from, to, stanza);
        }
        self.with_muc(|m| m.on_site_event(peer, ev));
    }

    /// Leave every room a session is in (it went unavailable or disconnected).
    pub(crate) fn leave_all_rooms(&mut self, conn: ConnId) {
        let Some(s) = self.im.bound().resource(conn) else {
            return;
        };
        let (jid, rooms) = (s.jid.clone(), s.rooms.clone());
        for room in rooms {
            match room {
                RoomKey::Mirrored(key) => self.mirror_leave(&key, &jid),
                RoomKey::Mastered(room) => self.with_muc(|m| m.muc_leave(&room, &jid, None)),
            }
        }
    }
}
