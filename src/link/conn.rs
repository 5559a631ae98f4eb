//! One connection carrying a link: its byte stream (compressed or not),
//! framing, and the per-connection protocol state (keepalives, probes,
//! acknowledgements due). What it frames waits in `inbox` until the link
//! machine interprets it, one element at a time.

use super::compress;
use crate::common::PeerId;
use crate::xml::{Element, Frame, Framer, Limits, StreamHeader};
use std::collections::VecDeque;

/// Inflated bytes a compressed link gets handled per turn; the rest waits
/// for the next turn (and the link is not read meanwhile), so a small input
/// that inflates hugely cannot hold up the rest of the node.
const INFLATE_PER_TURN: usize = 1024 * 1024;

/// A compressor that took no write larger than a keepalive for this long
/// is let go (the peer permitting): an idle link holds no compression
/// state, a busy one keeps its window. The next write starts a new stream
/// from the primer, so losing the window costs a few bytes once.
pub const DEFLATE_IDLE_MS: u64 = 30_000;

/// What a connection's input held, framed, in order.
pub(crate) enum Incoming {
    Header(Vec<u8>),
    Element(Vec<u8>),
    Close,
    /// The input broke the protocol; the connection is to be closed.
    Error(String),
}

pub struct LinkConn {
    pub peer: PeerId,
    framer: Framer,
    pub(crate) header: Option<StreamHeader>,
    /// The peer's `<hello/>` has arrived: events flow.
    pub(crate) established: bool,
    pub(crate) last_rx: u64,
    pub(crate) last_tx: u64,
    /// A write since the last flush was `write_bulk`.
    bulk: bool,
    /// Bytes handed to the shell and not written to the socket yet.
    pub(crate) unwritten: u64,
    pub(crate) unacked_in: u32,
    pub(crate) ack_due: Option<u64>,
    pub(crate) keepalive_ms: u64,
    pub(crate) dead_ms: u64,
    /// Silent for half of `dead_ms`: we asked the peer for an ack (`<r/>`),
    /// so detection does not hang on the peer's keepalive interval.
    pub(crate) probed: bool,
    /// When the outstanding `<r/>` went out (its answer gives the round trip).
    pub(crate) probe_sent: Option<u64>,
    /// We opened the stream with `Z`: all we write after it is compressed.
    compress_out: bool,
    /// Our compressor, held while we write (see `release_deflate`).
    deflate: Option<compress::Deflater>,
    /// When the compressor last took a write larger than a keepalive.
    pub(crate) deflate_used: u64,
    /// The peer reads streams that end and start again (its hello said
    /// `z-restart='1'`): an idle compressor may be let go.
    pub(crate) peer_restarts: bool,
    /// The peer opened with `Z`: all it sends after it is compressed.
    compress_in: bool,
    /// Our inflater for the peer's current stream (let go at its end).
    inflate: Option<compress::Inflater>,
    /// The peer's first byte has arrived (it says whether the stream is compressed).
    started: bool,
    /// Written since the last flush: one compressed block per batch of events.
    out: Vec<u8>,
    /// Bytes ready for the wire as they are (the end of a compressed stream).
    wire_out: Vec<u8>,
    /// Compressed input not inflated yet (the turn's budget ran out).
    pending_in: Vec<u8>,
    /// More inflating is due next turn.
    pub(crate) inflate_behind: bool,
    /// Framed input not interpreted yet.
    pub(crate) inbox: VecDeque<Incoming>,
    pub(crate) timer_armed: Option<u64>,
}

impl LinkConn {
    pub(crate) fn new(peer: &PeerId, limits: Limits, now: u64, timing: (u64, u64)) -> LinkConn {
        LinkConn {
            peer: peer.clone(),
            framer: Framer::new(limits),
            header: None,
            established: false,
            last_rx: now,
            last_tx: now,
            bulk: false,
            unwritten: 0,
            unacked_in: 0,
            ack_due: None,
            keepalive_ms: timing.0,
            dead_ms: timing.1,
            probed: false,
            probe_sent: None,
            compress_out: false,
            deflate: None,
            deflate_used: now,
            peer_restarts: false,
            compress_in: false,
            inflate: None,
            started: false,
            out: Vec::new(),
            wire_out: Vec::new(),
            pending_in: Vec::new(),
            inflate_behind: false,
            inbox: VecDeque::new(),
            timer_armed: None,
        }
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established
    }

    /// Compress all output from now on (after the `Z` that says so).
    pub(crate) fn start_deflate(&mut self) {
        self.compress_out = true;
    }

    /// End our compressed stream and let the compressor (about 300 KB) go,
    /// if the peer reads restarted streams and nothing waits to be
    /// compressed. The next write starts a new stream.
    pub(crate) fn release_deflate(&mut self) {
        if !self.peer_restarts || !self.out.is_empty() {
            return;
        }
        if let Some(d) = self.deflate.take() {
            self.wire_out.extend(d.finish());
        }
    }

    /// Whether a compressor or an inflater is held (for tests and status).
    pub fn holds_compression_state(&self) -> (bool, bool) {
        (self.deflate.is_some(), self.inflate.is_some())
    }

    /// Queue output; `flush` hands it out (compressed, if so agreed).
    pub(crate) fn write(&mut self, now: u64, bytes: &[u8]) {
        self.last_tx = now;
        self.out.extend_from_slice(bytes);
    }

    /// A write that is part of a stream of small ones (a file's chunk
    /// requests): compressed, and it keeps the compressor, as a large
    /// write does; sent stored, each would cost three times as much.
    pub(crate) fn write_bulk(&mut self, now: u64, bytes: &[u8]) {
        self.write(now, bytes);
        self.bulk = true;
    }

    /// Bytes written since the last flush.
    pub(crate) fn buffered(&self) -> usize {
        self.out.len() + self.wire_out.len()
    }

    /// What was written since the last flush, as it goes on the wire.
    pub(crate) fn flush(&mut self) -> Option<Vec<u8>> {
        let plain = std::mem::take(&mut self.out);
        let mut wire = std::mem::take(&mut self.wire_out);
        if plain.is_empty() {
            return (!wire.is_empty()).then_some(wire);
        }
        if !self.compress_out {
            wire.extend(plain);
            return Some(wire);
        }
        let bulk = std::mem::take(&mut self.bulk);
        if self.deflate.is_none() && plain.len() <= compress::STORED_MAX && !bulk {
            // A keepalive or an ack on an idle link: a stream of its own.
            wire.extend(compress::stored_stream(&plain));
            return Some(wire);
        }
        if plain.len() > compress::STORED_MAX || bulk {
            self.deflate_used = self.last_tx;
        }
        let d = self.deflate.get_or_insert_with(compress::Deflater::new);
        wire.extend(d.compress(&plain));
        Some(wire)
    }

    /// Take bytes from the peer: frame them into `inbox` (inflating first
    /// if the peer compresses, at most `INFLATE_PER_TURN` per turn).
    pub(crate) fn receive(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        if !self.started && !rest.is_empty() {
            self.started = true;
            if rest[0] == b'Z' {
                self.compress_in = true;
                rest = &rest[1..];
            }
        }
        if !self.compress_in {
            return self.frame(rest);
        }
        self.pending_in.extend_from_slice(rest);
        self.inflate_pending();
    }

    /// Inflate and frame, a piece at a time (a small input that expands a
    /// lot never sits in memory whole, and the framer's limits apply as
    /// usual), at most `INFLATE_PER_TURN` per turn.
    pub(crate) fn inflate_pending(&mut self) {
        self.inflate_behind = false;
        let input = std::mem::take(&mut self.pending_in);
        let mut rest = &input[..];
        let mut plain = vec![0u8; compress::INFLATE_CHUNK];
        let mut produced = 0;
        while !rest.is_empty() || self.inflate.is_some() {
            if self.inflate.is_none() {
                // A new stream of the peer's (its first, or one after an
                // end). Counted like output: a peer that ends a stream every
                // few bytes spends the turn's budget, not the node's time.
                self.inflate = Some(compress::Inflater::new());
                produced += compress::NEW_STREAM_COST;
            }
            let inflater = self.inflate.as_mut().expect("made above");
            let step = match inflater.step(rest, &mut plain) {
                Ok(step) => step,
                Err(e) => return self.inbox.push_back(Incoming::Error(e)),
            };
            rest = &rest[step.consumed..];
            if step.ended {
                // The peer went idle: its inflater (about 45 KB) goes too.
                self.inflate = None;
            } else if step.consumed == 0 && step.written == 0 {
                break;
            }
            let n = step.written;
            self.frame(&plain[..n]);
            if self.broken() {
                return;
            }
            produced += n;
            if produced >= INFLATE_PER_TURN {
                self.pending_in = rest.to_vec();
                self.inflate_behind = true;
                break;
            }
        }
    }

    fn broken(&self) -> bool {
        matches!(
            self.inbox.back(),
            Some(Incoming::Error(_) | Incoming::Close)
        )
    }

    fn frame(&mut self, mut rest: &[u8]) {
        while !rest.is_empty() && !self.broken() {
            match self.framer.next_frame(rest) {
                Ok((used, frame)) => {
                    rest = &rest[used..];
                    match frame {
                        Some(Frame::StreamOpen(raw)) => self.inbox.push_back(Incoming::Header(raw)),
                        Some(Frame::Stanza(raw)) => self.inbox.push_back(Incoming::Element(raw)),
                        Some(Frame::StreamClose) => self.inbox.push_back(Incoming::Close),
                        None => {}
                    }
                }
                Err(e) => {
                    let what = format!("{}: {}", e.condition(), e.text());
                    self.inbox.push_back(Incoming::Error(what));
                }
            }
        }
    }

    /// The next deadline of this connection's own timers.
    pub(crate) fn next_deadline(&self, now: u64) -> u64 {
        let probe = (self.established && !self.probed).then_some(self.last_rx + self.dead_ms / 2);
        let go_on = self.inflate_behind.then_some(now);
        let release = (self.peer_restarts && self.deflate.is_some())
            .then_some(self.deflate_used + DEFLATE_IDLE_MS);
        [
            Some(self.last_tx + self.keepalive_ms),
            Some(self.last_rx + self.dead_ms),
            probe,
            self.ack_due,
            go_on,
            release,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now)
    }
}

/// An element of a link stream, parsed in the stream's namespace scope.
pub(crate) fn parse_element(header: &StreamHeader, raw: &[u8]) -> Result<Element, String> {
    crate::xml::parse_stanza(header, raw).map_err(|e| format!("{e:?}"))
}
