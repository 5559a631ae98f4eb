//! An archive's stanza-ids, found in O(log n) with 8 bytes per message:
//! a 32-bit fingerprint of each id with the low 32 bits of its message's
//! absolute index (the archive holds fewer than 2^32 messages, so that
//! names it), sorted by fingerprint, plus a shorter unsorted run of the
//! newest that is merged in when it fills.
//!
//! Entries are never removed one by one: a lookup checks each candidate
//! against the message it names (an entry of a dropped message names no
//! message, or one with another id), and merges leave out entries of
//! messages no longer kept.

pub use super::block::fingerprint_of;

/// Entries with one fingerprint a lookup checks, and a merge keeps. Ids
/// that share a fingerprint by chance are a few per million; more are
/// crafted, and each check may cost a block read.
pub const MAX_CANDIDATES: usize = 8;

#[derive(Clone, Default)]
pub struct IdIndex {
    sorted: Vec<(u32, u32)>,
    recent: Vec<(u32, u32)>,
}

impl IdIndex {
    /// Index the message at absolute index `abs` by its id's fingerprint.
    /// `kept` is the span of absolute indexes the archive keeps, for merges.
    pub fn add(&mut self, fp: u32, abs: u64, kept: std::ops::Range<u64>) {
        self.recent.push((fp, abs as u32));
        if self.recent.len() >= self.recent_limit() {
            self.merge(kept);
        }
    }

    /// The newest entries are scanned, not searched: an eighth of the rest
    /// (at most 4,096, a few µs to scan), so a merge, which moves the
    /// whole sorted run, comes after it grew by an eighth or 4,096: index
    /// a million messages (a start-up) and it moves about 2 KB per message,
    /// not the run's whole size.
    fn recent_limit(&self) -> usize {
        (self.sorted.len() / 8).clamp(256, 4096)
    }

    /// Absolute indexes that may hold an id with this fingerprint (at
    /// most [`MAX_CANDIDATES`], oldest first), for messages in `kept`.
    pub fn candidates(&self, fp: u32, kept: std::ops::Range<u64>) -> Vec<u64> {
        let start = self.sorted.partition_point(|(f, _)| *f < fp);
        let sorted = self.sorted[start..].iter().take_while(|(f, _)| *f == fp);
        let recent = self.recent.iter().filter(|(f, _)| *f == fp);
        let mut found: Vec<u64> = sorted
            .chain(recent)
            .filter_map(|(_, lo)| resolve(*lo, &kept))
            .collect();
        found.sort_unstable();
        found.dedup();
        found.truncate(MAX_CANDIDATES);
        found
    }

    /// Fold the recent entries into the sorted ones, leaving out those of
    /// messages no longer kept and those past [`MAX_CANDIDATES`] per
    /// fingerprint.
    pub fn merge(&mut self, kept: std::ops::Range<u64>) {
        let mut recent = std::mem::take(&mut self.recent);
        recent.sort_unstable();
        let old = std::mem::take(&mut self.sorted);
        let mut merged = Vec::with_capacity(old.len() + recent.len());
        let (mut a, mut b) = (old.into_iter().peekable(), recent.into_iter().peekable());
        let (mut last_fp, mut same) = (None, 0);
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            let Some((fp, lo)) = next else { break };
            if resolve(lo, &kept).is_none() {
                continue;
            }
            same = if last_fp == Some(fp) { same + 1 } else { 1 };
            last_fp = Some(fp);
            if same <= MAX_CANDIDATES {
                merged.push((fp, lo));
            }
        }
        merged.shrink_to_fit();
        self.sorted = merged;
    }

    /// Leave out entries of messages outside `kept` now.
    pub fn retain_within(&mut self, kept: std::ops::Range<u64>) {
        let within = |(_, lo): &(u32, u32)| resolve(*lo, &kept).is_some();
        self.sorted.retain(within);
        self.recent.retain(within);
    }

    /// Entries held (kept or not yet left out).
    pub fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index takes.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        (self.sorted.capacity() + self.recent.capacity()) * std::mem::size_of::<(u32, u32)>()
    }
}

/// The absolute index in `kept` whose low 32 bits are `lo`, if any.
fn resolve(lo: u32, kept: &std::ops::Range<u64>) -> Option<u64> {
    let offset = lo.wrapping_sub(kept.start as u32) as u64;
    let abs = kept.start + offset;
    (abs < kept.end).then_some(abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_resolve_within_what_is_kept_across_the_32_bit_wrap() {
        let kept = (u32::MAX as u64 - 2)..(u32::MAX as u64 + 5);
        assert_eq!(resolve(u32::MAX, &kept), Some(u32::MAX as u64));
        assert_eq!(resolve(3, &kept), Some(u32::MAX as u64 + 4));
        assert_eq!(resolve(4, &kept), None);
        assert_eq!(resolve(u32::MAX - 3, &kept), None);
    }

    #[test]
    fn lookups_find_every_kept_entry_before_and_after_merges() {
        let mut index = IdIndex::default();
        for abs in 0..10_000u64 {
            index.add(fingerprint_of(&format!("id{abs}")), abs, 0..abs + 1);
        }
        assert!(index.recent.len() < index.sorted.len());
        for abs in (0..10_000u64).step_by(7) {
            let got = index.candidates(fingerprint_of(&format!("id{abs}")), 0..10_000);
            assert!(got.contains(&abs), "{abs}: {got:?}");
        }
        // Dropped messages leave at the next merge.
        index.merge(5_000..10_000);
        assert_eq!(index.len(), 5_000);
        assert!(index
            .candidates(fingerprint_of("id10"), 5_000..10_000)
            .is_empty());
        assert!(index.bytes() <= 5_000 * 8 + 8);
    }

    #[test]
    fn a_flood_of_one_fingerprint_is_held_and_checked_a_bounded_number_of_times() {
        let mut index = IdIndex::default();
        for abs in 0..5_000u64 {
            index.add(42, abs, 0..abs + 1);
        }
        index.merge(0..5_000);
        assert_eq!(index.len(), MAX_CANDIDATES);
        assert_eq!(
            index.candidates(42, 0..5_000),
            (0..MAX_CANDIDATES as u64).collect::<Vec<_>>()
        );
    }
}
