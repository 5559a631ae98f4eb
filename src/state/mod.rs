//! The node's durable state and the records that change it.
//!
//! Every change goes through a [`Record`]: the core applies it to [`State`]
//! and hands it to the shell to append to the log, so the state after a
//! restart is exactly the replay of the log.

pub mod salvage;
pub mod snapshot;

use crate::mirror::cache::{MirrorCache, MirrorRecord};
use crate::muc::model::{RoomRecord, RoomState};
use crate::scram::Credentials;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Log record kinds (the `kind` byte of a log record).
pub const KIND_SNAPSHOT: u8 = 1;
pub const KIND_RECORD: u8 = 2;

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
pub struct OfflineMessage {
    pub id: u64,
    pub stamp_ms: u64,
    /// The stanza as it will be delivered, without the delay element.
    pub xml: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub creds: Credentials,
    /// Keyed by the contact's bare JID.
    pub roster: BTreeMap<String, RosterItem>,
    pub roster_ver: u64,
    pub offline: VecDeque<OfflineMessage>,
    pub next_offline_id: u64,
    /// Bytes of the stanzas in `offline` (derived; not stored in the log).
    #[serde(skip)]
    pub offline_bytes: u64,
}

impl Account {
    fn recount(&mut self) {
        self.offline_bytes = self.offline.iter().map(|m| m.xml.len() as u64).sum();
    }
}

/// The state's layout before `admin` was added (postcard needs every field):
/// snapshots written then still load.
#[derive(Deserialize)]
struct StateBeforeAdmin {
    accounts: BTreeMap<String, Account>,
    rooms: BTreeMap<String, RoomState>,
    links: BTreeMap<String, LinkState>,
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
    pub links: BTreeMap<String, LinkState>,
    pub mirrors: BTreeMap<String, MirrorCache>,
    pub admin: Option<Credentials>,
}

/// For tests that write what older releases wrote.
impl From<State> for LegacyState {
    fn from(s: State) -> LegacyState {
        LegacyState {
            accounts: s.accounts,
            rooms: s.rooms,
            links: s.links,
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
            links: old.links,
            mirrors: old.mirrors,
            admin: old.admin,
            secret: None,
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
    pub links: BTreeMap<String, LinkState>,
    /// Replicas of rooms mastered elsewhere, keyed by the room's JID.
    pub mirrors: BTreeMap<String, MirrorCache>,
    /// The admin password of the serial console and the web page (hashed
    /// like account passwords; unset until the first-run setup).
    pub admin: Option<Credentials>,
    /// A random secret made at the first start and kept (the salts shown
    /// for unknown users derive from it).
    pub secret: Option<Vec<u8>>,
}

/// What survives a restart of a link: the events not yet acknowledged by the
/// peer (to resend), and how far the peer's events have been applied (to
/// recognise resent ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LinkState {
    /// Sequence number the next outgoing event gets (0 before the first).
    pub next_out: u64,
    /// Sent, not yet acknowledged: (sequence number, encoded event).
    pub unacked: VecDeque<(u64, String)>,
    /// Sequence number of the last event received and applied.
    pub last_in: u64,
    /// Bytes of the events in `unacked` (derived; not stored in the log).
    #[serde(skip)]
    pub unacked_bytes: u64,
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
    /// An event queued for a peer, durable before it is sent.
    LinkOut {
        peer: String,
        seq: u64,
        xml: String,
    },
    /// The peer has applied our events up to `upto`.
    LinkAcked {
        peer: String,
        upto: u64,
    },
    /// We have applied the peer's event `seq`.
    LinkIn {
        peer: String,
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
}

impl Record {
    pub fn kind(&self) -> u8 {
        match self {
            Record::Snapshot(_)
            | Record::SnapshotBegin { .. }
            | Record::SnapshotPart(_)
            | Record::SnapshotEnd { .. } => KIND_SNAPSHOT,
            _ => KIND_RECORD,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
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
        fn fix_archive<'a>(msgs: impl IntoIterator<Item = &'a mut crate::muc::model::Archived>) {
            msgs.into_iter().for_each(|m| fix(&mut m.xml));
        }
        fn fix_state(s: &mut LegacyState) {
            for acc in s.accounts.values_mut() {
                acc.offline.iter_mut().for_each(|m| fix(&mut m.xml));
            }
            s.rooms
                .values_mut()
                .for_each(|r| fix_archive(&mut r.archive));
            s.mirrors
                .values_mut()
                .for_each(|m| fix_archive(&mut m.state.archive));
            for l in s.links.values_mut() {
                l.unacked.iter_mut().for_each(|(_, x)| fix(x));
            }
        }
        use crate::mirror::cache::MirrorRecord;
        use crate::muc::model::RoomRecord;
        use snapshot::SnapshotPart;
        match &mut self {
            Record::OfflinePush { xml, .. } | Record::LinkOut { xml, .. } => fix(xml),
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
                | SnapshotPart::MirrorArchive { messages, .. } => fix_archive(messages),
                SnapshotPart::Unacked { events, .. } => events.iter_mut().for_each(|(_, x)| fix(x)),
                _ => {}
            },
            Record::Snapshot(state) => fix_state(state),
            _ => {}
        }
        self
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, postcard::Error> {
        postcard::from_bytes(bytes).or_else(|e| match bytes.split_first() {
            // A snapshot written before the admin password was part of the state.
            Some((0, state)) => match postcard::take_from_bytes::<StateBeforeAdmin>(state) {
                Ok((old, [])) => Ok(Record::Snapshot(old.into())),
                _ => Err(e),
            },
            _ => Err(e),
        })
    }
}

/// The links' part of the state: what `link::Links` keeps durable, per peer.
pub type LinkStore = BTreeMap<String, LinkState>;

/// Apply a link record (`LinkOut`, `LinkAcked`, `LinkIn`) to the links'
/// part of the state; other records leave it as it is.
pub fn apply_link(links: &mut LinkStore, record: &Record) {
    match record {
        Record::LinkOut { peer, seq, xml } => {
            let l = links.entry(peer.clone()).or_default();
            l.next_out = seq + 1;
            l.unacked_bytes += xml.len() as u64;
            l.unacked.push_back((*seq, xml.clone()));
        }
        Record::LinkAcked { peer, upto } => {
            let l = links.entry(peer.clone()).or_default();
            while l.unacked.front().is_some_and(|(s, _)| s <= upto) {
                if let Some((_, xml)) = l.unacked.pop_front() {
                    l.unacked_bytes -= xml.len() as u64;
                }
            }
        }
        Record::LinkIn { peer, seq } => links.entry(peer.clone()).or_default().last_in = *seq,
        _ => {}
    }
}

impl State {
    /// Bytes of offline messages kept for all accounts.
    pub fn offline_bytes(&self) -> u64 {
        self.accounts.values().map(|a| a.offline_bytes).sum()
    }

    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Snapshot(s) => {
                *self = s.clone().into();
                self.accounts.values_mut().for_each(Account::recount);
                for l in self.links.values_mut() {
                    l.unacked_bytes = l.unacked.iter().map(|(_, x)| x.len() as u64).sum();
                }
            }
            Record::AccountSet { user, creds } => match self.accounts.get_mut(user) {
                Some(acc) => acc.creds = creds.clone(),
                None => {
                    self.accounts.insert(
                        user.clone(),
                        Account {
                            creds: creds.clone(),
                            roster: BTreeMap::new(),
                            roster_ver: 0,
                            offline: VecDeque::new(),
                            next_offline_id: 1,
                            offline_bytes: 0,
                        },
                    );
                }
            },
            Record::AccountDel { user } => {
                self.accounts.remove(user);
            }
            Record::RosterSet {
                user,
                contact,
                item,
            } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    let was_visible = acc.roster.get(contact).is_some_and(|i| i.visible);
                    if item.visible || was_visible {
                        acc.roster_ver += 1;
                    }
                    acc.roster.insert(contact.clone(), item.clone());
                }
            }
            Record::RosterDel { user, contact } => {
                if let Some(acc) = self.accounts.get_mut(user) {
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
                if let Some(acc) = self.accounts.get_mut(user) {
                    let id = acc.next_offline_id;
                    acc.next_offline_id += 1;
                    acc.offline_bytes += xml.len() as u64;
                    acc.offline.push_back(OfflineMessage {
                        id,
                        stamp_ms: *stamp_ms,
                        xml: xml.clone(),
                    });
                }
            }
            Record::OfflineDone { user, upto } => {
                if let Some(acc) = self.accounts.get_mut(user) {
                    while acc.offline.front().is_some_and(|m| m.id <= *upto) {
                        if let Some(m) = acc.offline.pop_front() {
                            acc.offline_bytes -= m.xml.len() as u64;
                        }
                    }
                }
            }
            Record::Room { room, change } => {
                crate::muc::model::apply(&mut self.rooms, room, change)
            }
            Record::LinkOut { .. } | Record::LinkAcked { .. } | Record::LinkIn { .. } => {
                apply_link(&mut self.links, record)
            }
            Record::Mirror { key, change } => {
                crate::mirror::cache::apply(&mut self.mirrors, key, change)
            }
            Record::AdminPassword { creds } => self.admin = Some(creds.clone()),
            // Snapshots are assembled by `snapshot::Replay`, never committed.
            Record::SnapshotPart(part) => self.apply_part(part),
            Record::SnapshotBegin { .. } | Record::SnapshotEnd { .. } => {}
            Record::ServerSecret { secret } => self.secret = Some(secret.clone()),
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
            links: &'a BTreeMap<String, LinkState>,
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
        let Record::Snapshot(decoded) = Record::decode(&bytes).unwrap() else {
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
            replayed.apply(&Record::decode(&r.encode()).unwrap());
        }
        assert_eq!(direct, replayed);
        let acc = &direct.accounts["a"];
        assert_eq!(acc.roster_ver, 1);
        assert_eq!(acc.offline.len(), 1);
        assert_eq!(acc.offline[0].id, 2);
        let mut from_snapshot = State::default();
        let legacy = Record::Snapshot(direct.clone().into());
        from_snapshot.apply(&Record::decode(&legacy.encode()).unwrap());
        assert_eq!(from_snapshot, direct);
    }

    #[test]
    fn subscription_flags() {
        assert_eq!(Subscription::None.with_to(true), Subscription::To);
        assert_eq!(Subscription::To.with_from(true), Subscription::Both);
        assert_eq!(Subscription::Both.with_to(false), Subscription::From);
    }
}
