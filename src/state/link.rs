//! The links' durable part: per peer, the events it has not acknowledged
//! (typed, encoded only when written to the wire) and how far its events
//! have been applied here.

use super::Record;
use crate::common::PeerId;
use crate::model::event::LinkEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// What `link::Links` keeps durable, per peer.
pub type LinkStore = BTreeMap<PeerId, LinkState>;

/// What survives a restart of a link: the events not yet acknowledged by the
/// peer (to resend), and how far the peer's events have been applied (to
/// recognise resent ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LinkState {
    /// Sequence number the next outgoing event gets (0 before the first).
    pub next_out: u64,
    /// Sent, not yet acknowledged, oldest first.
    pub unacked: VecDeque<Queued>,
    /// Sequence number of the last event received and applied.
    pub last_in: u64,
    /// Bytes of the events in `unacked` (derived; not stored in the log).
    #[serde(skip)]
    pub unacked_bytes: u64,
    /// The domains an upstream said it reaches (its own, the other
    /// sites'): kept so that messages for them queue during a split and
    /// after a restart. Stored by `LinkRoutes` records and snapshot parts.
    #[serde(skip)]
    pub routes: Vec<String>,
}

/// An event waiting for the peer's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub seq: u64,
    /// Bytes of its wire encoding when it was queued: what the bound on
    /// unacknowledged bytes counts (so replay counts the same).
    pub bytes: u64,
    pub event: QueuedEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueuedEvent {
    Typed(Box<LinkEvent>),
    /// Queued by a release that kept the wire encoding (log format 1):
    /// sent as it is.
    Wire(String),
}

/// Apply a link record (`LinkQueued`, `LinkOut`, `LinkAcked`, `LinkIn`) to
/// the links' part of the state; other records leave it as it is.
pub fn apply_link(links: &mut LinkStore, record: &Record) {
    match record {
        Record::LinkQueued { peer, queued } => push(links, peer, queued.as_ref().clone()),
        Record::LinkOut { peer, seq, xml } => {
            let queued = Queued {
                seq: *seq,
                bytes: xml.len() as u64,
                event: QueuedEvent::Wire(xml.clone()),
            };
            push(links, peer, queued)
        }
        Record::LinkAcked { peer, upto } => {
            let l = links.entry(peer.clone()).or_default();
            while l.unacked.front().is_some_and(|q| q.seq <= *upto) {
                if let Some(q) = l.unacked.pop_front() {
                    l.unacked_bytes -= q.bytes;
                }
            }
        }
        Record::LinkIn { peer, seq } => links.entry(peer.clone()).or_default().last_in = *seq,
        Record::LinkRoutes { peer, domains } => {
            links.entry(peer.clone()).or_default().routes = domains.clone()
        }
        _ => {}
    }
}

fn push(links: &mut LinkStore, peer: &PeerId, queued: Queued) {
    let l = links.entry(peer.clone()).or_default();
    l.next_out = queued.seq + 1;
    l.unacked_bytes += queued.bytes;
    l.unacked.push_back(queued);
}

/// `LinkState` as log format 1 stored it, inside the whole-state snapshots
/// of older releases: the queue held wire XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LegacyLinkState {
    pub next_out: u64,
    pub unacked: VecDeque<(u64, String)>,
    pub last_in: u64,
}

impl From<LegacyLinkState> for LinkState {
    fn from(old: LegacyLinkState) -> LinkState {
        let unacked: VecDeque<Queued> = old
            .unacked
            .into_iter()
            .map(|(seq, xml)| Queued {
                seq,
                bytes: xml.len() as u64,
                event: QueuedEvent::Wire(xml),
            })
            .collect();
        LinkState {
            next_out: old.next_out,
            unacked_bytes: unacked.iter().map(|q| q.bytes).sum(),
            unacked,
            last_in: old.last_in,
            routes: Vec::new(),
        }
    }
}
