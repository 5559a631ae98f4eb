//! The archives' sealed blocks as a whole: which are still held in memory,
//! writing them out, and which archive files the state refers to.

use super::State;
use crate::model::archive::Archive;
use crate::model::block::Extent;
use std::collections::{BTreeMap, BTreeSet};
use std::io;

impl State {
    fn archives(&self) -> impl Iterator<Item = &Archive> {
        let rooms = self.rooms.values().map(|r| &r.archive);
        rooms.chain(self.mirrors.values().map(|m| &m.state.archive))
    }

    fn archives_mut(&mut self) -> impl Iterator<Item = &mut Archive> {
        let rooms = self.rooms.values_mut().map(|r| &mut r.archive);
        rooms.chain(self.mirrors.values_mut().map(|m| &mut m.state.archive))
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
