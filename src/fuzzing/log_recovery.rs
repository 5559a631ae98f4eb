//! Recovery of a damaged log: a log the node wrote, then flipped bits, cut
//! segments, torn writes and appended garbage. Opening it never panics, and
//! every record handed back is one that was written (or one made of bytes
//! the fuzzer wrote itself: a CRC is no signature).

use crate::node::NodeConfig;
use crate::sim::SimNode;
use crate::state::salvage::salvage;
use crate::state::snapshot::{open_log, write_snapshot};
use crate::store::{inspect, Log, MemStorage, RecordRef, Storage};
use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

/// CRC-32C catches every error of up to 3 bits in a record, so with at
/// most this many flips a damaged record can never verify.
const MAX_BIT_FLIPS: usize = 3;

/// (sequence number, kind, payload) of a record.
type Written = HashSet<(u64, u8, Vec<u8>)>;

struct Base {
    storage: MemStorage,
    written: Written,
}

/// Two logs written by a node: one segment of ordinary commits; and two
/// segments, where a compaction's snapshot was durable but the crash came
/// before the old segment was removed, with more commits after it.
fn bases() -> &'static [Base; 2] {
    static BASES: OnceLock<[Base; 2]> = OnceLock::new();
    BASES.get_or_init(|| [base(false), base(true)])
}

fn base(compacted: bool) -> Base {
    let mut sim = SimNode::new(NodeConfig::new("fuzz.example"), 3);
    activity(&mut sim, "first");
    if compacted {
        sim.log.begin_compaction(0x5eed).expect("memory");
        let log = &mut sim.log;
        write_snapshot(sim.node.state(), |r| {
            log.append(r.kind(), &r.encode()).map(drop)
        })
        .expect("memory");
        sim.log.commit().expect("memory");
        activity(&mut sim, "second");
    }
    let mut storage = sim.log.storage().clone();
    let mut written = Written::new();
    let reports = inspect(&mut storage, |r| {
        written.insert((r.seq, r.kind, r.payload.to_vec()));
    })
    .expect("memory");
    assert!(reports.iter().all(|r| r.damage.is_none()), "{reports:?}");
    Base { storage, written }
}

/// Accounts, a roster, an offline message, a persistent room with history
/// (a sealed block of it, and a message after).
fn activity(sim: &mut SimNode, tag: &str) {
    let (a, b) = (format!("a{tag}"), format!("b{tag}"));
    sim.add_user(&a, "pw");
    sim.add_user(&b, "pw");
    let conn = sim.login(&a, "pw", "r");
    let room = format!("room{tag}@conference.fuzz.example");
    for stanza in [
        format!("<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='{b}@fuzz.example' name='B'/></query></iq>"),
        format!("<message to='{b}@fuzz.example' type='chat'><body>while you were out</body></message>"),
        format!("<presence to='{room}/A'><x xmlns='http://jabber.org/protocol/muc'/></presence>"),
        format!("<iq type='set' id='c' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>"),
        // Fills an archive block on its own: the snapshot holds a block.
        format!("<message to='{room}' type='groupchat'><body>{}</body></message>", "report ".repeat(2500)),
        format!("<message to='{room}' type='groupchat'><body>archived</body></message>"),
    ] {
        sim.send(conn, &stanza);
    }
    sim.disconnect(conn);
}

/// Byte ranges of each segment that the fuzzer wrote.
type FuzzWritten = BTreeMap<u64, Vec<(u64, u64)>>;

/// Input: a base-log byte, then mutations of 4 bytes each: kind, segment,
/// 16-bit position (scaled to the segment); garbage to append follows its
/// mutation.
pub fn log_recovery(data: &[u8]) {
    let Some((&which, mut ops)) = data.split_first() else {
        return;
    };
    let base = &bases()[usize::from(which & 1)];
    let mut storage = base.storage.clone();
    let mut fuzz_written = FuzzWritten::new();
    let mut flips = 0;
    while let [kind, seg, hi, lo, rest @ ..] = ops {
        ops = rest;
        let segs = storage.segments().expect("memory");
        let Some(&seg) = segs.get(usize::from(*seg) % segs.len().max(1)) else {
            break;
        };
        let bytes = storage.bytes_mut(seg).expect("listed");
        let at = (usize::from(*hi) << 8 | usize::from(*lo)) * (bytes.len() + 1) / 0x1_0000;
        match kind % 5 {
            0 if flips < MAX_BIT_FLIPS && at < bytes.len() => {
                bytes[at] ^= 1 << (kind / 5 % 8);
                flips += 1;
            }
            1 => bytes.truncate(at),
            2 => {
                // A torn write: zeros from `at` on, at most 256 bytes.
                let end = bytes.len().min(at + 1 + usize::from(kind / 5));
                bytes[at.min(end)..end].fill(0);
            }
            3 => {
                let n = usize::from(kind / 5 % 32).min(ops.len());
                let start = bytes.len() as u64;
                bytes.extend_from_slice(&ops[..n]);
                fuzz_written
                    .entry(seg)
                    .or_default()
                    .push((start, start + n as u64));
                ops = &ops[n..];
            }
            _ => {
                storage.remove(seg).expect("memory");
            }
        }
    }
    check_open(&storage, &base.written, &fuzz_written);
    let _ = open_log(storage.clone(), 42);
    let mut inspected = storage.clone();
    let _ = inspect(&mut inspected, |r| {
        check_record(&r, &base.written, &fuzz_written)
    });
    let _ = salvage(&mut storage);
}

fn check_open(storage: &MemStorage, written: &Written, fuzz_written: &FuzzWritten) {
    let mut last_seq = 0;
    let opened = Log::open(storage.clone(), 42, |r| {
        check_record(&r, written, fuzz_written);
        assert!(
            r.seq > last_seq,
            "replay went back from {last_seq} to {}",
            r.seq
        );
        last_seq = r.seq;
        Ok(())
    });
    if let Ok((mut log, _)) = opened {
        // What recovery left behind takes new records and opens again.
        log.append(1, b"after recovery").expect("memory");
        log.commit().expect("memory");
        let reopened = Log::open(log.storage().clone(), 43, |_| Ok(()));
        assert!(reopened.is_ok(), "a recovered log did not open again");
    }
}

fn check_record(r: &RecordRef, written: &Written, fuzz_written: &FuzzWritten) {
    // 17: the record header (store::log::RECORD_HEADER_LEN).
    let end = r.offset + 17 + r.payload.len() as u64;
    let touches_fuzz_bytes = fuzz_written
        .get(&r.seg)
        .is_some_and(|ranges| ranges.iter().any(|&(s, e)| r.offset < e && s < end));
    assert!(
        touches_fuzz_bytes || written.contains(&(r.seq, r.kind, r.payload.to_vec())),
        "replayed a record that was never written: seq {} kind {} at {}:{}",
        r.seq,
        r.kind,
        r.seg,
        r.offset
    );
}
