//! XEP-0280 message carbons: every resource of an account that asked for it
//! sees the account's one-to-one conversations, sent and received.

use super::Ctx;
use crate::common::ConnId;
use crate::jid::Jid;
use crate::xml::{ns, Element};

/// Chat messages, and normal messages with a body, unless marked private.
pub(crate) fn eligible(el: &Element) -> bool {
    let chat = match el.get_attr("type").unwrap_or("normal") {
        "chat" => true,
        "normal" => el.has_child("body", ns::CLIENT),
        _ => false,
    };
    chat && !el.has_child("private", ns::CARBONS) && !el.has_child("no-copy", ns::HINTS)
}

impl Ctx<'_> {
    /// Send a `<sent/>` or `<received/>` copy of `el` to each resource of
    /// `user` with carbons enabled, except those in `already`.
    pub(crate) fn carbon_copies(
        &mut self,
        user: &str,
        already: &[ConnId],
        direction: &str,
        el: &Element,
    ) {
        let targets: Vec<ConnId> = self
            .bound
            .conns_of(user)
            .into_iter()
            .filter(|c| {
                !already.contains(c) && self.bound.resources.get(c).is_some_and(|s| s.carbons)
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let bare = format!("{user}@{}", self.cfg.domain);
        let wrapped = Element::new(direction, ns::CARBONS)
            .child(Element::new("forwarded", ns::FORWARD).child(el.clone()));
        for c in targets {
            let Some(to) = self.bound.jid_of(c).map(Jid::to_string) else {
                continue;
            };
            let mut copy = Element::new("message", ns::CLIENT)
                .attr("from", bare.clone())
                .attr("to", to)
                .child(wrapped.clone());
            if let Some(t) = el.get_attr("type") {
                copy.set_attr("type", t);
            }
            self.send_el(c, &copy);
        }
    }
}
