//! The node's archives within `[muc] archive_bytes_total`: rooms mastered
//! here and replicas of rooms mastered elsewhere share one budget. Past it,
//! the largest archives give up their oldest messages, all cut down to one
//! level, until everything fits in 15/16 of the budget (so trimming happens
//! once per sixteenth, not at every message, with one trim record per
//! archive cut). A room one user floods shrinks first; quiet rooms keep
//! their history.

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
        let total = archive_bytes(&self.state);
        if total <= limit {
            return;
        }
        let target = limit - limit / 16;
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
        let level = level_for(sizes.iter().map(|s| s.0), total - target);
        log::warn!(
            "room archives hold {total} bytes, over [muc] archive_bytes_total ({limit}): \
             those over {level} bytes give up their oldest messages (raise the setting to keep more)"
        );
        for (_, held) in sizes.into_iter().take_while(|(size, _)| *size > level) {
            let Some(messages) = archive(&self.state, &held) else {
                continue;
            };
            let Some(upto) = messages.trim_point(usize::MAX, level) else {
                continue;
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

/// The size every archive is cut down to so that `excess` bytes go, the
/// largest archives first: cutting the k largest down to a level L frees
/// their sum less k·L. `sizes` are in descending order.
fn level_for(sizes: impl Iterator<Item = u64>, excess: u64) -> u64 {
    let sizes: Vec<u64> = sizes.collect();
    let mut sum = 0u64;
    for (k, size) in sizes.iter().enumerate() {
        sum += size;
        let k = k as u64 + 1;
        let next = sizes.get(k as usize).copied().unwrap_or(0);
        if sum - k * next >= excess {
            return (sum - excess) / k;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::level_for;

    #[test]
    fn the_largest_archives_are_cut_to_one_level() {
        // One big archive: only it is cut.
        assert_eq!(level_for([100, 10, 5].into_iter(), 30), 70);
        // Two of a size: both are cut to the same level.
        assert_eq!(level_for([50, 50, 10].into_iter(), 20), 40);
        // Down past the next one: three share the cut.
        assert_eq!(level_for([50, 40, 30].into_iter(), 45), 25);
        // Everything must go.
        assert_eq!(level_for([5, 5].into_iter(), 10), 0);
        for (sizes, excess) in [(vec![90u64, 70, 70, 3], 100u64), (vec![8, 8, 8, 8], 9)] {
            let level = level_for(sizes.iter().copied(), excess);
            let freed: u64 = sizes.iter().map(|s| s.saturating_sub(level)).sum();
            assert!(freed >= excess, "{sizes:?}: level {level} frees {freed}");
        }
    }
}
