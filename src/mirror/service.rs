//! The mirrors as a machine of their own: the live side of every replica
//! (joins awaiting the master, messages delivered early or held past a
//! gap), who is in each mirrored room, and when idle replicas go. The node
//! hands it the replicas (its durable part), the links' queues and
//! read-only views of the bound sessions, client streams and links with
//! each input, and carries out its outputs.

use super::Mirror;
use crate::c2s::Clients;
use crate::common::{ConnId, Now, Payload, PeerId};
use crate::im::Bound;
use crate::jid::Jid;
use crate::link::Links;
use crate::model::event::LinkEvent;
use crate::model::replica::{MirrorCache, MirrorRecord};
use crate::muc::LiveRoom;
use crate::settings::NodeConfig;
use crate::stanza;
use crate::state::{LinkStore, Record};
use crate::xml::{ns, Element};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The replicas of mirrored rooms, by room JID.
pub type Replicas = BTreeMap<String, MirrorCache>;

/// What the mirrors ask of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorOutput {
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
    /// A message from a room to a local account with no session in it
    /// (an invitation): routed like any message.
    Route {
        to: Jid,
        el: Box<Element>,
    },
    /// Append to the log (the replicas have it applied already).
    Persist(Box<Record>),
    /// An event for the master; a transient one is never queued.
    ToMaster {
        upstream: PeerId,
        event: Box<LinkEvent>,
        transient: bool,
    },
    /// Bytes delivered locally from `upstream`'s rooms (the link's savings).
    Fanout {
        upstream: PeerId,
        bytes: usize,
    },
    /// The local session `conn` joined the mirrored room `key`, and
    /// `session` left it: what the router keeps of the session's rooms.
    Joined {
        conn: ConnId,
        key: String,
    },
    Left {
        session: Jid,
        key: String,
    },
}

pub struct Mirrors {
    cfg: NodeConfig,
    /// The live side of each replica, by room JID.
    mirrors: HashMap<String, Mirror>,
    /// Who is in each mirrored room now, by room JID.
    rooms: HashMap<String, LiveRoom>,
    /// When replicas restored at start that nobody rejoined are dropped, per
    /// upstream (set while its link is up).
    idle_due: BTreeMap<PeerId, u64>,
    /// Upstreams to resynchronise with once linked: sessions kept across a
    /// restart are back in their rooms, but who else is in them was not
    /// kept.
    resync_when_linked: BTreeSet<PeerId>,
    rng: ChaCha20Rng,
    out: Vec<MirrorOutput>,
}

/// The mirrors at work on one input.
pub(crate) struct Ctx<'a> {
    pub(super) cfg: &'a NodeConfig,
    pub(super) mirrors: &'a mut HashMap<String, Mirror>,
    pub(super) mirror_rooms: &'a mut HashMap<String, LiveRoom>,
    pub(super) idle_due: &'a mut BTreeMap<PeerId, u64>,
    rng: &'a mut ChaCha20Rng,
    pub(super) out: &'a mut Vec<MirrorOutput>,
    pub(super) replicas: &'a mut Replicas,
    pub(super) link_queues: &'a LinkStore,
    pub(super) bound: &'a Bound,
    pub(super) clients: &'a Clients,
    pub(super) links: &'a Links,
    pub(super) now: Now,
}

impl Mirrors {
    pub fn new(cfg: NodeConfig, seed: [u8; 32]) -> Mirrors {
        Mirrors {
            cfg,
            mirrors: HashMap::new(),
            rooms: HashMap::new(),
            idle_due: BTreeMap::new(),
            resync_when_linked: BTreeSet::new(),
            rng: ChaCha20Rng::from_seed(seed),
            out: Vec::new(),
        }
    }

    pub fn reconfigure(&mut self, cfg: NodeConfig) {
        self.cfg = cfg;
    }

    /// The live side of each replica.
    pub fn mirrors(&self) -> &HashMap<String, Mirror> {
        &self.mirrors
    }

    /// Who is in each mirrored room now.
    pub fn rooms(&self) -> &HashMap<String, LiveRoom> {
        &self.rooms
    }

    /// Resynchronise with `upstream` when its link is up next.
    pub fn resync_when_linked(&mut self, upstream: PeerId) {
        self.resync_when_linked.insert(upstream);
    }

    /// Whether `upstream`, just linked, is to be resynchronised.
    pub fn take_resync_when_linked(&mut self, upstream: &PeerId) -> bool {
        self.resync_when_linked.remove(upstream)
    }

    pub fn take_output(&mut self) -> Vec<MirrorOutput> {
        std::mem::take(&mut self.out)
    }

    /// The earliest time at which idle replicas are to go.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.idle_due.values().min().copied()
    }

    /// Upstreams whose idle replicas are due to go at `now`.
    pub fn take_due(&mut self, now: u64) -> Vec<PeerId> {
        crate::common::take_due(&mut self.idle_due, now)
    }

    /// The link to `upstream` went down: nothing is dropped for idleness
    /// while it is.
    pub fn link_down(&mut self, upstream: &PeerId) {
        self.idle_due.remove(upstream);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ctx<'a>(
        &'a mut self,
        replicas: &'a mut Replicas,
        link_queues: &'a LinkStore,
        bound: &'a Bound,
        clients: &'a Clients,
        links: &'a Links,
        now: Now,
    ) -> Ctx<'a> {
        Ctx {
            cfg: &self.cfg,
            mirrors: &mut self.mirrors,
            mirror_rooms: &mut self.rooms,
            idle_due: &mut self.idle_due,
            rng: &mut self.rng,
            out: &mut self.out,
            replicas,
            link_queues,
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
        self.out.push(MirrorOutput::Send { conn, bytes });
    }

    pub(super) fn send_el(&mut self, conn: ConnId, el: &Element) {
        self.send(conn, el.to_xml(ns::CLIENT).into_bytes());
    }

    pub(super) fn send_paced(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.out.push(MirrorOutput::Paced { conn, bytes });
    }

    /// Answer `el` (from the session `conn`) with a stanza error.
    pub(super) fn bounce(&mut self, conn: ConnId, el: &Element, condition: &str) {
        let from = el.get_attr("to").unwrap_or(&self.cfg.domain).to_string();
        if let Some(reply) =
            stanza::error_reply(el, condition, stanza::error_type_for(condition), &from)
        {
            self.send_el(conn, &reply);
        }
    }

    /// Change a replica durably: applied now, persisted before anything of
    /// this turn is sent.
    pub(super) fn commit(&mut self, record: Record) {
        if let Record::Mirror { key, change } = &record {
            crate::model::replica::apply(self.replicas, key, change);
        }
        self.out.push(MirrorOutput::Persist(Box::new(record)));
    }

    pub(super) fn random_id(&mut self) -> String {
        crate::common::random_id(&mut self.rng)
    }

    pub(super) fn link_send(&mut self, upstream: &PeerId, event: &LinkEvent) {
        self.out.push(MirrorOutput::ToMaster {
            upstream: upstream.clone(),
            event: Box::new(event.clone()),
            transient: false,
        });
    }

    pub(super) fn link_send_transient(&mut self, upstream: &PeerId, event: &LinkEvent) {
        self.out.push(MirrorOutput::ToMaster {
            upstream: upstream.clone(),
            event: Box::new(event.clone()),
            transient: true,
        });
    }

    /// `session` is no longer in the mirrored room `key`.
    pub(super) fn left_room(&mut self, session: &Jid, key: &str) {
        self.out.push(MirrorOutput::Left {
            session: session.clone(),
            key: key.to_string(),
        });
    }

    pub(crate) fn is_mirrored_service(&self, jid: &Jid) -> bool {
        self.cfg.link.upstreams.iter().any(|u| u == jid.domain())
    }

    /// A replica change, if the replica exists (it does once the master's
    /// snapshot came).
    pub(super) fn commit_mirror(&mut self, key: &str, change: MirrorRecord) {
        if self.replicas.contains_key(key) {
            self.commit(Record::Mirror {
                key: key.to_string(),
                change: Box::new(change),
            });
        }
    }
}
