//! A room's archive: its messages in the master's order, with what finds
//! one without a scan. Sequence numbers only grow, so a position is a
//! binary search away; stamps grow with them (the master never stamps a
//! message earlier than the one before), so a time bound is one too; and
//! stanza-ids, random strings minted here or at a site, are indexed by a
//! hash. A site's resent message is recognised, and a query paged from an
//! id answered, in O(log n) at any archive size.

use super::room::Archived;
use serde::de::Deserializer;
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

#[derive(Clone, Default)]
pub struct Archive {
    messages: VecDeque<Archived>,
    /// Bytes of the messages' stanzas.
    bytes: u64,
    /// A hash of each stanza-id to the sequence number of its message.
    by_id: HashMap<u64, u64>,
    /// Messages whose id hashes like an earlier one's (a clash, or an id
    /// archived twice): hash to their sequence numbers. Nearly always empty.
    clashes: HashMap<u64, Vec<u64>>,
}

fn id_hash(id: &str) -> u64 {
    // Fixed keys: the index is rebuilt at every start, never stored.
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Archive {
    pub fn new() -> Archive {
        Archive::default()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes of the archived stanzas (what retention counts).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, Archived> {
        self.messages.iter()
    }

    pub fn front(&self) -> Option<&Archived> {
        self.messages.front()
    }

    pub fn back(&self) -> Option<&Archived> {
        self.messages.back()
    }

    /// The message at a position (0 is the oldest kept).
    pub fn get(&self, position: usize) -> Option<&Archived> {
        self.messages.get(position)
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
        if self.back().is_some_and(|b| b.seq >= msg.seq) {
            return false;
        }
        msg.stamp_ms = msg.stamp_ms.max(self.last_stamp());
        let h = id_hash(&msg.stanza_id);
        match self.by_id.entry(h) {
            Entry::Occupied(_) => self.clashes.entry(h).or_default().push(msg.seq),
            Entry::Vacant(v) => {
                v.insert(msg.seq);
            }
        }
        self.bytes += msg.xml.len() as u64;
        self.messages.push_back(msg);
        true
    }

    /// Remove the oldest message.
    pub fn pop_front(&mut self) -> Option<Archived> {
        let m = self.messages.pop_front()?;
        self.forget(&m);
        Some(m)
    }

    /// Remove the newest message.
    fn pop_back(&mut self) -> Option<Archived> {
        let m = self.messages.pop_back()?;
        self.forget(&m);
        Some(m)
    }

    fn forget(&mut self, m: &Archived) {
        self.bytes -= m.xml.len() as u64;
        let h = id_hash(&m.stanza_id);
        if self.by_id.get(&h) == Some(&m.seq) {
            // A clash takes the freed place, so lookups need look no further.
            match self.clashes.get_mut(&h).and_then(Vec::pop) {
                Some(next) => self.by_id.insert(h, next),
                None => self.by_id.remove(&h),
            };
        } else if let Some(seqs) = self.clashes.get_mut(&h) {
            seqs.retain(|s| *s != m.seq);
        }
        if self.clashes.get(&h).is_some_and(Vec::is_empty) {
            self.clashes.remove(&h);
        }
    }

    /// Drop the messages up to and including sequence number `upto`.
    pub fn drop_upto(&mut self, upto: u64) {
        while self.front().is_some_and(|m| m.seq <= upto) {
            self.pop_front();
        }
    }

    /// Drop the messages from sequence number `from` on.
    pub fn drop_from(&mut self, from: u64) {
        while self.back().is_some_and(|m| m.seq >= from) {
            self.pop_back();
        }
    }

    pub fn clear(&mut self) {
        *self = Archive::new();
    }

    /// The sequence number of the message with this stanza-id.
    pub fn seq_of(&self, stanza_id: &str) -> Option<u64> {
        let h = id_hash(stanza_id);
        let is = |seq: &u64| {
            self.position(*seq)
                .and_then(|p| self.get(p))
                .is_some_and(|m| m.stanza_id == stanza_id)
        };
        let first = self.by_id.get(&h).copied().filter(is);
        let clash = || self.clashes.get(&h)?.iter().copied().filter(is).min();
        match (first, clash()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn contains_id(&self, stanza_id: &str) -> bool {
        self.seq_of(stanza_id).is_some()
    }

    /// The position of the message with sequence number `seq`.
    pub fn position(&self, seq: u64) -> Option<usize> {
        self.messages.binary_search_by_key(&seq, |m| m.seq).ok()
    }

    /// The position of the first message stamped at or after `ms`.
    pub fn first_at_or_after(&self, ms: u64) -> usize {
        self.messages.partition_point(|m| m.stamp_ms < ms)
    }

    /// The position of the first message stamped after `ms`.
    pub fn first_after(&self, ms: u64) -> usize {
        self.messages.partition_point(|m| m.stamp_ms <= ms)
    }

    /// The newest stamp, which the next message's may not be below.
    pub fn last_stamp(&self) -> u64 {
        self.back().map_or(0, |m| m.stamp_ms)
    }

    /// Change every stanza kept (repairs of what older releases stored).
    pub fn map_xml(&mut self, mut f: impl FnMut(&mut String)) {
        let messages = std::mem::take(&mut self.messages);
        self.clear();
        for mut m in messages {
            f(&mut m.xml);
            self.push(m);
        }
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
    type Item = &'a Archived;
    type IntoIter = std::collections::vec_deque::Iter<'a, Archived>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Archive {
    fn eq(&self, other: &Archive) -> bool {
        self.messages == other.messages
    }
}

impl Eq for Archive {}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list().entries(&self.messages).finish()
    }
}

/// Stored as the messages, then their byte count: the layout of the two
/// fields (`archive`, `archive_bytes`) rooms had before, so the log format
/// does not change. The count is recomputed when read.
impl Serialize for Archive {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.messages)?;
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
        assert!(a.clashes.is_empty() && a.by_id.is_empty());
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
            archive: a.iter().cloned().collect(),
            archive_bytes: a.bytes(),
        };
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        let back: Archive = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.seq_of("id2"), Some(2));
        assert_eq!(back.bytes(), a.bytes());
    }
}
