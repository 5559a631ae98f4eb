// These tests also run the log on real files (the shell's backend).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use super::*;
use crate::shell::FileStorage;
use crate::store::storage::MemStorage;

/// A record as a test keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    seq: u64,
    kind: u8,
    payload: Vec<u8>,
}

fn try_replay<S: Storage>(s: S) -> Result<(Log<S>, Vec<Got>, Recovery), OpenError> {
    let mut got = Vec::new();
    let (log, rec) = Log::open(s, 7, |r| {
        got.push(Got {
            seq: r.seq,
            kind: r.kind,
            payload: r.payload.to_vec(),
        });
        Ok(())
    })?;
    Ok((log, got, rec))
}

fn replay<S: Storage>(s: S) -> (Log<S>, Vec<Got>, Recovery) {
    try_replay(s).unwrap()
}

fn payload(i: usize) -> Vec<u8> {
    format!("record number {i} {}", "x".repeat(i % 13)).into_bytes()
}

/// A log of `n` records, one commit each; returns it and where each commit ends.
fn committed_one_by_one(n: usize) -> (Log<MemStorage>, Vec<usize>) {
    let (mut log, _, _) = replay(MemStorage::new());
    let mut ends = vec![];
    for i in 0..n {
        log.append(3, &payload(i)).unwrap();
        log.commit().unwrap();
        ends.push(log.position().1 as usize);
    }
    (log, ends)
}

fn damaged_at(result: Result<(Log<MemStorage>, Vec<Got>, Recovery), OpenError>) -> u64 {
    match result {
        Err(OpenError::Damaged { offset, .. }) => offset,
        Err(e) => panic!("expected damage, got {e}"),
        Ok((_, got, rec)) => panic!("expected damage, replayed {} ({rec:?})", got.len()),
    }
}

#[test]
fn records_survive_reopen_and_continue() {
    let (mut log, got, _) = replay(MemStorage::new());
    assert!(got.is_empty());
    for i in 0..10 {
        log.append(1, &payload(i)).unwrap();
    }
    log.commit().unwrap();
    let storage = log.storage().clone();
    let (mut log, got, rec) = replay(storage);
    assert_eq!(got.len(), 10);
    assert_eq!(rec.truncated, None);
    assert_eq!(got[3].payload, payload(3));
    assert_eq!(log.append(1, b"more").unwrap(), 11);
    log.commit().unwrap();
    let (_, got, _) = replay(log.storage().clone());
    assert_eq!(got.len(), 11);
    assert_eq!(got[10].seq, 11);
}

#[test]
fn uncommitted_records_are_lost_on_crash_committed_are_not() {
    let (mut log, _, _) = replay(MemStorage::new());
    log.append(1, b"durable").unwrap();
    log.commit().unwrap();
    log.append(1, b"buffered only").unwrap();
    let mut s = log.storage().clone();
    s.crash(0);
    let (_, got, _) = replay(s);
    assert_eq!(got.len(), 1);
}

#[test]
fn a_torn_commit_is_cut_back_to_the_last_good_record() {
    let (mut log, _, _) = replay(MemStorage::new());
    log.append(1, b"one").unwrap();
    log.commit().unwrap();
    log.storage().faults.fail_after_bytes = Some(40);
    log.append(1, b"two two two two").unwrap();
    log.append(1, b"three three three").unwrap();
    assert!(log.commit().is_err());
    let mut s = log.storage().clone();
    s.faults = Default::default();
    let (mut log, got, rec) = replay(s);
    assert_eq!(got.len(), 1);
    assert!(rec.truncated.is_some());
    // The log is writable again after recovery.
    log.append(1, b"four").unwrap();
    log.commit().unwrap();
    let (_, got, _) = replay(log.storage().clone());
    let payloads: Vec<_> = got.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(payloads, vec![b"one".to_vec(), b"four".to_vec()]);
}

#[test]
fn failed_sync_is_reported() {
    let (mut log, _, _) = replay(MemStorage::new());
    log.storage().faults.fail_sync = true;
    log.append(1, b"x").unwrap();
    assert!(log.commit().is_err());
}

#[test]
fn the_writer_refuses_what_the_reader_would_refuse() {
    let (mut log, _, _) = replay(MemStorage::new());
    let too_big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(log.append(1, &too_big).is_err());
    assert!(!log.has_pending(), "nothing was buffered");
    assert!(log.append(KIND_BATCH, b"x").is_err());
    // The largest allowed record goes through and reads back.
    let biggest = vec![7u8; MAX_RECORD_BYTES];
    log.append(1, &biggest).unwrap();
    log.commit().unwrap();
    let (_, got, _) = replay(log.storage().clone());
    assert_eq!(got[0].payload.len(), MAX_RECORD_BYTES);
}

/// Build a real file log, then truncate it at every byte offset: recovery
/// keeps exactly the records that fit entirely, and the log goes on.
#[test]
fn truncation_at_every_offset_recovers_the_good_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _, _) = replay(FileStorage::open(dir.path()).unwrap());
    let mut ends = vec![];
    let mut marker_ends = vec![];
    for i in 0..12 {
        marker_ends.push(log.position().1 as usize + RECORD_HEADER_LEN + 8);
        log.append(2, &payload(i)).unwrap();
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
        if cut < HEADER_LEN {
            assert_eq!(rec.torn_segment_removed, Some(1), "cut at {cut}");
        } else {
            let clean = cut == HEADER_LEN || ends.contains(&cut) || marker_ends.contains(&cut);
            assert_eq!(rec.truncated.is_some(), !clean, "cut at {cut}");
        }
        // And the recovered log accepts new records that survive a reopen.
        log.append(2, b"after").unwrap();
        log.commit().unwrap();
        drop(log);
        let (_, again, _) = replay(FileStorage::open(case.path()).unwrap());
        assert_eq!(again.len(), expect + 1, "cut at {cut}");
        assert_eq!(again[expect].payload, b"after", "cut at {cut}");
    }
}

/// Flip every bit of every byte in turn. Damage to a commit that was
/// followed by another (durable data) stops the open and changes nothing;
/// damage inside the last commit is a torn tail and is cut off. Damaged
/// data is never returned.
#[test]
fn bit_flips_anywhere_are_detected_and_only_the_last_commit_is_cut() {
    let (mut log, ends) = committed_one_by_one(6);
    let pristine = std::mem::take(log.storage());
    let len = pristine.bytes(1).unwrap().len();
    let last_commit_start = ends[ends.len() - 2];
    for byte in 0..len {
        for bit in 0..8 {
            let mut s = pristine.clone();
            s.bytes_mut(1).unwrap()[byte] ^= 1 << bit;
            let in_last_record = byte >= last_commit_start + RECORD_HEADER_LEN + 8;
            match try_replay(s) {
                Ok((_, got, rec)) => {
                    assert!(in_last_record, "byte {byte} bit {bit}: cut {rec:?}");
                    assert_eq!(got.len(), 5, "byte {byte} bit {bit}");
                    for (i, r) in got.iter().enumerate() {
                        assert_eq!(r.payload, payload(i));
                    }
                    assert_eq!(rec.truncated.unwrap().1 as usize, last_commit_start + 25);
                }
                Err(OpenError::Damaged { .. }) => {
                    assert!(!in_last_record, "byte {byte} bit {bit}");
                }
                Err(e) => panic!("byte {byte} bit {bit}: {e}"),
            }
        }
    }
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn damage_in_an_older_segment_stops_the_open_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _, _) = replay(FileStorage::open(dir.path()).unwrap());
    for i in 0..4 {
        log.append(1, &payload(i)).unwrap();
        log.commit().unwrap();
    }
    log.begin_compaction(11).unwrap();
    log.append(1, b"snapshot").unwrap();
    log.commit().unwrap();
    // Not finished: both segments are there, as after a crash before the
    // old one was dropped. Damage the old one in the middle.
    log.append(1, b"later").unwrap();
    log.commit().unwrap();
    drop(log);
    let old = dir.path().join(format!("{:016x}.seg", 1));
    let mut bytes = std::fs::read(&old).unwrap();
    bytes[HEADER_LEN + 60] ^= 0x40;
    std::fs::write(&old, &bytes).unwrap();
    let before = files(dir.path());
    let err = match try_replay(FileStorage::open(dir.path()).unwrap()) {
        Err(e @ OpenError::Damaged { .. }) => e.to_string(),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a damaged log"),
    };
    assert!(err.contains(&old.display().to_string()), "{err}");
    assert!(err.contains("damaged at byte"), "{err}");
    assert_eq!(files(dir.path()), before, "nothing was changed or deleted");
}

#[test]
fn a_record_too_long_for_the_reader_is_damage_not_a_tail() {
    // What lost every account before: a record the reader refused, followed
    // by more records, in the newest segment.
    let (mut log, _) = committed_one_by_one(3);
    let mut s = log.storage().clone();
    let at = HEADER_LEN + RECORD_HEADER_LEN + 8;
    s.bytes_mut(1).unwrap()[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(damaged_at(try_replay(s.clone())), at as u64);
    assert_eq!(
        s.bytes(1).unwrap().len(),
        log.storage().bytes(1).unwrap().len()
    );
}

#[test]
fn a_segment_that_does_not_continue_the_sequence_is_damage() {
    let (mut log, _) = committed_one_by_one(2);
    log.begin_compaction(3).unwrap();
    log.append(1, b"x").unwrap();
    log.commit().unwrap();
    let mut s = log.storage().clone();
    // Rewrite segment 2's first sequence number, with a valid header CRC.
    let b = s.bytes_mut(2).unwrap();
    b[16..24].copy_from_slice(&99u64.to_le_bytes());
    let check = crc32c::crc32c(&b[..24]);
    b[24..28].copy_from_slice(&check.to_le_bytes());
    // Segment 2 is the newest, but it holds a record: not a torn creation.
    assert_eq!(damaged_at(try_replay(s)), 0);
}

#[test]
fn a_newest_segment_with_only_a_partial_header_is_removed() {
    let (mut log, _) = committed_one_by_one(2);
    log.storage().append(2, b"OUTPOST\x02\x01\x02").unwrap();
    let (mut log, got, rec) = replay(log.storage().clone());
    assert_eq!(got.len(), 2);
    assert_eq!(rec.torn_segment_removed, Some(2));
    log.append(1, b"next").unwrap();
    log.commit().unwrap();
    let (_, got, _) = replay(log.storage().clone());
    assert_eq!(got.len(), 3);
}

#[test]
fn a_flipped_header_is_damage_even_in_the_newest_segment() {
    let (log, _) = committed_one_by_one(2);
    let mut log = log;
    for byte in 0..HEADER_LEN {
        let mut s = log.storage().clone();
        s.bytes_mut(1).unwrap()[byte] ^= 0x10;
        assert_eq!(damaged_at(try_replay(s)), 0, "header byte {byte}");
    }
}

#[test]
fn compaction_keeps_only_the_snapshot_and_later_records() {
    let (mut log, _, _) = replay(MemStorage::new());
    for i in 0..5 {
        log.append(1, &payload(i)).unwrap();
    }
    log.begin_compaction(99).unwrap();
    log.append(9, b"snapshot part 1").unwrap();
    log.commit().unwrap();
    log.append(9, b"snapshot part 2").unwrap();
    log.finish_compaction().unwrap();
    log.append(1, b"after").unwrap();
    log.commit().unwrap();
    assert_eq!(log.storage().segments().unwrap(), vec![2]);
    assert_eq!(log.total_bytes(), log.position().1);
    let (_, got, _) = replay(log.storage().clone());
    let kinds: Vec<_> = got.iter().map(|g| (g.kind, g.payload.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (9, b"snapshot part 1".to_vec()),
            (9, b"snapshot part 2".to_vec()),
            (1, b"after".to_vec())
        ]
    );
    assert_eq!(got[0].seq, 6, "sequence numbers continue across compaction");
}

#[test]
fn a_crash_mid_compaction_keeps_the_old_segments_whole() {
    let (mut log, _, _) = replay(MemStorage::new());
    log.append(1, b"a").unwrap();
    log.commit().unwrap();
    log.begin_compaction(5).unwrap();
    log.storage().faults.fail_after_bytes = Some(30);
    log.append(9, b"a big snapshot that does not fit").unwrap();
    assert!(log.commit().is_err());
    let mut s = log.storage().clone();
    s.faults = Default::default();
    let (_, got, rec) = replay(s.clone());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"a");
    assert!(rec.truncated.is_some());
    assert_eq!(s.segments().unwrap(), vec![1, 2]);
}

#[test]
fn inspect_reports_damage_and_reads_on_past_it() {
    let (mut log, ends) = committed_one_by_one(6);
    let mut s = log.storage().clone();
    s.bytes_mut(1).unwrap()[ends[1] + RECORD_HEADER_LEN + 8 + 20] ^= 1;
    let before = s.clone();
    let mut seen = Vec::new();
    let reports = inspect(&mut s, |r| seen.push(r.payload.to_vec())).unwrap();
    assert_eq!(reports.len(), 1);
    let (damage, after) = reports[0].damage.clone().unwrap();
    assert_eq!(damage.offset as usize, ends[1] + RECORD_HEADER_LEN + 8);
    assert_eq!(reports[0].records, 2);
    assert_eq!(after, 3, "the records after the damaged one still verify");
    let expect: Vec<_> = [0, 1, 3, 4, 5].iter().map(|i| payload(*i)).collect();
    assert_eq!(seen, expect);
    assert_eq!(s.bytes(1), before.bytes(1), "inspect changes nothing");
    let _ = log.storage();
}

#[test]
fn segments_written_before_header_checksums_still_load() {
    // A v1 segment: 24-byte header, records without batch markers.
    let mut data = b"OUTPOST\x01".to_vec();
    data.extend_from_slice(&5u64.to_le_bytes());
    data.extend_from_slice(&1u64.to_le_bytes());
    for (i, p) in [b"old one".as_slice(), b"old two"].iter().enumerate() {
        encode_record(&mut data, 5, i as u64 + 1, 2, p);
    }
    let mut s = MemStorage::new();
    s.append(1, &data).unwrap();
    let (mut log, got, rec) = replay(s);
    assert_eq!(got.len(), 2);
    assert_eq!(
        rec,
        Recovery {
            records: 2,
            ..Default::default()
        }
    );
    log.append(2, b"new").unwrap();
    log.commit().unwrap();
    let (_, got, _) = replay(log.storage().clone());
    assert_eq!(got[2].payload, b"new");
    assert_eq!(got[2].seq, 3);
}
