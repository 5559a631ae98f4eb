//! The typed events a link carries between a master and its mirroring
//! sites (their wire codec is `link::event`).

use super::occupants::Role;
use super::room::{Affiliation, Archived, RoomConfig, Subject};
use crate::jid::Jid;
use crate::xml::Element;
use serde::{Deserialize, Serialize};

/// What a mirror needs to know about one occupant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccupantInfo {
    pub nick: String,
    pub bare: String,
    /// Full JID of the occupant's first session.
    pub jid: String,
    pub affiliation: Affiliation,
    pub role: Role,
    pub occupant_id: String,
    /// The occupant's presence payload (show, status…), as a `<presence/>`.
    pub presence: Element,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OccupantChange {
    Joined,
    Updated,
    Left {
        status: Option<String>,
    },
    Renamed {
        new_nick: String,
    },
    /// Kicked (307), banned (301), affiliation lost (321), members-only (322).
    Removed {
        code: u16,
        actor: Option<String>,
        reason: Option<String>,
    },
}

/// Stored as it is in the log while it waits for the peer's acknowledgement
/// (see `state::Queued`): variants are only ever appended, never reordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkEvent {
    // ---- site to master -----------------------------------------------------
    /// A site user joins `room` (the master's room localpart).
    Join {
        room: String,
        nick: String,
        from: Jid,
        presence: Element,
    },
    /// Status or nick change of a site user already in the room.
    Update {
        room: String,
        nick: String,
        from: Jid,
        presence: Element,
    },
    Leave {
        room: String,
        from: Jid,
        presence: Element,
    },
    /// A site user's groupchat message, its stanza-id minted at the site;
    /// `nick` is the sender's nick when it was sent (so a master that lost
    /// track of the sender, e.g. after a restart, can take them back in).
    Groupchat {
        room: String,
        from: Jid,
        nick: String,
        stanza_id: String,
        message: Element,
    },
    /// After a split: the site asks for what it missed in `room` since event
    /// `last_seq` (the answer is a snapshot).
    Resync {
        room: String,
        last_seq: u64,
    },
    /// Any other stanza between a user and a room, either way (private
    /// messages, iq, invitations, errors, answers).
    Relay {
        from: Jid,
        to: Jid,
        stanza: Element,
    },

    // ---- master to site -----------------------------------------------------
    /// Everything a new mirror needs: config, affiliations, subject, who is
    /// in, recent history, and the next sequence number.
    Snapshot {
        room: String,
        config: RoomConfig,
        affiliations: Vec<(String, Affiliation)>,
        subject: Option<Subject>,
        occupants: Vec<OccupantInfo>,
        history: Vec<Archived>,
        next_seq: u64,
        /// Some messages the site missed are no longer kept by the master.
        gap: bool,
        /// Just created: the room waits for its owner's configuration.
        locked: bool,
    },
    Occupant {
        room: String,
        info: OccupantInfo,
        change: OccupantChange,
    },
    Message {
        room: String,
        msg: Archived,
    },
    Subject {
        room: String,
        seq: u64,
        subject: Subject,
    },
    Config {
        room: String,
        config: RoomConfig,
    },
    Affiliation {
        room: String,
        jid: String,
        affiliation: Affiliation,
    },
    Destroyed {
        room: String,
        alt: Option<String>,
        reason: Option<String>,
    },
    /// The room's vCard (its avatar), after a change and after each
    /// snapshot; none: the room has none.
    Vcard {
        room: String,
        vcard: Option<Element>,
    },
    /// The domains a master reaches (its own and its other sites'): what
    /// a site routes one-to-one traffic to it for. Sent unnumbered on each
    /// hello; the site keeps it.
    Routes {
        domains: Vec<String>,
    },

    // ---- files, either way, unnumbered (the file lane) ----------------------
    /// Asks for `len` bytes of a file from `offset` (0 bytes: its
    /// description alone).
    FileWant {
        origin: String,
        id: String,
        offset: u64,
        len: u32,
    },
    /// Part of a file; the first (at offset 0) describes it.
    FileChunk {
        origin: String,
        id: String,
        offset: u64,
        meta: Option<crate::files::FileMeta>,
        data: Vec<u8>,
    },
    /// No such file here (or it could not be fetched).
    FileMissing {
        origin: String,
        id: String,
    },
}

/// Domains a master may name in `Routes`.
pub const ROUTES_MAX: usize = 256;
