//! Instant messaging on bound sessions (RFC 6121): the router. It keeps what
//! it needs of each bound session (`Resource`), routes messages, presence
//! and iq between local users, stores messages for accounts with no
//! available resource and hands them out paced, keeps rosters, and answers
//! the server's own iq. A machine of its own (`Router`): the node hands it
//! the accounts (its durable part) and the client streams (to see how much
//! a connection may still queue) with each input, and takes its output
//! (`take_output`). Stanzas for rooms never reach it: the node sends those
//! to the MUC service or the mirrors.

mod archive;
mod avatar;
mod blocking;
mod bookmarks;
mod bound;
mod caps;
mod carbons;
mod last;
mod pep;
mod presence;
mod register;
mod remote;
mod remote_presence;
mod resource;
mod roster;
mod routing;
mod stored_xml;

#[cfg(test)]
mod tests;

pub use blocking::{BLOCKLIST_MAX, REPORTS_MAX};
pub use bound::Bound;
pub use remote::{PendingQueries, Routes};
pub use resource::Resource;
pub(crate) use routing::Routed;
pub use stored_xml::NS_VCARD;

use crate::c2s::output::Completion;
use crate::c2s::Clients;
use crate::common::{ConnId, Now, LINK_CONN};
use crate::jid::Jid;
use crate::settings::NodeConfig;
use crate::state::{apply_account, Accounts, Record};
use crate::xml::{ns, Element};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::HashMap;

/// What the router asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImOutput {
    /// Live traffic to a client session.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// A large delivery, paced by what the client reads; `done` once written.
    Paced {
        conn: ConnId,
        bytes: Vec<u8>,
        done: Option<Completion>,
    },
    StreamError {
        conn: ConnId,
        condition: &'static str,
        text: &'static str,
    },
    /// Append to the log (the accounts have it applied already).
    Persist(Box<Record>),
    /// The session went unavailable: it leaves the rooms it is in (joined
    /// rooms count as directed presence), before its presence goes out.
    LeaveRooms { conn: ConnId },
    /// A stanza for a user or server at another node of the network, over
    /// the link that reaches it: queued durably while the link is down, or
    /// (`transient`: presence broadcasts, chat states) sent only if it is up.
    Remote {
        to: Jid,
        el: Box<Element>,
        transient: bool,
        /// A local session's message: once queued, the router keeps it in
        /// the sender's archive and copies it to their other sessions.
        sent_by: Option<ConnId>,
    },
}

pub struct Router {
    cfg: NodeConfig,
    bound: Bound,
    /// Which session is being handed an account's offline messages, and up
    /// to which id (so no message goes to two sessions).
    offline_claims: HashMap<String, (ConnId, u64)>,
    push_counter: u64,
    out: Vec<ImOutput>,
    rng: ChaCha20Rng,
    /// When each account last changed its password (within the interval
    /// that limits it; older entries are let go).
    password_changes: HashMap<String, u64>,
    caps: caps::Caps,
    routes: Routes,
    remote_presence: remote_presence::RemotePresence,
    pending_queries: PendingQueries,
}

/// The router at work on one input: its own state, and what the node
/// hands it for the call.
pub(crate) struct Ctx<'a> {
    cfg: &'a NodeConfig,
    bound: &'a mut Bound,
    offline_claims: &'a mut HashMap<String, (ConnId, u64)>,
    push_counter: &'a mut u64,
    out: &'a mut Vec<ImOutput>,
    rng: &'a mut ChaCha20Rng,
    password_changes: &'a mut HashMap<String, u64>,
    caps: &'a mut caps::Caps,
    routes: &'a Routes,
    remote_presence: &'a mut remote_presence::RemotePresence,
    pending_queries: &'a mut PendingQueries,
    accounts: &'a mut Accounts,
    clients: &'a Clients,
    now: Now,
}

impl Router {
    /// `seed`: its randomness (the salts of changed passwords).
    pub fn new(cfg: NodeConfig, seed: [u8; 32]) -> Router {
        Router {
            cfg,
            bound: Bound::default(),
            offline_claims: HashMap::new(),
            push_counter: 0,
            out: Vec::new(),
            rng: ChaCha20Rng::from_seed(seed),
            password_changes: HashMap::new(),
            caps: caps::Caps::default(),
            routes: Routes::default(),
            remote_presence: Default::default(),
            pending_queries: Default::default(),
        }
    }

    /// When the oldest query to another node stops waiting.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending_queries.next_deadline()
    }

    /// The domains the links reach, and which of them are reachable now.
    pub fn set_routes(&mut self, routes: Routes) {
        self.routes = routes;
    }

    pub fn reconfigure(&mut self, cfg: NodeConfig) {
        self.cfg = cfg;
    }

    /// The bound sessions, for lookups.
    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    pub fn bound_mut(&mut self) -> &mut Bound {
        &mut self.bound
    }

    /// `conn` bound the resource `jid`.
    pub fn on_bound(&mut self, conn: ConnId, jid: Jid) {
        self.bound.insert(conn, jid);
    }

    /// At start: a session the stop before kept is bound again as it was
    /// (its presence, priority, carbons, roster pushes), nobody told: to
    /// its contacts it never left.
    pub fn restore(&mut self, conn: ConnId, jid: Jid, held: &crate::model::held::HeldSession) {
        self.bound.insert(conn, jid);
        if let Some(r) = self.bound.resource_mut(conn) {
            r.presence = held
                .presence
                .as_deref()
                .and_then(|p| crate::xml::parse_fragment(p).ok());
            r.priority = held.priority;
            r.roster_requested = held.roster_requested;
            r.carbons = held.carbons;
            r.directed = held.directed.iter().cloned().collect();
            r.caps = held.caps.clone();
            r.blocklist_requested = held.blocklist_requested;
            // Its client has the last items already.
            r.pep_primed = true;
        }
    }

    /// What the node is to do, in order.
    pub fn take_output(&mut self) -> Vec<ImOutput> {
        std::mem::take(&mut self.out)
    }

    /// The router at work: every input that may route, deliver or change
    /// an account goes through here.
    pub(crate) fn ctx<'a>(
        &'a mut self,
        accounts: &'a mut Accounts,
        clients: &'a Clients,
        now: Now,
    ) -> Ctx<'a> {
        Ctx {
            cfg: &self.cfg,
            bound: &mut self.bound,
            offline_claims: &mut self.offline_claims,
            push_counter: &mut self.push_counter,
            out: &mut self.out,
            rng: &mut self.rng,
            password_changes: &mut self.password_changes,
            caps: &mut self.caps,
            routes: &self.routes,
            remote_presence: &mut self.remote_presence,
            pending_queries: &mut self.pending_queries,
            accounts,
            clients,
            now,
        }
    }
}

impl Ctx<'_> {
    fn send(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if conn == LINK_CONN {
            return self.send_back_over_link(&bytes);
        }
        self.out.push(ImOutput::Send { conn, bytes });
    }

    fn send_el(&mut self, conn: ConnId, el: &Element) {
        self.send(conn, el.to_xml(ns::CLIENT).into_bytes());
    }

    fn send_paced(&mut self, conn: ConnId, bytes: Vec<u8>, done: Option<Completion>) {
        if conn == LINK_CONN {
            return self.send_back_over_link(&bytes);
        }
        self.out.push(ImOutput::Paced { conn, bytes, done });
    }

    fn stream_error(&mut self, conn: ConnId, condition: &'static str, text: &'static str) {
        self.out.push(ImOutput::StreamError {
            conn,
            condition,
            text,
        });
    }

    /// Change an account durably: applied now, persisted before anything
    /// of this turn is sent.
    fn commit(&mut self, record: Record) {
        apply_account(self.accounts, &record);
        self.out.push(ImOutput::Persist(Box::new(record)));
    }

    fn next_push_id(&mut self) -> String {
        *self.push_counter += 1;
        format!("push{}", self.push_counter)
    }
}
