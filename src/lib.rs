//! Outpost: an XMPP server for sites with bad links.
//!
//! The sans-IO core (`xml`, `jid`, `scram`, `c2s`, `im`, `state`, `node`)
//! consumes events with the current time and returns actions; the `shell`
//! turns actions into socket, TLS and log I/O on one smol thread.

pub mod admin;
pub mod admission;
pub mod c2s;
pub mod common;
pub mod config;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod im;
pub mod jid;
pub mod link;
pub mod mam;
pub mod mirror;
pub mod model;
pub mod muc;
pub mod node;
pub mod scram;
pub mod server_info;
pub mod settings;
pub mod shell;
pub mod sim;
pub mod stanza;
pub mod state;
pub mod store;
pub mod xml;
