//! The node's archives within their totals: rooms mastered here and
//! replicas of rooms mastered elsewhere share `[muc] archive_bytes_total`;
//! accounts' archives share `[c2s] archive_bytes_total`. Past a budget,
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

/// An archive of the node: a mastered room's (by localpart), a replica's
/// (by room JID) or an account's (by localpart).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Held {
    Room(String),
    Replica(String),
    Account(String),
}

fn archive<'a>(state: &'a State, held: &Held) -> Option<&'a Archive> {
    match held {
        Held::Room(room) => state.rooms.get(room).map(|r| &r.archive),
        Held::Replica(key) => state.mirrors.get(key).map(|m| &m.state.archive),
        Held::Account(user) => state.accounts.get(user).map(|a| &a.archive),
    }
}

/// Bytes of every room archive the node holds (mastered and replicas).
pub fn archive_bytes(state: &State) -> u64 {
    let rooms = state.rooms.values().map(|r| r.archive.bytes());
    let replicas = state.mirrors.values().map(|m| m.state.archive.bytes());
    rooms.chain(replicas).sum()
}

/// Bytes of every account's archive.
pub fn account_archive_bytes(state: &State) -> u64 {
    state.accounts.values().map(|a| a.archive.bytes()).sum()
}

impl Node {
    pub(crate) fn keep_archives_within_total(&mut self) {
        let limit = self.cfg.muc.archive_bytes_total;
        if archive_bytes(&self.state) <= limit {
            return;
        }
        let rooms = self
            .state
            .rooms
            .iter()
            .map(|(room, r)| (r.archive.bytes(), Held::Room(room.clone())));
        let replicas = self
            .state
            .mirrors
            .iter()
            .map(|(key, m)| (m.state.archive.bytes(), Held::Replica(key.clone())));
        let sizes = rooms.chain(replicas).collect();
        self.cut_largest(sizes, limit, "room archives", "[muc] archive_bytes_total");
    }

    /// The same for accounts' archives, within `[c2s] archive_bytes_total`.
    pub(crate) fn keep_account_archives_within_total(&mut self) {
        let limit = self.cfg.archive_bytes_total;
        if account_archive_bytes(&self.state) <= limit {
            return;
        }
        let sizes = self
            .state
            .accounts
            .iter()
            .map(|(user, a)| (a.archive.bytes(), Held::Account(user.clone())))
            .collect();
        self.cut_largest(
            sizes,
            limit,
            "accounts' archives",
            "[c2s] archive_bytes_total",
        );
    }

    /// Cut the largest of these archives down to one level, so that all
    /// fit in 15/16 of `limit`.
    fn cut_largest(&mut self, mut sizes: Vec<(u64, Held)>, limit: u64, what: &str, setting: &str) {
        let total: u64 = sizes.iter().map(|s| s.0).sum();
        let target = limit - limit / 16;
        // Largest first; among equals, in key order (replays the same).
        sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let level = level_for(sizes.iter().map(|s| s.0), total - target);
        log::warn!(
            "{what} hold {total} bytes, over {setting} ({limit}): \
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
                Held::Account(user) => Record::AccountArchiveTrim { user, upto },
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
