//! `outpost data check` and `outpost data salvage`: look at a data
//! directory's log without changing anything, and copy what is readable
//! into a new data directory. Both only read the original; neither needs
//! the node stopped to read, but a salvage is meant for a stopped node.

use super::archive_files::{ArchiveFiles, SharedFiles};
use super::datadir::log_dir;
use super::FileStorage;
use crate::model::block::install_reader;
use crate::state::salvage::{salvage as read_salvage, Summary};
use crate::state::snapshot::{compact, open_log};
use crate::store::{inspect, DryRun, SegmentReport};
use std::cell::RefCell;
use std::fs;
use std::path::Path;
use std::rc::Rc;

fn segment_line(r: &SegmentReport) -> String {
    let name = Path::new(&r.segment)
        .file_name()
        .map_or(r.segment.clone(), |n| n.to_string_lossy().into_owned());
    let status = match &r.damage {
        None => "ok".to_string(),
        Some((d, after)) => format!(
            "damaged at byte {} ({}); {after} records verify after it",
            d.offset, d.reason
        ),
    };
    format!(
        "  {name}  {} bytes, {} good records: {status}",
        r.bytes, r.records
    )
}

fn open_original(data_dir: &Path) -> Result<FileStorage, String> {
    let dir = log_dir(data_dir);
    FileStorage::open_existing(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))
}

/// Report on a data directory's log: each segment, what start-up would
/// do with it, and what the state holds. Ok(true) if start-up would open it.
pub fn check(data_dir: &Path) -> Result<bool, String> {
    let mut storage = open_original(data_dir)?;
    let reports = inspect(&mut storage, |_| {}).map_err(|e| format!("cannot read the log: {e}"))?;
    crate::out!("log: {}", log_dir(data_dir).display());
    for r in &reports {
        crate::out!("{}", segment_line(r));
    }
    match open_log(DryRun::new(storage), 1) {
        Ok(mut opened) => {
            let would = std::mem::take(&mut opened.log.storage().would);
            // Opening an empty log writes a first segment header: not worth saying.
            let would: Vec<_> = would
                .into_iter()
                .filter(|w| !w.starts_with("write"))
                .collect();
            if would.is_empty() {
                crate::out!("start-up: reads it as it is");
            }
            for w in would {
                crate::out!("start-up: would {w}");
            }
            crate::out!("{}", Summary::of(&opened.state));
            Ok(true)
        }
        Err(e) => {
            crate::out!("start-up: refuses to start: {e}");
            crate::out!(
                "to go on: `outpost data salvage NEW_DIR` copies what is readable into NEW_DIR"
            );
            Ok(false)
        }
    }
}

/// Copy what is readable of `from`'s log, and its other files (keys,
/// certificates), into a new data directory `to`. `from` is not changed.
pub fn salvage(from: &Path, to: &Path) -> Result<(), String> {
    let mut storage = open_original(from)?;
    if to.exists() {
        let empty = fs::read_dir(to)
            .map_err(|e| format!("cannot read {}: {e}", to.display()))?
            .next()
            .is_none();
        if !empty {
            return Err(format!(
                "{} exists and is not empty; name a new directory",
                to.display()
            ));
        }
    }
    // Blocks the log refers to are read from `from`'s archive files and
    // written into the new log whole: `to` gets no archive files of its
    // own until its node writes them.
    let blocks = SharedFiles(Rc::new(RefCell::new(ArchiveFiles::open_existing(from))));
    install_reader(Some(Rc::new(blocks)));
    let mut got = read_salvage(&mut storage).map_err(|e| format!("cannot read the log: {e}"))?;
    let unreadable = got.state.rebuild_archives_readable();
    install_reader(None);
    super::datadir::create_private(to)?;
    copy_other_files(from, to)?;
    let new_log = log_dir(to);
    let fresh = FileStorage::open(&new_log)
        .map_err(|e| format!("cannot create {}: {e}", new_log.display()))?;
    let mut log = open_log(fresh, super::random_u64())
        .map_err(|e| format!("cannot create a log in {}: {e}", new_log.display()))?
        .log;
    compact(&mut log, &got.state, super::random_u64())
        .map_err(|e| format!("cannot write {}: {e}", new_log.display()))?;
    crate::out!("read {}:", log_dir(from).display());
    for r in &got.segments {
        crate::out!("{}", segment_line(r));
    }
    crate::out!(
        "records applied: {}; unreadable records skipped: {}; snapshots cut short: {}",
        got.applied,
        got.undecodable,
        got.partial_snapshots
    );
    if unreadable > 0 {
        crate::out!(
            "{unreadable} archived messages could not be read from {} and are left out",
            from.join("archive").display()
        );
    }
    crate::out!("wrote {}:", to.display());
    crate::out!("{}", Summary::of(&got.state));
    crate::out!(
        "{} is unchanged. To use the salvaged data, stop the node and point data_dir at {} (or move it into place).",
        from.display(),
        to.display()
    );
    Ok(())
}

/// Everything in the data directory but the log, the archive files (their
/// blocks are in the new log) and what a running node holds (its lock and
/// admin socket), recursively.
fn copy_other_files(from: &Path, to: &Path) -> Result<(), String> {
    let entries = fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let name = entry.file_name();
        let skipped = ["log", "archive", "lock", "admin.sock"];
        if from == to || skipped.contains(&name.to_string_lossy().as_ref()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let kind = entry
            .file_type()
            .map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        if kind.is_dir() {
            fs::create_dir_all(&dst)
                .map_err(|e| format!("cannot create {}: {e}", dst.display()))?;
            copy_other_files(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)
                .map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}
