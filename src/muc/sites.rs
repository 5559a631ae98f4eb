//! The master's side of mirroring: stanzas of users at mirroring sites
//! enter rooms as `Origin::Remote`, and each room change goes once to each
//! site that has occupants in the room (DMUC: one copy per site).

use super::Ctx;
use super::Origin;
use crate::common::PeerId;
use crate::jid::Jid;
use crate::model::event::{LinkEvent, OccupantChange, OccupantInfo};
use crate::model::room::{Affiliation, Archived};
use crate::xml::{ns, Element};
use std::collections::BTreeSet;

/// The newest messages of `newest_first` whose bytes fit in `budget`, in
/// the master's order, and whether any were left out for the budget.
fn newest_within(
    newest_first: impl Iterator<Item = Archived>,
    budget: usize,
) -> (Vec<Archived>, bool) {
    let mut picked = Vec::new();
    let mut bytes = 0;
    let mut cut = false;
    for m in newest_first {
        bytes += m.xml.len();
        if bytes > budget {
            cut = true;
            break;
        }
        picked.push(m);
    }
    picked.reverse();
    (picked, cut)
}

impl Ctx<'_> {
    /// Sites that have at least one occupant in a room mastered here.
    pub(crate) fn room_peers(&self, room: &str) -> BTreeSet<PeerId> {
        let mut peers = BTreeSet::new();
        if let Some(live) = self.live_rooms.get(room) {
            for o in live.occupants.values() {
                for s in &o.sessions {
                    if s.domain() != self.cfg.domain {
                        if let Some(p) = self.links.peer_for_domain(s.domain()) {
                            peers.insert(p);
                        }
                    }
                }
            }
        }
        peers
    }

    pub(crate) fn occupant_info(&self, room: &str, nick: &str) -> OccupantInfo {
        let o = &self.live_rooms[room].occupants[nick];
        OccupantInfo {
            nick: nick.to_string(),
            bare: o.bare.clone(),
            jid: o
                .sessions
                .first()
                .map(|s| s.to_string())
                .unwrap_or_else(|| o.bare.clone()),
            affiliation: self.room_state(room).affiliation(&o.bare),
            role: o.role,
            occupant_id: o.occupant_id.clone(),
            presence: o.presence.clone(),
        }
    }

    pub(crate) fn notify_peers(&mut self, peers: &BTreeSet<PeerId>, ev: LinkEvent) {
        for p in peers {
            self.link_send(p, &ev);
        }
    }

    /// Tell every site in the room (and `also`, a site whose occupant just
    /// left) about a change of occupant `nick`.
    pub(crate) fn notify_occupant(
        &mut self,
        room: &str,
        nick: &str,
        change: OccupantChange,
        also: &BTreeSet<PeerId>,
    ) {
        let mut peers = self.room_peers(room);
        peers.extend(also.iter().cloned());
        if peers.is_empty()
            || !self
                .live_rooms
                .get(room)
                .is_some_and(|l| l.occupants.contains_key(nick))
        {
            return;
        }
        let info = self.occupant_info(room, nick);
        self.notify_peers(
            &peers,
            LinkEvent::Occupant {
                room: room.to_string(),
                info,
                change,
            },
        );
    }

    /// A site that joins its first occupant gets the whole room.
    /// The whole room for a site: with the recent history for a new mirror
    /// (`since` None), or with every message after `since` for a site
    /// coming back from a split (`gap` says some are no longer kept).
    pub(crate) fn send_snapshot(&mut self, peer: &PeerId, room: &str, since: Option<u64>) {
        let rs = &self.rooms[room];
        let budget = self.cfg.muc.snapshot_history_bytes;
        let (history, gap) = match since {
            None => {
                let keep = rs.config.history_length as usize;
                let (recent, _) = newest_within(rs.archive.iter().rev().take(keep), budget);
                (recent, false)
            }
            Some(last) => {
                let missed = rs.archive.iter().rev().take_while(|m| m.seq > last);
                let (missed, cut) = newest_within(missed, budget);
                let first_kept = rs.archive.front().map_or(rs.next_seq, |m| m.seq);
                // Some were not kept (trimmed here, or past the snapshot's bound).
                let trimmed = first_kept > last + 1 && last + 1 < rs.next_seq;
                (missed, cut || trimmed)
            }
        };
        let ev = LinkEvent::Snapshot {
            room: room.to_string(),
            config: rs.config.clone(),
            affiliations: rs
                .affiliations
                .iter()
                .map(|(j, a)| (j.clone(), *a))
                .collect(),
            subject: rs.subject.clone(),
            occupants: self.live_rooms[room]
                .occupants
                .keys()
                .map(|n| self.occupant_info(room, n))
                .collect(),
            history,
            next_seq: rs.next_seq,
            gap,
            locked: rs.locked,
        };
        self.link_send(peer, &ev);
        // Its avatar, unless the site has it already: it may be large.
        let rs = &self.rooms[room];
        let news = match since {
            None => rs.vcard.is_some(),
            Some(last) => rs.vcard_seq > last,
        };
        if news {
            let vcard = self.vcard_event(room);
            self.link_send(peer, &vcard);
        }
    }

    /// After a join at the master: the joiner's site gets the room if it had
    /// no occupants yet, then every site learns of the newcomer.
    pub(crate) fn notify_join(
        &mut self,
        origin: &Origin,
        room: &str,
        nick: &str,
        peers_before: &BTreeSet<PeerId>,
    ) {
        if let Origin::Remote { peer, .. } = origin {
            // A site coming back from a split gets its snapshot on `resync`.
            if !peers_before.contains(peer) && !self.links.is_detached(peer) {
                self.send_snapshot(&peer.clone(), room, None);
            }
        }
        self.notify_occupant(room, nick, OccupantChange::Joined, &BTreeSet::new());
    }

    pub(crate) fn notify_room(&mut self, room: &str, ev: LinkEvent) {
        let peers = self.room_peers(room);
        self.notify_peers(&peers, ev);
    }

    /// An event from a mirroring site.
    pub(crate) fn on_site_event(&mut self, peer: &PeerId, ev: LinkEvent) {
        if let LinkEvent::Resync { room, last_seq } = &ev {
            if self.rooms.contains_key(room) && self.live_rooms.contains_key(room) {
                self.send_snapshot(peer, room, Some(*last_seq));
            }
            return;
        }
        let from = match &ev {
            LinkEvent::Join { from, .. }
            | LinkEvent::Update { from, .. }
            | LinkEvent::Leave { from, .. }
            | LinkEvent::Groupchat { from, .. }
            | LinkEvent::Relay { from, .. } => from.clone(),
            _ => return log::warn!("link {peer}: refused a master-to-site event from a site"),
        };
        // A site speaks only for its own users.
        if from.domain() != peer || from.resource().is_none() {
            return log::warn!("link {peer}: refused an event on behalf of {from}");
        }
        let origin = Origin::Remote {
            peer: peer.clone(),
            jid: from.clone(),
        };
        match ev {
            LinkEvent::Join { room, nick, .. }
                if self
                    .live_rooms
                    .get(&room)
                    .and_then(|l| l.nick_of(&from))
                    .as_deref()
                    == Some(nick.as_str()) =>
            {
                // Already in under that nick: a re-announcement after a restart here. Nothing changes.
            }
            LinkEvent::Join {
                room,
                nick,
                presence,
                ..
            }
            | LinkEvent::Update {
                room,
                nick,
                presence,
                ..
            } => {
                let Some(to) = self.room_occupant_jid(&room, &nick) else {
                    return;
                };
                let mut p = presence;
                p.set_attr("from", from.to_string());
                p.set_attr("to", to.to_string());
                p.remove_attr("type");
                self.on_muc_stanza(&origin, p, to);
            }
            LinkEvent::Leave { room, presence, .. } => {
                let Some(nick) = self.live_rooms.get(&room).and_then(|l| l.nick_of(&from)) else {
                    return;
                };
                let Some(to) = self.room_occupant_jid(&room, &nick) else {
                    return;
                };
                let mut p = presence;
                p.set_attr("from", from.to_string());
                p.set_attr("to", to.to_string());
                p.set_attr("type", "unavailable");
                self.on_muc_stanza(&origin, p, to);
            }
            LinkEvent::Groupchat {
                room,
                nick,
                stanza_id,
                message,
                ..
            } => {
                let known = self
                    .live_rooms
                    .get(&room)
                    .and_then(|l| l.nick_of(&from))
                    .is_some();
                if !known && self.rooms.contains_key(&room) {
                    // The sender was in the room when the site sent this (this
                    // node restarted since): take them back in, then the message.
                    if let Some(to) = self.room_occupant_jid(&room, &nick) {
                        let join = Element::new("presence", ns::CLIENT)
                            .attr("from", from.to_string())
                            .attr("to", to.to_string())
                            .child(Element::new("x", crate::xml::muc_ns::MUC));
                        self.on_muc_stanza(&origin, join, to);
                    }
                }
                let mut m = message;
                m.set_attr("from", from.to_string());
                m.set_attr("to", self.room_jid(&room));
                m.set_attr("type", "groupchat");
                self.muc_room_message_with_id(&origin, m, &room, Some(stanza_id));
            }
            LinkEvent::Relay { to, stanza, .. } => {
                let mut s = stanza;
                s.set_attr("from", from.to_string());
                if self.is_muc_service(&to) {
                    self.on_muc_stanza(&origin, s, to);
                } else {
                    log::debug!("link {peer}: relay to {to} is not for a room here");
                }
            }
            _ => {}
        }
    }

    /// A site's link has been down past the grace period: its occupants are
    /// shown leaving with status 333, here and at the other sites (not to that
    /// site, which keeps its users in and announces them again on return).
    pub(crate) fn master_detach_site(&mut self, peer: &PeerId) {
        let rooms = self.mastered_live_rooms();
        for room in rooms {
            let affected: Vec<String> = self.live_rooms[&room]
                .occupants
                .iter()
                .filter(|(_, o)| o.sessions.iter().any(|s| s.domain() == peer))
                .map(|(n, _)| n.clone())
                .collect();
            for nick in affected {
                let occ = self
                    .live_rooms
                    .get_mut(&room)
                    .expect("room")
                    .occupants
                    .get_mut(&nick)
                    .expect("occupant");
                let only_there = occ.sessions.iter().all(|s| s.domain() == peer);
                if !only_there {
                    occ.sessions.retain(|s| s.domain() != peer);
                    continue;
                }
                self.broadcast_presence_of(&room, &nick, &[333], true, None);
                let mut others = self.room_peers(&room);
                others.remove(peer);
                let info = self.occupant_info(&room, &nick);
                let change = OccupantChange::Removed {
                    code: 333,
                    actor: None,
                    reason: None,
                };
                self.notify_peers(
                    &others,
                    LinkEvent::Occupant {
                        room: room.clone(),
                        info,
                        change,
                    },
                );
                self.live_rooms
                    .get_mut(&room)
                    .expect("room")
                    .occupants
                    .remove(&nick);
            }
        }
    }

    /// A site restarted: its users' sessions died with it, so they leave.
    pub(crate) fn forget_site_occupants(&mut self, peer: &PeerId) {
        let stale: usize = self
            .mastered_live_rooms()
            .iter()
            .flat_map(|r| self.live_rooms[r].occupants.values())
            .flat_map(|o| o.sessions.iter())
            .filter(|s| s.domain() == peer)
            .count();
        if stale > 0 {
            log::info!(
                "link {peer}: the site restarted; {stale} of its sessions leave their rooms"
            );
        }
        // As after the grace period: the others see them go (333); the site
        // is not told, since its new sessions may reuse the old addresses.
        self.master_detach_site(peer);
    }

    fn room_occupant_jid(&self, room: &str, nick: &str) -> Option<Jid> {
        Jid::parse(&format!("{room}@{}/{nick}", self.cfg.muc_service)).ok()
    }

    pub(crate) fn notify_affiliation(&mut self, room: &str, jid: &str, affiliation: Affiliation) {
        let ev = LinkEvent::Affiliation {
            room: room.to_string(),
            jid: jid.to_string(),
            affiliation,
        };
        self.notify_room(room, ev);
    }

    pub(crate) fn notify_config(&mut self, room: &str) {
        let config = self.rooms[room].config.clone();
        self.notify_room(
            room,
            LinkEvent::Config {
                room: room.to_string(),
                config,
            },
        );
    }

    /// Peers that had occupants in a room that is being destroyed.
    pub(crate) fn notify_destroyed(
        &mut self,
        room: &str,
        peers: &BTreeSet<PeerId>,
        alt: Option<String>,
        reason: Option<String>,
    ) {
        self.notify_peers(
            peers,
            LinkEvent::Destroyed {
                room: room.to_string(),
                alt,
                reason,
            },
        );
    }
}
