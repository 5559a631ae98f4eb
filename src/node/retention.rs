//! The node's archives within `[muc] archive_bytes_total`: rooms mastered
//! here and replicas of rooms mastered elsewhere share one budget. Past it,
//! the largest archive gives up its oldest messages, down to the size of
//! the next largest, until all of them fit in 15/16 of the budget (so
//! trimming happens once per sixteenth, not at every message). A room one
//! user floods shrinks first; quiet rooms keep their history.

use super::Node;
use crate::model::archive::Archive;
use crate::model::replica::MirrorRecord;
use crate::model::room::RoomRecord;
use crate::state::{Record, State};

/// An archive of the node: a mastered room's (by localpart) or a replica's
/// (by room JID).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Held {
    Room(String),
    Replica(String),
}

fn archive<'a>(state: &'a State, held: &Held) -> Option<&'a Archive> {
    match held {
        Held::Room(room) => state.rooms.get(room).map(|r| &r.archive),
        Held::Replica(key) => state.mirrors.get(key).map(|m| &m.state.archive),
    }
}

/// Bytes of every archive the node holds.
pub fn archive_bytes(state: &State) -> u64 {
    let rooms = state.rooms.values().map(|r| r.archive.bytes());
    let replicas = state.mirrors.values().map(|m| m.state.archive.bytes());
    rooms.chain(replicas).sum()
}

impl Node {
    pub(crate) fn keep_archives_within_total(&mut self) {
        let limit = self.cfg.muc.archive_bytes_total;
        let mut total = archive_bytes(&self.state);
        if total <= limit {
            return;
        }
        let target = limit - limit / 16;
        log::info!(
            "archives hold {total} bytes, over archive_bytes_total ({limit}): the largest give up their oldest messages"
        );
        while total > target {
            let mut sizes: Vec<(u64, Held)> = self
                .state
                .rooms
                .iter()
                .map(|(room, r)| (r.archive.bytes(), Held::Room(room.clone())))
                .chain(
                    self.state
                        .mirrors
                        .iter()
                        .map(|(key, m)| (m.state.archive.bytes(), Held::Replica(key.clone()))),
                )
                .collect();
            // Largest first; among equals, in key order (replays the same).
            sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let Some((largest, held)) = sizes.first().cloned() else {
                return;
            };
            let next = sizes.get(1).map_or(0, |s| s.0);
            let Some(messages) = archive(&self.state, &held) else {
                return;
            };
            let (mut bytes, mut upto) = (largest, None);
            for m in messages {
                if total <= target || (bytes <= next && upto.is_some()) {
                    break;
                }
                let n = m.xml.len() as u64;
                (total, bytes, upto) = (total - n, bytes - n, Some(m.seq));
            }
            let Some(upto) = upto else {
                return; // Nothing left to drop.
            };
            self.commit(match held {
                Held::Room(room) => Record::Room {
                    room,
                    change: RoomRecord::Trim { upto },
                },
                Held::Replica(key) => Record::Mirror {
                    key,
                    change: Box::new(MirrorRecord::Trim { upto }),
                },
            });
        }
    }
}
