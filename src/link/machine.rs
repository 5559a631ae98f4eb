//! The link machine: every link connection, the dial schedule, the grace
//! periods, and the durable queues (`LinkStore`, handed in by the node).
//! It takes bytes, events to send and the time; it gives out bytes,
//! records to persist, dials, and what the peers said (`poll`), one
//! element at a time so the node applies each before the next is read.

use super::conn::{parse_element, Incoming, LinkConn};
use super::event::DMUC;
use super::LinkStatus;
use super::{LinkCounters, MAX_LINK_FRAME, RELAYS_PER_SENDER, RELAY_BYTES_PER_SENDER};
use crate::common::{pop_due, take_due, ConnId, PeerId};
use crate::jid::Jid;
use crate::model::event::LinkEvent;
use crate::settings::LinkConfig;
use crate::state::{apply_link, LinkStore, Queued, QueuedEvent, Record};
use crate::xml::{ns, parse_header, Element, Limits};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// A received event is acknowledged at once after this many.
const ACK_EVERY: u32 = 32;

/// What the machine asks of the node.
#[derive(Debug)]
pub enum LinkOutput {
    Send {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Close {
        conn: ConnId,
    },
    Dial {
        peer: PeerId,
    },
    Persist(Box<Record>),
    /// The connection serving `peer` is gone.
    Down {
        peer: PeerId,
    },
    /// `peer`'s link stayed down past the grace period: its occupants are
    /// to be shown as gone.
    GraceExpired {
        peer: PeerId,
    },
}

/// What a peer said that the rest of the node acts on (see `poll`).
#[derive(Debug)]
pub enum FromPeer {
    /// An event to apply. A numbered one (`seq`) is confirmed with
    /// `applied` once applied (it is then recorded and acknowledged); one
    /// that could not be decoded is confirmed too (refused, not retried).
    Event {
        peer: PeerId,
        seq: Option<u64>,
        event: Box<Result<LinkEvent, String>>,
    },
    /// The peer said hello on a new connection.
    Hello {
        peer: PeerId,
        /// The peer restarted since we last heard from it (a new epoch).
        restarted: bool,
        /// It asks us to announce our occupants again.
        forgot: bool,
        /// We had shown its occupants as gone (the grace period ran out).
        was_detached: bool,
    },
    /// The peer dropped events we never got: resynchronise.
    Skipped { peer: PeerId },
}

pub struct Links {
    cfg: LinkConfig,
    /// This node's domain (announced in our stream header) and MUC
    /// service (rooms in a site's events are ours).
    domain: String,
    muc_service: String,
    /// Random per start: a peer that sees it change knows this node forgot
    /// its live state (who is in which room) and must re-announce.
    epoch: String,
    conns: HashMap<ConnId, LinkConn>,
    of_peer: HashMap<PeerId, ConnId>,
    /// When each upstream is to be dialed next, and its current backoff.
    dial_due: BTreeMap<PeerId, u64>,
    dial_backoff: HashMap<PeerId, u64>,
    traffic: HashMap<PeerId, LinkCounters>,
    /// The epoch each peer announced last.
    peer_epochs: HashMap<PeerId, String>,
    /// When the grace period of a peer whose link is down runs out.
    grace_due: BTreeMap<PeerId, u64>,
    /// Peers whose occupants we showed as gone (the grace period ran out);
    /// cleared once the other side has resynchronised.
    detached: BTreeSet<PeerId>,
    timers: BinaryHeap<Reverse<(u64, ConnId)>>,
    limits: Limits,
    /// For the redial jitter (seeded by the node: deterministic in tests).
    rng: ChaCha20Rng,
}

impl Links {
    /// Random per start (kept across a stop that kept sessions): what this
    /// node tells its peers in its hello.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn new(
        cfg: LinkConfig,
        domain: &str,
        muc_service: &str,
        limits: Limits,
        epoch: String,
        seed: [u8; 32],
    ) -> Links {
        let dial_due = cfg
            .upstreams
            .iter()
            .map(|u| (PeerId::new(u.clone()), 0))
            .collect();
        Links {
            cfg,
            domain: domain.to_string(),
            muc_service: muc_service.to_string(),
            epoch,
            conns: HashMap::new(),
            of_peer: HashMap::new(),
            dial_due,
            dial_backoff: HashMap::new(),
            traffic: HashMap::new(),
            peer_epochs: HashMap::new(),
            grace_due: BTreeMap::new(),
            detached: BTreeSet::new(),
            timers: BinaryHeap::new(),
            limits,
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// New settings (the grace period; parser limits and per-link timing
    /// for new connections).
    pub fn reconfigure(&mut self, cfg: LinkConfig, limits: Limits) {
        self.cfg = cfg;
        self.limits = limits;
    }

    pub fn is_upstream(&self, peer: &str) -> bool {
        self.cfg.upstreams.iter().any(|u| u == peer)
    }

    pub fn is_site(&self, peer: &str) -> bool {
        self.cfg.peers.iter().any(|p| p == peer)
    }

    /// The peer that serves `domain`, if any: a site whose users these
    /// are, or the upstream whose MUC service this is.
    pub fn peer_for_domain(&self, domain: &str) -> Option<PeerId> {
        (self.is_site(domain) || self.is_upstream(domain)).then(|| PeerId::new(domain))
    }

    /// Whether the link that reaches `domain` is up.
    pub fn is_up_for(&self, domain: &str, store: &LinkStore) -> bool {
        self.route_for(domain, store)
            .is_some_and(|p| self.is_up(&p))
    }

    /// Whether `sender` (a bare JID) may queue `bytes` more of one-to-one
    /// traffic for the link that reaches `domain`: within its share
    /// (`RELAYS_PER_SENDER`, `RELAY_BYTES_PER_SENDER`) and without pushing
    /// older events out of the queue (what a user sends is refused, never
    /// dropped later).
    pub fn relay_fits(
        &self,
        domain: &str,
        sender: Option<&Jid>,
        bytes: u64,
        store: &LinkStore,
    ) -> bool {
        let Some(peer) = self.route_for(domain, store) else {
            return false;
        };
        let Some(l) = store.get(&peer) else {
            return true;
        };
        if l.unacked.len() >= self.cfg.max_unacked
            || l.unacked_bytes + bytes > self.cfg.max_unacked_bytes
        {
            return false;
        }
        let Some(sender) = sender else {
            return true; // Not held to a share.
        };
        let (mut count, mut total) = (0usize, 0u64);
        for q in &l.unacked {
            if let QueuedEvent::Typed(ev) = &q.event {
                if let LinkEvent::Relay { from, .. } = ev.as_ref() {
                    if from.to_bare() == *sender {
                        count += 1;
                        total += q.bytes;
                    }
                }
            }
        }
        count < RELAYS_PER_SENDER && total + bytes <= RELAY_BYTES_PER_SENDER
    }

    /// The peer whose link reaches `domain`: a site or upstream of that
    /// name, or an upstream that said it reaches it.
    pub fn route_for(&self, domain: &str, store: &LinkStore) -> Option<PeerId> {
        self.peer_for_domain(domain).or_else(|| {
            store
                .iter()
                .find(|(peer, l)| self.is_upstream(peer) && l.routes.iter().any(|d| d == domain))
                .map(|(peer, _)| peer.clone())
        })
    }

    pub fn is_link(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// A link to `peer` is up and its hello has come.
    /// The shell wrote `n` bytes of a link's output.
    pub fn written(&mut self, conn: ConnId, n: usize) {
        if let Some(l) = self.conns.get_mut(&conn) {
            l.unwritten = l.unwritten.saturating_sub(n as u64);
        }
    }

    /// Bytes for `peer`'s link not written to its socket yet: handed to
    /// the shell, or still to be flushed this turn.
    pub fn unwritten(&self, peer: &PeerId) -> u64 {
        self.of_peer
            .get(peer)
            .and_then(|c| self.conns.get(c))
            .map_or(0, |l| l.unwritten + l.buffered() as u64)
    }

    pub fn is_up(&self, peer: &str) -> bool {
        self.of_peer
            .get(peer)
            .is_some_and(|c| self.conns[c].is_established())
    }

    /// Whether the connection to `peer` holds a compressor and an inflater.
    pub fn compression_held(&self, peer: &str) -> Option<(bool, bool)> {
        let conn = self.of_peer.get(peer)?;
        Some(self.conns[conn].holds_compression_state())
    }

    /// Whether we showed `peer`'s occupants as gone and it has not
    /// resynchronised since.
    pub fn is_detached(&self, peer: &str) -> bool {
        self.detached.contains(peer)
    }

    /// Started on the epoch of the run before (it kept sessions), but
    /// without the sites' occupants of the rooms mastered here: each site
    /// is told to announce them again, as after a split past the grace
    /// period.
    pub fn forgot_sites(&mut self) {
        for peer in &self.cfg.peers {
            self.detached.insert(PeerId::new(peer.clone()));
        }
    }

    /// `peer` resynchronised: its occupants are shown again.
    pub fn reattached(&mut self, peer: &PeerId) {
        self.detached.remove(peer);
    }

    /// Bytes a site's mirrors delivered to local sessions from `peer`'s rooms.
    pub fn count_fanout(&mut self, peer: &PeerId, bytes: usize) {
        self.traffic.entry(peer.clone()).or_default().fanout_bytes += bytes as u64;
    }

    /// Whether the node should read `conn` on (not while compressed input
    /// waits for the next turn).
    pub fn accepts_input(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_none_or(|l| !l.inflate_behind)
    }

    fn commit(store: &mut LinkStore, out: &mut Vec<LinkOutput>, record: Record) {
        apply_link(store, &record);
        out.push(LinkOutput::Persist(Box::new(record)));
    }

    fn write(&mut self, now: u64, conn: ConnId, bytes: &[u8]) {
        if let Some(l) = self.conns.get_mut(&conn) {
            l.write(now, bytes);
        }
    }

    // ---- connections ----------------------------------------------------

    /// A link connection to `peer` is up (TLS done, the peer's key checked).
    pub fn up(
        &mut self,
        now: u64,
        conn: ConnId,
        peer: PeerId,
        store: &LinkStore,
        out: &mut Vec<LinkOutput>,
    ) {
        if !self.is_upstream(&peer) && !self.is_site(&peer) {
            log::warn!("link {conn}: {peer} is not a configured peer; closing");
            return out.push(LinkOutput::Close { conn });
        }
        if let Some(old) = self.of_peer.get(&peer).copied() {
            log::info!("link {peer}: a new connection replaces the old one");
            self.close(now, old, out);
        }
        let mut limits = self.limits;
        limits.max_stanza_bytes = MAX_LINK_FRAME;
        let timing = self.cfg.timing_for(&peer);
        self.conns
            .insert(conn, LinkConn::new(&peer, limits, now, timing));
        self.of_peer.insert(peer.clone(), conn);
        let received = store.get(&peer).map_or(0, |l| l.last_in);
        if self.cfg.compress {
            // `Z` first: everything after it, the stream header included, is DEFLATE.
            self.traffic.entry(peer.clone()).or_default().bytes_out += 1;
            out.push(LinkOutput::Send {
                conn,
                bytes: b"Z".to_vec(),
            });
            if let Some(l) = self.conns.get_mut(&conn) {
                l.start_deflate();
            }
        }
        let header = format!(
            "<stream:stream xmlns='{DMUC}' xmlns:stream='{}' from='{}'><hello received='{received}' epoch='{}' z-restart='1'{}/>",
            ns::STREAMS,
            crate::xml::escape(&self.domain),
            self.epoch,
            // Tell a site whose occupants we showed as gone to announce them again.
            if self.detached.contains(&peer) && self.is_site(&peer) { " forgot='1'" } else { "" }
        );
        self.write(now, conn, header.as_bytes());
        self.arm_timer(now, conn);
        log::info!("link {peer}: connected");
    }

    /// Bytes from a link connection: framed now, interpreted by `poll`.
    pub fn data(&mut self, now: u64, conn: ConnId, bytes: &[u8]) {
        let Some(l) = self.conns.get_mut(&conn) else {
            return;
        };
        l.last_rx = now;
        l.probed = false;
        self.traffic.entry(l.peer.clone()).or_default().bytes_in += bytes.len() as u64;
        l.receive(bytes);
        self.arm_timer(now, conn);
    }

    /// The connection went away.
    pub fn down(&mut self, now: u64, conn: ConnId, out: &mut Vec<LinkOutput>) {
        let Some(l) = self.conns.remove(&conn) else {
            return;
        };
        if self.of_peer.get(&l.peer) == Some(&conn) {
            self.of_peer.remove(&l.peer);
            log::info!("link {}: disconnected", l.peer);
            if !self.detached.contains(&l.peer) {
                let due = now + self.cfg.grace_ms;
                self.grace_due.entry(l.peer.clone()).or_insert(due);
            }
            if self.is_upstream(&l.peer) {
                self.schedule_dial(&l.peer, now);
            }
            out.push(LinkOutput::Down { peer: l.peer });
        }
    }

    /// Dialing `peer` failed: try again later.
    pub fn dial_failed(&mut self, now: u64, peer: &PeerId) {
        self.schedule_dial(peer, now);
    }

    /// Dial again later: doubling backoff with ±25 % jitter.
    fn schedule_dial(&mut self, peer: &PeerId, now: u64) {
        let (min, max) = (self.cfg.backoff_min_ms, self.cfg.backoff_max_ms);
        let backoff = self
            .dial_backoff
            .get(peer)
            .map_or(min, |b| (b * 2).min(max));
        self.dial_backoff.insert(peer.clone(), backoff);
        let jitter = self.rng.next_u64() % (backoff / 2 + 1);
        self.dial_due
            .insert(peer.clone(), now + backoff - backoff / 4 + jitter);
    }

    fn close(&mut self, now: u64, conn: ConnId, out: &mut Vec<LinkOutput>) {
        if self.conns.contains_key(&conn) {
            self.flush_one(conn, out);
            out.push(LinkOutput::Close { conn });
            self.down(now, conn, out);
        }
    }

    fn protocol_error(&mut self, now: u64, conn: ConnId, what: &str, out: &mut Vec<LinkOutput>) {
        let peer = self
            .conns
            .get(&conn)
            .map(|l| l.peer.clone())
            .unwrap_or_default();
        log::warn!("link {peer}: protocol error, closing: {what}");
        let error = crate::stanza::stream_error("undefined-condition", what);
        self.write(now, conn, &error);
        self.close(now, conn, out);
    }

    /// Hand out what every connection queued: one write, and one
    /// compressed block, per batch of events.
    pub fn flush(&mut self, out: &mut Vec<LinkOutput>) {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            self.flush_one(conn, out);
        }
    }

    fn flush_one(&mut self, conn: ConnId, out: &mut Vec<LinkOutput>) {
        let Some(l) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(bytes) = l.flush() {
            l.unwritten += bytes.len() as u64;
            self.traffic.entry(l.peer.clone()).or_default().bytes_out += bytes.len() as u64;
            out.push(LinkOutput::Send { conn, bytes });
        }
    }

    // ---- what the peers said ------------------------------------------------

    /// Interpret the next element a peer sent; link-level ones (acks,
    /// probes, headers) are handled here and the next one is taken, until
    /// one needs the rest of the node (or none is left).
    pub fn poll(
        &mut self,
        now: u64,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) -> Option<FromPeer> {
        loop {
            // The oldest connection first: the same order in every run.
            let conn = self
                .conns
                .iter()
                .filter(|(_, l)| !l.inbox.is_empty())
                .map(|(c, _)| *c)
                .min()?;
            let item = self.conns.get_mut(&conn)?.inbox.pop_front()?;
            if let Some(from) = self.interpret(now, conn, item, store, out) {
                return Some(from);
            }
        }
    }

    fn interpret(
        &mut self,
        now: u64,
        conn: ConnId,
        item: Incoming,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) -> Option<FromPeer> {
        match item {
            Incoming::Error(what) => self.protocol_error(now, conn, &what, out),
            Incoming::Close => self.close(now, conn, out),
            Incoming::Header(raw) => match parse_header(&raw) {
                Ok(h) if h.ns == ns::STREAMS && h.default_ns == DMUC => {
                    let is_site = self.is_site(&self.conns.get(&conn)?.peer);
                    let l = self.conns.get_mut(&conn)?;
                    if is_site && h.attr("from") != Some(l.peer.as_str()) {
                        let what =
                            format!("stream from {:?} on the link of {}", h.attr("from"), l.peer);
                        self.protocol_error(now, conn, &what, out);
                    } else {
                        l.header = Some(h);
                    }
                }
                _ => self.protocol_error(now, conn, "not a DMUC stream header", out),
            },
            Incoming::Element(raw) => {
                let l = self.conns.get(&conn)?;
                let Some(header) = l.header.as_ref() else {
                    self.protocol_error(now, conn, "element before the stream header", out);
                    return None;
                };
                match parse_element(header, &raw) {
                    Ok(el) => return self.on_element(now, conn, el, store, out),
                    Err(e) => self.protocol_error(now, conn, &e, out),
                }
            }
        }
        None
    }

    fn on_element(
        &mut self,
        now: u64,
        conn: ConnId,
        el: Element,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) -> Option<FromPeer> {
        let peer = self.conns.get(&conn)?.peer.clone();
        if el.ns != DMUC {
            let what = format!("element <{}> in namespace {}", el.name, el.ns);
            self.protocol_error(now, conn, &what, out);
            return None;
        }
        let number = |a: &str| el.get_attr(a).and_then(|v| v.parse::<u64>().ok());
        match el.name.as_str() {
            "hello" => {
                let Some(received) = number("received") else {
                    self.protocol_error(now, conn, "hello without 'received'", out);
                    return None;
                };
                let sent = store.get(&peer).map_or(0, |l| l.next_out.saturating_sub(1));
                if received > sent {
                    let what = format!("peer claims event {received} but only {sent} were ever sent (data restored from an old backup?)");
                    self.protocol_error(now, conn, &what, out);
                    return None;
                }
                self.acknowledged(&peer, received, store, out);
                if let Some(l) = self.conns.get_mut(&conn) {
                    l.established = true;
                    l.peer_restarts = el.get_attr("z-restart") == Some("1");
                }
                // One probe at once, so the round trip is known from the start.
                self.send_probe(now, conn);
                let epoch = el.get_attr("epoch").unwrap_or("").to_string();
                self.dial_backoff.remove(&peer);
                // Events we dropped (queue cap) cannot be resent: say so.
                let l = store.get(&peer);
                let first_kept = l
                    .and_then(|l| l.unacked.front())
                    .map_or(sent + 1, |q| q.seq);
                if received + 1 < first_kept {
                    let to = first_kept - 1;
                    log::warn!(
                        "link {peer}: events {}..={to} were dropped here before the peer got them",
                        received + 1
                    );
                    self.write(now, conn, format!("<skip to='{to}'/>").as_bytes());
                }
                let resend: Vec<(u64, String)> = l
                    .map(|l| l.unacked.iter().map(|q| (q.seq, q.to_wire())).collect())
                    .unwrap_or_default();
                if !resend.is_empty() {
                    log::info!("link {peer}: resuming, resending {} events", resend.len());
                }
                for (seq, xml) in resend {
                    self.write(now, conn, format!("<e n='{seq}'>{xml}</e>").as_bytes());
                }
                self.grace_due.remove(&peer);
                let before = self.peer_epochs.insert(peer.clone(), epoch.clone());
                let restarted = before.is_some_and(|b| b != epoch);
                let forgot = el.get_attr("forgot") == Some("1");
                // An upstream that we showed as gone is resynchronised now; a
                // site is when it asks (its resync).
                let was_detached = self.is_upstream(&peer) && self.detached.remove(&peer);
                return Some(FromPeer::Hello {
                    peer,
                    restarted,
                    forgot,
                    was_detached,
                });
            }
            "e" => {
                let Some(seq) = number("n") else {
                    self.protocol_error(now, conn, "event without a number", out);
                    return None;
                };
                let last = store.get(&peer).map_or(0, |l| l.last_in);
                if seq <= last {
                    self.schedule_ack(now, conn, store); // A resend of something already applied.
                    return None;
                }
                if seq != last + 1 {
                    let what = format!("event {seq} after {last}: events were lost");
                    self.protocol_error(now, conn, &what, out);
                    return None;
                }
                let Some(event) = self.wrapped_event(&peer, &el) else {
                    self.protocol_error(now, conn, "empty event", out);
                    return None;
                };
                return Some(FromPeer::Event {
                    peer,
                    seq: Some(seq),
                    event: Box::new(event),
                });
            }
            "t" => {
                let Some(event) = self.wrapped_event(&peer, &el) else {
                    self.protocol_error(now, conn, "empty transient event", out);
                    return None;
                };
                match event {
                    Ok(ev) if ev.is_transient() => {
                        return Some(FromPeer::Event {
                            peer,
                            seq: None,
                            event: Box::new(Ok(ev)),
                        })
                    }
                    Ok(_) => {
                        log::warn!("link {peer}: refused a transient event that must be numbered")
                    }
                    Err(e) => log::warn!("link {peer}: refused a transient event: {e}"),
                }
            }
            "skip" => {
                // The peer dropped events we never got: accept the loss here and
                // fetch the room state again instead.
                let last = store.get(&peer).map_or(0, |l| l.last_in);
                let Some(to) = number("to").filter(|t| *t > last) else {
                    self.protocol_error(now, conn, "skip backwards", out);
                    return None;
                };
                log::warn!(
                    "link {peer}: the peer dropped events {}..={to}; resynchronising",
                    last + 1
                );
                let record = Record::LinkIn {
                    peer: peer.clone(),
                    seq: to,
                };
                Self::commit(store, out, record);
                if self.is_upstream(&peer) {
                    return Some(FromPeer::Skipped { peer });
                }
            }
            "r" => self.send_ack(now, conn, store),
            "a" => {
                let Some(h) = number("h") else {
                    self.protocol_error(now, conn, "ack without 'h'", out);
                    return None;
                };
                let l = store.get(&peer);
                let sent = l.map_or(0, |l| l.next_out.saturating_sub(1));
                let acked = l
                    .and_then(|l| l.unacked.front())
                    .map_or(sent, |q| q.seq - 1);
                if h > sent || h < acked {
                    let what = format!("ack {h} outside the window {acked}..={sent}");
                    self.protocol_error(now, conn, &what, out);
                    return None;
                }
                self.acknowledged(&peer, h, store, out);
                if let Some(sent) = self.conns.get_mut(&conn).and_then(|l| l.probe_sent.take()) {
                    self.traffic.entry(peer).or_default().rtt_ms = Some(now - sent);
                }
            }
            other => {
                let what = format!("unknown element <{other}/>");
                self.protocol_error(now, conn, &what, out);
            }
        }
        None
    }

    /// The node applied `peer`'s event `seq`: record it and acknowledge it.
    pub fn applied(
        &mut self,
        now: u64,
        peer: &PeerId,
        seq: u64,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) {
        let record = Record::LinkIn {
            peer: peer.clone(),
            seq,
        };
        Self::commit(store, out, record);
        if let Some(&conn) = self.of_peer.get(peer) {
            self.schedule_ack(now, conn, store);
        }
    }

    /// The event inside `<e>` or `<t>`, decoded with the MUC service its
    /// rooms belong to (None: the wrapper is empty).
    fn wrapped_event(&self, peer: &PeerId, el: &Element) -> Option<Result<LinkEvent, String>> {
        let payload = el.elements().next()?;
        let service = if self.is_upstream(peer) {
            peer
        } else {
            self.muc_service.as_str()
        };
        Some(LinkEvent::decode(payload, service).map_err(|e| e.0))
    }

    fn acknowledged(
        &mut self,
        peer: &PeerId,
        upto: u64,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) {
        let pending = store
            .get(peer)
            .and_then(|l| l.unacked.front())
            .is_some_and(|q| q.seq <= upto);
        if pending {
            let record = Record::LinkAcked {
                peer: peer.clone(),
                upto,
            };
            Self::commit(store, out, record);
        }
    }

    fn send_probe(&mut self, now: u64, conn: ConnId) {
        if let Some(l) = self.conns.get_mut(&conn) {
            l.probe_sent = Some(now);
        }
        self.write(now, conn, b"<r/>");
    }

    fn schedule_ack(&mut self, now: u64, conn: ConnId, store: &LinkStore) {
        let delay = self.cfg.ack_delay_ms;
        let Some(l) = self.conns.get_mut(&conn) else {
            return;
        };
        l.unacked_in += 1;
        if l.unacked_in >= ACK_EVERY {
            self.send_ack(now, conn, store);
        } else if l.ack_due.is_none() {
            l.ack_due = Some(now + delay);
            self.arm_timer(now, conn);
        }
    }

    fn send_ack(&mut self, now: u64, conn: ConnId, store: &LinkStore) {
        let Some(l) = self.conns.get_mut(&conn) else {
            return;
        };
        l.unacked_in = 0;
        l.ack_due = None;
        let h = store.get(&l.peer).map_or(0, |s| s.last_in);
        self.write(now, conn, format!("<a h='{h}'/>").as_bytes());
    }

    // ---- sending events -----------------------------------------------------

    /// Queue an event for `peer`: durable first, then sent if the link is up.
    pub fn send(
        &mut self,
        now: u64,
        peer: &PeerId,
        ev: &LinkEvent,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) {
        let xml = ev.encode().to_xml(DMUC);
        let seq = store.get(peer).map_or(1, |l| l.next_out.max(1));
        let mut drop = self.oldest_to_drop(peer, xml.len() as u64, store);
        if drop.is_some_and(|upto| Self::holds_relays(store, peer, upto)) {
            // Users' one-to-one stanzas were accepted: never dropped. While
            // the link is up they are on their way and the queue may run
            // over; while it is down a room event goes instead, and the
            // site, told at its next hello, resynchronises its rooms.
            if !self.is_up(peer) {
                self.detached.insert(peer.clone());
                return log::warn!(
                    "link {peer}: queue full of one-to-one traffic; a room event waits for a resync"
                );
            }
            drop = None;
        }
        if let Some(upto) = drop {
            log::warn!("link {peer}: too much unacknowledged; dropping events up to {upto}");
            let record = Record::LinkAcked {
                peer: peer.clone(),
                upto,
            };
            Self::commit(store, out, record);
        }
        let queued = Queued {
            seq,
            bytes: xml.len() as u64,
            event: QueuedEvent::Typed(Box::new(ev.clone())),
        };
        let record = Record::LinkQueued {
            peer: peer.clone(),
            queued: Box::new(queued),
        };
        Self::commit(store, out, record);
        if let Some(&conn) = self.of_peer.get(peer) {
            if self.conns[&conn].is_established() {
                self.write(now, conn, format!("<e n='{seq}'>{xml}</e>").as_bytes());
            }
        }
    }

    /// Whether a user's stanza waits among the events up to `upto`.
    fn holds_relays(store: &LinkStore, peer: &PeerId, upto: u64) -> bool {
        store.get(peer).is_some_and(|l| {
            l.unacked.iter().take_while(|q| q.seq <= upto).any(|q| {
                matches!(&q.event, QueuedEvent::Typed(ev) if matches!(ev.as_ref(), LinkEvent::Relay { from, .. } if from.local().is_some()))
            })
        })
    }

    /// Past the bounds on what waits for the peer's acknowledgement (count
    /// and bytes), the oldest events go to make room for one of `bytes`:
    /// the last sequence number to drop, if any. The peer hears of the gap
    /// (`<skip/>`) and resynchronises.
    fn oldest_to_drop(&self, peer: &PeerId, bytes: u64, store: &LinkStore) -> Option<u64> {
        let l = store.get(peer)?;
        let (mut count, mut total) = (l.unacked.len(), l.unacked_bytes);
        let mut upto = None;
        for q in &l.unacked {
            if count < self.cfg.max_unacked && total + bytes <= self.cfg.max_unacked_bytes {
                break;
            }
            count -= 1;
            total -= q.bytes;
            upto = Some(q.seq);
        }
        upto
    }

    /// Send an event now if the link is up, unnumbered (`<t>`): never queued,
    /// never resent, lost with the connection. For what is only worth
    /// having at once (chat states).
    pub fn send_transient(&mut self, now: u64, peer: &PeerId, ev: &LinkEvent) {
        if let Some(&conn) = self.of_peer.get(peer) {
            if let Some(l) = self.conns.get_mut(&conn).filter(|l| l.is_established()) {
                let xml = ev.encode().to_xml(DMUC);
                let bytes = format!("<t>{xml}</t>");
                match ev {
                    LinkEvent::FileWant { .. } => l.write_bulk(now, bytes.as_bytes()),
                    _ => l.write(now, bytes.as_bytes()),
                }
            }
        }
    }

    /// A stanza for a user at a linked node (`Relay`); false if no link
    /// serves that user's domain.
    pub fn relay(
        &mut self,
        now: u64,
        to: &Jid,
        el: &Element,
        store: &mut LinkStore,
        out: &mut Vec<LinkOutput>,
    ) -> bool {
        let Some((peer, ev)) = self.relay_event(to, el, store) else {
            return false;
        };
        self.send(now, &peer, &ev, store, out);
        true
    }

    /// `el` for `to` as a `Relay`, and the peer whose link reaches `to`.
    fn relay_event(
        &self,
        to: &Jid,
        el: &Element,
        store: &LinkStore,
    ) -> Option<(PeerId, LinkEvent)> {
        let peer = self.route_for(to.domain(), store)?;
        let from = el.get_attr("from").and_then(|f| Jid::parse(f).ok())?;
        // The event carries the addressing; the receiver puts it back.
        let mut stanza = el.clone();
        stanza.remove_attr("from");
        stanza.remove_attr("to");
        let ev = LinkEvent::Relay {
            from,
            to: to.clone(),
            stanza,
        };
        Some((peer, ev))
    }

    /// The same, unnumbered and only if the link is up (presence, chat
    /// states: stale after a split); false if not sent.
    pub fn relay_transient(&mut self, now: u64, to: &Jid, el: &Element, store: &LinkStore) -> bool {
        let Some((peer, ev)) = self.relay_event(to, el, store) else {
            return false;
        };
        if !self.is_up(&peer) {
            return false;
        }
        self.send_transient(now, &peer, &ev);
        true
    }

    // ---- time -------------------------------------------------------------

    fn arm_timer(&mut self, now: u64, conn: ConnId) {
        let Some(l) = self.conns.get_mut(&conn) else {
            return;
        };
        let deadline = l.next_deadline(now);
        if l.timer_armed.is_none_or(|armed| deadline < armed) {
            l.timer_armed = Some(deadline);
            self.timers.push(Reverse((deadline, conn)));
        }
    }

    /// The earliest time at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let dial = self.dial_due.values().min().copied();
        let grace = self.grace_due.values().min().copied();
        [timer, dial, grace].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: u64, store: &LinkStore, out: &mut Vec<LinkOutput>) {
        for (t, conn) in pop_due(&mut self.timers, now) {
            if let Some(l) = self.conns.get_mut(&conn) {
                if l.timer_armed == Some(t) {
                    l.timer_armed = None;
                }
                self.on_timer(now, conn, store, out);
            }
        }
        for peer in take_due(&mut self.dial_due, now) {
            if !self.of_peer.contains_key(&peer) {
                out.push(LinkOutput::Dial { peer });
            }
        }
        for peer in take_due(&mut self.grace_due, now) {
            if self.of_peer.contains_key(&peer) {
                continue; // Connected again (our hello is already on its way).
            }
            log::info!("link {peer}: down for longer than the grace period; its occupants are shown as gone");
            self.detached.insert(peer.clone());
            out.push(LinkOutput::GraceExpired { peer });
        }
    }

    fn on_timer(&mut self, now: u64, conn: ConnId, store: &LinkStore, out: &mut Vec<LinkOutput>) {
        let Some(l) = self.conns.get_mut(&conn) else {
            return;
        };
        if l.inflate_behind {
            l.inflate_pending();
        }
        // Before the probe, ack or keepalive below, which then need no compressor.
        if now >= l.deflate_used + super::conn::DEFLATE_IDLE_MS {
            l.release_deflate();
        }
        if now >= l.last_rx + l.dead_ms {
            log::warn!(
                "link {}: nothing heard for {} s; closing",
                l.peer,
                l.dead_ms / 1000
            );
            return self.close(now, conn, out);
        }
        if !l.probed && l.established && now >= l.last_rx + l.dead_ms / 2 {
            l.probed = true;
            self.send_probe(now, conn);
        }
        let Some(l) = self.conns.get(&conn) else {
            return;
        };
        if l.ack_due.is_some_and(|t| now >= t) {
            self.send_ack(now, conn, store);
        }
        if let Some(l) = self.conns.get(&conn) {
            if now >= l.last_tx + l.keepalive_ms {
                self.write(now, conn, b" ");
            }
        }
        self.arm_timer(now, conn);
    }

    // ---- status -------------------------------------------------------------

    pub fn status(&self, store: &LinkStore) -> Vec<LinkStatus> {
        let mut peers: Vec<PeerId> = self
            .cfg
            .upstreams
            .iter()
            .chain(&self.cfg.peers)
            .map(PeerId::new)
            .collect();
        peers.sort();
        peers
            .into_iter()
            .map(|peer| {
                let traffic = self.traffic.get(&peer).copied().unwrap_or_default();
                let state = store.get(&peer);
                LinkStatus {
                    connected: self.is_up(&peer),
                    bytes_in: traffic.bytes_in,
                    bytes_out: traffic.bytes_out,
                    rtt_ms: traffic.rtt_ms,
                    saved_bytes: traffic.fanout_bytes.saturating_sub(traffic.bytes_in),
                    unacked: state.map_or(0, |s| s.unacked.len()),
                    last_in: state.map_or(0, |s| s.last_in),
                    peer: peer.to_string(),
                }
            })
            .collect()
    }
}
