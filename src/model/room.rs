//! Durable room state (the master's copy) and how room records change it.

use super::archive::Archive;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub password: Option<String>,
    pub max_users: u32,
    pub moderated: bool,
    /// Real JIDs visible to everyone (non-anonymous) rather than to moderators only.
    pub whois_anyone: bool,
    /// Participants, not only moderators, may change the subject.
    pub subject_by_anyone: bool,
    /// Participants, not only moderators and admins, may invite.
    pub allow_invites: bool,
    /// Messages sent as classic history on join.
    pub history_length: u32,
    /// Messages are kept in the MUC archive (XEP-0313).
    pub archiving: bool,
}

impl Default for RoomConfig {
    fn default() -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            password: None,
            max_users: 100,
            moderated: false,
            whois_anyone: false,
            subject_by_anyone: false,
            allow_invites: true,
            history_length: 20,
            archiving: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Admin => "admin",
            Affiliation::Member => "member",
            Affiliation::None => "none",
            Affiliation::Outcast => "outcast",
        }
    }
    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "admin" => Affiliation::Admin,
            "member" => Affiliation::Member,
            "none" => Affiliation::None,
            "outcast" => Affiliation::Outcast,
            _ => return None,
        })
    }
}

/// One archived room message, as broadcast (from `room/nick`, no `to`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    pub seq: u64,
    pub stanza_id: String,
    pub stamp_ms: u64,
    pub nick: String,
    /// Bare JID of the sender.
    pub real: String,
    pub xml: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub text: String,
    pub nick: String,
    pub stamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    pub config: RoomConfig,
    /// Keyed by bare JID; absent means `none`.
    pub affiliations: BTreeMap<String, Affiliation>,
    pub subject: Option<Subject>,
    /// Stored as the fields `archive` (the messages) and `archive_bytes`.
    pub archive: Archive,
    /// Sequence number of the next room event; the master's order.
    pub next_seq: u64,
    /// Salt for occupant-ids (XEP-0421), fixed for the room's life.
    pub salt: Vec<u8>,
    /// A new room stays locked until its owner configures it.
    pub locked: bool,
    /// The room's vCard (its avatar, XEP-0486), as XML. Kept in a
    /// snapshot part of its own, so the room's part reads as before.
    #[serde(skip)]
    pub vcard: Option<String>,
    /// The room's last event when its vCard last changed: a site that has
    /// seen that event had the change queued right after it.
    #[serde(skip)]
    pub vcard_seq: u64,
}

/// A room's vCard at most.
pub const VCARD_BYTES: usize = 128 * 1024;
/// The vCards of the rooms mastered here together at most, and those of
/// the replicas likewise.
pub const VCARDS_TOTAL: usize = 8 * 1024 * 1024;

impl RoomState {
    pub fn new(owner: &str, salt: Vec<u8>) -> RoomState {
        RoomState {
            config: RoomConfig::default(),
            affiliations: BTreeMap::from([(owner.to_string(), Affiliation::Owner)]),
            subject: None,
            archive: Archive::new(),
            next_seq: 1,
            salt,
            locked: true,
            vcard: None,
            vcard_seq: 0,
        }
    }

    /// Everything but the archive (snapshots write that in slices).
    pub fn clone_without_archive(&self) -> RoomState {
        RoomState {
            config: self.config.clone(),
            affiliations: self.affiliations.clone(),
            subject: self.subject.clone(),
            archive: Archive::new(),
            next_seq: self.next_seq,
            salt: self.salt.clone(),
            locked: self.locked,
            vcard: None,
            vcard_seq: 0,
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn owners(&self) -> usize {
        self.affiliations
            .values()
            .filter(|a| **a == Affiliation::Owner)
            .count()
    }
}

/// Room records; part of `state::Record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomRecord {
    Create {
        owner: String,
        salt: Vec<u8>,
    },
    Configure {
        config: RoomConfig,
    },
    Affiliate {
        jid: String,
        affiliation: Affiliation,
    },
    Subject {
        subject: Subject,
    },
    Message {
        msg: Archived,
    },
    /// Drop archived messages up to and including this sequence number.
    Trim {
        upto: u64,
    },
    Destroy,
    /// A moderator retracted the archived message `seq` (XEP-0425): it
    /// reads as `tombstone` from now on.
    Moderated {
        seq: u64,
        tombstone: String,
    },
    /// The owner set the room's vCard (none: removed it).
    Vcard {
        vcard: Option<String>,
    },
}

/// The rooms mastered here, by localpart: what the MUC service keeps durable.
pub type Rooms = BTreeMap<String, RoomState>;

pub fn apply(rooms: &mut Rooms, room: &str, record: &RoomRecord) {
    if let RoomRecord::Create { owner, salt } = record {
        rooms.insert(room.to_string(), RoomState::new(owner, salt.clone()));
        return;
    }
    if let RoomRecord::Destroy = record {
        rooms.remove(room);
        return;
    }
    let Some(r) = rooms.get_mut(room) else { return };
    match record {
        RoomRecord::Configure { config } => {
            r.config = config.clone();
            r.locked = false;
        }
        RoomRecord::Affiliate { jid, affiliation } => {
            if *affiliation == Affiliation::None {
                r.affiliations.remove(jid);
            } else {
                r.affiliations.insert(jid.clone(), *affiliation);
            }
        }
        RoomRecord::Subject { subject } => {
            r.subject = Some(subject.clone());
            r.next_seq += 1;
        }
        RoomRecord::Message { msg } => {
            r.next_seq = r.next_seq.max(msg.seq + 1);
            r.archive.push(msg.clone());
        }
        RoomRecord::Trim { upto } => r.archive.drop_upto(*upto),
        RoomRecord::Moderated { seq, tombstone } => r.archive.replace(*seq, tombstone.clone()),
        RoomRecord::Vcard { vcard } => {
            r.vcard = vcard.clone();
            r.vcard_seq = r.next_seq.saturating_sub(1);
        }
        RoomRecord::Create { .. } | RoomRecord::Destroy => unreachable!("handled above"),
    }
}

/// A room this node serves: one mastered here, by localpart, or the replica
/// of one mastered elsewhere, by its JID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoomKey {
    Mastered(String),
    Mirrored(String),
}
