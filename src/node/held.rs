//! Sessions kept across a graceful restart (XEP-0198 resumption). At the
//! stop, every session that can be resumed is written to the log with
//! what its client would miss (its unacknowledged stanzas) and what the
//! node knew of it (presence, carbons, rooms and nicks), and its
//! connection closes as if dropped; the other sessions end as before. At
//! the next start they come back detached: contacts and rooms see them
//! as they were, and a client that resumes within the timeout (the
//! restart counts against it) gets what it missed, in order. One not
//! resumed in time ends as usual: what it was sent and never acknowledged
//! goes to offline storage. A crash keeps none of this: clients log in
//! anew and catch up from offline storage and their archive.

use super::Node;
use crate::c2s::RESTORED_CONN_BASE;
use crate::common::{ConnId, Now, PeerId};
use crate::jid::Jid;
use crate::model::event::LinkEvent;
use crate::model::held::{HeldRoom, HeldSession};
use crate::model::room::RoomKey;
use crate::state::Record;
use crate::state::State;
use crate::xml::{muc_ns as mns, ns, Element};
use std::collections::BTreeSet;

impl Node {
    /// The node is stopping: resumable sessions are kept, the rest end
    /// with `<system-shutdown/>`.
    pub(crate) fn shutdown(&mut self) {
        let kept = self.clients.resumable_sessions();
        // Read before the rooms let their occupants go.
        let rooms: Vec<Vec<HeldRoom>> = kept
            .iter()
            .map(|(conn, jid)| self.rooms_of(*conn, jid))
            .collect();
        let jids: BTreeSet<Jid> = kept.iter().map(|(_, j)| j.clone()).collect();
        self.with_muc(|m| m.muc_shutdown(&jids));
        self.with_mirrors(|m| m.mirror_shutdown(&jids));
        let conns: BTreeSet<ConnId> = kept.iter().map(|(c, _)| *c).collect();
        self.clients.shutdown_except(&conns);
        // Those ending go unavailable: the kept sessions hear it.
        self.pump_clients();
        let mut count = 0;
        for ((conn, jid), rooms) in kept.into_iter().zip(rooms) {
            if let Some(held) = self.hold(conn, jid, rooms) {
                self.commit(Record::SessionHeld(Box::new(held)));
                count += 1;
            }
        }
        self.pump_clients();
        if count > 0 {
            // Those that ended said so over the links; the kept ones are
            // still there: peers are not to take the restart for a node
            // that forgot its sessions.
            let epoch = self.links.epoch().to_string();
            self.commit(Record::LinkEpochKept { epoch });
            log::info!("{count} sessions kept for their clients to resume after the restart");
        }
    }

    /// The rooms `jid` (the session `conn`) is in, with its nicks there.
    fn rooms_of(&self, conn: ConnId, jid: &Jid) -> Vec<HeldRoom> {
        let Some(r) = self.im.bound().resource(conn) else {
            return Vec::new();
        };
        let mut rooms = Vec::new();
        for key in &r.rooms {
            let (room, live) = match key {
                RoomKey::Mastered(name) => (
                    format!("{name}@{}", self.cfg.muc_service),
                    self.muc.live_rooms().get(name),
                ),
                RoomKey::Mirrored(key) => (key.clone(), self.mirrors.rooms().get(key)),
            };
            let Some(live) = live else {
                continue;
            };
            let Some(nick) = live.nick_of(jid) else {
                continue;
            };
            let presence = live.occupants[&nick].presence.to_xml(ns::CLIENT);
            rooms.push(HeldRoom {
                room,
                nick,
                presence,
            });
        }
        rooms
    }

    /// Keep the session `conn` for the next start, if it can be.
    fn hold(&mut self, conn: ConnId, jid: Jid, mut rooms: Vec<HeldRoom>) -> Option<HeldSession> {
        self.im.bound().resource(conn)?;
        let stream = self.clients.hold_for_restart(conn)?;
        let r = self.im.bound().resource(conn)?;
        // Rooms that end with this run (temporary ones) told it so.
        let service = format!("@{}", self.cfg.muc_service);
        rooms.retain(|h| match h.room.strip_suffix(&service) {
            Some(name) => self.state.rooms.contains_key(name),
            None => true,
        });
        let held = HeldSession {
            jid: jid.to_string(),
            sm_id: stream.sm_id,
            handled: stream.handled,
            sent: stream.sent,
            unacked: stream.unacked,
            held_at_unix_ms: self.now.unix_ms,
            waited_ms: stream.waited_ms,
            presence: r.presence.as_ref().map(|p| p.to_xml(ns::CLIENT)),
            priority: r.priority,
            roster_requested: r.roster_requested,
            carbons: r.carbons,
            directed: r.directed.iter().cloned().collect(),
            inactive: stream.inactive,
            rooms,
            caps: r.caps.clone(),
            blocklist_requested: r.blocklist_requested,
        };
        self.im.bound_mut().forget(conn, Some(&jid));
        Some(held)
    }

    /// The node starts: sessions the stop before kept wait for their
    /// clients again, in their rooms. Call once, before anything else.
    pub fn start(&mut self, now: Now) {
        self.now = now;
        let held = std::mem::take(&mut self.state.held_sessions);
        if held.is_empty() && self.state.kept_epoch.is_none() {
            return;
        }
        // The kept epoch is taken (`Node::new`): a crash from now on is a
        // restart to peers.
        self.commit(Record::HeldSessionsTaken);
        // The rooms here forgot the sites' occupants with the stop.
        self.links.forgot_sites();
        // Who else is in the mirrored rooms they are back in comes from
        // their masters.
        for upstream in self.cfg.link.upstreams.clone() {
            self.mirrors.resync_when_linked(PeerId::new(upstream));
        }
        let mut restored = Vec::new();
        for (i, h) in held.into_iter().enumerate() {
            let Some(jid) = restorable(&self.state, &h) else {
                // Its account was deleted while the node was stopped: the
                // masters of its mirrored rooms let it go.
                self.leave_mirrored_rooms(&h);
                continue;
            };
            let conn = RESTORED_CONN_BASE + i as ConnId;
            self.clients
                .restore_held(now.mono_ms, conn, jid.clone(), &h);
            self.im.restore(conn, jid.clone(), &h);
            restored.push((conn, jid, h));
        }
        for (conn, jid, h) in &restored {
            for room in &h.rooms {
                self.rejoin(*conn, jid, room);
            }
        }
        for (conn, jid, h) in &restored {
            let down_ms = now.unix_ms.saturating_sub(h.held_at_unix_ms);
            self.clients.settle_restored(*conn, h, down_ms);
            // What its client supports was not kept: asked again, the
            // question waiting for it with the rest.
            self.im
                .ctx(&mut self.state.accounts, &self.clients, self.now)
                .learn_caps(*conn);
            self.drain_im();
            // A room it could not get back into (gone, or its rules or the
            // node's bounds changed): its client is told it is out.
            for room in &h.rooms {
                if !self.is_back_in(*conn, room) {
                    self.tell_out_of(*conn, jid, room);
                }
            }
        }
        log::info!(
            "{} sessions kept by the last stop wait for their clients to resume",
            restored.len()
        );
        // Those whose time ran out while the node was stopped end now.
        self.clients.handle_timeout(now.mono_ms, &self.state);
        self.pump_clients();
    }

    /// The restored session `conn` joins `room` again, as it was there
    /// (its nick, its presence), asking for no history.
    fn rejoin(&mut self, conn: ConnId, jid: &Jid, room: &HeldRoom) {
        let Ok(to) = Jid::parse(&format!("{}/{}", room.room, room.nick)) else {
            return;
        };
        let presence = crate::xml::parse_fragment(&room.presence)
            .unwrap_or_else(|_| Element::new("presence", ns::CLIENT));
        let mut x = Element::new("x", mns::MUC)
            .child(Element::new("history", mns::MUC).attr("maxstanzas", "0"));
        // It was let in: a password set meanwhile is no reason to keep it out.
        if let Some(password) = self.room_password(&to) {
            x = x.child(Element::new("password", mns::MUC).text(password));
        }
        let mut presence = presence.child(x);
        presence.set_attr("to", to.to_string());
        self.on_stanza(conn, jid, presence);
    }

    fn room_key(&self, room: &str) -> RoomKey {
        match room.strip_suffix(&format!("@{}", self.cfg.muc_service)) {
            Some(name) => RoomKey::Mastered(name.to_string()),
            None => RoomKey::Mirrored(room.to_string()),
        }
    }

    fn is_back_in(&self, conn: ConnId, room: &HeldRoom) -> bool {
        let key = self.room_key(&room.room);
        self.im
            .bound()
            .resource(conn)
            .is_some_and(|r| r.rooms.contains(&key))
    }

    fn tell_out_of(&mut self, conn: ConnId, jid: &Jid, room: &HeldRoom) {
        let x = Element::new("x", mns::USER)
            .child(
                Element::new("item", mns::USER)
                    .attr("affiliation", "none")
                    .attr("role", "none"),
            )
            .child(Element::new("status", mns::USER).attr("code", "110"))
            .child(Element::new("status", mns::USER).attr("code", "332"));
        let p = Element::new("presence", ns::CLIENT)
            .attr("from", format!("{}/{}", room.room, room.nick))
            .attr("to", jid.to_string())
            .attr("type", "unavailable")
            .child(x);
        self.clients.send_el(conn, &p);
    }

    /// The masters of the mirrored rooms of a session that is not coming
    /// back hear it leave.
    fn leave_mirrored_rooms(&mut self, held: &HeldSession) {
        let Ok(from) = Jid::parse(&held.jid) else {
            return;
        };
        for room in &held.rooms {
            let Ok(room_jid) = Jid::parse(&room.room) else {
                continue;
            };
            let (Some(name), RoomKey::Mirrored(_)) = (room_jid.local(), self.room_key(&room.room))
            else {
                continue;
            };
            let presence = Element::new("presence", ns::CLIENT).attr("type", "unavailable");
            let leave = LinkEvent::Leave {
                room: name.to_string(),
                from: from.clone(),
                presence,
            };
            self.link_send(&PeerId::new(room_jid.domain()), &leave);
        }
    }

    fn room_password(&self, room: &Jid) -> Option<String> {
        let config = if room.domain() == self.cfg.muc_service {
            &self.state.rooms.get(room.local()?)?.config
        } else {
            &self
                .state
                .mirrors
                .get(&room.to_bare().to_string())?
                .state
                .config
        };
        config.password.clone()
    }
}

/// The JID a kept session comes back as, if it can: its account is still
/// there.
pub(crate) fn restorable(state: &State, held: &HeldSession) -> Option<Jid> {
    let jid = Jid::parse(&held.jid).ok()?;
    state.accounts.contains_key(jid.local()?).then_some(jid)
}
