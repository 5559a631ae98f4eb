//! Persistence: the append log and the storage it writes through.

mod log;
mod storage;

pub use log::{Log, RawRecord, Recovery, MAX_RECORD_BYTES};
pub use storage::{Faults, FileStorage, MemStorage, Storage};
