//! The durable part of a mirrored room (DESIGN §5: mirror caches live in the
//! log). What the master told us about the room survives a restart of the
//! site, so that joins during a split are still admitted from cached state and
//! the site's archive still answers.

use crate::common::PeerId;
use crate::model::room::{Affiliation, Archived, RoomConfig, RoomState, Subject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Messages kept in a replica for history and archive queries.
pub const REPLICA_HISTORY: usize = 1000;
/// Bytes of messages kept in a replica (the oldest go first).
pub const REPLICA_HISTORY_BYTES: u64 = 4 * 1024 * 1024;
/// Affiliations kept in a replica: what a master says beyond is dropped.
pub const REPLICA_AFFILIATIONS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorCache {
    /// The upstream MUC service (the link's peer key).
    pub upstream: PeerId,
    /// The room's localpart at the master.
    pub room: String,
    pub state: RoomState,
    /// Sequence number of the last master event applied.
    pub last_seq: u64,
}

/// Changes to a cached replica; part of `state::Record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MirrorRecord {
    /// The master's snapshot (first sync, or a resync answer).
    Synced {
        upstream: PeerId,
        room: String,
        config: RoomConfig,
        affiliations: Vec<(String, Affiliation)>,
        subject: Option<Subject>,
        history: Vec<Archived>,
        next_seq: u64,
    },
    Subject {
        seq: u64,
        subject: Subject,
    },
    Config {
        config: RoomConfig,
    },
    Affiliation {
        jid: String,
        affiliation: Affiliation,
    },
    Message {
        msg: Archived,
    },
    /// The replica is dropped (no local occupants, or the room was destroyed).
    Drop,
    /// The master's snapshot said the room waits for its owner's
    /// configuration (follows `Synced`, which leaves it unlocked; a
    /// `Config` unlocks it). Added after format 1: appended so older
    /// records decode unchanged.
    Locked,
    /// Drop archived messages up to and including this sequence number
    /// (the node's archives passed `archive_bytes_total`). Appended, like
    /// `Locked`.
    Trim {
        upto: u64,
    },
    /// The master's moderators retracted the archived message `seq`.
    Moderated {
        seq: u64,
        tombstone: String,
    },
    /// The master's vCard for the room (none: it has none).
    Vcard {
        vcard: Option<String>,
    },
}

pub fn apply(mirrors: &mut BTreeMap<String, MirrorCache>, key: &str, record: &MirrorRecord) {
    if let MirrorRecord::Synced {
        upstream,
        room,
        config,
        affiliations,
        subject,
        history,
        next_seq,
    } = record
    {
        let c = mirrors
            .entry(key.to_string())
            .or_insert_with(|| MirrorCache {
                upstream: upstream.clone(),
                room: room.clone(),
                state: RoomState::new("", Vec::new()),
                last_seq: 0,
            });
        c.state.config = config.clone();
        c.state.affiliations = affiliations
            .iter()
            .take(REPLICA_AFFILIATIONS)
            .cloned()
            .collect();
        c.state.subject = subject.clone();
        // Keep what the replica had before the snapshot's history, if the two
        // join up; an archive with a silent hole would mislead archive queries.
        let first = history.first().map_or(u64::MAX, |h| h.seq);
        if first <= c.last_seq + 1 {
            c.state.archive.drop_from(first);
        } else {
            c.state.archive.clear();
        }
        c.state.archive.extend(history.iter().cloned());
        trim(&mut c.state);
        c.state.next_seq = *next_seq;
        c.state.locked = false;
        c.last_seq = next_seq.saturating_sub(1);
        return;
    }
    if let MirrorRecord::Drop = record {
        mirrors.remove(key);
        return;
    }
    let Some(c) = mirrors.get_mut(key) else {
        return;
    };
    match record {
        MirrorRecord::Subject { seq, subject } => {
            c.last_seq = c.last_seq.max(*seq);
            c.state.subject = Some(subject.clone());
        }
        MirrorRecord::Config { config } => {
            c.state.config = config.clone();
            c.state.locked = false;
        }
        MirrorRecord::Locked => c.state.locked = true,
        MirrorRecord::Vcard { vcard } => c.state.vcard = vcard.clone(),
        MirrorRecord::Trim { upto } => c.state.archive.drop_upto(*upto),
        MirrorRecord::Moderated { seq, tombstone } => {
            c.state.archive.replace(*seq, tombstone.clone())
        }
        MirrorRecord::Affiliation { jid, affiliation } => {
            let affs = &mut c.state.affiliations;
            if *affiliation == Affiliation::None {
                affs.remove(jid);
            } else if affs.contains_key(jid) || affs.len() < REPLICA_AFFILIATIONS {
                affs.insert(jid.clone(), *affiliation);
            }
        }
        MirrorRecord::Message { msg } => {
            if msg.seq > c.last_seq {
                c.last_seq = msg.seq;
                c.state.next_seq = msg.seq + 1;
                c.state.archive.push(msg.clone());
                trim(&mut c.state);
            }
        }
        MirrorRecord::Synced { .. } | MirrorRecord::Drop => unreachable!("handled above"),
    }
}

/// Keep the replica's archive within its bounds.
fn trim(state: &mut RoomState) {
    if let Some(upto) = state
        .archive
        .trim_point(REPLICA_HISTORY, REPLICA_HISTORY_BYTES)
    {
        state.archive.drop_upto(upto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Archived {
        Archived {
            seq,
            stanza_id: format!("id{seq}"),
            stamp_ms: seq,
            nick: "n".into(),
            real: "a@b".into(),
            xml: format!("<message><body>{seq}</body></message>"),
        }
    }

    fn synced(history: Vec<Archived>, next_seq: u64) -> MirrorRecord {
        MirrorRecord::Synced {
            upstream: "conf.hq".into(),
            room: "r".into(),
            config: RoomConfig::default(),
            affiliations: vec![("o@hq".into(), Affiliation::Owner)],
            subject: None,
            history,
            next_seq,
        }
    }

    fn seqs(c: &MirrorCache) -> Vec<u64> {
        c.state.archive.iter().map(|a| a.seq).collect()
    }

    #[test]
    fn snapshots_join_up_with_the_archive_or_replace_it() {
        let mut m = BTreeMap::new();
        let key = "r@conf.hq";
        apply(&mut m, key, &synced(vec![msg(1), msg(2)], 3));
        apply(&mut m, key, &MirrorRecord::Message { msg: msg(3) });
        apply(&mut m, key, &MirrorRecord::Message { msg: msg(3) });
        assert_eq!(seqs(&m[key]), [1, 2, 3]);
        // A resync answer that continues the archive keeps what was there.
        apply(&mut m, key, &synced(vec![msg(4), msg(5)], 6));
        assert_eq!(seqs(&m[key]), [1, 2, 3, 4, 5]);
        // One that leaves a hole replaces it: no silent gap in the archive.
        apply(&mut m, key, &synced(vec![msg(9)], 10));
        assert_eq!(seqs(&m[key]), [9]);
        assert_eq!(m[key].last_seq, 9);
        apply(&mut m, key, &MirrorRecord::Drop);
        assert!(m.is_empty());
    }

    #[test]
    fn the_replica_archive_is_bounded() {
        let mut m = BTreeMap::new();
        let key = "r@conf.hq";
        apply(&mut m, key, &synced(Vec::new(), 1));
        for seq in 1..=(REPLICA_HISTORY as u64 + 10) {
            apply(&mut m, key, &MirrorRecord::Message { msg: msg(seq) });
        }
        // Cut a block at a time: within a block of the bound.
        let kept = m[key].state.archive.len();
        let block = crate::model::archive::BLOCK_MESSAGES;
        assert!(
            kept <= REPLICA_HISTORY && kept > REPLICA_HISTORY - block,
            "{kept}"
        );
        let newest = REPLICA_HISTORY as u64 + 10;
        assert_eq!(
            m[key].state.archive.front().unwrap().seq,
            newest - kept as u64 + 1
        );
        // And in bytes: big messages push the oldest out sooner.
        let big = |seq: u64| Archived {
            xml: format!("<message><body>{}</body></message>", "b".repeat(100_000)),
            ..msg(seq)
        };
        let first = REPLICA_HISTORY as u64 + 11;
        for seq in first..first + 100 {
            apply(&mut m, key, &MirrorRecord::Message { msg: big(seq) });
        }
        let c = &m[key].state;
        assert!(c.archive.bytes() <= REPLICA_HISTORY_BYTES);
        let sum: u64 = c.archive.iter().map(|a| a.xml.len() as u64).sum();
        assert_eq!(c.archive.bytes(), sum);
        assert_eq!(c.archive.back().unwrap().seq, first + 99);
    }
}
