//! Room administration: the owner's configuration and destruction
//! (`muc#owner`), affiliations and roles (`muc#admin`), kick and ban.

use super::form::{self, DATA};
use super::mns;
use super::Ctx;
use super::Origin;
use crate::jid::Jid;
use crate::model::event::OccupantChange;
use crate::model::occupants::Role;
use crate::model::room::{Affiliation, RoomRecord};
use crate::stanza;
use crate::xml::{ns, Element, Node as XmlNode};
use std::collections::BTreeSet;

enum Change {
    Role {
        nick: String,
        role: Option<Role>,
    },
    Affiliation {
        jid: String,
        affiliation: Affiliation,
    },
}

impl Ctx<'_> {
    pub(super) fn muc_owner(&mut self, origin: &Origin, el: &Element, room: &str, query: &Element) {
        let bare = self.origin_jid(origin).to_bare().to_string();
        if self.rooms[room].affiliation(&bare) != Affiliation::Owner {
            return self.bounce_to(origin, el, "forbidden");
        }
        let room_jid = self.room_jid(room);
        let limit = self.cfg.muc.max_users;
        if el.get_attr("type") == Some("get") {
            let f = form::config_form(&self.rooms[room].config, limit);
            let q = Element::new("query", mns::OWNER).child(f);
            return self.reply(origin, &stanza::iq_result(el, &room_jid, Some(q)));
        }
        if let Some(x) = query.get_child("x", DATA) {
            if form::is_form(x, "cancel") {
                if self.rooms[room].locked {
                    self.destroy_room(room, None, None);
                }
                return self.reply(origin, &stanza::iq_result(el, &room_jid, None));
            }
            if !form::is_form(x, "submit") {
                return self.bounce_to(origin, el, "bad-request");
            }
            let before = self.rooms[room].config.clone();
            let config = match form::apply_submission(x, &before, limit) {
                Ok(c) => c,
                Err(e) => {
                    log::debug!("muc {room}: bad configuration form: {e}");
                    return self.bounce_to(origin, el, "bad-request");
                }
            };
            let now_members_only = config.members_only && !before.members_only;
            self.commit_room(room, RoomRecord::Configure { config });
            self.notify_config(room);
            self.reply(origin, &stanza::iq_result(el, &room_jid, None));
            self.notify_config_change(room);
            if now_members_only {
                let outsiders: Vec<String> = self
                    .live(room)
                    .map(|l| {
                        l.occupants
                            .iter()
                            .filter(|(_, o)| {
                                self.rooms[room].affiliation(&o.bare) < Affiliation::Member
                            })
                            .map(|(n, _)| n.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for nick in outsiders {
                    self.remove_occupant(room, &nick, 322, None, None);
                }
            }
            return;
        }
        if let Some(d) = query.get_child("destroy", mns::OWNER) {
            let alt = d.get_attr("jid").map(str::to_string);
            let reason = d.get_child("reason", mns::OWNER).map(|r| r.text_content());
            self.destroy_room(room, alt, reason);
            return self.reply(origin, &stanza::iq_result(el, &room_jid, None));
        }
        self.bounce_to(origin, el, "bad-request")
    }

    /// Status 104: the configuration changed.
    pub(super) fn notify_config_change(&mut self, room: &str) {
        let Some(live) = self.live(room) else { return };
        let sessions: Vec<Jid> = live
            .occupants
            .values()
            .flat_map(|o| o.sessions.clone())
            .collect();
        let m = Element::new("message", ns::CLIENT)
            .attr("from", self.room_jid(room))
            .attr("type", "groupchat")
            .child(
                Element::new("x", mns::USER)
                    .child(Element::new("status", mns::USER).attr("code", "104")),
            );
        for s in sessions {
            self.room_send(&s, m.clone());
        }
    }

    fn destroy_room(&mut self, room: &str, alt: Option<String>, reason: Option<String>) {
        let peers = self.room_peers(room);
        self.notify_destroyed(room, &peers, alt.clone(), reason.clone());
        let mut destroy = Element::new("destroy", mns::USER);
        if let Some(j) = alt {
            destroy.set_attr("jid", j);
        }
        if let Some(r) = reason {
            destroy = destroy.child(Element::new("reason", mns::USER).text(r));
        }
        let sessions = self
            .live(room)
            .map(|l| l.all_sessions())
            .unwrap_or_default();
        for (nick, s) in sessions {
            let p = super::destroyed_presence(&self.occupant_jid(room, &nick), &destroy);
            self.room_send(&s, p);
            self.left_room(&s, room);
        }
        self.live_rooms.remove(room);
        self.commit_room(room, RoomRecord::Destroy);
    }

    /// Remove an occupant (all its sessions) with a status code: 307 kick,
    /// 301 ban, 321 affiliation lost, 322 room became members-only.
    fn remove_occupant(
        &mut self,
        room: &str,
        nick: &str,
        code: u16,
        actor: Option<&str>,
        reason: Option<&str>,
    ) {
        let Some(live) = self.live(room) else { return };
        if !live.occupants.contains_key(nick) {
            return;
        }
        for (vnick, s) in live.all_sessions() {
            let viewer_role = self.live_rooms[room].occupants[&vnick].role;
            let codes: &[u16] = if vnick == nick { &[110, code] } else { &[code] };
            let mut p =
                self.occupant_presence(room, nick, self.sees_jids(room, viewer_role), codes, true);
            if let Some(XmlNode::Element(x)) = p
                .children
                .iter_mut()
                .find(|c| matches!(c, XmlNode::Element(e) if e.is("x", mns::USER)))
            {
                if let Some(XmlNode::Element(item)) = x.children.first_mut() {
                    if let Some(a) = actor {
                        item.children.push(XmlNode::Element(
                            Element::new("actor", mns::USER).attr("nick", a),
                        ));
                    }
                    if let Some(r) = reason {
                        item.children
                            .push(XmlNode::Element(Element::new("reason", mns::USER).text(r)));
                    }
                }
            }
            self.room_send(&s, p);
        }
        let removed = OccupantChange::Removed {
            code,
            actor: actor.map(str::to_string),
            reason: reason.map(str::to_string),
        };
        self.notify_occupant(room, nick, removed, &BTreeSet::new());
        let occ = self
            .live_rooms
            .get_mut(room)
            .expect("room")
            .occupants
            .remove(nick)
            .expect("occupant");
        for s in occ.sessions {
            self.left_room(&s, room);
        }
        self.maybe_close_room(room);
    }

    pub(super) fn muc_admin(&mut self, origin: &Origin, el: &Element, room: &str, query: &Element) {
        let me = self.origin_jid(origin);
        let bare = me.to_bare().to_string();
        let actor_aff = self.rooms[room].affiliation(&bare);
        let actor_nick = self.live(room).and_then(|l| l.nick_of(&me));
        let actor_role = actor_nick
            .as_ref()
            .map(|n| self.live_rooms[room].occupants[n].role)
            .unwrap_or(if actor_aff >= Affiliation::Admin {
                Role::Moderator
            } else {
                Role::Visitor
            });
        let items: Vec<&Element> = query
            .elements()
            .filter(|e| e.is("item", mns::ADMIN))
            .collect();
        if items.is_empty() {
            return self.bounce_to(origin, el, "bad-request");
        }
        let room_jid = self.room_jid(room);
        if el.get_attr("type") == Some("get") {
            let item = items[0];
            let mut q = Element::new("query", mns::ADMIN);
            if let Some(a) = item.get_attr("affiliation").and_then(Affiliation::parse) {
                if actor_aff < Affiliation::Admin {
                    return self.bounce_to(origin, el, "forbidden");
                }
                for (jid, _) in self.rooms[room]
                    .affiliations
                    .iter()
                    .filter(|(_, x)| **x == a)
                {
                    q = q.child(
                        Element::new("item", mns::ADMIN)
                            .attr("affiliation", a.as_str())
                            .attr("jid", jid.clone()),
                    );
                }
            } else if let Some(r) = item.get_attr("role").and_then(Role::parse) {
                if actor_role != Role::Moderator {
                    return self.bounce_to(origin, el, "forbidden");
                }
                for (nick, o) in self
                    .live(room)
                    .map(|l| l.occupants.iter().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    if o.role == r {
                        q = q.child(
                            Element::new("item", mns::ADMIN)
                                .attr("role", r.as_str())
                                .attr("nick", nick.clone())
                                .attr(
                                    "affiliation",
                                    self.rooms[room].affiliation(&o.bare).as_str(),
                                )
                                .attr("jid", o.bare.clone()),
                        );
                    }
                }
            } else {
                return self.bounce_to(origin, el, "bad-request");
            }
            return self.reply(origin, &stanza::iq_result(el, &room_jid, Some(q)));
        }
        // Set: check every item first, then apply all (the request is atomic).
        let mut changes = Vec::new();
        for item in &items {
            let change = match (
                item.get_attr("nick"),
                item.get_attr("role"),
                item.get_attr("jid"),
                item.get_attr("affiliation"),
            ) {
                (Some(nick), Some(role), _, None) => {
                    let role = match role {
                        "none" => None,
                        r => match Role::parse(r) {
                            Some(r) => Some(r),
                            None => return self.bounce_to(origin, el, "bad-request"),
                        },
                    };
                    Change::Role {
                        nick: nick.to_string(),
                        role,
                    }
                }
                (_, None, Some(jid), Some(aff)) => {
                    let (Ok(j), Some(affiliation)) = (Jid::parse(jid), Affiliation::parse(aff))
                    else {
                        return self.bounce_to(origin, el, "bad-request");
                    };
                    Change::Affiliation {
                        jid: j.to_bare().to_string(),
                        affiliation,
                    }
                }
                _ => return self.bounce_to(origin, el, "bad-request"),
            };
            if let Err(condition) = self.check_change(room, actor_aff, actor_role, &change) {
                return self.bounce_to(origin, el, condition);
            }
            let reason = item
                .get_child("reason", mns::ADMIN)
                .map(|r| r.text_content());
            changes.push((change, reason));
        }
        let added: BTreeSet<&str> = changes
            .iter()
            .filter_map(|(c, _)| match c {
                Change::Affiliation { jid, affiliation } if *affiliation != Affiliation::None => {
                    Some(jid.as_str())
                }
                _ => None,
            })
            .filter(|j| !self.rooms[room].affiliations.contains_key(*j))
            .collect();
        let kept = self.rooms[room].affiliations.len();
        if kept + added.len() > self.cfg.muc.affiliations_per_room {
            return self.bounce_to_explained(
                origin,
                el,
                "resource-constraint",
                "the room keeps no more affiliations",
            );
        }
        for (change, reason) in changes {
            self.apply_change(room, change, actor_nick.as_deref(), reason.as_deref());
        }
        self.reply(origin, &stanza::iq_result(el, &room_jid, None));
    }

    fn check_change(
        &self,
        room: &str,
        actor_aff: Affiliation,
        actor_role: Role,
        change: &Change,
    ) -> Result<(), &'static str> {
        let rs = &self.rooms[room];
        match change {
            Change::Role { nick, role } => {
                let Some(target) = self.live(room).and_then(|l| l.occupants.get(nick)) else {
                    return Err("item-not-found");
                };
                let target_aff = rs.affiliation(&target.bare);
                match role {
                    Some(Role::Moderator) if actor_aff < Affiliation::Admin => Err("forbidden"),
                    Some(Role::Moderator) => Ok(()),
                    _ if actor_role != Role::Moderator => Err("forbidden"),
                    _ if target_aff >= Affiliation::Admin => Err("not-allowed"),
                    _ => Ok(()),
                }
            }
            Change::Affiliation { jid, affiliation } => {
                let target_aff = rs.affiliation(jid);
                let high = |a: Affiliation| a >= Affiliation::Admin;
                if (high(*affiliation) || high(target_aff)) && actor_aff != Affiliation::Owner {
                    return Err(if actor_aff == Affiliation::Admin {
                        "not-allowed"
                    } else {
                        "forbidden"
                    });
                }
                if actor_aff < Affiliation::Admin {
                    return Err("forbidden");
                }
                if target_aff == Affiliation::Owner
                    && *affiliation != Affiliation::Owner
                    && rs.owners() == 1
                {
                    return Err("conflict");
                }
                Ok(())
            }
        }
    }

    fn apply_change(
        &mut self,
        room: &str,
        change: Change,
        actor: Option<&str>,
        reason: Option<&str>,
    ) {
        match change {
            Change::Role { nick, role: None } => {
                self.remove_occupant(room, &nick, 307, actor, reason)
            }
            Change::Role {
                nick,
                role: Some(role),
            } => self.set_role(room, &nick, role),
            Change::Affiliation { jid, affiliation } => {
                self.commit_room(
                    room,
                    RoomRecord::Affiliate {
                        jid: jid.clone(),
                        affiliation,
                    },
                );
                self.notify_affiliation(room, &jid, affiliation);
                let nicks = self
                    .live(room)
                    .map(|l| l.nicks_of_bare(&jid))
                    .unwrap_or_default();
                let members_only = self.rooms[room].config.members_only;
                for nick in nicks {
                    if affiliation == Affiliation::Outcast {
                        self.remove_occupant(room, &nick, 301, actor, reason);
                    } else if members_only && affiliation < Affiliation::Member {
                        self.remove_occupant(room, &nick, 321, actor, reason);
                    } else {
                        let role = self.role_for(room, affiliation);
                        self.set_role(room, &nick, role);
                    }
                }
            }
        }
    }

    /// Give an occupant a new role and tell the room.
    fn set_role(&mut self, room: &str, nick: &str, role: Role) {
        let live = self.live_rooms.get_mut(room);
        if let Some(o) = live.and_then(|l| l.occupants.get_mut(nick)) {
            o.role = role;
            self.broadcast_presence_of(room, nick, &[], false, None);
            self.notify_occupant(room, nick, OccupantChange::Updated, &BTreeSet::new());
        }
    }
}
