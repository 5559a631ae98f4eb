//! The hub of the sans-IO core: owns sessions and durable state, turns
//! events into actions. It never reads a clock, touches a socket or a file:
//! the time arrives with every call and all output is an [`Action`].

mod links;
mod status;

use crate::c2s::output::Completion;
use crate::c2s::Session;
use crate::scram::Credentials;
use crate::state::{Record, State};
use crate::xml::{ns, Element};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;

pub use crate::common::{ConnId, Now, NO_CONN};
pub use crate::link::LinkStatus;
pub use crate::settings::{LinkConfig, MucLimits, NodeConfig};

/// Account management, from the CLI, the serial console or the web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminCommand {
    UserAdd {
        user: String,
        creds: Credentials,
    },
    UserPasswd {
        user: String,
        creds: Credentials,
    },
    UserDel {
        user: String,
    },
    UserList,
    /// State and traffic of every link.
    Links,
    /// What the console's `status` and the web page's status show.
    Status,
    /// Set the admin password (first-run setup or a change).
    AdminPasswordSet {
        creds: Credentials,
    },
    /// The admin password's hash, to check a login against.
    AdminPasswordGet,
}

/// A room and who is in it, as this node shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStatus {
    pub jid: String,
    /// The MUC service that masters it, for a mirrored room.
    pub mirrored_from: Option<String>,
    /// Nick and bare JID of each occupant.
    pub occupants: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub domain: String,
    pub accounts: usize,
    /// Client connections open (bound or not).
    pub sessions: usize,
    pub rooms: Vec<RoomStatus>,
    pub links: Vec<LinkStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Done,
    Users(Vec<String>),
    Links(Vec<LinkStatus>),
    Status(NodeStatus),
    AdminPassword(Option<Credentials>),
    Error(String),
}

#[derive(Debug, Clone)]
pub enum Event {
    Accepted {
        conn: ConnId,
        peer: IpAddr,
    },
    /// A link connection to `peer` is up (TLS done and the peer's key checked).
    LinkUp {
        conn: ConnId,
        peer: String,
    },
    /// Dialing `peer` failed; the core schedules the next attempt.
    DialFailed {
        peer: String,
    },
    Data {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// The shell wrote this many bytes of `conn`'s output to the socket.
    Written {
        conn: ConnId,
        bytes: usize,
    },
    TlsEstablished {
        conn: ConnId,
    },
    Disconnected {
        conn: ConnId,
    },
    Admin {
        req: u64,
        cmd: AdminCommand,
    },
    /// Settings changed while running (limits, timeouts, the grace period;
    /// never the domain or the links: the shell checks that).
    Reconfigure {
        config: Box<NodeConfig>,
    },
    /// The node is stopping: sessions get `<system-shutdown/>`.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    /// Everything queued so far for `conn` is written, then TLS is started on it.
    StartTls {
        conn: ConnId,
    },
    /// Everything queued so far for `conn` is written, then it is closed.
    Close {
        conn: ConnId,
    },
    /// Append to the log. Sends in the same batch wait until it is durable.
    Persist(Record),
    /// Open a link to this upstream (the shell knows its address and key).
    Dial {
        peer: String,
    },
    AdminReply {
        req: u64,
        reply: AdminReply,
    },
}

pub struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) state: State,
    pub(crate) sessions: HashMap<ConnId, Session>,
    /// Bound sessions per account localpart, in bind order.
    pub(crate) bound: HashMap<String, Vec<ConnId>>,
    /// Who is in each room now, by room localpart (mastered here) or room
    /// JID (mirrored from another node).
    pub(crate) live_rooms: HashMap<String, crate::muc::LiveRoom>,
    /// Replicas of mirrored rooms, by room JID.
    pub(crate) mirrors: HashMap<String, crate::mirror::Mirror>,
    /// The link machine: connections to other nodes, their queues' live
    /// side, dials and grace periods (its durable side is `state.links`).
    pub(crate) links: crate::link::Links,
    /// What the link machine gave out, not taken yet; and its notices
    /// (a link down, a grace period over) waiting to be acted on.
    pub(crate) link_out: Vec<crate::link::LinkOutput>,
    pub(crate) link_notices: std::collections::VecDeque<crate::link::LinkOutput>,
    /// When replicas restored at start that nobody rejoined are dropped, per
    /// upstream (set while its link is up).
    pub(crate) mirror_idle_due: std::collections::BTreeMap<String, u64>,
    pub(crate) auth_throttle: crate::c2s::throttle::AuthThrottle,
    /// Which session is being handed an account's offline messages, and up
    /// to which id (so no message goes to two sessions).
    pub(crate) offline_claims: HashMap<String, (ConnId, u64)>,
    /// Slots for connections not authenticated yet.
    pub(crate) preauth: crate::admission::Admission,
    /// Input all sessions hold in unfinished stanzas (and held back).
    pub(crate) buffered_input: usize,
    rng: ChaCha20Rng,
    actions: Vec<Action>,
    timers: BinaryHeap<Reverse<(u64, ConnId)>>,
    pub(crate) now: Now,
    push_counter: u64,
}

/// Remove and return the peers whose deadline has come.
fn take_due(deadlines: &mut std::collections::BTreeMap<String, u64>, now: u64) -> Vec<String> {
    let due: Vec<String> = deadlines
        .iter()
        .filter(|(_, t)| **t <= now)
        .map(|(p, _)| p.clone())
        .collect();
    for p in &due {
        deadlines.remove(p);
    }
    due
}

impl Node {
    /// `state` is the replay of the log; `seed` the only source of randomness.
    pub fn new(cfg: NodeConfig, state: State, seed: [u8; 32]) -> Node {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let preauth = crate::admission::Admission::new(
            cfg.max_unauthenticated,
            cfg.max_unauthenticated_per_address,
        );
        let mut epoch = [0u8; 9];
        rng.fill_bytes(&mut epoch);
        let epoch = epoch.iter().map(|x| format!("{x:02x}")).collect();
        let mut link_seed = [0u8; 32];
        rng.fill_bytes(&mut link_seed);
        let links = crate::link::Links::new(
            cfg.link.clone(),
            &cfg.domain,
            &cfg.muc_service,
            cfg.limits,
            epoch,
            link_seed,
        );
        let mut node = Node {
            cfg,
            state,
            sessions: HashMap::new(),
            bound: HashMap::new(),
            live_rooms: HashMap::new(),
            mirrors: HashMap::new(),
            links,
            link_out: Vec::new(),
            link_notices: std::collections::VecDeque::new(),
            mirror_idle_due: std::collections::BTreeMap::new(),
            auth_throttle: Default::default(),
            offline_claims: HashMap::new(),
            preauth,
            buffered_input: 0,
            rng,
            actions: Vec::new(),
            timers: BinaryHeap::new(),
            now: Now::default(),
            push_counter: 0,
        };
        if node.state.secret.is_none() {
            // Made once and kept: what derives from it (the salts shown for
            // unknown users) must not change at a restart.
            let mut secret = vec![0u8; 32];
            node.random_bytes(&mut secret);
            node.commit(Record::ServerSecret { secret });
        }
        node.drop_rooms_that_died_with_their_occupants();
        node.restore_mirrors();
        for upstream in node.cfg.link.upstreams.clone() {
            node.leave_for_dead_sessions(&upstream);
        }
        node
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn handle(&mut self, now: Now, event: Event) {
        self.now = now;
        match event {
            Event::Accepted { conn, peer } => self.on_accepted(conn, peer),
            Event::Data { conn, bytes } if self.links.is_link(conn) => {
                self.on_link_data(conn, &bytes)
            }
            Event::Data { conn, bytes } => {
                self.on_data(conn, &bytes);
                self.arm_timer(conn);
            }
            Event::TlsEstablished { conn } => self.on_tls_established(conn),
            Event::Written { conn, bytes } => self.on_written(conn, bytes),
            Event::Disconnected { conn } if self.links.is_link(conn) => self.on_link_down(conn),
            Event::Disconnected { conn } => self.end_session(conn),
            Event::LinkUp { conn, peer } => self.on_link_up(conn, peer),
            Event::DialFailed { peer } => self.links.dial_failed(now.mono_ms, &peer),
            Event::Admin { req, cmd } => {
                let reply = self.on_admin(cmd);
                self.actions.push(Action::AdminReply { req, reply });
            }
            Event::Reconfigure { config } => {
                log::info!("settings changed; limits and timeouts apply from now on");
                self.cfg = *config;
                self.links.reconfigure(self.cfg.link.clone());
                self.preauth.set_caps(
                    self.cfg.max_unauthenticated,
                    self.cfg.max_unauthenticated_per_address,
                );
            }
            Event::Shutdown => {
                self.muc_shutdown();
                let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
                for conn in conns {
                    self.stream_error(conn, "system-shutdown", "the server is stopping");
                }
            }
        }
    }

    /// The earliest monotonic time at which `handle_timeout` has work.
    pub fn next_deadline(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let links = self.links.poll_timeout();
        let idle = self.mirror_idle_due.values().min().copied();
        [timer, links, idle].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        // Timers set while these run (work carried over to the next turn)
        // wait for the next call.
        let mut due = Vec::new();
        while let Some(&Reverse((t, conn))) = self.timers.peek() {
            if t > now.mono_ms {
                break;
            }
            self.timers.pop();
            due.push((t, conn));
        }
        for (t, conn) in due {
            if let Some(s) = self.sessions.get_mut(&conn) {
                if s.timer_armed == Some(t) {
                    s.timer_armed = None;
                }
                self.on_session_timer(conn);
                self.arm_timer(conn);
            }
        }
        self.on_link_timeouts();
        for upstream in take_due(&mut self.mirror_idle_due, now.mono_ms) {
            self.drop_idle_mirrors(&upstream);
        }
    }

    pub fn drain_actions(&mut self) -> Vec<Action> {
        self.reap_unread_sessions();
        self.flush_links();
        std::mem::take(&mut self.actions)
    }

    pub(crate) fn arm_timer(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if let Some(deadline) = s.next_deadline(&self.cfg) {
            if s.timer_armed.is_none_or(|armed| deadline < armed) {
                s.timer_armed = Some(deadline);
                self.timers.push(Reverse((deadline, conn)));
            }
        }
    }

    // ---- output helpers -------------------------------------------------

    /// Send live traffic: to a client session through its paced output
    /// (see `c2s::output`), to anything else (a link) at once.
    pub(crate) fn send(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.queue_output(conn, bytes, false, None);
    }

    /// Send a large delivery to a client session, paced by what it reads;
    /// `done` is carried out once the bytes are written.
    pub(crate) fn send_paced(&mut self, conn: ConnId, bytes: Vec<u8>, done: Option<Completion>) {
        self.queue_output(conn, bytes, true, done);
    }

    fn queue_output(
        &mut self,
        conn: ConnId,
        bytes: Vec<u8>,
        paced: bool,
        done: Option<Completion>,
    ) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return self.actions.push(Action::Send { conn, bytes });
        };
        if s.not_reading {
            return;
        }
        if s.output.push(bytes, paced, done).is_err() {
            log::info!("c2s {conn}: client is not reading; disconnecting");
            s.not_reading = true;
            return self.actions.push(Action::Close { conn });
        }
        self.release_output(conn);
    }

    /// Hand the shell what fits in a session's window.
    fn release_output(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            for bytes in s.output.release() {
                self.actions.push(Action::Send { conn, bytes });
            }
        }
    }

    /// The shell wrote `n` bytes of a session's output: carry out what was
    /// waiting for them, open the window, read input held meanwhile.
    fn on_written(&mut self, conn: ConnId, n: usize) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        // One record per account for all its messages written at once.
        let mut offline: Vec<(String, u64)> = Vec::new();
        for done in s.output.written(n) {
            match done {
                Completion::OfflineWritten { user, upto } => {
                    match offline.iter_mut().find(|(u, _)| *u == user) {
                        Some(entry) => entry.1 = entry.1.max(upto),
                        None => offline.push((user, upto)),
                    }
                }
            }
        }
        for (user, upto) in offline {
            self.offline_written(conn, &user, upto);
        }
        self.release_output(conn);
        self.resume_input(conn);
    }

    /// Sessions whose output piled up unread are closed now, at the end of
    /// the turn (not in the middle of whatever was sending to them).
    fn reap_unread_sessions(&mut self) {
        let gone: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.not_reading)
            .map(|(c, _)| *c)
            .collect();
        for conn in gone {
            self.end_session(conn);
        }
    }

    /// Whether the shell should go on reading `conn` (false while the core
    /// holds its input back: see `Session::reads_input`).
    pub fn accepts_input(&self, conn: ConnId) -> bool {
        if self.links.is_link(conn) {
            return self.links.accepts_input(conn);
        }
        self.sessions.get(&conn).is_none_or(|s| s.reads_input())
    }

    pub(crate) fn send_el(&mut self, conn: ConnId, el: &Element) {
        self.send(conn, el.to_xml(ns::CLIENT).into_bytes());
    }

    pub(crate) fn push_action(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Change durable state: apply now, persist before anything is sent.
    pub(crate) fn commit(&mut self, record: Record) {
        self.state.apply(&record);
        self.actions.push(Action::Persist(record));
    }

    pub(crate) fn random_id(&mut self) -> String {
        let mut b = [0u8; 9];
        self.rng.fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub(crate) fn random_bytes(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
    }

    pub(crate) fn next_push_id(&mut self) -> String {
        self.push_counter += 1;
        format!("push{}", self.push_counter)
    }

    /// Salt shown for unknown users, stable per name (across restarts too)
    /// so probing cannot tell which accounts exist.
    pub(crate) fn fake_salt(&self, user: &str) -> Vec<u8> {
        let secret = self.state.secret.as_deref().unwrap_or_default();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        ring::hmac::sign(&key, user.as_bytes()).as_ref()[..16].to_vec()
    }

    // ---- admin ----------------------------------------------------------

    fn on_admin(&mut self, cmd: AdminCommand) -> AdminReply {
        match cmd {
            AdminCommand::UserAdd { user, creds } => {
                let user = match crate::jid::normalize_local(&user) {
                    Ok(u) => u,
                    Err(e) => return AdminReply::Error(format!("invalid user name: {e}")),
                };
                if self.state.accounts.contains_key(&user) {
                    return AdminReply::Error(format!("user {user} already exists"));
                }
                self.commit(Record::AccountSet { user, creds });
                AdminReply::Done
            }
            AdminCommand::UserPasswd { user, creds } => {
                if !self.state.accounts.contains_key(&user) {
                    return AdminReply::Error(format!("no such user: {user}"));
                }
                self.commit(Record::AccountSet { user, creds });
                AdminReply::Done
            }
            AdminCommand::UserDel { user } => {
                if !self.state.accounts.contains_key(&user) {
                    return AdminReply::Error(format!("no such user: {user}"));
                }
                let conns: Vec<ConnId> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.user() == Some(user.as_str()))
                    .map(|(c, _)| *c)
                    .collect();
                for conn in conns {
                    self.stream_error(conn, "not-authorized", "the account was deleted");
                }
                self.commit(Record::AccountDel { user });
                AdminReply::Done
            }
            AdminCommand::Links => AdminReply::Links(self.link_status()),
            AdminCommand::UserList => {
                AdminReply::Users(self.state.accounts.keys().cloned().collect())
            }
            AdminCommand::Status => AdminReply::Status(self.status()),
            AdminCommand::AdminPasswordSet { creds } => {
                self.commit(Record::AdminPassword { creds });
                AdminReply::Done
            }
            AdminCommand::AdminPasswordGet => AdminReply::AdminPassword(self.state.admin.clone()),
        }
    }
}
