//! The data directory: exclusive lock, log replay into state.

use super::archive_files::{ArchiveFiles, SharedFiles};
use super::FileStorage;
use crate::model::block::install_reader;
use crate::state::State;
use crate::store::{Log, OpenError};
use std::cell::RefCell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Held while a process owns the data directory (the node, or an offline CLI command).
pub struct DataLock {
    _file: File,
}

#[derive(Debug)]
pub enum LockError {
    Busy,
    Io(String),
}

impl DataLock {
    pub fn acquire(dir: &Path) -> Result<DataLock, LockError> {
        use std::os::unix::fs::OpenOptionsExt;
        create_private(dir).map_err(LockError::Io)?;
        let path = dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LockError::Io(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(DataLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Busy),
            Err(fs::TryLockError::Error(e)) => Err(LockError::Io(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

/// Create the data directory if need be, private to its owner: password
/// hashes, private messages and keys live there.
pub fn create_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot make {} private to its owner: {e}", dir.display()))
}

pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

pub fn admin_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// The log of a data directory, replayed.
pub struct Opened {
    pub log: Log<FileStorage>,
    pub state: State,
    /// The archive files, installed as where archives read their blocks.
    pub archive: SharedFiles,
    /// Size of the last snapshot, to decide when to compact next.
    pub snapshot_bytes: u64,
}

/// Open the log and replay it. A torn tail of the newest segment (a crash
/// during a write) is cut off with a warning; any other damage, and a
/// record that verifies but cannot be decoded, stops start-up with the file
/// and offset named and nothing changed (`outpost data check` and
/// `salvage` are the way on from there).
pub fn open_state(data_dir: &Path, salt: u64) -> Result<Opened, String> {
    let dir = log_dir(data_dir);
    let storage = FileStorage::open(&dir)
        .map_err(|e| format!("cannot open log directory {}: {e}", dir.display()))?;
    // Installed before the replay, which may read blocks (trims do).
    let archive = ArchiveFiles::open(data_dir).map_err(|e| {
        format!(
            "cannot open the archive files in {}: {e}",
            data_dir.display()
        )
    })?;
    let archive = SharedFiles(Rc::new(RefCell::new(archive)));
    install_reader(Some(Rc::new(archive.clone())));
    let opened = crate::state::snapshot::open_log(storage, salt).map_err(|e| match e {
        OpenError::Io(e) => format!("cannot read the log in {}: {e}", dir.display()),
        other => format!(
            "the log cannot be read: {other}. Nothing was changed. Run `outpost data check` \
             to see the damage, and `outpost data salvage NEW_DIR` to copy what is readable \
             into a new data directory."
        ),
    })?;
    let recovery = &opened.recovery;
    if let Some((seg, offset, reason, discarded)) = recovery.truncated {
        log::warn!(
            "log: segment {seg:016x} ended in an interrupted write at offset {offset} ({reason}); discarded {discarded} bytes that were never acknowledged"
        );
    }
    if let Some(seg) = recovery.torn_segment_removed {
        log::warn!("log: removed segment {seg:016x}, left empty by an interrupted start");
    }
    if let Some((seg, offset)) = opened.unfinished_snapshot {
        log::warn!("log: a snapshot begun at segment {seg:016x} offset {offset} was left unfinished (the node stopped while compacting); it is read past, and the records before and beside it stand");
    }
    log::info!(
        "log: replayed {} records from {}",
        recovery.records,
        dir.display()
    );
    // Blocks written after the last snapshot are sealed again from the
    // records; the files' copies of them, and files neither the snapshot
    // (the next replay reads its blocks, whatever the records after it
    // dropped) nor the state refers to, go.
    let mut keep = opened.state.block_files();
    for (file, end) in &opened.snapshot_block_files {
        let e = keep.entry(*file).or_insert(0);
        *e = (*e).max(*end);
    }
    archive
        .0
        .borrow_mut()
        .number_past(keep.keys().last().copied());
    let collected = archive.0.borrow_mut().collect(&keep, true).map_err(|e| {
        format!(
            "cannot tidy the archive files in {}: {e}",
            data_dir.display()
        )
    })?;
    if collected.bytes > 0 {
        log::info!(
            "archive: removed {} bytes ({} files) that no snapshot refers to",
            collected.bytes,
            collected.files
        );
    }
    Ok(Opened {
        log: opened.log,
        state: opened.state,
        archive,
        snapshot_bytes: opened.snapshot_bytes,
    })
}
