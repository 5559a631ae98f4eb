//! Deterministic driver for the core: a node on a virtual clock with an
//! in-memory log that can crash, and scripted clients that speak XMPP to it
//! without sockets. Tests use it for every behaviour of the core; later
//! issues grow it into a multi-node network with shaped links.

mod blocks;
mod files;
mod network;

pub use files::{sha256_hex, MemFiles};

pub use network::{Network, Shape};

use crate::node::{Action, AdminCommand, AdminReply, ConnId, Event, Node, NodeConfig, Now};
use crate::scram::{Hash, ScramClient};
use crate::state::State;
use crate::store::{Log, MemStorage};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

pub struct SimNode {
    pub node: Node,
    pub log: Log<MemStorage>,
    /// The configuration; a restart takes it as it is then.
    pub cfg: NodeConfig,
    seed: u64,
    pub now: Now,
    next_conn: ConnId,
    outbox: HashMap<ConnId, Vec<u8>>,
    closed: HashSet<ConnId>,
    admin_replies: Vec<(u64, AdminReply)>,
    /// Upstreams the node asked to dial, oldest first.
    pub dials: Vec<String>,
    /// Records persisted so far (for assertions on durability order).
    pub persisted: usize,
    /// Where sealed archive blocks go after each commit (see `blocks`).
    blocks: std::rc::Rc<blocks::MemBlocks>,
    /// The node's file bytes (its `data_dir/files`).
    pub files: std::rc::Rc<MemFiles>,
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s
}

fn replay(storage: MemStorage) -> (Log<MemStorage>, State) {
    let opened = crate::state::snapshot::open_log(storage, 1).expect("replay");
    (opened.log, opened.state)
}

impl SimNode {
    pub fn new(cfg: NodeConfig, seed: u64) -> SimNode {
        SimNode::from_storage(cfg, seed, MemStorage::new())
    }

    /// A node started on a log that already exists (e.g. a copy of a data
    /// directory's segments).
    pub fn from_storage(cfg: NodeConfig, seed: u64, storage: MemStorage) -> SimNode {
        // Installed first: a replay may read blocks.
        let blocks = blocks::store();
        let (log, state) = replay(storage);
        let files = std::rc::Rc::new(MemFiles::default());
        let mut node = Node::new(cfg.clone(), state, seed_bytes(seed));
        node.install_file_store(files.clone());
        let mut sim = SimNode {
            node,
            log,
            cfg,
            seed,
            now: Now {
                mono_ms: 0,
                unix_ms: 1_795_000_000_000,
            },
            next_conn: 1,
            outbox: HashMap::new(),
            closed: HashSet::new(),
            admin_replies: Vec::new(),
            dials: Vec::new(),
            persisted: 0,
            blocks,
            files,
        };
        sim.node.start(sim.now);
        sim.process();
        sim
    }

    fn process(&mut self) {
        let actions = self.node.drain_actions();
        let mut tls = Vec::new();
        for a in &actions {
            if let Action::Persist(r) = a {
                self.log
                    .append(r.kind(), &r.encode())
                    .expect("records fit in the log");
                self.persisted += 1;
            }
        }
        self.log.commit().expect("memory log commit");
        // As the shell does after each commit.
        let blocks = &self.blocks;
        self.node
            .spill_archive_blocks(&mut |b| blocks.append(b))
            .expect("memory");
        for a in actions {
            match a {
                Action::Persist(_) => {}
                Action::Send { conn, bytes } => {
                    if !self.closed.contains(&conn) {
                        let outbox = self.outbox.entry(conn).or_default();
                        bytes.parts().for_each(|p| outbox.extend_from_slice(p));
                    }
                }
                Action::StartTls { conn } => tls.push(conn),
                Action::Close { conn } => {
                    self.closed.insert(conn);
                }
                Action::AdminReply { req, reply } => self.admin_replies.push((req, reply)),
                Action::Dial { peer } => self.dials.push(peer.to_string()),
            }
        }
        // The simulated handshake always succeeds at once.
        for conn in tls {
            self.node.handle(self.now, Event::TlsEstablished { conn });
            self.process();
        }
    }

    pub fn event(&mut self, event: Event) {
        self.node.handle(self.now, event);
        self.process();
    }

    /// A fresh connection id, for a link the network opens.
    pub fn alloc_conn(&mut self) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        conn
    }

    /// Set the virtual clock (the network keeps all nodes in step) and fire due timers.
    pub fn set_time(&mut self, mono_ms: u64) {
        let delta = mono_ms.saturating_sub(self.now.mono_ms);
        self.now.mono_ms += delta;
        self.now.unix_ms += delta;
        self.node.handle_timeout(self.now);
        self.process();
    }

    pub fn connect(&mut self) -> ConnId {
        self.connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A client connection from a given address.
    pub fn connect_from(&mut self, peer: IpAddr) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.event(Event::Accepted { conn, peer });
        conn
    }

    pub fn send(&mut self, conn: ConnId, data: &str) {
        self.event(Event::Data {
            conn,
            bytes: data.as_bytes().to_vec(),
        });
    }

    pub fn disconnect(&mut self, conn: ConnId) {
        self.closed.insert(conn);
        self.event(Event::Disconnected { conn });
    }

    /// Whether the session on `conn` is still served: a ping gets its answer.
    pub fn answers_ping(&mut self, conn: ConnId) -> bool {
        self.send(
            conn,
            "<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        self.take(conn).contains("id='alive'")
    }

    /// Everything the node wrote to `conn` since the last call.
    /// What a client connection received since the last call.
    pub fn take(&mut self, conn: ConnId) -> String {
        String::from_utf8(self.take_bytes(conn)).expect("client streams are UTF-8")
    }

    /// The bytes a connection received (a link's may be compressed): the
    /// client reads everything, and the node hears it was written, which
    /// lets paced output (offline messages, history) go on until nothing
    /// more comes.
    pub fn take_bytes(&mut self, conn: ConnId) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(bytes) = self.outbox.remove(&conn).filter(|b| !b.is_empty()) {
            let n = bytes.len();
            got.extend(bytes);
            self.event(Event::Written { conn, bytes: n });
        }
        got
    }

    /// What a slow client reads: at most `max` bytes of what arrived (the
    /// rest stays unread, and the node hears only of what was read).
    pub fn take_some(&mut self, conn: ConnId, max: usize) -> String {
        let Some(bytes) = self.outbox.get_mut(&conn) else {
            return String::new();
        };
        let n = max.min(bytes.len());
        let read: Vec<u8> = bytes.drain(..n).collect();
        self.event(Event::Written { conn, bytes: n });
        String::from_utf8_lossy(&read).into_owned()
    }

    /// Bytes handed to connections and not read yet.
    pub fn unread_bytes(&self) -> usize {
        self.outbox.values().map(Vec::len).sum()
    }

    /// Heap the simulator holds for output not read yet (a real node
    /// would have written it to its sockets).
    pub fn outbox_heap_bytes(&self) -> usize {
        self.outbox.values().map(Vec::capacity).sum()
    }

    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.closed.contains(&conn)
    }

    /// Move the virtual clock and fire due timers.
    pub fn advance(&mut self, ms: u64) {
        self.now.mono_ms += ms;
        self.now.unix_ms += ms;
        self.node.handle_timeout(self.now);
        self.process();
    }

    pub fn admin(&mut self, cmd: AdminCommand) -> AdminReply {
        self.event(Event::Admin { req: 0, cmd });
        self.admin_replies.pop().expect("admin reply").1
    }

    /// Ask what the upload HTTP server asks, as request `req`: the answer
    /// if it came at once.
    pub fn file_ask(
        &mut self,
        req: u64,
        ask: crate::files::FileAsk,
    ) -> Option<crate::files::FileAnswer> {
        self.event(Event::Admin {
            req,
            cmd: AdminCommand::File(ask),
        });
        self.file_answer(req)
    }

    /// The answer to request `req`, if it came (taken).
    pub fn file_answer(&mut self, req: u64) -> Option<crate::files::FileAnswer> {
        let at = self.admin_replies.iter().position(|(r, _)| *r == req)?;
        match self.admin_replies.remove(at).1 {
            AdminReply::File(answer) => Some(answer),
            other => panic!("not a file answer: {other:?}"),
        }
    }

    pub fn add_user(&mut self, user: &str, password: &str) {
        // Few iterations: the simulator logs in many users and tests no password strength.
        let creds = crate::scram::Credentials::derive(password, user.as_bytes(), 16);
        assert_eq!(
            self.admin(AdminCommand::UserAdd {
                user: user.into(),
                creds
            }),
            AdminReply::Done
        );
    }

    /// Power loss and restart: unsynced log bytes are lost (none are, since
    /// every step commits), sessions vanish, state comes back from the log.
    pub fn crash_and_restart(&mut self) {
        let mut storage = std::mem::take(self.log.storage());
        storage.crash(0);
        let (log, state) = replay(storage);
        self.seed += 1;
        self.node = Node::new(self.cfg.clone(), state, seed_bytes(self.seed));
        self.node.install_file_store(self.files.clone());
        self.log = log;
        self.outbox.clear();
        for c in 1..self.next_conn {
            self.closed.insert(c);
        }
        self.node.start(self.now);
        self.process();
    }

    /// A graceful stop (sessions that can be resumed are kept), then a
    /// start on the log it left, `down_ms` later.
    pub fn stop_and_restart(&mut self, down_ms: u64) {
        self.event(Event::Shutdown);
        self.now.mono_ms += down_ms;
        self.now.unix_ms += down_ms;
        self.crash_and_restart();
    }

    pub fn header(&self) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            self.cfg.domain
        )
    }

    /// STARTTLS, SCRAM-SHA-256 and the stream restarted after it: the
    /// connection, ready to bind or resume, and the features it was offered.
    pub fn authenticated(&mut self, user: &str, password: &str) -> (ConnId, String) {
        let conn = self.connect();
        let header = self.header();
        self.send(conn, &header);
        let out = self.take(conn);
        assert!(out.contains("<starttls"), "{out}");
        self.send(conn, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert!(self.take(conn).contains("<proceed"));
        self.send(conn, &header);
        assert!(self.take(conn).contains("SCRAM-SHA-256"));
        self.authenticate(conn, user, password)
            .expect("login succeeds");
        self.send(conn, &header);
        let features = self.take(conn);
        assert!(features.contains("urn:ietf:params:xml:ns:xmpp-bind"));
        (conn, features)
    }

    /// Full login: STARTTLS, SCRAM-SHA-256, bind. Returns the connection.
    /// `conn` goes available announcing a client with `features` in its
    /// entity capabilities (XEP-0115), and answers the node's question
    /// about them if it comes; whether it came.
    pub fn online_with_features(&mut self, conn: ConnId, features: &[&str]) -> bool {
        let (query, ver) = caps_of(features);
        self.send(
            conn,
            &format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test.example' ver='{ver}'/></presence>"),
        );
        let out = self.take(conn);
        let Some(id) = between(&out, "<iq type='get' id='", "'").map(str::to_string) else {
            return false;
        };
        self.send(
            conn,
            &format!("<iq type='result' id='{id}' to='{}'><query xmlns='http://jabber.org/protocol/disco#info' node='https://test.example#{ver}'>{query}</query></iq>", self.cfg.domain),
        );
        true
    }

    pub fn login(&mut self, user: &str, password: &str, resource: &str) -> ConnId {
        let (conn, _) = self.authenticated(user, password);
        self.send(
            conn,
            &format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"),
        );
        let out = self.take(conn);
        assert!(
            out.contains(&format!("{user}@{}/{resource}", self.cfg.domain)),
            "{out}"
        );
        conn
    }

    /// SCRAM-SHA-256 exchange; Err carries the server's failure element.
    pub fn authenticate(&mut self, conn: ConnId, user: &str, password: &str) -> Result<(), String> {
        let (mut client, first) = ScramClient::new(Hash::Sha256, user, password, "clientnonce");
        self.send(
            conn,
            &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>", B64.encode(first)),
        );
        let out = self.take(conn);
        let challenge = between(
            &out,
            "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>",
            "</challenge>",
        )
        .ok_or_else(|| out.clone())?;
        let server_first =
            String::from_utf8(B64.decode(challenge).expect("base64")).expect("utf-8");
        let fin = client
            .respond(&server_first)
            .map_err(|e| format!("{e:?}"))?;
        self.send(
            conn,
            &format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                B64.encode(fin)
            ),
        );
        // A failure may be held back; let the clock run until an answer arrives.
        let mut out = self.take(conn);
        for _ in 0..100 {
            if !out.is_empty() {
                break;
            }
            self.advance(250);
            out = self.take(conn);
        }
        match between(
            &out,
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>",
            "</success>",
        ) {
            Some(v) => {
                let v = String::from_utf8(B64.decode(v).expect("base64")).expect("utf-8");
                assert!(client.verify_server(&v), "server signature");
                Ok(())
            }
            None => Err(out),
        }
    }
}

/// xorshift64*: small and deterministic, for seeded test schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` for picking test actions.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The text between the first `start` and the next `end`.
/// A test client's disco#info answer listing `features`, and its caps
/// verification string's hash (XEP-0115 §5.1).
pub fn caps_of(features: &[&str]) -> (String, String) {
    let mut sorted: Vec<&str> = features.to_vec();
    sorted.sort_unstable();
    let mut s = "client/phone//Test<".to_string();
    for f in &sorted {
        s.push_str(f);
        s.push('<');
    }
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    let ver = B64.encode(digest);
    let mut q = "<identity category='client' type='phone' name='Test'/>".to_string();
    for f in features {
        q.push_str(&format!("<feature var='{f}'/>"));
    }
    (q, ver)
}

pub fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}
