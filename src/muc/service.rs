//! The MUC service as a machine of its own: who is in each room mastered
//! here, and everything rooms decide. The node hands it the rooms' durable
//! state (`Rooms`) and read-only views of the bound sessions, the client
//! streams and the links with each input, and carries out its outputs.

use crate::c2s::Clients;
use crate::common::{ConnId, Now, Payload, PeerId};
use crate::im::Bound;
use crate::jid::Jid;
use crate::link::Links;
use crate::model::event::LinkEvent;
use crate::model::occupants::LiveRoom;
use crate::model::room::{RoomRecord, Rooms};
use crate::settings::NodeConfig;
use crate::state::Record;
use crate::xml::{ns, Element};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::HashMap;

/// What the MUC service asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MucOutput {
    /// To a local session.
    Send {
        conn: ConnId,
        bytes: Payload,
    },
    /// A large delivery to a local session (history, archive pages), paced.
    Paced {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// To a user of another node, over the link to its domain.
    Remote {
        to: Jid,
        el: Box<Element>,
    },
    /// A message from a room to a local account (an invitation): routed
    /// like any message, stored while the account has no resource.
    Route {
        to: Jid,
        el: Box<Element>,
    },
    /// Append to the log (the rooms have it applied already).
    Persist(Box<Record>),
    /// An event for a mirroring site; a transient one is never queued.
    ToSite {
        peer: PeerId,
        event: Box<LinkEvent>,
        transient: bool,
    },
    /// The local session `conn` joined `room`, and `session` left it: what
    /// the router keeps of the session's rooms.
    Joined {
        conn: ConnId,
        room: String,
    },
    Left {
        session: Jid,
        room: String,
    },
}

pub struct Service {
    cfg: NodeConfig,
    /// Who is in each room now, by localpart. Not durable: after a
    /// restart rooms are empty.
    live_rooms: HashMap<String, LiveRoom>,
    rng: ChaCha20Rng,
    out: Vec<MucOutput>,
}

/// The service at work on one input.
pub(crate) struct Ctx<'a> {
    pub(super) cfg: &'a NodeConfig,
    pub(super) live_rooms: &'a mut HashMap<String, LiveRoom>,
    rng: &'a mut ChaCha20Rng,
    pub(super) out: &'a mut Vec<MucOutput>,
    pub(super) rooms: &'a mut Rooms,
    pub(super) bound: &'a Bound,
    pub(super) clients: &'a Clients,
    pub(super) links: &'a Links,
    pub(super) now: Now,
}

impl Service {
    pub fn new(cfg: NodeConfig, seed: [u8; 32]) -> Service {
        Service {
            cfg,
            live_rooms: HashMap::new(),
            rng: ChaCha20Rng::from_seed(seed),
            out: Vec::new(),
        }
    }

    pub fn reconfigure(&mut self, cfg: NodeConfig) {
        self.cfg = cfg;
    }

    /// Who is in each room now.
    pub fn live_rooms(&self) -> &HashMap<String, LiveRoom> {
        &self.live_rooms
    }

    pub fn take_output(&mut self) -> Vec<MucOutput> {
        std::mem::take(&mut self.out)
    }

    pub(crate) fn ctx<'a>(
        &'a mut self,
        rooms: &'a mut Rooms,
        bound: &'a Bound,
        clients: &'a Clients,
        links: &'a Links,
        now: Now,
    ) -> Ctx<'a> {
        Ctx {
            cfg: &self.cfg,
            live_rooms: &mut self.live_rooms,
            rng: &mut self.rng,
            out: &mut self.out,
            rooms,
            bound,
            clients,
            links,
            now,
        }
    }
}

impl Ctx<'_> {
    pub(super) fn send(&mut self, conn: ConnId, bytes: impl Into<Payload>) {
        let bytes = bytes.into();
        self.out.push(MucOutput::Send { conn, bytes });
    }

    pub(super) fn send_el(&mut self, conn: ConnId, el: &Element) {
        self.send(conn, el.to_xml(ns::CLIENT).into_bytes());
    }

    pub(super) fn send_paced(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.out.push(MucOutput::Paced { conn, bytes });
    }

    /// Change a room durably: applied now, persisted before anything of
    /// this turn is sent.
    pub(super) fn commit(&mut self, record: Record) {
        if let Record::Room { room, change } = &record {
            crate::model::room::apply(self.rooms, room, change);
        }
        self.out.push(MucOutput::Persist(Box::new(record)));
    }

    pub(super) fn commit_room(&mut self, room: &str, change: RoomRecord) {
        self.commit(Record::Room {
            room: room.to_string(),
            change,
        });
    }

    pub(super) fn random_bytes(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    pub(super) fn random_id(&mut self) -> String {
        crate::common::random_id(&mut self.rng)
    }

    pub(super) fn link_send(&mut self, peer: &PeerId, event: &LinkEvent) {
        self.out.push(MucOutput::ToSite {
            peer: peer.clone(),
            event: Box::new(event.clone()),
            transient: false,
        });
    }

    pub(super) fn link_send_transient(&mut self, peer: &PeerId, event: &LinkEvent) {
        self.out.push(MucOutput::ToSite {
            peer: peer.clone(),
            event: Box::new(event.clone()),
            transient: true,
        });
    }

    /// `session` is no longer in `room`.
    pub(super) fn left_room(&mut self, session: &Jid, room: &str) {
        self.out.push(MucOutput::Left {
            session: session.clone(),
            room: room.to_string(),
        });
    }
}
