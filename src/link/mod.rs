//! Node-to-node links (the DMUC protocol): typed events between a master
//! and its mirroring sites, carried exactly once across reconnects and
//! restarts.
//!
//! Each side numbers the events it sends. An event is made durable (a
//! `LinkOut` record) before it is written, and stays queued until the peer
//! acknowledges it (`<a h='N'/>`, a `LinkAcked` record). A new connection
//! starts with `<hello received='N'/>`: the last event applied from the other
//! side, which then resends everything after N. Events at or below the
//! last applied number are recognised and skipped. See docs/protocol.md.

pub mod compress;
pub mod event;

use crate::jid::Jid;
use crate::node::{ConnId, Node};
use crate::state::Record;
use crate::xml::{ns, parse_header, parse_stanza, Element, Frame, Framer, StreamHeader};
use event::{LinkEvent, DMUC};

/// A received event is acknowledged at once after this many.
const ACK_EVERY: u32 = 32;
/// The largest link frame (an event with its wrapper) either side accepts.
/// Fixed, not configured: both ends of a link must agree on it, and every
/// event is bounded well below it (a snapshot: at most `max_users`
/// occupants of bounded presence, bounded affiliations, and history within
/// `snapshot_history_bytes`; a message: one stanza of at most 4 MiB).
pub const MAX_LINK_FRAME: usize = 32 * 1024 * 1024;
/// Inflated bytes a compressed link gets handled per turn; the rest waits
/// for the next turn (and the link is not read meanwhile), so a small input
/// that inflates hugely cannot hold up the rest of the node.
const INFLATE_PER_TURN: usize = 1024 * 1024;

impl LinkConn {
    pub(crate) fn is_established(&self) -> bool {
        self.established
    }
}

/// What `outpost links`, the console and the web page show of a peer's
/// traffic since this node started.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCounters {
    /// Link payload bytes (TLS overhead not included).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Round trip of the last answered `<r/>` probe.
    pub rtt_ms: Option<u64>,
    /// Bytes this site delivered to its own sessions from the peer's rooms.
    pub fanout_bytes: u64,
}

/// One connection carrying a link.
pub struct LinkConn {
    pub peer: String,
    framer: Framer,
    header: Option<StreamHeader>,
    /// The peer's `<hello/>` has arrived: events flow.
    established: bool,
    last_rx: u64,
    last_tx: u64,
    unacked_in: u32,
    ack_due: Option<u64>,
    keepalive_ms: u64,
    dead_ms: u64,
    /// Silent for half of `dead_ms`: we asked the peer for an ack (`<r/>`),
    /// so detection does not hang on the peer's keepalive interval.
    probed: bool,
    /// When the outstanding `<r/>` went out (its answer gives the round trip).
    probe_sent: Option<u64>,
    /// We opened the stream with `Z`: all we write after it is compressed.
    deflate: Option<compress::Deflater>,
    /// The peer opened with `Z`: all it sends after it is compressed.
    inflate: Option<compress::Inflater>,
    /// The peer's first byte has arrived (it says whether the stream is compressed).
    started: bool,
    /// Written since the last flush: one compressed block per batch of events.
    out: Vec<u8>,
    /// Compressed input not inflated yet (the turn's budget ran out).
    pending_in: Vec<u8>,
    /// More inflating is due next turn.
    pub(crate) inflate_behind: bool,
    pub(crate) timer_armed: Option<u64>,
}

impl Node {
    fn is_upstream(&self, peer: &str) -> bool {
        self.cfg.link.upstreams.iter().any(|u| u == peer)
    }

    fn is_site(&self, peer: &str) -> bool {
        self.cfg.link.peers.iter().any(|p| p == peer)
    }

    pub(crate) fn on_link_up(&mut self, conn: ConnId, peer: String) {
        if !self.is_upstream(&peer) && !self.is_site(&peer) {
            log::warn!("link {conn}: {peer} is not a configured peer; closing");
            return self.push_action(crate::node::Action::Close { conn });
        }
        if let Some(old) = self.link_of_peer.get(&peer).copied() {
            log::info!("link {peer}: a new connection replaces the old one");
            self.close_link(old);
        }
        let now = self.now.mono_ms;
        let (keepalive_ms, dead_ms) = self.cfg.link.timing_for(&peer);
        let mut limits = self.cfg.limits;
        limits.max_stanza_bytes = MAX_LINK_FRAME;
        self.links.insert(
            conn,
            LinkConn {
                peer: peer.clone(),
                framer: Framer::new(limits),
                header: None,
                established: false,
                last_rx: now,
                probed: false,
                probe_sent: None,
                deflate: None,
                inflate: None,
                started: false,
                out: Vec::new(),
                pending_in: Vec::new(),
                inflate_behind: false,
                last_tx: now,
                unacked_in: 0,
                ack_due: None,
                keepalive_ms,
                dead_ms,
                timer_armed: None,
            },
        );
        self.link_of_peer.insert(peer.clone(), conn);
        let received = self.state.links.get(&peer).map_or(0, |l| l.last_in);
        if self.cfg.link.compress {
            // `Z` first: everything after it, the stream header included, is DEFLATE.
            self.link_traffic.entry(peer.clone()).or_default().bytes_out += 1;
            self.send(conn, b"Z".to_vec());
            self.links.get_mut(&conn).expect("link").deflate = Some(compress::Deflater::new());
        }
        let header = format!(
            "<stream:stream xmlns='{DMUC}' xmlns:stream='{}' from='{}'><hello received='{received}' epoch='{}'{}/>",
            ns::STREAMS,
            crate::xml::escape(&self.cfg.domain),
            self.epoch,
            // Tell a site whose occupants we showed as gone to announce them again.
            if self.detached.contains(&peer) && self.is_site(&peer) { " forgot='1'" } else { "" }
        );
        self.link_write(conn, header.into_bytes());
        self.arm_link_timer(conn);
        log::info!("link {peer}: connected");
    }

    /// Queue link output; `flush_links` sends it (compressed, if so agreed).
    fn link_write(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if let Some(l) = self.links.get_mut(&conn) {
            l.last_tx = self.now.mono_ms;
            l.out.extend_from_slice(&bytes);
        }
    }

    /// Send what every link queued: one write, and one compressed block, per
    /// batch of events (a resync's events share one block's code tables).
    pub(crate) fn flush_links(&mut self) {
        let pending: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| !l.out.is_empty())
            .map(|(c, _)| *c)
            .collect();
        for conn in pending {
            self.flush_link(conn);
        }
    }

    fn flush_link(&mut self, conn: ConnId) {
        if let Some(l) = self.links.get_mut(&conn) {
            let plain = std::mem::take(&mut l.out);
            if plain.is_empty() {
                return;
            }
            let bytes = match l.deflate.as_mut() {
                Some(d) => d.compress(&plain),
                None => plain,
            };
            self.link_traffic
                .entry(l.peer.clone())
                .or_default()
                .bytes_out += bytes.len() as u64;
            self.send(conn, bytes);
        }
    }

    pub(crate) fn on_link_data(&mut self, conn: ConnId, bytes: &[u8]) {
        let now = self.now.mono_ms;
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        l.last_rx = now;
        l.probed = false;
        self.link_traffic
            .entry(l.peer.clone())
            .or_default()
            .bytes_in += bytes.len() as u64;
        let mut rest = bytes;
        if !l.started && !rest.is_empty() {
            l.started = true;
            if rest[0] == b'Z' {
                l.inflate = Some(compress::Inflater::new());
                rest = &rest[1..];
            }
        }
        if l.inflate.is_none() {
            if self.link_frames(conn, rest) {
                self.arm_link_timer(conn);
            }
            return;
        }
        l.pending_in.extend_from_slice(rest);
        self.inflate_pending(conn);
    }

    /// Inflate and handle a compressed link's input, a piece at a time (a
    /// small input that expands a lot never sits in memory whole, and the
    /// framer's limits apply as usual) and at most `INFLATE_PER_TURN` per
    /// turn: the rest goes on at the next turn.
    fn inflate_pending(&mut self, conn: ConnId) {
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        l.inflate_behind = false;
        let input = std::mem::take(&mut l.pending_in);
        let mut rest = &input[..];
        let mut plain = vec![0u8; compress::INFLATE_CHUNK];
        let mut produced = 0;
        loop {
            let Some(inflater) = self.links.get_mut(&conn).and_then(|l| l.inflate.as_mut()) else {
                return;
            };
            let (used, n) = match inflater.step(rest, &mut plain) {
                Ok(x) => x,
                Err(e) => return self.link_protocol_error(conn, &e),
            };
            rest = &rest[used..];
            if used == 0 && n == 0 {
                break;
            }
            if !self.link_frames(conn, &plain[..n]) {
                return;
            }
            produced += n;
            if produced >= INFLATE_PER_TURN {
                if let Some(l) = self.links.get_mut(&conn) {
                    l.pending_in = rest.to_vec();
                    l.inflate_behind = true;
                }
                break;
            }
        }
        self.arm_link_timer(conn);
    }

    /// Frame and handle link bytes in the clear; false if the link was closed.
    fn link_frames(&mut self, conn: ConnId, mut rest: &[u8]) -> bool {
        while !rest.is_empty() {
            let Some(l) = self.links.get_mut(&conn) else {
                return false;
            };
            match l.framer.next_frame(rest) {
                Ok((used, frame)) => {
                    rest = &rest[used..];
                    if let Some(frame) = frame {
                        self.on_link_frame(conn, frame);
                    }
                }
                Err(e) => {
                    self.link_protocol_error(conn, &format!("{}: {}", e.condition(), e.text()));
                    return false;
                }
            }
        }
        self.links.contains_key(&conn)
    }

    fn on_link_frame(&mut self, conn: ConnId, frame: Frame) {
        match frame {
            Frame::StreamOpen(raw) => match parse_header(&raw) {
                Ok(h) if h.ns == ns::STREAMS && h.default_ns == DMUC => {
                    let l = self.links.get_mut(&conn).expect("link");
                    if self.cfg.link.peers.contains(&l.peer)
                        && h.attr("from") != Some(l.peer.as_str())
                    {
                        let peer = l.peer.clone();
                        return self.link_protocol_error(
                            conn,
                            &format!("stream from {:?} on the link of {peer}", h.attr("from")),
                        );
                    }
                    self.links.get_mut(&conn).expect("link").header = Some(h);
                }
                _ => self.link_protocol_error(conn, "not a DMUC stream header"),
            },
            Frame::StreamClose => self.close_link(conn),
            Frame::Stanza(raw) => {
                let Some(header) = self.links.get(&conn).and_then(|l| l.header.as_ref()) else {
                    return self.link_protocol_error(conn, "element before the stream header");
                };
                match parse_stanza(header, &raw) {
                    Ok(el) => self.on_link_element(conn, el),
                    Err(e) => self.link_protocol_error(conn, &format!("{e:?}")),
                }
            }
        }
    }

    fn on_link_element(&mut self, conn: ConnId, el: Element) {
        let peer = self.links[&conn].peer.clone();
        if el.ns != DMUC {
            return self.link_protocol_error(
                conn,
                &format!("element <{}> in namespace {}", el.name, el.ns),
            );
        }
        let number = |a: &str| el.get_attr(a).and_then(|v| v.parse::<u64>().ok());
        match el.name.as_str() {
            "hello" => {
                let Some(received) = number("received") else {
                    return self.link_protocol_error(conn, "hello without 'received'");
                };
                let sent = self
                    .state
                    .links
                    .get(&peer)
                    .map_or(0, |l| l.next_out.saturating_sub(1));
                if received > sent {
                    return self.link_protocol_error(
                        conn,
                        &format!("peer claims event {received} but only {sent} were ever sent (data restored from an old backup?)"),
                    );
                }
                self.acknowledged(&peer, received);
                self.links.get_mut(&conn).expect("link").established = true;
                // One probe at once, so the round trip is known from the start.
                self.send_probe(conn);
                let epoch = el.get_attr("epoch").unwrap_or("").to_string();
                self.dial_backoff.remove(&peer);
                // Events we dropped (queue cap) cannot be resent: say so.
                let l = self.state.links.get(&peer);
                let first_kept = l
                    .and_then(|l| l.unacked.front())
                    .map_or(sent + 1, |(s, _)| *s);
                if received + 1 < first_kept {
                    let to = first_kept - 1;
                    log::warn!(
                        "link {peer}: events {}..={to} were dropped here before the peer got them",
                        received + 1
                    );
                    self.link_write(conn, format!("<skip to='{to}'/>").into_bytes());
                }
                let resend: Vec<(u64, String)> = self
                    .state
                    .links
                    .get(&peer)
                    .map(|l| l.unacked.iter().cloned().collect())
                    .unwrap_or_default();
                if !resend.is_empty() {
                    log::info!("link {peer}: resuming, resending {} events", resend.len());
                }
                for (seq, xml) in resend {
                    self.link_write(conn, format!("<e n='{seq}'>{xml}</e>").into_bytes());
                }
                self.grace_due.remove(&peer);
                let before = self.upstream_epochs.insert(peer.clone(), epoch.clone());
                let restarted = before.is_some_and(|b| b != epoch);
                if self.is_upstream(&peer) {
                    self.schedule_idle_mirror_drop(&peer);
                    let forgot = el.get_attr("forgot") == Some("1");
                    let we_detached = self.detached.remove(&peer);
                    if restarted || forgot || we_detached {
                        // The master lost track of our occupants, or we showed
                        // its occupants as gone: announce ours, ask what we missed.
                        self.resync_upstream(&peer);
                    }
                } else if restarted {
                    // The site restarted: its sessions are gone.
                    self.forget_site_occupants(&peer);
                }
            }

            "e" => {
                let Some(seq) = number("n") else {
                    return self.link_protocol_error(conn, "event without a number");
                };
                let last = self.state.links.get(&peer).map_or(0, |l| l.last_in);
                if seq <= last {
                    return self.schedule_ack(conn); // A resend of something already applied.
                }
                if seq != last + 1 {
                    return self.link_protocol_error(
                        conn,
                        &format!("event {seq} after {last}: events were lost"),
                    );
                }
                let Some(decoded) = self.wrapped_event(&peer, &el) else {
                    return self.link_protocol_error(conn, "empty event");
                };
                match decoded {
                    Ok(ev) => self.on_link_event(&peer, ev),
                    // A well-framed event we cannot use is refused, not retried forever.
                    Err(e) => log::warn!("link {peer}: refused event {seq}: {e}"),
                }
                self.commit(Record::LinkIn { peer, seq });
                self.schedule_ack(conn);
            }
            "t" => {
                let Some(decoded) = self.wrapped_event(&peer, &el) else {
                    return self.link_protocol_error(conn, "empty transient event");
                };
                match decoded {
                    Ok(ev) if ev.is_transient() => self.on_link_event(&peer, ev),
                    Ok(_) => {
                        log::warn!("link {peer}: refused a transient event that must be numbered")
                    }
                    Err(e) => log::warn!("link {peer}: refused a transient event: {e}"),
                }
            }
            "skip" => {
                // The peer dropped events we never got: accept the loss here and
                // fetch the room state again instead.
                let last = self.state.links.get(&peer).map_or(0, |l| l.last_in);
                let Some(to) = number("to").filter(|t| *t > last) else {
                    return self.link_protocol_error(conn, "skip backwards");
                };
                log::warn!(
                    "link {peer}: the peer dropped events {}..={to}; resynchronising",
                    last + 1
                );
                self.commit(Record::LinkIn {
                    peer: peer.clone(),
                    seq: to,
                });
                if self.is_upstream(&peer) {
                    self.resync_upstream(&peer);
                }
            }
            "r" => self.send_ack(conn),
            "a" => {
                let Some(h) = number("h") else {
                    return self.link_protocol_error(conn, "ack without 'h'");
                };
                let l = self.state.links.get(&peer);
                let sent = l.map_or(0, |l| l.next_out.saturating_sub(1));
                let acked = l
                    .and_then(|l| l.unacked.front())
                    .map_or(sent, |(s, _)| s - 1);
                if h > sent || h < acked {
                    return self.link_protocol_error(
                        conn,
                        &format!("ack {h} outside the window {acked}..={sent}"),
                    );
                }
                self.acknowledged(&peer, h);
                let now = self.now.mono_ms;
                if let Some(sent) = self.links.get_mut(&conn).and_then(|l| l.probe_sent.take()) {
                    self.link_traffic.entry(peer.clone()).or_default().rtt_ms = Some(now - sent);
                }
            }
            other => self.link_protocol_error(conn, &format!("unknown element <{other}/>")),
        }
    }

    fn send_probe(&mut self, conn: ConnId) {
        let now = self.now.mono_ms;
        if let Some(l) = self.links.get_mut(&conn) {
            l.probe_sent = Some(now);
        }
        self.link_write(conn, b"<r/>".to_vec());
    }

    /// The event inside `<e>` or `<t>`, decoded with the MUC service its
    /// rooms belong to (None: the wrapper is empty).
    fn wrapped_event(&self, peer: &str, el: &Element) -> Option<Result<LinkEvent, String>> {
        let payload = el.elements().next()?;
        let service = if self.is_upstream(peer) {
            peer.to_string()
        } else {
            self.cfg.muc_service.clone()
        };
        Some(LinkEvent::decode(payload, &service).map_err(|e| e.0))
    }

    fn acknowledged(&mut self, peer: &str, upto: u64) {
        let pending = self
            .state
            .links
            .get(peer)
            .and_then(|l| l.unacked.front())
            .is_some_and(|(s, _)| *s <= upto);
        if pending {
            self.commit(Record::LinkAcked {
                peer: peer.to_string(),
                upto,
            });
        }
    }

    fn schedule_ack(&mut self, conn: ConnId) {
        let delay = self.cfg.link.ack_delay_ms;
        let now = self.now.mono_ms;
        let l = self.links.get_mut(&conn).expect("link");
        l.unacked_in += 1;
        if l.unacked_in >= ACK_EVERY {
            self.send_ack(conn);
        } else if l.ack_due.is_none() {
            l.ack_due = Some(now + delay);
            self.arm_link_timer(conn);
        }
    }

    fn send_ack(&mut self, conn: ConnId) {
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        l.unacked_in = 0;
        l.ack_due = None;
        let h = self.state.links.get(&l.peer).map_or(0, |s| s.last_in);
        self.link_write(conn, format!("<a h='{h}'/>").into_bytes());
    }

    /// Queue an event for `peer`: durable first, then sent if the link is up.
    pub(crate) fn link_send(&mut self, peer: &str, ev: &LinkEvent) {
        let xml = ev.encode().to_xml(DMUC);
        let seq = self.state.links.get(peer).map_or(1, |l| l.next_out.max(1));
        if let Some(upto) = self.oldest_to_drop(peer, xml.len() as u64) {
            log::warn!("link {peer}: too much unacknowledged; dropping events up to {upto}");
            self.commit(Record::LinkAcked {
                peer: peer.to_string(),
                upto,
            });
        }
        self.commit(Record::LinkOut {
            peer: peer.to_string(),
            seq,
            xml: xml.clone(),
        });
        if let Some(&conn) = self.link_of_peer.get(peer) {
            if self.links[&conn].established {
                self.link_write(conn, format!("<e n='{seq}'>{xml}</e>").into_bytes());
            }
        }
    }

    /// Past the bounds on what waits for the peer's acknowledgement (count
    /// and bytes), the oldest events go to make room for one of `bytes`:
    /// the last sequence number to drop, if any. The peer hears of the gap
    /// (`<skip/>`) and resynchronises.
    fn oldest_to_drop(&self, peer: &str, bytes: u64) -> Option<u64> {
        let l = self.state.links.get(peer)?;
        let cfg = &self.cfg.link;
        let (mut count, mut total) = (l.unacked.len(), l.unacked_bytes);
        let mut upto = None;
        for (seq, xml) in &l.unacked {
            if count < cfg.max_unacked && total + bytes <= cfg.max_unacked_bytes {
                break;
            }
            count -= 1;
            total -= xml.len() as u64;
            upto = Some(*seq);
        }
        upto
    }

    /// Send an event now if the link is up, unnumbered (`<t>`): never queued,
    /// never resent, lost with the connection. For what is only worth
    /// having at once (chat states).
    pub(crate) fn link_send_transient(&mut self, peer: &str, ev: &LinkEvent) {
        if let Some(&conn) = self.link_of_peer.get(peer) {
            if self.links[&conn].established {
                let xml = ev.encode().to_xml(DMUC);
                self.link_write(conn, format!("<t>{xml}</t>").into_bytes());
            }
        }
    }

    /// The peer that serves `jid`'s domain, if any: a site whose users these
    /// are, or the upstream whose MUC service this is.
    pub(crate) fn peer_for_domain(&self, domain: &str) -> Option<String> {
        let d = domain.to_string();
        (self.is_site(&d) || self.is_upstream(&d)).then_some(d)
    }

    /// Send a stanza for a user at a linked node. False if no link serves
    /// that user's domain.
    pub(crate) fn link_deliver_stanza(&mut self, to: &Jid, el: &Element) -> bool {
        let Some(peer) = self.peer_for_domain(to.domain()) else {
            return false;
        };
        let Some(from) = el.get_attr("from").and_then(|f| Jid::parse(f).ok()) else {
            return false;
        };
        let mut stanza = el.clone();
        stanza.set_attr("to", to.to_string());
        self.link_send(
            &peer,
            &LinkEvent::Relay {
                from,
                to: to.clone(),
                stanza,
            },
        );
        true
    }

    fn link_protocol_error(&mut self, conn: ConnId, what: &str) {
        let peer = self
            .links
            .get(&conn)
            .map(|l| l.peer.clone())
            .unwrap_or_default();
        log::warn!("link {peer}: protocol error, closing: {what}");
        self.link_write(
            conn,
            crate::stanza::stream_error("undefined-condition", what),
        );
        self.close_link(conn);
    }

    fn close_link(&mut self, conn: ConnId) {
        if self.links.contains_key(&conn) {
            self.flush_link(conn);
            self.push_action(crate::node::Action::Close { conn });
            self.on_link_down(conn);
        }
    }

    pub(crate) fn on_link_down(&mut self, conn: ConnId) {
        let Some(l) = self.links.remove(&conn) else {
            return;
        };
        if self.link_of_peer.get(&l.peer) == Some(&conn) {
            self.link_of_peer.remove(&l.peer);
            log::info!("link {}: disconnected", l.peer);
            if !self.detached.contains(&l.peer) {
                let due = self.now.mono_ms + self.cfg.link.grace_ms;
                self.grace_due.entry(l.peer.clone()).or_insert(due);
            }
            if self.is_upstream(&l.peer) {
                self.mirror_idle_due.remove(&l.peer);
                self.schedule_dial(&l.peer);
            }
        }
    }

    /// Dial again later: doubling backoff with ±25 % jitter.
    pub(crate) fn schedule_dial(&mut self, peer: &str) {
        let cfg = &self.cfg.link;
        let (min, max) = (cfg.backoff_min_ms, cfg.backoff_max_ms);
        let backoff = self
            .dial_backoff
            .get(peer)
            .map_or(min, |b| (b * 2).min(max));
        self.dial_backoff.insert(peer.to_string(), backoff);
        let jitter = self.random_below(backoff / 2 + 1);
        let at = self.now.mono_ms + backoff - backoff / 4 + jitter;
        self.dial_due.insert(peer.to_string(), at);
    }

    fn arm_link_timer(&mut self, conn: ConnId) {
        let Some(l) = self.links.get_mut(&conn) else {
            return;
        };
        let probe = (l.established && !l.probed).then_some(l.last_rx + l.dead_ms / 2);
        let go_on = l.inflate_behind.then_some(self.now.mono_ms);
        let deadline = [
            Some(l.last_tx + l.keepalive_ms),
            Some(l.last_rx + l.dead_ms),
            probe,
            l.ack_due,
            go_on,
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("at least one deadline");
        if l.timer_armed.is_none_or(|armed| deadline < armed) {
            l.timer_armed = Some(deadline);
            self.push_timer(deadline, conn);
        }
    }

    pub(crate) fn on_link_timer(&mut self, conn: ConnId) {
        let now = self.now.mono_ms;
        if self.links.get(&conn).is_some_and(|l| l.inflate_behind) {
            self.inflate_pending(conn);
        }
        let Some(l) = self.links.get(&conn) else {
            return;
        };
        let keepalive_ms = l.keepalive_ms;
        if now >= l.last_rx + l.dead_ms {
            log::warn!(
                "link {}: nothing heard for {} s; closing",
                l.peer,
                l.dead_ms / 1000
            );
            return self.close_link(conn);
        }
        if !l.probed && l.established && now >= l.last_rx + l.dead_ms / 2 {
            self.links.get_mut(&conn).expect("link").probed = true;
            self.send_probe(conn);
        }
        let Some(l) = self.links.get(&conn) else {
            return;
        };
        if l.ack_due.is_some_and(|t| now >= t) {
            self.send_ack(conn);
        }
        if self
            .links
            .get(&conn)
            .is_some_and(|l| now >= l.last_tx + keepalive_ms)
        {
            self.link_write(conn, b" ".to_vec());
        }
        self.arm_link_timer(conn);
    }

    pub(crate) fn link_status(&self) -> Vec<crate::node::LinkStatus> {
        let mut peers: Vec<String> = self
            .cfg
            .link
            .upstreams
            .iter()
            .chain(&self.cfg.link.peers)
            .cloned()
            .collect();
        peers.sort();
        peers
            .into_iter()
            .map(|peer| {
                let traffic = self.link_traffic.get(&peer).copied().unwrap_or_default();
                let state = self.state.links.get(&peer);
                crate::node::LinkStatus {
                    connected: self
                        .link_of_peer
                        .get(&peer)
                        .is_some_and(|c| self.links[c].established),
                    bytes_in: traffic.bytes_in,
                    bytes_out: traffic.bytes_out,
                    rtt_ms: traffic.rtt_ms,
                    saved_bytes: traffic.fanout_bytes.saturating_sub(traffic.bytes_in),
                    unacked: state.map_or(0, |s| s.unacked.len()),
                    last_in: state.map_or(0, |s| s.last_in),
                    peer,
                }
            })
            .collect()
    }

    /// The grace period of a link that stayed down ran out: each side shows
    /// the other's occupants as gone (status 333).
    pub(crate) fn on_grace_expired(&mut self, peer: &str) {
        if self.link_of_peer.contains_key(peer) {
            return; // Connected again (our hello is already on its way).
        }
        log::info!(
            "link {peer}: down for longer than the grace period; its occupants are shown as gone"
        );
        self.detached.insert(peer.to_string());
        if self.is_upstream(peer) {
            self.mirror_detach(peer);
        } else {
            self.master_detach_site(peer);
        }
    }

    /// Apply one event from `peer`.
    fn on_link_event(&mut self, peer: &str, ev: LinkEvent) {
        if self.is_site(peer) {
            self.on_site_event(peer, ev);
        } else {
            self.on_upstream_event(peer, ev);
        }
    }
}
