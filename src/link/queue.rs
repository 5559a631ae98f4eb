//! What the wire codec does for the durable queues: an event waiting for
//! the peer's acknowledgement, written out (when sent and resent) or read
//! back (older releases queued the wire form).

use super::event::DMUC;
use crate::model::event::LinkEvent;
use crate::state::link::{LegacyLinkState, LinkState};
use crate::state::{Queued, QueuedEvent};

impl Queued {
    /// The event as the link writes it (inside `<e>`).
    pub fn to_wire(&self) -> String {
        match &self.event {
            QueuedEvent::Typed(ev) => ev.encode().to_xml(DMUC),
            QueuedEvent::Wire(xml) => xml.clone(),
        }
    }

    /// The event itself; one queued as wire XML is decoded with the MUC
    /// service its rooms belong to (None if it does not decode).
    pub fn event(&self, muc_service: &str) -> Option<LinkEvent> {
        match &self.event {
            QueuedEvent::Typed(ev) => Some(ev.as_ref().clone()),
            QueuedEvent::Wire(xml) => LinkEvent::decode_wire(xml, muc_service).ok(),
        }
    }
}

/// For tests that write what older releases wrote.
impl From<LinkState> for LegacyLinkState {
    fn from(l: LinkState) -> LegacyLinkState {
        LegacyLinkState {
            next_out: l.next_out,
            unacked: l.unacked.iter().map(|q| (q.seq, q.to_wire())).collect(),
            last_in: l.last_in,
        }
    }
}
