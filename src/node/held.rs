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
use crate::model::held::{HeldRoom, HeldSession};
use crate::model::room::RoomKey;
use crate::state::Record;
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
        // The epoch is this run's now: a crash later is a restart to peers.
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
            let Ok(jid) = Jid::parse(&h.jid) else {
                continue;
            };
            // An account deleted while the node was stopped.
            if !jid
                .local()
                .is_some_and(|u| self.state.accounts.contains_key(u))
            {
                continue;
            }
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
        for (conn, _, h) in &restored {
            let down_ms = now.unix_ms.saturating_sub(h.held_at_unix_ms);
            self.clients.settle_restored(*conn, h, down_ms);
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
