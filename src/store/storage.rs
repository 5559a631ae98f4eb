//! Where log segments live. The log talks only to this trait, so it can run
//! on files, on memory with injected faults (tests), or later on raw flash.

use std::collections::BTreeMap;
use std::io;

pub trait Storage {
    /// Segment numbers present, ascending.
    fn segments(&self) -> io::Result<Vec<u64>>;
    /// Length of a segment in bytes.
    fn len(&mut self, seg: u64) -> io::Result<u64>;
    /// Fill `buf` from `offset` on; the range must lie inside the segment.
    fn read_at(&mut self, seg: u64, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// How an operator finds the segment (a file path), for error messages.
    fn describe(&self, seg: u64) -> String;
    /// Append to a segment, creating it if needed.
    fn append(&mut self, seg: u64, data: &[u8]) -> io::Result<()>;
    /// Make everything appended to `seg` durable.
    fn sync(&mut self, seg: u64) -> io::Result<()>;
    fn truncate(&mut self, seg: u64, len: u64) -> io::Result<()>;
    fn remove(&mut self, seg: u64) -> io::Result<()>;
}

/// Faults a [`MemStorage`] injects.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Appends fail once this many more bytes have been written (a full disk).
    pub fail_after_bytes: Option<usize>,
    /// Every sync fails.
    pub fail_sync: bool,
}

#[derive(Debug, Clone, Default)]
struct MemSegment {
    data: Vec<u8>,
    synced: usize,
}

/// In-memory segments with fault injection and crash simulation.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    segs: BTreeMap<u64, MemSegment>,
    pub faults: Faults,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Power loss: whatever was not synced is gone, except that the first
    /// `torn_bytes` of each unsynced tail survive (a torn write).
    pub fn crash(&mut self, torn_bytes: usize) {
        for seg in self.segs.values_mut() {
            let keep = (seg.synced + torn_bytes).min(seg.data.len());
            seg.data.truncate(keep);
            seg.synced = keep;
        }
    }

    /// Direct access for corruption tests.
    pub fn bytes_mut(&mut self, seg: u64) -> Option<&mut Vec<u8>> {
        self.segs.get_mut(&seg).map(|s| &mut s.data)
    }

    /// A segment's bytes, for tests.
    pub fn bytes(&self, seg: u64) -> Option<&[u8]> {
        self.segs.get(&seg).map(|s| s.data.as_slice())
    }
}

fn no_segment() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such segment")
}

impl Storage for MemStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        Ok(self.segs.keys().copied().collect())
    }
    fn len(&mut self, seg: u64) -> io::Result<u64> {
        Ok(self.segs.get(&seg).ok_or_else(no_segment)?.data.len() as u64)
    }
    fn read_at(&mut self, seg: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = &self.segs.get(&seg).ok_or_else(no_segment)?.data;
        let start = usize::try_from(offset).map_err(|_| no_segment())?;
        let end = start.checked_add(buf.len()).filter(|e| *e <= data.len());
        let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    }
    fn describe(&self, seg: u64) -> String {
        format!("segment {seg:016x} (in memory)")
    }
    fn append(&mut self, seg: u64, data: &[u8]) -> io::Result<()> {
        if let Some(left) = self.faults.fail_after_bytes.as_mut() {
            if *left < data.len() {
                let partial = *left;
                *left = 0;
                self.segs
                    .entry(seg)
                    .or_default()
                    .data
                    .extend_from_slice(&data[..partial]);
                return Err(io::Error::other("injected: no space left"));
            }
            *left -= data.len();
        }
        self.segs
            .entry(seg)
            .or_default()
            .data
            .extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self, seg: u64) -> io::Result<()> {
        if self.faults.fail_sync {
            return Err(io::Error::other("injected: sync failed"));
        }
        if let Some(s) = self.segs.get_mut(&seg) {
            s.synced = s.data.len();
        }
        Ok(())
    }
    fn truncate(&mut self, seg: u64, len: u64) -> io::Result<()> {
        if let Some(s) = self.segs.get_mut(&seg) {
            s.data.truncate(len as usize);
            s.synced = s.synced.min(s.data.len());
        }
        Ok(())
    }
    fn remove(&mut self, seg: u64) -> io::Result<()> {
        self.segs.remove(&seg);
        Ok(())
    }
}

/// A storage that is read but never changed: what would have been
/// written, cut or removed is only noted. For checking a data directory
/// the way start-up would open it, without touching it.
pub struct DryRun<S: Storage> {
    inner: S,
    /// What opening would have done, in order (for the operator).
    pub would: Vec<String>,
}

impl<S: Storage> DryRun<S> {
    pub fn new(inner: S) -> DryRun<S> {
        DryRun {
            inner,
            would: Vec::new(),
        }
    }
}

impl<S: Storage> Storage for DryRun<S> {
    fn segments(&self) -> io::Result<Vec<u64>> {
        self.inner.segments()
    }
    fn len(&mut self, seg: u64) -> io::Result<u64> {
        self.inner.len(seg)
    }
    fn read_at(&mut self, seg: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(seg, offset, buf)
    }
    fn describe(&self, seg: u64) -> String {
        self.inner.describe(seg)
    }
    fn append(&mut self, seg: u64, data: &[u8]) -> io::Result<()> {
        let what = self.inner.describe(seg);
        self.would
            .push(format!("write {} bytes to {what}", data.len()));
        Ok(())
    }
    fn sync(&mut self, _seg: u64) -> io::Result<()> {
        Ok(())
    }
    fn truncate(&mut self, seg: u64, len: u64) -> io::Result<()> {
        let (what, was) = (self.inner.describe(seg), self.inner.len(seg)?);
        self.would.push(format!(
            "cut {what} at byte {len}, discarding {} bytes of an interrupted write",
            was.saturating_sub(len)
        ));
        Ok(())
    }
    fn remove(&mut self, seg: u64) -> io::Result<()> {
        let what = self.inner.describe(seg);
        self.would
            .push(format!("remove {what}, left empty by an interrupted start"));
        Ok(())
    }
}
