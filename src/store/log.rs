//! The append log: segments of length-prefixed, checksummed records.
//!
//! Segment layout: header `OUTPOST\x02` | salt u64 | first sequence u64 |
//! crc32c u32 of those 24 bytes, then records `len u32 | crc32c u32 | seq u64
//! | kind u8 | payload[len]`, all little-endian, where the CRC covers salt,
//! seq, kind and payload. The salt differs per segment so stale bytes from
//! an older incarnation never verify. (Segments written before the header
//! had its own CRC start with `OUTPOST\x01` and have no CRC; they still load.)
//!
//! Each commit (one write, one `fdatasync`) starts with a batch marker: a
//! record of kind [`KIND_BATCH`] whose payload is the byte length of the
//! records after it in that commit, and whose sequence number is the first of
//! them. That is what tells a torn write from damage: a commit that was
//! interrupted can only be the last one in the newest segment, so damage
//! inside the last batch, reaching the end of the file, is a torn tail and is
//! cut off; damage anywhere else (an older segment, or data that a later
//! commit followed) stops start-up with the file and offset named, and
//! nothing is changed. `check` and `salvage` (the `outpost data` command)
//! deal with such a log without touching it.

use super::storage::Storage;
use std::fmt;
use std::io;

const MAGIC: &[u8; 8] = b"OUTPOST\x02";
const MAGIC_V1: &[u8; 8] = b"OUTPOST\x01";
/// Header of the segments this code writes (v1 headers are 24 bytes).
pub const HEADER_LEN: usize = 28;
const HEADER_LEN_V1: usize = 24;
pub const RECORD_HEADER_LEN: usize = 17;
/// The largest record the log writes and reads. Writer and reader share
/// it: `append` refuses a bigger record, so a log this code wrote is
/// always readable by it.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// Kind of the marker that starts every commit (never handed to callers).
pub const KIND_BATCH: u8 = 0;
/// Reads go through a buffer of this size (records larger than it are read
/// on their own), so replay memory does not grow with the segment.
const READ_CHUNK: usize = 1024 * 1024;

/// One record as replay hands it to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub seq: u64,
    pub kind: u8,
    pub payload: &'a [u8],
    /// Where it lies: segment number and byte offset of its header.
    pub seg: u64,
    pub offset: u64,
}

/// What recovery did: for the operator's log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub records: usize,
    /// `(segment, offset, reason, bytes discarded)` when a torn tail was cut.
    pub truncated: Option<(u64, u64, &'static str, u64)>,
    /// A newest segment that held only a partial header (a crash while it
    /// was being created) was removed: it held no record.
    pub torn_segment_removed: Option<u64>,
}

/// Why the log could not be opened. Nothing was changed on the storage.
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    /// Damage that is not a torn tail of the newest segment.
    Damaged {
        segment: String,
        offset: u64,
        reason: &'static str,
    },
    /// The caller refused a record that verified (it could not be decoded).
    Refused {
        segment: String,
        offset: u64,
        seq: u64,
        why: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "{e}"),
            OpenError::Damaged {
                segment,
                offset,
                reason,
            } => write!(f, "{segment} is damaged at byte {offset}: {reason}"),
            OpenError::Refused {
                segment,
                offset,
                seq,
                why,
            } => write!(f, "{segment}, record {seq} at byte {offset}: {why}"),
        }
    }
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

pub struct Log<S: Storage> {
    storage: S,
    seg: u64,
    salt: u64,
    seg_bytes: u64,
    next_seq: u64,
    pending: Vec<u8>,
    /// Sequence number of the first record in `pending`.
    pending_first_seq: u64,
    /// Bytes in every segment, to decide when to compact.
    total_bytes: u64,
}

fn crc(salt: u64, seq: u64, kind: u8, payload: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&salt.to_le_bytes());
    c = crc32c::crc32c_append(c, &seq.to_le_bytes());
    c = crc32c::crc32c_append(c, &[kind]);
    crc32c::crc32c_append(c, payload)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

impl<S: Storage> Log<S> {
    /// Open the log, replaying every good record into `apply` (which may
    /// refuse one: that stops the open). A torn tail of the newest segment
    /// is cut off; any other damage is an error and nothing is changed.
    /// `fresh_salt` seeds the salt of segments created from now on.
    pub fn open(
        mut storage: S,
        fresh_salt: u64,
        mut apply: impl FnMut(RecordRef) -> Result<(), String>,
    ) -> Result<(Log<S>, Recovery), OpenError> {
        let segs = storage.segments()?;
        let mut recovery = Recovery::default();
        let mut expected_seq: Option<u64> = None;
        let mut last: Option<(u64, u64, u64)> = None; // (seg, salt, len)
        let mut total_bytes = 0;
        for (i, &seg) in segs.iter().enumerate() {
            let newest = i + 1 == segs.len();
            let len = storage.len(seg)?;
            let mut scan = Scan::new(&mut storage, seg, len, expected_seq);
            let end = scan.run(&mut |r| {
                recovery.records += (r.kind != KIND_BATCH) as usize;
                if r.kind == KIND_BATCH {
                    return Ok(());
                }
                apply(r)
            })?;
            let (salt, next) = (scan.salt, scan.expected_seq);
            let damage = match end {
                ScanEnd::Clean => None,
                ScanEnd::Refused { offset, seq, why } => {
                    return Err(OpenError::Refused {
                        segment: storage.describe(seg),
                        offset,
                        seq,
                        why,
                    })
                }
                ScanEnd::Bad(d) => Some(d),
            };
            expected_seq = next;
            let Some(d) = damage else {
                total_bytes += len;
                last = Some((seg, salt, len));
                continue;
            };
            let segment = storage.describe(seg);
            let damaged = |reason| OpenError::Damaged {
                segment,
                offset: d.offset,
                reason,
            };
            if !newest {
                return Err(damaged(d.reason));
            }
            if d.offset == 0 {
                // The header itself: a segment that holds nothing past its
                // header (a crash while creating it) has nothing to lose.
                if len <= HEADER_LEN as u64 || is_all_zero(&mut storage, seg, len)? {
                    storage.remove(seg)?;
                    recovery.torn_segment_removed = Some(seg);
                    continue;
                }
                return Err(damaged(d.reason));
            }
            if !torn_tail(&mut storage, seg, len, salt, &d)? {
                return Err(damaged(d.reason));
            }
            storage.truncate(seg, d.offset)?;
            recovery.truncated = Some((seg, d.offset, d.reason, len - d.offset));
            total_bytes += d.offset;
            last = Some((seg, salt, d.offset));
        }
        let mut log = Log {
            storage,
            seg: 0,
            salt: 0,
            seg_bytes: 0,
            next_seq: expected_seq.unwrap_or(1),
            pending: Vec::new(),
            pending_first_seq: 0,
            total_bytes,
        };
        match last {
            Some((seg, salt, len)) => {
                log.seg = seg;
                log.salt = salt;
                log.seg_bytes = len;
            }
            None => log.start_segment(segs.last().map_or(1, |s| s + 1), fresh_salt)?,
        }
        Ok((log, recovery))
    }

    fn start_segment(&mut self, seg: u64, salt: u64) -> io::Result<()> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&salt.to_le_bytes());
        header.extend_from_slice(&self.next_seq.to_le_bytes());
        let check = crc32c::crc32c(&header);
        header.extend_from_slice(&check.to_le_bytes());
        self.storage.append(seg, &header)?;
        self.storage.sync(seg)?;
        self.seg = seg;
        self.salt = salt;
        self.seg_bytes = HEADER_LEN as u64;
        self.total_bytes += HEADER_LEN as u64;
        Ok(())
    }

    /// Buffer a record; it is durable only after the next successful
    /// `commit`. A payload over [`MAX_RECORD_BYTES`] is refused (nothing is
    /// buffered): the reader would not accept it.
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> io::Result<u64> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(invalid(&format!(
                "a log record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
                payload.len()
            )));
        }
        if kind == KIND_BATCH {
            return Err(invalid("record kind 0 is reserved for batch markers"));
        }
        let seq = self.next_seq;
        if self.pending.is_empty() {
            self.pending_first_seq = seq;
        }
        self.next_seq += 1;
        encode_record(&mut self.pending, self.salt, seq, kind, payload);
        Ok(seq)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Bytes buffered for the next commit.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Write buffered records and make them durable (group commit: one
    /// write and one sync for everything appended since the last commit,
    /// behind a marker that says how long the batch is).
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(RECORD_HEADER_LEN + 8 + self.pending.len());
        let len = (self.pending.len() as u64).to_le_bytes();
        encode_record(
            &mut batch,
            self.salt,
            self.pending_first_seq,
            KIND_BATCH,
            &len,
        );
        batch.extend_from_slice(&self.pending);
        self.storage.append(self.seg, &batch)?;
        self.storage.sync(self.seg)?;
        self.seg_bytes += batch.len() as u64;
        self.total_bytes += batch.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Start a new segment for a snapshot: the records appended from now
    /// until `finish_compaction` must rebuild all state. Until then the
    /// older segments stay, so a crash midway loses nothing.
    pub fn begin_compaction(&mut self, salt: u64) -> io::Result<()> {
        self.commit()?;
        self.start_segment(self.seg + 1, salt)
    }

    /// The snapshot is written: make it durable, then drop every older segment.
    pub fn finish_compaction(&mut self) -> io::Result<()> {
        self.commit()?;
        for seg in self.storage.segments()? {
            if seg < self.seg {
                self.storage.remove(seg)?;
            }
        }
        self.total_bytes = self.seg_bytes;
        Ok(())
    }

    /// Bytes in all segments.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn storage(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Current segment number and length: for status displays.
    pub fn position(&self) -> (u64, u64) {
        (self.seg, self.seg_bytes)
    }
}

fn encode_record(out: &mut Vec<u8>, salt: u64, seq: u64, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(salt, seq, kind, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

/// Where and why a scan stopped early, and the batch it was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub reason: &'static str,
    /// End of the commit batch the damage lies in, as its marker declared;
    /// None if the damage is where a marker should start (or the segment
    /// has no markers: written before they existed).
    pub batch_end: Option<u64>,
}

enum ScanEnd {
    Clean,
    Bad(Damage),
    Refused { offset: u64, seq: u64, why: String },
}

/// Reads one segment front to back through a bounded buffer.
struct Scan<'s, S: Storage> {
    storage: &'s mut S,
    seg: u64,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    salt: u64,
    expected_seq: Option<u64>,
    /// End of the current commit batch, per its marker.
    batch_end: Option<u64>,
}

impl<'s, S: Storage> Scan<'s, S> {
    fn new(storage: &'s mut S, seg: u64, len: u64, expected_seq: Option<u64>) -> Self {
        Scan {
            storage,
            seg,
            len,
            buf: Vec::new(),
            buf_at: 0,
            salt: 0,
            expected_seq,
            batch_end: None,
        }
    }

    /// `n` bytes from `at` (the caller checked they lie in the segment).
    fn bytes(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let cached = at >= self.buf_at && at + n as u64 <= self.buf_at + self.buf.len() as u64;
        if !cached {
            let size = n.max(READ_CHUNK).min((self.len - at) as usize);
            self.buf.clear();
            self.buf.resize(size, 0);
            self.storage.read_at(self.seg, at, &mut self.buf)?;
            self.buf_at = at;
            if self.buf.capacity() > 2 * READ_CHUNK && n <= READ_CHUNK {
                self.buf.shrink_to(READ_CHUNK);
            }
        }
        let start = (at - self.buf_at) as usize;
        Ok(&self.buf[start..start + n])
    }

    fn bad(&self, offset: u64, reason: &'static str) -> ScanEnd {
        let batch_end = self.batch_end.filter(|end| offset < *end);
        ScanEnd::Bad(Damage {
            offset,
            reason,
            batch_end,
        })
    }

    fn run(
        &mut self,
        apply: &mut impl FnMut(RecordRef) -> Result<(), String>,
    ) -> io::Result<ScanEnd> {
        if self.len < HEADER_LEN_V1 as u64 {
            return Ok(self.bad(0, "segment header truncated"));
        }
        let header = self.bytes(0, HEADER_LEN_V1)?;
        let header_len = match &header[..8] {
            m if m == MAGIC => HEADER_LEN,
            m if m == MAGIC_V1 => HEADER_LEN_V1,
            _ => return Ok(self.bad(0, "bad segment magic")),
        };
        let (salt, first_seq) = (u64_at(header, 8), u64_at(header, 16));
        if header_len == HEADER_LEN {
            if self.len < HEADER_LEN as u64 {
                return Ok(self.bad(0, "segment header truncated"));
            }
            let header = self.bytes(0, HEADER_LEN)?;
            if crc32c::crc32c(&header[..HEADER_LEN_V1]) != u32_at(header, HEADER_LEN_V1) {
                return Ok(self.bad(0, "segment header checksum mismatch"));
            }
        }
        self.salt = salt;
        if self.expected_seq.is_some_and(|e| e != first_seq) {
            return Ok(self.bad(0, "segment does not continue the sequence"));
        }
        self.expected_seq = Some(first_seq);
        let mut at = header_len as u64;
        while at < self.len {
            if self.len - at < RECORD_HEADER_LEN as u64 {
                return Ok(self.bad(at, "record header truncated"));
            }
            let h = self.bytes(at, RECORD_HEADER_LEN)?;
            let (len, stored_crc) = (u32_at(h, 0) as usize, u32_at(h, 4));
            let (seq, kind) = (u64_at(h, 8), h[16]);
            if len > MAX_RECORD_BYTES {
                return Ok(self.bad(at, "record length out of range"));
            }
            let start = at + RECORD_HEADER_LEN as u64;
            if self.len - start < len as u64 {
                return Ok(self.bad(at, "record payload truncated"));
            }
            let (salt, expected) = (self.salt, self.expected_seq.unwrap_or(seq));
            let payload = self.bytes(start, len)?;
            if crc(salt, seq, kind, payload) != stored_crc {
                return Ok(self.bad(at, "checksum mismatch"));
            }
            if kind == KIND_BATCH {
                if seq != expected || len != 8 {
                    return Ok(self.bad(at, "batch marker out of place"));
                }
                let batch_len = u64_at(payload, 0);
                self.batch_end = Some(start + 8 + batch_len);
                at = start + 8;
                continue;
            }
            if seq != expected {
                return Ok(self.bad(at, "sequence gap"));
            }
            let (seg, offset) = (self.seg, at);
            let payload = self.bytes(start, len)?;
            let record = RecordRef {
                seq,
                kind,
                payload,
                seg,
                offset,
            };
            if let Err(why) = apply(record) {
                return Ok(ScanEnd::Refused {
                    offset: at,
                    seq,
                    why,
                });
            }
            self.expected_seq = Some(seq + 1);
            at = start + len as u64;
        }
        Ok(ScanEnd::Clean)
    }
}

fn is_all_zero<S: Storage>(storage: &mut S, seg: u64, len: u64) -> io::Result<bool> {
    let mut at = 0;
    let mut buf = vec![0u8; READ_CHUNK.min(len as usize)];
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        storage.read_at(seg, at, &mut buf[..n])?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Is damage `d` in the newest segment a torn tail (the last commit,
/// interrupted by a crash) rather than damage to data that was durable?
fn torn_tail<S: Storage>(
    storage: &mut S,
    seg: u64,
    len: u64,
    salt: u64,
    d: &Damage,
) -> io::Result<bool> {
    match d.batch_end {
        // Inside a batch: torn only if that batch is the last thing written.
        Some(end) => Ok(end >= len),
        // Where a batch should begin: torn if nothing valid follows.
        None => Ok(next_valid_record(storage, seg, len, salt, d.offset + 1)?.is_none()),
    }
}

/// The offset of the first record at or after `from` that verifies.
pub fn next_valid_record<S: Storage>(
    storage: &mut S,
    seg: u64,
    len: u64,
    salt: u64,
    from: u64,
) -> io::Result<Option<u64>> {
    let window = READ_CHUNK;
    let mut buf = vec![0u8; window + RECORD_HEADER_LEN];
    let mut pos = from;
    while pos + RECORD_HEADER_LEN as u64 <= len {
        let n = ((len - pos) as usize).min(buf.len());
        storage.read_at(seg, pos, &mut buf[..n])?;
        for i in 0..=(n - RECORD_HEADER_LEN) {
            let h = &buf[i..i + RECORD_HEADER_LEN];
            let rlen = u32_at(h, 0) as u64;
            let at = pos + i as u64;
            let end = at + RECORD_HEADER_LEN as u64 + rlen;
            if rlen as usize > MAX_RECORD_BYTES || end > len {
                continue;
            }
            let mut payload = vec![0u8; rlen as usize];
            storage.read_at(seg, at + RECORD_HEADER_LEN as u64, &mut payload)?;
            if crc(salt, u64_at(h, 8), h[16], &payload) == u32_at(h, 4) {
                return Ok(Some(at));
            }
        }
        pos += (n - RECORD_HEADER_LEN + 1) as u64;
    }
    Ok(None)
}

/// What `check` found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub segment: String,
    pub seg: u64,
    pub bytes: u64,
    pub records: usize,
    /// The first damage, if any, and how many records verify after it.
    pub damage: Option<(Damage, usize)>,
}

/// Read every segment without changing anything: the good records of each
/// (passed to `apply` in order, continuing after damage at the next record
/// that verifies), and where each is damaged. For `outpost data check` and
/// `salvage`.
pub fn inspect<S: Storage>(
    storage: &mut S,
    mut apply: impl FnMut(RecordRef),
) -> io::Result<Vec<SegmentReport>> {
    let mut reports = Vec::new();
    for seg in storage.segments()? {
        let len = storage.len(seg)?;
        let mut report = SegmentReport {
            segment: storage.describe(seg),
            seg,
            bytes: len,
            records: 0,
            damage: None,
        };
        let mut scan = Scan::new(storage, seg, len, None);
        let end = scan.run(&mut |r| {
            if r.kind != KIND_BATCH {
                report.records += 1;
                apply(r);
            }
            Ok(())
        })?;
        let salt = scan.salt;
        if let ScanEnd::Bad(d) = end {
            let after = if d.offset == 0 {
                0
            } else {
                records_after(storage, seg, len, salt, d.offset + 1, &mut apply)?
            };
            report.damage = Some((d, after));
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Hand every record that verifies from `from` on to `apply`, skipping
/// damaged stretches; returns how many there were.
fn records_after<S: Storage>(
    storage: &mut S,
    seg: u64,
    len: u64,
    salt: u64,
    mut from: u64,
    apply: &mut impl FnMut(RecordRef),
) -> io::Result<usize> {
    let mut count = 0;
    while let Some(at) = next_valid_record(storage, seg, len, salt, from)? {
        let mut h = [0u8; RECORD_HEADER_LEN];
        storage.read_at(seg, at, &mut h)?;
        let rlen = u32_at(&h, 0) as usize;
        let mut payload = vec![0u8; rlen];
        storage.read_at(seg, at + RECORD_HEADER_LEN as u64, &mut payload)?;
        if h[16] != KIND_BATCH {
            count += 1;
            apply(RecordRef {
                seq: u64_at(&h, 8),
                kind: h[16],
                payload: &payload,
                seg,
                offset: at,
            });
        }
        from = at + (RECORD_HEADER_LEN + rlen) as u64;
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
