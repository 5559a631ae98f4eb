//! File bytes in memory, kept as the shell keeps them in `data_dir/files`:
//! a part file while written, the file once checked. One store per
//! simulated node; it outlives the node's restarts, as a disk does.

use crate::files::{FileKey, FileStore};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;

#[derive(Default)]
pub struct MemFiles {
    pub files: RefCell<BTreeMap<FileKey, Vec<u8>>>,
    pub parts: RefCell<BTreeMap<FileKey, Vec<u8>>>,
}

impl MemFiles {
    /// Whole files and their bytes, part files not counted.
    pub fn stored(&self) -> (usize, u64) {
        let files = self.files.borrow();
        (files.len(), files.values().map(|f| f.len() as u64).sum())
    }

    pub fn file(&self, key: &FileKey) -> Option<Vec<u8>> {
        self.files.borrow().get(key).cloned()
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    crate::common::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

impl FileStore for MemFiles {
    fn read(&self, key: &FileKey, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let files = self.files.borrow();
        let parts = self.parts.borrow();
        let bytes = files
            .get(key)
            .or_else(|| parts.get(key))
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let start = (offset as usize).min(bytes.len());
        let end = (start + len).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn write_part(&self, key: &FileKey, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut parts = self.parts.borrow_mut();
        let part = parts.entry(key.clone()).or_default();
        let end = offset as usize + data.len();
        if part.len() < end {
            part.resize(end, 0);
        }
        part[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn part_len(&self, key: &FileKey) -> u64 {
        self.parts.borrow().get(key).map_or(0, |p| p.len() as u64)
    }

    fn complete(&self, key: &FileKey, sha256: Option<&str>) -> io::Result<bool> {
        let Some(part) = self.parts.borrow_mut().remove(key) else {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        };
        if sha256.is_some_and(|sha| sha256_hex(&part) != sha) {
            return Ok(false);
        }
        self.files.borrow_mut().insert(key.clone(), part);
        Ok(true)
    }

    fn has_file(&self, key: &FileKey) -> bool {
        self.files.borrow().contains_key(key)
    }

    fn remove(&self, key: &FileKey) {
        self.files.borrow_mut().remove(key);
        self.parts.borrow_mut().remove(key);
    }

    fn keys(&self) -> Vec<FileKey> {
        let mut keys: Vec<FileKey> = self.files.borrow().keys().cloned().collect();
        keys.extend(self.parts.borrow().keys().cloned());
        keys.sort();
        keys.dedup();
        keys
    }
}
