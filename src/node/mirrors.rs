//! The mirrors at the node: what reaches them (local users' stanzas for
//! rooms mastered elsewhere, the masters' events, link notices, sessions
//! leaving) and what they ask (deliveries, records, events for masters,
//! the sessions' room lists).

use super::{Action, Node};
use crate::common::{ConnId, PeerId, NO_CONN};
use crate::jid::Jid;
use crate::mirror::MirrorOutput;
use crate::model::event::LinkEvent;
use crate::model::room::RoomKey;
use crate::xml::Element;

impl Node {
    /// Run `f` on the mirrors, then carry out what they asked.
    pub(crate) fn with_mirrors<R>(&mut self, f: impl FnOnce(&mut crate::mirror::Ctx) -> R) -> R {
        let result = {
            let mut ctx = self.mirrors.ctx(
                &mut self.state.mirrors,
                &self.state.links,
                self.im.bound(),
                &self.clients,
                &self.links,
                self.now,
            );
            f(&mut ctx)
        };
        self.drain_mirrors();
        self.keep_archives_within_total();
        result
    }

    fn drain_mirrors(&mut self) {
        loop {
            let out = self.mirrors.take_output();
            if out.is_empty() {
                return;
            }
            for o in out {
                match o {
                    MirrorOutput::Send { conn, bytes } => self.clients.send(conn, bytes),
                    MirrorOutput::Paced { conn, bytes } => {
                        self.clients.send_paced(conn, bytes, None)
                    }
                    MirrorOutput::Route { to, el } => {
                        self.route_message(NO_CONN, &el, &to);
                    }
                    MirrorOutput::Persist(record) => self.push_action(Action::Persist(record)),
                    MirrorOutput::ToMaster {
                        upstream,
                        event,
                        transient: false,
                    } => self.link_send(&upstream, &event),
                    MirrorOutput::ToMaster {
                        upstream, event, ..
                    } => self.link_send_transient(&upstream, &event),
                    MirrorOutput::Fanout { upstream, bytes } => {
                        self.links.count_fanout(&upstream, bytes)
                    }
                    MirrorOutput::Joined { conn, key } => {
                        if let Some(r) = self.im.bound_mut().resource_mut(conn) {
                            r.rooms.insert(RoomKey::Mirrored(key));
                        }
                    }
                    MirrorOutput::Left { session, key } => self
                        .im
                        .bound_mut()
                        .forget_joined_room(&session, &RoomKey::Mirrored(key)),
                }
            }
        }
    }

    pub(crate) fn is_mirrored_service(&self, jid: &Jid) -> bool {
        self.cfg.link.upstreams.iter().any(|u| u == jid.domain())
    }

    /// A local user's stanza to a room on an upstream MUC service.
    pub(crate) fn on_mirror_stanza(&mut self, conn: ConnId, el: Element, to: Jid) {
        self.with_mirrors(|m| m.on_mirror_stanza(conn, el, to));
    }

    /// An event from the master of rooms mirrored here.
    pub(crate) fn on_upstream_event(&mut self, peer: &PeerId, ev: LinkEvent) {
        match ev {
            LinkEvent::Routes { domains } => self.on_routes(peer, domains),
            // A user at the master or another site, not one of its rooms.
            LinkEvent::Relay { from, to, stanza } if from.domain() != peer.as_str() => {
                self.on_remote_stanza(peer, from, to, stanza)
            }
            ev => self.with_mirrors(|m| m.on_upstream_event(peer, ev)),
        }
    }

    pub(crate) fn mirror_leave(&mut self, key: &str, session: &Jid) {
        self.with_mirrors(|m| m.mirror_leave(key, session));
    }

    /// At start: the replicas cached in the log come back (without
    /// occupants), and sessions named in events still queued for a master
    /// died with the previous run (but those kept for their resumption).
    pub(crate) fn restore_mirrors(&mut self) {
        let upstreams = self.cfg.link.upstreams.clone();
        let kept = self
            .state
            .held_sessions
            .iter()
            .filter_map(|h| super::held::restorable(&self.state, h))
            .collect();
        self.with_mirrors(|m| {
            m.restore_mirrors();
            for upstream in &upstreams {
                m.leave_for_dead_sessions(&PeerId::new(upstream.clone()), &kept);
            }
        });
    }
}
