//! The node's durable state and the records that change it.
//!
//! Every change goes through a [`Record`]: the core applies it to [`State`]
//! and hands it to the shell to append to the log, so the state after a
//! restart is exactly the replay of the log.

mod archive_blocks;
mod archive_prefs;
#[cfg(test)]
mod format_tests;
pub mod link;
mod offline;
pub mod salvage;
pub mod snapshot;

pub use archive_prefs::{ArchiveDefault, ArchivePrefs, MAX_PREF_BYTES, MAX_PREF_JIDS};
pub use link::{apply_link, LinkState, LinkStore, Queued, QueuedEvent};
pub use offline::{OfflineMessage, OfflineQueue};

use crate::common::PeerId;
use crate::model::archive::Archive;
use crate::model::held::HeldSession;
use crate::model::pep::{PepNodes, PepRecord};
use crate::model::replica::{MirrorCache, MirrorRecord};
use crate::model::room::{Archived, RoomRecord, RoomState};
use crate::scram::Credentials;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Log record kinds (the `kind` byte of a log record). Kinds 1 (snapshot)
/// and 2 (other records) hold a record of log format 1 as it is: releases
/// up to bbde3c9 wrote them. Kind 3 holds the format number, then the
/// record in that format.
pub const KIND_SNAPSHOT_V1: u8 = 1;
pub const KIND_RECORD_V1: u8 = 2;
pub const KIND_VERSIONED: u8 = 3;

/// The log format this release writes, and the newest it reads.
///
/// 1. `Record` as releases up to bbde3c9 knew it; links queued wire XML
///    (`LinkOut`).
/// 2. Links queue typed events (`LinkQueued`); `LinkOut` is still read.
///
/// Changing what a stored type means takes a new format number: its
/// decoder below, the older layout kept for reading (as `LegacyState` and
/// `LegacyLinkState` are) and migrated when applied, and a data directory
/// written by the release before the change kept under tests/fixtures with
/// a test that opens it. Appending a variant to an enum keeps older records
/// readable as they are (postcard numbers variants in order), so it needs
/// no new number; reordering, removing or changing a field does.
pub const LOG_FORMAT: u32 = 2;

/// Why a record read from the log could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a newer release (its format number).
    Newer(u32),
    UnknownKind(u8),
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DecodeError::Newer(v) => write!(
                f,
                "written in log format {v} by a newer outpost (this one reads up to {LOG_FORMAT}); \
                 run that release, or restore the backup taken before the upgrade"
            ),
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::Malformed(e) => write!(f, "cannot be decoded ({e})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Subscription {
    #[default]
    None,
    /// We receive the contact's presence.
    To,
    /// The contact receives ours.
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
    pub fn with_to(self, on: bool) -> Subscription {
        Subscription::from_flags(on, self.has_from())
    }
    pub fn with_from(self, on: bool) -> Subscription {
        Subscription::from_flags(self.has_to(), on)
    }
    fn from_flags(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RosterItem {
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Subscription,
    /// We asked to subscribe to the contact and await an answer.
    pub ask_out: bool,
    /// The contact asked to subscribe to us and awaits our answer.
    pub pending_in: bool,
    /// Part of the roster the user sees (false for a bare pending-in entry).
    pub visible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub creds: Credentials,
    /// Keyed by the contact's bare JID.
    pub roster: BTreeMap<String, RosterItem>,
    pub roster_ver: u64,
    pub offline: OfflineQueue,
    pub next_offline_id: u64,
    /// The one-to-one messages the user sent and received (XEP-0313). In
    /// each, `real` is the other party's JID as the stanza addressed it,
    /// and `nick` is empty. (Not in the whole-state snapshots of older
    /// releases, which had none: hence skipped.)
    #[serde(skip)]
    pub archive: Archive,
    #[serde(skip)]
    pub archive_prefs: ArchivePrefs,
    /// When the user last went offline (Unix ms), with the status they
    /// left (XEP-0012).
    #[serde(skip)]
    pub last_seen: Option<LastSeen>,
    /// Contacts (bare JIDs, all in the roster) whose subscription request
    /// will be approved at once (RFC 6121 §3.4 pre-approval).
    #[serde(skip)]
    pub preapproved: BTreeSet<String>,
    /// Its PEP service (XEP-0163): nodes by name.
    #[serde(skip)]
    pub pep: PepNodes,
    /// Addresses it blocks (XEP-0191), as JIDs (full, bare, domain or
    /// domain/resource).
    #[serde(skip)]
    pub blocked: BTreeSet<String>,
    /// Abuse reports it made (XEP-0377), the oldest first.
    #[serde(skip)]
    pub reports: std::collections::VecDeque<AbuseReport>,
}

/// An abuse report (XEP-0377) an account made with a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbuseReport {
    pub jid: String,
    pub reason: String,
    pub text: String,
    pub stamp_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    pub stamp_ms: u64,
    pub status: String,
}

impl Account {
    pub fn new(creds: Credentials) -> Account {
        Account {
            creds,
            roster: BTreeMap::new(),
            roster_ver: 0,
            offline: OfflineQueue::default(),
            next_offline_id: 1,
            archive: Archive::new(),
            archive_prefs: ArchivePrefs::default(),
            last_seen: None,
            preapproved: BTreeSet::new(),
            pep: PepNodes::new(),
            blocked: BTreeSet::new(),
            reports: std::collections::VecDeque::new(),
        }
    }
}

/// The state's layout before `admin` was added (postcard needs every field):
/// snapshots written then still load.
#[derive(Deserialize)]
struct StateBeforeAdmin {
    accounts: BTreeMap<String, Account>,
    rooms: BTreeMap<String, RoomState>,
    links: BTreeMap<PeerId, link::LegacyLinkState>,
    mirrors: BTreeMap<String, MirrorCache>,
}

impl From<StateBeforeAdmin> for LegacyState {
    fn from(old: StateBeforeAdmin) -> LegacyState {
        LegacyState {
            accounts: old.accounts,
            rooms: old.rooms,
            links: old.links,
            mirrors: old.mirrors,
            admin: None,
        }
    }
}

/// The layout of a whole-state snapshot record, as the releases before
/// snapshots came in parts wrote it. Read, never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyState {
    pub accounts: BTreeMap<String, Account>,
    pub rooms: BTreeMap<String, RoomState>,
    pub links: BTreeMap<PeerId, link::LegacyLinkState>,
    pub mirrors: BTreeMap<String, MirrorCache>,
    pub admin: Option<Credentials>,
}

/// For tests that write what older releases wrote.
impl From<State> for LegacyState {
    fn from(s: State) -> LegacyState {
        LegacyState {
            accounts: s.accounts,
            rooms: s.rooms,
            links: s.links.into_iter().map(|(p, l)| (p, l.into())).collect(),
            mirrors: s.mirrors,
            admin: s.admin,
        }
    }
}

impl From<LegacyState> for State {
    fn from(old: LegacyState) -> State {
        State {
            accounts: old.accounts,
            rooms: old.rooms,
            links: old.links.into_iter().map(|(p, l)| (p, l.into())).collect(),
            mirrors: old.mirrors,
            admin: old.admin,
            secret: None,
            held_sessions: Vec::new(),
            kept_epoch: None,
            files: Default::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct State {
    /// Keyed by the account's localpart.
    pub accounts: BTreeMap<String, Account>,
    /// Rooms this node masters, keyed by the room's localpart.
    pub rooms: BTreeMap<String, RoomState>,
    /// Link bookkeeping per peer (a site's domain, or an upstream MUC service).
    pub links: BTreeMap<PeerId, LinkState>,
    /// Replicas of rooms mastered elsewhere, keyed by the room's JID.
    pub mirrors: BTreeMap<String, MirrorCache>,
    /// The admin password of the serial console and the web page (hashed
    /// like account passwords; unset until the first-run setup).
    pub admin: Option<Credentials>,
    /// A random secret made at the first start and kept (the salts shown
    /// for unknown users derive from it).
    pub secret: Option<Vec<u8>>,
    /// Client sessions a graceful stop kept for their resumption, until the
    /// next start takes them back (`Node::start`). Never in a snapshot:
    /// nothing compacts between a stop and the next start.
    #[serde(skip)]
    pub held_sessions: Vec<HeldSession>,
    /// The link epoch of the run whose stop kept them: the next start
    /// goes on with it, so peers do not take it for a node that forgot
    /// its sessions (those that ended said so over the links).
    #[serde(skip)]
    pub kept_epoch: Option<String>,
    /// Files kept here: uploads and other nodes' files (see `files`).
    #[serde(default)]
    pub files: crate::files::FileIndex,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Replaces the whole state (written by compaction before snapshots
    /// came in parts; still read, no longer written).
    Snapshot(LegacyState),
    AccountSet {
        user: String,
        creds: Credentials,
    },
    AccountDel {
        user: String,
    },
    RosterSet {
        user: String,
        contact: String,
        item: RosterItem,
    },
    RosterDel {
        user: String,
        contact: String,
    },
    OfflinePush {
        user: String,
        stamp_ms: u64,
        xml: String,
    },
    /// Drop offline messages with id <= `upto` (they were delivered).
    OfflineDone {
        user: String,
        upto: u64,
    },
    Room {
        room: String,
        change: RoomRecord,
    },
    /// An event queued for a peer as wire XML (log format 1; read, no
    /// longer written: see `LinkQueued`).
    LinkOut {
        peer: PeerId,
        seq: u64,
        xml: String,
    },
    /// The peer has applied our events up to `upto`.
    LinkAcked {
        peer: PeerId,
        upto: u64,
    },
    /// We have applied the peer's event `seq`.
    LinkIn {
        peer: PeerId,
        seq: u64,
    },
    /// A change to the cached replica of a mirrored room (keyed by room JID).
    Mirror {
        key: String,
        change: Box<MirrorRecord>,
    },
    /// The admin password was set or changed.
    AdminPassword {
        creds: Credentials,
    },
    /// Compaction: the records up to `SnapshotEnd` rebuild the whole state
    /// (see `snapshot`).
    SnapshotBegin {
        format: u32,
    },
    SnapshotPart(snapshot::SnapshotPart),
    SnapshotEnd {
        parts: u64,
    },
    /// The node's secret, made at its first start.
    ServerSecret {
        secret: Vec<u8>,
    },
    /// An event queued for a peer, durable before it is sent.
    LinkQueued {
        peer: PeerId,
        queued: Box<Queued>,
    },
    /// A one-to-one message kept in an account's archive.
    AccountArchived {
        user: String,
        msg: Archived,
    },
    /// Drop an account's archived messages up to and including `upto`.
    AccountArchiveTrim {
        user: String,
        upto: u64,
    },
    AccountArchivePrefs {
        user: String,
        prefs: ArchivePrefs,
    },
    /// The account's last resource went offline.
    AccountLastSeen {
        user: String,
        last: LastSeen,
    },
    /// The user pre-approved (or no longer pre-approves) a contact's
    /// subscription request.
    RosterPreapproved {
        user: String,
        contact: String,
        on: bool,
    },
    /// A session that can be resumed, kept by a graceful stop.
    SessionHeld(Box<HeldSession>),
    /// The start took the sessions kept by the stop before it.
    HeldSessionsTaken,
    /// The stop kept sessions: the next start keeps the link epoch.
    LinkEpochKept {
        epoch: String,
    },
    /// A change to a node of an account's PEP service.
    Pep {
        user: String,
        node: String,
        change: PepRecord,
    },
    /// The account blocks (or no longer blocks) these addresses; no
    /// longer blocking none means none at all.
    Blocklist {
        user: String,
        jids: Vec<String>,
        blocked: bool,
    },
    AbuseReported {
        user: String,
        report: AbuseReport,
    },
    /// The domains an upstream said it reaches (its own and its other
    /// sites'), for routing one-to-one traffic.
    LinkRoutes {
        peer: PeerId,
        domains: Vec<String>,
    },
    /// A file kept here: an upload, or another node's file (its fetch
    /// begun, or done when `complete`).
    FileStored {
        key: crate::files::FileKey,
        file: crate::files::StoredFile,
    },
    FileRemoved {
        key: crate::files::FileKey,
    },
}

impl Record {
    /// The kind byte of the log record `encode` makes.
    pub fn kind(&self) -> u8 {
        KIND_VERSIONED
    }

    /// The record in the current log format, its format number first.
    pub fn encode(&self) -> Vec<u8> {
        let out = postcard::to_allocvec(&LOG_FORMAT).expect("a number serialises");
        postcard::to_extend(self, out).expect("records always serialise")
    }

    /// The record as log format 1 stored it (kind [`KIND_RECORD_V1`]), for
    /// tests that write what older releases wrote.
    pub fn encode_v1(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("records always serialise")
    }

    /// Replace, in every stored stanza the record carries, characters XML
    /// 1.0 does not allow (older releases stored them as sent; once sent to
    /// a client they broke its stream on every delivery). Applied to what
    /// is read from the log, so nothing stored can break a stream again.
    pub fn repaired(mut self) -> Record {
        fn fix(s: &mut String) {
            if let std::borrow::Cow::Owned(fixed) = crate::xml::repair(s) {
                *s = fixed;
            }
        }
        fn fix_archive<'a>(msgs: impl IntoIterator<Item = &'a mut crate::model::room::Archived>) {
            msgs.into_iter().for_each(|m| fix(&mut m.xml));
        }
        fn fix_state(s: &mut LegacyState) {
            for acc in s.accounts.values_mut() {
                acc.offline.map_xml(fix);
            }
            s.rooms.values_mut().for_each(|r| r.archive.map_xml(fix));
            s.mirrors
                .values_mut()
                .for_each(|m| m.state.archive.map_xml(fix));
            for l in s.links.values_mut() {
                l.unacked.iter_mut().for_each(|(_, x)| fix(x));
            }
        }
        use crate::model::replica::MirrorRecord;
        use crate::model::room::RoomRecord;
        use snapshot::SnapshotPart;
        match &mut self {
            Record::OfflinePush { xml, .. } | Record::LinkOut { xml, .. } => fix(xml),
            Record::AccountArchived { msg, .. } => fix(&mut msg.xml),
            Record::Room {
                change: RoomRecord::Message { msg },
                ..
            } => fix(&mut msg.xml),
            Record::Mirror { change, .. } => match change.as_mut() {
                MirrorRecord::Message { msg } => fix(&mut msg.xml),
                MirrorRecord::Synced { history, .. } => fix_archive(history),
                _ => {}
            },
            Record::SnapshotPart(part) => match part {
                SnapshotPart::Offline { messages, .. } => {
                    messages.iter_mut().for_each(|m| fix(&mut m.xml))
                }
                SnapshotPart::Archive { messages, .. }
                | SnapshotPart::MirrorArchive { messages, .. }
                | SnapshotPart::AccountArchive { messages, .. } => fix_archive(messages),
                SnapshotPart::Unacked { events, .. } => {
                    for q in events {
                        if let QueuedEvent::Wire(x) = &mut q.event {
                            fix(x)
                        }
                    }
                }
                _ => {}
            },
            Record::Snapshot(state) => fix_state(state),
            _ => {}
        }
        self
    }

    /// A record as the log holds it, in whichever format it was written:
    /// what older formats stored is migrated when it is applied.
    pub fn decode(kind: u8, bytes: &[u8]) -> Result<Record, DecodeError> {
        match kind {
            KIND_SNAPSHOT_V1 | KIND_RECORD_V1 => Record::decode_v1(bytes),
            KIND_VERSIONED => {
                let (format, body) = postcard::take_from_bytes::<u32>(bytes)
                    .map_err(|e| DecodeError::Malformed(e.to_string()))?;
                match format {
                    1 => Record::decode_v1(body),
                    LOG_FORMAT => postcard::from_bytes(body)
                        .map_err(|e| DecodeError::Malformed(e.to_string())),
                    newer => Err(DecodeError::Newer(newer)),
                }
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }

    /// Format 1: the variants of `Record` up to `ServerSecret`, as they are.
    fn decode_v1(bytes: &[u8]) -> Result<Record, DecodeError> {
        let record = postcard::from_bytes(bytes).or_else(|e| match bytes.split_first() {
            // A snapshot written before the admin password was part of the state.
            Some((0, state)) => match postcard::take_from_bytes::<StateBeforeAdmin>(state) {
                Ok((old, [])) => Ok(Record::Snapshot(old.into())),
                _ => Err(DecodeError::Malformed(e.to_string())),
            },
            _ => Err(DecodeError::Malformed(e.to_string())),
        })?;
        match record {
            Record::LinkQueued { .. } => Err(DecodeError::Malformed(
                "a typed link event in a format 1 record".into(),
            )),
            r => Ok(r),
        }
    }
}

/// The accounts' part of the state: what the IM router keeps durable.
pub type Accounts = BTreeMap<String, Account>;

/// Apply an account record (accounts, rosters, offline messages) to the
/// accounts; other records leave them as they are.
pub fn apply_account(accounts: &mut Accounts, record: &Record) {
    match record {
        Record::AccountSet { user, creds } => match accounts.get_mut(user) {
            Some(acc) => acc.creds = creds.clone(),
            None => {
                accounts.insert(user.clone(), Account::new(creds.clone()));
            }
        },
        Record::AccountDel { user } => {
            accounts.remove(user);
        }
        Record::RosterSet {
            user,
            contact,
            item,
        } => {
            if let Some(acc) = accounts.get_mut(user) {
                let was_visible = acc.roster.get(contact).is_some_and(|i| i.visible);
                if item.visible || was_visible {
                    acc.roster_ver += 1;
                }
                acc.roster.insert(contact.clone(), item.clone());
            }
        }
        Record::RosterDel { user, contact } => {
            if let Some(acc) = accounts.get_mut(user) {
                acc.preapproved.remove(contact);
                if acc.roster.remove(contact).is_some_and(|i| i.visible) {
                    acc.roster_ver += 1;
                }
            }
        }
        Record::OfflinePush {
            user,
            stamp_ms,
            xml,
        } => {
            if let Some(acc) = accounts.get_mut(user) {
                let id = acc.next_offline_id;
                acc.next_offline_id += 1;
                acc.offline.push(OfflineMessage {
                    id,
                    stamp_ms: *stamp_ms,
                    xml: xml.clone(),
                });
            }
        }
        Record::OfflineDone { user, upto } => {
            if let Some(acc) = accounts.get_mut(user) {
                acc.offline.drop_upto(*upto);
            }
        }
        Record::AccountArchived { user, msg } => {
            if let Some(acc) = accounts.get_mut(user) {
                acc.archive.push(msg.clone());
            }
        }
        Record::AccountArchiveTrim { user, upto } => {
            if let Some(acc) = accounts.get_mut(user) {
                acc.archive.drop_upto(*upto);
            }
        }
        Record::AccountArchivePrefs { user, prefs } => {
            if let Some(acc) = accounts.get_mut(user) {
                acc.archive_prefs = prefs.clone();
            }
        }
        Record::AccountLastSeen { user, last } => {
            if let Some(acc) = accounts.get_mut(user) {
                acc.last_seen = Some(last.clone());
            }
        }
        Record::RosterPreapproved { user, contact, on } => {
            if let Some(acc) = accounts.get_mut(user) {
                match on {
                    true => acc.preapproved.insert(contact.clone()),
                    false => acc.preapproved.remove(contact),
                };
            }
        }
        Record::Blocklist {
            user,
            jids,
            blocked,
        } => {
            if let Some(acc) = accounts.get_mut(user) {
                match (blocked, jids.is_empty()) {
                    (true, _) => acc.blocked.extend(jids.iter().cloned()),
                    (false, true) => acc.blocked.clear(),
                    (false, false) => jids.iter().for_each(|j| {
                        acc.blocked.remove(j);
                    }),
                }
            }
        }
        Record::AbuseReported { user, report } => {
            if let Some(acc) = accounts.get_mut(user) {
                if acc.reports.len() >= crate::im::REPORTS_MAX {
                    acc.reports.pop_front();
                }
                acc.reports.push_back(report.clone());
            }
        }
        Record::Pep { user, node, change } => {
            if let Some(acc) = accounts.get_mut(user) {
                crate::model::pep::apply(&mut acc.pep, node, change);
            }
        }
        _ => {}
    }
}

/// Bytes of offline messages kept for all accounts.
pub fn offline_bytes(accounts: &Accounts) -> u64 {
    accounts.values().map(|a| a.offline.bytes()).sum()
}

impl State {
    /// Bytes of offline messages kept for all accounts.
    pub fn offline_bytes(&self) -> u64 {
        offline_bytes(&self.accounts)
    }

    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Snapshot(s) => {
                *self = s.clone().into();
            }
            Record::AccountSet { .. }
            | Record::AccountDel { .. }
            | Record::RosterSet { .. }
            | Record::RosterDel { .. }
            | Record::OfflinePush { .. }
            | Record::OfflineDone { .. }
            | Record::AccountArchived { .. }
            | Record::AccountArchiveTrim { .. }
            | Record::AccountArchivePrefs { .. }
            | Record::AccountLastSeen { .. }
            | Record::RosterPreapproved { .. }
            | Record::Pep { .. }
            | Record::Blocklist { .. }
            | Record::AbuseReported { .. } => apply_account(&mut self.accounts, record),
            Record::Room { room, change } => {
                crate::model::room::apply(&mut self.rooms, room, change)
            }
            Record::LinkQueued { .. }
            | Record::LinkOut { .. }
            | Record::LinkAcked { .. }
            | Record::LinkIn { .. }
            | Record::LinkRoutes { .. } => apply_link(&mut self.links, record),
            Record::Mirror { key, change } => {
                crate::model::replica::apply(&mut self.mirrors, key, change)
            }
            Record::AdminPassword { creds } => self.admin = Some(creds.clone()),
            // Snapshots are assembled by `snapshot::Replay`, never committed.
            Record::SnapshotPart(part) => self.apply_part(part),
            Record::SnapshotBegin { .. } | Record::SnapshotEnd { .. } => {}
            Record::ServerSecret { secret } => self.secret = Some(secret.clone()),
            Record::SessionHeld(held) => self.held_sessions.push((**held).clone()),
            Record::HeldSessionsTaken => {
                self.held_sessions.clear();
                self.kept_epoch = None;
            }
            Record::LinkEpochKept { epoch } => self.kept_epoch = Some(epoch.clone()),
            Record::FileStored { .. } | Record::FileRemoved { .. } => {
                crate::files::apply(&mut self.files, record)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_from_before_the_admin_password_still_loads() {
        #[derive(Serialize)]
        struct Old<'a> {
            accounts: &'a BTreeMap<String, Account>,
            rooms: &'a BTreeMap<String, RoomState>,
            links: &'a BTreeMap<PeerId, LinkState>,
            mirrors: &'a BTreeMap<String, MirrorCache>,
        }
        let mut state = State::default();
        state.apply(&Record::AccountSet {
            user: "a".into(),
            creds: Credentials::derive("pw", b"salt", 4096),
        });
        let old = Old {
            accounts: &state.accounts,
            rooms: &state.rooms,
            links: &state.links,
            mirrors: &state.mirrors,
        };
        let mut bytes = vec![0u8];
        bytes.extend(postcard::to_allocvec(&old).unwrap());
        let Record::Snapshot(decoded) = Record::decode(KIND_SNAPSHOT_V1, &bytes).unwrap() else {
            panic!("not a snapshot");
        };
        assert_eq!(State::from(decoded), state);
    }

    #[test]
    fn records_round_trip_and_replay_gives_the_same_state() {
        let creds = Credentials::derive("pw", b"salt", 4096);
        let records = vec![
            Record::AccountSet {
                user: "a".into(),
                creds: creds.clone(),
            },
            Record::RosterSet {
                user: "a".into(),
                contact: "b@localhost".into(),
                item: RosterItem {
                    visible: true,
                    subscription: Subscription::To,
                    ..Default::default()
                },
            },
            Record::OfflinePush {
                user: "a".into(),
                stamp_ms: 5,
                xml: "<message/>".into(),
            },
            Record::OfflinePush {
                user: "a".into(),
                stamp_ms: 6,
                xml: "<message/>".into(),
            },
            Record::OfflineDone {
                user: "a".into(),
                upto: 1,
            },
        ];
        let mut direct = State::default();
        let mut replayed = State::default();
        for r in &records {
            direct.apply(r);
            replayed.apply(&Record::decode(r.kind(), &r.encode()).unwrap());
        }
        assert_eq!(direct, replayed);
        let acc = &direct.accounts["a"];
        assert_eq!(acc.roster_ver, 1);
        assert_eq!(acc.offline.len(), 1);
        assert_eq!(acc.offline.iter().next().unwrap().id, 2);
        let mut from_snapshot = State::default();
        let legacy = Record::Snapshot(direct.clone().into());
        from_snapshot.apply(&Record::decode(KIND_SNAPSHOT_V1, &legacy.encode_v1()).unwrap());
        assert_eq!(from_snapshot, direct);
    }

    fn typed_event(seq: u64) -> Queued {
        let event = crate::model::event::LinkEvent::Resync {
            room: "ops".into(),
            last_seq: seq,
        };
        Queued {
            seq,
            bytes: event.encode().to_xml(crate::link::event::DMUC).len() as u64,
            event: QueuedEvent::Typed(Box::new(event)),
        }
    }

    #[test]
    fn link_events_queued_by_an_older_release_are_resent_as_they_were() {
        let wire = typed_event(1).to_wire();
        let old = Record::LinkOut {
            peer: "hq".into(),
            seq: 1,
            xml: wire.clone(),
        };
        // As the older release wrote it: kind 2, no format number.
        let read = Record::decode(KIND_RECORD_V1, &old.encode_v1()).unwrap();
        let mut state = State::default();
        state.apply(&read);
        let queued = Record::LinkQueued {
            peer: "hq".into(),
            queued: Box::new(typed_event(2)),
        };
        state.apply(&Record::decode(queued.kind(), &queued.encode()).unwrap());
        let link = &state.links["hq"];
        assert_eq!(link.next_out, 3);
        assert_eq!(link.unacked[0].to_wire(), wire);
        assert_eq!(
            link.unacked_bytes,
            wire.len() as u64 + link.unacked[1].to_wire().len() as u64
        );
        // Both read back as events (the old one decoded from its XML).
        let events: Vec<_> = link
            .unacked
            .iter()
            .map(|q| q.event("conference.hq"))
            .collect();
        assert!(events
            .iter()
            .all(|e| matches!(e, Some(crate::model::event::LinkEvent::Resync { .. }))));
        state.apply(&Record::LinkAcked {
            peer: "hq".into(),
            upto: 1,
        });
        assert_eq!(state.links["hq"].unacked.len(), 1);
        assert_eq!(
            state.links["hq"].unacked_bytes,
            state.links["hq"].unacked[0].bytes
        );
    }

    #[test]
    fn a_record_of_a_newer_format_or_unknown_kind_is_refused_with_a_reason() {
        let record = Record::AccountDel { user: "a".into() };
        let mut newer = postcard::to_allocvec(&(LOG_FORMAT + 1)).unwrap();
        newer.extend(record.encode_v1());
        let err = Record::decode(KIND_VERSIONED, &newer).unwrap_err();
        assert_eq!(err, DecodeError::Newer(LOG_FORMAT + 1));
        assert!(err.to_string().contains("newer outpost"), "{err}");
        assert_eq!(
            Record::decode(9, &record.encode()).unwrap_err(),
            DecodeError::UnknownKind(9)
        );
        // Format 1 never held typed link events.
        let typed = Record::LinkQueued {
            peer: "hq".into(),
            queued: Box::new(typed_event(1)),
        };
        assert!(matches!(
            Record::decode(KIND_RECORD_V1, &typed.encode_v1()),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn subscription_flags() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
    }
}
