//! Node-to-node links (the DMUC protocol): typed events between a master
//! and its mirroring sites, carried exactly once across reconnects and
//! restarts.
//!
//! Each side numbers the events it sends. An event is made durable (a
//! `LinkQueued` record) before it is written, and stays queued until the peer
//! acknowledges it (`<a h='N'/>`, a `LinkAcked` record). A new connection
//! starts with `<hello received='N'/>`: the last event applied from the other
//! side, which then resends everything after N. Events at or below the
//! last applied number are recognised and skipped. See docs/protocol.md.

pub mod compress;
mod conn;
pub mod event;
mod machine;
mod queue;

pub use conn::DEFLATE_IDLE_MS;
pub use machine::{FromPeer, LinkOutput, Links};

#[cfg(test)]
mod tests;

/// The largest link frame (an event with its wrapper) either side accepts.
/// Fixed, not configured: both ends of a link must agree on it, and every
/// event is bounded well below it (a snapshot: at most `max_users`
/// occupants of bounded presence, bounded affiliations, and history within
/// `snapshot_history_bytes`; a message: one stanza of at most 4 MiB).
pub const MAX_LINK_FRAME: usize = 32 * 1024 * 1024;
/// One-to-one stanzas one user may have waiting for a link, and their
/// bytes: a split lets a site fill its queue, not one user.
pub const RELAYS_PER_SENDER: usize = 1_000;
pub const RELAY_BYTES_PER_SENDER: u64 = 2 * 1024 * 1024;

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

/// One link as `outpost links` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkStatus {
    pub peer: String,
    pub connected: bool,
    /// Link payload bytes since the node started (TLS overhead not included).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Our events the peer has not acknowledged yet.
    pub unacked: usize,
    /// The peer's last event applied here.
    pub last_in: u64,
    /// Round trip of the last `<r/>` probe answered on this connection.
    pub rtt_ms: Option<u64>,
    /// Bytes delivered to local sessions from this upstream's rooms beyond
    /// the link bytes that carried them: what clients connecting to the
    /// master directly would have added to the link (0 on the master's side).
    pub saved_bytes: u64,
}
