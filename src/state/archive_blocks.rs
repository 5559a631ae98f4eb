//! The archives' sealed blocks as a whole: which are still held in memory,
//! writing them out, and which archive files the state refers to.

use super::State;
use crate::model::archive::Archive;
use crate::model::block::Extent;
use std::collections::BTreeMap;
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

    /// Read every stored block back into memory; false if one could not be.
    pub fn hold_all_blocks(&mut self) -> bool {
        // Every archive is tried, whatever the ones before gave.
        let read: Vec<bool> = self.archives_mut().map(Archive::hold_all).collect();
        read.into_iter().all(|whole| whole)
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
}
