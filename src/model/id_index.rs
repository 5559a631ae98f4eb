//! An archive's stanza-ids, found in O(log n) with 6 bytes per sealed
//! message: a 32-bit fingerprint of each id with the low 16 bits of its
//! block's serial number (blocks are numbered as they are sealed; an
//! archive holds fewer than 2^16 blocks, or a lookup checks the few that
//! share the low bits), sorted by fingerprint, plus a shorter unsorted run
//! of the newest that is merged in when it fills. The open messages are
//! not indexed: there are few, and a lookup reads them all.
//!
//! Entries are never removed one by one: a lookup checks each candidate
//! block for the id itself (an entry of a dropped block names no block,
//! or one without that id), and merges leave out entries of blocks no
//! longer kept.

pub use super::block::fingerprint_of;
use std::ops::Range;

/// Blocks with one fingerprint a lookup checks, and a merge keeps. Ids
/// that share a fingerprint by chance are a few per million; more are
/// crafted, and each check may cost a block read.
pub const MAX_CANDIDATES: usize = 8;

/// Sorted by fingerprint then block: two runs rather than one of pairs,
/// whose padding would take a quarter of the memory.
#[derive(Clone, Default)]
pub struct IdIndex {
    fingerprints: Vec<u32>,
    blocks: Vec<u16>,
    recent: Vec<(u32, u16)>,
}

impl IdIndex {
    /// Index a message of the block with serial number `block` by its id's
    /// fingerprint. `kept` is the span of serials the archive keeps, for
    /// merges.
    pub fn add(&mut self, fp: u32, block: u64, kept: Range<u64>) {
        self.recent.push((fp, block as u16));
        if self.recent.len() >= self.recent_limit() {
            self.merge(kept);
        }
    }

    /// The newest entries are scanned, not searched: an eighth of the rest
    /// (at most 4,096, a few µs to scan), so a merge, which moves the
    /// whole sorted run, comes after it grew by an eighth or 4,096: index
    /// a million messages (a start-up) and it moves about 1.5 KB per
    /// message, not the run's whole size.
    fn recent_limit(&self) -> usize {
        (self.fingerprints.len() / 8).clamp(256, 4096)
    }

    /// Serials of the blocks in `kept` that may hold an id with this
    /// fingerprint (at most [`MAX_CANDIDATES`], oldest first).
    pub fn candidates(&self, fp: u32, kept: Range<u64>) -> Vec<u64> {
        let start = self.fingerprints.partition_point(|f| *f < fp);
        let end = start + self.fingerprints[start..].partition_point(|f| *f == fp);
        let sorted = self.blocks[start..end].iter().copied();
        let recent = self
            .recent
            .iter()
            .filter(|(f, _)| *f == fp)
            .map(|(_, b)| *b);
        let mut found: Vec<u64> = sorted
            .chain(recent)
            .flat_map(|lo| resolve(lo, kept.clone()))
            .collect();
        found.sort_unstable();
        found.dedup();
        found.truncate(MAX_CANDIDATES);
        found
    }

    /// Fold the recent entries into the sorted ones, leaving out those of
    /// blocks no longer kept, repeats, and those past [`MAX_CANDIDATES`]
    /// per fingerprint.
    pub fn merge(&mut self, kept: Range<u64>) {
        let mut recent = std::mem::take(&mut self.recent);
        recent.sort_unstable();
        let fingerprints = std::mem::take(&mut self.fingerprints);
        let blocks = std::mem::take(&mut self.blocks);
        let old = fingerprints.into_iter().zip(blocks);
        let size = old.len() + recent.len();
        let (mut a, mut b) = (old.peekable(), recent.into_iter().peekable());
        let (mut merged_fps, mut merged_blocks) =
            (Vec::with_capacity(size), Vec::with_capacity(size));
        let mut last = None;
        let mut same = 0;
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            let Some((fp, block)) = next else { break };
            if resolve(block, kept.clone()).next().is_none() || last == Some((fp, block)) {
                continue;
            }
            same = if last.is_some_and(|(f, _)| f == fp) {
                same + 1
            } else {
                1
            };
            last = Some((fp, block));
            if same <= MAX_CANDIDATES {
                merged_fps.push(fp);
                merged_blocks.push(block);
            }
        }
        merged_fps.shrink_to_fit();
        merged_blocks.shrink_to_fit();
        self.fingerprints = merged_fps;
        self.blocks = merged_blocks;
    }

    /// Leave out entries of blocks outside `kept` now.
    pub fn retain_within(&mut self, kept: Range<u64>) {
        self.recent
            .retain(|(_, b)| resolve(*b, kept.clone()).next().is_some());
        if self
            .blocks
            .iter()
            .any(|b| resolve(*b, kept.clone()).next().is_none())
        {
            self.merge(kept);
        }
    }

    /// Entries held (kept or not yet left out).
    pub fn len(&self) -> usize {
        self.fingerprints.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index takes.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.fingerprints.capacity() * 4
            + self.blocks.capacity() * 2
            + self.recent.capacity() * std::mem::size_of::<(u32, u16)>()
    }
}

/// The serials in `kept` whose low 16 bits are `lo`: one at most while an
/// archive holds fewer than 2^16 blocks.
fn resolve(lo: u16, kept: Range<u64>) -> impl Iterator<Item = u64> {
    let first = kept.start + u64::from(lo.wrapping_sub(kept.start as u16));
    (first..kept.end).step_by(1 << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_resolve_within_what_is_kept_across_the_16_bit_wrap() {
        let all = |lo, kept| resolve(lo, kept).collect::<Vec<_>>();
        let kept = 65_534..65_541;
        assert_eq!(all(u16::MAX, kept.clone()), [65_535]);
        assert_eq!(all(3, kept.clone()), [65_539]);
        assert_eq!(all(5, kept.clone()), Vec::<u64>::new());
        assert_eq!(all(65_533, kept), Vec::<u64>::new());
        // More blocks than 16 bits name: each that shares the low bits.
        assert_eq!(all(7, 0..140_000), [7, 65_543, 131_079]);
    }

    #[test]
    fn lookups_find_every_kept_entry_before_and_after_merges() {
        let block_of = |message: u64| message / 40;
        let mut index = IdIndex::default();
        for m in 0..10_000u64 {
            index.add(
                fingerprint_of(&format!("id{m}")),
                block_of(m),
                0..block_of(m) + 1,
            );
        }
        assert!(index.recent.len() < index.fingerprints.len());
        for m in (0..10_000u64).step_by(7) {
            let got = index.candidates(fingerprint_of(&format!("id{m}")), 0..250);
            assert!(got.contains(&block_of(m)), "{m}: {got:?}");
        }
        // Dropped blocks leave at the next merge.
        index.merge(125..250);
        assert_eq!(index.len(), 5_000);
        assert!(index
            .candidates(fingerprint_of("id10"), 125..250)
            .is_empty());
        assert!(index.bytes() <= 5_000 * 6);
    }

    #[test]
    fn an_id_indexed_again_in_the_same_block_is_held_once() {
        let mut index = IdIndex::default();
        for _ in 0..3 {
            index.add(7, 2, 0..3);
        }
        index.merge(0..3);
        assert_eq!(index.len(), 1);
        assert_eq!(index.candidates(7, 0..3), [2]);
    }

    #[test]
    fn a_flood_of_one_fingerprint_is_held_and_checked_a_bounded_number_of_times() {
        let mut index = IdIndex::default();
        for block in 0..5_000u64 {
            index.add(42, block, 0..block + 1);
        }
        index.merge(0..5_000);
        assert_eq!(index.len(), MAX_CANDIDATES);
        assert_eq!(
            index.candidates(42, 0..5_000),
            (0..MAX_CANDIDATES as u64).collect::<Vec<_>>()
        );
    }
}
