//! The hub of the sans-IO core: owns sessions and durable state, turns
//! events into actions. It never reads a clock, touches a socket or a file:
//! the time arrives with every call and all output is an [`Action`].

mod checks;
mod files;
mod held;
mod links;
mod mirrors;
mod network;
mod retention;
mod rooms;
mod routing;
mod status;

use crate::c2s::output::Completion;
use crate::c2s::{ClientOutput, FromClient};
use crate::scram::Credentials;
use crate::state::{Record, State};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub use crate::common::{ConnId, Now, PeerId, NO_CONN};
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
    /// The upload HTTP server's questions (and the transfers shown).
    File(crate::files::FileAsk),
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
    pub storage: StorageStatus,
    /// Other nodes' files coming here now.
    pub transfers: Vec<crate::files::TransferStatus>,
}

/// What the node keeps, against the budgets that bound it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StorageStatus {
    /// Room archives, mastered rooms' and replicas' together.
    pub archived_messages: u64,
    pub archive_bytes: u64,
    /// `[muc] archive_bytes_total`.
    pub archive_budget: u64,
    /// What the archives' sealed blocks take, compressed (in the archive
    /// files, or in memory until written there; the admin page and the
    /// console say "compressed", not "on flash", for that reason).
    pub archive_packed_bytes: u64,
    /// What the archives hold in memory: open messages, blocks not yet
    /// written out.
    pub archive_memory_bytes: u64,
    pub offline_messages: u64,
    pub offline_bytes: u64,
    /// `[c2s] offline_bytes_total`.
    pub offline_budget: u64,
    /// Accounts' archives (XEP-0313) together.
    pub account_archive_messages: u64,
    pub account_archive_bytes: u64,
    /// `[c2s] archive_bytes_total`.
    pub account_archive_budget: u64,
    /// Files this node's users uploaded, and `[upload] total_bytes`.
    pub upload_bytes: u64,
    pub upload_budget: u64,
    /// Other nodes' files kept here, and `[upload] cache_bytes`.
    pub file_cache_bytes: u64,
    pub file_cache_budget: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    Done,
    Users(Vec<String>),
    Links(Vec<LinkStatus>),
    Status(NodeStatus),
    AdminPassword(Option<Credentials>),
    Error(String),
    File(crate::files::FileAnswer),
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
        peer: PeerId,
    },
    /// Dialing `peer` failed; the core schedules the next attempt.
    DialFailed {
        peer: PeerId,
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
        bytes: crate::common::Payload,
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
    Persist(Box<Record>),
    /// Open a link to this upstream (the shell knows its address and key).
    Dial {
        peer: PeerId,
    },
    AdminReply {
        req: u64,
        reply: AdminReply,
    },
}

/// Stanza bytes of open (not yet sealed) archive messages the node holds
/// in memory, all rooms and offline queues together (see
/// `State::bound_open_messages`).
pub const OPEN_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

pub struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) state: State,
    /// The client streams: negotiation, authentication, binding, output.
    pub(crate) clients: crate::c2s::Clients,
    /// The IM router: bound sessions, routing, offline messages, rosters.
    pub(crate) im: crate::im::Router,
    /// The MUC service: the rooms mastered here.
    pub(crate) muc: crate::muc::Service,
    /// The mirrors: rooms mastered elsewhere, replicated here.
    pub(crate) mirrors: crate::mirror::Mirrors,
    /// The link machine: connections to other nodes, their queues' live
    /// side, dials and grace periods (its durable side is `state.links`).
    pub(crate) links: crate::link::Links,
    /// What the link machine gave out, not taken yet; and its notices
    /// (a link down, a grace period over) waiting to be acted on.
    pub(crate) link_out: Vec<crate::link::LinkOutput>,
    pub(crate) link_notices: std::collections::VecDeque<crate::link::LinkOutput>,
    /// Uploads, and files crossing the links (its durable side is
    /// `state.files`).
    pub(crate) files: crate::files::Files,
    /// When files past their age are next looked for.
    files_expiry_due: u64,
    rng: ChaCha20Rng,
    actions: Vec<Action>,
    pub(crate) now: Now,
}

impl Node {
    /// `state` is the replay of the log; `seed` the only source of randomness.
    pub fn new(cfg: NodeConfig, state: State, seed: [u8; 32]) -> Node {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut epoch = [0u8; 9];
        rng.fill_bytes(&mut epoch);
        let epoch = match &state.kept_epoch {
            Some(kept) => kept.clone(),
            None => crate::common::hex(&epoch),
        };
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
        let mut clients_seed = [0u8; 32];
        rng.fill_bytes(&mut clients_seed);
        let clients = crate::c2s::Clients::new(cfg.clone(), clients_seed);
        let mut muc_seed = [0u8; 32];
        rng.fill_bytes(&mut muc_seed);
        let muc = crate::muc::Service::new(cfg.clone(), muc_seed);
        let mut mirrors_seed = [0u8; 32];
        rng.fill_bytes(&mut mirrors_seed);
        let mirrors = crate::mirror::Mirrors::new(cfg.clone(), mirrors_seed);
        let mut im_seed = [0u8; 32];
        rng.fill_bytes(&mut im_seed);
        let im = crate::im::Router::new(cfg.clone(), im_seed);
        let files = crate::files::Files::new(cfg.upload.clone(), &cfg.domain);
        let mut node = Node {
            cfg,
            state,
            clients,
            im,
            muc,
            mirrors,
            links,
            link_out: Vec::new(),
            link_notices: std::collections::VecDeque::new(),
            files,
            files_expiry_due: 0,
            rng,
            actions: Vec::new(),
            now: Now::default(),
        };
        if node.state.secret.is_none() {
            // Made once and kept: what derives from it (the salts shown for
            // unknown users) must not change at a restart.
            let mut secret = vec![0u8; 32];
            node.random_bytes(&mut secret);
            node.commit(Record::ServerSecret { secret });
        }
        node.with_muc(|m| m.drop_rooms_that_died_with_their_occupants());
        node.restore_mirrors();
        // The budgets may have been lowered since the archives were written.
        node.keep_archives_within_total();
        node.keep_account_archives_within_total();
        node.refresh_routes();
        node.im
            .ctx(&mut node.state.accounts, &node.clients, node.now)
            .migrate_legacy_bookmarks();
        node.drain_im();
        node
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Read archive blocks stored in `files` back into memory (up to
    /// `budget` bytes), for the next spill to write them elsewhere.
    pub fn rehold_archive_blocks(
        &mut self,
        files: &std::collections::BTreeSet<u32>,
        budget: u64,
    ) -> u64 {
        self.state.rehold_blocks(files, budget)
    }

    /// Write the archive blocks held in memory with `store` (the shell's
    /// archive files); memory then keeps where they went. Open messages
    /// past the node's bound are sealed first, to go with them.
    pub fn spill_archive_blocks(
        &mut self,
        store: &mut dyn FnMut(&[u8]) -> std::io::Result<crate::model::block::Extent>,
    ) -> std::io::Result<()> {
        self.state.bound_open_messages(OPEN_MESSAGE_BYTES);
        if !self.state.has_held_blocks() {
            return Ok(());
        }
        self.state.spill_blocks(store)
    }

    pub fn session_count(&self) -> usize {
        self.clients.session_count()
    }

    pub fn handle(&mut self, now: Now, event: Event) {
        self.now = now;
        match event {
            Event::Accepted { conn, peer } => self.clients.accepted(now.mono_ms, conn, peer),
            Event::Data { conn, bytes } if self.links.is_link(conn) => {
                self.on_link_data(conn, &bytes)
            }
            Event::Data { conn, bytes } => self.clients.data(now.mono_ms, conn, &bytes),
            Event::TlsEstablished { conn } => self.clients.tls_established(conn),
            Event::Written { conn, bytes } => self.on_written(conn, bytes),
            Event::Disconnected { conn } if self.links.is_link(conn) => self.on_link_down(conn),
            Event::Disconnected { conn } => self.clients.disconnected(now.mono_ms, conn),
            Event::LinkUp { conn, peer } => self.on_link_up(conn, peer),
            Event::DialFailed { peer } => self.links.dial_failed(now.mono_ms, &peer),
            Event::Admin {
                req,
                cmd: AdminCommand::File(ask),
            } => self.on_file_ask(req, ask),
            Event::Admin { req, cmd } => {
                let reply = self.on_admin(cmd);
                self.actions.push(Action::AdminReply { req, reply });
            }
            Event::Reconfigure { config } => {
                log::info!("settings changed; limits and timeouts apply from now on");
                self.cfg = *config;
                self.links
                    .reconfigure(self.cfg.link.clone(), self.cfg.limits);
                self.clients.reconfigure(self.cfg.clone());
                self.im.reconfigure(self.cfg.clone());
                self.muc.reconfigure(self.cfg.clone());
                self.mirrors.reconfigure(self.cfg.clone());
                self.files.reconfigure(self.cfg.upload.clone());
                self.keep_archives_within_total();
                self.keep_account_archives_within_total();
                self.refresh_routes();
            }
            Event::Shutdown => self.shutdown(),
        }
        self.pump_clients();
    }

    /// The earliest monotonic time at which `handle_timeout` has work.
    pub fn next_deadline(&self) -> Option<u64> {
        let timer = self.clients.poll_timeout();
        let links = self.links.poll_timeout();
        let idle = self.mirrors.poll_timeout();
        let queries = self.im.next_deadline();
        let files = self.files_deadline();
        [timer, links, idle, queries, files]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        self.clients.handle_timeout(now.mono_ms, &self.state);
        self.pump_clients();
        self.on_link_timeouts();
        for upstream in self.mirrors.take_due(now.mono_ms) {
            self.with_mirrors(|m| m.drop_idle_mirrors(&upstream));
        }
        if self.im.next_deadline().is_some_and(|at| at <= now.mono_ms) {
            self.im
                .ctx(&mut self.state.accounts, &self.clients, now)
                .expire_remote_queries();
            self.drain_im();
        }
        self.files_timeouts();
        self.pump_clients();
    }

    pub fn drain_actions(&mut self) -> Vec<Action> {
        self.pump_clients();
        self.flush_links();
        std::mem::take(&mut self.actions)
    }

    // ---- the client streams ---------------------------------------------

    /// Act on what the client streams have for the router, one thing at a
    /// time (each is acted on before the next input is read), and hand
    /// their output to the shell.
    fn pump_clients(&mut self) {
        while let Some(from) = self.clients.poll(self.now.mono_ms, &self.state) {
            match from {
                FromClient::Bound { conn, jid } => self.on_bound(conn, jid),
                FromClient::Stanza { conn, jid, el } => self.on_stanza(conn, &jid, el),
                FromClient::Ended {
                    conn,
                    jid,
                    undelivered,
                } => self.on_session_ended(conn, jid, undelivered),
                FromClient::Delivered { conn, done } => self.deliveries_done(conn, done),
                FromClient::Detached { conn } => self.on_detached(conn),
                FromClient::Resumed { conn, offline_upto } => self.on_resumed(conn, offline_upto),
                FromClient::Register {
                    conn,
                    user,
                    creds,
                    iq,
                } => self.on_register(conn, user, *creds, &iq),
            }
            self.take_client_output();
        }
        self.take_client_output();
    }

    fn take_client_output(&mut self) {
        for out in self.clients.take_output() {
            self.actions.push(match out {
                ClientOutput::Send { conn, bytes } => Action::Send { conn, bytes },
                ClientOutput::StartTls { conn } => Action::StartTls { conn },
                ClientOutput::Close { conn } => Action::Close { conn },
            });
        }
    }

    /// The shell wrote `n` bytes of a session's output: carry out what was
    /// waiting for them, open the window, read input held meanwhile.
    fn on_written(&mut self, transport: ConnId, n: usize) {
        if self.links.is_link(transport) {
            self.links.written(transport, n);
            return self.release_file_lanes();
        }
        let Some((conn, completions)) = self.clients.written(self.now.mono_ms, transport, n) else {
            return;
        };
        self.deliveries_done(conn, completions);
    }

    /// Deliveries to the session `conn` are done (written, or acknowledged).
    fn deliveries_done(&mut self, conn: ConnId, completions: Vec<Completion>) {
        // One record per account for all its messages written at once.
        let mut offline: Vec<(String, u64)> = Vec::new();
        for done in completions {
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
    }

    /// Whether the shell should go on reading `conn` (false while the core
    /// holds its input back: see `Session::reads_input`).
    pub fn accepts_input(&self, conn: ConnId) -> bool {
        if self.links.is_link(conn) {
            return self.links.accepts_input(conn);
        }
        self.clients.accepts_input(conn)
    }

    pub(crate) fn push_action(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Change durable state: apply now, persist before anything is sent.
    pub(crate) fn commit(&mut self, record: Record) {
        self.state.apply(&record);
        self.actions.push(Action::Persist(Box::new(record)));
    }

    pub(crate) fn random_bytes(&mut self, out: &mut [u8]) {
        self.rng.fill_bytes(out);
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
                self.clients
                    .close_account(&user, "not-authorized", "the account was deleted");
                // Its sessions end while the account (and so its roster)
                // still exists: contacts are told it went offline.
                self.pump_clients();
                self.im
                    .ctx(&mut self.state.accounts, &self.clients, self.now)
                    .forget_subscriptions_of(&user);
                self.drain_im();
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
            AdminCommand::File(_) => unreachable!("answered by on_file_ask"),
        }
    }
}
