//! Per-connection state of a client stream.

use super::output::Output;
use super::sm::{self, StreamManagement};
use crate::common::ConnId;
use crate::jid::Jid;
use crate::scram::ScramServer;
use crate::settings::NodeConfig;
use crate::xml::{Element, Frame, FrameError, Framer, StreamHeader};
use std::collections::VecDeque;
use std::net::IpAddr;

pub enum Stage {
    /// Before authentication.
    Connected,
    /// A SCRAM exchange awaits the client's final message.
    Scram(Box<ScramServer>),
    /// Authenticated as this localpart; awaiting stream restart and bind.
    Authenticated(String),
    /// A resource is bound: the session's full JID.
    Bound(Jid),
}

pub struct Session {
    /// The connection that carries it now: the one it began on, or the one
    /// that resumed it (XEP-0198). Sessions are known by the first.
    pub transport: ConnId,
    pub peer: IpAddr,
    pub framer: Framer,
    pub header: Option<StreamHeader>,
    pub header_sent: bool,
    pub stream_id: String,
    pub tls: bool,
    /// `<proceed/>` was sent; nothing more is read until TLS is up.
    pub tls_pending: bool,
    pub stage: Stage,
    pub opened_ms: u64,
    pub partial_since: Option<u64>,
    pub auth_failures: u32,
    /// SASL failures held back to slow down password guessing: (due, bytes, then close).
    pub delayed: VecDeque<(u64, Vec<u8>, bool)>,
    pub timer_armed: Option<u64>,
    pub closing: bool,
    /// When the next whitespace keepalive is due (bound streams only).
    pub keepalive_due: u64,
    /// What it is sent, paced by what it reads.
    pub output: Output,
    /// Input not framed yet: read as far as the session takes it (not while
    /// an authentication is in flight, or output the client has not read
    /// yet piles up); `held_input[held_from..]` is what is left.
    held_input: Vec<u8>,
    held_from: usize,
    /// An authentication attempt that waits for the throttle: (when it may
    /// be evaluated, the `<auth>` element).
    pub auth_hold: Option<(u64, Element)>,
    /// The account the authentication in progress is for (throttle key).
    pub auth_account: Option<String>,
    /// Its output piled up unread: it is closed at the end of this turn.
    pub not_reading: bool,
    /// It holds one of the slots for connections not authenticated yet.
    pub preauth_slot: bool,
    /// Input bytes it holds as the node's total counts them.
    pub counted_input: usize,
    /// While the client says it is inactive (XEP-0352): the presences
    /// held for it.
    pub held: Option<Box<super::csi::Held>>,
    /// Once the client enabled stream management (XEP-0198).
    pub sm: Option<Box<StreamManagement>>,
    /// Being restored after a restart: what it is sent now (its rooms'
    /// answers to its rejoining) its client has already; dropped.
    pub restoring: bool,
}

impl Session {
    pub fn new(
        transport: ConnId,
        peer: IpAddr,
        cfg: &NodeConfig,
        now_ms: u64,
        stream_id: String,
    ) -> Session {
        // Until authenticated, only small stanzas: SASL needs little.
        let mut preauth = cfg.limits;
        preauth.max_stanza_bytes = preauth.max_stanza_bytes.min(cfg.preauth_stanza_bytes);
        Session {
            transport,
            peer,
            framer: Framer::new(preauth),
            header: None,
            header_sent: false,
            stream_id,
            tls: false,
            tls_pending: false,
            stage: Stage::Connected,
            opened_ms: now_ms,
            partial_since: None,
            auth_failures: 0,
            delayed: VecDeque::new(),
            timer_armed: None,
            closing: false,
            keepalive_due: 0,
            held: None,
            output: Output::default(),
            held_input: Vec::new(),
            held_from: 0,
            auth_hold: None,
            auth_account: None,
            not_reading: false,
            preauth_slot: false,
            counted_input: 0,
            sm: None,
            restoring: false,
        }
    }

    /// Input it holds: an unfinished stanza, and input not framed yet.
    pub fn buffered_input(&self) -> usize {
        self.framer.buffered() + self.held_len()
    }

    pub fn hold(&mut self, bytes: &[u8]) {
        if self.held_from == self.held_input.len() {
            self.held_input.clear();
            self.held_from = 0;
        }
        self.held_input.extend_from_slice(bytes);
    }

    /// Frame the next piece of the held input (what was used is let go;
    /// `now` marks when an unfinished stanza began).
    pub fn next_frame(&mut self, now: u64) -> Result<Option<Frame>, FrameError> {
        let (used, frame) = self.framer.next_frame(&self.held_input[self.held_from..])?;
        self.consume_held(used);
        self.partial_since = if self.framer.has_partial() {
            Some(self.partial_since.unwrap_or(now))
        } else {
            None
        };
        Ok(frame)
    }

    /// Let go of everything held: plaintext that followed `<starttls/>`
    /// must never be read as if it came over TLS (RFC 6120 §5.4.3.3).
    pub fn drop_held(&mut self) {
        self.held_input.clear();
        self.held_from = 0;
    }

    pub fn held_len(&self) -> usize {
        self.held_input.len() - self.held_from
    }

    fn consume_held(&mut self, n: usize) {
        self.held_from += n;
        if self.held_from == self.held_input.len() {
            self.held_input.clear();
            self.held_from = 0;
        }
    }

    /// Whether input is read now: not while an authentication is in flight
    /// (one at a time, and the throttle's delay before the next is read),
    /// nor while the client has not read what it was sent.
    pub fn reads_input(&self) -> bool {
        self.delayed.is_empty()
            && self.auth_hold.is_none()
            && self
                .output
                .wants_input(self.sm.as_ref().map_or(0, |_| sm::MAX_UNACKED_BYTES))
            && !self.closing
    }

    /// The account this session is logged in as, once authenticated.
    pub fn user(&self) -> Option<&str> {
        match &self.stage {
            Stage::Authenticated(u) => Some(u),
            Stage::Bound(jid) => jid.local(),
            _ => None,
        }
    }

    /// In the middle of a SCRAM exchange for `user` (its credentials were
    /// taken at the start, so the exchange would succeed after a deletion).
    pub fn authenticating_as(&self, user: &str) -> bool {
        matches!(self.stage, Stage::Scram(_)) && self.auth_account.as_deref() == Some(user)
    }

    pub fn is_bound(&self) -> bool {
        matches!(self.stage, Stage::Bound(_))
    }

    /// The full JID, once a resource is bound.
    pub fn jid(&self) -> Option<&Jid> {
        match &self.stage {
            Stage::Bound(jid) => Some(jid),
            _ => None,
        }
    }

    /// It lost its connection and waits to be resumed.
    pub fn is_detached(&self) -> bool {
        self.sm
            .as_ref()
            .is_some_and(|sm| sm.detached_since.is_some())
    }

    /// It may outlive its connection (stream management with resumption).
    pub fn is_resumable(&self) -> bool {
        self.is_bound() && self.sm.as_ref().is_some_and(|sm| sm.id.is_some())
    }

    pub fn next_deadline(&self, cfg: &NodeConfig) -> Option<u64> {
        if let Some(due) = self
            .sm
            .as_ref()
            .and_then(|sm| sm.resume_deadline(cfg.resume_timeout_ms))
        {
            return Some(due);
        }
        let handshake = (!self.is_bound()).then_some(self.opened_ms + cfg.handshake_timeout_ms);
        let partial = self.partial_since.map(|t| t + cfg.stanza_timeout_ms);
        let delayed = self.delayed.front().map(|d| d.0);
        let keepalive = self.is_bound().then_some(self.keepalive_due);
        let held = self.auth_hold.as_ref().map(|h| h.0);
        [handshake, partial, delayed, keepalive, held]
            .into_iter()
            .flatten()
            .min()
    }
}
