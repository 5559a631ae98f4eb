//! Client-to-server streams (RFC 6120): framing, stream headers, STARTTLS,
//! SASL, resource binding, stream errors and timeouts, and what each
//! connection is sent (`output`). A machine of its own (`Clients`): it
//! takes the time, bytes and the accounts to check logins against, and
//! gives out bytes for the shell (`take_output`) and, through `poll`, the
//! stanzas of bound sessions and the sessions that bound or ended, one at
//! a time, for the router.

mod csi;
mod held;
pub mod output;
mod register;
mod session;
pub mod sm;
pub mod throttle;

#[cfg(test)]
mod tests;

pub use held::{HeldStream, RESTORED_CONN_BASE};
pub use session::{Session, Stage};

use crate::admission::Admission;
use crate::common::{pop_due, ConnId, Payload};
use crate::jid::{normalize_domain, normalize_local, Jid};
use crate::scram::{parse_client_first, parse_plain, Credentials, Hash, SaslError, ScramServer};
use crate::settings::NodeConfig;
use crate::stanza;
use crate::state::State;
use crate::xml::{ns, parse_header, parse_stanza, Element, Frame};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use output::{Completion, Kind};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use throttle::AuthThrottle;

/// After this many failed logins on one connection it is closed.
const MAX_AUTH_FAILURES_PER_STREAM: u32 = 5;
/// Input a session may hold while it cannot take it. The shell reads a
/// connection only a few buffers ahead of the core, so a client that
/// keeps to the protocol never comes near it.
const MAX_HELD_INPUT: usize = 64 * 1024;

/// Bytes and connection control for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    Send {
        conn: ConnId,
        bytes: Payload,
    },
    /// Everything queued so far for `conn` is written, then TLS starts.
    StartTls {
        conn: ConnId,
    },
    /// Everything queued so far for `conn` is written, then it is closed.
    Close {
        conn: ConnId,
    },
}

/// What the router is told (see `poll`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClient {
    /// `conn` bound the resource `jid`.
    Bound { conn: ConnId, jid: Jid },
    /// A stanza from the bound session `jid`, as the client sent it.
    Stanza { conn: ConnId, jid: Jid, el: Element },
    /// The session is gone; `jid` if it had bound a resource. Nothing sent
    /// to `conn` from now on reaches it. `undelivered`: stanzas it was sent
    /// and never acknowledged (stream management), that nothing else keeps.
    Ended {
        conn: ConnId,
        jid: Option<Jid>,
        undelivered: Vec<Payload>,
    },
    /// Deliveries to `conn` the client acknowledged (stream management)
    /// before their bytes were reported written: done all the same.
    Delivered { conn: ConnId, done: Vec<Completion> },
    /// The session lost its connection and waits to be resumed: offline
    /// messages it was being handed go to another session, or wait.
    Detached { conn: ConnId },
    /// The session was resumed on a new connection; `offline_upto`: the
    /// last offline message among the stanzas sent to it again.
    Resumed {
        conn: ConnId,
        offline_upto: Option<u64>,
    },
    /// A client not logged in asks for a new account (XEP-0077, allowed and
    /// within the limits): `iq` is answered once it is made.
    Register {
        conn: ConnId,
        user: String,
        creds: Box<Credentials>,
        iq: Element,
    },
}

pub struct Clients {
    cfg: NodeConfig,
    sessions: HashMap<ConnId, Session>,
    /// Bound sessions per account localpart, in bind order.
    bound: HashMap<String, Vec<ConnId>>,
    /// Slots for connections not authenticated yet.
    preauth: Admission,
    auth_throttle: AuthThrottle,
    /// Input all sessions hold in unfinished stanzas (and held back).
    buffered_input: usize,
    /// Sessions with input that may be read now.
    ready: BTreeSet<ConnId>,
    notices: VecDeque<FromClient>,
    out: Vec<ClientOutput>,
    timers: BinaryHeap<Reverse<(u64, ConnId)>>,
    now: u64,
    rng: ChaCha20Rng,
    /// Connections that carry a session begun on another (resumed), to it.
    by_transport: HashMap<ConnId, ConnId>,
    /// Resumable sessions by the id a resumption names.
    resumable: HashMap<String, ConnId>,
    /// Bytes of stanzas sent and not acknowledged, all sessions together.
    unacked_bytes: usize,
    registrations: register::RegistrationLimit,
}

/// Bytes of stanzas sent and not acknowledged the node holds for all
/// sessions together; past it, detached sessions end first (what they
/// hold goes to offline storage), then the session with the most.
pub const MAX_UNACKED_TOTAL: usize = 32 * 1024 * 1024;

/// What reading a session's input gave.
enum Read {
    Stanza(FromClient),
    /// A session bound or ended: the router hears of it before more is read.
    Notice,
    /// Nothing more can be read now.
    Idle,
}

/// Salt shown for unknown users, stable per name (across restarts too)
/// so probing cannot tell which accounts exist.
fn fake_salt(state: &State, user: &str) -> Vec<u8> {
    let secret = state.secret.as_deref().unwrap_or_default();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, user.as_bytes()).as_ref()[..16].to_vec()
}

impl Clients {
    pub fn new(cfg: NodeConfig, seed: [u8; 32]) -> Clients {
        let preauth = Admission::new(cfg.max_unauthenticated, cfg.max_unauthenticated_per_address);
        Clients {
            cfg,
            sessions: HashMap::new(),
            bound: HashMap::new(),
            preauth,
            auth_throttle: AuthThrottle::default(),
            buffered_input: 0,
            ready: BTreeSet::new(),
            notices: VecDeque::new(),
            out: Vec::new(),
            timers: BinaryHeap::new(),
            now: 0,
            rng: ChaCha20Rng::from_seed(seed),
            by_transport: HashMap::new(),
            resumable: HashMap::new(),
            unacked_bytes: 0,
            registrations: register::RegistrationLimit::default(),
        }
    }

    /// The session the connection `transport` carries now (none for a
    /// connection a resumed session left, or that is not a client's).
    pub fn session_of(&self, transport: ConnId) -> Option<ConnId> {
        let key = self
            .by_transport
            .get(&transport)
            .copied()
            .unwrap_or(transport);
        let s = self.sessions.get(&key)?;
        (s.transport == transport && !s.is_detached()).then_some(key)
    }

    /// The connection that carries the session `conn` now.
    fn transport_of(&self, conn: ConnId) -> ConnId {
        self.sessions.get(&conn).map_or(conn, |s| s.transport)
    }

    /// New limits and timeouts, from now on.
    pub fn reconfigure(&mut self, cfg: NodeConfig) {
        self.preauth
            .set_caps(cfg.max_unauthenticated, cfg.max_unauthenticated_per_address);
        self.cfg = cfg;
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_client(&self, conn: ConnId) -> bool {
        self.session_of(conn).is_some()
    }

    /// Whether the shell should go on reading `conn` (false while its input
    /// is held back: see `Session::reads_input`).
    pub fn accepts_input(&self, conn: ConnId) -> bool {
        self.session_of(conn)
            .and_then(|key| self.sessions.get(&key))
            .is_none_or(|s| s.reads_input())
    }

    /// Bytes a paced delivery to `conn` may add now (0 for no session).
    pub fn paced_room(&self, conn: ConnId) -> usize {
        let Some(s) = self.sessions.get(&conn).filter(|s| !s.is_detached()) else {
            return 0;
        };
        // With stream management, no more than may go unacknowledged: the
        // rest follows as the client acknowledges.
        let acknowledged_room = s.sm.as_ref().map_or(usize::MAX, |sm| {
            sm.allowance().map_or(sm::MAX_UNACKED_BYTES, |a| a.bytes)
        });
        s.output.paced_room().min(acknowledged_room)
    }

    /// What the shell is to do, in order.
    pub fn take_output(&mut self) -> Vec<ClientOutput> {
        std::mem::take(&mut self.out)
    }

    fn random_id(&mut self) -> String {
        crate::common::random_id(&mut self.rng)
    }

    // ---- input ------------------------------------------------------------

    /// A new client connection: it takes one of the slots for connections
    /// not authenticated yet, or is refused at once, saying why.
    pub fn accepted(&mut self, now: u64, conn: ConnId, peer: IpAddr) {
        self.now = now;
        let id = self.random_id();
        let session = Session::new(conn, peer, &self.cfg, now, id);
        self.sessions.insert(conn, session);
        match self.preauth.admit(peer) {
            Ok(()) => {
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.preauth_slot = true;
                }
                self.arm_timer(conn);
            }
            Err(refused) => {
                log::debug!("c2s {conn}: refused {peer}: {}", refused.text());
                self.stream_error(conn, "policy-violation", refused.text());
            }
        }
    }

    /// Bytes from a client: read by `poll`, as far as the session takes
    /// them (the rest is held until it can).
    pub fn data(&mut self, now: u64, transport: ConnId, bytes: &[u8]) {
        self.now = now;
        let Some(conn) = self.session_of(transport) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.closing || s.tls_pending {
            // Bytes after <starttls/> in plaintext are discarded (RFC 6120 §5.4.3.3).
            return;
        }
        if !s.reads_input() && s.held_len() + bytes.len() > MAX_HELD_INPUT {
            return self.stream_error(
                conn,
                "policy-violation",
                "sending faster than the server answers",
            );
        }
        s.hold(bytes);
        self.ready.insert(conn);
        self.count_input(conn);
        self.arm_timer(conn);
    }

    /// The next thing the router is to act on: a session that bound or
    /// ended, or the next stanza of a bound session. Negotiation (headers,
    /// TLS, SASL, bind) is handled here on the way. `state` holds the
    /// accounts logins are checked against.
    pub fn poll(&mut self, now: u64, state: &State) -> Option<FromClient> {
        self.now = now;
        self.reap_unread();
        loop {
            if let Some(notice) = self.notices.pop_front() {
                return Some(notice);
            }
            let conn = *self.ready.first()?;
            match self.read_one(conn, state) {
                Read::Stanza(stanza) => return Some(stanza),
                Read::Notice => {}
                Read::Idle => {
                    self.ready.remove(&conn);
                }
            }
        }
    }

    /// Frame the input `conn` holds until something comes out for the
    /// router, or nothing more can be read now.
    fn read_one(&mut self, conn: ConnId, state: &State) -> Read {
        loop {
            let now = self.now;
            let Some(s) = self.sessions.get_mut(&conn) else {
                return Read::Idle;
            };
            if s.closing || s.tls_pending || !s.reads_input() || s.held_len() == 0 {
                return Read::Idle;
            }
            let frame = match s.next_frame(now) {
                Ok(frame) => frame,
                Err(e) => {
                    log::info!("c2s {conn}: {}: {}", e.condition(), e.text());
                    self.stream_error(conn, e.condition(), e.text());
                    return Read::Idle;
                }
            };
            self.count_input(conn);
            let out = frame.and_then(|frame| self.on_frame(conn, frame, state));
            // An unfinished stanza, a held-back failure or a bind may need
            // the timer sooner.
            self.arm_timer(conn);
            if let Some(stanza) = out {
                return Read::Stanza(stanza);
            }
            if !self.notices.is_empty() {
                return Read::Notice; // Bound or ended: the router hears of it first.
            }
        }
    }

    /// Keep the total of buffered input true for `conn`, and hold it to its
    /// bound: a connection that grows it past the bound is closed.
    fn count_input(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let (before, now) = (s.counted_input, s.buffered_input());
        s.counted_input = now;
        self.buffered_input = self.buffered_input - before + now;
        if now > before && self.buffered_input > self.cfg.max_buffered_input {
            log::warn!(
                "c2s {conn}: unfinished stanzas of all connections exceed {} bytes; closing this one",
                self.cfg.max_buffered_input
            );
            self.stream_error(
                conn,
                "resource-constraint",
                "the server holds too much unfinished input",
            );
        }
    }

    // ---- output -----------------------------------------------------------

    /// Send live traffic, through the session's paced output (see `output`).
    pub fn send(&mut self, conn: ConnId, bytes: impl Into<Payload>) {
        self.queue_output(conn, bytes.into(), false, None);
    }

    pub fn send_el(&mut self, conn: ConnId, el: &Element) {
        self.send(conn, el.to_xml(ns::CLIENT).into_bytes());
    }

    /// Send a large delivery, paced by what the client reads; `done` is
    /// given back by `written` once the bytes are written.
    pub fn send_paced(&mut self, conn: ConnId, bytes: Vec<u8>, done: Option<Completion>) {
        self.queue_output(conn, bytes.into(), true, done);
    }

    fn queue_output(
        &mut self,
        conn: ConnId,
        bytes: Payload,
        paced: bool,
        done: Option<Completion>,
    ) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.not_reading || s.restoring {
            return;
        }
        // An inactive client's presences wait (XEP-0352); anything else
        // takes them along first, in order.
        let mut chunks = Vec::new();
        // A whitespace keepalive neither waits nor takes them along.
        let keepalive = bytes.len() == 1 && bytes.head == b" ";
        let mut last = Some(bytes);
        if let Some(held) = s.held.as_mut().filter(|_| !keepalive) {
            if !paced {
                last = last.and_then(|b| held.hold(b).err());
            }
            if last.is_some() || held.is_full() {
                chunks = held.take().into_iter().map(|b| (b, false, None)).collect();
            }
        }
        chunks.extend(last.map(|b| (b, paced, done)));
        // With no connection to write to (gone, or not reading), a
        // resumable session keeps its stanzas numbered for its resumption.
        let mut overflowed = false;
        for (bytes, paced, done) in chunks {
            if !s.is_detached() && !s.not_reading && !overflowed {
                let kept = s.sm.is_some().then(|| (bytes.clone(), done.clone()));
                if s.output.push(bytes, paced, done).is_ok() {
                    continue;
                }
                overflowed = true;
                if let (Some(sm), Some((bytes, done))) = (s.sm.as_mut(), kept) {
                    self.unacked_bytes += number(sm, &bytes, done);
                }
                continue;
            }
            if let Some(sm) = s.sm.as_mut() {
                self.unacked_bytes += number(sm, &bytes, done);
            }
        }
        let ends = s.is_detached() && s.sm.as_ref().is_some_and(|sm| sm.over_bounds());
        if overflowed {
            return self.not_reading(conn);
        }
        if ends {
            log::info!("c2s {conn}: too many stanzas kept for its resumption; the session ends");
            return self.end_session(conn);
        }
        self.release_output(conn);
        if self.unacked_bytes > MAX_UNACKED_TOTAL {
            self.keep_unacked_within_total();
        }
    }

    /// Stream management's own elements (acknowledgements, requests,
    /// answers): ahead of what waits, never counted.
    fn send_nonza(&mut self, conn: ConnId, xml: String) {
        let Some(s) = self.sessions.get_mut(&conn).filter(|s| !s.is_detached()) else {
            return;
        };
        let bytes = xml.into_bytes().into();
        if s.output.push_kind(bytes, false, None, Kind::Nonza).is_err() {
            return self.not_reading(conn);
        }
        self.release_output(conn);
    }

    fn not_reading(&mut self, conn: ConnId) {
        log::info!("c2s {conn}: client is not reading; disconnecting");
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.not_reading = true;
        }
        let conn = self.transport_of(conn);
        self.out.push(ClientOutput::Close { conn });
    }

    /// XEP-0352: the client says whether it is in use.
    fn on_client_state(&mut self, conn: ConnId, el: &Element) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        match el.name.as_str() {
            "inactive" => {
                s.held.get_or_insert_with(Box::default);
            }
            "active" => {
                let Some(mut held) = s.held.take() else {
                    return;
                };
                for b in held.take() {
                    self.queue_output(conn, b, false, None);
                }
            }
            _ => self.stream_error(conn, "unsupported-stanza-type", ""),
        }
    }

    /// Hand the shell what fits in a session's window.
    /// New stanzas are numbered as they go (XEP-0198), and wait while the
    /// client has too many unacknowledged; it is asked for an
    /// acknowledgement once enough wait.
    fn release_output(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.is_detached() {
            return;
        }
        let transport = s.transport;
        for round in 0..2 {
            let allowance = s.sm.as_ref().and_then(|sm| sm.allowance());
            for r in s.output.release(allowance) {
                if let (Some(sm), Kind::Stanzas) = (s.sm.as_mut(), r.kind) {
                    self.unacked_bytes += number(sm, &r.bytes, r.done);
                }
                self.out.push(ClientOutput::Send {
                    conn: transport,
                    bytes: r.bytes,
                });
            }
            let Some(sm) = s.sm.as_mut().filter(|_| round == 0) else {
                break;
            };
            if !sm.should_request(now) {
                break;
            }
            let request = format!("<r xmlns='{}'/>", sm::NS).into_bytes().into();
            if s.output
                .push_kind(request, false, None, Kind::Nonza)
                .is_err()
            {
                return self.not_reading(conn);
            }
        }
        if self.unacked_bytes > MAX_UNACKED_TOTAL {
            self.keep_unacked_within_total();
        }
    }

    /// The shell wrote `n` bytes of `conn`'s output: the window opens, input
    /// held meanwhile is read on; what was waiting for those bytes is given
    /// back.
    /// Returns the session the connection carries, with them.
    pub fn written(
        &mut self,
        now: u64,
        transport: ConnId,
        n: usize,
    ) -> Option<(ConnId, Vec<Completion>)> {
        self.now = now;
        let conn = self.session_of(transport)?;
        let s = self.sessions.get_mut(&conn)?;
        let done = s.output.written(n);
        if let Some(sm) = s.sm.as_mut() {
            done.iter().for_each(|d| sm.completed(d));
        }
        self.release_output(conn);
        self.ready.insert(conn);
        Some((conn, done))
    }

    /// Sessions whose output piled up unread end now, at the start of the
    /// next poll (not in the middle of whatever was sending to them).
    fn reap_unread(&mut self) {
        let mut gone: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.not_reading && !s.closing)
            .map(|(c, _)| *c)
            .collect();
        gone.sort_unstable();
        for conn in gone {
            self.connection_lost(conn);
        }
    }

    /// Give back a connection's unauthenticated slot (it authenticated, or went).
    fn release_preauth_slot(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            if std::mem::take(&mut s.preauth_slot) {
                let peer = s.peer;
                self.preauth.release(peer);
            }
        }
    }

    fn on_frame(&mut self, conn: ConnId, frame: Frame, state: &State) -> Option<FromClient> {
        match frame {
            Frame::StreamOpen(raw) => self.on_stream_open(conn, &raw),
            Frame::StreamClose => {
                self.send(conn, b"</stream:stream>".to_vec());
                let transport = self.transport_of(conn);
                self.out.push(ClientOutput::Close { conn: transport });
                self.end_session(conn);
            }
            Frame::Stanza(raw) => {
                let header = self.sessions.get(&conn)?.header.as_ref()?;
                match parse_stanza(header, &raw) {
                    Ok(el) => return self.on_element(conn, el, state),
                    Err(e) => {
                        log::info!("c2s {conn}: {}: {:?}", e.condition(), e);
                        self.stream_error(conn, e.condition(), "");
                    }
                }
            }
        }
        None
    }

    fn our_header(&self, stream_id: &str) -> Vec<u8> {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' id='{}' from='{}' version='1.0' xml:lang='en'>",
            ns::CLIENT,
            ns::STREAMS,
            stream_id,
            crate::xml::escape(&self.cfg.domain)
        )
        .into_bytes()
    }

    fn on_stream_open(&mut self, conn: ConnId, raw: &[u8]) {
        let id = self.random_id();
        let header_bytes = self.our_header(&id);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.stream_id = id;
        s.header_sent = true;
        self.send(conn, header_bytes);
        let header = match parse_header(raw) {
            Ok(h) => h,
            Err(e) => return self.stream_error(conn, e.condition(), "unparseable stream header"),
        };
        if header.ns != ns::STREAMS || header.name != "stream" {
            return self.stream_error(
                conn,
                "invalid-namespace",
                "the root must be <stream> in the streams namespace",
            );
        }
        if header.default_ns != ns::CLIENT {
            return self.stream_error(
                conn,
                "invalid-namespace",
                "the default namespace must be jabber:client",
            );
        }
        let to_ok = header
            .attr("to")
            .and_then(|t| normalize_domain(t).ok())
            .is_some_and(|d| d == self.cfg.domain);
        if !to_ok {
            return self.stream_error(
                conn,
                "host-unknown",
                "this server does not serve that domain",
            );
        }
        let major = header
            .attr("version")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major != Some(1) {
            return self.stream_error(conn, "unsupported-version", "version 1.0 is required");
        }
        let features = self.features(conn);
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.header = Some(header);
        }
        self.send(conn, features.into_bytes());
    }

    fn features(&self, conn: ConnId) -> String {
        let s = &self.sessions[&conn];
        let mut f = String::from("<stream:features>");
        match s.stage {
            Stage::Authenticated(_) => {
                f.push_str(&format!(
                    "<bind xmlns='{}'/><session xmlns='{}'><optional/></session><ver xmlns='{}'/><csi xmlns='{}'/><sm xmlns='{}'/><sub xmlns='urn:xmpp:features:pre-approval'/>",
                    ns::BIND,
                    ns::SESSION,
                    ns::ROSTER_VER,
                    ns::CSI,
                    sm::NS
                ));
            }
            _ if !s.tls && self.cfg.require_tls => {
                f.push_str(&format!(
                    "<starttls xmlns='{}'><required/></starttls>",
                    ns::TLS
                ));
            }
            _ => {
                if !s.tls {
                    f.push_str(&format!("<starttls xmlns='{}'/>", ns::TLS));
                }
                f.push_str(&format!("<mechanisms xmlns='{}'>", ns::SASL));
                f.push_str(
                    "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>",
                );
                if s.tls {
                    f.push_str("<mechanism>PLAIN</mechanism>");
                }
                f.push_str("</mechanisms>");
                if self.cfg.allow_registration && (s.tls || !self.cfg.require_tls) {
                    f.push_str("<register xmlns='http://jabber.org/features/iq-register'/>");
                }
            }
        }
        f.push_str(&crate::server_info::caps_feature());
        f.push_str("</stream:features>");
        f
    }

    /// A bound session's stanza is for the router; before that, the
    /// element is part of the negotiation.
    fn on_element(&mut self, conn: ConnId, el: Element, state: &State) -> Option<FromClient> {
        let s = self.sessions.get(&conn)?;
        if let Stage::Bound(jid) = &s.stage {
            let jid = jid.clone();
            if el.ns == ns::CSI {
                self.on_client_state(conn, &el);
                return None;
            }
            if el.ns == sm::NS {
                self.on_stream_management(conn, &el);
                return None;
            }
            if let Some(sm) = self.sessions.get_mut(&conn).and_then(|s| s.sm.as_mut()) {
                sm.handled = sm.handled.wrapping_add(1);
            }
            return Some(FromClient::Stanza { conn, jid, el });
        }
        self.negotiate(conn, el, state);
        None
    }

    fn negotiate(&mut self, conn: ConnId, el: Element, state: &State) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let tls = s.tls;
        if el.is("starttls", ns::TLS) {
            return self.on_starttls(conn);
        }
        if el.ns == ns::SASL {
            if !tls && self.cfg.require_tls {
                return self.sasl_failure(conn, "encryption-required", false);
            }
            return match el.name.as_str() {
                "auth" => self.on_auth(conn, &el, state),
                "response" => self.on_sasl_response(conn, &el),
                "abort" => self.sasl_failure(conn, "aborted", false),
                _ => self.stream_error(conn, "unsupported-stanza-type", ""),
            };
        }
        let secure = tls || !self.cfg.require_tls;
        if el.is("iq", ns::CLIENT)
            && matches!(s.stage, Stage::Connected)
            && secure
            && el.elements().any(|p| p.is("query", ns::REGISTER))
        {
            return self.on_register(conn, &el, state);
        }
        if let Stage::Authenticated(user) = &s.stage {
            if el.is("iq", ns::CLIENT) {
                return self.on_preauth_iq(conn, &el);
            }
            if el.is("resume", sm::NS) {
                let user = user.clone();
                return self.resume(conn, &user, &el);
            }
            if el.ns == sm::NS {
                // Enabling comes after binding (XEP-0198 §3).
                return self.send_sm_failed(conn, "unexpected-request");
            }
        }
        if el.ns == ns::CLIENT && matches!(el.name.as_str(), "message" | "presence" | "iq") {
            return self.stream_error(
                conn,
                "not-authorized",
                "authenticate and bind a resource first",
            );
        }
        self.stream_error(conn, "unsupported-stanza-type", "")
    }

    fn on_starttls(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        if s.tls || !matches!(s.stage, Stage::Connected) {
            return self.stream_error(conn, "policy-violation", "TLS is already negotiated");
        }
        s.tls_pending = true;
        // What came after <starttls/> in the same read is plaintext too.
        s.drop_held();
        self.count_input(conn);
        self.send(conn, format!("<proceed xmlns='{}'/>", ns::TLS).into_bytes());
        self.out.push(ClientOutput::StartTls { conn });
    }

    /// TLS is up on `conn` (after `<proceed/>`): the stream restarts.
    pub fn tls_established(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.tls = true;
            s.tls_pending = false;
            restart_stream(s);
        }
    }

    fn on_auth(&mut self, conn: ConnId, el: &Element, state: &State) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if !matches!(s.stage, Stage::Connected) {
            return self.sasl_failure(conn, "aborted", false);
        }
        let peer = s.peer;
        let text = el.text_content();
        let initial = match text.trim() {
            "" => None,
            "=" => Some(Vec::new()),
            t => match B64.decode(t) {
                Ok(b) => Some(b),
                Err(_) => return self.sasl_failure(conn, "incorrect-encoding", false),
            },
        };
        // The throttle first: an attempt from an address or on an account
        // that failed recently waits, unread and unevaluated, for its turn.
        let account = match (el.get_attr("mechanism"), &initial) {
            (Some("PLAIN"), Some(msg)) => parse_plain(msg).ok().map(|(_, name, _)| name),
            (Some("SCRAM-SHA-256" | "SCRAM-SHA-1"), Some(msg)) => {
                parse_client_first(msg).ok().map(|f| f.username)
            }
            _ => None,
        };
        let account = account.map(|a| self.sasl_user(&a).unwrap_or_else(|| a.to_lowercase()));
        if let Some(account) = &account {
            let ready = self.auth_throttle.ready_at(peer, account);
            if ready > self.now {
                if let Some(s) = self.sessions.get_mut(&conn) {
                    s.auth_hold = Some((ready, el.clone()));
                }
                return self.arm_timer(conn);
            }
        }
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.auth_account = account;
        }
        match el.get_attr("mechanism") {
            Some("PLAIN") => self.auth_plain(conn, initial, state),
            Some("SCRAM-SHA-256") => self.auth_scram(conn, Hash::Sha256, initial, state),
            Some("SCRAM-SHA-1") => self.auth_scram(conn, Hash::Sha1, initial, state),
            _ => self.sasl_failure(conn, "invalid-mechanism", false),
        }
    }

    /// The account a SASL username refers to: a localpart or a bare JID of ours.
    fn sasl_user(&self, name: &str) -> Option<String> {
        let name = match name.rsplit_once('@') {
            Some((local, domain)) if normalize_domain(domain).ok()? == self.cfg.domain => local,
            Some(_) => return None,
            None => name,
        };
        normalize_local(name).ok()
    }

    fn authzid_ok(&self, authzid: Option<&str>, user: &str) -> bool {
        match authzid {
            None => true,
            Some(a) => Jid::parse(a).is_ok_and(|j| {
                j.is_bare() && j.domain() == self.cfg.domain && j.local() == Some(user)
            }),
        }
    }

    fn auth_plain(&mut self, conn: ConnId, initial: Option<Vec<u8>>, state: &State) {
        if !self.sessions[&conn].tls {
            return self.sasl_failure(conn, "encryption-required", false);
        }
        let Some(msg) = initial else {
            return self.sasl_failure(conn, "malformed-request", false);
        };
        let (authzid, authcid, password) = match parse_plain(&msg) {
            Ok(p) => p,
            Err(e) => return self.sasl_failure(conn, e.condition(), false),
        };
        let user = self.sasl_user(&authcid);
        let ok = user.as_ref().is_some_and(|u| {
            state
                .accounts
                .get(u)
                .is_some_and(|a| a.creds.verify_password(&password))
        });
        match user {
            Some(u) if ok => {
                if !self.authzid_ok(authzid.as_deref(), &u) {
                    return self.sasl_failure(conn, "invalid-authzid", false);
                }
                self.sasl_success(conn, u, None)
            }
            _ => self.sasl_failure(conn, "not-authorized", true),
        }
    }

    fn auth_scram(&mut self, conn: ConnId, hash: Hash, initial: Option<Vec<u8>>, state: &State) {
        let Some(msg) = initial else {
            return self.sasl_failure(conn, "malformed-request", false);
        };
        let first = match parse_client_first(&msg) {
            Ok(f) => f,
            Err(e) => return self.sasl_failure(conn, e.condition(), false),
        };
        let user = self.sasl_user(&first.username);
        if let Some(u) = &user {
            if !self.authzid_ok(first.authzid.as_deref(), u) {
                return self.sasl_failure(conn, "invalid-authzid", false);
            }
        }
        let creds = user
            .as_ref()
            .and_then(|u| state.accounts.get(u))
            .map(|a| a.creds.clone());
        let mut nonce = [0u8; 18];
        self.rng.fill_bytes(&mut nonce);
        let nonce = B64.encode(nonce);
        let fake_salt = fake_salt(state, &first.username);
        match ScramServer::start(hash, &msg, creds.as_ref(), &nonce, &fake_salt) {
            Ok((server, server_first)) => {
                let mut server = Box::new(server);
                // Bind the exchange to the normalised account name.
                server.username = user.unwrap_or_default();
                let Some(s) = self.sessions.get_mut(&conn) else {
                    return;
                };
                s.stage = Stage::Scram(server);
                let challenge = format!(
                    "<challenge xmlns='{}'>{}</challenge>",
                    ns::SASL,
                    B64.encode(server_first)
                );
                self.send(conn, challenge.into_bytes());
            }
            Err(e) => self.sasl_failure(conn, e.condition(), false),
        }
    }

    fn on_sasl_response(&mut self, conn: ConnId, el: &Element) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Stage::Scram(server) = std::mem::replace(&mut s.stage, Stage::Connected) else {
            return self.sasl_failure(conn, "malformed-request", false);
        };
        let Ok(msg) = B64.decode(el.text_content().trim()) else {
            return self.sasl_failure(conn, "incorrect-encoding", false);
        };
        match server.finish(&msg) {
            Ok(server_final) => {
                self.sasl_success(conn, server.username.clone(), Some(server_final))
            }
            Err(SaslError::NotAuthorized) => self.sasl_failure(conn, "not-authorized", true),
            Err(e) => self.sasl_failure(conn, e.condition(), false),
        }
    }

    fn sasl_success(&mut self, conn: ConnId, user: String, additional: Option<String>) {
        self.auth_throttle.succeeded(&user);
        // Logged in but not bound yet, an account's streams hold slots that
        // no resource limit counts: no more of them than it may have resources.
        let unbound = self
            .sessions
            .values()
            .filter(|s| matches!(&s.stage, Stage::Authenticated(u) if *u == user))
            .count();
        if unbound >= self.cfg.max_resources_per_user {
            log::info!("c2s {conn}: {user} has {unbound} streams logged in and not bound");
            return self.sasl_failure(conn, "temporary-auth-failure", false);
        }
        let body = additional.map(|a| B64.encode(a)).unwrap_or_default();
        self.send(
            conn,
            format!("<success xmlns='{}'>{body}</success>", ns::SASL).into_bytes(),
        );
        self.release_preauth_slot(conn);
        let limits = self.cfg.limits;
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        log::info!("c2s {conn}: {user} authenticated from {}", s.peer);
        s.stage = Stage::Authenticated(user);
        restart_stream(s);
        s.framer.reset_with(limits);
    }

    /// Report a SASL failure. Wrong credentials are reported only after a
    /// delay that doubles with each recent failure from the same address.
    fn sasl_failure(&mut self, conn: ConnId, condition: &str, wrong_credentials: bool) {
        let bytes = format!("<failure xmlns='{}'><{condition}/></failure>", ns::SASL).into_bytes();
        if !wrong_credentials {
            if let Some(s) = self.sessions.get_mut(&conn) {
                s.stage = Stage::Connected;
            }
            return self.send(conn, bytes);
        }
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        let (peer, account) = (s.peer, s.auth_account.clone().unwrap_or_default());
        let now = self.now;
        let delay = self.auth_throttle.failed(peer, &account, now);
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.stage = Stage::Connected;
        s.auth_failures += 1;
        let due = s.delayed.back().map_or(now, |d| d.0.max(now)) + delay;
        let close = s.auth_failures >= MAX_AUTH_FAILURES_PER_STREAM;
        log::info!("c2s {conn}: authentication failed from {peer} (answer delayed {delay} ms)");
        s.delayed.push_back((due, bytes, close));
    }

    /// XEP-0077 before logging in: the form, or a new account.
    fn on_register(&mut self, conn: ConnId, el: &Element, state: &State) {
        let domain = self.cfg.domain.clone();
        let refuse = |this: &mut Clients, condition: &str, text: &str| {
            if let Some(reply) =
                stanza::error_reply(el, condition, stanza::error_type_for(condition), &domain)
            {
                let reply = match text {
                    "" => reply,
                    text => stanza::with_error_text(reply, text),
                };
                this.send_el(conn, &reply);
            }
        };
        if !self.cfg.allow_registration {
            return refuse(
                self,
                "service-unavailable",
                "accounts are made by the operator here",
            );
        }
        let Some(query) = el.get_child("query", ns::REGISTER) else {
            return;
        };
        if el.get_attr("type") == Some("get") {
            let form = Element::new("query", ns::REGISTER)
                .child(Element::new("instructions", ns::REGISTER).text(format!(
                    "Choose a user name and a password of at least {} characters.",
                    crate::scram::MIN_PASSWORD_CHARS
                )))
                .child(Element::new("username", ns::REGISTER))
                .child(Element::new("password", ns::REGISTER));
            let mut reply = stanza::iq_result(el, &domain, Some(form));
            reply.remove_attr("to");
            return self.send_el(conn, &reply);
        }
        let field = |name: &str| {
            query
                .get_child(name, ns::REGISTER)
                .map(Element::text_content)
        };
        if query.has_child("remove", ns::REGISTER) {
            return refuse(self, "not-authorized", "log in to remove an account");
        }
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return refuse(self, "bad-request", "a username and a password are needed");
        };
        let Ok(user) = normalize_local(&username) else {
            return refuse(self, "not-acceptable", "that user name is not allowed");
        };
        if let Err(why) = crate::scram::check_new_password(&password) {
            return refuse(self, "not-acceptable", &why);
        }
        if state.accounts.contains_key(&user) {
            return refuse(self, "conflict", "that user name is taken");
        }
        if still_referenced(state, &format!("{user}@{domain}")) {
            // A deleted account's name: rosters and rooms still grant it
            // what they granted the deleted one.
            return refuse(
                self,
                "conflict",
                "that user name was in use; choose another",
            );
        }
        let peer = self.sessions[&conn].peer;
        if let Err(why) = self.registrations.check(self.now, peer) {
            return refuse(self, "resource-constraint", why);
        }
        self.registrations.note(self.now, peer);
        let mut salt = [0u8; 16];
        self.rng.fill_bytes(&mut salt);
        let creds = Credentials::derive(&password, &salt, crate::scram::DEFAULT_ITERATIONS);
        log::info!("c2s {conn}: registered {user} from {peer}");
        self.notices.push_back(FromClient::Register {
            conn,
            user,
            creds: Box::new(creds),
            iq: el.clone(),
        });
    }

    fn on_preauth_iq(&mut self, conn: ConnId, el: &Element) {
        let Stage::Authenticated(user) = &self.sessions[&conn].stage else {
            return;
        };
        let user = user.clone();
        let domain = self.cfg.domain.clone();
        match (el.get_attr("type"), el.get_child("bind", ns::BIND)) {
            (Some("set"), Some(bind)) => {
                let requested = bind
                    .get_child("resource", ns::BIND)
                    .map(|r| r.text_content());
                self.bind(conn, &user, requested.as_deref(), el);
            }
            _ => {
                if let Some(reply) = stanza::error_reply(el, "not-authorized", "auth", &domain) {
                    self.send_el(conn, &reply);
                }
            }
        }
    }

    fn bind(&mut self, conn: ConnId, user: &str, requested: Option<&str>, iq: &Element) {
        let domain = self.cfg.domain.clone();
        let resource = match requested.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None => format!("outpost-{}", self.random_id()),
        };
        let jid = match Jid::new(Some(user), &domain, Some(&resource)) {
            Ok(j) => j,
            Err(_) => {
                if let Some(reply) = stanza::error_reply(iq, "bad-request", "modify", &domain) {
                    self.send_el(conn, &reply);
                }
                return;
            }
        };
        let existing: Vec<ConnId> = self.bound.get(user).cloned().unwrap_or_default();
        let conflict = existing
            .iter()
            .copied()
            .find(|c| self.sessions.get(c).and_then(|s| s.jid()) == Some(&jid));
        if conflict.is_none() && existing.len() >= self.cfg.max_resources_per_user {
            // A session waiting to be resumed gives way to one that is here
            // (a client that logs in anew rather than resuming).
            let waiting = existing
                .iter()
                .filter_map(|c| {
                    let since = self.sessions.get(c)?.sm.as_ref()?.detached_since?;
                    Some((since, *c))
                })
                .min();
            match waiting {
                Some((_, oldest)) => self.end_session(oldest),
                None => {
                    if let Some(reply) =
                        stanza::error_reply(iq, "resource-constraint", "wait", &domain)
                    {
                        self.send_el(conn, &reply);
                    }
                    return;
                }
            }
        }
        if let Some(old) = conflict {
            // RFC 6120 §7.7.2.2: the new session wins; the old one is told why.
            self.stream_error(
                old,
                "conflict",
                "replaced by a new session with the same resource",
            );
        }
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.stage = Stage::Bound(jid.clone());
        s.partial_since = None;
        s.keepalive_due = self.now + self.cfg.keepalive_ms;
        self.bound.entry(user.to_string()).or_default().push(conn);
        self.notices.push_back(FromClient::Bound {
            conn,
            jid: jid.clone(),
        });
        let result = stanza::iq_result(
            iq,
            &domain,
            Some(
                Element::new("bind", ns::BIND)
                    .child(Element::new("jid", ns::BIND).text(jid.to_string())),
            ),
        );
        let mut result = result;
        result.remove_attr("to");
        self.send_el(conn, &result);
        log::debug!("c2s {conn}: bound {jid}");
    }

    // ---- ending -----------------------------------------------------------

    /// Send a stream error, close the stream and end the session.
    pub fn stream_error(&mut self, conn: ConnId, condition: &str, text: &str) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if s.closing {
            return;
        }
        // Past the output window (what it holds back is dropped with the
        // session): the client is told why, whatever it left unread.
        let mut bytes = Vec::new();
        if !s.header_sent {
            let id = s.stream_id.clone();
            bytes = self.our_header(&id);
        }
        bytes.extend(stanza::stream_error(condition, text));
        if !s.is_detached() {
            let (transport, bytes) = (s.transport, bytes.into());
            self.out.push(ClientOutput::Send {
                conn: transport,
                bytes,
            });
            self.out.push(ClientOutput::Close { conn: transport });
        }
        self.end_session(conn);
    }

    /// The connection went away.
    pub fn disconnected(&mut self, now: u64, transport: ConnId) {
        self.now = now;
        if let Some(conn) = self.session_of(transport) {
            self.connection_lost(conn);
        }
    }

    /// End every session of `user` with a stream error (the account was deleted).
    pub fn close_account(&mut self, user: &str, condition: &str, text: &str) {
        let mut conns: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user() == Some(user) || s.authenticating_as(user))
            .map(|(c, _)| *c)
            .collect();
        conns.sort_unstable();
        for conn in conns {
            self.stream_error(conn, condition, text);
        }
    }

    /// Forget the session; the router hears of it (`FromClient::Ended`).
    fn end_session(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        s.closing = true;
        self.buffered_input -= std::mem::take(&mut s.counted_input);
        self.release_preauth_slot(conn);
        self.ready.remove(&conn);
        let Some(s) = self.sessions.remove(&conn) else {
            return;
        };
        let jid = s.jid().cloned();
        if let Some(user) = jid.as_ref().and_then(|j| j.local()) {
            if let Some(list) = self.bound.get_mut(user) {
                list.retain(|c| *c != conn);
                if list.is_empty() {
                    self.bound.remove(user);
                }
            }
        }
        self.by_transport.remove(&s.transport);
        let undelivered = match s.sm {
            Some(sm) => {
                if let Some(id) = &sm.id {
                    self.resumable.remove(id);
                }
                self.unacked_bytes -= sm.unacked_bytes();
                sm.into_undelivered()
            }
            None => Vec::new(),
        };
        self.notices.push_back(FromClient::Ended {
            conn,
            jid,
            undelivered,
        });
    }

    // ---- time -------------------------------------------------------------

    fn arm_timer(&mut self, conn: ConnId) {
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

    /// The earliest time at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub fn handle_timeout(&mut self, now: u64, state: &State) {
        self.now = now;
        for (t, conn) in pop_due(&mut self.timers, now) {
            if let Some(s) = self.sessions.get_mut(&conn) {
                if s.timer_armed == Some(t) {
                    s.timer_armed = None;
                }
                self.on_session_timer(conn, state);
                self.arm_timer(conn);
            }
        }
    }

    fn on_session_timer(&mut self, conn: ConnId, state: &State) {
        let now = self.now;
        if let Some(s) = self.sessions.get(&conn).filter(|s| s.is_detached()) {
            if s.next_deadline(&self.cfg).is_some_and(|t| now >= t) {
                log::info!("c2s {conn}: not resumed in time; the session ends");
                self.end_session(conn);
            }
            return;
        }
        loop {
            let Some(s) = self.sessions.get_mut(&conn) else {
                return;
            };
            match s.delayed.front() {
                Some((due, _, _)) if *due <= now => {
                    let Some((_, bytes, close)) = s.delayed.pop_front() else {
                        break;
                    };
                    self.send(conn, bytes);
                    if close {
                        return self.stream_error(
                            conn,
                            "policy-violation",
                            "too many authentication failures",
                        );
                    }
                }
                _ => break,
            }
        }
        // An attempt that waited for the throttle gets its turn.
        let held = self
            .sessions
            .get_mut(&conn)
            .and_then(|s| s.auth_hold.take_if(|(due, _)| *due <= now));
        if let Some((_, el)) = held {
            self.on_auth(conn, &el, state);
        }
        // Input held meanwhile may be read on.
        self.ready.insert(conn);
        let cfg = &self.cfg;
        let (handshake_ms, stanza_ms, keepalive_ms) = (
            cfg.handshake_timeout_ms,
            cfg.stanza_timeout_ms,
            cfg.keepalive_ms,
        );
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if !s.is_bound() && now >= s.opened_ms + handshake_ms {
            log::info!("c2s {conn}: handshake not completed in time");
            return self.stream_error(
                conn,
                "connection-timeout",
                "the stream was not negotiated in time",
            );
        }
        if s.partial_since.is_some_and(|t| now >= t + stanza_ms) {
            log::info!("c2s {conn}: stanza not completed in time");
            return self.stream_error(conn, "connection-timeout", "a stanza was left unfinished");
        }
        if s.is_bound() && now >= s.keepalive_due {
            let Some(s) = self.sessions.get_mut(&conn) else {
                return;
            };
            s.keepalive_due = now + keepalive_ms;
            // With stream management the keepalive asks for an answer: a
            // request written out and left unanswered a whole interval means
            // the connection is gone, whatever TCP says (a phone off the
            // network). One still waiting behind output on a slow link is
            // given time.
            let busy = s.output.in_flight() > 0;
            let Some(sm) = s.sm.as_mut() else {
                return self.send(conn, b" ".to_vec());
            };
            match sm.ack_requested {
                Some(asked) if now >= asked + keepalive_ms && !busy => {
                    log::info!("c2s {conn}: no answer to an ack request; the connection is gone");
                    let transport = s.transport;
                    self.out.push(ClientOutput::Close { conn: transport });
                    self.connection_lost(conn);
                }
                Some(_) => {}
                None => {
                    sm.ack_requested = Some(now);
                    self.send_nonza(conn, format!("<r xmlns='{}'/>", sm::NS));
                }
            }
        }
    }
}

impl Clients {
    // ---- stream management (XEP-0198) ---------------------------------------

    /// An element of stream management from a bound session.
    fn on_stream_management(&mut self, conn: ConnId, el: &Element) {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return;
        };
        match (el.name.as_str(), s.sm.as_mut()) {
            ("enable", None) => self.enable(conn, el),
            ("r", Some(sm)) => {
                let answer = format!("<a xmlns='{}' h='{}'/>", sm::NS, sm.handled);
                self.send_nonza(conn, answer);
            }
            ("a", Some(sm)) => {
                let h = el.get_attr("h").and_then(|h| h.parse::<u32>().ok());
                match h.map(|h| sm.acknowledged(h)) {
                    Some(Ok(acked)) => {
                        self.acknowledged(conn, acked);
                        // What waited for acknowledgements may go now.
                        self.release_output(conn);
                    }
                    Some(Err(sm::HandledTooHigh)) => self.stream_error(
                        conn,
                        "undefined-condition",
                        "acknowledged more stanzas than were sent",
                    ),
                    None => self.stream_error(conn, "invalid-xml", "an <a/> needs a number h"),
                }
            }
            ("enable" | "resume", _) => self.send_sm_failed(conn, "unexpected-request"),
            // An <r/> or <a/> before enabling, or an element XEP-0198 has not.
            _ => self.stream_error(conn, "unsupported-stanza-type", ""),
        }
    }

    fn acknowledged(&mut self, conn: ConnId, acked: sm::Acked) {
        self.unacked_bytes -= acked.freed;
        if !acked.completions.is_empty() {
            self.notices.push_back(FromClient::Delivered {
                conn,
                done: acked.completions,
            });
        }
    }

    fn enable(&mut self, conn: ConnId, el: &Element) {
        let wants_resume = matches!(el.get_attr("resume"), Some("true" | "1"));
        let resume = wants_resume && self.cfg.resume_timeout_ms > 0;
        let id = resume.then(|| self.random_id());
        let mut enabled = format!("<enabled xmlns='{}'", sm::NS);
        if let Some(id) = &id {
            self.resumable.insert(id.clone(), conn);
            let max = self.cfg.resume_timeout_ms / 1000;
            enabled.push_str(&format!(" id='{id}' resume='true' max='{max}'"));
        }
        enabled.push_str("/>");
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.sm = Some(Box::new(sm::StreamManagement::new(id)));
        }
        self.send_nonza(conn, enabled);
    }

    fn send_sm_failed(&mut self, conn: ConnId, condition: &str) {
        let failed = format!(
            "<failed xmlns='{}'><{condition} xmlns='{}'/></failed>",
            sm::NS,
            ns::STANZA_ERRORS
        );
        self.send(conn, failed.into_bytes());
    }

    /// `<resume/>` on the authenticated (not bound) stream `conn` of
    /// `user`: the session it names continues on this connection, the
    /// stanzas the client did not acknowledge sent again, in order. The
    /// router hears nothing: to it, and to everyone else, the session
    /// never left (its presence, its rooms).
    fn resume(&mut self, conn: ConnId, user: &str, el: &Element) {
        let previd = el.get_attr("previd").unwrap_or("");
        let h = el.get_attr("h").and_then(|h| h.parse::<u32>().ok());
        let old = self.resumable.get(previd).copied().filter(|old| {
            self.sessions
                .get(old)
                .is_some_and(|s| s.user() == Some(user) && s.is_resumable())
        });
        let (Some(old), Some(h)) = (old, h) else {
            return self.send_sm_failed(conn, "item-not-found");
        };
        let acked = self
            .sessions
            .get_mut(&old)
            .and_then(|s| s.sm.as_mut())
            .map(|sm| sm.acknowledged(h));
        match acked {
            Some(Ok(acked)) => self.acknowledged(old, acked),
            _ => {
                // The client counts more than it was sent: it is confused
                // about this session; it starts a new one.
                return self.send_sm_failed(conn, "unexpected-request");
            }
        }
        let (Some(mut new), Some(mut prev)) =
            (self.sessions.remove(&conn), self.sessions.remove(&old))
        else {
            return;
        };
        if !prev.is_detached() {
            // Its connection is still open (a dead one not noticed yet):
            // closed, told why.
            let bytes = stanza::stream_error("conflict", "the session was resumed elsewhere");
            self.out.push(ClientOutput::Send {
                conn: prev.transport,
                bytes: bytes.into(),
            });
            self.out.push(ClientOutput::Close {
                conn: prev.transport,
            });
            self.buffered_input -= std::mem::take(&mut prev.counted_input);
            self.by_transport.remove(&prev.transport);
        }
        // The new connection carries the old session: its stage, its
        // counters and queue, the presences held for it.
        new.stage = std::mem::replace(&mut prev.stage, Stage::Connected);
        new.sm = prev.sm.take();
        new.held = prev.held.take();
        new.keepalive_due = self.now + self.cfg.keepalive_ms;
        // Its timers were armed under the connection's own number.
        new.timer_armed = None;
        let Some(sm) = new.sm.as_mut() else {
            return;
        };
        sm.detached_since = None;
        sm.waited_before_ms = 0;
        sm.ack_requested = None;
        let resumed = format!(
            "<resumed xmlns='{}' h='{}' previd='{}'/>",
            sm::NS,
            sm.handled,
            crate::xml::escape(previd)
        );
        let again: Vec<sm::Unacked> = sm.unacked().cloned().collect();
        let offline_upto = again
            .iter()
            .filter_map(|u| {
                u.done
                    .as_ref()
                    .map(|Completion::OfflineWritten { upto, .. }| *upto)
            })
            .max();
        let resent = again.len();
        self.ready.remove(&conn);
        if conn != old {
            self.by_transport.insert(conn, old);
        }
        self.sessions.insert(old, new);
        if let Some(s) = self.sessions.get_mut(&old) {
            for u in again {
                // Paced: a whole queue may exceed what live traffic may
                // hold; it is what the client reads first either way.
                let _ = s.output.push_kind(u.bytes, true, u.done, Kind::Resent);
            }
        }
        // Ahead of the stanzas sent again.
        self.send_nonza(old, resumed);
        self.ready.insert(old);
        self.arm_timer(old);
        self.notices.push_back(FromClient::Resumed {
            conn: old,
            offline_upto,
        });
        log::debug!("c2s {old}: resumed on connection {conn}, {resent} stanzas sent again");
    }

    /// The session's connection is gone (closed, or not reading): a
    /// resumable session waits for its client without it; any other ends.
    fn connection_lost(&mut self, conn: ConnId) {
        let Some(s) = self.sessions.get(&conn) else {
            return;
        };
        if !s.is_resumable() || s.closing {
            return self.end_session(conn);
        }
        let over = self.detach(conn);
        self.notices.push_back(FromClient::Detached { conn });
        log::debug!("c2s {conn}: connection lost; the session waits to be resumed");
        if over {
            self.end_session(conn);
        }
    }

    /// The resumable session `conn` has no connection from now on: what it
    /// was to be sent is numbered for its resumption. Whether it now holds
    /// more than a session may.
    fn detach(&mut self, conn: ConnId) -> bool {
        let Some(s) = self.sessions.get_mut(&conn) else {
            return false;
        };
        let Some(sm) = s.sm.as_mut() else {
            return false;
        };
        sm.detached_since = Some(self.now);
        sm.ack_requested = None;
        // What was handed to the old connection is in the queue already;
        // what waited to be is added, but offline messages (still stored:
        // another session may be handed them) and what was already queued
        // (sent again after a resumption).
        for r in s.output.take_waiting() {
            if r.kind == Kind::Stanzas && r.done.is_none() {
                self.unacked_bytes += number(sm, &r.bytes, None);
            }
        }
        let over = sm.over_bounds();
        s.output = output::Output::default();
        s.drop_held();
        s.framer.reset();
        s.partial_since = None;
        s.not_reading = false;
        self.buffered_input -= std::mem::take(&mut s.counted_input);
        let transport = s.transport;
        self.by_transport.remove(&transport);
        self.ready.remove(&conn);
        self.arm_timer(conn);
        over
    }

    /// Past [`MAX_UNACKED_TOTAL`]: detached sessions end, the longest
    /// detached first, then the sessions holding the most.
    fn keep_unacked_within_total(&mut self) {
        while self.unacked_bytes > MAX_UNACKED_TOTAL {
            let holder = |s: &Session| {
                let sm = s.sm.as_ref()?;
                let waiting = sm.detached_since.map_or(0, |t| u64::MAX - t);
                Some((waiting, sm.unacked_bytes()))
            };
            let Some((conn, _)) = self
                .sessions
                .iter()
                .filter_map(|(c, s)| holder(s).map(|h| (*c, h)))
                .max_by_key(|(c, h)| (*h, Reverse(*c)))
            else {
                return;
            };
            log::warn!(
                "c2s {conn}: stanzas not acknowledged exceed {MAX_UNACKED_TOTAL} bytes for all sessions; ending this one"
            );
            self.stream_error(
                conn,
                "resource-constraint",
                "the server holds too much for its clients",
            );
        }
    }
}

/// Whether rosters or rooms still name `jid` (a deleted account's).
fn still_referenced(state: &State, jid: &str) -> bool {
    let in_rosters = state
        .accounts
        .values()
        .any(|a| a.roster.contains_key(jid) || a.preapproved.contains(jid));
    let rooms = state.rooms.values();
    let replicas = state.mirrors.values().map(|m| &m.state);
    in_rosters
        || rooms
            .chain(replicas)
            .any(|r| r.affiliations.contains_key(jid))
}

/// Number the stanzas of `bytes` as sent (the last carries `done`);
/// returns their bytes.
fn number(sm: &mut sm::StreamManagement, bytes: &Payload, done: Option<Completion>) -> usize {
    let stanzas = sm::split(bytes);
    let n = stanzas.len();
    let mut total = 0;
    for (i, stanza) in stanzas.into_iter().enumerate() {
        total += stanza.len();
        sm.sent(stanza, done.clone().filter(|_| i + 1 == n));
    }
    total
}

fn restart_stream(s: &mut Session) {
    s.framer.reset();
    s.header = None;
    s.header_sent = false;
    s.partial_since = None;
}
