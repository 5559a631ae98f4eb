//! Moderation of room messages (XEP-0425): a moderator retracts a message
//! by its stanza-id, in the current form (`urn:xmpp:message-moderate:1`)
//! or the older one clients still send (`urn:xmpp:fasten:0` around
//! `urn:xmpp:message-moderate:0`). The archived message is replaced by a
//! tombstone wherever it is read (history, MAM, the snapshots sites get),
//! and the retraction, in both forms, is a room message of its own: every
//! occupant gets it, it is archived, and it reaches the sites like any
//! message, whose replicas then replace their copy the same way.

use super::{Ctx, Origin, Role};
use crate::model::event::LinkEvent;
use crate::model::room::{Archived, RoomRecord};
use crate::stanza;
use crate::xml::{muc_ns as mns, ns, Element, Node as XmlNode};

pub const NS: &str = "urn:xmpp:message-moderate:1";
pub const NS_LEGACY: &str = "urn:xmpp:message-moderate:0";
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const NS_RETRACT_LEGACY: &str = "urn:xmpp:message-retract:0";
pub const NS_FASTEN: &str = "urn:xmpp:fasten:0";
/// Reasons past this are cut.
const REASON_MAX: usize = 1024;

/// A moderation request: the stanza-id and the reason given.
pub fn request(payload: &Element) -> Option<(String, String)> {
    let (id, moderate) = match (payload.name.as_str(), payload.ns.as_str()) {
        ("moderate", NS) if payload.has_child("retract", NS_RETRACT) => {
            (payload.get_attr("id")?, payload)
        }
        ("apply-to", NS_FASTEN) => {
            let m = payload.get_child("moderate", NS_LEGACY)?;
            m.has_child("retract", NS_RETRACT_LEGACY)
                .then_some((payload.get_attr("id")?, m))?
        }
        _ => return None,
    };
    let reason = moderate
        .elements()
        .find(|e| e.name == "reason")
        .map(|r| r.text_content())
        .unwrap_or_default();
    let mut end = reason.len().min(REASON_MAX);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Some((id.to_string(), reason[..end].to_string()))
}

/// The retraction a room sends and archives, in both forms.
pub fn retraction(
    room_jid: &str,
    stanza_id: &str,
    by: &str,
    occupant_id: &str,
    reason: &str,
) -> Element {
    let occupant = Element::new("occupant-id", mns::OCCUPANT_ID).attr("id", occupant_id);
    let mut current = Element::new("retract", NS_RETRACT)
        .attr("id", stanza_id)
        .child(Element::new("moderated", NS).attr("by", by).child(occupant));
    let mut legacy = Element::new("moderated", NS_LEGACY)
        .attr("by", by)
        .child(Element::new("retract", NS_RETRACT_LEGACY));
    if !reason.is_empty() {
        current = current.child(Element::new("reason", NS_RETRACT).text(reason));
        legacy = legacy.child(Element::new("reason", NS_LEGACY).text(reason));
    }
    Element::new("message", ns::CLIENT)
        .attr("from", room_jid)
        .attr("type", "groupchat")
        .child(current)
        .child(
            Element::new("apply-to", NS_FASTEN)
                .attr("id", stanza_id)
                .child(legacy),
        )
}

/// What a retraction (as archived) retracts: the stanza-id, if it is one.
pub fn retracted_id(xml: &str) -> Option<String> {
    if !xml.contains(NS_RETRACT) {
        return None;
    }
    let el = crate::xml::parse_fragment(xml).ok()?;
    let retract = el.get_child("retract", NS_RETRACT)?;
    retract
        .has_child("moderated", NS)
        .then(|| retract.get_attr("id").map(str::to_string))?
}

/// The archived message `msg` as it reads once retracted by `retraction`
/// (an archived retraction): its address, id, stanza-id and occupant-id
/// kept, its content gone, a `<retracted/>` in both forms instead.
pub fn tombstone(msg: &Archived, retraction: &Element, stamp_ms: u64) -> Option<String> {
    let original = crate::xml::parse_fragment(&msg.xml).ok()?;
    let retract = retraction.get_child("retract", NS_RETRACT)?;
    let stamp = stanza::timestamp(stamp_ms);
    let mut retracted = Element::new("retracted", NS_RETRACT).attr("stamp", stamp.clone());
    let mut legacy = None;
    for c in retract.elements() {
        retracted = retracted.child(c.clone());
    }
    if let Some(m) = retraction
        .get_child("apply-to", NS_FASTEN)
        .and_then(|a| a.get_child("moderated", NS_LEGACY))
    {
        let mut m = m.clone();
        m.children
            .retain(|c| !matches!(c, XmlNode::Element(e) if e.name == "retract"));
        legacy = Some(m.child(Element::new("retracted", NS_RETRACT_LEGACY).attr("stamp", stamp)));
    }
    let mut out = Element::new("message", ns::CLIENT);
    for (k, v) in &original.attrs {
        out.set_attr(k, v.clone());
    }
    out = out.child(retracted);
    if let Some(l) = legacy {
        out = out.child(l);
    }
    for keep in original
        .elements()
        .filter(|e| e.ns == ns::SID || e.ns == mns::OCCUPANT_ID)
    {
        out = out.child(keep.clone());
    }
    Some(out.to_xml(ns::CLIENT))
}

impl Ctx<'_> {
    /// A moderation request to `room` (a mastered one) from `origin`.
    pub(crate) fn muc_moderate(
        &mut self,
        origin: &Origin,
        el: &Element,
        room: &str,
        payload: &Element,
    ) {
        let room_jid = self.room_jid(room);
        let Some((stanza_id, reason)) = request(payload) else {
            return self.bounce_to(origin, el, "bad-request");
        };
        let from = self.origin_jid(origin);
        let moderator = self
            .live(room)
            .and_then(|l| l.nick_of(&from))
            .filter(|n| self.live_rooms[room].occupants[n].role == Role::Moderator);
        let Some(nick) = moderator else {
            return self.bounce_to(origin, el, "forbidden");
        };
        let rs = &self.rooms[room];
        let Some(msg) = rs
            .archive
            .seq_of(&stanza_id)
            .and_then(|seq| rs.archive.get(rs.archive.position(seq)?))
        else {
            return self.bounce_to(origin, el, "item-not-found");
        };
        let occupant_id = self.occupant_id(room, &from.to_bare().to_string());
        let by = self.occupant_jid(room, &nick).to_string();
        let out = retraction(&room_jid, &stanza_id, &by, &occupant_id, &reason);
        // The retraction's own time: sites make the same tombstone from it.
        let stamp_ms = self.now.unix_ms.max(self.rooms[room].archive.last_stamp());
        let Some(tomb) = tombstone(&msg, &out, stamp_ms) else {
            return self.bounce_to(origin, el, "item-not-found");
        };
        self.commit_room(
            room,
            RoomRecord::Moderated {
                seq: msg.seq,
                tombstone: tomb,
            },
        );
        // The retraction is a room message: archived, to every occupant
        // and to the sites.
        let own_id = self.random_id();
        let out = out.attr("id", own_id.clone());
        let archived = Archived {
            seq: self.rooms[room].next_seq,
            stanza_id: own_id.clone(),
            stamp_ms,
            nick: String::new(),
            real: String::new(),
            xml: out
                .clone()
                .child(
                    Element::new("stanza-id", ns::SID)
                        .attr("id", own_id)
                        .attr("by", room_jid.clone()),
                )
                .to_xml(ns::CLIENT),
        };
        let sent = crate::xml::parse_fragment(&archived.xml).unwrap_or(out);
        self.commit_room(
            room,
            RoomRecord::Message {
                msg: archived.clone(),
            },
        );
        self.trim_archive(room);
        self.notify_room(
            room,
            LinkEvent::Message {
                room: room.to_string(),
                msg: archived,
            },
        );
        self.broadcast_message(room, &sent);
        log::info!("muc {room}: {by} retracted {stanza_id}");
        self.reply(origin, &stanza::iq_result(el, &room_jid, None));
    }
}
