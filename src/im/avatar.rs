//! An account's avatar in both forms (XEP-0398): the PEP avatar
//! (XEP-0084, a data node and a metadata node) is the one truth, and the
//! vCard's PHOTO (XEP-0153, which room occupants and older clients read)
//! is made from it when the vCard is read. A vCard written with a photo
//! publishes that photo to PEP, so clients of either kind see the same
//! avatar, and each available presence (room joins too) carries its hash.
//! The photo is kept once, in the data node, within the PEP bounds.

use super::pep::{bytes_after_publish, may_see, pep_event_items};
use super::stored_xml::NS_VCARD;
use super::Ctx;
use crate::jid::Jid;
use crate::model::pep::{self, Access, PepConfig, PepItem, PepNode, PepRecord};
use crate::xml::{ns, Element, Node as XmlNode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

pub const FEATURE: &str = "urn:xmpp:pep-vcard-conversion:0";
const DATA: &str = "urn:xmpp:avatar:data";
const METADATA: &str = "urn:xmpp:avatar:metadata";
const UPDATE: &str = "vcard-temp:x:update";

/// The avatar the metadata node names: none published, published and
/// then switched off (an empty `<metadata/>`), or this image (its id,
/// the SHA-1 of its bytes, and its type). An `<info/>` pointing to a URL
/// is not one the vCard can carry.
#[derive(Debug, PartialEq, Eq)]
enum Current {
    Unknown,
    Off,
    Image { id: String, mime: String },
}

fn current(pep: &pep::PepNodes) -> Current {
    let Some(meta) = pep
        .get(METADATA)
        .and_then(PepNode::last)
        .and_then(|i| crate::xml::parse_fragment(&i.xml).ok())
    else {
        return Current::Unknown;
    };
    let image = meta
        .elements()
        .filter(|i| i.is("info", METADATA) && i.get_attr("url").is_none())
        .find_map(|i| {
            Some(Current::Image {
                id: i.get_attr("id")?.to_string(),
                mime: i.get_attr("type").unwrap_or("image/png").to_string(),
            })
        });
    image.unwrap_or(Current::Off)
}

/// The image's type from its first bytes, for a vCard that names none.
fn sniff(image: &[u8]) -> &'static str {
    match image {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xff, 0xd8, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        _ => "application/octet-stream",
    }
}

fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    crate::common::hex(digest.as_ref())
}

/// XEP-0084's nodes made for a vCard's photo: anyone may read them, as
/// anyone may read the vCard.
fn open_node() -> PepConfig {
    PepConfig {
        access: Access::Open,
        ..PepConfig::default()
    }
}

impl Ctx<'_> {
    /// `card`, the vCard `user` stored, as `reader` sees it: its PHOTO is
    /// the PEP avatar if `reader` may see it.
    pub(super) fn vcard_with_avatar(&self, user: &str, reader: &Jid, mut card: Element) -> Element {
        let acc = &self.accounts[user];
        let image = match current(&acc.pep) {
            Current::Unknown => return card,
            Current::Off => None,
            Current::Image { id, mime } => acc
                .pep
                .get(DATA)
                .filter(|n| may_see(acc, &self.owner_jid(user), reader, &n.config))
                .and_then(|n| n.items.iter().find(|i| i.id == id))
                .and_then(|i| crate::xml::parse_fragment(&i.xml).ok())
                .map(|data| (mime, data.text_content())),
        };
        card.children
            .retain(|c| !matches!(c, XmlNode::Element(e) if e.is("PHOTO", NS_VCARD)));
        if let Some((mime, b64)) = image {
            let photo = Element::new("PHOTO", NS_VCARD)
                .child(Element::new("TYPE", NS_VCARD).text(mime))
                .child(Element::new("BINVAL", NS_VCARD).text(b64));
            card.children.push(XmlNode::Element(photo));
        }
        card
    }

    /// A vCard `user` writes: a photo in it is published as the PEP
    /// avatar (metadata subscribers are told), and what is stored is the
    /// vCard without it. Refused whole if it does not fit.
    pub(super) fn vcard_photo_to_pep(
        &mut self,
        user: &str,
        card: &Element,
        stored_card_bytes: usize,
    ) -> Result<Element, &'static str> {
        let binval = card
            .get_child("PHOTO", NS_VCARD)
            .and_then(|p| p.get_child("BINVAL", NS_VCARD));
        let Some(binval) = binval else {
            return Ok(card.clone()); // No photo, or one by URL (EXTVAL): kept as written.
        };
        let b64: String = binval
            .text_content()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let image = B64.decode(&b64).map_err(|_| "bad-request")?;
        let mut stripped = card.clone();
        stripped
            .children
            .retain(|c| !matches!(c, XmlNode::Element(e) if e.is("PHOTO", NS_VCARD)));
        if image.is_empty() {
            return Ok(stripped);
        }
        let id = sha1_hex(&image);
        let acc = &self.accounts[user];
        if matches!(current(&acc.pep), Current::Image { id: ref now, .. } if *now == id) {
            return Ok(stripped); // The same photo again: nothing to publish.
        }
        let named = card
            .get_child("PHOTO", NS_VCARD)
            .and_then(|p| p.get_child("TYPE", NS_VCARD))
            .map(|t| t.text_content())
            .filter(|t| !t.is_empty() && t.len() <= 64);
        let mime = named.unwrap_or_else(|| sniff(&image).to_string());
        let data = PepItem {
            id: id.clone(),
            xml: Element::new("data", DATA).text(b64).to_xml(ns::CLIENT),
            stamp_ms: self.now.unix_ms,
        };
        let info = Element::new("info", METADATA)
            .attr("id", id.clone())
            .attr("bytes", image.len().to_string())
            .attr("type", mime);
        let meta = PepItem {
            id,
            xml: Element::new("metadata", METADATA)
                .child(info)
                .to_xml(ns::CLIENT),
            stamp_ms: self.now.unix_ms,
        };
        // Both items and the vCard must fit together, and any node made.
        let new_nodes = [DATA, METADATA, "vcard-temp"]
            .iter()
            .filter(|n| !acc.pep.contains_key(**n))
            .count();
        if acc.pep.len() + new_nodes > pep::NODES_PER_ACCOUNT {
            return Err("resource-constraint");
        }
        let grows = |node: &str, item: &PepItem| {
            let existing = acc.pep.get(node);
            let config = existing.map_or_else(open_node, |n| n.config.clone());
            bytes_after_publish(existing, &config, item) as isize
                - existing.map_or(0, PepNode::bytes) as isize
        };
        let card_grows = stripped.to_xml(ns::CLIENT).len() as isize - stored_card_bytes as isize;
        let data_after = acc.pep.get(DATA).map_or(0, PepNode::bytes) as isize
            + grows(DATA, &data)
            + grows(METADATA, &meta)
            + card_grows;
        if !self.pep_bytes_fit(user, DATA, data_after.max(0) as usize) {
            return Err("resource-constraint");
        }
        for (node, item) in [(DATA, data), (METADATA, meta)] {
            if !self.accounts[user].pep.contains_key(node) {
                let config = open_node();
                self.commit_pep(user, node, PepRecord::Configured { config });
            }
            let event = pep_event_items(node, &item);
            self.commit_pep(user, node, PepRecord::Published { item });
            self.pep_notify(user, node, event, None);
        }
        Ok(stripped)
    }

    /// XEP-0398 §4: the avatar's hash in an available presence of `user`
    /// that does not carry one of its own.
    pub(super) fn add_avatar_hash(&self, user: &str, presence: &mut Element) {
        let Some(acc) = self.accounts.get(user) else {
            return;
        };
        let hash = match current(&acc.pep) {
            Current::Unknown => return,
            Current::Off => String::new(),
            Current::Image { id, .. } => id,
        };
        let has_photo = presence
            .elements()
            .any(|x| x.is("x", UPDATE) && x.get_child("photo", UPDATE).is_some());
        if has_photo {
            return; // The client's own word, even an empty one.
        }
        presence
            .children
            .retain(|c| !matches!(c, XmlNode::Element(e) if e.is("x", UPDATE)));
        let photo = Element::new("photo", UPDATE);
        let photo = if hash.is_empty() {
            photo
        } else {
            photo.text(hash)
        };
        presence
            .children
            .push(XmlNode::Element(Element::new("x", UPDATE).child(photo)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_avatar_named_is_the_first_one_not_behind_a_url() {
        let mut nodes = pep::PepNodes::new();
        assert_eq!(current(&nodes), Current::Unknown);
        let mut node = PepNode::new(PepConfig::default());
        node.publish(PepItem {
            id: "x".into(),
            xml: format!("<metadata xmlns='{METADATA}'><info id='u' url='https://e.example/a.png' type='image/png'/><info id='abc' type='image/jpeg' bytes='3'/></metadata>"),
            stamp_ms: 0,
        });
        nodes.insert(METADATA.into(), node.clone());
        assert_eq!(
            current(&nodes),
            Current::Image {
                id: "abc".into(),
                mime: "image/jpeg".into()
            }
        );
        node.publish(PepItem {
            id: "off".into(),
            xml: format!("<metadata xmlns='{METADATA}'/>"),
            stamp_ms: 0,
        });
        nodes.insert(METADATA.into(), node);
        assert_eq!(current(&nodes), Current::Off);
    }

    #[test]
    fn an_image_is_named_by_its_sha1_and_typed_by_its_first_bytes() {
        // XEP-0084's ids are the hex SHA-1 of the image's bytes.
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sniff(&[0x89, b'P', b'N', b'G', 0]), "image/png");
        assert_eq!(sniff(&[0xff, 0xd8, 0xff]), "image/jpeg");
        assert_eq!(sniff(b"hello"), "application/octet-stream");
    }
}
