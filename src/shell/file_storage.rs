//! The log's segments as files: the storage backend for nodes with a
//! filesystem (the core writes through `store::Storage` and never touches
//! a file itself).

use crate::store::Storage;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// Segments as files `NNNNNNNNNNNNNNNN.seg` in one directory, readable by
/// the owner only (they hold password hashes and private messages).
pub struct FileStorage {
    dir: PathBuf,
    open: Option<(u64, File)>,
}

impl FileStorage {
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<FileStorage> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(FileStorage { dir, open: None })
    }

    /// Open an existing log directory for reading only: nothing is created,
    /// and the caller must not write (used to check and salvage a data_dir).
    pub fn open_existing(dir: impl Into<PathBuf>) -> io::Result<FileStorage> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(FileStorage { dir, open: None })
    }

    fn path(&self, seg: u64) -> PathBuf {
        self.dir.join(format!("{seg:016x}.seg"))
    }

    fn file(&mut self, seg: u64) -> io::Result<&mut File> {
        if self.open.as_ref().map(|(s, _)| *s) != Some(seg) {
            let existed = self.path(seg).exists();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(self.path(seg))?;
            if !existed {
                // The new directory entry must be durable too.
                File::open(&self.dir)?.sync_all()?;
            }
            self.open = Some((seg, f));
        }
        Ok(&mut self.open.as_mut().expect("just opened").1)
    }
}

impl Storage for FileStorage {
    fn segments(&self) -> io::Result<Vec<u64>> {
        let mut segs = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".seg") {
                if let Ok(n) = u64::from_str_radix(hex, 16) {
                    segs.push(n);
                }
            }
        }
        segs.sort_unstable();
        Ok(segs)
    }

    fn len(&mut self, seg: u64) -> io::Result<u64> {
        Ok(fs::metadata(self.path(seg))?.len())
    }

    fn read_at(&mut self, seg: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match &self.open {
            Some((s, f)) if *s == seg => f.read_exact_at(buf, offset),
            _ => File::open(self.path(seg))?.read_exact_at(buf, offset),
        }
    }

    fn describe(&self, seg: u64) -> String {
        self.path(seg).display().to_string()
    }

    fn append(&mut self, seg: u64, data: &[u8]) -> io::Result<()> {
        self.file(seg)?.write_all(data)
    }

    fn sync(&mut self, seg: u64) -> io::Result<()> {
        self.file(seg)?.sync_data()
    }

    fn truncate(&mut self, seg: u64, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(self.path(seg))?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove(&mut self, seg: u64) -> io::Result<()> {
        if self.open.as_ref().map(|(s, _)| *s) == Some(seg) {
            self.open = None;
        }
        fs::remove_file(self.path(seg))?;
        File::open(&self.dir)?.sync_all()
    }
}
