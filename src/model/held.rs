//! A client session kept across a graceful restart: what the client
//! streams and the router knew of a session that can be resumed
//! (XEP-0198), written when the node stops and read back when it starts,
//! so the client resumes as if only its connection had dropped.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSession {
    /// Its full JID.
    pub jid: String,
    /// The id a resumption names.
    pub sm_id: String,
    /// Stanzas received from the client (its `h` for our acknowledgements).
    pub handled: u32,
    /// Stanzas sent to it: the number of the last one.
    pub sent: u32,
    /// Sent and not acknowledged, the oldest first.
    pub unacked: Vec<HeldStanza>,
    /// Wall-clock Unix ms when it was written, and how long it had already
    /// waited for its client then: the restart counts against its timeout.
    pub held_at_unix_ms: u64,
    pub waited_ms: u64,
    /// Its last available presence (none if it never sent one).
    pub presence: Option<String>,
    pub priority: i8,
    pub roster_requested: bool,
    pub carbons: bool,
    /// Full JIDs it sent directed presence to.
    pub directed: Vec<String>,
    /// The client said it was inactive (XEP-0352).
    pub inactive: bool,
    pub rooms: Vec<HeldRoom>,
    /// The capabilities its presence announced (XEP-0115): its string and
    /// hash function.
    pub caps: Option<(String, String)>,
    /// It fetched its blocklist, so it gets the pushes (XEP-0191).
    pub blocklist_requested: bool,
}

/// A stanza sent and not acknowledged; `offline_upto` if it is an offline
/// message whose delivery was not recorded (it is still stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldStanza {
    pub xml: Vec<u8>,
    pub offline_upto: Option<u64>,
}

/// A room the session is in: the room's bare JID, its nick there, and the
/// presence it shows there (without MUC payloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRoom {
    pub room: String,
    pub nick: String,
    pub presence: String,
}
