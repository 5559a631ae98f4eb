//! A room's vCard, which carries its avatar (XEP-0486): set by an owner,
//! read by anyone (before joining too), its photo's hash in the room's
//! disco#info. The master keeps it and sends it to the sites that mirror
//! the room, which answer reads from their replica: an avatar crosses
//! the link once per site, not once per reader.

use super::{Ctx, Origin};
use crate::im::NS_VCARD;
use crate::model::event::LinkEvent;
use crate::model::room::{RoomRecord, RoomState, VCARDS_TOTAL, VCARD_BYTES};
use crate::stanza;
use crate::xml::{ns, Element};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The room's vCard as stored, or an empty one.
pub(crate) fn stored_vcard(rs: &RoomState) -> Element {
    rs.vcard
        .as_deref()
        .and_then(|x| crate::xml::parse_fragment(x).ok())
        .unwrap_or_else(|| Element::new("vCard", NS_VCARD))
}

/// The hex SHA-1 of each photo in the room's vCard (XEP-0153's hash).
pub(crate) fn avatar_hashes(rs: &RoomState) -> Vec<String> {
    let card = stored_vcard(rs);
    card.elements()
        .filter(|p| p.is("PHOTO", NS_VCARD))
        .filter_map(|p| p.get_child("BINVAL", NS_VCARD))
        .filter_map(|b| {
            let text: String = b
                .text_content()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            B64.decode(text).ok()
        })
        .map(|image| {
            let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &image);
            crate::common::hex(digest.as_ref())
        })
        .collect()
}

impl Ctx<'_> {
    /// A vCard request to `room` (mastered here).
    pub(super) fn muc_vcard(&mut self, origin: &Origin, el: &Element, room: &str, set: bool) {
        let room_jid = self.room_jid(room);
        if !set {
            let card = stored_vcard(&self.rooms[room]);
            let reply = stanza::iq_result(el, &room_jid, Some(card));
            // Up to 128 KiB: paced by what the client reads.
            return self.reply_raw(origin, reply.to_xml(ns::CLIENT));
        }
        let bare = self.origin_jid(origin).to_bare().to_string();
        if self.rooms[room].affiliation(&bare) != crate::model::room::Affiliation::Owner {
            let why = "only owners set the room's avatar";
            return self.bounce_to_explained(origin, el, "forbidden", why);
        }
        let Some(card) = el.get_child("vCard", NS_VCARD) else {
            return self.bounce_to(origin, el, "bad-request");
        };
        // XEP-0486: an empty vCard removes it.
        let vcard = (card.elements().next().is_some()).then(|| card.to_xml(ns::CLIENT));
        let size = vcard.as_ref().map_or(0, String::len);
        if size > VCARD_BYTES {
            let why = "a room's vCard is at most 128 KiB";
            return self.bounce_to_explained(origin, el, "not-acceptable", why);
        }
        let others: usize = self
            .rooms
            .iter()
            .filter(|(r, _)| r.as_str() != room)
            .filter_map(|(_, rs)| rs.vcard.as_ref())
            .map(String::len)
            .sum();
        if others + size > VCARDS_TOTAL {
            return self.bounce_to(origin, el, "resource-constraint");
        }
        self.commit_room(room, RoomRecord::Vcard { vcard });
        self.notify_vcard(room);
        self.reply(origin, &stanza::iq_result(el, &room_jid, None));
        self.notify_config_change(room);
    }

    /// The sites mirroring `room` learn its vCard.
    fn notify_vcard(&mut self, room: &str) {
        let ev = self.vcard_event(room);
        self.notify_room(room, ev);
    }

    /// `room`'s vCard for a site (after each change and each snapshot).
    pub(crate) fn vcard_event(&self, room: &str) -> LinkEvent {
        let vcard = self.rooms[room]
            .vcard
            .as_deref()
            .and_then(|x| crate::xml::parse_fragment(x).ok());
        LinkEvent::Vcard {
            room: room.to_string(),
            vcard,
        }
    }
}
