//! The archives' sealed blocks as a whole: which are still held in memory,
//! writing them out, and which archive files the state refers to.

use super::State;
use crate::model::archive::Archive;
use crate::model::block::Extent;
use std::collections::{BTreeMap, BTreeSet};
use std::io;

impl State {
    /// Rooms' archives, replicas' archives, offline queues and accounts'
    /// archives.
    fn archives(&self) -> impl Iterator<Item = &Archive> {
        let mirrors = self.mirrors.values().map(|m| &m.state.archive);
        self.sealable().chain(mirrors)
    }

    fn archives_mut(&mut self) -> impl Iterator<Item = &mut Archive> {
        let mirrors = self.mirrors.values_mut().map(|m| &mut m.state.archive);
        let rooms = self.rooms.values_mut().map(|r| &mut r.archive);
        let accounts = self
            .accounts
            .values_mut()
            .flat_map(|a| [a.offline.archive_mut(), &mut a.archive]);
        rooms.chain(accounts).chain(mirrors)
    }

    /// Seal open messages early when all archives' open runs together
    /// hold more than `budget` bytes of stanzas: the largest runs first,
    /// until they hold at most half of it. Open messages are what memory
    /// keeps whole; a thousand quiet rooms or offline queues would each
    /// keep up to a block's worth (16 KiB) otherwise. Returns how many
    /// runs were sealed.
    ///
    /// Replicas are left out: a replica trims itself as it applies a
    /// message (no record says where), by whole blocks, so where its blocks
    /// end must be what a replay of the log makes of it.
    pub fn bound_open_messages(&mut self, budget: usize) -> usize {
        let total: usize = self.sealable().map(|a| a.open_bytes()).sum();
        if total <= budget {
            return 0;
        }
        let mut runs: Vec<(usize, usize)> = self
            .sealable()
            .enumerate()
            .map(|(i, a)| (a.open_bytes(), i))
            .filter(|(bytes, _)| *bytes > 0)
            .collect();
        runs.sort_unstable_by(|a, b| b.cmp(a));
        let mut left = total;
        let chosen: BTreeSet<usize> = runs
            .into_iter()
            .take_while(|(bytes, _)| {
                let more = left > budget / 2;
                left -= bytes;
                more
            })
            .map(|(_, i)| i)
            .collect();
        for (i, archive) in self.sealable_mut().enumerate() {
            if chosen.contains(&i) {
                archive.seal_open();
            }
        }
        chosen.len()
    }

    /// The archives whose blocks may be sealed early: rooms' and
    /// accounts' (their trims are records) and offline queues (delivery is
    /// a record).
    fn sealable(&self) -> impl Iterator<Item = &Archive> {
        let rooms = self.rooms.values().map(|r| &r.archive);
        let accounts = self
            .accounts
            .values()
            .flat_map(|a| [a.offline.archive(), &a.archive]);
        rooms.chain(accounts)
    }

    /// The same, in the same order (`bound_open_messages` picks by index).
    fn sealable_mut(&mut self) -> impl Iterator<Item = &mut Archive> {
        let rooms = self.rooms.values_mut().map(|r| &mut r.archive);
        let accounts = self
            .accounts
            .values_mut()
            .flat_map(|a| [a.offline.archive_mut(), &mut a.archive]);
        rooms.chain(accounts)
    }

    /// Whether some archive holds sealed blocks not yet written out.
    pub fn has_held_blocks(&self) -> bool {
        self.archives().any(Archive::has_held_blocks)
    }

    /// Write every block held in memory with `store` (see `Archive::spill`).
    pub fn spill_blocks(
        &mut self,
        store: &mut dyn FnMut(&[u8]) -> io::Result<Extent>,
    ) -> io::Result<()> {
        for archive in self.archives_mut().filter(|a| a.has_held_blocks()) {
            archive.spill(store)?;
        }
        Ok(())
    }

    /// Rebuild every archive from the messages that can be read, sealed
    /// into blocks held in memory (to copy the state away from its archive
    /// files: a salvage). Returns how many messages could not be read.
    pub fn rebuild_archives_readable(&mut self) -> u64 {
        let mut lost = 0;
        for archive in self.archives_mut() {
            let rebuilt: Archive = archive.iter().collect();
            lost += (archive.len() - rebuilt.len()) as u64;
            *archive = rebuilt;
        }
        lost
    }

    /// The archive files the state refers to, each with the end of the last
    /// stretch of it that it does.
    pub fn block_files(&self) -> BTreeMap<u32, u64> {
        let mut files = BTreeMap::new();
        for at in self.archives().flat_map(Archive::extents) {
            let end = files.entry(at.file).or_insert(0);
            *end = (*end).max(at.offset + u64::from(at.len));
        }
        files
    }

    /// Bytes of blocks the state keeps in each archive file.
    pub fn block_usage(&self) -> BTreeMap<u32, u64> {
        let mut used = BTreeMap::new();
        for at in self.archives().flat_map(Archive::extents) {
            *used.entry(at.file).or_insert(0) += u64::from(at.len);
        }
        used
    }

    /// Read the blocks stored in `files` back into memory, up to `budget`
    /// bytes, to be written again (into the file being written) by the
    /// next spill; the files can go once no snapshot refers to them.
    /// Returns the bytes read.
    pub fn rehold_blocks(&mut self, files: &BTreeSet<u32>, budget: u64) -> u64 {
        let mut read = 0;
        for archive in self.archives_mut() {
            if read >= budget {
                break;
            }
            read += archive.rehold(files, budget - read);
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{OfflineMessage, Record};

    fn with_offline_queues(sizes: &[usize]) -> State {
        let mut state = State::default();
        for (i, size) in sizes.iter().enumerate() {
            let user = format!("u{i}");
            state.apply(&Record::AccountSet {
                user: user.clone(),
                creds: crate::scram::Credentials::derive("pw", b"fixed salt", 64),
            });
            // Messages of 1 KiB until the queue holds `size` bytes.
            for _ in 0..size / 1024 {
                state.apply(&Record::OfflinePush {
                    user: user.clone(),
                    stamp_ms: 1,
                    xml: "m".repeat(1024),
                });
            }
        }
        state
    }

    fn messages(state: &State) -> Vec<Vec<OfflineMessage>> {
        state
            .accounts
            .values()
            .map(|a| a.offline.iter().collect())
            .collect()
    }

    #[test]
    fn open_messages_past_the_bound_are_sealed_largest_runs_first() {
        // 40 queues of 4 KiB and one of 12 KiB: 172 KiB open in all.
        let mut sizes = vec![4 * 1024; 40];
        sizes.push(12 * 1024);
        let mut state = with_offline_queues(&sizes);
        let before = messages(&state);
        let open = |s: &State| s.archives().map(Archive::open_bytes).sum::<usize>();
        assert_eq!(open(&state), 172 * 1024);
        assert_eq!(state.bound_open_messages(200 * 1024), 0, "under the bound");
        let sealed = state.bound_open_messages(128 * 1024);
        assert!(open(&state) <= 64 * 1024, "{}", open(&state));
        assert_eq!(
            sealed,
            1 + 24,
            "the 12 KiB run, then 4 KiB runs to half the bound"
        );
        assert_eq!(state.accounts["u40"].offline.archive().open_bytes(), 0);
        assert_eq!(
            messages(&state),
            before,
            "nothing changes but where they are"
        );
        assert!(state.has_held_blocks());
        assert_eq!(
            state.bound_open_messages(128 * 1024),
            0,
            "until they grow again"
        );
    }
}
