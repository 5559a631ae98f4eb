//! The append log: segments of length-prefixed, checksummed records.
//!
//! Segment layout: header `OUTPOST\x01` | salt u64 | first sequence u64, then
//! records `len u32 | crc32c u32 | seq u64 | kind u8 | payload[len]`, all
//! little-endian, where the CRC covers salt, seq, kind and payload. The salt
//! differs per segment so stale bytes from an older incarnation never verify.
//! Recovery replays up to the first bad record and truncates there.

use super::storage::Storage;
use std::io;

const MAGIC: &[u8; 8] = b"OUTPOST\x01";
const HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 17;
/// No legitimate record is this large; a bigger length is corruption.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub seq: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// What recovery found: for the operator's log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub records: usize,
    /// `(segment, offset, reason, bytes discarded)` when a bad tail was cut.
    pub truncated: Option<(u64, u64, &'static str, u64)>,
    pub segments_removed: Vec<u64>,
}

pub struct Log<S: Storage> {
    storage: S,
    seg: u64,
    salt: u64,
    seg_bytes: u64,
    next_seq: u64,
    pending: Vec<u8>,
    /// Bytes of records since the last snapshot, to decide when to compact.
    bytes_since_snapshot: u64,
}

fn crc(salt: u64, seq: u64, kind: u8, payload: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&salt.to_le_bytes());
    c = crc32c::crc32c_append(c, &seq.to_le_bytes());
    c = crc32c::crc32c_append(c, &[kind]);
    crc32c::crc32c_append(c, payload)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl<S: Storage> Log<S> {
    /// Open the log, replaying every good record into `apply`. A bad record
    /// ends the log: its segment is truncated there and later segments removed.
    /// `fresh_salt` seeds the salt of segments created from now on.
    pub fn open(
        mut storage: S,
        fresh_salt: u64,
        mut apply: impl FnMut(RawRecord),
    ) -> io::Result<(Log<S>, Recovery)> {
        let segs = storage.segments()?;
        let mut recovery = Recovery::default();
        let mut expected_seq: Option<u64> = None;
        let mut last: Option<(u64, u64, u64)> = None; // (seg, salt, len)
        let mut bytes_since_snapshot = 0;
        let mut bad = false;
        for &seg in &segs {
            if bad {
                storage.remove(seg)?;
                recovery.segments_removed.push(seg);
                continue;
            }
            let data = storage.read(seg)?;
            let (good_len, salt, reason) = scan_segment(
                &data,
                &mut expected_seq,
                &mut recovery,
                &mut bytes_since_snapshot,
                &mut apply,
            );
            if let Some(reason) = reason {
                bad = true;
                recovery.truncated =
                    Some((seg, good_len as u64, reason, (data.len() - good_len) as u64));
                if good_len < HEADER_LEN {
                    storage.remove(seg)?;
                    recovery.segments_removed.push(seg);
                    continue;
                }
                storage.truncate(seg, good_len as u64)?;
            }
            last = Some((seg, salt, good_len as u64));
        }
        let mut log = Log {
            storage,
            seg: 0,
            salt: 0,
            seg_bytes: 0,
            next_seq: expected_seq.unwrap_or(1),
            pending: Vec::new(),
            bytes_since_snapshot,
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
        self.storage.append(seg, &header)?;
        self.storage.sync(seg)?;
        self.seg = seg;
        self.salt = salt;
        self.seg_bytes = HEADER_LEN as u64;
        Ok(())
    }

    /// Buffer a record; it is durable only after the next successful `commit`.
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        encode_record(&mut self.pending, self.salt, seq, kind, payload);
        seq
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Write buffered records and make them durable (group commit: one sync
    /// for everything appended since the last commit).
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.storage.append(self.seg, &self.pending)?;
        self.storage.sync(self.seg)?;
        self.seg_bytes += self.pending.len() as u64;
        self.bytes_since_snapshot += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Start a new segment whose first record is `snapshot` (which must
    /// capture all state), make it durable, then drop every older segment.
    pub fn compact(&mut self, kind: u8, snapshot: &[u8], salt: u64) -> io::Result<()> {
        self.commit()?;
        let old: Vec<u64> = self.storage.segments()?;
        let new_seg = self.seg + 1;
        self.start_segment(new_seg, salt)?;
        self.append(kind, snapshot);
        self.commit()?;
        for seg in old {
            self.storage.remove(seg)?;
        }
        self.bytes_since_snapshot = 0;
        Ok(())
    }

    pub fn bytes_since_snapshot(&self) -> u64 {
        self.bytes_since_snapshot
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

/// Returns the length of the good prefix, the segment salt, and why it stopped early.
fn scan_segment(
    data: &[u8],
    expected_seq: &mut Option<u64>,
    recovery: &mut Recovery,
    bytes_since_snapshot: &mut u64,
    apply: &mut impl FnMut(RawRecord),
) -> (usize, u64, Option<&'static str>) {
    if data.len() < HEADER_LEN {
        return (0, 0, Some("segment header truncated"));
    }
    if &data[..8] != MAGIC {
        return (0, 0, Some("bad segment magic"));
    }
    let salt = u64_at(data, 8);
    let first_seq = u64_at(data, 16);
    if let Some(exp) = *expected_seq {
        if first_seq != exp {
            return (0, salt, Some("segment does not continue the sequence"));
        }
    }
    *expected_seq = Some(first_seq);
    let mut at = HEADER_LEN;
    while at < data.len() {
        if data.len() - at < RECORD_HEADER_LEN {
            return (at, salt, Some("record header truncated"));
        }
        let len = u32_at(data, at) as usize;
        if len > MAX_RECORD_BYTES {
            return (at, salt, Some("record length out of range"));
        }
        let stored_crc = u32_at(data, at + 4);
        let seq = u64_at(data, at + 8);
        let kind = data[at + 16];
        let start = at + RECORD_HEADER_LEN;
        if data.len() - start < len {
            return (at, salt, Some("record payload truncated"));
        }
        let payload = &data[start..start + len];
        if crc(salt, seq, kind, payload) != stored_crc {
            return (at, salt, Some("checksum mismatch"));
        }
        if Some(seq) != *expected_seq {
            return (at, salt, Some("sequence gap"));
        }
        *expected_seq = Some(seq + 1);
        if at == HEADER_LEN {
            *bytes_since_snapshot = 0;
        }
        *bytes_since_snapshot += (RECORD_HEADER_LEN + len) as u64;
        apply(RawRecord {
            seq,
            kind,
            payload: payload.to_vec(),
        });
        recovery.records += 1;
        at = start + len;
    }
    (at, salt, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::storage::{FileStorage, MemStorage};

    fn replay<S: Storage>(s: S) -> (Log<S>, Vec<RawRecord>, Recovery) {
        let mut got = Vec::new();
        let (log, rec) = Log::open(s, 7, |r| got.push(r)).unwrap();
        (log, got, rec)
    }

    fn payload(i: usize) -> Vec<u8> {
        format!("record number {i} {}", "x".repeat(i % 13)).into_bytes()
    }

    #[test]
    fn records_survive_reopen_and_continue() {
        let (mut log, got, _) = replay(MemStorage::new());
        assert!(got.is_empty());
        for i in 0..10 {
            log.append(1, &payload(i));
        }
        log.commit().unwrap();
        let storage = log.storage().clone();
        let (mut log, got, rec) = replay(storage);
        assert_eq!(got.len(), 10);
        assert_eq!(rec.truncated, None);
        assert_eq!(got[3].payload, payload(3));
        assert_eq!(log.append(1, b"more"), 11);
        log.commit().unwrap();
        let (_, got, _) = replay(log.storage().clone());
        assert_eq!(got.len(), 11);
    }

    #[test]
    fn uncommitted_records_are_lost_on_crash_committed_are_not() {
        let (mut log, _, _) = replay(MemStorage::new());
        log.append(1, b"durable");
        log.commit().unwrap();
        log.append(1, b"buffered only");
        let mut s = log.storage().clone();
        s.crash(0);
        let (_, got, _) = replay(s);
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn torn_write_is_cut_back_to_the_last_good_record() {
        let (mut log, _, _) = replay(MemStorage::new());
        log.append(1, b"one");
        log.commit().unwrap();
        log.storage().faults.fail_after_bytes = Some(10);
        log.append(1, b"two two two two");
        assert!(log.commit().is_err());
        let mut s = log.storage().clone();
        s.faults = Default::default();
        let (mut log, got, rec) = replay(s);
        assert_eq!(got.len(), 1);
        assert_eq!(rec.truncated.unwrap().2, "record header truncated");
        // The log is writable again after recovery.
        log.append(1, b"three");
        log.commit().unwrap();
        let (_, got, _) = replay(log.storage().clone());
        assert_eq!(
            got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            vec![b"one".to_vec(), b"three".to_vec()]
        );
    }

    #[test]
    fn failed_sync_is_reported() {
        let (mut log, _, _) = replay(MemStorage::new());
        log.storage().faults.fail_sync = true;
        log.append(1, b"x");
        assert!(log.commit().is_err());
    }

    /// Build a real file log, then truncate it at every byte offset and
    /// check recovery keeps exactly the records that fit entirely.
    #[test]
    fn truncation_at_every_offset_recovers_the_good_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = replay(FileStorage::open(dir.path()).unwrap());
        let mut ends = vec![];
        for i in 0..12 {
            log.append(2, &payload(i));
            log.commit().unwrap();
            ends.push(log.position().1 as usize);
        }
        drop(log);
        let seg_path = dir.path().join(format!("{:016x}.seg", 1));
        let full = std::fs::read(&seg_path).unwrap();
        for cut in 0..=full.len() {
            let case = tempfile::tempdir().unwrap();
            std::fs::write(case.path().join(format!("{:016x}.seg", 1)), &full[..cut]).unwrap();
            let (mut log, got, rec) = replay(FileStorage::open(case.path()).unwrap());
            let expect = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), expect, "cut at {cut}");
            for (i, r) in got.iter().enumerate() {
                assert_eq!(r.payload, payload(i));
            }
            let clean = cut == HEADER_LEN || ends.contains(&cut);
            assert_eq!(rec.truncated.is_some(), !clean, "cut at {cut}");
            // And the recovered log accepts new records that survive a reopen.
            log.append(2, b"after");
            log.commit().unwrap();
            drop(log);
            let (_, again, _) = replay(FileStorage::open(case.path()).unwrap());
            assert_eq!(again.len(), expect + 1, "cut at {cut}");
        }
    }

    /// Flip every bit of every byte in turn: recovery keeps exactly the
    /// records before the damaged one and never returns damaged data.
    #[test]
    fn bit_flips_anywhere_are_detected() {
        let (mut log, _, _) = replay(MemStorage::new());
        let mut ends = vec![];
        for i in 0..6 {
            log.append(3, &payload(i));
            log.commit().unwrap();
            ends.push(log.position().1 as usize);
        }
        let pristine = log.storage().clone();
        let len = pristine.clone().read(1).unwrap().len();
        for byte in 0..len {
            for bit in 0..8 {
                let mut s = pristine.clone();
                s.bytes_mut(1).unwrap()[byte] ^= 1 << bit;
                let (_, got, rec) = replay(s);
                let expect = ends.iter().filter(|&&e| e <= byte).count();
                assert_eq!(got.len(), expect, "byte {byte} bit {bit}");
                for (i, r) in got.iter().enumerate() {
                    assert_eq!(r.payload, payload(i));
                }
                assert!(rec.truncated.is_some());
            }
        }
    }

    #[test]
    fn compaction_keeps_only_the_snapshot_and_later_records() {
        let (mut log, _, _) = replay(MemStorage::new());
        for i in 0..5 {
            log.append(1, &payload(i));
        }
        log.compact(9, b"snapshot", 99).unwrap();
        log.append(1, b"after");
        log.commit().unwrap();
        assert_eq!(log.storage().segments().unwrap(), vec![2]);
        let (_, got, _) = replay(log.storage().clone());
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].kind, got[0].payload.as_slice()),
            (9, &b"snapshot"[..])
        );
        assert_eq!(got[1].payload, b"after");
    }

    #[test]
    fn a_crash_mid_compaction_keeps_the_old_state() {
        let (mut log, _, _) = replay(MemStorage::new());
        log.append(1, b"a");
        log.commit().unwrap();
        log.storage().faults.fail_after_bytes = Some(30);
        assert!(log
            .compact(9, b"a big snapshot that does not fit", 5)
            .is_err());
        let mut s = log.storage().clone();
        s.faults = Default::default();
        let (_, got, rec) = replay(s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"a");
        assert!(rec.truncated.is_some());
    }
}
