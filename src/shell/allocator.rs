//! The C library allocator's one setting that changes what the node holds.
//!
//! glibc serves an allocation above a threshold (128 KiB at first) from a
//! mapping of its own, returned to the system when it is freed; but each
//! such free raises the threshold to that size (up to 32 MiB), so the next
//! large ones (an archive's id index at a merge, a compaction's buffers)
//! come from the heap, where the memory they free stays resident between
//! live allocations. A fixed threshold turns that off. Measured at 1M
//! archived messages (benches/archive_footprint.py): RSS after the fill
//! 16.3 MB without, 15.1 MB with. musl's allocator, on the musl boards,
//! returns freed memory by itself.

/// Allocations from this size on get a mapping of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_MAPPING_FROM: libc::c_int = 64 * 1024;

/// Set the allocator up; called once, at start, before any thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure() {
    // SAFETY: mallopt changes a parameter of glibc's allocator and takes
    // no pointer; glibc documents M_MMAP_THRESHOLD as settable at any time.
    let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM) };
    if set != 1 {
        log::debug!("allocator: the mapping threshold was not set");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}
