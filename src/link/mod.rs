//! Node-to-node links (the DMUC protocol): typed events between a master
//! and its mirroring sites, carried with acknowledgements and resumption.

use crate::jid::Jid;
use crate::node::Node;
use crate::xml::Element;

impl Node {
    /// Send a stanza for a user at a linked node. False if no link serves
    /// that user's domain.
    pub(crate) fn link_deliver_stanza(&mut self, _to: &Jid, _el: &Element) -> bool {
        false
    }
}

pub mod event;
