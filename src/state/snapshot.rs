//! Snapshots as many bounded records, and replaying the log into state.
//!
//! Compaction writes the whole state as `SnapshotBegin`, then parts of at
//! most about [`PART_BYTES`] each (an account, a slice of a roster, of an
//! offline queue, of an archive…), then `SnapshotEnd`, into a fresh
//! segment; the older segments are dropped only once all of it is durable.
//! No record ever has to hold the whole state, so no state is too big to
//! be written or read back. Replay builds a snapshot aside and swaps it in
//! at its end; a snapshot a crash left unfinished at the end of the log is
//! discarded, and the state from the segments before it stands.

use super::{Account, LinkState, OfflineMessage, Queued, Record, RosterItem, State};
use crate::common::PeerId;
use crate::model::replica::MirrorCache;
use crate::model::room::{Archived, RoomState};
use crate::scram::Credentials;
use crate::store::{Log, OpenError, RecordRef, Recovery, Storage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::io;

/// Format of the snapshot parts; a reader refuses a format it does not know.
pub const FORMAT: u32 = 1;
/// A part closes once its contents reach this many bytes (so a part is at
/// most this plus one item, and every item is bounded on its own).
pub const PART_BYTES: usize = 1024 * 1024;
/// Snapshot records are committed in groups of about this many bytes.
const COMMIT_BYTES: usize = 4 * 1024 * 1024;

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
        state: RoomState,
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
        cache: MirrorCache,
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
}

impl State {
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
                        creds: creds.clone(),
                        roster: BTreeMap::new(),
                        roster_ver: *roster_ver,
                        offline: VecDeque::new(),
                        next_offline_id: *next_offline_id,
                        offline_bytes: 0,
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
                    acc.offline_bytes += messages.iter().map(|m| m.xml.len() as u64).sum::<u64>();
                    acc.offline.extend(messages.iter().cloned());
                }
            }
            SnapshotPart::Room { room, state } => {
                self.rooms.insert(room.clone(), state.clone());
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
                self.mirrors.insert(key.clone(), cache.clone());
            }
            SnapshotPart::MirrorArchive { key, messages } => {
                if let Some(c) = self.mirrors.get_mut(key) {
                    extend_archive(&mut c.state, messages);
                }
            }
            SnapshotPart::Admin { creds } => self.admin = Some(creds.clone()),
            SnapshotPart::Secret { secret } => self.secret = Some(secret.clone()),
        }
    }
}

fn extend_archive(room: &mut RoomState, messages: &[Archived]) {
    room.archive.extend(messages.iter().cloned());
}

/// Cut a collection into parts of about [`PART_BYTES`] each.
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

/// Every record of a snapshot of `state`, in order, one at a time.
pub fn write_snapshot(
    state: &State,
    mut emit: impl FnMut(Record) -> io::Result<()>,
) -> io::Result<()> {
    let mut parts = 0u64;
    let mut part = |p: SnapshotPart, emit: &mut dyn FnMut(Record) -> io::Result<()>| {
        parts += 1;
        emit(Record::SnapshotPart(p))
    };
    emit(Record::SnapshotBegin { format: FORMAT })?;
    for (user, acc) in &state.accounts {
        let account = SnapshotPart::Account {
            user: user.clone(),
            creds: acc.creds.clone(),
            roster_ver: acc.roster_ver,
            next_offline_id: acc.next_offline_id,
        };
        part(account, &mut emit)?;
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
            part(SnapshotPart::Roster { user, items }, &mut emit)
        })?;
        slices(
            &acc.offline,
            |m| m.xml.len(),
            |messages| {
                let user = user.clone();
                part(SnapshotPart::Offline { user, messages }, &mut emit)
            },
        )?;
    }
    for (room, rs) in &state.rooms {
        let bare = rs.clone_without_archive();
        let room_part = SnapshotPart::Room {
            room: room.clone(),
            state: bare,
        };
        part(room_part, &mut emit)?;
        slices(&rs.archive, archived_size, |messages| {
            let room = room.clone();
            part(SnapshotPart::Archive { room, messages }, &mut emit)
        })?;
    }
    for (peer, l) in &state.links {
        let link = SnapshotPart::Link {
            peer: peer.clone(),
            next_out: l.next_out,
            last_in: l.last_in,
        };
        part(link, &mut emit)?;
        slices(
            &l.unacked,
            |q| q.bytes as usize,
            |events| {
                let peer = peer.clone();
                part(SnapshotPart::Unacked { peer, events }, &mut emit)
            },
        )?;
    }
    for (key, c) in &state.mirrors {
        let cache = MirrorCache {
            upstream: c.upstream.clone(),
            room: c.room.clone(),
            state: c.state.clone_without_archive(),
            last_seq: c.last_seq,
        };
        let mirror = SnapshotPart::Mirror {
            key: key.clone(),
            cache,
        };
        part(mirror, &mut emit)?;
        slices(&c.state.archive, archived_size, |messages| {
            let key = key.clone();
            part(SnapshotPart::MirrorArchive { key, messages }, &mut emit)
        })?;
    }
    if let Some(creds) = &state.admin {
        part(
            SnapshotPart::Admin {
                creds: creds.clone(),
            },
            &mut emit,
        )?;
    }
    if let Some(secret) = &state.secret {
        let secret = secret.clone();
        part(SnapshotPart::Secret { secret }, &mut emit)?;
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

/// Replays records into state, building snapshots aside.
#[derive(Default)]
pub struct Replay {
    pub state: State,
    building: Option<Building>,
    /// Size of the last complete snapshot (0 if the log has none).
    pub snapshot_bytes: u64,
}

struct Building {
    state: State,
    /// Where its `SnapshotBegin` lies: segment, offset, sequence number.
    begin: (u64, u64, u64),
    parts: u64,
    bytes: u64,
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
                if format != FORMAT {
                    return Err(format!(
                        "snapshot format {format} is not known to this outpost (it reads {FORMAT})"
                    ));
                }
                if self.building.is_some() {
                    return Err("a snapshot begins inside another one".into());
                }
                self.building = Some(Building {
                    state: State::default(),
                    begin: (r.seg, r.offset, r.seq),
                    parts: 0,
                    bytes,
                });
            }
            Record::SnapshotPart(part) => {
                let b = self
                    .building
                    .as_mut()
                    .ok_or("a snapshot part outside a snapshot")?;
                b.state.apply_part(&part);
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
            }
            other => {
                if self.building.is_some() {
                    return Err("a change inside a snapshot".into());
                }
                if matches!(other, Record::Snapshot(_)) {
                    self.snapshot_bytes = bytes;
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
    /// A snapshot that a crash left unfinished was discarded: (segment, offset).
    pub unfinished_snapshot: Option<(u64, u64)>,
}

/// Open a log and replay it into state (see the module comment).
pub fn open_log<S: Storage>(storage: S, salt: u64) -> Result<Opened<S>, OpenError> {
    let mut replay = Replay::default();
    let (mut log, recovery) = Log::open(storage, salt, |r| replay.apply(r))?;
    let mut unfinished_snapshot = None;
    if let Some(b) = replay.building.take() {
        let (seg, offset, seq) = b.begin;
        log.discard_tail(seg, offset, seq)
            .map_err(|_| OpenError::Damaged {
                segment: log.storage().describe(seg),
                offset,
                reason: "a snapshot was left unfinished, but more of the log follows it",
            })?;
        unfinished_snapshot = Some((seg, offset));
    }
    Ok(Opened {
        log,
        state: replay.state,
        recovery,
        snapshot_bytes: replay.snapshot_bytes,
        unfinished_snapshot,
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
        assert!(reopen(log.storage().clone()).state == expect);
    }

    #[test]
    fn an_unfinished_snapshot_followed_by_more_log_is_damage() {
        let mut log = reopen(MemStorage::new()).log;
        log.append(
            crate::state::KIND_VERSIONED,
            &Record::SnapshotBegin { format: FORMAT }.encode(),
        )
        .unwrap();
        log.append(
            crate::state::KIND_VERSIONED,
            &Record::AccountDel { user: "u".into() }.encode(),
        )
        .unwrap();
        log.commit().unwrap();
        match open_log(log.storage().clone(), 1) {
            Err(OpenError::Refused { why, .. }) => assert!(why.contains("inside a snapshot")),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("replayed a change inside a snapshot"),
        }
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
