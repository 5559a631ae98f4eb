//! The data the machines share: rooms (durable and live), replicas of
//! rooms mastered elsewhere, the events links carry, and the key that
//! names a room either way. Data only: the machines that act on it are
//! `muc`, `mirror` and `link`.

pub mod archive;
pub mod block;
pub mod event;
pub mod held;
pub mod id_index;
pub mod occupants;
pub mod pep;
pub mod replica;
pub mod room;
#[cfg(test)]
pub mod samples;
