//! A block: a run of archived messages sealed together, encoded and
//! DEFLATE-compressed (room messages share most of their markup, so a
//! block holds a message in a fraction of its stanza's size), with what
//! finds its messages without decoding it.
//!
//! A block's bytes are held in memory until the node writes them to an
//! archive file (`store::blocks`); from then on memory holds only where
//! they are, and reading a message reads and decodes its block. The
//! simulator and tests without a data directory keep them in memory.

use super::room::Archived;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// The most a block may decode to (a damaged one must not exhaust memory):
/// the log's record bound.
const DECODED_MAX: usize = 64 * 1024 * 1024;
/// The most messages a block holds (an archive seals at this many).
pub const MAX_MESSAGES: usize = 256;

/// Sealed messages: what finds them without decoding, and their encoding.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_stamp: u64,
    pub last_stamp: u64,
    /// Bytes of the messages' stanzas.
    pub xml_bytes: u64,
    pub count: u32,
    /// The block's contents: the [`fingerprint_of`] each message's
    /// stanza-id (4 bytes each, little-endian, in order: an archive's id
    /// index is rebuilt from these without decoding anything), then the
    /// messages (postcard `Vec<Archived>`) DEFLATE-compressed.
    pub packed: Packed,
}

/// Where a block's contents are.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Packed {
    /// In memory (shared by the archive and a snapshot written from it).
    Held(Bytes),
    /// In an archive file.
    Stored(Extent),
}

/// A stretch of an archive file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Extent {
    /// The file's number (its name is the number, see `store::blocks`).
    pub file: u32,
    pub offset: u64,
    pub len: u32,
}

/// Reads blocks back from archive files (the shell's, see `store::blocks`).
pub trait BlockReader {
    fn read(&self, at: Extent) -> io::Result<Vec<u8>>;
}

thread_local! {
    static READER: RefCell<Option<Rc<dyn BlockReader>>> = const { RefCell::new(None) };
}

/// Where stored blocks are read from, for this thread's node (the node is
/// one thread). Until one is installed, stored blocks read as damaged.
pub fn install_reader(reader: Option<Rc<dyn BlockReader>>) {
    READER.with(|r| *r.borrow_mut() = reader);
}

fn read_stored(at: Extent) -> Option<Vec<u8>> {
    let reader = READER.with(|r| r.borrow().clone())?;
    match reader.read(at) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            log::error!(
                "archive file {} at {}: cannot read {} bytes: {e}",
                at.file,
                at.offset,
                at.len
            );
            None
        }
    }
}

/// Bytes in memory, shared; stored as a byte string.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Rc<[u8]>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        Ok(Bytes(d.deserialize_bytes(Visit)?.into()))
    }
}

impl Packed {
    /// Its compressed size.
    pub fn len(&self) -> usize {
        match self {
            Packed::Held(b) => b.0.len(),
            Packed::Stored(at) => at.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_held(&self) -> bool {
        matches!(self, Packed::Held(_))
    }
}

impl Block {
    /// Seal messages (in order) into a block held in memory.
    pub fn seal(messages: &[Archived]) -> Option<Block> {
        let (first, last) = (messages.first()?, messages.last()?);
        let encoded = postcard::to_allocvec(messages).ok()?;
        let mut contents: Vec<u8> = messages
            .iter()
            .flat_map(|m| fingerprint_of(&m.stanza_id).to_le_bytes())
            .collect();
        contents.extend(miniz_oxide::deflate::compress_to_vec(&encoded, 6));
        Some(Block {
            first_seq: first.seq,
            last_seq: last.seq,
            first_stamp: first.stamp_ms,
            last_stamp: last.stamp_ms,
            xml_bytes: messages.iter().map(|m| m.xml.len() as u64).sum(),
            count: u32::try_from(messages.len()).ok()?,
            packed: Packed::Held(Bytes(contents.into())),
        })
    }

    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// The contents, from memory or read from their file.
    pub fn bytes(&self) -> Option<Cow<'_, [u8]>> {
        match &self.packed {
            Packed::Held(b) => Some(Cow::Borrowed(&b.0)),
            Packed::Stored(at) => read_stored(*at).map(Cow::Owned),
        }
    }

    /// The fingerprints of its messages' stanza-ids, in order (read from
    /// the file for a stored block: they lead its contents).
    pub fn fingerprints(&self) -> Option<Vec<u32>> {
        let n = 4 * self.count();
        let bytes = match &self.packed {
            Packed::Held(b) => Cow::Borrowed(b.0.get(..n)?),
            Packed::Stored(at) => {
                let len = u32::try_from(n).ok().filter(|n| *n <= at.len)?;
                Cow::Owned(read_stored(Extent { len, ..*at })?)
            }
        };
        let fps = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        Some(fps.collect())
    }

    /// Its messages, or None if they cannot be read or do not match what
    /// the block says of them (damage the checksums missed, a lost file).
    pub fn open(&self) -> Option<Vec<Archived>> {
        let bytes = self.bytes()?;
        let (fps, packed) = bytes.split_at_checked(4 * self.count())?;
        let encoded =
            miniz_oxide::inflate::decompress_to_vec_with_limit(packed, DECODED_MAX).ok()?;
        let messages: Vec<Archived> = postcard::from_bytes(&encoded).ok()?;
        let fits = messages.len() == self.count()
            && messages.first().is_some_and(|m| m.seq == self.first_seq)
            && messages.last().is_some_and(|m| m.seq == self.last_seq)
            && messages.windows(2).all(|w| w[0].seq < w[1].seq)
            && messages.iter().map(|m| m.xml.len() as u64).sum::<u64>() == self.xml_bytes
            && messages
                .iter()
                .map(|m| fingerprint_of(&m.stanza_id).to_le_bytes())
                .eq(fps.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
        fits.then_some(messages)
    }

    /// Whether what it says of itself is in order (checked before one read
    /// from the log is taken in).
    pub fn is_well_formed(&self) -> bool {
        let extent_fits = match &self.packed {
            Packed::Held(_) => true,
            Packed::Stored(at) => {
                at.len as usize <= DECODED_MAX && at.offset.checked_add(u64::from(at.len)).is_some()
            }
        };
        self.count > 0
            && self.count() <= MAX_MESSAGES
            && self.first_seq <= self.last_seq
            && self.last_seq - self.first_seq >= u64::from(self.count) - 1
            && self.first_stamp <= self.last_stamp
            && self.xml_bytes <= DECODED_MAX as u64
            && self.packed.len() >= 4 * self.count()
            && extent_fits
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let at = match &self.packed {
            Packed::Held(_) => "held".to_string(),
            Packed::Stored(at) => format!("file {} at {}", at.file, at.offset),
        };
        write!(
            f,
            "Block(seq {}..={}, {} messages, {} bytes packed, {at})",
            self.first_seq,
            self.last_seq,
            self.count(),
            self.packed.len()
        )
    }
}

/// Blocks decoded last, shared by every archive of the node (memory for
/// decoded messages is bounded by this, not by the number of rooms).
const DECODED_KEPT: usize = 4;

thread_local! {
    static DECODED: RefCell<VecDeque<(DecodedKey, Rc<Vec<Archived>>)>> =
        const { RefCell::new(VecDeque::new()) };
    static NEXT_ARCHIVE: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// A decoded block's key: its archive's number and its first message's
/// absolute index in that archive.
pub type DecodedKey = (u64, u64);

/// A number for a new archive, for [`decoded`]'s keys.
pub fn next_archive_number() -> u64 {
    NEXT_ARCHIVE.with(|n| {
        let v = n.get();
        n.set(v + 1);
        v
    })
}

/// The messages of `block`, from the blocks decoded last or decoded now.
pub fn decoded(key: DecodedKey, block: &Block) -> Option<Rc<Vec<Archived>>> {
    // A hit moves to the back: the least recently read goes first.
    let hit = DECODED.with(|d| {
        let mut d = d.borrow_mut();
        let at = d.iter().position(|(k, _)| *k == key)?;
        let entry = d.remove(at)?;
        let messages = entry.1.clone();
        d.push_back(entry);
        Some(messages)
    });
    if hit.is_some() {
        return hit;
    }
    let messages = Rc::new(block.open()?);
    DECODED.with(|d| {
        let mut d = d.borrow_mut();
        if d.len() == DECODED_KEPT {
            d.pop_front();
        }
        d.push_back((key, messages.clone()));
    });
    Some(messages)
}

/// Forget a decoded block whose archive changed it.
pub fn forget_decoded(key: DecodedKey) {
    DECODED.with(|d| d.borrow_mut().retain(|(k, _)| *k != key));
}

/// A stanza-id's fingerprint, stored in blocks: FNV-1a folded to 32
/// bits, fixed for all releases.
pub fn fingerprint_of(id: &str) -> u32 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 32)) as u32
}
