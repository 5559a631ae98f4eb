//! Persistence: the append log and the storage it writes through.

mod log;
mod storage;

pub use log::{inspect, Log, OpenError, RecordRef, Recovery, SegmentReport, MAX_RECORD_BYTES};
pub use storage::{DryRun, Faults, MemStorage, Storage};
