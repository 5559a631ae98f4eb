//! The vocabulary every machine of the core shares: the time as the shell
//! sees it, and the ids of connections.

pub type ConnId = u64;

/// A connection id that names no session: replies addressed to it go nowhere.
pub const NO_CONN: ConnId = ConnId::MAX;

/// The time, as the shell (or the simulator) sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds, for timeouts.
    pub mono_ms: u64,
    /// Wall-clock Unix milliseconds, for timestamps users see.
    pub unix_ms: u64,
}
