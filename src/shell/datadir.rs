//! The data directory: exclusive lock, log replay into state.

use crate::state::{Record, State};
use crate::store::{FileStorage, Log};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

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
        fs::create_dir_all(dir).map_err(|e| {
            LockError::Io(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("lock");
        let file = File::create(&path)
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

pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

pub fn admin_socket(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Open the log and replay it. A damaged tail is cut off with a warning; a
/// record that verifies but cannot be decoded stops start-up (it was written
/// by another version, and guessing would lose data).
pub fn open_state(data_dir: &Path, salt: u64) -> Result<(Log<FileStorage>, State), String> {
    let dir = log_dir(data_dir);
    let storage = FileStorage::open(&dir)
        .map_err(|e| format!("cannot open log directory {}: {e}", dir.display()))?;
    let mut state = State::default();
    let mut decode_error = None;
    let (log, recovery) = Log::open(storage, salt, |raw| {
        if decode_error.is_some() {
            return;
        }
        match Record::decode(&raw.payload) {
            Ok(r) => state.apply(&r),
            Err(e) => {
                decode_error = Some(format!(
                    "log record {} (kind {}) cannot be decoded: {e}",
                    raw.seq, raw.kind
                ))
            }
        }
    })
    .map_err(|e| format!("cannot read log in {}: {e}", dir.display()))?;
    if let Some(e) = decode_error {
        return Err(format!(
            "{e}; was the log written by a newer outpost? Refusing to start."
        ));
    }
    if let Some((seg, offset, reason, discarded)) = recovery.truncated {
        log::warn!(
            "log: segment {seg:016x} is damaged at offset {offset} ({reason}); kept {} good records, discarded {discarded} bytes after them",
            recovery.records
        );
    }
    for seg in &recovery.segments_removed {
        log::warn!("log: removed segment {seg:016x} that followed the damage");
    }
    log::info!(
        "log: replayed {} records from {}",
        recovery.records,
        dir.display()
    );
    Ok((log, state))
}
