//! Snapshots as many bounded records, and replaying the log into state.
//!
//! Compaction writes the whole state as `SnapshotBegin`, then parts of at
//! most about [`PART_BYTES`] each (an account, a slice of a roster, of an
//! offline queue, of an archive…), then `SnapshotEnd`, into a fresh
//! segment; the older segments are dropped only once all of it is durable.
//! No record ever has to hold the whole state, so no state is too big to
//! be written or read back. The node writes a snapshot a step per turn
//! ([`Compaction`]), its own records going on between the steps. Replay
//! builds a snapshot aside and swaps it in at its end; a snapshot a crash
//! left unfinished is ignored, and the state from the records before and
//! beside it stands.

use super::AbuseReport;
use super::{
    Account, ArchivePrefs, LastSeen, LinkState, OfflineMessage, Queued, Record, RosterItem, State,
};
use crate::common::PeerId;
use crate::model::archive::Archive;
use crate::model::block::{Block, Extent, Packed};
use crate::model::pep::{PepConfig, PepItem, PepNode};
use crate::model::replica::MirrorCache;
use crate::model::room::{Archived, RoomState};
use crate::scram::Credentials;
use crate::store::{Log, OpenError, RecordRef, Recovery, Storage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io;

/// Format of the snapshot parts; a reader refuses a format it does not know.
///
/// 1. Parts follow each other from `SnapshotBegin` to `SnapshotEnd`.
/// 2. The node's own records may come between the parts (the snapshot is
///    written a little per turn): one for an entity whose parts were
///    already written applies to the snapshot too (see `Replay`). Format 1
///    snapshots read the same way. Releases that know only format 1 refuse
///    a log with a format 2 snapshot rather than misread it.
/// 3. Archives' older messages come as compressed blocks
///    (`ArchiveBlocks`, `MirrorArchiveBlocks`) between their loose
///    messages. Format 2 snapshots read the same way.
/// 4. Offline queues likewise (`OfflineBlocks`). Formats 2 and 3 read the
///    same way.
/// 5. Accounts' archives (`AccountArchive`, `AccountArchiveBlocks`),
///    archive preferences and when each account was last seen. Formats 2
///    to 4 read the same way (their accounts had none).
/// 6. Accounts' PEP nodes (`Pep`), blocklists and abuse reports; the
///    messages moderators retracted (`ArchiveReplaced`,
///    `MirrorArchiveReplaced`). Formats 2 to 5 read the same way.
/// 7. Explicit subscriptions to PEP nodes (`PepSubscribers`); rooms' and
///    replicas' vCards (`RoomVcard`, `MirrorVcard`); the domains an
///    upstream reaches (`LinkRoutes`). Formats 2 to 6 read the same way.
pub const FORMAT: u32 = 7;
/// A part closes once its contents reach this many bytes (so a part is at
/// most this plus one item, and every item is bounded on its own).
pub const PART_BYTES: usize = 1024 * 1024;
/// Snapshot records are committed in groups of about this many bytes.
const COMMIT_BYTES: usize = 4 * 1024 * 1024;
/// Snapshot bytes an incremental compaction writes per turn (at least one
/// entity: its parts are never split across turns).
pub const STEP_BYTES: u64 = 256 * 1024;

/// One piece of a snapshot. Collections come in slices, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotPart {
    Account {
        user: String,
        creds: Credentials,
        roster_ver: u64,
        next_offline_id: u64,
    },
    Roster {
        user: String,
        items: Vec<(String, RosterItem)>,
    },
    Offline {
        user: String,
        messages: Vec<OfflineMessage>,
    },
    /// A mastered room without its archive (that follows in slices).
    Room {
        room: String,
        state: Box<RoomState>,
    },
    Archive {
        room: String,
        messages: Vec<Archived>,
    },
    Link {
        peer: PeerId,
        next_out: u64,
        last_in: u64,
    },
    Unacked {
        peer: PeerId,
        events: Vec<Queued>,
    },
    /// A mirrored room's replica without its archive.
    Mirror {
        key: String,
        cache: Box<MirrorCache>,
    },
    MirrorArchive {
        key: String,
        messages: Vec<Archived>,
    },
    Admin {
        creds: Credentials,
    },
    Secret {
        secret: Vec<u8>,
    },
    /// Sealed blocks of a room's archive, in order (format 3).
    ArchiveBlocks {
        room: String,
        blocks: Vec<Block>,
    },
    /// Sealed blocks of a replica's archive, in order (format 3).
    MirrorArchiveBlocks {
        key: String,
        blocks: Vec<Block>,
    },
    /// Sealed blocks of an account's offline queue, in order (format 4).
    OfflineBlocks {
        user: String,
        blocks: Vec<Block>,
    },
    /// An account's archive: loose messages (format 5).
    AccountArchive {
        user: String,
        messages: Vec<Archived>,
    },
    /// Sealed blocks of an account's archive, in order (format 5).
    AccountArchiveBlocks {
        user: String,
        blocks: Vec<Block>,
    },
    /// An account's archive preferences, when not the default (format 5).
    AccountArchivePrefs {
        user: String,
        prefs: ArchivePrefs,
    },
    /// When the account last went offline (format 5).
    AccountLastSeen {
        user: String,
        last: LastSeen,
    },
    /// Contacts the account pre-approved (format 5).
    Preapproved {
        user: String,
        contacts: Vec<String>,
    },
    /// A node of the account's PEP service (format 6).
    Pep {
        user: String,
        node: String,
        config: PepConfig,
        items: Vec<PepItem>,
    },
    /// The addresses the account blocks (format 6).
    Blocklist {
        user: String,
        jids: Vec<String>,
    },
    /// The abuse reports it made (format 6).
    AbuseReports {
        user: String,
        reports: Vec<AbuseReport>,
    },
    /// Messages of a room's archive that moderators retracted, by sequence
    /// number, as they read now (format 6).
    ArchiveReplaced {
        room: String,
        items: Vec<(u64, String)>,
    },
    MirrorArchiveReplaced {
        key: String,
        items: Vec<(u64, String)>,
    },
    /// Who subscribed to a PEP node explicitly (format 7).
    PepSubscribers {
        user: String,
        node: String,
        jids: Vec<String>,
    },
    /// A room's vCard, and a replica's (format 7).
    RoomVcard {
        room: String,
        vcard: String,
        seq: u64,
    },
    MirrorVcard {
        key: String,
        vcard: String,
    },
    /// The domains an upstream reaches (format 7).
    LinkRoutes {
        peer: PeerId,
        domains: Vec<String>,
    },
    /// A file kept here (format 7, added later: older nodes kept none).
    File {
        key: crate::files::FileKey,
        file: crate::files::StoredFile,
    },
}

impl SnapshotPart {
    /// Add the archive files it refers to to `files`, with the end of what
    /// it refers to in each (see `State::block_files`).
    fn note_extents(&self, files: &mut BTreeMap<u32, u64>) {
        for at in self.extents() {
            let end = files.entry(at.file).or_insert(0);
            *end = (*end).max(at.offset.saturating_add(u64::from(at.len)));
        }
    }

    /// Where the archive blocks it refers to are stored.
    fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        let blocks = match self {
            SnapshotPart::ArchiveBlocks { blocks, .. }
            | SnapshotPart::MirrorArchiveBlocks { blocks, .. }
            | SnapshotPart::OfflineBlocks { blocks, .. }
            | SnapshotPart::AccountArchiveBlocks { blocks, .. } => &blocks[..],
            _ => &[],
        };
        blocks.iter().filter_map(|b| match b.packed {
            Packed::Stored(at) => Some(at),
            Packed::Held(_) => None,
        })
    }
}

impl State {
    /// Forget one entity (an account, a room, a link, a replica…).
    pub(crate) fn remove_entity(&mut self, entity: &Entity) {
        match entity {
            Entity::Account(user) => drop(self.accounts.remove(user)),
            Entity::Room(room) => drop(self.rooms.remove(room)),
            Entity::Link(peer) => drop(self.links.remove(peer)),
            Entity::Mirror(key) => drop(self.mirrors.remove(key)),
            Entity::Admin => self.admin = None,
            Entity::Secret => self.secret = None,
            Entity::File(key) => drop(self.files.remove(key)),
        }
    }

    /// Apply one snapshot part to a state being rebuilt from nothing.
    pub(crate) fn apply_part(&mut self, part: &SnapshotPart) {
        match part {
            SnapshotPart::Account {
                user,
                creds,
                roster_ver,
                next_offline_id,
            } => {
                self.accounts.insert(
                    user.clone(),
                    Account {
                        roster_ver: *roster_ver,
                        next_offline_id: *next_offline_id,
                        ..Account::new(creds.clone())
                    },
                );
            }
            SnapshotPart::Roster { user, items } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.roster.extend(items.iter().cloned());
                }
            }
            SnapshotPart::Offline { user, messages } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    for m in messages {
                        acc.offline.push(m.clone());
                    }
                }
            }
            SnapshotPart::Room { room, state } => {
                self.rooms.insert(room.clone(), state.as_ref().clone());
            }
            SnapshotPart::Archive { room, messages } => {
                if let Some(r) = self.rooms.get_mut(room) {
                    extend_archive(r, messages);
                }
            }
            SnapshotPart::Link {
                peer,
                next_out,
                last_in,
            } => {
                self.links.insert(
                    peer.clone(),
                    LinkState {
                        next_out: *next_out,
                        unacked: VecDeque::new(),
                        last_in: *last_in,
                        unacked_bytes: 0,
                        routes: Vec::new(),
                    },
                );
            }
            SnapshotPart::Unacked { peer, events } => {
                if let Some(l) = self.links.get_mut(peer) {
                    l.unacked_bytes += events.iter().map(|q| q.bytes).sum::<u64>();
                    l.unacked.extend(events.iter().cloned());
                }
            }
            SnapshotPart::Mirror { key, cache } => {
                self.mirrors.insert(key.clone(), cache.as_ref().clone());
            }
            SnapshotPart::MirrorArchive { key, messages } => {
                if let Some(c) = self.mirrors.get_mut(key) {
                    extend_archive(&mut c.state, messages);
                }
            }
            SnapshotPart::Admin { creds } => self.admin = Some(creds.clone()),
            SnapshotPart::Secret { secret } => self.secret = Some(secret.clone()),
            SnapshotPart::ArchiveBlocks { room, blocks } => {
                if let Some(r) = self.rooms.get_mut(room) {
                    extend_blocks(r, blocks);
                }
            }
            SnapshotPart::MirrorArchiveBlocks { key, blocks } => {
                if let Some(c) = self.mirrors.get_mut(key) {
                    extend_blocks(&mut c.state, blocks);
                }
            }
            SnapshotPart::ArchiveReplaced { room, items } => {
                if let Some(r) = self.rooms.get_mut(room) {
                    for (seq, xml) in items {
                        r.archive.replace(*seq, xml.clone());
                    }
                }
            }
            SnapshotPart::MirrorArchiveReplaced { key, items } => {
                if let Some(c) = self.mirrors.get_mut(key) {
                    for (seq, xml) in items {
                        c.state.archive.replace(*seq, xml.clone());
                    }
                }
            }
            SnapshotPart::OfflineBlocks { user, blocks } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    for block in blocks {
                        acc.offline.archive_mut().push_block(block.clone());
                    }
                }
            }
            SnapshotPart::AccountArchive { user, messages } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.archive.extend(messages.iter().cloned());
                }
            }
            SnapshotPart::AccountArchiveBlocks { user, blocks } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    for block in blocks {
                        acc.archive.push_block(block.clone());
                    }
                }
            }
            SnapshotPart::AccountArchivePrefs { user, prefs } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.archive_prefs = prefs.clone();
                }
            }
            SnapshotPart::AccountLastSeen { user, last } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.last_seen = Some(last.clone());
                }
            }
            SnapshotPart::Preapproved { user, contacts } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.preapproved.extend(contacts.iter().cloned());
                }
            }
            SnapshotPart::Pep {
                user,
                node,
                config,
                items,
            } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    let mut n = PepNode::new(config.clone());
                    n.items = items.iter().cloned().collect();
                    acc.pep.insert(node.clone(), n);
                }
            }
            SnapshotPart::LinkRoutes { peer, domains } => {
                if let Some(l) = self.links.get_mut(peer) {
                    l.routes = domains.clone();
                }
            }
            SnapshotPart::RoomVcard { room, vcard, seq } => {
                if let Some(r) = self.rooms.get_mut(room) {
                    r.vcard = Some(vcard.clone());
                    r.vcard_seq = *seq;
                }
            }
            SnapshotPart::File { key, file } => {
                self.files.insert(key.clone(), file.clone());
            }
            SnapshotPart::MirrorVcard { key, vcard } => {
                if let Some(m) = self.mirrors.get_mut(key) {
                    m.state.vcard = Some(vcard.clone());
                }
            }
            SnapshotPart::PepSubscribers { user, node, jids } => {
                let n = self
                    .accounts
                    .get_mut(user)
                    .and_then(|a| a.pep.get_mut(node));
                if let Some(n) = n {
                    n.subscribers.extend(jids.iter().cloned());
                }
            }
            SnapshotPart::Blocklist { user, jids } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.blocked.extend(jids.iter().cloned());
                }
            }
            SnapshotPart::AbuseReports { user, reports } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    acc.reports.extend(reports.iter().cloned());
                }
            }
        }
    }
}

fn extend_archive(room: &mut RoomState, messages: &[Archived]) {
    room.archive.extend(messages.iter().cloned());
}

fn extend_blocks(room: &mut RoomState, blocks: &[Block]) {
    for block in blocks {
        room.archive.push_block(block.clone());
    }
}

/// An archive's parts: the loose messages, the sealed blocks (as many to a
/// part as fit in [`PART_BYTES`]), then the open messages.
fn archive_parts(
    archive: &Archive,
    messages_part: impl Fn(Vec<Archived>) -> SnapshotPart,
    blocks_part: impl Fn(Vec<Block>) -> SnapshotPart,
    mut emit: impl FnMut(SnapshotPart) -> io::Result<()>,
) -> io::Result<()> {
    let (loose, blocks, open) = archive.stored();
    slices(&loose, archived_size, |m| emit(messages_part(m)))?;
    slices(&blocks, block_size, |b| emit(blocks_part(b)))?;
    slices(&open, archived_size, |m| emit(messages_part(m)))
}

fn block_size(b: &Block) -> usize {
    let packed = if b.packed.is_held() {
        b.packed.len()
    } else {
        16
    };
    packed + 48
}

/// Cut a collection into parts of about [`PART_BYTES`] each.
/// An archive's replaced messages (moderators' tombstones), in slices.
fn replaced_parts(
    archive: &crate::model::archive::Archive,
    emit: &mut dyn FnMut(Vec<(u64, String)>) -> io::Result<()>,
) -> io::Result<()> {
    let replaced: Vec<(u64, String)> = archive
        .replaced()
        .iter()
        .map(|(s, x)| (*s, x.clone()))
        .collect();
    slices(&replaced, |(_, xml)| xml.len(), emit)
}

fn slices<'a, T: Clone + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    size: impl Fn(&T) -> usize,
    mut emit: impl FnMut(Vec<T>) -> io::Result<()>,
) -> io::Result<()> {
    let mut part = Vec::new();
    let mut bytes = 0;
    for item in items {
        bytes += size(item) + 16;
        part.push(item.clone());
        if bytes >= PART_BYTES {
            emit(std::mem::take(&mut part))?;
            bytes = 0;
        }
    }
    if !part.is_empty() {
        emit(part)?;
    }
    Ok(())
}

fn archived_size(m: &Archived) -> usize {
    m.xml.len() + m.stanza_id.len() + m.nick.len() + m.real.len()
}

/// What a snapshot part or a record is about. A snapshot writes one entity
/// at a time, all its parts together, in this order (variants, then keys).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    Account(String),
    Room(String),
    Link(PeerId),
    Mirror(String),
    Admin,
    Secret,
    File(crate::files::FileKey),
}

impl Entity {
    pub fn of_part(part: &SnapshotPart) -> Entity {
        match part {
            SnapshotPart::Account { user, .. }
            | SnapshotPart::Roster { user, .. }
            | SnapshotPart::Offline { user, .. }
            | SnapshotPart::OfflineBlocks { user, .. }
            | SnapshotPart::AccountArchive { user, .. }
            | SnapshotPart::AccountArchiveBlocks { user, .. }
            | SnapshotPart::AccountArchivePrefs { user, .. }
            | SnapshotPart::AccountLastSeen { user, .. }
            | SnapshotPart::Preapproved { user, .. }
            | SnapshotPart::Pep { user, .. }
            | SnapshotPart::PepSubscribers { user, .. }
            | SnapshotPart::Blocklist { user, .. }
            | SnapshotPart::AbuseReports { user, .. } => Entity::Account(user.clone()),
            SnapshotPart::Room { room, .. }
            | SnapshotPart::Archive { room, .. }
            | SnapshotPart::ArchiveBlocks { room, .. }
            | SnapshotPart::ArchiveReplaced { room, .. }
            | SnapshotPart::RoomVcard { room, .. } => Entity::Room(room.clone()),
            SnapshotPart::Link { peer, .. }
            | SnapshotPart::Unacked { peer, .. }
            | SnapshotPart::LinkRoutes { peer, .. } => Entity::Link(peer.clone()),
            SnapshotPart::Mirror { key, .. }
            | SnapshotPart::MirrorArchive { key, .. }
            | SnapshotPart::MirrorArchiveBlocks { key, .. }
            | SnapshotPart::MirrorArchiveReplaced { key, .. }
            | SnapshotPart::MirrorVcard { key, .. } => Entity::Mirror(key.clone()),
            SnapshotPart::Admin { .. } => Entity::Admin,
            SnapshotPart::Secret { .. } => Entity::Secret,
            SnapshotPart::File { key, .. } => Entity::File(key.clone()),
        }
    }

    /// The entity a record changes (none for the snapshot's own records).
    pub fn of_record(record: &Record) -> Option<Entity> {
        Some(match record {
            Record::AccountSet { user, .. }
            | Record::AccountDel { user }
            | Record::RosterSet { user, .. }
            | Record::RosterDel { user, .. }
            | Record::OfflinePush { user, .. }
            | Record::OfflineDone { user, .. }
            | Record::AccountArchived { user, .. }
            | Record::AccountArchiveTrim { user, .. }
            | Record::AccountArchivePrefs { user, .. }
            | Record::AccountLastSeen { user, .. }
            | Record::RosterPreapproved { user, .. }
            | Record::Pep { user, .. }
            | Record::Blocklist { user, .. }
            | Record::AbuseReported { user, .. } => Entity::Account(user.clone()),
            Record::Room { room, .. } => Entity::Room(room.clone()),
            Record::LinkOut { peer, .. }
            | Record::LinkAcked { peer, .. }
            | Record::LinkIn { peer, .. }
            | Record::LinkQueued { peer, .. }
            | Record::LinkRoutes { peer, .. } => Entity::Link(peer.clone()),
            Record::Mirror { key, .. } => Entity::Mirror(key.clone()),
            Record::AdminPassword { .. } => Entity::Admin,
            Record::ServerSecret { .. } => Entity::Secret,
            Record::FileStored { key, .. } | Record::FileRemoved { key } => {
                Entity::File(key.clone())
            }
            // Kept only from a stop to the next start (see `State::held_sessions`).
            Record::SessionHeld(_) | Record::HeldSessionsTaken | Record::LinkEpochKept { .. } => {
                return None
            }
            Record::Snapshot(_)
            | Record::SnapshotBegin { .. }
            | Record::SnapshotPart(_)
            | Record::SnapshotEnd { .. } => return None,
        })
    }

    /// The first entity of `state` after `after` (the first of all for None).
    pub fn next(state: &State, after: Option<&Entity>) -> Option<Entity> {
        use std::ops::Bound::{Excluded, Unbounded};
        fn first_after<K: Ord + Clone, V>(map: &BTreeMap<K, V>, after: Option<&K>) -> Option<K> {
            let mut keys = match after {
                Some(k) => map.range((Excluded(k), Unbounded)),
                None => map.range(..),
            };
            keys.next().map(|(k, _)| k.clone())
        }
        let account = |k| first_after(&state.accounts, k).map(Entity::Account);
        let room = |k| first_after(&state.rooms, k).map(Entity::Room);
        let link = |k| first_after(&state.links, k).map(Entity::Link);
        let mirror = |k| first_after(&state.mirrors, k).map(Entity::Mirror);
        let admin = || state.admin.as_ref().map(|_| Entity::Admin);
        let secret = || state.secret.as_ref().map(|_| Entity::Secret);
        let file = |k| first_after(&state.files, k).map(Entity::File);
        // The rest of `after`'s kind, then every later kind from its start.
        match after {
            None => account(None)
                .or_else(|| room(None))
                .or_else(|| link(None))
                .or_else(|| mirror(None))
                .or_else(admin)
                .or_else(secret)
                .or_else(|| file(None)),
            Some(Entity::Account(k)) => account(Some(k))
                .or_else(|| room(None))
                .or_else(|| link(None))
                .or_else(|| mirror(None))
                .or_else(admin)
                .or_else(secret)
                .or_else(|| file(None)),
            Some(Entity::Room(k)) => room(Some(k))
                .or_else(|| link(None))
                .or_else(|| mirror(None))
                .or_else(admin)
                .or_else(secret)
                .or_else(|| file(None)),
            Some(Entity::Link(k)) => link(Some(k))
                .or_else(|| mirror(None))
                .or_else(admin)
                .or_else(secret)
                .or_else(|| file(None)),
            Some(Entity::Mirror(k)) => mirror(Some(k))
                .or_else(admin)
                .or_else(secret)
                .or_else(|| file(None)),
            Some(Entity::Admin) => secret().or_else(|| file(None)),
            Some(Entity::Secret) => file(None),
            Some(Entity::File(k)) => file(Some(k)),
        }
    }
}

/// Every part of one entity of `state` (nothing if it is gone); returns
/// how many.
pub fn write_entity(
    state: &State,
    entity: &Entity,
    emit: &mut dyn FnMut(Record) -> io::Result<()>,
) -> io::Result<u64> {
    let mut parts = 0u64;
    let mut part = |p: SnapshotPart, emit: &mut dyn FnMut(Record) -> io::Result<()>| {
        parts += 1;
        emit(Record::SnapshotPart(p))
    };
    match entity {
        Entity::Account(user) => {
            let Some(acc) = state.accounts.get(user) else {
                return Ok(0);
            };
            let account = SnapshotPart::Account {
                user: user.clone(),
                creds: acc.creds.clone(),
                roster_ver: acc.roster_ver,
                next_offline_id: acc.next_offline_id,
            };
            part(account, emit)?;
            let roster: Vec<(String, RosterItem)> = acc
                .roster
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let item_size = |(contact, item): &(String, RosterItem)| {
                contact.len()
                    + item.name.as_ref().map_or(0, String::len)
                    + item.groups.iter().map(|g| g.len() + 4).sum::<usize>()
            };
            slices(&roster, item_size, |items| {
                let user = user.clone();
                part(SnapshotPart::Roster { user, items }, emit)
            })?;
            archive_parts(
                acc.offline.archive(),
                |messages| SnapshotPart::Offline {
                    user: user.clone(),
                    messages: messages.into_iter().map(OfflineMessage::from).collect(),
                },
                |blocks| SnapshotPart::OfflineBlocks {
                    user: user.clone(),
                    blocks,
                },
                |p| part(p, emit),
            )?;
            // Bounded by the roster (every one is a roster item).
            if !acc.preapproved.is_empty() {
                let contacts = acc.preapproved.iter().cloned().collect();
                let preapproved = SnapshotPart::Preapproved {
                    user: user.clone(),
                    contacts,
                };
                part(preapproved, emit)?;
            }
            // Bounded: 1000 addresses, 100 reports of about 1 KiB.
            if !acc.blocked.is_empty() {
                let jids = acc.blocked.iter().cloned().collect();
                part(
                    SnapshotPart::Blocklist {
                        user: user.clone(),
                        jids,
                    },
                    emit,
                )?;
            }
            if !acc.reports.is_empty() {
                let reports = acc.reports.iter().cloned().collect();
                part(
                    SnapshotPart::AbuseReports {
                        user: user.clone(),
                        reports,
                    },
                    emit,
                )?;
            }
            // A node's items are within the account's bound (2 MiB).
            for (node, n) in &acc.pep {
                let pep = SnapshotPart::Pep {
                    user: user.clone(),
                    node: node.clone(),
                    config: n.config.clone(),
                    items: n.items.iter().cloned().collect(),
                };
                part(pep, emit)?;
                // At most SUBSCRIBERS_PER_NODE JIDs.
                if !n.subscribers.is_empty() {
                    let subscribers = SnapshotPart::PepSubscribers {
                        user: user.clone(),
                        node: node.clone(),
                        jids: n.subscribers.iter().cloned().collect(),
                    };
                    part(subscribers, emit)?;
                }
            }
            if let Some(last) = &acc.last_seen {
                let last = SnapshotPart::AccountLastSeen {
                    user: user.clone(),
                    last: last.clone(),
                };
                part(last, emit)?;
            }
            if !acc.archive_prefs.is_default() {
                let prefs = SnapshotPart::AccountArchivePrefs {
                    user: user.clone(),
                    prefs: acc.archive_prefs.clone(),
                };
                part(prefs, emit)?;
            }
            archive_parts(
                &acc.archive,
                |messages| SnapshotPart::AccountArchive {
                    user: user.clone(),
                    messages,
                },
                |blocks| SnapshotPart::AccountArchiveBlocks {
                    user: user.clone(),
                    blocks,
                },
                |p| part(p, emit),
            )?;
        }
        Entity::Room(room) => {
            let Some(rs) = state.rooms.get(room) else {
                return Ok(0);
            };
            let room_part = SnapshotPart::Room {
                room: room.clone(),
                state: Box::new(rs.clone_without_archive()),
            };
            part(room_part, emit)?;
            if let Some(vcard) = &rs.vcard {
                let room = room.clone();
                let vcard = vcard.clone();
                let seq = rs.vcard_seq;
                part(SnapshotPart::RoomVcard { room, vcard, seq }, emit)?;
            }
            archive_parts(
                &rs.archive,
                |messages| SnapshotPart::Archive {
                    room: room.clone(),
                    messages,
                },
                |blocks| SnapshotPart::ArchiveBlocks {
                    room: room.clone(),
                    blocks,
                },
                |p| part(p, emit),
            )?;
            // After the messages they replace; bounded by them.
            replaced_parts(&rs.archive, &mut |items| {
                let room = room.clone();
                part(SnapshotPart::ArchiveReplaced { room, items }, emit)
            })?;
        }
        Entity::Link(peer) => {
            let Some(l) = state.links.get(peer) else {
                return Ok(0);
            };
            let link = SnapshotPart::Link {
                peer: peer.clone(),
                next_out: l.next_out,
                last_in: l.last_in,
            };
            part(link, emit)?;
            if !l.routes.is_empty() {
                let routes = SnapshotPart::LinkRoutes {
                    peer: peer.clone(),
                    domains: l.routes.clone(),
                };
                part(routes, emit)?;
            }
            slices(
                &l.unacked,
                |q| q.bytes as usize,
                |events| {
                    let peer = peer.clone();
                    part(SnapshotPart::Unacked { peer, events }, emit)
                },
            )?;
        }
        Entity::Mirror(key) => {
            let Some(c) = state.mirrors.get(key) else {
                return Ok(0);
            };
            let cache = MirrorCache {
                upstream: c.upstream.clone(),
                room: c.room.clone(),
                state: c.state.clone_without_archive(),
                last_seq: c.last_seq,
            };
            let mirror = SnapshotPart::Mirror {
                key: key.clone(),
                cache: Box::new(cache),
            };
            part(mirror, emit)?;
            if let Some(vcard) = &c.state.vcard {
                let key = key.clone();
                let vcard = vcard.clone();
                part(SnapshotPart::MirrorVcard { key, vcard }, emit)?;
            }
            archive_parts(
                &c.state.archive,
                |messages| SnapshotPart::MirrorArchive {
                    key: key.clone(),
                    messages,
                },
                |blocks| SnapshotPart::MirrorArchiveBlocks {
                    key: key.clone(),
                    blocks,
                },
                |p| part(p, emit),
            )?;
            replaced_parts(&c.state.archive, &mut |items| {
                let key = key.clone();
                part(SnapshotPart::MirrorArchiveReplaced { key, items }, emit)
            })?;
        }
        Entity::Admin => {
            if let Some(creds) = &state.admin {
                let creds = creds.clone();
                part(SnapshotPart::Admin { creds }, emit)?;
            }
        }
        Entity::Secret => {
            if let Some(secret) = &state.secret {
                let secret = secret.clone();
                part(SnapshotPart::Secret { secret }, emit)?;
            }
        }
        Entity::File(key) => {
            if let Some(file) = state.files.get(key) {
                let (key, file) = (key.clone(), file.clone());
                part(SnapshotPart::File { key, file }, emit)?;
            }
        }
    }
    Ok(parts)
}

/// Every record of a snapshot of `state`, in order, one at a time.
pub fn write_snapshot(
    state: &State,
    mut emit: impl FnMut(Record) -> io::Result<()>,
) -> io::Result<()> {
    emit(Record::SnapshotBegin { format: FORMAT })?;
    let (mut parts, mut last) = (0u64, None);
    while let Some(entity) = Entity::next(state, last.as_ref()) {
        parts += write_entity(state, &entity, &mut emit)?;
        last = Some(entity);
    }
    emit(Record::SnapshotEnd { parts })
}

/// Compact: write a snapshot of `state` into a new segment and drop the
/// older ones once it is durable. Returns the snapshot's size in bytes.
pub fn compact<S: Storage>(log: &mut Log<S>, state: &State, salt: u64) -> io::Result<u64> {
    compact_committing_every(log, state, salt, COMMIT_BYTES)
}

fn compact_committing_every<S: Storage>(
    log: &mut Log<S>,
    state: &State,
    salt: u64,
    commit_bytes: usize,
) -> io::Result<u64> {
    log.begin_compaction(salt)?;
    let mut bytes = 0u64;
    write_snapshot(state, |record| {
        let encoded = record.encode();
        bytes += encoded.len() as u64;
        log.append(record.kind(), &encoded)?;
        if log.pending_bytes() >= commit_bytes {
            log.commit()?;
        }
        Ok(())
    })?;
    log.finish_compaction()?;
    Ok(bytes)
}

/// A compaction written a step per turn of the node, beside its own
/// records: each step writes the next entities of the state as it is then,
/// at least one and about [`STEP_BYTES`], and commits them. A record the
/// node writes between steps is about an entity either already written
/// (the replay applies it to the snapshot too) or not yet (its parts, when
/// written, include it). So no step holds the node up for longer than the
/// largest entity takes, whatever the state's size.
pub struct Compaction {
    last: Option<Entity>,
    parts: u64,
    bytes: u64,
    /// Archive files the parts written refer to, with the end of what they
    /// refer to in each (see `State::block_files`).
    block_files: BTreeMap<u32, u64>,
}

impl Compaction {
    /// Start a new segment with the snapshot's beginning.
    pub fn begin<S: Storage>(log: &mut Log<S>, salt: u64) -> io::Result<Compaction> {
        log.begin_compaction(salt)?;
        let begin = Record::SnapshotBegin { format: FORMAT };
        let encoded = begin.encode();
        log.append(begin.kind(), &encoded)?;
        Ok(Compaction {
            last: None,
            parts: 0,
            bytes: encoded.len() as u64,
            block_files: BTreeMap::new(),
        })
    }

    /// Archive files the snapshot refers to (so far; all once finished).
    pub fn block_files(&self) -> &BTreeMap<u32, u64> {
        &self.block_files
    }

    /// Write the next entities of `state` (which must hold every record
    /// appended so far), about `budget` bytes, and commit. Returns the
    /// snapshot's size once it is finished and the older segments are gone.
    pub fn step<S: Storage>(
        &mut self,
        log: &mut Log<S>,
        state: &State,
        budget: u64,
    ) -> io::Result<Option<u64>> {
        let start = self.bytes;
        while self.bytes - start < budget {
            let Some(entity) = Entity::next(state, self.last.as_ref()) else {
                let end = Record::SnapshotEnd { parts: self.parts };
                let encoded = end.encode();
                log.append(end.kind(), &encoded)?;
                log.finish_compaction()?;
                return Ok(Some(self.bytes + encoded.len() as u64));
            };
            let (bytes, files) = (&mut self.bytes, &mut self.block_files);
            self.parts += write_entity(state, &entity, &mut |record| {
                if let Record::SnapshotPart(part) = &record {
                    part.note_extents(files);
                }
                let encoded = record.encode();
                *bytes += encoded.len() as u64;
                log.append(record.kind(), &encoded).map(|_| ())
            })?;
            self.last = Some(entity);
        }
        log.commit()?;
        Ok(None)
    }
}

/// Replays records into state, building snapshots aside.
#[derive(Default)]
pub struct Replay {
    pub state: State,
    building: Option<Building>,
    /// Size of the last complete snapshot (0 if the log has none).
    pub snapshot_bytes: u64,
    /// Archive files the last complete snapshot refers to: a replay of
    /// the log reads them, whatever the records after it did since.
    pub snapshot_block_files: BTreeMap<u32, u64>,
}

struct Building {
    state: State,
    /// Where its `SnapshotBegin` lies: segment, offset, sequence number.
    begin: (u64, u64, u64),
    parts: u64,
    bytes: u64,
    /// The entity of the last part: records about it or an entity before it
    /// apply to the snapshot too.
    last: Option<Entity>,
    /// Archive files its parts refer to.
    block_files: BTreeMap<u32, u64>,
}

impl Building {
    fn record(&mut self, record: &Record) {
        let written = |e: &Entity| self.last.as_ref().is_some_and(|last| e <= last);
        if Entity::of_record(record).is_some_and(|e| written(&e)) {
            self.state.apply(record);
        }
    }
}

impl Replay {
    /// Apply one record from the log; an error stops the replay (it names
    /// what is wrong; the log layer adds where).
    pub fn apply(&mut self, r: RecordRef) -> Result<(), String> {
        let record = Record::decode(r.kind, r.payload)
            .map_err(|e| e.to_string())?
            .repaired();
        let bytes = r.payload.len() as u64;
        match record {
            Record::SnapshotBegin { format } => {
                if !(1..=FORMAT).contains(&format) {
                    return Err(format!(
                        "snapshot format {format} is not known to this outpost (it reads up to {FORMAT})"
                    ));
                }
                // One begun before it was interrupted (a crash): the
                // records around it stand, its parts do not.
                self.building = Some(Building {
                    state: State::default(),
                    begin: (r.seg, r.offset, r.seq),
                    parts: 0,
                    bytes,
                    last: None,
                    block_files: BTreeMap::new(),
                });
            }
            Record::SnapshotPart(part) => {
                let b = self
                    .building
                    .as_mut()
                    .ok_or("a snapshot part outside a snapshot")?;
                b.state.apply_part(&part);
                part.note_extents(&mut b.block_files);
                b.last = Some(Entity::of_part(&part));
                b.parts += 1;
                b.bytes += bytes;
            }
            Record::SnapshotEnd { parts } => {
                let b = self
                    .building
                    .take()
                    .ok_or("a snapshot end without its beginning")?;
                if b.parts != parts {
                    return Err(format!(
                        "the snapshot ends after {} parts but says {parts}",
                        b.parts
                    ));
                }
                self.state = b.state;
                self.snapshot_bytes = b.bytes + bytes;
                self.snapshot_block_files = b.block_files;
            }
            other => {
                if matches!(other, Record::Snapshot(_)) {
                    self.snapshot_bytes = bytes;
                    self.snapshot_block_files.clear();
                    self.building = None;
                }
                if let Some(b) = self.building.as_mut() {
                    b.record(&other);
                }
                self.state.apply(&other);
            }
        }
        Ok(())
    }
}

/// The log opened and replayed.
pub struct Opened<S: Storage> {
    pub log: Log<S>,
    pub state: State,
    pub recovery: Recovery,
    /// Size of the last complete snapshot, to decide when to compact next.
    pub snapshot_bytes: u64,
    /// A snapshot that a crash left unfinished was ignored: (segment, offset).
    pub unfinished_snapshot: Option<(u64, u64)>,
    /// Archive files the last complete snapshot refers to.
    pub snapshot_block_files: BTreeMap<u32, u64>,
}

/// Open a log and replay it into state (see the module comment).
pub fn open_log<S: Storage>(storage: S, salt: u64) -> Result<Opened<S>, OpenError> {
    let mut replay = Replay::default();
    let (log, recovery) = Log::open(storage, salt, |r| replay.apply(r))?;
    // Its parts are left where they are and read past again: the state
    // before it, and every record written beside it, stand.
    let unfinished_snapshot = replay.building.take().map(|b| (b.begin.0, b.begin.1));
    Ok(Opened {
        log,
        state: replay.state,
        recovery,
        snapshot_bytes: replay.snapshot_bytes,
        unfinished_snapshot,
        snapshot_block_files: replay.snapshot_block_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::room::RoomRecord;
    use crate::store::MemStorage;

    fn archived(seq: u64, body: &str) -> Archived {
        Archived {
            seq,
            stanza_id: format!("id{seq}"),
            stamp_ms: 1000 + seq,
            nick: "n".into(),
            real: "a@x".into(),
            xml: format!("<message><body>{body}</body></message>"),
        }
    }

    /// A state with something in every collection, `scale` items each.
    fn populated(scale: usize, body: &str) -> State {
        let mut s = State::default();
        let creds = Credentials::derive("pw", b"salt", 16);
        for u in 0..3 {
            let user = format!("user{u}");
            s.apply(&Record::AccountSet {
                user: user.clone(),
                creds: creds.clone(),
            });
            for c in 0..scale {
                s.apply(&Record::RosterSet {
                    user: user.clone(),
                    contact: format!("c{c}@x"),
                    item: RosterItem {
                        name: Some(format!("contact {c}")),
                        groups: vec!["g".into()],
                        visible: true,
                        ..Default::default()
                    },
                });
                s.apply(&Record::OfflinePush {
                    user: user.clone(),
                    stamp_ms: c as u64,
                    xml: format!("<message><body>{body}{c}</body></message>"),
                });
            }
            s.apply(&Record::OfflineDone {
                user: user.clone(),
                upto: 1,
            });
            for m in 1..=scale as u64 {
                let mut msg = archived(m, body);
                msg.real = "contact@x/phone".into();
                s.apply(&Record::AccountArchived {
                    user: user.clone(),
                    msg,
                });
            }
            s.apply(&Record::AccountArchiveTrim {
                user: user.clone(),
                upto: 1,
            });
            s.apply(&Record::RosterPreapproved {
                user: user.clone(),
                contact: "c0@x".into(),
                on: true,
            });
            s.apply(&Record::AccountLastSeen {
                user: user.clone(),
                last: crate::state::LastSeen {
                    stamp_ms: 1_795_000_000_000,
                    status: "gone fishing".into(),
                },
            });
            s.apply(&Record::AccountArchivePrefs {
                user: user.clone(),
                prefs: crate::state::ArchivePrefs {
                    default: crate::state::ArchiveDefault::Roster,
                    never: ["spam@x".to_string()].into(),
                    ..Default::default()
                },
            });
        }
        for r in 0..2 {
            let room = format!("room{r}");
            s.apply(&Record::Room {
                room: room.clone(),
                change: RoomRecord::Create {
                    owner: "user0@x".into(),
                    salt: vec![1, 2, 3],
                },
            });
            for m in 1..=scale as u64 {
                s.apply(&Record::Room {
                    room: room.clone(),
                    change: RoomRecord::Message {
                        msg: archived(m, body),
                    },
                });
            }
        }
        // Queued by an older release (wire XML), then by this one (typed).
        for seq in 1..=scale as u64 {
            s.apply(&Record::LinkOut {
                peer: "site.example".into(),
                seq,
                xml: format!("<e>{body}</e>"),
            });
        }
        for seq in scale as u64 + 1..=2 * scale as u64 {
            let event = crate::model::event::LinkEvent::Message {
                room: "r".into(),
                msg: archived(seq, body),
            };
            let queued = crate::state::Queued {
                seq,
                bytes: event.encode().to_xml(crate::link::event::DMUC).len() as u64,
                event: crate::state::QueuedEvent::Typed(Box::new(event)),
            };
            s.apply(&Record::LinkQueued {
                peer: "site.example".into(),
                queued: Box::new(queued),
            });
        }
        s.apply(&Record::LinkIn {
            peer: "site.example".into(),
            seq: 42,
        });
        let history: Vec<Archived> = (1..=scale as u64).map(|m| archived(m, body)).collect();
        s.apply(&Record::Mirror {
            key: "r@conf.hq".into(),
            change: Box::new(crate::model::replica::MirrorRecord::Synced {
                upstream: "conf.hq".into(),
                room: "r".into(),
                config: Default::default(),
                affiliations: vec![("a@x".into(), crate::model::room::Affiliation::Owner)],
                subject: None,
                history,
                next_seq: scale as u64 + 1,
            }),
        });
        s.apply(&Record::AdminPassword { creds });
        s.apply(&Record::ServerSecret {
            secret: vec![9; 32],
        });
        s
    }

    fn reopen(storage: MemStorage) -> Opened<MemStorage> {
        match open_log(storage, 9) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_snapshot_rebuilds_every_part_of_the_state() {
        let state = populated(50, "hello");
        let mut log = reopen(MemStorage::new()).log;
        log.append(
            crate::state::KIND_VERSIONED,
            &Record::AccountDel { user: "x".into() }.encode(),
        )
        .unwrap();
        log.commit().unwrap();
        let bytes = compact(&mut log, &state, 5).unwrap();
        let mut opened = reopen(log.storage().clone());
        assert!(opened.state == state, "the state read back differs");
        assert_eq!(opened.snapshot_bytes, bytes);
        assert_eq!(opened.log.storage().segments().unwrap(), vec![2]);
    }

    #[test]
    fn no_part_is_much_bigger_than_the_part_size() {
        // 2 KB bodies: a few hundred items per part.
        let state = populated(2000, &"x".repeat(2000));
        let mut biggest = 0;
        let mut parts = 0;
        write_snapshot(&state, |r| {
            biggest = biggest.max(r.encode().len());
            parts += 1;
            Ok(())
        })
        .unwrap();
        assert!(biggest < PART_BYTES + 8 * 1024, "{biggest}");
        assert!(parts > 20, "{parts}");
    }

    #[test]
    fn a_crash_at_any_point_of_a_compaction_keeps_a_whole_state() {
        // Small commits, so the snapshot spans many of them.
        let compact = |l: &mut Log<MemStorage>, s: &State, salt| {
            compact_committing_every(l, s, salt, 16 * 1024)
        };
        let before = populated(40, &"y".repeat(1000));
        let mut log = reopen(MemStorage::new()).log;
        compact(&mut log, &before, 1).unwrap();
        let mut after = before.clone();
        after.apply(&Record::AccountDel {
            user: "user1".into(),
        });
        log.append(
            crate::state::KIND_VERSIONED,
            &Record::AccountDel {
                user: "user1".into(),
            }
            .encode(),
        )
        .unwrap();
        log.commit().unwrap();
        let base = log.storage().clone();
        let total = {
            let mut l = reopen(base.clone()).log;
            compact(&mut l, &after, 2).unwrap();
            l.storage().bytes(3).unwrap().len()
        };
        for cut in (0..total).step_by(total / 23 + 1) {
            let mut l = reopen(base.clone()).log;
            l.storage().faults.fail_after_bytes = Some(cut);
            let crashed = compact(&mut l, &after, 2).is_err();
            let mut s = std::mem::take(l.storage());
            s.faults = Default::default();
            s.crash(0);
            let opened = reopen(s);
            if crashed {
                assert!(opened.state == after, "crash after {cut} bytes");
                // The log keeps working after the interrupted compaction.
                let mut l = opened.log;
                compact(&mut l, &after, 3).unwrap();
                assert!(reopen(l.storage().clone()).state == after);
            }
        }
    }

    #[test]
    fn a_snapshot_written_as_one_record_still_loads() {
        let state = populated(5, "old");
        let mut log = reopen(MemStorage::new()).log;
        let mut state = state;
        state.secret = None; // Not part of the old layout.
        let old = Record::Snapshot(state.clone().into());
        log.append(old.kind(), &old.encode()).unwrap();
        log.append(
            crate::state::KIND_VERSIONED,
            &Record::AccountDel {
                user: "user2".into(),
            }
            .encode(),
        )
        .unwrap();
        log.commit().unwrap();
        // That layout queued link events as wire XML.
        let mut expect = State::from(crate::state::LegacyState::from(state));
        expect.accounts.remove("user2");
        // Nor did it have accounts' archives.
        for acc in expect.accounts.values_mut() {
            acc.archive = Archive::new();
            acc.archive_prefs = Default::default();
            acc.last_seen = None;
            acc.preapproved.clear();
        }
        assert!(reopen(log.storage().clone()).state == expect);
    }

    /// A record about some entity, before or after wherever a snapshot
    /// being written has got to: creations, changes and deletions.
    fn some_record(x: &mut u64) -> Record {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let n = *x;
        let user = format!("user{}", n % 6);
        let room = format!("room{}", (n >> 8) % 4);
        match (n >> 16) % 10 {
            0 => Record::AccountSet {
                user,
                creds: Credentials::derive("pw", b"salt", 16),
            },
            1 => Record::AccountDel { user },
            2 => Record::OfflinePush {
                user,
                stamp_ms: n,
                xml: format!("<message><body>{n}</body></message>"),
            },
            3 => Record::RosterSet {
                user,
                contact: format!("c{}@x", n % 50),
                item: RosterItem {
                    visible: true,
                    ..Default::default()
                },
            },
            4 => Record::Room {
                room,
                change: RoomRecord::Create {
                    owner: "user0@x".into(),
                    salt: vec![7],
                },
            },
            5 => Record::Room {
                room,
                change: RoomRecord::Destroy,
            },
            6 => Record::LinkIn {
                peer: "site.example".into(),
                seq: n % 1000,
            },
            7 => Record::Mirror {
                key: "r@conf.hq".into(),
                change: Box::new(crate::model::replica::MirrorRecord::Trim { upto: n % 30 }),
            },
            8 => Record::AccountArchived {
                user,
                msg: archived(n >> 24, "mine"),
            },
            _ => Record::AdminPassword {
                creds: Credentials::derive("admin", b"salt", 16),
            },
        }
    }

    #[test]
    fn records_written_between_the_steps_of_a_compaction_are_never_lost() {
        for seed in 1..=20u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut state = populated(20, &"z".repeat(200));
            let mut log = reopen(MemStorage::new()).log;
            compact(&mut log, &state, 1).unwrap();
            let mut compaction = Compaction::begin(&mut log, 2).unwrap();
            let mut steps = 0;
            loop {
                // The node's own records, as a turn writes them.
                for _ in 0..(x % 4) {
                    let r = some_record(&mut x);
                    state.apply(&r);
                    log.append(r.kind(), &r.encode()).unwrap();
                }
                log.commit().unwrap();
                // A crash now loses nothing that was committed.
                let mut crashed = log.storage().clone();
                crashed.crash(0);
                assert!(reopen(crashed).state == state, "seed {seed}, step {steps}");
                steps += 1;
                if compaction.step(&mut log, &state, 1).unwrap().is_some() {
                    break;
                }
            }
            assert!(steps > 5, "seed {seed}: {steps} steps");
            // The older segments are gone; the snapshot and what followed it
            // rebuild the state, and so does what comes after.
            let r = some_record(&mut x);
            state.apply(&r);
            log.append(r.kind(), &r.encode()).unwrap();
            log.commit().unwrap();
            let mut opened = reopen(log.storage().clone());
            assert_eq!(opened.log.storage().segments().unwrap(), vec![3]);
            assert!(
                opened.state == state,
                "seed {seed}: read back after the compaction"
            );
        }
    }

    #[test]
    fn a_compaction_interrupted_by_a_crash_is_read_past_and_the_next_one_finishes() {
        let mut state = populated(20, "q");
        let mut log = reopen(MemStorage::new()).log;
        compact(&mut log, &state, 1).unwrap();
        let mut compaction = Compaction::begin(&mut log, 2).unwrap();
        compaction.step(&mut log, &state, 1024).unwrap();
        let r = Record::AccountDel {
            user: "user0".into(),
        };
        state.apply(&r);
        log.append(r.kind(), &r.encode()).unwrap();
        log.commit().unwrap();
        let opened = reopen(log.storage().clone());
        assert!(opened.unfinished_snapshot.is_some());
        assert!(opened.state == state);
        // After the restart: more records, then a whole compaction.
        let mut log = opened.log;
        let r = Record::AccountDel {
            user: "user1".into(),
        };
        state.apply(&r);
        log.append(r.kind(), &r.encode()).unwrap();
        log.commit().unwrap();
        let mut compaction = Compaction::begin(&mut log, 3).unwrap();
        while compaction.step(&mut log, &state, 1024).unwrap().is_none() {}
        let opened = reopen(log.storage().clone());
        assert!(opened.unfinished_snapshot.is_none());
        assert!(opened.state == state);
    }

    #[test]
    fn a_snapshot_of_the_format_before_still_loads() {
        // Format 1 wrote the same parts, with no records between them.
        let state = populated(10, "one");
        let mut log = reopen(MemStorage::new()).log;
        log.begin_compaction(2).unwrap();
        write_snapshot(&state, |r| {
            let r = match r {
                Record::SnapshotBegin { .. } => Record::SnapshotBegin { format: 1 },
                r => r,
            };
            log.append(r.kind(), &r.encode()).map(|_| ())
        })
        .unwrap();
        log.finish_compaction().unwrap();
        let opened = reopen(log.storage().clone());
        assert!(opened.state == state);
        assert!(opened.snapshot_bytes > 0 && opened.unfinished_snapshot.is_none());
    }

    #[test]
    fn a_snapshot_of_an_unknown_format_is_refused() {
        let mut log = reopen(MemStorage::new()).log;
        log.append(
            crate::state::KIND_VERSIONED,
            &Record::SnapshotBegin { format: FORMAT + 1 }.encode(),
        )
        .unwrap();
        log.commit().unwrap();
        match open_log(log.storage().clone(), 1) {
            Err(OpenError::Refused { why, .. }) => assert!(why.contains("format"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("replayed an unknown snapshot format"),
        }
    }
}
