//! Bodies of the fuzz targets in `fuzz/`, kept in the crate so that
//! `tests/fuzz_corpus.rs` replays the committed corpora on stable Rust
//! through the very same code (docs/fuzzing.md). Each function takes the
//! raw fuzz input, drives the public API, and panics when a property fails.
//! Not part of the server: nothing else calls these.

mod config;
mod console;
mod framer;
mod http;
mod link;
mod log_recovery;
mod scram;

pub use config::{config, CONFIG_FILE};
pub use console::console;
pub use framer::framer;
pub use http::http;
pub use link::{link_compressed, link_plain, link_seeds};
pub use log_recovery::log_recovery;
pub use scram::scram;

/// A target's body: panics when a property fails.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` and the corpus folders call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("framer", framer),
    ("scram", scram),
    ("link_plain", link_plain),
    ("link_compressed", link_compressed),
    ("log_recovery", log_recovery),
    ("http", http),
    ("console", console),
    ("config", config),
];

/// Split an input into a chunking plan and the payload: the first byte
/// says how many chunk sizes follow (low 3 bits), each size one byte
/// (0 reads as 1). With no sizes the payload stays whole. Lets the fuzzer
/// choose where a stream is cut, which is what buffering bugs depend on.
pub fn split_plan(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(first & 7).min(rest.len());
    let sizes = rest[..n].iter().map(|&b| usize::from(b.max(1))).collect();
    (sizes, &rest[n..])
}

/// Cut `payload` into pieces with the sizes cycled; the rest is the last piece.
pub fn chunks<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![payload];
    }
    let mut out = Vec::new();
    let mut rest = payload;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}
