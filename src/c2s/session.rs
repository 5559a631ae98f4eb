//! Per-connection state of a client stream.

use super::output::Output;
use crate::jid::Jid;
use crate::scram::ScramServer;
use crate::settings::NodeConfig;
use crate::xml::{Element, Framer, StreamHeader};
use std::collections::{BTreeSet, VecDeque};
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
    /// The last available presence broadcast, if the resource is available.
    pub presence: Option<Element>,
    pub priority: i8,
    /// The client fetched the roster, so it gets roster pushes.
    pub roster_requested: bool,
    /// Full JIDs that got directed available presence and must hear of unavailability.
    pub directed: BTreeSet<String>,
    /// XEP-0280: copies of the account's one-to-one messages are wanted.
    pub carbons: bool,
    /// When the next whitespace keepalive is due (bound streams only).
    pub keepalive_due: u64,
    /// Rooms this session has joined, by room localpart.
    pub rooms: BTreeSet<String>,
    /// What it is sent, paced by what it reads.
    pub output: Output,
    /// Input that arrived while the session could not take it (an
    /// authentication in flight, or output the client has not read yet).
    pub held_input: Vec<u8>,
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
}

impl Session {
    pub fn new(peer: IpAddr, cfg: &NodeConfig, now_ms: u64, stream_id: String) -> Session {
        // Until authenticated, only small stanzas: SASL needs little.
        let mut preauth = cfg.limits;
        preauth.max_stanza_bytes = preauth.max_stanza_bytes.min(cfg.preauth_stanza_bytes);
        Session {
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
            presence: None,
            priority: 0,
            roster_requested: false,
            directed: BTreeSet::new(),
            carbons: false,
            keepalive_due: 0,
            rooms: BTreeSet::new(),
            output: Output::default(),
            held_input: Vec::new(),
            auth_hold: None,
            auth_account: None,
            not_reading: false,
            preauth_slot: false,
            counted_input: 0,
        }
    }

    /// Input it holds: an unfinished stanza, and input held back.
    pub fn buffered_input(&self) -> usize {
        self.framer.buffered() + self.held_input.len()
    }

    /// Whether input is read now: not while an authentication is in flight
    /// (one at a time, and the throttle's delay before the next is read),
    /// nor while the client has not read what it was sent.
    pub fn reads_input(&self) -> bool {
        self.delayed.is_empty()
            && self.auth_hold.is_none()
            && self.output.wants_input()
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

    /// The full JID and the presence it broadcasts, if it is available.
    pub fn available(&self) -> Option<(&Jid, &Element)> {
        Some((self.jid()?, self.presence.as_ref()?))
    }

    /// Available with non-negative priority: receives messages to the bare JID.
    pub fn receives_bare_messages(&self) -> bool {
        self.presence.is_some() && self.priority >= 0
    }

    pub fn next_deadline(&self, cfg: &NodeConfig) -> Option<u64> {
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
