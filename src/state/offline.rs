//! An account's offline messages: a queue kept like a room's archive, so
//! that the older ones are sealed into blocks and live in the archive
//! files, and memory holds what a block's description and the newest few
//! take (see `model::archive`).

use crate::model::archive::{Archive, Iter};
use crate::model::room::Archived;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineMessage {
    pub id: u64,
    pub stamp_ms: u64,
    /// The stanza as it will be delivered, without the delay element.
    pub xml: String,
}

impl From<OfflineMessage> for Archived {
    fn from(m: OfflineMessage) -> Archived {
        Archived {
            seq: m.id,
            stanza_id: String::new(),
            stamp_ms: m.stamp_ms,
            nick: String::new(),
            real: String::new(),
            xml: m.xml,
        }
    }
}

impl From<Archived> for OfflineMessage {
    fn from(m: Archived) -> OfflineMessage {
        OfflineMessage {
            id: m.seq,
            stamp_ms: m.stamp_ms,
            xml: m.xml,
        }
    }
}

/// Messages in the order they were stored, each with an id above the one
/// before; delivered ones leave from the front. A stamp below the one
/// before (the wall clock stepped back) is raised to it, as in a room's
/// archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineQueue {
    archive: Archive,
}

impl Default for OfflineQueue {
    fn default() -> OfflineQueue {
        OfflineQueue {
            archive: Archive::without_ids(),
        }
    }
}

impl OfflineQueue {
    /// Add the newest message: false (and not kept) if its id is not
    /// above every other's.
    pub fn push(&mut self, m: OfflineMessage) -> bool {
        self.archive.push(m.into())
    }

    /// Drop the messages with ids up to `upto` (delivered).
    pub fn drop_upto(&mut self, upto: u64) {
        self.archive.drop_upto(upto);
    }

    pub fn len(&self) -> usize {
        self.archive.len()
    }

    pub fn is_empty(&self) -> bool {
        self.archive.is_empty()
    }

    /// Bytes of the stored stanzas.
    pub fn bytes(&self) -> u64 {
        self.archive.bytes()
    }

    /// The messages, oldest first.
    pub fn iter(&self) -> Messages<'_> {
        Messages(self.archive.iter())
    }

    /// The messages with ids above `id`, oldest first (those up to it
    /// are not read).
    pub fn after(&self, id: u64) -> Messages<'_> {
        Messages(self.archive.iter_from(self.archive.first_after_seq(id)))
    }

    /// Change every stanza kept (repairs of what older releases stored).
    pub fn map_xml(&mut self, f: impl FnMut(&mut String)) {
        self.archive.map_xml(f);
    }

    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    pub fn archive_mut(&mut self) -> &mut Archive {
        &mut self.archive
    }
}

pub struct Messages<'a>(Iter<'a>);

impl Iterator for Messages<'_> {
    type Item = OfflineMessage;

    fn next(&mut self) -> Option<OfflineMessage> {
        self.0.next().map(OfflineMessage::from)
    }
}

impl FromIterator<OfflineMessage> for OfflineQueue {
    fn from_iter<I: IntoIterator<Item = OfflineMessage>>(iter: I) -> OfflineQueue {
        let mut queue = OfflineQueue::default();
        iter.into_iter().for_each(|m| {
            queue.push(m);
        });
        queue
    }
}

/// Stored as the list of messages: the layout of the queue in the whole
/// state snapshots of older releases (read, never written now).
impl Serialize for OfflineQueue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.iter().collect::<Vec<_>>().serialize(s)
    }
}

impl<'de> Deserialize<'de> for OfflineQueue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OfflineQueue, D::Error> {
        let messages: Vec<OfflineMessage> = Deserialize::deserialize(d)?;
        Ok(messages.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, body_bytes: usize) -> OfflineMessage {
        OfflineMessage {
            id,
            stamp_ms: 1_000 * id,
            xml: format!("<message><body>{}</body></message>", "w".repeat(body_bytes)),
        }
    }

    #[test]
    fn messages_come_back_in_order_from_blocks_and_the_open_run() {
        // 3 KiB each: a block seals every sixth.
        let queue: OfflineQueue = (1..=20).map(|id| message(id, 3_000)).collect();
        assert!(queue.archive().packed_bytes() > 0, "some are sealed");
        assert_eq!(
            queue.iter().map(|m| m.id).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        assert_eq!(
            queue.after(13).map(|m| m.id).collect::<Vec<_>>(),
            (14..=20).collect::<Vec<_>>()
        );
        assert_eq!(queue.after(0).count(), 20);
        assert_eq!(queue.after(20).count(), 0);
        assert_eq!(queue.iter().nth(4), Some(message(5, 3_000)));
    }

    #[test]
    fn delivered_messages_leave_from_the_front_with_their_bytes() {
        let mut queue: OfflineQueue = (1..=20).map(|id| message(id, 3_000)).collect();
        let before = queue.bytes();
        queue.drop_upto(7);
        assert_eq!(queue.len(), 13);
        assert_eq!(queue.iter().next().map(|m| m.id), Some(8));
        let dropped: u64 = (1..=7).map(|id| message(id, 3_000).xml.len() as u64).sum();
        assert_eq!(queue.bytes(), before - dropped);
        assert!(!queue.push(message(20, 1)), "an id not above the others");
        queue.drop_upto(20);
        assert!(queue.is_empty());
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn the_layout_older_releases_stored_reads_back() {
        let messages: Vec<OfflineMessage> = (1..=20).map(|id| message(id, 3_000)).collect();
        let old =
            postcard::to_allocvec(&std::collections::VecDeque::from(messages.clone())).unwrap();
        let queue: OfflineQueue = postcard::from_bytes(&old).unwrap();
        assert_eq!(queue.iter().collect::<Vec<_>>(), messages);
        assert_eq!(postcard::to_allocvec(&queue).unwrap(), old);
    }
}
