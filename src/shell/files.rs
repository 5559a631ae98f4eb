//! File bytes in `data_dir/files/<origin>/<id>`, and `<id>.part` while a
//! file is written (an upload, a fetch over a link). Keys reach here only
//! once the core checked them (`files::url`): a domain and 32 hex digits,
//! so no key names a path outside this directory.

use crate::files::{FileKey, FileStore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct DiskFiles {
    root: PathBuf,
}

impl DiskFiles {
    pub fn open(data_dir: &Path) -> io::Result<DiskFiles> {
        let root = data_dir.join("files");
        fs::create_dir_all(&root)?;
        Ok(DiskFiles { root })
    }

    fn dir(&self, key: &FileKey) -> PathBuf {
        self.root.join(&key.origin)
    }

    pub fn path(&self, key: &FileKey) -> PathBuf {
        self.dir(key).join(&key.id)
    }

    pub fn part_path(&self, key: &FileKey) -> PathBuf {
        self.dir(key).join(format!("{}.part", key.id))
    }

    /// The file, or its part file while it is written.
    pub fn open_file(&self, key: &FileKey) -> io::Result<File> {
        File::open(self.path(key)).or_else(|_| File::open(self.part_path(key)))
    }

    /// A new, empty part file for an upload's body.
    pub fn create_part(&self, key: &FileKey) -> io::Result<File> {
        fs::create_dir_all(self.dir(key))?;
        File::create(self.part_path(key))
    }
}

/// SHA-256 of a file, as lowercase hex.
fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(crate::common::hex(ctx.finish().as_ref()))
}

/// Up to `len` bytes of `file` at `offset`.
pub fn read_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut out)?;
    Ok(out)
}

impl FileStore for DiskFiles {
    fn read(&self, key: &FileKey, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        read_at(&mut self.open_file(key)?, offset, len)
    }

    fn write_part(&self, key: &FileKey, offset: u64, data: &[u8]) -> io::Result<()> {
        fs::create_dir_all(self.dir(key))?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.part_path(key))?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)
    }

    fn part_len(&self, key: &FileKey) -> u64 {
        fs::metadata(self.part_path(key)).map_or(0, |m| m.len())
    }

    fn complete(&self, key: &FileKey, sha256: Option<&str>) -> io::Result<bool> {
        let part = self.part_path(key);
        if let Some(sha256) = sha256 {
            if sha256_of(&part)? != sha256 {
                let _ = fs::remove_file(&part);
                return Ok(false);
            }
        }
        File::open(&part)?.sync_all()?;
        fs::rename(&part, self.path(key))?;
        File::open(self.dir(key))?.sync_all()?;
        Ok(true)
    }

    fn has_file(&self, key: &FileKey) -> bool {
        self.path(key).is_file()
    }

    fn remove(&self, key: &FileKey) {
        let _ = fs::remove_file(self.path(key));
        let _ = fs::remove_file(self.part_path(key));
    }

    fn keys(&self) -> Vec<FileKey> {
        let mut keys = Vec::new();
        let Ok(origins) = fs::read_dir(&self.root) else {
            return keys;
        };
        for origin in origins.flatten() {
            let Ok(files) = fs::read_dir(origin.path()) else {
                continue;
            };
            let origin = origin.file_name().to_string_lossy().into_owned();
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".part").unwrap_or(&name).to_string();
                keys.push(FileKey {
                    origin: origin.clone(),
                    id,
                });
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}
