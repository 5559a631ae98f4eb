//! Archive files: the archives' sealed blocks (`model::block`), each
//! written once, whole, and read back when a query or a join reaches it.
//! Files `NNNNNNNN.blk` in `data_dir/archive`, private to the owner, of up
//! to [`FILE_BYTES`] each.
//!
//! The files are never the only copy of anything the node acknowledged:
//! a block's messages stay in the log until a snapshot refers to the
//! block, and the shell syncs the files before each compaction step, so a
//! snapshot never refers to bytes that a crash could lose. What no state
//! refers to any longer is removed: at start-up (blocks written after the
//! last snapshot are sealed again from the log's records) and after each
//! compaction.

use crate::model::block::{BlockReader, Extent};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A file takes blocks until it reaches this size.
pub const FILE_BYTES: u64 = 8 * 1024 * 1024;
/// Files kept open for reading.
const READERS_KEPT: usize = 16;

pub struct ArchiveFiles {
    dir: PathBuf,
    /// The file blocks are appended to: its number, handle and length.
    current: Option<(u32, File, u64)>,
    next: u32,
    unsynced: bool,
    readers: RefCell<BTreeMap<u32, File>>,
    /// A file takes blocks until it reaches this size.
    file_bytes: u64,
}

/// What a clean-up removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub files: usize,
    pub bytes: u64,
}

impl ArchiveFiles {
    /// The archive directory of a data directory, created if need be.
    pub fn open(data_dir: &Path) -> io::Result<ArchiveFiles> {
        let dir = data_dir.join("archive");
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let mut files = ArchiveFiles {
            dir,
            current: None,
            next: 1,
            unsynced: false,
            readers: RefCell::default(),
            file_bytes: FILE_BYTES,
        };
        files.next = files.numbers()?.last().map_or(1, |n| n + 1);
        Ok(files)
    }

    /// The archive files of a data directory, to read only (nothing is
    /// created; a directory without them reads every block as missing).
    pub fn open_existing(data_dir: &Path) -> ArchiveFiles {
        ArchiveFiles {
            dir: data_dir.join("archive"),
            current: None,
            next: u32::MAX,
            unsynced: false,
            readers: RefCell::default(),
            file_bytes: FILE_BYTES,
        }
    }

    /// Files of another size than [`FILE_BYTES`] (tests fill several).
    pub fn with_file_bytes(mut self, bytes: u64) -> ArchiveFiles {
        self.file_bytes = bytes;
        self
    }

    fn path(&self, file: u32) -> PathBuf {
        self.dir.join(format!("{file:08x}.blk"))
    }

    /// The files present, ascending.
    pub fn numbers(&self) -> io::Result<Vec<u32>> {
        let mut numbers = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".blk")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Never give a new file a number `referenced` (the highest the state
    /// or its snapshot names) or below: a missing file's number must not
    /// come back with other blocks in it.
    pub fn number_past(&mut self, referenced: Option<u32>) {
        if let Some(n) = referenced {
            self.next = self.next.max(n.saturating_add(1));
        }
    }

    /// Write a block; where it went. Not durable until [`sync`](Self::sync).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<Extent> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "block over 4 GiB"))?;
        let full = self
            .current
            .as_ref()
            .is_some_and(|(_, _, at)| *at > 0 && at + bytes.len() as u64 > self.file_bytes);
        if full {
            self.sync()?;
            self.current = None;
        }
        if self.current.is_none() {
            let n = self.next;
            let f = OpenOptions::new()
                .create_new(true)
                .read(true)
                .write(true)
                .mode(0o600)
                .open(self.path(n))?;
            File::open(&self.dir)?.sync_all()?;
            self.next += 1;
            self.current = Some((n, f, 0));
        }
        let (n, f, at) = self.current.as_mut().expect("opened above");
        f.write_all_at(bytes, *at)?;
        let extent = Extent {
            file: *n,
            offset: *at,
            len,
        };
        *at += bytes.len() as u64;
        self.unsynced = true;
        Ok(extent)
    }

    /// Make every block written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if let (true, Some((_, f, _))) = (self.unsynced, &self.current) {
            f.sync_data()?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Remove the files `keep` does not name (but never the one being
    /// written); with `cut_tails`, also cut each kept file after the end
    /// `keep` gives (at start-up: what follows was written after the last
    /// snapshot, and is written again from the log).
    pub fn collect(&mut self, keep: &BTreeMap<u32, u64>, cut_tails: bool) -> io::Result<Collected> {
        let current = self.current.as_ref().map(|(n, _, _)| *n);
        let mut done = Collected::default();
        for n in self.numbers()? {
            if Some(n) == current {
                continue;
            }
            let path = self.path(n);
            let size = fs::metadata(&path)?.len();
            match keep.get(&n) {
                None => {
                    self.readers.borrow_mut().remove(&n);
                    fs::remove_file(&path)?;
                    done.files += 1;
                    done.bytes += size;
                }
                Some(&end) if cut_tails && end < size => {
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(end)?;
                    f.sync_all()?;
                    done.bytes += size - end;
                }
                Some(_) => {}
            }
        }
        if done.files > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(done)
    }

    /// Files (not the one being written) whose live bytes, by `live`, are
    /// under a quarter of their size: their blocks are worth writing
    /// again, so that the files can go.
    pub fn sparse(&self, live: &BTreeMap<u32, u64>) -> io::Result<Vec<u32>> {
        let current = self.current.as_ref().map(|(n, _, _)| *n);
        let mut sparse = Vec::new();
        for n in self.numbers()? {
            let size = fs::metadata(self.path(n))?.len();
            let used = live.get(&n).copied().unwrap_or(0);
            if Some(n) != current && used < size / 4 {
                sparse.push(n);
            }
        }
        Ok(sparse)
    }

    fn read(&self, at: Extent) -> io::Result<Vec<u8>> {
        let mut readers = self.readers.borrow_mut();
        if !readers.contains_key(&at.file) {
            if readers.len() >= READERS_KEPT {
                readers.pop_first();
            }
            readers.insert(at.file, File::open(self.path(at.file))?);
        }
        let mut buf = vec![0; at.len as usize];
        readers[&at.file].read_exact_at(&mut buf, at.offset)?;
        Ok(buf)
    }
}

/// The files, shared by the shell (which writes) and the archives (which
/// read through [`BlockReader`]).
#[derive(Clone)]
pub struct SharedFiles(pub Rc<RefCell<ArchiveFiles>>);

impl BlockReader for SharedFiles {
    fn read(&self, at: Extent) -> io::Result<Vec<u8>> {
        self.0.borrow().read(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_back_across_files_and_unreferenced_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ArchiveFiles::open(dir.path()).unwrap();
        let big = vec![7u8; (FILE_BYTES / 2 + 1) as usize];
        let a = files.append(b"first").unwrap();
        let b = files.append(&big).unwrap();
        let c = files.append(&big).unwrap(); // over the size: a new file
        assert_eq!((a.file, b.file), (1, 1));
        assert_eq!(c.file, 2);
        files.sync().unwrap();
        assert_eq!(files.read(a).unwrap(), b"first");
        assert_eq!(files.read(c).unwrap(), big);
        // Only file 2 is referenced: file 1 goes (2 is being written).
        let keep = BTreeMap::from([(2, c.offset + u64::from(c.len))]);
        let done = files.collect(&keep, false).unwrap();
        assert_eq!(done.files, 1);
        assert!(files.read(a).is_err());
        assert_eq!(files.numbers().unwrap(), [2]);
        // Reopened (a restart): new blocks go to a new file; a tail that
        // nothing refers to is cut.
        let mut files = ArchiveFiles::open(dir.path()).unwrap();
        let keep = BTreeMap::from([(2, 100)]);
        let done = files.collect(&keep, true).unwrap();
        assert_eq!(done.bytes, u64::from(c.len) - 100);
        assert_eq!(files.append(b"next").unwrap().file, 3);
    }

    #[test]
    fn a_read_past_a_files_end_is_an_error_not_a_short_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ArchiveFiles::open(dir.path()).unwrap();
        let mut at = files.append(b"0123456789").unwrap();
        at.len += 1;
        assert!(files.read(at).is_err());
        at.file = 9;
        assert!(files.read(at).is_err());
    }
}
