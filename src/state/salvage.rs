//! Reading what can be read from a damaged log, and telling an operator
//! what a state holds. Used by `outpost data check` and `outpost data
//! salvage`, which never change the data directory they read.

use super::snapshot::{Entity, SnapshotPart, FORMAT};
use super::{Record, State};
use crate::store::{inspect, RecordRef, SegmentReport, Storage};
use std::fmt;
use std::io;

/// A count of what a state holds, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub accounts: usize,
    pub roster_items: usize,
    pub offline_messages: usize,
    pub offline_bytes: u64,
    pub rooms: usize,
    pub archived_messages: usize,
    pub archive_bytes: u64,
    pub mirrored_rooms: usize,
    pub link_peers: usize,
    pub unacked_events: usize,
    pub admin_password_set: bool,
}

impl Summary {
    pub fn of(state: &State) -> Summary {
        let mut s = Summary {
            accounts: state.accounts.len(),
            rooms: state.rooms.len(),
            mirrored_rooms: state.mirrors.len(),
            link_peers: state.links.len(),
            admin_password_set: state.admin.is_some(),
            ..Summary::default()
        };
        for acc in state.accounts.values() {
            s.roster_items += acc.roster.len();
            s.offline_messages += acc.offline.len();
            s.offline_bytes += acc.offline.bytes();
        }
        for room in state.rooms.values() {
            s.archived_messages += room.archive.len();
            s.archive_bytes += room.archive.bytes();
        }
        s.unacked_events = state.links.values().map(|l| l.unacked.len()).sum();
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(
            f,
            "accounts: {} (roster items {}, offline messages {} in {} bytes)",
            self.accounts, self.roster_items, self.offline_messages, self.offline_bytes
        )?;
        writeln!(
            f,
            "rooms: {} (archived messages {} in {} bytes); mirrored rooms: {}",
            self.rooms, self.archived_messages, self.archive_bytes, self.mirrored_rooms
        )?;
        writeln!(
            f,
            "links: {} peers, {} events awaiting acknowledgement",
            self.link_peers, self.unacked_events
        )?;
        write!(
            f,
            "admin password: {}",
            if self.admin_password_set {
                "set"
            } else {
                "not set"
            }
        )
    }
}

/// What a salvage read.
#[derive(Debug, Default)]
pub struct Salvaged {
    pub state: State,
    pub segments: Vec<SegmentReport>,
    /// Records applied.
    pub applied: usize,
    /// Records that verified but could not be decoded (skipped).
    pub undecodable: usize,
    /// Snapshots that were cut short by damage: what they held was laid
    /// over the state before them.
    pub partial_snapshots: usize,
}

/// Replay every record that verifies, across damage, as well as it goes:
/// undecodable records are skipped, and a snapshot that damage cut short
/// is laid over the state before it rather than replacing it.
pub fn salvage<S: Storage>(storage: &mut S) -> io::Result<Salvaged> {
    let mut out = Salvaged::default();
    // The snapshot being read, and the entity of its last part.
    let mut building: Option<(State, Option<Entity>)> = None;
    let segments = inspect(storage, |r: RecordRef| {
        let Ok(record) = Record::decode(r.kind, r.payload).map(Record::repaired) else {
            out.undecodable += 1;
            return;
        };
        out.applied += 1;
        match record {
            Record::SnapshotBegin { format } if (1..=FORMAT).contains(&format) => {
                if let Some((partial, last)) = building.take() {
                    overlay_unfinished(&mut out.state, partial, last);
                    out.partial_snapshots += 1;
                }
                building = Some((State::default(), None));
            }
            Record::SnapshotBegin { .. } => out.undecodable += 1,
            Record::SnapshotPart(part) => match building.as_mut() {
                Some((b, last)) => {
                    b.apply_part(&part);
                    *last = Some(Entity::of_part(&part));
                }
                None => apply_stray_part(&mut out.state, &part),
            },
            Record::SnapshotEnd { .. } => {
                if let Some((b, _)) = building.take() {
                    out.state = b;
                }
            }
            other => {
                // Written beside the snapshot: about an entity it already
                // holds, it applies to the snapshot too.
                if let Some((b, Some(last))) = building.as_mut() {
                    if Entity::of_record(&other).is_some_and(|e| e <= *last) {
                        b.apply(&other);
                    }
                }
                out.state.apply(&other);
            }
        }
    })?;
    if let Some((partial, last)) = building.take() {
        overlay_unfinished(&mut out.state, partial, last);
        out.partial_snapshots += 1;
    }
    out.segments = segments;
    Ok(out)
}

/// A part whose snapshot's beginning was lost: still worth keeping.
fn apply_stray_part(state: &mut State, part: &SnapshotPart) {
    state.apply_part(part);
}

/// Everything a partial snapshot holds replaces the same thing before it.
/// Lay a snapshot that never ended over the state, but for the entity of
/// its last part: a write torn in the middle of a step may have cut it
/// short, and the state has it whole (its records, or an earlier snapshot).
fn overlay_unfinished(state: &mut State, mut partial: State, last: Option<Entity>) {
    if let Some(entity) = last {
        partial.remove_entity(&entity);
    }
    overlay(state, partial);
}

fn overlay(state: &mut State, partial: State) {
    state.accounts.extend(partial.accounts);
    state.rooms.extend(partial.rooms);
    state.links.extend(partial.links);
    state.mirrors.extend(partial.mirrors);
    if partial.admin.is_some() {
        state.admin = partial.admin;
    }
    if partial.secret.is_some() {
        state.secret = partial.secret;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::Credentials;
    use crate::state::snapshot::{open_log, write_snapshot};
    use crate::store::MemStorage;

    fn account(user: &str) -> Record {
        Record::AccountSet {
            user: user.into(),
            creds: Credentials::derive("pw", b"s", 16),
        }
    }

    #[test]
    fn salvage_reads_past_damage_that_stops_a_normal_open() {
        let mut log = open_log(MemStorage::new(), 1).unwrap().log;
        for u in ["a", "b", "c", "d"] {
            log.append(crate::state::KIND_VERSIONED, &account(u).encode())
                .unwrap();
            log.commit().unwrap();
        }
        let mut s = std::mem::take(log.storage());
        // Damage the record of "b" (the second commit) in its payload.
        let at = {
            let bytes = s.bytes(1).unwrap();
            let needle = b"\x01b";
            bytes.windows(2).position(|w| w == needle).unwrap()
        };
        s.bytes_mut(1).unwrap()[at] ^= 0x20;
        assert!(open_log(s.clone(), 1).is_err(), "a normal open refuses");
        let got = salvage(&mut s).unwrap();
        let users: Vec<_> = got.state.accounts.keys().cloned().collect();
        assert_eq!(users, ["a", "c", "d"]);
        assert_eq!(got.segments.len(), 1);
        assert!(got.segments[0].damage.is_some());
    }

    #[test]
    fn a_snapshot_cut_short_is_laid_over_the_state_before_it() {
        let mut log = open_log(MemStorage::new(), 1).unwrap().log;
        log.append(crate::state::KIND_VERSIONED, &account("old").encode())
            .unwrap();
        log.append(
            crate::state::KIND_VERSIONED,
            &account("gone-later").encode(),
        )
        .unwrap();
        log.commit().unwrap();
        let mut state = State::default();
        for u in ["old", "x", "y"] {
            state.apply(&account(u));
        }
        // A compaction that never finished: the old segment stays, the new
        // one is cut in the middle of the snapshot.
        log.begin_compaction(3).unwrap();
        write_snapshot(&state, |r| log.append(r.kind(), &r.encode()).map(|_| ())).unwrap();
        log.commit().unwrap();
        let mut s = std::mem::take(log.storage());
        let half = s.bytes(2).unwrap().len() as u64 / 2;
        s.truncate(2, half).unwrap();
        let got = salvage(&mut s).unwrap();
        assert_eq!(got.partial_snapshots, 1);
        assert!(got.state.accounts.contains_key("gone-later"));
        assert!(got.state.accounts.contains_key("old"));
    }

    #[test]
    fn a_step_torn_in_the_middle_of_a_room_does_not_cut_the_room_short() {
        use crate::model::room::{Archived, RoomRecord};
        use crate::state::snapshot::Compaction;
        let mut state = State::default();
        let mut log = open_log(MemStorage::new(), 1).unwrap().log;
        let put = |state: &mut State, log: &mut crate::store::Log<MemStorage>, r: Record| {
            state.apply(&r);
            log.append(r.kind(), &r.encode()).unwrap();
        };
        put(&mut state, &mut log, account("a"));
        let create = RoomRecord::Create {
            owner: "o@x".into(),
            salt: vec![1],
        };
        let room = |change| Record::Room {
            room: "r".into(),
            change,
        };
        put(&mut state, &mut log, room(create));
        for seq in 1..=3000u64 {
            let msg = Archived {
                seq,
                stanza_id: format!("id{seq}"),
                stamp_ms: seq,
                nick: "n".into(),
                real: "a@x".into(),
                xml: format!("<message><body>{}</body></message>", "z".repeat(1000)),
            };
            put(&mut state, &mut log, room(RoomRecord::Message { msg }));
        }
        log.commit().unwrap();
        let mut c = Compaction::begin(&mut log, 2).unwrap();
        assert!(
            c.step(&mut log, &state, 1).unwrap().is_none(),
            "the account"
        );
        let seg = *log.storage().segments().unwrap().last().unwrap();
        let before = log.storage().bytes(seg).unwrap().len();
        assert!(c.step(&mut log, &state, 1).unwrap().is_none(), "the room");
        let after = log.storage().bytes(seg).unwrap().len();
        // Power fails half-way through the room's batch; the node restarts
        // and writes on.
        let mut torn = log.storage().clone();
        torn.bytes_mut(seg)
            .unwrap()
            .truncate(before + (after - before) / 2);
        let mut log = open_log(torn, 3).unwrap().log;
        put(
            &mut state,
            &mut log,
            Record::AccountDel { user: "a".into() },
        );
        log.commit().unwrap();
        let mut s = log.storage().clone();
        let got = salvage(&mut s).unwrap();
        assert_eq!(got.state.rooms["r"].archive.len(), 3000);
        assert!(got.state == state, "salvage reads what start-up reads");
    }

    #[test]
    fn the_summary_counts_what_the_state_holds() {
        let mut state = State::default();
        state.apply(&account("a"));
        state.apply(&Record::OfflinePush {
            user: "a".into(),
            stamp_ms: 1,
            xml: "<message/>".into(),
        });
        let s = Summary::of(&state);
        assert_eq!(
            (s.accounts, s.offline_messages, s.offline_bytes),
            (1, 1, 10)
        );
        assert!(s.to_string().contains("accounts: 1"));
    }
}
