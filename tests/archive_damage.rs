//! An archive whose blocks live in files meets damage: a block that cannot
//! be read (a lost file, an I/O error) loses its own messages and nothing
//! else, whatever the archive does next; crafted block descriptions are
//! refused; retention cuts without reading whole blocks, and still keeps
//! about what its bounds allow when they are near a block's size.

use outpost::model::archive::Archive;
use outpost::model::block::{install_reader, Block, BlockReader, Bytes, Extent, Packed};
use outpost::model::room::Archived;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

fn msg(seq: u64) -> Archived {
    Archived {
        seq,
        stanza_id: format!("m{seq}"),
        stamp_ms: 1_000 + seq,
        nick: "alice".into(),
        real: "alice@hq".into(),
        xml: format!("<message type='groupchat'><body>hello number {seq}</body></message>"),
    }
}

/// Blocks "written" to memory, with reads that can be made to fail.
#[derive(Default)]
struct Disk {
    blocks: RefCell<HashMap<u64, Vec<u8>>>,
    failing: RefCell<HashSet<u64>>,
    reads: Cell<usize>,
}

struct Reader(Rc<Disk>);

impl BlockReader for Reader {
    fn read(&self, at: Extent) -> std::io::Result<Vec<u8>> {
        self.0.reads.set(self.0.reads.get() + 1);
        if self.0.failing.borrow().contains(&at.offset) {
            return Err(std::io::Error::other("EIO"));
        }
        Ok(self.0.blocks.borrow()[&at.offset][..at.len as usize].to_vec())
    }
}

/// An archive of `n` messages, its blocks written out (file 1, one block
/// every million bytes).
fn stored_archive(n: u64) -> (Archive, Rc<Disk>) {
    let disk = Rc::new(Disk::default());
    install_reader(Some(Rc::new(Reader(disk.clone()))));
    let mut a: Archive = (1..=n).map(msg).collect();
    let mut offset = 0u64;
    a.spill(&mut |b| {
        offset += 1_000_000;
        disk.blocks.borrow_mut().insert(offset, b.to_vec());
        let len = b.len() as u32;
        Ok(Extent {
            file: 1,
            offset,
            len,
        })
    })
    .unwrap();
    (a, disk)
}

/// Reads enough other blocks that none of `a` stays decoded.
fn forget_decoded(a: &Archive) {
    let (other, _disk) = stored_archive(2_000);
    for p in (0..other.len()).step_by(200) {
        let _ = other.get(p);
    }
    let _ = a;
}

#[test]
fn a_snapshot_of_an_unreadable_partly_dropped_first_block_keeps_the_next_one_whole() {
    let (mut a, disk) = stored_archive(2_000);
    a.drop_upto(100); // into the first block
    let first = a.extents().next().unwrap().offset;
    forget_decoded(&a);
    install_reader(Some(Rc::new(Reader(disk.clone()))));
    disk.failing.borrow_mut().insert(first);
    let readable: Vec<u64> = a.iter().map(|m| m.seq).collect();
    let (loose, blocks, open) = a.stored();
    let mut back = Archive::new();
    back.extend(loose);
    for b in blocks {
        assert!(back.push_block(b));
    }
    back.extend(open);
    let got: Vec<u64> = back.iter().map(|m| m.seq).collect();
    assert_eq!(got, readable);
}

#[test]
fn a_time_bound_in_an_unreadable_block_does_not_skip_later_ones() {
    let (a, disk) = stored_archive(2_000);
    let oldest = a.extents().next().unwrap().offset;
    forget_decoded(&a);
    install_reader(Some(Rc::new(Reader(disk.clone()))));
    disk.failing.borrow_mut().insert(oldest);
    // Seq 5's stamp lies in the unreadable block: the answer is where that
    // block starts, so every later message is still in the span.
    assert_eq!(a.first_at_or_after(1_005), 0);
    let later = a.first_at_or_after(1_000 + 1_500);
    assert_eq!(a.get(later).unwrap().seq, 1_500);
}

#[test]
fn a_rewind_through_an_unreadable_newest_block_goes_all_the_way() {
    let (mut a, disk) = stored_archive(2_000);
    let newest = a.extents().last().unwrap().offset;
    forget_decoded(&a);
    install_reader(Some(Rc::new(Reader(disk.clone()))));
    disk.failing.borrow_mut().insert(newest);
    a.drop_from(1_000);
    assert!(a.last_seq().unwrap() < 1_000, "{:?}", a.last_seq());
    assert!(a.push(msg(1_000)));
}

#[test]
fn retention_by_whole_blocks_reads_none() {
    let (mut a, disk) = stored_archive(2_000);
    forget_decoded(&a);
    install_reader(Some(Rc::new(Reader(disk.clone()))));
    let upto = a.trim_point(1_500, u64::MAX).unwrap();
    let before = disk.reads.get();
    a.drop_upto(upto);
    assert_eq!(disk.reads.get(), before, "a whole-block cut read a block");
    assert_eq!(a.front().unwrap().seq, upto + 1);
    assert!(a.len() <= 1_500 && a.len() > 1_500 - 256, "{}", a.len());
}

#[test]
fn bounds_near_a_blocks_size_keep_about_what_they_allow() {
    let mut a = Archive::new();
    let mut fewest = usize::MAX;
    for seq in 1..=2_000u64 {
        let mut m = msg(seq);
        m.xml = format!("<message><body>{}</body></message>", "x".repeat(400));
        a.push(m);
        if let Some(upto) = a.trim_point(50, 8 * 1024 * 1024) {
            a.drop_upto(upto);
        }
        assert!(a.len() <= 50);
        if seq > 200 {
            fewest = fewest.min(a.len());
        }
    }
    assert!(fewest >= 25, "kept as few as {fewest} of 50");
}

#[test]
fn crafted_block_descriptions_are_refused() {
    let block = |first: u64, count: u32, xml_bytes: u64, packed: Packed| Block {
        first_seq: first,
        last_seq: first + u64::from(count),
        first_stamp: 0,
        last_stamp: 0,
        xml_bytes,
        count,
        packed,
    };
    let held = |n: usize| Packed::Held(Bytes(vec![0u8; n].into()));
    let mut a = Archive::new();
    assert!(
        !a.push_block(block(1, 1, u64::MAX, held(8))),
        "stanza bytes past any block"
    );
    assert!(
        !a.push_block(block(1, 100_000, 5, held(400_000))),
        "more messages than a block holds"
    );
    let far = Packed::Stored(Extent {
        file: 1,
        offset: u64::MAX - 2,
        len: 100,
    });
    assert!(
        !a.push_block(block(1, 1, 5, far)),
        "an extent past the end of any file"
    );
    let huge = Packed::Stored(Extent {
        file: 1,
        offset: 0,
        len: u32::MAX,
    });
    assert!(
        !a.push_block(block(1, 1, 5, huge)),
        "an extent longer than a block"
    );
    assert!(a.push_block(block(1, 1, 5, held(8))));
    assert_eq!((a.len(), a.bytes()), (1, 5));
}

#[test]
fn a_walk_past_an_unreadable_block_reads_it_once() {
    let (a, disk) = stored_archive(2_000);
    let second = a.extents().nth(1).unwrap().offset;
    forget_decoded(&a);
    install_reader(Some(Rc::new(Reader(disk.clone()))));
    disk.failing.borrow_mut().insert(second);
    let before = disk.reads.get();
    let forward = a.iter().count();
    let backward = a.iter().rev().count();
    assert_eq!(forward, backward);
    assert!(forward < 2_000 && forward > 1_500, "{forward}");
    // Every block read about once each way, the unreadable one included.
    let blocks = a.extents().count();
    assert!(
        disk.reads.get() - before <= 2 * blocks + 2,
        "{} reads",
        disk.reads.get() - before
    );
}
