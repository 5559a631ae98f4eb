//! A room's archive: its messages in the master's order, with what finds
//! one without a scan. Sequence numbers only grow, so a position is a
//! binary search away; stamps grow with them (the master never stamps a
//! message earlier than the one before), so a time bound is one too; and
//! stanza-ids, random strings minted here or at a site, are indexed by a
//! hash. A site's resent message is recognised, and a query paged from an
//! id answered, in O(log n) at any archive size.
//!
//! Older messages are kept in sealed [`Block`]s (compressed, in memory or
//! in an archive file); the newest stay open until they fill a block.
//! Reading a sealed message decodes its block once; the blocks decoded
//! last are kept (a few for the whole node, see `block::decoded`).

use super::block::{
    decoded, fingerprint_of, forget_decoded, next_archive_number, Block, Bytes, Extent, Packed,
};
use super::id_index::IdIndex;
use super::room::Archived;
use serde::de::Deserializer;
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering::{self, Greater, Less};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::rc::Rc;

/// Stanza bytes of open messages that seal them into a block.
pub const BLOCK_BYTES: usize = 16 * 1024;
/// Open messages that seal them into a block, however small.
pub const BLOCK_MESSAGES: usize = super::block::MAX_MESSAGES;
pub struct Archive {
    /// Sealed blocks, oldest first, each with the absolute index of its
    /// first message (messages are counted from the archive's creation).
    sealed: VecDeque<(u64, Block)>,
    /// Messages of the oldest block that were dropped, and their bytes.
    dropped_in_first: usize,
    dropped_in_first_bytes: u64,
    /// The newest messages, not yet sealed.
    open: VecDeque<Archived>,
    open_bytes: usize,
    /// Absolute index of the oldest message kept.
    front_abs: u64,
    len: usize,
    /// Bytes of the messages' stanzas.
    bytes: u64,
    /// The sealed messages' stanza-ids, to their blocks' serials.
    ids: IdIndex,
    /// The serial number of the oldest block (blocks are numbered as they
    /// are sealed, and the newest's number goes to the next if it is
    /// opened again), for the id index.
    front_serial: u64,
    /// Sealed blocks whose bytes are in memory, not yet in a file.
    held_blocks: usize,
    /// Whether ids are looked up (not in an offline queue, whose messages
    /// have none).
    indexed: bool,
    /// This archive's number among the node's, for decoded blocks' keys.
    number: u64,
    /// Messages replaced since they were archived (a moderator's
    /// retraction leaves a tombstone): their stanzas by sequence number.
    /// Sealed blocks stay as they were written; every read goes through
    /// this.
    replaced: BTreeMap<u64, String>,
}

impl Default for Archive {
    fn default() -> Archive {
        Archive {
            sealed: VecDeque::new(),
            dropped_in_first: 0,
            dropped_in_first_bytes: 0,
            open: VecDeque::new(),
            open_bytes: 0,
            front_abs: 0,
            len: 0,
            bytes: 0,
            ids: IdIndex::default(),
            front_serial: 0,
            held_blocks: 0,
            indexed: true,
            number: next_archive_number(),
            replaced: BTreeMap::new(),
        }
    }
}

/// A copy changes apart from the original: it gets its own number.
impl Clone for Archive {
    fn clone(&self) -> Archive {
        Archive {
            sealed: self.sealed.clone(),
            dropped_in_first: self.dropped_in_first,
            dropped_in_first_bytes: self.dropped_in_first_bytes,
            open: self.open.clone(),
            open_bytes: self.open_bytes,
            front_abs: self.front_abs,
            len: self.len,
            bytes: self.bytes,
            ids: self.ids.clone(),
            front_serial: self.front_serial,
            held_blocks: self.held_blocks,
            indexed: self.indexed,
            number: next_archive_number(),
            replaced: self.replaced.clone(),
        }
    }
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    /// An archive whose messages are never looked up by id: it keeps no
    /// id index ([`seq_of`](Self::seq_of) reads only its open messages).
    pub fn without_ids() -> Archive {
        Archive {
            indexed: false,
            ..Archive::default()
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the archived stanzas (what retention counts).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of messages the archive holds in memory: blocks not yet in a
    /// file (compressed), and open messages' stanzas.
    pub fn held_bytes(&self) -> u64 {
        let held = self.sealed.iter().filter(|(_, b)| b.packed.is_held());
        (held.map(|(_, b)| b.packed.len()).sum::<usize>() + self.open_bytes) as u64
    }

    /// Bytes of its blocks, compressed, wherever they are.
    pub fn packed_bytes(&self) -> u64 {
        self.sealed.iter().map(|(_, b)| b.packed.len() as u64).sum()
    }

    /// Whether some sealed blocks are held in memory, to be written out.
    pub fn has_held_blocks(&self) -> bool {
        self.held_blocks > 0
    }

    /// Write the blocks held in memory with `store`, which says where each
    /// went; memory then keeps only that. Stops at the first error (the
    /// blocks not written stay held, nothing is lost).
    pub fn spill(&mut self, store: &mut dyn FnMut(&[u8]) -> io::Result<Extent>) -> io::Result<()> {
        for (_, block) in self.sealed.iter_mut().rev() {
            if self.held_blocks == 0 {
                break;
            }
            if let Packed::Held(bytes) = &block.packed {
                block.packed = Packed::Stored(store(&bytes.0)?);
                self.held_blocks -= 1;
            }
        }
        Ok(())
    }

    /// Read stored blocks in `files` back into memory, up to `budget`
    /// bytes (see `State::rehold_blocks`); the bytes read.
    pub fn rehold(&mut self, files: &BTreeSet<u32>, budget: u64) -> u64 {
        let mut read = 0;
        for (_, block) in self.sealed.iter_mut() {
            let Packed::Stored(at) = block.packed else {
                continue;
            };
            if read >= budget {
                break;
            }
            if !files.contains(&at.file) {
                continue;
            }
            // One that cannot be read stays where it is (and its file).
            if let Some(bytes) = block.bytes() {
                block.packed = Packed::Held(Bytes(bytes.into_owned().into()));
                self.held_blocks += 1;
                read += u64::from(at.len);
            }
        }
        read
    }

    /// Where the stored blocks are.
    pub fn extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.sealed.iter().filter_map(|(_, b)| match b.packed {
            Packed::Stored(at) => Some(at),
            Packed::Held(_) => None,
        })
    }

    /// Count a block coming or going.
    fn track(&mut self, block: &Block, coming: bool) {
        if block.packed.is_held() {
            if coming {
                self.held_blocks += 1;
            } else {
                self.held_blocks -= 1;
            }
        }
    }

    /// The messages, oldest first (each one decoded on demand).
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// The messages from `position` on.
    pub fn iter_from(&self, position: usize) -> Iter<'_> {
        Iter {
            archive: self,
            front: position.min(self.len),
            back: self.len,
        }
    }

    pub fn front(&self) -> Option<Archived> {
        self.get(0)
    }

    pub fn back(&self) -> Option<Archived> {
        self.get(self.len.checked_sub(1)?)
    }

    fn sealed_len(&self) -> usize {
        self.len - self.open.len()
    }

    /// The message at a position (0 is the oldest kept).
    pub fn get(&self, position: usize) -> Option<Archived> {
        let mut m = self.get_as_written(position)?;
        if let Some(xml) = self.replaced.get(&m.seq) {
            m.xml = xml.clone();
        }
        Some(m)
    }

    fn get_as_written(&self, position: usize) -> Option<Archived> {
        if position >= self.len {
            return None;
        }
        let Some(in_open) = position.checked_sub(self.sealed_len()) else {
            let abs = self.front_abs + position as u64;
            let b = self.sealed.partition_point(|(start, _)| *start <= abs) - 1;
            let (start, _) = self.sealed[b];
            return self.block(b)?.get((abs - start) as usize).cloned();
        };
        self.open.get(in_open).cloned()
    }

    /// From now on the message `seq` reads as `xml` (a kept message only).
    pub fn replace(&mut self, seq: u64, xml: String) {
        if self.position(seq).is_some() {
            self.replaced.insert(seq, xml);
        }
    }

    /// The replaced messages, by sequence number (for snapshots).
    pub fn replaced(&self) -> &BTreeMap<u64, String> {
        &self.replaced
    }

    /// The positions of the block that holds `position` (its kept part;
    /// just `position` for an open message).
    fn block_span(&self, position: usize) -> std::ops::Range<usize> {
        if position >= self.sealed_len() {
            return position..position + 1;
        }
        let abs = self.front_abs + position as u64;
        let b = self.sealed.partition_point(|(start, _)| *start <= abs) - 1;
        let (start, block) = &self.sealed[b];
        let first = start.max(&self.front_abs) - self.front_abs;
        let end = start + block.count() as u64 - self.front_abs;
        first as usize..end as usize
    }

    /// The messages of sealed block `b`, decoded (or from a recent decode).
    fn block(&self, b: usize) -> Option<Rc<Vec<Archived>>> {
        let (start, block) = &self.sealed[b];
        decoded((self.number, *start), block)
    }

    /// Add the newest message. One whose sequence number is not above
    /// every other's is not kept (the order is what every lookup relies
    /// on; a master never sends such a message, a damaged or hostile one
    /// might): false then.
    ///
    /// A stamp below the one before is raised to it: time bounds are found
    /// by binary search. (Masters stamp so since this release; archives
    /// written before, or replicas of an older master, may not be.)
    pub fn push(&mut self, mut msg: Archived) -> bool {
        if self.last_seq().is_some_and(|last| last >= msg.seq) {
            return false;
        }
        msg.stamp_ms = msg.stamp_ms.max(self.last_stamp());
        self.bytes += msg.xml.len() as u64;
        self.open_bytes += msg.xml.len();
        self.len += 1;
        self.open.push_back(msg);
        if self.open_bytes >= BLOCK_BYTES || self.open.len() >= BLOCK_MESSAGES {
            self.seal();
        }
        true
    }

    /// Add a block of older messages, as a snapshot stored it. One out of
    /// order, or that says impossible things of itself, is not kept.
    pub fn push_block(&mut self, block: Block) -> bool {
        if !block.is_well_formed() || self.last_seq().is_some_and(|l| l >= block.first_seq) {
            return false;
        }
        self.seal();
        // Stamps only grow (see `push`); a block's cannot be raised
        // without decoding it, so an earlier one is kept open instead.
        if block.first_stamp < self.last_stamp() {
            let Some(messages) = block.open() else {
                return false;
            };
            for m in messages {
                self.push(m);
            }
            return true;
        }
        let start = self.end_abs();
        // A block whose fingerprints cannot be read cannot be read whole
        // either: its messages are found by position only, as damaged.
        let fingerprints = block.fingerprints().unwrap_or_default();
        self.len += block.count();
        self.bytes += block.xml_bytes;
        self.track(&block, true);
        self.sealed.push_back((start, block));
        self.index_newest_block(&fingerprints);
        true
    }

    /// The serial numbers of the sealed blocks, oldest first.
    fn serials(&self) -> std::ops::Range<u64> {
        self.front_serial..self.front_serial + self.sealed.len() as u64
    }

    fn index_newest_block(&mut self, fingerprints: &[u32]) {
        if !self.indexed {
            return;
        }
        let serials = self.serials();
        for fp in fingerprints {
            self.ids.add(*fp, serials.end - 1, serials.clone());
        }
    }

    /// The absolute index the next message gets.
    fn end_abs(&self) -> u64 {
        self.front_abs + self.len as u64
    }

    /// Stanza bytes of the open messages.
    pub fn open_bytes(&self) -> usize {
        self.open_bytes
    }

    /// Seal the open messages into a block now, however few (memory
    /// holds open messages whole; see `State::bound_open_messages`).
    pub fn seal_open(&mut self) {
        if !self.open.is_empty() {
            self.seal();
        }
    }

    /// Seal the open messages into a block.
    fn seal(&mut self) {
        let messages = Vec::from(std::mem::take(&mut self.open));
        self.open_bytes = 0;
        let start = self.end_abs() - messages.len() as u64;
        match Block::seal(&messages) {
            Some(block) => {
                self.track(&block, true);
                self.sealed.push_back((start, block));
                let fingerprints: Vec<u32> = messages
                    .iter()
                    .map(|m| fingerprint_of(&m.stanza_id))
                    .collect();
                self.index_newest_block(&fingerprints);
            }
            // Nothing to seal (or messages postcard cannot encode, which
            // strings and integers never are): they stay open.
            None => self.open = messages.into(),
        }
        if !self.open.is_empty() {
            self.open_bytes = self.open.iter().map(|m| m.xml.len()).sum();
        }
    }

    /// Remove the oldest message (the oldest readable one: a block damage
    /// made unreadable goes with it).
    pub fn pop_front(&mut self) -> Option<Archived> {
        loop {
            if self.sealed.is_empty() {
                let m = self.open.pop_front()?;
                self.open_bytes -= m.xml.len();
                self.front_abs += 1;
                self.len -= 1;
                self.bytes -= m.xml.len() as u64;
                return Some(m);
            }
            let Some(m) = self.front() else {
                self.drop_first_block();
                continue;
            };
            self.dropped_in_first += 1;
            self.dropped_in_first_bytes += m.xml.len() as u64;
            self.front_abs += 1;
            self.len -= 1;
            self.bytes -= m.xml.len() as u64;
            if self.dropped_in_first == self.sealed[0].1.count() {
                if let Some((_, gone)) = self.sealed.pop_front() {
                    self.track(&gone, false);
                    self.front_serial += 1;
                }
                self.dropped_in_first = 0;
                self.dropped_in_first_bytes = 0;
            }
            return Some(m);
        }
    }

    /// Drop the oldest block's kept messages without decoding them.
    fn drop_first_block(&mut self) {
        let Some((_, block)) = self.sealed.pop_front() else {
            return;
        };
        self.front_serial += 1;
        self.track(&block, false);
        let skip = std::mem::take(&mut self.dropped_in_first);
        let skipped_bytes = std::mem::take(&mut self.dropped_in_first_bytes);
        let kept = block.count() - skip;
        self.front_abs += kept as u64;
        self.len -= kept;
        self.bytes -= block.xml_bytes.saturating_sub(skipped_bytes);
    }

    /// Remove the newest message.
    fn pop_back(&mut self) -> Option<Archived> {
        // An unreadable block goes whole; the one before it is tried next.
        while self.open.is_empty() && !self.sealed.is_empty() {
            self.unseal_last();
        }
        let m = self.open.pop_back()?;
        self.open_bytes -= m.xml.len();
        self.len -= 1;
        self.bytes -= m.xml.len() as u64;
        Some(m)
    }

    /// Turn the newest block back into open messages (the kept ones).
    fn unseal_last(&mut self) {
        let Some((start, block)) = self.sealed.pop_back() else {
            return;
        };
        self.track(&block, false);
        let (skip, skipped_bytes) = if self.sealed.is_empty() {
            let bytes = std::mem::take(&mut self.dropped_in_first_bytes);
            (std::mem::take(&mut self.dropped_in_first), bytes)
        } else {
            (0, 0)
        };
        let kept = block.count() - skip;
        forget_decoded((self.number, start));
        match block.open() {
            Some(messages) => {
                self.open = messages.into_iter().skip(skip).collect();
                self.open_bytes = self.open.iter().map(|m| m.xml.len()).sum();
            }
            None => {
                // Unreadable: its messages are gone; account for them so.
                self.len -= kept;
                self.bytes -= block.xml_bytes.saturating_sub(skipped_bytes);
            }
        }
    }

    /// Where to cut (the `upto` of [`drop_upto`](Self::drop_upto)) to
    /// keep at most `max_messages` and `max_bytes`, oldest first. Whole
    /// blocks go while what stays is at least half of each bound (a cut
    /// then reads nothing, and keeps up to a block fewer than the bounds
    /// allow); past that, message by message (bounds near a block's size
    /// would otherwise empty the archive in a sawtooth).
    pub fn trim_point(&self, max_messages: usize, max_bytes: u64) -> Option<u64> {
        let (mut n, mut bytes) = (self.len, self.bytes);
        let over = |n: usize, bytes: u64| n > max_messages || bytes > max_bytes;
        let keeps_half = |n: usize, bytes: u64| {
            (max_messages == usize::MAX || n >= max_messages / 2)
                && (max_bytes == u64::MAX || bytes >= max_bytes / 2)
        };
        let mut upto = None;
        for (i, (_, b)) in self.sealed.iter().enumerate() {
            if !over(n, bytes) {
                return upto;
            }
            let (skip, skipped) = match i {
                0 => (self.dropped_in_first, self.dropped_in_first_bytes),
                _ => (0, 0),
            };
            let (cut_n, cut_bytes) = (b.count() - skip, b.xml_bytes.saturating_sub(skipped));
            if keeps_half(n - cut_n, bytes.saturating_sub(cut_bytes)) {
                n -= cut_n;
                bytes = bytes.saturating_sub(cut_bytes);
                upto = Some(b.last_seq);
                continue;
            }
            // Inside this block (read once); an unreadable one goes whole.
            let Some(messages) = self.block(i) else {
                n -= cut_n;
                bytes = bytes.saturating_sub(cut_bytes);
                upto = Some(b.last_seq);
                continue;
            };
            for m in messages.iter().skip(skip) {
                if !over(n, bytes) {
                    return upto;
                }
                n -= 1;
                bytes = bytes.saturating_sub(m.xml.len() as u64);
                upto = Some(m.seq);
            }
        }
        for m in &self.open {
            if !over(n, bytes) {
                break;
            }
            n -= 1;
            bytes -= m.xml.len() as u64;
            upto = Some(m.seq);
        }
        upto
    }

    /// Drop the messages up to and including sequence number `upto`.
    pub fn drop_upto(&mut self, upto: u64) {
        self.replaced = self.replaced.split_off(&(upto + 1));
        while self.sealed.front().is_some_and(|(_, b)| b.last_seq <= upto) {
            self.drop_first_block();
        }
        if self.sealed.front().is_some_and(|(_, b)| b.first_seq > upto) {
            return; // Nothing else is that old: no block read.
        }
        // What is left to drop is in the first block, or open.
        while self.front().is_some_and(|m| m.seq <= upto) {
            self.pop_front();
        }
        // Entries of dropped messages leave the id index at its merges; a
        // large trim makes one now rather than keep them.
        if self.ids.len() > 2 * self.sealed_len() + 1024 {
            self.ids.merge(self.serials());
        }
        if self.front().is_none()
            && self
                .sealed
                .front()
                .is_some_and(|(_, b)| b.first_seq <= upto)
        {
            // An unreadable first block, partly up to `upto`: its messages
            // are lost either way.
            self.drop_first_block();
            self.drop_upto(upto);
        }
    }

    /// Drop the messages from sequence number `from` on.
    pub fn drop_from(&mut self, from: u64) {
        self.replaced.split_off(&from);
        while self.last_seq().is_some_and(|s| s >= from) {
            if self.pop_back().is_none() {
                break;
            }
        }
        // The dropped blocks' serials go to the next ones.
        self.ids.retain_within(self.serials());
    }

    pub fn clear(&mut self) {
        *self = Archive {
            indexed: self.indexed,
            ..Archive::new()
        };
    }

    /// The sequence number of the message with this stanza-id (the
    /// oldest kept, if it was archived twice).
    pub fn seq_of(&self, stanza_id: &str) -> Option<u64> {
        let fp = fingerprint_of(stanza_id);
        let candidates = self.ids.candidates(fp, self.serials());
        let in_blocks = candidates.into_iter().find_map(|serial| {
            let b = (serial - self.front_serial) as usize;
            // A block's fingerprints are read without decoding it: most
            // candidates past 65,536 blocks are ruled out so.
            if !self.sealed[b].1.fingerprints()?.contains(&fp) {
                return None;
            }
            let skip = if b == 0 { self.dropped_in_first } else { 0 };
            let messages = self.block(b)?;
            let kept = messages.get(skip..)?;
            kept.iter()
                .find(|m| m.stanza_id == stanza_id)
                .map(|m| m.seq)
        });
        in_blocks.or_else(|| {
            let in_open = self.open.iter().find(|m| m.stanza_id == stanza_id);
            in_open.map(|m| m.seq)
        })
    }

    pub fn contains_id(&self, stanza_id: &str) -> bool {
        self.seq_of(stanza_id).is_some()
    }

    /// The newest message's sequence number.
    pub fn last_seq(&self) -> Option<u64> {
        match self.open.back() {
            Some(m) => Some(m.seq),
            None => self.sealed.back().map(|(_, b)| b.last_seq),
        }
    }

    /// The position of the message with sequence number `seq`.
    pub fn position(&self, seq: u64) -> Option<usize> {
        self.search(|m| m.seq.cmp(&seq), |b| (b.first_seq, b.last_seq), seq)
            .ok()
    }

    /// The position of the first message stamped at or after `ms`.
    pub fn first_at_or_after(&self, ms: u64) -> usize {
        let found = self.search(
            |m| if m.stamp_ms < ms { Less } else { Greater },
            |b| (b.first_stamp, b.last_stamp),
            ms,
        );
        found.unwrap_or_else(|p| p)
    }

    /// The position of the first message with a sequence number above
    /// `seq`.
    pub fn first_after_seq(&self, seq: u64) -> usize {
        let found = self.search(
            |m| if m.seq <= seq { Less } else { Greater },
            |b| (b.first_seq, b.last_seq),
            seq.saturating_add(1),
        );
        found.unwrap_or_else(|p| p)
    }

    /// The position of the first message stamped after `ms`.
    pub fn first_after(&self, ms: u64) -> usize {
        ms.checked_add(1)
            .map_or(self.len, |at| self.first_at_or_after(at))
    }

    /// A binary search over the messages (by a key that grows with them):
    /// first over blocks by their bounds, then inside the one block that
    /// can hold `key`. Ok(position) of a match, or Err(where it would be).
    fn search(
        &self,
        cmp: impl Fn(&Archived) -> Ordering,
        bounds: impl Fn(&Block) -> (u64, u64),
        key: u64,
    ) -> Result<usize, usize> {
        // The first block that may hold `key` or later keys.
        let b = self
            .sealed
            .partition_point(|(_, block)| bounds(block).1 < key);
        if b < self.sealed.len() {
            let (start, block) = &self.sealed[b];
            let skip = if b == 0 { self.dropped_in_first } else { 0 };
            let base = (start + skip as u64 - self.front_abs) as usize;
            if bounds(block).0 > key && !(b == 0 && skip > 0) {
                return Err(base);
            }
            // An unreadable block: where it starts (later blocks are not
            // skipped for it).
            let Some(messages) = self.block(b) else {
                return Err(base);
            };
            let kept = &messages[skip.min(messages.len())..];
            return kept
                .binary_search_by(&cmp)
                .map(|p| base + p)
                .map_err(|p| base + p);
        }
        let base = self.sealed_len();
        let (a, c) = self.open.as_slices();
        let found = match a.binary_search_by(&cmp) {
            Err(p) if p == a.len() => c.binary_search_by(&cmp).map(|q| p + q).map_err(|q| p + q),
            other => other,
        };
        found.map(|p| base + p).map_err(|p| base + p)
    }

    /// The newest stamp, which the next message's may not be below.
    pub fn last_stamp(&self) -> u64 {
        match self.open.back() {
            Some(m) => m.stamp_ms,
            None => self.sealed.back().map_or(0, |(_, b)| b.last_stamp),
        }
    }

    /// Change every stanza kept (repairs of what older releases stored).
    pub fn map_xml(&mut self, mut f: impl FnMut(&mut String)) {
        let messages: Vec<Archived> = self.iter().collect();
        self.clear();
        for mut m in messages {
            f(&mut m.xml);
            self.push(m);
        }
    }

    /// What a snapshot stores: the kept messages of a partly dropped first
    /// block, the other blocks as they are, then the open messages.
    pub fn stored(&self) -> (Vec<Archived>, Vec<Block>, Vec<Archived>) {
        let mut blocks: Vec<Block> = self.sealed.iter().map(|(_, b)| b.clone()).collect();
        let mut loose = Vec::new();
        if self.dropped_in_first > 0 {
            blocks.remove(0);
            let first = self.sealed[0].1.count() - self.dropped_in_first;
            // By position: an unreadable block's messages are left out, not
            // taken from the next block.
            loose = (0..first).filter_map(|p| self.get(p)).collect();
        }
        (loose, blocks, self.open.iter().cloned().collect())
    }
}

/// The messages of an archive in order, decoded as they are reached.
pub struct Iter<'a> {
    archive: &'a Archive,
    front: usize,
    back: usize,
}

impl Iterator for Iter<'_> {
    type Item = Archived;

    fn next(&mut self) -> Option<Archived> {
        while self.front < self.back {
            let at = self.front;
            self.front += 1;
            match self.archive.get(at) {
                Some(m) => return Some(m),
                // Unreadable: its block is, past this message too.
                None => self.front = self.archive.block_span(at).end.min(self.back),
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.back - self.front))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Archived> {
        while self.front < self.back {
            self.back -= 1;
            match self.archive.get(self.back) {
                Some(m) => return Some(m),
                None => self.back = self.archive.block_span(self.back).start.max(self.front),
            }
        }
        None
    }
}

impl FromIterator<Archived> for Archive {
    fn from_iter<I: IntoIterator<Item = Archived>>(iter: I) -> Archive {
        let mut a = Archive::new();
        iter.into_iter().for_each(|m| {
            a.push(m);
        });
        a
    }
}

impl Extend<Archived> for Archive {
    fn extend<I: IntoIterator<Item = Archived>>(&mut self, iter: I) {
        iter.into_iter().for_each(|m| {
            self.push(m);
        });
    }
}

impl<'a> IntoIterator for &'a Archive {
    type Item = Archived;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Archive {
    fn eq(&self, other: &Archive) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Archive {}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Stored as the messages, then their byte count: the layout of the two
/// fields (`archive`, `archive_bytes`) rooms had before, so the log format
/// does not change. The count is recomputed when read.
impl Serialize for Archive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.iter().collect::<Vec<_>>())?;
        t.serialize_element(&self.bytes)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Archive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Archive, D::Error> {
        let (messages, _bytes): (Vec<Archived>, u64) = Deserialize::deserialize(d)?;
        Ok(messages.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, id: &str) -> Archived {
        Archived {
            seq,
            stanza_id: id.into(),
            stamp_ms: seq * 10,
            nick: "n".into(),
            real: "a@b".into(),
            xml: format!("<message><body>{seq}</body></message>"),
        }
    }

    #[test]
    fn ids_positions_and_stamps_are_found_without_a_scan() {
        let a: Archive = (1..=100).map(|s| msg(s * 2, &format!("id{s}"))).collect();
        assert_eq!(a.seq_of("id7"), Some(14));
        assert_eq!(a.seq_of("nope"), None);
        assert_eq!(a.position(14), Some(6));
        assert_eq!(a.position(15), None);
        assert_eq!(a.first_at_or_after(140), 6);
        assert_eq!(a.first_after(140), 7);
        assert_eq!(a.first_at_or_after(0), 0);
        assert_eq!(a.first_after(u64::MAX), 100);
        let sum: u64 = a.iter().map(|m| m.xml.len() as u64).sum();
        assert_eq!(a.bytes(), sum);
    }

    #[test]
    fn trimming_keeps_the_index_and_the_byte_count_true() {
        let mut a: Archive = (1..=10).map(|s| msg(s, &format!("id{s}"))).collect();
        a.drop_upto(3);
        a.drop_from(9);
        assert_eq!(a.seq_of("id3"), None);
        assert_eq!(a.seq_of("id9"), None);
        assert_eq!(a.seq_of("id4"), Some(4));
        assert_eq!(a.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5, 6, 7, 8]);
        let sum: u64 = a.iter().map(|m| m.xml.len() as u64).sum();
        assert_eq!(a.bytes(), sum);
        a.clear();
        assert_eq!((a.len(), a.bytes(), a.seq_of("id5")), (0, 0, None));
    }

    #[test]
    fn a_stamp_that_goes_back_is_raised_so_time_bounds_find_everything() {
        // As a clock that stepped back stamped it before this release.
        let stamps = [1_000, 3_000, 2_000, 4_000];
        let a: Archive = (1..=4)
            .map(|seq| Archived {
                stamp_ms: stamps[seq as usize - 1],
                ..msg(seq, &format!("id{seq}"))
            })
            .collect();
        let kept: Vec<u64> = a.iter().map(|m| m.stamp_ms).collect();
        assert_eq!(kept, [1_000, 3_000, 3_000, 4_000]);
        // From 2,500 on: the messages of seq 2, 3 and 4 (none is left out).
        assert_eq!(a.first_at_or_after(2_500), 1);
        assert_eq!(a.first_after(3_000), 3);
    }

    #[test]
    fn a_message_out_of_order_is_not_kept() {
        let mut a = Archive::new();
        assert!(a.push(msg(5, "a")));
        assert!(!a.push(msg(5, "b")));
        assert!(!a.push(msg(3, "c")));
        assert!(a.push(msg(6, "d")));
        assert_eq!(a.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(a.seq_of("c"), None);
    }

    #[test]
    fn an_id_archived_twice_is_found_at_its_first_message_until_that_goes() {
        let mut a = Archive::new();
        a.push(msg(1, "same"));
        a.push(msg(2, "other"));
        a.push(msg(3, "same"));
        assert_eq!(a.seq_of("same"), Some(1));
        a.drop_upto(1);
        assert_eq!(a.seq_of("same"), Some(3));
        a.drop_upto(3);
        assert_eq!(a.seq_of("same"), None);
        a.ids.merge(a.serials());
        assert!(a.ids.is_empty());
    }

    #[test]
    fn stored_as_the_two_fields_rooms_had_before() {
        #[derive(Serialize)]
        struct Before {
            archive: VecDeque<Archived>,
            archive_bytes: u64,
        }
        let a: Archive = (1..=3).map(|s| msg(s, &format!("id{s}"))).collect();
        let before = Before {
            archive: a.iter().collect(),
            archive_bytes: a.bytes(),
        };
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        let back: Archive = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.seq_of("id2"), Some(2));
        assert_eq!(back.bytes(), a.bytes());
    }

    /// A body like people write: words that repeat across messages, not
    /// within one.
    fn chatty(seq: u64) -> Archived {
        let words = [
            "road", "north", "water", "pump", "fuel", "team", "ok", "late",
        ];
        let body: Vec<&str> = (0..12)
            .map(|i| words[((seq * 7 + i * 3) % 8) as usize])
            .collect();
        Archived {
            xml: format!(
                "<message from='ops@conf.x/n{}' type='groupchat' id='c{seq}'><body>{}</body>\
                 <stanza-id xmlns='urn:xmpp:sid:0' id='s{seq}' by='ops@conf.x'/></message>",
                seq % 5,
                body.join(" ")
            ),
            ..msg(seq, &format!("s{seq}"))
        }
    }

    /// Every lookup of `a` agrees with a plain list of the same messages.
    fn agrees(a: &Archive, model: &[Archived]) {
        assert_eq!(a.len(), model.len());
        assert_eq!(
            a.bytes(),
            model.iter().map(|m| m.xml.len() as u64).sum::<u64>()
        );
        assert!(a.iter().eq(model.iter().cloned()));
        assert!(a.iter().rev().eq(model.iter().rev().cloned()));
        assert_eq!(a.last_seq(), model.last().map(|m| m.seq));
        for (p, m) in model.iter().enumerate() {
            assert_eq!(a.get(p).as_ref(), Some(m));
            assert_eq!(a.position(m.seq), Some(p));
            assert_eq!(a.seq_of(&m.stanza_id), Some(m.seq));
            assert_eq!(
                a.first_at_or_after(m.stamp_ms),
                model.partition_point(|x| x.stamp_ms < m.stamp_ms)
            );
            assert_eq!(
                a.first_after(m.stamp_ms),
                model.partition_point(|x| x.stamp_ms <= m.stamp_ms)
            );
            // Between messages (sequence numbers and stamps skip here).
            assert_eq!(a.position(m.seq + 1), None);
            assert_eq!(
                a.first_at_or_after(m.stamp_ms + 1),
                model.partition_point(|x| x.stamp_ms <= m.stamp_ms)
            );
        }
        assert_eq!(a.get(model.len()), None);
    }

    #[test]
    fn sealed_blocks_answer_like_a_plain_list_through_trims_and_rewinds() {
        let mut a = Archive::new();
        let mut model: Vec<Archived> = Vec::new();
        let mut seq = 0;
        let mut add = |a: &mut Archive, model: &mut Vec<Archived>, n: u64| {
            for _ in 0..n {
                seq += 2;
                let m = chatty(seq);
                assert!(a.push(m.clone()));
                model.push(m);
            }
        };
        add(&mut a, &mut model, 700);
        assert!(a.sealed.len() >= 2, "{} blocks", a.sealed.len());
        agrees(&a, &model);
        // Trim into the middle of the first block, then past it.
        let cut = model[100].seq;
        a.drop_upto(cut);
        model.retain(|m| m.seq > cut);
        agrees(&a, &model);
        let cut = model[300].seq;
        a.drop_upto(cut);
        model.retain(|m| m.seq > cut);
        agrees(&a, &model);
        // A replica rewinds into a sealed block, then grows again.
        let from = model[150].seq;
        a.drop_from(from);
        model.retain(|m| m.seq < from);
        agrees(&a, &model);
        add(&mut a, &mut model, 400);
        agrees(&a, &model);
        // Stored as a snapshot does, and read back.
        let (loose, blocks, open) = a.stored();
        assert!(!blocks.is_empty());
        let mut back = Archive::new();
        back.extend(loose);
        blocks.into_iter().for_each(|b| assert!(back.push_block(b)));
        back.extend(open);
        agrees(&back, &model);
        assert_eq!(back, a);
    }

    #[test]
    fn sealed_messages_take_a_fraction_of_their_size() {
        let a: Archive = (1..=2_000).map(chatty).collect();
        let (held, bytes) = (a.held_bytes(), a.bytes());
        assert!(held * 4 < bytes, "{held} held for {bytes} bytes of stanzas");
    }

    #[test]
    fn a_block_out_of_order_or_impossible_is_not_kept() {
        let a: Archive = (1..=300).map(chatty).collect();
        let (_, blocks, _) = a.stored();
        let mut b = Archive::new();
        assert!(b.push_block(blocks[0].clone()));
        assert!(!b.push_block(blocks[0].clone()), "the same again");
        let mut odd = blocks[0].clone();
        odd.count = 0;
        assert!(!Archive::new().push_block(odd));
        let mut odd = blocks[0].clone();
        odd.last_seq = odd.first_seq + 3; // fewer numbers than messages
        assert!(!Archive::new().push_block(odd));
    }

    #[test]
    fn a_damaged_block_loses_its_messages_and_nothing_else() {
        let a: Archive = (1..=600).map(chatty).collect();
        let (_, mut blocks, open) = a.stored();
        let mut packed = blocks[1].bytes().unwrap().into_owned();
        let mid = packed.len() / 2;
        packed[mid] ^= 0x55;
        packed.truncate(mid + 1);
        blocks[1].packed = Packed::Held(Bytes(packed.into()));
        let mut b = Archive::new();
        let damaged = blocks[1].first_seq..=blocks[1].last_seq;
        blocks
            .into_iter()
            .for_each(|blk| assert!(b.push_block(blk)));
        b.extend(open);
        let read: Vec<u64> = b.iter().map(|m| m.seq).collect();
        let expected: Vec<u64> = (1..=600).filter(|s| !damaged.contains(s)).collect();
        assert_eq!(read, expected);
        assert_eq!(b.seq_of(&format!("s{}", damaged.start())), None);
        assert_eq!(b.seq_of("s600"), Some(600));
        let page: Vec<Archived> = b.iter().rev().take(5).collect();
        assert_eq!(page[0].seq, 600);
        // Trimming through it and rewinding into it stay consistent.
        b.drop_upto(*damaged.end() + 1);
        assert_eq!(b.front().map(|m| m.seq), Some(damaged.end() + 2));
    }

    #[test]
    fn crafted_clashing_ids_are_indexed_a_bounded_number_of_times() {
        let mut a = Archive::new();
        // Each in a block of its own: the index names blocks.
        for seq in 1..=50 {
            assert!(a.push_block(Block::seal(&[msg(seq, "same")]).unwrap()));
        }
        a.ids.merge(a.serials());
        assert_eq!(a.ids.len(), crate::model::id_index::MAX_CANDIDATES);
        assert_eq!(a.seq_of("same"), Some(1));
    }

    #[test]
    fn ids_are_found_in_an_archive_of_more_blocks_than_16_bits_number() {
        let mut a = Archive::new();
        let blocks = 70_000u64;
        for seq in 1..=blocks {
            assert!(a.push_block(Block::seal(&[msg(seq, &format!("s{seq}"))]).unwrap()));
        }
        a.push(msg(blocks + 1, "open"));
        // Blocks 2 and 65,538 share their serials' low 16 bits.
        for seq in [1, 2, 65_538, 65_539, blocks, blocks + 1] {
            let id = if seq > blocks {
                "open".into()
            } else {
                format!("s{seq}")
            };
            assert_eq!(a.seq_of(&id), Some(seq), "{id}");
        }
        a.drop_upto(10);
        assert_eq!(a.seq_of("s2"), None);
        assert_eq!(a.seq_of("s65538"), Some(65_538));
        assert_eq!(a.seq_of("s11"), Some(11));
    }
}
